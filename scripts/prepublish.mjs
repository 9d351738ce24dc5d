#!/usr/bin/env node
// napi-rs convention: at publish time the main package lists every per-platform package (npm/*)
// as an optionalDependency at its own version, so npm installs just the one matching the user's
// platform. Not in the repository's package.json: unpublished packages would break `npm ci`.
//   node scripts/prepublish.mjs [path/to/package.json]   (default: ./package.json)
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const target = process.argv[2] ?? join(root, 'package.json');
const pkg = JSON.parse(readFileSync(target, 'utf8'));
pkg.optionalDependencies = Object.fromEntries(
  readdirSync(join(root, 'npm')).map((triple) => [`lockstep-${triple}`, pkg.version]),
);
writeFileSync(target, JSON.stringify(pkg, null, 2) + '\n');
console.error(`[prepublish] ${target}: optionalDependencies ${Object.keys(pkg.optionalDependencies).join(', ')}`);
