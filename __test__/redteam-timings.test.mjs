// Red team: rt.tickTimings(), report.eventsEnd and the dashboard observer's shortcut (it skips
// its eventsSince call after a tick whose report's eventsEnd is not past its cursor).
// Each observer test runs the same session twice: with the shortcut as shipped, and with the
// observer forced to poll after every tick as it did before (between() given no eventsEnd); the
// event feeds must be identical.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { connect } from './dashboard-helpers.mjs';
import { withTestHooks } from './fixtures/test-hooks.mjs';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY, setLogger } = require('../index.js');
const { Observer } = require('../dashboard/observer.js');
const { agent: tinyAgent, op, LOG } = await import('./fixtures/tinywasm.mjs');

const options = (o = {}) => ({ trustedKeys: [EXAMPLES_PUBLIC_KEY], seed: 7, workers: 1, ...o });
const PARTS = ['queueUs', 'computeUs', 'settleUs', 'betweenUs'];
const sum = (t) => PARTS.reduce((a, k) => a + t[k], 0);
const wellFormed = (t, what) => {
  assert.deepEqual(Object.keys(t).sort(), ['betweenUs', 'calls', 'computeUs', 'queueUs', 'settleUs'], what);
  for (const k of ['calls', ...PARTS]) assert.ok(Number.isFinite(t[k]) && t[k] >= 0, `${what}: ${k} = ${t[k]}`);
  assert.ok(Number.isInteger(t.calls), `${what}: calls ${t.calls}`);
};

// Observers of these runtimes behave as before the change: they poll after every tick.
const pollingEveryTick = new WeakSet();
const shippedBetween = Observer.prototype.between;
Observer.prototype.between = function (eventsEnd) {
  return shippedBetween.call(this, pollingEveryTick.has(this.rt) ? undefined : eventsEnd);
};
const shippedPoll = Observer.prototype.pollEvents;
const polls = new WeakMap();
Observer.prototype.pollEvents = function () {
  polls.set(this.rt, (polls.get(this.rt) ?? 0) + 1);
  return shippedPoll.call(this);
};

/** Every event the dashboard holds (paged from cursor 0), and its counters. */
async function feed(server) {
  const c = await connect(server);
  const events = [];
  let since = 0;
  let r;
  for (;;) {
    r = await c.data('events', { since, limit: 500 });
    events.push(...r.events);
    if (r.events.length === 0 || r.next >= r.latest) break;
    since = r.next;
  }
  const summary = await c.data('summary');
  await c.close();
  return { events, missed: r.missedByDashboard, latest: r.latest, summaryEvents: summary.events };
}

function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

const text = [...Buffer.from('a log line')];
const logIt = [...op.i32(2), ...op.i32(0), ...op.i32(text.length), ...op.call(LOG)];
/** Logs in init and shutdown only: its ticks are quiet, so the shortcut is taken often. */
const LOGGER = tinyAgent({ init: [...logIt, ...op.i32(0)], shutdown: [...logIt, ...op.i32(0)], data: text });
const QUIET = tinyAgent({});

