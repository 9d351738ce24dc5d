//! The wasm sandbox: one shared `Engine`, modules compiled and linked once (`InstancePre`), one
//! `Store` per agent with a memory cap, a fuel budget per call and an epoch deadline.
//!
//! Data flow: bytes --[AgentModule::compile]--> AgentModule --[instantiate]--> AgentInstance,
//! whose `call_*` methods run one ABI function and classify any failure as a `Fault`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{
    Config, Engine, ExternType, Instance, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module, PoolingAllocationConfig, Store, Trap, TypedFunc,
    ValType,
};

use crate::abi;
use crate::bus::{AgentId, MessageRef};
use crate::error::{LockstepError, Result};
use crate::fault::{AbiCall, Fault, FaultKind};
use crate::held_routes::HeldRun;
use crate::host::{self, AgentHost};
use crate::mailbox::Mailbox;
use crate::tick_hash::AgentTickDigest;

/// Limits every agent of a runtime runs under.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Fuel per ABI call; 0 turns fuel metering off (then only the deadline stops a loop).
    pub fuel_per_call: u64,
    /// Cap on one agent's linear memory, bytes.
    pub memory_limit_bytes: u64,
    /// Slots in the pooling allocator: the most agents alive at once.
    pub max_agents: u32,
    /// Wall-clock backstop per ABI call, milliseconds.
    pub deadline_ms: u64,
    /// Where agent memories live.
    pub allocator: MemoryAllocator,
}

/// How agent linear memories are allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryAllocator {
    /// All memories in one mapping (`slab_memory`): no per-agent memory maps, so 100,000
    /// agents fit in one process. Linux only.
    Slab,
    /// wasmtime's pooling allocator: ~4 memory maps per agent, so one process stops near
    /// 16,000 agents under the default `vm.max_map_count`.
    Pooling,
}

impl Default for MemoryAllocator {
    fn default() -> Self {
        if cfg!(target_os = "linux") {
            Self::Slab
        } else {
            Self::Pooling
        }
    }
}

/// How often the epoch ticker advances the engine's epoch.
const EPOCH_PERIOD_MS: u64 = 5;

/// Advances the engine epoch on a background thread, so a call that runs past its deadline
/// is interrupted even when fuel metering is off. Stops when dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("lockstep-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(EPOCH_PERIOD_MS));
                    engine.increment_epoch();
                }
            })
            .ok();
        Self { stop, handle }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub struct Sandbox {
    engine: Engine,
    linker: Linker<AgentHost>,
    config: SandboxConfig,
    _ticker: EpochTicker,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Self> {
        if config.memory_limit_bytes < 65_536 * 2 {
            return Err(LockstepError::InvalidConfig {
                reason: format!("memoryLimitBytes {} is below the 128 KiB minimum (two wasm pages)", config.memory_limit_bytes),
            });
        }
        if config.memory_limit_bytes > 4 << 30 {
            return Err(LockstepError::InvalidConfig {
                reason: format!("memoryLimitBytes {} exceeds the 4 GiB a wasm32 memory can address", config.memory_limit_bytes),
            });
        }
        if config.max_agents == 0 {
            return Err(LockstepError::InvalidConfig { reason: "maxAgents must be at least 1".into() });
        }
        if config.deadline_ms == 0 {
            return Err(LockstepError::InvalidConfig { reason: "deadlineMs must be at least 1".into() });
        }
        let mut c = Config::new();
        // Determinism: metered execution, canonical NaNs, no threads, deterministic relaxed SIMD.
        c.consume_fuel(config.fuel_per_call > 0);
        c.epoch_interruption(true);
        c.cranelift_nan_canonicalization(true);
        // wasm threads: not compiled in (wasmtime's `threads` feature is off), so never enabled.
        c.shared_memory(false);
        c.relaxed_simd_deterministic(true);
        // The ABI is one 32-bit memory per agent (docs/ABI.md): the validator refuses the rest,
        // so no module can hold memory beside the one the limiter caps.
        c.wasm_multi_memory(false);
        c.wasm_memory64(false);
        // A small reservation per memory instead of wasmtime's 4 GiB default: 10,000 agents
        // would otherwise reserve ~40 TiB of address space. Wasm pages are 64 KiB.
        let limit = config.memory_limit_bytes;
        let slot_bytes = limit.div_ceil(65_536) * 65_536;
        c.memory_reservation(slot_bytes);
        c.memory_reservation_for_growth(0);
        match config.allocator {
            #[cfg(target_os = "linux")]
            MemoryAllocator::Slab => {
                let creator = crate::slab_memory::SlabMemoryCreator::new(config.max_agents as usize + 1, slot_bytes as usize)
                    .map_err(|reason| LockstepError::InvalidConfig { reason })?;
                // No guard and no reservation: wasmtime then treats every memory as one that
                // may move and bounds-checks each access against the memory's *current* size,
                // loaded at run time. With a reservation of `slot_bytes`, a module declaring a
                // maximum (`(memory 2 4)`) would be compiled as a static heap, checked against
                // the reservation instead, and a store past `memory.size` would succeed here
                // while it traps on the pooling allocator (issue 9, item 1). Our memories never
                // actually move (`SlabMemory` keeps its base), which "may move" allows.
                c.memory_reservation(0);
                c.memory_guard_size(0);
                c.memory_init_cow(false);
                c.with_host_memory(Arc::new(creator));
                c.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            }
            #[cfg(not(target_os = "linux"))]
            MemoryAllocator::Slab => {
                return Err(LockstepError::InvalidConfig { reason: "the slab memory allocator needs Linux; use Pooling".into() });
            }
            MemoryAllocator::Pooling => {
                c.memory_guard_size(65_536);
                let mut pool = PoolingAllocationConfig::default();
                // +1: the load-time probe instance of a module needs a slot too.
                let slots = config.max_agents.saturating_add(1);
                pool.total_memories(slots)
                    .total_tables(slots)
                    .total_core_instances(slots)
                    .max_memories_per_module(1)
                    .max_tables_per_module(1)
                    .max_memory_size(slot_bytes as usize)
                    // The ABI's table limit (module_shape, the limiter): with 10,000 here a
                    // module the ABI admits was refused on this allocator only, and
                    // `table.grow` past 10,000 failed here but not on Slab (a divergence).
                    .table_elements(abi::MAX_TABLE_ELEMENTS)
                    // A fiber stack per time-sliced agent: its store keeps one for its life (a
                    // suspended call runs on it). wasmtime's default of 1,000 made the 1,001st
                    // agent suspended at once trap ("maximum concurrent limit of 1000 for
                    // fibers reached") here but not on Slab, a divergence; `set_fuel_per_tick`
                    // admits at most `MAX_SLICED_AGENTS` on both. Not one per slot: each stack
                    // is two memory mappings, and 16,384 of them beside 16,384 memories ran
                    // past Linux's 65,530 (`vm.max_map_count`).
                    .total_stacks(slots.min(crate::limits::MAX_SLICED_AGENTS as u32));
                c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            }
        }
        let engine = Engine::new(&c).map_err(|e| LockstepError::InvalidConfig { reason: format!("wasm engine: {e}") })?;
        let mut linker = Linker::new(&engine);
        host::define_imports(&mut linker).map_err(|e| LockstepError::InvalidConfig { reason: format!("linker: {e}") })?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self { engine, linker, config, _ticker: ticker })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    fn deadline_ticks(&self) -> u64 {
        self.config.deadline_ms.div_ceil(EPOCH_PERIOD_MS).max(1)
    }
}

