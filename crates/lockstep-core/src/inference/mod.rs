//! Inference: agents and the embedder run ONNX models through ONNX Runtime (`ort`, loaded
//! dynamically from the library the `onnxruntime-node` npm package ships, or a user's own).
//!
//! Data flow: `library` finds and loads libonnxruntime once per process → `engine` compiles
//! model bytes into sessions (cached by SHA-256, bounded), picks execution providers with CPU
//! fallback, and runs `tensor::Tensor`s through them.

pub(crate) mod agents;
mod engine;
mod error;
mod library;
pub mod lm;
mod tensor;

pub use engine::{EngineOptions, InferenceEngine, ModelInfo, Provider, TensorInfo};
pub use error::InferenceError;
pub use tensor::{encode_strings, ElementType, Output, Tensor, TensorView};
