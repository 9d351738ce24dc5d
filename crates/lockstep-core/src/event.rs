//! What the runtime tells its embedder: faults, dead letters, logs and lifecycle changes.

use crate::bus::{AgentId, DeadLetterReason};
use crate::error::Digest;
use crate::fault::Fault;

/// What the runtime reports to its embedder, oldest first, through
/// [`Runtime::drain_events`](crate::Runtime::drain_events) (and, as JSON, the outbound ring).
/// Every `tick` field is [`Runtime::current_tick`](crate::Runtime::current_tick) when the
/// event happened: the tick running, or between ticks the next one to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An agent was spawned and its `agent_init` ran (if init faulted, a `Fault` event follows).
    Spawned {
        /// When it happened.
        tick: u64,
        /// The new agent.
        agent: AgentId,
        /// BLAKE3 hash of the module it runs.
        module: Digest,
    },
    /// An agent faulted (in `agent_init`, in a tick, or in `agent_shutdown`); it is stopped
    /// for good and its undelivered messages are dead-lettered.
    Fault {
        /// When it happened.
        tick: u64,
        /// The agent that faulted.
        agent: AgentId,
        /// What happened, and in which ABI call.
        fault: Fault,
    },
    /// An agent was shut down ([`Runtime::shutdown`](crate::Runtime::shutdown)) and its
    /// `agent_shutdown` returned 0.
    Stopped {
        /// When it happened.
        tick: u64,
        /// The agent.
        agent: AgentId,
    },
    /// An agent was killed ([`Runtime::kill`](crate::Runtime::kill)), without `agent_shutdown`.
    Killed {
        /// When it happened.
        tick: u64,
        /// The agent.
        agent: AgentId,
    },
    /// A message could not be delivered. The message itself, payload included, waits in the
    /// dead-letter queue ([`Runtime::drain_dead_letters`](crate::Runtime::drain_dead_letters)).
    DeadLetter {
        /// When it happened.
        tick: u64,
        /// Why it was not delivered.
        reason: DeadLetterReason,
        /// The message's sender.
        from: AgentId,
        /// The message's recipient.
        to: AgentId,
        /// The message's sequence number (per sender).
        seq: u64,
        /// The message's user-defined kind.
        kind: u32,
    },
    /// A line an agent logged with the `log` import (in `agent_init`, a tick or
    /// `agent_shutdown`), or one the runtime logged for it (a `send` its capabilities deny).
    Log {
        /// When it happened.
        tick: u64,
        /// The agent.
        agent: AgentId,
        /// The level the agent passed: 1 error, 2 warn, 3 info, 4 debug, 5 trace.
        level: u32,
        /// The line, cut to 1,024 bytes (invalid UTF-8 replaced).
        text: String,
    },
    /// A shared-memory ring broke (the JS side wrote an invalid index or record).
    RingError {
        /// When it happened.
        tick: u64,
        /// What was wrong with the ring.
        detail: String,
    },
    /// A module was refused at load (bad signature, untrusted key, undeclared import...).
    ModuleRefused {
        /// When it happened.
        tick: u64,
        /// The refusal's [`LockstepError::code`](crate::LockstepError::code), e.g. `E_UNTRUSTED_KEY`.
        code: String,
        /// The refusal's message.
        detail: String,
    },
    /// Something security-relevant was allowed (development mode admitting an unsigned module).
    Security {
        /// When it happened.
        tick: u64,
        /// What was allowed.
        detail: String,
    },
    /// A bounded host-side queue was full: `count` items were not kept (ARCHITECTURE.md,
    /// "Limits"). `queue` is `dead_letters`, `host_messages` or `outbound_ring`.
    Dropped {
        /// The tick at whose end the drops were reported.
        tick: u64,
        /// Which queue.
        queue: &'static str,
        /// Items that queue refused since its last `Dropped` event.
        count: u64,
    },
    /// The replay log reached `maxLogBytes`: recording stopped; the log is a prefix.
    RecordingStopped {
        /// When it happened.
        tick: u64,
        /// The limit, the tick and what to do.
        detail: String,
    },
}

impl Event {
    /// The event's `type` as JS and the JSON form name it, e.g. `"dead_letter"`.
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