test('tickTimings(): well formed at every point of a runtime\'s life (new, in flight, after a panic rejected a tickAsync, after close(), restored)', async () => {
  await withTestHooks(async () => {
    const rt = new Runtime(options());
    rt.spawnMany(exampleAgent('gossip'), 50);
    wellFormed(rt.tickTimings(), 'new');
    await rt.tickAsync(2);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const running = rt.tickAsync(1);
    const mid = rt.tickTimings();
    wellFormed(mid, 'in flight');
    assert.equal(mid.calls, 1, 'the call in flight has not settled');
    await running;
    const panicking = rt[Symbol.for('lockstep.testPanicTickAsync')]('red team panic');
    await assert.rejects(panicking, (e) => e.code === 'E_INTERNAL');
    const afterPanic = rt.tickTimings();
    wellFormed(afterPanic, 'after the panic');
    assert.equal(afterPanic.calls, 3, 'the rejected call settled too');
    await assert.rejects(rt.tickAsync(1), (e) => e.code === 'E_CLOSED');
    rt.close();
    assert.deepEqual(rt.tickTimings(), afterPanic, 'a refused call and close() add nothing');
    rt.close();
    assert.deepEqual(rt.tickTimings(), afterPanic, 'readable after close(), twice');

    const live = new Runtime(options());
    live.spawnMany(exampleAgent('gossip'), 10);
    await live.tickAsync(3);
    const restored = Runtime.restore(live.snapshot(), options());
    assert.deepEqual(restored.tickTimings(), { calls: 0, queueUs: 0, computeUs: 0, settleUs: 0, betweenUs: 0 }, 'a restored runtime starts afresh');
    live.close();
    restored.close();
  });
});

test('tickTimings(): the parts tile the wall time of a tickAsync loop with a dashboard attached, slow JS work between ticks, and tickAsync(n) of many ticks', async () => {
  const rt = new Runtime(options());
  rt.spawnMany(exampleAgent('gossip'), 200);
  const server = await rt.serve({});
  const t0 = performance.now();
  let settled = t0;
  for (let i = 0; i < 20; i++) {
    await rt.tickAsync(i % 5 === 0 ? 40 : 1);
    settled = performance.now();
    const until = settled + 1;
    while (performance.now() < until); // the program's own work between ticks
  }
  // The loop up to the last call's settle: the last 1 ms of work after it is not timed (a
  // busy-wait on a loaded machine can be preempted for milliseconds; here the loop once
  // measured 4.6 ms more than the parts, close to the 6 ms allowed when it was counted).
  const wallUs = (settled - t0) * 1000;
  const t = rt.tickTimings();
  wellFormed(t, 'loop');
  assert.equal(t.calls, 20);
  // Left out: the time before the first call and after the last settle up to `settled`.
  assert.ok(sum(t) <= wallUs + 1 && sum(t) > wallUs - 5000, `parts ${sum(t)} µs vs loop ${wallUs} µs: ${JSON.stringify(t)}`);
  assert.ok(t.betweenUs >= 19 * 1000, `19 gaps of at least 1 ms each: ${t.betweenUs}`);
  await server.close();
  rt.close();

  const big = new Runtime(options());
  big.spawnMany(exampleAgent('counter'), 3);
  const b0 = performance.now();
  await big.tickAsync(50_000);
  const bigWall = (performance.now() - b0) * 1000;
  const bt = big.tickTimings();
  wellFormed(bt, 'tickAsync(50,000)');
  assert.equal(bt.betweenUs, 0, 'one call: nothing between');
  assert.ok(bt.computeUs <= bigWall && bt.computeUs > 0.5 * bigWall, JSON.stringify(bt));
  assert.equal(big.currentTick, 50_000);
  big.close();
});

test('report.eventsEnd counts every event ever queued, dropped by a tiny maxEvents (4, 0) or drained: drained + eventsDropped() + still queued', async () => {
  for (const maxEvents of [4, 0, 100]) {
    const rt = new Runtime(options({ maxEvents, devMode: true, record: false }));
    const ids = rt.spawnMany(exampleAgent('gossip'), 10);
    let drained = 0;
    let last = -1;
    const check = (r, what) => {
      const queued = rt.drainEvents().length;
      drained += queued;
      assert.equal(r.eventsEnd, drained + rt.eventsDropped(), `maxEvents ${maxEvents}, ${what}`);
      assert.ok(r.eventsEnd >= last, `${what}: never back`);
      last = r.eventsEnd;
    };
    check(rt.tick(1), 'spawns before a tick');
    check(await rt.tickAsync(1), 'a quiet tickAsync');
    rt.kill(ids[0]);
    rt.shutdown(ids[1]);
    rt.spawn(LOGGER);
    check(rt.tick(3), 'kill, shutdown and a logging spawn between ticks');
    rt.spawn(exampleAgent('adv-trap'));
    rt.spawn(exampleAgent('flood')); // thousands of dead letters in one tick: past maxEvents inside the tick
    check(await rt.tickAsync(2), 'faults and a flood');
    check(rt.tick(1), 'the tick after');
    rt.close();
  }
});

