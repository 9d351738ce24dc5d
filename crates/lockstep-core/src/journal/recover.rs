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
    /// The recovered runtime's ticks between automatic snapshots (0: none).
    pub snapshot_interval_ticks: u64,
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
            snapshot_interval_ticks: super::DEFAULT_SNAPSHOT_INTERVAL_TICKS,
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
    /// Ticks replayed from the journal: `tick - snapshot_tick` (or all of them).
    pub ticks_replayed: u64,
    /// Checkpoints (deep hashes) verified on the way.
    pub checkpoints_verified: u64,
    /// Bytes cut off the end: a torn final write, and the records of a tick that never
    /// completed (inputs after the last tick).
    pub bytes_discarded: u64,
    /// Where the cut was made, if anything was cut.
    pub cut: Option<TornTail>,
    /// The snapshot recovery started from (`None`: the journal's beginning).
    pub snapshot_tick: Option<u64>,
    /// Newer snapshots it could not use (damaged, of another state), newest first: recovery
    /// fell back past them. They are left in place.
    pub snapshots_skipped: Vec<SkippedSnapshot>,
    /// Files removed: snapshots a crash left half-written (`.tmp`), and snapshots past the
    /// recovered tick.
    pub snapshots_removed: Vec<PathBuf>,
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
    /// Every snapshot file the replay reached, checked against the replayed state.
    pub snapshots: Vec<SnapshotCheck>,
}

/// A snapshot file recovery or a cursor did not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSnapshot {
    /// The snapshot file.
    pub file: PathBuf,
    /// Its tick (from its name).
    pub tick: u64,
    /// Why it was not used: damaged (with the offset), of another session, past the journal's
    /// last complete tick...
    pub reason: String,
}

/// What replaying a journal's directory produced.
struct Replayed {
    replayer: Replayer,
    segments: u32,
    records: u64,
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
    /// The snapshot the replay started from, if it did not start at the journal's beginning.
    snapshot_tick: Option<u64>,
    /// Newer snapshots that could not be used.
    skipped: Vec<SkippedSnapshot>,
    /// Ticks the journal holds whole (as far as it was read).
    complete_ticks: u64,
    /// The journal's id and lineage.
    id: [u8; 16],
}

/// Where a replay of a journal starts: a runtime (new, or restored from a snapshot) and the
/// segment (index into the list) and byte offset of the first record to apply.
struct StartPoint {
    replayer: Replayer,
    segment: usize,
    offset: usize,
    snapshot_tick: Option<u64>,
}

/// The session's Config record and what follows it in segment 1: a Base record (a fork's,
/// or a restored runtime's journal: the snapshot it starts from) and the Journal record.
pub(crate) struct SessionStart {
    pub(crate) session: crate::replay_log::SessionConfig,
    /// (tick, snapshot BLAKE3, state hash) and the record's offset.
    pub(crate) base: Option<((u64, crate::error::Digest, crate::error::Digest), u64)>,
    pub(crate) journal: Option<([u8; 16], Option<crate::replay_log::Lineage>)>,
    /// Where the Config record ends.
    config_end: usize,
}

impl SessionStart {
    /// The journal's id: its Journal record's, or for a journal written before there were
    /// ids, one derived from its header and Config record (in `first`, segment 1's bytes).
    pub(crate) fn id(&self, first: &[u8]) -> [u8; 16] {
        if let Some((id, _)) = self.journal {
            return id;
        }
        let prefix = &first[..self.config_end.min(first.len())];
        let mut id = [0u8; 16];
        id.copy_from_slice(&blake3::hash(prefix).as_bytes()[..16]);
        id
    }
}

