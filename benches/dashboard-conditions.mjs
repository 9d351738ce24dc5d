// The dashboard's overhead, condition by condition, in one runtime: no server; a server with no
// client (what recording each tick costs); 10 clients polling the summary at 10 Hz; 10 clients
// polling what the page shows (one `poll`) at 10 Hz. The four alternate, round after round (the
// order reversed every other round); each round times `ticks` ticks driven with tickAsync(1).
// Per condition: the mean wall time per tick (what `benches/dashboard.mjs` reports) and the
// median, p90 and p99 of single ticks' wall times, each with the median of the rounds' ratios
// to no server. The clients run in another process (benches/dashboard.mjs's clientsProcess).
//
//   node benches/dashboard-conditions.mjs AGENTS WORKERS ROUNDS TICKS   (e.g. 1000 2 7 3000)
//
// Prints one JSON line; with $OUT set, also writes every round to $OUT/conditions-AGENTS-WORKERS.json.
// scripts/dashboard-on-more-cores.sh runs it on a machine with cores to spare (BENCHMARKS.md).
import { clientsProcess } from './dashboard.mjs';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const [agents = 1000, workers = 2, rounds = 7, ticks = agents >= 10_000 ? 400 : 3000] = process.argv.slice(2).map(Number);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers, record: false, checkpointIntervalTicks: 0 });
rt.spawnMany(exampleAgent('counter'), agents);
async function time() {
  const lat = new Float64Array(ticks);
  const t0 = performance.now();
  let prev = t0;
  for (let i = 0; i < ticks; i++) { await rt.tickAsync(1); const t = performance.now(); lat[i] = t - prev; prev = t; }
  const mean = ((performance.now() - t0) * 1000) / ticks;
  lat.sort();
  return { mean, p50: lat[Math.floor(ticks / 2)] * 1000, p90: lat[Math.floor(ticks * 0.9)] * 1000, p99: lat[Math.floor(ticks * 0.99)] * 1000 };
}
await time(); await time();
const cs = clientsProcess(10, 10);
const conds = ['none', 'server', 'summary', 'page'];
const res = Object.fromEntries(conds.map((c) => [c, []]));
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? [...conds].reverse() : conds;
  for (const c of order) {
    if (c === 'none') { res[c].push(await time()); continue; }
    const server = await rt.serve({ clock: false });
    if (c !== 'server') await cs.connect(server.wsUrl, c);
    await time();
    res[c].push(await time());
    if (c !== 'server') await cs.disconnect();
    await server.close();
  }
}
cs.close(); rt.close();
const out = { agents, workers, rounds, ticks };
for (const c of conds) {
  out[c] = {};
  for (const k of ['mean', 'p50', 'p90', 'p99']) {
    out[c][k] = Math.round(median(res[c].map((x) => x[k])) * 10) / 10;
    if (c !== 'none') out[c][k + '_overhead_pct'] = Math.round((median(res[c].map((x, i) => x[k] / res.none[i][k])) - 1) * 1000) / 10;
  }
}
console.log(JSON.stringify(out));
if (process.env.OUT) writeFileSync(`${process.env.OUT}/conditions-${agents}-${workers}.json`, JSON.stringify({ out, res }, null, 1));
