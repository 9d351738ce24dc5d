//! Snapshots and restore (docs/SNAPSHOT.md): a 200-tick session with scripted inputs is
//! snapshotted at tick 100 and restored (with 1 and 4 workers, on both allocators, in this
//! process and in a new one); ticks 100-199 with the same inputs give the same tick hashes,
//! deep hash and undrained outputs as the uninterrupted run. Then: non-exported globals,
//! modules a snapshot refuses, hostile snapshots, trust, logs recorded from a snapshot, and
//! what 10,000 agents of one module cost.

mod common;

use common::snapshot_forge::forge;
use common::*;
use lockstep_core::snapshot::{self, ExpectedSession, RestoreOptions};
use lockstep_core::{replay, replay_from, Digest, LockstepError, MemoryAllocator, Runtime, RuntimeConfig};

/// Init greets the host and agent 1 with a random number; every step counts in non-exported
/// mutable globals of four types, mixes in a random number, and sends its state to the host
/// and to a random id in 1..=64 (some are no agent: dead letters); receive folds each
/// message's sequence number into a global; shutdown says goodbye. Its state lives in its
/// globals: what it sends is stored to memory just before.
const CHATTY: &str = r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (import "lockstep" "random_u64" (func $rand (result i64)))
  (memory (export "memory") 2)
  (global $count (mut i64) (i64.const 0))
  (global $acc (mut i64) (i64.const 7))
  (global $f (mut f64) (f64.const 0.5))
  (global $g (mut f32) (f32.const 1.5))
  (global $v (mut v128) (v128.const i64x2 1 2))
  (global $k i32 (i32.const 3))
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32)
    (i64.store (i32.const 100) (call $rand))
    (drop (call $send (i64.const 0) (i32.const 7) (i32.const 0) (i32.const 100) (i32.const 8)))
    (drop (call $send (i64.const 1) (i32.const 9) (i32.const 0) (i32.const 100) (i32.const 8)))
    i32.const 0)
  (func (export "agent_receive") (param $m i32) (result i32)
    (global.set $acc (i64.add (global.get $acc) (i64.load offset=16 (local.get $m))))
    i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (global.set $count (i64.add (global.get $count) (i64.const 1)))
    (global.set $acc (i64.xor (i64.mul (global.get $acc) (i64.const 31)) (call $rand)))
    (global.set $f (f64.add (global.get $f) (f64.const 0.25)))
    (global.set $g (f32.mul (global.get $g) (f32.const 1.01)))
    (global.set $v (i64x2.add (global.get $v) (i64x2.splat (global.get $count))))
    (i64.store (i32.const 200) (global.get $count))
    (i64.store (i32.const 208) (global.get $acc))
    (f64.store (i32.const 216) (global.get $f))
    (f32.store (i32.const 224) (global.get $g))
    (v128.store (i32.const 228) (global.get $v))
    (drop (call $send (i64.const 0) (i32.const 3) (i32.const 0) (i32.const 200) (i32.const 44)))
    (drop (call $send (i64.add (i64.const 1) (i64.rem_u (call $rand) (i64.const 64)))
      (i32.const 9) (global.get $k) (i32.const 200) (i32.const 44)))
    i32.const 0)
  (func (export "agent_shutdown") (result i32)
    (drop (call $send (i64.const 0) (i32.const 5) (i32.const 0) (i32.const 200) (i32.const 8)))
    i32.const 0))"#;

/// Traps in `agent_shutdown`.
const TRAPS_ON_SHUTDOWN: &str = r#"(module
  (memory (export "memory") 2)
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) unreachable))"#;

/// Grows its table in every step: state a snapshot cannot store.
const TABLE_GROWER: &str = r#"(module
  (memory (export "memory") 2)
  (table 1 funcref)
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) (drop (table.grow (ref.null func) (i32.const 1))) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0))"#;

const TICKS: u64 = 200;
const AT: u64 = 100;

fn config(workers: usize, allocator: MemoryAllocator) -> RuntimeConfig {
    RuntimeConfig {
        workers,
        allocator,
        seed: 11,
        max_agents: 256,
        fuel_per_call: 1_000_000,
        memory_limit_bytes: 8 << 20,
        checkpoint_interval_ticks: 25,
        ..RuntimeConfig::development()
    }
}

fn options(workers: usize, allocator: MemoryAllocator) -> RestoreOptions {
    RestoreOptions { workers, allocator, ..RestoreOptions::development() }
}

/// Agent ids of the setup (spawned at tick 0, in this order).
const GOSSIP: std::ops::RangeInclusive<u64> = 1..=24;
const COUNTER: u64 = 25;
const PING: u64 = 26;
const PONG: u64 = 27;
const ECHO: u64 = 28;
const TRAP_A: u64 = 29;
const TRAP_B: u64 = 30;
const CHATTY_IDS: [u64; 3] = [31, 32, 33];
const TRAPS_ON_SHUTDOWN_ID: u64 = 34;

