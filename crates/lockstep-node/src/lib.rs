//! Node.js binding: a thin napi-rs layer over `lockstep_core::Runtime`.
//!
//! - Errors: `error.rs`, the one place a JS error is made (`code` = `E_...`, a clean message).
//! - Types and conversions: `convert.rs` (options in, reports out; events as the core's JSON).
//! - `replay` and `replayAsync`: `replay.rs`; inference's packed tensors and tasks: `inference.rs`.
//! - `tickAsync`: `tick.rs` (the runtime leaves its `NativeRuntime` while its ticks run).
//! - The journal: `journal.rs` (`recover`'s options and report, `inspectLog`, `verifyJournal`).
//!
//! Methods that start work on libuv's thread pool (`tickAsync`, `inferAsync`,
//! `loadModelAsync`) queue it with `Env::spawn` and return its promise, rather than returning
//! an `AsyncTask`: napi-rs keeps the borrow of `self` of a method that returns an `AsyncTask`
//! until the task settles, so any `&mut self` call meanwhile (a `tick()` during an `infer`)
//! failed with napi's "cannot be borrowed mutably" error.
//!
//! Every export is `#[napi(catch_unwind)]`: a Rust panic becomes a JS error (index.js gives it
//! the code E_INTERNAL) instead of aborting Node, which needs `panic = "unwind"` (checked below).

#[cfg(panic = "abort")]
compile_error!("lockstep-node needs panic = \"unwind\": a panic must become a JS error, not abort Node");

/// The addon's Rust allocations (the engine's, wasmtime's) go through mimalloc instead of the
/// system allocator; Node's own heap is not affected. With glibc's, the many small objects of
/// each agent (its store, its outboxes' arenas and envelopes, its inbox) were interleaved with
/// other agents' of other sizes; mimalloc keeps objects of one size class together. A
/// 10,000-agent flood tick ran 11–13% faster, 10,000 counters 5% (two runtimes in one
/// process, one per allocator, ticking in turn: BENCHMARKS.md, eighteenth session).
/// mimalloc 2, not 3 (the workspace's `v2` feature): 3.3 crashed the process when the first
/// thread to load the addon (a worker) had exited and another allocated (mimalloc PR #1393's
/// bug; `__test__/binding.test.mjs`). Version 2 measured the same (twentieth session).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod convert;
pub mod cursor;
pub mod error;
pub mod inference;
mod interrupt_word;
pub mod journal;
pub mod lm;
mod pin;
pub mod replay;
pub mod tick;

use std::sync::{Arc, Mutex, OnceLock};

use lockstep_core::inference::InferenceEngine;
use lockstep_core::{self as core, LockstepError, Runtime};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use convert::{
    arg_int, id_arg, id_js, AgentInfo, AgentMessage, AgentTable, DeadLetter, DeepHash, KeyPair, LogLine, ModelInfo, ModuleReport, PackedTensors, Reply,
    RequestDeadLetter, RuntimeOptions, TappedMessage, TickReport, VerifyResult, WatchedMessages,
};
use error::{busy, in_context, invalid_arg, to_napi, BindError, Result};
use tick::{Away, TickTask};

impl NativeRuntime {
    /// Attaches a ring and keeps its buffer referenced for as long as this runtime lives.
    fn attach_ring(&mut self, buffer: Uint8Array, attach: fn(&mut Runtime, core::ring::RingMemory) -> core::Result<()>) -> Result<()> {
        let memory = ring_memory(&buffer)?;
        attach(self.rt_mut()?, memory).map_err(to_napi)?;
        self.ring_buffers.push(buffer);
        Ok(())
    }

    /// Takes the runtime back from a `tickAsync` that has handed it back (or lost it).
    fn reclaim(&mut self) {
        let Some(away) = self.away.as_ref() else { return };
        let mut slot = tick::lock(away);
        // A task gone without handing back (its Drop hands back, so this is a backstop) leaves
        // only our reference.
        if !slot.returned && Arc::strong_count(away) > 1 {
            return;
        }
        let back = slot.back.take();
        let panicked = slot.panicked.take();
        drop(slot);
        self.away = None;
        match back {
            Some(rt) if !self.closed => self.inner = Some(rt),
            Some(rt) => drop(rt),
            None if !self.closed => {
                self.closed = true;
                self.lost = Some(panicked.unwrap_or_else(|| "a tickAsync did not hand the runtime back".into()));
            }
            None => {}
        }
        if self.closed {
            self.release();
        }
    }

    /// The open runtime; E_CLOSED once closed (even while a tickAsync still holds it), else
    /// E_BUSY while a tickAsync holds it.
    fn rt_mut(&mut self) -> Result<&mut Runtime> {
        self.reclaim();
        if self.closed {
            return Err(self.closed_error());
        }
        if self.away.is_some() {
            return Err(busy());
        }
        self.inner.as_mut().ok_or_else(|| to_napi(LockstepError::Closed))
    }

    fn rt(&mut self) -> Result<&Runtime> {
        self.rt_mut().map(|rt| &*rt)
    }

    fn closed_error(&self) -> napi::Error<error::Code> {
        match &self.lost {
            Some(why) => error::extended(to_napi(LockstepError::Closed), &format!(" (a panic inside a tickAsync closed it: {why})")),
            None => to_napi(LockstepError::Closed),
        }
    }

    /// What a closed runtime still held: the rings' buffers (after the runtime that viewed
    /// them) and its reference to the inference engine.
    fn release(&mut self) {
        drop(self.inner.take());
        self.ring_buffers.clear();
        self.engine = Arc::new(OnceLock::new());
    }
}

/// The native runtime. Use the `Runtime` class from index.js, which wraps this one.
#[napi(custom_finalize)]
pub struct NativeRuntime {
    // Field order matters: `inner` (which holds raw views into the ring buffers) is dropped
    // before `ring_buffers` releases the references that keep those buffers alive; `close()`
    // releases them in the same order. None once closed, and while a tickAsync holds it.
    inner: Option<Runtime>,
    /// While a tickAsync runs: where its task hands the runtime back (tick.rs).
    away: Option<Arc<Mutex<Away>>>,
    /// close() was called, or a tickAsync lost the runtime to a panic (`lost` says why).
    closed: bool,
    lost: Option<String>,
    /// The typed arrays over the rings' SharedArrayBuffers. Holding them holds napi references
    /// in this (the runtime's) environment, so the memory outlives any worker that shares it.
    ring_buffers: Vec<Uint8Array>,
    inference_options: convert::InferenceOptions,
    /// Created at the first model load: a runtime that never infers never loads ONNX Runtime.
    /// Shared with `loadModelAsync`'s task, which may create it on the thread pool.
    engine: Arc<OnceLock<Arc<InferenceEngine>>>,
    /// What `recover` did, for a runtime it made.
    recovery: Option<core::RecoveryReport>,
    /// `inferInto`'s reused spec strings and its outputs too large for JS's buffer.
    infer_out: inference::OutputScratch,
    /// Where `tickAsync`'s time went (`tickTimings`), shared with each call's task.
    tick_timings: Arc<Mutex<tick::TickTimings>>,
}

