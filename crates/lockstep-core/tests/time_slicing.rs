//! Time slicing (issue 16, part 1; docs/ABI.md, "Time slicing"): a call that burns its slice
//! is suspended, not killed, and goes on next tick exactly where it stopped.

mod common;

use common::{agent, importing_agent, wat};
use lockstep_core::{AbiCall, Event, FaultKind, MemoryAllocator, RestoreOptions, Runtime, RuntimeConfig};

/// An agent whose first step sieves the primes below `$n` (a byte per number at 65,536),
/// sends their count to the host and remembers it is done; later steps send the count again.
/// About 3.4 M fuel for n = 60,000: hundreds of slices of 10,000.
const SIEVE: &str = r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $count (mut i32) (i32.const -1))
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func $sieve (param $n i32) (result i32)
    (local $i i32) (local $j i32) (local $c i32)
    (local.set $i (i32.const 2))
    (block $done (loop $outer
      (br_if $done (i32.ge_u (i32.mul (local.get $i) (local.get $i)) (local.get $n)))
      (if (i32.eqz (i32.load8_u offset=65536 (local.get $i)))
        (then
          (local.set $j (i32.mul (local.get $i) (local.get $i)))
          (block $end (loop $inner
            (br_if $end (i32.ge_u (local.get $j) (local.get $n)))
            (i32.store8 offset=65536 (local.get $j) (i32.const 1))
            (local.set $j (i32.add (local.get $j) (local.get $i)))
            (br $inner)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $outer)))
    (local.set $i (i32.const 2))
    (block $done (loop $count
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $c (i32.add (local.get $c) (i32.eqz (i32.load8_u offset=65536 (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $count)))
    (local.get $c))
  (func (export "agent_step") (param i32) (result i32)
    (if (i32.lt_s (global.get $count) (i32.const 0))
      (then (global.set $count (call $sieve (i32.const 60000)))))
    (i32.store (i32.const 2000) (global.get $count))
    (drop (call $send (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 2000) (i32.const 4)))
    i32.const 0)
)"#;

/// An agent that spins for ever in `agent_step`.
const SPINNER: &str = r#"(module
  (memory (export "memory") 2)
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) (loop $l (br $l)) i32.const 0))"#;

/// An agent (ABI 2) whose receive burns ~40,000 fuel per message (a counted loop) and sends
/// the sender's payload back plus one, so slices split batches; its step counts its steps.
const HEAVY_RECEIVER: &str = r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $steps (mut i32) (i32.const 0))
  (func (export "lockstep_abi_version") (result i32) i32.const 2)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "agent_receive_batch") (param $ptr i32) (param $count i32) (result i32)
    (local $k i32) (local $spin i32) (local $at i32)
    (local.set $at (local.get $ptr))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $k) (local.get $count)))
      (local.set $spin (i32.const 0))
      (block $s (loop $l
        (br_if $s (i32.ge_u (local.get $spin) (i32.const 10000)))
        (local.set $spin (i32.add (local.get $spin) (i32.const 1)))
        (br $l)))
      ;; payload (4 bytes after the 40-byte header) + 1, back to the sender; records are
      ;; 8-byte aligned: 44 bytes take 48
      (i32.store (i32.const 3000) (i32.add (i32.load offset=40 (local.get $at)) (i32.const 1)))
      (drop (call $send (i64.load (local.get $at)) (i32.const 1) (i32.const 0) (i32.const 3000) (i32.const 4)))
      (local.set $at (i32.add (local.get $at) (i32.const 48)))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (i32.store (i32.add (local.get $ptr) (i32.const 65536)) (local.get $k))
      (br $next)))
    i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (global.set $steps (i32.add (global.get $steps) (i32.const 1)))
    i32.const 0)
)"#;

fn config(workers: usize) -> RuntimeConfig {
    RuntimeConfig { workers, fuel_per_call: 50_000_000, max_agents: 256, ..RuntimeConfig::development() }
}

fn count_of(rt: &mut Runtime) -> Vec<u32> {
    rt.drain_host_messages().iter().map(|m| u32::from_le_bytes(m.payload[..4].try_into().unwrap())).collect()
}

