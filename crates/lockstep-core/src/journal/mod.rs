//! The on-disk journal (docs/JOURNAL.md): every replay-log record, streamed as it is produced
//! to an append-only set of segment files in one directory, so a session survives the process
//! that ran it.
//!
//! - [`JournalSink`] is the recorder's disk sink: a tick's records are buffered and handed
//!   over whole at the end of the tick, written by [`writer`] (on the tick thread and synced
//!   before `tick()` returns with `fsync: Tick`; on a writer thread, synced by group commit or
//!   not at all, otherwise). A failed write is sticky: the runtime refuses every further tick.
//! - `lock`: the `LOCK` file (one writer per directory).
//! - `read`: segment files, their headers, where a torn final write starts; `inspect`.
//! - `recover`: [`Runtime::recover`](crate::Runtime::recover) and [`verify`], which replay
//!   the segments through the replay driver (`replay::Replayer`).
//!
//! Files in a journal directory:
//!
//! ```text
//! LOCK                        the pid of the runtime writing it (empty once closed cleanly)
//! journal-000001.lslog        a replay log (docs/REPLAY.md): header, Config, records...
//! journal-000002.lslog        continuation: header with flag 1, segment header, records...
//! snapshot-<tick:020>.lssnap  a snapshot of the session at <tick> (ticks run)
//! ```

mod cursor;
mod lock;
mod read;
mod recover;
mod writer;

use std::path::{Path, PathBuf};

use crate::error::{Digest, LockstepError, Result};
use crate::recorder::{Appended, LogSink};
use crate::replay_log::{self, Record, SessionConfig};

pub use crate::observe::AgentMessages;
pub use crate::replay_log::Lineage;
pub use cursor::{CursorOptions, Interrupt, JournalCursor, SeekReport};
pub use read::{inspect, FileSummary, LogSummary, TornTail};
pub use recover::{verify, JournalVerifyReport, RecoverOptions, RecoveryReport, SkippedSnapshot, SnapshotCheck};

use lock::DirLock;
use writer::{Background, SegmentWriter};

/// When the journal forces what it wrote to stable storage (docs/JOURNAL.md, "Durability").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every tick's records are written and `fdatasync`ed before `tick()` returns: each tick is
    /// durable when its report comes back.
    Tick,
    /// Group commit on a writer thread: written and synced every [`GROUP_SYNC_TICKS`] ticks or
    /// [`GROUP_SYNC_MS`] ms, whichever comes first. A tick's report says which tick is durable.
    #[default]
    Group,
    /// Written by a writer thread at the same cadence, never synced (except by
    /// `Runtime::sync_journal`): a killed process loses nothing the writer wrote, a crash of the
    /// machine may lose anything.
    Off,
}

impl FsyncPolicy {
    /// The policy's name in the JS API: `tick`, `group` or `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Tick => "tick",
            FsyncPolicy::Group => "group",
            FsyncPolicy::Off => "off",
        }
    }
}

/// Where and how a runtime journals (`RuntimeConfig::journal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The journal's directory: created if missing; must not hold a journal already.
    pub dir: PathBuf,
    /// When what is written reaches stable storage.
    pub fsync: FsyncPolicy,
    /// A segment file is closed and the next one begun, at a tick boundary, once it holds at
    /// least this many bytes ([`MIN_SEGMENT_BYTES`]..; default [`DEFAULT_SEGMENT_BYTES`]).
    pub segment_bytes: u64,
    /// A snapshot of the session is written into the journal after every tick that brings
    /// the ticks run to a multiple of this (default [`DEFAULT_SNAPSHOT_INTERVAL_TICKS`]; 0:
    /// never). Recovery and seeking start from the newest one and replay only what follows.
    pub snapshot_interval_ticks: u64,
}

impl JournalConfig {
    /// A journal in `dir` with the defaults: group commit, 64 MiB segments.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), fsync: FsyncPolicy::Group, segment_bytes: DEFAULT_SEGMENT_BYTES, snapshot_interval_ticks: DEFAULT_SNAPSHOT_INTERVAL_TICKS }
    }
}