impl ObjectFinalize for NativeRuntime {
    /// Runs at garbage collection, outside any napi call, so `catch_unwind` on the methods does
    /// not cover it: a panic while dropping the runtime here would unwind out of a napi
    /// finalizer and abort Node. It is caught (and reported on stderr by the panic hook).
    fn finalize(mut self, _env: Env) -> napi::Result<()> {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.close();
            if self.away.is_some() {
                // A tickAsync still runs and its runtime views the rings' buffers: keep them
                // (leak the references) rather than free memory it may still write.
                std::mem::forget(std::mem::take(&mut self.ring_buffers));
            }
        }));
        Ok(())
    }
}

/// The Uint8Array a ring lives in, refused unless it views a SharedArrayBuffer: the core keeps
/// a raw pointer into it, and only a SharedArrayBuffer's memory can never go away while the
/// napi reference holds it. A plain ArrayBuffer can be detached (transferred with
/// postMessage/structuredClone), which frees or moves its memory under the core: the next
/// tick then wrote into freed memory (Node crashed with SIGSEGV).
fn shared_uint8_array(value: Unknown<'_>) -> Result<Uint8Array> {
    let (env, raw) = (value.value().env, value.value().value);
    let refuse =
        || to_napi(BindError { code: "E_RING", message: "a ring buffer must be a Uint8Array over a SharedArrayBuffer (from createRingBuffer())".into() });
    let mut is_typed_array = false;
    // SAFETY: plain napi queries: `env` is this call's environment and `raw` a value of it,
    // both valid for the call; every out-pointer is a live local; each status is checked
    // before its result is used, and `from_napi_value` runs only on a typed array.
    unsafe {
        if napi::sys::napi_is_typedarray(env, raw, &mut is_typed_array) != napi::sys::Status::napi_ok || !is_typed_array {
            return Err(refuse());
        }
        let (mut kind, mut len, mut data, mut array_buffer, mut offset) = (0, 0, std::ptr::null_mut(), std::ptr::null_mut(), 0);
        if napi::sys::napi_get_typedarray_info(env, raw, &mut kind, &mut len, &mut data, &mut array_buffer, &mut offset) != napi::sys::Status::napi_ok {
            return Err(refuse());
        }
        // napi_is_arraybuffer is false for a SharedArrayBuffer (V8's IsArrayBuffer).
        let mut is_plain = true;
        if napi::sys::napi_is_arraybuffer(env, array_buffer, &mut is_plain) != napi::sys::Status::napi_ok || is_plain {
            return Err(refuse());
        }
        Uint8Array::from_napi_value(env, raw).map_err(|_| refuse())
    }
}

fn ring_memory(buffer: &Uint8Array) -> Result<core::ring::RingMemory> {
    // SAFETY: RingMemory's invariants: the buffer stays alive because the Uint8Array is
    // stored in `ring_buffers` until this runtime is dropped or closed, after `inner`;
    // SharedArrayBuffer backing stores never move; alignment is checked by `from_raw`.
    unsafe { core::ring::RingMemory::from_raw(buffer.as_ptr() as *mut u8, buffer.len()) }.map_err(to_napi)
}

impl NativeRuntime {
    /// The JS object around a core runtime (made by `new`, `restore`, `recover` or a fork).
    pub(crate) fn wrap(rt: Runtime, inference_options: convert::InferenceOptions, recovery: Option<core::RecoveryReport>) -> Self {
        Self {
            inner: Some(rt),
            away: None,
            closed: false,
            lost: None,
            ring_buffers: Vec::new(),
            inference_options,
            engine: Default::default(),
            recovery,
            infer_out: Default::default(),
            tick_timings: Default::default(),
        }
    }
}

#[napi]
impl NativeRuntime {
    #[napi(constructor, catch_unwind)]
    pub fn new(options: Option<RuntimeOptions>) -> Result<Self> {
        let mut options = options.unwrap_or_default();
        let inference_options = options.inference.take().unwrap_or_default();
        convert::engine_options(&inference_options)?;
        let config = convert::config_from(options)?;
        Ok(Self::wrap(Runtime::new(config).map_err(to_napi)?, inference_options, None))
    }

    /// A runtime rebuilt from `snapshot()`'s bytes (docs/SNAPSHOT.md): options as for the
    /// constructor, each session setting given checked against the snapshot's, `modules`
    /// (hex hashes) the modules it must hold exactly.
    #[napi(factory, catch_unwind)]
    pub fn restore(bytes: Uint8Array, options: Option<RuntimeOptions>, modules: Option<Vec<String>>) -> Result<Self> {
        let mut options = options.unwrap_or_default();
        let inference_options = options.inference.take().unwrap_or_default();
        convert::engine_options(&inference_options)?;
        let restore = convert::restore_options_from(options, modules)?;
        Ok(Self::wrap(Runtime::restore(&bytes, restore).map_err(to_napi)?, inference_options, None))
    }

    /// The runtime's complete state (docs/SNAPSHOT.md), between ticks.
    #[napi(catch_unwind)]
    pub fn snapshot(&mut self) -> Result<Buffer> {
        self.rt_mut()?.snapshot().map(Buffer::from).map_err(to_napi)
    }

    /// Continues the session whose journal is in `dir` (docs/JOURNAL.md, "Recovery"): the
    /// runtime `Runtime::recover` returns; its report is `recoveryReport()`. `on_progress(ticks
    /// replayed)` every 100 ticks, on this thread.
    #[napi(factory, catch_unwind)]
    pub fn recover(dir: String, options: Option<journal::RecoverOptions>, on_progress: Option<Function<f64, ()>>) -> Result<Self> {
        let mut options = options.unwrap_or_default();
        let inference_options = options.inference.take().unwrap_or_default();
        convert::engine_options(&inference_options)?;
        let core_options = journal::recover_options(&options)?;
        let mut callback_error = None;
        let (rt, report) = Runtime::recover_with_progress(&dir, core_options, |ticks| {
            if ticks % 100 == 0 && callback_error.is_none() {
                if let Some(f) = on_progress.as_ref() {
                    callback_error = f.call(ticks as f64).err();
                }
            }
        })
        .map_err(to_napi)?;
        if let Some(e) = callback_error {
            return Err(journal::progress_failed(e));
        }
        Ok(Self::wrap(rt, inference_options, Some(report)))
    }

