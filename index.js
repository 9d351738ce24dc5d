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
      `Fix: reinstall so npm picks the optional package lockstep-${triple}, or build from source with ` +
      '`npm run build` (needs Rust, see README), or point LOCKSTEP_NATIVE_PATH at a built .node file.',
  );
  err.code = 'E_NO_NATIVE_BINARY';
  throw err;
}

const native = loadNative();

const { LockstepError } = require('./errors.js');

function convert(e) {
  const m = /^\[(E_[A-Z_]+)\] ([\s\S]*)$/.exec(e && e.message);
  if (m) {
    const err = new LockstepError(m[1], m[2]);
    return err;
  }
  return e;
}

/** The user's log sink (setLogger), fed after every call into the runtime. */
let logSink = null;

function flushLogs() {
  if (!logSink) return;
  for (const line of native.drainLogs()) logSink(line);
}

function call(fn) {
  try {
    return fn();
  } catch (e) {
    throw convert(e);
  } finally {
    if (logSink) flushLogs();
  }
}

/**
 * Routes the runtime's logs (Rust `tracing`: faults, refusals, provider fallbacks, agents' own
 * log lines...) to `sink({ level, target, message })`, at `level` and above. `setLogger(null)`
 * turns them off. Records are delivered after each call into the runtime, on the calling thread.
 */
function setLogger(sink, options = {}) {
  const level = sink ? options.level ?? 'info' : 'off';
  native.setLogLevel(level);
  native.drainLogs(); // start fresh
  logSink = sink || null;
}

const OPTION_KEYS = [
  'workers', 'fuelPerCall', 'memoryLimitBytes', 'seed', 'maxAgents', 'deadlineMs',
  'checkpointIntervalTicks', 'record', 'maxEvents', 'inference', 'inferenceBatching',
  'trustedKeys', 'devMode', 'policy', 'resourcePolicy',
];
const NON_NUMERIC_OPTIONS = ['record', 'inference', 'inferenceBatching', 'trustedKeys', 'devMode', 'policy', 'resourcePolicy'];

function checkOptions(options) {
  if (options == null) return {};
  if (typeof options !== 'object') throw new LockstepError('E_INVALID_CONFIG', 'options must be an object');
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new LockstepError('E_INVALID_CONFIG', `unknown option "${key}"; valid options: ${OPTION_KEYS.join(', ')}`);
    }
  }
  for (const key of OPTION_KEYS.filter((k) => !NON_NUMERIC_OPTIONS.includes(k))) {
    const v = options[key];
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) {
      throw new LockstepError('E_INVALID_CONFIG', `option ${key} must be a non-negative integer, got ${String(v)}`);
    }
  }
  const { policy, ...rest } = options;
  return {
    ...rest,
    policyJson: policy === undefined ? undefined : JSON.stringify(policy),
    inference: inferenceOptions(options.inference),
  };
}

/** Where node_modules/onnxruntime-node lives, so the core finds its libonnxruntime. */
function inferenceOptions(o = {}) {
  const roots = [];
  try {
    const pkg = require.resolve('onnxruntime-node/package.json');
    roots.push(join(pkg, '..', '..', '..'));
  } catch {
    // Not installed: the core reports E_ORT_NOT_FOUND with what to do, if inference is used.
  }
  return { ...o, searchRoots: [...(o.searchRoots ?? []), ...roots] };
}

const TYPED_ARRAYS = {
  float32: Float32Array,
  float64: Float64Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  int8: Int8Array,
  bool: Uint8Array,
};

