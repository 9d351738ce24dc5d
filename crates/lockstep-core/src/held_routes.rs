//! Messages left where they are until their recipients' turns (issue 13): routed messages in
//! their senders' outboxes (`HeldRoutes`), and what both kinds of held messages (these, and the
//! inbound ring's records, `scheduler::HeldInboxes`) give a turn that takes them straight into
//! the agent's memory (`HeldRun`).
//!
//! Why: a routed message was copied twice after its sender's turn, outbox → the recipient's
//! inbox (in routing: a few cold lines of another agent's inbox per message), then inbox →
//! the agent's io buffer (in its next turn). Without the first copy a 10,000 × 16 flood tick
//! did ~25–30% less work (BENCHMARKS.md, 2026-11-27, sixteenth session). Now routing only
//! groups the messages of the tick's last phase by recipient, and a recipient whose empty
//! inbox would have taken its whole run (`AgentSlot::takes_routed`) is only marked
//! (`routed_held`); its turn in the next tick's first phase copies each payload once, outbox →
//! io buffer, hashing it there as the inbox path would.
//!
//! Invariants (`Runtime` keeps them; `tests/held_routes.rs` checks the results against a
//! runtime that never holds):
//! 1. While held, the outboxes are not written: their senders write spare ones
//!    (`take_spare`), so a sender's outbox capacity is kept twice.
//! 2. The holding ends (`end`: what no turn took is copied into the inboxes, in run order,
//!    then the outboxes are cleared and kept as spares) after the next tick's first phase,
//!    before anything else reaches an inbox: a tick's host messages and ring records, its
//!    routing, a snapshot, a deep hash, and every `Runtime` method that reads or changes an
//!    inbox between ticks (`Runtime::end_held_routes`). So whoever reads an inbox sees what
//!    routing would have put there.
//! 3. A run is held only when it is all its recipient would hold: the recipient runs, its
//!    inbox is empty, and every message of the run would be admitted (at most
//!    `MAX_HELD_RUN` messages: their payloads cannot pass `MAX_INBOX_BYTES`). A turn that
//!    cannot take it as it is (ABI 1, time-sliced, traced, or the run not in canonical
//!    delivery order) gets it copied into its inbox first.

use crate::abi;
use crate::bus::{Message, MessageRef};
use crate::mailbox::Mailbox;
use crate::scheduler::AgentSlot;

/// Most messages of a run that routing may hold: any run of at most this many fits an empty
/// inbox whatever its payloads (`abi::MAX_PAYLOAD_BYTES` each), so holding it needs no byte
/// count (which would read each message's envelope, the cold line holding avoids).
pub(crate) const MAX_HELD_RUN: usize = abi::MAX_INBOX_BYTES / abi::MAX_PAYLOAD_BYTES;
const _: () = assert!(MAX_HELD_RUN >= 1 && MAX_HELD_RUN <= abi::MAX_INBOX_MESSAGES);

/// Held messages for one agent, in delivery order: what `AgentInstance::deliver_held` copies
/// into the agent's memory.
pub(crate) trait HeldRun {
    /// Whether the messages come from outside the agents (the host): then the recipient's
    /// digest hashes them as they are delivered (`AgentTickDigest::external_messages`); an
    /// agent's message is hashed where it was sent.
    const EXTERNAL: bool;
    /// How many.
    fn len(&self) -> usize;
    /// The `k`-th message without its payload, and its payload's length.
    fn head(&self, k: usize) -> Option<(MessageRef<'_>, usize)>;
    /// Copies the `k`-th message's payload into `out` (its length).
    fn read_payload(&self, k: usize, out: &mut [u8]);
    /// Asks for the `k`-th message's bytes (a hint only).
    fn prefetch(&self, k: usize);
    /// Owned copies of the messages from the `first` on (what a fault left undelivered).
    fn to_messages(&self, first: usize) -> Vec<Message>;
}

/// A message of a phase: its sender's place in the phase's list of senders, and its place in
/// that sender's outbox.
pub(crate) type Place = (u32, u32);

/// A message to an agent as routing lists it: its `Place` and a copy of its header (its
/// envelope read once, in sender order, while sorting), so that delivering it reads only its
/// payload from the sender's arena, whose address it names without a read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Grouped {
    pub seq: u64,
    /// Its sender's place in the phase's list of senders, and its place in that outbox.
    pub p: u32,
    pub k: u32,
    /// Where its payload starts in the sender's arena (`Mailbox::payload`).
    pub at: u32,
    pub len: u32,
    pub kind: u32,
    pub priority: i32,
}

