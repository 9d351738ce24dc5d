//! Language models in the binding: `NativeLanguageModel` (what `loadLanguageModel` returns)
//! runs JS's `generate()` calls on its own generator, outside the tick clock: every call
//! running at once decodes in one batch, each `advance` on libuv's thread pool.

use std::sync::{Arc, Mutex};

use lockstep_core::inference::lm::{GenerateRequest, Generator, GeneratorLimits, LanguageModel, LmInfo, LmOptions, SamplingParams, Tokenizer};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::error::{internal, invalid_arg, to_napi, to_status_error, Code, Result};

/// Options of `loadLanguageModel` (index.js checks and documents them).
#[napi(object)]
#[derive(Default)]
pub struct LanguageModelOptions {
    /// `bytes` (ids 0..255 are bytes) or `none` (prompts as token ids only).
    pub tokenizer: Option<String>,
    /// Token before every text prompt; -1: none.
    pub bos: Option<i64>,
    pub eos: Option<Vec<u32>>,
    pub pad: Option<u32>,
    pub max_context: Option<u32>,
    /// Most of JS's `generate()` calls decoding together.
    pub max_batch: Option<u32>,
}

/// What a loaded language model is.
#[napi(object)]
pub struct LanguageModelInfo {
    pub id: String,
    pub layers: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub kv_type: String,
    /// How the KV cache grows: `concat` (Optimum) or `in-place` (GroupQueryAttention).
    pub kv_layout: String,
    pub vocab: i64,
    pub tokenizer: String,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    pub pad: u32,
    pub max_context: u32,
    pub kv_bytes_per_token: u32,
}

impl From<&LmInfo> for LanguageModelInfo {
    fn from(i: &LmInfo) -> Self {
        Self {
            id: i.id.clone(),
            layers: i.layers as u32,
            heads: i.heads as u32,
            head_dim: i.head_dim as u32,
            kv_type: i.kv_type.name().to_string(),
            kv_layout: i.layout.name().to_string(),
            vocab: i.vocab,
            tokenizer: i.options.tokenizer.name().to_string(),
            bos: i.options.bos,
            eos: i.options.eos.clone(),
            pad: i.options.pad,
            max_context: i.options.max_context as u32,
            kv_bytes_per_token: i.kv_bytes_per_token() as u32,
        }
    }
}

/// The core's options from JS's (checked in index.js; checked again here).
pub fn lm_options(o: &LanguageModelOptions) -> Result<(LmOptions, usize)> {
    let tokenizer = match o.tokenizer.as_deref() {
        None => Tokenizer::Bytes,
        Some(name) => Tokenizer::parse(name).ok_or_else(|| invalid_arg("tokenizer", format!("must be 'bytes' or 'none', got {name:?}")))?,
    };
    let base = if tokenizer == Tokenizer::Bytes { LmOptions::bytes() } else { LmOptions { tokenizer, bos: None, eos: Vec::new(), pad: 0, max_context: 1024 } };
    let bos = match o.bos {
        None => base.bos,
        Some(b) if b < 0 => None,
        Some(b) => Some(u32::try_from(b).map_err(|_| invalid_arg("bos", format!("{b} is not a token id")))?),
    };
    let options = LmOptions {
        tokenizer,
        bos,
        eos: o.eos.clone().unwrap_or(base.eos),
        pad: o.pad.unwrap_or(base.pad),
        max_context: o.max_context.map_or(base.max_context, |m| m as usize),
    };
    Ok((options, o.max_batch.unwrap_or(32) as usize))
}

/// A language model loaded by `Runtime.loadLanguageModel`, with the generator behind JS's
/// `generate()` calls.
#[napi]
pub struct NativeLanguageModel {
    pub(crate) lm: LanguageModel,
    generator: Arc<Mutex<Generator>>,
    next_key: u64,
}

impl NativeLanguageModel {
    pub fn new(lm: LanguageModel, max_batch: usize) -> Self {
        let generator = Generator::new(lm.clone(), GeneratorLimits { max_batch, ..Default::default() });
        Self { lm, generator: Arc::new(Mutex::new(generator)), next_key: 1 }
    }
}

