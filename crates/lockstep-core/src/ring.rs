//! Single-producer/single-consumer rings of variable-length records in shared memory: the
//! zero-copy path between JS (`ring.js`, over a `SharedArrayBuffer`) and the core.
//!
//! Layout (`lockstep_abi::ring`, re-exported here; docs/RINGS.md; `ring.js` implements the
//! same), little-endian:
//! ```text
//!   0  u32 magic "LSRG"   4 u32 version (1)   8 u32 capacity (data bytes, power of two)
//!  64  u32 head: bytes ever written (producer-owned, own cache line)
//! 128  u32 tail: bytes ever read (consumer-owned, own cache line)
//! 192  data[capacity]
//! record (8-byte aligned): u32 payload_len | u16 type | u16 flags | u32 kind | i32 priority
//!                          | u64 agent | payload | padding to 8
//! ```
//! `head` and `tail` are free-running u32 counters (wrapping): used = head - tail. The
//! producer writes a record's bytes, then publishes it with a release store of `head`; the
//! consumer acquires `head`, reads, then releases `tail`. A record never wraps: when it does
//! not fit before the end of the data area, the producer writes a PAD record that fills it.
//!
//! Everything the other side wrote is untrusted: every index and length is validated before
//! use, and a violation is a `RingError::Corrupt` naming the field, never an out-of-bounds
//! access. The only `unsafe` is in `RingMemory`, with its invariants written there.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub use lockstep_abi::ring::*;

/// What went wrong with a ring (in JS, an error with code `E_RING`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingError {
    /// The shared header or a record violates the protocol: the other side is buggy or
    /// hostile. The ring is unusable from here on.
    Corrupt {
        /// The header field or record part that is wrong.
        field: &'static str,
        /// What was found, and what was expected.
        detail: String,
    },
    /// No room for the record now (back-pressure): retry after the consumer has read.
    Full,
    /// The record can never fit this ring.
    TooLarge {
        /// Bytes the record needs (header, payload, padding).
        bytes: usize,
        /// The ring's data capacity, bytes.
        capacity: usize,
    },
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Corrupt { field, detail } => write!(f, "ring corrupted ({field}): {detail}"),
            Self::Full => write!(f, "ring is full"),
            Self::TooLarge { bytes, capacity } => write!(f, "record of {bytes} bytes can never fit a {capacity}-byte ring"),
        }
    }
}

impl std::error::Error for RingError {}

// `Consumer::read_one` reads a record header as three little-endian words: length and type
// in the first, kind and priority in the second, the agent in the third.
const _: () = assert!(
    RECORD_OFFSET_PAYLOAD_LEN == 0
        && RECORD_OFFSET_TYPE == 4
        && RECORD_OFFSET_KIND == 8
        && RECORD_OFFSET_PRIORITY == 12
        && RECORD_OFFSET_AGENT == 16
        && RECORD_HEADER_BYTES == 24
);

/// Total bytes of a ring region with `capacity` data bytes.
pub fn region_bytes(capacity: usize) -> usize {
    HEADER_BYTES + capacity
}

/// A ring region in memory shared with another thread (JS, or a Rust test thread).
///
/// Invariants (upheld by whoever constructs it with `from_raw`; `OwnedRegion::memory`
/// upholds them by construction, holding a reference to the region's buffer in `owner`):
/// 1. `base` points to `len` bytes that stay mapped and writable for the life of this value
///    (the napi binding holds a reference to the `SharedArrayBuffer`; an `OwnedRegion`'s
///    views hold its buffer alive).
/// 2. `base` is 8-byte aligned, so the u32 counters at 64 and 128 are aligned for atomics.
/// 3. The other side accesses `head`/`tail` only atomically (JS `Atomics`), and the bytes
///    only as the protocol allows. If it does not, we may read garbage bytes, but every
///    index we use is bounds-checked against `len` first, so we never access outside it.
///
/// 4. `len` is a multiple of 8, so every byte of the region lies in an aligned 8-byte word
///    inside it (checked by `from_raw`).
///
/// Every access to the shared bytes is atomic: the counters as `AtomicU32`, everything else
/// as relaxed `AtomicU64` loads and stores of the aligned words that hold it (a partial word
/// is loaded, patched and stored back). The other side may write the same bytes at the same
/// time (a buggy or hostile JS peer, or two producers made from one `OwnedRegion` by safe
/// code): with atomics that yields garbage at worst, which the protocol checks catch, never a
/// data race (undefined behaviour). One access size per word, so no mixed-size races either;
/// on x86-64 and AArch64 these are plain moves. No `&[u8]` into the region is ever made.
pub struct RingMemory {
    base: *mut u8,
    len: usize,
    /// What keeps `base` alive when the view was made by safe code (`OwnedRegion::memory`);
    /// `None` for `from_raw`, whose caller promised it.
    _owner: Option<std::sync::Arc<[AtomicU64]>>,
}

// SAFETY: the memory is shared by design (invariant 3: the other side may be another thread
// already); a RingMemory only copies bytes in and out and touches the counters atomically, and
// what keeps the buffer alive (`_owner`, or `from_raw`'s caller) does not depend on the thread.
unsafe impl Send for RingMemory {}
// SAFETY: every access through `&RingMemory` is an atomic load or store of an aligned word
// inside the region (`word`, `counter`), so threads sharing one (the workers copying held
// payloads out, `Consumer::read_held`) race only as the other side already may: never a data
// race.
unsafe impl Sync for RingMemory {}

