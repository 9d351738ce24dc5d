//! A mailbox: messages whose payloads live in one byte arena instead of a heap allocation each
//! (issue 13). An agent's outbox, what it sent in a tick, and its inbox are mailboxes; routing
//! copies a payload from the sender's arena into the recipient's, and delivery copies it into
//! the agent's io buffer, so once the arenas have grown to a tick's traffic a message costs no
//! allocation anywhere on the tick's path (`tests/no_alloc_per_message.rs` counts).
//!
//! Invariants (asserted in debug builds, checked by the unit tests below):
//! - the arena holds exactly the payloads of the envelopes, nothing else: `bytes.len()` is the
//!   sum of their lengths (so it is the byte count the inbox and outbox limits bound), and
//!   every envelope's `at..at + len` lies inside it;
//! - removing messages (delivery, putting back the rest of a turn) compacts the arena, so there
//!   are never holes to account for.
//!
//! What an arena keeps between ticks is bounded: `clear` gives back capacity over
//! `limits::MAX_RETAINED_MAILBOX_BYTES`, so a burst does not pin memory in 10,000 agents.

use crate::abi;
use crate::bus::{AgentId, Message, MessageRef};

/// A message's header; its payload is `bytes[at..at + len]` of the mailbox holding it.
#[derive(Debug, Clone, Copy)]
struct Envelope {
    from: AgentId,
    to: AgentId,
    seq: u64,
    kind: u32,
    priority: i32,
    /// Where its payload starts in the arena (a `usize`: the input queue's arena also holds
    /// inference answers, which its byte limit does not count, so it is not bounded by 4 GiB),
    /// and how long it is (at most `abi::MAX_PAYLOAD_BYTES`).
    at: usize,
    len: u32,
}

/// A message's header as `Mailbox::heads` gives it: its payload is `payload(at, len)` of the
/// mailbox it came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub to: AgentId,
    pub seq: u64,
    pub kind: u32,
    pub priority: i32,
    pub at: usize,
    pub len: u32,
}

/// Messages in order, their payloads in one arena.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    envelopes: Vec<Envelope>,
    bytes: Vec<u8>,
}

impl Mailbox {
    /// Heap bytes one message's envelope takes (what `capacity_bytes` counts besides payloads).
    pub(crate) const ENVELOPE_BYTES: usize = std::mem::size_of::<Envelope>();

    /// Makes room for `messages` messages and `bytes` of payload in all (what `clear_retaining`
    /// with their sum then keeps).
    pub(crate) fn reserve_exact(&mut self, messages: usize, bytes: usize) {
        self.envelopes.reserve_exact(messages.saturating_sub(self.envelopes.len()));
        self.bytes.reserve_exact(bytes.saturating_sub(self.bytes.len()));
    }

