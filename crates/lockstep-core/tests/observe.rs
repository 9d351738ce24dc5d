//! The observer views (lockstep_core::observe, docs/DASHBOARD.md): read-only, never an input.

mod common;
use common::*;
use lockstep_core::observe::{AGENT_ROW_BYTES, TAP_DEPTH, TAP_HEAD_BYTES};
use lockstep_core::Event;

fn gossip_session(watch: bool) -> Vec<String> {
    let mut rt = runtime(2);
    let ids: Vec<u64> = (0..80).map(|_| rt.spawn_bytes(agent("gossip")).unwrap()).collect();
    if watch {
        rt.watch_agents(&ids[..4]);
    }
    let mut hashes = Vec::new();
    for t in 0..20 {
        if t == 5 {
            rt.send(ids[1], 1, 0, vec![7; 40]).unwrap();
        }
        hashes.push(rt.tick().unwrap().hash.to_hex());
        if watch {
            // Reading every view between ticks changes nothing either.
            let _ =
                (rt.agent_table(), rt.agent_state_counts(), rt.queue_depths(), rt.events_since(0, 10), rt.watched_messages(ids[0]).map(|w| w.inbound.len()));
        }
    }
    hashes
}

#[test]
fn observing_and_the_message_tap_never_change_the_tick_hashes() {
    assert_eq!(gossip_session(false), gossip_session(true));
}

#[test]
fn the_message_tap_keeps_the_newest_messages_of_watched_agents_only() {
    let mut rt = runtime(1);
    let ids: Vec<u64> = (0..20).map(|_| rt.spawn_bytes(agent("gossip")).unwrap()).collect();
    assert!(rt.watched_messages(ids[0]).is_none(), "nothing is watched: no tap");
    rt.watch_agents(&[ids[0], ids[0], ids[3]]);
    rt.send(ids[0], 5, 0, vec![9; 100]).unwrap();
    rt.run(200).unwrap();
    let w = rt.watched_messages(ids[0]).expect("watched");
    assert_eq!(w.inbound.len(), TAP_DEPTH, "bounded to the newest {TAP_DEPTH}");
    assert!(w.inbound.iter().all(|m| m.to == ids[0] && m.head.len() <= TAP_HEAD_BYTES));
    assert!(w.outbound.iter().all(|m| m.from == ids[0]));
    assert!(w.inbound.iter().zip(w.inbound.iter().skip(1)).all(|(a, b)| a.tick <= b.tick), "oldest first");
    assert!(rt.watched_messages(ids[1]).is_none());
    // Re-watching keeps what an agent still watched saw; [] turns the tap off.
    let seen = w.outbound.len();
    rt.watch_agents(&[ids[3], ids[0]]);
    assert_eq!(rt.watched_messages(ids[0]).unwrap().outbound.len(), seen);
    rt.watch_agents(&[]);
    assert!(rt.watched_messages(ids[0]).is_none());
}

#[test]
fn events_are_read_from_a_cursor_without_draining_and_gaps_show() {
    let mut rt = runtime(1);
    // Loading an unsigned module in devMode is announced: drain that, so the queue starts at `base`.
    let module = rt.load_module(agent("counter")).unwrap();
    let base = rt.drain_events().len() as u64;
    assert!(base > 0);
    let a = rt.spawn(module).unwrap();
    let b = rt.spawn(module).unwrap();
    let (first, events) = rt.events_since(0, 100);
    assert_eq!((first, events.len()), (base, 2), "two spawned events, after the drained ones");
    assert!(matches!(events[0], Event::Spawned { agent, .. } if *agent == a));
    let (_, later) = rt.events_since(base + 1, 100);
    assert!(matches!(later[..], [Event::Spawned { agent, .. }] if *agent == b));
    assert_eq!(rt.events_since(0, 1).1.len(), 1, "at most max");
    // Peeking did not drain.
    assert_eq!(rt.drain_events().len(), 2);
    // After a drain the queue starts at base + 2: a cursor behind it reads from there.
    rt.kill(a).unwrap();
    let (first, events) = rt.events_since(0, 100);
    assert_eq!(first, base + 2);
    assert!(matches!(events[..], [Event::Killed { .. }]));
    assert!(rt.events_since(base + 3, 100).1.is_empty(), "a cursor at the end reads nothing");
    assert_eq!(rt.queue_depths().events, 1);
}

#[test]
fn the_agent_table_has_one_row_per_agent_with_state_and_counters() {
    let mut rt = runtime(1);
    let counter = rt.spawn_bytes(agent("counter")).unwrap();
    let gossip = rt.spawn_bytes(agent("gossip")).unwrap();
    let killed = rt.spawn_bytes(agent("counter")).unwrap();
    rt.run(3).unwrap();
    rt.kill(killed).unwrap();
    let t = rt.agent_table();
    assert_eq!(t.rows.len(), 3 * AGENT_ROW_BYTES);
    assert_eq!(t.modules.len(), 2);
    let row = |i: usize| &t.rows[i * AGENT_ROW_BYTES..(i + 1) * AGENT_ROW_BYTES];
    let f64_at = |r: &[u8], o: usize| f64::from_le_bytes(r[o..o + 8].try_into().unwrap());
    assert_eq!(u32::from_le_bytes(row(0)[0..4].try_into().unwrap()) as u64, counter);
    assert_eq!(u32::from_le_bytes(row(1)[0..4].try_into().unwrap()) as u64, gossip);
    assert_eq!((row(0)[4], row(2)[4]), (0, 4), "running, killed");
    assert_eq!((row(0)[6], row(1)[6], row(2)[6]), (0, 1, 0), "module indices");
    assert_eq!(f64_at(row(0), 16), 3.0, "steps");
    let info = rt.inspect(gossip).unwrap();
    assert_eq!(f64_at(row(1), 32), info.messages_sent as f64);
    assert_eq!(f64_at(row(1), 40), info.memory_bytes as f64);
    assert_eq!(f64_at(row(1), 48), info.fuel_consumed as f64);
    assert_eq!(rt.agent_state_counts(), [2, 0, 0, 0, 1]);
}
