//! Red team of issue 13 (held inbound-ring records, `scheduler::HeldInboxes`): without a
//! replay log, a tick's ring input read in one walk stays in the ring until its recipients'
//! turns. Every observable must be the one a recording runtime gives (it stages every record)
//! and the one `send()` of the same messages gives, on any number of workers.

mod common;
use common::*;
use lockstep_core::ring::{self, OwnedRegion, Producer};
use lockstep_core::{AgentId, DeadLetterReason, Digest, Runtime, RuntimeConfig, Trigger};

#[derive(Clone, Debug)]
struct M {
    to: u64,
    kind: u32,
    priority: i32,
    payload: Vec<u8>,
}

fn m(to: u64, kind: u32, priority: i32, payload: Vec<u8>) -> M {
    M { to, kind, priority, payload }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Feed {
    Ring,
    Send,
}

type TickOut = (Digest, u64, u64, u64, u32, u32, u32, u32);
type Host = (u64, u64, u32, Vec<u8>);
type Dead = (DeadLetterReason, u64, u64, u64, u32, i32, Vec<u8>);
type Info = (u64, String, u64, u64, usize, u64, u64);

#[derive(Default)]
struct Outcome {
    ticks: Vec<TickOut>,
    host: Vec<Vec<Host>>,
    dead: Vec<Vec<Dead>>,
    agents: Vec<Info>,
    deep: Vec<Digest>,
    /// The restored snapshot's deep hash and its next tick's hash.
    restored: Option<(Digest, Digest)>,
    /// How many 1 KiB records fit in the inbound ring after the last tick.
    room: usize,
}

fn first_diff<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T]) -> Option<String> {
    if a.len() != b.len() {
        let k = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        return Some(format!("lengths {} vs {}; first difference at {k}: {:?} vs {:?}", a.len(), b.len(), a.get(k).map(short), b.get(k).map(short)));
    }
    a.iter().zip(b).position(|(x, y)| x != y).map(|k| format!("at {k} of {}: {} vs {}", a.len(), short(&a[k]), short(&b[k])))
}

fn short<T: std::fmt::Debug>(x: &T) -> String {
    let s = format!("{x:?}");
    if s.len() > 400 {
        format!("{}…", &s[..400])
    } else {
        s
    }
}

fn same(a: &Outcome, b: &Outcome, what: &str) {
    let mut bad = Vec::new();
    if let Some(d) = first_diff(&a.ticks, &b.ticks) {
        bad.push(format!("ticks (hash, delivered, routed, dead, faults, waiting, suspended, stepped): {d}"));
    }
    for (t, (x, y)) in a.host.iter().zip(&b.host).enumerate() {
        if let Some(d) = first_diff(x, y) {
            bad.push(format!("host messages (what agents were handed) of tick {t}: {d}"));
            break;
        }
    }
    for (t, (x, y)) in a.dead.iter().zip(&b.dead).enumerate() {
        if let Some(d) = first_diff(x, y) {
            bad.push(format!("dead letters of tick {t}: {d}"));
            break;
        }
    }
    if let Some(d) = first_diff(&a.agents, &b.agents) {
        bad.push(format!("agents: {d}"));
    }
    if let Some(d) = first_diff(&a.deep, &b.deep) {
        bad.push(format!("deep hashes: {d}"));
    }
    if a.restored != b.restored {
        bad.push(format!("restored: {:?} vs {:?}", a.restored, b.restored));
    }
    // (Through `send()` the ring is not used: its producer stands elsewhere.)
    if a.room != b.room && a.room != usize::MAX && b.room != usize::MAX {
        bad.push(format!("ring room after: {} vs {}", a.room, b.room));
    }
    assert!(bad.is_empty(), "{what}:\n  {}", bad.join("\n  "));
}

struct Plan<'a> {
    setup: &'a dyn Fn(&mut Runtime) -> Vec<AgentId>,
    traffic: &'a dyn Fn(u64, &[AgentId]) -> Vec<M>,
    /// Before tick `t`'s traffic is pushed.
    between: &'a dyn Fn(&mut Runtime, u64, &[AgentId]),
    ticks: u64,
    ring_bytes: usize,
    deep_every_tick: bool,
    snapshot: bool,
}

fn config(record: bool, workers: usize) -> RuntimeConfig {
    RuntimeConfig { workers, max_agents: 4_096, record, fuel_per_call: 400_000_000, deadline_ms: 60_000, ..RuntimeConfig::development() }
}

fn room(js: &mut Producer) -> usize {
    let payload = [0u8; 1024];
    let mut n = 0;
    while js.try_push(ring::TYPE_MESSAGE, 0, 0, 999_999_999, &payload).is_ok() {
        n += 1;
    }
    n
}

