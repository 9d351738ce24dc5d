//! Write a lockstep agent in a few lines.
//!
//! ```ignore
//! use lockstep_sdk::{Agent, Context, Message, export_agent};
//!
//! #[derive(Default)]
//! struct Counter { n: u64 }
//!
//! impl Agent for Counter {
//!     fn step(&mut self, ctx: &Context) { self.n += 1; }
//! }
//! export_agent!(Counter);
//! ```
//!
//! The macro exports the ABI (docs/ABI.md), version 2: `agent_init`, `agent_step`,
//! `agent_receive_batch` (all of a tick's messages in as few calls as fit the io buffer, each
//! handed to `Agent::receive` in order), `agent_shutdown`, `lockstep_abi_version`,
//! `lockstep_io_buffer`, and installs a panic hook that reports the panic message to the host
//! before the agent traps. `export_agent_v1!` exports ABI version 1 instead (one
//! `agent_receive` call per message), for runtimes that predate version 2.
//!
//! Every number of the ABI (layouts, limits, return codes, capability bits) comes from the
//! `lockstep-abi` crate, which the engine uses too; it is re-exported as [`abi`].

extern crate alloc;

/// The ABI this SDK speaks: the `lockstep-abi` crate, shared with the engine.
pub use lockstep_abi as abi;

pub use abi::{ABI_VERSION, MAX_PAYLOAD_BYTES, MESSAGE_HEADER_BYTES};
/// Size of the io buffer the host writes contexts and messages into.
pub const IO_BUFFER_BYTES: usize = abi::IO_BUFFER_BYTES as usize;
/// The io region `lockstep_io_buffer()` points at: the io buffer, then ABI 2's batch state.
pub const IO_REGION_BYTES: usize = IO_BUFFER_BYTES + abi::BATCH_STATE_BYTES as usize;
/// The host (JS orchestrator) as a message address.
pub const HOST: u64 = abi::HOST_ID;

pub type AgentId = u64;

/// `a == b`, at compile time.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// Attributes and identifiers cannot take constants: the names below are written out, and
// checked against the ABI's here, at compile time.
const _: () = {
    assert!(same(abi::IMPORT_MODULE, "lockstep"));
    assert!(same(abi::IMPORT_SEND, "send"));
    assert!(same(abi::IMPORT_SEND_PLAIN, "send_plain"));
    assert!(same(abi::IMPORT_TICK, "tick"));
    assert!(same(abi::IMPORT_SELF_ID, "self_id"));
    assert!(same(abi::IMPORT_RANDOM, "random_u64"));
    assert!(same(abi::IMPORT_RANDOM_FILL, "random_fill"));
    assert!(same(abi::IMPORT_LOG, "log"));
    assert!(same(abi::IMPORT_REPORT_PANIC, "report_panic"));
    assert!(same(abi::IMPORT_INFER, "infer"));
    assert!(same(abi::IMPORT_GRANTED, "granted"));
    assert!(same(abi::IMPORT_GENERATE, "generate"));
    assert!(same(abi::EXPORT_ABI_VERSION, "lockstep_abi_version"));
    assert!(same(abi::EXPORT_IO_BUFFER, "lockstep_io_buffer"));
    assert!(same(abi::EXPORT_INIT, "agent_init"));
    assert!(same(abi::EXPORT_STEP, "agent_step"));
    assert!(same(abi::EXPORT_RECEIVE, "agent_receive"));
    assert!(same(abi::EXPORT_RECEIVE_BATCH, "agent_receive_batch"));
    assert!(same(abi::IMPORT_SEND_BATCH, "send_batch"));
    assert!(same(abi::EXPORT_SHUTDOWN, "agent_shutdown"));
};

/// The raw host imports (module `abi::IMPORT_MODULE`). Prefer the safe wrappers below.
///
/// Calling one is sound when its arguments follow docs/ABI.md: the host validates every
/// pointer/length pair against the agent's memory (an invalid one faults the agent, it is
/// never read or written past), and these declarations are the host's signatures (the
/// runtime refuses to link a module whose import types differ).
pub mod raw {
    #[link(wasm_import_module = "lockstep")]
    extern "C" {
        pub fn send(to: i64, kind: i32, priority: i32, ptr: i32, len: i32) -> i32;
        pub fn send_plain(to: i64, kind: i32, ptr: i32, len: i32) -> i32;
        pub fn send_batch(ptr: i32, count: i32) -> i32;
        pub fn tick() -> i64;
        pub fn self_id() -> i64;
        pub fn random_u64() -> i64;
        pub fn random_fill(ptr: i32, count: i32);
        pub fn log(level: i32, ptr: i32, len: i32);
        pub fn report_panic(ptr: i32, len: i32);
        pub fn infer(model: i32, tag: i32, ptr: i32, len: i32) -> i32;
        pub fn granted() -> i32;
        pub fn generate(model: i32, tag: i32, ptr: i32, len: i32) -> i32;
    }
}

