//! The host side of an agent's store: per-agent data and the host imports it may call.
//!
//! Every import validates guest pointers against the agent's memory before touching it; an
//! invalid pointer faults the calling agent (HostCallViolation), never the host.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use wasmtime::ValType::{I32, I64};
use wasmtime::{Caller, Linker, Memory, ResourceLimiter, ValType};

use crate::abi;
use crate::bus::{AgentId, MessageRef};
use crate::mailbox::Mailbox;

/// A line an agent logged through the `log` import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: u32,
    pub text: String,
}

/// An inference request made during a call, answered at the next tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferRequest {
    /// Index into the runtime's agent model table.
    pub model: u32,
    /// Echoed back as the result message's `kind`.
    pub tag: u32,
    /// One sample: each model input's per-sample bytes, in input order.
    pub input: Vec<u8>,
}

/// Data owned by one agent's `Store`.
///
/// `repr(C)`, the fields every call touches first: Rust's own order spread what a quiet
/// agent's step reads over four of the struct's nine lines, and with 10,000 agents an agent's
/// lines are out of the cache by its next tick, so each costs a miss per tick (with
/// `AgentInstance`'s reorder, cachegrind: 26.4 → 22.7 missed lines per agent-tick; issue 13).
#[repr(C)]
pub struct AgentHost {
    pub id: AgentId,
    pub tick: u64,
    logs_this_call: usize,
    pub next_seq: u64,
    /// What the agent sent this tick, payloads in the mailbox's arena (bounded per tick by
    /// `abi::MAX_OUTBOX_PER_TICK` messages and `abi::MAX_OUTBOX_BYTES_PER_TICK` bytes).
    pub(crate) outbox: Mailbox,
    pub logs: Vec<LogLine>,
    pub infer_requests: Vec<InferRequest>,
    pub memory: Option<Memory>,
    // Touched only by the host calls that need them, and on faults.
    pub memory_limit_bytes: usize,
    pub memory_limit_hit: bool,
    pub panic_message: Option<String>,
    pub violation: Option<String>,
    /// What this agent may do; checked on every host call that takes an argument it covers.
    pub grants: crate::security::Capabilities,
    pub rng: ChaCha8Rng,
}

impl AgentHost {
    pub fn new(id: AgentId, seed: u64, memory_limit_bytes: usize) -> Self {
        // The agent's random stream depends only on the runtime seed and its id.
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&id.to_le_bytes());
        key[16..24].copy_from_slice(b"lockstep");
        Self {
            id,
            tick: 0,
            memory: None,
            outbox: Mailbox::default(),
            next_seq: 0,
            rng: ChaCha8Rng::from_seed(key),
            memory_limit_bytes,
            memory_limit_hit: false,
            panic_message: None,
            violation: None,
            logs: Vec::new(),
            logs_this_call: 0,
            infer_requests: Vec::new(),
            grants: crate::security::Capabilities::all(),
        }
    }

    /// Resets the per-call flags before the host calls into the agent.
    pub fn begin_call(&mut self) {
        self.logs_this_call = 0;
    }
}

impl ResourceLimiter for AgentHost {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_limit_bytes {
            // Trap rather than return -1: an agent that ignores a failed grow would corrupt
            // itself silently. The flag classifies the resulting error as MemoryLimit.
            self.memory_limit_hit = true;
            return Err(wasmtime::Error::msg(format!("memory cap of {} bytes reached (wanted {desired})", self.memory_limit_bytes)));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= abi::MAX_TABLE_ELEMENTS)
    }

    // One instance, one memory, at most one table per store: the admission check
    // (`module_shape`) refuses modules that want more; these make the store itself refuse too.
    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        abi::MAX_TABLES
    }
}

/// Returns `memory[ptr..ptr+len]` bounds, or records a violation naming the import.
fn guest_range(memory_len: usize, ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    let end = start.checked_add(len)?;
    (end <= memory_len).then_some(start..end)
}

/// Records `text` as the agent's host-call violation (its fault's detail) and returns the
/// error that ends the call: every import's refusal of bad arguments goes through here.
fn fault_agent(host: &mut AgentHost, text: String) -> wasmtime::Error {
    host.violation = Some(text.clone());
    wasmtime::Error::msg(text)
}

fn violation(host: &mut AgentHost, import: &str, ptr: i32, len: i32, memory_len: usize) -> wasmtime::Error {
    fault_agent(host, format!("`{import}` was given pointer {} with length {} outside the agent's {memory_len}-byte memory", ptr as u32, len as u32))
}

