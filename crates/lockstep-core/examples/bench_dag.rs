//! DAG workflow benchmark (issue 16, part 2), printed as JSON for benches/run.mjs:
//!
//!   cargo run --release --example bench_dag -- [--quick]
//!
//! 1,000 relay agents in 10 levels of 100; each agent of levels 1..9 depends on 3 agents of the
//! level before (random, fixed seed), and every agent sends each of its downstream agents one
//! 24-byte message per tick (2,700 messages). The same agents and messages run three ways: with
//! no edges (one phase: every message arrives the tick after it was sent), with the edges (10
//! phases: every message arrives in the tick it was sent), and with the edges and trigger `all`
//! on the 100 agents of the last level. Median µs per tick, with 1 and 2 workers, the runtimes
//! side by side (a block of ticks each in turn, so machine load falls on all alike); plus the
//! cost of connecting the 2,700 edges and of the first tick after a graph change (the phases
//! are rebuilt).
//!
//! Only the public API of lockstep-core is used.

use std::time::Instant;

use lockstep_core::{AgentId, Runtime, RuntimeConfig, Trigger};
mod common;
use common::median;

/// The relay of tests/dag.rs: targets from the host (kind 1: u64 ids); each step it sends every
/// target [origin u64, tick u64, received u64].
const RELAY: &str = r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_receive") (param $m i32) (result i32)
    (local $origin i64)
    (if (i64.eqz (i64.load (local.get $m)))
      (then
        (memory.copy (i32.const 70000) (i32.add (local.get $m) (i32.const 40)) (i32.load offset=32 (local.get $m)))
        (i32.store (i32.const 69020) (i32.shr_u (i32.load offset=32 (local.get $m)) (i32.const 3)))
        (return (i32.const 0))))
    (local.set $origin (i64.load offset=40 (local.get $m)))
    (if (i32.or (i32.eqz (i32.load (i32.const 69016))) (i64.lt_u (local.get $origin) (i64.load (i32.const 69008))))
      (then (i64.store (i32.const 69008) (local.get $origin))))
    (i32.store (i32.const 69016) (i32.add (i32.load (i32.const 69016)) (i32.const 1)))
    i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (local $tick i64) (local $i i32) (local $n i32)
    (local.set $tick (i64.load offset=8 (local.get $ctx)))
    (i64.store (i32.const 69100)
      (if (result i64) (i32.load (i32.const 69016)) (then (i64.load (i32.const 69008))) (else (local.get $tick))))
    (i64.store (i32.const 69108) (local.get $tick))
    (i64.store (i32.const 69116) (i64.extend_i32_u (i32.load (i32.const 69016))))
    (local.set $n (i32.load (i32.const 69020)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (drop (call $send (i64.load (i32.add (i32.const 70000) (i32.shl (local.get $i) (i32.const 3))))
        (i32.const 7) (i32.const 0) (i32.const 69100) (i32.const 24)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (i32.const 69016) (i32.const 0))
    i32.const 0))"#;

const LEVELS: usize = 10;
const WIDTH: usize = 100;
const UPSTREAM: usize = 3;

/// The edges: agent ids by level (spawned level by level, shuffled within the run's ids so id
/// order says nothing about the graph), and each agent's upstream agents.
fn graph() -> (Vec<Vec<AgentId>>, Vec<(AgentId, AgentId)>) {
    let mut state = 0x5eed_u64;
    let mut next = |below: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % below as u64) as usize
    };
    let mut ids: Vec<AgentId> = (1..=(LEVELS * WIDTH) as AgentId).collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, next(i + 1));
    }
    let levels: Vec<Vec<AgentId>> = ids.chunks(WIDTH).map(|c| c.to_vec()).collect();
    let mut edges = Vec::new();
    for l in 1..LEVELS {
        for &to in &levels[l] {
            let mut ups: Vec<AgentId> = Vec::new();
            while ups.len() < UPSTREAM {
                let from = levels[l - 1][next(WIDTH)];
                if !ups.contains(&from) {
                    ups.push(from);
                }
            }
            edges.extend(ups.into_iter().map(|from| (from, to)));
        }
    }
    edges.sort_unstable();
    (levels, edges)
}

struct Setup {
    name: &'static str,
    workers: usize,
    rt: Runtime,
    times: Vec<f64>,
    connect_ms: f64,
    first_tick_us: f64,
    waiting: u32,
}

fn setup(name: &'static str, workers: usize, edges: bool, barrier: bool) -> Setup {
    let (levels, all_edges) = graph();
    let mut rt =
        Runtime::new(RuntimeConfig { workers, max_agents: 2_000, checkpoint_interval_ticks: 0, record: false, ..RuntimeConfig::development() }).unwrap();
    let m = rt.load_module(wat::parse_str(RELAY).unwrap()).unwrap();
    for _ in 0..LEVELS * WIDTH {
        rt.spawn(m).unwrap();
    }
    for id in 1..=(LEVELS * WIDTH) as AgentId {
        let targets: Vec<u8> = all_edges.iter().filter(|e| e.0 == id).flat_map(|e| e.1.to_le_bytes()).collect();
        rt.send(id, 1, 0, targets).unwrap();
    }
    rt.tick().unwrap();
    let t = Instant::now();
    if edges {
        for &(from, to) in &all_edges {
            rt.connect(from, to).unwrap();
        }
    }
    if barrier {
        for &id in &levels[LEVELS - 1] {
            rt.set_trigger(id, Trigger::All).unwrap();
        }
    }
    let connect_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    rt.tick().unwrap();
    let first_tick_us = t.elapsed().as_secs_f64() * 1e6;
    rt.drain_host_messages();
    if edges {
        assert_eq!(rt.level(levels[LEVELS - 1][0]).unwrap(), (LEVELS - 1) as u32);
    }
    Setup { name, workers, rt, times: Vec::new(), connect_ms, first_tick_us, waiting: 0 }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let blocks = if quick { 4 } else { 40 };
    let mut setups = Vec::new();
    for workers in [1, 2] {
        setups.push(setup("no_edges", workers, false, false));
        setups.push(setup("dag", workers, true, false));
        setups.push(setup("dag_barrier", workers, true, true));
    }
    for _ in 0..blocks {
        for s in setups.iter_mut() {
            for _ in 0..5 {
                let t = Instant::now();
                let r = s.rt.tick().unwrap();
                s.times.push(t.elapsed().as_secs_f64() * 1e6);
                s.waiting = s.waiting.max(r.agents_waiting);
                assert_eq!(r.messages_routed, ((LEVELS - 1) * WIDTH * UPSTREAM) as u64);
            }
        }
    }
    let rows: Vec<String> = setups
        .iter()
        .map(|s| {
            format!(
                r#"{{"name":"{}","workers":{},"tick_median_us":{:.1},"connect_ms":{:.2},"first_tick_us":{:.1},"most_waiting":{}}}"#,
                s.name,
                s.workers,
                median(s.times.clone()),
                s.connect_ms,
                s.first_tick_us,
                s.waiting
            )
        })
        .collect();
    println!(r#"{{"dag":{{"agents":{},"levels":{LEVELS},"edges":{},"runs":[{}]}}}}"#, LEVELS * WIDTH, (LEVELS - 1) * WIDTH * UPSTREAM, rows.join(","));
}
