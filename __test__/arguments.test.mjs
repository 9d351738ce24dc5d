// Every bad argument through every entry point (Runtime options and methods, replay, the
// signing functions, setLogger, the rings) is a LockstepError with a stable code and a
// message that names the argument: never a raw napi error (ArrayExpected, StringExpected with
// the object dumped...), never a silent wrap (2^32 + 3 read as 3), never a panic.
// Regression of issue 9, item 4/5: many of these failed on 921d60e.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createContext, runInContext } from 'node:vm';
const require = createRequire(import.meta.url);
const lockstep = require('../index.js');
const { Runtime, LockstepError, exampleAgent, EXAMPLES_PUBLIC_KEY, replay, sign, verify, inspect, setLogger, createRingBuffer, RingProducer, RingConsumer } = lockstep;

const KEY = EXAMPLES_PUBLIC_KEY;
const counter = readFileSync(exampleAgent('counter'));
const MLP = new URL('../models/mlp_classifier.onnx', import.meta.url);
const weird = [undefined, null, true, 'x', -1, 1.5, NaN, Infinity, 2 ** 32 + 3, 2 ** 64, 10n, {}, [], () => {}, Symbol('s'), new Float64Array(2)];

function checkError(e, label, name) {
  assert.ok(e instanceof LockstepError, `${label}: not a LockstepError: ${e && e.stack}`);
  assert.match(e.code, /^E_[A-Z_]+$/, `${label}: code ${e.code}`);
  assert.ok(e.message.includes(name), `${label}: the message does not name ${name}: ${e.message}`);
  assert.doesNotMatch(e.message, /Expected|Undefined|panicked/, label);
  return true;
}

