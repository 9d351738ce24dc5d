//! DAG workflows (issue 16, part 2): an agent runs after every agent it depends on and gets
//! their messages in the same tick; diamonds, fan-out/fan-in, `Trigger::All` barriers, a
//! 1,000-node random DAG with the same hashes on 1, 2 and 4 workers, cycles refused naming the
//! cycle, edges changing between ticks, exact replay (from a log and from a journal), and
//! snapshots with a graph (and of the format before graphs). Sessions without edges hash as
//! before: `tests/golden_hashes.rs`.

mod common;

use std::path::PathBuf;

use lockstep_core::journal::{self, FsyncPolicy, JournalConfig, RecoverOptions};
use lockstep_core::replay_log::{write_header, LogReader, Record};
use lockstep_core::{replay, AgentId, LockstepError, MemoryAllocator, RestoreOptions, Runtime, RuntimeConfig, TickReport, Trigger};

/// A relay: the host configures its targets (kind 1: u64 ids) and a period (kind 2: u32; it
/// sends only in ticks that are a multiple of it). Each step it sends every target (kind 7)
/// [origin u64, tick u64, received u64], where origin is the oldest origin it received this
/// tick, or the tick itself if it received nothing: along a chain whose messages all arrive in
/// the tick they were sent, origin = tick. Whenever it received something it reports the same
/// 24 bytes to the host (kind 3).
const RELAY: &str = r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_receive") (param $m i32) (result i32)
    (local $kind i32) (local $origin i64)
    (local.set $kind (i32.load offset=24 (local.get $m)))
    (if (i64.eqz (i64.load (local.get $m)))
      (then
        (if (i32.eq (local.get $kind) (i32.const 1))
          (then
            (memory.copy (i32.const 70000) (i32.add (local.get $m) (i32.const 40)) (i32.load offset=32 (local.get $m)))
            (i32.store (i32.const 69020) (i32.shr_u (i32.load offset=32 (local.get $m)) (i32.const 3)))))
        (if (i32.eq (local.get $kind) (i32.const 2))
          (then (i32.store (i32.const 69000) (i32.load offset=40 (local.get $m)))))
        (return (i32.const 0))))
    (local.set $origin (i64.load offset=40 (local.get $m)))
    (if (i32.or (i32.eqz (i32.load (i32.const 69016))) (i64.lt_u (local.get $origin) (i64.load (i32.const 69008))))
      (then (i64.store (i32.const 69008) (local.get $origin))))
    (i32.store (i32.const 69016) (i32.add (i32.load (i32.const 69016)) (i32.const 1)))
    i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (local $tick i64) (local $i i32) (local $n i32) (local $p i32)
    (local.set $tick (i64.load offset=8 (local.get $ctx)))
    (i64.store (i32.const 69100)
      (if (result i64) (i32.load (i32.const 69016)) (then (i64.load (i32.const 69008))) (else (local.get $tick))))
    (i64.store (i32.const 69108) (local.get $tick))
    (i64.store (i32.const 69116) (i64.extend_i32_u (i32.load (i32.const 69016))))
    (if (i32.load (i32.const 69016))
      (then (drop (call $send (i64.const 0) (i32.const 3) (i32.const 0) (i32.const 69100) (i32.const 24)))))
    (local.set $p (i32.load (i32.const 69000)))
    (local.set $p (select (local.get $p) (i32.const 1) (i32.gt_s (local.get $p) (i32.const 1))))
    (if (i64.eqz (i64.rem_u (local.get $tick) (i64.extend_i32_u (local.get $p))))
      (then
        (local.set $n (i32.load (i32.const 69020)))
        (block $done (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (drop (call $send (i64.load (i32.add (i32.const 70000) (i32.shl (local.get $i) (i32.const 3))))
            (i32.const 7) (i32.const 0) (i32.const 69100) (i32.const 24)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))))
    (i32.store (i32.const 69016) (i32.const 0))
    i32.const 0))"#;

fn config(workers: usize) -> RuntimeConfig {
    RuntimeConfig { workers, seed: 5, max_agents: 4_096, fuel_per_call: 1_000_000, checkpoint_interval_ticks: 3, ..RuntimeConfig::development() }
}

