import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const { Runtime, RingProducer, RingConsumer, createRingBuffer, exampleAgent, replay, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const producerScript = fileURLToPath(new URL('./fixtures/ring-producer.cjs', import.meta.url));

test('a worker_thread produces 1,000,000 records; agents echo them back in order, none lost', async () => {
  const COUNT = 1_000_000;
  const PAYLOAD = 64;
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2, record: false });
  const agents = rt.spawnMany(exampleAgent('echo'), 64);
  const { outbound, inboundBuffer } = rt.attachRings({ inboundBytes: 1 << 20, outboundBytes: 1 << 20 });
  const worker = new Worker(producerScript, { workerData: { buffer: inboundBuffer, count: COUNT, agents, payloadBytes: PAYLOAD } });
  let workerDone = false;
  let workerError = null;
  worker.on('message', (m) => (m.error ? (workerError = m.error) : (workerDone = true)));

  const nextPerAgent = new Map(agents.map((a, i) => [a, i])); // agent a receives i, i+64, ...
  let received = 0;
  let checksum = 0;
  const started = Date.now();
  while (received < COUNT) {
    if (workerError) throw new Error(workerError);
    if (Date.now() - started > 120_000) throw new Error(`timed out at ${received} records`);
    rt.tick();
    rt.flushOutbound();
    outbound.forEach((type, from, kind, priority, payload) => {
      if (type !== 1) return;
      const seq = payload[0] | (payload[1] << 8) | (payload[2] << 16) | (payload[3] << 24);
      assert.equal(seq, nextPerAgent.get(from), `order from agent ${from}`);
      nextPerAgent.set(from, seq + agents.length);
      assert.equal(payload.length, PAYLOAD);
      assert.equal(kind, 7);
      for (let k = 4; k < PAYLOAD; k++) if (payload[k] !== ((seq + k) & 0xff)) assert.fail(`payload of ${seq} corrupted at ${k}`);
      checksum = (checksum + seq) % 2 ** 32;
      received++;
    });
    if (received < COUNT) await new Promise((r) => setImmediate(r));
  }
  assert.equal(received, COUNT);
  assert.equal(checksum, ((COUNT * (COUNT - 1)) / 2) % 2 ** 32);
  await new Promise((r) => (workerDone ? r() : worker.once('message', r)));
  assert.equal(rt.inboundRingError(), null);
});

test('the ring memory survives the worker that produced into it', async () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const [echo] = rt.spawnMany(exampleAgent('echo'), 1);
  const { outbound, inboundBuffer } = rt.attachRings({ inboundBytes: 1 << 16, outboundBytes: 1 << 16 });
  const worker = new Worker(producerScript, { workerData: { buffer: inboundBuffer, count: 100, agents: [echo], payloadBytes: 16 } });
  await new Promise((resolve, reject) => {
    worker.on('exit', resolve);
    worker.on('error', reject);
  });
  // The worker is gone; its view of the SharedArrayBuffer with it. Ticking reads and writes
  // the rings: this must neither crash nor read freed memory.
  for (let i = 0; i < 3; i++) rt.tick();
  const got = outbound.readBatch().filter((r) => r.type === 'message');
  assert.equal(got.length, 100);
  // A new producer (here, on the main thread) continues where the worker stopped.
  const again = new RingProducer(inboundBuffer);
  assert.ok(again.tryPush(echo, 'after the worker'));
  rt.tick();
  const last = outbound.readBatch().filter((r) => r.type === 'message');
  assert.equal(last[0].payload.toString(), 'after the worker');
  // Whatever came through the rings was recorded: the session replays.
  assert.equal(replay(rt.stopRecording()).ok, true);
});

test('a corrupted inbound index is detected and reported; the runtime carries on', () => {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  const [echo] = rt.spawnMany(exampleAgent('echo'), 1);
  const { inbound, inboundBuffer } = rt.attachRings({ inboundBytes: 1 << 12, outboundBytes: 1 << 12 });
  assert.ok(inbound.tryPush(echo, 'ok'));
  rt.tick();
  new Int32Array(inboundBuffer)[16] = 0x7fff0000; // head far beyond the capacity
  rt.tick();
  assert.match(rt.inboundRingError(), /corrupted \(head\)/);
  const ev = rt.drainEvents().find((e) => e.type === 'ring_error');
  assert.ok(ev, 'a ring_error event');
  rt.send(echo, 'direct still works');
  rt.tick();
  assert.equal(rt.inspect(echo).messagesReceived, 2);
});

test('ring API: back-pressure, bad buffers and oversized payloads are errors, not overwrites', () => {
  const sab = createRingBuffer(1 << 12);
  const p = new RingProducer(sab);
  const c = new RingConsumer(sab);
  let n = 0;
  while (p.tryPush(1, new Uint8Array(100))) n++;
  assert.equal(n, Math.floor(4096 / 128));
  assert.equal(c.forEach(() => {}), n);
  assert.ok(p.tryPush(1, new Uint8Array(100)));
  assert.throws(() => p.tryPush(1, new Uint8Array(70_000)), { code: 'E_MESSAGE_TOO_LARGE' });
  assert.throws(() => new RingProducer(new SharedArrayBuffer(8192)), { code: 'E_RING' });
  assert.throws(() => createRingBuffer(5000), { code: 'E_RING' });
});
