//! The replay log's binary format, version 2 (documented in docs/REPLAY.md).
//!
//! ```text
//! file   = header record* end
//! header = "LOCKSTEP" version:u16 flags:u16 crc32(previous 12 bytes):u32        16 bytes
//! record = tag:u8 len:u32 body:[u8; len] crc32(tag, len, body):u32
//! end    = an End record (tag 11): ticks run, records before it, its own offset, final hash,
//!          and a digest of what no tick hash covers (the config and the records after the
//!          last TickEnd); a log without one is a prefix of a session; nothing may follow it
//! ```
//! All integers little-endian. A reader checks every CRC and every length before use, so a
//! truncated or corrupted log is an error naming the byte offset, never a panic.
//!
//! Writer and reader share one limit: a record body is at most [`MAX_RECORD_BYTES`]. The
//! writer never emits a longer record (it writes a small [`Record::Gap`] in its place, which a
//! replay reports as the end of what could be verified), and every count in a body is bounded
//! by the body's length, so the `u32` counts and lengths it writes are always exact.

use crate::bus::AgentId;
use crate::error::{Digest, LockstepError, Result};

/// The first 8 bytes of every log.
pub const MAGIC: &[u8; 8] = b"LOCKSTEP";
/// The format version this runtime writes and reads; a log of another version is
/// `E_REPLAY_VERSION`.
pub const FORMAT_VERSION: u16 = 2;
/// Size of the file header: magic, version, flags, CRC-32.
pub const HEADER_BYTES: usize = 16;
/// Largest record body written or accepted: bounds the allocation a corrupt length can cause.
pub const MAX_RECORD_BYTES: usize = 256 << 20;
/// Bytes of an End record, framing included.
pub const END_RECORD_BYTES: usize = 5 + 8 + 8 + 8 + 32 + 32 + 4;

/// One inference answer for an agent: (agent, tag, payload = status + outputs).
pub type InferAnswer = (AgentId, u32, Vec<u8>);

/// Configuration that decides a session's outcome (worker count does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Seed of every agent's random stream.
    pub seed: u64,
    /// Fuel per ABI call; 0 = metering off.
    pub fuel_per_call: u64,
    /// Cap on each agent's linear memory, bytes.
    pub memory_limit_bytes: u64,
    /// Most agents alive at once.
    pub max_agents: u32,
    /// Wall-clock backstop per ABI call, milliseconds.
    pub deadline_ms: u64,
    /// Ticks between recorded deep hashes; 0 = none.
    pub checkpoint_interval_ticks: u64,
    /// Admission settings, so a replay verifies modules as the session did.
    pub trusted_keys: Vec<[u8; 32]>,
    /// Development mode: unsigned modules were admitted.
    pub dev_mode: bool,
    /// The operator policy (`RuntimeConfig::policy`, a [`Capabilities`](crate::security::Capabilities)) as JSON.
    pub policy_json: String,
    /// `true`: `ResourcePolicy::Clamp`; `false`: `ResourcePolicy::Refuse`.
    pub resource_clamp: bool,
}

