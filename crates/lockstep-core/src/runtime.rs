//! The runtime: the one object an embedder holds. It owns the sandbox, the agents, the
//! clock, the queues and the recorder, and is the only place external input enters.

use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;

use rayon::prelude::*;

use crate::abi;
use crate::bus::{AgentId, DeadLetter, DeadLetterReason, Message};
use crate::error::{Digest, LockstepError, Result};
use crate::event::Event;
use crate::fault::AgentState;
use crate::inference::{agents as agent_inference, InferenceEngine};
use crate::queue::BoundedQueue;
use crate::replay_log::{self, InferAnswer, Record, SessionConfig};
use crate::ring::{self, Consumer, Producer, RingError, RingMemory};
use crate::sandbox::{AgentModule, Grants, MemoryAllocator, Sandbox, SandboxConfig};
use crate::scheduler::{self, AgentSlot, Sinks, TickReport};
use crate::security::{self, Capabilities};

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
}

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
        }
    }
}

impl RuntimeConfig {
    /// The defaults in development mode: unsigned modules are admitted. For tests and local
    /// experiments; the runtime announces it on stderr and in its events.
    pub fn development() -> Self {
        Self { dev_mode: true, ..Self::default() }
    }

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
    pub id: AgentId,
    pub module: Digest,
    pub state: AgentState,
    pub steps: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub inbox_len: usize,
    pub memory_bytes: usize,
    pub fuel_consumed: u64,
}

/// The result of a deep hash: the whole and each agent's part.
#[derive(Debug, Clone)]
pub struct DeepHash {
    pub tick: u64,
    pub hash: Digest,
    pub agents: Vec<(AgentId, [u8; 8])>,
}

struct Recorder {
    log: Vec<u8>,
    modules_written: std::collections::BTreeSet<Digest>,
    /// `RuntimeConfig::max_log_bytes`.
    limit_bytes: usize,
    /// Where the last complete tick (its TickEnd and any checkpoint) ends: where the log is
    /// cut back to if it outgrows its limit, so what is kept is a clean prefix.
    last_tick_end: usize,
    /// Set when the log outgrew its limit: nothing more is recorded, and the log is a prefix.
    cut: bool,
}

impl Recorder {
    /// Appends with `write` unless the log was cut; cuts it (back to the last complete tick)
    /// when it grows past its limit. Returns true when this write cut it.
    fn write(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        if self.cut {
            return false;
        }
        write(&mut self.log);
        if self.log.len() <= self.limit_bytes {
            return false;
        }
        self.log.truncate(self.last_tick_end);
        self.log.shrink_to_fit();
        self.cut = true;
        true
    }
}

pub struct Runtime {
    config: RuntimeConfig,
    sandbox: Sandbox,
    pool: Option<rayon::ThreadPool>,
    modules: BTreeMap<Digest, Arc<AgentModule>>,
    slots: Vec<AgentSlot>,
    tick: u64,
    last_hash: Digest,
    last_fuel: u64,
    /// External inputs since the last tick, folded into the next tick hash.
    input_hasher: blake3::Hasher,
    pending: Vec<Message>,
    /// Payload bytes in `pending` (bounded by `MAX_PENDING_BYTES`).
    pending_bytes: usize,
    host_seq: u64,
    host_outbox: BoundedQueue<Message>,
    dead_letters: BoundedQueue<DeadLetter>,
    events: VecDeque<Event>,
    events_dropped: u64,
    recorder: Option<Recorder>,
    session_started: bool,
    /// Distinct spawn priorities of live agents, highest first: the phases of every tick.
    phases: Vec<i32>,
    /// Agents holding an instance (what maxAgents bounds), kept exact as agents come and go
    /// (`live_index` may hold stale entries until refreshed): counting them on every spawn made
    /// spawning O(agents ever spawned) (200,000 spawn+kill took 100 s).
    live: usize,
    /// Slot indices of agents holding an instance, ascending: what a tick walks (refreshed at
    /// each tick's start; spawn appends). Dead slots are never visited by a tick.
    live_index: Vec<usize>,
    /// Set when an agent released its instance (kill, shutdown, a fault in a tick): the live
    /// index and the phases are refreshed before they are next used, not on every tick.
    live_stale: bool,
    rings: Rings,
    inference: AgentInference,
}

/// What agents may infer with, and (in a replay) the recorded answers.
#[derive(Default)]
struct AgentInference {
    engine: Option<Arc<InferenceEngine>>,
    /// Model ids by table slot: the `model` argument of the `infer` import.
    models: Vec<String>,
    seq: u64,
    /// Replaying: answers come from the log, not from ONNX Runtime.
    replaying: bool,
    recorded: std::collections::VecDeque<(u64, Vec<InferAnswer>)>,
}

/// The shared-memory rings to and from JS, when attached.
#[derive(Default)]
struct Rings {
    inbound: Option<Consumer>,
    outbound: Option<Producer>,
    /// Records that did not fit the outbound ring yet, oldest first, bounded by
    /// `MAX_OUTBOUND_BACKLOG_RECORDS`/`_BYTES`. When it is full, messages for the host wait in
    /// the host queue instead (still drainable with `drain_host_messages`) and copies of
    /// events are dropped and counted (the events themselves stay in `drain_events`).
    backlog: VecDeque<OutRecord>,
    backlog_bytes: usize,
    dropped: u64,
    dropped_total: u64,
}

