//! Red team of the payload arenas (commit 7426972, `mailbox.rs`): an outbox, what an agent sent,
//! an inbox and the input queue keep their payloads in one byte arena each, and envelopes are
//! sorted, cut (`keep_from`) and moved (`append`) apart from the bytes. Each test here is an
//! attack: a payload that must stay attached to its header, a message that must be neither lost
//! nor duplicated, a byte count that must not drift, a hash that must not move.

mod common;

use std::collections::BTreeMap;

use common::snapshot_forge::{forge, sections};
use common::{agent, assert_replays_to, attach_inbound_ring, runtime, sender_agent, wat_agent};
use lockstep_core::abi;
use lockstep_core::{AbiCall, DeadLetterReason, Message, Runtime, RuntimeConfig, Trigger};

// ---------------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------------

/// The handler shared by the recorder agents: forwards each message it is handed, header and
/// payload as the host wrote them into its io buffer, to the host (kind 7), after spinning
/// `spin` loop iterations (fuel, so time slices split batches). A message of kind 0xEE traps
/// instead (a fault in the middle of a batch).
fn recorder_one(spin: u32) -> String {
    format!(
        r#"
  (func $one (param $at i32) (result i32)
    (local $len i32) (local $s i32)
    (local.set $len (i32.load offset=32 (local.get $at)))
    (block $b (loop $l
      (br_if $b (i32.ge_u (local.get $s) (i32.const {spin})))
      (local.set $s (i32.add (local.get $s) (i32.const 1)))
      (br $l)))
    (if (i32.eq (i32.load offset=24 (local.get $at)) (i32.const 0xEE))
      (then unreachable))
    (drop (call $send (i64.const 0) (i32.const 7) (i32.const 0) (local.get $at) (i32.add (local.get $len) (i32.const 40))))
    (i32.add (local.get $len) (i32.const 40)))"#
    )
}

/// A recorder speaking ABI `version` (1: a call per message; 2: batches, progress word kept).
fn recorder(version: u32, spin: u32) -> Vec<u8> {
    let receive = if version >= 2 {
        r#"
  (func (export "agent_receive_batch") (param $ptr i32) (param $count i32) (result i32)
    (local $k i32) (local $at i32)
    (local.set $at (local.get $ptr))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $k) (local.get $count)))
      (local.set $at (i32.and (i32.add (i32.add (local.get $at) (call $one (local.get $at))) (i32.const 7)) (i32.const -8)))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (i32.store (i32.add (local.get $ptr) (i32.const 65536)) (local.get $k))
      (br $next)))
    i32.const 0)"#
    } else {
        r#"
  (func (export "agent_receive") (param $ptr i32) (result i32)
    (drop (call $one (local.get $ptr)))
    i32.const 0)"#
    };
    sender_agent(
        version,
        &format!(
            r#"(func (export "agent_step") (param i32) (result i32) i32.const 0)
  {}
  {receive}"#,
            recorder_one(spin)
        ),
    )
}

/// An agent whose every step sends `count` messages to agent `to`, message `i` of tick `t`
/// carrying marker `t * 1000 + i` laid out as `payload_of` lays it out (its own priority and
/// length, filler bytes naming it), so a payload swapped onto another header is caught.
fn sprayer(to: u64, count: u32) -> Vec<u8> {
    sender_agent(
        1,
        &format!(
            r#"(func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_step") (param $ctx i32) (result i32)
    (local $i i32) (local $marker i64) (local $len i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const {count})))
      (local.set $marker (i64.add (i64.mul (i64.load offset=8 (local.get $ctx)) (i64.const 1000)) (i64.extend_i32_u (local.get $i))))
      (local.set $len (i32.wrap_i64 (i64.add (i64.const 8) (i64.rem_u (i64.mul (local.get $marker) (i64.const 37)) (i64.const 300)))))
      (i64.store (i32.const 8192) (local.get $marker))
      (memory.fill (i32.const 8200) (i32.wrap_i64 (local.get $marker)) (i32.sub (local.get $len) (i32.const 8)))
      (drop (call $send (i64.const {to}) (i32.const 1)
        (i32.sub (i32.wrap_i64 (i64.rem_u (local.get $marker) (i64.const 5))) (i32.const 2))
        (i32.const 8192) (local.get $len)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    i32.const 0)"#
        ),
    )
}

/// The payload of marker `m`: the marker, then filler bytes `m as u8`, `8 + m * 37 % 300` long.
fn payload_of(m: u64) -> Vec<u8> {
    let len = 8 + (m * 37 % 300) as usize;
    let mut p = m.to_le_bytes().to_vec();
    p.resize(len, m as u8);
    p
}

/// The priority message `m` is sent with.
fn priority_of(m: u64) -> i32 {
    (m % 5) as i32 - 2
}

/// Checks that `payload` is marker `m`'s, whole; returns `m`.
fn check_payload(payload: &[u8], priority: i32, what: &str) -> u64 {
    assert!(payload.len() >= 8, "{what}: a payload of {} bytes", payload.len());
    let m = u64::from_le_bytes(payload[..8].try_into().unwrap());
    assert_eq!(payload, payload_of(m).as_slice(), "{what}: payload of marker {m} is not its own");
    assert_eq!(priority, priority_of(m), "{what}: marker {m} arrived under another header's priority");
    m
}

/// A message as a recorder forwarded it: the header and payload it was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    from: u64,
    to: u64,
    seq: u64,
    kind: u32,
    priority: i32,
    payload: Vec<u8>,
}

