//! The hashes of docs/REPLAY.md ("The hashes"), defined here and nowhere else.
//!
//! Three layers, each fed in a fixed byte layout:
//! - the **input digest** (BLAKE3) folds what entered between two ticks: spawns, kills,
//!   shutdowns, faults in `agent_init`/`agent_shutdown` and what those calls sent;
//! - the **agent digest** (XXH3-128) of one agent's tick: what it was handed from outside,
//!   how many messages it received, what it sent and asked, its fault;
//! - the **tick hash** (BLAKE3) chains the previous tick hash, the tick number, the input
//!   digest, every active agent's digest and every dead letter, in canonical order.
//!
//! Every byte that separates one kind of input from another is a named domain tag below.
//! The values are part of the log format: changing a tag, a field or its order changes every
//! hash, so it needs a log version bump (docs/REPLAY.md); `tests/golden_hashes.rs` pins them.

use crate::bus::{AgentId, DeadLetterReason, Message, MessageRef};
use crate::error::Digest;
use crate::fault::{Fault, FaultKind};
use crate::host::InferRequest;
use crate::mailbox::Mailbox;

/// Domain tags of the input digest and the tick hash.
mod tag {
    /// An agent was spawned: then its id, priority and module hash.
    pub const SPAWN: &[u8] = b"spawn";
    /// An agent was killed: then its id.
    pub const KILL: &[u8] = b"kill";
    /// An agent was shut down: then its id.
    pub const SHUTDOWN: &[u8] = b"shutdown";
    /// `agent_init` or `agent_shutdown` faulted: then the fault kind's tag byte.
    pub const FAULT: u8 = 0xFA;
    /// A message was dead-lettered: then the reason's tag byte and the message digest.
    pub const DEAD_LETTER: u8 = 0xDE;
    /// An edge of the workflow graph was added: then from and to.
    pub const CONNECT: &[u8] = b"connect";
    /// An edge was removed: then from and to.
    pub const DISCONNECT: &[u8] = b"disconnect";
    /// An agent's trigger was set: then its id and the trigger's tag byte.
    pub const TRIGGER: &[u8] = b"trigger";
    /// An agent's time slice was set: then its id and fuel per tick.
    pub const SLICE: &[u8] = b"slice";
    /// An agent with trigger `all` waited at its barrier: then its id and inbox length.
    pub const WAITING: u8 = 0xBA;
}