impl RingMemory {
    /// # Safety
    /// The caller guarantees invariants 1 and 2 above for the life of the returned value.
    pub unsafe fn from_raw(base: *mut u8, len: usize) -> Result<Self, RingError> {
        if !(base as usize).is_multiple_of(8) {
            return Err(RingError::Corrupt { field: "buffer", detail: "ring memory must be 8-byte aligned".into() });
        }
        if len < HEADER_BYTES + MIN_CAPACITY {
            return Err(RingError::Corrupt { field: "buffer", detail: format!("{len} bytes is smaller than the smallest ring") });
        }
        if !len.is_multiple_of(8) {
            return Err(RingError::Corrupt {
                field: "buffer",
                detail: format!("{len} bytes is not a multiple of 8 (a ring region is 192 + a power of two bytes)"),
            });
        }
        Ok(Self { base, len, _owner: None })
    }

    fn counter(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset == OFFSET_HEAD || offset == OFFSET_TAIL);
        // SAFETY: offset + 4 <= HEADER_BYTES <= len (checked in from_raw) and the address is
        // 4-aligned (invariant 2); AtomicU32 has the layout of u32.
        unsafe { &*(self.base.add(offset) as *const AtomicU32) }
    }

    fn read_u32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        self.read(at, &mut b);
        u32::from_le_bytes(b)
    }

    fn write_u32(&self, at: usize, v: u32) {
        self.write(at, &v.to_le_bytes());
    }

    /// The aligned word at byte `word_at`.
    ///
    /// # Safety
    /// `word_at` is a multiple of 8 and `word_at + 8 <= self.len` (the callers assert the
    /// whole range once, then walk it).
    unsafe fn word(&self, word_at: usize) -> &AtomicU64 {
        debug_assert!(word_at.is_multiple_of(8) && word_at + 8 <= self.len);
        // SAFETY: in bounds (the caller's contract, invariant 1) and 8-aligned (invariants 2
        // and 4); AtomicU64 has the layout of u64, and atomics may be shared with writers.
        unsafe { &*(self.base.add(word_at) as *const AtomicU64) }
    }

    /// The little-endian value of the aligned word at byte `word_at`, which must lie inside
    /// the region (`word_at % 8 == 0`, `word_at + 8 <= len`): asserted, so a bug here can
    /// only panic, never read outside it.
    fn load_word(&self, word_at: usize) -> u64 {
        assert!(word_at.is_multiple_of(8) && word_at.checked_add(8).is_some_and(|end| end <= self.len), "ring word out of bounds");
        // SAFETY: just asserted (the contract of `word`).
        u64::from_le(unsafe { self.word(word_at) }.load(Ordering::Relaxed))
    }

    /// The words covering `at..at + len`: (first word's offset, bytes to skip in it). Panics
    /// only on a bug in this module (callers validate `at` first): the assert keeps even such
    /// a bug from touching memory outside the region.
    fn words(&self, at: usize, len: usize, what: &str) -> usize {
        assert!(at.checked_add(len).is_some_and(|end| end <= self.len), "ring {what} out of bounds");
        at & !7
    }

    /// Copies `out.len()` bytes from `at`, a word at a time.
    fn read(&self, at: usize, out: &mut [u8]) {
        // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and `copy_words` only
        // writes initialized bytes, so `out` stays initialized.
        let out = unsafe { &mut *(out as *mut [u8] as *mut [MaybeUninit<u8>]) };
        self.copy_words(at, out);
    }

    /// Appends the `len` bytes at `at` to `out`: `read` into its spare capacity, without
    /// zero-filling it first (this is every ring payload's copy into its inbox).
    fn append(&self, at: usize, len: usize, out: &mut Vec<u8>) {
        out.reserve(len);
        let start = out.len();
        self.copy_words(at, &mut out.spare_capacity_mut()[..len]);
        // SAFETY: `copy_words` wrote all `len` spare bytes after `start`, which `reserve` made.
        unsafe { out.set_len(start + len) };
    }

    /// Writes `out.len()` bytes from `at` into `out` (every byte of it), a word at a time:
    /// what `read` and `append` share. Inlined: a payload's copy is a few words, and the call
    /// (its frame, the loop's set-up) was half of it.
    #[inline(always)]
    fn copy_words(&self, at: usize, out: &mut [MaybeUninit<u8>]) {
        let mut word_at = self.words(at, out.len(), "read");
        let skip = at - word_at;
        let mut rest = out;
        // Every `word` call below: `words` asserted `at..at + out.len()` is inside the region,
        // and `len` is a multiple of 8 (invariant 4), so each word that holds a byte of that
        // range is inside it too; `word_at` stays a multiple of 8.
        if skip > 0 && !rest.is_empty() {
            // SAFETY: see above.
            let word = unsafe { self.word(word_at) }.load(Ordering::Relaxed).to_ne_bytes();
            let n = (8 - skip).min(rest.len());
            rest[..n].write_copy_of_slice(&word[skip..skip + n]);
            rest = &mut rest[n..];
            word_at += 8;
        }
        let mut chunks = rest.chunks_exact_mut(8);
        for chunk in &mut chunks {
            // SAFETY: see above.
            chunk.write_copy_of_slice(&unsafe { self.word(word_at) }.load(Ordering::Relaxed).to_ne_bytes());
            word_at += 8;
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            // SAFETY: see above.
            let word = unsafe { self.word(word_at) }.load(Ordering::Relaxed).to_ne_bytes();
            let n = tail.len();
            tail.write_copy_of_slice(&word[..n]);
        }
    }

    /// Copies `len` bytes from `at` into a new vector.
    fn read_vec(&self, at: usize, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        self.append(at, len, &mut v);
        v
    }

    /// Copies `bytes` to `at`, a word at a time; a partial word is loaded, patched and stored.
    fn write(&self, at: usize, bytes: &[u8]) {
        let mut word_at = self.words(at, bytes.len(), "write");
        let skip = at - word_at;
        let mut rest = bytes;
        let patch = |word_at: usize, from: usize, part: &[u8]| {
            // SAFETY: as in `read`: the word holds a byte of the asserted range.
            let cell = unsafe { self.word(word_at) };
            let mut word = cell.load(Ordering::Relaxed).to_ne_bytes();
            word[from..from + part.len()].copy_from_slice(part);
            cell.store(u64::from_ne_bytes(word), Ordering::Relaxed);
        };
        if skip > 0 && !rest.is_empty() {
            let n = (8 - skip).min(rest.len());
            patch(word_at, skip, &rest[..n]);
            rest = &rest[n..];
            word_at += 8;
        }
        let mut chunks = rest.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            // SAFETY: as in `read`.
            unsafe { self.word(word_at) }.store(u64::from_ne_bytes(word), Ordering::Relaxed);
            word_at += 8;
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            patch(word_at, 0, tail);
        }
    }
}

