//! One tick: deliver each agent's inbox in canonical order, step it, then route what every
//! agent sent, in agent-id order, into the inboxes of the next tick.
//!
//! The tick's task queue is ordered by (graph level ascending, priority descending, agent id):
//! agents run in *phases* (`agents::Phase`), one per level and priority; an agent runs after
//! every agent it depends on in the workflow graph (`graph`), and agents spawned with a higher
//! priority run before the others of their level. What an agent sends to an agent of a later
//! phase is delivered in the same tick (a pipeline: sensors → planners → actuators in one
//! tick); messages to an agent whose phase has already run wait for the next tick.
//!
//! Per phase, `hold_barriers` first decides (sequentially) which agents with trigger `All`
//! wait this tick; then `run_agents` may run on a worker pool: each agent touches only its
//! own slot. `settle` is sequential and walks the phase's agents in id order, so the tick
//! hash, the routing and the events never depend on the number of workers or on thread
//! timing.

use std::sync::Mutex;

use crate::bus::{AgentId, DeadLetterReason, Message, MessageRef};
use crate::error::Digest;
use crate::event::Event;
use crate::fault::{AbiCall, AgentState, Fault};
use crate::held_routes::{ByRecipient, Grouped, HeldRoutes, HeldRun, Place, Routed, RoutedRun};
use crate::mailbox::Mailbox;
use crate::outputs::Outputs;
use crate::sandbox::{AgentInstance, Outcome, StepContext, Suspended};
use crate::tick_hash::{AgentTickDigest, TickHasher};
use crate::work_share::share_out;

/// Below this many running agents a tick runs on the calling thread: waking pool threads
/// costs more than stepping a few dozen small agents (measured: ~0.8 µs vs ~9 µs for 50).
pub const PARALLEL_MIN_AGENTS: usize = 64;
/// ...unless the last tick burned this much fuel, a sign that the agents do real work.
pub const PARALLEL_MIN_FUEL: u64 = 2_000_000;
/// In a tick of several phases (graph levels, priorities), a phase runs on the pool only with
/// this many agents, or `PARALLEL_PHASE_MIN_FUEL` of estimated work: waking the pool costs
/// every phase that uses it (measured, bench_dag: 10 levels of 100 trivial agents on 2 workers
/// ticked ~10% slower than on one thread).
pub const PARALLEL_PHASE_MIN_AGENTS: usize = 256;
/// The phase's share of the last tick's fuel (by its agents) that makes it worth the pool.
pub const PARALLEL_PHASE_MIN_FUEL: u64 = 250_000;

/// Whether one phase of `members` agents runs on the pool, in a parallel tick of `phases`
/// phases, `running` agents and `last_fuel` burned the tick before. A single chunk never does
/// (one thread would take it anyway); a tick of one phase (no graph, one priority) uses the
/// pool as it always has; otherwise the phase must have enough agents or work. Never changes
/// results.
pub(crate) fn phase_uses_pool(members: usize, phases: usize, running: usize, last_fuel: u64) -> bool {
    if members <= CHUNK_AGENTS {
        return false;
    }
    if phases <= 1 || members >= PARALLEL_PHASE_MIN_AGENTS {
        return true;
    }
    let share = last_fuel as u128 * members as u128 / running.max(1) as u128;
    share >= PARALLEL_PHASE_MIN_FUEL as u128
}

/// One agent's place in the runtime. Slots are never removed: index = id - 1.
///
/// `repr(C)`, the fields every tick of a running agent reads or writes first (and
/// `prefetch`, which the tick loop reads a few agents ahead, so that line is in cache by the
/// agent's turn), and aligned to a cache line: with 10,000 agents a slot's lines are gone from
/// the caches by its next tick, and Rust's own field order spread what a quiet agent's tick
/// touches over the whole slot (8 or 9 lines of it). Now that is the slot's first three lines,
/// wherever the slot lies in the array (ARCHITECTURE.md, "The tick's path", step 3;
/// BENCHMARKS.md, 2026-11-27, twelfth session: 22.8 → 19.4 missed lines per agent-tick).
#[repr(C, align(64))]
pub struct AgentSlot {
    /// Where the agent's next turn first touches memory, kept in the contiguous slot array so
    /// the tick loop can prefetch it ahead of time (`TurnAddresses`).
    prefetch: TurnAddresses,
    pub instance: Option<Box<AgentInstance>>,
    /// A time-sliced agent's call that used up its slice (`sandbox::Suspended`): it owns the
    /// instance (`instance` is `None` meanwhile) until the call ends in a later tick.
    pub(crate) suspended: Option<Box<Suspended>>,
    pub id: AgentId,
    pub steps: u64,
    pub messages_received: u64,
    /// Set by `hold_barriers` for this tick's phase: a trigger-`All` agent whose upstream
    /// agents have not all sent it something; it does not run, and `settle` hashes the wait.
    pub(crate) waiting: bool,
    /// Whether inbound-ring records routed to this agent were left in the ring
    /// (`HeldInboxes`, which knows which). `route_grouped` sets it only when they are all it
    /// would have put into the agent's empty inbox; the agent's turn in the tick's first phase
    /// takes them from the ring, or they are copied into its inbox (`HeldInboxes::copy_into`)
    /// before anything else is. (A flag, in the padding after `waiting`: a range here made the
    /// slot a line longer.)
    pub(crate) ring_held: bool,
    /// Whether messages routed to this agent were left in their senders' outboxes
    /// (`HeldRoutes`, which knows which): set only when they are all its empty inbox would
    /// hold (`takes_routed`); its turn in the next tick's first phase takes them from there,
    /// or they are copied into its inbox (`HeldRoutes::end_before`) before anything else is.
    pub(crate) routed_held: bool,
    pub state: AgentState,
    /// Messages waiting for the agent's next turn, payloads in the mailbox's arena (at most
    /// `abi::MAX_INBOX_MESSAGES` messages and `abi::MAX_INBOX_BYTES` of payload).
    pub(crate) inbox: Mailbox,
    /// Its first fields (`delivered`, `news`, `fuel`) are hot; the rest only when `news`.
    pub(crate) out: AgentTickOutput,
    /// Spawn priority: the phase of the tick this agent runs in (higher runs first).
    pub phase: i32,
    pub module: Digest,
    pub messages_sent: u64,
    /// Memory size and fuel burned when the instance was released (what `inspect` reports
    /// for a stopped agent).
    pub last_memory_bytes: usize,
    pub last_fuel_consumed: u64,
    /// The messages of a suspended receive call, delivery order.
    pub(crate) in_flight: Vec<Message>,
}

/// What one agent did in phase 1, consumed by phase 2.
///
/// `delivered` and `fuel` are written every tick; everything after `news` is empty unless
/// `news` is set, so a quiet agent's tick touches only the first line of this (`run_tick`
/// clears the rest only after a tick that set `news`).
#[derive(Default)]
#[repr(C)]
pub(crate) struct AgentTickOutput {
    pub delivered: u32,
    /// Whether the tick put anything into the fields below: set by every write to them (a
    /// time-sliced tick sets it when it ends, from what it put there); `run_tick` clears it and
    /// them at the start of the agent's next tick (a waiting or stopped agent keeps it, and
    /// `settle` visits those anyway).
    pub news: bool,
    pub fuel: u64,
    /// Digest of (delivered count, sent messages, fault) when any is non-empty.
    pub digest: Option<[u8; 16]>,
    pub fault: Option<Fault>,
    /// Messages that were in the inbox when the agent faulted, the fatal one first.
    pub undelivered: Vec<Message>,
    /// What the agent sent and logged, moved out of its store while that is hot in this
    /// worker's cache, so phase 2 walks only the contiguous slot array.
    pub sent: Mailbox,
    pub logs: Vec<crate::host::LogLine>,
    pub infer: Vec<crate::host::InferRequest>,
    /// The messages delivered, copied only while the runtime traces a tick (a journal cursor's
    /// `messages_at`).
    pub received: Vec<Message>,
    /// A time-sliced agent whose call is suspended at the end of this tick: which call, and
    /// whether it was suspended in this tick first.
    pub suspended: Option<(AbiCall, bool)>,
    /// A suspended call that ended this tick: which, and over how many ticks it was suspended.
    pub resumed: Option<(AbiCall, u64)>,
}

impl AgentTickOutput {
    /// Empties everything after `news` (keeping the vectors' capacity).
    fn clear_news(&mut self) {
        self.digest = None;
        self.fault = None;
        self.undelivered.clear();
        self.sent.clear();
        self.logs.clear();
        self.infer.clear();
        self.received.clear();
        self.suspended = None;
        self.resumed = None;
    }

    /// Whether everything after `news` is empty (what `news` unset promises).
    fn is_quiet(&self) -> bool {
        self.digest.is_none()
            && self.fault.is_none()
            && self.undelivered.is_empty()
            && self.sent.is_empty()
            && self.logs.is_empty()
            && self.infer.is_empty()
            && self.received.is_empty()
            && self.suspended.is_none()
            && self.resumed.is_none()
    }
}

impl AgentSlot {
    pub fn new(id: AgentId, phase: i32, module: Digest, instance: Box<AgentInstance>) -> Self {
        let prefetch = TurnAddresses::of(&instance);
        Self { prefetch, instance: Some(instance), ..Self::without_instance(id, phase, module) }
    }

    /// A running slot with no instance yet and nothing to prefetch.
    fn without_instance(id: AgentId, phase: i32, module: Digest) -> Self {
        Self {
            prefetch: TurnAddresses::default(),
            id,
            phase,
            module,
            state: AgentState::Running,
            instance: None,
            inbox: Mailbox::default(),
            steps: 0,
            messages_received: 0,
            messages_sent: 0,
            last_memory_bytes: 0,
            last_fuel_consumed: 0,
            out: AgentTickOutput::default(),
            waiting: false,
            ring_held: false,
            routed_held: false,
            suspended: None,
            in_flight: Vec::new(),
        }
    }

    /// A slot rebuilt from a snapshot (`snapshot/runtime.rs` sets its counters and inbox).
    pub(crate) fn restored(id: AgentId, phase: i32, module: Digest, state: AgentState, instance: Option<Box<AgentInstance>>) -> Self {
        let mut slot = match instance {
            Some(i) => Self::new(id, phase, module, i),
            None => Self::without_instance(id, phase, module),
        };
        slot.state = state;
        slot
    }

    /// Drops a stopped agent's instance (its memory goes back to the allocator) and the
    /// buffers it kept for reuse: a dead agent keeps only its small record for `inspect`.
    pub(crate) fn release(&mut self) {
        if let Some(i) = self.instance.take() {
            self.remember_usage(&i);
        }
        // A suspended call ends with it (its instance goes with its future).
        if let Some(s) = self.suspended.take() {
            self.last_memory_bytes = s.memory_bytes;
            self.last_fuel_consumed = s.fuel_consumed;
        }
        self.in_flight = Vec::new();
        self.inbox.release();
        self.out.sent.release();
    }

