'use strict';
// Zero-copy message rings over a SharedArrayBuffer: the JS half of crates/lockstep-core/src/ring.rs
// (layout in docs/RINGS.md). This file does not load the native addon, so a worker_thread can
// require('lockstep/ring.js') and produce into a ring the main thread's runtime consumes.
//
// Memory ordering: a producer writes a record's bytes, then publishes it with Atomics.store of
// `head`; the consumer Atomics.load's `head`, reads, then Atomics.store's `tail`. JS Atomics are
// sequentially consistent, which the Rust side's acquire/release pairs with.

const MAGIC = 0x4752534c; // "LSRG" little-endian
const VERSION = 1;
const HEADER_BYTES = 192;
const HEAD = 16; // Int32 index of head (byte 64)
const TAIL = 32; // Int32 index of tail (byte 128)
const RECORD_HEADER_BYTES = 24;
const MIN_CAPACITY = 1 << 12;
const MAX_CAPACITY = 1 << 30;
const TYPE_MESSAGE = 1;
const TYPE_EVENT = 2;
const TYPE_TICK = 3;
const TYPE_PAD = 0xffff;
const MAX_PAYLOAD_BYTES = 65536 - 40;
const TWO_32 = 2 ** 32;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('lockstep rings need a little-endian platform');
}

const { LockstepError } = require('./errors.js');
const v = require('./validate.js');

// Ring errors are LockstepErrors with E_RING* / E_MESSAGE_TOO_LARGE / E_INVALID_ARGUMENT codes.
const RingError = LockstepError;

function recordBytes(len) {
  return (RECORD_HEADER_BYTES + len + 7) & ~7;
}

/** A SharedArrayBuffer holding an empty ring with `capacity` data bytes (a power of two). */
function createRingBuffer(capacity = 1 << 20, name = 'capacity') {
  if (typeof capacity !== 'number' || !Number.isSafeInteger(capacity) || capacity < MIN_CAPACITY || capacity > MAX_CAPACITY || (capacity & (capacity - 1)) !== 0) {
    throw new RingError('E_RING', `ring ${name} must be a power of two in ${MIN_CAPACITY}..${MAX_CAPACITY}; got ${v.describe(capacity)}`);
  }
  const sab = new SharedArrayBuffer(HEADER_BYTES + capacity);
  const u32 = new Uint32Array(sab, 0, 3);
  u32[0] = MAGIC;
  u32[1] = VERSION;
  u32[2] = capacity;
  return sab;
}

/**
 * The built-in getters of a buffer's or a view's own size and bytes, whatever properties it has
 * (a subclass's or an own property's getter, a Proxy: caller code that could claim another).
 */
const getter = (proto, name) => Object.getOwnPropertyDescriptor(proto, name).get;
const sabByteLength = getter(SharedArrayBuffer.prototype, 'byteLength');

function openRing(sab) {
  let byteLength = -1;
  try {
    // Its real size, read once: an own `byteLength` property (or a Proxy) claimed another,
    // which passed the checks and made the views below throw a raw RangeError. The built-in
    // getter takes a SharedArrayBuffer of any realm (one made in a vm context, as Jest's test
    // environment is, is not `instanceof` this realm's, and was refused).
    byteLength = sabByteLength.call(sab);
  } catch {
    // Not a SharedArrayBuffer (a Proxy of one, an object made from its prototype).
  }
  if (byteLength < 0) {
    throw new RingError('E_RING', `buffer must be a SharedArrayBuffer holding a ring (from createRingBuffer() or attachRings()); got ${v.describe(sab)}`);
  }
  if (byteLength < HEADER_BYTES) throw new RingError('E_RING', `buffer is ${byteLength} bytes, smaller than a ring header; create it with createRingBuffer()`);
  const u32 = new Uint32Array(sab, 0, 3);
  const capacity = u32[2];
  if (u32[0] !== MAGIC || u32[1] !== VERSION || capacity < MIN_CAPACITY || (capacity & (capacity - 1)) !== 0 || HEADER_BYTES + capacity > byteLength) {
    throw new RingError('E_RING', 'not a lockstep ring buffer (bad magic, version or capacity); create it with createRingBuffer()');
  }
  return {
    capacity,
    mask: capacity - 1,
    i32: new Int32Array(sab, 0, HEADER_BYTES / 4),
    u8: new Uint8Array(sab, HEADER_BYTES, capacity),
    // Records are 8-byte aligned, so header words are addressed as u32/i32 (faster than DataView).
    u32: new Uint32Array(sab, HEADER_BYTES, capacity / 4),
    s32: new Int32Array(sab, HEADER_BYTES, capacity / 4),
    dv: new DataView(sab, HEADER_BYTES, capacity),
  };
}

