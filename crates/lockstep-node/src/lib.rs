//! Node.js binding: a thin napi-rs layer over `lockstep_core::Runtime`.
//!
//! Every error crosses as `[E_CODE] message`; index.js turns that into `error.code`.
//! Every export is `#[napi(catch_unwind)]`: a Rust panic becomes a JS error (index.js gives it
//! the code E_INTERNAL) instead of aborting Node, which needs `panic = "unwind"` (checked below).
//! Ids are JS numbers (f64: never negative; exact up to 2^53, the nearest double above — ids
//! the runtime assigns are small, an id an agent made up may be large, e.g. `INFERENCE_ID`);
//! hashes are lowercase hex strings.

#[cfg(panic = "abort")]
compile_error!("lockstep-node needs panic = \"unwind\": a panic must become a JS error, not abort Node");

mod inference;

use std::sync::Arc;

use lockstep_core::inference::InferenceEngine;
use lockstep_core::{self as core, Event, LockstepError, Runtime, RuntimeConfig};
use napi::bindgen_prelude::*;
use napi_derive::napi;

fn js_err(e: LockstepError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[{}] {e}", e.code()))
}

fn invalid(reason: String) -> napi::Error {
    js_err(LockstepError::InvalidConfig { reason })
}

fn invalid_arg(name: &str, reason: String) -> napi::Error {
    js_err(LockstepError::InvalidArgument { name: name.into(), reason })
}

/// The largest integer a JS number holds exactly.
const MAX_SAFE: u64 = (1 << 53) - 1;

/// Numbers cross as f64 and are checked here: napi's u32/i32/i64 conversions wrap or
/// truncate silently (2^32 + 3 would become 3).
fn int_in(v: f64, min: f64, max: f64) -> Option<f64> {
    (v.is_finite() && v.fract() == 0.0 && v >= min && v <= max).then_some(v)
}

/// A numeric runtime option: an integer in `min..=max`, or the default.
fn opt_uint(name: &str, v: Option<f64>, min: u64, max: u64, default: u64) -> Result<u64> {
    match v {
        None => Ok(default),
        Some(x) => {
            int_in(x, min as f64, max as f64).map(|x| x as u64).ok_or_else(|| invalid(format!("option {name} must be an integer in {min}..={max}, got {x}")))
        }
    }
}

/// An integer argument in `min..=max`.
fn arg_int(name: &str, v: f64, min: f64, max: f64) -> Result<f64> {
    int_in(v, min, max).ok_or_else(|| invalid_arg(name, format!("must be an integer in {min}..={max}, got {v}")))
}

/// An agent id: a non-negative integer. Ids above 2^53 are approximate as JS numbers; the
/// nearest double to 2^64 - 1 (2^64) stands for 2^64 - 1.
fn id_arg(name: &str, id: f64) -> Result<u64> {
    int_in(id, 0.0, 18446744073709551616.0)
        .map(|id| id as u64) // saturating: 2^64 -> 2^64 - 1
        .ok_or_else(|| invalid_arg(name, format!("must be an agent id (a non-negative integer from spawn()), got {id}")))
}

/// A u64 id as a JS number: never negative (an `as i64` cast made 2^64 - 1 read as -1).
fn id_js(id: u64) -> f64 {
    id as f64
}

#[napi(object)]
#[derive(Default)]
pub struct RuntimeOptions {
    // Numbers as f64, range-checked in `config_from` (napi's integer conversions wrap).
    pub workers: Option<f64>,
    pub fuel_per_call: Option<f64>,
    pub memory_limit_bytes: Option<f64>,
    pub seed: Option<f64>,
    pub max_agents: Option<f64>,
    pub deadline_ms: Option<f64>,
    pub checkpoint_interval_ticks: Option<f64>,
    pub record: Option<bool>,
    pub max_events: Option<f64>,
    pub max_log_bytes: Option<f64>,
    pub inference_batching: Option<bool>,
    pub inference: Option<inference::InferenceOptions>,
    /// Hex public keys of trusted publishers.
    pub trusted_keys: Option<Vec<String>>,
    /// Admit unsigned modules (development only; loud).
    pub dev_mode: Option<bool>,
    /// The operator policy as JSON (capabilities schema); index.js serialises it.
    pub policy_json: Option<String>,
    /// "clamp" (default) or "refuse".
    pub resource_policy: Option<String>,
}