#[test]
fn a_sliced_sieve_gives_the_same_result_as_an_unsliced_run() {
    let mut plain = Runtime::new(config(1)).unwrap();
    plain.spawn_bytes(wat(SIEVE)).unwrap();
    plain.tick().unwrap();
    let expected = count_of(&mut plain);
    assert_eq!(expected, [6057], "π(60,000)");
    let whole_fuel = plain.inspect(1).unwrap().fuel_consumed;

    let mut rt = Runtime::new(config(1)).unwrap();
    let id = rt.spawn_bytes(wat(SIEVE)).unwrap();
    rt.set_fuel_per_tick(id, 10_000).unwrap();
    let mut ticks = 0;
    let mut got = Vec::new();
    while got.is_empty() {
        let report = rt.tick().unwrap();
        ticks += 1;
        got = count_of(&mut rt);
        let info = rt.inspect(id).unwrap();
        if got.is_empty() {
            assert_eq!(report.agents_suspended, 1, "tick {ticks}");
            assert_eq!(info.suspended, Some(AbiCall::Step));
            assert!(rt.read_memory(id, 0, 4).is_err(), "its memory is mid-call");
        } else {
            assert_eq!(report.agents_suspended, 0);
            assert_eq!(info.suspended, None);
        }
        assert!(ticks < 1_000, "the sieve never ended");
    }
    assert_eq!(got, expected, "same result sliced");
    // ~3.4 M fuel in slices of 10,000: hundreds of ticks, and exactly the unsliced fuel.
    assert!(ticks > 100, "{ticks} ticks");
    assert_eq!(rt.inspect(id).unwrap().fuel_consumed, whole_fuel);
    let events = rt.drain_events();
    let suspended: Vec<_> = events.iter().filter(|e| matches!(e, Event::Suspended { .. })).collect();
    assert_eq!(suspended.len(), 1, "one Suspended event per call");
    let resumed = events.iter().find_map(|e| match e {
        Event::Resumed { ticks, call, .. } => Some((*call, *ticks)),
        _ => None,
    });
    assert_eq!(resumed, Some((AbiCall::Step, ticks as u64 - 1)));
    // Later steps are short: not suspended.
    assert_eq!(rt.tick().unwrap().agents_suspended, 0);
    assert_eq!(count_of(&mut rt), expected);
}

#[test]
fn a_spinning_agent_is_suspended_each_tick_and_terminated_at_its_total_budget() {
    let mut rt = Runtime::new(RuntimeConfig { fuel_per_call: 1_000_000, ..config(2) }).unwrap();
    let spinner = rt.spawn_bytes(wat(SPINNER)).unwrap();
    let counter = rt.spawn_bytes(agent("counter")).unwrap();
    rt.set_fuel_per_tick(spinner, 100_000).unwrap();
    let mut suspended_ticks = 0;
    for t in 0..30 {
        let report = rt.tick().unwrap();
        // The other agent steps every tick, whatever the spinner does.
        assert_eq!(rt.inspect(counter).unwrap().steps, t + 1);
        if report.agents_suspended == 1 {
            suspended_ticks += 1;
        }
        if report.faults == 1 {
            let info = rt.inspect(spinner).unwrap();
            let lockstep_core::AgentState::Faulted(f) = info.state else { panic!("{:?}", info.state) };
            assert_eq!((f.kind, f.call), (FaultKind::FuelExhausted, AbiCall::Step));
            assert!(f.detail.contains("1000000"), "{f}");
            // Ten slices of 100,000 make the budget of 1,000,000: suspended at the first nine.
            assert_eq!(suspended_ticks, 9);
            assert_eq!(t, 9);
            return;
        }
    }
    panic!("the spinner was never terminated");
}

/// A session mixing sliced and unsliced agents, messages between them, a slice removed and
/// one set mid-session; the tick hashes.
fn mixed_session(workers: usize, allocator: MemoryAllocator, record: bool) -> (Vec<String>, String, Option<Vec<u8>>) {
    let mut rt = Runtime::new(RuntimeConfig { allocator, record, ..config(workers) }).unwrap();
    let sieve = rt.spawn_bytes(wat(SIEVE)).unwrap();
    let heavy = rt.spawn_bytes(wat(HEAVY_RECEIVER)).unwrap();
    let counter = rt.load_module(agent("counter")).unwrap();
    let counters: Vec<u64> = (0..70).map(|_| rt.spawn(counter).unwrap()).collect();
    rt.set_fuel_per_tick(sieve, 25_000).unwrap();
    rt.set_fuel_per_tick(heavy, 60_000).unwrap();
    let mut hashes = Vec::new();
    for t in 0..60u32 {
        // Host messages to the heavy receiver: several per tick, so batches are split.
        for k in 0..3u32 {
            rt.send(heavy, 0, 0, (t * 10 + k).to_le_bytes().to_vec()).unwrap();
        }
        if t == 20 {
            rt.set_fuel_per_tick(counters[3], 5_000).unwrap();
        }
        if t == 40 {
            let _ = rt.set_fuel_per_tick(heavy, 0);
        }
        hashes.push(rt.tick().unwrap().hash.to_hex());
    }
    let deep = rt.deep_hash().hash.to_hex();
    let log = if record { Some(rt.replay_log().unwrap()) } else { None };
    (hashes, deep, log)
}

