//! lockstep-core: a deterministic multi-agent runtime.
//!
//! Data flow, one module each:
//! `sandbox` (wasm modules → isolated agent instances) → `scheduler` (one tick: deliver, step,
//! route) → `bus` (messages, canonical order, dead letters) → `replay_log`/`replay` (everything
//! that enters is recorded; a replay verifies every tick hash). `runtime` ties them together;
//! `abi` is the contract with agents (docs/ABI.md).

pub mod abi;
mod admission;
pub mod bus;
pub mod error;
pub mod event;
pub mod fault;
pub mod host;
pub mod inference;
mod inputs;
pub mod limits;
pub mod logging;
mod module_shape;
mod outputs;
pub mod queue;
mod recorder;
pub mod replay;
pub mod replay_log;
pub mod ring;
pub mod runtime;
pub mod sandbox;
pub mod scheduler;
pub mod security;
#[cfg(target_os = "linux")]
mod slab_memory;
mod tick_hash;

pub use bus::{AgentId, DeadLetter, DeadLetterReason, Message};
pub use error::{Digest, LockstepError, Result};
pub use event::Event;
pub use fault::{AbiCall, AgentState, Fault, FaultKind};
pub use replay::{replay, replay_trusting, Divergence, DivergenceKind, ReplayReport, ReplayTrust};
pub use runtime::{AgentInfo, DeepHash, ResourcePolicy, Runtime, RuntimeConfig};
pub use sandbox::MemoryAllocator;
pub use scheduler::TickReport;
