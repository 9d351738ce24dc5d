//! The agent table: every agent's slot (index = id − 1, never removed), which of them are
//! live (hold an instance), the workflow graph between them, and the phases a tick walks.
//! Kept exact as agents come and go: counting the living on every spawn made spawning
//! O(agents ever spawned) (200,000 spawn+kill took 100 s), and walking every slot made 1 live
//! agent beside 200,000 dead ones tick 3,000× slower than alone (issue 9).
//!
//! A phase is the live agents of one (graph level, spawn priority), ordered by level
//! ascending, then priority descending: without edges every agent is at level 0 and the
//! phases are the priorities, highest first, as they always were. Each phase lists its
//! members, so a tick visits each live agent once however many phases there are.

use std::cmp::Reverse;

use crate::bus::AgentId;
use crate::error::{LockstepError, Result};
use crate::graph::{Graph, Trigger};
use crate::limits::{MAX_AGENT_IDS, MAX_PHASES};
use crate::scheduler::AgentSlot;

/// One phase of every tick: the live agents of one graph level and spawn priority.
#[derive(Debug, Default)]
pub(crate) struct Phase {
    pub(crate) level: u32,
    pub(crate) priority: i32,
    /// Slot indices of its agents, ascending (id order).
    pub(crate) members: Vec<usize>,
    /// Those of them whose trigger is `All`, ascending.
    pub(crate) barriers: Vec<usize>,
}

impl Phase {
    /// The order of phases in a tick: level ascending, then priority descending.
    fn key(&self) -> (u32, Reverse<i32>) {
        (self.level, Reverse(self.priority))
    }
}

#[derive(Default)]
pub(crate) struct Agents {
    /// Every agent ever spawned, by id − 1.
    pub(crate) slots: Vec<AgentSlot>,
    /// Distinct spawn priorities of live agents, highest first (at most `MAX_PHASES`).
    pub(crate) priorities: Vec<i32>,
    /// Agents holding an instance (what `maxAgents` bounds), exact at all times.
    live: usize,
    /// Slot indices of agents holding an instance, ascending: what a tick walks. May hold
    /// released agents until refreshed; spawn appends.
    live_index: Vec<usize>,
    /// Set when an agent released its instance (kill, shutdown, a fault in a tick): the live
    /// index and the priorities are refreshed before they are next used, not on every tick.
    stale: bool,
    /// Edges between running agents, triggers, levels. Changed only through `graph_mut`.
    graph: Graph,
    /// The phases of the next tick, built from the live agents and the graph.
    schedule: Vec<Phase>,
    /// The schedule must be rebuilt before the next tick (an agent died, the graph changed).
    schedule_stale: bool,
    /// At least the live agents holding a fiber (`sliced`): an upper bound, made exact when it
    /// reaches `MAX_SLICED_AGENTS`.
    sliced_at_most: usize,
}

impl Agents {
    /// The table a snapshot stored: `slots` in id order, the phases as they were (and whether
    /// they were due for a refresh). Live agents are those holding an instance.
    pub(crate) fn restored(slots: Vec<AgentSlot>, priorities: Vec<i32>, stale: bool, graph: Graph) -> Self {
        let live_index: Vec<usize> = slots.iter().enumerate().filter(|(_, s)| s.is_live()).map(|(i, _)| i).collect();
        let sliced_at_most = slots.iter().filter(|s| s.suspended.is_some() || s.instance.as_ref().is_some_and(|i| i.async_calls)).count();
        Self { live: live_index.len(), live_index, slots, priorities, stale, graph, schedule: Vec::new(), schedule_stale: true, sliced_at_most }
    }

    /// The workflow graph.
    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The slots to run a tick on, and the graph to read meanwhile.
    pub(crate) fn slots_and_graph(&mut self) -> (&mut [AgentSlot], &Graph) {
        (&mut self.slots, &self.graph)
    }

    /// An agent's level in the graph (levels are recomputed if an edge went; the schedule
    /// does not change).
    pub(crate) fn level(&mut self, id: AgentId) -> u32 {
        self.graph.level(id)
    }

    /// Checks that the edge `from → to` can be added (`Graph::check_connect`); changes nothing.
    pub(crate) fn check_connect(&mut self, from: AgentId, to: AgentId) -> Result<()> {
        self.graph.check_connect(from, to, 1)
    }

    /// The workflow graph, to change: the schedule is rebuilt before the next tick.
    pub(crate) fn graph_mut(&mut self) -> &mut Graph {
        self.schedule_stale = true;
        &mut self.graph
    }

    /// Whether the priorities are due for a refresh (a snapshot stores it).
    pub(crate) fn stale(&self) -> bool {
        self.stale
    }

    /// Agents holding an instance now.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Live agents whose calls run on a fiber (given a time slice once; `MAX_SLICED_AGENTS`).
    /// Counted exactly only when an upper bound (every agent made sliced since the last count)
    /// reaches the limit, so giving 10,000 agents a slice is not 10,000 walks of the table.
    pub(crate) fn sliced(&mut self) -> usize {
        if self.sliced_at_most < crate::limits::MAX_SLICED_AGENTS {
            return self.sliced_at_most;
        }
        self.sliced_at_most = self
            .live_index
            .iter()
            .filter_map(|&i| self.slots.get(i))
            .filter(|s| s.suspended.is_some() || s.instance.as_ref().is_some_and(|i| i.async_calls))
            .count();
        self.sliced_at_most
    }

    /// One more agent runs its calls on a fiber (`sliced`).
    pub(crate) fn add_sliced(&mut self) {
        self.sliced_at_most += 1;
    }

