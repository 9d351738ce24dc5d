//! Every type that crosses the boundary, and its conversion, in one place: the options JS
//! passes in (checked here: napi's integer conversions wrap or truncate silently) and the
//! reports it gets back. Each `#[napi(object)]` type here is the only definition of its JS
//! shape.
//!
//! Events are not here: their one definition is the serde form of `lockstep_core::Event`
//! (the outbound ring carries the same JSON), and `drainEvents` hands JS that JSON.
//!
//! Ids are JS numbers (f64: never negative; exact up to 2^53, the nearest double above — ids
//! the runtime assigns are small, an id an agent made up may be large, e.g. `INFERENCE_ID`);
//! hashes are lowercase hex strings.

use std::path::PathBuf;

use lockstep_core::inference::{self as inf, EngineOptions, Provider};
use lockstep_core::{self as core, LockstepError, RuntimeConfig};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use crate::error::{invalid_arg, invalid_config, to_napi, BindError, Result};

/// The largest integer a JS number holds exactly.
pub const MAX_SAFE: u64 = (1 << 53) - 1;

/// Numbers cross as f64 and are checked here: napi's u32/i32/i64 conversions wrap or
/// truncate silently (2^32 + 3 would become 3).
pub(crate) fn int_in(v: f64, min: f64, max: f64) -> Option<f64> {
    (v.is_finite() && v.fract() == 0.0 && v >= min && v <= max).then_some(v)
}

/// A numeric option: an integer in `min..=max`, or `None`; else why not.
pub(crate) fn opt_uint(name: &str, v: Option<f64>, min: u64, max: u64) -> std::result::Result<Option<u64>, String> {
    match v {
        None => Ok(None),
        Some(x) => {
            int_in(x, min as f64, max as f64).map(|x| Some(x as u64)).ok_or_else(|| format!("option {name} must be an integer in {min}..={max}, got {x}"))
        }
    }
}

/// An integer argument in `min..=max`.
pub fn arg_int(name: &str, v: f64, min: f64, max: f64) -> Result<f64> {
    int_in(v, min, max).ok_or_else(|| invalid_arg(name, format!("must be an integer in {min}..={max}, got {v}")))
}

/// A trigger by its JS name: `'any'` or `'all'`.
pub fn trigger_arg(name: &str, v: &str) -> Result<core::Trigger> {
    match v {
        "any" => Ok(core::Trigger::Any),
        "all" => Ok(core::Trigger::All),
        other => Err(invalid_arg(name, format!("must be 'any' or 'all', got {other:?}"))),
    }
}

/// An agent id: a non-negative integer. Ids above 2^53 are approximate as JS numbers; the
/// nearest double to 2^64 - 1 (2^64) stands for 2^64 - 1.
pub fn id_arg(name: &str, id: f64) -> Result<u64> {
    int_in(id, 0.0, 18446744073709551616.0)
        .map(|id| id as u64) // saturating: 2^64 -> 2^64 - 1
        .ok_or_else(|| invalid_arg(name, format!("must be an agent id (a non-negative integer from spawn()), got {id}")))
}

/// A u64 id as a JS number: never negative (an `as i64` cast made 2^64 - 1 read as -1).
pub fn id_js(id: u64) -> f64 {
    id as f64
}

/// Hex public keys (trustedKeys); `what` names the argument in errors.
pub fn keys_arg(what: &str, keys: &[String]) -> Result<Vec<[u8; 32]>> {
    keys.iter().enumerate().map(|(i, k)| core::security::parse_public_key(k).map_err(|e| invalid_config(format!("{what}[{i}]: {e}")))).collect()
}

/// A module hash returned by loadModule.
pub fn digest_arg(hex: &str) -> Result<core::Digest> {
    let bad = || to_napi(LockstepError::InvalidModule { reason: format!("`{hex}` is not a module hash returned by loadModule") });
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(core::Digest(out))
}

/// `rt.tickTimings()`: where the wall time of the runtime's `tickAsync` calls went, µs summed.
#[napi(object)]
pub struct TickTimings {
    pub calls: f64,
    pub queue_us: f64,
    pub compute_us: f64,
    pub settle_us: f64,
    pub between_us: f64,
}

// ----- options ------------------------------------------------------------------------------------

