// Time slicing through the JS API (issue 16, part 1): spawn(..., { fuelPerTick }) and
// rt.setFuelPerTick suspend a call that burns its slice instead of killing it; inspect() says
// 'suspended', events and the tick report count it, other agents keep stepping every tick,
// snapshots refuse a suspended agent, and the session replays and hashes alike on any worker
// count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, replay, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');

const trust = { trustedKeys: [EXAMPLES_PUBLIC_KEY] };

/** A spinner (adv-spin: loops for ever in agent_step) with a slice of a tenth of its budget, and a counter. */
function session(workers) {
  const rt = new Runtime({ ...trust, workers, fuelPerCall: 1_000_000, record: true });
  const spinner = rt.spawn(exampleAgent('adv-spin'), { fuelPerTick: 100_000 });
  const counter = rt.spawn(exampleAgent('counter'));
  return { rt, spinner, counter };
}

test('a spinning agent with a slice is suspended each tick, not killed, until its per-call budget is spent', () => {
  const { rt, spinner, counter } = session(1);
  assert.equal(rt.inspect(spinner).fuelPerTick, 100_000);
  const reports = [];
  for (let t = 0; t < 12; t++) {
    reports.push(rt.tick());
    // The other agent steps every tick.
    assert.equal(rt.inspect(counter).steps, t + 1);
    if (t < 9) {
      const info = rt.inspect(spinner);
      assert.equal(info.state, 'suspended', `tick ${t}`);
      assert.equal(info.suspendedCall, 'agent_step');
    }
  }
  assert.deepEqual(reports.map((r) => r.agentsSuspended), [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
  const info = rt.inspect(spinner);
  assert.equal(info.state, 'preempted');
  assert.equal(info.fault.kind, 'fuel_exhausted');
  const events = rt.drainEvents();
  assert.equal(events.filter((e) => e.type === 'suspended').length, 1, 'once per call');
  const resumed = events.find((e) => e.type === 'resumed');
  assert.deepEqual([resumed.agent, resumed.call, resumed.ticks], [spinner, 'agent_step', 9]);
});

test('a snapshot refuses a suspended agent, and a sliced session replays and hashes alike on 1 and 2 workers', () => {
  const runs = [1, 2].map((workers) => {
    const { rt, spinner } = session(workers);
    assert.equal(rt.inspect(spinner).fuelPerTick, 100_000);
    const hashes = [];
    for (let t = 0; t < 12; t++) {
      hashes.push(rt.tick().hash);
      if (t === 3) assert.throws(() => rt.snapshot(), (e) => e.code === 'E_SNAPSHOT_UNSUPPORTED' && /suspended in agent_step/.test(e.message));
    }
    return { hashes, log: rt.stopRecording() };
  });
  assert.deepEqual(runs[1].hashes, runs[0].hashes);
  const report = replay(runs[0].log, { ...trust });
  assert.equal(report.complete, true);
  assert.equal(report.ticksVerified, 12);
});

test('setFuelPerTick and the fuelPerTick option say what is wrong, and spawn nothing when refused', () => {
  const rt = new Runtime({ ...trust, fuelPerCall: 1_000_000 });
  const m = rt.loadModule(exampleAgent('counter'));
  assert.throws(() => rt.spawn(m, { fuelPerTick: 2_000_000 }), (e) => e.code === 'E_INVALID_ARGUMENT' && /per-call fuel budget/.test(e.message));
  assert.equal(rt.agents().length, 0, 'nothing spawned');
  assert.throws(() => rt.spawn(m, { fuelPerTick: -1 }), (e) => e.code === 'E_INVALID_ARGUMENT');
  const id = rt.spawn(m, { fuelPerTick: 5_000 });
  rt.setFuelPerTick(id, 0);
  assert.equal(rt.inspect(id).fuelPerTick, 0);
  assert.throws(() => rt.setFuelPerTick(id, 1.5), (e) => e.code === 'E_INVALID_ARGUMENT');
  assert.throws(() => rt.setFuelPerTick(999, 10), (e) => e.code === 'E_UNKNOWN_AGENT');
  const unmetered = new Runtime({ ...trust, fuelPerCall: 0 });
  assert.throws(() => unmetered.spawn(exampleAgent('counter'), { fuelPerTick: 10 }), (e) => /fuel metering/.test(e.message));
});
