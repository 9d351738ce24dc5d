// Dashboard benchmarks (docs/DASHBOARD.md), each beside its baseline in the same run. Imported by
// benches/run.mjs; `node benches/dashboard.mjs [--quick] [--json]` runs it alone.
//
// 1. Overhead: tick time at 1,000 and 10,000 agents (counter agents, 1 and 2 workers, ticks driven
//    with tickAsync(1) so the event loop serves clients meanwhile) with no server, and with a
//    server and 10 clients (in another process, as browsers would be) each polling at 10 Hz
//    what the page shows (summary, history since the last tick, events since the cursor, a
//    page of 50 agents) in one `poll` request: 100 requests per second (the page itself asks 4
//    times a second, the agent page once). The two conditions alternate on one
//    runtime, round after round; the figure is the median of the rounds' ratios.
// 2. Snapshot cost at 100,000 agents: one summary (counts by state: O(agents), in Rust), one
//    agent table (the packed rows), one sorted page of 50 rows, and a summary request's round
//    trip through the server with snapshots forced fresh (minSnapshotMs: 0).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const WebSocket = require('ws');
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round1 = (x) => Math.round(x * 10) / 10;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A process holding `count` protocol clients (as browsers would be in another process). It
 * stays up across rounds: `connect(url, mix)` connects them and starts polling at `hz`, resolving
 * once all are connected; `disconnect()` stops them and resolves with the requests they sent,
 * got answered, and saw fail. 'summary': each asks for the summary at `hz`; 'page': each asks
 * for everything the page shows (summary, history since the last tick, events since the cursor,
 * a page of 50 agents sorted by messages sent) at `hz`, in one `poll` request; 'parts': the
 * same in four requests.
 */
const CLIENTS = `
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
const require = createRequire(process.argv[1]);
const WebSocket = require('ws');
const [count, hz] = [Number(process.argv[2]), Number(process.argv[3])];
let sockets = [];
let timers = [];
let totals;
async function connect(url, mix) {
  totals = { sent: 0, answered: 0, failed: 0 };
  await Promise.all(Array.from({ length: count }, async (_, k) => {
    const ws = new WebSocket(url, ['lockstep.v1']);
    sockets.push(ws);
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    // 'stalled': a client that never reads its replies (the server's send queue for it fills
    // to maxBufferedBytes, then it is closed with 4000).
    if (mix === 'stalled') ws._socket.pause();
    ws.on('error', () => {});
    let id = 0, since, cursor;
    const sawHistory = (h) => { if (h.ticks.tick.length) since = h.ticks.tick[h.ticks.tick.length - 1]; };
    ws.on('message', (d) => {
      const m = JSON.parse(String(d));
      if (m.id === undefined) return;
      totals.answered++;
      if (!m.ok) totals.failed++;
      else if (m.type === 'history') sawHistory(m.data);
      else if (m.type === 'events') cursor = m.data.next;
      else if (m.type === 'poll') {
        sawHistory(m.data.history);
        cursor = m.data.events.next;
      }
    });
    const send = (type, args) => { totals.sent++; ws.send(JSON.stringify({ id: ++id, type, ...args })); };
    // Spread the clients over the period, as independent browsers would be.
    await new Promise((resolve) => setTimeout(resolve, (k * 1000) / hz / count));
    timers.push(setInterval(() => {
      // As the page asks (dashboard/public/app.js): at most 16 new points a poll.
      const history = since === undefined ? { limit: 600, seconds: 0 } : { since, limit: 1200, seconds: 0, maxPoints: 16 };
      const events = cursor === undefined ? { limit: 200 } : { since: cursor, limit: 200 };
      const agents = { limit: 50, sort: 'sent', order: 'desc' };
      if (ws.readyState !== WebSocket.OPEN) return;
      if (mix === 'summary') send('summary');
      else if (mix === 'stalled') send('agents', { limit: 500 });
      else if (mix === 'hello') send('hello');
      else if (mix === 'page') send('poll', { history, events, agents });
      else {
        // 'parts': the same, one request each (how the page polled before 'poll').
        send('summary');
        send('history', history);
        send('events', events);
        send('agents', agents);
      }
    }, 1000 / hz));
  }));
  console.log('ready');
}
function disconnect() {
  timers.forEach(clearInterval);
  sockets.forEach((ws) => (ws._socket?.isPaused() ? ws.terminate() : ws.close()));
  timers = [];
  sockets = [];
  console.log(JSON.stringify(totals));
}
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [cmd, url, mix] = line.split(' ');
  if (cmd === 'connect') connect(url, mix);
  else if (cmd === 'disconnect') disconnect();
});
rl.on('close', () => process.exit(0));
`;

