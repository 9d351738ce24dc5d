//! Snapshots (docs/SNAPSHOT.md): the whole state of a runtime between ticks, as bytes, and a
//! runtime rebuilt from them that continues exactly (every later tick hash and deep hash equal
//! the uninterrupted run's, with any worker count, allocator or process).
//!
//! - `format`: the container (header, checksummed sections, lz4 chunks, the bounded reader);
//! - `wasm`: what a module must tell snapshots, found when it is compiled (its mutable globals
//!   gain exports; table mutation is refused);
//! - this file: the state as plain data (`RuntimeImage`, `SlotImage`, `InstanceImage`), its
//!   encoding in the sections, the content-addressed page table, and the public types;
//! - `snapshot/runtime.rs` (a child of `runtime`) takes and rebuilds a `Runtime`, and
//!   `snapshot/instance.rs` (a child of `sandbox`) an agent's instance: they see the private
//!   fields of what they capture, so nothing else had to be opened for them.

pub(crate) mod format;
pub(crate) mod wasm;

pub use format::{FORMAT_VERSION, MAGIC, OLDEST_VERSION};

use crate::bus::{AgentId, DeadLetter, DeadLetterReason, Message};
use crate::error::{Digest, Result};
use crate::fault::{AbiCall, AgentState, Fault, FaultKind};
use crate::host::{InferRequest, LogLine};
use crate::limits::{MAX_AGENT_IDS, MAX_DEAD_LETTERS, MAX_HOST_MESSAGES, MAX_MODULES, MAX_PENDING_MESSAGES, MAX_PHASES};
use crate::replay_log::SessionConfig;
use crate::runtime::ResourcePolicy;
use crate::sandbox::MemoryAllocator;
use crate::security::Capabilities;
use format::{corrupt, Buf, Reader, Section};
use wasm::PAGE_BYTES;

/// How [`Runtime::restore`](crate::Runtime::restore) builds the runtime: what the snapshot
/// does not decide (threads, allocator, recording, host-side queue limits), the caller's
/// trust, and what the caller expects the snapshot to be.
///
/// The session's settings (seed, fuel, memory, limits, policy) come from the snapshot; trust
/// does not: a module is admitted again only if the caller trusts it too, as in
/// [`replay_trusting`](crate::replay_trusting): keys are the snapshot's that are also in
/// `trusted_keys`, and unsigned modules need `dev_mode` here *and* in the snapshot's session.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Worker threads (never changes results).
    pub workers: usize,
    /// How many of them a tick uses (`RuntimeConfig::worker_scaling`).
    pub worker_scaling: crate::WorkerScaling,
    /// Where agent memories live (never changes results).
    pub allocator: MemoryAllocator,
    /// Record a replay log from the snapshot on: it starts with a Base record naming the
    /// snapshot, and replays with it ([`replay_from`](crate::replay_from)).
    pub record: bool,
    /// Most bytes the in-memory log may hold (as [`RuntimeConfig::max_log_bytes`](crate::RuntimeConfig)).
    pub max_log_bytes: usize,
    /// Most events kept for `drain_events`.
    pub max_events: usize,
    /// Batch agents' inference requests per model per tick.
    pub inference_batching: bool,
    /// Publishers the caller trusts (intersected with the snapshot's).
    pub trusted_keys: Vec<[u8; 32]>,
    /// Admit unsigned modules (only if the snapshot's session was in development mode too).
    pub dev_mode: bool,
    /// What the snapshot must be: each setting given that differs is reported together in one
    /// `E_SNAPSHOT_MISMATCH`.
    pub expect: ExpectedSession,
    /// Journal the restored session (docs/JOURNAL.md): the snapshot is written into the new
    /// journal's directory and its first segment starts from it (a Base record), so the
    /// journal recovers (and can be visited) from there.
    pub journal: Option<crate::journal::JournalConfig>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        let c = crate::RuntimeConfig::default();
        Self {
            workers: c.workers,
            worker_scaling: c.worker_scaling,
            allocator: c.allocator,
            record: c.record,
            max_log_bytes: c.max_log_bytes,
            max_events: c.max_events,
            inference_batching: c.inference_batching,
            trusted_keys: Vec::new(),
            dev_mode: false,
            expect: ExpectedSession::default(),
            journal: None,
        }
    }
}

impl RestoreOptions {
    /// The defaults in development mode (unsigned modules of a development session admitted).
    pub fn development() -> Self {
        Self { dev_mode: true, ..Self::default() }
    }
}

/// Settings a restore expects the snapshot to have; `None` accepts the snapshot's.
#[derive(Debug, Clone, Default)]
pub struct ExpectedSession {
    /// The seed of the agents' random streams.
    pub seed: Option<u64>,
    /// Fuel per ABI call.
    pub fuel_per_call: Option<u64>,
    /// The cap on each agent's memory.
    pub memory_limit_bytes: Option<u64>,
    /// Most agents alive at once.
    pub max_agents: Option<u32>,
    /// The deadline per ABI call.
    pub deadline_ms: Option<u64>,
    /// The deep-hash interval.
    pub checkpoint_interval_ticks: Option<u64>,
    /// The operator's capability policy.
    pub policy: Option<Capabilities>,
    /// What admission does with resources over the limits.
    pub resource_policy: Option<ResourcePolicy>,
    /// Exactly these modules (BLAKE3 hashes, any order).
    pub modules: Option<Vec<Digest>>,
}

/// What a snapshot holds, from [`info`] (it checks the whole snapshot, as a restore does,
/// without building a runtime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its format version (`OLDEST_VERSION..=FORMAT_VERSION`).
    pub version: u16,
    /// Edges of the workflow graph it holds.
    pub edges: usize,
    /// Ticks run when it was taken (the restored runtime's `current_tick()`).
    pub tick: u64,
    /// The state hash then (the restored runtime's `state_hash()`).
    pub state_hash: Digest,
    /// BLAKE3 of the snapshot's bytes: what a log recorded from it names in its Base record.
    pub hash: Digest,
    /// Agents ever spawned (ids 1..=agents).
    pub agents: usize,
    /// Of those, the running ones, whose instances it holds.
    pub live_agents: usize,
    /// Modules it holds (bytes included).
    pub modules: usize,
    /// Memory pages (64 KiB) of the running agents that are not all zeros: what a copy of
    /// their touched memory takes is this × 65,536 bytes.
    pub memory_pages: u64,
    /// Of those pages' 4 KiB chunks, the ones that are not all zeros (what is stored of them).
    pub memory_chunks: u64,
    /// Memory pages that are all zeros (not stored).
    pub zero_pages: u64,
    /// Distinct non-zero pages, each stored once.
    pub unique_pages: usize,
    /// Bytes the stored pages take (compressed), their section's frame included.
    pub page_bytes: usize,
    /// The snapshot's size, bytes.
    pub bytes: usize,
}

