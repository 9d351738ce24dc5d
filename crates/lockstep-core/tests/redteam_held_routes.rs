//! Red team of held routes (`held_routes.rs`, issue 13): routed messages of a tick's last
//! phase left in their senders' outboxes until their recipients' turns. Every test runs one
//! scripted session with 1 worker (routing in order, which never holds) and with 2 and 4
//! workers, writing down everything a caller can see (per-tick reports, dead letters, host
//! messages, events, `inspect` and the agent table of every agent after every tick, the deep
//! hash, what the between-tick calls return), and asserts the records are identical.
mod common;
use common::*;
use lockstep_core::{AgentId, Runtime, RuntimeConfig, TickReport, Trigger};

// ----- agents -------------------------------------------------------------------------------

/// A generated agent. Every step it reports its fold (sum, count) to the host (kind 7), then
/// sends `per_step` messages: message `i` goes to `((id * 7 + i * 13 + tick) % modulo) + 1`,
/// kind 1, priority 0, `(i * 5 + id) % 61` payload bytes from memory offset 0 (its id, tick
/// and index first); `each` (WAT statements, run before each send, locals `$i $id $tick` to
/// read and `$to $kind $prio $len` to change) may change that; `after` runs at the end of the
/// step. Its receive folds each message (header, first 300 payload bytes and the last one)
/// into its globals; kind 99 traps at that message, kind 55 stores u32::MAX as the batch's
/// done count then traps, kind 77 makes its next step trap, kind 44 overwrites the io buffer
/// and done word with junk after the batch, kind 33 grows memory by a page. Its
/// `agent_shutdown` sends one message to agent 9.
struct Gen {
    version: u32,
    per_step: u32,
    modulo: u64,
    each: String,
    after: String,
}

