//! Recovery and time-travel benchmarks, printed as JSON (one object) for benches/run.mjs.
//!
//!   cargo run --release --example bench_recovery -- [--quick]
//!
//! A journal of 100,500 ticks (10,500 with --quick: half an interval past the last snapshot) of 100 gossip agents and a counter fed by
//! the host, with a snapshot every 1,000 ticks ('group' commit). Then, in the same run:
//! - `Runtime::recover` of that journal (from its newest snapshot), against recovering a copy of
//!   the same segments without the snapshots (a replay of every tick: the floor recovery had
//!   before snapshots);
//! - `JournalCursor`: opening it (one read of every segment, to index the ticks), and seeks to
//!   20 random ticks (each from the nearest snapshot: at most 1,000 ticks replayed), against a
//!   seek of a cursor whose journal has no snapshots and that takes none (from tick 0).
//!
//! Only the public API of lockstep-core is used.

use std::path::Path;
use std::time::Instant;

use lockstep_core::journal::{CursorOptions, FsyncPolicy, JournalConfig, JournalCursor, RecoverOptions};
use lockstep_core::{Runtime, RuntimeConfig};
mod common;
use common::{agent, median};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

const EVERY: u64 = 1_000;

/// Writes the journal; returns the time it took (ms) and the bytes in `dir`.
fn write_journal(dir: &Path, ticks: u64) -> (f64, u64) {
    let journal = JournalConfig { dir: dir.to_path_buf(), fsync: FsyncPolicy::Group, segment_bytes: 64 << 20, snapshot_interval_ticks: EVERY };
    let config = RuntimeConfig { workers: 1, max_agents: 256, checkpoint_interval_ticks: 0, journal: Some(journal), ..RuntimeConfig::development() };
    let start = Instant::now();
    let mut rt = Runtime::new(config).unwrap();
    let gossip = rt.load_module(agent("gossip")).unwrap();
    for _ in 0..100 {
        rt.spawn(gossip).unwrap();
    }
    let counter = rt.spawn_bytes(agent("counter")).unwrap();
    for t in 0..ticks {
        if t % 4 == 0 {
            rt.send(counter, 1, 0, t.to_le_bytes().to_vec()).unwrap();
        }
        rt.tick().unwrap();
        if t % 256 == 0 {
            rt.drain_host_messages();
            rt.drain_events();
        }
    }
    rt.sync_journal().unwrap();
    drop(rt);
    let elapsed = ms(start);
    let bytes = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    (elapsed, bytes)
}

/// A copy of the journal's segments (no snapshots) in `to`.
fn copy_segments(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".lslog") {
            std::fs::copy(e.path(), to.join(name)).unwrap();
        }
    }
}

fn recover_ms(dir: &Path) -> (f64, u64, Option<u64>) {
    let start = Instant::now();
    let (rt, report) = Runtime::recover(dir, RecoverOptions { workers: 1, snapshot_interval_ticks: EVERY, ..RecoverOptions::default() }).unwrap();
    let t = ms(start);
    drop(rt);
    (t, report.ticks_replayed, report.snapshot_tick)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Half an interval past the last snapshot: where an average crash leaves recovery.
    let ticks: u64 = if quick { 10_000 } else { 100_000 } + EVERY / 2;
    let root = std::env::temp_dir().join(format!("lockstep-bench-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (dir, bare) = (root.join("journal"), root.join("no-snapshots"));
    let (write_ms, bytes) = write_journal(&dir, ticks);
    copy_segments(&dir, &bare);

    // Cursors first (recovery appends to the journals it recovers).
    let start = Instant::now();
    let mut cursor = JournalCursor::open_dir(&dir, CursorOptions { workers: 1, snapshot_interval_ticks: 0, ..CursorOptions::default() }).unwrap();
    let open_ms = ms(start);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut seeks = Vec::new();
    let mut most_replayed = 0;
    for _ in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let target = seed % (ticks + 1);
        let start = Instant::now();
        let r = cursor.seek(target).unwrap();
        seeks.push(ms(start));
        most_replayed = most_replayed.max(r.ticks_replayed);
    }
    let mut plain = JournalCursor::open_dir(&bare, CursorOptions { workers: 1, snapshot_interval_ticks: 0, ..CursorOptions::default() }).unwrap();
    let target = ticks / 2 + 123;
    let start = Instant::now();
    plain.seek(target).unwrap();
    let plain_seek_ms = ms(start);
    drop((cursor, plain));

    let (with_ms, with_replayed, from) = recover_ms(&dir);
    let (without_ms, without_replayed, _) = recover_ms(&bare);
    println!(
        r#"{{"recovery":{{"ticks":{ticks},"agents":101,"snapshot_interval_ticks":{EVERY},"journal_bytes":{bytes},"write_ms":{write_ms:.0},"recover_ms":{with_ms:.1},"recover_ticks_replayed":{with_replayed},"recover_from_snapshot":{},"recover_without_snapshots_ms":{without_ms:.1},"recover_without_snapshots_ticks_replayed":{without_replayed},"speedup":{:.1},"cursor_open_ms":{open_ms:.1},"seek_random_median_ms":{:.2},"seek_random_max_ms":{:.2},"seek_most_ticks_replayed":{most_replayed},"seek_without_snapshots_ms":{plain_seek_ms:.1},"seek_without_snapshots_tick":{target}}}}}"#,
        from.map_or("null".to_string(), |t| t.to_string()),
        without_ms / with_ms,
        median(seeks.clone()),
        seeks.iter().cloned().fold(0.0, f64::max),
    );
    let _ = std::fs::remove_dir_all(&root);
}
