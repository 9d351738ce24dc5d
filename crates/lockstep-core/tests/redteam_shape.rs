//! Red team of the reshaped core (issue 10): the replay path through `accept_host_message`
//! and `accept_recorded_answers`, the tick hasher, the recorder's cut, the bounded outputs.
//! Each test is a finding (or a check that held) written as a regression test.

use lockstep_core::replay_log::{write_header, LogReader, Record, HEADER_BYTES};
use lockstep_core::ring::{self, OwnedRegion};
use lockstep_core::{replay, Digest, DivergenceKind, Event, LockstepError, Runtime, RuntimeConfig};

fn config() -> RuntimeConfig {
    RuntimeConfig { workers: 1, max_agents: 16, fuel_per_call: 100_000, ..RuntimeConfig::development() }
}

fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("valid wat")
}

/// An agent with every import it may need; the bodies are spliced in (each ends with an i32).
fn agent(init: &str, step: &str, receive: &str, shutdown: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (import "lockstep" "infer" (func $infer (param i32 i32 i32 i32) (result i32)))
            (import "lockstep" "log" (func $log (param i32 i32 i32)))
            (import "lockstep" "report_panic" (func $panic (param i32 i32)))
            (memory (export "memory") 2)
            (data (i32.const 0) "hello from init")
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
            (func (export "agent_init") (result i32) {init})
            (func (export "agent_step") (param $ctx i32) (result i32) {step})
            (func (export "agent_receive") (param $msg i32) (result i32) {receive})
            (func (export "agent_shutdown") (result i32) {shutdown}))"#
    ))
}

const OK: &str = "i32.const 0";
/// Sends every message back to its sender, same kind and payload.
const ECHO: &str = "(drop (call $send (i64.load (local.get $msg)) (i32.load offset=24 (local.get $msg)) (i32.const 0)
    (i32.add (local.get $msg) (i32.const 40)) (i32.load offset=32 (local.get $msg)))) i32.const 0";

fn echo() -> Vec<u8> {
    agent(OK, OK, ECHO, OK)
}

/// Asks model slot 0 (tag 7) at every step, and echoes what it receives (answers included).
fn asker() -> Vec<u8> {
    agent(OK, "(drop (call $infer (i32.const 0) (i32.const 7) (i32.const 0) (i32.const 8))) i32.const 0", ECHO, OK)
}

fn records(log: &[u8]) -> Vec<Record> {
    let mut r = LogReader::new(log).unwrap();
    let mut v = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        v.push(rec);
    }
    v
}

/// `records` (no End) framed into a log, then sealed as the recorder seals one: End with the
/// tick count, the record count, its offset, `hash` and the tail digest (docs/REPLAY.md).
fn sealed(records: &[Record], ticks: u64, hash: Digest) -> Vec<u8> {
    let mut out = Vec::new();
    write_header(&mut out);
    let mut config_end = 0;
    let mut tail_start = 0;
    for (i, r) in records.iter().enumerate() {
        r.encode(&mut out);
        if i == 0 {
            config_end = out.len();
            tail_start = out.len();
        }
        if matches!(r, Record::TickEnd { .. }) {
            tail_start = out.len();
        }
    }
    let mut h = blake3::Hasher::new();
    h.update(&out[HEADER_BYTES..config_end]);
    h.update(&out[tail_start..]);
    let tail = Digest(*h.finalize().as_bytes());
    let end = Record::End { ticks, records: records.len() as u64, bytes: out.len() as u64, hash, tail };
    end.encode(&mut out);
    out
}

/// A forger's tool: the replay itself is an oracle for the tick hashes. Rewrites every
/// TickEnd hash the replay disagrees with (the per-agent digests must already be right), then
/// seals the log with the final hash. What comes back replays "complete, no divergence" if
/// the replay accepted every record.
fn forge(mut recs: Vec<Record>) -> Vec<u8> {
    recs.retain(|r| !matches!(r, Record::End { .. }));
    let ticks = recs.iter().filter(|r| matches!(r, Record::TickEnd { .. })).count() as u64;
    for _ in 0..=ticks {
        let log = sealed(&recs, ticks, Digest::default());
        let report = match replay(&log, 1, |_| {}) {
            Ok(r) => r,
            Err(_) => return log,
        };
        match report.divergence {
            Some(d) if d.kind == DivergenceKind::TickHash => {
                for r in recs.iter_mut() {
                    if let Record::TickEnd { tick, hash, .. } = r {
                        if *tick == d.tick {
                            *hash = d.actual;
                        }
                    }
                }
            }
            Some(_) => return log,
            None => return sealed(&recs, ticks, report.final_hash),
        }
    }
    unreachable!("one rewrite per tick at most")
}

// ----- inference answers in a replay ------------------------------------------------------------

