// ONNX's node conformance sample (models/conformance/, scripts/gen-conformance.py) through
// lockstep's JS API and through onnxruntime-node called directly, in the same run
// (scripts/conformance.mjs): lockstep must pass every case onnxruntime-node passes, with
// bit-identical outputs, and more (the types onnxruntime-node cannot carry).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, summary } from '../scripts/conformance.mjs';

/** Where ONNX Runtime 1.30 itself differs from ONNX's reference (onnxruntime-node alike: checked below). */
const ORT_DEVIATIONS = ['test_dft', 'test_maxunpool_export_with_output_shape', 'test_qlinearmatmul_2D_int8_float16', 'test_qlinearmatmul_2D_int8_float32'];
/** Where ONNX Runtime 1.30's kernel refuses the input values when run (ConvInteger, per-channel zero point). */
const ORT_RUN_REFUSALS = ['test_convinteger_with_padding'];

test('the conformance sample: lockstep passes every case onnxruntime-node passes, and the new types', async () => {
  const r = await run();
  console.log(summary(r));
  const ours = new Set(r.lockstep.passed);
  const missing = r.ort.passed.filter((n) => !ours.has(n));
  assert.deepEqual(missing, [], 'cases onnxruntime-node passes and lockstep does not');
  assert.equal(r.identical, r.ort.passed.length, 'where both pass, the outputs are bit-identical');
  // Figures of 2026-11-26 (docs/INFERENCE.md): 232 of 265 (109 before this change), onnxruntime-node 181.
  assert.ok(r.lockstep.passed.length >= 232, `lockstep passes ${r.lockstep.passed.length}`);
  assert.ok(r.lockstep.passed.length > r.ort.passed.length + 40, 'well beyond onnxruntime-node: the types it cannot carry');
  // A case of each new type passes through JS.
  for (const re of [/fp16|float16|FLOAT16/, /BFLOAT16/, /string/, /uint16/, /int16|i16/, /uint32/, /uint64|ui64/, /FLOAT8E4M3FN/, /FLOAT8E5M2/, /INT4/, /INT2/, /e8m0/, /split_to_sequence|sequence/]) {
    assert.ok(r.lockstep.passed.some((n) => re.test(n)), `no case matching ${re} passed`);
  }
  // Every other failure is a refusal at load with a code that says why, or ONNX Runtime's own.
  for (const [name, why] of Object.entries(r.lockstep.failed)) {
    if (ORT_DEVIATIONS.includes(name)) {
      assert.equal(r.ort.failed[name]?.startsWith('load') || r.ort.failed[name]?.startsWith('run'), false, `${name}: onnxruntime-node runs it too`);
      assert.ok(r.ort.failed[name], `${name}: onnxruntime-node deviates the same way`);
      continue;
    }
    if (ORT_RUN_REFUSALS.includes(name)) {
      assert.match(why, /^run: E_INFERENCE /, name);
      continue;
    }
    assert.match(why, /^load: (E_MODEL_UNSUPPORTED_OPERATOR|E_UNSUPPORTED_TYPE) /, `${name}: ${why}`);
  }
});
