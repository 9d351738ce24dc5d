//! Red team of parallel routing (`scheduler::route_in_parallel`), of `settle` visiting only
//! the agents with news (`PhaseRun::busy`) and of the inbound ring routed straight into the
//! inboxes: whatever the worker count (1, 2, 3, 4, 7), the tick hashes, fuel, dead letters (in
//! order, with their reasons), host messages, events, `inspect()` counters, deep hashes and
//! `maxAgents` admission agree, and every log replays on another worker count.

mod common;
use common::*;
use lockstep_core::ring;
use lockstep_core::{replay, AgentId, Runtime, RuntimeConfig, Trigger};

const WORKERS: [usize; 4] = [2, 3, 4, 7];

/// Traps in `agent_step` at tick `t`, having sent nothing (an agent whose only news is its fault).
fn trap_in_step(t: u64) -> Vec<u8> {
    sender_agent(
        2,
        &format!(
            r#"(func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (if (i64.eq (i64.load offset=8 (local.get $ctx)) (i64.const {t})) (then unreachable))
    i32.const 0)"#
        ),
    )
}

/// Traps in its `n`th `agent_receive_batch` call (in delivery: the rest of its inbox is
/// dead-lettered as faulted during delivery).
fn trap_in_receive(n: i32) -> Vec<u8> {
    sender_agent(
        2,
        &format!(
            r#"(global $calls (mut i32) (i32.const 0))
  (func (export "agent_receive_batch") (param i32 i32) (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (if (i32.eq (global.get $calls) (i32.const {n})) (then unreachable))
    i32.const 0)
  (func (export "agent_step") (param i32) (result i32) i32.const 0)"#
        ),
    )
}

/// Spins in `agent_step` at tick `t` (fuel exhaustion), having sent nothing.
fn spin_in_step(t: u64) -> Vec<u8> {
    sender_agent(
        2,
        &format!(
            r#"(func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (if (i64.eq (i64.load offset=8 (local.get $ctx)) (i64.const {t})) (then (loop $l (br $l))))
    i32.const 0)"#
        ),
    )
}

/// Sends `k` messages to agent 1, then traps, at tick `t` (sends and a fault in one step).
fn send_then_trap(t: u64, k: u32) -> Vec<u8> {
    sender_agent(
        2,
        &format!(
            r#"(func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (local $i i32)
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (i32.const {k})))
      (drop (call $send (i64.const 1) (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (if (i64.eq (i64.load offset=8 (local.get $ctx)) (i64.const {t})) (then unreachable))
    i32.const 0)"#
        ),
    )
}

/// Everything a session shows that must not depend on the worker count.
#[derive(Debug, PartialEq)]
struct Outcome {
    hashes: Vec<String>,
    /// (fuel, routed, delivered, dead letters, faults, waiting, suspended) per tick.
    counts: Vec<(u64, u64, u64, u64, u32, u32, u32)>,
    dead: Vec<String>,
    host: Vec<String>,
    events: Vec<String>,
    infos: Vec<String>,
    deep: String,
    states: [u64; 5],
}

fn report_counts(r: &lockstep_core::TickReport) -> (u64, u64, u64, u64, u32, u32, u32) {
    (r.fuel, r.messages_routed, r.messages_delivered, r.dead_letters, r.faults, r.agents_waiting, r.agents_suspended)
}

