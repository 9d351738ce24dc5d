// DAG workflows through the JS API (issue 16, part 2): rt.connect/disconnect/setTrigger/edges/
// graphInfo and spawn(..., { after, trigger }); a map → shuffle → reduce → report pipeline of
// the wordcount example agent delivers along its edges within one tick; a trigger 'all' barrier
// waits; cycles are E_DAG_CYCLE naming the cycle; replay, snapshots and worker counts change
// nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, replay, exampleAgent, EXAMPLES_PUBLIC_KEY, LockstepError } = require('../index.js');

const trust = { trustedKeys: [EXAMPLES_PUBLIC_KEY] };
const [CONFIG, TEXT, SUMMARY, FLUSH] = [100, 1, 3, 4];
const [MAPPER, SHUFFLER, REDUCER, REPORTER] = [1, 2, 3, 4];

function configure(rt, id, role, targets) {
  const b = Buffer.alloc(5 + 8 * targets.length);
  b.writeUInt8(role, 0);
  b.writeUInt32LE(targets.length, 1);
  targets.forEach((t, i) => b.writeBigUInt64LE(BigInt(t), 5 + 8 * i));
  rt.send(id, b, { kind: CONFIG });
}

/** The reporter's summaries: { tick, total, distinct }. */
function summaries(rt) {
  return rt
    .drainMessages()
    .filter((m) => m.kind === SUMMARY)
    .map((m) => ({ tick: Number(m.payload.readBigUInt64LE(0)), total: Number(m.payload.readBigUInt64LE(8)), distinct: m.payload.readUInt32LE(16) }));
}

/**
 * A word-count pipeline spawned in reverse (the reporter has the lowest id): 2 mappers → 2
 * shufflers → 3 reducers → reporter. With `edges`, connected as a DAG (the reporter a barrier).
 */
function pipeline({ workers = 1, edges = true } = {}) {
  const rt = new Runtime({ ...trust, workers, seed: 3 });
  const stage = rt.loadModule(exampleAgent('wordcount'));
  const reporter = rt.spawn(stage);
  const reducers = rt.spawnMany(stage, 3);
  const shufflers = rt.spawnMany(stage, 2);
  const mappers = rt.spawnMany(stage, 2);
  mappers.forEach((id) => configure(rt, id, MAPPER, shufflers));
  shufflers.forEach((id) => configure(rt, id, SHUFFLER, reducers));
  reducers.forEach((id) => configure(rt, id, REDUCER, [reporter]));
  configure(rt, reporter, REPORTER, []);
  if (edges) {
    for (const m of mappers) for (const s of shufflers) assert.equal(rt.connect(m, s), true);
    for (const s of shufflers) for (const r of reducers) rt.connect(s, r);
    for (const r of reducers) rt.connect(r, reporter);
    rt.setTrigger(reporter, 'all');
  }
  return { rt, mappers, shufflers, reducers, reporter };
}

const LINES = ['the quick brown fox jumps over the lazy dog', 'a graph of agents runs level by level', 'every tick the same words', 'fox and dog and graph'];

test('a pipeline connected as a DAG counts, shuffles, reduces and reports what was sent before a tick within that tick', () => {
  for (const edges of [true, false]) {
    const { rt, mappers } = pipeline({ edges });
    let fed = 0;
    const seen = [];
    for (let t = 0; t < 6; t++) {
      const line = LINES[t % LINES.length];
      rt.send(mappers[t % 2], line, { kind: TEXT });
      fed += line.split(' ').length;
      rt.tick();
      for (const s of summaries(rt)) seen.push({ ...s, fed });
    }
    if (edges) {
      assert.ok(seen.length >= 3, JSON.stringify(seen));
      for (const s of seen) assert.equal(s.total, s.fed, `tick ${s.tick}: everything sent so far is counted (${JSON.stringify(seen)})`);
    } else {
      // One phase: each stage's messages arrive a tick later, and the last words are not in yet.
      assert.ok(seen.every((s) => s.total < s.fed), JSON.stringify(seen));
    }
  }
});

