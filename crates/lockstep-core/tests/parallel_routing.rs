//! Routing on several threads (`scheduler::route_in_parallel`, used for a phase of at least
//! 8,192 messages on the worker pool) gives exactly what routing on one thread gives: the same
//! inboxes, the same "inbox full" decisions, the same dead letters and host messages in the same
//! order, the same tick hashes, and a replay on one worker agrees.

mod common;
use common::*;
use lockstep_core::{replay, DeadLetter, Message, Runtime, RuntimeConfig};

const SPRAYERS: u64 = 300;
const PER_STEP: u32 = 250;

/// Each step sends `PER_STEP` 12-byte messages (its id and the message's index): the first 230
/// to agent 1 (300 senders overfill its 65,536-message inbox in one tick), the rest spread
/// over ids 1..=320 (301..=320 are no agent); every 97th to the host, every 101st to an id
/// that never existed; priorities 0..2 by index.
fn sprayer() -> Vec<u8> {
    wat(&format!(
        r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "lockstep_abi_version") (result i32) i32.const 2)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (local $i i32) (local $to i64) (local $id i64)
    (local.set $id (i64.load offset=16 (local.get $ctx)))
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (i32.const {PER_STEP})))
      (local.set $to (i64.add (i64.rem_u (i64.add (i64.mul (local.get $id) (i64.const 7)) (i64.extend_i32_u (local.get $i))) (i64.const 320)) (i64.const 1)))
      (if (i32.lt_u (local.get $i) (i32.const 230)) (then (local.set $to (i64.const 1))))
      (if (i32.eqz (i32.rem_u (local.get $i) (i32.const 97))) (then (local.set $to (i64.const 0))))
      (if (i32.eqz (i32.rem_u (local.get $i) (i32.const 101))) (then (local.set $to (i64.const 999999))))
      (i64.store (i32.const 0) (local.get $id))
      (i32.store (i32.const 8) (local.get $i))
      (drop (call $send (local.get $to) (i32.const 1) (i32.rem_u (local.get $i) (i32.const 3)) (i32.const 0) (i32.const 12)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    i32.const 0))"#
    ))
}

struct Outcome {
    hashes: Vec<String>,
    dead: Vec<DeadLetter>,
    host: Vec<Message>,
    log: Vec<u8>,
}

fn run(workers: usize) -> Outcome {
    let mut rt = Runtime::new(RuntimeConfig { workers, max_agents: 1_024, ..RuntimeConfig::development() }).unwrap();
    let module = rt.load_module(sprayer()).unwrap();
    for _ in 0..SPRAYERS {
        rt.spawn(module).unwrap();
    }
    let mut hashes = Vec::new();
    let (mut dead, mut host) = (Vec::new(), Vec::new());
    for tick in 0..6 {
        if tick == 2 {
            rt.kill(5).unwrap();
            rt.shutdown(6).unwrap();
        }
        let report = rt.tick().unwrap();
        assert_eq!(report.messages_routed, (SPRAYERS - if tick >= 2 { 2 } else { 0 }) * PER_STEP as u64, "tick {tick}");
        hashes.push(report.hash.to_string());
        dead.extend(rt.drain_dead_letters());
        host.extend(rt.drain_host_messages());
    }
    Outcome { hashes, dead, host, log: rt.stop_recording().unwrap() }
}

#[test]
fn routing_on_several_threads_is_routing_on_one() {
    let one = run(1);
    use lockstep_core::DeadLetterReason as R;
    for reason in [R::RecipientInboxFull, R::UnknownRecipient, R::RecipientStopped] {
        assert!(one.dead.iter().any(|d| d.reason == reason), "the scenario dead-letters {reason:?}");
    }
    assert!(!one.host.is_empty());
    for workers in [2, 4] {
        let many = run(workers);
        assert_eq!(many.hashes, one.hashes, "{workers} workers: tick hashes");
        assert_eq!(many.dead, one.dead, "{workers} workers: dead letters, in order");
        assert_eq!(many.host, one.host, "{workers} workers: host messages, in order");
        let r = replay(&many.log, 1, |_| {}).unwrap();
        assert_eq!(r.divergence, None, "the {workers}-worker log replays on one");
    }
}
