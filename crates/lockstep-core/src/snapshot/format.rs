//! The snapshot container (docs/SNAPSHOT.md): a checksummed header, then five sections in a
//! fixed order, each framed with its codec and lengths and closed by a BLAKE3 checksum of its
//! frame. This file knows bytes only: `Buf` writes fields, `Reader` reads them back with every
//! length checked before anything is allocated, and `split` verifies and decodes the sections.

use crate::bus::{AgentId, Message};
use crate::error::{LockstepError, Result};

/// The first 8 bytes of every snapshot.
pub const MAGIC: &[u8; 8] = b"LOCKSNAP";
/// The version of the format this runtime writes. It reads this one and every earlier one
/// (`OLDEST_VERSION..=FORMAT_VERSION`): version 2 (2026-11-26) added the workflow graph to the
/// Runtime section and the elements of the tables of modules that write into them to each
/// instance; a version-1 snapshot restores with no graph and no table state. Version 3
/// (2026-11-26) added a page codec (`Lines`, code 2); nothing else changed.
pub const FORMAT_VERSION: u16 = 3;
/// The oldest version this runtime reads.
pub const OLDEST_VERSION: u16 = 1;
/// Magic, version, flags, section count, CRC-32 of the 16 bytes before it.
pub(crate) const HEADER_BYTES: usize = 20;
/// A section's frame before its body: kind u8, codec u8, decoded length u64, stored length u64.
const SECTION_HEADER_BYTES: usize = 18;
/// The BLAKE3 checksum after each section's body.
const CHECKSUM_BYTES: usize = 32;
/// A compressed section is a run of lz4 blocks of at most this many decoded bytes each, so
/// decoding allocates as it goes, never what a header claims up front.
const CHUNK_BYTES: usize = 1 << 20;

/// Section kinds, in the order they appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Config = 1,
    Modules = 2,
    Pages = 3,
    Runtime = 4,
    Agents = 5,
}

impl Section {
    pub(crate) const ALL: [Section; 5] = [Section::Config, Section::Modules, Section::Pages, Section::Runtime, Section::Agents];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Section::Config => "Config",
            Section::Modules => "Modules",
            Section::Pages => "Pages",
            Section::Runtime => "Runtime",
            Section::Agents => "Agents",
        }
    }
}

/// How a section's body is stored.
const CODEC_STORED: u8 = 0;
const CODEC_LZ4: u8 = 1;

pub(crate) fn corrupt(offset: usize, reason: impl Into<String>) -> LockstepError {
    LockstepError::SnapshotCorrupt { offset: offset as u64, reason: reason.into() }
}

/// Little-endian field writer.
#[derive(Default)]
pub(crate) struct Buf(pub(crate) Vec<u8>);

impl Buf {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// A count or length as u32 (every one the runtime holds fits: limits.rs).
    pub(crate) fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    /// Length-prefixed bytes.
    pub(crate) fn blob(&mut self, v: &[u8]) {
        self.len(v.len());
        self.bytes(v);
    }
    pub(crate) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.blob(s.as_bytes());
            }
        }
    }
    /// A message: from u64, to u64, seq u64, kind u32, priority i32, payload (u32 length).
    pub(crate) fn message(&mut self, m: &Message) {
        self.u64(m.from);
        self.u64(m.to);
        self.u64(m.seq);
        self.u32(m.kind);
        self.i32(m.priority);
        self.blob(&m.payload);
    }
}

/// Bytes of the smallest encoded message (an empty payload).
pub(crate) const MESSAGE_MIN_BYTES: usize = 8 + 8 + 8 + 4 + 4 + 4;

/// Reads fields from one section's decoded body. Every read is bounds-checked; a short read
/// is `E_SNAPSHOT_CORRUPT` naming the section, where in it, and (for a stored section) the
/// byte offset in the snapshot.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    section: Section,
    /// The snapshot offset of the section's frame.
    frame: usize,
    /// The snapshot offset of the body when it is stored as is (offsets are exact then).
    stored_at: Option<usize>,
}

