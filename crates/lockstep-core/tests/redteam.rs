//! Red-team findings (issue 9 follow-up): each test guards one hole found by attacking the
//! fixes from outside. A test marked `#[ignore = "finding: ..."]` is a known, unfixed hole.

mod common;
use common::*;
use lockstep_core::{abi, AgentState, Event, MemoryAllocator, Runtime, RuntimeConfig};

fn runtime_on(allocator: MemoryAllocator, workers: usize) -> Runtime {
    Runtime::new(RuntimeConfig { workers, max_agents: 8, fuel_per_call: 100_000_000, record: false, allocator, ..RuntimeConfig::development() }).unwrap()
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
    rt.tick().unwrap();
    rt.drain_events();
    let dropped_before = rt.events_dropped();
    rt.tick().unwrap();
    let logs = rt.drain_events().iter().filter(|e| matches!(e, Event::Log { agent, .. } if *agent == id)).count() as u64;
    let produced = logs + (rt.events_dropped() - dropped_before);
    assert!(produced <= abi::MAX_LOG_LINES_PER_TICK as u64, "one agent produced {produced} log lines (~{} MiB) in one tick", produced >> 10);
}

/// `agent_init` sends exactly its own 1 MiB budget (16 × 65,496 + 640 bytes); the first step then
/// sends one 100-byte message to the host. ABI.md: init has a budget of its own.
#[test]
fn init_byte_budget_is_not_charged_to_the_first_tick() {
    let module = wat(r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 3)
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 131072)
            (func (export "agent_init") (result i32) (local $i i32)
                (block $done (loop $more
                    (br_if $done (i32.ge_u (local.get $i) (i32.const 16)))
                    (drop (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 65496)))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $more)))
                (drop (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 640)))
                i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32)
                (i32.store (i32.const 0) (call $send (i64.const 0) (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 100)))
                i32.const 0))"#);
    let mut rt = runtime_on(MemoryAllocator::Slab, 1);
    rt.spawn_bytes(module).unwrap();
    rt.tick().unwrap();
    let kinds: Vec<u32> = rt.drain_host_messages().iter().map(|m| m.kind).collect();
    assert_eq!(kinds.iter().filter(|&&k| k == 1).count(), 17, "init's 17 messages");
    assert_eq!(kinds.iter().filter(|&&k| k == 2).count(), 1, "the first step's send was refused: init's bytes were charged to tick 0");
}

/// What `agent_shutdown` logs is kept, like what `agent_init` logs.
#[test]
fn agent_shutdown_log_lines_are_not_lost() {
    let module = wat(r#"(module
            (import "lockstep" "log" (func $log (param i32 i32 i32)))
            (memory (export "memory") 2)
            (data (i32.const 0) "goodbye")
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 65536)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) (call $log (i32.const 3) (i32.const 0) (i32.const 7)) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) i32.const 0))"#);
    let mut rt = runtime_on(MemoryAllocator::Slab, 1);
    let id = rt.spawn_bytes(module).unwrap();
    rt.tick().unwrap();
    rt.shutdown(id).unwrap();
    rt.tick().unwrap();
    let events = rt.drain_events();
    assert!(
        events.iter().any(|e| matches!(e, Event::Log { agent, text, .. } if *agent == id && text == "goodbye")),
        "agent_shutdown's log line vanished: {events:?}"
    );
}

/// The same module is admitted, or refused, on every allocator: admission must not depend on
/// where memories live.
fn same_verdict_on_every_allocator(what: &str, module: &[u8]) {
    let mut verdicts = Vec::new();
    for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
        let mut rt = runtime_on(allocator, 1);
        let r = rt.spawn_bytes(module.to_vec()).map(|id| {
            rt.tick().unwrap();
            matches!(rt.inspect(id).unwrap().state, AgentState::Running)
        });
        verdicts.push((allocator, r.as_ref().map_err(|e| e.to_string()).cloned()));
    }
    assert_eq!(verdicts[0].1.is_ok(), verdicts[1].1.is_ok(), "{what}: {verdicts:?}");
}

#[test]
fn a_table_within_the_abi_limit_loads_on_every_allocator() {
    let module = wat_agent(1, &format!("(table {} funcref) (func (export \"agent_step\") (param i32) (result i32) i32.const 0)", abi::MAX_TABLE_ELEMENTS));
    same_verdict_on_every_allocator("table of MAX_TABLE_ELEMENTS", &module);
}

