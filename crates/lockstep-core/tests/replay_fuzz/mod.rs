//! Hostile but well-framed replay logs, shared by `tests/replay_hostile.rs` (a bounded,
//! seeded run inside `cargo test`) and `fuzz/fuzz_targets/replay.rs` (cargo-fuzz).
//!
//! Every log made here has valid CRCs, a valid header and (mostly) a valid config, so it gets
//! past the reader and into `replay()` itself. Three shapes, chosen by the input bytes:
//! - **synthetic**: records written from scratch with hostile fields (ids 0 and `u64::MAX`,
//!   ticks out of order, oversized payloads, garbage and hostile wasm, spawns of unknown
//!   modules, kills of dead agents, answers nobody asked for, odd model ids, a second config,
//!   End records that lie, records after the End);
//! - **session**: a script of spawn/send/kill/shutdown/tick run against a live recording
//!   `Runtime` with hostile agents; its log must replay `ok && complete` to the same hash;
//! - **mutated session**: that log with a few fields rewritten (CRCs fixed), which must replay
//!   to a typed error, a divergence or an incomplete verdict, never to a clean one.
#![allow(dead_code)]

use lockstep_core::replay_log::{write_header, LogReader, Record, SessionConfig};
use lockstep_core::{abi, replay, Digest, LockstepError, Runtime, RuntimeConfig};

/// Reads choices from the input; past its end every read is 0 (so any input is a program).
pub struct Choices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    pub fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn u64(&mut self) -> u64 {
        (self.u32() as u64) << 32 | self.u32() as u64
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.u32() as usize % n
        }
    }
    /// True with probability about `k`/256.
    pub fn chance(&mut self, k: u8) -> bool {
        self.u8() < k
    }
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
}

/// An id from the interesting ones: 0, the host, existing agents, the next one, the
/// inference sender, the largest, and arbitrary values.
fn hostile_id(c: &mut Choices, agents: u64) -> u64 {
    match c.u8() % 10 {
        0 => 0,
        1 => u64::MAX,
        2 => u64::MAX - 1,
        3 => agents + 1,
        4 => 1 << 63,
        5 => u32::MAX as u64 + 1,
        6 => c.u64(),
        _ => 1 + c.below(agents.max(1) as usize) as u64,
    }
}

fn hostile_tick(c: &mut Choices, now: u64) -> u64 {
    if !c.chance(40) {
        return now;
    }
    c.pick(&[0, now.wrapping_sub(1), now + 1, now + 1000, u64::MAX, 1 << 63])
}

fn hostile_len(c: &mut Choices) -> usize {
    if c.chance(200) {
        return c.below(64);
    }
    c.pick(&[0, 1, 3, 4, abi::MAX_PAYLOAD_BYTES - 1, abi::MAX_PAYLOAD_BYTES, abi::MAX_PAYLOAD_BYTES + 1, abi::IO_BUFFER_BYTES as usize, 1 << 17])
}

fn payload(c: &mut Choices, len: usize) -> Vec<u8> {
    let fill = c.u8();
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

fn priority(c: &mut Choices) -> i32 {
    c.pick(&[0, 0, 0, 1, -1, 7, i32::MIN, i32::MAX])
}

/// The full module text of an agent: imports, memory, every export; `step`, `receive`,
/// `init` and `shutdown` are function bodies (an i32 result), `io` the io-buffer address.
fn agent(version: u32, io: &str, init: &str, step: &str, receive: &str, shutdown: &str) -> String {
    format!(
        r#"(module
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (import "lockstep" "random_u64" (func $random (result i64)))
            (import "lockstep" "infer" (func $infer (param i32 i32 i32 i32) (result i32)))
            (import "lockstep" "log" (func $log (param i32 i32 i32)))
            (memory (export "memory") 2)
            (func (export "lockstep_abi_version") (result i32) i32.const {version})
            (func (export "lockstep_io_buffer") (result i32) {io})
            (func (export "agent_init") (result i32) {init})
            (func (export "agent_step") (param $ctx i32) (result i32) {step})
            (func (export "agent_receive") (param $msg i32) (result i32) {receive})
            (func (export "agent_shutdown") (result i32) {shutdown}))"#
    )
}