fn parse_forwarded(m: &Message) -> Seen {
    let b = &m.payload;
    assert!(b.len() >= abi::MESSAGE_HEADER_BYTES, "a forwarded record of {} bytes", b.len());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let len = u32_at(abi::MESSAGE_OFFSET_PAYLOAD_LEN) as usize;
    assert_eq!(b.len(), abi::MESSAGE_HEADER_BYTES + len, "the header's length is the payload's");
    Seen {
        from: u64_at(abi::MESSAGE_OFFSET_FROM),
        to: u64_at(abi::MESSAGE_OFFSET_TO),
        seq: u64_at(abi::MESSAGE_OFFSET_SEQ),
        kind: u32_at(abi::MESSAGE_OFFSET_KIND),
        priority: u32_at(abi::MESSAGE_OFFSET_PRIORITY) as i32,
        payload: b[abi::MESSAGE_HEADER_BYTES..].to_vec(),
    }
}

/// What the recorders forwarded since the last drain, in the order they forwarded it.
fn forwarded(rt: &mut Runtime) -> Vec<Seen> {
    rt.drain_host_messages().iter().filter(|m| m.kind == 7).map(parse_forwarded).collect()
}

fn delivery_key(s: &Seen) -> (std::cmp::Reverse<i32>, u64, u64) {
    (std::cmp::Reverse(s.priority), s.from, s.seq)
}

fn config(workers: usize) -> RuntimeConfig {
    RuntimeConfig { workers, fuel_per_call: 50_000_000, max_agents: 256, ..RuntimeConfig::development() }
}

