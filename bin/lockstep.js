#!/usr/bin/env node
'use strict';
// npx lockstep keygen | sign | verify | inspect | new agent — publisher keys, signed agent
// modules, and a new agent crate to start from.
const { readFileSync, writeFileSync, openSync, readSync, closeSync, chmodSync } = require('node:fs');
const { basename } = require('node:path');
const { keygen, sign, verify, inspect, LockstepError } = require('../index.js');
const { newAgent } = require('./scaffold.js');

const USAGE = `usage:
  lockstep keygen --out <key.json> [--force]       new publisher key pair, written to a file only you can read
                                                   (--force replaces an existing one; without --out: printed on stdout)
  lockstep sign <module.wasm> --manifest <m.json> --key <key.json> [--out signed.wasm]
  lockstep verify <module.wasm> --trust <publicKeyHex>[,<publicKeyHex>...]
  lockstep inspect <module.wasm>                   manifest, publisher, imports
  lockstep new agent <name>                        a Rust agent crate in ./<name>/ (build, sign, run scripts included)`;

function arg(args, name) {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  if (value === undefined || value.startsWith('--')) throw new LockstepError('E_USAGE', `${name} needs a value\n${USAGE}`);
  return value;
}

/** A file's text, or E_IO naming the flag it came from. */
function readText(path, flag) {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new LockstepError('E_IO', `${flag} ${path}: cannot read it (${e.code || e.message})`);
  }
}

/** The secret key in a key file written by `lockstep keygen --out`. */
function secretKeyFrom(path) {
  let key;
  try {
    key = JSON.parse(readText(path, '--key'));
  } catch (e) {
    if (e instanceof LockstepError) throw e;
    throw new LockstepError('E_INVALID_ARGUMENT', `--key ${path} is not JSON (${e.message}); pass the key file \`lockstep keygen --out key.json\` wrote`);
  }
  if (key === null || typeof key !== 'object' || typeof key.secretKey !== 'string') {
    throw new LockstepError('E_INVALID_ARGUMENT', `--key ${path} has no "secretKey" string; pass the key file \`lockstep keygen --out key.json\` wrote`);
  }
  return key.secretKey;
}

/**
 * Refuses, with an explanation, a file that is not WebAssembly — most often a native library
 * built for the host by mistake. An unreadable file is left to the API's own error.
 */
