//! The agent ABI, version 1: export names, import names, memory layouts and return codes.
//!
//! `docs/ABI.md` is the human-readable copy of this file; a change here is a change there,
//! and any change to a layout bumps [`ABI_VERSION`].

/// The ABI version this runtime speaks. A module's `lockstep_abi_version()` must return it.
pub const ABI_VERSION: u32 = 1;

/// Module name of every host import.
pub const IMPORT_MODULE: &str = "lockstep";

pub const EXPORT_MEMORY: &str = "memory";
pub const EXPORT_ABI_VERSION: &str = "lockstep_abi_version";
pub const EXPORT_IO_BUFFER: &str = "lockstep_io_buffer";
pub const EXPORT_INIT: &str = "agent_init";
pub const EXPORT_STEP: &str = "agent_step";
pub const EXPORT_RECEIVE: &str = "agent_receive";
pub const EXPORT_SHUTDOWN: &str = "agent_shutdown";

pub const IMPORT_SEND: &str = "send";
pub const IMPORT_TICK: &str = "tick";
pub const IMPORT_SELF_ID: &str = "self_id";
pub const IMPORT_RANDOM: &str = "random_u64";
pub const IMPORT_LOG: &str = "log";
pub const IMPORT_REPORT_PANIC: &str = "report_panic";
/// Optional: only agents that import it can ask for inference.
pub const IMPORT_INFER: &str = "infer";
/// Always available: the capability bits the agent was granted (docs/SECURITY.md).
pub const IMPORT_GRANTED: &str = "granted";

/// All calls of one tick (its `agent_receive` calls and `agent_step`) share a budget of this
/// many per-call fuel budgets; each call gets at most `fuelPerCall` of what is left.
pub const FUEL_CALL_BUDGETS_PER_TICK: u64 = 4;

/// Size of the guest-owned buffer the host writes contexts and messages into.
pub const IO_BUFFER_BYTES: u32 = 65_536;

/// Context passed to `agent_step`: 32 bytes, little-endian.
pub const CONTEXT_BYTES: usize = 32;
pub const CONTEXT_OFFSET_ABI_VERSION: usize = 0; // u32
pub const CONTEXT_OFFSET_INBOX_LEN: usize = 4; // u32: messages delivered before this step, this tick
pub const CONTEXT_OFFSET_TICK: usize = 8; // u64
pub const CONTEXT_OFFSET_AGENT_ID: usize = 16; // u64
pub const CONTEXT_OFFSET_MAX_AGENT_ID: usize = 24; // u64: highest agent id assigned so far

/// Message header passed to `agent_receive`: 40 bytes, little-endian, payload follows.
pub const MESSAGE_HEADER_BYTES: usize = 40;
pub const MESSAGE_OFFSET_FROM: usize = 0; // u64, 0 = the host (JS)
pub const MESSAGE_OFFSET_TO: usize = 8; // u64
pub const MESSAGE_OFFSET_SEQ: usize = 16; // u64, per-sender sequence number
pub const MESSAGE_OFFSET_KIND: usize = 24; // u32, user-defined tag
pub const MESSAGE_OFFSET_PRIORITY: usize = 28; // i32, higher is delivered first
pub const MESSAGE_OFFSET_PAYLOAD_LEN: usize = 32; // u32
pub const MESSAGE_OFFSET_RESERVED: usize = 36; // u32, always 0

/// Largest payload one message may carry: it must fit the io buffer behind its header.
pub const MAX_PAYLOAD_BYTES: usize = IO_BUFFER_BYTES as usize - MESSAGE_HEADER_BYTES;

/// Address of the host (the JS orchestrator). Agent ids start at 1.
pub const HOST_ID: u64 = 0;

/// Sender id of inference results (the inference service).
pub const INFERENCE_ID: u64 = u64::MAX;