#[test]
fn sliced_sessions_hash_the_same_with_any_workers_and_allocator_and_replay_exactly() {
    let (hashes, deep, log) = mixed_session(1, MemoryAllocator::default(), true);
    for (workers, allocator) in [(2, MemoryAllocator::Pooling), (4, MemoryAllocator::default())] {
        let (h, d, _) = mixed_session(workers, allocator, false);
        assert_eq!(h, hashes, "{workers} workers, {allocator:?}");
        assert_eq!(d, deep);
    }
    let report = lockstep_core::replay(&log.unwrap(), 2, |_| {}).unwrap();
    assert!(report.complete && report.divergence.is_none(), "{report:?}");
    assert_eq!(report.ticks_verified, 60);
}

/// In the child process: the mixed session's hashes, printed.
#[test]
fn child_prints_sliced_hashes() {
    if std::env::var("LOCKSTEP_SLICING_CHILD").is_err() {
        return;
    }
    let (hashes, deep, _) = mixed_session(2, MemoryAllocator::default(), false);
    for h in hashes {
        println!("HASH {h}");
    }
    println!("DEEP {deep}");
}

#[test]
fn a_sliced_session_hashes_the_same_in_another_process() {
    let (hashes, deep, _) = mixed_session(1, MemoryAllocator::Pooling, false);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_prints_sliced_hashes", "--nocapture", "--test-threads=1"])
        .env("LOCKSTEP_SLICING_CHILD", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let child: Vec<String> = text.lines().filter_map(|l| l.split("HASH ").nth(1).map(String::from)).collect();
    assert_eq!(child, hashes);
    assert!(text.contains(&format!("DEEP {deep}")));
}

#[test]
fn a_suspended_receive_keeps_its_messages_in_order_and_delivers_each_once() {
    // The heavy receiver burns ~40,000 fuel a message: with a slice of 60,000 a batch of 3 is
    // split over ticks. Every message comes back (+1) exactly once, in the order sent.
    let mut rt = Runtime::new(config(1)).unwrap();
    let heavy = rt.spawn_bytes(wat(HEAVY_RECEIVER)).unwrap();
    rt.set_fuel_per_tick(heavy, 60_000).unwrap();
    let mut sent = Vec::new();
    for t in 0..10u32 {
        for k in 0..3u32 {
            let v = t * 10 + k;
            rt.send(heavy, 0, 0, v.to_le_bytes().to_vec()).unwrap();
            sent.push(v + 1);
        }
    }
    let mut back = Vec::new();
    let mut suspended_in_receive = 0;
    for _ in 0..200 {
        let r = rt.tick().unwrap();
        if rt.inspect(heavy).unwrap().suspended == Some(AbiCall::Receive) {
            suspended_in_receive += 1;
        }
        back.extend(count_of(&mut rt));
        if back.len() == sent.len() && r.agents_suspended == 0 {
            break;
        }
    }
    assert!(suspended_in_receive > 5, "batches were split: {suspended_in_receive}");
    assert_eq!(back, sent);
    assert_eq!(rt.inspect(heavy).unwrap().messages_received, 30);
}

#[test]
fn a_snapshot_refuses_a_suspended_agent_and_the_journal_puts_its_snapshot_off() {
    let dir = std::env::temp_dir().join(format!("lockstep-slicing-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let journal = lockstep_core::journal::JournalConfig { snapshot_interval_ticks: 5, ..lockstep_core::journal::JournalConfig::new(&dir) };
    let mut rt = Runtime::new(RuntimeConfig { journal: Some(journal), ..config(1) }).unwrap();
    let id = rt.spawn_bytes(wat(SIEVE)).unwrap();
    rt.spawn_bytes(agent("counter")).unwrap();
    rt.set_fuel_per_tick(id, 200_000).unwrap();
    let mut done_at = None;
    for t in 1..=40u64 {
        let r = rt.tick().unwrap();
        if r.agents_suspended == 1 {
            let e = rt.snapshot().expect_err("refused while suspended");
            assert_eq!(e.code(), "E_SNAPSHOT_UNSUPPORTED");
            assert!(e.to_string().contains("suspended in agent_step"), "{e}");
        } else if done_at.is_none() {
            done_at = Some(t);
        }
    }
    let done_at = done_at.unwrap();
    assert!(done_at > 5, "the sieve outlasts the first interval (done after {done_at} ticks)");
    rt.sync_journal().unwrap();
    let mut snapshots: Vec<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("snapshot-")?.strip_suffix(".lssnap")?.parse().ok())
        .collect();
    snapshots.sort_unstable();
    // None while the call was suspended; the first due one right after it ended.
    assert_eq!(snapshots.first(), Some(&done_at), "{snapshots:?}");
    // And the slice is in it: restored, the agent is still sliced and continues exactly.
    let bytes = std::fs::read(dir.join(lockstep_core::journal::snapshot_file_name(done_at))).unwrap();
    let mut restored = Runtime::restore(&bytes, RestoreOptions { workers: 2, ..RestoreOptions::development() }).unwrap();
    assert_eq!(restored.fuel_per_tick(id).unwrap(), 200_000);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
    restored.tick().unwrap();
}

#[test]
fn set_fuel_per_tick_says_what_is_wrong() {
    let mut rt = Runtime::new(config(1)).unwrap();
    let id = rt.spawn_bytes(wat(SIEVE)).unwrap();
    let e = rt.set_fuel_per_tick(id, 50_000_001).unwrap_err();
    assert!(e.code() == "E_INVALID_ARGUMENT" && e.to_string().contains("per-call fuel budget"), "{e}");
    assert_eq!(rt.set_fuel_per_tick(99, 1).unwrap_err().code(), "E_UNKNOWN_AGENT");
    rt.set_fuel_per_tick(id, 10_000).unwrap();
    rt.tick().unwrap();
    let e = rt.set_fuel_per_tick(id, 20_000).unwrap_err();
    assert!(e.to_string().contains("suspended in agent_step"), "{e}");
    let mut unmetered = Runtime::new(RuntimeConfig { fuel_per_call: 0, ..config(1) }).unwrap();
    let id = unmetered.spawn_bytes(wat(SIEVE)).unwrap();
    let e = unmetered.set_fuel_per_tick(id, 10).unwrap_err();
    assert!(e.to_string().contains("fuel metering"), "{e}");
}

#[test]
fn killing_or_stopping_a_suspended_agent_dead_letters_its_messages() {
    for kill in [true, false] {
        let mut rt = Runtime::new(config(1)).unwrap();
        let heavy = rt.spawn_bytes(wat(HEAVY_RECEIVER)).unwrap();
        rt.set_fuel_per_tick(heavy, 60_000).unwrap();
        for v in 0..5u32 {
            rt.send(heavy, 0, 0, v.to_le_bytes().to_vec()).unwrap();
        }
        rt.tick().unwrap();
        assert_eq!(rt.inspect(heavy).unwrap().suspended, Some(AbiCall::Receive));
        if kill {
            rt.kill(heavy).unwrap();
        } else {
            rt.shutdown(heavy).unwrap();
        }
        rt.tick().unwrap();
        let info = rt.inspect(heavy).unwrap();
        assert!(!info.state.is_running() && info.suspended.is_none());
        // One message was handled whole before the slice ran out; the batch's other messages
        // (in flight) and none lost: 5 = handled + dead letters.
        let handled = info.messages_received;
        let dead = rt.drain_dead_letters().len() as u64;
        assert_eq!(handled + dead, 5, "kill: {kill}");
        assert!(dead >= 3, "kill: {kill}, {dead} dead letters");
    }
}

/// Red team of issue 16: wasmtime's pooling allocator holds 1,000 fiber stacks by default, so
/// the 1,001st agent suspended at once trapped ("maximum concurrent limit of 1000 for fibers
/// reached") on Pooling but not on Slab: a divergence between allocators.
#[test]
fn more_than_a_thousand_agents_suspend_at_once_alike_on_both_allocators() {
    let mut hashes = Vec::new();
    for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
        let mut rt = Runtime::new(RuntimeConfig { allocator, max_agents: 1_200, fuel_per_call: 1_000_000, ..config(2) }).unwrap();
        let m = rt.load_module(wat(SPINNER)).unwrap();
        for _ in 0..1_100 {
            let id = rt.spawn(m).unwrap();
            rt.set_fuel_per_tick(id, 10_000).unwrap();
        }
        let mut h = Vec::new();
        for _ in 0..3 {
            let r = rt.tick().unwrap();
            assert_eq!((r.agents_suspended, r.faults), (1_100, 0), "{allocator:?}");
            h.push(r.hash.to_hex());
        }
        hashes.push(h);
    }
    assert_eq!(hashes[0], hashes[1]);
}

/// The bound that keeps both allocators alike (`limits::MAX_SLICED_AGENTS`): past it a slice is
/// refused, on either allocator, and an agent that stops makes room.
#[test]
fn at_most_max_sliced_agents_hold_a_slice() {
    let max = lockstep_core::limits::MAX_SLICED_AGENTS;
    let mut rt = Runtime::new(RuntimeConfig { max_agents: max as u32 + 2, fuel_per_call: 1_000_000, ..config(1) }).unwrap();
    let m = rt.load_module(wat(SPINNER)).unwrap();
    let ids: Vec<u64> = (0..=max).map(|_| rt.spawn(m).unwrap()).collect();
    for &id in &ids[..max] {
        rt.set_fuel_per_tick(id, 10_000).unwrap();
    }
    let e = rt.set_fuel_per_tick(ids[max], 10_000).unwrap_err();
    assert!(e.code() == "E_INVALID_ARGUMENT" && e.to_string().contains("10000 live agents hold a time slice"), "{e}");
    assert!(rt.check_fuel_per_tick(m, 10_000).is_err(), "spawn(m, {{ fuelPerTick }}) is refused before it spawns");
    // A slice removed still counts (the agent keeps its fiber); one that stops makes room.
    rt.set_fuel_per_tick(ids[0], 0).unwrap();
    assert!(rt.set_fuel_per_tick(ids[max], 10_000).is_err());
    rt.kill(ids[0]).unwrap();
    rt.set_fuel_per_tick(ids[max], 10_000).unwrap();
}

#[test]
fn a_suspended_barrier_agent_goes_on_without_its_upstream_agents() {
    // The sieve, sliced, with trigger 'all' downstream of a counter that never sends it
    // anything: it waits at its barrier while it has that edge. Without the edge its first
    // step starts and is suspended; with the edge back, the suspended call must still go on
    // every tick (it is the rest of a turn), not wait for the counter.
    let mut rt = Runtime::new(config(1)).unwrap();
    let sieve = rt.spawn_bytes(wat(SIEVE)).unwrap();
    let quiet = rt.spawn_bytes(agent("counter")).unwrap();
    rt.connect(quiet, sieve).unwrap();
    rt.set_trigger(sieve, lockstep_core::Trigger::All).unwrap();
    rt.set_fuel_per_tick(sieve, 50_000).unwrap();
    assert_eq!(rt.tick().unwrap().agents_waiting, 1, "nothing from upstream: it waits");
    rt.disconnect(quiet, sieve).unwrap();
    assert_eq!(rt.tick().unwrap().agents_suspended, 1);
    rt.connect(quiet, sieve).unwrap();
    let mut ticks = 0;
    loop {
        let r = rt.tick().unwrap();
        ticks += 1;
        if r.agents_suspended == 0 {
            break;
        }
        assert_eq!(r.agents_waiting, 0, "a suspended call does not wait at its barrier (tick {ticks})");
        assert!(ticks < 1_000, "the sieve never ended");
    }
    assert_eq!(count_of(&mut rt), [6057]);
}

/// A sliced agent whose step draws random numbers for ever with `random_fill`: it is
/// suspended tick after tick, ends at its per-call budget with `fuel_exhausted`, and two runs
/// end alike (same tick, same hashes). (A first `random_fill` charged fuel per number with
/// `set_fuel` inside the host call, which restarts the slice's count: this agent was never
/// suspended and burned its whole budget in one tick.)
#[test]
fn a_sliced_agent_drawing_random_numbers_is_suspended_then_runs_out_of_fuel_alike() {
    let drawer = importing_agent(
        r#"(import "lockstep" "random_fill" (func $random_fill (param i32 i32)))"#,
        "(loop $l (call $random_fill (i32.const 4096) (i32.const 32)) (br $l)) i32.const 0",
    );
    let run = || {
        let mut rt = Runtime::new(RuntimeConfig { fuel_per_call: 1_000_000, ..config(1) }).unwrap();
        let drawer = rt.spawn_bytes(drawer.clone()).unwrap();
        rt.set_fuel_per_tick(drawer, 100_000).unwrap();
        let mut hashes = Vec::new();
        let mut suspended = 0;
        for t in 0..40u64 {
            let report = rt.tick().unwrap();
            hashes.push(report.hash);
            suspended += report.agents_suspended;
            if report.faults == 1 {
                let lockstep_core::AgentState::Faulted(f) = rt.inspect(drawer).unwrap().state else { panic!("not faulted") };
                assert_eq!((f.kind, f.call), (FaultKind::FuelExhausted, AbiCall::Step), "{f}");
                return (t, suspended, hashes);
            }
        }
        panic!("the drawer never ran out of its 1,000,000 fuel");
    };
    let (first, second) = (run(), run());
    assert!(first.1 >= 5, "suspended in {} ticks only", first.1);
    assert_eq!(first, second);
}
