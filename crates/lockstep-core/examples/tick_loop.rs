//! Runs ticks of N counter agents for profiling: `tick_loop AGENTS WORKERS TICKS [FANOUT]`.
// The addon's allocator (examples/common).
mod common;
use lockstep_core::{Runtime, RuntimeConfig};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap_or(0)).collect();
    let (n, workers, ticks) = (args.first().copied().unwrap_or(1000), args.get(1).copied().unwrap_or(2), args.get(2).copied().unwrap_or(1000));
    // A fourth argument > 0 floods: every agent sends that many messages per tick.
    let fanout = args.get(3).copied().unwrap_or(0) as u32;
    let name = if fanout > 0 { "flood" } else { "counter" };
    let path = format!("{}/../../guest/target/wasm32-unknown-unknown/release/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    // LOCKSTEP_AGENT overrides the module (for A/B comparisons of agent builds).
    let path = std::env::var("LOCKSTEP_AGENT").unwrap_or(path);
    let bytes = std::fs::read(&path).expect("run `npm run build` first");
    let mut rt = Runtime::new(RuntimeConfig { workers, max_agents: n as u32, checkpoint_interval_ticks: 0, ..RuntimeConfig::development() }).expect("runtime");
    let m = rt.load_module(bytes).expect("module");
    for _ in 0..n {
        let id = rt.spawn(m).expect("spawn");
        if fanout > 0 {
            rt.send(id, 0, 0, fanout.to_le_bytes().to_vec()).expect("send");
        }
    }
    let mut times: Vec<f64> = Vec::with_capacity(ticks);
    let t = std::time::Instant::now();
    for _ in 0..ticks {
        let one = std::time::Instant::now();
        rt.tick().unwrap();
        times.push(one.elapsed().as_secs_f64() * 1e6);
    }
    let mean = t.elapsed().as_secs_f64() * 1e6 / ticks as f64;
    times.sort_by(f64::total_cmp);
    let median = times.get(ticks / 2).copied().unwrap_or(0.0);
    // The tenth percentile: on a shared machine, the least disturbed of the ticks.
    let p10 = times.get(ticks / 10).copied().unwrap_or(0.0);
    eprintln!("{mean:.4} us/tick (median {median:.1}, p10 {p10:.1})");
}