enum OutRecord {
    /// A message for the host: kept whole, so it can go back to the host queue if the ring
    /// breaks before it is written (never lost).
    Message(Message),
    Other {
        kind_of_record: u16,
        agent: AgentId,
        payload: Vec<u8>,
    },
}

impl OutRecord {
    fn payload_len(&self) -> usize {
        match self {
            Self::Message(m) => m.payload.len(),
            Self::Other { payload, .. } => payload.len(),
        }
    }
}

impl Rings {
    fn backlog_has_room(&self, bytes: usize) -> bool {
        self.backlog.len() < MAX_OUTBOUND_BACKLOG_RECORDS && self.backlog_bytes.saturating_add(bytes) <= MAX_OUTBOUND_BACKLOG_BYTES
    }

    fn push_backlog(&mut self, r: OutRecord) {
        self.backlog_bytes += r.payload_len();
        self.backlog.push_back(r);
    }

    /// A copy of an event or a tick record: kept if the backlog has room, else counted.
    fn push_copy(&mut self, r: OutRecord) {
        if self.backlog_has_room(r.payload_len()) {
            self.push_backlog(r);
        } else {
            self.dropped += 1;
            self.dropped_total += 1;
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

/// Most agent ids one runtime assigns over its life (ids are never reused, and each keeps a
/// small record for `inspect`); past it, spawn fails with `E_AGENT_IDS_EXHAUSTED`.
pub const MAX_AGENT_IDS: usize = 1 << 22;

/// Limits of the host-side queues (ARCHITECTURE.md, "Limits"). Host messages waiting for the
/// next tick: past them `send` fails with `E_QUEUE_FULL` and the inbound ring is left unread
/// (back-pressure on the JS producer).
pub const MAX_PENDING_MESSAGES: usize = 1 << 20;
pub const MAX_PENDING_BYTES: usize = 256 << 20;
/// Messages agents sent to the host, not yet drained; past these they are dropped and counted
/// (`dropped` event, queue `host_messages`).
pub const MAX_HOST_MESSAGES: usize = 1 << 20;
pub const MAX_HOST_MESSAGE_BYTES: usize = 256 << 20;
/// Dead letters not yet drained; past these they are dropped and counted (queue
/// `dead_letters`): each was still hashed and announced by its `dead_letter` event.
pub const MAX_DEAD_LETTERS: usize = 1 << 16;
pub const MAX_DEAD_LETTER_BYTES: usize = 64 << 20;
/// Records waiting for room in the outbound ring.
pub const MAX_OUTBOUND_BACKLOG_RECORDS: usize = 1 << 20;
pub const MAX_OUTBOUND_BACKLOG_BYTES: usize = 256 << 20;
/// Distinct modules one runtime loads (each is compiled code held for the runtime's life).
pub const MAX_MODULES: usize = 1_024;
/// Distinct spawn priorities (each is a phase every tick walks).
pub const MAX_PHASES: usize = 64;

/// Most records drained from the inbound ring per tick (bounds the work one tick can be
/// handed; the rest waits in the ring for the next tick).
pub const MAX_RING_RECORDS_PER_TICK: usize = 1 << 22;

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        if config.max_agents as usize > MAX_AGENT_IDS {
            return Err(LockstepError::InvalidConfig {
                reason: format!("maxAgents {} exceeds the {MAX_AGENT_IDS} agent ids a runtime can assign", config.max_agents),
            });
        }
        if config.workers == 0 || config.workers > 256 {
            return Err(LockstepError::InvalidConfig { reason: format!("workers must be 1..=256, got {}", config.workers) });
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
            slots: Vec::new(),
            tick: 0,
            last_hash: Digest::default(),
            last_fuel: 0,
            input_hasher: blake3::Hasher::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            host_seq: 0,
            host_outbox: BoundedQueue::new(MAX_HOST_MESSAGES, MAX_HOST_MESSAGE_BYTES),
            dead_letters: BoundedQueue::new(MAX_DEAD_LETTERS, MAX_DEAD_LETTER_BYTES),
            events: VecDeque::new(),
            events_dropped: 0,
            recorder: None,
            session_started: false,
            phases: Vec::new(),
            live: 0,
            live_index: Vec::new(),
            live_stale: false,
            rings: Rings::default(),
            inference: AgentInference::default(),
            config,
        };
        if rt.config.dev_mode {
            // Loud on purpose: development mode must never slip into production unnoticed.
            eprintln!("lockstep: DEVELOPMENT MODE — unsigned agent modules are admitted. Do not use devMode in production.");
        }
        if rt.config.record {
            rt.start_recording()?;
        }
        Ok(rt)
    }

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

    pub fn start_recording(&mut self) -> Result<()> {
        if self.session_started {
            return Err(LockstepError::RecordingMidSession);
        }
        let mut log = Vec::new();
        replay_log::write_header(&mut log);
        Record::Config(self.config.session()).encode(&mut log);
        let last_tick_end = log.len();
        self.recorder = Some(Recorder { log, modules_written: Default::default(), limit_bytes: self.config.max_log_bytes, last_tick_end, cut: false });
        Ok(())
    }

    /// Stops recording and returns the log, sealed with its End record (counts, final hash,
    /// digest of the config and the inputs after the last tick), so a replay can tell the
    /// whole session from a prefix.
    ///
    /// A log cut at `max_log_bytes` comes back without an End record: it replays as a prefix.
    pub fn stop_recording(&mut self) -> Result<Vec<u8>> {
        let r = self.recorder.take().ok_or(LockstepError::NotRecording)?;
        let mut log = r.log;
        if !r.cut {
            replay_log::seal(&mut log, self.tick, self.last_hash);
        }
        Ok(log)
    }

    /// A copy of the log recorded so far, sealed with an End record as if recording stopped
    /// now (recording continues; the live log is not changed).
    pub fn replay_log(&self) -> Result<Vec<u8>> {
        let r = self.recorder.as_ref().ok_or(LockstepError::NotRecording)?;
        let mut log = Vec::with_capacity(r.log.len() + replay_log::END_RECORD_BYTES);
        log.extend_from_slice(&r.log);
        if !r.cut {
            replay_log::seal(&mut log, self.tick, self.last_hash);
        }
        Ok(log)
    }

    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    fn record(&mut self, record: Record) {
        self.record_with(|log| record.encode(log));
    }

    /// Every write into the log goes through here (the size limit is checked once, here).
    fn record_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let Some(r) = self.recorder.as_mut() else { return };
        if r.write(write) {
            let detail = format!(
                "the replay log reached maxLogBytes ({} bytes): recording stopped at tick {}; the log so far replays as a prefix (complete: false). Raise maxLogBytes, or record shorter sessions",
                self.config.max_log_bytes, self.tick
            );
            tracing::error!(target: "lockstep::runtime", "{detail}");
            self.push_event(Event::RecordingStopped { tick: self.tick, detail });
        }
    }