const TYPED_ARRAY = Object.getPrototypeOf(Uint8Array.prototype);
const typedArrayLength = getter(TYPED_ARRAY, 'length');
const typedArrayBuffer = getter(TYPED_ARRAY, 'buffer');
const typedArrayByteOffset = getter(TYPED_ARRAY, 'byteOffset');
const typedArrayByteLength = getter(TYPED_ARRAY, 'byteLength');
const dataViewBuffer = getter(DataView.prototype, 'buffer');
const arrayBufferByteLength = getter(ArrayBuffer.prototype, 'byteLength');

/** An ArrayBuffer of any realm (a vm context's, as Jest's environment has, is not `instanceof` this one's). */
function isArrayBuffer(x) {
  try {
    arrayBufferByteLength.call(x);
    return true;
  } catch {
    return false;
  }
}
const dataViewByteOffset = getter(DataView.prototype, 'byteOffset');
const dataViewByteLength = getter(DataView.prototype, 'byteLength');

/**
 * `payload` as a real Uint8Array (a Proxy of one is copied; `ArrayBuffer.isView` tells them
 * apart without running caller code), whose length tryPush reads with the built-in getter: a
 * subclass whose `length` getter lied (or a Proxy, whose reads are caller code) made tryPush
 * reserve one size and copy another, over records not yet read.
 */
function toBytes(payload) {
  if (payload == null) return EMPTY;
  if (payload instanceof Uint8Array) {
    if (ArrayBuffer.isView(payload)) return payload;
    // A Proxy of one (a framework's reactive array): copied, its length and each byte read
    // once (set() read them through it as it copied, after tryPush had read the length).
    let n;
    try {
      n = payload.length;
    } catch (e) {
      // A Proxy whose get passes itself as the receiver reaches the built-in length getter,
      // which refuses it: no length to read but through its target.
      if (!(e instanceof TypeError)) throw e;
      throw new RingError('E_INVALID_ARGUMENT', 'payload is a Proxy whose length cannot be read; pass the Uint8Array itself (or a copy of it)');
    }
    if (!Number.isSafeInteger(n) || n < 0) throw v.fail('payload', 'a Uint8Array, Buffer, ArrayBuffer or string', payload);
    if (n > MAX_PAYLOAD_BYTES) throw new RingError('E_MESSAGE_TOO_LARGE', `payload is ${n} bytes; the limit is ${MAX_PAYLOAD_BYTES}`);
    const copy = new Uint8Array(n);
    for (let i = 0; i < n; i++) copy[i] = payload[i];
    return copy;
  }
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (isArrayBuffer(payload)) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) {
    // Its bytes as the built-in getters describe them (a typed array whose prototype was
    // replaced, or a subclass with its own getters, read no caller code here).
    try {
      const dv = payload instanceof DataView;
      return new Uint8Array(
        (dv ? dataViewBuffer : typedArrayBuffer).call(payload),
        (dv ? dataViewByteOffset : typedArrayByteOffset).call(payload),
        (dv ? dataViewByteLength : typedArrayByteLength).call(payload),
      );
    } catch {
      // (a DataView with another prototype, a detached view: not bytes we can name)
    }
  }
  throw v.fail('payload', 'a Uint8Array, Buffer, ArrayBuffer or string', payload);
}
const EMPTY = new Uint8Array(0);

/** Writes messages into a ring (JS → core). One producer per ring. */
class RingProducer {
  constructor(sab) {
    Object.assign(this, openRing(sab));
    this.buffer = sab;
    this.head = Atomics.load(this.i32, HEAD) >>> 0;
    this.tail = Atomics.load(this.i32, TAIL) >>> 0;
  }

