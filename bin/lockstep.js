#!/usr/bin/env node
'use strict';
// npx lockstep keygen | sign | verify | inspect | new agent | log inspect | log verify | recover —
// publisher keys, signed agent modules, a new agent crate to start from, and replay logs and
// journals (docs/JOURNAL.md).
const { readFileSync, writeFileSync, openSync, readSync, closeSync, chmodSync } = require('node:fs');
const { basename } = require('node:path');
const { keygen, sign, verify, inspect, inspectLog, verifyLog, openJournal, Runtime, LockstepError } = require('../index.js');
const { newAgent } = require('./scaffold.js');

const USAGE = `usage:
  lockstep keygen --out <key.json> [--force]       new publisher key pair, written to a file only you can read
                                                   (--force replaces an existing one; without --out: printed on stdout)
  lockstep sign <module.wasm> --manifest <m.json> --key <key.json> [--out signed.wasm]
  lockstep verify <module.wasm> --trust <publicKeyHex>[,<publicKeyHex>...]
  lockstep inspect <module.wasm>                   manifest, publisher, imports
  lockstep new agent <name>                        a Rust agent crate in ./<name>/ (build, sign, run scripts included)
  lockstep log inspect <dir|file> [--json]         what a journal directory or replay log holds: records, ticks, agents, modules, size
  lockstep log verify <dir|file> [--trust <keys>] [--dev-mode] [--workers <n>] [--json]
                                                   replay it and verify every hash (progress on stderr); exit 1 on a divergence
  lockstep recover <dir> [--trust <keys>] [--dev-mode] [--json]
                                                   recover the journal a killed runtime left (cut a torn tail, verify
                                                   every hash), report, and close it ready to be continued
  lockstep seek <dir|file> <tick> [--agent <id>] [--memory <offset>:<length>] [--trust <keys>] [--dev-mode] [--json]
                                                   the session's state at <tick> (ticks run): hashes, agents; with --agent,
                                                   that agent, its memory (hex, 256 bytes by default) and its messages of that tick
  lockstep dashboard <dir> [--port <n>] [--host <addr>] [--trust <keys>] [--dev-mode]
                                                   open a recorded (or crashed) session's journal read-only in the dashboard:
                                                   time travel over every tick; runs until Ctrl-C`;

function arg(args, name) {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  if (value === undefined || value.startsWith('--')) throw new LockstepError('E_USAGE', `${name} needs a value\n${USAGE}`);
  return value;
}

/** A file's text, or E_IO naming the flag it came from. */
function readText(path, flag) {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new LockstepError('E_IO', `${flag} ${path}: cannot read it (${e.code || e.message})`);
  }
}

/** The secret key in a key file written by `lockstep keygen --out`. */
function secretKeyFrom(path) {
  let key;
  try {
    key = JSON.parse(readText(path, '--key'));
  } catch (e) {
    if (e instanceof LockstepError) throw e;
    throw new LockstepError('E_INVALID_ARGUMENT', `--key ${path} is not JSON (${e.message}); pass the key file \`lockstep keygen --out key.json\` wrote`);
  }
  if (key === null || typeof key !== 'object' || typeof key.secretKey !== 'string') {
    throw new LockstepError('E_INVALID_ARGUMENT', `--key ${path} has no "secretKey" string; pass the key file \`lockstep keygen --out key.json\` wrote`);
  }
  return key.secretKey;
}

/**
 * Refuses, with an explanation, a file that is not WebAssembly — most often a native library
 * built for the host by mistake. An unreadable file is left to the API's own error.
 */
