//! `tickAsync`: ticks on libuv's thread pool.
//!
//! The task takes the `Runtime` out of its `NativeRuntime` for as long as it runs (it owns it:
//! no lock, no sharing with the JS thread) and hands it back in `resolve`, on the JS thread,
//! just before the promise settles, through an [`Away`] slot the two share. Meanwhile every
//! other method of that runtime finds the slot still waiting and throws `E_BUSY`.
//!
//! - `close()` meanwhile is safe: it only marks the slot; the task drops the runtime when it
//!   is handed back (the rings' buffers, which the runtime views, stay referenced by the
//!   `NativeRuntime` until then).
//! - A panic on the pool is caught there (`E_INTERNAL`): the runtime stopped in the middle of
//!   a tick, so its state cannot be trusted; it is dropped and the runtime reads as closed,
//!   with that reason, never lost silently.
//! - A task dropped without `resolve` (the environment going away) hands the runtime back
//!   from `Drop`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use lockstep_core::{self as core, Runtime};
use napi::bindgen_prelude::*;

use crate::convert::TickReport;
use crate::error::{extended, internal, to_napi, to_status_error, Code};

/// What a running `tickAsync` and its runtime share.
#[derive(Default)]
pub struct Away {
    /// The runtime, once handed back (None after a panic, or when closed meanwhile).
    pub back: Option<Runtime>,
    /// The task handed back (or dropped) what it had.
    pub returned: bool,
    /// `close()` was called meanwhile: the task drops the runtime instead of handing it back.
    pub close_requested: bool,
    /// A panic on the pool lost the runtime: its message.
    pub panicked: Option<String>,
}

/// The timings, locked (a poisoned lock still holds valid sums).
pub fn lock_timings(t: &Mutex<TickTimings>) -> MutexGuard<'_, TickTimings> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// The slot, locked (a poisoned lock still holds a valid `Away`).
pub fn lock(away: &Mutex<Away>) -> MutexGuard<'_, Away> {
    away.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where the wall time of a runtime's `tickAsync` calls went, summed over its life
/// (`rt.tickTimings()`, ARCHITECTURE.md): a loop of `await tickAsync()` is
/// queue + compute + settle + between, call after call, so a cost anywhere shows up in one of
/// them (what the dashboard's overhead is made of, `benches/dashboard-conditions.mjs`).
#[derive(Default)]
pub struct TickTimings {
    pub calls: u64,
    /// From `tickAsync` to a pool thread starting the ticks.
    pub queue_ns: u128,
    /// The ticks themselves, on the pool thread.
    pub compute_ns: u128,
    /// From the ticks' end to the promise settling on the JS thread (it was busy, or waking).
    pub settle_ns: u128,
    /// From a settled `tickAsync` to the next `tickAsync` call (the JS thread's work between).
    pub between_ns: u128,
    /// When the last `tickAsync` settled (where the next `between` starts).
    pub last_settled: Option<Instant>,
}

impl TickTimings {
    /// A `tickAsync` call is being queued now.
    pub fn queued(&mut self, now: Instant) {
        if let Some(settled) = self.last_settled {
            self.between_ns += now.saturating_duration_since(settled).as_nanos();
        }
    }
}

pub struct TickTask {
    pub runtime: Option<Runtime>,
    pub n: u64,
    pub away: Arc<Mutex<Away>>,
    /// Test hook (LOCKSTEP_TEST_HOOKS=1): panic on the pool with this message.
    pub panic_with: Option<String>,
    /// When `tickAsync` queued it; when the pool started and ended the ticks.
    pub queued: Instant,
    pub ran: Option<(Instant, Instant)>,
    /// The runtime's next event sequence number after the ticks (the report's `eventsEnd`).
    pub events_end: u64,
    pub timings: Arc<Mutex<TickTimings>>,
}

impl TickTask {
    /// Hands the runtime back (or drops it, if closed meanwhile). Once.
    fn hand_back(&mut self) {
        let runtime = self.runtime.take();
        let mut away = lock(&self.away);
        if away.returned {
            return;
        }
        away.returned = true;
        if away.close_requested {
            drop(away);
            // The rings' buffers are still referenced by the NativeRuntime: dropping the
            // runtime that views them is safe here.
            drop(runtime);
        } else {
            away.back = runtime;
        }
    }
}

impl Drop for TickTask {
    fn drop(&mut self) {
        self.hand_back();
    }
}

impl Task for TickTask {
    /// The last tick's report or the error (with its code).
    type Output = std::result::Result<core::TickReport, napi::Error<Code>>;
    type JsValue = TickReport;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        // On a libuv thread, outside any napi callback: a panic unwinding out of here would
        // abort Node, so it is caught.
        let n = self.n;
        let panic_with = self.panic_with.clone();
        let runtime = &mut self.runtime;
        let started = Instant::now();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(message) = panic_with {
                panic!("{message}");
            }
            runtime.as_mut().map(|rt| rt.run(n))
        }));
        self.ran = Some((started, Instant::now()));
        self.events_end = self.runtime.as_ref().map_or(0, Runtime::events_end);
        Ok(match ran {
            Ok(Some(Ok(Some(report)))) => Ok(report),
            // A tick refused (the journal failed): the runtime is handed back as it is.
            Ok(Some(Err(e))) => Err(to_napi(e)),
            // n >= 1 and the runtime is there: run() returns the last report.
            Ok(Some(Ok(None)) | None) => Err(internal(Box::new("tickAsync ran without a runtime or with n = 0"))),
            Err(panic) => {
                // Stopped in the middle of a tick: never handed back. Dropping it may panic too.
                if let Some(rt) = self.runtime.take() {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(rt)));
                }
                let e = internal(panic);
                lock(&self.away).panicked = Some(e.reason.clone());
                Err(e)
            }
        })
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        // Back before the promise settles: the code after `await` finds the runtime free.
        self.hand_back();
        if let Some((started, ended)) = self.ran {
            let now = Instant::now();
            let mut t = lock_timings(&self.timings);
            t.calls += 1;
            t.queue_ns += started.saturating_duration_since(self.queued).as_nanos();
            t.compute_ns += ended.saturating_duration_since(started).as_nanos();
            t.settle_ns += now.saturating_duration_since(ended).as_nanos();
            t.last_settled = Some(now);
        }
        let events_end = self.events_end;
        output.map(|r| TickReport::of(&r, events_end)).map_err(|e| {
            let e = if lock(&self.away).panicked.is_some() {
                extended(e, ". The runtime was closed: it stopped in the middle of a tick, so its state cannot be trusted")
            } else {
                e
            };
            to_status_error(&env, e)
        })
    }
}
