'use strict';
// The journal cursor of the dashboard's time travel, in its own thread (dashboard/travel.js).
// A seek restores the nearest snapshot and replays up to a journal's snapshot interval of
// ticks: up to seconds of work, which on the main thread stalled the live runtime (the main
// thread settles every tick). Here it only takes a core. One request at a time, in order.
//
// In: { id, op: 'range' | 'seek' | 'agentAt', args, reopen }. Out: { id, ok, data | error, endTick }.

const { parentPort, workerData } = require('node:worker_threads');
const { openJournal } = require('../index.js');
const { STATES } = require('./observer.js');

const { dir, options, moduleNames } = workerData;
let cursor = null;
/** agentAt's last reply (the page asks again for the agent it shows, with every poll). */
let last = null;

class RequestError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function open(reopen) {
  if (cursor && !reopen) return cursor;
  // The old cursor's state and snapshot cache are freed now: this thread makes almost no JS
  // garbage, so collection (which would free them) might not come for many reopens.
  if (cursor) cursor.close();
  cursor = null;
  cursor = openJournal(dir, options);
  last = null;
  return cursor;
}

function pastEnd(tick, c) {
  if (tick > c.endTick) throw new RequestError('bad_request', `tick ${tick} is past the journal's end (tick ${c.endTick})`);
}

/** As the live summary counts: a suspended agent (in the middle of a time-sliced call) is running. */
function stateOf(info) {
  if (info.fault && info.fault.kind === 'preempted') return 'preempted';
  return info.state === 'suspended' ? 'running' : info.state;
}

const OPS = {
  range(c) {
    return { firstTick: c.firstTick, endTick: c.endTick, snapshots: c.snapshotTicks() };
  },

  /** The whole session at `tick`: agents by state, and a page of the agent table. */
  seek(c, a) {
    pastEnd(a.tick, c);
    const r = c.seek(a.tick);
    const ids = c.agents();
    const modules = [];
    const moduleIndex = new Map();
    const rows = [];
    const byState = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (let i = 0; i < ids.length; i++) {
      const inPage = i >= a.offset && i < a.offset + a.limit;
      const info = c.inspect(ids[i]);
      const state = stateOf(info);
      if (Object.hasOwn(byState, state)) byState[state]++;
      if (!inPage) continue;
      if (!moduleIndex.has(info.module)) {
        moduleIndex.set(info.module, modules.length);
        modules.push({ hash: info.module, name: moduleNames[info.module] ?? null });
      }
      rows.push({
        id: ids[i],
        module: moduleIndex.get(info.module),
        state,
        steps: info.steps,
        inbox: info.inboxLen,
        received: info.messagesReceived,
        sent: info.messagesSent,
        memory: info.memoryBytes,
        fuel: info.fuelConsumed,
      });
    }
    return {
      tick: r.tick,
      firstTick: c.firstTick,
      endTick: c.endTick,
      fromSnapshot: r.fromSnapshot,
      ticksReplayed: r.ticksReplayed,
      stateHash: c.stateHash(),
      total: ids.length,
      agents: { total: ids.length, ...byState },
      offset: a.offset,
      rows,
      modules,
    };
  },

  /** One agent at a tick of the journal: its state, and what it received and sent in that tick. */
  agentAt(c, a) {
    if (last && last.tick === a.tick && last.agent === a.agent && last.messages === a.messages) return last.reply;
    pastEnd(a.tick, c);
    c.seek(a.tick);
    const info = c.inspect(a.agent);
    const message = (m) => {
      const head = Buffer.from(m.payload).subarray(0, 32);
      return { tick: a.tick, from: m.from, to: m.to, seq: m.seq, kind: m.kind, bytes: m.payload.length, head: head.toString('hex'), text: /^[\x20-\x7e]*$/.test(head.toString('latin1')) ? head.toString('latin1') : null };
    };
    let messages = { inbound: [], outbound: [] };
    if (a.tick < c.endTick) {
      const mine = c.messagesAt(a.tick).find((x) => x.agent === a.agent);
      if (mine) messages = { inbound: mine.received.slice(0, a.messages).map(message), outbound: mine.sent.slice(0, a.messages).map(message) };
    }
    const reply = { tick: a.tick, info: { ...info, moduleName: moduleNames[info.module] ?? null }, messages };
    last = { tick: a.tick, agent: a.agent, messages: a.messages, reply };
    return reply;
  },
};

parentPort.on('message', ({ id, op, args, reopen }) => {
  let out;
  try {
    const c = open(reopen);
    out = { id, ok: true, data: OPS[op](c, args) };
  } catch (e) {
    // RequestError: the request's fault; LockstepError (E_…): the journal's or the runtime's.
    out = { id, ok: false, error: { request: e instanceof RequestError, code: String(e && e.code), message: String(e && e.message) } };
  }
  out.endTick = cursor ? cursor.endTick : -1;
  parentPort.postMessage(out);
});
