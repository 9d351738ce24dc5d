'use strict';
// Time travel for the dashboard (docs/DASHBOARD.md, "Time travel"): the journal cursor runs in
// a worker thread (travel-worker.js), so a seek, which replays up to a snapshot interval of
// ticks, never runs on the main thread that settles the live runtime's ticks. The main
// thread only decides when the cursor must be reopened to see newer ticks (after syncing the
// runtime's own journal, which it must do between ticks) and bounds what waits.

const path = require('node:path');
const { Worker } = require('node:worker_threads');
const { LockstepError } = require('../errors.js');

/** Travel requests waiting or running, all clients together; past it: `busy`. */
const MAX_TRAVEL_WAITING = 16;
/** Of one client. */
const MAX_TRAVEL_WAITING_PER_CLIENT = 4;
/** The cursor is reopened (and the runtime's own journal synced) at most this often, in ms. */
const REOPEN_MIN_MS = 250;

class TravelError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

class Travel {
  /**
   * @param source { dir, options, own } (own: the serving runtime's own journal, which must be
   *   synced before a reopen can see its newest ticks), or null: no time travel.
   * @param moduleNames hash → name, for the replies.
   */
  constructor(source, moduleNames) {
    this.source = source;
    this.moduleNames = moduleNames;
    this.worker = null;
    /** id → { resolve, reject, client, msg }: every request not answered yet. */
    this.waiting = new Map();
    /**
     * Ids of requests not yet handed to the thread, oldest first. One request is in the thread
     * at a time (`inThread`), so that those of a client that left meanwhile are dropped here
     * instead of replayed for nobody.
     */
    this.queue = [];
    this.inThread = null;
    /** A reopen a dropped request would have done, for the next request handed over. */
    this.reopenOwed = false;
    this.nextId = 1;
    /** The cursor's end as its last reply said (-1: not opened yet). */
    this.endTick = -1;
    this.reopenedAt = -Infinity;
    /** Requests waiting for REOPEN_MIN_MS to pass. */
    this.delayed = 0;
    /** For the server's stats(): requests handed to the thread, cursor reopens, the most waiting at once. */
    this.stats = { requests: 0, reopens: 0, maxWaiting: 0, dropped: 0 };
    this.closed = false;
  }

  #start() {
    const w = new Worker(path.join(__dirname, 'travel-worker.js'), {
      workerData: { dir: this.source.dir, options: this.source.options, moduleNames: { ...this.moduleNames } },
    });
    // The live program decides when the process ends, not an idle cursor.
    w.unref();
    w.on('message', (m) => this.#answer(m));
    const gone = (why) => {
      if (this.worker !== w) return;
      this.worker = null;
      this.endTick = -1;
      this.queue = [];
      this.inThread = null;
      this.reopenOwed = false;
      for (const [, p] of this.waiting) {
        p.client.travelWaiting--;
        p.reject(new TravelError('internal', `the time-travel thread stopped (${why}); ask again`));
      }
      this.waiting.clear();
    };
    w.on('error', (e) => gone(e && e.message));
    w.on('exit', (code) => gone(`exit code ${code}`));
    this.worker = w;
  }

