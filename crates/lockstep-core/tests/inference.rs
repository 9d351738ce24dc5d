//! Inference through ONNX Runtime, with the library the onnxruntime-node npm package ships
//! (`npm install` puts it under node_modules; `npm test` does that first).

use std::path::PathBuf;

use lockstep_core::inference::{ElementType, EngineOptions, InferenceEngine, InferenceError, Provider, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn engine(providers: Vec<Provider>, max_models: usize) -> InferenceEngine {
    InferenceEngine::new(EngineOptions { providers, max_models, search_roots: vec![root()], ..Default::default() })
        .unwrap_or_else(|e| panic!("{e} — run `npm install` (or `npm test`) first"))
}

fn model(name: &str) -> Vec<u8> {
    std::fs::read(root().join("models").join(name)).expect("models/ is checked in")
}

fn f32_tensor(shape: Vec<i64>, data: &[f32]) -> Tensor {
    Tensor { dtype: ElementType::F32, shape, data: data.iter().flat_map(|v| v.to_le_bytes()).collect() }
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn expected() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root().join("models/mlp_classifier.expected.json")).unwrap()).unwrap()
}

fn sample_input() -> Vec<(String, Tensor)> {
    let x: Vec<f32> = expected()["inputs"]["x"]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    vec![("x".to_string(), f32_tensor(vec![8, 4], &x))]
}

#[test]
fn matches_the_numpy_reference_and_describes_the_model() {
    let e = engine(vec![Provider::Cpu], 4);
    let info = e.load(model("mlp_classifier.onnx")).unwrap();
    assert_eq!(info.id.len(), 64, "SHA-256 id");
    assert_eq!(info.inputs[0].name, "x");
    assert_eq!(info.inputs[0].dtype, "float32");
    assert_eq!(info.inputs[0].shape, vec![-1, 4]);
    assert_eq!(info.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), vec!["probs", "label"]);
    assert!(info.batchable);
    assert_eq!(info.provider, Provider::Cpu);
    let out = e.run(&info.id, &sample_input()).unwrap();
    let probs = f32s(&out[0].1);
    let want: Vec<f64> = expected()["outputs"]["probs"]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(out[0].1.shape, vec![8, 3]);
    for (g, w) in probs.iter().zip(&want) {
        assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
    }
    let labels: Vec<i64> = out[1].1.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let want_labels: Vec<i64> = expected()["outputs"]["label"]["data"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(labels, want_labels);
}

#[test]
fn integer_model_and_repeat_runs_are_bit_identical() {
    let e = engine(vec![Provider::Cpu], 4);
    let add = e.load(model("add_int64.onnx")).unwrap();
    let t = |v: [i64; 3]| Tensor { dtype: ElementType::I64, shape: vec![3], data: v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let out = e.run(&add.id, &[("a".into(), t([1, 2, 3])), ("b".into(), t([10, 20, i64::MAX - 3]))]).unwrap();
    assert_eq!(out[0].1, t([11, 22, i64::MAX]));
    let mlp = e.load(model("mlp_classifier.onnx")).unwrap();
    let first = e.run(&mlp.id, &sample_input()).unwrap();
    for _ in 0..20 {
        assert_eq!(e.run(&mlp.id, &sample_input()).unwrap(), first, "CPU results are bit-reproducible");
    }
}

#[test]
fn cuda_requested_but_absent_falls_back_to_cpu_and_says_why() {
    let e = engine(vec![Provider::Cuda, Provider::CoreMl], 4);
    let info = e.load(model("mlp_classifier.onnx")).unwrap();
    assert_eq!(info.provider, Provider::Cpu, "no GPU provider in the npm library, and no GPU here");
    assert_eq!(info.fallback_reasons.len(), 2, "{:?}", info.fallback_reasons);
    assert!(info.fallback_reasons[0].starts_with("cuda:"), "{:?}", info.fallback_reasons);
    assert!(e.run(&info.id, &sample_input()).is_ok());
}

#[test]
fn cache_identity_eviction_and_unload() {
    let e = engine(vec![Provider::Cpu], 1);
    let a = e.load(model("mlp_classifier.onnx")).unwrap();
    let again = e.load(model("mlp_classifier.onnx")).unwrap();
    assert_eq!(a.id, again.id, "same bytes, same model");
    assert_eq!(e.list().len(), 1);
    let b = e.load(model("add_int64.onnx")).unwrap();
    assert_eq!(e.list().iter().map(|m| m.id.clone()).collect::<Vec<_>>(), vec![b.id.clone()], "LRU evicted the first");
    assert!(matches!(e.run(&a.id, &sample_input()), Err(InferenceError::UnknownModel { .. })));
    assert!(e.unload(&b.id));
    assert!(!e.unload(&b.id));
    assert!(e.list().is_empty());
}

#[test]
fn bad_input_is_a_typed_error_and_the_engine_carries_on() {
    let e = InferenceEngine::new(EngineOptions { max_model_bytes: 4096, search_roots: vec![root()], ..Default::default() }).unwrap();
    let id = e.load(model("mlp_classifier.onnx")).unwrap().id;
    let code = |r: Result<_, InferenceError>| r.map(|_: Vec<_>| ()).unwrap_err().code();
    assert_eq!(code(e.run(&id, &[("x".into(), Tensor { dtype: ElementType::F64, shape: vec![1, 4], data: vec![0; 32] })])), "E_BAD_INPUT_TYPE");
    assert_eq!(code(e.run(&id, &[("x".into(), f32_tensor(vec![1, 5], &[0.0; 5]))])), "E_BAD_INPUT_SHAPE");
    assert_eq!(code(e.run(&id, &[("x".into(), f32_tensor(vec![4], &[0.0; 4]))])), "E_BAD_INPUT_SHAPE");
    assert_eq!(code(e.run(&id, &[("x".into(), Tensor { dtype: ElementType::F32, shape: vec![2, 4], data: vec![0; 12] })])), "E_BAD_INPUT_SHAPE");
    assert_eq!(code(e.run(&id, &[("y".into(), f32_tensor(vec![1, 4], &[0.0; 4]))])), "E_BAD_INPUT_NAME");
    assert_eq!(code(e.run(&id, &[])), "E_BAD_INPUT_NAME");
    assert_eq!(code(e.run("0000", &sample_input())), "E_UNKNOWN_MODEL");
    assert_eq!(e.load(b"definitely not onnx".to_vec()).unwrap_err().code(), "E_INVALID_MODEL");
    let mut truncated = model("mlp_classifier.onnx");
    truncated.truncate(truncated.len() / 2);
    assert_eq!(e.load(truncated).unwrap_err().code(), "E_INVALID_MODEL");
    assert_eq!(e.load(vec![0; 5000]).unwrap_err(), InferenceError::ModelTooLarge { bytes: 5000, max: 4096 });
    assert!(e.run(&id, &sample_input()).is_ok(), "still usable");
}