/// The per-agent, per-tick digest of messages: XXH3-128, about ten times cheaper than BLAKE3
/// on 100-byte messages (BLAKE3 was 22% of a message-heavy tick). It detects divergence, which
/// is its job; it is not a defence against a forger (signed modules and logs are). The tick
/// hash that chains these digests stays BLAKE3.
///
/// The implementation is twox-hash's, with the default secret and seed and its state inline (no
/// allocation): it picks its AVX2 kernel at run time where the CPU has one, where xxhash-rust's
/// is fixed at compile time (SSE2 in a build for any x86-64). Same function, same digests
/// (`golden_hashes` pins them).
#[derive(Clone)]
struct Xxh3(twox_hash::xxhash3_128::RawHasher<&'static [u8; twox_hash::xxhash3_128::DEFAULT_SECRET_LENGTH]>);

impl Xxh3 {
    #[inline]
    fn new() -> Self {
        Self(twox_hash::xxhash3_128::RawHasher::new(twox_hash::xxhash3_128::SecretBuffer::default()))
    }

    #[inline]
    fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    #[inline]
    fn digest128(&self) -> u128 {
        self.0.finish_128()
    }
}

impl Default for Xxh3 {
    fn default() -> Self {
        Self::new()
    }
}

/// Feeds one message, its ABI header (docs/ABI.md) and payload, into an XXH3 digest.
#[inline]
fn feed_message(h: &mut Xxh3, m: MessageRef<'_>) {
    let mut header = [0u8; crate::abi::MESSAGE_HEADER_BYTES];
    m.write_header(&mut header);
    h.update(&header);
    h.update(m.payload);
}

/// Bytes `feed_messages` gathers before each XXH3 update.
const STAGE_BYTES: usize = 1024;

/// `feed_message` of each of `messages`, in order, with the same bytes in the same order (so
/// the same digest), gathered into runs of up to `STAGE_BYTES`: a streaming update has a fixed
/// cost whatever its length, and two a message were 78 of a routed message's 1,090
/// instructions (cachegrind, `tick_loop 2000 1 N 16`; 1,017 gathered).
fn feed_messages<'a>(h: &mut Xxh3, messages: impl Iterator<Item = MessageRef<'a>>) {
    let mut messages = messages.peekable();
    if messages.peek().is_none() {
        return; // (an agent that sent nothing: no stage to zero)
    }
    let mut stage = [0u8; STAGE_BYTES];
    let mut used = 0;
    for m in messages {
        let end = used + crate::abi::MESSAGE_HEADER_BYTES + m.payload.len();
        if end > STAGE_BYTES {
            h.update(&stage[..used]);
            used = 0;
            if crate::abi::MESSAGE_HEADER_BYTES + m.payload.len() > STAGE_BYTES {
                feed_message(h, m);
                continue;
            }
        }
        let (header, payload) = stage[used..].split_at_mut(crate::abi::MESSAGE_HEADER_BYTES);
        if let Ok(header) = <&mut [u8; crate::abi::MESSAGE_HEADER_BYTES]>::try_from(header) {
            m.write_header(header);
        }
        payload[..m.payload.len()].copy_from_slice(m.payload);
        used += crate::abi::MESSAGE_HEADER_BYTES + m.payload.len();
    }
    if used > 0 {
        h.update(&stage[..used]);
    }
}

/// XXH3-128 of one message (header and payload), little-endian.
#[inline]
fn message_digest(m: MessageRef<'_>) -> [u8; 16] {
    let mut h = Xxh3::new();
    feed_message(&mut h, m);
    h.digest128().to_le_bytes()
}

/// BLAKE3 of no bytes: the input digest of a tick nothing entered before.
const EMPTY_INPUT_DIGEST: [u8; 32] = [
    0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc, 0xc9, 0x49, 0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a,
    0x93, 0xca, 0xe4, 0x1f, 0x32, 0x62,
];

/// What entered the runtime since the last tick, folded into the next tick hash. The bytes
/// are kept until the tick starts and hashed then (the same BLAKE3 as feeding a hasher as they
/// come): a snapshot between ticks stores them (`bytes`), and a restore carries on from them.
pub(crate) struct InputDigest {
    fed: Vec<u8>,
}

impl InputDigest {
    #[inline]
    pub(crate) fn new() -> Self {
        Self { fed: Vec::new() }
    }