/// `new_replaying` must not change what a live session relies on: agents that call `infer`
/// with no engine and no model registered are answered "no such model", recorded, and the
/// log replays exactly.
#[test]
fn a_session_whose_agents_infer_with_no_model_registered_replays_exactly() {
    let mut rt = Runtime::new(config()).unwrap();
    let a = rt.spawn_bytes(asker()).unwrap();
    rt.spawn_bytes(echo()).unwrap();
    for _ in 0..4 {
        rt.tick().unwrap();
    }
    assert!(rt.inspect(a).unwrap().messages_received >= 3, "the answers arrived");
    let log = rt.stop_recording().unwrap();
    assert!(records(&log).iter().any(|r| matches!(r, Record::InferResults { .. })));
    let r = replay(&log, 1, |_| {}).unwrap();
    assert!(r.divergence.is_none() && r.complete, "{r:?}");
    assert_eq!(r.final_hash, rt.state_hash());
}

/// An InferResults record for a tick whose agents asked nothing cannot come from a runtime.
/// The replay queued it and never looked at it again: the forged log verified complete (and
/// the stray answers sat in front of every later tick's, which were then never delivered).
#[test]
fn inference_answers_for_a_tick_whose_agents_asked_nothing_are_corrupt() {
    let mut rt = Runtime::new(config()).unwrap();
    let a = rt.spawn_bytes(echo()).unwrap();
    for t in 0..3u8 {
        rt.send(a, 1, 0, vec![t]).unwrap();
        rt.tick().unwrap();
    }
    let mut recs = records(&rt.stop_recording().unwrap());
    let at = recs.iter().position(|r| matches!(r, Record::TickEnd { tick: 1, .. })).unwrap();
    recs.insert(at, Record::InferResults { tick: 1, results: vec![(a, 7, vec![0, 0, 0, 0, 42])] });
    let forged = forge(recs);
    match replay(&forged, 1, |_| {}) {
        Err(LockstepError::ReplayCorrupt { reason, .. }) => assert!(reason.contains("InferResults"), "{reason}"),
        other => panic!("a stray InferResults record verified: {other:?}"),
    }
}

/// The answers of a tick must be the answers to that tick's requests: one per request, to
/// the agent that asked, with its tag. An extra answer for an agent that never asked was
/// delivered (here: dead-lettered, the agent being killed), and with the tick hashes taken
/// from the replay itself the forged log verified complete.
#[test]
fn an_inference_answer_for_an_agent_that_did_not_ask_is_corrupt() {
    let mut rt = Runtime::new(config()).unwrap();
    let quiet = rt.spawn_bytes(echo()).unwrap();
    let asking = rt.spawn_bytes(asker()).unwrap();
    rt.tick().unwrap();
    rt.kill(quiet).unwrap();
    for _ in 0..3 {
        rt.tick().unwrap();
    }
    let recs = records(&rt.stop_recording().unwrap());
    let answers_of = |recs: &mut Vec<Record>| match recs.iter_mut().find(|r| matches!(r, Record::InferResults { tick: 2, .. })) {
        Some(Record::InferResults { results, .. }) => std::mem::take(results),
        _ => panic!("tick 2 asked"),
    };
    let put = |recs: &mut Vec<Record>, v: Vec<_>| {
        if let Some(Record::InferResults { results, .. }) = recs.iter_mut().find(|r| matches!(r, Record::InferResults { tick: 2, .. })) {
            *results = v;
        }
    };
    let mut forged = recs.clone();
    let mut answers = answers_of(&mut forged);
    assert_eq!(answers.iter().map(|r| r.0).collect::<Vec<_>>(), vec![asking]);
    // Last, so the asker's answer keeps its sequence number (and its digest stays right).
    answers.push((quiet, 99, vec![0, 0, 0, 0, 1, 2, 3]));
    put(&mut forged, answers);
    match replay(&forge(forged), 1, |_| {}) {
        Err(LockstepError::ReplayCorrupt { reason, .. }) => assert!(reason.contains("InferResults"), "{reason}"),
        other => panic!("an answer nobody asked for verified: {other:?}"),
    }
    // The agent that asked, with a tag it never asked with; and its answer left out.
    for change in [|a: &mut Vec<(u64, u32, Vec<u8>)>| a[0].1 = 8, |a: &mut Vec<(u64, u32, Vec<u8>)>| a.clear()] {
        let mut forged = recs.clone();
        let mut answers = answers_of(&mut forged);
        change(&mut answers);
        put(&mut forged, answers);
        match replay(&forge(forged), 1, |_| {}) {
            Err(LockstepError::ReplayCorrupt { reason, .. }) => assert!(reason.contains("InferResults"), "{reason}"),
            other => panic!("answers that do not match the requests: {other:?}"),
        }
    }
}

// ----- what the tick hash covers -----------------------------------------------------------------

