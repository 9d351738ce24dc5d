//! Shared helpers for the integration tests: the example agents built from guest/.
#![allow(dead_code)]

use lockstep_core::{Runtime, RuntimeConfig};

pub mod snapshot_forge;

/// Bytes of an example agent. `npm test` (scripts/build.mjs) builds them first; running
/// `cargo test` alone needs `cargo build --release` in guest/ before.
pub fn agent(name: &str) -> Vec<u8> {
    let path = format!("{}/../../guest/target/wasm32-unknown-unknown/release/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("example agent {path} is missing ({e}). Build the agents first: `npm run build` (or `cd guest && cargo build --release`)"))
}

pub fn runtime(workers: usize) -> Runtime {
    Runtime::new(RuntimeConfig { workers, max_agents: 1_024, fuel_per_call: 1_000_000, ..RuntimeConfig::development() }).expect("runtime")
}

pub fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("valid wat")
}

/// A minimal hand-written agent with every ABI export; `body` is spliced into the module.
pub fn wat_agent(version: u32, body: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (memory (export "memory") 2)
            (func (export "lockstep_abi_version") (result i32) i32.const {version})
            (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            {body})"#
    ))
}

/// A version-1 agent with `imports` (WAT import fields), 2 pages of memory, no io buffer, and
/// `step` as the body of its `agent_step` (the other entry points do nothing).
pub fn importing_agent(imports: &str, step: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            {imports}
            (memory (export "memory") 2)
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 0)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) {step}))"#
    ))
}

/// A hand-written agent that may send: the `send` import, 2 pages of memory, the io buffer at
/// 1,024, `agent_init` and `agent_shutdown` that do nothing; `body` holds its `agent_step`, its
/// receive export(s) for `version`, and whatever else it needs.
pub fn sender_agent(version: u32, body: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "lockstep_abi_version") (result i32) i32.const {version})
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  {body})"#
    ))
}

/// A version-2 agent whose every step sends `per_step` 12-byte messages (its id and the
/// message's index) to `(id * 7 + i) % modulo + 1`, except: the first `to_agent_1` go to agent
/// 1, every `to_self_every`-th (0: none) to itself, every 97th to the host, every 101st to an id
/// that never existed; priorities 0..2 by index. Enough of them make a phase route in parallel.
pub fn spraying_agent(per_step: u32, modulo: u64, to_agent_1: u32, to_self_every: u32) -> Vec<u8> {
    let to_self = if to_self_every > 0 {
        format!("(if (i32.eqz (i32.rem_u (local.get $i) (i32.const {to_self_every}))) (then (local.set $to (local.get $id))))")
    } else {
        String::new()
    };
    sender_agent(
        2,
        &format!(
            r#"(func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (local $i i32) (local $to i64) (local $id i64)
    (local.set $id (i64.load offset=16 (local.get $ctx)))
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (i32.const {per_step})))
      (local.set $to (i64.add (i64.rem_u (i64.add (i64.mul (local.get $id) (i64.const 7)) (i64.extend_i32_u (local.get $i))) (i64.const {modulo})) (i64.const 1)))
      (if (i32.lt_u (local.get $i) (i32.const {to_agent_1})) (then (local.set $to (i64.const 1))))
      {to_self}
      (if (i32.eqz (i32.rem_u (local.get $i) (i32.const 97))) (then (local.set $to (i64.const 0))))
      (if (i32.eqz (i32.rem_u (local.get $i) (i32.const 101))) (then (local.set $to (i64.const 999999))))
      (i64.store (i32.const 0) (local.get $id))
      (i32.store (i32.const 8) (local.get $i))
      (drop (call $send (local.get $to) (i32.const 1) (i32.rem_u (local.get $i) (i32.const 3)) (i32.const 0) (i32.const 12)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    i32.const 0)"#
        ),
    )
}

