// The CLI a new user meets (bin/lockstep.js): keygen never replaces a key by accident, sign warns
// about imports the manifest does not cover and explains a native library passed by mistake,
// and `new agent` writes a crate that builds and runs like the examples.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, statSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY, inspect } = require('../index.js');
const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'bin', 'lockstep.js');
const wasmDir = join(root, 'guest', 'target', 'wasm32-unknown-unknown', 'release');
const tmp = (what) => mkdtempSync(join(tmpdir(), `lockstep-cli-${what}-`));
const run = (cwd, ...args) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd });

test('keygen --out refuses to overwrite an existing key unless --force, naming the file and --force', () => {
  const dir = tmp('keygen');
  const first = run(dir, 'keygen', '--out', 'publisher.json');
  assert.equal(first.status, 0, first.stderr);
  assert.equal(first.stderr, '');
  const key = readFileSync(join(dir, 'publisher.json'), 'utf8');
  if (process.platform !== 'win32') assert.equal(statSync(join(dir, 'publisher.json')).mode & 0o777, 0o600);

  const again = run(dir, 'keygen', '--out', 'publisher.json');
  assert.equal(again.status, 2);
  assert.match(again.stderr, /E_EXISTS: publisher\.json already exists; refusing to overwrite/);
  assert.match(again.stderr, /--force/);
  assert.equal(readFileSync(join(dir, 'publisher.json'), 'utf8'), key, 'the key is untouched');

  const forced = run(dir, 'keygen', '--out', 'publisher.json', '--force');
  assert.equal(forced.status, 0, forced.stderr);
  const replaced = JSON.parse(readFileSync(join(dir, 'publisher.json'), 'utf8'));
  assert.notEqual(replaced.secretKey, JSON.parse(key).secretKey);
  assert.match(forced.stdout, new RegExp(`public key: ${replaced.publicKey}`));
  if (process.platform !== 'win32') assert.equal(statSync(join(dir, 'publisher.json')).mode & 0o777, 0o600);
});

test('keygen without --out still prints the pair on stdout, and warns on stderr to use --out', () => {
  const r = run(tmp('keygen-stdout'), 'keygen');
  assert.equal(r.status, 0);
  const k = JSON.parse(r.stdout);
  assert.match(k.publicKey, /^[0-9a-f]{64}$/);
  assert.match(r.stderr, /warning: the secret key is printed on stdout/);
  assert.match(r.stderr, /lockstep keygen --out publisher\.json/);
});

test('sign warns (stderr) about each import the manifest does not cover, and is quiet when all are', () => {
  const dir = tmp('sign');
  run(dir, 'keygen', '--out', 'key.json');
  const gossip = join(wasmDir, 'gossip.wasm'); // imports send_plain and random_fill (the SDK's send and random_u64)
  const sign = (caps) => {
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ name: 'gossip', version: '1.0.0', abi: 1, capabilities: caps }));
    return run(dir, 'sign', gossip, '--manifest', 'manifest.json', '--key', 'key.json', '--out', 'gossip.signed.wasm');
  };
  const covered = sign({ send: 'any', random: true });
  assert.equal(covered.status, 0, covered.stderr);
  assert.equal(covered.stderr, '');

  const partial = sign({ send: 'any' });
  assert.equal(partial.status, 0, 'a warning, not a refusal: the module is still signed');
  assert.match(partial.stderr, /warning: .*gossip\.wasm imports lockstep::random_fill, but manifest\.json does not declare its capability: add "random": true/);
  assert.match(partial.stderr, /E_UNDECLARED_IMPORT/);
  assert.doesNotMatch(partial.stderr, /lockstep::send/);

  const none = sign({});
  assert.match(none.stderr, /imports lockstep::send_plain, .*add "send": "host"/);
  assert.match(none.stderr, /imports lockstep::random_fill/);
  assert.equal(none.stderr.trim().split('\n').length, 2, none.stderr);
  // What the warning predicts is what a runtime does.
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY], policy: { send: 'any', random: true } });
  assert.throws(() => rt.spawn(join(dir, 'gossip.signed.wasm')), { code: 'E_UNTRUSTED_KEY' });
  const { publicKey } = JSON.parse(readFileSync(join(dir, 'key.json'), 'utf8'));
  const trusting = new Runtime({ workers: 1, trustedKeys: [publicKey], policy: { send: 'any', random: true } });
  assert.throws(() => trusting.spawn(join(dir, 'gossip.signed.wasm')), { code: 'E_UNDECLARED_IMPORT' });
  rt.close();
  trusting.close();
});