export function clientsProcess(count, hz) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CLIENTS, join(root, 'package.json'), String(count), String(hz)], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdout.setEncoding('utf8');
  const lines = [];
  let wake = null;
  child.stdout.on('data', (d) => {
    lines.push(...d.split('\n').filter(Boolean));
    if (wake) wake();
  });
  const next = async () => {
    while (lines.length === 0) await new Promise((resolve) => (wake = resolve));
    return lines.shift();
  };
  return {
    async connect(url, mix) {
      child.stdin.write(`connect ${url} ${mix}\n`);
      const line = await next();
      if (line !== 'ready') throw new Error(`clients: ${line}`);
    },
    async disconnect() {
      child.stdin.write('disconnect\n');
      return JSON.parse(await next());
    },
    close() {
      child.stdin.end();
    },
  };
}

/**
 * Mean wall time of `ticks` ticks driven with tickAsync(1), in µs, and the CPU time this
 * process spent per tick (every thread: the tick's and the server's; not the clients'). Wall
 * time is what a user sees; CPU time is what other processes on a busy machine disturb least.
 */
/** The main thread's CPU time so far in µs (Linux: /proc/thread-self/schedstat, in ns), or null. */
function mainThreadCpuUs() {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1000;
  } catch {
    return null;
  }
}

async function timeTicks(rt, ticks) {
  const main0 = mainThreadCpuUs();
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  for (let i = 0; i < ticks; i++) await rt.tickAsync(1);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  // The main thread's own CPU time (the event loop: starting ticks, the server's work, its
  // system calls), which the tick's threads do not blur.
  const main = main0 === null ? null : (mainThreadCpuUs() - main0) / ticks;
  // The event loop's busy time: the main thread's share (starting ticks, and the server's work).
  const elu = performance.eventLoopUtilization(elu0);
  return { wall: (ms * 1000) / ticks, cpu: (cpu.user + cpu.system) / ticks, main, loopMsPerS: (elu.active / ms) * 1000 };
}

