//! Issue 13, "payload arenas": once a session's mailboxes have grown to its traffic, a message
//! costs no heap allocation on the tick's path — not when an agent sends it, not when routing
//! moves it into the recipient's inbox, not when it is delivered, and not when it comes in
//! through the inbound ring. A counting allocator (this test binary's global allocator) counts
//! the allocations the ticking thread makes (one worker: the tick runs on the calling thread).
//!
//! Before the arenas every message was a `Vec` of its own: thousands of allocations a tick here.

mod common;
use common::*;
use lockstep_core::ring::{self, Producer};

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// const-initialised thread-local `Cell` (no allocation, no destructor), so counting can never
// recurse into the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract for this method, passed on to `System` unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for this method, passed on to `System` unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract for this method, passed on to `System` unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract for this method, passed on to `System` unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

/// Allocations per tick for `agents` flood agents each sending `fanout` 64-byte messages a tick
/// to random peers, after `warmup` ticks; and the messages routed per tick.
fn allocations_per_tick(agents: usize, fanout: u32) -> (f64, u64) {
    let mut rt = runtime(1);
    let module = rt.load_module(agent("flood")).unwrap();
    for _ in 0..agents {
        let id = rt.spawn(module).unwrap();
        rt.send(id, 0, 0, fanout.to_le_bytes().to_vec()).unwrap();
    }
    for _ in 0..30 {
        rt.tick().unwrap();
    }
    let (ticks, before) = (20u64, allocations());
    let mut routed = 0;
    for _ in 0..ticks {
        routed += rt.tick().unwrap().messages_routed;
    }
    ((allocations() - before) as f64 / ticks as f64, routed / ticks)
}

#[test]
fn routing_and_delivering_messages_allocates_nothing_per_message() {
    let (quiet, quiet_routed) = allocations_per_tick(200, 1);
    let (busy, busy_routed) = allocations_per_tick(200, 16);
    assert_eq!((quiet_routed, busy_routed), (200, 3_200), "every agent sends its fan-out each tick");
    eprintln!("allocations a tick: {quiet:.1} routing 200 messages, {busy:.1} routing 3,200");
    // A tick allocates a little whatever the traffic (its report, the log's records); what it
    // must not do is allocate per message: 3,000 more messages a tick, not even one more
    // allocation per hundred of them.
    assert!(busy - quiet < 30.0, "{busy:.1} allocations a tick with 3,200 messages vs {quiet:.1} with 200: messages allocate");
    assert!(busy < 200.0, "{busy:.1} allocations a tick for 3,200 messages");
}

/// `agents` counters fed `records` ring records of `payload` a tick (to agents in turn) through
/// a ring of `ring_bytes`: after `warmup` ticks, the allocations per tick over `ticks` more, and
/// each of those ticks' deliveries.
fn ring_allocations_per_tick(agents: usize, ring_bytes: usize, payload: &[u8], records: u32, warmup: u32, ticks: u32) -> (f64, Vec<u64>) {
    ring_allocations_per_tick_recording(true, agents, ring_bytes, payload, records, warmup, ticks)
}

/// `ring_allocations_per_tick`, recording (records staged) or not (routed from the ring).
fn ring_allocations_per_tick_recording(
    record: bool,
    agents: usize,
    ring_bytes: usize,
    payload: &[u8],
    records: u32,
    warmup: u32,
    ticks: u32,
) -> (f64, Vec<u64>) {
    let mut rt =
        lockstep_core::Runtime::new(lockstep_core::RuntimeConfig { workers: 1, max_agents: 1_024, record, ..lockstep_core::RuntimeConfig::development() })
            .unwrap();
    let ids: Vec<u64> = (0..agents).map(|_| rt.spawn_bytes(agent("counter")).unwrap()).collect();
    let (_inbound, mut js) = attach_inbound_ring(&mut rt, ring_bytes);
    let push = |js: &mut Producer| {
        for i in 0..records {
            js.try_push(ring::TYPE_MESSAGE, 0, 0, ids[i as usize % ids.len()], payload).unwrap();
        }
    };
    for _ in 0..warmup {
        push(&mut js);
        rt.tick().unwrap();
    }
    let (mut counted, mut delivered) = (0u64, Vec::new());
    for _ in 0..ticks {
        push(&mut js);
        let before = allocations();
        delivered.push(rt.tick().unwrap().messages_delivered);
        counted += allocations() - before;
    }
    (counted as f64 / f64::from(ticks), delivered)
}

#[test]
fn messages_from_the_inbound_ring_allocate_nothing_per_message() {
    // Recorded (staged) and not (held in the ring while routed).
    for record in [true, false] {
        let per_tick = |records: u32| {
            let (allocs, delivered) = ring_allocations_per_tick_recording(record, 100, 1 << 20, &[7u8; 64], records, 20, 10);
            (allocs, delivered.iter().sum::<u64>() / delivered.len() as u64)
        };
        let (few, few_delivered) = per_tick(100);
        let (many, many_delivered) = per_tick(5_000);
        assert_eq!((few_delivered, many_delivered), (100, 5_000));
        eprintln!("allocations a tick (record: {record}): {few:.1} for 100 ring messages, {many:.1} for 5,000");
        assert!(many - few < 30.0, "{many:.1} allocations a tick for 5,000 ring messages vs {few:.1} for 100 (record: {record}): ring messages allocate");
    }
}

/// Ring records in batches that end on `RING_BATCH_BYTES` (50,000-byte payloads, several
/// batches a tick): the batch's buffers are reserved once at their limits and kept, never
/// regrown per batch (review of the grouped routing: grown by doubling, the byte buffer passed
/// what was kept and was given back and regrown every batch).
#[test]
fn large_ring_records_in_several_batches_a_tick_allocate_nothing_per_batch() {
    let per_tick = |records: u32| {
        // 800 agents, one record an agent a tick: each inbox keeps its arena (a 50,000-byte one
        // is under MAX_RETAINED_MAILBOX_BYTES), so what is counted is the batches'.
        let (allocs, delivered) = ring_allocations_per_tick(800, 64 << 20, &vec![7u8; 50_000], records, 5, 5);
        assert!(delivered.iter().all(|&d| d == u64::from(records)), "{delivered:?}");
        allocs
    };
    // 100 records (one batch of 5 MB) vs 800 (40 MB: five batches ending on the byte limit).
    let (one, five) = (per_tick(100), per_tick(800));
    eprintln!("allocations a tick: {one:.1} for one batch, {five:.1} for five");
    assert!(five - one < 10.0, "{five:.1} allocations a tick for five batches vs {one:.1} for one: batches reallocate");
}
