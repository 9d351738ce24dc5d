//! Read-only views for observers (the dashboard, docs/DASHBOARD.md): a packed table of every
//! agent, counts by state, queue depths, the events still queued read from a cursor without
//! draining them, and a tap on the messages to and from a few watched agents.
//!
//! Nothing here is an input, nothing is hashed or recorded, and nothing costs anything until an
//! observer asks: the views are computed on request, between ticks, and the tap is `None` (one
//! predictable branch per routed message) until an agent is watched.

use std::collections::VecDeque;

use crate::bus::{AgentId, Message, MessageRef};
use crate::error::Digest;
use crate::fault::AgentState;
use crate::scheduler::AgentSlot;

/// Bytes of one agent's row in [`AgentTable::rows`] (little-endian, 8-byte aligned fields):
///
/// | offset | type | field |
/// |---:|---|---|
/// | 0 | u32 | id |
/// | 4 | u8 | state: 0 running, 1 preempted, 2 faulted, 3 stopped, 4 killed |
/// | 5 | u8 | 0 |
/// | 6 | u16 | module: index into [`AgentTable::modules`] |
/// | 8 | u32 | inbox length |
/// | 12 | i32 | spawn priority (phase) |
/// | 16 | f64 | steps |
/// | 24 | f64 | messages received |
/// | 32 | f64 | messages sent |
/// | 40 | f64 | memory bytes (a stopped agent: when it stopped) |
/// | 48 | f64 | fuel consumed |
///
/// Counters are f64 (exact below 2^53) so JS reads them through one `Float64Array`.
pub const AGENT_ROW_BYTES: usize = 56;

/// Most agents watched by the message tap at once.
pub const MAX_WATCHED: usize = 16;
/// Messages kept per watched agent and direction (the newest).
pub const TAP_DEPTH: usize = 64;
/// Payload bytes kept of each tapped message (its first bytes).
pub const TAP_HEAD_BYTES: usize = 32;

/// Every agent, one fixed-size row each, in id order.
pub struct AgentTable {
    /// `AGENT_ROW_BYTES` per agent.
    pub rows: Vec<u8>,
    /// The distinct modules, in order of first use by the rows.
    pub modules: Vec<Digest>,
}

/// The state code of an agent row (and of `state_counts`' index).
pub fn state_code(state: &AgentState) -> u8 {
    match state {
        AgentState::Running => 0,
        AgentState::Faulted(f) if f.kind.is_preemption() => 1,
        AgentState::Faulted(_) => 2,
        AgentState::Stopped => 3,
        AgentState::Killed => 4,
    }
}

pub(crate) fn agent_table(slots: &[AgentSlot], held: impl Fn(usize, &AgentSlot) -> usize) -> AgentTable {
    let mut rows = Vec::with_capacity(slots.len() * AGENT_ROW_BYTES);
    let mut modules: Vec<Digest> = Vec::new();
    let mut last = usize::MAX;
    for (i, s) in slots.iter().enumerate() {
        // Agents of one module are usually spawned together: check the last one first.
        let module = if modules.get(last) == Some(&s.module) {
            last
        } else {
            last = modules.iter().position(|m| *m == s.module).unwrap_or_else(|| {
                modules.push(s.module);
                modules.len() - 1
            });
            last
        };
        let (memory, fuel) = s.usage();
        rows.extend_from_slice(&(s.id as u32).to_le_bytes());
        rows.push(state_code(&s.state));
        rows.push(0);
        rows.extend_from_slice(&(module as u16).to_le_bytes());
        rows.extend_from_slice(&((s.inbox.len() + held(i, s)) as u32).to_le_bytes());
        rows.extend_from_slice(&s.phase.to_le_bytes());
        for v in [s.steps as f64, s.messages_received as f64, s.messages_sent as f64, memory as f64, fuel as f64] {
            rows.extend_from_slice(&v.to_le_bytes());
        }
    }
    AgentTable { rows, modules }
}

/// Agents by state: running, preempted, faulted, stopped, killed.
pub(crate) fn state_counts(slots: &[AgentSlot]) -> [u64; 5] {
    let mut counts = [0u64; 5];
    for s in slots {
        counts[state_code(&s.state) as usize] += 1;
    }
    counts
}

/// How full each queue is now.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepths {
    /// Events not yet drained.
    pub events: u64,
    /// Dead letters not yet drained.
    pub dead_letters: u64,
    /// Messages to the host not yet drained.
    pub host_messages: u64,
    /// Messages waiting for the next tick (host sends, what init/shutdown sent, inference answers).
    pub pending_inputs: u64,
    /// Records waiting for room in the outbound ring.
    pub outbound_backlog: u64,
    /// Events dropped over the runtime's life (more than `max_events` waited).
    pub events_dropped: u64,
}

