#!/usr/bin/env node
// Reads a lockstep summary file (rt.serve({ summaryFile }), docs/DASHBOARD.md "The summary
// file") from another process, with the seqlock protocol: read the sequence number (even),
// copy the 256 bytes, read it again (unchanged) — else retry. Node has no mmap; pread on the
// file reads the same page cache a mapping would.
//
//   node examples/dashboard/summary-reader.mjs <file>            one snapshot, as JSON
//   node examples/dashboard/summary-reader.mjs <file> --watch    one line per second
import { openSync, readSync, closeSync } from 'node:fs';

const SEQ = 8;
const BYTES = 256;

/** One consistent snapshot, or null if the writer was mid-write `tries` times in a row. */
export function readSnapshot(fd, tries = 10_000) {
  const seq = Buffer.alloc(8);
  const b = Buffer.alloc(BYTES);
  for (let i = 0; i < tries; i++) {
    readSync(fd, seq, 0, 8, SEQ);
    const before = seq.readBigUInt64LE(0);
    if (before & 1n) continue; // odd: a write is under way
    readSync(fd, b, 0, BYTES, 0);
    readSync(fd, seq, 0, 8, SEQ);
    if (seq.readBigUInt64LE(0) !== before) continue; // changed while we copied: retry
    if (b.toString('latin1', 0, 4) !== 'LSDS') throw new Error('not a lockstep summary file');
    const version = b.readUInt32LE(4);
    if (version !== 1) throw new Error(`layout version ${version}; this reader knows 1`);
    const u = (o) => Number(b.readBigUInt64LE(o));
    const f = (o) => b.readDoubleLE(o);
    return {
      seq: Number(before),
      retries: i,
      writtenAtMs: u(16),
      pid: u(24),
      live: (b.readUInt32LE(32) & 1) === 1,
      tick: u(40),
      agents: { total: u(48), running: u(56), preempted: u(64), faulted: u(72), stopped: u(80), killed: u(88) },
      queues: { events: u(96), deadLetters: u(104), hostMessages: u(112), pendingInputs: u(120) },
      messagesRoutedLastTick: u(128),
      messagesRoutedTotal: u(136),
      faultsTotal: u(144),
      tickP50Us: f(152),
      tickP99Us: f(160),
      ticksPerSecond: f(168),
      messagesPerSecond: f(176),
      hash: b.toString('hex', 184, 216),
      inferenceRequests: u(216),
      inferenceCalls: u(224),
    };
  }
  return null;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: summary-reader.mjs <summary file> [--watch]');
    process.exit(2);
  }
  const fd = openSync(file, 'r');
  if (!process.argv.includes('--watch')) {
    console.log(JSON.stringify(readSnapshot(fd), null, 2));
    closeSync(fd);
  } else {
    setInterval(() => {
      const s = readSnapshot(fd);
      if (!s) return console.log('(writer busy)');
      console.log(`tick ${s.tick}  agents ${s.agents.running}/${s.agents.total} running  ${s.ticksPerSecond.toFixed(1)} ticks/s  ${Math.round(s.messagesPerSecond)} msg/s  p50 ${s.tickP50Us.toFixed(0)} µs  ${s.live ? '' : '(server closed)'}`);
    }, 1000);
  }
}