/// Checks a whole snapshot (every page against its address too) and says what it holds.
pub fn info(bytes: &[u8]) -> Result<SnapshotInfo> {
    let d = decode(bytes)?;
    d.pages.verify()?;
    let live: Vec<&InstanceImage> = d.agents.iter().filter_map(|a| a.instance.as_ref()).collect();
    let zero_pages = live.iter().map(|i| i.pages.iter().filter(|&&p| p == ZERO_PAGE).count() as u64).sum();
    let all_pages: u64 = live.iter().map(|i| i.pages.len() as u64).sum();
    let memory_chunks =
        live.iter().flat_map(|i| &i.pages).filter(|&&p| p != ZERO_PAGE).map(|&p| u64::from(d.pages.entries[p as usize].mask.count_ones())).sum();
    Ok(SnapshotInfo {
        version: format::version(bytes),
        edges: d.runtime.edges.len(),
        tick: d.runtime.tick,
        state_hash: d.runtime.last_hash,
        hash: Digest(*blake3::hash(bytes).as_bytes()),
        agents: d.agents.len(),
        live_agents: live.len(),
        modules: d.modules.len(),
        memory_pages: all_pages - zero_pages,
        memory_chunks,
        zero_pages,
        unique_pages: d.pages.entries.len(),
        page_bytes: d.page_bytes,
        bytes: bytes.len(),
    })
}

// ----- the state, as plain data ------------------------------------------------------------

/// The page-table index of an all-zero page (never stored).
pub(crate) const ZERO_PAGE: u32 = u32::MAX;

/// A mutable global's value, by type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum GlobalValue {
    I32(u32),
    I64(u64),
    F32(u32),
    F64(u64),
    V128(u128),
}

/// One running agent's instance: its memory (as page-table indices) and mutable globals, and
/// the host side of its store.
#[derive(Debug, Default)]
pub(crate) struct InstanceImage {
    pub(crate) io_ptr: u32,
    pub(crate) fuel_consumed: u64,
    pub(crate) fuel_left_this_tick: u64,
    pub(crate) next_seq: u64,
    pub(crate) rng_word_pos: u128,
    pub(crate) rng_stream: u64,
    pub(crate) memory_limit_hit: bool,
    pub(crate) panic_message: Option<String>,
    pub(crate) violation: Option<String>,
    pub(crate) outbox: Vec<Message>,
    pub(crate) outbox_bytes: u64,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) infer: Vec<InferRequest>,
    /// (global index, value) for each mutable global, in index order.
    pub(crate) globals: Vec<(u32, GlobalValue)>,
    /// Per 64 KiB page of memory: its page-table index, or `ZERO_PAGE`.
    pub(crate) pages: Vec<u32>,
    /// A module that writes into its tables: each table's elements, each a function index or
    /// `NULL_FUNC` (format version 2; empty for other modules).
    pub(crate) tables: Vec<Vec<u32>>,
    /// Its time slice, fuel per call and tick; 0: none (format version 3).
    pub(crate) fuel_per_tick: u64,
}

/// A null element of a table (`tables` of `InstanceImage`).
pub(crate) const NULL_FUNC: u32 = u32::MAX;

/// One agent's slot.
#[derive(Debug)]
pub(crate) struct SlotImage {
    pub(crate) id: AgentId,
    pub(crate) phase: i32,
    /// Index into the snapshot's modules (in hash order).
    pub(crate) module: u32,
    pub(crate) state: AgentState,
    pub(crate) inbox: Vec<Message>,
    pub(crate) inbox_bytes: u64,
    pub(crate) steps: u64,
    pub(crate) messages_received: u64,
    pub(crate) messages_sent: u64,
    pub(crate) last_memory_bytes: u64,
    pub(crate) last_fuel_consumed: u64,
    pub(crate) instance: Option<InstanceImage>,
}

/// The input queue as it waits for the next tick.
#[derive(Debug, Default)]
pub(crate) struct InputsImage {
    pub(crate) messages: Vec<Message>,
    pub(crate) bytes: u64,
    pub(crate) host_seq: u64,
    pub(crate) answer_seq: u64,
    /// What the input digest was fed since the last tick (hashed when the next tick starts).
    pub(crate) digest: Vec<u8>,
}

/// Everything of the runtime that is not an agent.
#[derive(Debug, Default)]
pub(crate) struct RuntimeImage {
    pub(crate) tick: u64,
    pub(crate) last_hash: Digest,
    pub(crate) last_fuel: u64,
    pub(crate) next_request_id: u64,
    pub(crate) session_started: bool,
    pub(crate) phases: Vec<i32>,
    pub(crate) phases_stale: bool,
    pub(crate) inputs: InputsImage,
    /// Messages to the host not yet drained (those waiting for the outbound ring first).
    pub(crate) host_messages: Vec<Message>,
    pub(crate) dead_letters: Vec<DeadLetter>,
    /// Items dropped over the runtime's life: dead letters, host messages, outbound-ring
    /// records, events.
    pub(crate) dropped: [u64; 4],
    /// The agent model table (model ids by slot).
    pub(crate) models: Vec<String>,
    /// The workflow graph's edges, ascending by (from, to) (none in a version-1 snapshot).
    pub(crate) edges: Vec<(AgentId, AgentId)>,
    /// Agents whose trigger is `all`, ascending.
    pub(crate) all_triggers: Vec<AgentId>,
}

// A page is stored as its non-zero 4 KiB chunks: agents touch a few KiB of most pages, and
// neither hashing, storing nor restoring should pay for the zeros around them.
pub(crate) use wasm::CHUNK_BYTES;
/// Chunks per page: the bits of a page's chunk mask.
const _: () = assert!(PAGE_BYTES / CHUNK_BYTES == u16::BITS as usize, "a chunk mask is a u16");

/// Whether `bytes` are all zero (eight bytes at a time; the compiler vectorises the fold).
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let any = words.by_ref().fold(0u64, |a, w| a | u64::from_ne_bytes(w.try_into().unwrap_or_default()));
    any == 0 && words.remainder().iter().all(|&b| b == 0)
}