  /** Hands the oldest waiting request to the thread, if none is there; drops those of clients that left. */
  #pump() {
    while (this.inThread === null && this.queue.length > 0) {
      const id = this.queue.shift();
      const p = this.waiting.get(id);
      if (p.client.dropped) {
        this.waiting.delete(id);
        p.client.travelWaiting--;
        this.stats.dropped++;
        if (p.msg.reopen) this.reopenOwed = true;
        p.reject(new TravelError('closed', 'the client left'));
        continue;
      }
      if (this.reopenOwed) p.msg.reopen = true;
      this.reopenOwed = false;
      this.inThread = id;
      this.worker.postMessage(p.msg);
    }
  }

  #answer(m) {
    const p = this.waiting.get(m.id);
    if (m.id === this.inThread) this.inThread = null;
    if (!p) return this.#pump();
    this.waiting.delete(m.id);
    p.client.travelWaiting--;
    if (m.endTick >= 0) this.endTick = m.endTick;
    this.#pump();
    if (m.ok) return p.resolve(m.data);
    const e = m.error;
    if (e.request) return p.reject(new TravelError(e.code, e.message));
    if (e.code === 'E_REPLAY_UNTRUSTED' && !this.source.own) {
      // The fix, in this server's terms: a journal given as a path trusts no publisher.
      return p.reject(new LockstepError(e.code, `${e.message}. For the dashboard: serve({ journal: { dir, trustedKeys: [...] } })`));
    }
    if (e.code.startsWith('E_')) return p.reject(new LockstepError(e.code, e.message));
    p.reject(new TravelError('internal', e.message));
  }

  /**
   * Runs `op` on the cursor. `tick`: the tick it needs (the cursor is reopened first if it
   * ends before it); `rt`: the serving runtime, free (between ticks), for its own journal;
   * `whenFree(fn)`: runs fn when the runtime is next free (false: too much waits).
   */
  request(op, args, tick, client, rt, whenFree) {
    if (this.closed) throw new TravelError('closed', 'the server is closing');
    if (this.waiting.size + this.delayed >= MAX_TRAVEL_WAITING) throw new TravelError('busy', `${MAX_TRAVEL_WAITING} time-travel requests wait already; try again`);
    if ((client.travelWaiting ?? 0) >= MAX_TRAVEL_WAITING_PER_CLIENT) {
      throw new TravelError('busy', `at most ${MAX_TRAVEL_WAITING_PER_CLIENT} time-travel requests per client wait; wait for their replies`);
    }
    // A tick the live runtime has not reached is refused without touching the journal.
    if (this.source.own && tick > rt.currentTick) throw new TravelError('bad_request', `tick ${tick} is past the journal's end (tick ${rt.currentTick})`);
    let reopen = false;
    if (this.endTick >= 0 && tick > this.endTick) {
      const now = performance.now();
      const wait = this.reopenedAt + REOPEN_MIN_MS - now;
      // Reopened a moment ago: this request waits for the next reopen (syncing costs the
      // main thread a write and an fdatasync between ticks; at most one per REOPEN_MIN_MS).
      if (wait > 0) return this.#later(wait, op, args, tick, client, rt, whenFree);
      if (this.source.own) rt.syncJournal(); // the ticks written so far, complete on disk
      reopen = true;
      this.reopenedAt = now;
    } else if (this.endTick < 0 && this.source.own) {
      rt.syncJournal();
      this.reopenedAt = performance.now();
    }
    if (!this.worker) this.#start();
    if (reopen) this.stats.reopens++;
    this.stats.requests++;
    const id = this.nextId++;
    client.travelWaiting = (client.travelWaiting ?? 0) + 1;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, client, msg: { id, op, args, reopen } });
      if (this.waiting.size > this.stats.maxWaiting) this.stats.maxWaiting = this.waiting.size;
      this.queue.push(id);
      this.#pump();
    });
  }

  #later(waitMs, op, args, tick, client, rt, whenFree) {
    this.delayed++;
    client.travelWaiting = (client.travelWaiting ?? 0) + 1;
    return new Promise((resolve, reject) => {
      const go = () => {
        this.delayed--;
        client.travelWaiting--;
        try {
          resolve(this.request(op, args, tick, client, rt, whenFree));
        } catch (e) {
          reject(e);
        }
      };
      setTimeout(() => {
        if (this.closed || client.dropped) return go();
        if (!whenFree(go)) go();
      }, Math.ceil(waitMs)).unref();
    });
  }

  close() {
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    for (const [, p] of this.waiting) p.reject(new TravelError('closed', 'the server is closing'));
    this.waiting.clear();
    this.queue = [];
    this.inThread = null;
    // Terminated, not awaited (see server.js close()); the thread is unref'd, so it holds
    // nothing open meanwhile.
    if (w) w.terminate().catch(() => {});
  }
}

module.exports = { Travel, TravelError, MAX_TRAVEL_WAITING, MAX_TRAVEL_WAITING_PER_CLIENT, REOPEN_MIN_MS };
