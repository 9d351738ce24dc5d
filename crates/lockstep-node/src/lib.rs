//! Node.js binding: a thin napi-rs layer over `lockstep_core::Runtime`.
//!
//! Every error crosses as `[E_CODE] message`; index.js turns that into `error.code`.
//! Ids are JS numbers (exact up to 2^53); hashes are lowercase hex strings.

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

fn id_arg(id: i64) -> Result<u64> {
    u64::try_from(id).map_err(|_| js_err(LockstepError::UnknownAgent { id: 0 }))
}

fn non_negative(name: &str, v: Option<i64>, default: u64) -> Result<u64> {
    match v {
        None => Ok(default),
        Some(v) if v >= 0 => Ok(v as u64),
        Some(v) => Err(invalid(format!("{name} must be a non-negative integer, got {v}"))),
    }
}

#[napi(object)]
#[derive(Default)]
pub struct RuntimeOptions {
    pub workers: Option<u32>,
    pub fuel_per_call: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
    pub seed: Option<i64>,
    pub max_agents: Option<u32>,
    pub deadline_ms: Option<u32>,
    pub checkpoint_interval_ticks: Option<u32>,
    pub record: Option<bool>,
    pub max_events: Option<u32>,
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
        workers: o.workers.map(|w| w as usize).unwrap_or(d.workers),
        fuel_per_call: non_negative("fuelPerCall", o.fuel_per_call, d.fuel_per_call)?,
        memory_limit_bytes: non_negative("memoryLimitBytes", o.memory_limit_bytes, d.memory_limit_bytes)?,
        seed: non_negative("seed", o.seed, d.seed)?,
        max_agents: o.max_agents.unwrap_or(d.max_agents),
        deadline_ms: o.deadline_ms.map(u64::from).unwrap_or(d.deadline_ms),
        checkpoint_interval_ticks: o.checkpoint_interval_ticks.map(u64::from).unwrap_or(d.checkpoint_interval_ticks),
        record: o.record.unwrap_or(d.record),
        max_events: o.max_events.map(|m| m as usize).unwrap_or(d.max_events),
        allocator: d.allocator,
        inference_batching: o.inference_batching.unwrap_or(d.inference_batching),
        trusted_keys: o
            .trusted_keys
            .unwrap_or_default()
            .iter()
            .map(|k| core::security::parse_key(k).map_err(|e| invalid(format!("trustedKeys: {e}"))))
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
    pub id: i64,
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
    pub agent: Option<i64>,
    pub module: Option<String>,
    pub fault: Option<FaultInfo>,
    pub reason: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub seq: Option<i64>,
    pub kind: Option<u32>,
    pub level: Option<u32>,
    pub text: Option<String>,
    pub detail: Option<String>,
    pub code: Option<String>,
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
    };
    match e {
        Event::Spawned { tick, agent, module } => {
            out.tick = tick as i64;
            out.agent = Some(agent as i64);
            out.module = Some(module.to_hex());
        }
        Event::Fault { tick, agent, fault } => {
            out.tick = tick as i64;
            out.agent = Some(agent as i64);
            out.fault = Some(fault_info(&fault));
        }
        Event::Stopped { tick, agent } | Event::Killed { tick, agent } => {
            out.tick = tick as i64;
            out.agent = Some(agent as i64);
        }
        Event::DeadLetter { tick, reason, from, to, seq, kind } => {
            out.tick = tick as i64;
            out.reason = Some(reason.as_str().into());
            out.from = Some(from as i64);
            out.to = Some(to as i64);
            out.seq = Some(seq as i64);
            out.kind = Some(kind);
        }
        Event::Log { tick, agent, level, text } => {
            out.tick = tick as i64;
            out.agent = Some(agent as i64);
            out.level = Some(level);
            out.text = Some(text);
        }
        Event::RingError { tick, detail } | Event::Security { tick, detail } => {
            out.tick = tick as i64;
            out.detail = Some(detail);
        }
        Event::ModuleRefused { tick, code, detail } => {
            out.tick = tick as i64;
            out.code = Some(code);
            out.detail = Some(detail);
        }
    }
    out
}

#[napi(object)]
pub struct AgentMessage {
    pub from: i64,
    pub to: i64,
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
    AgentMessage { from: m.from as i64, to: m.to as i64, seq: m.seq as i64, kind: m.kind, priority: m.priority, payload: m.payload.into() }
}

