//! Every way an agent can misbehave is contained to that agent, with the right reason.

mod common;
use common::*;
use lockstep_core::{AbiCall, AgentState, DeadLetterReason, Event, FaultKind, LockstepError, Runtime, RuntimeConfig};

fn fault_of(rt: &Runtime, id: u64) -> lockstep_core::Fault {
    match rt.inspect(id).unwrap().state {
        AgentState::Faulted(f) => f,
        other => panic!("agent {id} should be faulted, is {other:?}"),
    }
}

fn trap_agent_told(kind: u32) -> (Runtime, u64, u64) {
    let mut rt = runtime(1);
    let counter = rt.spawn_bytes(agent("counter")).unwrap();
    let trap = rt.spawn_bytes(agent("adv_trap")).unwrap();
    rt.send(trap, kind, 0, vec![]).unwrap();
    rt.tick().unwrap();
    (rt, counter, trap)
}

#[test]
fn infinite_loop_is_preempted_by_fuel_deterministically() {
    let mut fuel_used = Vec::new();
    for _ in 0..2 {
        let mut rt = runtime(1);
        let spin = rt.spawn_bytes(agent("adv_spin")).unwrap();
        let counter = rt.spawn_bytes(agent("counter")).unwrap();
        let report = rt.tick().unwrap();
        assert_eq!(report.faults, 1);
        let f = fault_of(&rt, spin);
        assert_eq!(f.kind, FaultKind::FuelExhausted);
        assert_eq!(f.call, AbiCall::Step);
        assert_eq!(rt.inspect(spin).unwrap().state.name(), "preempted");
        rt.tick().unwrap();
        assert_eq!(rt.inspect(counter).unwrap().steps, 2, "the other agent carries on");
        fuel_used.push(rt.state_hash());
    }
    assert_eq!(fuel_used[0], fuel_used[1], "fuel stops the loop at the same instruction every run");
}

#[test]
fn infinite_loop_without_fuel_hits_the_deadline() {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, fuel_per_call: 0, deadline_ms: 50, max_agents: 16, ..RuntimeConfig::development() }).unwrap();
    let spin = rt.spawn_bytes(agent("adv_spin")).unwrap();
    rt.tick().unwrap();
    assert_eq!(fault_of(&rt, spin).kind, FaultKind::Deadline);
}

#[test]
fn memory_bomb_hits_the_cap_and_only_its_agent_dies() {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, memory_limit_bytes: 8 << 20, max_agents: 16, ..RuntimeConfig::development() }).unwrap();
    let bomb = rt.spawn_bytes(agent("adv_membomb")).unwrap();
    let counter = rt.spawn_bytes(agent("counter")).unwrap();
    for _ in 0..4 {
        rt.tick().unwrap();
    }
    let f = fault_of(&rt, bomb);
    assert_eq!(f.kind, FaultKind::MemoryLimit, "{f}");
    assert_eq!(rt.inspect(counter).unwrap().steps, 4);
}

#[test]
fn panic_in_init_is_contained_and_reported() {
    let mut rt = runtime(1);
    let bad = rt.spawn_bytes(agent("adv_panic_init")).unwrap();
    let good = rt.spawn_bytes(agent("counter")).unwrap();
    let f = fault_of(&rt, bad);
    assert_eq!((f.kind, f.call), (FaultKind::Panic, AbiCall::Init));
    assert!(f.detail.contains("refusing to start"), "panic message reaches the host: {}", f.detail);
    rt.tick().unwrap();
    assert_eq!(rt.inspect(good).unwrap().steps, 1);
}

#[test]
fn panic_in_receive_dead_letters_the_fatal_message() {
    let (mut rt, counter, trap) = trap_agent_told(1);
    let f = fault_of(&rt, trap);
    assert_eq!((f.kind, f.call), (FaultKind::Panic, AbiCall::Receive));
    assert!(f.detail.contains("asked to panic in receive"));
    let dead = rt.drain_dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadLetterReason::RecipientFaultedDuringDelivery);
    assert_eq!(dead[0].message.kind, 1);
    assert_eq!(rt.inspect(counter).unwrap().steps, 1);
}

#[test]
fn panic_in_step_is_contained() {
    let (mut rt, counter, trap) = trap_agent_told(2);
    let f = fault_of(&rt, trap);
    assert_eq!((f.kind, f.call), (FaultKind::Panic, AbiCall::Step));
    assert!(f.detail.contains("asked to panic in step at tick 0"), "{}", f.detail);
    rt.tick().unwrap();
    assert_eq!(rt.inspect(counter).unwrap().steps, 2);
}

#[test]
fn panic_in_shutdown_is_contained() {
    let (mut rt, counter, trap) = trap_agent_told(3);
    assert!(rt.inspect(trap).unwrap().state.is_running());
    rt.shutdown(trap).unwrap();
    let f = fault_of(&rt, trap);
    assert_eq!((f.kind, f.call), (FaultKind::Panic, AbiCall::Shutdown));
    rt.tick().unwrap();
    assert_eq!(rt.inspect(counter).unwrap().steps, 2);
}