    /// The id of the journal this runtime writes (hex), null without one.
    #[napi(getter, catch_unwind)]
    pub fn journal_id(&mut self) -> Result<Option<String>> {
        Ok(self.rt()?.journal_id().map(|id| core::security::hex(&id)))
    }

    /// Makes later ticks use `workers` threads (1..=workers), whatever the scaling says; null
    /// returns to it. Results never depend on it.
    #[napi(catch_unwind)]
    pub fn set_workers(&mut self, workers: Option<f64>) -> Result<()> {
        let n = match workers {
            None => None,
            Some(w) => {
                Some(convert::int_in(w, 1.0, 256.0).ok_or_else(|| invalid_arg("workers", format!("a worker count 1..=256, or null, got {w}")))? as usize)
            }
        };
        self.rt_mut()?.set_workers(n).map_err(to_napi)
    }

    /// The directory of the journal this runtime writes, null without one.
    #[napi(getter, catch_unwind)]
    pub fn journal_dir(&mut self) -> Result<Option<String>> {
        Ok(self.rt()?.config().journal.as_ref().map(|j| j.dir.display().to_string()))
    }

    /// The last tick whose journal records are known to be on stable storage, without
    /// syncing (null without a journal, or while none is): what a crash now would keep.
    #[napi(getter, catch_unwind)]
    pub fn durable_tick(&mut self) -> Result<Option<i64>> {
        Ok(self.rt()?.durable_tick().map(|t| t as i64))
    }

    /// What `recover` did (null for a runtime made with `new`).
    #[napi(catch_unwind)]
    pub fn recovery_report(&mut self) -> Option<journal::RecoveryReport> {
        self.recovery.as_ref().map(journal::RecoveryReport::from)
    }

    /// Writes and syncs the journal up to the last complete tick now; returns the durable tick
    /// (null before the first tick, or without a journal).
    #[napi(catch_unwind)]
    pub fn sync_journal(&mut self) -> Result<Option<i64>> {
        Ok(self.rt_mut()?.sync_journal().map_err(to_napi)?.map(|t| t as i64))
    }

    /// Frees the runtime now (agents, their reserved memory, the rings' references, the
    /// inference engine) instead of at garbage collection. Idempotent; every other method
    /// then throws E_CLOSED. An `infer` or `loadModelAsync` already running keeps its engine
    /// until it ends; a `tickAsync` already running keeps the runtime until its ticks end (its
    /// promise settles with its report), and it is freed then.
    #[napi(catch_unwind)]
    pub fn close(&mut self) {
        self.reclaim();
        self.closed = true;
        if let Some(away) = self.away.as_ref() {
            tick::lock(away).close_requested = true;
            // The runtime on the pool views the rings' buffers: they are released once it is
            // handed back (at the next call, e.g. close() again, or at garbage collection).
            self.engine = Arc::new(OnceLock::new());
            return;
        }
        self.release();
    }

    #[napi(getter, catch_unwind)]
    pub fn closed(&mut self) -> bool {
        self.reclaim();
        self.closed
    }

    /// Where the wall time of this runtime's `tickAsync` calls went, summed (tick.rs,
    /// `TickTimings`). Readable while a tickAsync runs (it does not touch the runtime).
    #[napi(catch_unwind)]
    pub fn tick_timings(&self) -> convert::TickTimings {
        let t = tick::lock_timings(&self.tick_timings);
        let us = |ns: u128| ns as f64 / 1000.0;
        convert::TickTimings {
            calls: t.calls as f64,
            queue_us: us(t.queue_ns),
            compute_us: us(t.compute_ns),
            settle_us: us(t.settle_ns),
            between_us: us(t.between_ns),
        }
    }

    /// Whether a tickAsync holds the runtime now.
    #[napi(getter, catch_unwind)]
    pub fn busy(&mut self) -> bool {
        self.reclaim();
        self.away.is_some()
    }

    /// The engine, created at first use.
    fn engine(&mut self) -> Result<Arc<InferenceEngine>> {
        self.rt()?;
        if let Some(e) = self.engine.get() {
            return Ok(e.clone());
        }
        let created = Arc::new(InferenceEngine::new(convert::engine_options(&self.inference_options)?).map_err(to_napi)?);
        Ok(self.engine.get_or_init(|| created).clone())
    }