/** { name: { type, data, dims } } (also onnxruntime-node Tensors) → parallel arrays. */
function flattenInputs(inputs) {
  if (inputs == null || typeof inputs !== 'object') {
    throw new LockstepError('E_INVALID_ARGUMENT', 'inputs must be an object: { inputName: { type, data, dims } }');
  }
  const names = [], types = [], dims = [], data = [];
  for (const [name, t] of Object.entries(inputs)) {
    const Typed = t && TYPED_ARRAYS[t.type];
    if (!Typed) {
      throw new LockstepError('E_UNSUPPORTED_TYPE', `input "${name}": type must be one of ${Object.keys(TYPED_ARRAYS).join(', ')}, got ${t && t.type}`);
    }
    if (!ArrayBuffer.isView(t.data) || !Array.isArray(t.dims)) {
      throw new LockstepError('E_INVALID_ARGUMENT', `input "${name}": data must be a typed array and dims an array of integers`);
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
    const Typed = TYPED_ARRAYS[type];
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

function toBytes(payload, what) {
  if (payload == null) return new Uint8Array(0);
  if (payload instanceof Uint8Array) return payload;
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  throw new LockstepError('E_INVALID_ARGUMENT', `${what} must be a Uint8Array, Buffer, ArrayBuffer or string`);
}

function moduleBytes(source) {
  if (typeof source === 'string' || source instanceof URL) {
    try {
      return readFileSync(source);
    } catch (e) {
      throw new LockstepError('E_IO', `cannot read agent module ${String(source)}: ${e.message}`);
    }
  }
  return toBytes(source, 'an agent module');
}

const HASH_RE = /^[0-9a-f]{64}$/;

function checkInt32(v, name) {
  if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) {
    throw new LockstepError('E_INVALID_ARGUMENT', `${name} must be a 32-bit signed integer, got ${v}`);
  }
  return v;
}

function checkId(id) {
  if (!Number.isSafeInteger(id) || id < 0) {
    throw new LockstepError('E_UNKNOWN_AGENT', `agent id must be a non-negative integer, got ${String(id)}`);
  }
  return id;
}

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
    this.#native = call(() => new native.NativeRuntime(checkOptions(options)));
  }

  loadModule(source) {
    const bytes = moduleBytes(source);
    return call(() => this.#native.loadModule(bytes));
  }

  spawn(source, options = {}) {
    const hash = typeof source === 'string' && HASH_RE.test(source) ? source : this.loadModule(source);
    const priority = checkInt32(options.priority ?? 0, 'priority');
    return call(() => this.#native.spawn(hash, priority));
  }

  spawnMany(source, count, options = {}) {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new LockstepError('E_INVALID_ARGUMENT', `count must be a non-negative integer, got ${count}`);
    }
    const hash = typeof source === 'string' && HASH_RE.test(source) ? source : this.loadModule(source);
    const priority = checkInt32(options.priority ?? 0, 'priority');
    const ids = [];
    for (let i = 0; i < count; i++) ids.push(call(() => this.#native.spawn(hash, priority)));
    return ids;
  }

  send(to, payload, options = {}) {
    const bytes = toBytes(payload, 'payload');
    const kind = options.kind ?? 0;
    const priority = options.priority ?? 0;
    if (!Number.isInteger(kind) || kind < 0 || kind > 0xffffffff) {
      throw new LockstepError('E_INVALID_ARGUMENT', `kind must be an integer in 0..2^32-1, got ${kind}`);
    }
    checkInt32(priority, 'priority');
    return call(() => this.#native.send(checkId(to), kind, priority, bytes));
  }

  tick(n = 1) {
    if (!Number.isSafeInteger(n) || n < 1 || n > 0xffffffff) {
      throw new LockstepError('E_INVALID_ARGUMENT', `tick(n) needs an integer n >= 1, got ${n}`);
    }
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
  attachRings(options = {}) {
    if (this.#rings) throw new LockstepError('E_RING', 'rings are already attached to this runtime');
    const inboundBuffer = ring.createRingBuffer(options.inboundBytes ?? 1 << 22);
    const outboundBuffer = ring.createRingBuffer(options.outboundBytes ?? 1 << 22);
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
    const bytes = moduleBytes(source);
    return call(() => this.#native.loadModel(bytes));
  }

  modelInfo(id) {
    return call(() => this.#native.modelInfo(id));
  }

  listModels() {
    return call(() => this.#native.listModels());
  }

  unloadModel(id) {
    return call(() => this.#native.unloadModel(id));
  }

  /** Makes a loaded model available to agents; returns the slot they pass to `infer`. */
  registerAgentModel(id) {
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
    const cost = this.#inferCost.get(model) ?? { best: Infinity, calls: 0 };
    this.#inferCost.set(model, cost);
    // The first calls are cold (caches, allocator): judge by the fastest of a few.
    if (cost.calls < 4 || cost.best < INLINE_INFER_US || cost.calls % INLINE_RETIME_CALLS === 0) {
      cost.calls++;
      const t0 = performance.now();
      const out = this.inferSync(model, inputs);
      const us = (performance.now() - t0) * 1000;
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
    const [spec, data] = packInputs(inputs);
    return unpackOutputs(call(() => this.#native.inferPacked(model, spec, data)));
  }

  /** Writes records waiting for room into the outbound ring; returns how many still wait. */
  flushOutbound() {
    const left = this.#native.flushOutbound();
    if (this.#rings) Atomics.notify(this.#rings.outI32, 16);
    return left;
  }

  /** Why the inbound ring stopped being read, or null. */
  inboundRingError() {
    return this.#native.inboundRingError() ?? null;
  }

  shutdown(id) {
    return call(() => this.#native.shutdown(checkId(id)));
  }

  kill(id) {
    return call(() => this.#native.kill(checkId(id)));
  }

  inspect(id) {
    return call(() => this.#native.inspect(checkId(id)));
  }

  agents() {
    return this.#native.agents();
  }

  get currentTick() {
    return this.#native.currentTick;
  }

  stateHash() {
    return this.#native.stateHash();
  }

  deepHash() {
    return this.#native.deepHash();
  }

  drainEvents() {
    return this.#native.drainEvents();
  }

  eventsDropped() {
    return this.#native.eventsDropped();
  }

  drainDeadLetters() {
    return this.#native.drainDeadLetters();
  }

  drainMessages() {
    return this.#native.drainMessages();
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
    return this.#native.recording;
  }
}

/**
 * Re-runs a recorded session and verifies it. `options.onProgress(ticksVerified)` is called
 * every 100 ticks, for long logs.
 */
function replay(log, options = {}) {
  const bytes = toBytes(log, 'the replay log');
  return call(() => native.replay(bytes, options.workers, options.onProgress));
}

/** Paths of the example agents shipped with the package. */
function exampleAgent(name) {
  const p = join(__dirname, 'dist', 'agents', `${name.replace(/-/g, '_')}.wasm`);
  if (!existsSync(p)) {
    throw new LockstepError('E_IO', `no example agent "${name}" at ${p}; run \`npm run build\` in the lockstep checkout`);
  }
  return p;
}

// ----- signing tools (also `npx lockstep keygen|sign|verify|inspect`) ---------------------------

/** A new publisher key pair: { publicKey, secretKey } (hex). Keep the secret key secret. */
function keygen() {
  return native.keygen();
}

/** Embeds `manifest` (object or JSON) into the module and signs both. Returns the signed bytes. */
function sign(module, manifest, secretKey) {
  const json = typeof manifest === 'string' ? manifest : JSON.stringify(manifest);
  return call(() => native.signModule(moduleBytes(module), json, secretKey));
}

/** Would a runtime trusting `trustedKeys` admit this module? { ok, code?, message?, publisher? } */
function verify(module, trustedKeys) {
  return call(() => native.verifyModule(moduleBytes(module), trustedKeys));
}

/** What a module asks for and who signed it: { manifest, publisher, signatureValid, imports }. */
function inspect(module) {
  const r = call(() => native.inspectModule(moduleBytes(module)));
  return { ...r, manifest: r.manifest == null ? null : JSON.parse(r.manifest) };
}

/**
 * The public key that signed the bundled example agents. A TEST key: its secret is in the
 * repository, so trust it only to run the examples.
 */
const EXAMPLES_PUBLIC_KEY = JSON.parse(readFileSync(join(__dirname, 'keys', 'examples-publisher.json'), 'utf8')).publicKey;

// Listed one by one (not spread) so Node's ES-module interop sees every named export.
const { createRingBuffer, RingProducer, RingConsumer, RingError, RING_TYPES, RING_HEADER_BYTES } = ring;

module.exports = {
  setLogger,
  flushLogs,
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
  exampleAgent,
  ABI_VERSION: native.abiVersion(),
  MAX_PAYLOAD_BYTES: native.maxPayloadBytes(),
  HOST_ID: 0,
};
