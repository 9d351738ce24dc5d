//! Language models: decoder-only ONNX models in the layout Hugging Face Optimum and
//! onnxruntime-genai export, generating on the host with a KV cache (docs/INFERENCE.md,
//! "Language models").
//!
//! - [`LanguageModel`]: a loaded model whose inputs and outputs were checked against the layout
//!   (`input_ids`, `attention_mask`, `position_ids` where present, `past_key_values.N.key/value`
//!   in; `logits`, `present.N.key/value` out), with its tokenizer and special tokens. Its
//!   [`KvLayout`] says how its cache grows: Optimum's concatenation (`present` = `past` + the
//!   new tokens, a new tensor each step) or, for a model whose attention is ONNX Runtime's
//!   `com.microsoft` GroupQueryAttention (onnxruntime-genai's export), one preallocated buffer
//!   bound as both `past_key_values.N.*` and `present.N.*` and written in place.
//! - [`Generator`] (`generator.rs`): the generation service. Sequences wait in a bounded queue,
//!   join the batch between decode steps (a batched prefill), decode together (one model call
//!   per step for every active sequence) and leave when they finish; the KV cache stays on the
//!   host, in ONNX Runtime's tensors: fed back to the next call without a copy (`Concat`), or
//!   bound as both the past and the present and written in place (`InPlace`).
//! - [`Sampler`] (`sampler.rs`): greedy, or temperature / top-k / top-p from a seeded stream.
//! - `agents.rs`: the `generate` import's request and the messages that carry tokens to agents.

pub mod agents;
mod generator;
mod kv;
mod onnx_graph;
mod sampler;

use std::sync::Arc;

pub use generator::{Finish, GenerateRequest, Generator, GeneratorLimits, GeneratorStats, Progress};
pub use kv::KvDevice;
pub use sampler::{Sampler, SamplingParams};

pub use crate::runtime::{AgentLmOptions, MAX_TOKENS_PER_TICK};

use super::{ElementType, InferenceEngine, InferenceError, ModelInfo};

/// How text becomes tokens and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    /// Token `i` < 256 is byte `i`; higher ids are special tokens with no text (the tiny test
    /// model's vocabulary, and byte-level models').
    Bytes,
    /// No tokenizer on the host: prompts are token ids, and tokens have no text here (the
    /// caller decodes them: JS can bring its own tokenizer).
    None,
}

impl Tokenizer {
    /// The tokenizer called `name` (`bytes`, `none`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "bytes" => Some(Self::Bytes),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// Its name, as `parse` reads it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bytes => "bytes",
            Self::None => "none",
        }
    }

    /// The tokens of `text`, or `None` when this tokenizer has no text form.
    pub fn encode(&self, text: &[u8]) -> Option<Vec<u32>> {
        match self {
            Self::Bytes => Some(text.iter().map(|b| *b as u32).collect()),
            Self::None => None,
        }
    }

    /// The bytes of one token (empty for special tokens, or without a text form).
    pub fn piece(&self, token: u32, out: &mut Vec<u8>) {
        if let (Self::Bytes, Ok(b)) = (self, u8::try_from(token)) {
            out.push(b);
        }
    }
}

/// How to use a language model: its tokenizer, special tokens and context limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmOptions {
    /// How prompts given as text are tokenized, and tokens turned back into text.
    pub tokenizer: Tokenizer,
    /// Token put before every prompt given as text (none: nothing is).
    pub bos: Option<u32>,
    /// Tokens that end a generation (not delivered).
    pub eos: Vec<u32>,
    /// Token fed at padded positions (masked out: its value does not change results).
    pub pad: u32,
    /// Most tokens of one sequence, prompt and generated together (at most
    /// [`MAX_LM_CONTEXT`](crate::limits::MAX_LM_CONTEXT)).
    pub max_context: usize,
}

impl LmOptions {
    /// The byte vocabulary of `models/tiny_lm` (and of scripts/gen-lm.py): bytes, then 256
    /// `<bos>`, 257 `<eos>`, 258 `<pad>`.
    pub fn bytes() -> Self {
        Self { tokenizer: Tokenizer::Bytes, bos: Some(256), eos: vec![257], pad: 258, max_context: 1024 }
    }
}

impl Default for LmOptions {
    fn default() -> Self {
        Self::bytes()
    }
}

