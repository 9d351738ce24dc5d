'use strict';
// The live dashboard's server (docs/DASHBOARD.md): one HTTP server that serves the page (a
// fixed allow-list of files, no build step) and a WebSocket endpoint, /ws, speaking a
// pull-based JSON protocol. Started by `rt.serve(options)` (index.js), which lends it the
// observer port; everything that changes the session goes through the Runtime's public API,
// so a session driven from the dashboard is recorded, and replays, like any other.
//
// Limits: a client can neither stall the runtime nor grow the server's memory without bound:
// frames are at most `maxPayload` bytes (ws closes with 1009), each client's unsent replies at
// most `maxBufferedBytes` (past it: closed with 4000), requests are rate-limited per client
// (token bucket; a client that keeps going past it is closed with 1008), work waiting for the
// runtime to be free is bounded (`maxDeferred`), replies are bounded (`MAX_REPLY_BYTES`), and
// at most `maxClients` are connected (more: 1013). Security: loopback by default; any other
// address needs a token (compared in constant time); the Host header must name this server
// (DNS rebinding) and the Origin header must be absent, this server's own origin, or listed
// in `allowedOrigins` (cross-site WebSocket hijacking).

const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { EventEmitter } = require('node:events');
const { WebSocketServer, WebSocket } = require('ws');
const { LockstepError } = require('../errors.js');
const v = require('../validate.js');
const { Observer, STATES, COLUMNS } = require('./observer.js');
const { SummaryFileWriter } = require('./summary-file.js');
const { Travel } = require('./travel.js');
const { RequestError } = require('./request-error.js');

const PROTOCOL = 1;
const SUBPROTOCOL = 'lockstep.v1';
const TOKEN_PROTOCOL_PREFIX = 'lockstep.token.';
const MAX_REPLY_BYTES = 1 << 20;
const MAX_AGENT_PAGE = 500;
const MAX_EVENTS_PAGE = 500;
const MAX_STEP_TICKS = 1000;
/** Clock controls (play, pause, step) queued behind the one running, from all clients (`busy` past it). */
const MAX_QUEUED_CONTROLS = 16;
const MAX_SEND_BYTES = 4096;
/** Read-only requests of one client that may wait for the next tick to start (#runSoon); more are answered at once. */
const MAX_SHADOWED = 8;
/** The longest a read-only request waits for the next tick to start, in ms. */
const SHADOW_WAIT_MS = 20;

/** Close codes (docs/DASHBOARD.md, "Close codes"). */
const CLOSE = {
  GOING_AWAY: 1001, // the server (or its runtime) closed
  UNSUPPORTED: 1003, // a binary frame
  POLICY: 1008, // past the request rate, again and again
  PROTOCOL_ERROR: 1002, // a malformed frame (sent by ws itself, with a reason from #connected)
  INVALID_TEXT: 1007, // a text frame that is not UTF-8 (likewise)
  TOO_BIG: 1009, // a frame over maxPayload (likewise)
  TRY_LATER: 1013, // maxClients reached
  SLOW: 4000, // the client's unsent replies passed maxBufferedBytes
};

const DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  maxClients: 64,
  maxPayload: 16 * 1024,
  maxBufferedBytes: 4 * 1024 * 1024,
  requestsPerSecond: 50,
  requestBurst: 100,
  maxDeferred: 256,
  minSnapshotMs: 100,
  minTableMs: 1000,
  snapshotBudget: 0.02,
  historyTicks: 1200,
  historySeconds: 300,
  hashChain: 512,
  eventHistory: 2000,
  summaryIntervalMs: 100,
  pingIntervalMs: 30_000,
};
const OPTION_KEYS = [
  ...Object.keys(DEFAULTS), 'token', 'allowedOrigins', 'allowedHosts', 'controls', 'clock', 'summaryFile', 'moduleNames', 'journal',
];

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

function isLoopback(host) {
  if (LOOPBACK_NAMES.has(host)) return true;
  return net.isIPv4(host) && host.startsWith('127.');
}

function isWildcard(host) {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

/** The hostname of a Host header value ("a:80" → "a", "[::1]:80" → "[::1]"). */
function hostname(hostHeader) {
  if (typeof hostHeader !== 'string') return '';
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d+)?$/.exec(hostHeader.trim().toLowerCase());
  return m ? m[1] : '';
}

const sha256 = (s) => crypto.createHash('sha256').update(s, 'utf8').digest();

/** Constant-time token check: equal-length digests compared with timingSafeEqual. */
function tokenMatches(given, expected) {
  if (typeof given !== 'string') return false;
  return crypto.timingSafeEqual(sha256(given), sha256(expected));
}