/// The agents scripts and synthetic logs spawn: well-behaved, trapping, growing, spinning,
/// sending to hostile addresses, asking for inference; and modules that must be refused.
pub fn hostile_modules() -> Vec<Vec<u8>> {
    let ok = "i32.const 0";
    let io = "i32.const 1024";
    // Echo: send every message back to its sender (the host included), same kind and payload.
    let echo = "(drop (call $send (i64.load (local.get $msg)) (i32.load offset=24 (local.get $msg)) (i32.const 0)
                    (i32.add (local.get $msg) (i32.const 40)) (i32.load offset=32 (local.get $msg)))) i32.const 0";
    let sources = [
        agent(1, io, ok, ok, echo, ok),
        // Traps every third tick; a message makes it trap at once.
        agent(1, io, ok, "(if (i64.eq (i64.rem_u (i64.load offset=8 (local.get $ctx)) (i64.const 3)) (i64.const 2)) (then unreachable)) i32.const 0", "unreachable", ok),
        // Grows its memory every step until the limit refuses; then writes at the end.
        agent(1, io, ok, "(drop (memory.grow (i32.const 3))) (i32.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 4)) (i32.const 7)) i32.const 0", echo, ok),
        // Sends to u64::MAX, the host, itself, a random id; too large; out of bounds.
        agent(
            1,
            io,
            "(drop (call $send (i64.const -1) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 8))) i32.const 0",
            "(drop (call $send (i64.const -1) (i32.const 1) (i32.const 5) (i32.const 0) (i32.const 8)))
             (drop (call $send (i64.const 0) (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 65496)))
             (drop (call $send (i64.const 0) (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 65497)))
             (drop (call $send (call $random) (i32.const 3) (i32.const -7) (i32.const 64) (i32.const 16)))
             (drop (call $send (i64.load offset=16 (local.get $ctx)) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 0)))
             (if (i64.eq (i64.rem_u (i64.load offset=8 (local.get $ctx)) (i64.const 4)) (i64.const 3))
               (then (drop (call $send (i64.const 1) (i32.const 5) (i32.const 0) (i32.const 131000) (i32.const 1000)))))
             i32.const 0",
            echo,
            "(drop (call $send (i64.const 1) (i32.const 9) (i32.const 0) (i32.const 0) (i32.const 4))) i32.const 0",
        ),
        // Spins until the fuel runs out.
        agent(1, io, ok, "(loop $l (br $l)) i32.const 0", ok, "(loop $l (br $l)) i32.const 0"),
        // Traps in init: spawned, faulted.
        agent(1, io, "unreachable", ok, ok, ok),
        // Returns errors from every call and asks for inference (answered "no such model").
        agent(1, io, "i32.const 3", "(drop (call $infer (i32.const 0) (i32.const 9) (i32.const 0) (i32.const 16))) (drop (call $infer (i32.const 5) (i32.const 1) (i32.const 0) (i32.const 0))) i32.const -1", "i32.const 1", "i32.const 2"),
        // Refused: an io buffer that does not fit its memory; the wrong ABI version.
        agent(1, "i32.const 131000", ok, ok, ok, ok),
        agent(99, io, ok, ok, ok, ok),
    ];
    let mut modules: Vec<Vec<u8>> = sources.iter().map(|s| wat::parse_str(s).expect("valid wat")).collect();
    modules.push(b"\0asm\x01\0\0\0garbage".to_vec());
    modules.push(b"not wasm at all".to_vec());
    modules
}

/// The configuration scripts use: development mode (the hostile modules are unsigned),
/// small limits so a spinning agent costs little.
pub fn session_config(c: &mut Choices) -> RuntimeConfig {
    RuntimeConfig {
        workers: 1,
        seed: c.u64(),
        fuel_per_call: 20_000,
        memory_limit_bytes: c.pick(&[128 << 10, 256 << 10, 1 << 20]),
        max_agents: c.pick(&[1, 3, 8, 16]),
        deadline_ms: 1_000,
        checkpoint_interval_ticks: c.pick(&[0, 1, 3]),
        ..RuntimeConfig::development()
    }
}

fn hash(bytes: &[u8]) -> Digest {
    Digest(*blake3::hash(bytes).as_bytes())
}

