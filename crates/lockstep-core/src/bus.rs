//! Messages, their canonical delivery order, and the dead-letter queue.

use std::cmp::Reverse;

use crate::abi;

/// An agent's id: assigned 1, 2, 3... at spawn and never reused. 0 is the host
/// (`abi::HOST_ID`) and `u64::MAX` the sender of inference answers (`abi::INFERENCE_ID`).
pub type AgentId = u64;

/// One message between agents, or between an agent and the host (id 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sender: an agent, the host (0), or `u64::MAX` for an inference answer.
    pub from: AgentId,
    /// Recipient: an agent, or the host (0).
    pub to: AgentId,
    /// Per-sender sequence number: the sender's n-th message since it was spawned.
    pub seq: u64,
    /// User-defined message type, passed through untouched (for an inference answer: the
    /// request's tag).
    pub kind: u32,
    /// Delivery priority among the recipient's messages of a tick: higher is delivered first.
    pub priority: i32,
    /// The message body, at most `abi::MAX_PAYLOAD_BYTES` (65,496) bytes.
    pub payload: Vec<u8>,
}

impl Message {
    /// The order in which one recipient sees its messages of a tick: higher priority first,
    /// then lower sender id, then lower sequence number. Every component of the key is decided
    /// by the senders' own deterministic execution, never by thread timing.
    pub fn delivery_key(&self) -> (Reverse<i32>, AgentId, u64) {
        (Reverse(self.priority), self.from, self.seq)
    }

    /// The message, borrowed (what the tick's path hashes, routes and delivers).
    #[inline]
    pub(crate) fn as_ref(&self) -> MessageRef<'_> {
        MessageRef { from: self.from, to: self.to, seq: self.seq, kind: self.kind, priority: self.priority, payload: &self.payload }
    }
}

/// A message borrowed from where it lives: a mailbox's arena (`mailbox::Mailbox`) on the
/// tick's path, or an owned [`Message`] at its edges (host sends, dead letters, snapshots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageRef<'a> {
    pub from: AgentId,
    pub to: AgentId,
    pub seq: u64,
    pub kind: u32,
    pub priority: i32,
    pub payload: &'a [u8],
}

impl MessageRef<'_> {
    /// An owned copy (allocates: only off the hot path).
    pub(crate) fn to_message(self) -> Message {
        Message { from: self.from, to: self.to, seq: self.seq, kind: self.kind, priority: self.priority, payload: self.payload.to_vec() }
    }

    /// Writes the ABI message header (see `abi::MESSAGE_*`).
    #[inline]
    pub(crate) fn write_header(&self, out: &mut [u8; abi::MESSAGE_HEADER_BYTES]) {
        self.write_header_of_len(self.payload.len() as u32, out);
    }

    /// `write_header` for a payload of `len` bytes held elsewhere (this one's is empty: a
    /// held ring record's, copied straight from the ring).
    #[inline]
    pub(crate) fn write_header_of_len(&self, len: u32, out: &mut [u8; abi::MESSAGE_HEADER_BYTES]) {
        out[abi::MESSAGE_OFFSET_FROM..][..8].copy_from_slice(&self.from.to_le_bytes());
        out[abi::MESSAGE_OFFSET_TO..][..8].copy_from_slice(&self.to.to_le_bytes());
        out[abi::MESSAGE_OFFSET_SEQ..][..8].copy_from_slice(&self.seq.to_le_bytes());
        out[abi::MESSAGE_OFFSET_KIND..][..4].copy_from_slice(&self.kind.to_le_bytes());
        out[abi::MESSAGE_OFFSET_PRIORITY..][..4].copy_from_slice(&self.priority.to_le_bytes());
        out[abi::MESSAGE_OFFSET_PAYLOAD_LEN..][..4].copy_from_slice(&len.to_le_bytes());
        out[abi::MESSAGE_OFFSET_RESERVED..][..4].copy_from_slice(&0u32.to_le_bytes());
    }
}

/// Sorts one recipient's messages into canonical delivery order (the tick's path sorts
/// mailboxes: `mailbox::Mailbox::sort_for_delivery`, same key).
#[cfg(test)]
pub fn sort_for_delivery(inbox: &mut [Message]) {
    // Routing appends in sender-id order already, so this is usually a linear check.
    inbox.sort_by_key(Message::delivery_key);
}

/// Why a message could not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The recipient faulted (trap, fuel, memory cap) before the message reached it.
    RecipientFaulted,
    /// The recipient was shut down or killed.
    RecipientStopped,
    /// No agent ever had this id.
    UnknownRecipient,
    /// The recipient faulted while this message was being delivered or before its turn.
    RecipientFaultedDuringDelivery,
    /// The recipient's inbox held `abi::MAX_INBOX_MESSAGES` messages or `MAX_INBOX_BYTES`.
    RecipientInboxFull,
}

impl DeadLetterReason {
    /// The stable snake_case name events and JS use, e.g. `"recipient_inbox_full"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::RecipientFaulted => "recipient_faulted",
            Self::RecipientStopped => "recipient_stopped",
            Self::UnknownRecipient => "unknown_recipient",
            Self::RecipientFaultedDuringDelivery => "recipient_faulted_during_delivery",
            Self::RecipientInboxFull => "recipient_inbox_full",
        }
    }

    /// Stable numeric tag (1..=5) fed into tick hashes.
    pub(crate) fn tag(&self) -> u8 {
        match self {
            Self::RecipientFaulted => 1,
            Self::RecipientStopped => 2,
            Self::UnknownRecipient => 3,
            Self::RecipientFaultedDuringDelivery => 4,
            Self::RecipientInboxFull => 5,
        }
    }
}

/// A message that could not be delivered, as kept in the dead-letter queue
/// ([`Runtime::drain_dead_letters`](crate::Runtime::drain_dead_letters)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The tick at which it was dead-lettered.
    pub tick: u64,
    /// Why it could not be delivered.
    pub reason: DeadLetterReason,
    /// The message itself, payload included.
    pub message: Message,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: u64, seq: u64, priority: i32) -> Message {
        Message { from, to: 9, seq, kind: 0, priority, payload: vec![] }
    }

    #[test]
    fn delivery_order_is_priority_then_sender_then_seq() {
        let mut inbox = vec![msg(3, 0, 0), msg(1, 1, 0), msg(2, 0, 5), msg(1, 0, 0), msg(0, 7, -1)];
        sort_for_delivery(&mut inbox);
        let order: Vec<_> = inbox.iter().map(|m| (m.priority, m.from, m.seq)).collect();
        assert_eq!(order, vec![(5, 2, 0), (0, 1, 0), (0, 1, 1), (0, 3, 0), (-1, 0, 7)]);
    }

    #[test]
    fn header_layout_matches_abi() {
        let m = Message { from: 1, to: 2, seq: 3, kind: 4, priority: -5, payload: vec![1, 2, 3] };
        let mut h = [0u8; abi::MESSAGE_HEADER_BYTES];
        m.as_ref().write_header(&mut h);
        assert_eq!(u64::from_le_bytes(h[0..8].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(h[8..16].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(h[16..24].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 4);
        assert_eq!(i32::from_le_bytes(h[28..32].try_into().unwrap()), -5);
        assert_eq!(u32::from_le_bytes(h[32..36].try_into().unwrap()), 3);
    }
}