/// Unsigned LEB128 (wasm's section sizes; also protobuf's varint), for hand-built bytes.
pub fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A JS-side inbound ring of `capacity` bytes attached to `rt`: the region (keep it while the
/// ring is used) and its producer.
pub fn attach_inbound_ring(rt: &mut Runtime, capacity: usize) -> (lockstep_core::ring::OwnedRegion, lockstep_core::ring::Producer) {
    let region = lockstep_core::ring::OwnedRegion::new(capacity);
    lockstep_core::ring::init(&region.memory(), capacity).expect("ring");
    rt.attach_inbound_ring(region.memory()).expect("attach");
    let producer = lockstep_core::ring::Producer::new(region.memory()).expect("producer");
    (region, producer)
}

/// The providers the inference tests ask for: `LOCKSTEP_TEST_PROVIDERS` (e.g. `cuda,cpu`, to
/// run them on a GPU machine with `LOCKSTEP_ORT_LIBRARY` pointing at a CUDA build of ONNX
/// Runtime), else CPU alone — CI has no GPU.
pub fn test_providers() -> Vec<lockstep_core::inference::Provider> {
    match std::env::var("LOCKSTEP_TEST_PROVIDERS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|p| lockstep_core::inference::Provider::parse(p.trim()).unwrap_or_else(|| panic!("LOCKSTEP_TEST_PROVIDERS: unknown provider {p:?}")))
            .collect(),
        _ => vec![lockstep_core::inference::Provider::Cpu],
    }
}

/// Stops `rt`'s recording and replays the log with 1 and with 4 workers: each must run to
/// `final_hash` with no divergence.
pub fn assert_replays_to(rt: &mut Runtime, final_hash: lockstep_core::Digest) {
    let log = rt.stop_recording().expect("recording");
    for workers in [1, 4] {
        let r = lockstep_core::replay(&log, workers, |_| {}).unwrap();
        assert_eq!((r.divergence, r.final_hash), (None, final_hash), "{workers} workers");
    }
}

/// Folds every message it is handed (every header field and every payload byte) into a sum it
/// reports to the host at each step, with its count. Kind 99 traps it in receive at that
/// message; kind 55 stores u32::MAX as the batch's done count, then traps; kind 77 makes its
/// next step trap; kind 44 overwrites the whole io buffer (and the done word) with junk
/// before returning; kind 33 grows its memory by a page.
pub fn folding_agent(version: u32, io: u32, pages: u32) -> Vec<u8> {
    folding_agent_stepping(
        version,
        io,
        pages,
        r#"(func (export "agent_step") (param i32) (result i32)
    (if (global.get $die) (then unreachable))
    (i64.store (i32.const 100) (global.get $sum))
    (i64.store (i32.const 108) (global.get $count))
    (drop (call $send (i64.const 0) (i32.const 7) (i32.const 0) (i32.const 100) (i32.const 16)))
    i32.const 0)"#,
    )
}

/// `folding_agent` with `step` (WAT: its exported `agent_step`, which may read the globals
/// `$sum`, `$count` and `$die` and call `$send`) instead of its own.
pub fn folding_agent_stepping(version: u32, io: u32, pages: u32, step: &str) -> Vec<u8> {
    let done = lockstep_core::abi::BATCH_OFFSET_DONE as u32 + io;
    let io_end = io + lockstep_core::abi::IO_BUFFER_BYTES;
    wat(&format!(
        r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") {pages})
  (global $sum (mut i64) (i64.const 0))
  (global $count (mut i64) (i64.const 0))
  (global $die (mut i32) (i32.const 0))
  (global $junk (mut i32) (i32.const 0))
  (func (export "lockstep_abi_version") (result i32) i32.const {version})
  (func (export "lockstep_io_buffer") (result i32) i32.const {io})
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  {step}
  (func $fold (param $at i32)
    (local $p i32) (local $end i32) (local $kind i32)
    (local.set $kind (i32.load offset=24 (local.get $at)))
    (if (i32.eq (local.get $kind) (i32.const 99)) (then unreachable))
    (if (i32.eq (local.get $kind) (i32.const 55)) (then (i32.store (i32.const {done}) (i32.const -1)) unreachable))
    (if (i32.eq (local.get $kind) (i32.const 77)) (then (global.set $die (i32.const 1))))
    (if (i32.eq (local.get $kind) (i32.const 44)) (then (global.set $junk (i32.const 1))))
    (if (i32.eq (local.get $kind) (i32.const 33)) (then (drop (memory.grow (i32.const 1)))))
    (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 31)) (i64.load offset=0 (local.get $at))))
    (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 31)) (i64.load offset=8 (local.get $at))))
    (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 31)) (i64.load offset=16 (local.get $at))))
    (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 31)) (i64.load offset=24 (local.get $at))))
    (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 31)) (i64.load offset=32 (local.get $at))))
    (local.set $p (i32.add (local.get $at) (i32.const 40)))
    (local.set $end (i32.add (local.get $p) (i32.load offset=32 (local.get $at))))
    (block $b (loop $l
      (br_if $b (i32.ge_u (local.get $p) (local.get $end)))
      (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 131)) (i64.load8_u (local.get $p))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $l)))
    (global.set $count (i64.add (global.get $count) (i64.const 1))))
  (func (export "agent_receive") (param $at i32) (result i32) (call $fold (local.get $at)) i32.const 0)
  (func (export "agent_receive_batch") (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $at i32)
    (local.set $at (local.get $p))
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
      (call $fold (local.get $at))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (i32.store (i32.const {done}) (local.get $i))
      (local.set $at (i32.add (local.get $at)
        (i32.and (i32.add (i32.add (i32.const 40) (i32.load offset=32 (local.get $at))) (i32.const 7)) (i32.const -8))))
      (br $next)))
    (if (global.get $junk) (then
      (global.set $junk (i32.const 0))
      (memory.fill (i32.const {io}) (i32.const 0xAB) (i32.const {io_len}))
      (i32.store (i32.const {done}) (i32.const 12345))))
    i32.const 0))"#,
        io_len = io_end - io + 8,
    ))
}
