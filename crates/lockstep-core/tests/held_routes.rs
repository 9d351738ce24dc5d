//! Routed messages held in their senders' outboxes until their recipients' turns
//! (`held_routes.rs`, issue 13): whatever a session does, it must tick, hash, deliver,
//! dead-letter and snapshot exactly as one whose routing copies every message into the inboxes
//! (one worker: routing in order, which never holds).
mod common;
use common::*;
use lockstep_core::{AgentId, DeadLetterReason, Digest, Runtime, RuntimeConfig, Trigger};

/// A version-`version` `folding_agent` (kind 99 traps it mid-batch) that every step reports
/// its fold to the host and sends
/// `per_step` messages to `((id * 7 + i * 13 + tick) % modulo) + 1`, of `(i * 5 + id) % 61`
/// payload bytes (its id, tick and index first), kind 1, priority 0, or `i % 3` when its id
/// is a multiple of `varied_every` (0: never); and to agent 13 at tick 4, index 5, kind 99;
/// and, when `hub` > 0 and its id is a multiple of 8, its first message of every step to
/// agent `hub` (a run short enough to be held).
fn folding_sprayer(version: u32, per_step: u32, modulo: u64, varied_every: u64, hub: u64) -> Vec<u8> {
    let varied = if varied_every > 0 { format!("(i64.eqz (i64.rem_u (local.get $id) (i64.const {varied_every})))") } else { "(i32.const 0)".to_string() };
    let step = format!(
        r#"(func (export "agent_step") (param $ctx i32) (result i32)
    (local $i i32) (local $to i64) (local $id i64) (local $tick i64) (local $kind i32) (local $prio i32)
    (local.set $tick (i64.load offset=8 (local.get $ctx)))
    (local.set $id (i64.load offset=16 (local.get $ctx)))
    (i64.store (i32.const 200) (global.get $sum))
    (i64.store (i32.const 208) (global.get $count))
    (drop (call $send (i64.const 0) (i32.const 7) (i32.const 0) (i32.const 200) (i32.const 16)))
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (i32.const {per_step})))
      (local.set $to (i64.add (i64.rem_u (i64.add (i64.add (i64.mul (local.get $id) (i64.const 7)) (i64.mul (i64.extend_i32_u (local.get $i)) (i64.const 13))) (local.get $tick)) (i64.const {modulo})) (i64.const 1)))
      (local.set $kind (i32.const 1))
      (if (i32.and (i32.and (i32.eqz (local.get $i)) (i64.ne (i64.const {hub}) (i64.const 0))) (i64.eqz (i64.rem_u (local.get $id) (i64.const 8))))
        (then (local.set $to (i64.const {hub}))))
      (if (i32.and (i64.eq (local.get $tick) (i64.const 4)) (i32.eq (local.get $i) (i32.const 5)))
        (then (local.set $to (i64.const 13)) (local.set $kind (i32.const 99))))
      (local.set $prio (i32.const 0))
      (if {varied} (then (local.set $prio (i32.rem_u (local.get $i) (i32.const 3)))))
      (i64.store (i32.const 0) (local.get $id))
      (i64.store (i32.const 8) (local.get $tick))
      (i32.store (i32.const 16) (local.get $i))
      (drop (call $send (local.get $to) (local.get $kind) (local.get $prio) (i32.const 0)
        (i32.rem_u (i32.add (i32.mul (local.get $i) (i32.const 5)) (i32.wrap_i64 (local.get $id))) (i32.const 61))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    i32.const 0)"#
    );
    folding_agent_stepping(version, 4096, 3, &step)
}

/// What a session did, to compare: per tick (hash, delivered, routed, dead letters), what the
/// host was handed, the dead letters, each agent's inbox depth and counters as `inspect` and
/// the agent table say after the last tick, and the deep hash.
#[derive(Debug, PartialEq)]
struct Outcome {
    ticks: Vec<(Digest, u64, u64, u64)>,
    host: Vec<(AgentId, u64, Vec<u8>)>,
    dead: Vec<(DeadLetterReason, AgentId, AgentId, u64, Vec<u8>)>,
    inboxes: Vec<(usize, u64, u64)>,
    table: Vec<u8>,
    deep: Digest,
}

fn runtime_with(workers: usize, record: bool) -> Runtime {
    Runtime::new(RuntimeConfig { workers, max_agents: 1_024, record, ..RuntimeConfig::development() }).unwrap()
}

