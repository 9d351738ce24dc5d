// Type definitions for lockstep. Kept by hand beside index.js; every option and event is
// documented here, and __test__/ exercises each of them. __test__/types.test.mjs holds this file
// to the code: every export and class method of index.js is declared here and vice versa, each
// object the addon returns has the fields napi-rs generates for it (crates/lockstep-node/native.d.ts),
// RuntimeEvent has the fields of every lockstep_core::Event variant, and ErrorCode lists every
// code thrown.
//
// Arguments are checked before they reach the native addon: a wrong type or an out-of-range
// number is a LockstepError (E_INVALID_CONFIG for Runtime options, E_INVALID_ARGUMENT
// otherwise) naming the argument; numbers are never wrapped or truncated.
//
// `using` / `await using` (Runtime is Disposable and AsyncDisposable): TypeScript 5.2+.
/// <reference lib="esnext.disposable" />

// Ids: agent ids are JS numbers, never negative. Ids the runtime assigns (spawn) are small and
// exact. An id an agent or ring record addresses may be any u64: above 2^53 it is reported as
// the nearest double (approximate; e.g. 2^64 - 1 reads as 2^64 = INFERENCE_ID).

/** Options of `new Runtime(options)`. Every field is optional; defaults in brackets. */
export interface RuntimeOptions {
  /** Threads that step agents, 1..256; 1 runs everything on the calling thread; `'auto'`: as many as each tick's work calls for (one per 512 running agents or 1,000,000 fuel burned the tick before), up to `maxWorkers`. [number of CPUs] Results never depend on it. */
  workers?: number | 'auto';
  /** With `workers: 'auto'`: the most threads a tick uses, 1..256. [number of CPUs] */
  maxWorkers?: number;
  /** Fuel (≈ wasm instructions) per ABI call, 0..2^53-1. An agent that uses it up is preempted — deterministically. 0 disables metering (then only `deadlineMs` stops a loop). [10_000_000] */
  fuelPerCall?: number;
  /** Cap on each agent's linear memory in bytes, 131072..4 GiB. Growing past it faults the agent with `memory_limit`. [16 MiB] */
  memoryLimitBytes?: number;
  /** Seed of every agent's random stream (`random_u64`, `random_fill`), 0..2^53-1: same seed, same session. [0] */
  seed?: number;
  /** Most agents alive at once (stopped, killed and faulted ones do not count), 1..4,194,304 (the ids a runtime can assign over its life). [16384] */
  maxAgents?: number;
  /** Wall-clock backstop per ABI call in ms, 1..2^32-1 (not deterministic; fuel is the real limit). [1000] */
  deadlineMs?: number;
  /** Deep hash (all agent memory) recorded every this many ticks, 0..2^32-1; 0 = only when you call `deepHash()`. [100] */
  checkpointIntervalTicks?: number;
  /** Record a replay log from the start. [true] */
  record?: boolean;
  /** Most undrained events kept, 0..2^32-1; older ones are dropped and counted by `eventsDropped()`. [100000] */
  maxEvents?: number;
  /**
   * Most bytes the in-memory replay log holds, 1 MiB..2^53-1. Past it the log is cut back to the
   * last complete tick, recording stops, a `recording_stopped` event says so, and the log
   * replays as a prefix (`complete: false`). [1 GiB]
   */
  maxLogBytes?: number;
  /** Batch agents' inference requests per model per tick into one call. [true] */
  inferenceBatching?: boolean;
  /** The inference engine (created at the first loadModel). */
  inference?: InferenceOptions;
  /** Hex ed25519 public keys of publishers whose signed modules may run here. [[]] */
  trustedKeys?: string[];
  /** Admit unsigned modules (announced on stderr and as `security` events). Development only. A module signed by a key not in `trustedKeys` is still refused (E_UNTRUSTED_KEY). [false] */
  devMode?: boolean;
  /** The most any module is granted; a manifest can only get less. [everything] */
  policy?: Capabilities;
  /** Resource requests above the runtime's limits: 'clamp' them or 'refuse' the module. ['clamp'] */
  resourcePolicy?: 'clamp' | 'refuse';
  /**
   * Stream every record of the replay log to an on-disk journal in `dir` as it is produced, so
   * the session survives the process (docs/JOURNAL.md; `Runtime.recover(dir)` continues it).
   * Independent of `record` (the in-memory log): either, both or neither. [none]
   */
  journal?: JournalOptions;
}

/**
 * When the journal forces what it wrote to stable storage: 'tick' (before each tick() returns),
 * 'group' (group commit every 100 ticks or 5 ms, on a writer thread), 'off' (never, unless
 * syncJournal(); a killed process still loses nothing written, a machine crash may lose anything).
 */
export type FsyncPolicy = 'tick' | 'group' | 'off';

export interface JournalOptions {
  /** The journal's directory: created if missing; must not hold a journal already (E_JOURNAL_EXISTS). */
  dir: string;
  /** ['group'] */
  fsync?: FsyncPolicy;
  /** A segment file is closed, between ticks, once it holds this many bytes, 4096..2^53-1. [64 MiB] */
  segmentBytes?: number;
  /** A snapshot of the session is written into the journal every this many ticks (recovery and openJournal() start from the newest); 0: never. [1000] */
  snapshotIntervalTicks?: number;
}

export interface Capabilities {
  send?: 'none' | 'host' | 'agents' | 'any';
  /** Model ids (SHA-256) or '*'. */
  infer?: string[];
  log?: boolean;
  random?: boolean;
  clock?: boolean;
}

export interface Manifest {
  name: string;
  version: string;
  abi: number;
  capabilities?: Capabilities;
  resources?: { fuelPerCall?: number; memoryBytes?: number };
}

/** A new publisher key pair (hex). Keep secretKey secret. */
export function keygen(): { publicKey: string; secretKey: string };
/** Embeds the manifest into the module and signs both; returns the signed bytes. */
export function sign(module: ModuleSource, manifest: Manifest | string, secretKey: string): Buffer;
/** Would a runtime trusting these keys admit the module? */
export function verify(module: ModuleSource, trustedKeys: string[]): { ok: boolean; code?: ErrorCode; message?: string; publisher?: string };
/** What a module asks for and who signed it. */
export function inspect(module: ModuleSource): { manifest: Manifest | null; publisher: string | null; signatureValid: boolean; imports: string[] };
/** The public key of the bundled example agents. A TEST key (its secret is public): trust it only for the examples. */
export const EXAMPLES_PUBLIC_KEY: string;

export type ProviderName = 'cuda' | 'tensorrt' | 'directml' | 'coreml' | 'cpu';

export interface InferenceOptions {
  /** Providers to try in order; CPU is always the fallback. [['cpu']] */
  providers?: ProviderName[];
  /** Models kept loaded, 1..2^32-1; the least recently used is evicted. [16] */
  maxModels?: number;
  /** Largest model accepted, bytes, 1..2^53-1. [256 MiB] */
  maxModelBytes?: number;
  /** Your own libonnxruntime (e.g. a CUDA build). Else LOCKSTEP_ORT_LIBRARY, else onnxruntime-node's. */
  ortLibraryPath?: string;
  /** ONNX Runtime's deterministic-compute option: bit-reproducible CPU results. Off may be a few % faster. [true] */
  deterministic?: boolean;
}

/**
 * Every tensor element type ONNX Runtime 1.30 carries (docs/INFERENCE.md has the table, with
 * the agents' ABI id of each).
 */
export type TensorType =
  | 'float32' | 'float64' | 'int32' | 'int64' | 'uint8' | 'int8' | 'bool'
  | 'float16' | 'bfloat16' | 'uint16' | 'int16' | 'uint32' | 'uint64' | 'string'
  | 'float8e4m3fn' | 'float8e4m3fnuz' | 'float8e5m2' | 'float8e5m2fnuz' | 'float8e8m0'
  | 'uint4' | 'int4' | 'float4e2m1' | 'uint2' | 'int2';

/**
 * The data of a tensor of each type, as `infer` returns it (and takes it). float16 and bfloat16
 * are their raw bits in a Uint16Array (float16 inputs may also be a Float16Array, where Node
 * has one); the float8 types one byte of raw bits per element; the 4- and 2-bit types packed
 * as ONNX Runtime packs them (two or four per byte, the first in the lowest bits):
 * ceil(n × bits / 8) bytes for n elements.
 */
export interface TensorData {
  float32: Float32Array;
  float64: Float64Array;
  int32: Int32Array;
  int64: BigInt64Array;
  uint8: Uint8Array;
  int8: Int8Array;
  bool: Uint8Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  uint16: Uint16Array;
  int16: Int16Array;
  uint32: Uint32Array;
  uint64: BigUint64Array;
  string: string[];
  float8e4m3fn: Uint8Array;
  float8e4m3fnuz: Uint8Array;
  float8e5m2: Uint8Array;
  float8e5m2fnuz: Uint8Array;
  float8e8m0: Uint8Array;
  uint4: Uint8Array;
  int4: Uint8Array;
  float4e2m1: Uint8Array;
  uint2: Uint8Array;
  int2: Uint8Array;
}