#[napi(object)]
#[derive(Default)]
pub struct RuntimeOptions {
    // Numbers as f64, range-checked in `config_from` (napi's integer conversions wrap).
    pub workers: Option<f64>,
    /// "fixed" (default) or "auto" (index.js sets it for `workers: 'auto'`).
    pub worker_scaling: Option<String>,
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
    pub inference: Option<InferenceOptions>,
    /// Hex public keys of trusted publishers.
    pub trusted_keys: Option<Vec<String>>,
    /// Admit unsigned modules (development only; loud).
    pub dev_mode: Option<bool>,
    /// The operator policy as JSON (capabilities schema); index.js serialises it.
    pub policy_json: Option<String>,
    /// "clamp" (default) or "refuse".
    pub resource_policy: Option<String>,
    /// Stream the log to an on-disk journal (docs/JOURNAL.md).
    pub journal: Option<JournalOptions>,
}

/// `journal: { dir, fsync, segmentBytes }`.
#[napi(object)]
#[derive(Default, Clone)]
pub struct JournalOptions {
    pub dir: String,
    /// "tick", "group" (default) or "off".
    pub fsync: Option<String>,
    pub segment_bytes: Option<f64>,
    /// Ticks between automatic snapshots (0: none; default 1000).
    pub snapshot_interval_ticks: Option<f64>,
}

/// The fsync policy named `name` (`what` names the option in errors).
pub fn fsync_policy(what: &str, name: Option<&str>) -> Result<core::FsyncPolicy> {
    match name {
        None | Some("group") => Ok(core::FsyncPolicy::Group),
        Some("tick") => Ok(core::FsyncPolicy::Tick),
        Some("off") => Ok(core::FsyncPolicy::Off),
        Some(other) => Err(invalid_config(format!("{what} must be \"tick\", \"group\" or \"off\", got \"{other}\""))),
    }
}

/// A segment size option.
pub fn segment_bytes(what: &str, v: Option<f64>) -> Result<u64> {
    opt_uint(what, v, core::journal::MIN_SEGMENT_BYTES, MAX_SAFE).map(|v| v.unwrap_or(core::journal::DEFAULT_SEGMENT_BYTES)).map_err(invalid_config)
}

/// A snapshot interval option.
pub fn snapshot_interval_ticks(what: &str, v: Option<f64>) -> Result<u64> {
    opt_uint(what, v, 0, MAX_SAFE).map(|v| v.unwrap_or(core::journal::DEFAULT_SNAPSHOT_INTERVAL_TICKS)).map_err(invalid_config)
}

/// The journal's config from its options.
pub fn journal_from(j: JournalOptions) -> Result<core::JournalConfig> {
    if j.dir.is_empty() {
        return Err(invalid_config("journal.dir must be a directory path, got \"\"".into()));
    }
    Ok(core::JournalConfig {
        dir: PathBuf::from(j.dir),
        fsync: fsync_policy("journal.fsync", j.fsync.as_deref())?,
        segment_bytes: segment_bytes("journal.segmentBytes", j.segment_bytes)?,
        snapshot_interval_ticks: snapshot_interval_ticks("journal.snapshotIntervalTicks", j.snapshot_interval_ticks)?,
    })
}

