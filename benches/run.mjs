// npm run bench [-- --json] [-- --quick] [-- --publish]
// Runs the core benchmarks (Rust: crates/lockstep-core/examples/bench_core.rs) and the JS-side
// ones below, each beside a baseline measured in the same run, and prints a Markdown table
// (or JSON with --json). Writes .bench-out/ (gitignored) only; --publish (a full run) also
// replaces the plot BENCHMARKS.md shows, docs/tick-vs-agents.svg. Figures go into
// BENCHMARKS.md by hand, with the date.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import os from 'node:os';
import { writeFileSync, mkdirSync } from 'node:fs';
import { runRingBenches } from './rings.mjs';
import { runLanguageModelBenches } from './language-model.mjs';
import { runDashboardBenches } from './dashboard.mjs';
import { runV8CompareBenches } from './v8-compare.mjs';
import { tickPlotSvg } from './plot.mjs';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const publish = process.argv.includes('--publish');
if (publish && quick) {
  console.error('[bench] --publish replaces the plot BENCHMARKS.md shows: it needs a full run, not --quick');
  process.exit(2);
}
const log = (...a) => (json ? process.stderr.write(a.join(' ') + '\n') : console.log(...a));

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

log('[bench] core (Rust) ... this takes about a minute');
const core = JSON.parse(
  execFileSync('cargo', ['run', '--release', '--quiet', '-p', 'lockstep-core', '--example', 'bench_core', '--', ...(quick ? ['--quick'] : [])], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
);

log('[bench] snapshots (Rust) ...');
const snapshots = JSON.parse(
  execFileSync('cargo', ['run', '--release', '--quiet', '-p', 'lockstep-core', '--example', 'bench_snapshot', '--', ...(quick ? ['--quick'] : [])], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
).snapshot;

log('[bench] worker scaling (Rust): a load that changes 100x, fixed 1 and 2 workers vs auto ...');
const workerScaling = JSON.parse(
  execFileSync('cargo', ['run', '--release', '--quiet', '-p', 'lockstep-core', '--example', 'bench_workers', '--', ...(quick ? ['--quick'] : [])], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
).workers;

log('[bench] DAG workflows (Rust): a 10-level, 1,000-agent DAG vs the same agents with no edges ...');
const dag = JSON.parse(
  execFileSync('cargo', ['run', '--release', '--quiet', '-p', 'lockstep-core', '--example', 'bench_dag', '--', ...(quick ? ['--quick'] : [])], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
).dag;

log('[bench] time slicing (Rust): agents that never use up their slice, and the cost of a suspension ...');
const slicing = JSON.parse(
  execFileSync('cargo', ['run', '--release', '--quiet', '-p', 'lockstep-core', '--example', 'bench_slicing', '--', ...(quick ? ['--quick'] : [])], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
).slicing;

log('[bench] recovery and time travel (Rust): a 100,000-tick journal with a snapshot every 1,000 ticks ...');
const recovery = JSON.parse(
  execFileSync('cargo', ['run', '--release', '--quiet', '-p', 'lockstep-core', '--example', 'bench_recovery', '--', ...(quick ? ['--quick'] : [])], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
).recovery;

// JS-side: one tick of 50 trivial agents called from JS (napi crossing included), against the
// cost of an empty napi call in the same run (stateHash()).
log('[bench] JS tick API');
const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1, checkpointIntervalTicks: 0 });
rt.spawnMany(exampleAgent('counter'), 50);
rt.tick(100);
const jsTick = [];
const napiCall = [];
for (let round = 0; round < (quick ? 5 : 30); round++) {
  let t = process.hrtime.bigint();
  for (let i = 0; i < 1000; i++) rt.tick();
  jsTick.push(Number(process.hrtime.bigint() - t) / 1000 / 1000);
  t = process.hrtime.bigint();
  for (let i = 0; i < 1000; i++) rt.stateHash();
  napiCall.push(Number(process.hrtime.bigint() - t) / 1000 / 1000);
}
const js = { tick50_from_js_median_us: median(jsTick), napi_call_median_us: median(napiCall) };

const rings = await runRingBenches({ quick, log });
const v8Compare = await runV8CompareBenches({ quick, log });
// In a process of its own: after the benches above (10,000 V8 wasm instances, millions of ring
// messages) this process's heap made every JS call slower, onnxruntime-node's and ours alike
// (inferSync 12.6 µs and onnxruntime-node 25.4 µs in one run, 9.9 and 21.0 alone), and the
// per-call overhead is measured against a Rust floor that runs in a fresh process.
log('[bench] inference (a fresh node process)');
const inference = JSON.parse(
  execFileSync(process.execPath, [join(root, 'benches', 'inference.mjs'), ...(quick ? ['--quick'] : [])], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 }),
);
const languageModel = await runLanguageModelBenches({ quick, log });
// The Rust floor was timed per call in turn with the JS path (benches/inference.mjs).
const tinyRow = inference.js_path.find((r) => r.rust_engine_run);
inference.rust_engine_run_us = tinyRow?.rust_engine_run.median_us ?? null;
inference.inferSync_over_rust_us = tinyRow?.inferSync_over_rust_us ?? null;

log('[bench] dashboard (rt.serve): overhead with 10 clients, snapshot cost at 100,000 agents');
const dashboard = await runDashboardBenches({ quick, log });

const result = {
  date: new Date().toISOString().slice(0, 10),
  machine: `${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${process.platform}-${process.arch}, node ${process.version}`,
  core,
  snapshots,
  recovery,
  workerScaling,
  dag,
  slicing,
  js,
  rings,
  v8_compare: v8Compare,
  inference,
  language_model: languageModel,
  dashboard,
};

// Machine-readable copy and the plot, for scripts that watch for regressions.
mkdirSync(join(root, '.bench-out'), { recursive: true });
writeFileSync(join(root, '.bench-out', 'latest.json'), JSON.stringify(result, null, 2));
const plotRows = core.tick.map((t) => ({ ...t, label: `${t.workers} worker${t.workers > 1 ? 's' : ''}` }));
const svg = tickPlotSvg(plotRows, `lockstep tick time vs agents (${result.date})`);
writeFileSync(join(root, '.bench-out', 'tick-vs-agents.svg'), svg);
// Tracked files change only when asked: --publish replaces the plot BENCHMARKS.md shows.
if (publish) writeFileSync(join(root, 'docs', 'tick-vs-agents.svg'), svg);

if (json) {
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
} else {
  console.log(`\n## ${result.date} — ${result.machine}\n`);
  console.log('| agents | workers | tick median µs | tick p99 µs | bare wasmtime loop µs (1 thread) | ratio |');
  console.log('|---:|---:|---:|---:|---:|---:|');
  for (const t of core.tick) {
    console.log(`| ${t.agents} | ${t.workers} | ${t.tick_median_us} | ${t.tick_p99_us} | ${t.bare_single_thread_median_us} | ${t.ratio_vs_bare} |`);
  }
  console.log('\n| gossip agents (1 worker) | no recording µs | in-memory log µs | journal group µs | journal tick µs | group vs memory | tick vs memory |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of core.recording) {
    console.log(`| ${r.agents} | ${r.none_us} | ${r.memory_us} | ${r.journal_group_us} | ${r.journal_tick_us} | ${r.journal_group_vs_memory_pct}% | ${r.journal_tick_vs_memory_pct}% |`);
  }
  console.log(`\n- host→agent call: ${core.call_ns.fuel_on} ns with fuel, ${core.call_ns.fuel_off} ns without`);
  console.log(`- spawn (instantiate + agent_init + record): ${core.spawn_us_per_agent} µs per agent`);
  console.log(`- memory per idle agent (RSS): ${(core.rss_bytes_per_idle_agent / 1024).toFixed(1)} KiB; memory maps per agent: ${core.memory_maps_per_agent}`);
  console.log(`- agents in one process: ${core.max_agents.reached} (${core.max_agents.stopped_because})`);
  console.log(`- baseline, wasmtime pooling allocator, 10,000 agents, 2 workers: tick ${core.pooling_allocator_10k.tick_median_us_2_workers} µs, spawn ${core.pooling_allocator_10k.spawn_us_per_agent} µs per agent`);
  {
    const w = workerScaling;
    const row = (name) => `${w[name].light_us} / ${w[name].heavy_us} / ${w[name].light_again_us} µs`;
    console.log(`- worker scaling, ${w.light_agents} → ${w.heavy_agents} → ${w.light_agents} gossip agents (median tick per phase): 1 worker ${row('fixed_1')}; 2 workers ${row('fixed_2')}; auto (≤ 2) ${row('auto_2')}, using ${w.auto_2.workers_min}..${w.auto_2.workers_max} workers`);
  }
  {
    const d = dag;
    const at = (name, workers) => d.runs.find((r) => r.name === name && r.workers === workers);
    for (const workers of [1, 2]) {
      const [none, graph, barrier] = ['no_edges', 'dag', 'dag_barrier'].map((n) => at(n, workers));
      console.log(`- DAG, ${d.agents} agents in ${d.levels} levels (${d.edges} edges, a message along each per tick), ${workers} worker(s), median tick: no edges ${none.tick_median_us} µs; the DAG ${graph.tick_median_us} µs (${(graph.tick_median_us / none.tick_median_us).toFixed(2)}×, every message delivered in the tick it was sent); with trigger 'all' on the last level ${barrier.tick_median_us} µs; connecting the ${d.edges} edges ${graph.connect_ms} ms`);
    }
  }
  {
    const s = slicing;
    const rows = s.never_hit.map((r) => `${r.agents} agents ${r.no_slice_us} → ${r.slice_us} µs (${r.ratio}×)`).join('; ');
    const sr = s.suspend_resume;
    console.log(`- time slicing, counters with a slice they never use up vs none (median tick, 1 worker): ${rows}; a suspension and resume: ${sr.per_suspension_ns} ns per agent per tick (${sr.agents} spinners suspended every tick ${sr.suspended_us} µs vs the same fuel returning ${sr.returning_us} µs)`);
  }
  {
    const r = recovery;
    console.log(`- recovery of a ${r.ticks.toLocaleString('en')}-tick journal (${r.agents} agents, ${(r.journal_bytes / 2 ** 20).toFixed(0)} MiB, a snapshot every ${r.snapshot_interval_ticks} ticks): ${r.recover_ms} ms from the snapshot of tick ${r.recover_from_snapshot} (${r.recover_ticks_replayed} ticks replayed) vs ${r.recover_without_snapshots_ms} ms replaying all ${r.recover_without_snapshots_ticks_replayed} ticks without snapshots (${r.speedup}×); openJournal ${r.cursor_open_ms} ms, seek to a random tick median ${r.seek_random_median_ms} ms (max ${r.seek_random_max_ms} ms, at most ${r.seek_most_ticks_replayed} ticks replayed) vs ${r.seek_without_snapshots_ms} ms to tick ${r.seek_without_snapshots_tick} without snapshots`);
  }
  for (const r of snapshots) {
    console.log(`- snapshot, ${r.agents} agents of one module, ${r.workers} worker(s): ${r.snapshot_ms} ms, ${(r.snapshot_bytes / 2 ** 20).toFixed(1)} MiB (${r.touched_vs_stored}× smaller than the ${(r.touched_bytes / 2 ** 20).toFixed(0)} MiB of touched pages; memcpy of those: ${r.memcpy_touched_ms} ms, ${r.snapshot_vs_memcpy}×); restore ${r.restore_ms} ms vs spawning fresh ${r.spawn_fresh_ms} ms (${r.restore_vs_spawn}×)`);
  }
  console.log(`- 50 agents, tick() called from JS: ${js.tick50_from_js_median_us.toFixed(2)} µs; an empty napi call: ${js.napi_call_median_us.toFixed(2)} µs`);
  for (const r of core.routing) console.log(`- agent→agent routing, ${r.agents} agents × ${r.fanout} messages per tick, ${r.workers} worker(s): ${(r.messages_per_s / 1e6).toFixed(2)} M msg/s (tick ${r.tick_median_us} µs)`);
  console.log('\n| counters | plain V8 instances, JS loop µs | lockstep 1 worker µs | 2 workers µs | ratio (1 / 2 workers) |\n|---:|---:|---:|---:|---|');
  for (const r of v8Compare) console.log(`| ${r.agents} | ${r.v8_loop_us} | ${r.lockstep_1_worker_us} | ${r.lockstep_2_workers_us} | ${r.ratio_1_worker}× / ${r.ratio_2_workers}× |`);
  console.log('\n| messages/s | 64 B | 1 KiB |\n|---|---:|---:|');
  const names = Object.keys(rings.payload_64);
  const fmt = (v) => (v > 100 ? `${(v / 1e6).toFixed(2)} M` : `${v}×`);
  for (const k of names) console.log(`| ${k} | ${fmt(rings.payload_64[k])} | ${fmt(rings.payload_1024[k])} |`);
  console.log('\n| inference (median µs, p99) | batch | lockstep inferSync | lockstep infer (async) | onnxruntime-node run | ratio (sync) |\n|---|---:|---:|---:|---:|---:|');
  for (const r of inference.js_path) {
    const f = (m) => `${m.median_us} (${m.p99_us})`;
    console.log(`| ${r.model} | ${r.batch} | ${f(r.lockstep_inferSync)} | ${f(r.lockstep_infer_async)} | ${f(r.onnxruntime_node_run)} | ${r.ratio_sync_vs_ort_node}× |`);
  }
  console.log(`\n- engine.run from Rust (tiny model, batch 1, median per call, timed in turn with the JS path): ${inference.rust_engine_run_us} µs; inferSync over it: ${inference.inferSync_over_rust_us} µs`);
  console.log(`\n| language model (tiny_lm, ${languageModel.tokens_per_sequence} greedy tokens each) | batched tokens/s | one at a time tokens/s | ratio |\n|---|---:|---:|---:|`);
  for (const r of languageModel.agents) console.log(`| ${r.agents} agents | ${r.batched_tokens_per_s} | ${r.one_at_a_time_tokens_per_s} | ${r.ratio} |`);
  const sl = languageModel.small_lm;
  if (sl) {
    console.log(`\n| language model (small_lm: hidden ${sl.model.hidden}, ${sl.model.layers} layers, ff ${sl.model.ff}; ${sl.tokens_per_sequence} greedy tokens each) | batched tokens/s | one at a time tokens/s | ratio |\n|---|---:|---:|---:|`);
    for (const r of sl.agents) console.log(`| ${r.agents} agents | ${r.batched_tokens_per_s} | ${r.one_at_a_time_tokens_per_s} | ${r.ratio} |`);
  }
  const sg = languageModel.small_lm_gqa;
  if (sg) {
    console.log(`\n| language model (small_lm_gqa: the same weights, GroupQueryAttention, KV cache in place) | batched tokens/s | one at a time tokens/s | ratio |\n|---|---:|---:|---:|`);
    for (const r of sg.agents) console.log(`| ${r.agents} agents | ${r.batched_tokens_per_s} | ${r.one_at_a_time_tokens_per_s} | ${r.ratio} |`);
  }
  const g = languageModel.generate;
  console.log(`\n- rt.generate, one sequence: ${g.one_sequence_tokens_per_s} tokens/s; JS greedy loop over onnxruntime-node: ${g.js_loop_onnxruntime_node_tokens_per_s} tokens/s (ratio ${g.ratio}); 8 calls at once: ${g.calls_8_tokens_per_s}, 32: ${g.calls_32_tokens_per_s} tokens/s`);
  const a = inference.agents_32;
  console.log(`- 32 agents asking every tick: ${a.batched_requests_per_s} requests/s batched vs ${a.one_call_per_request_per_s} with one call per request (${a.ratio}×)`);
  console.log('\n| dashboard: 10 clients at 10 Hz | polling | workers | tick µs, no server | with the dashboard | wall overhead | CPU per tick overhead |\n|---|---|---:|---:|---:|---:|---:|');
  for (const o of dashboard.overhead) console.log(`| ${o.agents} agents | ${o.mix} (${o.requests_per_s}/s) | ${o.workers} | ${o.tick_us_no_server} | ${o.tick_us_with_dashboard} | ${o.overhead_pct}% | ${o.cpu_overhead_pct}% |`);
  console.log(`- a dashboard server with no client adds ${dashboard.fixed.added_us_per_tick} µs per tick (10 agents: ${dashboard.fixed.tick_us_no_server} µs)`);
  for (const sn of dashboard.snapshot) console.log(`- dashboard snapshots at ${sn.agents} agents: summary ${sn.summary_snapshot_us} µs (request ${sn.summary_request_us} µs), agent table ${sn.agent_table_snapshot_us} µs (request ${sn.agents_page_request_us} µs)`);
  console.log(`\nJSON: .bench-out/latest.json; plot: .bench-out/tick-vs-agents.svg${publish ? ', copied to docs/tick-vs-agents.svg' : ' (`npm run bench -- --publish` to replace docs/tick-vs-agents.svg)'}`);
}