/// A module of `imports` imported and `defined` own functions besides the ABI's five, every
/// one of them escaping (declared in an element segment): each takes room in the instance's
/// host-side context, outside the agent's memory cap (32 bytes per escaping function; a
/// 16 MiB module can declare ~1,000,000 of them).
fn escaping_functions(imports: usize, defined: usize) -> Vec<u8> {
    let mut m = String::from("(module ");
    for _ in 0..imports {
        m.push_str(r#"(import "lockstep" "tick" (func (result i64)))"#);
    }
    m.push_str(
        r#"(memory (export "memory") 2)
        (func (export "lockstep_abi_version") (result i32) i32.const 1)
        (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
        (func (export "agent_init") (result i32) i32.const 0)
        (func (export "agent_receive") (param i32) (result i32) i32.const 0)
        (func (export "agent_shutdown") (result i32) i32.const 0)
        (func (export "agent_step") (param i32) (result i32) i32.const 0)"#,
    );
    for _ in 0..defined {
        m.push_str("(func)");
    }
    m.push_str("(elem declare func");
    for i in 0..imports + 6 + defined {
        m.push_str(&format!(" {i}"));
    }
    m.push_str("))");
    wat(&m)
}

#[test]
fn a_module_at_the_function_limit_loads_on_every_allocator() {
    let half = abi::MAX_FUNCTIONS / 2;
    let module = escaping_functions(half, abi::MAX_FUNCTIONS - half - 6);
    for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
        let mut rt = runtime_on(allocator, 1);
        rt.spawn_bytes(module.clone()).unwrap_or_else(|e| panic!("{allocator:?}: {e}"));
    }
}

#[test]
fn a_module_past_the_function_limit_is_refused_on_every_allocator() {
    for module in [escaping_functions(0, 100_000), escaping_functions(abi::MAX_FUNCTIONS - 5, 0)] {
        for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
            let mut rt = runtime_on(allocator, 1);
            match rt.spawn_bytes(module.clone()) {
                Err(e) => assert!(e.to_string().contains("functions"), "{allocator:?}: {e}"),
                Ok(_) => {
                    panic!("{allocator:?}: a module of more than MAX_FUNCTIONS functions loaded")
                }
            }
        }
    }
}

/// `table.grow` must succeed or fail the same way on every allocator (it is visible to the
/// agent, so a difference is a divergence between two runs of the same scenario).
#[test]
fn table_grow_within_the_abi_limit_behaves_the_same_on_every_allocator() {
    let module = wat_agent(
        1,
        &format!(
            r#"(table 1 funcref)
            (func (export "agent_step") (param i32) (result i32)
                (i32.lt_s (table.grow (ref.null func) (i32.const {})) (i32.const 0)))"#,
            abi::MAX_TABLE_ELEMENTS - 1
        ),
    );
    same_verdict_on_every_allocator("table.grow to MAX_TABLE_ELEMENTS", &module);
    let mut states = Vec::new();
    for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
        let mut rt = runtime_on(allocator, 1);
        let id = rt.spawn_bytes(module.clone()).unwrap();
        let hash = rt.tick().unwrap().hash;
        states.push((rt.inspect(id).unwrap().state.name().to_string(), hash));
    }
    assert_eq!(states[0], states[1], "Slab vs Pooling");
}

/// `send` refuses payloads over MAX_PAYLOAD_BYTES; a replay log's Send record must too (it
/// reached the inbox and faulted the agent with "runtime bug: please report").
#[test]
fn a_replayed_send_larger_than_a_message_is_a_corrupt_log() {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, record: true, ..RuntimeConfig::development() }).unwrap();
    let id = rt.spawn_bytes(agent("echo")).unwrap();
    rt.tick().unwrap();
    // The log up to (not including) its End record, then the forged Send.
    let sealed = rt.replay_log().unwrap().to_vec();
    let mut reader = lockstep_core::replay_log::LogReader::new(&sealed).unwrap();
    let mut log = Vec::new();
    lockstep_core::replay_log::write_header(&mut log);
    while let Some(record) = reader.next_record().unwrap() {
        if !matches!(record, lockstep_core::replay_log::Record::End { .. }) {
            record.encode(&mut log);
        }
    }
    lockstep_core::replay_log::encode_send(&mut log, 1, id, 0, 0, &vec![7u8; abi::MAX_PAYLOAD_BYTES + 1]);
    match lockstep_core::replay(&log, 1, |_| {}) {
        Err(lockstep_core::LockstepError::ReplayCorrupt { reason, .. }) => {
            assert!(reason.contains("payload"), "{reason}")
        }
        other => panic!("an oversized recorded message was accepted: {other:?}"),
    }
}

