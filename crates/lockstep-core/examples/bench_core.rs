//! Core benchmarks, printed as JSON (one object) for benches/run.mjs.
//!
//!   cargo run --release --example bench_core -- [--quick] [--recording-only] [--routing-only]
//!
//! Every figure is measured beside its baseline in the same run: the runtime's tick against
//! the same agents stepped by a bare loop over wasmtime calls (no routing, hashing, recording).
//! Only the public API of lockstep-core is used; the floors use wasmtime directly.

use std::time::Instant;

use lockstep_core::{FsyncPolicy, JournalConfig, MemoryAllocator, Runtime, RuntimeConfig};
mod common;
use common::{agent, median, p99};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps").map(|s| s.lines().count()).unwrap_or(0)
}

fn config(workers: usize, max_agents: u32) -> RuntimeConfig {
    RuntimeConfig { workers, max_agents, checkpoint_interval_ticks: 0, record: true, memory_limit_bytes: 4 << 20, ..RuntimeConfig::development() }
}

/// 10,000 agents with wasmtime's pooling allocator instead of the default: (tick µs, spawn µs).
fn pooling_baseline(ticks: usize) -> (f64, f64) {
    let n = 10_000;
    let mut rt = Runtime::new(RuntimeConfig { allocator: MemoryAllocator::Pooling, ..config(2, n as u32) }).unwrap();
    let m = rt.load_module(agent("counter")).unwrap();
    let start = Instant::now();
    for _ in 0..n {
        rt.spawn(m).unwrap();
    }
    let spawn_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    rt.run(10).unwrap();
    (median_tick_us(&mut rt, ticks), spawn_us)
}

