// Issue 11, item 8 ("What a new user hits"): each message and behaviour a new user tripped
// over, with what it must say now.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const lockstep = require('../index.js');
const { Runtime, LockstepError, exampleAgent, keygen, sign, verify, setLogger, EXAMPLES_PUBLIC_KEY } = lockstep;
const unsignedCounter = fileURLToPath(new URL('../guest/target/wasm32-unknown-unknown/release/counter.wasm', import.meta.url));
const root = fileURLToPath(new URL('..', import.meta.url));

const code = (c, re, not) => (e) => {
  assert.ok(e instanceof LockstepError, `not a LockstepError: ${e && e.stack}`);
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  if (not) assert.doesNotMatch(e.message, not);
  return true;
};
const rt = () => new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
/** BLAKE3 is not in node:crypto: the module id comes from a runtime that admits the module. */
const moduleId = (bytes, trustedKeys = []) => {
  const dev = new Runtime({ workers: 1, devMode: true, trustedKeys });
  const id = dev.loadModule(bytes);
  dev.close();
  return id;
};

test('exampleAgent with a misspelt name lists the valid names (and suggests one), not `npm run build`', () => {
  assert.throws(() => exampleAgent('gosip'), code('E_INVALID_ARGUMENT', /did you mean "gossip"\?.*echo.*flood.*gossip/s, /npm run build/));
  assert.throws(() => exampleAgent('nothing-like-it'), code('E_INVALID_ARGUMENT', /The example agents are: adv-membomb, .*ping-pong/, /did you mean/));
  assert.ok(exampleAgent('ping_pong').endsWith('ping_pong.wasm'), 'underscores still work');
});

test('send/request to a non-number id is an error naming its type; to 0 says 0 is the host', () => {
  const r = rt();
  const id = r.spawn(exampleAgent('counter'));
  assert.throws(() => r.send(String(id), 'x'), code('E_INVALID_ARGUMENT', /to must be an agent id: a number.*\(not a string\); got "1"/, /E_UNKNOWN_AGENT/));
  assert.throws(() => r.send(BigInt(id), 'x'), code('E_INVALID_ARGUMENT', /not a bigint/));
  assert.throws(() => r.send(0, 'x'), code('E_INVALID_ARGUMENT', /0, the host's own id \(HOST_ID\)/));
  assert.throws(() => r.inspect('1'), code('E_INVALID_ARGUMENT', /not a string/));
  r.close();
});

test('loadModel of a missing file says it cannot read the model (not "agent module")', () => {
  const r = rt();
  assert.throws(() => r.loadModel('/no/such/model.onnx'), code('E_IO', /cannot read model \/no\/such\/model\.onnx/, /agent module/));
  r.close();
});

test('E_UNSIGNED and E_UNTRUSTED_KEY name the module: its hash, and the file it was loaded from', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-newuser-'));
  const unsigned = join(dir, 'my-agent.wasm');
  copyFileSync(unsignedCounter, unsigned);
  const hash = moduleId(readFileSync(unsigned));
  const r = rt();
  assert.throws(() => r.spawn(unsigned), code('E_UNSIGNED', new RegExp(`^${unsigned.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: module ${hash} is not signed`)));
  assert.throws(() => r.loadModule(readFileSync(unsigned)), code('E_UNSIGNED', new RegExp(`^module ${hash} is not signed`)), 'bytes: the hash only');
  const signed = join(dir, 'signed.wasm');
  const publisher = keygen();
  const bytes = sign(unsigned, { name: 'c', version: '1', abi: 1, capabilities: { send: 'any' } }, publisher.secretKey);
  writeFileSync(signed, bytes);
  const signedHash = moduleId(bytes, [publisher.publicKey]);
  assert.throws(() => r.spawn(signed), code('E_UNTRUSTED_KEY', new RegExp(`signed\\.wasm: module ${signedHash} is signed by key [0-9a-f]{64}, which this runtime does not trust`)));
  assert.throws(() => r.spawn(new URL(`file://${signed}`)), code('E_UNTRUSTED_KEY', /signed\.wasm: module/));
  r.close();
});

test('a secret key passed as a trusted key is refused, saying it is a secret key', () => {
  // About half of secret keys are not points of the curve: refused when the runtime is made.
  const pairs = Array.from({ length: 64 }, () => keygen());
  const notAPoint = pairs.find((p) => {
    try {
      new Runtime({ workers: 1, trustedKeys: [p.secretKey] }).close();
      return false;
    } catch {
      return true;
    }
  });
  assert.throws(() => new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY, notAPoint.secretKey] }), code('E_INVALID_CONFIG', /trustedKeys\[1\].*is it a secret key\? Pass the publicKey/));
  assert.throws(() => verify(readFileSync(unsignedCounter), [notAPoint.secretKey]), code('E_BAD_KEY', /secret key/));
  // The others look like public keys: the module their pair signed is refused, saying why.
  const point = pairs.find((p) => p !== notAPoint && (() => {
    try {
      new Runtime({ workers: 1, trustedKeys: [p.secretKey] }).close();
      return true;
    } catch {
      return false;
    }
  })());
  const r = new Runtime({ workers: 1, trustedKeys: [point.secretKey] });
  const signed = sign(unsignedCounter, { name: 'c', version: '1', abi: 1, capabilities: { send: 'any' } }, point.secretKey);
  assert.throws(() => r.spawn(signed), code('E_UNTRUSTED_KEY', new RegExp(`trustedKeys holds that publisher's SECRET key instead of this public key.*${point.publicKey}|${point.publicKey}.*SECRET key`, 's')));
  r.close();
});

