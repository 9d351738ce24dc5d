// The demo: a few hundred sandboxed agents gossip until every one knows the largest value.
// Three misbehaving agents (an infinite loop, a memory bomb, a panic) are thrown in: they
// are contained and everyone else carries on. At the end the recorded session is replayed
// and verified tick by tick.
//
//   npm run demo                      (defaults below)
//   node demo/gossip.mjs --agents 2000 --workers 2 --seed 42
//   npm run demo -- --ui              the same at a watchable pace, with the live dashboard
//   node demo/gossip.mjs --ui --hz 5 --port 7357 [--host 0.0.0.0]   (until Ctrl-C, or --ticks)
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, replay, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');

// --name value, or --name alone (true).
const args = {};
process.argv.slice(2).forEach((a, i, all) => {
  if (a.startsWith('--')) args[a.slice(2)] = all[i + 1] !== undefined && !all[i + 1].startsWith('--') ? all[i + 1] : true;
});
if (args.ui) {
  await import('./gossip-ui.mjs');
  // gossip-ui.mjs runs until Ctrl-C (or --ticks) and exits the process itself.
  await new Promise(() => {});
}
const AGENTS = Number(args.agents ?? 300);
const WORKERS = Number(args.workers ?? 2);
const SEED = Number(args.seed ?? 7);
const MAX_TICKS = Number(args.ticks ?? 60);

const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: WORKERS, seed: SEED, checkpointIntervalTicks: 10, memoryLimitBytes: 8 << 20 });
const gossip = rt.loadModule(exampleAgent('gossip'));
const ids = rt.spawnMany(gossip, AGENTS);
const troublemakers = ['adv-spin', 'adv-membomb', 'adv-trap'].map((name) => [name, rt.spawn(exampleAgent(name))]);
rt.send(troublemakers[2][1], null, { kind: 2 }); // "panic in your next step"

console.log(`lockstep demo: ${AGENTS} gossip agents + ${troublemakers.length} adversarial, ${WORKERS} workers, seed ${SEED}`);
console.log('tick  hash              routed  faults  knowMax  µs/tick');

const best = new Map();
let globalMax = 0n;
let convergedAt = -1;
for (let t = 0; t < MAX_TICKS; t++) {
  const started = process.hrtime.bigint();
  const r = rt.tick();
  const micros = Number(process.hrtime.bigint() - started) / 1000;
  for (const m of rt.drainMessages()) {
    if (m.kind === 2) {
      const v = m.payload.readBigUInt64LE(0);
      best.set(m.from, v);
      if (v > globalMax) globalMax = v;
    }
  }
  for (const e of rt.drainEvents()) {
    if (e.type === 'fault') console.log(`      ! agent ${e.agent} ${e.fault.kind} in ${e.fault.call}: ${e.fault.detail.split('\n')[0]}`);
  }
  const know = ids.filter((id) => best.get(id) === globalMax).length;
  console.log(
    `${String(r.tick).padStart(4)}  ${r.hash.slice(0, 16)}  ${String(r.messagesRouted).padStart(6)}  ${String(r.faults).padStart(6)}  ${String(know).padStart(7)}  ${micros.toFixed(0).padStart(7)}`,
  );
  if (know === AGENTS && convergedAt < 0) {
    convergedAt = r.tick;
    if (t >= 12) break;
  }
  if (convergedAt >= 0 && t >= convergedAt + 2 && t >= 12) break;
}

const deep = rt.deepHash();
console.log(convergedAt >= 0 ? `all ${AGENTS} agents know the maximum since tick ${convergedAt}` : 'did not converge within the tick limit');
for (const [name, id] of troublemakers) {
  const info = rt.inspect(id);
  console.log(`${name.padEnd(12)} agent ${id}: ${info.state}${info.fault ? ` (${info.fault.kind} in ${info.fault.call})` : ''}`);
}
const dead = rt.drainDeadLetters();
console.log(`dead letters: ${dead.length} (messages to agents that had died)`);

const log = rt.stopRecording();
const verdict = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
console.log(`replay (1 worker) of a ${(log.length / 1024).toFixed(0)} KiB log: ${verdict.ticksVerified} ticks and ${verdict.checkpointsVerified} checkpoints verified, ${verdict.ok ? 'identical' : `DIVERGED at tick ${verdict.divergence.tick}`}`);
console.log(`final state hash: ${rt.stateHash()}`);
console.log(`deep hash (every agent's memory): ${deep.hash}`);
if (!verdict.ok || verdict.finalHash !== rt.stateHash()) process.exit(1);
