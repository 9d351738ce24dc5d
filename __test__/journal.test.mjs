// The on-disk journal from JS (docs/JOURNAL.md): the `journal` option and its checks,
// report.durableTick, the lock between two runtimes, Runtime.recover() and its report,
// inspectLog()/verifyLog(), the CLI's `log inspect`, `log verify` and `recover`, and a crash
// test: a child killed with SIGKILL at random moments, recovered every time.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, appendFileSync, statSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { crashCycle, referenceHashes } from './fixtures/journal-crash.mjs';

const require = createRequire(import.meta.url);
const { Runtime, LockstepError, inspectLog, verifyLog, replay, openJournal, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const session = require('./fixtures/journal-session.cjs');
const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'bin', 'lockstep.js');
const tmp = (what) => mkdtempSync(join(tmpdir(), `lockstep-journal-${what}-`));
const trust = { trustedKeys: [EXAMPLES_PUBLIC_KEY] };

/** A journaled session of `ticks` ticks in a new directory, closed; returns the directory. */
function journaled(ticks, journal = {}) {
  const dir = join(tmp('session'), 'journal');
  const rt = new Runtime({ ...session.OPTIONS, journal: { dir, fsync: 'tick', segmentBytes: 8192, ...journal } });
  session.start(rt);
  for (let t = 0; t < ticks; t++) session.step(rt, t);
  rt.close();
  return dir;
}

test('the journal option is checked: E_INVALID_CONFIG naming the field', () => {
  const dir = join(tmp('options'), 'j');
  for (const [journal, field] of [
    ['/tmp/x', 'option journal'],
    [{}, 'option journal.dir'],
    [{ dir: '' }, 'option journal.dir'],
    [{ dir, fsync: 'always' }, 'option journal.fsync'],
    [{ dir, segmentBytes: 100 }, 'option journal.segmentBytes'],
    [{ dir, segmentBytes: 1.5 }, 'option journal.segmentBytes'],
    [{ dir, sync: 'tick' }, 'unknown key "sync"'],
  ]) {
    assert.throws(() => new Runtime({ journal }), (e) => e instanceof LockstepError && e.code === 'E_INVALID_CONFIG' && e.message.includes(field), JSON.stringify(journal));
  }
  for (const [options, field] of [[{ fsync: 'sometimes' }, 'option fsync'], [{ workers: 0 }, 'option workers'], [{ onProgress: 1 }, 'option onProgress'], [{ bogus: 1 }, 'bogus']]) {
    assert.throws(() => Runtime.recover(dir, options), (e) => e.code === 'E_INVALID_CONFIG' && e.message.includes(field), JSON.stringify(options));
  }
  assert.throws(() => Runtime.recover(''), (e) => e.code === 'E_INVALID_ARGUMENT' && e.message.includes('dir'));
});

test('report.durableTick: every tick with fsync tick, none with off until syncJournal(); without a journal, absent', () => {
  const dir = join(tmp('durable'), 'j');
  const rt = new Runtime({ ...session.OPTIONS, journal: { dir, fsync: 'tick' } });
  session.start(rt);
  for (let t = 0; t < 5; t++) assert.equal(session.step(rt, t).durableTick, t);
  assert.equal(rt.syncJournal(), 4);
  rt.close();
  const off = new Runtime({ ...session.OPTIONS, journal: { dir: join(tmp('off'), 'j'), fsync: 'off' } });
  session.start(off);
  for (let t = 0; t < 5; t++) assert.equal(session.step(off, t).durableTick, undefined);
  assert.equal(off.syncJournal(), 4);
  assert.equal(session.step(off, 5).durableTick, 4);
  off.close();
  const none = new Runtime(session.OPTIONS);
  session.start(none);
  assert.equal('durableTick' in session.step(none, 0), false);
  assert.equal(none.syncJournal(), null);
  none.close();
});

