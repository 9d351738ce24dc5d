//! An agent's instance in and out of a snapshot (a child of `sandbox`, so it sees the private
//! fields of `AgentInstance` and `AgentModule`; docs/SNAPSHOT.md). Out: its mutable globals
//! (through the exports `snapshot::wasm` added), its memory page by page, the host side of its
//! store. In: a fresh instance of the same module, nothing of the agent called, its memory
//! grown to the size it had and filled, its globals and host state set.

use wasmtime::Val;

use super::{AgentInstance, AgentModule, Sandbox};
use crate::bus::AgentId;
use crate::error::{LockstepError, Result};
use crate::snapshot::wasm::PAGE_BYTES;
use crate::snapshot::{clear, page_address, GlobalValue, InstanceImage, PageTable, CHUNK_BYTES, NULL_FUNC, ZERO_PAGE};

impl AgentInstance {
    /// The elements of the tables of a module that writes into them (`ModuleState::tables`):
    /// each a function index, found by comparing the element's function reference with those
    /// of the exported functions (`Func::to_raw`: a function's identity in its store).
    /// `Err`: an element that is none of the module's functions (it cannot be: the module
    /// imports no table), a message for `E_SNAPSHOT_UNSUPPORTED`.
    pub(crate) fn capture_tables(&mut self) -> std::result::Result<Vec<Vec<u32>>, String> {
        if self.snapshot.tables.is_empty() {
            return Ok(Vec::new());
        }
        let mut index = std::collections::HashMap::with_capacity(self.snapshot.funcs.len());
        for (i, name) in self.snapshot.funcs.iter().enumerate() {
            if let Some(f) = self.instance.get_func(&mut self.store, name) {
                index.insert(f.to_raw(&mut self.store) as usize, i as u32);
            }
        }
        let mut tables = Vec::with_capacity(self.snapshot.tables.len());
        for (t, name) in self.snapshot.tables.iter().enumerate() {
            let Some(table) = self.instance.get_table(&mut self.store, name) else { return Err(format!("table {t} is not exported")) };
            let size = table.size(&self.store);
            let mut elements = Vec::with_capacity(size as usize);
            for e in 0..size {
                let f = match table.get(&mut self.store, e) {
                    Some(wasmtime::Ref::Func(None)) | None => NULL_FUNC,
                    Some(wasmtime::Ref::Func(Some(f))) => {
                        let raw = f.to_raw(&mut self.store) as usize;
                        *index.get(&raw).ok_or_else(|| format!("element {e} of table {t} refers to a function that is not the module's"))?
                    }
                    Some(_) => return Err(format!("element {e} of table {t} is not a function reference")),
                };
                elements.push(f);
            }
            tables.push(elements);
        }
        Ok(tables)
    }

    /// Everything of the instance but its memory's bytes (see `page_hashes`) and its tables
    /// (`capture_tables`); `pages` is filled in by the caller from the page table.
    pub(crate) fn capture(&mut self) -> InstanceImage {
        let mut globals = Vec::with_capacity(self.snapshot.globals.len());
        for (index, name) in &self.snapshot.globals {
            // Present by construction: `prepare` exported every mutable global.
            let Some(g) = self.instance.get_global(&mut self.store, name) else { continue };
            let v = match g.get(&mut self.store) {
                Val::I32(v) => GlobalValue::I32(v as u32),
                Val::I64(v) => GlobalValue::I64(v as u64),
                Val::F32(v) => GlobalValue::F32(v),
                Val::F64(v) => GlobalValue::F64(v),
                Val::V128(v) => GlobalValue::V128(v.as_u128()),
                // Refused before capture (`ModuleState::unsupported`).
                _ => continue,
            };
            globals.push((*index, v));
        }
        let host = self.store.data();
        InstanceImage {
            io_ptr: self.io_ptr,
            fuel_consumed: self.fuel_consumed,
            fuel_left_this_tick: self.fuel_left_this_tick,
            next_seq: host.next_seq,
            rng_word_pos: host.rng.get_word_pos(),
            rng_stream: host.rng.get_stream(),
            memory_limit_hit: host.memory_limit_hit,
            panic_message: host.panic_message.clone(),
            violation: host.violation.clone(),
            outbox: host.outbox.to_messages(0..host.outbox.len()),
            outbox_bytes: host.outbox.payload_bytes() as u64,
            logs: host.logs.clone(),
            infer: host.infer_requests.clone(),
            globals,
            pages: Vec::new(),
            tables: Vec::new(),
            fuel_per_tick: self.fuel_per_tick,
        }
    }

