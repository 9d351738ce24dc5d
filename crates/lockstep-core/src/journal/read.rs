//! Reading a journal: its segment files in order, each one's header, and where its complete
//! ticks end; a torn final write told apart from damage; `inspect` (counts, no replay).

use std::path::{Path, PathBuf};

use super::{io_error, parse_segment_name, segment_file_name, CONTINUATION_HEADER_BYTES};
use crate::error::{Digest, LockstepError, Result};
use crate::replay_log::{self, LogReader, Record, SessionConfig, FLAG_CONTINUATION, HEADER_BYTES};

/// One segment file of a journal directory.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) index: u32,
    pub(crate) path: PathBuf,
}

/// (number, file name) of every segment file in `dir`, ascending.
pub(crate) fn list_segment_names(dir: &Path) -> Result<Vec<(u32, String)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, "reading the journal directory", &e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "reading the journal directory", &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = parse_segment_name(&name) {
            found.push((n, name));
        }
    }
    found.sort();
    Ok(found)
}

/// The segments of the journal in `dir`, numbered 1, 2, 3... without a gap: a missing one is
/// `E_JOURNAL_CORRUPT` naming it; none at all is `E_JOURNAL_NOT_FOUND`.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<Segment>> {
    let names = list_segment_names(dir)?;
    if names.is_empty() {
        return Err(LockstepError::JournalNotFound { dir: dir.display().to_string() });
    }
    let mut segments = Vec::with_capacity(names.len());
    for (i, (n, name)) in names.into_iter().enumerate() {
        let expected = i as u32 + 1;
        if n != expected {
            return Err(LockstepError::JournalCorrupt {
                path: dir.join(segment_file_name(expected)).display().to_string(),
                offset: 0,
                reason: format!("segment {expected} is missing (the next one present is {name}): the journal lost a file"),
            });
        }
        segments.push(Segment { index: n, path: dir.join(name) });
    }
    Ok(segments)
}

/// Reads a whole segment file: a regular file (a FIFO or a device named like a segment would
/// block or never end: `E_JOURNAL_CORRUPT`).
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    match read_regular(path) {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Err(corrupt(path, 0, format!("{e}: the journal's segments are files"))),
        other => other.map_err(|e| io_error(path, "reading a journal segment", &e)),
    }
}

/// `std::fs::read` of a regular file only (a link to one included): a directory, a FIFO or a
/// device named like a journal's file is `InvalidInput` (reading one could block, or never end).
pub(crate) fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a directory" } else { "a FIFO, socket or device" };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}, not a regular file")));
    }
    std::fs::read(path)
}

/// `E_JOURNAL_CORRUPT` at `offset` of `path`.
pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> LockstepError {
    LockstepError::JournalCorrupt { path: path.display().to_string(), offset, reason: reason.into() }
}

/// A replay-log error met in a segment, as the journal error naming the file.
pub(crate) fn in_file(path: &Path, e: LockstepError) -> LockstepError {
    match e {
        LockstepError::ReplayCorrupt { offset, reason } => corrupt(path, offset, reason),
        LockstepError::ReplayVersion { found, expected } => LockstepError::JournalVersion { path: path.display().to_string(), found, expected },
        other => other,
    }
}

/// What a segment's header says.
#[derive(Debug, Clone)]
pub(crate) struct SegmentHeader {
    /// Where its records start: 16 (segment 1) or 64 (a continuation).
    pub(crate) len: usize,
    /// The tick its first records belong to, and the state hash before that tick.
    pub(crate) first_tick: u64,
    pub(crate) prev_hash: Digest,
}

/// The header of segment `index` of a journal of `count` segments (in `bytes`, the file
/// `path`). `Ok(None)`: the last segment (not the first) is a segment whose creation a crash cut
/// short: shorter than its header, or a header that does not read (no magic, a CRC that does not
/// hold: zeros or garbage after a power loss) while no whole TickEnd record follows in the file.
/// It holds no complete tick; recovery removes it. Anywhere else, either is damage.
pub(crate) fn segment_header_of(bytes: &[u8], path: &Path, index: u32, count: usize) -> Result<Option<SegmentHeader>> {
    let last = index as usize == count && index > 1;
    match segment_header(bytes, path, index) {
        Ok(Some(h)) => Ok(Some(h)),
        Ok(None) if last => Ok(None),
        Ok(None) => Err(corrupt(path, 0, format!("{} bytes, shorter than its header", bytes.len()))),
        Err(Unreadable(_)) if last && tick_end_after(bytes, 0).is_none() => Ok(None),
        Err(Unreadable(e) | Invalid(e)) => Err(e),
    }
}

