//! Every host-side queue an agent or the host can fill has a limit, and hitting it is never
//! silent: back-pressure (a typed error, or input left in the ring) or a `dropped` event with
//! a count. Each test below drives one limit.

mod common;
use common::*;
use lockstep_core::limits::{MAX_DEAD_LETTER_BYTES, MAX_HOST_MESSAGE_BYTES, MAX_MODULES, MAX_PENDING_BYTES, MAX_PHASES};
use lockstep_core::{abi, DeadLetterReason, Event, Runtime, RuntimeConfig};

/// An agent whose every step sends `n` messages of `len` bytes to `to` and reports to the
/// host (kind 77) how many sends were accepted, when `report` is set.
fn flood(to: u64, n: u32, len: u32, report: bool) -> Vec<u8> {
    let report = if report {
        "(i32.store (i32.const 70000) (local.get $ok)) (drop (call $send (i64.const 0) (i32.const 77) (i32.const 0) (i32.const 70000) (i32.const 4)))"
    } else {
        ""
    };
    wat(&format!(
        r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 3)
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 131072)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) (local $i i32) (local $ok i32)
                (block $done (loop $more
                    (br_if $done (i32.ge_u (local.get $i) (i32.const {n})))
                    (if (i32.eqz (call $send (i64.const {to}) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const {len})))
                        (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $more)))
                {report}
                i32.const 0))"#
    ))
}

fn big_runtime(max_agents: u32) -> Runtime {
    Runtime::new(RuntimeConfig { workers: 2, max_agents, record: false, fuel_per_call: 100_000_000, ..RuntimeConfig::development() }).unwrap()
}

fn dropped(events: &[Event], which: &str) -> u64 {
    events
        .iter()
        .map(|e| {
            if let Event::Dropped { queue, count, .. } = e {
                if *queue == which {
                    *count
                } else {
                    0
                }
            } else {
                0
            }
        })
        .sum()
}

#[test]
fn one_agent_sends_at_most_its_byte_budget_per_tick() {
    // The reviewers' flood: 4,096 maximal messages per tick to a dead id (256 MiB a tick).
    let mut rt = big_runtime(4);
    let max = abi::MAX_PAYLOAD_BYTES as u32;
    rt.spawn_bytes(flood(999_999, 4_096, max, true)).unwrap();
    for _ in 0..4 {
        rt.tick().unwrap();
    }
    let reports = rt.drain_host_messages();
    let accepted: Vec<u32> = reports.iter().map(|m| u32::from_le_bytes(m.payload[..4].try_into().unwrap())).collect();
    let per_tick = (abi::MAX_OUTBOX_BYTES_PER_TICK / abi::MAX_PAYLOAD_BYTES) as u32;
    assert!(accepted.iter().all(|&n| n == per_tick), "each tick accepts {per_tick} maximal messages (1 MiB): {accepted:?}");
    let kept: usize = rt.drain_dead_letters().iter().map(|d| d.message.payload.len()).sum();
    assert!(kept <= 4 * abi::MAX_OUTBOX_BYTES_PER_TICK, "dead letters grew {kept} bytes in 4 ticks");
}

#[test]
fn dead_letters_past_their_limit_are_counted_and_reported_not_kept() {
    let mut rt = big_runtime(128);
    let max = abi::MAX_PAYLOAD_BYTES as u32;
    // 80 agents × 1 MiB a tick to a dead id: 80 MiB > the 64 MiB the queue keeps.
    for _ in 0..80 {
        rt.spawn_bytes(flood(999_999, 16, max, false)).unwrap();
    }
    let report = rt.tick().unwrap();
    assert_eq!(report.dead_letters, 80 * 16, "every dead letter is still counted and hashed");
    let events = rt.drain_events();
    let announced = events.iter().filter(|e| matches!(e, Event::DeadLetter { .. })).count();
    assert_eq!(announced, 80 * 16, "and announced");
    let kept = rt.drain_dead_letters();
    let kept_bytes: usize = kept.iter().map(|d| d.message.payload.len()).sum();
    assert!(kept_bytes <= MAX_DEAD_LETTER_BYTES);
    assert_eq!(dropped(&events, "dead_letters"), (80 * 16 - kept.len()) as u64, "what was not kept is reported");
    assert_eq!(rt.dropped_totals().0, (80 * 16 - kept.len()) as u64);
}

