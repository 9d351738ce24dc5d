//! Helpers the benchmark examples share (each example is its own binary: `mod common;`).
#![allow(dead_code)]

/// The examples allocate as the Node addon does (crates/lockstep-node/src/lib.rs says why), so
/// their figures are the shipped engine's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes of an example agent built from guest/ (`npm run build` builds them).
pub fn agent(name: &str) -> Vec<u8> {
    let path = format!("{}/../../guest/target/wasm32-unknown-unknown/release/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}; run `npm run build` first"))
}

/// The median of `v` (a vector, or a slice sorted in place).
pub fn median(mut v: impl AsMut<[f64]>) -> f64 {
    let v = v.as_mut();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The 99th percentile of `v` (sorted in place).
pub fn p99(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 * 0.99) as usize).min(v.len() - 1)]
}