impl Gen {
    fn new(version: u32, per_step: u32, modulo: u64) -> Self {
        Gen { version, per_step, modulo, each: String::new(), after: String::new() }
    }
    fn each(mut self, s: &str) -> Self {
        self.each.push_str(s);
        self
    }
    fn after(mut self, s: &str) -> Self {
        self.after.push_str(s);
        self
    }
    fn wasm(&self) -> Vec<u8> {
        let Gen { version, per_step, modulo, each, after } = self;
        let io = 4096u32;
        let done = lockstep_core::abi::BATCH_OFFSET_DONE as u32 + io;
        let io_len = lockstep_core::abi::IO_BUFFER_BYTES + 8;
        wat(&format!(
            r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 3)
  (global $sum (mut i64) (i64.const 0))
  (global $count (mut i64) (i64.const 0))
  (global $die (mut i32) (i32.const 0))
  (global $junk (mut i32) (i32.const 0))
  (func (export "lockstep_abi_version") (result i32) i32.const {version})
  (func (export "lockstep_io_buffer") (result i32) i32.const {io})
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32)
    (i64.store (i32.const 300) (global.get $sum))
    (drop (call $send (i64.const 9) (i32.const 3) (i32.const 1) (i32.const 300) (i32.const 8)))
    i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (local $i i32) (local $to i64) (local $id i64) (local $tick i64) (local $kind i32) (local $prio i32) (local $len i32)
    (if (global.get $die) (then unreachable))
    (local.set $tick (i64.load offset=8 (local.get $ctx)))
    (local.set $id (i64.load offset=16 (local.get $ctx)))
    (i64.store (i32.const 200) (global.get $sum))
    (i64.store (i32.const 208) (global.get $count))
    (drop (call $send (i64.const 0) (i32.const 7) (i32.const 0) (i32.const 200) (i32.const 16)))
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (i32.const {per_step})))
      (local.set $to (i64.add (i64.rem_u (i64.add (i64.add (i64.mul (local.get $id) (i64.const 7)) (i64.mul (i64.extend_i32_u (local.get $i)) (i64.const 13))) (local.get $tick)) (i64.const {modulo})) (i64.const 1)))
      (local.set $kind (i32.const 1))
      (local.set $prio (i32.const 0))
      (local.set $len (i32.rem_u (i32.add (i32.mul (local.get $i) (i32.const 5)) (i32.wrap_i64 (local.get $id))) (i32.const 61)))
      {each}
      (i64.store (i32.const 0) (local.get $id))
      (i64.store (i32.const 8) (local.get $tick))
      (i32.store (i32.const 16) (local.get $i))
      (drop (call $send (local.get $to) (local.get $kind) (local.get $prio) (i32.const 0) (local.get $len)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    {after}
    i32.const 0)
  (func $fold (param $at i32)
    (local $p i32) (local $end i32) (local $kind i32) (local $len i32)
    (local.set $kind (i32.load offset=24 (local.get $at)))
    (if (i32.eq (local.get $kind) (i32.const 99)) (then unreachable))
    (if (i32.eq (local.get $kind) (i32.const 55)) (then (i32.store (i32.const {done}) (i32.const -1)) unreachable))
    (if (i32.eq (local.get $kind) (i32.const 77)) (then (global.set $die (i32.const 1))))
    (if (i32.eq (local.get $kind) (i32.const 44)) (then (global.set $junk (i32.const 1))))
    (if (i32.eq (local.get $kind) (i32.const 33)) (then (drop (memory.grow (i32.const 1)))))
    (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 31)) (i64.load offset=0 (local.get $at))))
    (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 31)) (i64.load offset=8 (local.get $at))))
    (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 31)) (i64.load offset=16 (local.get $at))))
    (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 31)) (i64.load offset=24 (local.get $at))))
    (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 31)) (i64.load offset=32 (local.get $at))))
    (local.set $len (i32.load offset=32 (local.get $at)))
    (local.set $p (i32.add (local.get $at) (i32.const 40)))
    (local.set $end (i32.add (local.get $p) (select (local.get $len) (i32.const 300) (i32.lt_u (local.get $len) (i32.const 300)))))
    (block $b (loop $l
      (br_if $b (i32.ge_u (local.get $p) (local.get $end)))
      (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 131)) (i64.load8_u (local.get $p))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $l)))
    (if (local.get $len) (then
      (global.set $sum (i64.add (i64.mul (global.get $sum) (i64.const 131))
        (i64.load8_u (i32.add (local.get $at) (i32.add (i32.const 39) (local.get $len))))))))
    (global.set $count (i64.add (global.get $count) (i64.const 1))))
  (func (export "agent_receive") (param $at i32) (result i32) (call $fold (local.get $at)) i32.const 0)
  (func (export "agent_receive_batch") (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $at i32)
    (local.set $at (local.get $p))
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
      (call $fold (local.get $at))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (i32.store (i32.const {done}) (local.get $i))
      (local.set $at (i32.add (local.get $at)
        (i32.and (i32.add (i32.add (i32.const 40) (i32.load offset=32 (local.get $at))) (i32.const 7)) (i32.const -8))))
      (br $next)))
    (if (global.get $junk) (then
      (global.set $junk (i32.const 0))
      (memory.fill (i32.const {io}) (i32.const 0xAB) (i32.const {io_len}))
      (i32.store (i32.const {done}) (i32.const 12345))))
    i32.const 0))"#
        ))
    }
}

/// `(if COND (then BODY))` where COND is every one of `conds` (i32 WAT expressions).
fn when(conds: &[String], body: &str) -> String {
    let cond = conds.iter().skip(1).fold(conds[0].clone(), |acc, c| format!("(i32.and {acc} {c})"));
    format!("(if {cond} (then {body}))")
}
fn tick_is(t: u64) -> String {
    format!("(i64.eq (local.get $tick) (i64.const {t}))")
}
fn i_is(i: u32) -> String {
    format!("(i32.eq (local.get $i) (i32.const {i}))")
}
fn i_below(i: u32) -> String {
    format!("(i32.lt_u (local.get $i) (i32.const {i}))")
}
fn id_mod(m: u64, r: u64) -> String {
    format!("(i64.eq (i64.rem_u (local.get $id) (i64.const {m})) (i64.const {r}))")
}
fn to(id: u64, kind: u32) -> String {
    format!("(local.set $to (i64.const {id})) (local.set $kind (i32.const {kind}))")
}

// ----- observing ------------------------------------------------------------------------------

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

type Log = Vec<String>;

fn runtime(workers: usize, record: bool) -> Runtime {
    Runtime::new(RuntimeConfig { workers, max_agents: 2_048, record, ..RuntimeConfig::development() }).unwrap()
}

