//! Times `InferenceEngine::run` on the tiny test model from Rust: the floor under the JS path.
//!
//! `infer_loop`: 20,000 calls, one figure (`rust_run_us`, the mean).
//! `infer_loop --serve`: for each line `N` read on stdin, runs N calls, timing each, and
//! prints their times in µs as one JSON array line. `benches/inference.mjs` asks for a block
//! between its own blocks of `inferSync` calls, so the floor and the JS path are measured in
//! alternation, each per call, in the same stretch of the machine's time (one separate run of
//! 20,000 calls minutes later made the JS overhead swing between −0.6 and +3.9 µs from run to
//! run on the shared 2-core VM: BENCHMARKS.md).
// The addon's allocator (examples/common).
mod common;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use lockstep_core::inference::{ElementType, EngineOptions, InferenceEngine, Tensor};

/// Most calls one `--serve` block may ask for (a line naming more is clamped).
const MAX_BLOCK_CALLS: usize = 100_000;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let e = InferenceEngine::new(EngineOptions { search_roots: vec![root.clone()], ..Default::default() }).expect("npm install first");
    let id = e.load(std::fs::read(root.join("models/mlp_classifier.onnx")).expect("model")).expect("load").id;
    // The same input as the JS bench's `mlpInputs(1)`: sin(0..4) as f32.
    let data: Vec<u8> = (0..4).flat_map(|i| (i as f32).sin().to_le_bytes()).collect();
    let x = Tensor { dtype: ElementType::F32, shape: vec![1, 4], data };
    let inputs = vec![("x".to_string(), x)];
    for _ in 0..1000 {
        e.run(&id, &inputs).expect("run");
    }
    if std::env::args().any(|a| a == "--serve") {
        for line in std::io::stdin().lock().lines() {
            let Ok(n) = line.expect("stdin").trim().parse::<usize>() else { break };
            let mut times = Vec::with_capacity(n.min(MAX_BLOCK_CALLS));
            for _ in 0..n.min(MAX_BLOCK_CALLS) {
                let t = Instant::now();
                e.run(&id, &inputs).expect("run");
                times.push(format!("{:.3}", t.elapsed().as_secs_f64() * 1e6));
            }
            println!("[{}]", times.join(","));
        }
        return;
    }
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        e.run(&id, &inputs).expect("run");
    }
    println!("{{\"rust_run_us\":{:.2}}}", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
