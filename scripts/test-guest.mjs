#!/usr/bin/env node
// Runs the guest SDK's unit tests (guest/sdk), which `cargo test --workspace` at the root does
// not reach: the guest is its own workspace, built for wasm32 by default (guest/.cargo), where
// tests cannot run. They run here on the host's target instead.
import { execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const guest = join(dirname(fileURLToPath(import.meta.url)), '..', 'guest');
const host = /^host: (\S+)$/m.exec(execFileSync('rustc', ['-vV'], { encoding: 'utf8' }))?.[1];
if (!host) {
  console.error('[test-guest] cannot tell the host target from `rustc -vV`');
  process.exit(1);
}
try {
  execFileSync('cargo', ['test', '--release', '--quiet', '-p', 'lockstep-sdk', '--target', host], { cwd: guest, stdio: 'inherit' });
} catch (e) {
  console.error(`[test-guest] the guest SDK's tests failed (exit ${e.status})`);
  process.exit(1);
}
