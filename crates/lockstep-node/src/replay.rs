//! `replay`, on the calling thread or on libuv's thread pool.
//!
//! Both admit only modules signed by `trusted_keys` (or unsigned ones with `dev_mode`, if the
//! log was recorded in development mode): a log never grants itself trust. Both call
//! `on_progress(ticks verified so far)` every 100 ticks. index.js wraps `on_progress` so that
//! it never throws into the binding (a callback's error is kept there and rethrown after the
//! replay): one that reaches the binding anyway is a bug, E_INTERNAL from `replay`, ignored by
//! `replay_async` (whose calls run on the JS thread after the replay has moved on).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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

/// Re-runs a recorded session on the calling thread and verifies every tick hash and
/// checkpoint.
#[napi(catch_unwind)]
pub fn replay(
    log: Uint8Array,
    workers: Option<u32>,
    on_progress: Option<Function<f64, ()>>,
    trusted_keys: Vec<String>,
    dev_mode: bool,
) -> Result<ReplayReport> {
    let trust = trust(&trusted_keys, dev_mode)?;
    let mut callback_error = None;
    let report = core::replay_trusting(&log, self::workers(workers), Some(&trust), |ticks| {
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

/// Progress calls queued for the JS thread and not yet finished there.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    done: Condvar,
}

/// One queued progress call: counted while it lives, and it lives until the call has run on
/// the JS thread or was dropped unrun (the environment going away, or the queue refusing it).
struct Pending(Arc<InFlight>);

impl Pending {
    fn new(in_flight: &Arc<InFlight>) -> Self {
        *in_flight.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Pending(in_flight.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0.done.notify_all();
    }
}

/// `replay` on libuv's thread pool. Progress calls are queued to the JS thread as the replay
/// goes; the task waits for the last of them before it settles, so every `onProgress` call
/// happens before the promise resolves or rejects.
pub struct ReplayTask {
    log: Vec<u8>,
    workers: usize,
    trust: core::ReplayTrust,
    on_progress: Option<ProgressFn>,
}

impl ReplayTask {
    fn run(&self) -> std::result::Result<core::ReplayReport, core::LockstepError> {
        let in_flight = Arc::new(InFlight::default());
        let result = core::replay_trusting(&self.log, self.workers, Some(&self.trust), |ticks| {
            if ticks % PROGRESS_EVERY == 0 {
                if let Some(f) = self.on_progress.as_ref() {
                    let pending = Pending::new(&in_flight);
                    f.call_with_return_value(ticks as f64, ThreadsafeFunctionCallMode::NonBlocking, move |_, _| {
                        drop(pending);
                        Ok(())
                    });
                }
            }
        });
        if let Some(f) = self.on_progress.as_ref() {
            // A call dropped unrun at teardown may leak its `Pending` (napi frees nothing
            // then): stop waiting once the function is aborted.
            let mut count = in_flight.count.lock().unwrap_or_else(|p| p.into_inner());
            while *count > 0 && !f.aborted() {
                count = in_flight.done.wait_timeout(count, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        result
    }
}

impl Task for ReplayTask {
    /// The report or the error (with its code): `resolve` turns either into the settlement.
    type Output = std::result::Result<core::ReplayReport, napi::Error<Code>>;
    type JsValue = ReplayReport;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        // On a libuv thread, outside any napi callback: a panic unwinding out of it would
        // abort Node, so it is caught here.
        Ok(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run())).map_err(internal).and_then(|r| r.map_err(to_napi)))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map(ReplayReport::from).map_err(|e| to_status_error(&env, e))
    }
}

/// `replay` off the event loop: the same checks, report and errors, as a promise. The log is
/// copied (JS may reuse its buffer meanwhile).
#[napi(catch_unwind, ts_return_type = "Promise<ReplayReport>")]
pub fn replay_async(
    log: Uint8Array,
    workers: Option<u32>,
    on_progress: Option<ThreadsafeFunction<f64, UnknownReturnValue, f64, Status, false>>,
    trusted_keys: Vec<String>,
    dev_mode: bool,
) -> Result<AsyncTask<ReplayTask>> {
    let trust = trust(&trusted_keys, dev_mode)?;
    Ok(AsyncTask::new(ReplayTask { log: log.to_vec(), workers: self::workers(workers), trust, on_progress }))
}
