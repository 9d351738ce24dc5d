//! Profiling aid: `slice_loop on|off N TICKS`: N counters with (on) or without (off) a slice
//! they never use up, ticked TICKS times, for `perf` comparisons of the two paths.
use lockstep_core::{Runtime, RuntimeConfig};
mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let on = args.first().is_some_and(|a| a == "on");
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let ticks: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_agents: n as u32, checkpoint_interval_ticks: 0, ..RuntimeConfig::development() }).unwrap();
    let m = rt.load_module(common::agent("counter")).unwrap();
    for _ in 0..n {
        let id = rt.spawn(m).unwrap();
        if on {
            rt.set_fuel_per_tick(id, 1_000_000).unwrap();
        }
    }
    let t = std::time::Instant::now();
    rt.run(ticks).unwrap();
    eprintln!("{:.2} us per tick", t.elapsed().as_secs_f64() * 1e6 / ticks as f64);
}
