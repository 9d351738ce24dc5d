//! What enters the next tick, in one bounded queue: messages from the host (`send`, the
//! inbound ring, a replay's Send records), what `agent_init`/`agent_shutdown` sent, and
//! inference answers. The digest of everything that entered between two ticks
//! (`tick_hash::InputDigest`) lives here too, so nothing can enter without being hashed.

use crate::abi;
use crate::bus::{AgentId, MessageRef};
use crate::limits::{MAX_PENDING_BYTES, MAX_PENDING_MESSAGES};
use crate::mailbox::Mailbox;
use crate::ring::Consumer;
use crate::tick_hash::InputDigest;

pub(crate) struct Inputs {
    /// Messages routed at the start of the next tick, in the order they entered; their
    /// payloads in the mailbox's arena (a host message costs no allocation of its own).
    messages: Mailbox,
    /// Payload bytes of host messages and of what init/shutdown sent in `messages` (bounded
    /// by `MAX_PENDING_BYTES`; inference answers are bounded per agent by the ABI instead).
    bytes: usize,
    /// Sequence number of the host's next message.
    host_seq: u64,
    /// Sequence number of the next inference answer.
    answer_seq: u64,
    /// Spawns, kills, shutdowns and faults since the last tick.
    pub(crate) digest: InputDigest,
    /// The JS→core ring, when attached: drained at the start of each tick.
    pub(crate) inbound_ring: Option<Consumer>,
    /// One batch of ring records on its way to the inboxes (at most `RING_BATCH_RECORDS` and
    /// `RING_BATCH_BYTES`), and the scratch of routing it recipient by recipient; both kept
    /// between ticks.
    pub(crate) ring_batch: Mailbox,
    pub(crate) ring_grouping: crate::scheduler::GroupScratch,
    /// Without a replay log, the headers of one walk's ring records, routed from the ring
    /// (`Runtime::route_inbound_ring_held`; at most `RING_BATCH_RECORDS`, kept between ticks).
    pub(crate) ring_held: Vec<crate::ring::HeldRecord>,
    /// Set while those records are held in the ring for their recipients' turns in the tick's
    /// first phase (`scheduler::HeldInboxes`; the tick's last walk of the ring): the
    /// first one's sequence number. `end_holding` ends it.
    pub(crate) ring_held_first_seq: Option<u64>,
}

impl Inputs {
    pub(crate) fn new() -> Self {
        Self {
            messages: Mailbox::default(),
            bytes: 0,
            host_seq: 0,
            answer_seq: 0,
            digest: InputDigest::new(),
            inbound_ring: None,
            ring_batch: Mailbox::default(),
            ring_grouping: Default::default(),
            ring_held: Vec::new(),
            ring_held_first_seq: None,
        }
    }