/// Why a segment header was refused: `Unreadable` (no magic, a checksum that does not hold:
/// what a torn write leaves) or `Invalid` (it reads, and says something else: another version,
/// another segment number, wrong flags).
pub(crate) enum HeaderError {
    Unreadable(LockstepError),
    Invalid(LockstepError),
}
use HeaderError::{Invalid, Unreadable};

/// Reads the header of segment `index` (in `bytes`, the file `path`). `Ok(None)`: the file is
/// shorter than its header.
pub(crate) fn segment_header(bytes: &[u8], path: &Path, index: u32) -> std::result::Result<Option<SegmentHeader>, HeaderError> {
    let want = if index == 1 { HEADER_BYTES } else { HEADER_BYTES + CONTINUATION_HEADER_BYTES };
    if bytes.len() < want {
        return Ok(None);
    }
    let corrupt = |offset, reason: String| Invalid(corrupt(path, offset, reason));
    let flags = replay_log::read_header(bytes).map_err(|e| match e {
        LockstepError::ReplayCorrupt { .. } => Unreadable(in_file(path, e)),
        other => Invalid(in_file(path, other)),
    })?;
    if index == 1 {
        if flags != 0 {
            return Err(corrupt(10, format!("header flags {flags:#06x}: the first segment is a whole log's start (flags 0)")));
        }
        return Ok(Some(SegmentHeader { len: HEADER_BYTES, first_tick: 0, prev_hash: Digest::default() }));
    }
    if flags != FLAG_CONTINUATION {
        return Err(corrupt(10, format!("header flags {flags:#06x}: a segment after the first is a continuation (flags 1)")));
    }
    let h = &bytes[HEADER_BYTES..want];
    let crc = u32::from_le_bytes([h[44], h[45], h[46], h[47]]);
    if crc != crc32fast::hash(&bytes[..want - 4]) {
        return Err(Unreadable(self::corrupt(path, HEADER_BYTES as u64, "segment header checksum mismatch")));
    }
    let n = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if n != index {
        return Err(corrupt(HEADER_BYTES as u64, format!("the segment header says segment {n}, the file name {index}: a file was renamed or copied in")));
    }
    let first_tick = u64::from_le_bytes(h[4..12].try_into().unwrap_or_default());
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&h[12..44]);
    Ok(Some(SegmentHeader { len: want, first_tick, prev_hash: Digest(prev) }))
}

/// Counts of records, for `inspect` and the reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) records: u64,
    pub(crate) ticks: u64,
    pub(crate) first_tick: Option<u64>,
    pub(crate) last_tick: Option<u64>,
    pub(crate) spawns: u64,
    pub(crate) modules: u64,
    pub(crate) models: u64,
    pub(crate) sends: u64,
    pub(crate) kills: u64,
    pub(crate) shutdowns: u64,
    pub(crate) checkpoints: u64,
    pub(crate) infer_results: u64,
    /// Connect, Disconnect and Trigger records.
    pub(crate) graph_changes: u64,
    pub(crate) gaps: u64,
    pub(crate) ended: bool,
}

