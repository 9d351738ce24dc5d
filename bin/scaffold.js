'use strict';
// `lockstep new agent <name>`: writes a complete Rust agent crate in ./<name>/ — Cargo.toml (the
// release profile and wasm32 settings the example agents use), .cargo/config.toml, src/lib.rs,
// manifest.json, build.mjs (build + sign), run.mjs (spawn it and print its answer), README.md.
const { existsSync, mkdirSync, writeFileSync } = require('node:fs');
const { join, relative, resolve, sep } = require('node:path');
const { LockstepError } = require('../errors.js');

// Names cargo refuses for a package, besides the shape checked below.
const RESERVED = new Set([
  'as', 'async', 'await', 'break', 'const', 'continue', 'crate', 'dyn', 'else', 'enum', 'extern', 'false', 'fn', 'for',
  'if', 'impl', 'in', 'let', 'loop', 'match', 'mod', 'move', 'mut', 'pub', 'ref', 'return', 'self', 'static', 'struct',
  'super', 'trait', 'true', 'type', 'unsafe', 'use', 'where', 'while', 'abstract', 'become', 'box', 'do', 'final',
  'gen', 'macro', 'override', 'priv', 'try', 'typeof', 'unsized', 'virtual', 'yield',
  'core', 'std', 'alloc', 'proc_macro', 'proc-macro', 'test', 'lockstep', 'lockstep-sdk', 'lockstep_sdk', 'lockstep-abi', 'lockstep_abi',
]);

/** `name` as a Rust type name: my-agent → MyAgent (never one of the SDK's own names). */
function typeName(name) {
  const t = name.split(/[-_]+/).filter(Boolean).map((w) => w[0].toUpperCase() + w.slice(1)).join('');
  return ['Agent', 'Context', 'Message', 'Self'].includes(t) ? `${t}State` : t;
}

/** A path for a TOML/JS string: forward slashes on every platform. */
const portable = (p) => p.split(sep).join('/');