/// The runtime's config from its options (the inference options are taken out first).
pub fn config_from(o: RuntimeOptions) -> Result<RuntimeConfig> {
    let d = RuntimeConfig::default();
    let uint = |name, v, min, max, default| opt_uint(name, v, min, max).map(|v| v.unwrap_or(default)).map_err(invalid_config);
    Ok(RuntimeConfig {
        workers: uint("workers", o.workers, 1, 256, d.workers as u64)? as usize,
        fuel_per_call: uint("fuelPerCall", o.fuel_per_call, 0, MAX_SAFE, d.fuel_per_call)?,
        memory_limit_bytes: uint("memoryLimitBytes", o.memory_limit_bytes, 0, MAX_SAFE, d.memory_limit_bytes)?,
        seed: uint("seed", o.seed, 0, MAX_SAFE, d.seed)?,
        max_agents: uint("maxAgents", o.max_agents, 1, u32::MAX as u64, d.max_agents as u64)? as u32,
        deadline_ms: uint("deadlineMs", o.deadline_ms, 1, u32::MAX as u64, d.deadline_ms)?,
        checkpoint_interval_ticks: uint("checkpointIntervalTicks", o.checkpoint_interval_ticks, 0, u32::MAX as u64, d.checkpoint_interval_ticks)?,
        record: o.record.unwrap_or(d.record),
        max_events: uint("maxEvents", o.max_events, 0, u32::MAX as u64, d.max_events as u64)? as usize,
        max_log_bytes: uint("maxLogBytes", o.max_log_bytes, 1 << 20, MAX_SAFE, d.max_log_bytes as u64)? as usize,
        allocator: d.allocator,
        inference_batching: o.inference_batching.unwrap_or(d.inference_batching),
        trusted_keys: keys_arg("trustedKeys", &o.trusted_keys.unwrap_or_default())?,
        dev_mode: o.dev_mode.unwrap_or(false),
        policy: match o.policy_json {
            Some(j) => serde_json::from_str(&j).map_err(|e| invalid_config(format!("policy: {e}")))?,
            None => d.policy,
        },
        resource_policy: match o.resource_policy.as_deref() {
            None | Some("clamp") => core::ResourcePolicy::Clamp,
            Some("refuse") => core::ResourcePolicy::Refuse,
            Some(other) => return Err(invalid_config(format!("resourcePolicy must be \"clamp\" or \"refuse\", got \"{other}\""))),
        },
        journal: o.journal.map(journal_from).transpose()?,
        worker_scaling: match o.worker_scaling.as_deref() {
            None | Some("fixed") => core::WorkerScaling::Fixed,
            Some("auto") => core::WorkerScaling::Auto,
            Some(other) => return Err(invalid_config(format!("workerScaling must be \"fixed\" or \"auto\", got \"{other}\""))),
        },
    })
}

/// `Runtime.restore`'s options: those of `new Runtime` (the inference options taken out
/// first). Threads, recording, host-side limits and trust are the caller's; each session
/// setting given is what the snapshot must have (E_SNAPSHOT_MISMATCH otherwise), and so are
/// `modules` (hex hashes) when given.
pub fn restore_options_from(o: RuntimeOptions, modules: Option<Vec<String>>) -> Result<core::RestoreOptions> {
    let d = core::RestoreOptions::default();
    let uint = |name, v, min, max| opt_uint(name, v, min, max).map_err(invalid_config);
    Ok(core::RestoreOptions {
        workers: uint("workers", o.workers, 1, 256)?.map_or(d.workers, |w| w as usize),
        worker_scaling: match o.worker_scaling.as_deref() {
            Some("auto") => core::WorkerScaling::Auto,
            _ => core::WorkerScaling::Fixed,
        },
        allocator: d.allocator,
        record: o.record.unwrap_or(d.record),
        max_log_bytes: uint("maxLogBytes", o.max_log_bytes, 1 << 20, MAX_SAFE)?.map_or(d.max_log_bytes, |v| v as usize),
        max_events: uint("maxEvents", o.max_events, 0, u32::MAX as u64)?.map_or(d.max_events, |v| v as usize),
        inference_batching: o.inference_batching.unwrap_or(d.inference_batching),
        trusted_keys: keys_arg("trustedKeys", &o.trusted_keys.unwrap_or_default())?,
        dev_mode: o.dev_mode.unwrap_or(false),
        expect: core::ExpectedSession {
            seed: uint("seed", o.seed, 0, MAX_SAFE)?,
            fuel_per_call: uint("fuelPerCall", o.fuel_per_call, 0, MAX_SAFE)?,
            memory_limit_bytes: uint("memoryLimitBytes", o.memory_limit_bytes, 0, MAX_SAFE)?,
            max_agents: uint("maxAgents", o.max_agents, 1, u32::MAX as u64)?.map(|v| v as u32),
            deadline_ms: uint("deadlineMs", o.deadline_ms, 1, u32::MAX as u64)?,
            checkpoint_interval_ticks: uint("checkpointIntervalTicks", o.checkpoint_interval_ticks, 0, u32::MAX as u64)?,
            policy: match o.policy_json {
                Some(j) => Some(serde_json::from_str(&j).map_err(|e| invalid_config(format!("policy: {e}")))?),
                None => None,
            },
            resource_policy: match o.resource_policy.as_deref() {
                None => None,
                Some("clamp") => Some(core::ResourcePolicy::Clamp),
                Some("refuse") => Some(core::ResourcePolicy::Refuse),
                Some(other) => return Err(invalid_config(format!("resourcePolicy must be \"clamp\" or \"refuse\", got \"{other}\""))),
            },
            modules: match modules {
                Some(m) => Some(m.iter().map(|h| digest_arg(h)).collect::<Result<_>>()?),
                None => None,
            },
        },
        journal: o.journal.map(journal_from).transpose()?,
    })
}