/// Runs `ticks` ticks of the session `setup` builds, `between(rt, tick)` before each; returns
/// what it showed and its log.
fn play(workers: usize, max_agents: u32, ticks: u64, setup: &dyn Fn(&mut Runtime), between: &dyn Fn(&mut Runtime, u64)) -> (Outcome, Vec<u8>, Runtime) {
    let mut rt = Runtime::new(RuntimeConfig { workers, max_agents, fuel_per_call: 1_000_000, ..RuntimeConfig::development() }).unwrap();
    setup(&mut rt);
    let mut o = Outcome { hashes: vec![], counts: vec![], dead: vec![], host: vec![], events: vec![], infos: vec![], deep: String::new(), states: [0; 5] };
    for tick in 0..ticks {
        between(&mut rt, tick);
        let r = rt.tick().unwrap();
        o.hashes.push(r.hash.to_string());
        o.counts.push(report_counts(&r));
        o.dead.extend(rt.drain_dead_letters().iter().map(|d| format!("{d:?}")));
        o.host.extend(rt.drain_host_messages().iter().map(|m| format!("{m:?}")));
        o.events.extend(rt.drain_events().iter().map(|e| format!("{e:?}")));
    }
    o.infos = rt.agent_ids().into_iter().map(|id| format!("{:?}", rt.inspect(id).unwrap())).collect();
    o.deep = format!("{:?}", rt.checkpoint().hash);
    o.states = rt.agent_state_counts();
    let log = rt.replay_log().unwrap();
    (o, log, rt)
}

/// Plays the session on 1 worker and on each of `WORKERS`; every outcome equals the first, and
/// each log replays on the other worker count. Returns the one-worker outcome.
fn same_on_every_worker_count(max_agents: u32, ticks: u64, setup: &dyn Fn(&mut Runtime), between: &dyn Fn(&mut Runtime, u64)) -> Outcome {
    let (one, one_log, _) = play(1, max_agents, ticks, setup, between);
    for workers in WORKERS {
        let (many, log, _) = play(workers, max_agents, ticks, setup, between);
        assert_eq!(many.hashes, one.hashes, "{workers} workers: tick hashes");
        assert_eq!(many.counts, one.counts, "{workers} workers: fuel and counts");
        assert_eq!(many.dead, one.dead, "{workers} workers: dead letters");
        assert_eq!(many.host, one.host, "{workers} workers: host messages");
        assert_eq!(many.events, one.events, "{workers} workers: events");
        assert_eq!(many.infos, one.infos, "{workers} workers: inspect");
        assert_eq!(many.deep, one.deep, "{workers} workers: deep hash");
        assert_eq!(many.states, one.states, "{workers} workers: states");
        let r = replay(&log, 1, |_| {}).unwrap();
        assert_eq!(r.divergence, None, "the {workers}-worker log replays on one");
    }
    let r = replay(&one_log, 4, |_| {}).unwrap();
    assert_eq!(r.divergence, None, "the one-worker log replays on four");
    one
}

fn spawn_n(rt: &mut Runtime, bytes: Vec<u8>, n: usize) -> Vec<AgentId> {
    let m = rt.load_module(bytes).unwrap();
    (0..n).map(|_| rt.spawn(m).unwrap()).collect()
}

/// Agents that fault in the same phase as 10,000+ messages are routed in parallel, some of
/// them the recipients of those messages: in step without sending, in delivery, by fuel
/// exhaustion, and after sending. Their memory is released and they stop counting against
/// `maxAgents` whatever the worker count (the deep hash covers a kept instance).
#[test]
fn agents_faulting_beside_parallel_routing_are_released_alike() {
    const AGENTS: usize = 100;
    let setup = |rt: &mut Runtime| {
        spawn_n(rt, spraying_agent(110, 130, 0, 89), AGENTS);
        spawn_n(rt, trap_in_step(2), 5); // 101..=105
        spawn_n(rt, trap_in_receive(3), 5); // 106..=110
        spawn_n(rt, spin_in_step(3), 3); // 111..=113
        spawn_n(rt, send_then_trap(1, 40), 2); // 114..=115
        spawn_n(rt, agent("adv_membomb"), 2); // 116..=117
    };
    let one = same_on_every_worker_count(1_024, 6, &setup, &|_, _| {});
    assert!(one.counts.iter().all(|c| c.1 >= 10_000), "every tick routes 10,000+ messages");
    use lockstep_core::DeadLetterReason as R;
    for reason in [R::RecipientFaulted, R::RecipientFaultedDuringDelivery, R::UnknownRecipient] {
        assert!(one.dead.iter().any(|d| d.contains(&format!("{reason:?}"))), "the scenario dead-letters {reason:?}");
    }
    // After the faults, as many agents may be spawned as died, on every worker count.
    for workers in [1, 2, 4] {
        let (o, _, mut rt) = play(workers, 117, 6, &setup, &|_, _| {});
        let alive = o.states[0] as usize; // running (preempted: fuel exhausted, dead)
        assert!(alive <= 100, "{workers} workers: {alive} running");
        let m = rt.load_module(agent("counter")).unwrap();
        let spawned = (0..200).take_while(|_| rt.spawn(m).is_ok()).count();
        assert_eq!(spawned, 117 - alive, "{workers} workers: the places the dead agents left");
    }
}

