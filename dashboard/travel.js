'use strict';
// Time travel for the dashboard (docs/DASHBOARD.md, "Time travel"): the journal cursor runs in
// a worker thread (travel-worker.js), so a seek, which replays up to a snapshot interval of
// ticks, never runs on the main thread that settles the live runtime's ticks. The main
// thread only decides when the cursor must be reopened to see newer ticks (after syncing the
// runtime's own journal, which it must do between ticks) and bounds what waits.

const path = require('node:path');
const { Worker } = require('node:worker_threads');
const { LockstepError } = require('../errors.js');
const { RequestError } = require('./request-error.js');

/** Travel requests waiting or running, all clients together; past it: `busy`. */
const MAX_TRAVEL_WAITING = 16;
/** Of one client. */
const MAX_TRAVEL_WAITING_PER_CLIENT = 4;
/** The cursor is reopened (and the runtime's own journal synced) at most this often, in ms. */
const REOPEN_MIN_MS = 250;

class Travel {
  /**
   * @param source { dir, options, own } (own: the serving runtime's own journal, which must be
   *   synced before a reopen can see its newest ticks), or null: no time travel.
   * @param moduleNames hash → name, for the replies.
   * @param rt the serving runtime; `busy()`: whether a tick runs now; `whenFree(fn)`: runs fn
   *   when the runtime is next free (false: too much waits already).
   */
  constructor(source, moduleNames, { rt, busy, whenFree }) {
    this.source = source;
    this.moduleNames = moduleNames;
    this.rt = rt;
    this.busy = busy;
    this.whenFree = whenFree;
    this.worker = null;
    /** id → { resolve, reject, client, msg, need }: every request not answered yet. */
    this.waiting = new Map();
    /**
     * Ids of requests not yet handed to the thread, in arrival order (so one client's replies
     * come in the order of its requests). One request is in the thread at a time (`inThread`);
     * whether the cursor must be reopened first is decided when a request's turn comes, and
     * one whose client left meanwhile is dropped then instead of replayed for nobody.
     */
    this.queue = [];
    this.inThread = null;
    /** A timer or a whenFree() that will pump again (the head waits for REOPEN_MIN_MS or a free runtime). */
    this.pumpLater = false;
    this.nextId = 1;
    /** The cursor's end as its last reply said (-1: not opened yet). */
    this.endTick = -1;
    this.reopenedAt = -Infinity;
    /** For the server's stats(): requests handed to the thread, cursor reopens, the most waiting at once, requests dropped. */
    this.stats = { requests: 0, reopens: 0, maxWaiting: 0, dropped: 0 };
    this.closed = false;
    /**
     * The cursor's interrupt word (openJournal's `interrupt`): set at close and when the
     * process exits, it stops a seek within a tick of replay. Without it, a replay in progress
     * cannot be stopped, and Node waits for a worker's native call before the process ends.
     */
    this.interrupt = new Int32Array(new SharedArrayBuffer(4));
    this.onExit = () => Atomics.store(this.interrupt, 0, 1);
  }

