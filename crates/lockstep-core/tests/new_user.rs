//! Issue 11 ("What a new user hits"), in the engine: `inspect` of a stopped agent, stopping a
//! recording twice, a model slot nobody registered, and refusals that name the module (and
//! call a secret key given as a trusted key one).
mod common;

use common::{agent, runtime};
use lockstep_core::security::{self, SecurityError};
use lockstep_core::{AgentState, Event, Runtime, RuntimeConfig};

#[test]
fn inspect_keeps_a_dead_agents_last_memory_and_fuel() {
    let mut rt = runtime(1);
    let trap = rt.spawn_bytes(agent("adv_trap")).unwrap();
    let counter = rt.spawn_bytes(agent("counter")).unwrap();
    rt.tick_n(3);
    let alive = rt.inspect(counter).unwrap();
    assert!(alive.memory_bytes > 0 && alive.fuel_consumed > 0);
    rt.send(trap, 1, 0, Vec::new()).unwrap(); // kind 1: panic in receive
    rt.tick().unwrap();
    let dead = rt.inspect(trap).unwrap();
    assert!(matches!(dead.state, AgentState::Faulted(_)), "{:?}", dead.state);
    assert!(dead.memory_bytes > 0, "the size it had when it died, not 0");
    assert!(dead.fuel_consumed > 0, "the fuel it burned, not 0");
    rt.kill(counter).unwrap();
    let killed = rt.inspect(counter).unwrap();
    assert_eq!(killed.memory_bytes, alive.memory_bytes);
    assert!(killed.fuel_consumed >= alive.fuel_consumed);
}

trait TickN {
    fn tick_n(&mut self, n: u64);
}

impl TickN for Runtime {
    fn tick_n(&mut self, n: u64) {
        self.run(n).unwrap();
    }
}

#[test]
fn stopping_a_recording_twice_says_it_already_stopped() {
    let mut rt = runtime(1);
    rt.tick().unwrap();
    rt.stop_recording().unwrap();
    let e = rt.stop_recording().unwrap_err();
    assert_eq!(e.code(), "E_NOT_RECORDING");
    assert!(e.to_string().contains("already stopped") && e.to_string().contains("tick 1"), "{e}");
    assert!(!e.to_string().contains("record: true"), "{e}");
    assert!(rt.replay_log().unwrap_err().to_string().contains("already stopped"));
    // Never recording says how to record.
    let mut off = Runtime::new(RuntimeConfig { record: false, ..RuntimeConfig::development() }).unwrap();
    assert!(off.stop_recording().unwrap_err().to_string().contains("record: true"));
}

#[test]
fn an_unregistered_model_slot_is_answered_no_such_model_and_logged_naming_the_agent_and_slot() {
    let mut rt = runtime(1);
    // classifier asks model slot 0, which nobody registered.
    let classifier = rt.spawn_bytes(agent("classifier")).unwrap();
    rt.tick().unwrap();
    let events = rt.drain_events();
    let line = events
        .iter()
        .find_map(|e| match e {
            Event::Log { agent, text, .. } if *agent == classifier && text.contains("slot") => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no log event for the unknown slot: {events:?}"));
    assert!(line.contains("model slot 0 is not registered") && line.contains("status 1"), "{line}");
}

#[test]
fn refusals_name_the_module_and_a_secret_key_given_as_trusted_is_called_one() {
    let counter = agent("counter");
    let hash = security::hex(blake3::hash(&counter).as_bytes());
    let e = security::admit(&counter, &[], false).unwrap_err();
    assert!(matches!(e, SecurityError::Unsigned { .. }));
    assert!(e.to_string().contains(&hash), "{e}");

    let manifest = br#"{"name":"c","version":"1","abi":1}"#;
    // Key pairs until one whose secret half is also a valid public key (about one in two):
    // only admission can then tell that a secret key was passed.
    let (public, secret) = (0..64).map(|_| security::keygen()).find(|(_, s)| security::check_public_key(s).is_ok()).unwrap();
    let signed = security::sign(&counter, manifest, &secret).unwrap();
    let signed_hash = security::hex(blake3::hash(&signed).as_bytes());
    let e = security::admit(&signed, &[secret], false).unwrap_err();
    assert_eq!(e.code(), "E_UNTRUSTED_KEY");
    let text = e.to_string();
    assert!(text.contains("SECRET key") && text.contains(&security::hex(&public)) && text.contains(&signed_hash), "{text}");
    let plain = security::admit(&signed, &[security::keygen().0], false).unwrap_err().to_string();
    assert!(!plain.contains("SECRET") && plain.contains(&signed_hash), "{plain}");

    // A secret key that is not a point of the curve is refused as a trusted key at once.
    let (_, bad) = (0..64).map(|_| security::keygen()).find(|(_, s)| security::check_public_key(s).is_err()).unwrap();
    let e = Runtime::new(RuntimeConfig { trusted_keys: vec![bad], ..RuntimeConfig::default() }).err().unwrap();
    assert_eq!(e.code(), "E_INVALID_CONFIG");
    assert!(e.to_string().contains("trustedKeys[0]") && e.to_string().contains("secret key"), "{e}");
}
