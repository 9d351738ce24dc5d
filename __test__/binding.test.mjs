// The binding's contract (issue 10): native errors carry their code in `code` (nothing is
// parsed out of a message, so no message can pose as a code); events are one JSON form for
// drainEvents() and the ring; replayAsync() gives replay()'s results off the event loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const lockstep = require('../index.js');
const { Runtime, LockstepError, exampleAgent, EXAMPLES_PUBLIC_KEY, replay, replayAsync } = lockstep;
const { platformTriple } = require('../scripts/platform.cjs');

const TEST_PANIC = Symbol.for('lockstep.testPanic');
const TRUST = { trustedKeys: [EXAMPLES_PUBLIC_KEY] };
const isLockstepError = (code, re) => (e) => {
  assert.ok(e instanceof LockstepError, `not a LockstepError: ${e && e.stack}`);
  assert.equal(e.code, code, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

/** A recorded session: `agents` counters run for `ticks` ticks. */
function session(agents, ticks) {
  const rt = new Runtime({ workers: 1, ...TRUST });
  rt.spawnMany(exampleAgent('counter'), agents);
  rt.tick(ticks);
  const log = rt.stopRecording();
  rt.close();
  return log;
}

test('a native error carries its code in `code` and a message without a [E_CODE] prefix', () => {
  const native = require(`../lockstep.${platformTriple()}.node`);
  assert.throws(
    () => new native.NativeRuntime({ maxAgents: 0 }),
    (e) => e instanceof Error && e.code === 'E_INVALID_CONFIG' && /^invalid configuration: option maxAgents must be/.test(e.message),
  );
  const rt = new native.NativeRuntime({ workers: 1 });
  assert.throws(() => rt.inspect(12345), (e) => e.code === 'E_UNKNOWN_AGENT' && /^no agent with id 12345/.test(e.message));
  assert.throws(() => rt.spawn('nope'), (e) => e.code === 'E_INVALID_MODULE' && !e.message.startsWith('['));
  rt.close();
  assert.throws(() => rt.agents(), (e) => e.code === 'E_CLOSED' && !e.message.startsWith('['));
  // The async paths reject the same way (replayAsync here; inferAsync shares the code).
  return assert.rejects(native.replayAsync(new Uint8Array(3), 1, null, [], false), (e) => e.code === 'E_REPLAY_CORRUPT' && /^replay log is corrupt/.test(e.message));
});

test('the addon itself takes a journal cursor\'s interrupt word only over a SharedArrayBuffer: one over an ArrayBuffer could be resized or detached under the seek', () => {
  const native = require(`../lockstep.${platformTriple()}.node`);
  const dir = join(mkdtempSync(join(tmpdir(), 'lockstep-binding-interrupt-')), 'j');
  const rt = new lockstep.Runtime({ devMode: true, journal: { dir } });
  rt.tick(3);
  rt.close();
  // Resizable, so a caller could shrink it to nothing (and free the word) while a seek reads it.
  const resizable = new Int32Array(new ArrayBuffer(4, { maxByteLength: 64 }));
  for (const word of [resizable, new Int32Array(4), new Int32Array(new SharedArrayBuffer(0)), new Uint32Array(new SharedArrayBuffer(4)), {}]) {
    assert.throws(() => native.NativeJournalCursor.openDir(dir, { trustJournal: true }, word), /option interrupt must be an Int32Array of at least one element over a SharedArrayBuffer/);
  }
  const word = new Int32Array(new SharedArrayBuffer(4));
  const cursor = native.NativeJournalCursor.openDir(dir, { trustJournal: true }, word);
  Atomics.store(word, 0, 1);
  assert.throws(() => cursor.seek(2), (e) => e.code === 'E_INTERRUPTED');
  Atomics.store(word, 0, 0);
  assert.equal(cursor.seek(2).tick, 2);
});

test('the addon loaded by worker threads alone, each exiting before the next loads it, keeps working: same hashes, never a crash, never unloaded', () => {
  // mimalloc 3.3 (the addon's allocator) crashed the process in the second worker's first
  // allocation when the first thread to load the addon had exited (SIGSEGV in mi_thread_init):
  // now mimalloc 2. And the addon pins itself (pin.rs), so exiting workers never unload it.
  const script = fileURLToPath(new URL('./fixtures/worker-only-addon.cjs', import.meta.url));
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
  assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr.slice(-1000)}`);
  assert.equal(r.status, 0, r.stderr.slice(-1000));
  const runs = JSON.parse(r.stdout);
  assert.equal(runs.length, 4);
  assert.ok(runs.every((x) => x.hash === runs[0].hash && /^[0-9a-f]{64}$/.test(x.hash)), r.stdout);
  if (process.platform === 'linux') assert.ok(runs.every((x) => x.mappedAfterExit === true), r.stdout);
});

test('an inference run on the thread pool rejects with its code in `code` too', async () => {
  const native = require(`../lockstep.${platformTriple()}.node`);
  const rt = new native.NativeRuntime({ workers: 1, inference: { searchRoots: [fileURLToPath(new URL('..', import.meta.url))] } });
  const model = rt.loadModel(readFileSync(new URL('../models/mlp_classifier.onnx', import.meta.url)));
  await assert.rejects(rt.inferAsync(model.id, 'x:float32:1,5:20;', new Uint8Array(24)), (e) => e.code === 'E_BAD_INPUT_SHAPE' && /^input `x` must have shape/.test(e.message));
  assert.match((await rt.inferAsync(model.id, 'x:float32:1,4:16;', new Uint8Array(16))).spec, /^probs:float32:1,3:12;/);
  rt.close();
});

test('a message that starts like a code cannot pose as one: a panic saying "[E_FAKE] ..." is E_INTERNAL', () => {
  const before = process.env.LOCKSTEP_TEST_HOOKS;
  process.env.LOCKSTEP_TEST_HOOKS = '1';
  try {
    // With the code parsed out of the message, this panic came out as code E_FAKE.
    assert.throws(() => lockstep[TEST_PANIC]('[E_FAKE] spoofed'), isLockstepError('E_INTERNAL', /\(a lockstep bug; please report it\): \[E_FAKE\] spoofed$/));
    const rt = new Runtime({ workers: 1 });
    assert.throws(() => rt[TEST_PANIC]('[E_UNKNOWN_AGENT] no agent'), isLockstepError('E_INTERNAL', /\[E_UNKNOWN_AGENT\] no agent$/));
    rt.close();
  } finally {
    if (before === undefined) delete process.env.LOCKSTEP_TEST_HOOKS;
    else process.env.LOCKSTEP_TEST_HOOKS = before;
  }
  // And index.js reads no code out of any message.
  const src = readFileSync(new URL('../index.js', import.meta.url), 'utf8');
  assert.doesNotMatch(src, /\\\[\(?E_/, 'index.js has a regex that parses an [E_CODE] out of a message');
});

test('an error onProgress throws comes back as it was thrown (not converted), and stops the calls', async () => {
  const log = session(2, 350);
  const mine = Object.assign(new Error('[E_FAKE] thrown by my callback'), { code: 'E_FAKE' });
  let calls = 0;
  const onProgress = () => {
    calls++;
    throw mine;
  };
  assert.throws(() => replay(log, { ...TRUST, onProgress }), (e) => e === mine);
  assert.equal(calls, 1);
  calls = 0;
  await assert.rejects(replayAsync(log, { ...TRUST, onProgress }), (e) => e === mine);
  assert.equal(calls, 1);
  // A replay error of its own wins over the callback's (as in replay()).
  await assert.rejects(replayAsync(log, { onProgress }), isLockstepError('E_REPLAY_UNTRUSTED'));
});

test('replayAsync gives replay\'s report, progress and errors, and the event loop runs meanwhile', async () => {
  const log = session(20, 300);
  const syncSeen = [];
  const expected = replay(log, { ...TRUST, onProgress: (n) => syncSeen.push(n) });
  assert.equal(expected.ok && expected.complete, true);
  assert.deepEqual(syncSeen, [100, 200, 300]);

  let intervals = 0;
  const timer = setInterval(() => intervals++, 1);
  const seen = [];
  let settled = false;
  const pending = replayAsync(log, { ...TRUST, workers: 2, onProgress: (n) => seen.push([n, settled]) });
  assert.ok(pending instanceof Promise);
  assert.deepEqual(seen, [], 'no progress before the call returned: the replay runs on another thread');
  const report = await pending;
  settled = true;
  clearInterval(timer);
  assert.deepEqual(report, expected);
  // Every progress call, in order, before the promise settled.
  assert.deepEqual(seen, [[100, false], [200, false], [300, false]]);
  assert.ok(intervals > 0, 'setInterval never fired while the replay ran: it blocked the event loop');

  // The same errors, code and message.
  const damaged = Buffer.from(log);
  damaged[damaged.length - 9] ^= 0xff;
  for (const [bytes, options] of [[log, {}], [damaged, TRUST], [log.subarray(0, 10), TRUST]]) {
    let syncError;
    try {
      replay(bytes, options);
    } catch (e) {
      syncError = e;
    }
    assert.ok(syncError instanceof LockstepError);
    await assert.rejects(replayAsync(bytes, options), (e) => e instanceof LockstepError && e.code === syncError.code && e.message === syncError.message);
  }
  // Bad arguments reject (they are checked before the replay starts).
  await assert.rejects(replayAsync(log, { workers: 0 }), isLockstepError('E_INVALID_ARGUMENT', /options\.workers/));
  await assert.rejects(replayAsync(null), isLockstepError('E_INVALID_ARGUMENT', /log/));
  await assert.rejects(replayAsync(log, { trustedKeys: ['zz'] }), isLockstepError('E_INVALID_CONFIG', /options\.trustedKeys\[0\]/));
});

test('drainEvents() gives the objects the outbound ring carries, and a fault event\'s fault is inspect()\'s', () => {
  const rt = new Runtime({ workers: 1, ...TRUST });
  const { outbound } = rt.attachRings();
  const trap = rt.spawn(exampleAgent('adv-trap'));
  rt.send(trap, null, { kind: 1 }); // panics in receive
  rt.tick();
  rt.send(trap, 'to a faulted agent');
  rt.tick();
  const drained = rt.drainEvents();
  const fromRing = outbound.readBatch().filter((r) => r.type === 'event').map((r) => r.event);
  // The ring carries the events of ticks (not the spawn, which happened between ticks).
  assert.deepEqual(fromRing, drained.filter((e) => e.type !== 'spawned'));
  assert.deepEqual(drained.map((e) => e.type), ['spawned', 'fault', 'dead_letter', 'dead_letter']);
  const fault = drained.find((e) => e.type === 'fault');
  assert.equal(fault.agent, trap);
  assert.deepEqual(fault.fault, rt.inspect(trap).fault);
  assert.deepEqual(Object.keys(drained.find((e) => e.type === 'dead_letter')).sort(), ['from', 'kind', 'reason', 'seq', 'tick', 'to', 'type']);
  rt.close();
});
