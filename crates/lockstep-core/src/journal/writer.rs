//! Writing segments: [`SegmentWriter`] appends whole ticks to the current segment file and
//! begins the next one when it is full; [`Background`] runs one on a writer thread with group
//! commit (`fsync: 'group'`) or without syncs (`'off'`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{continuation_header, io_error, segment_file_name, snapshot_file_name, GROUP_SYNC_MS, GROUP_SYNC_TICKS, MAX_UNWRITTEN_BYTES};
use crate::error::{Digest, LockstepError, Result};

/// Appends to the segment files of one journal directory.
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    /// The number of the segment the next rotation creates.
    next_index: u32,
    /// The segment being written, and its path.
    current: Option<(File, PathBuf)>,
    /// Bytes in the current segment.
    len: u64,
    segment_bytes: u64,
    /// Sync a segment before leaving it, and the directory after creating one (not with 'off').
    sync_files: bool,
}

impl SegmentWriter {
    pub(crate) fn new(dir: PathBuf, next_index: u32, segment_bytes: u64, sync_files: bool) -> Self {
        Self { dir, next_index, current: None, len: 0, segment_bytes, sync_files }
    }

    /// Creates segment `next_index` holding `start` (the file header and whatever goes first).
    fn create(&mut self, start: &[u8]) -> Result<()> {
        let path = self.dir.join(segment_file_name(self.next_index));
        let mut file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| io_error(&path, "creating a journal segment", &e))?;
        file.write_all(start).map_err(|e| io_error(&path, "writing a segment's header", &e))?;
        if self.sync_files {
            file.sync_data().map_err(|e| io_error(&path, "syncing a new segment", &e))?;
            sync_dir(&self.dir)?;
        }
        self.next_index += 1;
        self.len = start.len() as u64;
        self.current = Some((file, path));
        Ok(())
    }

    /// Creates segment 1 with the log's header and Config record.
    pub(crate) fn create_first(&mut self, start: &[u8]) -> Result<()> {
        self.create(start)
    }

    /// Appends the records of one or more whole ticks: `first_tick` is the first of them and
    /// `prev_hash` the state hash before it (a new segment's header names both). A segment at
    /// or past its size is closed (synced, unless 'off') and the next one begun first.
    pub(crate) fn write_chunk(&mut self, bytes: &[u8], first_tick: u64, prev_hash: &Digest) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.current.is_none() || self.len >= self.segment_bytes {
            if let Some((file, path)) = self.current.take() {
                if self.sync_files {
                    file.sync_data().map_err(|e| io_error(&path, "syncing a full segment", &e))?;
                }
            }
            self.create(&continuation_header(self.next_index, first_tick, prev_hash))?;
        }
        let Some((file, path)) = self.current.as_mut() else {
            return Err(LockstepError::JournalIo { path: self.dir.display().to_string(), reason: "no segment open".into() });
        };
        file.write_all(bytes).map_err(|e| io_error(path, "appending to the journal", &e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Writes the snapshot of the session at `tick` (ticks run) as `snapshot-<tick>.lssnap`:
    /// into a `.tmp` file first, synced (unless 'off'), then renamed and the directory synced,
    /// so a crash leaves either no snapshot, a whole one, or a `.tmp` file recovery removes.
    /// Called after the records of every tick before `tick` were written (and synced).
    pub(crate) fn write_snapshot(&mut self, tick: u64, bytes: &[u8]) -> Result<()> {
        write_snapshot_file(&self.dir, tick, bytes, self.sync_files)
    }

    /// `fdatasync`s the current segment.
    pub(crate) fn sync(&mut self) -> Result<()> {
        crash_point("segment-sync");
        match self.current.as_mut() {
            Some((file, path)) => file.sync_data().map_err(|e| io_error(path, "syncing the journal", &e)),
            None => Ok(()),
        }
    }
}

/// Where the crash tests make a journaling process die on purpose: `LOCKSTEP_TEST_CRASH_AT`
/// = `snapshot-write:N` (abort half-way through writing the N-th snapshot file) or
/// `segment-sync:N` (abort right before the N-th sync of a segment). Read once; unset (always,
/// outside the tests) it costs one relaxed load per snapshot or sync.
pub(crate) fn crash_point(kind: &str) {
    use std::sync::atomic::AtomicU64;
    use std::sync::OnceLock;
    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        let v = std::env::var("LOCKSTEP_TEST_CRASH_AT").ok()?;
        let (k, n) = v.split_once(':')?;
        Some((k.to_string(), n.parse().ok()?))
    });
    if let Some((k, n)) = at {
        if k == kind && SEEN.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("lockstep: LOCKSTEP_TEST_CRASH_AT={kind}:{n}: aborting here on purpose");
            std::process::abort();
        }
    }
}

