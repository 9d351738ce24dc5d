//! Red-team findings (issue 9 follow-up): each test guards one hole found by attacking the
//! fixes from outside. A test marked `#[ignore = "finding: ..."]` is a known, unfixed hole.

mod common;
use common::*;
use lockstep_core::{abi, AgentState, Event, MemoryAllocator, Runtime, RuntimeConfig};

fn runtime_on(allocator: MemoryAllocator, workers: usize) -> Runtime {
    Runtime::new(RuntimeConfig {
        workers,
        max_agents: 8,
        fuel_per_call: 100_000_000,
        record: false,
        allocator,
        ..RuntimeConfig::development()
    })
    .unwrap()
}

/// Step sends `n` empty messages to itself; receive logs 64 lines of 1,024 bytes.
fn log_flooder(n: u32) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (import "lockstep" "self_id" (func $self (result i64)))
            (import "lockstep" "log" (func $log (param i32 i32 i32)))
            (memory (export "memory") 3)
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 131072)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) (local $i i32)
                (block $done (loop $more
                    (br_if $done (i32.ge_u (local.get $i) (i32.const 64)))
                    (call $log (i32.const 3) (i32.const 0) (i32.const 1024))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $more)))
                i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) (local $i i32)
                (block $done (loop $more
                    (br_if $done (i32.ge_u (local.get $i) (i32.const {n})))
                    (drop (call $send (call $self) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $more)))
                i32.const 0))"#
    ))
}

/// One agent with a 192 KiB memory cap could make the host hold 4,096 receives × 64 lines ×
/// 1 KiB = 256 MiB of log lines within one tick (the event queue is only trimmed at the end of
/// the tick, and the per-call line limit resets on every receive).
#[test]
fn log_lines_one_agent_writes_in_one_tick_are_bounded() {
    let mut rt = runtime_on(MemoryAllocator::Slab, 1);
    let id = rt.spawn_bytes(log_flooder(abi::MAX_OUTBOX_PER_TICK as u32)).unwrap();
    rt.tick();
    rt.drain_events();
    let dropped_before = rt.events_dropped();
    rt.tick();
    let logs = rt.drain_events().iter().filter(|e| matches!(e, Event::Log { agent, .. } if *agent == id)).count() as u64;
    let produced = logs + (rt.events_dropped() - dropped_before);
    assert!(
        produced <= abi::MAX_LOG_LINES_PER_TICK as u64,
        "one agent produced {produced} log lines (~{} MiB) in one tick",
        produced >> 10
    );
}