/// What a module was granted at admission (security::admit, cut to the runtime's policy).
#[derive(Debug, Clone)]
pub struct Grants {
    pub capabilities: crate::security::Capabilities,
    /// What its manifest asked for (to tell "undeclared" from "denied by policy").
    pub asked: crate::security::Capabilities,
    pub fuel_per_call: u64,
    pub memory_limit_bytes: u64,
}

/// A compiled, validated and linked agent module. Cheap to instantiate many times.
pub struct AgentModule {
    pub bytes: Arc<Vec<u8>>,
    pub grants: Grants,
    pre: InstancePre<AgentHost>,
    /// What snapshots need to know about it (`snapshot::wasm`).
    pub(crate) snapshot: Arc<crate::snapshot::wasm::ModuleState>,
    /// The ABI version its `lockstep_abi_version()` returned when it was loaded (every
    /// instance must return the same): how the runtime delivers its messages.
    pub(crate) abi_version: u32,
}

fn expect_func(module: &Module, name: &str, params: &[ValType], results: &[ValType], sig: &str) -> Result<()> {
    let missing = || LockstepError::MissingExport { name: name.to_string(), expected: sig.to_string() };
    let Some(ExternType::Func(f)) = module.get_export(name) else { return Err(missing()) };
    if has_type(&f, params, results) {
        Ok(())
    } else {
        Err(missing())
    }
}

/// Whether function type `f` is `params -> results`.
fn has_type(f: &wasmtime::FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let same = |a: &mut dyn ExactSizeIterator<Item = ValType>, b: &[ValType]| a.len() == b.len() && a.zip(b).all(|(x, y)| ValType::eq(&x, y));
    same(&mut f.params(), params) && same(&mut f.results(), results)
}

/// Bytes from `lockstep_io_buffer()` the agent must own: the io buffer, and (ABI 2) the batch
/// state after it.
pub(crate) fn io_region_bytes(version: u32) -> usize {
    abi::IO_BUFFER_BYTES as usize + if version >= 2 { abi::BATCH_STATE_BYTES as usize } else { 0 }
}

/// How many held records ahead `fill_batch_held` asks for a payload.
const HELD_PREFETCH: usize = 4;

/// The fault for a message that does not fit the io buffer (a runtime bug: every queue that
/// feeds an inbox refuses payloads over `MAX_PAYLOAD_BYTES`).
fn oversized(tick: u64, payload: usize) -> Fault {
    Fault {
        kind: FaultKind::HostCallViolation,
        call: AbiCall::Receive,
        tick,
        detail: format!("message of {payload} payload bytes does not fit the {}-byte io buffer (runtime bug: please report)", abi::IO_BUFFER_BYTES),
    }
}

