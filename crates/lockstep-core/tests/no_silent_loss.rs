//! Nothing an agent or the host sends vanishes: every message is delivered, dead-lettered,
//! or refused with an error the sender sees.

mod common;
use common::*;
use lockstep_core::{AgentState, DeadLetterReason, Event, LockstepError, MemoryAllocator, Runtime, RuntimeConfig};

/// An agent whose `agent_init` sends `n` 8-byte messages to `to`, then runs `then`.
fn init_sender(to: u64, n: u32, then: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (import "lockstep" "log" (func $log (param i32 i32 i32)))
            (memory (export "memory") 2)
            (data (i32.const 0) "init-msg")
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
            (func (export "agent_init") (result i32) (local $i i32)
                (call $log (i32.const 3) (i32.const 0) (i32.const 8))
                (block $done (loop $more
                    (br_if $done (i32.ge_u (local.get $i) (i32.const {n})))
                    (drop (call $send (i64.const {to}) (local.get $i) (i32.const 0) (i32.const 0) (i32.const 8)))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $more)))
                {then})
            (func (export "agent_step") (param i32) (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0))"#
    ))
}

#[test]
fn messages_sent_in_agent_init_before_a_fault_are_routed() {
    let mut rt = runtime(1);
    let id = rt.spawn_bytes(init_sender(0, 3, "unreachable")).unwrap();
    assert!(matches!(rt.inspect(id).unwrap().state, AgentState::Faulted(_)));
    rt.tick().unwrap();
    let got = rt.drain_host_messages();
    assert_eq!(got.len(), 3, "the three messages init sent before trapping reach the host");
    assert!(got.iter().all(|m| m.from == id && m.payload == b"init-msg"));
    let logged = rt.drain_events().into_iter().any(|e| matches!(e, Event::Log { agent, text, .. } if agent == id && text == "init-msg"));
    assert!(logged, "what init logged before trapping is reported too");
}

#[test]
fn messages_sent_in_agent_init_survive_a_kill_before_the_first_tick() {
    let mut rt = runtime(1);
    let id = rt.spawn_bytes(init_sender(0, 2, "i32.const 0")).unwrap();
    rt.kill(id).unwrap();
    rt.tick().unwrap();
    assert_eq!(rt.drain_host_messages().len(), 2);
}

#[test]
fn messages_sent_in_agent_init_to_a_dead_agent_are_dead_lettered() {
    let mut rt = runtime(1);
    let id = rt.spawn_bytes(init_sender(999, 2, "unreachable")).unwrap();
    rt.tick().unwrap();
    let dead = rt.drain_dead_letters();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.reason == DeadLetterReason::UnknownRecipient && d.message.from == id));
}

#[test]
fn init_messages_replay_identically() {
    let mut rt = runtime(1);
    rt.spawn_bytes(init_sender(0, 2, "unreachable")).unwrap();
    rt.spawn_bytes(init_sender(1, 1, "i32.const 0")).unwrap();
    rt.run(3).unwrap();
    let log = rt.stop_recording().unwrap();
    let report = lockstep_core::replay(&log, 2, |_| {}).unwrap();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
}

#[test]
fn max_agents_counts_the_living_not_every_agent_ever_spawned() {
    for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
        let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_agents: 2, allocator, ..RuntimeConfig::development() }).unwrap();
        let a = rt.spawn_bytes(agent("counter")).unwrap();
        let b = rt.spawn_bytes(agent("counter")).unwrap();
        assert_eq!(rt.spawn_bytes(agent("counter")).unwrap_err(), LockstepError::AgentLimit { max: 2 }, "{allocator:?}");
        rt.kill(a).unwrap();
        rt.shutdown(b).unwrap();
        let c = rt.spawn_bytes(agent("counter")).expect("two dead agents leave room for two more");
        let d = rt.spawn_bytes(agent("counter")).unwrap();
        assert_eq!((c, d), (3, 4), "ids are never reused");
        assert_eq!(rt.spawn_bytes(agent("counter")).unwrap_err().code(), "E_AGENT_LIMIT");
        // An agent that faults in init holds no place either.
        rt.kill(c).unwrap();
        let faulty = rt.spawn_bytes(init_sender(0, 0, "unreachable")).unwrap();
        assert!(matches!(rt.inspect(faulty).unwrap().state, AgentState::Faulted(_)));
        rt.spawn_bytes(agent("counter")).expect("a faulted agent frees its place at once");
        rt.tick().unwrap();
        assert!(rt.inspect(d).unwrap().state.is_running());
    }
}