#[napi(object)]
pub struct DeepHash {
    pub tick: i64,
    pub hash: String,
}

impl NativeRuntime {
    /// Attaches a ring and keeps its buffer referenced for as long as this runtime lives.
    fn attach_ring(&mut self, buffer: Uint8Array, attach: fn(&mut Runtime, core::ring::RingMemory) -> std::result::Result<(), core::ring::RingError>) -> Result<()> {
        let memory = ring_memory(&buffer)?;
        attach(&mut self.inner, memory).map_err(ring_err)?;
        self.ring_buffers.push(buffer);
        Ok(())
    }
}

/// The native runtime. Use the `Runtime` class from index.js, which wraps this one.
#[napi]
pub struct NativeRuntime {
    // Field order matters: `inner` (which holds raw views into the ring buffers) is dropped
    // before `ring_buffers` releases the references that keep those buffers alive.
    inner: Runtime,
    /// The typed arrays over the rings' SharedArrayBuffers. Holding them holds napi references
    /// in this (the runtime's) environment, so the memory outlives any worker that shares it.
    ring_buffers: Vec<Uint8Array>,
    inference_options: inference::InferenceOptions,
    /// Created at the first model load: a runtime that never infers never loads ONNX Runtime.
    engine: std::sync::OnceLock<Arc<InferenceEngine>>,
}

fn ring_err(e: core::ring::RingError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[E_RING] {e}"))
}

fn ring_memory(buffer: &Uint8Array) -> Result<core::ring::RingMemory> {
    // Safety (RingMemory invariants): the buffer stays alive because the Uint8Array is stored
    // in `ring_buffers` until this runtime is dropped, after `inner`; SharedArrayBuffer
    // backing stores never move; alignment is checked by `from_raw`.
    unsafe { core::ring::RingMemory::from_raw(buffer.as_ptr() as *mut u8, buffer.len()) }.map_err(ring_err)
}

#[napi]
impl NativeRuntime {
    #[napi(constructor)]
    pub fn new(options: Option<RuntimeOptions>) -> Result<Self> {
        let mut options = options.unwrap_or_default();
        let inference_options = options.inference.take().unwrap_or_default();
        let config = config_from(options)?;
        Ok(Self { inner: Runtime::new(config).map_err(js_err)?, ring_buffers: Vec::new(), inference_options, engine: Default::default() })
    }

    /// The engine, created at first use. Methods that use it take `&self`, so an `infer`
    /// still running on the thread pool never blocks another call on this runtime.
    fn engine(&self) -> Result<Arc<InferenceEngine>> {
        if let Some(e) = self.engine.get() {
            return Ok(e.clone());
        }
        let created = Arc::new(inference::engine_from(&self.inference_options)?);
        Ok(self.engine.get_or_init(|| created).clone())
    }

    /// Loads an ONNX model (the same bytes load once) and describes it.
    #[napi]
    pub fn load_model(&self, bytes: Uint8Array) -> Result<inference::ModelInfo> {
        let engine = self.engine()?;
        engine.load(bytes.to_vec()).map(inference::model_info).map_err(inference::inf_err)
    }

    #[napi]
    pub fn model_info(&self, id: String) -> Result<inference::ModelInfo> {
        let engine = self.engine()?;
        engine.info(&id).map(inference::model_info).map_err(inference::inf_err)
    }

    #[napi]
    pub fn list_models(&self) -> Result<Vec<inference::ModelInfo>> {
        Ok(self.engine()?.list().into_iter().map(inference::model_info).collect())
    }

    #[napi]
    pub fn unload_model(&self, id: String) -> Result<bool> {
        Ok(self.engine()?.unload(&id))
    }

    /// Makes a loaded model available to agents; returns its slot (the `model` argument of
    /// the agents' `infer` import).
    #[napi]
    pub fn register_agent_model(&mut self, id: String) -> Result<u32> {
        let engine = self.engine()?;
        self.inner.set_inference_engine(engine);
        self.inner.register_agent_model(&id).map_err(js_err)
    }

    /// The ONNX Runtime library in use.
    #[napi]
    pub fn inference_library(&self) -> Result<String> {
        Ok(self.engine()?.library_path().display().to_string())
    }

