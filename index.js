'use strict';
// lockstep: loads the native addon for this platform, then wraps it in a small JS API
// (path/bytes handling, option checks, and errors with a `code`).
const { readFileSync, existsSync } = require('node:fs');
const { join } = require('node:path');
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
let logSinkWarned = false;

/** Delivers pending log lines to the sink. A sink that throws does not stop the others. */
function deliverLogs() {
  const sink = logSink;
  if (!sink) return;
  for (const line of native.drainLogs()) {
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
 * log lines...) to `sink({ level, target, message })`, at `level` and above. `setLogger(null)`
 * turns them off. Records are delivered after each call into the runtime, on the calling thread.
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
  'trustedKeys', 'devMode', 'policy', 'resourcePolicy',
];
const INFERENCE_KEYS = ['providers', 'maxModels', 'maxModelBytes', 'ortLibraryPath', 'deterministic', 'searchRoots'];
const PROVIDERS = ['cuda', 'tensorrt', 'directml', 'coreml', 'cpu'];

/** Checks every Runtime option's type and range (E_INVALID_CONFIG naming the option). */
function checkOptions(options) {
  if (options == null) options = {};
  if (typeof options !== 'object' || Array.isArray(options)) throw v.fail('options', 'an object', options, CFG);
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new LockstepError(CFG, `unknown option "${key}"; valid options: ${OPTION_KEYS.join(', ')}`);
    }
  }
  for (const [key, [min, max]] of Object.entries(NUMERIC_OPTIONS)) v.optInt(`option ${key}`, options[key], min, max, undefined, CFG);
  for (const key of BOOLEAN_OPTIONS) if (options[key] !== undefined) v.bool(`option ${key}`, options[key], CFG);
  if (options.trustedKeys !== undefined) {
    if (typeof options.trustedKeys === 'string') {
      throw v.fail('option trustedKeys', 'an array of hex public keys (wrap a single key in [ ])', options.trustedKeys, CFG);
    }
    v.stringArray('option trustedKeys', options.trustedKeys, CFG);
  }
  if (options.resourcePolicy !== undefined) v.oneOf('option resourcePolicy', options.resourcePolicy, ['clamp', 'refuse'], undefined, CFG);
  const { policy, ...rest } = options;
  if (policy !== undefined && (policy === null || typeof policy !== 'object' || Array.isArray(policy))) {
    throw v.fail('option policy', 'a capabilities object (docs/SECURITY.md)', policy, CFG);
  }
  return {
    ...rest,
    policyJson: policy === undefined ? undefined : v.json('option policy', policy, CFG),
    inference: inferenceOptions(options.inference),
  };
}

/** Checks the inference options; adds where node_modules/onnxruntime-node is, so the core finds its libonnxruntime. */
function inferenceOptions(o) {
  o = v.options('option inference', o, INFERENCE_KEYS, CFG);
  if (o.providers !== undefined) {
    v.stringArray('option inference.providers', o.providers, CFG);
    o.providers.forEach((p, i) => v.oneOf(`option inference.providers[${i}]`, p, PROVIDERS, undefined, CFG));
  }
  v.optInt('option inference.maxModels', o.maxModels, 1, MAX_U32, undefined, CFG);
  v.optInt('option inference.maxModelBytes', o.maxModelBytes, 1, MAX_SAFE, undefined, CFG);
  if (o.ortLibraryPath !== undefined) v.str('option inference.ortLibraryPath', o.ortLibraryPath, CFG);
  if (o.deterministic !== undefined) v.bool('option inference.deterministic', o.deterministic, CFG);
  if (o.searchRoots !== undefined) v.stringArray('option inference.searchRoots', o.searchRoots, CFG);
  const roots = [];
  try {
    const pkg = require.resolve('onnxruntime-node/package.json');
    roots.push(join(pkg, '..', '..', '..'));
  } catch {
    // Not installed: the core reports E_ORT_NOT_FOUND with what to do, if inference is used.
  }
  return { ...o, searchRoots: [...(o.searchRoots ?? []), ...roots] };
}

/** The typed array each output type is returned as. */
const OUTPUT_ARRAYS = {
  float32: Float32Array,
  float64: Float64Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  int8: Int8Array,
  bool: Uint8Array,
};