export async function overhead(agents, { workers, rounds, ticks, clients, hz, mix, log }) {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers, record: false, checkpointIntervalTicks: 0 });
  rt.spawnMany(exampleAgent('counter'), agents);
  await timeTicks(rt, Math.max(20, ticks / 4)); // warm up
  const cs = clientsProcess(clients, hz);
  const without = [];
  const withServer = [];
  const cpuWithout = [];
  const cpuWith = [];
  const loopWithout = [];
  const loopWith = [];
  const mainWithout = [];
  const mainWith = [];
  let requests = { sent: 0, answered: 0, failed: 0 };
  for (let r = 0; r < rounds; r++) {
    // Alternate which condition goes first, so drift in the machine's load spreads evenly.
    const order = r % 2 === 0 ? ['none', 'served'] : ['served', 'none'];
    for (const cond of order) {
      if (cond === 'none') {
        const t = await timeTicks(rt, ticks);
        without.push(t.wall);
        cpuWithout.push(t.cpu);
        loopWithout.push(t.loopMsPerS);
        mainWithout.push(t.main);
        continue;
      }
      const server = await rt.serve({ clock: false });
      await cs.connect(server.wsUrl, mix);
      await timeTicks(rt, Math.max(10, ticks / 4)); // the first snapshots and histories, polling in its stride
      const t = await timeTicks(rt, ticks);
      withServer.push(t.wall);
      cpuWith.push(t.cpu);
      loopWith.push(t.loopMsPerS);
      mainWith.push(t.main);
      const s = await cs.disconnect();
      requests = { sent: requests.sent + s.sent, answered: requests.answered + s.answered, failed: requests.failed + s.failed };
      await server.close();
    }
  }
  cs.close();
  rt.close();
  const a = median(without);
  const b = median(withServer);
  // Each round ran both conditions back to back: the ratio within a round is what the
  // machine's drifting load disturbs least.
  const ratios = without.map((x, i) => withServer[i] / x);
  const cpuRatios = cpuWithout.map((x, i) => cpuWith[i] / x);
  const result = {
    agents,
    workers,
    clients,
    poll_hz: hz,
    mix,
    requests_per_s: clients * hz * (mix === 'parts' ? 4 : 1),
    rounds,
    ticks_per_round: ticks,
    tick_us_no_server: round1(a),
    tick_us_with_dashboard: round1(b),
    overhead_pct: round1((median(ratios) - 1) * 100),
    round_overheads_pct: ratios.map((r) => round1((r - 1) * 100)),
    cpu_us_per_tick_no_server: round1(median(cpuWithout)),
    cpu_us_per_tick_with_dashboard: round1(median(cpuWith)),
    cpu_overhead_pct: round1((median(cpuRatios) - 1) * 100),
    round_cpu_overheads_pct: cpuRatios.map((r) => round1((r - 1) * 100)),
    main_thread_cpu_us_per_tick_no_server: mainWithout[0] === null ? null : round1(median(mainWithout)),
    main_thread_cpu_us_per_tick_with_dashboard: mainWith[0] === null ? null : round1(median(mainWith)),
    event_loop_busy_ms_per_s_no_server: round1(median(loopWithout)),
    event_loop_busy_ms_per_s_with_dashboard: round1(median(loopWith)),
    rounds_no_server_us: without.map(round1),
    rounds_with_dashboard_us: withServer.map(round1),
    requests_answered: requests.answered,
    requests_failed: requests.failed,
  };
  log(`[bench] dashboard overhead, ${agents} agents, ${workers} worker(s), ${clients} clients polling ${{ summary: 'the summary', page: 'what the page shows (one poll request)', parts: 'what the page shows, one request per part' }[mix]} at ${hz} Hz (${result.requests_per_s} requests/s): ${result.tick_us_no_server} µs/tick without, ${result.tick_us_with_dashboard} µs with (median of the rounds' ratios: ${result.overhead_pct}%, rounds ${result.round_overheads_pct.join(' ')}); CPU time per tick ${result.cpu_us_per_tick_no_server} → ${result.cpu_us_per_tick_with_dashboard} µs (${result.cpu_overhead_pct}%, rounds ${result.round_cpu_overheads_pct.join(' ')}); main thread ${result.main_thread_cpu_us_per_tick_no_server} → ${result.main_thread_cpu_us_per_tick_with_dashboard} µs CPU per tick; event loop busy ${result.event_loop_busy_ms_per_s_no_server} → ${result.event_loop_busy_ms_per_s_with_dashboard} ms/s; ${requests.answered} requests answered, ${requests.failed} failed`);
  return result;
}

/**
 * The fixed cost a server adds to every tick (recording the tick, reading the event cursor),
 * with no client: 10 counter agents ticked with tick() (the event loop never turns, so no
 * snapshot is ever asked for), alternating with and without a server.
 */
export async function fixedCost({ rounds, ticks, log }) {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1, record: false, checkpointIntervalTicks: 0 });
  rt.spawnMany(exampleAgent('counter'), 10);
  const run = () => {
    const t = performance.now();
    for (let i = 0; i < ticks; i++) rt.tick();
    return ((performance.now() - t) * 1000) / ticks;
  };
  run();
  const diffs = [];
  const bare = [];
  for (let r = 0; r < rounds; r++) {
    const a = run();
    const server = await rt.serve();
    const b = run();
    await server.close();
    bare.push(a);
    diffs.push(b - a);
  }
  rt.close();
  const result = { agents: 10, tick_us_no_server: Math.round(median(bare) * 100) / 100, added_us_per_tick: Math.round(median(diffs) * 100) / 100, rounds_added_us: diffs.map((d) => Math.round(d * 100) / 100) };
  log(`[bench] a server with no client adds ${result.added_us_per_tick} µs per tick (10 agents, tick() ${result.tick_us_no_server} µs; rounds ${result.rounds_added_us.join(' ')})`);
  return result;
}