/** A Float16Array (Node 24+, or a polyfill): accepted as float16 input data; its bytes are the raw bits. */
export type Float16ArrayLike = ArrayBufferView & { readonly BYTES_PER_ELEMENT: 2; readonly length: number; readonly [Symbol.toStringTag]: 'Float16Array' };

/**
 * A tensor in or out of `infer` (onnxruntime-node Tensors are accepted as inputs). As in
 * onnxruntime-node, `data` must be the typed array of `type` (`TensorData`; also
 * Uint8ClampedArray for uint8, Float16Array for float16, Int8Array for packed int4/int2) —
 * other arrays are refused with E_INVALID_ARGUMENT, never reinterpreted — and hold exactly the
 * product of `dims` elements (packed types: that many elements' bytes; else E_BAD_INPUT_SHAPE).
 * `string` data is a string[] of that many elements (UTF-8 inside; a NUL character is refused
 * with E_BAD_INPUT_VALUE).
 *
 * `TensorLike` (no argument) is the union of every type's tensor: narrow it by `type`
 * (`if (t.type === 'float32') t.data.map((v) => v * 2)`), or name the type of a model's
 * outputs once: `await rt.infer<'float32'>(id, inputs)` gives `TensorLike<'float32'>`, whose
 * `data` is a Float32Array.
 */
export type TensorLike<T extends TensorType = TensorType> = T extends TensorType ? { type: T; data: TensorData[T]; dims: number[] } : never;

/** An input of `infer`: a TensorLike, or one of the other arrays a type also accepts. */
export type TensorInput =
  | TensorLike
  | { type: 'uint8'; data: Uint8ClampedArray; dims: number[] }
  | { type: 'float16'; data: Float16ArrayLike; dims: number[] }
  | { type: 'int4' | 'int2'; data: Int8Array; dims: number[] };

/**
 * One output of `infer`: a tensor, or — for an output whose ModelInfo type is
 * `sequence<...>` — an array of tensors.
 */
export type InferOutput<T extends TensorType = TensorType> = TensorLike<T> | TensorLike<T>[];

export interface ModelInfo {
  /** SHA-256 of the model bytes: the model's identity and version. */
  id: string;
  bytes: number;
  /** Each input: a TensorType (`float16`, `string`...), in the model's order. */
  inputs: { name: string; type: string; dims: number[] }[];
  /** Each output: a TensorType, or `sequence<T>` for a sequence of tensors (dims: its tensors'). */
  outputs: { name: string; type: string; dims: number[] }[];
  /** The provider that really serves the model. */
  provider: ProviderName;
  /** Why requested providers ahead of it were not used (ONNX Runtime's messages). */
  fallbackReasons: string[];
  /** Every input's and output's first dimension is dynamic: agents' requests are batched along it. */
  batchable: boolean;
}

/** `rt.tickTimings()`: where the wall time of tickAsync calls went, µs summed (ARCHITECTURE.md, the binding). */
export interface TickTimings {
  /** tickAsync calls that settled. */
  calls: number;
  /** From tickAsync to a pool thread starting the ticks. */
  queueUs: number;
  /** The ticks themselves, on the pool thread. */
  computeUs: number;
  /** From the ticks' end to the promise settling on the JS thread (it was busy with other work, or waking up). */
  settleUs: number;
  /** From a settled tickAsync to the next tickAsync call: the JS thread's work in between (the program's, a dashboard's), or idle time. */
  betweenUs: number;
}

/** What one tick did (tick(n) and tickAsync(n): the last of the n). */
export interface TickReport {
  /**
   * The number of this tick: ticks are numbered from 0, so it is the last tick run, one less
   * than `currentTick` after it (from a fresh runtime, `tick(10)` returns `tick: 9` and
   * `currentTick` is then 10).
   */
  tick: number;
  /** Hash chaining the previous tick's hash with everything this tick did (hex). */
  hash: string;
  agentsStepped: number;
  /** Agents with trigger 'all' that waited this tick (not every running upstream agent had sent them something): they neither received nor stepped. */
  agentsWaiting: number;
  /** Time-sliced agents whose call is suspended at the end of this tick (it used up its slice and goes on next tick; rt.setFuelPerTick). */
  agentsSuspended: number;
  messagesDelivered: number;
  messagesRouted: number;
  deadLetters: number;
  faults: number;
  /** Fuel burned by all agents this tick. */
  fuel: number;
  /** Whether this tick ran on the worker pool (chosen by the amount of work; never changes results). */
  parallel: boolean;
  /** Threads this tick ran agents on (1: the calling thread alone). */
  workers: number;
  /** Inference requests agents made this tick, and the ONNX Runtime calls that served them. */
  inferenceRequests: number;
  inferenceCalls: number;
  /**
   * With a journal: the last tick whose records are on stable storage — this tick with fsync
   * 'tick', an earlier one (or none yet) with 'group', none with 'off' (until syncJournal()).
   * Absent without a journal, and while no tick is durable.
   */
  durableTick?: number;
  /**
   * The sequence number the runtime's next event will take, after these ticks: events were
   * queued (by the ticks, or by calls between them) since an earlier report exactly when this is
   * larger than that report's — a check that costs no call (drainEvents() reads them).
   */
  eventsEnd: number;
}

export type FaultKind =
  | 'trap' | 'panic' | 'fuel_exhausted' | 'deadline' | 'memory_limit' | 'host_call_violation' | 'agent_error';
export type AbiCall = 'agent_init' | 'agent_step' | 'agent_receive' | 'agent_shutdown';

export interface FaultInfo {
  kind: FaultKind;
  /** The ABI function that was running. */
  call: AbiCall;
  tick: number;
  /** The trap message, the agent's panic message, the bad pointer... */
  detail: string;
}

/** 'suspended': running, with a call that used up its time slice and goes on next tick (rt.setFuelPerTick). */
export type AgentStateName = 'running' | 'suspended' | 'preempted' | 'faulted' | 'stopped' | 'killed';

export interface AgentInfo {
  /** Never negative (see "Ids" at the top). */
  id: number;
  /** BLAKE3 hash of the module bytes (hex). */
  module: string;
  state: AgentStateName;
  fault?: FaultInfo;
  steps: number;
  messagesReceived: number;
  messagesSent: number;
  inboxLen: number;
  /** Its linear memory, bytes. A stopped agent's memory is released: this is then its size when it stopped (faulted, killed or shut down). */
  memoryBytes: number;
  /** Fuel it burned over its life (until it stopped; while it is suspended, until its suspended call started). */
  fuelConsumed: number;
  /** Its time slice: fuel per call and tick (rt.setFuelPerTick); 0: none. */
  fuelPerTick: number;
  /** While state is 'suspended': the ABI call that is suspended. Its memory cannot be read meanwhile (readMemory throws E_INVALID_ARGUMENT). */
  suspendedCall?: AbiCall;
}

export type DeadLetterReason =
  | 'recipient_faulted'
  | 'recipient_stopped'
  | 'unknown_recipient'
  | 'recipient_faulted_during_delivery'
  /** The recipient's inbox held 65,536 messages or 16 MiB (docs/ABI.md). */
  | 'recipient_inbox_full';

/** Something the runtime reports; drain them with `drainEvents()`. */
export type RuntimeEvent =
  | { type: 'spawned'; tick: number; agent: number; module: string }
  | { type: 'fault'; tick: number; agent: number; fault: FaultInfo }
  | { type: 'stopped'; tick: number; agent: number }
  | { type: 'killed'; tick: number; agent: number }
  /** A call of a time-sliced agent used up its slice: suspended, it goes on next tick (once per call). */
  | { type: 'suspended'; tick: number; agent: number; call: AbiCall }
  /** A suspended call ended (returned or faulted) after `ticks` ticks suspended. */
  | { type: 'resumed'; tick: number; agent: number; call: AbiCall; ticks: number }
  | { type: 'dead_letter'; tick: number; reason: DeadLetterReason; from: number; to: number; seq: number; kind: number }
  /** level: 1 error, 2 warn, 3 info, 4 debug, 5 trace */
  | { type: 'log'; tick: number; agent: number; level: number; text: string }
  | { type: 'module_refused'; tick: number; code: ErrorCode; detail: string }
  | { type: 'security'; tick: number; detail: string }
  | { type: 'ring_error'; tick: number; detail: string }
  /** The replay log reached `maxLogBytes` and recording stopped (the log so far is a prefix). */
  | { type: 'recording_stopped'; tick: number; detail: string }
  /** A bounded queue was full and `count` items were not kept (ARCHITECTURE.md, "Limits"). */
  | { type: 'dropped'; tick: number; queue: 'dead_letters' | 'host_messages' | 'outbound_ring'; count: number };

