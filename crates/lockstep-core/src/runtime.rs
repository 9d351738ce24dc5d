//! The runtime: the one object an embedder holds. It owns the sandbox, the agents, the
//! clock, the queues and the recorder, and is the only place external input enters.

use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;

use rayon::prelude::*;

use crate::abi;
use crate::agents::Agents;
use crate::bus::{AgentId, DeadLetter, DeadLetterReason, Message, MessageRef};
use crate::error::{Digest, LockstepError, Result};
use crate::event::Event;
use crate::fault::AgentState;
use crate::graph::Trigger;
use crate::inference::{agents as agent_inference, InferenceEngine};
use crate::inputs::Inputs;
use crate::journal::{JournalConfig, JournalSink};
use crate::limits::{
    MAX_AGENT_IDS, MAX_MODULES, MAX_PENDING_BYTES, MAX_PENDING_MESSAGES, MAX_RING_RECORDS_PER_TICK, MAX_WORKERS, RING_BATCH_BYTES, RING_BATCH_RECORDS,
};
use crate::observe;
use crate::outputs::Outputs;
use crate::recorder::{Appended, Recorder};
use crate::replay_log::{InferAnswer, Record, SessionConfig};
use crate::ring::{self, Consumer, Producer, RingError, RingMemory};
use crate::sandbox::{AgentModule, MemoryAllocator, Sandbox, SandboxConfig};
use crate::scheduler::{self, AgentSlot, TickReport};
use crate::security::Capabilities;
use crate::tick_hash::{DeepHasher, TickHasher};

/// How a [`Runtime`] runs: limits, the seed, recording and admission. `default()` admits only
/// modules signed by one of `trusted_keys` (none by default); [`RuntimeConfig::development`]
/// also admits unsigned ones.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Worker threads for stepping agents; 1 = everything on the calling thread.
    pub workers: usize,
    /// Fuel per ABI call (0 disables fuel metering; then only the deadline stops loops).
    pub fuel_per_call: u64,
    /// Cap on each agent's linear memory, bytes.
    pub memory_limit_bytes: u64,
    /// Seed of every agent's random stream.
    pub seed: u64,
    /// Most agents alive at once (pooling allocator slots).
    pub max_agents: u32,
    /// Wall-clock backstop per ABI call, milliseconds.
    pub deadline_ms: u64,
    /// Deep hash (every memory) every this many ticks; 0 = only on demand.
    pub checkpoint_interval_ticks: u64,
    /// Record a replay log from the start.
    pub record: bool,
    /// Most events kept for `drain_events`; older ones are dropped and counted.
    pub max_events: usize,
    /// Where agent memories live (does not change results).
    pub allocator: MemoryAllocator,
    /// Most bytes the in-memory replay log may hold. Past it the log is cut back to the end of
    /// the last complete tick, recording stops, a `recording_stopped` event says so, and the
    /// log replays as a prefix (`complete: false`).
    pub max_log_bytes: usize,
    /// Batch agents' inference requests per model per tick (off: one call per request).
    pub inference_batching: bool,
    /// Public keys of the publishers whose signed modules may run here.
    pub trusted_keys: Vec<[u8; 32]>,
    /// Development mode: unsigned modules are admitted (loudly). Never in production.
    pub dev_mode: bool,
    /// The most any module is granted (operator policy); a manifest can only get less.
    pub policy: Capabilities,
    /// What to do when a manifest asks for more fuel or memory than the runtime allows.
    pub resource_policy: ResourcePolicy,
    /// Stream every record of the replay log to an on-disk journal (docs/JOURNAL.md), with or
    /// without the in-memory log (`record`).
    pub journal: Option<JournalConfig>,
    /// How many of the `workers` a tick uses (never changes results): all of them when there
    /// is enough work (`Fixed`), or as many as the work of the last tick calls for (`Auto`:
    /// `workers` is then the most it uses).
    pub worker_scaling: WorkerScaling,
}

/// How many worker threads a tick uses (`RuntimeConfig::worker_scaling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerScaling {
    /// Every worker, once a tick has `PARALLEL_MIN_AGENTS` running agents or the last tick
    /// burned `PARALLEL_MIN_FUEL`; else the calling thread alone. (Whatever the scaling, a
    /// batch of at least 8,192 inbound-ring records (`PARALLEL_ROUTE_MIN_MESSAGES`) for
    /// agents is copied into their inboxes on every worker, or on the `set_workers` count.)
    #[default]
    Fixed,
    /// One worker per `AGENTS_PER_WORKER` running agents or `FUEL_PER_WORKER` fuel burned
    /// the tick before, whichever asks for more, between 1 and `workers`. Idle pool threads
    /// sleep (they cost nothing); `TickReport::workers` says how many ran the tick's agents
    /// (a large inbound-ring batch is routed on every worker, as with `Fixed`).
    Auto,
}

/// `WorkerScaling::Auto`: running agents per worker.
pub const AGENTS_PER_WORKER: usize = 512;
/// `WorkerScaling::Auto`: fuel (of the last tick) per worker.
pub const FUEL_PER_WORKER: u64 = 1_000_000;

/// What admission does when a manifest's `resources` ask for more fuel or memory than the
/// runtime allows (docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourcePolicy {
    /// Grant the runtime's limit instead (the agent runs with less than it asked).
    Clamp,
    /// Refuse the module.
    Refuse,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            fuel_per_call: 10_000_000,
            memory_limit_bytes: 16 << 20,
            seed: 0,
            max_agents: 16_384,
            deadline_ms: 1_000,
            checkpoint_interval_ticks: 100,
            record: true,
            max_events: 100_000,
            allocator: MemoryAllocator::default(),
            max_log_bytes: 1 << 30,
            inference_batching: true,
            trusted_keys: Vec::new(),
            dev_mode: false,
            policy: Capabilities::all(),
            resource_policy: ResourcePolicy::Clamp,
            journal: None,
            worker_scaling: WorkerScaling::Fixed,
        }
    }
}

impl RuntimeConfig {
    /// The defaults in development mode: unsigned modules are admitted. For tests and local
    /// experiments; the runtime announces it on stderr and in its events.
    pub fn development() -> Self {
        Self { dev_mode: true, ..Self::default() }
    }

    /// The settings that decide a session's outcome, as the replay log's Config record keeps
    /// them (not workers, allocator or the host-side queue limits).
    pub fn session(&self) -> SessionConfig {
        SessionConfig {
            seed: self.seed,
            fuel_per_call: self.fuel_per_call,
            memory_limit_bytes: self.memory_limit_bytes,
            max_agents: self.max_agents,
            deadline_ms: self.deadline_ms,
            checkpoint_interval_ticks: self.checkpoint_interval_ticks,
            trusted_keys: self.trusted_keys.clone(),
            dev_mode: self.dev_mode,
            policy_json: serde_json::to_string(&self.policy).unwrap_or_default(),
            resource_clamp: self.resource_policy == ResourcePolicy::Clamp,
        }
    }
}

/// A snapshot of one agent for `inspect`.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    /// The agent's id.
    pub id: AgentId,
    /// BLAKE3 hash of the module it runs.
    pub module: Digest,
    /// Running, or how it stopped.
    pub state: AgentState,
    /// `agent_step` calls so far.
    pub steps: u64,
    /// Messages delivered to its `agent_receive` so far.
    pub messages_received: u64,
    /// Messages it sent so far (from `agent_init`, ticks and `agent_shutdown`).
    pub messages_sent: u64,
    /// Messages waiting in its inbox for its next tick.
    pub inbox_len: usize,
    /// Size of its linear memory, bytes: now, or, once it stopped (faulted, killed, shut
    /// down; its memory is released then), the size it had when it stopped.
    pub memory_bytes: usize,
    /// Fuel it burned over its life (until it stopped, for a stopped agent; until its
    /// suspended call started, while it is suspended).
    pub fuel_consumed: u64,
    /// Its time slice: fuel per call and tick ([`Runtime::set_fuel_per_tick`]); 0: none.
    pub fuel_per_tick: u64,
    /// The ABI call of it that is suspended (it used up its slice and goes on next tick).
    pub suspended: Option<crate::fault::AbiCall>,
}

/// The result of a deep hash: the whole and each agent's part.
#[derive(Debug, Clone)]
pub struct DeepHash {
    /// Ticks run when it was taken (`current_tick()`).
    pub tick: u64,
    /// BLAKE3 over the last tick hash and every agent's part (docs/REPLAY.md, "Deep hash").
    pub hash: Digest,
    /// (agent id, first 8 bytes of that agent's part) for every agent ever spawned, id order.
    pub agents: Vec<(AgentId, [u8; 8])>,
}

/// The engine: owns the agents, the tick clock, the queues and the recorder, and is the only
/// way input enters a session (loads, spawns, messages, shutdowns, kills, ticks), each
/// recorded when recording.
pub struct Runtime {
    config: RuntimeConfig,
    sandbox: Sandbox,
    pool: Option<rayon::ThreadPool>,
    /// Parallel routing's index lists, reused from tick to tick (bounded: `RouteScratch`).
    route_scratch: scheduler::RouteScratch,
    modules: BTreeMap<Digest, Arc<AgentModule>>,
    /// Every agent, which are live, and the phases of a tick.
    agents: Agents,
    tick: u64,
    last_hash: Digest,
    last_fuel: u64,
    /// What enters the next tick (bounded), and the digest of what entered since the last.
    inputs: Inputs,
    /// The tick hash being computed (reused from tick to tick).
    tick_hasher: TickHasher,
    /// What left the ticks so far (bounded): host messages, dead letters, events, the ring.
    outputs: Outputs,
    /// The only writer of the replay log, while recording.
    recorder: Option<Recorder>,
    /// The tick at which `stop_recording` returned the log, if it did.
    recording_stopped_at: Option<u64>,
    session_started: bool,
    /// The id the next `send_request` gets (docs/ABI.md, "Requests").
    next_request_id: u64,
    inference: AgentInference,
    /// Language models for agents' `generate` import (`inference/lm/serve.rs`).
    lm: lm_serve::AgentGeneration,
    /// The journal's automatic snapshot was refused once (said once in the log).
    snapshot_refused_noted: bool,
    /// Workers the next ticks use whatever the scaling says (`set_workers`), if set.
    forced_workers: Option<usize>,
}

/// What agents may infer with, and (in a replay) the recorded answers.
#[derive(Default)]
struct AgentInference {
    engine: Option<Arc<InferenceEngine>>,
    /// Model ids by table slot: the `model` argument of the `infer` import.
    models: Vec<String>,
    /// Replaying: answers come from the log (`Runtime::accept_recorded_answers`), never from
    /// ONNX Runtime, and models need not be loaded.
    replaying: bool,
    recorded: VecDeque<(u64, Vec<InferAnswer>)>,
    /// Replaying: why a tick's recorded answers cannot be the answers to its requests (see
    /// `serve_inference`); the replay reports it as a corrupt log after the tick.
    inconsistent: Option<String>,
}

/// Why `recorded` (a replayed tick's InferResults, if it has one) cannot be what a runtime
/// wrote for the tick's requests, if it cannot. A live runtime writes one record for a tick
/// with requests and none for one without; one answer per request (allowed or forbidden), to
/// the agent that asked, with the request's tag, ordered by agent id.
fn recorded_answers_mismatch(
    tick: u64,
    requests: &[(AgentId, crate::host::InferRequest)],
    forbidden: &[(AgentId, u32, Vec<u8>)],
    recorded: Option<&[InferAnswer]>,
) -> Option<String> {
    let asked = requests.len() + forbidden.len();
    let Some(recorded) = recorded else {
        return (asked > 0).then(|| format!("no InferResults record for tick {tick}, whose agents made {asked} inference requests"));
    };
    if asked == 0 {
        return Some(format!("an InferResults record for tick {tick}, whose agents made no inference request"));
    }
    if recorded.windows(2).any(|w| w[0].0 > w[1].0) {
        return Some(format!("the InferResults answers of tick {tick} are not ordered by agent id"));
    }
    let mut expected: Vec<(AgentId, u32)> = requests.iter().map(|(a, r)| (*a, r.tag)).chain(forbidden.iter().map(|(a, t, _)| (*a, *t))).collect();
    let mut got: Vec<(AgentId, u32)> = recorded.iter().map(|(a, t, _)| (*a, *t)).collect();
    expected.sort_unstable();
    got.sort_unstable();
    (expected != got).then(|| {
        format!("the InferResults answers of tick {tick} (agent, tag: {got:?}) are not one per inference request of that tick (agent, tag: {expected:?})")
    })
}