test('two runtimes cannot open one journal: E_JOURNAL_LOCKED names the pid; a closed journal is E_JOURNAL_EXISTS for a new runtime and recovers', () => {
  const dir = join(tmp('lock'), 'j');
  const rt = new Runtime({ ...session.OPTIONS, journal: { dir } });
  session.start(rt);
  session.step(rt, 0);
  assert.throws(() => new Runtime({ ...session.OPTIONS, journal: { dir } }), (e) => e.code === 'E_JOURNAL_LOCKED' && e.message.includes(`pid ${process.pid}`));
  assert.throws(() => Runtime.recover(dir, trust), (e) => e.code === 'E_JOURNAL_LOCKED');
  rt.close();
  assert.throws(() => new Runtime({ ...session.OPTIONS, journal: { dir } }), (e) => e.code === 'E_JOURNAL_EXISTS' && e.message.includes('Runtime.recover'));
  const { runtime, report } = Runtime.recover(dir, trust);
  assert.deepEqual({ ...report }, {
    tick: 1, ticksReplayed: 1, checkpointsVerified: 0, bytesDiscarded: 0, cut: null, snapshotTick: null, snapshotsSkipped: [], snapshotsRemoved: [], segments: 1, records: report.records, note: null,
  });
  assert.equal(runtime.currentTick, 1);
  runtime.close();
  assert.throws(() => Runtime.recover(join(dir, 'nowhere'), trust), (e) => e.code === 'E_JOURNAL_IO');
  assert.throws(() => Runtime.recover(tmp('empty'), trust), (e) => e.code === 'E_JOURNAL_NOT_FOUND');
  // A journal never grants itself trust.
  assert.throws(() => Runtime.recover(dir), (e) => e.code === 'E_REPLAY_UNTRUSTED');
});

test('recover() cuts a torn tail, reports it, and goes on like the uninterrupted run; record: true keeps the whole log in memory', () => {
  const dir = journaled(40);
  const last = readdirSync(dir).filter((f) => f.endsWith('.lslog')).sort().at(-1);
  const size = statSync(join(dir, last)).size;
  appendFileSync(join(dir, last), Buffer.from([4, 200, 0, 0, 0, 1, 2, 3])); // a Send record cut short
  const ref = referenceHashes();
  const progress = [];
  const { runtime, report } = Runtime.recover(dir, { ...trust, record: true, onProgress: (n) => progress.push(n) });
  assert.equal(report.tick, 40);
  assert.equal(report.bytesDiscarded, 8);
  assert.deepEqual(report.cut, { file: join(dir, last), offset: size, bytes: 8, tornAt: size });
  assert.equal(statSync(join(dir, last)).size, size);
  assert.ok(report.segments >= 3, `segments: ${report.segments}`);
  const hashes = ref.upTo(45);
  for (let t = 40; t < 45; t++) assert.equal(session.step(runtime, t).hash, hashes[t]);
  const r = replay(runtime.replayLog(), trust);
  assert.ok(r.ok && r.complete && r.ticksVerified === 45, JSON.stringify(r));
  runtime.close();
  ref.close();
  assert.deepEqual(progress, []); // every 100 ticks: 40 ticks report none
});

test('inspectLog() and verifyLog() read journals and log files; a damaged byte is E_JOURNAL_CORRUPT naming the file and offset', () => {
  const dir = journaled(120, { segmentBytes: 4096 });
  const s = inspectLog(dir);
  assert.equal(s.journal, true);
  assert.equal(s.ticks, 120);
  assert.equal(s.firstTick, 0);
  assert.equal(s.lastTick, 119);
  assert.equal(s.agents, 20 + 3);
  assert.equal(s.modules, 4);
  assert.ok(s.files.length >= 3);
  assert.equal(s.bytes, s.files.reduce((a, f) => a + f.bytes, 0));
  assert.equal(s.config.seed, 5);
  const progress = [];
  const v = verifyLog(dir, { ...trust, onProgress: (n) => progress.push(n) });
  assert.ok(v.ok && !v.complete && v.ticksVerified === 120 && v.tick === 120, JSON.stringify(v));
  assert.deepEqual(progress, [100]);
  // The first segment is a replay log by itself (a prefix).
  const first = join(dir, 'journal-000001.lslog');
  const f = verifyLog(first, trust);
  assert.ok(f.ok && !f.complete);
  assert.equal(inspectLog(first).journal, false);
  // A flipped byte in the middle of a segment.
  const second = join(dir, 'journal-000002.lslog');
  const bytes = readFileSync(second);
  bytes[200] ^= 0x40;
  writeFileSync(second, bytes);
  for (const fn of [() => verifyLog(dir, trust), () => inspectLog(dir), () => Runtime.recover(dir, trust)]) {
    assert.throws(fn, (e) => e.code === 'E_JOURNAL_CORRUPT' && e.message.includes('journal-000002.lslog') && /at byte \d+/.test(e.message), fn.toString());
  }
  assert.throws(() => verifyLog(join(dir, 'nothing-here')), (e) => e.code === 'E_IO');
});