/// One record of a log, in the order things happened (docs/REPLAY.md gives each one's tag and
/// body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The session's settings: the first record, and the only Config record.
    Config(SessionConfig),
    /// A module's bytes, written once, before its first spawn.
    Module {
        /// BLAKE3 of `bytes`.
        hash: Digest,
        /// The module as loaded.
        bytes: Vec<u8>,
    },
    /// An agent was spawned.
    Spawn {
        /// The runtime's current tick when it happened.
        tick: u64,
        /// BLAKE3 hash of its module.
        module: Digest,
        /// The id it was assigned.
        agent: AgentId,
        /// Its spawn priority.
        priority: i32,
    },
    /// A message from the host (`send` or the inbound ring).
    Send {
        /// The runtime's current tick when it happened.
        tick: u64,
        /// Recipient.
        to: AgentId,
        /// User-defined kind.
        kind: u32,
        /// Delivery priority.
        priority: i32,
        /// The message body.
        payload: Vec<u8>,
    },
    /// An agent was killed.
    Kill {
        /// The runtime's current tick when it happened.
        tick: u64,
        /// The agent.
        agent: AgentId,
    },
    /// An agent was shut down.
    Shutdown {
        /// The runtime's current tick when it happened.
        tick: u64,
        /// The agent.
        agent: AgentId,
    },
    /// A tick ran: a replay runs one here and compares.
    TickEnd {
        /// The tick's number.
        tick: u64,
        /// Its tick hash.
        hash: Digest,
        /// (agent id, first 8 bytes of its tick digest) for each agent active in the tick, id order.
        agents: Vec<(AgentId, [u8; 8])>,
    },
    /// A deep hash, every `checkpoint_interval_ticks` and on `Runtime::checkpoint`.
    Checkpoint {
        /// Ticks run when it was taken.
        tick: u64,
        /// The deep hash.
        hash: Digest,
        /// (agent id, first 8 bytes of that agent's part) for every agent, id order.
        agents: Vec<(AgentId, [u8; 8])>,
    },
    /// A model made available to agents as table entry `slot` (its SHA-256 id).
    AgentModel {
        /// The `infer` import's `model` argument for it: 0, 1, 2... in registration order.
        slot: u32,
        /// The model's id: SHA-256 of its bytes, 64 lowercase hex digits.
        id: String,
    },
    /// Inference results computed at the end of `tick`, delivered at the next tick: recorded
    /// so a replay is exact even where inference is not bit-reproducible (GPUs).
    InferResults {
        /// The tick whose requests they answer.
        tick: u64,
        /// The answers, ordered by agent id.
        results: Vec<InferAnswer>,
    },
    /// The end of the log (written by `stop_recording` and on every `replay_log` snapshot):
    /// ticks run, records before this one, the byte offset of this record, the final hash,
    /// and `tail`: [`tail_digest`] of the parts of the log no tick hash covers.
    End {
        /// Ticks run.
        ticks: u64,
        /// Records before this one, the Config record included.
        records: u64,
        /// This record's byte offset in the log.
        bytes: u64,
        /// The final tick hash.
        hash: Digest,
        /// BLAKE3 of the Config record and the records after the last TickEnd.
        tail: Digest,
    },
    /// The session continues from a snapshot (docs/SNAPSHOT.md): the second record of a log
    /// recorded by a runtime restored from one, right after its Config record. A replay
    /// restores that snapshot ([`crate::replay_from`]) and goes on from there.
    Base {
        /// The tick the snapshot was taken at (the restored runtime's `current_tick()`).
        tick: u64,
        /// BLAKE3 of the snapshot's bytes.
        snapshot: Digest,
        /// The state hash at the snapshot (its last tick hash).
        hash: Digest,
    },
    /// A journal's identity (docs/JOURNAL.md, "Lineage"): in a journal's first segment only,
    /// right after the Config record (and the Base record, if any). Changes no state.
    Journal {
        /// The journal's id: 16 bytes made when it was created.
        id: [u8; 16],
        /// Where the session was forked from, if it was.
        parent: Option<Lineage>,
    },
    /// A language model made available to agents' `generate` import as slot `slot`.
    AgentLanguageModel {
        /// The `generate` import's `model` argument for it: 0, 1, 2... in registration order.
        slot: u32,
        /// Decode steps it runs at the end of each tick.
        tokens_per_tick: u32,
        /// Most sequences it decodes together.
        max_batch: u32,
        /// The model's id: SHA-256 of its bytes, 64 lowercase hex digits.
        id: String,
    },
    /// Tokens the language models generated at the end of `tick` for agents' `generate`
    /// requests, delivered at the next tick: recorded so a replay needs no model and is exact.
    Generated {
        /// The tick they were generated at.
        tick: u64,
        /// (agent, request tag, payload: `abi::generate`'s result), in delivery order (agent id,
        /// then request order).
        results: Vec<InferAnswer>,
    },
    /// An edge of the workflow graph was added (`Runtime::connect`).
    Connect {
        /// The runtime's current tick when it happened.
        tick: u64,
        /// The upstream agent.
        from: AgentId,
        /// The downstream agent.
        to: AgentId,
    },
    /// An edge was removed (`Runtime::disconnect`).
    Disconnect {
        /// The runtime's current tick when it happened.
        tick: u64,
        /// The upstream agent.
        from: AgentId,
        /// The downstream agent.
        to: AgentId,
    },
    /// An agent's trigger was set (`Runtime::set_trigger`).
    Trigger {
        /// The runtime's current tick when it happened.
        tick: u64,
        /// The agent.
        agent: AgentId,
        /// Its trigger from now on.
        trigger: crate::graph::Trigger,
    },
    /// An agent's time slice was set (`Runtime::set_fuel_per_tick`).
    Slice {
        /// The runtime's current tick when it happened.
        tick: u64,
        /// The agent.
        agent: AgentId,
        /// Fuel per call and tick from now on; 0: none.
        fuel_per_tick: u64,
    },
    /// In place of a record the writer could not write because its body would exceed
    /// [`MAX_RECORD_BYTES`]: the record's tag and body length. A replay stops here.
    Gap {
        /// The tag of the record left out.
        tag: u8,
        /// Its body length, bytes.
        len: u64,
    },
}

const TAG_CONFIG: u8 = 1;
const TAG_MODULE: u8 = 2;
const TAG_SPAWN: u8 = 3;
const TAG_SEND: u8 = 4;
const TAG_KILL: u8 = 5;
const TAG_SHUTDOWN: u8 = 6;
const TAG_TICK_END: u8 = 7;
const TAG_CHECKPOINT: u8 = 8;
const TAG_AGENT_MODEL: u8 = 9;
const TAG_INFER_RESULTS: u8 = 10;
const TAG_END: u8 = 11;
const TAG_GAP: u8 = 12;
const TAG_BASE: u8 = 13;
const TAG_JOURNAL: u8 = 14;
const TAG_GENERATED: u8 = 15;
const TAG_AGENT_LANGUAGE_MODEL: u8 = 16;
const TAG_SLICE: u8 = 17;
const TAG_CONNECT: u8 = 20;
const TAG_DISCONNECT: u8 = 21;
const TAG_TRIGGER: u8 = 22;

/// Where a forked session comes from: its parent journal (if the fork was made from one), and
/// the parent's tick and state hash at the fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lineage {
    /// The parent journal's id (`None`: forked from a snapshot or a log, not a journal).
    pub journal: Option<[u8; 16]>,
    /// Ticks the parent had run at the fork (the fork's first tick).
    pub tick: u64,
    /// The parent's state hash then.
    pub hash: Digest,
}

