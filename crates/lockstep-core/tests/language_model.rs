//! The language-model service on the committed tiny decoder (models/tiny_lm, made by
//! scripts/gen-lm.py): the real loading path, greedy tokens equal to ONNX Runtime's in Python,
//! continuous batching that changes no sequence's tokens, seeded sampling, stop sequences,
//! limits and refusals.

use std::path::PathBuf;
use std::sync::Arc;

use lockstep_core::inference::lm::{Finish, GenerateRequest, Generator, GeneratorLimits, LanguageModel, LmOptions, SamplingParams, Tokenizer};
use lockstep_core::inference::{EngineOptions, InferenceEngine, InferenceError};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn engine() -> Arc<InferenceEngine> {
    Arc::new(
        InferenceEngine::new(EngineOptions { search_roots: vec![root()], ..Default::default() })
            .unwrap_or_else(|e| panic!("{e} — run `npm install` (or `npm test`) first")),
    )
}

fn tiny_lm() -> LanguageModel {
    let bytes = std::fs::read(root().join("models/tiny_lm/model.onnx")).expect("models/tiny_lm is checked in");
    LanguageModel::load(engine(), bytes, LmOptions::bytes()).unwrap()
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root().join("models/tiny_lm/reference.json")).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

fn greedy(prompt: Vec<u32>, max_tokens: u32) -> GenerateRequest {
    GenerateRequest { prompt, max_tokens, stop: Vec::new(), sampling: SamplingParams::default(), seed: [0; 32] }
}

/// Runs every request to the end; returns each one's tokens and finish, by key.
fn run_all(g: &mut Generator) -> std::collections::BTreeMap<u64, (Vec<u32>, Finish)> {
    let mut out: std::collections::BTreeMap<u64, (Vec<u32>, Option<Finish>)> = Default::default();
    for _ in 0..10_000 {
        let more = g.step();
        for p in g.take_all() {
            let e = out.entry(p.key).or_default();
            e.0.extend(p.tokens);
            if let Some(f) = p.finish {
                assert!(e.1.replace(f).is_none(), "finished twice");
            }
        }
        if !more {
            break;
        }
    }
    out.into_iter().map(|(k, (t, f))| (k, (t, f.expect("every sequence finishes")))).collect()
}

#[test]
fn loads_the_optimum_layout_and_describes_it() {
    let lm = tiny_lm();
    let i = lm.info();
    assert_eq!((i.layers, i.heads, i.head_dim, i.vocab), (2, 4, 16, 260));
    assert!(i.attention_mask && i.position_ids);
    assert_eq!(i.kv_type.name(), "float32");
    assert_eq!(i.kv_bytes_per_token(), 2 * 2 * 4 * 16 * 4);
    assert_eq!(lm.encode_prompt(b"Hi").unwrap(), vec![256, 72, 105]);
}

#[test]
fn refuses_models_that_are_not_decoders_and_says_why() {
    let e = engine();
    let classifier = std::fs::read(root().join("models/mlp_classifier.onnx")).unwrap();
    let err = LanguageModel::load(e.clone(), classifier, LmOptions::bytes()).unwrap_err();
    assert_eq!(err.code(), "E_NOT_A_LANGUAGE_MODEL");
    assert!(err.to_string().contains("input_ids"), "{err}");
    let bytes = std::fs::read(root().join("models/tiny_lm/model.onnx")).unwrap();
    let bad = LmOptions { eos: vec![999], ..LmOptions::bytes() };
    let err = LanguageModel::load(e.clone(), bytes.clone(), bad).unwrap_err();
    assert!(matches!(err, InferenceError::NotALanguageModel { .. }) && err.to_string().contains("999"), "{err}");
    let none = LanguageModel::load(e, bytes, LmOptions { tokenizer: Tokenizer::None, ..LmOptions::bytes() }).unwrap();
    assert_eq!(none.encode_prompt(b"x").unwrap_err().code(), "E_BAD_PROMPT");
}