    /// The id the next spawn gets, if any is left (`E_AGENT_IDS_EXHAUSTED`).
    pub(crate) fn next_id(&self) -> Result<AgentId> {
        if self.slots.len() >= MAX_AGENT_IDS {
            return Err(LockstepError::AgentIdsExhausted { max: MAX_AGENT_IDS as u64 });
        }
        Ok(self.slots.len() as AgentId + 1)
    }

    /// Checks that an agent of `priority` can be added: there are at most `MAX_PHASES`
    /// distinct priorities (`E_PRIORITY_LIMIT`). Priorities whose agents are all gone no
    /// longer count (they used to, forever).
    pub(crate) fn check_priority(&mut self, priority: i32) -> Result<()> {
        let is_new = |priorities: &[i32]| priorities.binary_search_by(|p| priority.cmp(p)).is_err();
        if is_new(&self.priorities) && self.priorities.len() >= MAX_PHASES {
            self.refresh();
        }
        if is_new(&self.priorities) && self.priorities.len() >= MAX_PHASES {
            return Err(LockstepError::PriorityLimit { max: MAX_PHASES, phases: self.priorities.clone() });
        }
        Ok(())
    }

    /// Adds a new agent's slot (its id is `next_id`). Its priority is counted; if it holds an
    /// instance (its init did not fault), it is live, and joins the phase of level 0 (it has
    /// no edges yet) and its priority.
    pub(crate) fn add(&mut self, slot: AgentSlot) {
        if let Err(at) = self.priorities.binary_search_by(|p| slot.phase.cmp(p)) {
            self.priorities.insert(at, slot.phase);
        }
        if slot.is_live() {
            let index = self.slots.len();
            self.live += 1;
            self.live_index.push(index);
            if !self.schedule_stale {
                // The highest id yet: its phase's members stay ascending.
                let key = (0, Reverse(slot.phase));
                match self.schedule.binary_search_by(|p| p.key().cmp(&key)) {
                    Ok(at) => self.schedule[at].members.push(index),
                    Err(at) => self.schedule.insert(at, Phase { level: 0, priority: slot.phase, members: vec![index], barriers: Vec::new() }),
                }
            }
        }
        self.slots.push(slot);
    }

    /// An agent that was live released its instance outside a tick (kill, shutdown): its
    /// edges and trigger go with it.
    pub(crate) fn released_one(&mut self, id: AgentId) {
        self.live -= 1;
        self.stale = true;
        self.schedule_stale = true;
        self.graph.remove_agent(id);
    }

    /// Agents released their instances during a tick (faults): recount now, and drop their
    /// edges and triggers.
    pub(crate) fn released_in_tick(&mut self) {
        self.stale = true;
        self.schedule_stale = true;
        self.refresh();
        if !self.graph.is_empty() {
            let slots = &self.slots;
            let gone: Vec<AgentId> = self.graph.agents().into_iter().filter(|&id| !slots.get(id as usize - 1).is_some_and(|s| s.state.is_running())).collect();
            for id in gone {
                self.graph.remove_agent(id);
            }
        }
    }

    pub(crate) fn get(&self, id: AgentId) -> Result<&AgentSlot> {
        self.slots.get((id as usize).wrapping_sub(1)).ok_or(LockstepError::UnknownAgent { id })
    }

    pub(crate) fn get_mut(&mut self, id: AgentId) -> Result<&mut AgentSlot> {
        self.slots.get_mut((id as usize).wrapping_sub(1)).ok_or(LockstepError::UnknownAgent { id })
    }

    /// The live index and the phases for a tick (refreshed first; so are the priorities);
    /// give them back with `end_tick`.
    pub(crate) fn begin_tick(&mut self) -> (Vec<usize>, Vec<Phase>) {
        self.refresh();
        if self.schedule_stale {
            self.rebuild_schedule();
        }
        (std::mem::take(&mut self.live_index), std::mem::take(&mut self.schedule))
    }

    pub(crate) fn end_tick(&mut self, live_index: Vec<usize>, schedule: Vec<Phase>) {
        self.live_index = live_index;
        self.schedule = schedule;
    }

    /// The phases from the live agents' levels, priorities and triggers (the live index is
    /// fresh). Without a graph, one phase per priority, as before.
    fn rebuild_schedule(&mut self) {
        self.schedule_stale = false;
        let mut phases: std::collections::BTreeMap<(u32, Reverse<i32>), Phase> = std::collections::BTreeMap::new();
        let graph_empty = self.graph.is_empty();
        self.graph.refresh_levels();
        for &i in &self.live_index {
            let s = &self.slots[i];
            let level = if graph_empty { 0 } else { self.graph.level_fresh(s.id) };
            let phase = phases.entry((level, Reverse(s.phase))).or_insert_with(|| Phase { level, priority: s.phase, ..Phase::default() });
            phase.members.push(i);
            if !graph_empty && self.graph.trigger(s.id) == Trigger::All {
                phase.barriers.push(i);
            }
        }
        self.schedule = phases.into_values().collect();
    }

    /// Recounts the live agents and drops the priorities none of them has: an empty phase
    /// does nothing (no hash or routing depends on it), but a priority stayed taken forever,
    /// so churn through 64 priorities made every new priority fail with E_PRIORITY_LIMIT.
    /// Also drops released agents from the live index. Only runs when an agent died since the
    /// last refresh (each run walks every live agent).
    fn refresh(&mut self) {
        if !self.stale {
            return;
        }
        self.stale = false;
        let slots = &self.slots;
        self.live_index.retain(|&i| slots.get(i).is_some_and(|s| s.is_live()));
        let mut used: Vec<i32> = Vec::with_capacity(self.priorities.len());
        for s in self.live_index.iter().map(|&i| &self.slots[i]) {
            if !used.contains(&s.phase) {
                used.push(s.phase);
            }
        }
        self.live = self.live_index.len();
        self.priorities.retain(|p| used.contains(p));
    }
}
