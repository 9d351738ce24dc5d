//! The examples do what they say, and messages arrive in canonical order.

mod common;
use common::*;

#[test]
fn counter_answers_with_its_counts() {
    let mut rt = runtime(1);
    let id = rt.spawn_bytes(agent("counter")).unwrap();
    rt.run(3).unwrap();
    rt.send(id, 1, 0, vec![]).unwrap();
    rt.tick().unwrap();
    let msgs = rt.drain_host_messages();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!((m.from, m.to, m.kind), (id, 0, 2));
    // Received before the step of tick 3: 3 steps done, 1 message.
    assert_eq!(u64::from_le_bytes(m.payload[..8].try_into().unwrap()), 3);
    assert_eq!(u64::from_le_bytes(m.payload[8..].try_into().unwrap()), 1);
}

#[test]
fn ping_pong_rally_takes_one_tick_per_hit() {
    let mut rt = runtime(1);
    let a = rt.spawn_bytes(agent("ping_pong")).unwrap();
    let b = rt.spawn_bytes(agent("ping_pong")).unwrap();
    let mut payload = b.to_le_bytes().to_vec();
    payload.extend_from_slice(&4u64.to_le_bytes());
    rt.send(a, 0, 0, payload).unwrap();
    let mut done_at = None;
    for t in 0..10 {
        rt.tick().unwrap();
        let msgs = rt.drain_host_messages();
        if let Some(m) = msgs.iter().find(|m| m.kind == 9) {
            done_at = Some((t, m.from));
            break;
        }
    }
    // Tick 0: a gets the serve and sends 4 to b; then b gets 4, a 3, b 2, a 1, b 0 (tick 5).
    assert_eq!(done_at, Some((5, b)));
    assert_eq!(rt.inspect(b).unwrap().messages_received, 3);
    assert_eq!(rt.inspect(a).unwrap().messages_received, 3, "the serve and two balls");
}

#[test]
fn host_messages_arrive_by_priority_then_sequence() {
    // An agent that logs the kind of each message it receives, in order.
    let bytes = wat(r#"(module
        (import "lockstep" "log" (func $log (param i32 i32 i32)))
        (memory (export "memory") 2)
        (func (export "lockstep_abi_version") (result i32) i32.const 1)
        (func (export "lockstep_io_buffer") (result i32) i32.const 0)
        (func (export "agent_init") (result i32) i32.const 0)
        (func (export "agent_step") (param i32) (result i32) i32.const 0)
        (func (export "agent_receive") (param $m i32) (result i32)
            ;; log the 4-byte payload as text
            i32.const 3 local.get $m i32.const 40 i32.add i32.const 1 call $log
            i32.const 0)
        (func (export "agent_shutdown") (result i32) i32.const 0))"#);
    let mut rt = runtime(1);
    let id = rt.spawn_bytes(bytes).unwrap();
    for (p, prio) in [("a", 0), ("b", 5), ("c", 0), ("d", -1), ("e", 5)] {
        rt.send(id, 0, prio, p.as_bytes().to_vec()).unwrap();
    }
    rt.tick().unwrap();
    let order: String = rt
        .drain_events()
        .into_iter()
        .filter_map(|e| match e {
            lockstep_core::Event::Log { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(order, "beacd");
}

#[test]
fn higher_priority_agents_run_first_and_reach_later_phases_in_the_same_tick() {
    // Serve with 0 rounds: the server sends ball(0) to its peer, whose answer (kind 9) goes to
    // the host. If the server runs in an earlier phase, all of this happens in tick 0.
    let rally = |server_priority: i32| {
        let mut rt = runtime(2);
        let m = rt.load_module(agent("ping_pong")).unwrap();
        let server = rt.spawn_with_priority(m, server_priority).unwrap();
        let peer = rt.spawn_with_priority(m, 0).unwrap();
        let mut payload = peer.to_le_bytes().to_vec();
        payload.extend_from_slice(&0u64.to_le_bytes());
        rt.send(server, 0, 0, payload).unwrap();
        (0..3u64)
            .find(|_| {
                rt.tick().unwrap();
                rt.drain_host_messages().iter().any(|m| m.kind == 9 && m.from == peer)
            })
            .expect("the rally ends")
    };
    assert_eq!(rally(5), 0, "pipeline: the peer's phase comes after the server's");
    assert_eq!(rally(0), 1, "same phase: delivered at the next tick");
    assert_eq!(rally(-5), 1, "peer's phase already ran: delivered at the next tick");
}

#[test]
fn priority_phases_replay_exactly() {
    let mut rt = runtime(2);
    let g = rt.load_module(agent("gossip")).unwrap();
    for i in 0..40 {
        rt.spawn_with_priority(g, i % 3).unwrap();
    }
    rt.run(8).unwrap();
    let log = rt.stop_recording().unwrap();
    let report = lockstep_core::replay(&log, 1, |_| {}).unwrap();
    assert_eq!(report.divergence, None);
    assert_eq!(report.final_hash, rt.state_hash());
}
