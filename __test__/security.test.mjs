import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const { Runtime, keygen, sign, verify, inspect, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const cli = fileURLToPath(new URL('../bin/lockstep.js', import.meta.url));
const unsignedCounter = fileURLToPath(new URL('../guest/target/wasm32-unknown-unknown/release/counter.wasm', import.meta.url));
const manifest = { name: 'counter', version: '1.0.0', abi: 1, capabilities: { send: 'any' } };

test('keygen, sign, verify, inspect from JS', () => {
  const alice = keygen();
  assert.match(alice.publicKey, /^[0-9a-f]{64}$/);
  const signed = sign(unsignedCounter, manifest, alice.secretKey);
  assert.deepEqual(verify(signed, [alice.publicKey]), { ok: true, publisher: alice.publicKey });
  const other = keygen();
  const refused = verify(signed, [other.publicKey]);
  assert.equal(refused.ok, false);
  assert.equal(refused.code, 'E_UNTRUSTED_KEY');
  const info = inspect(signed);
  assert.deepEqual(info.manifest, manifest);
  assert.equal(info.publisher, alice.publicKey);
  assert.equal(info.signatureValid, true);
  assert.ok(info.imports.includes('lockstep::send_plain'), info.imports.join());
  const tampered = Buffer.from(signed);
  tampered[Math.floor(tampered.length / 2)] ^= 1; // in the code section
  assert.equal(verify(tampered, [alice.publicKey]).code, 'E_BAD_SIGNATURE');
  assert.throws(() => sign(unsignedCounter, { name: 'x' }, alice.secretKey), { code: 'E_BAD_MANIFEST' });
});

test('a runtime admits only what its trust store allows, and says so in events', () => {
  const alice = keygen();
  const rt = new Runtime({ workers: 1, trustedKeys: [alice.publicKey] });
  const id = rt.spawn(sign(unsignedCounter, manifest, alice.secretKey));
  assert.throws(() => rt.spawn(exampleAgent('counter')), { code: 'E_UNTRUSTED_KEY' });
  assert.throws(() => rt.spawn(unsignedCounter), { code: 'E_UNSIGNED' });
  const noSend = sign(unsignedCounter, { ...manifest, capabilities: {} }, alice.secretKey);
  assert.throws(() => rt.spawn(noSend), (e) => e.code === 'E_UNDECLARED_IMPORT' && /lockstep::send/.test(e.message));
  const refusals = rt.drainEvents().filter((e) => e.type === 'module_refused').map((e) => e.code);
  assert.deepEqual(refusals, ['E_UNTRUSTED_KEY', 'E_UNSIGNED', 'E_UNDECLARED_IMPORT']);
  rt.tick();
  assert.equal(rt.inspect(id).steps, 1, 'the admitted agent runs; refusals changed nothing');
  assert.deepEqual(rt.agents(), [id]);
  assert.throws(() => new Runtime({ trustedKeys: ['nothex'] }), { code: 'E_INVALID_CONFIG' });
});

test('the operator policy grants less than asked', () => {
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY], policy: { send: 'host', random: true } });
  // gossip asks send=any: the policy cuts it to host-only; sends to agents are refused.
  const ids = rt.spawnMany(exampleAgent('gossip'), 3);
  rt.tick(2);
  assert.equal(ids.reduce((n, id) => n + rt.inspect(id).messagesReceived, 0), 0, 'no agent-to-agent gossip');
  assert.ok(rt.drainMessages().length > 0, 'reports to the host still flow');
});

test('development mode is loud', () => {
  const r = require('node:child_process').spawnSync(process.execPath, ['-e', `new (require(${JSON.stringify(require.resolve('../index.js'))}).Runtime)({ devMode: true })`], { encoding: 'utf8' });
  assert.match(r.stderr, /DEVELOPMENT MODE/);
  const quiet = require('node:child_process').spawnSync(process.execPath, ['-e', `new (require(${JSON.stringify(require.resolve('../index.js'))}).Runtime)()`], { encoding: 'utf8' });
  assert.equal(quiet.stderr, '', 'and only development mode');
});

test('npx lockstep keygen | sign | verify | inspect', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-cli-'));
  const run = (...args) => execFileSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: dir });
  run('keygen', '--out', 'key.json');
  const { publicKey } = JSON.parse(readFileSync(join(dir, 'key.json'), 'utf8'));
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  run('sign', unsignedCounter, '--manifest', 'manifest.json', '--key', 'key.json', '--out', 'counter.signed.wasm');
  assert.match(run('verify', 'counter.signed.wasm', '--trust', publicKey), /^ok: signed by/);
  assert.equal(JSON.parse(run('inspect', 'counter.signed.wasm')).manifest.name, 'counter');
  const bad = require('node:child_process').spawnSync(process.execPath, [cli, 'verify', 'counter.signed.wasm', '--trust', EXAMPLES_PUBLIC_KEY], { encoding: 'utf8', cwd: dir });
  assert.equal(bad.status, 1);
  assert.match(bad.stdout, /E_UNTRUSTED_KEY/);
});
