//! Why an agent stopped running, and the lifecycle states it can be in.

use std::fmt;

/// The ABI function that was running when a fault happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiCall {
    Init,
    Step,
    Receive,
    Shutdown,
}

impl AbiCall {
    pub fn export_name(&self) -> &'static str {
        match self {
            Self::Init => crate::abi::EXPORT_INIT,
            Self::Step => crate::abi::EXPORT_STEP,
            Self::Receive => crate::abi::EXPORT_RECEIVE,
            Self::Shutdown => crate::abi::EXPORT_SHUTDOWN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A wasm trap: unreachable, out-of-bounds access, division by zero, stack overflow...
    Trap,
    /// The agent panicked (Rust SDK) and reported its message before trapping.
    Panic,
    /// The call used up its fuel budget: deterministic preemption.
    FuelExhausted,
    /// The wall-clock backstop (epoch deadline) interrupted the call. Not deterministic:
    /// it only fires when fuel is disabled or far too generous.
    Deadline,
    /// The agent tried to grow its memory past the configured cap.
    MemoryLimit,
    /// The agent passed the host an invalid pointer or length.
    HostCallViolation,
    /// The ABI function returned a non-zero status code.
    AgentError,
}

impl FaultKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::Panic => "panic",
            Self::FuelExhausted => "fuel_exhausted",
            Self::Deadline => "deadline",
            Self::MemoryLimit => "memory_limit",
            Self::HostCallViolation => "host_call_violation",
            Self::AgentError => "agent_error",
        }
    }

    /// Stable numeric tag fed into tick hashes.
    pub fn tag(&self) -> u8 {
        match self {
            Self::Trap => 1,
            Self::Panic => 2,
            Self::FuelExhausted => 3,
            Self::Deadline => 4,
            Self::MemoryLimit => 5,
            Self::HostCallViolation => 6,
            Self::AgentError => 7,
        }
    }

    /// Preemption (fuel or deadline) versus a fault in the agent's own code.
    pub fn is_preemption(&self) -> bool {
        matches!(self, Self::FuelExhausted | Self::Deadline)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub call: AbiCall,
    pub tick: u64,
    /// Human-readable detail: the trap message, the panic message, the bad pointer...
    pub detail: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {} at tick {}: {}", self.kind.as_str(), self.call.export_name(), self.tick, self.detail)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    Running,
    /// Stopped by a fault; terminal. Preemptions are faults whose kind `is_preemption()`.
    Faulted(Fault),
    /// Shut down gracefully (agent_shutdown was called); terminal.
    Stopped,
    /// Killed without agent_shutdown; terminal.
    Killed,
}

impl AgentState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Faulted(f) if f.kind.is_preemption() => "preempted",
            Self::Faulted(_) => "faulted",
            Self::Stopped => "stopped",
            Self::Killed => "killed",
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self, Self::Running)
    }
}