impl Tally {
    fn add(&mut self, r: &Record) {
        self.records += 1;
        match r {
            Record::TickEnd { tick, .. } => {
                self.ticks += 1;
                self.first_tick.get_or_insert(*tick);
                self.last_tick = Some(*tick);
            }
            Record::Spawn { .. } => self.spawns += 1,
            Record::Module { .. } => self.modules += 1,
            Record::AgentModel { .. } => self.models += 1,
            Record::Send { .. } => self.sends += 1,
            Record::Kill { .. } => self.kills += 1,
            Record::Shutdown { .. } => self.shutdowns += 1,
            Record::Checkpoint { .. } => self.checkpoints += 1,
            Record::InferResults { .. } => self.infer_results += 1,
            Record::Generated { .. } | Record::AgentLanguageModel { .. } | Record::Slice { .. } => {}
            Record::Connect { .. } | Record::Disconnect { .. } | Record::Trigger { .. } => self.graph_changes += 1,
            Record::Gap { .. } => self.gaps += 1,
            Record::End { .. } => self.ended = true,
            // A log recorded by a runtime restored from a snapshot starts there.
            Record::Config(_) | Record::Base { .. } | Record::Journal { .. } => {}
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.records += o.records;
        self.ticks += o.ticks;
        if self.first_tick.is_none() {
            self.first_tick = o.first_tick;
        }
        if o.last_tick.is_some() {
            self.last_tick = o.last_tick;
        }
        self.spawns += o.spawns;
        self.modules += o.modules;
        self.models += o.models;
        self.sends += o.sends;
        self.kills += o.kills;
        self.shutdowns += o.shutdowns;
        self.checkpoints += o.checkpoints;
        self.infer_results += o.infer_results;
        self.graph_changes += o.graph_changes;
        self.gaps += o.gaps;
        self.ended |= o.ended;
    }
}

/// Where a segment's usable records end.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    /// The end of its last complete tick: a TickEnd, and any Checkpoint records right after it
    /// (the header's end, or the Config record's in segment 1, when it holds no whole tick).
    pub(crate) complete_end: usize,
    /// Where a torn final write begins (the last segment only), if there is one.
    pub(crate) torn_at: Option<usize>,
    /// The session config (segment 1).
    pub(crate) config: Option<SessionConfig>,
    /// The records up to `complete_end`.
    pub(crate) tally: Tally,
}

/// The first whole TickEnd frame at or after `from`, if any.
fn tick_end_after(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&q| replay_log::is_tick_end_frame(bytes, q))
}

/// Reads a segment's records (CRCs and framing, nothing applied) to find where its complete
/// ticks end. A record that does not read is:
/// - damage (`E_JOURNAL_CORRUPT` naming the offset) if its frame is whole and its CRC holds
///   (it was written that way), if the segment is not the last, or if a whole TickEnd frame
///   follows anywhere after it (a torn write is the end of the file: nothing whole follows);
/// - otherwise a torn final write, cut off.
///
/// A segment other than the last must end with a complete tick (segments rotate only between
/// ticks).
pub(crate) fn scan(bytes: &[u8], path: &Path, header: &SegmentHeader, index: u32, last: bool) -> Result<Scan> {
    let mut reader = LogReader::at(bytes, header.len);
    let mut out = Scan { complete_end: header.len, torn_at: None, config: None, tally: Tally::default() };
    let mut since_complete = Tally::default();
    let mut after_tick_end = false;
    loop {
        let pos = reader.offset() as usize;
        match reader.next_record() {
            Ok(None) => break,
            Ok(Some(record)) => {
                if index == 1 && pos == header.len {
                    let Record::Config(c) = record else {
                        return Err(corrupt(path, pos as u64, "the first record must be the session's Config record"));
                    };
                    out.config = Some(c);
                    out.complete_end = reader.offset() as usize;
                    continue;
                }
                match &record {
                    Record::End { .. } => return Err(corrupt(path, pos as u64, "an End record: a journal is never sealed (did a log get copied in?)")),
                    Record::Config(_) => return Err(corrupt(path, pos as u64, "a second Config record")),
                    _ => {}
                }
                let closes_tick = matches!(record, Record::TickEnd { .. }) || (after_tick_end && matches!(record, Record::Checkpoint { .. }));
                after_tick_end = closes_tick;
                since_complete.add(&record);
                if closes_tick {
                    out.tally.merge(&since_complete);
                    since_complete = Tally::default();
                    out.complete_end = reader.offset() as usize;
                }
            }
            Err(e) => {
                let reason = match &e {
                    LockstepError::ReplayCorrupt { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                if replay_log::whole_frame(bytes, pos).is_some() || !last {
                    return Err(corrupt(path, pos as u64, reason));
                }
                if let Some(q) = tick_end_after(bytes, pos + 1) {
                    return Err(corrupt(
                        path,
                        pos as u64,
                        format!("{reason}; a whole TickEnd record follows at byte {q}, so this is damage, not a torn final write"),
                    ));
                }
                out.torn_at = Some(pos);
                break;
            }
        }
    }
    if index == 1 && out.config.is_none() {
        return Err(corrupt(
            path,
            header.len as u64,
            "the journal's Config record is missing or torn: the session died while creating its journal; there is nothing to recover",
        ));
    }
    if !last && out.complete_end != bytes.len() {
        return Err(corrupt(
            path,
            out.complete_end as u64,
            format!("{} bytes after the last complete tick of a segment that is not the last (segments end between ticks)", bytes.len() - out.complete_end),
        ));
    }
    Ok(out)
}

/// A torn or incomplete tail that recovery cuts off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Where the cut is: the end of the last complete tick.
    pub offset: u64,
    /// Bytes after it (a torn record, and any whole records of a tick that never completed).
    pub bytes: u64,
    /// Where a torn (unreadable) write begins, if the tail is not only whole records.
    pub torn_at: Option<u64>,
}

/// One file of what `inspect` read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// The file.
    pub path: PathBuf,
    /// Its size, bytes.
    pub bytes: u64,
    /// Records in it (up to the last complete tick, for a journal segment).
    pub records: u64,
    /// The tick its first records belong to.
    pub first_tick: u64,
    /// Ticks that end in it.
    pub ticks: u64,
}

