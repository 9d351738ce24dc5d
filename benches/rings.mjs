// Message-throughput benchmarks, each beside its baselines in the same run. Imported by
// benches/run.mjs; `node benches/rings.mjs` runs it alone.
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, exampleAgent, createRingBuffer, RingProducer, EXAMPLES_PUBLIC_KEY } = require('../index.js');
const ringPath = require.resolve('../ring.js');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const now = () => Number(process.hrtime.bigint()) / 1e9;

/** `agents` counters on 2 workers, a 16 MiB inbound ring, a payload of `payloadBytes`, one tick run. */
function ringSetup(payloadBytes, agents) {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2, record: false });
  const ids = rt.spawnMany(exampleAgent('counter'), agents);
  const { inbound } = rt.attachRings({ inboundBytes: 1 << 24, outboundBytes: 1 << 16 });
  const payload = new Uint8Array(payloadBytes).fill(7);
  rt.tick();
  return { rt, ids, inbound, payload };
}

/**
 * Each JS → agents path below first sends `warmup` messages the same way, untimed, then times
 * `total` more: the figures are steady-state rates. A fresh runtime's first ticks grow every
 * inbox and touch its agents' and the ring's pages for the first time (2-5x a steady tick,
 * about a tenth of a 2,000,000-message run); the baselines are warmed alike (their workers'
 * JIT, their rings' pages). `ring_js_to_agents_cold` keeps the cold-start figure beside them.
 */

/**
 * JS → agents through the inbound ring: pushed in JS, delivered to agent_receive. Pipelined,
 * as a producer feeding the runtime at full rate would do it (README, "Rings"): JS pushes the
 * next tick's records while `tickAsync` runs this one on the pool (a tick drains what was
 * published when it starts), so the producer and the tick use both cores, as the two threads of
 * the pure-JS ring below do. `perTick` records a tick.
 */
async function ringToAgents(total, payloadBytes, warmup = 0, agents = 1000, perTick = 50_000) {
  const { rt, ids, inbound, payload } = ringSetup(payloadBytes, agents);
  const pipeline = async (count) => {
    let pushed = 0;
    let delivered = 0;
    let inFlight = null;
    while (delivered < count) {
      for (let k = 0; k < perTick && pushed < count && inbound.tryPush(ids[pushed % agents], payload, { publish: false }); k++) pushed++;
      inbound.publish();
      if (inFlight) delivered += (await inFlight).messagesDelivered;
      inFlight = rt.tickAsync(1);
    }
    await inFlight;
  };
  if (warmup > 0) await pipeline(warmup);
  const t0 = now();
  await pipeline(total);
  const rate = total / (now() - t0);
  rt.close(); // runtimes made in a loop: free each now, not at GC
  return rate;
}

/** The same, one step at a time: push a tick's records, then tick() (the producer waits for the tick). */
function ringToAgentsSequential(total, payloadBytes, warmup = 0, agents = 1000) {
  const { rt, ids, inbound, payload } = ringSetup(payloadBytes, agents);
  const steps = (count) => {
    let pushed = 0;
    let delivered = 0;
    while (delivered < count) {
      while (pushed < count && inbound.tryPush(ids[pushed % agents], payload, { publish: false })) pushed++;
      inbound.publish();
      delivered += rt.tick().messagesDelivered;
    }
  };
  if (warmup > 0) steps(warmup);
  const t0 = now();
  steps(total);
  const rate = total / (now() - t0);
  rt.close();
  return rate;
}

/** The same traffic with one napi call per message (rt.send). */
function napiToAgents(total, payloadBytes, warmup = 0, agents = 1000) {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2, record: false });
  const ids = rt.spawnMany(exampleAgent('counter'), agents);
  const payload = new Uint8Array(payloadBytes).fill(7);
  const batch = 1 << 16;
  const sends = (count) => {
    let delivered = 0;
    for (let sent = 0; sent < count; ) {
      const end = Math.min(count, sent + batch);
      for (; sent < end; sent++) rt.send(ids[sent % agents], payload);
      delivered += rt.tick().messagesDelivered;
    }
    if (delivered !== count) throw new Error(`delivered ${delivered} of ${count}`);
  };
  if (warmup > 0) sends(warmup);
  const t0 = now();
  sends(total);
  const rate = total / (now() - t0);
  rt.close();
  return rate;
}