test('the event feed with the shortcut is exactly the feed of an observer that polls after every tick: random sessions of spawns, kills, shutdowns, sends to the dead, tick(n), tickAsync(n), run({ hz }), a program that drains, maxEvents 6, 1 and 0', async () => {
  let shortcutsTaken = 0;
  for (const maxEvents of [undefined, 6, 1, 0]) {
    for (const drainP of [0, 0.4]) {
      const seed = 7919 * (maxEvents ?? 9) + Math.round(drainP * 10) + 1;
      const make = () => new Runtime(options({ seed: 3, devMode: true, record: false, ...(maxEvents === undefined ? {} : { maxEvents }) }));
      const shipped = make();
      const before = make();
      pollingEveryTick.add(before);
      const servers = [await shipped.serve({}), await before.serve({})];
      const both = (f) => [f(shipped), f(before)][0];
      const tolerant = (f) => (rt) => {
        try {
          return f(rt);
        } catch (e) {
          return e.code;
        }
      };
      const random = xorshift(seed);
      const live = [both((rt) => rt.spawn(LOGGER))];
      const drained = [[], []];
      for (let step = 0; step < 70; step++) {
        const x = random();
        if (x < 0.08) live.push(both((rt) => rt.spawn(LOGGER)));
        else if (x < 0.11) live.push(both((rt) => rt.spawn(exampleAgent('adv-trap'))));
        else if (x < 0.16) live.push(both((rt) => rt.spawn(exampleAgent('gossip'))));
        else if (x < 0.2) live.push(both((rt) => rt.spawn(QUIET)));
        else if (x < 0.26 && live.length) {
          const id = live.splice(Math.floor(random() * live.length), 1)[0];
          both(tolerant((rt) => rt.kill(id)));
        } else if (x < 0.3 && live.length) {
          const id = live[Math.floor(random() * live.length)];
          both(tolerant((rt) => rt.shutdown(id)));
        } else if (x < 0.38) {
          const id = 1 + Math.floor(random() * 30);
          both(tolerant((rt) => rt.send(id, 'm')));
        } else if (x < 0.55) {
          const n = 1 + Math.floor(random() * 3);
          const [a, b] = [shipped.tick(n), before.tick(n)];
          assert.equal(a.eventsEnd, b.eventsEnd);
        } else if (x < 0.75) {
          const n = 1 + Math.floor(random() * 3);
          const a = await shipped.tickAsync(n);
          const b = await before.tickAsync(n);
          assert.equal(a.eventsEnd, b.eventsEnd);
        } else if (x < 0.8) {
          const k = 1 + Math.floor(random() * 3);
          await shipped.run({ hz: 2000, until: shipped.currentTick + k }).done;
          await before.run({ hz: 2000, until: before.currentTick + k }).done;
        }
        if (random() < drainP) {
          drained[0].push(...shipped.drainEvents());
          drained[1].push(...before.drainEvents());
        }
      }
      const [a, b] = [await feed(servers[0]), await feed(servers[1])];
      const what = `maxEvents ${maxEvents}, drain ${drainP}`;
      assert.deepEqual(a, b, what);
      assert.deepEqual(drained[0], drained[1], what);
      assert.equal(a.events.length + a.missed, a.latest, `${what}: every cursor is held or counted missed`);
      const cursors = a.events.map((e) => e.cursor);
      assert.ok(cursors.every((c, i) => c >= 0 && c < a.latest && (i === 0 || c > cursors[i - 1])), `${what}: cursors ascend within the stream`);
      if (maxEvents === undefined && drainP === 0) assert.equal(a.missed, 0, 'nothing drained or dropped: nothing missed');
      shortcutsTaken += polls.get(before) - polls.get(shipped);
      for (const s of servers) await s.close();
      shipped.close();
      before.close();
    }
  }
  assert.ok(shortcutsTaken > 20, `the shortcut was taken (${shortcutsTaken} polls saved)`);
});

