//! Time-slicing benchmark (issue 16, part 1), printed as JSON for benches/run.mjs:
//!
//!   cargo run --release --example bench_slicing -- [--quick]
//!
//! 1. What agents that never use up their slice pay for having one: 50, 1,000 and 10,000
//!    counters (trivial agents), with no slice vs each with a slice of 1,000,000 fuel (a tenth
//!    of its per-call budget; a counter's step burns ~100). Median µs per tick, 1 worker, the
//!    two runtimes side by side (a block of ticks each in turn).
//! 2. The cost of one suspend + resume: 100 agents that run a counted loop that never ends in
//!    `agent_step`, each with a slice, so each is suspended and resumed every tick; against 100
//!    agents that run the same loop for the same fuel per step and return (unsliced). The
//!    difference per agent per tick is what a suspension costs.
//!
//! Only the public API of lockstep-core is used.

use std::time::Instant;

use lockstep_core::{Runtime, RuntimeConfig};
mod common;
use common::{agent, median};

/// Runs BURNER's loop for ever in `agent_step` (its bound is never reached): the same
/// instructions, so the same fuel per iteration and the same time per unit of fuel.
const SPINNER: &str = r#"(module
  (memory (export "memory") 2)
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const -1)))
      (local.set $i (i32.and (i32.add (local.get $i) (i32.const 1)) (i32.const 0x7fffffff)))
      (br $l)))
    i32.const 0))"#;

/// Burns the fuel of `ITERATIONS` loop iterations in each `agent_step`, then returns.
const BURNER: &str = r#"(module
  (memory (export "memory") 2)
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const ITERATIONS)))
      (local.set $i (i32.and (i32.add (local.get $i) (i32.const 1)) (i32.const 0x7fffffff)))
      (br $l)))
    i32.const 0))"#;

fn runtime(n: usize, fuel_per_call: u64) -> Runtime {
    Runtime::new(RuntimeConfig { workers: 1, max_agents: n as u32 + 1, fuel_per_call, checkpoint_interval_ticks: 0, ..RuntimeConfig::development() })
        .expect("runtime")
}

/// Median µs per tick of each runtime, ticking `block` ticks each in turn, `rounds` times.
fn side_by_side(rts: &mut [Runtime], block: usize, rounds: usize) -> Vec<f64> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); rts.len()];
    for _ in 0..rounds {
        for (rt, s) in rts.iter_mut().zip(samples.iter_mut()) {
            let t = Instant::now();
            for _ in 0..block {
                rt.tick().unwrap();
            }
            s.push(t.elapsed().as_secs_f64() * 1e6 / block as f64);
        }
    }
    samples.into_iter().map(median).collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let counter = agent("counter");
    let mut overhead = Vec::new();
    for n in [50usize, 1_000, 10_000] {
        let mut rts: Vec<Runtime> = (0..2).map(|_| runtime(n, 10_000_000)).collect();
        for (k, rt) in rts.iter_mut().enumerate() {
            let m = rt.load_module(counter.clone()).unwrap();
            for _ in 0..n {
                let id = rt.spawn(m).unwrap();
                if k == 1 {
                    rt.set_fuel_per_tick(id, 1_000_000).unwrap();
                }
            }
            rt.run(20).unwrap();
        }
        let (block, rounds) = match (n, quick) {
            (50, false) => (2_000, 15),
            (1_000, false) => (200, 15),
            (_, false) => (20, 15),
            (50, true) => (500, 5),
            (1_000, true) => (50, 5),
            _ => (5, 5),
        };
        let us = side_by_side(&mut rts, block, rounds);
        assert_eq!(rts[0].inspect(1).unwrap().steps, rts[1].inspect(1).unwrap().steps);
        overhead.push(format!(r#"{{"agents":{n},"no_slice_us":{:.1},"slice_us":{:.1},"ratio":{:.3}}}"#, us[0], us[1], us[1] / us[0]));
    }

    // The cost of a suspension: spinners suspended every tick vs burners doing the same work.
    let copies = 100;
    let iterations = 2_000;
    let burner = wat::parse_str(BURNER.replace("ITERATIONS", &iterations.to_string())).unwrap();
    let mut burners = runtime(copies, 1 << 40);
    let m = burners.load_module(burner).unwrap();
    for _ in 0..copies {
        burners.spawn(m).unwrap();
    }
    let fuel_per_step = burners.tick().unwrap().fuel / copies as u64;
    let mut spinners = runtime(copies, 1 << 40);
    let m = spinners.load_module(wat::parse_str(SPINNER).unwrap()).unwrap();
    for _ in 0..copies {
        let id = spinners.spawn(m).unwrap();
        spinners.set_fuel_per_tick(id, fuel_per_step).unwrap();
    }
    spinners.run(3).unwrap();
    let (block, rounds) = if quick { (50, 5) } else { (300, 15) };
    let mut pair = [burners, spinners];
    let us = side_by_side(&mut pair, block, rounds);
    assert_eq!(pair[1].tick().unwrap().agents_suspended, copies as u32, "every spinner is suspended each tick");
    let per_suspension_ns = (us[1] - us[0]) * 1e3 / copies as f64;
    println!(
        r#"{{"slicing":{{"never_hit":[{}],"suspend_resume":{{"agents":{copies},"fuel_per_tick":{fuel_per_step},"returning_us":{:.1},"suspended_us":{:.1},"per_suspension_ns":{per_suspension_ns:.0}}}}}}}"#,
        overhead.join(","),
        us[0],
        us[1]
    );
}