/// An agent whose memory is declared `decl` and whose step runs `step`.
fn memory_agent(decl: &str, step: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (memory (export "memory") {decl})
            (data $d "0123456789abcdef")
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 0)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) {step} i32.const 0))"#
    ))
}

/// Bulk memory operations check the current size, not the slot, on every allocator: a fill,
/// copy or init that ends one byte past `memory.size` traps (and writes nothing), one that
/// ends exactly at it succeeds. 131,072 = 2 pages.
#[test]
fn bulk_memory_ops_past_memory_size_trap_on_every_allocator() {
    let cases = [
        ("fill to the end", "(memory.fill (i32.const 131071) (i32.const 1) (i32.const 1))", true),
        ("fill past the end", "(memory.fill (i32.const 131071) (i32.const 1) (i32.const 2))", false),
        ("fill at size, length 0", "(memory.fill (i32.const 131072) (i32.const 1) (i32.const 0))", true),
        ("fill past size, length 0", "(memory.fill (i32.const 131073) (i32.const 1) (i32.const 0))", false),
        ("copy to past the end", "(memory.copy (i32.const 131000) (i32.const 0) (i32.const 100))", false),
        ("copy from past the end", "(memory.copy (i32.const 0) (i32.const 131000) (i32.const 100))", false),
        ("copy huge", "(memory.copy (i32.const 0) (i32.const 65536) (i32.const -1))", false),
        ("init past the end", "(memory.init $d (i32.const 131070) (i32.const 0) (i32.const 4))", false),
        ("load64 straddling", "(drop (i64.load (i32.const 131068)))", false),
        ("grow then fill the new page", "(drop (memory.grow (i32.const 1))) (memory.fill (i32.const 131072) (i32.const 9) (i32.const 65536))", true),
        ("grow then fill past it", "(drop (memory.grow (i32.const 1))) (memory.fill (i32.const 131072) (i32.const 9) (i32.const 65537))", false),
        ("grow by 0, then store at size", "(drop (memory.grow (i32.const 0))) (i32.store8 (i32.const 131072) (i32.const 1))", false),
        ("v128 load straddling", "(drop (v128.load (i32.const 131060)))", false),
    ];
    for decl in ["2", "2 3", "2 65536"] {
        for (what, step, ok) in cases {
            let mut seen = Vec::new();
            for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
                let mut rt = runtime_on(allocator, 1);
                let id = rt.spawn_bytes(memory_agent(decl, step)).unwrap();
                let hash = rt.tick().unwrap().hash;
                let state = rt.inspect(id).unwrap().state;
                let running = matches!(state, AgentState::Running);
                assert_eq!(running, ok, "(memory {decl}) {what} on {allocator:?}: {state:?}");
                seen.push((hash, rt.deep_hash().hash));
            }
            assert_eq!(seen[0], seen[1], "(memory {decl}) {what}: Slab and Pooling diverge");
        }
    }
}

/// The same scenario (many agents, cross messages, randomness, faults, priorities) gives the
/// same tick and deep hashes with 1 or 2 workers, on Slab and on Pooling.
#[test]
fn hashes_do_not_depend_on_workers_or_allocator() {
    let chatter = wat(r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (import "lockstep" "random_u64" (func $rand (result i64)))
            (import "lockstep" "self_id" (func $self (result i64)))
            (memory (export "memory") 2)
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 65536)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param $p i32) (result i32)
                (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.load (i32.add (local.get $p) (i32.const 0)))))
                i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) (local $r i64)
                (local.set $r (call $rand))
                (i64.store (i32.const 0) (local.get $r))
                ;; a few agents trap now and then
                (if (i64.eqz (i64.rem_u (local.get $r) (i64.const 97))) (then unreachable))
                (drop (call $send (i64.add (i64.rem_u (local.get $r) (i64.const 90)) (i64.const 1)) (i32.const 1)
                    (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 40))) (i32.const 0) (i32.const 16)))
                (drop (call $send (i64.const 0) (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 8)))
                i32.const 0))"#);
    let mut runs = Vec::new();
    for (workers, allocator) in [(1, MemoryAllocator::Slab), (2, MemoryAllocator::Slab), (1, MemoryAllocator::Pooling), (2, MemoryAllocator::Pooling)] {
        let mut rt = Runtime::new(RuntimeConfig { workers, max_agents: 128, record: false, allocator, ..RuntimeConfig::development() }).unwrap();
        let hash = rt.load_module(chatter.clone()).unwrap();
        for i in 0..100 {
            rt.spawn_with_priority(hash, (i % 3) - 1).unwrap();
        }
        let mut hashes = Vec::new();
        for t in 0..30 {
            if t == 10 {
                rt.kill(5).ok();
                rt.shutdown(6).ok();
            }
            let r = rt.tick().unwrap();
            hashes.push(r.hash);
        }
        let host: Vec<_> = rt.drain_host_messages().iter().map(|m| (m.from, m.seq)).collect();
        runs.push((workers, allocator, hashes, rt.deep_hash().hash, host));
    }
    for r in &runs[1..] {
        assert_eq!((&r.2, &r.3, &r.4), (&runs[0].2, &runs[0].3, &runs[0].4), "{}×{:?} vs 1×Slab", r.0, r.1);
    }
}

