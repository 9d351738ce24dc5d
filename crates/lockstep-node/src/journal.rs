//! The journal (docs/JOURNAL.md) in the binding: `NativeRuntime.recover`'s options and report
//! (the factory itself is in lib.rs), and the log tools behind `npx lockstep log inspect|verify`:
//! `inspectLog` (counts, no replay) and `verifyJournal` (a replay of a journal directory).

use std::path::Path;

use lockstep_core::{self as core, journal as j, RuntimeConfig};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::convert::{self, keys_arg, Divergence, InferenceOptions, ReplayReport, MAX_SAFE};
use crate::error::{invalid_config, to_napi, BindError, Code, Result};

/// Progress is reported every this many ticks (as `replay`).
const PROGRESS_EVERY: u64 = 100;

/// Options of `Runtime.recover(dir, options)`; index.js checks them first.
#[napi(object)]
#[derive(Default)]
pub struct RecoverOptions {
    pub workers: Option<f64>,
    /// Hex public keys the caller trusts (intersected with the journal's).
    pub trusted_keys: Option<Vec<String>>,
    /// Admit unsigned modules, if the journal's session was in devMode too.
    pub dev_mode: Option<bool>,
    /// The recovered runtime's fsync policy: "tick", "group" (default) or "off".
    pub fsync: Option<String>,
    pub segment_bytes: Option<f64>,
    /// The recovered runtime's ticks between automatic snapshots (default 1000; 0: none).
    pub snapshot_interval_ticks: Option<f64>,
    /// Keep an in-memory log as well (the journal's records so far, then on).
    pub record: Option<bool>,
    pub max_log_bytes: Option<f64>,
    pub max_events: Option<f64>,
    pub inference_batching: Option<bool>,
    pub inference: Option<InferenceOptions>,
}

/// The core's recovery options from the binding's.
pub fn recover_options(o: &RecoverOptions) -> Result<core::RecoverOptions> {
    let d = RuntimeConfig::default();
    let uint = |name: &str, v: Option<f64>, min: u64, max: u64, default: u64| -> Result<u64> {
        match v {
            None => Ok(default),
            Some(x) if x.is_finite() && x.fract() == 0.0 && x >= min as f64 && x <= max as f64 => Ok(x as u64),
            Some(x) => Err(invalid_config(format!("option {name} must be an integer in {min}..={max}, got {x}"))),
        }
    };
    Ok(core::RecoverOptions {
        workers: uint("workers", o.workers, 1, 256, d.workers as u64)? as usize,
        trust: Some(core::ReplayTrust {
            trusted_keys: keys_arg("options.trustedKeys", o.trusted_keys.as_deref().unwrap_or_default())?,
            dev_mode: o.dev_mode.unwrap_or(false),
        }),
        fsync: convert::fsync_policy("fsync", o.fsync.as_deref())?,
        segment_bytes: convert::segment_bytes("segmentBytes", o.segment_bytes)?,
        snapshot_interval_ticks: convert::snapshot_interval_ticks("snapshotIntervalTicks", o.snapshot_interval_ticks)?,
        record: o.record.unwrap_or(false),
        max_log_bytes: uint("maxLogBytes", o.max_log_bytes, 1 << 20, MAX_SAFE, d.max_log_bytes as u64)? as usize,
        max_events: uint("maxEvents", o.max_events, 0, u32::MAX as u64, d.max_events as u64)? as usize,
        inference_batching: o.inference_batching.unwrap_or(d.inference_batching),
    })
}

/// The tail recovery cuts off: where, and how much.
#[napi(object)]
pub struct TornTail {
    pub file: String,
    /// The end of the last complete tick in that file.
    pub offset: i64,
    /// Bytes after it.
    pub bytes: i64,
    /// Where an unreadable (torn) write begins, if the tail is not only whole records.
    pub torn_at: Option<i64>,
}

impl From<&j::TornTail> for TornTail {
    fn from(t: &j::TornTail) -> Self {
        TornTail { file: t.file.display().to_string(), offset: t.offset as i64, bytes: t.bytes as i64, torn_at: t.torn_at.map(|o| o as i64) }
    }
}

