//! The inference part of the binding: model management on the runtime, and `infer` as an
//! async task on libuv's thread pool (or synchronously, for the lowest overhead).

use std::sync::{Arc, OnceLock};

use lockstep_core::inference::{ElementType, EngineOptions, InferenceEngine, ModelInfo as CoreModelInfo, Output as ModelOutput, Tensor};
use napi::bindgen_prelude::*;

use crate::convert::{ModelInfo, PackedTensors};
use crate::error::{internal, to_napi, to_status_error, BindError, Code, Result};

// The packed form of tensors crossing the boundary: one string describing them
// (`name:type:d0,d1:bytes;...`, dims empty for a scalar) and one byte buffer holding their data
// back to back, each starting at a multiple of 8 bytes. Two napi values instead of four per
// tensor, and the synchronous path hands the JS bytes to ONNX Runtime without copying them.
// Data is in the core's encoding (lockstep_core::inference::tensor: ONNX Runtime's bytes;
// strings as u32 length + UTF-8 per element). An output that is a sequence of N tensors is the
// entry `name:sequence:N:0;` followed by its N tensors' entries, with empty names.
/// One packed tensor: name, type, shape and where its bytes are in the buffer.
pub type PackedInput = (String, ElementType, Vec<i64>, std::ops::Range<usize>);

/// Owned copies of packed inputs, for calls that outlive the JS buffer (the thread pool).
pub fn unpack_owned(spec: &str, data: &[u8]) -> Result<Vec<(String, Tensor)>> {
    Ok(parse_packed(spec, data.len())?.into_iter().map(|(name, dtype, shape, range)| (name, Tensor { dtype, shape, data: data[range].to_vec() })).collect())
}

pub fn parse_packed(spec: &str, data_len: usize) -> Result<Vec<PackedInput>> {
    let bad = |why: &str| to_napi(BindError { code: "E_INVALID_ARGUMENT", message: format!("malformed packed inputs: {why}") });
    let mut out = Vec::new();
    let mut offset = 0usize;
    for part in spec.split(';').filter(|p| !p.is_empty()) {
        let mut fields = part.splitn(4, ':');
        let (Some(name), Some(ty), Some(dims), Some(bytes)) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
            return Err(bad("field count"));
        };
        let dtype = ElementType::parse(ty).map_err(to_napi)?;
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

pub fn pack_outputs(out: Vec<(String, ModelOutput)>) -> PackedTensors {
    let tensors = || {
        out.iter().flat_map(|(_, o)| match o {
            ModelOutput::Tensor(t) => std::slice::from_ref(t),
            ModelOutput::Sequence(ts) => &ts[..],
        })
    };
    let mut spec = String::new();
    let mut data = Vec::with_capacity(tensors().map(|t| t.data.len().div_ceil(8) * 8).sum());
    let mut push = |spec: &mut String, name: &str, t: &Tensor| {
        let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        spec.push_str(&format!("{name}:{}:{}:{};", t.dtype.name(), dims.join(","), t.data.len()));
        data.extend_from_slice(&t.data);
        data.resize(data.len().div_ceil(8) * 8, 0);
    };
    for (name, o) in &out {
        match o {
            ModelOutput::Tensor(t) => push(&mut spec, name, t),
            ModelOutput::Sequence(ts) => {
                spec.push_str(&format!("{name}:sequence:{}:0;", ts.len()));
                for t in ts {
                    push(&mut spec, "", t);
                }
            }
        }
    }
    PackedTensors { spec, data: data.into() }
}

pub struct InferTask {
    pub engine: Arc<InferenceEngine>,
    pub model: String,
    pub inputs: Vec<(String, Tensor)>,
}

impl Task for InferTask {
    /// The outputs or the error (with its code): `resolve` turns either into the settlement.
    type Output = std::result::Result<Vec<(String, ModelOutput)>, napi::Error<Code>>;
    type JsValue = PackedTensors;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        // This runs on a libuv thread, outside any napi callback: napi-rs does not catch a
        // panic here, and one unwinding out of the thread pool would abort Node.
        Ok(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.engine.run_outputs(&self.model, &self.inputs)))
            .map_err(internal)
            .and_then(|r| r.map_err(to_napi)))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map(pack_outputs).map_err(|e| to_status_error(&env, e))
    }
}

/// `loadModelAsync`: creates the runtime's engine if it has none yet (loading ONNX Runtime),
/// then loads the model, on libuv's thread pool.
pub struct LoadModelTask {
    pub engine: Arc<OnceLock<Arc<InferenceEngine>>>,
    pub options: EngineOptions,
    pub bytes: Vec<u8>,
}

impl LoadModelTask {
    fn run(&mut self) -> std::result::Result<CoreModelInfo, napi::Error<Code>> {
        let engine = match self.engine.get() {
            Some(e) => e.clone(),
            None => {
                let created = Arc::new(InferenceEngine::new(self.options.clone()).map_err(to_napi)?);
                self.engine.get_or_init(|| created).clone()
            }
        };
        engine.load(std::mem::take(&mut self.bytes)).map_err(to_napi)
    }
}

impl Task for LoadModelTask {
    type Output = std::result::Result<CoreModelInfo, napi::Error<Code>>;
    type JsValue = ModelInfo;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        // On a libuv thread: a panic is caught here (it would abort Node).
        Ok(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run())).map_err(internal).and_then(|r| r))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map(ModelInfo::from).map_err(|e| to_status_error(&env, e))
    }
}
