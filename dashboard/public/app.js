// The lockstep dashboard page: polls the server's pull-based protocol (docs/DASHBOARD.md) over
// one WebSocket and draws what it gets. Everything agents wrote (log lines, fault details,
// payloads) is shown with textContent, never as HTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const fmt = new Intl.NumberFormat('en-US');
  const fmt1 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
  const num = (x) => (x == null ? '–' : fmt.format(x));

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function bytes(n) {
    if (n == null) return '–';
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${fmt1.format(n / 1024)} KiB`;
    return `${fmt1.format(n / 1024 / 1024)} MiB`;
  }

  function micros(us) {
    if (us == null) return '–';
    if (us >= 10_000) return `${fmt1.format(us / 1000)} ms`;
    if (us >= 1000) return `${(us / 1000).toFixed(2)} ms`;
    return `${fmt1.format(us)} µs`;
  }

  function compact(n) {
    if (n == null) return '–';
    if (n >= 1e9) return `${fmt1.format(n / 1e9)} G`;
    if (n >= 1e6) return `${fmt1.format(n / 1e6)} M`;
    if (n >= 1e4) return `${fmt1.format(n / 1e3)} k`;
    return fmt.format(Math.round(n));
  }

  let toastTimer = null;
  function toast(text, error) {
    const t = $('toast');
    t.textContent = text;
    t.className = `toast${error ? ' error' : ''}`;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => t.classList.add('hidden'), 4000);
  }

  // ----- the connection ---------------------------------------------------------------------

  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  let ws = null;
  let nextId = 1;
  const waiting = new Map();
  let hello = null;
  let backoff = 500;

  function setConn(state, text) {
    $('conn').className = `conn ${state}`;
    $('conn-text').textContent = text;
  }

  function connect() {
    const protocols = ['lockstep.v1'];
    if (token) protocols.push(`lockstep.token.${token}`);
    ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`, protocols);
    ws.onopen = () => {
      backoff = 500;
      setConn('up', 'connected');
    };
    ws.onmessage = (m) => {
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      if (msg.type === 'hello' && msg.id === undefined) {
        hello = msg.data;
        onHello();
        return;
      }
      const w = waiting.get(msg.id);
      if (!w) return;
      waiting.delete(msg.id);
      if (msg.ok) w.resolve(msg.data);
      else w.reject(Object.assign(new Error(msg.error.message), { code: msg.error.code }));
    };
    ws.onclose = (e) => {
      for (const w of waiting.values()) w.reject(new Error('disconnected'));
      waiting.clear();
      setConn('down', `disconnected${e.reason ? `: ${e.reason}` : ''} (${e.code}) — retrying`);
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 8000);
    };
  }

  function request(type, args) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) return reject(new Error('not connected'));
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, type, ...args }));
    });
  }

  function onHello() {
    $('clock-controls').classList.toggle('hidden', !hello.clock);
    $('d-controls').classList.toggle('hidden', !hello.controls);
    $('seek-note').textContent = hello.seek ? 'live · drag back to travel in time' : 'live · seek needs a journal';
    for (const id of ['seek-prev', 'seek-next']) $(id).disabled = !hello.seek;
  }

  // ----- summary ------------------------------------------------------------------------------

  let summary = null;
  async function pollSummary() {
    applySummary(await request('summary'));
  }

  /** The agents card: how many, by state. */
  function renderAgentCounts(a) {
    $('c-agents').textContent = num(a.total);
    const states = $('c-states');
    states.replaceChildren();
    for (const k of ['running', 'preempted', 'faulted', 'stopped', 'killed']) {
      if (!a[k] && k !== 'running') continue;
      const span = el('span', `st-${k}`);
      span.append(el('b', null, num(a[k])), ` ${k}`);
      states.append(span);
    }
  }

  function applySummary(s) {
    if (s.tick == null) return;
    summary = s;
    if (past === null) $('tick').textContent = num(s.tick);
    // At a past tick the agents card shows that tick (the seek's counts), not the live ones.
    renderAgentCounts(past === null ? s.agents : past.reply.agents);
    const tt = s.tickTime;
    $('c-p50').replaceChildren(micros(tt.p50), el('span', 'unit', 'p50'));
    $('c-pct').textContent = `p90 ${micros(tt.p90)} · p99 ${micros(tt.p99)} · max ${micros(tt.max)}`;
    $('c-tps').replaceChildren(fmt1.format(s.rate.ticksPerSecond), el('span', 'unit', 'ticks/s'));
    $('c-mps').textContent = `${compact(s.rate.messagesPerSecond)} messages/s${s.inference ? ` · ${num(s.inference.requests)} inferences` : ''}`;
    if (s.lastTick) {
      $('c-routed').replaceChildren(num(s.lastTick.messagesRouted), el('span', 'unit', 'routed'));
      $('c-last').textContent = `${num(s.lastTick.agentsStepped)} stepped on ${num(s.lastTick.workers)} thread${s.lastTick.workers === 1 ? '' : 's'} · ${num(s.lastTick.deadLetters)} dead letters · ${num(s.lastTick.faults)} faults`;
    }
    const q = $('c-queues');
    q.replaceChildren();
    for (const [k, label] of [['events', 'events'], ['deadLetters', 'dead letters'], ['hostMessages', 'to host'], ['pendingInputs', 'pending in']]) {
      q.append(el('span', null, label), el('span', null, num(s.queues[k])));
    }
    const clock = s.clock;
    const cs = $('clock-state');
    cs.textContent = clock.playing ? `playing${clock.hz ? ` at ${fmt1.format(clock.hz)} Hz` : ' flat out'}` : clock.error ? `stopped: ${clock.error}` : 'paused';
    cs.className = `clock-state${clock.playing ? ' playing' : ''}`;
    $('btn-play').disabled = clock.playing && Number($('hz').value) === clock.hz;
    $('btn-pause').disabled = !clock.playing;
    $('btn-step').disabled = clock.playing;
    const j = s.journal;
    const journal = j ? `journal${j.bytes == null ? '' : ` ${bytes(j.bytes)}`}${j.durableTick == null ? '' : `, durable to tick ${num(j.durableTick)}`} · ` : '';
    $('meta').textContent = `${journal}${s.recording ? 'recording · ' : ''}${num(s.clients)} client${s.clients === 1 ? '' : 's'}${s.busy ? ' · ticking' : ''}`;
    const seek = $('seek');
    // Positions are ticks run: `s.tick` (the live state) at the right end.
    seek.max = String(Math.max(0, s.tick));
    if (!seekTouched && past === null) seek.value = seek.max;
  }

  // ----- time travel --------------------------------------------------------------------------

  /** null: live; else { tick, reply } of the seek shown. */
  let past = null;

  async function travel(tick) {
    const max = Number($('seek').max);
    if (tick >= max) return backToLive();
    const note = $('seek-note');
    note.className = 'seek-note';
    note.textContent = `seeking tick ${num(tick)}…`;
    try {
      const r = await request('seek', { tick, offset: table.offset, limit: PAGE });
      past = { tick: r.tick, reply: r };
      document.body.classList.add('past');
      $('seek').value = String(r.tick);
      $('seek-live').classList.remove('hidden');
      $('tick').textContent = num(r.tick);
      renderAgentCounts(r.agents);
      note.className = 'seek-note past';
      note.textContent = `at tick ${num(r.tick)} of ${num(r.endTick)} · ${r.fromSnapshot == null ? `${num(r.ticksReplayed)} ticks replayed` : `snapshot ${num(r.fromSnapshot)} + ${num(r.ticksReplayed)} ticks`} · ${r.stateHash.slice(0, 12)}…`;
      note.title = `state hash ${r.stateHash}`;
      renderRows({ ...r, matched: r.total, total: r.total });
      pollAgent().catch(() => {});
    } catch (e) {
      note.textContent = e.code === 'needs_journal' ? `tick ${num(tick)}: needs a journal` : e.message;
      note.className = 'seek-note warn';
      note.title = e.message;
    }
  }

  function backToLive() {
    past = null;
    seekTouched = false;
    document.body.classList.remove('past');
    $('seek-live').classList.add('hidden');
    const note = $('seek-note');
    note.className = 'seek-note';
    note.textContent = hello && hello.seek ? 'live · drag back to travel in time' : 'live · seek needs a journal';
    pollSummary().catch(() => {});
    pollAgents().catch(() => {});
    pollAgent().catch(() => {});
  }

  // ----- charts -------------------------------------------------------------------------------

  const MAX_POINTS = 600;
  const POINTS_PER_POLL = 16;
  const series = { tick: [], us: [], routed: [], delivered: [] };
  let lastHistoryTick = -1;
  let timeChart = null;
  let msgChart = null;

  function chartOpts(el, label, stroke, fill, yFmt) {
    const axis = { stroke: '#8696b4', grid: { stroke: '#1b2740', width: 1 }, ticks: { stroke: '#22304d', width: 1 }, font: '11px system-ui' };
    return {
      width: el.clientWidth,
      height: el.clientHeight,
      cursor: { drag: { x: false, y: false } },
      legend: { show: true, live: false },
      scales: { x: { time: false } },
      axes: [
        { ...axis, values: (u, vals) => vals.map((v) => fmt.format(v)) },
        { ...axis, size: 56, values: (u, vals) => vals.map(yFmt) },
      ],
      series: [
        { label: 'tick', value: (u, v) => (v == null ? '–' : fmt.format(v)) },
        { label, stroke, fill, width: 1.5, points: { show: false }, value: (u, v) => (v == null ? '–' : yFmt(v)) },
      ],
    };
  }

  function makeCharts() {
    const te = $('chart-time');
    const me = $('chart-msgs');
    timeChart = new uPlot(chartOpts(te, 'tick time', '#5eead4', 'rgba(94,234,212,.10)', (v) => micros(v)), [[], []], te);
    msgChart = new uPlot(chartOpts(me, 'routed', '#818cf8', 'rgba(129,140,248,.12)', (v) => compact(v)), [[], []], me);
    const resize = () => {
      timeChart.setSize({ width: te.clientWidth, height: te.clientHeight });
      msgChart.setSize({ width: me.clientWidth, height: me.clientHeight });
    };
    window.addEventListener('resize', resize);
  }

  // At most POINTS_PER_POLL new points a poll (the server groups runs of ticks past that): at
  // thousands of ticks a second the charts then span seconds, not the last 600 ticks.
  const historyArgs = () => (lastHistoryTick < 0 ? { limit: MAX_POINTS, seconds: 0 } : { since: lastHistoryTick, limit: 1200, seconds: 0, maxPoints: POINTS_PER_POLL });

  function applyHistory(h) {
    const t = h.ticks;
    if (t.tick.length === 0) return;
    if (t.tick[0] <= lastHistoryTick) {
      for (const k of Object.keys(series)) series[k].length = 0;
    }
    for (let i = 0; i < t.tick.length; i++) {
      series.tick.push(t.tick[i]);
      series.us.push(t.us[i]);
      series.routed.push(t.routed[i]);
      series.delivered.push(t.delivered[i]);
    }
    lastHistoryTick = t.tick[t.tick.length - 1];
    for (const k of Object.keys(series)) if (series[k].length > MAX_POINTS) series[k].splice(0, series[k].length - MAX_POINTS);
    timeChart.setData([series.tick, series.us]);
    msgChart.setData([series.tick, series.routed]);
  }

  // ----- agent table --------------------------------------------------------------------------

  const PAGE = 50;
  const table = { offset: 0, sort: 'id', desc: false, state: '', module: '', total: 0, matched: 0 };
  let modules = [];
  let selected = null;

  function moduleLabel(i) {
    const m = modules[i];
    if (!m) return el('span', 'modhash', '?');
    return m.name ? el('span', 'modname', m.name) : el('span', 'modhash', m.hash.slice(0, 10));
  }

  function agentsArgs() {
    const args = { offset: table.offset, limit: PAGE, sort: table.sort, order: table.desc ? 'desc' : 'asc' };
    if (table.state) args.state = table.state;
    if (table.module) args.module = table.module;
    return args;
  }

  /** Now (after a change of page, sort or filter): the table alone. */
  async function pollAgents() {
    if (past !== null) return;
    applyAgents(await request('agents', agentsArgs()));
  }

  function applyAgents(r) {
    if (r.pending || past !== null) return;
    renderRows(r);
  }

  /** Draws one page of agent rows (live, or a tick of the journal). */
  function renderRows(r) {
    modules = r.modules;
    table.total = r.total;
    table.matched = r.matched;
    const sel = $('f-module');
    if (sel.options.length - 1 !== modules.length) {
      const keep = sel.value;
      sel.replaceChildren(el('option', null, 'all modules'));
      sel.options[0].value = '';
      for (const m of modules) {
        const o = el('option', null, m.name ?? m.hash.slice(0, 12));
        o.value = m.hash;
        sel.append(o);
      }
      sel.value = keep;
    }
    const body = $('agents').tBodies[0];
    const rows = [];
    for (const a of r.rows) {
      const tr = el('tr');
      tr.dataset.id = a.id;
      if (a.id === selected) tr.className = 'selected';
      const state = el('td');
      state.append(el('span', `pill ${a.state}`, a.state));
      const mod = el('td');
      mod.append(moduleLabel(a.module));
      tr.append(el('td', 'num', String(a.id)), mod, state, el('td', 'num', num(a.steps)), el('td', 'num', num(a.inbox)), el('td', 'num', num(a.received)), el('td', 'num', num(a.sent)), el('td', 'num', bytes(a.memory)), el('td', 'num', compact(a.fuel)));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    const end = Math.min(r.offset + r.rows.length, r.matched);
    $('pg-text').textContent = r.matched ? `${num(r.offset + 1)}–${num(end)} of ${num(r.matched)}${r.matched !== r.total ? ` (${num(r.total)} agents)` : ''}` : 'no agents';
    $('pg-prev').disabled = r.offset === 0;
    $('pg-next').disabled = end >= r.matched;
    for (const th of $('agents').tHead.rows[0].cells) {
      th.classList.toggle('sorted', th.dataset.sort === table.sort);
      th.classList.toggle('desc', th.dataset.sort === table.sort && table.desc);
    }
  }

  // ----- one agent ----------------------------------------------------------------------------

  function msgItem(m, dir) {
    const li = el('li');
    const peer = dir === 'in' ? m.from : m.to;
    li.append(el('span', 't', `#${m.tick}`), el('span', 'peer', `${dir === 'in' ? '←' : '→'} ${peer === 0 ? 'host' : peer}`), el('span', 'kind', `k${m.kind}`), el('span', null, `${m.bytes} B`), el('span', 'mono', m.text != null ? JSON.stringify(m.text) : m.head.slice(0, 24)));
    return li;
  }

  function drawFlow(svg, id, msgs) {
    const NS = 'http://www.w3.org/2000/svg';
    const mk = (tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text != null) e.textContent = text;
      return e;
    };
    svg.replaceChildren();
    const count = (list, key) => {
      const m = new Map();
      for (const x of list) m.set(x[key], (m.get(x[key]) ?? 0) + 1);
      return [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6);
    };
    const ins = msgs ? count(msgs.inbound, 'from') : [];
    const outs = msgs ? count(msgs.outbound, 'to') : [];
    const cx = 240;
    const cy = 90;
    const defs = mk('defs', {});
    const marker = mk('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '6', markerHeight: '6', orient: 'auto-start-reverse' });
    marker.append(mk('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#5c6f93' }));
    defs.append(marker);
    svg.append(defs);
    const max = Math.max(1, ...ins.map((x) => x[1]), ...outs.map((x) => x[1]));
    const side = (list, x, color, incoming) => {
      list.forEach(([peer, n], i) => {
        const y = 18 + (i + 0.5) * (144 / Math.max(list.length, 1));
        const w = 1 + (3 * n) / max;
        const [x1, x2] = incoming ? [x + 44, cx - 46] : [cx + 46, x - 44];
        svg.append(mk('path', { d: `M${x1},${y} C${(x1 + x2) / 2},${y} ${(x1 + x2) / 2},${cy} ${x2},${cy}`, stroke: color, 'stroke-width': String(w), fill: 'none', 'stroke-opacity': '0.75', 'marker-end': 'url(#arrow)' }));
        svg.append(mk('rect', { x: String(x - 42), y: String(y - 11), width: '84', height: '22', rx: '6', fill: '#1b2740', stroke: '#2b3b5f' }));
        svg.append(mk('text', { x: String(x), y: String(y + 4), 'text-anchor': 'middle' }, `${peer === 0 ? 'host' : `#${peer}`} ×${n}`));
      });
    };
    side(ins, 58, '#818cf8', true);
    side(outs, 422, '#5eead4', false);
    svg.append(mk('rect', { x: String(cx - 46), y: String(cy - 18), width: '92', height: '36', rx: '9', fill: '#134e4a', stroke: '#5eead4' }));
    svg.append(mk('text', { x: String(cx), y: String(cy + 4), 'text-anchor': 'middle' }, `agent ${id}`));
    if (!ins.length) svg.append(mk('text', { x: '58', y: String(cy + 4), 'text-anchor': 'middle', class: 'muted' }, 'no input yet'));
    if (!outs.length) svg.append(mk('text', { x: '422', y: String(cy + 4), 'text-anchor': 'middle', class: 'muted' }, 'no output yet'));
  }

  async function pollAgent() {
    if (selected == null) return;
    const id = selected;
    const at = past;
    const r = at === null ? await request('agent', { agent: id, messages: 32 }) : await request('agentAt', { agent: id, tick: at.tick, messages: 32 });
    if (id !== selected || at !== past) return;
    const info = r.info;
    $('d-title').textContent = `Agent ${info.id}`;
    $('d-hint').textContent = `at tick ${num(r.tick)}`;
    $('d-body').classList.remove('hidden');
    const st = $('d-state');
    st.textContent = info.state;
    st.className = `pill ${info.state}`;
    $('d-module').textContent = `${info.moduleName ? `${info.moduleName} · ` : ''}${info.module.slice(0, 16)}…`;
    $('d-module').title = info.module;
    const fault = $('d-fault');
    fault.classList.toggle('hidden', !info.fault);
    if (info.fault) fault.textContent = `${info.fault.kind} in ${info.fault.call} at tick ${info.fault.tick}\n${info.fault.detail}`;
    const grid = $('d-grid');
    grid.replaceChildren();
    for (const [k, val] of [['steps', num(info.steps)], ['mailbox', num(info.inboxLen)], ['received', num(info.messagesReceived)], ['sent', num(info.messagesSent)], ['memory', bytes(info.memoryBytes)], ['fuel', compact(info.fuelConsumed)]]) {
      const d = el('div');
      d.append(el('div', 'k', k), el('div', 'v', val));
      grid.append(d);
    }
    const msgs = r.messages;
    $('d-flow-hint').textContent = at !== null ? `in tick ${num(at.tick)}: ${msgs.inbound.length} in · ${msgs.outbound.length} out` : msgs ? `last ${msgs.inbound.length} in · ${msgs.outbound.length} out` : 'watching from now on';
    drawFlow($('d-flow'), info.id, msgs);
    const fill = (list, items, dir) => {
      const ol = $(list);
      if (!items || items.length === 0) ol.replaceChildren(el('li', 'empty', 'none yet'));
      else ol.replaceChildren(...items.slice().reverse().map((m) => msgItem(m, dir)));
    };
    fill('d-in', msgs && msgs.inbound, 'in');
    fill('d-out', msgs && msgs.outbound, 'out');
  }

  // ----- events and hashes --------------------------------------------------------------------

  let eventCursor = null;
  const feed = [];
  // Faults kept apart (the newest 200), so "faults only" still shows those that scrolled out
  // of the feed, and those from before the page connected.
  const faultFeed = [];
  const isFault = (e) => e.type === 'fault' || e.type === 'ring_error';
  function describeEvent(e) {
    switch (e.type) {
      case 'fault': return `${e.fault.kind} in ${e.fault.call}: ${e.fault.detail.split('\n')[0]}`;
      case 'dead_letter': return `${e.reason} ${e.from} → ${e.to} (kind ${e.kind})`;
      case 'log': return e.text;
      case 'spawned': return `module ${e.module.slice(0, 12)}`;
      case 'dropped': return `${e.count} dropped from ${e.queue}`;
      case 'module_refused': return `${e.code}: ${e.detail}`;
      default: return e.detail ?? '';
    }
  }

  function renderFeed() {
    const faultsOnly = $('ev-faults').checked;
    const items = (faultsOnly ? faultFeed : feed).slice(-200).reverse();
    const lis = items.map((e) => {
      if (e.notice) return el('li', 'notice', e.notice);
      const li = el('li', e.type);
      li.append(el('span', 't', `#${e.tick}`), el('span', 'ty', e.type.replace('_', ' ')), el('span', 'ag', e.agent != null ? String(e.agent) : e.to != null ? String(e.to) : ''), el('span', 'what', describeEvent(e)));
      li.title = describeEvent(e);
      return li;
    });
    $('events').replaceChildren(...(lis.length ? lis : [el('li', 'notice', 'no events yet')]));
  }

  const eventsArgs = () => (eventCursor == null ? { limit: 200 } : { since: eventCursor, limit: 200 });

  async function applyEvents(r, first) {
    if (first) {
      // Faults before the newest 200 events are what someone opening the dashboard on a
      // running session most needs to see: load those the dashboard still holds.
      const oldest = r.events.length ? r.events[0].cursor : r.next;
      const faults = await request('events', { types: ['fault', 'ring_error'], limit: 100 });
      for (const e of faults.events) if (e.cursor < oldest) faultFeed.push(e);
    }
    if (r.skipped > 0 && eventCursor != null) feed.push({ notice: `${num(r.skipped)} events fell out of the dashboard's history` });
    for (const e of r.events) {
      feed.push(e);
      if (isFault(e)) faultFeed.push(e);
    }
    if (feed.length > 400) feed.splice(0, feed.length - 400);
    if (faultFeed.length > 200) faultFeed.splice(0, faultFeed.length - 200);
    const changed = eventCursor !== r.next;
    eventCursor = r.next;
    if (changed || !feed.length) renderFeed();
  }

  function applyHashes(r) {
    const lis = r.chain.slice().reverse().map((h) => {
      const li = el('li', h.gap ? 'gap' : null);
      li.title = h.gap ? `${h.hash} (ticks before this one ran in one tick(n) call: their hashes are chained but not shown)` : h.hash;
      const hash = el('span', 'h');
      hash.append(el('span', 'hi', h.hash.slice(0, 8)), h.hash.slice(8, 40));
      li.append(el('span', 't', `#${h.tick}`), hash);
      return li;
    });
    $('hashes').replaceChildren(...lis);
    const gaps = r.chain.filter((h) => h.gap).length;
    $('chain-state').textContent = r.chain.length ? `${r.chain.length} ticks${gaps ? `, ${gaps} gap${gaps > 1 ? 's' : ''}` : ', continuous'}` : '';
  }

  // ----- controls -----------------------------------------------------------------------------

  async function act(type, args, done) {
    try {
      const r = await request(type, args);
      if (done) done(r);
      pollSummary().catch(() => {});
      pollAgents().catch(() => {});
      pollAgent().catch(() => {});
    } catch (e) {
      toast(`${type}: ${e.message}`, true);
    }
  }

  let seekTouched = false;
  function wire() {
    $('btn-play').onclick = () => {
      const hz = Number($('hz').value);
      act('play', hz > 0 ? { hz } : {});
    };
    $('btn-pause').onclick = () => act('pause');
    $('btn-step').onclick = () => act('step', { ticks: 1 }, (r) => toast(`stepped: tick ${num(r.tick)} · ${r.hash.slice(0, 16)}…`));
    $('hz').onchange = () => {
      if (summary && summary.clock.playing) $('btn-play').click();
    };
    $('seek').oninput = () => {
      seekTouched = true;
    };
    $('seek').onchange = () => travel(Number($('seek').value));
    $('seek-prev').onclick = () => travel(Math.max(0, (past ? past.tick : Number($('seek').max)) - 1));
    $('seek-next').onclick = () => travel((past ? past.tick : Number($('seek').max)) + 1);
    $('seek-live').onclick = backToLive;
    for (const th of $('agents').tHead.rows[0].cells) {
      th.onclick = () => {
        const key = th.dataset.sort;
        if (table.sort === key) table.desc = !table.desc;
        else {
          table.sort = key;
          table.desc = key !== 'id' && key !== 'module' && key !== 'state';
        }
        table.offset = 0;
        pollAgents().catch(() => {});
      };
    }
    $('agents').tBodies[0].onclick = (e) => {
      const tr = e.target.closest('tr');
      if (!tr) return;
      selected = Number(tr.dataset.id);
      for (const row of $('agents').tBodies[0].rows) row.classList.toggle('selected', row === tr);
      pollAgent().catch((err) => toast(err.message, true));
    };
    $('f-state').onchange = () => {
      table.state = $('f-state').value;
      table.offset = 0;
      pollAgents().catch(() => {});
    };
    $('f-module').onchange = () => {
      table.module = $('f-module').value;
      table.offset = 0;
      pollAgents().catch(() => {});
    };
    const page = () => (past !== null ? travel(past.tick) : pollAgents().catch(() => {}));
    $('pg-prev').onclick = () => {
      table.offset = Math.max(0, table.offset - PAGE);
      page();
    };
    $('pg-next').onclick = () => {
      table.offset += PAGE;
      page();
    };
    $('ev-faults').onchange = renderFeed;
    $('a-kill').onclick = () => act('kill', { agent: selected }, () => toast(`agent ${selected} killed`));
    $('a-shutdown').onclick = () => act('shutdown', { agent: selected }, () => toast(`agent ${selected} shut down`));
    $('a-restart').onclick = () => act('restart', { agent: selected }, (r) => toast(`agent ${r.replaced} restarted as agent ${r.agent}`));
    $('a-send').onclick = () => act('send', { agent: selected, kind: Number($('a-kind').value) || 0, text: $('a-text').value }, (r) => toast(`sent ${r.bytes} bytes to agent ${r.agent}; delivered at tick ${num(r.deliveredAtTick)}`));
  }

  /** Runs `fn` every `ms`, never two at once. */
  function every(ms, fn) {
    let running = false;
    setInterval(async () => {
      if (running || !ws || ws.readyState !== WebSocket.OPEN) return;
      running = true;
      try {
        await fn();
      } catch {
        // shown by the connection state; the next round tries again
      } finally {
        running = false;
      }
    }, ms);
  }

  wire();
  makeCharts();
  connect();
  // One request refreshes the page (docs/DASHBOARD.md, `poll`): the summary, the charts and the
  // event feed 4 times a second, the agent table and the hash chain once a second.
  let lastSlowPoll = -Infinity;
  async function pollPage() {
    const slow = performance.now() - lastSlowPoll >= 1000;
    const firstEvents = eventCursor == null;
    const args = { history: historyArgs(), events: eventsArgs() };
    if (slow) {
      args.hashes = { limit: 64 };
      if (past === null) args.agents = agentsArgs();
    }
    const r = await request('poll', args);
    if (slow) lastSlowPoll = performance.now();
    applySummary(r.summary);
    applyHistory(r.history);
    if (r.agents) applyAgents(r.agents);
    if (r.hashes) applyHashes(r.hashes);
    await applyEvents(r.events, firstEvents);
  }
  every(250, pollPage);
  every(500, pollAgent);
})();