    /// The digest's input since the last tick, as a snapshot stores it.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.fed
    }

    /// A digest that was fed `bytes` since the last tick (a restored snapshot's).
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { fed: bytes }
    }

    /// SPAWN ‖ id u64 ‖ priority i32 ‖ module hash [32].
    #[inline]
    pub(crate) fn spawn(&mut self, id: AgentId, priority: i32, module: &Digest) {
        self.fed.extend_from_slice(tag::SPAWN);
        self.fed.extend_from_slice(&id.to_le_bytes());
        self.fed.extend_from_slice(&priority.to_le_bytes());
        self.fed.extend_from_slice(&module.0);
    }

    /// KILL ‖ id u64.
    #[inline]
    pub(crate) fn kill(&mut self, id: AgentId) {
        self.fed.extend_from_slice(tag::KILL);
        self.fed.extend_from_slice(&id.to_le_bytes());
    }

    /// SHUTDOWN ‖ id u64.
    #[inline]
    pub(crate) fn shutdown(&mut self, id: AgentId) {
        self.fed.extend_from_slice(tag::SHUTDOWN);
        self.fed.extend_from_slice(&id.to_le_bytes());
    }

    /// CONNECT ‖ from u64 ‖ to u64 (`connect`), or DISCONNECT ‖ from u64 ‖ to u64.
    #[inline]
    pub(crate) fn edge(&mut self, added: bool, from: AgentId, to: AgentId) {
        self.fed.extend_from_slice(if added { tag::CONNECT } else { tag::DISCONNECT });
        self.fed.extend_from_slice(&from.to_le_bytes());
        self.fed.extend_from_slice(&to.to_le_bytes());
    }

    /// TRIGGER ‖ id u64 ‖ trigger tag u8 (0 any, 1 all).
    #[inline]
    pub(crate) fn trigger(&mut self, id: AgentId, trigger: crate::graph::Trigger) {
        self.fed.extend_from_slice(tag::TRIGGER);
        self.fed.extend_from_slice(&id.to_le_bytes());
        self.fed.push(trigger.tag());
    }

    /// SLICE ‖ id u64 ‖ fuel per tick u64.
    #[inline]
    pub(crate) fn slice(&mut self, id: AgentId, fuel_per_tick: u64) {
        self.fed.extend_from_slice(tag::SLICE);
        self.fed.extend_from_slice(&id.to_le_bytes());
        self.fed.extend_from_slice(&fuel_per_tick.to_le_bytes());
    }

    /// FAULT ‖ kind tag u8: `agent_init` or `agent_shutdown` faulted.
    #[inline]
    pub(crate) fn fault(&mut self, kind: &FaultKind) {
        self.fed.extend_from_slice(&[tag::FAULT, kind.tag()]);
    }

    /// XXH3-128 over the messages (each header and payload) that `agent_init` or
    /// `agent_shutdown` sent: they are routed at the next tick. Fed even when there are none.
    #[inline]
    pub(crate) fn queued_messages(&mut self, sent: &Mailbox) {
        let mut h = Xxh3::new();
        for m in sent.iter() {
            feed_message(&mut h, m);
        }
        self.fed.extend_from_slice(&h.digest128().to_le_bytes());
    }

    /// The digest so far; starts a new one for the next tick.
    #[inline]
    fn take(&mut self) -> [u8; 32] {
        if self.fed.is_empty() {
            // Most ticks: nothing entered (a BLAKE3 hasher is ~2 KB to set up for nothing).
            return EMPTY_INPUT_DIGEST;
        }
        let digest = *blake3::hash(&self.fed).as_bytes();
        // Keep a small buffer for the next tick; give back what a burst of spawns took.
        if self.fed.capacity() > 1 << 20 {
            self.fed = Vec::new();
        } else {
            self.fed.clear();
        }
        digest
    }
}

/// One agent's digest of one tick, built while it runs (phase 1 of the scheduler).
#[derive(Default)]
pub(crate) struct AgentTickDigest {
    /// Host and inference messages it was handed, in delivery order; `None` when none.
    external: Option<Xxh3>,
}

impl AgentTickDigest {
    /// A message from outside the agents (the host or inference): bound to its recipient's
    /// digest, so a replay that diverges on external input names the agent that received it.
    /// Agent-to-agent messages are already in their sender's digest.
    #[cfg(test)]
    pub(crate) fn external_message(&mut self, m: MessageRef<'_>) {
        feed_message(self.external.get_or_insert_with(Xxh3::new), m);
    }

