//! Time slicing (issue 16, docs/ABI.md "Time slicing"): the calls of an agent given a fuel
//! slice (`Runtime::set_fuel_per_tick`) run as wasmtime async calls on a fiber, and its store
//! yields every `slice` units of fuel (`Store::fuel_async_yield_interval`). A call that yields
//! has used its slice for this tick and is *suspended*: its future, which owns the agent's
//! whole instance, waits in the agent's slot and is polled again next tick, when the call goes
//! on exactly where it stopped, with another slice. Fuel decides where a call yields, so it is
//! the same instruction in every run, on every thread and machine; only the call's total
//! budget (`fuel_per_call`) or the wall-clock deadline ends it.
//!
//! Nothing here is `unsafe`: the future owns the instance (an `async move` block holding the
//! `Box<AgentInstance>`), so while a call is suspended nothing else can reach its store, and
//! the instance comes back, whole, only when the call ends. What the runtime reports of a
//! suspended agent meanwhile (its memory size, the fuel it had burned) is copied here when it
//! is suspended.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::{AgentInstance, StepContext};
use crate::abi;
use crate::bus::MessageRef;
use crate::fault::{AbiCall, Fault};

/// A call of a sliced agent in flight: resolves to the instance and the call's result.
type CallFuture = Pin<Box<dyn Future<Output = (Box<AgentInstance>, wasmtime::Result<i32>)> + Send>>;

/// A call that used up its slice and waits for the agent's next tick.
pub(crate) struct Suspended {
    /// In a `Mutex` only so that a slot holding it is `Sync` (slots are read from several
    /// threads: deep hash, snapshots); it is only ever reached through `&mut`
    /// (`Mutex::get_mut`, no locking).
    future: std::sync::Mutex<CallFuture>,
    /// Which ABI call it is.
    pub(crate) call: AbiCall,
    /// The tick the call started in (the `tick()` import answers it for the whole call).
    pub(crate) started_tick: u64,
    /// Times it was suspended so far (slices it used up).
    pub(crate) slices: u64,
    /// The slice: fuel per tick.
    pub(crate) fuel_per_tick: u64,
    /// The fuel the call started with (its whole budget).
    budget: u64,
    /// The instance's resume flag (`AgentInstance::resumed`).
    resumed: Option<Arc<AtomicBool>>,
    /// The agent's memory size and total fuel when the call started: what `inspect`, the
    /// observers and the deep hash see of it while it is suspended.
    pub(crate) memory_bytes: usize,
    pub(crate) fuel_consumed: u64,
}

/// How far a sliced call got this tick.
pub(crate) enum Outcome {
    /// It ended (returned or faulted) and the instance is back; `fuel` is what the whole call
    /// burned, `slices` how many ticks before this one it was suspended at.
    Done { instance: Box<AgentInstance>, result: Result<(), Fault>, fuel: u64, slices: u64 },
    /// It used up this tick's slice.
    Suspended(Box<Suspended>),
}

impl AgentInstance {
    /// Gives the agent a slice of `fuel` per call and tick (0: none). Its store then yields
    /// every `fuel` units, and keeps taking async calls only, even if the slice is removed.
    /// `Err`: fuel metering is off (a message for `E_INVALID_ARGUMENT`).
    pub(crate) fn set_fuel_per_tick(&mut self, fuel: u64) -> std::result::Result<(), String> {
        if self.fuel_per_call == 0 {
            return Err("time slicing needs fuel metering (fuelPerCall > 0)".into());
        }
        self.store.fuel_async_yield_interval((fuel > 0).then_some(fuel)).map_err(|e| format!("{e:#}"))?;
        self.fuel_per_tick = fuel;
        self.async_calls |= fuel > 0;
        if fuel > 0 && self.resumed.is_none() {
            // The deadline is a wall-clock backstop per slice, not per call: a call suspended
            // over many ticks would otherwise run out of wall time between its slices. Each
            // resume arms a flag; the epoch callback (called once the deadline passes) extends
            // the deadline once per resume, and traps a slice that ran past it on its own.
            let resumed = Arc::new(AtomicBool::new(false));
            let flag = resumed.clone();
            let ticks = self.deadline_ticks;
            self.store.epoch_deadline_callback(move |_| {
                Ok(if flag.swap(false, Ordering::Relaxed) { wasmtime::UpdateDeadline::Continue(ticks) } else { wasmtime::UpdateDeadline::Interrupt })
            });
            self.resumed = Some(resumed);
        }
        Ok(())
    }

    /// Its per-call fuel budget (0: metering off).
    pub(crate) fn fuel_per_call(&self) -> u64 {
        self.fuel_per_call
    }