    /// Puts `m` into the inbox, or says why it cannot go there: the agent is not running, or
    /// its inbox holds `abi::MAX_INBOX_MESSAGES` messages or would pass `MAX_INBOX_BYTES`.
    /// The one admission rule of both sequential and parallel routing.
    #[inline]
    fn accept(&mut self, m: MessageRef<'_>) -> Result<(), DeadLetterReason> {
        self.admits(m.payload.len())?;
        self.inbox.push(m);
        Ok(())
    }

    /// `accept` for a message whose `len` payload bytes `fill` writes straight into the inbox
    /// (`head`'s payload is empty): a held ring record, read out of the ring once, here.
    #[inline]
    fn accept_with(&mut self, head: MessageRef<'_>, len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Result<(), DeadLetterReason> {
        self.admits(len)?;
        self.inbox.push_with(head, len, fill);
        Ok(())
    }

    /// Whether `count` messages from the host of `bytes` payload in all, routed to this agent
    /// one by one, would all be admitted into its inbox and be all it holds: then they may stay
    /// in the inbound ring until its turn (`HeldInboxes`). (Into an empty inbox, `admits`
    /// takes the k-th of them while k < `MAX_INBOX_MESSAGES` and the bytes so far fit.)
    #[inline]
    fn takes_held(&self, count: usize, bytes: usize) -> bool {
        self.state.is_running() && self.inbox.is_empty() && !self.ring_held && count <= crate::abi::MAX_INBOX_MESSAGES && bytes <= crate::abi::MAX_INBOX_BYTES
    }

    /// Whether a run of `count` routed messages, routed to this agent one by one, would all be
    /// admitted into its inbox and be all it holds: then they may stay in their senders'
    /// outboxes until its turn (`HeldRoutes`). (Into an empty inbox, `admits` takes any
    /// `MAX_HELD_RUN` messages: their payloads fit `MAX_INBOX_BYTES` whatever their lengths.)
    #[inline]
    fn takes_routed(&self, count: usize) -> bool {
        self.state.is_running() && self.inbox.is_empty() && !self.ring_held && !self.routed_held && count <= crate::held_routes::MAX_HELD_RUN
    }

    /// `accept`'s rule: whether a message of `len` payload bytes may enter the inbox now.
    #[inline]
    fn admits(&self, len: usize) -> Result<(), DeadLetterReason> {
        match self.state {
            AgentState::Running => {
                let inbox = &self.inbox;
                if inbox.len() < crate::abi::MAX_INBOX_MESSAGES && inbox.payload_bytes() + len <= crate::abi::MAX_INBOX_BYTES {
                    Ok(())
                } else {
                    Err(DeadLetterReason::RecipientInboxFull)
                }
            }
            AgentState::Faulted(_) => Err(DeadLetterReason::RecipientFaulted),
            _ => Err(DeadLetterReason::RecipientStopped),
        }
    }

    /// Whether `settle` must visit the agent after its run (`PhaseRun::busy`): it waited at a
    /// barrier, has a digest (it was handed, received, sent, asked or faulted something), sent,
    /// logged or asked anything, was traced, suspended or resumed a call, or stopped running.
    /// An agent without news adds only fuel, which `run_slots` sums.
    #[inline]
    fn has_news(&self) -> bool {
        self.waiting || self.out.news || !self.state.is_running()
    }

    /// Keeps the instance's memory size and fuel for `inspect` after it is gone.
    pub(crate) fn remember_usage(&mut self, instance: &AgentInstance) {
        self.last_memory_bytes = instance.memory_bytes();
        self.last_fuel_consumed = instance.fuel_consumed;
    }

    /// Whether the agent holds an instance, in its slot or inside its suspended call.
    pub(crate) fn is_live(&self) -> bool {
        self.instance.is_some() || self.suspended.is_some()
    }

    /// Its memory size and total fuel, whether it runs, is suspended (as of its call's start)
    /// or stopped (as of then).
    pub(crate) fn usage(&self) -> (usize, u64) {
        match (&self.instance, &self.suspended) {
            (Some(i), _) => (i.memory_bytes(), i.fuel_consumed),
            (None, Some(s)) => (s.memory_bytes, s.fuel_consumed),
            _ => (self.last_memory_bytes, self.last_fuel_consumed),
        }
    }

    /// Runs one agent's tick. Touches nothing but this slot.
    #[inline(always)]
    fn run_tick(&mut self, turn: &Turn<'_>) {
        let Turn { tick, max_agent_id, trace, held, routes } = *turn;
        if self.waiting {
            return; // (its held records, if any, go into its inbox after the phase)
        }
        // (Off the quiet agent's path: most agents of most ticks hold nothing.)
        let from_held = if self.ring_held || self.routed_held { self.claim_held(trace, held, routes) } else { None };
        if self.suspended.is_some() || self.instance.as_ref().is_some_and(|i| i.fuel_per_tick > 0) {
            if self.state.is_running() {
                self.run_sliced_tick(tick, max_agent_id, trace);
            }
            return;
        }
        let Some(instance) = self.instance.as_mut().filter(|_| self.state.is_running()) else { return };
        // Filled in place: built on the stack and moved into the slot, this ~250-byte struct
        // was a memmove per agent per tick (4.5% of a 1,000-counter tick, perf). `settle`
        // took what the last tick left in it; what it keeps is capacity (`sent`).
        let out = &mut self.out;
        out.delivered = 0;
        out.fuel = 0;
        if std::mem::take(&mut out.news) {
            out.clear_news();
        }
        debug_assert!(out.is_quiet(), "`news` unset with something in `out`");
        instance.begin_tick();
        let fuel_before = instance.fuel_consumed;
        let inbox = &mut self.inbox;
        let mut digest = AgentTickDigest::default();
        let (delivered, result) = match &from_held {
            Some(held) => held.deliver(instance, tick, &mut digest, &mut out.undelivered),
            None => {
                inbox.sort_for_delivery();
                digest.external_messages(inbox.iter());
                // Most agents of most ticks receive nothing: no call into `deliver` for them.
                if inbox.is_empty() {
                    (0, Ok(()))
                } else {
                    instance.deliver(tick, inbox)
                }
            }
        };
        out.delivered = delivered as u32;
        if let Err(fault) = result {
            out.fault = Some(fault);
            if from_held.is_none() {
                out.undelivered = inbox.to_messages(delivered..inbox.len());
            } // (else `deliver_held` filled it)
            out.news = true;
        }
        if trace {
            out.received = inbox.to_messages(0..delivered);
            out.news |= !out.received.is_empty();
        }
        if out.fault.is_none() {
            let ctx = StepContext { tick, inbox_len: out.delivered, max_agent_id };
            if let Err(fault) = instance.call_step(&ctx) {
                out.fault = Some(fault);
                out.news = true;
            }
            self.steps += 1;
        }
        if !inbox.is_empty() {
            inbox.clear(); // keeps the arena for the next tick
        }
        self.messages_received += out.delivered as u64;
        out.fuel = instance.fuel_consumed - fuel_before;
        if let Some(d) = digest.finish(self.id, out.delivered, &instance.host().outbox, &instance.host().infer_requests, out.fault.as_ref()) {
            out.digest = Some(d);
            out.news = true;
        }
        // What it sent goes to `out.sent`; the outbox gets `out.sent`'s old (empty: `settle`
        // routed it, or `clear_news` cleared it) vector, keeping its capacity for the agent's
        // next tick.
        let host = instance.host_mut();
        if !host.outbox.is_empty() {
            std::mem::swap(&mut out.sent, &mut host.outbox);
            host.outbox.clear();
            out.news = true;
        }
        if !host.logs.is_empty() {
            std::mem::swap(&mut out.logs, &mut host.logs);
            out.news = true;
        }
        if !host.infer_requests.is_empty() {
            std::mem::swap(&mut out.infer, &mut host.infer_requests);
            out.news = true;
        }
    }
}

/// Held messages a turn takes straight from where they are (`AgentSlot::claim_held`).
enum HeldTurn<'a> {
    Ring(RingRun<'a>),
    Routes(RoutedRun<'a>),
}

impl HeldTurn<'_> {
    /// `AgentInstance::deliver_held` of them (hashed as they are copied when they come from
    /// the host: the bytes `external_messages` feeds).
    #[inline(never)]
    fn deliver(&self, instance: &mut AgentInstance, tick: u64, digest: &mut AgentTickDigest, undelivered: &mut Vec<Message>) -> (usize, Result<(), Fault>) {
        match self {
            HeldTurn::Ring(run) => instance.deliver_held(tick, run, digest, undelivered),
            HeldTurn::Routes(run) => instance.deliver_held(tick, run, digest, undelivered),
        }
    }
}

