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
//! The macro exports the ABI (docs/ABI.md): `agent_init`, `agent_step`, `agent_receive`,
//! `agent_shutdown`, `lockstep_abi_version`, `lockstep_io_buffer`, and installs a panic hook
//! that reports the panic message to the host before the agent traps.

extern crate alloc;

pub const ABI_VERSION: u32 = 1;
pub const IO_BUFFER_BYTES: usize = 65_536;
pub const MESSAGE_HEADER_BYTES: usize = 40;
pub const MAX_PAYLOAD_BYTES: usize = IO_BUFFER_BYTES - MESSAGE_HEADER_BYTES;
/// The host (JS orchestrator) as a message address.
pub const HOST: u64 = 0;

pub type AgentId = u64;

/// The raw host imports (module "lockstep"). Prefer the safe wrappers below.
pub mod raw {
    #[link(wasm_import_module = "lockstep")]
    extern "C" {
        pub fn send(to: i64, kind: i32, priority: i32, ptr: i32, len: i32) -> i32;
        pub fn tick() -> i64;
        pub fn self_id() -> i64;
        pub fn random_u64() -> i64;
        pub fn log(level: i32, ptr: i32, len: i32);
        pub fn report_panic(ptr: i32, len: i32);
        pub fn infer(model: i32, tag: i32, ptr: i32, len: i32) -> i32;
        pub fn granted() -> i32;
    }
}

/// Capability bits the runtime granted this agent (its manifest cut to the operator's policy).
pub mod grant {
    pub const SEND_HOST: i32 = 1;
    pub const SEND_AGENTS: i32 = 2;
    pub const INFER: i32 = 4;
    pub const LOG: i32 = 8;
    pub const RANDOM: i32 = 16;
    pub const CLOCK: i32 = 32;
}

/// What this agent was granted: `grant::*` bits.
pub fn granted() -> i32 {
    unsafe { raw::granted() }
}

/// Sender id of inference results.
pub const INFERENCE: u64 = u64::MAX;

/// Why an inference request was refused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferError {
    InputTooLarge,
    TooManyRequests,
    Unknown(i32),
}

/// Asks the runtime to run model `model` (a slot the embedder registered) on one sample:
/// each model input's per-sample bytes, in input order. The answer arrives at the next tick
/// as a message from `INFERENCE` with `kind == tag`; read it with `InferResult::parse`.
/// Requests of all agents for one model in one tick are batched into one call.
pub fn infer(model: u32, tag: u32, sample: &[u8]) -> Result<(), InferError> {
    match unsafe { raw::infer(model as i32, tag as i32, sample.as_ptr() as i32, sample.len() as i32) } {
        0 => Ok(()),
        -1 => Err(InferError::InputTooLarge),
        -2 => Err(InferError::TooManyRequests),
        other => Err(InferError::Unknown(other)),
    }
}

/// An inference answer: status 0 = ok (then `outputs` holds each output's per-sample bytes,
/// in output order), 1 = no such model, 2 = malformed input, 3 = the model failed.
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

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    PayloadTooLarge,
    OutboxFull,
    /// The recipient is outside this agent's `send` capability.
    Forbidden,
    Unknown(i32),
}

/// Sends `payload` to agent `to` (or `HOST`), delivered at the next tick.
pub fn send(to: AgentId, kind: u32, payload: &[u8]) -> Result<(), SendError> {
    send_with_priority(to, kind, 0, payload)
}

/// Like `send`; higher `priority` is delivered earlier within the recipient's tick.
pub fn send_with_priority(to: AgentId, kind: u32, priority: i32, payload: &[u8]) -> Result<(), SendError> {
    let code = unsafe { raw::send(to as i64, kind as i32, priority, payload.as_ptr() as i32, payload.len() as i32) };
    match code {
        0 => Ok(()),
        -1 => Err(SendError::PayloadTooLarge),
        -2 => Err(SendError::OutboxFull),
        -3 => Err(SendError::Forbidden),
        other => Err(SendError::Unknown(other)),
    }
}

/// The tick being run.
pub fn tick() -> u64 {
    unsafe { raw::tick() as u64 }
}

/// This agent's id.
pub fn self_id() -> AgentId {
    unsafe { raw::self_id() as u64 }
}

