//! Typed errors. Every variant says what went wrong and what to do about it; `code()` is the
//! stable identifier the JS side exposes as `error.code`.

use std::fmt;

/// Every error the runtime returns. Each message says what went wrong and what to do;
/// [`LockstepError::code`] is its stable `E_...` code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockstepError {
    /// `E_INVALID_CONFIG`: a [`RuntimeConfig`](crate::RuntimeConfig) setting is out of range
    /// (in a replay: one from the log's Config record).
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Which setting, and why.
        reason: String,
    },

    /// `E_INVALID_MODULE`: the bytes are not a valid agent module (not wasm, or over a module
    /// limit of docs/ABI.md), or the module or model named is not loaded.
    #[error("not a valid WebAssembly module: {reason}. Build agents for wasm32-unknown-unknown (see docs/ABI.md)")]
    InvalidModule {
        /// What is wrong with it.
        reason: String,
    },

    /// `E_MISSING_EXPORT`: the module lacks an export the ABI requires, or has it with the
    /// wrong type (docs/ABI.md, "Exports").
    #[error("agent module lacks the export `{name}` ({expected}). Agents written with lockstep-sdk get it from `export_agent!`; see docs/ABI.md")]
    MissingExport {
        /// The export's name.
        name: String,
        /// What it must be, e.g. `func () -> i32` or `a memory`.
        expected: String,
    },

    /// `E_ABI_MISMATCH`: the module's `lockstep_abi_version` is not an ABI version this runtime
    /// speaks (or an instance reports another version than its module did at load).
    #[error("agent module speaks ABI version {found}, this runtime speaks 1..={expected}. Rebuild the agent against a matching lockstep-sdk")]
    AbiMismatch {
        /// The version the module reports.
        found: u32,
        /// The version this runtime speaks (`abi::ABI_VERSION`).
        expected: u32,
    },

    /// `E_UNKNOWN_IMPORT`: the module imports something other than the `lockstep` host
    /// functions of docs/ABI.md.
    #[error("agent module imports `{module}::{name}`, which the runtime does not provide. Only the imports listed in docs/ABI.md exist")]
    UnknownImport {
        /// The import's module name.
        module: String,
        /// The import's name within that module.
        name: String,
    },

    /// `E_UNKNOWN_IMPORT` too: the module imports a host function of docs/ABI.md with another
    /// type than the runtime's (e.g. `send_plain` with `send`'s five parameters).
    #[error("agent module imports `{import}` as {declared}, but the runtime provides it as {provided} (docs/ABI.md, \"Host imports\")")]
    ImportType {
        /// `lockstep::<name>`.
        import: String,
        /// What the module declares: a function type in wasm text, or "a global" and the like.
        declared: String,
        /// The runtime's function type, in wasm text.
        provided: String,
    },

    /// `E_INSTANTIATION`: wasmtime could not instantiate the module (or call its ABI-version
    /// and io-buffer exports).
    #[error("agent module could not be instantiated: {reason}")]
    Instantiation {
        /// wasmtime's error.
        reason: String,
    },

    /// `E_UNKNOWN_AGENT`: no agent was ever assigned this id.
    #[error("no agent with id {id}. Ids come from spawn(); list them with agents()")]
    UnknownAgent {
        /// The id asked for.
        id: u64,
    },

    /// `E_AGENT_NOT_RUNNING`: the agent already stopped, was killed or faulted.
    #[error("agent {id} is {state}, not running; spawn a new agent instead")]
    AgentNotRunning {
        /// The agent's id.
        id: u64,
        /// Its state's name ([`AgentState::name`](crate::AgentState::name)).
        state: String,
    },

    /// `E_MESSAGE_TOO_LARGE`: a payload over the message limit.
    #[error("message payload is {len} bytes; the limit is {max} bytes. Split it, or pass a reference to data held elsewhere")]
    MessageTooLarge {
        /// The payload's size, bytes.
        len: usize,
        /// The limit, bytes (`abi::MAX_PAYLOAD_BYTES`).
        max: usize,
    },

    /// `E_AGENT_LIMIT`: `max_agents` agents are alive already (stopped, killed and faulted
    /// agents do not count).
    #[error("the runtime holds its maximum of {max} live agents; stop or kill some, or create it with a larger maxAgents")]
    AgentLimit {
        /// The runtime's `max_agents`.
        max: u32,
    },

    /// `E_AGENT_IDS_EXHAUSTED`: the runtime has assigned every id it can over its life.
    #[error("this runtime has assigned its maximum of {max} agent ids over its life (ids are never reused); create a new runtime")]
    AgentIdsExhausted {
        /// The most ids a runtime assigns (`limits::MAX_AGENT_IDS`).
        max: u64,
    },

    /// `E_MODULE_LIMIT`: the runtime holds its maximum of distinct loaded modules.
    #[error("the runtime has loaded its maximum of {max} distinct modules; reuse loaded ones (spawn by module hash)")]
    ModuleLimit {
        /// The limit (`limits::MAX_MODULES`).
        max: usize,
    },

    /// `E_PRIORITY_LIMIT`: a spawn would add a distinct priority past the limit.
    #[error("the runtime already uses its maximum of {max} distinct spawn priorities ({phases:?}); spawn with one of those")]
    PriorityLimit {
        /// The limit (`limits::MAX_PHASES`).
        max: usize,
        /// The priorities in use, highest first.
        phases: Vec<i32>,
    },

    /// `E_DAG_CYCLE`: an edge would close a cycle in the workflow graph (an agent would run
    /// after itself).
    #[error(
        "connecting agent {from} to agent {to} would close the cycle {}: an agent cannot run after itself. Disconnect an edge of the cycle first, or send against the graph (such messages arrive at the next tick)",
        cycle_text(cycle)
    )]
    DagCycle {
        /// The edge asked for: its upstream agent.
        from: u64,
        /// Its downstream agent.
        to: u64,
        /// The cycle it would close, `from`, `to`, …, `from` (one path, lowest ids first).
        cycle: Vec<u64>,
    },

    /// `E_EDGE_LIMIT`: the workflow graph holds its maximum of edges.
    #[error("the workflow graph holds its maximum of {max} edges; disconnect some (an agent's edges go when it stops)")]
    EdgeLimit {
        /// The limit (`limits::MAX_EDGES`).
        max: usize,
    },

    /// `E_QUEUE_FULL`: a bounded input queue is full (back-pressure: run a tick, then retry).
    #[error("the queue of {queue} is full ({max_messages} messages or {max_bytes} bytes); run a tick (or drain) and retry")]
    QueueFull {
        /// Which queue, in words.
        queue: &'static str,
        /// Its limit, messages.
        max_messages: usize,
        /// Its limit, payload bytes.
        max_bytes: usize,
    },

    /// `E_RECORDING_MID_SESSION`: recording was asked to start after the first spawn, send or
    /// tick.
    #[error("recording can only start before the first spawn or message; create the runtime with record: true to capture a whole session")]
    RecordingMidSession,

    /// `E_NOT_RECORDING`: the log was asked for, but the runtime is not recording.
    #[error("this runtime is not recording; create it with record: true or call startRecording() before spawning")]
    NotRecording,

    /// `E_NOT_RECORDING`: the log was asked for after `stop_recording` already returned it.
    #[error(
        "recording already stopped: stopRecording() returned the log at tick {tick}. A runtime records one session; to record another, create a new Runtime"
    )]
    RecordingStopped {
        /// `current_tick()` when recording stopped.
        tick: u64,
    },

    /// `E_REPLAY_CORRUPT`: the replay log is truncated, damaged, or holds a record no runtime
    /// could have written.
    #[error("replay log is corrupt at byte {offset}: {reason}")]
    ReplayCorrupt {
        /// Byte offset of the offending header or record in the log.
        offset: u64,
        /// What is wrong (naming the record and field where known).
        reason: String,
    },

    /// `E_REPLAY_VERSION`: the log's format version is not the one this runtime reads.
    #[error("replay log is format version {found}; this runtime reads version {expected}. Replay it with the lockstep release that recorded it, or record the session again with this one")]
    ReplayVersion {
        /// The log's version.
        found: u16,
        /// The version this runtime reads (`replay_log::FORMAT_VERSION`).
        expected: u16,
    },

    /// `E_REPLAY_UNTRUSTED`: the log runs a module the caller's [`ReplayTrust`](crate::ReplayTrust)
    /// does not admit.
    #[error("the replay log runs module {hash}, which this replay does not trust ({reason}). Pass its publisher's key in trustedKeys (or devMode: true for unsigned modules of a devMode session) if you trust the log")]
    ReplayUntrusted {
        /// The module's BLAKE3 hash, hex.
        hash: String,
        /// Why admission refused it.
        reason: String,
    },

    /// `E_REPLAY_MISSING_MODULE`: a Spawn record names a module the log does not contain.
    #[error("replay log references module {hash} that it does not contain")]
    ReplayMissingModule {
        /// The module's BLAKE3 hash, hex.
        hash: String,
    },

    /// `E_REPLAY_NEEDS_SNAPSHOT`: the log starts from a snapshot (a runtime restored from one
    /// recorded it), and the replay was not given that snapshot.
    #[error(
        "this replay log starts at tick {tick} from the snapshot {snapshot}; replay it with that snapshot (replay(log, {{ snapshot }}), the Rust replay_from)"
    )]
    ReplayNeedsSnapshot {
        /// The tick the log starts at.
        tick: u64,
        /// BLAKE3 of the snapshot it starts from, hex.
        snapshot: String,
    },

    /// `E_SNAPSHOT_CORRUPT`: the snapshot is truncated, damaged, or holds a field no runtime
    /// could have written.
    #[error("snapshot is corrupt at byte {offset}: {reason}")]
    SnapshotCorrupt {
        /// Byte offset in the snapshot of the offending field (or of its section's frame, for
        /// a field inside a compressed section; the reason then says where in it).
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// `E_SNAPSHOT_VERSION`: the snapshot's format version is not the one this runtime reads.
    #[error("snapshot is format version {found}; this runtime reads versions 1..={expected}. Restore it with the lockstep release that wrote it")]
    SnapshotVersion {
        /// The snapshot's version.
        found: u16,
        /// The newest version this runtime reads (`snapshot::FORMAT_VERSION`).
        expected: u16,
    },

    /// `E_SNAPSHOT_MISMATCH`: the snapshot is not of the session the caller expects (another
    /// configuration or module set), or not the one a replay log starts from.
    #[error("the snapshot does not match: {differences}")]
    SnapshotMismatch {
        /// Every difference, in words.
        differences: String,
    },

    /// `E_SNAPSHOT_UNSUPPORTED`: a running agent holds state a snapshot cannot store (its
    /// module mutates a table, or drops passive data segments; docs/SNAPSHOT.md).
    #[error("agent {agent} cannot be snapshotted: {reason}")]
    SnapshotUnsupported {
        /// The agent.
        agent: u64,
        /// Its module's BLAKE3 hash, hex.
        module: String,
        /// What in the module, in words.
        reason: String,
    },

    /// `E_SNAPSHOT_UNTRUSTED`: the snapshot holds a module the caller's trust does not admit.
    #[error("the snapshot holds module {hash}, which this restore does not trust ({reason}). Pass its publisher's key in trustedKeys (or devMode: true for unsigned modules of a devMode session) if you trust the snapshot")]
    SnapshotUntrusted {
        /// The module's BLAKE3 hash, hex.
        hash: String,
        /// Why admission refused it.
        reason: String,
    },

    /// `E_IO`: reading or writing a file failed.
    #[error("i/o error on {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        reason: String,
    },

    /// `E_JOURNAL_IO`: the journal could not be written (or read): a full disk, a read-only or
    /// vanished directory, an I/O error. A runtime whose journal failed refuses every further
    /// tick and input with this error: nothing it would record could be kept.
    #[error("journal i/o error on {path}: {reason}. The journal holds the session up to its last durable tick: free space or fix the directory, then continue the session in a new process with Runtime.recover(dir) (npx lockstep recover <dir>)")]
    JournalIo {
        /// The file or directory.
        path: String,
        /// The operating system's error and what was being done.
        reason: String,
    },

    /// `E_JOURNAL_LOCKED`: another runtime (this process or another) holds the journal's
    /// `LOCK` file.
    #[error("the journal in {dir} is in use: its LOCK is held by pid {holder}; two runtimes cannot write one journal. Close that runtime (or end that process) first, or use another directory")]
    JournalLocked {
        /// The journal directory.
        dir: String,
        /// Who holds it: `pid N` (this process's own pid when another runtime here holds it).
        holder: String,
    },

    /// `E_JOURNAL_CORRUPT`: a journal file is damaged (a checksum or length that does not
    /// hold, a missing segment, a record no runtime could have written, a tick that does not
    /// replay to its recorded hash) at a place a torn final write cannot explain.
    #[error("journal is corrupt in {path} at byte {offset}: {reason}")]
    JournalCorrupt {
        /// The segment file.
        path: String,
        /// Byte offset in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// `E_JOURNAL_VERSION`: a journal segment is of a format version this runtime does not read.
    #[error("journal file {path} is format version {found}; this runtime reads version {expected}. Recover it with the lockstep release that wrote it")]
    JournalVersion {
        /// The segment file.
        path: String,
        /// Its version.
        found: u16,
        /// The version this runtime reads (`replay_log::FORMAT_VERSION`).
        expected: u16,
    },

    /// `E_JOURNAL_EXISTS`: a new runtime was asked to journal into a directory that already
    /// holds a journal.
    #[error("{dir} already holds a journal ({first} ...); a new runtime starts a journal in an empty directory. Continue that session with Runtime.recover(dir), or choose another directory")]
    JournalExists {
        /// The journal directory.
        dir: String,
        /// Its first segment file's name.
        first: String,
    },

    /// `E_JOURNAL_NOT_FOUND`: the directory holds no journal segment to recover or verify.
    #[error("{dir} holds no journal (no journal-*.lslog files): nothing to recover. Pass the directory given as journal.dir")]
    JournalNotFound {
        /// The directory.
        dir: String,
    },

    /// A module refused at admission (signature, manifest, capabilities, resources); its code
    /// is the inner error's ([`SecurityError::code`](crate::security::SecurityError::code),
    /// e.g. `E_UNSIGNED`).
    #[error("{0}")]
    Security(crate::security::SecurityError),

    /// An inference error (its own code, e.g. `E_MODEL_NOT_FOUND`): what
    /// [`InferenceEngine`](crate::inference::InferenceEngine) returns, convertible with `?`.
    #[error(transparent)]
    Inference(#[from] crate::inference::InferenceError),

    /// `E_RING`: a shared-memory ring could not be attached or broke.
    #[error(transparent)]
    Ring(#[from] crate::ring::RingError),

    /// `E_INVALID_ARGUMENT`: an argument from the embedder is out of range.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The argument's name.
        name: String,
        /// Why it is refused.
        reason: String,
    },

    /// `E_INTERRUPTED`: a journal cursor's interrupt was set while it replayed
    /// (`CursorOptions::interrupt`).
    #[error("interrupted while {during}: the cursor's interrupt was set; clear it to seek again")]
    Interrupted {
        /// What the cursor was doing, and where it stopped.
        during: String,
    },

    /// `E_CLOSED`: the runtime was closed.
    #[error("this runtime is closed; create a new Runtime")]
    Closed,
}

impl LockstepError {
    /// Stable machine-readable code, shown to JS as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "E_INVALID_CONFIG",
            Self::InvalidModule { .. } => "E_INVALID_MODULE",
            Self::MissingExport { .. } => "E_MISSING_EXPORT",
            Self::AbiMismatch { .. } => "E_ABI_MISMATCH",
            Self::UnknownImport { .. } | Self::ImportType { .. } => "E_UNKNOWN_IMPORT",
            Self::Instantiation { .. } => "E_INSTANTIATION",
            Self::UnknownAgent { .. } => "E_UNKNOWN_AGENT",
            Self::AgentNotRunning { .. } => "E_AGENT_NOT_RUNNING",
            Self::MessageTooLarge { .. } => "E_MESSAGE_TOO_LARGE",
            Self::AgentLimit { .. } => "E_AGENT_LIMIT",
            Self::AgentIdsExhausted { .. } => "E_AGENT_IDS_EXHAUSTED",
            Self::ModuleLimit { .. } => "E_MODULE_LIMIT",
            Self::PriorityLimit { .. } => "E_PRIORITY_LIMIT",
            Self::DagCycle { .. } => "E_DAG_CYCLE",
            Self::EdgeLimit { .. } => "E_EDGE_LIMIT",
            Self::QueueFull { .. } => "E_QUEUE_FULL",
            Self::RecordingMidSession => "E_RECORDING_MID_SESSION",
            Self::NotRecording | Self::RecordingStopped { .. } => "E_NOT_RECORDING",
            Self::ReplayCorrupt { .. } => "E_REPLAY_CORRUPT",
            Self::ReplayVersion { .. } => "E_REPLAY_VERSION",
            Self::ReplayMissingModule { .. } => "E_REPLAY_MISSING_MODULE",
            Self::ReplayUntrusted { .. } => "E_REPLAY_UNTRUSTED",
            Self::ReplayNeedsSnapshot { .. } => "E_REPLAY_NEEDS_SNAPSHOT",
            Self::SnapshotCorrupt { .. } => "E_SNAPSHOT_CORRUPT",
            Self::SnapshotVersion { .. } => "E_SNAPSHOT_VERSION",
            Self::SnapshotMismatch { .. } => "E_SNAPSHOT_MISMATCH",
            Self::SnapshotUnsupported { .. } => "E_SNAPSHOT_UNSUPPORTED",
            Self::SnapshotUntrusted { .. } => "E_SNAPSHOT_UNTRUSTED",
            Self::Io { .. } => "E_IO",
            Self::JournalIo { .. } => "E_JOURNAL_IO",
            Self::JournalLocked { .. } => "E_JOURNAL_LOCKED",
            Self::JournalCorrupt { .. } => "E_JOURNAL_CORRUPT",
            Self::JournalVersion { .. } => "E_JOURNAL_VERSION",
            Self::JournalExists { .. } => "E_JOURNAL_EXISTS",
            Self::JournalNotFound { .. } => "E_JOURNAL_NOT_FOUND",
            Self::Security(e) => e.code(),
            Self::Inference(e) => e.code(),
            Self::Ring(_) => "E_RING",
            Self::InvalidArgument { .. } => "E_INVALID_ARGUMENT",
            Self::Interrupted { .. } => "E_INTERRUPTED",
            Self::Closed => "E_CLOSED",
        }
    }
}

/// A cycle as `1 → 2 → 3 → 1`.
fn cycle_text(cycle: &[u64]) -> String {
    cycle.iter().map(u64::to_string).collect::<Vec<_>>().join(" → ")
}

/// `std::result::Result` with [`LockstepError`] as the default error.
pub type Result<T, E = LockstepError> = std::result::Result<T, E>;

/// A 32-byte BLAKE3 digest, printed as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        crate::security::hex(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}
