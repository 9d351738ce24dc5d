//! Model management and execution: load (bytes or path), identify by SHA-256, cache bounded
//! sessions (least recently used evicted), introspect, pick providers with CPU fallback, run.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::ValueType;
use sha2::{Digest as _, Sha256};

use super::error::InferenceError;
use super::library;
use super::tensor::{encode_strings, join_samples, pack_codes, shape_string, value_type_name, ElementType, Output, Tensor, TensorView};

/// Execution providers a model may ask for. CPU is always available and always last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Provider {
    /// NVIDIA CUDA.
    Cuda,
    /// NVIDIA TensorRT.
    TensorRt,
    /// DirectML (Windows only).
    DirectMl,
    /// Core ML (macOS only).
    CoreMl,
    /// ONNX Runtime's CPU provider: always available.
    Cpu,
}

impl Provider {
    /// The provider's lowercase name, e.g. `"cuda"`, as [`Provider::parse`] reads it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cuda => "cuda",
            Self::TensorRt => "tensorrt",
            Self::DirectMl => "directml",
            Self::CoreMl => "coreml",
            Self::Cpu => "cpu",
        }
    }

    /// The provider with this name, in any case (`cuda`, `tensorrt`, `directml`, `coreml`,
    /// `cpu`); `None` for any other name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "cuda" => Self::Cuda,
            "tensorrt" => Self::TensorRt,
            "directml" => Self::DirectMl,
            "coreml" => Self::CoreMl,
            "cpu" => Self::Cpu,
            _ => return None,
        })
    }

    fn dispatch(&self, deterministic: bool) -> Option<ort::ep::ExecutionProviderDispatch> {
        // error_on_failure: a provider that cannot be registered makes the session fail, so
        // we know it did not take effect and fall back explicitly, saying why.
        match self {
            // Deterministic: the convolution algorithm cuDNN's heuristic ranks first, not the
            // fastest one timed at the first run (which can differ from process to process, and
            // so can its rounding); not `Default` either, a fixed algorithm that cuDNN runs in a
            // slow fallback mode for some shapes (Silero VAD: 7x slower on an H200). And float32
            // matrix products in float32, not TensorFloat-32 (10-bit mantissas).
            Self::Cuda if deterministic => Some(
                ort::ep::CUDA::default().with_conv_algorithm_search(ort::ep::cuda::ConvAlgorithmSearch::Heuristic).with_tf32(false).build().error_on_failure(),
            ),
            Self::Cuda => Some(ort::ep::CUDA::default().build().error_on_failure()),
            Self::TensorRt => Some(ort::ep::TensorRT::default().build().error_on_failure()),
            #[cfg(windows)]
            Self::DirectMl => Some(ort::ep::DirectML::default().build().error_on_failure()),
            #[cfg(target_os = "macos")]
            Self::CoreMl => Some(ort::ep::CoreML::default().build().error_on_failure()),
            // Not on this platform: dispatch() = None below makes load() report the fallback.
            #[cfg(not(windows))]
            Self::DirectMl => None,
            #[cfg(not(target_os = "macos"))]
            Self::CoreMl => None,
            Self::Cpu => None,
        }
    }
}

/// How an [`InferenceEngine`] finds ONNX Runtime and keeps models. `default()`: 16 models of
/// at most 256 MiB, CPU only, deterministic, the library searched from the current directory.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Most models kept loaded; the least recently used is evicted beyond it.
    pub max_models: usize,
    /// Largest model accepted, bytes.
    pub max_model_bytes: usize,
    /// Providers to try, in order; CPU is always appended as the fallback.
    pub providers: Vec<Provider>,
    /// An explicit libonnxruntime path (else LOCKSTEP_ORT_LIBRARY, else the npm package).
    pub library_path: Option<PathBuf>,
    /// Directories from which to look for node_modules/onnxruntime-node.
    pub search_roots: Vec<PathBuf>,
    /// ONNX Runtime's deterministic-compute option (default on: bit-reproducible CPU results;
    /// off may pick faster kernels for some operators). Under CUDA it also turns off cuDNN's
    /// timed convolution-algorithm search and TensorFloat-32 matrix products.
    pub deterministic: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_models: 16,
            max_model_bytes: 256 << 20,
            providers: vec![Provider::Cpu],
            library_path: None,
            search_roots: std::env::current_dir().into_iter().collect(),
            deterministic: true,
        }
    }
}