impl AgentSlot {
    /// Held ring records and routed messages for this turn: delivered straight from where
    /// they are by a plain ABI 2 turn; any other turn gets them copied into its inbox first, as
    /// routing would have (then `None`). (An agent is never both: routing holds nothing for a
    /// marked slot.)
    #[inline(never)]
    fn claim_held<'a>(&mut self, trace: bool, held: Option<&'a HeldInboxes<'a>>, routes: Option<&'a HeldRoutes>) -> Option<HeldTurn<'a>> {
        let plain = |slot: &Self| {
            slot.suspended.is_none()
                && slot.state.is_running()
                && slot.inbox.is_empty()
                && !trace
                && slot.instance.as_ref().is_some_and(|i| i.fuel_per_tick == 0 && i.abi_version() >= 2)
        };
        let slot = (self.id as usize).wrapping_sub(1);
        let mut turn = None;
        if let Some(h) = held.filter(|_| self.ring_held) {
            self.ring_held = false;
            let indices = h.indices(slot);
            if plain(self) {
                turn = Some(HeldTurn::Ring(RingRun { held: h, indices }));
            } else {
                h.copy_into(indices, &mut self.inbox);
            }
        }
        if let Some(r) = routes.filter(|_| self.routed_held) {
            self.routed_held = false;
            let run = r.run(slot);
            if plain(self) && run.in_delivery_order() {
                turn = Some(HeldTurn::Routes(run));
            } else {
                run.copy_into(&mut self.inbox);
            }
        }
        turn
    }

    /// One tick of a time-sliced agent (docs/ABI.md, "Time slicing"): a suspended call goes on
    /// first, for one slice; if it was a receive call and ends, the turn goes on. A turn
    /// delivers the inbox in canonical order (a call per message, or per batch with ABI 2),
    /// then steps, each call starting with the agent's whole per-call budget; a call that uses
    /// up the slice is suspended and ends the turn, and once the turn has burned a slice no
    /// new call starts: what is left of it (messages, the step) waits for the next tick.
    fn run_sliced_tick(&mut self, tick: u64, max_agent_id: u64, trace: bool) {
        // (`news` is worked out when the tick ends: `end_suspended`, `end_sliced_tick`)
        let mut out = AgentTickOutput::default();
        let mut digest = AgentTickDigest::default();
        // Fuel burned this tick, as far as the slice rule counts it: a call that ends after
        // `slices` suspensions burned one slice in each tick before this one.
        let mut used = 0u64;
        let mut delivered: Vec<Message> = Vec::new();
        let mut instance = match self.suspended.take() {
            Some(s) => {
                let (call, slice) = (s.call, s.fuel_per_tick);
                match s.resume(tick) {
                    Outcome::Suspended(s) => {
                        self.suspended = Some(s);
                        out.suspended = Some((call, false));
                        out.digest = digest.finish_sliced(self.id, 0, &Mailbox::default(), &[], None, (out.suspended, None));
                        self.set_sliced_out(out);
                        return;
                    }
                    Outcome::Done { instance, result, fuel, slices } => {
                        out.fuel += fuel;
                        used = fuel.saturating_sub(slices.saturating_mul(slice));
                        out.resumed = Some((call, slices));
                        let mut in_flight = std::mem::take(&mut self.in_flight);
                        let mut instance = instance;
                        match result {
                            Ok(()) if call == AbiCall::Receive => {
                                out.delivered += in_flight.len() as u32;
                                delivered.append(&mut in_flight);
                                Self::collect(&mut instance, &mut out);
                                instance
                            }
                            Ok(()) => {
                                // The step ended: that was this tick's turn.
                                Self::collect(&mut instance, &mut out);
                                return self.end_sliced_tick(instance, out, digest, delivered, trace);
                            }
                            Err(fault) => {
                                let handled = if call == AbiCall::Receive { instance.handled(in_flight.len()) } else { 0 };
                                out.delivered += handled as u32;
                                out.undelivered = in_flight.split_off(handled.min(in_flight.len()));
                                delivered.append(&mut in_flight);
                                self.inbox.sort_for_delivery();
                                out.undelivered.extend(self.inbox.to_messages(0..self.inbox.len()));
                                self.inbox.clear();
                                out.fault = Some(fault);
                                Self::collect(&mut instance, &mut out);
                                return self.end_sliced_tick(instance, out, digest, delivered, trace);
                            }
                        }
                    }
                }
            }
            None => match self.instance.take() {
                Some(i) => i,
                None => return,
            },
        };
        let slice = instance.fuel_per_tick.max(1);
        instance.begin_tick();
        self.inbox.sort_for_delivery();
        let inbox = &mut self.inbox;
        let mut next = 0;
        while next < inbox.len() {
            if used >= slice {
                break;
            }
            let n = instance.prepare_receive(inbox.iter_from(next));
            if n == 0 {
                // Cannot happen: every queue that feeds an inbox bounds payloads to fit.
                out.fault = Some(Fault {
                    kind: crate::fault::FaultKind::HostCallViolation,
                    call: AbiCall::Receive,
                    tick,
                    detail: "a message does not fit the io buffer (runtime bug: please report)".into(),
                });
                out.undelivered = inbox.to_messages(next..inbox.len());
                inbox.clear();
                break;
            }
            digest.external_messages(inbox.iter_from(next).take(n));
            let arg = instance.io_arg();
            match crate::sandbox::start_call(instance, AbiCall::Receive, tick, arg, n as i32) {
                Outcome::Suspended(s) => {
                    self.in_flight = inbox.to_messages(next..next + n);
                    inbox.keep_from(next + n);
                    return self.end_suspended(s, AbiCall::Receive, out, digest, delivered, trace);
                }
                Outcome::Done { instance: back, result, fuel, .. } => {
                    instance = back;
                    out.fuel += fuel;
                    used = used.saturating_add(fuel);
                    Self::collect(&mut instance, &mut out);
                    match result {
                        Ok(()) => {
                            out.delivered += n as u32;
                            if trace {
                                delivered.extend(inbox.to_messages(next..next + n));
                            }
                            next += n;
                        }
                        Err(fault) => {
                            let handled = instance.handled(n);
                            out.delivered += handled as u32;
                            if trace {
                                delivered.extend(inbox.to_messages(next..next + handled));
                            }
                            out.undelivered = inbox.to_messages(next + handled..inbox.len());
                            inbox.clear();
                            out.fault = Some(fault);
                            return self.end_sliced_tick(instance, out, digest, delivered, trace);
                        }
                    }
                }
            }
        }
        if out.fault.is_some() {
            return self.end_sliced_tick(instance, out, digest, delivered, trace);
        }
        // What was delivered leaves the inbox; the rest (if the slice is burned) waits for
        // the next tick, ahead of what arrives meanwhile (delivery sorts them all again).
        inbox.keep_from(next);
        if !inbox.is_empty() || used >= slice {
            // The slice is burned: the rest of the turn waits for the next tick.
            return self.end_sliced_tick(instance, out, digest, delivered, trace);
        }
        let ctx = StepContext { tick, inbox_len: out.delivered, max_agent_id };
        let arg = instance.prepare_step(&ctx);
        self.steps += 1;
        match crate::sandbox::start_call(instance, AbiCall::Step, tick, arg, 0) {
            Outcome::Suspended(s) => self.end_suspended(s, AbiCall::Step, out, digest, delivered, trace),
            Outcome::Done { instance: mut back, result, fuel, .. } => {
                out.fuel += fuel;
                Self::collect(&mut back, &mut out);
                out.fault = result.err();
                self.end_sliced_tick(back, out, digest, delivered, trace);
            }
        }
    }

    /// A time-sliced tick's outputs become the slot's, with `news` worked out from them (the
    /// one way a sliced tick ends: every end goes through here, so none can forget `news`).
    fn set_sliced_out(&mut self, mut out: AgentTickOutput) {
        out.news = !out.is_quiet();
        self.out = out;
    }

    /// Moves what a call sent, logged and asked into `out` (so a call that is suspended
    /// later in the tick does not hold them back).
    fn collect(instance: &mut AgentInstance, out: &mut AgentTickOutput) {
        let host = instance.host_mut();
        out.sent.append(&mut host.outbox);
        out.logs.append(&mut host.logs);
        out.infer.append(&mut host.infer_requests);
    }

    /// The end of a sliced agent's tick whose `call` was just suspended: the call (and the
    /// instance inside it) waits in the slot.
    fn end_suspended(&mut self, s: Box<Suspended>, call: AbiCall, mut out: AgentTickOutput, digest: AgentTickDigest, delivered: Vec<Message>, trace: bool) {
        out.suspended = Some((call, true));
        self.suspended = Some(s);
        self.messages_received += out.delivered as u64;
        out.digest = digest.finish_sliced(self.id, out.delivered, &out.sent, &out.infer, None, (out.suspended, out.resumed));
        if trace {
            out.received = delivered;
        }
        self.set_sliced_out(out);
    }

    /// The end of a sliced agent's tick with its instance back in the slot.
    fn end_sliced_tick(&mut self, instance: Box<AgentInstance>, mut out: AgentTickOutput, digest: AgentTickDigest, delivered: Vec<Message>, trace: bool) {
        self.messages_received += out.delivered as u64;
        out.digest = digest.finish_sliced(self.id, out.delivered, &out.sent, &out.infer, out.fault.as_ref(), (None, out.resumed));
        if trace {
            out.received = delivered;
        }
        self.prefetch = TurnAddresses::of(&instance);
        self.instance = Some(instance);
        self.set_sliced_out(out);
    }
}

/// What a tick produced, for the caller and the replay log.
#[derive(Debug, Clone, Default)]
pub struct TickReport {
    /// The tick's number (0, 1, 2...).
    pub tick: u64,
    /// The tick hash, chained over every tick so far (docs/REPLAY.md).
    pub hash: Digest,
    /// Agents running when the tick started.
    pub agents_stepped: u32,
    /// Agents with trigger `All` that waited this tick (not every running upstream agent had
    /// sent them something): they neither received nor stepped.
    pub agents_waiting: u32,
    /// Time-sliced agents whose call is suspended at the end of the tick (it used up its
    /// slice and goes on next tick): they are counted in `agents_stepped` too.
    pub agents_suspended: u32,
    /// Messages delivered to `agent_receive` calls.
    pub messages_delivered: u64,
    /// Messages agents sent in the tick, routed to an inbox, the host or the dead-letter queue.
    pub messages_routed: u64,
    /// Messages dead-lettered in the tick (host messages included).
    pub dead_letters: u64,
    /// Agents that faulted in the tick.
    pub faults: u32,
    /// Fuel all agents burned in the tick (a time-sliced agent's suspended call counts all
    /// its fuel in the tick it ends).
    pub fuel: u64,
    /// Whether agents ran on the worker pool (`workers` > 1).
    pub parallel: bool,
    /// Threads the tick ran agents on (1: the calling thread alone). With fixed scaling all
    /// `workers` once there are at least `PARALLEL_MIN_AGENTS` (64) running agents or
    /// `PARALLEL_MIN_FUEL` (2,000,000) fuel burned the tick before; with `Auto`, what the work
    /// asks for (`WorkerScaling`).
    pub workers: u32,
    /// (agent id, first 8 bytes of its digest) for every agent active this tick, id order.
    pub agent_digests: Vec<(AgentId, [u8; 8])>,
    /// Inference requests agents made this tick, and the ONNX Runtime calls that served them.
    pub inference_requests: u64,
    /// ONNX Runtime calls that served them (fewer than the requests when batched). Both are 0
    /// in a replay, whose answers come from the log.
    pub inference_calls: u64,
    /// With a journal: the last tick whose TickEnd is on stable storage (this tick with
    /// `fsync: Tick`; an earlier one, or none yet, with group commit; `None` with `fsync: Off`
    /// until `sync_journal`). `None` without a journal.
    pub durable_tick: Option<u64>,
}

/// Where an agent's turn first touches memory, kept in its slot (`AgentSlot::prefetch`) so
/// the tick loop can ask for those lines a few agents ahead without reading anything else of
/// the agent: the addresses of its instance, its store's host state, its wasmtime VMContext,
/// its io buffer and the top of its shadow stack. With 10,000 agents every one of these lines
/// is out of the caches by the agent's next turn; asked for one at a time, as the turn reaches
/// them, each is a stall.
#[derive(Clone, Copy, Default)]
struct TurnAddresses {
    instance: usize,
    host: usize,
    /// 0 when unknown (`AgentInstance::vmctx_address_hint`).
    vmctx: usize,
    io: usize,
    /// 0 when unknown (`AgentInstance::stack_address_hint`).
    stack: usize,
}

/// Lines of a wasmtime 48 store every call into it touches, as offsets from the store's data
/// (`AgentHost`, which the store's internals precede in the same allocation): found by tracing
/// the memory accesses of 200 ticks of two agents (valgrind's lackey), the lines hit every
/// call (fuel, the VM store context, the call's bookkeeping). The slot cannot name them
/// without wasmtime's private layout; if a wasmtime upgrade moves them, these are only wasted
/// hints inside the same allocation (BENCHMARKS.md, 2026-11-27, seventeenth session: the
/// 10,000-counter tick −10–23%).
const STORE_LINES_BEFORE_HOST: [usize; 5] = [0x2a0, 0x120, 0xe0, 0xa0, 0x60];

/// Lines around an instance's VMContext that a turn touches, as offsets from it: the two
/// before it are wasmtime's instance record (the module's runtime info, which every host
/// call's trampoline reads), the rest the VMContext's own (its memory, globals, imports and
/// their functions). Traced like `STORE_LINES_BEFORE_HOST`; asking for the first four only
/// lost half the gain of all eight in a 10,000 × 16 flood tick.
const VMCTX_LINES: [isize; 8] = [-128, -64, 0, 64, 192, 320, 384, 448];