// ----- inference: batching must not mix agents -------------------------------------------------

fn pb_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    leb128(out, field << 3 | 2);
    leb128(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}
fn pb_int(out: &mut Vec<u8>, field: u64, v: u64) {
    leb128(out, field << 3);
    leb128(out, v);
}
/// ValueInfoProto of a float tensor; a dim is `Err(name)` (dynamic) or `Ok(size)`.
fn pb_value_info(name: &str, dims: &[Result<u64, &str>]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Ok(v) => pb_int(&mut dim, 1, *v),
            Err(p) => pb_bytes(&mut dim, 2, p.as_bytes()),
        }
        pb_bytes(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    pb_int(&mut tensor, 1, 1); // float
    pb_bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    pb_bytes(&mut ty, 1, &tensor);
    let mut vi = Vec::new();
    pb_bytes(&mut vi, 1, name.as_bytes());
    pb_bytes(&mut vi, 2, &ty);
    vi
}
/// Y = Transpose(X), X: [N, 2] (a dynamic first dimension: "batchable"), Y: [2, N]. Sample k
/// of a batch is not row k of Y: row k holds feature k of *every* sample.
fn transpose_model() -> Vec<u8> {
    let mut node = Vec::new();
    pb_bytes(&mut node, 1, b"X");
    pb_bytes(&mut node, 2, b"Y");
    pb_bytes(&mut node, 4, b"Transpose");
    let mut graph = Vec::new();
    pb_bytes(&mut graph, 1, &node);
    pb_bytes(&mut graph, 2, b"g");
    pb_bytes(&mut graph, 11, &pb_value_info("X", &[Err("N"), Ok(2)]));
    pb_bytes(&mut graph, 12, &pb_value_info("Y", &[Ok(2), Err("N")]));
    let mut opset = Vec::new();
    pb_int(&mut opset, 2, 13);
    let mut model = Vec::new();
    pb_int(&mut model, 1, 7);
    pb_bytes(&mut model, 7, &graph);
    pb_bytes(&mut model, 8, &opset);
    model
}

/// Asks model 0 about [id, 100 × id] (two f32) at its first step; forwards every answer to the host.
fn asker() -> Vec<u8> {
    wat(r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (import "lockstep" "self_id" (func $self (result i64)))
            (import "lockstep" "infer" (func $infer (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 3)
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 65536)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param $p i32) (result i32)
                (drop (call $send (i64.const 0) (i32.const 9) (i32.const 0)
                    (i32.add (local.get $p) (i32.const 40)) (i32.load (i32.add (local.get $p) (i32.const 32)))))
                i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32)
                (if (i32.eqz (i32.load (i32.const 16))) (then
                    (i32.store (i32.const 16) (i32.const 1))
                    (f32.store (i32.const 0) (f32.convert_i64_u (call $self)))
                    (f32.store (i32.const 4) (f32.mul (f32.const 100) (f32.convert_i64_u (call $self))))
                    (drop (call $infer (i32.const 0) (i32.const 7) (i32.const 0) (i32.const 8)))))
                i32.const 0))"#)
}

fn inference_engine() -> std::sync::Arc<lockstep_core::inference::InferenceEngine> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::sync::Arc::new(
        lockstep_core::inference::InferenceEngine::new(lockstep_core::inference::EngineOptions { search_roots: vec![root], ..Default::default() })
            .expect("run `npm install` first"),
    )
}

