#!/usr/bin/env node
// Proves the package by installation: packs lockstep and this platform's binary package with
// scripts/pack.mjs (what `npm run pack` runs), installs both tarballs into a brand-new project in
// a temp dir (no access to the repository's sources), and there runs a CommonJS script, an ES
// module script, the dashboard (rt.serve(): its page and protocol), a TypeScript file type-checked with `tsc --noEmit`, worker_threads, and a Jest
// suite of several files in parallel workers; then, as a new user would, scaffolds an agent
// crate (`npx lockstep new agent`), makes a key, builds, signs and runs it, tests it under Jest
// (close(), tickAsync, request) and type-checks a TypeScript file that uses it (request,
// tickAsync, typed tensors, lockstep/ring.js). Run by `npm test` after the build.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { pack } from './pack.mjs';

const require = createRequire(import.meta.url);
const { platformTriple } = require('./platform.cjs');
const triple = platformTriple();
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const work = mkdtempSync(join(tmpdir(), 'lockstep-pkg-'));
const step = (what) => console.error(`[package-test] ${what}`);
const sh = (cmd, args, cwd, env = {}) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', env: { ...process.env, ...env } });

try {
  // The documented path (README, "Installing"): `npm run pack` writes these two tarballs.
  step(`packing lockstep and lockstep-${triple} into ${work} (scripts/pack.mjs)`);
  const { main, platform } = pack({ out: work });
  const tarballs = [main, platform];
  if (readdirSync(work).filter((f) => f.endsWith('.tgz')).length !== 2) throw new Error(`expected 2 tarballs in ${work}`);

  const app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'commonjs' }));
  writeFileSync(join(app, '.npmrc'), 'fund=false\naudit=false\n');
  step('installing the tarballs, typescript and jest into a fresh project');
  // As the README says: onnxruntime-node's postinstall would download CUDA files from outside
  // the registry; the variable its install script reads skips that.
  sh(npm, ['install', '--no-audit', '--no-fund', ...tarballs, 'typescript@5', 'jest@30', '@types/node@20'], app, { ONNXRUNTIME_NODE_INSTALL: 'skip' });
  // The addon comes from the platform package, never from the main one.
  if (readdirSync(join(app, 'node_modules', 'lockstep')).some((f) => f.endsWith('.node'))) throw new Error('the main tarball carries a .node');
  readFileSync(join(app, 'node_modules', `lockstep-${triple}`, `lockstep.${triple}.node`));

  const files = {
    'cjs.cjs': `
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');
const lockstep = require('lockstep');
const { Runtime, exampleAgent, replay, EXAMPLES_PUBLIC_KEY } = lockstep;
const rt = new Runtime({ workers: 2, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
const ids = rt.spawnMany(exampleAgent('gossip'), 50);
const hash = rt.tick(5).hash;
assert.equal(replay(rt.stopRecording(), { trustedKeys: [EXAMPLES_PUBLIC_KEY] }).finalHash, hash);
assert.ok(require.resolve('lockstep').includes('node_modules'), 'the installed package, not the repo');
// The addon is context-aware: it loads and runs in two worker threads at once, beside this one.
const code = "const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('lockstep');" +
  "const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] }); rt.spawnMany(exampleAgent('gossip'), 50);" +
  "require('node:worker_threads').parentPort.postMessage(rt.tick(5).hash);";
Promise.all([0, 1].map(() => new Promise((res, rej) => {
  const w = new Worker(code, { eval: true });
  w.once('message', res);
  w.once('error', rej);
}))).then((hashes) => {
  // Same seed, same scenario, other threads and worker counts: the same hash.
  assert.deepEqual(hashes, [hash, hash]);
  console.log('cjs ok', ids.length);
});`,
    'esm.mjs': `
import assert from 'node:assert/strict';
import lockstep, { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY, RingProducer } from 'lockstep';
import { createRingBuffer } from 'lockstep/ring.js';
assert.equal(typeof lockstep.replay, 'function');
const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
const id = rt.spawn(exampleAgent('counter'));
assert.ok(new RingProducer(createRingBuffer(4096)).tryPush(id, 'x'));
rt.send(id, 'hi', { kind: 1 });
rt.tick();
assert.equal(rt.drainMessages().length, 1);
console.log('esm ok');`,
    'check.ts': `
import { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY, type TickReport, type RuntimeEvent, type ModelInfo, type ReplayReport, type LockstepError, type DashboardServer, type DashboardClock, type DashboardStats, replay, replayAsync } from 'lockstep';
const rt: Runtime = new Runtime({ workers: 2, seed: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY], policy: { send: 'any' }, resourcePolicy: 'clamp' });
const id: number = rt.spawn(exampleAgent('counter'), { priority: 1 });
rt.send(id, new Uint8Array(4), { kind: 1, priority: 0 });
const r: TickReport = rt.tick(2);
const events: RuntimeEvent[] = rt.drainEvents();
for (const e of events) if (e.type === 'fault') console.log(e.fault.kind, e.fault.detail);
const log = rt.stopRecording();
const ok: boolean = replay(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], workers: 1 }).ok;
const later: Promise<ReplayReport> = replayAsync(log, { trustedKeys: [EXAMPLES_PUBLIC_KEY], onProgress: (n: number) => void n });
later.catch((e: LockstepError) => console.log(e.code === 'E_REPLAY_CORRUPT', e.message));
async function infer(m: ModelInfo): Promise<number> {
  const out = await rt.infer(m.id, { x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } });
  return out.probs.dims[0] + (ok ? r.tick : 0);
}
void infer;
async function dash(): Promise<number> {
  const server: DashboardServer = await rt.serve({ port: 0, controls: true, moduleNames: {}, summaryFile: 'x.summary' });
  server.on('tick', (report: TickReport) => void report.hash);
  const clock: DashboardClock = await server.play({ hz: 10 });
  await server.pause();
  const stats: DashboardStats = server.stats();
  await server.close();
  return stats.maxBufferedSeen + (clock.hz ?? 0) + server.port;
}
void dash;`,
    // What a new user writes against the scaffolded agent: the async API, requests, typed tensor
    // outputs, the rings from 'lockstep/ring.js' (ring.d.ts), \`using\`.
    'agent-check.ts': `
import { Runtime, type AgentMessage, type TickReport, type RunResult, type LockstepError, type TensorLike } from 'lockstep';
import { RingProducer, RingConsumer, createRingBuffer, RING_TYPES, type RingRecord } from 'lockstep/ring.js';
export async function ask(wasm: string, publicKey: string): Promise<bigint> {
  using rt = new Runtime({ workers: 1, trustedKeys: [publicKey] });
  const id: number = rt.spawn(wasm);
  const report: TickReport = await rt.tickAsync(3);
  const reply: AgentMessage = await rt.request(id, 'how many steps?', { kind: 1, timeoutTicks: 10 });
  const done: RunResult = await rt.run({ hz: 30, until: (r: TickReport) => r.tick >= report.tick + 5, onTick: (r) => void r.hash }).done;
  void done.reason;
  rt.request(id, new Uint8Array(4)).catch((e: LockstepError) => e.code === 'E_REQUEST_TIMEOUT' || e.code === 'E_AGENT_FAULTED' || e.code === 'E_BUSY');
  return reply.payload.readBigUInt64LE();
}
export async function double(rt: Runtime, model: string): Promise<Float32Array> {
  const out = await rt.infer<'float32'>(model, { x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } });
  const any: TensorLike = out.probs;
  if (any.type === 'float32') any.data.map((v) => v * 2);
  return out.probs.data.map((v) => v * 2);
}
export function rings(): RingRecord[] {
  const producer = new RingProducer(createRingBuffer(4096));
  producer.tryPush(1, 'x', { kind: RING_TYPES.MESSAGE });
  return new RingConsumer(producer.buffer).readBatch();
}`,
    // The dashboard ships and runs from the installed package: its page, uPlot (a dependency,
    // never a CDN) and the WebSocket protocol (ws, a dependency).
    'dashboard.cjs': `
const assert = require('node:assert/strict');
const http = require('node:http');
const WebSocket = require('ws');
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('lockstep');
const get = (port, path) => new Promise((resolve, reject) => http.get({ host: '127.0.0.1', port, path }, (res) => {
  let n = 0; res.on('data', (d) => (n += d.length)); res.on('end', () => resolve([res.statusCode, n]));
}).on('error', reject));
(async () => {
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  rt.spawnMany(exampleAgent('gossip'), 20);
  const server = await rt.serve();
  for (const path of ['/', '/app.js', '/style.css', '/vendor/uPlot.iife.min.js', '/vendor/uPlot.min.css']) {
    const [status, bytes] = await get(server.port, path);
    assert.equal(status, 200, path);
    assert.ok(bytes > 100, path);
  }
  await server.step(3);
  const ws = new WebSocket(server.wsUrl, ['lockstep.v1']);
  const replies = [];
  await new Promise((resolve) => ws.on('message', (d) => { replies.push(JSON.parse(String(d))); if (replies.length === 2) resolve(); }).on('open', () => ws.send(JSON.stringify({ id: 1, type: 'summary' }))));
  assert.equal(replies[1].data.tick, 3);
  ws.close();
  await server.close();
  rt.close();
  console.log('dashboard ok');
})();`,
    'tsconfig.json': JSON.stringify({ compilerOptions: { strict: true, noEmit: true, module: 'node16', moduleResolution: 'node16', target: 'es2022', types: ['node'] }, files: ['check.ts'] }),
    'tsconfig.agent.json': JSON.stringify({ compilerOptions: { strict: true, noEmit: true, module: 'node16', moduleResolution: 'node16', target: 'es2022', types: ['node'] }, files: ['agent-check.ts'] }),
    'jest.agent.config.js': `module.exports = { testEnvironment: 'node', testMatch: ['**/agent-suite/*.test.js'] };`,
    'agent-suite/my-agent.test.js': `
const { join } = require('node:path');
const { Runtime } = require('lockstep');
const { publicKey } = require('../my-agent/publisher.json');
const wasm = join(__dirname, '..', 'my-agent', 'my_agent.signed.wasm');
let rt;
beforeEach(() => {
  rt = new Runtime({ workers: 1, trustedKeys: [publicKey] });
});
afterEach(() => rt.close());
test('my-agent answers a request with its step count, off the event loop', async () => {
  const id = rt.spawn(wasm);
  const report = await rt.tickAsync(3);
  expect(report.tick).toBe(2);
  const reply = await rt.request(id, 'how many steps?');
  expect(reply.from).toBe(id);
  expect(reply.payload.readBigUInt64LE()).toBe(3n);
  expect(rt.drainMessages()).toEqual([]);
});
test('close() frees the runtime; later calls are E_CLOSED', () => {
  rt.spawn(wasm);
  rt.close();
  expect(rt.closed).toBe(true);
  expect(() => rt.tick()).toThrow(expect.objectContaining({ code: 'E_CLOSED' }));
});`,
    'jest.config.js': `module.exports = { testEnvironment: 'node', testMatch: ['**/suite/*.test.js'] };`,
  };
  for (let i = 0; i < 4; i++) {
    files[`suite/run${i}.test.js`] = `
const fs = require('node:fs');
const { Runtime, exampleAgent, replay, EXAMPLES_PUBLIC_KEY } = require('lockstep');
test('runtime in jest worker ${i}', () => {
  fs.writeFileSync(${JSON.stringify(join(work, 'pids'))} + '/${i}', String(process.pid));
  const rt = new Runtime({ workers: 2, seed: ${i}, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  rt.spawnMany(exampleAgent('gossip'), 100);
  const a = rt.tick(10).hash;
  expect(replay(rt.stopRecording(), { trustedKeys: [EXAMPLES_PUBLIC_KEY] }).ok).toBe(true);
  const again = new Runtime({ workers: 1, seed: ${i}, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  again.spawnMany(exampleAgent('gossip'), 100);
  expect(again.tick(10).hash).toBe(a);
});`;
  }
  mkdirSync(join(app, 'suite'));
  mkdirSync(join(app, 'agent-suite'));
  mkdirSync(join(work, 'pids'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(app, name), text);

  step('CommonJS + worker_threads');
  process.stderr.write(sh(process.execPath, ['cjs.cjs'], app));
  step('ES module');
  process.stderr.write(sh(process.execPath, ['esm.mjs'], app));
  step('the dashboard from the installed package (page, uPlot, ws)');
  process.stderr.write(sh(process.execPath, ['dashboard.cjs'], app));
  step('TypeScript: tsc --noEmit --strict against index.d.ts');
  sh(process.execPath, [join(app, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], app);
  step('Jest, 4 files, 2 parallel workers, fresh cache');
  // A warm cache can make Jest 30 run files in-band: give it a new one, then check the pids.
  sh(process.execPath, [join(app, 'node_modules', 'jest', 'bin', 'jest.js'), '--maxWorkers=2', '--cacheDirectory', join(work, 'jest-cache'), '--ci'], app);
  const pids = new Set(readdirSync(join(work, 'pids')).map((f) => readFileSync(join(work, 'pids', f), 'utf8')));
  if (pids.size < 2) throw new Error(`jest ran the files in ${pids.size} process(es): workers were not used`);
  console.error(`[package-test] cjs, esm, tsc, worker_threads and jest in ${pids.size} workers: all ok`);

  // A new user's first agent, as the README says: scaffold, key, build, sign, run — with nothing
  // but the installed package (the SDK and lockstep-abi sources ship in it).
  step('npx lockstep new agent my-agent; keygen; cargo build --release; lockstep sign; run it signed');
  const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';
  const lockstepCli = (args, cwd) => spawnSync(npx, ['--no', 'lockstep', ...args], { cwd, encoding: 'utf8', env: process.env });
  const ok = (r, what) => {
    if (r.status !== 0) throw new Error(`${what}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
    return r;
  };
  ok(lockstepCli(['new', 'agent', 'my-agent'], app), 'npx lockstep new agent my-agent');
  const agent = join(app, 'my-agent');
  const cargoToml = readFileSync(join(agent, 'Cargo.toml'), 'utf8');
  if (!cargoToml.includes('lockstep-sdk = { path = "../node_modules/lockstep/guest/sdk" }')) throw new Error(`the scaffold does not use the installed SDK:\n${cargoToml}`);
  if (lockstepCli(['new', 'agent', 'my-agent'], app).status === 0) throw new Error('new agent overwrote a directory');
  ok(lockstepCli(['keygen', '--out', 'publisher.json'], agent), 'keygen --out');
  const key = readFileSync(join(agent, 'publisher.json'), 'utf8');
  const again = lockstepCli(['keygen', '--out', 'publisher.json'], agent);
  if (again.status === 0 || !/publisher\.json already exists.*--force/s.test(again.stderr) || readFileSync(join(agent, 'publisher.json'), 'utf8') !== key) {
    throw new Error(`keygen replaced an existing key or did not say why not: ${again.stderr}`);
  }
  // The config's flags and target (.cargo/config.toml) only: RUSTFLAGS would replace them.
  const cargoEnv = { ...process.env };
  for (const k of ['RUSTFLAGS', 'CARGO_ENCODED_RUSTFLAGS', 'CARGO_BUILD_TARGET', 'CARGO_TARGET_DIR']) delete cargoEnv[k];
  execFileSync('cargo', ['build', '--release', '--quiet'], { cwd: agent, stdio: ['ignore', 'inherit', 'inherit'], env: cargoEnv });
  const signed = ok(lockstepCli(['sign', 'target/wasm32-unknown-unknown/release/my_agent.wasm', '--manifest', 'manifest.json', '--key', 'publisher.json', '--out', 'my_agent.signed.wasm'], agent), 'lockstep sign');
  if (signed.stderr !== '') throw new Error(`lockstep sign warned about the scaffold's own manifest: ${signed.stderr}`);
  writeFileSync(join(app, 'agent.cjs'), `
const assert = require('node:assert/strict');
const { Runtime, exampleAgent, EXAMPLES_PUBLIC_KEY } = require('lockstep');
const { publicKey } = require('./my-agent/publisher.json');
const wasm = require('node:path').join(__dirname, 'my-agent', 'my_agent.signed.wasm');
assert.throws(() => new Runtime({ workers: 1 }).spawn(wasm), { code: 'E_UNTRUSTED_KEY' });
const rt = new Runtime({ workers: 1, trustedKeys: [publicKey, EXAMPLES_PUBLIC_KEY] });
const id = rt.spawn(wasm);
const example = rt.spawn(exampleAgent('counter'));
rt.tick(4);
rt.send(id, 'hello', { kind: 1 });
rt.tick();
const answers = rt.drainMessages();
assert.equal(answers.length, 1);
assert.equal(answers[0].from, id);
assert.equal(answers[0].kind, 2);
assert.equal(answers[0].payload.readBigUInt64LE(), 4n);
const mine = rt.inspect(id).memoryBytes;
const theirs = rt.inspect(example).memoryBytes;
assert.equal(mine, theirs, 'memory per agent: the scaffold as the examples');
console.log('scaffolded agent ok; memory per agent ' + mine + ' bytes (example counter: ' + theirs + ')');`);
  process.stderr.write(sh(process.execPath, ['agent.cjs'], app));
  step("the crate's own scripts: node build.mjs (build + sign), node run.mjs");
  sh(process.execPath, ['build.mjs'], agent, cargoEnv);
  const ran = sh(process.execPath, ['run.mjs'], agent);
  if (!/answered kind 2: 3 steps/.test(ran)) throw new Error(`run.mjs: ${ran}`);
  if (!/replied to a request: 4 steps/.test(ran)) throw new Error(`run.mjs did not show the request's reply: ${ran}`);
  process.stderr.write(ran);
  step('the scaffolded agent under Jest (close(), tickAsync, request), and tsc --noEmit on a file using it');
  sh(process.execPath, [join(app, 'node_modules', 'jest', 'bin', 'jest.js'), '--config', 'jest.agent.config.js', '--runInBand', '--ci', '--cacheDirectory', join(work, 'jest-cache')], app);
  sh(process.execPath, [join(app, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.agent.json'], app);
  console.log('package: 1 passed, 0 failed');
} finally {
  if (!process.env.LOCKSTEP_KEEP_PACKAGE_TEST) rmSync(work, { recursive: true, force: true });
}
