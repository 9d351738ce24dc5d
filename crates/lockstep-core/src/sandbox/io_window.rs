//! The host's direct view of an agent's io region (one of the engine's small `unsafe` modules).
//!
//! Why: before every call the host writes into the agent's io region (the step context, a batch
//! of messages, the batch state word). Reaching it through `Memory::data_mut` walks wasmtime's
//! store to the memory (the store's memory list, the instance, the memory object behind a trait
//! object) on every write: cache lines no call touches otherwise, cold once per agent per tick.
//! Measured in one binary with the walk switched on and off at run time: a 1,000-counter tick
//! 9–12% faster without it, 10,000 counters ~2.5% (BENCHMARKS.md, ninth session).
//!
//! Invariants (what makes the window's slice valid whenever `get` hands it out):
//! 1. An agent's linear memory never moves: the slab allocator keeps each memory's base for
//!    its life (`slab_memory`, invariant 4) and the pooling allocator's memories live in fixed
//!    slots sized for their cap (`Sandbox::new`). The tests below grow a memory on both
//!    allocators and check the window against `Memory::data_ptr`.
//! 2. The region lies inside the memory: `IoWindow::new` checks it against the memory's
//!    current size, and a linear memory never shrinks.
//! 3. No other reference into the memory exists while the slice lives: `get` borrows the
//!    agent's store mutably for the slice's lifetime, and every other way into the memory
//!    (`Memory::data`/`data_mut`, a call into the agent) needs that store too.
//! 4. The window is used only with the store whose memory it views: `get` is `unsafe` with
//!    that contract, and its one caller is `AgentInstance::io_mut`, which passes the
//!    instance's own store (the window is a private field, set only by `set_io` from that
//!    instance's memory).

use std::ptr::NonNull;

use wasmtime::{Memory, Store};

/// A pointer to `len` bytes of one agent's linear memory (its io region).
pub(crate) struct IoWindow {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the pointer is only dereferenced through `get`, which requires `&mut` of the store
// that owns the memory (invariant 3); a store moves between threads with its instance, and the
// window moves with them.
unsafe impl Send for IoWindow {}
// SAFETY: `&IoWindow` gives no access to the memory by itself (`get` is unsafe and also needs
// the owning store borrowed mutably).
unsafe impl Sync for IoWindow {}

impl IoWindow {
    /// No region (an instance whose io buffer is not known yet): `get` gives an empty slice.
    pub(crate) fn empty() -> Self {
        Self { ptr: NonNull::dangling(), len: 0 }
    }

    /// The `len` bytes of `memory` at `offset`, or `None` if they do not lie inside it.
    pub(crate) fn new<T>(memory: &Memory, store: &Store<T>, offset: usize, len: usize) -> Option<Self> {
        let end = offset.checked_add(len)?;
        if end > memory.data_size(store) {
            return None;
        }
        // From the memory's base pointer (wasmtime's own raw pointer), not from a slice
        // borrowed from it: the window shares the base's provenance, so the slices wasmtime
        // hands out later (and drops) do not invalidate it.
        let ptr = memory.data_ptr(store).wrapping_add(offset);
        Some(Self { ptr: NonNull::new(ptr).unwrap_or(NonNull::dangling()), len })
    }

    /// Where the region starts in the host's address space (a prefetch hint; never read
    /// through).
    pub(crate) fn address(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The region, for as long as `store` is borrowed.
    ///
    /// # Safety
    /// `store` must be the store that owns the memory this window was made from (invariant
    /// 4): another store's borrow would not keep that memory from being referenced.
    /// `AgentInstance::io_mut` is the one caller, with its own store.
    pub(crate) unsafe fn get<'a, T>(&self, _store: &'a mut Store<T>) -> &'a mut [u8] {
        // SAFETY: `ptr..ptr + len` lies inside a live linear memory that has not moved
        // (invariants 1, 2; for `empty`, a dangling pointer with length 0, which is valid), and
        // nothing else references it while its own store (the caller's contract) is borrowed
        // mutably (invariant 3).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Whether the window still starts at `offset` of `memory` (the tests check invariant 1).
    #[cfg(test)]
    pub(crate) fn views<T>(&self, memory: &Memory, store: &Store<T>, offset: usize) -> bool {
        self.len == 0 || memory.data_ptr(store).wrapping_add(offset) == self.ptr.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use crate::sandbox::{AgentModule, Grants, MemoryAllocator, Sandbox, SandboxConfig};
    use crate::security::Capabilities;

    /// An ABI-2 agent whose step grows its memory by `pages` wasm pages each call.
    fn growing_agent() -> Vec<u8> {
        wat::parse_str(
            r#"(module
                (memory (export "memory") 2)
                (func (export "lockstep_abi_version") (result i32) i32.const 2)
                (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
                (func (export "agent_init") (result i32) i32.const 0)
                (func (export "agent_step") (param i32) (result i32)
                    (drop (memory.grow (i32.const 3)))
                    ;; reads the context the host wrote: its tick, stored at 64
                    (i64.store (i32.const 64) (i64.load offset=8 (local.get 0)))
                    i32.const 0)
                (func (export "agent_receive_batch") (param i32 i32) (result i32) i32.const 0)
                (func (export "agent_shutdown") (result i32) i32.const 0))"#,
        )
        .expect("wat")
    }

    #[test]
    fn io_window_stays_on_the_memory_as_it_grows_on_both_allocators() {
        for allocator in [MemoryAllocator::Slab, MemoryAllocator::Pooling] {
            if cfg!(not(target_os = "linux")) && allocator == MemoryAllocator::Slab {
                continue;
            }
            let memory_limit_bytes = 16 << 20;
            let sandbox =
                Sandbox::new(SandboxConfig { fuel_per_call: 10_000_000, memory_limit_bytes, max_agents: 4, deadline_ms: 10_000, allocator }).expect("sandbox");
            let grants = Grants { capabilities: Capabilities::all(), asked: Capabilities::all(), fuel_per_call: 10_000_000, memory_limit_bytes };
            let module = AgentModule::compile(&sandbox, growing_agent(), grants).expect("module");
            let mut agent = module.instantiate(&sandbox, 1, 7).expect("instance");
            assert!(agent.io_window_is_current(), "{allocator:?}: at instantiation");
            let before = agent.memory_bytes();
            for tick in 1..=5u64 {
                agent.begin_tick();
                agent.call_step(&crate::sandbox::StepContext { tick, inbox_len: 0, max_agent_id: 1 }).expect("step");
                assert!(agent.io_window_is_current(), "{allocator:?}: after growing, tick {tick}");
                // The context went where the agent reads it: it copied the tick to 64.
                assert_eq!(agent.memory_data()[64..72], tick.to_le_bytes(), "{allocator:?}");
            }
            assert_eq!(agent.memory_bytes(), before + 5 * 3 * 65_536, "{allocator:?}: the memory grew");
        }
    }
}