fn config_from(o: RuntimeOptions) -> Result<RuntimeConfig> {
    let d = RuntimeConfig::default();
    Ok(RuntimeConfig {
        workers: opt_uint("workers", o.workers, 1, 256, d.workers as u64)? as usize,
        fuel_per_call: opt_uint("fuelPerCall", o.fuel_per_call, 0, MAX_SAFE, d.fuel_per_call)?,
        memory_limit_bytes: opt_uint("memoryLimitBytes", o.memory_limit_bytes, 0, MAX_SAFE, d.memory_limit_bytes)?,
        seed: opt_uint("seed", o.seed, 0, MAX_SAFE, d.seed)?,
        max_agents: opt_uint("maxAgents", o.max_agents, 1, u32::MAX as u64, d.max_agents as u64)? as u32,
        deadline_ms: opt_uint("deadlineMs", o.deadline_ms, 1, u32::MAX as u64, d.deadline_ms)?,
        checkpoint_interval_ticks: opt_uint("checkpointIntervalTicks", o.checkpoint_interval_ticks, 0, u32::MAX as u64, d.checkpoint_interval_ticks)?,
        record: o.record.unwrap_or(d.record),
        max_events: opt_uint("maxEvents", o.max_events, 0, u32::MAX as u64, d.max_events as u64)? as usize,
        max_log_bytes: opt_uint("maxLogBytes", o.max_log_bytes, 1 << 20, (1u64 << 53) - 1, d.max_log_bytes as u64)? as usize,
        allocator: d.allocator,
        inference_batching: o.inference_batching.unwrap_or(d.inference_batching),
        trusted_keys: o
            .trusted_keys
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, k)| core::security::parse_key(k).map_err(|e| invalid(format!("trustedKeys[{i}]: {e}"))))
            .collect::<Result<Vec<_>>>()?,
        dev_mode: o.dev_mode.unwrap_or(false),
        policy: match o.policy_json {
            Some(j) => serde_json::from_str(&j).map_err(|e| invalid(format!("policy: {e}")))?,
            None => d.policy,
        },
        resource_policy: match o.resource_policy.as_deref() {
            None | Some("clamp") => core::ResourcePolicy::Clamp,
            Some("refuse") => core::ResourcePolicy::Refuse,
            Some(other) => return Err(invalid(format!("resourcePolicy must be \"clamp\" or \"refuse\", got \"{other}\""))),
        },
    })
}

#[napi(object)]
pub struct TickReport {
    pub tick: i64,
    pub hash: String,
    pub agents_stepped: u32,
    pub messages_delivered: i64,
    pub messages_routed: i64,
    pub dead_letters: i64,
    pub faults: u32,
    pub fuel: i64,
    pub parallel: bool,
    pub inference_requests: i64,
    pub inference_calls: i64,
}

impl From<&core::TickReport> for TickReport {
    fn from(r: &core::TickReport) -> Self {
        Self {
            tick: r.tick as i64,
            hash: r.hash.to_hex(),
            agents_stepped: r.agents_stepped,
            messages_delivered: r.messages_delivered as i64,
            messages_routed: r.messages_routed as i64,
            dead_letters: r.dead_letters as i64,
            faults: r.faults,
            fuel: r.fuel as i64,
            parallel: r.parallel,
            inference_requests: r.inference_requests as i64,
            inference_calls: r.inference_calls as i64,
        }
    }
}

#[napi(object)]
pub struct FaultInfo {
    pub kind: String,
    pub call: String,
    pub tick: i64,
    pub detail: String,
}

fn fault_info(f: &core::Fault) -> FaultInfo {
    FaultInfo { kind: f.kind.as_str().into(), call: f.call.export_name().into(), tick: f.tick as i64, detail: f.detail.clone() }
}

