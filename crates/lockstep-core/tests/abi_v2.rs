//! ABI version 2 (docs/ABI.md): batched receive (`agent_receive_batch`: 0, 1 and many
//! messages per call, messages as large as the io buffer, a fault in the middle of a batch
//! dead-letters exactly the rest, a lying progress word is clamped), batched send
//! (`send_batch`), version 1 and 2 agents side by side giving the results an all-v1 run gives,
//! and the version checks at load.

mod common;
use common::*;

use lockstep_core::{DeadLetterReason, Message, Runtime, RuntimeConfig};

const IO: u32 = 4096;

/// A v2 agent: for each message of a batch it sends the host [count of this call u32, index
/// u32, kind u32], then marks it done; a message of kind 99 traps before it is marked; kind 98
/// first writes 1,000 into the progress word (a lie), then traps.
fn batch_agent() -> Vec<u8> {
    wat(&format!(
        r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 3)
  (func (export "lockstep_abi_version") (result i32) i32.const 2)
  (func (export "lockstep_io_buffer") (result i32) i32.const {IO})
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_receive_batch") (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $at i32) (local $kind i32)
    (local.set $at (local.get $p))
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $kind (i32.load offset=24 (local.get $at)))
      (if (i32.eq (local.get $kind) (i32.const 98)) (then (i32.store (i32.const {done}) (i32.const 1000)) unreachable))
      (if (i32.eq (local.get $kind) (i32.const 99)) (then unreachable))
      (i32.store (i32.const 100) (local.get $n))
      (i32.store (i32.const 104) (local.get $i))
      (i32.store (i32.const 108) (local.get $kind))
      (drop (call $send (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 12)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (i32.store (i32.const {done}) (local.get $i))
      ;; next record: header 40 + payload length, rounded up to 8
      (local.set $at (i32.add (local.get $at)
        (i32.and (i32.add (i32.add (i32.const 40) (i32.load offset=32 (local.get $at))) (i32.const 7)) (i32.const -8))))
      (br $next)))
    i32.const 0))"#,
        done = IO + 65_536
    ))
}

fn runtime(workers: usize) -> Runtime {
    Runtime::new(RuntimeConfig { workers, max_agents: 64, fuel_per_call: 10_000_000, ..RuntimeConfig::development() }).unwrap()
}

/// (count of the call, index in it, kind) of every message the agent reported.
fn reported(rt: &mut Runtime) -> Vec<(u32, u32, u32)> {
    rt.drain_host_messages()
        .iter()
        .map(|m| {
            let w = |i: usize| u32::from_le_bytes(m.payload[i..i + 4].try_into().unwrap());
            (w(0), w(4), w(8))
        })
        .collect()
}

#[test]
fn a_batch_holds_every_message_that_fits_and_large_ones_split_across_calls() {
    let mut rt = runtime(1);
    let a = rt.spawn_bytes(batch_agent()).unwrap();
    // No message: no receive call.
    rt.tick().unwrap();
    assert!(reported(&mut rt).is_empty());
    // One message: one call of one.
    rt.send(a, 7, 0, vec![1; 10]).unwrap();
    rt.tick().unwrap();
    assert_eq!(reported(&mut rt), vec![(1, 0, 7)]);
    // Many small ones: all in one call, in delivery order.
    // (Kinds from 1,000: 98 and 99 make this agent trap.)
    for k in 0..300 {
        rt.send(a, 1_000 + k, 0, vec![0; 17]).unwrap();
    }
    let r = rt.tick().unwrap();
    let got = reported(&mut rt);
    assert_eq!(got, (0..300).map(|k| (300, k, 1_000 + k)).collect::<Vec<_>>());
    assert_eq!(r.messages_delivered, 300);
    // 20,000-byte payloads: records of 20,040 bytes, three fit the 65,536-byte buffer.
    for k in 0..8 {
        rt.send(a, k, 0, vec![0; 20_000]).unwrap();
    }
    rt.tick().unwrap();
    let counts: Vec<u32> = reported(&mut rt).iter().map(|r| r.0).collect();
    assert_eq!(counts, [3, 3, 3, 3, 3, 3, 2, 2]);
    // The largest payload there is fills the buffer alone: one call each.
    for k in 0..2 {
        rt.send(a, k, 0, vec![0; lockstep_core::abi::MAX_PAYLOAD_BYTES]).unwrap();
    }
    rt.tick().unwrap();
    assert_eq!(reported(&mut rt), vec![(1, 0, 0), (1, 0, 1)]);
    assert!(rt.inspect(a).unwrap().state.is_running());
}