/// A runtime with the relay loaded.
fn runtime(workers: usize) -> (Runtime, lockstep_core::Digest) {
    let mut rt = Runtime::new(config(workers)).unwrap();
    let m = rt.load_module(common::wat(RELAY)).unwrap();
    (rt, m)
}

fn targets(rt: &mut Runtime, id: AgentId, to: &[AgentId]) {
    let payload: Vec<u8> = to.iter().flat_map(|t| t.to_le_bytes()).collect();
    rt.send(id, 1, 0, payload).unwrap();
}

fn period(rt: &mut Runtime, id: AgentId, p: u32) {
    rt.send(id, 2, 0, p.to_le_bytes().to_vec()).unwrap();
}

/// A relay's report: (agent, origin, tick, messages received).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    agent: AgentId,
    origin: u64,
    tick: u64,
    received: u64,
}

fn reports(rt: &mut Runtime) -> Vec<Report> {
    let u = |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    rt.drain_host_messages()
        .into_iter()
        .filter(|m| m.kind == 3)
        .map(|m| Report { agent: m.from, origin: u(&m.payload, 0), tick: u(&m.payload, 1), received: u(&m.payload, 2) })
        .collect()
}

fn tick(rt: &mut Runtime) -> (TickReport, Vec<Report>) {
    let r = rt.tick().unwrap();
    (r, reports(rt))
}

fn code<T: std::fmt::Debug>(r: Result<T, LockstepError>) -> (&'static str, String) {
    let e = r.unwrap_err();
    (e.code(), e.to_string())
}

#[test]
fn a_diamond_runs_level_by_level_and_delivers_along_its_edges_in_the_same_tick() {
    for connected in [false, true] {
        let (mut rt, m) = runtime(2);
        // Spawned sink first, so agent-id order is the reverse of the graph's; the sink has the
        // highest priority, so without the graph it would run first.
        let d = rt.spawn_with_priority(m, 100).unwrap();
        let b = rt.spawn(m).unwrap();
        let c = rt.spawn(m).unwrap();
        let a = rt.spawn(m).unwrap();
        // Beside the graph, priorities still order the agents of one level: e runs after a.
        let e = rt.spawn_with_priority(m, -1).unwrap();
        targets(&mut rt, a, &[b, c, e]);
        targets(&mut rt, b, &[d]);
        targets(&mut rt, c, &[d]);
        if connected {
            for (from, to) in [(a, b), (a, c), (b, d), (c, d)] {
                assert!(rt.connect(from, to).unwrap());
            }
            assert!(!rt.connect(a, b).unwrap(), "an existing edge is not added twice");
            assert_eq!(rt.edges(), [(2, 1), (3, 1), (4, 2), (4, 3)]);
            assert_eq!([a, b, c, d, e].map(|x| rt.level(x).unwrap()), [0, 1, 1, 2, 0]);
        }
        for t in 0..6u64 {
            let (_, got) = tick(&mut rt);
            let of = |x| got.iter().find(|r| r.agent == x).copied();
            if connected {
                // b and c get a's message of this tick, and d gets theirs: one wave per tick.
                assert_eq!(of(b), Some(Report { agent: b, origin: t, tick: t, received: 1 }));
                assert_eq!(of(c), Some(Report { agent: c, origin: t, tick: t, received: 1 }));
                assert_eq!(of(d), Some(Report { agent: d, origin: t, tick: t, received: 2 }), "tick {t}: {got:?}");
            } else if t >= 2 {
                // One phase per priority: d (priority 100) runs first, b and c with a.
                assert_eq!(of(d).map(|r| (r.origin, r.received)), Some((t - 2, 2)), "tick {t}: {got:?}");
                assert_eq!(of(b).map(|r| r.origin), Some(t - 1));
            }
            // e (priority -1, level 0) runs after a in both.
            assert_eq!(of(e).map(|r| r.origin), Some(t), "tick {t}");
        }
    }
}

