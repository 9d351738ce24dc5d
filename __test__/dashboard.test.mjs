// The dashboard server (docs/DASHBOARD.md), spoken to with a real WebSocket client (ws): every
// request, the limits (malformed JSON, oversized and binary frames, unknown types, rate,
// clients, a client that never reads), the security checks (token, Origin, Host, static
// files), controls going through the Runtime's API (a controlled session replays exactly),
// and requests during a tickAsync (answered from the last snapshot, or after the tick).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { existsSync, mkdtempSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gossipRuntime, connect, upgradeStatus, lockstep, WebSocket, sleep, until } from './dashboard-helpers.mjs';

const { replay, verifyLog, EXAMPLES_PUBLIC_KEY } = lockstep;
// A full garbage collection on demand, for the memory bounds (node --test runs files without --expose-gc).
v8.setFlagsFromString('--expose-gc');
const forceGc = runInNewContext('gc');

/** A served runtime; `fn({ rt, server, ids, gossip })`; everything closed after. */
async function served(options, fn, runtime = {}) {
  const { rt, ids, gossip } = gossipRuntime(runtime.agents ?? 60, runtime);
  const server = await rt.serve(options);
  try {
    await fn({ rt, server, ids, gossip });
  } finally {
    await server.close();
    rt.close();
  }
}