    /// Runs `n` ticks (1..2^32 - 1) on libuv's thread pool; the promise settles with the last
    /// tick's report, exactly as `tick(n)` would return it. Meanwhile every other method of
    /// this runtime throws E_BUSY (see tick.rs).
    #[napi(catch_unwind, ts_return_type = "Promise<TickReport>")]
    pub fn tick_async<'env>(&mut self, env: &'env Env, n: Option<f64>) -> Result<PromiseRaw<'env, TickReport>> {
        let n = arg_int("n", n.unwrap_or(1.0), 1.0, u32::MAX as f64)? as u64;
        self.spawn_ticks(env, n, None)
    }

    fn spawn_ticks<'env>(&mut self, env: &'env Env, n: u64, panic_with: Option<String>) -> Result<PromiseRaw<'env, TickReport>> {
        self.rt_mut()?;
        let away = Arc::new(Mutex::new(Away::default()));
        let queued = std::time::Instant::now();
        tick::lock_timings(&self.tick_timings).queued(queued);
        let task =
            TickTask { runtime: self.inner.take(), n, away: away.clone(), panic_with, queued, ran: None, events_end: 0, timings: self.tick_timings.clone() };
        self.away = Some(away);
        match env.spawn(task) {
            Ok(work) => Ok(work.promise_object()),
            Err(e) => {
                // The task was dropped, which handed the runtime back.
                self.reclaim();
                Err(to_napi(BindError { code: "E_INTERNAL", message: format!("cannot queue tickAsync: {e}") }))
            }
        }
    }

    /// Loads an ONNX model (the same bytes load once) and describes it.
    #[napi(catch_unwind)]
    pub fn load_model(&mut self, bytes: Uint8Array) -> Result<ModelInfo> {
        let engine = self.engine()?;
        engine.load(bytes.to_vec()).map(ModelInfo::from).map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn model_info(&mut self, id: String) -> Result<ModelInfo> {
        let engine = self.engine()?;
        engine.info(&id).map(ModelInfo::from).map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn list_models(&mut self) -> Result<Vec<ModelInfo>> {
        Ok(self.engine()?.list().into_iter().map(ModelInfo::from).collect())
    }

    #[napi(catch_unwind)]
    pub fn unload_model(&mut self, id: String) -> Result<bool> {
        Ok(self.engine()?.unload(&id))
    }

    /// Makes a loaded model available to agents; returns its slot (the `model` argument of
    /// the agents' `infer` import).
    #[napi(catch_unwind)]
    pub fn register_agent_model(&mut self, id: String) -> Result<u32> {
        let engine = self.engine()?;
        let rt = self.rt_mut()?;
        rt.set_inference_engine(engine);
        rt.register_agent_model(&id).map_err(to_napi)
    }

    /// Loads a decoder-only language model (docs/INFERENCE.md, "Language models"); JS's
    /// `generate()` runs on the object returned, agents' after `registerAgentLanguageModel`.
    #[napi(catch_unwind)]
    pub fn load_language_model(&mut self, bytes: Uint8Array, options: Option<lm::LanguageModelOptions>) -> Result<lm::NativeLanguageModel> {
        let engine = self.engine()?;
        let (options, max_batch) = lm::lm_options(&options.unwrap_or_default())?;
        let model = lockstep_core::inference::lm::LanguageModel::load(engine, bytes.to_vec(), options).map_err(to_napi)?;
        Ok(lm::NativeLanguageModel::new(model, max_batch))
    }

    /// Makes a language model available to agents' `generate` import; returns its slot.
    #[napi(catch_unwind)]
    pub fn register_agent_language_model(&mut self, model: &lm::NativeLanguageModel, tokens_per_tick: u32, max_batch: u32) -> Result<u32> {
        let options = lockstep_core::inference::lm::AgentLmOptions { tokens_per_tick, max_batch };
        self.rt_mut()?.register_agent_language_model(&model.lm, options).map_err(to_napi)
    }

    /// The ONNX Runtime library in use.
    #[napi(catch_unwind)]
    pub fn inference_library(&mut self) -> Result<String> {
        Ok(self.engine()?.library_path().display().to_string())
    }

    /// Loads an ONNX model on libuv's thread pool (reading and validating it, and creating
    /// the engine at the first load, off the event loop); the same result as `load_model`.
    #[napi(catch_unwind, ts_return_type = "Promise<ModelInfo>")]
    pub fn load_model_async<'env>(&mut self, env: &'env Env, bytes: Uint8Array) -> Result<PromiseRaw<'env, ModelInfo>> {
        self.rt()?;
        let options = convert::engine_options(&self.inference_options)?;
        let task = inference::LoadModelTask { engine: self.engine.clone(), options, bytes: bytes.to_vec() };
        Ok(env.spawn(task).map_err(|e| to_napi(BindError { code: "E_INTERNAL", message: format!("cannot queue loadModelAsync: {e}") }))?.promise_object())
    }

    /// Runs a model on libuv's thread pool, packed inputs and outputs (see `infer_packed`).
    /// The inputs are copied: JS may reuse its buffer while the call runs.
    #[napi(catch_unwind, ts_return_type = "Promise<PackedTensors>")]
    pub fn infer_async<'env>(&mut self, env: &'env Env, model: String, spec: String, data: Uint8Array) -> Result<PromiseRaw<'env, PackedTensors>> {
        let engine = self.engine()?;
        let inputs = inference::unpack_owned(&spec, &data)?;
        let task = inference::InferTask { engine, model, inputs };
        Ok(env.spawn(task).map_err(|e| to_napi(BindError { code: "E_INTERNAL", message: format!("cannot queue infer: {e}") }))?.promise_object())
    }

    /// Runs a model on the calling thread with packed inputs and outputs (see
    /// `inference::parse_packed`).
    #[napi(catch_unwind)]
    pub fn infer_packed(&mut self, model: String, spec: String, data: &[u8]) -> Result<PackedTensors> {
        let engine = self.engine()?;
        run_packed(&engine, &model, &spec, data).map(inference::pack_outputs)
    }

    /// The fast path index.js uses: runs a model on the calling thread with packed inputs
    /// (read in place from `data`) and writes the packed outputs' data into `out`. Returns
    /// `bytes * 2 + changed`: `bytes` the outputs' data size (when larger than `out`, they are
    /// kept: `inferTakeOutputs` copies them into a large enough buffer), `changed` 1 when
    /// their spec differs from the last one returned (`inferOutputSpec` gives it). Nothing
    /// allocated for JS: no spec string and no buffer per call. `model` may be left out
    /// (`undefined`) to mean the last one given (even by a call that then failed), `spec` to
    /// mean the last one that parsed: a string crossing napi is a UTF-8 copy and an allocation
    /// each (~1,100 instructions a call). index.js sends both again after any failed call.
    #[napi(catch_unwind)]
    pub fn infer_into(&mut self, model: Option<String>, spec: Option<String>, data: &[u8], mut out: Uint8ArraySlice<'_>) -> Result<f64> {
        refuse_overlap(&[data], out.as_ref())?;
        // SAFETY: `out` views a JS typed array's memory, alive and not moved during this
        // synchronous call (no JS runs meanwhile), and no other reference to it exists here
        // (`data` does not overlap it: checked above).
        let out = unsafe { out.as_mut() };
        self.infer_into_views(model, spec, &[data], out)
    }

    /// `inferInto` with each input in its own typed array (`parts`, in the spec's order, each
    /// exactly its input's bytes): index.js uses it for large inputs, which packing would copy
    /// (Silero at batch 32: 229 KB a call). The arrays are read in place, like `data` there.
    #[napi(catch_unwind)]
    pub fn infer_into_parts(
        &mut self,
        model: Option<String>,
        spec: Option<String>,
        parts: Vec<Uint8ArraySlice<'_>>,
        mut out: Uint8ArraySlice<'_>,
    ) -> Result<f64> {
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_ref()).collect();
        refuse_overlap(&parts, out.as_ref())?;
        // SAFETY: as in `infer_into`: JS memory alive and unmoved during this synchronous call,
        // overlapping none of the parts (checked above).
        let out = unsafe { out.as_mut() };
        self.infer_into_views(model, spec, &parts, out)
    }

    /// Runs `inferInto` / `inferIntoParts`: `parts` is one packed buffer, or one buffer per input.
    fn infer_into_views(&mut self, model: Option<String>, spec: Option<String>, parts: &[&[u8]], out: &mut [u8]) -> Result<f64> {
        let engine = self.engine()?;
        if let Some(model) = model {
            self.infer_out.model = Some(model);
        }
        let scratch = &mut self.infer_out;
        // The spec's ranges are those of the packed layout; with one part per input, each part
        // stands for its range (its length checked in `run_parts`).
        let packed_len = match parts {
            [data] => data.len(),
            // Each part at a multiple of 8, as packing would have placed it.
            _ => parts.iter().map(|p| p.len().div_ceil(8) * 8).sum(),
        };
        if let Some(spec) = &spec {
            scratch.parse(spec, packed_len)?;
        }
        let Some(model) = scratch.model.as_deref() else {
            return Err(to_napi(BindError { code: "E_INVALID_ARGUMENT", message: "inferInto: no model given yet".into() }));
        };
        let inputs = scratch.parsed(packed_len)?;
        let outputs = match parts {
            [data] => run_views(&engine, model, inputs, data)?,
            _ => run_parts(&engine, model, inputs, parts)?,
        };
        let bytes = inference::data_len(&outputs);
        scratch.pending.clear();
        if bytes <= out.len() {
            inference::copy_data(&outputs, out);
        } else {
            scratch.pending.resize(bytes, 0);
            inference::copy_data(&outputs, &mut scratch.pending);
        }
        let changed = !scratch.same_layout(&outputs);
        if changed {
            scratch.remember(&outputs);
        }
        Ok(bytes as f64 * 2.0 + if changed { 1.0 } else { 0.0 })
    }

    /// The spec of the outputs `inferInto` returned last.
    #[napi(catch_unwind)]
    pub fn infer_output_spec(&mut self) -> String {
        self.infer_out.last_spec.clone()
    }

    /// Copies the outputs `inferInto` could not fit into `out` (at least as large as they
    /// are); false if there are none or `out` is too small.
    #[napi(catch_unwind)]
    pub fn infer_take_outputs(&mut self, mut out: Uint8ArraySlice<'_>) -> bool {
        // SAFETY: as in `infer_into`: JS memory alive during this synchronous call, the only
        // reference to it.
        let out = unsafe { out.as_mut() };
        let pending = std::mem::take(&mut self.infer_out.pending);
        let Some(slot) = out.get_mut(..pending.len()).filter(|_| !pending.is_empty()) else { return false };
        slot.copy_from_slice(&pending);
        true
    }

    #[napi(catch_unwind)]
    pub fn load_module(&mut self, bytes: Uint8Array) -> Result<String> {
        self.rt_mut()?.load_module(bytes.to_vec()).map(|h| h.to_hex()).map_err(to_napi)
    }

    /// Spawns from a module hash; `priority` (default 0) orders it among the agents of its
    /// graph level in each tick; `after` (agent ids) and `trigger` ('any' or 'all') make it
    /// downstream of those agents (checked before it is spawned).
    #[napi(catch_unwind)]
    pub fn spawn(
        &mut self,
        module: String,
        priority: Option<f64>,
        after: Option<Vec<f64>>,
        trigger: Option<String>,
        fuel_per_tick: Option<f64>,
    ) -> Result<f64> {
        let priority = arg_int("priority", priority.unwrap_or(0.0), i32::MIN as f64, i32::MAX as f64)? as i32;
        let hash = convert::digest_arg(&module)?;
        let trigger = convert::trigger_arg("options.trigger", trigger.as_deref().unwrap_or("any"))?;
        let after = match after {
            Some(ids) => ids.into_iter().enumerate().map(|(i, id)| id_arg(&format!("options.after[{i}]"), id)).collect::<Result<Vec<u64>>>()?,
            None => Vec::new(),
        };
        let fuel_per_tick = match fuel_per_tick {
            Some(f) => arg_int("options.fuelPerTick", f, 0.0, convert::MAX_SAFE as f64)? as u64,
            None => 0,
        };
        let rt = self.rt_mut()?;
        // The slice is checked before the agent exists, so a refusal spawns nothing.
        if fuel_per_tick > 0 {
            rt.check_fuel_per_tick(hash, fuel_per_tick).map_err(to_napi)?;
        }
        let id = if after.is_empty() && trigger == core::Trigger::Any {
            rt.spawn_with_priority(hash, priority).map_err(to_napi)?
        } else {
            rt.spawn_after(hash, priority, &after, trigger).map_err(to_napi)?
        };
        // An agent whose agent_init faulted is not running: it gets no slice.
        if fuel_per_tick > 0 && rt.inspect(id).map_err(to_napi)?.state.is_running() {
            rt.set_fuel_per_tick(id, fuel_per_tick).map_err(to_napi)?;
        }
        Ok(id_js(id))
    }

    /// Sets an agent's time slice (fuel per call and tick; 0 removes it).
    #[napi(catch_unwind)]
    pub fn set_fuel_per_tick(&mut self, id: f64, fuel_per_tick: f64) -> Result<()> {
        let id = id_arg("id", id)?;
        let fuel = arg_int("fuelPerTick", fuel_per_tick, 0.0, convert::MAX_SAFE as f64)? as u64;
        self.rt_mut()?.set_fuel_per_tick(id, fuel).map_err(to_napi)
    }

    /// Adds the edge `from → to` to the workflow graph; whether it is new.
    #[napi(catch_unwind)]
    pub fn connect(&mut self, from: f64, to: f64) -> Result<bool> {
        let (from, to) = (id_arg("from", from)?, id_arg("to", to)?);
        self.rt_mut()?.connect(from, to).map_err(to_napi)
    }

    /// Removes the edge `from → to`; whether it existed.
    #[napi(catch_unwind)]
    pub fn disconnect(&mut self, from: f64, to: f64) -> Result<bool> {
        let (from, to) = (id_arg("from", from)?, id_arg("to", to)?);
        self.rt_mut()?.disconnect(from, to).map_err(to_napi)
    }

    /// Sets an agent's trigger: 'any' or 'all'.
    #[napi(catch_unwind)]
    pub fn set_trigger(&mut self, id: f64, trigger: String) -> Result<()> {
        let id = id_arg("id", id)?;
        let trigger = convert::trigger_arg("trigger", &trigger)?;
        self.rt_mut()?.set_trigger(id, trigger).map_err(to_napi)
    }

    /// Every edge, ascending, as [from, to] pairs.
    #[napi(catch_unwind)]
    pub fn edges(&mut self) -> Result<Vec<Vec<f64>>> {
        Ok(self.rt()?.edges().into_iter().map(|(f, t)| vec![id_js(f), id_js(t)]).collect())
    }

    /// An agent's place in the graph: its trigger and level.
    #[napi(catch_unwind)]
    pub fn graph_info(&mut self, id: f64) -> Result<GraphInfo> {
        let id = id_arg("id", id)?;
        let rt = self.rt_mut()?;
        let trigger = rt.trigger(id).map_err(to_napi)?.as_str().to_string();
        let level = rt.level(id).map_err(to_napi)?;
        Ok(GraphInfo { trigger, level })
    }

    #[napi(catch_unwind)]
    pub fn send(&mut self, to: f64, kind: f64, priority: f64, payload: Uint8Array) -> Result<()> {
        let to = id_arg("to", to)?;
        let kind = arg_int("kind", kind, 0.0, u32::MAX as f64)? as u32;
        let priority = arg_int("priority", priority, i32::MIN as f64, i32::MAX as f64)? as i32;
        self.rt_mut()?.send(to, kind, priority, payload.to_vec()).map_err(to_napi)
    }

    /// Runs `n` ticks (default 1, at most 2^32 - 1) and returns the report of the last one.
    #[napi(catch_unwind)]
    pub fn tick(&mut self, n: Option<f64>) -> Result<TickReport> {
        let n = arg_int("n", n.unwrap_or(1.0), 1.0, u32::MAX as f64)? as u32;
        // n >= 1 (checked above), so run() returns the last report.
        let rt = self.rt_mut()?;
        let last = rt.run(u64::from(n)).map_err(to_napi)?.ok_or_else(|| error::invalid_config("tick(n) needs n >= 1".into()))?;
        Ok(TickReport::of(&last, rt.events_end()))
    }

    /// Sends `body` to agent `to` as a request (docs/ABI.md, "Requests"); returns its id.
    #[napi(catch_unwind)]
    pub fn send_request(&mut self, to: f64, kind: f64, priority: f64, body: Uint8Array) -> Result<f64> {
        let to = id_arg("to", to)?;
        let kind = arg_int("kind", kind, 0.0, u32::MAX as f64)? as u32;
        let priority = arg_int("priority", priority, i32::MIN as f64, i32::MAX as f64)? as i32;
        self.rt_mut()?.send_request(to, kind, priority, &body).map(|id| id as f64).map_err(to_napi)
    }

    /// Takes the replies to the pending requests (`agents[i]`, `ids[i]`) out of the host
    /// messages; every other message stays for `drainMessages`.
    #[napi(catch_unwind)]
    pub fn take_replies(&mut self, agents: Vec<f64>, ids: Vec<f64>) -> Result<Vec<Reply>> {
        let pending = pending_requests(&agents, &ids)?;
        Ok(self.rt_mut()?.take_replies(&pending).into_iter().map(|(id, m)| Reply { request_id: id as f64, message: m.into() }).collect())
    }

    /// The pending requests (`agents[i]`, `ids[i]`) the dead-letter queue holds, as
    /// `{ requestId, reason }` (they stay there for `drainDeadLetters`).
    #[napi(catch_unwind)]
    pub fn request_dead_letters(&mut self, agents: Vec<f64>, ids: Vec<f64>) -> Result<Vec<RequestDeadLetter>> {
        let pending = pending_requests(&agents, &ids)?;
        Ok(self
            .rt()?
            .request_dead_letters(&pending)
            .into_iter()
            .map(|(id, r)| RequestDeadLetter { request_id: id as f64, reason: r.as_str().into() })
            .collect())
    }

    #[napi(catch_unwind)]
    pub fn shutdown(&mut self, id: f64) -> Result<()> {
        let id = id_arg("id", id)?;
        self.rt_mut()?.shutdown(id).map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn kill(&mut self, id: f64) -> Result<()> {
        let id = id_arg("id", id)?;
        self.rt_mut()?.kill(id).map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn inspect(&mut self, id: f64) -> Result<AgentInfo> {
        Ok(self.rt()?.inspect(id_arg("id", id)?).map_err(to_napi)?.into())
    }

    #[napi(catch_unwind)]
    pub fn agents(&mut self) -> Result<Vec<f64>> {
        Ok(self.rt()?.agent_ids().into_iter().map(id_js).collect())
    }

    #[napi(getter, catch_unwind)]
    pub fn current_tick(&mut self) -> Result<i64> {
        Ok(self.rt()?.current_tick() as i64)
    }

    #[napi(catch_unwind)]
    pub fn state_hash(&mut self) -> Result<String> {
        Ok(self.rt()?.state_hash().to_hex())
    }

    /// Deep hash of every agent's memory; recorded as a checkpoint when recording.
    #[napi(catch_unwind)]
    pub fn deep_hash(&mut self) -> Result<DeepHash> {
        let d = self.rt_mut()?.checkpoint();
        Ok(DeepHash { tick: d.tick as i64, hash: d.hash.to_hex() })
    }

    /// The events as JSON texts, each an array of `lockstep_core::Event`'s serde form, in order
    /// (the outbound ring's events are the same JSON; chunked to stay under V8's longest
    /// string). index.js parses them.
    #[napi(catch_unwind)]
    pub fn drain_events(&mut self) -> Result<Vec<String>> {
        Ok(convert::events_json(&self.rt_mut()?.drain_events()))
    }

    // ----- observing (lockstep_core::observe; the dashboard, docs/DASHBOARD.md) -----------

    /// Every agent as packed rows (`observe::AGENT_ROW_BYTES` each) and the modules they name.
    #[napi(catch_unwind)]
    pub fn agent_table(&mut self) -> Result<AgentTable> {
        let t = self.rt()?.agent_table();
        Ok(AgentTable { rows: t.rows.into(), modules: t.modules.iter().map(|m| m.to_hex()).collect() })
    }

    /// [running, preempted, faulted, stopped, killed, events, dead letters, host messages,
    /// pending inputs, outbound backlog, events dropped].
    #[napi(catch_unwind)]
    pub fn observe_counts(&mut self) -> Result<Vec<f64>> {
        let rt = self.rt()?;
        let q = rt.queue_depths();
        let mut out: Vec<f64> = rt.agent_state_counts().iter().map(|&c| c as f64).collect();
        out.extend([q.events, q.dead_letters, q.host_messages, q.pending_inputs, q.outbound_backlog, q.events_dropped].map(|c| c as f64));
        Ok(out)
    }

    /// The queued events from sequence number `cursor` on, at most `max`, without draining
    /// them: `{"first":n,"events":[...]}` (`first`: the sequence number of the first event still
    /// queued); "" when there is nothing new (no event from `cursor` on, and none missed).
    #[napi(catch_unwind)]
    pub fn events_since(&mut self, cursor: f64, max: u32) -> Result<String> {
        let cursor = arg_int("cursor", cursor, 0.0, convert::MAX_SAFE as f64)? as u64;
        let (first, events) = self.rt()?.events_since(cursor, max as usize);
        if events.is_empty() && first <= cursor {
            // Nothing new (most ticks): no text to build or parse.
            return Ok(String::new());
        }
        let mut json = format!("{{\"first\":{first},\"events\":[");
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&e.to_json());
        }
        json.push_str("]}");
        Ok(json)
    }

    /// Watches these agents' messages (replaces the set; [] stops the tap).
    #[napi(catch_unwind)]
    pub fn watch_agents(&mut self, ids: Vec<f64>) -> Result<()> {
        let ids = ids.iter().map(|&id| id_arg("ids[]", id)).collect::<Result<Vec<_>>>()?;
        self.rt_mut()?.watch_agents(&ids);
        Ok(())
    }

    /// What the tap kept of a watched agent, or null if it is not watched.
    #[napi(catch_unwind)]
    pub fn watched_messages(&mut self, id: f64) -> Result<Option<WatchedMessages>> {
        let id = id_arg("id", id)?;
        Ok(self.rt()?.watched_messages(id).map(|w| WatchedMessages {
            inbound: w.inbound.iter().map(TappedMessage::from).collect(),
            outbound: w.outbound.iter().map(TappedMessage::from).collect(),
        }))
    }

    #[napi(catch_unwind)]
    pub fn events_dropped(&mut self) -> Result<i64> {
        Ok(self.rt()?.events_dropped() as i64)
    }

    #[napi(catch_unwind)]
    pub fn drain_dead_letters(&mut self) -> Result<Vec<DeadLetter>> {
        Ok(self.rt_mut()?.drain_dead_letters().into_iter().map(DeadLetter::from).collect())
    }

    /// Messages agents sent to the host (id 0).
    #[napi(catch_unwind)]
    pub fn drain_messages(&mut self) -> Result<Vec<AgentMessage>> {
        Ok(self.rt_mut()?.drain_host_messages().into_iter().map(AgentMessage::from).collect())
    }

    #[napi(catch_unwind)]
    pub fn start_recording(&mut self) -> Result<()> {
        self.rt_mut()?.start_recording().map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn stop_recording(&mut self) -> Result<Buffer> {
        self.rt_mut()?.stop_recording().map(Buffer::from).map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn replay_log(&mut self) -> Result<Buffer> {
        self.rt()?.replay_log().map(Buffer::from).map_err(to_napi)
    }

    /// Attaches the JS→core ring (a Uint8Array over an initialised SharedArrayBuffer ring).
    #[napi(catch_unwind, ts_args_type = "buffer: Uint8Array")]
    pub fn attach_inbound_ring(&mut self, buffer: Unknown<'_>) -> Result<()> {
        self.attach_ring(shared_uint8_array(buffer)?, Runtime::attach_inbound_ring)
    }

    /// Attaches the core→JS ring.
    #[napi(catch_unwind, ts_args_type = "buffer: Uint8Array")]
    pub fn attach_outbound_ring(&mut self, buffer: Unknown<'_>) -> Result<()> {
        self.attach_ring(shared_uint8_array(buffer)?, Runtime::attach_outbound_ring)
    }

    /// Writes waiting records into the outbound ring; returns how many still wait.
    #[napi(catch_unwind)]
    pub fn flush_outbound(&mut self) -> Result<u32> {
        Ok(self.rt_mut()?.flush_outbound() as u32)
    }

    #[napi(catch_unwind)]
    pub fn inbound_ring_error(&mut self) -> Result<Option<String>> {
        Ok(self.rt()?.inbound_ring_error().map(|e| e.to_string()))
    }

    #[napi(getter, catch_unwind)]
    pub fn recording(&mut self) -> Result<bool> {
        Ok(self.rt()?.is_recording())
    }

    /// Test hook: panics inside a method (with `&mut self` borrowed), to show that a panic
    /// becomes an E_INTERNAL error and the runtime stays usable. Only with
    /// LOCKSTEP_TEST_HOOKS=1 in the environment.
    #[napi(catch_unwind)]
    pub fn test_panic(&mut self, message: String) -> Result<()> {
        self.rt_mut()?;
        test_hooks()?;
        panic!("{message}");
    }

    /// Test hook: a tickAsync whose task panics on the thread pool. Only with
    /// LOCKSTEP_TEST_HOOKS=1 in the environment.
    #[napi(catch_unwind, ts_return_type = "Promise<TickReport>")]
    pub fn test_panic_tick_async<'env>(&mut self, env: &'env Env, message: String) -> Result<PromiseRaw<'env, TickReport>> {
        test_hooks()?;
        self.spawn_ticks(env, 1, Some(message))
    }
}