/// What a replay log or journal holds, read without replaying it (`npx lockstep log inspect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummary {
    /// A journal directory (else one log file).
    pub journal: bool,
    /// Each file read, in order.
    pub files: Vec<FileSummary>,
    /// Bytes of every file.
    pub bytes: u64,
    /// Records (the Config record included).
    pub records: u64,
    /// Ticks (TickEnd records), and the first and last tick numbers.
    pub ticks: u64,
    /// The first tick recorded.
    pub first_tick: Option<u64>,
    /// The last tick recorded.
    pub last_tick: Option<u64>,
    /// Agents spawned (Spawn records).
    pub agents: u64,
    /// Module records (each module once).
    pub modules: u64,
    /// Models made available to agents.
    pub models: u64,
    /// Messages from the host.
    pub sends: u64,
    /// Kill records.
    pub kills: u64,
    /// Shutdown records.
    pub shutdowns: u64,
    /// Checkpoint records.
    pub checkpoints: u64,
    /// InferResults records.
    pub infer_results: u64,
    /// Changes of the workflow graph (Connect, Disconnect and Trigger records).
    pub graph_changes: u64,
    /// Gap records (a record too large to write: a replay stops there).
    pub gaps: u64,
    /// The log ends with its End record (never for a journal).
    pub ended: bool,
    /// A journal's tail after its last complete tick, which recovery cuts off.
    pub torn: Option<TornTail>,
    /// The session's settings (its Config record).
    pub config: Option<SessionConfig>,
    /// A journal's snapshot files: (tick, bytes), by tick.
    pub snapshots: Vec<(u64, u64)>,
    /// The journal's id (its Journal record), if it has one.
    pub id: Option<[u8; 16]>,
    /// Where the session was forked from, if it was.
    pub lineage: Option<crate::replay_log::Lineage>,
}

impl LogSummary {
    fn new(journal: bool) -> Self {
        Self {
            journal,
            files: Vec::new(),
            bytes: 0,
            records: 0,
            ticks: 0,
            first_tick: None,
            last_tick: None,
            agents: 0,
            modules: 0,
            models: 0,
            sends: 0,
            kills: 0,
            shutdowns: 0,
            checkpoints: 0,
            infer_results: 0,
            graph_changes: 0,
            gaps: 0,
            ended: false,
            torn: None,
            config: None,
            snapshots: Vec::new(),
            id: None,
            lineage: None,
        }
    }

    fn count(&mut self, t: &Tally) {
        self.records += t.records;
        self.ticks += t.ticks;
        if self.first_tick.is_none() {
            self.first_tick = t.first_tick;
        }
        if t.last_tick.is_some() {
            self.last_tick = t.last_tick;
        }
        self.agents += t.spawns;
        self.modules += t.modules;
        self.models += t.models;
        self.sends += t.sends;
        self.kills += t.kills;
        self.shutdowns += t.shutdowns;
        self.checkpoints += t.checkpoints;
        self.infer_results += t.infer_results;
        self.graph_changes += t.graph_changes;
        self.gaps += t.gaps;
        self.ended |= t.ended;
    }
}