fn no_memory(host: &mut AgentHost, import: &str) -> wasmtime::Error {
    fault_agent(host, format!("`{import}` called before the agent's memory was bound"))
}

/// The guest bytes `[ptr, ptr + len)` and the host data, or the violation that faults the
/// agent: every import that reads (or, `random_fill`, writes) guest memory goes through here.
#[inline]
fn guest_bytes<'a>(caller: &'a mut Caller<'_, AgentHost>, import: &str, ptr: i32, len: i32) -> wasmtime::Result<(&'a mut [u8], &'a mut AgentHost)> {
    let Some(memory) = caller.data().memory else {
        return Err(no_memory(caller.data_mut(), import));
    };
    let (mem, host) = memory.data_and_store_mut(caller);
    match guest_range(mem.len(), ptr, len) {
        Some(range) => Ok((&mut mem[range], host)),
        None => {
            let size = mem.len();
            Err(violation(host, import, ptr, len, size))
        }
    }
}

/// Queues one message from the agent (what `send` and each record of `send_batch` do):
/// `SEND_OK`, or the `SEND_ERR_*` code that refused it. Inlined into `send`'s host function:
/// the call is every routed message's.
#[inline(always)]
fn queue_send(host: &mut AgentHost, to: u64, kind: u32, priority: i32, bytes: &[u8]) -> i32 {
    if bytes.len() > abi::MAX_PAYLOAD_BYTES {
        return abi::SEND_ERR_PAYLOAD_TOO_LARGE;
    }
    if host.outbox.len() >= abi::MAX_OUTBOX_PER_TICK || host.outbox.payload_bytes() + bytes.len() > abi::MAX_OUTBOX_BYTES_PER_TICK {
        return abi::SEND_ERR_OUTBOX_FULL;
    }
    if !host.grants.send.allows(to) {
        if host.logs_this_call < abi::MAX_LOG_LINES_PER_CALL && host.logs.len() < abi::MAX_LOG_LINES_PER_TICK {
            host.logs_this_call += 1;
            let text = format!("capability denied: send to {to} is outside send={:?}", host.grants.send);
            host.logs.push(LogLine { level: abi::log_level::WARN, text });
        }
        return abi::SEND_ERR_FORBIDDEN;
    }
    let seq = host.next_seq;
    host.next_seq += 1;
    host.outbox.push(MessageRef { from: host.id, to, seq, kind, priority, payload: bytes });
    abi::SEND_OK
}

/// `send_batch`'s records (docs/ABI.md): queued in order until one is refused; how many were
/// queued. A record whose header or payload runs past `records` (the guest range of `count`
/// records, bounded by the outbox limits) is a violation that faults the agent, as a bad
/// pointer to `send` is.
fn send_records(host: &mut AgentHost, records: &[u8], count: u32) -> std::result::Result<i32, String> {
    let mut at = 0usize;
    for i in 0..count {
        let Some(head) = records.get(at..at + abi::SEND_RECORD_HEADER_BYTES) else {
            return Err(format!("`send_batch` record {i} at offset {at} runs past the {} bytes given", records.len()));
        };
        let u32_at = |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
        let to = u64::from_le_bytes(head[abi::SEND_RECORD_OFFSET_TO..][..8].try_into().unwrap_or_default());
        let (kind, priority, len) =
            (u32_at(abi::SEND_RECORD_OFFSET_KIND), u32_at(abi::SEND_RECORD_OFFSET_PRIORITY) as i32, u32_at(abi::SEND_RECORD_OFFSET_LEN) as usize);
        let body = at + abi::SEND_RECORD_HEADER_BYTES;
        let Some(payload) = body.checked_add(len).and_then(|end| records.get(body..end)) else {
            return Err(format!("`send_batch` record {i}: a {len}-byte payload at offset {body} runs past the {} bytes given", records.len()));
        };
        if queue_send(host, to, kind, priority, payload) != abi::SEND_OK {
            return Ok(i as i32);
        }
        at = abi::next_record(at, abi::SEND_RECORD_HEADER_BYTES + len);
    }
    Ok(count as i32)
}