/// A non-zero page's content address and which of its 4 KiB chunks are not zero (bit i:
/// chunk i). The address is BLAKE3(mask u16 ‖ the non-zero chunks in order): one value per
/// page content, computed without hashing the zeros. `None` for an all-zero page.
pub(crate) fn page_address(page: &[u8]) -> Option<(u16, [u8; 32])> {
    let mask = page.chunks(CHUNK_BYTES).enumerate().fold(0u16, |m, (i, c)| if is_zero(c) { m } else { m | 1 << i });
    if mask == 0 {
        return None;
    }
    let mut h = blake3::Hasher::new();
    h.update(&mask.to_le_bytes());
    for (i, c) in page.chunks(CHUNK_BYTES).enumerate() {
        if mask & (1 << i) != 0 {
            h.update(c);
        }
    }
    Some((mask, *h.finalize().as_bytes()))
}

/// How a stored page's chunks are encoded: its codec byte in the Pages section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageCodec {
    /// The chunks as they are.
    Stored = 0,
    /// One lz4 block of the chunks.
    Lz4 = 1,
    /// Per chunk, a u64 mask of its non-zero 64-byte lines (bit j: line j), then those lines
    /// (format version 3). Agents leave most of a touched chunk zero; this decodes at copy
    /// speed where lz4 rebuilds the zeros a few bytes at a time (docs/SNAPSHOT.md).
    Lines = 2,
    /// `Lines`, then lz4-compressed (the lines' length as a u32 first: lz4_flex's
    /// `compress_prepend_size`), when that saves space (format version 3). A reader decodes it
    /// once into `Lines` as it reads the Pages section.
    LinesLz4 = 3,
}

/// The unit of the `Lines` codec: a cache line.
pub(crate) const LINE_BYTES: usize = 64;
const _: () = assert!(CHUNK_BYTES / LINE_BYTES == u64::BITS as usize, "a line mask is a u64");

/// How much larger than lz4 the `Lines` encoding of a page may be and still be chosen: it
/// restores several times faster (BENCHMARKS.md, restore vs spawning fresh), and a page it
/// codes well is mostly zeros, so the bytes it costs are few.
const LINES_OVER_LZ4_MAX: usize = 2;

/// The non-zero chunks of `page` (those in `mask`), encoded: as lines when that is at most
/// `LINES_OVER_LZ4_MAX` × the lz4 size and smaller than the chunks (and those lines
/// lz4-compressed when that saves space), else lz4-compressed when that saves space, else
/// stored.
pub(crate) fn pack_page(page: &[u8], mask: u16) -> (PageCodec, Vec<u8>) {
    let mut chunks = Vec::with_capacity(mask.count_ones() as usize * CHUNK_BYTES);
    for (i, c) in page.chunks(CHUNK_BYTES).enumerate() {
        if mask & (1 << i) != 0 {
            chunks.extend_from_slice(c);
        }
    }
    let lines = pack_lines(&chunks);
    let packed = lz4_flex::block::compress(&chunks);
    if lines.len() < chunks.len() && lines.len() <= packed.len().saturating_mul(LINES_OVER_LZ4_MAX) {
        let squeezed = lz4_flex::block::compress_prepend_size(&lines);
        if squeezed.len() < lines.len() {
            (PageCodec::LinesLz4, squeezed)
        } else {
            (PageCodec::Lines, lines)
        }
    } else if packed.len() < chunks.len() {
        (PageCodec::Lz4, packed)
    } else {
        (PageCodec::Stored, chunks)
    }
}

/// `chunks` (whole 4 KiB chunks) in the `Lines` encoding.
fn pack_lines(chunks: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.len() / 4);
    for chunk in chunks.chunks(CHUNK_BYTES) {
        let mask = chunk.chunks(LINE_BYTES).enumerate().fold(0u64, |m, (j, l)| if is_zero(l) { m } else { m | 1 << j });
        out.extend_from_slice(&mask.to_le_bytes());
        for (j, line) in chunk.chunks(LINE_BYTES).enumerate() {
            if mask & (1 << j) != 0 {
                out.extend_from_slice(line);
            }
        }
    }
    out
}

/// Decodes `Lines`-encoded `data` into `chunks`: one 4 KiB destination per stored chunk, in
/// order, each with whether it may hold bytes already (then the lines the chunk does not hold
/// are cleared; a fresh chunk is left untouched there, so it stays uncommitted). `false` when
/// `data` does not hold exactly that many chunks.
fn decode_lines<'d>(data: &[u8], chunks: impl Iterator<Item = (&'d mut [u8], bool)>) -> bool {
    let mut at = 0usize;
    for (chunk, dirty) in chunks {
        let Some(mask) = data.get(at..at + 8) else { return false };
        let mask = u64::from_le_bytes(mask.try_into().unwrap_or_default());
        at += 8;
        for (j, line) in chunk.chunks_mut(LINE_BYTES).enumerate() {
            if mask & (1 << j) != 0 {
                let Some(src) = data.get(at..at + LINE_BYTES) else { return false };
                line.copy_from_slice(src);
                at += LINE_BYTES;
            } else if dirty {
                clear(line);
            }
        }
    }
    at == data.len()
}

/// Whether `data` is the `Lines` encoding of `chunks` non-zero chunks as `pack_lines` writes
/// it: per chunk a line mask that names at least one line (the chunk is not zero), then
/// exactly the lines the masks name. Reads the masks only, so the decoder checks every page
/// before anything is built, including those no agent holds.
fn lines_hold(data: &[u8], chunks: usize) -> bool {
    let mut at = 0usize;
    for _ in 0..chunks {
        let Some(mask) = data.get(at..at + 8) else { return false };
        let mask = u64::from_le_bytes(mask.try_into().unwrap_or_default());
        if mask == 0 {
            return false;
        }
        at += 8 + mask.count_ones() as usize * LINE_BYTES;
    }
    at == data.len()
}

/// One stored page: its content address, which chunks it holds, and their bytes as stored.
pub(crate) struct PageEntry<'a> {
    pub(crate) hash: [u8; 32],
    mask: u16,
    /// Never `LinesLz4`: such a page is decoded into `Lines` (owned `data`) when it is read.
    pub(crate) codec: PageCodec,
    data: std::borrow::Cow<'a, [u8]>,
    /// Where its entry starts in the snapshot (for errors).
    offset: usize,
    /// More than one agent's memory holds it: decoded once, into `decoded`.
    shared: bool,
    decoded: std::sync::OnceLock<Result<Vec<u8>>>,
}

/// The content-addressed pages of a snapshot, borrowed from its bytes.
#[derive(Default)]
pub(crate) struct PageTable<'a> {
    pub(crate) entries: Vec<PageEntry<'a>>,
}