    /// Writes the next receive call's messages into the io buffer: the first of `messages`
    /// (ABI 1) or as many as fit (ABI 2, its progress word cleared). Returns how many (0: none
    /// fits, which the inbox limits rule out).
    pub(crate) fn prepare_receive<'a>(&mut self, mut messages: impl Iterator<Item = MessageRef<'a>>) -> usize {
        if self.abi_version < 2 {
            let Some(m) = messages.next() else { return 0 };
            let mut header = [0u8; abi::MESSAGE_HEADER_BYTES];
            m.write_header(&mut header);
            return usize::from(self.write_io(&header, m.payload));
        }
        let n = self.fill_batch(messages);
        self.set_batch_done(0);
        n
    }

    /// Of a receive call of `n` messages that faulted, how many the agent handled (its
    /// progress word, ABI 2; clamped, it is the agent's memory).
    pub(crate) fn handled(&self, n: usize) -> usize {
        if self.abi_version < 2 {
            0
        } else {
            (self.batch_done() as usize).min(n)
        }
    }

    /// Writes the step context; returns the argument of the `agent_step` call.
    pub(crate) fn prepare_step(&mut self, ctx: &StepContext) -> i32 {
        self.write_step_context(ctx);
        self.io_ptr as i32
    }

    /// The io buffer's address: the argument of a receive call.
    pub(crate) fn io_arg(&self) -> i32 {
        self.io_ptr as i32
    }

    /// Runs `call` to its end on a store that yields (`agent_init` and `agent_shutdown`, which
    /// run outside ticks and are never suspended), re-polling through every yield.
    pub(super) fn call_to_end(&mut self, call: AbiCall, arg: i32, count: i32) -> wasmtime::Result<i32> {
        // A fresh deadline for the whole call: no extension left over from a resumed slice.
        if let Some(r) = &self.resumed {
            r.store(false, Ordering::Relaxed);
        }
        let mut future = std::pin::pin!(self.call_async(call, arg, count));
        let mut cx = Context::from_waker(Waker::noop());
        // Each poll runs one slice at most; the fuel budget or the deadline bounds the loop.
        loop {
            if let Poll::Ready(r) = future.as_mut().poll(&mut cx) {
                return r;
            }
        }
    }

    /// Calls the ABI function of `call` as an async call (what `start` and `call_to_end` run).
    async fn call_async(&mut self, call: AbiCall, arg: i32, count: i32) -> wasmtime::Result<i32> {
        let AgentInstance { store, init, step, receive, receive_batch, shutdown, abi_version, .. } = self;
        match call {
            AbiCall::Init => init.call_async(&mut *store, ()).await,
            AbiCall::Step => step.call_async(&mut *store, arg).await,
            AbiCall::Shutdown => shutdown.call_async(&mut *store, ()).await,
            AbiCall::Receive => match (receive_batch.as_ref(), receive.as_ref()) {
                (Some(f), _) if *abi_version >= 2 => f.call_async(&mut *store, (arg, count)).await,
                (_, Some(f)) => f.call_async(&mut *store, arg).await,
                _ => Err(wasmtime::Error::msg("no receive entry point for its ABI version")),
            },
        }
    }
}

/// Starts `call` of a sliced agent in tick `tick` with its whole per-call budget, and runs it
/// until it ends or uses this tick's slice.
pub(crate) fn start(mut instance: Box<AgentInstance>, call: AbiCall, tick: u64, arg: i32, count: i32) -> Outcome {
    let host = instance.store.data_mut();
    host.tick = tick;
    host.begin_call();
    let budget = instance.fuel_per_call;
    // Cannot fail: a sliced agent's runtime meters fuel (`set_fuel_per_tick`).
    let _ = instance.store.set_fuel(budget);
    instance.store.set_epoch_deadline(instance.deadline_ticks);
    let (memory_bytes, fuel_consumed, fuel_per_tick) = (instance.memory_bytes(), instance.fuel_consumed, instance.fuel_per_tick);
    let resumed = instance.resumed.clone();
    if let Some(r) = &resumed {
        r.store(false, Ordering::Relaxed);
    }
    let future: CallFuture = Box::pin(async move {
        let result = instance.call_async(call, arg, count).await;
        (instance, result)
    });
    // Most calls end in their first slice: polled before anything else is allocated.
    let mut future = future;
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready((instance, result)) => finish(instance, result, call, tick, budget, 0),
        Poll::Pending => Outcome::Suspended(Box::new(Suspended {
            future: std::sync::Mutex::new(future),
            call,
            started_tick: tick,
            slices: 1,
            fuel_per_tick,
            budget,
            resumed,
            memory_bytes,
            fuel_consumed,
        })),
    }
}

/// The end of a call: its fuel counted, its result classified, the instance back.
fn finish(mut instance: Box<AgentInstance>, result: wasmtime::Result<i32>, call: AbiCall, tick: u64, budget: u64, slices: u64) -> Outcome {
    let left = instance.store.get_fuel().unwrap_or(0);
    let fuel = budget.saturating_sub(left);
    instance.fuel_consumed += fuel;
    let result = instance.status(result, call, tick, false);
    Outcome::Done { instance, result, fuel, slices }
}

impl Suspended {
    /// Runs the call on, in tick `tick`, for one more slice (wasmtime refuels the store with
    /// one slice before it yields, so each poll runs at most one).
    pub(crate) fn resume(self: Box<Self>, tick: u64) -> Outcome {
        if let Some(r) = &self.resumed {
            r.store(true, Ordering::Relaxed);
        }
        self.poll(tick)
    }

    /// Polls the call once: one slice at most.
    fn poll(mut self: Box<Self>, tick: u64) -> Outcome {
        let mut cx = Context::from_waker(Waker::noop());
        // A poisoned lock: a poll panicked, which `poll` below would only repeat. The future
        // is still whole (a panic in it is wasmtime's bug); poll it again.
        let future = match self.future.get_mut() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        match future.as_mut().poll(&mut cx) {
            Poll::Pending => {
                self.slices += 1;
                Outcome::Suspended(self)
            }
            Poll::Ready((instance, result)) => finish(instance, result, self.call, tick, self.budget, self.slices),
        }
    }
}
