// Shared by the dashboard tests: a runtime with agents, and a small promise-based protocol client.
import { once } from 'node:events';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const WebSocket = require('ws');
const lockstep = require('../index.js');
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = lockstep;

export { lockstep, WebSocket };

/** A runtime with `n` gossip agents (and the misbehaving ones when `adversarial`). */
export function gossipRuntime(n = 100, { adversarial = false, workers = 1, record = true, journal, fuelPerCall } = {}) {
  const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers, seed: 3, record, checkpointIntervalTicks: 10, journal, fuelPerCall });
  const gossip = rt.loadModule(exampleAgent('gossip'));
  const ids = rt.spawnMany(gossip, n);
  if (adversarial) for (const name of ['adv-spin', 'adv-trap']) ids.push(rt.spawn(exampleAgent(name)));
  return { rt, gossip, ids };
}

/** A protocol client: request(type, args) resolves with the reply ({ ok, data | error }). */
export class Client {
  constructor(ws) {
    this.ws = ws;
    this.next = 1;
    this.waiting = new Map();
    this.unmatched = [];
    this.hello = new Promise((resolve) => {
      this.resolveHello = resolve;
    });
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data));
      if (msg.type === 'hello' && msg.id === undefined) return this.resolveHello(msg.data);
      const w = this.waiting.get(msg.id);
      if (w) {
        this.waiting.delete(msg.id);
        w(msg);
      } else {
        this.unmatched.push(msg);
      }
    });
    this.closed = once(ws, 'close').then(([code, reason]) => ({ code, reason: String(reason) }));
  }

  request(type, args = {}) {
    const id = this.next++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.ws.send(JSON.stringify({ id, type, ...args }));
    });
  }

  /** The reply's data; throws if ok is false. */
  async data(type, args) {
    const r = await this.request(type, args);
    if (!r.ok) throw Object.assign(new Error(`${type}: ${r.error.code}: ${r.error.message}`), { reply: r });
    return r.data;
  }

  close() {
    this.ws.close();
    return this.closed;
  }
}

/** Connects with the protocol's subprotocol (and more `protocols`); resolves once open. */
export async function connect(server, { protocols = [], headers, origin, url } = {}) {
  const ws = new WebSocket(url ?? server.wsUrl, ['lockstep.v1', ...protocols], { headers, origin });
  const client = new Client(ws);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
  });
  await client.hello;
  return client;
}

/** The HTTP status an upgrade is refused with (or 101 if it is accepted). */
export function upgradeStatus(url, { protocols = ['lockstep.v1'], headers, origin } = {}) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, protocols, { headers, origin });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode);
      res.resume();
    });
    ws.once('error', () => resolve(-1));
  });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `pred()` holds (polling every 10 ms), up to `ms`. */
export async function until(pred, ms = 10_000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