function checkWasm(path) {
  const head = Buffer.alloc(4);
  let n;
  try {
    const fd = openSync(path, 'r');
    try {
      n = readSync(fd, head, 0, 4, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    return;
  }
  if (n === 4 && head.equals(Buffer.from('\0asm', 'latin1'))) return;
  const hex = head.subarray(0, n).toString('hex');
  const what =
    n === 0 ? 'it is empty'
      : hex === '7f454c46' ? 'it is an ELF file: a native Linux library or program'
        : ['feedface', 'feedfacf', 'cefaedfe', 'cffaedfe', 'cafebabe'].includes(hex) ? 'it is a Mach-O file: a native macOS library or program'
          : hex.startsWith('4d5a') ? 'it is a PE file: a native Windows DLL or program'
            : `it starts with the bytes ${hex}`;
  const crate = /^(?:lib)?([A-Za-z0-9_]+)\.(?:so|dylib|dll|rlib|a)$/.exec(basename(path))?.[1];
  throw new LockstepError('E_INVALID_MODULE', `${path} is not a WebAssembly module (missing the \\0asm header): ${what}. ` +
    'Agents run as WebAssembly: build with `--target wasm32-unknown-unknown` ' +
    '(`cargo build --release --target wasm32-unknown-unknown`, or set it as the default target in .cargo/config.toml as ' +
    '`lockstep new agent` does) and use ' +
    (crate ? `target/wasm32-unknown-unknown/release/${crate}.wasm` : 'the .wasm file under target/wasm32-unknown-unknown/release/'));
}

// Which capability each host import needs (docs/SECURITY.md); the others are always linked.
const NEEDS = {
  send: { ok: (c) => typeof c.send === 'string' && c.send !== 'none', fix: '"send": "host" (or "agents", "any")' },
  infer: { ok: (c) => Array.isArray(c.infer) && c.infer.length > 0, fix: '"infer": ["<model sha256>"] (or ["*"])' },
  log: { ok: (c) => c.log === true, fix: '"log": true' },
  random_u64: { ok: (c) => c.random === true, fix: '"random": true' },
  tick: { ok: (c) => c.clock === true, fix: '"clock": true' },
};
const ALWAYS = new Set(['self_id', 'report_panic', 'granted']);

/** One warning per import of `module` that the manifest's capabilities do not cover. */
function uncoveredImports(module, manifestPath) {
  const { imports, manifest } = inspect(module);
  const caps = (manifest && manifest.capabilities) || {};
  const warnings = [];
  for (const name of imports) {
    const [mod, field] = name.split('::');
    if (mod === 'lockstep' && ALWAYS.has(field)) continue;
    const need = mod === 'lockstep' ? NEEDS[field] : undefined;
    if (need === undefined) {
      warnings.push(`imports ${name}, which no capability covers: runtimes refuse the module (E_UNKNOWN_IMPORT). ` +
        'Build for wasm32-unknown-unknown (not WASI) and leave out std::time, std::fs, println! and the like; the SDK has tick() and random_u64()');
    } else if (!need.ok(caps)) {
      warnings.push(`imports ${name}, but ${manifestPath} does not declare its capability: add ${need.fix} to "capabilities" and sign again, ` +
        'or runtimes refuse the module (E_UNDECLARED_IMPORT; docs/SECURITY.md)');
    }
  }
  return warnings;
}

function main(argv) {
  const [command, ...args] = argv;
  switch (command) {
    case 'keygen': {
      const out = arg(args, '--out');
      const force = args.includes('--force');
      const k = keygen();
      if (out) {
        try {
          // 'wx': never replace a key by accident.
          writeFileSync(out, JSON.stringify(k, null, 2) + '\n', { mode: 0o600, flag: force ? 'w' : 'wx' });
        } catch (e) {
          if (e.code === 'EEXIST') {
            throw new LockstepError('E_EXISTS', `${out} already exists; refusing to overwrite a key (it would be lost, and runtimes that trust it would not admit what you sign next). ` +
              'Pass --force to replace it, or choose another --out');
          }
          throw new LockstepError('E_IO', `--out ${out}: cannot write it (${e.code || e.message})`);
        }
        if (force) chmodSync(out, 0o600);
        console.log(`wrote ${out} (keep it secret); public key: ${k.publicKey}`);
      } else {
        console.error('lockstep keygen: warning: the secret key is printed on stdout (terminal scrollback, logs); ' +
          'prefer `lockstep keygen --out publisher.json`, which writes it to a file only you can read');
        console.log(JSON.stringify(k, null, 2));
      }
      return 0;
    }
    case 'sign': {
      const [module] = args;
      const manifest = arg(args, '--manifest');
      const key = arg(args, '--key');
      if (!module || !manifest || !key) throw usage();
      const secretKey = secretKeyFrom(key);
      const out = arg(args, '--out') ?? module;
      checkWasm(module);
      const signed = sign(module, readText(manifest, '--manifest'), secretKey);
      writeFileSync(out, signed);
      for (const w of uncoveredImports(signed, manifest)) console.error(`lockstep sign: warning: ${module} ${w}`);
      console.log(`signed ${out}`);
      return 0;
    }
    case 'verify': {
      const [module] = args;
      const trust = arg(args, '--trust');
      if (!module || !trust) throw usage();
      checkWasm(module);
      const r = verify(module, trust.split(','));
      console.log(r.ok ? `ok: signed by ${r.publisher}` : `refused (${r.code}): ${r.message}`);
      return r.ok ? 0 : 1;
    }
    case 'inspect': {
      const [module] = args;
      if (!module) throw usage();
      checkWasm(module);
      console.log(JSON.stringify(inspect(module), null, 2));
      return 0;
    }
    case 'new': {
      const [what, name] = args;
      if (what !== 'agent' || !name || args.length > 2) throw usage();
      const { dir, sdk, transient } = newAgent(name);
      console.log(`created ${dir}: a Rust agent crate (lockstep-sdk from ${sdk})\nnext:\n` +
        `  cd ${name}\n  npx lockstep keygen --out publisher.json   # once; keep it secret\n` +
        '  node build.mjs                              # cargo build --release + lockstep sign → dist/\n' +
        '  node run.mjs                                # run it and print its answer');
      if (transient) {
        console.error(`lockstep new agent: warning: lockstep is not installed in this project, so Cargo.toml points at the SDK in npx's cache (${sdk}), ` +
          'which npm may delete: `npm install lockstep` here, then run this again');
      }
      return 0;
    }
    default:
      console.log(USAGE);
      return command === undefined || command === '--help' ? 0 : 2;
  }
}

function usage() {
  const e = new Error(USAGE);
  e.code = 'E_USAGE';
  return e;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  console.error(e && e.code === 'E_USAGE' ? e.message : `lockstep: ${e && e.code ? `${e.code}: ` : ''}${e && e.message}`);
  process.exitCode = 2;
}