function checkWasm(path) {
  const head = Buffer.alloc(4);
  let n;
  try {
    const fd = openSync(path, 'r');
    try {
      n = readSync(fd, head, 0, 4, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    return;
  }
  if (n === 4 && head.equals(Buffer.from('\0asm', 'latin1'))) return;
  const hex = head.subarray(0, n).toString('hex');
  const what =
    n === 0 ? 'it is empty'
      : hex === '7f454c46' ? 'it is an ELF file: a native Linux library or program'
        : ['feedface', 'feedfacf', 'cefaedfe', 'cffaedfe', 'cafebabe'].includes(hex) ? 'it is a Mach-O file: a native macOS library or program'
          : hex.startsWith('4d5a') ? 'it is a PE file: a native Windows DLL or program'
            : `it starts with the bytes ${hex}`;
  const crate = /^(?:lib)?([A-Za-z0-9_]+)\.(?:so|dylib|dll|rlib|a)$/.exec(basename(path))?.[1];
  throw new LockstepError('E_INVALID_MODULE', `${path} is not a WebAssembly module (missing the \\0asm header): ${what}. ` +
    'Agents run as WebAssembly: build with `--target wasm32-unknown-unknown` ' +
    '(`cargo build --release --target wasm32-unknown-unknown`, or set it as the default target in .cargo/config.toml as ' +
    '`lockstep new agent` does) and use ' +
    (crate ? `target/wasm32-unknown-unknown/release/${crate}.wasm` : 'the .wasm file under target/wasm32-unknown-unknown/release/'));
}

// Which capability each host import needs (docs/SECURITY.md); the others are always linked.
// (crates/lockstep-core/tests/abi_copies.rs checks that these name every import the engine has.)
const SEND = { ok: (c) => typeof c.send === 'string' && c.send !== 'none', fix: '"send": "host" (or "agents", "any")' };
const INFER = { ok: (c) => Array.isArray(c.infer) && c.infer.length > 0, fix: '"infer": ["<model sha256>"] (or ["*"])' };
const RANDOM = { ok: (c) => c.random === true, fix: '"random": true' };
const NEEDS = {
  send: SEND,
  send_plain: SEND,
  send_batch: SEND,
  infer: INFER,
  generate: INFER,
  log: { ok: (c) => c.log === true, fix: '"log": true' },
  random_u64: RANDOM,
  random_fill: RANDOM,
  tick: { ok: (c) => c.clock === true, fix: '"clock": true' },
};
const ALWAYS = new Set(['self_id', 'report_panic', 'granted']);

/** One warning per import of `module` that the manifest's capabilities do not cover. */
function uncoveredImports(module, manifestPath) {
  const { imports, manifest } = inspect(module);
  const caps = (manifest && manifest.capabilities) || {};
  const warnings = [];
  for (const name of imports) {
    const [mod, field] = name.split('::');
    if (mod === 'lockstep' && ALWAYS.has(field)) continue;
    const need = mod === 'lockstep' && Object.hasOwn(NEEDS, field) ? NEEDS[field] : undefined;
    if (need === undefined) {
      warnings.push(`imports ${name}, which no capability covers: runtimes refuse the module (E_UNKNOWN_IMPORT). ` +
        'Build for wasm32-unknown-unknown (not WASI) and leave out std::time, std::fs, println! and the like; the SDK has tick() and random_u64()');
    } else if (!need.ok(caps)) {
      warnings.push(`imports ${name}, but ${manifestPath} does not declare its capability: add ${need.fix} to "capabilities" and sign again, ` +
        'or runtimes refuse the module (E_UNDECLARED_IMPORT; docs/SECURITY.md)');
    }
  }
  return warnings;
}

/** 1234567 → "1,234,567". */
const n = (x) => Number(x).toLocaleString('en-US');

/** Trust options shared by log verify and recover (--trust hex,hex --dev-mode --workers n). */
function trustArgs(args) {
  const o = {};
  const trust = arg(args, '--trust');
  if (trust) o.trustedKeys = trust.split(',');
  if (args.includes('--dev-mode')) o.devMode = true;
  const workers = arg(args, '--workers');
  if (workers !== undefined) {
    o.workers = Number(workers);
    if (!Number.isInteger(o.workers)) throw new LockstepError('E_USAGE', `--workers needs an integer, got ${workers}\n${USAGE}`);
  }
  return o;
}

/** Progress of a long verification or recovery on stderr, at most once a second. */
function progressPrinter(what, total) {
  let last = 0;
  let printed = false;
  const tty = process.stderr.isTTY;
  return {
    onProgress(ticks) {
      const now = Date.now();
      if (now - last < 1000) return;
      last = now;
      printed = true;
      const pct = total ? ` (${Math.floor((100 * ticks) / total)}%)` : '';
      process.stderr.write(`${tty ? '\r' : ''}lockstep ${what}: ${n(ticks)}${total ? ` / ${n(total)}` : ''} ticks${pct}${tty ? '' : '\n'}`);
    },
    done() {
      if (printed && tty) process.stderr.write('\n');
    },
  };
}

function printSummary(path, s) {
  const ticks = s.ticks === 0 ? '0' : `${n(s.ticks)} (${s.firstTick}..${s.lastTick})`;
  console.log(`${s.journal ? 'journal' : 'replay log'} ${path}: ${s.files.length} file${s.files.length === 1 ? '' : 's'}, ${n(s.bytes)} bytes`);
  console.log(`  records ${n(s.records)}, ticks ${ticks}, agents ${n(s.agents)}, modules ${n(s.modules)}, models ${n(s.models)}`);
  console.log(`  sends ${n(s.sends)}, kills ${n(s.kills)}, shutdowns ${n(s.shutdowns)}, checkpoints ${n(s.checkpoints)}, inference results ${n(s.inferResults)}${s.graphChanges ? `, graph changes ${n(s.graphChanges)}` : ''}, gaps ${n(s.gaps)}`);
  if (!s.journal) console.log(`  ${s.ended ? 'ends with its End record (a whole session)' : 'no End record: a prefix of a session'}`);
  if (s.config) {
    const c = s.config;
    console.log(`  session: seed ${c.seed}, maxAgents ${n(c.maxAgents)}, fuelPerCall ${n(c.fuelPerCall)}, memoryLimitBytes ${n(c.memoryLimitBytes)}, ` +
      `checkpointIntervalTicks ${c.checkpointIntervalTicks}, devMode ${c.devMode}, trusted keys ${c.trustedKeys.length}`);
  }
  if (s.id) console.log(`  journal id ${s.id}`);
  if (s.lineage) console.log(`  forked from ${s.lineage.journal ? `journal ${s.lineage.journal}` : 'a snapshot'} at tick ${n(s.lineage.tick)} (state ${s.lineage.hash})`);
  if (s.journal) {
    const snaps = s.snapshots;
    console.log(`  snapshots ${snaps.length}${snaps.length ? `: ticks ${snaps.map((x) => x.tick).join(', ')}; ${n(snaps.reduce((a, x) => a + x.bytes, 0))} bytes` : ''}`);
    for (const f of s.files) console.log(`  ${basename(f.path)}  ${n(f.bytes)} bytes, ${n(f.records)} records, ${n(f.ticks)} ticks from tick ${f.firstTick}`);
  }
  if (s.torn) {
    console.log(`  tail: ${n(s.torn.bytes)} bytes after the last complete tick at ${basename(s.torn.file)}:${s.torn.offset}` +
      `${s.torn.tornAt != null ? ` (a torn write from byte ${s.torn.tornAt})` : ''}; recovery cuts it off`);
  }
}

function logCommand(args) {
  const [what, path] = args;
  if (!['inspect', 'verify'].includes(what) || !path || path.startsWith('--')) throw usage();
  const json = args.includes('--json');
  if (what === 'inspect') {
    const s = inspectLog(path);
    if (json) console.log(JSON.stringify(s, null, 2));
    else printSummary(path, s);
    return 0;
  }
  // The tick count first (a quick read, no replay), for the progress line.
  const total = inspectLog(path).ticks;
  const progress = progressPrinter('log verify', total);
  let r;
  try {
    r = verifyLog(path, { ...trustArgs(args), onProgress: progress.onProgress });
  } finally {
    progress.done();
  }
  if (json) {
    console.log(JSON.stringify(r, null, 2));
  } else if (r.ok) {
    const whole = r.segments !== undefined
      ? `; a journal: ${n(r.tick)} complete ticks in ${r.segments} segment${r.segments === 1 ? '' : 's'}${r.cut ? `, then ${n(r.cut.bytes)} bytes a recovery cuts off (${basename(r.cut.file)}:${r.cut.offset})` : ''}`
      : r.complete ? '; the whole session (End record verified)' : '; a prefix (no End record, or a gap)';
    console.log(`ok: ${n(r.ticksVerified)} ticks and ${n(r.checkpointsVerified)} checkpoints verified, final hash ${r.finalHash}${whole}`);
  } else {
    const d = r.divergence;
    console.log(`DIVERGED at tick ${d.tick} (${d.kind}${d.agent !== undefined ? `, agent ${d.agent} first` : ''}): expected ${d.expected}, got ${d.actual}; ${n(r.ticksVerified)} ticks verified before it`);
  }
  return r.ok ? 0 : 1;
}

function recoverCommand(args) {
  const [dir] = args;
  if (!dir || dir.startsWith('--')) throw usage();
  const total = inspectLog(dir).ticks;
  const progress = progressPrinter('recover', total);
  let recovered;
  try {
    recovered = Runtime.recover(dir, { ...trustArgs(args), onProgress: progress.onProgress });
  } finally {
    progress.done();
  }
  const { runtime, report } = recovered;
  runtime.close(); // synced and unlocked: the application recovers it again to go on
  if (args.includes('--json')) {
    console.log(JSON.stringify(report, null, 2));
    return 0;
  }
  if (report.note) console.error(`lockstep recover: ${report.note}`);
  console.log(`recovered ${dir}: ${n(report.tick)} ticks (${n(report.ticksReplayed)} replayed and verified, ${n(report.checkpointsVerified)} checkpoints) from ${report.segments} segment${report.segments === 1 ? '' : 's'}`);
  console.log(report.cut
    ? `  cut off ${n(report.bytesDiscarded)} bytes after the last complete tick at ${basename(report.cut.file)}:${report.cut.offset}`
    : '  nothing cut off: the journal ended at a complete tick');
  console.log('  the journal is ready: Runtime.recover(dir, options) in your application continues the session');
  return 0;
}

/** The hex dump of `bytes` read from `offset`, 32 bytes a line. */
function hexdump(bytes, offset) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 32) {
    lines.push(`    ${(offset + i).toString(16).padStart(8, '0')}  ${bytes.subarray(i, i + 32).toString('hex').replace(/(..)/g, '$1 ').trim()}`);
  }
  return lines.join('\n');
}

