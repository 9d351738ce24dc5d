#!/usr/bin/env node
// Builds everything `npm test`, `npm run demo` and `npm run bench` need, on a fresh clone:
//   1. the Rust toolchain and wasm32 target pinned in rust-toolchain.toml,
//   2. the npm dependencies (onnxruntime-node: the ONNX Runtime library) if missing,
//   3. the example agents (guest/ → dist/agents/*.wasm),
//   4. the native addon (crates/lockstep-node → lockstep.<platform>.node) and the TypeScript
//      napi-rs generates for it (→ crates/lockstep-node/native.d.ts),
//   5. the example agents signed with the examples' test key (→ dist/agents/*.wasm).
// One build path (cargo --release, host target) serves the addon, the Rust tests and the
// benches, so wasmtime is compiled once. Cargo makes repeated runs cheap.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { platformTriple } from './platform.cjs';
import { nativeDts } from './native-dts.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');

function run(cmd, args, cwd = root, env = {}) {
  const started = Date.now();
  if (!quiet) console.error(`[build] ${cmd} ${args.join(' ')}${cwd !== root ? `   (in ${cwd.slice(root.length + 1)})` : ''}`);
  try {
    execFileSync(cmd, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env } });
  } catch (e) {
    console.error(`[build] failed: ${cmd} ${args.join(' ')} (exit ${e.status}).`);
    if (cmd === 'rustup') console.error('[build] Is rustup installed? See https://rustup.rs — the project pins its toolchain in rust-toolchain.toml.');
    process.exit(1);
  }
  if (!quiet) console.error(`[build]   done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

function output(cmd, args) {
  try {
    return execFileSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

// 1. An installed toolchain does not pick up a missing target by itself (E0463 "can't find
//    crate for `core`"); `rustup toolchain install` with no arguments installs what the
//    toolchain file lists.
if (!output('rustup', ['target', 'list', '--installed']).includes('wasm32-unknown-unknown')) {
  run('rustup', ['toolchain', 'install']);
}

// 2. npm dependencies: onnxruntime-node ships the libonnxruntime the inference engine loads.
//    Its postinstall would fetch CUDA files from outside the registry: ONNXRUNTIME_NODE_INSTALL=skip
//    (the variable its install script reads) skips it; npm versions that gate dependencies'
//    install scripts read package.json's "allowScripts" (onnxruntime-node: false) instead.
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const wanted = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies });
if (wanted.some((name) => !existsSync(join(root, 'node_modules', name, 'package.json')))) {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  process.env.ONNXRUNTIME_NODE_INSTALL ??= 'skip';
  run(npm, [existsSync(join(root, 'package-lock.json')) ? 'ci' : 'install', '--no-audit', '--no-fund']);
}

// 3. Example agents.
const guest = join(root, 'guest');
run('cargo', ['build', '--release', '--quiet'], guest);
const wasmDir = join(guest, 'target', 'wasm32-unknown-unknown', 'release');

// 4. The addon, and its types: napi-derive writes the TypeScript of every #[napi] item into
//    NAPI_TYPE_DEF_TMP_FOLDER as it compiles the crate (napi-build reruns the compile when the
//    variable changes). A fresh compile is forced only when that output is missing.
const typeDefDir = join(root, 'target', 'napi-type-def');
const typeDefFile = join(typeDefDir, 'lockstep-node');
mkdirSync(typeDefDir, { recursive: true });
if (!existsSync(typeDefFile)) run('cargo', ['clean', '--release', '--quiet', '-p', 'lockstep-node']);
run('cargo', ['build', '--release', '--quiet', '-p', 'lockstep-node'], root, { NAPI_TYPE_DEF_TMP_FOLDER: typeDefDir });
if (!existsSync(typeDefFile)) {
  console.error(`[build] napi-derive wrote no type definitions to ${typeDefFile}.`);
  process.exit(1);
}
const dts = nativeDts(readFileSync(typeDefFile, 'utf8'));
const dtsPath = join(root, 'crates', 'lockstep-node', 'native.d.ts');
if (!existsSync(dtsPath) || readFileSync(dtsPath, 'utf8') !== dts) writeFileSync(dtsPath, dts);
const libName = { linux: 'liblockstep_node.so', darwin: 'liblockstep_node.dylib', win32: 'lockstep_node.dll' }[process.platform];
const built = join(root, 'target', 'release', libName ?? 'liblockstep_node.so');
if (!existsSync(built)) {
  console.error(`[build] expected the addon at ${built}, but cargo did not produce it.`);
  process.exit(1);
}
copyFileSync(built, join(root, `lockstep.${platformTriple()}.node`));

// 5. Sign the example agents with the examples' test key and their manifests
//    (guest/agents/<name>/manifest.json) into dist/agents/.
const require = createRequire(import.meta.url);
const native = require(join(root, `lockstep.${platformTriple()}.node`));
const { secretKey } = JSON.parse(readFileSync(join(root, 'keys', 'examples-publisher.json'), 'utf8'));
const dist = join(root, 'dist', 'agents');
mkdirSync(dist, { recursive: true });
for (const f of readdirSync(wasmDir).filter((f) => f.endsWith('.wasm'))) {
  const manifestPath = join(guest, 'agents', f.replace(/\.wasm$/, '').replace(/_/g, '-'), 'manifest.json');
  if (!existsSync(manifestPath)) continue; // not an example agent (e.g. a leftover build)
  const signed = native.signModule(readFileSync(join(wasmDir, f)), readFileSync(manifestPath, 'utf8'), secretKey);
  writeFileSync(join(dist, f), signed);
}
if (!quiet) console.error(`[build] addon: lockstep.${platformTriple()}.node, signed agents: dist/agents/`);
