//! The tick hashes and the replay log of a fixed scenario, pinned to the values the engine
//! produced before the core was reshaped (issue 10). A change to what a tick hash covers, to
//! the order it is fed in, or to the log's bytes fails here; such a change must bump the log
//! version (docs/REPLAY.md) and update these values on purpose.

mod common;

use common::wat;
use lockstep_core::{replay, MemoryAllocator, Runtime, RuntimeConfig};

/// Sends a random number to its neighbour every step, answers every message to the host,
/// traps on kind 99, greets the host from init and shutdown, logs from init.
const AGENT: &str = r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (import "lockstep" "random_u64" (func $rand (result i64)))
  (import "lockstep" "log" (func $log (param i32 i32 i32)))
  (import "lockstep" "self_id" (func $self (result i64)))
  (memory (export "memory") 2)
  (data (i32.const 2048) "hello")
  (global $count (mut i32) (i32.const 0))
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 4096)
  (func (export "agent_init") (result i32)
    (call $log (i32.const 3) (i32.const 2048) (i32.const 5))
    (drop (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 2048) (i32.const 5)))
    i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (i64.store (i32.const 3000) (call $rand))
    (drop (call $send
      (i64.add (i64.rem_u (call $self) (i64.load offset=24 (local.get $ctx))) (i64.const 1))
      (i32.const 7) (i32.const 0) (i32.const 3000) (i32.const 8)))
    i32.const 0)
  (func (export "agent_receive") (param $m i32) (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.store (i32.const 3100) (global.get $count))
    (drop (call $send (i64.const 0) (i32.const 2) (i32.const 0) (i32.const 3100) (i32.const 4)))
    (if (i32.eq (i32.load offset=24 (local.get $m)) (i32.const 99)) (then unreachable))
    i32.const 0)
  (func (export "agent_shutdown") (result i32)
    (drop (call $send (i64.const 0) (i32.const 3) (i32.const 0) (i32.const 2048) (i32.const 5)))
    i32.const 0))"#;

/// Runs the scenario; returns each tick's hash, the final deep hash and the log.
fn scenario(workers: usize, allocator: MemoryAllocator) -> (Vec<String>, String, Vec<u8>) {
    let mut rt = Runtime::new(RuntimeConfig { workers, allocator, seed: 42, checkpoint_interval_ticks: 4, ..RuntimeConfig::development() }).unwrap();
    let module = rt.load_module(wat(AGENT)).unwrap();
    for priority in [0, 0, 1, 1, 2] {
        rt.spawn_with_priority(module, priority).unwrap();
    }
    let mut hashes = Vec::new();
    for t in 0..12u64 {
        match t {
            2 => {
                rt.send(1, 5, 0, b"five".to_vec()).unwrap();
                rt.send(3, 99, 0, b"trap".to_vec()).unwrap();
                rt.send(5, 6, 3, vec![7; 300]).unwrap();
            }
            4 => rt.kill(2).unwrap(),
            6 => {
                rt.shutdown(4).unwrap();
                rt.send(2, 1, 0, b"to the dead".to_vec()).unwrap();
            }
            8 => {
                rt.spawn_with_priority(module, -1).unwrap();
            }
            _ => {}
        }
        hashes.push(rt.tick().unwrap().hash.to_hex());
    }
    let deep = rt.deep_hash().hash.to_hex();
    let log = rt.stop_recording().unwrap();
    (hashes, deep, log)
}

const TICK_HASHES: [&str; 12] = [
    "45dbe548761909ddb5d5a6225cf0af90c8e07fdc4c2c7abc94450c8c39c77290",
    "0626702b34add71bd629cfa94aa6dc1fc237f03f4a3099671951076ef5f47ed5",
    "0dc656a3c17369b65181fe409eee8a83eac11be9d875e060309478d286ecace9",
    "93baec52d62630df19e72e8d9b0a91b96a10eae610113248b93079b01c6f35c3",
    "68ff12bd1b0391b7a2dd7819ee4d98026a1ddf2c30ab78c679846ae549e02a65",
    "a5bfae92b3ff7e61f78bee2c2d61266507697b8dc34cf17f5bcee1716b4a2fff",
    "a4f0053b52c93b344cb1228c679df2bee2328c62776d302230b92b57bbad69f7",
    "dcf6414b04c70728c45714d23c2cc7b919eeda312f43f0750861e3789e27494d",
    "c61092a72ffefcbab571528c03a84f772196e260eb37a78542ffb62099f61e67",
    "ed34adf1c70208f57e76ffef4a079c5fa2791f4d6b3bfdc05b4ec3abb59d778e",
    "8df26a599aa702ce4887d00697c04d00345d2ee13a7b09f65d950379ba712b40",
    "d1ebab0c9e3792295d9f78b2e3da99395f57def60304dd56c18406eec13cae6b",
];
const DEEP_HASH: &str = "b8444bb24938207289006b0dbac377b08755281292be8bf073f34cc5316b691a";
const LOG_BLAKE3: &str = "d065a4eb1635f9bc5664b1e0c3b43a2e2ea5ac0d7859995e89eed1540604cacb";
const LOG_BYTES: usize = 3321;

#[test]
fn tick_hashes_and_log_bytes_are_unchanged() {
    let (hashes, deep, log) = scenario(1, MemoryAllocator::Pooling);
    let log_hash = blake3::hash(&log).to_hex().to_string();
    assert_eq!(hashes, TICK_HASHES, "the tick hash definition changed (docs/REPLAY.md): bump the log version and update these values on purpose");
    assert_eq!(deep, DEEP_HASH, "the deep hash definition changed");
    assert_eq!((log.len(), log_hash.as_str()), (LOG_BYTES, LOG_BLAKE3), "the replay log's bytes changed: bump the log version (docs/REPLAY.md)");
}

#[test]
fn golden_scenario_agrees_across_workers_allocators_and_replay() {
    let (hashes, deep, log) = scenario(1, MemoryAllocator::Pooling);
    for (workers, allocator) in [(2, MemoryAllocator::Pooling), (4, MemoryAllocator::Slab), (1, MemoryAllocator::Slab)] {
        let (h, d, l) = scenario(workers, allocator);
        assert_eq!((&h, &d), (&hashes, &deep), "workers {workers}, {allocator:?}");
        assert_eq!(l, log, "the log does not depend on workers or allocator");
    }
    let report = replay(&log, 2, |_| {}).unwrap();
    assert!(report.divergence.is_none() && report.complete, "{report:?}");
    assert_eq!(report.ticks_verified, 12);
    assert_eq!(report.checkpoints_verified, 3);
}
