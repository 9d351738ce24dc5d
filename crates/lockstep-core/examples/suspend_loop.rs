//! Profiling aid: `suspend_loop N TICKS`: N spinners with a slice, each suspended and resumed
//! every tick, for `perf`.
use lockstep_core::{Runtime, RuntimeConfig};

const SPINNER: &str = r#"(module
  (memory (export "memory") 2)
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) (loop $l (br $l)) i32.const 0))"#;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let ticks: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let slice: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(18_000);
    let mut rt =
        Runtime::new(RuntimeConfig { workers: 1, max_agents: n as u32, fuel_per_call: 1 << 40, checkpoint_interval_ticks: 0, ..RuntimeConfig::development() })
            .unwrap();
    let m = rt.load_module(wat::parse_str(SPINNER).unwrap()).unwrap();
    for _ in 0..n {
        let id = rt.spawn(m).unwrap();
        rt.set_fuel_per_tick(id, slice).unwrap();
    }
    let t = std::time::Instant::now();
    rt.run(ticks).unwrap();
    eprintln!("{:.2} us per tick", t.elapsed().as_secs_f64() * 1e6 / ticks as f64);
}
