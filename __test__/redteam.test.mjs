// Red-team findings in the JS layer (issue 9 follow-up): each test guards one hole found by
// calling the entry points with odd arguments.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const { Runtime, LockstepError, exampleAgent, EXAMPLES_PUBLIC_KEY, replay, verify, inspect } = require('../index.js');

const echo = readFileSync(exampleAgent('echo'));

/** An ArrayBuffer transferred away (as postMessage to a worker does), and a view of one. */
function detachedBuffer() {
  const ab = new ArrayBuffer(16);
  structuredClone(ab, { transfer: [ab] });
  return ab;
}
function viewOfDetached(Typed = Uint8Array) {
  const ab = new ArrayBuffer(16);
  const view = new Typed(ab);
  structuredClone(ab, { transfer: [ab] });
  return view;
}

test('a detached ArrayBuffer (or a view of one) is E_INVALID_ARGUMENT everywhere, never a raw TypeError or an empty payload', () => {
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  const id = rt.spawn(echo);
  const args = [
    ['ArrayBuffer', detachedBuffer],
    ['Uint8Array', () => viewOfDetached(Uint8Array)],
    ['Float64Array', () => viewOfDetached(Float64Array)],
    ['DataView', () => viewOfDetached(DataView)],
  ];
  for (const [what, make] of args) {
    for (const [label, call] of [
      ['send', (x) => rt.send(id, x)],
      ['loadModule', (x) => rt.loadModule(x)],
      ['replay', (x) => replay(x)],
      ['verify', (x) => verify(x, [EXAMPLES_PUBLIC_KEY])],
      ['inspect', (x) => inspect(x)],
    ]) {
      assert.throws(() => call(make()), (e) => {
        assert.ok(e instanceof LockstepError, `${label}(detached ${what}): ${e && e.stack}`);
        assert.equal(e.code, 'E_INVALID_ARGUMENT', `${label}(detached ${what}): ${e.message}`);
        assert.match(e.message, /detached/);
        return true;
      }, `${label}(detached ${what}) was accepted`);
    }
  }
  // Nothing was queued: the agent gets no empty message.
  rt.tick();
  assert.equal(rt.drainMessages().length, 0);
  rt.close();
});

test('the native ring attach refuses a Uint8Array over a plain (detachable) ArrayBuffer', (t) => {
  // The addon itself (what index.js wraps): attachRings() always passes SharedArrayBuffers,
  // but the native methods kept a raw pointer into whatever they were given; detaching a
  // plain ArrayBuffer afterwards freed that memory under the core (SIGSEGV at the next tick).
  const { existsSync } = require('node:fs');
  const path = process.env.LOCKSTEP_NATIVE_PATH ?? new URL(`../lockstep.${process.platform}-${process.arch}-gnu.node`, import.meta.url).pathname;
  if (process.platform !== 'linux' || !existsSync(path)) return t.skip('needs the linux addon');
  const native = require(path);
  const rt = new native.NativeRuntime({ workers: 1, devMode: true, inference: { searchRoots: [] } });
  const cap = 1 << 12;
  for (const method of ['attachInboundRing', 'attachOutboundRing']) {
    const ab = new ArrayBuffer(192 + cap);
    const u32 = new Uint32Array(ab, 0, 3);
    u32[0] = 0x4752534c; u32[1] = 1; u32[2] = cap; // a valid ring header
    assert.throws(() => rt[method](new Uint8Array(ab)), { code: 'E_RING' }, `${method} accepted a plain ArrayBuffer`);
    assert.throws(() => rt[method]({}), { code: 'E_RING' }, `${method} accepted an object`);
    // A SharedArrayBuffer ring is still accepted.
    const sab = new SharedArrayBuffer(192 + cap);
    new Uint32Array(sab, 0, 3).set([0x4752534c, 1, cap]);
    rt[method](new Uint8Array(sab));
  }
  rt.close();
});

// ----- red team 10: the reshaped core and the binding's error and event contract -------------

const { replayAsync } = require('../index.js');
const { Worker } = require('node:worker_threads');
const { spawnSync } = require('node:child_process');
const { agent: tinyAgent, op, LOG, PANIC } = await import('./fixtures/tinywasm.mjs');

/** A recorded session of `agents` counters over `ticks` ticks. */
function counterSession(agents, ticks) {
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  rt.spawnMany(exampleAgent('counter'), agents);
  rt.tick(ticks);
  const log = rt.stopRecording();
  rt.close();
  return log;
}

