//! `replay`, on the calling thread or on libuv's thread pool.
//!
//! Both admit only modules signed by `trusted_keys` (or unsigned ones with `dev_mode`, if the
//! log was recorded in development mode): a log never grants itself trust. Both call
//! `on_progress(ticks verified so far)` every 100 ticks. index.js wraps `on_progress` so that
//! it never throws into the binding (a callback's error is kept there and rethrown after the
//! replay): one that reaches the binding anyway is a bug, E_INTERNAL from `replay`, ignored by
//! `replay_async` (whose calls run on the JS thread after the replay has moved on).

use lockstep_core::{self as core, RuntimeConfig};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue};
use napi_derive::napi;

use crate::convert::{keys_arg, ReplayReport};
use crate::error::{internal, to_napi, to_status_error, BindError, Code, Result};

/// Progress is reported every this many ticks.
const PROGRESS_EVERY: u64 = 100;

fn trust(trusted_keys: &[String], dev_mode: bool) -> Result<core::ReplayTrust> {
    Ok(core::ReplayTrust { trusted_keys: keys_arg("options.trustedKeys", trusted_keys)?, dev_mode })
}

fn workers(w: Option<u32>) -> usize {
    w.map(|w| w as usize).unwrap_or_else(|| RuntimeConfig::default().workers)
}

fn callback_failed(e: impl std::fmt::Display) -> napi::Error<Code> {
    to_napi(BindError { code: "E_INTERNAL", message: format!("internal error (a lockstep bug; please report it): onProgress threw into the binding: {e}") })
}

/// Replays `log` (from `snapshot`, for a log a restored runtime recorded: docs/SNAPSHOT.md).
fn run_replay(
    log: &[u8],
    snapshot: Option<&[u8]>,
    workers: usize,
    trust: &core::ReplayTrust,
    progress: impl FnMut(u64),
) -> std::result::Result<core::ReplayReport, core::LockstepError> {
    match snapshot {
        Some(s) => core::replay_from(s, log, workers, Some(trust), progress),
        None => core::replay_trusting(log, workers, Some(trust), progress),
    }
}

/// Re-runs a recorded session on the calling thread and verifies every tick hash and
/// checkpoint.
#[napi(catch_unwind)]
pub fn replay(
    log: Uint8Array,
    workers: Option<u32>,
    on_progress: Option<Function<f64, ()>>,
    trusted_keys: Vec<String>,
    dev_mode: bool,
    snapshot: Option<Uint8Array>,
) -> Result<ReplayReport> {
    let trust = trust(&trusted_keys, dev_mode)?;
    // With a callback, the log and snapshot are read from copies: `onProgress` is caller code,
    // which could shrink, transfer or detach their buffers while the replay reads them in place
    // (a resizable ArrayBuffer shrunk from the callback crashed the process: SIGSEGV).
    let owned = on_progress.as_ref().map(|_| (log.to_vec(), snapshot.as_deref().map(<[u8]>::to_vec)));
    let (log, snapshot): (&[u8], Option<&[u8]>) = match &owned {
        Some((log, snapshot)) => (log, snapshot.as_deref()),
        None => (&log, snapshot.as_deref()),
    };
    let mut callback_error = None;
    let report = run_replay(log, snapshot, self::workers(workers), &trust, |ticks| {
        if ticks % PROGRESS_EVERY == 0 && callback_error.is_none() {
            if let Some(f) = on_progress.as_ref() {
                callback_error = f.call(ticks as f64).err();
            }
        }
    })
    .map_err(to_napi)?;
    match callback_error {
        Some(e) => Err(callback_failed(e)),
        None => Ok(report.into()),
    }
}

/// The progress callback as the thread pool calls it: `(ticksVerified) => void`.
type ProgressFn = ThreadsafeFunction<f64, UnknownReturnValue, f64, Status, false>;

/// The last call of `on_progress` in `replay_async`: "no progress call follows". Calls run on
/// the JS thread in the order they were queued, so when this one runs, every progress call
/// has; index.js settles its promise only then.
pub const PROGRESS_DONE: f64 = -1.0;

/// `replay` on libuv's thread pool. Progress calls are queued to the JS thread as the replay
/// goes, then `PROGRESS_DONE`; the task never waits for the JS thread (red team 10: it waited
/// for its queued calls to run, and `process.exit()` joins libuv's pool before running them:
/// the process hung forever). index.js waits for `PROGRESS_DONE` before it settles, so every
/// `onProgress` call still happens before its promise resolves or rejects.
pub struct ReplayTask {
    log: Vec<u8>,
    snapshot: Option<Vec<u8>>,
    workers: usize,
    trust: core::ReplayTrust,
    on_progress: Option<ProgressFn>,
}

impl ReplayTask {
    fn run(&self) -> std::result::Result<core::ReplayReport, core::LockstepError> {
        run_replay(&self.log, self.snapshot.as_deref(), self.workers, &self.trust, |ticks| {
            if ticks % PROGRESS_EVERY == 0 {
                if let Some(f) = self.on_progress.as_ref() {
                    f.call(ticks as f64, ThreadsafeFunctionCallMode::NonBlocking);
                }
            }
        })
    }
}

impl Task for ReplayTask {
    /// The report or the error (with its code): `resolve` turns either into the settlement.
    type Output = std::result::Result<core::ReplayReport, napi::Error<Code>>;
    type JsValue = ReplayReport;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        // On a libuv thread, outside any napi callback: a panic unwinding out of it would
        // abort Node, so it is caught here.
        let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run())).map_err(internal).and_then(|r| r.map_err(to_napi));
        // Queued after every progress call (whatever happened), never waited for.
        if let Some(f) = self.on_progress.as_ref() {
            f.call(PROGRESS_DONE, ThreadsafeFunctionCallMode::NonBlocking);
        }
        Ok(output)
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map(ReplayReport::from).map_err(|e| to_status_error(&env, e))
    }
}

/// `replay` off the event loop: the same checks, report and errors, as a promise. The log is
/// copied (JS may reuse its buffer meanwhile). `on_progress` gets the ticks verified every 100
/// ticks, then `PROGRESS_DONE` (-1) once, whatever the outcome, as its last call.
#[napi(catch_unwind, ts_return_type = "Promise<ReplayReport>")]
pub fn replay_async(
    log: Uint8Array,
    workers: Option<u32>,
    on_progress: Option<ThreadsafeFunction<f64, UnknownReturnValue, f64, Status, false>>,
    trusted_keys: Vec<String>,
    dev_mode: bool,
    snapshot: Option<Uint8Array>,
) -> Result<AsyncTask<ReplayTask>> {
    let trust = trust(&trusted_keys, dev_mode)?;
    Ok(AsyncTask::new(ReplayTask { log: log.to_vec(), snapshot: snapshot.map(|s| s.to_vec()), workers: self::workers(workers), trust, on_progress }))
}