function seekCommand(args) {
  const [path, tickText] = args;
  if (!path || path.startsWith('--') || tickText === undefined) throw usage();
  // Digits only: Number() would read '' and ' ' as 0, and '0x10' as 16.
  const decimal = (text) => (/^\d+$/.test(text) ? Number(text) : NaN);
  const tick = decimal(tickText);
  if (!Number.isInteger(tick) || tick < 0) throw new LockstepError('E_USAGE', `<tick> must be a tick number (ticks run), got ${tickText}\n${USAGE}`);
  const agentText = arg(args, '--agent');
  const agent = agentText === undefined ? undefined : decimal(agentText);
  if (agent !== undefined && (!Number.isInteger(agent) || agent < 1)) throw new LockstepError('E_USAGE', `--agent needs an agent id, got ${agentText}\n${USAGE}`);
  const memoryText = arg(args, '--memory') ?? '0:256';
  const parts = memoryText.split(':');
  const [offset, length] = parts.length === 2 ? parts.map(decimal) : [NaN, NaN];
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0) throw new LockstepError('E_USAGE', `--memory needs <offset>:<length>, got ${memoryText}\n${USAGE}`);
  const started = Date.now();
  const cursor = openJournal(path, { ...trustArgs(args), snapshotIntervalTicks: 0 });
  const r = cursor.seek(tick);
  const out = { tick: r.tick, fromSnapshot: r.fromSnapshot, ticksReplayed: r.ticksReplayed, stateHash: cursor.stateHash(), deepHash: cursor.deepHash().hash, agents: cursor.agents().length };
  if (agent !== undefined) {
    out.agent = cursor.inspect(agent);
    try {
      out.memory = { offset, length, hex: cursor.readMemory(agent, offset, length).toString('hex') };
    } catch (e) {
      out.memory = { offset, length, error: e.message };
    }
    if (tick < cursor.endTick) {
      const m = cursor.messagesAt(tick).find((a) => a.agent === agent) ?? { received: [], sent: [] };
      const text = (x) => ({ ...x, payload: Buffer.from(x.payload).toString('hex') });
      out.received = m.received.map(text);
      out.sent = m.sent.map(text);
    }
  }
  if (args.includes('--json')) {
    console.log(JSON.stringify(out, null, 2));
    return 0;
  }
  console.log(`${path} at tick ${n(out.tick)} (of ${n(cursor.firstTick)}..${n(cursor.endTick)}): ${out.fromSnapshot === null ? 'replayed from the start' : `restored the snapshot of tick ${n(out.fromSnapshot)}`}, ${n(out.ticksReplayed)} ticks replayed and verified in ${Date.now() - started} ms`);
  console.log(`  state hash ${out.stateHash}\n  deep hash  ${out.deepHash}\n  agents ${n(out.agents)}`);
  if (agent !== undefined) {
    const a = out.agent;
    console.log(`agent ${a.id}: ${a.state}${a.fault ? ` (${a.fault.kind}: ${a.fault.detail})` : ''}, module ${a.module.slice(0, 16)}…, steps ${n(a.steps)}, inbox ${n(a.inboxLen)}, memory ${n(a.memoryBytes)} bytes`);
    if (out.memory.error) console.log(`  memory: ${out.memory.error}`);
    else console.log(`  memory ${offset}..${offset + length}:\n${hexdump(Buffer.from(out.memory.hex, 'hex'), offset)}`);
    if (out.received) {
      console.log(`  tick ${n(tick)}: received ${out.received.length}, sent ${out.sent.length}`);
      for (const m of out.received) console.log(`    <- from ${m.from} kind ${m.kind} seq ${m.seq}: ${m.payload.slice(0, 64)}${m.payload.length > 64 ? '…' : ''}`);
      for (const m of out.sent) console.log(`    -> to ${m.to} kind ${m.kind} seq ${m.seq}: ${m.payload.slice(0, 64)}${m.payload.length > 64 ? '…' : ''}`);
    }
  }
  return 0;
}

