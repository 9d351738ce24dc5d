// A workflow as a DAG: word count over this repository's documentation, map → shuffle →
// reduce → report, each stage a set of sandboxed agents (guest/agents/wordcount):
//
//   text ─► mapper ×4 ─► shuffler ×2 ─► reducer ×4 ─► reporter (trigger 'all') ─► host
//
// The edges (spawn(..., { after })) make every stage run after the one before it within each
// tick, so the text sent before a tick is counted, shuffled, reduced and reported in that same
// tick; the stages' agents run in parallel. The reporter is a fan-in barrier: it steps only in
// ticks where every reducer has sent it something. Every summary is checked against a count
// done here in JS, and the recorded session is replayed and verified tick by tick.
//
//   npm run demo                 (with the other demos)
//   node demo/wordcount.mjs --workers 4 --chunk 1500
import { createRequire } from 'node:module';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const { Runtime, replay, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('../index.js');

const args = {};
process.argv.slice(2).forEach((a, i, all) => {
  if (a.startsWith('--')) args[a.slice(2)] = all[i + 1] !== undefined && !all[i + 1].startsWith('--') ? all[i + 1] : true;
});
const WORKERS = Number(args.workers ?? 4);
const CHUNK = Number(args.chunk ?? 1500); // bytes of text per mapper in a busy tick
const [MAPPERS, SHUFFLERS, REDUCERS] = [4, 2, 4];
const [CONFIG, TEXT, SUMMARY, FLUSH] = [100, 1, 3, 4];
const [MAPPER, SHUFFLER, REDUCER, REPORTER] = [1, 2, 3, 4];

// The corpus: the repository's own documentation.
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const files = ['README.md', 'ARCHITECTURE.md', 'BENCHMARKS.md', ...(existsSync(join(root, 'docs')) ? readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f)) : [])].filter((f) =>
  existsSync(join(root, f)),
);
const corpus = files.map((f) => readFileSync(join(root, f), 'utf8')).join('\n');
// Text arrives unevenly, as a stream would: per mapper, a busy tick's chunk, a line or two,
// nothing at all... Chunks end at a line break (or a space), so no word is cut in two.
const PACE = [CHUNK, 60, 0, 2 * CHUNK, 250, 0];
let cursor = 0;
function take(bytes) {
  if (bytes === 0 || cursor >= corpus.length) return '';
  let end = Math.min(corpus.length, cursor + bytes);
  if (end < corpus.length) {
    const cut = Math.max(corpus.lastIndexOf('\n', end), corpus.lastIndexOf(' ', end));
    if (cut > cursor) end = cut + 1;
  }
  const text = corpus.slice(cursor, end);
  cursor = end;
  return text;
}

/** The same words the agents count: ASCII letters and digits, lowercased, 1 to 32 characters. */
function words(text) {
  return (text.replace(/[A-Z]/g, (c) => c.toLowerCase()).match(/[a-z0-9]+/g) ?? []).filter((w) => w.length <= 32);
}

const rt = new Runtime({ trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: WORKERS, seed: 1, checkpointIntervalTicks: 10 });
const stage = rt.loadModule(exampleAgent('wordcount'));
// Each stage after the one before: the edges order the tick, and the ids do not need to.
const mappers = rt.spawnMany(stage, MAPPERS);
const shufflers = rt.spawnMany(stage, SHUFFLERS, { after: mappers });
const reducers = rt.spawnMany(stage, REDUCERS, { after: shufflers });
const reporter = rt.spawn(stage, { after: reducers, trigger: 'all' });
const configure = (id, role, targets) => {
  const b = Buffer.alloc(5 + 8 * targets.length);
  b.writeUInt8(role, 0);
  b.writeUInt32LE(targets.length, 1);
  targets.forEach((t, i) => b.writeBigUInt64LE(BigInt(t), 5 + 8 * i));
  rt.send(id, b, { kind: CONFIG });
};
mappers.forEach((id) => configure(id, MAPPER, shufflers));
shufflers.forEach((id) => configure(id, SHUFFLER, reducers));
reducers.forEach((id) => configure(id, REDUCER, [reporter]));
configure(reporter, REPORTER, []);

