//! Issue 11: the request/reply convention (docs/ABI.md, "Requests"): an envelope inside
//! ordinary messages, sent with `Runtime::send_request`, answered by the SDK's `reply`, taken
//! back with `take_replies`; everything else stays where it was.
mod common;

use common::{agent, runtime};
use lockstep_core::abi::request::{self, Envelope};
use lockstep_core::{replay, DeadLetterReason, LockstepError};

#[test]
fn a_request_to_echo_is_answered_with_its_body_and_other_host_messages_stay() {
    let mut rt = runtime(1);
    let echo = rt.spawn_bytes(agent("echo")).unwrap();
    let counter = rt.spawn_bytes(agent("counter")).unwrap();
    let first = rt.send_request(echo, 7, 0, b"ping").unwrap();
    let second = rt.send_request(echo, 8, 0, b"pong").unwrap();
    assert_eq!((first, second), (1, 2), "ids count from 1 in each runtime");
    rt.send(counter, 1, 0, Vec::new()).unwrap(); // answered with a plain message to the host
    rt.tick().unwrap();
    // Only the replies asked for are taken, oldest first; the rest stay.
    let replies = rt.take_replies(&[(echo, second)]);
    assert_eq!(replies.len(), 1);
    let (id, m) = &replies[0];
    assert_eq!((*id, m.from, m.kind, m.payload.as_slice()), (second, echo, 8, &b"pong"[..]));
    let rest = rt.drain_host_messages();
    assert_eq!(rest.len(), 2, "the other reply and the counter's answer stay drainable");
    assert_eq!(request::parse(&rest.iter().find(|m| m.from == echo).unwrap().payload), Some((Envelope::Reply, first, &b"ping"[..])));
    assert!(rest.iter().any(|m| m.from == counter && m.kind == 2));
    // A reply nobody asked for by (agent, id) stays too.
    rt.send_request(echo, 0, 0, b"x").unwrap();
    rt.tick().unwrap();
    assert!(rt.take_replies(&[(counter, 3)]).is_empty());
    assert_eq!(rt.drain_host_messages().len(), 1);
}

#[test]
fn requests_replay_exactly_they_are_ordinary_messages() {
    let mut rt = runtime(2);
    let echo = rt.spawn_bytes(agent("echo")).unwrap();
    for i in 0..5u8 {
        rt.send_request(echo, u32::from(i), 0, &[i; 3]).unwrap();
        rt.tick().unwrap();
        assert_eq!(rt.take_replies(&[(echo, u64::from(i) + 1)]).len(), 1);
    }
    let hash = rt.state_hash();
    let log = rt.stop_recording().unwrap();
    let report = replay(&log, 1, |_| {}).unwrap();
    assert!(report.divergence.is_none() && report.complete, "{report:?}");
    assert_eq!(report.final_hash, hash);
}

#[test]
fn a_request_to_a_stopped_agent_is_found_in_the_dead_letters_and_left_there() {
    let mut rt = runtime(1);
    let echo = rt.spawn_bytes(agent("echo")).unwrap();
    rt.kill(echo).unwrap();
    let id = rt.send_request(echo, 0, 0, b"anyone?").unwrap();
    let other = rt.send_request(echo, 0, 0, b"again").unwrap();
    rt.tick().unwrap();
    assert_eq!(rt.request_dead_letters(&[(echo, id), (echo, 99)]), vec![(id, DeadLetterReason::RecipientStopped)]);
    assert_eq!(rt.drain_dead_letters().len(), 2, "both stay in the queue");
    assert!(rt.request_dead_letters(&[(echo, other)]).is_empty());
}

#[test]
fn a_request_body_over_the_limit_is_refused_before_it_is_sent() {
    let mut rt = runtime(1);
    let echo = rt.spawn_bytes(agent("echo")).unwrap();
    let e = rt.send_request(echo, 0, 0, &vec![0; request::MAX_BODY_BYTES + 1]).unwrap_err();
    assert_eq!(e.code(), "E_MESSAGE_TOO_LARGE");
    assert!(rt.send_request(echo, 0, 0, &vec![0; request::MAX_BODY_BYTES]).is_ok());
    assert!(matches!(rt.send_request(99, 0, 0, b""), Err(LockstepError::UnknownAgent { id: 99 })));
}
