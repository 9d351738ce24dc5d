//! Red team of `scheduler::route_in_parallel` as rewritten to sort a phase's messages by
//! recipient part once (a chunk of senders per thread), deliver each part's messages chunk
//! after chunk, and merge what left the agents with what was refused, by message place.
//!
//! Every scenario plays one session on 1 worker and on several, and requires the same tick
//! hashes, report counts, dead letters (in order, with their reasons), host messages (in
//! order), events, `inspect()` counters, deep hash, agent states, queue drops and, per tick,
//! every agent's digest of what it received (sender, recipient, seq, kind, priority, length
//! and payload head of each message, in delivery order: so an inbox that got a different set
//! of messages, or one twice, shows even where the tick hash does not look); and the log of
//! every N-worker session must replay on 1 worker to the same final hash.
//!
//! The agents are built from one parametrized WAT template (`actor`): its `agent_step` sends
//! `count` messages whose recipient, priority and length are WAT expressions of the message
//! index `$i`, the agent's id `$id`, the tick `$t` and the highest id `$max`; its
//! `agent_receive_batch` folds every message it is handed into an FNV digest at `DIGEST_AT`.

mod common;
use common::*;
use lockstep_core::{replay, AgentId, DeadLetterReason, Digest, Message, Runtime, RuntimeConfig, Trigger};

/// Where an actor keeps its digest of what it received (u64) and how many messages (u64).
const DIGEST_AT: u64 = 70_000;
/// Where an actor keeps a table of recipients some scenarios index (8 x u64).
const TABLE_AT: u64 = 80_000;

/// The message index as an i64 (for recipient expressions).
const I: &str = "(i64.extend_i32_u (local.get $i))";
/// The agent's id, the tick and the highest agent id so far (i64 locals of `agent_step`).
const ID: &str = "(local.get $id)";
const T: &str = "(local.get $t)";

/// What an actor does; every field is WAT spliced into the module.
struct Actor<'a> {
    /// i32: how many messages `agent_step` sends (past the outbox's 4,096 / 1 MiB, `send`
    /// refuses, harmlessly).
    count: &'a str,
    /// i64: the recipient of message `$i`.
    to: &'a str,
    /// i32: its priority.
    prio: &'a str,
    /// i32: its payload length (the payload is memory from 0: id, index, tick, then whatever
    /// memory holds, which is deterministic).
    len: &'a str,
    /// Run after the sends (a trap, a spin).
    tail: &'a str,
    /// Run after each received message is folded in (a trap after so many).
    on_receive: &'a str,
    /// Module-level extras (data segments).
    extra: &'a str,
}

impl Default for Actor<'_> {
    fn default() -> Self {
        Actor { count: "(i32.const 0)", to: "(i64.const 0)", prio: "(i32.const 0)", len: "(i32.const 16)", tail: "", on_receive: "", extra: "" }
    }
}