#[test]
fn raw_trap_and_out_of_bounds_access_are_traps() {
    let (rt, _, trap) = trap_agent_told(4);
    let f = fault_of(&rt, trap);
    assert_eq!((f.kind, f.call), (FaultKind::Trap, AbiCall::Receive));
    let (mut rt, _, trap) = trap_agent_told(6);
    rt.tick().unwrap();
    let f = fault_of(&rt, trap);
    assert_eq!((f.kind, f.call), (FaultKind::Trap, AbiCall::Step), "{f}");
    assert!(f.detail.contains("out of bounds"), "{}", f.detail);
}

#[test]
fn out_of_bounds_pointer_to_the_host_faults_the_agent() {
    let (rt, counter, trap) = trap_agent_told(5);
    let f = fault_of(&rt, trap);
    assert_eq!(f.kind, FaultKind::HostCallViolation);
    assert!(f.detail.contains("`send`"), "{}", f.detail);
    assert!(rt.inspect(counter).unwrap().state.is_running());
}

#[test]
fn out_of_bounds_pointers_in_every_host_import_are_violations() {
    for (import, call) in [
        ("`send`", "i64.const 1 i32.const 0 i32.const 0 i32.const 131000 i32.const 1000 call $send drop"),
        ("`send_plain`", "i64.const 1 i32.const 0 i32.const 131000 i32.const 1000 call $send_plain drop"),
        ("`send_plain`", "i64.const 1 i32.const 0 i32.const -8 i32.const 16 call $send_plain drop"),
        ("log", "i32.const 3 i32.const -8 i32.const 16 call $log"),
        ("report_panic", "i32.const 131070 i32.const 4 call $report_panic"),
        ("infer", "i32.const 0 i32.const 1 i32.const 65536 i32.const 70000 call $infer drop"),
        // 16 bytes from 8 before the end of the 2-page memory; then a pointer of -8 (4 GiB - 8)
        ("random_fill", "i32.const 131064 i32.const 2 call $random_fill"),
        ("random_fill", "i32.const -8 i32.const 1 call $random_fill"),
        // counts the host refuses before looking at the pointer: negative, over 32
        ("random_fill", "i32.const 0 i32.const -1 call $random_fill"),
        ("random_fill", "i32.const 0 i32.const 33 call $random_fill"),
    ] {
        let bytes = importing_agent(
            r#"(import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
               (import "lockstep" "send_plain" (func $send_plain (param i64 i32 i32 i32) (result i32)))
               (import "lockstep" "log" (func $log (param i32 i32 i32)))
               (import "lockstep" "report_panic" (func $report_panic (param i32 i32)))
               (import "lockstep" "infer" (func $infer (param i32 i32 i32 i32) (result i32)))
               (import "lockstep" "random_fill" (func $random_fill (param i32 i32)))"#,
            &format!("{call} i32.const 0"),
        );
        let mut rt = runtime(1);
        let id = rt.spawn_bytes(bytes).unwrap();
        rt.tick().unwrap();
        let f = fault_of(&rt, id);
        assert_eq!(f.kind, FaultKind::HostCallViolation, "{import}: {f}");
        assert!(f.detail.contains(import), "{import}: {}", f.detail);
    }
}

