'use strict';
// The one error class of the JS API (index.js and ring.js): `code` is stable
// (E_UNKNOWN_AGENT, E_RING...), `message` says what to do.
class LockstepError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'LockstepError';
    this.code = code;
  }
}

module.exports = { LockstepError };