/// Return codes of the `infer` import.
pub const INFER_OK: i32 = 0;
pub const INFER_ERR_INPUT_TOO_LARGE: i32 = -1;
pub const INFER_ERR_TOO_MANY_REQUESTS: i32 = -2;
/// Most inference requests one agent may make per tick, and most input bytes in all.
pub const MAX_INFER_REQUESTS_PER_TICK: usize = 64;
pub const MAX_INFER_BYTES_PER_TICK: usize = 1 << 20;
/// Status word at the start of an inference result payload (then the output bytes).
pub const INFER_STATUS_OK: u32 = 0;
pub const INFER_STATUS_NO_SUCH_MODEL: u32 = 1;
pub const INFER_STATUS_BAD_INPUT: u32 = 2;
pub const INFER_STATUS_FAILED: u32 = 3;
/// The agent's capabilities do not cover this model.
pub const INFER_STATUS_FORBIDDEN: u32 = 4;
/// The model's outputs for one sample (plus the 4-byte status) exceed `MAX_PAYLOAD_BYTES`.
pub const INFER_STATUS_OUTPUT_TOO_LARGE: u32 = 5;

/// Return codes of the `send` import.
pub const SEND_OK: i32 = 0;
pub const SEND_ERR_PAYLOAD_TOO_LARGE: i32 = -1;
pub const SEND_ERR_OUTBOX_FULL: i32 = -2;
/// The recipient is outside the agent's `send` capability.
pub const SEND_ERR_FORBIDDEN: i32 = -3;

/// Most messages one agent may send in one tick, and most payload bytes (a budget in bytes,
/// not only a count: 4,096 maximal messages would be 256 MiB). `agent_init` and
/// `agent_shutdown` each have a budget of their own. Past either, `send` returns
/// `SEND_ERR_OUTBOX_FULL`.
pub const MAX_OUTBOX_PER_TICK: usize = 4_096;
pub const MAX_OUTBOX_BYTES_PER_TICK: usize = 1 << 20;
/// Most messages, and payload bytes, waiting in one agent's inbox; past either, a message is
/// dead-lettered (`recipient_inbox_full`), deterministically, in routing order.
pub const MAX_INBOX_MESSAGES: usize = 65_536;
pub const MAX_INBOX_BYTES: usize = 16 << 20;
/// Most log lines one agent may write per call, and longest line kept (bytes).
pub const MAX_LOG_LINES_PER_CALL: usize = 64;
pub const MAX_LOG_LINE_BYTES: usize = 1_024;
/// Most log lines one agent may write per tick (and in `agent_init`, and in
/// `agent_shutdown`), over all its calls: without it the per-call limit reset on every
/// `agent_receive`, so one agent with 4,096 messages could leave 256 MiB of lines in one tick.
pub const MAX_LOG_LINES_PER_TICK: usize = 1_024;
/// Longest panic message kept (bytes).
pub const MAX_PANIC_MESSAGE_BYTES: usize = 4_096;

/// Module limits, checked at load (`module_shape`): each bounds host memory one agent could
/// take outside its memory cap. docs/ABI.md lists them.
/// Largest module accepted, bytes.
pub const MAX_MODULE_BYTES: usize = 16 << 20;
/// Custom sections other than the manifest and the signature (names, producers, debug info).
pub const MAX_CUSTOM_SECTION_BYTES: usize = 1 << 20;
/// Tables a module may declare, and elements a table may hold (8 bytes each on the host).
pub const MAX_TABLES: usize = 1;
pub const MAX_TABLE_ELEMENTS: usize = 65_536;
/// Functions a module may import and define, together: each function that escapes (exported,
/// in an element segment, `ref.func`) takes 32 bytes of the instance's host-side context,
/// outside the memory cap, and the pooling allocator refuses instances over 1 MiB. Without
/// it a module passed admission on Slab and failed on Pooling, and ~1,000,000 functions
/// took 32 MiB of host memory per agent.
pub const MAX_FUNCTIONS: usize = 16_384;
/// Globals a module may declare (each lives in the agent's instance, outside its memory).
pub const MAX_GLOBALS: usize = 1_024;