#[test]
fn non_zero_status_is_an_agent_error() {
    let mut rt = runtime(1);
    let id = rt.spawn_bytes(wat_agent(1, r#"(func (export "agent_step") (param i32) (result i32) i32.const 7)"#)).unwrap();
    rt.tick().unwrap();
    let f = fault_of(&rt, id);
    assert_eq!(f.kind, FaultKind::AgentError);
    assert!(f.detail.contains("status 7"));
}

#[test]
fn messages_to_dead_agents_go_to_the_dead_letter_queue() {
    let mut rt = runtime(1);
    let a = rt.spawn_bytes(agent("counter")).unwrap();
    let b = rt.spawn_bytes(agent("counter")).unwrap();
    rt.kill(a).unwrap();
    rt.send(a, 1, 0, b"late".to_vec()).unwrap();
    rt.send(b, 5, 0, b"queued".to_vec()).unwrap();
    rt.shutdown(b).unwrap();
    rt.tick().unwrap();
    let dead = rt.drain_dead_letters();
    let reasons: Vec<_> = dead.iter().map(|d| (d.message.to, d.reason)).collect();
    assert!(reasons.contains(&(a, DeadLetterReason::RecipientStopped)), "{reasons:?}");
    assert!(reasons.contains(&(b, DeadLetterReason::RecipientStopped)), "{reasons:?}");
    assert_eq!(rt.inspect(a).unwrap().state, AgentState::Killed);
    assert_eq!(rt.inspect(b).unwrap().state, AgentState::Stopped);
    let events = rt.drain_events();
    assert!(events.iter().any(|e| matches!(e, Event::Killed { agent, .. } if *agent == a)));
    assert!(events.iter().any(|e| matches!(e, Event::Stopped { agent, .. } if *agent == b)));
    assert!(matches!(rt.kill(a), Err(LockstepError::AgentNotRunning { .. })));
}

#[test]
fn agents_addressing_unknown_ids_produce_dead_letters() {
    let mut rt = runtime(1);
    let id = rt.spawn_bytes(agent("ping_pong")).unwrap();
    let mut payload = 999u64.to_le_bytes().to_vec();
    payload.extend_from_slice(&3u64.to_le_bytes());
    rt.send(id, 0, 0, payload).unwrap();
    rt.tick().unwrap();
    let dead = rt.drain_dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadLetterReason::UnknownRecipient);
    assert_eq!(dead[0].message.to, 999);
}

/// `random_fill` hands out the numbers `random_u64` would have, in order, from the same stream
/// (the SDK's `random_u64` relies on it): one agent draws 3 with `random_fill` (up to the
/// memory's last byte), then 2 with `random_u64`; an agent of the same id in a runtime of the
/// same seed draws 5 with `random_u64`. A count of 0 writes nothing, at any pointer up to the
/// end of memory.
#[test]
fn random_fill_gives_the_numbers_random_u64_would_in_order() {
    let drawn = |body: &str| {
        let bytes = importing_agent(
            r#"(import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
               (import "lockstep" "random_u64" (func $random_u64 (result i64)))
               (import "lockstep" "random_fill" (func $random_fill (param i32 i32)))"#,
            &format!(
                "(i64.store (i32.const 131040) (i64.const -1))
                 {body}
                 (drop (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 131032) (i32.const 40)))
                 i32.const 0"
            ),
        );
        let mut rt = runtime(1);
        let id = rt.spawn_bytes(bytes).unwrap();
        rt.tick().unwrap();
        assert!(rt.inspect(id).unwrap().state.is_running(), "{:?}", rt.inspect(id).unwrap().state);
        let words: Vec<u64> = rt.drain_host_messages()[0].payload.chunks(8).map(|w| u64::from_le_bytes(w.try_into().unwrap())).collect();
        words
    };
    let filled = drawn(
        "(call $random_fill (i32.const 131072) (i32.const 0))
         (call $random_fill (i32.const 131048) (i32.const 3))
         (i64.store (i32.const 131032) (call $random_u64))
         (i64.store (i32.const 131040) (call $random_u64))",
    );
    let one_by_one = drawn(
        "(i64.store (i32.const 131048) (call $random_u64))
         (i64.store (i32.const 131056) (call $random_u64))
         (i64.store (i32.const 131064) (call $random_u64))
         (i64.store (i32.const 131032) (call $random_u64))
         (i64.store (i32.const 131040) (call $random_u64))",
    );
    assert_eq!(filled, one_by_one);
    assert!(filled.iter().all(|&w| w != u64::MAX) && filled[0] != filled[1], "{filled:x?}");
}

/// A `random_fill` module whose step calls it with `count` numbers `calls` times (0: forever).
fn random_fill_agent(count: u32, calls: u32) -> Vec<u8> {
    importing_agent(
        r#"(import "lockstep" "random_fill" (func $random_fill (param i32 i32)))"#,
        &format!(
            "(local $left i32)
             (local.set $left (i32.const {calls}))
             (loop $again
                 (call $random_fill (i32.const 0) (i32.const {count}))
                 (local.set $left (i32.sub (local.get $left) (i32.const 1)))
                 (br_if $again (local.get $left)))
             i32.const 0"
        ),
    )
}

/// A loop of `random_fill` calls runs out of fuel like any loop, at the same instruction every
/// run (red team: with 512 numbers a call the host did ~60 times a `random_u64` loop's work per
/// unit of fuel, and the loop ended in the wall-clock deadline, not deterministically; a call
/// now writes at most 32). Fuel is the call's own: the host charges none
/// (tests/time_slicing.rs has why).
#[test]
fn a_loop_of_random_fill_runs_out_of_fuel_at_the_same_instruction_every_run() {
    let fuel_of = |count: u32| {
        let mut rt = runtime(1);
        rt.spawn_bytes(random_fill_agent(count, 3)).unwrap();
        rt.tick().unwrap().fuel
    };
    assert_eq!(fuel_of(32), fuel_of(0), "the host charges no fuel of its own");

    let mut details = Vec::new();
    for _ in 0..2 {
        let mut rt = runtime(1);
        let id = rt.spawn_bytes(random_fill_agent(32, 0)).unwrap();
        rt.tick().unwrap();
        let f = fault_of(&rt, id);
        assert_eq!((f.kind, f.call), (FaultKind::FuelExhausted, AbiCall::Step), "{f}");
        details.push((f.detail, rt.state_hash()));
    }
    assert_eq!(details[0], details[1], "the same instruction runs out of fuel every run");
}
