//! Times `InferenceEngine::run` on the tiny test model from Rust: the floor under the JS path.
use std::path::PathBuf;
use std::time::Instant;

use lockstep_core::inference::{ElementType, EngineOptions, InferenceEngine, Tensor};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let e = InferenceEngine::new(EngineOptions { search_roots: vec![root.clone()], ..Default::default() }).expect("npm install first");
    let id = e.load(std::fs::read(root.join("models/mlp_classifier.onnx")).expect("model")).expect("load").id;
    let x = Tensor { dtype: ElementType::F32, shape: vec![1, 4], data: vec![0; 16] };
    let inputs = vec![("x".to_string(), x)];
    for _ in 0..1000 {
        e.run(&id, &inputs).expect("run");
    }
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        e.run(&id, &inputs).expect("run");
    }
    println!("{{\"rust_run_us\":{:.2}}}", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
