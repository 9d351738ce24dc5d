//! Language-model generation through the `generate` import ([`crate::IMPORT_GENERATE`]).
//!
//! A request (the import's `ptr`/`len` bytes) is a [`REQUEST_HEADER_BYTES`]-byte header, then
//! `stop_count` stop sequences (each a u32 length and its bytes), then the prompt: UTF-8 text
//! (tokenized on the host) or, with [`FLAG_TOKEN_IDS`], u32 token ids. Tokens come back as
//! messages from [`crate::GENERATION_ID`] whose `kind` is the request's tag: at most one per
//! request per tick, each a [`RESULT_HEADER_BYTES`]-byte header (status, token count), the
//! token ids (u32 each), then the bytes of their text (empty without a host tokenizer). The
//! last message of a request has a final status (anything but [`STATUS_MORE`]).

/// Request field, u32: flags ([`FLAG_TOKEN_IDS`]).
pub const REQUEST_OFFSET_FLAGS: usize = 0;
/// Request field, u32: most tokens to generate, 1..=[`MAX_TOKENS`].
pub const REQUEST_OFFSET_MAX_TOKENS: usize = 4;
/// Request field, f32: temperature, 0 (greedy) ..= 100.
pub const REQUEST_OFFSET_TEMPERATURE: usize = 8;
/// Request field, f32: top-p, in (0, 1] (1: off).
pub const REQUEST_OFFSET_TOP_P: usize = 12;
/// Request field, u32: top-k (0: off).
pub const REQUEST_OFFSET_TOP_K: usize = 16;
/// Request field, u32: how many stop sequences follow the header, ..=[`MAX_STOP_SEQUENCES`].
pub const REQUEST_OFFSET_STOP_COUNT: usize = 20;
/// Request field, u64: the sampler's seed; 0: derived from the runtime's seed, the agent's
/// id and how many `generate` requests it made before (docs/ABI.md).
pub const REQUEST_OFFSET_SEED: usize = 24;
/// Size of a request's header.
pub const REQUEST_HEADER_BYTES: usize = 32;

/// Request flag: the prompt is u32 token ids, not text.
pub const FLAG_TOKEN_IDS: u32 = 1;

/// Most tokens one request may generate.
pub const MAX_TOKENS: usize = 4_096;
/// Most stop sequences of one request.
pub const MAX_STOP_SEQUENCES: usize = 8;
/// Longest stop sequence, bytes.
pub const MAX_STOP_BYTES: usize = 64;

/// Result field, u32: the status (`STATUS_*`).
pub const RESULT_OFFSET_STATUS: usize = 0;
/// Result field, u32: how many token ids follow the header.
pub const RESULT_OFFSET_TOKEN_COUNT: usize = 4;
/// Size of a result's header.
pub const RESULT_HEADER_BYTES: usize = 8;

/// Status: tokens follow, and more will come.
pub const STATUS_MORE: u32 = 0;
/// Final status: the text reached a stop sequence (its last tokens are delivered).
pub const STATUS_STOP: u32 = 1;
/// Final status: the model produced an end-of-sequence token (not delivered).
pub const STATUS_EOS: u32 = 2;
/// Final status: `max_tokens` tokens were generated.
pub const STATUS_MAX_TOKENS: u32 = 3;
/// Final status: prompt and tokens fill the model's context.
pub const STATUS_CONTEXT_FULL: u32 = 4;
/// Final status, nothing generated: no language model in that slot.
pub const STATUS_NO_SUCH_MODEL: u32 = 16;
/// Final status, nothing generated: the request is malformed or cannot run (empty or too long
/// a prompt, a token outside the vocabulary, bad options, a text prompt for a model without a
/// host tokenizer).
pub const STATUS_BAD_REQUEST: u32 = 17;
/// Final status, nothing generated: the agent's capabilities do not cover this model.
pub const STATUS_FORBIDDEN: u32 = 18;
/// Final status: the model failed to run (tokens delivered before stand).
pub const STATUS_FAILED: u32 = 19;
/// Final status, nothing generated: too many generations wait for this model.
pub const STATUS_BUSY: u32 = 20;

const _: () = {
    assert!(REQUEST_OFFSET_SEED + 8 == REQUEST_HEADER_BYTES);
    assert!(RESULT_OFFSET_TOKEN_COUNT + 4 == RESULT_HEADER_BYTES);
    assert!(REQUEST_HEADER_BYTES + MAX_STOP_SEQUENCES * (4 + MAX_STOP_BYTES) < crate::MAX_PAYLOAD_BYTES);
};
