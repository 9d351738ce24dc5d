//! The replay log's binary format, version 1 (documented in docs/REPLAY.md).
//!
//! ```text
//! file   = header record*
//! header = "LOCKSTEP" version:u16 flags:u16 crc32(previous 12 bytes):u32        16 bytes
//! record = tag:u8 len:u32 body:[u8; len] crc32(tag, len, body):u32
//! ```
//! All integers little-endian. A reader checks every CRC and every length before use, so a
//! truncated or corrupted log is an error naming the byte offset, never a panic.

use crate::bus::AgentId;
use crate::error::{Digest, LockstepError, Result};

pub const MAGIC: &[u8; 8] = b"LOCKSTEP";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_BYTES: usize = 16;
/// Largest record body accepted: bounds the allocation a corrupt length can cause.
pub const MAX_RECORD_BYTES: usize = 256 << 20;

/// One inference answer for an agent: (agent, tag, payload = status + outputs).
pub type InferAnswer = (AgentId, u32, Vec<u8>);

/// Configuration that decides a session's outcome (worker count does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub seed: u64,
    pub fuel_per_call: u64,
    pub memory_limit_bytes: u64,
    pub max_agents: u32,
    pub deadline_ms: u64,
    pub checkpoint_interval_ticks: u64,
    /// Admission settings, so a replay verifies modules as the session did.
    pub trusted_keys: Vec<[u8; 32]>,
    pub dev_mode: bool,
    pub policy_json: String,
    pub resource_clamp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Config(SessionConfig),
    Module { hash: Digest, bytes: Vec<u8> },
    Spawn { tick: u64, module: Digest, agent: AgentId, priority: i32 },
    Send { tick: u64, to: AgentId, kind: u32, priority: i32, payload: Vec<u8> },
    Kill { tick: u64, agent: AgentId },
    Shutdown { tick: u64, agent: AgentId },
    TickEnd { tick: u64, hash: Digest, agents: Vec<(AgentId, [u8; 8])> },
    Checkpoint { tick: u64, hash: Digest, agents: Vec<(AgentId, [u8; 8])> },
    /// A model made available to agents as table entry `slot` (its SHA-256 id).
    AgentModel { slot: u32, id: String },
    /// Inference results computed at the end of `tick`, delivered at the next tick: recorded
    /// so a replay is exact even where inference is not bit-reproducible (GPUs).
    InferResults { tick: u64, results: Vec<InferAnswer> },
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

pub fn write_header(out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    let crc = crc32fast::hash(&out[start..start + 12]);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn put_digests(b: &mut Vec<u8>, agents: &[(AgentId, [u8; 8])]) {
    b.extend_from_slice(&(agents.len() as u32).to_le_bytes());
    for (id, d) in agents {
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(d);
    }
}

/// Appends one framed record (tag, length, body written by `body`, CRC) straight into `out`:
/// no intermediate buffer, since a busy session records every message.
fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>) -> u8) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 5]);
    let tag = body(out);
    let len = (out.len() - start - 5) as u32;
    out[start] = tag;
    out[start + 1..start + 5].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
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
                b.extend_from_slice(&(c.trusted_keys.len() as u32).to_le_bytes());
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
                if matches!(self, Record::Kill { .. }) { TAG_KILL } else { TAG_SHUTDOWN }
            }
            Record::TickEnd { tick, hash, agents } | Record::Checkpoint { tick, hash, agents } => {
                b.extend_from_slice(&tick.to_le_bytes());
                b.extend_from_slice(&hash.0);
                put_digests(b, agents);
                if matches!(self, Record::TickEnd { .. }) { TAG_TICK_END } else { TAG_CHECKPOINT }
            }
            Record::AgentModel { slot, id } => {
                b.extend_from_slice(&slot.to_le_bytes());
                b.extend_from_slice(id.as_bytes());
                TAG_AGENT_MODEL
            }
            Record::InferResults { tick, results } => {
                b.extend_from_slice(&tick.to_le_bytes());
                b.extend_from_slice(&(results.len() as u32).to_le_bytes());
                for (agent, tag, payload) in results {
                    b.extend_from_slice(&agent.to_le_bytes());
                    b.extend_from_slice(&tag.to_le_bytes());
                    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                    b.extend_from_slice(payload);
                }
                TAG_INFER_RESULTS
            }
        });
    }
}