/// 640 agents that send 16 messages a step (10,240 a tick: routed in parallel on the pool)
/// to each other: most ABI 2, some ABI 1, some time-sliced, some with mixed priorities, one
/// that traps in the middle of a batch.
fn spawn_mix(rt: &mut Runtime, sliced: bool) -> Vec<AgentId> {
    let v2 = rt.load_module(folding_sprayer(2, 16, 640, 0, 0)).unwrap();
    let v1 = rt.load_module(folding_sprayer(1, 16, 640, 0, 0)).unwrap();
    let mixed = rt.load_module(folding_sprayer(2, 16, 640, 5, 0)).unwrap();
    let mut ids = Vec::new();
    for k in 0..640u64 {
        let id = match k % 10 {
            3 => rt.spawn(v1).unwrap(),
            4 => rt.spawn(mixed).unwrap(),
            _ => rt.spawn(v2).unwrap(),
        };
        if sliced && k % 37 == 8 {
            rt.set_fuel_per_tick(id, 9_000).unwrap(); // suspended now and then mid-turn
        }
        ids.push(id);
    }
    ids
}

fn outcome(rt: &mut Runtime, ids: &[AgentId], ticks: Vec<(Digest, u64, u64, u64)>) -> Outcome {
    let host = rt.drain_host_messages().into_iter().map(|m| (m.from, m.seq, m.payload)).collect();
    let dead = rt.drain_dead_letters().into_iter().map(|d| (d.reason, d.message.from, d.message.to, d.message.seq, d.message.payload)).collect();
    // Read while the last tick's routes are held (these read without ending the holding).
    let inboxes = ids
        .iter()
        .map(|&id| {
            let i = rt.inspect(id).unwrap();
            (i.inbox_len, i.messages_received, i.messages_sent)
        })
        .collect();
    let table = rt.agent_table().rows;
    Outcome { ticks, host, dead, inboxes, table, deep: rt.deep_hash().hash }
}

fn tick(rt: &mut Runtime, ticks: &mut Vec<(Digest, u64, u64, u64)>) {
    let r = rt.tick().unwrap();
    ticks.push((r.hash, r.messages_delivered, r.messages_routed, r.dead_letters));
}

#[test]
fn routed_messages_held_for_their_recipients_turns_tick_like_copied_ones() {
    let run = |workers: usize, record: bool| {
        let mut rt = runtime_with(workers, record);
        let ids = spawn_mix(&mut rt, true);
        let mut ticks = Vec::new();
        for _ in 0..7 {
            tick(&mut rt, &mut ticks);
        }
        outcome(&mut rt, &ids, ticks)
    };
    let copied = run(1, false);
    assert!(copied.ticks.iter().skip(1).all(|t| t.2 >= 10_000 && t.1 >= 9_000), "the traffic is routed and delivered: {:?}", copied.ticks);
    assert!(copied.dead.iter().any(|d| d.0 == DeadLetterReason::RecipientFaultedDuringDelivery), "a fault in the middle of a batch");
    assert!(copied.inboxes.iter().any(|i| i.0 > 0), "messages wait in inboxes after the last tick");
    for (workers, record) in [(2, false), (4, false), (2, true)] {
        let held = run(workers, record);
        assert_eq!(held.ticks, copied.ticks, "tick hashes, deliveries, routed, dead letters ({workers} workers, record {record})");
        assert!(held.host == copied.host, "what the host was handed ({workers} workers)");
        assert!(held.dead == copied.dead, "dead letters ({workers} workers)");
        assert!(held.inboxes == copied.inboxes, "inbox depths and counters as inspect says them ({workers} workers)");
        assert!(held.table == copied.table, "the agent table ({workers} workers)");
        assert_eq!(held.deep, copied.deep, "memory ({workers} workers)");
    }
}

