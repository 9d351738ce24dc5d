'use strict';
// What the dashboard knows about a runtime (docs/DASHBOARD.md), gathered between ticks: bounded
// ring buffers of tick times, throughput and the hash chain, a bounded copy of the event feed
// read from the core's event cursor (never drained: the program's drainEvents() still gets
// every event), and snapshots (the summary, the agent table) taken at most every
// `minSnapshotMs`, only when a client asked, and only while the runtime is free (between
// ticks). While a tickAsync runs the runtime is busy: requests are answered from the last
// snapshot, or (those that must read the runtime: one agent's detail, controls) deferred to
// the end of the tick.
//
// It exists only while a server is attached (Runtime.serve()); without one, a tick costs
// exactly what it did.

const { Worker } = require('node:worker_threads');

const STATES = ['running', 'preempted', 'faulted', 'stopped', 'killed'];
/** lockstep_core::observe::AGENT_ROW_BYTES. */
const ROW_BYTES = 56;
/** Agent table columns: [name, reader(i) over the row views]. */
const COLUMNS = ['id', 'state', 'module', 'inbox', 'priority', 'steps', 'received', 'sent', 'memory', 'fuel'];
/** Events read from the core per tick at most (the rest are counted as missed). */
const EVENTS_PER_POLL = 1000;
/** The journal's size on disk is measured at most this often (a directory listing), in ms. */
const JOURNAL_SIZE_EVERY_MS = 1000;

/**
 * The size of a journal directory, measured in a worker thread: a listing and a stat of every
 * file, which for a long session (a snapshot file every snapshotIntervalTicks) is thousands of
 * files, tens of ms that must not land between two ticks. `get()` answers the last measure at
 * once (null before the first) and asks for a new one when it is older than
 * JOURNAL_SIZE_EVERY_MS.
 */
class JournalSize {
  static CODE = `const { parentPort, workerData: dir } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
parentPort.on('message', () => {
  let bytes = 0;
  let files = 0;
  try {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (!e.isFile()) continue;
      try {
        bytes += fs.statSync(path.join(dir, e.name)).size;
        files++;
      } catch {
        // renamed or removed since the listing (a snapshot put in place): the next measure counts it
      }
    }
  } catch {
    // the directory is gone: 0
  }
  parentPort.postMessage({ bytes, files });
});`;

  constructor(dir) {
    this.dir = dir;
    this.worker = null;
    this.last = null;
    this.askedAt = -Infinity;
    this.waiting = false;
  }

  get(now) {
    if (!this.waiting && now - this.askedAt >= JOURNAL_SIZE_EVERY_MS) {
      if (!this.worker) {
        this.worker = new Worker(JournalSize.CODE, { eval: true, workerData: this.dir });
        this.worker.unref();
        this.worker.on('message', (m) => {
          this.waiting = false;
          this.last = m;
        });
        this.worker.on('error', () => {
          this.waiting = false;
          this.worker = null;
        });
      }
      this.waiting = true;
      this.askedAt = now;
      this.worker.postMessage(0);
    }
    return this.last;
  }

  close() {
    this.worker?.terminate().catch(() => {});
    this.worker = null;
  }
}

/** A fixed-capacity ring: the newest `cap` items. */
class Ring {
  constructor(cap) {
    this.cap = cap;
    this.items = new Array(cap);
    this.start = 0;
    this.length = 0;
  }

  push(x) {
    if (this.length < this.cap) {
      this.items[(this.start + this.length) % this.cap] = x;
      this.length++;
    } else {
      this.items[this.start] = x;
      this.start = (this.start + 1) % this.cap;
    }
  }

  at(i) {
    return this.items[(this.start + i) % this.cap];
  }

  last() {
    return this.length ? this.at(this.length - 1) : undefined;
  }

  /** The items (oldest first) from index `from`. */
  slice(from = 0) {
    const out = [];
    for (let i = Math.max(0, from); i < this.length; i++) out.push(this.at(i));
    return out;
  }