impl Grouped {
    /// The message, to `to`: its header from this copy, its payload from its sender's arena in
    /// `outboxes` (the senders by place; the envelope there is not read: it says the same,
    /// which debug builds check).
    #[inline]
    pub(crate) fn message<'a>(&self, outboxes: &'a [(usize, Mailbox)], to: crate::bus::AgentId) -> Option<MessageRef<'a>> {
        let (sender, outbox) = outboxes.get(self.p as usize)?;
        let payload = outbox.payload(self.at as usize, self.len)?;
        // Slot `i` holds agent `i + 1` (`Agents::slots`).
        let m = MessageRef { from: *sender as u64 + 1, to, seq: self.seq, kind: self.kind, priority: self.priority, payload };
        debug_assert!(outbox
            .get(self.k as usize)
            .is_some_and(|e| (e.from, e.to, e.seq, e.kind, e.priority, e.payload) == (m.from, m.to, m.seq, m.kind, m.priority, m.payload)));
        Some(m)
    }
}

/// A `Grouped` message and its recipient's slot index.
pub(crate) type Routed = (Grouped, u32);

// What `limits::MAX_RETAINED_ROUTE_INDEX_BYTES` says they take.
const _: () = assert!(std::mem::size_of::<Grouped>() == 32 && std::mem::size_of::<Routed>() == 40);

/// One part's messages grouped by recipient (a counting sort of its lists, stable: each
/// recipient's run keeps sender order).
#[derive(Debug, Default)]
pub(crate) struct ByRecipient {
    /// `ends[r]`: where the run of the part's `r`-th recipient ends in `places` (it starts where
    /// the run before ends, or at 0).
    ends: Vec<u32>,
    places: Vec<Grouped>,
}

impl ByRecipient {
    /// Groups the messages of `lists` (each `(sender, index, slot, payload hint)` in sender
    /// order, the lists in chunk order) by their recipient, one of the `recipients` slots from
    /// `base`. A message for a slot outside them is a routing bug; it is left out.
    pub(crate) fn group<'a>(&mut self, base: usize, recipients: usize, lists: impl Iterator<Item = &'a [Routed]> + Clone) {
        let Self { ends, places } = self;
        ends.clear();
        ends.resize(recipients + 1, 0);
        for &(_, s) in lists.clone().flatten() {
            debug_assert!((s as usize).wrapping_sub(base) < recipients, "a message routed to another part");
            if let Some(count) = (s as usize).checked_sub(base).and_then(|r| ends.get_mut(r + 1)) {
                *count += 1;
            }
        }
        // `ends[r]` becomes where run `r` starts, then (below) moves along it to its end.
        for r in 1..ends.len() {
            ends[r] += ends[r - 1];
        }
        places.clear();
        places.resize(ends.last().copied().unwrap_or(0) as usize, Grouped::default());
        for &(g, s) in lists.flatten() {
            let Some(next) = (s as usize).checked_sub(base).and_then(|r| ends.get_mut(r)) else { continue };
            if let Some(place) = places.get_mut(*next as usize) {
                *place = g;
            }
            *next += 1;
        }
        ends.pop();
    }

    /// The places of the `r`-th recipient's messages, in sender order.
    #[inline]
    pub(crate) fn run(&self, r: usize) -> &[Grouped] {
        let end = self.ends.get(r).map_or(0, |&e| e as usize);
        let start = r.checked_sub(1).and_then(|q| self.ends.get(q)).map_or(0, |&e| e as usize);
        self.places.get(start..end).unwrap_or_default()
    }

    /// Every place, recipient after recipient (for prefetching across runs).
    #[inline]
    pub(crate) fn places(&self) -> &[Grouped] {
        &self.places
    }

    /// Where the `r`-th recipient's run starts in `places`.
    #[inline]
    pub(crate) fn run_start(&self, r: usize) -> usize {
        r.checked_sub(1).and_then(|q| self.ends.get(q)).map_or(0, |&e| e as usize)
    }

    /// Heap bytes kept.
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.ends.capacity() * std::mem::size_of::<u32>() + self.places.capacity() * std::mem::size_of::<Grouped>()
    }
}

