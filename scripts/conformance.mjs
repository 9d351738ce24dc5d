#!/usr/bin/env node
// ONNX's node conformance tests through lockstep (`inferSync`, as a user calls it) and through
// onnxruntime-node called directly, each against ONNX's expected outputs.
//
//   node scripts/conformance.mjs [DIR] [--lockstep path/to/index.js] [--json]
//
// DIR: the committed sample (models/conformance/, the default) or the full suite written by
// `python3 scripts/gen-conformance.py --all DIR`. `--lockstep` runs another build of lockstep
// (e.g. an older checkout's index.js) on the same cases, for before/after figures.
// __test__/conformance.test.mjs runs the sample through `run()` and asserts parity.
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = fileURLToPath(new URL('..', import.meta.url));

/** Tests whose outputs are random by definition. */
export const RANDOM = ['test_bernoulli'];

/** Bits per element of the sub-byte (packed) types. */
const SUB_BYTE_BITS = { uint4: 4, int4: 4, float4e2m1: 4, uint2: 2, int2: 2 };
/** The typed array of each type's data (raw bits for the float kinds JS lacks). */
const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array, int8: Int8Array,
  bool: Uint8Array, float16: Uint16Array, bfloat16: Uint16Array, uint16: Uint16Array, int16: Int16Array, uint32: Uint32Array,
  uint64: BigUint64Array, float8e4m3fn: Uint8Array, float8e4m3fnuz: Uint8Array, float8e5m2: Uint8Array, float8e5m2fnuz: Uint8Array,
  float8e8m0: Uint8Array, uint4: Uint8Array, int4: Uint8Array, float4e2m1: Uint8Array, uint2: Uint8Array, int2: Uint8Array,
};
/** NaN tests of the float8 types' bytes: any NaN encoding matches any other. */
const FLOAT8_NAN = {
  float8e4m3fn: (b) => (b & 0x7f) === 0x7f,
  float8e5m2: (b) => (b & 0x7f) > 0x7c,
  float8e4m3fnuz: (b) => b === 0x80,
  float8e5m2fnuz: (b) => b === 0x80,
  float8e8m0: (b) => b === 0xff,
};

/** The tensor a JSON value describes, as infer takes it (an aligned copy of its bytes). */
export function tensorOf(v) {
  if (v.type === 'string') return { type: 'string', dims: v.dims, data: v.strings };
  const bytes = Buffer.from(v.b64, 'base64');
  const Typed = ARRAYS[v.type];
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  const data = SUB_BYTE_BITS[v.type] ? copy : new Typed(copy.buffer, 0, bytes.length / Typed.BYTES_PER_ELEMENT);
  return { type: v.type, dims: v.dims, data };
}

const bytesOf = (data) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

const bf16 = new DataView(new ArrayBuffer(4));
function bfloatToFloat(b) {
  bf16.setUint32(0, b << 16);
  return bf16.getFloat32(0);
}

/** Floats of a float tensor's data (any width we decode); null for the types compared by bytes. */
function floats(type, data) {
  if (type === 'float32' || type === 'float64') return Array.from(data);
  if (type === 'float16') return Array.from(new Uint16Array(bytesOf(data).slice().buffer), halfToFloat);
  if (type === 'bfloat16') return Array.from(new Uint16Array(bytesOf(data).slice().buffer), bfloatToFloat);
  return null;
}

/**
 * null when tensor `got` is `want` (a JSON tensor), else why not: same type and dims; floats
 * within rtol 1e-3 + atol 1e-5 (float16 rtol 4e-3, bfloat16 1.6e-2), NaN matching NaN; every
 * other type bit for bit (float8 NaNs matching whatever their encoding). The Rust twin is
 * crates/lockstep-core/tests/conformance.rs.
 */