test('connect, disconnect, setTrigger, edges and graphInfo; spawn { after, trigger }', () => {
  const rt = new Runtime({ ...trust, workers: 1 });
  const stage = rt.loadModule(exampleAgent('wordcount'));
  const a = rt.spawn(stage);
  const b = rt.spawn(stage, { after: [a] });
  const c = rt.spawn(stage, { after: [a, b, a], trigger: 'all' });
  assert.deepEqual(rt.edges(), [[a, b], [a, c], [b, c]]);
  assert.deepEqual([a, b, c].map((id) => rt.graphInfo(id)), [
    { trigger: 'any', level: 0 },
    { trigger: 'any', level: 1 },
    { trigger: 'all', level: 2 },
  ]);
  const ids = rt.spawnMany(stage, 3, { after: [c], priority: 2 });
  assert.deepEqual(ids.map((id) => rt.graphInfo(id).level), [3, 3, 3]);
  assert.equal(rt.connect(a, b), false, 'an existing edge');
  assert.equal(rt.disconnect(a, b), true);
  assert.equal(rt.disconnect(a, b), false);
  assert.equal(rt.graphInfo(c).level, 1);
  rt.setTrigger(c, 'any');
  assert.equal(rt.graphInfo(c).trigger, 'any');
  // A cycle is refused, naming it; nothing changes.
  const before = rt.edges();
  assert.throws(
    () => rt.connect(ids[0], a),
    (e) => e instanceof LockstepError && e.code === 'E_DAG_CYCLE' && e.message.includes(`${ids[0]} → ${a} → ${c} → ${ids[0]}`),
  );
  assert.throws(() => rt.connect(b, b), (e) => e.code === 'E_DAG_CYCLE' && e.message.includes(`${b} → ${b}`));
  assert.deepEqual(rt.edges(), before);
  // Unknown and stopped agents; bad arguments.
  assert.throws(() => rt.connect(a, 999), (e) => e.code === 'E_UNKNOWN_AGENT');
  assert.throws(() => rt.connect(0, a), (e) => e.code === 'E_INVALID_ARGUMENT' && /from/.test(e.message));
  assert.throws(() => rt.setTrigger(a, 'some'), (e) => e.code === 'E_INVALID_ARGUMENT' && /trigger/.test(e.message));
  const n = rt.agents().length;
  assert.throws(() => rt.spawn(stage, { after: [a, 999] }), (e) => e.code === 'E_UNKNOWN_AGENT');
  assert.throws(() => rt.spawn(stage, { after: a }), (e) => e.code === 'E_INVALID_ARGUMENT' && /options\.after/.test(e.message));
  assert.throws(() => rt.spawn(stage, { trigger: 'every' }), (e) => e.code === 'E_INVALID_ARGUMENT' && /options\.trigger/.test(e.message));
  assert.equal(rt.agents().length, n, 'a refused spawn spawned nothing');
  rt.kill(c);
  assert.throws(() => rt.connect(a, c), (e) => e.code === 'E_AGENT_NOT_RUNNING');
  assert.deepEqual(rt.edges(), [], "a stopped agent's edges go with it");
  assert.equal(rt.graphInfo(ids[0]).level, 0);
  rt.close();
});

test("trigger 'all' waits until every running upstream agent has sent, and the report says so", () => {
  const { rt, mappers, reducers } = pipeline();
  // One short line reaches only some reducers: the reporter waits for the others.
  rt.send(mappers[0], 'fox', { kind: TEXT });
  let r = rt.tick();
  assert.equal(r.agentsWaiting, 1);
  assert.deepEqual(summaries(rt), []);
  // A flush makes every reducer report: the barrier opens, with the count of tick 0 in.
  reducers.forEach((id) => rt.send(id, null, { kind: FLUSH }));
  r = rt.tick();
  assert.equal(r.agentsWaiting, 0);
  assert.deepEqual(summaries(rt), [{ tick: 1, total: 1, distinct: 1 }]);
  rt.close();
});

test('a DAG session replays exactly, restores from a snapshot with its graph, and hashes alike on 1, 2 and 4 workers', () => {
  const run = (workers) => {
    const { rt, mappers, shufflers, reducers, reporter } = pipeline({ workers });
    const hashes = [];
    for (let t = 0; t < 12; t++) {
      rt.send(mappers[t % 2], LINES[t % LINES.length], { kind: TEXT });
      if (t === 4) rt.disconnect(shufflers[1], reducers[2]);
      if (t === 7) rt.connect(shufflers[1], reducers[2]);
      if (t === 9) rt.setTrigger(reporter, 'any');
      hashes.push(rt.tick().hash);
    }
    return { rt, hashes };
  };
  const one = run(1);
  for (const workers of [2, 4]) assert.deepEqual(run(workers).hashes, one.hashes, `${workers} workers`);
  const bytes = one.rt.snapshot();
  const edges = one.rt.edges();
  const log = one.rt.stopRecording();
  const verdict = replay(log, { ...trust, workers: 3 });
  assert.ok(verdict.ok && verdict.complete && verdict.ticksVerified === 12, JSON.stringify(verdict));
  const later = [];
  for (let t = 0; t < 4; t++) later.push(one.rt.tick().hash);
  const back = Runtime.restore(bytes, { ...trust, workers: 2 });
  assert.deepEqual(back.edges(), edges);
  assert.deepEqual(Array.from({ length: 4 }, () => back.tick().hash), later);
  back.close();
  one.rt.close();
});