fn run(plan: &Plan<'_>, record: bool, workers: usize, feed: Feed) -> Outcome {
    let mut rt = Runtime::new(config(record, workers)).expect("runtime");
    let ids = (plan.setup)(&mut rt);
    let (_region, mut js) = attach_inbound_ring(&mut rt, plan.ring_bytes);
    let mut out = Outcome::default();
    for t in 0..plan.ticks {
        (plan.between)(&mut rt, t, &ids);
        for x in (plan.traffic)(t, &ids) {
            match feed {
                Feed::Ring => js.try_push(ring::TYPE_MESSAGE, x.kind, x.priority, x.to, &x.payload).expect("room in the ring"),
                Feed::Send => rt.send(x.to, x.kind, x.priority, x.payload).expect("send"),
            }
        }
        let r = rt.tick().expect("tick");
        out.ticks.push((r.hash, r.messages_delivered, r.messages_routed, r.dead_letters, r.faults, r.agents_waiting, r.agents_suspended, r.agents_stepped));
        out.host.push(rt.drain_host_messages().into_iter().map(|m| (m.from, m.seq, m.kind, m.payload)).collect());
        out.dead.push(
            rt.drain_dead_letters()
                .into_iter()
                .map(|d| (d.reason, d.message.from, d.message.to, d.message.seq, d.message.kind, d.message.priority, d.message.payload))
                .collect(),
        );
        if plan.deep_every_tick {
            out.deep.push(rt.deep_hash().hash);
        }
    }
    out.deep.push(rt.deep_hash().hash);
    out.agents = rt
        .agent_ids()
        .into_iter()
        .map(|id| {
            let i = rt.inspect(id).unwrap();
            (id, i.state.name().to_string(), i.steps, i.messages_received, i.inbox_len, i.messages_sent, i.fuel_consumed)
        })
        .collect();
    if plan.snapshot {
        let Ok(bytes) = rt.snapshot() else {
            rt.tick().unwrap();
            out.room = if feed == Feed::Ring { room(&mut js) } else { usize::MAX };
            return out; // (a suspended call: no snapshot; the same in every run)
        };
        let mut back =
            Runtime::restore(&bytes, lockstep_core::RestoreOptions { workers, record: false, dev_mode: true, ..Default::default() }).expect("restore");
        let deep = back.deep_hash().hash;
        for &id in &ids {
            if back.inspect(id).is_ok_and(|i| i.state.is_running()) {
                back.send(id, 1, 0, b"after restore".to_vec()).unwrap();
                rt.send(id, 1, 0, b"after restore".to_vec()).unwrap();
            }
        }
        let a = back.tick().unwrap().hash;
        let b = rt.tick().unwrap().hash;
        assert_eq!(a, b, "a restored runtime ticks as the one it was taken from");
        out.restored = Some((deep, a));
    }
    rt.tick().unwrap();
    out.room = if feed == Feed::Ring { room(&mut js) } else { usize::MAX };
    out
}

/// Runs `plan` recorded (staged, 1 worker), and held (not recorded) on 1, 2 and 4 workers,
/// through the ring; with `send_too`, also through `send()` (not recorded, 2 workers).
fn check(plan: &Plan<'_>, send_too: bool, name: &str) -> Outcome {
    let staged = run(plan, true, 1, Feed::Ring);
    for workers in [1, 2, 4] {
        let held = run(plan, false, workers, Feed::Ring);
        same(&held, &staged, &format!("{name}: held on {workers} workers vs staged"));
    }
    let staged4 = run(plan, true, 4, Feed::Ring);
    same(&staged4, &staged, &format!("{name}: staged on 4 workers vs 1"));
    if send_too {
        let sent = run(plan, false, 2, Feed::Send);
        same(&sent, &staged, &format!("{name}: send() vs staged ring"));
    }
    staged
}

fn nothing(_: &mut Runtime, _: u64, _: &[AgentId]) {}

// ----- agents --------------------------------------------------------------------------------

fn folder2() -> Vec<u8> {
    folding_agent(2, 4096, 3)
}

/// ABI 2 agent that, in its step, sends `count` messages to `id + 1` (kinds 1, priorities
/// 5, -3, 0, … in turn) on ticks where `tick % every == 0`; it receives nothing of note.
fn relay_agent(count: u32, every: u64) -> Vec<u8> {
    sender_agent(
        2,
        &format!(
            r#"(func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (local $i i32) (local $id i64)
    (local.set $id (i64.load offset=16 (local.get $ctx)))
    (if (i64.ne (i64.rem_u (i64.load offset=8 (local.get $ctx)) (i64.const {every})) (i64.const 0)) (then (return (i32.const 0))))
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (i32.const {count})))
      (i64.store (i32.const 0) (local.get $id))
      (i32.store (i32.const 8) (local.get $i))
      (drop (call $send (i64.add (local.get $id) (i64.const 1)) (i32.const 1)
        (i32.sub (i32.mul (i32.rem_u (local.get $i) (i32.const 3)) (i32.const 4)) (i32.const 3)) (i32.const 0) (i32.const 12)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    i32.const 0)"#
        ),
    )
}

// ----- traffic -------------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn len_of(r: &mut Rng) -> usize {
    const LENS: [usize; 14] = [0, 1, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 100, 1000];
    match r.next(40) {
        0 => 5_000 + r.next(3) as usize,
        1 => 0,
        _ => LENS[r.next(LENS.len() as u64) as usize],
    }
}

fn payload(r: &mut Rng, len: usize) -> Vec<u8> {
    let s = r.next(256) as u8;
    (0..len).map(|i| s.wrapping_add(i as u8).wrapping_mul(13)).collect()
}

/// `n` messages over `ids`; priorities: per recipient index, falling (k % 4 == 1), rising
/// (k % 4 == 2), random (k % 4 == 3), 0 otherwise; `unknown`: ids 0, past the last, u64::MAX
/// mixed in.
fn mixed(t: u64, ids: &[AgentId], n: usize, unknown: bool) -> Vec<M> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let last = *ids.iter().max().unwrap();
    (0..n)
        .map(|i| {
            if unknown && r.next(50) == 0 {
                let to = [0, last + 1 + r.next(5), u64::MAX][r.next(3) as usize];
                let len = len_of(&mut r);
                return m(to, 1, 0, payload(&mut r, len));
            }
            let k = r.next(ids.len() as u64) as usize;
            let priority = match k % 4 {
                1 => -((i / 64) as i32),
                2 => (i / 64) as i32,
                3 => r.next(7) as i32 - 3,
                _ => 0,
            };
            let len = len_of(&mut r);
            m(ids[k], (r.next(3)) as u32, priority, payload(&mut r, len))
        })
        .collect()
}

// ----- the attacks ---------------------------------------------------------------------------