/// (agent, request id) pairs from two parallel arrays.
/// An agent's place in the workflow graph.
#[napi(object)]
pub struct GraphInfo {
    /// 'any' or 'all'.
    pub trigger: String,
    /// 0 without upstream agents, else one more than its deepest upstream agent's.
    pub level: u32,
}

fn pending_requests(agents: &[f64], ids: &[f64]) -> Result<Vec<(u64, u64)>> {
    if agents.len() != ids.len() {
        return Err(invalid_arg("ids", "must be as long as agents".into()));
    }
    agents.iter().zip(ids).map(|(&a, &i)| Ok((id_arg("agents", a)?, arg_int("ids", i, 0.0, convert::MAX_SAFE as f64)? as u64))).collect()
}

/// Refuses test hooks unless LOCKSTEP_TEST_HOOKS=1.
fn test_hooks() -> Result<()> {
    if std::env::var("LOCKSTEP_TEST_HOOKS").as_deref() == Ok("1") {
        Ok(())
    } else {
        Err(invalid_arg("testPanic", "a test hook, enabled only with LOCKSTEP_TEST_HOOKS=1".into()))
    }
}

/// Test hook: panics in a free function. Only with LOCKSTEP_TEST_HOOKS=1 in the environment.
#[napi(catch_unwind)]
pub fn test_panic(message: String) -> Result<()> {
    test_hooks()?;
    panic!("{message}");
}

