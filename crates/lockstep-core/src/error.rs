//! Typed errors. Every variant says what went wrong and what to do about it; `code()` is the
//! stable identifier the JS side exposes as `error.code`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockstepError {
    #[error("invalid configuration: {reason}")]
    InvalidConfig { reason: String },

    #[error("not a valid WebAssembly module: {reason}. Build agents for wasm32-unknown-unknown (see docs/ABI.md)")]
    InvalidModule { reason: String },

    #[error("agent module lacks the export `{name}` ({expected}). Agents written with lockstep-sdk get it from `export_agent!`; see docs/ABI.md")]
    MissingExport { name: String, expected: String },

    #[error("agent module speaks ABI version {found}, this runtime speaks {expected}. Rebuild the agent against a matching lockstep-sdk")]
    AbiMismatch { found: u32, expected: u32 },

    #[error("agent module imports `{module}::{name}`, which the runtime does not provide. Only the imports listed in docs/ABI.md exist")]
    UnknownImport { module: String, name: String },

    #[error("agent module could not be instantiated: {reason}")]
    Instantiation { reason: String },

    #[error("no agent with id {id}. Ids come from spawn(); list them with agents()")]
    UnknownAgent { id: u64 },

    #[error("agent {id} is {state}, not running; spawn a new agent instead")]
    AgentNotRunning { id: u64, state: String },

    #[error("message payload is {len} bytes; the limit is {max} bytes. Split it, or pass a reference to data held elsewhere")]
    MessageTooLarge { len: usize, max: usize },

    #[error("the runtime holds its maximum of {max} live agents; stop or kill some, or create it with a larger maxAgents")]
    AgentLimit { max: u32 },

    #[error("this runtime has assigned its maximum of {max} agent ids over its life (ids are never reused); create a new runtime")]
    AgentIdsExhausted { max: u64 },

    #[error("the runtime has loaded its maximum of {max} distinct modules; reuse loaded ones (spawn by module hash)")]
    ModuleLimit { max: usize },

    #[error("the runtime already uses its maximum of {max} distinct spawn priorities ({phases:?}); spawn with one of those")]
    PriorityLimit { max: usize, phases: Vec<i32> },

    #[error("the queue of {queue} is full ({max_messages} messages or {max_bytes} bytes); run a tick (or drain) and retry")]
    QueueFull { queue: &'static str, max_messages: usize, max_bytes: usize },

    #[error("recording can only start before the first spawn or message; create the runtime with record: true to capture a whole session")]
    RecordingMidSession,

    #[error("this runtime is not recording; create it with record: true or call startRecording() before spawning")]
    NotRecording,

    #[error("replay log is corrupt at byte {offset}: {reason}")]
    ReplayCorrupt { offset: u64, reason: String },

    #[error("replay log is format version {found}; this runtime reads version {expected}. Replay it with the lockstep release that recorded it, or record the session again with this one")]
    ReplayVersion { found: u16, expected: u16 },

    #[error("the replay log runs module {hash}, which this replay does not trust ({reason}). Pass its publisher's key in trustedKeys (or devMode: true for unsigned modules of a devMode session) if you trust the log")]
    ReplayUntrusted { hash: String, reason: String },

    #[error("replay log references module {hash} that it does not contain")]
    ReplayMissingModule { hash: String },

    #[error("i/o error on {path}: {reason}")]
    Io { path: String, reason: String },

    #[error("module refused: {0}")]
    Security(crate::security::SecurityError),

    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument { name: String, reason: String },

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
            Self::UnknownImport { .. } => "E_UNKNOWN_IMPORT",
            Self::Instantiation { .. } => "E_INSTANTIATION",
            Self::UnknownAgent { .. } => "E_UNKNOWN_AGENT",
            Self::AgentNotRunning { .. } => "E_AGENT_NOT_RUNNING",
            Self::MessageTooLarge { .. } => "E_MESSAGE_TOO_LARGE",
            Self::AgentLimit { .. } => "E_AGENT_LIMIT",
            Self::AgentIdsExhausted { .. } => "E_AGENT_IDS_EXHAUSTED",
            Self::ModuleLimit { .. } => "E_MODULE_LIMIT",
            Self::PriorityLimit { .. } => "E_PRIORITY_LIMIT",
            Self::QueueFull { .. } => "E_QUEUE_FULL",
            Self::RecordingMidSession => "E_RECORDING_MID_SESSION",
            Self::NotRecording => "E_NOT_RECORDING",
            Self::ReplayCorrupt { .. } => "E_REPLAY_CORRUPT",
            Self::ReplayVersion { .. } => "E_REPLAY_VERSION",
            Self::ReplayMissingModule { .. } => "E_REPLAY_MISSING_MODULE",
            Self::ReplayUntrusted { .. } => "E_REPLAY_UNTRUSTED",
            Self::Io { .. } => "E_IO",
            Self::Security(e) => e.code(),
            Self::InvalidArgument { .. } => "E_INVALID_ARGUMENT",
            Self::Closed => "E_CLOSED",
        }
    }
}

pub type Result<T, E = LockstepError> = std::result::Result<T, E>;

/// A 32-byte BLAKE3 digest, printed as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
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
