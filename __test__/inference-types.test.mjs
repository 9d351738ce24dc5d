// Every tensor element type ONNX Runtime 1.30 carries, through `infer` and `inferSync`, with
// the JS representation docs/INFERENCE.md's table gives; sequence outputs; what `loadModel`
// refuses, with which code; ModelInfo's type names. Models: models/*.onnx (scripts/gen-models.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime } = require('../index.js');
const ort = require('onnxruntime-node');

const model = (name) => fileURLToPath(new URL(`../models/${name}.onnx`, import.meta.url));

/** Every type, its data class, and 3 elements per sample of it (`n` samples). */
const TYPES = {
  float32: [Float32Array, (n) => Float32Array.from({ length: 3 * n }, (_, i) => i / 3 - 1)],
  float64: [Float64Array, (n) => Float64Array.from({ length: 3 * n }, (_, i) => Math.PI * i)],
  int32: [Int32Array, (n) => Int32Array.from({ length: 3 * n }, (_, i) => -(2 ** 31) + i)],
  int64: [BigInt64Array, (n) => BigInt64Array.from({ length: 3 * n }, (_, i) => -(2n ** 63n) + BigInt(i))],
  uint8: [Uint8Array, (n) => Uint8Array.from({ length: 3 * n }, (_, i) => 250 + i)],
  int8: [Int8Array, (n) => Int8Array.from({ length: 3 * n }, (_, i) => -128 + i)],
  bool: [Uint8Array, (n) => Uint8Array.from({ length: 3 * n }, (_, i) => i % 2)],
  float16: [Uint16Array, (n) => Uint16Array.from({ length: 3 * n }, (_, i) => [0x3c00, 0xc000, 0x7bff, 0x0001, 0x7e00][i % 5])],
  bfloat16: [Uint16Array, (n) => Uint16Array.from({ length: 3 * n }, (_, i) => [0x3f80, 0xc040, 0x7f7f, 0x0001][i % 4])],
  uint16: [Uint16Array, (n) => Uint16Array.from({ length: 3 * n }, (_, i) => 65535 - i)],
  int16: [Int16Array, (n) => Int16Array.from({ length: 3 * n }, (_, i) => -32768 + i)],
  uint32: [Uint32Array, (n) => Uint32Array.from({ length: 3 * n }, (_, i) => 2 ** 32 - 1 - i)],
  uint64: [BigUint64Array, (n) => BigUint64Array.from({ length: 3 * n }, (_, i) => 2n ** 64n - 1n - BigInt(i))],
  string: [Array, (n) => Array.from({ length: 3 * n }, (_, i) => ['', 'ünïcödé ✓', `s${i}`, '😀'][i % 4])],
  float8e4m3fn: [Uint8Array, (n) => Uint8Array.from({ length: 3 * n }, (_, i) => (i * 37) & 0xff)],
  float8e4m3fnuz: [Uint8Array, (n) => Uint8Array.from({ length: 3 * n }, (_, i) => (i * 41) & 0xff)],
  float8e5m2: [Uint8Array, (n) => Uint8Array.from({ length: 3 * n }, (_, i) => (i * 43) & 0xff)],
  float8e5m2fnuz: [Uint8Array, (n) => Uint8Array.from({ length: 3 * n }, (_, i) => (i * 47) & 0xff)],
  float8e8m0: [Uint8Array, (n) => Uint8Array.from({ length: 3 * n }, (_, i) => 100 + i)],
  // Packed: 3 × n elements of 4 bits in ceil(12n / 8) bytes, the padding zero.
  uint4: [Uint8Array, (n) => pack(Array.from({ length: 3 * n }, (_, i) => (i * 5) & 15), 4)],
  int4: [Uint8Array, (n) => pack(Array.from({ length: 3 * n }, (_, i) => (i * 7) & 15), 4)],
  float4e2m1: [Uint8Array, (n) => pack(Array.from({ length: 3 * n }, (_, i) => (i * 3) & 15), 4)],
  uint2: [Uint8Array, (n) => pack(Array.from({ length: 3 * n }, (_, i) => i & 3), 2)],
  int2: [Uint8Array, (n) => pack(Array.from({ length: 3 * n }, (_, i) => (i + 1) & 3), 2)],
};

