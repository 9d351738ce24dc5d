//! Re-runs a recorded session and verifies it tick by tick.

use crate::abi;
use crate::bus::AgentId;
use crate::error::{Digest, LockstepError, Result};
use crate::replay_log::{tail_digest, LogReader, Record, SessionConfig};
use crate::runtime::{Runtime, RuntimeConfig};

/// Which check of a replay disagreed with the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DivergenceKind {
    /// A tick's hash differs from its TickEnd record.
    TickHash,
    /// A deep hash differs from its Checkpoint record.
    DeepHash,
    /// A spawn got another agent id than its Spawn record (`agent` is the recorded id; both
    /// digests are zero).
    SpawnId,
}

/// The first point where the replay disagreed with the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Which check disagreed.
    pub kind: DivergenceKind,
    /// The tick of the record that disagreed.
    pub tick: u64,
    /// The first agent (lowest id) whose part differed, when the log lets us tell.
    pub agent: Option<AgentId>,
    /// The recorded hash.
    pub expected: Digest,
    /// The hash the replay computed.
    pub actual: Digest,
}

/// What a replay verified. No `divergence` and `complete`: the whole recorded session replays
/// exactly; no `divergence` alone: the part of it in the log does.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// Ticks whose hash matched their TickEnd record.
    pub ticks_verified: u64,
    /// Checkpoints whose deep hash matched their Checkpoint record.
    pub checkpoints_verified: u64,
    /// The replay's state hash where it stopped: the hash of the last tick it ran.
    pub final_hash: Digest,
    /// The first divergence, if any: `None` means everything verified agreed.
    pub divergence: Option<Divergence>,
    /// Whether what was verified is the whole recorded session: the log ended with its End
    /// record, whose counts and final hash agree with the replay. `false` for a prefix (a log
    /// cut at a record boundary, or a snapshot without its End record), for a log with a Gap
    /// (a record too large to write), and when a divergence stopped the replay early.
    pub complete: bool,
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

/// A forged or inconsistent field: the error names the record's offset, the record and field.
fn corrupt(offset: u64, record: &str, field: &str, reason: impl std::fmt::Display) -> LockstepError {
    LockstepError::ReplayCorrupt { offset, reason: format!("{record} record, field `{field}`: {reason}") }
}

/// A model id as `loadModel` makes them: SHA-256, 64 lowercase hex digits.
fn is_model_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What one replay has applied so far, for checking each record before it is applied.
struct Applied {
    /// The tick the last InferResults record was for (at most one per tick).
    infer_tick: Option<u64>,
    /// Where that record starts, for the error if its answers do not fit the tick's requests.
    infer_offset: u64,
    /// The tick of the last Send record to an id that was no agent yet (ring input, drained
    /// at the start of a tick, after its spawns).
    send_to_nobody: Option<u64>,
    /// A record other than Journal was applied (the Journal record comes before all of them),
    /// or the replay started from a snapshot taken part-way through the session.
    started: bool,
    /// The Journal record was applied (a journal has one).
    journal_seen: bool,
}

