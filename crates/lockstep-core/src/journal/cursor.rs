//! Time travel (docs/JOURNAL.md, "Time travel"): a read-only cursor over a recorded session, a
//! journal directory or a replay log in memory. It indexes where each tick's records start
//! (one read of the files, nothing applied), then `seek(tick)` restores the nearest snapshot at
//! or before the tick (the journal's own, or one the cursor took as it replayed) and replays
//! forward to it, verifying every tick hash on the way; `fork` continues from the cursor as a
//! live runtime with a journal of its own whose Journal record names its parent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::read::{corrupt, in_file, list_segments, read_file, read_regular, scan, segment_header_of};
use super::recover::{base_snapshot_error, check_snapshot_memory, list_snapshots, session_start, SessionStart, SkippedSnapshot};
use crate::bus::AgentId;
use crate::error::{Digest, LockstepError, Result};
use crate::observe::AgentMessages;
use crate::replay::{ReplayTrust, Replayer, Step};
use crate::replay_log::{Lineage, LogReader, Record, SessionConfig, HEADER_BYTES};
use crate::runtime::Runtime;
use crate::snapshot::RestoreOptions;
use crate::DeepHash;

/// How [`JournalCursor`] opens a session.
#[derive(Debug, Clone)]
pub struct CursorOptions {
    /// Worker threads of the replay (results never depend on it).
    pub workers: usize,
    /// What the caller trusts (as `replay_trusting`); `None`: the log's own settings.
    pub trust: Option<ReplayTrust>,
    /// For a log that starts from a snapshot (a Base record): that snapshot's bytes.
    pub snapshot: Option<Vec<u8>>,
    /// While replaying forward the cursor keeps a snapshot in memory every this many ticks
    /// where the journal has none, so that a later seek replays at most this many ticks
    /// (0: never; default 1,000). Bounded by `limits::MAX_CURSOR_CACHE_BYTES`.
    pub snapshot_interval_ticks: u64,
    /// Asked before each tick a seek replays: once it answers true, the seek stops there with
    /// `E_INTERRUPTED` (another thread's way to end a long replay: a process exiting, a server
    /// closing). `None`: never.
    pub interrupt: Option<Interrupt>,
}

impl Default for CursorOptions {
    fn default() -> Self {
        Self { workers: 1, trust: None, snapshot: None, snapshot_interval_ticks: super::DEFAULT_SNAPSHOT_INTERVAL_TICKS, interrupt: None }
    }
}

/// Whether a cursor's replay should stop ([`CursorOptions::interrupt`]): called from the
/// thread that seeks, set from any.
#[derive(Clone)]
pub struct Interrupt(Arc<dyn Fn() -> bool + Send + Sync>);

impl Interrupt {
    /// Interrupted while `asked()` answers true.
    pub fn new(asked: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(asked))
    }

    /// Interrupted while `flag` is set.
    pub fn flag(flag: Arc<std::sync::atomic::AtomicBool>) -> Self {
        Self::new(move || flag.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn asked(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupt")
    }
}

/// What one `seek` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeekReport {
    /// The cursor's tick now (ticks run: the state before tick `tick` runs).
    pub tick: u64,
    /// Ticks replayed (and verified) to get there.
    pub ticks_replayed: u64,
    /// The snapshot it restored first, if it did not go on from where it was.
    pub from_snapshot: Option<u64>,
}

/// Where a snapshot the cursor may restore lives.
#[derive(Clone)]
enum SnapshotAt {
    /// A file of the journal (checked against the journal's hash when restored).
    File(PathBuf),
    /// One the cursor took of its own replay, which started from the journal's snapshot of
    /// that tick (`None`: from the session's start).
    Memory(Arc<Vec<u8>>, Option<u64>),
}

/// A failure of a replay from a journal snapshot, that snapshot's tick, and the snapshots set
/// aside while an older start is tried (it and the cursor's own taken from it).
type SetAside = (String, u64, Vec<(u64, SnapshotAt)>);

impl SnapshotAt {
    /// The journal snapshot a cursor's own snapshot descends from (a file is its own).
    fn origin(&self) -> Option<u64> {
        match self {
            SnapshotAt::File(_) => None,
            SnapshotAt::Memory(_, origin) => *origin,
        }
    }
}

