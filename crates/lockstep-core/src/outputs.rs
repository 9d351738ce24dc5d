//! What leaves a tick, each in a bounded queue (ARCHITECTURE.md, "Limits"): messages agents
//! sent to the host, dead letters, events, and, when attached, the outbound ring to JS with
//! its backlog. Past a limit an item is dropped, counted, and reported in a `dropped` event;
//! nothing that leaves is ever hashed (what the host drains, and when, is not an input).

use std::collections::VecDeque;

use crate::bus::{AgentId, DeadLetter, DeadLetterReason, Message};
use crate::event::Event;
use crate::limits::{
    MAX_DEAD_LETTERS, MAX_DEAD_LETTER_BYTES, MAX_HOST_MESSAGES, MAX_HOST_MESSAGE_BYTES, MAX_OUTBOUND_BACKLOG_BYTES, MAX_OUTBOUND_BACKLOG_RECORDS,
};
use crate::observe::MessageTap;
use crate::queue::BoundedQueue;
use crate::ring::{self, Producer, RingError};
use crate::scheduler::TickReport;

pub(crate) struct Outputs {
    /// Messages agents addressed to the host (id 0), in routing order.
    pub(crate) host_messages: BoundedQueue<Message>,
    pub(crate) dead_letters: BoundedQueue<DeadLetter>,
    /// The newest `max_events` events. A tick appends without trimming (its events are read
    /// by index once it ends) and trims at its end.
    pub(crate) events: VecDeque<Event>,
    max_events: usize,
    events_dropped: u64,
    /// Events that left the front of `events` (drained or dropped) over the runtime's life:
    /// the sequence number of `events[0]` (observers read events from a cursor, `events_since`).
    events_removed: u64,
    /// Copies of the messages to and from watched agents (observers only; None: costs nothing).
    pub(crate) tap: Option<Box<MessageTap>>,
    /// The messages of the tick being traced, by agent (a journal cursor's `messages_at`).
    pub(crate) trace: Option<crate::observe::TickTrace>,
    ring: OutboundRing,
}

/// The core→JS ring, when attached, and what did not fit it yet.
#[derive(Default)]
struct OutboundRing {
    producer: Option<Producer>,
    /// Records that did not fit the ring yet, oldest first, bounded by
    /// `MAX_OUTBOUND_BACKLOG_RECORDS`/`_BYTES`. When it is full, messages for the host wait in
    /// the host queue instead (still drainable) and copies of events are dropped and counted
    /// (the events themselves stay in the event queue).
    backlog: VecDeque<OutRecord>,
    backlog_bytes: usize,
    dropped: u64,
    dropped_total: u64,
}

enum OutRecord {
    /// A message for the host: kept whole, so it can go back to the host queue if the ring
    /// breaks before it is written (never lost).
    Message(Message),
    Other {
        kind_of_record: u16,
        agent: AgentId,
        payload: Vec<u8>,
    },
}

impl OutRecord {
    fn payload_len(&self) -> usize {
        match self {
            Self::Message(m) => m.payload.len(),
            Self::Other { payload, .. } => payload.len(),
        }
    }
}

impl OutboundRing {
    fn backlog_has_room(&self, bytes: usize) -> bool {
        self.backlog.len() < MAX_OUTBOUND_BACKLOG_RECORDS && self.backlog_bytes.saturating_add(bytes) <= MAX_OUTBOUND_BACKLOG_BYTES
    }

    fn push_backlog(&mut self, r: OutRecord) {
        self.backlog_bytes += r.payload_len();
        self.backlog.push_back(r);
    }

    /// A copy of an event or a tick record: kept if the backlog has room and the ring could
    /// ever hold it, else counted. An event's JSON can outgrow a small ring (a control
    /// character is six bytes of JSON: a 4 KiB panic message, a 24 KiB copy); writing it would
    /// break the ring for good, so any agent could stop it (red team 10).
    fn push_copy(&mut self, r: OutRecord) {
        let fits = self.producer.as_ref().is_some_and(|p| ring::record_bytes(r.payload_len()) <= p.capacity());
        if fits && self.backlog_has_room(r.payload_len()) {
            self.push_backlog(r);
        } else {
            self.dropped += 1;
            self.dropped_total += 1;
        }
    }
}