test('stopRecording() twice says recording already stopped (not "create it with record: true")', () => {
  const r = rt();
  r.tick(2);
  r.stopRecording();
  assert.throws(() => r.stopRecording(), code('E_NOT_RECORDING', /recording already stopped: stopRecording\(\) returned the log at tick 2/, /record: true/));
  r.close();
  const never = new Runtime({ workers: 1, record: false });
  assert.throws(() => never.stopRecording(), code('E_NOT_RECORDING', /record: true/));
  never.close();
});

test('an unregistered model slot answers status 1 and is logged naming the agent and the slot; log lines carry agent and tick', () => {
  const lines = [];
  setLogger((l) => lines.push(l), { level: 'warn' });
  try {
    const r = rt();
    const classifier = r.spawn(exampleAgent('classifier')); // asks slot 0: nothing registered
    r.tick(3);
    const event = r.drainEvents().find((e) => e.type === 'log' && /model slot 0 is not registered/.test(e.text));
    assert.ok(event, 'a log event');
    assert.equal(event.agent, classifier);
    assert.equal(event.tick, 0);
    assert.match(event.text, /status 1 \(no such model\).*registerAgentModel/);
    const line = lines.find((l) => /model slot 0 is not registered/.test(l.message));
    assert.ok(line, JSON.stringify(lines));
    assert.deepEqual([line.agent, line.tick, line.target], [classifier, 0, 'lockstep::agent']);
    // A fault's line too.
    const spin = r.spawn(exampleAgent('adv-spin'));
    r.tick();
    const fault = lines.find((l) => /fuel_exhausted/.test(l.message));
    assert.deepEqual([fault.agent, fault.tick], [spin, 3]);
    assert.doesNotMatch(fault.message, /agent=|tick=/, 'in their fields, not in the text');
    // A line about no agent has neither.
    assert.throws(() => r.spawn(unsignedCounter), { code: 'E_UNSIGNED' });
    const refused = lines.find((l) => /module refused/.test(l.message));
    assert.equal(refused.agent, undefined);
    r.close();
  } finally {
    setLogger(null);
  }
});

test('inspect of a faulted agent keeps the memory size and fuel it had when it died', () => {
  const r = rt();
  const trap = r.spawn(exampleAgent('adv-trap'));
  r.tick(2);
  const alive = r.inspect(trap);
  r.send(trap, 'die', { kind: 1 });
  r.tick();
  const dead = r.inspect(trap);
  assert.equal(dead.state, 'faulted');
  assert.ok(dead.memoryBytes >= alive.memoryBytes && alive.memoryBytes > 0, `not 0: ${dead.memoryBytes}`);
  assert.ok(dead.fuelConsumed > alive.fuelConsumed, 'not 0: what it burned, its last call included');
  r.close();
});

test('tick(n) returns the report of the last tick run: report.tick is its number, currentTick the next one', () => {
  const r = rt();
  const report = r.tick(10);
  assert.equal(report.tick, 9);
  assert.equal(r.currentTick, 10);
  const dts = readFileSync(join(root, 'index.d.ts'), 'utf8');
  assert.match(dts, /`tick\(10\)` returns `tick: 9` and\s+\* `currentTick` is then 10/);
  assert.match(readFileSync(join(root, 'README.md'), 'utf8'), /tick\(10\)` returns a report with `tick: 9`/);
  r.close();
});

test('after attachRings(), drainMessages() returns nothing: messages to the host go to the outbound ring (as documented)', () => {
  const r = rt();
  const counter = r.spawn(exampleAgent('counter'));
  const { outbound } = r.attachRings({ inboundBytes: 1 << 12, outboundBytes: 1 << 12 });
  r.send(counter, 'x', { kind: 1 });
  r.tick();
  assert.deepEqual(r.drainMessages(), []);
  assert.equal(outbound.readBatch().filter((x) => x.type === 'message').length, 1);
  for (const doc of ['README.md', 'index.d.ts', 'docs/RINGS.md']) {
    assert.match(readFileSync(join(root, doc), 'utf8'), /drainMessages\(\)[^.]*(returns|return)\s+(none|nothing)/, doc);
  }
  assert.match(readFileSync(join(root, 'docs/RINGS.md'), 'utf8'), /one producer/i);
  r.close();
});

test('the README API table lists Runtime methods and module functions apart, each where it is', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = (title) => {
    const start = readme.indexOf(title);
    assert.ok(start >= 0, `README has "${title}"`);
    const rows = readme.slice(start).split('\n').filter((l) => l.startsWith('| `'));
    const end = readme.slice(start).split('\n').findIndex((l, i) => i > 2 && !l.startsWith('|'));
    return readme.slice(start).split('\n').slice(0, end).filter((l) => rows.includes(l));
  };
  const names = (rows) => rows.flatMap((r) => [...r.split(' | ')[0].matchAll(/`(?:new )?([A-Za-z]+)[(`]/g)].map((m) => m[1]));
  const runtime = names(section('**Runtime** methods'));
  const module = names(section('**Module** functions'));
  const proto = new Set([...Object.getOwnPropertyNames(Runtime.prototype), 'Runtime']);
  for (const n of runtime) assert.ok(proto.has(n), `${n} is listed as a Runtime method but is not one`);
  for (const n of module) assert.ok(n in lockstep, `${n} is listed as a module function but lockstep does not export it`);
  assert.ok(!runtime.includes('replay') && module.includes('replay') && module.includes('replayAsync'));
  for (const n of ['tickAsync', 'request', 'run', 'loadModelAsync', 'close']) assert.ok(runtime.includes(n), n);
});