/// Several phases (priorities and DAG levels), fan-in barriers that wait on alternate ticks
/// (their inboxes keep the ring's records), relays whose messages reach later phases in the
/// same tick, ABI 1 agents, ids that are no agent, every payload length class.
#[test]
fn phases_dag_barriers_and_relays_held_like_staged_and_sent() {
    let setup = |rt: &mut Runtime| -> Vec<AgentId> {
        let v2 = rt.load_module(folder2()).unwrap();
        let v1 = rt.load_module(folding_agent(1, 4096, 3)).unwrap();
        let relay = rt.load_module(relay_agent(3, 2)).unwrap();
        let spray = rt.load_module(spraying_agent(40, 60, 2, 7)).unwrap();
        let mut ids = Vec::new();
        for k in 0..60 {
            let id = match k % 10 {
                0 => rt.spawn_with_priority(v2, 9).unwrap(),
                1 => rt.spawn_with_priority(v2, -4).unwrap(),
                2 => rt.spawn_with_priority(v1, 9).unwrap(),
                3 => rt.spawn_with_priority(spray, 9).unwrap(),
                4 => {
                    // A relay, and the barrier after it (id + 1): the relay sends it something
                    // on even ticks only.
                    let u = rt.spawn_with_priority(relay, 9).unwrap();
                    ids.push(u);
                    rt.spawn_after(v2, 9, &[u], Trigger::All).unwrap()
                }
                5 => {
                    let u = rt.spawn_with_priority(relay, 0).unwrap();
                    ids.push(u);
                    rt.spawn_after(v2, 2, &[u], Trigger::Any).unwrap()
                }
                _ => rt.spawn(v2).unwrap(),
            };
            ids.push(id);
        }
        // A barrier at level 0 (no upstream agent: never waits), and a level-2 agent.
        let lone = rt.spawn(v2).unwrap();
        rt.set_trigger(lone, Trigger::All).unwrap();
        ids.push(lone);
        let deep = rt.spawn_after(v2, 0, &[ids[5], ids[6]], Trigger::All).unwrap();
        ids.push(deep);
        ids
    };
    let traffic = |t: u64, ids: &[AgentId]| match t {
        2 => mixed(t, ids, 100, true), // a small tick: routed in order
        5 => Vec::new(),
        _ => mixed(t, ids, 9_000 + 2_000 * t as usize, true),
    };
    let known = |t: u64, ids: &[AgentId]| traffic(t, ids).into_iter().filter(|x| ids.contains(&x.to)).collect();
    let plan = Plan { setup: &setup, traffic: &traffic, between: &nothing, ticks: 8, ring_bytes: 32 << 20, deep_every_tick: true, snapshot: true };
    let staged = check(&plan, false, "phases with unknown ids");
    assert!(staged.ticks.iter().any(|t| t.5 > 0), "barriers waited: {:?}", staged.ticks.iter().map(|t| t.5).collect::<Vec<_>>());
    assert!(staged.dead.iter().flatten().any(|d| d.0 == DeadLetterReason::UnknownRecipient));
    let plan = Plan { traffic: &known, ..plan };
    check(&plan, true, "phases, known ids");
}

/// Faults with held records: in the middle of a batch far beyond the 64 KiB io buffer (third
/// batch), with a done count of u32::MAX, in the step after a clean receive, after junk over
/// the io buffer between batches, after memory growth; ABI 1 too. Later ticks' records to the
/// faulted agents are dead letters.
#[test]
fn faults_mid_batch_and_in_step_with_held_records() {
    let setup = |rt: &mut Runtime| -> Vec<AgentId> {
        let v2 = rt.load_module(folder2()).unwrap();
        let v1 = rt.load_module(folding_agent(1, 4096, 3)).unwrap();
        // io buffer right at the end of its memory (2 pages: 131,072 - 65,544).
        let edge = rt.load_module(folding_agent(2, 131_072 - 65_544, 2)).unwrap();
        // The faulting ones in the first phase (their turns take the ring's records).
        let mut ids: Vec<AgentId> = (0..30).map(|k| rt.spawn_with_priority(if k == 7 { v1 } else { v2 }, if k <= 8 { 2 } else { k % 3 }).unwrap()).collect();
        ids.push(rt.spawn_with_priority(edge, 2).unwrap());
        ids
    };
    let traffic = |t: u64, ids: &[AgentId]| -> Vec<M> {
        let mut r = Rng(77 + t);
        let mut out = Vec::new();
        for i in 0..6_000usize {
            let k = i % ids.len();
            let len = match k {
                1..=6 | 30 => 4_000 + (i % 13), // ~50 records each: 3-4 io batches
                _ => len_of(&mut r),
            };
            // The 35th record of agent k (its 3rd batch), on the listed ticks.
            let nth = i / ids.len();
            let kind = match (k, t, nth) {
                (1, 1, 35) => 99,
                (2, 1, 35) => 55,
                (3, 1, 35) => 77,
                (4, 1, 20) | (4, 2, 5) => 44,
                (5, 1, 10) | (30, 1, 3) => 33,
                (30, 2, 40) => 99,
                (7, 1, 100) => 99,
                (8, 3, 0) => 77,
                _ => (i % 3) as u32,
            };
            out.push(m(ids[k], kind, 0, payload(&mut r, len)));
        }
        out
    };
    let plan = Plan { setup: &setup, traffic: &traffic, between: &nothing, ticks: 5, ring_bytes: 64 << 20, deep_every_tick: true, snapshot: true };
    let staged = check(&plan, true, "faults");
    let faults: u32 = staged.ticks.iter().map(|t| t.4).sum();
    assert!(faults >= 6, "the agents faulted: {:?}", staged.ticks.iter().map(|t| t.4).collect::<Vec<_>>());
    let reasons: std::collections::BTreeSet<_> = staged.dead.iter().flatten().map(|d| format!("{:?}", d.0)).collect();
    assert!(reasons.len() >= 2, "{reasons:?}");
}

