'use strict';
// lockstep: loads the native addon for this platform, then wraps it in a small JS API
// (path/bytes handling, option checks, and errors with a `code`).
const { readFileSync, existsSync, readdirSync, statSync, promises: fsp } = require('node:fs');
const { join } = require('node:path');
const os = require('node:os');
const { fileURLToPath } = require('node:url');
const { types } = require('node:util');
const { platformTriple } = require('./scripts/platform.cjs');
const ring = require('./ring.js');

const triple = platformTriple();

function loadNative() {
  const local = join(__dirname, `lockstep.${triple}.node`);
  const tried = [];
  if (process.env.LOCKSTEP_NATIVE_PATH) {
    return require(process.env.LOCKSTEP_NATIVE_PATH);
  }
  if (existsSync(local)) return require(local);
  tried.push(local);
  try {
    return require(`lockstep-${triple}`);
  } catch (e) {
    tried.push(`lockstep-${triple} (${e.code || e.message})`);
  }
  const err = new Error(
    `lockstep has no native binary for ${process.platform}/${process.arch} (${triple}). Tried: ${tried.join('; ')}. ` +
      `Fix: reinstall so npm picks the optional package lockstep-${triple} (a local tarball: install the ` +
      `lockstep-${triple}-<version>.tgz \`npm run pack\` wrote beside lockstep's), or build from source with ` +
      '`npm run build` (needs Rust, see README), or point LOCKSTEP_NATIVE_PATH at a built .node file.',
  );
  err.code = 'E_NO_NATIVE_BINARY';
  throw err;
}

const native = loadNative();

const { LockstepError } = require('./errors.js');
const v = require('./validate.js');

/** napi-rs's own argument-conversion failures (a wrong type that got past validate.js). */
const NAPI_TYPE_ERRORS = new Set([
  'InvalidArg', 'ObjectExpected', 'StringExpected', 'NameExpected', 'FunctionExpected', 'NumberExpected',
  'BooleanExpected', 'ArrayExpected', 'BigintExpected', 'DateExpected', 'ArrayBufferExpected',
]);

/**
 * A native error as a LockstepError. The binding's errors carry their stable code in `code`
 * and a plain message (crates/lockstep-node/src/error.rs): nothing is read out of the message,
 * so no text in it (a module's import name, a panic message...) can pose as a code. The only
 * other native errors are napi's own: `GenericFailure` is a Rust panic caught at the boundary
 * (#[napi(catch_unwind)]; its message is the panic's), the `...Expected` statuses are argument
 * conversions that got past validate.js.
 */
function convert(e) {
  if (!(e instanceof Error) || e instanceof LockstepError) return e;
  const code = e.code;
  if (typeof code === 'string' && code.startsWith('E_')) return new LockstepError(code, e.message);
  if (code === 'GenericFailure') {
    return new LockstepError('E_INTERNAL', `internal error (a lockstep bug; please report it): ${e.message}`);
  }
  if (NAPI_TYPE_ERRORS.has(code)) return new LockstepError('E_INVALID_ARGUMENT', `wrong argument type: ${e.message}`);
  return e;
}

/** The user's log sink (setLogger), fed after every call into the runtime. */
let logSink = null;
/** Errors the sink threw (they never escape the call that flushed the logs). */
let logSinkErrors = 0;
/** Log lines handed to the sink so far: a sink may call into a runtime (kill, spawn...). */
let logLinesSunk = 0;
let logSinkWarned = false;

/** Delivers pending log lines to the sink. A sink that throws does not stop the others. */
function deliverLogs() {
  const sink = logSink;
  if (!sink) return;
  for (const line of native.drainLogs()) {
    logLinesSunk++;
    try {
      sink(line);
    } catch (e) {
      logSinkErrors++;
      if (!logSinkWarned) {
        logSinkWarned = true;
        process.emitWarning(`the lockstep log sink threw (${e && e.message}); its errors are counted by logSinkErrors() and not thrown from runtime calls`, {
          type: 'LockstepWarning',
          code: 'E_LOG_SINK',
        });
      }
    }
  }
}

/** Delivers pending log lines to the sink now; sink errors are counted, not thrown. */
function flushLogs() {
  deliverLogs();
}

/** How many times the log sink threw since the process started. */
function getLogSinkErrors() {
  return logSinkErrors;
}

function call(fn) {
  try {
    return fn();
  } catch (e) {
    throw convert(e);
  } finally {
    // After the call ran: a sink error here must not replace its result or its error.
    if (logSink) deliverLogs();
  }
}

const LOG_LEVELS = ['error', 'warn', 'info', 'debug', 'trace'];

/**
 * Routes the runtime's logs (Rust `tracing`: faults, refusals, provider fallbacks, agents' own
 * log lines...) to `sink({ level, target, message, agent?, tick? })`, at `level` and above.
 * `setLogger(null)` turns them off. Process-wide: the addon is loaded once per process, and
 * its level and queue of records are the process's, worker threads included (the last
 * setLogger of any thread sets the level; a record goes to the sink of the thread whose call
 * takes it first). A line says which runtime's agent it is about only through `agent` and
 * `tick`. Records are delivered after each call into a runtime (and when a tickAsync
 * settles), on the calling thread.
 */
function setLogger(sink, options) {
  if (sink != null) v.fn('sink', sink);
  const o = v.options('options', options, ['level']);
  const level = sink ? v.oneOf('options.level', o.level, LOG_LEVELS, 'info') : 'off';
  call(() => native.setLogLevel(level));
  native.drainLogs(); // start fresh
  logSink = sink || null;
  logSinkWarned = false;
}

const CFG = 'E_INVALID_CONFIG';
const MAX_U32 = v.MAX_U32;
const MAX_SAFE = v.MAX_SAFE;

/** Numeric options: [min, max] (the core checks memoryLimitBytes' 128 KiB..4 GiB itself). */
const NUMERIC_OPTIONS = {
  workers: [1, 256],
  fuelPerCall: [0, MAX_SAFE],
  memoryLimitBytes: [0, MAX_SAFE],
  seed: [0, MAX_SAFE],
  maxAgents: [1, 4_194_304], // runtime::MAX_AGENT_IDS
  deadlineMs: [1, MAX_U32],
  checkpointIntervalTicks: [0, MAX_U32],
  maxEvents: [0, MAX_U32],
  maxLogBytes: [1 << 20, MAX_SAFE],
};
const BOOLEAN_OPTIONS = ['record', 'inferenceBatching', 'devMode'];
const OPTION_KEYS = [
  'workers', 'fuelPerCall', 'memoryLimitBytes', 'seed', 'maxAgents', 'deadlineMs',
  'checkpointIntervalTicks', 'record', 'maxEvents', 'maxLogBytes', 'inference', 'inferenceBatching',
  'trustedKeys', 'devMode', 'policy', 'resourcePolicy', 'journal', 'maxWorkers',
];
const FSYNC = ['tick', 'group', 'off'];
/** journal.segmentBytes: at least 4 KiB (journal::MIN_SEGMENT_BYTES). */
const MIN_SEGMENT_BYTES = 4096;

/** Checks the journal option ({ dir, fsync, segmentBytes }; E_INVALID_CONFIG naming the field). */
function journalOptions(j) {
  if (j === undefined) return undefined;
  if (j === null || typeof j !== 'object' || Array.isArray(j)) throw v.fail('option journal', 'an object { dir, fsync?, segmentBytes?, snapshotIntervalTicks? }', j, CFG);
  const o = v.options('option journal', j, ['dir', 'fsync', 'segmentBytes', 'snapshotIntervalTicks'], CFG);
  if (typeof o.dir !== 'string' || o.dir === '') throw v.fail('option journal.dir', 'the journal directory (a non-empty path)', o.dir, CFG);
  v.oneOf('option journal.fsync', o.fsync, FSYNC, 'group', CFG);
  v.optInt('option journal.segmentBytes', o.segmentBytes, MIN_SEGMENT_BYTES, MAX_SAFE, undefined, CFG);
  v.optInt('option journal.snapshotIntervalTicks', o.snapshotIntervalTicks, 0, MAX_SAFE, undefined, CFG);
  return { dir: o.dir, fsync: o.fsync, segmentBytes: o.segmentBytes, snapshotIntervalTicks: o.snapshotIntervalTicks };
}
const INFERENCE_KEYS = ['providers', 'maxModels', 'maxModelBytes', 'ortLibraryPath', 'deterministic', 'searchRoots'];
const PROVIDERS = ['cuda', 'tensorrt', 'directml', 'coreml', 'cpu'];

/** Checks every Runtime option's type and range (E_INVALID_CONFIG naming the option). */
function checkOptions(options) {
  if (options == null) options = {};
  if (typeof options !== 'object' || Array.isArray(options)) throw v.fail('options', 'an object', options, CFG);
  const keys = Object.keys(options);
  for (const key of keys) {
    if (!OPTION_KEYS.includes(key)) {
      throw new LockstepError(CFG, `unknown option "${key}"; valid options: ${OPTION_KEYS.join(', ')}`);
    }
  }
  // Each option read once, into a copy that is checked and handed on (a getter's second answer
  // was what the addon got: a wrong code, or a value no check had seen).
  options = v.readOnce(options, keys, OPTION_KEYS);
  // workers: 'auto' scales with each tick's work, up to maxWorkers (default: the CPUs).
  let workerScaling;
  if (options.workers === 'auto') {
    v.optInt('option maxWorkers', options.maxWorkers, ...NUMERIC_OPTIONS.workers, undefined, CFG);
    options = { ...options, workers: options.maxWorkers ?? Math.min(256, os.availableParallelism()) };
    workerScaling = 'auto';
  } else if (options.maxWorkers !== undefined) {
    throw new LockstepError(CFG, 'option maxWorkers goes with workers: \'auto\' (a fixed count is workers itself)');
  }
  for (const [key, [min, max]] of Object.entries(NUMERIC_OPTIONS)) v.optInt(`option ${key}`, options[key], min, max, undefined, CFG);
  for (const key of BOOLEAN_OPTIONS) if (options[key] !== undefined) v.bool(`option ${key}`, options[key], CFG);
  if (options.trustedKeys !== undefined) {
    if (typeof options.trustedKeys === 'string') {
      throw v.fail('option trustedKeys', 'an array of hex public keys (wrap a single key in [ ])', options.trustedKeys, CFG);
    }
    options.trustedKeys = v.stringArray('option trustedKeys', options.trustedKeys, CFG);
  }
  if (options.resourcePolicy !== undefined) v.oneOf('option resourcePolicy', options.resourcePolicy, ['clamp', 'refuse'], undefined, CFG);
  const { policy, maxWorkers: _max, ...rest } = options;
  if (policy !== undefined && (policy === null || typeof policy !== 'object' || Array.isArray(policy))) {
    throw v.fail('option policy', 'a capabilities object (docs/SECURITY.md)', policy, CFG);
  }
  return {
    ...rest,
    workerScaling,
    policyJson: policy === undefined ? undefined : v.json('option policy', policy, CFG),
    inference: inferenceOptions(options.inference),
    journal: journalOptions(options.journal),
  };
}

const RECOVER_KEYS = [
  'workers', 'trustedKeys', 'devMode', 'fsync', 'segmentBytes', 'snapshotIntervalTicks', 'record', 'maxLogBytes', 'maxEvents',
  'inferenceBatching', 'inference', 'onProgress',
];

/** Runtime.recover()'s options, checked (E_INVALID_CONFIG naming the option). */
function recoverOptions(options) {
  const o = v.options('options', options, RECOVER_KEYS, CFG);
  for (const key of ['workers', 'maxEvents', 'maxLogBytes']) v.optInt(`option ${key}`, o[key], ...NUMERIC_OPTIONS[key], undefined, CFG);
  v.optInt('option segmentBytes', o.segmentBytes, MIN_SEGMENT_BYTES, MAX_SAFE, undefined, CFG);
  v.optInt('option snapshotIntervalTicks', o.snapshotIntervalTicks, 0, MAX_SAFE, undefined, CFG);
  for (const key of ['record', 'inferenceBatching', 'devMode']) if (o[key] !== undefined) v.bool(`option ${key}`, o[key], CFG);
  v.oneOf('option fsync', o.fsync, FSYNC, 'group', CFG);
  if (o.onProgress !== undefined) v.fn('option onProgress', o.onProgress, CFG);
  // A journal never grants itself trust: as replay(), modules run only if signed by a key the
  // caller trusts (or unsigned, with devMode, from a devMode session).
  const trustedKeys = o.trustedKeys === undefined ? [] : v.stringArray('option trustedKeys', o.trustedKeys, CFG);
  const { onProgress, ...rest } = o;
  return { onProgress, native: { ...rest, trustedKeys, devMode: o.devMode ?? false, inference: inferenceOptions(o.inference) } };
}