test('drainEvents() survives events whose JSON outgrows a JS string (it threw E_INTERNAL and lost them all)', () => {
  // Each spawn's init logs 64 lines of 1,024 control characters (six bytes of JSON each) and
  // traps; 1,400 spawns keep ~90,000 events (under the default maxEvents): ~600 MB of JSON,
  // past V8's longest string. napi failed to make it: E_INTERNAL ("a lockstep bug"), and the
  // events, already drained from the core, were gone.
  const init = [];
  for (let i = 0; i < 64; i++) init.push(...op.i32(3), ...op.i32(0), ...op.i32(1024), ...op.call(LOG));
  init.push(...op.unreachable);
  const rt = new Runtime({ workers: 1, devMode: true, record: false, maxAgents: 4 });
  const module = rt.loadModule(tinyAgent({ init, data: new Array(1024).fill(1) }));
  for (let i = 0; i < 1400; i++) rt.spawn(module);
  const events = rt.drainEvents();
  const logs = events.filter((e) => e.type === 'log');
  assert.equal(logs.length, 1400 * 64);
  assert.equal(logs[0].text, '\u0001'.repeat(1024));
  assert.equal(events.filter((e) => e.type === 'fault').length, 1400);
  assert.deepEqual(rt.drainEvents(), []);
  rt.close();
});

test('agent text that is not valid UTF-8, control characters and JSON syntax cross drainEvents() and the ring as parseable JSON', () => {
  // Invalid UTF-8 (a lone byte, a CESU-8 surrogate half), NUL, controls, quotes, backslashes,
  // U+2028: as a log line in init and in a step, and as a panic message.
  const text = [0xff, 0xfe, 0xed, 0xa0, 0x80, 0x00, 0x1f, 0x7f, 0x22, 0x5c, 0xe2, 0x80, 0xa8, 0x7b, 0x5d];
  const logIt = [...op.i32(1), ...op.i32(0), ...op.i32(text.length), ...op.call(LOG)];
  const rt = new Runtime({ workers: 1, devMode: true, record: false });
  const { outbound } = rt.attachRings({ outboundBytes: 1 << 16 });
  const id = rt.spawn(tinyAgent({
    init: [...logIt, ...op.i32(0)],
    step: [...logIt, ...op.i32(0), ...op.i32(text.length), ...op.call(PANIC), ...op.unreachable],
    data: text,
  }));
  rt.tick();
  const expected = Buffer.from(text).toString('utf8'); // the same replacements as Rust's from_utf8_lossy
  const events = rt.drainEvents();
  const texts = events.filter((e) => e.type === 'log').map((e) => e.text);
  assert.deepEqual(texts, [expected, expected]);
  const fault = events.find((e) => e.type === 'fault');
  assert.equal(fault.agent, id);
  assert.equal(fault.fault.detail, expected);
  const copies = outbound.readBatch().filter((r) => r.type === 'event').map((r) => r.event);
  assert.deepEqual(copies.filter((e) => e.type === 'log' || e.type === 'fault'), events.filter((e) => e.tick === 0 && (e.type === 'log' || e.type === 'fault')).slice(1));
  rt.close();
});

test('replayAsync: many at once (more than libuv\'s pool), with progress, runtimes closed meanwhile: every report is replay()\'s', async () => {
  const log = counterSession(20, 400);
  const options = { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 };
  const expected = replay(log, options);
  const runtimes = Array.from({ length: 4 }, () => new Runtime({ workers: 1 }));
  const progress = Array.from({ length: 12 }, () => []);
  const pending = progress.map((seen) => replayAsync(log, { ...options, onProgress: (n) => seen.push(n) }));
  for (const rt of runtimes) rt.close();
  const reports = await Promise.all(pending);
  for (const r of reports) assert.deepEqual(r, expected);
  for (const seen of progress) assert.deepEqual(seen, [100, 200, 300, 400]);
});

test('replayAsync in a worker that is terminated mid-replay: terminate() settles, the pool is not left stuck', async () => {
  // The replay waits, on a libuv thread, for its progress calls to run on the worker's JS
  // thread; the worker's teardown waits for that replay. Neither may wait forever.
  const log = counterSession(200, 1000);
  const worker = new Worker(new URL('./fixtures/replay-async-worker.cjs', import.meta.url), { workerData: { log, trustedKeys: [EXAMPLES_PUBLIC_KEY] } });
  await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('worker.terminate() did not settle within 20 s')), 20_000);
  });
  await Promise.race([worker.terminate(), timeout]);
  clearTimeout(timer);
  // libuv's pool still serves replays (none of its threads is stuck).
  const small = counterSession(2, 100);
  const all = await Promise.all(Array.from({ length: 6 }, () => replayAsync(small, { trustedKeys: [EXAMPLES_PUBLIC_KEY] })));
  for (const r of all) assert.equal(r.ok && r.complete, true);
});

