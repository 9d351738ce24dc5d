//! What the runtime tells its embedder: faults, dead letters, logs and lifecycle changes.

use crate::bus::{AgentId, DeadLetterReason};
use crate::error::Digest;
use crate::fault::Fault;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Spawned { tick: u64, agent: AgentId, module: Digest },
    Fault { tick: u64, agent: AgentId, fault: Fault },
    Stopped { tick: u64, agent: AgentId },
    Killed { tick: u64, agent: AgentId },
    DeadLetter { tick: u64, reason: DeadLetterReason, from: AgentId, to: AgentId, seq: u64, kind: u32 },
    Log { tick: u64, agent: AgentId, level: u32, text: String },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Spawned { .. } => "spawned",
            Self::Fault { .. } => "fault",
            Self::Stopped { .. } => "stopped",
            Self::Killed { .. } => "killed",
            Self::DeadLetter { .. } => "dead_letter",
            Self::Log { .. } => "log",
        }
    }
}