export interface AgentMessage {
  /** Sender id; 0 is the host (JS), INFERENCE_ID the inference service. Never negative; above 2^53 approximate. */
  from: number;
  /** Recipient id: any u64 an agent or the host addressed. Never negative; above 2^53 approximate. */
  to: number;
  /** The sender's n-th message. */
  seq: number;
  kind: number;
  priority: number;
  payload: Buffer;
}

export interface DeadLetter {
  tick: number;
  reason: DeadLetterReason;
  message: AgentMessage;
}

export interface SpawnOptions {
  /** The agent's phase among the agents of its graph level in every tick: higher priorities
   * run first, and their messages to lower-priority agents are delivered in the same tick (a
   * pipeline). At most 64 distinct priorities among live agents (E_PRIORITY_LIMIT); a
   * priority whose agents are all gone frees its place. [0] */
  priority?: number;
  /** Upstream agents: the new agent is connected downstream of each (rt.connect(id, newAgent)),
   * so it runs after them and gets what they send it in the same tick. Checked before the
   * agent is spawned (E_UNKNOWN_AGENT, E_AGENT_NOT_RUNNING, E_EDGE_LIMIT). [none] */
  after?: number[];
  /** When it receives and steps (rt.setTrigger). ['any'] */
  trigger?: Trigger;
  /** Its time slice, fuel per call and tick (rt.setFuelPerTick): checked before the agent is spawned (E_INVALID_ARGUMENT over the module's per-call budget or without fuel metering). [0: none] */
  fuelPerTick?: number;
}

/**
 * When an agent receives and steps: 'any', every tick (as without a graph); 'all', only in
 * ticks where every running upstream agent has sent it something since it last stepped (a
 * fan-in barrier: meanwhile its inbox waits, bounded as inboxes are; with no running upstream
 * agent it steps every tick).
 */
export type Trigger = 'any' | 'all';

/** An agent's place in the workflow graph. */
export interface GraphInfo {
  trigger: Trigger;
  /** 0 without upstream agents, else one more than its deepest upstream agent's: it runs in a later phase of every tick than all of them. */
  level: number;
}

export interface SendOptions {
  /** User-defined tag the agent sees. [0] */
  kind?: number;
  /** Higher is delivered first within the recipient's tick. [0] */
  priority?: number;
}

export interface RequestOptions {
  /** The request's kind: the agent sees it as `msg.kind` (its reply keeps it). [0] */
  kind?: number;
  /** Delivery priority, as in send. [0] */
  priority?: number;
  /** Ticks the agent has to reply (counted from the tick that delivers the request), 1..2^32-1; then E_REQUEST_TIMEOUT. [100] */
  timeoutTicks?: number;
}

export interface RunOptions {
  /** Ticks per second, > 0 (fractions allowed) and at most 1,000,000; omit to tick as fast as the ticks run. The rate never changes results. */
  hz?: number;
  /**
   * When to stop: a tick count (stops once `currentTick` reaches it, i.e. after the tick
   * numbered `until - 1`; at once if it already has), or a predicate called with each tick's
   * report (true stops after that tick). Omitted: until `stop()`.
   */
  until?: number | ((report: TickReport) => boolean);
  /** Called after each tick, when the runtime is free: send, drain and inspect here (while a tick runs, calls throw E_BUSY). */
  onTick?: (report: TickReport) => void;
}

export interface RunResult {
  /** Ticks this run() ran. */
  ticks: number;
  /** The last tick's report (null if it ran none). */
  report: TickReport | null;
  reason: 'until' | 'stopped';
}

/** A running `run()`. */
export interface RunHandle {
  /** Stops after the tick running now, if any; returns `done`. */
  stop(): Promise<RunResult>;
  /** Settles when the run ends: resolves with its result, rejects with the first error (a tick's, or one `until`/`onTick` threw). */
  readonly done: Promise<RunResult>;
  /** Ticks run so far. */
  readonly ticks: number;
}

export interface ReplayOptions {
  /** Worker threads for the replay (results never depend on it). */
  workers?: number;
  /**
   * Called with the ticks verified so far, every 100 ticks (by `replayAsync` on the calling
   * thread, before its promise settles). An error it throws is thrown (rejected) once the replay
   * has ended, as it was thrown, and stops further calls.
   */
  onProgress?: (ticksVerified: number) => void;
  /**
   * Publishers whose modules the replay may run (hex public keys). A log never grants itself
   * trust: a module it carries that is not signed by one of these (and by a key the recording
   * session trusted) stops the replay with E_REPLAY_UNTRUSTED. [none]
   */
  trustedKeys?: string[];
  /** Admit the unsigned modules of a log recorded in devMode. [false] */
  devMode?: boolean;
  /**
   * The snapshot a log starts from: a runtime made by `Runtime.restore()` records a log that
   * begins at its snapshot (docs/SNAPSHOT.md), and replays with it. Without it such a log
   * throws E_REPLAY_NEEDS_SNAPSHOT; another snapshot than the one it names, E_SNAPSHOT_MISMATCH.
   */
  snapshot?: Uint8Array | ArrayBuffer;
}

/**
 * Options of `Runtime.restore(snapshot, options)`: those of `new Runtime()`. The session's
 * settings (seed, fuelPerCall, memoryLimitBytes, maxAgents, deadlineMs, checkpointIntervalTicks,
 * policy, resourcePolicy) come from the snapshot: each one given is what the snapshot must have
 * (E_SNAPSHOT_MISMATCH lists every difference). workers, record, maxEvents, maxLogBytes,
 * inferenceBatching and inference are yours. trustedKeys and devMode are your trust: a module
 * of the snapshot is admitted again only if signed by a key both you and the snapshot's session
 * trust (unsigned ones: devMode here and in the session), else E_SNAPSHOT_UNTRUSTED.
 */
export interface RestoreOptions extends RuntimeOptions {
  /** The module hashes (from loadModule()) the snapshot must hold, no more and no fewer. */
  modules?: string[];
}

export interface Divergence {
  kind: 'tick_hash' | 'deep_hash' | 'spawn_id';
  /** The first tick whose hash differs. */
  tick: number;
  /** The lowest agent id whose part differs, when the log lets us tell. */
  agent?: number;
  expected: string;
  actual: string;
}

/** The tail after a journal's last complete tick: a torn final write, and the records of a tick that never completed. */
export interface TornTail {
  /** The segment file. */
  file: string;
  /** Where its last complete tick ends: recovery cuts the file there. */
  offset: number;
  /** Bytes after it. */
  bytes: number;
  /** Where an unreadable (torn) write begins, when the tail is not only whole records. */
  tornAt?: number;
}

export interface RecoverOptions {
  /** Worker threads (results never depend on it). [number of CPUs] */
  workers?: number;
  /** Publishers whose modules may run (as replay(): a journal never grants itself trust). [none] */
  trustedKeys?: string[];
  /** Admit the unsigned modules of a devMode session. [false] */
  devMode?: boolean;
  /** The recovered runtime's journal: it goes on in the same directory, in a new segment. ['group'] */
  fsync?: FsyncPolicy;
  /** [64 MiB] */
  segmentBytes?: number;
  /** The recovered runtime's ticks between automatic snapshots; 0: none. [1000] */
  snapshotIntervalTicks?: number;
  /** Keep an in-memory log too (replayLog(), stopRecording()): the journal's records so far, then on. E_INVALID_CONFIG if they exceed maxLogBytes. [false] */
  record?: boolean;
  maxLogBytes?: number;
  maxEvents?: number;
  inferenceBatching?: boolean;
  inference?: InferenceOptions;
  /** Called with the ticks replayed so far, every 100 ticks. An error it throws is thrown once the recovery has ended (the recovered runtime is closed). */
  onProgress?: (ticksReplayed: number) => void;
}

/** A journal's snapshot file, and what is wrong with it (`problem` null: whole, and the session's state at its tick). */
export interface SnapshotProblem {
  file: string;
  tick: number;
  problem: string | null;
}

/** What Runtime.recover() did. */
export interface RecoveryReport {
  /** The recovered runtime's currentTick (ticks run); the last tick recovered is `tick - 1`. It is above every durableTick reported before the crash. */
  tick: number;
  /** Ticks replayed (and verified) from the journal. */
  ticksReplayed: number;
  checkpointsVerified: number;
  /** Bytes cut off the end: a torn final write, and the records of a tick that never completed. */
  bytesDiscarded: number;
  /** Where the cut was made. */
  cut: TornTail | null;
  /** The snapshot recovery started from (null: the journal's beginning). `ticksReplayed` is `tick - snapshotTick`. */
  snapshotTick: number | null;
  /** Newer snapshots recovery could not use (damaged, not the journal's state), newest first: it fell back past them. Left in place. */
  snapshotsSkipped: SnapshotProblem[];
  /** Files removed: snapshots a crash left half-written (.tmp), and snapshots past the recovered tick. */
  snapshotsRemoved: string[];
  /** Segment files read. */
  segments: number;
  /** Records replayed, the Config record included. */
  records: number;
  /** Set when the journal's lock was taken over from a process that did not close it (killed, crashed). */
  note: string | null;
}