#[napi(object)]
pub struct AgentInfo {
    pub id: f64,
    pub module: String,
    pub state: String,
    pub fault: Option<FaultInfo>,
    pub steps: i64,
    pub messages_received: i64,
    pub messages_sent: i64,
    pub inbox_len: u32,
    pub memory_bytes: i64,
    pub fuel_consumed: i64,
}

#[napi(object)]
pub struct RuntimeEvent {
    /// spawned | fault | stopped | killed | dead_letter | log
    pub r#type: String,
    pub tick: i64,
    pub agent: Option<f64>,
    pub module: Option<String>,
    pub fault: Option<FaultInfo>,
    pub reason: Option<String>,
    pub from: Option<f64>,
    pub to: Option<f64>,
    pub seq: Option<i64>,
    pub kind: Option<u32>,
    pub level: Option<u32>,
    pub text: Option<String>,
    pub detail: Option<String>,
    pub code: Option<String>,
    /// `dropped` events: which bounded queue was full, and how many items it refused.
    pub queue: Option<String>,
    pub count: Option<i64>,
}

fn event_js(e: Event) -> RuntimeEvent {
    let mut out = RuntimeEvent {
        r#type: e.kind().into(),
        tick: 0,
        agent: None,
        module: None,
        fault: None,
        reason: None,
        from: None,
        to: None,
        seq: None,
        kind: None,
        level: None,
        text: None,
        detail: None,
        code: None,
        queue: None,
        count: None,
    };
    match e {
        Event::Spawned { tick, agent, module } => {
            out.tick = tick as i64;
            out.agent = Some(id_js(agent));
            out.module = Some(module.to_hex());
        }
        Event::Fault { tick, agent, fault } => {
            out.tick = tick as i64;
            out.agent = Some(id_js(agent));
            out.fault = Some(fault_info(&fault));
        }
        Event::Stopped { tick, agent } | Event::Killed { tick, agent } => {
            out.tick = tick as i64;
            out.agent = Some(id_js(agent));
        }
        Event::DeadLetter { tick, reason, from, to, seq, kind } => {
            out.tick = tick as i64;
            out.reason = Some(reason.as_str().into());
            out.from = Some(id_js(from));
            out.to = Some(id_js(to));
            out.seq = Some(seq as i64);
            out.kind = Some(kind);
        }
        Event::Log { tick, agent, level, text } => {
            out.tick = tick as i64;
            out.agent = Some(id_js(agent));
            out.level = Some(level);
            out.text = Some(text);
        }
        Event::RingError { tick, detail } | Event::Security { tick, detail } | Event::RecordingStopped { tick, detail } => {
            out.tick = tick as i64;
            out.detail = Some(detail);
        }
        Event::ModuleRefused { tick, code, detail } => {
            out.tick = tick as i64;
            out.code = Some(code);
            out.detail = Some(detail);
        }
        Event::Dropped { tick, queue, count } => {
            out.tick = tick as i64;
            out.queue = Some(queue.into());
            out.count = Some(count as i64);
        }
    }
    out
}

#[napi(object)]
pub struct AgentMessage {
    pub from: f64,
    pub to: f64,
    pub seq: i64,
    pub kind: u32,
    pub priority: i32,
    pub payload: Buffer,
}

#[napi(object)]
pub struct DeadLetter {
    pub tick: i64,
    pub reason: String,
    pub message: AgentMessage,
}

fn message_js(m: core::Message) -> AgentMessage {
    AgentMessage { from: id_js(m.from), to: id_js(m.to), seq: m.seq as i64, kind: m.kind, priority: m.priority, payload: m.payload.into() }
}

#[napi(object)]
pub struct DeepHash {
    pub tick: i64,
    pub hash: String,
}

impl NativeRuntime {
    /// Attaches a ring and keeps its buffer referenced for as long as this runtime lives.
    fn attach_ring(
        &mut self,
        buffer: Uint8Array,
        attach: fn(&mut Runtime, core::ring::RingMemory) -> std::result::Result<(), core::ring::RingError>,
    ) -> Result<()> {
        let memory = ring_memory(&buffer)?;
        attach(self.rt_mut()?, memory).map_err(ring_err)?;
        self.ring_buffers.push(buffer);
        Ok(())
    }