function httpGet(server, path, { method = 'GET', headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.port, path, method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('summary, agents, agent, events, history, hashes: every read request answers with what the runtime did', async () => {
  await served({ moduleNames: {}, minTableMs: 0, snapshotBudget: 0 }, async ({ rt, server, ids, gossip }) => {
    rt.tick(5);
    const c = await connect(server);
    const hello = await c.data('hello');
    assert.equal(hello.protocol, 1);
    assert.equal(hello.seek, false);
    assert.equal(hello.controls, false);

    const s = await c.data('summary');
    assert.equal(s.tick, 5);
    assert.equal(s.agents.total, 60);
    assert.equal(s.agents.running, 60);
    assert.equal(s.lastTick.tick, 4);
    assert.equal(s.lastTick.hash, rt.stateHash());
    assert.ok(s.tickTime.samples === 1 && s.tickTime.p50 > 0, 'tick(5) is one sample');
    assert.equal(s.busy, false);
    assert.equal(s.journal, null, 'no journal: none named');
    assert.equal(s.clock.playing, false);
    assert.ok(s.recording);

    const page = await c.data('agents', { offset: 10, limit: 20 });
    assert.equal(page.total, 60);
    assert.equal(page.matched, 60);
    assert.deepEqual(page.rows.map((r) => r.id), ids.slice(10, 30));
    assert.equal(page.modules[page.rows[0].module].hash, gossip);
    assert.equal(page.rows[0].steps, 5);
    const info = rt.inspect(ids[10]);
    assert.equal(page.rows[0].sent, info.messagesSent);
    assert.equal(page.rows[0].memory, info.memoryBytes);

    // Sorting, and filtering by state and module.
    rt.kill(ids[3]);
    rt.tick();
    const bySent = await c.data('agents', { sort: 'sent', order: 'desc', limit: 60 });
    const sent = bySent.rows.map((r) => r.sent);
    assert.deepEqual(sent, [...sent].sort((a, b) => b - a));
    const killed = await c.data('agents', { state: 'killed' });
    assert.deepEqual(killed.rows.map((r) => r.id), [ids[3]]);
    assert.equal((await c.data('agents', { state: ['running', 'killed'] })).matched, 60);
    assert.equal((await c.data('agents', { module: gossip.slice(0, 8) })).matched, 60);
    assert.equal((await c.data('agents', { module: 'ffffffff' })).matched, 0);

    // One agent: its state, and (once watched) its messages in and out.
    const first = await c.data('agent', { agent: ids[0] });
    assert.equal(first.info.id, ids[0]);
    assert.equal(first.info.state, 'running');
    assert.deepEqual(first.messages, { inbound: [], outbound: [] }, 'watched from now on');
    rt.send(ids[0], 'hello', { kind: 9 });
    rt.tick(3);
    const later = await c.data('agent', { agent: ids[0], messages: 64 });
    assert.ok(later.messages.inbound.length > 0 && later.messages.outbound.length > 0);
    assert.ok(later.messages.inbound.some((m) => m.from === 0 && m.kind === 9 && m.text === 'hello' && m.bytes === 5));
    assert.ok(later.messages.outbound.every((m) => m.from === ids[0]));
    assert.equal((await c.request('agent', { agent: 10_000 })).error.code, 'not_found');

    // Events from a cursor; the program's drainEvents() still gets every event.
    const ev = await c.data('events', { since: 0, limit: 500 });
    assert.ok(ev.events.some((e) => e.type === 'spawned' && e.agent === ids[0]));
    assert.ok(ev.events.some((e) => e.type === 'killed' && e.agent === ids[3]));
    assert.deepEqual(ev.events.map((e) => e.cursor), ev.events.map((_, i) => ev.events[0].cursor + i), 'cursors are consecutive');
    const drained = rt.drainEvents();
    assert.ok(drained.some((e) => e.type === 'killed' && e.agent === ids[3]), 'the dashboard did not drain them');
    const none = await c.data('events', { since: ev.next });
    assert.deepEqual(none.events, []);
    // By type: the newest of those kinds it holds (how the page finds faults older than the
    // newest events when it connects), and from a cursor.
    const kills = await c.data('events', { types: 'killed', limit: 5 });
    assert.deepEqual(kills.events.map((e) => [e.type, e.agent]), [['killed', ids[3]]]);
    const spawns = await c.data('events', { types: ['spawned'], limit: 2 });
    assert.deepEqual(spawns.events.map((e) => e.agent), ev.events.filter((e) => e.type === 'spawned').slice(-2).map((e) => e.agent), 'the newest two, oldest first');
    const fromStart = await c.data('events', { since: 0, types: ['spawned', 'killed'], limit: 500 });
    assert.ok(fromStart.events.length > 0 && fromStart.events.every((e) => e.type === 'spawned' || e.type === 'killed'));
    assert.equal(fromStart.next, ev.next, 'a filtered read from a cursor passes every event it looked at');
    assert.equal((await c.request('events', { types: 'Fault!' })).error.code, 'bad_request');
    assert.equal((await c.request('events', { types: [] })).error.code, 'bad_request');

    const h = await c.data('history', { limit: 100 });
    assert.deepEqual(h.ticks.tick, [4, 5, 8], 'one entry per tick() call: its last tick');
    assert.ok(h.ticks.us.every((us) => us > 0));
    assert.equal((await c.data('history', { since: 5 })).ticks.tick.length, 1);
    const chain = await c.data('hashes', { limit: 10 });
    assert.deepEqual(chain.chain.map((x) => x.tick), [4, 5, 8]);
    assert.deepEqual(chain.chain.map((x) => x.gap), [false, false, true]);
    assert.equal(chain.chain[2].hash, rt.stateHash());
    await c.close();
  });
});

test('poll answers the summary and each part asked exactly as its own request does, in one reply; bad parts are bad_request', async () => {
  // minSnapshotMs: the summary request below answers from the poll's snapshot. A snapshot
  // retaken 100 ms (the default) later could differ in its rates, which count only complete
  // wall-clock seconds: a stall over a second boundary made them 0 in the poll and 5 ticks/s after.
  await served({ moduleNames: {}, minTableMs: 0, snapshotBudget: 0, minSnapshotMs: 60_000 }, async ({ rt, server, ids }) => {
    rt.tick(3);
    rt.kill(ids[2]);
    rt.tick(2);
    const c = await connect(server);
    await c.data('hello');
    const parts = { history: { since: 2, seconds: 0 }, events: { since: 0, limit: 500 }, agents: { sort: 'sent', order: 'desc', limit: 7 }, hashes: { limit: 3 } };
    const p = await c.data('poll', parts);
    assert.deepEqual(Object.keys(p), ['summary', 'history', 'events', 'agents', 'hashes']);
    for (const [type, args] of Object.entries(parts)) assert.deepEqual(p[type], await c.data(type, args), `${type} as its own request answers it`);
    // (Less what may differ between two requests: when its snapshot was taken, and whether
    // this request took it.)
    const { clients: _c1, at: _a1, fresh: _f1, ...summary } = p.summary;
    const { clients: _c2, at: _a2, fresh: _f2, ...alone } = await c.data('summary');
    assert.deepEqual(summary, alone, 'the summary as its own request answers it');
    assert.equal(p.summary.agents.killed, 1);
    assert.ok(p.events.events.some((e) => e.type === 'killed' && e.agent === ids[2]));
    // Only the summary when nothing else is asked; a part that is not an object, or has bad
    // arguments, is refused with the part's own message.
    assert.deepEqual(Object.keys(await c.data('poll')), ['summary']);
    for (const bad of [{ history: 5 }, { agents: [] }, { events: null }, { agents: { sort: 'nope' } }, { hashes: { limit: 0 } }]) {
      const r = await c.request('poll', bad);
      assert.equal(r.error.code, 'bad_request', JSON.stringify(bad));
    }
    await c.close();
  });
});

test('history with maxPoints: at most that many points, each a run of consecutive entries (its last tick, mean us and messages, summed faults); without it one point per entry', async () => {
  await served({}, async ({ rt, server }) => {
    for (let i = 0; i < 10; i++) rt.tick();
    rt.tick(5); // one entry covering 5 ticks
    const c = await connect(server);
    const all = (await c.data('history', { limit: 100, seconds: 0 })).ticks;
    assert.equal(all.tick.length, 11);
    const g = (await c.data('history', { limit: 100, seconds: 0, maxPoints: 3 })).ticks;
    assert.equal(g.tick.length, 3);
    // 11 entries in 3 points: entries [0, 3), [3, 7), [7, 11).
    const groups = [[0, 3], [3, 7], [7, 11]];
    const ticksOf = (k) => (k === 10 ? 5 : 1);
    groups.forEach(([from, to], p) => {
      assert.equal(g.tick[p], all.tick[to - 1], 'a point is its last tick');
      let us = 0;
      let ticks = 0;
      let routed = 0;
      let faults = 0;
      for (let k = from; k < to; k++) {
        us += all.us[k] * ticksOf(k);
        ticks += ticksOf(k);
        routed += all.routed[k];
        faults += all.faults[k];
      }
      assert.ok(Math.abs(g.us[p] - us / ticks) <= 0.1, `mean us per tick (${g.us[p]} vs ${us / ticks})`);
      assert.ok(Math.abs(g.routed[p] - routed / (to - from)) <= 0.05, 'mean routed per entry');
      assert.equal(g.faults[p], faults);
    });
    // Fewer entries than maxPoints: one point per entry, as without it.
    assert.deepEqual((await c.data('history', { limit: 100, seconds: 0, maxPoints: 50 })).ticks, all);
    // Since a point's tick, the next request carries on from there.
    assert.deepEqual((await c.data('history', { since: g.tick[1], seconds: 0, maxPoints: 100 })).ticks.tick, all.tick.slice(7));
    // In a poll too; a bad maxPoints is bad_request.
    assert.deepEqual((await c.data('poll', { history: { limit: 100, seconds: 0, maxPoints: 3 } })).history.ticks, g);
    for (const maxPoints of [0, -1, 1.5, 'x']) assert.equal((await c.request('history', { maxPoints })).error.code, 'bad_request');
    await c.close();
  });
});

test('without a journal, seek answers "needs a journal"', async () => {
  await served({}, async ({ rt, server }) => {
    rt.tick(3);
    const c = await connect(server);
    const r = await c.request('seek', { tick: 1 });
    assert.equal(r.ok, false);
    assert.equal(r.error.code, 'needs_journal');
    assert.equal(r.error.seekable, false);
    assert.equal((await c.request('seek', {})).error.code, 'bad_request');
    await c.close();
  });
});

test('malformed JSON, non-objects, unknown types and bad arguments get error replies and the connection stays usable', async () => {
  await served({}, async ({ server }) => {
    const c = await connect(server);
    const replies = [];
    c.ws.on('message', (d) => replies.push(JSON.parse(String(d))));
    c.ws.send('{not json');
    c.ws.send('[1,2]');
    c.ws.send('null');
    await until(() => replies.length >= 3, 5000, 'three error replies');
    assert.deepEqual(replies.map((r) => [r.ok, r.error.code]), [[false, 'bad_json'], [false, 'bad_request'], [false, 'bad_request']]);
    const unknown = await c.request('rm -rf', {});
    assert.equal(unknown.error.code, 'unknown_type');
    assert.match(unknown.error.message, /known: hello, summary/);
    assert.equal((await c.request('__proto__')).error.code, 'unknown_type');
    assert.equal((await c.request('constructor')).error.code, 'unknown_type');
    assert.equal((await c.request('agents', { limit: 100_000 })).error.code, 'bad_request');
    assert.equal((await c.request('agents', { state: 'sleeping' })).error.code, 'bad_request');
    assert.equal((await c.request('agents', { sort: 'constructor' })).error.code, 'bad_request');
    assert.equal((await c.request('agent', { agent: '1' })).error.code, 'bad_request');
    assert.equal((await c.request('agent', { agent: -1 })).error.code, 'bad_request');
    assert.equal((await c.request('events', { since: 1.5 })).error.code, 'bad_request');
    assert.equal((await c.request('kill', { agent: 1 })).error.code, 'controls_disabled');
    assert.equal((await c.data('summary')).agents.total, 60, 'still usable');
    await c.close();
  });
});

test('an oversized frame closes the connection with 1009, invalid UTF-8 with 1007, a binary frame with 1003, each with a reason; the server carries on', async () => {
  await served({ maxPayload: 1024 }, async ({ server }) => {
    const big = await connect(server);
    big.ws.send(JSON.stringify({ id: 1, type: 'summary', pad: 'x'.repeat(2000) }));
    const tooBig = await big.closed;
    assert.equal(tooBig.code, 1009);
    assert.match(tooBig.reason, /over 1024 bytes.*maxPayload/);
    const notUtf8 = await connect(server);
    notUtf8.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    const invalid = await notUtf8.closed;
    assert.equal(invalid.code, 1007);
    assert.match(invalid.reason, /not valid UTF-8/);
    const bin = await connect(server);
    bin.ws.send(Buffer.from([1, 2, 3]));
    const closed = await bin.closed;
    assert.equal(closed.code, 1003);
    assert.match(closed.reason, /binary/);
    const ok = await connect(server);
    assert.equal((await ok.data('summary')).agents.total, 60);
    await ok.close();
  });
});

test('a token is required off loopback and checked on loopback when set: missing or wrong is 401, via subprotocol or Bearer it is accepted', async () => {
  const { rt } = gossipRuntime(5);
  await assert.rejects(rt.serve({ host: '0.0.0.0' }), (e) => e.code === 'E_INVALID_ARGUMENT' && /token is required/.test(e.message));
  await assert.rejects(rt.serve({ token: 'short' }), (e) => e.code === 'E_INVALID_ARGUMENT');
  await assert.rejects(rt.serve({ bogus: 1 }), (e) => e.code === 'E_INVALID_ARGUMENT' && /unknown key "bogus"/.test(e.message));
  const server = await rt.serve({ token: true });
  try {
    assert.match(server.url, /#token=[A-Za-z0-9_-]{32}$/);
    assert.equal(await upgradeStatus(server.wsUrl), 401);
    assert.equal(await upgradeStatus(server.wsUrl, { protocols: ['lockstep.v1', 'lockstep.token.wrong-token-of-some-length'] }), 401);
    assert.equal(await upgradeStatus(server.wsUrl, { protocols: ['lockstep.v1', `lockstep.token.${server.token}x`] }), 401);
    assert.equal(await upgradeStatus(server.wsUrl, { headers: { authorization: 'Bearer nope' } }), 401);
    const a = await connect(server, { protocols: [`lockstep.token.${server.token}`] });
    assert.equal(a.ws.protocol, 'lockstep.v1', 'the token is never echoed back');
    const b = await connect(server, { headers: { authorization: `Bearer ${server.token}` } });
    assert.equal((await b.data('summary')).agents.total, 5);
    await a.close();
    await b.close();
    assert.equal(server.stats().refused['missing or wrong token'], 4);
  } finally {
    await server.close();
  }
  // On all addresses with a token: served (and the wrong token still refused).
  const open = await rt.serve({ host: '0.0.0.0', token: 'a-long-enough-test-token' });
  try {
    assert.equal(await upgradeStatus(`ws://127.0.0.1:${open.port}/ws`), 401);
    const c = await connect(open, { url: `ws://127.0.0.1:${open.port}/ws`, protocols: ['lockstep.token.a-long-enough-test-token'] });
    await c.close();
  } finally {
    await open.close();
    rt.close();
  }
});

test('a cross-site Origin is refused (403); no Origin, the same origin and allowedOrigins are accepted; a foreign Host header is refused (DNS rebinding)', async () => {
  await served({ allowedOrigins: ['https://ops.example'] }, async ({ server }) => {
    const same = `http://127.0.0.1:${server.port}`;
    assert.equal(await upgradeStatus(server.wsUrl, { origin: 'http://evil.example' }), 403);
    assert.equal(await upgradeStatus(server.wsUrl, { origin: `http://127.0.0.1:${server.port + 1}` }), 403, 'another port is another origin');
    assert.equal(await upgradeStatus(server.wsUrl, { origin: 'null' }), 403);
    assert.equal(await upgradeStatus(server.wsUrl, { origin: same }), 101);
    assert.equal(await upgradeStatus(server.wsUrl, { origin: 'https://ops.example' }), 101);
    assert.equal(await upgradeStatus(server.wsUrl), 101, 'no Origin: not a browser');
    // DNS rebinding: evil.example resolves to 127.0.0.1; its page is same-origin with itself.
    assert.equal(await upgradeStatus(server.wsUrl, { origin: `http://evil.example:${server.port}`, headers: { host: `evil.example:${server.port}` } }), 403);
    assert.equal((await httpGet(server, '/', { headers: { host: `evil.example:${server.port}` } })).status, 403);
    assert.equal(await upgradeStatus(server.wsUrl, { protocols: ['something-else'] }), 400, 'the protocol must be offered');
    assert.equal(await upgradeStatus(`ws://127.0.0.1:${server.port}/other`), 404);
  });
});

test('serve() keeps the options it checked: a getter\'s later answer (allowedHosts, moduleNames, journal.dir) is never the one kept; moduleNames: null is none', async () => {
  // An element of allowedHosts checked as a string, then lower-cased as 42: a raw TypeError.
  const allowedHosts = [];
  let hostReads = 0;
  Object.defineProperty(allowedHosts, 0, { get: () => (hostReads++ === 0 ? 'OPS.example' : 42), enumerable: true });
  // A module's name checked as a string, then kept as an object (sent to every client).
  const moduleNames = {};
  let nameReads = 0;
  const { rt, gossip } = gossipRuntime(2);
  Object.defineProperty(moduleNames, gossip, { get: () => (nameReads++ === 0 ? 'gossip' : { not: 'a name' }), enumerable: true });
  let dirReads = 0;
  const journal = { get dir() { return dirReads++ === 0 ? join(tmpdir(), 'lockstep-no-journal-here') : 5; } };
  const server = await rt.serve({ allowedHosts, moduleNames, journal });
  try {
    assert.deepEqual([hostReads, nameReads, dirReads], [1, 1, 1], 'each read once');
    assert.equal(await upgradeStatus(server.wsUrl, { headers: { host: `ops.example:${server.port}` } }), 101, 'the checked host is allowed');
    const c = await connect(server);
    const page = await c.data('agents', { offset: 0, limit: 2 });
    assert.deepEqual(page.modules.map((m) => m.name), ['gossip']);
    await c.close();
  } finally {
    await server.close();
  }
  // null is no names (Object.keys(null) threw a TypeError), as null is no options anywhere.
  const bare = await rt.serve({ moduleNames: null });
  await bare.close();
  rt.close();
});

test('static files come from a fixed allow-list, with a strict CSP: no path traversal, nothing else served', async () => {
  await served({}, async ({ server }) => {
    const page = await httpGet(server, '/');
    assert.equal(page.status, 200);
    assert.match(page.body, /<script src="\/app.js">/);
    assert.match(page.headers['content-security-policy'], /default-src 'none'; script-src 'self'/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    for (const path of ['/app.js', '/style.css', '/vendor/uPlot.iife.min.js', '/vendor/uPlot.min.css', '/favicon.svg']) {
      assert.equal((await httpGet(server, path)).status, 200, path);
    }
    for (const path of ['/../package.json', '/%2e%2e/index.js', '/..%2f..%2fpackage.json', '/dashboard/server.js', '/public/app.js', '/app.js/', '//etc/passwd', '/vendor/../../index.js', '/index.js']) {
      const r = await httpGet(server, path);
      assert.equal(r.status, 404, path);
      assert.doesNotMatch(r.body, /require\(|"name": "lockstep"/, path);
    }
    assert.equal((await httpGet(server, '/', { method: 'POST' })).status, 405);
    assert.equal((await httpGet(server, '/', { method: 'HEAD' })).status, 200);
  });
});

test('50 clients at once are all answered while the runtime ticks', async () => {
  await served({}, async ({ rt, server }) => {
    await server.play({ hz: 200 });
    const clients = await Promise.all(Array.from({ length: 50 }, () => connect(server)));
    assert.equal(server.clients, 50);
    const before = (await clients[0].data('summary')).tick;
    for (let round = 0; round < 3; round++) {
      const replies = await Promise.all(clients.flatMap((c) => [c.request('summary'), c.request('agents', { limit: 20 }), c.request('history', { limit: 50 }), c.request('events', { limit: 20 })]));
      assert.ok(replies.every((r) => r.ok), JSON.stringify(replies.find((r) => !r.ok)));
      await sleep(30);
    }
    await until(async () => (await clients[0].data('summary')).tick > before + 5, 10_000, 'ticks');
    await Promise.all(clients.map((c) => c.close()));
    await server.pause();
    assert.ok(rt.currentTick > before);
  }, { agents: 200 });
});

test('too many clients: the one past maxClients is closed with 1013 and a reason', async () => {
  await served({ maxClients: 2 }, async ({ server }) => {
    const a = await connect(server);
    const b = await connect(server);
    const ws = new WebSocket(server.wsUrl, ['lockstep.v1']);
    const [code, reason] = await new Promise((resolve) => ws.once('close', (c, r) => resolve([c, String(r)])));
    assert.equal(code, 1013);
    assert.match(reason, /too many clients/);
    await a.close();
    await b.close();
  });
});

test('past the request rate a client gets rate_limited replies, and if it keeps going it is closed with 1008', async () => {
  await served({ requestsPerSecond: 5, requestBurst: 10 }, async ({ server }) => {
    const c = await connect(server);
    const replies = [];
    c.ws.on('message', (d) => replies.push(JSON.parse(String(d))));
    for (let i = 0; i < 15; i++) c.ws.send(JSON.stringify({ id: i, type: 'hello' }));
    await until(() => replies.length >= 15, 5000, '15 replies');
    assert.equal(replies.filter((r) => r.ok).length, 10, 'the burst');
    assert.ok(replies.filter((r) => !r.ok).every((r) => r.error.code === 'rate_limited'));
    for (let i = 0; i < 200 && c.ws.readyState === WebSocket.OPEN; i++) c.ws.send(JSON.stringify({ id: i, type: 'hello' }));
    const closed = await c.closed;
    assert.equal(closed.code, 1008);
    assert.match(closed.reason, /too many requests/);
  });
});

/** Heap and buffers the process holds after a full garbage collection. */
function retainedBytes() {
  forceGc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external + m.arrayBuffers;
}

test('a client that never reads is closed (4000) once its unsent replies pass maxBufferedBytes; the server-side queue stays bounded and the runtime keeps ticking', async () => {
  const limit = 256 * 1024;
  await served({ maxBufferedBytes: limit, requestsPerSecond: 100_000, requestBurst: 100_000 }, async ({ rt, server }) => {
    await server.play(); // flat out
    const reader = await connect(server);
    const stalled = await connect(server);
    stalled.ws._socket.pause(); // never reads again: the kernel's buffers fill, then the server's
    const startTick = (await reader.data('summary')).tick;
    const retainedBefore = retainedBytes();
    const big = JSON.stringify({ type: 'agents', limit: 500 });
    let sent = 0;
    while (stalled.ws.readyState === WebSocket.OPEN && sent < 20_000) {
      for (let i = 0; i < 50; i++) stalled.ws.send(big.replace('{', `{"id":${sent++},`));
      await sleep(5);
      const st = server.stats();
      assert.ok(st.maxBufferedNow <= limit + st.limits.maxReplyBytes, `queued ${st.maxBufferedNow} bytes for one client`);
      if (st.dropped[4000]) break;
    }
    await until(() => server.stats().dropped[4000] === 1, 10_000, 'the stalled client to be closed');
    // It does not read, so it never answers the close: it is cut off a second later.
    await until(() => server.clients === 1, 10_000, 'the stalled client to be cut off');
    const st = server.stats();
    assert.ok(st.maxBufferedSeen <= limit + st.limits.maxReplyBytes, `at most the limit plus one reply was ever queued (${st.maxBufferedSeen})`);
    assert.ok(st.maxDeferredSeen <= st.limits.maxDeferred);
    // What the process holds once garbage is collected: ~20,000 replies of ~50 KB were asked
    // for (1 GB if kept); bounded queues keep at most one client's limit of them.
    const grown = retainedBytes() - retainedBefore;
    assert.ok(grown < 32 * 1024 * 1024, `the process retains ${grown} more bytes after the flood`);
    // The runtime ticked throughout, and the other client is still answered.
    const s = await reader.data('summary');
    assert.ok(s.tick > startTick, `ticks went on (${startTick} → ${s.tick})`);
    assert.equal(s.clock.playing, true);
    await server.pause();
    assert.ok(rt.currentTick >= s.tick);
    await reader.close();
  }, { agents: 1000 });
});

test('during a tickAsync the runtime is busy: the summary comes from the last snapshot and an agent request is answered after the tick', async () => {
  // snapshotBudget 0: a summary is retaken once minSnapshotMs (100 ms) passed, which the 120 ms
  // sleeps below outlast. With the default budget a retake also waits 50 times the last
  // summary's cost, longer than those sleeps when a loaded machine makes a summary costly.
  await served({ snapshotBudget: 0 }, async ({ rt, server, ids }) => {
    rt.tick();
    const c = await connect(server);
    const before = await c.data('summary');
    assert.equal(before.tick, 1);
    await sleep(120);
    const ticking = rt.tickAsync(400);
    const during = await c.data('summary');
    assert.equal(during.busy, true);
    assert.equal(during.tick, 1, 'the last between-ticks snapshot');
    const agent = c.data('agent', { agent: ids[0] });
    const report = await ticking;
    const a = await agent;
    assert.equal(a.tick, report.tick + 1, 'read right after the tick, between ticks');
    assert.equal(a.info.steps, 401);
    await sleep(120);
    assert.equal((await c.data('summary')).tick, 401);
    await c.close();
  }, { agents: 300 });
});

test('the event feed gets what calls between ticks queued and what ticks queued, though after a quiet tick the observer does not ask the runtime (report.eventsEnd)', async () => {
  await served({}, async ({ rt, server, ids }) => {
    const c = await connect(server);
    for (let i = 0; i < 20; i++) await rt.tickAsync(1);
    const quiet = await c.data('events', { since: 0, limit: 500 });
    rt.kill(ids[3]);
    for (let i = 0; i < 3; i++) await rt.tickAsync(1);
    const trap = rt.spawn(lockstep.exampleAgent('adv-trap'));
    let last;
    for (let i = 0; i < 3; i++) last = rt.tick(1);
    const after = await c.data('events', { since: quiet.next, limit: 500 });
    const types = after.events.map((e) => e.type);
    assert.ok(after.events.some((e) => e.type === 'killed' && e.agent === ids[3]), `the kill between ticks: ${types}`);
    assert.ok(after.events.some((e) => e.type === 'spawned' && e.agent === trap), `the spawn: ${types}`);
    assert.ok(after.events.some((e) => e.type === 'fault' && e.agent === trap), `the fault in a tick: ${types}`);
    assert.equal(after.next, last.eventsEnd, 'the feed is read up to the runtime\'s newest event');
    await c.close();
  });
});

test('a read request that arrives while a tick runs is answered after that tick, not during it (the main thread is free when a tick ends)', async () => {
  await served({}, async ({ rt, server }) => {
    rt.tick();
    const c = await connect(server);
    // Ticks of 2,000 gossip agents take milliseconds; the request's frame reaches the idle
    // main thread in far less, so it arrives while they run. How many ticks a call runs is
    // fitted to this machine's speed now (a loaded CI machine ran three ticks over 15 ms in
    // all 60 tries): about 6 ms of ticks, at least one.
    const oneTick = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await rt.tickAsync(1);
      oneTick.push(performance.now() - t0);
    }
    const perCall = Math.max(1, Math.min(3, Math.round(6 / oneTick.sort((a, b) => a - b)[2])));
    let judged = 0;
    // Until 8 calls were quick enough to judge (a loaded machine makes some slow), 60 at most.
    for (let i = 0; i < 60 && judged < 8; i++) {
      const started = performance.now();
      const ticking = rt.tickAsync(perCall);
      const history = c.data('history', { limit: 1, seconds: 0 });
      const report = await ticking;
      const ms = performance.now() - started;
      const next = rt.tickAsync(1); // a program ticking in a loop starts its next tick at once
      const h = await history;
      await next;
      // Ticks that ran past the ~20 ms a request may be held (a checkpoint every 10 ticks) let
      // it be answered during them, from what was kept before.
      if (ms > 15) continue;
      judged++;
      // Answered at arrival (while the three ticks ran), its newest tick would be older.
      assert.ok(h.ticks.tick.at(-1) >= report.tick, `the reply includes the ticks that were running when it arrived (${h.ticks.tick.at(-1)} < ${report.tick})`);
    }
    assert.ok(judged >= 3, `only ${judged} tickAsync(${perCall}) calls took under 15 ms (one tick: ${oneTick.map((t) => t.toFixed(1)).join(', ')} ms)`);
    const st = server.stats().shadowed;
    assert.ok(st.held >= 1, `held ${st.held}`);
    assert.equal(st.answeredAfterTick + st.answeredAfterWait + st.answeredEarly, st.held, 'every held request answered');
    assert.equal(st.waiting, 0);
    await c.close();
  }, { agents: 2000 });
});

test('a long tickAsync holds a read request at most ~20 ms; a client holds at most 8 (the rest are answered at once); none is lost', async () => {
  await served({}, async ({ rt, server }) => {
    rt.tick();
    const c = await connect(server);
    let settled = false;
    const ticking = rt.tickAsync(400).then((r) => {
      settled = true;
      return r;
    });
    await sleep(20);
    const replies = await Promise.all(Array.from({ length: 20 }, () => c.data('summary')));
    assert.equal(settled, false, 'answered while the long tickAsync still runs');
    assert.ok(replies.every((r) => r.busy === true), 'answered from the last snapshot while the runtime is busy');
    const st = server.stats().shadowed;
    assert.ok(st.maxWaiting >= 1 && st.maxWaiting <= 8, `at most 8 held for one client (saw ${st.maxWaiting})`);
    assert.ok(st.answeredAfterWait >= 1, 'released by the wait limit, not by a tick end');
    await ticking;
    assert.equal(server.stats().shadowed.waiting, 0);
    await c.close();
  }, { agents: 300 });
});

/** Resolves when the server side of a connection receives its next frame (before the server's handler runs). */
/** Starts a 20-tick tickAsync (tens of milliseconds) and sends `c` a summary request; resolves once the server has it, held, with { ticking } (wrapped: an async function returning the promise would wait for it). */
async function holdOneSummary(rt, c) {
  const ticking = rt.tickAsync(20);
  const arrived = nextServerFrame();
  c.ws.send(JSON.stringify({ id: 1, type: 'summary' }));
  await arrived;
  return { ticking };
}

// Resolves after the server's handler of the next frame it receives; `onArrive` runs just before
// that handler (at the frame's arrival, which can be event-loop turns after the client sent it).
function nextServerFrame(onArrive = () => {}) {
  const proto = WebSocket.prototype;
  const emit = proto.emit;
  return new Promise((resolve) => {
    proto.emit = function (ev, ...args) {
      if (ev === 'message' && this._isServer) {
        proto.emit = emit;
        onArrive();
        setImmediate(resolve); // after the server's handler
      }
      return emit.call(this, ev, ...args);
    };
  });
}

test('held requests keep one client\'s replies in request order: past 8 held, a request that needs the runtime, an error reply', async () => {
  await served({}, async ({ rt, server, ids }) => {
    rt.tick();
    const c = await connect(server);
    const order = [];
    c.ws.on('message', (d) => {
      const m = JSON.parse(String(d));
      if (m.id !== undefined) order.push(m.id);
    });
    const duringTick = async (send) => {
      order.length = 0;
      const ticking = rt.tickAsync(3);
      const replies = send();
      await ticking;
      const next = rt.tickAsync(1);
      await Promise.all(replies);
      await next;
      return [...order];
    };
    const ascending = (xs) => xs.every((x, i) => i === 0 || xs[i - 1] < x);
    const nine = await duringTick(() => Array.from({ length: 9 }, () => c.request('summary')));
    assert.ok(ascending(nine) && nine.length === 9, `9 summaries: ${nine}`);
    const withAgent = await duringTick(() => [c.request('history', { limit: 1 }), c.request('agent', { agent: ids[0] })]);
    assert.ok(ascending(withAgent), `history, then agent: ${withAgent}`);
    const withError = await duringTick(() => [c.request('hashes', { limit: 1 }), c.request('nope')]);
    assert.ok(ascending(withError), `hashes, then an unknown type: ${withError}`);
    const st = server.stats().shadowed;
    assert.equal(st.answeredAfterTick + st.answeredAfterWait + st.answeredEarly + st.clientGone + st.waiting, st.held);
    await c.close();
  }, { agents: 2000 });
});

test('requests held when the server or its runtime closes are answered before the close; a client that left gets nothing and is counted', async () => {
  for (const how of ['server', 'runtime']) {
    const { rt } = gossipRuntime(2000, { record: false });
    const server = await rt.serve();
    const c = await connect(server);
    const replies = [];
    c.ws.on('message', (d) => {
      const m = JSON.parse(String(d));
      if (m.id !== undefined) replies.push(m);
    });
    const { ticking } = await holdOneSummary(rt, c);
    assert.equal(server.stats().shadowed.waiting, 1, 'held while the tick runs');
    if (how === 'server') await server.close();
    else rt.close();
    const closed = await c.closed;
    await ticking.catch(() => {});
    assert.equal(closed.code, 1001);
    assert.deepEqual(replies.map((r) => [r.id, r.ok]), [[1, true]], `${how} closed: the held request was answered first`);
    await server.close();
    rt.close();
  }
  // A client that leaves while its requests are held: they are not run, and counted as clientGone.
  await served({}, async ({ rt, server }) => {
    const c = await connect(server);
    const { ticking } = await holdOneSummary(rt, c);
    c.ws.terminate();
    await c.closed;
    await ticking;
    await sleep(30);
    const st = server.stats().shadowed;
    assert.equal(st.clientGone, 1);
    assert.equal(st.answeredAfterTick + st.answeredAfterWait + st.answeredEarly, 0);
    assert.equal(st.waiting, 0);
  }, { agents: 2000 });
});

test('clock controls are never held: a pause that arrives while the clock\'s tick runs stops it after that tick', async () => {
  await served({ controls: true }, async ({ rt, server }) => {
    const c = await connect(server);
    let started = 0;
    let inflight = false;
    let arrivedDuringTick = 0;
    const tickAsync = rt.tickAsync.bind(rt);
    rt.tickAsync = (n) => {
      started++;
      inflight = true;
      const p = tickAsync(n);
      p.then(() => (inflight = false), () => (inflight = false));
      return p;
    };
    for (let i = 0; i < 5; i++) {
      await c.data('play', {});
      await sleep(20);
      while (!inflight) await new Promise((r) => setImmediate(r));
      // Counted when the server receives the pause, not when the client sends it: the tick in
      // flight at sending may end, and the clock rightly start another, before the frame arrives
      // (that race failed this test once in CI).
      let atArrival = -1;
      let inflightAtArrival = false;
      const arrived = nextServerFrame(() => {
        atArrival = started;
        inflightAtArrival = inflight;
      });
      const paused = c.data('pause');
      await arrived;
      await paused;
      await sleep(20);
      assert.ok(atArrival >= 0);
      if (inflightAtArrival) arrivedDuringTick++;
      assert.equal(started - atArrival, 0, `no tick started after the pause arrived (a tick was ${inflightAtArrival ? '' : 'not '}running then)`);
    }
    assert.ok(arrivedDuringTick >= 1, 'the case named: a pause that arrives while a tick runs');
    rt.tickAsync = tickAsync;
    await c.close();
  }, { agents: 2000 });
});

test('clock controls: play at a rate, pause, single-step exactly one tick', async () => {
  await served({}, async ({ rt, server }) => {
    const c = await connect(server);
    assert.equal((await c.data('play', { hz: 100 })).playing, true);
    await until(() => rt.closed === false && server.clock.playing && (server.stats().ticksKept > 5), 10_000, 'ticks');
    assert.equal((await c.request('step')).error.code, 'busy', 'no stepping while playing');
    assert.equal((await c.data('pause')).playing, false);
    const at = rt.currentTick;
    const step = await c.data('step');
    assert.equal(step.tick, at);
    assert.equal(rt.currentTick, at + 1);
    assert.equal((await c.data('step', { ticks: 3 })).currentTick, at + 4);
    assert.equal((await c.request('play', { hz: -1 })).error.code, 'bad_request');
    await c.close();
  });
  await served({ clock: false }, async ({ server }) => {
    const c = await connect(server);
    assert.equal((await c.request('play')).error.code, 'controls_disabled');
    assert.equal((await c.request('step')).error.code, 'controls_disabled');
    await c.close();
  });
});

test('a session driven by dashboard controls replays exactly, from its replay log and from its journal', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'lockstep-dash-controls-')), 'j');
  await served({ controls: true }, async ({ rt, server, ids }) => {
    const c = await connect(server);
    await c.data('play', { hz: 500 });
    await until(() => rt.closed === false && server.stats().ticksKept >= 10, 10_000, '10 ticks');
    // Controls while playing: applied between ticks.
    assert.equal((await c.data('send', { agent: ids[1], kind: 1, text: 'from the dashboard' })).bytes, 18);
    assert.equal((await c.data('kill', { agent: ids[2] })).state, 'killed');
    await c.data('pause');
    await c.data('step', { ticks: 2 });
    assert.equal((await c.data('shutdown', { agent: ids[3] })).state, 'stopped');
    const restarted = await c.data('restart', { agent: ids[2] });
    assert.equal(restarted.replaced, ids[2]);
    assert.equal(restarted.shutDown, false, 'killed already');
    assert.equal(rt.inspect(restarted.agent).module, rt.inspect(ids[2]).module);
    // A running agent is shut down before its replacement starts: never two of it.
    const running = () => rt.agents().filter((id) => rt.inspect(id).state === 'running').length;
    const runningBefore = running();
    const replaced = await c.data('restart', { agent: ids[4] });
    assert.deepEqual([replaced.shutDown, replaced.replacedState, rt.inspect(ids[4]).state], [true, 'stopped', 'stopped']);
    assert.equal(running(), runningBefore, 'one stopped, one started');
    await c.data('send', { agent: restarted.agent, kind: 2, hex: '00ff' });
    await c.data('step');
    await c.data('play', { hz: 500 });
    await sleep(50);
    await c.data('pause');
    assert.equal((await c.request('kill', { agent: 99_999 })).error.code, 'not_found');
    assert.equal((await c.request('send', { agent: ids[1], text: 'x'.repeat(5000) })).error.code, 'bad_request');
    const log = rt.stopRecording();
    const verdict = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY] });
    assert.ok(verdict.ok && verdict.complete, JSON.stringify(verdict));
    assert.equal(verdict.finalHash, rt.stateHash());
    assert.equal(verdict.ticksVerified, rt.currentTick);
    // The journal holds the same inputs: verified tick by tick, it ends in the same state.
    rt.syncJournal();
    const fromJournal = verifyLog(dir, { trustedKeys: [EXAMPLES_PUBLIC_KEY] });
    assert.ok(fromJournal.ok, JSON.stringify(fromJournal.divergence));
    assert.equal(fromJournal.ticksVerified, rt.currentTick);
    assert.equal(fromJournal.finalHash, rt.stateHash());
    await c.close();
  }, { journal: { dir } });
});

