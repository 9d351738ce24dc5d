// Snapshots through the JS API (docs/SNAPSHOT.md): rt.snapshot() and Runtime.restore() continue
// a session exactly, here and in another process; a log recorded after a restore replays with
// its snapshot; damaged, mismatched and untrusted snapshots are typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, replay, exampleAgent, EXAMPLES_PUBLIC_KEY, LockstepError } = require('../index.js');

const trust = { trustedKeys: [EXAMPLES_PUBLIC_KEY] };

/** The same inputs for tick `t` in every run. */
function inputs(rt, t, counter) {
  if (t % 3 === 0) rt.send(counter, `tick ${t}`, { kind: 1, priority: t % 2 });
  if (t === 25) rt.spawn(exampleAgent('gossip'), { priority: 1 });
}

function session() {
  const rt = new Runtime({ ...trust, workers: 1, seed: 5, checkpointIntervalTicks: 10, memoryLimitBytes: 8 << 20 });
  rt.spawnMany(exampleAgent('gossip'), 30);
  const counter = rt.spawn(exampleAgent('counter'), { priority: 2 });
  rt.spawn(exampleAgent('adv-trap'));
  return { rt, counter };
}

test('a restored runtime continues exactly: every tick hash, the deep hash and what is left to drain', () => {
  const { rt, counter } = session();
  for (let t = 0; t < 20; t++) {
    inputs(rt, t, counter);
    rt.tick();
  }
  rt.send(counter, 'waiting', { kind: 1 });
  const bytes = rt.snapshot();
  assert.ok(bytes instanceof Uint8Array && bytes.length > 0);
  // The snapshot also from a SharedArrayBuffer (restore copies it first: it reads in place).
  const shared = new Uint8Array(new SharedArrayBuffer(bytes.length));
  shared.set(bytes);
  const results = [];
  for (const [workers, from] of [[1, bytes], [3, shared]]) {
    const restored = Runtime.restore(from, { ...trust, workers });
    assert.equal(restored.currentTick, 20);
    assert.equal(restored.stateHash(), rt.stateHash());
    assert.deepEqual(restored.agents(), rt.agents());
    assert.deepEqual(restored.inspect(counter), rt.inspect(counter));
    for (let t = 20; t < 40; t++) {
      inputs(restored, t, counter);
      restored.tick();
    }
    results.push({ hash: restored.stateHash(), deep: restored.deepHash().hash, messages: restored.drainMessages() });
    restored.close();
  }
  for (let t = 20; t < 40; t++) {
    inputs(rt, t, counter);
    rt.tick();
  }
  const expected = { hash: rt.stateHash(), deep: rt.deepHash().hash, messages: rt.drainMessages() };
  assert.ok(expected.messages.some((m) => m.from === counter), 'the counter answered, the message waiting at the snapshot included');
  assert.deepEqual(results, [expected, expected]);
  rt.close();
});

test('a snapshot restored in another process continues exactly', () => {
  const { rt, counter } = session();
  for (let t = 0; t < 20; t++) {
    inputs(rt, t, counter);
    rt.tick();
  }
  const bytes = rt.snapshot();
  const child = `
    const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require(${JSON.stringify(require.resolve('../index.js'))});
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => {
      const rt = Runtime.restore(Buffer.concat(chunks), { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2 });
      const hashes = [];
      for (let t = 20; t < 40; t++) {
        if (t % 3 === 0) rt.send(${counter}, 'tick ' + t, { kind: 1, priority: t % 2 });
        if (t === 25) rt.spawn(exampleAgent('gossip'), { priority: 1 });
        hashes.push(rt.tick().hash);
      }
      process.stdout.write(JSON.stringify({ hashes, deep: rt.deepHash().hash }));
      rt.close();
    });`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', child], { input: bytes, encoding: 'utf8' }));
  const hashes = [];
  for (let t = 20; t < 40; t++) {
    inputs(rt, t, counter);
    hashes.push(rt.tick().hash);
  }
  assert.deepEqual(out.hashes, hashes);
  assert.equal(out.deep, rt.deepHash().hash);
  rt.close();
});

test('a log recorded after a restore replays with its snapshot, and needs it', () => {
  const { rt, counter } = session();
  for (let t = 0; t < 10; t++) {
    inputs(rt, t, counter);
    rt.tick();
  }
  const bytes = rt.snapshot();
  rt.close();
  const restored = Runtime.restore(bytes, { ...trust, record: true });
  for (let t = 10; t < 30; t++) {
    inputs(restored, t, counter);
    restored.tick();
  }
  const log = restored.stopRecording();
  const report = replay(log, { ...trust, snapshot: bytes, workers: 2 });
  assert.equal(report.ok, true);
  assert.equal(report.complete, true);
  assert.equal(report.ticksVerified, 20);
  assert.equal(report.finalHash, restored.stateHash());
  assert.throws(() => replay(log, trust), { code: 'E_REPLAY_NEEDS_SNAPSHOT' });
  restored.close();
});

test('damaged, mismatched and untrusted snapshots are typed errors', () => {
  const { rt } = session();
  rt.tick(3);
  const bytes = rt.snapshot();
  const hash = rt.loadModule(exampleAgent('counter'));
  rt.close();
  const damaged = Buffer.from(bytes);
  damaged[damaged.length >> 1] ^= 1;
  assert.throws(() => Runtime.restore(damaged, trust), (e) => e instanceof LockstepError && e.code === 'E_SNAPSHOT_CORRUPT' && /at byte \d+/.test(e.message));
  assert.throws(() => Runtime.restore(bytes.subarray(0, 100), trust), { code: 'E_SNAPSHOT_CORRUPT' });
  assert.throws(() => Runtime.restore(bytes, {}), { code: 'E_SNAPSHOT_UNTRUSTED' });
  assert.throws(() => Runtime.restore(bytes, { ...trust, seed: 6, maxAgents: 16384 }), (e) => e.code === 'E_SNAPSHOT_MISMATCH' && /seed: the snapshot has 5, expected 6/.test(e.message) && !/maxAgents/.test(e.message));
  assert.throws(() => Runtime.restore(bytes, { ...trust, modules: [hash] }), { code: 'E_SNAPSHOT_MISMATCH' });
  const ok = Runtime.restore(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), { ...trust, seed: 5, modules: sessionModules() });
  assert.equal(ok.currentTick, 3);
  ok.close();
  assert.throws(() => Runtime.restore('not bytes', trust), { code: 'E_INVALID_ARGUMENT' });
  assert.throws(() => Runtime.restore(bytes, { ...trust, modules: 'x' }), { code: 'E_INVALID_CONFIG' });
  assert.throws(() => Runtime.restore(bytes, { ...trust, nope: 1 }), { code: 'E_INVALID_CONFIG' });
});

/** The module hashes of the session's agents (gossip, counter, adv-trap). */
function sessionModules() {
  const rt = new Runtime({ ...trust, workers: 1 });
  const hashes = ['gossip', 'counter', 'adv-trap'].map((n) => rt.loadModule(exampleAgent(n)));
  rt.close();
  return hashes;
}
