//! What the runtime tells its embedder: faults, dead letters, logs and lifecycle changes.

use crate::bus::{AgentId, DeadLetterReason};
use crate::error::Digest;
use crate::fault::Fault;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Spawned {
        tick: u64,
        agent: AgentId,
        module: Digest,
    },
    Fault {
        tick: u64,
        agent: AgentId,
        fault: Fault,
    },
    Stopped {
        tick: u64,
        agent: AgentId,
    },
    Killed {
        tick: u64,
        agent: AgentId,
    },
    DeadLetter {
        tick: u64,
        reason: DeadLetterReason,
        from: AgentId,
        to: AgentId,
        seq: u64,
        kind: u32,
    },
    Log {
        tick: u64,
        agent: AgentId,
        level: u32,
        text: String,
    },
    /// A shared-memory ring broke (the JS side wrote an invalid index or record).
    RingError {
        tick: u64,
        detail: String,
    },
    /// A module was refused at load (bad signature, untrusted key, undeclared import...).
    ModuleRefused {
        tick: u64,
        code: String,
        detail: String,
    },
    /// Something security-relevant was allowed (development mode admitting an unsigned module).
    Security {
        tick: u64,
        detail: String,
    },
    /// A bounded host-side queue was full: `count` items were not kept (docs/ARCHITECTURE.md,
    /// "Limits"). `queue` is `dead_letters`, `host_messages` or `outbound_ring`.
    Dropped {
        tick: u64,
        queue: &'static str,
        count: u64,
    },
    /// The replay log reached `maxLogBytes`: recording stopped; the log is a prefix.
    RecordingStopped {
        tick: u64,
        detail: String,
    },
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
            Self::RingError { .. } => "ring_error",
            Self::ModuleRefused { .. } => "module_refused",
            Self::Security { .. } => "security",
            Self::Dropped { .. } => "dropped",
            Self::RecordingStopped { .. } => "recording_stopped",
        }
    }

    /// The agent the event is about, if any.
    pub fn agent(&self) -> Option<AgentId> {
        match self {
            Self::Spawned { agent, .. } | Self::Fault { agent, .. } | Self::Stopped { agent, .. } | Self::Killed { agent, .. } | Self::Log { agent, .. } => {
                Some(*agent)
            }
            Self::DeadLetter { to, .. } => Some(*to),
            Self::RingError { .. } | Self::ModuleRefused { .. } | Self::Security { .. } | Self::Dropped { .. } | Self::RecordingStopped { .. } => None,
        }
    }

    /// A compact JSON form (for the outbound ring); field names match the JS event objects.
    pub fn to_json(&self) -> String {
        fn q(s: &str) -> String {
            let mut o = String::with_capacity(s.len() + 2);
            o.push('"');
            for c in s.chars() {
                match c {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }
        let t = self.kind();
        match self {
            Self::Spawned { tick, agent, module } => format!(r#"{{"type":"{t}","tick":{tick},"agent":{agent},"module":"{module}"}}"#),
            Self::Fault { tick, agent, fault } => format!(
                r#"{{"type":"{t}","tick":{tick},"agent":{agent},"fault":{{"kind":"{}","call":"{}","tick":{},"detail":{}}}}}"#,
                fault.kind.as_str(),
                fault.call.export_name(),
                fault.tick,
                q(&fault.detail)
            ),
            Self::Stopped { tick, agent } | Self::Killed { tick, agent } => format!(r#"{{"type":"{t}","tick":{tick},"agent":{agent}}}"#),
            Self::DeadLetter { tick, reason, from, to, seq, kind } => {
                format!(r#"{{"type":"{t}","tick":{tick},"reason":"{}","from":{from},"to":{to},"seq":{seq},"kind":{kind}}}"#, reason.as_str())
            }
            Self::Log { tick, agent, level, text } => format!(r#"{{"type":"{t}","tick":{tick},"agent":{agent},"level":{level},"text":{}}}"#, q(text)),
            Self::RingError { tick, detail } | Self::Security { tick, detail } | Self::RecordingStopped { tick, detail } => {
                format!(r#"{{"type":"{t}","tick":{tick},"detail":{}}}"#, q(detail))
            }
            Self::ModuleRefused { tick, code, detail } => format!(r#"{{"type":"{t}","tick":{tick},"code":"{code}","detail":{}}}"#, q(detail)),
            Self::Dropped { tick, queue, count } => format!(r#"{{"type":"{t}","tick":{tick},"queue":"{queue}","count":{count}}}"#),
        }
    }
}
