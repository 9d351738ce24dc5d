//! The lockstep agent ABI, versions 1 and 2 (2 adds batched receive and send): export names, import names, memory layouts, limits,
//! return codes and capability bits, the tensor element types of inference samples
//! ([`tensor_type`]), plus the layout of the shared-memory rings ([`ring`]) and
//! the host/SDK request-reply convention ([`request`], not part of the ABI).
//!
//! This crate is the single source of these numbers: the engine (`lockstep-core`) and the
//! guest SDK (`lockstep-sdk`) both depend on it, so they cannot disagree. `docs/ABI.md` is
//! its human-readable copy (and `docs/RINGS.md` of [`ring`]); a change here is a change there,
//! and any change to a layout bumps [`ABI_VERSION`] (or [`ring::VERSION`]).
//!
//! All layouts are little-endian. Offsets and sizes are in bytes.

#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod generate;
pub mod request;
pub mod ring;
pub mod tensor_type;

/// The newest ABI version this runtime speaks (what the SDK builds). A module's
/// `lockstep_abi_version()` returns a version from [`MIN_ABI_VERSION`] to this one, and the
/// runtime calls it the way that version says: version 1 gets one `agent_receive` call per
/// message, version 2 one `agent_receive_batch` call per [`IO_BUFFER_BYTES`] of messages.
pub const ABI_VERSION: u32 = 2;
/// The oldest ABI version this runtime still runs.
pub const MIN_ABI_VERSION: u32 = 1;

/// Module name of every host import.
pub const IMPORT_MODULE: &str = "lockstep";

/// Export: the agent's only linear memory (32-bit, defined, not shared).
pub const EXPORT_MEMORY: &str = "memory";
/// Export `() -> i32`: returns [`ABI_VERSION`]; called at load and at each spawn.
pub const EXPORT_ABI_VERSION: &str = "lockstep_abi_version";
/// Export `() -> i32`: returns a pointer to the agent's [`IO_BUFFER_BYTES`]-byte io buffer.
pub const EXPORT_IO_BUFFER: &str = "lockstep_io_buffer";
/// Export `() -> i32`: called once, at spawn; returns 0.
pub const EXPORT_INIT: &str = "agent_init";
/// Export `(context_ptr: i32) -> i32`: called once per tick with a context
/// ([`CONTEXT_BYTES`]) in the io buffer; returns 0.
pub const EXPORT_STEP: &str = "agent_step";
/// Export `(message_ptr: i32) -> i32`: called once per delivered message (a
/// [`MESSAGE_HEADER_BYTES`]-byte header then the payload, in the io buffer); returns 0.
pub const EXPORT_RECEIVE: &str = "agent_receive";
/// Export `() -> i32`: called on graceful shutdown; returns 0.
pub const EXPORT_SHUTDOWN: &str = "agent_shutdown";
/// Export (ABI 2) `(batch_ptr: i32, count: i32) -> i32`: called with `count` (≥ 1) messages
/// in the io buffer at `batch_ptr`, back to back, each a [`MESSAGE_HEADER_BYTES`]-byte header
/// then its payload, the next one starting at the following multiple of [`BATCH_ALIGN`]
/// bytes; returns 0. After handling each message the agent stores how many it has handled in
/// the u32 at [`BATCH_OFFSET_DONE`] of its io region: if it faults during the call, the
/// messages from that one on go to dead letters (`recipient_faulted_during_delivery`). A
/// version-2 module exports this instead of [`EXPORT_RECEIVE`].
pub const EXPORT_RECEIVE_BATCH: &str = "agent_receive_batch";

