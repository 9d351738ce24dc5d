//! Worker scaling benchmark, printed as JSON for benches/run.mjs:
//!
//!   cargo run --release --example bench_workers -- [--quick]
//!
//! A session whose load changes 100×: 100 gossip agents, then 10,000, then 100 again (the rest
//! killed). Median tick time of each phase with 1 worker, with 2 (fixed: every worker once there
//! are 64 running agents), and with `WorkerScaling::Auto` (at most 2), the three runtimes side by
//! side (a block of ticks each in turn, so machine load falls on all alike).
//!
//! Only the public API of lockstep-core is used.

use std::time::Instant;

use lockstep_core::{Runtime, RuntimeConfig, WorkerScaling};
mod common;
use common::{agent, median};

/// One setup's runtime, its extra agents, tick times per phase, workers used per tick.
type Run = (&'static str, Runtime, Vec<u64>, [Vec<f64>; 3], Vec<u32>);

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let ticks = if quick { 10 } else { 60 };
    let setups = [("fixed_1", 1, WorkerScaling::Fixed), ("fixed_2", 2, WorkerScaling::Fixed), ("auto_2", 2, WorkerScaling::Auto)];
    let mut runs: Vec<Run> = setups
        .iter()
        .map(|&(name, workers, worker_scaling)| {
            let mut rt = Runtime::new(RuntimeConfig {
                workers,
                worker_scaling,
                max_agents: 10_100,
                checkpoint_interval_ticks: 0,
                record: false,
                ..RuntimeConfig::development()
            })
            .unwrap();
            let m = rt.load_module(agent("gossip")).unwrap();
            for _ in 0..100 {
                rt.spawn(m).unwrap();
            }
            (name, rt, Vec::new(), [Vec::new(), Vec::new(), Vec::new()], Vec::new())
        })
        .collect();
    for phase in 0..3 {
        for (_, rt, ids, _, _) in runs.iter_mut() {
            if phase == 1 {
                let m = rt.load_module(agent("gossip")).unwrap();
                ids.extend((0..9_900).map(|_| rt.spawn(m).unwrap()));
            }
            if phase == 2 {
                for &id in ids.iter() {
                    rt.kill(id).unwrap();
                }
            }
            rt.tick().unwrap(); // settle the change
        }
        for _ in 0..ticks / 5 {
            for (_, rt, _, times, workers) in runs.iter_mut() {
                for _ in 0..5 {
                    let t = Instant::now();
                    let r = rt.tick().unwrap();
                    times[phase].push(t.elapsed().as_secs_f64() * 1e6);
                    workers.push(r.workers);
                }
                rt.drain_host_messages();
                rt.drain_events();
            }
        }
    }
    let rows: Vec<String> = runs
        .iter()
        .map(|(name, _, _, times, workers)| {
            let m: Vec<f64> = times.iter().map(|t| median(t.clone())).collect();
            let (lo, hi) = (workers.iter().min().copied().unwrap_or(1), workers.iter().max().copied().unwrap_or(1));
            format!(r#""{name}":{{"light_us":{:.1},"heavy_us":{:.1},"light_again_us":{:.1},"workers_min":{lo},"workers_max":{hi}}}"#, m[0], m[1], m[2])
        })
        .collect();
    println!(r#"{{"workers":{{"light_agents":100,"heavy_agents":10000,{}}}}}"#, rows.join(","));
}
