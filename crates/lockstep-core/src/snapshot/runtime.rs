//! `Runtime::snapshot` and `Runtime::restore` (docs/SNAPSHOT.md). A child of `runtime`, so it
//! reads and rebuilds the runtime's private fields directly; everything else it needs from
//! the other modules is a small `pub(crate)` hook beside the state it concerns (`Inputs::image`,
//! `Agents::restored`, `AgentSlot::restored`, `Outputs::undrained_host_messages`...).

use std::collections::HashMap;

use rayon::prelude::*;

use super::{Agents, Runtime, RuntimeConfig};
use crate::bus::AgentId;
use crate::error::{Digest, LockstepError, Result};
use crate::graph::Graph;
use crate::inputs::Inputs;
use crate::journal::JournalSink;
use crate::replay_log::Lineage;
use crate::replay_log::Record;
use crate::runtime::ResourcePolicy;
use crate::sandbox::AgentInstance;
use crate::scheduler::AgentSlot;
use crate::snapshot::format::corrupt;
use crate::snapshot::{self, Capture, InstanceImage, RestoreOptions, RuntimeImage, SlotImage, ZERO_PAGE};

/// Below this many live agents a snapshot or restore stays on the calling thread.
const PARALLEL_MIN_AGENTS: usize = 64;

/// One agent's capture: its instance (pages not yet numbered) and its pages' addresses.
type Part = Option<(InstanceImage, Vec<Option<(u16, [u8; 32])>>)>;