/// Import `(to: i64, kind: i32, priority: i32, ptr: i32, len: i32) -> i32`: queues a message;
/// returns [`SEND_OK`] or a `SEND_ERR_*` code.
pub const IMPORT_SEND: &str = "send";
/// Import `(to: i64, kind: i32, ptr: i32, len: i32) -> i32`: [`IMPORT_SEND`] at priority 0
/// (what the SDK's `send` calls). Why a second import: with five parameters, `send`'s last
/// argument is passed on the stack (the callee's two context pointers take two of x86-64's
/// six argument registers), and the host-call trampoline's 8-byte load of that 4-byte store
/// stalled: 10% of a 10,000 × 16 flood tick sat on it (BENCHMARKS.md, eighteenth session).
/// Four parameters all travel in registers.
pub const IMPORT_SEND_PLAIN: &str = "send_plain";
/// Import `() -> i64`: the current tick.
pub const IMPORT_TICK: &str = "tick";
/// Import `() -> i64`: this agent's id.
pub const IMPORT_SELF_ID: &str = "self_id";
/// Import `() -> i64`: the next number of this agent's deterministic random stream.
pub const IMPORT_RANDOM: &str = "random_u64";
/// Import `(ptr: i32, count: i32)`: writes the next `count` numbers of this agent's random
/// stream (u64 little-endian each, `count` ≤ [`MAX_RANDOM_FILL_WORDS`]) to `ptr`: the same
/// numbers `count` calls of [`IMPORT_RANDOM`] would return, for one host call. Needs the
/// `random` capability, as `random_u64` does.
pub const IMPORT_RANDOM_FILL: &str = "random_fill";
/// Import `(level: i32, ptr: i32, len: i32)`: writes a log line ([`log_level`]).
pub const IMPORT_LOG: &str = "log";
/// Import `(ptr: i32, len: i32)`: records a panic message before the agent traps.
pub const IMPORT_REPORT_PANIC: &str = "report_panic";
/// Import `(model: i32, tag: i32, ptr: i32, len: i32) -> i32`: asks for inference on one
/// sample; returns [`INFER_OK`] or an `INFER_ERR_*` code.
/// Optional: only agents that import it can ask for inference.
pub const IMPORT_INFER: &str = "infer";
/// Import `(model: i32, tag: i32, ptr: i32, len: i32) -> i32`: asks a language model (the
/// slot the host registered with `registerAgentLanguageModel`) to generate from a request
/// ([`generate`] gives its layout); returns [`INFER_OK`] or an `INFER_ERR_*` code (it shares
/// `infer`'s per-tick budget). Tokens arrive as messages from [`GENERATION_ID`] at the next
/// ticks. Optional, and needs the `infer` capability for the model.
pub const IMPORT_GENERATE: &str = "generate";
/// Import `() -> i32`: the capability bits ([`grant`]) the agent was granted
/// (docs/SECURITY.md). Always available.
pub const IMPORT_GRANTED: &str = "granted";
/// Import (ABI 2; any version may import it) `(ptr: i32, count: i32) -> i32`: queues `count`
/// messages laid out at `ptr` as send records ([`SEND_RECORD_HEADER_BYTES`]-byte header, the
/// payload, the next record at the following multiple of [`BATCH_ALIGN`]); returns how many
/// were queued, in order: fewer than `count` when one was refused (call `send` with it to
/// learn why). Records running past the agent's memory, or a negative count, fault the agent
/// (a host-call violation, as a bad pointer to `send` does). Needs the same capability as
/// `send`.
pub const IMPORT_SEND_BATCH: &str = "send_batch";

/// Send record field, u64: the recipient.
pub const SEND_RECORD_OFFSET_TO: usize = 0;
/// Send record field, u32: the kind.
pub const SEND_RECORD_OFFSET_KIND: usize = 8;
/// Send record field, i32: the priority.
pub const SEND_RECORD_OFFSET_PRIORITY: usize = 12;
/// Send record field, u32: the payload length.
pub const SEND_RECORD_OFFSET_LEN: usize = 16;
/// Send record field, u32: reserved, 0.
pub const SEND_RECORD_OFFSET_RESERVED: usize = 20;
/// Size of a send record's header; the payload follows it.
pub const SEND_RECORD_HEADER_BYTES: usize = 24;
/// Records of a batch (received or sent) start at multiples of this many bytes from its start.
pub const BATCH_ALIGN: usize = 8;
/// ABI 2: the io region is the io buffer and then [`BATCH_STATE_BYTES`] of batch state: it is
/// `IO_BUFFER_BYTES + BATCH_STATE_BYTES` long from `lockstep_io_buffer()`.
pub const BATCH_STATE_BYTES: u32 = 8;
/// ABI 2, u32 at this offset of the io region: messages of the current `agent_receive_batch`
/// call the agent has handled (the host sets it to 0 before each call).
pub const BATCH_OFFSET_DONE: usize = IO_BUFFER_BYTES as usize;