/// A synthetic log: a valid frame around hostile records (see the module docs).
pub fn synthetic_log(c: &mut Choices, modules: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    write_header(&mut out);
    let mut config = session_config(c).session();
    if c.chance(30) {
        // One hostile config value: Runtime::new must refuse it with a typed error.
        match c.u8() % 9 {
            0 => config.max_agents = 0,
            1 => config.max_agents = u32::MAX,
            2 => config.memory_limit_bytes = 0,
            3 => config.memory_limit_bytes = u64::MAX,
            4 => config.deadline_ms = 0,
            5 => config.policy_json = "{not json".into(),
            6 => config.policy_json = String::new(),
            7 => config.trusted_keys = vec![[c.u8(); 32]; 1 + c.below(2000)],
            _ => config.dev_mode = false,
        }
    }
    Record::Config(config).encode(&mut out);
    let (mut tick, mut agents, mut records) = (0u64, 0u64, 1u64);
    let mut known: Vec<Digest> = Vec::new();
    let ops = 1 + c.below(24);
    for _ in 0..ops {
        let record = match c.u8() % 32 {
            0..=4 => {
                let bytes = if c.chance(20) {
                    let len = hostile_len(c);
                    payload(c, len)
                } else {
                    modules[c.below(modules.len())].clone()
                };
                let h = if c.chance(20) { Digest([c.u8(); 32]) } else { hash(&bytes) };
                known.push(h);
                Record::Module { hash: h, bytes }
            }
            5..=10 => {
                let module = if known.is_empty() || c.chance(20) { Digest([c.u8(); 32]) } else { known[c.below(known.len())] };
                let agent = if c.chance(30) { hostile_id(c, agents) } else { agents + 1 };
                agents += 1;
                Record::Spawn { tick: hostile_tick(c, tick), module, agent, priority: priority(c) }
            }
            11..=16 => {
                let len = hostile_len(c);
                Record::Send { tick: hostile_tick(c, tick), to: hostile_id(c, agents), kind: c.u32(), priority: priority(c), payload: payload(c, len) }
            }
            17 | 18 => Record::Kill { tick: hostile_tick(c, tick), agent: hostile_id(c, agents) },
            19 | 20 => Record::Shutdown { tick: hostile_tick(c, tick), agent: hostile_id(c, agents) },
            21 | 22 => {
                let n = c.below(4);
                let digests = (0..n).map(|_| (hostile_id(c, agents), [c.u8(); 8])).collect();
                let r = Record::TickEnd { tick: hostile_tick(c, tick), hash: Digest([c.u8(); 32]), agents: digests };
                tick += 1;
                r
            }
            23 => Record::Checkpoint { tick: hostile_tick(c, tick), hash: Digest([c.u8(); 32]), agents: vec![(hostile_id(c, agents), [0; 8])] },
            24 => {
                let id = match c.u8() % 4 {
                    0 => "ab".repeat(32),
                    1 => "AB".repeat(32),
                    2 => String::new(),
                    _ => "z".repeat(c.below(200)),
                };
                Record::AgentModel { slot: c.pick(&[0, 1, u32::MAX]), id }
            }
            25 | 26 => {
                let n = c.pick(&[0, 1, 2, abi::MAX_INFER_REQUESTS_PER_TICK + 1]);
                let results = (0..n)
                    .map(|_| {
                        let agent = if c.chance(128) { 1 } else { hostile_id(c, agents) };
                        let len = hostile_len(c);
                        (agent, c.u32(), payload(c, len))
                    })
                    .collect();
                Record::InferResults { tick: hostile_tick(c, tick), results }
            }
            27 => Record::Config(session_config(c).session()),
            28 if c.chance(128) => Record::Base { tick: hostile_tick(c, tick), snapshot: Digest([c.u8(); 32]), hash: Digest([c.u8(); 32]) },
            28 => Record::Gap { tag: c.u8(), len: c.u64() },
            29 => match c.u8() % 4 {
                3 => Record::Slice {
                    tick: hostile_tick(c, tick),
                    agent: hostile_id(c, agents),
                    fuel_per_tick: if c.chance(128) { 1 + c.u64() % 100_000 } else { c.u64() },
                },
                0 => Record::Connect { tick: hostile_tick(c, tick), from: hostile_id(c, agents), to: hostile_id(c, agents) },
                1 => Record::Disconnect { tick: hostile_tick(c, tick), from: hostile_id(c, agents), to: hostile_id(c, agents) },
                _ => Record::Trigger {
                    tick: hostile_tick(c, tick),
                    agent: hostile_id(c, agents),
                    trigger: if c.chance(128) { lockstep_core::Trigger::All } else { lockstep_core::Trigger::Any },
                },
            },
            _ => {
                let ticks = if c.chance(128) { tick } else { c.u64() };
                let recs = if c.chance(128) { records } else { c.u64() };
                let bytes = if c.chance(128) { out.len() as u64 } else { c.u64() };
                Record::End { ticks, records: recs, bytes, hash: Digest([c.u8(); 32]), tail: Digest([c.u8(); 32]) }
            }
        };
        record.encode(&mut out);
        records += 1;
    }
    if c.chance(128) {
        Record::End { ticks: tick, records, bytes: out.len() as u64, hash: Digest::default(), tail: Digest::default() }.encode(&mut out);
    }
    out
}