/// Header flag of a journal continuation segment (docs/JOURNAL.md): the file continues a log
/// begun in an earlier segment, so it is not a log by itself. A whole log has flags 0.
pub const FLAG_CONTINUATION: u16 = 1;

/// Appends the 16-byte file header (magic, `FORMAT_VERSION`, flags 0, CRC-32) to `out`.
pub fn write_header(out: &mut Vec<u8>) {
    write_header_with_flags(out, 0);
}

/// The file header with `flags` (0, or [`FLAG_CONTINUATION`] for a journal segment).
pub(crate) fn write_header_with_flags(out: &mut Vec<u8>, flags: u16) {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    let crc = crc32fast::hash(&out[start..start + 12]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// A count in a record body. Every counted item takes at least one byte of the body, so a
/// count above `u32::MAX` means a body above [`MAX_RECORD_BYTES`], which `frame` replaces by
/// a Gap record: the saturated value is never part of a written record.
fn put_count(b: &mut Vec<u8>, n: usize) {
    b.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_digests(b: &mut Vec<u8>, agents: &[(AgentId, [u8; 8])]) {
    put_count(b, agents.len());
    for (id, d) in agents {
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(d);
    }
}

/// Appends one framed record (tag, length, body written by `body`, CRC) straight into `out`:
/// no intermediate buffer, since a busy session records every message.
fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>) -> u8) {
    frame_limited(out, MAX_RECORD_BYTES, body)
}

/// `frame` with the body limit as a parameter (tests use a small one). A body over `limit`
/// is taken back out and a Gap record naming its tag and length is written instead, so the
/// writer never produces a record the reader refuses.
fn frame_limited(out: &mut Vec<u8>, limit: usize, body: impl FnOnce(&mut Vec<u8>) -> u8) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 5]);
    let mut tag = body(out);
    let mut len = out.len() - start - 5;
    if len > limit.min(MAX_RECORD_BYTES) {
        out.truncate(start + 5);
        out.push(tag);
        out.extend_from_slice(&(len as u64).to_le_bytes());
        (tag, len) = (TAG_GAP, 9);
    }
    out[start] = tag;
    // Lossless: len <= MAX_RECORD_BYTES <= u32::MAX (asserted below at compile time).
    out[start + 1..start + 5].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

const _: () = assert!(MAX_RECORD_BYTES <= u32::MAX as usize, "a record length must fit its u32 field");

/// BLAKE3 of the parts of a log that no tick hash covers: the config record
/// (`log[HEADER_BYTES..config_end]`) and every record after the last TickEnd
/// (`log[tail_start..end]`, `end` being where the End record starts).
pub(crate) fn tail_digest(log: &[u8], config_end: usize, tail_start: usize, end: usize) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(log.get(HEADER_BYTES..config_end).unwrap_or_default());
    h.update(log.get(tail_start..end).unwrap_or_default());
    Digest(*h.finalize().as_bytes())
}

/// Appends the End record to a log (header and records, no End yet): what `stop_recording`
/// and each `replay_log` snapshot do. `ticks` and `hash` are the runtime's tick count and
/// state hash. Walks the frames this process wrote (no CRC check needed).
pub(crate) fn seal(log: &mut Vec<u8>, ticks: u64, hash: Digest) {
    let (mut pos, mut records, mut config_end, mut tail_start) = (HEADER_BYTES, 0u64, HEADER_BYTES, HEADER_BYTES);
    while let Some(head) = log.get(pos..pos + 5) {
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let tag = head[0];
        pos = pos.saturating_add(5 + len + 4);
        records += 1;
        if records == 1 {
            (config_end, tail_start) = (pos, pos);
        }
        if tag == TAG_TICK_END {
            tail_start = pos;
        }
    }
    let end = log.len();
    let tail = tail_digest(log, config_end, tail_start, end);
    Record::End { ticks, records, bytes: end as u64, hash, tail }.encode(log);
}

/// A Module record from borrowed bytes (the runtime keeps the module's bytes).
pub(crate) fn encode_module(out: &mut Vec<u8>, hash: &Digest, bytes: &[u8]) {
    frame(out, |b| {
        b.extend_from_slice(&hash.0);
        b.extend_from_slice(bytes);
        TAG_MODULE
    });
}

/// A Send record from borrowed parts (the runtime keeps the payload for delivery).
pub fn encode_send(out: &mut Vec<u8>, tick: u64, to: AgentId, kind: u32, priority: i32, payload: &[u8]) {
    frame(out, |b| {
        b.extend_from_slice(&tick.to_le_bytes());
        b.extend_from_slice(&to.to_le_bytes());
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&priority.to_le_bytes());
        b.extend_from_slice(payload);
        TAG_SEND
    });
}

impl Record {
    /// The record's name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Record::Config(_) => "Config",
            Record::Module { .. } => "Module",
            Record::Spawn { .. } => "Spawn",
            Record::Send { .. } => "Send",
            Record::Kill { .. } => "Kill",
            Record::Shutdown { .. } => "Shutdown",
            Record::TickEnd { .. } => "TickEnd",
            Record::Checkpoint { .. } => "Checkpoint",
            Record::AgentModel { .. } => "AgentModel",
            Record::InferResults { .. } => "InferResults",
            Record::End { .. } => "End",
            Record::Gap { .. } => "Gap",
            Record::Base { .. } => "Base",
            Record::Journal { .. } => "Journal",
            Record::Generated { .. } => "Generated",
            Record::AgentLanguageModel { .. } => "AgentLanguageModel",
            Record::Connect { .. } => "Connect",
            Record::Disconnect { .. } => "Disconnect",
            Record::Trigger { .. } => "Trigger",
            Record::Slice { .. } => "Slice",
        }
    }
}