test('one server per runtime; closing the runtime closes its server and its clients (1001); afterwards nothing is observed', async () => {
  const { rt } = gossipRuntime(10);
  const server = await rt.serve();
  await assert.rejects(rt.serve(), (e) => e.code === 'E_BUSY');
  const c = await connect(server);
  await c.data('agent', { agent: 1 }); // watches agent 1
  rt.tick(2);
  rt.close();
  const closed = await c.closed;
  assert.equal(closed.code, 1001);
  await server.close();
  assert.equal(server.clients, 0);
  // A server closed by hand detaches: the next serve() is allowed.
  const { rt: rt2 } = gossipRuntime(10);
  const s1 = await rt2.serve();
  await s1.close();
  const s2 = await rt2.serve();
  await s2.close();
  rt2.tick(3);
  rt2.close();
});

test('npm run demo -- --ui: the gossip demo serves the dashboard, prints its URL, and on Ctrl-C replays its session', async () => {
  const { spawn } = await import('node:child_process');
  const demo = spawn(process.execPath, [new URL('../demo/index.mjs', import.meta.url).pathname, '--ui', '--port', '0', '--hz', '40', '--agents', '50'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  demo.stdout.setEncoding('utf8');
  const url = await new Promise((resolve, reject) => {
    demo.stdout.on('data', (d) => {
      out += d;
      const m = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) resolve(m[1]);
    });
    demo.once('exit', (code) => reject(new Error(`the demo exited (${code}) before printing its URL:\n${out}`)));
  });
  try {
    const ws = new WebSocket(`${url.replace('http', 'ws')}ws`, ['lockstep.v1']);
    const replies = [];
    await new Promise((resolve) => ws.on('open', () => ws.send(JSON.stringify({ id: 1, type: 'summary' }))).on('message', (d) => {
      replies.push(JSON.parse(String(d)));
      if (replies.length === 2) resolve();
    }));
    assert.equal(replies[1].data.agents.total, 53, '50 gossip agents and 3 adversarial ones');
    assert.equal(replies[1].data.clock.playing, true);
    ws.close();
    // Ctrl-C (to demo/index.mjs, which passes it on): the demo stops, replays and verifies.
    const exited = new Promise((resolve) => demo.once('exit', resolve));
    demo.kill('SIGINT');
    assert.equal(await exited, 0, out);
    assert.match(out, /replay of \d+ ticks \(dashboard controls included\): identical/);
    assert.match(out, /journal of \d+ ticks: identical/);
    // Its temporary journal is gone with it.
    const journalDir = /journal: (\S+)/.exec(out)[1];
    assert.equal(existsSync(journalDir), false, `${journalDir} was removed`);
  } finally {
    if (demo.exitCode === null) demo.kill('SIGKILL');
  }
});

test('time travel over the runtime\'s own journal: seekRange, seek (the agents at a past tick), agentAt (its messages of that tick), newer ticks after more ticks', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'lockstep-dash-journal-')), 'j');
  await served({}, async ({ rt, server, ids }) => {
    const hashes = [rt.stateHash()];
    const steps = [];
    for (let t = 0; t < 12; t++) {
      steps.push(rt.inspect(ids[3]).steps);
      hashes.push(rt.tick().hash);
    }
    const c = await connect(server);
    const hello = await c.data('hello');
    assert.equal(hello.seek, true);
    const range = await c.data('seekRange');
    assert.deepEqual([range.firstTick, range.endTick], [0, 12]);
    assert.deepEqual(range.snapshots, [5, 10]);
    const past = await c.data('seek', { tick: 7, limit: 10 });
    assert.equal(past.tick, 7);
    assert.equal(past.stateHash, hashes[7]);
    assert.equal(past.fromSnapshot, 5);
    assert.equal(past.ticksReplayed, 2);
    assert.equal(past.total, 60);
    assert.equal(past.rows.length, 10);
    assert.equal(past.rows.find((r) => r.id === ids[3]).steps, steps[7]);
    // The whole session at that tick, for the page's cards: every agent counted by state.
    assert.equal(past.agents.total, 60);
    assert.equal(past.agents.running + past.agents.preempted + past.agents.faulted + past.agents.stopped + past.agents.killed, 60);
    const at = await c.data('agentAt', { tick: 7, agent: ids[3] });
    assert.equal(at.info.id, ids[3]);
    assert.equal(at.info.steps, steps[7]);
    for (const m of at.messages.inbound) assert.equal(m.to, ids[3]);
    for (const m of at.messages.outbound) assert.equal(m.from, ids[3]);
    // Reading tick 7's messages stepped the cursor to 8; the same tick again (another page,
    // another agent) comes from what was read there, without going back (a restore and a replay).
    const again = await c.data('seek', { tick: 7, offset: 10, limit: 10 });
    assert.deepEqual([again.ticksReplayed, again.fromSnapshot, again.stateHash, again.rows[0].id], [0, null, hashes[7], ids[10]]);
    const other = await c.data('agentAt', { tick: 7, agent: ids[4] });
    assert.equal(other.info.steps, steps[7]);
    for (const m of other.messages.inbound) assert.equal(m.to, ids[4]);
    // The runtime goes on; a later tick makes the server read the journal again.
    for (let t = 12; t < 17; t++) hashes.push(rt.tick().hash);
    const later = await c.data('seek', { tick: 16 });
    assert.equal(later.endTick, 17);
    assert.equal(later.stateHash, hashes[16]);
    // At the cursor's last tick an agent has no messages yet; once the runtime has run that
    // tick, the journal holds them and the cursor is reopened to read them.
    const atEnd = await c.data('agentAt', { tick: 17, agent: ids[3] });
    assert.deepEqual([atEnd.messages.inbound.length, atEnd.messages.outbound.length], [0, 0]);
    hashes.push(rt.tick().hash);
    const ran = await c.data('agentAt', { tick: 17, agent: ids[3] });
    assert.ok(ran.messages.outbound.length > 0, 'tick 17 ran: what the agent sent in it');
    // A request that waits for the next reopen (250 ms after the last) is not overtaken by a
    // later one of the same client: its replies come in the order of its requests.
    hashes.push(rt.tick().hash);
    const order = [];
    await Promise.all([19, 3].map((tick) => c.data('seek', { tick, limit: 1 }).then((r) => order.push(r.tick))));
    assert.deepEqual(order, [19, 3]);
    const beyond = await c.request('seek', { tick: 40 });
    assert.equal(beyond.ok, false);
    assert.equal(beyond.error.code, 'bad_request');
    assert.equal((await c.request('agentAt', { tick: 3, agent: 10_000 })).error.code, 'not_found');
    // The summary names the journal: its directory, the durable tick (fsync 'tick': the last
    // tick run), its size on disk.
    let journal;
    // Its size is measured in a worker thread: null until the first measure is back.
    for (let i = 0; i < 100 && !journal?.bytes; i++) {
      journal = (await c.data('summary')).journal;
      if (!journal.bytes) await sleep(20);
    }
    assert.equal(journal.dir, dir);
    assert.equal(journal.durableTick, 18);
    assert.ok(journal.files >= 2 && journal.bytes > 0, JSON.stringify(journal));
    await c.close();
  }, { journal: { dir, snapshotIntervalTicks: 5, fsync: 'tick' } });
});

