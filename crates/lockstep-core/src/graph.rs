//! The workflow graph (issue 16, "DAG workflows"): edges `from → to` between running agents,
//! each agent's trigger, and each agent's level (the longest path to it from an agent with no
//! upstream). A tick runs agents level by level (`agents::Agents::schedule`), so an agent runs
//! after every agent it depends on, and what they send it arrives in the same tick.
//!
//! Kept acyclic: `connect` refuses an edge that would close a cycle, naming it. Edges are
//! inputs (recorded, hashed, replayed, in snapshots); an agent's edges and trigger go when it
//! stops running (kill, shutdown, a fault), which every replay of the session does at the same
//! point. Everything is ordered (`BTreeMap`/`BTreeSet`), so whatever is derived from the graph
//! (levels, the cycle named) is the same in every process.

use std::collections::{BTreeMap, BTreeSet};

use crate::bus::AgentId;
use crate::error::{LockstepError, Result};
use crate::limits::MAX_EDGES;

/// When an agent with upstream agents receives and steps (`Runtime::set_trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Trigger {
    /// Every tick, with whatever its inbox holds (as without a graph).
    #[default]
    Any,
    /// A fan-in barrier: only in ticks where every *running* upstream agent has sent it
    /// something since it last stepped; otherwise its inbox waits (bounded as any inbox is).
    /// With no running upstream agent it steps every tick.
    All,
}

impl Trigger {
    /// Its name in JS and the docs: `"any"` or `"all"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Any => "any",
            Trigger::All => "all",
        }
    }

    /// The byte a log record and a snapshot store: 0 any, 1 all.
    pub fn tag(self) -> u8 {
        match self {
            Trigger::Any => 0,
            Trigger::All => 1,
        }
    }

    /// The trigger a tag names, if any.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Trigger::Any),
            1 => Some(Trigger::All),
            _ => None,
        }
    }
}

/// The edges, the triggers and the levels.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    /// Downstream agents of each agent with an out-edge.
    out: BTreeMap<AgentId, BTreeSet<AgentId>>,
    /// Upstream agents of each agent with an in-edge.
    up: BTreeMap<AgentId, BTreeSet<AgentId>>,
    edges: usize,
    /// Agents whose trigger is `All` (the rest are `Any`).
    all: BTreeSet<AgentId>,
    /// Level of every agent with an in-edge (≥ 1; the rest are at level 0). Exact unless
    /// `levels_stale` (an edge went), then recomputed when next read.
    levels: BTreeMap<AgentId, u32>,
    levels_stale: bool,
}

impl Graph {
    /// Whether there are no edges and no `All` triggers (a session without a graph).
    pub(crate) fn is_empty(&self) -> bool {
        self.edges == 0 && self.all.is_empty()
    }

    /// Number of edges.
    pub(crate) fn edge_count(&self) -> usize {
        self.edges
    }

    /// Every edge, ascending by (from, to).
    pub(crate) fn edges(&self) -> Vec<(AgentId, AgentId)> {
        self.out.iter().flat_map(|(&f, tos)| tos.iter().map(move |&t| (f, t))).collect()
    }

    /// Agents whose trigger is `All`, ascending.
    pub(crate) fn all_triggers(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.all.iter().copied()
    }