function worker(code, workerData) {
  return new Worker(code, { eval: true, workerData });
}

/** worker_threads postMessage of one Uint8Array per message, main → worker. */
async function postMessageRate(total, payloadBytes, warmup = 0) {
  // The worker answers once after the warm-up messages, and once after the rest.
  const w = worker(`const { parentPort, workerData } = require('node:worker_threads');
    let n = 0; parentPort.on('message', () => { ++n; if (n === workerData.warmup) parentPort.postMessage(n); if (n === workerData.warmup + workerData.total) { parentPort.postMessage(n); process.exit(0); } });`, { total, warmup });
  await new Promise((r) => w.once('online', r));
  const payload = new Uint8Array(payloadBytes).fill(7);
  if (warmup > 0) {
    const warm = new Promise((r) => w.once('message', r));
    for (let i = 0; i < warmup; i++) w.postMessage(payload);
    await warm;
  }
  const t0 = now();
  const done = new Promise((r) => w.once('message', r));
  for (let i = 0; i < total; i++) w.postMessage(payload);
  await done;
  return total / (now() - t0);
}

/** A MessageChannel port handed to a worker. */
async function messageChannelRate(total, payloadBytes, warmup = 0) {
  const { port1, port2 } = new MessageChannel();
  const w = new Worker(`const { workerData } = require('node:worker_threads');
    let n = 0; workerData.port.on('message', () => { ++n; if (n === workerData.warmup) workerData.port.postMessage(n); if (n === workerData.warmup + workerData.total) { workerData.port.postMessage(n); workerData.port.close(); } });`,
    { eval: true, workerData: { port: port2, total, warmup }, transferList: [port2] });
  await new Promise((r) => w.once('online', r));
  const payload = new Uint8Array(payloadBytes).fill(7);
  if (warmup > 0) {
    const warm = new Promise((r) => port1.once('message', r));
    for (let i = 0; i < warmup; i++) port1.postMessage(payload);
    await warm;
  }
  const t0 = now();
  const done = new Promise((r) => port1.once('message', r));
  for (let i = 0; i < total; i++) port1.postMessage(payload);
  await done;
  const rate = total / (now() - t0);
  port1.close();
  await w.terminate();
  return rate;
}

/** A pure-JS SharedArrayBuffer ring between two threads (our ring.js on both ends). */
async function pureJsRingRate(total, payloadBytes, warmup = 0) {
  const sab = createRingBuffer(1 << 22);
  // The consumer reads exactly the warm-up records first and says so, then the rest.
  const w = worker(`const { parentPort, workerData } = require('node:worker_threads');
    const { RingConsumer } = require(${JSON.stringify(ringPath)});
    const c = new RingConsumer(workerData.sab); let n = 0;
    const head = new Int32Array(workerData.sab);
    for (const goal of [workerData.warmup, workerData.warmup + workerData.total]) {
      while (n < goal) { const k = c.forEach(() => {}, goal - n); n += k; if (k === 0) Atomics.wait(head, 16, Atomics.load(head, 16), 1); }
      parentPort.postMessage(n);
    }`, { sab, total, warmup });
  await new Promise((r) => w.once('online', r));
  const p = new RingProducer(sab);
  const payload = new Uint8Array(payloadBytes).fill(7);
  const head = new Int32Array(sab);
  const push = async (count) => {
    const done = new Promise((r) => w.once('message', r));
    for (let i = 0; i < count; ) {
      if (p.tryPush(1, payload, { publish: false })) i++;
      else {
        p.publish();
        Atomics.notify(head, 16);
      }
      if ((i & 1023) === 0) p.publish();
    }
    p.publish();
    Atomics.notify(head, 16);
    await done;
  };
  await push(warmup); // (0: the worker answers at once)
  const t0 = now();
  await push(total);
  return total / (now() - t0);
}

