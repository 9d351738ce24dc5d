// Red team (ninth session): siblings of the run() bug fixed then (a loop that awaited someone
// else's tick and went on without looking at a stop() that came meanwhile). Each test is named
// after what it guards and failed on the code before its fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createRequire } from 'node:module';
import { connect } from './dashboard-helpers.mjs';
import { withTestHooks } from './fixtures/test-hooks.mjs';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const dashboard = require('../dashboard/server.js');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** `n` gossip agents: ticks of a few milliseconds, so that calls land while one runs. */
function gossip(n = 2000) {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1, seed: 7 });
  rt.spawnMany(exampleAgent('gossip'), n);
  return rt;
}
const settled = (p) => p.then((v) => ({ ok: true, v }), (e) => ({ ok: false, e }));
/** Errors thrown from timers and socket listeners while `fn` runs (they would crash a program). */
async function uncaughtDuring(fn) {
  const seen = [];
  const record = (e) => seen.push(e);
  process.on('uncaughtException', record);
  try {
    await fn();
    await sleep(50);
  } finally {
    process.off('uncaughtException', record);
  }
  return seen;
}

test('dashboard_pause_right_after_play_stays_paused_and_a_closed_server_leaves_no_run', async () => {
  // play() while playing pauses the old run, then starts a new one: a pause() (or the
  // server's close()) sent meanwhile was lost, the new run started after it.
  const rt = gossip();
  const server = await rt.serve({ controls: true });
  await server.play();
  await sleep(20);
  const replay = server.play({ hz: 50 }); // the page's rate changed: pause, play again
  const pause = server.pause(); // and the user pressed pause right after
  await Promise.all([replay, pause]);
  await sleep(30);
  assert.equal(server.clock.playing, false, JSON.stringify(server.clock));
  const at = rt.currentTick;
  await sleep(30);
  assert.equal(rt.currentTick, at, 'nothing ticks after the pause');
  await server.close();

  const other = await rt.serve();
  await other.play();
  await sleep(20);
  const late = settled(other.play());
  await other.close();
  const r = await late;
  assert.ok(!r.ok && r.e.code === 'E_CLOSED', `a play() that outlived the close refuses: ${r.ok ? 'played' : r.e.code}`);
  const { reason } = await rt.run({ until: 0 }).done; // E_BUSY if a run of the server still drove it
  assert.equal(reason, 'until');
  rt.close();
});

test('dashboard_controls_sent_back_to_back_run_in_order_without_busy', async () => {
  const rt = gossip(3000);
  const server = await rt.serve({ controls: true });
  const c = await connect(server);
  // Three plays (the rate field changed twice): each resolves, the last rate wins.
  await server.play();
  await sleep(20);
  const plays = await Promise.all([server.play({ hz: 100 }), server.play({ hz: 200 })]);
  assert.deepEqual(plays.map((p) => p.hz), [100, 200]);
  assert.deepEqual([server.clock.playing, server.clock.hz], [true, 200]);
  // pause then step, two clicks over the protocol: the step waits for the pause's run to end.
  const [p, s] = await Promise.all([c.request('pause'), c.request('step', { ticks: 1 })]);
  assert.ok(p.ok && p.data.playing === false, JSON.stringify(p));
  assert.ok(s.ok, `step after pause: ${JSON.stringify(s.error)}`);
  // The same through the API without awaiting the pause, and pause then play.
  await server.play();
  await sleep(20);
  const paused = server.pause();
  const step = await settled(server.step());
  await paused;
  assert.ok(step.ok, step.ok ? '' : `${step.e.code}: ${step.e.message}`);
  await server.play();
  await sleep(20);
  const [, again] = await Promise.all([server.pause(), settled(server.play({ hz: 50 }))]);
  assert.ok(again.ok && server.clock.playing, again.ok ? JSON.stringify(server.clock) : again.e.message);
  // A queue of controls behind a long step is bounded: past 16, busy (not an unbounded queue).
  await server.pause();
  const long = server.step(200);
  const flood = await Promise.all(Array.from({ length: 20 }, () => settled(server.pause())));
  const refused = flood.filter((r) => !r.ok);
  assert.equal(refused.length, 20 - 15, 'the step and 15 more wait; the rest are refused');
  assert.ok(refused.every((r) => r.e.code === 'E_BUSY' && /clock controls already wait/.test(r.e.message)));
  await long;
  await c.close();
  await server.close();
  rt.close();
});

test('run_closed_during_its_own_tick_resolves_stopped_without_calling_onTick_or_until', async () => {
  // close() says a run() ends with done resolving 'stopped'; its loop still called onTick and
  // until on the closed runtime, and one that read it (the documented use) rejected done.
  for (const make of [(rt) => ({ onTick: () => rt.drainMessages() }), (rt) => ({ until: () => rt.currentTick > 1e9 })]) {
    const rt = gossip(3000);
    let calls = 0;
    const o = make(rt);
    if (o.onTick) {
      const f = o.onTick;
      o.onTick = (r) => {
        calls++;
        return f(r);
      };
    }
    const handle = rt.run(o); // returns with its first tick in flight
    rt.close();
    const done = await handle.done;
    assert.equal(done.reason, 'stopped');
    assert.equal(calls, 0);
  }
});