#[napi(object)]
#[derive(Default, Clone)]
pub struct InferenceOptions {
    /// Providers to try in order ("cuda", "tensorrt", "directml", "coreml", "cpu"); CPU is
    /// always the fallback. Default: ["cpu"].
    pub providers: Option<Vec<String>>,
    // Numbers as f64, range-checked by `engine_options` (napi's integer conversions wrap).
    pub max_models: Option<f64>,
    pub max_model_bytes: Option<f64>,
    /// Your own libonnxruntime (e.g. a CUDA build); else LOCKSTEP_ORT_LIBRARY; else the
    /// onnxruntime-node package's.
    pub ort_library_path: Option<String>,
    /// Where index.js found node_modules/onnxruntime-node (set by index.js).
    pub search_roots: Option<Vec<String>>,
    /// ONNX Runtime's deterministic-compute option. Default true (bit-reproducible CPU results).
    pub deterministic: Option<bool>,
}

/// The engine's options. Called when the runtime is created, so a bad option fails
/// `new Runtime`, and again when the engine is created (at the first model load).
pub fn engine_options(o: &InferenceOptions) -> Result<EngineOptions> {
    // E_INVALID_CONFIG, the reason alone as the message (no "invalid configuration: ").
    let bad = |message: String| to_napi(BindError { code: "E_INVALID_CONFIG", message });
    let d = EngineOptions::default();
    let mut providers = Vec::new();
    for name in o.providers.iter().flatten() {
        providers.push(
            Provider::parse(name)
                .ok_or_else(|| bad(format!("inference.providers: unknown provider \"{name}\"; use cuda, tensorrt, directml, coreml or cpu")))?,
        );
    }
    if providers.is_empty() {
        providers.push(Provider::Cpu);
    }
    let mut search_roots: Vec<PathBuf> = o.search_roots.clone().unwrap_or_default().into_iter().map(PathBuf::from).collect();
    search_roots.extend(d.search_roots);
    Ok(EngineOptions {
        providers,
        max_models: opt_uint("inference.maxModels", o.max_models, 1, u32::MAX as u64).map_err(bad)?.map(|m| m as usize).unwrap_or(d.max_models),
        max_model_bytes: opt_uint("inference.maxModelBytes", o.max_model_bytes, 1, MAX_SAFE).map_err(bad)?.map(|m| m as usize).unwrap_or(d.max_model_bytes),
        library_path: o.ort_library_path.clone().map(PathBuf::from),
        search_roots,
        deterministic: o.deterministic.unwrap_or(d.deterministic),
    })
}

// ----- the runtime's reports ----------------------------------------------------------------------

#[napi(object)]
pub struct TickReport {
    pub tick: i64,
    pub hash: String,
    pub agents_stepped: u32,
    /// Agents with trigger 'all' that waited this tick (their upstream agents had not all sent).
    pub agents_waiting: u32,
    /// Time-sliced agents whose call is suspended at the end of the tick.
    pub agents_suspended: u32,
    pub messages_delivered: i64,
    pub messages_routed: i64,
    pub dead_letters: i64,
    pub faults: u32,
    pub fuel: i64,
    pub parallel: bool,
    /// Threads the tick ran agents on.
    pub workers: u32,
    pub inference_requests: i64,
    pub inference_calls: i64,
    /// With a journal: the last tick whose TickEnd is on stable storage.
    pub durable_tick: Option<i64>,
    /// The sequence number the runtime's next event will take, after these ticks: events were
    /// queued since an earlier report exactly when this is larger than that report's.
    pub events_end: i64,
}