/// Sends host message `m` (payload, priority and kind from the marker) to `to`.
fn host_send(rt: &mut Runtime, to: u64, m: u64) {
    rt.send(to, 3, priority_of(m), payload_of(m)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Attacks
// ---------------------------------------------------------------------------------------------

/// Attack: shut down a time-sliced agent whose receive call is suspended while its inbox holds
/// more than the batch in flight (the rest of an ABI-1 turn, and messages that arrived while the
/// call was suspended). `shutdown` released the slot (inbox included) before taking the inbox,
/// so those messages vanished: neither delivered nor dead-lettered, and not in the hash.
#[test]
fn shutting_down_a_suspended_agent_dead_letters_its_whole_inbox() {
    for (version, kill) in [(1, false), (2, false), (1, true), (2, true)] {
        let mut rt = Runtime::new(config(1)).unwrap();
        let rec = rt.spawn_bytes(recorder(version, 20_000)).unwrap();
        rt.set_fuel_per_tick(rec, 100_000).unwrap();
        for m in 0..6 {
            host_send(&mut rt, rec, m);
        }
        rt.tick().unwrap();
        assert_eq!(rt.inspect(rec).unwrap().suspended, Some(AbiCall::Receive), "v{version}");
        // More arrive while the call is suspended: they wait in the inbox.
        for m in 6..10 {
            host_send(&mut rt, rec, m);
        }
        rt.tick().unwrap();
        let info = rt.inspect(rec).unwrap();
        assert_eq!(info.suspended, Some(AbiCall::Receive), "v{version}: still mid-call");
        assert!(info.inbox_len > 0, "v{version}: messages wait behind the suspended call");
        if kill {
            rt.kill(rec).unwrap();
        } else {
            rt.shutdown(rec).unwrap();
        }
        rt.tick().unwrap();
        let seen = forwarded(&mut rt);
        let dead = rt.drain_dead_letters();
        let mut markers: Vec<u64> = seen.iter().map(|s| check_payload(&s.payload, s.priority, "forwarded")).collect();
        for d in &dead {
            assert_eq!(d.reason, DeadLetterReason::RecipientStopped);
            markers.push(check_payload(&d.message.payload, d.message.priority, "dead letter"));
        }
        markers.sort_unstable();
        // A message handled in the abandoned call may be forwarded and dead-lettered both (its
        // call never ended); none may be missing.
        markers.dedup();
        assert_eq!(markers, (0..10).collect::<Vec<_>>(), "v{version} kill={kill}: every message forwarded or dead-lettered");
    }
}

/// Attack: payloads attached to the wrong header after the envelope sort. Three sprayers and
/// the host send a recorder messages of mixed priorities and lengths each tick (routing appends
/// them in sender order; delivery sorts envelopes only, the arena stays in arrival order). Every
/// message must arrive once, whole, under its own header, in canonical order, on 1, 2 and 4
/// workers alike; time-sliced recorders (ABI 1 and 2, batches cut by `keep_from`) too.
#[test]
fn payloads_stay_with_their_headers_through_sort_and_keep_from() {
    for (version, slice) in [(2, 0u64), (1, 0), (2, 100_000), (1, 100_000)] {
        let mut per_workers = Vec::new();
        for workers in [1, 2, 4] {
            let mut rt = Runtime::new(config(workers)).unwrap();
            let rec = rt.spawn_bytes(recorder(version, if slice > 0 { 200 } else { 0 })).unwrap();
            let senders: Vec<u64> = (0..3).map(|k| rt.spawn_bytes(sprayer(rec, 20 + k * 7)).unwrap()).collect();
            if slice > 0 {
                rt.set_fuel_per_tick(rec, slice).unwrap();
            }
            let mut seen = Vec::new();
            let mut hashes = Vec::new();
            let mut host_markers = Vec::new();
            let mut split = 0;
            for t in 0..1_000u64 {
                if t < 30 {
                    // Host messages ride along, priorities and lengths mixed with the agents'.
                    for j in 0..5 {
                        let m = 1_000_000 + t * 10 + j;
                        host_send(&mut rt, rec, m);
                        host_markers.push(m);
                    }
                } else if t == 30 {
                    for &s in &senders {
                        rt.kill(s).unwrap();
                    }
                }
                let r = rt.tick().unwrap();
                hashes.push(r.hash);
                let batch = forwarded(&mut rt);
                if slice == 0 && !batch.is_empty() {
                    // One turn per tick, unsliced: the tick's messages in canonical order.
                    assert!(batch.windows(2).all(|w| delivery_key(&w[0]) < delivery_key(&w[1])), "v{version} tick {t}: delivery order");
                }
                seen.extend(batch);
                let info = rt.inspect(rec).unwrap();
                // A turn cut short: a call suspended, or messages left for the next tick.
                split += u32::from(info.suspended.is_some() || info.inbox_len > 0);
                if t > 30 && info.inbox_len == 0 && info.suspended.is_none() {
                    break;
                }
            }
            if slice > 0 {
                assert!(split > 10, "v{version}: slices cut turns ({split} ticks)");
            }
            // Every message once, whole, under its own header.
            let mut by_sender: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for s in &seen {
                assert_eq!(s.to, rec);
                let m = check_payload(&s.payload, s.priority, &format!("v{version} slice {slice}"));
                by_sender.entry(s.from).or_default().push(m);
            }
            let mut host = by_sender.remove(&0).unwrap_or_default();
            host.sort_unstable();
            assert_eq!(host, host_markers, "v{version} slice {slice}: host messages, each once");
            for (k, &s) in senders.iter().enumerate() {
                let mut got = by_sender.remove(&s).unwrap_or_default();
                got.sort_unstable();
                let want: Vec<u64> = (0..30u64).flat_map(|t| (0..20 + k as u64 * 7).map(move |i| t * 1000 + i)).collect();
                assert_eq!(got, want, "v{version} slice {slice}: sender {s}'s messages, each once");
            }
            assert!(by_sender.is_empty());
            assert!(rt.drain_dead_letters().is_empty());
            per_workers.push(hashes);
        }
        assert!(per_workers.windows(2).all(|w| w[0] == w[1]), "v{version} slice {slice}: hashes differ between 1, 2 and 4 workers");
    }
}

/// Attack: a fault in the middle of a batch. The recorder traps on a poisoned message; what it
/// forwarded before it and what the runtime dead-letters from it on must be the whole inbox in
/// canonical order, each payload under its own header (the poisoned one first), for ABI 1 and
/// 2, unsliced and sliced (the poisoned message in a batch resumed after a suspension, with
/// more messages waiting in the inbox behind it).
#[test]
fn a_fault_mid_batch_dead_letters_the_rest_in_order_with_their_payloads() {
    for (version, slice, spin) in [(2, 0u64, 0u32), (1, 0, 0), (2, 60_000, 5_000), (1, 60_000, 5_000)] {
        let mut rt = Runtime::new(config(1)).unwrap();
        let rec = rt.spawn_bytes(recorder(version, spin)).unwrap();
        if slice > 0 {
            rt.set_fuel_per_tick(rec, slice).unwrap();
        }
        // Markers whose priorities interleave; the poisoned one is 7th in delivery order.
        let markers: Vec<u64> = (100..112).collect();
        let mut order: Vec<u64> = markers.clone();
        order.sort_by_key(|&m| (std::cmp::Reverse(priority_of(m)), m));
        let poison = order[6];
        for &m in &markers {
            rt.send(rec, if m == poison { 0xEE } else { 3 }, priority_of(m), payload_of(m)).unwrap();
        }
        let mut seen = Vec::new();
        let mut more = Vec::new();
        for t in 0..30 {
            if slice > 0 && t == 1 {
                // Behind the suspended batch: these wait in the inbox and must follow the
                // poisoned batch into the dead-letter queue (lowest priority, so also when an
                // ABI-1 turn sorts them in with the rest of its inbox).
                for m in [200, 205, 210] {
                    host_send(&mut rt, rec, m);
                    more.push(m);
                }
            }
            rt.tick().unwrap();
            seen.extend(forwarded(&mut rt));
            if !rt.inspect(rec).unwrap().state.is_running() {
                break;
            }
        }
        let info = rt.inspect(rec).unwrap();
        assert!(!info.state.is_running(), "v{version} slice {slice}: the poison faulted it");
        let got: Vec<u64> = seen.iter().map(|s| check_payload(&s.payload, s.priority, "forwarded")).collect();
        assert_eq!(got, order[..6].to_vec(), "v{version} slice {slice}: what was handled, in order");
        let dead = rt.drain_dead_letters();
        assert!(dead.iter().all(|d| d.reason == DeadLetterReason::RecipientFaultedDuringDelivery), "{dead:?}");
        assert_eq!(dead[0].message.kind, 0xEE, "the fatal message first");
        assert_eq!(check_payload(&dead[0].message.payload, dead[0].message.priority, "fatal"), poison);
        let rest: Vec<u64> = dead[1..].iter().map(|d| check_payload(&d.message.payload, d.message.priority, "dead letter")).collect();
        let mut want = order[7..].to_vec();
        // The batch in flight first, then the inbox in delivery order.
        want.extend(&more);
        assert_eq!(rest, want, "v{version} slice {slice}: the rest, in order, payloads attached");
        assert_eq!(info.messages_received, 6, "v{version} slice {slice}");
    }
}

/// Attack: byte accounting of an inbox (now the arena's length). Exactly `MAX_INBOX_BYTES` fit,
/// one byte more is dead-lettered (an empty message still fits), and the count starts again
/// from zero once the inbox was delivered; likewise the message count. A time-sliced receiver
/// that leaves part of its inbox for the next tick (`keep_from`) has exactly the rest counted.
#[test]
fn the_inbox_byte_limit_is_exact_and_does_not_drift() {
    let big = abi::MAX_PAYLOAD_BYTES;
    let fit = abi::MAX_INBOX_BYTES / big;
    let tail = abi::MAX_INBOX_BYTES - fit * big;
    let mut rt = Runtime::new(config(1)).unwrap();
    let rec = rt.spawn_bytes(wat_agent(1, r#"(func (export "agent_step") (param i32) (result i32) i32.const 0)"#)).unwrap();
    for round in 0..3 {
        for _ in 0..fit {
            rt.send(rec, 1, 0, vec![round as u8; big]).unwrap();
        }
        rt.send(rec, 1, 0, vec![1; tail]).unwrap();
        rt.send(rec, 2, 0, vec![2; 1]).unwrap();
        rt.send(rec, 3, 0, Vec::new()).unwrap();
        let r = rt.tick().unwrap();
        let dead = rt.drain_dead_letters();
        assert_eq!(dead.len(), 1, "round {round}: one byte over the limit, one dead letter");
        assert_eq!((dead[0].reason, dead[0].message.kind, dead[0].message.payload.len()), (DeadLetterReason::RecipientInboxFull, 2, 1));
        assert_eq!(r.messages_delivered, fit as u64 + 2, "round {round}");
    }
    // The message count: 65,536 empty messages fit, the next does not.
    for _ in 0..=abi::MAX_INBOX_MESSAGES {
        rt.send(rec, 4, 0, Vec::new()).unwrap();
    }
    let r = rt.tick().unwrap();
    assert_eq!((r.messages_delivered, r.dead_letters), (abi::MAX_INBOX_MESSAGES as u64, 1));
    rt.drain_dead_letters();

    // Sliced (ABI 1): a turn delivers part of the inbox; the rest keeps its bytes counted, so
    // the next burst fits exactly the room left.
    let mut rt = Runtime::new(config(1)).unwrap();
    let rec = rt.spawn_bytes(recorder(1, 100)).unwrap();
    rt.set_fuel_per_tick(rec, 20_000).unwrap();
    for _ in 0..fit {
        rt.send(rec, 1, 0, vec![9; big]).unwrap();
    }
    rt.tick().unwrap();
    let info = rt.inspect(rec).unwrap();
    let left = info.inbox_len;
    assert!(left > 0 && left < fit && info.suspended.is_none(), "part of the inbox waits: {info:?}");
    assert_eq!(info.messages_received as usize + left, fit);
    for _ in 0..fit {
        rt.send(rec, 1, 0, vec![9; big]).unwrap();
    }
    let r = rt.tick().unwrap();
    assert_eq!(r.dead_letters as usize, left, "the room left is the limit less the bytes still waiting");
    assert!(rt.drain_dead_letters().iter().all(|d| d.reason == DeadLetterReason::RecipientInboxFull));
}

/// An agent whose every step sends, to the host: 17 maximal messages, then 640 bytes, 1 byte
/// and 0 bytes, keeping each `send` result at 5000 + 4 i.
fn outbox_probe() -> Vec<u8> {
    sender_agent(
        1,
        r#"(func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const 17)))
      (i32.store (i32.add (i32.const 5000) (i32.shl (local.get $i) (i32.const 2)))
        (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 8192) (i32.const 65496)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (i32.const 5068) (call $send (i64.const 0) (i32.const 2) (i32.const 0) (i32.const 8192) (i32.const 640)))
    (i32.store (i32.const 5072) (call $send (i64.const 0) (i32.const 3) (i32.const 0) (i32.const 8192) (i32.const 1)))
    (i32.store (i32.const 5076) (call $send (i64.const 0) (i32.const 4) (i32.const 0) (i32.const 8192) (i32.const 0)))
    i32.const 0)"#,
    )
}

/// Attack: byte accounting of an outbox (now the arena's length): the per-tick budget is
/// exactly `MAX_OUTBOX_BYTES_PER_TICK`, and a new tick starts with all of it, tick after tick
/// (the outbox's arena is swapped with the tick output's, then cleared).
#[test]
fn the_outbox_byte_budget_is_exact_and_renewed_each_tick() {
    assert_eq!(16 * 65_496 + 640, abi::MAX_OUTBOX_BYTES_PER_TICK);
    let mut rt = runtime(1);
    let probe = rt.spawn_bytes(outbox_probe()).unwrap();
    let mut want = vec![abi::SEND_OK; 16];
    want.extend([abi::SEND_ERR_OUTBOX_FULL, abi::SEND_OK, abi::SEND_ERR_OUTBOX_FULL, abi::SEND_OK]);
    for t in 0..4 {
        rt.tick().unwrap();
        let mem = rt.read_memory(probe, 5000, 80).unwrap();
        let got: Vec<i32> = mem.chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(got, want, "tick {t}");
        let sent = rt.drain_host_messages();
        let kinds: Vec<u32> = sent.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [vec![1; 16], vec![2, 4]].concat(), "tick {t}");
        assert_eq!(sent.iter().map(|m| m.payload.len()).sum::<usize>(), abi::MAX_OUTBOX_BYTES_PER_TICK);
    }
}

// ---------------------------------------------------------------------------------------------
// Memory: a live-byte counter of the calling thread (one worker: the tick runs on it)
// ---------------------------------------------------------------------------------------------

struct LiveBytes;

thread_local! {
    static LIVE: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// const-initialised thread-local `Cell` (no allocation, no destructor), so counting never
// recurses into the allocator.
unsafe impl std::alloc::GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        count(-(layout.size() as isize));
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static LIVE_BYTES: LiveBytes = LiveBytes;

fn live_bytes() -> isize {
    LIVE.with(|c| c.get())
}

/// An agent that, in the step after a host message whose payload is u32 `n`, sends `n` maximal
/// messages to agent `to`.
fn burster(to: u64) -> Vec<u8> {
    sender_agent(
        1,
        &format!(
            r#"(global $go (mut i32) (i32.const 0))
  (func (export "agent_receive") (param $ptr i32) (result i32)
    (global.set $go (i32.load offset=40 (local.get $ptr)))
    i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (block $done (loop $next
      (br_if $done (i32.eqz (global.get $go)))
      (drop (call $send (i64.const {to}) (i32.const 1) (i32.const 0) (i32.const 8192) (i32.const 65496)))
      (global.set $go (i32.sub (global.get $go) (i32.const 1)))
      (br $next)))
    i32.const 0)"#
        ),
    )
}

/// Attack: pin memory with a burst. Sixteen agents send one receiver 16 MiB in one tick (each
/// sender's outbox arena grows to 1 MiB, the receiver's inbox arena to 16 MiB), plain and
/// time-sliced (whose inbox is compacted by `keep_from` over several ticks); after the burst
/// has been delivered, the heap is back within a small margin of where it was: no arena keeps
/// more than `MAX_RETAINED_MAILBOX_BYTES`.
#[test]
fn a_burst_of_traffic_does_not_pin_its_arenas() {
    for slice in [0u64, 20_000] {
        let mut rt = Runtime::new(RuntimeConfig { workers: 1, ..config(1) }).unwrap();
        let rec = rt.spawn_bytes(recorder(1, 100)).unwrap();
        if slice > 0 {
            rt.set_fuel_per_tick(rec, slice).unwrap();
        }
        let bursters: Vec<u64> = (0..16).map(|_| rt.spawn_bytes(burster(rec)).unwrap()).collect();
        let quiet = |rt: &mut Runtime, ticks: usize| {
            for _ in 0..ticks {
                rt.tick().unwrap();
                rt.drain_host_messages();
                rt.drain_events();
            }
        };
        // Warm up with small traffic, then measure.
        for &b in &bursters {
            rt.send(b, 0, 0, 1u32.to_le_bytes().to_vec()).unwrap();
        }
        quiet(&mut rt, 200);
        let before = live_bytes();
        for &b in &bursters {
            rt.send(b, 0, 0, 16u32.to_le_bytes().to_vec()).unwrap();
        }
        rt.tick().unwrap();
        // The receiver ran before its senders: the burst waits in its inbox.
        let peak = live_bytes() - before;
        assert!(peak > 15 << 20, "slice {slice}: the burst is in the heap ({peak} bytes)");
        quiet(&mut rt, 300);
        let info = rt.inspect(rec).unwrap();
        assert_eq!((info.inbox_len, info.suspended), (0, None), "slice {slice}: the burst was delivered");
        assert!(rt.drain_dead_letters().is_empty());
        let after = live_bytes() - before;
        assert!(after < 1 << 20, "slice {slice}: {after} bytes still held after the burst (peak {peak})");
    }
}

// ---------------------------------------------------------------------------------------------
// Barriers, snapshots, replay, time travel, the tap, the ring
// ---------------------------------------------------------------------------------------------

/// A session whose barrier agent (trigger `all` on a sprayer and a burster) waits for ticks
/// with its inbox filling up, then is let through; a time-sliced recorder behind it.
struct Barrier {
    sprayer: u64,
    burster: u64,
    gate: u64,
    sliced: u64,
}

fn barrier_session(rt: &mut Runtime) -> Barrier {
    // Ids are known in advance: the sprayer and the burster send to the gate (3).
    let sprayer = rt.spawn_bytes(sprayer(3, 6)).unwrap();
    let burster = rt.spawn_bytes(burster(3)).unwrap();
    let gate_module = rt.load_module(recorder(2, 0)).unwrap();
    let gate = rt.spawn_after(gate_module, 0, &[sprayer, burster], Trigger::All).unwrap();
    assert_eq!(gate, 3);
    let sliced = rt.spawn_bytes(recorder(2, 1_000)).unwrap();
    rt.set_fuel_per_tick(sliced, 60_000).unwrap();
    Barrier { sprayer, burster, gate, sliced }
}

/// The inputs of tick `t` of the barrier session: the burster lets the gate through at ticks
/// 6 and 13; host messages for the sliced recorder every tick.
fn barrier_inputs(rt: &mut Runtime, b: &Barrier, t: u64) {
    if t == 6 || t == 13 {
        rt.send(b.burster, 0, 0, 1u32.to_le_bytes().to_vec()).unwrap();
    }
    for j in 0..4 {
        host_send(rt, b.sliced, 2_000_000 + t * 10 + j);
    }
}

/// Attack: snapshot/restore while inboxes hold messages (a barrier agent's inbox kept while it
/// waits, a sliced agent's backlog) and replay of the session: the restored runtime and the
/// replay must compute the same hashes on any number of workers, and the barrier agent must
/// get every message it waited for, once, whole, in canonical order.
#[test]
fn inboxes_kept_at_a_barrier_survive_snapshot_restore_and_replay() {
    let mut rt = Runtime::new(config(1)).unwrap();
    rt.start_recording().unwrap();
    let b = barrier_session(&mut rt);
    let mut hashes = Vec::new();
    let mut gate_seen = Vec::new();
    let mut snapshot = None;
    for t in 0..20u64 {
        barrier_inputs(&mut rt, &b, t);
        let r = rt.tick().unwrap();
        hashes.push(r.hash);
        let seen = forwarded(&mut rt);
        let at_gate: Vec<Seen> = seen.into_iter().filter(|s| s.to == b.gate).collect();
        if t < 6 {
            assert!(at_gate.is_empty() && r.agents_waiting == 1, "tick {t}: the gate waits");
            assert_eq!(rt.inspect(b.gate).unwrap().inbox_len, 6 * (t as usize + 1), "tick {t}: its inbox is kept");
        }
        if t == 4 {
            // Mid-wait: the gate's inbox holds 30 messages.
            snapshot = Some((rt.snapshot().unwrap(), hashes.len()));
        }
        gate_seen.extend(at_gate);
    }
    // The gate got every message of the sprayer once, whole, in order (the burster's maximal
    // messages are too large to forward: their sends fail, harmlessly).
    let markers: Vec<u64> = gate_seen.iter().filter(|s| s.from == b.sprayer).map(|s| check_payload(&s.payload, s.priority, "at the gate")).collect();
    let mut sorted = markers.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), markers.len(), "no duplicates");
    assert_eq!(sorted, (0..14u64).flat_map(|t| (0..6).map(move |i| t * 1000 + i)).collect::<Vec<_>>());

    // The restored runtime continues with the same hashes, whatever its workers.
    let (bytes, done) = snapshot.unwrap();
    for workers in [1, 2, 4] {
        let mut restored = Runtime::restore(&bytes, lockstep_core::RestoreOptions { workers, ..lockstep_core::RestoreOptions::development() }).unwrap();
        assert_eq!(restored.inspect(b.gate).unwrap().inbox_len, 30);
        for (t, want) in hashes.iter().enumerate().skip(done) {
            barrier_inputs(&mut restored, &b, t as u64);
            assert_eq!(restored.tick().unwrap().hash, *want, "restored on {workers} workers, tick {t}");
        }
    }
    // And the recording replays exactly.
    assert_replays_to(&mut rt, *hashes.last().unwrap());
}

/// Attack: the time-travel cursor's `messages_at` and the dashboard tap copy messages out of the
/// arenas (`to_messages`, `MessageRef`); for a time-sliced recorder whose batches are cut and
/// resumed, each tick's reported deliveries must be exactly what the agent was handed that tick
/// (it forwarded each), payloads included, and the tap's heads must be the payloads' heads.
#[test]
fn messages_at_and_the_tap_report_the_payloads_the_agent_was_handed() {
    let mut rt = Runtime::new(config(1)).unwrap();
    rt.start_recording().unwrap();
    let rec = rt.spawn_bytes(recorder(2, 1_000)).unwrap();
    rt.set_fuel_per_tick(rec, 40_000).unwrap();
    let _senders: Vec<u64> = (0..2).map(|k| rt.spawn_bytes(sprayer(rec, 5 + k)).unwrap()).collect();
    rt.watch_agents(&[rec]);
    let mut per_tick = Vec::new();
    let mut tapped = 0;
    let mut split = 0;
    for t in 0..25u64 {
        for j in 0..3 {
            host_send(&mut rt, rec, 3_000_000 + t * 10 + j);
        }
        rt.tick().unwrap();
        split += usize::from(rt.inspect(rec).unwrap().suspended == Some(AbiCall::Receive));
        per_tick.push(forwarded(&mut rt));
        let w = rt.watched_messages(rec).unwrap();
        for m in w.inbound.iter().filter(|m| m.tick == t) {
            let marker = u64::from_le_bytes(m.head[..8].try_into().unwrap());
            let p = payload_of(marker);
            assert_eq!((m.bytes as usize, m.head.as_slice()), (p.len(), &p[..p.len().min(lockstep_core::observe::TAP_HEAD_BYTES)]));
            tapped += 1;
        }
    }
    assert!(tapped > 300, "{tapped}");
    assert!(split > 3, "batches were cut by the slice ({split} ticks ended mid-call)");
    assert!(per_tick.iter().flatten().count() > 40);
    let log = rt.stop_recording().unwrap();
    let mut cursor = lockstep_core::journal::JournalCursor::open_log(log, lockstep_core::journal::CursorOptions::default()).unwrap();
    for (t, seen) in per_tick.iter().enumerate() {
        let agents = cursor.messages_at(t as u64).unwrap();
        let got: Vec<Seen> = agents
            .iter()
            .filter(|a| a.agent == rec)
            .flat_map(|a| a.received.iter())
            .map(|m| Seen { from: m.from, to: m.to, seq: m.seq, kind: m.kind, priority: m.priority, payload: m.payload.clone() })
            .collect();
        assert_eq!(&got, seen, "tick {t}: what messages_at says it was handed is what it forwarded");
    }
}

/// Attack: ring records of very different sizes in a row are read (`drain_heads_to`) straight
/// into the ring batch's arena: a short record after a long one must not
/// carry the long one's bytes, and each must reach the recorder exactly.
#[test]
fn ring_records_of_mixed_sizes_arrive_exactly() {
    use lockstep_core::ring;
    let cap = 1 << 20;
    let mut rt = runtime(1);
    let rec = rt.spawn_bytes(recorder(2, 0)).unwrap();
    let (_inbound, mut js) = attach_inbound_ring(&mut rt, cap);
    let max = abi::MAX_PAYLOAD_BYTES - abi::MESSAGE_HEADER_BYTES; // what the recorder can forward
    let sizes = [max, 3, 0, 1_000, 7, max, 1, max - 1, 0, 64];
    let mut want = Vec::new();
    for round in 0..3u8 {
        for (k, &n) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..n).map(|i| (i as u8) ^ (k as u8).wrapping_mul(31) ^ round).collect();
            js.try_push(ring::TYPE_MESSAGE, k as u32, 0, rec, &payload).unwrap();
            want.push((k as u32, payload));
        }
        rt.tick().unwrap();
    }
    rt.tick().unwrap();
    let got: Vec<(u32, Vec<u8>)> = forwarded(&mut rt).into_iter().map(|s| (s.kind, s.payload)).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "every ring record arrives whole and alone");
}