function files(name, sdkPath, pkgRoot) {
  const crate = name.replace(/-/g, '_');
  const Type = typeName(name);
  return {
    'Cargo.toml': `[package]
name = "${name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# A lockstep agent is a WebAssembly module: a cdylib built for wasm32-unknown-unknown
# (the default target here, set in .cargo/config.toml).
crate-type = ["cdylib"]

[dependencies]
# lockstep-sdk is not on crates.io yet: this is the copy shipped inside the installed lockstep
# npm package (${portable(pkgRoot)}).
# When it is published, replace this line with:  lockstep-sdk = "0.1"
lockstep-sdk = { path = "${sdkPath}" }

# Its own workspace: a Cargo workspace above this directory does not claim it, and the profile
# below applies (profiles are read from the workspace root only).
[workspace]

# The example agents' settings: small, fast modules; a panic reports its message, then traps.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
`,
    '.cargo/config.toml': `# \`cargo build --release\` here builds the agent for WebAssembly.
[build]
target = "wasm32-unknown-unknown"

[target.wasm32-unknown-unknown]
# 64 KiB of stack instead of Rust's default 1 MiB: an idle agent then costs 3 pages of memory
# (192 KiB), not 18. Note: a RUSTFLAGS environment variable replaces these flags.
rustflags = ["-C", "link-arg=-zstack-size=65536"]
`,
    'src/lib.rs': `//! ${name}: a lockstep agent. It counts its steps; it answers a request from the host
//! (\`await rt.request(id, payload)\`) with the number of steps so far (u64, little-endian), and
//! every other message of kind 1 with a message of kind 2 carrying the same number.
//!
//! Build and sign: \`node build.mjs\`; run: \`node run.mjs\` (see README.md).
//! Everything an agent can call: the lockstep-sdk crate (\`cargo doc --open\`).
use lockstep_sdk::{export_agent, reply, send, Agent, Context, Message};

#[derive(Default)]
struct ${Type} {
    steps: u64,
}

impl Agent for ${Type} {
    /// Once per tick, after this tick's messages were received.
    fn step(&mut self, _ctx: &Context) {
        self.steps += 1;
    }

    /// Each message, in a canonical order (the same on every run and every machine).
    fn receive(&mut self, msg: &Message<'_>) {
        // Sending (and replying) needs the "send" capability in manifest.json ("any": to anyone).
        if msg.request().is_some() {
            // A request from the host: \`rt.request(id, payload)\` resolves with this reply.
            let _ = reply(msg, &self.steps.to_le_bytes());
        } else if msg.kind == 1 {
            let _ = send(msg.from, 2, &self.steps.to_le_bytes());
        }
    }
}

export_agent!(${Type});
`,
    'manifest.json': JSON.stringify({ name, version: '0.1.0', abi: 2, capabilities: { send: 'any' } }, null, 2) + '\n',
    'build.mjs': `#!/usr/bin/env node
// node build.mjs: builds the agent (cargo build --release, for wasm32) and signs it with
// manifest.json and your publisher key into dist/${crate}.wasm.
// First, once:  npx lockstep keygen --out publisher.json   (keep it secret: it is in .gitignore)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const key = process.env.LOCKSTEP_KEY || join(here, 'publisher.json');
if (!existsSync(key)) {
  console.error(\`no publisher key at \${key}: run \\\`npx lockstep keygen --out publisher.json\\\` here first (once), or set LOCKSTEP_KEY\`);
  process.exit(1);
}
// Cargo says where it wrote the module (CARGO_TARGET_DIR and all).
const out = execFileSync('cargo', ['build', '--release', '--message-format=json-render-diagnostics'], {
  cwd: here, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20,
});
const wasm = out.split('\\n').filter(Boolean).map((l) => JSON.parse(l))
  .filter((m) => m.reason === 'compiler-artifact' && m.target.name === '${crate}')
  .flatMap((m) => m.filenames).find((f) => f.endsWith('.wasm'));
if (!wasm) {
  console.error('cargo built no .wasm: is the wasm32 target installed? \`rustup target add wasm32-unknown-unknown\`');
  process.exit(1);
}
mkdirSync(join(here, 'dist'), { recursive: true });
// The lockstep CLI of the installed package (the same as \`npx lockstep\`).
const require = createRequire(import.meta.url);
const cli = join(dirname(require.resolve('lockstep/package.json')), 'bin', 'lockstep.js');
execFileSync(process.execPath, [cli, 'sign', wasm, '--manifest', join(here, 'manifest.json'), '--key', key, '--out', join(here, 'dist', '${crate}.wasm')], { stdio: 'inherit' });
`,
    'run.mjs': `#!/usr/bin/env node
// node run.mjs: runs the signed agent (dist/${crate}.wasm, from \`node build.mjs\`) in a runtime that
// trusts your publisher key, sends it a message of kind 1 and prints its answer, then asks it a
// request and prints the reply.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { Runtime } = require('lockstep');
// Only the PUBLIC key: a runtime never needs the secret one.
const { publicKey } = JSON.parse(readFileSync(new URL('./publisher.json', import.meta.url), 'utf8'));
const rt = new Runtime({ workers: 1, seed: 1, trustedKeys: [publicKey] });
const id = rt.spawn(fileURLToPath(new URL('./dist/${crate}.wasm', import.meta.url)));
rt.tick(3);
rt.send(id, 'hello', { kind: 1 });
rt.tick();
for (const m of rt.drainMessages()) console.log(\`agent \${m.from} answered kind \${m.kind}: \${m.payload.readBigUInt64LE()} steps\`);
// A request: sent, then ticked (off the event loop) until the agent's reply comes.
const reply = await rt.request(id, 'how many steps?', { timeoutTicks: 10 });
console.log(\`agent \${reply.from} replied to a request: \${reply.payload.readBigUInt64LE()} steps\`);
const info = rt.inspect(id);
console.log(\`state \${info.state}, memory \${info.memoryBytes} bytes, tick hash \${rt.stateHash()}\`);
rt.close();
`,
    '.gitignore': '/target\n/dist\n# Your secret publisher key: never commit it.\npublisher.json\n',
    'README.md': `# ${name}

A [lockstep](https://www.npmjs.com/package/lockstep) agent in Rust (lockstep's README and docs/ are in the
installed package: node_modules/lockstep/).

\`\`\`sh
npx lockstep keygen --out publisher.json   # once: your publisher key pair (keep it secret)
node build.mjs                              # cargo build --release (wasm32) + lockstep sign → dist/${crate}.wasm
node run.mjs                                # spawn it, send it a message and a request, print the answers
\`\`\`

Needs Rust with the wasm32 target: \`rustup target add wasm32-unknown-unknown\`.

- \`src/lib.rs\`: the agent (the \`Agent\` trait: \`init\`, \`step\`, \`receive\`, \`shutdown\`). It answers
  requests: on the host, \`await rt.request(id, payload)\` resolves with what it passes to
  \`reply(msg, body)\` (docs/ABI.md, "Requests", in the lockstep package).
- \`manifest.json\`: what it may do, signed with it. Every host import the module uses needs its
  capability (\`send\`, \`infer\`, \`log\`, \`random\`, \`clock\`), or runtimes refuse it
  (\`E_UNDECLARED_IMPORT\`); \`lockstep sign\` warns when one is missing. See docs/SECURITY.md in
  the lockstep package.
- \`.cargo/config.toml\`: builds for \`wasm32-unknown-unknown\` with a 64 KiB stack (an idle agent
  then takes 192 KiB of memory, not over 1 MiB).
- A runtime admits the signed module when it trusts your public key:
  \`new Runtime({ trustedKeys: ['<publicKey from publisher.json>'] })\`. For a quick try of an
  unsigned build, \`new Runtime({ devMode: true })\` admits unsigned modules (loudly).
`,
  };
}