/// The inbound ring may name any recipient: one that is not an agent is dead-lettered, and
/// the dead letter is in the tick hash. Id 0 (the host) was the exception: routed to the
/// host queue, hashed nowhere, so a replayed log whose Send records to 0 were rewritten (or
/// added) still verified complete.
#[test]
fn a_ring_message_to_the_host_id_is_in_the_tick_hash() {
    let hashes: Vec<Digest> = [None, Some(b"one".to_vec()), Some(b"two".to_vec())]
        .into_iter()
        .map(|extra| {
            let cap = 1 << 12;
            let inbound = OwnedRegion::new(cap);
            ring::init(&inbound.memory(), cap).unwrap();
            let mut rt = Runtime::new(config()).unwrap();
            let a = rt.spawn_bytes(echo()).unwrap();
            rt.attach_inbound_ring(inbound.memory()).unwrap();
            let mut p = ring::Producer::new(inbound.memory()).unwrap();
            p.try_push(ring::TYPE_MESSAGE, 1, 0, a, b"hi").unwrap();
            if let Some(payload) = extra {
                p.try_push(ring::TYPE_MESSAGE, 1, 0, 0, &payload).unwrap();
            }
            rt.tick().unwrap();
            rt.tick().unwrap();
            let log = rt.stop_recording().unwrap();
            let r = replay(&log, 1, |_| {}).unwrap();
            assert!(r.divergence.is_none() && r.complete);
            rt.state_hash()
        })
        .collect();
    assert_ne!(hashes[0], hashes[1], "a ring message to id 0 is not in the tick hash");
    assert_ne!(hashes[1], hashes[2], "the payload of a ring message to id 0 is not in the tick hash");
}

// ----- the recorder's cut at maxLogBytes ----------------------------------------------------------

/// Sends "init" to the host from `agent_init` and logs a line.
fn chatty_init() -> Vec<u8> {
    agent(
        "(call $log (i32.const 3) (i32.const 0) (i32.const 15)) (drop (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 15))) i32.const 0",
        OK,
        ECHO,
        // Shutdown sends, then faults.
        "(drop (call $send (i64.const 0) (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 4))) unreachable",
    )
}

/// A session touching every kind of record: modules, spawns whose init sends, host and ring
/// messages, inference, a kill in the same tick as a send to the killed agent, a shutdown that
/// sends and faults, and checkpoints. Returns the runtime, its log and each tick's hash.
fn rich_session(max_log_bytes: usize) -> (Runtime, Vec<u8>, Vec<Digest>, Vec<Event>) {
    let cap = 1 << 12;
    let inbound = OwnedRegion::new(cap);
    ring::init(&inbound.memory(), cap).unwrap();
    let mut rt = Runtime::new(RuntimeConfig { checkpoint_interval_ticks: 2, max_log_bytes, ..config() }).unwrap();
    rt.attach_inbound_ring(inbound.memory()).unwrap();
    let mut p = ring::Producer::new(inbound.memory()).unwrap();
    let mut hashes = Vec::new();
    let mut events = Vec::new();
    let a = rt.spawn_bytes(chatty_init()).unwrap();
    let b = rt.spawn_bytes(asker()).unwrap();
    for t in 0..6u64 {
        rt.send(a, 1, 0, vec![t as u8; 100]).unwrap();
        p.try_push(ring::TYPE_MESSAGE, 3, 0, b, &[t as u8; 50]).unwrap();
        match t {
            1 => {
                let c = rt.spawn_bytes(echo()).unwrap();
                rt.send(c, 9, 0, vec![1; 10]).unwrap();
                rt.kill(c).unwrap();
            }
            3 => rt.shutdown(a).unwrap(),
            4 => {
                rt.checkpoint();
            }
            _ => {}
        }
        hashes.push(rt.tick().unwrap().hash);
        events.extend(rt.drain_events());
    }
    let log = rt.stop_recording().unwrap();
    (rt, log, hashes, events)
}

