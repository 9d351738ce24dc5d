//! What the runtime tells its embedder: faults, dead letters, logs and lifecycle changes.

use serde::{Serialize, Serializer};

use crate::bus::{AgentId, DeadLetterReason};
use crate::error::Digest;
use crate::fault::{AbiCall, Fault};

/// What the runtime reports to its embedder, oldest first, through
/// [`Runtime::drain_events`](crate::Runtime::drain_events) (and, as JSON, the outbound ring).
/// Every `tick` field is [`Runtime::current_tick`](crate::Runtime::current_tick) when the
/// event happened: the tick running, or between ticks the next one to run.
///
/// Its serde form is the one JS sees, both from `drainEvents()` and from the outbound ring
/// (`to_json`): `{"type":"dead_letter","tick":3,"reason":...}`, field names as declared here,
/// the type tag as `kind()` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An agent was spawned and its `agent_init` ran (if init faulted, a `Fault` event follows).
    Spawned {
        /// When it happened.
        tick: u64,
        /// The new agent.
        agent: AgentId,
        /// BLAKE3 hash of the module it runs.
        #[serde(serialize_with = "digest_hex")]
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
        #[serde(serialize_with = "fault_object")]
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
    /// A call of a time-sliced agent ([`Runtime::set_fuel_per_tick`](crate::Runtime::set_fuel_per_tick))
    /// used up its slice: it is suspended, and goes on next tick where it stopped. Once per
    /// call, in the tick it was first suspended.
    Suspended {
        /// When it happened.
        tick: u64,
        /// The agent.
        agent: AgentId,
        /// The ABI call suspended (`agent_step`, `agent_receive`, ...).
        #[serde(serialize_with = "call_name")]
        call: AbiCall,
    },
    /// A suspended call ended (returned or faulted) after `ticks` ticks of suspension.
    Resumed {
        /// When it happened.
        tick: u64,
        /// The agent.
        agent: AgentId,
        /// The ABI call.
        #[serde(serialize_with = "call_name")]
        call: AbiCall,
        /// Ticks it was suspended over (slices used up before the one it ended in).
        ticks: u64,
    },
    /// A message could not be delivered. The message itself, payload included, waits in the
    /// dead-letter queue ([`Runtime::drain_dead_letters`](crate::Runtime::drain_dead_letters)).
    DeadLetter {
        /// When it happened.
        tick: u64,
        /// Why it was not delivered.
        #[serde(serialize_with = "reason_name")]
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
            Self::Suspended { .. } => "suspended",
            Self::Resumed { .. } => "resumed",
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
            Self::Spawned { agent, .. }
            | Self::Fault { agent, .. }
            | Self::Stopped { agent, .. }
            | Self::Killed { agent, .. }
            | Self::Log { agent, .. }
            | Self::Suspended { agent, .. }
            | Self::Resumed { agent, .. } => Some(*agent),
            Self::DeadLetter { to, .. } => Some(*to),
            Self::RingError { .. } | Self::ModuleRefused { .. } | Self::Security { .. } | Self::Dropped { .. } | Self::RecordingStopped { .. } => None,
        }
    }

    /// The JSON form (for the outbound ring): the serde form above, as `drainEvents()` gives it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event always serialises")
    }
}

fn digest_hex<S: Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_hex())
}

fn call_name<S: Serializer>(c: &AbiCall, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.export_name())
}

fn reason_name<S: Serializer>(r: &DeadLetterReason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

/// `{ kind, call, tick, detail }`: the same object as `inspect(id).fault`.
fn fault_object<S: Serializer>(f: &Fault, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct FaultJson<'a> {
        kind: &'static str,
        call: &'static str,
        tick: u64,
        detail: &'a str,
    }
    FaultJson { kind: f.kind.as_str(), call: f.call.export_name(), tick: f.tick, detail: &f.detail }.serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{AbiCall, FaultKind};

    /// One event of every kind.
    fn every_kind() -> Vec<Event> {
        let fault = Fault { kind: FaultKind::Trap, call: AbiCall::Step, tick: 4, detail: "unreachable \"x\"\n".into() };
        vec![
            Event::Spawned { tick: 1, agent: 2, module: Digest([0xab; 32]) },
            Event::Fault { tick: 4, agent: 2, fault },
            Event::Stopped { tick: 5, agent: 2 },
            Event::Killed { tick: 5, agent: u64::MAX },
            Event::DeadLetter { tick: 6, reason: DeadLetterReason::RecipientInboxFull, from: 1, to: 9, seq: 3, kind: 7 },
            Event::Log { tick: 7, agent: 1, level: 3, text: "hi\u{1}".into() },
            Event::RingError { tick: 8, detail: "bad".into() },
            Event::ModuleRefused { tick: 0, code: "E_UNSIGNED".into(), detail: "no".into() },
            Event::Security { tick: 0, detail: "dev".into() },
            Event::Dropped { tick: 9, queue: "dead_letters", count: 2 },
            Event::RecordingStopped { tick: 10, detail: "full".into() },
        ]
    }

    #[test]
    fn the_json_type_tag_is_kind() {
        for e in every_kind() {
            let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
            assert_eq!(v["type"], e.kind(), "{e:?}");
        }
    }

    #[test]
    fn the_json_form_is_pinned() {
        let json: Vec<String> = every_kind().iter().map(Event::to_json).collect();
        let hex = "ab".repeat(32);
        assert_eq!(
            json,
            [
                format!(r#"{{"type":"spawned","tick":1,"agent":2,"module":"{hex}"}}"#),
                r#"{"type":"fault","tick":4,"agent":2,"fault":{"kind":"trap","call":"agent_step","tick":4,"detail":"unreachable \"x\"\n"}}"#.into(),
                r#"{"type":"stopped","tick":5,"agent":2}"#.into(),
                r#"{"type":"killed","tick":5,"agent":18446744073709551615}"#.into(),
                r#"{"type":"dead_letter","tick":6,"reason":"recipient_inbox_full","from":1,"to":9,"seq":3,"kind":7}"#.into(),
                r#"{"type":"log","tick":7,"agent":1,"level":3,"text":"hi\u0001"}"#.into(),
                r#"{"type":"ring_error","tick":8,"detail":"bad"}"#.into(),
                r#"{"type":"module_refused","tick":0,"code":"E_UNSIGNED","detail":"no"}"#.into(),
                r#"{"type":"security","tick":0,"detail":"dev"}"#.into(),
                r#"{"type":"dropped","tick":9,"queue":"dead_letters","count":2}"#.into(),
                r#"{"type":"recording_stopped","tick":10,"detail":"full"}"#.into(),
            ]
        );
    }
}
