//! Agent linear memories carved out of one big anonymous mapping (Linux only).
//!
//! Why: wasmtime's allocators give every memory its own protection boundary, which costs the
//! process ~4 memory mappings per agent; under the default `vm.max_map_count` (65,530) one
//! process stops near 16,000 agents. Here all agents' memories live in one read-write
//! mapping, reserved with MAP_NORESERVE (pages are only committed when touched), so memories
//! add no mappings at all and 100,000 agents fit in one process. Out-of-bounds accesses are
//! still impossible: the engine is configured with no guard region *and no reservation*
//! (`Sandbox::new`), so wasmtime compiles every memory as one that may move and the JIT emits
//! an explicit bounds check against the memory's current size, loaded at run time, on every
//! access. (With a reservation, a module declaring a maximum would be checked against the
//! reservation instead, and the mapped tail of the slot would be readable: issue 9, item 1.)
//!
//! One of the engine's three small `unsafe` modules (with `ring::RingMemory` and the
//! prefetch hint in `scheduler`). Invariants:
//! 1. A `Chunk` maps its slots read-write for its whole life and unmaps them only in `Drop`,
//!    which runs after every `SlabMemory` in it (each holds an `Arc<Chunk>`) is gone.
//! 2. A slot index is owned by at most one `SlabMemory` at a time: indices come from the free
//!    list (or the never-used counter) under a mutex and return to it only in `Drop`. Slot
//!    `s` lives in chunk `s / slots_per_chunk` at offset `(s % slots_per_chunk) * slot_bytes`.
//! 3. A slot handed out reads as all zeros: it is either never touched since `mmap`, or was
//!    released with `MADV_DONTNEED`, after which Linux serves zero-filled pages for private
//!    anonymous mappings.
//! 4. `byte_size <= byte_capacity == slot_bytes`, and the base pointer never moves, so every
//!    address wasmtime may touch ([base, base + byte_size)) lies inside this slot. Compiled
//!    code never touches past `byte_size` (explicit bounds checks), and `byte_size` only
//!    grows, so `[0, byte_size)` on release is the slot's high-water mark: zeroing it
//!    (invariant 3) clears everything the agent could have written.
//!
//! `tests` below exercise each invariant; `bench_core` spawns 100,000 agents on it.

use std::sync::{Arc, Mutex};

use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

/// Address space reserved per mapping: slots are mapped a chunk at a time, as agents need
/// them, so a runtime reserves what its live agents use (rounded up to a chunk), not
/// `maxAgents × memoryLimitBytes` up front (issue 9: at 256 GiB per runtime the ~496th
/// runtime of a process failed). 100,000 agents of 16 MiB take ~1,600 mappings.
const CHUNK_BYTES: usize = 1 << 30;

/// One mapping of `slots` consecutive slots.
struct Chunk {
    base: *mut u8,
    bytes: usize,
}

// SAFETY: the raw pointer is only used to compute disjoint per-slot addresses (invariant 2);
// the mapping itself is valid from any thread.
unsafe impl Send for Chunk {}
// SAFETY: as for Send: `&Chunk` only reads `base` and `bytes`, and per-slot addresses are
// disjoint (invariant 2).
unsafe impl Sync for Chunk {}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: invariant 1 — every SlabMemory in this chunk holds an Arc to it, so none is
        // left when this runs and nothing points into the mapping.
        unsafe {
            libc::munmap(self.base.cast(), self.bytes);
        }
    }
}

struct Slab {
    slot_bytes: usize,
    /// Most slots ever handed out at once (maxAgents + 1).
    slots: usize,
    slots_per_chunk: usize,
    state: Mutex<SlabState>,
}

struct SlabState {
    chunks: Vec<Arc<Chunk>>,
    /// Released slots, reused first (LIFO keeps the working set small).
    released: Vec<usize>,
    never_used: usize,
}

impl Slab {
    /// Maps the chunk holding slot `slot` if it is not mapped yet (slots are handed out in
    /// order, so that is always the next chunk).
    fn chunk_for(&self, state: &mut SlabState, slot: usize) -> Result<Arc<Chunk>, String> {
        let index = slot / self.slots_per_chunk;
        if let Some(c) = state.chunks.get(index) {
            return Ok(c.clone());
        }
        debug_assert_eq!(index, state.chunks.len(), "chunks are mapped in order");
        let slots = self.slots_per_chunk.min(self.slots - index * self.slots_per_chunk);
        let bytes = slots * self.slot_bytes;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "could not reserve {bytes} bytes of address space for agent memories ({}); lower maxAgents or memoryLimitBytes, or close runtimes you no longer use",
                std::io::Error::last_os_error()
            ));
        }
        let chunk = Arc::new(Chunk { base: base.cast(), bytes });
        state.chunks.push(chunk.clone());
        Ok(chunk)
    }
}

