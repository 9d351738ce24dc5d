//! The agent table: every agent's slot (index = id − 1, never removed), which of them are
//! live (hold an instance), and the priority phases a tick walks. Kept exact as agents come
//! and go: counting the living on every spawn made spawning O(agents ever spawned) (200,000
//! spawn+kill took 100 s), and walking every slot made 1 live agent beside 200,000 dead ones
//! tick 3,000× slower than alone (issue 9).

use crate::bus::AgentId;
use crate::error::{LockstepError, Result};
use crate::limits::{MAX_AGENT_IDS, MAX_PHASES};
use crate::scheduler::AgentSlot;

#[derive(Default)]
pub(crate) struct Agents {
    /// Every agent ever spawned, by id − 1.
    pub(crate) slots: Vec<AgentSlot>,
    /// Distinct spawn priorities of live agents, highest first: the phases of every tick.
    pub(crate) phases: Vec<i32>,
    /// Agents holding an instance (what `maxAgents` bounds), exact at all times.
    live: usize,
    /// Slot indices of agents holding an instance, ascending: what a tick walks. May hold
    /// released agents until refreshed; spawn appends.
    live_index: Vec<usize>,
    /// Set when an agent released its instance (kill, shutdown, a fault in a tick): the live
    /// index and the phases are refreshed before they are next used, not on every tick.
    stale: bool,
}

impl Agents {
    /// The table a snapshot stored: `slots` in id order, the phases as they were (and whether
    /// they were due for a refresh). Live agents are those holding an instance.
    pub(crate) fn restored(slots: Vec<AgentSlot>, phases: Vec<i32>, stale: bool) -> Self {
        let live_index: Vec<usize> = slots.iter().enumerate().filter(|(_, s)| s.instance.is_some()).map(|(i, _)| i).collect();
        Self { live: live_index.len(), live_index, slots, phases, stale }
    }

    /// Whether the phases are due for a refresh (a snapshot stores it).
    pub(crate) fn stale(&self) -> bool {
        self.stale
    }

    /// Agents holding an instance now.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// The id the next spawn gets, if any is left (`E_AGENT_IDS_EXHAUSTED`).
    pub(crate) fn next_id(&self) -> Result<AgentId> {
        if self.slots.len() >= MAX_AGENT_IDS {
            return Err(LockstepError::AgentIdsExhausted { max: MAX_AGENT_IDS as u64 });
        }
        Ok(self.slots.len() as AgentId + 1)
    }

    /// Checks that an agent of `priority` can be added: a new priority is a new phase, and
    /// there are at most `MAX_PHASES` (`E_PRIORITY_LIMIT`). Priorities whose agents are all
    /// gone no longer count (they used to, forever).
    pub(crate) fn check_phase(&mut self, priority: i32) -> Result<()> {
        let is_new = |phases: &[i32]| phases.binary_search_by(|p| priority.cmp(p)).is_err();
        if is_new(&self.phases) && self.phases.len() >= MAX_PHASES {
            self.refresh();
        }
        if is_new(&self.phases) && self.phases.len() >= MAX_PHASES {
            return Err(LockstepError::PriorityLimit { max: MAX_PHASES, phases: self.phases.clone() });
        }
        Ok(())
    }

    /// Adds a new agent's slot (its id is `next_id`). Its priority becomes a phase; if it
    /// holds an instance (its init did not fault), it is live.
    pub(crate) fn add(&mut self, slot: AgentSlot) {
        if let Err(at) = self.phases.binary_search_by(|p| slot.phase.cmp(p)) {
            self.phases.insert(at, slot.phase);
        }
        if slot.instance.is_some() {
            self.live += 1;
            self.live_index.push(self.slots.len());
        }
        self.slots.push(slot);
    }

    /// An agent that was live released its instance outside a tick (kill, shutdown).
    pub(crate) fn released_one(&mut self) {
        self.live -= 1;
        self.stale = true;
    }

    /// Agents released their instances during a tick (faults): recount now.
    pub(crate) fn released_in_tick(&mut self) {
        self.stale = true;
        self.refresh();
    }

    pub(crate) fn get(&self, id: AgentId) -> Result<&AgentSlot> {
        self.slots.get((id as usize).wrapping_sub(1)).ok_or(LockstepError::UnknownAgent { id })
    }

    pub(crate) fn get_mut(&mut self, id: AgentId) -> Result<&mut AgentSlot> {
        self.slots.get_mut((id as usize).wrapping_sub(1)).ok_or(LockstepError::UnknownAgent { id })
    }

    /// The live index for a tick (refreshed first; so are `phases`); give it back with
    /// `end_tick`.
    pub(crate) fn begin_tick(&mut self) -> Vec<usize> {
        self.refresh();
        std::mem::take(&mut self.live_index)
    }

    pub(crate) fn end_tick(&mut self, live_index: Vec<usize>) {
        self.live_index = live_index;
    }

    /// Recounts the live agents and drops the phases none of them runs in: an empty phase
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
        self.live_index.retain(|&i| slots.get(i).is_some_and(|s| s.instance.is_some()));
        let mut used: Vec<i32> = Vec::with_capacity(self.phases.len());
        for s in self.live_index.iter().map(|&i| &self.slots[i]) {
            if !used.contains(&s.phase) {
                used.push(s.phase);
            }
        }
        self.live = self.live_index.len();
        self.phases.retain(|p| used.contains(p));
    }
}