/// What a session script did: its log, final hash and tick count.
pub struct Session {
    pub log: Vec<u8>,
    pub final_hash: Digest,
    pub ticks: u64,
    /// Sequence numbers of the host messages (Send records, in order) that were
    /// dead-lettered: see `check_session` on what the tick hash covers of those.
    pub dead_host_seqs: std::collections::BTreeSet<u64>,
}

/// Runs a script of spawn/send/kill/shutdown/tick against a live recording runtime.
/// Refused calls (an unknown agent, a payload over the limit, a refused module) are part of
/// the script: the live API must refuse them without recording anything.
pub fn run_session(c: &mut Choices, modules: &[Vec<u8>]) -> Session {
    let mut rt = Runtime::new(session_config(c)).expect("session runtime");
    let mut dead_host_seqs = std::collections::BTreeSet::new();
    let ops = 1 + c.below(40);
    for _ in 0..ops {
        let agents = rt.agent_count() as u64;
        match c.u8() % 16 {
            0..=3 => {
                let _ = rt.load_module(modules[c.below(modules.len())].clone()).and_then(|h| rt.spawn_with_priority(h, priority(c)));
            }
            4..=7 => {
                let len = hostile_len(c);
                let to = hostile_id(c, agents);
                let (kind, p, body) = (c.u32(), priority(c), payload(c, len));
                let _ = rt.send(to, kind, p, body);
            }
            8 => {
                let _ = rt.kill(hostile_id(c, agents));
            }
            9 => {
                let _ = rt.shutdown(hostile_id(c, agents));
            }
            10 if c.chance(128) => {
                rt.checkpoint();
            }
            10 => {
                // The workflow graph: refused edges (cycles, unknown or stopped agents) record nothing.
                let (a, b) = (hostile_id(c, agents), hostile_id(c, agents));
                let _ = match c.u8() % 3 {
                    0 => rt.connect(a, b).map(drop),
                    1 => rt.disconnect(a, b).map(drop),
                    _ => rt.set_trigger(a, if c.chance(128) { lockstep_core::Trigger::All } else { lockstep_core::Trigger::Any }),
                };
            }
            _ => {
                rt.tick().unwrap();
                rt.drain_host_messages();
                rt.drain_events();
                dead_host_seqs.extend(rt.drain_dead_letters().into_iter().filter(|d| d.message.from == 0).map(|d| d.message.seq));
            }
        }
    }
    // A snapshot taken mid-session carries its own End record and verifies as complete.
    let snapshot = if c.chance(40) { Some((rt.replay_log().expect("recording"), rt.state_hash())) } else { None };
    if let Some((log, h)) = snapshot {
        let r = replay(&log, 1, |_| {}).unwrap_or_else(|e| panic!("snapshot of an honest session failed to replay: {e}"));
        assert!(r.divergence.is_none() && r.complete && r.final_hash == h, "snapshot: {r:?}");
    }
    let (final_hash, ticks) = (rt.state_hash(), rt.current_tick());
    dead_host_seqs.extend(rt.drain_dead_letters().into_iter().filter(|d| d.message.from == 0).map(|d| d.message.seq));
    Session { log: rt.stop_recording().expect("recording"), final_hash, ticks, dead_host_seqs }
}

