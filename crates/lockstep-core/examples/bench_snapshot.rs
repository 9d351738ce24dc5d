//! Snapshot benchmarks, printed as JSON (one object) for benches/run.mjs.
//!
//!   cargo run --release --example bench_snapshot -- [--quick]
//!
//! 10,000 agents of one module (the counter), ticked a few times. Each figure beside its
//! floor, measured in the same run:
//! - `snapshot()`: time and bytes, against copying the same amount of touched memory (the
//!   agents' non-zero pages, `SnapshotInfo::memory_pages` × 64 KiB) with one plain memcpy
//!   between two buffers already in memory (goal: within 3× of it), and the stored size
//!   against those raw pages (goal: 5× smaller);
//! - `Runtime::restore()`: time, against creating a runtime, loading the module and spawning
//!   the same agents fresh (goal: no slower).
//!
//! Only the public API of lockstep-core is used.

use std::time::Instant;

use lockstep_core::snapshot;
use lockstep_core::{RestoreOptions, Runtime, RuntimeConfig};
mod common;
use common::{agent, median};

fn config(workers: usize, n: usize) -> RuntimeConfig {
    RuntimeConfig { workers, max_agents: n as u32, checkpoint_interval_ticks: 0, record: false, memory_limit_bytes: 4 << 20, ..RuntimeConfig::development() }
}

/// A fresh runtime with `n` counters: the cost a restore is compared with (ms), and the runtime.
fn spawn_fresh(workers: usize, n: usize, module: &[u8]) -> (f64, Runtime) {
    let start = Instant::now();
    let mut rt = Runtime::new(config(workers, n)).unwrap();
    let m = rt.load_module(module.to_vec()).unwrap();
    for _ in 0..n {
        rt.spawn(m).unwrap();
    }
    (start.elapsed().as_secs_f64() * 1e3, rt)
}

/// Milliseconds to copy `bytes` with one memcpy between two buffers already in memory.
fn memcpy_ms(bytes: usize, rounds: usize) -> f64 {
    let src: Vec<u8> = (0..bytes).map(|i| (i * 31 + 7) as u8).collect();
    let mut dst = vec![1u8; bytes];
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                dst.copy_from_slice(std::hint::black_box(&src));
                std::hint::black_box(&dst);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect::<Vec<f64>>(),
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 1_000 } else { 10_000 };
    let rounds = if quick { 2 } else { 5 };
    let module = agent("counter");
    let mut rows = Vec::new();
    for workers in [1usize, 2] {
        let (_, mut rt) = spawn_fresh(workers, n, &module);
        rt.run(5).unwrap();
        let mut bytes = Vec::new();
        let snapshot_ms = median(
            (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    bytes = rt.snapshot().unwrap();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect::<Vec<f64>>(),
        );
        let info = snapshot::info(&bytes).unwrap();
        let touched = info.memory_pages as usize * 65_536;
        let floor_ms = memcpy_ms(touched, rounds);
        let mut restore = Vec::new();
        let mut fresh = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let restored = Runtime::restore(&bytes, RestoreOptions { workers, record: false, ..RestoreOptions::development() }).unwrap();
            restore.push(t.elapsed().as_secs_f64() * 1e3);
            drop(restored);
            let (ms, rt) = spawn_fresh(workers, n, &module);
            fresh.push(ms);
            drop(rt);
        }
        let (restore_ms, fresh_ms) = (median(restore), median(fresh));
        rows.push(format!(
            r#"{{"agents":{n},"workers":{workers},"snapshot_ms":{snapshot_ms:.1},"snapshot_bytes":{},"touched_pages":{},"touched_bytes":{touched},"touched_4k_chunks":{},"unique_pages":{},"memcpy_touched_ms":{floor_ms:.1},"snapshot_vs_memcpy":{:.2},"touched_vs_stored":{:.1},"restore_ms":{restore_ms:.1},"spawn_fresh_ms":{fresh_ms:.1},"restore_vs_spawn":{:.2}}}"#,
            info.bytes,
            info.memory_pages,
            info.memory_chunks,
            info.unique_pages,
            snapshot_ms / floor_ms,
            touched as f64 / info.bytes as f64,
            restore_ms / fresh_ms,
        ));
    }
    println!(r#"{{"snapshot":[{}]}}"#, rows.join(","));
}
