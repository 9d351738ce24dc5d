// Language models (docs/INFERENCE.md, "Language models") on the committed tiny decoder
// (models/tiny_lm, made by scripts/gen-lm.py, and models/tiny_lm_gqa, its weights with
// GroupQueryAttention: the in-place KV-cache layout): JS's generate(), and agents that generate
// through the `generate` import, replayed exactly from the log with no model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, replay, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const MODEL = fileURLToPath(new URL('../models/tiny_lm/model.onnx', import.meta.url));
// The same weights with GroupQueryAttention: the in-place KV-cache layout, the same tokens.
const MODEL_GQA = fileURLToPath(new URL('../models/tiny_lm_gqa/model.onnx', import.meta.url));
// The same with a float16 cache (scripts/lm-f16-cache.py): the kind that lives in GPU memory under CUDA.
const MODEL_GQA_F16 = fileURLToPath(new URL('../models/tiny_lm_gqa_f16/model.onnx', import.meta.url));
const reference = JSON.parse(readFileSync(new URL('../models/tiny_lm/reference.json', import.meta.url)));

const runtime = (o = {}) => new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1, ...o });
const collect = async (it) => {
  const tokens = [];
  let text = '';
  for await (const t of it) {
    tokens.push(t.token);
    text += t.text;
  }
  return { tokens, text, finish: it.finish };
};

test('loadLanguageModel describes the model and refuses what is not one', () => {
  const rt = runtime();
  const info = rt.loadLanguageModel({ model: MODEL });
  assert.match(info.id, /^[0-9a-f]{64}$/);
  assert.deepEqual([info.layers, info.heads, info.headDim, info.vocab, info.kvType], [2, 4, 16, 260, 'float32']);
  assert.deepEqual([info.tokenizer, info.bos, info.eos, info.pad, info.maxContext], ['bytes', 256, [257], 258, 1024]);
  assert.equal(info.kvLayout, 'concat');
  const mlp = fileURLToPath(new URL('../models/mlp_classifier.onnx', import.meta.url));
  assert.throws(() => rt.loadLanguageModel({ model: mlp }), { code: 'E_NOT_A_LANGUAGE_MODEL', message: /input_ids/ });
  assert.throws(() => rt.loadLanguageModel({ model: MODEL, eos: 999 }), { code: 'E_NOT_A_LANGUAGE_MODEL', message: /999/ });
  assert.throws(() => rt.loadLanguageModel({ model: MODEL, tokenizer: 'bpe' }), { code: 'E_INVALID_ARGUMENT' });
  assert.throws(() => rt.loadLanguageModel({ model: MODEL, maxContext: 0 }), { code: 'E_INVALID_ARGUMENT' });
  assert.throws(() => rt.loadLanguageModel({ modell: MODEL }), { code: 'E_INVALID_ARGUMENT', message: /unknown key/ });
  rt.close();
});

for (const [layout, model, cache] of [
  ['concat', MODEL, ''],
  ['in-place', MODEL_GQA, ''],
  ['in-place', MODEL_GQA_F16, ', float16'],
]) {
  test(`greedy generate() gives the tokens ONNX Runtime gave in Python, one call or many at once (${layout} KV cache${cache})`, () => greedyGenerate(model, layout));
}