/// Where the record after one of `len` bytes (header and payload) starting at `at` starts.
#[inline]
pub const fn next_record(at: usize, len: usize) -> usize {
    (at + len).div_ceil(BATCH_ALIGN) * BATCH_ALIGN
}

/// All calls of one tick (its `agent_receive` calls and `agent_step`) share a budget of this
/// many per-call fuel budgets; each call gets at most `fuelPerCall` of what is left.
pub const FUEL_CALL_BUDGETS_PER_TICK: u64 = 4;

/// Size of the guest-owned buffer the host writes contexts and messages into.
pub const IO_BUFFER_BYTES: u32 = 65_536;

/// Size of the context passed to `agent_step`.
pub const CONTEXT_BYTES: usize = 32;
/// Context field, u32: the ABI version ([`ABI_VERSION`]).
pub const CONTEXT_OFFSET_ABI_VERSION: usize = 0;
/// Context field, u32: messages delivered to `agent_receive` this tick, before this step.
pub const CONTEXT_OFFSET_INBOX_LEN: usize = 4;
/// Context field, u64: the tick number.
pub const CONTEXT_OFFSET_TICK: usize = 8;
/// Context field, u64: this agent's id.
pub const CONTEXT_OFFSET_AGENT_ID: usize = 16;
/// Context field, u64: the highest agent id assigned so far (ids are `1..=max`).
pub const CONTEXT_OFFSET_MAX_AGENT_ID: usize = 24;

/// Size of the message header passed to `agent_receive`; the payload follows it.
pub const MESSAGE_HEADER_BYTES: usize = 40;
/// Message field, u64: the sender id ([`HOST_ID`] = the host).
pub const MESSAGE_OFFSET_FROM: usize = 0;
/// Message field, u64: the recipient id.
pub const MESSAGE_OFFSET_TO: usize = 8;
/// Message field, u64: the sender's per-sender sequence number.
pub const MESSAGE_OFFSET_SEQ: usize = 16;
/// Message field, u32: the user-defined kind tag.
pub const MESSAGE_OFFSET_KIND: usize = 24;
/// Message field, i32: the priority (higher is delivered first).
pub const MESSAGE_OFFSET_PRIORITY: usize = 28;
/// Message field, u32: the payload length (at most [`MAX_PAYLOAD_BYTES`]).
pub const MESSAGE_OFFSET_PAYLOAD_LEN: usize = 32;
/// Message field, u32: reserved, always 0.
pub const MESSAGE_OFFSET_RESERVED: usize = 36;

/// Largest payload one message may carry: it must fit the io buffer behind its header.
pub const MAX_PAYLOAD_BYTES: usize = IO_BUFFER_BYTES as usize - MESSAGE_HEADER_BYTES;

/// Address of the host (the JS orchestrator). Agent ids start at 1.
pub const HOST_ID: u64 = 0;

/// Sender id of inference results (the inference service).
pub const INFERENCE_ID: u64 = u64::MAX;

/// Sender id of generated tokens (the language-model service).
pub const GENERATION_ID: u64 = u64::MAX - 1;

/// `infer` return code: the request was queued; the answer arrives next tick.
pub const INFER_OK: i32 = 0;
/// `infer` return code: the sample is larger than [`MAX_PAYLOAD_BYTES`].
pub const INFER_ERR_INPUT_TOO_LARGE: i32 = -1;
/// `infer` return code: more than [`MAX_INFER_REQUESTS_PER_TICK`] requests, or
/// [`MAX_INFER_BYTES_PER_TICK`] bytes of input, this tick.
pub const INFER_ERR_TOO_MANY_REQUESTS: i32 = -2;
/// Most inference requests one agent may make per tick.
pub const MAX_INFER_REQUESTS_PER_TICK: usize = 64;
/// Most inference input bytes one agent may send per tick, over all its requests.
pub const MAX_INFER_BYTES_PER_TICK: usize = 1 << 20;
/// Status word at the start of an inference result payload (then the output bytes): ok, the
/// outputs follow.
pub const INFER_STATUS_OK: u32 = 0;
/// Inference result status: no model in that slot.
pub const INFER_STATUS_NO_SUCH_MODEL: u32 = 1;
/// Inference result status: the sample does not match the model's inputs.
pub const INFER_STATUS_BAD_INPUT: u32 = 2;
/// Inference result status: the model failed to run.
pub const INFER_STATUS_FAILED: u32 = 3;
/// Inference result status: the agent's capabilities do not cover this model.
pub const INFER_STATUS_FORBIDDEN: u32 = 4;
/// Inference result status: the model's outputs for one sample (plus the 4-byte status)
/// exceed [`MAX_PAYLOAD_BYTES`].
pub const INFER_STATUS_OUTPUT_TOO_LARGE: u32 = 5;