impl AgentModule {
    /// Compiles and validates `bytes`: a wasm binary with the ABI's exports, importing nothing
    /// but the host imports, speaking an ABI version from `abi::MIN_ABI_VERSION` to
    /// `abi::ABI_VERSION` (version 1 exports `agent_receive`, version 2 `agent_receive_batch`).
    pub fn compile(sandbox: &Sandbox, bytes: Vec<u8>, grants: Grants) -> Result<Self> {
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(LockstepError::InvalidModule { reason: "bytes do not start with the wasm magic number \\0asm".into() });
        }
        // Its shape (sizes, counts) was checked by admission, before anything was compiled.
        // What snapshots need (docs/SNAPSHOT.md): wasmtime compiles the module with an export
        // for each mutable global; `bytes` (hashed, recorded, signed) stay the original.
        let (snapshot, with_exports) = crate::snapshot::wasm::prepare(&bytes)?;
        let module =
            Module::new(&sandbox.engine, with_exports.as_deref().unwrap_or(&bytes)).map_err(|e| LockstepError::InvalidModule { reason: format!("{e:#}") })?;
        for import in module.imports() {
            let provided = host::IMPORTS.iter().find(|(name, ..)| *name == import.name()).filter(|_| import.module() == abi::IMPORT_MODULE);
            let Some(&(_, params, results)) = provided else {
                return Err(LockstepError::UnknownImport { module: import.module().into(), name: import.name().into() });
            };
            let declared = match import.ty() {
                ExternType::Func(f) if has_type(&f, params, results) => None,
                ExternType::Func(f) => Some(host::func_type_text(f.params(), f.results())),
                ExternType::Global(_) => Some("a global".into()),
                ExternType::Table(_) => Some("a table".into()),
                ExternType::Memory(_) => Some("a memory".into()),
                _ => Some("something other than a function".into()),
            };
            if let Some(declared) = declared {
                return Err(LockstepError::ImportType {
                    import: format!("{}::{}", import.module(), import.name()),
                    declared,
                    provided: host::func_type_text(params.iter().cloned(), results.iter().cloned()),
                });
            }
            // Least privilege: only imports the granted capabilities cover are linked.
            if let Some(cap) = crate::security::capability_for_import(import.name()) {
                if !crate::security::grants_import(&grants.capabilities, cap) {
                    let why = if crate::security::grants_import(&grants.asked, cap) {
                        "the manifest asks for it, but this runtime's policy does not grant it"
                    } else {
                        "the manifest does not declare it; add it to capabilities and re-sign"
                    };
                    return Err(LockstepError::Security(crate::security::SecurityError::UndeclaredImport {
                        import: format!("{}::{}", import.module(), import.name()),
                        capability: cap.into(),
                        why: why.into(),
                    }));
                }
            }
        }
        match module.get_export(abi::EXPORT_MEMORY) {
            Some(ExternType::Memory(_)) => {}
            _ => return Err(LockstepError::MissingExport { name: abi::EXPORT_MEMORY.into(), expected: "a memory".into() }),
        }
        use ValType::I32;
        expect_func(&module, abi::EXPORT_ABI_VERSION, &[], &[I32], "func () -> i32")?;
        expect_func(&module, abi::EXPORT_IO_BUFFER, &[], &[I32], "func () -> i32")?;
        expect_func(&module, abi::EXPORT_INIT, &[], &[I32], "func () -> i32")?;
        expect_func(&module, abi::EXPORT_STEP, &[I32], &[I32], "func (context_ptr: i32) -> i32")?;
        // One of the two receive entry points (which one the version says, checked below); one
        // that is there has the right type.
        if module.get_export(abi::EXPORT_RECEIVE).is_some() || module.get_export(abi::EXPORT_RECEIVE_BATCH).is_none() {
            expect_func(&module, abi::EXPORT_RECEIVE, &[I32], &[I32], "func (message_ptr: i32) -> i32")?;
        }
        if module.get_export(abi::EXPORT_RECEIVE_BATCH).is_some() {
            expect_func(&module, abi::EXPORT_RECEIVE_BATCH, &[I32, I32], &[I32], "func (batch_ptr: i32, count: i32) -> i32")?;
        }
        expect_func(&module, abi::EXPORT_SHUTDOWN, &[], &[I32], "func () -> i32")?;
        let pre = sandbox.linker.instantiate_pre(&module).map_err(|e| LockstepError::InvalidModule { reason: format!("linking: {e:#}") })?;
        let mut compiled = Self { bytes: Arc::new(bytes), grants, pre, snapshot: Arc::new(snapshot), abi_version: 0 };
        // Probe once: the ABI version and io buffer are checked at load, not at first spawn.
        compiled.abi_version = compiled.instantiate(sandbox, 0, 0)?.abi_version;
        Ok(compiled)
    }

    /// Creates a fresh agent: new store, new memory, `agent_init` not yet called.
    pub fn instantiate(&self, sandbox: &Sandbox, id: AgentId, seed: u64) -> Result<AgentInstance> {
        let mut agent = self.instantiate_bare(sandbox, id, seed)?;
        let store = &mut agent.store;
        let inst_err = |e: wasmtime::Error| LockstepError::Instantiation { reason: format!("{e:#}") };
        let typed = |store: &mut Store<AgentHost>, name: &str| {
            agent
                .instance
                .get_typed_func::<(), i32>(store, name)
                .map_err(|_| LockstepError::MissingExport { name: name.into(), expected: "func () -> i32".into() })
        };
        let version_fn = typed(store, abi::EXPORT_ABI_VERSION)?;
        let io_fn = typed(store, abi::EXPORT_IO_BUFFER)?;
        let version = version_fn.call(&mut *store, ()).map_err(inst_err)? as u32;
        if !(abi::MIN_ABI_VERSION..=abi::ABI_VERSION).contains(&version) {
            return Err(LockstepError::AbiMismatch { found: version, expected: abi::ABI_VERSION });
        }
        // Every instance speaks the version the module spoke when it was loaded.
        if self.abi_version != 0 && version != self.abi_version {
            return Err(LockstepError::Instantiation {
                reason: format!(
                    "lockstep_abi_version() returned {version} here, {} when the module was loaded: it must always return the same",
                    self.abi_version
                ),
            });
        }
        let needed = match version {
            1 if agent.receive.is_none() => Some((abi::EXPORT_RECEIVE, "func (message_ptr: i32) -> i32")),
            2 if agent.receive_batch.is_none() => Some((abi::EXPORT_RECEIVE_BATCH, "func (batch_ptr: i32, count: i32) -> i32")),
            _ => None,
        };
        if let Some((name, sig)) = needed {
            return Err(LockstepError::MissingExport { name: name.into(), expected: format!("{sig} (it reports ABI version {version})") });
        }
        agent.abi_version = version;
        let io_ptr = io_fn.call(&mut *store, ()).map_err(inst_err)? as u32;
        // `set_io` checks that the region fits the memory; the error names the export here.
        agent.set_io(io_ptr).map_err(|_| {
            let (region, mem_len) = (io_region_bytes(version), agent.memory.data_size(&agent.store));
            LockstepError::InvalidModule {
                reason: format!("lockstep_io_buffer() returned {io_ptr}, but {region} bytes from there (its io region for ABI version {version}) do not fit the {mem_len}-byte memory"),
            }
        })?;
        Ok(agent)
    }

    /// A new store and instance with its ABI entry points bound, nothing of the agent called
    /// (its io buffer not asked for yet): what `instantiate` and a restore start from.
    fn instantiate_bare(&self, sandbox: &Sandbox, id: AgentId, seed: u64) -> Result<AgentInstance> {
        let cfg = sandbox.config();
        let mut host = AgentHost::new(id, seed, self.grants.memory_limit_bytes as usize);
        host.grants = self.grants.capabilities.clone();
        let mut store = Store::new(&sandbox.engine, host);
        store.limiter(|h| h as &mut dyn wasmtime::ResourceLimiter);
        // Per-module fuel (from its manifest, never above the runtime's): 0 = metering off.
        let fuel = if cfg.fuel_per_call > 0 { self.grants.fuel_per_call.max(1) } else { 0 };
        if fuel > 0 {
            store.set_fuel(fuel).map_err(|e| LockstepError::Instantiation { reason: e.to_string() })?;
        }
        store.set_epoch_deadline(sandbox.deadline_ticks());
        let inst_err = |e: wasmtime::Error| LockstepError::Instantiation { reason: format!("{e:#}") };
        let instance = self.pre.instantiate(&mut store).map_err(inst_err)?;
        let memory = instance
            .get_memory(&mut store, abi::EXPORT_MEMORY)
            .ok_or_else(|| LockstepError::MissingExport { name: abi::EXPORT_MEMORY.into(), expected: "a memory".into() })?;
        store.data_mut().memory = Some(memory);
        let typed = |store: &mut Store<AgentHost>, name: &str| {
            instance.get_typed_func::<(), i32>(store, name).map_err(|_| LockstepError::MissingExport { name: name.into(), expected: "func () -> i32".into() })
        };
        let init = typed(&mut store, abi::EXPORT_INIT)?;
        let shutdown = typed(&mut store, abi::EXPORT_SHUTDOWN)?;
        let typed1 = |store: &mut Store<AgentHost>, name: &str| {
            instance
                .get_typed_func::<i32, i32>(store, name)
                .map_err(|_| LockstepError::MissingExport { name: name.into(), expected: "func (i32) -> i32".into() })
        };
        let step = typed1(&mut store, abi::EXPORT_STEP)?;
        // Which one is called is the version's (checked by `instantiate`, or the module's).
        let receive = typed1(&mut store, abi::EXPORT_RECEIVE).ok();
        let receive_batch = instance.get_typed_func::<(i32, i32), i32>(&mut store, abi::EXPORT_RECEIVE_BATCH).ok();
        Ok(AgentInstance {
            store,
            instance,
            memory,
            io_ptr: 0,
            stack_hint: 0,
            vmctx_hint: 0,
            io: io_window::IoWindow::empty(),
            init,
            step,
            receive,
            receive_batch,
            abi_version: self.abi_version,
            shutdown,
            fuel_per_call: fuel,
            fuel_left_this_tick: fuel.saturating_mul(abi::FUEL_CALL_BUDGETS_PER_TICK),
            deadline_ticks: sandbox.deadline_ticks(),
            fuel_consumed: 0,
            snapshot: self.snapshot.clone(),
            captured_tables: Vec::new(),
            fuel_per_tick: 0,
            async_calls: false,
            resumed: None,
        })
    }
}

