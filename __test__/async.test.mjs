// Issue 11, items 4–6: teardown (close(), Symbol.dispose, 100 runtimes keep threads and memory
// flat), ticks off the event loop (tickAsync, loadModelAsync, run()) and request/response.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const lockstep = require('../index.js');
const { Runtime, LockstepError, exampleAgent, replay, EXAMPLES_PUBLIC_KEY, MAX_PAYLOAD_BYTES } = lockstep;
const { platformTriple } = require('../scripts/platform.cjs');
const MLP = fileURLToPath(new URL('../models/mlp_classifier.onnx', import.meta.url));

const options = (o = {}) => ({ trustedKeys: [EXAMPLES_PUBLIC_KEY], seed: 7, ...o });
const code = (c, re) => (e) => {
  assert.ok(e instanceof LockstepError, `not a LockstepError: ${e && e.stack}`);
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  return true;
};
const busy = code('E_BUSY', /a tickAsync is running on this runtime; await it first/);

test('tickAsync(n) gives the same reports and hashes as tick(n), tick after tick, with 1 and 3 workers', async () => {
  for (const workers of [1, 3]) {
    const sync = new Runtime(options({ workers }));
    const off = new Runtime(options({ workers }));
    for (const rt of [sync, off]) {
      rt.spawnMany(exampleAgent('gossip'), 120);
      rt.spawn(exampleAgent('counter'));
    }
    for (const n of [1, 5, 1, 30]) {
      sync.send(121, 'x', { kind: 1 });
      off.send(121, 'x', { kind: 1 });
      assert.deepEqual(await off.tickAsync(n), sync.tick(n));
    }
    assert.equal(off.currentTick, sync.currentTick);
    assert.deepEqual(off.drainMessages(), sync.drainMessages());
    assert.equal(off.deepHash().hash, sync.deepHash().hash);
    const log = off.stopRecording();
    const verdict = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY] });
    assert.ok(verdict.ok && verdict.complete, JSON.stringify(verdict));
    assert.equal(verdict.finalHash, sync.stateHash());
    sync.close();
    off.close();
  }
});

test('while a tickAsync runs, every other call throws E_BUSY, the event loop keeps running, and afterwards the runtime is free', async () => {
  const rt = new Runtime(options({ workers: 2 }));
  const id = rt.spawn(exampleAgent('counter'));
  rt.spawnMany(exampleAgent('gossip'), 2000);
  let loopTurns = 0;
  const interval = setInterval(() => loopTurns++, 0);
  const running = rt.tickAsync(40);
  for (const call of [
    () => rt.tick(), () => rt.send(id, 'x'), () => rt.inspect(id), () => rt.spawn(exampleAgent('counter')), () => rt.drainEvents(),
    () => rt.drainMessages(), () => rt.stateHash(), () => rt.currentTick, () => rt.kill(id), () => rt.stopRecording(),
    () => rt.loadModel(MLP), () => rt.attachRings(),
  ]) {
    assert.throws(call, busy, call.toString());
  }
  // Both started before anything is awaited (the runtime comes back on this thread, only
  // once this code yields to the event loop).
  const alsoBusy = [rt.tickAsync(1), rt.loadModelAsync(readFileSync(MLP))];
  for (const p of alsoBusy) await assert.rejects(p, busy);
  assert.equal(rt.closed, false, 'closed is readable meanwhile');
  const report = await running;
  clearInterval(interval);
  assert.equal(report.tick, 39);
  assert.ok(loopTurns > 0, 'timers ran while the ticks ran');
  assert.equal(rt.currentTick, 40);
  assert.equal(rt.inspect(id).steps, 40);
  rt.close();
});