  /** Index of the first item whose `key` exceeds `x` (items in ascending `key` order): a binary search. */
  firstAbove(key, x) {
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.at(mid)[key] > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Index of the first item for which `pred` holds, scanning from the newest back (items ordered by pred). */
  firstWhere(pred) {
    let i = this.length;
    while (i > 0 && pred(this.at(i - 1))) i--;
    return i;
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/** The agent table as column views over the packed rows (lockstep_core::observe). */
class AgentTable {
  constructor({ rows, modules }, takenAt, tick) {
    // The rows' buffer is 8-byte aligned in practice; copy if not.
    const bytes = rows.byteOffset % 8 === 0 ? rows : Uint8Array.prototype.slice.call(rows);
    this.count = bytes.length / ROW_BYTES;
    this.u8 = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    this.u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    this.i32 = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    this.f64 = new Float64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8);
    this.modules = modules;
    this.takenAt = takenAt;
    this.tick = tick;
    this.views = new Map();
    /** Serialised pages of this snapshot (server.js). */
    this.pages = new Map();
  }

  value(i, column) {
    switch (column) {
      case 'id': return this.u32[i * 14];
      case 'state': return this.u8[i * ROW_BYTES + 4];
      case 'module': return this.u8[i * ROW_BYTES + 6] | (this.u8[i * ROW_BYTES + 7] << 8);
      case 'inbox': return this.u32[i * 14 + 2];
      case 'priority': return this.i32[i * 14 + 3];
      case 'steps': return this.f64[i * 7 + 2];
      case 'received': return this.f64[i * 7 + 3];
      case 'sent': return this.f64[i * 7 + 4];
      case 'memory': return this.f64[i * 7 + 5];
      case 'fuel': return this.f64[i * 7 + 6];
      default: return 0;
    }
  }

  row(i) {
    return {
      id: this.value(i, 'id'),
      state: STATES[this.value(i, 'state')] ?? 'unknown',
      module: this.value(i, 'module'),
      priority: this.value(i, 'priority'),
      inbox: this.value(i, 'inbox'),
      steps: this.value(i, 'steps'),
      received: this.value(i, 'received'),
      sent: this.value(i, 'sent'),
      memory: this.value(i, 'memory'),
      fuel: this.value(i, 'fuel'),
    };
  }

  /** Row indices matching the filter, sorted; cached per (filter, sort) for this snapshot. */
  view(states, modules, sort, desc) {
    const key = `${states ?? ''}|${modules ?? ''}|${sort}|${desc}`;
    let v = this.views.get(key);
    if (v) return v;
    const stateSet = states ? new Set(states.map((s) => STATES.indexOf(s))) : null;
    const moduleSet = modules ? new Set(modules) : null;
    const picked = [];
    for (let i = 0; i < this.count; i++) {
      if (stateSet && !stateSet.has(this.value(i, 'state'))) continue;
      if (moduleSet && !moduleSet.has(this.value(i, 'module'))) continue;
      picked.push(i);
    }
    v = Uint32Array.from(picked);
    if (sort !== 'id' || desc) {
      const keys = new Float64Array(this.count);
      for (const i of v) keys[i] = this.value(i, sort);
      const sign = desc ? -1 : 1;
      // Ties by id (row order), so paging is stable.
      v.sort((a, b) => (keys[a] - keys[b]) * sign || a - b);
    }
    if (this.views.size >= 16) this.views.clear();
    this.views.set(key, v);
    return v;
  }
}

class Observer {
  /**
   * @param rt the Runtime (its public API)
   * @param port what index.js lends the dashboard: busy(), agentTable(), counts(),
   *   eventsSince(cursor, max), watch(ids), watched(id)
   */
  constructor(rt, port, o) {
    this.rt = rt;
    this.port = port;
    this.minSnapshotMs = o.minSnapshotMs;
    this.minTableMs = o.minTableMs;
    /** Snapshots may take at most this fraction of wall time: one that cost c ms is not retaken for c / budget ms. */
    this.snapshotBudget = o.snapshotBudget;
    this.costs = { summary: { count: 0, lastMs: 0, maxMs: 0 }, table: { count: 0, lastMs: 0, maxMs: 0 } };
    this.ticks = new Ring(o.historyTicks);
    this.seconds = new Ring(o.historySeconds);
    this.hashes = new Ring(o.hashChain);
    this.events = new Ring(o.eventHistory);
    this.eventCursor = 0;
    this.eventsMissed = 0;
    this.totals = { ticks: 0, messagesRouted: 0, faults: 0, deadLetters: 0, inferenceRequests: 0, inferenceCalls: 0 };
    this.lastReport = null;
    /** The runtime's journal directory's size (a JournalSize), made when a summary first asks. */
    this.journalSize = null;
    this.summaryCache = null;
    this.summaryWanted = false;
    this.table = null;
    this.tableWanted = false;
    /** Work that must read or change the runtime, waiting for it to be free: [fn]. */
    this.deferred = [];
    this.maxDeferred = o.maxDeferred;
    this.watchedIds = [];
    /** After each tick (not other between() calls): `onTick(report)`. */
    this.onTick = null;
    this.onBetween = null;
    this.timer = null;
    this.closed = false;
  }

  get busy() {
    return this.port.busy();
  }

  /** Whether a snapshot taken at `at` that cost `costMs` may be retaken at `now`. */
  due(at, costMs, minMs, now) {
    const spacing = this.snapshotBudget > 0 ? costMs / this.snapshotBudget : 0;
    return now - at >= Math.max(minMs, spacing);
  }

  summaryDue(now) {
    const c = this.summaryCache;
    return !c || this.due(c.at, this.costs.summary.lastMs, this.minSnapshotMs, now);
  }

  tableDue(now) {
    const t = this.table;
    return !t || this.due(t.takenAt, this.costs.table.lastMs, this.minTableMs, now);
  }

  #cost(kind, started) {
    const ms = performance.now() - started;
    const c = this.costs[kind];
    c.count++;
    c.lastMs = ms;
    if (ms > c.maxMs) c.maxMs = ms;
  }

  /**
   * index.js, after every tick(n)/tickAsync(n) (the runtime is free): `ms` for all n ticks.
   * `eventsCounted`: no code ran since the report was made that could have queued events it
   * does not count (index.js: a log sink that called the runtime).
   */
  ticked(n, report, ms, eventsCounted = true) {
    this.lastReport = report;
    const us = (ms * 1000) / n;
    // json: its numbers as the history reply writes them (server.js, rendered on first ask).
    // sum*: running totals through this entry (ticks, µs, routed, delivered, faults), so a
    // `history` point over a run of entries is two lookups (server.js, maxPoints).
    const last = this.ticks.last();
    const routed = report.messagesRouted;
    const delivered = report.messagesDelivered;
    this.ticks.push({
      tick: report.tick,
      us,
      routed,
      delivered,
      faults: report.faults,
      n,
      json: undefined,
      sumTicks: (last?.sumTicks ?? 0) + n,
      sumUs: (last?.sumUs ?? 0) + us * n,
      sumRouted: (last?.sumRouted ?? 0) + routed,
      sumDelivered: (last?.sumDelivered ?? 0) + delivered,
      sumFaults: (last?.sumFaults ?? 0) + report.faults,
    });
    const prev = this.hashes.last();
    this.hashes.push({ tick: report.tick, hash: report.hash, gap: prev !== undefined && report.tick !== prev.tick + 1 });
    const t = this.totals;
    t.ticks += n;
    t.messagesRouted += report.messagesRouted;
    t.faults += report.faults;
    t.deadLetters += report.deadLetters;
    t.inferenceRequests += report.inferenceRequests;
    t.inferenceCalls += report.inferenceCalls;
    const sec = Math.floor(Date.now() / 1000);
    let bucket = this.seconds.last();
    if (!bucket || bucket.t !== sec) {
      bucket = { t: sec, ticks: 0, messages: 0, us: 0 };
      this.seconds.push(bucket);
    }
    bucket.ticks += n;
    bucket.messages += report.messagesRouted;
    bucket.us += ms * 1000;
    this.between(eventsCounted ? report.eventsEnd : undefined);
    if (this.onTick) this.onTick(report);
  }

  /**
   * The runtime is free (after a tick, or found idle): read events, refresh what was asked for,
   * run deferred work. `eventsEnd` (after a tick: its report's) says whether any event is new
   * without asking the runtime, whose call was ~3 µs a tick at 1,000 agents on the path from
   * one tick to the next (its first touches of the runtime after a tick miss the caches).
   */
  between(eventsEnd) {
    if (this.closed) return;
    if (eventsEnd === undefined || eventsEnd > this.eventCursor) this.pollEvents();
    const now = performance.now();
    if (this.summaryWanted && this.summaryDue(now)) this.takeSummary(now);
    if (this.tableWanted && this.tableDue(now)) this.takeTable(now);
    if (this.deferred.length) {
      const work = this.deferred;
      this.deferred = [];
      for (const fn of work) fn();
    }
    if (this.onBetween) this.onBetween(now);
  }

  /** Runs `fn` while the runtime is free: now, or right after the tick running now. False: too much waits already. */
  whenFree(fn) {
    if (!this.busy) {
      fn();
      return true;
    }
    if (this.deferred.length >= this.maxDeferred) return false;
    this.deferred.push(fn);
    // Normally the end of the tick runs it (ticked → between); if the tick fails or the runtime
    // goes idle some other way, look again shortly.
    if (!this.timer) {
      const poll = () => {
        this.timer = null;
        if (this.closed || this.deferred.length === 0) return;
        if (this.busy) this.timer = setTimeout(poll, 5);
        else this.between();
      };
      this.timer = setTimeout(poll, 5);
    }
    return true;
  }

  pollEvents() {
    if (this.busy) return;
    const { first, events } = this.port.eventsSince(this.eventCursor, EVENTS_PER_POLL);
    if (first > this.eventCursor) {
      // Drained by the program (drainEvents) or dropped (maxEvents) before the dashboard read them.
      this.eventsMissed += first - this.eventCursor;
      this.eventCursor = first;
    }
    for (const e of events) this.events.push({ ...e, cursor: this.eventCursor++ });
  }

  takeSummary(now = performance.now()) {
    const started = performance.now();
    const c = this.port.counts();
    // A typed array sorts numbers without a comparator call per comparison.
    const samples = new Float64Array(Math.min(1000, this.ticks.length));
    for (let i = 0; i < samples.length; i++) samples[i] = this.ticks.at(this.ticks.length - samples.length + i).us;
    const mean = samples.length ? samples.reduce((a, b) => a + b, 0) / samples.length : 0;
    samples.sort();
    // Rates over the last complete seconds (up to 5), not the one still filling.
    const full = this.seconds.slice(Math.max(0, this.seconds.length - 6)).filter((b) => b.t < Math.floor(Date.now() / 1000));
    const recent = full.slice(-5);
    const span = recent.length;
    const r = this.lastReport;
    const data = {
      tick: this.rt.currentTick,
      at: Date.now(),
      agents: { total: c[0] + c[1] + c[2] + c[3] + c[4], running: c[0], preempted: c[1], faulted: c[2], stopped: c[3], killed: c[4] },
      queues: { events: c[5], deadLetters: c[6], hostMessages: c[7], pendingInputs: c[8], outboundBacklog: c[9], eventsDropped: c[10] },
      lastTick: r && {
        tick: r.tick,
        hash: r.hash,
        agentsStepped: r.agentsStepped,
        messagesRouted: r.messagesRouted,
        messagesDelivered: r.messagesDelivered,
        deadLetters: r.deadLetters,
        faults: r.faults,
        fuel: r.fuel,
        parallel: r.parallel,
        workers: r.workers,
      },
      tickTime: {
        samples: samples.length,
        mean,
        p50: percentile(samples, 0.5),
        p90: percentile(samples, 0.9),
        p99: percentile(samples, 0.99),
        max: samples.length ? samples[samples.length - 1] : 0,
      },
      rate: {
        ticksPerSecond: span ? recent.reduce((a, b) => a + b.ticks, 0) / span : 0,
        messagesPerSecond: span ? recent.reduce((a, b) => a + b.messages, 0) / span : 0,
      },
      totals: { ...this.totals },
      inference: this.totals.inferenceRequests > 0 ? { requests: this.totals.inferenceRequests, calls: this.totals.inferenceCalls } : null,
      events: { next: this.eventCursor, missed: this.eventsMissed },
      recording: this.rt.recording,
      journal: this.#journal(now),
    };
    this.summaryCache = { at: now, data };
    this.summaryWanted = false;
    this.#cost('summary', started);
    return this.summaryCache;
  }

  /**
   * The runtime's journal for the summary: its directory, the durable tick (the last tick
   * whose records are synced: what a crash now would keep), and its size on disk (segments
   * and snapshots, measured in a worker thread at most every JOURNAL_SIZE_EVERY_MS; null
   * until the first measure is back). Null without a journal.
   */
  #journal(now) {
    const dir = this.rt.journalDir;
    if (!dir) return null;
    if (!this.journalSize) this.journalSize = new JournalSize(dir);
    const size = this.journalSize.get(now);
    return { dir, durableTick: this.rt.durableTick, bytes: size ? size.bytes : null, files: size ? size.files : null };
  }