/// What `Runtime.recover` did.
#[napi(object)]
pub struct RecoveryReport {
    /// The recovered runtime's currentTick (ticks run); the last tick recovered is tick - 1.
    pub tick: i64,
    pub ticks_replayed: i64,
    pub checkpoints_verified: i64,
    pub bytes_discarded: i64,
    pub cut: Option<TornTail>,
    /// The snapshot recovery started from (none: the journal's beginning).
    pub snapshot_tick: Option<i64>,
    /// Newer snapshots it could not use, newest first (left in place).
    pub snapshots_skipped: Vec<SnapshotProblem>,
    /// Files removed: half-written snapshots, and snapshots past the recovered tick.
    pub snapshots_removed: Vec<String>,
    pub segments: u32,
    pub records: i64,
    /// Set when the journal's lock was taken over from a process that did not close it.
    pub note: Option<String>,
}

impl From<&core::RecoveryReport> for RecoveryReport {
    fn from(r: &core::RecoveryReport) -> Self {
        RecoveryReport {
            tick: r.tick as i64,
            ticks_replayed: r.ticks_replayed as i64,
            checkpoints_verified: r.checkpoints_verified as i64,
            bytes_discarded: r.bytes_discarded as i64,
            cut: r.cut.as_ref().map(TornTail::from),
            snapshot_tick: r.snapshot_tick.map(|t| t as i64),
            snapshots_skipped: r
                .snapshots_skipped
                .iter()
                .map(|s| SnapshotProblem { file: s.file.display().to_string(), tick: s.tick as i64, problem: Some(s.reason.clone()) })
                .collect(),
            snapshots_removed: r.snapshots_removed.iter().map(|f| f.display().to_string()).collect(),
            segments: r.segments,
            records: r.records as i64,
            note: r.note.clone(),
        }
    }
}

/// A snapshot file of a journal, and what is wrong with it (`problem`: none when it is whole
/// and the session's state at its tick).
#[napi(object)]
pub struct SnapshotProblem {
    pub file: String,
    pub tick: i64,
    pub problem: Option<String>,
}

/// One file `inspectLog` read.
#[napi(object)]
pub struct LogFile {
    pub path: String,
    pub bytes: i64,
    pub records: i64,
    pub first_tick: i64,
    pub ticks: i64,
}

/// The session's settings, from the log's Config record.
#[napi(object)]
pub struct SessionInfo {
    pub seed: f64,
    pub fuel_per_call: f64,
    pub memory_limit_bytes: f64,
    pub max_agents: u32,
    pub deadline_ms: f64,
    pub checkpoint_interval_ticks: f64,
    pub dev_mode: bool,
    pub trusted_keys: Vec<String>,
    /// "clamp" or "refuse".
    pub resource_policy: String,
    /// The operator policy (capabilities), as JSON.
    pub policy_json: String,
}

/// What a log file or journal directory holds (`inspectLog`).
#[napi(object)]
pub struct LogSummary {
    pub journal: bool,
    pub files: Vec<LogFile>,
    pub bytes: i64,
    pub records: i64,
    pub ticks: i64,
    pub first_tick: Option<i64>,
    pub last_tick: Option<i64>,
    pub agents: i64,
    pub modules: i64,
    pub models: i64,
    pub sends: i64,
    pub kills: i64,
    pub shutdowns: i64,
    pub checkpoints: i64,
    pub infer_results: i64,
    /// Changes of the workflow graph (Connect, Disconnect and Trigger records).
    pub graph_changes: i64,
    pub gaps: i64,
    pub ended: bool,
    pub torn: Option<TornTail>,
    pub config: Option<SessionInfo>,
    /// A journal's snapshot files.
    pub snapshots: Vec<SnapshotFile>,
    /// The journal's id (hex).
    pub id: Option<String>,
    /// Where the session was forked from.
    pub lineage: Option<crate::cursor::LineageInfo>,
}

/// A snapshot file of a journal.
#[napi(object)]
pub struct SnapshotFile {
    pub tick: i64,
    pub bytes: i64,
}