impl TickReport {
    /// The JS report of `r`, the last tick of a call, after which the runtime's next event
    /// takes sequence number `events_end`.
    pub fn of(r: &core::TickReport, events_end: u64) -> Self {
        Self {
            tick: r.tick as i64,
            hash: r.hash.to_hex(),
            agents_stepped: r.agents_stepped,
            agents_waiting: r.agents_waiting,
            agents_suspended: r.agents_suspended,
            messages_delivered: r.messages_delivered as i64,
            messages_routed: r.messages_routed as i64,
            dead_letters: r.dead_letters as i64,
            faults: r.faults,
            fuel: r.fuel as i64,
            parallel: r.parallel,
            workers: r.workers,
            inference_requests: r.inference_requests as i64,
            inference_calls: r.inference_calls as i64,
            durable_tick: r.durable_tick.map(|t| t as i64),
            events_end: events_end as i64,
        }
    }
}

/// The same object as an event's `fault` (`lockstep_core::Event`'s serde form).
#[napi(object)]
pub struct FaultInfo {
    pub kind: String,
    pub call: String,
    pub tick: i64,
    pub detail: String,
}

impl From<&core::Fault> for FaultInfo {
    fn from(f: &core::Fault) -> Self {
        FaultInfo { kind: f.kind.as_str().into(), call: f.call.export_name().into(), tick: f.tick as i64, detail: f.detail.clone() }
    }
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
    /// Its time slice (fuel per call and tick); 0: none.
    pub fuel_per_tick: i64,
    /// The ABI call suspended (state 'suspended').
    pub suspended_call: Option<String>,
}

impl From<core::AgentInfo> for AgentInfo {
    fn from(i: core::AgentInfo) -> Self {
        let fault = match &i.state {
            core::AgentState::Faulted(f) => Some(FaultInfo::from(f)),
            _ => None,
        };
        AgentInfo {
            id: id_js(i.id),
            module: i.module.to_hex(),
            // A running agent whose call is suspended (time slicing) reads 'suspended'.
            state: if i.suspended.is_some() && i.state.is_running() { "suspended".into() } else { i.state.name().into() },
            fault,
            steps: i.steps as i64,
            messages_received: i.messages_received as i64,
            messages_sent: i.messages_sent as i64,
            inbox_len: i.inbox_len as u32,
            memory_bytes: i.memory_bytes as i64,
            fuel_consumed: i.fuel_consumed as i64,
            fuel_per_tick: i.fuel_per_tick as i64,
            suspended_call: i.suspended.map(|c| c.export_name().to_string()),
        }
    }
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

impl From<core::Message> for AgentMessage {
    fn from(m: core::Message) -> Self {
        AgentMessage { from: id_js(m.from), to: id_js(m.to), seq: m.seq as i64, kind: m.kind, priority: m.priority, payload: m.payload.into() }
    }
}

/// A reply to a request (docs/ABI.md, "Requests"): `message.payload` is its body.
#[napi(object)]
pub struct Reply {
    pub request_id: f64,
    pub message: AgentMessage,
}

/// A pending request found in the dead-letter queue.
#[napi(object)]
pub struct RequestDeadLetter {
    pub request_id: f64,
    /// The dead letter's reason (`DeadLetterReason`).
    pub reason: String,
}

#[napi(object)]
pub struct DeadLetter {
    pub tick: i64,
    pub reason: String,
    pub message: AgentMessage,
}

impl From<core::DeadLetter> for DeadLetter {
    fn from(d: core::DeadLetter) -> Self {
        DeadLetter { tick: d.tick as i64, reason: d.reason.as_str().into(), message: d.message.into() }
    }
}

#[napi(object)]
pub struct DeepHash {
    pub tick: i64,
    pub hash: String,
}

/// Bytes of JSON text per chunk of `events_json`: far below V8's longest string (2^29 − 24
/// UTF-16 units; this JSON has at least one byte per unit).
const EVENTS_JSON_CHUNK_BYTES: usize = 64 << 20;

/// The events as JSON texts, each an array of `lockstep_core::Event`'s serde form, in order;
/// index.js parses them, so `drainEvents()` and the outbound ring give the same objects. One
/// text can be too long for a JS string: 100,000 events (the default `maxEvents`) of agents'
/// log lines of control characters (six bytes of JSON each) are ~600 MB of JSON, and napi
/// failed to make the string (E_INTERNAL, every drained event lost; red team 10). So the
/// array is cut into chunks of at most `EVENTS_JSON_CHUNK_BYTES` (an event is at most ~25 KiB).
pub fn events_json(events: &[core::Event]) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut chunk = String::from("[");
    for e in events {
        let json = e.to_json();
        if chunk.len() > 1 && chunk.len() + json.len() + 1 > EVENTS_JSON_CHUNK_BYTES {
            chunk.push(']');
            chunks.push(std::mem::replace(&mut chunk, String::from("[")));
        }
        if chunk.len() > 1 {
            chunk.push(',');
        }
        chunk.push_str(&json);
    }
    chunk.push(']');
    chunks.push(chunk);
    chunks
}