/// How a language model's KV cache is laid out and grows (found from its graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvLayout {
    /// Hugging Face Optimum's: `present.N.*` is `past_key_values.N.*` with the new tokens
    /// appended, a new tensor at every call (a copy of the whole cache, O(context) a step). Rows
    /// of a batch are left-padded and masked by `attention_mask`.
    Concat,
    /// onnxruntime-genai's, for a model whose attention is ONNX Runtime's `com.microsoft`
    /// GroupQueryAttention: each row's tokens sit at the start of a preallocated buffer
    /// `[rows, heads, capacity, head size]`, bound (I/O binding) as both `past_key_values.N.*`
    /// and `present.N.*`, so each step writes only its new column in place. Rows are right-
    /// padded; `attention_mask` says each row's length (its ones, at its start).
    InPlace,
}

impl KvLayout {
    /// Its name (`concat`, `in-place`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Concat => "concat",
            Self::InPlace => "in-place",
        }
    }
}

/// What a loaded language model is: found from its inputs and outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct LmInfo {
    /// The model's id (SHA-256 of its bytes), as `InferenceEngine::load` gives it.
    pub id: String,
    /// Decoder layers (pairs of `past_key_values.N.key/value`).
    pub layers: usize,
    /// Key/value heads.
    pub heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Element type of the KV cache: float32 or float16.
    pub kv_type: ElementType,
    /// Tokens (the last dimension of `logits`; -1 if the model does not fix it).
    pub vocab: i64,
    /// The model takes `attention_mask` (else no padding is possible: sequences decode one by
    /// one, never batched).
    pub attention_mask: bool,
    /// The model takes `position_ids`.
    pub position_ids: bool,
    /// How its KV cache grows.
    pub layout: KvLayout,
    /// The model's full description.
    pub model: ModelInfo,
    /// The options it was loaded with.
    pub options: LmOptions,
}

impl LmInfo {
    /// Bytes of KV cache one token of one sequence takes.
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.layers * self.heads * self.head_dim * self.kv_type.byte_len(1).unwrap_or(4)
    }
}

/// A language model loaded into an [`InferenceEngine`]: cheap to clone (shared).
#[derive(Clone)]
pub struct LanguageModel {
    pub(crate) engine: Arc<InferenceEngine>,
    pub(crate) info: Arc<LmInfo>,
}

impl std::fmt::Debug for LanguageModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanguageModel").field("info", &self.info).finish()
    }
}

fn not_lm(reason: impl Into<String>) -> InferenceError {
    InferenceError::NotALanguageModel { reason: reason.into() }
}

impl LanguageModel {
    /// Loads `bytes` into `engine` and checks it is a decoder in the Optimum layout;
    /// `E_NOT_A_LANGUAGE_MODEL` (naming what is missing or wrong) if it is not.
    pub fn load(engine: Arc<InferenceEngine>, bytes: Vec<u8>, options: LmOptions) -> Result<Self, InferenceError> {
        let model = engine.load(bytes)?;
        Self::from_loaded(engine, &model.id, options)
    }

    /// A model already loaded in `engine` (by id), checked as [`LanguageModel::load`] does.
    pub fn from_loaded(engine: Arc<InferenceEngine>, id: &str, options: LmOptions) -> Result<Self, InferenceError> {
        let model = engine.info(id)?;
        if options.max_context == 0 || options.max_context > crate::limits::MAX_LM_CONTEXT {
            return Err(not_lm(format!("maxContext must be 1..={}, got {}", crate::limits::MAX_LM_CONTEXT, options.max_context)));
        }
        let in_place = onnx_graph::has_node(&engine.model_bytes(id)?, "GroupQueryAttention", "com.microsoft");
        let info = inspect(model, options, if in_place { KvLayout::InPlace } else { KvLayout::Concat })?;
        Ok(Self { engine, info: Arc::new(info) })
    }

    /// The engine it is loaded in.
    pub fn engine(&self) -> Arc<InferenceEngine> {
        self.engine.clone()
    }

    /// What it is.
    pub fn info(&self) -> &LmInfo {
        &self.info
    }

    /// The tokens of a text prompt: its tokenizer's, after `bos` if there is one.
    /// `E_BAD_PROMPT` when the model has no host tokenizer.
    pub fn encode_prompt(&self, text: &[u8]) -> Result<Vec<u32>, InferenceError> {
        let o = &self.info.options;
        let mut ids: Vec<u32> = o.bos.into_iter().collect();
        ids.extend(o.tokenizer.encode(text).ok_or_else(|| InferenceError::BadPrompt {
            reason: "this language model has no tokenizer on the host (tokenizer: 'none'): give the prompt as token ids".into(),
        })?);
        Ok(ids)
    }
}