/// Routed messages left in their senders' outboxes for their recipients' turns (module
/// docs). Bounded by the phase it held: the outboxes' messages (each agent's at most
/// `abi::MAX_OUTBOX_PER_TICK`) and 32 bytes a message of grouping (past
/// `limits::MAX_RETAINED_ROUTE_INDEX_BYTES`, given back when the holding ends); spares at most
/// one per sender of the phase, each trimmed by `Mailbox::clear`.
#[derive(Debug, Default)]
pub(crate) struct HeldRoutes {
    /// The senders of the routing that held (slot index, outbox), by their place.
    outboxes: Vec<(usize, Mailbox)>,
    /// The messages grouped by recipient, per part of `per_part` slots.
    parts: Vec<ByRecipient>,
    per_part: usize,
    /// The tick whose routing held, while it holds.
    since: Option<u64>,
    /// Whether every run is in canonical delivery order as grouped (`hold`).
    in_order: bool,
    /// Cleared outboxes, for senders to write while theirs are held.
    spare: Vec<Mailbox>,
}

impl HeldRoutes {
    /// Whether a routing's messages are held (then no other routing may hold).
    pub(crate) fn is_holding(&self) -> bool {
        self.since.is_some()
    }

    /// The tick whose routing holds, while one does.
    pub(crate) fn held_since(&self) -> Option<u64> {
        self.since
    }

    /// The parts to group a routing's messages into (`parts` of `per_part` slots), while it
    /// holds nothing.
    pub(crate) fn parts_for(&mut self, parts: usize, per_part: usize) -> &mut [ByRecipient] {
        debug_assert!(!self.is_holding());
        self.per_part = per_part.max(1);
        self.parts.resize_with(parts, ByRecipient::default);
        self.parts.truncate(parts);
        &mut self.parts
    }

    /// After a routing of `tick` marked recipients `routed_held`: keeps `outboxes` (the
    /// senders, in the places the grouping named) until `end_before`. `in_order`: routing
    /// knows every run to be in canonical delivery order (one priority, senders in id order).
    pub(crate) fn hold(&mut self, tick: u64, outboxes: Vec<(usize, Mailbox)>, in_order: bool) {
        debug_assert!(!self.is_holding());
        self.outboxes = outboxes;
        self.since = Some(tick);
        self.in_order = in_order;
    }

    /// An empty outbox for a sender whose outbox is held.
    pub(crate) fn take_spare(&mut self) -> Mailbox {
        self.spare.pop().unwrap_or_default()
    }

    /// The run held for the agent at slot index `slot` (whether or not it is marked).
    pub(crate) fn run(&self, slot: usize) -> RoutedRun<'_> {
        let places = match self.parts.get(slot / self.per_part.max(1)) {
            Some(part) if self.is_holding() => part.run(slot % self.per_part.max(1)),
            _ => &[],
        };
        RoutedRun { outboxes: &self.outboxes, places, to: slot as u64 + 1, in_order: self.in_order }
    }

    /// Asks for where the run of the agent at slot index `slot` is listed (a hint only).
    #[inline]
    pub(crate) fn prefetch_places(&self, slot: usize) {
        let per_part = self.per_part.max(1);
        if let Some(part) = self.parts.get(slot / per_part) {
            let start = part.run_start(slot % per_part);
            crate::scheduler::prefetch(&[part.places.as_ptr().wrapping_add(start) as usize]);
        }
    }

    /// How many messages are held for the agent at slot index `slot` (what its inbox holds
    /// besides, for `inspect` and the dashboard's depths).
    pub(crate) fn held_for(&self, slot: &AgentSlot, index: usize) -> usize {
        if slot.routed_held {
            self.run(index).len()
        } else {
            0
        }
    }

    /// Ends a holding from a tick before `tick` (all of it for `u64::MAX`): every marked
    /// recipient's run is copied into its inbox, in run order (what routing would have put
    /// there), and the outboxes become spares.
    pub(crate) fn end_before(&mut self, tick: u64, slots: &mut [AgentSlot]) {
        match self.since {
            Some(since) if since < tick => {}
            _ => return,
        }
        let per_part = self.per_part.max(1);
        for (p, part) in self.parts.iter().enumerate() {
            for (r, slot) in slots.iter_mut().skip(p * per_part).take(per_part).enumerate() {
                if std::mem::take(&mut slot.routed_held) {
                    let to = slot.id;
                    RoutedRun { outboxes: &self.outboxes, places: part.run(r), to, in_order: self.in_order }.copy_into(&mut slot.inbox);
                }
            }
        }
        debug_assert!(slots.iter().all(|s| !s.routed_held), "a marked slot past the grouping");
        self.since = None;
        for (_, mut outbox) in self.outboxes.drain(..) {
            outbox.clear();
            self.spare.push(outbox);
        }
        // The grouping's capacity past the retained bound goes back (the spares trim
        // themselves: `Mailbox::clear`).
        if self.parts.iter().map(ByRecipient::capacity_bytes).sum::<usize>() > crate::limits::MAX_RETAINED_ROUTE_INDEX_BYTES {
            self.parts = Vec::new();
        }
    }
}

