//! The red-team suite: every way to smuggle a module or a capability past the runtime is
//! refused (or contained) with the right error, and nothing else in the runtime changes.

mod common;
use common::agent;
use lockstep_core::security::{self, keygen};
use lockstep_core::{abi, Event, ResourcePolicy, Runtime, RuntimeConfig};

fn manifest(name: &str, caps: &str) -> String {
    format!(r#"{{"name":"{name}","version":"1.0.0","abi":1,"capabilities":{caps}}}"#)
}

const ALL: &str = r#"{"send":"any","infer":["*"],"log":true,"random":true,"clock":true}"#;

struct Publisher {
    public: [u8; 32],
    secret: [u8; 32],
}

impl Publisher {
    fn new() -> Self {
        let (public, secret) = keygen();
        Self { public, secret }
    }
    fn sign(&self, wasm: &[u8], manifest: &str) -> Vec<u8> {
        security::sign(wasm, manifest.as_bytes(), &self.secret).expect("sign")
    }
}

fn strict(trusted: &[[u8; 32]]) -> Runtime {
    Runtime::new(RuntimeConfig { workers: 1, max_agents: 64, trusted_keys: trusted.to_vec(), ..RuntimeConfig::default() }).unwrap()
}

/// Byte range of the contents of the first section with `id` (and custom `name`, if given).
fn section(bytes: &[u8], id: u8, name: Option<&str>) -> std::ops::Range<usize> {
    let mut pos = 8;
    while pos < bytes.len() {
        let sid = bytes[pos];
        pos += 1;
        let (mut size, mut shift) = (0usize, 0);
        loop {
            let b = bytes[pos];
            pos += 1;
            size |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let matches = sid == id && name.is_none_or(|n| bytes[pos + 1..].starts_with(n.as_bytes()));
        if matches {
            return pos..pos + size;
        }
        pos += size;
    }
    panic!("no section {id}");
}

/// Asserts the load is refused with `code`, and that the runtime did not change.
fn refused(rt: &mut Runtime, bytes: Vec<u8>, code: &str) -> String {
    let (agents, hash) = (rt.agent_count(), rt.state_hash());
    let e = rt.spawn_bytes(bytes).expect_err("must be refused");
    assert_eq!(e.code(), code, "{e}");
    assert_eq!((rt.agent_count(), rt.state_hash()), (agents, hash), "a refusal changes nothing");
    let events = rt.drain_events();
    assert!(events.iter().any(|ev| matches!(ev, Event::ModuleRefused { code: c, .. } if c == code)), "refusal event: {events:?}");
    e.to_string()
}

#[test]
fn a_trusted_signature_admits_and_everything_else_is_refused() {
    let alice = Publisher::new();
    let mallory = Publisher::new();
    let counter = agent("counter");
    let signed = alice.sign(&counter, &manifest("counter", ALL));
    let mut rt = strict(&[alice.public]);
    let id = rt.spawn_bytes(signed.clone()).unwrap();
    rt.tick().unwrap();
    assert_eq!(rt.inspect(id).unwrap().steps, 1);

    let msg = refused(&mut rt, mallory.sign(&counter, &manifest("counter", ALL)), "E_UNTRUSTED_KEY");
    assert!(msg.contains(&security::hex(&mallory.public)), "names the key: {msg}");
    refused(&mut rt, counter.clone(), "E_UNSIGNED");

    // One bit flipped in the code, in the data, in the manifest.
    for (what, range) in
        [("code", section(&signed, 10, None)), ("data", section(&signed, 11, None)), ("manifest", section(&signed, 0, Some(security::MANIFEST_SECTION)))]
    {
        let mut tampered = signed.clone();
        let at = range.end - 3; // inside the section: in the manifest, a letter of the JSON
        tampered[at] ^= 0x01;
        let code = if what == "manifest" { ["E_BAD_SIGNATURE", "E_BAD_MANIFEST"] } else { ["E_BAD_SIGNATURE", "E_BAD_SIGNATURE"] };
        let e = rt.spawn_bytes(tampered).expect_err(what);
        assert!(code.contains(&e.code()), "{what}: {e}");
    }
}

#[test]
fn swapped_manifest_stripped_signature_and_duplicate_sections() {
    let alice = Publisher::new();
    let mut rt = strict(&[alice.public]);
    let a = alice.sign(&agent("counter"), &manifest("counter", r#"{"send":"host"}"#));
    let b = alice.sign(&agent("gossip"), &manifest("gossip", ALL));
    // Module a's bytes with module b's (more generous) manifest, keeping a's signature.
    let (ra, rb) = (section(&a, 0, Some(security::MANIFEST_SECTION)), section(&b, 0, Some(security::MANIFEST_SECTION)));
    let header = |bytes: &[u8], r: &std::ops::Range<usize>| {
        // Back up over the section id and its LEB128 size.
        let mut start = r.start - 1;
        while bytes[start - 1] & 0x80 != 0 || start > r.start - 1 && bytes[start] & 0x80 != 0 {
            start -= 1;
        }
        start - 1
    };
    let mut swapped = a[..header(&a, &ra)].to_vec();
    swapped.extend_from_slice(&b[header(&b, &rb)..rb.end]);
    swapped.extend_from_slice(&a[ra.end..]);
    refused(&mut rt, swapped, "E_BAD_SIGNATURE");

    let sig = section(&a, 0, Some(security::SIGNATURE_SECTION));
    let stripped = a[..header(&a, &sig)].to_vec();
    refused(&mut rt, stripped, "E_UNSIGNED");

    let mut twice = a.clone();
    twice.extend_from_slice(&a[header(&a, &ra)..ra.end]);
    refused(&mut rt, twice, "E_DUPLICATE_SECTION");
    let mut two_sigs = a.clone();
    two_sigs.extend_from_slice(&a[header(&a, &sig)..sig.end]);
    refused(&mut rt, two_sigs, "E_DUPLICATE_SECTION");
}

#[test]
fn imports_must_be_covered_by_declared_and_granted_capabilities() {
    let alice = Publisher::new();
    let mut rt = strict(&[alice.public]);
    // gossip imports send and random_fill; this manifest declares only random.
    let msg = refused(&mut rt, alice.sign(&agent("gossip"), &manifest("gossip", r#"{"random":true}"#)), "E_UNDECLARED_IMPORT");
    assert!(msg.contains("lockstep::send") && msg.contains("`send`") && msg.contains("does not declare"), "{msg}");
    // Declared, but the operator's policy does not grant it.
    let mut policy_rt = Runtime::new(RuntimeConfig {
        workers: 1,
        trusted_keys: vec![alice.public],
        policy: security::Capabilities { send: security::SendScope::None, ..security::Capabilities::all() },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let msg = refused(&mut policy_rt, alice.sign(&agent("gossip"), &manifest("gossip", ALL)), "E_UNDECLARED_IMPORT");
    assert!(msg.contains("policy"), "{msg}");
}

#[test]
fn capability_arguments_are_checked_on_every_call() {
    let alice = Publisher::new();
    let mut rt = strict(&[alice.public]);
    // This ping-pong may only talk to the host: serving to another agent is refused.
    let host_only = rt.spawn_bytes(alice.sign(&agent("ping_pong"), &manifest("ping-pong", r#"{"send":"host","log":true}"#))).unwrap();
    let peer = rt.spawn_bytes(alice.sign(&agent("ping_pong"), &manifest("ping-pong", r#"{"send":"any"}"#))).unwrap();
    let mut serve = peer.to_le_bytes().to_vec();
    serve.extend_from_slice(&3u64.to_le_bytes());
    rt.send(host_only, 0, 0, serve).unwrap();
    let r = rt.tick().unwrap();
    assert_eq!(r.messages_routed, 0, "the forbidden send never left the agent");
    rt.tick().unwrap();
    assert_eq!(rt.inspect(peer).unwrap().messages_received, 0);
    assert!(rt.inspect(host_only).unwrap().state.is_running(), "refused, not faulted");
    let denied = rt.drain_events().into_iter().any(|e| matches!(e, Event::Log { text, .. } if text.contains("capability denied")));
    assert!(denied, "the denial is visible");
}

/// Loads the generated classifier model into `rt` for agents; returns its id.
fn give_classifier_model(rt: &mut Runtime) -> String {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let options = lockstep_core::inference::EngineOptions { search_roots: vec![root.clone()], ..Default::default() };
    let engine = std::sync::Arc::new(lockstep_core::inference::InferenceEngine::new(options).expect("npm install first"));
    let id = engine.load(std::fs::read(root.join("models/mlp_classifier.onnx")).unwrap()).unwrap().id;
    rt.set_inference_engine(engine);
    rt.register_agent_model(&id).unwrap();
    id
}

#[test]
fn inference_on_a_model_not_granted_is_answered_forbidden() {
    let alice = Publisher::new();
    let mut rt = strict(&[alice.public]);
    let id = give_classifier_model(&mut rt);
    let other = "0".repeat(64);
    let caps = format!(r#"{{"send":"host","infer":["{other}"],"random":true}}"#);
    let denied = rt.spawn_bytes(alice.sign(&agent("classifier"), &manifest("classifier", &caps))).unwrap();
    let caps = format!(r#"{{"send":"host","infer":["{id}"],"random":true}}"#);
    let allowed = rt.spawn_bytes(alice.sign(&agent("classifier"), &manifest("classifier", &caps))).unwrap();
    let r = rt.tick().unwrap();
    assert_eq!(r.inference_requests, 1, "only the granted request reached ONNX Runtime");
    rt.tick().unwrap();
    let msgs = rt.drain_host_messages();
    let from_denied: Vec<_> = msgs.iter().filter(|m| m.from == denied).collect();
    assert_eq!(from_denied.len(), 1);
    assert_eq!(from_denied[0].kind, 4, "an error report");
    assert_eq!(u32::from_le_bytes(from_denied[0].payload[..4].try_into().unwrap()), abi::INFER_STATUS_FORBIDDEN);
    assert!(msgs.iter().any(|m| m.from == allowed && m.kind == 3), "the granted agent got its answer");
}

#[test]
fn a_tick_whose_every_inference_request_is_forbidden_still_answers_them() {
    let alice = Publisher::new();
    let mut rt = strict(&[alice.public]);
    give_classifier_model(&mut rt);
    let caps = format!(r#"{{"send":"host","infer":["{}"],"random":true}}"#, "0".repeat(64));
    let denied = rt.spawn_bytes(alice.sign(&agent("classifier"), &manifest("classifier", &caps))).unwrap();
    let r = rt.tick().unwrap();
    assert_eq!(r.inference_requests, 0, "nothing reached ONNX Runtime");
    rt.tick().unwrap();
    let msgs = rt.drain_host_messages();
    let reports: Vec<_> = msgs.iter().filter(|m| m.from == denied && m.kind == 4).collect();
    assert_eq!(reports.len(), 1, "the agent got its forbidden answer and reported it");
    assert_eq!(u32::from_le_bytes(reports[0].payload[..4].try_into().unwrap()), abi::INFER_STATUS_FORBIDDEN);
    let log = rt.stop_recording().unwrap();
    let replayed = lockstep_core::replay(&log, 1, |_| {}).unwrap();
    assert!(replayed.divergence.is_none(), "{:?}", replayed.divergence);
}

#[test]
fn manifests_are_bounded_and_validated() {
    let alice = Publisher::new();
    let counter = agent("counter");
    let giant = manifest(&"x".repeat(20_000), ALL);
    assert_eq!(security::sign(&counter, giant.as_bytes(), &alice.secret).unwrap_err().code(), "E_BAD_MANIFEST");
    for bad in [r#"{"name":"c","version":"1","abi":1,"capabilities":{"sudo":true}}"#, "not json", r#"{"name":"c","version":"1","abi":3}"#] {
        assert_eq!(security::sign(&counter, bad.as_bytes(), &alice.secret).unwrap_err().code(), "E_BAD_MANIFEST", "{bad}");
    }
}

#[test]
fn resource_requests_are_clamped_or_refused_as_configured() {
    let alice = Publisher::new();
    let spin = agent("adv_spin");
    let greedy =
        format!(r#"{{"name":"spin","version":"1","abi":1,"capabilities":{{}},"resources":{{"fuelPerCall":{},"memoryBytes":1073741824}}}}"#, u64::MAX / 2);
    let mut refuse =
        Runtime::new(RuntimeConfig { workers: 1, trusted_keys: vec![alice.public], resource_policy: ResourcePolicy::Refuse, ..RuntimeConfig::default() })
            .unwrap();
    refused(&mut refuse, alice.sign(&spin, &greedy), "E_RESOURCE_LIMIT");
    let mut clamp = strict(&[alice.public]);
    let id = clamp.spawn_bytes(alice.sign(&spin, &greedy)).unwrap();
    clamp.tick().unwrap();
    let detail = match clamp.inspect(id).unwrap().state {
        lockstep_core::AgentState::Faulted(f) => f.detail,
        other => panic!("{other:?}"),
    };
    assert!(detail.contains(&clamp.config().fuel_per_call.to_string()), "clamped to the runtime's fuel: {detail}");
    // Asking for less is honoured: this agent is preempted after 5,000 units.
    let frugal = r#"{"name":"spin","version":"1","abi":1,"resources":{"fuelPerCall":5000}}"#;
    let id = clamp.spawn_bytes(alice.sign(&spin, frugal)).unwrap();
    clamp.tick().unwrap();
    match clamp.inspect(id).unwrap().state {
        lockstep_core::AgentState::Faulted(f) => assert_eq!(f.detail, "used its fuel budget of 5000"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn development_mode_admits_unsigned_modules_loudly() {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, ..RuntimeConfig::development() }).unwrap();
    rt.spawn_bytes(agent("counter")).unwrap();
    let events = rt.drain_events();
    assert!(events.iter().any(|e| matches!(e, Event::Security { detail, .. } if detail.contains("unsigned"))), "{events:?}");
}
