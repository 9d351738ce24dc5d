//! Recovery and verification: the segments of a journal replayed in order through the replay
//! driver (`replay::Replayer`, the same validation and hash checks as `replay`), up to the last
//! complete tick; a torn final write cut off.

use std::path::{Path, PathBuf};

use super::lock::DirLock;
use super::read::{self, corrupt, in_file, list_segments, read_file, scan, segment_header_of, TornTail};
use super::{io_error, FsyncPolicy, JournalConfig, JournalSink, DEFAULT_SEGMENT_BYTES};
use crate::error::{LockstepError, Result};
use crate::recorder::{Appended, Recorder};
use crate::replay::{Divergence, DivergenceKind, ReplayReport, ReplayTrust, Replayer, Step};
use crate::replay_log::{LogReader, Record};
use crate::runtime::{Runtime, RuntimeConfig};

/// How `Runtime::recover` continues the session.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// Worker threads (results never depend on it).
    pub workers: usize,
    /// What the caller trusts: modules run only if both it and the journal's Config admit them
    /// (as `replay_trusting`). `None` trusts the journal's own settings (as `replay`: only for
    /// journals you wrote).
    pub trust: Option<ReplayTrust>,
    /// The recovered runtime's fsync policy (the journal goes on in the same directory).
    pub fsync: FsyncPolicy,
    /// The recovered runtime's segment size.
    pub segment_bytes: u64,
    /// Keep an in-memory log too (`replay_log`, `stop_recording`): the journal's records so
    /// far, then on; `E_INVALID_CONFIG` if they are more than `max_log_bytes`.
    pub record: bool,
    /// Bound of that in-memory log.
    pub max_log_bytes: usize,
    /// Events kept for `drain_events`.
    pub max_events: usize,
    /// Batch agents' inference requests per model.
    pub inference_batching: bool,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        let d = RuntimeConfig::default();
        Self {
            workers: d.workers,
            trust: None,
            fsync: FsyncPolicy::Group,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            record: false,
            max_log_bytes: d.max_log_bytes,
            max_events: d.max_events,
            inference_batching: d.inference_batching,
        }
    }
}

/// What `Runtime::recover` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The recovered runtime's tick: ticks run (its `current_tick()`); the last tick recovered
    /// is `tick - 1`. At least one more than the last tick reported durable before the crash.
    pub tick: u64,
    /// Ticks replayed from the journal (all of them, until snapshots: `tick - snapshot_tick`).
    pub ticks_replayed: u64,
    /// Checkpoints (deep hashes) verified on the way.
    pub checkpoints_verified: u64,
    /// Bytes cut off the end: a torn final write, and the records of a tick that never
    /// completed (inputs after the last tick).
    pub bytes_discarded: u64,
    /// Where the cut was made, if anything was cut.
    pub cut: Option<TornTail>,
    /// The snapshot recovery started from (always `None` until snapshots are journaled).
    pub snapshot_tick: Option<u64>,
    /// Segment files read.
    pub segments: u32,
    /// Records replayed (the Config record included).
    pub records: u64,
    /// Set when the lock was taken over from a process that did not close the journal.
    pub note: Option<String>,
}

/// What `verify` found: the replay's verdict and where the journal ends.
#[derive(Debug, Clone)]
pub struct JournalVerifyReport {
    /// The replay's verdict. `complete` is always false (a journal has no End record: it is
    /// the prefix of a session that may go on); `divergence` is the first tick or checkpoint
    /// that did not replay to its recorded hash.
    pub replay: ReplayReport,
    /// Ticks the journal holds whole (those a recovery would reach, unless a divergence stops it).
    pub tick: u64,
    /// Segment files read.
    pub segments: u32,
    /// Records read (the Config record included).
    pub records: u64,
    /// The tail after the last complete tick, which a recovery cuts off.
    pub cut: Option<TornTail>,
}

