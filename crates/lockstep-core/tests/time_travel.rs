//! Time travel and fork (docs/JOURNAL.md, "Time travel"): a cursor over a journal or a log
//! lands on exactly the recorded state at every tick (state hash, deep hash, memory), seeks
//! cost at most one snapshot interval, `messages_at` reports what the tick delivered and sent,
//! damaged snapshots are skipped, and forks continue exactly with a checkable lineage.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use lockstep_core::journal::{CursorOptions, FsyncPolicy, JournalConfig, JournalCursor, Lineage, RecoverOptions};
use lockstep_core::snapshot::RestoreOptions;
use lockstep_core::{AgentId, Digest, Runtime, RuntimeConfig};

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("lockstep-tt-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const EVERY: u64 = 10;
const TICKS: u64 = 60;

fn journal(dir: &Path) -> JournalConfig {
    JournalConfig { dir: dir.to_path_buf(), fsync: FsyncPolicy::Off, segment_bytes: 8192, snapshot_interval_ticks: EVERY }
}

fn config(journal: Option<JournalConfig>, record: bool) -> RuntimeConfig {
    RuntimeConfig {
        workers: 2,
        seed: 5,
        max_agents: 64,
        fuel_per_call: 1_000_000,
        checkpoint_interval_ticks: 9,
        record,
        journal,
        ..RuntimeConfig::development()
    }
}

fn start(rt: &mut Runtime) {
    let gossip = rt.load_module(agent("gossip")).unwrap();
    for _ in 0..12 {
        rt.spawn(gossip).unwrap();
    }
    rt.spawn_bytes(agent("counter")).unwrap(); // 13
    rt.spawn_bytes(agent("echo")).unwrap(); // 14
}

fn step(rt: &mut Runtime, t: u64) -> lockstep_core::TickReport {
    if t.is_multiple_of(3) {
        rt.send(13, 1, 0, t.to_le_bytes().to_vec()).unwrap();
    }
    if t % 7 == 2 {
        rt.send(14, 2, 0, format!("echo {t}").into_bytes()).unwrap();
    }
    if t == 25 {
        rt.kill(2).unwrap();
    }
    rt.tick().unwrap()
}

/// What an uninterrupted run saw before each tick t (index t): state hash, deep hash, the
/// counter agent's first 4 KiB; and each tick's report.
struct Reference {
    hashes: Vec<Digest>,
    deep: Vec<Digest>,
    memory: Vec<Vec<u8>>,
    reports: Vec<lockstep_core::TickReport>,
}

fn reference(ticks: u64) -> Reference {
    let mut rt = Runtime::new(config(None, false)).unwrap();
    start(&mut rt);
    let mut r = Reference { hashes: vec![], deep: vec![], memory: vec![], reports: vec![] };
    for t in 0..=ticks {
        r.hashes.push(rt.state_hash());
        r.deep.push(rt.deep_hash().hash);
        r.memory.push(rt.read_memory(13, 0, 4096).unwrap());
        if t < ticks {
            r.reports.push(step(&mut rt, t));
        }
    }
    r
}

fn journaled(dir: &TempDir) -> Vec<u8> {
    let mut rt = Runtime::new(config(Some(journal(dir.path())), true)).unwrap();
    start(&mut rt);
    for t in 0..TICKS {
        step(&mut rt, t);
    }
    rt.replay_log().unwrap()
}

fn at(cursor: &mut JournalCursor, r: &Reference, t: u64) {
    assert_eq!(cursor.tick(), t);
    assert_eq!(cursor.runtime().state_hash(), r.hashes[t as usize], "state hash at {t}");
    if t == 0 {
        // Before tick 0's inputs (its spawns): no agent yet.
        assert_eq!(cursor.runtime().agent_count(), 0);
        return;
    }
    assert_eq!(cursor.deep_hash().unwrap().hash, r.deep[t as usize], "deep hash at {t}");
    assert_eq!(cursor.read_memory(13, 0, 4096).unwrap(), r.memory[t as usize], "memory at {t}");
}

#[test]
fn a_cursor_lands_on_the_recorded_state_at_every_tick_within_one_snapshot_interval() {
    let r = reference(TICKS);
    let dir = TempDir::new("seek");
    let log = journaled(&dir);
    let mut cursor = JournalCursor::open_dir(dir.path(), CursorOptions { workers: 2, ..CursorOptions::default() }).unwrap();
    assert_eq!((cursor.first_tick(), cursor.end_tick()), (0, TICKS));
    assert_eq!(cursor.snapshot_ticks(), vec![10, 20, 30, 40, 50, 60]);
    assert!(cursor.id().is_some() && cursor.lineage().is_none());
    at(&mut cursor, &r, 0);
    for t in [37, 5, 59, 60, 21, 20, 0, 44, 43, 12] {
        let report = cursor.seek(t).unwrap();
        assert!(report.ticks_replayed <= EVERY, "seek to {t} replayed {} ticks: {report:?}", report.ticks_replayed);
        at(&mut cursor, &r, t);
    }
    // next/prev walk the same states.
    cursor.seek(28).unwrap();
    assert!(cursor.next_tick().unwrap());
    at(&mut cursor, &r, 29);
    assert!(cursor.prev_tick().unwrap() && cursor.prev_tick().unwrap());
    at(&mut cursor, &r, 27);
    cursor.seek(TICKS).unwrap();
    assert!(!cursor.next_tick().unwrap());
    cursor.seek(0).unwrap();
    assert!(!cursor.prev_tick().unwrap());
    assert_eq!(cursor.seek(TICKS + 1).unwrap_err().code(), "E_INVALID_ARGUMENT");
    // The killed agent's memory is gone: a typed error, not a panic.
    cursor.seek(30).unwrap();
    assert_eq!(cursor.read_memory(2, 0, 16).unwrap_err().code(), "E_INVALID_ARGUMENT");
    assert_eq!(cursor.read_memory(99, 0, 16).unwrap_err().code(), "E_UNKNOWN_AGENT");
    assert_eq!(cursor.read_memory(13, u64::MAX, 2).unwrap_err().code(), "E_INVALID_ARGUMENT");

    // The same from the log in memory: no snapshots but those the cursor takes (every 8).
    let mut cursor = JournalCursor::open_log(log, CursorOptions { snapshot_interval_ticks: 8, ..CursorOptions::default() }).unwrap();
    cursor.seek(50).unwrap();
    at(&mut cursor, &r, 50);
    let back = cursor.seek(20).unwrap();
    assert_eq!((back.from_snapshot, back.ticks_replayed), (Some(16), 4));
    at(&mut cursor, &r, 20);
}

#[test]
fn messages_at_reports_what_each_agent_received_and_sent() {
    let r = reference(TICKS);
    let dir = TempDir::new("messages");
    journaled(&dir);
    let mut cursor = JournalCursor::open_dir(dir.path(), CursorOptions::default()).unwrap();
    for t in [0u64, 3, 9, 16, 30, 59] {
        let agents = cursor.messages_at(t).unwrap();
        assert_eq!(cursor.tick(), t + 1);
        let received: usize = agents.iter().map(|a| a.received.len()).sum();
        let sent: usize = agents.iter().map(|a| a.sent.len()).sum();
        let report = &r.reports[t as usize];
        assert_eq!(received as u64, report.messages_delivered, "tick {t}");
        assert_eq!(sent as u64, report.messages_routed, "tick {t}");
        assert!(agents.windows(2).all(|w| w[0].agent < w[1].agent));
        let counter = agents.iter().find(|a| a.agent == 13);
        if t.is_multiple_of(3) {
            // The host's message to the counter that tick, delivered in it.
            let counter = counter.expect("the counter received");
            assert!(counter.received.iter().any(|m| m.from == 0 && m.payload == t.to_le_bytes()), "tick {t}: {counter:?}");
            assert!(counter.sent.iter().any(|m| m.to == 0), "it answers the host");
        }
        for a in &agents {
            assert!(a.received.iter().all(|m| m.to == a.agent) && a.sent.iter().all(|m| m.from == a.agent));
        }
    }
    assert_eq!(cursor.messages_at(TICKS).unwrap_err().code(), "E_INVALID_ARGUMENT");
}

#[test]
fn a_damaged_snapshot_is_skipped_and_the_state_is_still_exact() {
    let r = reference(TICKS);
    let dir = TempDir::new("damaged");
    journaled(&dir);
    let file = dir.path().join(lockstep_core::journal::snapshot_file_name(40));
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let mut cursor = JournalCursor::open_dir(dir.path(), CursorOptions::default()).unwrap();
    let report = cursor.seek(45).unwrap();
    assert_eq!((report.from_snapshot, report.ticks_replayed), (Some(30), 15));
    at(&mut cursor, &r, 45);
    assert_eq!(cursor.skipped_snapshots().len(), 1);
    assert_eq!(cursor.skipped_snapshots()[0].tick, 40);
}

fn restore_options(journal: Option<JournalConfig>) -> RestoreOptions {
    RestoreOptions { workers: 2, journal, ..RestoreOptions::development() }
}

#[test]
fn forks_continue_exactly_into_journals_that_name_their_parent() {
    let r = reference(TICKS + 15);
    let parent = TempDir::new("parent");
    journaled(&parent);
    let mut cursor = JournalCursor::open_dir(parent.path(), CursorOptions::default()).unwrap();
    cursor.seek(33).unwrap();
    let (a, b) = (TempDir::new("fork-a"), TempDir::new("fork-b"));
    let mut forks: Vec<Runtime> = [&a, &b].iter().map(|d| cursor.fork(restore_options(Some(journal(d.path())))).unwrap()).collect();
    // Fed the parent's own inputs, a fork computes the parent's hashes; both forks agree.
    for fork in &mut forks {
        assert_eq!(fork.current_tick(), 33);
        for t in 33..TICKS + 15 {
            assert_eq!(step(fork, t).hash, r.hashes[t as usize + 1], "tick {t}");
        }
    }
    let fork_hash = forks[0].state_hash();
    let fork_id = forks[0].journal_id().unwrap();
    drop(forks);
    // The fork's journal names its parent: id, tick and state hash, checkable against it.
    let mut child = JournalCursor::open_dir(a.path(), CursorOptions::default()).unwrap();
    let lineage = child.lineage().expect("a fork has a parent");
    assert_eq!(lineage, Lineage { journal: cursor.id(), tick: 33, hash: r.hashes[33] });
    assert_eq!(child.id(), Some(fork_id));
    assert_ne!(child.id(), cursor.id());
    cursor.seek(lineage.tick).unwrap();
    assert_eq!(cursor.runtime().state_hash(), lineage.hash);
    assert_eq!((child.first_tick(), child.end_tick()), (33, TICKS + 15));
    child.seek(50).unwrap();
    assert_eq!(child.runtime().state_hash(), r.hashes[50]);
    assert_eq!(child.deep_hash().unwrap().hash, r.deep[50]);
    // A fork's journal recovers (from the snapshot it starts from, or a later one).
    let (mut recovered, report) = Runtime::recover(a.path(), RecoverOptions { workers: 1, ..RecoverOptions::default() }).unwrap();
    assert_eq!((report.tick, report.snapshot_tick), (TICKS + 15, Some(70)));
    assert_eq!(recovered.state_hash(), fork_hash);
    step(&mut recovered, TICKS + 15);
    // New inputs make a different future; the same new inputs the same one.
    let mut x = cursor.fork(restore_options(None)).unwrap();
    let mut y = cursor.fork(restore_options(None)).unwrap();
    for rt in [&mut x, &mut y] {
        rt.send(14, 9, 0, b"a new future".to_vec()).unwrap();
        rt.tick().unwrap();
    }
    assert_eq!(x.state_hash(), y.state_hash());
    assert_ne!(x.state_hash(), r.hashes[34]);
}

#[test]
fn a_restored_runtime_journals_from_its_snapshot_and_recovers() {
    let r = reference(TICKS);
    let mut rt = Runtime::new(config(None, false)).unwrap();
    start(&mut rt);
    for t in 0..20 {
        step(&mut rt, t);
    }
    let snapshot = rt.snapshot().unwrap();
    let dir = TempDir::new("restored");
    {
        let mut restored = Runtime::restore(&snapshot, restore_options(Some(journal(dir.path())))).unwrap();
        assert!(restored.journal_id().is_some());
        for t in 20..45 {
            step(&mut restored, t);
        }
    }
    let (rt, report) = Runtime::recover(dir.path(), RecoverOptions::default()).unwrap();
    assert_eq!((report.tick, report.snapshot_tick), (45, Some(40)));
    assert_eq!(rt.state_hash(), r.hashes[45]);
    let cursor = JournalCursor::open_dir(dir.path(), CursorOptions::default()).unwrap();
    assert_eq!((cursor.first_tick(), cursor.lineage()), (20, None));
    let _: AgentId = 0;
}

/// The records of a whole log (its End record left out), to alter and encode again.
fn records_of(log: &[u8]) -> Vec<lockstep_core::replay_log::Record> {
    let mut reader = lockstep_core::replay_log::LogReader::new(log).unwrap();
    let mut out = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        if !matches!(record, lockstep_core::replay_log::Record::End { .. }) {
            out.push(record);
        }
    }
    out
}