/// Reads a replay log file, or a journal directory, and counts what it holds: records by
/// kind, ticks, agents, modules, size. Every CRC is checked; nothing is replayed (use
/// `replay`/[`verify`](super::verify) for that). A journal's torn tail is reported, not an
/// error; damage is (`E_JOURNAL_CORRUPT`, or `E_REPLAY_CORRUPT` in a log file).
pub fn inspect(path: &Path) -> Result<LogSummary> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, "reading", &e))?;
    if meta.is_dir() {
        return inspect_dir(path);
    }
    let bytes = std::fs::read(path).map_err(|e| io_error(path, "reading", &e))?;
    let mut summary = LogSummary::new(false);
    summary.bytes = bytes.len() as u64;
    let flags = replay_log::read_header(&bytes)?;
    if flags == FLAG_CONTINUATION {
        // One continuation segment on its own: its header says which.
        let n = u32::from_le_bytes(bytes.get(16..20).and_then(|b| b.try_into().ok()).unwrap_or_default());
        let header = match segment_header(&bytes, path, n) {
            Ok(Some(h)) => h,
            Ok(None) => return Err(corrupt(path, 0, "shorter than a segment header")),
            Err(Unreadable(e) | Invalid(e)) => return Err(e),
        };
        let s = scan(&bytes, path, &header, n, true)?;
        summary.count(&s.tally);
        summary.files.push(FileSummary {
            path: path.into(),
            bytes: bytes.len() as u64,
            records: s.tally.records,
            first_tick: header.first_tick,
            ticks: s.tally.ticks,
        });
        summary.torn = tail(path, &bytes, &s);
        return Ok(summary);
    }
    let mut reader = LogReader::new(&bytes)?;
    let mut tally = Tally::default();
    while let Some(r) = reader.next_record()? {
        if let Record::Config(c) = &r {
            summary.config.get_or_insert_with(|| c.clone());
        }
        if let Record::Journal { id, parent } = &r {
            summary.id = Some(*id);
            summary.lineage = *parent;
        }
        tally.add(&r);
    }
    summary.count(&tally);
    summary.files.push(FileSummary { path: path.into(), bytes: bytes.len() as u64, records: tally.records, first_tick: 0, ticks: tally.ticks });
    Ok(summary)
}

/// The tail a scan left after the last complete tick, if any.
pub(crate) fn tail(path: &Path, bytes: &[u8], s: &Scan) -> Option<TornTail> {
    (s.complete_end < bytes.len()).then(|| TornTail {
        file: path.into(),
        offset: s.complete_end as u64,
        bytes: (bytes.len() - s.complete_end) as u64,
        torn_at: s.torn_at.map(|t| t as u64),
    })
}

fn inspect_dir(dir: &Path) -> Result<LogSummary> {
    let segments = list_segments(dir)?;
    let mut summary = LogSummary::new(true);
    for (tick, file) in super::recover::list_snapshots(dir)?.0 {
        let bytes = std::fs::metadata(&file).map_err(|e| io_error(&file, "reading a snapshot's size", &e))?.len();
        summary.snapshots.push((tick, bytes));
        summary.bytes += bytes;
    }
    let last = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        let bytes = read_file(&seg.path)?;
        summary.bytes += bytes.len() as u64;
        let Some(header) = segment_header_of(&bytes, &seg.path, seg.index, last)? else {
            summary.torn = Some(TornTail { file: seg.path.clone(), offset: 0, bytes: bytes.len() as u64, torn_at: Some(0) });
            continue;
        };
        let s = scan(&bytes, &seg.path, &header, seg.index, i + 1 == last)?;
        if let Some(c) = &s.config {
            summary.config = Some(c.clone());
            summary.records += 1;
            let start = super::recover::session_start(&bytes, &seg.path)?;
            summary.id = Some(start.id(&bytes));
            summary.lineage = start.journal.and_then(|(_, l)| l);
        }
        summary.count(&s.tally);
        summary.files.push(FileSummary {
            path: seg.path.clone(),
            bytes: bytes.len() as u64,
            records: s.tally.records + u64::from(s.config.is_some()),
            first_tick: header.first_tick,
            ticks: s.tally.ticks,
        });
        if i + 1 == last {
            summary.torn = tail(&seg.path, &bytes, &s);
        }
    }
    Ok(summary)
}
