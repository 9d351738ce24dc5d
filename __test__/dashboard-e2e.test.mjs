// The dashboard end to end, in headless Chromium driven by playwright-core: open the page against
// a running gossip session, see the tick advance, pause, single-step, open an agent (its detail
// and message flow), drag the time-travel slider back (the session at an earlier tick, from its
// journal) and return to live, and save a screenshot (.test-out/dashboard.png); and the same
// against `npm run demo -- --ui` itself, a separate process (.test-out/dashboard-demo.png).
// The browser is Debian's chromium (scripts/ensure-chromium.mjs installs it as root; `npm test`
// runs that first). Without one the test is skipped, except under CI, where it fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { ensureChromium } from '../scripts/ensure-chromium.mjs';
import { gossipRuntime, lockstep } from './dashboard-helpers.mjs';
const require = createRequire(import.meta.url);
const { exampleAgent } = lockstep;

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, '.test-out');

/** Launches Chromium, or says why not: skipped locally, a failure under CI. */
async function launch(t) {
  const executablePath = ensureChromium({ log: (s) => t.diagnostic(s) });
  const why = executablePath ? null : 'no Chromium (apt-get install chromium, or set LOCKSTEP_CHROMIUM)';
  let browser = null;
  let error = why;
  if (executablePath) {
    try {
      const { chromium } = require('playwright-core');
      browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] });
    } catch (e) {
      error = `Chromium at ${executablePath} did not start: ${e.message.split('\n')[0]}`;
    }
  }
  if (!browser) {
    if (process.env.CI) assert.fail(`the dashboard browser test needs a browser under CI: ${error}`);
    t.skip(`SKIPPED: ${error}`);
  }
  return browser;
}

/** A page (1440 × 1000) on the dashboard at `url`, connected; `errors` collects what the page reports. */
async function openDashboard(browser, url) {
  const errors = [];
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, deviceScaleFactor: 1 });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  await page.waitForSelector('#conn.up');
  return { page, errors };
}

/** Lets the page settle, hides the toast, and saves the whole page as .test-out/`name`. */
async function finalScreenshot(t, page, name) {
  await page.waitForTimeout(600);
  await page.$eval('#toast', (el) => el.classList.add('hidden'));
  mkdirSync(out, { recursive: true });
  await page.screenshot({ path: join(out, name), fullPage: true });
  t.diagnostic(`screenshot: ${join(out, name)}`);
}

/** Polls `pred` (no page needed) every 50 ms for at most `ms`. */
async function waitUntil(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const tickOf = async (page) => Number((await page.textContent('[data-testid=tick]')).replace(/,/g, ''));

async function waitFor(page, pred, what, ms = 15_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await page.waitForTimeout(50);
  }
}