#[test]
fn fan_out_to_a_hundred_workers_and_fan_in_agree_on_one_two_and_four_workers() {
    let run = |workers: usize| {
        let (mut rt, m) = runtime(workers);
        let sink = rt.spawn(m).unwrap();
        let source = rt.spawn(m).unwrap();
        let mut middle = Vec::new();
        for _ in 0..100 {
            let w = rt.spawn_after(m, 0, &[source], Trigger::Any).unwrap();
            rt.connect(w, sink).unwrap();
            targets(&mut rt, w, &[sink]);
            middle.push(w);
        }
        targets(&mut rt, source, &middle);
        let mut hashes = Vec::new();
        for t in 0..5u64 {
            let (r, got) = tick(&mut rt);
            let s = got.iter().find(|r| r.agent == sink).copied();
            assert_eq!(s, Some(Report { agent: sink, origin: t, tick: t, received: 100 }));
            assert_eq!(got.iter().filter(|r| middle.contains(&r.agent) && r.origin == t && r.received == 1).count(), 100);
            hashes.push(r.hash);
        }
        hashes
    };
    let one = run(1);
    assert_eq!(run(2), one);
    assert_eq!(run(4), one);
}

#[test]
fn trigger_all_waits_for_every_running_upstream_agent() {
    let (mut rt, m) = runtime(1);
    let every = rt.spawn(m).unwrap();
    let third = rt.spawn(m).unwrap();
    period(&mut rt, third, 3);
    let join = rt.spawn_after(m, 0, &[every, third], Trigger::All).unwrap();
    let any = rt.spawn_after(m, 0, &[every, third], Trigger::Any).unwrap();
    targets(&mut rt, every, &[join, any]);
    targets(&mut rt, third, &[join, any]);
    assert_eq!(rt.trigger(join).unwrap(), Trigger::All);
    for t in 0..9u64 {
        let (r, got) = tick(&mut rt);
        let joined = got.iter().find(|r| r.agent == join).copied();
        let fires = t % 3 == 0;
        // The barrier steps when `third` (every 3 ticks) has sent: with what `every` sent since.
        let expect = fires.then(|| Report { agent: join, origin: t.saturating_sub(2), tick: t, received: if t == 0 { 2 } else { 4 } });
        assert_eq!(joined, expect, "tick {t}");
        assert_eq!(r.agents_waiting, u32::from(!fires), "tick {t}");
        // `any` steps every tick with what came.
        assert_eq!(got.iter().find(|r| r.agent == any).map(|r| r.received), Some(if fires { 2 } else { 1 }));
    }
    assert_eq!(rt.inspect(join).unwrap().steps, 3, "a waiting agent does not step");
    assert_eq!(rt.inspect(any).unwrap().steps, 9);
    // An upstream agent that stops no longer holds the barrier (its edges went with it).
    rt.kill(third).unwrap();
    assert_eq!(rt.edges(), [(every, join), (every, any)]);
    for t in 9..12u64 {
        let (r, got) = tick(&mut rt);
        assert_eq!(r.agents_waiting, 0);
        assert_eq!(got.iter().find(|r| r.agent == join).map(|r| (r.tick, r.received)), Some((t, if t == 9 { 3 } else { 1 })));
    }
    // Back to `any`, and a trigger `all` with no upstream agent steps every tick.
    rt.set_trigger(join, Trigger::Any).unwrap();
    rt.set_trigger(every, Trigger::All).unwrap();
    let (r, _) = tick(&mut rt);
    assert_eq!(r.agents_waiting, 0);
    let log = rt.stop_recording().unwrap();
    let v = replay(&log, 2, |_| {}).unwrap();
    assert!(v.divergence.is_none() && v.complete, "{v:?}");
}