/// Tick sizes at every boundary: 4,095 / 4,096 records (grouping), 8,191 / 8,192 (parallel
/// routing), 65,536 (one walk, all held) / 65,537 (two walks: none held), all 65,536 to one
/// agent (`MAX_INBOX_MESSAGES` exactly), exactly 8 MiB of payload in one walk and 8 MiB + 1.
#[test]
fn batch_and_inbox_boundaries() {
    let setup = |rt: &mut Runtime| -> Vec<AgentId> {
        let v2 = rt.load_module(folder2()).unwrap();
        (0..16).map(|k| rt.spawn_with_priority(v2, k % 2).unwrap()).collect()
    };
    let traffic = |t: u64, ids: &[AgentId]| -> Vec<M> {
        let spread = |n: usize, len: usize| (0..n).map(|i| m(ids[i % ids.len()], 1, 0, vec![(i % 251) as u8; len])).collect::<Vec<_>>();
        match t {
            0 => spread(4_095, 3),
            1 => spread(4_096, 3),
            2 => spread(8_191, 9),
            3 => spread(8_192, 9),
            4 => spread(65_536, 1),
            5 => spread(65_537, 1),
            6 => (0..65_536).map(|i| m(ids[3], 2, 0, vec![i as u8; (i % 3) as usize])).collect(),
            7 => (0..65_537).map(|i| m(ids[4], 2, 0, vec![i as u8; (i % 2) as usize])).collect(),
            // 8 MiB exactly: 4,096 records of 2,048 bytes.
            8 => spread(4_096, 2_048),
            9 => {
                let mut v = spread(4_096, 2_048);
                v.push(m(ids[0], 1, 0, vec![1]));
                v
            }
            // 8 MiB to one agent (of its 16 MiB inbox), in records over the io buffer's half.
            10 => (0..4_096).map(|i| m(ids[5], 1, -i, vec![i as u8; 2_048])).collect(),
            _ => spread(5_000, 17),
        }
    };
    let plan = Plan { setup: &setup, traffic: &traffic, between: &nothing, ticks: 12, ring_bytes: 64 << 20, deep_every_tick: false, snapshot: true };
    let staged = check(&plan, true, "boundaries");
    assert_eq!(staged.ticks[4].1, 65_536, "all delivered");
}

/// Between ticks: kills, shutdowns, spawns (the slot array grows; a spawn whose init faults),
/// time slices set and removed, edges and triggers changed, the worker count changed; records
/// keep arriving for all of them.
#[test]
fn lifecycle_changes_between_held_ticks() {
    let setup = |rt: &mut Runtime| -> Vec<AgentId> {
        let v2 = rt.load_module(folder2()).unwrap();
        let mut ids: Vec<AgentId> = (0..40).map(|k| rt.spawn_with_priority(v2, (k % 3) - 1).unwrap()).collect();
        // Room for the agents spawned later: their ids are known ahead.
        let next = ids.iter().max().unwrap() + 1;
        ids.extend(next..next + 6);
        ids
    };
    let between = |rt: &mut Runtime, t: u64, ids: &[AgentId]| {
        rt.set_workers(Some(1 + (t as usize * 3) % rt.config().workers)).unwrap();
        match t {
            1 => {
                rt.kill(ids[1]).unwrap();
                rt.shutdown(ids[2]).unwrap();
                rt.set_fuel_per_tick(ids[3], 30_000).unwrap();
                rt.connect(ids[4], ids[5]).unwrap();
                rt.set_trigger(ids[5], Trigger::All).unwrap();
            }
            2 => {
                let v2 = rt.load_module(folder2()).unwrap();
                rt.spawn(v2).unwrap();
                let _ = rt.spawn_bytes(agent("adv_panic_init"));
                rt.spawn_with_priority(v2, 7).unwrap();
                rt.set_fuel_per_tick(ids[6], 25_000).unwrap();
            }
            3 => {
                let v2 = rt.load_module(folder2()).unwrap();
                let _ = rt.set_fuel_per_tick(ids[3], 0); // (refused while a call is suspended)
                rt.disconnect(ids[4], ids[5]).unwrap();
                rt.kill(ids[40]).unwrap();
                rt.spawn(v2).unwrap();
            }
            4 => {
                rt.set_trigger(ids[5], Trigger::Any).unwrap();
                let _ = rt.shutdown(ids[41]);
                let _ = rt.shutdown(ids[42]);
            }
            _ => {}
        }
    };
    let traffic = |t: u64, ids: &[AgentId]| mixed(t, ids, 10_000, true);
    let plan = Plan { setup: &setup, traffic: &traffic, between: &between, ticks: 7, ring_bytes: 32 << 20, deep_every_tick: true, snapshot: true };
    let staged = check(&plan, false, "lifecycle");
    assert!(staged.ticks.iter().any(|t| t.6 > 0), "time slices suspended calls");
}

/// Recording stopped between ticks (from then on records are held), a dashboard tap watched
/// and unwatched: compared with a runtime that records throughout and one that never does;
/// the recording runtime's log replays to the final hash all three reach.
#[test]
fn recording_stopped_and_watching_toggled_between_ticks() {
    let setup = |rt: &mut Runtime| -> Vec<AgentId> {
        let v2 = rt.load_module(folder2()).unwrap();
        (0..50).map(|k| rt.spawn_with_priority(v2, k % 3).unwrap()).collect()
    };
    let watch = |rt: &mut Runtime, t: u64, ids: &[AgentId]| match t {
        3 => rt.watch_agents(&ids[..3]),
        5 => rt.watch_agents(&[]),
        _ => {}
    };
    let stop = |rt: &mut Runtime, t: u64, ids: &[AgentId]| {
        if t == 2 {
            assert!(!rt.stop_recording().unwrap().is_empty());
        }
        watch(rt, t, ids);
    };
    let traffic = |t: u64, ids: &[AgentId]| mixed(t, ids, 8_000, true);
    let plan = Plan { setup: &setup, traffic: &traffic, between: &watch, ticks: 7, ring_bytes: 32 << 20, deep_every_tick: true, snapshot: true };
    let staged = check(&plan, false, "watching toggled");
    let stopping = Plan { between: &stop, ..plan };
    for workers in [1, 2] {
        let cut = run(&stopping, true, workers, Feed::Ring);
        same(&cut, &staged, &format!("recording stopped at tick 2 ({workers} workers)"));
    }
    // The staged run's log replays (record: true all along).
    let mut rt = Runtime::new(config(true, 2)).unwrap();
    let ids = setup(&mut rt);
    let (_region, mut js) = attach_inbound_ring(&mut rt, 32 << 20);
    let mut last = None;
    for t in 0..7 {
        watch(&mut rt, t, &ids);
        for x in traffic(t, &ids) {
            js.try_push(ring::TYPE_MESSAGE, x.kind, x.priority, x.to, &x.payload).unwrap();
        }
        last = Some(rt.tick().unwrap().hash);
    }
    assert_eq!(last.unwrap(), staged.ticks[6].0);
    assert_replays_to(&mut rt, last.unwrap());
}