// ----- replay -------------------------------------------------------------------------------------

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

impl From<core::ReplayReport> for ReplayReport {
    fn from(r: core::ReplayReport) -> Self {
        ReplayReport {
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
        }
    }
}

// ----- signing tools ------------------------------------------------------------------------------

#[napi(object)]
pub struct KeyPair {
    /// Hex ed25519 public key: what runtimes put in trustedKeys.
    pub public_key: String,
    /// Hex secret key: keep it secret.
    pub secret_key: String,
}

#[napi(object)]
pub struct VerifyResult {
    pub ok: bool,
    pub code: Option<String>,
    pub message: Option<String>,
    pub publisher: Option<String>,
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

// ----- logs ---------------------------------------------------------------------------------------

#[napi(object)]
pub struct LogLine {
    /// error | warn | info | debug | trace
    pub level: String,
    pub target: String,
    pub message: String,
    /// The agent the line is about (its own log line, its fault...), when there is one.
    pub agent: Option<f64>,
    /// The tick it happened in, when known.
    pub tick: Option<i64>,
}

impl From<core::logging::LogRecord> for LogLine {
    fn from(r: core::logging::LogRecord) -> Self {
        let level = ["off", "error", "warn", "info", "debug", "trace"].get(r.level as usize).copied().unwrap_or("trace");
        LogLine { level: level.into(), target: r.target, message: r.message, agent: r.agent.map(id_js), tick: r.tick.map(|t| t as i64) }
    }
}

// ----- inference ----------------------------------------------------------------------------------

#[napi(object)]
pub struct TensorInfo {
    pub name: String,
    pub r#type: String,
    /// -1 marks a dynamic dimension.
    pub dims: Vec<i64>,
}

#[napi(object)]
pub struct ModelInfo {
    /// SHA-256 of the model bytes: identity and version.
    pub id: String,
    pub bytes: i64,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    /// The execution provider that serves this model.
    pub provider: String,
    /// Why requested providers ahead of it were not used.
    pub fallback_reasons: Vec<String>,
    pub batchable: bool,
}

impl From<inf::ModelInfo> for ModelInfo {
    fn from(m: inf::ModelInfo) -> Self {
        let t = |v: Vec<inf::TensorInfo>| v.into_iter().map(|i| TensorInfo { name: i.name, r#type: i.dtype, dims: i.shape }).collect();
        ModelInfo {
            id: m.id,
            bytes: m.bytes as i64,
            inputs: t(m.inputs),
            outputs: t(m.outputs),
            provider: m.provider.name().into(),
            fallback_reasons: m.fallback_reasons,
            batchable: m.batchable,
        }
    }
}

/// Tensors in the packed form (`inference.rs`): one spec string, one buffer.
#[napi(object)]
pub struct PackedTensors {
    pub spec: String,
    pub data: Buffer,
}

// ----- observing (the dashboard) ------------------------------------------------------------------

/// Every agent, packed: `lockstep_core::observe::AGENT_ROW_BYTES` per agent (layout there).
#[napi(object)]
pub struct AgentTable {
    pub rows: Buffer,
    /// Module hashes, indexed by a row's module field.
    pub modules: Vec<String>,
}

/// A message the tap copied: its header and first bytes.
#[napi(object)]
pub struct TappedMessage {
    pub tick: i64,
    pub from: f64,
    pub to: f64,
    pub seq: i64,
    pub kind: u32,
    pub bytes: u32,
    pub head: Buffer,
}

impl From<&core::observe::TappedMessage> for TappedMessage {
    fn from(m: &core::observe::TappedMessage) -> Self {
        Self { tick: m.tick as i64, from: id_js(m.from), to: id_js(m.to), seq: m.seq as i64, kind: m.kind, bytes: m.bytes, head: m.head.clone().into() }
    }
}

/// A watched agent's newest messages in and out, oldest first.
#[napi(object)]
pub struct WatchedMessages {
    pub inbound: Vec<TappedMessage>,
    pub outbound: Vec<TappedMessage>,
}