/// An agent's answer must depend on its own request only: batching a model whose outputs are
/// not sample-major (no dynamic first dimension) handed agent 1 part of agent 2's input.
#[test]
fn batched_inference_never_hands_an_agent_another_agents_data() {
    let engine = inference_engine();
    let id = engine.load(transpose_model()).expect("the Transpose model loads").id;
    let mut answers = Vec::new();
    for batching in [false, true] {
        let mut rt = Runtime::new(RuntimeConfig { workers: 1, inference_batching: batching, record: false, ..RuntimeConfig::development() }).unwrap();
        rt.set_inference_engine(engine.clone());
        rt.register_agent_model(&id).unwrap();
        let m = rt.load_module(asker()).unwrap();
        for _ in 0..2 {
            rt.spawn(m).unwrap();
        }
        rt.run(3).unwrap();
        let mut got: Vec<(u64, Vec<u8>)> = rt.drain_host_messages().into_iter().map(|m| (m.from, m.payload)).collect();
        got.sort();
        answers.push(got);
    }
    let floats = |p: &[u8]| p[4..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>();
    assert_eq!(answers[0].len(), 2, "{:?}", answers[0]);
    for (agent, payload) in &answers[0] {
        let mine = [*agent as f32, 100.0 * *agent as f32];
        assert_eq!(floats(payload), mine, "unbatched answer of agent {agent}");
    }
    assert_eq!(
        answers[1].iter().map(|(a, p)| (*a, floats(p))).collect::<Vec<_>>(),
        answers[0].iter().map(|(a, p)| (*a, floats(p))).collect::<Vec<_>>(),
        "batched answers differ from one call per request: an agent received another agent's data"
    );
}

/// Y = X - ReduceMean(X, axes=[0]): sample-major shapes ([N, 2] in, [N, 2] out), so it passes
/// every structural check, yet each row of a batched Y depends on every agent's input.
fn batch_mixing_model() -> Vec<u8> {
    let mut mean = Vec::new();
    pb_bytes(&mut mean, 1, b"X");
    pb_bytes(&mut mean, 2, b"M");
    pb_bytes(&mut mean, 4, b"ReduceMean");
    let mut axes = Vec::new();
    pb_bytes(&mut axes, 1, b"axes");
    pb_int(&mut axes, 8, 0); // ints: [0]
    pb_int(&mut axes, 20, 7); // type INTS
    pb_bytes(&mut mean, 5, &axes);
    let mut sub = Vec::new();
    pb_bytes(&mut sub, 1, b"X");
    pb_bytes(&mut sub, 1, b"M");
    pb_bytes(&mut sub, 2, b"Y");
    pb_bytes(&mut sub, 4, b"Sub");
    let mut graph = Vec::new();
    pb_bytes(&mut graph, 1, &mean);
    pb_bytes(&mut graph, 1, &sub);
    pb_bytes(&mut graph, 2, b"g");
    pb_bytes(&mut graph, 11, &pb_value_info("X", &[Err("N"), Ok(2)]));
    pb_bytes(&mut graph, 12, &pb_value_info("Y", &[Err("N"), Ok(2)]));
    let mut opset = Vec::new();
    pb_int(&mut opset, 2, 13);
    let mut model = Vec::new();
    pb_int(&mut model, 1, 7);
    pb_bytes(&mut model, 7, &graph);
    pb_bytes(&mut model, 8, &opset);
    model
}

#[test]
fn batched_inference_answers_do_not_depend_on_other_agents_requests() {
    let engine = inference_engine();
    let id = engine.load(batch_mixing_model()).expect("the model loads").id;
    let mut answers = Vec::new();
    for batching in [false, true] {
        let mut rt = Runtime::new(RuntimeConfig { workers: 1, inference_batching: batching, record: false, ..RuntimeConfig::development() }).unwrap();
        rt.set_inference_engine(engine.clone());
        rt.register_agent_model(&id).unwrap();
        let m = rt.load_module(asker()).unwrap();
        for _ in 0..2 {
            rt.spawn(m).unwrap();
        }
        rt.run(3).unwrap();
        let mut got: Vec<(u64, Vec<u8>)> = rt.drain_host_messages().into_iter().map(|m| (m.from, m.payload)).collect();
        got.sort();
        answers.push(got);
    }
    assert_eq!(answers[0].len(), 2);
    assert_eq!(answers[1], answers[0], "a batched answer depends on the other agents' requests");
}

/// A module whose manifest asks for less memory than its declared minimum, or grows past it.
fn manifest_agent(memory_bytes: u64, pages: u32, step: &str) -> Vec<u8> {
    let manifest = format!(r#"{{"name":"m","version":"1","abi":1,"resources":{{"memoryBytes":{memory_bytes}}}}}"#).replace('"', "\\\"");
    wat(&format!(
        r#"(module
            (@custom "lockstep.manifest" "{manifest}")
            (memory (export "memory") {pages})
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 0)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) {step} i32.const 0))"#
    ))
}