test('tickTimings(): a loop of tickAsync calls is queue + compute + settle + between, call by call; readable while one runs; tick() is not counted', async () => {
  const rt = new Runtime(options({ workers: 2 }));
  rt.spawnMany(exampleAgent('gossip'), 300);
  assert.deepEqual(rt.tickTimings(), { calls: 0, queueUs: 0, computeUs: 0, settleUs: 0, betweenUs: 0 });
  rt.tick(3);
  assert.equal(rt.tickTimings().calls, 0, 'tick() runs on this thread: not a tickAsync');
  const t0 = performance.now();
  for (let i = 0; i < 50; i++) await rt.tickAsync(i % 2 ? 1 : 3);
  const wallUs = (performance.now() - t0) * 1000;
  const t = rt.tickTimings();
  assert.equal(t.calls, 50);
  for (const k of ['queueUs', 'computeUs', 'settleUs', 'betweenUs']) assert.ok(Number.isFinite(t[k]) && t[k] >= 0, `${k}: ${t[k]}`);
  assert.ok(t.computeUs > 0 && t.betweenUs > 0, JSON.stringify(t));
  // The parts tile the loop: what is left is the time before the first call and after the
  // last settle (microseconds of this test's own code).
  const sum = t.queueUs + t.computeUs + t.settleUs + t.betweenUs;
  assert.ok(sum <= wallUs + 1 && sum > wallUs - 5000, `parts ${sum} µs vs loop ${wallUs} µs`);
  const running = rt.tickAsync(5);
  assert.equal(rt.tickTimings().calls, 50, 'readable while a tickAsync runs');
  await running;
  const after = rt.tickTimings();
  assert.equal(after.calls, 51);
  assert.ok(after.computeUs > t.computeUs && after.betweenUs >= t.betweenUs);
  rt.close();
});

test('report.eventsEnd: the next event\'s sequence number, the same from tick() and tickAsync(); it grows exactly when events were queued (by ticks or by calls between them)', async () => {
  const rt = new Runtime(options({ workers: 2 }));
  const ids = rt.spawnMany(exampleAgent('gossip'), 10);
  const first = rt.tick(1);
  assert.equal(first.eventsEnd, 10, 'ten spawned events, sequence numbers 0..9');
  assert.equal(rt.drainEvents().length, 10);
  assert.equal((await rt.tickAsync(1)).eventsEnd, 10, 'a tick that queued nothing');
  rt.kill(ids[0]);
  const killed = await rt.tickAsync(1);
  const events = rt.drainEvents();
  assert.equal(killed.eventsEnd, 10 + events.length, 'the kill between ticks and what the tick queued');
  assert.ok(events.some((e) => e.type === 'killed'));
  assert.equal(rt.tick(1).eventsEnd, killed.eventsEnd + rt.drainEvents().length, 'draining does not move it back');
  rt.close();
});

test('close() during a tickAsync is safe: its promise still settles, then the runtime is closed (rings included)', async () => {
  const rt = new Runtime(options({ workers: 2 }));
  rt.spawnMany(exampleAgent('gossip'), 500);
  const { inbound, outbound } = rt.attachRings({ inboundBytes: 1 << 16, outboundBytes: 1 << 16 });
  inbound.tryPush(1, 'hello');
  const running = rt.tickAsync(20);
  rt.close();
  assert.equal(rt.closed, true);
  assert.throws(() => rt.tick(), code('E_CLOSED'));
  const report = await running;
  assert.equal(report.tick, 19);
  outbound.readBatch();
  assert.throws(() => rt.currentTick, code('E_CLOSED'));
  rt.close(); // idempotent
  // The same with `await using`'s dispose: it waits for the ticks, then closes.
  const other = new Runtime(options({ workers: 1 }));
  other.spawn(exampleAgent('counter'));
  const ticking = other.tickAsync(5);
  await other[Symbol.asyncDispose]();
  assert.equal((await ticking).tick, 4);
  assert.equal(other.closed, true);
});

test('a panic on the thread pool rejects with E_INTERNAL and closes the runtime, saying why (never lost silently)', async () => {
  const before = process.env.LOCKSTEP_TEST_HOOKS;
  process.env.LOCKSTEP_TEST_HOOKS = '1';
  try {
    const rt = new Runtime(options({ workers: 1 }));
    const echo = rt.spawn(exampleAgent('echo'));
    rt.tick();
    const panicking = rt[Symbol.for('lockstep.testPanicTickAsync')]('boom on the pool');
    const waiting = rt.request(echo, 'sent after that tick: never'); // queued behind the tick
    await assert.rejects(panicking, code('E_INTERNAL', /boom on the pool.*runtime was closed/s));
    assert.equal(rt.closed, true);
    assert.throws(() => rt.tick(), code('E_CLOSED', /panic inside a tickAsync.*boom on the pool/s));
    await assert.rejects(waiting, (e) => e.code === 'E_INTERNAL' || e.code === 'E_CLOSED');
    rt.close();
  } finally {
    if (before === undefined) delete process.env.LOCKSTEP_TEST_HOOKS;
    else process.env.LOCKSTEP_TEST_HOOKS = before;
  }
});