function pack(codes, bits) {
  const out = new Uint8Array(Math.ceil((codes.length * bits) / 8));
  codes.forEach((c, i) => {
    out[(i * bits) >> 3] |= c << ((i * bits) & 7);
  });
  return out;
}

const inputsFor = (n) => Object.fromEntries(Object.entries(TYPES).map(([type, [, make]]) => [`x_${type}`, { type, data: make(n), dims: [n, 3] }]));
const outputName = (type) => (type === 'float4e2m1' ? 'x_float4e2m1' : `y_${type}`);

test('every tensor type goes in and comes back bit for bit, as its typed array (sync and async), at 1 to 4,096 samples', async () => {
  const rt = new Runtime({ workers: 1 });
  const info = rt.loadModel(model('every_type'));
  assert.deepEqual(info.inputs.map((i) => i.type), Object.keys(TYPES), 'ModelInfo: one lower-case name per type');
  // 4,096: a float8e8m0 input was first made as an int2 tensor (a quarter of its bytes) and
  // zero-filled at its own size, past the allocation: a heap overflow (malloc aborted at 64).
  for (const n of [1, 3, 4096]) {
    const inputs = inputsFor(n);
    for (const out of [rt.inferSync(info.id, inputs), await rt.infer(info.id, inputs)]) {
      for (const [type, [Class]] of Object.entries(TYPES)) {
        const got = out[outputName(type)];
        assert.equal(got.type, type);
        assert.deepEqual(got.dims, [n, 3]);
        assert.ok(got.data instanceof Class, `${type}: a ${Class.name}, got ${got.data?.constructor?.name}`);
        assert.deepEqual(Array.from(got.data), Array.from(inputs[`x_${type}`].data), type);
      }
    }
  }
});

test('float16 arithmetic: the same bits as onnxruntime-node; a Float16Array is accepted where Node has one', async () => {
  const rt = new Runtime({ workers: 1 });
  const { id } = rt.loadModel(model('add_float16'));
  const half = { 1.5: 0x3e00, '-2': 0xc000, 0.25: 0x3400, 65504: 0x7bff, 1.75: 0x3f00, 65502: 0x7bff };
  const a = Uint16Array.of(half[1.5], half[-2]);
  const b = Uint16Array.of(half[0.25], half[65504]);
  const out = rt.inferSync(id, { a: { type: 'float16', data: a, dims: [1, 2] }, b: { type: 'float16', data: b, dims: [1, 2] } });
  assert.ok(out.c.data instanceof Uint16Array);
  assert.equal(out.c.data[0], half[1.75]);
  const session = await ort.InferenceSession.create(model('add_float16'));
  const theirs = await session.run({ a: new ort.Tensor('float16', a, [1, 2]), b: new ort.Tensor('float16', b, [1, 2]) });
  assert.deepEqual(Array.from(new Uint16Array(theirs.c.data.buffer, theirs.c.data.byteOffset, 2)), Array.from(out.c.data));
  if (typeof globalThis.Float16Array === 'function') {
    const f = globalThis.Float16Array;
    const viaFloat16 = rt.inferSync(id, { a: { type: 'float16', data: f.of(1.5, -2), dims: [1, 2] }, b: { type: 'float16', data: f.of(0.25, 65504), dims: [1, 2] } });
    assert.deepEqual(Array.from(viaFloat16.c.data), Array.from(out.c.data));
  }
});