impl TurnAddresses {
    fn of(instance: &AgentInstance) -> Self {
        Self {
            instance: instance as *const AgentInstance as usize,
            host: instance.host() as *const _ as usize,
            vmctx: instance.vmctx_address_hint(),
            io: instance.io_address_hint(),
            stack: instance.stack_address_hint(),
        }
    }

    /// What every turn touches: the instance's first two lines, the store's lines
    /// (`STORE_LINES_BEFORE_HOST`), the host state's first 128 bytes (id, tick, the outbox,
    /// logs and inference requests: at most three lines wherever they start; its second line
    /// was once the costliest miss of a quiet agent's tick), and the io buffer's first line.
    #[inline(always)]
    fn every_turn(&self) -> [usize; 11] {
        let (i, h) = (self.instance, self.host);
        let [a, b, c, d, e] = STORE_LINES_BEFORE_HOST.map(|o| h.wrapping_sub(o));
        [i, i.wrapping_add(64), a, b, c, d, e, h, h.wrapping_add(64), h.wrapping_add(127), self.io]
    }

    /// The VMContext's lines every turn touches (`VMCTX_LINES`); none when it is unknown.
    #[inline(always)]
    fn vmctx_lines(&self) -> Option<[usize; 8]> {
        (self.vmctx != 0).then(|| VMCTX_LINES.map(|o| self.vmctx.wrapping_add_signed(o)))
    }

    /// What a turn with messages touches besides: the batch's progress word (past the io
    /// buffer, on a line and page of its own: `receive_batch`'s first write missed it) and the
    /// two lines under the top of the shadow stack (the SDK's receive loop and then the step
    /// keep their frames there; a flood agent's step zeroing its payload buffer missed them:
    /// 10% of a 10,000-flood-agent tick). A turn without messages skips them: a counter's step
    /// never touches its stack, and asking for the lines anyway cost the 10,000-counter tick
    /// ~5%.
    #[inline(always)]
    fn receiving_turn(&self) -> [usize; 3] {
        let stack = if self.stack == 0 { self.io } else { self.stack };
        [self.io.wrapping_add(crate::abi::BATCH_OFFSET_DONE), stack.wrapping_sub(64), stack.wrapping_sub(128)]
    }
}

/// Agents per unit of work handed out to the threads of a parallel tick.
const CHUNK_AGENTS: usize = 64;
/// How many agents ahead the tick loop prefetches what a turn touches (`TurnAddresses`).
const PREFETCH_DISTANCE: usize = 4;
/// How many agents ahead it prefetches the slot's own first two lines, which hold those
/// addresses and the flags it reads first: asked for only as the walk reached them, they
/// were its most sampled stall (`perf annotate`: a third of `run_slots`' samples). (The third
/// line, with the inbox, too: no better, a flood tick +3% in an in-process A/B.)
const SLOT_PREFETCH_DISTANCE: usize = 8;