/// `send` return code: the message was queued for delivery at the next tick.
pub const SEND_OK: i32 = 0;
/// `send` return code: the payload is larger than [`MAX_PAYLOAD_BYTES`].
pub const SEND_ERR_PAYLOAD_TOO_LARGE: i32 = -1;
/// `send` return code: this tick's [`MAX_OUTBOX_PER_TICK`] messages or
/// [`MAX_OUTBOX_BYTES_PER_TICK`] payload bytes are used up.
pub const SEND_ERR_OUTBOX_FULL: i32 = -2;
/// `send` return code: the recipient is outside the agent's `send` capability.
pub const SEND_ERR_FORBIDDEN: i32 = -3;

/// Most messages one agent may send in one tick. `agent_init` and `agent_shutdown` each have
/// a budget of their own. Past it, `send` returns [`SEND_ERR_OUTBOX_FULL`].
pub const MAX_OUTBOX_PER_TICK: usize = 4_096;
/// Most payload bytes one agent may send in one tick (a budget in bytes, not only a count:
/// 4,096 maximal messages would be 256 MiB). Past it, `send` returns [`SEND_ERR_OUTBOX_FULL`].
pub const MAX_OUTBOX_BYTES_PER_TICK: usize = 1 << 20;
/// Most messages waiting in one agent's inbox; past it, a message is dead-lettered
/// (`recipient_inbox_full`), deterministically, in routing order.
pub const MAX_INBOX_MESSAGES: usize = 65_536;
/// Most payload bytes waiting in one agent's inbox; past it, a message is dead-lettered
/// (`recipient_inbox_full`), deterministically, in routing order.
pub const MAX_INBOX_BYTES: usize = 16 << 20;
/// Most log lines one agent may write per call.
pub const MAX_LOG_LINES_PER_CALL: usize = 64;
/// Most numbers one `random_fill` call writes; a larger count faults the agent. Small on
/// purpose: a call costs only the fuel of the call instruction (the host cannot charge fuel
/// without restarting a time slice's count), so the count bounds the host work one unit of an
/// agent's fuel can buy (a loop of 32-number calls burned the default 10,000,000 fuel in 240 ms,
/// a loop of `random_u64` calls in 54 ms: the wall-clock deadline, 1 s, stays a backstop).
pub const MAX_RANDOM_FILL_WORDS: usize = 32;
/// How many numbers the SDK's `random_u64` fetches with one `random_fill` call (the rest wait
/// in the agent's memory for its next draws).
pub const SDK_RANDOM_AHEAD_WORDS: usize = 32;
const _: () = assert!(SDK_RANDOM_AHEAD_WORDS <= MAX_RANDOM_FILL_WORDS);
/// Longest log line kept (bytes); the rest of a longer line is cut.
pub const MAX_LOG_LINE_BYTES: usize = 1_024;
/// Most log lines one agent may write per tick (and in `agent_init`, and in
/// `agent_shutdown`), over all its calls: without it the per-call limit reset on every
/// `agent_receive`, so one agent with 4,096 messages could leave 256 MiB of lines in one tick.
pub const MAX_LOG_LINES_PER_TICK: usize = 1_024;
/// Longest panic message kept (bytes).
pub const MAX_PANIC_MESSAGE_BYTES: usize = 4_096;

// Module limits, checked at load (`module_shape`): each bounds host memory one agent could
// take outside its memory cap. docs/ABI.md lists them.