/// Every method that reads or changes an inbox between ticks sees it whole: the same calls
/// after a tick whose routes are held, and after the same tick routed in order, do the same.
#[test]
fn every_method_between_ticks_sees_whole_inboxes_while_routes_are_held() {
    let run = |workers: usize| {
        let mut rt = runtime_with(workers, false);
        // (No time slicing: a suspended call cannot be in the snapshot below.)
        let ids = spawn_mix(&mut rt, false);
        let mut ticks = Vec::new();
        let mut seen = Vec::new();
        for t in 0..12u64 {
            tick(&mut rt, &mut ticks);
            let a = ids[(t as usize * 53) % ids.len()];
            match t {
                1 => rt.kill(a).unwrap(),
                2 => rt.shutdown(a).unwrap(),
                3 => {
                    for k in 0..5u8 {
                        rt.send(a, 3, i32::from(k) - 2, vec![k; 9]).unwrap();
                    }
                }
                4 => seen.push(format!("{:?}", rt.deep_hash().hash)),
                5 => {
                    // A snapshot restored elsewhere goes on alike.
                    let bytes = rt.snapshot().unwrap();
                    let mut other = Runtime::restore(&bytes, lockstep_core::RestoreOptions::development()).unwrap();
                    let r = other.tick().unwrap();
                    seen.push(format!("{:?} {:?}", r.hash, other.deep_hash().hash));
                }
                6 => rt.set_workers(Some(1)).unwrap(),
                7 => rt.set_workers(None).unwrap(),
                8 => rt.set_fuel_per_tick(a, 9_000).unwrap(),
                9 => {
                    let id = rt.spawn(rt.inspect(ids[0]).unwrap().module).unwrap();
                    rt.send(id, 1, 0, vec![1, 2, 3]).unwrap();
                }
                10 => {
                    // Edges (then the routed phase is no longer the last: nothing is held).
                    rt.connect(ids[1], a).unwrap();
                    rt.connect(ids[2], a).unwrap();
                    rt.set_trigger(a, Trigger::All).unwrap();
                }
                11 => {
                    rt.disconnect(ids[1], a).unwrap();
                }
                _ => {}
            }
            seen.push(format!("{:?}", rt.inspect(a).map(|i| (i.inbox_len, i.messages_received, i.state))));
        }
        (outcome(&mut rt, &ids, ticks), seen)
    };
    let copied = run(1);
    let held = run(2);
    assert_eq!(held.0.ticks, copied.0.ticks, "tick hashes");
    assert!(held.0 == copied.0, "dead letters, inboxes, table, memory");
    assert_eq!(held.1, copied.1, "what the methods saw between ticks");
}

/// An inbox at its limit refuses what routing in order would refuse, whether the run routed
/// to it finds host messages already there (a hub whose receive never ends: a time-sliced
/// call suspended for good, its inbox growing) or host messages arrive after the run was held
/// (a recipient sent a full inbox's worth between ticks).
#[test]
fn a_full_inbox_refuses_what_copying_would_while_routes_are_held() {
    let limit = lockstep_core::abi::MAX_INBOX_MESSAGES;
    let run = |workers: usize| {
        let mut rt = runtime_with(workers, false);
        // Agent 1: the hub, suspended in its first receive for ever.
        let hub = rt
            .load_module(wat_agent(
                2,
                r#"(func (export "agent_step") (param i32) (result i32) i32.const 0)
                   (func (export "agent_receive_batch") (param i32 i32) (result i32) (loop $l (br $l)) i32.const 0)"#,
            ))
            .unwrap();
        let hub = rt.spawn(hub).unwrap();
        rt.set_fuel_per_tick(hub, 5_000).unwrap();
        let sprayer = rt.load_module(folding_sprayer(2, 16, 640, 0, hub)).unwrap();
        let ids: Vec<AgentId> = (0..640).map(|_| rt.spawn(sprayer).unwrap()).collect();
        let mut ticks = Vec::new();
        tick(&mut rt, &mut ticks);
        // The hub's inbox near its limit (its suspended call took a batch out of it), then
        // to 30 short of it: the next routing refuses what is over.
        for k in 0..limit - 100 {
            rt.send(hub, 2, 0, (k as u32).to_le_bytes().to_vec()).unwrap();
        }
        tick(&mut rt, &mut ticks);
        let have = rt.inspect(hub).unwrap().inbox_len;
        for k in 0..limit - have - 30 {
            rt.send(hub, 2, 0, (k as u32).to_le_bytes().to_vec()).unwrap();
        }
        for _ in 0..3 {
            tick(&mut rt, &mut ticks);
        }
        // A recipient of held runs: a full inbox's worth of host messages after one.
        let r = ids[17];
        for k in 0..limit {
            rt.send(r, 2, 0, (k as u32).to_le_bytes().to_vec()).unwrap();
        }
        for _ in 0..3 {
            tick(&mut rt, &mut ticks);
        }
        let full = rt
            .drain_dead_letters()
            .into_iter()
            .filter(|d| d.reason == DeadLetterReason::RecipientInboxFull)
            .map(|d| (d.message.from, d.message.to, d.message.seq))
            .collect::<Vec<_>>();
        (ticks, full, rt.inspect(hub).unwrap().inbox_len, rt.inspect(r).unwrap().inbox_len, rt.deep_hash().hash)
    };
    let copied = run(1);
    assert!(copied.1.iter().any(|d| d.0 != 0 && d.1 == 1), "the hub refuses routed messages: {:?}", &copied.1[..copied.1.len().min(5)]);
    assert!(copied.1.iter().any(|d| d.0 == 0 && d.1 != 1), "the recipient refuses host messages");
    let held = run(2);
    assert_eq!(held.0, copied.0, "tick hashes, deliveries, routed, dead letters");
    assert!(held.1 == copied.1, "the same messages refused");
    assert_eq!((held.2, held.3, held.4), (copied.2, copied.3, copied.4), "inbox depths, memory");
}
