// Agents that talk to each other through a language model, then the same session replayed
// from its log with no model at all (`node demo/chat.mjs`; part of `npm run demo`).
//
// Six `chatter` agents (guest/agents/chatter) in three pairs. The host gives each pair an
// opening line; each agent answers what it hears by asking the model (the `generate` import:
// sampled, seeded per agent), and sends the answer to its partner, four turns each. Every
// agent's generation decodes in one batch; tokens reach the agents at tick boundaries. The
// model is the tiny test decoder in models/tiny_lm (a bigram-like byte model: expect
// text-shaped babble, not sense). Point it at your own export with --model and --tokenizer none.
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, replay, EXAMPLES_PUBLIC_KEY } = require('../index.js');

const MODEL = require.resolve('../models/tiny_lm/model.onnx');
const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], seed: 2026, workers: 2 });
const lm = rt.loadLanguageModel({ model: MODEL });
rt.registerAgentLanguageModel(lm.id, { tokensPerTick: 4 });
console.log(`[chat] language model ${lm.id.slice(0, 12)}…: ${lm.layers} layers, ${lm.heads} heads, vocabulary ${lm.vocab}`);

const ids = rt.spawnMany(exampleAgent('chatter'), 6);
const u64 = (n) => Buffer.from(new BigUint64Array([BigInt(n)]).buffer);
const openings = ['Hello, how are you today?', 'The river runs past the old mill', 'What are you going to do next?'];
for (let p = 0; p < 3; p++) {
  const [a, b] = [ids[2 * p], ids[2 * p + 1]];
  rt.send(a, Buffer.concat([u64(b), Buffer.from(openings[p])]), { kind: 1 });
  rt.send(b, u64(a), { kind: 1 });
  console.log(`[chat] pair ${a}↔${b} opens with: "${openings[p]}"`);
}

const transcript = [];
for (let t = 0; t < 80; t++) {
  rt.tick();
  for (const m of rt.drainMessages()) {
    const line = `tick ${String(t).padStart(2)}  agent ${m.from} (turn ${m.payload.readUInt32LE(0)}): ${JSON.stringify(m.payload.subarray(4).toString())}`;
    transcript.push(line);
    console.log(line);
  }
}
const hash = rt.stateHash();
const log = rt.stopRecording();
console.log(`[chat] ${transcript.length} lines in 80 ticks; state hash ${hash.slice(0, 16)}…; replay log ${log.length} bytes`);

// The replay runs the same agents on the recorded tokens: no model is loaded in it.
const t0 = performance.now();
const report = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
const ms = (performance.now() - t0).toFixed(0);
const ok = report.complete && !report.divergence && report.finalHash === hash;
console.log(`[chat] replayed ${report.ticksVerified} ticks in ${ms} ms without the model: ${ok ? 'exact (every tick hash matches)' : 'DIVERGED'}`);
rt.close();
if (!ok) process.exit(1);