/// Attack: kill or shut down an agent (not sliced) whose inbox is full of messages from the
/// host and from agents, mixed priorities and lengths: every one of them must be dead-lettered
/// (`recipient_stopped`), whole, under its own header, none twice; and the next message to it
/// too. Same hashes on 1 and 4 workers.
#[test]
fn kill_or_shutdown_with_a_full_inbox_dead_letters_every_message_whole() {
    for kill in [true, false] {
        let mut hashes = Vec::new();
        for workers in [1, 4] {
            let mut rt = Runtime::new(config(workers)).unwrap();
            // The gate never runs: its upstream burster never sends, so its inbox fills.
            let spr = rt.spawn_bytes(sprayer(3, 40)).unwrap();
            let idle = rt.spawn_bytes(burster(3)).unwrap();
            let m = rt.load_module(recorder(2, 0)).unwrap();
            let gate = rt.spawn_after(m, 0, &[spr, idle], Trigger::All).unwrap();
            let mut sent = Vec::new();
            for t in 0..5u64 {
                for j in 0..7 {
                    let m = 4_000_000 + t * 10 + j;
                    host_send(&mut rt, gate, m);
                    sent.push((0, m));
                }
                sent.extend((0..40).map(|i| (spr, t * 1000 + i)));
                hashes.push(rt.tick().unwrap().hash);
            }
            assert_eq!(rt.inspect(gate).unwrap().inbox_len, sent.len());
            if kill {
                rt.kill(gate).unwrap();
            } else {
                rt.shutdown(gate).unwrap();
            }
            hashes.push(rt.tick().unwrap().hash);
            let dead = rt.drain_dead_letters();
            let mut got: Vec<(u64, u64)> = dead
                .iter()
                .map(|d| {
                    assert_eq!((d.reason, d.message.to), (DeadLetterReason::RecipientStopped, gate));
                    (d.message.from, check_payload(&d.message.payload, d.message.priority, "dead letter"))
                })
                .collect();
            // The sprayer's messages of the stop tick are dead-lettered by routing: the same.
            sent.extend((0..40).map(|i| (spr, 5 * 1000 + i)));
            got.sort_unstable();
            sent.sort_unstable();
            assert_eq!(got, sent, "kill={kill}: every message dead-lettered once, whole");
        }
        let (a, b) = hashes.split_at(hashes.len() / 2);
        assert_eq!(a, b, "kill={kill}: hashes on 1 and 4 workers");
    }
}