fn note_report(log: &mut Log, r: &TickReport) {
    log.push(format!(
        "tick {} hash {:?} delivered {} routed {} dead {} faults {} stepped {} waiting {} suspended {} fuel {} digests {:?}",
        r.tick,
        r.hash,
        r.messages_delivered,
        r.messages_routed,
        r.dead_letters,
        r.faults,
        r.agents_stepped,
        r.agents_waiting,
        r.agents_suspended,
        r.fuel,
        fnv(&r.agent_digests.iter().flat_map(|(a, d)| a.to_le_bytes().into_iter().chain(*d)).collect::<Vec<_>>())
    ));
}

/// Everything a caller can read after a tick, read while the tick's routes may be held (in
/// this order: the reads that do not end the holding first).
fn note_all(rt: &mut Runtime, log: &mut Log) {
    for id in rt.agent_ids() {
        let i = rt.inspect(id).unwrap();
        log.push(format!(
            "agent {id}: inbox {} received {} sent {} steps {} state {:?} memory {} fuel {} slice {} suspended {:?}",
            i.inbox_len, i.messages_received, i.messages_sent, i.steps, i.state, i.memory_bytes, i.fuel_consumed, i.fuel_per_tick, i.suspended
        ));
    }
    let table = rt.agent_table();
    log.push(format!("table {:x} {}", fnv(&table.rows), table.rows.len()));
    log.push(format!("states {:?} depths {:?}", rt.agent_state_counts(), rt.queue_depths()));
    for d in rt.drain_dead_letters() {
        let m = &d.message;
        log.push(format!(
            "dead at {} {:?} {} -> {} seq {} kind {} prio {} len {} {:x}",
            d.tick,
            d.reason,
            m.from,
            m.to,
            m.seq,
            m.kind,
            m.priority,
            m.payload.len(),
            fnv(&m.payload)
        ));
    }
    let host = rt.drain_host_messages();
    log.push(format!(
        "host {} {:x}",
        host.len(),
        fnv(&host.iter().flat_map(|m| [m.from, m.seq, u64::from(m.kind), fnv(&m.payload)]).flat_map(u64::to_le_bytes).collect::<Vec<_>>())
    ));
    for e in rt.drain_events() {
        log.push(format!("event {e:?}"));
    }
}

fn tick(rt: &mut Runtime, log: &mut Log) {
    let r = rt.tick().unwrap();
    note_report(log, &r);
    note_all(rt, log);
}

/// Runs `session` with 1, 2 and 4 workers: the records must be the same.
fn compare(name: &str, session: impl Fn(usize) -> Log) {
    let copied = session(1);
    for workers in [2, 4] {
        let held = session(workers);
        let cut = |s: Option<&String>| s.map(|s| s.chars().take(400).collect::<String>());
        if let Some(k) = (0..copied.len().max(held.len())).find(|&k| copied.get(k) != held.get(k)) {
            panic!(
                "{name}: {workers} workers differ from 1 at record {k} of {}:\n   1 worker:  {:?}\n   {workers} workers: {:?}\n  (record before: {:?})",
                copied.len(),
                cut(copied.get(k)),
                cut(held.get(k)),
                k.checked_sub(1).and_then(|j| cut(copied.get(j)))
            );
        }
    }
}

/// 640 agents that send each other 16 messages a step (10,240 a tick: routed in parallel on
/// the pool, so held): most ABI 2, ABI 1 ones (id % 10 == 4), with `mixed` ones with mixed
/// priorities (id % 10 == 5: then most runs are not in delivery order as grouped, and are
/// copied into their inboxes by their turns; without, the ABI 2 turns take their runs
/// straight from the outboxes), and, with `sliced`, time-sliced ones (k % 37 == 8).
fn spawn_mix(rt: &mut Runtime, gen: impl Fn(u32) -> Gen, sliced: bool) -> Vec<AgentId> {
    spawn_mix_of(rt, gen, sliced, true)
}

fn spawn_mix_of(rt: &mut Runtime, gen: impl Fn(u32) -> Gen, sliced: bool, mixed: bool) -> Vec<AgentId> {
    let v2 = rt.load_module(gen(2).wasm()).unwrap();
    let v1 = rt.load_module(gen(1).wasm()).unwrap();
    let mixed_priorities = mixed;
    let mixed = rt
        .load_module(
            gen(2).each("(if (i64.eqz (i64.rem_u (local.get $id) (i64.const 5))) (then (local.set $prio (i32.rem_u (local.get $i) (i32.const 3)))))").wasm(),
        )
        .unwrap();
    (0..640u64)
        .map(|k| {
            let id = match k % 10 {
                3 => rt.spawn(v1).unwrap(),
                4 if mixed_priorities => rt.spawn(mixed).unwrap(),
                _ => rt.spawn(v2).unwrap(),
            };
            if sliced && k % 37 == 8 {
                rt.set_fuel_per_tick(id, 9_000).unwrap();
            }
            id
        })
        .collect()
}

