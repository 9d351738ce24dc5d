#!/usr/bin/env node
'use strict';
// npx lockstep keygen | sign | verify | inspect — publisher keys and signed agent modules.
const { readFileSync, writeFileSync } = require('node:fs');
const { keygen, sign, verify, inspect, LockstepError } = require('../index.js');

const USAGE = `usage:
  lockstep keygen [--out key.json]                 new publisher key pair (keep secretKey secret)
  lockstep sign <module.wasm> --manifest <m.json> --key <key.json> [--out signed.wasm]
  lockstep verify <module.wasm> --trust <publicKeyHex>[,<publicKeyHex>...]
  lockstep inspect <module.wasm>                   manifest, publisher, imports`;

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

function main(argv) {
  const [command, ...args] = argv;
  switch (command) {
    case 'keygen': {
      const k = keygen();
      const out = arg(args, '--out');
      if (out) {
        writeFileSync(out, JSON.stringify(k, null, 2) + '\n', { mode: 0o600 });
        console.log(`wrote ${out}; public key: ${k.publicKey}`);
      } else console.log(JSON.stringify(k, null, 2));
      return 0;
    }
    case 'sign': {
      const [module] = args;
      const manifest = arg(args, '--manifest');
      const key = arg(args, '--key');
      if (!module || !manifest || !key) throw usage();
      const secretKey = secretKeyFrom(key);
      const out = arg(args, '--out') ?? module;
      writeFileSync(out, sign(module, readText(manifest, '--manifest'), secretKey));
      console.log(`signed ${out}`);
      return 0;
    }
    case 'verify': {
      const [module] = args;
      const trust = arg(args, '--trust');
      if (!module || !trust) throw usage();
      const r = verify(module, trust.split(','));
      console.log(r.ok ? `ok: signed by ${r.publisher}` : `refused (${r.code}): ${r.message}`);
      return r.ok ? 0 : 1;
    }
    case 'inspect': {
      const [module] = args;
      if (!module) throw usage();
      console.log(JSON.stringify(inspect(module), null, 2));
      return 0;
    }
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

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  console.error(e && e.code === 'E_USAGE' ? e.message : `lockstep: ${e && e.code ? `${e.code}: ` : ''}${e && e.message}`);
  process.exitCode = 2;
}