impl PageTable<'_> {
    /// Checks that every page decodes to what its address says (`info` does; a restore
    /// relies on the section checksum instead: a forger who rewrites that can rewrite the
    /// addresses too, so hashing every page again would only cost time).
    pub(crate) fn verify(&self) -> Result<()> {
        let mut buf = vec![0; PAGE_BYTES];
        for (i, e) in self.entries.iter().enumerate() {
            e.decode(i as u32, &mut buf[..e.mask.count_ones() as usize * CHUNK_BYTES], true, true)?;
        }
        Ok(())
    }

    /// Writes page `index` into `dst`, a 64 KiB page of a fresh memory: all zeros but the
    /// chunks in `dirty` (what data segments wrote), which are cleared where the snapshot has
    /// zeros. A page several agents hold is decoded once, any other into a scratch buffer. A
    /// failure names the page's place in the snapshot.
    pub(crate) fn decode_into(&self, index: u32, dst: &mut [u8], dirty: u16) -> Result<()> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; PAGE_BYTES]);
        }
        let e = self.entries.get(index as usize).ok_or_else(|| corrupt(0, format!("page index {index} is not in the page table")))?;
        if e.shared {
            let chunks = e.decoded.get_or_init(|| {
                let mut buf = vec![0; e.mask.count_ones() as usize * CHUNK_BYTES];
                e.decode(index, &mut buf, false, false).map(|()| buf)
            });
            return chunks.as_ref().map(|c| scatter(c, e.mask, dst, dirty)).map_err(Clone::clone);
        }
        // Lines: decoded straight into place, chunk by chunk, touching only the lines it holds
        // (and clearing the rest of a dirty chunk).
        if e.codec == PageCodec::Lines {
            let chunks = dst.chunks_mut(CHUNK_BYTES).enumerate().filter(|(i, _)| e.mask & (1 << i) != 0).map(|(i, c)| (c, dirty & (1 << i) != 0));
            if !decode_lines(&e.data, chunks) {
                return Err(e.undecodable(index));
            }
            for (i, chunk) in dst.chunks_mut(CHUNK_BYTES).enumerate() {
                if dirty & !e.mask & (1 << i) != 0 {
                    clear(chunk);
                }
            }
            return Ok(());
        }
        // Chunks that are one run (an agent's stack and io buffer): decoded straight into
        // place, no scratch copy; the dirty chunks outside it cleared.
        let (first, n) = (e.mask.trailing_zeros() as usize, e.mask.count_ones() as usize);
        if e.mask != 0 && (e.mask >> first).count_ones() as usize == n && (e.mask >> first) == ((1u32 << n) - 1) as u16 {
            e.decode(index, &mut dst[first * CHUNK_BYTES..(first + n) * CHUNK_BYTES], false, true)?;
            for (i, chunk) in dst.chunks_mut(CHUNK_BYTES).enumerate() {
                if dirty & !e.mask & (1 << i) != 0 {
                    clear(chunk);
                }
            }
            return Ok(());
        }
        BUF.with_borrow_mut(|buf| {
            let chunks = &mut buf[..e.mask.count_ones() as usize * CHUNK_BYTES];
            e.decode(index, chunks, false, true)?;
            scatter(chunks, e.mask, dst, dirty);
            Ok(())
        })
    }
}

impl PageEntry<'_> {
    /// Decodes the page's chunks into `chunks` (their length); `dirty`: `chunks` may hold
    /// bytes (a reused buffer), which a `Lines` page clears where it has none. With `verify`,
    /// checks that they hash to its address.
    fn decode(&self, index: u32, chunks: &mut [u8], verify: bool, dirty: bool) -> Result<()> {
        let len = chunks.len();
        let ok = match self.codec {
            PageCodec::Lz4 => lz4_flex::block::decompress_into(&self.data, chunks).ok() == Some(len),
            PageCodec::Stored if self.data.len() == len => {
                chunks.copy_from_slice(&self.data);
                true
            }
            PageCodec::Stored => false,
            PageCodec::Lines => decode_lines(&self.data, chunks.chunks_mut(CHUNK_BYTES).map(|c| (c, dirty))),
            // Decoded into `Lines` when read (`decode`).
            PageCodec::LinesLz4 => false,
        };
        if !ok {
            return Err(self.undecodable(index));
        }
        if !verify {
            return Ok(());
        }
        let mut h = blake3::Hasher::new();
        h.update(&self.mask.to_le_bytes());
        h.update(chunks);
        if h.finalize().as_bytes() != &self.hash {
            return Err(corrupt(self.offset, format!("page {index}'s bytes do not hash to its address")));
        }
        Ok(())
    }

    fn undecodable(&self, index: u32) -> crate::error::LockstepError {
        corrupt(self.offset, format!("page {index} does not decode to its {} bytes", self.mask.count_ones() as usize * CHUNK_BYTES))
    }
}

/// Writes a page's non-zero `chunks` (those in `mask`) into `dst`, and clears the chunks of
/// `dirty` that the page has as zeros.
fn scatter(chunks: &[u8], mask: u16, dst: &mut [u8], dirty: u16) {
    let mut from = chunks.chunks(CHUNK_BYTES);
    for (i, d) in dst.chunks_mut(CHUNK_BYTES).enumerate() {
        if mask & (1 << i) != 0 {
            d.copy_from_slice(from.next().unwrap_or_default());
        } else if dirty & (1 << i) != 0 {
            clear(d);
        }
    }
}

/// Zeros a chunk of a fresh memory that may hold data: read first, so that an untouched one
/// (all zeros already) is not written (committed).
pub(crate) fn clear(chunk: &mut [u8]) {
    if !is_zero(chunk) {
        chunk.fill(0);
    }
}

/// A snapshot, decoded and checked field by field (nothing built yet).
pub(crate) struct Decoded<'a> {
    pub(crate) session: SessionConfig,
    pub(crate) modules: Vec<(Digest, Vec<u8>)>,
    pub(crate) pages: PageTable<'a>,
    pub(crate) page_bytes: usize,
    pub(crate) runtime: RuntimeImage,
    pub(crate) agents: Vec<SlotImage>,
    /// Where the Config, Modules, Runtime and Agents sections start (errors about what
    /// they hold that only a restore can check point there).
    pub(crate) config_offset: usize,
    pub(crate) modules_offset: usize,
    pub(crate) runtime_offset: usize,
    pub(crate) agents_offset: usize,
}

// ----- encoding ----------------------------------------------------------------------------

