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
    /// `E_INVALID_MODEL`: ONNX Runtime could not load the model, on any provider.
    #[error("not a valid ONNX model: {reason}")]
    InvalidModel {
        /// ONNX Runtime's error.
        reason: String,
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
    /// `E_UNSUPPORTED_TYPE`: an element type other than float32, float64, int32, int64, uint8,
    /// int8 or bool.
    #[error("element type {dtype} is not supported here; use float32, float64, int32, int64, uint8, int8 or bool")]
    UnsupportedType {
        /// The type's name.
        dtype: String,
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
            Self::MissingInput { .. } | Self::UnknownInput { .. } => "E_BAD_INPUT_NAME",
            Self::WrongType { .. } => "E_BAD_INPUT_TYPE",
            Self::WrongShape { .. } | Self::DataLength { .. } => "E_BAD_INPUT_SHAPE",
            Self::UnsupportedType { .. } => "E_UNSUPPORTED_TYPE",
            Self::Run { .. } => "E_INFERENCE",
        }
    }
}
