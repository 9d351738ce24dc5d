//! `replay`.
//!
//! It admits only modules signed by `trusted_keys` (or unsigned ones with `dev_mode`, if the
//! log was recorded in development mode): a log never grants itself trust. It calls
//! `on_progress(ticks verified so far)` every 100 ticks. index.js wraps `on_progress` so that
//! it never throws into the binding (a callback's error is kept there and rethrown after the
//! replay); an error from the callback here is a bug (E_INTERNAL).

use lockstep_core::{self as core, RuntimeConfig};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::convert::{keys_arg, ReplayReport};
use crate::error::{to_napi, BindError, Code, Result};

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
