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
    let mut spec = String::new();
    let mut data = vec![0; write_spec(&out, &mut spec)];
    copy_data(&out, &mut data);
    PackedTensors { spec, data: data.into() }
}

/// The tensors of the outputs, sequences flattened, in the packed order.
fn tensors(out: &[(String, ModelOutput)]) -> impl Iterator<Item = &Tensor> {
    out.iter().flat_map(|(_, o)| match o {
        ModelOutput::Tensor(t) => std::slice::from_ref(t),
        ModelOutput::Sequence(ts) => &ts[..],
    })
}

/// Writes the packed spec of `out` into `spec` (cleared first: a reused string allocates
/// nothing once it is long enough); returns the bytes the packed data takes.
pub fn write_spec(out: &[(String, ModelOutput)], spec: &mut String) -> usize {
    use std::fmt::Write as _;
    spec.clear();
    // Writing to a String cannot fail: the results are ignored.
    let push = |spec: &mut String, name: &str, t: &Tensor| {
        let _ = write!(spec, "{name}:{}:", t.dtype.name());
        for (i, d) in t.shape.iter().enumerate() {
            let _ = write!(spec, "{}{d}", if i == 0 { "" } else { "," });
        }
        let _ = write!(spec, ":{};", t.data.len());
    };
    for (name, o) in out {
        match o {
            ModelOutput::Tensor(t) => push(spec, name, t),
            ModelOutput::Sequence(ts) => {
                let _ = write!(spec, "{name}:sequence:{}:0;", ts.len());
                for t in ts {
                    push(spec, "", t);
                }
            }
        }
    }
    data_len(out)
}

/// The bytes the outputs' packed data takes (each tensor padded to a multiple of 8).
pub fn data_len(out: &[(String, ModelOutput)]) -> usize {
    tensors(out).map(|t| t.data.len().div_ceil(8) * 8).sum()
}

/// Copies the outputs' data into `data` (at least `write_spec`'s size), each tensor at a
/// multiple of 8 bytes, the padding zeroed.
pub fn copy_data(out: &[(String, ModelOutput)], data: &mut [u8]) {
    let mut at = 0;
    for t in tensors(out) {
        let end = at + t.data.len().div_ceil(8) * 8;
        let Some((bytes, pad)) = data.get_mut(at..end).and_then(|slot| slot.split_at_mut_checked(t.data.len())) else { return };
        bytes.copy_from_slice(&t.data);
        pad.fill(0);
        at = end;
    }
}

/// What `inferInto` keeps between calls: the spec of the last outputs returned (JS keeps its
/// parsed form, and is told only when it changes) and outputs too large for the caller's buffer.
#[derive(Default)]
pub struct OutputScratch {
    pub last_spec: String,
    pub pending: Vec<u8>,
    /// What `last_spec` describes, for comparing new outputs without writing their spec:
    /// per entry in packed order, its name, type (`None` for a sequence), shape (a sequence:
    /// its length) and byte length.
    pub layout: Vec<(String, Option<ElementType>, Vec<i64>, usize)>,
    /// The last packed inputs' spec, parsed: a caller that passes the same shapes again (the
    /// common case) is not parsed again.
    pub input_spec: String,
    pub inputs: Vec<PackedInput>,
    /// Whether `parse` has succeeded once (so `input_spec` and `inputs` describe a spec).
    pub parsed_once: bool,
    /// The model of the last `inferInto` call that named one.
    pub model: Option<String>,
}

impl OutputScratch {
    /// Whether `out` has the layout of the last outputs returned: then their spec is the same.
    pub fn same_layout(&self, out: &[(String, ModelOutput)]) -> bool {
        let mut entries = self.layout.iter();
        let mut same = |name: &str, dtype: Option<ElementType>, shape: &[i64], bytes: usize| {
            entries.next().is_some_and(|(n, d, s, b)| n == name && *d == dtype && s == shape && *b == bytes)
        };
        for (name, o) in out {
            let fits = match o {
                ModelOutput::Tensor(t) => same(name, Some(t.dtype), &t.shape, t.data.len()),
                ModelOutput::Sequence(ts) => same(name, None, &[ts.len() as i64], 0) && ts.iter().all(|t| same("", Some(t.dtype), &t.shape, t.data.len())),
            };
            if !fits {
                return false;
            }
        }
        entries.next().is_none()
    }

    /// Remembers `out`'s layout and writes its spec into `last_spec`.
    pub fn remember(&mut self, out: &[(String, ModelOutput)]) {
        self.layout.clear();
        for (name, o) in out {
            match o {
                ModelOutput::Tensor(t) => self.layout.push((name.clone(), Some(t.dtype), t.shape.clone(), t.data.len())),
                ModelOutput::Sequence(ts) => {
                    self.layout.push((name.clone(), None, vec![ts.len() as i64], 0));
                    self.layout.extend(ts.iter().map(|t| (String::new(), Some(t.dtype), t.shape.clone(), t.data.len())));
                }
            }
        }
        write_spec(out, &mut self.last_spec);
    }

    /// Parses `spec` for `data_len` bytes, unless it is the last spec (read with `parsed`).
    pub fn parse(&mut self, spec: &str, data_len: usize) -> Result<()> {
        // Ranges ascend: the last one ending inside the data means they all do (else parse
        // again, for parse_packed's error).
        let fits = self.inputs.last().is_none_or(|(_, _, _, r)| r.end <= data_len);
        if !(fits && self.input_spec == spec) {
            self.inputs = parse_packed(spec, data_len)?;
            self.input_spec.clear();
            self.input_spec.push_str(spec);
        }
        self.parsed_once = true;
        Ok(())
    }

    /// The inputs of the last `parse`, for a call that left the spec out: still checked
    /// against the data's length (it may be shorter than last time).
    pub fn parsed(&self, data_len: usize) -> Result<&[PackedInput]> {
        if !self.parsed_once {
            return Err(to_napi(BindError { code: "E_INVALID_ARGUMENT", message: "inferInto: no input spec given yet".into() }));
        }
        if self.inputs.last().is_some_and(|(_, _, _, r)| r.end > data_len) {
            return Err(to_napi(BindError { code: "E_INVALID_ARGUMENT", message: "malformed packed inputs: data shorter than declared".into() }));
        }
        Ok(&self.inputs)
    }
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