/** The static files, a fixed allow-list (no path from the request ever reaches the file system). */
function staticFiles() {
  const pub = path.join(__dirname, 'public');
  const uplot = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  const files = {
    '/': [path.join(pub, 'index.html'), 'text/html; charset=utf-8'],
    '/index.html': [path.join(pub, 'index.html'), 'text/html; charset=utf-8'],
    '/app.js': [path.join(pub, 'app.js'), 'text/javascript; charset=utf-8'],
    '/style.css': [path.join(pub, 'style.css'), 'text/css; charset=utf-8'],
    '/favicon.svg': [path.join(pub, 'favicon.svg'), 'image/svg+xml'],
    '/vendor/uPlot.iife.min.js': [path.join(uplot, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    '/vendor/uPlot.min.css': [path.join(uplot, 'uPlot.min.css'), 'text/css; charset=utf-8'],
  };
  const out = new Map();
  for (const [route, [file, type]] of Object.entries(files)) out.set(route, { body: fs.readFileSync(file), type });
  return out;
}

const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/**
 * Serialised JSON that several replies share (a snapshot's summary, a page of its agent table):
 * encoded to UTF-8 once, on first use, and the same bytes are copied into every client's reply.
 */
class SharedJson {
  constructor(text) {
    this.text = text;
    this.bytes = null;
  }

  get utf8() {
    return (this.bytes ??= Buffer.from(this.text, 'utf8'));
  }
}

/** A reply's data already serialised: `body` (a string, or SharedJson), then `tail` (this reply's own). */
class RawJson {
  constructor(body, tail = '') {
    this.body = body;
    this.tail = tail;
  }
}

/** A number as JSON.stringify writes it. */
/** `history`'s columns for the `n` entries of `ring` from `start`, one point per entry: each
 * entry's numbers are rendered once, by the first reply that covers it, and kept with it. */
function historyColumns(ring, start, n) {
  const cols = [new Array(n), new Array(n), new Array(n), new Array(n), new Array(n)];
  for (let k = 0; k < n; k++) {
    const t = ring.at(start + k);
    const j = (t.json ??= [jsonNumber(t.tick), jsonNumber(Math.round(t.us * 10) / 10), jsonNumber(t.routed), jsonNumber(t.delivered), jsonNumber(t.faults)]);
    for (let c = 0; c < 5; c++) cols[c][k] = j[c];
  }
  return cols;
}

/**
 * `history` with `maxPoints`: the `n` entries from `start` in at most `maxPoints` points of
 * consecutive entries (as even as they divide), each its last tick, the mean µs per tick
 * (weighted by the ticks each entry covers), the mean messages routed and delivered per
 * entry, and the sum of faults. Columns of rendered numbers.
 */
function groupedHistoryColumns(ring, start, n, maxPoints) {
  const cols = [new Array(maxPoints), new Array(maxPoints), new Array(maxPoints), new Array(maxPoints), new Array(maxPoints)];
  const round1 = (x) => jsonNumber(Math.round(x * 10) / 10);
  for (let g = 0; g < maxPoints; g++) {
    const from = Math.floor((g * n) / maxPoints);
    const to = Math.floor(((g + 1) * n) / maxPoints);
    // Running totals (observer.js): through the last entry, less those through the first,
    // plus the first's own numbers.
    const a = ring.at(start + from);
    const b = ring.at(start + to - 1);
    const entries = to - from;
    cols[0][g] = jsonNumber(b.tick);
    cols[1][g] = round1((b.sumUs - a.sumUs + a.us * a.n) / (b.sumTicks - a.sumTicks + a.n));
    cols[2][g] = round1((b.sumRouted - a.sumRouted + a.routed) / entries);
    cols[3][g] = round1((b.sumDelivered - a.sumDelivered + a.delivered) / entries);
    cols[4][g] = jsonNumber(b.sumFaults - a.sumFaults + a.faults);
  }
  return cols;
}

function jsonNumber(x) {
  return Number.isFinite(x) ? `${x}` : 'null';
}

/** The start of a successful reply up to its data, as JSON.stringify({ id, type, ok: true, data }) writes it. */
function replyHead(id, type) {
  return `{${id === undefined ? '' : `"id":${JSON.stringify(id)},`}"type":${JSON.stringify(type)},"ok":true,"data":`;
}

/** Replies held back while a client's socket is corked, at most (past it: written at once). */
const CORK_BYTES = 64 * 1024;

function uncork(client) {
  if (!client.corked) return;
  client.corked = false;
  client.socket.uncork();
}

function checkOptions(options) {
  const o = { ...DEFAULTS, ...v.options('options', options, OPTION_KEYS) };
  v.str('options.host', o.host);
  v.int('options.port', o.port, 0, 65535);
  for (const k of ['maxClients', 'maxPayload', 'maxBufferedBytes', 'requestsPerSecond', 'requestBurst', 'maxDeferred', 'historyTicks', 'historySeconds', 'hashChain', 'eventHistory']) {
    v.int(`options.${k}`, o[k], 1, v.MAX_U32);
  }
  for (const k of ['minSnapshotMs', 'minTableMs', 'summaryIntervalMs', 'pingIntervalMs']) v.int(`options.${k}`, o[k], 0, v.MAX_U32);
  if (typeof o.snapshotBudget !== 'number' || !(o.snapshotBudget >= 0 && o.snapshotBudget <= 1)) throw v.fail('options.snapshotBudget', 'a fraction of wall time in 0..1 (0: no budget)', o.snapshotBudget);
  if (o.maxPayload < 256) throw v.fail('options.maxPayload', 'at least 256 bytes', o.maxPayload);
  if (o.token !== undefined && o.token !== true) {
    v.str('options.token', o.token);
    if (!/^[A-Za-z0-9_-]{16,256}$/.test(o.token)) {
      throw v.fail('options.token', 'true (make one) or 16 to 256 characters of A-Z a-z 0-9 _ - (it travels as a WebSocket subprotocol)', '(a token, not shown)');
    }
  }
  if (o.token === true) o.token = crypto.randomBytes(24).toString('base64url');
  if (!isLoopback(o.host) && !o.token) {
    throw new LockstepError('E_INVALID_ARGUMENT', `options.token is required to serve the dashboard on ${o.host}, which is not a loopback address: pass token: true (a random one, in server.url) or your own`);
  }
  o.allowedOrigins = o.allowedOrigins === undefined ? [] : v.stringArray('options.allowedOrigins', o.allowedOrigins);
  o.allowedHosts = o.allowedHosts === undefined ? [] : v.stringArray('options.allowedHosts', o.allowedHosts).map((h) => h.toLowerCase());
  o.controls = o.controls === undefined ? false : v.bool('options.controls', o.controls);
  o.clock = o.clock === undefined ? true : v.bool('options.clock', o.clock);
  if (o.summaryFile !== undefined) v.str('options.summaryFile', o.summaryFile);
  // Each name read once (the copy is what is kept): a getter's later answer was kept unchecked.
  // null is no names, as for every options object (Object.keys(null) threw a TypeError).
  const names = o.moduleNames;
  const nameKeys = names !== null && typeof names === 'object' ? Object.keys(names) : [];
  o.moduleNames = Object.fromEntries(Object.entries(v.options('options.moduleNames', names, nameKeys)).map(([k, name]) => [k, v.str(`options.moduleNames["${k}"]`, name)]));
  // Time travel's source: a journal directory, or { dir, trustedKeys, devMode } (default: the
  // runtime's own journal, trusted as the runtime wrote it); false: none.
  if (o.journal !== undefined && o.journal !== false) {
    const j = typeof o.journal === 'string' ? { dir: o.journal } : v.options('options.journal', o.journal, ['dir', 'trustedKeys', 'devMode']);
    v.str('options.journal.dir', j.dir);
    if (j.trustedKeys !== undefined) j.trustedKeys = v.stringArray('options.journal.trustedKeys', j.trustedKeys);
    if (j.devMode !== undefined) v.bool('options.journal.devMode', j.devMode);
    o.journal = j;
  }
  return o;
}

class DashboardServer extends EventEmitter {
  #rt;
  #port;
  #o;
  #http;
  #wss;
  #files;
  #clients = new Set();
  #observer;
  #clock = { playing: false, hz: null, handle: null, error: null };
  #summaryFile = null;
  #lastSummaryWrite = 0;
  #ping = null;
  #closing = null;
  /** The last clock control queued (`#control`): each runs after the one before it. */
  #controls = Promise.resolve();
  #controlsWaiting = 0;
  /** Set once listening: what `port` and `url` give, also after close (address() is null then). */
  #boundPort = null;
  #stats = { connections: 0, refused: {}, dropped: {}, closed: {}, maxBufferedSeen: 0, maxDeferredSeen: 0, requests: 0, shadowed: { held: 0, answeredAfterTick: 0, answeredAfterWait: 0, answeredEarly: 0, clientGone: 0, maxWaiting: 0 } };
  #tickListenerErrors = 0;
  /**
   * The clients with read-only requests that arrived while a tick ran (`client.held`, request
   * order), answered right after the tick (#runSoon): at most MAX_SHADOWED per client (and
   * maxClients clients).
   */
  #holding = new Set();
  #heldCount = 0;
  #shadowTimer = null;
  #shadowImmediate = null;
  /** Time travel: the journal cursor, in a worker thread (travel.js). */
  #travel;

  constructor(rt, port, o) {
    super();
    this.#rt = rt;
    let source = null;
    if (o.journal !== false) {
      const own = rt.journalDir;
      if (o.journal) source = { dir: o.journal.dir, options: { trustedKeys: o.journal.trustedKeys ?? [], devMode: o.journal.devMode ?? false } };
      else if (own) source = { dir: own, options: { trustJournal: true }, own: true };
    }
    this.#travel = new Travel(source, o.moduleNames, { rt, busy: () => this.#observer.busy, whenFree: (fn) => this.#observer.whenFree(fn) });
    this.#port = port;
    this.#o = o;
    this.#files = staticFiles();
    this.#observer = new Observer(rt, port, o);
    this.#observer.onTick = (report) => {
      this.#afterTick();
      if (this.listenerCount('tick') === 0) return;
      try {
        this.emit('tick', report);
      } catch (e) {
        if (this.#tickListenerErrors++ === 0) {
          process.emitWarning(`a dashboard 'tick' listener threw (${e && e.message}); later errors are not reported`, { type: 'LockstepWarning' });
        }
      }
    };
    this.#observer.onBetween = (now) => this.#between(now);
    if (o.summaryFile) this.#summaryFile = new SummaryFileWriter(o.summaryFile);
  }

  /** Starts listening; resolves with this server. */
  async listen() {
    this.#http = http.createServer((req, res) => this.#serveHttp(req, res));
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.#o.maxPayload,
      perMessageDeflate: false, // no compression: no zip bombs, bufferedAmount is the bytes queued
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    this.#http.on('upgrade', (req, socket, head) => this.#upgrade(req, socket, head));
    this.#http.on('clientError', (_err, socket) => socket.destroy());
    await new Promise((resolve, reject) => {
      this.#http.once('error', reject);
      this.#http.listen(this.#o.port, this.#o.host, () => {
        this.#http.off('error', reject);
        this.#boundPort = this.#http.address().port;
        resolve();
      });
    });
    try {
      this.#port.attach(this.#observer);
      // At once, not when serve() resolves: a runtime closed in between closes this server.
      this.#observer.server = this;
    } catch (e) {
      await new Promise((resolve) => this.#http.close(() => resolve()));
      throw e;
    }
    if (this.#o.pingIntervalMs > 0) {
      this.#ping = setInterval(() => this.#pingAll(), this.#o.pingIntervalMs);
      this.#ping.unref();
    }
    // A first summary, so that no client ever finds none (the runtime is free unless a
    // tickAsync runs; then right after it).
    this.#observer.whenFree(() => {
      this.#writeSummaryFile(performance.now(), true);
      // A fallback only: the first request that finds the runtime free takes a fresh one.
      this.#observer.takeSummary().at = -Infinity;
    });
    return this;
  }

  /** The port it listens on (still the one it listened on once closed). */
  get port() {
    return this.#boundPort;
  }

  get host() {
    return this.#o.host;
  }

  /** The page's URL (with the token in its fragment, which browsers never send to the server). */
  get url() {
    const h = this.#o.host;
    const shown = isWildcard(h) ? 'localhost' : net.isIPv6(h) ? `[${h}]` : h;
    return `http://${shown}:${this.port}/${this.#o.token ? `#token=${this.#o.token}` : ''}`;
  }

  /** The WebSocket endpoint. */
  get wsUrl() {
    return this.url.replace(/^http/, 'ws').replace(/\/(#.*)?$/, '/ws');
  }

  get token() {
    return this.#o.token ?? null;
  }

  get clients() {
    return this.#clients.size;
  }

  /** What the limits did so far, and the largest queues seen (tests and operators). */
  stats() {
    let buffered = 0;
    for (const c of this.#clients) buffered = Math.max(buffered, c.ws.bufferedAmount);
    return {
      ...this.#stats,
      refused: { ...this.#stats.refused },
      dropped: { ...this.#stats.dropped },
      closed: { ...this.#stats.closed },
      shadowed: { ...this.#stats.shadowed, waiting: this.#heldCount },
      clients: this.#clients.size,
      maxBufferedNow: buffered,
      deferred: this.#observer.deferred.length,
      eventsKept: this.#observer.events.length,
      ticksKept: this.#observer.ticks.length,
      hashesKept: this.#observer.hashes.length,
      snapshots: { summary: { ...this.#observer.costs.summary }, table: { ...this.#observer.costs.table } },
      travel: { ...this.#travel.stats, waiting: this.#travel.waiting.size },
      limits: { maxBufferedBytes: this.#o.maxBufferedBytes, maxReplyBytes: MAX_REPLY_BYTES, maxDeferred: this.#o.maxDeferred },
    };
  }

  // ----- the clock (the server drives the runtime with run()) ---------------------------------

  get clock() {
    return { playing: this.#clock.playing, hz: this.#clock.hz, error: this.#clock.error };
  }

  /**
   * Runs the clock controls one at a time, each after the previous one finished: a pause()
   * waits for the run() it stops to end, so a play() or step() sent right after it (two
   * clicks) finds the runtime free, and a pause() sent right after a play() stops the run that
   * play() starts (unserialized, a play() re-playing after its own pause lost a pause() or a
   * server close() that came meanwhile, and a step() after a pause() got E_BUSY).
   */
  #control(fn) {
    if (this.#controlsWaiting >= MAX_QUEUED_CONTROLS) {
      return Promise.reject(new LockstepError('E_BUSY', `${MAX_QUEUED_CONTROLS} clock controls already wait their turn (a step of many ticks runs?); wait for their replies`));
    }
    this.#controlsWaiting++;
    const done = this.#controls.then(fn).finally(() => this.#controlsWaiting--);
    this.#controls = done.catch(() => {});
    return done;
  }

  /** Ticks the runtime with rt.run({ hz }) (omitted hz: as fast as it goes) until pause(). */
  async play(options) {
    const o = v.options('options', options, ['hz']);
    const hz = o.hz ?? null;
    if (hz !== null && (typeof hz !== 'number' || !Number.isFinite(hz) || hz <= 0 || hz > 1e6)) throw v.fail('options.hz', 'a number of ticks per second in (0, 1000000]', hz);
    return this.#control(async () => {
      await this.#stopClock();
      // Checked after the wait too: a close() that came meanwhile must not be outlived by a run.
      if (this.#closing) throw new LockstepError('E_CLOSED', 'the dashboard server is closed');
      const handle = this.#rt.run(hz === null ? {} : { hz });
      this.#clock = { playing: true, hz, handle, error: null };
      handle.done.then(
        () => {
          if (this.#clock.handle === handle) this.#clock = { ...this.#clock, playing: false, handle: null };
        },
        (e) => {
          if (this.#clock.handle === handle) this.#clock = { ...this.#clock, playing: false, handle: null, error: `${e.code ?? 'Error'}: ${e.message}` };
        },
      );
      return this.clock;
    });
  }

  /** Stops the server's run() after the tick running now; resolves once that run has ended. */
  pause() {
    return this.#control(() => this.#stopClock());
  }

  async #stopClock() {
    const handle = this.#clock.handle;
    this.#clock = { ...this.#clock, playing: false, handle: null };
    if (handle) await handle.stop().catch(() => {});
    return this.clock;
  }

  /** Runs `ticks` ticks (tickAsync) while paused; resolves with the last report. */
  async step(ticks = 1) {
    v.int('ticks', ticks, 1, MAX_STEP_TICKS);
    return this.#control(() => {
      if (this.#clock.playing) throw new LockstepError('E_BUSY', 'the dashboard clock is playing: pause it before stepping');
      if (this.#closing) throw new LockstepError('E_CLOSED', 'the dashboard server is closed');
      return this.#rt.tickAsync(ticks);
    });
  }

  // ----- closing ------------------------------------------------------------------------------

  /** Closes every client (1001), stops the clock and the server, detaches from the runtime. */
  close() {
    if (this.#closing) return this.#closing;
    this.#closing = (async () => {
      if (this.#ping) clearInterval(this.#ping);
      this.#answerHeldAtClose();
      const gone = [...this.#clients].map((c) => new Promise((resolve) => (c.ws.readyState === WebSocket.CLOSED ? resolve() : c.ws.once('close', resolve))));
      for (const c of this.#clients) this.#drop(c, CLOSE.GOING_AWAY, 'the dashboard server is closing');
      // Not queued behind other controls: a queued play() finds #closing set and refuses.
      await this.#stopClock();
      // Clients answer the close at once; one that does not is cut off after a second (#drop).
      await Promise.all(gone);
      this.#port.detach(this.#observer);
      if (this.#summaryFile) {
        try {
          const s = this.#observer.summaryCache?.data;
          if (s) this.#summaryFile.writeSummary(s, false);
        } catch {
          // the file is best effort at close
        }
        this.#summaryFile.close();
      }
      this.#observer.close();
      // Not awaited: a seek in the middle of its replay ends only when the replay does (the
      // worker's native call cannot be interrupted); closing must not wait for it.
      this.#travel.close();
      this.#wss.close();
      await new Promise((resolve) => {
        this.#http.close(() => resolve());
        this.#http.closeAllConnections?.();
      });
    })();
    return this.#closing;
  }

  /** index.js: the runtime was closed. */
  runtimeClosed() {
    this.close().catch(() => {});
  }

  // ----- HTTP ---------------------------------------------------------------------------------

  /** The Host header names this server: a loopback name, its own address, or an allowed host. */
  #hostAllowed(req) {
    const h = hostname(req.headers.host);
    if (!h) return false;
    if (isWildcard(this.#o.host)) return true; // every address: the token guards it
    if (isLoopback(h)) return true;
    const own = hostname(net.isIPv6(this.#o.host) ? `[${this.#o.host}]` : this.#o.host);
    return h === own || this.#o.allowedHosts.includes(h);
  }

  /** No Origin (not a browser), the server's own origin, or one explicitly allowed. */
  #originAllowed(req) {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    if (this.#o.allowedOrigins.includes(origin)) return true;
    let u;
    try {
      u = new URL(origin);
    } catch {
      return false;
    }
    return u.protocol === 'http:' && u.host.toLowerCase() === String(req.headers.host).toLowerCase();
  }

  #serveHttp(req, res) {
    if (!this.#hostAllowed(req)) return this.#httpError(res, 403, 'unknown Host');
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.#httpError(res, 405, 'method not allowed');
    let pathname;
    try {
      pathname = new URL(req.url, 'http://x').pathname;
    } catch {
      return this.#httpError(res, 400, 'bad request');
    }
    const file = this.#files.get(pathname);
    if (!file) return this.#httpError(res, 404, 'not found');
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': file.type, 'Content-Length': file.body.length });
    res.end(req.method === 'HEAD' ? undefined : file.body);
  }

  #httpError(res, status, text) {
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(`${text}\n`);
  }

  // ----- WebSocket ----------------------------------------------------------------------------

  #refuse(socket, status, reason) {
    this.#stats.refused[reason] = (this.#stats.refused[reason] ?? 0) + 1;
    const text = `${reason}\n`;
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
    socket.destroy();
  }

  #upgrade(req, socket, head) {
    socket.on('error', () => {});
    let pathname = '';
    try {
      pathname = new URL(req.url, 'http://x').pathname;
    } catch {
      // refused below
    }
    if (pathname !== '/ws') return this.#refuse(socket, 404, 'not found: the WebSocket endpoint is /ws');
    if (!this.#hostAllowed(req)) return this.#refuse(socket, 403, 'unknown Host header');
    if (!this.#originAllowed(req)) return this.#refuse(socket, 403, 'cross-origin WebSocket refused (Origin not allowed)');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
    if (!offered.includes(SUBPROTOCOL)) return this.#refuse(socket, 400, `offer the subprotocol ${SUBPROTOCOL}`);
    if (this.#o.token) {
      const fromProtocol = offered.find((p) => p.startsWith(TOKEN_PROTOCOL_PREFIX));
      const auth = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''));
      const given = fromProtocol ? fromProtocol.slice(TOKEN_PROTOCOL_PREFIX.length) : auth ? auth[1] : undefined;
      if (!tokenMatches(given, this.#o.token)) return this.#refuse(socket, 401, 'missing or wrong token');
    }
    if (this.#clients.size >= this.#o.maxClients) {
      // Accepted, then closed with a reason a browser can read.
      this.#wss.handleUpgrade(req, socket, head, (ws) => {
        this.#stats.refused.tooManyClients = (this.#stats.refused.tooManyClients ?? 0) + 1;
        ws.close(CLOSE.TRY_LATER, `too many clients (at most ${this.#o.maxClients})`);
      });
      return;
    }
    if (this.#closing) return this.#refuse(socket, 503, 'the server is closing');
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#connected(ws, socket));
  }

  #connected(ws, socket) {
    this.#stats.connections++;
    // ws closes a connection whose frame it cannot accept (too big, not UTF-8, malformed) by
    // calling close(code) with no reason; every close of this server names its cause.
    const wsClose = ws.close;
    const reasons = {
      [CLOSE.PROTOCOL_ERROR]: 'a malformed WebSocket frame',
      [CLOSE.INVALID_TEXT]: 'a text frame that is not valid UTF-8',
      [CLOSE.TOO_BIG]: `a frame over ${this.#o.maxPayload} bytes (the server's maxPayload)`,
    };
    ws.close = function close(code, reason) {
      return wsClose.call(this, code, reason === undefined && Object.hasOwn(reasons, code) ? reasons[code] : reason);
    };
    // `socket`: the connection under `ws`, corked while one read's requests are answered (#send).
    const client = { ws, socket, corked: false, held: [], tokens: this.#o.requestBurst, refilled: performance.now(), strikes: 0, pending: 0, alive: true, watching: null };
    this.#clients.add(client);
    ws.on('message', (data, isBinary) => this.#message(client, data, isBinary));
    ws.on('pong', () => {
      client.alive = true;
    });
    ws.on('error', () => {});
    ws.on('close', (code) => {
      // Gone: nothing more is sent to it (requests it left held are counted, not answered).
      client.dropped = true;
      this.#clients.delete(client);
      this.#stats.closed[code] = (this.#stats.closed[code] ?? 0) + 1;
      if (this.#clients.size === 0) this.#observer.unwatchAll();
    });
    this.#send(client, {
      type: 'hello',
      ok: true,
      data: this.#hello(),
    });
  }

  #hello() {
    return {
      protocol: PROTOCOL,
      server: 'lockstep',
      version: require('../package.json').version,
      controls: this.#o.controls,
      clock: this.#o.clock,
      seek: this.#travel.source !== null,
      seekReason: this.#travel.source ? null : 'time travel needs a journal: run the runtime with journal: { dir }, or serve({ journal: dir })',
      states: STATES,
      columns: COLUMNS,
      limits: {
        maxPayload: this.#o.maxPayload,
        maxBufferedBytes: this.#o.maxBufferedBytes,
        requestsPerSecond: this.#o.requestsPerSecond,
        requestBurst: this.#o.requestBurst,
        maxAgentPage: MAX_AGENT_PAGE,
        maxEventsPage: MAX_EVENTS_PAGE,
        maxStepTicks: MAX_STEP_TICKS,
      },
    };
  }

  #pingAll() {
    for (const c of this.#clients) {
      if (!c.alive) {
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.ws.ping();
      } catch {
        // closed meanwhile
      }
    }
  }

  /** Closes a client with a code and reason; a client that does not answer the close is cut off. */
  #drop(client, code, reason) {
    if (client.dropped) return;
    client.dropped = true;
    this.#stats.dropped[code] = (this.#stats.dropped[code] ?? 0) + 1;
    try {
      client.ws.close(code, reason);
    } catch {
      // already closed
    }
    setTimeout(() => client.ws.terminate(), 1000).unref();
  }

  /**
   * Sends a reply, unless the client's unsent data is over its limit: then the client is
   * closed (4000) and nothing more is queued for it. Bounded: at most maxBufferedBytes plus
   * one reply (≤ MAX_REPLY_BYTES) wait per client.
   */
  #send(client, obj) {
    const ws = client.ws;
    if (ws.readyState !== WebSocket.OPEN || client.dropped) return false;
    if (ws.bufferedAmount > this.#o.maxBufferedBytes) {
      this.#drop(client, CLOSE.SLOW, `send queue over ${this.#o.maxBufferedBytes} bytes: the client does not read its replies`);
      return false;
    }
    let frame;
    let length;
    const raw = obj.data instanceof RawJson ? obj.data : null;
    if (raw) {
      // { id, type, ok, data } around data serialised before: the same text JSON.stringify
      // would write, without serialising the data again.
      const head = replyHead(obj.id, obj.type);
      const tail = `${raw.tail}}`;
      const shared = raw.body instanceof SharedJson ? raw.body : null;
      length = head.length + (shared ? shared.text.length : raw.body.length) + tail.length;
      if (length <= MAX_REPLY_BYTES) {
        if (shared) {
          // Bytes that every client's reply shares: copied, not encoded again.
          const body = shared.utf8;
          const headBytes = Buffer.byteLength(head);
          frame = Buffer.allocUnsafe(headBytes + body.length + Buffer.byteLength(tail));
          frame.write(head, 0, 'utf8');
          body.copy(frame, headBytes);
          frame.write(tail, headBytes + body.length, 'utf8');
        } else {
          frame = head + raw.body + tail;
        }
      }
    } else {
      frame = JSON.stringify(obj);
      length = frame.length;
    }
    if (length > MAX_REPLY_BYTES) {
      frame = JSON.stringify({ id: obj.id, type: obj.type, ok: false, error: { code: 'reply_too_large', message: `the reply would be ${length} bytes (at most ${MAX_REPLY_BYTES}); ask for less` } });
    }
    // The replies to the requests of one read (a client that sent several at once) leave in one
    // write: the socket is corked at the first and uncorked once this turn's work is done.
    if (!client.corked) {
      client.corked = true;
      client.socket.cork();
      process.nextTick(uncork, client);
    }
    ws.send(frame, { binary: false });
    // Large replies go at once: the socket's own buffer, not a corked one, should hold them.
    if (client.socket.writableLength >= CORK_BYTES) uncork(client);
    if (ws.bufferedAmount > this.#stats.maxBufferedSeen) this.#stats.maxBufferedSeen = ws.bufferedAmount;
    return true;
  }

  /** Token bucket: requestsPerSecond, bursts of requestBurst. */
  #allow(client) {
    const now = performance.now();
    client.tokens = Math.min(this.#o.requestBurst, client.tokens + ((now - client.refilled) / 1000) * this.#o.requestsPerSecond);
    client.refilled = now;
    if (client.tokens >= 1) {
      client.tokens -= 1;
      client.strikes = Math.max(0, client.strikes - 0.1);
      return true;
    }
    client.strikes += 1;
    return false;
  }

  #message(client, data, isBinary) {
    if (client.dropped) return;
    this.#stats.requests++;
    if (isBinary) return this.#drop(client, CLOSE.UNSUPPORTED, 'binary frames are not part of the protocol: send JSON text');
    // Parsed first (a frame is at most maxPayload bytes), so even a refusal names its request.
    let msg;
    try {
      msg = JSON.parse(data.toString('utf8'));
    } catch {
      msg = undefined;
    }
    const id = msg && typeof msg === 'object' && (typeof msg.id === 'number' || (typeof msg.id === 'string' && msg.id.length <= 64)) ? msg.id : undefined;
    // A reply that is not held leaves after the client's held ones (#answerHeldOf first): one
    // client's replies come in the order of its requests.
    const now = (obj) => {
      this.#answerHeldOf(client);
      return this.#send(client, obj);
    };
    if (!this.#allow(client)) {
      if (client.strikes > this.#o.requestBurst) return this.#drop(client, CLOSE.POLICY, `too many requests (more than ${this.#o.requestsPerSecond} per second, again and again)`);
      return now({ id, ok: false, error: { code: 'rate_limited', message: `more than ${this.#o.requestsPerSecond} requests per second (bursts of ${this.#o.requestBurst}); slow down` } });
    }
    if (msg === undefined) return now({ ok: false, error: { code: 'bad_json', message: 'the frame is not JSON' } });
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      return now({ ok: false, error: { code: 'bad_request', message: 'a request is a JSON object { id, type, ... }' } });
    }
    const type = msg.type;
    const handler = typeof type === 'string' && Object.hasOwn(HANDLERS, type) ? HANDLERS[type] : null;
    const reply = (data) => this.#send(client, { id, type, ok: true, data });
    const fail = (e) => {
      if (e instanceof RequestError) return now({ id, type, ok: false, error: { code: e.code, message: e.message, ...e.extra } });
      if (e instanceof LockstepError) {
        const code = e.code === 'E_UNKNOWN_AGENT' ? 'not_found' : e.code === 'E_BUSY' ? 'busy' : e.code === 'E_CLOSED' ? 'closed' : e.code.startsWith('E_INVALID') ? 'bad_request' : 'runtime_error';
        return now({ id, type, ok: false, error: { code, message: e.message, lockstepCode: e.code } });
      }
      return now({ id, type, ok: false, error: { code: 'internal', message: String(e && e.message) } });
    };
    if (!handler) {
      return fail(new RequestError('unknown_type', `unknown request type ${v.describe(type)}; known: ${Object.keys(HANDLERS).join(', ')}`));
    }
    if (handler.needs === 'controls' && !this.#o.controls) return fail(new RequestError('controls_disabled', `${type} changes the session: start the server with serve({ controls: true }) to allow it`));
    if (handler.needs === 'clock' && !this.#o.clock) return fail(new RequestError('controls_disabled', `${type} drives the clock: the server was started with clock: false`));
    let args;
    try {
      args = handler.args ? handler.args(msg) : {};
    } catch (e) {
      return fail(e);
    }
    const run = () => {
      try {
        const out = handler.run.call(this, args, client);
        if (out && typeof out.then === 'function') out.then(reply, fail);
        else reply(out);
      } catch (e) {
        fail(e);
      }
    };
    // Reads of the kept history and snapshots may be held; the clock controls (`needs`) and
    // what must read or change the runtime (`free`) are never held, and leave after what is.
    if (!handler.free && !handler.needs) return this.#runSoon(client, run);
    this.#answerHeldOf(client);
    if (!handler.free) return run();
    // Reads or changes the runtime: now if it is free, else right after the tick running now.
    if (client.pending >= 8) return fail(new RequestError('busy', 'at most 8 requests per client wait for the runtime; wait for their replies'));
    client.pending++;
    const queued = this.#observer.whenFree(() => {
      client.pending--;
      if (!client.dropped) run();
    });
    if (!queued) {
      client.pending--;
      return fail(new RequestError('busy', 'too many requests wait for the runtime to be free; try again'));
    }
    if (this.#observer.deferred.length > this.#stats.maxDeferredSeen) this.#stats.maxDeferredSeen = this.#observer.deferred.length;
  }

  // ----- when to answer -------------------------------------------------------------------------

  /**
   * Answers a read-only request (served from the last snapshot and the kept history) now when
   * no tick runs, else right after the next tick starts. Why: the main thread also completes
   * each tick (`tickAsync` settles there), so work that is still running when a tick ends
   * delays the next one. Answered at arrival, a request lands at a random point of the tick
   * and overlaps its end about as often as its cost is a share of the tick; answered just
   * after a tick starts, it overlaps the end only if it costs more than a whole tick. A tick
   * (or a tickAsync(n) of many) that runs for more than SHADOW_WAIT_MS does not hold requests
   * longer: they are answered then.
   */
  #runSoon(client, run) {
    if (!this.#observer.busy || client.held.length >= MAX_SHADOWED) {
      this.#answerHeldOf(client);
      return run();
    }
    client.held.push(run);
    this.#holding.add(client);
    this.#heldCount++;
    const st = this.#stats.shadowed;
    st.held++;
    if (this.#heldCount > st.maxWaiting) st.maxWaiting = this.#heldCount;
    if (!this.#shadowTimer) this.#shadowTimer = setTimeout(() => this.#answerShadowed(false), SHADOW_WAIT_MS);
  }

  /** A tick ended (index.js → observer): if requests wait, answer them once the program has started its next tick. */
  #afterTick() {
    if (this.#heldCount === 0 || this.#shadowImmediate) return;
    // setImmediate runs after this turn's microtasks, where a program ticking in a loop
    // (await tickAsync(); …) has already started its next tick.
    this.#shadowImmediate = setImmediate(() => {
      this.#shadowImmediate = null;
      this.#answerShadowed(true);
    });
  }

  /** `afterTick`: a tick just ended (and the program's next one has started, if it ticks in a loop); else SHADOW_WAIT_MS passed, or the server closes. */
  #answerShadowed(afterTick) {
    if (this.#shadowTimer) clearTimeout(this.#shadowTimer);
    this.#shadowTimer = null;
    const holding = [...this.#holding];
    this.#holding.clear();
    for (const client of holding) this.#answerHeld(client, afterTick ? 'answeredAfterTick' : 'answeredAfterWait');
  }

  /** Answers `client`'s held requests now, in order: before a reply of its that must not overtake them. */
  #answerHeldOf(client) {
    if (client.held.length === 0) return;
    this.#holding.delete(client);
    this.#answerHeld(client, 'answeredEarly');
  }

  #answerHeld(client, counter) {
    const runs = client.held;
    client.held = [];
    this.#heldCount -= runs.length;
    const st = this.#stats.shadowed;
    // A client that left meanwhile gets nothing (and its requests are not run).
    if (client.dropped) {
      st.clientGone += runs.length;
      return;
    }
    st[counter] += runs.length;
    for (const run of runs) run();
  }

  /** At close: what is held is answered (from the last snapshot) before the clients are closed. */
  #answerHeldAtClose() {
    if (this.#shadowImmediate) clearImmediate(this.#shadowImmediate);
    this.#shadowImmediate = null;
    this.#answerShadowed(false);
  }

  // ----- between ticks --------------------------------------------------------------------------

  #between(now) {
    if (this.#summaryFile && now - this.#lastSummaryWrite >= this.#o.summaryIntervalMs) this.#writeSummaryFile(now);
  }

  #writeSummaryFile(now, force) {
    if (!this.#summaryFile) return;
    if (!force && now - this.#lastSummaryWrite < this.#o.summaryIntervalMs) return;
    this.#lastSummaryWrite = now;
    const c = this.#observer.summaryCache;
    // Older than summaryIntervalMs, and within the snapshot budget.
    const fresh = !c || this.#observer.due(c.at, this.#observer.costs.summary.lastMs, this.#o.summaryIntervalMs, now);
    this.#summaryFile.writeSummary(fresh ? this.#observer.takeSummary(now).data : c.data, true);
  }

  // ----- request handlers (called with this = the server) ------------------------------------

  reqHello() {
    return this.#hello();
  }

  reqSummary() {
    const { data, fresh, cache } = this.#observer.summary();
    const live = { busy: this.#observer.busy, fresh, clock: { playing: this.#clock.playing, hz: this.#clock.hz, error: this.#clock.error }, clients: this.#clients.size };
    if (!data) return { tick: null, ...live };
    // The snapshot is serialised (and encoded) once, whoever asks; only the live fields are
    // added per reply.
    cache.shared ??= new SharedJson(JSON.stringify(data).slice(0, -1));
    return new RawJson(cache.shared, `,${JSON.stringify(live).slice(1)}`);
  }

  reqAgents(a) {
    const table = this.#observer.agentTable();
    if (!table) return { total: 0, matched: 0, offset: a.offset, rows: [], modules: [], pending: true };
    // One page of one snapshot is serialised once, however many clients ask for it.
    const key = JSON.stringify(a);
    let page = table.pages.get(key);
    if (page) return page;
    let moduleIdx = null;
    if (a.module !== undefined) {
      moduleIdx = [];
      table.modules.forEach((m, i) => {
        if (m.startsWith(a.module) || this.#o.moduleNames[m] === a.module) moduleIdx.push(i);
      });
    }
    const view = table.view(a.states, moduleIdx, a.sort, a.desc);
    const rows = [];
    for (let k = a.offset; k < Math.min(view.length, a.offset + a.limit); k++) rows.push(table.row(view[k]));
    page = new RawJson(new SharedJson(JSON.stringify({
      tick: table.tick,
      total: table.count,
      matched: view.length,
      offset: a.offset,
      sort: a.sort,
      desc: a.desc,
      rows,
      modules: table.modules.map((hash) => ({ hash, name: this.#o.moduleNames[hash] ?? null })),
    })));
    if (table.pages.size >= 64) table.pages.clear();
    table.pages.set(key, page);
    return page;
  }

  reqAgent(a, client) {
    const info = this.#rt.inspect(a.agent);
    client.watching = a.agent;
    const w = this.#observer.watch(a.agent);
    const message = (m) => ({
      tick: m.tick,
      from: m.from,
      to: m.to,
      seq: m.seq,
      kind: m.kind,
      bytes: m.bytes,
      head: m.head.toString('hex'),
      text: /^[\x20-\x7e]*$/.test(m.head.toString('latin1')) ? m.head.toString('latin1') : null,
    });
    return {
      tick: this.#rt.currentTick,
      info: { ...info, moduleName: this.#o.moduleNames[info.module] ?? null },
      messages: w ? { inbound: w.inbound.slice(-a.messages).map(message), outbound: w.outbound.slice(-a.messages).map(message) } : null,
      watchedSince: w ? null : this.#rt.currentTick,
    };
  }

  /** `events` with `types` and no `since`: the newest `limit` events of those types this
   * dashboard holds (its `eventHistory`), oldest first; `next` is the cursor after them. */
  #newestEventsOfTypes(ring, a) {
    const events = [];
    let bytes = 0;
    for (let i = ring.length - 1; i >= 0 && events.length < a.limit && bytes < MAX_REPLY_BYTES / 4; i--) {
      const e = ring.at(i);
      if (!a.types.includes(e.type)) continue;
      events.push(e);
      bytes += 64 + (e.text?.length ?? 0) + (e.fault?.detail?.length ?? 0) + (e.detail?.length ?? 0);
    }
    events.reverse();
    const oldest = ring.length ? ring.at(0).cursor : this.#observer.eventCursor;
    return { events, next: this.#observer.eventCursor, oldest, latest: this.#observer.eventCursor, missedByDashboard: this.#observer.eventsMissed, skipped: 0 };
  }

  /** Where a filtered read from ring index `from` stopped: after the last matching event it
   * returned when it filled `limit`, else after everything held. */
  #nextAfterScan(ring, from, events, limit) {
    if (events.length >= limit) return events[events.length - 1].cursor + 1;
    return ring.length ? ring.at(ring.length - 1).cursor + 1 : this.#observer.eventCursor;
  }

  reqEvents(a) {
    this.#observer.pollEvents();
    const ring = this.#observer.events;
    if (a.types && a.since === undefined) return this.#newestEventsOfTypes(ring, a);
    const since = a.since ?? Math.max(0, this.#observer.eventCursor - a.limit);
    const from = ring.firstWhere((e) => e.cursor >= since);
    const events = [];
    let bytes = 0;
    for (let i = from; i < ring.length && events.length < a.limit && bytes < MAX_REPLY_BYTES / 4; i++) {
      const e = ring.at(i);
      if (a.types && !a.types.includes(e.type)) continue;
      events.push(e);
      bytes += 64 + (e.text?.length ?? 0) + (e.fault?.detail?.length ?? 0) + (e.detail?.length ?? 0);
    }
    const oldest = ring.length ? ring.at(0).cursor : this.#observer.eventCursor;
    return {
      events,
      // With a type filter, the events looked at (matching or not) are passed.
      next: a.types ? this.#nextAfterScan(ring, from, events, a.limit) : events.length ? events[events.length - 1].cursor + 1 : Math.max(since, oldest),
      oldest,
      latest: this.#observer.eventCursor,
      missedByDashboard: this.#observer.eventsMissed,
      // Events between `since` and the oldest kept here fell out of the dashboard's history.
      skipped: Math.max(0, oldest - since),
    };
  }

  reqHistory(a) {
    const ring = this.#observer.ticks;
    const from = a.since === undefined ? Math.max(0, ring.length - a.limit) : ring.firstAbove('tick', a.since);
    // Written as JSON.stringify would write { ticks: { tick, us, routed, delivered, faults }, seconds },
    // from each tick's numbers rendered once (a tick is in every client's next reply).
    const start = Math.max(from, ring.length - a.limit);
    const n = Math.max(0, ring.length - start);
    const cols = n > a.maxPoints ? groupedHistoryColumns(ring, start, n, a.maxPoints) : historyColumns(ring, start, n);
    const [tick, us, routed, delivered, faults] = cols.map((c) => c.join(','));
    const seconds = JSON.stringify(this.#observer.seconds.slice(Math.max(0, this.#observer.seconds.length - a.seconds)));
    return new RawJson(`{"ticks":{"tick":[${tick}],"us":[${us}],"routed":[${routed}],"delivered":[${delivered}],"faults":[${faults}]},"seconds":${seconds}}`);
  }

  reqHashes(a) {
    const ring = this.#observer.hashes;
    return { chain: ring.slice(Math.max(0, ring.length - a.limit)) };
  }

  /** `poll`: { summary, [history], [events], [agents], [hashes] }, each part what its own
   * request would answer (parts serialised before, like the summary and agent pages, are
   * copied in, not serialised again). */
  reqPoll(a) {
    const json = (part) => (part instanceof RawJson ? `${part.body instanceof SharedJson ? part.body.text : part.body}${part.tail}` : JSON.stringify(part));
    let body = `{"summary":${json(this.reqSummary())}`;
    if (a.history) body += `,"history":${json(this.reqHistory(a.history))}`;
    if (a.events) body += `,"events":${json(this.reqEvents(a.events))}`;
    if (a.agents) body += `,"agents":${json(this.reqAgents(a.agents))}`;
    if (a.hashes) body += `,"hashes":${json(this.reqHashes(a.hashes))}`;
    return new RawJson(body, '}');
  }

  /**
   * Time travel's `op` on the journal cursor (travel.js: in a worker thread; the reply is a
   * promise). Runs while the runtime is free (`free` handlers), so that its own journal can be
   * synced before the cursor is reopened to see newer ticks.
   */
  #travelOp(op, args, tick, client) {
    if (!this.#travel.source) {
      throw new RequestError('needs_journal', `seeking to tick ${tick} needs a journal: a live runtime keeps no past states. Run it with journal: { dir } (docs/JOURNAL.md), or serve({ journal: dir })`, { seekable: false });
    }
    return this.#travel.request(op, args, tick, client);
  }

  /** The range time travel can visit now. */
  reqSeekRange(a, client) {
    const t = this.#travel;
    // The newest tick there is: the live runtime's, or one past what the cursor has seen.
    return this.#travelOp('range', {}, t.source?.own ? this.#rt.currentTick : t.endTick + 1, client);
  }

  /** The whole session at a tick of the journal (agents by state) and a page of its agents. */
  reqSeek(a, client) {
    return this.#travelOp('seek', a, a.tick, client);
  }

  /** One agent at a tick of the journal: its state, and what it received and sent in that tick. */
  reqAgentAt(a, client) {
    return this.#travelOp('agentAt', a, a.tick, client);
  }

  async reqPlay(a) {
    return this.play(a.hz === undefined ? {} : { hz: a.hz });
  }

  async reqPause() {
    return this.pause();
  }

  async reqStep(a) {
    const report = await this.step(a.ticks);
    return { tick: report.tick, hash: report.hash, currentTick: report.tick + 1 };
  }

  reqKill(a) {
    this.#rt.kill(a.agent);
    return { agent: a.agent, state: this.#rt.inspect(a.agent).state };
  }

  reqShutdown(a) {
    this.#rt.shutdown(a.agent);
    return { agent: a.agent, state: this.#rt.inspect(a.agent).state };
  }

  reqRestart(a) {
    // The agent is shut down (agent_shutdown runs) unless it has stopped already, then a new
    // agent of the same module takes over (ids are never reused). Both through the public
    // API: recorded and journaled like any other input.
    const info = this.#rt.inspect(a.agent);
    // Running, or suspended in the middle of a time-sliced call: it must stop first (never two
    // of it). Preempted is a fault (it ran out of fuel): it runs no more, like faulted.
    const alive = info.state === 'running' || info.state === 'suspended';
    if (alive) this.#rt.shutdown(a.agent);
    const id = this.#rt.spawn(info.module);
    return { replaced: a.agent, replacedState: this.#rt.inspect(a.agent).state, shutDown: alive, agent: id };
  }

  reqSend(a) {
    const payload = a.hex !== undefined ? Buffer.from(a.hex, 'hex') : Buffer.from(a.text ?? '', 'utf8');
    if (payload.length > MAX_SEND_BYTES) throw new RequestError('bad_request', `a message from the dashboard is at most ${MAX_SEND_BYTES} bytes`);
    this.#rt.send(a.agent, payload, { kind: a.kind });
    return { agent: a.agent, bytes: payload.length, deliveredAtTick: this.#rt.currentTick };
  }
}

// ----- request argument checks ------------------------------------------------------------------

function bad(message) {
  return new RequestError('bad_request', message);
}

/** The `types` argument of `events` (`type` names the request itself): an event type or an
 * array of them (`fault`,
 * `dead_letter`, ...; at most 16, each a snake_case name of at most 32 characters). */
function eventTypes(type) {
  if (type === undefined) return undefined;
  const types = Array.isArray(type) ? type : [type];
  if (types.length === 0 || types.length > 16 || types.some((t) => typeof t !== 'string' || !/^[a-z_]{1,32}$/.test(t))) {
    throw bad('types must be an event type such as "fault" (or an array of at most 16 of them)');
  }
  return types;
}

function intArg(msg, name, min, max, dflt) {
  const x = msg[name];
  if (x === undefined) {
    if (dflt === undefined) throw bad(`${name} is required (an integer in ${min}..${max})`);
    return dflt;
  }
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) throw bad(`${name} must be an integer in ${min}..${max}; got ${v.describe(x)}`);
  return x;
}

const agentArg = (msg) => intArg(msg, 'agent', 1, 2 ** 32, undefined);

/** The parts a `poll` request may ask for besides the summary, in the order of its reply. */
const POLL_PARTS = ['history', 'events', 'agents', 'hashes'];

/** type → { args(msg) → checked args, run(args, client), free: needs the runtime free, needs: 'clock' | 'controls' }. */
const HANDLERS = {
  hello: { run() { return this.reqHello(); } },
  summary: { run() { return this.reqSummary(); } },
  agents: {
    args(msg) {
      let states;
      if (msg.state !== undefined) {
        states = Array.isArray(msg.state) ? msg.state : [msg.state];
        if (states.length > STATES.length || states.some((s) => !STATES.includes(s))) throw bad(`state must be one of ${STATES.join(', ')} (or an array of them)`);
      }
      if (msg.module !== undefined && (typeof msg.module !== 'string' || msg.module.length === 0 || msg.module.length > 64)) throw bad('module must be a module hash (or its prefix) or a module name');
      const sort = msg.sort ?? 'id';
      if (!COLUMNS.includes(sort)) throw bad(`sort must be one of ${COLUMNS.join(', ')}`);
      if (msg.order !== undefined && msg.order !== 'asc' && msg.order !== 'desc') throw bad('order must be "asc" or "desc"');
      return { offset: intArg(msg, 'offset', 0, 2 ** 32, 0), limit: intArg(msg, 'limit', 1, MAX_AGENT_PAGE, 50), states, module: msg.module, sort, desc: msg.order === 'desc' };
    },
    run(a) { return this.reqAgents(a); },
  },
  agent: { free: true, args: (msg) => ({ agent: agentArg(msg), messages: intArg(msg, 'messages', 0, 64, 32) }), run(a, client) { return this.reqAgent(a, client); } },
  events: {
    args: (msg) => ({ since: msg.since === undefined ? undefined : intArg(msg, 'since', 0, Number.MAX_SAFE_INTEGER), limit: intArg(msg, 'limit', 1, MAX_EVENTS_PAGE, 100), types: eventTypes(msg.types) }),
    run(a) { return this.reqEvents(a); },
  },
  history: {
    args: (msg) => ({
      since: msg.since === undefined ? undefined : intArg(msg, 'since', -1, Number.MAX_SAFE_INTEGER),
      limit: intArg(msg, 'limit', 1, 100_000, 600),
      seconds: intArg(msg, 'seconds', 0, 100_000, 60),
      maxPoints: intArg(msg, 'maxPoints', 1, 100_000, Infinity),
    }),
    run(a) { return this.reqHistory(a); },
  },
  hashes: { args: (msg) => ({ limit: intArg(msg, 'limit', 1, 100_000, 64) }), run(a) { return this.reqHashes(a); } },
  // Everything a page refreshes, in one request (one read, one reply, one wake-up per client
  // and poll instead of one per part): the summary, and each of `history`, `events`, `agents`
  // and `hashes` that is given, with that request's arguments.
  poll: {
    args(msg) {
      const a = {};
      for (const part of POLL_PARTS) {
        const sub = msg[part];
        if (sub === undefined) continue;
        if (sub === null || typeof sub !== 'object' || Array.isArray(sub)) throw bad(`${part} must be an object holding the arguments of a '${part}' request (or be left out)`);
        a[part] = HANDLERS[part].args(sub);
      }
      return a;
    },
    run(a) { return this.reqPoll(a); },
  },
  // Time travel: free, so that the runtime's own journal is synced between ticks (the
  // cursor's work itself runs in a worker thread: travel.js).
  seekRange: { free: true, run(a, client) { return this.reqSeekRange(a, client); } },
  seek: {
    free: true,
    args: (msg) => ({ tick: intArg(msg, 'tick', 0, Number.MAX_SAFE_INTEGER), offset: intArg(msg, 'offset', 0, 2 ** 32, 0), limit: intArg(msg, 'limit', 1, MAX_AGENT_PAGE, 50) }),
    run(a, client) { return this.reqSeek(a, client); },
  },
  agentAt: {
    free: true,
    args: (msg) => ({ tick: intArg(msg, 'tick', 0, Number.MAX_SAFE_INTEGER), agent: agentArg(msg), messages: intArg(msg, 'messages', 0, 64, 32) }),
    run(a, client) { return this.reqAgentAt(a, client); },
  },
  play: {
    needs: 'clock',
    args(msg) {
      if (msg.hz !== undefined && (typeof msg.hz !== 'number' || !Number.isFinite(msg.hz) || msg.hz <= 0 || msg.hz > 1e6)) throw bad('hz must be a number in (0, 1000000]');
      return { hz: msg.hz };
    },
    run(a) { return this.reqPlay(a); },
  },
  pause: { needs: 'clock', run() { return this.reqPause(); } },
  step: { needs: 'clock', args: (msg) => ({ ticks: intArg(msg, 'ticks', 1, MAX_STEP_TICKS, 1) }), run(a) { return this.reqStep(a); } },
  kill: { needs: 'controls', free: true, args: (msg) => ({ agent: agentArg(msg) }), run(a) { return this.reqKill(a); } },
  shutdown: { needs: 'controls', free: true, args: (msg) => ({ agent: agentArg(msg) }), run(a) { return this.reqShutdown(a); } },
  restart: { needs: 'controls', free: true, args: (msg) => ({ agent: agentArg(msg) }), run(a) { return this.reqRestart(a); } },
  send: {
    needs: 'controls',
    free: true,
    args(msg) {
      if (msg.text !== undefined && typeof msg.text !== 'string') throw bad('text must be a string');
      if (msg.hex !== undefined && (typeof msg.hex !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(msg.hex))) throw bad('hex must be an even number of hex digits');
      if (msg.text !== undefined && msg.hex !== undefined) throw bad('send text or hex, not both');
      return { agent: agentArg(msg), kind: intArg(msg, 'kind', 0, v.MAX_U32, 0), text: msg.text, hex: msg.hex };
    },
    run(a) { return this.reqSend(a); },
  },
};

/**
 * rt.serve(options): starts a dashboard server for `rt` (index.js lends `port`, the observer
 * hooks). Resolves once it listens.
 */
async function serve(rt, port, options) {
  const o = checkOptions(options);
  const server = new DashboardServer(rt, port, o);
  return server.listen();
}

module.exports = { serve, DashboardServer, CLOSE, PROTOCOL, SUBPROTOCOL, TOKEN_PROTOCOL_PREFIX, MAX_REPLY_BYTES, tokenMatches, hostname };
