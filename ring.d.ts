// Type definitions for lockstep/ring.js: the JS half of the shared-memory rings (docs/RINGS.md).
// ring.js does not load the native addon, so a worker_thread can `require('lockstep/ring.js')`
// (or import it) and produce into a ring the main thread's runtime consumes. index.d.ts
// re-exports everything here. __test__/types.test.mjs holds this file to ring.js's exports.

import type { LockstepError, Payload, RuntimeEvent } from './index.js';

export interface RingPushOptions {
  kind?: number;
  priority?: number;
  /** false: write now, make visible at the next publish() (saves an atomic per message). [true] */
  publish?: boolean;
}

/**
 * Writes messages for agents into a ring (JS → core). ONE producer per ring: a single thread
 * (any one: the main thread or a worker) pushes into it; two threads pushing at once corrupt
 * it. A runtime has one inbound ring, so one producer thread feeds it.
 */
export class RingProducer {
  constructor(buffer: SharedArrayBuffer);
  /** Appends a message for agent `to` (an integer in 0..2^64-1: exact doubles only); false (nothing written) when the ring is full. */
  tryPush(to: number, payload: Payload, options?: RingPushOptions): boolean;
  /** Waits for room without spinning (woken at each tick), holding the event loop (a worker or process waiting here does not exit); rejects with E_RING_TIMEOUT after `timeoutMs` (default 30,000). `pollMs` (default 5) ≥ 1. */
  push(to: number, payload: Payload, options?: RingPushOptions & { timeoutMs?: number; pollMs?: number }): Promise<void>;
  publish(): void;
  free(): number;
  readonly capacity: number;
  readonly buffer: SharedArrayBuffer;
}

export type RingRecord =
  | { type: 'message'; from: number; kind: number; priority: number; payload: Buffer }
  | { type: 'event'; event: RuntimeEvent | { type: 'ring_error'; tick: number; detail: string } }
  | { type: 'tick'; tick: number; hash: string };

/** Reads what the core wrote (core → JS). One consumer per ring. */
export class RingConsumer {
  constructor(buffer: SharedArrayBuffer);
  /** Zero-copy: `payload` views the shared buffer and is valid only during the call. type: 1 message, 2 event (JSON), 3 tick. */
  forEach(fn: (type: number, agent: number, kind: number, priority: number, payload: Uint8Array) => void, max?: number): number;
  readBatch(max?: number): RingRecord[];
  readonly capacity: number;
  readonly buffer: SharedArrayBuffer;
}

/** A SharedArrayBuffer holding an empty ring of `capacity` data bytes (a power of two, 4 KiB..1 GiB; default 1 MiB). */
export function createRingBuffer(capacity?: number): SharedArrayBuffer;
/** The error class of the rings: LockstepError itself (codes E_RING, E_RING_TIMEOUT, E_MESSAGE_TOO_LARGE). */
export const RingError: typeof LockstepError;
/** The record types `RingConsumer.forEach` passes: 1 a message, 2 an event (JSON), 3 a tick record. */
export const RING_TYPES: { readonly MESSAGE: 1; readonly EVENT: 2; readonly TICK: 3 };
/** Bytes of a ring's header, before its `capacity` data bytes (docs/RINGS.md). */
export const RING_HEADER_BYTES: 192;