/// The held ring space comes back every tick: a producer filling the ring between ticks finds
/// the same room with and without holding, even after a tick whose agents faulted mid-batch or
/// waited at a barrier, and the records pushed into that room are all routed next tick.
#[test]
fn held_space_is_always_given_back() {
    const CAP: usize = 4 << 20;
    for record in [true, false] {
        let mut rt = Runtime::new(config(record, 2)).unwrap();
        let v2 = rt.load_module(folder2()).unwrap();
        let relay = rt.load_module(relay_agent(1, 2)).unwrap();
        let mut ids: Vec<AgentId> = (0..20).map(|_| rt.spawn(v2).unwrap()).collect();
        let u = rt.spawn(relay).unwrap();
        ids.push(rt.spawn_after(v2, 0, &[u], Trigger::All).unwrap());
        let (_region, mut js) = attach_inbound_ring(&mut rt, CAP);
        let empty = room(&mut js);
        rt.tick().unwrap();
        let dead = rt.drain_dead_letters().len();
        assert_eq!(dead, empty, "record {record}: the room's records routed");
        for t in 0..6u64 {
            let mut n = 0;
            let mut i = 0usize;
            loop {
                let k = i % ids.len();
                let kind = if t == 2 && k == 3 && i > 3_000 { 99 } else { 1 };
                if js.try_push(ring::TYPE_MESSAGE, kind, 0, ids[k], &vec![i as u8; 40 + i % 50]).is_err() {
                    break;
                }
                n += 1;
                i += 1;
            }
            assert!(n > 4_096, "record {record}, tick {t}: {n} records fit");
            let r = rt.tick().unwrap();
            assert!(r.messages_delivered > 0, "record {record}, tick {t}");
            let again = room(&mut js);
            // Everything pushed was taken and its space given back: the filler now in the ring
            // is what a fresh ring holds, less at most a record lost to a wrap.
            assert!(again + 1 >= empty && again <= empty + 1, "record {record}, tick {t}: {again} of {empty}");
            rt.tick().unwrap();
            rt.drain_dead_letters();
            rt.drain_host_messages();
        }
    }
}