/// The session's bytes: a journal's segment files, or one log in memory.
enum Files {
    Dir { segments: Vec<PathBuf>, loaded: Option<(usize, Arc<Vec<u8>>)> },
    Log(Arc<Vec<u8>>),
}

impl Files {
    fn bytes(&mut self, file: usize) -> Result<Arc<Vec<u8>>> {
        match self {
            Files::Log(b) => Ok(b.clone()),
            Files::Dir { segments, loaded } => {
                if let Some((i, b)) = loaded.as_ref() {
                    if *i == file {
                        return Ok(b.clone());
                    }
                }
                let path = segments.get(file).ok_or_else(|| corrupt(Path::new("."), 0, format!("no segment {file}")))?;
                let b = Arc::new(read_file(path)?);
                *loaded = Some((file, b.clone()));
                Ok(b)
            }
        }
    }

    fn name(&self, file: usize) -> PathBuf {
        match self {
            Files::Dir { segments, .. } => segments.get(file).cloned().unwrap_or_default(),
            Files::Log(_) => PathBuf::from("(log)"),
        }
    }
}

/// A byte position: file index and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    file: u32,
    offset: u64,
}

/// A read-only cursor over a recorded session (`openJournal` in JS). Between calls it holds a
/// replaying runtime at one tick, readable through [`JournalCursor::runtime`].
pub struct JournalCursor {
    files: Files,
    session: SessionConfig,
    base: Option<((u64, Digest, Digest), u64)>,
    base_snapshot: Option<Vec<u8>>,
    id: Option<[u8; 16]>,
    lineage: Option<Lineage>,
    workers: usize,
    trust: Option<ReplayTrust>,
    /// The first tick (0, or the tick a Base record starts from) and the ticks whole.
    first_tick: u64,
    end_tick: u64,
    /// Where tick `first_tick + i`'s records start, and the state hash before it.
    starts: Vec<Pos>,
    hashes: Vec<Digest>,
    /// Where each segment's records start (for going on from the end of the one before).
    record_starts: Vec<u64>,
    /// Where each file's whole ticks end.
    complete_ends: Vec<u64>,
    snapshots: BTreeMap<u64, SnapshotAt>,
    cache_interval: u64,
    cache_bytes: usize,
    skipped: Vec<SkippedSnapshot>,
    /// The replay, at `replayer.rt.current_tick()`, and the next record to apply.
    replayer: Option<Replayer>,
    next: Pos,
    /// The replay is not at a tick boundary it verified (a step failed and the cursor could not
    /// be put back): the next seek restores a snapshot rather than going on from here.
    dirty: bool,
    /// The journal's snapshot file the replay started from (directly or through the cursor's
    /// own snapshots), and where the last failed step's replay had started from.
    origin: Option<u64>,
    failed_origin: Option<u64>,
    interrupt: Option<Interrupt>,
}

impl JournalCursor {
    /// Opens the journal in `dir` (read only: no lock is taken; a journal being written is
    /// read as far as it is complete when opened). Every segment is read once to index its
    /// ticks (CRCs checked, nothing applied).
    pub fn open_dir(dir: &Path, options: CursorOptions) -> Result<Self> {
        let segments = list_segments(dir)?;
        let count = segments.len();
        let first = read_file(&segments[0].path)?;
        if segment_header_of(&first, &segments[0].path, 1, count)?.is_none() {
            return Err(corrupt(&segments[0].path, 0, "shorter than its header"));
        }
        let start = session_start(&first, &segments[0].path)?;
        let id = Some(start.id(&first));
        let mut index = Index::new(&start);
        let mut paths = Vec::with_capacity(count);
        for (i, seg) in segments.iter().enumerate() {
            if options.interrupt.as_ref().is_some_and(Interrupt::asked) {
                return Err(LockstepError::Interrupted { during: format!("opening the journal (before segment {} of {count})", i + 1) });
            }
            let bytes = if i == 0 { first.clone() } else { read_file(&seg.path)? };
            let Some(header) = segment_header_of(&bytes, &seg.path, seg.index, count)? else { break };
            let s = scan(&bytes, &seg.path, &header, seg.index, i + 1 == count)?;
            if i > 0 && header.first_tick != index.end_tick() {
                return Err(corrupt(
                    &seg.path,
                    16,
                    format!("starts at tick {}, but the segments before it end at tick {}", header.first_tick, index.end_tick()),
                ));
            }
            index.add(i as u32, &bytes[..s.complete_end], header.len).map_err(|e| in_file(&seg.path, e))?;
            paths.push(seg.path.clone());
        }
        let base_snapshot = match start.base {
            Some(((tick, _, _), _)) => {
                let file = dir.join(super::snapshot_file_name(tick));
                Some(read_regular(&file).map_err(|e| corrupt(&file, 0, format!("the journal starts from this snapshot, which cannot be read: {e}")))?)
            }
            None => None,
        };
        let mut snapshots = BTreeMap::new();
        for (tick, file) in list_snapshots(dir)?.0 {
            if tick > index.first_tick && tick <= index.end_tick() {
                snapshots.insert(tick, SnapshotAt::File(file));
            }
        }
        Self::new(Files::Dir { segments: paths, loaded: None }, start, base_snapshot, id, index, snapshots, options)
    }

