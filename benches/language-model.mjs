// Language-model benchmarks (docs/INFERENCE.md, "Language models"), each beside its baseline in
// the same run, on the committed tiny decoder (models/tiny_lm; CPU):
// - agents generating at once through the `generate` import (1, 8, 32 agents, 64 greedy tokens
//   each): continuous batching (one decode call per step for every agent) vs one sequence at a
//   time (maxBatch 1: the others wait their turn);
// - rt.generate() for one sequence vs a plain JS greedy loop over onnxruntime-node with the same
//   model, the same KV cache fed back, the same thread settings;
// - rt.generate() with 8 and 32 calls at once;
// - agents generating at once again, on a larger model made by scripts/gen-lm.py into
//   .bench-out/small_lm (hidden 256, 8 heads, 8 layers, ff 2048: 10.6 M parameters, 42 MB; needs
//   Python with `onnx numpy onnxruntime`, else skipped): a step of the tiny model is mostly
//   per-row work, one of this one mostly reading its weights, as in real language models; and
//   the same weights exported with GroupQueryAttention (.bench-out/small_lm_gqa, LM_LAYOUT=gqa),
//   whose KV cache the runtime updates in place (docs/INFERENCE.md, "KV-cache layouts"),
//   interleaved with it.
// Imported by benches/run.mjs.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const ort = require('onnxruntime-node');

const MODEL = require.resolve('../models/tiny_lm/model.onnx');
const PROMPTS = ['Hello', 'The agents', 'Two friends send', 'What are you going to do next?', 'The river runs', 'A small robot'];
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const SMALL = { hidden: 256, heads: 8, layers: 8, ff: 2048 };

/** The larger benchmark model, made once into .bench-out/small_lm (layout 'optimum') or
 * .bench-out/small_lm_gqa (layout 'gqa'); null when Python cannot. */
function smallModel(log, layout = 'optimum') {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const name = layout === 'gqa' ? 'small_lm_gqa' : 'small_lm';
  const dir = join(root, '.bench-out', name);
  const path = join(dir, 'model.onnx');
  if (existsSync(path)) return path;
  log(`[bench] language model: making .bench-out/${name} with scripts/gen-lm.py ...`);
  const env = { ...process.env, LM_OUT: dir, LM_LAYOUT: layout, LM_HIDDEN: `${SMALL.hidden}`, LM_HEADS: `${SMALL.heads}`, LM_LAYERS: `${SMALL.layers}`, LM_FF: `${SMALL.ff}`, LM_BENCH_ONLY: '1' };
  const r = spawnSync('python3', [join(root, 'scripts', 'gen-lm.py')], { env, encoding: 'utf8' });
  if (r.status !== 0 || !existsSync(path)) {
    log(`[bench] language model: no small_lm (${(r.stderr || r.error?.message || '').trim().split('\n').pop()}); it needs python3 with \`pip install onnx==1.21.0 numpy onnxruntime\``);
    return null;
  }
  return path;
}

/** Tokens per second of `agents` chatter agents each generating `tokens` greedy tokens. */
function agentsRate(agents, tokens, maxBatch, model = MODEL) {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1, record: false });
  const info = rt.loadLanguageModel({ model });
  rt.registerAgentLanguageModel(info.id, { tokensPerTick: 16, maxBatch });
  const ids = rt.spawnMany(exampleAgent('chatter'), agents);
  ids.forEach((id, i) => {
    const p = Buffer.alloc(4);
    p.writeUInt32LE(tokens);
    rt.send(id, Buffer.concat([p, Buffer.from(PROMPTS[i % PROMPTS.length])]), { kind: 4 });
  });
  let done = 0;
  let got = 0;
  const t0 = nowMs();
  while (done < agents) {
    rt.tick();
    for (const m of rt.drainMessages()) {
      if (m.kind !== 5) continue;
      done++;
      got += m.payload.readUInt32LE(0);
    }
  }
  const ms = nowMs() - t0;
  rt.close();
  if (got !== agents * tokens) throw new Error(`expected ${agents * tokens} tokens, got ${got}`);
  return (got / ms) * 1000;
}

async function generateRate(rt, calls, tokens) {
  const t0 = nowMs();
  const counts = await Promise.all(
    Array.from({ length: calls }, async (_, i) => {
      let n = 0;
      for await (const _t of rt.generate(PROMPTS[i % PROMPTS.length], { maxTokens: tokens, stepsPerCall: 64 })) n++;
      return n;
    }),
  );
  const got = counts.reduce((a, b) => a + b, 0);
  return (got / (nowMs() - t0)) * 1000;
}

