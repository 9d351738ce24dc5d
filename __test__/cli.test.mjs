// The CLI a new user meets (bin/lockstep.js): keygen never replaces a key by accident, sign warns
// about imports the manifest does not cover and explains a native library passed by mistake.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Runtime, EXAMPLES_PUBLIC_KEY } = require('../index.js');
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
  const gossip = join(wasmDir, 'gossip.wasm'); // imports send and random_u64
  const sign = (caps) => {
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ name: 'gossip', version: '1.0.0', abi: 1, capabilities: caps }));
    return run(dir, 'sign', gossip, '--manifest', 'manifest.json', '--key', 'key.json', '--out', 'gossip.signed.wasm');
  };
  const covered = sign({ send: 'any', random: true });
  assert.equal(covered.status, 0, covered.stderr);
  assert.equal(covered.stderr, '');

  const partial = sign({ send: 'any' });
  assert.equal(partial.status, 0, 'a warning, not a refusal: the module is still signed');
  assert.match(partial.stderr, /warning: .*gossip\.wasm imports lockstep::random_u64, but manifest\.json does not declare its capability: add "random": true/);
  assert.match(partial.stderr, /E_UNDECLARED_IMPORT/);
  assert.doesNotMatch(partial.stderr, /lockstep::send/);

  const none = sign({});
  assert.match(none.stderr, /imports lockstep::send, .*add "send": "host"/);
  assert.match(none.stderr, /imports lockstep::random_u64/);
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