    /// Opens a replay log in memory (what `replay_log()` returns, whole or a prefix).
    pub fn open_log(log: Vec<u8>, options: CursorOptions) -> Result<Self> {
        crate::replay_log::read_header(&log)?;
        let start = session_start(&log, Path::new("(log)")).map_err(|e| match e {
            LockstepError::JournalCorrupt { offset, reason, .. } => LockstepError::ReplayCorrupt { offset, reason },
            other => other,
        })?;
        let mut index = Index::new(&start);
        index.add(0, &log, HEADER_BYTES).map_err(|e| match e {
            LockstepError::ReplayCorrupt { .. } => e,
            other => other,
        })?;
        let base_snapshot = match (start.base, &options.snapshot) {
            (Some(((tick, snapshot, _), _)), None) => return Err(LockstepError::ReplayNeedsSnapshot { tick, snapshot: snapshot.to_hex() }),
            (Some(_), Some(s)) => Some(s.clone()),
            (None, _) => None,
        };
        let id = start.journal.map(|(id, _)| id);
        Self::new(Files::Log(Arc::new(log)), start, base_snapshot, id, index, BTreeMap::new(), options)
    }

    fn new(
        files: Files,
        start: SessionStart,
        base_snapshot: Option<Vec<u8>>,
        id: Option<[u8; 16]>,
        index: Index,
        snapshots: BTreeMap<u64, SnapshotAt>,
        options: CursorOptions,
    ) -> Result<Self> {
        let mut cursor = Self {
            files,
            session: start.session,
            base: start.base,
            base_snapshot,
            id,
            lineage: start.journal.and_then(|(_, l)| l),
            workers: options.workers,
            trust: options.trust,
            first_tick: index.first_tick,
            end_tick: index.end_tick(),
            starts: index.starts,
            hashes: index.hashes,
            record_starts: index.record_starts,
            complete_ends: index.complete_ends,
            snapshots,
            cache_interval: options.snapshot_interval_ticks,
            cache_bytes: 0,
            skipped: Vec::new(),
            replayer: None,
            next: Pos { file: 0, offset: 0 },
            dirty: false,
            origin: None,
            failed_origin: None,
            interrupt: options.interrupt,
        };
        cursor.seek(cursor.first_tick)?;
        Ok(cursor)
    }

    /// The first tick of the session (0, or the tick its snapshot was taken at).
    pub fn first_tick(&self) -> u64 {
        self.first_tick
    }

    /// Ticks the session holds whole: the cursor can be at `first_tick()..=end_tick()`.
    pub fn end_tick(&self) -> u64 {
        self.end_tick
    }

    /// The cursor's tick: ticks run, the state before tick `tick()` runs.
    pub fn tick(&self) -> u64 {
        self.replayer.as_ref().map_or(self.first_tick, |r| r.rt.current_tick())
    }

    /// The journal's id (a log without a Journal record has none).
    pub fn id(&self) -> Option<[u8; 16]> {
        self.id
    }

    /// Where the session was forked from, if it was.
    pub fn lineage(&self) -> Option<Lineage> {
        self.lineage
    }

    /// The session's settings.
    pub fn session(&self) -> &SessionConfig {
        &self.session
    }

    /// The ticks of the snapshots a seek can start from (the journal's and the cursor's own).
    pub fn snapshot_ticks(&self) -> Vec<u64> {
        self.snapshots.keys().copied().collect()
    }

    /// Snapshot files that were found damaged (or not the session's state) and are not used.
    pub fn skipped_snapshots(&self) -> &[SkippedSnapshot] {
        &self.skipped
    }