/// Writes the header of a fresh ring with `capacity` data bytes into `mem` (all zero).
pub fn init(mem: &RingMemory, capacity: usize) -> Result<(), RingError> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) || region_bytes(capacity) > mem.len {
        return Err(RingError::Corrupt { field: "capacity", detail: format!("{capacity} is not a power of two that fits the buffer") });
    }
    mem.write_u32(OFFSET_MAGIC, MAGIC);
    mem.write_u32(OFFSET_VERSION, VERSION);
    mem.write_u32(OFFSET_CAPACITY, capacity as u32);
    mem.counter(OFFSET_HEAD).store(0, Ordering::Release);
    mem.counter(OFFSET_TAIL).store(0, Ordering::Release);
    Ok(())
}

/// Checks magic, version and capacity of an existing ring; returns the capacity.
fn validate_header(mem: &RingMemory) -> Result<usize, RingError> {
    let corrupt = |field, detail: String| RingError::Corrupt { field, detail };
    if mem.read_u32(OFFSET_MAGIC) != MAGIC {
        return Err(corrupt("magic", "not a lockstep ring (bad magic)".into()));
    }
    let version = mem.read_u32(OFFSET_VERSION);
    if version != VERSION {
        return Err(corrupt("version", format!("ring version {version}, expected {VERSION}")));
    }
    let capacity = mem.read_u32(OFFSET_CAPACITY) as usize;
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) || region_bytes(capacity) > mem.len {
        return Err(corrupt("capacity", format!("capacity {capacity} is not a power of two within the {}-byte buffer", mem.len)));
    }
    Ok(capacity)
}

/// One record as read from a ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record type: `TYPE_MESSAGE`, `TYPE_EVENT` or `TYPE_TICK` (padding is never returned).
    pub kind_of_record: u16,
    /// A message's user-defined kind.
    pub kind: u32,
    /// A message's priority.
    pub priority: i32,
    /// The recipient (JS→core) or the sender / the event's agent (core→JS).
    pub agent: u64,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// One record as read from a ring, its payload lent from the consumer's scratch buffer
/// ([`Consumer::drain_borrowed`]: no allocation per record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record type: `TYPE_MESSAGE`, `TYPE_EVENT` or `TYPE_TICK`.
    pub kind_of_record: u16,
    /// A message's user-defined kind.
    pub kind: u32,
    /// A message's priority.
    pub priority: i32,
    /// The recipient (JS→core) or the sender / the event's agent (core→JS).
    pub agent: u64,
    /// The payload bytes.
    pub payload: &'a [u8],
}

/// One record's header as read from a ring, its payload still in the ring
/// ([`Consumer::drain_heads_to`]): [`RecordHead::read_payload`] copies it out once, straight
/// into memory the caller keeps.
pub struct RecordHead<'a> {
    /// The record type: `TYPE_MESSAGE`, `TYPE_EVENT` or `TYPE_TICK`.
    pub kind_of_record: u16,
    /// A message's user-defined kind.
    pub kind: u32,
    /// A message's priority.
    pub priority: i32,
    /// The recipient (JS→core) or the sender / the event's agent (core→JS).
    pub agent: u64,
    /// Payload bytes (checked against the message limit already).
    len: usize,
    mem: &'a RingMemory,
    at: usize,
}

impl RecordHead<'_> {
    /// Payload bytes (checked against the message limit when the header was read).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the payload into `out`, which should be `len()` bytes (a shorter `out` gets what
    /// fits). Read it once: the producer's side (JS) can write the ring at any time, so two
    /// reads may differ; keep the copy and use only it.
    pub fn read_payload(&self, out: &mut [u8]) {
        let n = self.len.min(out.len());
        self.mem.read(self.at, &mut out[..n]);
    }

    /// `read_payload`, appending the `len()` bytes to `out` instead.
    pub fn append_payload(&self, out: &mut Vec<u8>) {
        self.mem.append(self.at, self.len, out);
    }
}

/// A record's header as parsed, and where its payload lies in the ring memory.
struct Head {
    kind_of_record: u16,
    kind: u32,
    priority: i32,
    agent: u64,
    at: usize,
    len: usize,
}

/// The consuming end.
pub struct Consumer {
    mem: RingMemory,
    capacity: usize,
    max_payload: usize,
    broken: Option<RingError>,
    /// The tail after the records `hold_messages` walked, stored by `release_held`: until
    /// then their space stays the consumer's, so their payloads can be read after the walk.
    held_tail: Option<u32>,
}

/// A message record `Consumer::hold_messages` walked: its header as read (once), its payload
/// still in the ring until `release_held` (`Consumer::read_held` copies it out).
#[derive(Debug, Clone, Copy)]
pub struct HeldRecord {
    /// A message's user-defined kind.
    pub kind: u32,
    /// A message's priority.
    pub priority: i32,
    /// The recipient.
    pub agent: u64,
    len: u32,
    /// Where the payload starts in the region (a u32: 24 bytes a record, not 32; a walk holds
    /// up to `RING_BATCH_RECORDS` of them, and routing reads them three times).
    at: u32,
}

// A held record's offset is below the largest region, which a u32 holds.
const _: () = assert!(MAX_CAPACITY + HEADER_BYTES + RECORD_HEADER_BYTES <= u32::MAX as usize);

