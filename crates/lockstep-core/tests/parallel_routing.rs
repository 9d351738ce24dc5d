//! Routing on several threads (`scheduler::route_in_parallel`, used for a phase of at least
//! 8,192 messages on the worker pool) gives exactly what routing on one thread gives: the same
//! inboxes, the same "inbox full" decisions, the same dead letters and host messages in the same
//! order, the same tick hashes, and a replay on one worker agrees.

mod common;
use common::*;
use lockstep_core::{replay, DeadLetter, Message, Runtime, RuntimeConfig};

const SPRAYERS: u64 = 300;
/// Each sprayer sends 250 messages a step, the first 230 to agent 1: 300 senders overfill its
/// 65,536-message inbox in one tick; the rest spread over ids 1..=320 (301..=320 are no agent).
const PER_STEP: u32 = 250;

struct Outcome {
    hashes: Vec<String>,
    dead: Vec<DeadLetter>,
    host: Vec<Message>,
    log: Vec<u8>,
}

fn run(workers: usize) -> Outcome {
    let mut rt = Runtime::new(RuntimeConfig { workers, max_agents: 1_024, ..RuntimeConfig::development() }).unwrap();
    let module = rt.load_module(spraying_agent(PER_STEP, 320, 230, 0)).unwrap();
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