/** Checks the inference options; adds where node_modules/onnxruntime-node is, so the core finds its libonnxruntime. */
function inferenceOptions(o) {
  o = v.options('option inference', o, INFERENCE_KEYS, CFG);
  if (o.providers !== undefined) {
    o.providers = v.stringArray('option inference.providers', o.providers, CFG);
    o.providers.forEach((p, i) => v.oneOf(`option inference.providers[${i}]`, p, PROVIDERS, undefined, CFG));
  }
  v.optInt('option inference.maxModels', o.maxModels, 1, MAX_U32, undefined, CFG);
  v.optInt('option inference.maxModelBytes', o.maxModelBytes, 1, MAX_SAFE, undefined, CFG);
  if (o.ortLibraryPath !== undefined) v.str('option inference.ortLibraryPath', o.ortLibraryPath, CFG);
  if (o.deterministic !== undefined) v.bool('option inference.deterministic', o.deterministic, CFG);
  if (o.searchRoots !== undefined) o.searchRoots = v.stringArray('option inference.searchRoots', o.searchRoots, CFG);
  const roots = [];
  try {
    const pkg = require.resolve('onnxruntime-node/package.json');
    roots.push(join(pkg, '..', '..', '..'));
  } catch {
    // Not installed: the core reports E_ORT_NOT_FOUND with what to do, if inference is used.
  }
  return { ...o, searchRoots: [...(o.searchRoots ?? []), ...roots] };
}

/** Bits per element of the sub-byte types: their data is packed, as in ONNX Runtime and onnxruntime-node. */
const SUB_BYTE_BITS = { uint4: 4, int4: 4, float4e2m1: 4, uint2: 2, int2: 2 };

/**
 * The typed array each output type is returned as: the one onnxruntime-node uses where it has
 * the type; the raw bits (Uint16Array, Uint8Array) for the float types JS has no array of (and
 * for float16 too: Float16Array is not in every Node version); `string` outputs are string[].
 */
const OUTPUT_ARRAYS = {
  float32: Float32Array,
  float64: Float64Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  int8: Int8Array,
  bool: Uint8Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  uint16: Uint16Array,
  int16: Int16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
  float8e4m3fn: Uint8Array,
  float8e4m3fnuz: Uint8Array,
  float8e5m2: Uint8Array,
  float8e5m2fnuz: Uint8Array,
  float8e8m0: Uint8Array,
  uint4: Uint8Array,
  int4: Uint8Array,
  float4e2m1: Uint8Array,
  uint2: Uint8Array,
  int2: Uint8Array,
};

/** The typed-array classes each tensor type accepts as data (by tag: works across realms); `string` takes string[]. */
const ACCEPTED_DATA = {
  float32: ['Float32Array'],
  float64: ['Float64Array'],
  int32: ['Int32Array'],
  int64: ['BigInt64Array'],
  uint8: ['Uint8Array', 'Uint8ClampedArray'],
  int8: ['Int8Array'],
  bool: ['Uint8Array'],
  // Raw bits, or (where Node has it) a Float16Array, whose bytes are those bits.
  float16: ['Uint16Array', 'Float16Array'],
  bfloat16: ['Uint16Array'],
  uint16: ['Uint16Array'],
  int16: ['Int16Array'],
  uint32: ['Uint32Array'],
  uint64: ['BigUint64Array'],
  string: ['Array'],
  float8e4m3fn: ['Uint8Array'],
  float8e4m3fnuz: ['Uint8Array'],
  float8e5m2: ['Uint8Array'],
  float8e5m2fnuz: ['Uint8Array'],
  float8e8m0: ['Uint8Array'],
  // Packed bytes (onnxruntime-common types int4 data as Int8Array, and makes it a Uint8Array).
  uint4: ['Uint8Array'],
  int4: ['Uint8Array', 'Int8Array'],
  float4e2m1: ['Uint8Array'],
  uint2: ['Uint8Array'],
  int2: ['Uint8Array', 'Int8Array'],
};

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * string[] in the wire encoding of string tensors (lockstep_abi::tensor_type): each element a
 * u32 little-endian byte length, then its UTF-8 (lone surrogates become U+FFFD, as with
 * TextEncoder everywhere).
 */