// ----- attacks --------------------------------------------------------------------------------

/// Every public method between ticks while the last tick's routes are held (most of the 640
/// agents are marked recipients after each tick): what each returns, and everything after.
#[test]
fn every_public_method_between_held_ticks() {
    for mixed in [false, true] {
        every_public_method_between_held_ticks_with(mixed);
    }
}

fn every_public_method_between_held_ticks_with(mixed: bool) {
    compare(if mixed { "methods, mixed priorities" } else { "methods" }, |workers| {
        let mut rt = runtime(workers, false);
        let mut log = Log::new();
        let ids = spawn_mix_of(&mut rt, |v| Gen::new(v, 16, 640), false, mixed);
        let plain = rt.load_module(Gen::new(2, 16, 640).wasm()).unwrap();
        // An agent whose init sends 2 messages, to agents 31 and 32.
        let init_sender = rt
            .load_module(wat(r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "lockstep_abi_version") (result i32) i32.const 2)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32)
    (drop (call $send (i64.const 31) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 8)))
    (drop (call $send (i64.const 32) (i32.const 4) (i32.const 9) (i32.const 0) (i32.const 0)))
    i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) i32.const 0)
  (func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0))"#))
            .unwrap();
        let mut restored: Option<Runtime> = None;
        for t in 0..18u64 {
            tick(&mut rt, &mut log);
            if let Some(other) = restored.as_mut() {
                let r = other.tick().unwrap();
                log.push(format!("restored: {:?} {}", r.hash, r.messages_delivered));
            }
            let r = match t {
                0 => format!("{:?} {:?}", rt.kill(5), rt.kill(6)),
                1 => format!("{:?} {:?}", rt.shutdown(7), rt.shutdown(8)),
                2 => {
                    rt.watch_agents(&[10, 11, 12]);
                    String::new()
                }
                3 => {
                    let seen = rt.watched_messages(10).map(|w| format!("{w:?}"));
                    rt.watch_agents(&[]);
                    format!("{:x}", fnv(format!("{seen:?}").as_bytes()))
                }
                4 => format!("{:?}", rt.checkpoint().hash),
                5 => format!("{:?} {:?}", rt.read_memory(20, 0, 8192).map(|m| fnv(&m)), rt.read_memory(5, 0, 8).map(|m| fnv(&m))),
                6 => {
                    let pending: Vec<(AgentId, u64)> = (21..30).map(|a| (a, rt.send_request(a, 4, 1, &[a as u8; 33]).unwrap())).collect();
                    format!("{pending:?} {:?}", rt.take_replies(&pending).len())
                }
                7 => {
                    // A new first phase (a higher priority): the held runs now wait for the
                    // second phase, copied after the first.
                    let a = rt.spawn_with_priority(plain, 5).unwrap();
                    let b = rt.spawn(init_sender).unwrap();
                    format!("{a} {:?} {b}", rt.level(a))
                }
                8 => format!("{:?}", rt.spawn_after(plain, 0, &[22, 23], Trigger::All)),
                9 => {
                    // A snapshot restored elsewhere, ticked alongside from now on.
                    let bytes = rt.snapshot().unwrap();
                    restored = Some(Runtime::restore(&bytes, lockstep_core::RestoreOptions::development()).unwrap());
                    String::new()
                }
                10 => format!("{:?} {:?}", rt.set_fuel_per_tick(26, 9_000), rt.set_fuel_per_tick(27, 9_000)),
                11 => format!("{:?}", rt.set_workers(Some(1))),
                12 => format!("{:?} {:?}", rt.set_workers(None), rt.disconnect(24, 25)),
                13 => format!("{:?} {:?} {:?}", rt.connect(24, 25), rt.set_trigger(25, Trigger::All), rt.edges()),
                14 => format!("{:?} {:?}", rt.kill(641), rt.kill(30)),
                15 => format!("{:?} {:?} {:?} {}", rt.level(25), rt.trigger(25), rt.fuel_per_tick(26), rt.agent_count()),
                16 => format!("{:?}", rt.start_recording().map_err(|e| e.code().to_string())),
                _ => String::new(),
            };
            log.push(format!("after tick {t}: {r}"));
            // Reads between the call and the next tick.
            for a in [5, 7, 9, 10, 20, 22, 25, 26, 31, 640] {
                log.push(format!("{a}: {:?}", rt.inspect(a).map(|i| (i.inbox_len, i.messages_received, i.state))));
            }
        }
        log.push(format!("deep {:?}", rt.deep_hash().hash));
        log.push(format!("ids {:?}", ids.len()));
        log
    });
}