test('a tick() while an infer() runs on the thread pool works (it failed with napi\'s "cannot be borrowed mutably")', async () => {
  // The public infer() runs this small model inline; the addon's inferAsync is what it uses
  // for larger ones.
  const native = require(`../lockstep.${platformTriple()}.node`);
  const root = fileURLToPath(new URL('..', import.meta.url));
  const rt = new native.NativeRuntime({ workers: 1, inference: { searchRoots: [root] } });
  const info = rt.loadModel(readFileSync(MLP));
  const data = new Uint8Array(new Float32Array(4).buffer);
  const pending = rt.inferAsync(info.id, `x:float32:1,4:${data.length};`, data);
  assert.equal(rt.tick(1).tick, 0, 'tick() ran while the model ran');
  assert.equal(rt.currentTick, 1);
  const out = await pending;
  assert.match(out.spec, /^probs:float32:1,3:12;/);
  rt.close();
});

test('loadModelAsync: the same model info as loadModel, off the event loop; a missing file says "model"', async () => {
  const rt = new Runtime(options({ workers: 1 }));
  const info = await rt.loadModelAsync(MLP);
  assert.deepEqual(info, rt.loadModel(MLP));
  assert.deepEqual(await rt.loadModelAsync(new URL('../models/mlp_classifier.onnx', import.meta.url)), info);
  await assert.rejects(rt.loadModelAsync('/no/such/model.onnx'), (e) => code('E_IO', /cannot read model \/no\/such\/model\.onnx/)(e) && !/agent module/.test(e.message));
  await assert.rejects(rt.loadModelAsync(new Uint8Array([1, 2, 3])), code('E_INVALID_MODEL'));
  const slot = rt.registerAgentModel(info.id);
  assert.equal(slot, 0);
  rt.close();
  await assert.rejects(rt.loadModelAsync(MLP), code('E_CLOSED'));
});

test('run({ hz, until }): stops at a tick count or a predicate; stop() ends it; the rate never changes results', async () => {
  const make = () => {
    const rt = new Runtime(options({ workers: 1 }));
    rt.spawnMany(exampleAgent('gossip'), 30);
    return rt;
  };
  const reference = make();
  const expected = reference.tick(25).hash;

  const fast = make();
  const a = fast.run({ until: 25 });
  assert.equal(typeof a.stop, 'function');
  const doneA = await a.done;
  assert.deepEqual([doneA.ticks, doneA.reason, doneA.report.tick, fast.currentTick], [25, 'until', 24, 25]);
  assert.equal(fast.stateHash(), expected);

  const paced = make();
  const t0 = performance.now();
  const seen = [];
  const b = paced.run({ hz: 400, until: (r) => r.tick === 24, onTick: (r) => seen.push(r.tick) });
  const doneB = await b.done;
  assert.ok(performance.now() - t0 >= 24 * (1000 / 400) * 0.8, 'ticked at about 400 Hz');
  assert.deepEqual(seen, [...Array(25).keys()]);
  assert.equal(doneB.reason, 'until');
  assert.equal(paced.stateHash(), expected, 'the same hash at 400 Hz as flat out');

  const stopped = make();
  const c = stopped.run({ hz: 200 });
  assert.throws(() => stopped.run(), code('E_BUSY', /run\(\) is already driving/));
  await new Promise((resolve) => setTimeout(resolve, 30));
  const doneC = await c.stop();
  assert.equal(doneC.reason, 'stopped');
  assert.equal(doneC.ticks, c.ticks);
  assert.equal(stopped.currentTick, doneC.ticks);
  assert.ok(doneC.ticks >= 1);
  // close() ends a run() at once, even between slow ticks.
  const closing = make();
  const slow = closing.run({ hz: 0.5 });
  await new Promise((resolve) => setTimeout(resolve, 20));
  closing.close();
  const t1 = performance.now();
  assert.equal((await slow.done).reason, 'stopped');
  assert.ok(performance.now() - t1 < 1000, 'without waiting for the next tick (2 s away)');
  // Already there: no tick.
  assert.deepEqual((await stopped.run({ until: 0 }).done).ticks, 0);

  // A stop() while the run() waits for someone else's tickAsync: it ends without ticking.
  await run_stopped_while_waiting_for_another_tick_does_not_tick(make);

  // Errors reject done: onTick's, until's, and a closed runtime's.
  const failing = make();
  await assert.rejects(failing.run({ onTick: () => { throw new Error('onTick broke'); } }).done, /onTick broke/);
  assert.equal(failing.currentTick, 1, 'it stopped at the first error');
  await assert.rejects(failing.run({ until: () => { throw new TypeError('until broke'); } }).done, TypeError);
  assert.throws(() => failing.run({ hz: 0 }), code('E_INVALID_ARGUMENT', /options\.hz/));
  assert.throws(() => failing.run({ until: -1 }), code('E_INVALID_ARGUMENT', /options\.until/));
  assert.throws(() => failing.run({ every: 1 }), code('E_INVALID_ARGUMENT', /unknown key "every"/));
  for (const rt of [reference, fast, paced, stopped, failing]) rt.close();
  assert.throws(() => failing.run(), code('E_CLOSED'));
});

