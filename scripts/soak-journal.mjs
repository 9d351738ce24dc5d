#!/usr/bin/env node
// The journal's crash soak (docs/JOURNAL.md): hundreds of SIGKILLs of a child running a
// journaled session at random moments, each followed by a recovery that must reach past the
// child's last durable tick with the hashes of an uninterrupted run (the cycle of
// __test__/fixtures/journal-crash.mjs, which the crash test in __test__/journal.test.mjs runs a
// few times). The journal grows across cycles, each child continuing the recovered session; a
// fresh journal is begun every --per-journal kills. Children snapshot every --snapshot-interval
// ticks (7; 0: never), so kills land during snapshot writes too and recoveries start from them.
//
//   node scripts/soak-journal.mjs [--kills 300] [--per-journal 25] [--fsync tick|group|off] [--max-delay-ms 200] [--seed 1] [--tear] [--snapshot-interval 7]
//
// --tear (with --fsync off, where nothing is durable) also tears the journal between each kill
// and its recovery as a power loss could: cuts up to 1 KiB off the last segment, or appends
// random bytes; the recovery must cut back to a complete tick and agree with the reference.
//
// Prints one line per 50 kills and a summary (what BENCHMARKS.md records); exits 1 at the first
// failure, naming the cycle and keeping the journal directory for a look.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crashCycle, referenceHashes } from '../__test__/fixtures/journal-crash.mjs';

function option(name, dflt) {
  const i = process.argv.indexOf(name);
  return i < 0 ? dflt : process.argv[i + 1];
}
const kills = Number(option('--kills', 300));
const perJournal = Number(option('--per-journal', 25));
const fsync = option('--fsync', 'tick');
const maxDelayMs = Number(option('--max-delay-ms', 200));
const tearing = process.argv.includes('--tear');
const snapshotIntervalTicks = Number(option('--snapshot-interval', 7));
if (tearing && fsync !== 'off') {
  console.error('soak-journal: --tear models the loss of what was not synced: use it with --fsync off');
  process.exit(2);
}
let seed = Number(option('--seed', 1));
// A small deterministic PRNG (mulberry32), so a failing run can be repeated with its seed.
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const base = mkdtempSync(join(tmpdir(), 'lockstep-soak-'));
const ref = referenceHashes();
const started = Date.now();
const stats = { kills: 0, cut: 0, bytesDiscarded: 0, maxDiscarded: 0, aheadOfDurable: 0, maxAhead: 0, segments: 0, tick: 0, maxTick: 0, fromSnapshot: 0, snapshotsSkipped: 0, snapshotsRemoved: 0 };
try {
  for (let i = 0; i < kills; i++) {
    const dir = join(base, `journal-${Math.floor(i / perJournal)}`);
    let r;
    try {
      r = await crashCycle(dir, ref, assert, { fsync, maxDelayMs, random, tear: tearing, snapshotIntervalTicks });
    } catch (e) {
      console.error(`soak-journal: cycle ${i + 1} of ${kills} failed (journal kept in ${dir}): ${e.stack || e}`);
      process.exit(1);
    }
    stats.kills++;
    const { report, durable } = r;
    if (report.bytesDiscarded > 0) stats.cut++;
    if (report.snapshotTick !== null) stats.fromSnapshot++;
    stats.snapshotsSkipped += report.snapshotsSkipped.length;
    stats.snapshotsRemoved += report.snapshotsRemoved.length;
    stats.bytesDiscarded += report.bytesDiscarded;
    stats.maxDiscarded = Math.max(stats.maxDiscarded, report.bytesDiscarded);
    // Ticks recovered past the last one the child had reported durable (written, in the page cache).
    const ahead = report.tick - 1 - durable;
    stats.aheadOfDurable += ahead;
    stats.maxAhead = Math.max(stats.maxAhead, ahead);
    stats.segments = report.segments;
    stats.tick = report.tick + 3;
    stats.maxTick = Math.max(stats.maxTick, stats.tick);
    if ((i + 1) % 50 === 0) console.log(`  ${i + 1} kills: journal at tick ${stats.tick}, ${stats.segments} segments; ${stats.cut} recoveries cut a tail so far`);
  }
} finally {
  ref.close();
}
rmSync(base, { recursive: true, force: true });
const seconds = ((Date.now() - started) / 1000).toFixed(0);
console.log(`soak-journal: ${stats.kills} kills (fsync ${fsync}${tearing ? ', journal torn after each' : ''}, up to ${maxDelayMs} ms after the first tick), every recovery ok in ${seconds} s; ` +
  `${Math.ceil(kills / perJournal)} journals of ${perJournal} kills each, reaching tick ${stats.maxTick}; ${stats.cut} recoveries cut a tail ` +
  `(${stats.bytesDiscarded} bytes in all, at most ${stats.maxDiscarded}); ${stats.fromSnapshot} started from a snapshot (every ${snapshotIntervalTicks} ticks), ` +
  `skipping ${stats.snapshotsSkipped} and removing ${stats.snapshotsRemoved} (half-written or past the recovered tick); recovered ${(stats.aheadOfDurable / stats.kills).toFixed(2)} ticks past the last reported durable tick on average (at most ${stats.maxAhead})`);