/// Reads fields from one record body; every short read is a corruption error.
struct Body<'a> {
    bytes: &'a [u8],
    pos: usize,
    record_offset: u64,
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| LockstepError::ReplayCorrupt {
            offset: self.record_offset,
            reason: format!("record body is {} bytes, too short for its fields", self.bytes.len()),
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
        let n = self.u32()? as usize;
        if n > (self.bytes.len() - self.pos) / 16 {
            return Err(LockstepError::ReplayCorrupt { offset: self.record_offset, reason: format!("agent digest count {n} exceeds the record") });
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.u64()?;
            let mut d = [0u8; 8];
            d.copy_from_slice(self.take(8)?);
            v.push((id, d));
        }
        Ok(v)
    }
    fn finish(&self) -> Result<()> {
        if self.pos != self.bytes.len() {
            return Err(LockstepError::ReplayCorrupt {
                offset: self.record_offset,
                reason: format!("{} unexpected trailing bytes in record", self.bytes.len() - self.pos),
            });
        }
        Ok(())
    }
}

/// Iterates the records of a log, checking the header first.
pub struct LogReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> LogReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
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
        Ok(Self { bytes, pos: HEADER_BYTES })
    }

    /// Byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// The next record, `None` at a clean end, or an error naming the offset.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.pos == self.bytes.len() {
            return Ok(None);
        }
        let offset = self.pos as u64;
        let corrupt = |reason: String| LockstepError::ReplayCorrupt { offset, reason };
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
        let mut body = Body { bytes: &rest[5..5 + len], pos: 0, record_offset: offset };
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
                    let n = body.u32()? as usize;
                    let mut keys = Vec::with_capacity(n.min(1024));
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
            TAG_AGENT_MODEL => Record::AgentModel {
                slot: body.u32()?,
                id: String::from_utf8(body.rest()).map_err(|_| corrupt("model id is not UTF-8".into()))?,
            },
            TAG_INFER_RESULTS => {
                let tick = body.u64()?;
                let n = body.u32()? as usize;
                let mut results = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let agent = body.u64()?;
                    let tag = body.u32()?;
                    let len = body.u32()? as usize;
                    results.push((agent, tag, body.take(len)?.to_vec()));
                }
                Record::InferResults { tick, results }
            }
            other => return Err(corrupt(format!("unknown record tag {other}"))),
        };
        body.finish()?;
        self.pos += 5 + len + 4;
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
        let mut r = LogReader::new(bytes)?;
        let mut v = Vec::new();
        while let Some(rec) = r.next_record()? {
            v.push(rec);
        }
        Ok(v)
    }

    #[test]
    fn round_trips_every_record_kind() {
        let records = sample();
        assert_eq!(decode(&encode(&records)).unwrap(), records);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(&sample());
        let mut boundaries = vec![HEADER_BYTES];
        let mut r = LogReader::new(&bytes).unwrap();
        while r.next_record().unwrap().is_some() {
            boundaries.push(r.offset() as usize);
        }
        for cut in 0..bytes.len() {
            let result = decode(&bytes[..cut]);
            if boundaries.contains(&cut) {
                assert!(result.is_ok(), "cut at record boundary {cut} should parse");
            } else {
                assert!(matches!(result, Err(LockstepError::ReplayCorrupt { .. })), "cut at {cut}: {result:?}");
            }
        }
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
    fn newer_version_is_refused_with_its_number() {
        let mut bytes = encode(&sample());
        bytes[8] = 2;
        let crc = crc32fast::hash(&bytes[..12]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap_err(), LockstepError::ReplayVersion { found: 2, expected: 1 });
    }
}