/// Checks the model's inputs and outputs against the layout.
fn inspect(model: ModelInfo, options: LmOptions, layout: KvLayout) -> Result<LmInfo, InferenceError> {
    let input = |name: &str| model.inputs.iter().find(|i| i.name == name);
    let output = |name: &str| model.outputs.iter().find(|o| o.name == name);
    let ids = input("input_ids").ok_or_else(|| not_lm("it has no input `input_ids`"))?;
    if ids.dtype != "int64" || ids.shape.len() != 2 {
        return Err(not_lm(format!("input `input_ids` must be int64[batch, sequence], is {}{:?}", ids.dtype, ids.shape)));
    }
    let int2 = |name: &str| -> Result<bool, InferenceError> {
        match input(name) {
            None => Ok(false),
            Some(i) if i.dtype == "int64" && i.shape.len() == 2 => Ok(true),
            Some(i) => Err(not_lm(format!("input `{name}` must be int64[batch, length], is {}{:?}", i.dtype, i.shape))),
        }
    };
    let attention_mask = int2("attention_mask")?;
    let position_ids = int2("position_ids")?;
    if layout == KvLayout::InPlace && !attention_mask {
        return Err(not_lm("its attention is GroupQueryAttention but it has no input `attention_mask` (which gives each row's length)"));
    }
    let logits = output("logits").ok_or_else(|| not_lm("it has no output `logits`"))?;
    if logits.shape.len() != 3 || !matches!(logits.dtype.as_str(), "float32" | "float16") {
        return Err(not_lm(format!("output `logits` must be float32 or float16 [batch, sequence, vocabulary], is {}{:?}", logits.dtype, logits.shape)));
    }
    let mut layers = 0;
    while input(&format!("past_key_values.{layers}.key")).is_some() {
        layers += 1;
    }
    if layers == 0 {
        return Err(not_lm("it has no input `past_key_values.0.key` (export it with its KV cache: Optimum's `--task text-generation-with-past`)"));
    }
    let first = input("past_key_values.0.key").cloned().unwrap_or_else(|| unreachable!("found above"));
    let kv_type = ElementType::parse(&first.dtype).ok().filter(|t| matches!(t, ElementType::F32 | ElementType::F16));
    let Some(kv_type) = kv_type else {
        return Err(not_lm(format!("`past_key_values.0.key` must be float32 or float16, is {}", first.dtype)));
    };
    let (heads, head_dim) = match first.shape[..] {
        [_, h, _, d] if h > 0 && d > 0 => (h as usize, d as usize),
        _ => {
            return Err(not_lm(format!("`past_key_values.0.key` must be [batch, heads, past, head size] with fixed heads and head size, is {:?}", first.shape)))
        }
    };
    let mut expected = vec!["input_ids".to_string()];
    expected.extend(attention_mask.then(|| "attention_mask".to_string()));
    expected.extend(position_ids.then(|| "position_ids".to_string()));
    for l in 0..layers {
        for kv in ["key", "value"] {
            let name = format!("past_key_values.{l}.{kv}");
            let i = input(&name).ok_or_else(|| not_lm(format!("it has no input `{name}`")))?;
            if i.dtype != first.dtype || i.shape.len() != 4 || i.shape[1] != heads as i64 || i.shape[3] != head_dim as i64 {
                return Err(not_lm(format!("input `{name}` is {}{:?}, unlike `past_key_values.0.key` ({}{:?})", i.dtype, i.shape, first.dtype, first.shape)));
            }
            expected.push(name.clone());
            let present = format!("present.{l}.{kv}");
            let o = output(&present).ok_or_else(|| not_lm(format!("it has no output `{present}`")))?;
            if o.dtype != first.dtype || o.shape.len() != 4 {
                return Err(not_lm(format!("output `{present}` is {}{:?}, unlike its input `{name}` ({})", o.dtype, o.shape, first.dtype)));
            }
        }
    }
    if let Some(extra) = model.inputs.iter().find(|i| !expected.contains(&i.name)) {
        return Err(not_lm(format!("it has an input lockstep does not feed: `{}` (inputs fed: {})", extra.name, expected.join(", "))));
    }
    let vocab = logits.shape[2];
    for t in options.bos.iter().chain(&options.eos).chain([&options.pad]) {
        if vocab > 0 && i64::from(*t) >= vocab {
            return Err(not_lm(format!("special token {t} is outside the model's vocabulary of {vocab}")));
        }
    }
    Ok(LmInfo { id: model.id.clone(), layers, heads, head_dim, kv_type, vocab, attention_mask, position_ids, layout, model, options })
}