async function run_stopped_while_waiting_for_another_tick_does_not_tick(make) {
  const rt = make();
  const theirs = rt.tickAsync(3);
  const handle = rt.run();
  const done = handle.stop();
  assert.deepEqual((await theirs).tick, 2);
  const end = await done;
  assert.deepEqual([end.ticks, end.reason, rt.currentTick], [0, 'stopped', 3], 'no tick after stop()');
  rt.close();
}

test('request(): the agent\'s reply; concurrent requests; other host messages and other replies stay drainable', async () => {
  const rt = new Runtime(options({ workers: 1 }));
  const echo = rt.spawn(exampleAgent('echo'));
  const counter = rt.spawn(exampleAgent('counter'));
  const reply = await rt.request(echo, 'hello', { kind: 9 });
  assert.deepEqual([reply.from, reply.to, reply.kind, reply.payload.toString()], [echo, 0, 9, 'hello']);
  assert.equal(rt.currentTick, 1, 'one tick: delivered, answered, routed back');
  // Several at once: sent before the same tick, answered in it. The runtime stays free right
  // after request() returns; a plain message to the host meanwhile is not taken.
  const bodies = ['a', 'bb', 'ccc'];
  const pending = bodies.map((b) => rt.request(echo, b));
  rt.send(counter, 'count', { kind: 1 });
  const replies = await Promise.all(pending);
  assert.deepEqual(replies.map((r) => r.payload.toString()), bodies);
  assert.equal(rt.currentTick, 2, 'one more tick for all three');
  const left = rt.drainMessages();
  assert.equal(left.length, 1);
  assert.deepEqual([left[0].from, left[0].kind], [counter, 2]);
  // A request made while a tick runs is sent right after it.
  const ticking = rt.tickAsync(3);
  const late = rt.request(echo, 'after the tick');
  await ticking;
  assert.equal((await late).payload.toString(), 'after the tick');
  // Bodies up to the limit less the 16-byte envelope.
  const max = MAX_PAYLOAD_BYTES - 16;
  assert.equal((await rt.request(echo, new Uint8Array(max).fill(7))).payload.length, max);
  await assert.rejects(rt.request(echo, new Uint8Array(max + 1)), code('E_MESSAGE_TOO_LARGE', /16-byte request envelope/));
  // Argument errors.
  await assert.rejects(rt.request(0, 'x'), code('E_INVALID_ARGUMENT', /host/));
  await assert.rejects(rt.request('1', 'x'), code('E_INVALID_ARGUMENT', /not a string/));
  await assert.rejects(rt.request(999, 'x'), code('E_UNKNOWN_AGENT'));
  await assert.rejects(rt.request(echo, 'x', { timeoutTicks: 0 }), code('E_INVALID_ARGUMENT', /timeoutTicks/));
  rt.close();
});