/// The first half of tick `t`'s inputs (at tick 100 the snapshot is taken after it, so the
/// input queue and the input digest hold something then).
fn script_a(rt: &mut Runtime, t: u64) {
    if t == 0 {
        let gossip = rt.load_module(agent("gossip")).unwrap();
        for i in GOSSIP {
            rt.spawn_with_priority(gossip, (i % 3) as i32).unwrap();
        }
        let counter = rt.load_module(agent("counter")).unwrap();
        assert_eq!(rt.spawn_with_priority(counter, 5).unwrap(), COUNTER);
        let ping = rt.load_module(agent("ping_pong")).unwrap();
        assert_eq!(rt.spawn_with_priority(ping, -1).unwrap(), PING);
        assert_eq!(rt.spawn_with_priority(ping, -1).unwrap(), PONG);
        assert_eq!(rt.spawn_bytes(agent("echo")).unwrap(), ECHO);
        let trap = rt.load_module(agent("adv_trap")).unwrap();
        assert_eq!(rt.spawn(trap).unwrap(), TRAP_A);
        assert_eq!(rt.spawn(trap).unwrap(), TRAP_B);
        let chatty = rt.load_module(wat(CHATTY)).unwrap();
        for id in CHATTY_IDS {
            assert_eq!(rt.spawn_with_priority(chatty, 3).unwrap(), id);
        }
        assert_eq!(rt.spawn_bytes(wat(TRAPS_ON_SHUTDOWN)).unwrap(), TRAPS_ON_SHUTDOWN_ID);
    }
    if t.is_multiple_of(7) {
        rt.send(COUNTER, 1, (t % 3) as i32, t.to_le_bytes().to_vec()).unwrap();
    }
    if t.is_multiple_of(13) || t == AT {
        // A spawn whose init sends (to the host and to agent 1), queued for the next tick.
        let chatty = rt.load_module(wat(CHATTY)).unwrap();
        rt.spawn_with_priority(chatty, (t % 2) as i32 * 3).unwrap();
    }
    if t == 5 || t == 100 {
        let mut payload = PONG.to_le_bytes().to_vec();
        payload.extend_from_slice(&9u64.to_le_bytes());
        rt.send(PING, 0, 0, payload).unwrap();
    }
    if [30, 100, 150].contains(&t) {
        // A fault in agent_init: the agent exists, faulted.
        rt.spawn_bytes(agent("adv_panic_init")).unwrap();
    }
    if t == 50 || t == 100 {
        rt.kill(if t == 50 { 3 } else { 4 }).unwrap();
    }
}

/// The second half of tick `t`'s inputs.
fn script_b(rt: &mut Runtime, t: u64) {
    match t {
        // A panic in receive (then messages to it are dead letters); the gossip agents may
        // have made it panic already (they send to any id), so either way.
        40 => drop(rt.send(TRAP_A, 1, 0, vec![])),
        80 => drop(rt.send(TRAP_B, 6, 0, vec![])),
        60 => rt.shutdown(CHATTY_IDS[0]).unwrap(),
        160 => rt.shutdown(CHATTY_IDS[1]).unwrap(),
        // A fault in agent_shutdown.
        170 => rt.shutdown(TRAPS_ON_SHUTDOWN_ID).unwrap(),
        _ => {}
    }
    if t.is_multiple_of(11) {
        rt.send_request(ECHO, 4, 0, &t.to_le_bytes()).unwrap();
    }
    if t > 50 && t.is_multiple_of(9) {
        // To a killed agent, and to one that faulted: dead letters.
        rt.send(3, 1, 0, b"late".to_vec()).unwrap();
        rt.send(TRAP_A, 0, 0, b"too late".to_vec()).unwrap();
    }
    if t.is_multiple_of(17) {
        // Drained now and then: what is left at the snapshot must survive it.
        rt.drain_host_messages();
        rt.drain_dead_letters();
    }
}

/// What is left to drain, as text (compared between runs).
fn outputs(rt: &mut Runtime) -> String {
    let messages = rt.drain_host_messages();
    let dead = rt.drain_dead_letters();
    format!(
        "{} host messages {:?}; {} dead letters {:?}",
        messages.len(),
        messages.iter().map(|m| (m.from, m.seq, m.kind)).collect::<Vec<_>>(),
        dead.len(),
        dead
    )
}

/// Ticks `from..TICKS` (the first with only its second half of inputs when `half`).
fn run_from(rt: &mut Runtime, from: u64, half: bool) -> Vec<Digest> {
    let mut hashes = Vec::new();
    for t in from..TICKS {
        if !(half && t == from) {
            script_a(rt, t);
        }
        script_b(rt, t);
        hashes.push(rt.tick().unwrap().hash);
    }
    hashes
}