/// Past `max_log_bytes` the log is cut back to the last complete tick and replays as a clean
/// prefix: wherever the cut falls (in a Module or Spawn record, in what an init sent, at a
/// TickEnd, at a checkpoint, in an InferResults record), the replay verifies every tick the
/// log kept, with the live hashes, and never claims to be complete.
#[test]
fn a_log_cut_at_any_record_replays_as_a_clean_prefix() {
    let (_, full, hashes, _) = rich_session(usize::MAX);
    let r = replay(&full, 1, |_| {}).unwrap();
    assert!(r.divergence.is_none() && r.complete && r.checkpoints_verified >= 3, "{r:?}");
    let mut ends = Vec::new();
    let mut reader = LogReader::new(&full).unwrap();
    while reader.next_record().unwrap().is_some() {
        ends.push(reader.offset() as usize);
    }
    let end_record = *ends.last().unwrap() - ends[ends.len() - 2];
    let mut limits: Vec<usize> = ends.iter().flat_map(|&e| [e - 1, e, e + 1]).filter(|&l| l >= ends[0]).collect();
    limits.sort_unstable();
    limits.dedup();
    for limit in limits {
        let (_, log, _, events) = rich_session(limit);
        let cut = log.len() < full.len() - end_record;
        let r = replay(&log, 1, |_| {}).unwrap_or_else(|e| panic!("maxLogBytes {limit}: {e}"));
        assert!(r.divergence.is_none(), "maxLogBytes {limit}: {r:?}");
        assert_eq!(r.complete, !cut, "maxLogBytes {limit}: {r:?}");
        // The End record stop_recording seals an uncut log with comes on top of the limit.
        assert!(log.len() <= limit + if cut { 0 } else { end_record }, "maxLogBytes {limit}: the log holds {} bytes", log.len());
        if r.ticks_verified > 0 {
            assert_eq!(r.final_hash, hashes[r.ticks_verified as usize - 1], "maxLogBytes {limit}");
        }
        let stopped = events.iter().filter(|e| matches!(e, Event::RecordingStopped { .. })).count();
        assert_eq!(stopped, cut as usize, "maxLogBytes {limit}: one recording_stopped event per cut");
    }
}

/// A maxLogBytes too small for even the header and the Config record left an empty log (and
/// no `recording_stopped` event): `replay_log()` handed back 0 bytes, which no replay reads.
/// The runtime must refuse such a limit, or keep a log that replays.
#[test]
fn a_max_log_bytes_below_the_config_record_is_refused_or_replays() {
    for max_log_bytes in [0, 1, 16, 40] {
        match Runtime::new(RuntimeConfig { max_log_bytes, ..config() }) {
            Err(e) => assert_eq!(e.code(), "E_INVALID_CONFIG", "{e}"),
            Ok(mut rt) => {
                rt.spawn_bytes(echo()).unwrap();
                rt.tick().unwrap();
                let log = rt.replay_log().unwrap();
                let r = replay(&log, 1, |_| {});
                assert!(r.is_ok(), "maxLogBytes {max_log_bytes}: the log is {} bytes: {r:?}", log.len());
            }
        }
    }
}

// ----- the outbound ring ----------------------------------------------------------------------