/// One input or output of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name in the model.
    pub name: String,
    /// Its type in lower case: an element type's name (`float32`, `float16`, `string`...: one
    /// of [`ElementType::ALL`]) for a tensor, `sequence<float32>` for a sequence of tensors.
    pub dtype: String,
    /// -1 for a dynamic dimension (for a sequence: the shape of its tensors).
    pub shape: Vec<i64>,
}

/// What a loaded model is: its id, size, inputs, outputs and provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// SHA-256 of the model bytes (hex): the model's identity and version.
    pub id: String,
    /// Size of the model, bytes.
    pub bytes: usize,
    /// Its inputs, in the model's order.
    pub inputs: Vec<TensorInfo>,
    /// Its outputs, in the model's order.
    pub outputs: Vec<TensorInfo>,
    /// The provider that serves this model.
    pub provider: Provider,
    /// Why a requested provider ahead of it was not used.
    pub fallback_reasons: Vec<String>,
    /// Every input's and output's first dimension is dynamic: requests can be batched along it.
    pub batchable: bool,
}

struct LoadedModel {
    /// Replaced (never mutated in place) when the provider changes, so readers clone an Arc,
    /// not the names and shapes: `run` is on the hot path.
    info: Mutex<Arc<ModelInfo>>,
    session: Mutex<Session>,
    bytes: Arc<Vec<u8>>,
}

/// Loads ONNX models and runs them through ONNX Runtime. Models are identified by the SHA-256
/// of their bytes and kept in a bounded cache (least recently used evicted); each runs on the
/// first requested provider that works, else on CPU. Thread-safe: the embedder shares one with
/// its runtimes (`Runtime::set_inference_engine`).
pub struct InferenceEngine {
    options: EngineOptions,
    library: PathBuf,
    /// Loaded models and their last-use stamps (for LRU eviction).
    models: Mutex<BTreeMap<String, (Arc<LoadedModel>, u64)>>,
    clock: std::sync::atomic::AtomicU64,
}

/// What an input or output is, if lockstep passes it: a tensor of an element type it carries
/// (inputs and outputs), or a sequence of such tensors (outputs). Anything else is refused at
/// load (`E_UNSUPPORTED_TYPE`, naming it), so no model fails on its types after it ran.
fn outlet_info(o: &ort::value::Outlet, role: &'static str) -> Result<TensorInfo, InferenceError> {
    let refuse = || InferenceError::UnsupportedValue {
        role,
        name: o.name().to_string(),
        dtype: value_type_name(o.dtype()),
        verb: if role == "input" { "accept" } else { "return" },
    };
    let tensor = |t: &ValueType| match t {
        ValueType::Tensor { ty, shape, .. } => ElementType::from_ort(*ty).ok().map(|e| (e, shape.to_vec())),
        _ => None,
    };
    let (dtype, shape) = match o.dtype() {
        t @ ValueType::Tensor { .. } => tensor(t).map(|(e, shape)| (e.name().to_string(), shape)),
        ValueType::Sequence(inner) if role == "output" => tensor(inner).map(|(e, shape)| (format!("sequence<{}>", e.name()), shape)),
        _ => None,
    }
    .ok_or_else(refuse)?;
    Ok(TensorInfo { name: o.name().to_string(), dtype, shape })
}

/// Why a session could not be built: ONNX Runtime's message, and what it means when it names
/// a cause other than a malformed model.
struct BuildFailure {
    reason: String,
    cause: Option<Cause>,
}

/// A valid model this ONNX Runtime build cannot serve.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cause {
    /// An operator it has no kernel for (name and opset, or domain and name), or whose kernel
    /// refuses the node as the model uses it.
    Operator(String),
    /// An opset or IR version newer than it supports.
    Version,
}

impl From<String> for BuildFailure {
    fn from(reason: String) -> Self {
        Self { reason, cause: None }
    }
}

impl From<&str> for BuildFailure {
    fn from(reason: &str) -> Self {
        reason.to_string().into()
    }
}