/// A random DAG over `n` agents spawned in an order unrelated to the graph: each agent gets up
/// to 3 upstream agents among those before it in a random order. Returns (runtime, edges, the
/// longest-path level of each agent by id).
fn random_dag(workers: usize, n: u64, seed: u64, barriers: bool) -> (Runtime, Vec<(AgentId, AgentId)>, Vec<u32>) {
    let (mut rt, m) = runtime(workers);
    let ids: Vec<AgentId> = (0..n).map(|_| rt.spawn(m).unwrap()).collect();
    let mut state = seed;
    let mut next = |below: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % below
    };
    let mut order = ids.clone();
    for i in (1..order.len()).rev() {
        order.swap(i, next(i as u64 + 1) as usize);
    }
    let mut edges = Vec::new();
    let mut level = vec![0u32; n as usize + 1];
    for p in 1..order.len() {
        let to = order[p];
        for _ in 0..next(4) {
            let from = order[next(p as u64) as usize];
            if !edges.contains(&(from, to)) {
                edges.push((from, to));
                level[to as usize] = level[to as usize].max(level[from as usize] + 1);
            }
        }
    }
    for &(from, to) in &edges {
        assert!(rt.connect(from, to).unwrap());
    }
    for &id in &ids {
        let down: Vec<AgentId> = edges.iter().filter(|e| e.0 == id).map(|e| e.1).collect();
        targets(&mut rt, id, &down);
        if barriers && next(20) == 0 {
            rt.set_trigger(id, Trigger::All).unwrap();
            period(&mut rt, id, 2);
        }
    }
    (rt, edges, level)
}

#[test]
fn a_thousand_node_random_dag_hashes_alike_on_one_two_and_four_workers() {
    for barriers in [false, true] {
        let mut runs = Vec::new();
        for workers in [1, 2, 4] {
            let (mut rt, edges, level) = random_dag(workers, 1_000, 99, barriers);
            assert!(edges.len() > 1_000, "{} edges", edges.len());
            let mut hashes = Vec::new();
            for t in 0..6u64 {
                let (r, got) = tick(&mut rt);
                if !barriers {
                    // Every message went down its edges within the tick it was sent in.
                    assert!(got.iter().all(|g| g.origin == t), "tick {t}: a message arrived late");
                    let receivers: std::collections::BTreeSet<AgentId> = edges.iter().map(|e| e.1).collect();
                    assert_eq!(got.len(), receivers.len());
                }
                hashes.push((r.hash, r.agents_waiting, r.messages_routed));
            }
            if workers == 1 {
                let deepest = *level.iter().max().unwrap();
                assert!(deepest >= 5, "depth {deepest}");
                for id in 1..=1_000u64 {
                    assert_eq!(rt.level(id).unwrap(), level[id as usize], "agent {id}");
                }
            }
            if barriers {
                assert!(hashes.iter().any(|h| h.1 > 0), "some barrier waited");
            }
            let log = rt.stop_recording().unwrap();
            runs.push((hashes, log));
        }
        assert_eq!(runs[1].0, runs[0].0, "2 workers");
        assert_eq!(runs[2].0, runs[0].0, "4 workers");
        assert_eq!(runs[2].1, runs[0].1, "the logs are the same bytes");
        let v = replay(&runs[0].1, 4, |_| {}).unwrap();
        assert!(v.divergence.is_none() && v.complete && v.ticks_verified == 6, "{v:?}");
    }
}