/// What the outbound ring holds now: (record type, agent, payload).
fn drain_ring(c: &mut ring::Consumer) -> Vec<(u16, u64, Vec<u8>)> {
    let mut v = Vec::new();
    c.drain(usize::MAX, |r| {
        v.push((r.kind_of_record, r.agent, r.payload));
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    v
}

/// Event copies are JSON, and JSON escapes a control character as six: a 1,024-byte log line
/// of them is a 6 KiB copy, a 4,096-byte panic message a 24 KiB one. A copy that could never
/// fit the ring broke it (`TooLarge` → `ring_error`, the producer dropped): any agent, with no
/// capability at all, could stop a small outbound ring for good by logging or panicking.
/// A copy is only a copy (the event stays in the event queue): one that cannot fit is
/// dropped and counted like one that finds the backlog full.
#[test]
fn an_event_copy_too_large_for_the_outbound_ring_does_not_break_it() {
    let cap = 1 << 12;
    let outbound = OwnedRegion::new(cap);
    ring::init(&outbound.memory(), cap).unwrap();
    let mut rt = Runtime::new(RuntimeConfig { record: false, ..config() }).unwrap();
    rt.attach_outbound_ring(outbound.memory()).unwrap();
    let mut consumer = ring::Consumer::new(outbound.memory(), 1 << 16).unwrap();
    // Logs 1,024 bytes of \x01 at its first step, replies to every message after.
    let noisy = agent(
        "(memory.fill (i32.const 2048) (i32.const 1) (i32.const 1024)) i32.const 0",
        "(if (i64.eqz (i64.load offset=8 (local.get $ctx))) (then (call $log (i32.const 3) (i32.const 2048) (i32.const 1024)))) i32.const 0",
        ECHO,
        OK,
    );
    let a = rt.spawn_bytes(noisy).unwrap();
    rt.tick().unwrap();
    let events = rt.drain_events();
    assert!(events.iter().any(|e| matches!(e, Event::Log { text, .. } if text.len() == 1024)), "the line is in the event queue");
    let broken: Vec<_> = events.iter().filter(|e| matches!(e, Event::RingError { .. })).collect();
    assert!(broken.is_empty(), "an agent's log line broke the outbound ring: {broken:?}");
    assert_eq!(rt.dropped_totals().2, 1, "the copy that cannot fit is dropped and counted");
    assert!(drain_ring(&mut consumer).iter().any(|r| r.0 == ring::TYPE_TICK));
    // The ring still carries the agent's replies.
    rt.send(a, 5, 0, b"ping".to_vec()).unwrap();
    rt.tick().unwrap();
    let got = drain_ring(&mut consumer);
    assert!(got.iter().any(|r| r.0 == ring::TYPE_MESSAGE && r.1 == a && r.2 == b"ping"), "{got:?}");
}

/// The event saying recording stopped, when the cut falls on a tick's TickEnd or checkpoint,
/// was pushed after that tick's copies went to the outbound ring, and the next tick copies
/// only its own: a JS side reading events from the ring never learned the log stopped.
#[test]
fn the_recording_stopped_event_of_a_cut_at_a_tick_end_reaches_the_outbound_ring() {
    // The log's size after the spawn, then after each tick (Send and TickEnd records).
    let sizes = {
        let mut rt = Runtime::new(config()).unwrap();
        let a = rt.spawn_bytes(echo()).unwrap();
        let mut sizes = vec![rt.replay_log().unwrap().len()];
        for _ in 0..3 {
            rt.send(a, 1, 0, vec![7; 200]).unwrap();
            rt.tick().unwrap();
            sizes.push(rt.replay_log().unwrap().len());
        }
        sizes
    };
    // One byte short of holding tick 1's TickEnd (the End record of a snapshot aside).
    let end = lockstep_core::replay_log::END_RECORD_BYTES;
    let limit = sizes[2] - end - 1;
    let cap = 1 << 16;
    let outbound = OwnedRegion::new(cap);
    ring::init(&outbound.memory(), cap).unwrap();
    let mut rt = Runtime::new(RuntimeConfig { max_log_bytes: limit, ..config() }).unwrap();
    rt.attach_outbound_ring(outbound.memory()).unwrap();
    let mut consumer = ring::Consumer::new(outbound.memory(), 1 << 16).unwrap();
    let a = rt.spawn_bytes(echo()).unwrap();
    let mut copies = Vec::new();
    for _ in 0..3 {
        rt.send(a, 1, 0, vec![7; 200]).unwrap();
        rt.tick().unwrap();
        copies.extend(drain_ring(&mut consumer).into_iter().filter(|r| r.0 == ring::TYPE_EVENT).map(|r| String::from_utf8(r.2).unwrap()));
    }
    assert!(rt.drain_events().iter().any(|e| matches!(e, Event::RecordingStopped { .. })), "the log was cut");
    assert!(copies.iter().any(|c| c.contains("\"recording_stopped\"")), "no recording_stopped copy in the ring: {copies:?}");
}

// ----- every input is in the tick hash ------------------------------------------------------------

/// One input changed: the script `script` runs against a recording runtime with an inbound
/// ring attached; returns the state hash after its ticks, having checked that the log
/// replays exactly to it.
fn session_hash(script: impl Fn(&mut Runtime, &mut ring::Producer, &[Digest])) -> Digest {
    let cap = 1 << 12;
    let inbound = OwnedRegion::new(cap);
    ring::init(&inbound.memory(), cap).unwrap();
    let mut rt = Runtime::new(config()).unwrap();
    rt.attach_inbound_ring(inbound.memory()).unwrap();
    let mut p = ring::Producer::new(inbound.memory()).unwrap();
    let modules = [echo(), chatty_init(), asker(), agent(OK, OK, ECHO, "i32.const 0 drop i32.const 0")];
    let hashes: Vec<Digest> = modules.into_iter().map(|m| rt.load_module(m).unwrap()).collect();
    script(&mut rt, &mut p, &hashes);
    let log = rt.stop_recording().unwrap();
    let r = replay(&log, 1, |_| {}).unwrap();
    assert!(r.divergence.is_none() && r.complete, "{r:?}");
    assert_eq!(r.final_hash, rt.state_hash());
    rt.state_hash()
}

/// Two sessions that differ in one input (of any kind: spawn, kill, shutdown, send, ring,
/// what init and shutdown send, inference) end with different tick hashes.
#[test]
fn sessions_that_differ_in_one_input_differ_in_their_tick_hash() {
    type Script = Box<dyn Fn(&mut Runtime, &mut ring::Producer, &[Digest])>;
    // The base: agents 1 (echo) and 2 (init sends, shutdown sends then faults), a send, a ring
    // message, two ticks, a shutdown of 2, two ticks.
    let variant = |spawn: (usize, i32), send: (u64, u32, i32, &'static [u8]), ring_to: Option<(u64, &'static [u8])>, stop: &'static str| -> Script {
        Box::new(move |rt: &mut Runtime, p: &mut ring::Producer, m: &[Digest]| {
            rt.spawn(m[0]).unwrap();
            rt.spawn_with_priority(m[spawn.0], spawn.1).unwrap();
            rt.send(send.0, send.1, send.2, send.3.to_vec()).unwrap();
            p.try_push(ring::TYPE_MESSAGE, 4, 0, 1, b"ring").unwrap();
            if let Some((to, payload)) = ring_to {
                p.try_push(ring::TYPE_MESSAGE, 4, 0, to, payload).unwrap();
            }
            rt.tick().unwrap();
            rt.tick().unwrap();
            match stop {
                "shutdown" => rt.shutdown(2).unwrap(),
                "kill" => rt.kill(2).unwrap(),
                "shutdown 1" => rt.shutdown(1).unwrap(),
                _ => {}
            }
            rt.tick().unwrap();
            rt.tick().unwrap();
        })
    };
    let base: &'static [u8] = b"abc";
    let scripts: Vec<(&str, Script)> = vec![
        ("base", variant((1, 0), (1, 1, 0, base), None, "shutdown")),
        ("another module for agent 2", variant((3, 0), (1, 1, 0, base), None, "shutdown")),
        ("another spawn priority", variant((1, 5), (1, 1, 0, base), None, "shutdown")),
        ("a send to agent 2", variant((1, 0), (2, 1, 0, base), None, "shutdown")),
        ("another send kind", variant((1, 0), (1, 2, 0, base), None, "shutdown")),
        ("another send priority", variant((1, 0), (1, 1, -1, base), None, "shutdown")),
        ("another send payload", variant((1, 0), (1, 1, 0, b"abd"), None, "shutdown")),
        ("a longer send payload", variant((1, 0), (1, 1, 0, b"abc\0"), None, "shutdown")),
        ("a ring message to agent 2", variant((1, 0), (1, 1, 0, base), Some((2, b"x")), "shutdown")),
        ("a ring message to agent 99", variant((1, 0), (1, 1, 0, base), Some((99, b"x")), "shutdown")),
        ("a ring message to agent 0", variant((1, 0), (1, 1, 0, base), Some((0, b"x")), "shutdown")),
        ("another ring message to agent 0", variant((1, 0), (1, 1, 0, base), Some((0, b"y")), "shutdown")),
        ("a ring message to u64::MAX", variant((1, 0), (1, 1, 0, base), Some((u64::MAX, b"x")), "shutdown")),
        ("kill instead of shutdown", variant((1, 0), (1, 1, 0, base), None, "kill")),
        ("no shutdown", variant((1, 0), (1, 1, 0, base), None, "")),
        ("shutdown of the other agent", variant((1, 0), (1, 1, 0, base), None, "shutdown 1")),
        ("an inference request", variant((2, 0), (1, 1, 0, base), None, "shutdown")),
    ];
    let hashes: Vec<(&str, Digest)> = scripts.iter().map(|(name, s)| (*name, session_hash(s))).collect();
    for (i, (a, ha)) in hashes.iter().enumerate() {
        for (b, hb) in &hashes[i + 1..] {
            assert_ne!(ha, hb, "`{a}` and `{b}` end with the same tick hash");
        }
    }
}

// ----- Send records ---------------------------------------------------------------------------

/// A Send record may name an id that is no agent (the ring's messages may), and routing
/// dead-letters it. But ring input is drained at the start of a tick, after every spawn of
/// that tick, and `send` refuses an unknown id: no runtime writes a Send to an id that a
/// later Spawn of the same tick then creates. Replayed, that message was delivered to the
/// new agent instead of being dead-lettered.
#[test]
fn a_send_to_an_agent_spawned_after_it_in_the_same_tick_is_corrupt() {
    let mut rt = Runtime::new(config()).unwrap();
    let a = rt.spawn_bytes(echo()).unwrap();
    rt.tick().unwrap();
    let b = rt.spawn_bytes(echo()).unwrap();
    rt.send(b, 1, 0, b"hi".to_vec()).unwrap();
    rt.tick().unwrap();
    let mut recs = records(&rt.stop_recording().unwrap());
    // Move the Send to b before b's Spawn (same tick).
    let send = recs.iter().position(|r| matches!(r, Record::Send { to, .. } if *to == b)).unwrap();
    let spawn = recs.iter().position(|r| matches!(r, Record::Spawn { agent, .. } if *agent == b)).unwrap();
    let moved = recs.remove(send);
    recs.insert(spawn, moved);
    recs.retain(|r| !matches!(r, Record::End { .. }));
    let mut log = Vec::new();
    write_header(&mut log);
    let mut spawn_offset = 0;
    for (i, r) in recs.iter().enumerate() {
        if i == spawn + 1 {
            spawn_offset = log.len() as u64;
        }
        r.encode(&mut log);
    }
    assert!(a < b);
    match replay(&log, 1, |_| {}) {
        Err(LockstepError::ReplayCorrupt { offset, reason }) => {
            assert_eq!(offset, spawn_offset, "{reason}");
            assert!(reason.contains("Spawn"), "{reason}");
        }
        other => panic!("a message to an agent not yet spawned was replayed: {other:?}"),
    }
}

// ----- bounded inputs -----------------------------------------------------------------------------

/// What `agent_shutdown` sends waits in the same bounded queue as host messages and what init
/// sent, until the next tick. Spawn refuses when that queue is full; shutdown did not check:
/// shutting down N agents without a tick queued N shutdown budgets (4,096 messages, 1 MiB
/// each), so 16,384 hostile agents shut down at the end of a session queued 16 GiB, past the
/// queue's 256 MiB / 1,048,576-message limit. Back-pressure like spawn: tick, then shut down.
#[test]
fn what_agent_shutdown_sends_is_bounded_by_the_pending_queue() {
    // Sends 4,096 empty messages to the host from agent_shutdown.
    let flood = agent(
        OK,
        OK,
        OK,
        "(local $i i32) (block $done (loop $more
            (br_if $done (i32.ge_u (local.get $i) (i32.const 4096)))
            (drop (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $more))) i32.const 0",
    );
    let mut rt = Runtime::new(RuntimeConfig { max_agents: 300, record: false, ..config() }).unwrap();
    let m = rt.load_module(flood).unwrap();
    let ids: Vec<u64> = (0..300).map(|_| rt.spawn(m).unwrap()).collect();
    let bound = lockstep_core::limits::MAX_PENDING_MESSAGES / 4096 + 1;
    let mut done = 0;
    let refused = ids.iter().find_map(|&id| match rt.shutdown(id) {
        Ok(()) => {
            done += 1;
            None
        }
        Err(e) => Some(e),
    });
    let Some(refused) = refused else {
        panic!("{done} shutdowns queued {} messages for the next tick (limit {})", done * 4096, lockstep_core::limits::MAX_PENDING_MESSAGES)
    };
    assert_eq!(refused.code(), "E_QUEUE_FULL", "{refused}");
    assert!(done <= bound, "{done} shutdowns before the refusal");
    // Refused before agent_shutdown ran: the agent is still running, and a tick makes room.
    let next = ids[done];
    assert!(rt.inspect(next).unwrap().state.is_running());
    rt.tick().unwrap();
    rt.shutdown(next).unwrap();
}