/// See `SegmentWriter::write_snapshot`; also how a fork writes the snapshot it starts from.
pub(crate) fn write_snapshot_file(dir: &std::path::Path, tick: u64, bytes: &[u8], sync: bool) -> Result<()> {
    let path = dir.join(snapshot_file_name(tick));
    let tmp = dir.join(format!("{}{}", snapshot_file_name(tick), super::TMP_SUFFIX));
    let written = (|| {
        // A new file, never what the name holds already: a leftover `.tmp` is replaced, and a
        // link or FIFO put there is not followed (red team of issue 12: a link made the
        // runtime overwrite the file it pointed to, a FIFO blocked the writer for good).
        let _ = std::fs::remove_file(&tmp);
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| io_error(&tmp, "creating a snapshot", &e))?;
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        file.write_all(first).map_err(|e| io_error(&tmp, "writing a snapshot", &e))?;
        crash_point("snapshot-write");
        file.write_all(rest).map_err(|e| io_error(&tmp, "writing a snapshot", &e))?;
        if sync {
            file.sync_data().map_err(|e| io_error(&tmp, "syncing a snapshot", &e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, "renaming a snapshot into place", &e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a new directory entry durable (Unix: fsync of the directory; elsewhere the file
/// system has no such call and creating the file is enough).
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, "syncing the journal directory", &e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// What the tick thread and the writer thread share.
struct State {
    /// Complete ticks waiting to be written.
    pending: Vec<u8>,
    /// The first tick in `pending` and the state hash before it.
    first_tick: u64,
    prev_hash: Digest,
    /// The last tick in `pending`, and how many ticks it holds.
    last_tick: u64,
    ticks: u64,
    /// The last tick synced.
    durable: Option<u64>,
    /// The writer failed: nothing more is written.
    error: Option<LockstepError>,
    /// The journal is closing: write what is pending (and sync, unless 'off'), then stop.
    closing: bool,
    /// Snapshots waiting to be written after `pending` (tick, bytes).
    snapshots: Vec<(u64, Vec<u8>)>,
    /// Their bytes (counted in the back-pressure bound with `pending`).
    snapshot_bytes: usize,
    /// Explicit syncs asked for, and done (`sync()` waits until done reaches its number).
    syncs_asked: u64,
    syncs_done: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: work arrived, a sync was asked for, closing.
    work: Condvar,
    /// Wakes the tick thread: room in `pending`, a sync done, an error.
    progress: Condvar,
    /// `state.error.is_some()`, readable without the lock (checked before every input).
    failed: AtomicBool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A writer thread with its segments. Group commit: it writes and syncs what is pending once
/// [`GROUP_SYNC_TICKS`] ticks wait, or [`GROUP_SYNC_MS`] ms after its last sync, whichever
/// comes first; with `sync: false` ('off') it writes at the same cadence and never syncs on
/// its own. Dropping it writes (and syncs) what is pending and joins the thread.
pub(crate) struct Background {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// `durable`: the last tick already on stable storage (a recovered journal's).
    pub(crate) fn spawn(writer: SegmentWriter, sync: bool, durable: Option<u64>) -> Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::new(),
                first_tick: 0,
                prev_hash: Digest::default(),
                last_tick: 0,
                ticks: 0,
                durable,
                error: None,
                closing: false,
                snapshots: Vec::new(),
                snapshot_bytes: 0,
                syncs_asked: 0,
                syncs_done: 0,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            failed: AtomicBool::new(false),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lockstep-journal".into())
            .spawn(move || write_loop(&for_thread, writer, sync))
            .map_err(|e| LockstepError::JournalIo { path: "(writer thread)".into(), reason: format!("cannot start the journal's writer thread: {e}") })?;
        Ok(Self { shared, thread: Some(thread) })
    }

    pub(crate) fn error(&self) -> Option<LockstepError> {
        if !self.shared.failed.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.shared.state).error.clone()
    }

    pub(crate) fn durable(&self) -> Option<u64> {
        lock(&self.shared.state).durable
    }

    /// Hands the complete tick `tick` (its records and those before it since the last hand-over,
    /// in `buf`, which comes back empty) to the writer. Waits only while more than
    /// [`MAX_UNWRITTEN_BYTES`] wait for the disk. Returns the durable tick.
    pub(crate) fn hand_over(&self, buf: &mut Vec<u8>, first_tick: u64, prev_hash: Digest, tick: u64) -> Result<Option<u64>> {
        let mut st = lock(&self.shared.state);
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        let was_idle = st.ticks == 0;
        if was_idle {
            // Swap: the writer's empty buffer comes back to be filled next (no allocation).
            std::mem::swap(&mut st.pending, buf);
            st.first_tick = first_tick;
            st.prev_hash = prev_hash;
        } else {
            st.pending.extend_from_slice(buf);
        }
        st.last_tick = tick;
        st.ticks += 1;
        // The writer sleeps without a deadline while nothing waits: wake it for the first tick
        // of a group (it then waits out the group's time) and when the group is full.
        if was_idle || st.ticks >= GROUP_SYNC_TICKS {
            self.shared.work.notify_one();
        }
        while st.pending.len() + st.snapshot_bytes > MAX_UNWRITTEN_BYTES && st.error.is_none() {
            st = self.shared.progress.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        Ok(st.durable)
    }

    /// Hands the snapshot at `tick` to the writer, which writes it after the ticks handed over
    /// before it. Waits while more than [`MAX_UNWRITTEN_BYTES`] wait for the disk.
    pub(crate) fn hand_over_snapshot(&self, tick: u64, bytes: Vec<u8>) -> Result<()> {
        let mut st = lock(&self.shared.state);
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        st.snapshot_bytes += bytes.len();
        st.snapshots.push((tick, bytes));
        self.shared.work.notify_one();
        while st.pending.len() + st.snapshot_bytes > MAX_UNWRITTEN_BYTES && !st.snapshots.is_empty() && st.error.is_none() {
            st = self.shared.progress.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        match &st.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Writes and syncs everything handed over so far, now; returns the durable tick.
    pub(crate) fn sync(&self) -> Result<Option<u64>> {
        let mut st = lock(&self.shared.state);
        st.syncs_asked += 1;
        let ticket = st.syncs_asked;
        self.shared.work.notify_one();
        while st.syncs_done < ticket && st.error.is_none() {
            st = self.shared.progress.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        match &st.error {
            Some(e) => Err(e.clone()),
            None => Ok(st.durable),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        lock(&self.shared.state).closing = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(e) = lock(&self.shared.state).error.take() {
            tracing::error!(target: "lockstep::journal", "journal closed after an error: {e}");
        }
    }
}

/// The writer thread: waits for a group, writes it, syncs it (if `sync`), records the durable
/// tick; stops after an error or once closing and drained.
fn write_loop(shared: &Shared, mut writer: SegmentWriter, sync: bool) {
    let group = Duration::from_millis(GROUP_SYNC_MS);
    let mut chunk = Vec::new();
    let mut last_sync = Instant::now();
    // The last tick written: what a sync makes durable.
    let mut written: Option<u64> = lock(&shared.state).durable;
    loop {
        let mut st = lock(&shared.state);
        loop {
            if st.closing || st.syncs_asked > st.syncs_done || st.ticks >= GROUP_SYNC_TICKS || !st.snapshots.is_empty() {
                break;
            }
            if st.ticks == 0 {
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let waited = last_sync.elapsed();
            if waited >= group {
                break;
            }
            st = shared.work.wait_timeout(st, group - waited).unwrap_or_else(|p| p.into_inner()).0;
        }
        std::mem::swap(&mut st.pending, &mut chunk);
        let snapshots = std::mem::take(&mut st.snapshots);
        let (first_tick, prev_hash, last_tick, ticks) = (st.first_tick, st.prev_hash, st.last_tick, st.ticks);
        st.ticks = 0;
        let (closing, asked) = (st.closing, st.syncs_asked);
        let must_sync = asked > st.syncs_done || (sync && (ticks > 0 || closing));
        drop(st);
        shared.progress.notify_all();

        let mut result = writer.write_chunk(&chunk, first_tick, &prev_hash);
        chunk.clear();
        if ticks > 0 && result.is_ok() {
            written = Some(last_tick);
        }
        // Snapshots are written after the ticks before them are on disk (synced, unless 'off').
        let must_sync = must_sync || (sync && !snapshots.is_empty());
        if must_sync && result.is_ok() {
            result = writer.sync();
        }
        last_sync = Instant::now();
        let snapshot_bytes: usize = snapshots.iter().map(|(_, b)| b.len()).sum();
        for (tick, bytes) in &snapshots {
            if result.is_ok() {
                result = writer.write_snapshot(*tick, bytes);
            }
        }
        drop(snapshots);

        let mut st = lock(&shared.state);
        st.snapshot_bytes -= snapshot_bytes;
        match result {
            Ok(()) => {
                if must_sync {
                    st.durable = written;
                }
                st.syncs_done = asked;
            }
            Err(e) => {
                tracing::error!(target: "lockstep::journal", "{e}");
                st.error = Some(e);
                shared.failed.store(true, Ordering::Release);
            }
        }
        let stop = st.error.is_some() || (closing && st.ticks == 0);
        drop(st);
        shared.progress.notify_all();
        if stop {
            return;
        }
    }
}