#[test]
fn a_fault_in_the_middle_of_a_batch_dead_letters_exactly_the_rest() {
    for trap_kind in [99u32, 98] {
        let mut rt = runtime(1);
        let a = rt.spawn_bytes(batch_agent()).unwrap();
        let kinds = [1, 2, 3, trap_kind, 5, 6];
        for &k in &kinds {
            rt.send(a, k, 0, k.to_le_bytes().to_vec()).unwrap();
        }
        let r = rt.tick().unwrap();
        assert_eq!(r.faults, 1);
        let dead = rt.drain_dead_letters();
        let seen = reported(&mut rt);
        if trap_kind == 99 {
            // It handled 3, then trapped on the 4th: the 4th (the fatal one) and the rest are
            // dead letters, nothing lost.
            assert_eq!(seen.iter().map(|s| s.2).collect::<Vec<_>>(), [1, 2, 3]);
            let kinds_dead: Vec<u32> = dead.iter().map(|d| d.message.kind).collect();
            assert_eq!(kinds_dead, [trap_kind, 5, 6]);
        } else {
            // It claimed 1,000 handled (of a batch of 6) before trapping on the 4th: clamped to
            // the batch, all 6 count as delivered. Its lie costs only itself (the messages it
            // never handled are not redelivered); nothing is read out of range.
            assert!(dead.is_empty(), "{dead:?}");
            assert_eq!(r.messages_delivered, 6);
        }
        assert!(dead.iter().all(|d| d.reason == DeadLetterReason::RecipientFaultedDuringDelivery));
        assert_eq!(r.messages_delivered as usize + dead.len(), kinds.len(), "every message is delivered or a dead letter");
    }
}

/// A v1 echo and a v2 echo with the same logic: every message goes back to its sender, kind
/// +1; and each sends agent (id + 1) a message every step.
fn echo(version: u32) -> Vec<u8> {
    let body = r#"
      (i32.store (i32.const 200) (i32.load offset=24 (local.get $at)))
      (drop (call $send (i64.load (local.get $at)) (i32.add (i32.load offset=24 (local.get $at)) (i32.const 1)) (i32.const 0)
        (i32.add (local.get $at) (i32.const 40)) (i32.load offset=32 (local.get $at))))"#;
    let receive = if version == 1 {
        format!(r#"(func (export "agent_receive") (param $at i32) (result i32) {body} i32.const 0)"#)
    } else {
        format!(
            r#"(func (export "agent_receive_batch") (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $at i32)
    (local.set $at (local.get $p))
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
      {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (i32.store (i32.const {done}) (local.get $i))
      (local.set $at (i32.add (local.get $at)
        (i32.and (i32.add (i32.add (i32.const 40) (i32.load offset=32 (local.get $at))) (i32.const 7)) (i32.const -8))))
      (br $next)))
    i32.const 0)"#,
            done = IO + 65_536
        )
    };
    wat(&format!(
        r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (import "lockstep" "self_id" (func $self (result i64)))
  (memory (export "memory") 3)
  (func (export "lockstep_abi_version") (result i32) i32.const {version})
  (func (export "lockstep_io_buffer") (result i32) i32.const {IO})
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (i64.store (i32.const 300) (call $self))
    (drop (call $send (i64.add (i64.rem_u (call $self) (i64.const 6)) (i64.const 1)) (i32.const 1) (i32.const 0) (i32.const 300) (i32.const 8)))
    i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  {receive})"#
    ))
}

/// Host messages and per-tick agent digests of six echo agents with the given versions.
/// Per tick, (agent id, short digest) of every agent that ran.
type Digests = Vec<Vec<(u64, [u8; 8])>>;

fn echo_run(versions: [u32; 6], workers: usize) -> (Vec<Message>, Digests) {
    let mut rt = runtime(workers);
    for v in versions {
        rt.spawn_bytes(echo(v)).unwrap();
    }
    let mut digests = Vec::new();
    let mut host = Vec::new();
    for t in 0..20u64 {
        for to in 1..=6 {
            if (t + to) % 3 == 0 {
                rt.send(to, 10, (to % 2) as i32, format!("{t}:{to}").into_bytes()).unwrap();
            }
        }
        digests.push(rt.tick().unwrap().agent_digests);
        host.extend(rt.drain_host_messages());
    }
    (host, digests)
}

#[test]
fn version_1_and_2_agents_side_by_side_give_what_an_all_version_1_run_gives() {
    let reference = echo_run([1; 6], 1);
    assert!(!reference.0.is_empty());
    for versions in [[2; 6], [1, 2, 1, 2, 2, 1]] {
        for workers in [1, 4] {
            let got = echo_run(versions, workers);
            assert_eq!(got.0, reference.0, "{versions:?}, {workers} workers: messages to the host");
            assert_eq!(got.1, reference.1, "{versions:?}, {workers} workers: per-agent digests");
        }
    }
}