/// One live agent: its store, its memory and its ABI entry points.
///
/// `repr(C)`, the fields of every step first (a `TypedFunc` is 64 bytes: Rust's own order put
/// `step` and the fuel fields on five of its eight lines, each a cache miss per agent per
/// tick with 10,000 agents; issue 13, cachegrind).
#[repr(C)]
pub struct AgentInstance {
    store: Store<AgentHost>,
    /// The host's view of its io region (`set_io`; `io_window`'s invariants), and where that
    /// region starts in its memory (`lockstep_io_buffer()`).
    io: io_window::IoWindow,
    io_ptr: u32,
    abi_version: u32,
    fuel_per_call: u64,
    /// What is left of this tick's budget (`FUEL_CALL_BUDGETS_PER_TICK` call budgets shared by
    /// the tick's receive calls and its step): without it an agent that sends itself 4,096
    /// messages a tick burns 4,096 call budgets in every tick while every other agent waits.
    fuel_left_this_tick: u64,
    deadline_ticks: u64,
    /// Total fuel this agent has burned: deterministic, part of the deep hash.
    pub fuel_consumed: u64,
    /// Its fuel slice per call and tick (`Runtime::set_fuel_per_tick`); 0: not sliced.
    pub(crate) fuel_per_tick: u64,
    /// Its store yields (it was given a slice once): wasmtime then takes only async calls,
    /// whether a slice is still set or not (`slicing`).
    pub(crate) async_calls: bool,
    step: TypedFunc<i32, i32>,
    // The rest: calls other than the step, snapshots, slicing.
    /// ABI 1's entry point, and ABI 2's: `abi_version` says which one is called.
    receive: Option<TypedFunc<i32, i32>>,
    receive_batch: Option<TypedFunc<(i32, i32), i32>>,
    memory: Memory,
    instance: Instance,
    init: TypedFunc<(), i32>,
    shutdown: TypedFunc<(), i32>,
    /// Its module's facts for snapshots (which exports were added for them).
    snapshot: Arc<crate::snapshot::wasm::ModuleState>,
    /// Its tables' elements while a snapshot is taken (`capture_tables`), else empty.
    pub(crate) captured_tables: Vec<Vec<u32>>,
    /// Set when a suspended call of it is resumed: its epoch callback then gives the call a
    /// new wall-clock deadline instead of trapping (`slicing`). `None` until it is sliced.
    pub(crate) resumed: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Host address of the top of its shadow stack between calls (`stack_address_hint`; read
    /// only when its slot's prefetch addresses are set, so not among the step's fields).
    stack_hint: usize,
    /// Host address of its instance's VMContext (`vmctx_address_hint`).
    vmctx_hint: usize,
}

/// Everything the scheduler needs to fill in the step context.
pub struct StepContext {
    pub tick: u64,
    pub inbox_len: u32,
    pub max_agent_id: u64,
}

impl AgentInstance {
    pub fn host(&self) -> &AgentHost {
        self.store.data()
    }