/// The uninterrupted run: every tick hash, the final deep hash and what is left to drain.
fn uninterrupted() -> (Vec<Digest>, Digest, String) {
    let mut rt = Runtime::new(config(1, MemoryAllocator::default())).unwrap();
    let hashes = run_from(&mut rt, 0, false);
    let deep = rt.deep_hash().hash;
    (hashes, deep, outputs(&mut rt))
}

/// Ticks 0-99 and the first half of tick 100's inputs; then the snapshot (and the deep hash
/// of that moment).
fn first_half(workers: usize, allocator: MemoryAllocator) -> (Runtime, Vec<Digest>, Vec<u8>) {
    let mut rt = Runtime::new(config(workers, allocator)).unwrap();
    let mut hashes = Vec::new();
    for t in 0..AT {
        script_a(&mut rt, t);
        script_b(&mut rt, t);
        hashes.push(rt.tick().unwrap().hash);
    }
    script_a(&mut rt, AT);
    let bytes = rt.snapshot().unwrap();
    (rt, hashes, bytes)
}

#[test]
fn a_restored_runtime_continues_exactly_with_any_workers_and_allocator() {
    let (expected, deep, left) = uninterrupted();
    let (mut original, before, bytes) = first_half(1, MemoryAllocator::default());
    assert_eq!(before[..], expected[..AT as usize]);
    let info = snapshot::info(&bytes).unwrap();
    assert_eq!((info.tick, info.state_hash, info.agents), (AT, expected[AT as usize - 1], original.agent_count()));
    assert!(info.live_agents > 20 && info.live_agents < info.agents, "the scenario killed, shut down and faulted some: {info:?}");
    // The same state gives the same bytes, whoever ran it.
    let (_, _, four) = first_half(4, MemoryAllocator::Pooling);
    assert!(four == bytes, "the snapshot of the same session with 4 workers on the pooling allocator differs");
    let allocators = if cfg!(target_os = "linux") { vec![MemoryAllocator::Slab, MemoryAllocator::Pooling] } else { vec![MemoryAllocator::Pooling] };
    for workers in [1, 4] {
        for &allocator in &allocators {
            let mut rt = Runtime::restore(&bytes, options(workers, allocator)).unwrap();
            assert_eq!((rt.current_tick(), rt.state_hash()), (AT, expected[AT as usize - 1]));
            assert_eq!(rt.deep_hash().hash, original.deep_hash().hash, "deep hash right after restore ({workers} workers, {allocator:?})");
            for id in rt.agent_ids() {
                let (a, b) = (rt.inspect(id).unwrap(), original.inspect(id).unwrap());
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "inspect({id})");
            }
            let hashes = run_from(&mut rt, AT, true);
            assert_eq!(hashes[..], expected[AT as usize..], "tick hashes 100-199 ({workers} workers, {allocator:?})");
            assert_eq!(rt.deep_hash().hash, deep, "final deep hash ({workers} workers, {allocator:?})");
            assert_eq!(outputs(&mut rt), left, "what is left to drain ({workers} workers, {allocator:?})");
        }
    }
    // And the runtime it was taken from is untouched by it.
    assert_eq!(run_from(&mut original, AT, true)[..], expected[AT as usize..]);
}

/// In the child process: restore the snapshot the parent wrote, run ticks 100-199, print.
#[test]
fn child_restores_and_prints_hashes() {
    let Ok(path) = std::env::var("LOCKSTEP_SNAPSHOT_CHILD") else { return };
    let bytes = std::fs::read(path).unwrap();
    let mut rt = Runtime::restore(&bytes, options(2, MemoryAllocator::default())).unwrap();
    for h in run_from(&mut rt, AT, true) {
        println!("HASH {h}");
    }
    println!("DEEP {}", rt.deep_hash().hash);
    println!("LEFT {}", outputs(&mut rt));
}

