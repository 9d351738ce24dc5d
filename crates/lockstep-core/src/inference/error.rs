//! Typed inference errors: what went wrong and what to do.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    #[error("no ONNX Runtime library found (tried: {tried}). Install the npm package onnxruntime-node (a dependency of lockstep), or set LOCKSTEP_ORT_LIBRARY to your libonnxruntime")]
    LibraryNotFound { tried: String },
    #[error("could not load ONNX Runtime from {path}: {reason}. It must be ONNX Runtime 1.30 or newer for this build")]
    LibraryLoad { path: String, reason: String },
    #[error("no model {id} is loaded; load it with loadModel() first (ids are SHA-256 hashes of the model bytes)")]
    UnknownModel { id: String },
    #[error("the model is {bytes} bytes; the limit is {max} bytes (option maxModelBytes)")]
    ModelTooLarge { bytes: usize, max: usize },
    #[error("not a valid ONNX model: {reason}")]
    InvalidModel { reason: String },
    #[error("model input `{name}` was not given; the model needs: {expected}")]
    MissingInput { name: String, expected: String },
    #[error("the model has no input `{name}`; its inputs are: {expected}")]
    UnknownInput { name: String, expected: String },
    #[error("input `{name}` must be {expected}, got {got}")]
    WrongType { name: String, expected: String, got: String },
    #[error("input `{name}` must have shape {expected}, got {got}")]
    WrongShape { name: String, expected: String, got: String },
    #[error("input `{name}` has {got} bytes of data, but shape {shape} of {dtype} needs {expected}")]
    DataLength { name: String, shape: String, dtype: String, expected: usize, got: usize },
    #[error("element type {dtype} is not supported here; use float32, float64, int32, int64, uint8, int8 or bool")]
    UnsupportedType { dtype: String },
    #[error("inference failed: {reason}")]
    Run { reason: String },
}

impl InferenceError {
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