function encodeStrings(what, strings, count) {
  // `count` elements (the length checked against dims), each read once: a hole is undefined,
  // not a string (map skipped it, and its undefined part threw a TypeError below).
  const parts = new Array(count);
  for (let i = 0; i < count; i++) {
    const s = strings[i];
    if (typeof s !== 'string') throw v.fail(`${what}.data[${i}]`, 'a string', s);
    parts[i] = utf8Encoder.encode(s);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const p of parts) {
    view.setUint32(at, p.length, true);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/** `count` strings from the wire encoding at `bytes` (a Uint8Array). */
function decodeStrings(bytes, count) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Array(count);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const len = view.getUint32(at, true);
    out[i] = utf8Decoder.decode(bytes.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return out;
}

/** Whether `length` elements of `type` are `count` elements: for packed sub-byte data, the bytes that hold `count`. */
function holds(type, length, count) {
  const bits = SUB_BYTE_BITS[type];
  return bits === undefined ? length === count : length === Math.ceil((count * bits) / 8);
}

/** A view's @@toStringTag, as Object.prototype.toString reads it ('Object' if not a string). */
function viewTag(view) {
  const tag = view[Symbol.toStringTag];
  return typeof tag === 'string' ? tag : 'Object';
}

/**
 * { name: { type, data, dims } } (also onnxruntime-node Tensors) → parallel arrays. Like
 * onnxruntime-node, `data` must be the typed array of `type` (a Float64Array is not float32
 * data; string[] for `string`) and hold exactly the product of `dims` elements (sub-byte types:
 * that many elements packed, ceil(n × bits / 8) bytes).
 */
function flattenInputs(inputs) {
  if (inputs == null || typeof inputs !== 'object' || Array.isArray(inputs)) {
    throw v.fail('inputs', 'an object: { inputName: { type, data, dims } }', inputs);
  }
  const names = [], types = [], dims = [], data = [];
  for (const name in inputs) {
    if (!Object.hasOwn(inputs, name)) continue;
    const t = inputs[name];
    const what = `inputs["${name}"]`;
    if (t == null || typeof t !== 'object') throw v.fail(what, 'a tensor { type, data, dims }', t);
    // type, data and dims read once each (and dims' elements copied as checked): a getter's or
    // a Proxy's later answer reached the spec unchecked (a type or dim holding ':' or ';'), or
    // the view was made of another array than the one checked (a raw RangeError).
    const type = t.type;
    const tData = t.data;
    const tDims = t.dims;
    const accepted = Object.hasOwn(ACCEPTED_DATA, type) ? ACCEPTED_DATA[type] : undefined;
    if (!accepted) {
      throw new LockstepError('E_UNSUPPORTED_TYPE', `${what}.type must be one of ${Object.keys(ACCEPTED_DATA).join(', ')}; got ${v.describe(type)}`);
    }
    const tag = type === 'string' ? (Array.isArray(tData) ? 'Array' : null)
      // What Object.prototype.toString would name (a view's tag), without making its string.
      : ArrayBuffer.isView(tData) ? viewTag(tData) : null;
    if (!accepted.includes(tag)) {
      const expected = type === 'string' ? 'an array of strings' : `a ${accepted.join(' or ')}`;
      throw new LockstepError('E_INVALID_ARGUMENT', `${what}.data must be ${expected} for type "${type}"; got ${v.describe(tData)}. Convert it (e.g. Float32Array.from(data)): its bytes are not reinterpreted`);
    }
    if (!Array.isArray(tDims)) throw v.fail(`${what}.dims`, 'an array of non-negative integers', tDims);
    const rank = tDims.length;
    const shape = [];
    let count = 1;
    for (let i = 0; i < rank; i++) {
      if (!(i in tDims)) continue; // a hole, as forEach skipped it (it stays one in the copy)
      const d = tDims[i];
      // v.int's check inline: its message (and name string) only made when it fails.
      if (typeof d !== 'number' || !Number.isInteger(d) || d < 0 || d > MAX_SAFE) v.int(`${what}.dims[${i}]`, d, 0, MAX_SAFE);
      shape[i] = d;
      count *= d;
    }
    if (shape.length !== rank) shape.length = rank; // trailing holes
    const length = tData.length;
    if (!holds(type, length, count)) {
      const bits = SUB_BYTE_BITS[type];
      const held = bits === undefined ? `data holds ${length}` : `data holds ${length} bytes, and ${type} packs ${8 / bits} per byte`;
      throw new LockstepError('E_BAD_INPUT_SHAPE', `${what}: dims [${shape.join(', ')}] describe ${count} elements, but ${held}`);
    }
    names.push(name);
    types.push(type);
    dims.push(shape);
    // A view, not a copy: the core copies once, into ONNX Runtime's tensor.
    if (type === 'string') data.push(encodeStrings(what, tData, length));
    else {
      const buffer = tData.buffer;
      // An empty view of a transferred buffer passed every check above (0 elements; a view of
      // one always reads as empty, so only an empty one is asked).
      if (length === 0 && isDetached(buffer)) throw new LockstepError('E_INVALID_ARGUMENT', `${what}.data is a view of a detached ArrayBuffer: it was transferred away (postMessage, structuredClone) and holds no bytes here`);
      data.push(new Uint8Array(buffer, tData.byteOffset, tData.byteLength));
    }
  }
  return [names, types, dims, data];
}

/**
 * Inputs as one spec string and one buffer (each tensor 8-byte aligned): the fast path.
 * `scratch(size)`, if given, returns a reused buffer of at least `size` bytes to pack several
 * inputs into (read by the native call before it returns), instead of a new one per call.
 */
function packInputs(inputs, scratch, parts = false) {
  const [names, types, dims, data] = flattenInputs(inputs);
  let size = 0;
  for (const d of data) size += Math.ceil(d.byteLength / 8) * 8;
  // With `parts`, several inputs of PARTS_MIN_BYTES or more go as they are, an array of views
  // (inferIntoParts reads each in place): packing copied them all once more per call. Bytes in
  // a SharedArrayBuffer are copied all the same: another thread may write them while ONNX
  // Runtime reads them, and it reads some twice (a Gather checks an index, then reads it again
  // to copy: changed in between, it read out of bounds and the process crashed).
  if (parts && data.length > 1 && size >= PARTS_MIN_BYTES) {
    for (let i = 0; i < data.length; i++) data[i] = unshared(data[i]);
    return [inputSpec(names, types, dims, data), data];
  }
  // One input: its own bytes, no copy (unless shared, as above). Several: packed, each at a
  // multiple of 8.
  const inPlace = data.length === 1 && !isShared(data[0].buffer);
  const packed = inPlace ? data[0] : scratch ? scratch(size) : new Uint8Array(size);
  let offset = 0;
  for (let i = 0; i < names.length; i++) {
    if (!inPlace) packed.set(data[i], offset);
    offset += Math.ceil(data[i].byteLength / 8) * 8;
  }
  return [inputSpec(names, types, dims, data), packed];
}

/** The last spec built and what it describes: a call with the same inputs' shapes reuses it. */
let lastSpec = { spec: '', names: [], types: [], dims: [], bytes: [] };

/** The packed inputs' spec (`name:type:dims:bytes;` each), the last one when it is the same. */
function inputSpec(names, types, dims, data) {
  const last = lastSpec;
  let same = names.length === last.names.length;
  for (let i = 0; same && i < names.length; i++) {
    same = names[i] === last.names[i] && types[i] === last.types[i] && data[i].byteLength === last.bytes[i] && dims[i].length === last.dims[i].length;
    for (let k = 0; same && k < dims[i].length; k++) same = dims[i][k] === last.dims[i][k];
  }
  if (same) return last.spec;
  let spec = '';
  for (let i = 0; i < names.length; i++) {
    if (names[i].includes(':') || names[i].includes(';')) {
      throw new LockstepError('E_INVALID_ARGUMENT', `input name "${names[i]}" may not contain ':' or ';'`);
    }
    spec += `${names[i]}:${types[i]}:${dims[i].join(',')}:${data[i].byteLength};`;
  }
  // The dims are flattenInputs' copies, which no caller holds (it may change its own arrays before the next call).
  lastSpec = { spec, names, types, dims, bytes: data.map((d) => d.byteLength) };
  return spec;
}

/**
 * The outputs of the packed form (crates/lockstep-node/src/inference.rs): entries
 * `name:type:dims:bytes;` whose data lies in `data` at multiples of 8; a sequence output is
 * `name:sequence:N:0;` followed by its N tensors' entries, and becomes an array of tensors.
 */
function unpackOutputs({ spec, data }) {
  const out = {};
  let offset = 0;
  let sequence = null; // [array, tensors still to read] while reading a sequence's tensors
  for (let at = 0; at < spec.length;) {
    const end = spec.indexOf(';', at);
    // name:type:dims:bytes — the name may contain ':' (it is the model's): the last three fields are ours.
    const c3 = spec.lastIndexOf(':', end);
    const c2 = spec.lastIndexOf(':', c3 - 1);
    const c1 = spec.lastIndexOf(':', c2 - 1);
    const name = spec.slice(at, c1);
    const type = spec.slice(c1 + 1, c2);
    const dimText = spec.slice(c2 + 1, c3);
    const bytes = +spec.slice(c3 + 1, end);
    at = end + 1;
    if (type === 'sequence') {
      out[name] = [];
      sequence = [out[name], +dimText];
      if (sequence[1] === 0) sequence = null;
      continue;
    }
    const dims = dimText ? dimText.split(',').map(Number) : [];
    const start = data.byteOffset + offset;
    offset += Math.ceil(bytes / 8) * 8;
    let tensor;
    if (type === 'string') {
      let count = 1;
      for (const d of dims) count *= d;
      tensor = { type, dims, data: decodeStrings(new Uint8Array(data.buffer, start, bytes), count) };
    } else {
      const Typed = OUTPUT_ARRAYS[type];
      // The buffer's outputs start at multiples of 8 from its start, so every view is aligned
      // when the buffer is; if it is not, copy.
      tensor = {
        type,
        dims,
        data: start % Typed.BYTES_PER_ELEMENT === 0
          ? new Typed(data.buffer, start, bytes / Typed.BYTES_PER_ELEMENT)
          : new Typed(data.buffer.slice(start, start + bytes)),
      };
    }
    if (sequence) {
      sequence[0].push(tensor);
      if (--sequence[1] === 0) sequence = null;
    } else {
      out[name] = tensor;
    }
  }
  return out;
}

/** The most bytes inferSync keeps in each of its reused buffers (inputs, outputs) between calls. */
const SCRATCH_MAX_BYTES = 1 << 20;
/**
 * From this many bytes of inputs (all together) inferSync passes several inputs as separate
 * arrays rather than packing them into one (a copy); below it, packing costs less than
 * handing napi an array of arrays.
 */
const PARTS_MIN_BYTES = 16 * 1024;

/**
 * The packed outputs' spec parsed once (`inferInto` says when it changes): entries
 * { name, type, dims, offset, bytes, Typed, seq } in packed order, `seq` the tensor count of
 * a sequence entry (its tensors follow, unnamed), else -1.
 */
function outputLayout(spec) {
  const entries = [];
  let offset = 0;
  for (let at = 0; at < spec.length;) {
    const end = spec.indexOf(';', at);
    const c3 = spec.lastIndexOf(':', end);
    const c2 = spec.lastIndexOf(':', c3 - 1);
    const c1 = spec.lastIndexOf(':', c2 - 1);
    const type = spec.slice(c1 + 1, c2);
    const dimText = spec.slice(c2 + 1, c3);
    const bytes = +spec.slice(c3 + 1, end);
    const entry = { name: spec.slice(at, c1), type, dims: [], offset, bytes, Typed: OUTPUT_ARRAYS[type], seq: -1, view: null };
    at = end + 1;
    if (type === 'sequence') {
      entry.seq = +dimText;
    } else {
      entry.dims = dimText ? dimText.split(',').map(Number) : [];
      offset += Math.ceil(bytes / 8) * 8;
    }
    entries.push(entry);
  }
  return { entries, buffer: null };
}

/**
 * The outputs `layout` describes, copied out of `buffer` (which the next call reuses), or with
 * `own`, views of `buffer` (a buffer of this call's own).
 */
function readOutputs(layout, buffer, own = false) {
  if (own) {
    layout.buffer = null; // keep no view of it
    for (const e of layout.entries) {
      e.view = null;
    }
  } else if (layout.buffer !== buffer) {
    // Views of this buffer, made once per buffer: each call copies out of them.
    for (const e of layout.entries) {
      e.view = e.seq >= 0 || e.type === 'string' ? null
        : new e.Typed(buffer.buffer, buffer.byteOffset + e.offset, e.bytes / e.Typed.BYTES_PER_ELEMENT);
    }
    layout.buffer = buffer;
  }
  const out = {};
  let sequence = null; // [array, tensors still to read] while reading a sequence's tensors
  for (const e of layout.entries) {
    if (e.seq >= 0) {
      out[e.name] = [];
      sequence = e.seq === 0 ? null : [out[e.name], e.seq];
      continue;
    }
    let data;
    if (e.type === 'string') {
      let count = 1;
      for (const d of e.dims) count *= d;
      data = decodeStrings(buffer.subarray(e.offset, e.offset + e.bytes), count);
    } else {
      data = own ? new e.Typed(buffer.buffer, buffer.byteOffset + e.offset, e.bytes / e.Typed.BYTES_PER_ELEMENT) : e.view.slice();
    }
    const tensor = { type: e.type, dims: e.dims.slice(), data };
    if (sequence) {
      sequence[0].push(tensor);
      if (--sequence[1] === 0) sequence = null;
    } else {
      out[e.name] = tensor;
    }
  }
  return out;
}

/**
 * Whether an ArrayBuffer was transferred away (postMessage, structuredClone): a view of it
 * reads as empty, so its bytes would silently become an empty payload (or module), and
 * `new Uint8Array(it)` throws a raw TypeError.
 */
function isDetached(buffer) {
  // (Of any realm: a vm context's ArrayBuffer is not `instanceof` this one's.) SharedArrayBuffers cannot be detached.
  if (!types.isArrayBuffer(buffer)) return false;
  if (typeof buffer.detached === 'boolean') return buffer.detached;
  if (buffer.byteLength !== 0) return false;
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

function toBytes(payload, name) {
  if (payload == null) return new Uint8Array(0);
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  // ArrayBuffers of any realm: one made in a vm context (Jest's test environment) is not
  // `instanceof` this realm's, and was refused as "not an ArrayBuffer".
  const arrayBuffer = types.isArrayBuffer(payload);
  if ((arrayBuffer && isDetached(payload)) || (ArrayBuffer.isView(payload) && isDetached(payload.buffer))) {
    throw new LockstepError('E_INVALID_ARGUMENT', `${name} is a detached ArrayBuffer (or a view of one): it was transferred away (postMessage, structuredClone) and holds no bytes here`);
  }
  if (payload instanceof Uint8Array) return payload;
  if (arrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  throw v.fail(name, 'a Uint8Array, Buffer, ArrayBuffer or string', payload);
}

/**
 * Whether `buffer` is a SharedArrayBuffer, of any realm (one made in a `vm` context, as Jest's
 * test environment is, is not `instanceof` this realm's: it was then read in place).
 */
const isShared = (buffer) => !(buffer instanceof ArrayBuffer) && types.isSharedArrayBuffer(buffer);

/** `bytes`, copied if another thread could rewrite them while the addon reads them in place. */
const unshared = (bytes) => (isShared(bytes.buffer) ? bytes.slice() : bytes);

/** Snapshot bytes (from snapshot()): a Uint8Array, Buffer or ArrayBuffer; never text. */
function snapshotBytes(x, name) {
  if (x == null || typeof x === 'string') throw v.fail(name, 'a snapshot: the bytes from rt.snapshot() (a Uint8Array, Buffer or ArrayBuffer)', x);
  const bytes = toBytes(x, name);
  // Restoring reads the snapshot in place, checksums first and the sections after: bytes in a
  // SharedArrayBuffer, which another thread may rewrite in between, are copied first.
  return unshared(bytes);
}

/** Runtime.restore()'s options: those of new Runtime() and `modules` (hashes it must hold). */
function restoreOptions(options) {
  if (options == null) options = {};
  if (typeof options !== 'object' || Array.isArray(options)) throw v.fail('options', 'an object', options, CFG);
  const { modules, ...rest } = options;
  const hashes = modules === undefined ? undefined : v.stringArray('option modules', modules, CFG);
  return { o: checkOptions(rest), modules: hashes };
}

const isPath = (source) => typeof source === 'string' || source instanceof URL;
const pathText = (source) => (source instanceof URL && source.protocol === 'file:' ? fileURLToPath(source) : String(source));

/** A module or model: a path (string or file URL) or its bytes. */
function moduleBytes(source, name = 'source', what = 'agent module') {
  if (isPath(source)) {
    try {
      return readFileSync(source);
    } catch (e) {
      throw new LockstepError('E_IO', `cannot read ${what} ${pathText(source)} (${name}): ${e.message}`);
    }
  }
  return sourceBytes(source, name, what);
}

/** moduleBytes(), reading a path without blocking the event loop. */
async function moduleBytesAsync(source, name, what) {
  if (isPath(source)) {
    try {
      return await fsp.readFile(source);
    } catch (e) {
      throw new LockstepError('E_IO', `cannot read ${what} ${pathText(source)} (${name}): ${e.message}`);
    }
  }
  return sourceBytes(source, name, what);
}

function sourceBytes(source, name, what) {
  if (source instanceof Uint8Array || types.isArrayBuffer(source) || ArrayBuffer.isView(source)) return toBytes(source, name);
  throw v.fail(name, `a path or the ${what}'s bytes (Uint8Array, Buffer, ArrayBuffer)`, source);
}

/**
 * An error about a module or model loaded from a path, naming the file (the addon only sees
 * bytes: its messages name the module by hash).
 */
function naming(e, source) {
  if (!isPath(source) || !(e instanceof LockstepError) || e.code === 'E_CLOSED' || e.code === 'E_BUSY') return e;
  const named = new LockstepError(e.code, `${pathText(source)}: ${e.message}`);
  return named;
}

const HASH_RE = /^[0-9a-f]{64}$/;
const INT32 = [-(2 ** 31), 2 ** 31 - 1];

/** A module hash from loadModule, or a module to load. */
function spawnSource(rt, source) {
  return typeof source === 'string' && HASH_RE.test(source) ? source : rt.loadModule(source);
}

function modelId(name, id) {
  if (typeof id !== 'string') {
    const hint = id && typeof id === 'object' && typeof id.id === 'string' ? ' (pass the model info\'s .id)' : '';
    throw v.fail(name, `a model id string, as returned by loadModel(...).id${hint}`, id);
  }
  return id;
}

/** Key of the test hooks (not part of the API; they work only with LOCKSTEP_TEST_HOOKS=1). */
const TEST_PANIC = Symbol.for('lockstep.testPanic');
const TEST_PANIC_TICK_ASYNC = Symbol.for('lockstep.testPanicTickAsync');

/** Models whose calls take less than this run inline: a thread-pool hop costs more (~60 µs). */
const INLINE_INFER_US = 100;
/** How often an inline model is re-timed, in calls. */
const INLINE_RETIME_CALLS = 256;

/** Most requests a runtime has waiting for their replies at once (request() past it: E_QUEUE_FULL). */
const MAX_PENDING_REQUESTS = 4096;
/** Ticks a request waits for its reply by default. */
const DEFAULT_TIMEOUT_TICKS = 100;
/** Bytes of the request envelope (docs/ABI.md, "Requests"): a request's body is at most the message limit less these. */
const REQUEST_HEADER_BYTES = 16;

// `using rt = new Runtime()` / `await using`: Symbol.dispose where the runtime has it (Node 20+;
// Node 18.18+), else the well-known name TypeScript's downlevel helpers look up.
const DISPOSE = Symbol.dispose ?? Symbol.for('Symbol.dispose');
const ASYNC_DISPOSE = Symbol.asyncDispose ?? Symbol.for('Symbol.asyncDispose');

/** An agent id argument that must name an agent, not the host (id 0). */
function agentArg(name, id) {
  v.id(name, id);
  if (id === HOST_ID) {
    throw new LockstepError('E_INVALID_ARGUMENT', `${name} is 0, the host's own id (HOST_ID): the host sends to agents, whose ids (1, 2, ...) come from spawn(). What agents send to 0 is read with drainMessages()`);
  }
  return id;
}

const TRIGGERS = ['any', 'all'];

/** spawn()'s `after` and `trigger` options, checked (undefined when not given). */
function graphOptions(o) {
  let after;
  if (o.after !== undefined) {
    if (!Array.isArray(o.after)) throw v.fail('options.after', 'an array of agent ids (upstream agents)', o.after);
    after = o.after.map((id, i) => agentArg(`options.after[${i}]`, id));
  }
  const trigger = o.trigger === undefined ? undefined : v.oneOf('options.trigger', o.trigger, TRIGGERS);
  return { after, trigger };
}

/** The native runtime `Runtime.recover` made, for the constructor to adopt. */
let adopting = null;

class Runtime {
  #native;
  #rings = null;
  /** model id → { best: fastest timed inline call in µs, calls: number } */
  #inferCost = new Map();
  // inferSync's reused buffers: inputs packed (several), outputs written by the native call
  // (copied out before it returns), and the parsed layout of the last outputs.
  #inBuffer = new Uint8Array(0);
  #outBuffer = new Uint8Array(4096);
  #outLayout = outputLayout('');
  // The model id and input spec the native side holds from the last inferSync that sent them
  // (null: send it): left out when unchanged, since a string crossing napi is a UTF-8 copy and
  // an allocation each (BENCHMARKS.md, thirteenth session).
  #inferSent = { model: null, spec: null };
  /** Language models by id: { handle: NativeLanguageModel, tokenizer: a JS tokenizer or null }. */
  #languageModels = new Map();
  /** close() was called. */
  #closing = false;
  /** The promise of the tickAsync running now, if any. */
  #inflight = null;
  /** The run() driving this runtime, if any. */
  #driver = null;
  /** Resolved after every tick (sync or async, failed or not) and when a run() ends. */
  #tickWaiters = [];
  /** Requests sent, waiting for their replies: id → { agent, deadline, resolve, reject }. */
  #pending = new Map();
  /** Requests made while a tick ran, sent right after it: { agent, body, kind, priority, timeoutTicks, resolve, reject }. */
  #unsent = [];
  #pumping = false;
  /** The dashboard's observer (dashboard/observer.js) while a serve() server is attached; null: nothing is observed. */
  #observer = null;
  /** The journal's directory (string or null), read once: it never changes, and reading it from the native side is E_BUSY during a tickAsync. */
  #journalDir = undefined;

  /** @param {import('./index').RuntimeOptions} [options] */
  constructor(options) {
    if (adopting) {
      this.#native = adopting;
      adopting = null;
      void this.journalDir;
      return;
    }
    const o = checkOptions(options);
    this.#native = call(() => new native.NativeRuntime(o));
    void this.journalDir;
  }

  /**
   * A runtime rebuilt from `snapshot()`'s bytes (docs/SNAPSHOT.md): it continues exactly where
   * the snapshot was taken. Options as for `new Runtime()`: the session's settings come from the
   * snapshot, and each one given must equal the snapshot's (E_SNAPSHOT_MISMATCH lists every
   * difference), as must `modules` (hashes) if given; workers, record, limits and trust are
   * yours (a snapshot never grants itself trust: E_SNAPSHOT_UNTRUSTED).
   */
  static restore(snapshot, options) {
    // The options first: their getters are caller code, which could detach the snapshot's
    // buffer after its check (the addon then read no bytes: E_SNAPSHOT_CORRUPT, not the
    // detached buffer's E_INVALID_ARGUMENT).
    const { o, modules } = restoreOptions(options);
    const bytes = snapshotBytes(snapshot, 'snapshot');
    const restored = call(() => native.NativeRuntime.restore(bytes, o, modules));
    adopting = restored;
    return new Runtime();
  }

  /**
   * The runtime's complete state, between ticks, as bytes (docs/SNAPSHOT.md): restore it with
   * Runtime.restore(), here or in another process. Not in it: undrained events, rings, the log.
   */
  snapshot() {
    return call(() => this.#native.snapshot());
  }

  /**
   * Continues the session whose journal a killed (or closed) runtime left in `dir`: validates
   * every segment, replays them verifying every hash, cuts off a torn final write, and returns
   * `{ runtime, report }`: a running runtime that journals on into `dir`, and
   * `{ tick, ticksReplayed, bytesDiscarded, snapshotTick, ... }`. Trust as in replay():
   * pass `trustedKeys` (and `devMode` for a devMode session's unsigned modules).
   */
  static recover(dir, options) {
    if (typeof dir !== 'string' || dir === '') throw v.fail('dir', 'the journal directory (a non-empty path)', dir);
    const o = recoverOptions(options);
    const progress = progressRelay(o.onProgress);
    const recovered = call(() => native.NativeRuntime.recover(dir, o.native, progress.relay));
    try {
      progress.check();
    } catch (e) {
      recovered.close(); // release the journal's lock: the caller never sees this runtime
      throw e;
    }
    adopting = recovered;
    const runtime = new Runtime();
    const r = call(() => recovered.recoveryReport());
    // As index.d.ts says: null, not absent, when there is none.
    return { runtime, report: { ...r, cut: r.cut ?? null, snapshotTick: r.snapshotTick ?? null, note: r.note ?? null } };
  }

  /**
   * Writes and syncs the journal up to the last complete tick now, whatever its fsync policy;
   * returns the durable tick (null before the first tick, or without a journal).
   */
  syncJournal() {
    return call(() => this.#native.syncJournal()) ?? null;
  }

  /** E_CLOSED, saying why when the native runtime knows (a panic inside a tickAsync closed it). */
  #throwClosed() {
    try {
      call(() => this.#native.currentTick);
    } catch (e) {
      if (e.code === 'E_CLOSED') throw e;
    }
    throw new LockstepError('E_CLOSED', 'this runtime is closed; create a new Runtime');
  }

  /**
   * Frees the runtime now: its agents, the address space reserved for their memories, its
   * rings' buffers and its inference engine, instead of whenever the garbage collector runs.
   * Idempotent. Every other method then throws E_CLOSED; requests still waiting for a reply
   * reject with E_CLOSED. A tickAsync already running finishes its ticks (its promise settles
   * with their report) and the runtime is freed then.
   */
  close() {
    if (!this.#closing) {
      this.#closing = true;
      const closed = () => new LockstepError('E_CLOSED', 'the runtime was closed before the reply came');
      this.#failRequests(closed);
      this.#driver?.stop(); // a run() ends (done resolves, reason 'stopped') without waiting for its next tick
      this.#observer?.server?.runtimeClosed();
    }
    call(() => this.#native.close());
    this.#rings = null;
    this.#inferCost.clear();
    this.#wake();
  }

  /** `using rt = new Runtime(...)`: close() at the end of the block. */
  [DISPOSE]() {
    this.close();
  }

  /** `await using rt = new Runtime(...)`: stops a run(), waits for a running tickAsync, then close(). */
  async [ASYNC_DISPOSE]() {
    if (this.#driver) await this.#driver.stop().catch(() => {});
    if (this.#inflight) await this.#inflight.catch(() => {});
    this.close();
  }

  /** Whether close() was called (or a panic inside a tickAsync closed the runtime). */
  get closed() {
    return call(() => this.#native.closed);
  }

  loadModule(source) {
    const bytes = moduleBytes(source, 'source');
    try {
      return call(() => this.#native.loadModule(bytes));
    } catch (e) {
      throw naming(e, source);
    }
  }

  /**
   * Spawns an agent. `priority` orders it among the agents of its graph level; `after` (agent
   * ids) makes it downstream of those agents (each edge as connect(id, newAgent)), `trigger`
   * ('any' or 'all') says when it steps. The edges are checked before the agent is spawned.
   */
  spawn(source, options) {
    const o = v.options('options', options, ['priority', 'after', 'trigger', 'fuelPerTick']);
    const priority = v.optInt('options.priority', o.priority, ...INT32, 0);
    const { after, trigger } = graphOptions(o);
    const fuelPerTick = v.optInt('options.fuelPerTick', o.fuelPerTick, 0, Number.MAX_SAFE_INTEGER, 0);
    const hash = spawnSource(this, source);
    return call(() => this.#native.spawn(hash, priority, after, trigger, fuelPerTick));
  }

  spawnMany(source, count, options) {
    v.int('count', count, 0, MAX_U32);
    const o = v.options('options', options, ['priority', 'after', 'trigger', 'fuelPerTick']);
    const priority = v.optInt('options.priority', o.priority, ...INT32, 0);
    const { after, trigger } = graphOptions(o);
    const fuelPerTick = v.optInt('options.fuelPerTick', o.fuelPerTick, 0, Number.MAX_SAFE_INTEGER, 0);
    const hash = spawnSource(this, source);
    const ids = [];
    for (let i = 0; i < count; i++) {
      try {
        ids.push(call(() => this.#native.spawn(hash, priority, after, trigger, fuelPerTick)));
      } catch (e) {
        // The agents already spawned exist (and are recorded): say which, so none is orphaned.
        if (e && typeof e === 'object') {
          e.spawnedIds = ids;
          e.message = `${e.message} (spawnMany: ${ids.length} of ${count} agents were spawned before this error; their ids are in error.spawnedIds)`;
        }
        throw e;
      }
    }
    return ids;
  }

  /**
   * Adds the edge from → to to the workflow graph: from the next tick on, `to` runs after
   * `from` (and after every other agent it depends on) and gets what `from` sends it in the
   * same tick. Returns whether the edge is new. E_DAG_CYCLE (naming the cycle) for an edge
   * that would close one; E_UNKNOWN_AGENT, E_AGENT_NOT_RUNNING; E_EDGE_LIMIT.
   */
  connect(from, to) {
    agentArg('from', from);
    agentArg('to', to);
    return call(() => this.#native.connect(from, to));
  }

  /** Removes the edge from → to; returns whether it existed (a stopped agent's edges are gone already). */
  disconnect(from, to) {
    agentArg('from', from);
    agentArg('to', to);
    return call(() => this.#native.disconnect(from, to));
  }

  /**
   * When the agent receives and steps: 'any' (default) every tick; 'all' only in ticks where
   * every running upstream agent has sent it something since it last stepped (a fan-in barrier).
   */
  setTrigger(id, trigger) {
    agentArg('id', id);
    v.oneOf('trigger', trigger, TRIGGERS);
    return call(() => this.#native.setTrigger(id, trigger));
  }

  /**
   * Gives an agent a time slice: a call of it that burns `fuelPerTick` fuel in one tick is
   * suspended (not killed) and goes on next tick where it stopped; 0 removes the slice.
   */
  setFuelPerTick(id, fuelPerTick) {
    agentArg('id', id);
    v.int('fuelPerTick', fuelPerTick, 0, Number.MAX_SAFE_INTEGER);
    return call(() => this.#native.setFuelPerTick(id, fuelPerTick));
  }

  /** Every edge of the workflow graph, ascending, as [from, to] pairs. */
  edges() {
    return call(() => this.#native.edges());
  }

  /** An agent's place in the workflow graph: { trigger, level } (level 0: no upstream agent). */
  graphInfo(id) {
    v.id('id', id);
    return call(() => this.#native.graphInfo(id));
  }

  send(to, payload, options) {
    agentArg('to', to);
    // The options before the payload: an options getter (caller code) that detached the
    // payload's buffer after toBytes checked it made the send an empty message, silently.
    const o = v.options('options', options, ['kind', 'priority']);
    const kind = v.optInt('options.kind', o.kind, 0, MAX_U32, 0);
    const priority = v.optInt('options.priority', o.priority, ...INT32, 0);
    const bytes = toBytes(payload, 'payload');
    return call(() => this.#native.send(to, kind, priority, bytes));
  }

  /**
   * Runs n ticks on the calling thread; returns the report of the last one (report.tick is
   * its number: after tick(10) from the start, report.tick is 9 and currentTick 10).
   */
  tick(n = 1) {
    v.int('n (the number of ticks)', n, 1, MAX_U32);
    const started = this.#observer ? performance.now() : 0;
    const sunk = logLinesSunk;
    const report = call(() => this.#native.tick(n));
    this.#afterTicks(n, report, started, logLinesSunk !== sunk);
    return report;
  }

  /**
   * tick(n) off the event loop: the ticks run on libuv's thread pool, and the promise settles
   * with the same report (same hashes: a tick does not depend on the thread that runs it).
   * Meanwhile every other call on this runtime throws E_BUSY.
   */
  async tickAsync(n = 1) {
    v.int('n (the number of ticks)', n, 1, MAX_U32);
    return this.#tickAsync(n, () => this.#native.tickAsync(n));
  }

  /** Where the wall time of tickAsync calls went, µs summed (index.d.ts, TickTimings). */
  tickTimings() {
    return call(() => this.#native.tickTimings());
  }

  async #tickAsync(n, start) {
    const started = this.#observer ? performance.now() : 0;
    const promise = call(start);
    this.#inflight = promise;
    let report;
    try {
      report = await promise;
    } catch (e) {
      this.#inflight = null;
      if (this.#closing) call(() => this.#native.close()); // release what close() had to leave
      if (logSink) deliverLogs();
      if (!this.#closing && call(() => this.#native.closed)) {
        // A panic on the pool closed the runtime: nothing will reply, and the rest closes as
        // close() closes it (a run() ends, the dashboard server closes; before, code that
        // took "not closing" for "open" called the closed runtime and threw E_CLOSED from
        // timers and socket listeners, and server.close() rejected, leaving it listening).
        this.#failRequests(() => convert(e));
        this.close();
      }
      this.#wake();
      throw convert(e);
    }
    this.#inflight = null;
    if (this.#closing) call(() => this.#native.close());
    const sunk = logLinesSunk;
    if (logSink) deliverLogs();
    if (!this.#closing) this.#afterTicks(n, report, started, logLinesSunk !== sunk);
    else this.#wake();
    return report;
  }

  /**
   * After ticks ran (the runtime is free): wake ring waiters, tell the dashboard, settle
   * requests, wake tick waiters. `sinkRan`: the log sink ran since the report was made, and may
   * have queued events (a kill from the sink) that the report's eventsEnd does not count.
   */
  #afterTicks(n, report, started, sinkRan) {
    if (this.#rings) {
      // Rust cannot wake JS waiters (V8 keeps its own waiter list): wake them from here,
      // at the tick boundary, where the inbound ring was drained and the outbound one filled.
      Atomics.notify(this.#rings.inI32, 32);
      Atomics.notify(this.#rings.outI32, 16);
    }
    if (this.#observer && started) this.#observer.ticked(n, report, performance.now() - started, !sinkRan);
    if (this.#pending.size > 0 || this.#unsent.length > 0) {
      try {
        this.#settleRequests(n > 1 || report.deadLetters > 0);
      } catch (e) {
        this.#failRequests(() => e);
      }
    }
    this.#wake();
  }

  #wake() {
    const waiters = this.#tickWaiters;
    this.#tickWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves after the next tick (or when a run() ends, or the runtime closes). */
  #nextTick() {
    return new Promise((resolve) => this.#tickWaiters.push(resolve));
  }

  /**
   * Ticks at a steady rate until `until` or `stop()`: `hz` ticks per second (omitted: as fast
   * as the ticks run), each with tickAsync(1). `until`: a tick count (stops once currentTick
   * reaches it) or a predicate on each tick's report. `onTick(report)` runs after each tick,
   * when the runtime is free (send, drain... there; while a tick runs, calls throw E_BUSY).
   * Returns { stop(), done, ticks }: `done` resolves with { ticks, report, reason } ('until'
   * or 'stopped') and rejects with the first error (a tick's, or one thrown by `until` or
   * `onTick`). The rate never changes results: the same ticks run, with the same inputs.
   */
  run(options) {
    const o = v.options('options', options, ['hz', 'until', 'onTick']);
    if (o.hz !== undefined && (typeof o.hz !== 'number' || !Number.isFinite(o.hz) || o.hz <= 0 || o.hz > 1e6)) {
      throw v.fail('options.hz', 'a number of ticks per second, > 0 and at most 1,000,000 (omit it to run as fast as possible)', o.hz);
    }
    const until = o.until;
    if (until !== undefined && typeof until !== 'function') v.int('options.until', until, 0, MAX_SAFE);
    if (o.onTick !== undefined) v.fn('options.onTick', o.onTick);
    if (this.#closing) this.#throwClosed();
    if (this.#driver) throw new LockstepError('E_BUSY', 'a run() is already driving this runtime; stop it first (await handle.stop())');
    const interval = o.hz === undefined ? 0 : 1000 / o.hz;
    const onTick = o.onTick;
    let stopped = false;
    let ticks = 0;
    let timer = null;
    let wakeSleep = null;
    const sleep = (ms) => new Promise((resolve) => {
      wakeSleep = resolve;
      timer = setTimeout(resolve, ms);
    });
    const loop = async () => {
      let report = null;
      let due = performance.now();
      try {
        for (;;) {
          if (stopped || this.#closing) return { ticks, report, reason: 'stopped' };
          if (this.#inflight) {
            // Someone's tickAsync: wait for it, then look again (a stop() or close() may have
            // come meanwhile; going straight on ticked once after a stop()).
            await this.#nextTick();
            continue;
          }
          if (typeof until === 'number' && this.currentTick >= until) return { ticks, report, reason: 'until' };
          if (interval > 0) {
            const wait = due - performance.now();
            if (wait > 0) await sleep(wait);
            if (stopped || this.#closing) return { ticks, report, reason: 'stopped' };
            // The next tick is due one interval later; after a stall longer than one interval the
            // schedule restarts from now (no burst of catch-up ticks).
            due = Math.max(due + interval, performance.now() - interval);
            if (this.#inflight) continue;
          }
          report = await this.tickAsync(1);
          ticks++;
          // A close() during the tick ends the run here: onTick and until would find the
          // runtime closed (E_CLOSED), and close() promises done resolves 'stopped'.
          if (this.#closing) return { ticks, report, reason: 'stopped' };
          if (onTick) onTick(report);
          if (typeof until === 'function' && until(report)) return { ticks, report, reason: 'until' };
        }
      } finally {
        if (this.#driver === handle) this.#driver = null;
        this.#wake(); // a request() waiting for ticks takes over
      }
    };
    const handle = {
      /** Stops after the tick running now (if any); returns `done`. */
      stop() {
        stopped = true;
        if (timer) clearTimeout(timer);
        if (wakeSleep) wakeSleep();
        return handle.done;
      },
      done: null,
      /** Ticks this run() has run so far. */
      get ticks() {
        return ticks;
      },
    };
    this.#driver = handle;
    handle.done = loop();
    return handle;
  }

  /**
   * Sends `payload` to `agent` as a request and resolves with the agent's reply (an
   * AgentMessage whose payload is the reply's body): the SDK's `reply(&msg, body)`, docs/ABI.md
   * "Requests". Ticks (tickAsync) until the reply arrives, unless a run() or another
   * tickAsync is ticking already. Rejects with E_AGENT_FAULTED (the agent faulted before it
   * replied), E_DEAD_LETTER (the request was dead-lettered), E_AGENT_NOT_RUNNING (it stopped
   * without replying), E_REQUEST_TIMEOUT (no reply after `timeoutTicks` ticks, default 100),
   * E_QUEUE_FULL (4,096 requests already wait), and send's errors. It is a send and ticks: it
   * is recorded and replays exactly. Other messages to the host stay for drainMessages().
   */
  async request(agent, payload, options) {
    agentArg('agent', agent);
    const o = v.options('options', options, ['kind', 'priority', 'timeoutTicks']);
    const kind = v.optInt('options.kind', o.kind, 0, MAX_U32, 0);
    const priority = v.optInt('options.priority', o.priority, ...INT32, 0);
    const timeoutTicks = v.optInt('options.timeoutTicks', o.timeoutTicks, 1, MAX_U32, DEFAULT_TIMEOUT_TICKS);
    let body = toBytes(payload, 'payload');
    const maxBody = MAX_PAYLOAD_BYTES - REQUEST_HEADER_BYTES;
    if (body.length > maxBody) {
      throw new LockstepError('E_MESSAGE_TOO_LARGE', `the request body is ${body.length} bytes; a request carries at most ${maxBody} (the message limit less the ${REQUEST_HEADER_BYTES}-byte request envelope)`);
    }
    if (this.#closing) this.#throwClosed();
    if (this.#rings) {
      throw new LockstepError('E_RING', 'request() reads replies from the host messages, which go to the outbound ring once rings are attached: with rings, send and read replies yourself');
    }
    if (this.#pending.size + this.#unsent.length >= MAX_PENDING_REQUESTS) {
      throw new LockstepError('E_QUEUE_FULL', `${MAX_PENDING_REQUESTS} requests already wait for their replies (the limit per runtime); await some first`);
    }
    const reply = new Promise((resolve, reject) => {
      const r = { agent, body, kind, priority, timeoutTicks, resolve, reject };
      if (this.#inflight) {
        // A tick runs: send right after it (a copy: the caller may reuse its buffer).
        r.body = body = Uint8Array.prototype.slice.call(body);
        this.#unsent.push(r);
      } else {
        this.#sendRequest(r);
      }
    });
    this.#pump();
    return reply;
  }

  #sendRequest(r) {
    try {
      const id = call(() => this.#native.sendRequest(r.agent, r.kind, r.priority, r.body));
      // Sent before tick `currentTick`, delivered in it: `timeoutTicks` ticks to answer.
      const deadline = call(() => this.#native.currentTick) + r.timeoutTicks;
      this.#pending.set(id, { agent: r.agent, deadline, timeoutTicks: r.timeoutTicks, resolve: r.resolve, reject: r.reject });
    } catch (e) {
      r.reject(e);
    }
  }

  /** Ticks while requests wait, unless someone else (a run(), a tickAsync) is ticking. */
  async #pump() {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      // Not in the caller's turn: code right after request() still finds the runtime free,
      // and requests made together (Promise.all) go out before the same tick.
      await null;
      while ((this.#pending.size > 0 || this.#unsent.length > 0) && !this.#closing) {
        if (this.#inflight || this.#driver) {
          await this.#nextTick();
          // A turn of the event loop before ticking: a program that awaits its own
          // tickAsync in a loop starts its next one in the microtasks after this tick, and
          // ticking first made that call throw E_BUSY at it.
          await new Promise((resolve) => setImmediate(resolve));
          continue;
        }
        try {
          await this.tickAsync(1);
        } catch (e) {
          this.#failRequests(() => e);
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  #failRequests(error) {
    const all = [...this.#pending.values(), ...this.#unsent];
    this.#pending.clear();
    this.#unsent = [];
    for (const r of all) r.reject(error(r));
  }

  /**
   * Resolves the requests whose replies came, rejects those that cannot get one, sends the
   * requests made during the tick. `deadLetters`: dead letters may have been made.
   */
  #settleRequests(deadLetters) {
    if (this.#pending.size > 0) {
      const agents = [];
      const ids = [];
      for (const [id, p] of this.#pending) {
        agents.push(p.agent);
        ids.push(id);
      }
      for (const { requestId, message } of call(() => this.#native.takeReplies(agents, ids))) {
        const p = this.#pending.get(requestId);
        this.#pending.delete(requestId);
        p.resolve(message);
      }
    }
    if (this.#pending.size > 0) {
      const states = new Map();
      for (const p of this.#pending.values()) {
        if (!states.has(p.agent)) states.set(p.agent, call(() => this.#native.inspect(p.agent)));
      }
      let dead = new Map();
      if (deadLetters || [...states.values()].some((s) => s.state !== 'running')) {
        const agents = [];
        const ids = [];
        for (const [id, p] of this.#pending) {
          agents.push(p.agent);
          ids.push(id);
        }
        dead = new Map(call(() => this.#native.requestDeadLetters(agents, ids)).map((d) => [d.requestId, d.reason]));
      }
      const now = call(() => this.#native.currentTick);
      for (const [id, p] of this.#pending) {
        const info = states.get(p.agent);
        let error = null;
        if (info.fault) {
          const f = info.fault;
          error = new LockstepError('E_AGENT_FAULTED', `agent ${p.agent} faulted (${f.kind} in ${f.call} at tick ${f.tick}: ${f.detail}) before it replied to request ${id}`);
          error.fault = f;
        } else if (dead.has(id)) {
          error = new LockstepError('E_DEAD_LETTER', `request ${id} to agent ${p.agent} was dead-lettered (${dead.get(id)}); it is in drainDeadLetters()`);
          error.reason = dead.get(id);
        } else if (info.state !== 'running') {
          error = new LockstepError('E_AGENT_NOT_RUNNING', `agent ${p.agent} is ${info.state}: it stopped without replying to request ${id}`);
        } else if (now >= p.deadline) {
          error = new LockstepError('E_REQUEST_TIMEOUT', `agent ${p.agent} did not reply to request ${id} within ${p.timeoutTicks} ticks (timeoutTicks); a late reply stays in drainMessages(). Does it answer requests (the SDK's reply(&msg, body))?`);
        }
        if (error) {
          error.requestId = id;
          this.#pending.delete(id);
          p.reject(error);
        }
      }
    }
    if (this.#unsent.length > 0) {
      const unsent = this.#unsent;
      this.#unsent = [];
      for (const r of unsent) this.#sendRequest(r);
    }
  }

  /**
   * Starts the live dashboard (dashboard/server.js, docs/DASHBOARD.md): a WebSocket snapshot
   * server and its page, on loopback unless told otherwise (then a token is required).
   * Resolves with the server once it listens. One per runtime at a time (E_BUSY).
   */
  async serve(options) {
    if (this.#closing) this.#throwClosed();
    if (this.#observer) throw new LockstepError('E_BUSY', 'a dashboard server is already attached to this runtime; close it first (await server.close())');
    const port = {
      attach: (observer) => {
        if (this.#observer) throw new LockstepError('E_BUSY', 'a dashboard server is already attached to this runtime; close it first (await server.close())');
        if (this.#closing) this.#throwClosed();
        this.#observer = observer;
      },
      detach: (observer) => {
        if (this.#observer !== observer) return;
        this.#observer = null;
        // The message tap of the agents it watched goes too; while a tick runs, right after
        // it (left on, it copied their messages every tick after the server was gone).
        const untap = () => {
          if (!this.#closing && !this.#observer && !call(() => this.#native.closed)) call(() => this.#native.watchAgents([]));
        };
        if (!this.#inflight) untap();
        else this.#tickWaiters.push(untap);
      },
      busy: () => this.#inflight !== null || this.#closing,
      agentTable: () => call(() => this.#native.agentTable()),
      counts: () => call(() => this.#native.observeCounts()),
      eventsSince: (cursor, max) => {
        const text = call(() => this.#native.eventsSince(cursor, max));
        return text === '' ? { first: cursor, events: [] } : JSON.parse(text);
      },
      watch: (ids) => call(() => this.#native.watchAgents(ids)),
      watched: (id) => call(() => this.#native.watchedMessages(id)),
    };
    const server = await require('./dashboard/server.js').serve(this, port, options);
    if (this.#observer) this.#observer.server = server;
    return server;
  }

  /**
   * Creates the two SharedArrayBuffer rings and attaches them. Returns { inbound, outbound,
   * inboundBuffer, outboundBuffer }: a RingProducer for JS → agents, a RingConsumer for
   * agents → JS, and the buffers to hand to a worker_thread (new RingProducer(inboundBuffer)).
   */
  attachRings(options) {
    const o = v.options('options', options, ['inboundBytes', 'outboundBytes']);
    if (call(() => this.#native.closed)) throw new LockstepError('E_CLOSED', 'this runtime is closed; create a new Runtime');
    if (call(() => this.#native.busy)) throw new LockstepError('E_BUSY', 'a tickAsync is running on this runtime; await it first');
    if (this.#rings) throw new LockstepError('E_RING', 'rings are already attached to this runtime');
    if (this.#pending.size > 0 || this.#unsent.length > 0) {
      throw new LockstepError('E_RING', 'requests wait for their replies, which would go to the outbound ring: await them before attaching rings');
    }
    const inboundBuffer = ring.createRingBuffer(o.inboundBytes ?? 1 << 22, 'options.inboundBytes');
    const outboundBuffer = ring.createRingBuffer(o.outboundBytes ?? 1 << 22, 'options.outboundBytes');
    call(() => this.#native.attachInboundRing(new Uint8Array(inboundBuffer)));
    call(() => this.#native.attachOutboundRing(new Uint8Array(outboundBuffer)));
    // The main thread's runtime holds both buffers for its whole life, so a worker that
    // shares them may exit without freeing memory the core still writes.
    this.#rings = { inboundBuffer, outboundBuffer, inI32: new Int32Array(inboundBuffer), outI32: new Int32Array(outboundBuffer) };
    return {
      inbound: new ring.RingProducer(inboundBuffer),
      outbound: new ring.RingConsumer(outboundBuffer),
      inboundBuffer,
      outboundBuffer,
    };
  }

  // ----- inference -----------------------------------------------------------------------------

  /** Loads an ONNX model from a path or bytes; returns its info (id = SHA-256 of the bytes). */
  loadModel(source) {
    const bytes = moduleBytes(source, 'source', 'model');
    try {
      return call(() => this.#native.loadModel(bytes));
    } catch (e) {
      throw naming(e, source);
    }
  }

  /**
   * loadModel() off the event loop: the file is read asynchronously, and the model is
   * validated (and ONNX Runtime loaded, the first time) on libuv's thread pool.
   */
  async loadModelAsync(source) {
    const bytes = await moduleBytesAsync(source, 'source', 'model');
    try {
      return await call(() => this.#native.loadModelAsync(bytes));
    } catch (e) {
      throw naming(convert(e), source);
    } finally {
      if (logSink) deliverLogs();
    }
  }

  modelInfo(id) {
    modelId('id', id);
    return call(() => this.#native.modelInfo(id));
  }

  listModels() {
    return call(() => this.#native.listModels());
  }

  unloadModel(id) {
    modelId('id', id);
    return call(() => this.#native.unloadModel(id));
  }

  /** Makes a loaded model available to agents; returns the slot they pass to `infer`. */
  registerAgentModel(id) {
    modelId('id', id);
    return call(() => this.#native.registerAgentModel(id));
  }

  // ----- language models (docs/INFERENCE.md, "Language models") -------------------------------

  /**
   * Loads a decoder-only ONNX language model (the Optimum / onnxruntime-genai layout) and
   * describes it. `tokenizer`: 'bytes' (ids 0..255 are bytes; the default), 'none' (prompts as
   * token ids), or your own `{ encode(text): number[], decode(ids): string }` for `generate()`.
   */
  loadLanguageModel(options) {
    const o = v.options('options', options, ['model', 'tokenizer', 'bos', 'eos', 'pad', 'maxContext', 'maxBatch']);
    if (o.model === undefined) throw v.fail('options.model', 'a path or the bytes of an ONNX model', o.model);
    const bytes = moduleBytes(o.model, 'options.model', 'model');
    let own = null;
    let tokenizer = 'bytes';
    if (o.tokenizer !== undefined && typeof o.tokenizer === 'object' && o.tokenizer !== null) {
      // Its methods read once, here, and called on it: a getter's later answer (not a
      // function) made generate() throw a TypeError.
      const tok = o.tokenizer;
      const encode = v.fn('options.tokenizer.encode', tok.encode);
      const decode = v.fn('options.tokenizer.decode', tok.decode);
      own = { encode: (text) => encode.call(tok, text), decode: (ids) => decode.call(tok, ids) };
      tokenizer = 'none';
    } else {
      tokenizer = v.oneOf('options.tokenizer', o.tokenizer, ['bytes', 'none'], 'bytes');
    }
    const token = (name, x) => v.int(name, x, 0, v.MAX_U32);
    const native = {
      tokenizer,
      bos: o.bos === undefined ? undefined : o.bos === null ? -1 : token('options.bos', o.bos),
      eos: o.eos === undefined ? undefined : (Array.isArray(o.eos) ? o.eos : [o.eos]).map((t, i) => token(`options.eos[${i}]`, t)),
      pad: o.pad === undefined ? undefined : token('options.pad', o.pad),
      maxContext: v.optInt('options.maxContext', o.maxContext, 1, 32768, undefined),
      maxBatch: v.optInt('options.maxBatch', o.maxBatch, 1, 256, undefined),
    };
    let model;
    try {
      model = call(() => this.#native.loadLanguageModel(bytes, native));
    } catch (e) {
      throw naming(e, o.model);
    }
    const info = model.info();
    this.#languageModels.set(info.id, { handle: model, tokenizer: own });
    return info;
  }

  #languageModel(id, name) {
    if (id === undefined) {
      if (this.#languageModels.size === 1) return this.#languageModels.values().next().value;
      throw v.fail(name, `the id of a language model (${this.#languageModels.size} are loaded: loadLanguageModel() returns their ids)`, id);
    }
    modelId(name, id);
    const lm = this.#languageModels.get(id);
    if (!lm) throw new LockstepError('E_UNKNOWN_MODEL', `no language model ${id} is loaded; load it with loadLanguageModel() first`);
    return lm;
  }

  /**
   * Makes a language model available to agents' `generate` import; returns its slot.
   * `tokensPerTick` (1..1024, default 8): decode steps at the end of each tick; `maxBatch`
   * (1..256, default 64): most sequences decoding together.
   */
  registerAgentLanguageModel(id, options) {
    const o = v.options('options', options, ['tokensPerTick', 'maxBatch']);
    const lm = this.#languageModel(id, 'id');
    const perTick = v.optInt('options.tokensPerTick', o.tokensPerTick, 1, 1024, 8);
    const maxBatch = v.optInt('options.maxBatch', o.maxBatch, 1, 256, 64);
    return call(() => this.#native.registerAgentLanguageModel(lm.handle, perTick, maxBatch));
  }

  /**
   * Generates from `prompt` (text, or an array of token ids): an async iterator of
   * `{ token, text }`, outside the tick clock. Every generate() running at once on a model
   * decodes in one batch. Same prompt, options and seed: same tokens. Breaking out of the loop
   * cancels the generation. After the loop, `finish` on the iterator says why it ended.
   */
  generate(prompt, options) {
    const o = v.options('options', options, ['model', 'maxTokens', 'temperature', 'topK', 'topP', 'stop', 'seed', 'stepsPerCall']);
    const lm = this.#languageModel(o.model, 'options.model');
    let ids = null;
    let text = null;
    if (Array.isArray(prompt) || prompt instanceof Uint32Array) {
      ids = Array.from(prompt, (t, i) => v.int(`prompt[${i}]`, t, 0, v.MAX_U32));
    } else if (typeof prompt === 'string') {
      if (lm.tokenizer) ids = Array.from(lm.tokenizer.encode(prompt), (t, i) => v.int(`tokenizer.encode(prompt)[${i}]`, t, 0, v.MAX_U32));
      else text = Buffer.from(prompt, 'utf8');
    } else {
      throw v.fail('prompt', 'a string or an array of token ids', prompt);
    }
    const num = (name, x, min, max, dflt) => {
      if (x === undefined) return dflt;
      if (typeof x !== 'number' || !(x >= min && x <= max)) throw v.fail(name, `a number in ${min}..${max}`, x);
      return x;
    };
    const stop = o.stop === undefined ? [] : v.stringArray('options.stop', typeof o.stop === 'string' ? [o.stop] : o.stop);
    const args = [
      v.optInt('options.maxTokens', o.maxTokens, 1, 4096, 64),
      num('options.temperature', o.temperature, 0, 100, 0),
      v.optInt('options.topK', o.topK, 0, v.MAX_U32, 0),
      num('options.topP', o.topP, Number.MIN_VALUE, 1, 1),
      stop.map((s) => Buffer.from(s, 'utf8')),
      v.optInt('options.seed', o.seed, 0, v.MAX_SAFE, 0),
    ];
    const steps = v.optInt('options.stepsPerCall', o.stepsPerCall, 1, 4096, 16);
    const key = call(() => lm.handle.submit(ids, text, ...args));
    const own = lm.tokenizer;
    const decoder = new TextDecoder('utf-8');
    const state = { finish: null, error: null };
    const iterate = async function* () {
      let done = false;
      try {
        while (!done) {
          let chunk;
          try {
            chunk = await lm.handle.advance(key, steps);
          } catch (e) {
            throw convert(e);
          }
          for (let i = 0; i < chunk.tokens.length; i++) {
            const token = chunk.tokens[i];
            const text = own ? own.decode([token]) : decoder.decode(chunk.text.subarray(chunk.offsets[i], chunk.offsets[i + 1]), { stream: true });
            yield { token, text };
          }
          if (chunk.finish) {
            state.finish = chunk.finish;
            state.error = chunk.error ?? null;
            done = true;
          } else if (chunk.tokens.length === 0) {
            state.finish = 'failed';
            done = true;
          }
        }
        if (state.finish === 'failed') {
          throw new LockstepError('E_INFERENCE', `generation failed: ${state.error ?? 'the generation was dropped'}`);
        }
      } finally {
        if (!done) lm.handle.cancel(key);
      }
    };
    const it = iterate();
    Object.defineProperty(it, 'finish', { get: () => state.finish, enumerable: true });
    return it;
  }

  /** Counts of JS's generate() calls on a language model: decode and prefill calls, tokens. */
  languageModelStats(id) {
    const [decodeCalls, prefillCalls, tokens, rebuilds, kvTransfers] = this.#languageModel(id, 'id').handle.stats();
    return { decodeCalls, prefillCalls, tokens, rebuilds, kvTransfers };
  }

  /** The libonnxruntime in use (loads it if needed). */
  inferenceLibrary() {
    return call(() => this.#native.inferenceLibrary());
  }

  /**
   * Runs a model: inputs { name: { type, data, dims } } → outputs alike. A model whose calls
   * take under 100 µs runs inline (a thread-pool hop would cost more than the work); larger
   * ones run on libuv's thread pool, off the event loop. The first call of each model, and
   * every 256th after, is timed inline to decide.
   */
  async infer(model, inputs) {
    modelId('model', model);
    const cost = this.#inferCost.get(model) ?? { best: Infinity, calls: 0 };
    // The first calls are cold (caches, allocator): judge by the fastest of a few.
    if (cost.calls < 4 || cost.best < INLINE_INFER_US || cost.calls % INLINE_RETIME_CALLS === 0) {
      const t0 = performance.now();
      const out = this.inferSync(model, inputs);
      const us = (performance.now() - t0) * 1000;
      // Only calls that succeeded are timed (and only their models remembered).
      this.#inferCost.set(model, cost);
      cost.calls++;
      cost.best = cost.calls % INLINE_RETIME_CALLS === 1 ? us : Math.min(cost.best, us);
      return out;
    }
    cost.calls++;
    // The native call copies the inputs before it returns: the scratch buffer may be reused.
    const [spec, data] = packInputs(inputs, this.#packScratch);
    try {
      return unpackOutputs(await call(() => this.#native.inferAsync(model, spec, data)));
    } catch (e) {
      throw convert(e);
    }
  }

  /** Runs a model on the calling thread (lowest overhead for small models). */
  inferSync(model, inputs) {
    modelId('model', model);
    const [spec, data] = packInputs(inputs, this.#packScratch, true);
    // One call(): the log sink, which call() runs when it returns and which may call into this
    // runtime, runs only once the outputs are copied out of the reused buffers and what the
    // native side holds is recorded (red team: a sink calling inferSync in between made this
    // call return the sink's outputs, and later calls run the sink's model).
    return call(() => this.#inferInto(model, spec, data));
  }

  /** inferSync's native calls (inside its call()). */
  #inferInto(model, spec, data) {
    const sent = this.#inferSent;
    const modelArg = model === sent.model ? undefined : model;
    const specArg = spec === sent.spec ? undefined : spec;
    // Forgotten until the call succeeds: after a failure both are sent again.
    sent.model = sent.spec = null;
    const result = Array.isArray(data)
      ? this.#native.inferIntoParts(modelArg, specArg, data, this.#outBuffer)
      : this.#native.inferInto(modelArg, specArg, data, this.#outBuffer);
    sent.model = model;
    sent.spec = spec;
    const bytes = Math.floor(result / 2);
    if (result % 2 === 1) this.#outLayout = outputLayout(this.#native.inferOutputSpec());
    if (bytes > this.#outBuffer.length) {
      if (bytes > SCRATCH_MAX_BYTES) {
        // Too large to keep for the next call: a buffer of their own, which the outputs view.
        const own = new Uint8Array(bytes);
        this.#native.inferTakeOutputs(own);
        return readOutputs(this.#outLayout, own, true);
      }
      this.#outBuffer = new Uint8Array(Math.min(SCRATCH_MAX_BYTES, Math.max(bytes, this.#outBuffer.length * 2)));
      this.#native.inferTakeOutputs(this.#outBuffer);
    }
    return readOutputs(this.#outLayout, this.#outBuffer);
  }

  /** A reused buffer of at least `size` bytes to pack several inputs into (a new one above SCRATCH_MAX_BYTES). */
  #packScratch = (size) => {
    if (size > SCRATCH_MAX_BYTES) return new Uint8Array(size);
    if (this.#inBuffer.length < size) this.#inBuffer = new Uint8Array(Math.min(SCRATCH_MAX_BYTES, Math.max(size, this.#inBuffer.length * 2)));
    return this.#inBuffer;
  };

  /** Writes records waiting for room into the outbound ring; returns how many still wait. */
  flushOutbound() {
    const left = call(() => this.#native.flushOutbound());
    if (this.#rings) Atomics.notify(this.#rings.outI32, 16);
    return left;
  }

  /** Why the inbound ring stopped being read, or null. */
  inboundRingError() {
    return call(() => this.#native.inboundRingError()) ?? null;
  }

  shutdown(id) {
    v.id('id', id);
    return call(() => this.#native.shutdown(id));
  }

  kill(id) {
    v.id('id', id);
    return call(() => this.#native.kill(id));
  }

  inspect(id) {
    v.id('id', id);
    return call(() => this.#native.inspect(id));
  }

  agents() {
    return call(() => this.#native.agents());
  }

  get currentTick() {
    return call(() => this.#native.currentTick);
  }

  /** The id (hex) of the journal this runtime writes, or null without a journal. */
  get journalId() {
    return call(() => this.#native.journalId) ?? null;
  }

  /**
   * Makes later ticks use `workers` threads (1..=the runtime's workers), whatever its scaling
   * says; null returns to it. Results never depend on it (the tick report's `workers` says
   * what a tick used).
   */
  setWorkers(workers) {
    if (workers !== null) v.int('workers', workers, 1, 256);
    return call(() => this.#native.setWorkers(workers));
  }

  /** The last tick whose journal records are known to be on stable storage, without syncing (null without a journal, or while none is). */
  get durableTick() {
    return call(() => this.#native.durableTick) ?? null;
  }

  /** The directory of the journal this runtime writes, or null without a journal. */
  get journalDir() {
    if (this.#journalDir === undefined) this.#journalDir = call(() => this.#native.journalDir) ?? null;
    return this.#journalDir;
  }

  stateHash() {
    return call(() => this.#native.stateHash());
  }

  deepHash() {
    return call(() => this.#native.deepHash());
  }

  drainEvents() {
    // The binding hands the events as the core's JSON (the same objects the outbound ring
    // carries), in chunks: all of them in one text could outgrow a JS string.
    const chunks = call(() => this.#native.drainEvents());
    if (chunks.length === 1) return JSON.parse(chunks[0]);
    const events = [];
    for (const chunk of chunks) for (const e of JSON.parse(chunk)) events.push(e);
    return events;
  }

  eventsDropped() {
    return call(() => this.#native.eventsDropped());
  }

  drainDeadLetters() {
    return call(() => this.#native.drainDeadLetters());
  }

  /**
   * Messages agents sent to the host (id 0), in routing order. Replies to requests still
   * waiting are not among them: those settle their request() first.
   */
  drainMessages() {
    if (this.#pending.size > 0 && !this.#inflight) {
      try {
        this.#settleRequests(false);
      } catch (e) {
        this.#failRequests(() => e);
      }
    }
    return call(() => this.#native.drainMessages());
  }

  startRecording() {
    return call(() => this.#native.startRecording());
  }

  stopRecording() {
    return call(() => this.#native.stopRecording());
  }

  replayLog() {
    return call(() => this.#native.replayLog());
  }

  get recording() {
    return call(() => this.#native.recording);
  }

  /** Test hook (LOCKSTEP_TEST_HOOKS=1 only): a Rust panic inside a native method. */
  [TEST_PANIC](message) {
    return call(() => this.#native.testPanic(message));
  }

  /** Test hook (LOCKSTEP_TEST_HOOKS=1 only): a tickAsync whose task panics on the thread pool. */
  [TEST_PANIC_TICK_ASYNC](message) {
    return this.#tickAsync(1, () => this.#native.testPanicTickAsync(message));
  }
}

/** replay()'s and replayAsync()'s arguments, checked. */
function replayArgs(log, options) {
  if (log == null) throw v.fail('log', 'a replay log (the bytes from stopRecording() or replayLog())', log);
  const o = v.options('options', options, ['workers', 'onProgress', 'trustedKeys', 'devMode', 'snapshot']);
  if (o.workers !== undefined) v.int('options.workers', o.workers, 1, 256);
  if (o.onProgress !== undefined) v.fn('options.onProgress', o.onProgress);
  // A log never grants itself trust: modules run only if signed by a key the caller trusts
  // (or unsigned, with devMode, from a devMode session).
  const trustedKeys = o.trustedKeys === undefined ? [] : v.stringArray('options.trustedKeys', o.trustedKeys);
  const devMode = o.devMode === undefined ? false : v.bool('options.devMode', o.devMode);
  // The bytes after every option (whose getters, and trustedKeys' elements, are caller code that
  // could detach the log's buffer after its check).
  // replay() reads the log in place (CRCs first, then the records): copied if shared.
  const bytes = unshared(toBytes(log, 'log'));
  // A log a restored runtime recorded starts from its snapshot (docs/SNAPSHOT.md).
  const snapshot = o.snapshot === undefined ? undefined : snapshotBytes(o.snapshot, 'options.snapshot');
  return { bytes, workers: o.workers, onProgress: o.onProgress, trustedKeys, devMode, snapshot };
}

/**
 * The progress callback as the binding calls it: it never throws into the binding. The first
 * error the user's callback throws stops further calls and is rethrown by `check()` once the
 * replay has ended without an error of its own. `replayAsync`'s binding calls it with -1
 * (`PROGRESS_DONE`) after every progress call, whatever the outcome: `drained` resolves then.
 */
function progressRelay(onProgress) {
  let failed = false;
  let error;
  let markDrained;
  const drained = new Promise((resolve) => {
    markDrained = resolve;
  });
  const relay = onProgress && ((ticks) => {
    if (ticks < 0) {
      markDrained();
      return;
    }
    if (failed) return;
    try {
      onProgress(ticks);
    } catch (e) {
      failed = true;
      error = e;
    }
  });
  return {
    relay,
    drained,
    check() {
      if (failed) throw error;
    },
  };
}

/**
 * Re-runs a recorded session and verifies it, on the calling thread. `options.onProgress(ticksVerified)`
 * is called every 100 ticks, for long logs.
 */
function replay(log, options) {
  const a = replayArgs(log, options);
  const progress = progressRelay(a.onProgress);
  // With onProgress the addon replays copies of the log and snapshot (the callback is caller
  // code, which could shrink or detach their buffers under an in-place read: a SIGSEGV).
  const report = call(() => native.replay(a.bytes, a.workers, progress.relay, a.trustedKeys, a.devMode, a.snapshot));
  progress.check();
  return report;
}

/**
 * replay() off the event loop: the same report and errors, as a promise; the replay runs on
 * libuv's thread pool (the log is copied first). `options.onProgress(ticksVerified)` is called
 * on this thread every 100 ticks while it runs, each call before the promise settles.
 */
async function replayAsync(log, options) {
  const a = replayArgs(log, options);
  const progress = progressRelay(a.onProgress);
  const pending = call(() => native.replayAsync(a.bytes, a.workers, progress.relay, a.trustedKeys, a.devMode, a.snapshot));
  let report;
  try {
    report = await pending;
  } catch (e) {
    throw convert(e);
  } finally {
    // Every progress call before the promise settles: the last one queued says so (the native
    // task does not wait for them: process.exit() would then wait for it forever).
    if (progress.relay) await progress.drained;
    if (logSink) deliverLogs();
  }
  progress.check();
  return report;
}

/**
 * What a replay log file or a journal directory holds, read without replaying it: records by
 * kind, ticks, agents, modules, bytes, each file, a journal's torn tail.
 */
function inspectLog(path) {
  if (typeof path !== 'string' || path === '') throw v.fail('path', 'a replay log file or a journal directory', path);
  return call(() => native.inspectLog(path));
}

/**
 * Verifies a replay log file (as replay()) or a journal directory (every segment replayed, every
 * hash compared, nothing changed: a journal being written is read as far as it is complete).
 * Options as replay()'s; `onProgress(ticksVerified)` every 100 ticks.
 */
function verifyLog(path, options) {
  if (typeof path !== 'string' || path === '') throw v.fail('path', 'a replay log file or a journal directory', path);
  let isDir;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw new LockstepError('E_IO', `${path}: cannot read it (${e.code || e.message})`);
  }
  if (!isDir) return replay(readFileSync(path), options);
  const a = replayArgs(new Uint8Array(0), options);
  const progress = progressRelay(a.onProgress);
  const report = call(() => native.verifyJournal(path, a.workers, progress.relay, a.trustedKeys, a.devMode));
  progress.check();
  return report;
}

/**
 * A read-only cursor over a recorded session (docs/JOURNAL.md, "Time travel"): move it with
 * seek/next/prev, read the state at its tick (inspect, readMemory, stateHash, deepHash), see
 * what a tick delivered and sent (messagesAt), or continue from it as a live runtime (fork).
 * Every tick it passes is replayed and verified against the recorded hash.
 */
class JournalCursor {
  #native;

  constructor(nativeCursor) {
    this.#native = nativeCursor;
  }

  /**
   * Frees the cursor's session state and snapshot cache now, instead of at garbage collection
   * (a large session's state and cache are hundreds of MB). Idempotent; every other method
   * then throws E_CLOSED.
   */
  close() {
    call(() => this.#native.close());
  }

  get closed() {
    return call(() => this.#native.closed);
  }

  /** The cursor's tick: ticks run (the state before tick `tick` runs). */
  get tick() {
    return call(() => this.#native.tick);
  }

  /** The first tick (0, or the tick the session's first snapshot was taken at, for a fork). */
  get firstTick() {
    return call(() => this.#native.firstTick);
  }

  /** Ticks the session holds whole: the cursor can visit firstTick..=endTick. */
  get endTick() {
    return call(() => this.#native.endTick);
  }

  /** The journal's id (hex), null for a log without one. */
  get id() {
    return call(() => this.#native.id) ?? null;
  }

  /** Where a forked session comes from: `{ journal, tick, hash }`, or null. */
  get lineage() {
    const l = call(() => this.#native.lineage);
    return l ? { journal: l.journal ?? null, tick: l.tick, hash: l.hash } : null;
  }

  /** The ticks of the snapshots a seek can start from (the journal's and the cursor's own). */
  snapshotTicks() {
    return call(() => this.#native.snapshotTicks());
  }

  /** Snapshot files found damaged (or not the session's state) and not used. */
  skippedSnapshots() {
    return call(() => this.#native.skippedSnapshots()).map((s) => ({ ...s, problem: s.problem ?? null }));
  }

  /** Moves to `tick`; returns `{ tick, ticksReplayed, fromSnapshot }`. At most one snapshot interval of replay. */
  seek(tick) {
    v.int('tick', tick, 0, MAX_SAFE);
    const r = call(() => this.#native.seek(tick));
    return { ...r, fromSnapshot: r.fromSnapshot ?? null };
  }

  /** One tick forward; false at the end. */
  next() {
    return call(() => this.#native.next());
  }

  /** One tick back; false at the first tick. */
  prev() {
    return call(() => this.#native.prev());
  }

  inspect(id) {
    v.id('id', id);
    return call(() => this.#native.inspect(id));
  }

  agents() {
    return call(() => this.#native.agents());
  }

  stateHash() {
    return call(() => this.#native.stateHash());
  }

  deepHash() {
    return call(() => this.#native.deepHash());
  }

  /** `length` bytes of agent `id`'s memory from `offset`, at the cursor's tick (at most 16 MiB). */
  readMemory(id, offset, length) {
    v.id('id', id);
    v.int('offset', offset, 0, MAX_SAFE);
    v.int('length', length, 0, MAX_SAFE);
    return call(() => this.#native.readMemory(id, offset, length));
  }

  /** What each agent received and sent in tick `tick`: `[{ agent, received, sent }]`; the cursor ends at tick + 1. */
  messagesAt(tick) {
    v.int('tick', tick, 0, MAX_SAFE);
    return call(() => this.#native.messagesAt(tick));
  }

  /**
   * Continues from the cursor's tick as a live Runtime (options as Runtime.restore's; with
   * `journal`, a new journal whose lineage names this session, tick and hash).
   */
  fork(options) {
    const { o } = restoreOptions(options);
    const forked = call(() => this.#native.fork(o));
    adopting = forked;
    return new Runtime();
  }
}

/**
 * Opens a recorded session for time travel: a journal directory (a path), a replay log file
 * (a path) or a replay log's bytes (`options.snapshot` for a log that starts from one). Trust as in replay(): pass
 * `trustedKeys` (and `devMode` for a devMode session's unsigned modules).
 */
/**
 * `openJournal`'s `interrupt`: an Int32Array of at least one element over a SharedArrayBuffer
 * (the native side reads its first element while a seek runs, and checks the same itself as
 * the array crosses: a buffer that could be transferred away is refused).
 */
function interruptWord(word) {
  if (!(types.isInt32Array(word) && word.length >= 1 && types.isSharedArrayBuffer(word.buffer))) {
    throw v.fail('option interrupt', 'an Int32Array of at least one element over a SharedArrayBuffer (new Int32Array(new SharedArrayBuffer(4)))', word, CFG);
  }
  return word;
}

function openJournal(source, options) {
  const o = v.options('options', options, ['workers', 'trustedKeys', 'devMode', 'trustJournal', 'snapshot', 'snapshotIntervalTicks', 'interrupt'], CFG);
  if (o.workers !== undefined) v.int('option workers', o.workers, 1, 256, CFG);
  v.optInt('option snapshotIntervalTicks', o.snapshotIntervalTicks, 0, MAX_SAFE, undefined, CFG);
  if (o.devMode !== undefined) v.bool('option devMode', o.devMode, CFG);
  if (o.trustJournal !== undefined) v.bool('option trustJournal', o.trustJournal, CFG);
  const native_ = {
    trustJournal: o.trustJournal,
    workers: o.workers,
    trustedKeys: o.trustedKeys === undefined ? [] : v.stringArray('option trustedKeys', o.trustedKeys, CFG),
    devMode: o.devMode ?? false,
    snapshot: o.snapshot === undefined ? undefined : snapshotBytes(o.snapshot, 'options.snapshot'),
    snapshotIntervalTicks: o.snapshotIntervalTicks,
  };
  const interrupt = o.interrupt === undefined ? undefined : interruptWord(o.interrupt);
  if (isPath(source)) {
    const dir = pathText(source);
    if (dir === '') throw v.fail('source', 'a journal directory or a replay log\'s bytes', source);
    // A replay log file (what `npx lockstep seek <file>` is given): its bytes. Anything else,
    // a missing path included, is the native side's to open as a directory and report.
    let isFile = false;
    try {
      isFile = statSync(dir).isFile();
    } catch {
      // Missing or unreadable: openDir says so (E_JOURNAL_IO naming it).
    }
    if (isFile) return new JournalCursor(call(() => native.NativeJournalCursor.openLog(readFileSync(dir), native_, interrupt)));
    return new JournalCursor(call(() => native.NativeJournalCursor.openDir(dir, native_, interrupt)));
  }
  if (source == null) throw v.fail('source', 'a journal directory (a path) or a replay log (its bytes)', source);
  const bytes = toBytes(source, 'source');
  return new JournalCursor(call(() => native.NativeJournalCursor.openLog(bytes, native_, interrupt)));
}

/** The example agents shipped with the package (dist/agents/*.wasm), by name. */
function exampleNames() {
  try {
    return readdirSync(join(__dirname, 'dist', 'agents')).filter((f) => f.endsWith('.wasm')).map((f) => f.slice(0, -5).replace(/_/g, '-')).sort();
  } catch {
    return [];
  }
}

/** Levenshtein distance, for "did you mean". */
function distance(a, b) {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}

/** Path of an example agent shipped with the package. */
function exampleAgent(name) {
  v.str('name', name);
  const names = exampleNames();
  const wanted = name.replace(/_/g, '-');
  if (names.includes(wanted)) return join(__dirname, 'dist', 'agents', `${wanted.replace(/-/g, '_')}.wasm`);
  if (names.length === 0) {
    // A checkout whose agents were never built (an installed package always has them).
    throw new LockstepError('E_IO', `no example agents in ${join(__dirname, 'dist', 'agents')}: in a lockstep checkout, run \`npm run build\` first`);
  }
  const close = names.filter((n) => distance(n, wanted) <= 2).sort((x, y) => distance(x, wanted) - distance(y, wanted));
  throw new LockstepError('E_INVALID_ARGUMENT', `no example agent "${name}"${close.length ? `; did you mean "${close[0]}"?` : ''} The example agents are: ${names.join(', ')}`);
}

// ----- signing tools (also `npx lockstep keygen|sign|verify|inspect`) ---------------------------

/** A new publisher key pair: { publicKey, secretKey } (hex). Keep the secret key secret. */
function keygen() {
  return call(() => native.keygen());
}

/** Embeds `manifest` (object or JSON) into the module and signs both. Returns the signed bytes. */
function sign(module, manifest, secretKey) {
  if (manifest === null || (typeof manifest !== 'string' && (typeof manifest !== 'object' || Array.isArray(manifest)))) {
    throw v.fail('manifest', 'a manifest object or its JSON text (docs/SECURITY.md)', manifest);
  }
  const json = typeof manifest === 'string' ? manifest : v.json('manifest', manifest);
  // The module's bytes after the manifest's JSON (its toJSON and getters are caller code, which
  // could detach the module's buffer after its check).
  const bytes = moduleBytes(module, 'module');
  v.str('secretKey', secretKey);
  return call(() => native.signModule(bytes, json, secretKey));
}

/** Would a runtime trusting `trustedKeys` admit this module? { ok, code?, message?, publisher? } */
function verify(module, trustedKeys) {
  if (typeof trustedKeys === 'string') throw v.fail('trustedKeys', 'an array of hex public keys (wrap a single key in [ ])', trustedKeys);
  // The keys copied (each read once) before the module's bytes are taken: an element's getter is
  // caller code, which could detach the module's buffer after its check.
  const keys = v.stringArray('trustedKeys', trustedKeys);
  const bytes = moduleBytes(module, 'module');
  return call(() => native.verifyModule(bytes, keys));
}

/** What a module asks for and who signed it: { manifest, publisher, signatureValid, imports }. */
function inspect(module) {
  const bytes = moduleBytes(module, 'module');
  const r = call(() => native.inspectModule(bytes));
  let manifest = null;
  if (r.manifest != null) {
    try {
      manifest = JSON.parse(r.manifest);
    } catch (e) {
      throw new LockstepError('E_BAD_MANIFEST', `the module's embedded manifest is not valid JSON: ${e.message}`);
    }
  }
  // As index.d.ts says: null, not absent, when unsigned.
  return { ...r, manifest, publisher: r.publisher ?? null };
}

/**
 * The public key that signed the bundled example agents. A TEST key: its secret is in the
 * repository, so trust it only to run the examples.
 */
const EXAMPLES_PUBLIC_KEY = JSON.parse(readFileSync(join(__dirname, 'keys', 'examples-publisher.json'), 'utf8')).publicKey;

const ABI_VERSION = native.abiVersion();
const MAX_PAYLOAD_BYTES = native.maxPayloadBytes();
const HOST_ID = 0;
/** The sender id of the inference service, u64::MAX, as a JS number (2^64: ids above 2^53 are approximate). */
const INFERENCE_ID = native.inferenceId();

// Listed one by one (not spread) so Node's ES-module interop sees every named export.
const { createRingBuffer, RingProducer, RingConsumer, RingError, RING_TYPES, RING_HEADER_BYTES } = ring;

module.exports = {
  setLogger,
  flushLogs,
  logSinkErrors: getLogSinkErrors,
  createRingBuffer,
  RingProducer,
  RingConsumer,
  RingError,
  RING_TYPES,
  RING_HEADER_BYTES,
  keygen,
  sign,
  verify,
  inspect,
  EXAMPLES_PUBLIC_KEY,
  Runtime,
  LockstepError,
  replay,
  replayAsync,
  inspectLog,
  verifyLog,
  openJournal,
  JournalCursor,
  exampleAgent,
  ABI_VERSION,
  MAX_PAYLOAD_BYTES,
  HOST_ID,
  INFERENCE_ID,
  // Test hook (LOCKSTEP_TEST_HOOKS=1 only): a Rust panic inside a native function.
  [TEST_PANIC]: (message) => call(() => native.testPanic(message)),
};