async function greedyGenerate(model, layout) {
  const rt = runtime();
  assert.equal(rt.loadLanguageModel({ model }).kvLayout, layout);
  for (const c of reference.cases) {
    const got = await collect(rt.generate(c.prompt, { maxTokens: c.greedy.length }));
    assert.deepEqual(got.tokens, c.greedy, c.prompt);
    assert.equal(got.text, c.text);
    assert.equal(got.finish, 'max_tokens');
  }
  // As token ids too.
  const ids = await collect(rt.generate(reference.cases[1].prompt_ids, { maxTokens: 5 }));
  assert.deepEqual(ids.tokens, reference.cases[1].greedy.slice(0, 5));
  // All at once: one batch (one decode call per step for every sequence), the same tokens.
  const before = rt.languageModelStats();
  // (All submitted before any is iterated, so that all join at the first step.)
  const its = reference.cases.map((c) => rt.generate(c.prompt, { maxTokens: c.greedy.length }));
  const all = await Promise.all(its.map(collect));
  all.forEach((got, i) => assert.deepEqual(got.tokens, reference.cases[i].greedy));
  const after = rt.languageModelStats();
  const tokens = after.tokens - before.tokens;
  const calls = after.decodeCalls - before.decodeCalls;
  assert.equal(tokens, reference.cases.reduce((n, c) => n + c.greedy.length, 0));
  assert.ok(calls <= 24, `${calls} decode calls for ${tokens} tokens: batched`);
  assert.equal(after.kvTransfers, 0, 'on CPU the KV cache never crosses to a device');
  rt.close();
}

test('sampling is seeded, stop sequences end a generation, breaking out cancels it', async () => {
  const rt = runtime();
  rt.loadLanguageModel({ model: MODEL });
  const opts = { maxTokens: 40, temperature: 0.9, topK: 40, topP: 0.95 };
  const a = await collect(rt.generate('The agents', { ...opts, seed: 1 }));
  assert.deepEqual((await collect(rt.generate('The agents', { ...opts, seed: 1 }))).tokens, a.tokens);
  assert.notDeepEqual((await collect(rt.generate('The agents', { ...opts, seed: 2 }))).tokens, a.tokens);
  const stopped = await collect(rt.generate('Hello', { maxTokens: 100, stop: [' the', 'zzz'] }));
  assert.deepEqual([stopped.text, stopped.finish], ['ne an an the', 'stop']);
  const it = rt.generate('Hello', { maxTokens: 4000 });
  let n = 0;
  for await (const t of it) {
    assert.equal(typeof t.token, 'number');
    if (++n === 3) break;
  }
  assert.equal(n, 3);
  const stats = rt.languageModelStats();
  await collect(rt.generate('x', { maxTokens: 2 }));
  assert.ok(rt.languageModelStats().tokens - stats.tokens <= 3, 'the broken-off generation decodes no more');
  assert.throws(() => rt.generate([]), { code: 'E_BAD_PROMPT' });
  assert.throws(() => rt.generate('x', { temperature: -1 }), { code: 'E_INVALID_ARGUMENT' });
  assert.throws(() => rt.generate(42), { code: 'E_INVALID_ARGUMENT' });
  rt.close();
});

test('a tokenizer of your own, or none: token ids in and out', async () => {
  const rt = runtime();
  // A toy tokenizer over the byte vocabulary (upper-cases what it decodes).
  const own = { encode: (s) => [256, ...Buffer.from(s)], decode: (ids) => Buffer.from(ids.filter((i) => i < 256)).toString().toUpperCase() };
  rt.loadLanguageModel({ model: MODEL, tokenizer: own });
  const got = await collect(rt.generate('Hello', { maxTokens: 12 }));
  assert.equal(got.text, reference.cases[0].text.slice(0, 12).toUpperCase());
  rt.close();
  const none = runtime();
  none.loadLanguageModel({ model: MODEL, tokenizer: 'none' });
  assert.throws(() => none.generate('Hello'), { code: 'E_BAD_PROMPT' });
  const ids = await collect(none.generate(reference.cases[0].prompt_ids, { maxTokens: 4 }));
  assert.deepEqual(ids.tokens, reference.cases[0].greedy.slice(0, 4));
  assert.equal(ids.text, '', 'no text without a tokenizer');
  none.close();
});