    /// `external_message` of each of `messages` from outside the agents, in order, fed
    /// gathered (`feed_messages`: the same bytes, so the same digest; one by one, the two
    /// streaming updates a message were ~5% of a tick delivering ring records, perf).
    #[inline]
    pub(crate) fn external_messages<'a>(&mut self, messages: impl Iterator<Item = MessageRef<'a>>) {
        let mut external = messages.filter(|m| m.from == crate::abi::HOST_ID || m.from == crate::abi::INFERENCE_ID).peekable();
        // Only an agent handed something from outside has this digest part at all.
        if external.peek().is_some() {
            feed_messages(self.external.get_or_insert_with(Xxh3::new), external);
        }
    }

    /// Messages from the host already laid out as `external_messages` feeds them: each one's
    /// ABI header then its payload, one after another (held ring records, hashed from the io
    /// buffer they were copied into: `sandbox::AgentInstance::deliver_held`). XXH3 streams,
    /// so the digest is the same however the bytes are split between calls.
    #[inline]
    pub(crate) fn external_bytes(&mut self, header_and_payloads: &[u8]) {
        self.external.get_or_insert_with(Xxh3::new).update(header_and_payloads);
    }

    /// The digest: [external messages] ‖ id u64 ‖ delivered u32 ‖ sent count u64 ‖ each sent
    /// message ‖ each inference request (model u32, tag u32, input length u64, input) ‖
    /// [fault kind tag u8 ‖ ABI call u8]. `None` when the agent was handed, received, sent,
    /// asked and faulted nothing: then it is not in the tick hash at all.
    #[inline]
    pub(crate) fn finish(self, id: AgentId, delivered: u32, sent: &Mailbox, infer: &[InferRequest], fault: Option<&Fault>) -> Option<[u8; 16]> {
        if self.external.is_none() && delivered == 0 && sent.is_empty() && infer.is_empty() && fault.is_none() {
            return None;
        }
        let mut h = self.external.unwrap_or_default();
        Self::feed(&mut h, id, delivered, sent, infer, fault);
        Some(h.digest128().to_le_bytes())
    }

    /// `finish` for a time-sliced agent: the same, then, when a call of it is suspended at
    /// the end of the tick, SUSPENDED ‖ ABI call u8 ‖ first suspended this tick u8, and when a
    /// suspended call ended this tick, RESUMED ‖ ABI call u8 ‖ ticks suspended u64. Where a
    /// call yields is decided by fuel, so these are the same in every run: a replay that
    /// suspends elsewhere diverges here. Always present while it is suspended.
    pub(crate) fn finish_sliced(
        self,
        id: AgentId,
        delivered: u32,
        sent: &Mailbox,
        infer: &[InferRequest],
        fault: Option<&Fault>,
        (suspended, resumed): SliceMarks,
    ) -> Option<[u8; 16]> {
        if suspended.is_none() && resumed.is_none() {
            return self.finish(id, delivered, sent, infer, fault);
        }
        let mut h = self.external.unwrap_or_default();
        Self::feed(&mut h, id, delivered, sent, infer, fault);
        if let Some((call, first)) = suspended {
            h.update(&[SUSPENDED, call as u8, first as u8]);
        }
        if let Some((call, ticks)) = resumed {
            h.update(&[RESUMED, call as u8]);
            h.update(&ticks.to_le_bytes());
        }
        Some(h.digest128().to_le_bytes())
    }

    fn feed(h: &mut Xxh3, id: AgentId, delivered: u32, sent: &Mailbox, infer: &[InferRequest], fault: Option<&Fault>) {
        h.update(&id.to_le_bytes());
        h.update(&delivered.to_le_bytes());
        h.update(&(sent.len() as u64).to_le_bytes());
        feed_messages(h, sent.iter());
        for r in infer {
            h.update(&r.model.to_le_bytes());
            h.update(&r.tag.to_le_bytes());
            h.update(&(r.input.len() as u64).to_le_bytes());
            h.update(&r.input);
        }
        if let Some(f) = fault {
            h.update(&[f.kind.tag(), f.call as u8]);
        }
    }
}

/// What a time-sliced agent's digest adds (`finish_sliced`): the call suspended at the end of
/// the tick (and whether first this tick), the suspended call that ended (and its ticks).
pub(crate) type SliceMarks = (Option<(crate::fault::AbiCall, bool)>, Option<(crate::fault::AbiCall, u64)>);