test('the dashboard in headless Chromium: the tick advances, pause, single step, an agent\'s detail and message flow, time travel back and to live; screenshot', async (t) => {
  const browser = await launch(t);
  if (!browser) return;
  const journal = { dir: join(mkdtempSync(join(tmpdir(), 'lockstep-e2e-')), 'journal'), snapshotIntervalTicks: 20 };
  const { rt, gossip, ids } = gossipRuntime(300, { workers: 2, journal });
  const troublemakers = ['adv-spin', 'adv-membomb', 'adv-trap'].map((name) => rt.spawn(exampleAgent(name)));
  rt.send(troublemakers[2], null, { kind: 2 });
  const names = { [gossip]: 'gossip' };
  for (const [i, name] of ['adv-spin', 'adv-membomb', 'adv-trap'].entries()) names[rt.inspect(troublemakers[i]).module] = name;
  // The troublemakers fault in the first ticks; 250 spawns after them push their faults out of
  // the newest 200 events the page starts from: it must load them from the dashboard's history.
  rt.tick(10);
  rt.spawnMany(exampleAgent('counter'), 250);
  const server = await rt.serve({ controls: true, moduleNames: names });
  try {
    const { page, errors } = await openDashboard(browser, server.url);
    // The clock starts once the page is connected: the feed then holds the first ticks' faults
    // (a page that connects later starts from the newest 200 events, and how many ticks ran
    // while the browser started was a race this test sometimes lost).
    await server.play({ hz: 20 });

    // Live: the tick advances.
    await waitFor(page, async () => (await tickOf(page)) > 0, 'a first tick');
    const t1 = await tickOf(page);
    await waitFor(page, async () => (await tickOf(page)) >= t1 + 3, 'the tick to advance');

    // Pause: the clock stops; the tick stays.
    await page.click('#btn-pause');
    await waitFor(page, async () => (await page.textContent('#clock-state')) === 'paused', 'paused');
    // The page catches up with the paused runtime's tick: within its next polls, or later when
    // a loaded machine made the last summary costly (the snapshot budget spaces retakes out;
    // a fixed 400 ms wait failed CI once while the machine was busy).
    await waitFor(page, async () => (await tickOf(page)) === rt.currentTick, 'the page to show the runtime\'s tick');
    const t2 = await tickOf(page);
    assert.equal(t2, rt.currentTick, 'the page shows the runtime\'s tick');
    await page.waitForTimeout(400);
    assert.equal(await tickOf(page), t2, 'no ticks while paused');

    // Single step: exactly one tick.
    await page.click('#btn-step');
    await waitFor(page, async () => (await tickOf(page)) === t2 + 1, 'one step');
    assert.equal(rt.currentTick, t2 + 1);

    // Open an agent: its detail, then (after a few ticks) the messages it exchanged.
    const agent = ids[4];
    await page.click(`#agents tbody tr[data-id="${agent}"]`);
    await waitFor(page, async () => (await page.textContent('#d-title')) === `Agent ${agent}`, 'the agent panel');
    assert.equal(await page.textContent('#d-state'), 'running');
    // Which ticks the agent gossips on depends on where the pause fell (the run's pace is
    // wall-clock), so step until it has both received and sent (a few ticks; at most 30).
    const exchanged = async () => (await page.$$('#d-in li:not(.empty)')).length > 0 && (await page.$$('#d-out li:not(.empty)')).length > 0;
    for (let steps = 0; steps < 30 && !(await exchanged()); steps++) {
      // The page's tick, not rt.currentTick: the runtime is busy (E_BUSY) while a step runs.
      const before = await tickOf(page);
      await page.click('#btn-step');
      await waitFor(page, async () => (await tickOf(page)) > before, 'a step');
      await page.waitForTimeout(150);
    }
    await waitFor(page, exchanged, 'messages in and out');
    assert.ok((await page.$$('#d-flow rect')).length >= 3, 'the message-flow view draws the agent and its peers');

    // Sort by a column (server-side), filter the faulted ones.
    await page.click('th[data-sort="sent"]');
    await waitFor(page, async () => (await page.getAttribute('th[data-sort="sent"]', 'class'))?.includes('sorted'), 'sorted by sent');
    await page.selectOption('#f-state', 'faulted');
    await waitFor(page, async () => {
      const states = await page.$$eval('#agents tbody td:nth-child(3)', (tds) => tds.map((td) => td.textContent));
      return states.length > 0 && states.every((s) => s === 'faulted');
    }, 'only faulted agents');
    await page.selectOption('#f-state', '');

    // The event feed's "faults only" view shows the faults, all from before the page connected
    // (older than the newest 200 events it started from); the hash chain the runtime's hashes.
    await page.check('#ev-faults');
    await waitFor(page, async () => (await page.$$('#events li.fault')).length === 3, 'the three faults in the feed');
    await page.uncheck('#ev-faults');
    await waitFor(page, async () => (await page.textContent('#hashes li:first-child .h')).replace(/\s/g, '') === rt.stateHash().slice(0, 40), 'the newest hash');

    // Time travel: drag the slider back to tick 3; the page shows the session then (the tick,
    // the agent's steps at that tick, its messages of that tick), from the runtime's journal.
    const live = await tickOf(page);
    await page.$eval('#seek', (el) => {
      el.value = '3';
      el.dispatchEvent(new Event('input'));
      el.dispatchEvent(new Event('change'));
    });
    await waitFor(page, async () => /^at tick 3 of/.test(await page.textContent('[data-testid=seek-note]')), 'the seek answer');
    assert.equal(await tickOf(page), 3, 'the page shows the past tick');
    const stepsCell = async () => Number((await page.textContent(`#agents tbody tr[data-id="${agent}"] td:nth-child(4)`)).replace(/,/g, ''));
    await waitFor(page, async () => (await page.textContent('#d-flow-hint')).startsWith('in tick 3'), 'the agent at tick 3');
    assert.equal(await stepsCell(), 3, 'at tick 3 (three ticks run) the agent has stepped three times');
    await page.click('[data-testid=seek-next]');
    await waitFor(page, async () => /^at tick 4 of/.test(await page.textContent('[data-testid=seek-note]')), 'one tick forward');
    assert.equal(await stepsCell(), 4);
    await page.click('[data-testid=seek-prev]');
    await waitFor(page, async () => /^at tick 3 of/.test(await page.textContent('[data-testid=seek-note]')), 'one tick back');
    assert.equal(await stepsCell(), 3);
    // The agents card counts the agents of that tick: the 250 counters spawned at tick 10 are
    // not there yet (303 = 300 gossip + 3 troublemakers).
    assert.equal(await page.textContent('#c-agents'), '303');
    await page.screenshot({ path: join(out, 'dashboard-time-travel.png'), fullPage: true });
    await page.click('[data-testid=seek-live]');
    await waitFor(page, async () => (await tickOf(page)) >= live, 'back to live');

    // Play again, watch it live for a moment, and take the picture.
    await page.click('#btn-play');
    await waitFor(page, async () => (await page.textContent('#clock-state')).startsWith('playing'), 'playing');
    const t3 = await tickOf(page);
    await waitFor(page, async () => (await tickOf(page)) >= t3 + 10, 'ten more ticks');
    await page.click(`#agents tbody tr[data-id="${agent}"]`).catch(() => {});
    await finalScreenshot(t, page, 'dashboard.png');
    assert.deepEqual(errors, [], 'no errors in the page');
  } finally {
    await browser.close();
    await server.close();
    rt.close();
  }
});