test('uint64 above 2^63 and strings computed by a model: the same values as onnxruntime-node', async () => {
  const rt = new Runtime({ workers: 1 });
  const conformance = (name) => fileURLToPath(new URL(`../models/conformance/${name}.onnx`, import.meta.url));
  const big = (f) => BigUint64Array.from({ length: 60 }, (_, i) => f(BigInt(i)));
  const cases = [
    ['test_add_uint64', { x: { type: 'uint64', data: big((i) => 2n ** 63n + i), dims: [3, 4, 5] }, y: { type: 'uint64', data: big((i) => 2n ** 63n - 1n - 2n * i), dims: [3, 4, 5] } }],
    ['test_string_concat', { x: { type: 'string', data: ['ünï', ''], dims: [2] }, y: { type: 'string', data: ['cödé ✓', '😀'], dims: [2] } }],
    ['test_string_split_basic', { x: { type: 'string', data: ['ü.net', 'a.b'], dims: [2] } }],
  ];
  for (const [name, inputs] of cases) {
    const { id } = rt.loadModel(conformance(name));
    const ours = rt.inferSync(id, inputs);
    const session = await ort.InferenceSession.create(conformance(name));
    const theirs = await session.run(Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)])));
    for (const [k, t] of Object.entries(theirs)) {
      assert.equal(ours[k].type, t.type, `${name}.${k}`);
      assert.deepEqual(ours[k].dims, t.dims, `${name}.${k}`);
      assert.deepEqual(Array.from(ours[k].data), Array.from(t.data), `${name}.${k}`);
    }
    if (name === 'test_add_uint64') assert.deepEqual(ours.sum.data.slice(0, 2), BigUint64Array.of(2n ** 64n - 1n, 2n ** 64n - 2n));
    if (name === 'test_string_concat') assert.deepEqual(ours.result.data, ['ünïcödé ✓', '😀']);
    if (name === 'test_string_split_basic') assert.deepEqual(ours.substrings.data, ['ü', 'net', 'a', 'b']);
  }
});

test('string inputs: a NUL is E_BAD_INPUT_VALUE, a non-string E_INVALID_ARGUMENT, a wrong count E_BAD_INPUT_SHAPE', async () => {
  const rt = new Runtime({ workers: 1 });
  const { id } = rt.loadModel(model('every_type'));
  const with_ = (type, data, dims = [1, 3]) => ({ ...inputsFor(1), [`x_${type}`]: { type, data, dims } });
  assert.throws(() => rt.inferSync(id, with_('string', ['a', 'b\0c', 'd'])), (e) => e.code === 'E_BAD_INPUT_VALUE' && /x_string.*NUL/.test(e.message));
  await assert.rejects(rt.infer(id, with_('string', ['a', 'b\0c', 'd'])), { code: 'E_BAD_INPUT_VALUE' });
  assert.throws(() => rt.inferSync(id, with_('string', ['a', 7, 'd'])), (e) => e.code === 'E_INVALID_ARGUMENT' && /data\[1\]/.test(e.message));
  assert.throws(() => rt.inferSync(id, with_('string', ['a', 'b'])), { code: 'E_BAD_INPUT_SHAPE' });
  assert.throws(() => rt.inferSync(id, with_('string', 'abc')), { code: 'E_INVALID_ARGUMENT' });
  // Packed types hold ceil(n × bits / 8) bytes: 3 int4 are 2 bytes, not 3.
  assert.throws(() => rt.inferSync(id, with_('int4', new Uint8Array(3))), (e) => e.code === 'E_BAD_INPUT_SHAPE' && /packs 2 per byte/.test(e.message));
  // The raw-bits types take their one array, never another reinterpreted.
  assert.throws(() => rt.inferSync(id, with_('bfloat16', new Float32Array(3))), { code: 'E_INVALID_ARGUMENT' });
  assert.throws(() => rt.inferSync(id, with_('uint64', new BigInt64Array(3))), { code: 'E_INVALID_ARGUMENT' });
  assert.throws(() => rt.inferSync(id, with_('float16', new Int16Array(3))), { code: 'E_INVALID_ARGUMENT' });
  assert.throws(() => rt.inferSync(id, with_('complex64', new Float32Array(6))), { code: 'E_UNSUPPORTED_TYPE' });
  assert.throws(() => rt.inferSync(id, with_('toString', new Float32Array(3))), { code: 'E_UNSUPPORTED_TYPE' });
});