    /// The open runtime, or E_CLOSED.
    fn rt(&self) -> Result<&Runtime> {
        self.inner.as_ref().ok_or_else(|| js_err(LockstepError::Closed))
    }

    fn rt_mut(&mut self) -> Result<&mut Runtime> {
        self.inner.as_mut().ok_or_else(|| js_err(LockstepError::Closed))
    }
}

/// The native runtime. Use the `Runtime` class from index.js, which wraps this one.
#[napi(custom_finalize)]
pub struct NativeRuntime {
    // Field order matters: `inner` (which holds raw views into the ring buffers) is dropped
    // before `ring_buffers` releases the references that keep those buffers alive; `close()`
    // releases them in the same order. None once closed.
    inner: Option<Runtime>,
    /// The typed arrays over the rings' SharedArrayBuffers. Holding them holds napi references
    /// in this (the runtime's) environment, so the memory outlives any worker that shares it.
    ring_buffers: Vec<Uint8Array>,
    inference_options: inference::InferenceOptions,
    /// Created at the first model load: a runtime that never infers never loads ONNX Runtime.
    engine: std::sync::OnceLock<Arc<InferenceEngine>>,
}

impl ObjectFinalize for NativeRuntime {
    /// Runs at garbage collection, outside any napi call, so `catch_unwind` on the methods does
    /// not cover it: a panic while dropping the runtime here would unwind out of a napi
    /// finalizer and abort Node. It is caught (and reported on stderr by the panic hook).
    fn finalize(mut self, _env: Env) -> Result<()> {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.close()));
        Ok(())
    }
}

fn ring_err(e: core::ring::RingError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[E_RING] {e}"))
}

/// The Uint8Array a ring lives in, refused unless it views a SharedArrayBuffer: the core keeps
/// a raw pointer into it, and only a SharedArrayBuffer's memory can never go away while the
/// napi reference holds it. A plain ArrayBuffer can be detached (transferred with
/// postMessage/structuredClone), which frees or moves its memory under the core: the next
/// tick then wrote into freed memory (Node crashed with SIGSEGV).
fn shared_uint8_array(value: Unknown<'_>) -> Result<Uint8Array> {
    let (env, raw) = (value.value().env, value.value().value);
    let refuse =
        || napi::Error::new(Status::InvalidArg, "[E_RING] a ring buffer must be a Uint8Array over a SharedArrayBuffer (from createRingBuffer())".to_string());
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
        Uint8Array::from_napi_value(env, raw)
    }
}

fn ring_memory(buffer: &Uint8Array) -> Result<core::ring::RingMemory> {
    // SAFETY: RingMemory's invariants: the buffer stays alive because the Uint8Array is
    // stored in `ring_buffers` until this runtime is dropped or closed, after `inner`;
    // SharedArrayBuffer backing stores never move; alignment is checked by `from_raw`.
    unsafe { core::ring::RingMemory::from_raw(buffer.as_ptr() as *mut u8, buffer.len()) }.map_err(ring_err)
}

#[napi]
impl NativeRuntime {
    #[napi(constructor, catch_unwind)]
    pub fn new(options: Option<RuntimeOptions>) -> Result<Self> {
        let mut options = options.unwrap_or_default();
        let inference_options = options.inference.take().unwrap_or_default();
        inference::check_options(&inference_options)?;
        let config = config_from(options)?;
        Ok(Self { inner: Some(Runtime::new(config).map_err(js_err)?), ring_buffers: Vec::new(), inference_options, engine: Default::default() })
    }

    /// Frees the runtime now (agents, their reserved memory, the rings' references, the
    /// inference engine) instead of at garbage collection. Idempotent; every other method
    /// then throws E_CLOSED. An `infer` already running keeps its engine until it ends.
    #[napi(catch_unwind)]
    pub fn close(&mut self) {
        // The runtime (which views the ring buffers) before the buffers.
        drop(self.inner.take());
        self.ring_buffers.clear();
        self.engine.take();
    }