/** A plain greedy loop over onnxruntime-node: prefill, then one run per token feeding present.* back. */
async function jsLoopRate(session, tokens) {
  const prompt = [256, ...Buffer.from(PROMPTS[0])];
  const t0 = nowMs();
  const i64 = (xs, dims) => new ort.Tensor('int64', BigInt64Array.from(xs.map(BigInt)), dims);
  let feeds = {
    input_ids: i64(prompt, [1, prompt.length]),
    attention_mask: i64(prompt.map(() => 1), [1, prompt.length]),
    position_ids: i64(prompt.map((_, i) => i), [1, prompt.length]),
  };
  for (let l = 0; l < 2; l++) {
    for (const kv of ['key', 'value']) feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 16]);
  }
  let len = prompt.length;
  const out = [];
  for (let t = 0; t < tokens; t++) {
    const r = await session.run(feeds);
    const logits = r.logits.data;
    const vocab = r.logits.dims[2];
    const base = logits.length - vocab;
    let best = 0;
    for (let i = 1; i < vocab; i++) if (logits[base + i] > logits[base + best]) best = i;
    out.push(best);
    len++;
    feeds = { input_ids: i64([best], [1, 1]), attention_mask: i64(Array(len).fill(1), [1, len]), position_ids: i64([len - 1], [1, 1]) };
    for (let l = 0; l < 2; l++) for (const kv of ['key', 'value']) feeds[`past_key_values.${l}.${kv}`] = r[`present.${l}.${kv}`];
  }
  return { rate: (tokens / (nowMs() - t0)) * 1000, out };
}

export async function runLanguageModelBenches({ quick = false, log = console.error } = {}) {
  const tokens = 64;
  const reps = quick ? 1 : 5;
  const agents = [];
  for (const n of [1, 8, 32]) {
    log(`[bench] language model, ${n} agents`);
    // Interleaved, so that a busy machine slows both alike.
    const b = [];
    const s1 = [];
    for (let i = 0; i < reps; i++) {
      b.push(agentsRate(n, tokens, 64));
      s1.push(agentsRate(n, tokens, 1));
    }
    const [batched, single] = [median(b), median(s1)];
    agents.push({ agents: n, batched_tokens_per_s: Math.round(batched), one_at_a_time_tokens_per_s: Math.round(single), ratio: +(batched / single).toFixed(2) });
  }
  log('[bench] language model, rt.generate vs a JS greedy loop over onnxruntime-node');
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1, record: false });
  rt.loadLanguageModel({ model: MODEL });
  const session = await ort.InferenceSession.create(MODEL, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  // Same tokens both ways (greedy), checked before timing.
  const ref = (await jsLoopRate(session, 16)).out;
  const ours = [];
  for await (const t of rt.generate(PROMPTS[0], { maxTokens: 16 })) ours.push(t.token);
  if (ours.join() !== ref.join()) throw new Error(`rt.generate and the JS loop disagree: ${ours} vs ${ref}`);
  const js = [];
  const one = [];
  for (let i = 0; i < reps * 4; i++) {
    js.push((await jsLoopRate(session, tokens)).rate);
    one.push(await generateRate(rt, 1, tokens));
  }
  const generate = { one_sequence_tokens_per_s: Math.round(median(one)), js_loop_onnxruntime_node_tokens_per_s: Math.round(median(js)) };
  generate.ratio = +(generate.one_sequence_tokens_per_s / generate.js_loop_onnxruntime_node_tokens_per_s).toFixed(2);
  for (const n of [8, 32]) {
    const rates = [];
    for (let i = 0; i < reps; i++) rates.push(await generateRate(rt, n, tokens));
    generate[`calls_${n}_tokens_per_s`] = Math.round(median(rates));
  }
  await session.release();
  rt.close();
  // small_lm in both layouts: Optimum's (the cache concatenated into a new present.* at every
  // step) and GroupQueryAttention's (one buffer per layer, updated in place), interleaved.
  const small = { model: SMALL, tokens_per_sequence: 64, agents: [] };
  const smallGqa = { model: SMALL, layout: 'in-place (GroupQueryAttention)', tokens_per_sequence: 64, agents: [] };
  const smallPath = smallModel(log);
  const gqaPath = smallPath && smallModel(log, 'gqa');
  const layouts = [
    [small, smallPath],
    [smallGqa, gqaPath],
  ].filter(([, path]) => path);
  for (const n of layouts.length ? [1, 8, 32] : []) {
    log(`[bench] language model (small_lm, both layouts), ${n} agents`);
    const runs = layouts.map(() => ({ b: [], s1: [] }));
    for (let i = 0; i < (quick ? 1 : 3); i++) {
      layouts.forEach(([, path], k) => {
        runs[k].b.push(agentsRate(n, small.tokens_per_sequence, 64, path));
        runs[k].s1.push(agentsRate(n, small.tokens_per_sequence, 1, path));
      });
    }
    layouts.forEach(([out], k) => {
      const [batched, single] = [median(runs[k].b), median(runs[k].s1)];
      out.agents.push({ agents: n, batched_tokens_per_s: Math.round(batched), one_at_a_time_tokens_per_s: Math.round(single), ratio: +(batched / single).toFixed(2) });
    });
  }
  return { tokens_per_sequence: tokens, agents, generate, small_lm: smallPath ? small : null, small_lm_gqa: gqaPath ? smallGqa : null };
}

// `node benches/language-model.mjs [--quick]`: this benchmark alone, as JSON.
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  console.log(JSON.stringify(await runLanguageModelBenches({ quick: process.argv.includes('--quick') }), null, 1));
}