/// Default ticks between the journal's automatic snapshots.
pub const DEFAULT_SNAPSHOT_INTERVAL_TICKS: u64 = 1_000;
/// The suffix of a snapshot file being written (renamed into place once whole; a crash may
/// leave one, which recovery removes).
pub const TMP_SUFFIX: &str = ".tmp";
/// Default size at which a segment file is rotated.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Smallest segment size accepted (tests use small segments to rotate often).
pub const MIN_SEGMENT_BYTES: u64 = 4 << 10;
/// Group commit: the writer syncs once this many ticks wait...
pub const GROUP_SYNC_TICKS: u64 = 100;
/// ...or once the oldest waiting tick has waited this long since the last sync, milliseconds.
pub const GROUP_SYNC_MS: u64 = 5;
/// Most bytes of complete ticks waiting for the writer thread: past it, `tick()` waits for the
/// disk (back-pressure) rather than buffering without bound.
pub const MAX_UNWRITTEN_BYTES: usize = 64 << 20;
/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";
/// Bytes of a continuation segment's own header, after the 16-byte file header: segment
/// number u32, first tick u64, state hash before that tick [32], CRC-32 of the 60 bytes
/// before it (file header included) u32.
pub const CONTINUATION_HEADER_BYTES: usize = 48;

/// The file name of segment `index` (1, 2, ...): `journal-000001.lslog`.
pub fn segment_file_name(index: u32) -> String {
    format!("journal-{index:06}.lslog")
}

/// The file name of the snapshot of the session at `tick` (ticks run):
/// `snapshot-00000000000000001000.lssnap`. Recovery loads the newest valid one at or below the
/// journal's last complete tick and replays only what follows it (docs/JOURNAL.md, "Snapshots").
pub fn snapshot_file_name(tick: u64) -> String {
    format!("snapshot-{tick:020}.lssnap")
}

/// The tick in a snapshot file's name, if it is one.
pub(crate) fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".lssnap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment number in a segment file's name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("journal-")?.strip_suffix(".lslog")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

/// The header a continuation segment starts with: the file header (flag 1), then its number,
/// its first tick and the state hash before that tick, and a CRC.
pub(crate) fn continuation_header(index: u32, first_tick: u64, prev_hash: &Digest) -> Vec<u8> {
    let mut out = Vec::with_capacity(replay_log::HEADER_BYTES + CONTINUATION_HEADER_BYTES);
    replay_log::write_header_with_flags(&mut out, replay_log::FLAG_CONTINUATION);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&first_tick.to_le_bytes());
    out.extend_from_slice(&prev_hash.0);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// `E_JOURNAL_IO` for `path`: what was being done, and the OS error.
pub(crate) fn io_error(path: &Path, doing: &str, e: &std::io::Error) -> LockstepError {
    let hint = match e.kind() {
        std::io::ErrorKind::StorageFull => " (the disk is full)",
        std::io::ErrorKind::ReadOnlyFilesystem => " (a read-only file system)",
        _ => "",
    };
    LockstepError::JournalIo { path: path.display().to_string(), reason: format!("{doing}: {e}{hint}") }
}

/// Where the journal's bytes go after a tick: written and synced here (`Tick`), or handed to
/// the writer thread (`Group`, `Off`).
enum Output {
    Inline(SegmentWriter),
    Thread(Background),
}

/// The recorder's disk sink. Records of the tick in progress (and the inputs before it) wait
/// in `buf`; `tick_complete` hands them over whole, so every segment ends at a tick boundary
/// and a torn write can only cut the last tick.
pub(crate) struct JournalSink {
    buf: Vec<u8>,
    /// The first tick whose records `buf` holds, and the state hash before it (what a new
    /// segment's header names).
    first_tick: u64,
    prev_hash: Digest,
    out: Output,
    /// The tick last synced by `out` when it is `Inline`.
    durable: Option<u64>,
    /// The first write error, kept: nothing is written after it.
    failed: Option<LockstepError>,
    /// Ticks between automatic snapshots (0: none).
    snapshot_interval_ticks: u64,
    /// A due snapshot was put off (`put_off_snapshot`).
    snapshot_put_off: bool,
    /// The journal's id (its Journal record).
    id: [u8; 16],
    /// Dropped last: the writer thread has finished (and synced) before the lock goes.
    _lock: DirLock,
}

