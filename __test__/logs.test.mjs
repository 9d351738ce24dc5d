import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Runtime, setLogger, exampleAgent, EXAMPLES_PUBLIC_KEY, keygen, sign } = require('../index.js');

test('runtime logs reach a JS sink, filtered by level', () => {
  const lines = [];
  setLogger((l) => lines.push(l), { level: 'warn' });
  try {
    const rt = new Runtime({ workers: 1, trustedKeys: [EXAMPLES_PUBLIC_KEY] });
    const spin = rt.spawn(exampleAgent('adv-spin'));
    rt.tick();
    assert.ok(lines.some((l) => l.level === 'warn' && l.target === 'lockstep::runtime' && l.message.includes(`agent ${spin} fuel_exhausted`)), JSON.stringify(lines));
    assert.throws(() => rt.spawn(sign(exampleAgent('counter'), { name: 'c', version: '1', abi: 1, capabilities: { send: 'any' } }, keygen().secretKey)), { code: 'E_UNTRUSTED_KEY' });
    assert.ok(lines.some((l) => l.target === 'lockstep::security' && l.message.includes('module refused')));
    assert.ok(lines.every((l) => l.level === 'warn' || l.level === 'error'), 'nothing below warn');
    lines.length = 0;
    setLogger(null);
    rt.spawn(exampleAgent('adv-spin'));
    rt.tick();
    assert.equal(lines.length, 0, 'off');
  } finally {
    setLogger(null);
  }
});
