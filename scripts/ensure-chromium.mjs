#!/usr/bin/env node
// Finds a Chromium for the dashboard's browser test (__test__/dashboard-e2e.test.mjs), and on
// Debian/Ubuntu as root installs the distribution's `chromium` package when none is found
// (`npm test` runs this first; CI is root). LOCKSTEP_CHROMIUM names a browser to use instead.
//
// Exit status: 0 when a browser is there (its path is printed); when none is and it cannot be
// installed, 1 under CI (process.env.CI: the browser test must not be skipped there) and 0
// elsewhere, with a note (the browser test is then skipped, loudly).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable', '/snap/bin/chromium', '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome', '/Applications/Chromium.app/Contents/MacOS/Chromium'];

/** The browser's path, or null. */
export function findChromium() {
  const own = process.env.LOCKSTEP_CHROMIUM;
  if (own) return existsSync(own) ? own : null;
  for (const c of CANDIDATES) if (existsSync(c)) return c;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

/** findChromium(), installing Debian's `chromium` with apt-get first if none is found and we are root. */
export function ensureChromium({ log = (s) => console.error(s) } = {}) {
  let found = findChromium();
  // A browser named by LOCKSTEP_CHROMIUM is used or missing, never replaced by an install.
  if (found || process.env.LOCKSTEP_CHROMIUM || process.platform !== 'linux' || typeof process.getuid !== 'function' || process.getuid() !== 0) return found;
  if (spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status !== 0) return null;
  log('[chromium] no browser found: apt-get install -y chromium fonts-dejavu-core (for the dashboard browser test)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'chromium', 'fonts-dejavu-core'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  } catch (e) {
    log(`[chromium] apt-get failed (${e.message.split('\n')[0]})`);
    return null;
  }
  found = findChromium();
  return found;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const path = ensureChromium();
  if (path) {
    console.error(`[chromium] ${path}`);
  } else if (process.env.CI) {
    console.error('[chromium] FAILED: no Chromium, and it could not be installed (apt-get install chromium, as root). CI runs the dashboard browser test: it is not skipped. Set LOCKSTEP_CHROMIUM to a browser, or install one.');
    process.exit(1);
  } else {
    console.error('[chromium] no Chromium found (Debian: `apt-get install chromium`, or set LOCKSTEP_CHROMIUM): the dashboard browser test will be SKIPPED');
  }
}