/// The most bytes of an error or log text kept in a snapshot field (fault details are short;
/// this only bounds a forged one).
const MAX_TEXT_BYTES: usize = 1 << 20;
/// The most bytes of the digest input between two ticks: what `MAX_AGENT_IDS` spawns feed.
const MAX_DIGEST_BYTES: usize = 64 << 20;

/// What the capture hands the encoder: the state, and the unique pages already compressed.
pub(crate) struct Capture {
    pub(crate) session: SessionConfig,
    pub(crate) modules: Vec<(Digest, std::sync::Arc<Vec<u8>>)>,
    /// (content address, chunk mask, codec, stored bytes), in first-use order.
    pub(crate) pages: Vec<([u8; 32], u16, PageCodec, Vec<u8>)>,
    pub(crate) runtime: RuntimeImage,
    pub(crate) agents: Vec<SlotImage>,
}

pub(crate) fn encode(c: &Capture) -> Vec<u8> {
    encode_version(c, FORMAT_VERSION)
}

/// `encode` in format `version` (1: without tables and graph; the tests write one to read it
/// back).
pub(crate) fn encode_version(c: &Capture, version: u16) -> Vec<u8> {
    let page_bytes: usize = c.pages.iter().map(|p| p.3.len() + 39).sum();
    let mut w = format::Writer::new(page_bytes + 4096, version);
    let mut b = Buf::default();
    encode_session(&mut b, &c.session);
    w.section(Section::Config, &b.0, false);

    let mut b = Buf::default();
    b.len(c.modules.len());
    for (hash, bytes) in &c.modules {
        b.bytes(&hash.0);
        b.blob(bytes);
    }
    w.section(Section::Modules, &b.0, true);

    let mut b = Buf(Vec::with_capacity(page_bytes + 4));
    b.len(c.pages.len());
    for (hash, mask, codec, data) in &c.pages {
        b.bytes(hash);
        b.bytes(&mask.to_le_bytes());
        if matches!(codec, PageCodec::Lines | PageCodec::LinesLz4) && version < 3 {
            // Before version 3 there were no lines: the same chunks, lz4-compressed.
            let lines = match codec {
                PageCodec::LinesLz4 => lz4_flex::block::decompress_size_prepended(data).unwrap_or_default(),
                _ => data.clone(),
            };
            let mut chunks = vec![0; mask.count_ones() as usize * CHUNK_BYTES];
            decode_lines(&lines, chunks.chunks_mut(CHUNK_BYTES).map(|c| (c, false)));
            b.u8(PageCodec::Lz4 as u8);
            b.blob(&lz4_flex::block::compress(&chunks));
            continue;
        }
        b.u8(*codec as u8);
        b.blob(data);
    }
    w.section(Section::Pages, &b.0, false);

    let mut b = Buf::default();
    encode_runtime(&mut b, &c.runtime, version);
    w.section(Section::Runtime, &b.0, true);

    let mut b = Buf::default();
    b.len(c.agents.len());
    for a in &c.agents {
        encode_slot(&mut b, a, version);
    }
    w.section(Section::Agents, &b.0, true);
    w.finish()
}

fn encode_session(b: &mut Buf, s: &SessionConfig) {
    b.u64(s.seed);
    b.u64(s.fuel_per_call);
    b.u64(s.memory_limit_bytes);
    b.u32(s.max_agents);
    b.u64(s.deadline_ms);
    b.u64(s.checkpoint_interval_ticks);
    b.u8(s.dev_mode as u8);
    b.u8(s.resource_clamp as u8);
    b.len(s.trusted_keys.len());
    for k in &s.trusted_keys {
        b.bytes(k);
    }
    b.blob(s.policy_json.as_bytes());
}

fn encode_runtime(b: &mut Buf, r: &RuntimeImage, version: u16) {
    b.u64(r.tick);
    b.bytes(&r.last_hash.0);
    b.u64(r.last_fuel);
    b.u64(r.next_request_id);
    b.u8(r.session_started as u8);
    b.len(r.phases.len());
    for p in &r.phases {
        b.i32(*p);
    }
    b.u8(r.phases_stale as u8);
    let i = &r.inputs;
    b.u64(i.bytes);
    b.u64(i.host_seq);
    b.u64(i.answer_seq);
    b.blob(&i.digest);
    b.len(i.messages.len());
    i.messages.iter().for_each(|m| b.message(m));
    b.len(r.host_messages.len());
    r.host_messages.iter().for_each(|m| b.message(m));
    b.len(r.dead_letters.len());
    for d in &r.dead_letters {
        b.u64(d.tick);
        b.u8(d.reason.tag());
        b.message(&d.message);
    }
    for d in r.dropped {
        b.u64(d);
    }
    b.len(r.models.len());
    for m in &r.models {
        b.blob(m.as_bytes());
    }
    if version < 2 {
        return;
    }
    // Version 2: the workflow graph.
    b.len(r.edges.len());
    for &(from, to) in &r.edges {
        b.u64(from);
        b.u64(to);
    }
    b.len(r.all_triggers.len());
    for &a in &r.all_triggers {
        b.u64(a);
    }
}

fn encode_slot(b: &mut Buf, a: &SlotImage, version: u16) {
    b.u64(a.id);
    b.i32(a.phase);
    b.u32(a.module);
    match &a.state {
        AgentState::Running => b.u8(0),
        AgentState::Faulted(f) => {
            b.u8(1);
            b.u8(f.kind.tag());
            b.u8(f.call as u8);
            b.u64(f.tick);
            b.blob(f.detail.as_bytes());
        }
        AgentState::Stopped => b.u8(2),
        AgentState::Killed => b.u8(3),
    }
    for v in [a.inbox_bytes, a.steps, a.messages_received, a.messages_sent, a.last_memory_bytes, a.last_fuel_consumed] {
        b.u64(v);
    }
    b.len(a.inbox.len());
    a.inbox.iter().for_each(|m| b.message(m));
    let Some(i) = &a.instance else {
        b.u8(0);
        return;
    };
    b.u8(1);
    b.u32(i.io_ptr);
    for v in [i.fuel_consumed, i.fuel_left_this_tick, i.next_seq] {
        b.u64(v);
    }
    b.u128(i.rng_word_pos);
    b.u64(i.rng_stream);
    b.u8(i.memory_limit_hit as u8);
    b.opt_str(i.panic_message.as_deref());
    b.opt_str(i.violation.as_deref());
    b.u64(i.outbox_bytes);
    b.len(i.outbox.len());
    i.outbox.iter().for_each(|m| b.message(m));
    b.len(i.logs.len());
    for l in &i.logs {
        b.u32(l.level);
        b.blob(l.text.as_bytes());
    }
    b.len(i.infer.len());
    for r in &i.infer {
        b.u32(r.model);
        b.u32(r.tag);
        b.blob(&r.input);
    }
    b.len(i.globals.len());
    for (index, v) in &i.globals {
        b.u32(*index);
        match *v {
            GlobalValue::I32(x) => {
                b.u8(0);
                b.u32(x);
            }
            GlobalValue::I64(x) => {
                b.u8(1);
                b.u64(x);
            }
            GlobalValue::F32(x) => {
                b.u8(2);
                b.u32(x);
            }
            GlobalValue::F64(x) => {
                b.u8(3);
                b.u64(x);
            }
            GlobalValue::V128(x) => {
                b.u8(4);
                b.u128(x);
            }
        }
    }
    b.len(i.pages.len());
    for p in &i.pages {
        b.u32(*p);
    }
    if version < 2 {
        return;
    }
    b.len(i.tables.len());
    for t in &i.tables {
        b.len(t.len());
        for e in t {
            b.u32(*e);
        }
    }
    if version >= 3 {
        b.u64(i.fuel_per_tick);
    }
}