impl Outputs {
    pub(crate) fn new(max_events: usize) -> Self {
        Self {
            host_messages: BoundedQueue::new(MAX_HOST_MESSAGES, MAX_HOST_MESSAGE_BYTES),
            dead_letters: BoundedQueue::new(MAX_DEAD_LETTERS, MAX_DEAD_LETTER_BYTES),
            events: VecDeque::new(),
            max_events,
            events_dropped: 0,
            events_removed: 0,
            tap: None,
            trace: None,
            ring: OutboundRing::default(),
        }
    }

    /// An event outside a tick (kept within `max_events` at once).
    pub(crate) fn push_event(&mut self, e: Event) {
        self.events.push_back(e);
        self.trim_events();
    }

    /// Keeps the newest `max_events` events: O(1) per event dropped (a ring buffer).
    pub(crate) fn trim_events(&mut self) {
        while self.events.len() > self.max_events {
            self.events.pop_front();
            self.events_dropped += 1;
            self.events_removed += 1;
        }
    }

    /// Takes every queued event, oldest first.
    pub(crate) fn drain_events(&mut self) -> Vec<Event> {
        self.events_removed += self.events.len() as u64;
        self.events.drain(..).collect()
    }

    /// The queued events from sequence number `cursor` on (at most `max`), without draining
    /// them: (the sequence number of the first queued event, the events). Events before the
    /// first queued one were drained or dropped; a cursor past the end reads none.
    pub(crate) fn events_since(&self, cursor: u64, max: usize) -> (u64, impl Iterator<Item = &Event>) {
        let first = self.events_removed;
        let skip = cursor.saturating_sub(first).min(self.events.len() as u64) as usize;
        (first, self.events.iter().skip(skip).take(max))
    }

    /// The sequence number the next event will take (one past the newest queued).
    pub(crate) fn events_end(&self) -> u64 {
        self.events_removed + self.events.len() as u64
    }

    pub(crate) fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// A dead letter: announced by its event and kept for draining (the bounded queue counts
    /// it as dropped when full; the caller hashed it if the tick hash covers it).
    pub(crate) fn dead_letter(&mut self, tick: u64, reason: DeadLetterReason, message: Message) {
        self.events.push_back(Event::DeadLetter { tick, reason, from: message.from, to: message.to, seq: message.seq, kind: message.kind });
        let bytes = message.payload.len();
        self.dead_letters.push(DeadLetter { tick, reason, message }, bytes);
    }

    /// A message for the host; past the queue's limit it is counted as dropped and reported
    /// in a `dropped` event at the end of the tick.
    pub(crate) fn host_message(&mut self, m: Message) {
        let bytes = m.payload.len();
        self.host_messages.push(m, bytes);
    }

    /// One `dropped` event per bounded queue that refused items since the last report.
    pub(crate) fn report_drops(&mut self, tick: u64) {
        for (queue, count) in [
            ("dead_letters", self.dead_letters.take_dropped()),
            ("host_messages", self.host_messages.take_dropped()),
            ("outbound_ring", std::mem::take(&mut self.ring.dropped)),
        ] {
            if count > 0 {
                tracing::warn!(target: "lockstep::runtime", "{count} items dropped: the {queue} queue is full (drain it more often)");
                self.events.push_back(Event::Dropped { tick, queue, count });
            }
        }
    }

    /// Items each bounded queue refused over the runtime's life: (dead letters, messages to
    /// the host, outbound-ring records).
    pub(crate) fn dropped_totals(&self) -> (u64, u64, u64) {
        (self.dead_letters.dropped_total(), self.host_messages.dropped_total(), self.ring.dropped_total)
    }

    /// Messages for the host not yet drained, as a snapshot stores them: those waiting in the
    /// outbound ring's backlog first (they left the host queue earlier), then the host queue.
    pub(crate) fn undrained_host_messages(&self) -> Vec<Message> {
        let backlog = self.ring.backlog.iter().filter_map(|r| match r {
            OutRecord::Message(m) => Some(m.clone()),
            OutRecord::Other { .. } => None,
        });
        backlog.chain(self.host_messages.iter().cloned()).collect()
    }