  #start() {
    const w = new Worker(path.join(__dirname, 'travel-worker.js'), {
      workerData: { dir: this.source.dir, options: this.source.options, moduleNames: { ...this.moduleNames }, interrupt: this.interrupt },
    });
    if (!this.exitHooked) process.once('exit', this.onExit);
    this.exitHooked = true;
    // The live program decides when the process ends, not an idle cursor.
    w.unref();
    // A stopped thread's last answers are not this cursor's (their requests were rejected).
    w.on('message', (m) => {
      if (this.worker === w) this.#answer(m);
    });
    const gone = (why) => {
      if (this.worker !== w) return;
      this.worker = null;
      this.endTick = -1;
      this.inThread = null;
      this.#rejectAll(new RequestError('internal', `the time-travel thread stopped (${why}); ask again`));
    };
    w.on('error', (e) => gone(e && e.message));
    w.on('exit', (code) => gone(`exit code ${code}`));
    this.worker = w;
  }

  #rejectAll(error) {
    const all = [...this.waiting.values()];
    this.waiting.clear();
    this.queue = [];
    for (const p of all) {
      p.client.travelWaiting--;
      p.reject(error);
    }
  }

  /** Pumps again in `ms` (a timer) or when the runtime is free, once. */
  #pumpSoon(ms) {
    if (this.pumpLater) return;
    this.pumpLater = true;
    const again = () => {
      this.pumpLater = false;
      this.#pump();
    };
    if (ms > 0 || !this.whenFree(again)) setTimeout(again, Math.max(1, Math.ceil(ms))).unref();
  }

  /**
   * Hands the oldest waiting request to the thread, if none is there: first drops those whose
   * client left, and reopens the cursor if the request needs ticks past its end (syncing the
   * runtime's own journal first, which needs the runtime free; at most every REOPEN_MIN_MS).
   */
  #pump() {
    while (!this.closed && this.inThread === null && !this.pumpLater && this.queue.length > 0) {
      const id = this.queue[0];
      const p = this.waiting.get(id);
      if (p.client.dropped) {
        this.queue.shift();
        this.waiting.delete(id);
        p.client.travelWaiting--;
        this.stats.dropped++;
        p.reject(new RequestError('closed', 'the client left'));
        continue;
      }
      const first = this.endTick < 0;
      const reopen = !first && p.need > this.endTick;
      if (first || reopen) {
        const wait = this.reopenedAt + REOPEN_MIN_MS - performance.now();
        if (reopen && wait > 0) return this.#pumpSoon(wait);
        if (this.source.own) {
          if (this.busy()) return this.#pumpSoon(0);
          try {
            this.rt.syncJournal(); // the ticks written so far, complete on disk
          } catch (e) {
            this.queue.shift();
            this.waiting.delete(id);
            p.client.travelWaiting--;
            p.reject(e);
            continue;
          }
        }
        this.reopenedAt = performance.now();
        if (reopen) this.stats.reopens++;
      }
      if (!this.worker) this.#start();
      this.queue.shift();
      p.msg.reopen = reopen;
      this.inThread = id;
      this.stats.requests++;
      this.worker.postMessage(p.msg);
    }
  }

  #answer(m) {
    if (m.id === this.inThread) this.inThread = null;
    if (m.endTick >= 0) this.endTick = m.endTick;
    const p = this.waiting.get(m.id);
    if (p) {
      this.waiting.delete(m.id);
      p.client.travelWaiting--;
    }
    this.#pump();
    if (!p) return;
    if (m.ok) return p.resolve(m.data);
    const e = m.error;
    if (e.request) return p.reject(new RequestError(e.code, e.message));
    if (e.code === 'E_REPLAY_UNTRUSTED' && !this.source.own) {
      // The fix, in this server's terms: a journal given as a path trusts no publisher.
      return p.reject(new LockstepError(e.code, `${e.message}. For the dashboard: serve({ journal: { dir, trustedKeys: [...] } })`));
    }
    if (e.code.startsWith('E_')) return p.reject(new LockstepError(e.code, e.message));
    p.reject(new RequestError('internal', e.message));
  }

  /**
   * Runs `op` on the cursor, in turn; resolves with its reply. `tick`: the tick it visits.
   * A request that needs ticks past the cursor's end makes it reopen first: a seek past its
   * end; with the runtime's own journal, also an agentAt at its last tick once the runtime has
   * run it (its messages are in the journal by then).
   */
  request(op, args, tick, client) {
    if (this.closed) throw new RequestError('closed', 'the server is closing');
    if (this.waiting.size >= MAX_TRAVEL_WAITING) throw new RequestError('busy', `${MAX_TRAVEL_WAITING} time-travel requests wait already; try again`);
    if ((client.travelWaiting ?? 0) >= MAX_TRAVEL_WAITING_PER_CLIENT) {
      throw new RequestError('busy', `at most ${MAX_TRAVEL_WAITING_PER_CLIENT} time-travel requests per client wait; wait for their replies`);
    }
    const own = this.source.own;
    const live = own ? this.rt.currentTick : Infinity;
    // A tick the live runtime has not reached is refused without touching the journal.
    if (tick > live) throw new RequestError('bad_request', `tick ${tick} is past the journal's end (tick ${live})`);
    // The end of the journal the request needs the cursor to reach.
    const need = own && op === 'agentAt' ? Math.min(tick + 1, live) : tick;
    const id = this.nextId++;
    client.travelWaiting = (client.travelWaiting ?? 0) + 1;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, client, need, msg: { id, op, args, reopen: false } });
      if (this.waiting.size > this.stats.maxWaiting) this.stats.maxWaiting = this.waiting.size;
      this.queue.push(id);
      this.#pump();
    });
  }

  close() {
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    this.inThread = null;
    this.#rejectAll(new RequestError('closed', 'the server is closing'));
    // A seek in progress stops at its next tick; the thread is then terminated, not awaited
    // (see server.js close()), and is unref'd, so it holds nothing open meanwhile.
    this.onExit();
    process.removeListener('exit', this.onExit);
    if (w) w.terminate().catch(() => {});
  }
}

module.exports = { Travel };