impl<'a> Reader<'a> {
    pub(crate) fn error(&self, reason: impl std::fmt::Display) -> LockstepError {
        match self.stored_at {
            Some(at) => corrupt(at + self.pos, format!("{} section: {reason}", self.section.name())),
            None => corrupt(self.frame, format!("{} section, byte {} of its decoded body: {reason}", self.section.name(), self.pos)),
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        match self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()) {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.error(format!("{n} bytes needed, {} left", self.bytes.len() - self.pos))),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn bool(&mut self, field: &str) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.error(format!("`{field}` is {v}, not 0 or 1"))),
        }
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }
    pub(crate) fn i32(&mut self) -> Result<i32> {
        self.array().map(i32::from_le_bytes)
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }
    pub(crate) fn u128(&mut self) -> Result<u128> {
        self.array().map(u128::from_le_bytes)
    }
    pub(crate) fn digest(&mut self) -> Result<[u8; 32]> {
        self.array()
    }
    /// A count of items of at least `item_bytes` each, checked against what is left (so a
    /// forged count cannot allocate) and against `max`.
    pub(crate) fn count(&mut self, field: &str, item_bytes: usize, max: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        let left = self.bytes.len() - self.pos;
        if n > max {
            return Err(self.error(format!("`{field}` is {n}, over its limit of {max}")));
        }
        if n.saturating_mul(item_bytes.max(1)) > left {
            return Err(self.error(format!("`{field}` is {n}, but only {left} bytes are left for them")));
        }
        Ok(n)
    }
    /// Length-prefixed bytes of at most `max`.
    pub(crate) fn blob(&mut self, field: &str, max: usize) -> Result<&'a [u8]> {
        let n = self.count(field, 1, max)?;
        self.take(n)
    }
    pub(crate) fn string(&mut self, field: &str, max: usize) -> Result<String> {
        let b = self.blob(field, max)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.error(format!("`{field}` is not UTF-8")))
    }
    pub(crate) fn opt_string(&mut self, field: &str, max: usize) -> Result<Option<String>> {
        Ok(if self.bool(field)? { Some(self.string(field, max)?) } else { None })
    }
    /// A message whose payload is at most `abi::MAX_PAYLOAD_BYTES`.
    pub(crate) fn message(&mut self) -> Result<Message> {
        let (from, to, seq, kind, priority): (AgentId, AgentId, u64, u32, i32) = (self.u64()?, self.u64()?, self.u64()?, self.u32()?, self.i32()?);
        let payload = self.blob("message payload length", crate::abi::MAX_PAYLOAD_BYTES)?.to_vec();
        Ok(Message { from, to, seq, kind, priority, payload })
    }
    /// `n` messages (the count read and checked), each payload under the message limit.
    pub(crate) fn messages(&mut self, field: &str, max: usize) -> Result<Vec<Message>> {
        let n = self.count(field, MESSAGE_MIN_BYTES, max)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.message()?);
        }
        Ok(v)
    }
    /// The snapshot offset of what is read next, for a stored section (its frame otherwise).
    pub(crate) fn offset(&self) -> usize {
        self.stored_at.map_or(self.frame, |at| at + self.pos)
    }
    /// Everything was read: trailing bytes are corruption.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.pos != self.bytes.len() {
            return Err(self.error(format!("{} unread bytes at its end", self.bytes.len() - self.pos)));
        }
        Ok(())
    }
}

/// Writes a snapshot: the header, then each section in order.
pub(crate) struct Writer {
    out: Vec<u8>,
    sections: u32,
}

impl Writer {
    pub(crate) fn new(capacity: usize, version: u16) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        Self { out, sections: 0 }
    }

    /// Appends one section: `body` stored as is, or lz4-compressed in 1 MiB chunks.
    pub(crate) fn section(&mut self, kind: Section, body: &[u8], compress: bool) {
        let start = self.out.len();
        self.out.push(kind as u8);
        self.out.push(if compress { CODEC_LZ4 } else { CODEC_STORED });
        self.out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        let len_at = self.out.len();
        self.out.extend_from_slice(&0u64.to_le_bytes());
        let body_at = self.out.len();
        if compress {
            for chunk in body.chunks(CHUNK_BYTES) {
                let packed = lz4_flex::block::compress(chunk);
                self.out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
                self.out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
                self.out.extend_from_slice(&packed);
            }
        } else {
            self.out.extend_from_slice(body);
        }
        let stored = (self.out.len() - body_at) as u64;
        self.out[len_at..len_at + 8].copy_from_slice(&stored.to_le_bytes());
        let checksum = blake3::hash(&self.out[start..]);
        self.out.extend_from_slice(checksum.as_bytes());
        self.sections += 1;
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out[12..16].copy_from_slice(&self.sections.to_le_bytes());
        let crc = crc32fast::hash(&self.out[..16]);
        self.out[16..20].copy_from_slice(&crc.to_le_bytes());
        self.out
    }
}