/** `lockstep dashboard <dir>`: the journal's last state, served read-only, with time travel. */
async function dashboardCommand(args) {
  const [dir] = args;
  if (!dir || dir.startsWith('--')) throw usage();
  const trust = trustArgs(args);
  const portText = arg(args, '--port') ?? '0';
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new LockstepError('E_USAGE', `--port needs a port number, got ${portText}\n${USAGE}`);
  const host = arg(args, '--host') ?? '127.0.0.1';
  const cursor = openJournal(dir, { trustedKeys: trust.trustedKeys, devMode: trust.devMode });
  cursor.seek(cursor.endTick);
  // A runtime at the journal's last tick (a fork without a journal: nothing is written) for the
  // page's live panels; the clock and the controls are off, so it never moves.
  const rt = cursor.fork({ trustedKeys: trust.trustedKeys, devMode: trust.devMode });
  const server = await rt.serve({
    port,
    host,
    token: host === '127.0.0.1' || host === 'localhost' || host === '::1' ? undefined : true,
    clock: false,
    controls: false,
    journal: { dir, trustedKeys: trust.trustedKeys, devMode: trust.devMode },
  });
  console.log(`lockstep dashboard: ${server.url}`);
  console.log(`  journal ${dir}: ticks ${n(cursor.firstTick)}..${n(cursor.endTick)}, read-only (time travel only); Ctrl-C to stop`);
  await new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
  rt.close();
  return 0;
}