/** The typed-array classes each tensor type accepts as data (by tag: works across realms). */
const ACCEPTED_DATA = {
  float32: ['Float32Array'],
  float64: ['Float64Array'],
  int32: ['Int32Array'],
  int64: ['BigInt64Array'],
  uint8: ['Uint8Array', 'Uint8ClampedArray'],
  int8: ['Int8Array'],
  bool: ['Uint8Array'],
};

/**
 * { name: { type, data, dims } } (also onnxruntime-node Tensors) → parallel arrays. Like
 * onnxruntime-node, `data` must be the typed array of `type` (a Float64Array is not float32
 * data) and hold exactly the product of `dims` elements.
 */
function flattenInputs(inputs) {
  if (inputs == null || typeof inputs !== 'object' || Array.isArray(inputs)) {
    throw v.fail('inputs', 'an object: { inputName: { type, data, dims } }', inputs);
  }
  const names = [], types = [], dims = [], data = [];
  for (const [name, t] of Object.entries(inputs)) {
    const what = `inputs["${name}"]`;
    if (t == null || typeof t !== 'object') throw v.fail(what, 'a tensor { type, data, dims }', t);
    const accepted = ACCEPTED_DATA[t.type];
    if (!accepted) {
      throw new LockstepError('E_UNSUPPORTED_TYPE', `${what}.type must be one of ${Object.keys(ACCEPTED_DATA).join(', ')}; got ${v.describe(t.type)}`);
    }
    const tag = ArrayBuffer.isView(t.data) ? Object.prototype.toString.call(t.data).slice(8, -1) : null;
    if (!accepted.includes(tag)) {
      throw new LockstepError('E_INVALID_ARGUMENT', `${what}.data must be a ${accepted.join(' or ')} for type "${t.type}"; got ${v.describe(t.data)}. Convert it (e.g. Float32Array.from(data)): its bytes are not reinterpreted`);
    }
    if (!Array.isArray(t.dims)) throw v.fail(`${what}.dims`, 'an array of non-negative integers', t.dims);
    let count = 1;
    t.dims.forEach((d, i) => {
      v.int(`${what}.dims[${i}]`, d, 0, MAX_SAFE);
      count *= d;
    });
    if (count !== t.data.length) {
      throw new LockstepError('E_BAD_INPUT_SHAPE', `${what}: dims [${t.dims.join(', ')}] describe ${count} elements, but data holds ${t.data.length}`);
    }
    names.push(name);
    types.push(t.type);
    dims.push(t.dims);
    // A view, not a copy: the core copies once, into ONNX Runtime's tensor.
    data.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return [names, types, dims, data];
}

/** Inputs as one spec string and one buffer (each tensor 8-byte aligned): the fast path. */
function packInputs(inputs) {
  const [names, types, dims, data] = flattenInputs(inputs);
  let size = 0;
  for (const d of data) size += Math.ceil(d.byteLength / 8) * 8;
  // One input: its own bytes, no copy. Several: packed, each at a multiple of 8.
  const packed = data.length === 1 ? data[0] : new Uint8Array(size);
  let spec = '';
  let offset = 0;
  for (let i = 0; i < names.length; i++) {
    if (names[i].includes(':') || names[i].includes(';')) {
      throw new LockstepError('E_INVALID_ARGUMENT', `input name "${names[i]}" may not contain ':' or ';'`);
    }
    spec += `${names[i]}:${types[i]}:${dims[i].join(',')}:${data[i].byteLength};`;
    if (packed !== data[0]) packed.set(data[i], offset);
    offset += Math.ceil(data[i].byteLength / 8) * 8;
  }
  return [spec, packed];
}

function unpackOutputs({ spec, data }) {
  const out = {};
  let offset = 0;
  for (const part of spec.split(';')) {
    if (!part) continue;
    const [name, type, dimText] = part.split(':');
    const dims = dimText ? dimText.split(',').map(Number) : [];
    const Typed = OUTPUT_ARRAYS[type];
    const count = dims.reduce((a, b) => a * b, 1);
    // The buffer's outputs start at multiples of 8 from its start, so every view is aligned
    // when the buffer is; if it is not, copy.
    const start = data.byteOffset + offset;
    out[name] = start % Typed.BYTES_PER_ELEMENT === 0
      ? { type, dims, data: new Typed(data.buffer, start, count) }
      : { type, dims, data: new Typed(data.buffer.slice(start, start + count * Typed.BYTES_PER_ELEMENT)) };
    offset += Math.ceil((count * Typed.BYTES_PER_ELEMENT) / 8) * 8;
  }
  return out;
}

/**
 * Whether an ArrayBuffer was transferred away (postMessage, structuredClone): a view of it
 * reads as empty, so its bytes would silently become an empty payload (or module), and
 * `new Uint8Array(it)` throws a raw TypeError.
 */
function isDetached(buffer) {
  if (!(buffer instanceof ArrayBuffer)) return false; // SharedArrayBuffers cannot be detached
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
  if ((payload instanceof ArrayBuffer && isDetached(payload)) || (ArrayBuffer.isView(payload) && isDetached(payload.buffer))) {
    throw new LockstepError('E_INVALID_ARGUMENT', `${name} is a detached ArrayBuffer (or a view of one): it was transferred away (postMessage, structuredClone) and holds no bytes here`);
  }
  if (payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  throw v.fail(name, 'a Uint8Array, Buffer, ArrayBuffer or string', payload);
}

/** A module or model: a path (string or file URL) or its bytes. */
function moduleBytes(source, name = 'source', what = 'agent module') {
  if (typeof source === 'string' || source instanceof URL) {
    try {
      return readFileSync(source);
    } catch (e) {
      throw new LockstepError('E_IO', `cannot read ${what} ${String(source)} (${name}): ${e.message}`);
    }
  }
  if (source instanceof Uint8Array || source instanceof ArrayBuffer || ArrayBuffer.isView(source)) return toBytes(source, name);
  throw v.fail(name, `a path or the ${what}'s bytes (Uint8Array, Buffer, ArrayBuffer)`, source);
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

/** Models whose calls take less than this run inline: a thread-pool hop costs more (~60 µs). */
const INLINE_INFER_US = 100;
/** How often an inline model is re-timed, in calls. */
const INLINE_RETIME_CALLS = 256;

class Runtime {
  #native;
  #rings = null;
  /** model id → { best: fastest timed inline call in µs, calls: number } */
  #inferCost = new Map();

  /** @param {import('./index').RuntimeOptions} [options] */
  constructor(options) {
    const o = checkOptions(options);
    this.#native = call(() => new native.NativeRuntime(o));
  }

  /**
   * Frees the runtime now: its agents, the address space reserved for their memories, its
   * rings' buffers and its inference engine, instead of whenever the garbage collector runs.
   * Idempotent. Every other method then throws E_CLOSED.
   */
  close() {
    call(() => this.#native.close());
    this.#rings = null;
    this.#inferCost.clear();
  }

  /** Whether close() was called. */
  get closed() {
    return call(() => this.#native.closed);
  }

  loadModule(source) {
    const bytes = moduleBytes(source, 'source');
    return call(() => this.#native.loadModule(bytes));
  }

  spawn(source, options) {
    const o = v.options('options', options, ['priority']);
    const priority = v.optInt('options.priority', o.priority, ...INT32, 0);
    const hash = spawnSource(this, source);
    return call(() => this.#native.spawn(hash, priority));
  }

  spawnMany(source, count, options) {
    v.int('count', count, 0, MAX_U32);
    const o = v.options('options', options, ['priority']);
    const priority = v.optInt('options.priority', o.priority, ...INT32, 0);
    const hash = spawnSource(this, source);
    const ids = [];
    for (let i = 0; i < count; i++) {
      try {
        ids.push(call(() => this.#native.spawn(hash, priority)));
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

  send(to, payload, options) {
    v.id('to', to);
    const bytes = toBytes(payload, 'payload');
    const o = v.options('options', options, ['kind', 'priority']);
    const kind = v.optInt('options.kind', o.kind, 0, MAX_U32, 0);
    const priority = v.optInt('options.priority', o.priority, ...INT32, 0);
    return call(() => this.#native.send(to, kind, priority, bytes));
  }

  tick(n = 1) {
    v.int('n (the number of ticks)', n, 1, MAX_U32);
    const report = call(() => this.#native.tick(n));
    if (this.#rings) {
      // Rust cannot wake JS waiters (V8 keeps its own waiter list): wake them from here,
      // at the tick boundary, where the inbound ring was drained and the outbound one filled.
      Atomics.notify(this.#rings.inI32, 32);
      Atomics.notify(this.#rings.outI32, 16);
    }
    return report;
  }

  /**
   * Creates the two SharedArrayBuffer rings and attaches them. Returns { inbound, outbound,
   * inboundBuffer, outboundBuffer }: a RingProducer for JS → agents, a RingConsumer for
   * agents → JS, and the buffers to hand to a worker_thread (new RingProducer(inboundBuffer)).
   */
  attachRings(options) {
    const o = v.options('options', options, ['inboundBytes', 'outboundBytes']);
    if (call(() => this.#native.closed)) throw new LockstepError('E_CLOSED', 'this runtime is closed; create a new Runtime');
    if (this.#rings) throw new LockstepError('E_RING', 'rings are already attached to this runtime');
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
    return call(() => this.#native.loadModel(bytes));
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
    const [spec, data] = packInputs(inputs);
    try {
      return unpackOutputs(await call(() => this.#native.inferAsync(model, spec, data)));
    } catch (e) {
      throw convert(e);
    }
  }

  /** Runs a model on the calling thread (lowest overhead for small models). */
  inferSync(model, inputs) {
    modelId('model', model);
    const [spec, data] = packInputs(inputs);
    return unpackOutputs(call(() => this.#native.inferPacked(model, spec, data)));
  }

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

  drainMessages() {
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
}

/** replay()'s and replayAsync()'s arguments, checked. */
function replayArgs(log, options) {
  if (log == null) throw v.fail('log', 'a replay log (the bytes from stopRecording() or replayLog())', log);
  const bytes = toBytes(log, 'log');
  const o = v.options('options', options, ['workers', 'onProgress', 'trustedKeys', 'devMode']);
  if (o.workers !== undefined) v.int('options.workers', o.workers, 1, 256);
  if (o.onProgress !== undefined) v.fn('options.onProgress', o.onProgress);
  // A log never grants itself trust: modules run only if signed by a key the caller trusts
  // (or unsigned, with devMode, from a devMode session).
  const trustedKeys = o.trustedKeys === undefined ? [] : v.stringArray('options.trustedKeys', o.trustedKeys);
  const devMode = o.devMode === undefined ? false : v.bool('options.devMode', o.devMode);
  return { bytes, workers: o.workers, onProgress: o.onProgress, trustedKeys, devMode };
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
  const report = call(() => native.replay(a.bytes, a.workers, progress.relay, a.trustedKeys, a.devMode));
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
  const pending = call(() => native.replayAsync(a.bytes, a.workers, progress.relay, a.trustedKeys, a.devMode));
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

/** Paths of the example agents shipped with the package. */
function exampleAgent(name) {
  v.str('name', name);
  const p = join(__dirname, 'dist', 'agents', `${name.replace(/-/g, '_')}.wasm`);
  if (!existsSync(p)) {
    throw new LockstepError('E_IO', `no example agent "${name}" at ${p}; run \`npm run build\` in the lockstep checkout`);
  }
  return p;
}

// ----- signing tools (also `npx lockstep keygen|sign|verify|inspect`) ---------------------------

/** A new publisher key pair: { publicKey, secretKey } (hex). Keep the secret key secret. */
function keygen() {
  return call(() => native.keygen());
}

/** Embeds `manifest` (object or JSON) into the module and signs both. Returns the signed bytes. */
function sign(module, manifest, secretKey) {
  const bytes = moduleBytes(module, 'module');
  if (manifest === null || (typeof manifest !== 'string' && (typeof manifest !== 'object' || Array.isArray(manifest)))) {
    throw v.fail('manifest', 'a manifest object or its JSON text (docs/SECURITY.md)', manifest);
  }
  const json = typeof manifest === 'string' ? manifest : v.json('manifest', manifest);
  v.str('secretKey', secretKey);
  return call(() => native.signModule(bytes, json, secretKey));
}

/** Would a runtime trusting `trustedKeys` admit this module? { ok, code?, message?, publisher? } */
function verify(module, trustedKeys) {
  const bytes = moduleBytes(module, 'module');
  if (typeof trustedKeys === 'string') throw v.fail('trustedKeys', 'an array of hex public keys (wrap a single key in [ ])', trustedKeys);
  v.stringArray('trustedKeys', trustedKeys);
  return call(() => native.verifyModule(bytes, trustedKeys));
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
  exampleAgent,
  ABI_VERSION,
  MAX_PAYLOAD_BYTES,
  HOST_ID,
  INFERENCE_ID,
  // Test hook (LOCKSTEP_TEST_HOOKS=1 only): a Rust panic inside a native function.
  [TEST_PANIC]: (message) => call(() => native.testPanic(message)),
};