impl Record {
    /// Appends this record, framed (tag, length, body, CRC-32), to `out`; a body over
    /// [`MAX_RECORD_BYTES`] is written as a [`Record::Gap`] instead.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Record::Send { tick, to, kind, priority, payload } = self {
            return encode_send(out, *tick, *to, *kind, *priority, payload);
        }
        frame(out, |b| match self {
            Record::Config(c) => {
                for v in [c.seed, c.fuel_per_call, c.memory_limit_bytes] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.extend_from_slice(&c.max_agents.to_le_bytes());
                b.extend_from_slice(&c.deadline_ms.to_le_bytes());
                b.extend_from_slice(&c.checkpoint_interval_ticks.to_le_bytes());
                b.push(c.dev_mode as u8);
                b.push(c.resource_clamp as u8);
                put_count(b, c.trusted_keys.len());
                for k in &c.trusted_keys {
                    b.extend_from_slice(k);
                }
                b.extend_from_slice(c.policy_json.as_bytes());
                TAG_CONFIG
            }
            Record::Module { hash, bytes } => {
                b.extend_from_slice(&hash.0);
                b.extend_from_slice(bytes);
                TAG_MODULE
            }
            Record::Spawn { tick, module, agent, priority } => {
                b.extend_from_slice(&tick.to_le_bytes());
                b.extend_from_slice(&module.0);
                b.extend_from_slice(&agent.to_le_bytes());
                b.extend_from_slice(&priority.to_le_bytes());
                TAG_SPAWN
            }
            Record::Send { .. } => unreachable!("encoded above"),
            Record::Kill { tick, agent } | Record::Shutdown { tick, agent } => {
                b.extend_from_slice(&tick.to_le_bytes());
                b.extend_from_slice(&agent.to_le_bytes());
                if matches!(self, Record::Kill { .. }) {
                    TAG_KILL
                } else {
                    TAG_SHUTDOWN
                }
            }
            Record::TickEnd { tick, hash, agents } | Record::Checkpoint { tick, hash, agents } => {
                b.extend_from_slice(&tick.to_le_bytes());
                b.extend_from_slice(&hash.0);
                put_digests(b, agents);
                if matches!(self, Record::TickEnd { .. }) {
                    TAG_TICK_END
                } else {
                    TAG_CHECKPOINT
                }
            }
            Record::AgentModel { slot, id } => {
                b.extend_from_slice(&slot.to_le_bytes());
                b.extend_from_slice(id.as_bytes());
                TAG_AGENT_MODEL
            }
            Record::InferResults { tick, results } | Record::Generated { tick, results } => {
                b.extend_from_slice(&tick.to_le_bytes());
                put_count(b, results.len());
                for (agent, tag, payload) in results {
                    b.extend_from_slice(&agent.to_le_bytes());
                    b.extend_from_slice(&tag.to_le_bytes());
                    put_count(b, payload.len());
                    b.extend_from_slice(payload);
                }
                if matches!(self, Record::Generated { .. }) {
                    TAG_GENERATED
                } else {
                    TAG_INFER_RESULTS
                }
            }
            Record::AgentLanguageModel { slot, tokens_per_tick, max_batch, id } => {
                for v in [slot, tokens_per_tick, max_batch] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.extend_from_slice(id.as_bytes());
                TAG_AGENT_LANGUAGE_MODEL
            }
            Record::Connect { tick, from, to } | Record::Disconnect { tick, from, to } => {
                for v in [tick, from, to] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                if matches!(self, Record::Connect { .. }) {
                    TAG_CONNECT
                } else {
                    TAG_DISCONNECT
                }
            }
            Record::Trigger { tick, agent, trigger } => {
                b.extend_from_slice(&tick.to_le_bytes());
                b.extend_from_slice(&agent.to_le_bytes());
                b.push(trigger.tag());
                TAG_TRIGGER
            }
            Record::Slice { tick, agent, fuel_per_tick } => {
                for v in [tick, agent, fuel_per_tick] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                TAG_SLICE
            }
            Record::End { ticks, records, bytes, hash, tail } => {
                for v in [ticks, records, bytes] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.extend_from_slice(&hash.0);
                b.extend_from_slice(&tail.0);
                TAG_END
            }
            Record::Gap { tag, len } => {
                b.push(*tag);
                b.extend_from_slice(&len.to_le_bytes());
                TAG_GAP
            }
            Record::Base { tick, snapshot, hash } => {
                b.extend_from_slice(&tick.to_le_bytes());
                b.extend_from_slice(&snapshot.0);
                b.extend_from_slice(&hash.0);
                TAG_BASE
            }
            Record::Journal { id, parent } => {
                b.extend_from_slice(id);
                let flags = match parent {
                    None => 0u8,
                    Some(Lineage { journal: None, .. }) => 1,
                    Some(Lineage { journal: Some(_), .. }) => 3,
                };
                b.push(flags);
                let p = parent.unwrap_or(Lineage { journal: None, tick: 0, hash: Digest::default() });
                b.extend_from_slice(&p.journal.unwrap_or_default());
                b.extend_from_slice(&p.tick.to_le_bytes());
                b.extend_from_slice(&p.hash.0);
                TAG_JOURNAL
            }
        });
    }
}

