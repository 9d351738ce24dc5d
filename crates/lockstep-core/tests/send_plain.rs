//! `send_plain` (docs/ABI.md): `send` at priority 0 with four parameters. The same messages,
//! refusals and capability checks as `send`. (Which modules may import it: `tests/security.rs`,
//! whose SDK-built agents do.)

mod common;
use common::*;

use lockstep_core::security::{Capabilities, SendScope};
use lockstep_core::{AgentState, FaultKind, Message, Runtime, RuntimeConfig};

/// A step that sends through `import`: to its peer `id % 3 + 1` (kind 7) and to the host (kind
/// 8), a 16-byte payload (its id, the tick); then reports to the host (kind 9) the codes of a
/// send with a payload over the message limit and one to agent 2^40 (outside `"send":"host"`
/// when the manifest allows only the host). Agents are ids 1–3. Per `call`, one of
/// `(call $send (i64 to) (i32 kind) PTR LEN)` for `send_plain` or the same with priority 0 in
/// the middle for `send`.
fn sending_agent(import: &str) -> Vec<u8> {
    let (signature, priority) = match import {
        "send" => ("(param i64 i32 i32 i32 i32)", "(i32.const 0)"),
        _ => ("(param i64 i32 i32 i32)", ""),
    };
    let send = |to: &str, kind: u32, ptr: &str, len: &str| format!("(call $send {to} (i32.const {kind}) {priority} {ptr} {len})");
    wat(&format!(
        r#"(module
  (import "lockstep" "{import}" (func $send {signature} (result i32)))
  (import "lockstep" "self_id" (func $self (result i64)))
  (import "lockstep" "tick" (func $tick (result i64)))
  (memory (export "memory") 3)
  (func (export "lockstep_abi_version") (result i32) i32.const 2)
  (func (export "lockstep_io_buffer") (result i32) i32.const 4096)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (i64.store (i32.const 100) (call $self))
    (i64.store (i32.const 108) (call $tick))
    (drop {to_peer})
    (drop {to_host})
    (i32.store (i32.const 200) {too_large})
    (i32.store (i32.const 204) {far})
    (drop {report})
    i32.const 0))"#,
        to_peer = send("(i64.add (i64.rem_u (call $self) (i64.const 3)) (i64.const 1))", 7, "(i32.const 100)", "(i32.const 16)"),
        to_host = send("(i64.const 0)", 8, "(i32.const 100)", "(i32.const 16)"),
        too_large = send("(i64.const 0)", 1, "(i32.const 0)", "(i32.const 65497)"),
        far = send("(i64.const 1099511627776)", 1, "(i32.const 100)", "(i32.const 1)"),
        report = send("(i64.const 0)", 9, "(i32.const 200)", "(i32.const 8)"),
    ))
}

fn run(import: &str, workers: usize) -> (Vec<lockstep_core::Digest>, Vec<Message>, Vec<u64>) {
    run_granted(import, workers, RuntimeConfig::development().policy)
}

fn run_granted(import: &str, workers: usize, policy: Capabilities) -> (Vec<lockstep_core::Digest>, Vec<Message>, Vec<u64>) {
    let mut rt = Runtime::new(RuntimeConfig { workers, max_agents: 8, policy, ..RuntimeConfig::development() }).unwrap();
    let ids: Vec<u64> = (0..3).map(|_| rt.spawn_bytes(sending_agent(import)).unwrap()).collect();
    let mut hashes = Vec::new();
    let mut to_host = Vec::new();
    for _ in 0..5 {
        hashes.push(rt.tick().unwrap().hash);
        to_host.extend(rt.drain_host_messages());
    }
    let received = ids.iter().map(|&id| rt.inspect(id).unwrap().messages_received).collect();
    (hashes, to_host, received)
}