    pub fn host_mut(&mut self) -> &mut AgentHost {
        self.store.data_mut()
    }

    /// Host address of the io buffer, only as a hint for prefetching: memories never move
    /// (`io_window`, invariant 1), and a prefetch of a stale address is harmless anyway.
    pub fn io_address_hint(&self) -> usize {
        self.io.address()
    }

    /// Host address of the top of its shadow stack between calls, only as a hint for
    /// prefetching (0 if unknown). LLVM's convention makes global 0 the stack pointer of a
    /// module compiled from Rust or C, and between calls it is back at its resting value, so
    /// it is read once, when the io region is set. Any other module gets an address inside its
    /// memory or 0: a prefetch of it is harmless.
    pub fn stack_address_hint(&self) -> usize {
        self.stack_hint
    }

    /// Host address of its instance's VMContext, only as a hint for prefetching (0 if
    /// unknown): every call into the agent and every host call it makes touch it
    /// (`vm_layout`).
    pub fn vmctx_address_hint(&self) -> usize {
        self.vmctx_hint
    }

    /// `stack_address_hint`'s value: global 0's value as an address in the memory (snapshots
    /// have every mutable global exported, `snapshot::wasm`), if it is an `i32` inside it.
    fn read_stack_hint(&mut self) -> usize {
        let Some((_, name)) = self.snapshot.globals.iter().find(|(index, _)| *index == 0) else { return 0 };
        let Some(sp) = self.instance.get_global(&mut self.store, name).and_then(|g| g.get(&mut self.store).i32()) else { return 0 };
        let offset = sp as u32 as usize;
        if offset > self.memory.data_size(&self.store) {
            return 0;
        }
        (self.memory.data_ptr(&self.store) as usize).wrapping_add(offset)
    }

    /// Records where its io region is (`offset`, from `lockstep_io_buffer()` or a snapshot)
    /// and takes the host's view of it, checking that the region lies inside the memory.
    pub(crate) fn set_io(&mut self, offset: u32) -> Result<()> {
        let len = io_region_bytes(self.abi_version);
        let io = io_window::IoWindow::new(&self.memory, &self.store, offset as usize, len).ok_or_else(|| LockstepError::InvalidModule {
            reason: format!("its io region ({len} bytes at {offset}) does not fit its {}-byte memory", self.memory.data_size(&self.store)),
        })?;
        self.io_ptr = offset;
        self.io = io;
        self.stack_hint = self.read_stack_hint();
        self.vmctx_hint = vm_layout::vmctx_address(self.step.func(), &mut self.store);
        Ok(())
    }

    /// The agent's io region (its io buffer, then ABI 2's batch state), writable: the only
    /// way to the window, so it is always used with this instance's own store.
    fn io_mut(&mut self) -> &mut [u8] {
        // SAFETY: `self.io` was made from `self.memory`, which `self.store` owns (`set_io`).
        unsafe { self.io.get(&mut self.store) }
    }

    /// Whether the io window still views its region of the memory (`io_window`, invariant 1).
    #[cfg(test)]
    pub(crate) fn io_window_is_current(&self) -> bool {
        self.io.views(&self.memory, &self.store, self.io_ptr as usize)
    }

    /// The agent's linear memory, read-only.
    pub fn memory_data(&self) -> &[u8] {
        self.memory.data(&self.store)
    }

    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Starts a tick's fuel budget (the scheduler calls it before the tick's first call).
    pub fn begin_tick(&mut self) {
        self.fuel_left_this_tick = self.fuel_per_call.saturating_mul(abi::FUEL_CALL_BUDGETS_PER_TICK);
    }

    /// `agent_init` runs outside any tick, with a budget of its own.
    pub fn call_init(&mut self, tick: u64) -> Result<(), Fault> {
        self.begin_tick();
        self.run(AbiCall::Init, tick, 0)
    }

    /// `agent_shutdown` runs between ticks, with a budget of its own.
    pub fn call_shutdown(&mut self, tick: u64) -> Result<(), Fault> {
        self.begin_tick();
        self.run(AbiCall::Shutdown, tick, 0)
    }

    pub fn call_step(&mut self, ctx: &StepContext) -> Result<(), Fault> {
        self.write_step_context(ctx);
        self.run(AbiCall::Step, ctx.tick, self.io_ptr as i32)
    }