    #[napi(getter, catch_unwind)]
    pub fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// The engine, created at first use. Methods that use it take `&self`, so an `infer`
    /// still running on the thread pool never blocks another call on this runtime.
    fn engine(&self) -> Result<Arc<InferenceEngine>> {
        self.rt()?;
        if let Some(e) = self.engine.get() {
            return Ok(e.clone());
        }
        let created = Arc::new(inference::engine_from(&self.inference_options)?);
        Ok(self.engine.get_or_init(|| created).clone())
    }

    /// Loads an ONNX model (the same bytes load once) and describes it.
    #[napi(catch_unwind)]
    pub fn load_model(&self, bytes: Uint8Array) -> Result<inference::ModelInfo> {
        let engine = self.engine()?;
        engine.load(bytes.to_vec()).map(inference::model_info).map_err(inference::inf_err)
    }

    #[napi(catch_unwind)]
    pub fn model_info(&self, id: String) -> Result<inference::ModelInfo> {
        let engine = self.engine()?;
        engine.info(&id).map(inference::model_info).map_err(inference::inf_err)
    }

    #[napi(catch_unwind)]
    pub fn list_models(&self) -> Result<Vec<inference::ModelInfo>> {
        Ok(self.engine()?.list().into_iter().map(inference::model_info).collect())
    }

    #[napi(catch_unwind)]
    pub fn unload_model(&self, id: String) -> Result<bool> {
        Ok(self.engine()?.unload(&id))
    }

    /// Makes a loaded model available to agents; returns its slot (the `model` argument of
    /// the agents' `infer` import).
    #[napi(catch_unwind)]
    pub fn register_agent_model(&mut self, id: String) -> Result<u32> {
        let engine = self.engine()?;
        let rt = self.rt_mut()?;
        rt.set_inference_engine(engine);
        rt.register_agent_model(&id).map_err(js_err)
    }

    /// The ONNX Runtime library in use.
    #[napi(catch_unwind)]
    pub fn inference_library(&self) -> Result<String> {
        Ok(self.engine()?.library_path().display().to_string())
    }

    /// Runs a model on libuv's thread pool, packed inputs and outputs (see `infer_packed`).
    /// The inputs are copied: JS may reuse its buffer while the call runs.
    #[napi(catch_unwind, ts_return_type = "Promise<PackedTensors>")]
    pub fn infer_async(&self, model: String, spec: String, data: Uint8Array) -> Result<AsyncTask<inference::InferTask>> {
        let engine = self.engine()?;
        let inputs = inference::unpack_owned(&spec, &data)?;
        Ok(AsyncTask::new(inference::InferTask { engine, model, inputs }))
    }