    /// Runs a model on libuv's thread pool, packed inputs and outputs (see `infer_packed`).
    /// The inputs are copied: JS may reuse its buffer while the call runs.
    #[napi(ts_return_type = "Promise<PackedTensors>")]
    pub fn infer_async(&self, model: String, spec: String, data: Uint8Array) -> Result<AsyncTask<inference::InferTask>> {
        let engine = self.engine()?;
        let inputs = inference::unpack_owned(&spec, &data)?;
        Ok(AsyncTask::new(inference::InferTask { engine, model, inputs }))
    }

    /// Runs a model on the calling thread with packed inputs and outputs (see
    /// `inference::unpack_inputs`): the fast path index.js uses.
    #[napi]
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

    #[napi]
    pub fn load_module(&mut self, bytes: Uint8Array) -> Result<String> {
        self.inner.load_module(bytes.to_vec()).map(|h| h.to_hex()).map_err(js_err)
    }

    /// Spawns from a module hash; `priority` (default 0) is the agent's phase in each tick.
    #[napi]
    pub fn spawn(&mut self, module: String, priority: Option<i32>) -> Result<i64> {
        let hash = parse_digest(&module)?;
        self.inner.spawn_with_priority(hash, priority.unwrap_or(0)).map(|id| id as i64).map_err(js_err)
    }

    #[napi]
    pub fn send(&mut self, to: i64, kind: u32, priority: i32, payload: Uint8Array) -> Result<()> {
        self.inner.send(id_arg(to)?, kind, priority, payload.to_vec()).map_err(js_err)
    }

    /// Runs `n` ticks (default 1) and returns the report of the last one.
    #[napi]
    pub fn tick(&mut self, n: Option<u32>) -> Result<TickReport> {
        let n = n.unwrap_or(1);
        if n == 0 {
            return Err(invalid("tick(n) needs n >= 1".into()));
        }
        let mut last = None;
        for _ in 0..n {
            last = Some(self.inner.tick());
        }
        Ok(last.as_ref().map(TickReport::from).unwrap_or_else(|| unreachable!("n >= 1")))
    }

    #[napi]
    pub fn shutdown(&mut self, id: i64) -> Result<()> {
        self.inner.shutdown(id_arg(id)?).map_err(js_err)
    }

    #[napi]
    pub fn kill(&mut self, id: i64) -> Result<()> {
        self.inner.kill(id_arg(id)?).map_err(js_err)
    }