fn encoded(records: &[lockstep_core::replay_log::Record]) -> Vec<u8> {
    let mut out = Vec::new();
    lockstep_core::replay_log::write_header(&mut out);
    for r in records {
        r.encode(&mut out);
    }
    out
}

#[test]
fn a_failed_seek_leaves_the_cursor_on_a_recorded_state_and_fails_again() {
    use lockstep_core::replay_log::Record;
    let r = reference(TICKS);
    let dir = TempDir::new("failed-seek");
    let mut records = records_of(&journaled(&dir));
    // A record no runtime could have written, right after tick 25's kill of agent 2 (valid
    // CRC), and a TickEnd of tick 40 whose hash was altered.
    let kill = records.iter().position(|r| matches!(r, Record::Kill { tick: 25, .. })).unwrap();
    records.insert(kill + 1, Record::Shutdown { tick: 25, agent: 999 });
    for record in &mut records {
        if let Record::TickEnd { tick: 40, hash, .. } = record {
            hash.0[0] ^= 1;
        }
    }
    let mut cursor = JournalCursor::open_log(encoded(&records), CursorOptions { snapshot_interval_ticks: 8, ..CursorOptions::default() }).unwrap();
    // The bad record: the seek fails and the cursor is where it was before tick 25's inputs
    // (agent 2 running), not inside tick 25 with the kill applied.
    assert_eq!(cursor.seek(30).unwrap_err().code(), "E_JOURNAL_CORRUPT");
    at(&mut cursor, &r, 25);
    assert_eq!(cursor.seek(25).unwrap().tick, 25);
    at(&mut cursor, &r, 25);
    // Seeking on does not step over the bad record: it fails again, every time.
    assert_eq!(cursor.seek(26).unwrap_err().code(), "E_JOURNAL_CORRUPT");
    assert_eq!(cursor.next_tick().unwrap_err().code(), "E_JOURNAL_CORRUPT");
    assert_eq!(cursor.messages_at(25).unwrap_err().code(), "E_JOURNAL_CORRUPT");
    at(&mut cursor, &r, 25);

    // The altered hash: the seek fails at tick 40, and the cursor stays on tick 40 as
    // recorded, not on the state the diverging tick made.
    records.remove(kill + 1);
    let mut cursor = JournalCursor::open_log(encoded(&records), CursorOptions { snapshot_interval_ticks: 8, ..CursorOptions::default() }).unwrap();
    assert_eq!(cursor.seek(45).unwrap_err().code(), "E_JOURNAL_CORRUPT");
    at(&mut cursor, &r, 40);
    assert_eq!(cursor.seek(41).unwrap_err().code(), "E_JOURNAL_CORRUPT");
    assert_eq!(cursor.seek(cursor.tick()).unwrap().tick, 40);
    at(&mut cursor, &r, 40);
    // A fork of it continues the recorded state.
    let mut fork = cursor.fork(restore_options(None)).unwrap();
    assert_eq!(fork.state_hash(), r.hashes[40]);
    assert_eq!(step(&mut fork, 40).hash, r.hashes[41]);
}