/// What replaying a journal's directory produced.
struct Replayed {
    replayer: Replayer,
    segments: u32,
    records: u64,
    /// Ticks whose records are whole.
    complete_ticks: u64,
    cut: Option<TornTail>,
    /// A last segment shorter than its header, to delete when recovering.
    torn_segment: Option<PathBuf>,
    /// The number the next segment gets.
    next_index: u32,
    /// The journal's records as one log (header, Config, ...), when asked for.
    stream: Option<Vec<u8>>,
    /// Where the replay stopped on a divergence or a Gap: the file and offset.
    stopped_at: Option<(PathBuf, u64)>,
    /// The session's checkpoint interval (the replay itself takes checkpoints from the log).
    checkpoint_interval_ticks: u64,
}

/// Replays every segment of `dir` in order, up to the last complete tick.
fn replay_dir(dir: &Path, workers: usize, trust: Option<&ReplayTrust>, keep_stream: bool, progress: &mut dyn FnMut(u64)) -> Result<Replayed> {
    let segments = list_segments(dir)?;
    let count = segments.len();
    let mut replayer: Option<Replayer> = None;
    let mut out_cut = None;
    let mut torn_segment = None;
    let mut records = 0u64;
    let mut complete_ticks = 0u64;
    let mut stream = keep_stream.then(Vec::new);
    let mut interval = 0;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == count;
        let bytes = read_file(&seg.path)?;
        let Some(header) = segment_header_of(&bytes, &seg.path, seg.index, count)? else {
            // A last segment whose creation a crash cut short: removed.
            out_cut = Some(TornTail { file: seg.path.clone(), offset: 0, bytes: bytes.len() as u64, torn_at: Some(0) });
            torn_segment = Some(seg.path.clone());
            break;
        };
        let s = scan(&bytes, &seg.path, &header, seg.index, last)?;
        complete_ticks += s.tally.ticks;
        if let Some(session) = &s.config {
            interval = session.checkpoint_interval_ticks;
            replayer = Some(Replayer::start(session, workers, trust).map_err(|e| in_file(&seg.path, e))?);
        }
        let Some(rp) = replayer.as_mut() else {
            return Err(corrupt(&seg.path, 0, "no Config record before this segment"));
        };
        // A continuation starts where the segment before it ended.
        if seg.index > 1 && (header.first_tick != rp.rt.current_tick() || header.prev_hash != rp.rt.state_hash()) {
            return Err(corrupt(
                &seg.path,
                16,
                format!(
                    "the segment header says it starts at tick {} after state {}, but the segments before it end at tick {} with state {}: a segment from another session, or one missing",
                    header.first_tick,
                    header.prev_hash,
                    rp.rt.current_tick(),
                    rp.rt.state_hash()
                ),
            ));
        }
        let usable = &bytes[..s.complete_end];
        let mut reader = LogReader::at(usable, header.len);
        loop {
            let offset = reader.offset();
            let Some(record) = reader.next_record().map_err(|e| in_file(&seg.path, e))? else {
                break;
            };
            records += 1;
            if matches!(record, Record::Config(_)) {
                continue;
            }
            if rp.apply(record, offset, progress).map_err(|e| in_file(&seg.path, e))? == Step::Stopped {
                if let Some(stream) = stream.as_mut() {
                    stream.extend_from_slice(&usable[if seg.index == 1 { 0 } else { header.len }..offset as usize]);
                }
                let r = replayer.ok_or_else(|| corrupt(&seg.path, 0, "no replay"))?;
                return Ok(Replayed {
                    replayer: r,
                    segments: seg.index,
                    records,
                    complete_ticks,
                    cut: None,
                    torn_segment: None,
                    next_index: count as u32 + 1,
                    stream,
                    stopped_at: Some((seg.path.clone(), offset)),
                    checkpoint_interval_ticks: interval,
                });
            }
        }
        if let Some(stream) = stream.as_mut() {
            stream.extend_from_slice(&usable[if seg.index == 1 { 0 } else { header.len }..]);
        }
        if last {
            out_cut = read::tail(&seg.path, &bytes, &s);
        }
    }
    let replayer = replayer.ok_or_else(|| corrupt(dir, 0, "no segment holds the session's Config record"))?;
    Ok(Replayed {
        replayer,
        segments: count as u32,
        records,
        complete_ticks,
        cut: out_cut,
        torn_segment,
        next_index: count as u32 + 1,
        stream,
        stopped_at: None,
        checkpoint_interval_ticks: interval,
    })
}