    /// Writes the step context into the io buffer (before an `agent_step` call).
    fn write_step_context(&mut self, ctx: &StepContext) {
        let mut bytes = [0u8; abi::CONTEXT_BYTES];
        bytes[abi::CONTEXT_OFFSET_ABI_VERSION..][..4].copy_from_slice(&self.abi_version.to_le_bytes());
        bytes[abi::CONTEXT_OFFSET_INBOX_LEN..][..4].copy_from_slice(&ctx.inbox_len.to_le_bytes());
        bytes[abi::CONTEXT_OFFSET_TICK..][..8].copy_from_slice(&ctx.tick.to_le_bytes());
        bytes[abi::CONTEXT_OFFSET_AGENT_ID..][..8].copy_from_slice(&self.store.data().id.to_le_bytes());
        bytes[abi::CONTEXT_OFFSET_MAX_AGENT_ID..][..8].copy_from_slice(&ctx.max_agent_id.to_le_bytes());
        // 32 bytes always fit the 65,536-byte buffer checked at instantiation.
        if let Some(io) = self.io_mut().get_mut(..bytes.len()) {
            io.copy_from_slice(&bytes);
        }
    }

    /// Delivers `inbox` (in delivery order) the way the agent's ABI version says: one
    /// `agent_receive` call per message (1), or one `agent_receive_batch` call per io buffer
    /// full of them (2). Returns how many the agent handled, and the fault that stopped it, if
    /// one did (the messages from the returned count on were not delivered).
    pub(crate) fn deliver(&mut self, tick: u64, inbox: &Mailbox) -> (usize, Result<(), Fault>) {
        if self.abi_version < 2 {
            for (i, m) in inbox.iter().enumerate() {
                if let Err(f) = self.call_receive(tick, m) {
                    return (i, Err(f));
                }
            }
            return (inbox.len(), Ok(()));
        }
        let mut done = 0;
        while done < inbox.len() {
            let count = self.fill_batch(inbox.iter_from(done));
            if count == 0 {
                // Cannot happen: every payload fits the io buffer behind its header.
                let len = inbox.get(done).map_or(0, |m| m.payload.len());
                return (done, Err(oversized(tick, len)));
            }
            match self.receive_batch(tick, count) {
                Ok(()) => done += count,
                Err((handled, f)) => return (done + handled, Err(f)),
            }
        }
        (done, Ok(()))
    }

    /// Hands the agent the batch of `count` messages the io buffer holds (ABI 2's
    /// `agent_receive_batch`). On a fault, also how many of them it says it handled (clamped:
    /// the progress word is the agent's memory, and may hold anything).
    fn receive_batch(&mut self, tick: u64, count: usize) -> Result<(), (usize, Fault)> {
        self.set_batch_done(0);
        self.run_call(AbiCall::Receive, tick, self.io_ptr as i32, count as i32).map_err(|f| ((self.batch_done() as usize).min(count), f))
    }

    /// The ABI version the module declared (2: batched receive and send).
    #[inline]
    pub(crate) fn abi_version(&self) -> u32 {
        self.abi_version
    }

    /// `deliver` of held messages (`held_routes::HeldRun`: inbound-ring records held in the
    /// ring, `scheduler::HeldInboxes`, or routed messages held in their senders' outboxes,
    /// `held_routes::HeldRoutes`), in that order, to an ABI 2 agent whose inbox they would have
    /// been alone: each batch is copied straight from where they are into the io buffer, and,
    /// when they come from the host (`HeldRun::EXTERNAL`), fed to `digest` from there before
    /// the call (each message's header then payload: the bytes
    /// `AgentTickDigest::external_messages` feeds from an inbox). What a fault leaves
    /// undelivered is read once into `undelivered` (its dead letters), and what of it no batch
    /// fed yet is fed from those copies, so the digest covers every record and a record's dead
    /// letter is the bytes hashed for it (from the ring once) where no batch of it was written
    /// (red team: a second read could differ if a producer wrote into space not yet given
    /// back).
    pub(crate) fn deliver_held(
        &mut self,
        tick: u64,
        held: &impl HeldRun,
        digest: &mut AgentTickDigest,
        undelivered: &mut Vec<crate::bus::Message>,
    ) -> (usize, Result<(), Fault>) {
        debug_assert!(self.abi_version >= 2, "ABI 1 agents take their held records through the inbox");
        let mut done = 0;
        while done < held.len() {
            // (Fed to `digest` as it is written: before the agent can change it.)
            let count = self.fill_batch_held(held, done, digest);
            if count == 0 {
                // Cannot happen: every payload fits the io buffer behind its header.
                *undelivered = held.to_messages(done);
                digest.external_messages(undelivered.iter().map(crate::bus::Message::as_ref));
                let len = undelivered.first().map_or(0, |m| m.payload.len());
                return (done, Err(oversized(tick, len)));
            }
            match self.receive_batch(tick, count) {
                Ok(()) => done += count,
                Err((handled, f)) => {
                    *undelivered = held.to_messages(done + handled);
                    // (The batch itself was fed as it was written.)
                    digest.external_messages(undelivered.get(count - handled..).unwrap_or_default().iter().map(crate::bus::Message::as_ref));
                    return (done + handled, Err(f));
                }
            }
        }
        (done, Ok(()))
    }

