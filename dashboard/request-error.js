'use strict';

/**
 * A protocol error: the reply is { ok: false, error: { code, message, ...extra } }
 * (docs/DASHBOARD.md, "Error codes"). Thrown by the server's handlers and by time travel, on
 * either side of its worker thread.
 */
class RequestError extends Error {
  constructor(code, message, extra) {
    super(message);
    this.code = code;
    this.extra = extra;
  }
}

module.exports = { RequestError };