    /// Messages held.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.envelopes.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.envelopes.is_empty()
    }

    /// Payload bytes held (what the inbox and outbox byte limits count).
    #[inline]
    pub(crate) fn payload_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Appends a copy of `m` (at most `abi::MAX_PAYLOAD_BYTES` of payload: every path that
    /// feeds a mailbox refuses larger ones first).
    #[inline]
    pub(crate) fn push(&mut self, m: MessageRef<'_>) {
        debug_assert!(m.payload.len() <= abi::MAX_PAYLOAD_BYTES);
        let at = self.bytes.len();
        self.bytes.extend_from_slice(m.payload);
        self.envelopes.push(Envelope { from: m.from, to: m.to, seq: m.seq, kind: m.kind, priority: m.priority, at, len: m.payload.len() as u32 });
    }

    /// Appends a message of `len` payload bytes that `fill` appends to the arena it is lent
    /// (straight from where they come from: no copy through another buffer, no zero-fill
    /// first), and returns it. A `fill` that appends other than `len` bytes is a bug; the
    /// arena is cut or zero-padded to `len` so that the envelopes still describe it.
    #[inline]
    pub(crate) fn push_with(&mut self, head: MessageRef<'_>, len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> MessageRef<'_> {
        debug_assert!(head.payload.is_empty() && len <= abi::MAX_PAYLOAD_BYTES);
        let at = self.bytes.len();
        fill(&mut self.bytes);
        debug_assert_eq!(self.bytes.len(), at + len, "push_with's fill appends exactly the payload");
        self.bytes.resize(at + len, 0);
        self.envelopes.push(Envelope { from: head.from, to: head.to, seq: head.seq, kind: head.kind, priority: head.priority, at, len: len as u32 });
        MessageRef { payload: &self.bytes[at..], ..head }
    }

    /// Takes the last message out. Its payload is the arena's last bytes: true of a mailbox
    /// only appended to (the ring batch), not after `sort_for_delivery`.
    pub(crate) fn pop(&mut self) -> Option<Message> {
        let e = self.envelopes.pop()?;
        debug_assert_eq!(e.at + e.len as usize, self.bytes.len(), "pop after a reorder");
        let payload = self.bytes.get(e.at..e.at + e.len as usize).map(<[u8]>::to_vec).unwrap_or_default();
        self.bytes.truncate(e.at);
        Some(Message { from: e.from, to: e.to, seq: e.seq, kind: e.kind, priority: e.priority, payload })
    }

    /// The recipient of the `i`-th message (routing looks ahead with it).
    #[inline]
    pub(crate) fn recipient(&self, i: usize) -> Option<AgentId> {
        self.envelopes.get(i).map(|e| e.to)
    }

    /// Where the next `push` writes (its envelope, its payload): for prefetching only.
    #[inline]
    pub(crate) fn tail_addresses(&self) -> [usize; 2] {
        [self.envelopes.as_ptr().wrapping_add(self.envelopes.len()) as usize, self.bytes.as_ptr().wrapping_add(self.bytes.len()) as usize]
    }

    /// Where the `i`-th message's envelope is (without reading it): for prefetching only.
    #[inline]
    pub(crate) fn envelope_address(&self, i: usize) -> usize {
        self.envelopes.as_ptr().wrapping_add(i) as usize
    }

    /// The messages' headers, in order (without touching the payloads): what routing copies so
    /// that a held message's delivery reads only its payload (`payload`).
    #[inline]
    pub(crate) fn heads(&self) -> impl ExactSizeIterator<Item = Head> + '_ {
        self.envelopes.iter().map(|e| Head { to: e.to, seq: e.seq, kind: e.kind, priority: e.priority, at: e.at, len: e.len })
    }

    /// The payload `heads` named by `at` and `len`.
    #[inline]
    pub(crate) fn payload(&self, at: usize, len: u32) -> Option<&[u8]> {
        self.bytes.get(at..at + len as usize)
    }

    /// Where the payload starting at `at` of the arena is: for prefetching only.
    #[inline]
    pub(crate) fn payload_address(&self, at: usize) -> usize {
        self.bytes.as_ptr().wrapping_add(at) as usize
    }

    /// Where the `i`-th message's envelope and payload start: for prefetching only.
    #[inline]
    pub(crate) fn message_addresses(&self, i: usize) -> [usize; 2] {
        match self.envelopes.get(i) {
            Some(e) => [e as *const Envelope as usize, self.bytes.as_ptr().wrapping_add(e.at) as usize],
            None => [0, 0],
        }
    }

    /// The `i`-th message, borrowed.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<MessageRef<'_>> {
        self.envelopes.get(i).map(|e| self.view(e))
    }

    #[inline]
    fn view(&self, e: &Envelope) -> MessageRef<'_> {
        let (at, len) = (e.at, e.len as usize);
        MessageRef { from: e.from, to: e.to, seq: e.seq, kind: e.kind, priority: e.priority, payload: &self.bytes[at..at + len] }
    }

    /// The messages in order, borrowed.
    #[inline]
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = MessageRef<'_>> + '_ {
        self.envelopes.iter().map(|e| self.view(e))
    }

    /// The messages from `start` on, borrowed.
    #[inline]
    pub(crate) fn iter_from(&self, start: usize) -> impl Iterator<Item = MessageRef<'_>> + '_ {
        self.envelopes.get(start..).unwrap_or_default().iter().map(|e| self.view(e))
    }

    /// Owned copies of the messages in `range` (the cold paths: dead letters, traces,
    /// snapshots).
    pub(crate) fn to_messages(&self, range: std::ops::Range<usize>) -> Vec<Message> {
        let range = range.start.min(self.len())..range.end.min(self.len());
        self.envelopes[range].iter().map(|e| self.view(e).to_message()).collect()
    }

    /// Sorts the messages into canonical delivery order (`bus::delivery_key`). Only the
    /// envelopes move; routing appends in sender-id order, so this is usually a linear check.
    pub(crate) fn sort_for_delivery(&mut self) {
        // The key of `Message::delivery_key`: higher priority, then lower sender, then seq.
        let key = |e: &Envelope| (std::cmp::Reverse(e.priority), e.from, e.seq);
        if !self.envelopes.is_sorted_by_key(key) {
            self.envelopes.sort_by_key(key);
        }
    }

    /// Keeps the messages from `start` on (in order) and drops those before it, compacting
    /// the arena.
    pub(crate) fn keep_from(&mut self, start: usize) {
        if start == 0 {
            return;
        }
        if start >= self.envelopes.len() {
            self.clear();
            return;
        }
        let rest = self.envelopes.split_off(start);
        let old = std::mem::take(&mut self.bytes);
        self.envelopes.clear();
        self.bytes.reserve(rest.iter().map(|e| e.len as usize).sum());
        for e in &rest {
            let (at, len) = (e.at, e.len as usize);
            let m = MessageRef { from: e.from, to: e.to, seq: e.seq, kind: e.kind, priority: e.priority, payload: &old[at..at + len] };
            self.push(m);
        }
    }

    /// Moves every message of `other` to the end of this one; `other` is empty afterwards
    /// (and keeps its capacity). When this one is empty the two simply trade buffers.
    pub(crate) fn append(&mut self, other: &mut Mailbox) {
        if self.is_empty() {
            std::mem::swap(self, other);
            other.clear();
            return;
        }
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.envelopes.extend(other.envelopes.iter().map(|e| Envelope { at: e.at + base, ..*e }));
        other.clear();
    }

    /// Empties the mailbox, keeping its buffers for the next tick up to
    /// `limits::MAX_RETAINED_MAILBOX_BYTES` of capacity (past it they are given back: a burst
    /// of large messages must not pin memory in every agent).
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.clear_retaining(crate::limits::MAX_RETAINED_MAILBOX_BYTES);
    }

    /// Empties the mailbox, keeping its buffers if they hold at most `max_bytes`.
    #[inline]
    pub(crate) fn clear_retaining(&mut self, max_bytes: usize) {
        if self.capacity_bytes() > max_bytes {
            self.release();
        } else {
            self.envelopes.clear();
            self.bytes.clear();
        }
    }

    /// Gives back every buffer (a stopped agent's).
    pub(crate) fn release(&mut self) {
        *self = Mailbox::default();
    }

    /// Heap bytes the mailbox holds (its buffers' capacity).
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.bytes.capacity() + self.envelopes.capacity() * std::mem::size_of::<Envelope>()
    }
}