/// The error codes a replay may answer a hostile log with.
pub const REPLAY_ERROR_CODES: &[&str] = &["E_REPLAY_CORRUPT", "E_REPLAY_VERSION", "E_REPLAY_MISSING_MODULE", "E_REPLAY_NEEDS_SNAPSHOT", "E_INVALID_CONFIG"];

/// Replays `log`; a panic propagates (the caller fails), an error must carry one of
/// [`REPLAY_ERROR_CODES`]. Returns the verdict for further checks.
pub fn replay_checked(log: &[u8]) -> Result<lockstep_core::ReplayReport, LockstepError> {
    let result = replay(log, 1, |_| {});
    if let Err(e) = &result {
        assert!(REPLAY_ERROR_CODES.contains(&e.code()), "replay answered {} ({e}), not a replay error", e.code());
    }
    result
}

/// The records of a log this process wrote.
pub fn decode(log: &[u8]) -> Vec<Record> {
    let mut r = LogReader::new(log).expect("own log");
    let mut v = Vec::new();
    while let Some(rec) = r.next_record().expect("own log") {
        v.push(rec);
    }
    v
}

/// A log of `records` (header, framed records, no End unless `records` has one).
pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    write_header(&mut out);
    for r in records {
        r.encode(&mut out);
    }
    out
}

/// Rewrites one field of `r` with a hostile value (returns false where it found nothing
/// to change).
fn mutate(c: &mut Choices, r: &mut Record, agents: u64) -> bool {
    let before = r.clone();
    match r {
        Record::Config(s) => mutate_config(c, s),
        Record::Module { hash, bytes } => match c.u8() % 3 {
            0 => hash.0[c.below(32)] ^= 1,
            1 if !bytes.is_empty() => {
                let i = c.below(bytes.len());
                bytes[i] ^= 1 << (c.u8() % 8);
            }
            _ => {
                bytes.push(0);
                *hash = self::hash(bytes);
            }
        },
        Record::Spawn { tick, module, agent, priority: p } => match c.u8() % 4 {
            0 => *tick = hostile_tick(c, *tick),
            1 => module.0[0] ^= 1,
            2 => *agent = hostile_id(c, agents),
            _ => *p = p.wrapping_add(1),
        },
        Record::Send { tick, to, kind, priority: p, payload: body } => match c.u8() % 5 {
            0 => *tick = hostile_tick(c, *tick),
            1 => *to = hostile_id(c, agents),
            2 => *kind ^= 1 << (c.u8() % 32),
            3 => *p = p.wrapping_add(1),
            _ => {
                let len = hostile_len(c);
                body.resize(len, 0xA5);
            }
        },
        Record::Kill { tick, agent } | Record::Shutdown { tick, agent } => {
            if c.chance(128) {
                *tick = hostile_tick(c, *tick);
            } else {
                *agent = hostile_id(c, agents);
            }
        }
        Record::TickEnd { tick, hash, agents: digests } | Record::Checkpoint { tick, hash, agents: digests } => match c.u8() % 4 {
            0 => *tick = tick.wrapping_add(1),
            1 => hash.0[c.below(32)] ^= 1,
            2 if !digests.is_empty() => {
                let i = c.below(digests.len());
                digests[i].1[0] ^= 1;
            }
            _ => digests.push((hostile_id(c, agents), [0; 8])),
        },
        Record::AgentModel { slot, .. } | Record::AgentLanguageModel { slot, .. } => *slot = slot.wrapping_add(1),
        Record::InferResults { tick, results } | Record::Generated { tick, results } => match c.u8() % 4 {
            0 => *tick = tick.wrapping_add(1),
            1 if !results.is_empty() => {
                let i = c.below(results.len());
                results[i].2.push(1);
            }
            2 if !results.is_empty() => {
                let i = c.below(results.len());
                results[i].0 = hostile_id(c, agents);
            }
            _ => results.push((1, 0, vec![0; 4])),
        },
        Record::End { ticks, records, bytes, hash, tail } => match c.u8() % 5 {
            0 => *ticks += 1,
            1 => *records = records.wrapping_sub(1),
            2 => *bytes += 1,
            3 => tail.0[0] ^= 1,
            _ => hash.0[0] ^= 1,
        },
        Record::Gap { len, .. } => *len += 1,
        Record::Base { tick, .. } => *tick = tick.wrapping_add(1),
        // Identity only: any id or lineage replays the same (nothing to break).
        Record::Journal { id, .. } => id[0] ^= 1,
        Record::Connect { tick, from, to } | Record::Disconnect { tick, from, to } => match c.u8() % 3 {
            0 => *tick = hostile_tick(c, *tick),
            1 => *from = hostile_id(c, agents),
            _ => *to = hostile_id(c, agents),
        },
        Record::Trigger { tick, agent, trigger } => match c.u8() % 3 {
            0 => *tick = hostile_tick(c, *tick),
            1 => *agent = hostile_id(c, agents),
            _ => *trigger = if *trigger == lockstep_core::Trigger::All { lockstep_core::Trigger::Any } else { lockstep_core::Trigger::All },
        },
        Record::Slice { tick, agent, fuel_per_tick } => match c.u8() % 3 {
            0 => *tick = hostile_tick(c, *tick),
            1 => *agent = hostile_id(c, agents),
            _ => *fuel_per_tick = if c.chance(128) { fuel_per_tick.wrapping_add(1) } else { c.u64() },
        },
    }
    *r != before
}