test('process.exit() while replayAsync runs (with and without onProgress): the process exits cleanly', () => {
  const index = fileURLToPath(new URL('../index.js', import.meta.url));
  for (const onProgress of ['undefined', '() => process.exit(7)']) {
    const script = `
      const { Runtime, replayAsync, exampleAgent, EXAMPLES_PUBLIC_KEY } = require(${JSON.stringify(index)});
      const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
      rt.spawnMany(exampleAgent('counter'), 200);
      rt.tick(1000);
      const log = rt.stopRecording();
      replayAsync(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], onProgress: ${onProgress} }).then(() => process.exit(3));
      setTimeout(() => process.exit(7), 20);`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
    assert.equal(r.status, 7, r.stderr);
  }
});

// ----- red team: a second read of an input, after its check --------------------------------
// Each input an entry point checks is read once, and what was checked is what is used: a
// getter (or a Proxy) whose second answer differs, or caller code run after a check (a getter,
// a toJSON, onProgress), never changes what reaches the addon.

const { sign, openJournal, keygen } = require('../index.js');
const { mkdtempSync, rmSync } = require('node:fs');
const { join } = require('node:path');
const { tmpdir } = require('node:os');

/** `obj` with a getter `key` that answers `first` on its first read and `then` on every later one; counts its reads. */
function shifty(obj, key, first, then) {
  const reads = { n: 0 };
  Object.defineProperty(obj, key, { get: () => (reads.n++ === 0 ? first : then), enumerable: true, configurable: true });
  return reads;
}

