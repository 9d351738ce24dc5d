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

test('the native ring attach refuses a Uint8Array over a plain (detachable) ArrayBuffer', (t) => {
  // The addon itself (what index.js wraps): attachRings() always passes SharedArrayBuffers,
  // but the native methods kept a raw pointer into whatever they were given; detaching a
  // plain ArrayBuffer afterwards freed that memory under the core (SIGSEGV at the next tick).
  const { existsSync } = require('node:fs');
  const path = process.env.LOCKSTEP_NATIVE_PATH ?? new URL(`../lockstep.${process.platform}-${process.arch}-gnu.node`, import.meta.url).pathname;
  if (process.platform !== 'linux' || !existsSync(path)) return t.skip('needs the linux addon');
  const native = require(path);
  const rt = new native.NativeRuntime({ workers: 1, devMode: true, inference: { searchRoots: [] } });
  const cap = 1 << 12;
  for (const method of ['attachInboundRing', 'attachOutboundRing']) {
    const ab = new ArrayBuffer(192 + cap);
    const u32 = new Uint32Array(ab, 0, 3);
    u32[0] = 0x4752534c; u32[1] = 1; u32[2] = cap; // a valid ring header
    assert.throws(() => rt[method](new Uint8Array(ab)), { code: 'E_RING' }, `${method} accepted a plain ArrayBuffer`);
    assert.throws(() => rt[method]({}), { code: 'E_RING' }, `${method} accepted an object`);
    // A SharedArrayBuffer ring is still accepted.
    const sab = new SharedArrayBuffer(192 + cap);
    new Uint32Array(sab, 0, 3).set([0x4752534c, 1, cap]);
    rt[method](new Uint8Array(sab));
  }
  rt.close();
});