impl Runtime {
    /// The complete state of the runtime, as bytes (docs/SNAPSHOT.md): configuration,
    /// modules, every agent (memory, mutable globals, host state, inbox, counters, lifecycle
    /// state), the input queue, the messages and dead letters not yet drained, the agent model
    /// table, the tick and the hash chain's head. Between ticks (which `&mut self` is):
    /// [`Runtime::restore`] builds a runtime that continues exactly. It changes nothing here
    /// and records nothing. Not in it: events not yet drained, attached rings (process
    /// memory), the recorder (a restored runtime records a log of its own).
    ///
    /// Identical 64 KiB memory pages are stored once and zero pages not at all, so many
    /// agents of one module cost little more than one. `E_SNAPSHOT_UNSUPPORTED` when a
    /// running agent holds state a snapshot cannot store (its module mutates a table).
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        // (Only a tick cut short by a panic leaves ring records held: into their inboxes.)
        self.inputs.end_holding(&mut self.agents.slots);
        self.end_held_routes();
        let capture = self.capture()?;
        Ok(snapshot::encode(&capture))
    }

    /// Rebuilds a runtime from [`Runtime::snapshot`]'s bytes, in this process or another: its
    /// next tick is the snapshot's next tick, and every tick and deep hash from there on equal
    /// those of the runtime it was taken from, given the same inputs. Settings come from the
    /// snapshot; threads, allocator, recording and trust from `options` (a snapshot never
    /// grants itself trust: see [`RestoreOptions`]).
    ///
    /// Errors: `E_SNAPSHOT_CORRUPT` (damaged, truncated or forged; with the byte offset),
    /// `E_SNAPSHOT_VERSION`, `E_SNAPSHOT_MISMATCH` (not what `options.expect` says),
    /// `E_SNAPSHOT_UNTRUSTED` (a module the caller does not trust). Nothing is built before
    /// the whole snapshot has been checked.
    pub fn restore(bytes: &[u8], options: RestoreOptions) -> Result<Runtime> {
        let mut rt = Self::rebuild(bytes, &options, false)?;
        if options.record {
            rt.record_from_snapshot(bytes)?;
        }
        if let Some(journal) = &options.journal {
            rt.journal_from_snapshot(bytes, journal, None)?;
        }
        Ok(rt)
    }

    /// A fork (`JournalCursor::fork`): restored from `bytes`, a snapshot of a replaying
    /// runtime, with the recorded session's checkpoint interval (a replay runs without one),
    /// its journal (if any) naming `lineage` as its parent.
    pub(crate) fn restore_forked(bytes: &[u8], options: RestoreOptions, session: &crate::replay_log::SessionConfig, lineage: Lineage) -> Result<Runtime> {
        let mut rt = Self::rebuild(bytes, &options, false)?;
        rt.config.checkpoint_interval_ticks = session.checkpoint_interval_ticks;
        let own = if options.record || options.journal.is_some() { rt.snapshot()? } else { Vec::new() };
        if options.record {
            rt.record_from_snapshot(&own)?;
        }
        if let Some(journal) = &options.journal {
            rt.journal_from_snapshot(&own, journal, Some(lineage))?;
        }
        Ok(rt)
    }

    /// Starts a journal whose first segment continues from `snapshot` (this runtime's state).
    fn journal_from_snapshot(&mut self, snapshot: &[u8], journal: &crate::journal::JournalConfig, lineage: Option<Lineage>) -> Result<()> {
        let sink = JournalSink::create_from(journal, &self.config.session(), Some((snapshot, self.tick, self.last_hash)), lineage)?;
        self.recorder.get_or_insert_with(crate::recorder::Recorder::new).attach_journal(sink);
        self.config.journal = Some(journal.clone());
        Ok(())
    }

    /// A restored runtime for `replay_from`: inference answers come from the log, checkpoints
    /// only where the log has them.
    pub(crate) fn restore_replaying(bytes: &[u8], options: RestoreOptions) -> Result<Runtime> {
        Self::rebuild(bytes, &options, true)
    }

    fn capture(&mut self) -> Result<Capture> {
        if let Some(agent) = self.lm.in_flight() {
            let module = self.agents.get(agent).map(|s| s.module.to_hex()).unwrap_or_default();
            return Err(LockstepError::SnapshotUnsupported {
                agent,
                module,
                reason: "it has a generate request in flight (a language model's KV cache is not in snapshots); snapshot once it finished".into(),
            });
        }
        // A suspended call holds its instance mid-call, where nothing can read it (its memory,
        // its wasm stack): refused, naming it (docs/ABI.md, "Time slicing").
        if let Some(s) = self.agents.slots.iter().find(|s| s.suspended.is_some()) {
            let call = s.suspended.as_ref().map_or("", |c| c.call.export_name());
            return Err(LockstepError::SnapshotUnsupported {
                agent: s.id,
                module: s.module.to_hex(),
                reason: format!(
                    "it is suspended in {call} (time slicing: its call is mid-way, its wasm stack is not in snapshots); snapshot at a tick where no call is suspended (the journal's automatic snapshots wait for one)"
                ),
            });
        }
        let by_module = |module: &Digest, reason: String| format!("its module {module} {reason}. Stop or kill it first, or rebuild the module without it");
        for s in self.agents.slots.iter().filter(|s| s.instance.is_some()) {
            if let Some(reason) = self.modules.get(&s.module).and_then(|m| m.snapshot.unsupported.clone()) {
                return Err(LockstepError::SnapshotUnsupported { agent: s.id, module: s.module.to_hex(), reason: by_module(&s.module, reason) });
            }
        }
        // Tables first: an element that is none of the module's functions refuses the snapshot.
        for s in self.agents.slots.iter_mut() {
            let (id, module) = (s.id, s.module);
            if let Some(i) = s.instance.as_deref_mut() {
                i.captured_tables = i.capture_tables().map_err(|reason| LockstepError::SnapshotUnsupported {
                    agent: id,
                    module: module.to_hex(),
                    reason: by_module(&module, reason),
                })?;
            }
        }
        let one = |s: &mut AgentSlot| -> Part {
            s.instance.as_deref_mut().map(|i| {
                let mut image = i.capture();
                image.tables = std::mem::take(&mut i.captured_tables);
                (image, i.page_addresses())
            })
        };
        let parallel = self.agents.live() >= PARALLEL_MIN_AGENTS;
        let parts: Vec<Part> = match &self.pool {
            Some(pool) if parallel => pool.install(|| self.agents.slots.par_iter_mut().map(one).collect()),
            _ => self.agents.slots.iter_mut().map(one).collect(),
        };
        // Number the pages: each distinct one once, in the order agents (by id) first use it.
        let module_index: HashMap<Digest, u32> = self.modules.keys().enumerate().map(|(i, h)| (*h, i as u32)).collect();
        let mut table: HashMap<[u8; 32], u32> = HashMap::new();
        let mut unique: Vec<(usize, usize, u16, [u8; 32])> = Vec::new();
        let mut agents = Vec::with_capacity(self.agents.slots.len());
        for (i, (s, part)) in self.agents.slots.iter().zip(parts).enumerate() {
            let instance = part.map(|(mut image, hashes)| {
                image.pages = hashes
                    .iter()
                    .enumerate()
                    .map(|(n, address)| match address {
                        None => ZERO_PAGE,
                        Some((mask, h)) => *table.entry(*h).or_insert_with(|| {
                            unique.push((i, n, *mask, *h));
                            (unique.len() - 1) as u32
                        }),
                    })
                    .collect();
                image
            });
            agents.push(SlotImage {
                id: s.id,
                phase: s.phase,
                module: module_index.get(&s.module).copied().unwrap_or(u32::MAX),
                state: s.state.clone(),
                inbox: s.inbox.to_messages(0..s.inbox.len()),
                inbox_bytes: s.inbox.payload_bytes() as u64,
                steps: s.steps,
                messages_received: s.messages_received,
                messages_sent: s.messages_sent,
                last_memory_bytes: s.last_memory_bytes as u64,
                last_fuel_consumed: s.last_fuel_consumed,
                instance,
            });
        }
        let slots = &self.agents.slots;
        let pack = |&(i, n, mask, hash): &(usize, usize, u16, [u8; 32])| {
            let page = slots[i].instance.as_deref().map(|inst| inst.page(n)).unwrap_or_default();
            let (codec, data) = snapshot::pack_page(page, mask);
            (hash, mask, codec, data)
        };
        let pages = match &self.pool {
            Some(pool) if unique.len() >= PARALLEL_MIN_AGENTS => pool.install(|| unique.par_iter().map(pack).collect()),
            _ => unique.iter().map(pack).collect(),
        };
        let runtime = RuntimeImage {
            tick: self.tick,
            last_hash: self.last_hash,
            last_fuel: self.last_fuel,
            next_request_id: self.next_request_id,
            session_started: self.session_started,
            phases: self.agents.priorities.clone(),
            phases_stale: self.agents.stale(),
            inputs: self.inputs.image(),
            host_messages: self.outputs.undrained_host_messages(),
            dead_letters: self.outputs.dead_letters.iter().cloned().collect(),
            dropped: self.outputs.dropped_counts(),
            models: self.inference.models.clone(),
            edges: self.agents.graph().edges(),
            all_triggers: self.agents.graph().all_triggers().collect(),
        };
        let modules = self.modules.iter().map(|(h, m)| (*h, m.bytes.clone())).collect();
        Ok(Capture { session: self.config.session(), modules, pages, runtime, agents })
    }

    fn rebuild(bytes: &[u8], options: &RestoreOptions, replaying: bool) -> Result<Runtime> {
        let d = snapshot::decode(bytes)?;
        let differences = snapshot::differences(&d, &options.expect);
        if !differences.is_empty() {
            return Err(LockstepError::SnapshotMismatch { differences: differences.join("; ") });
        }
        let snapshot::Decoded { session: s, modules, pages, runtime: r, agents: images, config_offset, modules_offset, runtime_offset, agents_offset, .. } = d;
        let policy = serde_json::from_str(&s.policy_json).map_err(|e| corrupt(config_offset, format!("Config section, policy: {e}")))?;
        let config = RuntimeConfig {
            workers: options.workers,
            fuel_per_call: s.fuel_per_call,
            memory_limit_bytes: s.memory_limit_bytes,
            seed: s.seed,
            max_agents: s.max_agents,
            deadline_ms: s.deadline_ms,
            // A replay checks deep hashes where its log has them only.
            checkpoint_interval_ticks: if replaying { 0 } else { s.checkpoint_interval_ticks },
            record: false,
            max_events: options.max_events,
            allocator: options.allocator,
            max_log_bytes: options.max_log_bytes,
            inference_batching: options.inference_batching,
            // Trust is the caller's: never more than the snapshot's session had either.
            trusted_keys: s.trusted_keys.iter().filter(|k| options.trusted_keys.contains(k)).copied().collect(),
            dev_mode: s.dev_mode && options.dev_mode,
            policy,
            resource_policy: if s.resource_clamp { ResourcePolicy::Clamp } else { ResourcePolicy::Refuse },
            // A restored runtime records in memory only (snapshots in the journal: issue 12).
            journal: None,
            worker_scaling: options.worker_scaling,
        };
        let mut rt = Runtime::new(config).map_err(|e| match e {
            // Threads and allocator are the caller's; every other setting is the snapshot's.
            LockstepError::InvalidConfig { reason } if !reason.starts_with("workers") && !reason.contains("allocator") => {
                corrupt(config_offset, format!("Config section: {reason}"))
            }
            other => other,
        })?;
        rt.inference.replaying = replaying;
        let mut loaded = Vec::with_capacity(modules.len());
        for (hash, code) in modules {
            rt.load_module(code).map_err(|e| match e {
                LockstepError::Security(s) => LockstepError::SnapshotUntrusted { hash: hash.to_hex(), reason: s.to_string() },
                other => corrupt(modules_offset, format!("Modules section: module {hash} does not load here: {other}")),
            })?;
            loaded.push((hash, rt.modules.get(&hash).cloned().ok_or_else(|| corrupt(modules_offset, format!("module {hash} hashes otherwise")))?));
        }
        // What the decoder could not check alone: against the settings and the modules.
        let live = images.iter().filter(|a| a.instance.is_some()).count();
        if live > rt.config.max_agents as usize {
            return Err(corrupt(agents_offset, format!("Agents section: {live} running agents, over maxAgents {}", rt.config.max_agents)));
        }
        if let Some(a) = images.iter().find(|a| a.instance.is_some() && !r.phases.contains(&a.phase)) {
            return Err(corrupt(agents_offset, format!("Agents section: agent {} runs at priority {}, which is no phase of the tick", a.id, a.phase)));
        }
        let sliced = images.iter().filter_map(|a| a.instance.as_ref()).filter(|i| i.fuel_per_tick > 0).count();
        if sliced > crate::limits::MAX_SLICED_AGENTS {
            return Err(corrupt(
                agents_offset,
                format!("Agents section: {sliced} agents hold a time slice, over the limit of {}", crate::limits::MAX_SLICED_AGENTS),
            ));
        }
        let pending: u64 = r.inputs.messages.iter().filter(|m| m.from != crate::abi::INFERENCE_ID).map(|m| m.payload.len() as u64).sum();
        if pending != r.inputs.bytes {
            return Err(corrupt(runtime_offset, format!("Runtime section: the input queue counts {} bytes, its messages hold {pending}", r.inputs.bytes)));
        }
        let seed = rt.config.seed;
        let (sandbox, pages) = (&rt.sandbox, &pages);
        let build = |a: &SlotImage| -> Result<Option<Box<AgentInstance>>> {
            let Some(image) = &a.instance else { return Ok(None) };
            let module = &loaded[a.module as usize].1;
            module.restore_instance(sandbox, a.id, seed, image, pages, agents_offset as u64).map(|i| Some(Box::new(i)))
        };
        let instances: Vec<Result<Option<Box<AgentInstance>>>> = match &rt.pool {
            Some(pool) if live >= PARALLEL_MIN_AGENTS => pool.install(|| images.par_iter().map(build).collect()),
            _ => images.iter().map(build).collect(),
        };
        let mut slots = Vec::with_capacity(images.len());
        for (a, instance) in images.into_iter().zip(instances) {
            let mut slot = AgentSlot::restored(a.id, a.phase, loaded[a.module as usize].0, a.state, instance?);
            // The byte count is the messages' (checked against the stored one as it was read).
            slot.inbox = crate::mailbox::Mailbox::from(a.inbox);
            slot.steps = a.steps;
            slot.messages_received = a.messages_received;
            slot.messages_sent = a.messages_sent;
            slot.last_memory_bytes = a.last_memory_bytes as usize;
            slot.last_fuel_consumed = a.last_fuel_consumed;
            slots.push(slot);
        }
        let graph = restored_graph(&slots, &r.edges, &r.all_triggers).map_err(|e| corrupt(runtime_offset, format!("Runtime section: {e}")))?;
        rt.agents = Agents::restored(slots, r.phases, r.phases_stale, graph);
        rt.tick = r.tick;
        rt.last_hash = r.last_hash;
        rt.last_fuel = r.last_fuel;
        rt.next_request_id = r.next_request_id;
        rt.session_started = r.session_started;
        rt.inputs = Inputs::from_image(r.inputs);
        // Put back at the front, in order: a broken ring may have left the queue past its
        // limit (`Outputs::ring_broken`), and these were accepted already.
        for m in r.host_messages.into_iter().rev() {
            let bytes = m.payload.len();
            rt.outputs.host_messages.push_front(m, bytes);
        }
        for d in r.dead_letters {
            let bytes = d.message.payload.len();
            if !rt.outputs.dead_letters.push(d, bytes) {
                return Err(corrupt(runtime_offset, "Runtime section: more dead letters than their queue holds"));
            }
        }
        rt.outputs.set_dropped_counts(r.dropped);
        rt.inference.models = r.models;
        Ok(rt)
    }

    /// Starts a log whose replay begins at this snapshot: the Config record, then a Base
    /// record naming the snapshot (tick, BLAKE3, state hash), as one complete prefix.
    fn record_from_snapshot(&mut self, snapshot: &[u8]) -> Result<()> {
        // Recording starts before a session: this one continues the snapshot's.
        let started = std::mem::replace(&mut self.session_started, false);
        let result = self.start_recording();
        self.session_started = started;
        result?;
        let base = Record::Base { tick: self.tick, snapshot: Digest(*blake3::hash(snapshot).as_bytes()), hash: self.last_hash };
        self.record(|r| r.record(&base));
        let (last_tick, hash) = (self.tick.saturating_sub(1), self.last_hash);
        if let Some(r) = self.recorder.as_mut() {
            r.tick_complete(last_tick, hash)?;
        }
        self.outputs.trim_events();
        Ok(())
    }
}

