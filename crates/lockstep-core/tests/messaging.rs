//! The examples do what they say, and messages arrive in canonical order.

mod common;
use common::*;

#[test]
fn counter_answers_with_its_counts() {
    let mut rt = runtime(1);
    let id = rt.spawn_bytes(agent("counter")).unwrap();
    rt.run(3);
    rt.send(id, 1, 0, vec![]).unwrap();
    rt.tick();
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
        rt.tick();
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
    rt.tick();
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