    /// Runs a model on the calling thread with packed inputs and outputs (see
    /// `inference::unpack_inputs`): the fast path index.js uses.
    #[napi(catch_unwind)]
    pub fn infer_packed(&self, model: String, spec: String, data: Uint8Array) -> Result<inference::PackedTensors> {
        let engine = self.engine()?;
        let packed = inference::parse_packed(&spec, data.len())?;
        // Views into the caller's buffer, valid for this synchronous call: no copy on the way in.
        let views: Vec<(&str, lockstep_core::inference::TensorView<'_>)> = packed
            .iter()
            .map(|(name, dtype, shape, range)| (name.as_str(), lockstep_core::inference::TensorView { dtype: *dtype, shape, data: &data[range.clone()] }))
            .collect();
        engine.run_views(&model, &views).map(inference::pack_outputs).map_err(inference::inf_err)
    }

    #[napi(catch_unwind)]
    pub fn load_module(&mut self, bytes: Uint8Array) -> Result<String> {
        self.rt_mut()?.load_module(bytes.to_vec()).map(|h| h.to_hex()).map_err(js_err)
    }

    /// Spawns from a module hash; `priority` (default 0) is the agent's phase in each tick.
    #[napi(catch_unwind)]
    pub fn spawn(&mut self, module: String, priority: Option<f64>) -> Result<f64> {
        let priority = arg_int("priority", priority.unwrap_or(0.0), i32::MIN as f64, i32::MAX as f64)? as i32;
        let hash = parse_digest(&module)?;
        self.rt_mut()?.spawn_with_priority(hash, priority).map(id_js).map_err(js_err)
    }

    #[napi(catch_unwind)]
    pub fn send(&mut self, to: f64, kind: f64, priority: f64, payload: Uint8Array) -> Result<()> {
        let to = id_arg("to", to)?;
        let kind = arg_int("kind", kind, 0.0, u32::MAX as f64)? as u32;
        let priority = arg_int("priority", priority, i32::MIN as f64, i32::MAX as f64)? as i32;
        self.rt_mut()?.send(to, kind, priority, payload.to_vec()).map_err(js_err)
    }

    /// Runs `n` ticks (default 1, at most 2^32 - 1) and returns the report of the last one.
    #[napi(catch_unwind)]
    pub fn tick(&mut self, n: Option<f64>) -> Result<TickReport> {
        let n = arg_int("n", n.unwrap_or(1.0), 1.0, u32::MAX as f64)? as u32;
        // n >= 1 (checked above), so run() returns the last report.
        let last = self.rt_mut()?.run(u64::from(n)).ok_or_else(|| invalid("tick(n) needs n >= 1".into()))?;
        Ok(TickReport::from(&last))
    }

    #[napi(catch_unwind)]
    pub fn shutdown(&mut self, id: f64) -> Result<()> {
        let id = id_arg("id", id)?;
        self.rt_mut()?.shutdown(id).map_err(js_err)
    }

    #[napi(catch_unwind)]
    pub fn kill(&mut self, id: f64) -> Result<()> {
        let id = id_arg("id", id)?;
        self.rt_mut()?.kill(id).map_err(js_err)
    }

    #[napi(catch_unwind)]
    pub fn inspect(&self, id: f64) -> Result<AgentInfo> {
        let i = self.rt()?.inspect(id_arg("id", id)?).map_err(js_err)?;
        let fault = match &i.state {
            core::AgentState::Faulted(f) => Some(fault_info(f)),
            _ => None,
        };
        Ok(AgentInfo {
            id: id_js(i.id),
            module: i.module.to_hex(),
            state: i.state.name().into(),
            fault,
            steps: i.steps as i64,
            messages_received: i.messages_received as i64,
            messages_sent: i.messages_sent as i64,
            inbox_len: i.inbox_len as u32,
            memory_bytes: i.memory_bytes as i64,
            fuel_consumed: i.fuel_consumed as i64,
        })
    }

    #[napi(catch_unwind)]
    pub fn agents(&self) -> Result<Vec<f64>> {
        Ok(self.rt()?.agent_ids().into_iter().map(id_js).collect())
    }

    #[napi(getter, catch_unwind)]
    pub fn current_tick(&self) -> Result<i64> {
        Ok(self.rt()?.current_tick() as i64)
    }

    #[napi(catch_unwind)]
    pub fn state_hash(&self) -> Result<String> {
        Ok(self.rt()?.state_hash().to_hex())
    }

    /// Deep hash of every agent's memory; recorded as a checkpoint when recording.
    #[napi(catch_unwind)]
    pub fn deep_hash(&mut self) -> Result<DeepHash> {
        let d = self.rt_mut()?.checkpoint();
        Ok(DeepHash { tick: d.tick as i64, hash: d.hash.to_hex() })
    }

    #[napi(catch_unwind)]
    pub fn drain_events(&mut self) -> Result<Vec<RuntimeEvent>> {
        Ok(self.rt_mut()?.drain_events().into_iter().map(event_js).collect())
    }

    #[napi(catch_unwind)]
    pub fn events_dropped(&self) -> Result<i64> {
        Ok(self.rt()?.events_dropped() as i64)
    }

    #[napi(catch_unwind)]
    pub fn drain_dead_letters(&mut self) -> Result<Vec<DeadLetter>> {
        Ok(self
            .rt_mut()?
            .drain_dead_letters()
            .into_iter()
            .map(|d| DeadLetter { tick: d.tick as i64, reason: d.reason.as_str().into(), message: message_js(d.message) })
            .collect())
    }

    /// Messages agents sent to the host (id 0).
    #[napi(catch_unwind)]
    pub fn drain_messages(&mut self) -> Result<Vec<AgentMessage>> {
        Ok(self.rt_mut()?.drain_host_messages().into_iter().map(message_js).collect())
    }

    #[napi(catch_unwind)]
    pub fn start_recording(&mut self) -> Result<()> {
        self.rt_mut()?.start_recording().map_err(js_err)
    }

    #[napi(catch_unwind)]
    pub fn stop_recording(&mut self) -> Result<Buffer> {
        self.rt_mut()?.stop_recording().map(Buffer::from).map_err(js_err)
    }

    #[napi(catch_unwind)]
    pub fn replay_log(&self) -> Result<Buffer> {
        self.rt()?.replay_log().map(Buffer::from).map_err(js_err)
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
    pub fn inbound_ring_error(&self) -> Result<Option<String>> {
        Ok(self.rt()?.inbound_ring_error().map(|e| e.to_string()))
    }

    #[napi(getter, catch_unwind)]
    pub fn recording(&self) -> Result<bool> {
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

fn parse_digest(hex: &str) -> Result<core::Digest> {
    let bad = || js_err(LockstepError::InvalidModule { reason: format!("`{hex}` is not a module hash returned by loadModule") });
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(core::Digest(out))
}

#[napi(object)]
pub struct Divergence {
    /// tick_hash | deep_hash | spawn_id
    pub kind: String,
    pub tick: i64,
    pub agent: Option<f64>,
    pub expected: String,
    pub actual: String,
}

#[napi(object)]
pub struct ReplayReport {
    /// No divergence in what was verified (see `complete` for whether that is the session).
    pub ok: bool,
    /// The whole recorded session was verified: the log ended with its End record and the
    /// replay agrees with all of it (counts, final hash, tail digest). False for a prefix, a
    /// log with a gap, or after a divergence.
    pub complete: bool,
    pub ticks_verified: i64,
    pub checkpoints_verified: i64,
    pub final_hash: String,
    pub divergence: Option<Divergence>,
}

/// Re-runs a recorded session and verifies every tick hash and checkpoint, admitting only
/// modules signed by `trusted_keys` (or unsigned ones with `dev_mode`, if the log was
/// recorded in development mode): a log never grants itself trust. `on_progress` (ticks
/// verified so far) is called every 100 ticks.
#[napi(catch_unwind)]
pub fn replay(
    log: Uint8Array,
    workers: Option<u32>,
    on_progress: Option<Function<f64, ()>>,
    trusted_keys: Vec<String>,
    dev_mode: bool,
) -> Result<ReplayReport> {
    let workers = workers.map(|w| w as usize).unwrap_or_else(|| RuntimeConfig::default().workers);
    let keys = trusted_keys
        .iter()
        .enumerate()
        .map(|(i, k)| core::security::parse_key(k).map_err(|e| invalid(format!("options.trustedKeys[{i}]: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let trust = core::ReplayTrust { trusted_keys: keys, dev_mode };
    let mut callback_error = None;
    let r = core::replay_trusting(&log, workers, Some(&trust), |ticks| {
        if ticks % 100 == 0 && callback_error.is_none() {
            if let Some(f) = on_progress.as_ref() {
                callback_error = f.call(ticks as f64).err();
            }
        }
    })
    .map_err(js_err)?;
    if let Some(e) = callback_error {
        return Err(e);
    }
    Ok(ReplayReport {
        ok: r.divergence.is_none(),
        complete: r.complete,
        ticks_verified: r.ticks_verified as i64,
        checkpoints_verified: r.checkpoints_verified as i64,
        final_hash: r.final_hash.to_hex(),
        divergence: r.divergence.map(|d| Divergence {
            kind: match d.kind {
                core::DivergenceKind::TickHash => "tick_hash",
                core::DivergenceKind::DeepHash => "deep_hash",
                core::DivergenceKind::SpawnId => "spawn_id",
            }
            .into(),
            tick: d.tick as i64,
            agent: d.agent.map(id_js),
            expected: d.expected.to_hex(),
            actual: d.actual.to_hex(),
        }),
    })
}

/// The agent ABI version this build speaks.
#[napi(catch_unwind)]
pub fn abi_version() -> u32 {
    core::abi::ABI_VERSION
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

fn sec_err(e: core::security::SecurityError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[{}] {e}", e.code()))
}

/// A key error that names the argument it came from.
fn key_err(what: &str) -> impl Fn(core::security::SecurityError) -> napi::Error + '_ {
    move |e| napi::Error::new(Status::GenericFailure, format!("[{}] {what}: {e}", e.code()))
}

#[napi(object)]
pub struct KeyPair {
    /// Hex ed25519 public key: what runtimes put in trustedKeys.
    pub public_key: String,
    /// Hex secret key: keep it secret.
    pub secret_key: String,
}

/// A new publisher key pair.
#[napi(catch_unwind)]
pub fn keygen() -> KeyPair {
    let (public, secret) = core::security::keygen();
    KeyPair { public_key: core::security::hex(&public), secret_key: core::security::hex(&secret) }
}

/// Embeds the manifest (JSON) into the module and signs both with the secret key.
#[napi(catch_unwind)]
pub fn sign_module(module: Uint8Array, manifest_json: String, secret_key: String) -> Result<Buffer> {
    let secret = core::security::parse_key(&secret_key).map_err(key_err("secretKey"))?;
    core::security::sign(&module, manifest_json.as_bytes(), &secret).map(Buffer::from).map_err(sec_err)
}

#[napi(object)]
pub struct VerifyResult {
    pub ok: bool,
    pub code: Option<String>,
    pub message: Option<String>,
    pub publisher: Option<String>,
}

/// Would a runtime trusting `trusted_keys` admit this module?
#[napi(catch_unwind)]
pub fn verify_module(module: Uint8Array, trusted_keys: Vec<String>) -> Result<VerifyResult> {
    let keys = trusted_keys
        .iter()
        .enumerate()
        .map(|(i, k)| core::security::parse_key(k).map_err(key_err(&format!("trustedKeys[{i}]"))))
        .collect::<Result<Vec<_>>>()?;
    Ok(match core::security::admit(&module, &keys, false) {
        Ok(a) => VerifyResult { ok: true, code: None, message: None, publisher: a.publisher.map(|k| core::security::hex(&k)) },
        Err(e) => VerifyResult { ok: false, code: Some(e.code().into()), message: Some(e.to_string()), publisher: None },
    })
}

#[napi(object)]
pub struct ModuleReport {
    /// The embedded manifest (JSON text), if any.
    pub manifest: Option<String>,
    /// The key that signed it, if signed.
    pub publisher: Option<String>,
    /// Whether the signature matches the module under the key it names (trust is separate).
    pub signature_valid: bool,
    /// Host imports as "module::name".
    pub imports: Vec<String>,
}

/// What a module asks for and who signed it.
#[napi(catch_unwind)]
pub fn inspect_module(module: Uint8Array) -> Result<ModuleReport> {
    let sections = core::security::split(&module).map_err(sec_err)?;
    let manifest = sections.manifest.map(|m| String::from_utf8_lossy(m).into_owned());
    let (publisher, signature_valid) = match sections.signature.map(core::security::parse_signature) {
        Some(Ok((key, _))) => (Some(core::security::hex(&key)), core::security::admit(&module, &[key], false).is_ok()),
        _ => (None, false),
    };
    let imports = core::security::list_imports(&module);
    Ok(ModuleReport { manifest, publisher, signature_valid, imports })
}

// ----- logs ---------------------------------------------------------------------------------------

#[napi(object)]
pub struct LogLine {
    /// error | warn | info | debug | trace
    pub level: String,
    pub target: String,
    pub message: String,
}

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
    let name = |l: u8| ["off", "error", "warn", "info", "debug", "trace"].get(l as usize).copied().unwrap_or("trace").to_string();
    let mut out: Vec<LogLine> = records.into_iter().map(|r| LogLine { level: name(r.level), target: r.target, message: r.message }).collect();
    if dropped > 0 {
        out.push(LogLine { level: "warn".into(), target: "lockstep::logging".into(), message: format!("{dropped} log records dropped (queue full)") });
    }
    out
}