impl JournalSink {
    /// Starts a journal in `config.dir` (created if missing): takes its lock, refuses a
    /// directory that holds a journal already, writes segment 1's header, the Config record
    /// and the Journal record (its new id), and syncs them (unless `Off`), so even a session
    /// killed before its first tick leaves a journal that recovers.
    pub(crate) fn create(config: &JournalConfig, session: &SessionConfig) -> Result<Self> {
        Self::create_from(config, session, None, None)
    }

    /// `create` for a session that continues from a snapshot (a restored runtime, a fork):
    /// `base` is the snapshot's bytes, tick and state hash. The snapshot is written into the
    /// journal first (`snapshot-<tick>.lssnap`, what recovery starts from), then segment 1 with
    /// a Base record naming it after the Config record, and a Journal record with `parent`.
    pub(crate) fn create_from(config: &JournalConfig, session: &SessionConfig, base: Option<(&[u8], u64, Digest)>, parent: Option<Lineage>) -> Result<Self> {
        check_segment_bytes(config.segment_bytes)?;
        let dir = &config.dir;
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "creating the journal directory", &e))?;
        let lock = DirLock::acquire(dir)?;
        if let Some(first) = read::list_segment_names(dir)?.first() {
            return Err(LockstepError::JournalExists { dir: dir.display().to_string(), first: first.1.clone() });
        }
        if let Some(note) = &lock.took_over {
            tracing::warn!(target: "lockstep::journal", "{note}");
        }
        let sync = config.fsync != FsyncPolicy::Off;
        let mut start = Vec::new();
        replay_log::write_header(&mut start);
        Record::Config(session.clone()).encode(&mut start);
        let (first_tick, prev_hash) = match base {
            Some((bytes, tick, hash)) => {
                writer::write_snapshot_file(dir, tick, bytes, sync)?;
                Record::Base { tick, snapshot: Digest(*blake3::hash(bytes).as_bytes()), hash }.encode(&mut start);
                (tick, hash)
            }
            None => (0, Digest::default()),
        };
        let id = new_journal_id(dir);
        Record::Journal { id, parent }.encode(&mut start);
        let mut writer = SegmentWriter::new(dir.clone(), 1, config.segment_bytes, sync);
        writer.create_first(&start)?;
        Self::with_writer(config, writer, lock, first_tick, prev_hash, None, id)
    }

    /// Continues a recovered journal: the next segment is `next_index`, begun at the first
    /// write; `tick` and `hash` are the recovered runtime's tick and state hash; `durable`, the
    /// last recovered tick if recovery synced the segments (not with 'off').
    pub(crate) fn resume(config: &JournalConfig, lock: DirLock, next_index: u32, tick: u64, hash: Digest, durable: Option<u64>, id: [u8; 16]) -> Result<Self> {
        check_segment_bytes(config.segment_bytes)?;
        let writer = SegmentWriter::new(config.dir.clone(), next_index, config.segment_bytes, config.fsync != FsyncPolicy::Off);
        Self::with_writer(config, writer, lock, tick, hash, durable, id)
    }

    #[allow(clippy::too_many_arguments)]
    fn with_writer(
        config: &JournalConfig,
        writer: SegmentWriter,
        lock: DirLock,
        first_tick: u64,
        prev_hash: Digest,
        durable: Option<u64>,
        id: [u8; 16],
    ) -> Result<Self> {
        let out = match config.fsync {
            FsyncPolicy::Tick => Output::Inline(writer),
            FsyncPolicy::Group => Output::Thread(Background::spawn(writer, true, durable)?),
            FsyncPolicy::Off => Output::Thread(Background::spawn(writer, false, durable)?),
        };
        Ok(Self {
            buf: Vec::new(),
            first_tick,
            prev_hash,
            out,
            durable,
            failed: None,
            snapshot_interval_ticks: config.snapshot_interval_ticks,
            snapshot_put_off: false,
            id,
            _lock: lock,
        })
    }

    /// Why the journal takes no more records, if it does not (sticky). Cheap: called before
    /// every input.
    pub(crate) fn error(&self) -> Option<LockstepError> {
        if let Some(e) = &self.failed {
            return Some(e.clone());
        }
        match &self.out {
            Output::Thread(b) => b.error(),
            Output::Inline(_) => None,
        }
    }

    /// The last tick known to be on stable storage.
    pub(crate) fn durable_tick(&self) -> Option<u64> {
        match &self.out {
            Output::Inline(_) => self.durable,
            Output::Thread(b) => b.durable(),
        }
    }

    /// Whether a snapshot is due now that `ticks_run` ticks have run: at each interval, and
    /// after one that was put off (`put_off_snapshot`) until it is taken.
    pub(crate) fn snapshot_due(&self, ticks_run: u64) -> bool {
        self.failed.is_none()
            && self.snapshot_interval_ticks > 0
            && ticks_run > 0
            && (self.snapshot_put_off || ticks_run.is_multiple_of(self.snapshot_interval_ticks))
    }

    /// A due snapshot cannot be taken at this tick (a time-sliced agent's call is suspended):
    /// it is due again at every tick until one is taken.
    pub(crate) fn put_off_snapshot(&mut self) {
        self.snapshot_put_off = true;
    }

    /// Writes the snapshot taken after `ticks_run` ticks (`snapshot-<ticks_run>.lssnap`),
    /// after the ticks before it: on this thread with `fsync: Tick`, else on the writer
    /// thread. A failure is the journal's (sticky).
    pub(crate) fn snapshot(&mut self, ticks_run: u64, bytes: Vec<u8>) -> Result<()> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        self.snapshot_put_off = false;
        let result = match &mut self.out {
            Output::Inline(w) => w.write_snapshot(ticks_run, &bytes),
            Output::Thread(b) => b.hand_over_snapshot(ticks_run, bytes),
        };
        result.inspect_err(|e| self.failed = Some(e.clone()))
    }

    /// The journal's id.
    pub(crate) fn id(&self) -> [u8; 16] {
        self.id
    }

    /// Writes and syncs every complete tick now (whatever the policy); returns the durable
    /// tick. The tick in progress, if any, stays buffered: a journal holds whole ticks.
    pub(crate) fn sync(&mut self) -> Result<Option<u64>> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        let synced = match &mut self.out {
            Output::Inline(_) => Ok(self.durable),
            Output::Thread(b) => b.sync(),
        };
        synced.inspect_err(|e| self.failed = Some(e.clone()))
    }
}