/// Reads the records that start segment 1 (`bytes`, the file `path`).
pub(crate) fn session_start(bytes: &[u8], path: &Path) -> Result<SessionStart> {
    let mut reader = LogReader::new(bytes).map_err(|e| in_file(path, e))?;
    let Some(Record::Config(session)) = reader.next_record().map_err(|e| in_file(path, e))? else {
        return Err(corrupt(path, crate::replay_log::HEADER_BYTES as u64, "the first record must be the session's Config record"));
    };
    let mut start = SessionStart { session, base: None, journal: None, config_end: reader.offset() as usize };
    for _ in 0..2 {
        let offset = reader.offset();
        match reader.next_record() {
            Ok(Some(Record::Base { tick, snapshot, hash })) if start.base.is_none() && start.journal.is_none() => {
                start.base = Some(((tick, snapshot, hash), offset))
            }
            Ok(Some(Record::Journal { id, parent })) if start.journal.is_none() => start.journal = Some((id, parent)),
            // Anything else (a torn record too) is the replay's to read and report.
            _ => break,
        }
    }
    Ok(start)
}

/// The error of restoring the snapshot a journal starts from (its Base record's, `file`): one
/// that does not restore, or is not the one the Base record names, is the journal's damage,
/// named by its file (red team of issue 12: "the snapshot given hashes to ...", naming no file,
/// though nobody gave one).
pub(crate) fn base_snapshot_error(file: &Path, tick: u64, e: LockstepError) -> LockstepError {
    let (offset, what) = match e {
        LockstepError::SnapshotMismatch { differences } => {
            // Nobody "gave" it: say which bytes and which record disagree.
            let said = differences
                .replace("the snapshot given hashes to", "its bytes hash to")
                .replace("; the log starts from the snapshot", ", the Base record names");
            (0, format!("{said} (the file was altered or damaged)"))
        }
        LockstepError::SnapshotCorrupt { offset, reason } => (offset, reason),
        e @ LockstepError::SnapshotVersion { .. } => (0, e.to_string()),
        other => return other,
    };
    corrupt(file, offset, format!("the journal starts from this snapshot (its Base record names tick {tick}), which does not restore: {what}"))
}

/// Snapshot files by tick.
pub(crate) type SnapshotFiles = Vec<(u64, PathBuf)>;

/// The snapshot files of `dir`, by tick ascending, and leftovers of interrupted writes (regular
/// files only: anything else is ignored, as files that are not the journal's are).
pub(crate) fn list_snapshots(dir: &Path) -> Result<(SnapshotFiles, Vec<PathBuf>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, "reading the journal directory", &e))?;
    let (mut found, mut tmp) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "reading the journal directory", &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only regular files (a link to one included): a directory, a FIFO or a device named
        // like a snapshot is no snapshot of the journal's, and reading one could block or
        // never end (red team of issue 12).
        if !std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            continue;
        }
        if let Some(tick) = super::parse_snapshot_name(&name) {
            found.push((tick, entry.path()));
        } else if name.strip_suffix(super::TMP_SUFFIX).and_then(super::parse_snapshot_name).is_some() {
            tmp.push(entry.path());
        }
    }
    found.sort();
    Ok((found, tmp))
}

/// The first tick segment `path` holds records of (from its header alone), if it reads.
fn first_tick_of(path: &Path, index: u32, base_tick: u64) -> Option<u64> {
    if index == 1 {
        return Some(base_tick);
    }
    use std::io::Read;
    let mut head = vec![0u8; crate::replay_log::HEADER_BYTES + super::CONTINUATION_HEADER_BYTES];
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).ok()?;
    match read::segment_header(&head, path, index) {
        Ok(Some(h)) => Some(h.first_tick),
        _ => None,
    }
}