/// Capability bits the runtime granted this agent (its manifest cut to the operator's policy).
pub use abi::grant;

/// What this agent was granted: `grant::*` bits.
pub fn granted() -> i32 {
    // SAFETY: `granted` takes no arguments and only returns a value (see `raw`).
    unsafe { raw::granted() }
}

/// Sender id of inference results.
pub const INFERENCE: u64 = abi::INFERENCE_ID;

/// Why an inference request was refused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferError {
    InputTooLarge,
    TooManyRequests,
    Unknown(i32),
}

/// Asks the runtime to run model `model` (a slot the embedder registered) on one sample:
/// each model input's per-sample elements, in input order, encoded as [`sample`] says. The answer arrives at the next tick
/// as a message from `INFERENCE` with `kind == tag`; read it with `InferResult::parse`.
/// Requests of all agents for one model in one tick are batched into one call.
pub fn infer(model: u32, tag: u32, sample: &[u8]) -> Result<(), InferError> {
    // SAFETY: the pointer and length are those of `sample`, a live slice the host only
    // reads (and bounds-checks) during the call.
    match unsafe { raw::infer(model as i32, tag as i32, sample.as_ptr() as i32, sample.len() as i32) } {
        abi::INFER_OK => Ok(()),
        abi::INFER_ERR_INPUT_TOO_LARGE => Err(InferError::InputTooLarge),
        abi::INFER_ERR_TOO_MANY_REQUESTS => Err(InferError::TooManyRequests),
        other => Err(InferError::Unknown(other)),
    }
}

/// Building and reading inference samples: each model input's (and answer output's)
/// per-sample elements in the wire encoding of its element type, `abi::tensor_type` (ids and
/// encodings; docs/INFERENCE.md has the table). Fixed-width elements are little-endian bytes
/// (`float16` and `bfloat16` their raw bits, e.g. `half::f16::to_bits`); sub-byte types are
/// packed per sample; strings are a u32 length then UTF-8, which these functions write and read.
pub mod sample {
    use alloc::vec::Vec;

    pub use crate::abi::tensor_type;

    /// Appends string element `s` to a sample (its length, then its UTF-8). The host refuses a
    /// sample whose string holds a NUL character (status `INFER_STATUS_BAD_INPUT`).
    pub fn push_string(sample: &mut Vec<u8>, s: &str) {
        sample.extend_from_slice(&tensor_type::string_header(s.len() as u32));
        sample.extend_from_slice(s.as_bytes());
    }

    /// Reads `count` string elements from the start of `bytes`: the strings and the bytes after
    /// them (the next output's); `None` if `bytes` is too short or an element is not UTF-8.
    pub fn read_strings(bytes: &[u8], count: usize) -> Option<(Vec<&str>, &[u8])> {
        let mut out = Vec::with_capacity(count);
        let mut rest = bytes;
        for _ in 0..count {
            let (element, more) = tensor_type::split_string(rest)?;
            out.push(core::str::from_utf8(element).ok()?);
            rest = more;
        }
        Some((out, rest))
    }

    /// Packs `codes` (each the low `bits` bits of a byte: 4 for `int4`/`uint4`/`float4e2m1`, 2
    /// for `int2`/`uint2`) the way the wire encoding packs one sample of them: the first
    /// element in the lowest bits, the last byte's unused bits zero.
    pub fn pack(codes: &[u8], bits: u32) -> Vec<u8> {
        let per = (8 / bits) as usize;
        let mask = ((1u16 << bits) - 1) as u8;
        codes.chunks(per).map(|c| c.iter().enumerate().fold(0u8, |b, (k, v)| b | ((v & mask) << (k as u32 * bits)))).collect()
    }

    /// The `count` codes of `bits` bits each packed at the start of `bytes` (see [`pack`]).
    pub fn unpack(bytes: &[u8], bits: u32, count: usize) -> Vec<u8> {
        let per = (8 / bits) as usize;
        let mask = ((1u16 << bits) - 1) as u8;
        (0..count).map(|i| (bytes.get(i / per).copied().unwrap_or(0) >> ((i % per) as u32 * bits)) & mask).collect()
    }
}

/// An inference answer: status `abi::INFER_STATUS_OK` (then `outputs` holds each output's
/// per-sample bytes, in output order) or another `abi::INFER_STATUS_*`: no such model,
/// malformed input, the model failed, forbidden, output too large.
#[derive(Debug, Clone, Copy)]
pub struct InferResult<'a> {
    pub tag: u32,
    pub status: u32,
    pub outputs: &'a [u8],
}