/// Verifies the journal in `dir` without changing it: every segment read, every record
/// validated and applied, every tick and checkpoint hash compared (like `replay_trusting`;
/// `trust` as there), up to the last complete tick. Takes no lock: a journal being written is
/// read as far as it is complete. `progress` gets the ticks verified after each tick.
pub fn verify(dir: &Path, workers: usize, trust: Option<&ReplayTrust>, mut progress: impl FnMut(u64)) -> Result<JournalVerifyReport> {
    let r = replay_dir(dir, workers, trust, false, &mut progress)?;
    let (_, report) = r.replayer.finish();
    Ok(JournalVerifyReport { replay: report, tick: r.complete_ticks, segments: r.segments, records: r.records, cut: r.cut })
}

/// The error a divergence met in recovery is: the journal does not replay.
fn diverged(d: &Divergence, at: &(PathBuf, u64)) -> LockstepError {
    let what = match d.kind {
        DivergenceKind::TickHash => format!("tick {} does not replay to its recorded hash (expected {}, got {})", d.tick, d.expected, d.actual),
        DivergenceKind::DeepHash => format!("the checkpoint of tick {} does not replay to its recorded deep hash", d.tick),
        DivergenceKind::SpawnId => format!("a spawn in tick {} got another agent id than recorded", d.tick),
    };
    let agent = d.agent.map(|a| format!(" (agent {a} differs first)")).unwrap_or_default();
    corrupt(
        &at.0,
        at.1,
        format!("{what}{agent}: the journal was altered, or written by a runtime that computes differently; nothing after it can be recovered"),
    )
}

impl Runtime {
    /// Opens the journal a killed (or closed) runtime left in `dir` and continues its session:
    /// takes the journal's lock (`E_JOURNAL_LOCKED` if a live runtime holds it), validates every
    /// segment, replays every record through the replay driver, verifying every tick and
    /// checkpoint hash, up to the last complete tick; cuts off a torn final write and the
    /// records of a tick that never completed (truncating the last segment), and returns a
    /// running runtime that journals on into the same directory (a new segment), with a report.
    ///
    /// The recovered runtime has the session's settings (seed, fuel, memory, trust ∩ `options`'
    /// trust...) and `options`' workers, fsync policy and limits; it reaches at least the last
    /// tick that was durable before the crash. What its agents sent to the host, the events and
    /// dead letters of the replayed ticks are not delivered again; models must be loaded again
    /// (docs/JOURNAL.md, "Recovery").
    ///
    /// Damage a torn final write cannot explain is `E_JOURNAL_CORRUPT` naming the file and
    /// offset, and the journal is left as it was.
    pub fn recover(dir: impl AsRef<Path>, options: RecoverOptions) -> Result<(Runtime, RecoveryReport)> {
        Self::recover_with_progress(dir, options, |_| {})
    }

