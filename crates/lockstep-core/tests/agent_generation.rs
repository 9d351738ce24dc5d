//! Agents generating text through a language model (the `generate` import): tokens arrive as
//! messages at tick boundaries, every agent's sequences decode in one batch, results do not
//! depend on the worker count, and a replay delivers the recorded tokens with no model.

mod common;
use std::path::PathBuf;
use std::sync::Arc;

use common::agent;
use lockstep_core::abi::generate as g;
use lockstep_core::inference::lm::agents::{encode, AgentRequest, Prompt};
use lockstep_core::inference::lm::{AgentLmOptions, LanguageModel, LmOptions, SamplingParams};
use lockstep_core::inference::{EngineOptions, InferenceEngine};
use lockstep_core::security::Capabilities;
use lockstep_core::{replay, Runtime, RuntimeConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny_lm() -> LanguageModel {
    let e = Arc::new(
        InferenceEngine::new(EngineOptions { search_roots: vec![root()], providers: common::test_providers(), ..Default::default() })
            .expect("run `npm install` first"),
    );
    LanguageModel::load(e, std::fs::read(root().join("models/tiny_lm/model.onnx")).unwrap(), LmOptions::bytes()).unwrap()
}

fn config(workers: usize) -> RuntimeConfig {
    RuntimeConfig { workers, seed: 11, max_agents: 64, ..RuntimeConfig::development() }
}

/// `pairs` pairs of chatter agents talking for `ticks` ticks: the runtime and the host's
/// reports (tick, agent, turn, text).
fn chat(workers: usize, pairs: u64, ticks: u64, options: AgentLmOptions) -> (Runtime, Vec<(u64, u64, u32, String)>) {
    let mut rt = Runtime::new(config(workers)).unwrap();
    let lm = tiny_lm();
    assert_eq!(rt.register_agent_language_model(&lm, options).unwrap(), 0);
    assert_eq!(rt.register_agent_language_model(&lm, options).unwrap(), 0, "same model, same slot");
    let m = rt.load_module(agent("chatter")).unwrap();
    for _ in 0..2 * pairs {
        rt.spawn(m).unwrap();
    }
    for p in 0..pairs {
        let (a, b) = (2 * p + 1, 2 * p + 2);
        let mut kick = b.to_le_bytes().to_vec();
        kick.extend_from_slice(["Hello", "The agents", "Two friends", "What are you"][p as usize % 4].as_bytes());
        rt.send(a, 1, 0, kick).unwrap();
        rt.send(b, 1, 0, a.to_le_bytes().to_vec()).unwrap();
    }
    let mut got = Vec::new();
    for t in 0..ticks {
        rt.tick().unwrap();
        for m in rt.drain_host_messages() {
            let turn = u32::from_le_bytes(m.payload[..4].try_into().unwrap());
            got.push((t, m.from, turn, String::from_utf8_lossy(&m.payload[4..]).into_owned()));
        }
    }
    (rt, got)
}

#[test]
fn agents_talk_through_the_model_batched_deterministic_and_replayable() {
    let options = AgentLmOptions { tokens_per_tick: 4, max_batch: 64 };
    let (mut rt, got) = chat(1, 4, 60, options);
    // The first speaker of each pair answers the host's line, its partner answers that, and so
    // on: 4 turns each.
    for agent in 1..=8u64 {
        let turns: Vec<_> = got.iter().filter(|r| r.1 == agent).map(|r| r.2).collect();
        assert_eq!(turns, vec![1, 2, 3, 4], "agent {agent}: {got:?}");
    }
    assert!(got.iter().any(|r| r.3.len() > 5), "some answers have text: {got:?}");
    // Tokens come at most tokens_per_tick (+1 when joining) per tick: an answer of n tokens
    // takes at least ceil((n - 1) / 4) ticks after the one that asked.
    let stats = rt.language_model_stats(0).unwrap();
    assert!(stats.tokens > 100, "{stats:?}");
    // Batched: the first speakers decode together, then the second speakers...: far fewer
    // decode calls than tokens.
    assert!(stats.decode_calls * 3 < stats.tokens, "{stats:?}");

    // The same session with 4 workers: the same conversation, the same hashes.
    let (mut rt4, got4) = chat(4, 4, 60, options);
    assert_eq!(got, got4);
    assert_eq!(rt.state_hash(), rt4.state_hash());

    // A replay needs no model (none is loaded in it) and is exact.
    let log = rt.stop_recording().unwrap();
    // (The replay registers the model by its id only: it never loads or runs it.)
    let report = replay(&log, 2, |_| {}).unwrap();
    assert!(report.divergence.is_none() && report.complete, "{report:?}");
    assert_eq!(report.ticks_verified, 60);
    assert_eq!(report.final_hash, rt.state_hash());
    let _ = rt4.stop_recording();

    // Other settings give another (still valid) session: tokens per tick is an input.
    let (rt1, got1) = chat(1, 4, 60, AgentLmOptions { tokens_per_tick: 1, max_batch: 64 });
    assert_ne!(rt1.state_hash(), rt.state_hash());
    assert!(got1.iter().all(|r| r.2 <= 4));
}

#[test]
fn a_tampered_token_is_a_corrupt_log_not_a_silent_change() {
    let (mut rt, _) = chat(1, 1, 30, AgentLmOptions::default());
    let log = rt.stop_recording().unwrap();
    // Records of tag 15 (Generated): flip a byte of the first one's text in place and fix its CRC.
    let mut at = lockstep_core::replay_log::HEADER_BYTES;
    let mut damaged = None;
    while at + 5 <= log.len() {
        let len = u32::from_le_bytes(log[at + 1..at + 5].try_into().unwrap()) as usize;
        if log[at] == 15 {
            let mut l = log.clone();
            let last = at + 5 + len - 1;
            l[last] ^= 0x20;
            let crc = crc32fast::hash(&l[at..at + 5 + len]);
            l[at + 5 + len..at + 9 + len].copy_from_slice(&crc.to_le_bytes());
            damaged = Some(l);
            break;
        }
        at += 9 + len;
    }
    let damaged = damaged.expect("the log has a Generated record");
    // The changed token reaches an agent, whose tick hash no longer matches.
    let report = replay(&damaged, 1, |_| {}).unwrap();
    assert!(report.divergence.is_some(), "{report:?}");
}

/// An agent (hand-written) that calls `generate(model, 5, request)` at its first step and sends
/// every message it receives from the generation service to the host, unchanged.
fn prober(model: i32, request: &[u8]) -> Vec<u8> {
    let data: String = request.iter().map(|b| format!("\\{b:02x}")).collect();
    common::wat(&format!(
        r#"(module
            (import "lockstep" "generate" (func $generate (param i32 i32 i32 i32) (result i32)))
            (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 2)
            (global $asked (mut i32) (i32.const 0))
            (data (i32.const 8192) "{data}")
            (func (export "lockstep_abi_version") (result i32) i32.const 1)
            (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            (func (export "agent_step") (param i32) (result i32)
                (if (i32.eqz (global.get $asked))
                    (then
                        (global.set $asked (i32.const 1))
                        (drop (call $generate (i32.const {model}) (i32.const 5) (i32.const 8192) (i32.const {len})))))
                i32.const 0)
            (func (export "agent_receive") (param $m i32) (result i32)
                (drop (call $send (i64.const 0) (i32.load (i32.add (local.get $m) (i32.const 24))) (i32.const 0)
                    (i32.add (local.get $m) (i32.const 40)) (i32.load (i32.add (local.get $m) (i32.const 32)))))
                i32.const 0))"#,
        len = request.len()
    ))
}

/// (status, tokens, text) of each message the prober got, in order, over `ticks` ticks.
fn probe(rt: &mut Runtime, model: i32, request: &[u8], ticks: u64) -> Vec<(u64, u32, Vec<u32>, Vec<u8>)> {
    let id = rt.spawn_bytes(prober(model, request)).unwrap();
    let mut out = Vec::new();
    for t in 0..ticks {
        rt.tick().unwrap();
        for m in rt.drain_host_messages().into_iter().filter(|m| m.from == id) {
            assert_eq!(m.kind, 5, "the request's tag");
            let p = &m.payload;
            let n = u32::from_le_bytes(p[4..8].try_into().unwrap()) as usize;
            let tokens = p[8..8 + 4 * n].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
            out.push((t, u32::from_le_bytes(p[..4].try_into().unwrap()), tokens, p[8 + 4 * n..].to_vec()));
        }
    }
    out
}

fn request(prompt: Prompt, max_tokens: u32) -> AgentRequest {
    AgentRequest { prompt, max_tokens, sampling: SamplingParams::default(), stop: vec![], seed: 0 }
}

#[test]
fn tokens_arrive_at_tick_boundaries_and_equal_the_reference() {
    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(root().join("models/tiny_lm/reference.json")).unwrap()).unwrap();
    let case = &reference["cases"][0];
    let want: Vec<u32> = case["greedy"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    let mut rt = Runtime::new(config(1)).unwrap();
    rt.register_agent_language_model(&tiny_lm(), AgentLmOptions { tokens_per_tick: 5, max_batch: 8 }).unwrap();
    let got = probe(&mut rt, 0, &encode(&request(Prompt::Text(case["prompt"].as_str().unwrap().as_bytes().to_vec()), 12)), 6);
    // Asked at tick 0; served at its end: 1 token from the prefill and 5 steps; 5 per tick after.
    let ticks: Vec<u64> = got.iter().map(|m| m.0).collect();
    assert_eq!(ticks, vec![1, 2, 3]);
    assert_eq!(got.iter().map(|m| m.2.len()).collect::<Vec<_>>(), vec![6, 5, 1]);
    assert_eq!(got.iter().map(|m| m.1).collect::<Vec<_>>(), vec![g::STATUS_MORE, g::STATUS_MORE, g::STATUS_MAX_TOKENS]);
    let tokens: Vec<u32> = got.iter().flat_map(|m| m.2.clone()).collect();
    assert_eq!(tokens, want[..12], "greedy tokens equal ONNX Runtime's in Python");
    let text: Vec<u8> = got.iter().flat_map(|m| m.3.clone()).collect();
    assert_eq!(text, tokens.iter().map(|t| *t as u8).collect::<Vec<_>>());
    // Token ids work as a prompt too.
    let ids: Vec<u32> = case["prompt_ids"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    let got = probe(&mut rt, 0, &encode(&request(Prompt::Tokens(ids), 3)), 3);
    assert_eq!(got[0].2, want[..3]);
}

#[test]
fn bad_requests_are_answered_with_a_status_not_a_fault() {
    let mut rt = Runtime::new(config(1)).unwrap();
    rt.register_agent_language_model(&tiny_lm(), AgentLmOptions::default()).unwrap();
    let final_status = |rt: &mut Runtime, model: i32, req: &[u8]| {
        let got = probe(rt, model, req, 3);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].2.is_empty());
        got[0].1
    };
    let ok = encode(&request(Prompt::Text(b"Hi".to_vec()), 2));
    assert_eq!(final_status(&mut rt, 3, &ok), g::STATUS_NO_SUCH_MODEL);
    assert_eq!(final_status(&mut rt, -1, &ok), g::STATUS_NO_SUCH_MODEL);
    assert_eq!(final_status(&mut rt, 0, &ok[..10]), g::STATUS_BAD_REQUEST);
    assert_eq!(final_status(&mut rt, 0, &encode(&request(Prompt::Tokens(vec![999]), 2))), g::STATUS_BAD_REQUEST);
    assert_eq!(final_status(&mut rt, 0, &encode(&request(Prompt::Text(b"x".to_vec()), 0))), g::STATUS_BAD_REQUEST);
    let hot = AgentRequest { sampling: SamplingParams { temperature: -1.0, ..Default::default() }, ..request(Prompt::Text(b"x".to_vec()), 2) };
    assert_eq!(final_status(&mut rt, 0, &encode(&hot)), g::STATUS_BAD_REQUEST);
    // The runtime and its agents go on.
    assert!(probe(&mut rt, 0, &ok, 3).last().is_some_and(|m| m.1 == g::STATUS_MAX_TOKENS));
}

