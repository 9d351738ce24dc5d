// The dashboard's overhead, condition by condition, in one runtime: no server; a server with no
// client (what recording each tick costs); 10 clients polling the summary at 10 Hz; 10 clients
// polling what the page shows (one `poll`) at 10 Hz. Two more tell where an overhead comes from:
// 'hello', 10 clients asking the cheapest request at 10 Hz (the transport's share: sockets,
// `ws`, holding), and 'foreign', no server here but the same clients polling a WebSocket server
// in a third process that answers like a summary (the machine's share: the clients' process and
// the network stack, none of it in this process). And 'stalled': 10 clients that never read,
// each asking a 500-row agent page at 10 Hz (the server's queues for them fill; the runtime
// must keep its pace). The conditions alternate, round after round (the
// order reversed every other round); each round times `ticks` ticks driven with tickAsync(1).
// Per condition: the mean wall time per tick (what `benches/dashboard.mjs` reports) and the
// median, p90 and p99 of single ticks' wall times, each with the median of the rounds' ratios
// to no server (for the mean, also a 95% bootstrap interval of that median), and where the
// time went (rt.tickTimings(): waiting for a pool thread, the ticks, waiting for the JS
// thread, the JS thread's work between ticks). The clients run in another process (benches/dashboard.mjs's clientsProcess).
//
//   node benches/dashboard-conditions.mjs AGENTS WORKERS ROUNDS TICKS   (e.g. 1000 2 7 3000)
//
// Prints one JSON line; with $OUT set, also writes every round to $OUT/conditions-AGENTS-WORKERS.json.
// scripts/dashboard-on-more-cores.sh runs it on a machine with cores to spare (BENCHMARKS.md).
import { clientsProcess } from './dashboard.mjs';
import { writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const [agents = 1000, workers = 2, rounds = 7, ticks = agents >= 10_000 ? 400 : 3000] = process.argv.slice(2).map(Number);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/**
 * A 95% interval for the median of `xs` by the bootstrap (2,000 resamples, a fixed seed so a
 * run's JSON is reproducible from its rounds): how far the figure itself may be off, which
 * single rounds' scatter (the interquartile range) does not say.
 */
function medianInterval(xs) {
  let seed = 0x9e3779b9;
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const medians = Array.from({ length: 2000 }, () => median(xs.map(() => xs[Math.floor(random() * xs.length)])));
  medians.sort((a, b) => a - b);
  return [medians[49], medians[1949]];
}
const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers, record: false, checkpointIntervalTicks: 0 });
rt.spawnMany(exampleAgent('counter'), agents);
/** A WebSocket server in another process answering every request with a summary-sized reply. */
function foreignServer() {
  const code = `const { WebSocketServer } = require(process.argv[1]);
const data = { tick: 1, agents: Array.from({ length: 60 }, (_, i) => ({ state: 'running', n: i * 1000 })) };
const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' }, () => console.log(wss.address().port));
wss.on('connection', (ws) => ws.on('message', (d) => { const m = JSON.parse(String(d)); ws.send(JSON.stringify({ id: m.id, ok: true, type: m.type, data })); }));`;
  const child = spawn(process.execPath, ['-e', code, require.resolve('ws')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = new Promise((resolve) => child.stdout.once('data', (d) => resolve(`ws://127.0.0.1:${String(d).trim()}/ws`)));
  return { url, close: () => child.kill() };
}
const PARTS = ['queueUs', 'computeUs', 'settleUs', 'betweenUs'];
async function time(count = ticks) {
  const lat = new Float64Array(count);
  const before = rt.tickTimings();
  const t0 = performance.now();
  let prev = t0;
  for (let i = 0; i < count; i++) { await rt.tickAsync(1); const t = performance.now(); lat[i] = t - prev; prev = t; }
  const mean = ((performance.now() - t0) * 1000) / count;
  const after = rt.tickTimings();
  // Where each tick's wall time went (rt.tickTimings(): the four tile a tickAsync loop).
  const parts = Object.fromEntries(PARTS.map((p) => [p, (after[p] - before[p]) / count]));
  lat.sort();
  return { mean, p50: lat[Math.floor(count / 2)] * 1000, p90: lat[Math.floor(count * 0.9)] * 1000, p99: lat[Math.floor(count * 0.99)] * 1000, parts };
}
// After connecting, a quarter of a round lets the clients' first requests (the full history,
// the first agent table) pass before the timed ticks.
const settleTicks = Math.ceil(ticks / 4);
await time(); await time();
const cs = clientsProcess(10, 10);
const foreign = foreignServer();
const conds = ['none', 'server', 'summary', 'page', 'hello', 'foreign', 'stalled'];
const res = Object.fromEntries(conds.map((c) => [c, []]));
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? [...conds].reverse() : conds;
  for (const c of order) {
    if (c === 'none') { res[c].push(await time()); continue; }
    if (c === 'foreign') {
      await cs.connect(await foreign.url, 'summary');
      await time(settleTicks);
      res[c].push(await time());
      await cs.disconnect();
      continue;
    }
    const server = await rt.serve({ clock: false });
    if (c !== 'server') await cs.connect(server.wsUrl, c);
    await time(settleTicks);
    res[c].push(await time());
    if (c !== 'server') await cs.disconnect();
    await server.close();
  }
}
cs.close(); rt.close(); foreign.close();
const out = { agents, workers, rounds, ticks };
for (const c of conds) {
  out[c] = {};
  for (const k of ['mean', 'p50', 'p90', 'p99']) {
    out[c][k] = Math.round(median(res[c].map((x) => x[k])) * 10) / 10;
    if (c === 'none') continue;
    // Each round's ratio to that round's no-server time; the median, and the middle half of
    // the rounds (how far single rounds scatter: compare with the 'hello'/'foreign' controls).
    const ratios = res[c].map((x, i) => x[k] / res.none[i][k]).sort((a, b) => a - b);
    const pct = (r) => Math.round((r - 1) * 1000) / 10;
    out[c][k + '_overhead_pct'] = pct(median(ratios));
    out[c][k + '_overhead_pct_iqr'] = [pct(ratios[Math.floor((ratios.length - 1) / 4)]), pct(ratios[Math.ceil(((ratios.length - 1) * 3) / 4)])];
    if (k === 'mean') out[c].mean_overhead_pct_ci95 = medianInterval(ratios).map(pct);
  }
  // µs per tick in each part; for a server condition also the median over rounds of its
  // difference from that round's no-server part, as a share of the no-server tick: which part
  // an overhead comes from (settle and between: the JS thread; compute: the tick's threads).
  out[c].parts_us = Object.fromEntries(PARTS.map((p) => [p, Math.round(median(res[c].map((x) => x.parts[p])) * 10) / 10]));
  if (c !== 'none') {
    out[c].parts_overhead_pct = Object.fromEntries(
      PARTS.map((p) => [p, Math.round(median(res[c].map((x, i) => (x.parts[p] - res.none[i].parts[p]) / res.none[i].mean)) * 1000) / 10]),
    );
  }
}
console.log(JSON.stringify(out));
if (process.env.OUT) writeFileSync(`${process.env.OUT}/conditions-${agents}-${workers}.json`, JSON.stringify({ out, res }, null, 1));
