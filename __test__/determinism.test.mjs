import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const { replay, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const { runScenario } = require('./fixtures/scenario.cjs');
const scenarioScript = fileURLToPath(new URL('./fixtures/scenario.cjs', import.meta.url));

test('1 and 4 workers, twice: identical per-tick hashes', () => {
  const one = runScenario({ workers: 1 });
  const four = runScenario({ workers: 4 });
  const again = runScenario({ workers: 4 });
  assert.deepEqual(four.hashes, one.hashes);
  assert.deepEqual(again.hashes, one.hashes);
  assert.equal(four.deep, one.deep);
  assert.equal(new Set(one.hashes).size, one.hashes.length, 'every tick hash is new');
  for (const run of [one, four, again]) run.rt.close();
});

test('two separate processes: identical per-tick hashes', () => {
  const runs = [1, 3].map((workers) => JSON.parse(execFileSync(process.execPath, [scenarioScript, String(workers)], { encoding: 'utf8' })));
  assert.deepEqual(runs[0].hashes, runs[1].hashes);
  assert.equal(runs[0].deep, runs[1].deep);
  const here = runScenario({ workers: 2 });
  assert.deepEqual(runs[0].hashes, here.hashes, 'and the same as in this process');
  here.rt.close();
});

test('a recorded session replays exactly; a tampered one names tick and agent', () => {
  const { rt, hashes } = runScenario({ workers: 2 });
  const log = rt.stopRecording();
  const ok = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 3 });
  assert.equal(ok.ok, true);
  assert.equal(ok.complete, true, 'a stopped recording is a whole session');
  assert.equal(ok.ticksVerified, hashes.length);
  assert.equal(ok.checkpointsVerified, 5, 'ticks 5, 10, 15, 20 and the final deepHash()');
  assert.equal(ok.finalHash, hashes.at(-1));

  // Change the text of the host's message at tick 4 ("tick 4") to "tick 5" and fix the CRC.
  const tampered = Buffer.from(log);
  const at = tampered.indexOf('tick 4');
  assert.ok(at > 0);
  tampered[at + 5] = '5'.charCodeAt(0);
  fixCrcAround(tampered, at);
  const bad = replay(tampered, { trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  assert.equal(bad.ok, false);
  assert.equal(bad.complete, false, 'the replay stopped at the divergence');
  assert.equal(bad.divergence.kind, 'tick_hash');
  assert.equal(bad.divergence.tick, 4);
  assert.equal(bad.divergence.agent, 153, 'the counter agent received the altered message');
  assert.equal(bad.ticksVerified, 4);

  assert.throws(() => replay(log.subarray(0, log.length - 3), { trustedKeys: [EXAMPLES_PUBLIC_KEY] }), { code: 'E_REPLAY_CORRUPT' });
  // Cut at the last record boundary (the End record dropped): a prefix, verified but not complete.
  const prefix = replay(log.subarray(0, log.length - 97), { trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  assert.equal(prefix.ok, true);
  assert.equal(prefix.complete, false);
  assert.equal(prefix.ticksVerified, hashes.length);
  // A snapshot while recording continues carries its own End record.
  const { rt: live } = runScenario({ workers: 1 });
  const snapshot = replay(live.replayLog(), { trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  assert.equal(snapshot.ok && snapshot.complete, true);
  live.tick();
  assert.equal(replay(live.replayLog(), { trustedKeys: [EXAMPLES_PUBLIC_KEY] }).complete, true, 'a later snapshot too');
  assert.throws(() => replay(Buffer.from('LOCKSTEP but not really'), { trustedKeys: [EXAMPLES_PUBLIC_KEY] }), { code: 'E_REPLAY_CORRUPT' });
});

/** Recomputes the CRC of the record containing byte `at` (format in docs/REPLAY.md). */
function fixCrcAround(buf, at) {
  const { crc32 } = require('node:zlib');
  let pos = 16;
  for (;;) {
    const len = buf.readUInt32LE(pos + 1);
    const end = pos + 5 + len;
    if (at < end) {
      buf.writeUInt32LE(crc32(buf.subarray(pos, end)) >>> 0, end);
      return;
    }
    pos = end + 4;
  }
}

test('a long replay reports progress', () => {
  const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  rt.spawnMany(exampleAgent('counter'), 3);
  rt.tick(250);
  const seen = [];
  assert.equal(replay(rt.stopRecording(), { trustedKeys: [EXAMPLES_PUBLIC_KEY], onProgress: (n) => seen.push(n) }).ok, true);
  assert.deepEqual(seen, [100, 200]);
});

test('a replay log never grants itself trust: its modules run only under the caller\'s trustedKeys or devMode', () => {
  const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');
  const { readFileSync } = require('node:fs');
  const unsignedCounter = fileURLToPath(new URL('../guest/target/wasm32-unknown-unknown/release/counter.wasm', import.meta.url));
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  rt.spawnMany(exampleAgent('counter'), 2);
  rt.tick(3);
  const log = rt.stopRecording();
  assert.throws(() => replay(log), (e) => e.code === 'E_REPLAY_UNTRUSTED' && /trustedKeys/.test(e.message));
  assert.throws(() => replay(log, { devMode: true }), { code: 'E_REPLAY_UNTRUSTED' }, 'devMode admits unsigned modules, not a foreign key');
  assert.equal(replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY] }).complete, true);
  const dev = new Runtime({ workers: 1, devMode: true });
  dev.spawn(readFileSync(unsignedCounter));
  dev.tick(2);
  const devLog = dev.stopRecording();
  assert.throws(() => replay(devLog, { trustedKeys: [EXAMPLES_PUBLIC_KEY] }), { code: 'E_REPLAY_UNTRUSTED' });
  assert.equal(replay(devLog, { devMode: true }).ok, true);
});