    #[napi]
    pub fn inspect(&self, id: i64) -> Result<AgentInfo> {
        let i = self.inner.inspect(id_arg(id)?).map_err(js_err)?;
        let fault = match &i.state {
            core::AgentState::Faulted(f) => Some(fault_info(f)),
            _ => None,
        };
        Ok(AgentInfo {
            id: i.id as i64,
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

    #[napi]
    pub fn agents(&self) -> Vec<i64> {
        self.inner.agent_ids().into_iter().map(|i| i as i64).collect()
    }

    #[napi(getter)]
    pub fn current_tick(&self) -> i64 {
        self.inner.current_tick() as i64
    }

    #[napi]
    pub fn state_hash(&self) -> String {
        self.inner.state_hash().to_hex()
    }

    /// Deep hash of every agent's memory; recorded as a checkpoint when recording.
    #[napi]
    pub fn deep_hash(&mut self) -> DeepHash {
        let d = self.inner.checkpoint();
        DeepHash { tick: d.tick as i64, hash: d.hash.to_hex() }
    }

    #[napi]
    pub fn drain_events(&mut self) -> Vec<RuntimeEvent> {
        self.inner.drain_events().into_iter().map(event_js).collect()
    }

    #[napi]
    pub fn events_dropped(&self) -> i64 {
        self.inner.events_dropped() as i64
    }

    #[napi]
    pub fn drain_dead_letters(&mut self) -> Vec<DeadLetter> {
        self.inner
            .drain_dead_letters()
            .into_iter()
            .map(|d| DeadLetter { tick: d.tick as i64, reason: d.reason.as_str().into(), message: message_js(d.message) })
            .collect()
    }

    /// Messages agents sent to the host (id 0).
    #[napi]
    pub fn drain_messages(&mut self) -> Vec<AgentMessage> {
        self.inner.drain_host_messages().into_iter().map(message_js).collect()
    }

    #[napi]
    pub fn start_recording(&mut self) -> Result<()> {
        self.inner.start_recording().map_err(js_err)
    }

    #[napi]
    pub fn stop_recording(&mut self) -> Result<Buffer> {
        self.inner.stop_recording().map(Buffer::from).map_err(js_err)
    }

    #[napi]
    pub fn replay_log(&self) -> Result<Buffer> {
        self.inner.replay_log().map(|b| Buffer::from(b.to_vec())).map_err(js_err)
    }

    /// Attaches the JS→core ring (a Uint8Array over an initialised SharedArrayBuffer ring).
    #[napi]
    pub fn attach_inbound_ring(&mut self, buffer: Uint8Array) -> Result<()> {
        self.attach_ring(buffer, Runtime::attach_inbound_ring)
    }

    /// Attaches the core→JS ring.
    #[napi]
    pub fn attach_outbound_ring(&mut self, buffer: Uint8Array) -> Result<()> {
        self.attach_ring(buffer, Runtime::attach_outbound_ring)
    }

    /// Writes waiting records into the outbound ring; returns how many still wait.
    #[napi]
    pub fn flush_outbound(&mut self) -> u32 {
        self.inner.flush_outbound() as u32
    }

    #[napi]
    pub fn inbound_ring_error(&self) -> Option<String> {
        self.inner.inbound_ring_error().map(|e| e.to_string())
    }

    #[napi(getter)]
    pub fn recording(&self) -> bool {
        self.inner.is_recording()
    }
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
    pub agent: Option<i64>,
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

/// Re-runs a recorded session and verifies every tick hash and checkpoint. `on_progress`
/// (ticks verified so far) is called every 100 ticks.
#[napi]
pub fn replay(log: Uint8Array, workers: Option<u32>, on_progress: Option<Function<f64, ()>>) -> Result<ReplayReport> {
    let workers = workers.map(|w| w as usize).unwrap_or_else(|| RuntimeConfig::default().workers);
    let mut callback_error = None;
    let r = core::replay(&log, workers, |ticks| {
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
            agent: d.agent.map(|a| a as i64),
            expected: d.expected.to_hex(),
            actual: d.actual.to_hex(),
        }),
    })
}

/// The agent ABI version this build speaks.
#[napi]
pub fn abi_version() -> u32 {
    core::abi::ABI_VERSION
}

/// The largest message payload, bytes.
#[napi]
pub fn max_payload_bytes() -> u32 {
    core::abi::MAX_PAYLOAD_BYTES as u32
}

// ----- signing tools (also behind `npx lockstep keygen|sign|verify|inspect`) ---------------------

fn sec_err(e: core::security::SecurityError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[{}] {e}", e.code()))
}

#[napi(object)]
pub struct KeyPair {
    /// Hex ed25519 public key: what runtimes put in trustedKeys.
    pub public_key: String,
    /// Hex secret key: keep it secret.
    pub secret_key: String,
}

/// A new publisher key pair.
#[napi]
pub fn keygen() -> KeyPair {
    let (public, secret) = core::security::keygen();
    KeyPair { public_key: core::security::hex(&public), secret_key: core::security::hex(&secret) }
}

/// Embeds the manifest (JSON) into the module and signs both with the secret key.
#[napi]
pub fn sign_module(module: Uint8Array, manifest_json: String, secret_key: String) -> Result<Buffer> {
    let secret = core::security::parse_key(&secret_key).map_err(sec_err)?;
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
#[napi]
pub fn verify_module(module: Uint8Array, trusted_keys: Vec<String>) -> Result<VerifyResult> {
    let keys = trusted_keys.iter().map(|k| core::security::parse_key(k)).collect::<std::result::Result<Vec<_>, _>>().map_err(sec_err)?;
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
#[napi]
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
#[napi]
pub fn set_log_level(level: String) -> Result<bool> {
    let n = core::logging::parse_level(&level)
        .ok_or_else(|| invalid(format!("log level must be off, error, warn, info, debug or trace; got \"{level}\"")))?;
    Ok(core::logging::install(n))
}

/// The runtime log records collected since the last call (and how many were dropped).
#[napi]
pub fn drain_logs() -> Vec<LogLine> {
    let (records, dropped) = core::logging::drain();
    let name = |l: u8| ["off", "error", "warn", "info", "debug", "trace"].get(l as usize).copied().unwrap_or("trace").to_string();
    let mut out: Vec<LogLine> = records.into_iter().map(|r| LogLine { level: name(r.level), target: r.target, message: r.message }).collect();
    if dropped > 0 {
        out.push(LogLine { level: "warn".into(), target: "lockstep::logging".into(), message: format!("{dropped} log records dropped (queue full)") });
    }
    out
}