test('sign warns about an import no capability covers (a WASI build)', () => {
  const dir = tmp('sign-wasi');
  run(dir, 'keygen', '--out', 'key.json');
  // (module (import "wasi_snapshot_preview1" "fd_write" (func)))
  const name = Buffer.from('wasi_snapshot_preview1');
  const field = Buffer.from('fd_write');
  const imports = Buffer.concat([Buffer.from([1, name.length]), name, Buffer.from([field.length]), field, Buffer.from([0, 0])]);
  const wasm = Buffer.concat([
    Buffer.from('\0asm\x01\0\0\0', 'latin1'),
    Buffer.from([1, 4, 1, 0x60, 0, 0]),
    Buffer.from([2, imports.length]), imports,
  ]);
  writeFileSync(join(dir, 'wasi.wasm'), wasm);
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ name: 'wasi', version: '1.0.0', abi: 1 }));
  const r = run(dir, 'sign', 'wasi.wasm', '--manifest', 'manifest.json', '--key', 'key.json', '--out', 'wasi.signed.wasm');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /imports wasi_snapshot_preview1::fd_write, which no capability covers: .*E_UNKNOWN_IMPORT.*wasm32-unknown-unknown/);
});

test('a native library or any non-wasm file is explained: build with --target wasm32-unknown-unknown', () => {
  const dir = tmp('native');
  run(dir, 'keygen', '--out', 'key.json');
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ name: 'a', version: '1.0.0', abi: 1 }));
  const cases = [
    ['libmy_agent.so', Buffer.from('\x7fELF\x02\x01\x01\0', 'latin1'), /ELF file: a native Linux library/, /target\/wasm32-unknown-unknown\/release\/my_agent\.wasm/],
    ['libmy_agent.dylib', Buffer.from([0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]), /Mach-O file/, /release\/my_agent\.wasm/],
    ['my_agent.dll', Buffer.from('MZ\x90\0\x03\0\0\0', 'latin1'), /PE file/, /release\/my_agent\.wasm/],
    ['notes.txt', Buffer.from('hello world'), /starts with the bytes 68656c6c/, /the \.wasm file under target\/wasm32-unknown-unknown\/release\//],
    ['empty.wasm', Buffer.alloc(0), /it is empty/, /wasm32-unknown-unknown/],
  ];
  for (const [file, bytes, what, where] of cases) {
    writeFileSync(join(dir, file), bytes);
    for (const args of [
      ['sign', file, '--manifest', 'manifest.json', '--key', 'key.json', '--out', 'x.wasm'],
      ['inspect', file],
      ['verify', file, '--trust', EXAMPLES_PUBLIC_KEY],
    ]) {
      const r = run(dir, ...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, /E_INVALID_MODULE: .* is not a WebAssembly module \(missing the \\0asm header\)/, args.join(' '));
      assert.match(r.stderr, what, args.join(' '));
      assert.match(r.stderr, /build with `--target wasm32-unknown-unknown`/, args.join(' '));
      assert.match(r.stderr, where, args.join(' '));
    }
  }
  assert.ok(!existsSync(join(dir, 'x.wasm')), 'nothing signed');
});

test('new agent: writes a complete crate, refuses an existing directory and names cargo would refuse', () => {
  const dir = tmp('new');
  const r = run(dir, 'new', 'agent', 'my-agent');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /npx lockstep keygen --out publisher\.json/);
  const crate = join(dir, 'my-agent');
  for (const f of ['Cargo.toml', '.cargo/config.toml', 'src/lib.rs', 'manifest.json', 'build.mjs', 'run.mjs', 'README.md', '.gitignore']) {
    assert.ok(existsSync(join(crate, f)), f);
  }
  const cargo = readFileSync(join(crate, 'Cargo.toml'), 'utf8');
  // The examples' release profile (guest/Cargo.toml), line for line.
  const guestProfile = readFileSync(join(root, 'guest', 'Cargo.toml'), 'utf8').split('[profile.release]')[1];
  for (const line of guestProfile.split('\n').filter((l) => /^\w/.test(l))) assert.ok(cargo.includes(`\n${line}\n`), line);
  assert.match(cargo, /crate-type = \["cdylib"\]/);
  assert.match(cargo, /^\[workspace\]$/m);
  assert.match(cargo, /crates\.io/);
  const sdkPath = /lockstep-sdk = \{ path = "([^"]+)" \}/.exec(cargo)[1];
  assert.ok(existsSync(join(sdkPath.startsWith('/') ? sdkPath : join(crate, sdkPath), 'Cargo.toml')), sdkPath);
  const config = readFileSync(join(crate, '.cargo', 'config.toml'), 'utf8');
  assert.match(config, /target = "wasm32-unknown-unknown"/);
  assert.ok(config.includes(readFileSync(join(root, 'guest', '.cargo', 'config.toml'), 'utf8').match(/rustflags = .*/)[0]));
  assert.deepEqual(JSON.parse(readFileSync(join(crate, 'manifest.json'), 'utf8')), { name: 'my-agent', version: '0.1.0', abi: 2, capabilities: { send: 'any' } });
  assert.match(readFileSync(join(crate, '.gitignore'), 'utf8'), /^publisher\.json$/m);

  const before = readdirSync(crate).sort();
  const again = run(dir, 'new', 'agent', 'my-agent');
  assert.equal(again.status, 2);
  assert.match(again.stderr, /E_EXISTS: .*my-agent already exists; refusing to overwrite it/);
  assert.deepEqual(readdirSync(crate).sort(), before);
  mkdirSync(join(dir, 'taken'));
  assert.match(run(dir, 'new', 'agent', 'taken').stderr, /refusing to overwrite/);
  assert.equal(readdirSync(join(dir, 'taken')).length, 0);

  for (const bad of ['fn', 'test', '1abc', 'a/b', '../x', 'my agent', '-x']) {
    const b = run(dir, 'new', 'agent', bad);
    assert.equal(b.status, 2, bad);
    assert.match(b.stderr, /not a usable crate name/, bad);
  }
  assert.equal(run(dir, 'new', 'agnet', 'x').status, 2, 'an unknown kind is a usage error');
  assert.match(run(dir, 'new').stdout + run(dir, 'new').stderr, /lockstep new agent <name>/);
});

