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
const { RequestError } = require('./request-error.js');

const { dir, options, moduleNames, interrupt } = workerData;
/** Sessions of at most this many agents keep every agent's state of the tick last visited (`view`). */
const MAX_VIEW_AGENTS = 20_000;
let cursor = null;
/**
 * The tick last visited, as read there: every agent's state (up to MAX_VIEW_AGENTS agents),
 * the state hash and, once asked, what each agent received and sent in that tick. Reading the
 * messages steps the cursor one tick on (`messagesAt`), so without this a seek or an agentAt
 * at the same tick afterwards went back: a restore and up to a snapshot interval of replay
 * for what was just read.
 */
let view = null;

function open(reopen) {
  if (cursor && !reopen) return cursor;
  // The old cursor's state and snapshot cache are freed now: this thread makes almost no JS
  // garbage, so collection (which would free them) might not come for many reopens.
  if (cursor) cursor.close();
  cursor = null;
  view = null;
  cursor = openJournal(dir, { ...options, interrupt });
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

/** The session at `tick`: the view (read now, or kept from the last visit) and what the seek did. */
function viewAt(c, tick) {
  pastEnd(tick, c);
  if (view && view.tick === tick) return { v: view, report: { tick, ticksReplayed: 0, fromSnapshot: null } };
  view = null;
  const report = c.seek(tick);
  const ids = c.agents();
  const infos = new Map();
  const byState = Object.fromEntries(STATES.map((st) => [st, 0]));
  for (const id of ids) {
    const info = c.inspect(id);
    const state = stateOf(info);
    if (Object.hasOwn(byState, state)) byState[state]++;
    infos.set(id, info);
  }
  const v = { tick, ids, infos, byState, stateHash: c.stateHash(), messages: null };
  if (ids.length <= MAX_VIEW_AGENTS) view = v;
  return { v, report };
}

const OPS = {
  range(c) {
    return { firstTick: c.firstTick, endTick: c.endTick, snapshots: c.snapshotTicks() };
  },

  /** The whole session at `tick`: agents by state, and a page of the agent table. */
  seek(c, a) {
    const { v, report } = viewAt(c, a.tick);
    const modules = [];
    const moduleIndex = new Map();
    const rows = [];
    for (const id of v.ids.slice(a.offset, a.offset + a.limit)) {
      const info = v.infos.get(id);
      if (!moduleIndex.has(info.module)) {
        moduleIndex.set(info.module, modules.length);
        modules.push({ hash: info.module, name: moduleNames[info.module] ?? null });
      }
      rows.push({
        id,
        module: moduleIndex.get(info.module),
        state: stateOf(info),
        steps: info.steps,
        inbox: info.inboxLen,
        received: info.messagesReceived,
        sent: info.messagesSent,
        memory: info.memoryBytes,
        fuel: info.fuelConsumed,
      });
    }
    return {
      tick: report.tick,
      firstTick: c.firstTick,
      endTick: c.endTick,
      fromSnapshot: report.fromSnapshot,
      ticksReplayed: report.ticksReplayed,
      stateHash: v.stateHash,
      total: v.ids.length,
      agents: { total: v.ids.length, ...v.byState },
      offset: a.offset,
      rows,
      modules,
    };
  },

  /** One agent at a tick of the journal: its state, and what it received and sent in that tick. */
  agentAt(c, a) {
    const { v } = viewAt(c, a.tick);
    const info = v.infos.get(a.agent);
    if (!info) throw Object.assign(new Error(`no agent ${a.agent} at tick ${a.tick} of the journal`), { code: 'E_UNKNOWN_AGENT' });
    const message = (m) => {
      const head = Buffer.from(m.payload).subarray(0, 32);
      return { tick: a.tick, from: m.from, to: m.to, seq: m.seq, kind: m.kind, bytes: m.payload.length, head: head.toString('hex'), text: /^[\x20-\x7e]*$/.test(head.toString('latin1')) ? head.toString('latin1') : null };
    };
    let messages = { inbound: [], outbound: [] };
    if (a.tick < c.endTick) {
      // Steps the cursor to tick + 1; the view keeps what was read at tick.
      if (v.messages === null) v.messages = c.messagesAt(a.tick);
      const mine = v.messages.find((x) => x.agent === a.agent);
      if (mine) messages = { inbound: mine.received.slice(0, a.messages).map(message), outbound: mine.sent.slice(0, a.messages).map(message) };
    }
    return { tick: a.tick, info: { ...info, moduleName: moduleNames[info.module] ?? null }, messages };
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