/// Defines every host import (ABI versions 1 and 2) in `linker`.
pub fn define_imports(linker: &mut Linker<AgentHost>) -> wasmtime::Result<()> {
    linker.func_wrap(
        abi::IMPORT_MODULE,
        abi::IMPORT_SEND,
        |mut caller: Caller<'_, AgentHost>, to: i64, kind: i32, priority: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (bytes, host) = guest_bytes(&mut caller, abi::IMPORT_SEND, ptr, len)?;
            Ok(queue_send(host, to as u64, kind as u32, priority, bytes))
        },
    )?;
    linker.func_wrap(
        abi::IMPORT_MODULE,
        abi::IMPORT_SEND_PLAIN,
        |mut caller: Caller<'_, AgentHost>, to: i64, kind: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (bytes, host) = guest_bytes(&mut caller, abi::IMPORT_SEND_PLAIN, ptr, len)?;
            Ok(queue_send(host, to as u64, kind as u32, 0, bytes))
        },
    )?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::IMPORT_SEND_BATCH, |mut caller: Caller<'_, AgentHost>, ptr: i32, count: i32| -> wasmtime::Result<i32> {
        if count < 0 {
            return Err(fault_agent(caller.data_mut(), format!("`send_batch` was given a count of {count}")));
        }
        // The records lie in [ptr, end of memory): each is bounds-checked as it is read.
        let Some(memory) = caller.data().memory else {
            return Err(no_memory(caller.data_mut(), abi::IMPORT_SEND_BATCH));
        };
        let (mem, host) = memory.data_and_store_mut(&mut caller);
        let start = ptr as u32 as usize;
        let Some(records) = mem.get(start..) else {
            let size = mem.len();
            return Err(violation(host, abi::IMPORT_SEND_BATCH, ptr, 0, size));
        };
        send_records(host, records, count as u32).map_err(|text| fault_agent(host, text))
    })?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::IMPORT_TICK, |caller: Caller<'_, AgentHost>| -> i64 { caller.data().tick as i64 })?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::IMPORT_SELF_ID, |caller: Caller<'_, AgentHost>| -> i64 { caller.data().id as i64 })?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::IMPORT_GRANTED, |caller: Caller<'_, AgentHost>| -> i32 { caller.data().grants.bits() })?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::IMPORT_RANDOM, |mut caller: Caller<'_, AgentHost>| -> i64 { caller.data_mut().rng.next_u64() as i64 })?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::IMPORT_RANDOM_FILL, |mut caller: Caller<'_, AgentHost>, ptr: i32, count: i32| -> wasmtime::Result<()> {
        if !(0..=abi::MAX_RANDOM_FILL_WORDS as i32).contains(&count) {
            let text = format!("`{}` was given a count of {count} (0..={} numbers a call)", abi::IMPORT_RANDOM_FILL, abi::MAX_RANDOM_FILL_WORDS);
            return Err(fault_agent(caller.data_mut(), text));
        }
        // No fuel is charged here: `set_fuel` from a host call restarts the count of a time
        // slice (`fuel_async_yield_interval`), so a sliced agent calling this in a loop was
        // never suspended (tests/time_slicing.rs). The small count bounds the host work a call
        // (a few units of fuel) buys instead (`MAX_RANDOM_FILL_WORDS`).
        // (count ≤ MAX_RANDOM_FILL_WORDS: the product cannot overflow)
        let (words, host) = guest_bytes(&mut caller, abi::IMPORT_RANDOM_FILL, ptr, count * 8)?;
        // The numbers `count` calls of `random_u64` would return, in that order: the stream
        // is one, whichever import draws from it.
        for word in words.chunks_exact_mut(8) {
            word.copy_from_slice(&host.rng.next_u64().to_le_bytes());
        }
        Ok(())
    })?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::IMPORT_LOG, |mut caller: Caller<'_, AgentHost>, level: i32, ptr: i32, len: i32| -> wasmtime::Result<()> {
        let (bytes, host) = guest_bytes(&mut caller, abi::IMPORT_LOG, ptr, len)?;
        // Bounded per call and per tick (a tick may hold 65,536 receive calls): a chatty
        // agent loses lines, never the host's memory.
        if host.logs_this_call < abi::MAX_LOG_LINES_PER_CALL && host.logs.len() < abi::MAX_LOG_LINES_PER_TICK {
            host.logs_this_call += 1;
            let bytes = &bytes[..bytes.len().min(abi::MAX_LOG_LINE_BYTES)];
            host.logs.push(LogLine { level: level as u32, text: String::from_utf8_lossy(bytes).into_owned() });
        }
        Ok(())
    })?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::IMPORT_REPORT_PANIC, |mut caller: Caller<'_, AgentHost>, ptr: i32, len: i32| -> wasmtime::Result<()> {
        let (bytes, host) = guest_bytes(&mut caller, abi::IMPORT_REPORT_PANIC, ptr, len)?;
        let bytes = &bytes[..bytes.len().min(abi::MAX_PANIC_MESSAGE_BYTES)];
        host.panic_message = Some(String::from_utf8_lossy(bytes).into_owned());
        Ok(())
    })?;
    linker.func_wrap(
        abi::IMPORT_MODULE,
        abi::IMPORT_INFER,
        |mut caller: Caller<'_, AgentHost>, model: i32, tag: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (bytes, host) = guest_bytes(&mut caller, abi::IMPORT_INFER, ptr, len)?;
            if bytes.len() > abi::MAX_PAYLOAD_BYTES {
                return Ok(abi::INFER_ERR_INPUT_TOO_LARGE);
            }
            let queued: usize = host.infer_requests.iter().map(|r| r.input.len()).sum();
            if host.infer_requests.len() >= abi::MAX_INFER_REQUESTS_PER_TICK || queued + bytes.len() > abi::MAX_INFER_BYTES_PER_TICK {
                return Ok(abi::INFER_ERR_TOO_MANY_REQUESTS);
            }
            // A slot with the top bit set is no slot (answered "no such model"), never a
            // `generate` request (which carry that bit).
            let model = if model as u32 & GENERATE_FLAG != 0 { !GENERATE_FLAG } else { model as u32 };
            host.infer_requests.push(InferRequest { model, tag: tag as u32, input: bytes.to_vec() });
            Ok(abi::INFER_OK)
        },
    )?;
    linker.func_wrap(
        abi::IMPORT_MODULE,
        abi::IMPORT_GENERATE,
        |mut caller: Caller<'_, AgentHost>, model: i32, tag: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (bytes, host) = guest_bytes(&mut caller, abi::IMPORT_GENERATE, ptr, len)?;
            if bytes.len() > abi::MAX_PAYLOAD_BYTES {
                return Ok(abi::INFER_ERR_INPUT_TOO_LARGE);
            }
            // The same queue and per-tick budget as `infer` (and so the same tick hash and
            // snapshot paths); the top bit of `model` marks it a generate request for the
            // language-model slot in the other bits (inference::lm::serve).
            let queued: usize = host.infer_requests.iter().map(|r| r.input.len()).sum();
            if host.infer_requests.len() >= abi::MAX_INFER_REQUESTS_PER_TICK || queued + bytes.len() > abi::MAX_INFER_BYTES_PER_TICK {
                return Ok(abi::INFER_ERR_TOO_MANY_REQUESTS);
            }
            let slot = (model as u32).min(!GENERATE_FLAG);
            host.infer_requests.push(InferRequest { model: GENERATE_FLAG | slot, tag: tag as u32, input: bytes.to_vec() });
            Ok(abi::INFER_OK)
        },
    )?;
    Ok(())
}

