//! The inference part of the binding: model management on the runtime, and `infer` as an
//! async task on libuv's thread pool (or synchronously, for the lowest overhead).

use std::path::PathBuf;
use std::sync::Arc;

use lockstep_core::inference::{self as inf, ElementType, EngineOptions, InferenceEngine, InferenceError, Provider, Tensor};
use napi::bindgen_prelude::*;
use napi_derive::napi;

pub fn inf_err(e: InferenceError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[{}] {e}", e.code()))
}

#[napi(object)]
#[derive(Default, Clone)]
pub struct InferenceOptions {
    /// Providers to try in order ("cuda", "tensorrt", "directml", "coreml", "cpu"); CPU is
    /// always the fallback. Default: ["cpu"].
    pub providers: Option<Vec<String>>,
    // Numbers as f64, range-checked by `check_options` (napi's integer conversions wrap).
    pub max_models: Option<f64>,
    pub max_model_bytes: Option<f64>,
    /// Your own libonnxruntime (e.g. a CUDA build); else LOCKSTEP_ORT_LIBRARY; else the
    /// onnxruntime-node package's.
    pub ort_library_path: Option<String>,
    /// Where index.js found node_modules/onnxruntime-node (set by index.js).
    pub search_roots: Option<Vec<String>>,
    /// ONNX Runtime's deterministic-compute option. Default true (bit-reproducible CPU results).
    pub deterministic: Option<bool>,
}

fn bad_option(reason: String) -> napi::Error {
    napi::Error::new(Status::InvalidArg, format!("[E_INVALID_CONFIG] {reason}"))
}

/// An integer option in `min..=max` (2^53 - 1 at most: what a JS number holds exactly).
fn int_option(name: &str, v: Option<f64>, min: u64, max: u64) -> Result<Option<u64>> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x.fract() == 0.0 && x >= min as f64 && x <= max as f64 => Ok(Some(x as u64)),
        Some(x) => Err(bad_option(format!("option inference.{name} must be an integer in {min}..={max}, got {x}"))),
    }
}

/// Checks the options when the runtime is created (the engine itself is created later, at
/// the first model load), so a bad option fails `new Runtime`, not some later call.
pub fn check_options(o: &InferenceOptions) -> Result<()> {
    int_option("maxModels", o.max_models, 1, u32::MAX as u64)?;
    int_option("maxModelBytes", o.max_model_bytes, 1, (1 << 53) - 1)?;
    for name in o.providers.iter().flatten() {
        Provider::parse(name)
            .ok_or_else(|| bad_option(format!("inference.providers: unknown provider \"{name}\"; use cuda, tensorrt, directml, coreml or cpu")))?;
    }
    Ok(())
}

pub fn engine_from(o: &InferenceOptions) -> Result<InferenceEngine> {
    let d = EngineOptions::default();
    let mut providers = Vec::new();
    for name in o.providers.clone().unwrap_or_default() {
        providers.push(
            Provider::parse(&name)
                .ok_or_else(|| bad_option(format!("inference.providers: unknown provider \"{name}\"; use cuda, tensorrt, directml, coreml or cpu")))?,
        );
    }
    if providers.is_empty() {
        providers.push(Provider::Cpu);
    }
    let mut search_roots: Vec<PathBuf> = o.search_roots.clone().unwrap_or_default().into_iter().map(PathBuf::from).collect();
    search_roots.extend(d.search_roots);
    InferenceEngine::new(EngineOptions {
        providers,
        max_models: int_option("maxModels", o.max_models, 1, u32::MAX as u64)?.map(|m| m as usize).unwrap_or(d.max_models),
        max_model_bytes: int_option("maxModelBytes", o.max_model_bytes, 1, (1 << 53) - 1)?.map(|m| m as usize).unwrap_or(d.max_model_bytes),
        library_path: o.ort_library_path.clone().map(PathBuf::from),
        search_roots,
        deterministic: o.deterministic.unwrap_or(d.deterministic),
    })
    .map_err(inf_err)
}

#[napi(object)]
pub struct TensorInfo {
    pub name: String,
    pub r#type: String,
    /// -1 marks a dynamic dimension.
    pub dims: Vec<i64>,
}

#[napi(object)]
pub struct ModelInfo {
    /// SHA-256 of the model bytes: identity and version.
    pub id: String,
    pub bytes: i64,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    /// The execution provider that serves this model.
    pub provider: String,
    /// Why requested providers ahead of it were not used.
    pub fallback_reasons: Vec<String>,
    pub batchable: bool,
}