test('restart replaces a preempted agent without shutting it down and shuts a suspended (time-sliced) one down first; seek counts a suspended agent as running, as the live summary does', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'lockstep-dash-restart-')), 'j');
  await served({ controls: true }, async ({ rt, server }) => {
    const spin = rt.loadModule(lockstep.exampleAgent('adv-spin'));
    const preempted = rt.spawn(spin); // burns its fuel per call: preempted, for good
    rt.tick(2);
    const suspended = rt.spawn(spin, { fuelPerTick: 100_000 }); // sliced: suspended mid-call
    rt.tick(2);
    assert.deepEqual([rt.inspect(preempted).state, rt.inspect(suspended).state], ['preempted', 'suspended']);
    const c = await connect(server);
    const live = (await c.data('summary')).agents;
    const past = await c.data('seek', { tick: rt.currentTick });
    assert.deepEqual(past.agents, live);
    assert.equal(past.agents.running, 6);
    const a = await c.data('restart', { agent: preempted });
    assert.deepEqual([a.shutDown, a.replacedState, rt.inspect(a.agent).state], [false, 'preempted', 'running']);
    const b = await c.data('restart', { agent: suspended });
    assert.deepEqual([b.shutDown, b.replacedState, rt.inspect(suspended).state], [true, 'stopped', 'stopped']);
    await c.close();
  }, { agents: 5, journal: { dir }, fuelPerCall: 50_000_000 });
});