console.log(`lockstep DAG demo: word count over ${files.length} documentation files (${(corpus.length / 1024).toFixed(0)} KiB), ${WORKERS} workers`);
console.log(`graph: ${rt.edges().length} edges; levels: mappers ${rt.graphInfo(mappers[0]).level}, shufflers ${rt.graphInfo(shufflers[0]).level}, reducers ${rt.graphInfo(reducers[0]).level}, reporter ${rt.graphInfo(reporter).level} (trigger '${rt.graphInfo(reporter).trigger}')`);
console.log('tick  hash              fed words  reported  distinct  waiting');

const reference = new Map();
let fed = 0;
let summaries = 0;
let waited = 0;
let last = null;
let failed = false;
const decode = (p) => {
  const s = { tick: Number(p.readBigUInt64LE(0)), total: Number(p.readBigUInt64LE(8)), distinct: p.readUInt32LE(16), top: [] };
  for (let at = 20; at < p.length; ) {
    const len = p[at];
    s.top.push([p.toString('latin1', at + 1, at + 1 + len), p.readUInt32LE(at + 1 + len)]);
    at += 1 + len + 4;
  }
  return s;
};
for (let t = 0; ; t++) {
  const done = cursor >= corpus.length;
  if (done) {
    // Every reducer reports once more, so the barrier opens on the final totals.
    reducers.forEach((id) => rt.send(id, null, { kind: FLUSH }));
  }
  for (const id of mappers) {
    const text = take(PACE[t % PACE.length]);
    if (text === '') continue;
    rt.send(id, Buffer.from(text, 'utf8'), { kind: TEXT });
    for (const w of words(text)) {
      reference.set(w, (reference.get(w) ?? 0) + 1);
      fed++;
    }
  }
  const r = rt.tick();
  waited += r.agentsWaiting;
  for (const m of rt.drainMessages()) {
    if (m.kind !== SUMMARY) continue;
    last = decode(m.payload);
    summaries++;
    // What was sent before this tick went through all four stages within it.
    if (last.total !== fed || last.distinct !== reference.size || last.tick !== r.tick) {
      console.log(`      ! summary of tick ${last.tick}: ${last.total} words, ${last.distinct} distinct; fed so far: ${fed}, ${reference.size} distinct`);
      failed = true;
    }
  }
  if (t % 12 < 3 || done) {
    const reported = last?.tick === r.tick ? String(last.total) : '-';
    console.log(`${String(r.tick).padStart(4)}  ${r.hash.slice(0, 16)}  ${String(fed).padStart(9)}  ${reported.padStart(8)}  ${String(last?.tick === r.tick ? last.distinct : '-').padStart(8)}  ${String(r.agentsWaiting).padStart(7)}`);
  }
  if (done) break;
}

const expectTop = [...reference].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).slice(0, 10);
console.log(`top words: ${last.top.map(([w, n]) => `${w} ${n}`).join(', ')}`);
const topOk = JSON.stringify(last.top) === JSON.stringify(expectTop);
console.log(`${summaries} summaries in ${rt.currentTick} ticks (the reporter waited at its barrier in ${waited}: some reducer had nothing new); final count ${topOk && !failed ? 'matches' : 'DOES NOT match'} the JS reference (${fed} words, ${reference.size} distinct)`);

const log = rt.stopRecording();
const verdict = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 });
console.log(`replay (1 worker) of a ${(log.length / 1024).toFixed(0)} KiB log: ${verdict.ticksVerified} ticks and ${verdict.checkpointsVerified} checkpoints verified, ${verdict.ok && verdict.complete ? 'identical' : `DIVERGED at tick ${verdict.divergence?.tick}`}`);
if (waited === 0) console.log('      ! the barrier never waited');
if (failed || waited === 0 || !topOk || !verdict.ok || !verdict.complete || verdict.finalHash !== rt.stateHash()) process.exit(1);