pub fn model_info(m: inf::ModelInfo) -> ModelInfo {
    let t = |v: Vec<inf::TensorInfo>| v.into_iter().map(|i| TensorInfo { name: i.name, r#type: i.dtype, dims: i.shape }).collect();
    ModelInfo {
        id: m.id,
        bytes: m.bytes as i64,
        inputs: t(m.inputs),
        outputs: t(m.outputs),
        provider: m.provider.name().into(),
        fallback_reasons: m.fallback_reasons,
        batchable: m.batchable,
    }
}

// The packed form of tensors crossing the boundary: one string describing them
// (`name:type:d0,d1:bytes;...`, dims empty for a scalar) and one byte buffer holding their data
// back to back, each starting at a multiple of 8 bytes. Two napi values instead of four per
// tensor, and the synchronous path hands the JS bytes to ONNX Runtime without copying them.
/// One packed tensor: name, type, shape and where its bytes are in the buffer.
pub type PackedInput = (String, ElementType, Vec<i64>, std::ops::Range<usize>);

/// Owned copies of packed inputs, for calls that outlive the JS buffer (the thread pool).
pub fn unpack_owned(spec: &str, data: &[u8]) -> Result<Vec<(String, Tensor)>> {
    Ok(parse_packed(spec, data.len())?.into_iter().map(|(name, dtype, shape, range)| (name, Tensor { dtype, shape, data: data[range].to_vec() })).collect())
}

pub fn parse_packed(spec: &str, data_len: usize) -> Result<Vec<PackedInput>> {
    let bad = |why: &str| napi::Error::new(Status::InvalidArg, format!("[E_INVALID_ARGUMENT] malformed packed inputs: {why}"));
    let mut out = Vec::new();
    let mut offset = 0usize;
    for part in spec.split(';').filter(|p| !p.is_empty()) {
        let mut fields = part.splitn(4, ':');
        let (Some(name), Some(ty), Some(dims), Some(bytes)) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
            return Err(bad("field count"));
        };
        let dtype = ElementType::parse(ty).map_err(inf_err)?;
        let shape = dims.split(',').filter(|d| !d.is_empty()).map(|d| d.parse::<i64>().map_err(|_| bad("dimension"))).collect::<Result<Vec<_>>>()?;
        // The actual byte length: a mismatch with the shape is reported by the engine's
        // validation (E_BAD_INPUT_SHAPE), like on every other path.
        let len: usize = bytes.parse().map_err(|_| bad("byte length"))?;
        let end = offset.checked_add(len).filter(|e| *e <= data_len).ok_or_else(|| bad("data shorter than declared"))?;
        out.push((name.to_string(), dtype, shape, offset..end));
        offset = end.div_ceil(8) * 8;
    }
    Ok(out)
}

#[napi(object)]
pub struct PackedTensors {
    pub spec: String,
    pub data: Buffer,
}

pub fn pack_outputs(out: Vec<(String, Tensor)>) -> PackedTensors {
    let mut spec = String::new();
    let mut data = Vec::with_capacity(out.iter().map(|(_, t)| t.data.len().div_ceil(8) * 8).sum());
    for (name, t) in out {
        let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        spec.push_str(&format!("{name}:{}:{};", t.dtype.name(), dims.join(",")));
        data.extend_from_slice(&t.data);
        data.resize(data.len().div_ceil(8) * 8, 0);
    }
    PackedTensors { spec, data: data.into() }
}

pub struct InferTask {
    pub engine: Arc<InferenceEngine>,
    pub model: String,
    pub inputs: Vec<(String, Tensor)>,
}

impl Task for InferTask {
    type Output = Vec<(String, Tensor)>;
    type JsValue = PackedTensors;

    fn compute(&mut self) -> Result<Self::Output> {
        // This runs on a libuv thread, outside any napi callback: napi-rs does not catch a
        // panic here, and one unwinding out of the thread pool would abort Node.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.engine.run(&self.model, &self.inputs)))
            .map_err(|p| {
                let message =
                    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "unknown panic".into());
                napi::Error::new(Status::GenericFailure, format!("[E_INTERNAL] internal error (a lockstep bug; please report it): {message}"))
            })?
            .map_err(inf_err)
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(pack_outputs(output))
    }
}