    /// Marks the end of a complete tick in the log (after its TickEnd and checkpoint).
    fn mark_tick_end(&mut self) {
        if let Some(r) = self.recorder.as_mut().filter(|r| !r.cut) {
            r.last_tick_end = r.log.len();
        }
    }

    // ----- modules and agents ----------------------------------------------------------------

    /// Verifies (signature, manifest, trust), compiles and validates a module; the same bytes
    /// load once. A refusal is also an event.
    pub fn load_module(&mut self, bytes: Vec<u8>) -> Result<Digest> {
        let hash = Digest(*blake3::hash(&bytes).as_bytes());
        if !self.modules.contains_key(&hash) {
            if self.modules.len() >= MAX_MODULES {
                return Err(LockstepError::ModuleLimit { max: MAX_MODULES });
            }
            let module =
                crate::module_shape::check(&bytes).and_then(|()| self.admit(&bytes)).and_then(|grants| AgentModule::compile(&self.sandbox, bytes, grants));
            match module {
                Ok(m) => {
                    self.modules.insert(hash, Arc::new(m));
                }
                Err(e) => {
                    tracing::warn!(target: "lockstep::security", code = e.code(), "module refused: {e}");
                    self.push_event(Event::ModuleRefused { tick: self.tick, code: e.code().to_string(), detail: e.to_string() });
                    return Err(e);
                }
            }
        }
        Ok(hash)
    }

    /// What a module may do here: its manifest's requests, cut down to the runtime's policy
    /// and limits. Unsigned modules pass only in development mode, with a warning event.
    fn admit(&mut self, bytes: &[u8]) -> Result<Grants> {
        let admission = security::admit(bytes, &self.config.trusted_keys, self.config.dev_mode).map_err(LockstepError::Security)?;
        if admission.publisher.is_none() {
            tracing::warn!(target: "lockstep::security", "DEVELOPMENT MODE: admitted an unsigned agent module");
            self.push_event(Event::Security { tick: self.tick, detail: "DEVELOPMENT MODE: admitted an unsigned agent module".into() });
        }
        let (asked, resources) = match admission.manifest {
            Some(m) => (m.capabilities, m.resources),
            // Unsigned and without a manifest: development mode grants what the policy allows.
            None => (Capabilities::all(), Default::default()),
        };
        let mut grants = Grants {
            capabilities: asked.meet(&self.config.policy),
            asked,
            fuel_per_call: self.config.fuel_per_call,
            memory_limit_bytes: self.config.memory_limit_bytes,
        };
        for (what, want, limit, slot) in [
            ("resources.fuelPerCall", resources.fuel_per_call, self.config.fuel_per_call, &mut grants.fuel_per_call),
            ("resources.memoryBytes", resources.memory_bytes, self.config.memory_limit_bytes, &mut grants.memory_limit_bytes),
        ] {
            let Some(want) = want else { continue };
            // Fuel 0 means "metering off" for the runtime: any request fits under it.
            let over = want > limit && !(what == "resources.fuelPerCall" && limit == 0);
            if over && self.config.resource_policy == ResourcePolicy::Refuse {
                return Err(LockstepError::Security(security::SecurityError::ResourceOverLimit { what: what.into(), asked: want, limit }));
            }
            *slot = if over { limit } else { want };
        }
        Ok(grants)
    }

    /// Spawns an agent from a loaded module and runs its `agent_init`. A fault in init is
    /// contained: the agent exists, faulted, and a fault event says why.
    pub fn spawn(&mut self, module: Digest) -> Result<AgentId> {
        self.spawn_with_priority(module, 0)
    }