// ----- the public API with odd arguments ------------------------------------------------------------

/// Extreme settings an embedder can pass through `RuntimeConfig` (the JS layer bounds them,
/// Rust embedders get no such check): a runtime is refused with E_INVALID_CONFIG or runs,
/// never panics, and what it runs replays.
#[test]
fn extreme_runtime_settings_are_refused_or_run_never_panic() {
    let variants: Vec<(&str, RuntimeConfig)> = vec![
        ("deadline_ms u64::MAX", RuntimeConfig { deadline_ms: u64::MAX, ..config() }),
        ("fuel_per_call u64::MAX", RuntimeConfig { fuel_per_call: u64::MAX, ..config() }),
        ("fuel_per_call i64::MAX + 1", RuntimeConfig { fuel_per_call: i64::MAX as u64 + 1, ..config() }),
        ("checkpoint every u64::MAX ticks", RuntimeConfig { checkpoint_interval_ticks: u64::MAX, ..config() }),
        ("checkpoint every tick", RuntimeConfig { checkpoint_interval_ticks: 1, ..config() }),
        ("max_events 0", RuntimeConfig { max_events: 0, ..config() }),
        ("max_events usize::MAX", RuntimeConfig { max_events: usize::MAX, ..config() }),
        ("seed u64::MAX", RuntimeConfig { seed: u64::MAX, ..config() }),
        ("max_agents u32::MAX", RuntimeConfig { max_agents: u32::MAX, ..config() }),
        ("memory 4 GiB", RuntimeConfig { memory_limit_bytes: 4 << 30, max_agents: 2, ..config() }),
        ("memory 4 GiB + 1", RuntimeConfig { memory_limit_bytes: (4 << 30) + 1, ..config() }),
        ("workers 0", RuntimeConfig { workers: 0, ..config() }),
        ("workers 257", RuntimeConfig { workers: 257, ..config() }),
    ];
    for (what, cfg) in variants {
        let result = std::panic::catch_unwind(|| match Runtime::new(cfg) {
            Err(e) => assert_eq!(e.code(), "E_INVALID_CONFIG", "{what}: {e}"),
            Ok(mut rt) => {
                // A spinner (stopped by fuel; with unbounded fuel, the deadline would take 1 s).
                let spin = if what.starts_with("fuel") { OK } else { "(loop $l (br $l)) i32.const 0" };
                let a = rt.spawn_bytes(agent(OK, spin, ECHO, OK)).unwrap();
                let b = rt.spawn_bytes(echo()).unwrap();
                rt.send(b, 1, 0, vec![1; 10]).unwrap();
                rt.tick().unwrap();
                rt.tick().unwrap();
                assert_eq!(rt.inspect(a).unwrap().state.is_running(), what.starts_with("fuel"), "{what}: the spinner was stopped");
                let log = rt.stop_recording().unwrap();
                let r = replay(&log, 1, |_| {}).unwrap();
                assert!(r.divergence.is_none() && r.complete, "{what}: {r:?}");
            }
        });
        assert!(result.is_ok(), "{what}: panicked");
    }
}