/// Where tick `tick`'s records start in a segment (`bytes`, read up to `complete_end`), and the
/// state hash before it: right after TickEnd(`tick - 1`), or the segment's start.
pub(crate) fn tick_start(bytes: &[u8], header: &read::SegmentHeader, complete_end: usize, tick: u64) -> Option<(usize, crate::error::Digest)> {
    if header.first_tick == tick && header.len > crate::replay_log::HEADER_BYTES {
        return Some((header.len, header.prev_hash));
    }
    let mut reader = LogReader::at(&bytes[..complete_end], header.len);
    while let Ok(Some(record)) = reader.next_record() {
        if let Record::TickEnd { tick: t, hash, .. } = record {
            if t + 1 == tick {
                return Some((reader.offset() as usize, hash));
            }
            if t >= tick {
                return None;
            }
        }
    }
    None
}

/// Checks a replay just restored from the snapshot of `tick` against the journal's Checkpoint
/// record of that tick, when one is where the tick's records start (`offset` in `bytes`, the
/// segment's complete ticks): the journal writes one with every automatic snapshot, so a
/// snapshot whose memory is not the session's (the tick hash chain covers no memory) is found
/// before it is used. Returns where the records after it start; `E_SNAPSHOT_MISMATCH` if the
/// deep hashes differ.
pub(crate) fn check_snapshot_memory(rp: &mut Replayer, bytes: &[u8], offset: usize, tick: u64) -> Result<usize> {
    let mut reader = LogReader::at(bytes, offset);
    let Ok(Some(record @ Record::Checkpoint { tick: t, .. })) = reader.next_record() else {
        return Ok(offset);
    };
    if t != tick {
        return Ok(offset);
    }
    match rp.apply(record, offset as u64, &mut |_| {})? {
        Step::Stopped => {
            let d = rp.report.divergence.take();
            let agent = d.as_ref().and_then(|d| d.agent).map(|a| format!(" (agent {a} differs first)")).unwrap_or_default();
            Err(LockstepError::SnapshotMismatch {
                differences: format!(
                    "its memory is not the journal's state at tick {tick}: its deep hash {} is not the journal's checkpoint {}{agent}",
                    d.as_ref().map(|d| d.actual.to_hex()).unwrap_or_default(),
                    d.as_ref().map(|d| d.expected.to_hex()).unwrap_or_default()
                ),
            })
        }
        _ => Ok(reader.offset() as usize),
    }
}

/// Tries the snapshots of `dir` newest first (those after the journal's start, but those of the
/// ticks in `exclude`): the first whose file restores, whose tick the journal holds whole, whose
/// state hash is the journal's at that tick, and whose memory is the journal's checkpoint of
/// that tick where it has one. Damage in a snapshot only skips it; damage in a segment is the
/// journal's error.
fn start_from_snapshot(
    dir: &Path,
    segments: &[read::Segment],
    start: &SessionStart,
    workers: usize,
    trust: Option<&ReplayTrust>,
    exclude: &[u64],
    skipped: &mut Vec<SkippedSnapshot>,
) -> Result<Option<(StartPoint, Vec<u8>)>> {
    let base_tick = start.base.map_or(0, |((t, _, _), _)| t);
    let (snapshots, _) = list_snapshots(dir)?;
    let firsts: Vec<Option<u64>> = segments.iter().map(|s| first_tick_of(&s.path, s.index, base_tick)).collect();
    for (tick, file) in snapshots.into_iter().rev() {
        if tick <= base_tick || exclude.contains(&tick) {
            continue;
        }
        let skip = |reason: String| SkippedSnapshot { file: file.clone(), tick, reason };
        // The segment holding the records of `tick`: the last one starting at or before it.
        let Some(k) = firsts.iter().rposition(|f| f.is_some_and(|f| f <= tick)) else {
            skipped.push(skip("no segment holds its tick".into()));
            continue;
        };
        let seg = &segments[k];
        let bytes = read_file(&seg.path)?;
        let Some(header) = segment_header_of(&bytes, &seg.path, seg.index, segments.len())? else {
            skipped.push(skip(format!("its tick is in {}, a segment whose creation was cut short", seg.path.display())));
            continue;
        };
        let s = scan(&bytes, &seg.path, &header, seg.index, k + 1 == segments.len())?;
        let Some((offset, hash)) = tick_start(&bytes, &header, s.complete_end, tick) else {
            skipped.push(skip("past the journal's last complete tick (the ticks before it were not written)".into()));
            continue;
        };
        let snapshot = match read::read_regular(&file) {
            Ok(b) => b,
            Err(e) => {
                skipped.push(skip(format!("cannot be read: {e}")));
                continue;
            }
        };
        let base = ((tick, crate::error::Digest(*blake3::hash(&snapshot).as_bytes()), hash), 0);
        let started = Replayer::start_from(&start.session, workers, trust, Some(base), Some(&snapshot)).and_then(|replayer| {
            let mut replayer = replayer.mid_session();
            let offset = check_snapshot_memory(&mut replayer, &bytes[..s.complete_end], offset, tick)?;
            Ok((replayer, offset))
        });
        match started {
            Ok((replayer, offset)) => return Ok(Some((StartPoint { replayer, segment: k, offset, snapshot_tick: Some(tick) }, bytes))),
            Err(e @ (LockstepError::SnapshotUntrusted { .. } | LockstepError::ReplayUntrusted { .. })) => return Err(e),
            Err(LockstepError::ReplayCorrupt { reason, .. }) => skipped.push(skip(format!("not the journal's state at tick {tick}: {reason}"))),
            Err(e) => skipped.push(skip(e.to_string())),
        }
    }
    Ok(None)
}