    /// `fill_batch` from the ring: the held records at `indices` that fit, each header and
    /// payload written into the io buffer (payloads copied once, ring to agent memory), and fed
    /// to `digest` from there, a run of records at a time (a record is followed by padding only
    /// when its length is not a multiple of `BATCH_ALIGN`). Returns how many.
    fn fill_batch_held<R: HeldRun>(&mut self, held: &R, first: usize, digest: &mut AgentTickDigest) -> usize {
        let cap = abi::IO_BUFFER_BYTES as usize;
        let Some(io) = self.io_mut().get_mut(..cap) else { return 0 };
        let (mut at, mut n, mut run_start) = (0usize, 0usize, 0usize);
        for k in first..held.len() {
            // The messages of one agent lie apart (in the ring, in their senders' outboxes):
            // ask for one a few ahead.
            if k + HELD_PREFETCH < held.len() {
                held.prefetch(k + HELD_PREFETCH);
            }
            let Some((m, payload)) = held.head(k) else { break };
            let len = abi::MESSAGE_HEADER_BYTES + payload;
            let Some(record) = io.get_mut(at..at + len) else { break };
            let (header, body) = record.split_at_mut(abi::MESSAGE_HEADER_BYTES);
            if let Ok(header) = <&mut [u8; abi::MESSAGE_HEADER_BYTES]>::try_from(header) {
                m.write_header_of_len(payload as u32, header);
            }
            held.read_payload(k, body);
            n += 1;
            let next = abi::next_record(at, len);
            if next != at + len && R::EXTERNAL {
                // Padding follows this record: the run ends with it.
                digest.external_bytes(io.get(run_start..at + len).unwrap_or_default());
                run_start = next;
            }
            at = next;
            if at >= cap {
                break;
            }
        }
        if run_start < at && R::EXTERNAL {
            digest.external_bytes(io.get(run_start..at).unwrap_or_default());
        }
        n
    }

