//! What the runtime tells its embedder: faults, dead letters, logs and lifecycle changes.

use serde::{Serialize, Serializer};

use crate::bus::{AgentId, DeadLetterReason};
use crate::error::Digest;
use crate::fault::Fault;

/// An event. Its serde form is the one JS sees, both from `drainEvents()` and from the
/// outbound ring (`to_json`): `{"type":"dead_letter","tick":3,"reason":...}`, field names as
/// declared here, the type tag as `kind()` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Spawned {
        tick: u64,
        agent: AgentId,
        #[serde(serialize_with = "digest_hex")]
        module: Digest,
    },
    Fault {
        tick: u64,
        agent: AgentId,
        #[serde(serialize_with = "fault_object")]
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
        #[serde(serialize_with = "reason_name")]
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

    /// The JSON form (for the outbound ring): the serde form above, as `drainEvents()` gives it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event always serialises")
    }
}

fn digest_hex<S: Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_hex())
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