fn actor(a: Actor<'_>) -> Vec<u8> {
    let Actor { count, to, prio, len, tail, on_receive, extra } = a;
    sender_agent(
        2,
        &format!(
            r#"{extra}
  (func $mix (param $v i64)
    (i64.store (i32.const {DIGEST_AT}) (i64.mul (i64.xor (i64.load (i32.const {DIGEST_AT})) (local.get $v)) (i64.const 1099511628211))))
  (func (export "agent_receive_batch") (param $p i32) (param $count i32) (result i32)
    (local $k i32) (local $len i32)
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $k) (local.get $count)))
      (local.set $len (i32.load offset=32 (local.get $p)))
      (call $mix (i64.load (local.get $p)))
      (call $mix (i64.load offset=8 (local.get $p)))
      (call $mix (i64.load offset=16 (local.get $p)))
      (call $mix (i64.load offset=24 (local.get $p)))
      (call $mix (i64.extend_i32_u (local.get $len)))
      (if (i32.ge_u (local.get $len) (i32.const 16)) (then
        (call $mix (i64.load offset=40 (local.get $p)))
        (call $mix (i64.load offset=48 (local.get $p)))))
      (i64.store (i32.const {n_at}) (i64.add (i64.load (i32.const {n_at})) (i64.const 1)))
      {on_receive}
      (local.set $p (i32.and (i32.add (i32.add (local.get $p) (local.get $len)) (i32.const 47)) (i32.const -8)))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (i32.store (i32.const 66560) (local.get $k))
      (br $next)))
    i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (local $i i32) (local $n i32) (local $id i64) (local $t i64) (local $max i64)
    (local.set $id (i64.load offset=16 (local.get $ctx)))
    (local.set $t (i64.load offset=8 (local.get $ctx)))
    (local.set $max (i64.load offset=24 (local.get $ctx)))
    (local.set $n {count})
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
      (i64.store (i32.const 0) (local.get $id))
      (i32.store (i32.const 8) (local.get $i))
      (i32.store (i32.const 12) (i32.wrap_i64 (local.get $t)))
      (drop (call $send {to} (i32.const 1) {prio} (i32.const 0) {len}))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    {tail}
    i32.const 0)"#,
            n_at = DIGEST_AT + 8,
        ),
    )
}

/// `(i64.rem_u x m)`, for recipient expressions.
fn rem(x: &str, m: u64) -> String {
    format!("(i64.rem_u {x} (i64.const {m}))")
}

/// `a*x + b*y + c*z`-style sums, for recipient expressions.
fn add(a: &str, b: &str) -> String {
    format!("(i64.add {a} {b})")
}

fn mul(a: &str, k: u64) -> String {
    format!("(i64.mul {a} (i64.const {k}))")
}

/// Priorities `i32::MIN`, -2^30, 0, 2^30, `i32::MAX` by message index (wrapping arithmetic).
const PRIO_SPREAD: &str = "(i32.sub (i32.mul (i32.sub (i32.rem_u (local.get $i) (i32.const 5)) (i32.const 2)) (i32.const 1073741824)) (i32.eq (i32.rem_u (local.get $i) (i32.const 5)) (i32.const 4)))";
/// Lengths 0, 8, 16, 24 by message index.
const LEN_SPREAD: &str = "(i32.shl (i32.and (local.get $i) (i32.const 3)) (i32.const 3))";