    /// Writes as many of `messages` as fit into the io buffer as one batch (ABI 2); returns
    /// how many.
    fn fill_batch<'a>(&mut self, messages: impl Iterator<Item = MessageRef<'a>>) -> usize {
        let cap = abi::IO_BUFFER_BYTES as usize;
        let Some(io) = self.io_mut().get_mut(..cap) else { return 0 };
        let (mut at, mut n) = (0usize, 0usize);
        let mut header = [0u8; abi::MESSAGE_HEADER_BYTES];
        for m in messages {
            let len = abi::MESSAGE_HEADER_BYTES + m.payload.len();
            if at + len > cap {
                break;
            }
            m.write_header(&mut header);
            io[at..at + abi::MESSAGE_HEADER_BYTES].copy_from_slice(&header);
            io[at + abi::MESSAGE_HEADER_BYTES..at + len].copy_from_slice(m.payload);
            n += 1;
            at = abi::next_record(at, len);
            if at >= cap {
                break;
            }
        }
        n
    }

    /// The batch state word (ABI 2): messages of the current batch the agent handled.
    fn batch_done(&self) -> u32 {
        let at = self.io_ptr as usize + abi::BATCH_OFFSET_DONE;
        self.memory.data(&self.store).get(at..at + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn set_batch_done(&mut self, v: u32) {
        let at = abi::BATCH_OFFSET_DONE;
        if let Some(b) = self.io_mut().get_mut(at..at + 4) {
            b.copy_from_slice(&v.to_le_bytes());
        }
    }

    pub(crate) fn call_receive(&mut self, tick: u64, message: MessageRef<'_>) -> Result<(), Fault> {
        let mut header = [0u8; abi::MESSAGE_HEADER_BYTES];
        message.write_header(&mut header);
        if !self.write_io(&header, message.payload) {
            // Every queue that feeds an inbox refuses payloads over MAX_PAYLOAD_BYTES, so this
            // is a runtime bug; it must still never write outside the io buffer.
            return Err(Fault {
                kind: FaultKind::HostCallViolation,
                call: AbiCall::Receive,
                tick,
                detail: format!(
                    "message of {} payload bytes does not fit the {}-byte io buffer (runtime bug: please report)",
                    message.payload.len(),
                    abi::IO_BUFFER_BYTES
                ),
            });
        }
        self.run(AbiCall::Receive, tick, self.io_ptr as i32)
    }

    /// Copies header and payload into the guest's io buffer; `false` (nothing written) when
    /// they do not fit it. The buffer's place was checked at instantiation and memory never
    /// shrinks, so the only thing to check per write is the length against the buffer.
    fn write_io(&mut self, header: &[u8], payload: &[u8]) -> bool {
        let total = header.len() + payload.len();
        if total > abi::IO_BUFFER_BYTES as usize {
            return false;
        }
        let Some(io) = self.io_mut().get_mut(..total) else { return false };
        io[..header.len()].copy_from_slice(header);
        io[header.len()..].copy_from_slice(payload);
        true
    }

    /// Runs one ABI function under a fresh fuel budget and deadline. The typed functions are
    /// borrowed, never cloned: cloning one bumps a reference count shared by every agent of
    /// the module, which made worker threads fight over one cache line (measured: parallel
    /// ticks slower than sequential ones).
    fn run(&mut self, call: AbiCall, tick: u64, arg: i32) -> Result<(), Fault> {
        self.run_call(call, tick, arg, 0)
    }

    /// `run`, with the message count of an ABI-2 receive call.
    fn run_call(&mut self, call: AbiCall, tick: u64, arg: i32, count: i32) -> Result<(), Fault> {
        let host = self.store.data_mut();
        host.tick = tick;
        host.begin_call();
        let budget = self.fuel_per_call.min(self.fuel_left_this_tick);
        if self.fuel_per_call > 0 {
            // Cannot fail: fuel metering is on whenever fuel_per_call > 0.
            let _ = self.store.set_fuel(budget);
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        let result = if self.async_calls {
            // A store that yields takes async calls only: run this one to its end here.
            self.call_to_end(call, arg, count)
        } else {
            self.call_sync(call, arg, count)
        };
        if self.fuel_per_call > 0 {
            let left = self.store.get_fuel().unwrap_or(0);
            let used = budget.saturating_sub(left);
            self.fuel_consumed += used;
            self.fuel_left_this_tick = self.fuel_left_this_tick.saturating_sub(used);
        }
        match result {
            // The common case, without a call: status 0.
            Ok(0) => Ok(()),
            other => self.status(other, call, tick, budget < self.fuel_per_call),
        }
    }

    /// What a call's result means: status 0 is success, any other the agent's error; a trap
    /// is classified (`classify`).
    #[cold]
    fn status(&mut self, result: wasmtime::Result<i32>, call: AbiCall, tick: u64, tick_budget_bound: bool) -> Result<(), Fault> {
        match result {
            Ok(0) => Ok(()),
            Ok(code) => Err(Fault { kind: FaultKind::AgentError, call, tick, detail: format!("{} returned status {code}", call.export_name()) }),
            Err(e) => Err(self.classify(e, call, tick, tick_budget_bound)),
        }
    }

    /// Calls the ABI function of `call` (sync store).
    fn call_sync(&mut self, call: AbiCall, arg: i32, count: i32) -> wasmtime::Result<i32> {
        match call {
            AbiCall::Init => self.init.call(&mut self.store, ()),
            AbiCall::Step => self.step.call(&mut self.store, arg),
            AbiCall::Receive => match (&self.receive_batch, &self.receive) {
                (Some(f), _) if self.abi_version >= 2 => f.call(&mut self.store, (arg, count)),
                (_, Some(f)) => f.call(&mut self.store, arg),
                // `instantiate` refused a module without the entry point its version needs.
                _ => Err(wasmtime::Error::msg("no receive entry point for its ABI version")),
            },
            AbiCall::Shutdown => self.shutdown.call(&mut self.store, ()),
        }
    }

    fn classify(&mut self, e: wasmtime::Error, call: AbiCall, tick: u64, tick_budget_bound: bool) -> Fault {
        let host = self.store.data_mut();
        let (kind, detail) = if host.memory_limit_hit {
            (FaultKind::MemoryLimit, format!("memory cap of {} bytes reached", host.memory_limit_bytes))
        } else if let Some(v) = host.violation.take() {
            (FaultKind::HostCallViolation, v)
        } else if let Some(trap) = e.downcast_ref::<Trap>() {
            match trap {
                Trap::OutOfFuel if tick_budget_bound => (
                    FaultKind::FuelExhausted,
                    format!(
                        "used its per-tick fuel budget of {} ({} × its per-call budget of {}) over this tick's calls",
                        self.fuel_per_call.saturating_mul(abi::FUEL_CALL_BUDGETS_PER_TICK),
                        abi::FUEL_CALL_BUDGETS_PER_TICK,
                        self.fuel_per_call
                    ),
                ),
                Trap::OutOfFuel => (FaultKind::FuelExhausted, format!("used its fuel budget of {}", self.fuel_per_call)),
                Trap::Interrupt => (FaultKind::Deadline, "ran past the wall-clock deadline".to_string()),
                Trap::UnreachableCodeReached if host.panic_message.is_some() => (FaultKind::Panic, host.panic_message.take().unwrap_or_default()),
                other => (FaultKind::Trap, other.to_string()),
            }
        } else {
            (FaultKind::Trap, format!("{e}"))
        };
        Fault { kind, call, tick, detail }
    }

    /// Hash of everything the agent's future depends on: its memory, exported globals and
    /// the host-side state (sequence counter, random stream position, fuel burned).
    pub fn deep_hash_into(&mut self, hasher: &mut blake3::Hasher) {
        hasher.update(self.memory.data(&self.store));
        let globals: Vec<_> = self
            .instance
            .exports(&mut self.store)
            // The exports added for snapshots are not the module's: hashes stay the same.
            .filter(|e| !self.snapshot.is_added_export(e.name()))
            .filter_map(|e| {
                let name = e.name().to_string();
                e.into_global().map(|g| (name, g))
            })
            .collect();
        for (name, g) in globals {
            hasher.update(name.as_bytes());
            match g.get(&mut self.store) {
                wasmtime::Val::I32(v) => hasher.update(&v.to_le_bytes()),
                wasmtime::Val::I64(v) => hasher.update(&v.to_le_bytes()),
                wasmtime::Val::F32(v) => hasher.update(&v.to_le_bytes()),
                wasmtime::Val::F64(v) => hasher.update(&v.to_le_bytes()),
                wasmtime::Val::V128(v) => hasher.update(&v.as_u128().to_le_bytes()),
                _ => hasher.update(b"ref"),
            };
        }
        let host = self.store.data();
        hasher.update(&host.next_seq.to_le_bytes());
        hasher.update(&host.rng.get_word_pos().to_le_bytes());
        hasher.update(&self.fuel_consumed.to_le_bytes());
    }
}

// The host's direct view of an agent's io region (unsafe; invariants in the file).
mod io_window;

// Where an instance's VMContext lies, a prefetch hint (unsafe; invariants in the file).
mod vm_layout;
#[cfg(test)]
pub(crate) use vm_layout::holds_vmctx_magic;

// Time slicing: calls that may be suspended between ticks.
mod slicing;
pub(crate) use slicing::{start as start_call, Outcome, Suspended};

// Snapshots (docs/SNAPSHOT.md) read and rebuild an instance's private state: the code is in
// its own file, a child of this module so that it sees the fields above.
#[path = "snapshot/instance.rs"]
mod snapshot_instance;
