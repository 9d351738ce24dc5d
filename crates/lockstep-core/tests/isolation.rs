//! Agents cannot see past their memory, or into another agent's: every configuration traps
//! exactly where the wasm spec says, and modules the ABI forbids never load.

mod common;
use common::*;
use lockstep_core::{AgentState, FaultKind, LockstepError, MemoryAllocator, Runtime, RuntimeConfig};

fn runtime_on(allocator: MemoryAllocator) -> Runtime {
    Runtime::new(RuntimeConfig { workers: 1, max_agents: 8, fuel_per_call: 1_000_000, allocator, ..RuntimeConfig::development() }).unwrap()
}

/// An agent whose memory is declared `memory_decl` and whose step runs `step`.
fn agent_with(memory_decl: &str, step: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") {memory_decl})
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 0)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) {step} i32.const 0))"#
    ))
}

const STORE_PAST_SIZE: &str = "(i32.store (i32.const 200000) (i32.const 0x5ec7e7))";

fn fault_kind(rt: &Runtime, id: u64) -> Option<(FaultKind, String)> {
    match rt.inspect(id).unwrap().state {
        AgentState::Faulted(f) => Some((f.kind, f.detail)),
        _ => None,
    }
}

#[test]
fn store_past_memory_size_traps_on_every_allocator_with_or_without_a_maximum() {
    for decl in ["2 4", "2", "2 2", "2 65536"] {
        let mut hashes = Vec::new();
        for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
            let mut rt = runtime_on(allocator);
            let id = rt.spawn_bytes(agent_with(decl, STORE_PAST_SIZE)).unwrap();
            let report = rt.tick().unwrap();
            let (kind, detail) =
                fault_kind(&rt, id).unwrap_or_else(|| panic!("(memory {decl}) on {allocator:?}: a store at 200,000 of a 131,072-byte memory succeeded"));
            assert_eq!(kind, FaultKind::Trap, "(memory {decl}) on {allocator:?}: {detail}");
            assert!(detail.contains("out of bounds"), "(memory {decl}) on {allocator:?}: {detail}");
            hashes.push(report.hash);
        }
        assert_eq!(hashes[0], hashes[1], "(memory {decl}): tick hash depends on the allocator");
    }
}

#[test]
fn loads_past_memory_size_trap_and_grown_memory_is_usable_on_every_allocator() {
    for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
        let mut rt = runtime_on(allocator);
        // Grows to 4 pages, then stores and loads at 200,000: fine. Then a load at 4 pages: trap.
        let ok = rt
            .spawn_bytes(agent_with(
                "2 4",
                "(drop (memory.grow (i32.const 2))) (i32.store (i32.const 200000) (i32.const 7)) (drop (i32.load (i32.const 200000)))",
            ))
            .unwrap();
        let oob = rt.spawn_bytes(agent_with("2 4", "(drop (memory.grow (i32.const 2))) (drop (i32.load (i32.const 262142)))")).unwrap();
        rt.tick().unwrap();
        assert_eq!(fault_kind(&rt, ok), None, "{allocator:?}: an access inside grown memory faulted");
        assert_eq!(fault_kind(&rt, oob).map(|f| f.0), Some(FaultKind::Trap), "{allocator:?}: a load straddling the end succeeded");
    }
}

#[test]
fn an_agent_in_a_reused_slab_slot_never_reads_its_predecessors_bytes() {
    let mut rt = runtime_on(MemoryAllocator::Slab);
    // The writer stores a secret inside its memory (grown to 4 pages) and past it (where the old
    // slab allowed stores beyond memory.size), then dies.
    let writer = rt
        .spawn_bytes(agent_with(
            "2 4",
            "(drop (memory.grow (i32.const 1))) (i32.store (i32.const 150000) (i32.const 0x5ec7e7)) (i32.store (i32.const 200000) (i32.const 0x5ec7e7))",
        ))
        .unwrap();
    rt.tick().unwrap();
    if rt.inspect(writer).unwrap().state.is_running() {
        rt.kill(writer).unwrap();
    }
    // The reader grows to 4 pages and reports both words to the host.
    let reader = rt
        .spawn_bytes(agent_with(
            "2 4",
            "(drop (memory.grow (i32.const 2))) (i32.store (i32.const 0) (i32.load (i32.const 150000))) (i32.store (i32.const 4) (i32.load (i32.const 200000))) (drop (call $send (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 8)))",
        ))
        .unwrap();
    rt.tick().unwrap();
    assert_eq!(fault_kind(&rt, reader), None);
    let messages = rt.drain_host_messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload, vec![0u8; 8], "the new agent saw its predecessor's data");
}