// ---------------------------------------------------------------------------------------------
// Forgeries: a snapshot and a replay log rewritten with valid checksums
// ---------------------------------------------------------------------------------------------

fn decoded_section(bytes: &[u8], index: usize) -> Vec<u8> {
    let mut body = Vec::new();
    forge(bytes, index, |b| body = b.clone());
    body
}

/// Attack: a snapshot whose stored inbox lies (its byte count, a payload length, any byte of
/// its messages), checksums redone. Restoring must be a typed refusal, or a runtime that ticks
/// and whose inbox limit still holds (the arena is rebuilt from the messages, the stored count
/// only checked); never a panic.
#[test]
fn a_forged_inbox_in_a_snapshot_is_refused_or_harmless() {
    let mut rt = Runtime::new(config(1)).unwrap();
    let b = barrier_session(&mut rt);
    for t in 0..5 {
        barrier_inputs(&mut rt, &b, t);
        rt.tick().unwrap();
    }
    assert_eq!(rt.inspect(b.gate).unwrap().inbox_len, 30);
    let bytes = rt.snapshot().unwrap();
    let agents = sections(&bytes).iter().position(|s| s.1 == 5).unwrap();
    let body = decoded_section(&bytes, agents);
    // The gate's inbox: its second message is the sprayer's marker 1, the first marker 0.
    let p1 = payload_of(1);
    let at1 = body.windows(p1.len()).position(|w| w == p1.as_slice()).expect("marker 1 in the agents section");
    let msg1 = at1 - 4 - 32;
    let msg0 = msg1 - (32 + 4 + payload_of(0).len());
    let count_at = msg0 - 4;
    assert_eq!(u32::from_le_bytes(body[count_at..count_at + 4].try_into().unwrap()), 30, "the inbox's message count");
    let bytes_at = count_at - 6 * 8;
    let stored = u64::from_le_bytes(body[bytes_at..bytes_at + 8].try_into().unwrap());
    let want: u64 = (0..5u64).flat_map(|t| (0..6).map(move |i| payload_of(t * 1000 + i).len() as u64)).sum();
    assert_eq!(stored, want, "the inbox's byte count");

    let options = || lockstep_core::RestoreOptions { workers: 1, ..lockstep_core::RestoreOptions::development() };
    let restore = |forged: &[u8], what: &str| match Runtime::restore(forged, options()) {
        Ok(mut r) => {
            for _ in 0..3 {
                r.tick().unwrap();
            }
            r.drain_host_messages();
            true
        }
        Err(e) => {
            assert!(e.code().starts_with("E_SNAPSHOT_"), "{what}: {e}");
            false
        }
    };
    // The byte count off by one either way, or huge: refused.
    for v in [stored + 1, stored - 1, u64::MAX, abi::MAX_INBOX_BYTES as u64 + 1] {
        let forged = forge(&bytes, agents, |b| b[bytes_at..bytes_at + 8].copy_from_slice(&v.to_le_bytes()));
        let e = Runtime::restore(&forged, options()).err().expect("a lying inbox byte count is refused");
        assert!(e.to_string().contains("inbox counts"), "{e}");
    }
    // A payload length that lies, and every byte of the first messages flipped: typed errors
    // or harmless values.
    for delta in [1i64, -1, 1 << 20, -(1 << 20)] {
        let len_at = msg0 + 32;
        let forged = forge(&bytes, agents, |b| {
            let n = u32::from_le_bytes(b[len_at..len_at + 4].try_into().unwrap()) as i64 + delta;
            b[len_at..len_at + 4].copy_from_slice(&(n as u32).to_le_bytes());
        });
        restore(&forged, &format!("payload length {delta:+}"));
    }
    let mut harmless = 0;
    for i in bytes_at..at1 + p1.len() {
        for bit in [0x01u8, 0x80] {
            let forged = forge(&bytes, agents, |b| b[i] ^= bit);
            harmless += usize::from(restore(&forged, &format!("byte {i} ^ {bit:#x}")));
        }
    }
    assert!(harmless > 0, "some forgeries are harmless values (a seq, a kind, a payload byte)");
}