impl<'a> InferResult<'a> {
    /// `Some` when `msg` is an inference answer.
    pub fn parse(msg: &Message<'a>) -> Option<Self> {
        if msg.from != INFERENCE || msg.payload.len() < 4 {
            return None;
        }
        let status = rd_u32(msg.payload, 0);
        Some(Self { tag: msg.kind, status, outputs: &msg.payload[4..] })
    }
}

/// Sender id of generated tokens (the language-model service).
pub const GENERATION: u64 = abi::GENERATION_ID;

/// Language-model generation (the `generate` import; `abi::generate` has the layouts).
pub mod generate {
    use alloc::vec::Vec;

    pub use lockstep_abi::generate::*;

    /// How to generate. `Default`: 64 tokens, greedy, no stop sequence, a derived seed.
    #[derive(Debug, Clone, Copy)]
    pub struct Options<'a> {
        /// Most tokens, 1..=`MAX_TOKENS`.
        pub max_tokens: u32,
        /// 0: greedy; else sample at this temperature (..=100).
        pub temperature: f32,
        /// Keep the `top_k` most likely tokens (0: all).
        pub top_k: u32,
        /// Keep the most likely tokens up to this probability mass, in (0, 1].
        pub top_p: f32,
        /// Generation ends once the text contains one of these (at most `MAX_STOP_SEQUENCES`).
        pub stop: &'a [&'a [u8]],
        /// The sampler's seed; 0: derived from the runtime's seed, this agent's id and how many
        /// requests it made (so a rerun gives the same tokens).
        pub seed: u64,
    }

    impl Default for Options<'_> {
        fn default() -> Self {
            Self { max_tokens: 64, temperature: 0.0, top_k: 0, top_p: 1.0, stop: &[], seed: 0 }
        }
    }

    /// A prompt: text (tokenized on the host) or token ids.
    #[derive(Debug, Clone, Copy)]
    pub enum Prompt<'a> {
        Text(&'a str),
        Tokens(&'a [u32]),
    }

    /// A request's bytes (see `abi::generate`).
    pub fn request(prompt: Prompt<'_>, o: &Options<'_>) -> Vec<u8> {
        let mut b = alloc::vec![0u8; REQUEST_HEADER_BYTES];
        let mut put = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(REQUEST_OFFSET_FLAGS, if matches!(prompt, Prompt::Tokens(_)) { FLAG_TOKEN_IDS } else { 0 });
        put(REQUEST_OFFSET_MAX_TOKENS, o.max_tokens);
        put(REQUEST_OFFSET_TEMPERATURE, o.temperature.to_bits());
        put(REQUEST_OFFSET_TOP_P, o.top_p.to_bits());
        put(REQUEST_OFFSET_TOP_K, o.top_k);
        put(REQUEST_OFFSET_STOP_COUNT, o.stop.len() as u32);
        b[REQUEST_OFFSET_SEED..REQUEST_OFFSET_SEED + 8].copy_from_slice(&o.seed.to_le_bytes());
        for s in o.stop {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s);
        }
        match prompt {
            Prompt::Text(t) => b.extend_from_slice(t.as_bytes()),
            Prompt::Tokens(ids) => ids.iter().for_each(|t| b.extend_from_slice(&t.to_le_bytes())),
        }
        b
    }
}

/// Asks language model `model` (a slot the embedder registered with
/// `registerAgentLanguageModel`) to generate from `prompt`. Tokens arrive from the next tick
/// on, as messages from `GENERATION` with `kind == tag` (read them with `Generated::parse`),
/// the last with a final status. Counts against `infer`'s per-tick budget; needs the `infer`
/// capability for the model.
pub fn generate(model: u32, tag: u32, prompt: generate::Prompt<'_>, options: &generate::Options<'_>) -> Result<(), InferError> {
    let bytes = generate::request(prompt, options);
    // SAFETY: the pointer and length are those of `bytes`, a live vector the host only reads
    // (and bounds-checks) during the call.
    match unsafe { raw::generate(model as i32, tag as i32, bytes.as_ptr() as i32, bytes.len() as i32) } {
        abi::INFER_OK => Ok(()),
        abi::INFER_ERR_INPUT_TOO_LARGE => Err(InferError::InputTooLarge),
        abi::INFER_ERR_TOO_MANY_REQUESTS => Err(InferError::TooManyRequests),
        other => Err(InferError::Unknown(other)),
    }
}

/// Tokens from a `generate` request: `status` is `generate::STATUS_MORE` while more will
/// come, else why it ended (`STATUS_STOP`, `STATUS_EOS`, `STATUS_MAX_TOKENS`,
/// `STATUS_CONTEXT_FULL`; 16 and up: it failed or was refused).
#[derive(Debug, Clone, Copy)]
pub struct Generated<'a> {
    pub tag: u32,
    pub status: u32,
    /// The token ids, 4 little-endian bytes each (`token(i)`).
    pub token_bytes: &'a [u8],
    /// Their text (empty without a tokenizer on the host).
    pub text: &'a [u8],
}