#[test]
fn a_session_recorded_on_the_pooling_allocator_replays_on_the_slab() {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_agents: 8, allocator: MemoryAllocator::Pooling, ..RuntimeConfig::development() }).unwrap();
    rt.spawn_bytes(agent_with("2 4", STORE_PAST_SIZE)).unwrap();
    rt.spawn_bytes(agent("counter")).unwrap();
    rt.run(3).unwrap();
    let log = rt.stop_recording().unwrap();
    // replay() runs on the platform default: the slab allocator on Linux.
    let report = lockstep_core::replay(&log, 1, |_| {}).unwrap();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert_eq!(report.ticks_verified, 3);
}

fn load_error(module: Vec<u8>) -> LockstepError {
    let mut rt = runtime_on(MemoryAllocator::default());
    rt.load_module(module).expect_err("the module must be refused")
}

fn refused_naming(module: Vec<u8>, words: &str) {
    let e = load_error(module);
    assert_eq!(e.code(), "E_INVALID_MODULE", "{e}");
    assert!(e.to_string().contains(words), "error should name the rule ({words}): {e}");
}

fn module_with_extra(extra: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (memory (export "memory") 2)
            {extra}
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 0)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) i32.const 0))"#
    ))
}

#[test]
fn multi_memory_modules_are_refused_at_admission() {
    let extra: String = (0..8).map(|i| format!("(memory $m{i} 256)")).collect();
    refused_naming(module_with_extra(&extra), "exactly one");
}

#[test]
fn memory64_modules_are_refused_at_admission() {
    let m = wat(r#"(module
        (memory (export "memory") i64 2)
        (func (export "lockstep_abi_version") (result i32) i32.const 1)
        (func (export "lockstep_io_buffer") (result i32) i32.const 0)
        (func (export "agent_init") (result i32) i32.const 0)
        (func (export "agent_receive") (param i32) (result i32) i32.const 0)
        (func (export "agent_shutdown") (result i32) i32.const 0)
        (func (export "agent_step") (param i32) (result i32) i32.const 0))"#);
    refused_naming(m, "64-bit memory");
}

#[test]
fn modules_without_a_memory_or_with_an_imported_one_are_refused() {
    let no_memory = wat(r#"(module
        (func (export "lockstep_abi_version") (result i32) i32.const 1))"#);
    refused_naming(no_memory, "0 memories");
    let imported = wat(r#"(module (import "lockstep" "send" (memory 1)) (memory (export "memory") 2))"#);
    let e = load_error(imported);
    assert_eq!(e.code(), "E_INVALID_MODULE", "{e}");
}

#[test]
fn oversized_custom_sections_and_modules_are_refused() {
    let mut m = module_with_extra("");
    // A 2 MiB custom section named "junk".
    let name = b"junk";
    let payload_len = 2 << 20;
    let mut section = vec![0u8];
    let mut body = Vec::new();
    leb128(&mut body, name.len() as u64);
    body.extend_from_slice(name);
    body.resize(body.len() + payload_len, 0xAA);
    leb128(&mut section, body.len() as u64);
    section.extend_from_slice(&body);
    m.extend_from_slice(&section);
    refused_naming(m, "custom sections");
    let mut huge = module_with_extra("");
    huge.resize(17 << 20, 0);
    refused_naming(huge, "limit is");
}

#[test]
fn tables_and_globals_beyond_the_limits_are_refused() {
    refused_naming(module_with_extra("(table 10 funcref) (table 10 funcref)"), "2 tables");
    refused_naming(module_with_extra("(table 100000 funcref)"), "table starts at 100000");
    let globals: String = (0..1025).map(|_| "(global i32 (i32.const 0))".to_string()).collect();
    refused_naming(module_with_extra(&globals), "1025 globals");
}

#[test]
fn inspect_memory_bytes_is_the_agents_whole_memory() {
    let mut rt = runtime_on(MemoryAllocator::default());
    let id = rt.spawn_bytes(agent_with("2", "(drop (memory.grow (i32.const 3)))")).unwrap();
    rt.tick().unwrap();
    assert_eq!(rt.inspect(id).unwrap().memory_bytes, 5 * 65_536);
}

#[test]
fn six_hundred_live_runtimes_fit_the_address_space() {
    // Each used to reserve maxAgents × memoryLimitBytes (256 GiB by default) at creation; the
    // ~496th of a process failed. Now a runtime reserves a chunk when its first agent spawns.
    let module = agent_with("2", "");
    let runtimes: Vec<Runtime> = (0..600)
        .map(|i| {
            let mut rt =
                Runtime::new(RuntimeConfig { workers: 1, record: false, ..RuntimeConfig::development() }).unwrap_or_else(|e| panic!("runtime {i}: {e}"));
            rt.spawn_bytes(module.clone()).unwrap_or_else(|e| panic!("runtime {i}: {e}"));
            rt
        })
        .collect();
    assert_eq!(runtimes.len(), 600);
}