/// Checks one decoded record against the limits the live API enforces and against the
/// session so far (its tick, its agents), before it is applied. CRCs only say the bytes are
/// the ones written; this says they could have been written by a runtime.
fn validate(record: &Record, offset: u64, rt: &Runtime, applied: &Applied) -> Result<()> {
    let name = record.name();
    let now = rt.current_tick();
    let agents = rt.agent_count() as u64;
    let tick_is_now = |tick: u64| {
        if tick == now {
            Ok(())
        } else {
            Err(corrupt(offset, name, "tick", format!("{tick}, but the replay is at tick {now}: records are written at the tick they happen")))
        }
    };
    let existing_agent = |field: &str, id: AgentId| {
        if (1..=agents).contains(&id) {
            Ok(())
        } else {
            Err(corrupt(offset, name, field, format!("agent {id} does not exist (agents so far: 1..={agents})")))
        }
    };
    match record {
        Record::Config(_) => return Err(corrupt(offset, name, "tag", "a second config record")),
        Record::Module { hash, bytes } => {
            let actual = Digest(*blake3::hash(bytes).as_bytes());
            if actual != *hash {
                return Err(corrupt(offset, name, "hash", format!("the module bytes hash to {actual}, the record says {hash}")));
            }
        }
        Record::Spawn { tick, agent, .. } => {
            tick_is_now(*tick)?;
            // maxAgents bounds the live agents, not the ids: ids run up to MAX_AGENT_IDS.
            let max = crate::limits::MAX_AGENT_IDS as u64;
            if *agent == 0 || *agent > max {
                return Err(corrupt(offset, name, "agent", format!("{agent} is outside the ids a runtime assigns (1..={max})")));
            }
            // A message to an id that is no agent comes from the inbound ring, drained when
            // the tick starts, after that tick's spawns: a spawn cannot follow it (replayed, it
            // delivered the message to the new agent).
            if applied.send_to_nobody == Some(now) {
                return Err(corrupt(
                    offset,
                    name,
                    "tick",
                    format!("a spawn after a Send to an id that was no agent in tick {now}: ring input is drained after a tick's spawns"),
                ));
            }
        }
        Record::Send { tick, payload, .. } => {
            tick_is_now(*tick)?;
            if payload.len() > abi::MAX_PAYLOAD_BYTES {
                return Err(corrupt(offset, name, "payload", format!("{} bytes exceeds the {}-byte message limit", payload.len(), abi::MAX_PAYLOAD_BYTES)));
            }
        }
        Record::Kill { tick, agent } | Record::Shutdown { tick, agent } => {
            tick_is_now(*tick)?;
            existing_agent("agent", *agent)?;
        }
        Record::TickEnd { tick, agents: digests, .. } | Record::Checkpoint { tick, agents: digests, .. } => {
            tick_is_now(*tick)?;
            if digests.len() as u64 > agents {
                return Err(corrupt(offset, name, "agents", format!("{} agent digests, but only {agents} agents exist", digests.len())));
            }
            for (id, _) in digests {
                existing_agent("agents", *id)?;
            }
        }
        Record::AgentModel { id, .. } => {
            if !is_model_id(id) {
                return Err(corrupt(offset, name, "id", "not a model id (64 lowercase hex digits of SHA-256)"));
            }
        }
        Record::InferResults { tick, results } => {
            tick_is_now(*tick)?;
            if applied.infer_tick == Some(*tick) {
                return Err(corrupt(offset, name, "tick", format!("a second InferResults record for tick {tick}")));
            }
            let mut per_agent = std::collections::BTreeMap::<AgentId, usize>::new();
            for (agent, _, payload) in results {
                existing_agent("agent", *agent)?;
                let n = per_agent.entry(*agent).or_default();
                *n += 1;
                if *n > abi::MAX_INFER_REQUESTS_PER_TICK {
                    return Err(corrupt(
                        offset,
                        name,
                        "results",
                        format!("more than {} answers for agent {agent}, which may ask at most that many per tick", abi::MAX_INFER_REQUESTS_PER_TICK),
                    ));
                }
                if payload.len() < 4 || payload.len() > abi::MAX_PAYLOAD_BYTES {
                    return Err(corrupt(
                        offset,
                        name,
                        "payload",
                        format!(
                            "{} bytes; an answer is a 4-byte status and outputs, at most {} bytes (the message limit)",
                            payload.len(),
                            abi::MAX_PAYLOAD_BYTES
                        ),
                    ));
                }
            }
        }
        Record::Base { .. } => return Err(corrupt(offset, name, "tag", "a Base record anywhere but right after the Config record")),
        Record::Journal { .. } if applied.started => {
            return Err(corrupt(offset, name, "tag", "a Journal record after the session's first input (it follows the Config and Base records)"))
        }
        Record::AgentLanguageModel { id, .. } if !is_model_id(id) => {
            return Err(corrupt(offset, name, "id", "not a model id (64 lowercase hex digits of SHA-256)"));
        }
        Record::Generated { tick, .. } => tick_is_now(*tick)?,
        Record::Journal { .. } if applied.journal_seen => return Err(corrupt(offset, name, "tag", "a second Journal record (a journal has one identity)")),
        Record::Connect { tick, from, to } | Record::Disconnect { tick, from, to } => {
            tick_is_now(*tick)?;
            existing_agent("from", *from)?;
            existing_agent("to", *to)?;
        }
        Record::Trigger { tick, agent, .. } | Record::Slice { tick, agent, .. } => {
            tick_is_now(*tick)?;
            existing_agent("agent", *agent)?;
        }
        Record::Journal { .. } | Record::End { .. } | Record::Gap { .. } | Record::AgentLanguageModel { .. } => {}
    }
    Ok(())
}