/** One file inspectLog() read. */
export interface LogFile {
  path: string;
  bytes: number;
  records: number;
  /** The tick its first records belong to. */
  firstTick: number;
  /** Ticks that end in it. */
  ticks: number;
}

/** A session's settings, from its log's Config record. */
export interface SessionInfo {
  seed: number;
  fuelPerCall: number;
  memoryLimitBytes: number;
  maxAgents: number;
  deadlineMs: number;
  checkpointIntervalTicks: number;
  devMode: boolean;
  trustedKeys: string[];
  resourcePolicy: 'clamp' | 'refuse';
  /** The operator policy (Capabilities) as JSON. */
  policyJson: string;
}

/** What a replay log file or journal directory holds (inspectLog(); nothing replayed). */
export interface LogSummary {
  /** A journal directory (else one log file). */
  journal: boolean;
  files: LogFile[];
  bytes: number;
  /** Records, the Config record included. */
  records: number;
  /** Ticks (TickEnd records); a journal's count stops at its last complete tick. */
  ticks: number;
  firstTick?: number;
  lastTick?: number;
  /** Agents spawned. */
  agents: number;
  /** Modules (each recorded once). */
  modules: number;
  models: number;
  sends: number;
  kills: number;
  shutdowns: number;
  checkpoints: number;
  inferResults: number;
  /** Changes of the workflow graph: connect, disconnect and trigger records. */
  graphChanges: number;
  /** Records too large to write (a replay stops there). */
  gaps: number;
  /** The log ends with its End record (never a journal). */
  ended: boolean;
  /** A journal's tail after its last complete tick (recovery cuts it off). */
  torn?: TornTail;
  config?: SessionInfo;
  /** A journal's snapshot files (their bytes are in `bytes` too). */
  snapshots: { tick: number; bytes: number }[];
  /** The journal's id (hex), when it has one. */
  id?: string;
  /** Where the session was forked from. */
  lineage?: Lineage;
}

/** What verifyLog() found in a journal directory (for a log file it returns replay()'s ReplayReport). */
export interface JournalVerifyReport {
  /** No divergence in what was verified. */
  ok: boolean;
  /** Always false: a journal has no End record (it is a session that may go on). */
  complete: boolean;
  ticksVerified: number;
  checkpointsVerified: number;
  finalHash: string;
  divergence?: Divergence;
  /** Ticks the journal holds whole. */
  tick: number;
  segments: number;
  records: number;
  /** The tail after the last complete tick (a recovery cuts it off). */
  cut?: TornTail;
  /** Every snapshot file of the journal, checked against the replayed state at its tick. */
  snapshots: SnapshotProblem[];
}

export interface ReplayReport {
  /**
   * No divergence in what was verified. It does not say that the whole session was verified:
   * check `complete` too (`ok && complete` means "the whole recorded session, exactly").
   */
  ok: boolean;
  /**
   * The log ended with its End record (written by `stopRecording()` and each `replayLog()`
   * snapshot) and the replay agrees with all of it: tick and record counts, final hash, and the
   * digest of the config and of the inputs after the last tick (which no tick hash covers). `false`
   * for a prefix (a log cut at a record boundary), for a log with a gap (a record too large to
   * record), and when a divergence stopped the replay early.
   */
  complete: boolean;
  ticksVerified: number;
  checkpointsVerified: number;
  finalHash: string;
  divergence?: Divergence;
}

/** A wasm agent module: a path, or its bytes. */
export type ModuleSource = string | URL | Uint8Array | ArrayBuffer;
export type Payload = Uint8Array | ArrayBuffer | ArrayBufferView | string | null | undefined;