/// How many workers a tick uses, the last tick having burned `last_fuel` (results never
/// depend on it). `running(cap)`: how many of the tick's agents run, counted up to `cap` — the
/// decisions here only ask whether the count reaches a threshold, and counting reads every
/// live agent's slot on the calling thread (a cold line each: ~5% of a 10,000-agent tick).
fn workers_for(pool: Option<&rayon::ThreadPool>, forced: Option<usize>, scaling: WorkerScaling, last_fuel: u64, running: impl Fn(usize) -> usize) -> usize {
    let Some(pool) = pool else { return 1 };
    let most = pool.current_num_threads() + 1;
    if let Some(n) = forced {
        return n.clamp(1, most);
    }
    match scaling {
        WorkerScaling::Fixed if last_fuel >= scheduler::PARALLEL_MIN_FUEL || running(scheduler::PARALLEL_MIN_AGENTS) >= scheduler::PARALLEL_MIN_AGENTS => most,
        WorkerScaling::Fixed => 1,
        WorkerScaling::Auto => {
            let by_agents = running(most.saturating_mul(AGENTS_PER_WORKER)) / AGENTS_PER_WORKER;
            let by_fuel = (last_fuel / FUEL_PER_WORKER) as usize;
            by_agents.max(by_fuel).clamp(1, most)
        }
    }
}

/// An inference answer as delivered: one whose outputs do not fit a message becomes status
/// `INFER_STATUS_OUTPUT_TOO_LARGE` with no outputs.
fn fit_answer(payload: Vec<u8>) -> Vec<u8> {
    if payload.len() <= abi::MAX_PAYLOAD_BYTES {
        return payload;
    }
    abi::INFER_STATUS_OUTPUT_TOO_LARGE.to_le_bytes().to_vec()
}