    /// The agent's upstream agents, ascending.
    pub(crate) fn upstream(&self, id: AgentId) -> impl DoubleEndedIterator<Item = AgentId> + '_ {
        self.up.get(&id).into_iter().flatten().copied()
    }

    /// The agent's downstream agents, ascending.
    pub(crate) fn downstream(&self, id: AgentId) -> impl DoubleEndedIterator<Item = AgentId> + '_ {
        self.out.get(&id).into_iter().flatten().copied()
    }

    pub(crate) fn trigger(&self, id: AgentId) -> Trigger {
        if self.all.contains(&id) {
            Trigger::All
        } else {
            Trigger::Any
        }
    }

    /// Sets the trigger; whether it changed.
    pub(crate) fn set_trigger(&mut self, id: AgentId, trigger: Trigger) -> bool {
        match trigger {
            Trigger::All => self.all.insert(id),
            Trigger::Any => self.all.remove(&id),
        }
    }

    pub(crate) fn has_edge(&self, from: AgentId, to: AgentId) -> bool {
        self.out.get(&from).is_some_and(|s| s.contains(&to))
    }

    /// The agent's level: 0 without upstream agents, else one more than its deepest upstream's.
    pub(crate) fn level(&mut self, id: AgentId) -> u32 {
        self.refresh_levels();
        self.level_fresh(id)
    }

    /// The agent's level, the levels being fresh (`refresh_levels` since the last change).
    pub(crate) fn level_fresh(&self, id: AgentId) -> u32 {
        debug_assert!(!self.levels_stale);
        self.levels.get(&id).copied().unwrap_or(0)
    }

    #[cfg(test)]
    fn levels(&mut self) -> &BTreeMap<AgentId, u32> {
        self.refresh_levels();
        &self.levels
    }

    /// Checks that `from → to` can be added: room under `MAX_EDGES` (`E_EDGE_LIMIT`) and no
    /// cycle (`E_DAG_CYCLE`, naming it). The caller checked that both agents run.
    pub(crate) fn check_connect(&mut self, from: AgentId, to: AgentId, more: usize) -> Result<()> {
        if self.edges + more > MAX_EDGES {
            return Err(LockstepError::EdgeLimit { max: MAX_EDGES });
        }
        if let Some(path) = self.path(to, from) {
            // from → to → … → from.
            let mut cycle = vec![from];
            cycle.extend(path);
            return Err(LockstepError::DagCycle { from, to, cycle });
        }
        Ok(())
    }

    /// Adds `from → to` (checked by `check_connect`); whether it is new. Levels stay exact:
    /// those downstream of `to` rise as far as they must.
    pub(crate) fn connect(&mut self, from: AgentId, to: AgentId) -> bool {
        if !self.out.entry(from).or_default().insert(to) {
            return false;
        }
        self.up.entry(to).or_default().insert(from);
        self.edges += 1;
        if !self.levels_stale {
            let base = self.levels.get(&from).copied().unwrap_or(0);
            let mut raise = vec![(to, base + 1)];
            while let Some((id, level)) = raise.pop() {
                let at = self.levels.entry(id).or_insert(0);
                if *at >= level {
                    continue;
                }
                *at = level;
                raise.extend(self.out.get(&id).into_iter().flatten().map(|&d| (d, level + 1)));
            }
        }
        true
    }

    /// Removes `from → to`; whether it existed.
    pub(crate) fn disconnect(&mut self, from: AgentId, to: AgentId) -> bool {
        let removed = self.out.get_mut(&from).is_some_and(|s| s.remove(&to));
        if removed {
            if self.out.get(&from).is_some_and(BTreeSet::is_empty) {
                self.out.remove(&from);
            }
            if let Some(s) = self.up.get_mut(&to) {
                s.remove(&from);
                if s.is_empty() {
                    self.up.remove(&to);
                }
            }
            self.edges -= 1;
            self.levels_stale = true;
        }
        removed
    }

    /// Removes the agent's edges and trigger (it stopped running); whether it had any.
    pub(crate) fn remove_agent(&mut self, id: AgentId) -> bool {
        let mut changed = self.all.remove(&id);
        let downstream: Vec<AgentId> = self.downstream(id).collect();
        let upstream: Vec<AgentId> = self.upstream(id).collect();
        for d in downstream {
            changed |= self.disconnect(id, d);
        }
        for u in upstream {
            changed |= self.disconnect(u, id);
        }
        changed
    }

    /// Agents with an edge or a trigger, ascending (those `remove_agent` may concern).
    pub(crate) fn agents(&self) -> BTreeSet<AgentId> {
        self.out.keys().chain(self.up.keys()).chain(self.all.iter()).copied().collect()
    }

    /// The first path `start → … → goal` found (depth first, lowest ids first), both ends
    /// included; `None` if `goal` is not reachable. Only agents below
    /// `goal`'s level can lead to it, so the search stops at the others.
    fn path(&mut self, start: AgentId, goal: AgentId) -> Option<Vec<AgentId>> {
        if start == goal {
            return Some(vec![goal]);
        }
        self.refresh_levels();
        let level = |id: AgentId| self.levels.get(&id).copied().unwrap_or(0);
        let goal_level = level(goal);
        if goal_level <= level(start) {
            return None;
        }
        let mut parent: BTreeMap<AgentId, AgentId> = BTreeMap::new();
        let mut seen: BTreeSet<AgentId> = BTreeSet::from([start]);
        // Depth first; each entry is (agent, its downstream agents not yet tried).
        let mut stack: Vec<(AgentId, Vec<AgentId>)> = vec![(start, self.downstream(start).rev().collect())];
        while let Some((at, next)) = stack.last_mut() {
            let at = *at;
            let Some(n) = next.pop() else {
                stack.pop();
                continue;
            };
            if n == goal {
                let mut path = vec![goal, at];
                let mut p = at;
                while let Some(&q) = parent.get(&p) {
                    path.push(q);
                    p = q;
                }
                path.reverse();
                return Some(path);
            }
            if level(n) >= goal_level || !seen.insert(n) {
                continue;
            }
            parent.insert(n, at);
            stack.push((n, self.downstream(n).rev().collect()));
        }
        None
    }

    /// Recomputes every level (Kahn's algorithm over the agents with edges) if an edge went.
    pub(crate) fn refresh_levels(&mut self) {
        if !self.levels_stale {
            return;
        }
        self.levels_stale = false;
        self.levels.clear();
        let mut waiting: BTreeMap<AgentId, usize> = self.up.iter().map(|(&id, s)| (id, s.len())).collect();
        let mut ready: Vec<AgentId> = self.out.keys().filter(|id| !self.up.contains_key(id)).copied().collect();
        while let Some(id) = ready.pop() {
            let level = self.levels.get(&id).copied().unwrap_or(0);
            for &d in self.out.get(&id).into_iter().flatten() {
                let at = self.levels.entry(d).or_insert(0);
                *at = (*at).max(level + 1);
                if let Some(n) = waiting.get_mut(&d) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(d);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(AgentId, AgentId)]) -> Graph {
        let mut g = Graph::default();
        for &(f, t) in edges {
            g.check_connect(f, t, 1).unwrap();
            assert!(g.connect(f, t));
        }
        g
    }

    #[test]
    fn levels_are_longest_paths_and_survive_removals() {
        let mut g = graph(&[(1, 2), (1, 3), (2, 4), (3, 4), (4, 5), (1, 5)]);
        let levels: Vec<u32> = (1..=5).map(|i| g.level(i)).collect();
        assert_eq!(levels, [0, 1, 1, 2, 3]);
        assert!(g.disconnect(4, 5));
        assert_eq!(g.level(5), 1);
        assert!(g.remove_agent(1));
        assert_eq!((g.level(2), g.level(3), g.level(4), g.level(5)), (0, 0, 1, 0));
        assert_eq!(g.edges(), [(2, 4), (3, 4)]);
    }

    #[test]
    fn a_cycle_is_refused_naming_it() {
        let mut g = graph(&[(1, 2), (2, 3), (3, 4), (2, 5)]);
        match g.check_connect(4, 1, 1) {
            Err(LockstepError::DagCycle { from: 4, to: 1, cycle }) => assert_eq!(cycle, [4, 1, 2, 3, 4]),
            other => panic!("{other:?}"),
        }
        match g.check_connect(7, 7, 1) {
            Err(LockstepError::DagCycle { cycle, .. }) => assert_eq!(cycle, [7, 7]),
            other => panic!("{other:?}"),
        }
        g.check_connect(5, 4, 1).unwrap();
        g.check_connect(1, 4, 1).unwrap();
    }

    #[test]
    fn the_edge_limit_is_enforced_before_the_cycle_check() {
        let mut g = graph(&[(1, 2)]);
        assert_eq!(g.check_connect(2, 3, MAX_EDGES), Err(LockstepError::EdgeLimit { max: MAX_EDGES }));
        assert_eq!(g.check_connect(2, 1, MAX_EDGES), Err(LockstepError::EdgeLimit { max: MAX_EDGES }));
        g.check_connect(2, 3, MAX_EDGES - 1).unwrap();
    }

    #[test]
    fn incremental_levels_match_a_recount() {
        let mut g = Graph::default();
        let mut state = 12345u64;
        for _ in 0..2000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (a, b) = ((state >> 33) % 60 + 1, (state >> 13) % 60 + 1);
            if g.check_connect(a, b, 1).is_ok() {
                g.connect(a, b);
            } else if state.is_multiple_of(3) {
                g.disconnect(b, a);
            }
            if state.is_multiple_of(97) {
                g.remove_agent(a);
            }
            let incremental = g.levels().clone();
            g.levels_stale = true;
            assert_eq!(&incremental, g.levels());
        }
    }
}