/// Reads fields from one record body; every short read is a corruption error.
struct Body<'a> {
    bytes: &'a [u8],
    pos: usize,
    record_offset: u64,
    kind: &'static str,
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| LockstepError::ReplayCorrupt {
            offset: self.record_offset,
            reason: format!("{} record body is {} bytes, too short for its fields", self.kind, self.bytes.len()),
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn digest(&mut self) -> Result<Digest> {
        let mut d = [0u8; 32];
        d.copy_from_slice(self.take(32)?);
        Ok(Digest(d))
    }
    fn rest(&mut self) -> Vec<u8> {
        let r = self.bytes[self.pos..].to_vec();
        self.pos = self.bytes.len();
        r
    }
    fn digests(&mut self) -> Result<Vec<(AgentId, [u8; 8])>> {
        let n = self.count("agent digest count", 16)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.u64()?;
            let mut d = [0u8; 8];
            d.copy_from_slice(self.take(8)?);
            v.push((id, d));
        }
        Ok(v)
    }
    /// A u32 count of items of at least `item_bytes` each: refused (naming `field`) when the
    /// rest of the body cannot hold that many, so a forged count never sizes an allocation.
    fn count(&mut self, field: &str, item_bytes: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        let room = (self.bytes.len() - self.pos) / item_bytes;
        if n > room {
            return Err(LockstepError::ReplayCorrupt {
                offset: self.record_offset,
                reason: format!("{} {field} {n} exceeds what the record holds ({room} at most)", self.kind),
            });
        }
        Ok(n)
    }
    fn finish(&self) -> Result<()> {
        if self.pos != self.bytes.len() {
            return Err(LockstepError::ReplayCorrupt {
                offset: self.record_offset,
                reason: format!("{} unexpected trailing bytes in {} record", self.bytes.len() - self.pos, self.kind),
            });
        }
        Ok(())
    }
}

/// Checks a file header (length, magic, CRC, version) and returns its flags: a short or
/// damaged header is `E_REPLAY_CORRUPT`, another format version `E_REPLAY_VERSION`.
pub(crate) fn read_header(bytes: &[u8]) -> Result<u16> {
    if bytes.len() < HEADER_BYTES {
        return Err(LockstepError::ReplayCorrupt { offset: 0, reason: format!("{} bytes is shorter than the 16-byte header", bytes.len()) });
    }
    if &bytes[..8] != MAGIC {
        return Err(LockstepError::ReplayCorrupt { offset: 0, reason: "missing LOCKSTEP magic: not a lockstep replay log".into() });
    }
    let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if crc != crc32fast::hash(&bytes[..12]) {
        return Err(LockstepError::ReplayCorrupt { offset: 0, reason: "header checksum mismatch".into() });
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(LockstepError::ReplayVersion { found: version, expected: FORMAT_VERSION });
    }
    Ok(u16::from_le_bytes([bytes[10], bytes[11]]))
}

/// Whether a whole, CRC-valid TickEnd frame starts at `pos` in `bytes` (the tick-end search of
/// a journal's torn-tail check, docs/JOURNAL.md). Cheap to reject: tag, then a length that
/// agrees with the digest count inside, then the CRC.
pub(crate) fn is_tick_end_frame(bytes: &[u8], pos: usize) -> bool {
    let Some(head) = bytes.get(pos..pos + 5) else { return false };
    if head[0] != TAG_TICK_END {
        return false;
    }
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len < 44 || !(len - 44).is_multiple_of(16) {
        return false;
    }
    let Some(frame) = bytes.get(pos..pos + 5 + len + 4) else { return false };
    let n = u32::from_le_bytes([frame[45], frame[46], frame[47], frame[48]]) as usize;
    if n != (len - 44) / 16 {
        return false;
    }
    let crc = u32::from_le_bytes([frame[5 + len], frame[6 + len], frame[7 + len], frame[8 + len]]);
    crc == crc32fast::hash(&frame[..5 + len])
}

/// The frame at `pos`, if it is whole and its CRC holds: (tag, frame length). A frame that
/// passes this but fails to decode was written that way (not torn).
pub(crate) fn whole_frame(bytes: &[u8], pos: usize) -> Option<(u8, usize)> {
    let head = bytes.get(pos..pos + 5)?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let frame = bytes.get(pos..pos + 5 + len + 4)?;
    let crc = u32::from_le_bytes([frame[5 + len], frame[6 + len], frame[7 + len], frame[8 + len]]);
    (crc == crc32fast::hash(&frame[..5 + len])).then_some((head[0], 5 + len + 4))
}

/// Iterates the records of a log, checking the header first.
pub struct LogReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Records read so far.
    records: u64,
    /// Whether the End record has been read (nothing may follow it).
    ended: bool,
}