#[test]
fn a_snapshot_restored_in_a_new_process_continues_exactly() {
    let (expected, deep, left) = uninterrupted();
    let (_, _, bytes) = first_half(4, MemoryAllocator::default());
    let path = std::env::temp_dir().join(format!("lockstep-snapshot-{}.bin", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_restores_and_prints_hashes", "--nocapture", "--test-threads=1"])
        .env("LOCKSTEP_SNAPSHOT_CHILD", &path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let child: Vec<String> = text.lines().filter_map(|l| l.split("HASH ").nth(1).map(String::from)).collect();
    let ours: Vec<String> = expected[AT as usize..].iter().map(|h| h.to_hex()).collect();
    assert_eq!(child, ours);
    assert!(text.contains(&format!("DEEP {deep}")), "deep hash: {text}");
    assert!(text.contains(&format!("LEFT {left}")), "undrained outputs: {text}");
}

#[test]
fn a_log_recorded_after_a_restore_replays_from_its_snapshot() {
    let (expected, _, _) = uninterrupted();
    let (_, _, bytes) = first_half(1, MemoryAllocator::default());
    let mut rt = Runtime::restore(&bytes, RestoreOptions { record: true, ..options(2, MemoryAllocator::default()) }).unwrap();
    run_from(&mut rt, AT, true);
    rt.checkpoint();
    let log = rt.stop_recording().unwrap();
    for workers in [1, 3] {
        let report = replay_from(&bytes, &log, workers, None, |_| {}).unwrap();
        assert_eq!(report.divergence, None);
        assert!(report.complete, "the whole session from the snapshot on");
        assert_eq!(report.ticks_verified, TICKS - AT);
        assert_eq!(report.checkpoints_verified, 5, "ticks 125, 150, 175, 200 and the explicit one");
        assert_eq!(report.final_hash, *expected.last().unwrap());
    }
    // The log alone is not enough, another snapshot is not the one, and a log from tick 0
    // takes none.
    let e = replay(&log, 1, |_| {}).expect_err("refused");
    assert_eq!(e.code(), "E_REPLAY_NEEDS_SNAPSHOT", "{e}");
    let (_, _, other) = first_half(1, MemoryAllocator::default());
    assert_eq!(other, bytes);
    let mut other_rt = Runtime::restore(&bytes, options(1, MemoryAllocator::default())).unwrap();
    other_rt.tick().unwrap();
    let e = replay_from(&other_rt.snapshot().unwrap(), &log, 1, None, |_| {}).expect_err("refused");
    assert_eq!(e.code(), "E_SNAPSHOT_MISMATCH", "{e}");
    let mut fresh = Runtime::new(config(1, MemoryAllocator::default())).unwrap();
    fresh.tick().unwrap();
    let e = replay_from(&bytes, &fresh.stop_recording().unwrap(), 1, None, |_| {}).expect_err("refused");
    assert_eq!(e.code(), "E_INVALID_ARGUMENT", "{e}");
}

#[test]
fn non_exported_mutable_globals_round_trip() {
    let run = |restore_at: Option<u64>| {
        let mut rt = Runtime::new(config(1, MemoryAllocator::default())).unwrap();
        let m = rt.load_module(wat(CHATTY)).unwrap();
        rt.spawn(m).unwrap();
        let mut sent = Vec::new();
        for t in 0..20 {
            if Some(t) == restore_at {
                let bytes = rt.snapshot().unwrap();
                rt = Runtime::restore(&bytes, options(1, MemoryAllocator::default())).unwrap();
            }
            let r = rt.tick().unwrap();
            sent.push((r.hash, rt.drain_host_messages()));
        }
        sent
    };
    let straight = run(None);
    // The state the agent sends lives in its (unexported) globals: lost globals would
    // restart the count at 0 and change every message after the restore.
    let count = |msgs: &Vec<lockstep_core::Message>| msgs.iter().find(|m| m.kind == 3).map(|m| u64::from_le_bytes(m.payload[..8].try_into().unwrap()));
    assert_eq!(count(&straight[12].1), Some(13));
    assert_eq!(run(Some(12)), straight);
}

/// Sends the 3 bytes at 70,000 (a data segment, and what its start function wrote when
/// `start`) to the host, then clears them: after the first step that memory is zero again.
/// `keep`: it also writes a line of the same 4 KiB chunk, so the chunk is stored (as lines:
/// the cleared line must be cleared by the restore) rather than left out as zeros.
fn clears_its_data(start: bool, keep: bool) -> Vec<u8> {
    let start = if start { r#"(start $s) (func $s (i32.store (i32.const 70000) (i32.const 0x646464)))"# } else { "" };
    let keep = if keep { "(i32.store (i32.const 70200) (i32.const 7))" } else { "" };
    wat(&format!(
        r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 70000) "abc")
  {start}
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (drop (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 70000) (i32.const 3)))
    (i32.store (i32.const 70000) (i32.const 0))
    {keep}
    i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0))"#
    ))
}