#[test]
fn the_manifest_memory_limit_holds_at_instantiation_and_growth_on_every_allocator() {
    for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
        let mut rt = runtime_on(allocator, 1);
        // Declared minimum (4 pages) above the manifest's 2 pages: never instantiated.
        let r = rt.spawn_bytes(manifest_agent(131_072, 4, ""));
        assert!(r.is_err(), "{allocator:?}: a 4-page memory was created under a 2-page limit");
        // Growing past the manifest's limit faults with MemoryLimit.
        let id = rt.spawn_bytes(manifest_agent(131_072, 2, "(drop (memory.grow (i32.const 1)))")).unwrap();
        rt.tick().unwrap();
        match rt.inspect(id).unwrap().state {
            AgentState::Faulted(f) => assert_eq!(f.kind, lockstep_core::FaultKind::MemoryLimit, "{allocator:?}: {f:?}"),
            other => panic!("{allocator:?}: grew past the manifest's limit: {other:?}"),
        }
        // A manifest asking for 0 bytes is refused cleanly (no memory fits it), never a panic.
        assert!(rt.spawn_bytes(manifest_agent(0, 2, "")).is_err());
    }
}

/// A shape whose element count overflows is refused by the length check (it wrapped to 0, so
/// empty data passed and reached ONNX Runtime).
#[test]
fn a_tensor_shape_whose_size_overflows_fails_the_length_check() {
    use lockstep_core::inference::{ElementType, TensorView};
    for shape in [[1i64 << 62, 4], [1 << 32, 1 << 32], [i64::MAX, 2]] {
        let t = TensorView { dtype: ElementType::F32, shape: &shape, data: &[] };
        assert!(t.check_length("x").is_err(), "shape {shape:?} with no data passed the length check");
    }
    let ok = TensorView { dtype: ElementType::F32, shape: &[1 << 40, 0], data: &[] };
    assert!(ok.check_length("x").is_ok(), "a zero dimension means no elements");
}

/// A replay takes its trust store, devMode, policy and limits (fuel, deadline, memory,
/// maxAgents) from the log itself: a log from elsewhere can admit unsigned modules with
/// every capability, turn fuel metering off and set a deadline of years (a replay that never
/// returns), or ask for maxAgents × 4 GiB of memory. `replay()` has no way for the caller to
/// say what it trusts.
#[test]
fn a_replay_log_cannot_grant_itself_trust() {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, record: true, ..RuntimeConfig::development() }).unwrap();
    rt.spawn_bytes(wat_agent(1, r#"(func (export "agent_step") (param i32) (result i32) i32.const 0)"#)).unwrap();
    rt.tick().unwrap();
    let log = rt.stop_recording().unwrap();
    // The caller of the replay never enabled devMode: the unsigned module must not run.
    let e = lockstep_core::replay_trusting(&log, 1, Some(&lockstep_core::ReplayTrust::default()), |_| {})
        .expect_err("an unsigned module was admitted on the log's own say-so");
    assert_eq!(e.code(), "E_REPLAY_UNTRUSTED", "{e}");
    // A key the caller trusts does not admit an unsigned module either; devMode does.
    let keys = lockstep_core::ReplayTrust { trusted_keys: vec![[7; 32]], dev_mode: false };
    assert!(lockstep_core::replay_trusting(&log, 1, Some(&keys), |_| {}).is_err());
    let dev = lockstep_core::ReplayTrust { trusted_keys: vec![], dev_mode: true };
    let r = lockstep_core::replay_trusting(&log, 1, Some(&dev), |_| {}).unwrap();
    assert!(r.divergence.is_none() && r.complete);
}

/// The deep hash covers exported globals; a v128 one was hashed as the constant "ref", so two
/// agents that differ only in it had the same deep hash (a checkpoint missed the divergence).
#[test]
fn the_deep_hash_covers_exported_v128_globals() {
    let deep = |value: u32| {
        let module = wat_agent(
            1,
            &format!(
                r#"(global $g (export "g") (mut v128) (v128.const i32x4 0 0 0 0))
                (func (export "agent_step") (param i32) (result i32) (global.set $g (v128.const i32x4 {value} 0 0 0)) i32.const 0)"#
            ),
        );
        let mut rt = runtime_on(MemoryAllocator::Slab, 1);
        rt.spawn_bytes(module).unwrap();
        rt.tick().unwrap();
        // The agent's own part (the whole also chains the tick hash, which covers the module).
        rt.deep_hash().agents[0].1
    };
    assert_ne!(deep(1), deep(2), "agents whose exported v128 global differs have the same deep hash");
}

/// Init sends 1 MiB (16 × 65,496 bytes) and faults: the agent never counts against maxAgents,
/// so a host that respawns it without ticking grew the queue of messages waiting for the next
/// tick by 1 MiB per spawn, past its 256 MiB limit (1,000 spawns: 1 GB).
#[test]
fn what_agent_init_sends_is_bounded_by_the_pending_queue() {
    let module = wat(r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 3)
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 131072)
            (func (export "agent_init") (result i32) (local $i i32)
                (block $done (loop $more
                    (br_if $done (i32.ge_u (local.get $i) (i32.const 16)))
                    (drop (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 65496)))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $more)))
                unreachable)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) i32.const 0))"#);
    let mut rt = runtime_on(MemoryAllocator::Slab, 1);
    let m = rt.load_module(module).unwrap();
    let per_spawn = 16 * 65_496;
    let bound = lockstep_core::limits::MAX_PENDING_BYTES / per_spawn + 1;
    let mut spawned = 0;
    let refused = loop {
        match rt.spawn(m) {
            Ok(_) => spawned += 1,
            Err(e) => break e,
        }
        if spawned > bound + 10 {
            panic!(
                "{spawned} spawns queued {} MiB of init messages for the next tick (limit {} MiB)",
                (spawned * per_spawn) >> 20,
                lockstep_core::limits::MAX_PENDING_BYTES >> 20
            );
        }
    };
    assert_eq!(refused.code(), "E_QUEUE_FULL", "{refused}");
    // A tick empties the queue; spawning works again.
    rt.tick().unwrap();
    rt.spawn(m).unwrap();
}