#[test]
fn a_segment_cut_after_the_cursor_opened_it_is_an_error_not_a_panic() {
    let dir = TempDir::new("cut-under");
    journaled(&dir);
    let mut cursor = JournalCursor::open_dir(dir.path(), CursorOptions { snapshot_interval_ticks: 0, ..CursorOptions::default() }).unwrap();
    // Another process replaces the first segment with a shorter file.
    let first = dir.path().join(lockstep_core::journal::segment_file_name(1));
    let bytes = std::fs::read(&first).unwrap();
    std::fs::write(&first, &bytes[..bytes.len() / 2]).unwrap();
    let e = cursor.seek(5).unwrap_err();
    assert_eq!(e.code(), "E_JOURNAL_CORRUPT", "{e}");
    assert!(e.to_string().contains("open the journal again"), "{e}");
}

/// Inserts `record` into the journal in `dir` right after the TickEnd record of `tick` (in
/// whichever segment holds it), walking the record frames (tag u8, len u32, body, crc u32).
fn insert_after_tick_end(dir: &Path, tick: u64, record: &lockstep_core::replay_log::Record) {
    for n in 1.. {
        let path = dir.join(lockstep_core::journal::segment_file_name(n));
        let Ok(bytes) = std::fs::read(&path) else { break };
        let mut at = if n == 1 { 16 } else { 64 };
        while at + 13 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
            let is_it = bytes[at] == 7 && u64::from_le_bytes(bytes[at + 5..at + 13].try_into().unwrap()) == tick;
            at += 5 + len + 4;
            if is_it {
                let mut out = bytes[..at].to_vec();
                record.encode(&mut out);
                out.extend_from_slice(&bytes[at..]);
                std::fs::write(&path, out).unwrap();
                return;
            }
        }
    }
    panic!("no TickEnd of tick {tick}");
}

