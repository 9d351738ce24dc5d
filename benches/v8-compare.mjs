// Issue 13's last figure: a tick of N `counter` agents in lockstep vs the same module as N plain
// V8 `WebAssembly.Instance`s stepped from a JS loop — what a user writes without lockstep (no
// fuel, no memory cap per agent, no hashing, no replay log, one thread). Each side does what a
// tick means for these agents: every agent gets its step context written into its io buffer and
// its `agent_step` called once. Median µs per tick; the runtimes take turns in blocks of ticks so
// machine load falls on all alike. Imported by benches/run.mjs; `node benches/v8-compare.mjs`
// runs it alone.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');

const nowUs = () => Number(process.hrtime.bigint()) / 1e3;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** N instances of `bytes` with the imports the counter needs, initialised, and a tick function. */
export function plainV8(bytes, n) {
  const module = new WebAssembly.Module(bytes);
  const imports = { lockstep: { send: () => 0, send_plain: () => 0, report_panic: () => {} } };
  const agents = [];
  for (let i = 0; i < n; i++) {
    const { exports } = new WebAssembly.Instance(module, imports);
    exports.agent_init();
    const io = exports.lockstep_io_buffer();
    agents.push({ step: exports.agent_step, view: new DataView(exports.memory.buffer), io, id: BigInt(i + 1) });
  }
  let tick = 0n;
  const max = BigInt(n);
  return () => {
    for (const a of agents) {
      // The step context (docs/ABI.md): ABI version, inbox length, tick, agent id, max agent id.
      const v = a.view;
      v.setUint32(a.io, 2, true);
      v.setUint32(a.io + 4, 0, true);
      v.setBigUint64(a.io + 8, tick, true);
      v.setBigUint64(a.io + 16, a.id, true);
      v.setBigUint64(a.io + 24, max, true);
      a.step(a.io);
    }
    tick++;
  };
}

export async function runV8CompareBenches({ quick = false, log = console.error } = {}) {
  const bytes = readFileSync(exampleAgent('counter'));
  const rows = [];
  for (const n of [50, 1000, 10000]) {
    log(`[bench] lockstep vs plain V8 instances, ${n} counters`);
    const v8Tick = plainV8(bytes, n);
    const rts = [1, 2].map((workers) => {
      const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers, maxAgents: n + 1, checkpointIntervalTicks: 0 });
      rt.spawnMany(bytes, n);
      rt.tick(10);
      return rt;
    });
    for (let i = 0; i < 10; i++) v8Tick();
    const block = Math.max(2, Math.round((quick ? 20_000 : 100_000) / n));
    const samples = { v8: [], w1: [], w2: [] };
    for (let round = 0; round < (quick ? 5 : 15); round++) {
      let t = nowUs();
      for (let i = 0; i < block; i++) v8Tick();
      samples.v8.push((nowUs() - t) / block);
      for (const [k, rt] of [['w1', rts[0]], ['w2', rts[1]]]) {
        t = nowUs();
        rt.tick(block);
        samples[k].push((nowUs() - t) / block);
      }
    }
    const [v8, w1, w2] = [median(samples.v8), median(samples.w1), median(samples.w2)];
    rows.push({ agents: n, v8_loop_us: +v8.toFixed(1), lockstep_1_worker_us: +w1.toFixed(1), lockstep_2_workers_us: +w2.toFixed(1), ratio_1_worker: +(w1 / v8).toFixed(2), ratio_2_workers: +(w2 / v8).toFixed(2) });
    for (const rt of rts) rt.close();
  }
  return rows;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  console.log(JSON.stringify(await runV8CompareBenches({ quick: process.argv.includes('--quick') }), null, 1));
}
