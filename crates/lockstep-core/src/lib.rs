//! lockstep-core: a deterministic, replayable multi-agent runtime. Agents are sandboxed
//! WebAssembly modules on a tick clock; every input is recorded, and a replay verifies every
//! tick hash. This crate is the engine under the Node.js package; it can be embedded alone
//! (`examples/embed`).
//!
//! # Public surface
//! Everything an embedder needs, and nothing else (the rest is private to the crate):
//! - the runtime: [`Runtime`], [`RuntimeConfig`], [`ResourcePolicy`], [`WorkerScaling`], [`MemoryAllocator`],
//!   workflow graphs ([`Runtime::connect`], [`Runtime::set_trigger`], [`Trigger`]),
//!   what it reports ([`TickReport`], [`AgentInfo`], [`DeepHash`], [`Event`], [`Message`],
//!   [`DeadLetter`], [`DeadLetterReason`], [`AgentState`], [`Fault`], [`FaultKind`],
//!   [`AbiCall`], [`AgentId`], [`Digest`]);
//! - one error type, [`LockstepError`] (with a stable [`LockstepError::code`]), and [`Result`];
//! - replay: [`replay`], [`replay_trusting`], [`replay_from`], [`ReplayTrust`],
//!   [`ReplayReport`], [`Divergence`], [`DivergenceKind`]; the log format itself in
//!   [`replay_log`];
//! - snapshots: [`Runtime::snapshot`], [`Runtime::restore`], [`RestoreOptions`],
//!   [`ExpectedSession`], [`SnapshotInfo`]; the format in [`snapshot`];
//! - the on-disk journal and crash recovery: [`JournalConfig`], [`FsyncPolicy`],
//!   [`Runtime::recover`], [`RecoverOptions`], [`RecoveryReport`]; verifying and inspecting
//!   journals and logs in [`journal`];
//! - modules: [`abi`] (the agent contract, from the `lockstep-abi` crate), [`limits`] (every
//!   host-side queue's bound), [`ring`] (shared-memory ring endpoints), [`security`] (signing,
//!   manifests, keys), [`inference`] (the ONNX Runtime engine), [`logging`] (the bridge from
//!   `tracing` to an embedder's logger), [`observe`] (read-only views for a dashboard).
//!
//! # Inside, one job per module
//! `admission` (shape, signature, grants) → `sandbox` (compiled modules, isolated instances;
//! `host`: the imports) → `runtime` (the facade and the tick's path: `inputs` in,
//! `agents` and `graph` order the phases, `scheduler` runs them, `bus` orders messages,
//! `outputs` out) → `tick_hash` (every
//! hash of docs/REPLAY.md) → `recorder` (the only writer of the log, through its sinks:
//! memory, and `journal` on disk) →
//! `replay` (feeds a log back through the same input path). ARCHITECTURE.md draws it.

#![deny(missing_docs)]

pub mod abi;
mod admission;
mod agents;
mod bus;
mod error;
mod event;
mod fault;
mod graph;
mod held_routes;
mod host;
pub mod inference;
mod inputs;
pub mod journal;
pub mod limits;
pub mod logging;
mod mailbox;
mod module_shape;
pub mod observe;
mod outputs;
mod queue;
mod recorder;
mod replay;
pub mod replay_log;
pub mod ring;
mod runtime;
mod sandbox;
mod scheduler;
pub mod security;
#[cfg(target_os = "linux")]
mod slab_memory;
pub mod snapshot;
mod tick_hash;
mod work_share;

pub use bus::{AgentId, DeadLetter, DeadLetterReason, Message};
pub use error::{Digest, LockstepError, Result};
pub use event::Event;
pub use fault::{AbiCall, AgentState, Fault, FaultKind};
pub use graph::Trigger;
pub use journal::{FsyncPolicy, JournalConfig, RecoverOptions, RecoveryReport};
pub use replay::{replay, replay_from, replay_trusting, Divergence, DivergenceKind, ReplayReport, ReplayTrust};
pub use runtime::{AgentInfo, DeepHash, ResourcePolicy, Runtime, RuntimeConfig, WorkerScaling};
pub use sandbox::MemoryAllocator;
pub use scheduler::TickReport;
pub use snapshot::{ExpectedSession, RestoreOptions, SnapshotInfo};