// ----- decoding ----------------------------------------------------------------------------

/// Decodes and checks every section. Bounds are structural here (lengths, counts, tags, the
/// limits of limits.rs); what depends on a module or the runtime (memory sizes, globals) is
/// checked while the runtime is rebuilt.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>> {
    let sections = format::split(bytes)?;
    // `split` checked it is one this runtime reads.
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    let config_offset = sections[0].frame();
    let mut r = sections[0].reader();
    let session = decode_session(&mut r)?;
    r.finish()?;

    let mut r = sections[1].reader();
    let n = r.count("module count", 36, MAX_MODULES)?;
    let mut modules = Vec::with_capacity(n);
    for _ in 0..n {
        let hash = Digest(r.digest()?);
        let code = r.blob("module length", crate::abi::MAX_MODULE_BYTES)?;
        if blake3::hash(code).as_bytes() != &hash.0 {
            return Err(r.error(format!("module {hash}'s bytes do not hash to it")));
        }
        if modules.last().is_some_and(|(h, _): &(Digest, Vec<u8>)| *h >= hash) {
            return Err(r.error("modules are not in ascending hash order, each once"));
        }
        modules.push((hash, code.to_vec()));
    }
    r.finish()?;

    let pages_section = &sections[2];
    let mut r = pages_section.borrowed_reader().ok_or_else(|| corrupt(0, "the Pages section must be stored as is (its pages are compressed one by one)"))?;
    let n = r.count("page count", 39, ZERO_PAGE as usize)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let offset = r.offset();
        let hash = r.digest()?;
        let mask = u16::from_le_bytes([r.u8()?, r.u8()?]);
        if mask == 0 {
            return Err(r.error("a stored page with no non-zero chunk (zero pages are not stored)"));
        }
        let codec = match r.u8()? {
            0 => PageCodec::Stored,
            1 => PageCodec::Lz4,
            2 if version >= 3 => PageCodec::Lines,
            3 if version >= 3 => PageCodec::LinesLz4,
            other => return Err(r.error(format!("page codec {other} is none of format version {version}'s"))),
        };
        let stored = r.blob("page length", PAGE_BYTES)?;
        let chunks = mask.count_ones() as usize;
        let undecodable = |why: &str| {
            let bytes = chunks * CHUNK_BYTES;
            corrupt(offset, format!("Pages section: page {} does not decode to its {bytes} bytes ({why})", entries.len()))
        };
        // Lines under lz4: decoded here, once (the restore then reads them as lines), at most
        // the size the page's lines can have, announced before anything is allocated.
        let (codec, data) = if codec == PageCodec::LinesLz4 {
            let most = chunks * (8 + CHUNK_BYTES);
            let announced = stored.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if announced.is_none_or(|n| n > most) {
                return Err(undecodable("its lz4 block announces more bytes than its lines can have"));
            }
            let lines = lz4_flex::block::decompress_size_prepended(stored).map_err(|_| undecodable("its lz4 block does not decode"))?;
            (PageCodec::Lines, std::borrow::Cow::Owned(lines))
        } else {
            (codec, std::borrow::Cow::Borrowed(stored))
        };
        if codec == PageCodec::Stored && data.len() != chunks * CHUNK_BYTES {
            return Err(r.error(format!("an uncompressed page of {} bytes for {} chunks", data.len(), mask.count_ones())));
        }
        if codec == PageCodec::Lines && !lines_hold(&data, chunks) {
            return Err(undecodable("its line masks name no line of a chunk, or other lines than it holds"));
        }
        entries.push(PageEntry { hash, mask, codec, data, offset, shared: false, decoded: std::sync::OnceLock::new() });
    }
    r.finish()?;
    let pages = PageTable { entries };

    let mut r = sections[3].reader();
    let runtime = decode_runtime(&mut r, format::version(bytes))?;
    r.finish()?;

    let mut r = sections[4].reader();
    let n = r.count("agent count", 80, MAX_AGENT_IDS)?;
    let mut agents = Vec::with_capacity(n);
    let mut pages = pages;
    let mut used = vec![false; pages.entries.len()];
    for i in 0..n {
        let a = decode_slot(&mut r, modules.len(), pages.entries.len(), version)?;
        if a.id != i as u64 + 1 {
            return Err(r.error(format!("agent {} where agent {} belongs (ids are 1, 2, 3...)", a.id, i + 1)));
        }
        for &p in a.instance.iter().flat_map(|i| &i.pages).filter(|&&p| p != ZERO_PAGE) {
            // Checked against the table's length by `decode_slot`.
            let seen = std::mem::replace(&mut used[p as usize], true);
            pages.entries[p as usize].shared |= seen;
        }
        agents.push(a);
    }
    r.finish()?;
    Ok(Decoded {
        session,
        modules,
        pages,
        page_bytes: pages_section.stored_bytes,
        runtime,
        agents,
        config_offset,
        modules_offset: sections[1].frame(),
        runtime_offset: sections[3].frame(),
        agents_offset: sections[4].frame(),
    })
}

