//! The language-model service on the committed tiny decoder (models/tiny_lm, made by
//! scripts/gen-lm.py): the real loading path, greedy tokens equal to ONNX Runtime's in Python,
//! continuous batching that changes no sequence's tokens, seeded sampling, stop sequences,
//! limits and refusals. The same checks run on models/tiny_lm_gqa, the same weights with
//! GroupQueryAttention (the in-place KV-cache layout), which must give the same tokens.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use lockstep_core::inference::lm::{Finish, GenerateRequest, Generator, GeneratorLimits, KvLayout, LanguageModel, LmOptions, SamplingParams, Tokenizer};
use lockstep_core::inference::{EngineOptions, InferenceEngine, InferenceError};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn engine() -> Arc<InferenceEngine> {
    Arc::new(
        InferenceEngine::new(EngineOptions { search_roots: vec![root()], providers: common::test_providers(), ..Default::default() })
            .unwrap_or_else(|e| panic!("{e} — run `npm install` (or `npm test`) first")),
    )
}

fn tiny_lm() -> LanguageModel {
    let bytes = std::fs::read(root().join("models/tiny_lm/model.onnx")).expect("models/tiny_lm is checked in");
    LanguageModel::load(engine(), bytes, LmOptions::bytes()).unwrap()
}

/// The same weights as tiny_lm, attention as GroupQueryAttention: the in-place layout.
fn tiny_lm_gqa() -> LanguageModel {
    let bytes = std::fs::read(root().join("models/tiny_lm_gqa/model.onnx")).expect("models/tiny_lm_gqa is checked in");
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
    greedy_tokens_equal_the_reference(tiny_lm());
}

fn greedy_tokens_equal_the_reference(lm: LanguageModel) {
    let r = reference();
    let cases = r["cases"].as_array().unwrap();
    assert!(r["min_top2_margin"].as_f64().unwrap() > 1e-3, "the reference's tokens must not hinge on rounding");
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
    // Prompts of 2, 6, 11, 17 and 31 tokens are prefilled in 3 calls ({2, 6}, {11, 17}, {31}:
    // less padding than one call of 5 x 31), then one decode call per step for all: 23 steps
    // for the longest.
    assert_eq!(g.stats().prefill_calls, 3);
    assert_eq!(g.stats().decode_calls, 23);
    assert!(g.stats().rebuilds >= 4, "rows left the batch: {:?}", g.stats());
}

#[test]
fn sequences_join_a_running_batch_between_steps() {
    sequences_join_between_steps(tiny_lm());
}

fn sequences_join_between_steps(lm: LanguageModel) {
    let r = reference();
    let cases = r["cases"].as_array().unwrap();
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
    sampling_is_seeded_and_independent_of_the_batch(tiny_lm());
}

