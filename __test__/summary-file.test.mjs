// The summary file (docs/DASHBOARD.md, "The summary file"): a fixed 256-byte layout with a
// seqlock, read by another process. The readers are the examples in examples/dashboard/
// (Node with pread, Python with mmap): neither ever sees a torn snapshot while the writer
// rewrites the file flat out, and a served runtime's file says what the runtime did.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { gossipRuntime } from './dashboard-helpers.mjs';
const require = createRequire(import.meta.url);
const { SummaryFileWriter, readSummaryFile, FILE_BYTES } = require('../dashboard/summary-file.js');

const root = fileURLToPath(new URL('..', import.meta.url));
const examples = join(root, 'examples', 'dashboard');

/** Snapshot k: every field derived from k, so a mix of two snapshots breaks an equation. */
function values(k, live = true) {
  return {
    writtenAtMs: 1_700_000_000_000 + k,
    pid: 4242,
    flags: live ? 1 : 0,
    tick: k,
    agents: 5 * k,
    running: k,
    preempted: k,
    faulted: k,
    stopped: k,
    killed: k,
    eventsQueued: 2 * k,
    messagesRoutedTotal: 3 * k,
    faultsTotal: 7 * k,
    tickP50Us: k / 2,
    hash: k.toString(16).padStart(16, '0').repeat(4),
  };
}

const NODE_CHECKER = `
import { openSync } from 'node:fs';
import { readSnapshot } from ${JSON.stringify(join(examples, 'summary-reader.mjs'))};
const fd = openSync(process.argv[1], 'r');
let reads = 0, torn = 0, retried = 0, last = null;
console.log('ready');
for (;;) {
  const s = readSnapshot(fd);
  if (!s) continue;
  reads++;
  if (s.retries > 0) retried++;
  const k = s.tick;
  const ok = s.agents.total === 5 * k && s.agents.running === k && s.agents.killed === k && s.queues.events === 2 * k &&
    s.messagesRoutedTotal === 3 * k && s.faultsTotal === 7 * k && s.tickP50Us === k / 2 && s.writtenAtMs === 1700000000000 + k &&
    s.hash === k.toString(16).padStart(16, '0').repeat(4) && s.seq % 2 === 0;
  if (!ok) torn++;
  if (last && k < last.tick) torn++;
  last = s;
  if (!s.live) break;
}
console.log(JSON.stringify({ reads, torn, retried, tick: last.tick }));
`;

const PY_CHECKER = `
import json, mmap, sys
sys.path.insert(0, ${JSON.stringify(examples)})
from summary_reader import read_snapshot
f = open(sys.argv[1], 'rb')
mm = mmap.mmap(f.fileno(), 256, access=mmap.ACCESS_READ)
reads = torn = retried = 0
last = None
print('ready', flush=True)
while True:
    s = read_snapshot(mm)
    if s is None:
        continue
    reads += 1
    retried += 1 if s['retries'] > 0 else 0
    k = s['tick']
    ok = (s['agents'] == 5 * k and s['running'] == k and s['killed'] == k and s['eventsQueued'] == 2 * k
          and s['messagesRoutedTotal'] == 3 * k and s['faultsTotal'] == 7 * k and s['tickP50Us'] == k / 2
          and s['hash'] == ('%016x' % k) * 4 and s['seq'] % 2 == 0)
    if not ok or (last is not None and k < last['tick']):
        torn += 1
    last = s
    if not s['live']:
        break
print(json.dumps({'reads': reads, 'torn': torn, 'retried': retried, 'tick': last['tick']}))
`;

function python() {
  for (const cmd of ['python3', 'python']) {
    const r = spawnSync(cmd, ['-c', 'import mmap, struct, json'], { encoding: 'utf8' });
    if (r.status === 0) return cmd;
  }
  return null;
}

/** Starts a checker; resolves when it printed 'ready'; `.result` resolves with its last line. */
function startReader(cmd, args) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let markReady;
  const ready = new Promise((resolve) => {
    markReady = resolve;
  });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    out += d;
    if (out.includes('ready')) markReady();
  });
  const result = new Promise((resolve, reject) => {
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`${cmd} reader exited ${code}: ${out}`))));
  });
  return { ready, result };
}

test('readers in other processes (Node pread, Python mmap) never see a torn summary while it is rewritten flat out', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-summary-'));
  try {
    const file = join(dir, 'summary.bin');
    const w = new SummaryFileWriter(file);
    w.write(values(0));
    assert.equal(statSync(file).size, FILE_BYTES);
    const readers = [startReader(process.execPath, ['--input-type=module', '-e', NODE_CHECKER, file])];
    const py = python();
    if (py) readers.push(startReader(py, ['-c', PY_CHECKER, file]));
    else console.error('[summary-file test] no python3: the mmap reader is not exercised here');
    await Promise.all(readers.map((r) => r.ready));
    let k = 0;
    const end = Date.now() + 1500;
    while (Date.now() < end) w.write(values(++k));
    w.write(values(k + 1, false)); // the last one says the writer is gone: readers stop
    w.close();
    for (const r of readers) {
      const got = await r.result;
      console.error(`[summary-file test] ${JSON.stringify(got)}`);
      assert.equal(got.torn, 0, `torn or out-of-order snapshots: ${JSON.stringify(got)}`);
      assert.ok(got.reads > 100, `read only ${got.reads} snapshots`);
      assert.equal(got.tick, k + 1);
    }
    assert.ok(k > 1000, `wrote ${k} snapshots`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('serve({ summaryFile }) keeps the file up to date between ticks, and marks it not live when the server closes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-summary-'));
  const { rt, ids } = gossipRuntime(40);
  try {
    const file = join(dir, 'rt.summary');
    const server = await rt.serve({ summaryFile: file, summaryIntervalMs: 0, snapshotBudget: 0 });
    const first = readSummaryFile(file);
    assert.equal(first.tick, 0);
    assert.equal(first.agents, 40);
    assert.equal(first.live, true);
    assert.equal(first.pid, process.pid);
    for (let i = 0; i < 10; i++) rt.tick();
    rt.kill(ids[0]);
    rt.tick();
    const s = readSummaryFile(file);
    assert.equal(s.tick, 11);
    assert.equal(s.hash, rt.stateHash());
    assert.equal(s.killed, 1);
    assert.equal(s.running, 39);
    assert.ok(s.messagesRoutedTotal > 0 && s.tickP50Us > 0);
    // The example reader, in another process, reads the same.
    const out = spawnSync(process.execPath, [join(examples, 'summary-reader.mjs'), file], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).tick, 11);
    await server.close();
    const closed = readSummaryFile(file);
    assert.equal(closed.live, false);
    assert.equal(closed.tick, 11);
  } finally {
    rt.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