impl<'a> Generated<'a> {
    /// `Some` when `msg` carries generated tokens.
    pub fn parse(msg: &Message<'a>) -> Option<Self> {
        if msg.from != GENERATION || msg.payload.len() < generate::RESULT_HEADER_BYTES {
            return None;
        }
        let status = rd_u32(msg.payload, generate::RESULT_OFFSET_STATUS);
        let n = rd_u32(msg.payload, generate::RESULT_OFFSET_TOKEN_COUNT) as usize;
        let end = generate::RESULT_HEADER_BYTES.checked_add(n.checked_mul(4)?)?;
        let token_bytes = msg.payload.get(generate::RESULT_HEADER_BYTES..end)?;
        Some(Self { tag: msg.kind, status, token_bytes, text: &msg.payload[end..] })
    }

    /// How many tokens it carries.
    pub fn len(&self) -> usize {
        self.token_bytes.len() / 4
    }

    /// Whether it carries no token.
    pub fn is_empty(&self) -> bool {
        self.token_bytes.is_empty()
    }

    /// Token `i`.
    pub fn token(&self, i: usize) -> u32 {
        rd_u32(self.token_bytes, i * 4)
    }

    /// Whether this is the request's last message.
    pub fn is_final(&self) -> bool {
        self.status != generate::STATUS_MORE
    }
}

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    PayloadTooLarge,
    OutboxFull,
    /// The recipient is outside this agent's `send` capability.
    Forbidden,
    /// `reply` was given a message that is not a request.
    NotARequest,
    Unknown(i32),
}

/// Sends `payload` to agent `to` (or `HOST`), delivered at the next tick, at priority 0 (the
/// `send_plain` import: four parameters, all passed in registers; docs/ABI.md).
pub fn send(to: AgentId, kind: u32, payload: &[u8]) -> Result<(), SendError> {
    // SAFETY: the pointer and length are those of `payload`, a live slice the host only
    // reads (and bounds-checks) during the call.
    let code = unsafe { raw::send_plain(to as i64, kind as i32, payload.as_ptr() as i32, payload.len() as i32) };
    send_result(code)
}

/// Messages queued together and sent with one host call (ABI 2's `send_batch`). Records are
/// laid out as docs/ABI.md says. Not a faster `send`: every payload is copied into the batch by
/// the agent's own code first, which costs more than the host calls it saves (a step sending
/// 16 messages of 64 bytes: ~230–290 more instructions a message than `send`, however the copy
/// is written: `BENCHMARKS.md`, issue 13). Use it to build messages ahead and send them together.
#[derive(Default)]
pub struct SendBatch {
    records: alloc::vec::Vec<u8>,
    count: u32,
}

impl SendBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a message (sent by `flush`).
    pub fn push(&mut self, to: AgentId, kind: u32, priority: i32, payload: &[u8]) {
        let at = self.records.len();
        let start = abi::next_record(0, at);
        self.records.resize(start, 0);
        let mut head = [0u8; abi::SEND_RECORD_HEADER_BYTES];
        head[abi::SEND_RECORD_OFFSET_TO..][..8].copy_from_slice(&to.to_le_bytes());
        head[abi::SEND_RECORD_OFFSET_KIND..][..4].copy_from_slice(&kind.to_le_bytes());
        head[abi::SEND_RECORD_OFFSET_PRIORITY..][..4].copy_from_slice(&priority.to_le_bytes());
        head[abi::SEND_RECORD_OFFSET_LEN..][..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        self.records.extend_from_slice(&head);
        self.records.extend_from_slice(payload);
        self.count += 1;
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sends every message, in order, with one host call; returns how many were queued (fewer
    /// than pushed when one was refused: the rest were not sent). The batch is empty after.
    pub fn flush(&mut self) -> usize {
        if self.count == 0 {
            return 0;
        }
        // SAFETY: the records are a live vector laid out as the ABI says; the host only reads
        // them (bounds-checked) during the call.
        let n = unsafe { raw::send_batch(self.records.as_ptr() as i32, self.count as i32) };
        self.records.clear();
        let _sent = core::mem::take(&mut self.count);
        n.max(0) as usize
    }
}

/// Like `send`; higher `priority` is delivered earlier within the recipient's tick.
pub fn send_with_priority(to: AgentId, kind: u32, priority: i32, payload: &[u8]) -> Result<(), SendError> {
    // SAFETY: the pointer and length are those of `payload`, a live slice the host only
    // reads (and bounds-checks) during the call.
    let code = unsafe { raw::send(to as i64, kind as i32, priority, payload.as_ptr() as i32, payload.len() as i32) };
    send_result(code)
}

fn send_result(code: i32) -> Result<(), SendError> {
    match code {
        abi::SEND_OK => Ok(()),
        abi::SEND_ERR_PAYLOAD_TOO_LARGE => Err(SendError::PayloadTooLarge),
        abi::SEND_ERR_OUTBOX_FULL => Err(SendError::OutboxFull),
        abi::SEND_ERR_FORBIDDEN => Err(SendError::Forbidden),
        other => Err(SendError::Unknown(other)),
    }
}

/// A request from the host (`await rt.request(agent, payload)` in JS): a message whose
/// payload carries the request envelope of docs/ABI.md, "Requests" (an SDK convention, not
/// part of the ABI). Answer it with [`reply`].
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request's id (the reply repeats it).
    pub id: u64,
    /// The request's kind: the `kind` option of `request()`.
    pub kind: u32,
    /// What the host sent, without the envelope.
    pub body: &'a [u8],
}

impl<'a> Message<'a> {
    /// `Some` when this message is a request from the host.
    pub fn request(&self) -> Option<Request<'a>> {
        if self.from != HOST {
            return None;
        }
        match abi::request::parse(self.payload) {
            Some((abi::request::Envelope::Request, id, body)) => Some(Request { id, kind: self.kind, body }),
            _ => None,
        }
    }
}