/** [label, call, the argument name the message must contain] */
function cases() {
  const rt = new Runtime({ workers: 1, trustedKeys: [KEY] });
  const id = rt.spawn(counter);
  const model = rt.loadModel(MLP);
  const ringBuffer = createRingBuffer(4096);
  const producer = new RingProducer(ringBuffer);
  const consumer = new RingConsumer(ringBuffer);
  const log = rt.replayLog();
  const t = (type, data, dims) => ({ x: { type, data, dims } });
  const list = [];
  const add = (label, fn, name) => list.push([label, fn, name]);

  // new Runtime(options): every option, wrong types and out-of-range values.
  const numeric = {
    workers: [0, 257, 1.5, -1, '2', 2 ** 32 + 1],
    fuelPerCall: [-1, 1.5, '10', 2 ** 64, 10n],
    memoryLimitBytes: [-1, 1.5, '1', 10, 2 ** 53],
    seed: [-1, 0.5, '42', 2 ** 64, 42n],
    maxAgents: [0, 2 ** 32 + 3, -5, '10', 1.5],
    deadlineMs: [0, 2 ** 32 + 1, -1, '5'],
    checkpointIntervalTicks: [-1, 2 ** 32, 'never', 0.5],
    maxEvents: [-1, 2 ** 32, '100', 1.5],
  };
  for (const [key, values] of Object.entries(numeric)) {
    for (const value of values) add(`new Runtime({ ${key}: ${String(value)} })`, () => new Runtime({ [key]: value }), key);
  }
  for (const key of ['record', 'inferenceBatching', 'devMode']) {
    for (const value of ['yes', 1, null, {}]) add(`new Runtime({ ${key}: ${String(value)} })`, () => new Runtime({ [key]: value }), key);
  }
  for (const value of [KEY, 42, null, {}, [42], [null]]) add(`trustedKeys: ${String(value)}`, () => new Runtime({ trustedKeys: value }), 'trustedKeys');
  for (const value of ['nothex', 'é'.repeat(64), 'zz'.repeat(32), KEY.slice(1)]) add(`trustedKeys: [${value}]`, () => new Runtime({ trustedKeys: [value] }), 'trustedKeys[0]');
  for (const value of ['strict', 1, null, true]) add(`resourcePolicy: ${String(value)}`, () => new Runtime({ resourcePolicy: value }), 'resourcePolicy');
  for (const value of ['all', 1, [], null]) add(`policy: ${String(value)}`, () => new Runtime({ policy: value }), 'policy');
  add('policy: { send: 42 }', () => new Runtime({ policy: { send: 42 } }), 'policy');
  const cycle = {};
  cycle.self = cycle;
  add('policy: a cycle', () => new Runtime({ policy: cycle }), 'policy');
  add('policy: a BigInt inside', () => new Runtime({ policy: { send: 1n } }), 'policy');
  add('unknown option', () => new Runtime({ wrokers: 2 }), 'wrokers');
  add('options: a string', () => new Runtime('fast'), 'options');
  for (const value of ['cpu', 42, null, [42], ['quantum']]) add(`inference.providers: ${String(value)}`, () => new Runtime({ inference: { providers: value } }), 'providers');
  for (const value of [0, -1, 2 ** 32, '4']) add(`inference.maxModels: ${value}`, () => new Runtime({ inference: { maxModels: value } }), 'maxModels');
  for (const value of [0, -1, 2 ** 53, '1']) add(`inference.maxModelBytes: ${value}`, () => new Runtime({ inference: { maxModelBytes: value } }), 'maxModelBytes');
  add('inference.deterministic: "yes"', () => new Runtime({ inference: { deterministic: 'yes' } }), 'deterministic');
  add('inference.ortLibraryPath: 42', () => new Runtime({ inference: { ortLibraryPath: 42 } }), 'ortLibraryPath');
  add('inference: "cpu"', () => new Runtime({ inference: 'cpu' }), 'inference');
  add('inference: unknown key', () => new Runtime({ inference: { provider: ['cpu'] } }), 'provider');

  // Runtime methods.
  for (const value of [42, null, undefined, {}, true]) add(`loadModule(${String(value)})`, () => rt.loadModule(value), 'source');
  for (const value of [42, null, {}]) add(`spawn(${String(value)})`, () => rt.spawn(value), 'source');
  for (const value of [2 ** 31, -(2 ** 31) - 1, 1.5, '1', 10n]) add(`spawn priority ${String(value)}`, () => rt.spawn(counter, { priority: value }), 'priority');
  add('spawn options: a number', () => rt.spawn(counter, 5), 'options');
  add('spawn options: unknown key', () => rt.spawn(counter, { prio: 1 }), 'prio');
  for (const value of [-1, 1.5, 2 ** 32, '3', undefined]) add(`spawnMany count ${String(value)}`, () => rt.spawnMany(counter, value), 'count');
  for (const value of [-1, 1.5, '1', null, undefined, 10n, NaN, 2 ** 65]) add(`send to ${String(value)}`, () => rt.send(value, 'x'), 'to');
  for (const value of [42, {}, true]) add(`send payload ${String(value)}`, () => rt.send(id, value), 'payload');
  for (const value of [-1, 2 ** 32, 1.5, '1']) add(`send kind ${String(value)}`, () => rt.send(id, 'x', { kind: value }), 'kind');
  for (const value of [2 ** 31, 1.5, '1']) add(`send priority ${String(value)}`, () => rt.send(id, 'x', { priority: value }), 'priority');
  for (const value of [0, -1, 1.5, 2 ** 32, '2', null, 10n]) add(`tick(${String(value)})`, () => rt.tick(value), 'n');
  for (const method of ['shutdown', 'kill', 'inspect', 'graphInfo']) {
    for (const value of [-1, 1.5, '1', undefined, null, {}]) add(`${method}(${String(value)})`, () => rt[method](value), 'id');
  }
  // The workflow graph.
  for (const value of [0, -1, 1.5, '1', undefined, null, 10n, NaN]) {
    add(`connect(${String(value)}, id)`, () => rt.connect(value, id), 'from');
    add(`connect(id, ${String(value)})`, () => rt.connect(id, value), 'to');
    add(`disconnect(${String(value)}, id)`, () => rt.disconnect(value, id), 'from');
    add(`setTrigger(${String(value)}, 'all')`, () => rt.setTrigger(value, 'all'), 'id');
  }
  for (const value of ['ALL', 'some', 1, null, undefined, true]) add(`setTrigger(id, ${String(value)})`, () => rt.setTrigger(id, value), 'trigger');
  for (const value of [id, '1', {}, null]) add(`spawn after ${String(value)}`, () => rt.spawn(counter, { after: value }), 'options.after');
  for (const value of [0, -1, 1.5, '1', null]) add(`spawn after [${String(value)}]`, () => rt.spawn(counter, { after: [value] }), 'options.after[0]');
  for (const value of ['every', 1, null, true]) add(`spawn trigger ${String(value)}`, () => rt.spawn(counter, { trigger: value }), 'options.trigger');
  for (const value of ['every', 1]) add(`spawnMany trigger ${String(value)}`, () => rt.spawnMany(counter, 2, { trigger: value }), 'options.trigger');
  for (const value of [3, 2 ** 31, '4096', -4096]) add(`attachRings inboundBytes ${value}`, () => rt.attachRings({ inboundBytes: value }), 'inboundBytes');
  add('attachRings outboundBytes', () => rt.attachRings({ outboundBytes: 100 }), 'outboundBytes');
  add('attachRings options: a number', () => rt.attachRings(4096), 'options');
  for (const value of [42, null, {}]) add(`loadModel(${String(value)})`, () => rt.loadModel(value), 'source');
  for (const method of ['modelInfo', 'unloadModel', 'registerAgentModel']) {
    for (const value of [42, null, model, undefined]) add(`${method}(${String(value)})`, () => rt[method](value), 'id');
  }
  for (const value of [42, null, model, undefined]) add(`inferSync(model: ${String(value)})`, () => rt.inferSync(value, t('float32', new Float32Array(4), [1, 4])), 'model');
  for (const value of [null, 42, 'x', [1]]) add(`inferSync(inputs: ${String(value)})`, () => rt.inferSync(model.id, value), 'inputs');
  add('inferSync: tensor is a number', () => rt.inferSync(model.id, { x: 4 }), 'inputs["x"]');
  add('inferSync: float32 with Float64Array', () => rt.inferSync(model.id, t('float32', new Float64Array(4), [1, 4])), 'inputs["x"].data');
  add('inferSync: int64 with Int32Array', () => rt.inferSync(model.id, t('int64', new Int32Array(4), [1, 4])), 'inputs["x"].data');
  add('inferSync: data is an array', () => rt.inferSync(model.id, t('float32', [1, 2, 3, 4], [1, 4])), 'inputs["x"].data');
  add('inferSync: bad type', () => rt.inferSync(model.id, t('complex64', new Float32Array(4), [1, 4])), 'inputs["x"].type');
  add('inferSync: dims length', () => rt.inferSync(model.id, t('float32', new Float32Array(4), [2, 4])), 'inputs["x"]');
  add('inferSync: dims not integers', () => rt.inferSync(model.id, t('float32', new Float32Array(4), [1, 'four'])), 'inputs["x"].dims[1]');
  add('inferSync: bad input name', () => rt.inferSync(model.id, { 'a:b': { type: 'float32', data: new Float32Array(4), dims: [1, 4] } }), 'a:b');

  // replay
  for (const value of [null, undefined, 42, {}]) add(`replay(${String(value)})`, () => replay(value), 'log');
  for (const value of [0, 257, 1.5, '2', -1]) add(`replay workers ${String(value)}`, () => replay(log, { workers: value }), 'workers');
  add('replay onProgress: a string', () => replay(log, { onProgress: 'console.log' }), 'onProgress');
  add('replay options: a number', () => replay(log, 2), 'options');
  for (const value of [42, 'bytes', {}, null]) add(`replay snapshot: ${String(value)}`, () => replay(log, { snapshot: value }), 'snapshot');

  // Snapshots: Runtime.restore(snapshot, options) takes new Runtime()'s options and modules.
  const snapshot = rt.snapshot();
  for (const value of [null, undefined, 42, 'bytes', {}]) add(`Runtime.restore(${String(value)})`, () => Runtime.restore(value), 'snapshot');
  add('Runtime.restore options: a number', () => Runtime.restore(snapshot, 2), 'options');
  add('Runtime.restore options: an unknown key', () => Runtime.restore(snapshot, { workerz: 2 }), 'workerz');
  for (const value of [0, 257, 1.5, '2']) add(`Runtime.restore workers ${String(value)}`, () => Runtime.restore(snapshot, { workers: value }), 'workers');
  for (const value of [-1, 0.5, 2 ** 64]) add(`Runtime.restore seed ${String(value)}`, () => Runtime.restore(snapshot, { seed: value }), 'seed');
  for (const value of ['abc', [42], [null]]) add(`Runtime.restore modules ${String(value)}`, () => Runtime.restore(snapshot, { trustedKeys: [KEY], modules: value }), 'modules');
  add('Runtime.restore modules: not a hash', () => Runtime.restore(snapshot, { trustedKeys: [KEY], modules: ['nothex'] }), 'nothex');

  // Signing tools.
  for (const value of [42, null, {}]) add(`sign(module: ${String(value)})`, () => sign(value, {}, 'k'), 'module');
  for (const value of [42, null, [1], true]) add(`sign(manifest: ${String(value)})`, () => sign(counter, value, 'k'), 'manifest');
  add('sign(manifest: a cycle)', () => sign(counter, cycle, 'k'), 'manifest');
  for (const value of [undefined, 42, null, { secretKey: 'x' }, 'nothex', 'é'.repeat(64)]) add(`sign(secretKey: ${String(value)})`, () => sign(counter, { name: 'c', version: '1', abi: 1 }, value), 'secretKey');
  for (const value of [KEY, undefined, null, 42, [42]]) add(`verify(trustedKeys: ${String(value)})`, () => verify(counter, value), 'trustedKeys');
  for (const value of ['nothex', 'é'.repeat(64), ` ${'g'.repeat(64)}`]) add(`verify(trustedKeys: [${value}])`, () => verify(counter, [value]), 'trustedKeys[0]');
  for (const value of [42, null, {}]) add(`verify(module: ${String(value)})`, () => verify(value, [KEY]), 'module');
  for (const value of [42, null, {}]) add(`inspect(${String(value)})`, () => inspect(value), 'module');

  // Logs.
  for (const value of [42, 'console.log', {}]) add(`setLogger(${String(value)})`, () => setLogger(value), 'sink');
  for (const value of ['loud', 3, null]) add(`setLogger level ${String(value)}`, () => setLogger(() => {}, { level: value }), 'level');
  add('exampleAgent(42)', () => exampleAgent(42), 'name');

  // Rings.
  for (const value of [3, 1 << 31, '4096', 4096.5, 100]) add(`createRingBuffer(${String(value)})`, () => createRingBuffer(value), 'capacity');
  for (const value of [new ArrayBuffer(8192), new SharedArrayBuffer(64), 42, null, new Uint8Array(8)]) {
    add(`new RingProducer(${String(value)})`, () => new RingProducer(value), 'buffer');
    add(`new RingConsumer(${String(value)})`, () => new RingConsumer(value), 'buffer');
  }
  for (const value of [-1, 1.5, '1', null, 10n, NaN, 2 ** 64]) add(`tryPush(to: ${String(value)})`, () => producer.tryPush(value, 'x'), 'to');
  add('tryPush payload', () => producer.tryPush(1, 42), 'payload');
  for (const value of [-1, 2 ** 32, 1.5]) add(`tryPush kind ${value}`, () => producer.tryPush(1, 'x', { kind: value }), 'kind');
  for (const value of [2 ** 31, 'high']) add(`tryPush priority ${value}`, () => producer.tryPush(1, 'x', { priority: value }), 'priority');
  add('tryPush publish', () => producer.tryPush(1, 'x', { publish: 'no' }), 'publish');
  add('forEach(fn: 42)', () => consumer.forEach(42), 'fn');
  add('forEach(max: -1)', () => consumer.forEach(() => {}, -1), 'max');
  add('readBatch(max: "2")', () => consumer.readBatch('2'), 'max');
  return { list, rt, producer };
}