#[test]
fn greedy_tokens_equal_onnx_runtimes_in_python_one_at_a_time_and_batched() {
    let r = reference();
    let cases = r["cases"].as_array().unwrap();
    assert!(r["min_top2_margin"].as_f64().unwrap() > 1e-3, "the reference's tokens must not hinge on rounding");
    let lm = tiny_lm();
    // One at a time (batch of one).
    for c in cases {
        let mut g = Generator::new(lm.clone(), GeneratorLimits { max_batch: 1, ..Default::default() });
        let want = ids(&c["greedy"]);
        g.submit(1, greedy(ids(&c["prompt_ids"]), want.len() as u32)).unwrap();
        let out = run_all(&mut g);
        assert_eq!(out[&1].0, want, "prompt {:?}", c["prompt"]);
        assert_eq!(g.stats().decode_calls, want.len() as u64 - 1);
        assert_eq!(g.stats().prefill_calls, 1);
    }
    // All together, with different prompt lengths and max tokens: rows join, pad and leave.
    let mut g = Generator::new(lm.clone(), GeneratorLimits::default());
    for (k, c) in cases.iter().enumerate() {
        let n = ids(&c["greedy"]).len() as u32 - 3 * k as u32;
        g.submit(k as u64, greedy(ids(&c["prompt_ids"]), n)).unwrap();
    }
    let out = run_all(&mut g);
    for (k, c) in cases.iter().enumerate() {
        let want = ids(&c["greedy"]);
        assert_eq!(out[&(k as u64)].0, want[..want.len() - 3 * k], "prompt {:?} batched", c["prompt"]);
        assert_eq!(out[&(k as u64)].1, Finish::MaxTokens);
    }
    // One prefill for all, one decode call per step for all: 23 steps for the longest.
    assert_eq!(g.stats().prefill_calls, 1);
    assert_eq!(g.stats().decode_calls, 23);
    assert!(g.stats().rebuilds >= 4, "rows left the batch: {:?}", g.stats());
}

#[test]
fn sequences_join_a_running_batch_between_steps() {
    let r = reference();
    let cases = r["cases"].as_array().unwrap();
    let lm = tiny_lm();
    let mut g = Generator::new(lm, GeneratorLimits { max_batch: 2, ..Default::default() });
    // Three requests, a batch of two: the third waits and joins when the first leaves; a
    // fourth is submitted mid-way.
    g.submit(0, greedy(ids(&cases[0]["prompt_ids"]), 5)).unwrap();
    g.submit(1, greedy(ids(&cases[1]["prompt_ids"]), 20)).unwrap();
    g.submit(2, greedy(ids(&cases[2]["prompt_ids"]), 12)).unwrap();
    let mut got: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
    for step in 0..200 {
        if step == 3 {
            g.submit(3, greedy(ids(&cases[3]["prompt_ids"]), 10)).unwrap();
        }
        assert!(g.load().1 <= 2, "never more than max_batch decoding");
        let more = g.step();
        for p in g.take_all() {
            got.entry(p.key).or_default().extend(p.tokens);
        }
        if !more {
            break;
        }
    }
    for (k, n) in [(0usize, 5usize), (1, 20), (2, 12), (3, 10)] {
        assert_eq!(got[&(k as u64)], ids(&cases[k]["greedy"])[..n], "request {k}");
    }
}

#[test]
fn sampling_is_seeded_per_sequence_and_independent_of_the_batch() {
    let lm = tiny_lm();
    let prompt = lm.encode_prompt(b"The agents").unwrap();
    let sampled = |seed: u8| GenerateRequest {
        prompt: prompt.clone(),
        max_tokens: 40,
        stop: Vec::new(),
        sampling: SamplingParams { temperature: 0.9, top_k: 40, top_p: 0.95 },
        seed: [seed; 32],
    };
    let alone = |seed: u8| {
        let mut g = Generator::new(lm.clone(), GeneratorLimits { max_batch: 1, ..Default::default() });
        g.submit(7, sampled(seed)).unwrap();
        run_all(&mut g).remove(&7).unwrap().0
    };
    let a = alone(1);
    assert_eq!(a, alone(1), "same seed, same tokens");
    assert_ne!(a, alone(2), "another seed, other tokens");
    // In a batch with others (their tokens do not draw from its stream).
    let mut g = Generator::new(lm.clone(), GeneratorLimits::default());
    g.submit(0, sampled(9)).unwrap();
    g.submit(1, sampled(1)).unwrap();
    g.submit(2, greedy(prompt.clone(), 7)).unwrap();
    let out = run_all(&mut g);
    assert_eq!(out[&1].0, a);
    assert_eq!(out[&0].0, alone(9));
}