impl Runtime {
    /// Creates a runtime, recording from the start if `config.record`. A setting out of range
    /// (`workers` outside 1..=`limits::MAX_WORKERS`, `max_agents` 0 or over
    /// `limits::MAX_AGENT_IDS`, `deadline_ms` 0...) is `E_INVALID_CONFIG`.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        if config.max_agents as usize > MAX_AGENT_IDS {
            return Err(LockstepError::InvalidConfig {
                reason: format!("maxAgents {} exceeds the {MAX_AGENT_IDS} agent ids a runtime can assign", config.max_agents),
            });
        }
        for (i, key) in config.trusted_keys.iter().enumerate() {
            crate::security::check_public_key(key).map_err(|e| LockstepError::InvalidConfig { reason: format!("trustedKeys[{i}]: {e}") })?;
        }
        if config.workers == 0 || config.workers > MAX_WORKERS {
            return Err(LockstepError::InvalidConfig { reason: format!("workers must be 1..={MAX_WORKERS}, got {}", config.workers) });
        }
        let sandbox = Sandbox::new(SandboxConfig {
            fuel_per_call: config.fuel_per_call,
            memory_limit_bytes: config.memory_limit_bytes,
            max_agents: config.max_agents,
            deadline_ms: config.deadline_ms,
            allocator: config.allocator,
        })?;
        let pool = if config.workers > 1 {
            Some(
                // The calling thread is one of the workers (see scheduler::run_agents).
                rayon::ThreadPoolBuilder::new()
                    .num_threads(config.workers - 1)
                    .thread_name(|i| format!("lockstep-worker-{i}"))
                    .build()
                    .map_err(|e| LockstepError::InvalidConfig { reason: format!("worker pool: {e}") })?,
            )
        } else {
            None
        };
        let mut rt = Self {
            sandbox,
            pool,
            modules: BTreeMap::new(),
            agents: Agents::default(),
            tick: 0,
            last_hash: Digest::default(),
            last_fuel: 0,
            route_scratch: scheduler::RouteScratch::default(),
            inputs: Inputs::new(),
            tick_hasher: TickHasher::new(),
            outputs: Outputs::new(config.max_events),
            recorder: None,
            recording_stopped_at: None,
            session_started: false,
            next_request_id: 1,
            inference: AgentInference::default(),
            lm: Default::default(),
            snapshot_refused_noted: false,
            forced_workers: None,
            config,
        };
        if rt.config.dev_mode {
            // Loud on purpose: development mode must never slip into production unnoticed.
            eprintln!("lockstep: DEVELOPMENT MODE — unsigned agent modules are admitted. Do not use devMode in production.");
        }
        if rt.config.record {
            rt.start_recording()?;
        }
        if let Some(journal) = rt.config.journal.clone() {
            let sink = JournalSink::create(&journal, &rt.config.session())?;
            rt.recorder.get_or_insert_with(Recorder::new).attach_journal(sink);
        }
        Ok(rt)
    }

    /// The configuration it was created with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The number of the next tick to run (ticks run so far).
    pub fn current_tick(&self) -> u64 {
        self.tick
    }

    /// Hash chained over every tick so far (all zeros before the first tick).
    pub fn state_hash(&self) -> Digest {
        self.last_hash
    }

    // ----- recording -------------------------------------------------------------------------

    /// Starts recording a replay log (only before the session starts: the first spawn,
    /// send or tick; `RuntimeConfig::record` starts it at creation). `E_INVALID_CONFIG` if
    /// `max_log_bytes` cannot hold the log's header and Config record.
    pub fn start_recording(&mut self) -> Result<()> {
        if self.session_started {
            return Err(LockstepError::RecordingMidSession);
        }
        let session = self.config.session();
        // The header and Config record are the shortest log that replays (an empty prefix): a
        // limit below them cut the log to 0 bytes, which no replay reads (red team 10).
        let mut start = Vec::new();
        crate::replay_log::write_header(&mut start);
        Record::Config(session.clone()).encode(&mut start);
        if start.len() > self.config.max_log_bytes {
            return Err(LockstepError::InvalidConfig {
                reason: format!("maxLogBytes {} cannot hold the log's header and Config record ({} bytes)", self.config.max_log_bytes, start.len()),
            });
        }
        self.recorder.get_or_insert_with(Recorder::new).start_memory(session, self.config.max_log_bytes);
        Ok(())
    }

    /// Stops recording and returns the log, sealed with its End record (counts, final hash,
    /// digest of the config and the inputs after the last tick), so a replay can tell the
    /// whole session from a prefix.
    ///
    /// A log cut at `max_log_bytes` comes back without an End record: it replays as a prefix.
    /// A journal, if any, goes on: it records the session for as long as the runtime lives.
    pub fn stop_recording(&mut self) -> Result<Vec<u8>> {
        let (tick, hash) = (self.tick, self.last_hash);
        let log = self.recorder.as_mut().and_then(|r| r.finish_memory(tick, hash)).ok_or_else(|| self.not_recording())?;
        self.recording_stopped_at = Some(tick);
        if self.recorder.as_ref().is_some_and(Recorder::is_empty) {
            self.recorder = None;
        }
        Ok(log)
    }

    /// A copy of the log recorded so far, sealed with an End record as if recording stopped
    /// now (recording continues; the live log is not changed).
    pub fn replay_log(&self) -> Result<Vec<u8>> {
        self.recorder.as_ref().and_then(|r| r.sealed_copy(self.tick, self.last_hash)).ok_or_else(|| self.not_recording())
    }

    /// Why there is no log: never recorded (`E_NOT_RECORDING`), or already stopped.
    fn not_recording(&self) -> LockstepError {
        match self.recording_stopped_at {
            Some(tick) => LockstepError::RecordingStopped { tick },
            None => LockstepError::NotRecording,
        }
    }

    /// Whether a replay log is being recorded in memory (`replay_log`, `stop_recording`).
    pub fn is_recording(&self) -> bool {
        self.recorder.as_ref().is_some_and(Recorder::has_memory)
    }

    /// Writes and syncs the journal up to the last complete tick now, whatever its fsync
    /// policy; returns the durable tick (the last tick whose TickEnd is on stable storage;
    /// `None` before the first tick, or without a journal). `E_JOURNAL_IO` if it failed.
    pub fn sync_journal(&mut self) -> Result<Option<u64>> {
        match self.recorder.as_mut() {
            Some(r) => r.sync_journal(),
            None => Ok(None),
        }
    }

    /// The id of the journal this runtime writes (its Journal record; what a fork's lineage
    /// names), if it has one.
    pub fn journal_id(&self) -> Option<[u8; 16]> {
        self.recorder.as_ref().and_then(Recorder::journal_id)
    }

    /// The journal's durable tick as last known (see `sync_journal`), without syncing.
    pub fn durable_tick(&self) -> Option<u64> {
        self.recorder.as_ref().and_then(Recorder::durable_tick)
    }

    /// `E_JOURNAL_IO` once the journal failed: every input and tick is refused after that,
    /// since nothing it would record could be kept.
    fn journal_ok(&self) -> Result<()> {
        match self.recorder.as_ref().and_then(Recorder::journal_error) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every record goes through here; a write that made the log outgrow `max_log_bytes`
    /// stops recording, loudly. The `recording_stopped` event is appended untrimmed: inside a
    /// tick, whose events are read by index until it ends (copied to the outbound ring), a
    /// trim would shift them; callers outside a tick trim (`trim_events`) after.
    /// Returns whether this write stopped recording (its event is then the last one).
    fn record(&mut self, write: impl FnOnce(&mut Recorder) -> Appended) -> bool {
        let Some(r) = self.recorder.as_mut() else { return false };
        let cut = write(r) == Appended::Cut;
        if cut {
            let detail = format!(
                "the replay log reached maxLogBytes ({} bytes): recording stopped at tick {}; the log so far replays as a prefix (complete: false). Raise maxLogBytes, or record shorter sessions",
                self.config.max_log_bytes, self.tick
            );
            tracing::error!(target: "lockstep::runtime", "{detail}");
            self.outputs.events.push_back(Event::RecordingStopped { tick: self.tick, detail });
        }
        cut
    }

    // ----- modules and agents ----------------------------------------------------------------

    /// Verifies (signature, manifest, trust), compiles and validates a module; the same bytes
    /// load once. A refusal is also an event.
    pub fn load_module(&mut self, bytes: Vec<u8>) -> Result<Digest> {
        let hash = Digest(*blake3::hash(&bytes).as_bytes());
        if self.modules.contains_key(&hash) {
            return Ok(hash);
        }
        if self.modules.len() >= MAX_MODULES {
            return Err(LockstepError::ModuleLimit { max: MAX_MODULES });
        }
        let module = crate::admission::admit(&bytes, &self.config).and_then(|admitted| {
            if admitted.unsigned {
                tracing::warn!(target: "lockstep::security", "DEVELOPMENT MODE: admitted an unsigned agent module");
                self.outputs.push_event(Event::Security { tick: self.tick, detail: "DEVELOPMENT MODE: admitted an unsigned agent module".into() });
            }
            AgentModule::compile(&self.sandbox, bytes, admitted.grants)
        });
        match module {
            Ok(m) => {
                self.modules.insert(hash, Arc::new(m));
                Ok(hash)
            }
            Err(e) => {
                tracing::warn!(target: "lockstep::security", code = e.code(), "module refused: {e}");
                self.outputs.push_event(Event::ModuleRefused { tick: self.tick, code: e.code().to_string(), detail: e.to_string() });
                Err(e)
            }
        }
    }

    /// Spawns an agent from a loaded module and runs its `agent_init`. A fault in init is
    /// contained: the agent exists, faulted, and a fault event says why.
    pub fn spawn(&mut self, module: Digest) -> Result<AgentId> {
        self.spawn_with_priority(module, 0)
    }

    /// Like `spawn`; agents of higher `priority` run in an earlier phase of each tick, and
    /// their messages to lower-priority agents are delivered in the same tick.
    pub fn spawn_with_priority(&mut self, module: Digest, priority: i32) -> Result<AgentId> {
        self.journal_ok()?;
        let m = self
            .modules
            .get(&module)
            .cloned()
            .ok_or_else(|| LockstepError::InvalidModule { reason: format!("module {module} is not loaded; call loadModule first") })?;
        // maxAgents bounds the agents alive at once (each holds a memory); stopped, killed and
        // faulted agents hold none (issue 9: it used to count every agent ever spawned).
        if self.agents.live() >= self.config.max_agents as usize {
            return Err(LockstepError::AgentLimit { max: self.config.max_agents });
        }
        let id = self.agents.next_id()?;
        // What init sends waits in the same queue as host messages until the next tick. It used
        // to bypass that queue's limit: spawning agents whose init sends 1 MiB and faults (so
        // they never count against maxAgents), without ticking, grew it by 1 MiB per spawn
        // (1,000 spawns: 1 GB). Back-pressure like `send`: tick, then spawn again.
        if !self.inputs.has_room(1) {
            return Err(LockstepError::QueueFull {
                queue: "messages waiting for the next tick (host messages and what agent_init/agent_shutdown sent)",
                max_messages: MAX_PENDING_MESSAGES,
                max_bytes: MAX_PENDING_BYTES,
            });
        }
        self.agents.check_priority(priority)?;
        let mut instance = Box::new(m.instantiate(&self.sandbox, id, self.config.seed)?);
        self.session_started = true;
        let tick = self.tick;
        self.record(|r| r.module_once(module, &m.bytes));
        self.record(|r| r.record(&Record::Spawn { tick, module, agent: id, priority }));
        self.inputs.digest.spawn(id, priority, &module);
        let init = instance.call_init(self.tick);
        // What init sent and logged leaves the agent now, whatever happened: routed at the
        // next tick like a host message (and folded into its hash), so neither a fault in
        // init nor a kill before the first tick can lose it (issue 9).
        // init's byte budget is its own (docs/ABI.md): the first tick starts with a full one.
        let mut sent = std::mem::take(&mut instance.host_mut().outbox);
        let logs = std::mem::take(&mut instance.host_mut().logs);
        let mut slot = AgentSlot::new(id, priority, module, instance);
        slot.messages_sent += sent.len() as u64;
        self.push_event(Event::Spawned { tick: self.tick, agent: id, module });
        for line in logs {
            self.push_event(Event::Log { tick: self.tick, agent: id, level: line.level, text: line.text });
        }
        if let Err(fault) = init {
            self.inputs.digest.fault(&fault.kind);
            slot.state = AgentState::Faulted(fault.clone());
            // Its memory goes back now: a dead agent holds no slot against maxAgents.
            slot.release();
            self.push_event(Event::Fault { tick: self.tick, agent: id, fault });
        }
        self.inputs.agent_output(&mut sent);
        self.agents.add(slot);
        Ok(id)
    }

    /// Loads (if needed) and spawns in one call.
    pub fn spawn_bytes(&mut self, bytes: Vec<u8>) -> Result<AgentId> {
        let hash = self.load_module(bytes)?;
        self.spawn(hash)
    }

    /// `length` bytes of a running agent's linear memory from `offset` (at most
    /// [`MAX_READ_MEMORY_BYTES`](crate::limits::MAX_READ_MEMORY_BYTES) at once): for debuggers
    /// and time travel; reading changes nothing. `E_UNKNOWN_AGENT` for an id never assigned;
    /// `E_INVALID_ARGUMENT` for an agent that holds no memory any more (stopped, killed,
    /// faulted) or a range outside its memory.
    pub fn read_memory(&self, id: AgentId, offset: u64, length: u64) -> Result<Vec<u8>> {
        let slot = self.slot(id)?;
        let bad = |reason: String| LockstepError::InvalidArgument { name: "readMemory".into(), reason };
        if length > crate::limits::MAX_READ_MEMORY_BYTES as u64 {
            return Err(bad(format!("length {length} exceeds the {}-byte limit of one read; read in parts", crate::limits::MAX_READ_MEMORY_BYTES)));
        }
        let Some(instance) = slot.instance.as_deref() else {
            if let Some(s) = &slot.suspended {
                return Err(bad(format!(
                    "agent {id} is suspended in {} (time slicing): its memory is mid-call; read it at a tick its call has ended",
                    s.call.export_name()
                )));
            }
            return Err(bad(format!("agent {id} is {}: its memory was released", slot.state.name())));
        };
        let memory = instance.memory_data();
        let end = offset.checked_add(length).filter(|&e| e <= memory.len() as u64);
        match end {
            Some(end) => Ok(memory[offset as usize..end as usize].to_vec()),
            None => Err(bad(format!("bytes {offset}..{offset}+{length} are outside agent {id}'s memory of {} bytes", memory.len()))),
        }
    }

    /// Runs the next tick while copying what every agent received and sent in it.
    pub(crate) fn set_tracing(&mut self, on: bool) {
        self.outputs.trace = on.then(Default::default);
    }

    /// The traced tick's messages by agent (empty when not tracing).
    pub(crate) fn take_trace(&mut self) -> Vec<crate::observe::AgentMessages> {
        self.outputs.trace.as_mut().map(|t| std::mem::take(&mut t.agents)).unwrap_or_default()
    }

    fn slot(&self, id: AgentId) -> Result<&AgentSlot> {
        self.agents.get(id)
    }

    /// The agent's slot, to change it: its inbox is whole first (`end_held_routes`).
    fn slot_mut(&mut self, id: AgentId) -> Result<&mut AgentSlot> {
        self.end_held_routes();
        self.agents.get_mut(id)
    }

    /// Queues a message from the host (id 0) for delivery at the next tick. A message to an
    /// agent that is no longer running is accepted and lands in the dead-letter queue.
    pub fn send(&mut self, to: AgentId, kind: u32, priority: i32, payload: Vec<u8>) -> Result<()> {
        self.slot(to)?;
        self.accept_host_message(to, kind, priority, &payload)
    }

    /// The one way a host message enters a session, whoever hands it in: `send`, the inbound
    /// ring and a replay's Send records. Checked against the message limit and the room left
    /// in the input queue, recorded, queued for the next tick. The recipient is not checked:
    /// one that does not exist (ring input) is dead-lettered by routing.
    pub(crate) fn accept_host_message(&mut self, to: AgentId, kind: u32, priority: i32, payload: &[u8]) -> Result<()> {
        self.journal_ok()?;
        if payload.len() > abi::MAX_PAYLOAD_BYTES {
            return Err(LockstepError::MessageTooLarge { len: payload.len(), max: abi::MAX_PAYLOAD_BYTES });
        }
        if !self.inputs.has_room(payload.len()) {
            return Err(LockstepError::QueueFull {
                queue: "host messages waiting for the next tick",
                max_messages: MAX_PENDING_MESSAGES,
                max_bytes: MAX_PENDING_BYTES,
            });
        }
        self.session_started = true;
        let tick = self.tick;
        self.record(|r| r.send(tick, to, kind, priority, payload));
        self.outputs.trim_events();
        self.inputs.host_message(to, kind, priority, payload);
        Ok(())
    }

    /// Calls `agent_shutdown` now; what it sends is routed at the next tick. The agent's
    /// undelivered messages go to the dead-letter queue. `E_QUEUE_FULL` (the agent untouched)
    /// while the queue of messages waiting for the next tick is full, like `spawn`.
    pub fn shutdown(&mut self, id: AgentId) -> Result<()> {
        let tick = self.tick;
        self.begin_stop(id, Record::Shutdown { tick, agent: id })?;
        let slot = self.slot_mut(id)?;
        // A suspended call is abandoned, and `agent_shutdown` is not called: the agent is
        // mid-call (docs/ABI.md, "Time slicing"). Its unfinished batch is dead-lettered below.
        let was_suspended = slot.suspended.is_some();
        let mut in_flight = std::mem::take(&mut slot.in_flight);
        // Taken before `release` (which empties it): the rest of the suspended turn and what
        // arrived meanwhile are dead-lettered below, not dropped.
        let inbox = std::mem::take(&mut slot.inbox);
        if was_suspended {
            slot.release();
        }
        let mut instance = slot.instance.take();
        if let Some(i) = instance.as_deref() {
            slot.remember_usage(i);
        }
        let had_instance = instance.is_some() || was_suspended;
        let result = instance.as_mut().map(|i| i.call_shutdown(tick)).unwrap_or(Ok(()));
        let (mut sent, logs) = instance.map(|mut i| (std::mem::take(&mut i.host_mut().outbox), std::mem::take(&mut i.host_mut().logs))).unwrap_or_default();
        slot.messages_sent += sent.len() as u64;
        if had_instance {
            self.agents.released_one(id);
        }
        let slot = self.slot_mut(id)?;
        match &result {
            Ok(()) => slot.state = AgentState::Stopped,
            Err(fault) => slot.state = AgentState::Faulted(fault.clone()),
        }
        // What shutdown logged is kept, like init's (it was dropped with the instance).
        for line in logs {
            self.push_event(Event::Log { tick, agent: id, level: line.level, text: line.text });
        }
        match result {
            Ok(()) => self.push_event(Event::Stopped { tick, agent: id }),
            Err(fault) => {
                self.inputs.digest.fault(&fault.kind);
                self.push_event(Event::Fault { tick, agent: id, fault });
            }
        }
        self.inputs.agent_output(&mut sent);
        in_flight.extend(inbox.to_messages(0..inbox.len()));
        for m in in_flight {
            self.dead_letter(tick, DeadLetterReason::RecipientStopped, m);
        }
        Ok(())
    }

    /// What shutdown and kill share: the agent must be running, and the input is recorded
    /// and folded into the next tick hash.
    fn begin_stop(&mut self, id: AgentId, record: Record) -> Result<()> {
        self.journal_ok()?;
        let slot = self.slot(id)?;
        if !slot.state.is_running() {
            return Err(LockstepError::AgentNotRunning { id, state: slot.state.name().into() });
        }
        // What agent_shutdown sends waits in the input queue: back-pressure like spawn's (red
        // team 10: shutting down N agents without a tick queued N shutdown budgets, 1 MiB
        // each, past the queue's limit).
        if matches!(record, Record::Shutdown { .. }) && !self.inputs.has_room(1) {
            return Err(LockstepError::QueueFull {
                queue: "messages waiting for the next tick (host messages and what agent_init/agent_shutdown sent)",
                max_messages: MAX_PENDING_MESSAGES,
                max_bytes: MAX_PENDING_BYTES,
            });
        }
        self.session_started = true;
        match record {
            Record::Kill { .. } => self.inputs.digest.kill(id),
            _ => self.inputs.digest.shutdown(id),
        }
        self.record(|r| r.record(&record));
        Ok(())
    }

    /// Stops an agent at once, without calling `agent_shutdown`.
    pub fn kill(&mut self, id: AgentId) -> Result<()> {
        let tick = self.tick;
        self.begin_stop(id, Record::Kill { tick, agent: id })?;
        let slot = self.slot_mut(id)?;
        slot.state = AgentState::Killed;
        let mut inbox = std::mem::take(&mut slot.in_flight);
        inbox.extend(slot.inbox.to_messages(0..slot.inbox.len()));
        let had_instance = slot.is_live();
        slot.release();
        if had_instance {
            self.agents.released_one(id);
        }
        self.push_event(Event::Killed { tick, agent: id });
        for m in inbox {
            self.dead_letter(tick, DeadLetterReason::RecipientStopped, m);
        }
        Ok(())
    }

    // ----- the workflow graph (graph.rs; docs: ARCHITECTURE.md, "The tick's path") --------------

    /// Adds the edge `from → to` to the workflow graph: from the next tick on, `to` runs in a
    /// later phase than `from` (after every agent it depends on), so what `from` sends it
    /// arrives in the same tick. Returns whether the edge is new (an existing one changes
    /// nothing and records nothing). Recorded, hashed and replayed like every input.
    ///
    /// `E_UNKNOWN_AGENT` for an id never assigned, `E_AGENT_NOT_RUNNING` for an agent that
    /// stopped (its edges went with it), `E_DAG_CYCLE` naming the cycle the edge would close,
    /// `E_EDGE_LIMIT` past `limits::MAX_EDGES`.
    pub fn connect(&mut self, from: AgentId, to: AgentId) -> Result<bool> {
        self.journal_ok()?;
        self.running_agent(from)?;
        self.running_agent(to)?;
        if self.agents.graph().has_edge(from, to) {
            return Ok(false);
        }
        self.agents.check_connect(from, to)?;
        self.agents.graph_mut().connect(from, to);
        self.graph_input(Record::Connect { tick: self.tick, from, to });
        Ok(true)
    }

    /// Removes the edge `from → to`; returns whether it existed (a missing one changes
    /// nothing and records nothing: an agent's edges go when it stops). `E_UNKNOWN_AGENT` for
    /// an id never assigned.
    pub fn disconnect(&mut self, from: AgentId, to: AgentId) -> Result<bool> {
        self.journal_ok()?;
        self.slot(from)?;
        self.slot(to)?;
        if !self.agents.graph().has_edge(from, to) {
            return Ok(false);
        }
        self.agents.graph_mut().disconnect(from, to);
        self.graph_input(Record::Disconnect { tick: self.tick, from, to });
        Ok(true)
    }

    /// Sets when `agent` receives and steps: `Trigger::Any` (the default) every tick;
    /// `Trigger::All` only in ticks where every running upstream agent has sent it something
    /// since it last stepped (a fan-in barrier; meanwhile its inbox waits, bounded as inboxes
    /// are). Recorded when it changes. `E_UNKNOWN_AGENT`, `E_AGENT_NOT_RUNNING`.
    pub fn set_trigger(&mut self, agent: AgentId, trigger: Trigger) -> Result<()> {
        self.journal_ok()?;
        self.running_agent(agent)?;
        if self.agents.graph().trigger(agent) == trigger {
            return Ok(());
        }
        self.agents.graph_mut().set_trigger(agent, trigger);
        self.graph_input(Record::Trigger { tick: self.tick, agent, trigger });
        Ok(())
    }

    /// Gives `agent` a time slice of `fuel_per_tick` units of fuel per call and tick (0
    /// removes it; docs/ABI.md, "Time slicing"): a call of it that burns that much in one tick
    /// is suspended, not killed, and goes on next tick where it stopped, for another slice,
    /// until it ends or burns its per-call budget (`fuel_per_call`). Recorded, hashed and
    /// replayed like every input (when it changes).
    ///
    /// `E_UNKNOWN_AGENT`, `E_AGENT_NOT_RUNNING`; `E_INVALID_ARGUMENT` when fuel metering is
    /// off (`fuel_per_call` 0), for a slice over the agent's per-call budget, while a call of
    /// the agent is suspended (set it at a tick where its call has ended), or for a new sliced
    /// agent while `limits::MAX_SLICED_AGENTS` live agents hold a slice (or held one).
    pub fn set_fuel_per_tick(&mut self, agent: AgentId, fuel_per_tick: u64) -> Result<()> {
        self.journal_ok()?;
        self.running_agent(agent)?;
        let bad = |reason: String| LockstepError::InvalidArgument { name: "fuelPerTick".into(), reason };
        let slot = self.slot_mut(agent)?;
        if let Some(s) = &slot.suspended {
            return Err(bad(format!("agent {agent} is suspended in {}: set its slice at a tick where that call has ended", s.call.export_name())));
        }
        let Some(instance) = slot.instance.as_deref() else {
            return Err(LockstepError::AgentNotRunning { id: agent, state: slot.state.name().into() });
        };
        if instance.fuel_per_tick == fuel_per_tick {
            return Ok(());
        }
        let newly = fuel_per_tick > 0 && !instance.async_calls;
        if let Some(reason) = slice_refusal(fuel_per_tick, instance.fuel_per_call(), &format!("agent {agent}'s")) {
            return Err(bad(reason));
        }
        if newly {
            self.check_sliced_room()?;
        }
        // Present: checked above, and nothing since stopped it.
        if let Some(instance) = self.slot_mut(agent)?.instance.as_deref_mut() {
            instance.set_fuel_per_tick(fuel_per_tick).map_err(bad)?;
        }
        if newly {
            self.agents.add_sliced();
        }
        self.graph_input(Record::Slice { tick: self.tick, agent, fuel_per_tick });
        Ok(())
    }

    /// Room for one more agent holding a time slice (`limits::MAX_SLICED_AGENTS`: each holds a
    /// fiber stack for its life), on either allocator alike.
    fn check_sliced_room(&mut self) -> Result<()> {
        if self.agents.sliced() >= crate::limits::MAX_SLICED_AGENTS {
            return Err(LockstepError::InvalidArgument {
                name: "fuelPerTick".into(),
                reason: format!(
                    "{} live agents hold a time slice already (or held one), the most one runtime allows: each holds a fiber stack for its life",
                    crate::limits::MAX_SLICED_AGENTS
                ),
            });
        }
        Ok(())
    }

    /// Whether agents of `module` could be given a slice of `fuel_per_tick` (what
    /// `set_fuel_per_tick` checks of the module), before one is spawned.
    pub fn check_fuel_per_tick(&mut self, module: Digest, fuel_per_tick: u64) -> Result<()> {
        let bad = |reason: String| LockstepError::InvalidArgument { name: "fuelPerTick".into(), reason };
        let m = self
            .modules
            .get(&module)
            .ok_or_else(|| LockstepError::InvalidModule { reason: format!("module {module} is not loaded; call loadModule first") })?;
        let budget = if self.config.fuel_per_call > 0 { m.grants.fuel_per_call.max(1) } else { 0 };
        if fuel_per_tick > 0 {
            if let Some(reason) = slice_refusal(fuel_per_tick, budget, "the module's") {
                return Err(bad(reason));
            }
        }
        if fuel_per_tick > 0 {
            self.check_sliced_room()?;
        }
        Ok(())
    }

    /// An agent's time slice (fuel per call and tick; 0: none). `E_UNKNOWN_AGENT`.
    pub fn fuel_per_tick(&self, agent: AgentId) -> Result<u64> {
        Ok(self.inspect(agent)?.fuel_per_tick)
    }

    /// Spawns an agent (as `spawn_with_priority`) downstream of every agent in `after`, with
    /// `trigger`: the edges and the trigger are checked before the spawn (each agent of
    /// `after` exists and runs, room for the edges), so a refusal spawns nothing. Recorded as
    /// the spawn, then one Connect record per edge and a Trigger record (for `All`). An agent
    /// whose `agent_init` faulted gets no edges.
    pub fn spawn_after(&mut self, module: Digest, priority: i32, after: &[AgentId], trigger: Trigger) -> Result<AgentId> {
        let mut upstream = after.to_vec();
        upstream.sort_unstable();
        upstream.dedup();
        for &u in &upstream {
            self.running_agent(u)?;
        }
        let room = crate::limits::MAX_EDGES - self.agents.graph().edge_count();
        if upstream.len() > room {
            return Err(LockstepError::EdgeLimit { max: crate::limits::MAX_EDGES });
        }
        let id = self.spawn_with_priority(module, priority)?;
        if !self.slot(id)?.state.is_running() {
            return Ok(id);
        }
        for u in upstream {
            // A new agent has no downstream agent: no cycle; room was checked.
            self.connect(u, id)?;
        }
        self.set_trigger(id, trigger)?;
        Ok(id)
    }

    /// Every edge of the workflow graph, ascending by (from, to).
    pub fn edges(&self) -> Vec<(AgentId, AgentId)> {
        self.agents.graph().edges()
    }

    /// An agent's trigger (`Any` for an agent that stopped). `E_UNKNOWN_AGENT`.
    pub fn trigger(&self, agent: AgentId) -> Result<Trigger> {
        self.slot(agent)?;
        Ok(self.agents.graph().trigger(agent))
    }

    /// An agent's level in the workflow graph: 0 without upstream agents, else one more than
    /// its deepest upstream agent's (the phase it runs in is its level's, then its priority's).
    /// `E_UNKNOWN_AGENT`.
    pub fn level(&mut self, agent: AgentId) -> Result<u32> {
        self.slot(agent)?;
        Ok(self.agents.level(agent))
    }

    /// The slot of a running agent: `E_UNKNOWN_AGENT`, `E_AGENT_NOT_RUNNING`.
    fn running_agent(&self, id: AgentId) -> Result<&AgentSlot> {
        let slot = self.slot(id)?;
        if !slot.state.is_running() {
            return Err(LockstepError::AgentNotRunning { id, state: slot.state.name().into() });
        }
        Ok(slot)
    }

    /// A change of the graph (already applied): recorded, and folded into the next tick's
    /// input digest.
    fn graph_input(&mut self, record: Record) {
        self.session_started = true;
        match &record {
            Record::Connect { from, to, .. } => self.inputs.digest.edge(true, *from, *to),
            Record::Disconnect { from, to, .. } => self.inputs.digest.edge(false, *from, *to),
            Record::Trigger { agent, trigger, .. } => self.inputs.digest.trigger(*agent, *trigger),
            Record::Slice { agent, fuel_per_tick, .. } => self.inputs.digest.slice(*agent, *fuel_per_tick),
            _ => {}
        }
        self.record(|r| r.record(&record));
        self.outputs.trim_events();
    }

    fn dead_letter(&mut self, tick: u64, reason: DeadLetterReason, message: Message) {
        self.outputs.dead_letter(tick, reason, message);
        self.outputs.trim_events();
    }

    fn push_event(&mut self, e: Event) {
        self.outputs.push_event(e);
    }

    // ----- the clock -------------------------------------------------------------------------

    /// Copies the routed messages still held in their senders' outboxes into their
    /// recipients' inboxes (`HeldRoutes`, invariant 2): every method that reads or changes an
    /// inbox, or hands the session to anyone, between ticks calls this first.
    pub(crate) fn end_held_routes(&mut self) {
        self.route_scratch.held.end_before(u64::MAX, &mut self.agents.slots);
    }

    /// Runs one tick and returns what it did.
    ///
    /// Fails only with a journal (`E_JOURNAL_IO`): refused before it runs once the journal has
    /// failed, or, when this tick's records could not be written (or synced, with `fsync:
    /// Tick`), after it ran: that tick is not durable, and no further tick runs.
    pub fn tick(&mut self) -> Result<TickReport> {
        self.journal_ok()?;
        let tick = self.tick;
        self.session_started = true;
        let events_before = self.outputs.events.len();
        self.tick_hasher.begin(&self.last_hash, tick, &mut self.inputs.digest);

        // Host messages enter the inboxes (or the dead-letter queue) before anyone steps: those
        // queued since the last tick, then the inbound ring's, in ring order (the order their
        // Send records take in the log, so a replay routes them alike).
        let mut report = TickReport::new(tick);
        // (Only a tick cut short by a panic leaves ring records held: into their inboxes; and
        // only such a tick leaves routes held from this tick's own number: ended too.)
        self.inputs.end_holding(&mut self.agents.slots);
        if self.route_scratch.held.held_since() == Some(tick) {
            self.end_held_routes();
        }
        let pending = self.inputs.take_messages();
        if !pending.is_empty() {
            // Host messages are admitted against whole inboxes (`HeldRoutes`, invariant 2).
            self.end_held_routes();
        }
        for m in pending.iter() {
            scheduler::route(&mut self.agents.slots, m, tick, &mut self.tick_hasher, &mut report, &mut self.outputs);
        }
        self.inputs.recycle(pending);
        self.route_inbound_ring(tick, &mut report);
        let hasher = &mut self.tick_hasher;

        // The agents this tick runs: those holding an instance (kills and shutdowns since the
        // last tick released theirs; the refresh drops them from the index), in phases by
        // graph level, then priority.
        let (live, schedule) = self.agents.begin_tick();
        let (slots, graph) = self.agents.slots_and_graph();
        let running_up_to = |cap: usize| live.iter().filter(|&&i| slots[i].state.is_running()).take(cap).count();
        let workers = workers_for(self.pool.as_ref(), self.forced_workers, self.config.worker_scaling, self.last_fuel, running_up_to);
        // The exact count only matters to a tick of several phases (`phase_uses_pool`).
        let running = if schedule.len() > 1 { running_up_to(usize::MAX) } else { 0 };
        let parallel = workers > 1;
        let trace = self.outputs.trace.is_some();
        let mut busy = Vec::new();
        let mut stepped = 0;
        for (p, phase) in schedule.iter().enumerate() {
            if !phase.barriers.is_empty() {
                // (A barrier reads who sent what its inbox holds: it waits on upstream agents,
                // so its phase comes after the first, whose end ended any holding.)
                debug_assert!(p > 0 || !self.route_scratch.held.is_holding() || phase.barriers.iter().all(|&b| graph.upstream(slots[b].id).next().is_none()));
                scheduler::hold_barriers(slots, &phase.barriers, graph);
            }
            let pool = self.pool.as_ref().filter(|_| parallel && scheduler::phase_uses_pool(phase.members.len(), schedule.len(), running, self.last_fuel));
            let routes = Some(&self.route_scratch.held).filter(|h| p == 0 && h.is_holding());
            let run =
                scheduler::run_agents(slots, &phase.members, tick, pool, workers, trace, (self.inputs.held_inboxes().filter(|_| p == 0).as_ref(), routes));
            if p == 0 {
                // Before anything else reaches an inbox (this phase's messages, routed next).
                self.inputs.end_holding(slots);
                self.route_scratch.held.end_before(tick, slots);
            }
            // The last phase's messages may stay in their senders' outboxes until the next
            // tick's first phase (`HeldRoutes`; a checkpoint or snapshot at the tick's end
            // ends the holding first, as any method between ticks does).
            let hold = p + 1 == schedule.len();
            scheduler::settle(slots, &run, tick, hasher, &mut report, &mut self.outputs, pool.map(|p| (p, workers, &mut self.route_scratch, hold)));
            busy.extend_from_slice(&run.busy);
            stepped += run.running;
        }
        // (A tick without phases ends the holdings here; otherwise the first phase did.)
        self.inputs.end_holding(slots);
        self.route_scratch.held.end_before(tick, slots);
        // Only agents with news can have asked for inference; `serve_inference` takes them in
        // slot order whatever their phases.
        busy.sort_unstable();
        self.serve_inference(tick, &mut report, &busy);
        self.serve_generation(tick);
        self.agents.end_tick(live, schedule);
        // Agents that faulted this tick released their instances: recount before the next
        // spawn or tick (maxAgents, phases).
        if report.faults > 0 {
            self.agents.released_in_tick();
        }
        self.outputs.report_drops(tick);
        report.hash = self.tick_hasher.finish();
        report.agents_stepped = stepped as u32;
        report.parallel = parallel;
        report.workers = workers as u32;
        self.last_fuel = report.fuel;
        self.last_hash = report.hash;
        self.tick += 1;
        // Recorded before the tick's events are copied to the outbound ring: a cut here is one
        // of them (red team 10: its `recording_stopped` event came after the copies, and the
        // next tick copies only its own, so the ring never carried it).
        let mut journal = Ok(());
        if self.recorder.is_some() {
            self.record(|r| r.record(&Record::TickEnd { tick, hash: report.hash, agents: report.agent_digests.clone() }));
            let every = self.config.checkpoint_interval_ticks;
            // The journal's automatic snapshot gets a checkpoint at its tick too, so that
            // whoever restores it (recovery, a cursor) checks its memory against the journal's
            // deep hash before using it (red team of issue 12: a snapshot whose memory was not
            // the session's passed every check but the tick hash chain).
            let ticks_run = self.tick;
            let mut snapshot_due = self.recorder.as_mut().and_then(Recorder::journal_mut).is_some_and(|j| j.snapshot_due(ticks_run));
            if snapshot_due && report.agents_suspended > 0 {
                // A suspended call cannot be in a snapshot: the next tick without one takes it.
                if let Some(j) = self.recorder.as_mut().and_then(Recorder::journal_mut) {
                    j.put_off_snapshot();
                }
                snapshot_due = false;
            }
            if (every > 0 && self.tick.is_multiple_of(every)) || snapshot_due {
                self.record_checkpoint();
            }
            if let Some(r) = self.recorder.as_mut() {
                journal = r.tick_complete(tick, report.hash).map(|durable| report.durable_tick = durable);
            }
            if journal.is_ok() {
                journal = self.journal_snapshot();
            }
        }
        self.log_tick_events(events_before);
        self.outputs.feed_ring(&report, events_before, tick);
        self.outputs.trim_events();
        journal.map(|()| report)
    }

    /// Makes every later tick use `workers` threads (1..=the runtime's `workers`), whatever
    /// its scaling says; `None` returns to it. Results never depend on it (tests resize
    /// mid-session and compare hashes).
    pub fn set_workers(&mut self, workers: Option<usize>) -> Result<()> {
        let most = self.config.workers;
        if let Some(n) = workers {
            if n == 0 || n > most {
                return Err(LockstepError::InvalidArgument { name: "workers".into(), reason: format!("{n} is not in 1..={most} (the runtime's workers)") });
            }
        }
        self.forced_workers = workers;
        Ok(())
    }

    /// Writes the journal's automatic snapshot when one is due (docs/JOURNAL.md, "Snapshots").
    /// A runtime a snapshot cannot hold (`E_SNAPSHOT_UNSUPPORTED`) goes on without: the
    /// journal alone still recovers it, from further back; said once in the log.
    fn journal_snapshot(&mut self) -> Result<()> {
        let ticks_run = self.tick;
        if !self.recorder.as_mut().and_then(Recorder::journal_mut).is_some_and(|j| j.snapshot_due(ticks_run)) {
            return Ok(());
        }
        if self.agents.slots.iter().any(|s| s.suspended.is_some()) {
            return Ok(()); // put off (`tick`)
        }
        match self.snapshot() {
            Ok(bytes) => match self.recorder.as_mut().and_then(Recorder::journal_mut) {
                Some(j) => j.snapshot(ticks_run, bytes),
                None => Ok(()),
            },
            Err(e) => {
                if !self.snapshot_refused_noted {
                    self.snapshot_refused_noted = true;
                    tracing::warn!(target: "lockstep::journal", "the journal's automatic snapshots are skipped: {e}; recovery replays from an earlier snapshot or from tick 0");
                }
                Ok(())
            }
        }
    }

    /// Mirrors the tick's faults and agent log lines into `tracing` (see `logging`).
    fn log_tick_events(&self, events_before: usize) {
        for e in self.outputs.events.iter().skip(events_before) {
            match e {
                Event::Fault { agent, fault, tick } => tracing::warn!(target: "lockstep::runtime", agent, tick, "agent {agent} {}", fault),
                Event::Log { agent, level, text, tick } => match level {
                    1 => tracing::error!(target: "lockstep::agent", agent, tick, "{text}"),
                    2 => tracing::warn!(target: "lockstep::agent", agent, tick, "{text}"),
                    3 => tracing::info!(target: "lockstep::agent", agent, tick, "{text}"),
                    4 => tracing::debug!(target: "lockstep::agent", agent, tick, "{text}"),
                    _ => tracing::trace!(target: "lockstep::agent", agent, tick, "{text}"),
                },
                _ => {}
            }
        }
    }

    // ----- inference for agents -----------------------------------------------------------------

    /// The engine agents' `infer` calls use (the embedder creates and shares it).
    pub fn set_inference_engine(&mut self, engine: Arc<InferenceEngine>) {
        self.inference.engine = Some(engine);
    }

    /// Makes a loaded model available to agents; returns its slot (the `infer` import's
    /// `model` argument). Registering the same model twice returns the same slot.
    pub fn register_agent_model(&mut self, id: &str) -> Result<u32> {
        self.journal_ok()?;
        if let Some(slot) = self.inference.models.iter().position(|m| m == id) {
            return Ok(slot as u32);
        }
        let known = self.inference.engine.as_ref().is_some_and(|e| e.info(id).is_ok());
        if !known && !self.inference.replaying {
            return Err(LockstepError::InvalidModule { reason: format!("model {id} is not loaded; call loadModel first") });
        }
        let slot = self.inference.models.len() as u32;
        self.inference.models.push(id.to_string());
        self.record(|r| r.record(&Record::AgentModel { slot, id: id.to_string() }));
        self.outputs.trim_events();
        Ok(slot)
    }

    /// A runtime for `replay`: inference answers are inputs from the log
    /// (`accept_recorded_answers`), never computed, and models need not be loaded.
    pub(crate) fn new_replaying(config: RuntimeConfig) -> Result<Self> {
        let mut rt = Self::new(config)?;
        rt.inference.replaying = true;
        Ok(rt)
    }

    /// The answers a replayed session's agents got at `tick` (its InferResults record), used
    /// in place of ONNX Runtime when that tick serves its requests. Only in a replay.
    pub(crate) fn accept_recorded_answers(&mut self, tick: u64, answers: Vec<InferAnswer>) -> Result<()> {
        if !self.inference.replaying {
            return Err(LockstepError::InvalidConfig { reason: "recorded inference answers are an input of a replay only".into() });
        }
        self.inference.recorded.push_back((tick, answers));
        Ok(())
    }

    /// Replaying: why the last tick's recorded inference answers could not have been written
    /// by a runtime for its requests, if they could not (taken once).
    pub(crate) fn take_inconsistent_answers(&mut self) -> Option<String> {
        self.inference.inconsistent.take()
    }

    /// Answers this tick's inference requests (batched per model) as messages for next tick.
    /// A request for a model the agent's capabilities do not cover is answered "forbidden"
    /// and never reaches ONNX Runtime.
    fn serve_inference(&mut self, tick: u64, report: &mut TickReport, live: &[usize]) {
        let mut requests = Vec::new();
        let mut forbidden = Vec::new();
        // Every agent that asked something this tick is in `live` (those that faulted too: what
        // they asked before faulting is still answered, as before).
        for &i in live {
            let Some(slot) = self.agents.slots.get_mut(i).filter(|s| !s.out.infer.is_empty()) else { continue };
            let grants = self.modules.get(&slot.module).map(|m| &m.grants.capabilities);
            for r in slot.out.infer.drain(..) {
                if r.model & crate::host::GENERATE_FLAG != 0 {
                    self.lm.incoming.push((slot.id, r));
                    continue;
                }
                let model = self.inference.models.get(r.model as usize);
                if model.is_none() {
                    // Answered "no such model" (status 1) like before; say who asked for what.
                    let registered = self.inference.models.len();
                    let text = format!(
                        "infer: model slot {} is not registered ({}); answered status {} (no such model). The host registers models with registerAgentModel(), which returns their slots",
                        r.model,
                        if registered == 0 { "no model is registered".to_string() } else { format!("registered slots: 0..={}", registered - 1) },
                        abi::INFER_STATUS_NO_SUCH_MODEL
                    );
                    self.outputs.push_event(Event::Log { tick, agent: slot.id, level: abi::log_level::WARN, text });
                }
                let allowed = match (grants, model) {
                    (Some(g), Some(id)) => g.may_infer(id),
                    // An unknown slot is answered "no such model" by serve().
                    (Some(g), None) => !g.infer.is_empty(),
                    (None, _) => false,
                };
                if allowed {
                    requests.push((slot.id, r));
                } else {
                    forbidden.push((slot.id, r.tag, abi::INFER_STATUS_FORBIDDEN.to_le_bytes().to_vec()));
                }
            }
        }
        let answers: Vec<InferAnswer> = if self.inference.replaying {
            let recorded = match self.inference.recorded.front() {
                Some((t, _)) if *t == tick => self.inference.recorded.pop_front().map(|(_, r)| r),
                _ => None,
            };
            // Nothing recorded for a tick that asked delivers nothing (the tick hash covers the
            // requests); answers must be the answers to this tick's requests (red team 10: a
            // forged record answering an agent that never asked, or a tick that asked nothing,
            // was delivered or silently kept, and the log verified complete).
            if let Some(reason) = recorded_answers_mismatch(tick, &requests, &forbidden, recorded.as_deref()) {
                self.inference.inconsistent.get_or_insert(reason);
            }
            recorded.unwrap_or_default()
        } else {
            // A tick whose every request was forbidden still answers each one (issue 9: an
            // early return here dropped them and the agents waited forever).
            if requests.is_empty() && forbidden.is_empty() {
                return;
            }
            let (answers, stats) = agent_inference::serve(self.inference.engine.as_deref(), &self.inference.models, requests, self.config.inference_batching);
            report.inference_requests = stats.requests;
            report.inference_calls = stats.calls;
            // Answers reach the agent through its io buffer like any message, so they are cut to
            // fit before they are recorded (replay refuses a recorded answer that does not fit).
            let mut answers: Vec<_> = answers.into_iter().map(|a| (a.agent, a.tag, fit_answer(a.payload))).collect();
            // Canonical order: by agent id (stable, so each agent's requests keep their order).
            answers.extend(forbidden);
            answers.sort_by_key(|a| a.0);
            self.record(|r| r.record(&Record::InferResults { tick, results: answers.clone() }));
            answers
        };
        for (agent, tag, payload) in answers {
            self.inputs.inference_answer(agent, tag, payload);
        }
    }

    // ----- rings ------------------------------------------------------------------------------

    /// Attaches the JS→core ring (initialised by the other side). Its messages enter at the
    /// start of each tick, in ring order, and are recorded like `send`.
    pub fn attach_inbound_ring(&mut self, memory: RingMemory) -> Result<()> {
        self.inputs.inbound_ring = Some(Consumer::new(memory, abi::MAX_PAYLOAD_BYTES)?);
        Ok(())
    }

    /// Attaches the core→JS ring: messages agents send to the host, copies of the tick's
    /// events, and one TICK record per tick are written there instead of `drain_host_messages`.
    pub fn attach_outbound_ring(&mut self, memory: RingMemory) -> Result<()> {
        self.outputs.attach_ring(Producer::new(memory)?);
        Ok(())
    }

    /// The error that broke the inbound ring, if any.
    pub fn inbound_ring_error(&self) -> Option<&RingError> {
        self.inputs.inbound_ring.as_ref().and_then(|c| c.broken())
    }

    /// Records waiting for room in the outbound ring.
    pub fn outbound_backlog(&self) -> usize {
        self.outputs.ring_backlog()
    }

    /// Routes the inbound ring's messages at the start of tick `tick`: those published when
    /// the tick began (up to `MAX_RING_RECORDS_PER_TICK`; later ones wait for the next tick),
    /// after the queued host messages. A batch at a time (`RING_BATCH_RECORDS`,
    /// `RING_BATCH_BYTES`): each record is checked, recorded as a Send record and numbered as
    /// `send` would, in ring order, and staged in `inputs.ring_batch` (kept between ticks: no
    /// allocation per message); then the batch is routed a recipient at a time
    /// (`scheduler::route_grouped`), with the effect of routing each in order: the same inboxes,
    /// dead letters, events and tick hash. A replay feeds the same Send records through the
    /// input queue, routed in order at the same tick. Once the journal has failed, records
    /// stay in the ring.
    fn route_inbound_ring(&mut self, tick: u64, report: &mut TickReport) {
        if self.recorder.is_none() {
            return self.route_inbound_ring_held(tick, report);
        }
        let Some(mut consumer) = self.inputs.inbound_ring.take() else { return };
        let mut batch = std::mem::take(&mut self.inputs.ring_batch);
        // Its buffers, once, at their limits: a batch never outgrows them (a record past
        // RING_BATCH_BYTES starts the next batch), so they are never reallocated or given back.
        batch.reserve_exact(RING_BATCH_RECORDS, RING_BATCH_BYTES);
        // What was published when the tick began, not what the producer adds meanwhile.
        let end = consumer.published();
        if consumer.unread_before(end) {
            // Ring records are admitted against whole inboxes (`HeldRoutes`, invariant 2).
            self.end_held_routes();
        }
        let mut drained = 0;
        while consumer.broken().is_none() && drained < MAX_RING_RECORDS_PER_TICK {
            let room = (MAX_RING_RECORDS_PER_TICK - drained).min(RING_BATCH_RECORDS);
            let (mut full, mut journal_failed) = (false, false);
            // The record whose Send record filled the replay log: routed alone, after the
            // batch before it and the `recording_stopped` event, as routing in order would.
            let mut cut: Option<(Message, Event)> = None;
            let result = consumer.drain_heads_to(end, room, |r| {
                if cut.is_some() {
                    return ControlFlow::Break(()); // left in the ring for the next batch
                }
                if r.kind_of_record != ring::TYPE_MESSAGE {
                    return ControlFlow::Continue(());
                }
                if !batch.is_empty() && batch.payload_bytes() + r.len() > RING_BATCH_BYTES {
                    full = true;
                    return ControlFlow::Break(());
                }
                if self.journal_ok().is_err() {
                    journal_failed = true;
                    return ControlFlow::Break(());
                }
                // The payload is copied once, from the ring into the batch (memory the producer
                // cannot touch), and recorded and routed from there. The consumer refused
                // payloads over the message limit already.
                let seq = self.inputs.next_host_seq();
                let head = MessageRef { from: abi::HOST_ID, to: r.agent, seq, kind: r.kind, priority: r.priority, payload: &[] };
                let m = batch.push_with(head, r.len(), |out| r.append_payload(out));
                let stopped_recording = self.record(|rec| rec.send(tick, m.to, m.kind, m.priority, m.payload));
                if stopped_recording {
                    if let Some(event) = self.outputs.events.pop_back() {
                        // Routed alone after the batch: out of it.
                        match batch.pop() {
                            Some(m) => cut = Some((m, event)),
                            None => self.outputs.events.push_back(event), // (just pushed: unreachable)
                        }
                        return ControlFlow::Continue(()); // taken from the ring; the next stays
                    }
                }
                ControlFlow::Continue(())
            });
            self.route_ring_batch(&batch, tick, report);
            batch.clear_retaining(RING_BATCH_BYTES + RING_BATCH_RECORDS * crate::mailbox::Mailbox::ENVELOPE_BYTES);
            if let Some((m, event)) = cut.take() {
                self.outputs.events.push_back(event);
                scheduler::route(&mut self.agents.slots, m.as_ref(), tick, &mut self.tick_hasher, report, &mut self.outputs);
                full = true; // more may follow in the ring: go on
            }
            match result {
                Ok(count) => {
                    drained += count;
                    if journal_failed || (!full && count < room) {
                        break; // the journal failed, or everything published is drained
                    }
                }
                Err(e) => {
                    tracing::error!(target: "lockstep::runtime", "inbound ring broken: {e}");
                    // Untrimmed: inside a tick its events are read by index until it ends (see
                    // `record`); the tick trims them after.
                    self.outputs.events.push_back(Event::RingError { tick: self.tick, detail: e.to_string() });
                    break;
                }
            }
        }
        self.inputs.ring_batch = batch;
        self.inputs.inbound_ring = Some(consumer);
    }

    /// Routes one batch of inbound-ring records a recipient at a time (`scheduler::
    /// route_grouped`), on every pool thread (or the `set_workers` count): a batch that is
    /// routed grouped is thousands of records.
    fn route_ring_batch(&mut self, batch: &impl scheduler::GroupedBatch, tick: u64, report: &mut TickReport) {
        let pool = self.pool.as_ref().map(|p| (p, self.forced_workers.unwrap_or(usize::MAX).clamp(1, p.current_num_threads() + 1)));
        let (slots, outputs, scratch) = (&mut self.agents.slots, &mut self.outputs, &mut self.inputs.ring_grouping);
        scheduler::route_grouped(slots, batch, tick, &mut self.tick_hasher, report, outputs, scratch, pool);
    }

    /// `route_inbound_ring` when nothing records (no replay log and no journal: `record:
    /// false`, or `stop_recording`, without a journal): the same
    /// batches, but the records stay in the ring while they are routed (`Consumer::
    /// hold_messages`) and each payload is copied once, on the workers, straight from the ring
    /// into its recipient's inbox (`scheduler::HeldBatch`); then their space is released. The
    /// same inboxes, dead letters, events and tick hash as staging them
    /// (`tests/rings.rs`: `ring_records_routed_recipient_by_recipient_...` and
    /// `ring_and_send_routing_agree_on_random_traffic` compare the two, and with `send()`).
    fn route_inbound_ring_held(&mut self, tick: u64, report: &mut TickReport) {
        let Some(mut consumer) = self.inputs.inbound_ring.take() else { return };
        let mut held = std::mem::take(&mut self.inputs.ring_held);
        // Once, at its limit: a walk never holds more (`RING_BATCH_RECORDS`).
        held.reserve_exact(RING_BATCH_RECORDS.saturating_sub(held.len()));
        let end = consumer.published();
        if consumer.unread_before(end) {
            // Ring records are admitted against whole inboxes (`HeldRoutes`, invariant 2).
            self.end_held_routes();
        }
        let mut drained = 0;
        while consumer.broken().is_none() && drained < MAX_RING_RECORDS_PER_TICK {
            let room = (MAX_RING_RECORDS_PER_TICK - drained).min(RING_BATCH_RECORDS);
            held.clear();
            let result = consumer.hold_messages(end, room, RING_BATCH_BYTES, &mut held);
            let reached_end = consumer.held_up_to(end);
            // Numbered as `send` would, in ring order.
            let first_seq = self.inputs.take_host_seqs(held.len());
            // The walk that reaches the end of what was published (the tick's last), and no
            // trace to copy what agents receive: recipients' records may stay in the ring until
            // the first phase has run (`scheduler::HeldInboxes`; `tick` ends the holding). A
            // recipient of an earlier walk's records has them in its inbox, so it takes these
            // through its inbox too (`AgentSlot::takes_held`).
            let hold = result.is_ok() && reached_end && self.outputs.trace.is_none();
            self.route_ring_batch(&scheduler::HeldBatch { records: &held, first_seq, ring: &consumer, hold }, tick, report);
            if hold {
                self.inputs.ring_held = held;
                self.inputs.ring_held_first_seq = Some(first_seq);
                self.inputs.inbound_ring = Some(consumer);
                return;
            }
            consumer.release_held();
            match result {
                Ok(count) => {
                    drained += count;
                    if reached_end {
                        break; // everything published is drained
                    }
                }
                Err(e) => {
                    tracing::error!(target: "lockstep::runtime", "inbound ring broken: {e}");
                    self.outputs.events.push_back(Event::RingError { tick: self.tick, detail: e.to_string() });
                    break;
                }
            }
        }
        held.clear();
        self.inputs.ring_held = held;
        self.inputs.inbound_ring = Some(consumer);
    }

    /// Moves as much of the backlog into the outbound ring as fits; returns what is left.
    pub fn flush_outbound(&mut self) -> usize {
        self.outputs.flush_ring(self.tick)
    }

    /// Runs `n` ticks; returns the last report (`None` for `n` = 0). Stops at the first
    /// tick that fails (see `tick`).
    pub fn run(&mut self, n: u64) -> Result<Option<TickReport>> {
        let mut last = None;
        for _ in 0..n {
            last = Some(self.tick()?);
        }
        Ok(last)
    }

    /// Hashes every agent's memory, globals and host state (in parallel where a pool exists).
    pub fn deep_hash(&mut self) -> DeepHash {
        // (Only a tick cut short by a panic leaves ring records held: into their inboxes.)
        self.inputs.end_holding(&mut self.agents.slots);
        self.end_held_routes();
        let hash_one = |s: &mut AgentSlot| (s.id, DeepHasher::agent(s));
        let parts: Vec<_> = match &self.pool {
            Some(pool) => pool.install(|| self.agents.slots.par_iter_mut().map(hash_one).collect()),
            None => self.agents.slots.iter_mut().map(hash_one).collect(),
        };
        let hash = DeepHasher::whole(&self.last_hash, parts.iter().map(|(_, d)| d));
        let agents = parts.iter().map(|(id, d)| (*id, [d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])).collect();
        DeepHash { tick: self.tick, hash, agents }
    }

    /// Deep hash, recorded in the log so a replay verifies it at the same point.
    pub fn checkpoint(&mut self) -> DeepHash {
        let d = self.record_checkpoint();
        self.outputs.trim_events();
        d
    }

    /// `checkpoint` without trimming the events (inside a tick).
    fn record_checkpoint(&mut self) -> DeepHash {
        let d = self.deep_hash();
        self.record(|r| r.record(&Record::Checkpoint { tick: d.tick, hash: d.hash, agents: d.agents.clone() }));
        d
    }

    // ----- reading results -------------------------------------------------------------------

    /// A snapshot of one agent, running or not; `E_UNKNOWN_AGENT` for an id never assigned.
    pub fn inspect(&self, id: AgentId) -> Result<AgentInfo> {
        let s = self.slot(id)?;
        Ok(AgentInfo {
            id,
            module: s.module,
            state: s.state.clone(),
            steps: s.steps,
            messages_received: s.messages_received,
            messages_sent: s.messages_sent,
            inbox_len: s.inbox.len() + self.route_scratch.held.held_for(s, (id as usize).wrapping_sub(1)),
            memory_bytes: s.usage().0,
            fuel_consumed: s.usage().1,
            fuel_per_tick: s.instance.as_ref().map(|i| i.fuel_per_tick).or(s.suspended.as_ref().map(|c| c.fuel_per_tick)).unwrap_or(0),
            suspended: s.suspended.as_ref().map(|c| c.call),
        })
    }

    /// Every id assigned so far, ascending (stopped, killed and faulted agents included).
    pub fn agent_ids(&self) -> Vec<AgentId> {
        self.agents.slots.iter().map(|s| s.id).collect()
    }

    /// Agents spawned so far, running or not: the highest id assigned.
    pub fn agent_count(&self) -> usize {
        self.agents.slots.len()
    }

    /// Takes the events not yet drained, oldest first (the newest `max_events`; older ones
    /// were dropped and counted in `events_dropped`).
    pub fn drain_events(&mut self) -> Vec<Event> {
        self.outputs.drain_events()
    }

    /// Events dropped over the runtime's life because more than `max_events` waited undrained.
    pub fn events_dropped(&self) -> u64 {
        self.outputs.events_dropped()
    }

    // ----- observing (crate::observe; docs/DASHBOARD.md): read-only, never an input ----------

    /// Every agent in one packed table (`observe::AGENT_ROW_BYTES` per agent, id order).
    pub fn agent_table(&self) -> observe::AgentTable {
        // (Messages held in their senders' outboxes are in the inbox it shows: `HeldRoutes`.)
        observe::agent_table(&self.agents.slots, |i, s| self.route_scratch.held.held_for(s, i))
    }

    /// Agents by state: running, preempted, faulted, stopped, killed.
    pub fn agent_state_counts(&self) -> [u64; 5] {
        observe::state_counts(&self.agents.slots)
    }

    /// How full each queue is now.
    pub fn queue_depths(&self) -> observe::QueueDepths {
        observe::QueueDepths {
            events: self.outputs.events.len() as u64,
            dead_letters: self.outputs.dead_letters.len() as u64,
            host_messages: self.outputs.host_messages.len() as u64,
            pending_inputs: self.inputs.pending() as u64,
            outbound_backlog: self.outputs.ring_backlog() as u64,
            events_dropped: self.outputs.events_dropped(),
        }
    }

    /// The sequence number the next event will take: `events_since` from an older cursor has
    /// something new exactly when this grew past it (a check that reads no event).
    pub fn events_end(&self) -> u64 {
        self.outputs.events_end()
    }

    /// The events still queued from sequence number `cursor` on (at most `max`), without
    /// draining them. Returns the sequence number of the first event still queued (those
    /// before it were drained or dropped) and the events; the next cursor is the sequence
    /// number of the last one returned, plus one. Every event gets the next sequence number
    /// (0, 1, 2...) as it is queued.
    pub fn events_since(&self, cursor: u64, max: usize) -> (u64, Vec<&Event>) {
        let (first, events) = self.outputs.events_since(cursor, max);
        (first, events.collect())
    }

    /// Watches these agents' messages (the first `observe::MAX_WATCHED`; none stops the tap):
    /// from now on the newest `observe::TAP_DEPTH` messages routed to and from each are kept
    /// for `watched_messages`. Agents still watched keep what was seen.
    pub fn watch_agents(&mut self, ids: &[AgentId]) {
        self.outputs.tap = observe::MessageTap::rewatch(self.outputs.tap.take(), ids);
    }

    /// What the tap saw of a watched agent (None: not watched).
    pub fn watched_messages(&self, id: AgentId) -> Option<&observe::WatchedAgent> {
        self.outputs.tap.as_ref()?.watched.iter().find(|w| w.id == id)
    }

    /// Takes the dead letters not yet drained, oldest first. The queue holds at most
    /// `limits::MAX_DEAD_LETTERS` (64 MiB of payload); past it they are dropped and counted in
    /// a `Dropped` event.
    pub fn drain_dead_letters(&mut self) -> Vec<DeadLetter> {
        self.outputs.dead_letters.drain_all()
    }

    /// Items each bounded queue refused over the runtime's life: (dead letters, messages to
    /// the host, outbound-ring records). Each refusal was also reported in a `dropped` event.
    pub fn dropped_totals(&self) -> (u64, u64, u64) {
        self.outputs.dropped_totals()
    }

    /// Messages agents addressed to the host (id 0), in routing order.
    pub fn drain_host_messages(&mut self) -> Vec<Message> {
        self.outputs.host_messages.drain_all()
    }

    // ----- requests (docs/ABI.md, "Requests": an SDK convention over ordinary messages) -----

    /// Sends `body` to agent `to` as a request (the envelope of [`abi::request`]) and returns
    /// its id, unique in this runtime (1, 2, 3...: the same program gets the same ids). It is
    /// an ordinary host message: checked, recorded and replayed like `send`, with the same
    /// errors; a body over `request::MAX_BODY_BYTES` is `E_MESSAGE_TOO_LARGE`. The agent
    /// answers with the SDK's `reply`; take the answer with [`Runtime::take_replies`].
    pub fn send_request(&mut self, to: AgentId, kind: u32, priority: i32, body: &[u8]) -> Result<u64> {
        if body.len() > abi::request::MAX_BODY_BYTES {
            return Err(LockstepError::MessageTooLarge { len: body.len(), max: abi::request::MAX_BODY_BYTES });
        }
        let id = self.next_request_id;
        let mut payload = Vec::with_capacity(abi::request::HEADER_BYTES + body.len());
        payload.extend_from_slice(&abi::request::header(abi::request::Envelope::Request, id));
        payload.extend_from_slice(body);
        self.send(to, kind, priority, payload)?;
        self.next_request_id += 1;
        Ok(id)
    }

    /// Takes the replies to the requests in `pending` ((agent, request id) pairs) out of the
    /// queue of messages to the host, oldest first, as (request id, message whose payload is
    /// the reply's body). Every other message stays there for `drain_host_messages`, replies
    /// to other requests included.
    pub fn take_replies(&mut self, pending: &[(AgentId, u64)]) -> Vec<(u64, Message)> {
        if pending.is_empty() {
            return Vec::new();
        }
        let reply_to = |m: &Message| match abi::request::parse(&m.payload) {
            Some((abi::request::Envelope::Reply, id, _)) if pending.contains(&(m.from, id)) => Some(id),
            _ => None,
        };
        self.outputs
            .host_messages
            .take_where(|m| reply_to(m).is_some())
            .into_iter()
            .map(|mut m| {
                let id = reply_to(&m).unwrap_or_default();
                m.payload.drain(..abi::request::HEADER_BYTES);
                (id, m)
            })
            .collect()
    }

    /// The requests in `pending` ((agent, request id) pairs) that the dead-letter queue holds,
    /// with why each was dead-lettered (they stay there for `drain_dead_letters`). One pass
    /// over the queue.
    pub fn request_dead_letters(&self, pending: &[(AgentId, u64)]) -> Vec<(u64, DeadLetterReason)> {
        if pending.is_empty() {
            return Vec::new();
        }
        let wanted: std::collections::HashSet<(AgentId, u64)> = pending.iter().copied().collect();
        let mut found = Vec::new();
        for d in self.outputs.dead_letters.iter().filter(|d| d.message.from == abi::HOST_ID) {
            if let Some((abi::request::Envelope::Request, id, _)) = abi::request::parse(&d.message.payload) {
                if wanted.contains(&(d.message.to, id)) && !found.iter().any(|(i, _)| *i == id) {
                    found.push((id, d.reason));
                }
            }
        }
        found
    }

    // ----- journal recovery (journal::recover) ------------------------------------------------

    /// The id the next `send_request` gets.
    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request_id
    }

    /// Turns a runtime that replayed a journal into the live continuation of that session:
    /// `config` (the session's settings, with the caller's workers, limits and journal), inference
    /// answers computed again rather than read from a log, the replay's outputs dropped (the
    /// process that crashed produced them), recording going on in `recorder`, and request ids
    /// following the last one the journal holds.
    pub(crate) fn resume_recovered(&mut self, config: RuntimeConfig, mut recorder: Recorder, last_request_id: u64) {
        recorder.modules_already_written(self.modules.keys().copied());
        self.outputs = Outputs::new(config.max_events);
        self.config = config;
        self.inference.replaying = false;
        self.inference.recorded.clear();
        self.recorder = Some(recorder);
        self.next_request_id = last_request_id + 1;
    }
}