export class Runtime implements Disposable, AsyncDisposable {
  /** Throws E_INVALID_CONFIG naming the option for a wrong type or an out-of-range value; with a journal, E_JOURNAL_IO, E_JOURNAL_LOCKED or E_JOURNAL_EXISTS. */
  constructor(options?: RuntimeOptions);
  /**
   * A runtime rebuilt from `snapshot()`'s bytes, in this process or another (docs/SNAPSHOT.md):
   * its next tick is the snapshot's next tick, and with the same inputs every tick hash and deep
   * hash from there on equal the original's. With `record` (default true) it records a log that
   * starts at the snapshot: `replay(log, { snapshot })`. Agent models: load them again
   * (loadModel) and call registerAgentModel, which returns the slots they had. Throws
   * E_SNAPSHOT_CORRUPT (with the byte offset), E_SNAPSHOT_VERSION, E_SNAPSHOT_MISMATCH,
   * E_SNAPSHOT_UNTRUSTED, E_INVALID_CONFIG.
   */
  static restore(snapshot: Uint8Array | ArrayBuffer, options?: RestoreOptions): Runtime;
  /**
   * The runtime's complete state between ticks (docs/SNAPSHOT.md): configuration, modules, every
   * agent's memory, globals, host state, inbox and counters, the messages waiting for the next
   * tick, undrained messages and dead letters, the tick and the hash chain's head. Not in it:
   * undrained events, attached rings, the log. Identical memory pages are stored once,
   * compressed. Throws E_SNAPSHOT_UNSUPPORTED for a running agent whose module mutates its table;
   * E_BUSY during a tickAsync.
   */
  snapshot(): Buffer;
  /**
   * Continues the session whose journal a killed (or closed) runtime left in `dir`: takes its
   * lock, validates every segment, replays them verifying every tick and checkpoint hash, cuts
   * off a torn final write (and a tick that never completed), and returns a running runtime that
   * journals on into `dir`, with a report. It reaches at least the last tick reported durable
   * before the crash. What the replayed ticks sent to the host is not delivered again; models
   * must be loaded again (docs/JOURNAL.md). Throws E_JOURNAL_LOCKED (a live runtime has it),
   * E_JOURNAL_NOT_FOUND, E_JOURNAL_CORRUPT (file and offset: damage a torn write cannot explain;
   * the journal is left as it was), E_JOURNAL_VERSION, E_JOURNAL_IO, E_REPLAY_UNTRUSTED.
   */
  static recover(dir: string, options?: RecoverOptions): { runtime: Runtime; report: RecoveryReport };
  /**
   * Writes and syncs the journal up to the last complete tick now, whatever its fsync policy;
   * returns the durable tick (null before the first tick, or without a journal). E_JOURNAL_IO.
   */
  syncJournal(): number | null;
  /**
   * Frees the runtime now — its agents, the address space reserved for their memories, its
   * rings and its inference engine — instead of at garbage collection (a process that creates
   * many runtimes should close them, or create them with `using`). Idempotent. Every other
   * method then throws E_CLOSED, and requests still waiting reject with E_CLOSED. During a
   * tickAsync it is safe: those ticks finish (their promise settles) and the runtime is freed
   * then.
   */
  close(): void;
  /** `using rt = new Runtime(...)`: calls close() at the end of the scope. */
  [Symbol.dispose](): void;
  /** `await using rt = new Runtime(...)`: stops a run(), waits for a running tickAsync, then close(). */
  [Symbol.asyncDispose](): Promise<void>;
  /** Whether close() was called (or a panic inside a tickAsync closed it: then E_CLOSED says so). */
  readonly closed: boolean;
  /** Compiles and validates a module (once per distinct bytes); returns its hash. Throws E_INVALID_MODULE, E_MISSING_EXPORT, E_ABI_MISMATCH, E_UNKNOWN_IMPORT, E_IO. */
  loadModule(source: ModuleSource): string;
  /** Spawns an agent from a module hash, a path or bytes and runs its agent_init. A fault in init does not throw: the agent exists, faulted, and a fault event says why. Throws E_QUEUE_FULL while the messages waiting for the next tick (host sends, what agent_init and agent_shutdown sent) fill their queue: tick, then spawn again. */
  spawn(source: ModuleSource, options?: SpawnOptions): number;
  /** Spawns `count` agents. If one fails (e.g. E_AGENT_LIMIT), the error's `spawnedIds` lists the agents spawned before it. */
  spawnMany(source: ModuleSource, count: number, options?: SpawnOptions): number[];
  /** Queues a message from the host (id 0), delivered at the next tick. To a dead agent it lands in the dead-letter queue. Throws E_UNKNOWN_AGENT, E_MESSAGE_TOO_LARGE; E_INVALID_ARGUMENT for an id that is not a number, or 0 (the host itself). */
  send(to: number, payload: Payload, options?: SendOptions): void;
  /**
   * Adds the edge from → to to the workflow graph (a DAG): from the next tick on, `to` runs
   * after `from` and every other agent it depends on, and gets what they send it in the same
   * tick; agents of one level run in parallel. Returns whether the edge is new (an existing
   * one records nothing). Recorded, journaled, replayed and in snapshots. Throws E_DAG_CYCLE
   * naming the cycle it would close, E_UNKNOWN_AGENT, E_AGENT_NOT_RUNNING, E_EDGE_LIMIT
   * (1,048,576 edges). An agent's edges go when it stops.
   */
  connect(from: number, to: number): boolean;
  /** Removes the edge from → to; returns whether it existed. */
  disconnect(from: number, to: number): boolean;
  /** Sets when the agent receives and steps ('any' or 'all'; see Trigger). Recorded when it changes. */
  setTrigger(id: number, trigger: Trigger): void;
  /**
   * Gives an agent a time slice (docs/ABI.md, "Time slicing"): a call of it that burns
   * `fuelPerTick` fuel in one tick is suspended — not killed — and goes on next tick exactly
   * where it stopped, until it ends or burns its per-call budget (fuelPerCall). 0 removes it.
   * Recorded and replayed. E_INVALID_ARGUMENT without fuel metering, over the per-call budget,
   * or while a call of the agent is suspended.
   */
  setFuelPerTick(id: number, fuelPerTick: number): void;
  /** Every edge of the workflow graph, ascending, as [from, to] pairs. */
  edges(): Array<[number, number]>;
  /** An agent's trigger and level in the workflow graph. */
  graphInfo(id: number): GraphInfo;
  /**
   * Runs n ticks (default 1; an integer in 1..2^32-1) on the calling thread and returns the
   * last one's report: `report.tick` is that tick's number, so after `tick(n)` `currentTick`
   * is `report.tick + 1`. With a journal, E_JOURNAL_IO once it cannot be written (a full disk...):
   * that tick is not durable, and every tick and input after it is refused the same way.
   */
  tick(n?: number): TickReport;
  /**
   * `tick(n)` off the event loop: the ticks run on libuv's thread pool and the promise settles
   * with the same report (same hashes; a tick never depends on the thread that runs it).
   * Meanwhile every other call on this runtime throws E_BUSY ("a tickAsync is running; await
   * it first"); close() is safe. A panic inside rejects with E_INTERNAL and closes the runtime.
   */
  tickAsync(n?: number): Promise<TickReport>;
  /**
   * Where the wall time of this runtime's tickAsync calls went, in µs summed over its life (a
   * loop of `await tickAsync()` is queue + compute + settle + between, call after call).
   * Readable while a tickAsync runs.
   */
  tickTimings(): TickTimings;
  /**
   * Ticks (tickAsync(1) each) at a steady rate until `until` or `stop()`; see RunOptions. Between
   * ticks the runtime is free (onTick is the place to send and drain); during one, calls throw
   * E_BUSY. One run() at a time per runtime (E_BUSY).
   */
  run(options?: RunOptions): RunHandle;
  /**
   * Sends `payload` (at most MAX_PAYLOAD_BYTES − 16 bytes) to `agent` as a request and resolves
   * with its reply: an AgentMessage whose payload is the reply's body. The agent answers with
   * the SDK's `reply(&msg, body)` (docs/ABI.md, "Requests": an SDK convention over ordinary
   * messages, recorded and replayed like any other). While requests wait, request() ticks
   * (tickAsync(1) at a time) unless a run() or a tickAsync is ticking already; requests made
   * while a tick runs are sent right after it. Rejects with E_AGENT_FAULTED (error.fault says
   * how), E_DEAD_LETTER (error.reason), E_AGENT_NOT_RUNNING (it stopped without replying),
   * E_REQUEST_TIMEOUT (no reply within timeoutTicks), E_QUEUE_FULL (4,096 requests wait already:
   * the limit per runtime), E_RING (rings attached: replies would go to the outbound ring),
   * E_CLOSED, and send's errors. Messages to the host that are not its reply stay for
   * drainMessages() (so does a reply that comes after its timeout).
   */
  request(agent: number, payload: Payload, options?: RequestOptions): Promise<AgentMessage>;
  /** Calls agent_shutdown, then the agent is stopped; its undelivered messages are dead-lettered. Throws E_QUEUE_FULL (the agent untouched) while the messages waiting for the next tick fill their queue, like spawn: tick, then shut down again. */
  shutdown(id: number): void;
  /** Stops an agent at once, without agent_shutdown. */
  kill(id: number): void;
  /** An agent's state, counters, memory and fuel (a stopped agent keeps the values it had when it stopped). */
  inspect(id: number): AgentInfo;
  /** Every agent id ever spawned, in order. */
  agents(): number[];
  /** The number of ticks run so far: the next tick's number (one more than the last report's `tick`). */
  readonly currentTick: number;
  /** The id (hex) of the journal this runtime writes (what a fork's lineage names), or null without a journal. */
  readonly journalId: string | null;
  /** The directory of the journal this runtime writes, or null without a journal. */
  readonly journalDir: string | null;
  /** The last tick whose journal records are known to be on stable storage, without syncing: what a crash now would keep (null without a journal, or while none is). E_BUSY during a tickAsync. */
  readonly durableTick: number | null;
  /** Makes later ticks use `workers` threads (1..=the runtime's workers), whatever the scaling says; null returns to it. Results never depend on it. */
  setWorkers(workers: number | null): void;
  /** The last tick's hash (zeros before the first tick). */
  stateHash(): string;
  /** Hash of every agent's memory and globals; recorded as a checkpoint the replay verifies. */
  deepHash(): { tick: number; hash: string };
  drainEvents(): RuntimeEvent[];
  eventsDropped(): number;
  drainDeadLetters(): DeadLetter[];
  /**
   * Messages agents sent to the host (id 0), in routing order (at most 1,048,576 or 256 MiB wait;
   * past that they are dropped, with a `dropped` event). After attachRings() they go to the
   * outbound ring instead and this returns none. Replies to requests still waiting settle their
   * request() instead.
   */
  drainMessages(): AgentMessage[];
  /**
   * Starts the live dashboard for this runtime (docs/DASHBOARD.md): a WebSocket snapshot
   * server and its page on `server.url`, loopback by default (any other address needs a
   * token). Snapshots are taken between ticks and never stall them; controls go through this
   * API, so a session driven from the dashboard is recorded and replays like any other. One
   * server per runtime at a time (E_BUSY); closing the runtime closes it.
   */
  serve(options?: ServeOptions): Promise<DashboardServer>;
  /** Starts recording; only before the first spawn/send/tick (E_RECORDING_MID_SESSION). */
  startRecording(): void;
  /** Stops recording and returns the log (format: docs/REPLAY.md). A second call throws E_NOT_RECORDING (recording already stopped). A journal goes on. */
  stopRecording(): Buffer;
  /** The log so far; recording continues. */
  replayLog(): Buffer;
  readonly recording: boolean;
}

/**
 * Options of `rt.serve(options)`: the live dashboard (docs/DASHBOARD.md). Every field is
 * optional; defaults in brackets.
 */
export interface ServeOptions {
  /** Address to listen on. Any address that is not loopback needs `token`. ['127.0.0.1'] */
  host?: string;
  /** Port, 0..65535; 0 picks a free one (read it from `server.port` or `server.url`). [0] */
  port?: number;
  /**
   * Required off loopback. `true` makes a random one. Clients present it as the WebSocket
   * subprotocol `lockstep.token.<token>` (the page reads it from its URL's fragment,
   * `server.url`) or as `Authorization: Bearer <token>`; compared in constant time.
   * 16..256 characters of A-Z a-z 0-9 _ -. [none]
   */
  token?: string | true;
  /** Origins (scheme://host:port) allowed besides the server's own; a request with no Origin (not a browser) is allowed. [[]] */
  allowedOrigins?: string[];
  /** Host header names accepted besides loopback names and the listening address (DNS-rebinding guard). [[]] */
  allowedHosts?: string[];
  /** Allow clients to kill, shut down, restart (spawn a new agent of the same module) agents and send messages, through the Runtime's API (recorded). [false] */
  controls?: boolean;
  /** Allow clients to play, pause, step and set the tick rate of the server's clock (a run() it owns). [true] */
  clock?: boolean;
  /** Labels for module hashes, shown instead of the hash: { [moduleHash]: 'gossip' }. */
  moduleNames?: Record<string, string>;
  /** Time travel's journal (docs/DASHBOARD.md, "Time travel"): a directory, or one with the trust to open it; false: none. [the runtime's own journal, if it has one] */
  journal?: string | { dir: string; trustedKeys?: string[]; devMode?: boolean } | false;
  /** Also write the latest summary to this file (fixed 256-byte layout with a seqlock, for another process to map: docs/DASHBOARD.md). */
  summaryFile?: string;
  /** Most often the summary file is rewritten, ms. [100] */
  summaryIntervalMs?: number;
  /** Most clients connected at once (more are closed with 1013). [64] */
  maxClients?: number;
  /** Largest frame a client may send, bytes, ≥ 256 (larger: closed with 1009). [16384] */
  maxPayload?: number;
  /** Most bytes of replies waiting to be sent to one client (past it: closed with 4000). [4 MiB] */
  maxBufferedBytes?: number;
  /** Requests per second per client (token bucket), and the burst allowed. [50, 100] */
  requestsPerSecond?: number;
  requestBurst?: number;
  /** Most requests waiting, over all clients, for a running tick to end. [256] */
  maxDeferred?: number;
  /** The summary is snapshot at most this often, ms, however many clients ask. [100] */
  minSnapshotMs?: number;
  /** The agent table (O(agents) to take, and to sort) is snapshot at most this often, ms. [1000] */
  minTableMs?: number;
  /**
   * The most of the wall time snapshots may take, 0..1 (0: no limit). A snapshot runs between
   * ticks and delays the next one by its cost: one that cost c ms is not retaken for c / budget
   * ms (at 100,000 agents the agent table costs tens of ms: refreshed every few seconds). [0.02]
   */
  snapshotBudget?: number;
  /** Bounded histories: ticks (tick time, messages), seconds (throughput), hashes, events. [1200, 300, 512, 2000] */
  historyTicks?: number;
  historySeconds?: number;
  hashChain?: number;
  eventHistory?: number;
  /** WebSocket ping interval, ms (0: none); a client that misses a pong is cut off. [30000] */
  pingIntervalMs?: number;
}