/// One section, verified and decoded.
pub(crate) struct SectionBody<'a> {
    kind: Section,
    frame: usize,
    body: std::borrow::Cow<'a, [u8]>,
    stored: bool,
    /// Bytes it takes in the snapshot, frame and checksum included.
    pub(crate) stored_bytes: usize,
}

impl<'a> SectionBody<'a> {
    /// Where the section's frame starts in the snapshot.
    pub(crate) fn frame(&self) -> usize {
        self.frame
    }

    /// A reader of a section stored as is, borrowing the snapshot's bytes (not this body).
    pub(crate) fn borrowed_reader(&self) -> Option<Reader<'a>> {
        match &self.body {
            std::borrow::Cow::Borrowed(b) => {
                Some(Reader { bytes: b, pos: 0, section: self.kind, frame: self.frame, stored_at: Some(self.frame + SECTION_HEADER_BYTES) })
            }
            std::borrow::Cow::Owned(_) => None,
        }
    }

    pub(crate) fn reader(&self) -> Reader<'_> {
        let stored_at = self.stored.then_some(self.frame + SECTION_HEADER_BYTES);
        Reader { bytes: &self.body, pos: 0, section: self.kind, frame: self.frame, stored_at }
    }
}

/// The version a snapshot's header names (the header is at least `HEADER_BYTES`: `split`
/// checked it).
pub(crate) fn version(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[8], bytes[9]])
}

/// Checks the header (magic, CRC, version, flags) and every section's frame and checksum, and
/// decodes each: the five sections in order, nothing after them.
pub(crate) fn split(bytes: &[u8]) -> Result<Vec<SectionBody<'_>>> {
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        if bytes.len() >= 8 && &bytes[..8] == crate::replay_log::MAGIC {
            return Err(corrupt(0, "this is a replay log, not a snapshot: replay it with replay()"));
        }
        return Err(corrupt(
            0,
            format!("not a lockstep snapshot (it must start with {:?} and a {HEADER_BYTES}-byte header)", std::str::from_utf8(MAGIC).unwrap_or("")),
        ));
    }
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc != crc32fast::hash(&bytes[..16]) {
        return Err(corrupt(16, "header checksum mismatch: the snapshot was modified or damaged"));
    }
    let version = version(bytes);
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(LockstepError::SnapshotVersion { found: version, expected: FORMAT_VERSION });
    }
    let flags = u16::from_le_bytes([bytes[10], bytes[11]]);
    if flags != 0 {
        return Err(corrupt(10, format!("flags are {flags:#x}; this version defines none")));
    }
    let count = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if count as usize != Section::ALL.len() {
        return Err(corrupt(12, format!("{count} sections; version {FORMAT_VERSION} has {}", Section::ALL.len())));
    }
    let mut pos = HEADER_BYTES;
    let mut sections = Vec::with_capacity(Section::ALL.len());
    for kind in Section::ALL {
        let frame = pos;
        let rest = &bytes[pos..];
        if rest.len() < SECTION_HEADER_BYTES + CHECKSUM_BYTES {
            return Err(corrupt(
                frame,
                format!("truncated: the {} section's frame needs {} bytes, {} left", kind.name(), SECTION_HEADER_BYTES + CHECKSUM_BYTES, rest.len()),
            ));
        }
        let decoded = u64::from_le_bytes(rest[2..10].try_into().unwrap_or_default());
        let stored = u64::from_le_bytes(rest[10..18].try_into().unwrap_or_default());
        let room = (rest.len() - SECTION_HEADER_BYTES - CHECKSUM_BYTES) as u64;
        if stored > room {
            return Err(corrupt(frame + 10, format!("the {} section claims {stored} stored bytes, {room} are left", kind.name())));
        }
        let end = SECTION_HEADER_BYTES + stored as usize;
        let checksum: [u8; 32] = rest[end..end + CHECKSUM_BYTES].try_into().unwrap_or_default();
        if blake3::hash(&rest[..end]).as_bytes() != &checksum {
            return Err(corrupt(frame, format!("the {} section's checksum does not match: the snapshot was modified or damaged", kind.name())));
        }
        if rest[0] != kind as u8 {
            return Err(corrupt(frame, format!("section kind {} where the {} section ({}) belongs", rest[0], kind.name(), kind as u8)));
        }
        let body = &rest[SECTION_HEADER_BYTES..end];
        let (body, is_stored) = match rest[1] {
            CODEC_STORED if decoded == stored => (std::borrow::Cow::Borrowed(body), true),
            CODEC_STORED => {
                return Err(corrupt(frame + 2, format!("a stored {} section whose decoded length {decoded} is not its stored length {stored}", kind.name())))
            }
            CODEC_LZ4 => (std::borrow::Cow::Owned(decompress(body, decoded, frame + SECTION_HEADER_BYTES, kind)?), false),
            other => return Err(corrupt(frame + 1, format!("unknown codec {other} for the {} section", kind.name()))),
        };
        pos += end + CHECKSUM_BYTES;
        sections.push(SectionBody { kind, frame, body, stored: is_stored, stored_bytes: end + CHECKSUM_BYTES });
    }
    if pos != bytes.len() {
        return Err(corrupt(pos, format!("{} bytes after the last section", bytes.len() - pos)));
    }
    Ok(sections)
}

