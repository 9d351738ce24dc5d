//! Re-runs a recorded session and verifies it tick by tick.

use crate::bus::AgentId;
use crate::error::{Digest, LockstepError, Result};
use crate::replay_log::{LogReader, Record};
use crate::runtime::{Runtime, RuntimeConfig};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DivergenceKind {
    TickHash,
    DeepHash,
    SpawnId,
}

/// The first point where the replay disagreed with the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub kind: DivergenceKind,
    pub tick: u64,
    /// The first agent (lowest id) whose part differed, when the log lets us tell.
    pub agent: Option<AgentId>,
    pub expected: Digest,
    pub actual: Digest,
}

#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub ticks_verified: u64,
    pub checkpoints_verified: u64,
    pub final_hash: Digest,
    pub divergence: Option<Divergence>,
}

/// The lowest agent id whose short digest differs between the recording and the replay.
fn first_differing_agent(expected: &[(AgentId, [u8; 8])], actual: &[(AgentId, [u8; 8])]) -> Option<AgentId> {
    let (mut i, mut j) = (0, 0);
    loop {
        match (expected.get(i), actual.get(j)) {
            (None, None) => return None,
            (Some(e), None) => return Some(e.0),
            (None, Some(a)) => return Some(a.0),
            (Some(e), Some(a)) if e.0 < a.0 => return Some(e.0),
            (Some(e), Some(a)) if a.0 < e.0 => return Some(a.0),
            (Some(e), Some(a)) if e.1 != a.1 => return Some(e.0),
            _ => {
                i += 1;
                j += 1;
            }
        }
    }
}

/// Replays `log` with `workers` threads (worker count never changes results). Stops at the
/// first divergence and reports it; a corrupt or truncated log is an error with its offset.
pub fn replay(log: &[u8], workers: usize, mut progress: impl FnMut(u64)) -> Result<ReplayReport> {
    let mut reader = LogReader::new(log)?;
    let Some(Record::Config(session)) = reader.next_record()? else {
        return Err(LockstepError::ReplayCorrupt { offset: 16, reason: "the first record must be the session config".into() });
    };
    let mut rt = Runtime::new(RuntimeConfig {
        workers,
        fuel_per_call: session.fuel_per_call,
        memory_limit_bytes: session.memory_limit_bytes,
        seed: session.seed,
        max_agents: session.max_agents,
        deadline_ms: session.deadline_ms,
        // Checkpoints come from the log, not from the interval.
        checkpoint_interval_ticks: 0,
        record: false,
        max_events: 10_000,
        allocator: Default::default(),
        inference_batching: true,
        trusted_keys: session.trusted_keys.clone(),
        dev_mode: session.dev_mode,
        policy: serde_json::from_str(&session.policy_json)
            .map_err(|e| LockstepError::ReplayCorrupt { offset: 16, reason: format!("recorded policy: {e}") })?,
        resource_policy: if session.resource_clamp { crate::runtime::ResourcePolicy::Clamp } else { crate::runtime::ResourcePolicy::Refuse },
    })?;
    let mut report = ReplayReport { ticks_verified: 0, checkpoints_verified: 0, final_hash: Digest::default(), divergence: None };
    loop {
        let offset = reader.offset();
        let Some(record) = reader.next_record()? else { break };
        let at = |e: LockstepError| match e {
            LockstepError::ReplayCorrupt { .. } => e,
            other => LockstepError::ReplayCorrupt { offset, reason: format!("recorded input no longer applies: {other}") },
        };
        match record {
            Record::Config(_) => return Err(LockstepError::ReplayCorrupt { offset, reason: "a second config record".into() }),
            Record::Module { hash, bytes } => {
                let loaded = rt.load_module(bytes).map_err(at)?;
                if loaded != hash {
                    return Err(LockstepError::ReplayCorrupt { offset, reason: format!("module bytes hash to {loaded}, record says {hash}") });
                }
            }
            Record::Spawn { tick, module, agent, priority } => {
                let id = rt.spawn_with_priority(module, priority).map_err(|e| match e {
                    LockstepError::InvalidModule { .. } => LockstepError::ReplayMissingModule { hash: module.to_hex() },
                    other => at(other),
                })?;
                if id != agent {
                    report.divergence = Some(Divergence { kind: DivergenceKind::SpawnId, tick, agent: Some(agent), expected: Digest::default(), actual: Digest::default() });
                    break;
                }
            }
            Record::Send { to, kind, priority, payload, .. } => {
                // What `send` and the inbound ring refuse, a log cannot smuggle in: a payload
                // over MAX_PAYLOAD_BYTES reached the inbox and faulted its recipient.
                if payload.len() > crate::abi::MAX_PAYLOAD_BYTES {
                    return Err(LockstepError::ReplayCorrupt {
                        offset,
                        reason: format!("a recorded message payload of {} bytes exceeds {}", payload.len(), crate::abi::MAX_PAYLOAD_BYTES),
                    });
                }
                rt.enqueue_host_message(to, kind, priority, payload)
            }
            Record::Kill { agent, .. } => rt.kill(agent).map_err(at)?,
            Record::Shutdown { agent, .. } => rt.shutdown(agent).map_err(at)?,
            Record::TickEnd { tick, hash, agents } => {
                let r = rt.tick();
                if r.tick != tick || r.hash != hash {
                    let agent = first_differing_agent(&agents, &r.agent_digests);
                    report.divergence = Some(Divergence { kind: DivergenceKind::TickHash, tick, agent, expected: hash, actual: r.hash });
                    break;
                }
                report.ticks_verified += 1;
                progress(report.ticks_verified);
            }
            Record::AgentModel { slot, id } => {
                rt.set_replaying_inference();
                let got = rt.register_agent_model(&id).map_err(at)?;
                if got != slot {
                    return Err(LockstepError::ReplayCorrupt { offset, reason: format!("model slot {slot} registered as {got}") });
                }
            }
            Record::InferResults { tick, results } => rt.queue_recorded_inference(tick, results),
            Record::Checkpoint { tick, hash, agents } => {
                let d = rt.deep_hash();
                if d.hash != hash {
                    let agent = first_differing_agent(&agents, &d.agents);
                    report.divergence = Some(Divergence { kind: DivergenceKind::DeepHash, tick, agent, expected: hash, actual: d.hash });
                    break;
                }
                report.checkpoints_verified += 1;
            }
        }
    }
    report.final_hash = rt.state_hash();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_differing_agent_finds_lowest_id() {
        let a = vec![(1, [0; 8]), (2, [1; 8]), (5, [2; 8])];
        assert_eq!(first_differing_agent(&a, &a), None);
        let mut b = a.clone();
        b[2].1 = [9; 8];
        assert_eq!(first_differing_agent(&a, &b), Some(5));
        assert_eq!(first_differing_agent(&a, &a[..2]), Some(5));
        assert_eq!(first_differing_agent(&a, &[(1, [0; 8]), (3, [0; 8])]), Some(2));
    }
}
