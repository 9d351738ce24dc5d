//! Bad input from the embedder is a typed error, and the runtime stays usable.

mod common;
use common::*;
use lockstep_core::{abi, LockstepError};

fn still_usable(rt: &mut lockstep_core::Runtime) {
    let id = rt.spawn_bytes(agent("counter")).unwrap();
    rt.send(id, 1, 0, vec![]).unwrap();
    rt.tick().unwrap();
    assert!(rt.drain_host_messages().iter().any(|m| m.from == id && m.kind == 2));
}

#[test]
fn non_wasm_bytes() {
    let mut rt = runtime(1);
    let e = rt.spawn_bytes(b"#!/bin/sh\necho hi".to_vec()).unwrap_err();
    assert_eq!(e.code(), "E_INVALID_MODULE");
    let e = rt.spawn_bytes(b"\0asm\x01\0\0\0garbage".to_vec()).unwrap_err();
    assert_eq!(e.code(), "E_INVALID_MODULE");
    let e = rt.spawn_bytes(vec![]).unwrap_err();
    assert_eq!(e.code(), "E_INVALID_MODULE");
    still_usable(&mut rt);
}

#[test]
fn missing_export() {
    let mut rt = runtime(1);
    let e = rt.spawn_bytes(wat_agent(1, "")).unwrap_err();
    assert_eq!(e, LockstepError::MissingExport { name: "agent_step".into(), expected: "func (context_ptr: i32) -> i32".into() });
    let e = rt.spawn_bytes(wat_agent(1, r#"(func (export "agent_step") (result i32) i32.const 0)"#)).unwrap_err();
    assert_eq!(e.code(), "E_MISSING_EXPORT", "wrong signature counts as missing: {e}");
    assert!(e.to_string().contains("docs/ABI.md"));
    still_usable(&mut rt);
}

#[test]
fn wrong_abi_version() {
    let mut rt = runtime(1);
    let e = rt.spawn_bytes(wat_agent(99, r#"(func (export "agent_step") (param i32) (result i32) i32.const 0)"#)).unwrap_err();
    assert_eq!(e, LockstepError::AbiMismatch { found: 99, expected: abi::ABI_VERSION });
    still_usable(&mut rt);
}

#[test]
fn undeclared_import() {
    let mut rt = runtime(1);
    let bytes = wat(r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 2))"#);
    let e = rt.spawn_bytes(bytes).unwrap_err();
    assert_eq!(e, LockstepError::UnknownImport { module: "wasi_snapshot_preview1".into(), name: "fd_write".into() });
    still_usable(&mut rt);
}

#[test]
fn io_buffer_outside_memory() {
    let mut rt = runtime(1);
    let bytes = wat(r#"(module
        (memory (export "memory") 1)
        (func (export "lockstep_abi_version") (result i32) i32.const 1)
        (func (export "lockstep_io_buffer") (result i32) i32.const 60000)
        (func (export "agent_init") (result i32) i32.const 0)
        (func (export "agent_step") (param i32) (result i32) i32.const 0)
        (func (export "agent_receive") (param i32) (result i32) i32.const 0)
        (func (export "agent_shutdown") (result i32) i32.const 0))"#);
    let e = rt.spawn_bytes(bytes).unwrap_err();
    assert_eq!(e.code(), "E_INVALID_MODULE");
    assert!(e.to_string().contains("lockstep_io_buffer"));
}

#[test]
fn unknown_agent_and_oversized_message() {
    let mut rt = runtime(1);
    assert_eq!(rt.send(42, 0, 0, vec![]).unwrap_err(), LockstepError::UnknownAgent { id: 42 });
    assert_eq!(rt.send(0, 0, 0, vec![]).unwrap_err(), LockstepError::UnknownAgent { id: 0 });
    assert_eq!(rt.inspect(7).unwrap_err().code(), "E_UNKNOWN_AGENT");
    assert_eq!(rt.kill(7).unwrap_err().code(), "E_UNKNOWN_AGENT");
    let id = rt.spawn_bytes(agent("counter")).unwrap();
    let e = rt.send(id, 0, 0, vec![0; abi::MAX_PAYLOAD_BYTES + 1]).unwrap_err();
    assert_eq!(e, LockstepError::MessageTooLarge { len: abi::MAX_PAYLOAD_BYTES + 1, max: abi::MAX_PAYLOAD_BYTES });
    rt.send(id, 0, 0, vec![7; abi::MAX_PAYLOAD_BYTES]).unwrap();
    rt.tick().unwrap();
    assert_eq!(rt.inspect(id).unwrap().messages_received, 1, "a maximal message is delivered intact");
    still_usable(&mut rt);
}

#[test]
fn agent_limit_and_bad_config() {
    let mut rt =
        lockstep_core::Runtime::new(lockstep_core::RuntimeConfig { workers: 1, max_agents: 2, ..lockstep_core::RuntimeConfig::development() }).unwrap();
    rt.spawn_bytes(agent("counter")).unwrap();
    rt.spawn_bytes(agent("counter")).unwrap();
    assert_eq!(rt.spawn_bytes(agent("counter")).unwrap_err(), LockstepError::AgentLimit { max: 2 });
    for cfg in [
        lockstep_core::RuntimeConfig { workers: 0, ..lockstep_core::RuntimeConfig::development() },
        lockstep_core::RuntimeConfig { memory_limit_bytes: 1000, ..lockstep_core::RuntimeConfig::development() },
        lockstep_core::RuntimeConfig { max_agents: 0, ..lockstep_core::RuntimeConfig::development() },
    ] {
        let e = lockstep_core::Runtime::new(cfg).err().expect("refused");
        assert_eq!(e.code(), "E_INVALID_CONFIG");
    }
}

/// One error type: the inference and ring errors convert into `LockstepError` with `?` and
/// keep their own codes and messages (issue 10: codes were spread over three enums).
#[test]
fn every_error_converts_into_lockstep_error_keeping_its_code() {
    use lockstep_core::inference::InferenceError;
    use lockstep_core::ring::{OwnedRegion, RingError};
    let inference = InferenceError::UnknownModel { id: "abc".into() };
    let message = inference.to_string();
    let e: LockstepError = inference.into();
    assert_eq!((e.code(), e.to_string()), ("E_UNKNOWN_MODEL", message));
    let e: LockstepError = RingError::Full.into();
    assert_eq!(e.code(), "E_RING");
    // The runtime's own ring entry points return it: an uninitialised region is refused.
    let mut rt = lockstep_core::Runtime::new(lockstep_core::RuntimeConfig::development()).unwrap();
    let err = rt.attach_inbound_ring(OwnedRegion::new(4096).memory()).unwrap_err();
    assert_eq!(err.code(), "E_RING", "{err}");
}