/// Markers of a time-sliced agent's digest (`finish_sliced`): no fault kind tag uses them.
const SUSPENDED: u8 = 0xF1;
const RESUMED: u8 = 0xF2;

/// The tick hash: previous tick hash [32] ‖ tick u64 ‖ input digest [32], then in canonical
/// order each active agent (id u64 ‖ agent digest [16]), each dead letter (DEAD_LETTER ‖
/// reason tag u8 ‖ message digest [16]) and each agent waiting at its barrier (WAITING ‖ id
/// u64 ‖ inbox length u64).
///
/// One lives as long as its runtime and is reset at each tick's start: a BLAKE3 hasher is
/// ~2 KB, and creating and moving one per tick cost two memcpys of it (measured, callgrind).
pub(crate) struct TickHasher {
    hasher: blake3::Hasher,
}

impl TickHasher {
    pub(crate) fn new() -> Self {
        Self { hasher: blake3::Hasher::new() }
    }

    /// Starts tick `tick`'s hash; takes the inputs gathered since the last tick.
    #[inline]
    pub(crate) fn begin(&mut self, previous: &Digest, tick: u64, inputs: &mut InputDigest) {
        self.hasher.reset();
        self.hasher.update(&previous.0);
        self.hasher.update(&tick.to_le_bytes());
        self.hasher.update(&inputs.take());
    }

    /// An agent active this tick, with its digest.
    #[inline]
    pub(crate) fn agent(&mut self, id: AgentId, digest: &[u8; 16]) {
        self.hasher.update(&id.to_le_bytes());
        self.hasher.update(digest);
    }

    /// A dead letter: the whole message (header and payload) is covered, so a replay whose
    /// dead letters differ in any of it diverges here.
    #[inline]
    pub(crate) fn dead_letter(&mut self, reason: DeadLetterReason, m: &Message) {
        self.hasher.update(&[tag::DEAD_LETTER, reason.tag()]);
        self.hasher.update(&message_digest(m.as_ref()));
    }

    /// An agent with trigger `all` that waited this tick: WAITING ‖ id u64 ‖ messages waiting
    /// in its inbox u64.
    #[inline]
    pub(crate) fn waiting(&mut self, id: AgentId, inbox_len: usize) {
        self.hasher.update(&[tag::WAITING]);
        self.hasher.update(&id.to_le_bytes());
        self.hasher.update(&(inbox_len as u64).to_le_bytes());
    }

    #[inline]
    pub(crate) fn finish(&self) -> Digest {
        Digest(*self.hasher.finalize().as_bytes())
    }
}

/// The deep hash: tick hash [32] ‖ for each agent in id order its part, BLAKE3(id u64 ‖ state
/// name ‖ inbox length u64 ‖ [instance state, `AgentInstance::deep_hash_into`] ‖ [a time
/// slice: "slice" ‖ fuel per tick u64] ‖ [a suspended call: "suspended" ‖ ABI call u8 ‖ tick it
/// started u64 ‖ slices used u64 ‖ fuel before it u64 ‖ messages in flight u64]). A suspended
/// call's instance is inside the call (its memory is mid-call and cannot be read): what it
/// will be is fixed by the state hashed when it was idle and the fuel it has run since.
pub(crate) struct DeepHasher;