test('new agent: the crate builds for wasm32, costs what an example costs, and answers requests', { timeout: 300_000 }, async (t) => {
  const cargo = spawnSync('cargo', ['--version'], { encoding: 'utf8' });
  if (cargo.status !== 0) return t.skip('no cargo');
  const dir = tmp('build');
  assert.equal(run(dir, 'new', 'agent', 'pinger').status, 0);
  const crate = join(dir, 'pinger');
  // Plain `cargo build --release`, from the crate: .cargo/config.toml picks wasm32 and the stack.
  // (RUSTFLAGS, even empty, would replace the config's flags.)
  const env = { ...process.env };
  for (const k of ['RUSTFLAGS', 'CARGO_ENCODED_RUSTFLAGS', 'CARGO_TARGET_DIR', 'CARGO_BUILD_TARGET']) delete env[k];
  const b = spawnSync('cargo', ['build', '--release', '--quiet'], { cwd: crate, encoding: 'utf8', env });
  assert.equal(b.status, 0, b.stderr);
  const wasm = join(crate, 'target', 'wasm32-unknown-unknown', 'release', 'pinger.wasm');
  assert.deepEqual(inspect(wasm).imports.sort(), ['lockstep::report_panic', 'lockstep::send_plain']);
  const rt = new Runtime({ workers: 1, devMode: true, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  const id = rt.spawn(wasm);
  const counter = rt.spawn(exampleAgent('counter'));
  rt.tick(2);
  rt.send(id, 'ping', { kind: 1 });
  rt.tick();
  const [answer] = rt.drainMessages();
  assert.equal(answer.from, id);
  assert.equal(answer.kind, 2);
  assert.equal(answer.payload.readBigUInt64LE(), 2n, 'the steps before this tick');
  assert.equal(rt.inspect(id).memoryBytes, rt.inspect(counter).memoryBytes, 'the 64 KiB stack, as the examples');
  // The template answers a request (sent before tick 3, answered in it) with its steps so far.
  const reply = await rt.request(id, 'how many steps?');
  assert.deepEqual([reply.from, reply.payload.readBigUInt64LE(), rt.currentTick], [id, 3n, 4]);
  assert.deepEqual(rt.drainMessages(), [], 'the reply was taken by request()');
  rt.close();
});

// Red team (send_plain review): sign looked each lockstep import up in a plain object, so an
// import named like an Object.prototype member was "found" there and the command died with
// "need.ok is not a function" (exit 2) after writing the signed file.
test('sign warns about a lockstep import named like an Object.prototype member, and does not crash', () => {
  const uleb = (n) => {
    const out = [];
    do {
      let b = n & 0x7f;
      n = Math.floor(n / 128);
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  };
  const str = (s) => [...uleb(Buffer.byteLength(s)), ...Buffer.from(s)];
  const section = (id, b) => [id, ...uleb(b.length), ...b];
  // A module whose one import is lockstep::<name>, of type () -> ().
  const importing = (name) => new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...section(1, [1, 0x60, 0, 0]), ...section(2, [1, ...str('lockstep'), ...str(name), 0x00, 0])]);
  const dir = tmp('proto');
  assert.equal(run(dir, 'keygen', '--out', 'k.json').status, 0);
  writeFileSync(join(dir, 'm.json'), '{"name":"x","version":"1.0.0","abi":1,"capabilities":{}}');
  for (const name of ['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf']) {
    writeFileSync(join(dir, `${name}.wasm`), importing(name));
    const r = run(dir, 'sign', `${name}.wasm`, '--manifest', 'm.json', '--key', 'k.json', '--out', `s-${name}.wasm`);
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    assert.ok(existsSync(join(dir, `s-${name}.wasm`)));
    assert.match(r.stderr, new RegExp(`imports lockstep::${name}, which no capability covers`), r.stderr);
  }
});
