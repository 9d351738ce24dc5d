//! Profiling aid: `restore_loop RESTORES|spawn N`: restores (or spawns fresh) N counter agents
//! repeatedly, for `perf`/callgrind comparisons of the two paths.
use lockstep_core::{RestoreOptions, Runtime, RuntimeConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_else(|| "restore".into());
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let path = format!("{}/../../guest/target/wasm32-unknown-unknown/release/counter.wasm", env!("CARGO_MANIFEST_DIR"));
    let module = std::fs::read(path).expect("run `npm run build` first");
    let config = RuntimeConfig { workers: 1, max_agents: n as u32, checkpoint_interval_ticks: 0, memory_limit_bytes: 4 << 20, ..RuntimeConfig::development() };
    let spawn = || {
        let mut rt = Runtime::new(config.clone()).unwrap();
        let m = rt.load_module(module.clone()).unwrap();
        for _ in 0..n {
            rt.spawn(m).unwrap();
        }
        rt
    };
    let mut rt = spawn();
    rt.run(5).unwrap();
    let bytes = rt.snapshot().unwrap();
    drop(rt);
    // CPU time of this process (user + system, /proc): less swayed by other processes than
    // wall time on a loaded machine.
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) * 10.0 // clock ticks of 10 ms
    };
    let (t, c) = (std::time::Instant::now(), cpu());
    for _ in 0..rounds {
        if mode == "spawn" {
            drop(spawn());
        } else {
            drop(Runtime::restore(&bytes, RestoreOptions { workers: 1, ..RestoreOptions::development() }).unwrap());
        }
    }
    eprintln!("{mode}: {:.1} ms per round (CPU {:.0} ms)", t.elapsed().as_secs_f64() * 1e3 / rounds as f64, (cpu() - c) / rounds as f64);
}