impl HeldRecord {
    /// Payload bytes (checked against the message limit when the header was read).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Consumer {
    /// Reads a ring the other side initialised; payloads over `max_payload` bytes are
    /// protocol violations. Fails if the header is not a valid ring header.
    pub fn new(mem: RingMemory, max_payload: usize) -> Result<Self, RingError> {
        let capacity = validate_header(&mem)?;
        Ok(Self { mem, capacity, max_payload, broken: None, held_tail: None })
    }

    /// The error that broke this ring, if any: a broken ring is never read again.
    pub fn broken(&self) -> Option<&RingError> {
        self.broken.as_ref()
    }

    /// Reads up to `max` records, handing each to `f`, then releases their space at once.
    /// Returns how many were read; on corruption the ring is marked broken and the error is
    /// returned after the records read before it were handed over.
    /// Reads up to `max` records, handing each to `f`. When `f` answers `Break`, that record
    /// is left in the ring (not consumed) and draining stops: the consumer's back-pressure.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(Record) -> std::ops::ControlFlow<()>) -> Result<usize, RingError> {
        self.drain_heads(max, |mem, h| {
            let payload = mem.read_vec(h.at, h.len);
            f(Record { kind_of_record: h.kind_of_record, kind: h.kind, priority: h.priority, agent: h.agent, payload })
        })
    }

    /// `drain`, with each record's payload read into `scratch` (grown once to the largest
    /// payload, then reused) and lent to `f`: no allocation per record.
    pub fn drain_borrowed(
        &mut self,
        max: usize,
        scratch: &mut Vec<u8>,
        mut f: impl FnMut(RecordRef<'_>) -> std::ops::ControlFlow<()>,
    ) -> Result<usize, RingError> {
        self.drain_records_to(None, max, |mem, h| {
            if scratch.len() < h.len {
                scratch.resize(h.len, 0);
            }
            let payload = &mut scratch[..h.len];
            mem.read(h.at, payload);
            f(RecordRef { kind_of_record: h.kind_of_record, kind: h.kind, priority: h.priority, agent: h.agent, payload })
        })
    }

    /// Walks the records published before `end` (a `published()` value), up to `max` records
    /// and, once one is held, `max_bytes` of held payload, appending each message record to
    /// `held` (other record types are skipped), without releasing their space: the payloads
    /// stay readable (`read_held`) until `release_held`, which must come before the next walk
    /// or drain (a second walk before it goes on after the first's records; a drain releases
    /// them first). Returns how many records it walked; on corruption the ring is marked
    /// broken and the error returned, the records before it held.
    pub fn hold_messages(&mut self, end: u32, max: usize, max_bytes: usize, held: &mut Vec<HeldRecord>) -> Result<usize, RingError> {
        let mut bytes = 0usize;
        self.walk(Some(end), max, true, |_, h| {
            if h.kind_of_record == TYPE_MESSAGE {
                if !held.is_empty() && bytes + h.len > max_bytes {
                    return std::ops::ControlFlow::Break(()); // left in the ring for the next walk
                }
                bytes += h.len;
                // `read_one` checked `len` against `max_payload`, a u32 on the wire.
                held.push(HeldRecord { kind: h.kind, priority: h.priority, agent: h.agent, len: h.len as u32, at: h.at as u32 });
            }
            std::ops::ControlFlow::Continue(())
        })
    }

    /// Copies a held record's payload into `out` (`len()` bytes; a shorter `out` gets what
    /// fits). Read it once: the producer's side can write the ring at any time, so two reads
    /// may differ. Only between `hold_messages` and `release_held` (after, the space may hold
    /// a newer record: garbage, never an out-of-bounds read).
    #[inline]
    pub fn read_held(&self, r: &HeldRecord, out: &mut [u8]) {
        let n = r.len().min(out.len());
        // A record this consumer held lies inside its region; one from another (larger)
        // ring's consumer may not: then nothing is read (no panic through the public API).
        let at = r.at as usize;
        if at.checked_add(n).is_some_and(|end| end <= self.mem.len) {
            self.mem.read(at, &mut out[..n]);
        }
    }

    /// `read_held`, appending the payload (`len()` bytes) to `out` instead.
    pub fn append_held(&self, r: &HeldRecord, out: &mut Vec<u8>) {
        let n = r.len();
        // As in `read_held`: a record from another ring's consumer may lie outside this one.
        let at = r.at as usize;
        if at.checked_add(n).is_some_and(|end| end <= self.mem.len) {
            self.mem.append(at, n, out);
        }
    }

    /// Where a held record's payload starts: for prefetching only.
    pub fn held_address(&self, r: &HeldRecord) -> usize {
        (self.mem.base as usize).wrapping_add(r.at as usize)
    }

    /// Whether the last walk held everything published before `end`.
    pub fn held_up_to(&self, end: u32) -> bool {
        self.held_tail == Some(end)
    }

    /// Gives the held records' space back to the producer.
    pub fn release_held(&mut self) {
        if let Some(tail) = self.held_tail.take() {
            self.mem.counter(OFFSET_TAIL).store(tail, Ordering::Release);
        }
    }

    /// Whether anything published before `end` (a `published()` value) is still to be read.
    pub fn unread_before(&self, end: u32) -> bool {
        self.mem.counter(OFFSET_TAIL).load(Ordering::Acquire) != end
    }

    /// Where the producer has published up to, now (the ring's head): with `drain_heads_to`,
    /// a drain in several calls that takes only what was published before the first.
    pub fn published(&self) -> u32 {
        self.mem.counter(OFFSET_HEAD).load(Ordering::Acquire)
    }

    /// The records published before `end` (a `published()` value), each header lent to `f`,
    /// which reads the payload itself ([`RecordHead::read_payload`]) into memory it keeps: no
    /// copy through a scratch buffer. Their space is released when the drain returns.
    pub fn drain_heads_to(&mut self, end: u32, max: usize, mut f: impl FnMut(RecordHead<'_>) -> std::ops::ControlFlow<()>) -> Result<usize, RingError> {
        self.drain_records_to(Some(end), max, |mem, h| {
            f(RecordHead { kind_of_record: h.kind_of_record, kind: h.kind, priority: h.priority, agent: h.agent, len: h.len, mem, at: h.at })
        })
    }

    /// What `drain` and `drain_borrowed` share: walks the records, hands each header to `f`
    /// (which reads the payload), releases their space at once.
    fn drain_heads(&mut self, max: usize, f: impl FnMut(&RingMemory, Head) -> std::ops::ControlFlow<()>) -> Result<usize, RingError> {
        self.drain_records_to(None, max, f)
    }

    /// `drain_heads` up to `end` (a head loaded earlier: everything before it was published
    /// then), or up to the head now.
    fn drain_records_to(&mut self, end: Option<u32>, max: usize, f: impl FnMut(&RingMemory, Head) -> std::ops::ControlFlow<()>) -> Result<usize, RingError> {
        self.walk(end, max, false, f)
    }

    /// What draining and holding share: walks the records from the tail (or from where the
    /// records still held end) up to `end` (or the head now), at most `max`, handing each to
    /// `f` (`Break`: that record stays in the ring), then releases their space, or, to `hold`,
    /// keeps it (`release_held`).
    fn walk(
        &mut self,
        end: Option<u32>,
        max: usize,
        hold: bool,
        mut f: impl FnMut(&RingMemory, Head) -> std::ops::ControlFlow<()>,
    ) -> Result<usize, RingError> {
        if !hold {
            // Records still held by `hold_messages` were read: never walk them twice.
            self.release_held();
        }
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let head = match end {
            Some(end) => end,
            None => self.mem.counter(OFFSET_HEAD).load(Ordering::Acquire),
        };
        let mut tail = self.held_tail.unwrap_or_else(|| self.mem.counter(OFFSET_TAIL).load(Ordering::Relaxed));
        let mut count = 0;
        let result = loop {
            if count >= max || tail == head {
                break Ok(count);
            }
            match self.read_one(head, tail) {
                Ok((advance, head)) => {
                    if let Some(h) = head {
                        if f(&self.mem, h).is_break() {
                            break Ok(count);
                        }
                        count += 1;
                    }
                    tail = tail.wrapping_add(advance as u32);
                }
                Err(e) => break Err(e),
            }
        };
        if hold {
            self.held_tail = Some(tail);
        } else {
            self.mem.counter(OFFSET_TAIL).store(tail, Ordering::Release);
        }
        if let Err(e) = &result {
            self.broken = Some(e.clone());
        }
        result
    }

    /// Parses the record at `tail`; returns the bytes it occupies and the record (None for PAD).
    /// Inlined into `walk` (its one caller): returned through memory, the result cost each
    /// record as much as the checks.
    #[inline(always)]
    fn read_one(&self, head: u32, tail: u32) -> Result<(usize, Option<Head>), RingError> {
        // The errors are built out of line (`corrupt` is cold): this runs once per record, and
        // formatting set up inline cost it a stack frame and register saves on every call.
        // The closures take copies (`move`): borrowing the locals kept them on the stack.
        let used = head.wrapping_sub(tail) as usize;
        if used > self.capacity {
            let capacity = self.capacity;
            return Err(corrupt("head", move || format!("head {head} is {used} bytes past tail {tail}, beyond the {capacity}-byte capacity")));
        }
        if !used.is_multiple_of(RECORD_ALIGN) || !tail.is_multiple_of(RECORD_ALIGN as u32) {
            return Err(corrupt("head", move || format!("head {head} / tail {tail} not 8-byte aligned")));
        }
        let off = tail as usize & (self.capacity - 1);
        let to_end = self.capacity - off;
        let at = HEADER_BYTES + off;
        // A record header always fits before the end: records are 8-aligned, a PAD needs 8
        // bytes and a full header 24 (checked below before the other two words are read).
        // The header is read as its three aligned words (one load each, not a byte copy).
        let first = self.mem.load_word(at);
        let len = (first & 0xffff_ffff) as usize;
        let kind_of_record = (first >> 32) as u16;
        if kind_of_record == TYPE_PAD {
            if len != to_end || len > used {
                return Err(corrupt("record length", move || format!("padding of {len} bytes at offset {off} should fill the {to_end} bytes to the end")));
            }
            return Ok((len, None));
        }
        if !matches!(kind_of_record, TYPE_MESSAGE | TYPE_EVENT | TYPE_TICK) {
            return Err(corrupt("record type", move || format!("unknown record type {kind_of_record} at offset {off}")));
        }
        if len > self.max_payload {
            let max = self.max_payload;
            return Err(corrupt("record length", move || format!("payload of {len} bytes at offset {off} exceeds the {max}-byte limit")));
        }
        let total = record_bytes(len);
        if total > used || total > to_end {
            return Err(corrupt("record length", move || {
                format!("record of {total} bytes at offset {off} overruns the published data ({used} bytes) or the ring end")
            }));
        }
        let kind_priority = self.mem.load_word(at + RECORD_OFFSET_KIND);
        Ok((
            total,
            Some(Head {
                kind_of_record,
                kind: kind_priority as u32,
                priority: (kind_priority >> 32) as u32 as i32,
                agent: self.mem.load_word(at + RECORD_OFFSET_AGENT),
                at: at + RECORD_HEADER_BYTES,
                len,
            }),
        ))
    }
}

/// A `RingError::Corrupt` for `field`, its detail formatted only now (out of the hot path).
#[cold]
#[inline(never)]
fn corrupt(field: &'static str, detail: impl FnOnce() -> String) -> RingError {
    RingError::Corrupt { field, detail: detail() }
}

/// The producing end.
pub struct Producer {
    mem: RingMemory,
    capacity: usize,
}

impl Producer {
    /// Writes into a ring the other side initialised. Fails if the header is not a valid
    /// ring header.
    pub fn new(mem: RingMemory) -> Result<Self, RingError> {
        let capacity = validate_header(&mem)?;
        Ok(Self { mem, capacity })
    }

    /// The ring's data capacity, bytes: a record of more (`record_bytes`) can never be written.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends one record, or `Full` (nothing written) when the consumer has not made room.
    pub fn try_push(&mut self, kind_of_record: u16, kind: u32, priority: i32, agent: u64, payload: &[u8]) -> Result<(), RingError> {
        let total = record_bytes(payload.len());
        if total > self.capacity {
            return Err(RingError::TooLarge { bytes: total, capacity: self.capacity });
        }
        let mut head = self.mem.counter(OFFSET_HEAD).load(Ordering::Relaxed);
        let tail = self.mem.counter(OFFSET_TAIL).load(Ordering::Acquire);
        let used = head.wrapping_sub(tail) as usize;
        if used > self.capacity {
            return Err(RingError::Corrupt { field: "tail", detail: format!("tail {tail} is ahead of head {head}") });
        }
        let off = head as usize & (self.capacity - 1);
        let to_end = self.capacity - off;
        let pad = if total > to_end { to_end } else { 0 };
        if used + pad + total > self.capacity {
            return Err(RingError::Full);
        }
        if pad > 0 {
            let at = HEADER_BYTES + off;
            self.mem.write_u32(at + RECORD_OFFSET_PAYLOAD_LEN, pad as u32);
            self.mem.write(at + RECORD_OFFSET_TYPE, &TYPE_PAD.to_le_bytes());
            self.mem.write(at + RECORD_OFFSET_FLAGS, &0u16.to_le_bytes());
            head = head.wrapping_add(pad as u32);
        }
        let at = HEADER_BYTES + (head as usize & (self.capacity - 1));
        let mut h = [0u8; RECORD_HEADER_BYTES];
        h[RECORD_OFFSET_PAYLOAD_LEN..][..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        h[RECORD_OFFSET_TYPE..][..2].copy_from_slice(&kind_of_record.to_le_bytes());
        h[RECORD_OFFSET_KIND..][..4].copy_from_slice(&kind.to_le_bytes());
        h[RECORD_OFFSET_PRIORITY..][..4].copy_from_slice(&priority.to_le_bytes());
        h[RECORD_OFFSET_AGENT..][..8].copy_from_slice(&agent.to_le_bytes());
        self.mem.write(at, &h);
        self.mem.write(at + RECORD_HEADER_BYTES, payload);
        self.mem.counter(OFFSET_HEAD).store(head.wrapping_add(total as u32), Ordering::Release);
        Ok(())
    }
}

/// An owned, 8-byte-aligned ring region for tests and Rust-only producers. Its views
/// (`memory()`) share ownership of the buffer, so a view outliving the region is still
/// sound: the safe API cannot produce a dangling `RingMemory` (issue 9, item 5).
pub struct OwnedRegion {
    /// Atomic words: the buffer is written through shared views (interior mutability), and
    /// `AtomicU64` gives it the 8-byte alignment invariant 2 needs.
    words: std::sync::Arc<[AtomicU64]>,
}

impl OwnedRegion {
    /// A zeroed region for a ring of `capacity` data bytes (initialise it with `init`).
    pub fn new(capacity: usize) -> Self {
        Self { words: (0..region_bytes(capacity).div_ceil(8)).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Raw pointer to the region, for tests that play a hostile producer (dereferencing it
    /// is theirs to justify).
    pub fn memory_ptr(&self) -> *mut u8 {
        self.words.as_ptr() as *mut u8
    }

    /// A view of the region; it keeps the buffer alive for as long as it exists.
    pub fn memory(&self) -> RingMemory {
        // Invariant 1: `_owner` holds the buffer for the view's life. Invariant 2: AtomicU64
        // is 8-aligned. Writes through `base` are writes into atomics' interior-mutable cells.
        RingMemory { base: self.words.as_ptr() as *mut u8, len: self.words.len() * 8, _owner: Some(self.words.clone()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 4096;

    #[test]
    fn a_ring_view_keeps_its_region_alive_after_the_region_is_dropped() {
        let region = OwnedRegion::new(CAP);
        init(&region.memory(), CAP).unwrap();
        let (mut p, view) = (Producer::new(region.memory()).unwrap(), region.memory());
        drop(region);
        // Reuse the freed block if the allocator would hand it out again.
        let decoy: Vec<Vec<u64>> = (0..8).map(|_| vec![u64::MAX; region_bytes(CAP).div_ceil(8)]).collect();
        p.try_push(TYPE_MESSAGE, 1, 0, 2, b"still here").unwrap();
        let mut c = Consumer::new(view, 65_496).expect("the view still sees a valid ring");
        let got = drain_all(&mut c);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, b"still here");
        drop(decoy);
    }

    /// `append` (every ring payload's copy into an inbox, into spare capacity) writes exactly
    /// the bytes `read` copies, for every start within a word and lengths across word
    /// boundaries, after what `out` held already and whatever its capacity.
    #[test]
    fn append_copies_what_read_copies_at_every_offset_and_length() {
        let region = OwnedRegion::new(CAP);
        let mem = region.memory();
        let pattern: Vec<u8> = (0..256u32).map(|i| (i * 37 + 11) as u8).collect();
        mem.write(HEADER_BYTES, &pattern);
        for at in HEADER_BYTES..HEADER_BYTES + 17 {
            for len in 0..40 {
                let mut want = vec![0u8; len];
                mem.read(at, &mut want);
                assert_eq!(want, pattern[at - HEADER_BYTES..][..len]);
                for prefix in [0usize, 3, 8] {
                    let mut out: Vec<u8> = vec![0xee; prefix];
                    out.shrink_to_fit();
                    mem.append(at, len, &mut out);
                    assert_eq!(out.len(), prefix + len, "at {at} len {len}");
                    assert!(out[..prefix].iter().all(|&b| b == 0xee));
                    assert_eq!(out[prefix..], want[..], "at {at} len {len} after {prefix}");
                }
            }
        }
    }

    fn pair(region: &OwnedRegion) -> (Producer, Consumer) {
        init(&region.memory(), CAP).unwrap();
        (Producer::new(region.memory()).unwrap(), Consumer::new(region.memory(), 65_496).unwrap())
    }

    fn drain_all(c: &mut Consumer) -> Vec<Record> {
        let mut v = Vec::new();
        c.drain(usize::MAX, |r| {
            v.push(r);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        v
    }

    /// `hold_messages`: message records are held in order (events and the padding before the
    /// ring wraps are walked past), their space stays the consumer's until `release_held` (the
    /// producer finds the ring full meanwhile), the byte budget ends a walk before the record
    /// that would pass it, and a drain after a hold releases first and never reads the held
    /// records again. A record held by another consumer is never read out of bounds.
    #[test]
    fn held_records_keep_their_space_until_released_and_are_never_walked_twice() {
        let region = OwnedRegion::new(CAP);
        let (mut p, mut c) = pair(&region);
        // Fill most of the ring, drain it, so the next records wrap (a PAD record first).
        for len in [1000, 1000, 1000, 900] {
            p.try_push(TYPE_MESSAGE, 0, 0, 1, &vec![9u8; len]).unwrap();
        }
        assert_eq!(drain_all(&mut c).len(), 4);
        p.try_push(TYPE_MESSAGE, 5, -1, 7, &[1; 200]).unwrap(); // wraps: PAD, then this
        p.try_push(TYPE_EVENT, 0, 0, 0, b"an event").unwrap();
        p.try_push(TYPE_MESSAGE, 6, 2, 8, &[2; 300]).unwrap();
        p.try_push(TYPE_MESSAGE, 7, 3, 9, &[3; 10]).unwrap();
        let end = c.published();
        let mut held = Vec::new();
        // A 400-byte budget: 200 + 300 would pass it, so the walk ends before the second message.
        assert_eq!(c.hold_messages(end, 100, 400, &mut held).unwrap(), 2, "the message and the event");
        assert_eq!(held.iter().map(|r| (r.kind, r.priority, r.agent, r.len())).collect::<Vec<_>>(), [(5, -1, 7, 200)]);
        assert_eq!(held[0].at as usize, HEADER_BYTES + RECORD_HEADER_BYTES, "it wrapped: a PAD record was walked past");
        assert!(!c.held_up_to(end));
        let mut out = [0u8; 200];
        c.read_held(&held[0], &mut out);
        assert_eq!(out, [1; 200]);
        // Held space is not the producer's: it fills the rest, then finds the ring full, and
        // gets room only once the held records are released.
        let mut pushed_while_held = 0;
        while p.try_push(TYPE_MESSAGE, 0, 0, 1, &[0; 100]).is_ok() {
            pushed_while_held += 1;
        }
        c.release_held();
        assert!(p.try_push(TYPE_MESSAGE, 0, 0, 1, &[0; 100]).is_ok(), "room after the release");
        held.clear();
        assert_eq!(c.hold_messages(end, 100, 400, &mut held).unwrap(), 2);
        assert_eq!(held.iter().map(|r| (r.agent, r.len())).collect::<Vec<_>>(), [(8, 300), (9, 10)]);
        assert!(c.held_up_to(end));
        // A drain now releases them first and finds only what was pushed after `end`.
        let rest = drain_all(&mut c);
        assert_eq!(rest.len(), pushed_while_held + 1);
        assert!(rest.iter().all(|r| r.payload == [0; 100]), "the held records are not read again");
        // Another ring's record (past this one's region) reads nothing, and does not panic.
        let big = OwnedRegion::new(CAP * 4);
        let (mut bp, mut bc) = {
            init(&big.memory(), CAP * 4).unwrap();
            (Producer::new(big.memory()).unwrap(), Consumer::new(big.memory(), 65_496).unwrap())
        };
        for _ in 0..10 {
            bp.try_push(TYPE_MESSAGE, 0, 0, 1, &[4; 1000]).unwrap();
        }
        let mut far = Vec::new();
        bc.hold_messages(bc.published(), 100, usize::MAX, &mut far).unwrap();
        let mut out = [7u8; 1000];
        c.read_held(far.last().unwrap(), &mut out);
        assert_eq!(out, [7; 1000], "nothing read");
    }

    #[test]
    fn a_drain_to_a_published_point_leaves_what_was_published_after() {
        let region = OwnedRegion::new(1 << 12);
        init(&region.memory(), 1 << 12).unwrap();
        let mut p = Producer::new(region.memory()).unwrap();
        let mut c = Consumer::new(region.memory(), 1 << 10).unwrap();
        for i in 0..3u8 {
            p.try_push(TYPE_MESSAGE, 0, 0, 1, &[i]).unwrap();
        }
        let end = c.published();
        for i in 3..5u8 {
            p.try_push(TYPE_MESSAGE, 0, 0, 1, &[i]).unwrap();
        }
        let mut seen = Vec::new();
        let mut scratch = Vec::new();
        let take = |seen: &mut Vec<u8>, r: RecordHead<'_>| {
            let mut b = [0u8; 2];
            r.read_payload(&mut b);
            assert_eq!(r.len(), 1);
            seen.push(b[0]);
            std::ops::ControlFlow::Continue(())
        };
        // In two calls (as a drain in batches makes them), then nothing more up to `end`.
        assert_eq!(c.drain_heads_to(end, 2, |r| take(&mut seen, r)).unwrap(), 2);
        assert_eq!(c.drain_heads_to(end, 10, |r| take(&mut seen, r)).unwrap(), 1);
        assert_eq!(c.drain_heads_to(end, 10, |r| take(&mut seen, r)).unwrap(), 0);
        assert_eq!(seen, [0, 1, 2]);
        let mut rest = Vec::new();
        assert_eq!(
            c.drain_borrowed(10, &mut scratch, |r| {
                rest.push(r.payload[0]);
                std::ops::ControlFlow::Continue(())
            })
            .unwrap(),
            2,
            "the rest, later"
        );
        seen.extend(rest);
        assert_eq!(seen, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn records_round_trip_in_order_across_wraps() {
        let region = OwnedRegion::new(CAP);
        let (mut p, mut c) = pair(&region);
        let mut expected = 0u64;
        for round in 0..200u64 {
            let n = 1 + (round % 7) as usize;
            for i in 0..n {
                let len = ((round as usize * 31 + i * 17) % 300) + 1;
                let payload = vec![(round + i as u64) as u8; len];
                p.try_push(TYPE_MESSAGE, i as u32, -(i as i32), round * 100 + i as u64, &payload).unwrap();
            }
            for r in drain_all(&mut c) {
                assert_eq!(r.agent / 100, round);
                assert_eq!(r.payload.len(), ((round as usize * 31 + (r.agent % 100) as usize * 17) % 300) + 1);
                expected += 1;
            }
        }
        assert!(expected > 500);
    }

    #[test]
    fn full_is_back_pressure_and_nothing_is_overwritten() {
        let region = OwnedRegion::new(CAP);
        let (mut p, mut c) = pair(&region);
        let mut pushed = 0u32;
        loop {
            match p.try_push(TYPE_MESSAGE, pushed, 0, 1, &[7u8; 100]) {
                Ok(()) => pushed += 1,
                Err(RingError::Full) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(pushed as usize, CAP / record_bytes(100));
        let got = drain_all(&mut c);
        assert_eq!(got.iter().map(|r| r.kind).collect::<Vec<_>>(), (0..pushed).collect::<Vec<_>>());
        assert!(p.try_push(TYPE_MESSAGE, 0, 0, 1, &[0; 100]).is_ok(), "room again after the drain");
        assert_eq!(p.try_push(TYPE_MESSAGE, 0, 0, 1, &[0; CAP]), Err(RingError::TooLarge { bytes: record_bytes(CAP), capacity: CAP }));
    }

    #[test]
    fn corrupted_fields_are_detected_never_followed() {
        type Damage = Box<dyn Fn(&RingMemory)>;
        let cases: Vec<(&str, Damage)> = vec![
            ("head", Box::new(|m: &RingMemory| m.counter(OFFSET_HEAD).store(CAP as u32 * 3, Ordering::Release))),
            ("head", Box::new(|m: &RingMemory| m.counter(OFFSET_HEAD).store(13, Ordering::Release))),
            ("record length", Box::new(|m: &RingMemory| m.write_u32(HEADER_BYTES, 0xFFFF_FFF0))),
            ("record length", Box::new(|m: &RingMemory| m.write_u32(HEADER_BYTES, 200))),
            ("record type", Box::new(|m: &RingMemory| m.write(HEADER_BYTES + 4, &[9, 0]))),
        ];
        for (field, damage) in cases {
            let region = OwnedRegion::new(CAP);
            let (mut p, mut c) = pair(&region);
            p.try_push(TYPE_MESSAGE, 1, 0, 1, &[1; 16]).unwrap();
            damage(&region.memory());
            match c.drain(usize::MAX, |_| std::ops::ControlFlow::Continue(())) {
                Err(RingError::Corrupt { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
            assert!(c.broken().is_some(), "a corrupt ring stays broken");
            assert!(c.drain(1, |_| std::ops::ControlFlow::Continue(())).is_err());
        }
        for (field, damage) in [("magic", 0usize), ("version", 4), ("capacity", 8)] {
            let region = OwnedRegion::new(CAP);
            init(&region.memory(), CAP).unwrap();
            region.memory().write_u32(damage, 12345);
            match Consumer::new(region.memory(), 100) {
                Err(RingError::Corrupt { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {:?}", other.err()),
            }
        }
    }

    #[test]
    fn concurrent_producer_and_consumer_lose_nothing() {
        let region = OwnedRegion::new(1 << 16);
        init(&region.memory(), 1 << 16).unwrap();
        let mut p = Producer::new(region.memory()).unwrap();
        let mut c = Consumer::new(region.memory(), 65_496).unwrap();
        const N: u64 = 1_000_000;
        let producer = std::thread::spawn(move || {
            let mut i = 0u64;
            let mut spins = 0u32;
            while i < N {
                let len = (i % 61) as usize;
                let mut payload = vec![0u8; len + 8];
                payload[..8].copy_from_slice(&i.to_le_bytes());
                for (k, b) in payload[8..].iter_mut().enumerate() {
                    *b = (i as usize + k) as u8;
                }
                match p.try_push(TYPE_MESSAGE, (i % 1000) as u32, 0, i, &payload) {
                    Ok(()) => {
                        i += 1;
                        spins = 0;
                    }
                    Err(RingError::Full) => {
                        // Bounded spinning, then yield: never spin unboundedly.
                        spins += 1;
                        if spins > 64 {
                            std::thread::yield_now();
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut next = 0u64;
        let mut checksum = 0u64;
        while next < N {
            c.drain(4096, |r| {
                assert_eq!(r.agent, next, "order");
                assert_eq!(u64::from_le_bytes(r.payload[..8].try_into().unwrap()), next);
                for (k, b) in r.payload[8..].iter().enumerate() {
                    assert_eq!(*b, (next as usize + k) as u8, "payload intact");
                }
                checksum = checksum.wrapping_add(r.payload.iter().map(|&b| b as u64).sum::<u64>());
                next += 1;
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
            std::thread::yield_now();
        }
        producer.join().unwrap();
        assert_eq!(next, N);
        assert!(checksum > 0);
        drop(region);
    }
}
