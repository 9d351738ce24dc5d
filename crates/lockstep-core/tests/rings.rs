//! The shared-memory rings as the runtime uses them: inbound messages enter at tick start in
//! ring order and are recorded; outbound carries replies, events and tick records.

mod common;
use common::*;
use lockstep_core::ring::{self, Consumer, OwnedRegion, Producer};
use lockstep_core::{replay, Event, Runtime};

const CAP: usize = 1 << 16;

#[test]
fn ring_messages_are_delivered_recorded_and_answered_through_the_outbound_ring() {
    let inbound = OwnedRegion::new(CAP);
    let outbound = OwnedRegion::new(CAP);
    ring::init(&inbound.memory(), CAP).unwrap();
    ring::init(&outbound.memory(), CAP).unwrap();
    let mut rt = runtime(2);
    let a = rt.spawn_bytes(agent("counter")).unwrap();
    let b = rt.spawn_bytes(agent("counter")).unwrap();
    rt.attach_inbound_ring(inbound.memory()).unwrap();
    rt.attach_outbound_ring(outbound.memory()).unwrap();
    let mut js = Producer::new(inbound.memory()).unwrap();
    let mut from_core = Consumer::new(outbound.memory(), 1 << 20).unwrap();

    for i in 0..10u32 {
        js.try_push(ring::TYPE_MESSAGE, 1, 0, if i % 2 == 0 { a } else { b }, &i.to_le_bytes()).unwrap();
    }
    js.try_push(ring::TYPE_MESSAGE, 1, 0, 999, b"nobody").unwrap();
    let report = rt.tick().unwrap();
    assert_eq!(report.messages_delivered, 10);
    assert_eq!(report.dead_letters, 1, "unknown recipient from the ring is dead-lettered, not lost");
    assert!(rt.drain_host_messages().is_empty(), "replies go to the outbound ring");

    let mut records = Vec::new();
    from_core
        .drain(usize::MAX, |r| {
            records.push(r);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    let replies: Vec<_> = records.iter().filter(|r| r.kind_of_record == ring::TYPE_MESSAGE).collect();
    assert_eq!(replies.len(), 10);
    assert!(replies.iter().all(|r| r.kind == 2 && (r.agent == a || r.agent == b)));
    let events: Vec<String> = records.iter().filter(|r| r.kind_of_record == ring::TYPE_EVENT).map(|r| String::from_utf8(r.payload.clone()).unwrap()).collect();
    assert!(events.iter().any(|e| e.contains(r#""type":"dead_letter""#) && e.contains(r#""to":999"#)), "{events:?}");
    let tick = records.last().unwrap();
    assert_eq!(tick.kind_of_record, ring::TYPE_TICK);
    assert_eq!(&tick.payload[8..], &report.hash.0);

    // The ring input was recorded: the log replays without any ring.
    let log = rt.stop_recording().unwrap();
    let r = replay(&log, 1, |_| {}).unwrap();
    assert_eq!(r.divergence, None);
    assert_eq!(r.final_hash, report.hash);
}

#[test]
fn a_full_outbound_ring_delays_records_but_never_drops_them() {
    let inbound = OwnedRegion::new(CAP);
    let outbound = OwnedRegion::new(ring::MIN_CAPACITY);
    ring::init(&inbound.memory(), CAP).unwrap();
    ring::init(&outbound.memory(), ring::MIN_CAPACITY).unwrap();
    let mut rt = runtime(1);
    let ids: Vec<u64> = (0..200).map(|_| rt.spawn_bytes(agent("counter")).unwrap()).collect();
    rt.attach_inbound_ring(inbound.memory()).unwrap();
    rt.attach_outbound_ring(outbound.memory()).unwrap();
    let mut js = Producer::new(inbound.memory()).unwrap();
    let mut from_core = Consumer::new(outbound.memory(), 1 << 20).unwrap();
    for &id in &ids {
        js.try_push(ring::TYPE_MESSAGE, 1, 0, id, &[]).unwrap();
    }
    rt.tick().unwrap();
    // 200 replies of 40 bytes + a tick record do not fit 4 KiB: some wait in the backlog.
    assert!(rt.outbound_backlog() > 0);
    let mut replies = 0;
    let mut ticks = 0;
    while replies < 200 {
        from_core
            .drain(usize::MAX, |r| {
                match r.kind_of_record {
                    ring::TYPE_MESSAGE => replies += 1,
                    ring::TYPE_TICK => ticks += 1,
                    _ => {}
                }
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        rt.flush_outbound();
    }
    assert_eq!(replies, 200);
    assert_eq!(ticks, 1);
    assert_eq!(rt.outbound_backlog(), 0);
}

#[test]
fn a_corrupted_inbound_ring_is_reported_and_the_runtime_carries_on() {
    // Recording (records staged) and not (routed straight from the ring, held until routed).
    for record in [true, false] {
        let inbound = OwnedRegion::new(CAP);
        ring::init(&inbound.memory(), CAP).unwrap();
        let mut rt =
            Runtime::new(lockstep_core::RuntimeConfig { workers: 1, max_agents: 1_024, record, ..lockstep_core::RuntimeConfig::development() }).unwrap();
        let a = rt.spawn_bytes(agent("counter")).unwrap();
        rt.attach_inbound_ring(inbound.memory()).unwrap();
        let mut js = Producer::new(inbound.memory()).unwrap();
        js.try_push(ring::TYPE_MESSAGE, 1, 0, a, b"fine").unwrap();
        rt.tick().unwrap();
        // Two good records, then JS scribbles a giant length into the next record slot and
        // publishes it: the two before it are delivered, the error reported once.
        js.try_push(ring::TYPE_MESSAGE, 0, 0, a, b"good").unwrap();
        js.try_push(ring::TYPE_MESSAGE, 0, 0, a, b"good").unwrap();
        js.try_push(ring::TYPE_MESSAGE, 1, 0, a, b"soon broken").unwrap();
        // SAFETY: the region holds HEADER_BYTES + CAP bytes and outlives `words`; this thread
        // is the only one, and nothing else reads or writes the region while `words` is in use
        // (its last use is before the next tick).
        let words = unsafe { std::slice::from_raw_parts_mut(inbound.memory_ptr(), ring::HEADER_BYTES + CAP) };
        let fourth = ring::HEADER_BYTES + 3 * ring::record_bytes(4);
        words[fourth..fourth + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let report = rt.tick().unwrap();
        assert_eq!(report.messages_delivered, 2, "the records before the corrupt one (record: {record})");
        assert!(rt.inbound_ring_error().is_some());
        let events = rt.drain_events();
        let errors = events.iter().filter(|e| matches!(e, Event::RingError { detail, .. } if detail.contains("record length"))).count();
        assert_eq!(errors, 1, "{events:?}");
        rt.send(a, 1, 0, vec![]).unwrap();
        rt.tick().unwrap();
        assert_eq!(rt.inspect(a).unwrap().messages_received, 4, "the direct path still works (record: {record})");
        assert!(rt.drain_events().iter().all(|e| !matches!(e, Event::RingError { .. })), "a broken ring is not read again");
    }
}

#[test]
fn a_corrupted_outbound_ring_loses_no_host_message() {
    let outbound = OwnedRegion::new(CAP);
    ring::init(&outbound.memory(), CAP).unwrap();
    let mut rt = runtime(1);
    let a = rt.spawn_bytes(agent("counter")).unwrap();
    rt.attach_outbound_ring(outbound.memory()).unwrap();
    // JS scribbles an impossible tail (the consumer's index) before the agent replies.
    // SAFETY: as in the test above: HEADER_BYTES + CAP bytes, alive, and untouched by anyone
    // else while `words` is in use (its last use is before the tick).
    let words = unsafe { std::slice::from_raw_parts_mut(outbound.memory_ptr(), ring::HEADER_BYTES + CAP) };
    words[ring::OFFSET_TAIL..ring::OFFSET_TAIL + 4].copy_from_slice(&12_345u32.to_le_bytes());
    rt.send(a, 1, 0, b"ping".to_vec()).unwrap();
    rt.tick().unwrap();
    let events = rt.drain_events();
    assert!(events.iter().any(|e| matches!(e, Event::RingError { .. })), "{events:?}");
    let replies = rt.drain_host_messages();
    assert_eq!(replies.len(), 1, "the reply that could not be written to the ring is handed to drain_host_messages");
    assert_eq!(replies[0].from, a);
    rt.send(a, 1, 0, b"again".to_vec()).unwrap();
    rt.tick().unwrap();
    assert_eq!(rt.drain_host_messages().len(), 1, "later replies too");
}

#[test]
fn a_full_outbound_backlog_keeps_host_messages_in_the_host_queue() {
    use lockstep_core::limits::MAX_OUTBOUND_BACKLOG_BYTES;
    let outbound = OwnedRegion::new(1 << 20);
    ring::init(&outbound.memory(), 1 << 20).unwrap();
    let mut rt =
        lockstep_core::Runtime::new(lockstep_core::RuntimeConfig { workers: 2, max_agents: 512, record: false, ..lockstep_core::RuntimeConfig::development() })
            .unwrap();
    // Echo agents answer each host message with its payload: 300 × 16 maximal replies (~300 MiB)
    // into a 1 MiB ring that nobody reads.
    let echo = rt.load_module(agent("echo")).unwrap();
    let ids: Vec<u64> = (0..300).map(|_| rt.spawn(echo).unwrap()).collect();
    rt.attach_outbound_ring(outbound.memory()).unwrap();
    for _round in 0..2 {
        for &id in &ids {
            for _ in 0..8 {
                rt.send(id, 1, 0, vec![9; lockstep_core::abi::MAX_PAYLOAD_BYTES]).unwrap();
            }
        }
        rt.tick().unwrap();
    }
    rt.tick().unwrap();
    let backlog = rt.outbound_backlog();
    assert!(backlog * lockstep_core::abi::MAX_PAYLOAD_BYTES <= MAX_OUTBOUND_BACKLOG_BYTES + (1 << 20), "backlog of {backlog} records");
    let rest = rt.drain_host_messages();
    let replies_sent: u64 = ids.iter().map(|&id| rt.inspect(id).unwrap().messages_sent).sum();
    assert!(!rest.is_empty(), "what the backlog could not take waits in the host queue");
    let in_ring = (1 << 20) / ring::record_bytes(lockstep_core::abi::MAX_PAYLOAD_BYTES);
    assert_eq!(rest.len() + backlog + in_ring, replies_sent as usize + 3, "every reply is in the ring, the backlog or the host queue (+ 3 tick records)");
}

/// Issue 13: ring records are routed straight into the inboxes at the start of the tick, after
/// the messages `send()` queued, and numbered after them; a replay (which feeds the recorded
/// Send records through the input queue) routes them in the same order, and a ring message to a
/// full inbox is dead-lettered there as in the replay.
#[test]
fn ring_messages_routed_straight_into_inboxes_follow_queued_sends_and_replay_alike() {
    let inbound = OwnedRegion::new(CAP);
    ring::init(&inbound.memory(), CAP).unwrap();
    let mut rt = runtime(2);
    let echo = rt.spawn_bytes(agent("echo")).unwrap();
    rt.attach_inbound_ring(inbound.memory()).unwrap();
    let mut js = Producer::new(inbound.memory()).unwrap();
    for i in 0..3u8 {
        js.try_push(ring::TYPE_MESSAGE, 5, 0, echo, &[b'r', i]).unwrap();
        rt.send(echo, 5, 0, vec![b's', i]).unwrap();
    }
    let first = rt.tick().unwrap();
    assert_eq!(first.messages_delivered, 6);
    rt.tick().unwrap();
    let echoed: Vec<(u64, Vec<u8>)> = rt.drain_host_messages().into_iter().map(|m| (m.seq, m.payload)).collect();
    let payloads: Vec<&[u8]> = echoed.iter().map(|(_, p)| p.as_slice()).collect();
    assert_eq!(payloads, [b"s\0", b"s\x01", b"s\x02", b"r\0", b"r\x01", b"r\x02"].map(|p| p.as_slice()), "queued sends first, then the ring, in order");

    let log = rt.stop_recording().unwrap();
    let r = replay(&log, 1, |_| {}).unwrap();
    assert_eq!(r.divergence, None);

    // A ring large enough to overfill one inbox (16 MiB) in one tick: the overflow is
    // dead-lettered in routing order, in the tick hash, and the replay agrees.
    const BIG: usize = 32 << 20;
    let mut rt = runtime(2);
    let counter = rt.spawn_bytes(agent("counter")).unwrap();
    let (_inbound, mut js) = attach_inbound_ring(&mut rt, BIG);
    let big = vec![1u8; 60_000];
    let mut pushed = 0u64;
    while js.try_push(ring::TYPE_MESSAGE, 0, 0, counter, &big).is_ok() {
        pushed += 1;
    }
    let report = rt.tick().unwrap();
    let fits = (lockstep_core::abi::MAX_INBOX_BYTES / big.len()) as u64;
    assert_eq!((report.messages_delivered, report.dead_letters), (fits, pushed - fits), "{pushed} pushed");
    let dead = rt.drain_dead_letters();
    assert!(dead.iter().all(|d| d.reason == lockstep_core::DeadLetterReason::RecipientInboxFull && d.message.payload == big));
    assert_replays_to(&mut rt, report.hash);
}

/// `agents` counters on 2 workers, after one tick: the one at `killed` killed, the one at
/// `faulted` replaced by an agent that faulted (asked to panic in its step).
fn counters_one_killed_one_faulted(agents: usize, killed: usize, faulted: usize) -> (Runtime, Vec<u64>) {
    counters_one_killed_one_faulted_on(2, agents, killed, faulted)
}

/// `counters_one_killed_one_faulted` on `workers` workers.
fn counters_one_killed_one_faulted_on(workers: usize, agents: usize, killed: usize, faulted: usize) -> (Runtime, Vec<u64>) {
    counters_one_killed_one_faulted_recording(true, workers, agents, killed, faulted)
}

/// `counters_one_killed_one_faulted_on`, recording a replay log or not (without one, ring
/// records are routed straight from the ring: `Runtime::route_inbound_ring_held`).
fn counters_one_killed_one_faulted_recording(record: bool, workers: usize, agents: usize, killed: usize, faulted: usize) -> (Runtime, Vec<u64>) {
    let mut rt = if record {
        runtime(workers)
    } else {
        Runtime::new(lockstep_core::RuntimeConfig {
            workers,
            max_agents: 1_024,
            fuel_per_call: 1_000_000,
            record: false,
            ..lockstep_core::RuntimeConfig::development()
        })
        .unwrap()
    };
    let mut ids: Vec<u64> = (0..agents).map(|_| rt.spawn_bytes(agent("counter")).unwrap()).collect();
    rt.kill(ids[killed]).unwrap();
    ids[faulted] = rt.spawn_bytes(agent("adv_trap")).unwrap();
    rt.send(ids[faulted], 2, 0, vec![]).unwrap();
    rt.tick().unwrap();
    (rt, ids)
}

/// The inbound ring is routed a batch at a time, recipient by recipient
/// (`scheduler::route_grouped`), where `send()`'s queue is routed message by message in order:
/// the same traffic through either must give the same tick (hash, counts) and the same dead
/// letters in the same order. The traffic crosses batches (over `RING_BATCH_RECORDS` records)
/// and refuses every way: an inbox over `MAX_INBOX_MESSAGES`, a killed recipient, ids that are
/// no agent (0, past the last).
#[test]
fn ring_records_routed_recipient_by_recipient_tick_and_dead_letter_like_sends_routed_in_order() {
    let agents = 100usize;
    let over = lockstep_core::abi::MAX_INBOX_MESSAGES + 3_000;
    let setup = || counters_one_killed_one_faulted(agents, 5, 7);
    let traffic = |ids: &[u64], unknown: bool| -> Vec<(u64, u32, i32, Vec<u8>)> {
        // The flood first: its inbox is full by the second batch, whose refusals then
        // interleave (in message order) with those of the other recipients.
        let mut t = Vec::new();
        for i in 0..over as u32 {
            t.push((ids[0], 1, 0, (i | 1 << 31).to_le_bytes().to_vec()));
        }
        for i in 0..30_000u32 {
            let to = match i % 97 {
                0 if unknown => 0,
                1 if unknown => 1_000_000,
                _ => ids[i as usize % agents],
            };
            t.push((to, i % 3, (i % 5) as i32 - 2, i.to_le_bytes().to_vec()));
        }
        t
    };

    let through_ring_recording = |unknown: bool, record: bool| {
        const BIG: usize = 8 << 20;
        let (mut rt, ids) = counters_one_killed_one_faulted_recording(record, 2, agents, 5, 7);
        let (_inbound, mut js) = attach_inbound_ring(&mut rt, BIG);
        let all = traffic(&ids, unknown);
        assert!(all.len() > lockstep_core::limits::RING_BATCH_RECORDS, "crosses batches");
        for (to, kind, priority, payload) in &all {
            js.try_push(ring::TYPE_MESSAGE, *kind, *priority, *to, payload).unwrap();
        }
        let report = rt.tick().unwrap();
        (rt, report)
    };
    let through_ring = |unknown: bool| through_ring_recording(unknown, true);
    let key = |d: &lockstep_core::DeadLetter| (d.reason, d.message.to, d.message.seq, d.message.kind, d.message.priority, d.message.payload.clone());

    // Without a replay log the records are routed straight from the ring, not staged: the
    // same ticks and dead letters, with ids that are no agent too.
    for unknown in [false, true] {
        let (mut staged, a) = through_ring_recording(unknown, true);
        let (mut held, b) = through_ring_recording(unknown, false);
        assert_eq!((a.hash, a.messages_delivered, a.dead_letters), (b.hash, b.messages_delivered, b.dead_letters), "held vs staged (unknown ids: {unknown})");
        let (da, db): (Vec<_>, Vec<_>) = (staged.drain_dead_letters().iter().map(key).collect(), held.drain_dead_letters().iter().map(key).collect());
        assert!(da == db, "held vs staged: dead letters differ (unknown ids: {unknown})");
        let (ta, tb) = (staged.tick().unwrap(), held.tick().unwrap());
        assert_eq!(ta.hash, tb.hash, "and the tick after (the inboxes' rest delivered)");
    }

    // The same traffic (to agents only: send() refuses other ids) through send(), routed in order.
    let (mut ring_rt, ring_report) = through_ring(false);
    let (mut send_rt, ids) = setup();
    for (to, kind, priority, payload) in traffic(&ids, false) {
        send_rt.send(to, kind, priority, payload).unwrap();
    }
    let send_report = send_rt.tick().unwrap();
    assert_eq!(ring_report.hash, send_report.hash, "the same tick hash");
    assert_eq!((ring_report.messages_delivered, ring_report.dead_letters), (send_report.messages_delivered, send_report.dead_letters));
    let ring_dead: Vec<_> = ring_rt.drain_dead_letters().iter().map(key).collect();
    let send_dead: Vec<_> = send_rt.drain_dead_letters().iter().map(key).collect();
    assert_eq!(ring_dead.len() as u64, ring_report.dead_letters);
    assert!(ring_dead == send_dead, "dead letters differ (or their order): first at {:?}", ring_dead.iter().zip(&send_dead).position(|(a, b)| a != b));
    for reason in [
        lockstep_core::DeadLetterReason::RecipientStopped,
        lockstep_core::DeadLetterReason::RecipientFaulted,
        lockstep_core::DeadLetterReason::RecipientInboxFull,
    ] {
        assert!(ring_dead.iter().any(|d| d.0 == reason), "{reason:?} exercised");
    }

    // With ids that are no agent too: a replay routes the recorded records in order, one by
    // one, and verifies the tick hash (the dead letters, in their order, are in it).
    let (mut ring_rt, ring_report) = through_ring(true);
    let ring_dead: Vec<_> = ring_rt.drain_dead_letters().iter().map(key).collect();
    assert!(ring_dead.iter().any(|d| d.0 == lockstep_core::DeadLetterReason::UnknownRecipient));
    // (Routing's refusals; the agent flooded past its inbox also faults delivering them, and
    // what it was not handed is dead-lettered after.)
    use lockstep_core::DeadLetterReason::*;
    let routing: Vec<_> = ring_dead.iter().filter(|d| matches!(d.0, UnknownRecipient | RecipientStopped | RecipientInboxFull)).collect();
    let disorder = routing.windows(2).position(|w| w[0].2 >= w[1].2);
    assert!(disorder.is_none(), "dead-lettered in the order the records entered: {:?}", disorder.map(|i| (routing[i], routing[i + 1])));
    assert_replays_to(&mut ring_rt, ring_report.hash);
}

/// Review of the grouped routing: when a ring record's Send record fills the replay log, the
/// `recording_stopped` event comes after the dead letters of the records before it and before
/// its own, as routing each record in order does (staged in a batch, it came before the
/// whole batch's dead letters).
#[test]
fn a_ring_record_that_fills_the_replay_log_stops_recording_between_the_dead_letters_around_it() {
    const BIG: usize = 4 << 20;
    let inbound = OwnedRegion::new(BIG);
    ring::init(&inbound.memory(), BIG).unwrap();
    let mut rt = lockstep_core::Runtime::new(lockstep_core::RuntimeConfig {
        workers: 1,
        max_agents: 16,
        max_log_bytes: 1 << 20,
        ..lockstep_core::RuntimeConfig::development()
    })
    .unwrap();
    rt.spawn_bytes(agent("counter")).unwrap();
    rt.attach_inbound_ring(inbound.memory()).unwrap();
    rt.tick().unwrap();
    rt.drain_events();
    let mut js = Producer::new(inbound.memory()).unwrap();
    // 30,000 records of 64 bytes (~3 MB of log) to an id that is no agent: each is dead-lettered.
    for i in 0..30_000u32 {
        let mut payload = [0u8; 64];
        payload[..4].copy_from_slice(&i.to_le_bytes());
        js.try_push(ring::TYPE_MESSAGE, 0, 0, 999, &payload).unwrap();
    }
    let report = rt.tick().unwrap();
    assert_eq!(report.dead_letters, 30_000);
    let events = rt.drain_events();
    let stop = events.iter().position(|e| matches!(e, Event::RecordingStopped { .. })).expect("recording stopped");
    let seqs = |es: &[Event]| -> Vec<u64> { es.iter().filter_map(|e| if let Event::DeadLetter { seq, .. } = e { Some(*seq) } else { None }).collect() };
    let (before, after) = (seqs(&events[..stop]), seqs(&events[stop + 1..]));
    assert!(!before.is_empty() && !after.is_empty(), "the log filled mid-drain: {} dead letters before, {} after", before.len(), after.len());
    assert_eq!(before.len() + after.len(), 30_000);
    assert!(before.windows(2).chain(after.windows(2)).all(|w| w[0] + 1 == w[1]), "in ring order");
    assert_eq!(before.last().unwrap() + 1, after[0], "the stop sits between one record's dead letter and the next's");
}

/// `route_grouped` against routing in order on random traffic (seeded): random agent counts,
/// recipients (one killed, one faulted, one taking a quarter of everything), kinds, priorities
/// and payload sizes (up to 3,000 bytes, so large ticks cross `RING_BATCH_BYTES`), in ticks of
/// random size. Through the ring (on 2 to 4 workers, each tick forced to a different count,
/// so the inboxes are filled by 1 to 4 threads) and through `send()` on one worker: the same
/// tick hashes, deliveries and dead letters, tick after tick.
#[test]
fn ring_and_send_routing_agree_on_random_traffic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    for round in 0..4 {
        let agents = 20 + next(280) as usize;
        let ticks = 3;
        // Each tick's messages: (recipient's index, kind, priority, payload).
        type Tick = Vec<(usize, u32, i32, Vec<u8>)>;
        let traffic: Vec<Tick> = (0..ticks)
            .map(|_| {
                let n = 2_000 + next(60_000) as usize;
                let hot = next(agents as u64) as usize; // one recipient takes a share of everything
                (0..n)
                    .map(|_| {
                        let to = if next(4) == 0 { hot } else { next(agents as u64) as usize };
                        let len = if next(10) == 0 { 3_000 } else { next(40) as usize };
                        (to, next(4) as u32, next(5) as i32 - 2, vec![next(256) as u8; len])
                    })
                    .collect()
            })
            .collect();
        let workers = [2, 4, 3, 4][round];
        const CAP: usize = 64 << 20;
        let (mut through_ring, ids) = counters_one_killed_one_faulted_on(workers, agents, 1, 2);
        let (_inbound, mut js) = attach_inbound_ring(&mut through_ring, CAP);
        // Without a replay log: routed straight from its ring.
        let (mut held, _) = counters_one_killed_one_faulted_recording(false, workers, agents, 1, 2);
        let (_held_inbound, mut held_js) = attach_inbound_ring(&mut held, CAP);
        let (mut through_send, _) = counters_one_killed_one_faulted_on(1, agents, 1, 2);
        for (t, messages) in traffic.iter().enumerate() {
            through_ring.set_workers(Some(workers - t % workers)).unwrap();
            held.set_workers(Some(1 + t % workers)).unwrap();
            for (to, kind, priority, payload) in messages {
                js.try_push(ring::TYPE_MESSAGE, *kind, *priority, ids[*to], payload).unwrap();
                held_js.try_push(ring::TYPE_MESSAGE, *kind, *priority, ids[*to], payload).unwrap();
                through_send.send(ids[*to], *kind, *priority, payload.clone()).unwrap();
            }
            let (a, b, h) = (through_ring.tick().unwrap(), through_send.tick().unwrap(), held.tick().unwrap());
            assert_eq!(
                (a.hash, a.messages_delivered, a.dead_letters),
                (b.hash, b.messages_delivered, b.dead_letters),
                "round {round} ({agents} agents), tick {t}, {} messages",
                messages.len()
            );
            assert_eq!((h.hash, h.messages_delivered, h.dead_letters), (b.hash, b.messages_delivered, b.dead_letters), "held: round {round}, tick {t}");
            let key = |d: &lockstep_core::DeadLetter| (d.reason, d.message.to, d.message.seq, d.message.payload.clone());
            let sent: Vec<_> = through_send.drain_dead_letters().iter().map(key).collect();
            let (da, dh): (Vec<_>, Vec<_>) = (through_ring.drain_dead_letters().iter().map(key).collect(), held.drain_dead_letters().iter().map(key).collect());
            assert!(da == sent, "round {round}, tick {t}: dead letters differ");
            assert!(dh == sent, "held: round {round}, tick {t}: dead letters differ");
        }
    }
}

/// Issue 13: without a replay log, a recipient's inbound-ring records stay in the ring until
/// its turn and are copied once, ring to agent memory (`scheduler::HeldInboxes`), when they
/// are all its inbox would hold; every other recipient gets them through its inbox as before.
/// Both must give the ticks a recorded runtime (which stages every record) gives: the same
/// tick hashes, deliveries, dead letters, the same bytes seen by every agent (each folds what
/// it is handed into a sum it reports), and the same memory, on 1 and 2 workers. The
/// recipients cover every way out of the fast path: ABI 1, a time slice, a later phase (that
/// also gets agents' messages in the same tick, after the ring's), an inbox not empty (a
/// `send()` first, or last tick's agent messages), priorities out of delivery order, a fault
/// in the middle of a batch, payloads of every length (padding between batch records).
#[test]
fn ring_records_held_for_their_recipients_turns_tick_like_staged_ones() {
    type Outcome =
        (Vec<(lockstep_core::Digest, u64, u64)>, Vec<(u64, u64, Vec<u8>)>, Vec<(lockstep_core::DeadLetterReason, u64, u64, Vec<u8>)>, lockstep_core::Digest);
    let run = |record: bool, workers: usize| -> Outcome {
        let mut rt = Runtime::new(lockstep_core::RuntimeConfig { workers, max_agents: 1_024, record, ..lockstep_core::RuntimeConfig::development() }).unwrap();
        let v2 = rt.load_module(folding_agent(2, 4096, 3)).unwrap();
        let v1 = rt.load_module(folding_agent(1, 4096, 3)).unwrap();
        let flood = rt.load_module(agent("flood")).unwrap();
        let mut ids = Vec::new();
        for k in 0..48 {
            let id = match k % 6 {
                0 | 1 => rt.spawn_with_priority(v2, 5).unwrap(), // the first phase
                2 => rt.spawn(v2).unwrap(),                      // a later phase
                3 => rt.spawn_with_priority(v1, 5).unwrap(),
                4 => {
                    let id = rt.spawn_with_priority(v2, 5).unwrap();
                    rt.set_fuel_per_tick(id, 20_000).unwrap(); // suspended mid-batch
                    id
                }
                _ => rt.spawn_with_priority(v2, 5).unwrap(),
            };
            ids.push(id);
        }
        // Flood agents in the first phase: their messages reach later-phase agents in the same
        // tick (after the ring's) and the others in the next (an inbox not empty).
        for _ in 0..4 {
            let id = rt.spawn_with_priority(flood, 5).unwrap();
            rt.send(id, 0, 0, 3u32.to_le_bytes().to_vec()).unwrap();
        }
        rt.tick().unwrap();
        let (_region, mut js) = attach_inbound_ring(&mut rt, 16 << 20);
        let mut ticks = Vec::new();
        let mut host = Vec::new();
        for t in 0..4u64 {
            rt.send(ids[5], 3, 0, b"queued first".to_vec()).unwrap();
            // The last tick's records are more than one walk takes (`RING_BATCH_RECORDS`): only
            // the last walk's can be held.
            let records = if t == 3 { lockstep_core::limits::RING_BATCH_RECORDS as u64 + 9_000 } else { 9_000 };
            let first_walk = lockstep_core::limits::RING_BATCH_RECORDS as u64;
            for i in 0..records {
                // (The first walk's records go to half the agents: the rest get only the last's.)
                let k = (i * 7 + t) as usize % if i < first_walk && t == 3 { ids.len() / 2 } else { ids.len() };
                let to = ids[k];
                let len = (i % 71) as usize + usize::from(k == 11 && t < 3) * 5_000 + usize::from(k == 13) * 600;
                let payload: Vec<u8> = (0..len).map(|b| (b as u64 ^ i ^ t) as u8).collect();
                // Recipient 6 gets priorities that fall (delivery order kept), 7 ones that rise.
                let priority = match k {
                    6 => -((i / 48) as i32),
                    7 => (i / 48) as i32,
                    _ => 0,
                };
                // Agent 13 traps in the middle of its first tick's batch.
                let kind = if k == 13 && t == 1 && i > 4_000 && i < 4_050 { 99 } else { (i % 3) as u32 };
                js.try_push(ring::TYPE_MESSAGE, kind, priority, to, &payload).unwrap();
            }
            let r = rt.tick().unwrap();
            ticks.push((r.hash, r.messages_delivered, r.dead_letters));
            host.extend(rt.drain_host_messages().into_iter().map(|m| (m.from, m.seq, m.payload)));
        }
        let dead = rt.drain_dead_letters().into_iter().map(|d| (d.reason, d.message.to, d.message.seq, d.message.payload)).collect();
        (ticks, host, dead, rt.deep_hash().hash)
    };
    let staged = run(true, 1);
    assert!(staged.2.iter().any(|d| d.0 == lockstep_core::DeadLetterReason::RecipientFaultedDuringDelivery), "a fault in the middle of a batch");
    assert!(staged.0.iter().all(|t| t.1 > 6_000), "the traffic is delivered: {:?}", staged.0);
    for workers in [1, 2] {
        let held = run(false, workers);
        assert_eq!(held.0, staged.0, "tick hashes, deliveries and dead letters ({workers} workers)");
        assert!(held.1 == staged.1, "what every agent was handed ({workers} workers)");
        assert!(held.2 == staged.2, "dead letters ({workers} workers)");
        assert_eq!(held.3, staged.3, "memory ({workers} workers)");
    }
}
