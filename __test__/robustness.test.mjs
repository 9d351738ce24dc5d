// Regressions of issue 9 (an outside review): no panic aborts Node, keys are parsed without
// panicking, a throwing log sink cannot hide whether tick() ran, ids are never negative,
// numbers never wrap, runtimes can be freed with close(). Each test fails on 921d60e.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const lockstep = require('../index.js');
const { Runtime, LockstepError, exampleAgent, EXAMPLES_PUBLIC_KEY, setLogger, verify, sign, keygen } = lockstep;
const { platformTriple } = require('../scripts/platform.cjs');

const TEST_PANIC = Symbol.for('lockstep.testPanic');
const isLockstepError = (code, re) => (e) => {
  assert.ok(e instanceof LockstepError, `not a LockstepError: ${e && e.stack}`);
  assert.equal(e.code, code, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

test('a Rust panic in a native function or method is E_INTERNAL with its message, and the process carries on', () => {
  const before = process.env.LOCKSTEP_TEST_HOOKS;
  process.env.LOCKSTEP_TEST_HOOKS = '1';
  try {
    assert.throws(() => lockstep[TEST_PANIC]('boom in a function'), isLockstepError('E_INTERNAL', /boom in a function/));
    const rt = new Runtime({ workers: 2, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
    const id = rt.spawn(exampleAgent('counter'));
    assert.throws(() => rt[TEST_PANIC]('boom in a method'), isLockstepError('E_INTERNAL', /boom in a method/));
    // The runtime (whose &mut borrow the panic unwound through) is still usable.
    assert.equal(rt.tick(3).agentsStepped, 1);
    assert.equal(rt.inspect(id).steps, 3);
    rt.close();
  } finally {
    if (before === undefined) delete process.env.LOCKSTEP_TEST_HOOKS;
    else process.env.LOCKSTEP_TEST_HOOKS = before;
  }
  // Without the environment variable the hook refuses (it is not an API).
  assert.throws(() => lockstep[TEST_PANIC]('x'), isLockstepError('E_INVALID_ARGUMENT', /LOCKSTEP_TEST_HOOKS/));
});

test('the release profile unwinds (a panic = "abort" build would kill Node at the first panic)', () => {
  const toml = readFileSync(new URL('../Cargo.toml', import.meta.url), 'utf8');
  const release = toml.slice(toml.indexOf('[profile.release]'));
  assert.match(release.split(/\n\[/)[0], /^panic = "unwind"$/m);
});

test('a 64-character non-ASCII key is E_BAD_KEY naming the argument, not a panic', () => {
  const key = 'é'.repeat(64);
  const mixed = `${'a'.repeat(62)}é`; // 64 bytes: a char boundary falls inside the last pair
  const module = readFileSync(exampleAgent('counter'));
  for (const k of [key, mixed]) {
    assert.throws(() => verify(module, [k]), isLockstepError('E_BAD_KEY', /trustedKeys\[0\].*hexadecimal/));
    assert.throws(() => new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY, k] }), isLockstepError('E_INVALID_CONFIG', /trustedKeys\[1\].*hexadecimal/));
    assert.throws(() => sign(module, { name: 'c', version: '1', abi: 1 }, k), isLockstepError('E_BAD_KEY', /secretKey.*hexadecimal/));
  }
});

test('a log sink that throws does not make tick() throw: the tick ran, its report is returned', () => {
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  let calls = 0;
  setLogger(() => {
    calls++;
    throw new Error('sink is broken');
  }, { level: 'warn' });
  try {
    const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
    rt.spawn(exampleAgent('adv-spin')); // faults with fuel_exhausted: a warn log per tick
    const errorsBefore = lockstep.logSinkErrors();
    const report = rt.tick();
    assert.equal(report.tick, 0);
    assert.equal(rt.currentTick, 1, 'the tick ran');
    assert.ok(calls > 0, 'the sink was called');
    assert.ok(lockstep.logSinkErrors() > errorsBefore, 'its errors are counted');
    // A native error is not replaced by a sink error either.
    assert.throws(() => rt.inspect(12345), { code: 'E_UNKNOWN_AGENT' });
    rt.close();
  } finally {
    setLogger(null);
  }
  return new Promise((resolve) => setImmediate(resolve)).then(() => {
    process.off('warning', onWarning);
    assert.equal(warnings.filter((w) => w.code === 'E_LOG_SINK').length, 1, 'one warning per logger');
  });
});

test('ids are never negative: a dead letter to an id near 2^64 reports it as a positive number', () => {
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  const { inbound } = rt.attachRings({ inboundBytes: 1 << 12, outboundBytes: 1 << 12 });
  const huge = 2 ** 64 - 2048; // the largest double below 2^64: exact, and -2048 as an i64
  assert.equal(inbound.tryPush(huge, 'to nobody'), true);
  rt.tick();
  const [letter] = rt.drainDeadLetters();
  assert.equal(letter.reason, 'unknown_recipient');
  assert.equal(letter.message.to, huge);
  const ev = rt.drainEvents().find((e) => e.type === 'dead_letter');
  assert.equal(ev.to, huge);
  for (const v of [letter.message.to, letter.message.from, ev.to, ev.from]) assert.ok(v >= 0, `negative id ${v}`);
  assert.equal(lockstep.INFERENCE_ID, 2 ** 64, 'u64::MAX as the nearest JS number');
  rt.close();
});

test('numeric options and arguments are range-checked, never wrapped (JS API and native layer)', () => {
  assert.throws(() => new Runtime({ maxAgents: 2 ** 32 + 3 }), isLockstepError('E_INVALID_CONFIG', /maxAgents/));
  assert.throws(() => new Runtime({ deadlineMs: 2 ** 32 + 1 }), isLockstepError('E_INVALID_CONFIG', /deadlineMs/));
  // The native layer checks too (napi's u32 conversion would wrap 2^32 + 3 to 3); its errors
  // carry the code in `code`.
  const native = require(`../lockstep.${platformTriple()}.node`);
  const nativeCode = (fn) => {
    try {
      fn();
    } catch (e) {
      return [e.code, e.message];
    }
    assert.fail('did not throw');
  };
  let [code, message] = nativeCode(() => new native.NativeRuntime({ maxAgents: 2 ** 32 + 3 }));
  assert.equal(code, 'E_INVALID_CONFIG');
  assert.match(message, /maxAgents/);
  [code, message] = nativeCode(() => new native.NativeRuntime({ deadlineMs: 2 ** 32 + 1 }));
  assert.match(message, /deadlineMs/);
  [code, message] = nativeCode(() => new native.NativeRuntime({ inference: { maxModelBytes: -1 } }));
  assert.match(message, /maxModelBytes/);
  const rt = new native.NativeRuntime({ workers: 1 });
  // tick(0): the same code natively as in JS.
  [code, message] = nativeCode(() => rt.tick(0));
  assert.equal(code, 'E_INVALID_ARGUMENT');
  assert.match(message, /`n`/);
  [code, message] = nativeCode(() => rt.tick(2 ** 32));
  assert.equal(code, 'E_INVALID_ARGUMENT');
  [code, message] = nativeCode(() => rt.inspect(-1));
  assert.equal(code, 'E_INVALID_ARGUMENT');
  assert.doesNotMatch(message, /id 0/);
  [code, message] = nativeCode(() => rt.send(1, 2 ** 32 + 1, 0, new Uint8Array(0)));
  assert.equal(code, 'E_INVALID_ARGUMENT');
  assert.match(message, /kind/);
  rt.close();
});

test('close() frees a runtime now: 1,000 runtimes created and closed in a loop, threads bounded; use after close is E_CLOSED', async () => {
  const threads = () => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
  new Runtime({ workers: 2 }).close();
  const before = threads();
  let most = 0;
  for (let i = 0; i < 1000; i++) {
    const rt = new Runtime({ workers: 2, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
    if (i % 100 === 0) rt.spawn(exampleAgent('counter'));
    rt.close();
    most = Math.max(most, threads());
  }
  // Each runtime's worker thread exits when it is closed (not joined: give the last ones a moment).
  for (let i = 0; i < 50 && threads() > before; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(threads() <= before, `${threads()} threads after 1,000 runtimes, ${before} before`);
  assert.ok(most < before + 100, `at most ${most} threads at once during the loop (${before} before): closed runtimes' threads do not pile up`);
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  const id = rt.spawn(exampleAgent('counter'));
  rt.attachRings({ inboundBytes: 1 << 12, outboundBytes: 1 << 12 });
  assert.equal(rt.closed, false);
  rt.close();
  rt.close(); // idempotent
  assert.equal(rt.closed, true);
  const closed = isLockstepError('E_CLOSED', /closed/);
  for (const use of [
    () => rt.tick(), () => rt.spawn(exampleAgent('counter')), () => rt.send(id, 'x'), () => rt.inspect(id),
    () => rt.agents(), () => rt.currentTick, () => rt.recording, () => rt.stateHash(), () => rt.deepHash(),
    () => rt.drainEvents(), () => rt.drainDeadLetters(), () => rt.drainMessages(), () => rt.eventsDropped(),
    () => rt.kill(id), () => rt.shutdown(id), () => rt.replayLog(), () => rt.stopRecording(), () => rt.startRecording(),
    () => rt.flushOutbound(), () => rt.inboundRingError(), () => rt.attachRings(), () => rt.listModels(),
    () => rt.loadModel(new Uint8Array(8)), () => rt.loadModule(readFileSync(exampleAgent('counter'))),
  ]) {
    assert.throws(use, closed, use.toString());
  }
});

test('CLI: a key file without a secret key, or a missing file, is a typed error naming the flag', () => {
  const cli = new URL('../bin/lockstep.js', import.meta.url).pathname;
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-cli-args-'));
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ name: 'c', version: '1', abi: 1 }));
  writeFileSync(join(dir, 'notkey.json'), JSON.stringify({ name: 'package' }));
  writeFileSync(join(dir, 'key.json'), JSON.stringify(keygen()));
  const run = (...args) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: dir });
  const module = exampleAgent('counter');
  for (const [args, re] of [
    [['sign', module, '--manifest', 'manifest.json', '--key', 'notkey.json', '--out', 'x.wasm'], /E_INVALID_ARGUMENT: --key notkey\.json has no "secretKey"/],
    [['sign', module, '--manifest', 'manifest.json', '--key', 'nosuch.json', '--out', 'x.wasm'], /E_IO: --key nosuch\.json/],
    [['sign', module, '--manifest', 'nosuch.json', '--key', 'key.json', '--out', 'x.wasm'], /E_IO: --manifest nosuch\.json/],
    [['sign', module, '--manifest', 'manifest.json', '--key', 'manifest.json', '--out', 'x.wasm'], /E_INVALID_ARGUMENT: --key/],
    [['verify', module, '--trust', 'é'.repeat(64)], /E_BAD_KEY: trustedKeys\[0\]/],
    [['sign', 'nosuch.wasm', '--manifest', 'manifest.json', '--key', 'key.json'], /E_IO: cannot read agent module nosuch\.wasm/],
  ]) {
    const r = run(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.doesNotMatch(r.stderr, /Undefined|StringExpected|panicked/);
  }
});

test('every export of index.js is also a named ES-module export', async () => {
  const esm = await import('../index.js');
  const missing = Object.keys(lockstep).filter((k) => !(k in esm));
  assert.deepEqual(missing, [], 'cjs-module-lexer stops at the first export it cannot read');
});

test('spawnMany that hits the agent limit part-way names the agents it did spawn', () => {
  const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = lockstep;
  const rt = new Runtime({ workers: 1, maxAgents: 3, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  assert.throws(
    () => rt.spawnMany(exampleAgent('counter'), 5),
    (e) => e.code === 'E_AGENT_LIMIT' && Array.isArray(e.spawnedIds) && e.spawnedIds.join() === '1,2,3' && /3 of 5/.test(e.message),
  );
  assert.deepEqual(rt.agents(), [1, 2, 3]);
  rt.close();
});