/// Loops `n` times in each step, then sends one message to agent 1 and one to the host: with a
/// slice under its step's fuel, every call suspends and resumes over several ticks.
fn slow_worker(n: u32) -> Vec<u8> {
    sender_agent(
        2,
        &format!(
            r#"(func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (local $i i32)
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (i32.const {n})))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i64.store (i32.const 0) (i64.load offset=8 (local.get $ctx)))
    (drop (call $send (i64.const 1) (i32.const 9) (i32.const 0) (i32.const 0) (i32.const 8)))
    (drop (call $send (i64.const 0) (i32.const 9) (i32.const 0) (i32.const 0) (i32.const 8)))
    i32.const 0)"#
        ),
    )
}

/// Several phases (priorities 1, 0, -1), each of 100 sprayers routing 10,000+ messages on the
/// pool, with time-sliced agents whose calls suspend and resume (their events and digests
/// reach `settle` though they send nothing most ticks), agents that only ask for inference
/// (no model: answered with an error status; `serve_inference` walks only busy agents) and
/// agents that only burn fuel; kills and shutdowns between ticks.
#[test]
fn phases_slices_inference_and_kills_beside_parallel_routing_agree() {
    let setup = |rt: &mut Runtime| {
        for priority in [1, 0, -1] {
            let m = rt.load_module(spraying_agent(105, 420, 0, 89)).unwrap();
            for _ in 0..100 {
                rt.spawn_with_priority(m, priority).unwrap();
            }
        }
        for id in spawn_n(rt, slow_worker(12_000), 4) {
            rt.set_fuel_per_tick(id, 30_000).unwrap();
        }
        spawn_n(rt, agent("classifier"), 6);
        spawn_n(rt, agent("counter"), 70);
    };
    let between = |rt: &mut Runtime, tick: u64| match tick {
        2 => {
            rt.kill(7).unwrap();
            rt.shutdown(150).unwrap();
            rt.kill(301).unwrap(); // a sliced agent
        }
        4 => {
            rt.shutdown(250).unwrap();
            rt.send(7, 1, 0, vec![1]).ok(); // killed: dead-lettered
            rt.send(8, 1, 0, vec![2; 100]).unwrap();
            rt.send(0, 1, 0, vec![3]).ok();
        }
        _ => {}
    };
    let one = same_on_every_worker_count(1_024, 8, &setup, &between);
    assert!(one.counts.iter().all(|c| c.1 >= 30_000), "three phases of 10,000+ messages");
    assert!(one.counts.iter().any(|c| c.6 > 0), "calls suspended");
    assert!(one.events.iter().any(|e| e.contains("Resumed")), "suspended calls resumed");
    assert!(one.host.iter().any(|m| m.contains("kind: 4")), "inference answered without a model");
}