test('the summary\'s durable tick is the runtime\'s own, also for a runtime that ticked and synced before serve()', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'lockstep-dash-durable-')), 'j');
  const { rt } = gossipRuntime(10, { journal: { dir } });
  try {
    rt.tick(30);
    assert.equal(rt.syncJournal(), 29);
    assert.equal(rt.durableTick, 29);
    const server = await rt.serve();
    const c = await connect(server);
    assert.equal((await c.data('summary')).journal.durableTick, 29);
    await c.close();
    await server.close();
  } finally {
    rt.close();
  }
  const { rt: plain } = gossipRuntime(3);
  assert.equal(plain.durableTick, null, 'no journal');
  plain.close();
});

test('serve({ journal }) of another session\'s journal: a path trusts no publisher (the error says how to pass trustedKeys), { dir, trustedKeys } travels', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'lockstep-dash-other-')), 'j');
  const { rt: recorded } = gossipRuntime(5, { journal: { dir } });
  recorded.tick(6);
  recorded.close();
  for (const [journal, ok] of [[dir, false], [{ dir, trustedKeys: [EXAMPLES_PUBLIC_KEY] }, true]]) {
    await served({ journal }, async ({ server }) => {
      const c = await connect(server);
      const r = await c.request('seek', { tick: 3 });
      if (ok) assert.equal(r.data.tick, 3);
      else {
        assert.equal(r.error.lockstepCode, 'E_REPLAY_UNTRUSTED');
        assert.match(r.error.message, /serve\(\{ journal: \{ dir, trustedKeys/);
      }
      await c.close();
    }, { agents: 2 });
  }
});

test('time travel never stalls the live runtime: a long seek runs off the main thread while ticks go on, and a tick not reached yet is refused without reading the journal', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'lockstep-dash-travel-')), 'j');
  // No snapshots: a seek to the last tick replays every tick from the start.
  await served({}, async ({ rt, server }) => {
    const hashes = [];
    for (let t = 0; t < 1500; t++) hashes.push(rt.tick().hash);
    const c = await connect(server);
    await c.data('seekRange');
    const before = server.stats().travel;
    // Past the live tick: refused at once, the journal neither synced nor reopened.
    const beyond = await c.request('seek', { tick: 1e12 });
    assert.equal(beyond.error.code, 'bad_request');
    assert.match(beyond.error.message, /past the journal's end \(tick 1500\)/);
    assert.equal(server.stats().travel.reopens, before.reopens);
    // While the seek replays 1,499 ticks (in the time-travel thread), the program ticks on.
    let replied = false;
    const seekStarted = performance.now();
    const seek = c.data('seek', { tick: 1499 }).finally(() => (replied = true));
    let ticksMeanwhile = 0;
    while (!replied && ticksMeanwhile < 100_000) {
      await rt.tickAsync(1);
      ticksMeanwhile++;
    }
    const past = await seek;
    const seekMs = performance.now() - seekStarted;
    assert.equal(past.stateHash, hashes[1498]);
    assert.equal(past.ticksReplayed, 1499);
    // On the main thread (before) the replay ran between two ticks: none went on meanwhile.
    assert.ok(ticksMeanwhile >= 20, `only ${ticksMeanwhile} ticks ran while the seek replayed 1,499`);
    // Bounded: at most 4 time-travel requests of one client wait; more are answered busy.
    const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => c.request('seek', { tick: i % 2 ? 1400 : 10 })));
    assert.ok(burst.some((r) => r.ok === false && r.error.code === 'busy'), JSON.stringify(burst.map((r) => r.ok || r.error.code)));
    assert.ok(server.stats().travel.maxWaiting <= 16);
    // A client that asks for far seeks and leaves: what it left waiting is dropped, not replayed for nobody.
    await until(() => server.stats().travel.waiting === 0, 30_000, 'the burst to be answered');
    const leaver = await connect(server);
    // Each far from the last (and before the cursor's in-memory snapshot at 1,000): ~1,000 ticks of replay each.
    for (const tick of [999, 998, 999, 998]) leaver.request('seek', { tick });
    await until(() => server.stats().travel.waiting >= 3, 5_000, 'its seeks to wait');
    await leaver.close();
    await until(() => server.stats().travel.waiting === 0, 30_000, 'its seeks to be done or dropped');
    assert.ok(server.stats().travel.dropped >= 2, JSON.stringify(server.stats().travel));
    // Closing does not wait for a replay in progress (the worker's native call cannot be
    // interrupted; it is left to finish on its own). A tick past the cursor's end reopens it:
    // a new cursor, which replays every tick from the start.
    await until(() => server.stats().travel.waiting === 0, 30_000, 'the burst to be answered');
    rt.tick(3);
    const reopens = server.stats().travel.reopens;
    c.request('seek', { tick: rt.currentTick - 1 });
    await until(() => server.stats().travel.reopens > reopens, 5_000, 'the seek to reach the thread');
    await sleep(20);
    const closing = performance.now();
    await server.close();
    const closeMs = performance.now() - closing;
    assert.ok(closeMs < seekMs / 2, `close took ${closeMs.toFixed(0)} ms; a replay of 1,499 ticks takes ${seekMs.toFixed(0)} ms`);
  }, { journal: { dir, snapshotIntervalTicks: 0 }, agents: 100 });
});