/// Answers a request from the host: sends `body` back to it, with the request's id and kind,
/// delivered like any message (the host's `request()` promise resolves with it at the end of
/// this tick). `Err(SendError::NotARequest)` when `msg` is not a request (see
/// [`Message::request`]); a body over `abi::request::MAX_BODY_BYTES` (the message limit less
/// the 16-byte envelope) is `PayloadTooLarge`. Needs the `send` capability for the host
/// (`"send": "host"` or `"any"` in the manifest).
pub fn reply(msg: &Message<'_>, body: &[u8]) -> Result<(), SendError> {
    let request = msg.request().ok_or(SendError::NotARequest)?;
    if body.len() > abi::request::MAX_BODY_BYTES {
        return Err(SendError::PayloadTooLarge);
    }
    let mut payload = alloc::vec::Vec::with_capacity(abi::request::HEADER_BYTES + body.len());
    payload.extend_from_slice(&abi::request::header(abi::request::Envelope::Reply, request.id));
    payload.extend_from_slice(body);
    send(HOST, request.kind, &payload)
}

/// The tick being run.
pub fn tick() -> u64 {
    // SAFETY: `tick` takes no arguments and only returns a value (see `raw`).
    unsafe { raw::tick() as u64 }
}

/// This agent's id.
pub fn self_id() -> AgentId {
    // SAFETY: `self_id` takes no arguments and only returns a value (see `raw`).
    unsafe { raw::self_id() as u64 }
}

#[cfg(target_arch = "wasm32")]
use abi::SDK_RANDOM_AHEAD_WORDS as RANDOM_AHEAD_WORDS;

/// Numbers of this agent's random stream fetched ahead (`random_fill`), and how many of them
/// are left. A host call costs more than the number it returns (two were most of an agent's
/// cost per message it sent to a random peer), so they come `RANDOM_AHEAD_WORDS` at a time.
#[cfg(target_arch = "wasm32")]
struct RandomAhead(core::cell::UnsafeCell<([u64; RANDOM_AHEAD_WORDS], usize)>);
// SAFETY: an agent is a wasm32 module without threads (the runtime refuses shared memories),
// so only one thread ever reaches the cell, and `random_u64` (its one user) is not re-entrant.
#[cfg(target_arch = "wasm32")]
unsafe impl Sync for RandomAhead {}
#[cfg(target_arch = "wasm32")]
static RANDOM_AHEAD: RandomAhead = RandomAhead(core::cell::UnsafeCell::new(([0; RANDOM_AHEAD_WORDS], usize::MIN)));

/// A deterministic random number: the stream depends only on the runtime seed and the agent id.
/// The numbers are those of the host's `random_u64`, in order (unless the agent also calls
/// `raw::random_u64` or `raw::random_fill` itself); they are fetched
/// `abi::SDK_RANDOM_AHEAD_WORDS` at a time (`random_fill`), and the ones not used yet live in
/// the agent's memory (so a snapshot keeps them, and a restored agent goes on with the same
/// numbers).
#[cfg(target_arch = "wasm32")]
pub fn random_u64() -> u64 {
    // SAFETY: one thread, not re-entrant (see `RandomAhead`): this is the only reference to
    // the cell while it lives.
    let (words, left) = unsafe { &mut *RANDOM_AHEAD.0.get() };
    if *left == usize::MIN {
        // SAFETY: `words` is a live array of `RANDOM_AHEAD_WORDS` u64s the host writes (and
        // bounds-checks) during the call only; the count is within `MAX_RANDOM_FILL_WORDS`.
        unsafe { raw::random_fill(words.as_mut_ptr() as i32, RANDOM_AHEAD_WORDS as i32) };
        *left = RANDOM_AHEAD_WORDS;
    }
    let word = u64::from_le(words[(RANDOM_AHEAD_WORDS - *left) % RANDOM_AHEAD_WORDS]);
    *left -= 1;
    word
}