// Snapshots and restore (docs/SNAPSHOT.md) capture and rebuild the fields above: the code is
// in its own file, a child of this module so that it sees them.
#[path = "snapshot/runtime.rs"]
mod snapshot_runtime;

// Language models for agents (docs/INFERENCE.md, "Language models"), likewise.
#[path = "inference/lm/serve.rs"]
mod lm_serve;
pub use lm_serve::{AgentLmOptions, MAX_TOKENS_PER_TICK};

/// Why a time slice of `fuel_per_tick` cannot be part of calls of `budget` fuel (`whose`:
/// "agent 3's", "the module's"), if it cannot: no metering, or more than one call's budget.
fn slice_refusal(fuel_per_tick: u64, budget: u64, whose: &str) -> Option<String> {
    if budget == 0 {
        Some("time slicing needs fuel metering (fuelPerCall > 0)".into())
    } else if fuel_per_tick > budget {
        Some(format!("{fuel_per_tick} is over {whose} per-call fuel budget of {budget}: a slice is part of one call's budget"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a replay log, a tick's last walk of the ring stays in the ring for its
    /// recipients' turns (`scheduler::HeldInboxes`): routing only marks the slots, the ring's
    /// space is given back once the first phase has run (what no turn took is in its inbox by
    /// then), and every record is delivered. (`tests/rings.rs` checks such ticks against
    /// recorded ones; this checks the path is the one taken.)
    #[test]
    fn a_ticks_ring_records_stay_in_the_ring_until_their_recipients_turns() {
        let agent = wat::parse_str(
            r#"(module (memory (export "memory") 3)
              (func (export "lockstep_abi_version") (result i32) i32.const 2)
              (func (export "lockstep_io_buffer") (result i32) i32.const 4096)
              (func (export "agent_init") (result i32) i32.const 0)
              (func (export "agent_step") (param i32) (result i32) i32.const 0)
              (func (export "agent_shutdown") (result i32) i32.const 0)
              (func (export "agent_receive_batch") (param i32 i32) (result i32)
                (i32.store (i32.const 69632) (local.get 1)) i32.const 0))"#,
        )
        .expect("wat");
        let mut rt = Runtime::new(RuntimeConfig { workers: 1, record: false, ..RuntimeConfig::development() }).expect("runtime");
        let m = rt.load_module(agent).expect("module");
        let ids: Vec<AgentId> = (0..4).map(|_| rt.spawn(m).expect("spawn")).collect();
        const CAPACITY: usize = 1 << 20;
        let region = crate::ring::OwnedRegion::new(CAPACITY);
        crate::ring::init(&region.memory(), CAPACITY).expect("ring");
        rt.attach_inbound_ring(region.memory()).expect("attach");
        let mut producer = crate::ring::Producer::new(region.memory()).expect("producer");
        let records = 5_000;
        for i in 0..records {
            producer.try_push(crate::ring::TYPE_MESSAGE, 1, 0, ids[i % ids.len()], &[i as u8; 150]).expect("room");
        }

        let mut report = TickReport::new(0);
        rt.route_inbound_ring_held(0, &mut report);
        assert!(rt.inputs.ring_held_first_seq.is_some(), "held for the turns");
        assert!(rt.agents.slots.iter().all(|s| s.ring_held && s.inbox.is_empty()), "only marked");
        // 5,000 records of 150 bytes take most of the ring: while they are held, there is
        // no room for half as many again.
        let push = |producer: &mut crate::ring::Producer, n: usize| {
            (0..n).take_while(|_| producer.try_push(crate::ring::TYPE_MESSAGE, 1, 0, ids[1], &[9; 150]).is_ok()).count()
        };
        let extra = push(&mut producer, records / 2);
        assert!(extra < records / 2, "the held records' space is not given back yet ({extra} more fit)");
        rt.inputs.end_holding(&mut rt.agents.slots);
        assert!(rt.agents.slots.iter().all(|s| !s.ring_held && s.inbox.len() >= records / ids.len()), "copied into the inboxes when no turn took them");
        assert_eq!(push(&mut producer, records / 2), records / 2, "given back");
        let report = rt.tick().expect("tick");
        assert_eq!(report.messages_delivered as usize, records + extra + records / 2, "the inboxes, then the records behind them");

        // A whole tick: the turns take them, the space comes back after.
        for i in 0..records {
            producer.try_push(crate::ring::TYPE_MESSAGE, 1, 0, ids[i % ids.len()], &[7; 100]).expect("room");
        }
        let report = rt.tick().expect("tick");
        assert_eq!(report.messages_delivered as usize, records);
        assert!(rt.agents.slots.iter().all(|s| !s.ring_held && s.inbox.is_empty()));
        assert!(rt.inputs.ring_held_first_seq.is_none());
    }

    /// Routing the last phase on the pool leaves a recipient's run in its senders' outboxes
    /// (`HeldRoutes`): the slot is only marked, `inspect` counts the run, and ending the
    /// holding (or the recipient's turn) puts every message where routing would have.
    #[test]
    fn routed_messages_stay_in_their_senders_outboxes_until_their_recipients_turns() {
        let agent = wat::parse_str(
            r#"(module
              (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 2)
              (func (export "lockstep_abi_version") (result i32) i32.const 2)
              (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
              (func (export "agent_init") (result i32) i32.const 0)
              (func (export "agent_shutdown") (result i32) i32.const 0)
              (func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
              (func (export "agent_step") (param $ctx i32) (result i32)
                (local $i i32) (local $id i64)
                (local.set $id (i64.load offset=16 (local.get $ctx)))
                (block $out (loop $next
                  (br_if $out (i32.ge_u (local.get $i) (i32.const 16)))
                  (i32.store (i32.const 0) (local.get $i))
                  (drop (call $send
                    (i64.add (i64.rem_u (i64.add (i64.mul (local.get $id) (i64.const 7)) (i64.extend_i32_u (i32.mul (local.get $i) (i32.const 13)))) (i64.const 600)) (i64.const 1))
                    (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 8)))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br $next)))
                i32.const 0))"#,
        )
        .expect("wat");
        let mut rt = Runtime::new(RuntimeConfig { workers: 2, ..RuntimeConfig::development() }).expect("runtime");
        let m = rt.load_module(agent).expect("module");
        let ids: Vec<AgentId> = (0..600).map(|_| rt.spawn(m).expect("spawn")).collect();
        let first = rt.tick().expect("tick");
        assert_eq!(first.messages_routed, 600 * 16);
        assert!(rt.route_scratch.held.is_holding(), "the tick's routes are held");
        let marked: Vec<usize> = (0..ids.len()).filter(|&i| rt.agents.slots[i].routed_held).collect();
        assert!(marked.len() > 500, "recipients only marked: {}", marked.len());
        assert!(marked.iter().all(|&i| rt.agents.slots[i].inbox.is_empty()), "their inboxes empty");
        let counted: usize = ids.iter().map(|&id| rt.inspect(id).expect("inspect").inbox_len).sum();
        assert_eq!(counted, 600 * 16, "inspect counts what is held for each agent");

        // The next tick's turns take them from the outboxes, and its routes are held in turn.
        let second = rt.tick().expect("tick");
        assert_eq!(second.messages_delivered, 600 * 16, "delivered from the outboxes");
        assert!(rt.route_scratch.held.is_holding());
        assert!(rt.agents.slots.iter().all(|s| s.inbox.is_empty()), "nothing was copied into an inbox");

        // Ending the holding copies each run into its inbox, in order.
        rt.end_held_routes();
        assert!(!rt.route_scratch.held.is_holding());
        assert!(rt.agents.slots.iter().all(|s| !s.routed_held));
        let copied: usize = rt.agents.slots.iter().map(|s| s.inbox.len()).sum();
        assert_eq!(copied, 600 * 16, "copied into the inboxes");
        assert!(rt.agents.slots.iter().all(|s| s.inbox.iter().is_sorted_by_key(|m| (std::cmp::Reverse(m.priority), m.from, m.seq))), "in delivery order");
        let third = rt.tick().expect("tick");
        assert_eq!(third.messages_delivered, 600 * 16, "delivered from the inboxes");
    }

    /// `workers_for` counts the running agents only as far as its threshold; it must decide as
    /// it would with the whole count, for every scaling and count around the thresholds.
    #[test]
    fn workers_for_decides_as_with_the_whole_running_count() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("pool");
        let most = pool.current_num_threads() + 1;
        let whole = |scaling: WorkerScaling, last_fuel: u64, running: usize| match scaling {
            WorkerScaling::Fixed if running >= scheduler::PARALLEL_MIN_AGENTS || last_fuel >= scheduler::PARALLEL_MIN_FUEL => most,
            WorkerScaling::Fixed => 1,
            WorkerScaling::Auto => (running / AGENTS_PER_WORKER).max((last_fuel / FUEL_PER_WORKER) as usize).clamp(1, most),
        };
        let counts = [0, 1, 63, 64, 65, 511, 512, 1023, 1024, 2047, 2048, 2049, 4096, 10_000, 100_000];
        for scaling in [WorkerScaling::Fixed, WorkerScaling::Auto] {
            for last_fuel in [0, FUEL_PER_WORKER, scheduler::PARALLEL_MIN_FUEL, 10 * FUEL_PER_WORKER] {
                for running in counts {
                    let asked = std::cell::Cell::new(0usize);
                    let capped = |cap: usize| {
                        asked.set(asked.get().max(cap.min(running)));
                        running.min(cap)
                    };
                    let got = workers_for(Some(&pool), None, scaling, last_fuel, capped);
                    assert_eq!(got, whole(scaling, last_fuel, running), "{scaling:?}, last_fuel {last_fuel}, {running} running");
                    assert!(asked.get() <= most * AGENTS_PER_WORKER, "counted at most what a decision needs");
                }
            }
        }
    }

    /// An ABI 2 agent that does nothing, its io buffer at 4096 of 3 pages, with `extra` (a
    /// global, say) in its module.
    fn idle_agent(extra: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module (memory (export "memory") 3) {extra}
              (func (export "lockstep_abi_version") (result i32) i32.const 2)
              (func (export "lockstep_io_buffer") (result i32) i32.const 4096)
              (func (export "agent_init") (result i32) i32.const 0)
              (func (export "agent_step") (param i32) (result i32) i32.const 0)
              (func (export "agent_shutdown") (result i32) i32.const 0)
              (func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0))"#
        ))
        .expect("wat")
    }

    /// The tick loop prefetches the top of each agent's shadow stack (`scheduler::TurnAddresses`)
    /// from global 0, LLVM's stack pointer: an address in the agent's memory when global 0 is
    /// an `i32` inside it, else no hint (0), whatever a module puts there.
    #[test]
    fn the_stack_hint_is_global_zero_inside_the_memory_or_nothing() {
        let mut rt = Runtime::new(RuntimeConfig { workers: 1, record: false, ..RuntimeConfig::development() }).expect("runtime");
        let cases = [
            ("(global (mut i32) (i32.const 8192))", Some(8192)),
            ("(global (mut i32) (i32.const 196608))", Some(196_608)),
            ("(global (mut i32) (i32.const 196609))", None),
            ("(global (mut i32) (i32.const -1))", None),
            ("(global (mut i64) (i64.const 8192))", None),
            ("(global i32 (i32.const 8192))", None),
            ("", None),
        ];
        for (global, expected) in cases {
            let m = rt.load_module(idle_agent(global)).expect("module");
            let id = rt.spawn(m).expect("spawn");
            let slot = rt.agents.slots.iter().find(|s| s.id == id).expect("slot");
            let instance = slot.instance.as_ref().expect("instance");
            let base = instance.io_address_hint() - 4096;
            let hint = instance.stack_address_hint();
            assert_eq!((hint != 0).then(|| hint - base), expected, "{global}");
        }
    }

    /// The tick loop prefetches each agent's VMContext from an address read out of wasmtime's
    /// own structures (`sandbox::vm_layout`): on both memory allocators, with the runtime's
    /// engine configuration, it is the agent's VMContext (wasmtime's magic number is there),
    /// and each agent has its own.
    #[test]
    fn the_vmctx_hint_is_each_agents_vmcontext_on_both_allocators() {
        let agent = idle_agent("");
        for allocator in [crate::MemoryAllocator::Slab, crate::MemoryAllocator::Pooling] {
            let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_agents: 8, allocator, ..RuntimeConfig::development() }).expect("runtime");
            let m = rt.load_module(agent.clone()).expect("module");
            let hints: Vec<usize> = (0..3)
                .map(|_| {
                    let id = rt.spawn(m).expect("spawn");
                    let slot = rt.agents.slots.iter().find(|s| s.id == id).expect("slot");
                    slot.instance.as_ref().expect("instance").vmctx_address_hint()
                })
                .collect();
            for &hint in &hints {
                assert_ne!(hint, 0, "{allocator:?}");
                // SAFETY: the hint of a live agent's instance (what this checks: were it not
                // its VMContext, the magic number would not be there).
                assert!(unsafe { crate::sandbox::holds_vmctx_magic(hint) }, "{allocator:?}");
            }
            assert!(hints[0] != hints[1] && hints[1] != hints[2] && hints[0] != hints[2], "{allocator:?}: one VMContext each");
        }
    }
}