#[test]
fn a_cycle_is_refused_naming_it_and_changes_nothing() {
    let (mut rt, m) = runtime(1);
    let [a, b, c, d] = [0; 4].map(|_| rt.spawn(m).unwrap());
    for (from, to) in [(a, b), (b, c), (c, d), (b, d)] {
        rt.connect(from, to).unwrap();
    }
    let log_before = rt.replay_log().unwrap();
    let (code_, message) = code(rt.connect(d, a));
    assert_eq!(code_, "E_DAG_CYCLE");
    assert!(message.contains("4 → 1 → 2 → 3 → 4"), "{message}");
    match rt.connect(c, b) {
        Err(LockstepError::DagCycle { from: 3, to: 2, cycle }) => assert_eq!(cycle, [3, 2, 3]),
        other => panic!("{other:?}"),
    }
    let (code_, message) = code(rt.connect(c, c));
    assert_eq!(code_, "E_DAG_CYCLE");
    assert!(message.contains("3 → 3"), "{message}");
    assert_eq!(rt.edges(), [(a, b), (b, c), (b, d), (c, d)]);
    assert_eq!(rt.replay_log().unwrap(), log_before, "a refused edge is not recorded");
    // Unknown and stopped agents.
    assert_eq!(code(rt.connect(a, 99)).0, "E_UNKNOWN_AGENT");
    assert_eq!(code(rt.connect(0, a)).0, "E_UNKNOWN_AGENT");
    assert_eq!(code(rt.set_trigger(77, Trigger::All)).0, "E_UNKNOWN_AGENT");
    rt.shutdown(d).unwrap();
    assert_eq!(code(rt.connect(a, d)).0, "E_AGENT_NOT_RUNNING");
    assert_eq!(code(rt.set_trigger(d, Trigger::All)).0, "E_AGENT_NOT_RUNNING");
    assert_eq!(rt.edges(), [(a, b), (b, c)], "a stopped agent's edges go with it");
    assert!(!rt.disconnect(c, d).unwrap());
    // spawn_after checks before it spawns.
    let before = rt.agent_count();
    assert_eq!(code(rt.spawn_after(m, 0, &[a, 99], Trigger::All)).0, "E_UNKNOWN_AGENT");
    assert_eq!(code(rt.spawn_after(m, 0, &[d], Trigger::Any)).0, "E_AGENT_NOT_RUNNING");
    assert_eq!(rt.agent_count(), before, "nothing was spawned");
    // With the cycle broken, the edge is fine.
    assert!(rt.disconnect(a, b).unwrap());
    assert!(rt.connect(c, a).unwrap());
    assert_eq!([a, b, c].map(|x| rt.level(x).unwrap()), [2, 0, 1]);
}

#[test]
fn edges_change_between_ticks_and_the_session_replays_exactly() {
    let (mut rt, m) = runtime(2);
    let c = rt.spawn(m).unwrap();
    let b = rt.spawn(m).unwrap();
    let a = rt.spawn(m).unwrap();
    targets(&mut rt, a, &[b]);
    targets(&mut rt, b, &[c]);
    rt.connect(a, b).unwrap();
    rt.connect(b, c).unwrap();
    let origin = |got: &[Report], x: AgentId| got.iter().find(|r| r.agent == x).map(|r| r.origin);
    let (_, got) = tick(&mut rt);
    assert_eq!((origin(&got, b), origin(&got, c)), (Some(0), Some(0)));
    // Without b → c, c is at level 0 and runs before b: b's messages arrive a tick late.
    rt.disconnect(b, c).unwrap();
    assert_eq!(rt.level(c).unwrap(), 0);
    let (_, got) = tick(&mut rt);
    assert_eq!((origin(&got, b), origin(&got, c)), (Some(1), None), "c ran before b sent");
    let (_, got) = tick(&mut rt);
    assert_eq!((origin(&got, b), origin(&got, c)), (Some(2), Some(1)));
    // Reversed: c → a → b; b's messages to c go against the graph (next tick).
    rt.connect(c, a).unwrap();
    assert_eq!([c, a, b].map(|x| rt.level(x).unwrap()), [0, 1, 2]);
    rt.set_trigger(b, Trigger::All).unwrap();
    for t in 3..8u64 {
        let (_, got) = tick(&mut rt);
        assert_eq!((origin(&got, b), origin(&got, c)), (Some(t), Some(t - 1)));
    }
    // b → c again: c gets b's message of tick 7 (which waited) and of tick 8.
    rt.disconnect(c, a).unwrap();
    rt.connect(b, c).unwrap();
    let (_, got) = tick(&mut rt);
    assert_eq!(got.iter().find(|r| r.agent == c).map(|r| (r.origin, r.received)), Some((7, 2)));
    rt.checkpoint();
    let final_hash = rt.state_hash();
    let log = rt.stop_recording().unwrap();
    let records: Vec<Record> = {
        let mut r = LogReader::new(&log).unwrap();
        std::iter::from_fn(|| r.next_record().unwrap()).collect()
    };
    let graph: Vec<&Record> = records.iter().filter(|r| matches!(r, Record::Connect { .. } | Record::Disconnect { .. } | Record::Trigger { .. })).collect();
    assert_eq!(
        graph,
        [
            &Record::Connect { tick: 0, from: a, to: b },
            &Record::Connect { tick: 0, from: b, to: c },
            &Record::Disconnect { tick: 1, from: b, to: c },
            &Record::Connect { tick: 3, from: c, to: a },
            &Record::Trigger { tick: 3, agent: b, trigger: Trigger::All },
            &Record::Disconnect { tick: 8, from: c, to: a },
            &Record::Connect { tick: 8, from: b, to: c },
        ]
    );
    for workers in [1, 4] {
        let v = replay(&log, workers, |_| {}).unwrap();
        assert!(v.divergence.is_none() && v.complete && v.final_hash == final_hash && v.checkpoints_verified >= 3, "{v:?}");
    }

    // A replay validates graph records like the others: a duplicate edge, a missing one, an
    // edge closing a cycle, an unchanged trigger, an unknown agent are corrupt, never applied.
    let end = records.iter().position(|r| matches!(r, Record::End { .. })).unwrap();
    let first_tick_end = records.iter().position(|r| matches!(r, Record::TickEnd { .. })).unwrap();
    for (forged, says) in [
        (Record::Connect { tick: 0, from: a, to: b }, "exists already"),
        (Record::Disconnect { tick: 0, from: c, to: a }, "no edge"),
        (Record::Connect { tick: 0, from: c, to: a }, "cycle"),
        (Record::Trigger { tick: 0, agent: a, trigger: Trigger::Any }, "already"),
        (Record::Connect { tick: 0, from: a, to: 9 }, "agent 9 does not exist"),
        (Record::Connect { tick: 5, from: c, to: a }, "the replay is at tick 0"),
    ] {
        let mut out = Vec::new();
        write_header(&mut out);
        for (i, r) in records[..end].iter().enumerate() {
            if i == first_tick_end {
                forged.encode(&mut out);
            }
            r.encode(&mut out);
        }
        match replay(&out, 1, |_| {}) {
            Err(LockstepError::ReplayCorrupt { reason, .. }) => assert!(reason.contains(says), "{forged:?}: {reason}"),
            other => panic!("{forged:?}: {other:?}"),
        }
    }
}