/// Off wasm32 (the SDK's own tests, a host build that supplies the imports): one call per
/// number. The buffer above relies on wasm32's one thread and 32-bit pointers.
#[cfg(not(target_arch = "wasm32"))]
pub fn random_u64() -> u64 {
    // SAFETY: `random_u64` takes no arguments and only returns a value (see `raw`).
    unsafe { raw::random_u64() as u64 }
}

/// A uniform random number in `0..n` (n > 0).
pub fn random_below(n: u64) -> u64 {
    scale_below(random_u64(), n)
}

/// `floor(x * n / 2^64)`: Lemire's multiply-shift (the tiny bias is irrelevant for simulations,
/// and deterministic). wasm32 has no 64×64→128 multiply, so the `u128` product is a call to
/// `__multi3`; for `n < 2^32` (any agent count) two 64-bit products give the same number:
/// with `x = hi·2^32 + lo`, `floor(x·n / 2^64) = floor((hi·n + floor(lo·n / 2^32)) / 2^32)`,
/// and neither product nor their sum overflows.
#[inline]
fn scale_below(x: u64, n: u64) -> u64 {
    if n >> 32 == 0 {
        ((x >> 32) * n + (((x & 0xFFFF_FFFF) * n) >> 32)) >> 32
    } else {
        ((x as u128 * n as u128) >> 64) as u64
    }
}

/// A log line's level (`abi::log_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Level {
    Error = abi::log_level::ERROR,
    Warn = abi::log_level::WARN,
    Info = abi::log_level::INFO,
    Debug = abi::log_level::DEBUG,
    Trace = abi::log_level::TRACE,
}

/// Writes a log line to the host (kept per call up to a bound, then dropped).
pub fn log(level: Level, text: &str) {
    // SAFETY: the pointer and length are those of `text`, a live string the host only reads
    // (and bounds-checks) during the call.
    unsafe { raw::log(level as i32, text.as_ptr() as i32, text.len() as i32) }
}

/// What `agent_step` is told, decoded from the 32-byte context.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub abi_version: u32,
    /// Messages delivered to `receive` this tick, before this step.
    pub inbox_len: u32,
    pub tick: u64,
    pub agent_id: AgentId,
    /// Highest agent id assigned so far (ids are 1..=max_agent_id).
    pub max_agent_id: u64,
}

/// A message delivered to `receive`. The payload borrows the io buffer: copy what you keep.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub from: AgentId,
    pub to: AgentId,
    pub seq: u64,
    pub kind: u32,
    pub priority: i32,
    pub payload: &'a [u8],
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Context {
    /// # Safety
    /// `ptr` must point to `abi::CONTEXT_BYTES` readable bytes that nothing writes during this
    /// call (the host guarantees this for the pointer it passes to `agent_step`).
    pub unsafe fn from_ptr(ptr: *const u8) -> Self {
        // SAFETY: the caller's contract: `CONTEXT_BYTES` readable, unwritten bytes at `ptr`
        // (u8 has no alignment requirement).
        let b = unsafe { core::slice::from_raw_parts(ptr, abi::CONTEXT_BYTES) };
        Self {
            abi_version: rd_u32(b, abi::CONTEXT_OFFSET_ABI_VERSION),
            inbox_len: rd_u32(b, abi::CONTEXT_OFFSET_INBOX_LEN),
            tick: rd_u64(b, abi::CONTEXT_OFFSET_TICK),
            agent_id: rd_u64(b, abi::CONTEXT_OFFSET_AGENT_ID),
            max_agent_id: rd_u64(b, abi::CONTEXT_OFFSET_MAX_AGENT_ID),
        }
    }
}