/// A v2 agent that sends with `send_batch` from its step: three records (the second with a
/// 9-byte payload, so the third starts padded to 8), or, with `mode`, broken batches.
fn batch_sender(mode: &str) -> Vec<u8> {
    let call = match mode {
        "ok" => "(drop (call $batch (i32.const 1024) (i32.const 3)))",
        "negative" => "(drop (call $batch (i32.const 1024) (i32.const -1)))",
        "past-memory" => "(drop (call $batch (i32.const 196600) (i32.const 1)))",
        _ => "(drop (call $batch (i32.const 1024) (i32.const 4)))", // a 4th record of 2^31 bytes
    };
    wat(&format!(
        r#"(module
  (import "lockstep" "send_batch" (func $batch (param i32 i32) (result i32)))
  (memory (export "memory") 3)
  ;; record 1 @1024: to 0, kind 1, len 3 "abc"; record 2 @1056: to 0, kind 2, len 9;
  ;; record 3 @1096: to 0, kind 3, len 0; record 4 @1120: len 2^31
  (data (i32.const 1024) "\00\00\00\00\00\00\00\00\01\00\00\00\00\00\00\00\03\00\00\00\00\00\00\00abc")
  (data (i32.const 1056) "\00\00\00\00\00\00\00\00\02\00\00\00\00\00\00\00\09\00\00\00\00\00\00\00123456789")
  (data (i32.const 1096) "\00\00\00\00\00\00\00\00\03\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (data (i32.const 1120) "\00\00\00\00\00\00\00\00\04\00\00\00\00\00\00\00\00\00\00\80\00\00\00\00")
  (func (export "lockstep_abi_version") (result i32) i32.const 2)
  (func (export "lockstep_io_buffer") (result i32) i32.const {IO})
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) {call} i32.const 0)
  (func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0))"#
    ))
}

#[test]
fn send_batch_queues_records_in_order_and_a_broken_batch_faults_the_agent() {
    let mut rt = runtime(1);
    rt.spawn_bytes(batch_sender("ok")).unwrap();
    rt.tick().unwrap();
    let got: Vec<(u32, Vec<u8>, u64)> = rt.drain_host_messages().into_iter().map(|m| (m.kind, m.payload, m.seq)).collect();
    assert_eq!(got, vec![(1, b"abc".to_vec(), 0), (2, b"123456789".to_vec(), 1), (3, vec![], 2)]);
    for mode in ["negative", "past-memory", "huge"] {
        let mut rt = runtime(1);
        let a = rt.spawn_bytes(batch_sender(mode)).unwrap();
        let r = rt.tick().unwrap();
        assert_eq!(r.faults, 1, "{mode}");
        let lockstep_core::AgentState::Faulted(fault) = rt.inspect(a).unwrap().state else { panic!("{mode}: not faulted") };
        assert_eq!(fault.kind, lockstep_core::FaultKind::HostCallViolation, "{mode}: {fault:?}");
        assert!(fault.detail.contains("send_batch"), "{mode}: {}", fault.detail);
    }
}

#[test]
fn the_version_decides_which_receive_export_is_required() {
    let mut rt = runtime(1);
    // v2 without agent_receive_batch, v1 without agent_receive, an unknown version.
    let no_batch = wat(&format!(
        r#"(module (memory (export "memory") 3)
  (func (export "lockstep_abi_version") (result i32) i32.const 2)
  (func (export "lockstep_io_buffer") (result i32) i32.const {IO})
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0))"#
    ));
    let e = rt.load_module(no_batch).unwrap_err();
    assert_eq!(e.code(), "E_MISSING_EXPORT", "{e}");
    assert!(e.to_string().contains("agent_receive_batch"), "{e}");
    let v3 = wat(&format!(
        r#"(module (memory (export "memory") 3)
  (func (export "lockstep_abi_version") (result i32) i32.const 3)
  (func (export "lockstep_io_buffer") (result i32) i32.const {IO})
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) i32.const 0)
  (func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0))"#
    ));
    assert_eq!(rt.load_module(v3).unwrap_err().code(), "E_ABI_MISMATCH");
    // ABI 2's io region is 8 bytes longer: a buffer flush with the end of memory is refused.
    let tight = wat(r#"(module (memory (export "memory") 1)
  (func (export "lockstep_abi_version") (result i32) i32.const 2)
  (func (export "lockstep_io_buffer") (result i32) i32.const 0)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) i32.const 0)
  (func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0))"#);
    let e = rt.load_module(tight).unwrap_err();
    assert_eq!(e.code(), "E_INVALID_MODULE", "{e}");
    assert!(e.to_string().contains("65544"), "{e}");
}