test('dashboard_closed_while_the_program_ticks_turns_its_message_tap_off', async () => {
  // The tap of the agents the dashboard watched stayed on (copying their messages every
  // tick) when the server closed while a tick ran: detach skipped it then, and nothing came back.
  let port = null;
  const serve = dashboard.serve;
  dashboard.serve = (rt, p, o) => {
    port = p;
    return serve(rt, p, o);
  };
  try {
    const rt = gossip();
    const server = await rt.serve();
    const c = await connect(server);
    await c.data('agent', { agent: 5 });
    let ticking = true;
    const loop = (async () => {
      while (ticking) await rt.tickAsync(1);
    })();
    await sleep(30);
    await c.close();
    await server.close(); // while the loop's ticks run
    ticking = false;
    await loop;
    await rt.tickAsync(2);
    assert.equal(port.watched(5), null, 'the tap is off');
    rt.close();
  } finally {
    dashboard.serve = serve;
  }
});

test('runtime_closed_while_serve_starts_closes_its_server', async () => {
  // close() in the microtasks between the observer's attach and serve() resolving found no
  // server to close: it kept listening on a closed runtime.
  const listen = http.Server.prototype.listen;
  let hook = null;
  http.Server.prototype.listen = function (p, host, cb) {
    return listen.call(this, p, host, () => {
      cb();
      if (hook) hook();
    });
  };
  const hops = (n, f) => (n === 0 ? f() : queueMicrotask(() => hops(n - 1, f)));
  try {
    for (let depth = 0; depth < 8; depth++) {
      const rt = gossip(5);
      hook = () => hops(depth, () => rt.close());
      const r = await settled(rt.serve());
      hook = null;
      if (!r.ok) {
        assert.equal(r.e.code, 'E_CLOSED');
        continue;
      }
      await sleep(30);
      const answer = await new Promise((resolve) => http.get(`http://127.0.0.1:${r.v.port}/`, (res) => { res.resume(); resolve(res.statusCode); }).on('error', () => resolve('refused')));
      assert.equal(answer, 'refused', `depth ${depth}: the server still listened after rt.close()`);
    }
  } finally {
    http.Server.prototype.listen = listen;
  }
});

test('runtime_closed_by_a_panic_closes_like_close_and_nothing_throws_from_timers_or_sockets', async () => {
  await withTestHooks(async () => {
    // A client that watched an agent leaves after the panic: its unwatch ran against the
    // closed runtime and threw E_CLOSED from ws's 'close' listener.
    const a = gossip(10);
    const server = await a.serve();
    const c = await connect(server);
    await c.data('agent', { agent: 1 });
    const leaving = await uncaughtDuring(async () => {
      await settled(a[Symbol.for('lockstep.testPanicTickAsync')]('boom'));
      assert.ok(a.closed);
      await c.close();
    });
    assert.deepEqual(leaving.map((e) => e.code), []);
    // Closed as close() closes it, and its E_CLOSED still says why.
    assert.throws(() => a.run(), (e) => e.code === 'E_CLOSED' && /panic inside a tickAsync closed it: .*boom/.test(e.message));
    await assert.rejects(a.request(1, 'x'), (e) => e.code === 'E_CLOSED' && /panic/.test(e.message));
    // server.close() after the panic: it rejected (E_CLOSED from detach) and kept listening.
    const closing = await settled(server.close());
    assert.ok(closing.ok, closing.ok ? '' : closing.e.message);
    const answer = await new Promise((resolve) => http.get(`http://127.0.0.1:${server.port}/`, (res) => { res.resume(); resolve(res.statusCode); }).on('error', () => resolve('refused')));
    assert.equal(answer, 'refused');

    // Dashboard work deferred when the tick panics: its fallback timer called the closed runtime.
    const b = gossip(3000);
    const long = b.tickAsync(30);
    const other = await b.serve(); // its first summary waits for the ticks
    await long;
    const deferred = await uncaughtDuring(() => settled(b[Symbol.for('lockstep.testPanicTickAsync')]('boom')));
    assert.deepEqual(deferred.map((e) => e.code), []);
    assert.ok((await settled(other.close())).ok);
    b.close();
  });
});

test('request_never_makes_a_programs_own_tickAsync_loop_busy', async () => {
  // The request pump woke after the program's tick and ticked before the program's next
  // call (its continuation runs a few promise hops later), which then threw E_BUSY.
  const rt = gossip(500);
  const echo = rt.spawn(exampleAgent('echo'));
  const requests = [];
  let busy = 0;
  for (let i = 0; i < 40; i++) {
    if (i === 3) requests.push(rt.request(echo, 'between ticks'));
    const t = rt.tickAsync(1);
    if (i === 12) requests.push(rt.request(echo, 'during a tick'));
    try {
      await t;
    } catch (e) {
      if (e.code !== 'E_BUSY') throw e;
      busy++;
    }
  }
  await Promise.all(requests);
  assert.equal(busy, 0);
  rt.close();
});