/// Attack: a replay log whose Send records were rewritten with valid CRCs: two payloads of the
/// same length swapped between headers, a priority changed (the delivery order), one payload
/// byte changed. The tick hash covers each host message with its payload, so each must be
/// caught as a divergence, never verified.
#[test]
fn a_replay_log_with_payloads_moved_between_headers_diverges() {
    use lockstep_core::replay_log::{self, LogReader, Record};
    let mut rt = Runtime::new(config(1)).unwrap();
    rt.start_recording().unwrap();
    let rec = rt.spawn_bytes(recorder(2, 0)).unwrap();
    for t in 0..6u64 {
        for j in 0..6 {
            host_send(&mut rt, rec, 5_000_000 + t * 10 + j);
        }
        // Two messages of the same length, different payloads and priorities.
        rt.send(rec, 9, 1, vec![t as u8; 16]).unwrap();
        rt.send(rec, 9, -1, vec![0xA0 | t as u8; 16]).unwrap();
        rt.tick().unwrap();
    }
    let log = rt.stop_recording().unwrap();
    assert_eq!(lockstep_core::replay(&log, 1, |_| {}).unwrap().divergence, None);
    let mut reader = LogReader::new(&log).unwrap();
    let mut records = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        records.push(r);
    }
    let encode = |records: &[Record]| {
        let mut out = Vec::new();
        replay_log::write_header(&mut out);
        for r in records {
            r.encode(&mut out);
        }
        out
    };
    assert_eq!(lockstep_core::replay(&encode(&records), 1, |_| {}).unwrap().divergence, None, "re-encoded as is, it verifies");
    // The two kind-9 messages of tick 3 (16 bytes each).
    let pair: Vec<usize> = records.iter().enumerate().filter(|(_, r)| matches!(r, Record::Send { tick: 3, kind: 9, .. })).map(|(i, _)| i).collect();
    assert_eq!(pair.len(), 2);
    let payload = |r: &Record| match r {
        Record::Send { payload, .. } => payload.clone(),
        _ => unreachable!(),
    };
    let (p0, p1) = (payload(&records[pair[0]]), payload(&records[pair[1]]));
    let mut swapped = records.clone();
    for (i, p) in [(pair[0], p1), (pair[1], p0)] {
        if let Record::Send { payload, .. } = &mut swapped[i] {
            *payload = p;
        }
    }
    let mut reprioritized = records.clone();
    if let Record::Send { priority, .. } = &mut reprioritized[pair[1]] {
        *priority = 2;
    }
    let mut flipped = records.clone();
    if let Record::Send { payload, .. } = &mut flipped[pair[0]] {
        payload[15] ^= 1;
    }
    for (what, forged) in [("swapped payloads", swapped), ("a changed priority", reprioritized), ("a flipped payload byte", flipped)] {
        match lockstep_core::replay(&encode(&forged), 1, |_| {}) {
            Ok(r) => assert!(r.divergence.is_some(), "{what} verified"),
            Err(e) => assert!(e.code().starts_with("E_"), "{what}: {e}"),
        }
    }
}