  /**
   * Appends a message for agent `to`. Returns false (writing nothing) when the ring is full:
   * back-pressure, never an overwrite. With { publish: false } the record becomes visible only
   * at the next publish() — batching saves one atomic store per message.
   */
  tryPush(to, payload, options) {
    // `to` is stored as two u32 words: it must be an exact integer below 2^64. An id below
    // 2^32 (every agent's, in practice) passes the first test alone and is stored as it is:
    // splitting it as a double (% and / by 2^32) was ~7 ns of a ~40 ns push.
    // (typeof first: `>>>` on a BigInt throws a TypeError, on an object calls its valueOf.)
    const small = typeof to === 'number' && to >>> 0 === to;
    if (!small && (typeof to !== 'number' || !(to >= 0 && to < 2 ** 64) || to % 1 !== 0)) throw v.fail('to', 'an agent id (an integer in 0..2^64-1)', to);
    // Each option is read once: a getter's second answer is never the one used unchecked.
    let kind = 0;
    let priority = 0;
    let publish = true;
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw v.fail('options', 'an object', options);
      const k = options.kind;
      const p = options.priority;
      const b = options.publish;
      if (k !== undefined) kind = v.int('options.kind', k, 0, v.MAX_U32);
      if (p !== undefined) priority = v.int('options.priority', p, -(2 ** 31), 2 ** 31 - 1);
      if (b !== undefined) publish = v.bool('options.publish', b);
    }
    const bytes = toBytes(payload);
    const len = typedArrayLength.call(bytes);
    if (len > MAX_PAYLOAD_BYTES) throw new RingError('E_MESSAGE_TOO_LARGE', `payload is ${len} bytes; the limit is ${MAX_PAYLOAD_BYTES}`);
    const total = recordBytes(len);
    const cap = this.capacity;
    let head = this.head;
    let off = head & this.mask;
    const toEnd = cap - off;
    const pad = total > toEnd ? toEnd : 0;
    // The consumer's tail is re-read only when the cached one says "full" (saves an atomic
    // load per message; a stale tail can only under-estimate the free space).
    if (((head - this.tail) >>> 0) + pad + total > cap) {
      this.tail = Atomics.load(this.i32, TAIL) >>> 0;
      if (((head - this.tail) >>> 0) + pad + total > cap) {
        this.publish();
        return false;
      }
    }
    const u32 = this.u32;
    if (pad) {
      u32[off >>> 2] = pad;
      u32[(off >>> 2) + 1] = TYPE_PAD;
      head = (head + pad) >>> 0;
      off = 0;
    }
    const w = off >>> 2;
    u32[w] = len;
    u32[w + 1] = TYPE_MESSAGE;
    u32[w + 2] = kind;
    this.s32[w + 3] = priority;
    if (small) {
      u32[w + 4] = to;
      u32[w + 5] = 0;
    } else {
      u32[w + 4] = to % TWO_32;
      u32[w + 5] = to / TWO_32;
    }
    if (len) this.u8.set(bytes, off + RECORD_HEADER_BYTES);
    this.head = (head + total) >>> 0;
    if (publish) Atomics.store(this.i32, HEAD, this.head | 0);
    return true;
  }

  /** Makes every record written so far visible to the consumer. */
  publish() {
    Atomics.store(this.i32, HEAD, this.head | 0);
  }

  /** Free bytes right now. */
  free() {
    this.tail = Atomics.load(this.i32, TAIL) >>> 0;
    return this.capacity - ((this.head - this.tail) >>> 0);
  }

  /**
   * Like tryPush, but waits for room without spinning the event loop: it sleeps on the ring's
   * tail with Atomics.waitAsync (the runtime notifies after each tick) and re-checks at least
   * every `pollMs`. Rejects with E_RING_TIMEOUT after `timeoutMs`.
   */
  async push(to, payload, options = {}) {
    const o = v.options('options', options, PUSH_KEYS);
    const timeoutMs = v.optInt('options.timeoutMs', o.timeoutMs, 0, MAX_TIMEOUT_MS, 30_000);
    const pollMs = v.optInt('options.pollMs', o.pollMs, 1, MAX_TIMEOUT_MS, 5);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.tryPush(to, payload, o)) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new RingError('E_RING_TIMEOUT', `no room in the ring for ${timeoutMs} ms: is the runtime ticking?`);
      const tail = Atomics.load(this.i32, TAIL);
      const wait = Math.min(pollMs, left);
      // A pending Atomics.waitAsync does not keep Node's event loop alive, and its own timeout
      // may settle after a timer of the same length: a keep-alive timer that fired first let
      // the process (or worker) exit with this push neither done nor rejected. So the wait is
      // a race between the waitAsync and a timer that is itself the keep-alive: whichever
      // settles first, the loop was held for the whole wait, and the next iteration starts
      // (with a new timer) before the event loop looks for pending work again.
      let timer;
      const slept = new Promise((resolve) => {
        timer = setTimeout(resolve, wait);
      });
      const w = Atomics.waitAsync(this.i32, TAIL, tail, wait);
      try {
        if (w.async) await Promise.race([w.value, slept]);
      } finally {
        clearTimeout(timer);
      }
    }
  }
}