#[test]
fn the_infer_capability_gates_generate() {
    // A policy that lets agents use another model only.
    let policy = Capabilities { infer: vec!["0".repeat(64)], ..Capabilities::all() };
    let mut rt = Runtime::new(RuntimeConfig { policy, ..config(1) }).unwrap();
    rt.register_agent_language_model(&tiny_lm(), AgentLmOptions::default()).unwrap();
    let got = probe(&mut rt, 0, &encode(&request(Prompt::Text(b"Hi".to_vec()), 2)), 3);
    assert_eq!(got.iter().map(|m| m.1).collect::<Vec<_>>(), vec![g::STATUS_FORBIDDEN]);
}

#[test]
fn a_stopped_agents_generation_is_dropped_and_a_snapshot_waits_for_generations() {
    let mut rt = Runtime::new(config(1)).unwrap();
    rt.register_agent_language_model(&tiny_lm(), AgentLmOptions { tokens_per_tick: 1, max_batch: 4 }).unwrap();
    let id = rt.spawn_bytes(prober(0, &encode(&request(Prompt::Text(b"Hi".to_vec()), 50)))).unwrap();
    rt.run(2).unwrap();
    assert_eq!(rt.snapshot().unwrap_err().code(), "E_SNAPSHOT_UNSUPPORTED");
    rt.kill(id).unwrap();
    rt.run(2).unwrap();
    let before = rt.language_model_stats(0).unwrap();
    rt.run(3).unwrap();
    assert_eq!(rt.language_model_stats(0).unwrap().tokens, before.tokens, "nothing decodes for a killed agent");
    assert!(rt.snapshot().is_ok(), "no generation in flight");
}
