// `npm run demo`: the gossip demo, a DAG workflow (demo/wordcount.mjs: map → shuffle → reduce),
// the inference demo, then agents chatting through a language model (demo/chat.mjs), each in
// its own process.
// `npm run demo -- --ui`: the gossip demo with the live dashboard instead (until Ctrl-C).
// Other arguments go to the gossip demo (e.g. `npm run demo -- --agents 2000`).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
let child = null;
// Ctrl-C reaches the child too (same process group); a signal sent to this process alone is passed on.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child?.kill(sig));

function run(file, a) {
  return new Promise((resolve) => {
    child = spawn(process.execPath, [fileURLToPath(new URL(file, import.meta.url)), ...a], { stdio: 'inherit' });
    child.on('exit', (code, signal) => {
      child = null;
      if (code !== 0) process.exit(code ?? (signal ? 1 : 0));
      resolve();
    });
  });
}
if (args.includes('--ui')) {
  await run('./gossip.mjs', args);
} else {
  await run('./gossip.mjs', args);
  await run('./wordcount.mjs', []);
  await run('./classify.mjs', []);
  await run('./chat.mjs', []);
}