impl std::fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// What ONNX Runtime's session-creation error means, from its message (its error codes do not
/// tell these apart: a missing kernel is NOT_IMPLEMENTED or FAIL depending on where it is found).
fn load_cause(message: &str) -> Option<Cause> {
    let after = |mark: &str| message.find(mark).map(|at| &message[at + mark.len()..]);
    let word = |s: &str| s.split([' ', '\'', '"']).next().unwrap_or("").trim().to_string();
    // The kernel registry has nothing for this node (operator, opset and types).
    if let Some(rest) = after("Could not find an implementation for ").or_else(|| after("Failed to find kernel for ")) {
        return Some(Cause::Operator(word(rest)));
    }
    // An operator of a domain this build does not register (training ops, custom-op libraries).
    if let Some(at) = message.find(" is not a registered function/op") {
        return Some(Cause::Operator(message[..at].rsplit(' ').next().unwrap_or("").to_string()));
    }
    // A kernel refused its node while the session was being initialized (an attribute value it
    // does not implement, a resource it cannot get): the model passed every ONNX check before.
    if message.contains("Exception during initialization") && message.contains("/core/providers/") {
        let kernel = after("onnxruntime::").map(|r| r.split("::").next().unwrap_or("").to_string()).unwrap_or_default();
        return Some(Cause::Operator(format!("(kernel {kernel}, as this node uses it)")));
    }
    if message.contains("Unsupported model IR version") || (message.contains("Opset ") && message.contains("is under development")) {
        return Some(Cause::Version);
    }
    None
}

/// A session configured for bit-reproducible CPU results: one intra-op and one inter-op
/// thread, sequential execution, ONNX Runtime's deterministic-compute option, no spinning.
fn build_session(bytes: &[u8], provider: Provider, deterministic: bool) -> Result<Session, BuildFailure> {
    let env = library::environment().ok_or("ONNX Runtime is not loaded")?;
    let s = |e: ort::Error<ort::session::builder::SessionBuilder>| BuildFailure::from(e.to_string());
    let mut b = Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_intra_threads(1)
        .map_err(s)?
        .with_inter_threads(1)
        .map_err(s)?
        .with_parallel_execution(false)
        .map_err(s)?
        .with_deterministic_compute(deterministic)
        .map_err(s)?
        .with_intra_op_spinning(false)
        .map_err(s)?
        .with_inter_op_spinning(false)
        .map_err(s)?;
    match provider.dispatch(deterministic) {
        Some(ep) => b = b.with_execution_providers([ep]).map_err(s)?,
        None if provider != Provider::Cpu => return Err(format!("{} is not available on this platform", provider.name()).into()),
        None => {}
    }
    b.commit_from_memory(bytes).map_err(|e| BuildFailure { cause: load_cause(e.message()), reason: e.to_string() })
}

impl InferenceEngine {
    /// Loads libonnxruntime (once per process: `E_ORT_NOT_FOUND` or `E_ORT_LOAD` if it cannot)
    /// and creates an engine with no models.
    pub fn new(options: EngineOptions) -> Result<Self, InferenceError> {
        let library = library::ensure_loaded(options.library_path.as_deref(), &options.search_roots)?;
        Ok(Self { options, library, models: Mutex::new(BTreeMap::new()), clock: Default::default() })
    }

    /// The libonnxruntime this process uses.
    pub fn library_path(&self) -> &Path {
        &self.library
    }

