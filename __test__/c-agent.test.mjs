import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const { Runtime, keygen, sign } = require('../index.js');

const source = fileURLToPath(new URL('../guest/c/counter.c', import.meta.url));
const manifest = readFileSync(new URL('../guest/c/manifest.json', import.meta.url), 'utf8');
const clang = spawnSync('clang', ['--version']).status === 0 && spawnSync('wasm-ld', ['--version']).status === 0;

test('an agent written in C (README guide), built with clang --target=wasm32', { skip: clang ? false : 'clang and wasm-ld are not installed' }, () => {
  const out = join(mkdtempSync(join(tmpdir(), 'lockstep-c-')), 'counter.wasm');
  execFileSync('clang', ['--target=wasm32', '-O2', '-nostdlib', '-Wl,--no-entry', '-Wl,--export-dynamic', '-Wl,-z,stack-size=65536', '-o', out, source]);
  const key = keygen();
  const rt = new Runtime({ workers: 1, trustedKeys: [key.publicKey] });
  const id = rt.spawn(sign(out, manifest, key.secretKey));
  rt.tick(3);
  rt.send(id, '', { kind: 1 });
  rt.tick();
  const [reply] = rt.drainMessages();
  assert.equal(reply.from, id);
  assert.equal(reply.payload.readBigUInt64LE(0), 3n);
});
