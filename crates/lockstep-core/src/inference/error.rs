//! Typed inference errors: what went wrong and what to do.

/// Why loading ONNX Runtime, loading a model or running one failed; [`InferenceError::code`]
/// is its `E_...` code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    /// `E_ORT_NOT_FOUND`: no libonnxruntime was found.
    #[error("no ONNX Runtime library found (tried: {tried}). Install the npm package onnxruntime-node (a dependency of lockstep), or set LOCKSTEP_ORT_LIBRARY to your libonnxruntime")]
    LibraryNotFound {
        /// The paths tried (the first few), comma-separated.
        tried: String,
    },
    /// `E_ORT_LOAD`: libonnxruntime was found but could not be loaded (it must be 1.30 or newer).
    #[error("could not load ONNX Runtime from {path}: {reason}. It must be ONNX Runtime 1.30 or newer for this build")]
    LibraryLoad {
        /// The library's path.
        path: String,
        /// The loader's error.
        reason: String,
    },
    /// `E_UNKNOWN_MODEL`: no model with this id is loaded (never loaded, unloaded, or evicted).
    #[error("no model {id} is loaded; load it with loadModel() first (ids are SHA-256 hashes of the model bytes)")]
    UnknownModel {
        /// The id asked for.
        id: String,
    },
    /// `E_MODEL_TOO_LARGE`: the model is over `EngineOptions::max_model_bytes`.
    #[error("the model is {bytes} bytes; the limit is {max} bytes (option maxModelBytes)")]
    ModelTooLarge {
        /// Its size, bytes.
        bytes: usize,
        /// The limit, bytes.
        max: usize,
    },
    /// `E_INVALID_MODEL`: ONNX Runtime could not load the model, on any provider: the bytes
    /// are not an ONNX model, or the model is malformed.
    #[error("not a valid ONNX model: {reason}")]
    InvalidModel {
        /// ONNX Runtime's error.
        reason: String,
    },
    /// `E_MODEL_UNSUPPORTED_OPERATOR`: the model is valid ONNX, but this ONNX Runtime build has
    /// no implementation of one of its operators (for its opset and types), on any provider
    /// tried.
    #[error("the model is valid ONNX, but this ONNX Runtime build cannot run its operator {op} (export it with another opset, types or attributes, or use an ONNX Runtime build that implements it): {reason}")]
    UnsupportedOperator {
        /// The operator, as ONNX Runtime names it, e.g. `ConvInteger(10)` (name and opset).
        op: String,
        /// ONNX Runtime's error.
        reason: String,
    },
    /// `E_MODEL_UNSUPPORTED_VERSION`: the model is stamped with an opset or IR version newer
    /// than this ONNX Runtime build supports.
    #[error("the model needs a newer ONNX Runtime than this one: re-export it for an older opset or IR version, or use a newer ONNX Runtime through inference.ortLibraryPath: {reason}")]
    UnsupportedVersion {
        /// ONNX Runtime's error.
        reason: String,
    },
    /// `E_UNSUPPORTED_TYPE`: a model input or output is of a kind lockstep does not pass: an
    /// input that is not a tensor, an optional or map output, complex numbers. Refused at load,
    /// never after the model ran.
    #[error("model {role} `{name}` is {dtype}, which lockstep does not {verb}; lockstep passes tensors of every other element type in and out, and returns sequences of tensors as arrays (docs/INFERENCE.md)")]
    UnsupportedValue {
        /// `input` or `output`.
        role: &'static str,
        /// The input's or output's name.
        name: String,
        /// Its type, e.g. `optional<float32>`, `map<int64,float32>`, `complex64`.
        dtype: String,
        /// `accept` or `return`.
        verb: &'static str,
    },
    /// `E_BAD_INPUT_NAME`: a model input was not given.
    #[error("model input `{name}` was not given; the model needs: {expected}")]
    MissingInput {
        /// The missing input.
        name: String,
        /// Every input the model takes, with its type and shape.
        expected: String,
    },
    /// `E_BAD_INPUT_NAME`: an input the model does not have was given.
    #[error("the model has no input `{name}`; its inputs are: {expected}")]
    UnknownInput {
        /// The name given.
        name: String,
        /// Every input the model takes, with its type and shape.
        expected: String,
    },
    /// `E_BAD_INPUT_TYPE`: an input's element type is not the model's.
    #[error("input `{name}` must be {expected}, got {got}")]
    WrongType {
        /// The input.
        name: String,
        /// The model's element type, e.g. `float32`.
        expected: String,
        /// The element type given.
        got: String,
    },
    /// `E_BAD_INPUT_SHAPE`: an input's rank or a fixed dimension is not the model's.
    #[error("input `{name}` must have shape {expected}, got {got}")]
    WrongShape {
        /// The input.
        name: String,
        /// The model's shape, `?` for a dynamic dimension.
        expected: String,
        /// The shape given.
        got: String,
    },
    /// `E_BAD_INPUT_SHAPE`: an input's data is not the length its shape and element type need
    /// (or a dimension is negative).
    #[error("input `{name}` has {got} bytes of data, but shape {shape} of {dtype} needs {expected}")]
    DataLength {
        /// The input.
        name: String,
        /// Its shape.
        shape: String,
        /// Its element type.
        dtype: String,
        /// Bytes the shape and element type need.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// `E_UNSUPPORTED_TYPE`: an element type that is not one of
    /// [`ElementType::ALL`](crate::inference::ElementType::ALL)'s names.
    #[error("element type {dtype} is not supported; use one of float32, float64, int32, int64, uint8, int8, bool, float16, bfloat16, uint16, int16, uint32, uint64, string, float8e4m3fn, float8e4m3fnuz, float8e5m2, float8e5m2fnuz, float8e8m0, uint4, int4, float4e2m1, uint2, int2")]
    UnsupportedType {
        /// The type's name.
        dtype: String,
    },
    /// `E_BAD_INPUT_VALUE`: an input's data cannot be a tensor of its type: string data that is
    /// malformed, not UTF-8 or holds a NUL character (ONNX Runtime's strings are C strings).
    #[error("input `{name}`: {reason}")]
    BadValue {
        /// The input.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// `E_NOT_A_LANGUAGE_MODEL`: the model is not a decoder in the layout `loadLanguageModel`
    /// takes (Optimum / onnxruntime-genai: `input_ids`, `attention_mask`, `position_ids`,
    /// `past_key_values.N.key/value` in; `logits`, `present.N.key/value` out), or its options
    /// do not fit it.
    #[error("not a language model lockstep can run: {reason} (docs/INFERENCE.md, \"Language models\")")]
    NotALanguageModel {
        /// What is missing or wrong.
        reason: String,
    },
    /// `E_BAD_PROMPT`: a generation request that cannot run: no prompt tokens, a prompt longer
    /// than the context, a token outside the vocabulary, bad sampling options.
    #[error("cannot generate: {reason}")]
    BadPrompt {
        /// Why.
        reason: String,
    },
    /// `E_QUEUE_FULL`: too many generations wait for a place in the batch.
    #[error("{max} generations are already waiting for this language model; wait for some to finish")]
    GenerateQueueFull {
        /// The limit (`GeneratorLimits::max_queued`).
        max: usize,
    },
    /// `E_INFERENCE`: ONNX Runtime failed to run the model (or to take a tensor).
    #[error("inference failed: {reason}")]
    Run {
        /// ONNX Runtime's error.
        reason: String,
    },
}

impl InferenceError {
    /// Stable machine-readable code, shown to JS as `error.code` (some variants share one).
    pub fn code(&self) -> &'static str {
        match self {
            Self::LibraryNotFound { .. } => "E_ORT_NOT_FOUND",
            Self::LibraryLoad { .. } => "E_ORT_LOAD",
            Self::UnknownModel { .. } => "E_UNKNOWN_MODEL",
            Self::ModelTooLarge { .. } => "E_MODEL_TOO_LARGE",
            Self::InvalidModel { .. } => "E_INVALID_MODEL",
            Self::UnsupportedOperator { .. } => "E_MODEL_UNSUPPORTED_OPERATOR",
            Self::UnsupportedVersion { .. } => "E_MODEL_UNSUPPORTED_VERSION",
            Self::MissingInput { .. } | Self::UnknownInput { .. } => "E_BAD_INPUT_NAME",
            Self::WrongType { .. } => "E_BAD_INPUT_TYPE",
            Self::WrongShape { .. } | Self::DataLength { .. } => "E_BAD_INPUT_SHAPE",
            Self::UnsupportedType { .. } | Self::UnsupportedValue { .. } => "E_UNSUPPORTED_TYPE",
            Self::BadValue { .. } => "E_BAD_INPUT_VALUE",
            Self::Run { .. } => "E_INFERENCE",
            Self::NotALanguageModel { .. } => "E_NOT_A_LANGUAGE_MODEL",
            Self::BadPrompt { .. } => "E_BAD_PROMPT",
            Self::GenerateQueueFull { .. } => "E_QUEUE_FULL",
        }
    }
}