#[test]
fn a_journaled_session_with_a_graph_recovers_exactly_from_its_snapshots() {
    let dir = std::env::temp_dir().join(format!("lockstep-dag-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let session = |rt: &mut Runtime, m, from: u64, to: u64| -> Vec<lockstep_core::Digest> {
        let mut hashes = Vec::new();
        for t in from..to {
            match t {
                0 => {
                    let x = rt.spawn(m).unwrap();
                    let y = rt.spawn_after(m, 1, &[x], Trigger::Any).unwrap();
                    let z = rt.spawn_after(m, 0, &[x, y], Trigger::All).unwrap();
                    targets(rt, x, &[y, z]);
                    targets(rt, y, &[z]);
                    period(rt, y, 3);
                }
                4 => {
                    rt.disconnect(1, 3).unwrap();
                }
                6 => {
                    rt.set_trigger(3, Trigger::Any).unwrap();
                    rt.connect(1, 3).unwrap();
                }
                9 => rt.kill(2).unwrap(),
                _ => {}
            }
            hashes.push(rt.tick().unwrap().hash);
            rt.drain_host_messages();
        }
        hashes
    };
    let journaled = RuntimeConfig {
        journal: Some(JournalConfig { dir: dir.clone(), fsync: FsyncPolicy::Tick, segment_bytes: 4096, snapshot_interval_ticks: 5 }),
        ..config(2)
    };
    let mut rt = Runtime::new(journaled).unwrap();
    let m = rt.load_module(common::wat(RELAY)).unwrap();
    let hashes = session(&mut rt, m, 0, 12);
    let edges = rt.edges();
    drop(rt);
    let summary = journal::inspect(&dir).unwrap();
    // spawn_after: 3 connects and a trigger; then a disconnect, a trigger and a connect.
    assert_eq!(summary.graph_changes, 7);
    let v = journal::verify(&dir, 1, None, |_| {}).unwrap();
    assert!(v.replay.divergence.is_none() && v.replay.ticks_verified == 12, "{v:?}");
    let (mut back, report) = Runtime::recover(&dir, RecoverOptions { workers: 4, ..RecoverOptions::default() }).unwrap();
    assert_eq!(report.snapshot_tick, Some(10), "recovery starts from the snapshot at tick 10, which holds the graph");
    assert_eq!((back.current_tick(), back.state_hash(), back.edges()), (12, hashes[11], edges));
    // Both go on alike (the recovered one on 4 workers).
    let mut fresh = Runtime::new(config(1)).unwrap();
    let m = fresh.load_module(common::wat(RELAY)).unwrap();
    let all = session(&mut fresh, m, 0, 16);
    assert_eq!(all[..12], hashes[..]);
    assert_eq!(session(&mut back, m, 12, 16), all[12..]);
    drop(back);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_snapshot_holds_the_graph_and_a_waiting_barrier_and_restores_exactly() {
    let (mut rt, m) = runtime(2);
    let a = rt.spawn(m).unwrap();
    let b = rt.spawn(m).unwrap();
    let j = rt.spawn_after(m, 0, &[a, b], Trigger::All).unwrap();
    targets(&mut rt, a, &[j]);
    targets(&mut rt, b, &[j]);
    period(&mut rt, b, 4);
    rt.run(2).unwrap();
    assert_eq!(rt.inspect(j).unwrap().inbox_len, 1, "the barrier holds a's message of tick 1");
    let bytes = rt.snapshot().unwrap();
    let info = lockstep_core::snapshot::info(&bytes).unwrap();
    assert_eq!((info.version, info.edges), (lockstep_core::snapshot::FORMAT_VERSION, 2));
    assert_eq!(lockstep_core::snapshot::FORMAT_VERSION, 3);
    let later: Vec<_> = (0..8).map(|_| rt.tick().unwrap()).map(|r| (r.hash, r.agents_waiting)).collect();
    let deep = rt.deep_hash().hash;
    for (workers, allocator) in [(1, MemoryAllocator::Pooling), (4, MemoryAllocator::Slab)] {
        let mut back = Runtime::restore(&bytes, RestoreOptions { workers, allocator, ..RestoreOptions::development() }).unwrap();
        assert_eq!(back.edges(), [(a, j), (b, j)]);
        assert_eq!(back.trigger(j).unwrap(), Trigger::All);
        let got: Vec<_> = (0..8).map(|_| back.tick().unwrap()).map(|r| (r.hash, r.agents_waiting)).collect();
        assert_eq!(got, later, "{workers} workers, {allocator:?}");
        assert_eq!(back.deep_hash().hash, deep);
    }
}

#[test]
fn a_version_1_snapshot_restores_with_no_graph_and_continues_exactly() {
    // Written by the release before DAG workflows (see the fixture's commit): 3 agents of
    // golden_hashes' agent at priorities 0, 1, 1, seed 7, 4 ticks, then a send to agent 2.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot_v1.lssnap");
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1);
    let info = lockstep_core::snapshot::info(&bytes).unwrap();
    assert_eq!((info.version, info.edges, info.tick), (1, 0, 4));
    let mut rt = Runtime::restore(&bytes, RestoreOptions { workers: 2, ..RestoreOptions::development() }).unwrap();
    assert!(rt.edges().is_empty());
    let hashes: Vec<String> = (0..4).map(|_| rt.tick().unwrap().hash.to_hex()).collect();
    // What that release computed for these ticks.
    assert_eq!(
        hashes,
        [
            "59655e6792cb8563a53027020886dc9071854ba27999d441bd92299fe9b89609",
            "3af426f84d7a37df3f1029e9a8df20c38c5147d418972ededc9f731f68bd86b0",
            "33471ce4039172b74eb2f785a5cc75541949ad8e85800d5a6590572ff833b785",
            "500d80ced3bc507de264c0f6bba301077befdd1126f763d2876e59ce23e20055",
        ]
    );
    assert_eq!(rt.deep_hash().hash.to_hex(), "9cf02ffa8fc268c45969eb4ba1b3869aa6c61c6227a30c1db009e5692c43b94c");
    // A graph can be added to it, and a snapshot of it is the current version.
    rt.connect(1, 2).unwrap();
    rt.tick().unwrap();
    let again = rt.snapshot().unwrap();
    assert_eq!(u16::from_le_bytes([again[8], again[9]]), lockstep_core::snapshot::FORMAT_VERSION);
    // A version from the future is refused with its number.
    let mut future = bytes.clone();
    future[8..10].copy_from_slice(&4u16.to_le_bytes());
    let crc = crc32fast::hash(&future[..16]);
    future[16..20].copy_from_slice(&crc.to_le_bytes());
    let e = Runtime::restore(&future, RestoreOptions::development()).err().unwrap();
    assert_eq!(e.code(), "E_SNAPSHOT_VERSION", "{e}");
    assert!(e.to_string().contains("versions 1..=3"), "{e}");
}

/// A small session with every graph input and a barrier that waits; its tick hashes and log
/// are pinned like `tests/golden_hashes.rs` pins a session without a graph: what the hash
/// covers of a graph (the Connect/Disconnect/Trigger digests, the waiting barrier) and the
/// records' bytes must not change by accident.
fn pinned_session(workers: usize) -> (Vec<String>, Vec<u8>) {
    let (mut rt, m) = runtime(workers);
    let every = rt.spawn(m).unwrap();
    let third = rt.spawn_with_priority(m, 2).unwrap();
    period(&mut rt, third, 3);
    let join = rt.spawn_after(m, 0, &[every, third], Trigger::All).unwrap();
    targets(&mut rt, every, &[join]);
    targets(&mut rt, third, &[join]);
    let mut hashes = Vec::new();
    for t in 0..8 {
        if t == 5 {
            rt.disconnect(third, join).unwrap();
            rt.set_trigger(join, Trigger::Any).unwrap();
            rt.connect(third, every).unwrap();
        }
        hashes.push(rt.tick().unwrap().hash.to_hex());
    }
    (hashes, rt.stop_recording().unwrap())
}

const PINNED_HASHES: [&str; 8] = [
    "cd646a304a19f10d786335888f22f1641bab09e5431ecdec3039887a2cdde612",
    "b36258d5d5d791672e6b9bc9901fe455fb5d101c0b95da90ddd53922a16019c3",
    "884eba720950415bde8cb1a414eab82a07f1ead4a30afb24dfbd74e63bc05279",
    "91824f01e1f04cd6ef87be8acc2b320ff3fa41f07716ba0aec7b7ce2bc58e589",
    "1c316022a4a5298eb8f198e454ba9a298c5b08bfcd0c5da5acd357b3580028e0",
    "acf29dcdfee15be552057cf89009e453554c16de4dd06ad97748791567527283",
    "f225ff2e346b25f23c5fbdfa5479dfbc12416b797dc294b1b7ab09a23de5fdbf",
    "622c4902669faa521d8e254d1bdfd90f4cdb0a2bc0d16ceaa8c77fec2a452e9c",
];
const PINNED_LOG: (usize, &str) = (2261, "c221c661816be3bb3b8eb33a9de30084fd5d45d7d7692d94b471fdd853a92224");

#[test]
fn a_graph_sessions_hashes_and_log_bytes_are_pinned() {
    let (hashes, log) = pinned_session(1);
    assert_eq!(hashes, PINNED_HASHES, "what the tick hash covers of a graph changed (docs/REPLAY.md): bump the log version and update these on purpose");
    assert_eq!((log.len(), blake3::hash(&log).to_hex().as_str()), PINNED_LOG, "the graph records' bytes changed (docs/REPLAY.md)");
    let v = replay(&log, 2, |_| {}).unwrap();
    assert!(v.divergence.is_none() && v.complete && v.ticks_verified == 8, "{v:?}");
    assert_eq!(pinned_session(4), (hashes, log));
}