/// Largest module accepted, bytes.
pub const MAX_MODULE_BYTES: usize = 16 << 20;
/// Most bytes of custom sections other than the manifest and the signature (names,
/// producers, debug info), in all.
pub const MAX_CUSTOM_SECTION_BYTES: usize = 1 << 20;
/// Tables a module may declare.
pub const MAX_TABLES: usize = 1;
/// Elements a table may hold (8 bytes each on the host), initially and after growth.
pub const MAX_TABLE_ELEMENTS: usize = 65_536;
/// Functions a module may import and define, together: each function that escapes (exported,
/// in an element segment, `ref.func`) takes 32 bytes of the instance's host-side context,
/// outside the memory cap, and the pooling allocator refuses instances over 1 MiB. Without
/// it a module passed admission on Slab and failed on Pooling, and ~1,000,000 functions
/// took 32 MiB of host memory per agent.
pub const MAX_FUNCTIONS: usize = 16_384;
/// Globals a module may declare (each lives in the agent's instance, outside its memory).
pub const MAX_GLOBALS: usize = 1_024;

/// Capability bits the `granted` import returns: what the agent's signed manifest declares,
/// cut to the operator's policy (docs/SECURITY.md).
pub mod grant {
    /// The agent may send to the host (`send` capability `host` or `any`).
    pub const SEND_HOST: i32 = 1;
    /// The agent may send to other agents (`send` capability `agents` or `any`).
    pub const SEND_AGENTS: i32 = 2;
    /// The agent may ask for inference (`infer` names at least one model).
    pub const INFER: i32 = 4;
    /// The agent's log lines are kept (`log` capability).
    pub const LOG: i32 = 8;
    /// The agent may draw random numbers (`random` capability).
    pub const RANDOM: i32 = 16;
    /// The agent may read the tick (`clock` capability).
    pub const CLOCK: i32 = 32;
    /// Every bit: what an agent granted everything sees.
    pub const ALL: i32 = SEND_HOST | SEND_AGENTS | INFER | LOG | RANDOM | CLOCK;
}

/// Levels of the `log` import's `level` argument.
pub mod log_level {
    /// An error.
    pub const ERROR: u32 = 1;
    /// A warning.
    pub const WARN: u32 = 2;
    /// Information.
    pub const INFO: u32 = 3;
    /// Debugging detail.
    pub const DEBUG: u32 = 4;
    /// Tracing detail.
    pub const TRACE: u32 = 5;
}

// Layout invariants, checked at compile time.
const _: () = {
    assert!(MESSAGE_HEADER_BYTES + MAX_PAYLOAD_BYTES == IO_BUFFER_BYTES as usize);
    assert!(CONTEXT_BYTES <= IO_BUFFER_BYTES as usize);
    assert!(CONTEXT_OFFSET_MAX_AGENT_ID + 8 == CONTEXT_BYTES);
    assert!(MESSAGE_OFFSET_RESERVED + 4 == MESSAGE_HEADER_BYTES);
    // The host writes u64 fields at 8-aligned offsets of a 16-aligned buffer.
    assert!(MESSAGE_HEADER_BYTES.is_multiple_of(8) && CONTEXT_BYTES.is_multiple_of(8));
    assert!(MAX_INFER_BYTES_PER_TICK >= MAX_PAYLOAD_BYTES);
    assert!(MAX_OUTBOX_BYTES_PER_TICK >= MAX_PAYLOAD_BYTES);
    assert!(MAX_INBOX_BYTES >= MAX_OUTBOX_BYTES_PER_TICK);
    assert!(grant::ALL == 63);
};

#[cfg(test)]
mod tests {
    use super::*;

    /// `fields` (offset, size) tile `0..total` exactly: in order, no gap, no overlap, every
    /// field aligned to its size.
    fn assert_tiles(what: &str, fields: &[(usize, usize)], total: usize) {
        let mut at = 0;
        for &(offset, size) in fields {
            assert_eq!(offset, at, "{what}: field at {offset} should start at {at} (gap or overlap)");
            assert_eq!(offset % size, 0, "{what}: field at {offset} is not {size}-aligned");
            at = offset + size;
        }
        assert_eq!(at, total, "{what}: fields end at {at}, not at {total}");
    }