test('a process that exits while a time-travel seek replays ends at once: the seek stops at its next tick (the cursor\'s interrupt word)', async () => {
  // Node waits for a worker thread's native call before the process ends: a replay of 1,499
  // ticks in the time-travel thread held the exit until it was done.
  const dir = join(mkdtempSync(join(tmpdir(), 'lockstep-dash-exit-')), 'j');
  const script = fileURLToPath(new URL('./fixtures/exit-during-seek.mjs', import.meta.url));
  const child = spawn(process.execPath, [script, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const line = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    child.once('exit', (code) => reject(new Error(`exited (${code}) before its seek: ${err}`)));
  });
  const exiting = performance.now();
  const code = await new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
  const exitMs = performance.now() - exiting;
  const { fullSeekMs } = JSON.parse(line);
  assert.equal(code, 0, err);
  assert.ok(exitMs < fullSeekMs / 2, `the process took ${exitMs.toFixed(0)} ms to exit; the whole seek takes ${fullSeekMs.toFixed(0)} ms`);
});

/** `npx lockstep dashboard <dir>` in a child process, once it has printed its URL. */
async function offlineViewer(dir) {
  const cli = fileURLToPath(new URL('../bin/lockstep.js', import.meta.url));
  const child = spawn(process.execPath, [cli, 'dashboard', dir, '--trust', EXAMPLES_PUBLIC_KEY], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  await until(() => /read-only/.test(out) || child.exitCode !== null, 20_000, 'the URL');
  assert.equal(child.exitCode, null, err);
  return { child, out, url: new URL(out.match(/http:\/\/\S+/)[0]) };
}

test('npx lockstep dashboard <dir>: a recorded session\'s journal, read-only, with time travel over every tick', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'lockstep-dash-offline-')), 'j');
  const { rt, ids } = gossipRuntime(30, { journal: { dir, snapshotIntervalTicks: 4 } });
  const hashes = [rt.stateHash()];
  for (let t = 0; t < 10; t++) hashes.push(rt.tick().hash);
  rt.close();
  const { child, out, url } = await offlineViewer(dir);
  try {
    assert.match(out, /ticks 0\.\.10, read-only/);
    const c = await connect(null, { url: `ws://${url.host}/ws` });
    const hello = await c.data('hello');
    assert.equal(hello.seek, true);
    assert.equal(hello.clock, false);
    assert.equal(hello.controls, false);
    const s = await c.data('summary');
    assert.equal(s.tick, 10);
    assert.equal(s.lastTick?.hash ?? hashes[10], hashes[10]);
    const past = await c.data('seek', { tick: 6 });
    assert.equal(past.stateHash, hashes[6]);
    assert.equal(past.fromSnapshot, 4);
    const at = await c.data('agentAt', { tick: 6, agent: ids[0] });
    assert.equal(at.info.steps, 6);
    assert.equal((await c.request('step', {})).error.code, 'controls_disabled');
    assert.equal((await c.request('kill', { agent: ids[0] })).error.code, 'controls_disabled');
    await c.close();
  } finally {
    child.kill('SIGINT');
    await new Promise((resolve) => child.once('exit', resolve));
  }
  assert.equal(child.exitCode, 0);
});