impl DeepHasher {
    /// One agent's part.
    #[inline]
    pub(crate) fn agent(slot: &mut crate::scheduler::AgentSlot) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&slot.id.to_le_bytes());
        h.update(slot.state.name().as_bytes());
        h.update(&(slot.inbox.len() as u64).to_le_bytes());
        if let Some(i) = slot.instance.as_deref_mut() {
            i.deep_hash_into(&mut h);
            if i.fuel_per_tick > 0 {
                h.update(b"slice");
                h.update(&i.fuel_per_tick.to_le_bytes());
            }
        }
        if let Some(s) = &slot.suspended {
            h.update(b"slice");
            h.update(&s.fuel_per_tick.to_le_bytes());
            h.update(b"suspended");
            h.update(&[s.call as u8]);
            h.update(&s.started_tick.to_le_bytes());
            h.update(&s.slices.to_le_bytes());
            h.update(&s.fuel_consumed.to_le_bytes());
            h.update(&(slot.in_flight.len() as u64).to_le_bytes());
        }
        *h.finalize().as_bytes()
    }

    /// The whole, from the parts in id order.
    #[inline]
    pub(crate) fn whole<'a>(tick_hash: &Digest, parts: impl IntoIterator<Item = &'a [u8; 32]>) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(&tick_hash.0);
        for p in parts {
            h.update(p);
        }
        Digest(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_empty_input_digest_is_blake3_of_nothing() {
        assert_eq!(super::EMPTY_INPUT_DIGEST, *blake3::hash(&[]).as_bytes());
    }

    /// Gathering messages before hashing them must not change a digest: every length around
    /// the stage's size, a payload larger than the stage between small ones, empty payloads.
    #[test]
    fn messages_hash_the_same_gathered_or_one_by_one() {
        use super::*;
        let lengths: Vec<usize> = vec![0, 1, 24, 64, 983, 984, 985, 1024, 3000, 0, 7, 2000, 64, 64];
        for skip in 0..lengths.len() {
            let mut sent = Mailbox::default();
            for (i, &len) in lengths.iter().enumerate().skip(skip) {
                let payload: Vec<u8> = (0..len).map(|b| (b * 31 + i) as u8).collect();
                sent.push(MessageRef { from: 3, to: i as u64 + 1, seq: i as u64, kind: 7, priority: -2, payload: &payload });
            }
            let mut one_by_one = Xxh3::new();
            for m in sent.iter() {
                feed_message(&mut one_by_one, m);
            }
            let mut gathered = Xxh3::new();
            feed_messages(&mut gathered, sent.iter());
            assert_eq!(gathered.digest128(), one_by_one.digest128(), "from message {skip}");
        }
    }

    /// The same for the messages from outside the agents an agent is handed: gathered, only
    /// the host's and inference's (in order, agents' messages skipped) give the digest that
    /// feeding those one by one gives; none at all leaves the agent without one.
    #[test]
    fn external_messages_hash_the_same_gathered_or_one_by_one() {
        use super::*;
        let lengths: Vec<usize> = vec![0, 64, 983, 984, 985, 3000, 7, 64, 2000, 1];
        let senders = [crate::abi::HOST_ID, 5, crate::abi::INFERENCE_ID, crate::abi::HOST_ID, 9];
        let mut inbox = Mailbox::default();
        for (i, &len) in lengths.iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|b| (b * 13 + i) as u8).collect();
            inbox.push(MessageRef { from: senders[i % senders.len()], to: 4, seq: i as u64, kind: 2, priority: 1, payload: &payload });
        }
        let mut one_by_one = AgentTickDigest::default();
        for m in inbox.iter().filter(|m| m.from == crate::abi::HOST_ID || m.from == crate::abi::INFERENCE_ID) {
            one_by_one.external_message(m);
        }
        let mut gathered = AgentTickDigest::default();
        gathered.external_messages(inbox.iter());
        let empty = Mailbox::default();
        let finish = |d: AgentTickDigest| d.finish(4, 0, &empty, &[], None);
        assert_eq!(finish(gathered), finish(one_by_one));
        assert!(finish(one_by_one_of_agents_only()).is_none(), "agents' messages alone are not external");
        fn one_by_one_of_agents_only() -> AgentTickDigest {
            let mut inbox = Mailbox::default();
            inbox.push(MessageRef { from: 5, to: 4, seq: 0, kind: 2, priority: 1, payload: b"x" });
            let mut d = AgentTickDigest::default();
            d.external_messages(inbox.iter());
            d
        }
    }
}