  /**
   * The latest summary: taken now if the runtime is free and the last one is due (older than
   * minSnapshotMs and than its cost allows), else the last one (and, while a tick runs, a new
   * one is taken right after it).
   */
  summary() {
    const now = performance.now();
    const c = this.summaryCache;
    if (c && !this.summaryDue(now)) return { data: c.data, fresh: true, cache: c };
    if (!this.busy) {
      const taken = this.takeSummary(now);
      return { data: taken.data, fresh: true, cache: taken };
    }
    this.summaryWanted = true;
    return { data: c ? c.data : null, fresh: false, cache: c };
  }

  takeTable(now = performance.now()) {
    const started = performance.now();
    this.table = new AgentTable(this.port.agentTable(), now, this.rt.currentTick);
    this.tableWanted = false;
    this.#cost('table', started);
    return this.table;
  }

  /** The latest agent table (refreshed at most every minTableMs, and as its cost allows), or null while the first waits for a tick to end. */
  agentTable() {
    const now = performance.now();
    const t = this.table;
    if (t && !this.tableDue(now)) return t;
    if (!this.busy) return this.takeTable(now);
    this.tableWanted = true;
    return t;
  }

  /** Watches `id`'s messages (the newest 16 agents asked about stay watched). */
  watch(id) {
    const known = this.watchedIds.includes(id);
    this.watchedIds = [id, ...this.watchedIds.filter((x) => x !== id)].slice(0, 16);
    // The tap's set changes only when a new agent joins it (the oldest may leave then).
    if (!known) this.port.watch(this.watchedIds);
    return this.port.watched(id);
  }

  unwatchAll() {
    if (this.watchedIds.length === 0) return;
    this.watchedIds = [];
    this.whenFree(() => this.port.watch([]));
  }

  close() {
    this.closed = true;
    this.journalSize?.close();
    if (this.timer) clearTimeout(this.timer);
    this.deferred = [];
  }
}

module.exports = { Observer, Ring, STATES, COLUMNS, ROW_BYTES };