/// A message seen by the tap: its header and first `TAP_HEAD_BYTES` of payload.
#[derive(Debug, Clone)]
pub struct TappedMessage {
    /// The tick that routed it (host messages: the tick that delivered them).
    pub tick: u64,
    /// Sender.
    pub from: AgentId,
    /// Recipient.
    pub to: AgentId,
    /// The sender's n-th message.
    pub seq: u64,
    /// Its kind.
    pub kind: u32,
    /// Its payload's length.
    pub bytes: u32,
    /// Its payload's first bytes.
    pub head: Vec<u8>,
}

/// One watched agent's newest messages in and out.
#[derive(Debug, Default)]
pub struct WatchedAgent {
    /// The agent.
    pub id: AgentId,
    /// Messages routed to it (delivered or dead-lettered), oldest first.
    pub inbound: VecDeque<TappedMessage>,
    /// Messages it sent, oldest first.
    pub outbound: VecDeque<TappedMessage>,
}

/// Copies the messages routed to or from the watched agents (at most `MAX_WATCHED`).
#[derive(Debug, Default)]
pub(crate) struct MessageTap {
    pub(crate) watched: Vec<WatchedAgent>,
}

impl MessageTap {
    /// A tap on `ids` (the first `MAX_WATCHED`), keeping what it saw of agents still watched.
    pub(crate) fn rewatch(old: Option<Box<MessageTap>>, ids: &[AgentId]) -> Option<Box<MessageTap>> {
        if ids.is_empty() {
            return None;
        }
        let mut old = old.map(|t| t.watched).unwrap_or_default();
        let mut watched = Vec::new();
        for &id in ids.iter().take(MAX_WATCHED) {
            if watched.iter().any(|w: &WatchedAgent| w.id == id) {
                continue;
            }
            let kept = old.iter().position(|w| w.id == id).map(|i| old.swap_remove(i));
            watched.push(kept.unwrap_or(WatchedAgent { id, ..Default::default() }));
        }
        Some(Box::new(MessageTap { watched }))
    }

    /// A routed message: kept if it is to or from a watched agent.
    pub(crate) fn observe(&mut self, tick: u64, m: MessageRef<'_>) {
        for w in &mut self.watched {
            let inbound = w.id == m.to;
            let outbound = w.id == m.from;
            if !inbound && !outbound {
                continue;
            }
            let copy = TappedMessage {
                tick,
                from: m.from,
                to: m.to,
                seq: m.seq,
                kind: m.kind,
                bytes: m.payload.len() as u32,
                head: m.payload[..m.payload.len().min(TAP_HEAD_BYTES)].to_vec(),
            };
            for (yes, ring) in [(inbound, &mut w.inbound), (outbound, &mut w.outbound)] {
                if yes {
                    if ring.len() == TAP_DEPTH {
                        ring.pop_front();
                    }
                    ring.push_back(copy.clone());
                }
            }
        }
    }
}

/// What one agent received and sent in one tick (a journal cursor's `messages_at`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentMessages {
    /// The agent.
    pub agent: AgentId,
    /// The messages delivered to its `agent_receive`, in delivery order.
    pub received: Vec<Message>,
    /// The messages it sent (to agents or the host), in the order it sent them.
    pub sent: Vec<Message>,
}

/// The messages of a traced tick, by agent (id order: agents settle in id order).
#[derive(Debug, Default)]
pub(crate) struct TickTrace {
    pub(crate) agents: Vec<AgentMessages>,
}

impl TickTrace {
    fn entry(&mut self, agent: AgentId) -> &mut AgentMessages {
        // Settling visits agents in id order, phase after phase: the entry is the last one or
        // an earlier one of a previous phase.
        match self.agents.iter().rposition(|a| a.agent == agent) {
            Some(i) => &mut self.agents[i],
            None => {
                self.agents.push(AgentMessages { agent, ..Default::default() });
                self.agents.sort_by_key(|a| a.agent);
                let i = self.agents.iter().position(|a| a.agent == agent).unwrap_or(0);
                &mut self.agents[i]
            }
        }
    }

    pub(crate) fn received(&mut self, agent: AgentId, messages: Vec<Message>) {
        if !messages.is_empty() {
            self.entry(agent).received.extend(messages);
        }
    }

    pub(crate) fn sent(&mut self, agent: AgentId, messages: Vec<Message>) {
        if !messages.is_empty() {
            self.entry(agent).sent.extend(messages);
        }
    }
}