#[test]
fn memory_the_agent_cleared_stays_clear_after_a_restore_whatever_its_module_wrote_at_start() {
    for (start, keep) in [(false, false), (true, false), (false, true), (true, true)] {
        for allocator in [MemoryAllocator::default(), MemoryAllocator::Pooling] {
            let mut rt = Runtime::new(config(1, allocator)).unwrap();
            rt.spawn_bytes(clears_its_data(start, keep)).unwrap();
            rt.tick().unwrap();
            let first = rt.drain_host_messages();
            assert_ne!(first[0].payload, [0, 0, 0], "it starts with its data");
            let mut restored = Runtime::restore(&rt.snapshot().unwrap(), options(1, allocator)).unwrap();
            assert_eq!(restored.deep_hash().hash, rt.deep_hash().hash);
            assert_eq!(restored.tick().unwrap().hash, rt.tick().unwrap().hash);
            assert_eq!(restored.drain_host_messages()[0].payload, [0, 0, 0], "start function: {start}, a line kept: {keep}, {allocator:?}");
        }
    }
}

/// An agent whose behaviour depends on what it writes into its table: every step it sets an
/// element to one of three functions, every third step grows the table by one element (a null
/// one every sixth), then sends the host the sum of calling every non-null element.
const TABLE_WRITER: &str = r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (type $t (func (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) $a)
  (elem declare func $b $c)
  (global $n (mut i32) (i32.const 0))
  (func $a (result i32) i32.const 10)
  (func $b (result i32) i32.const 200)
  (func $c (result i32) i32.const 3000)
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (local $i i32) (local $sum i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (if (i32.eqz (i32.rem_u (global.get $n) (i32.const 3)))
      (then (if (i32.eqz (i32.rem_u (global.get $n) (i32.const 6)))
        (then (drop (table.grow (ref.null func) (i32.const 1))))
        (else (drop (table.grow (ref.func $c) (i32.const 1)))))))
    (table.set (i32.rem_u (i32.mul (global.get $n) (i32.const 7)) (table.size))
      (if (result funcref) (i32.and (global.get $n) (i32.const 1)) (then (ref.func $b)) (else (ref.func $a))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (table.size)))
      (if (i32.eqz (ref.is_null (table.get (local.get $i))))
        (then (local.set $sum (i32.add (local.get $sum) (call_indirect (type $t) (local.get $i))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (i32.const 2000) (local.get $sum))
    (drop (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 2000) (i32.const 4)))
    i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0))"#;

#[test]
fn a_module_that_writes_into_its_table_restores_its_table_exactly() {
    for workers in [1, 4] {
        let mut rt = Runtime::new(config(workers, MemoryAllocator::default())).unwrap();
        rt.spawn_bytes(wat(CHATTY)).unwrap();
        let writer = rt.spawn_bytes(wat(TABLE_WRITER)).unwrap();
        rt.spawn_bytes(wat(TABLE_GROWER)).unwrap();
        rt.run(13).unwrap();
        rt.drain_host_messages();
        let bytes = rt.snapshot().expect("tables are stored");
        let mut restored = Runtime::restore(&bytes, options(workers, MemoryAllocator::default())).unwrap();
        assert_eq!(restored.deep_hash().hash, rt.deep_hash().hash);
        let sums = |rt: &mut Runtime| -> Vec<u32> {
            rt.drain_host_messages().iter().filter(|m| m.from == writer).map(|m| u32::from_le_bytes(m.payload[..4].try_into().unwrap())).collect()
        };
        for _ in 0..12 {
            assert_eq!(restored.tick().unwrap().hash, rt.tick().unwrap().hash);
        }
        let (a, b) = (sums(&mut rt), sums(&mut restored));
        assert_eq!(a, b, "the restored agent calls the same functions through its table");
        assert!(a.windows(2).any(|w| w[0] != w[1]), "the table changes what it computes: {a:?}");
        // A snapshot of the restored runtime is the same bytes (the same table, element by element).
        assert_eq!(restored.snapshot().unwrap(), rt.snapshot().unwrap());
    }
}

#[test]
fn an_externref_table_is_refused_at_load_so_no_snapshot_meets_one() {
    // (Were one loaded, `snapshot::wasm::prepare` would refuse its snapshots by name: unit test
    // `table_mutation_gets_table_and_function_exports_and_the_rest_is_named`.)
    let refs = r#"(module
  (memory (export "memory") 2)
  (table 1 externref)
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) (drop (table.grow (ref.null extern) (i32.const 1))) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0))"#;
    let mut rt = Runtime::new(config(1, MemoryAllocator::default())).unwrap();
    assert_eq!(rt.spawn_bytes(wat(refs)).unwrap_err().code(), "E_INVALID_MODULE");
}

/// A small snapshot: two CHATTY agents, a few ticks, a message waiting.
fn small() -> Vec<u8> {
    let mut rt = Runtime::new(config(1, MemoryAllocator::default())).unwrap();
    let m = rt.load_module(wat(CHATTY)).unwrap();
    rt.spawn(m).unwrap();
    rt.spawn(m).unwrap();
    rt.run(3).unwrap();
    rt.send(1, 2, 0, b"waiting".to_vec()).unwrap();
    rt.snapshot().unwrap()
}