    /// The ring records held for their recipients' turns, while they are.
    pub(crate) fn held_inboxes(&self) -> Option<crate::scheduler::HeldInboxes<'_>> {
        let first_seq = self.ring_held_first_seq?;
        let ring = self.inbound_ring.as_ref()?;
        let batch = crate::scheduler::HeldBatch { records: &self.ring_held, first_seq, ring, hold: true };
        Some(crate::scheduler::HeldInboxes::new(batch, self.ring_grouping.grouping()))
    }

    /// Ends holding ring records (after the tick's first phase): what no turn took is copied
    /// into its recipient's inbox, as routing would have put it there, and the records' ring
    /// space is given back to the producer.
    pub(crate) fn end_holding(&mut self, slots: &mut [crate::scheduler::AgentSlot]) {
        if self.ring_held_first_seq.is_none() {
            return;
        }
        if let Some(held) = self.held_inboxes() {
            for s in self.ring_grouping.held_recipients() {
                if let Some(slot) = slots.get_mut(s).filter(|slot| slot.ring_held) {
                    slot.ring_held = false;
                    held.copy_into(held.indices(s), &mut slot.inbox);
                }
            }
        }
        self.ring_held_first_seq = None;
        self.ring_held.clear();
        if let Some(ring) = self.inbound_ring.as_mut() {
            ring.release_held();
        }
    }

    /// Whether a host message of `bytes` fits (`MAX_PENDING_MESSAGES`, `MAX_PENDING_BYTES`).
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.messages.len() < MAX_PENDING_MESSAGES && self.bytes.saturating_add(bytes) <= MAX_PENDING_BYTES
    }

    /// A message from the host (id 0). The caller checked `has_room` and recorded it. Not
    /// hashed here: the recipient's digest covers every host message it is handed (which also
    /// names that agent on divergence), and a dead letter is hashed by routing.
    pub(crate) fn host_message(&mut self, to: AgentId, kind: u32, priority: i32, payload: &[u8]) {
        self.bytes += payload.len();
        self.messages.push(MessageRef { from: abi::HOST_ID, to, seq: self.host_seq, kind, priority, payload });
        self.host_seq += 1;
    }

    /// Numbers `n` host messages routed without queueing, in order: returns the first's
    /// sequence number (the rest follow it).
    pub(crate) fn take_host_seqs(&mut self, n: usize) -> u64 {
        self.host_seq += n as u64;
        self.host_seq - n as u64
    }

    /// The sequence number of a host message routed without queueing (the inbound ring's,
    /// `Runtime::route_inbound_ring`): numbered with the queued ones.
    pub(crate) fn next_host_seq(&mut self) -> u64 {
        self.host_seq += 1;
        self.host_seq - 1
    }

    /// What an agent sent outside a tick (`agent_init`, `agent_shutdown`): folded into the
    /// next tick's hash and routed at its start, counted against the same limit.
    pub(crate) fn agent_output(&mut self, sent: &mut Mailbox) {
        self.digest.queued_messages(sent);
        self.bytes += sent.payload_bytes();
        self.messages.append(sent);
    }

    /// An inference answer for `agent`, delivered as a message from `abi::INFERENCE_ID` whose
    /// kind is the request's tag.
    pub(crate) fn inference_answer(&mut self, agent: AgentId, tag: u32, payload: Vec<u8>) {
        self.messages.push(MessageRef { from: abi::INFERENCE_ID, to: agent, seq: self.answer_seq, kind: tag, priority: 0, payload: &payload });
        self.answer_seq += 1;
    }

    /// Generated tokens for `agent`, delivered as a message from `abi::GENERATION_ID` whose
    /// kind is the `generate` request's tag (numbered with the inference answers).
    pub(crate) fn generated(&mut self, agent: AgentId, tag: u32, payload: Vec<u8>) {
        self.messages.push(MessageRef { from: abi::GENERATION_ID, to: agent, seq: self.answer_seq, kind: tag, priority: 0, payload: &payload });
        self.answer_seq += 1;
    }

    /// Messages waiting for the next tick.
    pub(crate) fn pending(&self) -> usize {
        self.messages.len()
    }

    /// The messages for the tick that starts now; the queue is empty after. Hand the mailbox
    /// back with `recycle` once routed, so its arena serves the next tick.
    pub(crate) fn take_messages(&mut self) -> Mailbox {
        self.bytes = 0;
        std::mem::take(&mut self.messages)
    }

    /// Takes back the mailbox `take_messages` returned (emptied), keeping its buffers.
    pub(crate) fn recycle(&mut self, mut routed: Mailbox) {
        if self.messages.is_empty() {
            routed.clear_retaining(crate::limits::MAX_RETAINED_INPUT_BYTES);
            self.messages = routed;
        }
    }

    /// The queue as a snapshot stores it (`snapshot::InputsImage`).
    pub(crate) fn image(&self) -> crate::snapshot::InputsImage {
        crate::snapshot::InputsImage {
            messages: self.messages.to_messages(0..self.messages.len()),
            bytes: self.bytes as u64,
            host_seq: self.host_seq,
            answer_seq: self.answer_seq,
            digest: self.digest.bytes().to_vec(),
        }
    }

    /// The queue a snapshot stored (no ring attached: rings belong to a process).
    pub(crate) fn from_image(image: crate::snapshot::InputsImage) -> Self {
        Self {
            messages: Mailbox::from(image.messages),
            bytes: image.bytes as usize,
            host_seq: image.host_seq,
            answer_seq: image.answer_seq,
            digest: InputDigest::from_bytes(image.digest),
            inbound_ring: None,
            ring_batch: Mailbox::default(),
            ring_grouping: Default::default(),
            ring_held: Vec::new(),
            ring_held_first_seq: None,
        }
    }
}