impl<'a> Message<'a> {
    /// # Safety
    /// `ptr` must point to a header plus `payload_len` bytes (at most `MAX_PAYLOAD_BYTES`)
    /// that stay readable and unwritten for `'a` (the host guarantees this for the pointer it
    /// passes to `agent_receive`, for the length of that call).
    pub unsafe fn from_ptr(ptr: *const u8) -> Self {
        // SAFETY: the caller's contract: a readable, unwritten header at `ptr`.
        let h = unsafe { core::slice::from_raw_parts(ptr, MESSAGE_HEADER_BYTES) };
        let len = (rd_u32(h, abi::MESSAGE_OFFSET_PAYLOAD_LEN) as usize).min(MAX_PAYLOAD_BYTES);
        // SAFETY: the caller's contract: `len` payload bytes follow the header, readable and
        // unwritten for `'a`; header plus payload fit the io buffer, so the offset stays in it.
        let payload = unsafe { core::slice::from_raw_parts(ptr.add(MESSAGE_HEADER_BYTES), len) };
        Self {
            from: rd_u64(h, abi::MESSAGE_OFFSET_FROM),
            to: rd_u64(h, abi::MESSAGE_OFFSET_TO),
            seq: rd_u64(h, abi::MESSAGE_OFFSET_SEQ),
            kind: rd_u32(h, abi::MESSAGE_OFFSET_KIND),
            priority: rd_u32(h, abi::MESSAGE_OFFSET_PRIORITY) as i32,
            payload,
        }
    }
}

/// An agent. Only `step` is required.
pub trait Agent {
    /// Called once, right after spawn.
    fn init(&mut self) {}
    /// Called once per tick, after this tick's messages were received.
    fn step(&mut self, ctx: &Context);
    /// Called for each message, in canonical order, before `step`.
    fn receive(&mut self, _msg: &Message<'_>) {}
    /// Called on graceful shutdown.
    fn shutdown(&mut self) {}
}

/// Reports a panic's message to the host, so the fault event says why the agent died.
#[cfg(target_arch = "wasm32")]
pub fn install_panic_hook() {
    std::panic::set_hook(alloc::boxed::Box::new(|info| {
        let text = alloc::format!("{info}");
        // SAFETY: the pointer and length are those of `text`, a live string the host only
        // reads (and bounds-checks) during the call.
        unsafe { raw::report_panic(text.as_ptr() as i32, text.len() as i32) };
    }));
}

#[cfg(not(target_arch = "wasm32"))]
pub fn install_panic_hook() {}

/// The io region: the buffer the host writes contexts and messages into, then the batch state.
#[repr(C, align(16))]
pub struct IoBuffer(pub core::cell::UnsafeCell<[u8; IO_REGION_BYTES]>);
// SAFETY: an agent is a wasm32 module without threads (the runtime refuses shared memories),
// so only one thread ever reaches the cell; the host writes it only between calls into the
// agent, never while an ABI function (and a reference it made into the buffer) is running.
unsafe impl Sync for IoBuffer {}

/// The agent's state directly followed by its io buffer, in one static: a step then touches
/// the state and the context (at the io buffer's start) on the same memory page, which matters
/// when thousands of agents step in a row (each step's first touches are cache/TLB misses).
#[repr(C, align(16))]
pub struct AgentArea<T> {
    pub state: core::cell::UnsafeCell<Option<T>>,
    pub io: IoBuffer,
}
// SAFETY: as for `IoBuffer`: one thread; `state` is reached only through the ABI functions
// `export_agent!` defines, which the host never runs concurrently or re-entrantly.
unsafe impl<T> Sync for AgentArea<T> {}

impl<T> AgentArea<T> {
    pub const fn new() -> Self {
        Self { state: core::cell::UnsafeCell::new(None), io: IoBuffer(core::cell::UnsafeCell::new([0; IO_REGION_BYTES])) }
    }
}

impl<T> AgentArea<T> {
    /// ABI 2: hands the `count` messages of a batch at `batch` to `receive`, in order, and
    /// records after each how many were handled (the host reads it if the agent faults).
    ///
    /// # Safety
    /// `batch` must be the io buffer's address with `count` messages written there as
    /// docs/ABI.md lays them out (the host guarantees this for the pointer it passes to
    /// `agent_receive_batch`), unwritten by anyone else during the call.
    pub unsafe fn receive_batch(&self, batch: *const u8, count: u32, mut receive: impl FnMut(&Message<'_>)) {
        let done = self.io.0.get().cast::<u8>().wrapping_add(abi::BATCH_OFFSET_DONE);
        let mut at = 0usize;
        for i in 0..count {
            if at + MESSAGE_HEADER_BYTES > IO_BUFFER_BYTES {
                break;
            }
            // SAFETY: the caller's contract: a message at `at` of the batch, in the io buffer.
            let msg = unsafe { Message::from_ptr(batch.add(at)) };
            let len = MESSAGE_HEADER_BYTES + msg.payload.len();
            receive(&msg);
            // SAFETY: `done` is the batch state word inside this area's io region (aligned: the
            // region is 16-aligned and the offset a multiple of 8); nothing else holds a
            // reference to those bytes.
            unsafe { done.cast::<u32>().write_volatile(i + 1) };
            at = abi::next_record(at, len);
        }
    }
}

impl<T> Default for AgentArea<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Exports the ABI (version 2) for an agent type that implements `Agent + Default`.
#[macro_export]
macro_rules! export_agent {
    ($ty:ty) => {
        $crate::__export_agent_common!($ty, 2);

        #[no_mangle]
        pub extern "C" fn agent_receive_batch(batch: i32, count: i32) -> i32 {
            let agent = __lockstep_agent();
            // SAFETY: the host passes the io buffer's address with `count` messages written
            // there as docs/ABI.md lays them out, and writes nothing during this call.
            unsafe { __LOCKSTEP_AREA.receive_batch(batch as *const u8, count.max(0) as u32, |m| $crate::Agent::receive(agent, m)) };
            0
        }
    };
}

/// Exports ABI version 1 (one `agent_receive` call per message) for an agent type that
/// implements `Agent + Default`: what runtimes before ABI 2 run.
#[macro_export]
macro_rules! export_agent_v1 {
    ($ty:ty) => {
        $crate::__export_agent_common!($ty, 1);

        #[no_mangle]
        pub extern "C" fn agent_receive(msg: i32) -> i32 {
            // SAFETY: the host passes the io buffer's address with a message header and its
            // payload written there (docs/ABI.md), and does not write the buffer again before
            // this call returns; `msg` does not outlive the call.
            let msg = unsafe { $crate::Message::from_ptr(msg as *const u8) };
            $crate::Agent::receive(__lockstep_agent(), &msg);
            0
        }
    };
}

/// What both ABI versions export (not for direct use).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_agent_common {
    ($ty:ty, $version:expr) => {
        static __LOCKSTEP_AREA: $crate::AgentArea<$ty> = $crate::AgentArea::new();

        fn __lockstep_agent() -> &'static mut $ty {
            // SAFETY: single-threaded wasm; the host never re-enters an agent, and each ABI
            // function below calls this once, so no other reference to the state is alive
            // while the one returned here is used.
            unsafe { (*__LOCKSTEP_AREA.state.get()).get_or_insert_with(<$ty as ::core::default::Default>::default) }
        }