/// Replays `log` with `workers` threads (worker count never changes results). Stops at the
/// first divergence and reports it; a corrupt or truncated log is an error with its offset,
/// and so is a record whose fields no runtime could have written (checked before it is
/// applied). `complete` in the report says whether the whole session was verified.
///
/// This trusts the log's own admission settings (trusted keys, development mode): use it
/// only for logs you recorded yourself. For a log from anywhere else, `replay_trusting`.
pub fn replay(log: &[u8], workers: usize, progress: impl FnMut(u64)) -> Result<ReplayReport> {
    replay_trusting(log, workers, None, progress)
}

/// What the caller of a replay trusts: a log cannot grant itself more (issue 9 red-team: a
/// log recorded in devMode, or naming its own keys, ran whatever modules it carried).
#[derive(Debug, Clone, Default)]
pub struct ReplayTrust {
    /// Publishers whose modules may run in the replay (intersected with the log's own).
    pub trusted_keys: Vec<[u8; 32]>,
    /// Admit unsigned modules (only if the log was recorded in development mode too).
    pub dev_mode: bool,
}

/// Like `replay`, admitting only modules `trust` covers (`None`: the log's own settings).
/// A module the log ran but the caller does not trust is `E_REPLAY_UNTRUSTED`.
pub fn replay_trusting(log: &[u8], workers: usize, trust: Option<&ReplayTrust>, progress: impl FnMut(u64)) -> Result<ReplayReport> {
    replay_with(log, None, workers, trust, progress)
}

/// Replays a log recorded by a runtime restored from `snapshot` (its second record, Base,
/// names the snapshot's BLAKE3 hash): the snapshot is restored under the same trust rules
/// (`trust`, as for `replay_trusting`; `None` trusts the log's settings) and the log's
/// records are applied from there. Another snapshot than the one the log names, or one of
/// another session, is `E_SNAPSHOT_MISMATCH`; a log that starts at tick 0 is
/// `E_INVALID_ARGUMENT` (replay it without a snapshot).
pub fn replay_from(snapshot: &[u8], log: &[u8], workers: usize, trust: Option<&ReplayTrust>, progress: impl FnMut(u64)) -> Result<ReplayReport> {
    replay_with(log, Some(snapshot), workers, trust, progress)
}