/// With thousands of agents a step is dominated by the first, cache- and TLB-missing touch
/// of the agent's instance, store data and io buffer (measured: 70% of `call_step` on one
/// store); prefetching 4 agents ahead cut a 10,000-agent tick by ~20% here (A/B, same run). Asking
/// the CPU for them a few agents ahead overlaps those misses with useful work.
#[inline(always)]
pub(crate) fn prefetch<const N: usize>(addresses: &[usize; N]) {
    #[cfg(target_arch = "x86_64")]
    for &a in addresses {
        // Safety: prefetch is a hint; it never faults, whatever the address.
        unsafe { std::arch::x86_64::_mm_prefetch(a as *const i8, std::arch::x86_64::_MM_HINT_T0) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addresses;
}

/// How many messages ahead routing prefetches a recipient's slot, and then its inbox's ends.
const ROUTE_PREFETCH_SLOT: usize = 8;
const ROUTE_PREFETCH_INBOX: usize = 4;

/// What one phase's agents did that `settle` needs without visiting each of them: the sums of
/// their fuel and delivered messages, and the agents it must visit (`busy`).
#[derive(Default)]
pub(crate) struct PhaseRun {
    fuel: u64,
    delivered: u64,
    /// The phase's agents that were running when it ran (the report's `agents_stepped`),
    /// counted here where each slot is in cache, not by a pass of the calling thread.
    pub(crate) running: usize,
    /// Messages the phase's agents sent (whether routing goes parallel).
    sent: usize,
    /// Ascending slot indices of the agents with anything to settle (`AgentSlot::has_news`).
    /// Most agents of a quiet tick have none: a counter that steps burns fuel and nothing
    /// else, and visiting its slot again from the settling thread (a cache miss, often on
    /// another core's line) was most of `settle` for 10,000 of them.
    pub(crate) busy: Vec<usize>,
}

impl PhaseRun {
    /// Folds `other` (the next chunk, in slot order) into this one.
    fn append(&mut self, other: &mut PhaseRun) {
        self.fuel += other.fuel;
        self.delivered += other.delivered;
        self.running += other.running;
        self.sent += other.sent;
        self.busy.append(&mut other.busy);
    }
}

/// What every agent's turn of a phase shares: the tick, the highest agent id (for the step's
/// context), whether the tick is traced, and the ring records held for the turns.
#[derive(Clone, Copy)]
struct Turn<'a> {
    tick: u64,
    max_agent_id: u64,
    trace: bool,
    held: Option<&'a HeldInboxes<'a>>,
    routes: Option<&'a HeldRoutes>,
}

/// Runs `run_tick` over the slots at `live` (indices into the whole slot array; `slots` starts
/// at index `base`), prefetching ahead; sums what settle needs into `run` while each slot is
/// in this thread's cache.
fn run_slots(slots: &mut [AgentSlot], base: usize, live: &[usize], turn: &Turn<'_>, run: &mut PhaseRun) {
    for k in 0..live.len() {
        if let Some(far) = live.get(k + SLOT_PREFETCH_DISTANCE).and_then(|&i| slots.get(i - base)) {
            let at = far as *const AgentSlot as usize;
            prefetch(&[at, at.wrapping_add(64)]);
        }
        if let Some(ahead) = live.get(k + PREFETCH_DISTANCE).and_then(|&i| slots.get(i - base)) {
            if ahead.instance.is_some() && !ahead.waiting {
                prefetch(&ahead.prefetch.every_turn());
                if let Some(lines) = ahead.prefetch.vmctx_lines() {
                    prefetch(&lines);
                }
                if ahead.routed_held || ahead.ring_held || !ahead.inbox.is_empty() {
                    prefetch(&ahead.prefetch.receiving_turn());
                }
            }
        }
        if let Some(routes) = turn.routes {
            // A held run's messages lie in other agents' outboxes: ask for the places of the
            // run two turns ahead, then for the messages of the next turn's (module docs of
            // `held_routes`).
            if let Some(&i) = live.get(k + 2).filter(|&&i| slots.get(i - base).is_some_and(|s| s.routed_held)) {
                routes.prefetch_places(i);
            }
            if let Some(&i) = live.get(k + 1).filter(|&&i| slots.get(i - base).is_some_and(|s| s.routed_held)) {
                routes.run(i).prefetch_all();
            }
        }
        if let Some(slot) = slots.get_mut(live[k] - base) {
            run.running += usize::from(slot.state.is_running());
            slot.run_tick(turn);
            run.fuel += std::mem::take(&mut slot.out.fuel);
            run.delivered += std::mem::take(&mut slot.out.delivered) as u64;
            if slot.has_news() {
                run.sent += slot.out.sent.len();
                run.busy.push(live[k]);
            }
        }
    }
}

impl TickReport {
    /// An empty report for `tick`, for the runtime to fill in.
    pub(crate) fn new(tick: u64) -> Self {
        Self { tick, ..Default::default() }
    }
}

/// A unit of parallel work: a disjoint range of the slot array (starting at slot index `.1`)
/// and the live indices that fall in it.
type Chunk<'a> = (&'a mut [AgentSlot], usize, &'a [usize], PhaseRun);

/// Every running agent at `live` (one phase's members) receives its inbox and steps, on
/// `workers` threads (the calling one included) when `pool` is given (`phase_uses_pool`).
///
/// In parallel, the calling thread works too: it starts at once, and the pool's threads
/// (workers - 1 of them) join as soon as they wake. Each thread runs the same chunks tick after
/// tick, taking from the others' only when done with its own (`work_share`).
/// Waking sleeping threads costs tens of microseconds here, so the caller never waits idle.
///
/// Only the slots at `live` (ascending indices of agents holding an instance) are visited, so a
/// tick costs what the live agents cost however many agents have died (issue 9 red-team: 1 live
/// and 200,000 dead agents ticked 3,000× slower than 1 alone). For threads, each chunk of `live`
/// gets the disjoint range of slots between its first index and the next chunk's first index.
///
/// `trace`: copy each agent's delivered messages for `settle` to report (a traced tick).
/// `held`: the inbound ring's records left in the ring for their recipients' turns, and
/// `routes`: the last tick's routed messages left in their senders' outboxes (the tick's first
/// phase only: `Runtime::tick` copies what a turn did not take into the inboxes after it).
pub(crate) fn run_agents(
    slots: &mut [AgentSlot],
    live: &[usize],
    tick: u64,
    pool: Option<&rayon::ThreadPool>,
    workers: usize,
    trace: bool,
    (held, routes): (Option<&HeldInboxes<'_>>, Option<&HeldRoutes>),
) -> PhaseRun {
    let turn = Turn { tick, max_agent_id: slots.len() as u64, trace, held, routes };
    let mut run = PhaseRun::default();
    let Some(pool) = pool else {
        run_slots(slots, 0, live, &turn, &mut run);
        return run;
    };
    let mut chunks: Vec<Mutex<Chunk<'_>>> = Vec::with_capacity(live.len().div_ceil(CHUNK_AGENTS));
    let mut rest = slots;
    let mut offset = 0;
    for (c, indices) in live.chunks(CHUNK_AGENTS).enumerate() {
        // This chunk's slots end where the next chunk's begin (or at the end of the array).
        let end = live.get((c + 1) * CHUNK_AGENTS).copied().unwrap_or(offset + rest.len());
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut(end - offset);
        chunks.push(Mutex::new((mine, offset, indices, PhaseRun::default())));
        rest = tail;
        offset = end;
    }
    // `workers` threads in all: the calling one and `workers - 1` of the pool's (the rest sleep).
    share_out(pool, workers, &chunks, |(slots, base, indices, run)| run_slots(slots, *base, indices, &turn, run));
    // Chunks in slot order: the busy lists join in ascending order.
    for chunk in chunks {
        if let Ok((_, _, _, mut part)) = chunk.into_inner() {
            run.append(&mut part);
        }
    }
    run
}

/// Decides, before a phase runs, which of its agents with trigger `All` (`barriers`) wait
/// this tick: those with a running upstream agent (`graph`) that has sent them nothing since
/// they last stepped (no message from it in their inbox). Their upstream agents ran in earlier
/// phases, so their states are this tick's. A time-sliced agent whose call is suspended never
/// waits: its call goes on. Sequential, in id order; sets `waiting`.
pub(crate) fn hold_barriers(slots: &mut [AgentSlot], barriers: &[usize], graph: &crate::graph::Graph) {
    let mut senders: Vec<AgentId> = Vec::new();
    for &b in barriers {
        let Some(slot) = slots.get(b) else { continue };
        senders.clear();
        senders.extend(slot.inbox.iter().map(|m| m.from));
        senders.sort_unstable();
        senders.dedup();
        let running = |id: AgentId| slots.get((id as usize).wrapping_sub(1)).is_some_and(|s| s.state.is_running());
        // A suspended call goes on whatever its upstream agents sent: it is the rest of a turn
        // the barrier already let through.
        let waits = slot.suspended.is_none() && graph.upstream(slot.id).any(|u| running(u) && senders.binary_search(&u).is_err());
        if let Some(slot) = slots.get_mut(b) {
            slot.waiting = waits;
        }
    }
}

/// In agent-id order, apply faults, route sent messages and fold everything into the tick
/// hash and the report. Runs after each phase of the tick, over the agents of the phase that
/// have anything to settle (`run.busy`, ascending ids; the others' fuel and deliveries come
/// summed in `run`, and nothing else of theirs reaches the hash, the routing or the events).
/// `pool`: the pool, the tick's workers, routing's scratch, and whether routing may hold this
/// phase's messages in their senders' outboxes (`HeldRoutes`: the tick's last phase).
pub(crate) fn settle(
    slots: &mut [AgentSlot],
    run: &PhaseRun,
    tick: u64,
    hasher: &mut TickHasher,
    report: &mut TickReport,
    outputs: &mut Outputs,
    pool: Option<(&rayon::ThreadPool, usize, &mut RouteScratch, bool)>,
) {
    report.messages_delivered += run.delivered;
    report.fuel += run.fuel;
    let live = &run.busy;
    // Pass 1: faults first, so routing below sees every agent's final state of this tick.
    for &i in live {
        let Some(slot) = slots.get_mut(i) else { continue };
        if std::mem::take(&mut slot.waiting) {
            hasher.waiting(slot.id, slot.inbox.len());
            report.agents_waiting += 1;
        }
        let out = &mut slot.out;
        if let Some(d) = out.digest.take() {
            hasher.agent(slot.id, &d);
            let mut short = [0u8; 8];
            short.copy_from_slice(&d[..8]);
            report.agent_digests.push((slot.id, short));
        }
        if let Some(trace) = outputs.trace.as_mut() {
            trace.received(slot.id, std::mem::take(&mut out.received));
        }
        for line in out.logs.drain(..) {
            outputs.events.push_back(Event::Log { tick, agent: slot.id, level: line.level, text: line.text });
        }
        if let Some((call, ticks)) = out.resumed.take() {
            outputs.events.push_back(Event::Resumed { tick, agent: slot.id, call, ticks });
        }
        if let Some((call, first)) = out.suspended.take() {
            report.agents_suspended += 1;
            if first {
                outputs.events.push_back(Event::Suspended { tick, agent: slot.id, call });
            }
        }
        if let Some(fault) = out.fault.take() {
            report.faults += 1;
            slot.state = AgentState::Faulted(fault.clone());
            outputs.events.push_back(Event::Fault { tick, agent: slot.id, fault });
            for m in out.undelivered.drain(..) {
                push_dead(hasher, report, outputs, tick, DeadLetterReason::RecipientFaultedDuringDelivery, m);
            }
        }
    }
    // Pass 2: route. Messages arrive in sender-id order; delivery sorts by the full key.
    if let Some((pool, workers, scratch, hold)) = pool.filter(|_| outputs.tap.is_none() && outputs.trace.is_none()) {
        if run.sent >= PARALLEL_ROUTE_MIN_MESSAGES && workers > 1 {
            return route_in_parallel(slots, live, tick, hasher, report, outputs, pool, workers, scratch, hold);
        }
    }
    for &i in live {
        if i >= slots.len() {
            continue;
        }
        if slots[i].out.sent.is_empty() {
            if !slots[i].state.is_running() {
                slots[i].release();
            }
            continue;
        }
        let mut sent = std::mem::take(&mut slots[i].out.sent);
        if let Some(trace) = outputs.trace.as_mut() {
            trace.sent(slots[i].id, sent.to_messages(0..sent.len()));
        }
        slots[i].messages_sent += sent.len() as u64;
        report.messages_routed += sent.len() as u64;
        for (k, m) in sent.iter().enumerate() {
            // Recipients are anywhere in the slot array: ask for the recipient's slot a few
            // messages ahead, then for the ends of its inbox (read from that slot, by then in
            // cache), so the misses overlap the routing of the messages before.
            if let Some(s) = sent.recipient(k + ROUTE_PREFETCH_SLOT).and_then(|to| slots.get((to as usize).wrapping_sub(1))) {
                prefetch(&[std::ptr::addr_of!(s.state) as usize, std::ptr::addr_of!(s.inbox) as usize]);
            }
            if let Some(s) = sent.recipient(k + ROUTE_PREFETCH_INBOX).and_then(|to| slots.get((to as usize).wrapping_sub(1))) {
                prefetch(&s.inbox.tail_addresses());
            }
            route(slots, m, tick, hasher, report, outputs);
        }
        // Keep the arena; a faulted agent's memory is released now its outbox is routed.
        sent.clear();
        slots[i].out.sent = sent;
        if !slots[i].state.is_running() {
            slots[i].release();
        }
    }
}

/// How many senders ahead `route_in_parallel`'s sorting asks for an outbox's headers, and for
/// at most how many of them.
const SORT_PREFETCH_SENDERS: usize = 2;
const SORT_PREFETCH_HEADERS: usize = 32;

/// Below this many messages in a phase, routing stays on the settling thread (waking the pool
/// costs more than it saves).
const PARALLEL_ROUTE_MIN_MESSAGES: usize = 8_192;

/// Recipient ranges (and sender chunks) per routing thread in `route_in_parallel`.
const ROUTE_PARTS_PER_WORKER: usize = 4;

/// How many of its messages ahead a routing thread asks for a message's envelope, then (the
/// envelope by then in cache) for its payload and its recipient's slot, then (the slot by
/// then in cache) for the ends of the recipient's inbox: every message is a few cold lines,
/// and asking early overlaps them with the routing of the messages before.
const PARALLEL_PREFETCH_ENVELOPE: usize = 12;
const PARALLEL_PREFETCH_SLOT: usize = 6;
const PARALLEL_PREFETCH_INBOX: usize = 3;

/// A message routing did not put into an inbox: its place, and why.
type Refused = (u32, u32, DeadLetterReason);

/// One thread's unit of `route_in_parallel`'s delivery: a range of recipients (the part's
/// index, its first slot index) and what it could not deliver to them.
type RoutePart<'a> = (&'a mut [AgentSlot], usize, usize, Vec<Refused>);

/// One thread's unit of `route_in_parallel`'s delivery when it may hold: as `RoutePart`, with
/// the part's grouping by recipient and whether it held any run.
type HoldPart<'a> = (&'a mut [AgentSlot], usize, usize, &'a mut ByRecipient, Vec<Refused>, bool);

/// One thread's unit of `route_in_parallel`'s sorting: a chunk of senders (its index), its
/// lists by part, and its list of messages that leave the agents.
type SortChunk<'a> = (usize, &'a mut [Vec<Routed>], &'a mut Vec<Place>, Seen);

/// What sorting saw of the messages: their lowest and highest priority (`MAX, MIN` for none),
/// and whether a payload started past 4 GiB of its arena (`Grouped::at` cannot say where: the
/// routing then holds nothing).
#[derive(Clone, Copy)]
struct Seen {
    low: i32,
    high: i32,
    wide: bool,
}

impl Seen {
    const NONE: Seen = Seen { low: i32::MAX, high: i32::MIN, wide: false };

    fn and(self, o: Seen) -> Seen {
        Seen { low: self.low.min(o.low), high: self.high.max(o.high), wide: self.wide || o.wide }
    }
}

/// What `route_in_parallel` keeps between calls: the phase's messages sorted by the part of
/// the slot array their recipients are in, per chunk of senders. Bounded: 40 bytes a message
/// of the phase while it routes (and 32 while held); past
/// `limits::MAX_RETAINED_ROUTE_INDEX_BYTES` the capacity is given back after the phase.
#[derive(Debug, Default)]
pub(crate) struct RouteScratch {
    /// `to_part[chunk * parts + part]`: the places of the messages of one chunk of senders
    /// whose recipients are in one part, in sender order.
    to_part: Vec<Vec<Routed>>,
    /// Per chunk: the places of its messages that leave the agents (to the host, or to an id
    /// past the slot array), in sender order.
    leaving: Vec<Vec<Place>>,
    /// What the parts could not deliver (merged, then put in message order).
    refused: Vec<Refused>,
    /// The routed messages held in their senders' outboxes for their recipients' turns.
    pub(crate) held: HeldRoutes,
}

impl RouteScratch {
    /// Empty lists for `chunks` chunks of senders and `parts` parts.
    fn prepare(&mut self, chunks: usize, parts: usize) {
        self.to_part.resize_with(chunks * parts, Vec::new);
        self.leaving.resize_with(chunks, Vec::new);
        self.to_part.iter_mut().for_each(Vec::clear);
        self.leaving.iter_mut().for_each(Vec::clear);
    }

    /// Gives the capacity back when it is over the retained bound.
    fn trim(&mut self) {
        let held = self.to_part.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<Routed>()
            + self.refused.capacity() * std::mem::size_of::<Refused>()
            + self.leaving.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<Place>();
        if held > crate::limits::MAX_RETAINED_ROUTE_INDEX_BYTES {
            self.to_part = Vec::new();
            self.leaving = Vec::new();
            self.refused = Vec::new();
        }
    }
}

/// Pass 2 of `settle` on `workers` threads, with the same result as routing every message in
/// order on one. The senders' mailboxes are taken out of their slots first, so the threads
/// share them read-only. Then:
/// 1. Sorting: the senders are cut into contiguous chunks; a thread takes a chunk and lists
///    each of its messages under the part of the slot array its recipient is in (or as
///    leaving the agents), in sender order. Every message is read here once.
/// 2. Delivery: each thread owns a part (the slot array split into disjoint `&mut` ranges of
///    recipients) and pushes its messages, chunk after chunk: so each inbox receives exactly
///    the sequence sequential routing gives it, and decides "full" at the same message. What
///    a thread could not deliver it lists, in that same order.
/// 3. The settling thread hands every message that left the agents (to the host, to an
///    unknown id, or refused) to the host queue or the dead-letter queue and the tick hash, in
///    message order: exactly the sequential order.
///
/// (It walked every sender's mailbox once per part, 8 times on 2 workers, and once more on the
/// settling thread: issue 13, `BENCHMARKS.md`.)
#[allow(clippy::too_many_arguments)]
fn route_in_parallel(
    slots: &mut [AgentSlot],
    live: &[usize],
    tick: u64,
    hasher: &mut TickHasher,
    report: &mut TickReport,
    outputs: &mut Outputs,
    pool: &rayon::ThreadPool,
    workers: usize,
    scratch: &mut RouteScratch,
    hold: bool,
) {
    let hold = hold && !scratch.held.is_holding();
    let senders: Vec<(usize, Mailbox)> =
        live.iter().filter_map(|&i| slots.get_mut(i).filter(|s| !s.out.sent.is_empty()).map(|s| (i, std::mem::take(&mut s.out.sent)))).collect();
    let slot_count = slots.len();
    let per_part = slot_count.div_ceil(workers * ROUTE_PARTS_PER_WORKER).max(1);
    let parts = slot_count.div_ceil(per_part).max(1);
    let chunks = parts.min(senders.len()).max(1);
    scratch.prepare(chunks, parts);

    // 1. Sorting, a chunk of senders per item.
    let mut seen = Seen::NONE;
    {
        let items: Vec<Mutex<SortChunk<'_>>> = scratch
            .to_part
            .chunks_mut(parts)
            .zip(scratch.leaving.iter_mut())
            .enumerate()
            .map(|(c, (lists, leaving))| Mutex::new((c, lists, leaving, Seen::NONE)))
            .collect();
        share_out(pool, workers, &items, |(c, lists, leaving, seen)| {
            let range = *c * senders.len() / chunks..(*c + 1) * senders.len() / chunks;
            for (pos, (_, sent)) in senders.iter().enumerate().take(range.end).skip(range.start) {
                // Each outbox is its own cold allocation: ask for the headers of one a few
                // senders ahead, every line of them (up to `SORT_PREFETCH_HEADERS`; asking for
                // only the first four and leaving the rest to the hardware's stream left 5% of
                // a flood tick waiting on them).
                if let Some((_, ahead)) = senders.get(pos + SORT_PREFETCH_SENDERS).filter(|_| pos + SORT_PREFETCH_SENDERS < range.end) {
                    let (start, end) = (ahead.envelope_address(0), ahead.envelope_address(ahead.len().min(SORT_PREFETCH_HEADERS)));
                    for line in (start & !63..end).step_by(64) {
                        prefetch(&[line]);
                    }
                }
                for (k, h) in sent.heads().enumerate() {
                    *seen = seen.and(Seen { low: h.priority, high: h.priority, wide: h.at > u32::MAX as usize });
                    let index = (h.to as usize).wrapping_sub(1);
                    let g = Grouped { seq: h.seq, p: pos as u32, k: k as u32, at: h.at as u32, len: h.len, kind: h.kind, priority: h.priority };
                    match lists.get_mut(index / per_part) {
                        Some(list) if index < slot_count => list.push((g, index as u32)),
                        _ => leaving.push((pos as u32, k as u32)),
                    }
                }
            }
        });
        for item in items {
            let (_, _, _, s) = item.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            seen = seen.and(s);
        }
    }

    // 2. Delivery, a part of the slot array per item; when it may hold, grouped by recipient
    //    first, and a recipient that takes its whole run only marked.
    let to_part = &scratch.to_part;
    let mut held_any = false;
    // (An outbox holds one tick's sends, at most MAX_OUTBOX_BYTES_PER_TICK: never wide.)
    if hold && !seen.wide {
        let items: Vec<Mutex<HoldPart<'_>>> = recipient_parts(slots, per_part)
            .zip(scratch.held.parts_for(parts, per_part).iter_mut())
            .enumerate()
            .map(|(part, ((mine, base), grouped))| Mutex::new((mine, part, base, grouped, Vec::new(), false)))
            .collect();
        share_out(pool, workers, &items, |(mine, part, base, grouped, refused, held)| {
            let lists = (0..chunks).filter_map(|chunk| to_part.get(chunk * parts + *part)).map(Vec::as_slice);
            grouped.group(*base, mine.len(), lists);
            *held = deliver_or_hold(mine, &senders, grouped, refused);
        });
        for item in items {
            let (_, _, _, _, refused, held) = item.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            held_any |= held;
            scratch.refused.extend(refused);
        }
    } else {
        let items: Vec<Mutex<RoutePart<'_>>> =
            recipient_parts(slots, per_part).enumerate().map(|(part, (mine, base))| Mutex::new((mine, part, base, Vec::new()))).collect();
        share_out(pool, workers, &items, |(mine, part, base, refused)| {
            for chunk in 0..chunks {
                let Some(list) = to_part.get(chunk * parts + *part) else { continue };
                deliver_places(mine, *base, &senders, list, refused);
            }
        });
        for item in items {
            let (_, _, _, refused) = item.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            scratch.refused.extend(refused);
        }
    }

    // 3. What left the agents, in message order.
    let mut leaving: Vec<(u32, u32, Option<DeadLetterReason>)> = scratch.leaving.iter().flatten().map(|&(p, k)| (p, k, None)).collect();
    leaving.extend(scratch.refused.drain(..).map(|(p, k, reason)| (p, k, Some(reason))));
    leaving.sort_unstable_by_key(|&(p, k, _)| (p, k));
    for (p, k, refused) in leaving {
        let Some(m) = senders.get(p as usize).and_then(|(_, sent)| sent.get(k as usize)) else { continue };
        match refused {
            Some(reason) => push_dead(hasher, report, outputs, tick, reason, m.to_message()),
            None if m.to == crate::abi::HOST_ID => outputs.host_message(m.to_message()),
            None => push_dead(hasher, report, outputs, tick, DeadLetterReason::UnknownRecipient, m.to_message()),
        }
    }
    for (i, sent) in &senders {
        report.messages_routed += sent.len() as u64;
        slots[*i].messages_sent += sent.len() as u64;
    }
    if held_any {
        // The outboxes stay as they are until the holding ends; their senders write spares.
        for (i, _) in &senders {
            slots[*i].out.sent = scratch.held.take_spare();
        }
        // Runs are in canonical delivery order as grouped (sender order, then each sender's
        // order) when every message has one priority and the senders are in id order: then
        // no turn needs to check its run (`RoutedRun::in_delivery_order`).
        let in_order = seen.low >= seen.high && senders.windows(2).all(|w| w[0].0 < w[1].0);
        scratch.held.hold(tick, senders, in_order);
    } else {
        for (i, mut sent) in senders {
            sent.clear();
            slots[i].out.sent = sent;
        }
    }
    scratch.trim();
    // Every agent of the phase that stopped running gives back its memory now, as in
    // sequential routing: those that sent nothing too (red team: an agent that faulted without
    // sending kept its instance on the parallel path, so it still counted against maxAgents
    // and the deep hash differed from one worker's).
    for &i in live {
        if let Some(slot) = slots.get_mut(i).filter(|s| !s.state.is_running()) {
            slot.release();
        }
    }
}

/// One thread's share of `route_in_parallel`'s delivery: the messages at `places` (in order),
/// every one for a recipient in `slots` (slot indices `base..`), go into their inboxes, or,
/// when one cannot take its message, into `refused` with the reason `route` would give.
fn deliver_places(slots: &mut [AgentSlot], base: usize, senders: &[(usize, Mailbox)], places: &[Routed], refused: &mut Vec<Refused>) {
    let mailbox = |p: u32| senders.get(p as usize).map(|(_, sent)| sent);
    for (j, &(Grouped { p, k, .. }, s)) in places.iter().enumerate() {
        if let Some(&(Grouped { p, k, .. }, _)) = places.get(j + PARALLEL_PREFETCH_ENVELOPE) {
            if let Some(sent) = mailbox(p) {
                prefetch(&[sent.envelope_address(k as usize)]);
            }
        }
        if let Some(&(Grouped { p, at, .. }, s)) = places.get(j + PARALLEL_PREFETCH_SLOT) {
            if let (Some(sent), Some(slot)) = (mailbox(p), slots.get((s as usize).wrapping_sub(base))) {
                prefetch(&[sent.payload_address(at as usize), std::ptr::addr_of!(slot.state) as usize, std::ptr::addr_of!(slot.inbox) as usize]);
            }
        }
        if let Some(slot) = places.get(j + PARALLEL_PREFETCH_INBOX).and_then(|&(_, s)| slots.get((s as usize).wrapping_sub(base))) {
            prefetch(&slot.inbox.tail_addresses());
        }
        let Some(m) = mailbox(p).and_then(|sent| sent.get(k as usize)) else { continue };
        // `s` is the slot of `m.to` (the sort phase read it): the same agent `route` finds.
        debug_assert_eq!((m.to as usize).wrapping_sub(1), s as usize);
        let Some(target) = (s as usize).checked_sub(base).and_then(|j| slots.get_mut(j)) else { continue };
        if let Err(reason) = target.accept(m) {
            refused.push((p, k, reason));
        }
    }
}

/// How many recipients ahead `deliver_or_hold` asks for a slot, and how many messages ahead
/// for a payload.
const HOLD_PREFETCH_RECIPIENTS: usize = 6;
const HOLD_PREFETCH_MESSAGES: usize = 3;

/// `deliver_places` for a routing that may hold (`HeldRoutes`): the messages of `grouped`,
/// recipient after recipient; a recipient that takes its whole run as it is
/// (`AgentSlot::takes_routed`) is only marked `routed_held`, and the others' messages go into
/// their inboxes, each recipient's in sender order, as `deliver_places` puts them. Returns
/// whether it marked any.
fn deliver_or_hold(slots: &mut [AgentSlot], senders: &[(usize, Mailbox)], grouped: &ByRecipient, refused: &mut Vec<Refused>) -> bool {
    let mailbox = |p: u32| senders.get(p as usize).map(|(_, sent)| sent);
    let mut held = false;
    for r in 0..slots.len() {
        let run = grouped.run(r);
        if run.is_empty() {
            continue;
        }
        if let Some(slot) = slots.get(r + HOLD_PREFETCH_RECIPIENTS) {
            prefetch(&[std::ptr::addr_of!(slot.state) as usize, std::ptr::addr_of!(slot.inbox) as usize]);
        }
        let Some(target) = slots.get_mut(r) else { continue };
        if target.takes_routed(run.len()) {
            target.routed_held = true;
            held = true;
            continue;
        }
        // Each message from its grouped header copy and its payload: the sender's envelope
        // (a cold line) is not read again.
        let start = grouped.run_start(r);
        for (j, g) in run.iter().enumerate() {
            if let Some(ahead) = grouped.places().get(start + j + HOLD_PREFETCH_MESSAGES) {
                if let Some(sent) = mailbox(ahead.p) {
                    prefetch(&[sent.payload_address(ahead.at as usize)]);
                }
            }
            let (p, k) = (g.p, g.k);
            let Some(m) = g.message(senders, target.id) else { continue };
            if let Err(reason) = target.accept(m) {
                refused.push((p, k, reason));
            }
        }
    }
    held
}

/// Delivers one message to its recipient's inbox, the host queue, or the dead-letter queue.
///
/// The payload is copied into the recipient's inbox arena (no allocation once the arena has
/// grown); only a message that leaves the agents (to the host, or dead-lettered) becomes an
/// owned [`Message`].
#[inline]
pub(crate) fn route(slots: &mut [AgentSlot], m: MessageRef<'_>, tick: u64, hasher: &mut TickHasher, report: &mut TickReport, outputs: &mut Outputs) {
    // An observer watching agents (docs/DASHBOARD.md) gets a copy; never hashed.
    if let Some(tap) = outputs.tap.as_deref_mut() {
        tap.observe(tick, m);
    }
    // From an agent to the host: not hashed (when JS drains is not an input). From the host to
    // itself (the inbound ring, a replayed Send record, may name id 0): no agent, so it is
    // dead-lettered as unknown below, and that is in the tick hash (red team 10: it went to the
    // host queue, hashed nowhere, so a rewritten Send record to id 0 still verified).
    if m.to == crate::abi::HOST_ID && m.from != crate::abi::HOST_ID {
        outputs.host_message(m.to_message());
        return;
    }
    let accepted = match slots.get_mut((m.to as usize).wrapping_sub(1)) {
        Some(target) => target.accept(m),
        None => Err(DeadLetterReason::UnknownRecipient),
    };
    if let Err(reason) = accepted {
        push_dead(hasher, report, outputs, tick, reason, m.to_message());
    }
}

/// Below this many messages `route_grouped` routes them in order, one by one (sorting them by
/// recipient costs more than it saves).
const GROUPED_ROUTE_MIN_MESSAGES: usize = 4_096;
/// How many messages ahead `route_grouped` asks for a message's envelope and payload.
const GROUPED_ROUTE_PREFETCH: usize = 8;

/// What `route_grouped` keeps between calls: where each recipient's messages start in
/// `order`, the messages' indices by recipient, and the refused ones. Bounded by the batch
/// (`RING_BATCH_RECORDS`) and, for `starts`, by the slot array, which is at most 8 times the
/// batch when it is used.
#[derive(Debug, Default)]
pub(crate) struct GroupScratch {
    starts: Vec<u32>,
    order: Vec<u32>,
    refused: Vec<(u32, DeadLetterReason)>,
    /// A held ring record's payload while it is routed in order or dead-lettered (at most
    /// `abi::MAX_PAYLOAD_BYTES`).
    payload: Vec<u8>,
    /// Whether the last `route_grouped` grouped a batch that `holds`: then slots may be marked
    /// `ring_held`, their records a run of `order`, and `starts` says where each run ends.
    held: bool,
}

impl GroupScratch {
    /// The last grouped batch's message indices by recipient slot, and where each slot's run
    /// of them ends (`HeldInboxes`).
    pub(crate) fn grouping(&self) -> (&[u32], &[u32]) {
        (&self.order, &self.starts)
    }

    /// The slots the last `route_grouped` may have left ring records for (`ring_held`), in
    /// slot order: those it routed messages to, when it grouped a batch that `holds`.
    pub(crate) fn held_recipients(&self) -> impl Iterator<Item = usize> + '_ {
        let ends = if self.held { self.starts.as_slice() } else { &[] };
        (0..ends.len()).filter(move |&s| !slot_run(ends, s).is_empty())
    }
}