/// Faults in the middle of a delivery taken from the senders' outboxes: a trap (ABI 2 and
/// ABI 1), a trap after claiming u32::MAX handled, junk over the io buffer and done word, a
/// memory grow, a step that traps after a receive; senders that trap right after sending (their
/// messages routed and held, their instances gone); recipients time-sliced.
#[test]
fn faults_mid_batch_and_senders_that_die_in_the_tick() {
    let specials = [
        when(&[tick_is(2), i_is(5), id_mod(50, 1)], &to(13, 99)),
        when(&[tick_is(3), i_is(5), id_mod(50, 2)], &to(14, 99)),
        when(&[tick_is(3), i_is(6), id_mod(50, 3)], &to(27, 55)),
        when(&[tick_is(4), i_is(5), id_mod(50, 4)], &to(41, 44)),
        when(&[tick_is(5), i_is(5), id_mod(50, 5)], &to(55, 33)),
        when(&[tick_is(5), i_is(7), id_mod(50, 6)], &to(69, 77)),
        when(&[tick_is(6), i_is(5), id_mod(50, 7)], &to(9, 99)),
        when(&[tick_is(6), i_is(6), id_mod(50, 8)], &to(24, 55)),
    ]
    .concat();
    let dies = when(&[tick_is(4), id_mod(41, 0)], "unreachable");
    for mixed in [false, true] {
        compare(if mixed { "faults, mixed priorities" } else { "faults" }, |workers| {
            let mut rt = runtime(workers, false);
            let mut log = Log::new();
            spawn_mix_of(&mut rt, |v| Gen::new(v, 16, 640).each(&specials).after(&dies), true, mixed);
            for _ in 0..9 {
                tick(&mut rt, &mut log);
            }
            log.push(format!("deep {:?}", rt.deep_hash().hash));
            log
        });
    }
}

/// Runs of exactly 256 (the most held) and 257 messages of the largest payload, and of empty
/// payloads, to one recipient; to an ABI 1 and a time-sliced recipient; then host messages
/// that fill the inbox behind a held 16 MiB run to its last byte, and one byte past it.
#[test]
fn runs_of_256_and_257_largest_and_empty_payloads() {
    let max = lockstep_core::abi::MAX_PAYLOAD_BYTES as u32;
    assert_eq!(max as usize * 256 <= lockstep_core::abi::MAX_INBOX_BYTES, (max as usize * 257) > lockstep_core::abi::MAX_INBOX_BYTES);
    // `n` largest payloads to `big`, then `n` empty ones to `empty`.
    let sender = |big: u64, empty: u64, n: u32| {
        Gen::new(2, 2 * n, 1)
            .each(&format!("(local.set $to (i64.const {empty})) (local.set $len (i32.const 0))"))
            .each(&when(&[i_below(n)], &format!("(local.set $to (i64.const {big})) (local.set $len (i32.const {max}))")))
            .wasm()
    };
    compare("big runs", |workers| {
        let mut rt = runtime(workers, false);
        let mut log = Log::new();
        // 1..=640: background (the receivers below get nothing of it).
        spawn_mix(&mut rt, |v| Gen::new(v, 16, 640), false);
        let v2 = rt.load_module(Gen::new(2, 16, 640).wasm()).unwrap();
        let v1 = rt.load_module(Gen::new(1, 16, 640).wasm()).unwrap();
        let r1 = rt.spawn(v2).unwrap(); // 641: 256 largest
        let r2 = rt.spawn(v2).unwrap(); // 642: 257 largest
        let r3 = rt.spawn(v2).unwrap(); // 643: 256 empty
        let r4 = rt.spawn(v2).unwrap(); // 644: 257 empty
        let r5 = rt.spawn(v1).unwrap(); // 645: 256 largest, ABI 1
        let r6 = rt.spawn(v2).unwrap(); // 646: 256 empty, time-sliced
        rt.set_fuel_per_tick(r6, 9_000).unwrap();
        let a = rt.load_module(sender(r1, r3, 16)).unwrap();
        let b = rt.load_module(sender(r2, r4, 16)).unwrap();
        let b1 = rt.load_module(sender(r2, r4, 1)).unwrap();
        let c = rt.load_module(sender(r5, r6, 16)).unwrap();
        for (m, n) in [(a, 16), (b, 16), (b1, 1), (c, 16)] {
            for _ in 0..n {
                rt.spawn(m).unwrap();
            }
        }
        for t in 0..5 {
            tick(&mut rt, &mut log);
            if t == 1 {
                // r1's held run is 256 * max bytes: these fill its inbox to the last byte, then
                // one more is refused.
                let room = lockstep_core::abi::MAX_INBOX_BYTES - 256 * max as usize;
                log.push(format!("{:?} {:?}", rt.send(r1, 2, 0, vec![7; room]), rt.send(r1, 2, 0, vec![8])));
            }
            if t == 3 {
                log.push(format!("{:?}", rt.send(r3, 2, 0, vec![])));
            }
        }
        log.push(format!("deep {:?}", rt.deep_hash().hash));
        log
    });
}