/// `OwnedRegion::memory()` hands out any number of `RingMemory` views, which are `Send`, so
/// safe code can run two producers on one region from two threads. The byte copies used to be
/// plain `copy_nonoverlapping`: concurrent non-atomic writes to the same bytes, a data race
/// (undefined behaviour) from safe code (red team 10). Every access to a region is now a
/// relaxed atomic word (ring.rs, `RingMemory`), so misuse yields garbage that the consumer's
/// checks catch, never UB. This drives the misuse hard: the consumer sees valid records or a
/// `Corrupt` error, never a panic or a read out of bounds.
#[test]
fn one_owned_region_fed_by_two_producers_from_safe_code_is_garbage_never_ub() {
    let cap = 1 << 12;
    let region = OwnedRegion::new(cap);
    ring::init(&region.memory(), cap).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producers: Vec<_> = (0..2u8)
        .map(|p| {
            let mut producer = ring::Producer::new(region.memory()).unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let payload = vec![p; 1 + (n as usize * 7) % 200];
                    let _ = producer.try_push(ring::TYPE_MESSAGE, n, 0, 1, &payload);
                    n = n.wrapping_add(1);
                }
            })
        })
        .collect();
    let mut consumer = ring::Consumer::new(region.memory(), 1 << 16).unwrap();
    let (mut records, mut broken) = (0u64, false);
    // Until enough records went through (or the ring broke); a time bound only so a bug
    // cannot hang the test.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while records < 20_000 && std::time::Instant::now() < give_up {
        std::thread::yield_now();
        let result = consumer.drain(1 << 10, |r| {
            assert!(r.payload.len() <= 1 << 16, "a record past the consumer's payload limit was handed out");
            records += 1;
            std::ops::ControlFlow::Continue(())
        });
        if result.is_err() || consumer.broken().is_some() {
            broken = true;
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in producers {
        p.join().expect("a producer thread panicked");
    }
    assert!(records > 0 || broken, "the consumer neither read records nor noticed the corruption");
}