const PUSH_KEYS = ['kind', 'priority', 'publish', 'timeoutMs', 'pollMs'];
const MAX_TIMEOUT_MS = 2 ** 31 - 1; // setTimeout's limit

/** Reads records from a ring (core → JS). One consumer per ring. */
class RingConsumer {
  /** A forEach (or readBatch) is running: its callback may not read the ring again. */
  #reading = false;

  constructor(sab) {
    Object.assign(this, openRing(sab));
    this.buffer = sab;
  }

  /**
   * Calls fn(type, agent, kind, priority, payload) for up to `max` records, then releases their
   * space. `payload` is a view into the shared buffer, valid only during the call (copy it
   * to keep it): zero-copy. Returns the number of records read.
   */
  forEach(fn, max = Infinity) {
    v.fn('fn', fn);
    if (max !== Infinity) v.int('max', max, 0, Number.MAX_SAFE_INTEGER);
    // A callback that read the ring again (forEach, readBatch) consumed records past the `tail`
    // this call had read: they were delivered twice, and the tail this call stores last could be
    // older than the one the inner call stored (space the producer may have written since).
    if (this.#reading) throw new RingError('E_RING', 'forEach() or readBatch() was called from inside a forEach() callback on the same consumer: read the ring again after the callback returns');
    const i32 = this.i32;
    const u32 = this.u32;
    const head = Atomics.load(i32, HEAD) >>> 0;
    let tail = Atomics.load(i32, TAIL) >>> 0;
    let n = 0;
    this.#reading = true;
    try {
      while (n < max && tail !== head) {
        const used = (head - tail) >>> 0;
        const off = tail & this.mask;
        const w = off >>> 2;
        const len = u32[w];
        const type = u32[w + 1] & 0xffff;
        if (type === TYPE_PAD) {
          if (len !== this.capacity - off || len > used) throw new RingError('E_RING', `corrupt padding at offset ${off}`);
          tail = (tail + len) >>> 0;
          continue;
        }
        const total = recordBytes(len);
        if (len > 1 << 20 || total > used || off + total > this.capacity) throw new RingError('E_RING', `corrupt record length ${len} at offset ${off}`);
        const agent = u32[w + 4] + u32[w + 5] * TWO_32;
        fn(type, agent, u32[w + 2], this.s32[w + 3], this.u8.subarray(off + RECORD_HEADER_BYTES, off + RECORD_HEADER_BYTES + len));
        tail = (tail + total) >>> 0;
        n++;
      }
    } finally {
      Atomics.store(i32, TAIL, tail | 0);
      this.#reading = false;
    }
    return n;
  }

  /** Reads up to `max` records as objects (payloads copied): messages, events and ticks. */
  readBatch(max = Infinity) {
    const out = [];
    this.forEach((type, agent, kind, priority, payload) => {
      if (type === TYPE_MESSAGE) out.push({ type: 'message', from: agent, kind, priority, payload: Buffer.from(payload) });
      else if (type === TYPE_EVENT) out.push({ type: 'event', event: JSON.parse(Buffer.from(payload).toString('utf8')) });
      else if (type === TYPE_TICK) out.push({ type: 'tick', tick: Number(Buffer.from(payload).readBigUInt64LE(0)), hash: Buffer.from(payload.subarray(8, 40)).toString('hex') });
    }, max);
    return out;
  }
}

module.exports = {
  createRingBuffer,
  RingProducer,
  RingConsumer,
  RingError,
  RING_TYPES: { MESSAGE: TYPE_MESSAGE, EVENT: TYPE_EVENT, TICK: TYPE_TICK },
  RING_HEADER_BYTES: HEADER_BYTES,
};