/// One recipient's held run: messages in their senders' outboxes.
#[derive(Clone, Copy)]
pub(crate) struct RoutedRun<'a> {
    outboxes: &'a [(usize, Mailbox)],
    places: &'a [Grouped],
    /// The recipient.
    to: crate::bus::AgentId,
    /// Known to be in canonical delivery order (`HeldRoutes::hold`).
    in_order: bool,
}

impl<'a> RoutedRun<'a> {
    /// The `k`-th message: its header from the grouping, its payload from its sender's arena
    /// (the envelope there is not read: it says the same, which debug builds check).
    #[inline]
    fn message(&self, k: usize) -> Option<MessageRef<'a>> {
        self.places.get(k)?.message(self.outboxes, self.to)
    }

    /// Asks for every message of the run (envelope and payload; a hint only).
    #[inline]
    pub(crate) fn prefetch_all(&self) {
        for k in 0..self.places.len() {
            self.prefetch_one(k);
        }
    }

    #[inline]
    fn prefetch_one(&self, k: usize) {
        if let Some(g) = self.places.get(k) {
            if let Some((_, outbox)) = self.outboxes.get(g.p as usize) {
                let at = outbox.payload_address(g.at as usize);
                // (A 64-byte payload spans two lines but for one start in 64.)
                crate::scheduler::prefetch(&[at, at.wrapping_add(g.len.saturating_sub(1) as usize)]);
            }
        }
    }

    /// Whether the run is in canonical delivery order (`Mailbox::sort_for_delivery` would not
    /// move it): then a turn may take it as it is.
    pub(crate) fn in_delivery_order(&self) -> bool {
        let from = |g: &Grouped| self.outboxes.get(g.p as usize).map_or(usize::MAX, |(sender, _)| *sender);
        let key = |g: &Grouped| (std::cmp::Reverse(g.priority), from(g), g.seq);
        debug_assert!(!self.in_order || self.places.is_sorted_by_key(key), "a run held as in order is not");
        self.in_order || self.places.is_sorted_by_key(key)
    }

    /// Appends the run to `inbox`, in order.
    pub(crate) fn copy_into(&self, inbox: &mut Mailbox) {
        for k in 0..self.places.len() {
            if let Some(m) = self.message(k) {
                inbox.push(m);
            }
        }
    }
}

impl HeldRun for RoutedRun<'_> {
    const EXTERNAL: bool = false;

    fn len(&self) -> usize {
        self.places.len()
    }

    #[inline]
    fn head(&self, k: usize) -> Option<(MessageRef<'_>, usize)> {
        let g = self.places.get(k)?;
        let (sender, _) = self.outboxes.get(g.p as usize)?;
        Some((MessageRef { from: *sender as u64 + 1, to: self.to, seq: g.seq, kind: g.kind, priority: g.priority, payload: &[] }, g.len as usize))
    }

    #[inline]
    fn read_payload(&self, k: usize, out: &mut [u8]) {
        if let Some(m) = self.message(k) {
            if let Some(out) = out.get_mut(..m.payload.len()) {
                out.copy_from_slice(m.payload);
            }
        }
    }

    #[inline]
    fn prefetch(&self, k: usize) {
        self.prefetch_one(k);
    }

    fn to_messages(&self, first: usize) -> Vec<Message> {
        (first..self.places.len()).filter_map(|k| self.message(k)).map(|m| m.to_message()).collect()
    }
}