// ----- replay_log() snapshots -----------------------------------------------------------------------

/// A snapshot taken after any call (a load, a spawn whose init sends, a send, a kill between
/// ticks, a shutdown that faults, a model registration, a checkpoint, a tick) replays
/// complete to the live hash at that point; the live log goes on unchanged.
#[test]
fn a_replay_log_snapshot_after_any_call_replays_complete() {
    let mut rt = Runtime::new(RuntimeConfig { checkpoint_interval_ticks: 3, ..config() }).unwrap();
    let mut snapshots = Vec::new();
    let mut snap = |rt: &Runtime, what: &str| snapshots.push((what.to_string(), rt.replay_log().unwrap(), rt.state_hash(), rt.current_tick()));
    snap(&rt, "empty");
    let chatty = rt.load_module(chatty_init()).unwrap();
    snap(&rt, "load");
    let a = rt.spawn(chatty).unwrap();
    snap(&rt, "spawn");
    let b = rt.spawn_bytes(asker()).unwrap();
    rt.send(a, 1, 0, vec![1; 40]).unwrap();
    snap(&rt, "send");
    rt.tick().unwrap();
    snap(&rt, "tick");
    rt.register_agent_model(&"ab".repeat(32)).unwrap_err();
    snap(&rt, "refused model");
    let c = rt.spawn_bytes(echo()).unwrap();
    rt.send(c, 2, 0, vec![2; 5]).unwrap();
    rt.kill(c).unwrap();
    snap(&rt, "kill after a send");
    rt.tick().unwrap();
    rt.shutdown(a).unwrap();
    snap(&rt, "shutdown that faults");
    rt.checkpoint();
    snap(&rt, "checkpoint");
    rt.tick().unwrap();
    rt.tick().unwrap();
    snap(&rt, "ticks");
    rt.kill(b).unwrap();
    snap(&rt, "last kill");
    let live = rt.stop_recording().unwrap();
    for (what, log, hash, ticks) in snapshots {
        let r = replay(&log, 1, |_| {}).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(r.divergence.is_none() && r.complete, "{what}: {r:?}");
        assert_eq!((r.final_hash, r.ticks_verified), (hash, ticks), "{what}");
    }
    let r = replay(&live, 1, |_| {}).unwrap();
    assert!(r.divergence.is_none() && r.complete, "{r:?}");
}