async function snapshotCost(agents, { reps, log }) {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2, record: false, checkpointIntervalTicks: 0, maxAgents: agents + 16 });
  const t0 = performance.now();
  rt.spawnMany(exampleAgent('counter'), agents);
  const spawnMs = performance.now() - t0;
  await rt.tickAsync(2);
  const tickUs = (await timeTicks(rt, 5)).wall;
  const server = await rt.serve({ minSnapshotMs: 0, minTableMs: 0, snapshotBudget: 0, clock: false, requestsPerSecond: 10_000, requestBurst: 10_000 });
  // The observer's own calls (index.js lends them through serve()'s port): reach them through
  // one protocol client, timing the server's reply, and directly through the exported pieces.
  const ws = new WebSocket(server.wsUrl, ['lockstep.v1']);
  await new Promise((resolve) => ws.once('open', resolve));
  let waiting = null;
  ws.on('message', (d) => {
    const m = JSON.parse(String(d));
    if (m.id !== undefined && waiting) waiting(m);
  });
  const ask = (type, args) => new Promise((resolve) => {
    waiting = resolve;
    ws.send(JSON.stringify({ id: 1, type, ...args }));
  });
  // Round trip of a request (µs), and the server-side cost of the snapshot it took (ms, stats()).
  const time = async (fn, kind) => {
    const xs = [];
    const costs = [];
    for (let i = 0; i < reps; i++) {
      const t = performance.now();
      await fn(i);
      xs.push((performance.now() - t) * 1000);
      if (kind) costs.push(server.stats().snapshots[kind].lastMs * 1000);
      await sleep(2);
    }
    return { request_us: round1(median(xs)), snapshot_us: kind ? round1(median(costs)) : null };
  };
  await ask('summary');
  // minSnapshotMs 0, no budget: every request takes a new snapshot.
  const summary = await time(() => ask('summary'), 'summary');
  const agentsFirstPage = await time(() => ask('agents', { limit: 50 }), 'table');
  const agentsSorted = await time((i) => ask('agents', { limit: 50, sort: i % 2 ? 'sent' : 'fuel', order: 'desc' }), 'table');
  const emptyRoundTrip = (await time(() => ask('hello'))).request_us;
  ws.close();
  await server.close();
  rt.close();
  const result = {
    agents,
    spawn_ms: Math.round(spawnMs),
    tick_us: round1(tickUs),
    summary_request_us: summary.request_us,
    summary_snapshot_us: summary.snapshot_us,
    agents_page_request_us: agentsFirstPage.request_us,
    agent_table_snapshot_us: agentsFirstPage.snapshot_us,
    agents_sorted_page_request_us: agentsSorted.request_us,
    empty_request_us: emptyRoundTrip,
  };
  log(`[bench] snapshots at ${agents} agents: summary request ${summary.request_us} µs (snapshot ${summary.snapshot_us} µs); agent page ${agentsFirstPage.request_us} µs (table snapshot ${agentsFirstPage.snapshot_us} µs); sorted page ${agentsSorted.request_us} µs; an empty request ${emptyRoundTrip} µs; a tick ${result.tick_us} µs`);
  return result;
}

export async function runDashboardBenches({ quick = false, log = console.error } = {}) {
  log(`[bench] dashboard: machine load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} on ${os.cpus().length} cores`);
  const clients = 10;
  const hz = 10;
  const rounds = quick ? 3 : 7;
  const ticksFor = (agents) => (agents >= 10_000 ? (quick ? 80 : 400) : quick ? 800 : 4000);
  const each = async (xs, fn) => {
    const out = [];
    for (const x of xs) out.push(...(await fn(x)));
    return out;
  };
  return {
    // 'summary': each client asks for the summary 10 times a second (100 requests/s in all);
    // 'page': each asks for everything the page shows (summary, history, events, a sorted page
    // of 50 agents) 10 times a second in one poll request (100 requests/s, ~1 MB/s of replies;
    // 'parts', not run here, asks for the same in four requests). workers = 2 uses
    // every core of a 2-core machine for the tick, leaving none to the event loop and the
    // clients; workers = 1 leaves one.
    overhead: [
      ...(await each([1000, 10_000], async (agents) => [
        await overhead(agents, { workers: 2, mix: 'summary', rounds, ticks: ticksFor(agents), clients, hz, log }),
        await overhead(agents, { workers: 2, mix: 'page', rounds, ticks: ticksFor(agents), clients, hz, log }),
        await overhead(agents, { workers: 1, mix: 'page', rounds, ticks: ticksFor(agents), clients, hz, log }),
      ])),
    ],
    fixed: await fixedCost({ rounds: quick ? 3 : 9, ticks: quick ? 20_000 : 50_000, log }),
    snapshot: [await snapshotCost(quick ? 20_000 : 100_000, { reps: quick ? 10 : 30, log })],
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await runDashboardBenches({ quick: process.argv.includes('--quick') });
  console.log(JSON.stringify(r, null, 2));
}