test('each option is read once: a getter\'s second answer never reaches the addon or a callback (replay, openJournal, run)', async () => {
  const log = counterSession(2, 150);
  const trusted = () => ({ trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  // workers: 2^32 + 2 reached napi's u32 unchecked, which wrapped it to 2 silently.
  let o = trusted();
  let reads = shifty(o, 'workers', 1, 2 ** 32 + 2);
  assert.equal(replay(log, o).ok, true);
  assert.equal(reads.n, 1, 'replay options.workers read once');
  // onProgress: checked as a function, then called as 42 (a raw TypeError after the replay).
  o = trusted();
  const seen = [];
  reads = shifty(o, 'onProgress', (n) => seen.push(n), 42);
  assert.equal(replay(log, o).ok, true);
  assert.deepEqual(seen, [100]);
  assert.equal(reads.n, 1, 'replay options.onProgress read once');
  // devMode: checked as a boolean, then napi's own "wrong argument type" (E_INVALID_ARGUMENT, not E_INVALID_CONFIG).
  o = trusted();
  reads = shifty(o, 'devMode', false, 'yes');
  assert.equal(openJournal(log, o).tick, 0);
  assert.equal(reads.n, 1, 'openJournal options.devMode read once');
  // run(): onTick checked as a function, then called as 42 (done rejected with a raw TypeError);
  // hz checked in (0, 1e6], then used as -5 (no rate at all).
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  rt.spawn(exampleAgent('counter'));
  const ticked = [];
  o = { until: 2 };
  reads = shifty(o, 'onTick', (r) => ticked.push(r.tick), 42);
  const hz = shifty(o, 'hz', 1000, -5);
  const done = await rt.run(o).done;
  assert.equal(done.reason, 'until');
  assert.deepEqual(ticked, [0, 1]);
  assert.equal(reads.n, 1, 'run options.onTick read once');
  assert.equal(hz.n, 1, 'run options.hz read once');
  rt.close();
});

test('new Runtime() reads each option once: a getter\'s second answer never reaches the addon', () => {
  // Checked, then spread into what the addon gets: its second answer arrived unchecked (a
  // wrong code: napi's "wrong argument type", or the addon's own message for the range).
  for (const [key, first, then] of [['record', false, 'no'], ['seed', 1, -1], ['resourcePolicy', 'clamp', 'bogus'], ['workers', 1, 0]]) {
    const o = key === 'workers' ? {} : { workers: 1 };
    const reads = shifty(o, key, first, then);
    new Runtime(o).close();
    assert.equal(reads.n, 1, `option ${key} read once`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-read-once-'));
  try {
    const journal = { fsync: 'group' };
    const reads = shifty(journal, 'dir', dir, 5);
    new Runtime({ workers: 1, journal }).close();
    assert.equal(reads.n, 1, 'option journal.dir read once');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('arrays of strings are used as checked: an element getter\'s later answer never reaches the addon', () => {
  const keys = () => {
    const k = [];
    return [k, shifty(k, 0, EXAMPLES_PUBLIC_KEY, 7)];
  };
  let [k, reads] = keys();
  new Runtime({ workers: 1, trustedKeys: k }).close();
  assert.equal(reads.n, 1, 'option trustedKeys[0] read once');
  [k, reads] = keys();
  assert.equal(verify(readFileSync(exampleAgent('counter')), k).ok, true);
  assert.equal(reads.n, 1, 'verify trustedKeys[0] read once');
  [k, reads] = keys();
  assert.equal(replay(counterSession(1, 10), { trustedKeys: k }).ok, true);
  assert.equal(reads.n, 1, 'replay options.trustedKeys[0] read once');
  const providers = [];
  reads = shifty(providers, 0, 'cpu', 'quantum');
  new Runtime({ workers: 1, inference: { providers } }).close();
  assert.equal(reads.n, 1, 'option inference.providers[0] read once');
});

test('bytes are taken after the caller code an entry point runs: an options getter that detaches them is E_INVALID_ARGUMENT, never an empty payload', () => {
  const detach = (view) => structuredClone(view.buffer, { transfer: [view.buffer] });
  const detached = (e) => e instanceof LockstepError && e.code === 'E_INVALID_ARGUMENT' && /detached/.test(e.message);
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  const id = rt.spawn(echo);
  rt.tick();
  rt.drainMessages();
  // send(): the payload's buffer detached by options.kind's getter was sent as an empty message.
  const payload = new Uint8Array([1, 2, 3]);
  assert.throws(() => rt.send(id, payload, { get kind() { detach(payload); return 1; } }), detached);
  rt.tick(2);
  assert.deepEqual(rt.drainMessages(), [], 'the agent got (and echoed) an empty message');
  const log = counterSession(1, 5);
  const logView = new Uint8Array(log);
  assert.throws(() => replay(logView, { trustedKeys: [EXAMPLES_PUBLIC_KEY], get devMode() { detach(logView); return false; } }), detached);
  const module = new Uint8Array(readFileSync(exampleAgent('counter')));
  const { secretKey } = keygen();
  assert.throws(() => sign(module, { toJSON() { detach(module); return { name: 'c', version: '1', abi: 1 }; } }, secretKey), detached);
  const module2 = new Uint8Array(readFileSync(exampleAgent('counter')));
  const keys = [];
  Object.defineProperty(keys, 0, { get() { detach(module2); return EXAMPLES_PUBLIC_KEY; }, enumerable: true });
  assert.throws(() => verify(module2, keys), detached);
  const snapshot = new Uint8Array(rt.snapshot());
  assert.throws(() => Runtime.restore(snapshot, { trustedKeys: [EXAMPLES_PUBLIC_KEY], get workers() { detach(snapshot); return 1; } }), detached);
  rt.close();
});

test('replay() with onProgress reads a copy of the log: a callback that shrinks or transfers its buffer cannot pull it from under the addon', () => {
  // The addon read the log in place while it called onProgress: shrinking a resizable
  // ArrayBuffer there was a SIGSEGV, transferring it (then a GC) a read of freed memory.
  const index = fileURLToPath(new URL('../index.js', import.meta.url));
  const script = `
    const { Runtime, replay, exampleAgent, EXAMPLES_PUBLIC_KEY } = require(${JSON.stringify(index)});
    const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
    rt.spawnMany(exampleAgent('counter'), 4);
    rt.tick(300);
    const log = rt.stopRecording();
    rt.close();
    const buffer = new ArrayBuffer(log.length, { maxByteLength: log.length });
    new Uint8Array(buffer).set(log);
    const seen = [];
    const report = replay(buffer, { trustedKeys: [EXAMPLES_PUBLIC_KEY], onProgress: (n) => { seen.push(n); buffer.resize(0); } });
    console.log(JSON.stringify({ ok: report.ok, complete: report.complete, ticks: report.ticksVerified, seen }));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { ok: true, complete: true, ticks: 300, seen: [100, 200, 300] });
});