/// Routes `batch` (messages from the host, in the order they entered) with exactly the effect
/// of `route` on each in turn, but a recipient at a time: each inbox then takes its messages
/// in one run of writes (its arena's lines one after another), where routing in order writes
/// a cold line of a different inbox per message (issue 13: ticks draining 50,000 64-byte ring
/// records into 1,000 counters, +6–9% records/s in alternated runs, `BENCHMARKS.md`; what is
/// left is reading the batch in that scattered order).
///
/// With `pool` (the pool and the tick's workers) and at least `PARALLEL_ROUTE_MIN_MESSAGES`
/// messages for agents, the inboxes are filled on the workers, each thread a contiguous range
/// of recipients (copying into inboxes was ~19% of a tick draining 160,000 ring records into
/// 1,000 counters, all of it on the calling thread; on 2 workers the route's time fell from
/// 229–269 to 191–199 ms per 6 M records, `BENCHMARKS.md`).
///
/// The same as in order because admission (`AgentSlot::accept`) reads only the recipient's
/// own state and inbox, and each recipient still takes its messages in their order; refusals
/// (a full inbox, an unknown recipient) are collected and dead-lettered in message order, so
/// the tick hash, the report and the dead-letter queue see them as `route` would. With an
/// observer's tap (which records in routing order), or for a small batch or one far smaller
/// than the slot array (the counting is O(slots)), it routes in order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn route_grouped(
    slots: &mut [AgentSlot],
    batch: &impl GroupedBatch,
    tick: u64,
    hasher: &mut TickHasher,
    report: &mut TickReport,
    outputs: &mut Outputs,
    g: &mut GroupScratch,
    pool: Option<(&rayon::ThreadPool, usize)>,
) {
    let n = batch.len();
    g.held = false;
    // Only the host's messages are admitted grouped (`route` hands an agent's message to id 0
    // to the host queue, which is not a recipient): any other, and the batch goes in order.
    if outputs.tap.is_some() || n < GROUPED_ROUTE_MIN_MESSAGES || slots.len() / 8 > n || n > u32::MAX as usize || !batch.all_from_host() {
        for i in 0..n {
            batch.with_message(i, &mut g.payload, |m| route(slots, m, tick, hasher, report, outputs));
        }
        return;
    }
    let slot_of = |i: usize| Some((batch.recipient(i) as usize).wrapping_sub(1)).filter(|&s| s < slots.len());
    // Counting sort of the message indices by recipient slot.
    g.starts.clear();
    g.starts.resize(slots.len() + 1, 0);
    for i in 0..n {
        if let Some(s) = slot_of(i) {
            g.starts[s + 1] += 1;
        }
    }
    for s in 1..g.starts.len() {
        g.starts[s] += g.starts[s - 1];
    }
    let known = g.starts[slots.len()] as usize;
    g.order.clear();
    g.order.resize(known, 0);
    g.refused.clear();
    for i in 0..n {
        match slot_of(i) {
            Some(s) => {
                g.order[g.starts[s] as usize] = i as u32;
                g.starts[s] += 1;
            }
            None => g.refused.push((i as u32, DeadLetterReason::UnknownRecipient)),
        }
    }
    // `starts[s]` is now where slot s's messages end in `order` (and slot s + 1's begin).
    g.held = batch.holds();
    match pool.filter(|&(_, workers)| workers > 1 && known >= PARALLEL_ROUTE_MIN_MESSAGES) {
        None => deliver_grouped(slots, 0, batch, (&g.order, &g.starts), 0..known, &mut g.refused),
        Some((pool, workers)) => {
            // Each thread owns a contiguous range of recipients (disjoint `&mut` slots) and
            // their run of `order`: every inbox takes exactly its messages, in batch order, as
            // on one thread; what each refuses is merged and put in batch order below.
            let per_part = slots.len().div_ceil(workers * ROUTE_PARTS_PER_WORKER).max(1);
            let starts = &g.starts;
            let items: Vec<Mutex<GroupedPart<'_>>> = recipient_parts(slots, per_part)
                .map(|(mine, base)| {
                    let from = base.checked_sub(1).map_or(0, |s| starts[s] as usize);
                    let to = starts[base + mine.len() - 1] as usize;
                    Mutex::new((mine, base, from..to, Vec::new()))
                })
                .collect();
            debug_assert!(items.last().is_none_or(|m| m.lock().is_ok_and(|p| p.2.end == known)), "the parts cover every message");
            let order = &g.order;
            share_out(pool, workers, &items, |(mine, base, range, refused)| {
                deliver_grouped(mine, *base, batch, (order, starts), range.clone(), refused);
            });
            for item in items {
                let (_, _, _, refused) = item.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
                g.refused.extend(refused);
            }
        }
    }
    if !g.refused.is_empty() {
        g.refused.sort_unstable_by_key(|&(i, _)| i);
        for &(i, reason) in &g.refused {
            batch.with_message(i as usize, &mut g.payload, |m| push_dead(hasher, report, outputs, tick, reason, m.to_message()));
        }
    }
}