    /// `recover`, calling `progress` with the ticks replayed after each tick.
    pub fn recover_with_progress(dir: impl AsRef<Path>, options: RecoverOptions, mut progress: impl FnMut(u64)) -> Result<(Runtime, RecoveryReport)> {
        let dir = dir.as_ref();
        std::fs::metadata(dir).map_err(|e| io_error(dir, "opening the journal directory", &e))?;
        // A directory without a journal is E_JOURNAL_NOT_FOUND before the lock is taken, so a
        // mistaken path is left as it was (no LOCK file). Listed again under the lock.
        list_segments(dir)?;
        let lock = DirLock::acquire(dir)?;
        let journal = JournalConfig { dir: dir.to_path_buf(), fsync: options.fsync, segment_bytes: options.segment_bytes };
        super::check_segment_bytes(options.segment_bytes)?;
        let r = replay_dir(dir, options.workers, options.trust.as_ref(), options.record, &mut progress)?;
        let last_request_id = r.replayer.last_request_id;
        let (mut rt, report) = r.replayer.finish();
        if let Some(d) = &report.divergence {
            return Err(diverged(d, r.stopped_at.as_ref().unwrap_or(&(dir.to_path_buf(), 0))));
        }
        if let Some((file, offset)) = &r.stopped_at {
            return Err(corrupt(file, *offset, "a Gap record (a record too large to write): the session cannot be recovered past it"));
        }
        // The replay agreed: cut the tail, then continue in a new segment.
        if let Some(cut) = &r.cut {
            if r.torn_segment.as_ref() == Some(&cut.file) {
                std::fs::remove_file(&cut.file).map_err(|e| io_error(&cut.file, "removing a torn segment", &e))?;
            } else {
                let f = std::fs::OpenOptions::new().write(true).open(&cut.file).map_err(|e| io_error(&cut.file, "opening the last segment to cut it", &e))?;
                f.set_len(cut.offset).and_then(|()| f.sync_all()).map_err(|e| io_error(&cut.file, "cutting the torn tail", &e))?;
            }
        }
        let next_index = if r.torn_segment.is_some() { r.next_index - 1 } else { r.next_index };
        // What was recovered is what the journal holds from now on: on stable storage before the
        // session goes on (the crashed process may have left it in the page cache only), so the
        // recovered runtime's ticks are durable from its first report. Not with 'off'.
        let tick = rt.current_tick();
        let durable = if options.fsync == FsyncPolicy::Off {
            None
        } else {
            for seg in (1..next_index).map(|n| dir.join(super::segment_file_name(n))) {
                std::fs::File::open(&seg).and_then(|f| f.sync_all()).map_err(|e| io_error(&seg, "syncing a recovered segment", &e))?;
            }
            super::writer::sync_dir(dir)?;
            tick.checked_sub(1)
        };
        let note = lock.took_over.clone();
        if let Some(n) = &note {
            tracing::warn!(target: "lockstep::journal", "{n}");
        }
        let mut recorder = Recorder::new();
        if let Some(stream) = r.stream {
            let len = stream.len();
            if recorder.start_memory_from(stream, options.max_log_bytes) == Appended::Cut {
                return Err(LockstepError::InvalidConfig {
                    reason: format!(
                        "the journal's log so far is {len} bytes, more than maxLogBytes ({}): recover with record: false (the journal is the log) or a larger maxLogBytes",
                        options.max_log_bytes
                    ),
                });
            }
        }
        let sink = JournalSink::resume(&journal, lock, next_index, tick, rt.state_hash(), durable)?;
        recorder.attach_journal(sink);
        let session = rt.config().clone();
        let config = RuntimeConfig {
            checkpoint_interval_ticks: r.checkpoint_interval_ticks,
            record: options.record,
            max_events: options.max_events,
            max_log_bytes: options.max_log_bytes,
            inference_batching: options.inference_batching,
            journal: Some(journal),
            ..session
        };
        rt.resume_recovered(config, recorder, last_request_id);
        Ok((
            rt,
            RecoveryReport {
                tick,
                ticks_replayed: report.ticks_verified,
                checkpoints_verified: report.checkpoints_verified,
                bytes_discarded: r.cut.as_ref().map_or(0, |c| c.bytes),
                cut: r.cut,
                snapshot_tick: None,
                segments: r.segments,
                records: r.records,
                note,
            },
        ))
    }
}