export function compareTensor(got, want) {
  if (got == null || typeof got !== 'object' || Array.isArray(got)) return `not a tensor: ${typeof got}`;
  if (got.type !== want.type) return `type ${got.type}, want ${want.type}`;
  if (JSON.stringify(Array.from(got.dims, Number)) !== JSON.stringify(want.dims)) return `dims [${got.dims}], want [${want.dims}]`;
  if (want.type === 'string') return JSON.stringify(Array.from(got.data)) === JSON.stringify(want.strings) ? null : 'strings differ';
  const w = tensorOf(want);
  const rtol = { float16: 4e-3, bfloat16: 1.6e-2 }[want.type] ?? 1e-3;
  const g = floats(want.type, got.data);
  if (g) {
    const e = floats(want.type, w.data);
    if (g.length !== e.length) return `${g.length} elements, want ${e.length}`;
    for (let i = 0; i < g.length; i++) {
      const [a, b] = [g[i], e[i]];
      if (!(Number.isNaN(a) && Number.isNaN(b)) && a !== b && !(Math.abs(a - b) <= 1e-5 + rtol * Math.abs(b))) return `element ${i}: ${a}, want ${b}`;
    }
    return null;
  }
  const [gb, wb] = [bytesOf(got.data), bytesOf(w.data)];
  if (gb.length !== wb.length) return `${gb.length} bytes, want ${wb.length}`;
  const nan = FLOAT8_NAN[want.type];
  for (let i = 0; i < gb.length; i++) {
    if (gb[i] !== wb[i] && !(nan && nan(gb[i]) && nan(wb[i]))) return `byte ${i}: ${gb[i]}, want ${wb[i]}`;
  }
  return null;
}

/** null when output `got` is expected value `want` (tensor, sequence or optional), else why not. */
export function compareValue(got, want) {
  if (want.type === 'sequence') {
    if (!Array.isArray(got)) return 'not a sequence (array)';
    if (got.length !== want.sequence.length) return `${got.length} tensors, want ${want.sequence.length}`;
    for (let i = 0; i < got.length; i++) {
      const why = compareTensor(got[i], want.sequence[i]);
      if (why) return `[${i}]: ${why}`;
    }
    return null;
  }
  if (want.type === 'optional') return want.optional === null ? (got == null ? null : 'not empty') : compareTensor(got, want.optional);
  return compareTensor(got, want);
}

/** Why the outputs `got` (by name) are not those of `spec`, or null. */
function compareOutputs(got, spec) {
  for (const [name, want] of Object.entries(spec.outputs)) {
    const why = compareValue(got[name], want);
    if (why) return `${name}: ${why}`;
  }
  return null;
}

/** The cases of a directory: [name, spec, model bytes]. */
export function* cases(dir) {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const name = file.slice(0, -5);
    if (RANDOM.includes(name)) continue;
    const spec = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    yield [name, spec, () => readFileSync(spec.model ?? join(dir, `${name}.onnx`))];
  }
}

const describe = (e) => `${e?.code ? `${e.code} ` : ''}${String(e?.message ?? e).split('\n')[0].slice(0, 300)}`;

/** A digest of outputs (by the names of `spec`), to tell whether two runs gave identical bytes. */
function digest(outputs, spec) {
  const h = createHash('sha256');
  for (const k of Object.keys(spec.outputs)) {
    const o = outputs[k];
    for (const t of Array.isArray(o) ? o : [o]) {
      if (!t?.data) h.update('-');
      else if (t.type === 'string') h.update(JSON.stringify(Array.from(t.data)));
      else h.update(bytesOf(t.data));
      h.update('|');
    }
  }
  return h.digest('hex');
}

const inputsOf = (spec) => Object.fromEntries(Object.entries(spec.inputs).map(([k, v]) => [k, v.type === 'sequence' || v.type === 'optional' ? v : tensorOf(v)]));

/**
 * onnxruntime-node on the cases of `dir` from index `from` on, one JSON line per case
 * ({ i, passed, why, digest }). Run in a child process: onnxruntime-node 1.30 aborts the whole
 * process on some outputs (an int4 output: out of memory in OrtValueToNapiValue), so the parent
 * restarts a child after the case that killed one.
 */
async function ortChild(dir, from) {
  const ort = require('onnxruntime-node');
  let i = -1;
  for (const [, spec, model] of cases(dir)) {
    if (++i < from) continue;
    process.stdout.write(`${JSON.stringify({ i, started: true })}\n`);
    let line;
    try {
      let session;
      try {
        session = await ort.InferenceSession.create(model(), { intraOpNumThreads: 1, interOpNumThreads: 1 });
      } catch (e) {
        throw new Error(`load: ${describe(e)}`);
      }
      let out;
      try {
        const feeds = Object.fromEntries(Object.entries(inputsOf(spec)).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)]));
        out = await session.run(feeds);
      } catch (e) {
        throw new Error(`run: ${describe(e)}`);
      } finally {
        await session.release();
      }
      const why = compareOutputs(out, spec);
      line = { i, passed: !why, why, digest: digest(out, spec) };
    } catch (e) {
      line = { i, passed: false, why: e.message };
    }
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
}