    /// The state hash the session recorded after `tick - 1` ticks (the hash before tick
    /// `tick`), without moving.
    pub fn recorded_hash(&self, tick: u64) -> Option<Digest> {
        tick.checked_sub(self.first_tick).and_then(|i| self.hashes.get(i as usize)).copied()
    }

    /// The runtime at the cursor's tick, to read (inspect, agent_count, state_hash...).
    pub fn runtime(&self) -> &Runtime {
        match &self.replayer {
            Some(r) => &r.rt,
            None => unreachable!("a cursor always holds a replay once opened"),
        }
    }

    /// The deep hash at the cursor's tick (every agent's memory).
    pub fn deep_hash(&mut self) -> Result<DeepHash> {
        Ok(self.replay()?.rt.deep_hash())
    }

    /// `length` bytes of agent `id`'s memory from `offset`, at the cursor's tick.
    pub fn read_memory(&self, id: AgentId, offset: u64, length: u64) -> Result<Vec<u8>> {
        self.runtime().read_memory(id, offset, length)
    }

    fn replay(&mut self) -> Result<&mut Replayer> {
        self.replayer.as_mut().ok_or_else(|| LockstepError::InvalidArgument { name: "cursor".into(), reason: "no replay".into() })
    }

    /// Moves to `tick` (`first_tick()..=end_tick()`): from where it is if that is on the way
    /// and no snapshot is nearer, else from the newest snapshot at or before `tick`, replaying
    /// and verifying every tick. Costs at most one snapshot interval of replay once the
    /// snapshots are there (the journal's, or those the cursor took replaying this far).
    pub fn seek(&mut self, tick: u64) -> Result<SeekReport> {
        self.falling_back(|c| c.seek_once(tick))
    }

