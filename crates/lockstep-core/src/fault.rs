//! Why an agent stopped running, and the lifecycle states it can be in.

use std::fmt;

/// The ABI function that was running when a fault happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiCall {
    /// `agent_init`, once at spawn.
    Init,
    /// `agent_step`, once per tick.
    Step,
    /// `agent_receive`, once per delivered message.
    Receive,
    /// `agent_shutdown`, on a graceful shutdown.
    Shutdown,
}

impl AbiCall {
    /// The export's name, e.g. `"agent_step"`.
    pub fn export_name(&self) -> &'static str {
        match self {
            Self::Init => crate::abi::EXPORT_INIT,
            Self::Step => crate::abi::EXPORT_STEP,
            Self::Receive => crate::abi::EXPORT_RECEIVE,
            Self::Shutdown => crate::abi::EXPORT_SHUTDOWN,
        }
    }
}

/// Why an agent faulted (docs/ABI.md, "Limits and faults").
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
    /// The stable snake_case name events and JS use, e.g. `"fuel_exhausted"`.
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
    pub(crate) fn tag(&self) -> u8 {
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

/// Why and where an agent stopped running; a fault is terminal for that agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The ABI call that was running.
    pub call: AbiCall,
    /// The tick it happened in (`current_tick()` at the time).
    pub tick: u64,
    /// Human-readable detail: the trap message, the panic message, the bad pointer...
    pub detail: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {} at tick {}: {}", self.kind.as_str(), self.call.export_name(), self.tick, self.detail)
    }
}

/// Where an agent is in its life: running, or stopped for good in one of three ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    /// Alive: receives its messages and steps every tick.
    Running,
    /// Stopped by a fault; terminal. Preemptions are faults whose kind `is_preemption()`.
    Faulted(Fault),
    /// Shut down gracefully (agent_shutdown was called); terminal.
    Stopped,
    /// Killed without agent_shutdown; terminal.
    Killed,
}

impl AgentState {
    /// The state's name as JS shows it: `running`, `preempted` (a fuel or deadline fault),
    /// `faulted`, `stopped` or `killed`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Faulted(f) if f.kind.is_preemption() => "preempted",
            Self::Faulted(_) => "faulted",
            Self::Stopped => "stopped",
            Self::Killed => "killed",
        }
    }

    /// Whether the agent is still running (every other state is terminal).
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Running)
    }
}