fn lock(g: &Mutex<Generator>) -> std::sync::MutexGuard<'_, Generator> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one `advance` brought: tokens, the bytes of each one's text (`offsets[i]..offsets[i+1]`
/// of `text`), and why the generation ended, once it did.
#[napi(object)]
pub struct GenerateChunk {
    pub tokens: Vec<u32>,
    pub text: Buffer,
    pub offsets: Vec<u32>,
    pub finish: Option<String>,
    /// ONNX Runtime's message when `finish` is `failed`.
    pub error: Option<String>,
}

pub struct AdvanceTask {
    generator: Arc<Mutex<Generator>>,
    key: u64,
    max_steps: usize,
}

impl Task for AdvanceTask {
    type Output = std::result::Result<(Vec<u32>, Vec<u8>, Vec<u32>, Option<(String, Option<String>)>), napi::Error<Code>>;
    type JsValue = GenerateChunk;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        // On a libuv thread: a panic is caught here (it would abort Node).
        let run = || {
            let mut g = lock(&self.generator);
            // Up to max_steps steps while it runs (every generation in flight advances with
            // it), then what it produced: one trip to the thread pool per chunk, not per token.
            let mut steps = 0;
            while steps < self.max_steps && g.is_running(self.key) && g.step() {
                steps += 1;
            }
            let p = g.take(self.key);
            let tokenizer = g.model().info().options.tokenizer;
            let (tokens, finish) = p.map(|p| (p.tokens, p.finish)).unwrap_or_default();
            let mut text = Vec::new();
            let mut offsets = vec![0u32];
            for t in &tokens {
                tokenizer.piece(*t, &mut text);
                offsets.push(text.len() as u32);
            }
            let finish = finish.map(|f| {
                let error = match &f {
                    lockstep_core::inference::lm::Finish::Failed(why) => Some(why.clone()),
                    _ => None,
                };
                (f.name().to_string(), error)
            });
            Ok((tokens, text, offsets, finish))
        };
        Ok(std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(internal).and_then(|r| r))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output
            .map(|(tokens, text, offsets, finish)| {
                let (finish, error) = finish.map_or((None, None), |(f, e)| (Some(f), e));
                GenerateChunk { tokens, text: text.into(), offsets, finish, error }
            })
            .map_err(|e| to_status_error(&env, e))
    }
}

#[napi]
impl NativeLanguageModel {
    /// What the model is.
    #[napi(catch_unwind)]
    pub fn info(&self) -> LanguageModelInfo {
        LanguageModelInfo::from(self.lm.info())
    }

    /// Queues a generation; returns its key. `prompt` is token ids, or `text` is tokenized.
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &mut self,
        ids: Option<Vec<u32>>,
        text: Option<Buffer>,
        max_tokens: u32,
        temperature: f64,
        top_k: u32,
        top_p: f64,
        stop: Vec<Buffer>,
        seed: f64,
    ) -> Result<f64> {
        let prompt = match (ids, text) {
            (Some(ids), _) => ids,
            (None, Some(text)) => self.lm.encode_prompt(&text).map_err(to_napi)?,
            (None, None) => return Err(invalid_arg("prompt", "a string or token ids".into())),
        };
        let mut key32 = [0u8; 32];
        key32[..8].copy_from_slice(&(seed as u64).to_le_bytes());
        key32[8..24].copy_from_slice(b"lockstep js gen ");
        let request = GenerateRequest {
            prompt,
            max_tokens,
            stop: stop.iter().map(|s| s.to_vec()).collect(),
            sampling: SamplingParams { temperature: temperature as f32, top_k, top_p: top_p as f32 },
            seed: key32,
        };
        let key = self.next_key;
        lock(&self.generator).submit(key, request).map_err(to_napi)?;
        self.next_key += 1;
        Ok(key as f64)
    }

    /// The next tokens of generation `key`: up to `max_steps` steps of the generator (every
    /// generation in flight advances with it) on libuv's thread pool, while `key` runs.
    #[napi(catch_unwind, ts_return_type = "Promise<GenerateChunk>")]
    pub fn advance<'env>(&mut self, env: &'env Env, key: f64, max_steps: u32) -> Result<PromiseRaw<'env, GenerateChunk>> {
        let task = AdvanceTask { generator: self.generator.clone(), key: key as u64, max_steps: max_steps.max(1) as usize };
        env.spawn(task)
            .map(|w| w.promise_object())
            .map_err(|e| to_napi(crate::error::BindError { code: "E_INTERNAL", message: format!("cannot queue generate: {e}") }))
    }

    /// Drops generation `key` (a JS iterator closed early).
    #[napi(catch_unwind)]
    pub fn cancel(&mut self, key: f64) {
        lock(&self.generator).cancel(key as u64);
    }

    /// The generator's counts: decode calls, prefill calls, tokens, rebuilds, KV-cache
    /// transfers between host and GPU.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> Vec<f64> {
        let s = lock(&self.generator).stats();
        vec![s.decode_calls as f64, s.prefill_calls as f64, s.tokens as f64, s.rebuilds as f64, s.kv_transfers as f64]
    }
}