#[test]
fn draining_or_not_never_changes_the_tick_hashes() {
    let run = |drain: bool| {
        let mut rt = big_runtime(128);
        for _ in 0..80 {
            rt.spawn_bytes(flood(999_999, 16, abi::MAX_PAYLOAD_BYTES as u32, false)).unwrap();
        }
        (0..3)
            .map(|_| {
                let h = rt.tick().unwrap().hash;
                if drain {
                    rt.drain_dead_letters();
                }
                h
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn messages_to_the_host_past_their_limit_are_counted_and_reported() {
    let mut rt = big_runtime(512);
    let max = abi::MAX_PAYLOAD_BYTES as u32;
    for _ in 0..300 {
        rt.spawn_bytes(flood(0, 16, max, false)).unwrap();
    }
    rt.tick().unwrap();
    let events = rt.drain_events();
    let kept = rt.drain_host_messages();
    let kept_bytes: usize = kept.iter().map(|m| m.payload.len()).sum();
    assert!(kept_bytes <= MAX_HOST_MESSAGE_BYTES);
    assert_eq!(dropped(&events, "host_messages") as usize + kept.len(), 300 * 16);
}

#[test]
fn a_full_inbox_dead_letters_the_rest_in_routing_order() {
    let mut rt = big_runtime(64);
    let target = rt.spawn_bytes(agent("counter")).unwrap();
    let max = abi::MAX_PAYLOAD_BYTES as u32;
    // 20 senders × 1 MiB to one agent: 20 MiB > its 16 MiB inbox.
    for _ in 0..20 {
        rt.spawn_bytes(flood(target, 16, max, false)).unwrap();
    }
    rt.tick().unwrap();
    let full: Vec<_> = rt.drain_dead_letters().into_iter().filter(|d| d.reason == DeadLetterReason::RecipientInboxFull).collect();
    let fit = abi::MAX_INBOX_BYTES / abi::MAX_PAYLOAD_BYTES;
    assert_eq!(full.len(), 20 * 16 - fit);
    assert!(full.iter().all(|d| d.message.from > 1 + (fit / 16) as u64), "the latest senders in routing order are refused");
    rt.tick().unwrap();
    assert_eq!(rt.inspect(target).unwrap().messages_received, fit as u64);
}

#[test]
fn host_sends_past_the_pending_limit_are_refused_with_e_queue_full() {
    let mut rt = big_runtime(4);
    let id = rt.spawn_bytes(agent("counter")).unwrap();
    let fit = MAX_PENDING_BYTES / abi::MAX_PAYLOAD_BYTES;
    for _ in 0..fit {
        rt.send(id, 0, 0, vec![1; abi::MAX_PAYLOAD_BYTES]).unwrap();
    }
    let e = rt.send(id, 0, 0, vec![1; abi::MAX_PAYLOAD_BYTES]).unwrap_err();
    assert_eq!(e.code(), "E_QUEUE_FULL", "{e}");
    rt.tick().unwrap();
    rt.send(id, 0, 0, vec![1; 8]).expect("room again after a tick");
}

#[test]
fn distinct_priorities_are_limited() {
    let mut rt = big_runtime(128);
    let m = rt.load_module(agent("counter")).unwrap();
    for p in 0..MAX_PHASES as i32 {
        rt.spawn_with_priority(m, p).unwrap();
    }
    rt.spawn_with_priority(m, 3).expect("an existing priority is fine");
    assert_eq!(rt.spawn_with_priority(m, -1).unwrap_err().code(), "E_PRIORITY_LIMIT");
}

#[test]
fn distinct_modules_are_limited() {
    let mut rt = big_runtime(4);
    for i in 0..MAX_MODULES {
        rt.load_module(wat_agent(1, &format!(r#"(func (export "agent_step") (param i32) (result i32) i32.const 0) (global i32 (i32.const {i}))"#))).unwrap();
    }
    let e = rt.load_module(wat_agent(1, r#"(func (export "agent_step") (param i32) (result i32) i32.const 0) (global i32 (i32.const -1))"#)).unwrap_err();
    assert_eq!(e.code(), "E_MODULE_LIMIT");
    rt.load_module(wat_agent(1, r#"(func (export "agent_step") (param i32) (result i32) i32.const 0) (global i32 (i32.const 0))"#))
        .expect("a loaded module loads again");
}

#[test]
fn events_past_max_events_keep_the_newest() {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_events: 10, max_agents: 64, ..RuntimeConfig::development() }).unwrap();
    for _ in 0..30 {
        rt.spawn_bytes(agent("counter")).unwrap();
    }
    let events = rt.drain_events();
    assert_eq!(events.len(), 10);
    assert!(matches!(events.last(), Some(Event::Spawned { agent: 30, .. })));
    assert_eq!(rt.events_dropped(), 21, "30 spawned events and the development-mode warning, less the 10 kept");
}

/// An agent that, in one step, calls `import` `n` times and reports (kind 77) how many calls
/// returned 0.
fn caller(import: &str, n: u32) -> Vec<u8> {
    let (decl, call) = match import {
        "log" => ("(import \"lockstep\" \"log\" (func $f (param i32 i32 i32)))", "(call $f (i32.const 3) (i32.const 0) (i32.const 1000)) (i32.const 0)"),
        _ => (
            "(import \"lockstep\" \"infer\" (func $f (param i32 i32 i32 i32) (result i32)))",
            "(call $f (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 65496))",
        ),
    };
    wat(&format!(
        r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            {decl}
            (memory (export "memory") 3)
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 131072)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32) (local $i i32) (local $ok i32)
                (block $done (loop $more
                    (br_if $done (i32.ge_u (local.get $i) (i32.const {n})))
                    (if (i32.eqz {call}) (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $more)))
                (i32.store (i32.const 70000) (local.get $ok))
                (drop (call $send (i64.const 0) (i32.const 77) (i32.const 0) (i32.const 70000) (i32.const 4)))
                i32.const 0))"#
    ))
}

#[test]
fn an_agent_asks_at_most_one_mebibyte_of_inference_input_per_tick() {
    let mut rt = big_runtime(4);
    rt.spawn_bytes(caller("infer", 64)).unwrap();
    rt.tick().unwrap();
    let accepted = u32::from_le_bytes(rt.drain_host_messages()[0].payload[..4].try_into().unwrap());
    assert_eq!(accepted as usize, abi::MAX_INFER_BYTES_PER_TICK / abi::MAX_PAYLOAD_BYTES);
}

#[test]
fn an_agent_leaves_at_most_max_log_lines_per_tick_across_its_calls() {
    let mut rt = big_runtime(4);
    let id = rt.spawn_bytes(caller("log", 64)).unwrap();
    // 2,000 host messages: 2,000 receive calls, each could log 64 lines.
    let logger = wat(r#"(module
        (import "lockstep" "log" (func $log (param i32 i32 i32)))
        (memory (export "memory") 2)
        (func (export "lockstep_abi_version") (result i32) i32.const 1)
        (func (export "lockstep_io_buffer") (result i32) i32.const 0)
        (func (export "agent_init") (result i32) i32.const 0)
        (func (export "agent_receive") (param i32) (result i32) (local $i i32)
            (block $done (loop $more
                (br_if $done (i32.ge_u (local.get $i) (i32.const 64)))
                (call $log (i32.const 3) (i32.const 0) (i32.const 1000))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $more)))
            i32.const 0)
        (func (export "agent_shutdown") (result i32) i32.const 0)
        (func (export "agent_step") (param i32) (result i32) i32.const 0))"#);
    let chatty = rt.spawn_bytes(logger).unwrap();
    for _ in 0..2_000 {
        rt.send(chatty, 0, 0, vec![]).unwrap();
    }
    rt.tick().unwrap();
    let events = rt.drain_events();
    let lines = |a: u64| events.iter().filter(|e| matches!(e, Event::Log { agent, .. } if *agent == a)).count();
    assert_eq!(lines(chatty), abi::MAX_LOG_LINES_PER_TICK);
    assert_eq!(lines(id), abi::MAX_LOG_LINES_PER_CALL, "one call keeps 64");
}

#[test]
fn the_replay_log_stops_at_max_log_bytes_and_replays_as_a_prefix() {
    let limit = 1 << 20;
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_agents: 4, max_log_bytes: limit, ..RuntimeConfig::development() }).unwrap();
    let id = rt.spawn_bytes(agent("counter")).unwrap();
    let mut stopped_at = None;
    for t in 0..40 {
        rt.send(id, 1, 0, vec![t as u8; 60_000]).unwrap();
        rt.tick().unwrap();
        if stopped_at.is_none() && rt.drain_events().iter().any(|e| matches!(e, Event::RecordingStopped { .. })) {
            stopped_at = Some(t);
        }
    }
    let stopped_at = stopped_at.expect("a recording_stopped event");
    assert!(stopped_at < 20, "1 MiB holds fewer than 20 ticks of 60 KB messages");
    assert!(rt.is_recording(), "the runtime carries on; only recording stopped");
    let log = rt.stop_recording().unwrap();
    assert!(log.len() <= limit, "the log kept {} bytes", log.len());
    let report = lockstep_core::replay(&log, 1, |_| {}).unwrap();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert!(!report.complete, "a cut log is a prefix, never a complete session");
    assert!(
        report.ticks_verified >= stopped_at as u64 - 1 && report.ticks_verified <= stopped_at as u64 + 1,
        "{} ticks verified, cut at {stopped_at}",
        report.ticks_verified
    );
}