    #[test]
    fn the_context_fields_tile_the_context() {
        assert_tiles(
            "context",
            &[
                (CONTEXT_OFFSET_ABI_VERSION, 4),
                (CONTEXT_OFFSET_INBOX_LEN, 4),
                (CONTEXT_OFFSET_TICK, 8),
                (CONTEXT_OFFSET_AGENT_ID, 8),
                (CONTEXT_OFFSET_MAX_AGENT_ID, 8),
            ],
            CONTEXT_BYTES,
        );
    }

    #[test]
    fn the_message_fields_tile_the_header() {
        assert_tiles(
            "message header",
            &[
                (MESSAGE_OFFSET_FROM, 8),
                (MESSAGE_OFFSET_TO, 8),
                (MESSAGE_OFFSET_SEQ, 8),
                (MESSAGE_OFFSET_KIND, 4),
                (MESSAGE_OFFSET_PRIORITY, 4),
                (MESSAGE_OFFSET_PAYLOAD_LEN, 4),
                (MESSAGE_OFFSET_RESERVED, 4),
            ],
            MESSAGE_HEADER_BYTES,
        );
        assert_eq!(MESSAGE_HEADER_BYTES + MAX_PAYLOAD_BYTES, IO_BUFFER_BYTES as usize);
    }

    #[test]
    fn the_ring_record_header_fields_tile_the_record_header() {
        use ring::*;
        assert_tiles(
            "ring record header",
            &[
                (RECORD_OFFSET_PAYLOAD_LEN, 4),
                (RECORD_OFFSET_TYPE, 2),
                (RECORD_OFFSET_FLAGS, 2),
                (RECORD_OFFSET_KIND, 4),
                (RECORD_OFFSET_PRIORITY, 4),
                (RECORD_OFFSET_AGENT, 8),
            ],
            RECORD_HEADER_BYTES,
        );
    }

    #[test]
    fn head_and_tail_own_a_cache_line_each_before_the_data() {
        use ring::*;
        assert_eq!((OFFSET_MAGIC, OFFSET_VERSION, OFFSET_CAPACITY), (0, 4, 8));
        // head and tail each own a 64-byte cache line, and the data area starts after both.
        assert_eq!(OFFSET_HEAD, 64);
        assert_eq!(OFFSET_TAIL, OFFSET_HEAD + 64);
        assert_eq!(HEADER_BYTES, OFFSET_TAIL + 64);
        assert_eq!(HEADER_BYTES % RECORD_ALIGN, 0);
    }

    #[test]
    fn record_sizes_are_aligned_and_hold_header_and_payload() {
        use ring::*;
        for len in [0, 1, 7, 8, 9, 100, MAX_PAYLOAD_BYTES] {
            let bytes = record_bytes(len);
            assert_eq!(bytes % RECORD_ALIGN, 0);
            assert!(bytes >= RECORD_HEADER_BYTES + len && bytes < RECORD_HEADER_BYTES + len + RECORD_ALIGN);
        }
        assert_eq!(MAGIC.to_le_bytes(), *b"LSRG");
    }

    #[test]
    fn status_codes_are_distinct() {
        let send = [SEND_OK, SEND_ERR_PAYLOAD_TOO_LARGE, SEND_ERR_OUTBOX_FULL, SEND_ERR_FORBIDDEN];
        let infer = [INFER_OK, INFER_ERR_INPUT_TOO_LARGE, INFER_ERR_TOO_MANY_REQUESTS];
        let status =
            [INFER_STATUS_OK, INFER_STATUS_NO_SUCH_MODEL, INFER_STATUS_BAD_INPUT, INFER_STATUS_FAILED, INFER_STATUS_FORBIDDEN, INFER_STATUS_OUTPUT_TOO_LARGE];
        for (i, a) in send.iter().enumerate() {
            assert!(send[i + 1..].iter().all(|b| a != b));
        }
        for (i, a) in infer.iter().enumerate() {
            assert!(infer[i + 1..].iter().all(|b| a != b));
        }
        for (i, a) in status.iter().enumerate() {
            assert!(status[i + 1..].iter().all(|b| a != b));
        }
        let bits = [grant::SEND_HOST, grant::SEND_AGENTS, grant::INFER, grant::LOG, grant::RANDOM, grant::CLOCK];
        for (i, a) in bits.iter().enumerate() {
            assert_eq!(a.count_ones(), 1);
            assert!(bits[i + 1..].iter().all(|b| a & b == 0));
        }
    }
}