/// Replays every segment of `dir` in order, up to the last complete tick: from the newest
/// usable snapshot (but those of the ticks in `exclude`) when `from_snapshot` is given, else
/// from the journal's start. `started` is set to the snapshot's tick once it is chosen, so a
/// caller knows where a failed replay started.
#[allow(clippy::too_many_arguments)]
fn replay_dir(
    dir: &Path,
    workers: usize,
    trust: Option<&ReplayTrust>,
    keep_stream: bool,
    from_snapshot: Option<&[u64]>,
    started: &mut Option<u64>,
    mut check: Option<&mut Vec<SnapshotCheck>>,
    progress: &mut dyn FnMut(u64),
) -> Result<Replayed> {
    let segments = list_segments(dir)?;
    let count = segments.len();
    let first = read_file(&segments[0].path)?;
    if segment_header_of(&first, &segments[0].path, 1, count)?.is_none() {
        return Err(corrupt(&segments[0].path, 0, format!("{} bytes, shorter than its header", first.len())));
    }
    let start = session_start(&first, &segments[0].path)?;
    let id = start.id(&first);
    let interval = start.session.checkpoint_interval_ticks;
    let mut skipped = Vec::new();
    let found = match from_snapshot {
        Some(exclude) => start_from_snapshot(dir, &segments, &start, workers, trust, exclude, &mut skipped)?,
        None => None,
    };
    *started = found.as_ref().and_then(|(p, _)| p.snapshot_tick);
    let (point, mut first_bytes) = match found {
        Some((p, bytes)) => (p, Some(bytes)),
        None => {
            // From the journal's beginning: tick 0, or the snapshot a Base record names.
            let snapshot = match start.base {
                Some(((tick, _, _), _)) => {
                    let file = dir.join(super::snapshot_file_name(tick));
                    Some(read::read_regular(&file).map_err(|e| {
                        corrupt(&file, 0, format!("the journal starts from this snapshot (its Base record names tick {tick}), which cannot be read: {e}"))
                    })?)
                }
                None => None,
            };
            let replayer = Replayer::start_from(&start.session, workers, trust, start.base, snapshot.as_deref()).map_err(|e| match start.base {
                Some(((tick, _, _), _)) => base_snapshot_error(&dir.join(super::snapshot_file_name(tick)), tick, e),
                None => in_file(&segments[0].path, e),
            })?;
            (StartPoint { replayer, segment: 0, offset: 0, snapshot_tick: None }, Some(first))
        }
    };
    let StartPoint { replayer: mut rp, segment: from, offset: from_offset, snapshot_tick } = point;
    let mut complete_ticks = rp.rt.current_tick();
    // `verify`: each snapshot file is compared with the replay when it reaches its tick.
    let mut to_check: std::collections::VecDeque<(u64, PathBuf)> = match check.is_some() {
        true => list_snapshots(dir)?.0.into_iter().filter(|(t, _)| *t > rp.rt.current_tick()).collect(),
        false => Default::default(),
    };
    let mut stream = keep_stream.then(Vec::new);
    if let Some(stream) = stream.as_mut() {
        // The in-memory log holds the whole session: the segments before the start, read only.
        for seg in &segments[..from] {
            let bytes = read_file(&seg.path)?;
            let header = segment_header_of(&bytes, &seg.path, seg.index, count)?.ok_or_else(|| corrupt(&seg.path, 0, "shorter than its header"))?;
            stream.extend_from_slice(&bytes[if seg.index == 1 { 0 } else { header.len }..]);
        }
    }
    let mut out_cut = None;
    let mut torn_segment = None;
    let mut records = 0u64;
    for (i, seg) in segments.iter().enumerate().skip(from) {
        let last = i + 1 == count;
        let bytes = match first_bytes.take() {
            Some(b) if i == from => b,
            _ => read_file(&seg.path)?,
        };
        let Some(header) = segment_header_of(&bytes, &seg.path, seg.index, count)? else {
            // A last segment whose creation a crash cut short: removed.
            out_cut = Some(TornTail { file: seg.path.clone(), offset: 0, bytes: bytes.len() as u64, torn_at: Some(0) });
            torn_segment = Some(seg.path.clone());
            break;
        };
        let s = scan(&bytes, &seg.path, &header, seg.index, last)?;
        if let Some(t) = s.tally.last_tick {
            complete_ticks = complete_ticks.max(t + 1);
        }
        // A continuation starts where the segment before it ended.
        if i > from && (header.first_tick != rp.rt.current_tick() || header.prev_hash != rp.rt.state_hash()) {
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
        let begin = if i == from && from_offset > 0 { from_offset } else { header.len };
        let mut reader = LogReader::at(usable, begin);
        loop {
            let offset = reader.offset();
            let Some(record) = reader.next_record().map_err(|e| in_file(&seg.path, e))? else {
                break;
            };
            records += 1;
            // The session's start: read by `session_start`, applied by `Replayer::start_from`.
            if matches!(record, Record::Config(_) | Record::Base { .. }) && seg.index == 1 {
                continue;
            }
            let step = rp.apply(record, offset, progress).map_err(|e| in_file(&seg.path, e))?;
            if let (Step::Ticked, Some(checks)) = (step, check.as_deref_mut()) {
                while to_check.front().is_some_and(|(t, _)| *t <= rp.rt.current_tick()) {
                    if let Some((tick, file)) = to_check.pop_front() {
                        checks.push(check_snapshot(&file, tick, &mut rp.rt, Some((&start.session, workers, trust))));
                    }
                }
            }
            if step == Step::Stopped {
                if let Some(stream) = stream.as_mut() {
                    stream.extend_from_slice(&usable[if seg.index == 1 { 0 } else { header.len }..offset as usize]);
                }
                return Ok(Replayed {
                    replayer: rp,
                    segments: seg.index,
                    records,
                    cut: None,
                    torn_segment: None,
                    next_index: count as u32 + 1,
                    stream,
                    stopped_at: Some((seg.path.clone(), offset)),
                    checkpoint_interval_ticks: interval,
                    snapshot_tick,
                    skipped,
                    complete_ticks,
                    id,
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
    Ok(Replayed {
        replayer: rp,
        segments: count as u32,
        records,
        cut: out_cut,
        torn_segment,
        next_index: count as u32 + 1,
        stream,
        stopped_at: None,
        checkpoint_interval_ticks: interval,
        snapshot_tick,
        skipped,
        complete_ticks,
        id,
    })
}

/// What `verify` found of one snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCheck {
    /// The snapshot file.
    pub file: PathBuf,
    /// Its tick (from its name).
    pub tick: u64,
    /// `None`: whole, and the session's state at its tick; else what is wrong with it.
    pub problem: Option<String>,
}

/// What `check_snapshot` restores a snapshot with, to compare its memory with the replay's:
/// the session, the workers and the caller's trust.
type Restore<'a> = (&'a crate::replay_log::SessionConfig, usize, Option<&'a ReplayTrust>);

/// Checks a snapshot file against the replay, which is at its tick: its tick and state hash,
/// and (with `restore`) its memory, restored and deep-hashed (the state hash covers no memory).
fn check_snapshot(file: &Path, tick: u64, rt: &mut Runtime, restore: Option<Restore<'_>>) -> SnapshotCheck {
    let problem = match read::read_regular(file) {
        Err(e) => Some(format!("cannot be read: {e}")),
        Ok(bytes) => match crate::snapshot::info(&bytes) {
            Err(e) => Some(e.to_string()),
            Ok(_) if rt.current_tick() != tick => Some(format!("past the journal's last complete tick ({})", rt.current_tick())),
            Ok(info) if info.tick != tick || info.state_hash != rt.state_hash() => {
                Some(format!("holds tick {} with state hash {}, but the journal's state at tick {tick} is {}", info.tick, info.state_hash, rt.state_hash()))
            }
            Ok(info) => restore.and_then(|(session, workers, trust)| {
                let base = ((tick, info.hash, info.state_hash), 0);
                match Replayer::start_from(session, workers, trust, Some(base), Some(&bytes)) {
                    Err(e) => Some(format!("does not restore: {e}")),
                    Ok(mut restored) => {
                        let (its, replayed) = (restored.rt.deep_hash().hash, rt.deep_hash().hash);
                        (its != replayed).then(|| format!("its memory is not the journal's state at tick {tick}: deep hash {its}, the replay's {replayed}"))
                    }
                }
            }),
        },
    };
    SnapshotCheck { file: file.to_path_buf(), tick, problem }
}

/// Verifies the journal in `dir` without changing it: every segment read, every record
/// validated and applied, every tick and checkpoint hash compared (like `replay_trusting`;
/// `trust` as there), up to the last complete tick. Takes no lock: a journal being written is
/// read as far as it is complete. `progress` gets the ticks verified after each tick.
pub fn verify(dir: &Path, workers: usize, trust: Option<&ReplayTrust>, mut progress: impl FnMut(u64)) -> Result<JournalVerifyReport> {
    let mut snapshots = Vec::new();
    let r = replay_dir(dir, workers, trust, false, None, &mut None, Some(&mut snapshots), &mut progress)?;
    let (mut rt, report) = r.replayer.finish();
    // Snapshots the replay did not reach: past the journal's end, or past a divergence.
    for (tick, file) in list_snapshots(dir)?.0 {
        if tick > rt.current_tick() && !snapshots.iter().any(|c| c.file == file) {
            snapshots.push(check_snapshot(&file, tick, &mut rt, None));
        }
    }
    Ok(JournalVerifyReport { replay: report, tick: r.complete_ticks, segments: r.segments, records: r.records, cut: r.cut, snapshots })
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

/// `E_INVALID_CONFIG`: recovering with `record` needs the journal's log (`bytes`, or at least
/// that) in memory, more than `max` allows.
fn too_big_for_memory(bytes: String, max: usize) -> LockstepError {
    LockstepError::InvalidConfig {
        reason: format!(
            "the journal's log so far is {bytes} bytes, more than maxLogBytes ({max}): recover with record: false (the journal is the log) or a larger maxLogBytes"
        ),
    }
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
        let segments = list_segments(dir)?;
        if options.record {
            // The in-memory log would hold every segment but what the last one may have torn:
            // refused before it is read into memory when even that is over the bound (red team
            // of issue 12: the whole journal was read, however large, and then refused).
            let mut sizes = Vec::with_capacity(segments.len());
            for s in &segments {
                sizes.push(std::fs::metadata(&s.path).map_err(|e| io_error(&s.path, "reading a journal segment's size", &e))?.len());
            }
            let headers = (crate::replay_log::HEADER_BYTES + super::CONTINUATION_HEADER_BYTES) as u64 * (segments.len() as u64 - 1);
            let surely = sizes.iter().sum::<u64>().saturating_sub(headers).saturating_sub(sizes.last().copied().unwrap_or(0));
            if surely > options.max_log_bytes as u64 {
                return Err(too_big_for_memory(format!("at least {surely}"), options.max_log_bytes));
            }
        }
        let lock = DirLock::acquire(dir)?;
        let journal = JournalConfig {
            dir: dir.to_path_buf(),
            fsync: options.fsync,
            segment_bytes: options.segment_bytes,
            snapshot_interval_ticks: options.snapshot_interval_ticks,
        };
        super::check_segment_bytes(options.segment_bytes)?;
        // A replay that started from a snapshot and failed (a tick or checkpoint that does not
        // replay to its hash, a record that does not apply) is tried again from an older one:
        // if that gets past the failure, the snapshot was not the session's state (its
        // checksums and state hash held; red team of issue 12: such a snapshot made the journal
        // unrecoverable). The same failure again is the journal's, and reported.
        let mut excluded: Vec<SkippedSnapshot> = Vec::new();
        let mut last_failure: Option<String> = None;
        let mut r = loop {
            let exclude: Vec<u64> = excluded.iter().map(|s| s.tick).collect();
            let mut started = None;
            let attempt = replay_dir(dir, options.workers, options.trust.as_ref(), options.record, Some(&exclude), &mut started, None, &mut progress);
            let failure = match &attempt {
                Ok(r) => r.replayer.report.divergence.as_ref().map(|d| diverged(d, r.stopped_at.as_ref().unwrap_or(&(dir.to_path_buf(), 0)))),
                Err(e @ (LockstepError::JournalCorrupt { .. } | LockstepError::ReplayCorrupt { .. })) => Some(e.clone()),
                Err(_) => None,
            };
            match (failure, started) {
                (Some(e), Some(tick)) if last_failure.as_deref() != Some(e.to_string().as_str()) => {
                    last_failure = Some(e.to_string());
                    let file = dir.join(super::snapshot_file_name(tick));
                    excluded.push(SkippedSnapshot { file, tick, reason: format!("it restores, but the journal does not replay from it: {e}") });
                }
                _ => break attempt?,
            }
        };
        r.skipped.extend(excluded);
        r.skipped.sort_by_key(|s| std::cmp::Reverse(s.tick));
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
        // Snapshots a crash left half-written, and those past the recovered tick (of ticks
        // that were lost: the session goes on from here, maybe otherwise): removed.
        let (snapshots, tmp) = list_snapshots(dir)?;
        let mut snapshots_removed = Vec::new();
        for file in tmp.into_iter().chain(snapshots.into_iter().filter(|(t, _)| *t > rt.current_tick()).map(|(_, f)| f)) {
            std::fs::remove_file(&file).map_err(|e| io_error(&file, "removing a snapshot the journal does not reach", &e))?;
            snapshots_removed.push(file);
        }
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
                return Err(too_big_for_memory(len.to_string(), options.max_log_bytes));
            }
        }
        let sink = JournalSink::resume(&journal, lock, next_index, tick, rt.state_hash(), durable, r.id)?;
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
                snapshot_tick: r.snapshot_tick,
                snapshots_skipped: r.skipped,
                snapshots_removed,
                segments: r.segments,
                records: r.records,
                note,
            },
        ))
    }
}
