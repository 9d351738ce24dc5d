// The benchmarks are not run by CI (npm run bench takes minutes): what of them can break when the
// agents change is checked here instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { plainV8 } from '../benches/v8-compare.mjs';
const require = createRequire(import.meta.url);
const { exampleAgent } = require('../index.js');

// The V8 comparison instantiates the counter with imports of its own: when the SDK's `send`
// moved to the `send_plain` import, `npm run bench` stopped there with a LinkError.
test('the V8 comparison links every import of the example counter', () => {
  const bytes = readFileSync(exampleAgent('counter'));
  const tick = plainV8(bytes, 3);
  assert.doesNotThrow(() => {
    tick();
    tick();
  });
});