/** The dashboard server's clock: whether its run() is ticking the runtime, and at what rate (null: flat out). */
export interface DashboardClock {
  playing: boolean;
  hz: number | null;
  /** Why the last run() stopped with an error, if it did. */
  error: string | null;
}

/** What the server's limits did so far (docs/DASHBOARD.md, "Limits"). */
export interface DashboardStats {
  connections: number;
  /** Upgrades refused, by reason. */
  refused: Record<string, number>;
  /** Clients the server closed, by the close code it sent (4000: too slow, 1008: rate, 1003: binary, 1001: closing). */
  dropped: Record<string, number>;
  /** Connections closed, by the close code seen (1006: the client never answered the close, e.g. it does not read). */
  closed: Record<string, number>;
  /** The most bytes ever waiting to be sent to one client, and now. */
  maxBufferedSeen: number;
  maxBufferedNow: number;
  /** The most requests ever waiting for a tick to end, and now. */
  maxDeferredSeen: number;
  deferred: number;
  requests: number;
  clients: number;
  eventsKept: number;
  ticksKept: number;
  hashesKept: number;
  /** Snapshots taken so far and what the last and the slowest cost, ms. */
  snapshots: { summary: { count: number; lastMs: number; maxMs: number }; table: { count: number; lastMs: number; maxMs: number } };
  /** Time travel (its cursor runs in a worker thread): requests handed to it, cursor reopens, requests waiting or running now and at most (16 at most), and requests dropped because their client left before their turn. */
  travel: { requests: number; reopens: number; waiting: number; maxWaiting: number; dropped: number };
  limits: { maxBufferedBytes: number; maxReplyBytes: number; maxDeferred: number };
}

/** A running dashboard server (`await rt.serve()`). Emits 'tick' (report) after every tick it sees, between ticks. */
export interface DashboardServer {
  /** The page, e.g. http://127.0.0.1:41234/ (with #token=... when a token is set). */
  readonly url: string;
  /** The WebSocket endpoint (subprotocol `lockstep.v1`). */
  readonly wsUrl: string;
  readonly port: number;
  readonly host: string;
  readonly token: string | null;
  /** Clients connected now. */
  readonly clients: number;
  readonly clock: DashboardClock;
  /**
   * Ticks the runtime with `rt.run({ hz })` (no hz: flat out) until `pause()`. E_BUSY if another run() drives it.
   * play, pause and step run one at a time, in call order (at most 16 wait: E_BUSY past it); E_CLOSED once the server closes.
   */
  play(options?: { hz?: number }): Promise<DashboardClock>;
  /** Stops the server's run() after the tick running now; resolves once that run has ended. */
  pause(): Promise<DashboardClock>;
  /** While paused: `ticks` (1..1000) ticks with tickAsync; the last one's report. */
  step(ticks?: number): Promise<TickReport>;
  stats(): DashboardStats;
  /** Closes every client (1001), stops the clock, stops listening, detaches from the runtime (which then costs nothing more). */
  close(): Promise<void>;
  on(event: 'tick', listener: (report: TickReport) => void): this;
  once(event: 'tick', listener: (report: TickReport) => void): this;
  off(event: 'tick', listener: (report: TickReport) => void): this;
}

/** Re-runs a recorded session, verifying every tick hash and checkpoint. Throws E_REPLAY_CORRUPT (with the byte offset) for a damaged or truncated log. */
export function replay(log: Uint8Array | ArrayBuffer, options?: ReplayOptions): ReplayReport;
/**
 * `replay` off the event loop: the replay runs on libuv's thread pool (the log is copied first)
 * and the promise settles with the same report, or rejects with the same LockstepError.
 * `onProgress` runs on the calling thread, every 100 ticks, each call before the promise settles.
 */
export function replayAsync(log: Uint8Array | ArrayBuffer, options?: ReplayOptions): Promise<ReplayReport>;
/** What a replay log file or a journal directory holds (records by kind, ticks, agents, modules, bytes), read without replaying it. Also `npx lockstep log inspect`. */
export function inspectLog(path: string): LogSummary;
/**
 * Verifies a replay log file (as replay()) or a journal directory (every segment replayed, every
 * hash compared, nothing changed; a journal being written is read as far as it is complete).
 * Also `npx lockstep log verify`.
 */
export function verifyLog(path: string, options?: ReplayOptions): JournalVerifyReport | ReplayReport;

export interface CursorOptions {
  /** Worker threads of the replay (results never depend on it). [1] */
  workers?: number;
  /** Publishers whose modules may run (a log never grants itself trust). [none] */
  trustedKeys?: string[];
  /** Admit the unsigned modules of a devMode session. [false] */
  devMode?: boolean;
  /** Trust the session's own trusted keys and devMode instead of `trustedKeys`/`devMode`: only for journals your program wrote. [false] */
  trustJournal?: boolean;
  /** For a log recorded by a restored runtime: the snapshot it starts from. */
  snapshot?: Uint8Array | ArrayBuffer;
  /** While replaying forward, keep a snapshot in memory every this many ticks where the journal has none (bounded at 512 MiB), so later seeks replay at most this many ticks; 0: never. [1000] */
  snapshotIntervalTicks?: number;
  /**
   * Another thread's way to stop a long seek: while `interrupt[0]` is not 0 (set it with
   * `Atomics.store`), a seek, next, prev or messagesAt that would replay a tick (or restore a
   * snapshot) stops first with E_INTERRUPTED, the cursor left at the tick it had reached. Must
   * be an Int32Array over a SharedArrayBuffer. [none]
   */
  interrupt?: Int32Array;
}

/** What one seek did. */
export interface SeekReport {
  tick: number;
  /** Ticks replayed (and verified) to get there. */
  ticksReplayed: number;
  /** The snapshot it restored first; null when it went on from where it was. */
  fromSnapshot: number | null;
}

/** Where a forked session comes from. */
export interface Lineage {
  /** The parent journal's id (hex); null when forked from a log or a snapshot. */
  journal: string | null;
  /** The parent's tick at the fork (the fork's first tick). */
  tick: number;
  /** The parent's state hash then. */
  hash: string;
}

/** What one agent received and sent in one tick. */
export interface AgentTickMessages {
  agent: number;
  /** Delivered to its agent_receive, in delivery order. */
  received: AgentMessage[];
  /** Sent, in the order it sent them. */
  sent: AgentMessage[];
}

/** A read-only cursor over a recorded session (docs/JOURNAL.md, "Time travel"). Every tick it passes is replayed and verified. */
export class JournalCursor {
  private constructor();
  /** Frees the cursor's session state and snapshot cache now instead of at garbage collection (hundreds of MB for a large session). Idempotent; every other method then throws E_CLOSED. */
  close(): void;
  readonly closed: boolean;
  /** Ticks run at the cursor: the state before tick `tick` runs. */
  readonly tick: number;
  readonly firstTick: number;
  /** Ticks the session holds whole: the cursor visits firstTick..=endTick. */
  readonly endTick: number;
  /** The journal's id (hex), null for a log without one. */
  readonly id: string | null;
  readonly lineage: Lineage | null;
  snapshotTicks(): number[];
  skippedSnapshots(): SnapshotProblem[];
  /** Moves to `tick` from the nearest snapshot at or before it (or from where it is): at most one snapshot interval of replay. E_INVALID_ARGUMENT outside firstTick..=endTick. */
  seek(tick: number): SeekReport;
  /** One tick forward; false at the end. */
  next(): boolean;
  /** One tick back; false at the first tick. */
  prev(): boolean;
  inspect(id: number): AgentInfo;
  agents(): number[];
  stateHash(): string;
  deepHash(): { tick: number; hash: string };
  /** `length` bytes (at most 16 MiB) of agent `id`'s memory from `offset`, at the cursor's tick. E_INVALID_ARGUMENT for a stopped agent or a range outside its memory. */
  readMemory(id: number, offset: number, length: number): Buffer;
  /** What each agent received and sent in tick `tick` (agents in id order); the cursor ends at `tick + 1`. */
  messagesAt(tick: number): AgentTickMessages[];
  /** A live runtime continuing from the cursor's tick; with `journal`, into a new journal whose lineage names this session. */
  fork(options?: RestoreOptions): Runtime;
}