    /// Like `spawn`; agents of higher `priority` run in an earlier phase of each tick, and
    /// their messages to lower-priority agents are delivered in the same tick.
    pub fn spawn_with_priority(&mut self, module: Digest, priority: i32) -> Result<AgentId> {
        let m = self
            .modules
            .get(&module)
            .cloned()
            .ok_or_else(|| LockstepError::InvalidModule { reason: format!("module {module} is not loaded; call loadModule first") })?;
        // maxAgents bounds the agents alive at once (each holds a memory); stopped, killed and
        // faulted agents hold none (issue 9: it used to count every agent ever spawned).
        if self.live >= self.config.max_agents as usize {
            return Err(LockstepError::AgentLimit { max: self.config.max_agents });
        }
        if self.slots.len() >= MAX_AGENT_IDS {
            return Err(LockstepError::AgentIdsExhausted { max: MAX_AGENT_IDS as u64 });
        }
        // What init sends waits in the same queue as host messages until the next tick. It used
        // to bypass that queue's limit: spawning agents whose init sends 1 MiB and faults (so
        // they never count against maxAgents), without ticking, grew it by 1 MiB per spawn
        // (1,000 spawns: 1 GB). Back-pressure like `send`: tick, then spawn again.
        if !self.pending_has_room(1) {
            return Err(LockstepError::QueueFull {
                queue: "messages waiting for the next tick (host messages and what agent_init/agent_shutdown sent)",
                max_messages: MAX_PENDING_MESSAGES,
                max_bytes: MAX_PENDING_BYTES,
            });
        }
        let mut new_phase = self.phases.binary_search_by(|p| priority.cmp(p)).is_err();
        if new_phase && self.phases.len() >= MAX_PHASES {
            // Priorities whose agents are all gone no longer count (they used to, forever).
            self.refresh_live_agents();
            new_phase = self.phases.binary_search_by(|p| priority.cmp(p)).is_err();
        }
        if new_phase && self.phases.len() >= MAX_PHASES {
            return Err(LockstepError::PriorityLimit { max: MAX_PHASES, phases: self.phases.clone() });
        }
        let id = self.slots.len() as AgentId + 1;
        let mut instance = Box::new(m.instantiate(&self.sandbox, id, self.config.seed)?);
        self.session_started = true;
        if self.recorder.as_mut().is_some_and(|r| r.modules_written.insert(module)) {
            self.record_with(|log| Record::Module { hash: module, bytes: m.bytes.to_vec() }.encode(log));
        }
        self.record(Record::Spawn { tick: self.tick, module, agent: id, priority });
        self.input_hasher.update(b"spawn");
        self.input_hasher.update(&id.to_le_bytes());
        self.input_hasher.update(&priority.to_le_bytes());
        if let Err(at) = self.phases.binary_search_by(|p| priority.cmp(p)) {
            self.phases.insert(at, priority);
        }
        self.input_hasher.update(&module.0);
        let init = instance.call_init(self.tick);
        // What init sent and logged leaves the agent now, whatever happened: routed at the
        // next tick like a host message (and folded into its hash), so neither a fault in
        // init nor a kill before the first tick can lose it (issue 9).
        let sent = std::mem::take(&mut instance.host_mut().outbox);
        // init's byte budget is its own (docs/ABI.md): the first tick starts with a full one.
        instance.host_mut().outbox_bytes = 0;
        let logs = std::mem::take(&mut instance.host_mut().logs);
        let mut slot = AgentSlot::new(id, priority, module, instance);
        slot.messages_sent += sent.len() as u64;
        self.push_event(Event::Spawned { tick: self.tick, agent: id, module });
        for line in logs {
            self.push_event(Event::Log { tick: self.tick, agent: id, level: line.level, text: line.text });
        }
        if let Err(fault) = init {
            self.input_hasher.update(&[0xFA, fault.kind.tag()]);
            slot.state = AgentState::Faulted(fault.clone());
            // Its memory goes back now: a dead agent holds no slot against maxAgents.
            slot.release();
            self.push_event(Event::Fault { tick: self.tick, agent: id, fault });
        } else {
            self.live += 1;
            self.live_index.push(self.slots.len());
        }
        self.queue_for_next_tick(sent);
        self.slots.push(slot);
        Ok(id)
    }

    /// Loads (if needed) and spawns in one call.
    pub fn spawn_bytes(&mut self, bytes: Vec<u8>) -> Result<AgentId> {
        let hash = self.load_module(bytes)?;
        self.spawn(hash)
    }

    fn slot(&self, id: AgentId) -> Result<&AgentSlot> {
        self.slots.get((id as usize).wrapping_sub(1)).ok_or(LockstepError::UnknownAgent { id })
    }

    fn slot_mut(&mut self, id: AgentId) -> Result<&mut AgentSlot> {
        self.slots.get_mut((id as usize).wrapping_sub(1)).ok_or(LockstepError::UnknownAgent { id })
    }

    /// Queues a message from the host (id 0) for delivery at the next tick. A message to an
    /// agent that is no longer running is accepted and lands in the dead-letter queue.
    pub fn send(&mut self, to: AgentId, kind: u32, priority: i32, payload: Vec<u8>) -> Result<()> {
        if payload.len() > abi::MAX_PAYLOAD_BYTES {
            return Err(LockstepError::MessageTooLarge { len: payload.len(), max: abi::MAX_PAYLOAD_BYTES });
        }
        self.slot(to)?;
        if !self.pending_has_room(payload.len()) {
            return Err(LockstepError::QueueFull {
                queue: "host messages waiting for the next tick",
                max_messages: MAX_PENDING_MESSAGES,
                max_bytes: MAX_PENDING_BYTES,
            });
        }
        self.enqueue_host_message(to, kind, priority, payload);
        Ok(())
    }

    /// Whether a host message of `bytes` fits the queue of messages waiting for the next tick.
    fn pending_has_room(&self, bytes: usize) -> bool {
        self.pending.len() < MAX_PENDING_MESSAGES && self.pending_bytes.saturating_add(bytes) <= MAX_PENDING_BYTES
    }