/// The agent ABI version this build speaks.
#[napi(catch_unwind)]
pub fn abi_version() -> u32 {
    core::abi::ABI_VERSION
}

/// Runs `model` on packed inputs read in place from `data` (views valid for this synchronous
/// call: no copy on the way in).
fn run_packed(engine: &InferenceEngine, model: &str, spec: &str, data: &[u8]) -> Result<Vec<(String, lockstep_core::inference::Output)>> {
    run_views(engine, model, &inference::parse_packed(spec, data.len())?, data)
}

/// Runs `model` on inputs already parsed (`packed`'s ranges lie inside `data`).
fn run_views(engine: &InferenceEngine, model: &str, packed: &[inference::PackedInput], data: &[u8]) -> Result<Vec<(String, lockstep_core::inference::Output)>> {
    let bytes = packed
        .iter()
        .map(|(.., range)| {
            data.get(range.clone())
                .ok_or_else(|| to_napi(BindError { code: "E_INVALID_ARGUMENT", message: "malformed packed inputs: data shorter than declared".into() }))
        })
        .collect::<Result<Vec<_>>>()?;
    run_each(engine, model, packed, &bytes)
}

/// index.js passes distinct buffers; views of the same memory are refused all the same.
fn refuse_overlap(parts: &[&[u8]], out: &[u8]) -> Result<()> {
    let o = out.as_ptr_range();
    if !out.is_empty() && parts.iter().any(|d| !d.is_empty() && d.as_ptr_range().start < o.end && o.start < d.as_ptr_range().end) {
        return Err(to_napi(BindError { code: "E_INVALID_ARGUMENT", message: "inferInto: the output buffer overlaps the inputs".into() }));
    }
    Ok(())
}

