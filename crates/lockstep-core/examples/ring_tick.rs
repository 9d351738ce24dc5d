//! Ticks that route the inbound ring, for profiling: `ring_tick AGENTS WORKERS TICKS
//! RECORDS_PER_TICK` (RECORD=1 to record a replay log, as a runtime does by default). Before
//! each tick this thread pushes RECORDS_PER_TICK 64-byte kind-0 records to the counters in turn
//! (as `benches/rings.mjs` does from JS); prints the tick's mean and median time per record.
use lockstep_core::ring::{OwnedRegion, Producer};
use lockstep_core::{Runtime, RuntimeConfig};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap_or(0)).collect();
    let arg = |i: usize, d: usize| args.get(i).copied().filter(|&v| v > 0).unwrap_or(d);
    let (n, workers, ticks, per_tick) = (arg(0, 1000), arg(1, 2), arg(2, 40), arg(3, 50_000));
    let path = format!("{}/../../guest/target/wasm32-unknown-unknown/release/counter.wasm", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("run `npm run build` first");
    let mut rt = Runtime::new(RuntimeConfig {
        workers,
        max_agents: n as u32,
        checkpoint_interval_ticks: 0,
        record: std::env::var_os("RECORD").is_some(),
        ..RuntimeConfig::development()
    })
    .expect("runtime");
    let m = rt.load_module(bytes).expect("module");
    let ids: Vec<u64> = (0..n).map(|_| rt.spawn(m).expect("spawn")).collect();
    let inbound = OwnedRegion::new(1 << 24);
    lockstep_core::ring::init(&inbound.memory(), 1 << 24).expect("ring");
    rt.attach_inbound_ring(inbound.memory()).expect("attach");
    let mut producer = Producer::new(inbound.memory()).expect("producer");
    let payload = [7u8; 64];
    // SPINNER=1: a thread that keeps a core busy the whole time (as a JS producer pushing the
    // next tick's records does beside a tickAsync).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinner = std::env::var_os("SPINNER").map(|_| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
    });
    let mut times: Vec<f64> = Vec::with_capacity(ticks);
    for t in 0..ticks {
        for k in 0..per_tick {
            producer.try_push(lockstep_core::ring::TYPE_MESSAGE, 0, 0, ids[(t * per_tick + k) % n], &payload).expect("room");
        }
        let one = std::time::Instant::now();
        rt.tick().expect("tick");
        times.push(one.elapsed().as_secs_f64() * 1e9 / per_tick as f64);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = spinner {
        let _ = t.join();
    }
    if std::env::var_os("PER_TICK").is_some() {
        eprintln!("{:?}", times.iter().map(|t| *t as u64).collect::<Vec<_>>());
    }
    let mean = times.iter().sum::<f64>() / ticks as f64;
    times.sort_by(f64::total_cmp);
    eprintln!("{mean:.1} ns/record (median {:.1})", times[ticks / 2]);
}