/// Attack: determinism of the arena path under load. Sixty flood agents (random recipients,
/// 64-byte payloads) with a few of them time-sliced, kills mid-run (messages to them become dead
/// letters) and host messages: the same hashes on 1, 2 and 4 workers, and the recording replays
/// exactly on 2.
#[test]
fn a_flood_with_sliced_agents_and_kills_hashes_the_same_on_any_workers() {
    let mut runs = Vec::new();
    for workers in [1, 2, 4] {
        let mut rt = runtime(workers);
        rt.start_recording().unwrap();
        let m = rt.load_module(agent("flood")).unwrap();
        let ids: Vec<u64> = (0..60).map(|_| rt.spawn(m).unwrap()).collect();
        for (k, &id) in ids.iter().enumerate() {
            rt.send(id, 0, 0, (1 + k as u32 % 7).to_le_bytes().to_vec()).unwrap();
            if k % 9 == 0 {
                rt.set_fuel_per_tick(id, 3_000).unwrap();
            }
        }
        let mut hashes = Vec::new();
        for t in 0..40u64 {
            if t == 15 {
                rt.kill(ids[5]).unwrap();
                rt.shutdown(ids[18]).unwrap();
            }
            rt.send(ids[(t as usize * 7) % 60], 1, (t % 3) as i32, payload_of(t)).unwrap();
            hashes.push(rt.tick().unwrap().hash);
        }
        assert!(rt.drain_dead_letters().len() > 10, "messages to the stopped agents are dead letters");
        let log = rt.stop_recording().unwrap();
        let r = lockstep_core::replay(&log, 2, |_| {}).unwrap();
        assert_eq!((r.divergence, r.final_hash), (None, *hashes.last().unwrap()), "{workers} workers");
        runs.push(hashes);
    }
    assert!(runs.windows(2).all(|w| w[0] == w[1]), "hashes differ between 1, 2 and 4 workers");
}