/// The slot array cut into disjoint ranges of `per_part` recipients (the last may be
/// shorter), each with its first slot index: the units parallel routing hands to threads.
fn recipient_parts(slots: &mut [AgentSlot], per_part: usize) -> impl Iterator<Item = (&mut [AgentSlot], usize)> {
    slots.chunks_mut(per_part.max(1)).enumerate().map(move |(k, mine)| (mine, k * per_part.max(1)))
}

/// One thread's unit of `route_grouped`'s parallel delivery: a range of recipients (its
/// first slot index), the range of `order` holding their messages, and what they refused.
type GroupedPart<'a> = (&'a mut [AgentSlot], usize, std::ops::Range<usize>, Vec<(u32, DeadLetterReason)>);

/// `route_grouped`'s delivery of the messages at `order` (batch indices, grouped by
/// recipient), every one for a recipient in `slots` (slot indices `base..`): into their
/// inboxes, or into `refused` with the reason `route` would give; or, for a batch that may
/// leave them in the ring (`holds`), a recipient's whole run at once when routing would admit
/// it all into an empty inbox (`AgentSlot::takes_held`): the slot is only marked
/// (`ring_held`; the run is where the grouping put it: `HeldInboxes::indices`).
fn deliver_grouped(
    slots: &mut [AgentSlot],
    base: usize,
    batch: &impl GroupedBatch,
    (order, ends): (&[u32], &[u32]),
    part: std::ops::Range<usize>,
    refused: &mut Vec<(u32, DeadLetterReason)>,
) {
    for (j, slot) in slots.iter_mut().enumerate() {
        let run = slot_run(ends, base + j);
        let Some(messages) = order.get(run.clone()).filter(|m| !m.is_empty()) else { continue };
        if let Some(bytes) = batch.held_run_bytes(messages) {
            if slot.takes_held(messages.len(), bytes) {
                slot.ring_held = true;
                continue;
            }
        }
        for (k, &i) in run.zip(messages) {
            // A recipient's messages are spread over the batch: ask for the one a few ahead
            // (in this part), so its misses overlap these writes.
            if let Some(&ahead) = order.get(k + GROUPED_ROUTE_PREFETCH).filter(|_| k + GROUPED_ROUTE_PREFETCH < part.end) {
                batch.prefetch(ahead as usize);
            }
            if let Err(reason) = batch.deliver(i as usize, slot) {
                refused.push((i, reason));
            }
        }
    }
}

/// Where slot `s`'s messages lie in `route_grouped`'s order, from `ends` (its `starts` after
/// the grouping: where each slot's run ends).
#[inline]
fn slot_run(ends: &[u32], s: usize) -> std::ops::Range<usize> {
    let start = s.checked_sub(1).and_then(|p| ends.get(p)).map_or(0, |&e| e as usize);
    start..ends.get(s).map_or(start, |&e| (e as usize).max(start))
}