/** Opens a journal directory (a path), a replay log file (a path) or a replay log (its bytes) for time travel. */
export function openJournal(source: string | URL | Uint8Array | ArrayBuffer, options?: CursorOptions): JournalCursor;

/**
 * The example agents shipped with the package (dist/agents): counter (answers kind 1 with
 * its step count), ping-pong, gossip, echo (sends every message back; answers requests with
 * their body), flood (sends as much as it may), classifier (asks a model; docs/INFERENCE.md),
 * and the adversarial adv-spin, adv-membomb, adv-trap, adv-panic-init.
 */
export type ExampleAgentName =
  | 'counter' | 'ping-pong' | 'gossip' | 'echo' | 'flood' | 'classifier'
  | 'adv-spin' | 'adv-membomb' | 'adv-trap' | 'adv-panic-init' | 'chatter' | 'wordcount';
/** Path of an example agent shipped with the package. Another name: E_INVALID_ARGUMENT listing the valid ones. */
export function exampleAgent(name: ExampleAgentName | (string & {})): string;

/** Every code a LockstepError can carry (stable: match on these, not on messages). */
/** Options of `loadLanguageModel`. */
export interface LanguageModelOptions {
  /** A path or the bytes of the ONNX model. */
  model: ModuleSource;
  /**
   * How text becomes tokens: 'bytes' (ids 0..255 are the bytes; the test model's), 'none'
   * (prompts as token ids; tokens come back without text), or your own tokenizer for
   * `generate()` (agents then pass token ids). ['bytes']
   */
  tokenizer?: 'bytes' | 'none' | { encode(text: string): number[]; decode(ids: number[]): string };
  /** Token put before every text prompt; null: none. [256 with 'bytes', else none] */
  bos?: number | null;
  /** End-of-sequence token(s): generation ends there (not delivered). [257 with 'bytes', else none] */
  eos?: number | number[];
  /** Token at padded positions (masked: its value changes nothing). [258 with 'bytes', else 0] */
  pad?: number;
  /** Most tokens of one sequence, prompt and generated, 1..32768. [1024] */
  maxContext?: number;
  /** Most generate() calls decoding together, 1..256. [32] */
  maxBatch?: number;
}

/** What a language model is. */
export interface LanguageModelInfo {
  /** SHA-256 of the model bytes. */
  id: string;
  layers: number;
  heads: number;
  headDim: number;
  /** Element type of the KV cache: 'float32' or 'float16'. */
  kvType: string;
  /**
   * How the KV cache grows, found from the model's graph: 'concat' (Hugging Face Optimum's
   * layout: every step makes a new `present.*`, a copy of the whole cache) or 'in-place' (a
   * model whose attention is ONNX Runtime's GroupQueryAttention, as onnxruntime-genai exports:
   * one buffer per layer, bound as both `past_key_values.*` and `present.*`).
   */
  kvLayout: 'concat' | 'in-place';
  /** The vocabulary (-1 when the model leaves it open). */
  vocab: number;
  tokenizer: 'bytes' | 'none';
  bos?: number;
  eos: number[];
  pad: number;
  maxContext: number;
  /** KV cache bytes per token of one sequence. */
  kvBytesPerToken: number;
}

/** How agents use a language model. */
export interface AgentLanguageModelOptions {
  /** Decode steps at the end of each tick: each generation gets at most this many tokens per tick (one more in the tick it joins), 1..1024. [8] */
  tokensPerTick?: number;
  /** Most agents' generations decoding together (the rest wait, in request order), 1..256. [64] */
  maxBatch?: number;
}

/** Options of `generate`. */
export interface GenerateOptions {
  /** The language model's id (needed when more than one is loaded). */
  model?: string;
  /** Most tokens, 1..4096. [64] */
  maxTokens?: number;
  /** 0: greedy (most likely token); else sampled at this temperature, ..100. [0] */
  temperature?: number;
  /** Keep the k most likely tokens; 0: all. [0] */
  topK?: number;
  /** Keep the most likely tokens up to this probability mass, (0, 1]. [1] */
  topP?: number;
  /** Generation ends once the text contains one of these (at most 8, 1..64 bytes each); the tokens that complete it are delivered. */
  stop?: string | string[];
  /** The sampler's seed, 0..2^53-1. [0] */
  seed?: number;
  /** Most decode steps per trip to the thread pool, 1..4096. [16] */
  stepsPerCall?: number;
}

/** One generated token. */
export interface GeneratedToken {
  token: number;
  /** Its text ('' for special tokens; a multi-byte character comes with its last byte). */
  text: string;
}

/** The iterator `generate` returns. */
export interface GenerateIterator extends AsyncGenerator<GeneratedToken, void, undefined> {
  /** Once done: why it ended ('stop', 'eos', 'max_tokens', 'context_full'). A failed model call throws E_INFERENCE instead. */
  readonly finish: 'stop' | 'eos' | 'max_tokens' | 'context_full' | 'failed' | null;
}

export type ErrorCode =
  // Arguments and configuration
  | 'E_INVALID_CONFIG'
  | 'E_INVALID_ARGUMENT'
  | 'E_IO'
  // Modules
  | 'E_INVALID_MODULE'
  | 'E_MISSING_EXPORT'
  | 'E_ABI_MISMATCH'
  | 'E_UNKNOWN_IMPORT'
  | 'E_INSTANTIATION'
  | 'E_MODULE_LIMIT'
  // Agents and messages
  | 'E_UNKNOWN_AGENT'
  | 'E_AGENT_NOT_RUNNING'
  | 'E_MESSAGE_TOO_LARGE'
  | 'E_AGENT_LIMIT'
  | 'E_AGENT_IDS_EXHAUSTED'
  | 'E_PRIORITY_LIMIT'
  | 'E_QUEUE_FULL'
  // Workflow graphs (connect, spawn(..., { after }))
  /** The edge would close a cycle (the message names it, e.g. 3 → 1 → 2 → 3). */
  | 'E_DAG_CYCLE'
  /** The graph holds its 1,048,576 edges. */
  | 'E_EDGE_LIMIT'
  // Requests (request())
  /** The agent faulted before it replied (error.fault). */
  | 'E_AGENT_FAULTED'
  /** The request was dead-lettered (error.reason). */
  | 'E_DEAD_LETTER'
  /** No reply within timeoutTicks. */
  | 'E_REQUEST_TIMEOUT'
  // Recording and replay
  | 'E_RECORDING_MID_SESSION'
  | 'E_NOT_RECORDING'
  | 'E_REPLAY_CORRUPT'
  | 'E_REPLAY_VERSION'
  | 'E_REPLAY_MISSING_MODULE'
  /** The log runs a module the replay's trustedKeys/devMode do not cover. */
  | 'E_REPLAY_UNTRUSTED'
  /** The log starts from a snapshot (a restored runtime recorded it): pass it, replay(log, { snapshot }). */
  | 'E_REPLAY_NEEDS_SNAPSHOT'
  // Snapshots (docs/SNAPSHOT.md)
  /** The snapshot is truncated, damaged or forged (the message names the byte offset). */
  | 'E_SNAPSHOT_CORRUPT'
  /** Another format version. */
  | 'E_SNAPSHOT_VERSION'
  /** Not the session the options expect (every difference listed), or not the snapshot a log starts from. */
  | 'E_SNAPSHOT_MISMATCH'
  /** A running agent holds state a snapshot cannot store (its module mutates its table). */
  | 'E_SNAPSHOT_UNSUPPORTED'
  /** The snapshot holds a module the restore's trustedKeys/devMode do not cover. */
  | 'E_SNAPSHOT_UNTRUSTED'
  // The journal (docs/JOURNAL.md)
  /** The journal could not be written or read (a full disk, a read-only directory...): the runtime refuses every tick and input after it. */
  | 'E_JOURNAL_IO'
  /** Another runtime (this process or another: the message names its pid) has the journal open. */
  | 'E_JOURNAL_LOCKED'
  /** Damage a torn final write cannot explain; the message names the file and byte offset. */
  | 'E_JOURNAL_CORRUPT'
  | 'E_JOURNAL_VERSION'
  /** A new runtime's journal directory already holds a journal (recover it instead). */
  | 'E_JOURNAL_EXISTS'
  /** recover(): the directory holds no journal segment. */
  | 'E_JOURNAL_NOT_FOUND'
  // Security (signing, manifests, policy)
  | 'E_UNSIGNED'
  | 'E_UNTRUSTED_KEY'
  | 'E_BAD_SIGNATURE'
  | 'E_BAD_KEY'
  | 'E_BAD_MANIFEST'
  | 'E_DUPLICATE_SECTION'
  | 'E_UNDECLARED_IMPORT'
  | 'E_RESOURCE_LIMIT'
  // Inference
  | 'E_ORT_NOT_FOUND'
  | 'E_ORT_LOAD'
  | 'E_UNKNOWN_MODEL'
  | 'E_MODEL_TOO_LARGE'
  | 'E_INVALID_MODEL'
  | 'E_MODEL_UNSUPPORTED_OPERATOR'
  | 'E_MODEL_UNSUPPORTED_VERSION'
  | 'E_BAD_INPUT_NAME'
  | 'E_BAD_INPUT_TYPE'
  | 'E_BAD_INPUT_SHAPE'
  | 'E_BAD_INPUT_VALUE'
  | 'E_UNSUPPORTED_TYPE'
  | 'E_INFERENCE'
  /** loadLanguageModel: not a decoder in the Optimum layout, or options that do not fit it. */
  | 'E_NOT_A_LANGUAGE_MODEL'
  /** generate: an empty or too long prompt, a token outside the vocabulary, a text prompt without a tokenizer. */
  | 'E_BAD_PROMPT'
  // Rings
  | 'E_RING'
  | 'E_RING_TIMEOUT'
  // The runtime and the package
  /** The runtime was closed. */
  | 'E_CLOSED'
  /** A journal cursor's seek stopped because its `interrupt` word was set. */
  | 'E_INTERRUPTED'
  /** A tickAsync is running on this runtime (await it first), or a run() drives it already. */
  | 'E_BUSY'
  /** A panic inside lockstep, caught: a bug, please report it; the process carries on. */
  | 'E_INTERNAL'
  /** Thrown by require('lockstep') (a plain Error with this code): no native binary for this platform. */
  | 'E_NO_NATIVE_BINARY'
  // The CLI (npx lockstep)
  /** A command-line usage error. */
  | 'E_USAGE'
  /** `keygen --out` / `new agent`: the file or directory exists already (keygen: --force replaces it). */
  | 'E_EXISTS';