#[test]
fn send_plain_is_send_at_priority_zero() {
    let (hashes, to_host, received) = run("send", 1);
    assert_eq!(received, vec![4, 4, 4], "each agent gets its peer's message in ticks 2–5");
    let reports: Vec<&Message> = to_host.iter().filter(|m| m.kind == 9).collect();
    assert_eq!(reports.len(), 15);
    for r in reports {
        // −1: the payload is over the message limit; 0: a development runtime lets it send anywhere.
        assert_eq!(r.payload, [(-1i32).to_le_bytes(), 0i32.to_le_bytes()].concat(), "{r:?}");
    }
    // (The tick hashes differ from `send`'s: the modules' code, and so the fuel they burn, do.)
    let plain = run("send_plain", 1);
    assert_eq!(plain.1, to_host, "messages to the host");
    assert_eq!(plain.2, received, "messages received");
    assert_eq!(run("send_plain", 2).0, plain.0, "tick hashes with 1 and 2 workers");
    assert_eq!(run("send", 2).0, hashes);
}

#[test]
fn send_plain_faults_on_a_range_outside_memory() {
    let bad = importing_agent(
        r#"(import "lockstep" "send_plain" (func $send (param i64 i32 i32 i32) (result i32)))"#,
        "(drop (call $send (i64.const 0) (i32.const 1) (i32.const 131000) (i32.const 100))) i32.const 0",
    );
    let mut rt = runtime(1);
    let a = rt.spawn_bytes(bad).unwrap();
    assert_eq!(rt.tick().unwrap().faults, 1);
    let AgentState::Faulted(fault) = rt.inspect(a).unwrap().state else { panic!("not faulted") };
    assert_eq!(fault.kind, FaultKind::HostCallViolation, "{fault:?}");
    assert!(fault.detail.contains("send_plain"), "{}", fault.detail);
}

#[test]
fn send_plain_checks_the_send_scope_on_every_call() {
    let host_only = Capabilities { send: SendScope::Host, ..Capabilities::all() };
    for import in ["send", "send_plain"] {
        let (_, to_host, received) = run_granted(import, 1, host_only.clone());
        assert_eq!(received, vec![0, 0, 0], "{import}: nothing reached a peer");
        assert_eq!(to_host.iter().filter(|m| m.kind == 8).count(), 15, "{import}: the host still gets its messages");
        for r in to_host.iter().filter(|m| m.kind == 9) {
            // −1: over the message limit; −3: agent 2^40 is outside "send": "host".
            assert_eq!(r.payload, [(-1i32).to_le_bytes(), (-3i32).to_le_bytes()].concat(), "{import}: {r:?}");
        }
    }
}

/// Red team: `send_plain` declared with `send`'s five parameters (the likely copy-paste
/// mistake) was refused with wasmtime's link error, which called the module's own type the
/// "expected" one, under a hint to build for wasm32-unknown-unknown.
#[test]
fn an_import_with_another_type_is_told_the_runtimes_type() {
    let mut rt = runtime(1);
    let five = importing_agent(r#"(import "lockstep" "send_plain" (func $s (param i64 i32 i32 i32 i32) (result i32)))"#, "i32.const 0");
    let e = rt.spawn_bytes(five).unwrap_err();
    assert_eq!(e.code(), "E_UNKNOWN_IMPORT", "{e}");
    let text = e.to_string();
    assert!(
        text.contains("imports `lockstep::send_plain` as (func (param i64 i32 i32 i32 i32) (result i32)), but the runtime provides it as (func (param i64 i32 i32 i32) (result i32))"),
        "{text}"
    );
    let global = importing_agent(r#"(import "lockstep" "send_plain" (global i32))"#, "i32.const 0");
    let text = rt.spawn_bytes(global).unwrap_err().to_string();
    assert!(text.contains("imports `lockstep::send_plain` as a global, but the runtime provides it as (func"), "{text}");
    let no_result = importing_agent(r#"(import "lockstep" "tick" (func))"#, "i32.const 0");
    let text = rt.spawn_bytes(no_result).unwrap_err().to_string();
    assert!(text.contains("imports `lockstep::tick` as (func), but the runtime provides it as (func (result i64))"), "{text}");
}