/** Agents → JS: echo agents answer; read through the outbound ring vs drainMessages(). */
function agentsToJs(total, payloadBytes, viaRing) {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 2, record: false });
  const ids = rt.spawnMany(exampleAgent('echo'), 1000);
  const rings = viaRing ? rt.attachRings({ inboundBytes: 1 << 24, outboundBytes: 1 << 24 }) : null;
  const payload = new Uint8Array(payloadBytes).fill(7);
  // Half the ring per tick (and far below 4,096 replies per echo agent per tick).
  const perTick = Math.floor((1 << 24) / (24 + payloadBytes + 8) / 2);
  let read = 0;
  let sent = 0;
  let elapsed = 0;
  while (read < total) {
    const n = Math.min(perTick, total - sent);
    for (let i = 0; i < n; i++, sent++) {
      if (viaRing) rings.inbound.tryPush(ids[sent % 1000], payload, { publish: false }) || (() => { throw new Error('inbound full'); })();
      else rt.send(ids[sent % 1000], payload);
    }
    if (viaRing) rings.inbound.publish();
    rt.tick();
    // Time only the JS side of reading what agents sent.
    const t0 = now();
    if (viaRing) {
      do {
        read += rings.outbound.forEach((type) => type === 1 || read--);
      } while (rt.flushOutbound() > 0);
    } else {
      read += rt.drainMessages().length;
    }
    elapsed += now() - t0;
  }
  rt.close();
  return total / elapsed;
}

export async function runRingBenches({ quick = false, log = console.error } = {}) {
  const N = quick ? 200_000 : 2_000_000;
  const reps = quick ? 1 : 3;
  const out = {};
  for (const bytes of [64, 1024]) {
    const n = bytes === 64 ? N : Math.floor(N / 4);
    log(`[bench] messages/s, ${bytes}-byte payloads, ${n} messages, median of ${reps}`);
    const r = {};
    const measure = async (name, fn) => {
      const xs = [];
      for (let i = 0; i < reps; i++) xs.push(await fn());
      r[name] = Math.round(median(xs));
    };
    // Warm-up: an eighth as many messages again (250,000 of 64 bytes: more than a lap of the
    // runtime's 16 MiB ring, and its first five ticks).
    const warm = Math.floor(n / 8);
    await measure('ring_js_to_agents', () => ringToAgents(n, bytes, warm));
    await measure('ring_js_to_agents_cold', () => ringToAgents(n, bytes, 0));
    await measure('ring_js_to_agents_sequential', () => ringToAgentsSequential(n, bytes, warm));
    await measure('napi_call_per_message', () => napiToAgents(n, bytes, warm));
    await measure('worker_postMessage', () => postMessageRate(n, bytes, warm));
    await measure('message_channel', () => messageChannelRate(n, bytes, warm));
    await measure('pure_js_sab_ring', () => pureJsRingRate(n, bytes, warm));
    await measure('agents_to_js_ring_read', () => agentsToJs(Math.min(n, 1_000_000), bytes, true));
    await measure('agents_to_js_drainMessages', () => agentsToJs(Math.min(n, 1_000_000), bytes, false));
    r.ratio_ring_vs_postMessage = +(r.ring_js_to_agents / r.worker_postMessage).toFixed(2);
    r.ratio_ring_vs_pure_js_ring = +(r.ring_js_to_agents / r.pure_js_sab_ring).toFixed(2);
    r.ratio_sequential_vs_pure_js_ring = +(r.ring_js_to_agents_sequential / r.pure_js_sab_ring).toFixed(2);
    r.ratio_ring_vs_napi_call = +(r.ring_js_to_agents / r.napi_call_per_message).toFixed(2);
    out[`payload_${bytes}`] = r;
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await runRingBenches({ quick: process.argv.includes('--quick') }), null, 2));
}