test('npm run demo -- --ui in headless Chromium: the demo\'s own dashboard ticks, pauses, steps, opens an agent, travels back and forth through its journal; screenshot', async (t) => {
  const browser = await launch(t);
  if (!browser) return;
  // demo/index.mjs runs demo/gossip.mjs as its child: its own process group, so that a failing
  // test ends both (an orphaned demo would hold this test's pipes open).
  const demo = spawn(process.execPath, [join(root, 'demo/index.mjs'), '--ui', '--port', '0', '--hz', '20', '--agents', '120'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let log = '';
  demo.stdout.setEncoding('utf8');
  demo.stdout.on('data', (d) => (log += d));
  demo.stderr.on('data', (d) => (log += d));
  try {
    await waitUntil(() => /dashboard: http/.test(log) || demo.exitCode !== null, 20_000, 'the demo\'s URL');
    const url = /dashboard: (http:\/\/\S+)/.exec(log)?.[1];
    assert.ok(url, log);
    const { page, errors } = await openDashboard(browser, url);
    // The demo plays at 20 Hz: the tick advances.
    await waitFor(page, async () => (await tickOf(page)) > 0, 'a first tick');
    const t1 = await tickOf(page);
    await waitFor(page, async () => (await tickOf(page)) >= t1 + 5, 'the tick to advance');
    // Pause, then one step.
    await page.click('#btn-pause');
    await waitFor(page, async () => (await page.textContent('#clock-state')) === 'paused', 'paused');
    await page.waitForTimeout(300);
    const t2 = await tickOf(page);
    await page.click('#btn-step');
    await waitFor(page, async () => (await tickOf(page)) === t2 + 1, 'one step');
    // An agent: the first gossip agent's detail.
    await page.click('#agents tbody tr[data-id="1"]');
    await waitFor(page, async () => (await page.textContent('#d-title')) === 'Agent 1', 'the agent panel');
    // Time travel through the demo's journal: to tick 3, one back, one forward, then live.
    await page.$eval('#seek', (el) => {
      el.value = '3';
      el.dispatchEvent(new Event('input'));
      el.dispatchEvent(new Event('change'));
    });
    const note = () => page.textContent('[data-testid=seek-note]');
    await waitFor(page, async () => /^at tick 3 of/.test(await note()), 'the seek to tick 3');
    await page.click('[data-testid=seek-prev]');
    await waitFor(page, async () => /^at tick 2 of/.test(await note()), 'one tick back');
    assert.equal(await tickOf(page), 2);
    await waitFor(page, async () => (await page.textContent('#d-flow-hint')).startsWith('in tick 2'), 'the agent at tick 2');
    await page.click('[data-testid=seek-next]');
    await waitFor(page, async () => /^at tick 3 of/.test(await note()), 'one tick forward');
    await page.click('[data-testid=seek-live]');
    await waitFor(page, async () => (await tickOf(page)) >= t2 + 1, 'back to live');
    await page.click('#btn-play');
    await waitFor(page, async () => (await page.textContent('#clock-state')).startsWith('playing'), 'playing');
    const t3 = await tickOf(page);
    await waitFor(page, async () => (await tickOf(page)) >= t3 + 20, 'twenty more ticks');
    await finalScreenshot(t, page, 'dashboard-demo.png');
    assert.deepEqual(errors, [], 'no errors in the page');
    // Ctrl-C: the demo replays its session from the log and the journal.
    const exited = new Promise((resolve) => demo.once('exit', resolve));
    demo.kill('SIGINT');
    assert.equal(await exited, 0, log);
    assert.match(log, /journal of \d+ ticks: identical/);
  } finally {
    if (demo.exitCode === null) {
      try {
        process.kill(-demo.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await browser.close();
  }
});

test('in the browser, a token server is reached only through the URL with its token (the page passes it as a subprotocol)', async (t) => {
  const browser = await launch(t);
  if (!browser) return;
  const { rt } = gossipRuntime(20);
  const server = await rt.serve({ token: true });
  try {
    const page = await browser.newPage();
    await page.goto(server.url);
    await page.waitForSelector('#conn.up');
    // The clock starts once the page is connected: the feed then holds the first ticks' faults
    // (a page that connects later starts from the newest 200 events, and how many ticks ran
    // while the browser started was a race this test sometimes lost).
    await server.play({ hz: 20 });
    await page.waitForFunction(() => globalThis.document.querySelector('[data-testid=tick]').textContent !== '–');
    const without = await browser.newPage();
    await without.goto(server.url.replace(/#.*$/, ''));
    await without.waitForSelector('#conn.down');
    assert.match(await without.textContent('#conn-text'), /disconnected/);
  } finally {
    await browser.close();
    await server.close();
    rt.close();
  }
});