test('a sequence output comes back as an array of tensors; ModelInfo says sequence<float32>', async () => {
  const rt = new Runtime({ workers: 1 });
  const info = rt.loadModel(model('split_sequence'));
  assert.deepEqual(info.outputs.map((o) => o.type), ['sequence<float32>', 'int64']);
  const out = await rt.infer(info.id, { x: { type: 'float32', data: Float32Array.of(1, 2, 3, 4, 5), dims: [5] } });
  assert.ok(Array.isArray(out.parts));
  assert.deepEqual(out.parts.map((t) => [t.type, t.dims, Array.from(t.data)]), [['float32', [2], [1, 2]], ['float32', [2], [3, 4]], ['float32', [1], [5]]]);
  assert.deepEqual(out.n, { type: 'int64', dims: [], data: BigInt64Array.of(3n) });
});

test('loadModel says the true cause: unsupported operator, too new, an optional output — never after running', async () => {
  const rt = new Runtime({ workers: 1 });
  const op = (e) => e.code === 'E_MODEL_UNSUPPORTED_OPERATOR' && /valid ONNX/.test(e.message) && /Max\(13\)/.test(e.message) && !/not a valid ONNX model/.test(e.message);
  assert.throws(() => rt.loadModel(model('max_int16')), op);
  await assert.rejects(rt.loadModelAsync(model('max_int16')), op);
  assert.throws(() => rt.loadModel(model('opset_30')), { code: 'E_MODEL_UNSUPPORTED_VERSION' });
  assert.throws(() => rt.loadModel(model('optional_output')), (e) => e.code === 'E_UNSUPPORTED_TYPE' && /output `maybe` is optional<float32>/.test(e.message));
  assert.throws(() => rt.loadModel(Buffer.from('not a model')), { code: 'E_INVALID_MODEL' });
  assert.deepEqual(rt.listModels(), []);
});

test('ModelInfo spells every type in one lower-case vocabulary, never a Rust debug string', () => {
  const rt = new Runtime({ workers: 1 });
  const vocabulary = new Set(Object.keys(TYPES));
  for (const name of ['every_type', 'add_float16', 'split_sequence', 'mlp_classifier', 'add_int64']) {
    const info = rt.loadModel(model(name));
    for (const t of [...info.inputs, ...info.outputs]) {
      const element = t.type.replace(/^sequence<(.*)>$/, '$1');
      assert.ok(vocabulary.has(element), `${name}: ${t.name} is ${t.type}`);
    }
  }
});