    /// Runs `f` (a seek); when it fails replaying from a journal snapshot (a tick that does not
    /// replay to its hash, a record that does not apply), runs it again without that snapshot
    /// and the cursor's own taken from it: if that gets past the failure, the snapshot was not
    /// the session's state (checksums and state hash held) and is skipped for good
    /// (`skipped_snapshots`); the same failure again is the journal's, the snapshot is put back
    /// and the failure returned (red team of issue 12).
    fn falling_back<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T>) -> Result<T> {
        // The last failure, the snapshot set aside for it, and the snapshots taken from it.
        let mut last: Option<SetAside> = None;
        loop {
            self.failed_origin = None;
            let result = f(self);
            let failed = matches!(&result, Err(LockstepError::JournalCorrupt { .. } | LockstepError::ReplayCorrupt { .. }));
            let error = result.as_ref().err().map(|e| e.to_string());
            match (failed, self.failed_origin.take()) {
                (true, Some(origin)) if last.as_ref().is_none_or(|(e, ..)| Some(e) != error.as_ref()) => {
                    // A different failure after the last snapshot was set aside: that one was
                    // not the session's state.
                    if let Some((e, tick, _)) = last.take() {
                        self.give_up(tick, e);
                    }
                    let aside: Vec<(u64, SnapshotAt)> =
                        self.snapshots.iter().filter(|(&t, s)| t == origin || s.origin() == Some(origin)).map(|(&t, s)| (t, s.clone())).collect();
                    if aside.is_empty() {
                        // Nothing left to set aside (it went already): the failure stands.
                        return result;
                    }
                    for (t, _) in &aside {
                        self.snapshots.remove(t);
                    }
                    last = Some((error.unwrap_or_default(), origin, aside));
                    self.dirty = true;
                }
                (true, _) => {
                    // The same failure without it: the journal's. Put it back.
                    if let Some((_, _, aside)) = last {
                        self.snapshots.extend(aside);
                    }
                    return result;
                }
                (false, _) => {
                    // Got past it (else another kind of error: the snapshot is put back).
                    match last.take() {
                        Some((e, tick, _)) if result.is_ok() => self.give_up(tick, e),
                        Some((_, _, aside)) => self.snapshots.extend(aside),
                        None => {}
                    }
                    return result;
                }
            }
        }
    }

    /// Records the journal snapshot of `tick` as not usable: the replay from it failed with
    /// `error` where an older start went on.
    fn give_up(&mut self, tick: u64, error: String) {
        let file = self.snapshot_path(tick).unwrap_or_else(|| PathBuf::from("(log)"));
        self.skipped.push(SkippedSnapshot { file, tick, reason: format!("it restores, but the session does not replay from it: {error}") });
    }

    /// The journal's snapshot file of `tick` (none for a log).
    fn snapshot_path(&self, tick: u64) -> Option<PathBuf> {
        match &self.files {
            Files::Dir { segments, .. } => segments.first().and_then(|s| s.parent()).map(|d| d.join(super::snapshot_file_name(tick))),
            Files::Log(_) => None,
        }
    }

    fn seek_once(&mut self, tick: u64) -> Result<SeekReport> {
        if tick < self.first_tick || tick > self.end_tick {
            return Err(LockstepError::InvalidArgument {
                name: "tick".into(),
                reason: format!("{tick} is outside the recorded session: ticks {}..={} can be visited", self.first_tick, self.end_tick),
            });
        }
        let here = self.replayer.as_ref().map(|r| r.rt.current_tick());
        let nearest = self.snapshots.range(..=tick).next_back().map(|(t, _)| *t);
        let mut from_snapshot = None;
        let go_on = !self.dirty && here.is_some_and(|h| h <= tick && nearest.is_none_or(|s| s <= h));
        if !go_on {
            // A restore can take as long as many ticks (a large session's snapshot).
            self.check_interrupt(tick)?;
            from_snapshot = self.restore_nearest(tick)?;
            self.dirty = false;
        }
        let before = self.tick();
        while self.tick() < tick {
            self.check_interrupt(tick)?;
            self.step_or_reset(false)?;
        }
        Ok(SeekReport { tick, ticks_replayed: tick - before, from_snapshot })
    }

    /// `E_INTERRUPTED` once the interrupt is set. Asked only between verified ticks (and before
    /// a restore), so the cursor stays at a tick the session had.
    fn check_interrupt(&self, target: u64) -> Result<()> {
        match &self.interrupt {
            Some(i) if i.asked() => {
                Err(LockstepError::Interrupted { during: format!("seeking tick {target}, at tick {}, where the cursor stays", self.tick()) })
            }
            _ => Ok(()),
        }
    }

    /// `step`, and when it fails (a record that does not apply, a tick that does not replay to
    /// its hash, a file that changed), the cursor is put back at the tick it was at: a failed
    /// step leaves the replay inside a tick or past a divergence, a state the session never
    /// had, which a later seek must not go on from (red team of issue 12).
    fn step_or_reset(&mut self, traced: bool) -> Result<()> {
        let at = self.tick();
        let result = self.step(traced);
        if result.is_err() {
            self.failed_origin = self.origin;
            // Best effort: if even that fails, `dirty` makes the next seek start afresh.
            self.dirty = true;
            if self.restore_nearest(at).is_ok() {
                let mut back = Ok(());
                while back.is_ok() && self.tick() < at {
                    back = self.step(false);
                }
                self.dirty = back.is_err();
            }
        }
        result
    }

    /// One tick forward; `false` at the end of the session.
    pub fn next_tick(&mut self) -> Result<bool> {
        if self.tick() >= self.end_tick {
            return Ok(false);
        }
        let t = self.tick() + 1;
        self.seek(t).map(|_| true)
    }

    /// One tick back (a seek from the nearest snapshot); `false` at the first tick.
    pub fn prev_tick(&mut self) -> Result<bool> {
        if self.tick() <= self.first_tick {
            return Ok(false);
        }
        let t = self.tick() - 1;
        self.seek(t).map(|_| true)
    }

    /// What every agent received and sent in tick `tick` (`first_tick()..end_tick()`),
    /// agents in id order (those that did neither left out). Runs that tick again with a
    /// trace, verified like any other: the cursor ends at `tick + 1`.
    pub fn messages_at(&mut self, tick: u64) -> Result<Vec<AgentMessages>> {
        if tick >= self.end_tick {
            return Err(LockstepError::InvalidArgument {
                name: "tick".into(),
                reason: format!("{tick} did not run in the recorded session (its ticks are {}..{})", self.first_tick, self.end_tick),
            });
        }
        self.falling_back(|c| {
            c.seek_once(tick)?;
            // Its traced step is a tick of replay like a seek's (to `tick + 1`).
            c.check_interrupt(tick + 1)?;
            c.replay()?.rt.set_tracing(true);
            let stepped = c.step_or_reset(true);
            let rt = &mut c.replay()?.rt;
            let trace = rt.take_trace();
            rt.set_tracing(false);
            stepped?;
            Ok(trace)
        })
    }

    /// Continues the session from the cursor's tick as a live runtime (restored from a
    /// snapshot of the cursor's state): new inputs, and with `options.journal` a new journal
    /// whose Journal record names this session (its id, the tick and the state hash) as its
    /// parent. Two forks of one point fed the same inputs compute the same hashes.
    pub fn fork(&mut self, options: RestoreOptions) -> Result<Runtime> {
        if self.dirty {
            return Err(LockstepError::InvalidArgument {
                name: "cursor".into(),
                reason: "a failed seek left the cursor between ticks: seek to a tick before forking".into(),
            });
        }
        let session = self.session.clone();
        let id = self.id;
        let rt = &mut self.replay()?.rt;
        let lineage = Lineage { journal: id, tick: rt.current_tick(), hash: rt.state_hash() };
        let bytes = rt.snapshot()?;
        Runtime::restore_forked(&bytes, options, &session, lineage)
    }

    /// Restores the newest snapshot at or before `tick` (or starts the session over); returns
    /// its tick. A snapshot file that does not restore, or is not the session's state at its
    /// tick, is dropped from the list (`skipped_snapshots`) and the next older one tried.
    fn restore_nearest(&mut self, tick: u64) -> Result<Option<u64>> {
        while let Some((&at, source)) = self.snapshots.range(..=tick).next_back() {
            let source = source.clone();
            let mut pos = self.starts[(at - self.first_tick) as usize];
            let restored = match &source {
                SnapshotAt::File(file) => {
                    let segment = self.files.bytes(pos.file as usize)?;
                    let expected = self.hashes[(at - self.first_tick) as usize];
                    let started = read_regular(file).map_err(|e| LockstepError::SnapshotCorrupt { offset: 0, reason: e.to_string() }).and_then(|bytes| {
                        let base = ((at, Digest(*blake3::hash(&bytes).as_bytes()), expected), 0);
                        Replayer::start_from(&self.session, self.workers, self.trust.as_ref(), Some(base), Some(&bytes)).map(Replayer::mid_session)
                    });
                    // Its memory against the journal's checkpoint of its tick, if there is one.
                    started.and_then(|mut r| {
                        let offset = check_snapshot_memory(&mut r, &segment, pos.offset as usize, at)?;
                        pos.offset = offset as u64;
                        Ok(r)
                    })
                }
                SnapshotAt::Memory(bytes, _) => {
                    let rt = &self.runtime().config().clone();
                    let options = RestoreOptions {
                        workers: self.workers,
                        trusted_keys: rt.trusted_keys.clone(),
                        dev_mode: rt.dev_mode,
                        max_events: rt.max_events,
                        ..RestoreOptions::default()
                    };
                    Runtime::restore_replaying(bytes, options).map(|rt| Replayer::from_runtime(rt, self.trust.is_some()))
                }
            };
            match restored {
                Ok(r) => {
                    self.replayer = Some(r);
                    self.next = pos;
                    self.origin = match source {
                        SnapshotAt::File(_) => Some(at),
                        SnapshotAt::Memory(_, origin) => origin,
                    };
                    return Ok(Some(at));
                }
                Err(e @ (LockstepError::SnapshotUntrusted { .. } | LockstepError::ReplayUntrusted { .. })) => return Err(e),
                Err(e) => {
                    self.snapshots.remove(&at);
                    if let SnapshotAt::File(file) = source {
                        self.skipped.push(SkippedSnapshot { file, tick: at, reason: e.to_string() });
                    }
                }
            }
        }
        let r = Replayer::start_from(&self.session, self.workers, self.trust.as_ref(), self.base, self.base_snapshot.as_deref()).map_err(|e| {
            match (self.base, self.base.and_then(|((tick, _, _), _)| self.snapshot_path(tick))) {
                (Some(((tick, _, _), _)), Some(file)) => base_snapshot_error(&file, tick, e),
                _ => in_file(&self.files.name(0), e),
            }
        })?;
        self.replayer = Some(r);
        self.next = Pos { file: 0, offset: self.record_starts[0] };
        self.origin = None;
        Ok(None)
    }

    /// Applies records up to and including the next TickEnd (and, unless `traced`, takes a
    /// snapshot into the cache when one is due).
    fn step(&mut self, traced: bool) -> Result<()> {
        loop {
            let Pos { file, offset } = self.next;
            let end = self.complete_ends.get(file as usize).copied().unwrap_or(0);
            if offset >= end {
                if file as usize + 1 >= self.complete_ends.len() {
                    return Err(LockstepError::InvalidArgument { name: "tick".into(), reason: "past the end of the recorded session".into() });
                }
                self.next = Pos { file: file + 1, offset: self.record_starts[file as usize + 1] };
                continue;
            }
            let bytes = self.files.bytes(file as usize)?;
            let name = self.files.name(file as usize);
            if end as usize > bytes.len() {
                return Err(corrupt(
                    &name,
                    bytes.len() as u64,
                    format!(
                        "{} bytes, but it held {end} when the cursor opened the journal: the file was cut or replaced since; open the journal again",
                        bytes.len()
                    ),
                ));
            }
            let mut reader = LogReader::at(&bytes[..end as usize], offset as usize);
            let record = reader.next_record().map_err(|e| in_file(&name, e))?.ok_or_else(|| corrupt(&name, offset, "no record where the index has one"))?;
            self.next = Pos { file, offset: reader.offset() };
            if matches!(record, Record::Config(_) | Record::Base { .. }) {
                continue;
            }
            let replayer = self.replay()?;
            match replayer.apply(record, offset, &mut |_| {}).map_err(|e| in_file(&name, e))? {
                Step::Applied => continue,
                Step::Ticked => break,
                Step::Stopped => {
                    let tick = replayer.rt.current_tick();
                    let d = replayer.report.divergence.clone();
                    return Err(corrupt(
                        &name,
                        offset,
                        match d {
                            Some(d) => format!(
                                "tick {} does not replay to its recorded hash (expected {}, got {}): the session cannot be visited past it",
                                d.tick, d.expected, d.actual
                            ),
                            None => format!("a Gap record at tick {tick}: the session cannot be visited past it"),
                        },
                    ));
                }
            }
        }
        let tick = self.tick();
        let due = !traced && self.cache_interval > 0 && tick.is_multiple_of(self.cache_interval) && !self.snapshots.contains_key(&tick);
        if due && self.cache_bytes < crate::limits::MAX_CURSOR_CACHE_BYTES {
            // Unsupported modules (table mutation): no cache, seeks replay from further back.
            if let Ok(bytes) = self.replay()?.rt.snapshot() {
                self.cache_bytes += bytes.len();
                self.snapshots.insert(tick, SnapshotAt::Memory(Arc::new(bytes), self.origin));
            }
        }
        Ok(())
    }
}