/// Replies wait in the outbound backlog (full: ~256 MiB) and in the host queue when the JS
/// side corrupts the ring: every one must come back through `drain_host_messages` ("a broken
/// ring loses none"). Pushed back through the host queue's limit, the backlog's share past
/// that limit was dropped.
#[test]
fn a_broken_outbound_ring_with_a_full_backlog_loses_no_host_message() {
    use lockstep_core::ring::{self, OwnedRegion};
    let cap = 1 << 20;
    let outbound = OwnedRegion::new(cap);
    ring::init(&outbound.memory(), cap).unwrap();
    let mut rt = Runtime::new(RuntimeConfig { workers: 2, max_agents: 512, record: false, ..RuntimeConfig::development() }).unwrap();
    let echo = rt.load_module(agent("echo")).unwrap();
    let ids: Vec<u64> = (0..300).map(|_| rt.spawn(echo).unwrap()).collect();
    rt.attach_outbound_ring(outbound.memory()).unwrap();
    for _round in 0..2 {
        for &id in &ids {
            for _ in 0..8 {
                rt.send(id, 1, 0, vec![9; abi::MAX_PAYLOAD_BYTES]).unwrap();
            }
        }
        rt.tick().unwrap();
    }
    let replies_sent: u64 = ids.iter().map(|&id| rt.inspect(id).unwrap().messages_sent).sum();
    let in_ring = cap / ring::record_bytes(abi::MAX_PAYLOAD_BYTES);
    assert!(rt.outbound_backlog() > 1_000, "the backlog holds replies");
    // JS scribbles an impossible tail: the next flush breaks the ring.
    // SAFETY: the region holds HEADER_BYTES + cap bytes and outlives `words`; this thread is
    // the only one, and the runtime does not touch the ring while `words` is in use (its last
    // use is before `flush_outbound`).
    let words = unsafe { std::slice::from_raw_parts_mut(outbound.memory_ptr(), ring::HEADER_BYTES + cap) };
    let head = u32::from_le_bytes(words[ring::OFFSET_HEAD..ring::OFFSET_HEAD + 4].try_into().unwrap());
    words[ring::OFFSET_TAIL..ring::OFFSET_TAIL + 4].copy_from_slice(&head.wrapping_add(4096).to_le_bytes());
    rt.flush_outbound();
    assert_eq!(rt.outbound_backlog(), 0, "the ring broke and the backlog was handed back");
    let back = rt.drain_host_messages().len();
    let (_, host_dropped, _) = rt.dropped_totals();
    assert_eq!(host_dropped, 0, "{host_dropped} host messages dropped when the ring broke");
    assert_eq!(back + in_ring, replies_sent as usize, "every reply is in the ring or back in the host queue");
}