/// A record's debug text, cut short (payloads and modules are long).
fn short(r: &Record) -> String {
    let s = format!("{r:?}");
    if s.len() > 300 {
        format!("{}…", &s[..s.floor_char_boundary(300)])
    } else {
        s
    }
}

fn mutate_config(c: &mut Choices, s: &mut SessionConfig) {
    match c.u8() % 6 {
        0 => s.seed ^= 1,
        1 => s.max_agents = c.pick(&[0, 1, u32::MAX]),
        2 => s.memory_limit_bytes = c.pick(&[0, 65_536, u64::MAX]),
        3 => s.deadline_ms = 0,
        4 => s.dev_mode = !s.dev_mode,
        _ => s.policy_json.push('}'),
    }
}

/// One session checked both ways: honest (must verify `ok && complete` to the live hash)
/// and with 1–3 fields rewritten (must never verify cleanly: tick hashes cover the inputs
/// before each tick, the End record's `tail` digest the config and the inputs after the last).
pub fn check_session(c: &mut Choices, modules: &[Vec<u8>]) {
    let s = run_session(c, modules);
    let r = replay_checked(&s.log).unwrap_or_else(|e| panic!("an honest session failed to replay: {e}"));
    assert!(r.divergence.is_none(), "honest session diverged: {r:?}");
    assert!(r.complete, "honest session not complete: {r:?}");
    assert_eq!(r.final_hash, s.final_hash);
    assert_eq!(r.ticks_verified, s.ticks);
    let mut records = decode(&s.log);
    let original = records.clone();
    let agents = records.iter().filter(|r| matches!(r, Record::Spawn { .. })).count() as u64;
    let mut changes = Vec::new();
    // The tick hash covers whole dead letters, so a change to a host message that was
    // dead-lettered is detected like any other.
    for _ in 0..1 + c.below(3) {
        let i = c.below(records.len());
        let before = short(&records[i]);
        if mutate(c, &mut records[i], agents) {
            changes.push(format!("record {i}: {before} -> {}", short(&records[i])));
        }
    }
    if records == original {
        return; // no change, or two that cancelled out
    }
    match replay_checked(&encode(&records)) {
        Err(_) => {}
        Ok(r) if r.divergence.is_some() || !r.complete => {}
        Ok(r) => panic!("a mutated log verified cleanly: {r:?}\n{}", changes.join("\n")),
    }
}

/// One input through every shape: the entry point of the fuzz target and the bounded run.
pub fn one_input(data: &[u8], modules: &[Vec<u8>]) {
    let mut c = Choices::new(data);
    match c.u8() % 4 {
        0 | 1 => {
            let _ = replay_checked(&synthetic_log(&mut c, modules));
        }
        _ => check_session(&mut c, modules),
    }
}