    /// Loads a model (the same bytes load once) and returns its description.
    pub fn load(&self, bytes: Vec<u8>) -> Result<ModelInfo, InferenceError> {
        if bytes.len() > self.options.max_model_bytes {
            return Err(InferenceError::ModelTooLarge { bytes: bytes.len(), max: self.options.max_model_bytes });
        }
        let id = crate::security::hex(&Sha256::digest(&bytes));
        if let Ok(m) = self.get(&id) {
            return Ok((**m.info.lock().unwrap_or_else(|p| p.into_inner())).clone());
        }
        let mut reasons = Vec::new();
        let mut chosen = None;
        for provider in self.options.providers.iter().copied().filter(|p| *p != Provider::Cpu).chain([Provider::Cpu]) {
            match build_session(&bytes, provider, self.options.deterministic) {
                Ok(session) => {
                    chosen = Some((provider, session));
                    break;
                }
                Err(BuildFailure { reason, cause: Some(Cause::Operator(op)) }) if provider == Provider::Cpu => {
                    return Err(InferenceError::UnsupportedOperator { op, reason });
                }
                Err(BuildFailure { reason, cause: Some(Cause::Version) }) if provider == Provider::Cpu => {
                    return Err(InferenceError::UnsupportedVersion { reason });
                }
                Err(BuildFailure { reason, .. }) if provider == Provider::Cpu => return Err(InferenceError::InvalidModel { reason }),
                Err(reason) => {
                    tracing::warn!(target: "lockstep::inference", "{} unavailable, falling back: {reason}", provider.name());
                    reasons.push(format!("{}: {reason}", provider.name()));
                }
            }
        }
        let Some((provider, mut session)) = chosen else {
            return Err(InferenceError::InvalidModel { reason: "no provider could load it".into() });
        };
        let inputs: Vec<TensorInfo> = session.inputs().iter().map(|o| outlet_info(o, "input")).collect::<Result<_, _>>()?;
        let outputs: Vec<TensorInfo> = session.outputs().iter().map(|o| outlet_info(o, "output")).collect::<Result<_, _>>()?;
        // Outputs too: a model whose outputs are not sample-major (Transpose, a reduction over
        // the batch) would hand each agent a slice holding other agents' data when batched.
        let mut batchable = !inputs.is_empty()
            && !outputs.is_empty()
            && outputs.iter().all(|o| ElementType::parse(&o.dtype).is_ok())
            && inputs.iter().chain(&outputs).all(|i| i.shape.first().is_some_and(|d| *d < 0));
        // The shapes cannot say whether row i of the output depends only on row i of the input
        // (X - ReduceMean(X, axes=[0]) passes every shape check): try it once, and batch only
        // when two samples run together give what each gives alone.
        if batchable {
            if let Err(why) = rows_are_independent(&mut session, &inputs) {
                tracing::warn!(target: "lockstep::inference", "model {id}: agents' requests will not be batched: {why}");
                batchable = false;
            }
        }
        let info = ModelInfo { id: id.clone(), bytes: bytes.len(), inputs, outputs, provider, fallback_reasons: reasons, batchable };
        let model = Arc::new(LoadedModel { info: Mutex::new(Arc::new(info.clone())), session: Mutex::new(session), bytes: Arc::new(bytes) });
        let stamp = self.tick();
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        models.insert(id, (model, stamp));
        while models.len() > self.options.max_models.max(1) {
            let Some(oldest) = models.iter().min_by_key(|(_, (_, s))| *s).map(|(k, _)| k.clone()) else { break };
            models.remove(&oldest);
        }
        Ok(info)
    }

    /// A use stamp for LRU eviction.
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    fn get(&self, id: &str) -> Result<Arc<LoadedModel>, InferenceError> {
        let stamp = self.tick();
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let entry = models.get_mut(id).ok_or_else(|| InferenceError::UnknownModel { id: id.to_string() })?;
        entry.1 = stamp;
        Ok(entry.0.clone())
    }

    /// Drops a model from the cache; whether it was loaded.
    pub fn unload(&self, id: &str) -> bool {
        self.models.lock().unwrap_or_else(|p| p.into_inner()).remove(id).is_some()
    }

    /// Every loaded model, in id order.
    pub fn list(&self) -> Vec<ModelInfo> {
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        models.values().map(|(m, _)| (**m.info.lock().unwrap_or_else(|p| p.into_inner())).clone()).collect()
    }

    /// A loaded model's description (a use, for eviction); `E_UNKNOWN_MODEL` if it is not loaded.
    pub fn info(&self, id: &str) -> Result<ModelInfo, InferenceError> {
        Ok((*self.info_shared(id)?).clone())
    }