/// A ring broken in the middle of a tick's walk (after the records before the break): no
/// holding, the records before it delivered as staged, the runtime carries on through send().
#[test]
fn a_ring_broken_mid_walk_with_held_ticks_around_it() {
    const CAP: usize = 8 << 20;
    type Run = (Vec<(Digest, u64, u64)>, Digest, Vec<(DeadLetterReason, u64, u64)>);
    let run = |record: bool| -> Run {
        let inbound = OwnedRegion::new(CAP);
        ring::init(&inbound.memory(), CAP).unwrap();
        let mut rt = Runtime::new(config(record, 2)).unwrap();
        let v2 = rt.load_module(folder2()).unwrap();
        let ids: Vec<AgentId> = (0..10).map(|_| rt.spawn(v2).unwrap()).collect();
        rt.attach_inbound_ring(inbound.memory()).unwrap();
        let mut js = Producer::new(inbound.memory()).unwrap();
        let mut out = Vec::new();
        for x in mixed(0, &ids, 6_000, true) {
            js.try_push(ring::TYPE_MESSAGE, x.kind, x.priority, x.to, &x.payload).unwrap();
        }
        let r = rt.tick().unwrap();
        out.push((r.hash, r.messages_delivered, r.dead_letters));
        // 5,000 records of 8 bytes, then one whose length is scribbled over.
        let start = ring::HEADER_BYTES + {
            // Where the next record goes: after what tick 0's records took (the ring is reused
            // from its start only after a wrap; 8 MiB is more than tick 0 used).
            let mut used = 0;
            for x in mixed(0, &ids, 6_000, true) {
                used += ring::record_bytes(x.payload.len());
            }
            used
        };
        for i in 0..5_001u64 {
            js.try_push(ring::TYPE_MESSAGE, 1, 0, ids[(i % 10) as usize], &i.to_le_bytes()).unwrap();
        }
        // SAFETY: the region holds HEADER_BYTES + CAP bytes and outlives `words`; nothing else
        // touches it until the next tick.
        let words = unsafe { std::slice::from_raw_parts_mut(inbound.memory_ptr(), ring::HEADER_BYTES + CAP) };
        let last = start + 5_000 * ring::record_bytes(8);
        words[last..last + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let r = rt.tick().unwrap();
        out.push((r.hash, r.messages_delivered, r.dead_letters));
        assert!(rt.inbound_ring_error().is_some());
        for &id in &ids {
            rt.send(id, 1, 0, b"still".to_vec()).unwrap();
        }
        let r = rt.tick().unwrap();
        out.push((r.hash, r.messages_delivered, r.dead_letters));
        let dead = rt.drain_dead_letters().into_iter().map(|d| (d.reason, d.message.to, d.message.seq)).collect();
        (out, rt.deep_hash().hash, dead)
    };
    let staged = run(true);
    assert_eq!(staged.0[1].1, 5_000, "the records before the break");
    assert_eq!(run(false), staged);
}

/// Two recipients whose runs sit on either side of a parallel routing part's border, and
/// recipients with every priority shape: equal, falling with ties, i32::MAX then i32::MIN,
/// rising only at the last record (the `held_run_bytes` check), on 1..4 workers.
#[test]
fn priority_shapes_of_held_runs() {
    let setup = |rt: &mut Runtime| -> Vec<AgentId> {
        let v2 = rt.load_module(folder2()).unwrap();
        (0..64).map(|_| rt.spawn(v2).unwrap()).collect()
    };
    let traffic = |t: u64, ids: &[AgentId]| -> Vec<M> {
        let mut out = Vec::new();
        for i in 0..12_000usize {
            let k = i % ids.len();
            let nth = (i / ids.len()) as i32;
            let per = (12_000 / ids.len()) as i32;
            let priority = match (k + t as usize) % 8 {
                0 => 0,
                1 => -(nth / 3),
                2 => {
                    if nth == 0 {
                        i32::MAX
                    } else {
                        i32::MIN
                    }
                }
                3 => {
                    if nth == per - 1 {
                        1
                    } else {
                        0
                    }
                } // rises at its last record
                4 => {
                    if nth == 1 {
                        1
                    } else {
                        0
                    }
                }
                5 => i32::MAX - nth,
                6 => nth % 2,
                _ => -nth,
            };
            out.push(m(ids[k], (i % 5) as u32, priority, vec![(i % 256) as u8; i % 23]));
        }
        out
    };
    let plan = Plan { setup: &setup, traffic: &traffic, between: &nothing, ticks: 8, ring_bytes: 16 << 20, deep_every_tick: true, snapshot: false };
    check(&plan, true, "priority shapes");
}

/// Fan-in barriers in the first phase (level 0 cannot wait, but an agent whose upstream is in
/// a later phase of the same level by priority): inboxes kept across ticks, then held again.
/// Also agents whose inbox held a waiting tick's records get the next tick's through the inbox.
#[test]
fn barriers_that_wait_across_ticks_keep_their_records_in_order() {
    let setup = |rt: &mut Runtime| -> Vec<AgentId> {
        let v2 = rt.load_module(folder2()).unwrap();
        let relay = rt.load_module(relay_agent(2, 3)).unwrap();
        let mut ids = Vec::new();
        for k in 0..12 {
            let u = rt.spawn_with_priority(relay, k % 3).unwrap();
            ids.push(u);
            // Waits two ticks of three: its inbox keeps the ring's records meanwhile.
            ids.push(rt.spawn_after(v2, 5 - k % 3, &[u], Trigger::All).unwrap());
        }
        for _ in 0..12 {
            ids.push(rt.spawn_with_priority(v2, 4).unwrap());
        }
        ids
    };
    let traffic = |t: u64, ids: &[AgentId]| mixed(t, ids, 6_000, false);
    let plan = Plan { setup: &setup, traffic: &traffic, between: &nothing, ticks: 9, ring_bytes: 32 << 20, deep_every_tick: true, snapshot: true };
    let staged = check(&plan, true, "barriers across ticks");
    assert!(staged.ticks.iter().filter(|t| t.5 > 0).count() >= 4, "{:?}", staged.ticks.iter().map(|t| t.5).collect::<Vec<_>>());
}

/// A first phase of hundreds of agents, run on the pool (its turns read the held ring on
/// several threads), with a later phase; records for all, ids that are no agent mixed in.
#[test]
fn a_large_first_phase_takes_held_records_on_the_pool() {
    let setup = |rt: &mut Runtime| -> Vec<AgentId> {
        let v2 = rt.load_module(folder2()).unwrap();
        let v1 = rt.load_module(folding_agent(1, 4096, 3)).unwrap();
        (0..400).map(|k| rt.spawn_with_priority(if k % 37 == 5 { v1 } else { v2 }, i32::from(k % 4 != 0)).unwrap()).collect()
    };
    let traffic = |t: u64, ids: &[AgentId]| -> Vec<M> {
        let mut v = mixed(t, ids, 20_000 + 3_000 * t as usize, true);
        // A trap in the middle of one agent's records, on tick 2.
        if t == 2 {
            for x in v.iter_mut().filter(|x| x.to == ids[9]).skip(20).take(1) {
                x.kind = 99;
            }
        }
        v
    };
    let known = |t: u64, ids: &[AgentId]| traffic(t, ids).into_iter().filter(|x| ids.contains(&x.to)).collect();
    let plan = Plan { setup: &setup, traffic: &traffic, between: &nothing, ticks: 5, ring_bytes: 64 << 20, deep_every_tick: true, snapshot: true };
    let staged = check(&plan, false, "a large first phase");
    assert!(staged.ticks.iter().any(|t| t.4 > 0));
    check(&Plan { traffic: &known, ..plan }, true, "a large first phase, known ids");
}

/// Records of exactly `MAX_PAYLOAD_BYTES` (each fills the io buffer alone), one byte less,
/// and none, for first-phase agents; one traps on a full-size record in the middle.
#[test]
fn full_io_buffer_records_held() {
    let setup = |rt: &mut Runtime| -> Vec<AgentId> {
        let v2 = rt.load_module(folder2()).unwrap();
        let edge = rt.load_module(folding_agent(2, 131_072 - 65_544, 2)).unwrap();
        let mut ids: Vec<AgentId> = (0..8).map(|_| rt.spawn_with_priority(v2, 1).unwrap()).collect();
        ids.push(rt.spawn_with_priority(edge, 1).unwrap());
        ids.extend((0..8).map(|_| rt.spawn(v2).unwrap()));
        ids
    };
    let max = lockstep_core::abi::MAX_PAYLOAD_BYTES;
    let traffic = move |t: u64, ids: &[AgentId]| -> Vec<M> {
        let mut v = Vec::new();
        for i in 0..4_200usize {
            let k = i % ids.len();
            let len = match (k, i / ids.len()) {
                (0..=3 | 8, n) if n % 40 == 0 => max,
                (0..=3 | 8, n) if n % 40 == 1 => max - 1,
                (0..=3 | 8, n) if n % 40 == 2 => max - 8,
                (4 | 5, _) => 0,
                (6, n) => n % 8,
                _ => 33,
            };
            let kind = if t == 1 && k == 2 && i / ids.len() == 40 { 99 } else { 1 };
            v.push(m(ids[k], kind, 0, vec![(i % 255) as u8; len]));
        }
        v
    };
    let plan = Plan { setup: &setup, traffic: &traffic, between: &nothing, ticks: 3, ring_bytes: 64 << 20, deep_every_tick: true, snapshot: true };
    let staged = check(&plan, true, "full io buffer records");
    assert_eq!(staged.ticks[1].4, 1, "the trap");
}

/// Random sessions: agents of every kind (ABI 1 and 2, relays, sprayers, DAG agents with
/// either trigger, time slices, every priority), random traffic around every size threshold
/// with rare traps (in receive, with a u32::MAX done count, in the step), junk over the io
/// buffer and memory growth; between ticks random kills, shutdowns, edges, triggers, slices and
/// worker counts. Held on 1, 2 and 4 workers must tick as staged.
#[test]
fn random_sessions_held_like_staged() {
    for seed in 1..=6u64 {
        let setup = move |rt: &mut Runtime| -> Vec<AgentId> {
            let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let v2 = rt.load_module(folder2()).unwrap();
            let v1 = rt.load_module(folding_agent(1, 4096, 3)).unwrap();
            let relay = rt.load_module(relay_agent(2, 2)).unwrap();
            let n = 20 + r.next(180) as usize;
            let spray = rt.load_module(spraying_agent(30, n as u64, 1, 5)).unwrap();
            let mut ids: Vec<AgentId> = Vec::new();
            for _ in 0..n {
                let priority = r.next(5) as i32 - 2;
                let id = match r.next(20) {
                    0 | 1 => rt.spawn_with_priority(v1, priority).unwrap(),
                    2 => rt.spawn_with_priority(relay, priority).unwrap(),
                    3 => rt.spawn_with_priority(spray, priority).unwrap(),
                    4 | 5 if !ids.is_empty() => {
                        let up = ids[r.next(ids.len() as u64) as usize];
                        let trigger = if r.next(2) == 0 { Trigger::All } else { Trigger::Any };
                        match rt.spawn_after(v2, priority, &[up], trigger) {
                            Ok(id) => id,
                            Err(_) => rt.spawn_with_priority(v2, priority).unwrap(),
                        }
                    }
                    _ => rt.spawn_with_priority(v2, priority).unwrap(),
                };
                if r.next(25) == 0 {
                    let _ = rt.set_fuel_per_tick(id, 20_000 + r.next(60_000));
                }
                ids.push(id);
            }
            ids
        };
        let traffic = move |t: u64, ids: &[AgentId]| -> Vec<M> {
            let mut r = Rng((seed << 32 | t).wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
            let n = match r.next(8) {
                0 => 0,
                1 => 4_095,
                2 => 4_096,
                3 => 100,
                _ => 5_000 + r.next(30_000) as usize,
            };
            let mut v = mixed(t + seed * 100, ids, n, r.next(2) == 0);
            for x in v.iter_mut() {
                if r.next(6_000) == 0 {
                    x.kind = [99, 77, 55, 44, 33][r.next(5) as usize];
                }
            }
            v
        };
        let between = move |rt: &mut Runtime, t: u64, ids: &[AgentId]| {
            let mut r = Rng((seed << 40 | t).wrapping_mul(0xd6e8_feb8_6659_fd93) | 1);
            rt.set_workers(if r.next(3) == 0 { None } else { Some(1 + r.next(rt.config().workers as u64) as usize) }).unwrap();
            for _ in 0..r.next(4) {
                let a = ids[r.next(ids.len() as u64) as usize];
                let b = ids[r.next(ids.len() as u64) as usize];
                match r.next(7) {
                    0 => drop(rt.kill(a)),
                    1 => drop(rt.shutdown(a)),
                    2 => drop(rt.connect(a, b)),
                    3 => drop(rt.disconnect(a, b)),
                    4 => drop(rt.set_trigger(a, if r.next(2) == 0 { Trigger::All } else { Trigger::Any })),
                    5 => drop(rt.set_fuel_per_tick(a, [0, 30_000][r.next(2) as usize])),
                    _ => drop(rt.send(a, 2, 1, vec![7; r.next(100) as usize])),
                }
            }
        };
        let plan = Plan { setup: &setup, traffic: &traffic, between: &between, ticks: 8, ring_bytes: 64 << 20, deep_every_tick: true, snapshot: true };
        check(&plan, false, &format!("random session {seed}"));
    }
}

/// Records that are not messages (event records, skipped by the walk but counted against its
/// 65,536) mixed into the inbound ring, at the one-walk boundary; an agent whose io buffer is
/// not 8-aligned; the inbound ring swapped for a new one between ticks.
#[test]
fn skipped_records_unaligned_io_and_a_swapped_ring() {
    const CAP: usize = 16 << 20;
    type Run = (Vec<(Digest, u64, u64)>, Vec<Host>, Vec<(DeadLetterReason, u64, u64)>, Digest);
    let run = |record: bool, workers: usize| -> Run {
        let mut rt = Runtime::new(config(record, workers)).unwrap();
        let v2 = rt.load_module(folder2()).unwrap();
        let odd = rt.load_module(folding_agent(2, 4_099, 3)).unwrap();
        let mut ids: Vec<AgentId> = (0..6).map(|_| rt.spawn_with_priority(v2, 1).unwrap()).collect();
        ids.extend((0..3).map(|_| rt.spawn_with_priority(odd, 1).unwrap()));
        ids.push(rt.spawn(v2).unwrap());
        let mut out = Vec::new();
        let mut host = Vec::new();
        let mut regions: Vec<OwnedRegion> = Vec::new();
        for t in 0..6u64 {
            // A fresh ring every other tick.
            if t % 2 == 0 {
                let region = OwnedRegion::new(CAP);
                ring::init(&region.memory(), CAP).unwrap();
                rt.attach_inbound_ring(region.memory()).unwrap();
                regions.push(region);
            }
            let mut js = Producer::new(regions.last().unwrap().memory()).unwrap();
            let (messages, events): (usize, usize) = match t {
                0 => (65_535, 1),
                1 => (65_536, 1),
                2 => (5_000, 3_000),
                3 => (65_536, 0),
                _ => (6_000, 10),
            };
            let total = messages + events;
            let every = total.checked_div(events).map_or(usize::MAX, |e| e.max(1));
            let mut e = 0;
            for i in 0..total {
                if e < events && (i % every == every - 1 || total - i <= events - e) {
                    js.try_push(ring::TYPE_EVENT, 0, 0, 0, b"{}").unwrap();
                    e += 1;
                } else {
                    let k = i % ids.len();
                    js.try_push(ring::TYPE_MESSAGE, (i % 4) as u32, 0, ids[k], &vec![i as u8; (i * 7) % 61]).unwrap();
                }
            }
            let r = rt.tick().unwrap();
            out.push((r.hash, r.messages_delivered, r.dead_letters));
            host.extend(rt.drain_host_messages().into_iter().map(|m| (m.from, m.seq, m.kind, m.payload)));
        }
        let dead = rt.drain_dead_letters().into_iter().map(|d| (d.reason, d.message.to, d.message.seq)).collect();
        (out, host, dead, rt.deep_hash().hash)
    };
    let staged = run(true, 1);
    for workers in [1, 2, 4] {
        let held = run(false, workers);
        assert_eq!(held.0, staged.0, "ticks ({workers} workers)");
        assert!(held.1 == staged.1, "what agents were handed ({workers} workers)");
        assert_eq!(held.2, staged.2, "dead letters ({workers} workers)");
        assert_eq!(held.3, staged.3, "memory ({workers} workers)");
    }
}

/// A small inbound ring that wraps every other tick: held records on both sides of the wrap
/// (padding at its end), read in the turns after routing.
#[test]
fn held_records_across_the_rings_wrap() {
    let setup = |rt: &mut Runtime| -> Vec<AgentId> {
        let v2 = rt.load_module(folder2()).unwrap();
        (0..24).map(|k| rt.spawn_with_priority(v2, i32::from(k % 5 != 0)).unwrap()).collect()
    };
    let traffic = |t: u64, ids: &[AgentId]| mixed(t, ids, 4_500 + 300 * (t as usize % 4), false);
    let plan = Plan { setup: &setup, traffic: &traffic, between: &nothing, ticks: 12, ring_bytes: 2 << 20, deep_every_tick: true, snapshot: false };
    check(&plan, true, "wrapping ring");
}

/// A producer on another thread pushing into a small ring while ticks run (as JS does during
/// `tickAsync`): every record is delivered once, in ring order, whatever the ticks' cuts; the
/// agents' folds (order-sensitive: sequence numbers and payloads) equal those of a runtime
/// that stages every record, and the ring is never overrun (a held record's space is not
/// handed back early: an overwritten payload would change a fold).
#[test]
fn a_concurrent_producer_never_overwrites_held_records() {
    const CAP: usize = 512 << 10;
    const N: u64 = 200_000;
    let run = |record: bool, workers: usize| -> Vec<Vec<u8>> {
        let mut rt = Runtime::new(config(record, workers)).unwrap();
        let v2 = rt.load_module(folder2()).unwrap();
        let ids: Vec<AgentId> = (0..16).map(|k| rt.spawn_with_priority(v2, i32::from(k % 4 != 0)).unwrap()).collect();
        let region = OwnedRegion::new(CAP);
        ring::init(&region.memory(), CAP).unwrap();
        rt.attach_inbound_ring(region.memory()).unwrap();
        let mut js = Producer::new(region.memory()).unwrap();
        let targets = ids.clone();
        let producer = std::thread::spawn(move || {
            for i in 0..N {
                let to = targets[((i * 7) % 16) as usize];
                let payload: Vec<u8> = (0..(i % 41)).map(|b| (b ^ i) as u8).collect();
                while js.try_push(ring::TYPE_MESSAGE, 1, 0, to, &payload).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        let mut delivered = 0;
        let mut idle = 0;
        while delivered < N && idle < 200_000 {
            // Lets the producer fill the ring: ticks of thousands of records, held.
            std::thread::sleep(std::time::Duration::from_micros(300));
            let r = rt.tick().unwrap();
            delivered += r.messages_delivered;
            assert_eq!(r.dead_letters, 0);
            idle = if r.messages_delivered == 0 { idle + 1 } else { 0 };
            rt.drain_host_messages();
        }
        producer.join().unwrap();
        assert_eq!(delivered, N, "record {record}: every record once");
        rt.tick().unwrap();
        ids.iter().map(|&id| rt.read_memory(id, 100, 16).unwrap()).collect()
    };
    let staged = run(true, 1);
    for (record, workers) in [(false, 1), (false, 2), (false, 4), (true, 2)] {
        assert_eq!(run(record, workers), staged, "record {record}, {workers} workers");
    }
}

/// A journaled runtime (which records, so stages every record) and one that holds them tick
/// alike; the journal recovers to the same state.
#[test]
fn a_journaled_runtime_ticks_like_one_that_holds() {
    let dir = std::env::temp_dir().join(format!("lockstep-redteam-held-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let drive = |rt: &mut Runtime| -> (Vec<Digest>, Digest, OwnedRegion) {
        let v2 = rt.load_module(folder2()).unwrap();
        let ids: Vec<AgentId> = (0..30).map(|k| rt.spawn_with_priority(v2, k % 3).unwrap()).collect();
        let (region, mut js) = attach_inbound_ring(rt, 16 << 20);
        let mut hashes = Vec::new();
        for t in 0..5 {
            for x in mixed(t, &ids, 7_000, true) {
                js.try_push(ring::TYPE_MESSAGE, x.kind, x.priority, x.to, &x.payload).unwrap();
            }
            hashes.push(rt.tick().unwrap().hash);
        }
        (hashes, rt.state_hash(), region)
    };
    let mut journaled = Runtime::new(RuntimeConfig { journal: Some(lockstep_core::JournalConfig::new(&dir)), ..config(false, 2) }).unwrap();
    let (a, state, _r1) = drive(&mut journaled);
    journaled.sync_journal().unwrap();
    drop(journaled);
    let mut held = Runtime::new(config(false, 2)).unwrap();
    let (b, held_state, _r2) = drive(&mut held);
    assert_eq!(a, b, "journaled (staged) vs held");
    assert_eq!(state, held_state);
    let (recovered, _) = Runtime::recover(&dir, lockstep_core::RecoverOptions { workers: 2, ..Default::default() }).unwrap();
    assert_eq!(recovered.state_hash(), state, "the journal recovers the session");
    drop(recovered);
    let _ = std::fs::remove_dir_all(&dir);
}