function main(argv) {
  const [command, ...args] = argv;
  switch (command) {
    case 'keygen': {
      const out = arg(args, '--out');
      const force = args.includes('--force');
      const k = keygen();
      if (out) {
        try {
          // 'wx': never replace a key by accident.
          writeFileSync(out, JSON.stringify(k, null, 2) + '\n', { mode: 0o600, flag: force ? 'w' : 'wx' });
        } catch (e) {
          if (e.code === 'EEXIST') {
            throw new LockstepError('E_EXISTS', `${out} already exists; refusing to overwrite a key (it would be lost, and runtimes that trust it would not admit what you sign next). ` +
              'Pass --force to replace it, or choose another --out');
          }
          throw new LockstepError('E_IO', `--out ${out}: cannot write it (${e.code || e.message})`);
        }
        if (force) chmodSync(out, 0o600);
        console.log(`wrote ${out} (keep it secret); public key: ${k.publicKey}`);
      } else {
        console.error('lockstep keygen: warning: the secret key is printed on stdout (terminal scrollback, logs); ' +
          'prefer `lockstep keygen --out publisher.json`, which writes it to a file only you can read');
        console.log(JSON.stringify(k, null, 2));
      }
      return 0;
    }
    case 'sign': {
      const [module] = args;
      const manifest = arg(args, '--manifest');
      const key = arg(args, '--key');
      if (!module || !manifest || !key) throw usage();
      const secretKey = secretKeyFrom(key);
      const out = arg(args, '--out') ?? module;
      checkWasm(module);
      const signed = sign(module, readText(manifest, '--manifest'), secretKey);
      writeFileSync(out, signed);
      for (const w of uncoveredImports(signed, manifest)) console.error(`lockstep sign: warning: ${module} ${w}`);
      console.log(`signed ${out}`);
      return 0;
    }
    case 'verify': {
      const [module] = args;
      const trust = arg(args, '--trust');
      if (!module || !trust) throw usage();
      checkWasm(module);
      const r = verify(module, trust.split(','));
      console.log(r.ok ? `ok: signed by ${r.publisher}` : `refused (${r.code}): ${r.message}`);
      return r.ok ? 0 : 1;
    }
    case 'inspect': {
      const [module] = args;
      if (!module) throw usage();
      checkWasm(module);
      console.log(JSON.stringify(inspect(module), null, 2));
      return 0;
    }
    case 'new': {
      const [what, name] = args;
      if (what !== 'agent' || !name || args.length > 2) throw usage();
      const { dir, sdk, transient } = newAgent(name);
      console.log(`created ${dir}: a Rust agent crate (lockstep-sdk from ${sdk})\nnext:\n` +
        `  cd ${name}\n  npx lockstep keygen --out publisher.json   # once; keep it secret\n` +
        '  node build.mjs                              # cargo build --release + lockstep sign → dist/\n' +
        '  node run.mjs                                # run it and print its answer');
      if (transient) {
        console.error(`lockstep new agent: warning: lockstep is not installed in this project, so Cargo.toml points at the SDK in npx's cache (${sdk}), ` +
          'which npm may delete: `npm install lockstep` here, then run this again');
      }
      return 0;
    }
    case 'log':
      return logCommand(args);
    case 'seek':
      return seekCommand(args);
    case 'dashboard':
      return dashboardCommand(args);
    case 'recover':
      return recoverCommand(args);
    default:
      console.log(USAGE);
      return command === undefined || command === '--help' ? 0 : 2;
  }
}

function usage() {
  const e = new Error(USAGE);
  e.code = 'E_USAGE';
  return e;
}

function failed(e) {
  console.error(e && e.code === 'E_USAGE' ? e.message : `lockstep: ${e && e.code ? `${e.code}: ` : ''}${e && e.message}`);
  process.exitCode = 2;
}

try {
  const code = main(process.argv.slice(2));
  if (code && typeof code.then === 'function') {
    code.then((c) => {
      process.exitCode = c;
    }, failed);
  } else {
    process.exitCode = code;
  }
} catch (e) {
  failed(e);
}