impl<'a> LogReader<'a> {
    /// A reader over a whole log. Checks the header first: a short or damaged one is
    /// `E_REPLAY_CORRUPT`, another format version `E_REPLAY_VERSION`.
    /// A journal continuation segment (header flag 1) is refused: it is not a whole log.
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
        match read_header(bytes)? {
            0 => Ok(Self { bytes, pos: HEADER_BYTES, records: 0, ended: false }),
            FLAG_CONTINUATION => Err(LockstepError::ReplayCorrupt {
                offset: 10,
                reason: "this is a journal continuation segment, not a whole log: it continues the segments before it. Verify or recover the journal's directory (npx lockstep log verify <dir>)".into(),
            }),
            flags => Err(LockstepError::ReplayCorrupt { offset: 10, reason: format!("unknown header flags {flags:#06x}") }),
        }
    }

    /// A reader of the records of `bytes` from `pos` on (a journal segment, whose header the
    /// caller has read); offsets are positions in `bytes`.
    pub(crate) fn at(bytes: &'a [u8], pos: usize) -> Self {
        Self { bytes, pos: pos.min(bytes.len()), records: 0, ended: false }
    }

    /// Byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// Records read so far (the End record included once read).
    pub fn records_read(&self) -> u64 {
        self.records
    }

    /// Whether the End record was read: without one, the log is a prefix of a session.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next record, `None` at a clean end, or an error naming the offset. A record after
    /// the End record is corruption.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.pos == self.bytes.len() {
            return Ok(None);
        }
        let offset = self.pos as u64;
        let corrupt = |reason: String| LockstepError::ReplayCorrupt { offset, reason };
        if self.ended {
            return Err(corrupt(format!("{} bytes after the End record", self.bytes.len() - self.pos)));
        }
        let rest = &self.bytes[self.pos..];
        if rest.len() < 5 {
            return Err(corrupt(format!("truncated: {} bytes left, a record header needs 5", rest.len())));
        }
        let tag = rest[0];
        let len = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len > MAX_RECORD_BYTES {
            return Err(corrupt(format!("record length {len} exceeds the {MAX_RECORD_BYTES}-byte limit")));
        }
        if rest.len() < 5 + len + 4 {
            return Err(corrupt(format!("truncated: record needs {} bytes, {} left", 5 + len + 4, rest.len())));
        }
        let crc = u32::from_le_bytes(rest[5 + len..5 + len + 4].try_into().unwrap_or_default());
        if crc != crc32fast::hash(&rest[..5 + len]) {
            return Err(corrupt("record checksum mismatch: the log was modified or damaged".into()));
        }
        let kind = match tag {
            TAG_CONFIG => "Config",
            TAG_MODULE => "Module",
            TAG_SPAWN => "Spawn",
            TAG_SEND => "Send",
            TAG_KILL => "Kill",
            TAG_SHUTDOWN => "Shutdown",
            TAG_TICK_END => "TickEnd",
            TAG_CHECKPOINT => "Checkpoint",
            TAG_AGENT_MODEL => "AgentModel",
            TAG_INFER_RESULTS => "InferResults",
            TAG_END => "End",
            TAG_GAP => "Gap",
            TAG_BASE => "Base",
            TAG_JOURNAL => "Journal",
            TAG_GENERATED => "Generated",
            TAG_AGENT_LANGUAGE_MODEL => "AgentLanguageModel",
            TAG_CONNECT => "Connect",
            TAG_DISCONNECT => "Disconnect",
            TAG_TRIGGER => "Trigger",
            TAG_SLICE => "Slice",
            other => return Err(corrupt(format!("unknown record tag {other}"))),
        };
        let mut body = Body { bytes: &rest[5..5 + len], pos: 0, record_offset: offset, kind };
        let record = match tag {
            TAG_CONFIG => Record::Config(SessionConfig {
                seed: body.u64()?,
                fuel_per_call: body.u64()?,
                memory_limit_bytes: body.u64()?,
                max_agents: body.u32()?,
                deadline_ms: body.u64()?,
                checkpoint_interval_ticks: body.u64()?,
                dev_mode: body.take(1)?[0] != 0,
                resource_clamp: body.take(1)?[0] != 0,
                trusted_keys: {
                    let n = body.count("trusted key count", 32)?;
                    let mut keys = Vec::with_capacity(n);
                    for _ in 0..n {
                        let mut k = [0u8; 32];
                        k.copy_from_slice(body.take(32)?);
                        keys.push(k);
                    }
                    keys
                },
                policy_json: String::from_utf8(body.rest()).map_err(|_| corrupt("policy is not UTF-8".into()))?,
            }),
            TAG_MODULE => Record::Module { hash: body.digest()?, bytes: body.rest() },
            TAG_SPAWN => Record::Spawn { tick: body.u64()?, module: body.digest()?, agent: body.u64()?, priority: body.i32()? },
            TAG_SEND => Record::Send { tick: body.u64()?, to: body.u64()?, kind: body.u32()?, priority: body.i32()?, payload: body.rest() },
            TAG_KILL => Record::Kill { tick: body.u64()?, agent: body.u64()? },
            TAG_SHUTDOWN => Record::Shutdown { tick: body.u64()?, agent: body.u64()? },
            TAG_TICK_END => Record::TickEnd { tick: body.u64()?, hash: body.digest()?, agents: body.digests()? },
            TAG_CHECKPOINT => Record::Checkpoint { tick: body.u64()?, hash: body.digest()?, agents: body.digests()? },
            TAG_AGENT_MODEL => {
                Record::AgentModel { slot: body.u32()?, id: String::from_utf8(body.rest()).map_err(|_| corrupt("model id is not UTF-8".into()))? }
            }
            TAG_INFER_RESULTS | TAG_GENERATED => {
                let tick = body.u64()?;
                let n = body.count("answer count", 16)?;
                let mut results = Vec::with_capacity(n);
                for _ in 0..n {
                    let agent = body.u64()?;
                    let tag = body.u32()?;
                    let len = body.u32()? as usize;
                    results.push((agent, tag, body.take(len)?.to_vec()));
                }
                if tag == TAG_GENERATED {
                    Record::Generated { tick, results }
                } else {
                    Record::InferResults { tick, results }
                }
            }
            TAG_AGENT_LANGUAGE_MODEL => Record::AgentLanguageModel {
                slot: body.u32()?,
                tokens_per_tick: body.u32()?,
                max_batch: body.u32()?,
                id: String::from_utf8(body.rest()).map_err(|_| corrupt("model id is not UTF-8".into()))?,
            },
            TAG_CONNECT => Record::Connect { tick: body.u64()?, from: body.u64()?, to: body.u64()? },
            TAG_DISCONNECT => Record::Disconnect { tick: body.u64()?, from: body.u64()?, to: body.u64()? },
            TAG_TRIGGER => {
                let (tick, agent) = (body.u64()?, body.u64()?);
                let t = body.take(1)?[0];
                let trigger =
                    crate::graph::Trigger::from_tag(t).ok_or_else(|| corrupt(format!("Trigger record, field `trigger`: {t} is not 0 (any) or 1 (all)")))?;
                Record::Trigger { tick, agent, trigger }
            }
            TAG_SLICE => Record::Slice { tick: body.u64()?, agent: body.u64()?, fuel_per_tick: body.u64()? },
            TAG_END => Record::End { ticks: body.u64()?, records: body.u64()?, bytes: body.u64()?, hash: body.digest()?, tail: body.digest()? },
            TAG_GAP => Record::Gap { tag: body.take(1)?[0], len: body.u64()? },
            TAG_BASE => Record::Base { tick: body.u64()?, snapshot: body.digest()?, hash: body.digest()? },
            TAG_JOURNAL => {
                let mut id = [0u8; 16];
                id.copy_from_slice(body.take(16)?);
                let flags = body.take(1)?[0];
                let mut parent_id = [0u8; 16];
                parent_id.copy_from_slice(body.take(16)?);
                let (tick, hash) = (body.u64()?, body.digest()?);
                let parent = match flags {
                    0 => None,
                    1 => Some(Lineage { journal: None, tick, hash }),
                    3 => Some(Lineage { journal: Some(parent_id), tick, hash }),
                    other => return Err(corrupt(format!("Journal record, field `flags`: {other} is not 0, 1 or 3"))),
                };
                Record::Journal { id, parent }
            }
            other => return Err(corrupt(format!("unknown record tag {other}"))),
        };
        body.finish()?;
        self.pos += 5 + len + 4;
        self.records += 1;
        self.ended = matches!(record, Record::End { .. });
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Config(SessionConfig {
                seed: 1,
                fuel_per_call: 2,
                memory_limit_bytes: 3,
                max_agents: 4,
                deadline_ms: 5,
                checkpoint_interval_ticks: 6,
                trusted_keys: vec![[9; 32]],
                dev_mode: true,
                policy_json: "{}".into(),
                resource_clamp: false,
            }),
            Record::Module { hash: Digest([7; 32]), bytes: vec![0, 97, 115, 109] },
            Record::Spawn { tick: 0, module: Digest([7; 32]), agent: 1, priority: -2 },
            Record::Send { tick: 0, to: 1, kind: 9, priority: -3, payload: b"hi".to_vec() },
            Record::TickEnd { tick: 0, hash: Digest([1; 32]), agents: vec![(1, [2; 8])] },
            Record::Checkpoint { tick: 1, hash: Digest([3; 32]), agents: vec![] },
            Record::Shutdown { tick: 1, agent: 1 },
            Record::Kill { tick: 1, agent: 1 },
            Record::AgentModel { slot: 0, id: "ab".repeat(32) },
            Record::InferResults { tick: 2, results: vec![(1, 7, vec![0, 0, 0, 0, 9]), (3, 8, vec![])] },
            Record::Base { tick: 5, snapshot: Digest([5; 32]), hash: Digest([8; 32]) },
            Record::AgentLanguageModel { slot: 0, tokens_per_tick: 4, max_batch: 32, id: "cd".repeat(32) },
            Record::Generated { tick: 2, results: vec![(1, 7, vec![0, 0, 0, 0, 1, 0, 0, 0, 65, 0, 0, 0, 65])] },
            Record::Connect { tick: 2, from: 1, to: 3 },
            Record::Disconnect { tick: 3, from: 1, to: 3 },
            Record::Trigger { tick: 3, agent: 3, trigger: crate::graph::Trigger::All },
            Record::Trigger { tick: 4, agent: 3, trigger: crate::graph::Trigger::Any },
            Record::Slice { tick: 4, agent: 2, fuel_per_tick: 5_000 },
            Record::Gap { tag: 2, len: 1 << 40 },
            Record::End { ticks: 3, records: 19, bytes: 999, hash: Digest([4; 32]), tail: Digest([6; 32]) },
        ]
    }

    fn encode(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out);
        for r in records {
            r.encode(&mut out);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Vec<Record>> {
        decode_ended(bytes).map(|(v, _)| v)
    }

    /// The records and whether the log ended with an End record.
    fn decode_ended(bytes: &[u8]) -> Result<(Vec<Record>, bool)> {
        let mut r = LogReader::new(bytes)?;
        let mut v = Vec::new();
        while let Some(rec) = r.next_record()? {
            v.push(rec);
        }
        Ok((v, r.ended()))
    }

    #[test]
    fn round_trips_every_record_kind() {
        let records = sample();
        assert_eq!(decode(&encode(&records)).unwrap(), records);
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix_without_end() {
        let bytes = encode(&sample());
        assert!(decode_ended(&bytes).unwrap().1, "the whole log ends with its End record");
        let mut boundaries = vec![HEADER_BYTES];
        let mut r = LogReader::new(&bytes).unwrap();
        while r.next_record().unwrap().is_some() {
            boundaries.push(r.offset() as usize);
        }
        for cut in 0..bytes.len() {
            let result = decode_ended(&bytes[..cut]);
            if boundaries.contains(&cut) {
                // A cut at a record boundary parses, but never as a log that ended.
                assert!(matches!(result, Ok((_, false))), "cut at record boundary {cut}: {result:?}");
            } else {
                assert!(matches!(result, Err(LockstepError::ReplayCorrupt { .. })), "cut at {cut}: {result:?}");
            }
        }
    }

    #[test]
    fn records_after_the_end_record_are_corruption() {
        let mut bytes = encode(&sample());
        let end = bytes.len();
        Record::Kill { tick: 9, agent: 1 }.encode(&mut bytes);
        assert_eq!(decode(&bytes).unwrap_err(), LockstepError::ReplayCorrupt { offset: end as u64, reason: "25 bytes after the End record".into() });
    }

    #[test]
    fn seal_counts_the_records_and_marks_the_end() {
        let mut bytes = encode(&sample()[..5]);
        let before = bytes.len() as u64;
        seal(&mut bytes, 7, Digest([5; 32]));
        let (records, ended) = decode_ended(&bytes).unwrap();
        assert!(ended);
        // The tail: the config record, and the records after the TickEnd (the fifth record).
        let mut tail_log = Vec::new();
        write_header(&mut tail_log);
        sample()[0].encode(&mut tail_log);
        let config_end = tail_log.len();
        let tail = tail_digest(&tail_log, config_end, config_end, config_end);
        assert_eq!(records.last(), Some(&Record::End { ticks: 7, records: 5, bytes: before, hash: Digest([5; 32]), tail }));
        assert_eq!(bytes.len() as u64 - before, END_RECORD_BYTES as u64);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            for bit in [0u8, 3, 7] {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b).is_err(), "flip of bit {bit} at byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn other_versions_are_refused_with_their_number() {
        for v in [1u16, 3] {
            let mut bytes = encode(&sample());
            bytes[8..10].copy_from_slice(&v.to_le_bytes());
            let crc = crc32fast::hash(&bytes[..12]);
            bytes[12..16].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(decode(&bytes).unwrap_err(), LockstepError::ReplayVersion { found: v, expected: 2 });
        }
    }

    #[test]
    fn writer_never_writes_a_record_the_reader_refuses() {
        // Over the limit: a Gap record in its place, which the reader accepts.
        let mut out = Vec::new();
        write_header(&mut out);
        frame_limited(&mut out, 100, |b| {
            b.extend_from_slice(&[7; 101]);
            TAG_MODULE
        });
        frame_limited(&mut out, 100, |b| {
            b.extend_from_slice(&[7; 100]);
            TAG_MODULE
        });
        let records = decode(&out).unwrap();
        assert_eq!(records[0], Record::Gap { tag: TAG_MODULE, len: 101 });
        assert!(matches!(&records[1], Record::Module { bytes, .. } if bytes.len() == 68));
        // At the real limit: the largest body is written and reads back; one byte more is a Gap.
        let mut out = Vec::new();
        write_header(&mut out);
        let big = Record::Module { hash: Digest([1; 32]), bytes: vec![0; MAX_RECORD_BYTES - 32] };
        big.encode(&mut out);
        Record::Module { hash: Digest([1; 32]), bytes: vec![0; MAX_RECORD_BYTES - 31] }.encode(&mut out);
        let records = decode(&out).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], big);
        assert_eq!(records[1], Record::Gap { tag: TAG_MODULE, len: MAX_RECORD_BYTES as u64 + 1 });
    }

    #[test]
    fn forged_counts_are_refused_before_any_allocation() {
        for (tag, body) in [
            (TAG_TICK_END, [&[0u8; 40][..], &u32::MAX.to_le_bytes()].concat()),
            (TAG_CHECKPOINT, [&[0u8; 40][..], &u32::MAX.to_le_bytes()].concat()),
            (TAG_INFER_RESULTS, [&[0u8; 8][..], &u32::MAX.to_le_bytes()].concat()),
            (TAG_CONFIG, [&[0u8; 46][..], &u32::MAX.to_le_bytes()].concat()),
        ] {
            let mut out = Vec::new();
            write_header(&mut out);
            frame(&mut out, |b| {
                b.extend_from_slice(&body);
                tag
            });
            match decode(&out) {
                Err(LockstepError::ReplayCorrupt { offset: 16, reason }) => assert!(reason.contains("count 4294967295 exceeds"), "{reason}"),
                other => panic!("tag {tag}: {other:?}"),
            }
        }
    }
}