/// Set in `InferRequest::model` for a `generate` request (the slot is in the other bits).
pub const GENERATE_FLAG: u32 = 1 << 31;

/// Every import `define_imports` provides, with its type (params, results), for load-time
/// checks: a module that declares one with another type is told both (red team: wasmtime's
/// link error called the module's own type the "expected" one). `tests::
/// the_import_table_is_what_the_linker_defines` links a module importing each as listed.
pub const IMPORTS: &[(&str, &[ValType], &[ValType])] = &[
    (abi::IMPORT_SEND, &[I64, I32, I32, I32, I32], &[I32]),
    (abi::IMPORT_SEND_PLAIN, &[I64, I32, I32, I32], &[I32]),
    (abi::IMPORT_SEND_BATCH, &[I32, I32], &[I32]),
    (abi::IMPORT_TICK, &[], &[I64]),
    (abi::IMPORT_SELF_ID, &[], &[I64]),
    (abi::IMPORT_RANDOM, &[], &[I64]),
    (abi::IMPORT_RANDOM_FILL, &[I32, I32], &[]),
    (abi::IMPORT_LOG, &[I32, I32, I32], &[]),
    (abi::IMPORT_REPORT_PANIC, &[I32, I32], &[]),
    (abi::IMPORT_INFER, &[I32, I32, I32, I32], &[I32]),
    (abi::IMPORT_GRANTED, &[], &[I32]),
    (abi::IMPORT_GENERATE, &[I32, I32, I32, I32], &[I32]),
];