#[test]
fn stop_sequences_eos_and_context_end_a_sequence() {
    let lm = tiny_lm();
    let prompt = lm.encode_prompt(b"Hello").unwrap();
    // Greedy text from "Hello" is "ne an an the the...": stop at " the" (spans tokens).
    let mut g = Generator::new(lm.clone(), GeneratorLimits::default());
    g.submit(1, GenerateRequest { stop: vec![b" the".to_vec(), b"zzz".to_vec()], ..greedy(prompt.clone(), 100) }).unwrap();
    let (tokens, finish) = run_all(&mut g).remove(&1).unwrap();
    assert_eq!(finish, Finish::Stop);
    assert_eq!(String::from_utf8(tokens.iter().map(|t| *t as u8).collect()).unwrap(), "ne an an the");
    // The context: 6 prompt tokens in a context of 10 leave room for 4 tokens in the cache, and
    // the 5th comes out of the last step.
    let small = LanguageModel::from_loaded(lm.engine(), &lm.info().id, LmOptions { max_context: 10, ..LmOptions::bytes() }).unwrap();
    let mut g = Generator::new(small, GeneratorLimits::default());
    g.submit(1, greedy(prompt.clone(), 100)).unwrap();
    let (tokens, finish) = run_all(&mut g).remove(&1).unwrap();
    assert_eq!((tokens.len(), finish), (5, Finish::ContextFull));
    // An end-of-sequence token (here: the byte 'e' declared one) ends it, undelivered.
    let eos = LanguageModel::from_loaded(lm.engine(), &lm.info().id, LmOptions { eos: vec![u32::from(b'e')], ..LmOptions::bytes() }).unwrap();
    let mut g = Generator::new(eos, GeneratorLimits::default());
    g.submit(1, greedy(prompt, 100)).unwrap();
    assert_eq!(run_all(&mut g).remove(&1).unwrap(), (vec![u32::from(b'n')], Finish::Eos));
}

#[test]
fn requests_are_checked_and_the_queue_is_bounded() {
    let lm = tiny_lm();
    let mut g = Generator::new(lm, GeneratorLimits { max_batch: 1, max_queued: 2 });
    let bad = |g: &mut Generator, r: GenerateRequest| g.submit(9, r).unwrap_err().code();
    assert_eq!(bad(&mut g, greedy(vec![], 5)), "E_BAD_PROMPT");
    assert_eq!(bad(&mut g, greedy(vec![300], 5)), "E_BAD_PROMPT");
    assert_eq!(bad(&mut g, greedy(vec![1; 2000], 5)), "E_BAD_PROMPT");
    assert_eq!(bad(&mut g, greedy(vec![1], 0)), "E_BAD_PROMPT");
    assert_eq!(bad(&mut g, GenerateRequest { stop: vec![vec![]], ..greedy(vec![1], 5) }), "E_BAD_PROMPT");
    let hot = GenerateRequest { sampling: SamplingParams { temperature: f32::NAN, ..Default::default() }, ..greedy(vec![1], 5) };
    assert_eq!(bad(&mut g, hot), "E_BAD_PROMPT");
    g.submit(1, greedy(vec![256], 3)).unwrap();
    g.submit(2, greedy(vec![256], 3)).unwrap();
    assert_eq!(bad(&mut g, greedy(vec![256], 3)), "E_QUEUE_FULL");
    // A cancelled sequence produces nothing and frees its place.
    g.cancel(1);
    assert!(!g.is_running(1));
    g.submit(3, greedy(vec![256], 3)).unwrap();
    let out = run_all(&mut g);
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
}
