// The inference demo: agents each hold samples and ask a real model to classify them. All
// requests of a tick are batched into one ONNX Runtime call; answers arrive next tick. At the
// end the recorded session is replayed — from the log alone, without running the model.
//
//   node demo/classify.mjs [--agents 64] [--ticks 8] [--providers cuda,cpu]
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, replay, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const AGENTS = Number(args.agents ?? 64);
const TICKS = Number(args.ticks ?? 8);
const providers = (args.providers ?? 'cuda,cpu').split(',');

const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2, seed: 5, inference: { providers } });
const model = rt.loadModel(new URL('../models/mlp_classifier.onnx', import.meta.url));
const slot = rt.registerAgentModel(model.id);
console.log(`inference demo: ${AGENTS} classifier agents, model ${model.id.slice(0, 12)}… (slot ${slot})`);
console.log(`  requested providers: ${providers.join(' → ')}; served by: ${model.provider}`);
for (const why of model.fallbackReasons) console.log(`  fallback: ${why.replace(/^(\w+): [\s\S]*FAIL : /, '$1: ').split('\n')[0]}`);
console.log(`  ONNX Runtime: ${rt.inferenceLibrary()}`);
rt.spawnMany(exampleAgent('classifier'), AGENTS);

const counts = [0, 0, 0];
for (let t = 0; t < TICKS; t++) {
  const r = rt.tick();
  let answers = 0;
  for (const m of rt.drainMessages()) {
    if (m.kind === 3) {
      counts[Number(m.payload.readBigUInt64LE(0))]++;
      answers++;
    }
  }
  console.log(`tick ${String(r.tick).padStart(2)}  ${r.hash.slice(0, 16)}  requests ${String(r.inferenceRequests).padStart(3)} → ${r.inferenceCalls} ONNX Runtime call(s)  answers received ${answers}`);
}
console.log(`labels so far: ${counts.map((c, i) => `class ${i}: ${c}`).join(', ')}`);
const log = rt.stopRecording();
const verdict = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
console.log(`replay from the log alone (no model run): ${verdict.ticksVerified} ticks, ${verdict.ok ? 'identical' : `DIVERGED at tick ${verdict.divergence.tick}`}`);
console.log(`final state hash: ${rt.stateHash()}`);
if (!verdict.ok) process.exit(1);