fn sampling_is_seeded_and_independent_of_the_batch(lm: LanguageModel) -> Vec<u32> {
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
    a
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

#[test]
fn the_in_place_layout_is_found_from_the_graph() {
    let (concat, in_place) = (tiny_lm(), tiny_lm_gqa());
    assert_eq!(concat.info().layout, KvLayout::Concat);
    assert_eq!(in_place.info().layout, KvLayout::InPlace);
    assert_eq!(in_place.info().layout.name(), "in-place");
    let (a, b) = (concat.info(), in_place.info());
    assert_eq!((a.layers, a.heads, a.head_dim, a.vocab, a.kv_type), (b.layers, b.heads, b.head_dim, b.vocab, b.kv_type));
    assert!(b.attention_mask && b.position_ids);
}

#[test]
fn the_in_place_layout_gives_the_optimum_layouts_tokens() {
    // Greedy, one at a time and batched (rows of different lengths join, pad and leave), and
    // joining a running batch: the reference tokens, made with the Optimum-layout model.
    greedy_tokens_equal_the_reference(tiny_lm_gqa());
    sequences_join_between_steps(tiny_lm_gqa());
    // Seeded sampling: the same tokens as the Optimum-layout model with the same seed.
    assert_eq!(sampling_is_seeded_and_independent_of_the_batch(tiny_lm_gqa()), sampling_is_seeded_and_independent_of_the_batch(tiny_lm()));
}

#[test]
fn an_in_place_cache_grows_past_its_capacity_and_keeps_every_rows_tokens() {
    // Long generations (a 31-token prompt and 200 tokens) move the batch to larger buffers
    // several times, and rows leave at different steps; each row's tokens equal the same
    // request alone on the Optimum-layout model, sampled (where no rounding can flip a greedy
    // near-tie: sampling draws from the whole distribution with a seeded stream).
    let r = reference();
    let cases = r["cases"].as_array().unwrap();
    let request = |k: usize| GenerateRequest {
        prompt: ids(&cases[k]["prompt_ids"]),
        max_tokens: 200 - 30 * k as u32,
        stop: Vec::new(),
        sampling: SamplingParams { temperature: 0.8, top_k: 20, top_p: 0.9 },
        seed: [k as u8 + 1; 32],
    };
    let mut g = Generator::new(tiny_lm_gqa(), GeneratorLimits::default());
    for k in 0..cases.len() {
        g.submit(k as u64, request(k)).unwrap();
    }
    let batched = run_all(&mut g);
    assert!(g.stats().rebuilds >= 3, "the buffer grew and rows left: {:?}", g.stats());
    for k in 0..cases.len() {
        let mut alone = Generator::new(tiny_lm(), GeneratorLimits { max_batch: 1, ..Default::default() });
        alone.submit(0, request(k)).unwrap();
        let want = run_all(&mut alone).remove(&0).unwrap();
        assert_eq!(batched[&(k as u64)], want, "request {k}");
    }
}

/// Where the cache lives is where the serving provider computes: the host on CPU, the GPU's
/// memory under CUDA (run with `LOCKSTEP_TEST_PROVIDERS=cuda` and a CUDA build in
/// `LOCKSTEP_ORT_LIBRARY`). A GPU-resident cache crosses to the host only to be rebuilt (rows
/// joining or leaving, an in-place buffer growing), never on a decode step; the tokens are
/// still the reference's.
#[test]
fn the_kv_cache_stays_where_the_provider_computes_between_decode_steps() {
    use lockstep_core::inference::lm::KvDevice;
    use lockstep_core::inference::{ElementType, Provider};
    let provider = if common::test_providers().first() == Some(&Provider::Cuda) { Provider::Cuda } else { Provider::Cpu };
    // Under CUDA: the Optimum model's cache on the GPU; the in-place one's (float32, whose
    // GroupQueryAttention runs on the CPU) on the host.
    assert_eq!(KvDevice::serving(Provider::Cuda, KvLayout::Concat, ElementType::F32), KvDevice::Cuda);
    assert_eq!(KvDevice::serving(Provider::Cuda, KvLayout::InPlace, ElementType::F32), KvDevice::Host);
    assert_eq!(KvDevice::serving(Provider::Cuda, KvLayout::InPlace, ElementType::F16), KvDevice::Cuda);
    assert_eq!(KvDevice::serving(Provider::Cpu, KvLayout::Concat, ElementType::F16), KvDevice::Host);
    let r = reference();
    let case = &r["cases"].as_array().unwrap()[2];
    let want = ids(&case["greedy"]);
    for (lm, layout) in [(tiny_lm(), KvLayout::Concat), (tiny_lm_gqa(), KvLayout::InPlace)] {
        assert_eq!(lm.info().layout, layout);
        assert_eq!(lm.info().model.provider, provider, "{:?}", lm.info().model.fallback_reasons);
        let want_device = KvDevice::serving(provider, layout, lm.info().kv_type);
        // One sequence: no row joins or leaves until it ends.
        let mut g = Generator::new(lm.clone(), GeneratorLimits { max_batch: 1, ..Default::default() });
        g.submit(1, greedy(ids(&case["prompt_ids"]), want.len() as u32)).unwrap();
        let mut tokens = Vec::new();
        let mut seen = Vec::new();
        while g.step() {
            seen.extend(g.kv_device());
            tokens.extend(g.take_all().into_iter().flat_map(|p| p.tokens));
        }
        tokens.extend(g.take_all().into_iter().flat_map(|p| p.tokens));
        assert_eq!(tokens, want, "{layout:?}");
        assert!(!seen.is_empty() && seen.iter().all(|d| *d == want_device), "{layout:?}: cache on {seen:?}");
        let s = g.stats();
        assert_eq!(s.decode_calls, want.len() as u64 - 1);
        // Concat: the prefill's present is already on the device. In place: the zeroed buffer
        // is made on the host and moves once. Nothing moves on a decode step.
        let moves = match (want_device, layout) {
            (KvDevice::Host, _) | (_, KvLayout::Concat) => 0,
            (_, KvLayout::InPlace) => 1,
        };
        assert_eq!(s.kv_transfers, moves, "{layout:?}: {s:?}");
        // Batched, with rows leaving: each rebuild moves the cache to the host and back.
        let mut g = Generator::new(lm.clone(), GeneratorLimits::default());
        for (k, c) in r["cases"].as_array().unwrap().iter().enumerate() {
            g.submit(k as u64, greedy(ids(&c["prompt_ids"]), 4 + 3 * k as u32)).unwrap();
        }
        let out = run_all(&mut g);
        for (k, c) in r["cases"].as_array().unwrap().iter().enumerate() {
            assert_eq!(out[&(k as u64)].0, ids(&c["greedy"])[..4 + 3 * k], "{layout:?} batched row {k}");
        }
        let s = g.stats();
        assert!(s.rebuilds >= 4, "{s:?}");
        if want_device == KvDevice::Host {
            assert_eq!(s.kv_transfers, 0, "{s:?}");
        } else {
            // At most: each prefill's cache up (in place: its zeroed buffer) and down to be
            // merged, each rebuilt batch down and up.
            assert!(s.kv_transfers > 0 && s.kv_transfers <= 2 * (s.rebuilds + s.prefill_calls), "{layout:?}: {s:?}");
        }
    }
}

/// models/tiny_lm_gqa_f16 (scripts/lm-f16-cache.py: tiny_lm_gqa with its attention in float16,
/// so its cache is float16, the type GroupQueryAttention's CUDA kernels take): the cache is
/// float16, lives in GPU memory under CUDA, and the tokens are the reference's, one at a time
/// and batched.
#[test]
fn an_in_place_model_with_a_float16_cache_gives_the_reference_tokens() {
    use lockstep_core::inference::lm::KvDevice;
    use lockstep_core::inference::Provider;
    let bytes = std::fs::read(root().join("models/tiny_lm_gqa_f16/model.onnx")).expect("models/tiny_lm_gqa_f16 is checked in");
    let lm = LanguageModel::load(engine(), bytes, LmOptions::bytes()).unwrap();
    assert_eq!((lm.info().layout, lm.info().kv_type.name()), (KvLayout::InPlace, "float16"));
    assert_eq!(lm.info().kv_bytes_per_token(), 2 * 2 * 4 * 16 * 2);
    let on_gpu = lm.info().model.provider == Provider::Cuda;
    greedy_tokens_equal_the_reference(lm.clone());
    // A lone sequence: its cache where the provider computes, moved at most once (its zeroed
    // buffer, to the GPU).
    let mut g = Generator::new(lm, GeneratorLimits { max_batch: 1, ..Default::default() });
    g.submit(1, greedy(vec![256, 72, 105], 40)).unwrap();
    let mut seen = Vec::new();
    while g.step() {
        seen.extend(g.kv_device());
    }
    let want = if on_gpu { KvDevice::Cuda } else { KvDevice::Host };
    assert!(!seen.is_empty() && seen.iter().all(|d| *d == want), "{seen:?}");
    assert_eq!(g.stats().kv_transfers, u64::from(on_gpu), "{:?}", g.stats());
}