test('the CLI: log inspect, log verify (progress on stderr, exit 1 on a divergence) and recover', () => {
  const dir = journaled(150);
  const run = (...args) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  const inspect = run('log', 'inspect', dir);
  assert.equal(inspect.status, 0, inspect.stderr);
  assert.match(inspect.stdout, /^journal .*: \d+ files, [\d,]+ bytes/);
  assert.match(inspect.stdout, /ticks 150 \(0\.\.149\), agents 24, modules 4/);
  const json = JSON.parse(run('log', 'inspect', dir, '--json').stdout);
  assert.equal(json.ticks, 150);
  const verify = run('log', 'verify', dir, '--trust', EXAMPLES_PUBLIC_KEY);
  assert.equal(verify.status, 0, verify.stderr);
  assert.match(verify.stdout, /^ok: 150 ticks and 6 checkpoints verified, final hash [0-9a-f]{64}; a journal: 150 complete ticks/);
  assert.match(verify.stderr, /lockstep log verify: 100 \/ 150 ticks \(66%\)/);
  const untrusted = run('log', 'verify', dir);
  assert.equal(untrusted.status, 2);
  assert.match(untrusted.stderr, /E_REPLAY_UNTRUSTED/);
  const last = readdirSync(dir).filter((f) => f.endsWith('.lslog')).sort().at(-1);
  appendFileSync(join(dir, last), Buffer.alloc(5));
  const recovered = run('recover', dir, '--trust', EXAMPLES_PUBLIC_KEY);
  assert.equal(recovered.status, 0, recovered.stderr);
  assert.match(recovered.stdout, /recovered .*: 150 ticks \(150 replayed and verified, 6 checkpoints\)/);
  assert.match(recovered.stdout, new RegExp(`cut off 5 bytes after the last complete tick at ${last}:`));
  assert.equal(inspectLog(dir).torn, undefined, 'cut off on disk');
  // A tick hash forged with a valid CRC is a divergence: verify exits 1 and says where.
  const file = join(dir, last);
  const b = readFileSync(file);
  const crc32 = (buf) => {
    let c = ~0;
    for (const x of buf) {
      c ^= x;
      for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
    }
    return ~c >>> 0;
  };
  let pos = 64;
  for (; pos < b.length; pos++) {
    const len = b.readUInt32LE(pos + 1);
    if (b[pos] === 7 && len >= 44 && pos + 9 + len <= b.length && crc32(b.subarray(pos, pos + 5 + len)) === b.readUInt32LE(pos + 5 + len)) break;
  }
  const len = b.readUInt32LE(pos + 1);
  b[pos + 13] ^= 1;
  b.writeUInt32LE(crc32(b.subarray(pos, pos + 5 + len)), pos + 5 + len);
  writeFileSync(file, b);
  const diverged = run('log', 'verify', dir, '--trust', EXAMPLES_PUBLIC_KEY);
  assert.equal(diverged.status, 1, diverged.stderr);
  assert.match(diverged.stdout, /^DIVERGED at tick \d+ \(tick_hash/);
  const refused = run('recover', dir, '--trust', EXAMPLES_PUBLIC_KEY);
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /E_JOURNAL_CORRUPT: journal is corrupt in .* at byte \d+: tick \d+ does not replay to its recorded hash/);
  assert.equal(run('log', 'frobnicate', dir).status, 2);
});

test('a full disk: tick() throws E_JOURNAL_IO naming the file, and every tick (sync or async) and input after it is refused', async (t) => {
  const mountpoint = tmp('full');
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mountpoint]);
  if (mounted.status !== 0) {
    t.skip(`cannot mount a tmpfs (needs root and permission to mount): ${mounted.stderr}`);
    return;
  }
  try {
    const rt = new Runtime({ ...session.OPTIONS, journal: { dir: join(mountpoint, 'j'), fsync: 'tick' } });
    session.start(rt);
    let error;
    for (let tick = 0; tick < 1000 && !error; tick++) {
      try {
        session.step(rt, tick);
      } catch (e) {
        error = e;
      }
    }
    assert.ok(error instanceof LockstepError, String(error));
    assert.equal(error.code, 'E_JOURNAL_IO');
    assert.match(error.message, /journal-000001\.lslog: appending to the journal: .*\(the disk is full\)\. .*Runtime\.recover\(dir\)/);
    const at = rt.currentTick;
    assert.throws(() => rt.tick(), (e) => e.code === 'E_JOURNAL_IO');
    await assert.rejects(rt.tickAsync(), (e) => e instanceof LockstepError && e.code === 'E_JOURNAL_IO');
    assert.throws(() => rt.send(17, 'x'), (e) => e.code === 'E_JOURNAL_IO');
    assert.throws(() => rt.syncJournal(), (e) => e.code === 'E_JOURNAL_IO');
    assert.equal(rt.currentTick, at, 'no tick ran');
    assert.equal(rt.inspect(17).id, 17, 'the runtime can still be read');
    rt.close();
  } finally {
    spawnSync('umount', [mountpoint]);
  }
});

