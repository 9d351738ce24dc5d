//! Agents asking for inference: batched per model and tick, answered next tick, replayable
//! from the log alone.

mod common;
use std::path::PathBuf;
use std::sync::Arc;

use common::agent;
use lockstep_core::inference::{EngineOptions, InferenceEngine};
use lockstep_core::{replay, Runtime, RuntimeConfig};

fn engine() -> Arc<InferenceEngine> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    Arc::new(
        InferenceEngine::new(EngineOptions { search_roots: vec![root], providers: common::test_providers(), ..Default::default() })
            .expect("run `npm install` first"),
    )
}

fn mlp() -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/mlp_classifier.onnx")).unwrap()
}

/// 32 classifiers for `ticks` ticks; returns the runtime and every (tick, agent, payload) the
/// host received.
/// (tick, agent, payload) of each report the host received.
type Reports = Vec<(u64, u64, Vec<u8>)>;

fn classify(batching: bool, workers: usize, ticks: u64) -> (Runtime, Reports, Vec<(u64, u64)>) {
    let mut rt = Runtime::new(RuntimeConfig { workers, seed: 3, inference_batching: batching, max_agents: 64, ..RuntimeConfig::development() }).unwrap();
    let e = engine();
    let id = e.load(mlp()).unwrap().id;
    rt.set_inference_engine(e);
    assert_eq!(rt.register_agent_model(&id).unwrap(), 0);
    assert_eq!(rt.register_agent_model(&id).unwrap(), 0, "same model, same slot");
    let m = rt.load_module(agent("classifier")).unwrap();
    for _ in 0..32 {
        rt.spawn(m).unwrap();
    }
    let mut got = Vec::new();
    let mut calls = Vec::new();
    for t in 0..ticks {
        let r = rt.tick().unwrap();
        calls.push((r.inference_requests, r.inference_calls));
        got.extend(rt.drain_host_messages().into_iter().map(|m| (t, m.from, m.payload)));
    }
    (rt, got, calls)
}

#[test]
fn requests_of_one_tick_are_one_batched_call_answered_next_tick() {
    let (_, got, calls) = classify(true, 2, 4);
    assert_eq!(calls[0], (32, 1), "32 requests, one ONNX Runtime call");
    assert_eq!(calls[1], (32, 1));
    assert_eq!(got.iter().filter(|(t, _, _)| *t == 0).count(), 0, "answers arrive at the next tick");
    let tick1: Vec<_> = got.iter().filter(|(t, _, _)| *t == 1).collect();
    assert_eq!(tick1.len(), 32);
    for (_, _, p) in &tick1 {
        let label = u64::from_le_bytes(p[..8].try_into().unwrap());
        let prob = f32::from_le_bytes(p[8..12].try_into().unwrap());
        assert!(label < 3 && prob > 0.33 && prob <= 1.0, "label {label} p {prob}");
    }
}

/// On CPU batching changes no bit. Under CUDA (`LOCKSTEP_TEST_PROVIDERS=cuda`) a batch of 32
/// and a batch of one run different matrix kernels, which round differently: there the answers
/// agree to a relative 1e-5 (docs/INFERENCE.md, "Determinism"). Either way the same session gives
/// the same bits from run to run.
#[test]
fn batched_answers_equal_one_call_per_request() {
    let (_, batched, _) = classify(true, 1, 5);
    let (_, single, calls) = classify(false, 1, 5);
    assert_eq!(calls[0], (32, 32));
    let (_, again, _) = classify(true, 1, 5);
    assert_eq!(batched, again, "the same session, the same bits");
    if common::test_providers().first() != Some(&lockstep_core::inference::Provider::Cuda) {
        assert_eq!(batched, single, "bit-identical answers, batched or not");
        return;
    }
    assert_eq!(batched.len(), single.len());
    for ((t, a, x), (u, b, y)) in batched.iter().zip(&single) {
        // label u64, then the probability f32
        assert_eq!((t, a, &x[..8], x.len()), (u, b, &y[..8], y.len()), "same label");
        let (p, q) = (f32::from_le_bytes(x[8..12].try_into().unwrap()), f32::from_le_bytes(y[8..12].try_into().unwrap()));
        assert!((p - q).abs() <= 1e-5 * p.abs().max(q.abs()), "agent {a} tick {t}: {p} batched, {q} alone");
    }
}

#[test]
fn a_session_with_inference_replays_from_the_log_alone() {
    let (mut rt, _, _) = classify(true, 2, 6);
    let last = rt.state_hash();
    let log = rt.stop_recording().unwrap();
    // The replay runs no model: the answers are in the log.
    let report = replay(&log, 1, |_| {}).unwrap();
    assert_eq!(report.divergence, None);
    assert_eq!(report.ticks_verified, 6);
    assert_eq!(report.final_hash, last);
}

#[test]
fn bad_requests_get_error_answers_not_faults() {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, max_agents: 8, ..RuntimeConfig::development() }).unwrap();
    // No engine and no registered model: the agent gets status 1 (no such model).
    let id = rt.spawn_bytes(agent("classifier")).unwrap();
    rt.run(2).unwrap();
    let msgs = rt.drain_host_messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!((msgs[0].from, msgs[0].kind), (id, 4));
    assert_eq!(u32::from_le_bytes(msgs[0].payload[..4].try_into().unwrap()), 1);
    assert!(rt.inspect(id).unwrap().state.is_running());
    assert!(rt.register_agent_model(&"0".repeat(64)).is_err(), "only loaded models can be registered");
}