/// `(func (param …) (result …))`, as wasm text writes a function type.
pub(crate) fn func_type_text(params: impl Iterator<Item = ValType>, results: impl Iterator<Item = ValType>) -> String {
    let list = |kind: &str, types: Vec<String>| if types.is_empty() { String::new() } else { format!(" ({kind} {})", types.join(" ")) };
    format!("(func{}{})", list("param", params.map(|t| t.to_string()).collect()), list("result", results.map(|t| t.to_string()).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module importing every entry of `IMPORTS` with the type listed links against what
    /// `define_imports` defines (and one with a type changed does not): the table the
    /// load-time check and its error message use is the linker's.
    #[test]
    fn the_import_table_is_what_the_linker_defines() {
        let engine = wasmtime::Engine::default();
        let mut linker = Linker::new(&engine);
        define_imports(&mut linker).unwrap();
        let module = |imports: &[(&str, String)]| {
            let fields: String = imports.iter().map(|(name, ty)| format!(r#"(import "lockstep" "{name}" {ty})"#)).collect();
            wasmtime::Module::new(&engine, wat::parse_str(format!("(module {fields})")).unwrap()).unwrap()
        };
        let listed: Vec<(&str, String)> = IMPORTS.iter().map(|&(name, p, r)| (name, func_type_text(p.iter().cloned(), r.iter().cloned()))).collect();
        assert_eq!(listed.len(), 12);
        assert_eq!(listed[1], (abi::IMPORT_SEND_PLAIN, "(func (param i64 i32 i32 i32) (result i32))".to_string()));
        linker.instantiate_pre(&module(&listed)).expect("every import as listed links");
        for (k, (name, _)) in listed.iter().enumerate() {
            let mut changed = listed.clone();
            changed[k].1 = "(func (param f64))".into();
            assert!(linker.instantiate_pre(&module(&changed)).is_err(), "{name} with another type linked");
        }
    }

    #[test]
    fn guest_range_rejects_overflow_and_out_of_bounds() {
        assert_eq!(guest_range(100, 0, 100), Some(0..100));
        assert_eq!(guest_range(100, 90, 11), None);
        assert_eq!(guest_range(100, -1, 1), None); // 0xffff_ffff
        assert_eq!(guest_range(100, 50, -1), None);
        assert_eq!(guest_range(100, 100, 0), Some(100..100));
    }

    #[test]
    fn random_stream_depends_on_seed_and_id_only() {
        let mut a = AgentHost::new(7, 42, 1 << 20);
        let mut b = AgentHost::new(7, 42, 1 << 20);
        let mut c = AgentHost::new(8, 42, 1 << 20);
        let (x, y, z) = (a.rng.next_u64(), b.rng.next_u64(), c.rng.next_u64());
        assert_eq!(x, y);
        assert_ne!(x, z);
    }
}

#[cfg(test)]
mod layout_tests {
    use super::AgentHost;
    use std::mem::{offset_of, size_of};

    /// What every tick of a running agent reads or writes of its host state (`run_call`,
    /// `write_step_context`, `run_tick`'s look at what it sent, logged and asked) lies in its
    /// first 128 bytes: `scheduler::TurnAddresses` asks for those lines ahead of its turn.
    #[test]
    fn what_a_tick_touches_of_the_host_state_lies_in_its_first_128_bytes() {
        let hot = [
            ("id", offset_of!(AgentHost, id) + size_of::<u64>()),
            ("tick", offset_of!(AgentHost, tick) + size_of::<u64>()),
            ("logs_this_call", offset_of!(AgentHost, logs_this_call) + size_of::<usize>()),
            ("next_seq", offset_of!(AgentHost, next_seq) + size_of::<u64>()),
            ("outbox", offset_of!(AgentHost, outbox) + size_of::<crate::mailbox::Mailbox>()),
            ("logs", offset_of!(AgentHost, logs) + size_of::<Vec<super::LogLine>>()),
            ("infer_requests", offset_of!(AgentHost, infer_requests) + size_of::<Vec<super::InferRequest>>()),
        ];
        for (field, end) in hot {
            assert!(end <= 128, "{field} ends at byte {end} of the host state");
        }
    }
}