    /// The model's description without copying it.
    pub fn info_shared(&self, id: &str) -> Result<Arc<ModelInfo>, InferenceError> {
        Ok(self.get(id)?.info.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// The bytes a loaded model was loaded from (the language-model service reads its graph's
    /// operators to find its KV-cache layout).
    pub(crate) fn model_bytes(&self, id: &str) -> Result<Arc<Vec<u8>>, InferenceError> {
        Ok(self.get(id)?.bytes.clone())
    }

    /// Runs `f` with the model's session, locked, and its description: the language-model
    /// service (`lm`) feeds its KV cache straight back to ONNX Runtime through it.
    pub(crate) fn with_session<R>(&self, id: &str, f: impl FnOnce(&mut Session, &ModelInfo) -> R) -> Result<R, InferenceError> {
        let model = self.get(id)?;
        // The session first, then its description (the order `run` takes them in when it moves
        // a model to CPU): the description is then the session's own, never one about to change.
        let mut session = model.session.lock().unwrap_or_else(|p| p.into_inner());
        let info = model.info.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(f(&mut session, &info))
    }

    /// Checks names, element types, ranks and fixed dimensions before ONNX Runtime sees them.
    fn validate(info: &ModelInfo, inputs: &[(&str, TensorView<'_>)]) -> Result<(), InferenceError> {
        let names = || info.inputs.iter().map(|i| format!("{} {}{}", i.name, i.dtype, shape_string(&i.shape))).collect::<Vec<_>>().join(", ");
        for (name, t) in inputs {
            let Some(spec) = info.inputs.iter().find(|i| i.name == *name) else {
                return Err(InferenceError::UnknownInput { name: name.to_string(), expected: names() });
            };
            if spec.dtype != t.dtype.name() {
                return Err(InferenceError::WrongType { name: name.to_string(), expected: spec.dtype.clone(), got: t.dtype.name().to_string() });
            }
            let fits = spec.shape.len() == t.shape.len() && spec.shape.iter().zip(t.shape).all(|(s, g)| *s < 0 || s == g);
            if !fits {
                return Err(InferenceError::WrongShape { name: name.to_string(), expected: shape_string(&spec.shape), got: shape_string(t.shape) });
            }
            t.check_length(name)?;
        }
        if let Some(missing) = info.inputs.iter().find(|i| !inputs.iter().any(|(n, _)| *n == i.name)) {
            return Err(InferenceError::MissingInput { name: missing.name.clone(), expected: names() });
        }
        Ok(())
    }

    /// Runs a model whose outputs are all tensors (`E_UNSUPPORTED_TYPE`, before running, for
    /// a model with a sequence output: use [`run_outputs`](Self::run_outputs)). A failure on a
    /// GPU provider is retried once on CPU (and the model then stays on CPU, which
    /// `info().provider` reports).
    pub fn run(&self, id: &str, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, InferenceError> {
        let views: Vec<(&str, TensorView<'_>)> = inputs.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
        self.run_views(id, &views)
    }

    /// Like `run`, on borrowed inputs: aligned data goes to ONNX Runtime without a copy.
    pub fn run_views(&self, id: &str, inputs: &[(&str, TensorView<'_>)]) -> Result<Vec<(String, Tensor)>, InferenceError> {
        let model = self.get(id)?;
        let info = model.info.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(o) = info.outputs.iter().find(|o| ElementType::parse(&o.dtype).is_err()) {
            return Err(InferenceError::UnsupportedValue {
                role: "output",
                name: o.name.clone(),
                dtype: o.dtype.clone(),
                verb: "return from run() (use run_outputs())",
            });
        }
        let outputs = self.run_model(&model, &info, inputs)?;
        Ok(outputs.into_iter().filter_map(|(n, o)| o.into_tensor().map(|t| (n, t))).collect())
    }

    /// Runs any model: its outputs as tensors or sequences of tensors.
    pub fn run_outputs(&self, id: &str, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Output)>, InferenceError> {
        let views: Vec<(&str, TensorView<'_>)> = inputs.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
        self.run_output_views(id, &views)
    }

    /// Like `run_outputs`, on borrowed inputs.
    pub fn run_output_views(&self, id: &str, inputs: &[(&str, TensorView<'_>)]) -> Result<Vec<(String, Output)>, InferenceError> {
        let model = self.get(id)?;
        let info = model.info.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.run_model(&model, &info, inputs)
    }

    fn run_model(&self, model: &LoadedModel, info: &ModelInfo, inputs: &[(&str, TensorView<'_>)]) -> Result<Vec<(String, Output)>, InferenceError> {
        Self::validate(info, inputs)?;
        let values = inputs.iter().map(|(n, t)| t.to_ort().map(|v| (Cow::Borrowed(*n), v))).collect::<Result<Vec<_>, _>>()?;
        let mut session = model.session.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = run_session(&mut session, values);
        match outcome {
            Ok(out) => Ok(out),
            Err(reason) if info.provider != Provider::Cpu => {
                let cpu = build_session(&model.bytes, Provider::Cpu, self.options.deterministic).map_err(|r| InferenceError::Run { reason: r.reason })?;
                *session = cpu;
                let mut shared = model.info.lock().unwrap_or_else(|p| p.into_inner());
                let mut i = (**shared).clone();
                let failed = i.provider.name();
                i.fallback_reasons.push(format!("{failed} failed at run time: {reason}"));
                i.provider = Provider::Cpu;
                *shared = Arc::new(i);
                drop(shared);
                let values = inputs.iter().map(|(n, t)| t.to_ort().map(|v| (Cow::Borrowed(*n), v))).collect::<Result<Vec<_>, _>>()?;
                run_session(&mut session, values).map_err(|reason| InferenceError::Run { reason })
            }
            Err(reason) => Err(InferenceError::Run { reason }),
        }
    }
}

/// A probe sample for one input: deterministic values that are valid for most models (floats
/// in [-1, 1], small non-negative integers, alternating booleans, the strings "0" and "1"),
/// different for `sample`.
fn probe_sample(dtype: ElementType, elements: usize, sample: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (sample.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    if dtype == ElementType::String {
        return encode_strings((0..elements).map(|_| if next() % 2 == 0 { "0" } else { "1" }));
    }
    let mut out = Vec::with_capacity(dtype.byte_len(elements).unwrap_or(0));
    let mut codes = Vec::new();
    for _ in 0..elements {
        let r = next();
        let unit = (r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        let bit = r % 2;
        match dtype {
            ElementType::F32 => out.extend_from_slice(&(unit as f32).to_le_bytes()),
            ElementType::F64 => out.extend_from_slice(&unit.to_le_bytes()),
            ElementType::F16 => out.extend_from_slice(&half::f16::from_f64(unit).to_le_bytes()),
            ElementType::BF16 => out.extend_from_slice(&half::bf16::from_f64(unit).to_le_bytes()),
            ElementType::I32 | ElementType::U32 => out.extend_from_slice(&(bit as u32).to_le_bytes()),
            ElementType::I64 | ElementType::U64 => out.extend_from_slice(&bit.to_le_bytes()),
            ElementType::I16 | ElementType::U16 => out.extend_from_slice(&(bit as u16).to_le_bytes()),
            t if t.is_sub_byte() => codes.push(bit as u8),
            // One-byte types: integers, bool, float8 (0 and the smallest subnormal).
            _ => out.push(bit as u8),
        }
    }
    if let Some(bits) = dtype.bits().filter(|_| dtype.is_sub_byte()) {
        return pack_codes(&codes, bits);
    }
    out
}

/// Whether two outputs of a probe agree: bytes, or floats within a relative `1e-4` (`1e-9` for
/// float64, `1e-2` for the 16-bit floats).
fn probe_outputs_agree(dtype: ElementType, a: &[u8], b: &[u8]) -> bool {
    fn close<const N: usize>(a: &[u8], b: &[u8], decode: impl Fn([u8; N]) -> f64, tolerance: f64) -> bool {
        a.len() == b.len()
            && a.chunks_exact(N).zip(b.chunks_exact(N)).all(|(x, y)| {
                let (x, y) = (decode(x.try_into().unwrap_or([0; N])), decode(y.try_into().unwrap_or([0; N])));
                x == y || (x - y).abs() <= tolerance * x.abs().max(y.abs()).max(1e-6)
            })
    }
    match dtype {
        ElementType::F32 => close::<4>(a, b, |x| f32::from_le_bytes(x) as f64, 1e-4),
        ElementType::F64 => close::<8>(a, b, f64::from_le_bytes, 1e-9),
        ElementType::F16 => close::<2>(a, b, |x| half::f16::from_le_bytes(x).to_f64(), 1e-2),
        ElementType::BF16 => close::<2>(a, b, |x| half::bf16::from_le_bytes(x).to_f64(), 1e-2),
        _ => a == b,
    }
}

/// Whether each output row depends only on its own input row: runs two probe samples as one
/// batch of two and each alone, and compares (floats to a relative 1e-4: kernels may sum in
/// another order for a batch of two). Any failure to tell is a reason not to batch.
fn rows_are_independent(session: &mut Session, inputs: &[TensorInfo]) -> Result<(), String> {
    let mut per_sample = Vec::new();
    for i in inputs {
        let dtype = ElementType::parse(&i.dtype).map_err(|e| e.to_string())?;
        let rest = i.shape.get(1..).unwrap_or_default();
        if rest.iter().any(|d| *d < 0) {
            return Err(format!("input {} has a dynamic dimension after the batch one", i.name));
        }
        let elements = rest.iter().product::<i64>().max(0) as usize;
        if elements > 1 << 20 {
            return Err(format!("input {} is too large to probe", i.name));
        }
        per_sample.push((i.name.clone(), dtype, rest.to_vec(), elements));
    }
    let run = |session: &mut Session, samples: &[u64]| -> Result<Vec<(String, Output)>, String> {
        let tensors: Vec<(String, Tensor)> = per_sample
            .iter()
            .enumerate()
            .map(|(k, (name, dtype, rest, elements))| {
                let mut shape = vec![samples.len() as i64];
                shape.extend_from_slice(rest);
                let parts: Vec<Vec<u8>> = samples.iter().map(|s| probe_sample(*dtype, *elements, s * 31 + k as u64)).collect();
                let data = join_samples(*dtype, *elements, parts.iter().map(|p| &p[..]));
                (name.clone(), Tensor { dtype: *dtype, shape, data })
            })
            .collect();
        let values =
            tensors.iter().map(|(n, t)| t.view().to_ort().map(|v| (Cow::Borrowed(n.as_str()), v))).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        run_session(session, values)
    };
    let both = run(session, &[1, 2]).map_err(|e| format!("probe run failed: {e}"))?;
    let first = run(session, &[1]).map_err(|e| format!("probe run failed: {e}"))?;
    let second = run(session, &[2]).map_err(|e| format!("probe run failed: {e}"))?;
    for (((name, b), (_, f)), (_, s)) in both.iter().zip(&first).zip(&second) {
        let (Some(b), Some(f), Some(s)) = (b.as_tensor(), f.as_tensor(), s.as_tensor()) else {
            return Err(format!("output {name} is not a tensor"));
        };
        let per = f.element_count();
        let joined = join_samples(b.dtype, per, [&f.data[..], &s.data[..]]);
        if !probe_outputs_agree(b.dtype, &b.data, &joined) {
            return Err(format!("output {name} of a batch of two differs from the two samples run alone: rows depend on each other"));
        }
    }
    Ok(())
}

/// Runs the session; input names are borrowed (no copy per call).
fn run_session(session: &mut Session, values: Vec<(Cow<'_, str>, ort::session::SessionInputValue<'_>)>) -> Result<Vec<(String, Output)>, String> {
    let outputs = session.run(values).map_err(|e| e.to_string())?;
    outputs.iter().map(|(name, v)| Output::from_ort(&v).map(|t| (name.to_string(), t)).map_err(|e| e.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::{load_cause, Cause};

    #[test]
    fn load_failures_name_their_cause() {
        // ONNX Runtime 1.30's own messages (tests/conformance.rs and tests/inference.rs load
        // such models).
        let op = |m: &str| load_cause(m);
        assert_eq!(op("Could not find an implementation for BitShift(11) node with name ''"), Some(Cause::Operator("BitShift(11)".into())));
        assert_eq!(
            op("Failed to find kernel for Cast(25) (node:'' ep:'CPUExecutionProvider'). Op with name () domain () and type (Cast) kernel is not supported"),
            Some(Cause::Operator("Cast(25)".into()))
        );
        assert_eq!(
            op("Fatal error: ai.onnx.preview.training:Adam(-1) is not a registered function/op"),
            Some(Cause::Operator("ai.onnx.preview.training:Adam(-1)".into()))
        );
        assert_eq!(
            op("Exception during initialization: /onnxruntime_src/onnxruntime/core/providers/cpu/rnn/deep_cpu_gru.h:56 onnxruntime::DeepCpuGruOp::DeepCpuGruOp(const onnxruntime::OpKernelInfo&) layout_ == 0 was false."),
            Some(Cause::Operator("(kernel DeepCpuGruOp, as this node uses it)".into()))
        );
        assert_eq!(
            op("ONNX Runtime only *guarantees* support for models stamped with official released onnx opset versions. Opset 30 is under development"),
            Some(Cause::Version)
        );
        assert_eq!(op("Unsupported model IR version: 14, max supported IR version: 13"), Some(Cause::Version));
        // Malformed models keep E_INVALID_MODEL.
        assert_eq!(op("Failed to load model because protobuf parsing failed."), None);
        assert_eq!(op("This is an invalid model. In Node, (\"\", FooBar, \"\", -1) : Error No Op registered for FooBar with domain_version of 21"), None);
        assert_eq!(op("Type Error: Type parameter (T) of Optype (Add) bound to different types"), None);
    }
}
