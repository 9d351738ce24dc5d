//! Compares two builds of an agent in one process: `ab_modules A.wasm B.wasm AGENTS WORKERS
//! PAIRS [FANOUT]`. Two runtimes of AGENTS agents each (one per build) tick in turn, a pair of
//! ticks at a time, a fixed coin choosing which runs first; prints the median of the pairs' B/A
//! tick-time ratios. Separate processes disagreed by ±20% on this machine (memory-speed
//! spells); ticks alternated in one process see the same spell (BENCHMARKS.md, seventeenth
//! session). A FANOUT > 0 sends each agent a kind-0 message carrying it (the `flood` agent).
// The addon's allocator (examples/common).
mod common;
use lockstep_core::{Runtime, RuntimeConfig};

fn runtime(path: &str, n: usize, workers: usize, fanout: u32) -> Runtime {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut rt = Runtime::new(RuntimeConfig { workers, max_agents: n as u32, record: false, checkpoint_interval_ticks: 0, ..RuntimeConfig::development() })
        .expect("runtime");
    let m = rt.load_module(bytes).expect("module");
    for _ in 0..n {
        let id = rt.spawn(m).expect("spawn");
        if fanout > 0 {
            rt.send(id, 0, 0, fanout.to_le_bytes().to_vec()).expect("send");
        }
    }
    rt.run(3).expect("warm-up ticks");
    rt
}

fn timed_tick(rt: &mut Runtime) -> f64 {
    let t = std::time::Instant::now();
    rt.tick().expect("tick");
    rt.drain_host_messages();
    rt.drain_events();
    t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
        eprintln!("usage: ab_modules A.wasm B.wasm AGENTS WORKERS PAIRS [FANOUT]");
        std::process::exit(2);
    };
    let (n, workers, pairs, fanout) = (number(2, 10_000), number(3, 2), number(4, 40), number(5, 0) as u32);
    let mut rts = [runtime(a, n, workers, fanout), runtime(b, n, workers, fanout)];
    let mut ratios = Vec::with_capacity(pairs);
    // A fixed coin (xorshift): which build runs first in each pair.
    let mut coin = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..pairs {
        coin ^= coin << 13;
        coin ^= coin >> 7;
        coin ^= coin << 17;
        let b_first = coin & 1 == 1;
        let (first, second) = if b_first { (1, 0) } else { (0, 1) };
        let t_first = timed_tick(&mut rts[first]);
        let t_second = timed_tick(&mut rts[second]);
        let (t_a, t_b) = if b_first { (t_second, t_first) } else { (t_first, t_second) };
        ratios.push(t_b / t_a);
    }
    let wins = ratios.iter().filter(|&&r| r < 1.0).count();
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(pairs / 2).copied().unwrap_or(f64::NAN);
    println!("B/A median {median:.3} over {pairs} pairs; B faster in {wins}");
}