/// The runtime a replay starts from: fresh for a log that starts at tick 0, restored from
/// `snapshot` for one whose record after the Config record is `base` (tick, snapshot hash,
/// state hash: a Base record at `offset`).
fn starting_runtime(
    config: RuntimeConfig,
    session: &SessionConfig,
    base: Option<(u64, Digest, Digest)>,
    offset: u64,
    snapshot: Option<&[u8]>,
) -> Result<Runtime> {
    let (tick, want, hash) = match (base, snapshot) {
        (Some(base), _) => base,
        (None, Some(_)) => {
            return Err(LockstepError::InvalidArgument {
                name: "snapshot".into(),
                reason: "this log starts at tick 0, not from a snapshot (it has no Base record); replay it without one".into(),
            })
        }
        (None, None) => return Runtime::new_replaying(config),
    };
    let Some(bytes) = snapshot else { return Err(LockstepError::ReplayNeedsSnapshot { tick, snapshot: want.to_hex() }) };
    let got = Digest(*blake3::hash(bytes).as_bytes());
    if got != want {
        return Err(LockstepError::SnapshotMismatch { differences: format!("the snapshot given hashes to {got}; the log starts from the snapshot {want}") });
    }
    let expect = crate::snapshot::ExpectedSession {
        seed: Some(session.seed),
        fuel_per_call: Some(session.fuel_per_call),
        memory_limit_bytes: Some(session.memory_limit_bytes),
        max_agents: Some(session.max_agents),
        deadline_ms: Some(session.deadline_ms),
        checkpoint_interval_ticks: Some(session.checkpoint_interval_ticks),
        policy: Some(config.policy.clone()),
        resource_policy: Some(config.resource_policy),
        modules: None,
    };
    let options = crate::snapshot::RestoreOptions {
        workers: config.workers,
        worker_scaling: config.worker_scaling,
        allocator: config.allocator,
        record: false,
        max_log_bytes: config.max_log_bytes,
        max_events: config.max_events,
        inference_batching: config.inference_batching,
        trusted_keys: config.trusted_keys.clone(),
        dev_mode: config.dev_mode,
        expect,
        journal: None,
    };
    let rt = Runtime::restore_replaying(bytes, options)?;
    if rt.current_tick() != tick || rt.state_hash() != hash {
        return Err(corrupt(
            offset,
            "Base",
            "hash",
            format!("the snapshot is at tick {} with state hash {}; the record says tick {tick}, {hash}", rt.current_tick(), rt.state_hash()),
        ));
    }
    Ok(rt)
}

fn replay_with(log: &[u8], snapshot: Option<&[u8]>, workers: usize, trust: Option<&ReplayTrust>, mut progress: impl FnMut(u64)) -> Result<ReplayReport> {
    let mut reader = LogReader::new(log)?;
    let Some(Record::Config(session)) = reader.next_record()? else {
        return Err(LockstepError::ReplayCorrupt { offset: 16, reason: "the first record must be the session config".into() });
    };
    // Where the config record ends and where the records after the last TickEnd begin:
    // the parts of the log the End record's `tail` digest covers.
    let config_end = reader.offset() as usize;
    // A log recorded from a snapshot has a Base record next (peeked with a second reader: a
    // damaged record there is reported by the loop below, in order, like any other).
    let base_offset = reader.offset();
    let base = {
        let mut peek = LogReader::new(log)?;
        let _config = peek.next_record();
        match peek.next_record() {
            Ok(Some(Record::Base { tick, snapshot, hash })) => Some((tick, snapshot, hash)),
            _ => None,
        }
    };
    if base.is_some() {
        reader.next_record()?;
    }
    let mut replayer = Replayer::start_from(&session, workers, trust, base.map(|b| (b, base_offset)), snapshot)?;
    let mut tail_start = config_end;
    loop {
        let offset = reader.offset();
        let Some(record) = reader.next_record()? else {
            break;
        };
        if let Record::End { ticks, records, bytes, hash, tail } = record {
            // Nothing may follow the End record: the reader refuses it with its offset.
            let after = reader.next_record()?;
            debug_assert!(after.is_none());
            let rt = &replayer.rt;
            replayer.report.complete = ticks == rt.current_tick()
                && records + 1 == reader.records_read()
                && bytes == offset
                && hash == rt.state_hash()
                && tail == tail_digest(log, config_end, tail_start, offset as usize);
            break;
        }
        match replayer.apply(record, offset, &mut progress)? {
            Step::Applied => {}
            Step::Ticked => tail_start = reader.offset() as usize,
            Step::Stopped => break,
        }
    }
    Ok(replayer.finish().1)
}

/// What applying one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// An input or a checkpoint, applied (and verified).
    Applied,
    /// A TickEnd: the tick ran and its hash matched.
    Ticked,
    /// The replay stops here: a divergence (in the report), or a Gap record.
    Stopped,
}