/// Fuel and the deadline are per call, and an agent gets one call per message: by sending
/// itself 4,096 messages a tick, one agent gets 4,097 full budgets per tick (with the default
/// 10,000,000 fuel: ~41 G instructions, tens of seconds in which every other agent waits).
#[test]
fn one_agent_cannot_burn_thousands_of_call_budgets_in_one_tick() {
    let fuel_per_call = 200_000u64;
    let module = wat(&format!(
        r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (import "lockstep" "self_id" (func $self (result i64)))
            (memory (export "memory") 2)
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 65536)
            (func (export "agent_init") (result i32) i32.const 0)
            (func $burn (local $i i32)
                (block $done (loop $more
                    (br_if $done (i32.ge_u (local.get $i) (i32.const {iterations})))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $more))))
            (func (export "agent_receive") (param i32) (result i32) (call $burn) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) (local $i i32)
                (block $done (loop $more
                    (br_if $done (i32.ge_u (local.get $i) (i32.const 4096)))
                    (drop (call $send (call $self) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $more)))
                i32.const 0))"#,
        iterations = fuel_per_call / 10
    ));
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, fuel_per_call, record: false, ..RuntimeConfig::development() }).unwrap();
    rt.spawn_bytes(module).unwrap();
    rt.tick().unwrap();
    let fuel = rt.tick().unwrap().fuel;
    assert!(fuel <= 64 * fuel_per_call, "one agent burned {fuel} fuel in one tick ({}× its per-call budget)", fuel / fuel_per_call);
}

/// Priorities of agents that are all gone no longer hold a phase: they did forever, so churn
/// through 64 priorities made every new priority fail with E_PRIORITY_LIMIT, and every tick
/// walked every slot once per dead phase.
#[test]
fn a_priority_whose_agents_are_all_gone_frees_its_phase() {
    use lockstep_core::limits::MAX_PHASES;
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_agents: 8, record: false, ..RuntimeConfig::development() }).unwrap();
    let m = rt.load_module(agent("counter")).unwrap();
    for p in 0..MAX_PHASES as i32 {
        let id = rt.spawn_with_priority(m, p).unwrap();
        rt.kill(id).unwrap();
    }
    // Without a tick in between, and after one.
    let a = rt.spawn_with_priority(m, 1_000).expect("a new priority once the old ones' agents are gone");
    rt.tick().unwrap();
    rt.kill(a).unwrap();
    for p in 2_000..2_000 + MAX_PHASES as i32 {
        let id = rt.spawn_with_priority(m, p).unwrap();
        rt.tick().unwrap();
        rt.kill(id).unwrap();
    }
    rt.spawn_with_priority(m, -5).expect("a new priority after churn across ticks");
    // Live agents still hold their phases: 64 live priorities, then a 65th is refused.
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_agents: 100, record: false, ..RuntimeConfig::development() }).unwrap();
    let m = rt.load_module(agent("counter")).unwrap();
    for p in 0..MAX_PHASES as i32 {
        rt.spawn_with_priority(m, p).unwrap();
    }
    rt.tick().unwrap();
    assert_eq!(rt.spawn_with_priority(m, 99).unwrap_err().code(), "E_PRIORITY_LIMIT");
}

/// maxAgents counts live agents; counting them by walking every slot on every spawn made
/// spawning O(agents ever spawned) (200,000 spawn+kill took 100 s). The count is now kept as
/// agents come and go; this checks that it stays exact through every way an agent leaves (the
/// cost itself is a benchmark figure, not a wall-clock assertion here).
#[test]
fn the_live_agent_count_stays_exact_through_spawn_kill_shutdown_and_faults() {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_agents: 8, record: false, max_events: 16, ..RuntimeConfig::development() }).unwrap();
    let m = rt.load_module(agent("counter")).unwrap();
    let faulty = rt.load_module(agent("adv_panic_init")).unwrap();
    for i in 0..20_000u32 {
        let id = rt.spawn(m).unwrap();
        match i % 3 {
            0 => rt.kill(id).unwrap(),
            1 => rt.shutdown(id).unwrap(),
            _ => {
                rt.kill(id).unwrap();
                rt.spawn(faulty).unwrap(); // faults in init: never counts as live
            }
        }
        if i % 5_000 == 0 {
            rt.tick().unwrap();
        }
    }
    let live: Vec<u64> = (0..8).map(|_| rt.spawn(m).expect("all 8 places are free")).collect();
    assert_eq!(rt.spawn(m).unwrap_err().code(), "E_AGENT_LIMIT", "a ninth live agent is refused");
    rt.kill(live[0]).unwrap();
    rt.spawn(m).expect("one place again");
}
