// `npm run demo -- --ui`: the gossip demo at a watchable pace (5 ticks per second), with the
// live dashboard (docs/DASHBOARD.md). The dashboard's clock drives the runtime: pause, step,
// change the rate, open agents, kill or restart them, send them messages, and travel back in
// time (the session is journaled). Ctrl-C (or --ticks) ends it; the session, dashboard controls
// included, is then replayed and verified, from its replay log and from its journal.
//
//   node demo/gossip.mjs --ui [--agents 300] [--hz 5] [--port 7357] [--host 127.0.0.1] [--ticks N] [--journal DIR]
//
// Without --journal the journal goes to a new temporary directory, removed at the end; with it,
// the journal stays (open it again with `npx lockstep dashboard DIR`).
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const require = createRequire(import.meta.url);
const { Runtime, replay, verifyLog, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');

const args = {};
process.argv.slice(2).forEach((a, i, all) => {
  if (a.startsWith('--')) args[a.slice(2)] = all[i + 1] !== undefined && !all[i + 1].startsWith('--') ? all[i + 1] : true;
});
const AGENTS = Number(args.agents ?? 300);
const WORKERS = Number(args.workers ?? 2);
const SEED = Number(args.seed ?? 7);
const HZ = Number(args.hz ?? 5);
const HOST = typeof args.host === 'string' ? args.host : '127.0.0.1';
const PORT = Number(args.port ?? 7357);
const LIMIT = args.ticks === undefined ? Infinity : Number(args.ticks);
const KEEP_JOURNAL = typeof args.journal === 'string';
const tempDir = KEEP_JOURNAL ? null : mkdtempSync(join(tmpdir(), 'lockstep-demo-'));
const JOURNAL = KEEP_JOURNAL ? args.journal : join(tempDir, 'journal');
// The temporary journal goes with the process, however it ends (a bad argument, an error,
// a signal; not SIGKILL).
if (tempDir) process.on('exit', () => rmSync(tempDir, { recursive: true, force: true }));

// A snapshot every 100 ticks: a seek replays at most 100 ticks of 300 agents.
const journal = { dir: JOURNAL, snapshotIntervalTicks: 100 };
const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: WORKERS, seed: SEED, checkpointIntervalTicks: 10, memoryLimitBytes: 8 << 20, journal });
const gossip = rt.loadModule(exampleAgent('gossip'));
const ids = rt.spawnMany(gossip, AGENTS);
const names = { [gossip]: 'gossip' };
for (const name of ['adv-spin', 'adv-membomb', 'adv-trap']) {
  const id = rt.spawn(exampleAgent(name));
  names[rt.inspect(id).module] = name;
  if (name === 'adv-trap') rt.send(id, null, { kind: 2 }); // "panic in your next step"
}

const options = { host: HOST, port: PORT, controls: true, moduleNames: names, ...(HOST === '127.0.0.1' || HOST === 'localhost' ? {} : { token: true }) };
let server;
try {
  server = await rt.serve(options);
} catch (e) {
  if (e.code !== 'EADDRINUSE') throw e;
  server = await rt.serve({ ...options, port: 0 }); // 7357 is taken: any free port
}

const best = new Map();
let globalMax = 0n;
let convergedAt = -1;
let lastLine = 0;
server.on('tick', (r) => {
  // The program drains as usual; the dashboard read the events before (it never drains them).
  for (const m of rt.drainMessages()) {
    if (m.kind === 2) {
      const v = m.payload.readBigUInt64LE(0);
      best.set(m.from, v);
      if (v > globalMax) globalMax = v;
    }
  }
  for (const e of rt.drainEvents()) {
    if (e.type === 'fault') console.log(`  ! tick ${e.tick}: agent ${e.agent} ${e.fault.kind} in ${e.fault.call}`);
  }
  rt.drainDeadLetters();
  const know = ids.filter((id) => best.get(id) === globalMax).length;
  if (know === AGENTS && convergedAt < 0) {
    convergedAt = r.tick;
    console.log(`  all ${AGENTS} agents know the maximum since tick ${convergedAt} (they keep gossiping)`);
  }
  if (Date.now() - lastLine > 2000) {
    lastLine = Date.now();
    console.log(`tick ${String(r.tick).padStart(5)}  ${r.hash.slice(0, 16)}  routed ${r.messagesRouted}  knowMax ${know}/${AGENTS}`);
  }
  if (rt.currentTick >= LIMIT) finish('--ticks reached');
});

console.log(`lockstep demo with the live dashboard: ${AGENTS} gossip agents + 3 adversarial, ${HZ} ticks/s`);
console.log(`\n  dashboard: ${server.url}\n`);
console.log(`  journal: ${JOURNAL}${KEEP_JOURNAL ? ' (kept: npx lockstep dashboard <dir> reopens it)' : ' (temporary: pass --journal DIR to keep it)'}`);
console.log('  (pause, step, change the rate, open an agent, kill or restart it, send it a message; Ctrl-C ends the demo and replays the session)\n');
await server.play({ hz: HZ });

let finishing = false;
async function finish(why) {
  if (finishing) return;
  finishing = true;
  console.log(`\n${why}: stopping the dashboard, replaying the session...`);
  await server.close();
  const log = rt.stopRecording();
  const verdict = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
  console.log(`replay of ${rt.currentTick} ticks (dashboard controls included): ${verdict.ok && verdict.complete ? 'identical' : `DIVERGED ${JSON.stringify(verdict.divergence)}`}, final hash ${verdict.finalHash.slice(0, 16)}`);
  rt.syncJournal();
  const fromJournal = verifyLog(JOURNAL, { trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  console.log(`journal of ${fromJournal.ticksVerified} ticks: ${fromJournal.ok ? 'identical' : `DIVERGED ${JSON.stringify(fromJournal.divergence)}`}, final hash ${fromJournal.finalHash.slice(0, 16)}`);
  const ok = verdict.ok && verdict.finalHash === rt.stateHash() && fromJournal.ok && fromJournal.finalHash === rt.stateHash();
  rt.close();
  process.exit(ok ? 0 : 1);
}
process.on('SIGINT', () => finish('Ctrl-C'));
process.on('SIGTERM', () => finish('SIGTERM'));
process.on('SIGHUP', () => finish('SIGHUP (the terminal closed)'));