/// Hands wasmtime one slot of the slab per agent memory.
pub struct SlabMemoryCreator {
    slab: Arc<Slab>,
}

impl SlabMemoryCreator {
    /// A slab of at most `slots` memories of at most `slot_bytes` each. Reserves nothing yet.
    pub fn new(slots: usize, slot_bytes: usize) -> Result<Self, String> {
        let page = 65_536;
        if slot_bytes == 0 || !slot_bytes.is_multiple_of(page) || slots == 0 {
            return Err(format!("slab of {slots} slots × {slot_bytes} bytes: both must be positive, slots a multiple of 64 KiB"));
        }
        slots.checked_mul(slot_bytes).ok_or("slab size overflows the address space")?;
        let slots_per_chunk = (CHUNK_BYTES / slot_bytes).max(1);
        let state = SlabState { chunks: Vec::new(), released: Vec::new(), never_used: 0 };
        Ok(Self { slab: Arc::new(Slab { slot_bytes, slots, slots_per_chunk, state: Mutex::new(state) }) })
    }

    /// Address space reserved so far, bytes.
    #[cfg(test)]
    fn reserved_bytes(&self) -> usize {
        self.slab.state.lock().map(|s| s.chunks.iter().map(|c| c.bytes).sum()).unwrap_or(0)
    }
}

// SAFETY: every memory handed out is a slot no other memory owns (invariant 2), mapped
// read-write for the memory's whole life (invariant 1) and zeroed (invariant 3); nothing but
// wasmtime touches it while it is alive, and its slot is reused only after its `Drop`.
unsafe impl MemoryCreator for SlabMemoryCreator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        _maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let slab = &self.slab;
        if guard_size_in_bytes != 0 {
            return Err("slab memories have no guard region; configure memory_guard_size(0)".into());
        }
        if reserved_size_in_bytes.is_some_and(|s| s > slab.slot_bytes) || minimum > slab.slot_bytes {
            return Err(format!("memory needs more than the {}-byte slot", slab.slot_bytes));
        }
        let mut state = slab.state.lock().map_err(|_| "slab free list poisoned")?;
        let slot = match state.released.pop() {
            Some(s) => s,
            None if state.never_used < slab.slots => state.never_used,
            None => return Err(format!("all {} agent memory slots are in use; raise maxAgents", slab.slots)),
        };
        let chunk = match slab.chunk_for(&mut state, slot) {
            Ok(c) => c,
            Err(e) => {
                if slot != state.never_used {
                    state.released.push(slot);
                }
                return Err(e);
            }
        };
        if slot == state.never_used {
            state.never_used += 1;
        }
        let offset = (slot % slab.slots_per_chunk) * slab.slot_bytes;
        Ok(Box::new(SlabMemory { slab: slab.clone(), chunk, offset, slot, size: minimum }))
    }
}

struct SlabMemory {
    slab: Arc<Slab>,
    /// Keeps the mapping alive for as long as this memory exists (invariant 1).
    chunk: Arc<Chunk>,
    /// Byte offset of this slot in its chunk.
    offset: usize,
    slot: usize,
    size: usize,
}

impl SlabMemory {
    fn base(&self) -> *mut u8 {
        // SAFETY: offset + slot_bytes <= chunk.bytes (the slot lies in its chunk), so the
        // offset stays inside the mapping.
        unsafe { self.chunk.base.add(self.offset) }
    }
}

// SAFETY: `as_ptr` is page aligned (chunk from `mmap`, slot sizes whole pages) and never
// moves; `[as_ptr, as_ptr + byte_capacity)` stays mapped and owned by this memory (invariants
// 1, 2, 4). There is no guard page: the engine compiles explicit bounds checks against
// `byte_size` instead (module docs, `Sandbox::new`).
unsafe impl LinearMemory for SlabMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.slab.slot_bytes
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size > self.slab.slot_bytes {
            return Err(wasmtime::Error::msg(format!("memory cap of {} bytes reached", self.slab.slot_bytes)));
        }
        // The pages are already mapped read-write and zero (invariant 3): growing is free.
        self.size = self.size.max(new_size);
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base()
    }
}