test('every bad argument through every entry point is a LockstepError naming the argument', () => {
  const { list, rt } = cases();
  assert.ok(list.length > 200, `${list.length} cases`);
  for (const [label, fn, name] of list) {
    let threw = false;
    try {
      fn();
    } catch (e) {
      threw = true;
      checkError(e, label, name);
    }
    assert.ok(threw, `${label}: did not throw`);
  }
  // Nothing above changed the runtime's state.
  assert.equal(rt.agents().length, 1);
  rt.close();
});

test('push() checks its arguments and options (rejects with a LockstepError naming them)', async () => {
  const producer = new RingProducer(createRingBuffer(4096));
  const bad = [
    [() => producer.push(-1, 'x'), 'to'],
    [() => producer.push(1, 'x', { timeoutMs: -1 }), 'timeoutMs'],
    [() => producer.push(1, 'x', { timeoutMs: '100' }), 'timeoutMs'],
    [() => producer.push(1, 'x', { pollMs: 0 }), 'pollMs'],
    [() => producer.push(1, 'x', { pollMs: 2 ** 40 }), 'pollMs'],
    [() => producer.push(1, 'x', { kind: -1 }), 'kind'],
    [() => producer.push(1, 'x', 'fast'), 'options'],
    [() => producer.push(1, 'x', { timeout: 5 }), 'timeout'],
  ];
  for (const [fn, name] of bad) await assert.rejects(fn(), (e) => checkError(e, fn.toString(), name));
});