/// Runs `model` on inputs already parsed, input `i`'s bytes in `parts[i]` (exactly its
/// range's length: the spec's ranges are those of the packed layout).
fn run_parts(
    engine: &InferenceEngine,
    model: &str,
    packed: &[inference::PackedInput],
    parts: &[&[u8]],
) -> Result<Vec<(String, lockstep_core::inference::Output)>> {
    if packed.len() != parts.len() {
        return Err(to_napi(BindError {
            code: "E_INVALID_ARGUMENT",
            message: format!("malformed inputs: the spec names {} inputs, {} arrays were given", packed.len(), parts.len()),
        }));
    }
    if let Some(((name, .., range), data)) = packed.iter().zip(parts).find(|((.., range), data)| data.len() != range.len()) {
        return Err(to_napi(BindError {
            code: "E_INVALID_ARGUMENT",
            message: format!("malformed inputs: input \"{name}\" declares {} bytes, its array holds {}", range.len(), data.len()),
        }));
    }
    run_each(engine, model, packed, parts)
}

/// Runs `model` on the parsed inputs `packed`, input `i`'s bytes being `bytes[i]` (checked).
fn run_each(
    engine: &InferenceEngine,
    model: &str,
    packed: &[inference::PackedInput],
    bytes: &[&[u8]],
) -> Result<Vec<(String, lockstep_core::inference::Output)>> {
    let views: Vec<_> = packed
        .iter()
        .zip(bytes)
        .map(|((name, dtype, shape, _), data)| (name.as_str(), lockstep_core::inference::TensorView { dtype: *dtype, shape, data }))
        .collect();
    engine.run_output_views(model, &views).map_err(to_napi)
}