    /// Queues a host message without checking the recipient (an unknown one is dead-lettered
    /// at the next tick). Used for ring input and by replay.
    pub(crate) fn enqueue_host_message(&mut self, to: AgentId, kind: u32, priority: i32, payload: Vec<u8>) {
        self.session_started = true;
        let tick = self.tick;
        self.record_with(|log| replay_log::encode_send(log, tick, to, kind, priority, &payload));
        self.pending_bytes += payload.len();
        let m = Message { from: abi::HOST_ID, to, seq: self.host_seq, kind, priority, payload };
        self.host_seq += 1;
        // Not hashed here: the recipient's digest covers every host message it is handed
        // (which also names that agent on divergence), and a dead letter is hashed by routing.
        self.pending.push(m);
    }

    /// What an agent sent outside a tick (`agent_init`, `agent_shutdown`): folded into the next
    /// tick's hash and routed at its start, like host messages, counted against the same queue.
    fn queue_for_next_tick(&mut self, mut sent: Vec<Message>) {
        let mut digest = crate::bus::AgentDigest::new();
        for m in &sent {
            m.hash_into(&mut digest);
        }
        self.input_hasher.update(&digest.digest128().to_le_bytes());
        self.pending_bytes += sent.iter().map(|m| m.payload.len()).sum::<usize>();
        self.pending.append(&mut sent);
    }