/// Decodes a run of lz4 chunks (decoded u32 ≤ 1 MiB, stored u32, block) that must add up to
/// `decoded` bytes. Allocates chunk by chunk: a forged length costs nothing up front.
fn decompress(mut body: &[u8], decoded: u64, mut at: usize, kind: Section) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 8 {
            return Err(corrupt(at, format!("truncated chunk header in the {} section", kind.name())));
        }
        let raw = u32::from_le_bytes(body[..4].try_into().unwrap_or_default()) as usize;
        let packed = u32::from_le_bytes(body[4..8].try_into().unwrap_or_default()) as usize;
        if raw == 0 || raw > CHUNK_BYTES || packed > body.len() - 8 || (out.len() + raw) as u64 > decoded {
            return Err(corrupt(at, format!("chunk of {raw} decoded and {packed} stored bytes does not fit the {} section", kind.name())));
        }
        let start = out.len();
        out.resize(start + raw, 0);
        match lz4_flex::block::decompress_into(&body[8..8 + packed], &mut out[start..]) {
            Ok(n) if n == raw => {}
            Ok(n) => return Err(corrupt(at, format!("chunk decodes to {n} bytes, its header says {raw}"))),
            Err(e) => return Err(corrupt(at, format!("chunk does not decode: {e}"))),
        }
        body = &body[8 + packed..];
        at += 8 + packed;
    }
    if out.len() as u64 != decoded {
        return Err(corrupt(at, format!("the {} section decodes to {} bytes, its frame says {decoded}", kind.name(), out.len())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(0, FORMAT_VERSION);
        for (i, kind) in Section::ALL.into_iter().enumerate() {
            let body: Vec<u8> = (0..3000u32).map(|v| (v % 7) as u8 + i as u8).collect();
            w.section(kind, &body, i % 2 == 0);
        }
        w.finish()
    }

    #[test]
    fn sections_round_trip_stored_and_compressed() {
        let bytes = sample();
        let sections = split(&bytes).unwrap();
        assert_eq!(sections.len(), 5);
        for (i, s) in sections.iter().enumerate() {
            let mut r = s.reader();
            assert_eq!(r.take(3000).unwrap()[..3], [i as u8, 1 + i as u8, 2 + i as u8]);
            r.finish().unwrap();
        }
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_an_error() {
        let bytes = sample();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let e = split(&b).err().unwrap_or_else(|| panic!("flip at {i} went unnoticed"));
            assert!(matches!(e, LockstepError::SnapshotCorrupt { .. } | LockstepError::SnapshotVersion { .. }), "{e}");
        }
        for n in 0..bytes.len() {
            assert!(matches!(split(&bytes[..n]), Err(LockstepError::SnapshotCorrupt { .. })), "cut at {n}");
        }
    }

    #[test]
    fn forged_counts_are_refused_before_allocating() {
        let mut w = Writer::new(0, FORMAT_VERSION);
        let mut body = Buf::default();
        body.u32(u32::MAX);
        for kind in Section::ALL {
            w.section(kind, &body.0, false);
        }
        let bytes = w.finish();
        let sections = split(&bytes).unwrap();
        let mut r = sections[0].reader();
        let e = r.count("things", 8, usize::MAX).unwrap_err();
        assert!(e.to_string().contains("only 0 bytes are left"), "{e}");
    }
}