/// Phases by agent priority (the held runs of the last phase wait for the first phase of the
/// next tick, or are copied for the later ones), message priorities that rise and fall within
/// each recipient's run, agents that send to themselves.
#[test]
fn priorities_phases_and_self_sends() {
    let wobble = "(local.set $prio (i32.sub (i32.wrap_i64 (i64.rem_u (i64.add (i64.add (local.get $tick) (local.get $id)) (i64.extend_i32_u (local.get $i))) (i64.const 5))) (i32.const 2)))";
    let to_self = "(if (i32.eqz (i32.rem_u (local.get $i) (i32.const 7))) (then (local.set $to (local.get $id))))";
    let flat_self = "(if (i32.eqz (i32.rem_u (local.get $i) (i32.const 5))) (then (local.set $to (local.get $id))))";
    for wobbling in [true, false] {
        compare(if wobbling { "priorities" } else { "self sends" }, |workers| {
            let mut rt = runtime(workers, false);
            let mut log = Log::new();
            let g = |v: u32| if wobbling { Gen::new(v, 20, 700).each(wobble).each(to_self) } else { Gen::new(v, 20, 700).each(flat_self) };
            let v2 = rt.load_module(g(2).wasm()).unwrap();
            let v1 = rt.load_module(g(1).wasm()).unwrap();
            for k in 0..700u64 {
                let priority = if wobbling {
                    match k {
                        0..100 => 2,
                        100..200 => 1,
                        _ => 0,
                    }
                } else {
                    0
                };
                let id = rt.spawn_with_priority(if k % 9 == 4 { v1 } else { v2 }, priority).unwrap();
                if k % 53 == 7 {
                    rt.set_fuel_per_tick(id, 7_000).unwrap();
                }
            }
            for _ in 0..8 {
                tick(&mut rt, &mut log);
            }
            log.push(format!("deep {:?}", rt.deep_hash().hash));
            log
        });
    }
}

/// A recorded session (inputs between held ticks: kills, sends, spawns, graph changes) replays
/// to the same hashes with 1 and 4 workers, whoever recorded it; and a snapshot taken while
/// routes are held restores into a runtime that goes on alike.
#[test]
fn recorded_sessions_replay_alike() {
    compare("replay", |workers| {
        let mut rt = runtime(workers, true);
        let mut log = Log::new();
        let specials = when(&[tick_is(3), i_is(5), id_mod(50, 1)], &to(13, 99));
        spawn_mix(&mut rt, |v| Gen::new(v, 16, 640).each(&specials), false);
        let mut snap = None;
        for t in 0..9u64 {
            tick(&mut rt, &mut log);
            match t {
                1 => rt.kill(33).unwrap(),
                2 => rt.send(34, 5, 3, vec![1; 100]).unwrap(),
                3 => snap = Some((rt.snapshot().unwrap(), rt.current_tick())),
                4 => {
                    rt.connect(35, 36).unwrap();
                }
                5 => rt.shutdown(37).unwrap(),
                _ => {}
            }
        }
        let end = rt.state_hash();
        let recorded = rt.stop_recording().unwrap();
        for w in [1, 4] {
            let r = lockstep_core::replay(&recorded, w, |_| {}).unwrap();
            log.push(format!("replay {w}: {:?} {:?} {}", r.divergence, r.final_hash == end, r.complete));
        }
        let (bytes, at) = snap.unwrap();
        let mut other = Runtime::restore(&bytes, lockstep_core::RestoreOptions::development()).unwrap();
        log.push(format!("restored at {at}: {}", other.current_tick()));
        let r = other.tick().unwrap();
        log.push(format!("restored tick {:?} {}", r.hash, r.messages_delivered));
        log
    });
}