test('a killed process (SIGKILL at random moments) recovers every time to at least its last durable tick, with the hashes of an uninterrupted run', async () => {
  const dir = join(tmp('crash'), 'journal');
  const ref = referenceHashes();
  const kills = Number(process.env.LOCKSTEP_CRASH_KILLS ?? 8);
  try {
    let previous = 0;
    for (let i = 0; i < kills; i++) {
      const { start, durable, report } = await crashCycle(dir, ref, assert, { fsync: 'tick', maxDelayMs: 200 });
      assert.equal(start, previous, 'each child continues where the last recovery (plus its 3 checked ticks) left the journal');
      assert.ok(report.tick > durable);
      previous = report.tick + 3;
    }
  } finally {
    ref.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('automatic snapshots: recover() starts from the newest, skipping a damaged one; verifyLog() checks each', () => {
  const dir = journaled(45, { snapshotIntervalTicks: 10 });
  const snaps = readdirSync(dir).filter((f) => f.endsWith('.lssnap')).sort();
  assert.deepEqual(snaps.map((f) => Number(f.slice(9, 29))), [10, 20, 30, 40]);
  const v = verifyLog(dir, trust);
  assert.deepEqual(v.snapshots.map((s) => [s.tick, s.problem ?? null]), [[10, null], [20, null], [30, null], [40, null]]);
  const newest = join(dir, snaps.at(-1));
  const bytes = readFileSync(newest);
  bytes[bytes.length >> 1] ^= 0x10;
  writeFileSync(newest, bytes);
  const ref = referenceHashes();
  const { runtime, report } = Runtime.recover(dir, { ...trust, snapshotIntervalTicks: 10 });
  assert.equal(report.tick, 45);
  assert.equal(report.snapshotTick, 30);
  assert.equal(report.ticksReplayed, 15);
  assert.equal(report.snapshotsSkipped.length, 1);
  assert.equal(report.snapshotsSkipped[0].tick, 40);
  assert.match(report.snapshotsSkipped[0].problem, /corrupt/);
  const hashes = ref.upTo(50);
  for (let t = 45; t < 50; t++) assert.equal(session.step(runtime, t).hash, hashes[t]);
  runtime.close();
  ref.close();
  assert.throws(() => new Runtime({ ...session.OPTIONS, journal: { dir: tmp('bad'), snapshotIntervalTicks: -1 } }), (e) => e.code === 'E_INVALID_CONFIG' && e.message.includes('snapshotIntervalTicks'));
});

test('openJournal(): seek within a snapshot interval, inspect, readMemory, messagesAt, and fork into a journal with its lineage', () => {
  const dir = journaled(60, { snapshotIntervalTicks: 10 });
  const ref = referenceHashes();
  const hashes = ref.upTo(80);
  const cursor = openJournal(dir, trust);
  assert.equal(cursor.firstTick, 0);
  assert.equal(cursor.endTick, 60);
  assert.match(cursor.id, /^[0-9a-f]{32}$/);
  assert.equal(cursor.lineage, null);
  assert.deepEqual(cursor.snapshotTicks(), [10, 20, 30, 40, 50, 60]);
  for (const t of [37, 4, 59, 21]) {
    const r = cursor.seek(t);
    assert.ok(r.ticksReplayed <= 10, JSON.stringify(r));
    assert.equal(cursor.tick, t);
    assert.equal(cursor.stateHash(), hashes[t - 1]);
  }
  assert.equal(cursor.next(), true);
  assert.equal(cursor.tick, 22);
  assert.equal(cursor.prev(), true);
  assert.equal(cursor.stateHash(), hashes[20]);
  const agents = cursor.agents();
  assert.ok(agents.length > 0);
  const info = cursor.inspect(agents[0]);
  assert.equal(info.id, agents[0]);
  const mem = cursor.readMemory(agents[0], 0, 64);
  assert.ok(Buffer.isBuffer(mem) && mem.length === 64);
  assert.throws(() => cursor.readMemory(agents[0], 0, 64 << 20), (e) => e.code === 'E_INVALID_ARGUMENT' && /limit/.test(e.message));
  assert.throws(() => cursor.seek(61), (e) => e.code === 'E_INVALID_ARGUMENT' && /0\.\.=60/.test(e.message));
  assert.throws(() => cursor.seek(-1), (e) => e.code === 'E_INVALID_ARGUMENT');
  // What tick 30 delivered and sent: every message is to/from the agent it is listed under.
  const messages = cursor.messagesAt(30);
  assert.equal(cursor.tick, 31);
  assert.ok(messages.some((a) => a.sent.length > 0 || a.received.length > 0));
  for (const a of messages) {
    for (const m of a.received) assert.equal(m.to, a.agent);
    for (const m of a.sent) assert.equal(m.from, a.agent);
  }
  // Two forks of tick 40 fed the session's own inputs compute its hashes; the fork's journal names its parent.
  cursor.seek(40);
  const forkDir = join(tmp('fork'), 'journal');
  const fork = cursor.fork({ ...trust, journal: { dir: forkDir, snapshotIntervalTicks: 10 } });
  const other = cursor.fork(trust);
  for (let t = 40; t < 50; t++) {
    assert.equal(session.step(fork, t).hash, hashes[t]);
    assert.equal(session.step(other, t).hash, hashes[t]);
  }
  const forkId = fork.journalId;
  fork.close();
  other.close();
  const child = openJournal(forkDir, trust);
  assert.deepEqual(child.lineage, { journal: cursor.id, tick: 40, hash: hashes[39] });
  assert.equal(child.id, forkId);
  assert.equal(child.firstTick, 40);
  child.seek(45);
  assert.equal(child.stateHash(), hashes[44]);
  // close() frees a cursor now; afterwards every method says so, and closing again is harmless.
  assert.equal(child.closed, false);
  child.close();
  child.close();
  assert.equal(child.closed, true);
  for (const use of [() => child.seek(41), () => child.stateHash(), () => child.agents(), () => child.endTick, () => child.messagesAt(41), () => child.fork(trust)]) {
    assert.throws(use, (e) => e.code === 'E_CLOSED');
  }
  // openJournal() of a log's bytes: the same states.
  const rt = new Runtime({ ...session.OPTIONS, record: true });
  session.start(rt);
  for (let t = 0; t < 30; t++) session.step(rt, t);
  const fromLog = openJournal(rt.replayLog(), { ...trust, snapshotIntervalTicks: 8 });
  rt.close();
  fromLog.seek(25);
  assert.equal(fromLog.stateHash(), hashes[24]);
  assert.equal(fromLog.seek(17).fromSnapshot, 16);
  assert.throws(() => openJournal(Buffer.from('not a log')), (e) => e.code === 'E_REPLAY_CORRUPT');
  assert.throws(() => openJournal(join(dir, 'nowhere')), (e) => e.code === 'E_JOURNAL_IO');
  assert.throws(() => openJournal(dir, { workers: 0 }), (e) => e.code === 'E_INVALID_CONFIG');
  ref.close();
});

test('openJournal({ interrupt }): while interrupt[0] is set a seek stops with E_INTERRUPTED where it was, and goes on once cleared; only an Int32Array over a SharedArrayBuffer is taken', () => {
  const dir = journaled(40, { snapshotIntervalTicks: 10 });
  const hashes = referenceHashes().upTo(40);
  const interrupt = new Int32Array(new SharedArrayBuffer(8));
  const cursor = openJournal(dir, { ...trust, interrupt });
  cursor.seek(13);
  Atomics.store(interrupt, 0, 1);
  for (const move of [() => cursor.seek(17), () => cursor.seek(35), () => cursor.seek(2), () => cursor.next(), () => cursor.prev(), () => cursor.messagesAt(13)]) {
    assert.throws(move, (e) => e.code === 'E_INTERRUPTED' && /at tick 13, where the cursor stays/.test(e.message));
    assert.equal(cursor.tick, 13);
    assert.equal(cursor.stateHash(), hashes[12]);
  }
  assert.equal(cursor.seek(13).ticksReplayed, 0, 'no replay needed: not interrupted');
  Atomics.store(interrupt, 0, 0);
  assert.deepEqual(cursor.seek(17), { tick: 17, ticksReplayed: 4, fromSnapshot: null });
  assert.equal(cursor.stateHash(), hashes[16]);
  cursor.close();
  Atomics.store(interrupt, 0, 1);
  assert.throws(() => openJournal(dir, { ...trust, interrupt }), (e) => e.code === 'E_INTERRUPTED' && /opening the journal/.test(e.message));
  for (const bad of [new Int32Array(2), new Uint32Array(new SharedArrayBuffer(8)), new Int32Array(new SharedArrayBuffer(8), 8), {}, [0], new SharedArrayBuffer(4)]) {
    assert.throws(() => openJournal(dir, { ...trust, interrupt: bad }), (e) => e.code === 'E_INVALID_CONFIG' && /option interrupt must be an Int32Array/.test(e.message));
  }
});

test('the CLI: seek <dir> <tick> --agent prints the state, the agent, its memory and its messages of that tick; log inspect lists snapshots', () => {
  const dir = journaled(40, { snapshotIntervalTicks: 10 });
  const run = (...args) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  const ref = referenceHashes();
  const hashes = ref.upTo(40);
  ref.close();
  const inspect = run('log', 'inspect', dir);
  assert.match(inspect.stdout, /snapshots 4: ticks 10, 20, 30, 40; [\d,]+ bytes/);
  assert.match(inspect.stdout, /journal id [0-9a-f]{32}/);
  const text = run('seek', dir, '28', '--agent', '17', '--trust', EXAMPLES_PUBLIC_KEY);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /at tick 28 \(of 0\.\.40\): restored the snapshot of tick 20, 8 ticks replayed and verified/);
  assert.ok(text.stdout.includes(`state hash ${hashes[27]}`));
  assert.match(text.stdout, /agent 17: running/);
  assert.match(text.stdout, /memory 0\.\.256:\n {4}00000000 /);
  const json = JSON.parse(run('seek', dir, '28', '--agent', '17', '--trust', EXAMPLES_PUBLIC_KEY, '--json').stdout);
  assert.equal(json.stateHash, hashes[27]);
  assert.equal(json.fromSnapshot, 20);
  assert.equal(json.agent.id, 17);
  assert.equal(json.memory.hex.length, 512);
  // Tick 28 is even: the host's message to the counter (agent 17) was delivered.
  assert.ok(json.received.some((m) => m.from === 0), JSON.stringify(json.received));
  const bad = run('seek', dir, '41', '--trust', EXAMPLES_PUBLIC_KEY);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /E_INVALID_ARGUMENT.*0\.\.=40/);
  assert.equal(run('seek', dir, 'x').status, 2);
});

test('openJournal() and the CLI seek take a replay log file as the docs say; seek reads only decimal numbers', () => {
  const dir = journaled(12, { snapshotIntervalTicks: 5 });
  const rt = new Runtime({ ...session.OPTIONS, record: true });
  session.start(rt);
  for (let t = 0; t < 12; t++) session.step(rt, t);
  const file = join(tmp('logfile'), 'session.lslog');
  writeFileSync(file, rt.replayLog());
  rt.close();
  const ref = referenceHashes();
  const hashes = ref.upTo(12);
  ref.close();
  const cursor = openJournal(file, trust);
  assert.equal(cursor.endTick, 12);
  cursor.seek(5);
  assert.equal(cursor.stateHash(), hashes[4]);
  const run = (...args) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  const fromFile = run('seek', file, '5', '--trust', EXAMPLES_PUBLIC_KEY, '--json');
  assert.equal(fromFile.status, 0, fromFile.stderr);
  assert.equal(JSON.parse(fromFile.stdout).stateHash, hashes[4]);
  // '' and ' ' are not tick 0, '0x10' is not 16: usage errors, not another tick's state.
  for (const args of [[''], [' '], ['0x10'], ['1e1'], ['5', '--agent', '0x1'], ['5', '--agent', '1', '--memory', '0:16:1'], ['5', '--agent', '1', '--memory', ' :8']]) {
    const r = run('seek', dir, ...args, '--trust', EXAMPLES_PUBLIC_KEY);
    assert.equal(r.status, 2, JSON.stringify(args) + r.stdout);
    assert.match(r.stderr, /must be a tick number|needs an agent id|needs <offset>:<length>/, JSON.stringify(args));
  }
});
