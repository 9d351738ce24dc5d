'use strict';
// Argument checks shared by index.js and ring.js: every public entry point checks each
// argument's type and range here, before it reaches napi (whose conversions either throw
// untyped errors or wrap numbers silently: 2^32 + 3 as a u32 is 3). A failure is a
// LockstepError (E_INVALID_ARGUMENT unless the caller says otherwise) whose message names
// the argument, what it must be and what it was.
const { LockstepError } = require('./errors.js');

const MAX_U32 = 2 ** 32 - 1;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** A short, safe description of a value for an error message. */
function describe(x) {
  if (x === null) return 'null';
  if (x === undefined) return 'undefined';
  switch (typeof x) {
    case 'string': return JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}…` : x);
    case 'number': return String(x);
    case 'bigint': return `${x}n (a BigInt)`;
    case 'boolean': return String(x);
    case 'function': return 'a function';
    case 'symbol': return 'a symbol';
    default:
      if (Array.isArray(x)) return `an array of ${x.length}`;
      if (ArrayBuffer.isView(x)) return `a ${Object.prototype.toString.call(x).slice(8, -1)} of ${x.length ?? x.byteLength}`;
      return `an object (${(x.constructor && x.constructor.name) || 'Object'})`;
  }
}

function fail(name, what, got, code = 'E_INVALID_ARGUMENT') {
  return new LockstepError(code, `${name} must be ${what}; got ${describe(got)}`);
}

/** An integer in min..max (numbers only: no strings, no BigInts, no fractions). */
function int(name, x, min, max, code) {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) {
    throw fail(name, `an integer in ${min}..${max}`, x, code);
  }
  return x;
}

/** An optional integer: `dflt` when undefined. */
function optInt(name, x, min, max, dflt, code) {
  return x === undefined ? dflt : int(name, x, min, max, code);
}

function bool(name, x, code) {
  if (typeof x !== 'boolean') throw fail(name, 'true or false', x, code);
  return x;
}

function str(name, x, code) {
  if (typeof x !== 'string') throw fail(name, 'a string', x, code);
  return x;
}

function fn(name, x, code) {
  if (typeof x !== 'function') throw fail(name, 'a function', x, code);
  return x;
}

function oneOf(name, x, values, dflt, code) {
  if (x === undefined && dflt !== undefined) return dflt;
  if (!values.includes(x)) throw fail(name, `one of ${values.map((s) => JSON.stringify(s)).join(', ')}`, x, code);
  return x;
}

/**
 * A copy of an array of strings, each element read once (as forEach read them: holes stay
 * holes). Use the copy: reading the caller's array again (a getter-defined index, a Proxy)
 * could answer something other than what was checked.
 */
function stringArray(name, x, code) {
  if (!Array.isArray(x)) throw fail(name, 'an array of strings', x, code);
  const n = x.length;
  const out = [];
  for (let i = 0; i < n; i++) {
    if (i in x) out[i] = str(`${name}[${i}]`, x[i], code);
  }
  if (out.length !== n && Number.isSafeInteger(n) && n <= MAX_U32) out.length = n; // trailing holes
  return out;
}

/**
 * A plain options object (or undefined → {}) whose keys are all in `keys`, as a copy in which
 * each option was read once: callers check and use (and spread) the copy, so a getter's or a
 * Proxy's second answer is never the one used unchecked.
 */
function options(name, x, keys, code) {
  if (x === undefined || x === null) return {};
  if (typeof x !== 'object' || Array.isArray(x) || ArrayBuffer.isView(x)) throw fail(name, 'an object', x, code);
  const own = Object.keys(x);
  for (const k of own) {
    if (!keys.includes(k)) {
      throw new LockstepError(code ?? 'E_INVALID_ARGUMENT', `${name} has an unknown key "${k}"; valid keys: ${keys.join(', ')}`);
    }
  }
  return readOnce(x, own, keys);
}

/**
 * `x`'s options read once each: its own enumerable keys `own` (in order), then any other of
 * `keys` it answers (inherited, non-enumerable) as non-enumerable properties, so the copy reads
 * like `x` (`copy.key`) and spreads like it (`{ ...copy }`: own enumerable keys only).
 */
function readOnce(x, own, keys) {
  const out = {};
  for (const k of own) {
    const value = x[k];
    if (k === '__proto__') Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
    else out[k] = value;
  }
  for (const k of keys) {
    if (Object.hasOwn(out, k)) continue;
    const value = x[k];
    if (value !== undefined) Object.defineProperty(out, k, { value, enumerable: false, writable: true, configurable: true });
  }
  return out;
}

/**
 * An agent id: a non-negative integer (ids from spawn() are small and exact). Ids above 2^53
 * are not exact as JS numbers; 2^64 (the nearest double to 2^64 - 1) stands for 2^64 - 1.
 */
function id(name, x) {
  if (typeof x !== 'number') {
    // Named by its type: an id read from text ("1") or a BigInt is not coerced.
    const type = x === null ? 'null' : Array.isArray(x) ? 'an array' : typeof x === 'object' ? 'an object' : `a ${typeof x}`;
    throw fail(name, `an agent id: a number, as returned by spawn() (not ${type})`, x);
  }
  if (!Number.isInteger(x) || x < 0 || x > 2 ** 64) {
    throw fail(name, 'an agent id (a non-negative integer, as returned by spawn())', x);
  }
  return x;
}

/** JSON text of an object argument (a cycle or a BigInt inside is a typed error, not a TypeError). */
function json(name, x, code) {
  try {
    return JSON.stringify(x);
  } catch (e) {
    throw new LockstepError(code ?? 'E_INVALID_ARGUMENT', `${name} must be JSON-serialisable: ${e.message.split('\n')[0]}`);
  }
}

module.exports = { json, MAX_U32, MAX_SAFE, describe, fail, int, optInt, bool, str, fn, oneOf, stringArray, options, readOnce, id };
