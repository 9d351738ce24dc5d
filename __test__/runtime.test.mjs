import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, LockstepError, exampleAgent, ABI_VERSION, MAX_PAYLOAD_BYTES, EXAMPLES_PUBLIC_KEY } = require('../index.js');

test('spawn from a path or bytes, send, tick, read the reply', () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const fromPath = rt.spawn(exampleAgent('counter'));
  const fromBytes = rt.spawn(readFileSync(exampleAgent('counter')));
  assert.deepEqual(rt.agents(), [fromPath, fromBytes]);
  assert.equal(rt.inspect(fromPath).module, rt.inspect(fromBytes).module, 'same bytes, same module hash');
  rt.tick(2);
  rt.send(fromBytes, 'how many?', { kind: 1 });
  const report = rt.tick();
  assert.equal(report.tick, 2);
  assert.equal(rt.currentTick, 3);
  assert.match(report.hash, /^[0-9a-f]{64}$/);
  assert.equal(report.hash, rt.stateHash());
  const [reply] = rt.drainMessages();
  assert.equal(reply.from, fromBytes);
  assert.equal(reply.kind, 2);
  assert.equal(reply.payload.readBigUInt64LE(0), 2n, 'two steps before the message arrived');
  assert.equal(reply.payload.readBigUInt64LE(8), 1n);
  const info = rt.inspect(fromBytes);
  assert.equal(info.state, 'running');
  assert.equal(info.steps, 3);
  assert.ok(info.memoryBytes > 0 && info.memoryBytes <= 1 << 20, `idle agent memory ${info.memoryBytes}`);
  assert.equal(ABI_VERSION, 2);
});

test('errors carry a code and a message that says what to do', () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const expectCode = (fn, code, re) => {
    assert.throws(fn, (e) => {
      assert.ok(e instanceof LockstepError, `${e}`);
      assert.equal(e.code, code);
      if (re) assert.match(e.message, re);
      return true;
    });
  };
  expectCode(() => rt.spawn(Buffer.from('definitely not wasm')), 'E_INVALID_MODULE', /wasm/);
  expectCode(() => rt.spawn('/no/such/agent.wasm'), 'E_IO', /cannot read/);
  const bytes = readFileSync(exampleAgent('counter'));
  const renamed = Buffer.from(bytes.toString('latin1').replace('agent_step', 'agent_stop'), 'latin1');
  expectCode(() => rt.spawn(renamed), 'E_BAD_SIGNATURE', /modified after signing/);
  // Without a signature (development mode), the same edit is caught by the ABI check.
  const unsigned = readFileSync(new URL('../guest/target/wasm32-unknown-unknown/release/counter.wasm', import.meta.url));
  const dev = new Runtime({ workers: 1, devMode: true });
  expectCode(() => dev.spawn(Buffer.from(unsigned.toString('latin1').replace('agent_step', 'agent_stop'), 'latin1')), 'E_MISSING_EXPORT', /agent_step/);
  expectCode(() => rt.send(12345, 'x'), 'E_UNKNOWN_AGENT', /spawn/);
  expectCode(() => rt.inspect(-1), 'E_INVALID_ARGUMENT', /id must be an agent id/);
  const id = rt.spawn(bytes);
  expectCode(() => rt.send(id, new Uint8Array(MAX_PAYLOAD_BYTES + 1)), 'E_MESSAGE_TOO_LARGE', /limit/);
  expectCode(() => new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], wrokers: 2 }), 'E_INVALID_CONFIG', /unknown option "wrokers"/);
  expectCode(() => new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 0 }), 'E_INVALID_CONFIG');
  expectCode(() => new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], memoryLimitBytes: 10 }), 'E_INVALID_CONFIG', /minimum/);
  expectCode(() => rt.tick(0), 'E_INVALID_ARGUMENT');
  // Still usable after every error.
  rt.send(id, 'ok', { kind: 1 });
  rt.tick();
  assert.equal(rt.drainMessages().length, 1);
});

