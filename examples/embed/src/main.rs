//! Embedding lockstep-core in a Rust program, with nothing but its public API:
//! admit an agent, spawn a few, send them messages, tick, read what came back, then replay
//! the recorded session and check that it verifies.
//!
//!   cargo run --release -p lockstep-embed-example
//!
//! Real deployments load signed modules (`RuntimeConfig::trusted_keys`, `lockstep sign`);
//! development mode admits this unsigned one and says so on stderr.

use lockstep_core::{replay, Event, Runtime, RuntimeConfig};

/// An agent that answers every message with the payload's bytes reversed, and counts them.
const REVERSER: &str = r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $count (mut i32) (i32.const 0))
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  ;; The message header is 40 bytes (docs/ABI.md): sender at 0, length at 32, payload at 40.
  (func (export "agent_receive") (param $m i32) (result i32)
    (local $len i32) (local $i i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (local.set $len (i32.load offset=32 (local.get $m)))
    (block $done (loop $copy
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (i32.store8 offset=70000
        (i32.sub (i32.sub (local.get $len) (local.get $i)) (i32.const 1))
        (i32.load8_u offset=40 (i32.add (local.get $m) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $copy)))
    (drop (call $send (i64.load (local.get $m)) (i32.const 1) (i32.const 0) (i32.const 70000) (local.get $len)))
    i32.const 0))"#;

/// Runs the session; returns the replies the host got and the recorded log.
fn run() -> Result<(Vec<String>, Vec<u8>), lockstep_core::LockstepError> {
    let mut rt = Runtime::new(RuntimeConfig { workers: 2, ..RuntimeConfig::development() })?;
    let module = rt.load_module(wat::parse_str(REVERSER).expect("the example agent is valid WAT"))?;
    let agents: Vec<_> = (0..3).map(|_| rt.spawn(module)).collect::<Result<_, _>>()?;
    for (i, &id) in agents.iter().enumerate() {
        rt.send(id, 0, 0, format!("hello agent {}", i + 1).into_bytes())?;
    }
    // Tick 0 delivers the messages; the replies are routed to the host at the end of it.
    let report = rt.tick().unwrap();
    println!("tick {} hash {} ({} messages delivered)", report.tick, report.hash, report.messages_delivered);
    let replies: Vec<String> = rt.drain_host_messages().into_iter().map(|m| String::from_utf8_lossy(&m.payload).into_owned()).collect();
    for e in rt.drain_events() {
        if let Event::Fault { agent, fault, .. } = e {
            eprintln!("agent {agent} faulted: {fault}");
        }
    }
    let log = rt.stop_recording()?;
    Ok((replies, log))
}

fn main() -> Result<(), lockstep_core::LockstepError> {
    let (replies, log) = run()?;
    for r in &replies {
        println!("reply: {r}");
    }
    let report = replay(&log, 1, |_| {})?;
    println!("replay: {} ticks verified, complete: {}, divergence: {:?}", report.ticks_verified, report.complete, report.divergence);
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The example does what it says (CI runs this with `cargo test --workspace`).
    #[test]
    fn example_replies_and_replays() {
        let (mut replies, log) = super::run().unwrap();
        replies.sort();
        assert_eq!(replies, ["1 tnega olleh", "2 tnega olleh", "3 tnega olleh"]);
        let report = lockstep_core::replay(&log, 1, |_| {}).unwrap();
        assert!(report.divergence.is_none() && report.complete);
        assert_eq!(report.ticks_verified, 1);
    }
}