/// A journal with automatic snapshots every 2 ticks and checkpoints every 3: the session
/// recovered from it (with 1, 2 and 4 workers) goes on like the uninterrupted one.
#[test]
fn journal_snapshots_and_recovery() {
    use lockstep_core::journal::{FsyncPolicy, JournalConfig, RecoverOptions};
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = |what: &str| {
        let d = std::env::temp_dir().join(format!("lockstep-redteam-held-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&d);
        d
    };
    let inputs = |rt: &mut Runtime, t: u64| {
        if t == 2 {
            rt.kill(40).unwrap();
        }
        if t == 5 {
            rt.send(41, 2, 0, vec![3; 30]).unwrap();
        }
    };
    compare("journal", |workers| {
        let mut log = Log::new();
        let d = dir("j");
        {
            let journal = JournalConfig { dir: d.clone(), fsync: FsyncPolicy::Off, segment_bytes: 1 << 20, snapshot_interval_ticks: 2 };
            let mut rt = Runtime::new(RuntimeConfig {
                workers,
                max_agents: 2_048,
                checkpoint_interval_ticks: 3,
                journal: Some(journal),
                ..RuntimeConfig::development()
            })
            .unwrap();
            spawn_mix(&mut rt, |v| Gen::new(v, 16, 640), false);
            for t in 0..7 {
                inputs(&mut rt, t);
                tick(&mut rt, &mut log);
            }
        }
        for w in [1, 2, 4] {
            let (mut rt, report) = Runtime::recover(&d, RecoverOptions { workers: w, fsync: FsyncPolicy::Off, ..RecoverOptions::default() }).unwrap();
            log.push(format!("recovered {w}: {:?} {:?}", report.tick, rt.current_tick()));
            for t in rt.current_tick()..10 {
                inputs(&mut rt, t);
                let r = rt.tick().unwrap();
                log.push(format!("recovered {w} tick {t}: {:?}", r.hash));
            }
            log.push(format!("recovered {w} deep {:?}", rt.deep_hash().hash));
        }
        let _ = std::fs::remove_dir_all(&d);
        log
    });
}

/// Inbound ring records between held ticks (they end the holding: admitted against whole
/// inboxes), a ring batch big enough to be grouped and held itself, and ring records to agents
/// whose held runs left their inboxes near full.
#[test]
fn inbound_ring_records_between_held_ticks() {
    compare("ring", |workers| {
        let mut rt = runtime(workers, false);
        let mut log = Log::new();
        let (_region, mut js) = attach_inbound_ring(&mut rt, 4 << 20);
        spawn_mix(&mut rt, |v| Gen::new(v, 16, 640), false);
        for t in 0..8u64 {
            tick(&mut rt, &mut log);
            let n = match t {
                1 => 700,
                3 => 9_000,
                5 => 1,
                _ => 0,
            };
            for k in 0..n {
                let to = (k * 31 + t) % 645 + 1; // a few to agents that do not exist
                js.try_push(lockstep_core::ring::TYPE_MESSAGE, k as u32 % 3, (k % 5) as i32 - 2, to, &(k as u32).to_le_bytes()).unwrap();
            }
        }
        log.push(format!("deep {:?}", rt.deep_hash().hash));
        log
    });
}

/// The time-travel cursor over a session recorded while routes were held: seeking (forwards,
/// back to its own in-memory snapshots), what a traced tick shows each agent received, the
/// replayed runtime's views, and a fork ticked on, with replays of 1 and 2 workers.
#[test]
fn time_travel_cursor_over_a_held_session() {
    use lockstep_core::journal::{CursorOptions, JournalCursor};
    compare("cursor", |workers| {
        let mut rt = runtime(workers, true);
        let mut log = Log::new();
        let specials = when(&[tick_is(4), i_is(5), id_mod(50, 1)], &to(13, 99));
        spawn_mix_of(&mut rt, |v| Gen::new(v, 16, 640).each(&specials), false, false);
        for t in 0..9u64 {
            if t == 3 {
                rt.send(20, 2, 0, vec![5; 50]).unwrap();
            }
            let r = rt.tick().unwrap();
            note_report(&mut log, &r);
        }
        let recorded = rt.stop_recording().unwrap();
        for cw in [1, 2] {
            let mut c =
                JournalCursor::open_log(recorded.clone(), CursorOptions { workers: cw, snapshot_interval_ticks: 2, ..CursorOptions::default() }).unwrap();
            for to in [6, 3, 5] {
                let s = c.seek(to).unwrap();
                log.push(format!("cursor {cw} seek {to}: {}", s.tick));
                for a in [13, 20, 44, 100, 640] {
                    log.push(format!("cursor {cw} agent {a}: {:?}", c.runtime().inspect(a).map(|i| (i.inbox_len, i.messages_received))));
                }
                log.push(format!("cursor {cw} table {:x}", fnv(&c.runtime().agent_table().rows)));
            }
            let seen = c.messages_at(4).unwrap();
            log.push(format!("cursor {cw} traced tick 4: {} agents {:x}", seen.len(), fnv(format!("{seen:?}").as_bytes())));
            log.push(format!("cursor {cw} memory {:?}", c.read_memory(13, 0, 4096).map(|m| fnv(&m))));
            log.push(format!("cursor {cw} deep {:?}", c.deep_hash().map(|d| d.hash)));
            let mut fork = c.fork(lockstep_core::RestoreOptions::development()).unwrap();
            for _ in 0..2 {
                let r = fork.tick().unwrap();
                log.push(format!("cursor {cw} fork: {:?} {}", r.hash, r.messages_delivered));
            }
        }
        log
    });
}

/// A workflow graph: the last phase (level 1, some of it fan-in barriers) is the one routed
/// and held, its messages to level-0 agents taken by the next tick's first phase, to level-1
/// agents copied after it (before the barriers look at who sent what); edges and triggers
/// changed between held ticks, an upstream agent killed, a downstream agent moved to level 0.
#[test]
fn workflow_graph_phases_and_barriers() {
    compare("dag", |workers| {
        let mut rt = runtime(workers, false);
        let mut log = Log::new();
        // (Level 0 sends to level 1 only: level 0 inboxes are empty when the last phase routes.)
        let up =
            rt.load_module(Gen::new(2, 16, 640).each("(local.set $to (i64.add (i64.rem_u (local.get $to) (i64.const 320)) (i64.const 321)))").wasm()).unwrap();
        let down = rt.load_module(Gen::new(2, 48, 640).wasm()).unwrap();
        let down1 = rt.load_module(Gen::new(1, 48, 640).wasm()).unwrap();
        let ups: Vec<AgentId> = (0..320).map(|_| rt.spawn(up).unwrap()).collect();
        for (k, &u) in ups.iter().enumerate() {
            let d = if k % 11 == 5 {
                rt.spawn_after(down1, 0, &[u], Trigger::Any)
            } else {
                rt.spawn_after(down, 0, &[u], if k % 7 == 0 { Trigger::All } else { Trigger::Any })
            };
            d.unwrap();
        }
        for t in 0..10u64 {
            tick(&mut rt, &mut log);
            let r = match t {
                1 => format!("{:?} {:?}", rt.disconnect(1, 321), rt.connect(2, 324)),
                2 => format!("{:?}", rt.kill(4)),
                3 => format!("{:?} {:?}", rt.set_trigger(330, Trigger::All), rt.set_trigger(324, Trigger::Any)),
                8 => format!("{:?}", rt.connect(330, 331)),
                5 => format!("{:?} {:?}", rt.send(333, 1, 0, vec![1; 10]), rt.level(331)),
                6 => format!("{:?}", rt.spawn_after(down, 0, &[5, 6, 7], Trigger::All)),
                _ => String::new(),
            };
            log.push(format!("after {t}: {r}"));
        }
        log.push(format!("deep {:?}", rt.deep_hash().hash));
        log
    });
}