export class LockstepError extends Error {
  /** The stable code (the native addon sets it on its errors; nothing is parsed out of the message). */
  code: ErrorCode;
  /** Set by spawnMany when it fails part-way: the agents it spawned before the error. */
  spawnedIds?: number[];
  /** Set on request()'s errors: the request's id. */
  requestId?: number;
  /** E_AGENT_FAULTED: how the agent faulted. */
  fault?: FaultInfo;
  /** E_DEAD_LETTER: why the request was dead-lettered. */
  reason?: DeadLetterReason;
}

export const ABI_VERSION: number;
export const MAX_PAYLOAD_BYTES: number;
export const HOST_ID: 0;
/** The sender id of the inference service (u64::MAX), as a JS number: 2^64 (approximate, like every id above 2^53). */
export const INFERENCE_ID: number;

// ----- Shared-memory rings: declared in ring.d.ts (ring.js, also importable alone as 'lockstep/ring.js')

export {
  RingPushOptions,
  RingProducer,
  RingRecord,
  RingConsumer,
  createRingBuffer,
  RingError,
  RING_TYPES,
  RING_HEADER_BYTES,
} from './ring.js';
import type { RingProducer, RingConsumer } from './ring.js';

export interface AttachedRings {
  /**
   * JS → agents: messages enter at the start of the next tick, in ring order, and are recorded.
   * A ring has ONE producer: one thread pushes into it (this one, or the worker you hand
   * `inboundBuffer` to); two threads pushing at once corrupt it. A runtime has one inbound ring.
   */
  inbound: RingProducer;
  /** agents → JS: messages to the host (drainMessages() then returns none), copies of each tick's events, one tick record per tick. */
  outbound: RingConsumer;
  /** Hand these to a worker_thread: new RingProducer(inboundBuffer). */
  inboundBuffer: SharedArrayBuffer;
  outboundBuffer: SharedArrayBuffer;
}

export interface Runtime {
  /**
   * Loads an ONNX model (path or bytes; the same bytes load once). Throws E_INVALID_MODEL (not
   * ONNX, or malformed), E_MODEL_UNSUPPORTED_OPERATOR (valid, but this ONNX Runtime build cannot
   * run one of its operators), E_MODEL_UNSUPPORTED_VERSION (opset or IR version too new),
   * E_UNSUPPORTED_TYPE (an input that is not a tensor; an optional or map output), E_MODEL_TOO_LARGE,
   * E_ORT_NOT_FOUND, E_IO.
   */
  loadModel(source: ModuleSource): ModelInfo;
  /** loadModel off the event loop: the file is read asynchronously and the model validated (ONNX Runtime loaded, the first time) on libuv's thread pool. Same result and errors. */
  loadModelAsync(source: ModuleSource): Promise<ModelInfo>;
  modelInfo(id: string): ModelInfo;
  listModels(): ModelInfo[];
  unloadModel(id: string): boolean;
  /**
   * Runs a model; small models inline, larger ones on libuv's thread pool. `T`: the type of the
   * model's outputs, when you know it (`infer<'float32'>(...)`: `data` is a Float32Array). `O`:
   * an output's form — a tensor, unless the model has `sequence<...>` outputs (they are arrays
   * of tensors): `infer<'float32', InferOutput<'float32'>>(...)`.
   */
  infer<T extends TensorType = TensorType, O extends InferOutput<T> = TensorLike<T>>(id: string, inputs: Record<string, TensorInput>): Promise<Record<string, O>>;
  /** Runs a model on the calling thread. */
  inferSync<T extends TensorType = TensorType, O extends InferOutput<T> = TensorLike<T>>(id: string, inputs: Record<string, TensorInput>): Record<string, O>;
  /** Makes a loaded model available to agents; returns the slot they pass to `infer`. */
  registerAgentModel(id: string): number;
  /** Path of the libonnxruntime in use. */
  inferenceLibrary(): string;
  /**
   * Loads a decoder-only ONNX language model in the layout Hugging Face Optimum and
   * onnxruntime-genai export (docs/INFERENCE.md, "Language models"). E_NOT_A_LANGUAGE_MODEL
   * (naming what is missing) for any other model.
   */
  loadLanguageModel(options: LanguageModelOptions): LanguageModelInfo;
  /** Makes a language model available to agents' `generate` import; returns its slot. */
  registerAgentLanguageModel(id: string, options?: AgentLanguageModelOptions): number;
  /**
   * Generates from `prompt` (text, or token ids), outside the tick clock: an async iterator of
   * tokens. Every generate() running at once on one model decodes in one batch. The same
   * prompt, options and seed give the same tokens. Breaking out of the loop cancels it.
   */
  generate(prompt: string | number[] | Uint32Array, options?: GenerateOptions): GenerateIterator;
  /** Counts of the generate() calls on a language model (the only one loaded by default). */
  languageModelStats(id?: string): { decodeCalls: number; prefillCalls: number; tokens: number; rebuilds: number; kvTransfers: number };
  /**
   * Creates and attaches the two rings (capacities: powers of two, default 4 MiB each), once per
   * runtime. From then on messages to the host go to the outbound ring (drainMessages() returns
   * none, and request() is refused), and the inbound ring has a single producer thread.
   */
  attachRings(options?: { inboundBytes?: number; outboundBytes?: number }): AttachedRings;
  /** Writes records waiting for room into the outbound ring; returns how many still wait. */
  flushOutbound(): number;
  /** Why the inbound ring stopped being read (a corrupted index or record), or null. */
  inboundRingError(): string | null;
}

export interface LogLine {
  level: 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** lockstep::runtime, lockstep::agent, lockstep::inference, lockstep::security, ... */
  target: string;
  message: string;
  /** The agent the line is about (its own log line, its fault, an unknown model slot it used...), when there is one. */
  agent?: number;
  /** The tick it happened in, when known. */
  tick?: number;
}

/**
 * Routes runtime logs to `sink` at `level` and above (default info); null turns them off.
 * PROCESS-WIDE, not per runtime: one level and one queue of lines for the whole process, worker
 * threads included (the last setLogger of any thread sets the level; a line goes to the sink of
 * the thread whose call into lockstep takes it first): set the logger in one thread. Tell
 * runtimes apart by `agent`/`tick`, or use each runtime's `drainEvents()` (its `log` and
 * `fault` events), which are per runtime. Lines are cut at 4 KiB; at most 10,000 lines or
 * 8 MiB wait (older ones are dropped and counted).
 * Lines are delivered after each call into a runtime, on the calling thread. A sink that
 * throws never makes a runtime call throw (the call ran; its result is returned): its errors
 * are counted by `logSinkErrors()` and reported once per `setLogger` as a process warning
 * (code E_LOG_SINK).
 */
export function setLogger(sink: ((line: LogLine) => void) | null, options?: { level?: 'error' | 'warn' | 'info' | 'debug' | 'trace' }): void;
/** Delivers pending log lines to the sink now (they are also delivered after every runtime call). Sink errors are counted, not thrown. */
export function flushLogs(): void;
/** How many times the log sink threw (since the process started). */
export function logSinkErrors(): number;