/**
 * Runs every case of `dir` through lockstep (the module at `lockstepPath`, in this process) and
 * onnxruntime-node (in child processes). Returns { total, lockstep: { passed, failed }, ort:
 * { passed, failed }, identical }: passed is a list of names, failed maps a name to why (`load:
 * CODE ...` when the model was refused at load, `run: ...` when running failed, `crashed: ...`
 * when onnxruntime-node killed its process, else the first difference from ONNX's expected
 * outputs); identical counts the cases both passed with bit-identical outputs.
 */
export async function run({ dir = join(root, 'models/conformance'), lockstepPath = join(root, 'index.js') } = {}) {
  const { Runtime } = require(resolve(lockstepPath));
  const rt = new Runtime({ workers: 1 });
  const all = [...cases(dir)];
  const result = { total: all.length, lockstep: { passed: [], failed: {} }, ort: { passed: [], failed: {} }, identical: 0 };
  const ours = [];
  for (const [name, spec, model] of all) {
    if (process.env.CONFORMANCE_TRACE) process.stderr.write(`${name}\n`);
    try {
      let info;
      try {
        info = rt.loadModel(model());
      } catch (e) {
        throw new Error(`load: ${describe(e)}`);
      }
      let out;
      try {
        out = rt.inferSync(info.id, inputsOf(spec));
      } catch (e) {
        throw new Error(`run: ${describe(e)}`);
      } finally {
        rt.unloadModel(info.id);
      }
      const why = compareOutputs(out, spec);
      if (why) throw new Error(why);
      result.lockstep.passed.push(name);
      ours.push(digest(out, spec));
    } catch (e) {
      result.lockstep.failed[name] = e.message;
      ours.push(null);
    }
  }
  rt.close?.();
  const theirs = new Array(all.length).fill(null);
  for (let from = 0; from < all.length;) {
    const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--ort-child', dir, String(from)], { encoding: 'utf8', maxBuffer: 1 << 28 });
    let started = from;
    for (const line of child.stdout.split('\n').filter(Boolean)) {
      const r = JSON.parse(line);
      if (r.started) {
        started = r.i;
        continue;
      }
      const name = all[r.i][0];
      if (r.passed) result.ort.passed.push(name);
      else result.ort.failed[name] = r.why;
      theirs[r.i] = r.passed ? r.digest : null;
      started = r.i + 1;
    }
    if (started < all.length && child.status !== 0) {
      result.ort.failed[all[started][0]] = `crashed: onnxruntime-node ended its process (${child.signal ?? `status ${child.status}`}): ${child.stderr.split('\n').find((l) => /FATAL|Error|abort/i.test(l)) ?? ''}`.trim();
      started++;
    }
    from = started;
  }
  result.identical = ours.filter((d, i) => d && d === theirs[i]).length;
  return result;
}

/** A one-paragraph summary of a result. */
export function summary(r) {
  const both = r.lockstep.passed.filter((n) => r.ort.passed.includes(n)).length;
  const onlyOrt = r.ort.passed.filter((n) => !r.lockstep.passed.includes(n));
  return `${r.total} cases: lockstep passes ${r.lockstep.passed.length}, onnxruntime-node directly ${r.ort.passed.length}; both ${both} ` +
    `(${r.identical} with bit-identical outputs); onnxruntime-node only: ${onlyOrt.length}${onlyOrt.length ? ` (${onlyOrt.slice(0, 20).join(', ')})` : ''}`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url) && process.argv[2] === '--ort-child') {
  await ortChild(process.argv[3], Number(process.argv[4]));
} else if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const flag = (name) => {
    const i = args.indexOf(name);
    return i < 0 ? undefined : args.splice(i, 2)[1];
  };
  const lockstepPath = flag('--lockstep');
  const json = args.includes('--json');
  const dir = args.filter((a) => a !== '--json')[0];
  const r = await run({ dir: dir && resolve(dir), lockstepPath });
  if (json) {
    console.log(JSON.stringify(r, null, 1));
  } else {
    console.log(summary(r));
    const reasons = {};
    for (const why of Object.values(r.lockstep.failed)) {
      const key = why.replace(/`[^`]*`/g, '`…`').replace(/\d+/g, 'N').slice(0, 90);
      reasons[key] = (reasons[key] ?? 0) + 1;
    }
    console.log('lockstep failures by reason:');
    for (const [why, n] of Object.entries(reasons).sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${n}\t${why}`);
  }
}