test('the thread-pool path (inferAsync) returns what the inline path does, for every type and a sequence', async () => {
  // The public infer() runs these small models inline; inferAsync is what it uses for larger ones.
  const { platformTriple } = require('../scripts/platform.cjs');
  const native = require(`../lockstep.${platformTriple()}.node`);
  const rt = new native.NativeRuntime({ workers: 1, inference: { searchRoots: [fileURLToPath(new URL('..', import.meta.url))] } });
  const { readFileSync } = await import('node:fs');
  const encoder = new TextEncoder();
  // The packed form index.js sends (crates/lockstep-node/src/inference.rs): each tensor's bytes at a multiple of 8.
  const pack = (inputs) => {
    const parts = Object.entries(inputs).map(([name, t]) => {
      let bytes;
      if (t.type === 'string') {
        const encoded = t.data.map((s) => encoder.encode(s));
        bytes = new Uint8Array(encoded.reduce((n, e) => n + 4 + e.length, 0));
        let at = 0;
        for (const e of encoded) {
          new DataView(bytes.buffer).setUint32(at, e.length, true);
          bytes.set(e, at + 4);
          at += 4 + e.length;
        }
      } else {
        bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      }
      return [`${name}:${t.type}:${t.dims.join(',')}:${bytes.length};`, bytes];
    });
    const data = new Uint8Array(parts.reduce((n, [, b]) => n + Math.ceil(b.length / 8) * 8, 0));
    let at = 0;
    for (const [, b] of parts) {
      data.set(b, at);
      at += Math.ceil(b.length / 8) * 8;
    }
    return [parts.map(([s]) => s).join(''), data];
  };
  // inferInto's model and spec may be left out to mean the last ones given: before any, that
  // is an error naming what is missing, never a run of nothing.
  assert.throws(() => rt.inferInto(undefined, undefined, new Uint8Array(8), new Uint8Array(8)), { code: 'E_INVALID_ARGUMENT', message: /no model given yet/ });
  for (const [name, inputs] of [['every_type', inputsFor(3)], ['split_sequence', { x: { type: 'float32', data: Float32Array.of(1, 2, 3), dims: [3] } }]]) {
    const { id } = rt.loadModel(readFileSync(model(name)));
    const [spec, data] = pack(inputs);
    if (name === 'every_type') {
      assert.throws(() => rt.inferInto(id, undefined, data, new Uint8Array(8)), { code: 'E_INVALID_ARGUMENT', message: /no input spec given yet/ });
    }
    const inline = rt.inferPacked(id, spec, data);
    const pooled = await rt.inferAsync(id, spec, data);
    assert.equal(pooled.spec, inline.spec, name);
    assert.deepEqual(Buffer.from(pooled.data), Buffer.from(inline.data), name);
    // inferSync's path: the same bytes written into the caller's buffer; the spec only when it
    // changed; outputs too large for the buffer kept until inferTakeOutputs.
    for (const size of [inline.data.length, 0]) {
      const out = new Uint8Array(size);
      const result = rt.inferInto(id, spec, data, out);
      assert.equal(Math.floor(result / 2), inline.data.length, name);
      assert.equal(result % 2, 1 - (size === 0), `${name}: the spec changed only at the first call`);
      assert.equal(rt.inferOutputSpec(), inline.spec, name);
      const got = size ? out : new Uint8Array(inline.data.length);
      if (!size) assert.equal(rt.inferTakeOutputs(got), true);
      assert.deepEqual(Buffer.from(got), Buffer.from(inline.data), name);
    }
    assert.equal(rt.inferTakeOutputs(new Uint8Array(64)), false, 'nothing left to take');
    // Left out, the model and spec are those of the call before; the data must still hold them.
    const again = new Uint8Array(inline.data.length);
    rt.inferInto(undefined, undefined, data, again);
    assert.deepEqual(Buffer.from(again), Buffer.from(inline.data), `${name}: model and spec left out`);
    assert.throws(() => rt.inferInto(undefined, undefined, data.subarray(0, data.length - 8), again), { code: 'E_INVALID_ARGUMENT', message: /data shorter than declared/ });
    assert.throws(() => rt.inferInto(id, spec, data, data), /overlaps the inputs/);
    if (name === 'split_sequence') assert.match(inline.spec, /^parts:sequence:2:0;:float32:2:8;:float32:1:4;n:int64::8;$/);
  }
  rt.close();
});

test("docs/INFERENCE.md's type table gives each type's JS array, as infer returns it", async () => {
  const { readFileSync } = await import('node:fs');
  const doc = readFileSync(new URL('../docs/INFERENCE.md', import.meta.url), 'utf8');
  const rows = doc.split('\n').map((l) => l.split('|').map((c) => c.trim())).filter((c) => c.length === 7 && /^`[a-z0-9]+`$/.test(c[2]) && c[2] !== "`type`");
  assert.deepEqual(rows.map((c) => c[2].slice(1, -1)), Object.keys(TYPES), 'one row per type, in order');
  for (const c of rows) {
    const [Class] = TYPES[c[2].slice(1, -1)];
    assert.ok(c[3].startsWith(Class === Array ? 'string[]' : Class.name), `${c[2]}: ${c[3]}`);
  }
});