#[test]
fn a_journal_record_is_refused_twice_and_mid_session_wherever_the_replay_starts() {
    use lockstep_core::journal::verify;
    use lockstep_core::replay_log::Record;
    let forged = Record::Journal { id: [7; 16], parent: Some(Lineage { journal: Some([9; 16]), tick: 3, hash: Digest([1; 32]) }) };
    // A second Journal record (another identity and lineage) right after the first.
    let log = {
        let dir = TempDir::new("two-ids");
        journaled(&dir);
        let first = std::fs::read(dir.path().join(lockstep_core::journal::segment_file_name(1))).unwrap();
        let mut records = records_of(&first);
        assert!(matches!(records[1], Record::Journal { .. }));
        records.insert(2, forged.clone());
        encoded(&records)
    };
    let e = lockstep_core::replay(&log, 1, |_| {}).unwrap_err();
    assert!(e.to_string().contains("a second Journal record"), "{e}");
    let mut cursor = JournalCursor::open_log(log, CursorOptions::default()).unwrap();
    let end = cursor.end_tick();
    assert!(end > 0);
    assert_eq!(cursor.seek(end).unwrap_err().code(), "E_JOURNAL_CORRUPT");

    // A Journal record where tick 20 begins, the tick of a snapshot: the replay from tick 0
    // (verify) refuses it, and so do recovery and the cursor starting from that snapshot.
    let dir = TempDir::new("mid-id");
    journaled(&dir);
    insert_after_tick_end(dir.path(), 19, &forged);
    for t in [30, 40, 50, 60] {
        std::fs::remove_file(dir.path().join(lockstep_core::journal::snapshot_file_name(t))).unwrap();
    }
    let e = verify(dir.path(), 1, None, |_| {}).unwrap_err();
    assert!(e.to_string().contains("Journal record after the session's first input"), "{e}");
    let mut cursor = JournalCursor::open_dir(dir.path(), CursorOptions::default()).unwrap();
    let e = cursor.seek(25).unwrap_err();
    assert!(e.to_string().contains("Journal record after the session's first input"), "{e}");
    let e = Runtime::recover(dir.path(), RecoverOptions::default()).map(|_| ()).unwrap_err();
    assert_eq!(e.code(), "E_JOURNAL_CORRUPT", "{e}");
    assert!(e.to_string().contains("Journal record after the session's first input"), "{e}");
}