/// A new journal's id: 16 bytes of BLAKE3 over what makes this creation unique (the clock,
/// the process, the directory, a counter). Ids only name journals in lineage records; nothing
/// is derived from them, so they need not be secret, only distinct.
fn new_journal_id(dir: &Path) -> [u8; 16] {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(b"lockstep journal id");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    h.update(&now.as_nanos().to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    h.update(dir.as_os_str().as_encoded_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

fn check_segment_bytes(n: u64) -> Result<()> {
    if n < MIN_SEGMENT_BYTES {
        return Err(LockstepError::InvalidConfig { reason: format!("journal.segmentBytes must be at least {MIN_SEGMENT_BYTES}, got {n}") });
    }
    Ok(())
}

impl LogSink for JournalSink {
    fn append(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) -> Appended {
        // Always written (the memory log, if any, is fed from here), dropped if failed.
        write(&mut self.buf);
        if self.failed.is_some() {
            self.buf.clear();
        }
        Appended::Written
    }

    fn tick_complete(&mut self, tick: u64, hash: Digest) -> Result<Option<u64>> {
        if let Some(e) = self.error() {
            self.buf.clear();
            self.failed = Some(e.clone());
            return Err(e);
        }
        let result = match &mut self.out {
            Output::Inline(w) => w.write_chunk(&self.buf, self.first_tick, &self.prev_hash).and_then(|()| w.sync()).map(|()| {
                self.durable = Some(tick);
                self.durable
            }),
            Output::Thread(b) => b.hand_over(&mut self.buf, self.first_tick, self.prev_hash, tick),
        };
        self.buf.clear();
        self.first_tick = tick + 1;
        self.prev_hash = hash;
        result.inspect_err(|e| self.failed = Some(e.clone()))
    }
}