test('npx lockstep dashboard <dir>: a crashed session (SIGKILL mid-run) opens read-only at its last durable tick, with time travel', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'lockstep-dash-crashed-')), 'j');
  // A child that ticks a journaled gossip session (every tick durable) and prints each hash.
  const code = `const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require(${JSON.stringify(fileURLToPath(new URL('../index.js', import.meta.url)))});
const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], seed: 3, journal: { dir: process.argv[1], fsync: 'tick', snapshotIntervalTicks: 8 } });
rt.spawnMany(exampleAgent('gossip'), 30);
console.log('hash ' + rt.stateHash());
setInterval(() => console.log('hash ' + rt.tick().hash), 2);`;
  const writer = spawn(process.execPath, ['-e', code, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  let printed = '';
  writer.stdout.on('data', (d) => (printed += d));
  await until(() => (printed.match(/^hash /gm) ?? []).length > 40 || writer.exitCode !== null, 20_000, '40 ticks');
  writer.kill('SIGKILL');
  await new Promise((resolve) => writer.once('exit', resolve));
  // hashes[t]: the state at tick t (before tick t ran); the last may be torn off the journal.
  const hashes = printed.split('\n').filter((l) => l.startsWith('hash ')).map((l) => l.slice(5));
  const { child, url } = await offlineViewer(dir);
  try {
    const c = await connect(null, { url: `ws://${url.host}/ws` });
    const s = await c.data('summary');
    // Every tick whose hash was printed was durable (fsync 'tick'), but the kill may land
    // between a tick's sync and its print: the journal holds at least what was printed.
    assert.ok(s.tick >= hashes.length - 1, `opened at tick ${s.tick}, ${hashes.length - 1} printed`);
    const past = await c.data('seek', { tick: 20 });
    assert.equal(past.stateHash, hashes[20]);
    assert.equal(past.agents.total, 30);
    const back = await c.data('seek', { tick: 19 });
    assert.equal(back.stateHash, hashes[19]);
    await c.close();
  } finally {
    child.kill('SIGINT');
    await new Promise((resolve) => child.once('exit', resolve));
  }
  assert.equal(child.exitCode, 0);
});

test('serve() attaches during a tickAsync of a journaled runtime (its journal directory is known without asking the busy runtime)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-serve-busy-'));
  const rt = new lockstep.Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], journal: { dir } });
  rt.spawnMany(lockstep.exampleAgent('counter'), 2000);
  const ticking = rt.tickAsync(200);
  const server = await rt.serve({ port: 0 });
  const c = await connect(server);
  assert.equal((await c.data('hello')).seek, true, 'time travel offered: the runtime has a journal');
  await ticking;
  await c.close();
  await server.close();
  assert.equal(rt.journalDir, dir);
  rt.close();
});