test('odd but valid arguments still work', () => {
  const rt = new Runtime({ workers: 1, trustedKeys: [` ${KEY.toUpperCase()}\n`], maxAgents: 16, seed: Number.MAX_SAFE_INTEGER });
  const id = rt.spawn(counter, {});
  rt.send(id, null, {});
  rt.send(id, new ArrayBuffer(3));
  rt.send(id, new Float64Array(2), { kind: 2 ** 32 - 1, priority: -(2 ** 31) });
  assert.equal(rt.tick(2).tick, 1);
  for (const w of weird) {
    // None of these reaches napi unchecked: each either works (undefined = the default) or is typed.
    try {
      rt.tick(w);
    } catch (e) {
      checkError(e, `tick(${String(w)})`, 'n');
    }
  }
  rt.close();
});

test("bytes of another realm (a vm context, as Jest's test environment is) are taken everywhere a realm's own are", () => {
  // An ArrayBuffer made in a vm context is not `instanceof` this realm's: send, tryPush and
  // loadModule refused it as "not an ArrayBuffer".
  const context = createContext({});
  const foreign = (bytes) => runInContext('(b) => { const a = new ArrayBuffer(b.length); new Uint8Array(a).set(b); return a; }', context)(bytes);
  const payload = foreign(Uint8Array.from([1, 2, 3]));
  assert.equal(payload instanceof ArrayBuffer, false);
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const module = rt.loadModule(foreign(readFileSync(exampleAgent('echo'))));
  const id = rt.spawn(module);
  rt.send(id, payload);
  const { inbound } = rt.attachRings({ inboundBytes: 1 << 16, outboundBytes: 1 << 16 });
  assert.equal(inbound.tryPush(id, payload), true);
  assert.equal(rt.tick().messagesDelivered, 2);
  rt.close();
});