#[test]
fn a_damaged_snapshot_a_journal_starts_from_is_named_in_the_error() {
    let mut rt = Runtime::new(config(None, false)).unwrap();
    start(&mut rt);
    for t in 0..20 {
        step(&mut rt, t);
    }
    let snapshot = rt.snapshot().unwrap();
    let dir = TempDir::new("base-damaged");
    {
        let journal = JournalConfig { snapshot_interval_ticks: 0, ..journal(dir.path()) };
        let mut restored = Runtime::restore(&snapshot, restore_options(Some(journal))).unwrap();
        for t in 20..25 {
            step(&mut restored, t);
        }
    }
    let base = dir.path().join(lockstep_core::journal::snapshot_file_name(20));
    let mut bytes = std::fs::read(&base).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&base, bytes).unwrap();
    let errors = [
        Runtime::recover(dir.path(), RecoverOptions::default()).map(|_| ()).unwrap_err(),
        JournalCursor::open_dir(dir.path(), CursorOptions::default()).map(|_| ()).unwrap_err(),
        lockstep_core::journal::verify(dir.path(), 1, None, |_| {}).map(|_| ()).unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e.code(), "E_JOURNAL_CORRUPT", "{e}");
        let text = e.to_string();
        assert!(text.contains(&base.display().to_string()) && !text.contains("the snapshot given"), "{text}");
    }
}