/// Reads a replay log file or a journal directory and counts what it holds (no replay).
#[napi(catch_unwind)]
pub fn inspect_log(path: String) -> Result<LogSummary> {
    let s = j::inspect(Path::new(&path)).map_err(to_napi)?;
    let n = |v: u64| v as i64;
    Ok(LogSummary {
        journal: s.journal,
        files: s
            .files
            .iter()
            .map(|f| LogFile { path: f.path.display().to_string(), bytes: n(f.bytes), records: n(f.records), first_tick: n(f.first_tick), ticks: n(f.ticks) })
            .collect(),
        bytes: n(s.bytes),
        records: n(s.records),
        ticks: n(s.ticks),
        first_tick: s.first_tick.map(n),
        last_tick: s.last_tick.map(n),
        agents: n(s.agents),
        modules: n(s.modules),
        models: n(s.models),
        sends: n(s.sends),
        kills: n(s.kills),
        shutdowns: n(s.shutdowns),
        checkpoints: n(s.checkpoints),
        infer_results: n(s.infer_results),
        graph_changes: n(s.graph_changes),
        gaps: n(s.gaps),
        ended: s.ended,
        torn: s.torn.as_ref().map(TornTail::from),
        snapshots: s.snapshots.iter().map(|&(tick, bytes)| SnapshotFile { tick: n(tick), bytes: n(bytes) }).collect(),
        id: s.id.map(|id| core::security::hex(&id)),
        lineage: s.lineage.map(|l| crate::cursor::LineageInfo { journal: l.journal.map(|j| core::security::hex(&j)), tick: n(l.tick), hash: l.hash.to_hex() }),
        config: s.config.map(|c| SessionInfo {
            seed: c.seed as f64,
            fuel_per_call: c.fuel_per_call as f64,
            memory_limit_bytes: c.memory_limit_bytes as f64,
            max_agents: c.max_agents,
            deadline_ms: c.deadline_ms as f64,
            checkpoint_interval_ticks: c.checkpoint_interval_ticks as f64,
            dev_mode: c.dev_mode,
            trusted_keys: c.trusted_keys.iter().map(|k| core::security::hex(k)).collect(),
            resource_policy: if c.resource_clamp { "clamp".into() } else { "refuse".into() },
            policy_json: c.policy_json,
        }),
    })
}

/// What `verifyJournal` found.
#[napi(object)]
pub struct JournalVerifyReport {
    /// No divergence in what was verified.
    pub ok: bool,
    /// Always false: a journal has no End record (it is a session that may go on).
    pub complete: bool,
    pub ticks_verified: i64,
    pub checkpoints_verified: i64,
    pub final_hash: String,
    pub divergence: Option<Divergence>,
    /// Ticks the journal holds whole.
    pub tick: i64,
    pub segments: u32,
    pub records: i64,
    /// The tail after the last complete tick (a recovery cuts it off).
    pub cut: Option<TornTail>,
    /// Every snapshot file, checked against the replayed state at its tick.
    pub snapshots: Vec<SnapshotProblem>,
}

/// Replays the journal in `dir` and verifies every tick and checkpoint, without changing it
/// (no lock taken: a journal being written is read as far as it is complete). Trust as in
/// `replay`. `on_progress(ticksVerified)` every 100 ticks, on this thread.
#[napi(catch_unwind)]
pub fn verify_journal(
    dir: String,
    workers: Option<u32>,
    on_progress: Option<Function<f64, ()>>,
    trusted_keys: Vec<String>,
    dev_mode: bool,
) -> Result<JournalVerifyReport> {
    let trust = core::ReplayTrust { trusted_keys: keys_arg("options.trustedKeys", &trusted_keys)?, dev_mode };
    let workers = workers.map(|w| w as usize).unwrap_or_else(|| RuntimeConfig::default().workers);
    let mut callback_error = None;
    let v = j::verify(Path::new(&dir), workers, Some(&trust), |ticks| {
        if ticks % PROGRESS_EVERY == 0 && callback_error.is_none() {
            if let Some(f) = on_progress.as_ref() {
                callback_error = f.call(ticks as f64).err();
            }
        }
    })
    .map_err(to_napi)?;
    if let Some(e) = callback_error {
        return Err(progress_failed(e));
    }
    let r = ReplayReport::from(v.replay);
    Ok(JournalVerifyReport {
        ok: r.ok,
        complete: false,
        ticks_verified: r.ticks_verified,
        checkpoints_verified: r.checkpoints_verified,
        final_hash: r.final_hash,
        divergence: r.divergence,
        tick: v.tick as i64,
        segments: v.segments,
        records: v.records as i64,
        cut: v.cut.as_ref().map(TornTail::from),
        snapshots: v
            .snapshots
            .iter()
            .map(|c| SnapshotProblem { file: c.file.display().to_string(), tick: c.tick as i64, problem: c.problem.clone() })
            .collect(),
    })
}

/// A progress callback that threw into the binding (index.js's relay never lets it): a bug.
pub fn progress_failed(e: impl std::fmt::Display) -> napi::Error<Code> {
    to_napi(BindError { code: "E_INTERNAL", message: format!("internal error (a lockstep bug; please report it): onProgress threw into the binding: {e}") })
}