/// A deterministic random number: the stream depends only on the runtime seed and the agent id.
pub fn random_u64() -> u64 {
    unsafe { raw::random_u64() as u64 }
}

/// A uniform random number in `0..n` (n > 0).
pub fn random_below(n: u64) -> u64 {
    // Lemire's multiply-shift; the tiny bias is irrelevant for simulations and deterministic.
    ((random_u64() as u128 * n as u128) >> 64) as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

/// Writes a log line to the host (kept per call up to a bound, then dropped).
pub fn log(level: Level, text: &str) {
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
    /// `ptr` must point to at least 32 readable bytes (the host guarantees this).
    pub unsafe fn from_ptr(ptr: *const u8) -> Self {
        let b = core::slice::from_raw_parts(ptr, 32);
        Self { abi_version: rd_u32(b, 0), inbox_len: rd_u32(b, 4), tick: rd_u64(b, 8), agent_id: rd_u64(b, 16), max_agent_id: rd_u64(b, 24) }
    }
}

impl<'a> Message<'a> {
    /// # Safety
    /// `ptr` must point to a header plus `payload_len` bytes (the host guarantees this).
    pub unsafe fn from_ptr(ptr: *const u8) -> Self {
        let h = core::slice::from_raw_parts(ptr, MESSAGE_HEADER_BYTES);
        let len = (rd_u32(h, 32) as usize).min(MAX_PAYLOAD_BYTES);
        Self {
            from: rd_u64(h, 0),
            to: rd_u64(h, 8),
            seq: rd_u64(h, 16),
            kind: rd_u32(h, 24),
            priority: rd_u32(h, 28) as i32,
            payload: core::slice::from_raw_parts(ptr.add(MESSAGE_HEADER_BYTES), len),
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
        unsafe { raw::report_panic(text.as_ptr() as i32, text.len() as i32) };
    }));
}

#[cfg(not(target_arch = "wasm32"))]
pub fn install_panic_hook() {}

/// The io buffer the host writes contexts and messages into.
#[repr(C, align(16))]
pub struct IoBuffer(pub core::cell::UnsafeCell<[u8; IO_BUFFER_BYTES]>);
// Safety: wasm32 agents are single-threaded; the host writes only between calls.
unsafe impl Sync for IoBuffer {}

/// The agent's state directly followed by its io buffer, in one static: a step then touches
/// the state and the context (at the io buffer's start) on the same memory page, which matters
/// when thousands of agents step in a row (each step's first touches are cache/TLB misses).
#[repr(C, align(16))]
pub struct AgentArea<T> {
    pub state: core::cell::UnsafeCell<Option<T>>,
    pub io: IoBuffer,
}
// Safety: as for IoBuffer.
unsafe impl<T> Sync for AgentArea<T> {}

impl<T> AgentArea<T> {
    pub const fn new() -> Self {
        Self { state: core::cell::UnsafeCell::new(None), io: IoBuffer(core::cell::UnsafeCell::new([0; IO_BUFFER_BYTES])) }
    }
}

/// Exports the ABI for an agent type that implements `Agent + Default`.
#[macro_export]
macro_rules! export_agent {
    ($ty:ty) => {
        static __LOCKSTEP_AREA: $crate::AgentArea<$ty> = $crate::AgentArea::new();

        fn __lockstep_agent() -> &'static mut $ty {
            // Safety: single-threaded wasm; the host never re-enters an agent, so no other
            // reference to the state is alive while an ABI function runs.
            unsafe { (*__LOCKSTEP_AREA.state.get()).get_or_insert_with(<$ty as ::core::default::Default>::default) }
        }

        #[no_mangle]
        pub extern "C" fn lockstep_abi_version() -> i32 {
            $crate::ABI_VERSION as i32
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
            let ctx = unsafe { $crate::Context::from_ptr(ctx as *const u8) };
            $crate::Agent::step(__lockstep_agent(), &ctx);
            0
        }

        #[no_mangle]
        pub extern "C" fn agent_receive(msg: i32) -> i32 {
            let msg = unsafe { $crate::Message::from_ptr(msg as *const u8) };
            $crate::Agent::receive(__lockstep_agent(), &msg);
            0
        }

        #[no_mangle]
        pub extern "C" fn agent_shutdown() -> i32 {
            $crate::Agent::shutdown(__lockstep_agent());
            0
        }
    };
}