/// One replay in progress: a runtime built from a log's Config record, fed one record at a
/// time through the same input path as the live session, every record validated first and
/// every hash verified. `replay_trusting` drives one over a log in memory; the journal's
/// `verify` and `Runtime::recover` over the segments of a directory (the End record, which
/// only a whole log has, is the driver's to check).
pub(crate) struct Replayer {
    pub(crate) rt: Runtime,
    /// Whether the caller passed its own trust (then a refused module is E_REPLAY_UNTRUSTED).
    trusting: bool,
    applied: Applied,
    pub(crate) report: ReplayReport,
    /// The highest request id among the host's Send records (the envelope `send_request`
    /// writes), so a recovered runtime's next request gets the next id.
    pub(crate) last_request_id: u64,
}

impl Replayer {
    /// A runtime for `session` (a log's Config record), with `workers` threads, admitting what
    /// `trust` and the log both admit (`None`: what the log does); restored from `snapshot`
    /// when `base` names one (its tick, BLAKE3 and state hash, and the Base record's offset:
    /// the snapshot must be that one, at that tick and hash).
    pub(crate) fn start_from(
        session: &SessionConfig,
        workers: usize,
        trust: Option<&ReplayTrust>,
        base: Option<((u64, Digest, Digest), u64)>,
        snapshot: Option<&[u8]>,
    ) -> Result<Self> {
        let (trusted_keys, dev_mode) = match trust {
            None => (session.trusted_keys.clone(), session.dev_mode),
            Some(t) => (session.trusted_keys.iter().filter(|k| t.trusted_keys.contains(k)).copied().collect(), session.dev_mode && t.dev_mode),
        };
        let config = RuntimeConfig {
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
            max_log_bytes: RuntimeConfig::default().max_log_bytes,
            inference_batching: true,
            trusted_keys,
            dev_mode,
            policy: serde_json::from_str(&session.policy_json)
                .map_err(|e| LockstepError::ReplayCorrupt { offset: 16, reason: format!("Config record, field `policy`: {e}") })?,
            resource_policy: if session.resource_clamp { crate::runtime::ResourcePolicy::Clamp } else { crate::runtime::ResourcePolicy::Refuse },
            journal: None,
            worker_scaling: Default::default(),
        };
        let (base, base_offset) = match base {
            Some((b, offset)) => (Some(b), offset),
            None => (None, 0),
        };
        let rt = starting_runtime(config, session, base, base_offset, snapshot).map_err(|e| match e {
            // `workers` is the caller's; every other setting comes from the log.
            LockstepError::InvalidConfig { reason } if !reason.starts_with("workers") => {
                LockstepError::InvalidConfig { reason: format!("the log's Config record (byte 16): {reason}") }
            }
            other => other,
        })?;
        // A runtime restored from a snapshot goes on from the snapshot's request ids.
        let last_request_id = rt.next_request_id().saturating_sub(1);
        Ok(Self {
            rt,
            trusting: trust.is_some(),
            applied: Applied { infer_tick: None, infer_offset: 0, send_to_nobody: None, started: false, journal_seen: false },
            report: ReplayReport { ticks_verified: 0, checkpoints_verified: 0, final_hash: Digest::default(), divergence: None, complete: false },
            last_request_id,
        })
    }

    /// This replay starts from a snapshot taken part-way through the session (a journal's
    /// automatic snapshot), not at its start: a Journal record from here on is refused, as in a
    /// replay from the session's start (red team of issue 12: recovery and the cursor accepted
    /// one that `verify` refused).
    pub(crate) fn mid_session(mut self) -> Self {
        self.applied.started = true;
        self
    }

    /// Goes on replaying with `rt`, a replaying runtime restored from a snapshot this process
    /// took of an earlier replay (a journal cursor's cache): `trusting` as in `start_from`.
    pub(crate) fn from_runtime(rt: Runtime, trusting: bool) -> Self {
        let last_request_id = rt.next_request_id().saturating_sub(1);
        Self {
            rt,
            trusting,
            // Restored between ticks: no record of this tick applied yet.
            applied: Applied { infer_tick: None, infer_offset: 0, send_to_nobody: None, started: true, journal_seen: false },
            report: ReplayReport { ticks_verified: 0, checkpoints_verified: 0, final_hash: Digest::default(), divergence: None, complete: false },
            last_request_id,
        }
    }