/// The id the inference service uses as a sender (u64::MAX), as a JS number (2^64).
#[napi(catch_unwind)]
pub fn inference_id() -> f64 {
    id_js(core::abi::INFERENCE_ID)
}

/// The largest message payload, bytes.
#[napi(catch_unwind)]
pub fn max_payload_bytes() -> u32 {
    core::abi::MAX_PAYLOAD_BYTES as u32
}

// ----- signing tools (also behind `npx lockstep keygen|sign|verify|inspect`) ---------------------

/// A new publisher key pair.
#[napi(catch_unwind)]
pub fn keygen() -> KeyPair {
    let (public, secret) = core::security::keygen();
    KeyPair { public_key: core::security::hex(&public), secret_key: core::security::hex(&secret) }
}

/// Embeds the manifest (JSON) into the module and signs both with the secret key.
#[napi(catch_unwind)]
pub fn sign_module(module: Uint8Array, manifest_json: String, secret_key: String) -> Result<Buffer> {
    let secret = core::security::parse_key(&secret_key).map_err(|e| in_context("secretKey", e))?;
    core::security::sign(&module, manifest_json.as_bytes(), &secret).map(Buffer::from).map_err(to_napi)
}

/// Would a runtime trusting `trusted_keys` admit this module?
#[napi(catch_unwind)]
pub fn verify_module(module: Uint8Array, trusted_keys: Vec<String>) -> Result<VerifyResult> {
    let keys = trusted_keys
        .iter()
        .enumerate()
        .map(|(i, k)| core::security::parse_public_key(k).map_err(|e| in_context(&format!("trustedKeys[{i}]"), e)))
        .collect::<Result<Vec<_>>>()?;
    Ok(match core::security::admit(&module, &keys, false) {
        Ok(a) => VerifyResult { ok: true, code: None, message: None, publisher: a.publisher.map(|k| core::security::hex(&k)) },
        Err(e) => VerifyResult { ok: false, code: Some(e.code().into()), message: Some(e.to_string()), publisher: None },
    })
}

/// What a module asks for and who signed it.
#[napi(catch_unwind)]
pub fn inspect_module(module: Uint8Array) -> Result<ModuleReport> {
    let sections = core::security::split(&module).map_err(to_napi)?;
    let manifest = sections.manifest.map(|m| String::from_utf8_lossy(m).into_owned());
    let (publisher, signature_valid) = match sections.signature.map(core::security::parse_signature) {
        Some(Ok((key, _))) => (Some(core::security::hex(&key)), core::security::admit(&module, &[key], false).is_ok()),
        _ => (None, false),
    };
    let imports = core::security::list_imports(&module);
    Ok(ModuleReport { manifest, publisher, signature_valid, imports })
}

// ----- logs ---------------------------------------------------------------------------------------

/// Sets the level of runtime logs collected for `drainLogs` ("off" stops collecting).
#[napi(catch_unwind)]
pub fn set_log_level(level: String) -> Result<bool> {
    let n =
        core::logging::parse_level(&level).ok_or_else(|| invalid_arg("level", format!("must be off, error, warn, info, debug or trace; got \"{level}\"")))?;
    Ok(core::logging::install(n))
}

/// The runtime log records collected since the last call (and how many were dropped).
#[napi(catch_unwind)]
pub fn drain_logs() -> Vec<LogLine> {
    let (records, dropped) = core::logging::drain();
    let mut out: Vec<LogLine> = records.into_iter().map(LogLine::from).collect();
    if dropped > 0 {
        out.push(LogLine {
            level: "warn".into(),
            target: "lockstep::logging".into(),
            message: format!("{dropped} log records dropped (queue full)"),
            agent: None,
            tick: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    /// What `ALLOCATOR` promises: the addon's heap allocations are mimalloc's.
    #[test]
    fn the_addon_allocates_through_mimalloc() {
        let boxed = Box::new([7u8; 48]);
        let bytes: Vec<u8> = vec![1; 1 << 20];
        for at in [boxed.as_ptr(), bytes.as_ptr()] {
            // SAFETY: `mi_is_in_heap_region` only compares the address with mimalloc's own
            // regions; it does not dereference it.
            assert!(unsafe { libmimalloc_sys::mi_is_in_heap_region(at.cast()) }, "{at:?} is not from mimalloc");
        }
    }
}
