#!/usr/bin/env node
// `npm run pack` (build, then this): the two tarballs a local install needs, as they would be
// published —
//   lockstep-<version>.tgz            the JS package (with its optionalDependencies, added by
//                                     scripts/prepublish.mjs as the release workflow does)
//   lockstep-<triple>-<version>.tgz   this platform's native addon (npm/<triple> + the built .node)
// Install both into a project:  npm install ./lockstep-0.1.0.tgz ./lockstep-linux-x64-gnu-0.1.0.tgz
// The main tarball alone does not run: the addon is only in the platform package.
//   node scripts/pack.mjs [--out <dir>] [--quiet]     (default: the repository root)
// scripts/package-test.mjs packs with this too.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { platformTriple } = require('./platform.cjs');
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** Packs both tarballs into `out`; returns their paths: { main, platform }. */
export function pack({ out = root, quiet = false } = {}) {
  const triple = platformTriple();
  const log = (line) => quiet || console.error(`[pack] ${line}`);
  const sh = (args, cwd) => execFileSync(npm, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], shell: process.platform === 'win32' }).trim().split('\n').pop();
  const addon = join(root, `lockstep.${triple}.node`);
  if (!existsSync(join(root, 'npm', triple))) throw new Error(`no platform package folder npm/${triple}: this platform is not one lockstep packages`);
  if (!existsSync(addon)) throw new Error(`no addon at ${addon}: run \`npm run build\` first (or \`npm run pack\`, which builds)`);
  mkdirSync(out, { recursive: true });
  const staging = mkdtempSync(join(tmpdir(), 'lockstep-pack-'));
  try {
    // The platform package: its folder plus the built addon.
    const platformDir = join(staging, `lockstep-${triple}`);
    cpSync(join(root, 'npm', triple), platformDir, { recursive: true });
    cpSync(addon, join(platformDir, `lockstep.${triple}.node`));
    const platform = join(out, sh(['pack', '--silent', '--pack-destination', out], platformDir));
    // The main package as it would be published: packed, given its optionalDependencies by
    // scripts/prepublish.mjs, packed again.
    const first = sh(['pack', '--silent', '--pack-destination', staging], root);
    execFileSync('tar', ['xzf', first, '-C', staging], { cwd: staging });
    execFileSync(process.execPath, [join(root, 'scripts', 'prepublish.mjs'), join(staging, 'package', 'package.json')], { stdio: ['ignore', 'ignore', quiet ? 'ignore' : 'inherit'] });
    const published = JSON.parse(readFileSync(join(staging, 'package', 'package.json'), 'utf8'));
    if (published.optionalDependencies?.[`lockstep-${triple}`] !== published.version) throw new Error('prepublish did not add the platform packages');
    const main = join(out, sh(['pack', '--silent', '--pack-destination', out], join(staging, 'package')));
    for (const f of [main, platform]) if (!existsSync(f)) throw new Error(`npm pack did not write ${f}`);
    log(`wrote ${main}`);
    log(`wrote ${platform}`);
    return { main, platform };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--out');
  const out = i > 0 ? resolve(process.argv[i + 1] ?? '.') : root;
  const { main, platform } = pack({ out, quiet: process.argv.includes('--quiet') });
  const rel = (f) => {
    const r = relative(process.cwd(), f);
    return r.startsWith('..') ? f : `./${r}`;
  };
  console.log(`Install both into a project (the addon is in the second one):\n  npm install ${rel(main)} ${rel(platform)}`);
}