/// Median µs of `ticks` ticks of `rt`.
fn median_tick_us(rt: &mut Runtime, ticks: usize) -> f64 {
    let mut times: Vec<f64> = (0..ticks)
        .map(|_| {
            let t = Instant::now();
            rt.tick().unwrap();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median(&mut times)
}

/// Median and p99 microseconds per tick of `n` counter agents through the runtime.
fn tick_overhead(n: usize, workers: usize, ticks: usize) -> (f64, f64, bool) {
    let mut rt = Runtime::new(config(workers, n as u32)).unwrap();
    let m = rt.load_module(agent("counter")).unwrap();
    for _ in 0..n {
        rt.spawn(m).unwrap();
    }
    rt.run(10).unwrap();
    let mut times = Vec::with_capacity(ticks);
    let mut parallel = false;
    for _ in 0..ticks {
        let t = Instant::now();
        let r = rt.tick().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        parallel = r.parallel;
    }
    (median(&mut times), p99(&mut times), parallel)
}

/// The floor: instances of the counter agent called straight through wasmtime, each in its
/// own store with fuel (as agents are), imports stubbed, no lockstep in between.
struct BareAgents {
    stores: Vec<(wasmtime::Store<()>, wasmtime::TypedFunc<i32, i32>, i32)>,
    fuel: bool,
}

impl BareAgents {
    fn new(n: usize, fuel: bool) -> Self {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(fuel);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let module = wasmtime::Module::new(&engine, agent("counter")).unwrap();
        let stores = (0..n)
            .map(|_| {
                let mut store = wasmtime::Store::new(&engine, ());
                if fuel {
                    store.set_fuel(10_000_000).unwrap();
                }
                let mut linker = wasmtime::Linker::new(&engine);
                linker.define_unknown_imports_as_default_values(&mut store, &module).unwrap();
                let instance = linker.instantiate(&mut store, &module).unwrap();
                let io = instance.get_typed_func::<(), i32>(&mut store, "lockstep_io_buffer").unwrap().call(&mut store, ()).unwrap();
                let step = instance.get_typed_func::<i32, i32>(&mut store, "agent_step").unwrap();
                (store, step, io)
            })
            .collect();
        Self { stores, fuel }
    }

    /// One tick of the floor: every agent's `agent_step`, each with a fresh fuel budget.
    fn step_all(&mut self) {
        for (store, step, io) in self.stores.iter_mut() {
            if self.fuel {
                store.set_fuel(10_000_000).unwrap();
            }
            step.call(&mut *store, *io).unwrap();
        }
    }
}

/// The floor of a tick of `n` agents, one thread (microseconds, median).
fn bare_tick(n: usize, ticks: usize) -> f64 {
    let mut agents = BareAgents::new(n, true);
    let mut times = Vec::with_capacity(ticks);
    for _ in 0..ticks {
        let start = Instant::now();
        agents.step_all();
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    median(&mut times)
}

/// Nanoseconds per bare wasmtime call of the counter's `agent_step`, fuel on or off: the
/// floor under the runtime's per-agent cost.
fn call_overhead(fuel: bool, calls: u64) -> f64 {
    let mut a = BareAgents::new(1, fuel);
    let mut runs = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..calls {
            a.step_all();
        }
        runs.push(start.elapsed().as_secs_f64() * 1e9 / calls as f64);
    }
    median(&mut runs)
}

/// Microseconds per spawn (instantiate + agent_init + recording) and bytes per idle agent.
fn spawn_cost(n: usize) -> (f64, f64, f64) {
    let mut rt = Runtime::new(config(1, n as u32)).unwrap();
    let m = rt.load_module(agent("counter")).unwrap();
    let rss0 = rss_bytes();
    let maps0 = map_count();
    let start = Instant::now();
    for _ in 0..n {
        rt.spawn(m).unwrap();
    }
    let per_spawn = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    rt.run(2).unwrap();
    let per_agent = (rss_bytes().saturating_sub(rss0)) as f64 / n as f64;
    let maps_per_agent = (map_count().saturating_sub(maps0)) as f64 / n as f64;
    (per_spawn, per_agent, maps_per_agent)
}

/// How many agents one process holds under the kernel's map limit.
fn max_agents_reached(target: usize) -> (usize, String) {
    let mut rt = match Runtime::new(config(1, target as u32)) {
        Ok(rt) => rt,
        Err(e) => return (0, e.to_string()),
    };
    let m = rt.load_module(agent("counter")).unwrap();
    for i in 0..target {
        if let Err(e) = rt.spawn(m) {
            return (i, e.to_string());
        }
    }
    rt.tick().unwrap();
    (target, "ok".into())
}

/// Agent→agent routing: `n` flood agents each sending `fanout` 64-byte messages per tick.
/// Returns (messages routed per second, median tick µs).
fn routing(n: usize, fanout: u32, workers: usize, ticks: usize) -> (f64, f64) {
    let mut rt = Runtime::new(RuntimeConfig { record: false, ..config(workers, n as u32) }).unwrap();
    let m = rt.load_module(agent("flood")).unwrap();
    for _ in 0..n {
        let id = rt.spawn(m).unwrap();
        rt.send(id, 0, 0, fanout.to_le_bytes().to_vec()).unwrap();
    }
    rt.run(3).unwrap();
    let mut times = Vec::with_capacity(ticks);
    let mut routed = 0u64;
    let start = Instant::now();
    for _ in 0..ticks {
        let t = Instant::now();
        routed += rt.tick().unwrap().messages_routed;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    (routed as f64 / start.elapsed().as_secs_f64(), median(&mut times))
}

/// Median µs per tick of one live counter agent, alone and beside `dead` killed agents (dead
/// slots are never walked by a tick: the two should match).
fn dead_agents(dead: usize, ticks: usize) -> (f64, f64) {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_agents: 8, record: false, max_events: 16, ..config(1, 8) }).unwrap();
    let m = rt.load_module(agent("counter")).unwrap();
    rt.spawn(m).unwrap();
    let measure = |rt: &mut Runtime| {
        rt.run(3).unwrap();
        median_tick_us(rt, ticks)
    };
    let alone = measure(&mut rt);
    for _ in 0..dead {
        let id = rt.spawn(m).unwrap();
        rt.kill(id).unwrap();
    }
    rt.drain_dead_letters();
    rt.drain_events();
    (alone, measure(&mut rt))
}

/// What recording costs per tick: `n` gossip agents (each sends to 2 peers every tick, so every
/// agent is in every TickEnd record: 16 bytes each) with no recording, the in-memory log, and
/// the journal ('group' and 'tick', without the memory log). The runtimes run side by side,
/// `block` ticks each in turn, so drifting machine load falls on all alike. Median µs per tick.
fn recording_cost(n: usize, ticks: usize) -> String {
    let dir = std::env::temp_dir().join(format!("lockstep-bench-journal-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let journal = |name: &str, fsync| {
        Some(JournalConfig {
            dir: dir.join(name),
            fsync,
            segment_bytes: 64 << 20,
            snapshot_interval_ticks: lockstep_core::journal::DEFAULT_SNAPSHOT_INTERVAL_TICKS,
        })
    };
    let base = RuntimeConfig { max_log_bytes: 4 << 30, ..config(1, n as u32) };
    let setups = [
        ("none", RuntimeConfig { record: false, ..base.clone() }),
        ("memory", RuntimeConfig { record: true, ..base.clone() }),
        ("journal_group", RuntimeConfig { record: false, journal: journal("group", FsyncPolicy::Group), ..base.clone() }),
        ("journal_tick", RuntimeConfig { record: false, journal: journal("tick", FsyncPolicy::Tick), ..base.clone() }),
    ];
    let mut runtimes: Vec<(&str, Runtime, Vec<f64>)> = setups
        .into_iter()
        .map(|(name, c)| {
            let mut rt = Runtime::new(c).unwrap();
            let m = rt.load_module(agent("gossip")).unwrap();
            for _ in 0..n {
                rt.spawn(m).unwrap();
            }
            rt.run(5).unwrap();
            rt.drain_host_messages();
            (name, rt, Vec::with_capacity(ticks))
        })
        .collect();
    let block = 10;
    for _ in 0..ticks.div_ceil(block) {
        for (_, rt, times) in runtimes.iter_mut() {
            for _ in 0..block {
                let t = Instant::now();
                rt.tick().unwrap();
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            rt.drain_host_messages();
            rt.drain_events();
        }
    }
    let mut row = format!(r#"{{"agents":{n}"#);
    let mut medians = std::collections::HashMap::new();
    for (name, rt, times) in runtimes.iter_mut() {
        let m = median(times);
        medians.insert(*name, m);
        row.push_str(&format!(r#","{name}_us":{m:.2}"#));
        let _ = rt.sync_journal();
    }
    row.push_str(&format!(
        r#","journal_group_vs_memory_pct":{:.1},"journal_tick_vs_memory_pct":{:.1}}}"#,
        (medians["journal_group"] / medians["memory"] - 1.0) * 100.0,
        (medians["journal_tick"] / medians["memory"] - 1.0) * 100.0
    ));
    drop(runtimes);
    let _ = std::fs::remove_dir_all(&dir);
    row
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--routing-only") {
        // The routing figure alone (`npm run bench` prints it with the rest).
        for workers in [1usize, 2] {
            let (rate, tick_us) = routing(10_000, 16, workers, 30);
            println!(r#"{{"agents":10000,"fanout":16,"workers":{workers},"messages_per_s":{rate:.0},"tick_median_us":{tick_us:.1}}}"#);
        }
        return;
    }
    let recording_ticks = |n: usize| match (quick, n) {
        (true, _) => 50,
        (false, n) if n >= 10_000 => 300,
        (false, n) if n >= 1_000 => 1_000,
        _ => 4_000,
    };
    let recording: Vec<String> = [50usize, 1_000, 10_000].into_iter().map(|n| recording_cost(n, recording_ticks(n))).collect();
    if std::env::args().any(|a| a == "--recording-only") {
        println!(r#"{{"recording":[{}]}}"#, recording.join(","));
        return;
    }
    let ticks = |n: usize| {
        if quick {
            20
        } else if n >= 10_000 {
            100
        } else {
            300
        }
    };
    let mut out = Vec::new();
    for n in [50usize, 1_000, 10_000] {
        let bare = bare_tick(n, ticks(n));
        for workers in [1usize, 2] {
            let (med, p99v, parallel) = tick_overhead(n, workers, ticks(n));
            out.push(format!(
                r#"{{"agents":{n},"workers":{workers},"tick_median_us":{med:.2},"tick_p99_us":{p99v:.2},"parallel":{parallel},"bare_single_thread_median_us":{bare:.2},"ratio_vs_bare":{:.2}}}"#,
                med / bare
            ));
        }
    }
    let calls = if quick { 100_000 } else { 2_000_000 };
    let fuel_on = call_overhead(true, calls);
    let fuel_off = call_overhead(false, calls);
    let (spawn_us, bytes_per_agent, maps_per_agent) = spawn_cost(if quick { 1_000 } else { 10_000 });
    let (reached, why) = max_agents_reached(if quick { 2_000 } else { 100_000 });
    let (pool_tick, pool_spawn) = pooling_baseline(ticks(10_000));
    let mut routing_rows = Vec::new();
    for workers in [1usize, 2] {
        let (rate, tick_us) = routing(10_000, 16, workers, if quick { 5 } else { 30 });
        routing_rows.push(format!(r#"{{"agents":10000,"fanout":16,"workers":{workers},"messages_per_s":{rate:.0},"tick_median_us":{tick_us:.1}}}"#));
    }
    // Last: 200,000 spawns leave the allocator in a state the other figures should not see.
    let dead = if quick { 20_000 } else { 200_000 };
    let (alone_us, beside_dead_us) = dead_agents(dead, ticks(50));
    println!(
        r#"{{"tick":[{}],"recording":[{}],"call_ns":{{"fuel_on":{fuel_on:.1},"fuel_off":{fuel_off:.1}}},"spawn_us_per_agent":{spawn_us:.2},"rss_bytes_per_idle_agent":{bytes_per_agent:.0},"memory_maps_per_agent":{maps_per_agent:.2},"max_agents":{{"reached":{reached},"stopped_because":{:?}}},"pooling_allocator_10k":{{"tick_median_us_2_workers":{pool_tick:.2},"spawn_us_per_agent":{pool_spawn:.2}}},"routing":[{}],"dead_agents":{{"dead":{dead},"tick_us_one_live_alone":{alone_us:.2},"tick_us_one_live_beside_dead":{beside_dead_us:.2}}}}}"#,
        out.join(","),
        recording.join(","),
        why,
        routing_rows.join(",")
    );
}