        #[no_mangle]
        pub extern "C" fn lockstep_abi_version() -> i32 {
            $version
        }

        #[no_mangle]
        pub extern "C" fn lockstep_io_buffer() -> i32 {
            __LOCKSTEP_AREA.io.0.get() as i32
        }

        #[no_mangle]
        pub extern "C" fn agent_init() -> i32 {
            $crate::install_panic_hook();
            $crate::Agent::init(__lockstep_agent());
            0
        }

        #[no_mangle]
        pub extern "C" fn agent_step(ctx: i32) -> i32 {
            // SAFETY: the host passes the io buffer's address with a context written there
            // (docs/ABI.md), and does not write the buffer again before this call returns.
            let ctx = unsafe { $crate::Context::from_ptr(ctx as *const u8) };
            $crate::Agent::step(__lockstep_agent(), &ctx);
            0
        }

        #[no_mangle]
        pub extern "C" fn agent_shutdown() -> i32 {
            $crate::Agent::shutdown(__lockstep_agent());
            0
        }
    };
}

#[cfg(test)]
mod tests {
    use super::{sample, scale_below};

    #[test]
    fn random_below_scales_as_the_u128_multiply_shift_did() {
        let reference = |x: u64, n: u64| ((x as u128 * n as u128) >> 64) as u64;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let edges = [0u64, 1, 2, 3, 0xFFFF_FFFF, 0x1_0000_0000, 0x8000_0000_0000_0000, u64::MAX - 1, u64::MAX];
        let counts = [1u64, 2, 3, 7, 10_000, 65_537, 0x7FFF_FFFF, 0xFFFF_FFFE, 0xFFFF_FFFF, 0x1_0000_0000, 0x1_0000_0001, u64::MAX];
        for &n in &counts {
            for &e in &edges {
                assert_eq!(scale_below(e, n), reference(e, n), "x {e:#x} n {n}");
            }
            for _ in 0..10_000 {
                // xorshift64*: any spread of x will do
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
                assert_eq!(scale_below(v, n), reference(v, n), "x {v:#x} n {n}");
                assert!(scale_below(v, n) < n);
            }
        }
    }

    #[test]
    fn strings_and_packed_codes_round_trip() {
        let mut s = alloc::vec::Vec::new();
        sample::push_string(&mut s, "ünï");
        sample::push_string(&mut s, "");
        s.push(9);
        let (strings, rest) = sample::read_strings(&s, 2).unwrap();
        assert_eq!((strings, rest), (alloc::vec!["ünï", ""], &[9u8][..]));
        assert!(sample::read_strings(&s[..5], 1).is_none());
        let packed = sample::pack(&[1, 2, 3], 4);
        assert_eq!(packed, [0x21, 0x03]);
        assert_eq!(sample::unpack(&packed, 4, 3), [1, 2, 3]);
        assert_eq!(sample::pack(&[1, 2, 3, 0, 1], 2), [0x39, 0x01]);
    }
}