/// A data segment putting `values` (u64, little-endian) at `TABLE_AT`.
fn table(values: &[u64]) -> String {
    let bytes: String = values.iter().flat_map(|v| v.to_le_bytes()).map(|b| format!("\\{b:02x}")).collect();
    format!(r#"(data (i32.const {TABLE_AT}) "{bytes}")"#)
}

/// Entry `$i % len` of the table at `TABLE_AT`.
fn table_entry(len: u32) -> String {
    format!("(i64.load offset={TABLE_AT} (i32.shl (i32.rem_u (local.get $i) (i32.const {len})) (i32.const 3)))")
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
    /// Per tick, per agent id: its receive digest and count (None once it holds no memory).
    digests: Vec<Vec<Option<Vec<u8>>>>,
    infos: Vec<String>,
    deep: String,
    states: [u64; 5],
    dropped: (u64, u64, u64),
}

/// A played session: what it showed, whether each tick ran on several workers, its log and
/// its last tick's hash.
struct Played {
    o: Outcome,
    parallel: Vec<bool>,
    log: Vec<u8>,
    last: Digest,
}

type Setup<'a> = &'a dyn Fn(&mut Runtime);
type Between<'a> = &'a dyn Fn(&mut Runtime, u64);

fn play(workers: usize, max_agents: u32, ticks: u64, setup: Setup<'_>, between: Between<'_>) -> Played {
    let mut rt = Runtime::new(RuntimeConfig { workers, max_agents, ..RuntimeConfig::development() }).unwrap();
    setup(&mut rt);
    let mut o = Outcome {
        hashes: vec![],
        counts: vec![],
        dead: vec![],
        host: vec![],
        events: vec![],
        digests: vec![],
        infos: vec![],
        deep: String::new(),
        states: [0; 5],
        dropped: (0, 0, 0),
    };
    let mut parallel = Vec::new();
    let mut last = Digest::default();
    for tick in 0..ticks {
        between(&mut rt, tick);
        let r = rt.tick().unwrap();
        last = r.hash;
        parallel.push(r.parallel);
        o.hashes.push(r.hash.to_string());
        o.counts.push((r.fuel, r.messages_routed, r.messages_delivered, r.dead_letters, r.faults, r.agents_waiting, r.agents_suspended));
        o.dead.extend(rt.drain_dead_letters().iter().map(|d| format!("tick {} reason: {:?} {}", d.tick, d.reason, show(&d.message))));
        o.host.extend(rt.drain_host_messages().iter().map(show));
        o.events.extend(rt.drain_events().iter().map(|e| format!("{e:?}")));
        o.digests.push(rt.agent_ids().into_iter().map(|id| rt.read_memory(id, DIGEST_AT, 16).ok()).collect());
    }
    o.infos = rt.agent_ids().into_iter().map(|id| format!("{:?}", rt.inspect(id).unwrap())).collect();
    o.deep = format!("{:?}", rt.checkpoint().hash);
    o.states = rt.agent_state_counts();
    o.dropped = rt.dropped_totals();
    let log = rt.stop_recording().unwrap();
    Played { o, parallel, log, last }
}

/// A message in a line: its header, its payload's length and an FNV hash of the payload (a
/// 16 KiB payload printed whole made comparing thousands of dead letters slow).
fn show(m: &Message) -> String {
    let hash = m.payload.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{}->{} seq {} kind {} prio {} {} bytes {hash:016x}", m.from, m.to, m.seq, m.kind, m.priority, m.payload.len())
}

/// The first place two lists differ, to keep a failure's message readable.
fn first_difference<T: PartialEq + std::fmt::Debug>(what: &str, one: &[T], many: &[T]) -> Option<String> {
    if let Some(i) = one.iter().zip(many).position(|(a, b)| a != b) {
        return Some(format!("{what}[{i}]: 1 worker {:?}, several {:?}", one[i], many[i]));
    }
    (one.len() != many.len()).then(|| format!("{what}: {} on 1 worker, {} on several", one.len(), many.len()))
}

fn assert_same(workers: usize, one: &Outcome, many: &Outcome) {
    let diffs: Vec<String> = [
        first_difference("tick hash", &one.hashes, &many.hashes),
        first_difference("counts", &one.counts, &many.counts),
        first_difference("dead letter", &one.dead, &many.dead),
        first_difference("host message", &one.host, &many.host),
        first_difference("event", &one.events, &many.events),
        first_difference("digests of tick", &one.digests, &many.digests),
        first_difference("inspect", &one.infos, &many.infos),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(diffs.is_empty(), "{workers} workers differ from 1:\n{}", diffs.join("\n"));
    assert_eq!((&many.deep, many.states, many.dropped), (&one.deep, one.states, one.dropped), "{workers} workers: deep hash, states, drops");
}

/// Plays the session on 1 worker and on each of `workers`: every outcome equals the first,
/// every tick of a several-worker session ran on several workers, and each several-worker log
/// replays on one to the same final hash (and the one-worker log on four). Returns the
/// one-worker outcome.
fn same_on_every_worker_count(workers: &[usize], max_agents: u32, ticks: u64, setup: Setup<'_>, between: Between<'_>) -> Outcome {
    let one = play(1, max_agents, ticks, setup, between);
    assert!(one.parallel.iter().all(|p| !p));
    for &n in workers {
        let many = play(n, max_agents, ticks, setup, between);
        assert!(many.parallel.iter().all(|&p| p), "{n} workers: every tick ran on the pool");
        assert_same(n, &one.o, &many.o);
        assert_eq!(many.last, one.last);
        let r = replay(&many.log, 1, |_| {}).unwrap();
        assert_eq!((r.divergence, r.final_hash, r.complete), (None, one.last, true), "the {n}-worker log replays on one");
    }
    // And the other way: the one-worker log replays on 4 workers (routing in parallel).
    let r = replay(&one.log, 4, |_| {}).unwrap();
    assert_eq!((r.divergence, r.final_hash, r.complete), (None, one.last, true), "the one-worker log replays on four");
    one.o
}

fn spawn_n(rt: &mut Runtime, bytes: Vec<u8>, n: usize) -> Vec<AgentId> {
    let m = rt.load_module(bytes).unwrap();
    (0..n).map(|_| rt.spawn(m).unwrap()).collect()
}

fn spawn_n_at(rt: &mut Runtime, bytes: Vec<u8>, n: usize, priority: i32) -> Vec<AgentId> {
    let m = rt.load_module(bytes).unwrap();
    (0..n).map(|_| rt.spawn_with_priority(m, priority).unwrap()).collect()
}

fn dead_letters_with(o: &Outcome, reason: DeadLetterReason) -> usize {
    let needle = format!("reason: {reason:?}");
    o.dead.iter().filter(|d| d.contains(&needle)).count()
}

/// Fewer senders than parts: two agents fill their outboxes (4,096 messages each: exactly
/// the 8,192 that route in parallel; on odd ticks agent 2 sends one fewer, so those ticks
/// route sequentially and the scratch lists sit unused between parallel ticks) among 88 agents
/// that only receive. Recipients cover the host (0), themselves, every slot and ids just past
/// the slot array; priorities and lengths vary. On 64 workers every slot is a part of its own.
#[test]
fn two_full_outboxes_among_idle_agents_fewer_senders_than_parts() {
    let count = "(i32.sub (i32.const 4096) (i32.wrap_i64 (i64.and (local.get $t) (i64.sub (local.get $id) (i64.const 1)))))";
    let to = rem(&add(&add(&mul(I, 7), &mul(ID, 3)), T), 96); // 0..=95; 91..=95 are no agent
    let setup = |rt: &mut Runtime| {
        spawn_n(rt, actor(Actor { count, to: &to, prio: PRIO_SPREAD, len: LEN_SPREAD, ..Actor::default() }), 2);
        spawn_n(rt, actor(Actor::default()), 88);
    };
    let one = same_on_every_worker_count(&[2, 3, 4, 16, 64], 1_024, 6, &setup, &|_, _| {});
    assert_eq!(one.counts[0].1, 8_192);
    assert_eq!(one.counts[1].1, 8_191);
    assert!(dead_letters_with(&one, DeadLetterReason::UnknownRecipient) > 0);
    assert!(!one.host.is_empty());
}

/// Every message of a phase leaves the agents on even ticks (to the host, to the id just past
/// the slot array, to ids past 2^32 and 2^63, to the inference and generation ids): no part
/// gets a message; on odd ticks every message goes to an agent (or one id past them). The
/// host queue and the dead letters keep message order, and the lists of one kind of tick
/// never leak into the next.
#[test]
fn everything_leaves_the_agents_then_nothing_does() {
    let leaving = table(&[0, 101, 102, 1 << 32, (1 << 32) + 1, 1 << 63, u64::MAX, u64::MAX - 1]);
    let to = format!("(if (result i64) (i64.eqz (i64.and {T} (i64.const 1))) (then {}) (else {}))", table_entry(8), rem(&add(I, ID), 102));
    let setup = |rt: &mut Runtime| {
        spawn_n(rt, actor(Actor { count: "(i32.const 100)", to: &to, prio: PRIO_SPREAD, len: LEN_SPREAD, extra: &leaving, ..Actor::default() }), 100);
    };
    let one = same_on_every_worker_count(&[2, 4, 7], 1_024, 6, &setup, &|_, _| {});
    assert!(one.counts.iter().all(|c| c.1 == 10_000));
    assert!(dead_letters_with(&one, DeadLetterReason::UnknownRecipient) > 3 * 6_000);
    assert!(one.host.len() > 3 * 1_000);
}

/// Recipients and senders that stop in the very tick whose messages route in parallel: agents
/// that trap in their step (sending nothing, or after filling their outbox with messages to
/// themselves, the host and others), that trap in delivery halfway through their inbox, that
/// run out of fuel after sending; agents killed and shut down between ticks; agents that send
/// every message to themselves; ids past the slot array.
#[test]
fn recipients_and_senders_that_stop_in_the_routing_tick() {
    let spread = add(&rem(&add(&add(&mul(I, 13), &mul(ID, 7)), T), 210), "(i64.const 1)"); // 1..=210; 201..=210 no agent
    let self_or_spread = format!("(if (result i64) (i32.eqz (i32.rem_u (local.get $i) (i32.const 3))) (then {ID}) (else {spread}))");
    let setup = |rt: &mut Runtime| {
        // 1..=150: sprayers.
        spawn_n(rt, actor(Actor { count: "(i32.const 80)", to: &spread, prio: PRIO_SPREAD, len: LEN_SPREAD, ..Actor::default() }), 150);
        // 151..=160: trap in step at tick 2, having sent nothing.
        spawn_n(rt, actor(Actor { tail: "(if (i64.eq (local.get $t) (i64.const 2)) (then unreachable))", ..Actor::default() }), 10);
        // 161..=170: fill the outbox (a third to themselves), then trap at tick 1 or 3.
        let tail = "(if (i64.eq (local.get $t) (i64.add (i64.const 1) (i64.shl (i64.and (local.get $id) (i64.const 1)) (i64.const 1)))) (then unreachable))";
        spawn_n(rt, actor(Actor { count: "(i32.const 4096)", to: &self_or_spread, prio: PRIO_SPREAD, len: LEN_SPREAD, tail, ..Actor::default() }), 10);
        // 171..=180: trap in delivery at their 1,000th message (during tick 1 or 2).
        spawn_n(
            rt,
            actor(Actor {
                on_receive: &format!("(if (i64.eq (i64.load (i32.const {})) (i64.const 1000)) (then unreachable))", DIGEST_AT + 8),
                ..Actor::default()
            }),
            10,
        );
        // 181..=190: killed (181..=185) and shut down (186..=190) between ticks.
        spawn_n(rt, actor(Actor { count: "(i32.const 500)", to: &spread, ..Actor::default() }), 10);
        // 191..=195: send 4,096 then run out of fuel at tick 3; 196..=200: everything to themselves.
        spawn_n(
            rt,
            actor(Actor {
                count: "(i32.const 4096)",
                to: &spread,
                tail: "(if (i64.eq (local.get $t) (i64.const 3)) (then (loop $l (br $l))))",
                ..Actor::default()
            }),
            5,
        );
        spawn_n(rt, actor(Actor { count: "(i32.const 4096)", to: ID, prio: PRIO_SPREAD, len: LEN_SPREAD, ..Actor::default() }), 5);
    };
    let between = |rt: &mut Runtime, tick: u64| match tick {
        2 => (181..=185).for_each(|id| rt.kill(id).unwrap()),
        3 => (186..=190).for_each(|id| rt.shutdown(id).unwrap()),
        _ => {}
    };
    let one = same_on_every_worker_count(&[2, 4, 7], 1_024, 6, &setup, &between);
    use DeadLetterReason as R;
    for reason in [R::RecipientFaulted, R::RecipientStopped, R::RecipientFaultedDuringDelivery, R::UnknownRecipient] {
        assert!(dead_letters_with(&one, reason) > 0, "the scenario dead-letters {reason:?}");
    }
    assert!(one.counts.iter().map(|c| c.4).sum::<u32>() >= 30, "faults");
}

/// An inbox that fills on the count limit (65,536) at every kind of boundary: 17 senders of
/// a 66-agent phase send their 4,096 messages each to one agent of a later phase (so nothing
/// drains it in between), after the host has put k messages there, k moving the boundary to
/// the first, the last and a middle message of a sender, to exactly full, and to full before
/// the phase routes anything. With 4 workers the 17 senders fall into 14 chunks; on 64, every
/// slot is a part.
#[test]
fn inbox_full_on_the_count_limit_at_every_boundary() {
    const R: AgentId = 67;
    let fills: [usize; 7] = [0, 1, 4_095, 4_096, 4_097 + 8_192, 65_535 - 4_096, 65_536];
    let setup = |rt: &mut Runtime| {
        spawn_n(rt, actor(Actor { count: "(i32.const 4096)", to: &format!("(i64.const {R})"), prio: PRIO_SPREAD, len: LEN_SPREAD, ..Actor::default() }), 17);
        spawn_n(rt, actor(Actor::default()), 49);
        assert_eq!(spawn_n_at(rt, actor(Actor::default()), 1, -1), vec![R]);
    };
    let between = |rt: &mut Runtime, tick: u64| {
        for k in 0..fills[tick as usize] {
            rt.send(R, 2, (k % 7) as i32 - 3, (k as u64).to_le_bytes().repeat(2)).unwrap();
        }
    };
    let one = same_on_every_worker_count(&[2, 4, 64], 1_024, fills.len() as u64, &setup, &between);
    // Per tick: 69,632 routed by the phase, and what did not fit dead-lettered.
    for (tick, &k) in fills.iter().enumerate() {
        let routed = one.counts[tick].1;
        assert_eq!(routed, 17 * 4_096);
        assert_eq!(one.counts[tick].3 as usize, (k + 17 * 4_096).saturating_sub(65_536), "tick {tick}: dead letters");
    }
    assert!(dead_letters_with(&one, DeadLetterReason::RecipientInboxFull) > 0);
}

/// An inbox that fills on the byte limit (16 MiB) with messages of 4 KiB to 16 KiB, so a
/// smaller message still fits after a larger one was refused; the host puts 0 to 16 MiB of
/// 65,000-byte messages there first. Seventy senders, each also sending small messages
/// elsewhere (14,000 messages a phase).
#[test]
fn inbox_full_on_the_byte_limit_with_mixed_sizes() {
    const R: AgentId = 71;
    let fills: [usize; 5] = [0, 1, 100, 250, 258];
    let to =
        format!("(if (result i64) (i32.lt_u (local.get $i) (i32.const 60)) (then (i64.const {R})) (else {}))", add(&rem(&add(I, ID), 75), "(i64.const 1)"));
    let len = "(if (result i32) (i32.lt_u (local.get $i) (i32.const 60)) (then (i32.sub (i32.const 16384) (i32.rem_u (i32.mul (local.get $i) (i32.const 997)) (i32.const 12000)))) (else (i32.const 16)))";
    let setup = |rt: &mut Runtime| {
        spawn_n(rt, actor(Actor { count: "(i32.const 200)", to: &to, prio: PRIO_SPREAD, len, ..Actor::default() }), 70);
        assert_eq!(spawn_n_at(rt, actor(Actor::default()), 1, -1), vec![R]);
    };
    let between = |rt: &mut Runtime, tick: u64| {
        for k in 0..fills[tick as usize] {
            rt.send(R, 2, 0, vec![k as u8; 65_000]).unwrap();
        }
    };
    let one = same_on_every_worker_count(&[2, 4], 1_024, fills.len() as u64, &setup, &between);
    assert!(dead_letters_with(&one, DeadLetterReason::RecipientInboxFull) > 0);
}

/// Inboxes that carry over from tick to tick, so "full" is decided against what earlier ticks
/// left: an agent held at a barrier (trigger `All`, its upstream agent never sends to it) whose
/// inbox fills over five ticks (15,000 messages a tick) and stays full until its upstream
/// agent is killed, and a time-sliced agent that takes only part of its inbox each tick (its
/// receive calls suspend); 100 sprayers, 40,000 messages a tick.
#[test]
fn inboxes_kept_across_ticks_by_a_barrier_and_a_time_slice() {
    const U: AgentId = 101;
    const B: AgentId = 102;
    const S: AgentId = 103;
    let to = format!(
        "(if (result i64) (i32.lt_u (local.get $i) (i32.const 300)) (then (i64.add (i64.const {B}) (i64.and {I} (i64.const 1)))) (else {}))",
        add(&rem(&add(I, ID), 105), "(i64.const 1)")
    );
    let setup = |rt: &mut Runtime| {
        spawn_n(rt, actor(Actor { count: "(i32.const 400)", to: &to, prio: PRIO_SPREAD, len: LEN_SPREAD, ..Actor::default() }), 100);
        assert_eq!(spawn_n(rt, actor(Actor::default()), 3), vec![U, B, S]);
        rt.connect(U, B).unwrap();
        rt.set_trigger(B, Trigger::All).unwrap();
        rt.set_fuel_per_tick(S, 50_000).unwrap();
    };
    let between = |rt: &mut Runtime, tick: u64| {
        if tick == 5 {
            rt.kill(U).unwrap();
        }
    };
    let one = same_on_every_worker_count(&[2, 4], 1_024, 8, &setup, &between);
    assert!(one.counts.iter().any(|c| c.5 > 0), "the barrier held");
    assert!(one.counts.iter().any(|c| c.6 > 0), "the sliced agent suspended");
    assert!(dead_letters_with(&one, DeadLetterReason::RecipientInboxFull) > 0);
}

/// A large slot array with few live agents: 3,000 agents spawned and all but six killed,
/// then 80 sprayers (ids 3,001..=3,080) whose messages go mostly to the dead (stopped), to
/// each other, to the six left alive, and past the array; with 4 workers the sprayers all fall
/// in the last of 16 parts, and most parts hold only dead agents.
#[test]
fn few_live_agents_in_a_large_slot_array() {
    let to = format!(
        "(if (result i64) (i32.eqz (i32.and (local.get $i) (i32.const 3))) (then {}) (else {}))",
        add(&rem(&add(&mul(I, 7), ID), 80), "(i64.const 3001)"),
        add(&rem(&add(&mul(I, 31), &mul(ID, 17)), 3_110), "(i64.const 1)")
    );
    let setup = |rt: &mut Runtime| {
        let idle = spawn_n(rt, actor(Actor::default()), 3_000);
        spawn_n(rt, actor(Actor { count: "(i32.const 150)", to: &to, prio: PRIO_SPREAD, len: LEN_SPREAD, ..Actor::default() }), 80);
        for id in idle.into_iter().filter(|id| id % 500 != 1) {
            rt.kill(id).unwrap();
        }
    };
    let one = same_on_every_worker_count(&[2, 4], 4_096, 4, &setup, &|_, _| {});
    assert!(dead_letters_with(&one, DeadLetterReason::RecipientStopped) > 4 * 6_000);
    assert!(dead_letters_with(&one, DeadLetterReason::UnknownRecipient) > 0);
}

/// The scratch lists reused while everything about the phase changes between ticks: the
/// worker count (forced to 2, 4, 3, back to the scaling's choice), the slot array (agents
/// spawned, so the parts move), the traffic (spread over every id, then three quarters
/// leaving, then into one agent), and ticks too small to route in parallel in between. A
/// stale entry from an earlier tick would deliver a message twice or to the wrong inbox.
#[test]
fn scratch_reused_across_worker_counts_slot_arrays_and_traffic() {
    let count = "(if (result i32) (i64.eq (i64.and (local.get $t) (i64.const 3)) (i64.const 3)) (then (i32.const 50)) (else (i32.const 150)))";
    let spread = format!("(i64.rem_u {} (i64.add (local.get $max) (i64.const 6)))", add(&mul(I, 11), &add(ID, T)));
    let odd = format!(
        "(if (result i64) (i32.eqz (i32.and (local.get $i) (i32.const 3))) (then {}) (else (if (result i64) (i32.eq (i32.and (local.get $i) (i32.const 3)) (i32.const 1)) (then (i64.const 0)) (else (i64.add (local.get $max) (i64.add (i64.const 1) (i64.extend_i32_u (i32.and (local.get $i) (i32.const 1)))))))))",
        add(&rem(T, 7), "(i64.const 1)")
    );
    let to = format!("(if (result i64) (i64.eqz (i64.and {T} (i64.const 1))) (then {spread}) (else {odd}))");
    let sprayer = actor(Actor { count, to: &to, prio: PRIO_SPREAD, len: LEN_SPREAD, ..Actor::default() });
    let setup = |rt: &mut Runtime| {
        spawn_n(rt, sprayer.clone(), 100);
    };
    let between = |rt: &mut Runtime, tick: u64| {
        let most = rt.config().workers;
        let forced = [Some(2), Some(4), Some(3), None, Some(2), Some(4), Some(4), Some(3), None, Some(2)][tick as usize % 10];
        rt.set_workers(forced.map(|n: usize| n.min(most))).unwrap();
        if tick == 2 || tick == 5 || tick == 8 {
            spawn_n(rt, sprayer.clone(), 17);
        }
    };
    let one = same_on_every_worker_count(&[4], 1_024, 11, &setup, &between);
    assert!(one.counts.iter().any(|c| c.1 < 8_192), "some ticks route sequentially");
    assert!(one.counts.iter().filter(|c| c.1 >= 8_192).count() >= 6, "most route in parallel");
}

/// A phase of 2.1 M messages (520 full outboxes): past `MAX_RETAINED_ROUTE_INDEX_BYTES`, the
/// scratch lists are given back after the phase; the next, small parallel phase starts from
/// nothing, and the big one after it grows them again.
#[test]
fn two_million_messages_in_a_phase_trim_the_scratch() {
    let count = "(if (result i32) (i64.eqz (i64.and (local.get $t) (i64.const 1))) (then (i32.const 4096)) (else (i32.const 20)))";
    let to = add(&rem(&add(I, &mul(ID, 5)), 521), "(i64.const 1)"); // 521: no agent
    let setup = |rt: &mut Runtime| {
        spawn_n(rt, actor(Actor { count, to: &to, ..Actor::default() }), 520);
    };
    let one = same_on_every_worker_count(&[4], 1_024, 4, &setup, &|_, _| {});
    assert_eq!(one.counts[0].1, 520 * 4_096);
    assert_eq!(one.counts[1].1, 520 * 20);
}

/// Three phases of one tick with different sender counts (300 small senders; 2 full outboxes
/// among 254 idle agents; 100 senders), so the scratch lists change shape between phases of
/// the same tick; messages to later phases are delivered in the same tick, to earlier ones
/// in the next.
#[test]
fn phases_of_different_shapes_in_one_tick() {
    let setup = |rt: &mut Runtime| {
        let all = 300 + 256 + 100 + 4;
        let spread = add(&rem(&add(&mul(I, 13), &add(ID, T)), all), "(i64.const 0)");
        spawn_n_at(rt, actor(Actor { count: "(i32.const 40)", to: &spread, prio: PRIO_SPREAD, len: LEN_SPREAD, ..Actor::default() }), 300, 2);
        spawn_n_at(rt, actor(Actor { count: "(i32.const 4096)", to: &spread, prio: PRIO_SPREAD, len: LEN_SPREAD, ..Actor::default() }), 2, 1);
        spawn_n_at(rt, actor(Actor::default()), 254, 1);
        spawn_n_at(rt, actor(Actor { count: "(i32.const 100)", to: &spread, prio: PRIO_SPREAD, len: LEN_SPREAD, ..Actor::default() }), 100, 0);
    };
    let one = same_on_every_worker_count(&[2, 4, 7], 1_024, 5, &setup, &|_, _| {});
    assert!(one.counts.iter().all(|c| c.1 == 300 * 40 + 2 * 4_096 + 100 * 100));
}