fn decode_session(r: &mut Reader<'_>) -> Result<SessionConfig> {
    Ok(SessionConfig {
        seed: r.u64()?,
        fuel_per_call: r.u64()?,
        memory_limit_bytes: r.u64()?,
        max_agents: r.u32()?,
        deadline_ms: r.u64()?,
        checkpoint_interval_ticks: r.u64()?,
        dev_mode: r.bool("devMode")?,
        resource_clamp: r.bool("resource policy")?,
        trusted_keys: {
            let n = r.count("trusted key count", 32, 1 << 16)?;
            (0..n).map(|_| r.digest()).collect::<Result<_>>()?
        },
        policy_json: r.string("policy", MAX_TEXT_BYTES)?,
    })
}

fn decode_runtime(r: &mut Reader<'_>, version: u16) -> Result<RuntimeImage> {
    let tick = r.u64()?;
    let last_hash = Digest(r.digest()?);
    let last_fuel = r.u64()?;
    let next_request_id = r.u64()?;
    let session_started = r.bool("session started")?;
    let n = r.count("phase count", 4, MAX_PHASES)?;
    let phases: Vec<i32> = (0..n).map(|_| r.i32()).collect::<Result<_>>()?;
    if phases.windows(2).any(|w| w[0] <= w[1]) {
        return Err(r.error("phases are not in descending order, each once"));
    }
    let phases_stale = r.bool("phases stale")?;
    let bytes = r.u64()?;
    let host_seq = r.u64()?;
    let answer_seq = r.u64()?;
    let digest = r.blob("input digest length", MAX_DIGEST_BYTES)?.to_vec();
    // Inference answers share the queue (bounded per agent by the ABI, not by this limit).
    let messages = r.messages("pending message count", MAX_PENDING_MESSAGES + MAX_AGENT_IDS)?;
    let host_messages = r.messages("host message count", MAX_HOST_MESSAGES + crate::limits::MAX_OUTBOUND_BACKLOG_RECORDS)?;
    let n = r.count("dead letter count", 9 + format::MESSAGE_MIN_BYTES, MAX_DEAD_LETTERS)?;
    let mut dead_letters = Vec::with_capacity(n);
    for _ in 0..n {
        let tick = r.u64()?;
        let reason = dead_letter_reason(r.u8()?).ok_or_else(|| r.error("unknown dead-letter reason"))?;
        dead_letters.push(DeadLetter { tick, reason, message: r.message()? });
    }
    let dropped = [r.u64()?, r.u64()?, r.u64()?, r.u64()?];
    let n = r.count("model count", 4, 1 << 16)?;
    let models = (0..n).map(|_| r.string("model id", 256)).collect::<Result<_>>()?;
    let (mut edges, mut all_triggers) = (Vec::new(), Vec::new());
    if version >= 2 {
        let n = r.count("edge count", 16, crate::limits::MAX_EDGES)?;
        edges.reserve(n);
        for _ in 0..n {
            let edge = (r.u64()?, r.u64()?);
            if edges.last().is_some_and(|last| *last >= edge) {
                return Err(r.error("edges are not in ascending order, each once"));
            }
            edges.push(edge);
        }
        let n = r.count("trigger count", 8, MAX_AGENT_IDS)?;
        all_triggers.reserve(n);
        for _ in 0..n {
            let id = r.u64()?;
            if all_triggers.last().is_some_and(|&last| last >= id) {
                return Err(r.error("agents with trigger all are not in ascending order, each once"));
            }
            all_triggers.push(id);
        }
    }
    Ok(RuntimeImage {
        tick,
        last_hash,
        last_fuel,
        next_request_id,
        session_started,
        phases,
        phases_stale,
        inputs: InputsImage { messages, bytes, host_seq, answer_seq, digest },
        host_messages,
        dead_letters,
        dropped,
        models,
        edges,
        all_triggers,
    })
}

fn dead_letter_reason(tag: u8) -> Option<DeadLetterReason> {
    use DeadLetterReason::*;
    [RecipientFaulted, RecipientStopped, UnknownRecipient, RecipientFaultedDuringDelivery, RecipientInboxFull].into_iter().find(|r| r.tag() == tag)
}

fn fault_kind(tag: u8) -> Option<FaultKind> {
    use FaultKind::*;
    [Trap, Panic, FuelExhausted, Deadline, MemoryLimit, HostCallViolation, AgentError].into_iter().find(|k| k.tag() == tag)
}

fn abi_call(tag: u8) -> Option<AbiCall> {
    [AbiCall::Init, AbiCall::Step, AbiCall::Receive, AbiCall::Shutdown].into_iter().find(|c| *c as u8 == tag)
}

fn decode_slot(r: &mut Reader<'_>, modules: usize, pages: usize, version: u16) -> Result<SlotImage> {
    let id = r.u64()?;
    let phase = r.i32()?;
    let module = r.u32()?;
    if module as usize >= modules {
        return Err(r.error(format!("agent {id} runs module {module}, but the snapshot holds {modules}")));
    }
    let state = match r.u8()? {
        0 => AgentState::Running,
        1 => {
            let kind = fault_kind(r.u8()?).ok_or_else(|| r.error("unknown fault kind"))?;
            let call = abi_call(r.u8()?).ok_or_else(|| r.error("unknown ABI call"))?;
            let tick = r.u64()?;
            let detail = r.string("fault detail", MAX_TEXT_BYTES)?;
            AgentState::Faulted(Fault { kind, call, tick, detail })
        }
        2 => AgentState::Stopped,
        3 => AgentState::Killed,
        other => return Err(r.error(format!("agent {id} has state {other}, not 0-3"))),
    };
    let [inbox_bytes, steps, messages_received, messages_sent, last_memory_bytes, last_fuel_consumed] =
        [r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?];
    let inbox = r.messages("inbox length", crate::abi::MAX_INBOX_MESSAGES)?;
    // A running agent's count is its inbox's bytes (routing checks the limit with it); a
    // stopped one keeps what it counted when it stopped (`shutdown` leaves it), unused.
    let counted = inbox.iter().map(|m| m.payload.len() as u64).sum::<u64>();
    if (state.is_running() && counted != inbox_bytes) || counted > crate::abi::MAX_INBOX_BYTES as u64 {
        return Err(
            r.error(format!("agent {id}'s inbox counts {inbox_bytes} bytes, its messages hold {counted} (the limit is {})", crate::abi::MAX_INBOX_BYTES))
        );
    }
    let instance = if r.bool("has instance")? { Some(decode_instance(r, pages, version)?) } else { None };
    if state.is_running() != instance.is_some() {
        return Err(r.error(format!("agent {id} is {} {} an instance", state.name(), if instance.is_some() { "with" } else { "without" })));
    }
    Ok(SlotImage { id, phase, module, state, inbox, inbox_bytes, steps, messages_received, messages_sent, last_memory_bytes, last_fuel_consumed, instance })
}