    /// Items dropped over the runtime's life: dead letters, host messages, outbound-ring
    /// records, events.
    pub(crate) fn dropped_counts(&self) -> [u64; 4] {
        let (d, h, r) = self.dropped_totals();
        [d, h, r, self.events_dropped]
    }

    /// The counts of `dropped_counts`, restored.
    pub(crate) fn set_dropped_counts(&mut self, [d, h, r, e]: [u64; 4]) {
        self.dead_letters.set_dropped_total(d);
        self.host_messages.set_dropped_total(h);
        self.ring.dropped_total = r;
        self.events_dropped = e;
    }

    // ----- the outbound ring --------------------------------------------------------------------

    pub(crate) fn attach_ring(&mut self, producer: Producer) {
        self.ring.producer = Some(producer);
    }

    pub(crate) fn ring_backlog(&self) -> usize {
        self.ring.backlog.len()
    }

    /// Writes the backlog, then this tick's host messages, the copies of its events (those
    /// from `events_before` on) and its TICK record, into the outbound ring if attached.
    pub(crate) fn feed_ring(&mut self, report: &TickReport, events_before: usize, tick: u64) {
        if self.ring.producer.is_none() {
            return;
        }
        // Messages move only while the backlog has room; the rest wait in the host queue.
        while let Some(m) = self.host_messages.pop_front() {
            if !self.ring.backlog_has_room(m.payload.len()) {
                let bytes = m.payload.len();
                self.host_messages.push_front(m, bytes);
                break;
            }
            self.ring.push_backlog(OutRecord::Message(m));
        }
        for e in self.events.iter().skip(events_before) {
            let copy = OutRecord::Other { kind_of_record: ring::TYPE_EVENT, agent: e.agent().unwrap_or(0), payload: e.to_json().into_bytes() };
            self.ring.push_copy(copy);
        }
        let mut tick_payload = report.tick.to_le_bytes().to_vec();
        tick_payload.extend_from_slice(&report.hash.0);
        self.ring.push_copy(OutRecord::Other { kind_of_record: ring::TYPE_TICK, agent: 0, payload: tick_payload });
        self.flush_ring(tick);
    }

    /// Moves as much of the backlog into the outbound ring as fits; returns what is left.
    pub(crate) fn flush_ring(&mut self, tick: u64) -> usize {
        let Some(producer) = self.ring.producer.as_mut() else { return 0 };
        while let Some(r) = self.ring.backlog.front() {
            let pushed = match r {
                OutRecord::Message(m) => producer.try_push(ring::TYPE_MESSAGE, m.kind, m.priority, m.from, &m.payload),
                OutRecord::Other { kind_of_record, agent, payload } => producer.try_push(*kind_of_record, 0, 0, *agent, payload),
            };
            match pushed {
                Ok(()) => {
                    if let Some(r) = self.ring.backlog.pop_front() {
                        self.ring.backlog_bytes -= r.payload_len();
                    }
                }
                Err(RingError::Full) => break,
                Err(e) => {
                    self.ring_broken(tick, e);
                    break;
                }
            }
        }
        self.ring.backlog.len()
    }

    /// The ring refused a record for good (too large for it, or the JS side corrupted the
    /// indices): report it and stop writing. Messages not yet written go back to the front of
    /// the host queue, in order, so a broken ring loses none (issue 9); copies of events are
    /// dropped (the events stay in the event queue).
    fn ring_broken(&mut self, tick: u64, e: RingError) {
        let detail = e.to_string();
        self.ring.producer = None;
        // Put back at the front, past the host queue's limit if need be: these were already
        // accepted (pushing them through the limit dropped the backlog's share past it, up to
        // ~256 MiB of replies). The overshoot is bounded by the backlog's own limit, and later
        // pushes are refused until JS drains.
        let returned: Vec<Message> = std::mem::take(&mut self.ring.backlog)
            .into_iter()
            .filter_map(|r| match r {
                OutRecord::Message(m) => Some(m),
                OutRecord::Other { .. } => None,
            })
            .collect();
        for m in returned.into_iter().rev() {
            let bytes = m.payload.len();
            self.host_messages.push_front(m, bytes);
        }
        self.ring.backlog_bytes = 0;
        self.push_event(Event::RingError { tick, detail });
    }
}