test('request() rejects with typed errors: timeout, fault, dead letter, agent stopped, queue full, closed, rings', async () => {
  const rt = new Runtime(options({ workers: 1 }));
  const counter = rt.spawn(exampleAgent('counter')); // never replies to requests
  const start = rt.currentTick;
  await assert.rejects(rt.request(counter, 'x', { timeoutTicks: 3 }), (e) => code('E_REQUEST_TIMEOUT', /within 3 ticks/)(e) && e.requestId === 1);
  assert.equal(rt.currentTick, start + 3, 'exactly timeoutTicks ticks');
  const trap = rt.spawn(exampleAgent('adv-trap'));
  await assert.rejects(rt.request(trap, 'x', { kind: 1 }), (e) => code('E_AGENT_FAULTED', /faulted \(panic in agent_receive/)(e) && e.fault.kind === 'panic');
  assert.equal(rt.drainDeadLetters()[0].reason, 'recipient_faulted_during_delivery', 'the fatal request');
  const killed = rt.spawn(exampleAgent('echo'));
  rt.kill(killed);
  await assert.rejects(rt.request(killed, 'x'), (e) => code('E_DEAD_LETTER', /recipient_stopped/)(e) && e.reason === 'recipient_stopped');
  assert.equal(rt.drainDeadLetters().length, 1, 'the dead letter stays for drainDeadLetters()');
  // Requests wait at most 4,096 at a time.
  const echo = rt.spawn(exampleAgent('echo'));
  const many = Array.from({ length: 4096 }, (_, i) => rt.request(echo, `m${i}`));
  await assert.rejects(rt.request(echo, 'one too many'), code('E_QUEUE_FULL', /4096 requests/));
  assert.equal((await Promise.all(many)).length, 4096);
  // close() rejects what still waits.
  const waiting = rt.request(counter, 'x');
  rt.close();
  await assert.rejects(waiting, code('E_CLOSED'));
  await assert.rejects(rt.request(echo, 'x'), code('E_CLOSED'));
  // With rings, replies would go to the outbound ring.
  const ringed = new Runtime(options({ workers: 1 }));
  const e2 = ringed.spawn(exampleAgent('echo'));
  ringed.attachRings({ inboundBytes: 1 << 12, outboundBytes: 1 << 12 });
  await assert.rejects(ringed.request(e2, 'x'), code('E_RING', /outbound ring/));
  ringed.close();
});

test('a session using request() (and run()) is recorded and replays exactly', async () => {
  const rt = new Runtime(options({ workers: 2 }));
  const echo = rt.spawn(exampleAgent('echo'));
  rt.spawnMany(exampleAgent('gossip'), 20);
  for (let i = 0; i < 5; i++) assert.equal((await rt.request(echo, `q${i}`, { kind: i })).payload.toString(), `q${i}`);
  const run = rt.run({ hz: 1000, until: rt.currentTick + 10 });
  const during = rt.request(echo, 'while running');
  assert.equal((await during).payload.toString(), 'while running');
  await run.done;
  const hash = rt.stateHash();
  const log = rt.stopRecording();
  const verdict = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  assert.ok(verdict.ok && verdict.complete, JSON.stringify(verdict));
  assert.equal(verdict.finalHash, hash);
  rt.close();
});

test('Symbol.dispose closes; 100 runtimes created and closed in a loop keep the thread count and RSS flat', async () => {
  const rt = new Runtime(options({ workers: 1 }));
  rt[Symbol.dispose]();
  assert.equal(rt.closed, true);
  const threads = () => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
  const settle = async (limit) => {
    // A closed runtime's worker threads exit right after their pool is dropped: give them a moment.
    for (let i = 0; i < 50 && threads() > limit; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    return threads();
  };
  const cycle = async () => {
    const r = new Runtime(options({ workers: 4 }));
    r.spawnMany(exampleAgent('gossip'), 100);
    await r.tickAsync(2);
    r.tick(2);
    r.close();
  };
  for (let i = 0; i < 10; i++) await cycle(); // warm up: libuv's pool, allocator arenas
  const threadsBefore = await settle(0);
  const rssBefore = process.memoryUsage().rss;
  for (let i = 0; i < 100; i++) await cycle();
  const threadsAfter = await settle(threadsBefore);
  const rssAfter = process.memoryUsage().rss;
  assert.ok(threadsAfter <= threadsBefore, `threads: ${threadsBefore} before, ${threadsAfter} after 100 runtimes (3 workers each)`);
  assert.ok(rssAfter - rssBefore < 64 << 20, `RSS grew by ${((rssAfter - rssBefore) / 2 ** 20).toFixed(1)} MiB over 100 runtimes`);
});