fn decode_instance(r: &mut Reader<'_>, pages: usize, version: u16) -> Result<InstanceImage> {
    use crate::abi;
    let io_ptr = r.u32()?;
    let [fuel_consumed, fuel_left_this_tick, next_seq] = [r.u64()?, r.u64()?, r.u64()?];
    let rng_word_pos = r.u128()?;
    let rng_stream = r.u64()?;
    let memory_limit_hit = r.bool("memory limit hit")?;
    let panic_message = r.opt_string("panic message", abi::MAX_PANIC_MESSAGE_BYTES * 4)?;
    let violation = r.opt_string("violation", MAX_TEXT_BYTES)?;
    let outbox_bytes = r.u64()?;
    let outbox = r.messages("outbox length", abi::MAX_OUTBOX_PER_TICK)?;
    // The outbox's byte count is its messages' (it bounds what the agent may still send).
    let counted = outbox.iter().map(|m| m.payload.len() as u64).sum::<u64>();
    if counted != outbox_bytes || counted > abi::MAX_OUTBOX_BYTES_PER_TICK as u64 {
        return Err(r.error(format!("an outbox counts {outbox_bytes} bytes, its messages hold {counted} (the limit is {})", abi::MAX_OUTBOX_BYTES_PER_TICK)));
    }
    let n = r.count("log line count", 8, abi::MAX_LOG_LINES_PER_TICK)?;
    let mut logs = Vec::with_capacity(n);
    for _ in 0..n {
        let level = r.u32()?;
        logs.push(LogLine { level, text: r.string("log line", abi::MAX_LOG_LINE_BYTES * 4)? });
    }
    let n = r.count("inference request count", 12, abi::MAX_INFER_REQUESTS_PER_TICK)?;
    let mut infer = Vec::with_capacity(n);
    for _ in 0..n {
        let (model, tag) = (r.u32()?, r.u32()?);
        infer.push(InferRequest { model, tag, input: r.blob("inference input", abi::MAX_PAYLOAD_BYTES)?.to_vec() });
    }
    let n = r.count("global count", 9, abi::MAX_GLOBALS)?;
    let mut globals = Vec::with_capacity(n);
    for _ in 0..n {
        let index = r.u32()?;
        let v = match r.u8()? {
            0 => GlobalValue::I32(r.u32()?),
            1 => GlobalValue::I64(r.u64()?),
            2 => GlobalValue::F32(r.u32()?),
            3 => GlobalValue::F64(r.u64()?),
            4 => GlobalValue::V128(r.u128()?),
            other => return Err(r.error(format!("global {index} has value type {other}, not 0-4"))),
        };
        globals.push((index, v));
    }
    // 65,536 pages: a wasm32 memory's 4 GiB (the memory cap is checked at restore).
    let n = r.count("memory page count", 4, 65_536)?;
    let mut memory = Vec::with_capacity(n);
    for _ in 0..n {
        let p = r.u32()?;
        if p != ZERO_PAGE && p as usize >= pages {
            return Err(r.error(format!("page index {p}, but the page table holds {pages}")));
        }
        memory.push(p);
    }
    let mut tables = Vec::new();
    if version >= 2 {
        let n = r.count("table count", 4, abi::MAX_TABLES)?;
        for _ in 0..n {
            let len = r.count("table length", 4, abi::MAX_TABLE_ELEMENTS)?;
            let mut t = Vec::with_capacity(len);
            for _ in 0..len {
                t.push(r.u32()?);
            }
            tables.push(t);
        }
    }
    let fuel_per_tick = if version >= 3 { r.u64()? } else { 0 };
    Ok(InstanceImage {
        io_ptr,
        fuel_consumed,
        fuel_left_this_tick,
        next_seq,
        rng_word_pos,
        rng_stream,
        memory_limit_hit,
        panic_message,
        violation,
        outbox,
        outbox_bytes,
        logs,
        infer,
        globals,
        pages: memory,
        tables,
        fuel_per_tick,
    })
}

/// What differs between the snapshot and `expect`, in words (empty: nothing).
pub(crate) fn differences(d: &Decoded<'_>, expect: &ExpectedSession) -> Vec<String> {
    let s = &d.session;
    let mut out = Vec::new();
    let check = |out: &mut Vec<String>, what: &str, have: String, want: Option<String>| {
        if let Some(want) = want.filter(|w| *w != have) {
            out.push(format!("{what}: the snapshot has {have}, expected {want}"));
        }
    };
    check(&mut out, "seed", s.seed.to_string(), expect.seed.map(|v| v.to_string()));
    check(&mut out, "fuelPerCall", s.fuel_per_call.to_string(), expect.fuel_per_call.map(|v| v.to_string()));
    check(&mut out, "memoryLimitBytes", s.memory_limit_bytes.to_string(), expect.memory_limit_bytes.map(|v| v.to_string()));
    check(&mut out, "maxAgents", s.max_agents.to_string(), expect.max_agents.map(|v| v.to_string()));
    check(&mut out, "deadlineMs", s.deadline_ms.to_string(), expect.deadline_ms.map(|v| v.to_string()));
    check(&mut out, "checkpointIntervalTicks", s.checkpoint_interval_ticks.to_string(), expect.checkpoint_interval_ticks.map(|v| v.to_string()));
    let policy: Option<Capabilities> = serde_json::from_str(&s.policy_json).ok();
    if let Some(want) = &expect.policy {
        if policy.as_ref() != Some(want) {
            out.push(format!("policy: the snapshot has {}, expected {}", s.policy_json, serde_json::to_string(want).unwrap_or_default()));
        }
    }
    let clamp = if s.resource_clamp { ResourcePolicy::Clamp } else { ResourcePolicy::Refuse };
    check(&mut out, "resourcePolicy", format!("{clamp:?}"), expect.resource_policy.map(|v| format!("{v:?}")));
    if let Some(want) = &expect.modules {
        let have: std::collections::BTreeSet<Digest> = d.modules.iter().map(|(h, _)| *h).collect();
        let want: std::collections::BTreeSet<Digest> = want.iter().copied().collect();
        if have != want {
            let missing: Vec<String> = want.difference(&have).map(|h| h.to_hex()).collect();
            let extra: Vec<String> = have.difference(&want).map(|h| h.to_hex()).collect();
            out.push(format!("modules: the snapshot lacks [{}] and holds others [{}]", missing.join(", "), extra.join(", ")));
        }
    }
    out
}