/// A fan-in DAG: 100 sprayers at level 0; 80 sprayers at level 1 behind agent 1 and 2 with
/// trigger `All` (waiting agents are hashed with their inbox length), so each phase routes
/// 10,000+ messages, and the barrier holds on the ticks where agent 2 faulted or was silent.
#[test]
fn dag_barriers_beside_parallel_routing_agree() {
    let setup = |rt: &mut Runtime| {
        spawn_n(rt, spraying_agent(120, 200, 0, 89), 100);
        for id in spawn_n(rt, spraying_agent(130, 200, 0, 89), 80) {
            rt.connect(1, id).unwrap();
            rt.connect(2, id).unwrap();
            rt.set_trigger(id, Trigger::All).unwrap();
        }
    };
    let between = |rt: &mut Runtime, tick: u64| {
        if tick == 3 {
            rt.kill(2).unwrap();
        }
        if tick == 5 {
            rt.shutdown(120).unwrap();
        }
    };
    let one = same_on_every_worker_count(1_024, 8, &setup, &between);
    assert!(one.counts.iter().all(|c| c.1 >= 10_000));
}

/// A dashboard tap turned on and off mid-session switches routing back to sequential and
/// again to parallel: nothing the session shows changes.
#[test]
fn a_tap_switching_routing_mid_session_changes_nothing() {
    let setup = |rt: &mut Runtime| {
        spawn_n(rt, spraying_agent(120, 110, 0, 89), 100);
    };
    let between = |rt: &mut Runtime, tick: u64| match tick {
        2 => rt.watch_agents(&[1, 50, 100]),
        4 => rt.watch_agents(&[]),
        _ => {}
    };
    same_on_every_worker_count(1_024, 6, &setup, &between);
    // The tap saw, on 4 workers, what it sees on one.
    let seen = |workers: usize| {
        let (_, _, rt) = play(workers, 1_024, 4, &setup, &|rt, t| {
            if t == 2 {
                rt.watch_agents(&[1, 50])
            }
        });
        format!("{:?}", rt.watched_messages(50))
    };
    assert_eq!(seen(4), seen(1));
}

/// 12,000 inbound ring records mixed with `send()` before ticks, into 100 agents that route
/// 10,000+ messages in parallel; ids 0 and past the slot array are dead-lettered.
#[test]
fn ring_and_sends_into_a_parallel_phase_replay_alike() {
    const CAP: usize = 4 << 20;
    let run = |workers: usize| {
        let mut rt = runtime(workers);
        spawn_n(&mut rt, spraying_agent(300, 100, 0, 89), 100);
        spawn_n(&mut rt, agent("echo"), 5);
        let (_inbound, mut js) = attach_inbound_ring(&mut rt, CAP);
        let mut hashes = Vec::new();
        let mut dead = Vec::new();
        let mut host = Vec::new();
        for tick in 0..5u64 {
            for i in 0..12_000u64 {
                let to = if i % 3 == 0 { 1 } else { i % 112 }; // 0 and 106..=111: no agent
                js.try_push(ring::TYPE_MESSAGE, 3, (i % 4) as i32, to, &i.to_le_bytes()).unwrap();
                if i % 1000 == 0 {
                    rt.send(101 + tick % 5, 4, 0, vec![tick as u8; 10]).unwrap();
                }
            }
            let r = rt.tick().unwrap();
            hashes.push(r.hash);
            dead.extend(rt.drain_dead_letters().iter().map(|d| format!("{d:?}")));
            host.extend(rt.drain_host_messages().iter().map(|m| format!("{m:?}")));
        }
        (hashes, dead, host, rt.replay_log().unwrap())
    };
    let one = run(1);
    assert!(one.1.iter().any(|d| d.contains("UnknownRecipient")));
    for workers in [2, 4, 7] {
        let many = run(workers);
        assert_eq!((&many.0, &many.1, &many.2), (&one.0, &one.1, &one.2), "{workers} workers");
        assert_eq!(replay(&many.3, 1, |_| {}).unwrap().divergence, None, "{workers}-worker log on one");
    }
    assert_eq!(replay(&one.3, 3, |_| {}).unwrap().divergence, None);
}