test('loadLanguageModel and generate use the tokenizer and stop sequences they checked (each read once)', async () => {
  const rt = runtime();
  const own = { encode: (s) => [256, ...Buffer.from(s)], decode: (ids) => Buffer.from(ids.filter((i) => i < 256)).toString().toUpperCase() };
  // options.tokenizer: checked as an object with encode and decode, then read again as a bare
  // object (generate() threw a raw TypeError: lm.tokenizer.encode is not a function).
  let reads = 0;
  rt.loadLanguageModel({ model: MODEL, get tokenizer() { return reads++ === 0 ? own : {}; } });
  assert.equal(reads, 1, 'options.tokenizer read once');
  // Its methods, too: read (and checked) once, when the model is loaded.
  let encodeReads = 0;
  const shifty = { get encode() { return encodeReads++ === 0 ? own.encode : 42; }, decode: own.decode };
  const rt2 = runtime();
  rt2.loadLanguageModel({ model: MODEL, tokenizer: shifty });
  const got = await collect(rt.generate('Hello', { maxTokens: 6 }));
  assert.equal(got.text, reference.cases[0].text.slice(0, 6).toUpperCase());
  assert.deepEqual(await collect(rt2.generate('Hello', { maxTokens: 6 })), got);
  assert.equal(encodeReads, 1, 'tokenizer.encode read once');
  // options.stop: an element checked as a string, then read as 12 (Buffer.from threw ERR_INVALID_ARG_TYPE).
  const stop = [];
  let stopReads = 0;
  Object.defineProperty(stop, 0, { get: () => (stopReads++ === 0 ? 'zzz' : 12), enumerable: true });
  const stopped = await collect(rt.generate('Hello', { maxTokens: 3, stop }));
  assert.equal(stopped.finish, 'max_tokens');
  assert.equal(stopReads, 1, 'options.stop[0] read once');
  rt.close();
  rt2.close();
});

/** Two pairs of chatter agents talking through the model for 50 ticks. */
function chat(workers, model = MODEL) {
  const rt = runtime({ workers, seed: 4 });
  const info = rt.loadLanguageModel({ model });
  assert.equal(rt.registerAgentLanguageModel(info.id, { tokensPerTick: 4 }), 0);
  const ids = rt.spawnMany(exampleAgent('chatter'), 4);
  const u64 = (n) => Buffer.from(new BigUint64Array([BigInt(n)]).buffer);
  rt.send(ids[0], Buffer.concat([u64(ids[1]), Buffer.from('Hello')]), { kind: 1 });
  rt.send(ids[1], u64(ids[0]), { kind: 1 });
  rt.send(ids[2], Buffer.concat([u64(ids[3]), Buffer.from('The agents')]), { kind: 1 });
  rt.send(ids[3], u64(ids[2]), { kind: 1 });
  const lines = [];
  for (let t = 0; t < 50; t++) {
    rt.tick();
    for (const m of rt.drainMessages()) lines.push([t, m.from, m.payload.readUInt32LE(0), m.payload.subarray(4).toString()]);
  }
  return { rt, lines };
}

test('agents talk through the model: tokens at tick boundaries, the same with 1 and 3 workers, replayed with no model', () => {
  const one = chat(1);
  const three = chat(3);
  assert.deepEqual(one.lines, three.lines);
  assert.equal(one.rt.stateHash(), three.rt.stateHash());
  for (const agent of [1, 2, 3, 4]) {
    assert.deepEqual(one.lines.filter((l) => l[1] === agent).map((l) => l[2]), [1, 2, 3, 4], `agent ${agent}: ${JSON.stringify(one.lines)}`);
  }
  const log = one.rt.stopRecording();
  // The replay loads no model (its runtime never saw one) and matches every tick.
  const report = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2 });
  assert.equal(report.complete, true);
  assert.equal(report.divergence, undefined);
  assert.equal(report.ticksVerified, 50);
  one.rt.close();
  three.rt.close();
});

test('agents on the in-place layout (GroupQueryAttention) say what they say on the Optimum layout, and replay exactly', () => {
  const concat = chat(1);
  const inPlace = chat(2, MODEL_GQA);
  assert.deepEqual(inPlace.lines, concat.lines);
  const report = replay(inPlace.rt.stopRecording(), { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  assert.equal(report.complete, true);
  assert.equal(report.divergence, undefined);
  assert.equal(report.ticksVerified, 50);
  concat.rt.close();
  inPlace.rt.close();
});