    /// Validates `record` (read at `offset`) against the session so far, then applies it: an
    /// input goes through the runtime's input path, a TickEnd runs the tick and compares its
    /// hash, a Checkpoint compares a deep hash. A divergence is put in the report and stops the
    /// replay; a record that cannot be applied is an error naming `offset`. `progress` gets the
    /// ticks verified after each tick. Never an End record (the caller's).
    pub(crate) fn apply(&mut self, record: Record, offset: u64, progress: &mut dyn FnMut(u64)) -> Result<Step> {
        let (rt, applied, report) = (&mut self.rt, &mut self.applied, &mut self.report);
        validate(&record, offset, rt, applied)?;
        applied.started |= !matches!(record, Record::Journal { .. });
        applied.journal_seen |= matches!(record, Record::Journal { .. });
        let at = |e: LockstepError| match e {
            LockstepError::ReplayCorrupt { .. } => e,
            other => LockstepError::ReplayCorrupt { offset, reason: format!("recorded input no longer applies: {other}") },
        };
        match record {
            Record::Config(_) => unreachable!("refused by validate"),
            Record::End { .. } => return Err(corrupt(offset, "End", "tag", "an End record where none belongs")),
            Record::Module { hash, bytes } => {
                let loaded = rt.load_module(bytes).map_err(|e| match e {
                    LockstepError::Security(s) if self.trusting => LockstepError::ReplayUntrusted { hash: hash.to_hex(), reason: s.to_string() },
                    other => at(other),
                })?;
                debug_assert_eq!(loaded, hash, "validate checked the hash");
            }
            Record::Spawn { tick, module, agent, priority } => {
                let id = rt.spawn_with_priority(module, priority).map_err(|e| match e {
                    LockstepError::InvalidModule { .. } => LockstepError::ReplayMissingModule { hash: module.to_hex() },
                    other => at(other),
                })?;
                if id != agent {
                    report.divergence =
                        Some(Divergence { kind: DivergenceKind::SpawnId, tick, agent: Some(agent), expected: Digest::default(), actual: Digest::default() });
                    return Ok(Step::Stopped);
                }
            }
            // The same path as `send` and the inbound ring (recipient aside: ring input may
            // name any id, and routing dead-letters an unknown one).
            Record::Send { tick, to, kind, priority, payload } => {
                if to == 0 || to > rt.agent_count() as u64 {
                    applied.send_to_nobody = Some(tick);
                }
                if let Some((abi::request::Envelope::Request, id, _)) = abi::request::parse(&payload) {
                    self.last_request_id = self.last_request_id.max(id);
                }
                rt.accept_host_message(to, kind, priority, &payload).map_err(at)?
            }
            Record::Kill { agent, .. } => rt.kill(agent).map_err(at)?,
            Record::Shutdown { agent, .. } => rt.shutdown(agent).map_err(at)?,
            Record::TickEnd { tick, hash, agents } => {
                let r = rt.tick().map_err(at)?;
                if let Some(reason) = rt.take_inconsistent_answers() {
                    // Reported where the record is, or at this TickEnd when the tick has none.
                    let at = if applied.infer_tick == Some(tick) { applied.infer_offset } else { offset };
                    return Err(corrupt(at, "InferResults", "results", reason));
                }
                if let Some(reason) = rt.take_inconsistent_generation() {
                    return Err(corrupt(offset, "Generated", "results", reason));
                }
                if r.tick != tick || r.hash != hash {
                    let agent = first_differing_agent(&agents, &r.agent_digests);
                    report.divergence = Some(Divergence { kind: DivergenceKind::TickHash, tick, agent, expected: hash, actual: r.hash });
                    return Ok(Step::Stopped);
                }
                if agents != r.agent_digests {
                    return Err(corrupt(offset, "TickEnd", "agents", "the per-agent digests disagree with the tick hash, which matched"));
                }
                report.ticks_verified += 1;
                progress(report.ticks_verified);
                return Ok(Step::Ticked);
            }
            Record::AgentModel { slot, id } => {
                let got = rt.register_agent_model(&id).map_err(at)?;
                if got != slot {
                    return Err(corrupt(offset, "AgentModel", "slot", format!("{slot}, but the model registers as slot {got}")));
                }
            }
            Record::InferResults { tick, results } => {
                applied.infer_tick = Some(tick);
                applied.infer_offset = offset;
                rt.accept_recorded_answers(tick, results).map_err(at)?;
            }
            Record::Checkpoint { tick, hash, agents } => {
                let d = rt.deep_hash();
                if d.hash != hash {
                    let agent = first_differing_agent(&agents, &d.agents);
                    report.divergence = Some(Divergence { kind: DivergenceKind::DeepHash, tick, agent, expected: hash, actual: d.hash });
                    return Ok(Step::Stopped);
                }
                if agents != d.agents {
                    return Err(corrupt(offset, "Checkpoint", "agents", "the per-agent hashes disagree with the deep hash, which matched"));
                }
                report.checkpoints_verified += 1;
            }
            // A record the recorder could not write: what follows is not the whole story.
            Record::Gap { .. } => return Ok(Step::Stopped),
            Record::Base { .. } => return Err(corrupt(offset, "Base", "tag", "a Base record anywhere but right after the Config record")),
            // Identity only: nothing to apply.
            Record::Journal { .. } => {}
            Record::AgentLanguageModel { slot, tokens_per_tick, max_batch, id } => {
                let got = rt.register_recorded_language_model(&id, crate::runtime::AgentLmOptions { tokens_per_tick, max_batch }).map_err(at)?;
                if got != slot {
                    return Err(corrupt(offset, "AgentLanguageModel", "slot", format!("{slot}, but the model registers as slot {got}")));
                }
            }
            Record::Generated { tick, results } => rt.accept_recorded_generation(tick, results).map_err(at)?,
            // A runtime records only the changes it makes: an edge it already had, one it did
            // not have, a trigger the agent already had, were never written by one.
            Record::Connect { from, to, .. } => {
                if !rt.connect(from, to).map_err(at)? {
                    return Err(corrupt(offset, "Connect", "to", format!("the edge {from} → {to} exists already; a runtime records only the edges it adds")));
                }
            }
            Record::Disconnect { from, to, .. } => {
                if !rt.disconnect(from, to).map_err(at)? {
                    return Err(corrupt(offset, "Disconnect", "to", format!("there is no edge {from} → {to}; a runtime records only the edges it removes")));
                }
            }
            Record::Trigger { agent, trigger, .. } => {
                if rt.trigger(agent).map_err(at)? == trigger {
                    return Err(corrupt(
                        offset,
                        "Trigger",
                        "trigger",
                        format!("agent {agent}'s trigger is {} already; a runtime records only changes", trigger.as_str()),
                    ));
                }
                rt.set_trigger(agent, trigger).map_err(at)?;
            }
            Record::Slice { agent, fuel_per_tick, .. } => {
                if rt.fuel_per_tick(agent).map_err(at)? == fuel_per_tick {
                    return Err(corrupt(
                        offset,
                        "Slice",
                        "fuel_per_tick",
                        format!("agent {agent}'s slice is {fuel_per_tick} already; a runtime records only changes"),
                    ));
                }
                rt.set_fuel_per_tick(agent, fuel_per_tick).map_err(at)?;
            }
        }
        Ok(Step::Applied)
    }

    /// The runtime where the replay stopped, and the report (its final hash filled in).
    pub(crate) fn finish(mut self) -> (Runtime, ReplayReport) {
        self.report.final_hash = self.rt.state_hash();
        (self.rt, self.report)
    }
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