/// The workflow graph a snapshot stored, checked against its agents: every edge and trigger
/// between running agents (a stopped agent's went with it), no cycle, within the limit.
fn restored_graph(slots: &[AgentSlot], edges: &[(AgentId, AgentId)], all: &[AgentId]) -> std::result::Result<Graph, String> {
    let running = |id: AgentId| slots.get((id as usize).wrapping_sub(1)).is_some_and(|s| s.state.is_running() && s.instance.is_some());
    let mut graph = Graph::default();
    for &(from, to) in edges {
        if !running(from) || !running(to) {
            return Err(format!("the edge {from} → {to} names an agent that is not running"));
        }
        graph.check_connect(from, to, 1).map_err(|e| e.to_string())?;
        graph.connect(from, to);
    }
    for &id in all {
        if !running(id) {
            return Err(format!("agent {id} has trigger all but is not running"));
        }
        graph.set_trigger(id, crate::graph::Trigger::All);
    }
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use crate::{Runtime, RuntimeConfig};

    /// A module with a mutable global, memory it writes, and a message it sends the host.
    const AGENT: &str = r#"(module
  (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $n (mut i32) (i32.const 0))
  (func (export "lockstep_abi_version") (result i32) i32.const 1)
  (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 3)))
    (i32.store (i32.const 70000) (global.get $n))
    (drop (call $send (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 70000) (i32.const 4)))
    i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0))"#;

    #[test]
    fn format_versions_1_and_2_are_still_restored_and_version_4_refused() {
        let mut rt = Runtime::new(RuntimeConfig { workers: 1, ..RuntimeConfig::development() }).unwrap();
        rt.spawn_bytes(wat::parse_str(AGENT).unwrap()).unwrap();
        rt.run(4).unwrap();
        let capture = rt.capture().unwrap();
        assert!(
            capture.pages.iter().any(|p| matches!(p.2, crate::snapshot::PageCodec::Lines | crate::snapshot::PageCodec::LinesLz4)),
            "the agent's sparse pages are coded as lines"
        );
        let (deep, next) = (rt.deep_hash().hash, rt.tick().unwrap().hash);
        for version in [1, 2] {
            // Written without lines (no such codec before version 3), read back exactly.
            let old = crate::snapshot::encode_version(&capture, version);
            assert_eq!(u16::from_le_bytes([old[8], old[9]]), version);
            let d = crate::snapshot::decode(&old).unwrap();
            assert!(d.pages.entries.iter().all(|e| e.codec != crate::snapshot::PageCodec::Lines));
            d.pages.verify().unwrap();
            let mut restored = Runtime::restore(&old, crate::RestoreOptions::development()).unwrap();
            assert_eq!(restored.deep_hash().hash, deep, "version {version}");
            assert_eq!(restored.tick().unwrap().hash, next, "version {version}");
        }
        // Version 4 does not exist yet: refused with its code, naming the versions read.
        let mut v4 = rt.snapshot().unwrap();
        v4[8] = 4;
        let crc = crc32fast::hash(&v4[..16]);
        v4[16..20].copy_from_slice(&crc.to_le_bytes());
        let e = Runtime::restore(&v4, crate::RestoreOptions::development()).err().expect("refused");
        assert_eq!(e.code(), "E_SNAPSHOT_VERSION");
        assert!(e.to_string().contains("versions 1..=3"), "{e}");
    }
}