/// Where each tick's records start, built by reading the records of each file in order.
struct Index {
    first_tick: u64,
    starts: Vec<Pos>,
    hashes: Vec<Digest>,
    record_starts: Vec<u64>,
    complete_ends: Vec<u64>,
}

impl Index {
    fn new(start: &SessionStart) -> Self {
        let (first_tick, hash) = start.base.map_or((0, Digest::default()), |((t, _, h), _)| (t, h));
        Self { first_tick, starts: Vec::new(), hashes: vec![hash], record_starts: Vec::new(), complete_ends: Vec::new() }
    }

    /// Ticks indexed whole.
    fn end_tick(&self) -> u64 {
        self.first_tick + self.hashes.len() as u64 - 1
    }

    /// Reads `bytes` (file `file`, records from `from`) to the last whole tick.
    fn add(&mut self, file: u32, bytes: &[u8], from: usize) -> Result<()> {
        if self.starts.is_empty() {
            self.starts.push(Pos { file, offset: from as u64 });
        }
        self.record_starts.push(from as u64);
        let mut reader = LogReader::at(bytes, from);
        let mut complete = from as u64;
        while let Some(record) = reader.next_record()? {
            match record {
                Record::TickEnd { tick, hash, .. } => {
                    if tick != self.end_tick() {
                        return Err(LockstepError::ReplayCorrupt {
                            offset: complete,
                            reason: format!("TickEnd of tick {tick} where tick {} was expected", self.end_tick()),
                        });
                    }
                    self.hashes.push(hash);
                    complete = reader.offset();
                    self.starts.push(Pos { file, offset: complete });
                }
                Record::End { .. } => break,
                _ => {}
            }
        }
        self.complete_ends.push(complete);
        Ok(())
    }
}