    /// Calls `agent_shutdown` now; what it sends is routed at the next tick. The agent's
    /// undelivered messages go to the dead-letter queue.
    pub fn shutdown(&mut self, id: AgentId) -> Result<()> {
        let tick = self.tick;
        self.begin_stop(id, Record::Shutdown { tick, agent: id }, b"shutdown")?;
        let slot = self.slot_mut(id)?;
        let mut instance = slot.instance.take();
        let had_instance = instance.is_some();
        let result = instance.as_mut().map(|i| i.call_shutdown(tick)).unwrap_or(Ok(()));
        let (sent, logs) = instance.map(|mut i| (std::mem::take(&mut i.host_mut().outbox), std::mem::take(&mut i.host_mut().logs))).unwrap_or_default();
        slot.messages_sent += sent.len() as u64;
        let inbox = std::mem::take(&mut slot.inbox);
        if had_instance {
            self.live -= 1;
            self.live_stale = true;
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
                self.input_hasher.update(&[0xFA, fault.kind.tag()]);
                self.push_event(Event::Fault { tick, agent: id, fault });
            }
        }
        self.queue_for_next_tick(sent);
        for m in inbox {
            self.dead_letter(tick, DeadLetterReason::RecipientStopped, m);
        }
        Ok(())
    }

    /// What shutdown and kill share: the agent must be running, and the input is recorded
    /// and folded into the next tick hash.
    fn begin_stop(&mut self, id: AgentId, record: Record, label: &[u8]) -> Result<()> {
        let slot = self.slot(id)?;
        if !slot.state.is_running() {
            return Err(LockstepError::AgentNotRunning { id, state: slot.state.name().into() });
        }
        self.session_started = true;
        self.record(record);
        self.input_hasher.update(label);
        self.input_hasher.update(&id.to_le_bytes());
        Ok(())
    }

    /// Stops an agent at once, without calling `agent_shutdown`.
    pub fn kill(&mut self, id: AgentId) -> Result<()> {
        let tick = self.tick;
        self.begin_stop(id, Record::Kill { tick, agent: id }, b"kill")?;
        let slot = self.slot_mut(id)?;
        slot.state = AgentState::Killed;
        let inbox = std::mem::take(&mut slot.inbox);
        let had_instance = slot.instance.is_some();
        slot.release();
        if had_instance {
            self.live -= 1;
            self.live_stale = true;
        }
        self.push_event(Event::Killed { tick, agent: id });
        for m in inbox {
            self.dead_letter(tick, DeadLetterReason::RecipientStopped, m);
        }
        Ok(())
    }

    fn dead_letter(&mut self, tick: u64, reason: DeadLetterReason, message: Message) {
        self.push_event(Event::DeadLetter { tick, reason, from: message.from, to: message.to, seq: message.seq, kind: message.kind });
        let bytes = message.payload.len();
        self.dead_letters.push(DeadLetter { tick, reason, message }, bytes);
    }

    fn push_event(&mut self, e: Event) {
        self.events.push_back(e);
        self.trim_events();
    }

    /// Keeps the newest `max_events` events: O(1) per event dropped (a ring buffer).
    fn trim_events(&mut self) {
        while self.events.len() > self.config.max_events {
            self.events.pop_front();
            self.events_dropped += 1;
        }
    }

    /// Recounts the live agents and drops the phases none of them runs in: an empty phase
    /// does nothing (no hash or routing depends on it), but every tick walked every slot once
    /// per phase, and a priority stayed taken forever, so churn through 64 priorities made
    /// every new priority fail with E_PRIORITY_LIMIT (and a tick ~100,000× slower).
    /// Also drops released agents from the live index. Only runs when an agent died since the
    /// last refresh (each run walks every live agent).
    fn refresh_live_agents(&mut self) {
        if !self.live_stale {
            return;
        }
        self.live_stale = false;
        let slots = &self.slots;
        self.live_index.retain(|&i| slots.get(i).is_some_and(|s| s.instance.is_some()));
        let mut live = 0;
        let mut used: Vec<i32> = Vec::with_capacity(self.phases.len());
        for s in self.live_index.iter().map(|&i| &self.slots[i]) {
            live += 1;
            if !used.contains(&s.phase) {
                used.push(s.phase);
            }
        }
        self.live = live;
        self.phases.retain(|p| used.contains(p));
    }

    /// One `dropped` event per bounded queue that refused items since the last report.
    fn report_drops(&mut self, tick: u64) {
        for (queue, count) in [
            ("dead_letters", self.dead_letters.take_dropped()),
            ("host_messages", self.host_outbox.take_dropped()),
            ("outbound_ring", std::mem::take(&mut self.rings.dropped)),
        ] {
            if count > 0 {
                tracing::warn!(target: "lockstep::runtime", "{count} items dropped: the {queue} queue is full (drain it more often)");
                self.events.push_back(Event::Dropped { tick, queue, count });
            }
        }
    }

    // ----- the clock -------------------------------------------------------------------------

    /// Runs one tick and returns what it did.
    pub fn tick(&mut self) -> TickReport {
        self.drain_inbound_ring();
        let tick = self.tick;
        self.session_started = true;
        let events_before = self.events.len();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.last_hash.0);
        hasher.update(&tick.to_le_bytes());
        hasher.update(self.input_hasher.finalize().as_bytes());
        self.input_hasher = blake3::Hasher::new();

        // Host messages enter the inboxes (or the dead-letter queue) before anyone steps.
        let mut report = TickReport::new(tick);
        self.pending_bytes = 0;
        for m in std::mem::take(&mut self.pending) {
            scheduler::route(&mut self.slots, m, tick, &mut hasher, &mut report, &mut self.dead_letters, &mut self.host_outbox, &mut self.events);
        }

        // The agents this tick runs: those holding an instance (kills and shutdowns since the
        // last tick released theirs; `refresh_live_agents` drops them from the index).
        self.refresh_live_agents();
        let live = std::mem::take(&mut self.live_index);
        let running = live.iter().filter(|&&i| self.slots[i].state.is_running()).count();
        let parallel = self.pool.is_some() && (running >= scheduler::PARALLEL_MIN_AGENTS || self.last_fuel >= scheduler::PARALLEL_MIN_FUEL);
        for &phase in &self.phases {
            scheduler::run_agents(&mut self.slots, &live, tick, phase, if parallel { self.pool.as_ref() } else { None });
            scheduler::settle(
                &mut self.slots,
                &live,
                tick,
                &mut hasher,
                &mut report,
                Sinks { host_outbox: &mut self.host_outbox, dead_letters: &mut self.dead_letters, events: &mut self.events },
            );
        }
        self.serve_inference(tick, &mut report, &live);
        self.live_index = live;
        // Agents that faulted this tick released their instances: recount before the next
        // spawn or tick (maxAgents, phases).
        if report.faults > 0 {
            self.live_stale = true;
            self.refresh_live_agents();
        }
        self.report_drops(tick);
        report.hash = Digest(*hasher.finalize().as_bytes());
        report.agents_stepped = running as u32;
        self.log_tick_events(events_before);
        self.feed_outbound_ring(&report, events_before);
        self.trim_events();
        report.parallel = parallel;
        self.last_fuel = report.fuel;
        self.last_hash = report.hash;
        self.tick += 1;
        if self.recorder.is_some() {
            self.record(Record::TickEnd { tick, hash: report.hash, agents: report.agent_digests.clone() });
            let every = self.config.checkpoint_interval_ticks;
            if every > 0 && self.tick.is_multiple_of(every) {
                self.checkpoint();
            }
            self.mark_tick_end();
        }
        report
    }

    /// Mirrors the tick's faults and agent log lines into `tracing` (see `logging`).
    fn log_tick_events(&self, events_before: usize) {
        for e in self.events.iter().skip(events_before) {
            match e {
                Event::Fault { agent, fault, .. } => tracing::warn!(target: "lockstep::runtime", agent, "agent {agent} {}", fault),
                Event::Log { agent, level, text, .. } => match level {
                    1 => tracing::error!(target: "lockstep::agent", agent, "{text}"),
                    2 => tracing::warn!(target: "lockstep::agent", agent, "{text}"),
                    3 => tracing::info!(target: "lockstep::agent", agent, "{text}"),
                    4 => tracing::debug!(target: "lockstep::agent", agent, "{text}"),
                    _ => tracing::trace!(target: "lockstep::agent", agent, "{text}"),
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
        if let Some(slot) = self.inference.models.iter().position(|m| m == id) {
            return Ok(slot as u32);
        }
        let known = self.inference.engine.as_ref().is_some_and(|e| e.info(id).is_ok());
        if !known && !self.inference.replaying {
            return Err(LockstepError::InvalidModule { reason: format!("model {id} is not loaded; call loadModel first") });
        }
        let slot = self.inference.models.len() as u32;
        self.inference.models.push(id.to_string());
        self.record(Record::AgentModel { slot, id: id.to_string() });
        Ok(slot)
    }

    /// Replay: answers recorded for `tick` are used instead of running ONNX Runtime.
    pub(crate) fn queue_recorded_inference(&mut self, tick: u64, results: Vec<InferAnswer>) {
        self.inference.replaying = true;
        self.inference.recorded.push_back((tick, results));
    }

    pub(crate) fn set_replaying_inference(&mut self) {
        self.inference.replaying = true;
    }

    /// Answers this tick's inference requests (batched per model) as messages for next tick.
    /// A request for a model the agent's capabilities do not cover is answered "forbidden"
    /// and never reaches ONNX Runtime.
    fn serve_inference(&mut self, tick: u64, report: &mut TickReport, live: &[usize]) {
        let mut requests = Vec::new();
        let mut forbidden = Vec::new();
        // Every agent that ran this tick is in `live` (those that faulted too: what they asked
        // before faulting is still answered, as before).
        for &i in live {
            let Some(slot) = self.slots.get_mut(i) else { continue };
            let grants = self.modules.get(&slot.module).map(|m| &m.grants.capabilities);
            for r in slot.out.infer.drain(..) {
                let model = self.inference.models.get(r.model as usize);
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
        // A tick whose every request was forbidden still answers each one (issue 9: an early
        // return here dropped them and the agents waited forever).
        if requests.is_empty() && forbidden.is_empty() {
            return;
        }
        let answers: Vec<InferAnswer> = if self.inference.replaying {
            match self.inference.recorded.front() {
                Some((t, _)) if *t == tick => self.inference.recorded.pop_front().map(|(_, r)| r).unwrap_or_default(),
                // Nothing recorded for a tick that asked: the replay already diverged (the tick
                // hash covers the requests); answer nothing rather than invent answers.
                _ => Vec::new(),
            }
        } else {
            let (answers, stats) = agent_inference::serve(self.inference.engine.as_deref(), &self.inference.models, requests, self.config.inference_batching);
            report.inference_requests = stats.requests;
            report.inference_calls = stats.calls;
            // Answers reach the agent through its io buffer like any message, so they are cut to
            // fit before they are recorded (replay refuses a recorded answer that does not fit).
            let mut answers: Vec<_> = answers.into_iter().map(|a| (a.agent, a.tag, fit_answer(a.payload))).collect();
            // Canonical order: by agent id (stable, so each agent's requests keep their order).
            answers.extend(forbidden);
            answers.sort_by_key(|a| a.0);
            self.record(Record::InferResults { tick, results: answers.clone() });
            answers
        };
        for (agent, tag, payload) in answers {
            let seq = self.inference.seq;
            self.inference.seq += 1;
            self.pending.push(Message { from: abi::INFERENCE_ID, to: agent, seq, kind: tag, priority: 0, payload });
        }
    }

    // ----- rings ------------------------------------------------------------------------------

    /// Attaches the JS→core ring (initialised by the other side). Its messages enter at the
    /// start of each tick, in ring order, and are recorded like `send`.
    pub fn attach_inbound_ring(&mut self, memory: RingMemory) -> Result<(), RingError> {
        self.rings.inbound = Some(Consumer::new(memory, abi::MAX_PAYLOAD_BYTES)?);
        Ok(())
    }

    /// Attaches the core→JS ring: messages agents send to the host, copies of the tick's
    /// events, and one TICK record per tick are written there instead of `drain_host_messages`.
    pub fn attach_outbound_ring(&mut self, memory: RingMemory) -> Result<(), RingError> {
        self.rings.outbound = Some(Producer::new(memory)?);
        Ok(())
    }

    /// The error that broke the inbound ring, if any.
    pub fn inbound_ring_error(&self) -> Option<&RingError> {
        self.rings.inbound.as_ref().and_then(|c| c.broken())
    }

    /// Records waiting for room in the outbound ring.
    pub fn outbound_backlog(&self) -> usize {
        self.rings.backlog.len()
    }

    fn drain_inbound_ring(&mut self) {
        let Some(mut consumer) = self.rings.inbound.take() else { return };
        if consumer.broken().is_none() {
            let result = consumer.drain(MAX_RING_RECORDS_PER_TICK, |r| {
                if r.kind_of_record == ring::TYPE_MESSAGE {
                    if !self.pending_has_room(r.payload.len()) {
                        // Leave it (and the rest) in the ring: the producer sees it full.
                        return ControlFlow::Break(());
                    }
                    self.enqueue_host_message(r.agent, r.kind, r.priority, r.payload);
                }
                ControlFlow::Continue(())
            });
            if let Err(e) = result {
                tracing::error!(target: "lockstep::runtime", "inbound ring broken: {e}");
                self.push_event(Event::RingError { tick: self.tick, detail: e.to_string() });
            }
        }
        self.rings.inbound = Some(consumer);
    }

    /// Writes the backlog, then this tick's host messages, events and TICK record.
    fn feed_outbound_ring(&mut self, report: &TickReport, events_before: usize) {
        if self.rings.outbound.is_none() {
            return;
        }
        // Messages move only while the backlog has room; the rest wait in the host queue.
        while let Some(m) = self.host_outbox.pop_front() {
            if !self.rings.backlog_has_room(m.payload.len()) {
                let bytes = m.payload.len();
                self.host_outbox.push_front(m, bytes);
                break;
            }
            self.rings.push_backlog(OutRecord::Message(m));
        }
        let copies: Vec<OutRecord> = self
            .events
            .iter()
            .skip(events_before)
            .map(|e| OutRecord::Other { kind_of_record: ring::TYPE_EVENT, agent: e.agent().unwrap_or(0), payload: e.to_json().into_bytes() })
            .collect();
        for r in copies {
            self.rings.push_copy(r);
        }
        let mut tick_payload = report.tick.to_le_bytes().to_vec();
        tick_payload.extend_from_slice(&report.hash.0);
        self.rings.push_copy(OutRecord::Other { kind_of_record: ring::TYPE_TICK, agent: 0, payload: tick_payload });
        self.flush_outbound();
    }

    /// Moves as much of the backlog into the outbound ring as fits; returns what is left.
    pub fn flush_outbound(&mut self) -> usize {
        let Some(producer) = self.rings.outbound.as_mut() else { return 0 };
        while let Some(r) = self.rings.backlog.front() {
            let pushed = match r {
                OutRecord::Message(m) => producer.try_push(ring::TYPE_MESSAGE, m.kind, m.priority, m.from, &m.payload),
                OutRecord::Other { kind_of_record, agent, payload } => producer.try_push(*kind_of_record, 0, 0, *agent, payload),
            };
            match pushed {
                Ok(()) => {
                    if let Some(r) = self.rings.backlog.pop_front() {
                        self.rings.backlog_bytes -= r.payload_len();
                    }
                }
                Err(RingError::Full) => break,
                Err(e) => {
                    // Too large for this ring, or the JS side corrupted the indices: report it
                    // and stop writing. Messages not yet written go back to the front of the
                    // host queue, in order (drain_host_messages), so a broken ring loses none
                    // (issue 9); copies of events are dropped (the events stay in drain_events).
                    let detail = e.to_string();
                    self.rings.outbound = None;
                    // Put back at the front, past the host queue's limit if need be: these were
                    // already accepted (pushing them through the limit dropped the backlog's
                    // share past it, up to ~256 MiB of replies). The overshoot is bounded by
                    // the backlog's own limit, and later pushes are refused until JS drains.
                    let returned: Vec<Message> = std::mem::take(&mut self.rings.backlog)
                        .into_iter()
                        .filter_map(|r| match r {
                            OutRecord::Message(m) => Some(m),
                            OutRecord::Other { .. } => None,
                        })
                        .collect();
                    for m in returned.into_iter().rev() {
                        let bytes = m.payload.len();
                        self.host_outbox.push_front(m, bytes);
                    }
                    self.rings.backlog_bytes = 0;
                    self.push_event(Event::RingError { tick: self.tick, detail });
                    break;
                }
            }
        }
        self.rings.backlog.len()
    }

    /// Runs `n` ticks; returns the last report.
    pub fn run(&mut self, n: u64) -> Option<TickReport> {
        (0..n).map(|_| self.tick()).last()
    }

    /// Hashes every agent's memory, globals and host state (in parallel where a pool exists).
    pub fn deep_hash(&mut self) -> DeepHash {
        let hash_one = |s: &mut AgentSlot| -> (AgentId, [u8; 32]) {
            let mut h = blake3::Hasher::new();
            h.update(&s.id.to_le_bytes());
            h.update(s.state.name().as_bytes());
            h.update(&(s.inbox.len() as u64).to_le_bytes());
            if let Some(i) = s.instance.as_mut() {
                i.deep_hash_into(&mut h);
            }
            (s.id, *h.finalize().as_bytes())
        };
        let parts: Vec<_> = match &self.pool {
            Some(pool) => pool.install(|| self.slots.par_iter_mut().map(hash_one).collect()),
            None => self.slots.iter_mut().map(hash_one).collect(),
        };
        let mut whole = blake3::Hasher::new();
        whole.update(&self.last_hash.0);
        let mut agents = Vec::with_capacity(parts.len());
        for (id, d) in parts {
            whole.update(&d);
            let mut short = [0u8; 8];
            short.copy_from_slice(&d[..8]);
            agents.push((id, short));
        }
        DeepHash { tick: self.tick, hash: Digest(*whole.finalize().as_bytes()), agents }
    }

    /// Deep hash, recorded in the log so a replay verifies it at the same point.
    pub fn checkpoint(&mut self) -> DeepHash {
        let d = self.deep_hash();
        self.record(Record::Checkpoint { tick: d.tick, hash: d.hash, agents: d.agents.clone() });
        d
    }

    // ----- reading results -------------------------------------------------------------------

    pub fn inspect(&self, id: AgentId) -> Result<AgentInfo> {
        let s = self.slot(id)?;
        Ok(AgentInfo {
            id,
            module: s.module,
            state: s.state.clone(),
            steps: s.steps,
            messages_received: s.messages_received,
            messages_sent: s.messages_sent,
            inbox_len: s.inbox.len(),
            memory_bytes: s.instance.as_ref().map(|i| i.memory_bytes()).unwrap_or(0),
            fuel_consumed: s.instance.as_ref().map(|i| i.fuel_consumed).unwrap_or(0),
        })
    }

    pub fn agent_ids(&self) -> Vec<AgentId> {
        self.slots.iter().map(|s| s.id).collect()
    }

    pub fn agent_count(&self) -> usize {
        self.slots.len()
    }

    pub fn drain_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    pub fn drain_dead_letters(&mut self) -> Vec<DeadLetter> {
        self.dead_letters.drain_all()
    }

    /// Items each bounded queue refused over the runtime's life: (dead letters, messages to
    /// the host, outbound-ring records). Each refusal was also reported in a `dropped` event.
    pub fn dropped_totals(&self) -> (u64, u64, u64) {
        (self.dead_letters.dropped_total(), self.host_outbox.dropped_total(), self.rings.dropped_total)
    }

    /// Messages agents addressed to the host (id 0), in routing order.
    pub fn drain_host_messages(&mut self) -> Vec<Message> {
        self.host_outbox.drain_all()
    }
}