#[test]
fn an_interrupted_seek_stops_between_ticks_at_a_recorded_state_and_goes_on_once_cleared() {
    use lockstep_core::journal::Interrupt;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;
    let r = reference(TICKS);
    let dir = TempDir::new("interrupt");
    let log = journaled(&dir);
    // Interrupted once it has been asked 6 times: once as the cursor opens (its restore of the
    // session's start), then before each tick, so a seek from 0 stops before its 6th tick.
    let asked = Arc::new(AtomicU64::new(0));
    let counted = asked.clone();
    let interrupt = Interrupt::new(move || counted.fetch_add(1, Ordering::Relaxed) >= 6);
    let mut cursor =
        JournalCursor::open_log(log.clone(), CursorOptions { snapshot_interval_ticks: 0, interrupt: Some(interrupt), ..CursorOptions::default() }).unwrap();
    let e = cursor.seek(40).unwrap_err();
    assert_eq!(e.code(), "E_INTERRUPTED");
    assert!(e.to_string().contains("seeking tick 40, at tick 5"), "{e}");
    at(&mut cursor, &r, 5);
    // Still interrupted: nothing moves, and the state is the same.
    assert_eq!(cursor.next_tick().unwrap_err().code(), "E_INTERRUPTED");
    assert_eq!(cursor.messages_at(5).unwrap_err().code(), "E_INTERRUPTED");
    at(&mut cursor, &r, 5);
    // A seek needing no replay is not interrupted.
    assert_eq!(cursor.seek(5).unwrap().ticks_replayed, 0);
    // Cleared (the closure answers false again): it goes on from where it stopped.
    asked.store(0, Ordering::Relaxed);
    assert_eq!(cursor.seek(8).unwrap().ticks_replayed, 3);
    at(&mut cursor, &r, 8);
    let flag = Arc::new(AtomicBool::new(false));
    let mut fresh = JournalCursor::open_dir(dir.path(), CursorOptions { interrupt: Some(Interrupt::flag(flag.clone())), ..CursorOptions::default() }).unwrap();
    fresh.seek(25).unwrap();
    at(&mut fresh, &r, 25);
    flag.store(true, Ordering::Relaxed);
    assert_eq!(fresh.seek(35).unwrap_err().code(), "E_INTERRUPTED");
    at(&mut fresh, &r, 25);
    flag.store(false, Ordering::Relaxed);
    let report = fresh.seek(35).unwrap();
    at(&mut fresh, &r, 35);
    assert_eq!(report.ticks_replayed, 5, "from the journal's snapshot at 30: {report:?}");
    // Set before opening a journal: opening stops too.
    flag.store(true, Ordering::Relaxed);
    let e = JournalCursor::open_dir(dir.path(), CursorOptions { interrupt: Some(Interrupt::flag(flag)), ..CursorOptions::default() }).err().unwrap();
    assert_eq!(e.code(), "E_INTERRUPTED");
    assert!(e.to_string().contains("opening the journal"), "{e}");
}
