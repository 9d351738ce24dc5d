'use strict';
// The summary file (docs/DASHBOARD.md, "The summary file"): the latest runtime summary in a
// fixed 256-byte little-endian layout that another process maps (mmap) or reads, guarded by
// a seqlock: the writer makes the sequence number odd, writes the body, makes it even again;
// a reader copies the body between two reads of an even, unchanged sequence number, so it
// never sees a torn snapshot. The writer uses pwrite on the file, whose pages are the ones
// every process that maps it sees (one page cache), so no mapping is needed on this side.

const fs = require('node:fs');

const MAGIC = 0x5344534c; // "LSDS" read as a little-endian u32
const LAYOUT_VERSION = 1;
const FILE_BYTES = 256;
const SEQ_OFFSET = 8;
const BODY_OFFSET = 16;

/** The body's fields: [name, offset, type]. u64 values are written from JS numbers (exact below 2^53). */
const FIELDS = [
  ['writtenAtMs', 16, 'u64'],
  ['pid', 24, 'u64'],
  ['flags', 32, 'u32'],
  ['tick', 40, 'u64'],
  ['agents', 48, 'u64'],
  ['running', 56, 'u64'],
  ['preempted', 64, 'u64'],
  ['faulted', 72, 'u64'],
  ['stopped', 80, 'u64'],
  ['killed', 88, 'u64'],
  ['eventsQueued', 96, 'u64'],
  ['deadLettersQueued', 104, 'u64'],
  ['hostMessagesQueued', 112, 'u64'],
  ['pendingInputs', 120, 'u64'],
  ['messagesRoutedLastTick', 128, 'u64'],
  ['messagesRoutedTotal', 136, 'u64'],
  ['faultsTotal', 144, 'u64'],
  ['tickP50Us', 152, 'f64'],
  ['tickP99Us', 160, 'f64'],
  ['ticksPerSecond', 168, 'f64'],
  ['messagesPerSecond', 176, 'f64'],
  ['hash', 184, 'hash32'],
  ['inferenceRequests', 216, 'u64'],
  ['inferenceCalls', 224, 'u64'],
];
/** flags: bit 0 the writer is live (cleared when its server closes). */
const FLAG_LIVE = 1;

class SummaryFileWriter {
  constructor(path) {
    this.path = path;
    this.fd = fs.openSync(path, 'w+', 0o644);
    this.buf = Buffer.alloc(FILE_BYTES);
    this.buf.writeUInt32LE(MAGIC, 0);
    this.buf.writeUInt32LE(LAYOUT_VERSION, 4);
    this.seq = 0n;
    this.seqBuf = Buffer.alloc(8);
    fs.writeSync(this.fd, this.buf, 0, FILE_BYTES, 0);
  }

  /** Writes one snapshot: { field: value } (missing fields are 0). */
  write(values) {
    const b = this.buf;
    b.fill(0, BODY_OFFSET);
    for (const [name, offset, type] of FIELDS) {
      const x = values[name];
      if (type === 'u64') b.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(Number(x) || 0))), offset);
      else if (type === 'u32') b.writeUInt32LE((Number(x) || 0) >>> 0, offset);
      else if (type === 'f64') b.writeDoubleLE(Number(x) || 0, offset);
      else if (type === 'hash32' && typeof x === 'string' && /^[0-9a-f]{64}$/.test(x)) b.write(x, offset, 32, 'hex');
    }
    // Seqlock: odd while the body changes, even (and 2 higher) once it is whole.
    this.seq += 1n;
    this.seqBuf.writeBigUInt64LE(this.seq);
    fs.writeSync(this.fd, this.seqBuf, 0, 8, SEQ_OFFSET);
    fs.writeSync(this.fd, b, BODY_OFFSET, FILE_BYTES - BODY_OFFSET, BODY_OFFSET);
    this.seq += 1n;
    this.seqBuf.writeBigUInt64LE(this.seq);
    fs.writeSync(this.fd, this.seqBuf, 0, 8, SEQ_OFFSET);
  }

  /** From a dashboard summary (observer.js). */
  writeSummary(s, live = true) {
    this.write({
      writtenAtMs: Date.now(),
      pid: process.pid,
      flags: live ? FLAG_LIVE : 0,
      tick: s.tick,
      agents: s.agents.total,
      running: s.agents.running,
      preempted: s.agents.preempted,
      faulted: s.agents.faulted,
      stopped: s.agents.stopped,
      killed: s.agents.killed,
      eventsQueued: s.queues.events,
      deadLettersQueued: s.queues.deadLetters,
      hostMessagesQueued: s.queues.hostMessages,
      pendingInputs: s.queues.pendingInputs,
      messagesRoutedLastTick: s.lastTick ? s.lastTick.messagesRouted : 0,
      messagesRoutedTotal: s.totals.messagesRouted,
      faultsTotal: s.totals.faults,
      tickP50Us: s.tickTime.p50,
      tickP99Us: s.tickTime.p99,
      ticksPerSecond: s.rate.ticksPerSecond,
      messagesPerSecond: s.rate.messagesPerSecond,
      hash: s.lastTick ? s.lastTick.hash : '',
      inferenceRequests: s.totals.inferenceRequests,
      inferenceCalls: s.totals.inferenceCalls,
    });
  }

  close() {
    if (this.fd === null) return;
    fs.closeSync(this.fd);
    this.fd = null;
  }
}

/** Decodes a whole 256-byte snapshot (the body as written; `seq` from the header). */
function decode(bytes) {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.readUInt32LE(0) !== MAGIC) throw new Error('not a lockstep summary file (bad magic)');
  const version = b.readUInt32LE(4);
  if (version !== LAYOUT_VERSION) throw new Error(`summary file layout ${version}; this reader knows ${LAYOUT_VERSION}`);
  const out = { version, seq: Number(b.readBigUInt64LE(SEQ_OFFSET)) };
  for (const [name, offset, type] of FIELDS) {
    if (type === 'u64') out[name] = Number(b.readBigUInt64LE(offset));
    else if (type === 'u32') out[name] = b.readUInt32LE(offset);
    else if (type === 'f64') out[name] = b.readDoubleLE(offset);
    else out[name] = b.toString('hex', offset, offset + 32);
  }
  out.live = (out.flags & FLAG_LIVE) !== 0;
  return out;
}

/**
 * Reads a consistent snapshot with the seqlock protocol (pread here; a mapping works the same):
 * sequence even, copy, sequence unchanged. Retries up to `tries` times; null if the writer
 * was always mid-write.
 */
function readSummaryFile(path, tries = 1000) {
  const fd = fs.openSync(path, 'r');
  try {
    const seqBuf = Buffer.alloc(8);
    const copy = Buffer.alloc(FILE_BYTES);
    for (let i = 0; i < tries; i++) {
      fs.readSync(fd, seqBuf, 0, 8, SEQ_OFFSET);
      const before = seqBuf.readBigUInt64LE(0);
      if (before % 2n === 1n) continue;
      fs.readSync(fd, copy, 0, FILE_BYTES, 0);
      fs.readSync(fd, seqBuf, 0, 8, SEQ_OFFSET);
      if (seqBuf.readBigUInt64LE(0) === before) {
        copy.writeBigUInt64LE(before, SEQ_OFFSET);
        return decode(copy);
      }
    }
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

module.exports = { SummaryFileWriter, readSummaryFile, decode, FIELDS, FILE_BYTES, MAGIC, LAYOUT_VERSION, SEQ_OFFSET, BODY_OFFSET, FLAG_LIVE };