impl From<Vec<Message>> for Mailbox {
    fn from(messages: Vec<Message>) -> Self {
        let mut b = Mailbox::default();
        for m in &messages {
            b.push(m.as_ref());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: u64, seq: u64, priority: i32, payload: &[u8]) -> Message {
        Message { from, to: 9, seq, kind: 7, priority, payload: payload.to_vec() }
    }

    fn holds_exactly(b: &Mailbox) {
        assert_eq!(b.bytes.len(), b.envelopes.iter().map(|e| e.len as usize).sum::<usize>(), "the arena holds the payloads, nothing else");
    }

    /// `push_with` (the ring batch's path: payloads written in place) holds what `push` would,
    /// for an empty and a largest payload, and `pop` takes the last message back out whole.
    #[test]
    fn a_message_written_in_place_is_the_one_pushed_and_pops_back_out() {
        let largest: Vec<u8> = (0..abi::MAX_PAYLOAD_BYTES).map(|i| (i * 7) as u8).collect();
        let cases = [msg(0, 1, 2, b""), msg(0, 2, -3, &largest), msg(0, 3, 0, b"tail")];
        let mut b = Mailbox::default();
        for m in &cases {
            let head = MessageRef { payload: &[], ..m.as_ref() };
            let pushed = b.push_with(head, m.payload.len(), |out| out.extend_from_slice(&m.payload)).to_message();
            assert_eq!(&pushed, m);
        }
        holds_exactly(&b);
        assert_eq!(b.to_messages(0..3), cases.to_vec());
        assert_eq!(b.pop().as_ref(), Some(&cases[2]));
        assert_eq!(b.pop().as_ref(), Some(&cases[1]));
        holds_exactly(&b);
        assert_eq!(b.to_messages(0..3), cases[..1].to_vec());
        assert_eq!(b.pop().as_ref(), Some(&cases[0]));
        assert!(b.pop().is_none() && b.is_empty() && b.payload_bytes() == 0);
    }

    #[test]
    fn keeps_each_payload_with_its_header_through_sort_and_compaction() {
        let messages = vec![msg(3, 0, 0, b"c0"), msg(1, 1, 0, b"a1-long"), msg(2, 0, 5, b""), msg(1, 0, 0, b"a0"), msg(0, 7, -1, b"host")];
        let mut b = Mailbox::from(messages.clone());
        assert_eq!(b.to_messages(0..5), messages);
        b.sort_for_delivery();
        let mut sorted = messages.clone();
        crate::bus::sort_for_delivery(&mut sorted);
        assert_eq!(b.to_messages(0..5), sorted, "same order as the owned sort, payloads still attached");
        b.keep_from(2);
        holds_exactly(&b);
        assert_eq!(b.to_messages(0..10), sorted[2..].to_vec());
        assert_eq!(b.payload_bytes(), sorted[2..].iter().map(|m| m.payload.len()).sum::<usize>());
        b.keep_from(3);
        assert!(b.is_empty());
        assert_eq!(b.payload_bytes(), 0);
    }

    #[test]
    fn append_moves_everything_and_leaves_the_other_empty() {
        let mut a = Mailbox::from(vec![msg(1, 0, 0, b"one")]);
        let mut b = Mailbox::from(vec![msg(2, 0, 0, b"two"), msg(2, 1, 0, b"three")]);
        a.append(&mut b);
        holds_exactly(&a);
        assert!(b.is_empty() && b.payload_bytes() == 0);
        let got: Vec<Vec<u8>> = a.iter().map(|m| m.payload.to_vec()).collect();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        let mut empty = Mailbox::default();
        empty.append(&mut a);
        assert_eq!(empty.len(), 3);
        assert!(a.is_empty());
    }

    #[test]
    fn clear_keeps_a_small_arena_and_gives_back_a_large_one() {
        let mut b = Mailbox::default();
        b.push(msg(1, 0, 0, &[1; 1000]).as_ref());
        b.clear();
        assert!(b.bytes.capacity() >= 1000, "a small arena is kept for the next tick");
        let big = vec![0u8; abi::MAX_PAYLOAD_BYTES];
        for seq in 0..(crate::limits::MAX_RETAINED_MAILBOX_BYTES / big.len() + 2) as u64 {
            b.push(msg(1, seq, 0, &big).as_ref());
        }
        assert!(b.capacity_bytes() > crate::limits::MAX_RETAINED_MAILBOX_BYTES);
        b.clear();
        assert_eq!(b.capacity_bytes(), 0, "a burst's arena is given back");
    }
}