test('faults are contained, reported as events, and their mail is dead-lettered', () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2, memoryLimitBytes: 4 << 20 });
  const spin = rt.spawn(exampleAgent('adv-spin'));
  const bomb = rt.spawn(exampleAgent('adv-membomb'));
  const trap = rt.spawn(exampleAgent('adv-trap'));
  const init = rt.spawn(exampleAgent('adv-panic-init'));
  const good = rt.spawn(exampleAgent('counter'));
  rt.send(trap, null, { kind: 1 }); // panic in receive
  rt.tick(3);
  rt.send(spin, 'too late');
  rt.tick();
  const faults = Object.fromEntries(rt.drainEvents().filter((e) => e.type === 'fault').map((e) => [e.agent, e.fault]));
  assert.equal(faults[spin].kind, 'fuel_exhausted');
  assert.equal(faults[bomb].kind, 'memory_limit');
  assert.equal(faults[trap].kind, 'panic');
  assert.equal(faults[trap].call, 'agent_receive');
  assert.match(faults[trap].detail, /asked to panic in receive/);
  assert.equal(faults[init].call, 'agent_init');
  assert.equal(rt.inspect(spin).state, 'preempted');
  assert.equal(rt.inspect(bomb).state, 'faulted');
  assert.equal(rt.inspect(good).steps, 4);
  const dead = rt.drainDeadLetters();
  assert.deepEqual(
    dead.map((d) => [d.message.to, d.reason]).sort(),
    [[spin, 'recipient_faulted'], [trap, 'recipient_faulted_during_delivery']].sort(),
  );
  assert.equal(dead.find((d) => d.message.to === spin).message.payload.toString(), 'too late');
});

test('graceful shutdown calls agent_shutdown; kill does not', () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const a = rt.spawn(exampleAgent('adv-trap'));
  const b = rt.spawn(exampleAgent('adv-trap'));
  rt.send(a, null, { kind: 3 }); // panic in shutdown
  rt.send(b, null, { kind: 3 });
  rt.tick();
  rt.shutdown(a);
  rt.kill(b);
  assert.equal(rt.inspect(a).state, 'faulted', 'agent_shutdown ran and panicked');
  assert.equal(rt.inspect(a).fault.call, 'agent_shutdown');
  assert.equal(rt.inspect(b).state, 'killed', 'kill skips agent_shutdown');
  assert.throws(() => rt.kill(b), { code: 'E_AGENT_NOT_RUNNING' });
});

test('priority phases: a higher-priority agent reaches a lower one within the tick', () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const server = rt.spawn(exampleAgent('ping-pong'), { priority: 1 });
  const peer = rt.spawn(exampleAgent('ping-pong'));
  const serve = Buffer.alloc(16);
  serve.writeBigUInt64LE(BigInt(peer), 0);
  rt.send(server, serve, { kind: 0 });
  rt.tick();
  assert.deepEqual(rt.drainMessages().map((m) => [m.from, m.kind]), [[peer, 9]]);
  assert.throws(() => rt.spawn(exampleAgent('counter'), { priority: 2 ** 40 }), { code: 'E_INVALID_ARGUMENT' });
});

test('workers: \'auto\' uses as many threads as the work calls for (report.workers), setWorkers() forces a count, and the hashes never change', () => {
  const run = (options, force) => {
    const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], seed: 4, ...options });
    rt.spawnMany(exampleAgent('gossip'), 40);
    const out = [];
    for (let t = 0; t < 12; t++) {
      if (t === 6) rt.spawnMany(exampleAgent('gossip'), 1100);
      if (force) rt.setWorkers(force(t));
      const r = rt.tick();
      out.push([r.hash, r.workers]);
    }
    rt.close();
    return out;
  };
  const one = run({ workers: 1 });
  const auto = run({ workers: 'auto', maxWorkers: 2 });
  assert.deepEqual(auto.map((x) => x[0]), one.map((x) => x[0]));
  assert.deepEqual(auto.map((x) => x[1]), [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2], '40 agents: 1 thread; 1,140: 2 (one per 512, at most maxWorkers)');
  const forced = run({ workers: 2 }, (t) => (t % 2) + 1);
  assert.deepEqual(forced.map((x) => x[0]), one.map((x) => x[0]));
  assert.deepEqual(forced.map((x) => x[1]), [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2]);
  assert.throws(() => new Runtime({ workers: 2, maxWorkers: 4 }), (e) => e.code === 'E_INVALID_CONFIG' && /maxWorkers/.test(e.message));
  assert.throws(() => new Runtime({ workers: 'many' }), (e) => e.code === 'E_INVALID_CONFIG');
  const rt = new Runtime({ workers: 2 });
  assert.throws(() => rt.setWorkers(3), (e) => e.code === 'E_INVALID_ARGUMENT');
  assert.throws(() => rt.setWorkers(0), (e) => e.code === 'E_INVALID_ARGUMENT');
  rt.close();
});
