// Red-team findings in the JS layer (issue 9 follow-up): each test guards one hole found by
// calling the entry points with odd arguments.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, LockstepError, exampleAgent, EXAMPLES_PUBLIC_KEY, replay, verify, inspect } = require('../index.js');

const echo = readFileSync(exampleAgent('echo'));

/** An ArrayBuffer transferred away (as postMessage to a worker does), and a view of one. */
function detachedBuffer() {
  const ab = new ArrayBuffer(16);
  structuredClone(ab, { transfer: [ab] });
  return ab;
}
function viewOfDetached(Typed = Uint8Array) {
  const ab = new ArrayBuffer(16);
  const view = new Typed(ab);
  structuredClone(ab, { transfer: [ab] });
  return view;
}

test('a detached ArrayBuffer (or a view of one) is E_INVALID_ARGUMENT everywhere, never a raw TypeError or an empty payload', () => {
  const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
  const id = rt.spawn(echo);
  const args = [
    ['ArrayBuffer', detachedBuffer],
    ['Uint8Array', () => viewOfDetached(Uint8Array)],
    ['Float64Array', () => viewOfDetached(Float64Array)],
    ['DataView', () => viewOfDetached(DataView)],
  ];
  for (const [what, make] of args) {
    for (const [label, call] of [
      ['send', (x) => rt.send(id, x)],
      ['loadModule', (x) => rt.loadModule(x)],
      ['replay', (x) => replay(x)],
      ['verify', (x) => verify(x, [EXAMPLES_PUBLIC_KEY])],
      ['inspect', (x) => inspect(x)],
    ]) {
      assert.throws(() => call(make()), (e) => {
        assert.ok(e instanceof LockstepError, `${label}(detached ${what}): ${e && e.stack}`);
        assert.equal(e.code, 'E_INVALID_ARGUMENT', `${label}(detached ${what}): ${e.message}`);
        assert.match(e.message, /detached/);
        return true;
      }, `${label}(detached ${what}) was accepted`);
    }
  }
  // Nothing was queued: the agent gets no empty message.
  rt.tick();
  assert.equal(rt.drainMessages().length, 0);
  rt.close();
});