impl Drop for SlabMemory {
    fn drop(&mut self) {
        // Give the pages back and make them read as zero for the next owner (invariant 3).
        // SAFETY: [base, base + size) lies in this slot, which nobody else owns.
        let ok = unsafe { libc::madvise(self.base().cast(), self.size, libc::MADV_DONTNEED) } == 0;
        if !ok {
            // Cannot guarantee zeroed pages: zero them by hand rather than leak data between agents.
            // SAFETY: as above; the slot is still exclusively ours.
            unsafe { std::ptr::write_bytes(self.base(), 0, self.size) };
        }
        if let Ok(mut state) = self.slab.state.lock() {
            state.released.push(self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(c: &SlabMemoryCreator, min: usize) -> Box<dyn LinearMemory> {
        c.new_memory(MemoryType::new(1, None), min, None, Some(1 << 20), 0).expect("memory")
    }

    #[test]
    fn slots_are_disjoint_and_never_move() {
        let c = SlabMemoryCreator::new(4, 1 << 20).unwrap();
        let mut mems: Vec<_> = (0..4).map(|_| memory(&c, 65_536)).collect();
        let bases: Vec<usize> = mems.iter().map(|m| m.as_ptr() as usize).collect();
        for (i, a) in bases.iter().enumerate() {
            for b in &bases[i + 1..] {
                assert!(a.abs_diff(*b) >= 1 << 20, "slots overlap");
            }
        }
        mems[0].grow_to(1 << 20).unwrap();
        assert_eq!(mems[0].as_ptr() as usize, bases[0], "growth keeps the base");
        assert!(mems[0].grow_to((1 << 20) + 1).is_err(), "cannot grow past the slot");
        assert!(c.new_memory(MemoryType::new(1, None), 65_536, None, None, 0).is_err(), "a fifth memory is refused");
    }

    #[test]
    fn a_reused_slot_reads_as_zero() {
        let c = SlabMemoryCreator::new(1, 1 << 20).unwrap();
        let m = memory(&c, 2 * 65_536);
        // SAFETY: within the memory's size.
        unsafe { std::ptr::write_bytes(m.as_ptr(), 0xAB, 2 * 65_536) };
        let base = m.as_ptr();
        drop(m);
        let m = memory(&c, 2 * 65_536);
        assert_eq!(m.as_ptr(), base, "the released slot is reused");
        // SAFETY: within the memory's size.
        let bytes = unsafe { std::slice::from_raw_parts(m.as_ptr(), 2 * 65_536) };
        assert!(bytes.iter().all(|&b| b == 0), "no data leaks from the previous agent");
    }

    #[test]
    fn address_space_is_reserved_a_chunk_at_a_time_as_agents_need_it() {
        let slot = 16 << 20;
        let c = SlabMemoryCreator::new(16_385, slot).unwrap();
        assert_eq!(c.reserved_bytes(), 0, "nothing reserved before the first memory");
        let per_chunk = CHUNK_BYTES / slot;
        let first: Vec<_> = (0..per_chunk).map(|_| memory(&c, 65_536)).collect();
        assert_eq!(c.reserved_bytes(), CHUNK_BYTES);
        let next = memory(&c, 65_536);
        assert_eq!(c.reserved_bytes(), 2 * CHUNK_BYTES, "the next chunk is mapped when the first is full");
        let mut bases: Vec<usize> = first.iter().chain(std::iter::once(&next)).map(|m| m.as_ptr() as usize).collect();
        bases.sort_unstable();
        assert!(bases.windows(2).all(|w| w[1] - w[0] >= slot), "slots of different chunks do not overlap");
    }

    #[test]
    fn refuses_guards_and_oversized_requests() {
        let c = SlabMemoryCreator::new(2, 1 << 20).unwrap();
        assert!(c.new_memory(MemoryType::new(1, None), 65_536, None, None, 65_536).is_err());
        assert!(c.new_memory(MemoryType::new(1, None), 2 << 20, None, None, 0).is_err());
        assert!(c.new_memory(MemoryType::new(1, None), 65_536, None, Some(2 << 20), 0).is_err());
        assert!(SlabMemoryCreator::new(0, 1 << 20).is_err());
        assert!(SlabMemoryCreator::new(1, 1000).is_err());
    }
}