/** Writes the crate into `<cwd>/<name>`; refuses a bad name or an existing path. Returns its path. */
function newAgent(name, { cwd = process.cwd(), pkgRoot = resolve(__dirname, '..') } = {}) {
  if (typeof name !== 'string' || !/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(name) || RESERVED.has(name.toLowerCase())) {
    throw new LockstepError('E_USAGE', `lockstep new agent: ${JSON.stringify(name)} is not a usable crate name: a letter, then letters, digits, - or _ (at most 64), not a Rust keyword or a standard crate name`);
  }
  const dir = join(cwd, name);
  if (existsSync(dir)) {
    throw new LockstepError('E_EXISTS', `lockstep new agent: ${dir} already exists; refusing to overwrite it. Choose another name or remove it`);
  }
  const sdk = join(pkgRoot, 'guest', 'sdk');
  if (!existsSync(join(sdk, 'Cargo.toml'))) {
    throw new LockstepError('E_IO', `lockstep new agent: the Rust SDK is not at ${sdk}; reinstall lockstep`);
  }
  // Relative when the package is installed in this project (node_modules of the directory or an
  // ancestor: the crate and the project move together), absolute otherwise.
  const project = pkgRoot.split(`${sep}node_modules${sep}`)[0];
  const inProject = cwd === project || cwd.startsWith(project + sep);
  const sdkPath = portable(inProject ? relative(dir, sdk) : sdk);
  for (const [file, text] of Object.entries(files(name, sdkPath, pkgRoot))) {
    mkdirSync(join(dir, file, '..'), { recursive: true });
    writeFileSync(join(dir, file), text, { flag: 'wx' });
  }
  return { dir, sdk, transient: /[\\/]_npx[\\/]/.test(pkgRoot) };
}

module.exports = { newAgent };