fn is_typed_refusal(e: &LockstepError) -> bool {
    matches!(e.code(), "E_SNAPSHOT_CORRUPT" | "E_SNAPSHOT_VERSION")
}

#[test]
fn every_flipped_byte_and_every_truncation_is_a_typed_error() {
    let bytes = small();
    Runtime::restore(&bytes, options(1, MemoryAllocator::default())).unwrap();
    for i in 0..bytes.len() {
        for bit in [0x01, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            match Runtime::restore(&b, options(1, MemoryAllocator::default())) {
                Ok(_) => panic!("flipping bit {bit:#x} of byte {i} went unnoticed"),
                Err(e) => assert!(is_typed_refusal(&e), "byte {i}: {e}"),
            }
        }
    }
    for n in 0..bytes.len() {
        let e = Runtime::restore(&bytes[..n], options(1, MemoryAllocator::default())).err().expect("a truncated snapshot is refused");
        assert_eq!(e.code(), "E_SNAPSHOT_CORRUPT", "cut at {n}: {e}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Runtime::restore(&longer, options(1, MemoryAllocator::default())).err().unwrap().code(), "E_SNAPSHOT_CORRUPT");
}

#[test]
fn forged_fields_with_valid_checksums_are_refused_or_harmless_never_a_panic() {
    let bytes = small();
    // Every byte of each section's decoded body, changed, checksums redone: a typed error,
    // or a runtime that ticks (a counter or a message's contents may be anything).
    let mut restored = 0;
    for index in 0..5 {
        let len = {
            let mut n = 0;
            forge(&bytes, index, |b| n = b.len());
            n
        };
        // The module and page bytes are checked against their hashes: a sample of them does.
        let step = if index == 1 || index == 2 { 29 } else { 1 };
        for i in (0..len).step_by(step) {
            // Low bits make off-by-one counts and flags, high bits huge values.
            let v = if (i / step) % 2 == 0 { 0x01u8 } else { 0xF0 };
            let forged = forge(&bytes, index, |b| b[i] ^= v);
            match Runtime::restore(&forged, options(1, MemoryAllocator::default())) {
                Ok(mut rt) => {
                    restored += 1;
                    rt.run(2).unwrap();
                }
                Err(e) => assert!(e.code().starts_with("E_SNAPSHOT_"), "section {index}, byte {i}: {e}"),
            }
        }
    }
    assert!(restored > 0, "some forgeries are harmless values");
    // Named refusals: a page that is not what its address says (`info` checks every page; a
    // restore trusts the section checksum), a huge count.
    let e = snapshot::info(&forge(&bytes, 2, |b| *b.last_mut().unwrap() ^= 1)).expect_err("refused");
    assert!(e.code() == "E_SNAPSHOT_CORRUPT" && e.to_string().contains("page"), "{e}");
    let e = Runtime::restore(&forge(&bytes, 4, |b| b[..4].copy_from_slice(&u32::MAX.to_le_bytes())), options(1, MemoryAllocator::default()))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("agent count"), "{e}");
}

#[test]
fn a_snapshot_cannot_grant_itself_trust_and_says_what_differs() {
    let bytes = small();
    let e = Runtime::restore(&bytes, RestoreOptions { dev_mode: false, ..options(1, MemoryAllocator::default()) }).err().expect("refused");
    assert_eq!(e.code(), "E_SNAPSHOT_UNTRUSTED", "{e}");
    let expect = ExpectedSession { seed: Some(12), max_agents: Some(256), modules: Some(vec![Digest([1; 32])]), ..Default::default() };
    let e = Runtime::restore(&bytes, RestoreOptions { expect, ..options(1, MemoryAllocator::default()) }).err().expect("refused");
    assert_eq!(e.code(), "E_SNAPSHOT_MISMATCH");
    let text = e.to_string();
    assert!(text.contains("seed: the snapshot has 11, expected 12") && text.contains("modules") && !text.contains("maxAgents"), "{text}");
    let e = Runtime::restore(b"LOCKSTEP and then some", options(1, MemoryAllocator::default())).err().expect("refused");
    assert!(e.to_string().contains("replay log"), "{e}");
}

#[test]
fn ten_thousand_agents_of_one_module_store_their_pages_once() {
    let n = 10_000;
    let mut rt = Runtime::new(RuntimeConfig { workers: 2, max_agents: n + 1, record: false, ..config(2, MemoryAllocator::default()) }).unwrap();
    let m = rt.load_module(agent("counter")).unwrap();
    for _ in 0..n {
        rt.spawn(m).unwrap();
    }
    rt.run(3).unwrap();
    let bytes = rt.snapshot().unwrap();
    let info = snapshot::info(&bytes).unwrap();
    let raw = info.memory_pages * 65_536;
    println!("10,000 agents: {} touched pages ({raw} bytes), {} unique, snapshot {} bytes", info.memory_pages, info.unique_pages, info.bytes);
    assert!(info.bytes as u64 * 5 <= raw, "stored {} bytes vs {raw} bytes of touched pages", info.bytes);
    assert!(info.unique_pages < info.memory_pages as usize, "identical pages are stored once");
    let mut restored = Runtime::restore(&bytes, RestoreOptions { workers: 2, record: false, ..RestoreOptions::development() }).unwrap();
    assert_eq!(restored.deep_hash().hash, rt.deep_hash().hash);
    assert_eq!(restored.tick().unwrap().hash, rt.tick().unwrap().hash);
}

/// The Pages section's entries: (offset of the codec byte, codec, data range), in order.
fn page_entries(body: &[u8]) -> Vec<(usize, u8, std::ops::Range<usize>)> {
    let n = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
    let mut at = 4;
    let mut out = Vec::new();
    for _ in 0..n {
        let codec_at = at + 32 + 2;
        let len = u32::from_le_bytes(body[codec_at + 1..codec_at + 5].try_into().unwrap()) as usize;
        out.push((codec_at, body[codec_at], codec_at + 5..codec_at + 5 + len));
        at = codec_at + 5 + len;
    }
    out
}

/// `bytes` with every page stored as lz4-compressed lines (codec 3) rewritten as plain lines
/// (codec 2): the same snapshot, so tests can forge the lines themselves.
fn plain_lines(bytes: &[u8]) -> Vec<u8> {
    forge(bytes, 2, |b| {
        let entries = page_entries(b);
        let mut out = b[..4].to_vec();
        let mut at = 4;
        for (codec_at, codec, data) in entries {
            out.extend_from_slice(&b[at..codec_at]);
            if codec == 3 {
                let lines = lz4_flex::block::decompress_size_prepended(&b[data.clone()]).unwrap();
                out.push(2);
                out.extend_from_slice(&(lines.len() as u32).to_le_bytes());
                out.extend_from_slice(&lines);
            } else {
                out.extend_from_slice(&b[codec_at..data.end]);
            }
            at = data.end;
        }
        out.extend_from_slice(&b[at..]);
        *b = out;
    })
}

#[test]
fn a_lines_page_that_does_not_hold_its_chunks_is_refused_never_a_panic() {
    let bytes = plain_lines(&small());
    Runtime::restore(&bytes, options(1, MemoryAllocator::default())).expect("codec 2 restores as codec 3 does");
    let mut body = Vec::new();
    forge(&bytes, 2, |b| body = b.clone());
    let entries = page_entries(&body);
    let (_, _, data) = entries.iter().find(|e| e.1 == 2).cloned().expect("a sparse page is stored as lines (codec 2)");
    let mask = u64::from_le_bytes(body[data.start..data.start + 8].try_into().unwrap());
    let restore = |forged: &[u8]| Runtime::restore(forged, options(1, MemoryAllocator::default()));
    // A line more than it holds, a line less, a line mask cut short: each names the page.
    let more = mask | (1 << (!mask).trailing_zeros());
    let less = mask & (mask - 1);
    for (what, forged) in [
        ("a line more", forge(&bytes, 2, |b| b[data.start..data.start + 8].copy_from_slice(&more.to_le_bytes()))),
        ("a line less", forge(&bytes, 2, |b| b[data.start..data.start + 8].copy_from_slice(&less.to_le_bytes()))),
    ] {
        let e = restore(&forged).err().unwrap_or_else(|| panic!("{what}: restored"));
        assert!(e.code() == "E_SNAPSHOT_CORRUPT" && e.to_string().contains("does not decode"), "{what}: {e}");
    }
    // Every other value of its line mask: refused or (a different line of the same count)
    // restored into a runtime that ticks; `info` checks the page against its address.
    for bit in 0..64 {
        let forged = forge(&bytes, 2, |b| b[data.start..data.start + 8].copy_from_slice(&(mask ^ (1 << bit)).to_le_bytes()));
        if let Ok(mut rt) = restore(&forged) {
            rt.run(2).unwrap();
        }
        assert_eq!(snapshot::info(&forged).err().map(|e| e.code()), Some("E_SNAPSHOT_CORRUPT"), "bit {bit}");
    }
}

#[test]
fn a_snapshot_older_than_the_lines_codec_cannot_use_it() {
    // Version 1 (the fixture) knows codecs 0 and 1 only: a 2 there is a forgery.
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot_v1.lssnap");
    let bytes = std::fs::read(path).unwrap();
    let mut body = Vec::new();
    forge(&bytes, 2, |b| body = b.clone());
    let (codec_at, codec, _) = page_entries(&body)[0].clone();
    assert!(codec <= 1);
    let e = Runtime::restore(&forge(&bytes, 2, |b| b[codec_at] = 2), options(2, MemoryAllocator::default())).err().expect("refused");
    assert!(e.code() == "E_SNAPSHOT_CORRUPT" && e.to_string().contains("page codec 2 is none of format version 1's"), "{e}");
}

#[test]
fn every_lines_page_is_checked_before_anything_is_built_even_one_no_agent_holds() {
    let bytes = plain_lines(&small());
    let restore = |forged: &[u8]| Runtime::restore(forged, options(1, MemoryAllocator::default()));
    // One more page, which no agent holds, of one chunk whose line mask names a line it does
    // not hold: a restore never decodes it, so only the decoder's check can refuse it.
    let unheld = forge(&bytes, 2, |b| {
        let n = u32::from_le_bytes(b[..4].try_into().unwrap());
        b[..4].copy_from_slice(&(n + 1).to_le_bytes());
        b.extend_from_slice(&[7; 32]);
        b.extend_from_slice(&1u16.to_le_bytes());
        b.push(2);
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
    });
    let e = restore(&unheld).err().expect("a page no agent holds that does not decode is refused");
    assert!(e.code() == "E_SNAPSHOT_CORRUPT" && e.to_string().contains("does not decode"), "{e}");
    // A chunk of a lines page with no line at all: the page's chunk mask says it is not zero
    // (as a page with no chunk, a chunk with no line is never written).
    let mut body = Vec::new();
    forge(&bytes, 2, |b| body = b.clone());
    let (codec_at, _, data) = page_entries(&body).into_iter().find(|e| e.1 == 2).expect("a page stored as lines");
    let first = u64::from_le_bytes(body[data.start..data.start + 8].try_into().unwrap());
    let held = first.count_ones() as usize * 64;
    let empty = forge(&bytes, 2, |b| {
        b[data.start..data.start + 8].copy_from_slice(&0u64.to_le_bytes());
        b.drain(data.start + 8..data.start + 8 + held);
        b[codec_at + 1..codec_at + 5].copy_from_slice(&((data.len() - held) as u32).to_le_bytes());
    });
    let e = restore(&empty).err().expect("a chunk with no line is refused");
    assert!(e.code() == "E_SNAPSHOT_CORRUPT" && e.to_string().contains("does not decode"), "{e}");
    assert_eq!(snapshot::info(&empty).err().map(|e| e.code()), Some("E_SNAPSHOT_CORRUPT"));
}

#[test]
fn lz4_compressed_lines_that_lie_are_refused_never_a_panic() {
    let bytes = small();
    let mut body = Vec::new();
    forge(&bytes, 2, |b| body = b.clone());
    let (codec_at, _, data) = page_entries(&body).into_iter().find(|e| e.1 == 3).expect("sparse pages are stored as lz4-compressed lines (codec 3)");
    let restore = |forged: &[u8]| Runtime::restore(forged, options(1, MemoryAllocator::default()));
    let lines = lz4_flex::block::decompress_size_prepended(&body[data.clone()]).unwrap();
    // Replaces the page's stored bytes (and their length) with `stored`.
    let with = |stored: Vec<u8>| {
        forge(&bytes, 2, |b| {
            let mut out = b[..codec_at + 1].to_vec();
            out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
            out.extend_from_slice(&stored);
            out.extend_from_slice(&b[data.end..]);
            *b = out;
        })
    };
    let mut huge = body[data.clone()].to_vec();
    huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut cut = body[data.clone()].to_vec();
    cut.truncate(cut.len() - 3);
    let mut lying = lines.clone();
    lying[0] ^= 0x80; // a line more (or less) than the page holds
    for (what, forged) in [
        ("announces 4 GiB", with(huge)),
        ("a cut lz4 block", with(cut)),
        ("lines that do not hold their chunks", with(lz4_flex::block::compress_prepend_size(&lying))),
        ("no bytes at all", with(Vec::new())),
    ] {
        let e = restore(&forged).err().unwrap_or_else(|| panic!("{what}: restored"));
        assert!(e.code() == "E_SNAPSHOT_CORRUPT" && e.to_string().contains("does not decode"), "{what}: {e}");
        assert_eq!(snapshot::info(&forged).err().map(|e| e.code()), Some("E_SNAPSHOT_CORRUPT"), "{what}");
    }
    // The same lines, stored plainly (codec 2): the same state.
    let mut a = Runtime::restore(&bytes, options(1, MemoryAllocator::default())).unwrap();
    let mut b = Runtime::restore(&plain_lines(&bytes), options(1, MemoryAllocator::default())).unwrap();
    assert_eq!(a.deep_hash().hash, b.deep_hash().hash);
}