    /// Each 64 KiB page of memory: `None` when it is all zeros, else its non-zero chunks and
    /// content address (`snapshot::page_address`).
    pub(crate) fn page_addresses(&self) -> Vec<Option<(u16, [u8; 32])>> {
        self.memory.data(&self.store).chunks(PAGE_BYTES).map(page_address).collect()
    }

    /// Page `n` of memory (64 KiB).
    pub(crate) fn page(&self, n: usize) -> &[u8] {
        &self.memory.data(&self.store)[n * PAGE_BYTES..(n + 1) * PAGE_BYTES]
    }
}

impl AgentModule {
    /// Rebuilds agent `id` of this module from `image`, its memory from `pages`. Nothing of
    /// the agent runs (a start function aside, whose effects are overwritten). A value no
    /// runtime could have held (memory past the cap or smaller than the module's, a global
    /// of another type, the io buffer outside memory) is `E_SNAPSHOT_CORRUPT` at `offset` (the
    /// Agents section) naming the agent and what.
    pub(crate) fn restore_instance(
        &self,
        sandbox: &Sandbox,
        id: AgentId,
        seed: u64,
        image: &InstanceImage,
        pages: &PageTable<'_>,
        offset: u64,
    ) -> Result<AgentInstance> {
        let bad = |what: String| LockstepError::SnapshotCorrupt { offset, reason: format!("Agents section, agent {id}: {what}") };
        let mut agent = self.instantiate_bare(sandbox, id, seed)?;
        let state = &self.snapshot;
        // Memory: grow to the size it had (through the limiter, so the cap holds), then fill.
        let fresh = agent.memory.data_size(&agent.store) / PAGE_BYTES;
        let wanted = image.pages.len();
        if wanted < fresh {
            return Err(bad(format!("{wanted} memory pages, fewer than the {fresh} its module starts with")));
        }
        if wanted > fresh {
            agent
                .memory
                .grow(&mut agent.store, (wanted - fresh) as u64)
                .map_err(|_| bad(format!("{wanted} memory pages exceed its cap of {} bytes", self.grants.memory_limit_bytes)))?;
        }
        let memory = agent.memory.data_mut(&mut agent.store);
        for (n, &index) in image.pages.iter().enumerate() {
            let dst = &mut memory[n * PAGE_BYTES..(n + 1) * PAGE_BYTES];
            // A fresh instance is all zeros but for what its data segments (or its start
            // function, when it has one) wrote: only those chunks need clearing where the
            // snapshot has zeros; the rest are never touched (nor committed).
            let dirty = if n < fresh { state.init_mask(n) } else { 0 };
            if index != ZERO_PAGE {
                pages.decode_into(index, dst, dirty)?;
            } else if dirty != 0 {
                for (i, chunk) in dst.chunks_mut(CHUNK_BYTES).enumerate() {
                    if dirty & (1 << i) != 0 {
                        clear(chunk);
                    }
                }
            }
        }
        let io_end = (image.io_ptr as usize).checked_add(crate::sandbox::io_region_bytes(self.abi_version));
        if io_end.is_none_or(|end| end > memory.len()) {
            return Err(bad(format!("its io buffer at {} does not fit its {}-byte memory", image.io_ptr, memory.len())));
        }
        // Globals: exactly the module's mutable ones, each of its own type.
        if image.globals.len() != state.globals.len() || image.globals.iter().zip(&state.globals).any(|((a, _), (b, _))| a != b) {
            let have: Vec<u32> = image.globals.iter().map(|g| g.0).collect();
            let want: Vec<u32> = state.globals.iter().map(|g| g.0).collect();
            return Err(bad(format!("values for globals {have:?}, but its module's mutable globals are {want:?}")));
        }
        for ((index, value), (_, name)) in image.globals.iter().zip(&state.globals) {
            let global = agent.instance.get_global(&mut agent.store, name).ok_or_else(|| bad(format!("global {index} is not exported")))?;
            let v = match *value {
                GlobalValue::I32(v) => Val::I32(v as i32),
                GlobalValue::I64(v) => Val::I64(v as i64),
                GlobalValue::F32(v) => Val::F32(v),
                GlobalValue::F64(v) => Val::F64(v),
                GlobalValue::V128(v) => Val::V128(v.into()),
            };
            global.set(&mut agent.store, v).map_err(|e| bad(format!("global {index}: {e}")))?;
        }
        // Tables a module writes into: each element set back to the function it referred to.
        if !image.tables.is_empty() && image.tables.len() != state.tables.len() {
            return Err(bad(format!("{} tables, but its module writes into {}", image.tables.len(), state.tables.len())));
        }
        for (t, elements) in image.tables.iter().enumerate() {
            let table = agent.instance.get_table(&mut agent.store, &state.tables[t]).ok_or_else(|| bad(format!("table {t} is not exported")))?;
            let size = table.size(&agent.store);
            let want = elements.len() as u64;
            if want < size {
                return Err(bad(format!("table {t} has {want} elements, fewer than the {size} its module starts with")));
            }
            if want > size {
                table
                    .grow(&mut agent.store, want - size, wasmtime::Ref::Func(None))
                    .map_err(|e| bad(format!("table {t} cannot grow to {want} elements: {e}")))?;
            }
            for (e, &f) in elements.iter().enumerate() {
                let value = if f == NULL_FUNC {
                    None
                } else {
                    let name = state
                        .funcs
                        .get(f as usize)
                        .ok_or_else(|| bad(format!("element {e} of table {t} names function {f}, which its module does not have")))?;
                    Some(agent.instance.get_func(&mut agent.store, name).ok_or_else(|| bad(format!("function {f} is not exported")))?)
                };
                table.set(&mut agent.store, e as u64, wasmtime::Ref::Func(value)).map_err(|err| bad(format!("element {e} of table {t}: {err}")))?;
            }
        }
        if image.fuel_per_tick > 0 {
            if image.fuel_per_tick > agent.fuel_per_call {
                return Err(bad(format!("a time slice of {} fuel, over its per-call budget of {}", image.fuel_per_tick, agent.fuel_per_call)));
            }
            agent.set_fuel_per_tick(image.fuel_per_tick).map_err(|e| bad(format!("its time slice: {e}")))?;
        }
        agent.set_io(image.io_ptr).map_err(|e| bad(format!("its io buffer: {e}")))?;
        agent.fuel_consumed = image.fuel_consumed;
        agent.fuel_left_this_tick = image.fuel_left_this_tick;
        let host = agent.store.data_mut();
        host.next_seq = image.next_seq;
        host.rng.set_stream(image.rng_stream);
        host.rng.set_word_pos(image.rng_word_pos);
        host.memory_limit_hit = image.memory_limit_hit;
        host.panic_message = image.panic_message.clone();
        host.violation = image.violation.clone();
        // Its byte count is its messages' (`outbox_bytes` is checked against them as read).
        host.outbox = crate::mailbox::Mailbox::from(image.outbox.clone());
        host.logs = image.logs.clone();
        host.infer_requests = image.infer.clone();
        Ok(agent)
    }
}