/// What `route_grouped` routes: messages from the host, in the order they entered.
pub(crate) trait GroupedBatch: Sync {
    fn len(&self) -> usize;
    /// The `i`-th message's recipient (`i < len()`).
    fn recipient(&self, i: usize) -> AgentId;
    /// Whether every message is from the host (the grouped path admits only those).
    fn all_from_host(&self) -> bool;
    /// Asks for the `i`-th message's bytes ahead of its delivery (a hint only).
    fn prefetch(&self, i: usize);
    /// Whether a recipient's messages may be left where they are for its turn
    /// (`HeldInboxes`) instead of copied into its inbox.
    fn holds(&self) -> bool {
        false
    }
    /// For a batch that `holds`: the payload bytes of the messages at `run` (one recipient's,
    /// in batch order) when that order is their canonical delivery order
    /// (`Mailbox::sort_for_delivery` would not move them: priorities never rise), so that
    /// they may be held. `None` otherwise, or for a batch that does not hold.
    fn held_run_bytes(&self, _run: &[u32]) -> Option<usize> {
        None
    }
    /// Puts the `i`-th message into `slot`'s inbox (`AgentSlot::accept`), or says why not.
    fn deliver(&self, i: usize, slot: &mut AgentSlot) -> Result<(), DeadLetterReason>;
    /// Lends the `i`-th message, whole, to `f` (routing in order, dead letters); `scratch`
    /// may be used to hold its payload. `None` past the end.
    fn with_message<R>(&self, i: usize, scratch: &mut Vec<u8>, f: impl FnOnce(MessageRef<'_>) -> R) -> Option<R>;
}

/// Staged messages: their payloads already copied into the mailbox's arena.
impl GroupedBatch for Mailbox {
    fn len(&self) -> usize {
        Mailbox::len(self)
    }

    fn recipient(&self, i: usize) -> AgentId {
        Mailbox::recipient(self, i).unwrap_or(crate::abi::HOST_ID)
    }

    fn all_from_host(&self) -> bool {
        self.iter().all(|m| m.from == crate::abi::HOST_ID)
    }

    fn prefetch(&self, i: usize) {
        prefetch(&self.message_addresses(i));
    }

    fn deliver(&self, i: usize, slot: &mut AgentSlot) -> Result<(), DeadLetterReason> {
        self.get(i).map_or(Ok(()), |m| slot.accept(m))
    }

    fn with_message<R>(&self, i: usize, _scratch: &mut Vec<u8>, f: impl FnOnce(MessageRef<'_>) -> R) -> Option<R> {
        self.get(i).map(f)
    }
}

/// Inbound-ring records walked but not yet released (`ring::Consumer::hold_messages`), the
/// `i`-th numbered `first_seq + i`: each payload is read out of the ring once, straight into
/// its recipient's inbox (or, refused, into its dead letter), with no staging copy. Used when
/// nothing records them (no replay log and no journal: `record: false`, or `stop_recording`,
/// without a journal); a recorded record is staged and recorded first.
///
/// With `hold` (the tick's last walk of the ring, and nothing tracing the tick), a
/// recipient's records may be left in the ring for its turn (`HeldInboxes`).
#[derive(Clone, Copy)]
pub(crate) struct HeldBatch<'a> {
    pub records: &'a [crate::ring::HeldRecord],
    pub first_seq: u64,
    pub ring: &'a crate::ring::Consumer,
    pub hold: bool,
}

impl<'a> HeldBatch<'a> {
    #[inline]
    fn head(&self, i: usize) -> Option<(MessageRef<'static>, &'a crate::ring::HeldRecord)> {
        let r = self.records.get(i)?;
        Some((MessageRef { from: crate::abi::HOST_ID, to: r.agent, seq: self.first_seq + i as u64, kind: r.kind, priority: r.priority, payload: &[] }, r))
    }
}

/// The inbound ring's records of this tick that `route_grouped` left in the ring for their
/// recipients (marked `AgentSlot::ring_held`; each one's run of `order`), issue 13: a payload is then copied
/// once, ring to agent memory, in the recipient's turn (`AgentInstance::deliver_held`), where
/// it was copied ring to inbox, then inbox to agent memory. The ring's space is released only
/// after the tick's first phase has run and what no turn took was copied into the inboxes
/// (`copy_into`), so the inboxes are exactly those routing would have filled before anyone
/// reads them again (`Runtime::tick`).
pub(crate) struct HeldInboxes<'a> {
    batch: HeldBatch<'a>,
    /// `route_grouped`'s grouping of the batch: record indices by recipient slot, and where
    /// each slot's run ends.
    order: &'a [u32],
    ends: &'a [u32],
}

impl<'a> HeldInboxes<'a> {
    /// `batch`'s records as `route_grouped` grouped them (`GroupScratch::grouping`).
    pub(crate) fn new(batch: HeldBatch<'a>, (order, ends): (&'a [u32], &'a [u32])) -> Self {
        Self { batch, order, ends }
    }

    /// The indices of the records for the slot at `slot` (index = id - 1), in delivery order.
    #[inline]
    pub(crate) fn indices(&self, slot: usize) -> &'a [u32] {
        self.order.get(slot_run(self.ends, slot)).unwrap_or_default()
    }

    /// The `i`-th record as a message without its payload, and the record.
    #[inline]
    pub(crate) fn head(&self, i: u32) -> Option<(MessageRef<'static>, &'a crate::ring::HeldRecord)> {
        self.batch.head(i as usize)
    }

    /// Copies a record's payload into `out` (its length).
    #[inline]
    pub(crate) fn read_payload(&self, r: &crate::ring::HeldRecord, out: &mut [u8]) {
        self.batch.ring.read_held(r, out);
    }

    /// Asks for the `i`-th record's payload (a hint only).
    #[inline]
    pub(crate) fn prefetch(&self, i: u32) {
        self.batch.prefetch(i as usize);
    }

    /// Puts the records at `indices` into `inbox`, in that order: what routing them one by one
    /// would have put there (the slot took them all: `AgentSlot::takes_held`).
    pub(crate) fn copy_into(&self, indices: &[u32], inbox: &mut Mailbox) {
        for &i in indices {
            if let Some((head, r)) = self.head(i) {
                inbox.push_with(head, r.len(), |out| self.batch.ring.append_held(r, out));
            }
        }
    }

    /// Owned copies of the records at `indices` (what a fault left undelivered).
    pub(crate) fn to_messages(&self, indices: &[u32]) -> Vec<Message> {
        let mut scratch = Vec::new();
        indices.iter().filter_map(|&i| self.batch.with_message(i as usize, &mut scratch, |m| m.to_message())).collect()
    }
}

/// One recipient's held ring records (`HeldInboxes::indices`), for its turn.
pub(crate) struct RingRun<'a> {
    held: &'a HeldInboxes<'a>,
    indices: &'a [u32],
}

impl HeldRun for RingRun<'_> {
    const EXTERNAL: bool = true;

    fn len(&self) -> usize {
        self.indices.len()
    }

    #[inline]
    fn head(&self, k: usize) -> Option<(MessageRef<'_>, usize)> {
        let (m, r) = self.held.head(*self.indices.get(k)?)?;
        Some((m, r.len()))
    }

    #[inline]
    fn read_payload(&self, k: usize, out: &mut [u8]) {
        if let Some((_, r)) = self.indices.get(k).and_then(|&i| self.held.head(i)) {
            self.held.read_payload(r, out);
        }
    }

    #[inline]
    fn prefetch(&self, k: usize) {
        if let Some(&i) = self.indices.get(k) {
            self.held.prefetch(i);
        }
    }

    fn to_messages(&self, first: usize) -> Vec<Message> {
        self.held.to_messages(self.indices.get(first..).unwrap_or_default())
    }
}

impl GroupedBatch for HeldBatch<'_> {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn recipient(&self, i: usize) -> AgentId {
        self.records.get(i).map_or(crate::abi::HOST_ID, |r| r.agent)
    }

    fn all_from_host(&self) -> bool {
        true
    }

    fn prefetch(&self, i: usize) {
        if let Some(r) = self.records.get(i) {
            prefetch(&[self.ring.held_address(r)]);
        }
    }

    fn holds(&self) -> bool {
        self.hold
    }

    fn held_run_bytes(&self, run: &[u32]) -> Option<usize> {
        if !self.hold {
            return None;
        }
        let (mut bytes, mut priority) = (0usize, i32::MAX);
        for &i in run {
            let r = self.records.get(i as usize)?;
            if r.priority > priority {
                return None;
            }
            priority = r.priority;
            bytes += r.len();
        }
        Some(bytes)
    }

    fn deliver(&self, i: usize, slot: &mut AgentSlot) -> Result<(), DeadLetterReason> {
        match self.head(i) {
            Some((head, r)) => slot.accept_with(head, r.len(), |out| self.ring.append_held(r, out)),
            None => Ok(()),
        }
    }

    fn with_message<R>(&self, i: usize, scratch: &mut Vec<u8>, f: impl FnOnce(MessageRef<'_>) -> R) -> Option<R> {
        let (head, r) = self.head(i)?;
        scratch.clear();
        scratch.resize(r.len(), 0);
        self.ring.read_held(r, scratch);
        Some(f(MessageRef { payload: scratch, ..head }))
    }
}

/// A dead letter of a tick: in the tick hash whether or not the bounded queue keeps it (what
/// the host has drained is not an input, so it must not change the hash).
fn push_dead(hasher: &mut TickHasher, report: &mut TickReport, outputs: &mut Outputs, tick: u64, reason: DeadLetterReason, message: Message) {
    hasher.dead_letter(reason, &message);
    report.dead_letters += 1;
    outputs.dead_letter(tick, reason, message);
}

#[cfg(test)]
mod tests {
    use super::{AgentSlot, AgentTickOutput};
    use std::mem::offset_of;

    /// What a quiet agent's tick reads and writes of its slot (`run_tick`, `has_news`,
    /// `run_slots`, and `prefetch` read a few agents ahead) lies in the slot's first 192 bytes,
    /// and slots are line-aligned and a whole number of lines: three cache lines, wherever the
    /// slot lies in the array (Rust's own field order spread it over all of a slot's 8 or 9).
    #[test]
    fn a_quiet_agents_tick_touches_only_the_slots_first_three_lines() {
        assert_eq!(std::mem::align_of::<AgentSlot>(), 64);
        assert_eq!(std::mem::size_of::<AgentSlot>() % 64, 0);
        assert!(std::mem::size_of::<AgentSlot>() <= 512, "{} bytes", std::mem::size_of::<AgentSlot>());
        let out = offset_of!(AgentSlot, out);
        let hot = [
            ("prefetch", offset_of!(AgentSlot, prefetch) + std::mem::size_of::<super::TurnAddresses>()),
            ("instance", offset_of!(AgentSlot, instance) + 8),
            ("suspended", offset_of!(AgentSlot, suspended) + 8),
            ("id", offset_of!(AgentSlot, id) + 8),
            ("steps", offset_of!(AgentSlot, steps) + 8),
            ("messages_received", offset_of!(AgentSlot, messages_received) + 8),
            ("waiting", offset_of!(AgentSlot, waiting) + 1),
            ("ring_held", offset_of!(AgentSlot, ring_held) + 1),
            ("routed_held", offset_of!(AgentSlot, routed_held) + 1),
            ("state", offset_of!(AgentSlot, state) + std::mem::size_of::<crate::fault::AgentState>()),
            ("inbox", offset_of!(AgentSlot, inbox) + std::mem::size_of::<crate::mailbox::Mailbox>()),
            ("out.delivered", out + offset_of!(AgentTickOutput, delivered) + 4),
            ("out.news", out + offset_of!(AgentTickOutput, news) + 1),
            ("out.fuel", out + offset_of!(AgentTickOutput, fuel) + 8),
        ];
        for (field, end) in hot {
            assert!(end <= 192, "{field} ends at byte {end} of the slot");
        }
    }
}