test('the event feed when a full disk fails the journal under a tickAsync loop with kills between ticks: every event, none missed', async (t) => {
  const mountpoint = mkdtempSync(join(tmpdir(), 'lockstep-redteam-full-'));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mountpoint]);
  if (mounted.status !== 0) {
    t.skip(`cannot mount a tmpfs (needs root): ${mounted.stderr}`);
    return;
  }
  try {
    const rt = new Runtime(options({ seed: 5, record: false, journal: { dir: join(mountpoint, 'j'), fsync: 'tick' } }));
    const ids = rt.spawnMany(exampleAgent('gossip'), 300);
    const server = await rt.serve({});
    let error;
    let k = 0;
    for (let i = 0; i < 3000 && !error; i++) {
      if (i % 7 === 3) rt.kill(ids[k++]);
      try {
        await rt.tickAsync(1);
      } catch (e) {
        error = e;
      }
    }
    assert.equal(error?.code, 'E_JOURNAL_IO', String(error));
    wellFormed(rt.tickTimings(), 'after the journal failed');
    const f = await feed(server);
    const all = rt.drainEvents();
    assert.equal(f.missed, 0);
    assert.deepEqual(f.events, all.map((e, cursor) => ({ ...e, cursor })));
    assert.ok(all.some((e) => e.type === 'killed'));
    await server.close();
    rt.close();
  } finally {
    spawnSync('umount', [mountpoint]);
  }
});

// Red team finding, fixed: index.js hands log lines to the sink after the report is made and
// before observer.ticked(); a sink that kills an agent queued an event the report's eventsEnd
// did not count, and the observer skipped its poll.
test('an event a log sink queues at a tick\'s end (after the report\'s eventsEnd was taken) reaches the feed even when the program drains right after the tick, as when the observer polled after every tick', async () => {
  const run = async (old) => {
    const r1 = new Runtime(options());
    const ids = r1.spawnMany(exampleAgent('gossip'), 5);
    if (old) pollingEveryTick.add(r1);
    const server = await r1.serve({});
    r1.tick(1);
    const r2 = new Runtime(options());
    r2.spawn(exampleAgent('adv-spin'));
    let killed = false;
    setLogger((line) => {
      if (!killed && /fuel_exhausted/.test(line.message)) {
        killed = true;
        r1.kill(ids[0]); // r1 is free: its tick has returned
      }
    }, { level: 'warn' });
    let queued;
    try {
      const other = r2.tickAsync(1);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000); // r2's tick ends on the pool meanwhile
      r1.tick(1); // a quiet tick; the end of this call hands r2's warning to the sink
      queued = r1.drainEvents();
      await other;
    } finally {
      setLogger(null);
    }
    assert.ok(killed, 'the sink saw the warning');
    // Every event r1 ever queued (none was drained before), in order: what the feed must hold.
    queued.push(...r1.drainEvents());
    const f = await feed(server);
    await server.close();
    r1.close();
    r2.close();
    return { f, queued };
  };
  // Each run is checked against its own events (on a loaded machine r2's warning may reach the
  // sink only after the program's drain, and the runs then queue different events).
  for (const old of [true, false]) {
    const { f, queued } = await run(old);
    assert.ok(queued.some((e) => e.type === 'killed'), 'the kill was queued');
    assert.deepEqual(f.events.map((e) => e.type), queued.map((e) => e.type), `${old ? 'polling after every tick' : 'with the shortcut'}: missed ${f.missed}`);
  }
});
