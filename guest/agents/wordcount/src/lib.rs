//! One stage of a word-count workflow, wired as a DAG by the host (demo/wordcount.mjs):
//!
//! ```text
//! text ─► mapper ×M ─► shuffler ×S ─► reducer ×R ─► reporter (trigger 'all') ─► host
//! ```
//!
//! The host gives each agent its role and downstream agents (kind `CONFIG`: role u8, count u32,
//! that many agent ids u64) and connects the same edges in the runtime, so every stage runs
//! after the one before it in the same tick. Then:
//! - a **mapper** gets text (kind `TEXT`), splits it into words (ASCII letters and digits,
//!   lowercased, 1..=32 bytes; anything else separates words) and at its step sends each
//!   shuffler the counts of its words (`PAIRS`; a word goes to shuffler `hash % S`);
//! - a **shuffler** merges what the mappers sent and passes each word on to reducer
//!   `(hash >> 32) % R`;
//! - a **reducer** keeps the running total of its words and, at a step where some changed (or
//!   when the host says `FLUSH`), sends the reporter their new totals;
//! - the **reporter** (trigger `all`: it steps only once every reducer has sent it something)
//!   keeps every word's total and tells the host (`SUMMARY`): tick u64, total words u64,
//!   distinct words u32, then the top 10 as pairs.
//!
//! Pairs are `len u8 ‖ word ‖ count u32` (little-endian), as many as fit a message.
use std::collections::BTreeMap;

use lockstep_sdk::{export_agent, send, Agent, AgentId, Context, Message, HOST, MAX_PAYLOAD_BYTES};

const CONFIG: u32 = 100;
const TEXT: u32 = 1;
const PAIRS: u32 = 2;
const SUMMARY: u32 = 3;
const FLUSH: u32 = 4;

const MAPPER: u8 = 1;
const SHUFFLER: u8 = 2;
const REDUCER: u8 = 3;
const REPORTER: u8 = 4;

const MAX_WORD: usize = 32;
const TOP: usize = 10;

#[derive(Default)]
struct Stage {
    role: u8,
    targets: Vec<AgentId>,
    /// This tick's counts (mapper, shuffler), or the running totals (reducer, reporter).
    counts: BTreeMap<Vec<u8>, u64>,
    /// Reducer: words whose total changed since it last reported; whether to report anyway.
    changed: Vec<Vec<u8>>,
    flush: bool,
}

/// FNV-1a, 64 bits: the partition of a word.
fn hash(word: &[u8]) -> u64 {
    word.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Calls `f(word, count)` for each pair in `payload`; stops at a malformed tail.
fn pairs(payload: &[u8], mut f: impl FnMut(&[u8], u64)) {
    let mut at = 0;
    while let Some(&len) = payload.get(at) {
        let (start, end) = (at + 1, at + 1 + len as usize);
        let (Some(word), Some(n)) = (payload.get(start..end), payload.get(end..end + 4)) else { return };
        f(word, u64::from(u32::from_le_bytes([n[0], n[1], n[2], n[3]])));
        at = end + 4;
    }
}

/// Sends `items` as pairs to `to`, in as many messages as they need.
fn send_pairs<'a>(to: AgentId, kind: u32, items: impl Iterator<Item = (&'a [u8], u64)>) {
    let mut out = Vec::new();
    for (word, n) in items {
        if out.len() + 1 + word.len() + 4 > MAX_PAYLOAD_BYTES {
            let _ = send(to, kind, &out);
            out.clear();
        }
        out.push(word.len() as u8);
        out.extend_from_slice(word);
        out.extend_from_slice(&(n.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    }
    if !out.is_empty() {
        let _ = send(to, kind, &out);
    }
}

impl Stage {
    fn add(&mut self, word: &[u8], n: u64) {
        *self.counts.entry(word.to_vec()).or_default() += n;
    }

    /// Sends this tick's counts on, each word to the target its partition picks.
    fn pass_on(&mut self, pick: impl Fn(u64, usize) -> usize) {
        if self.targets.is_empty() {
            return;
        }
        let counts = std::mem::take(&mut self.counts);
        let mut parts: Vec<Vec<(&[u8], u64)>> = vec![Vec::new(); self.targets.len()];
        for (word, n) in &counts {
            parts[pick(hash(word), self.targets.len())].push((word, *n));
        }
        for (to, part) in self.targets.iter().zip(parts) {
            if !part.is_empty() {
                send_pairs(*to, PAIRS, part.into_iter());
            }
        }
    }
}

impl Agent for Stage {
    fn step(&mut self, ctx: &Context) {
        match self.role {
            MAPPER => self.pass_on(|h, n| (h % n as u64) as usize),
            SHUFFLER => self.pass_on(|h, n| ((h >> 32) % n as u64) as usize),
            REDUCER => {
                if self.changed.is_empty() && !self.flush {
                    return;
                }
                self.flush = false;
                let mut changed = std::mem::take(&mut self.changed);
                changed.sort_unstable();
                changed.dedup();
                let counts = &self.counts;
                for &to in &self.targets {
                    // Even with nothing changed (a flush), something is sent: the barrier downstream counts on it.
                    let items = changed.iter().map(|w| (w.as_slice(), counts.get(w).copied().unwrap_or(0)));
                    if changed.is_empty() {
                        let _ = send(to, PAIRS, &[]);
                    } else {
                        send_pairs(to, PAIRS, items);
                    }
                }
            }
            REPORTER => {
                let total: u64 = self.counts.values().sum();
                let mut top: Vec<(&Vec<u8>, u64)> = self.counts.iter().map(|(w, n)| (w, *n)).collect();
                top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                let mut out = Vec::new();
                out.extend_from_slice(&ctx.tick.to_le_bytes());
                out.extend_from_slice(&total.to_le_bytes());
                out.extend_from_slice(&(self.counts.len() as u32).to_le_bytes());
                for (word, n) in top.into_iter().take(TOP) {
                    out.push(word.len() as u8);
                    out.extend_from_slice(word);
                    out.extend_from_slice(&(n.min(u64::from(u32::MAX)) as u32).to_le_bytes());
                }
                let _ = send(HOST, SUMMARY, &out);
            }
            _ => {}
        }
    }

    fn receive(&mut self, msg: &Message<'_>) {
        match msg.kind {
            CONFIG if msg.from == HOST && msg.payload.len() >= 5 => {
                self.role = msg.payload[0];
                let n = u32::from_le_bytes([msg.payload[1], msg.payload[2], msg.payload[3], msg.payload[4]]) as usize;
                self.targets = msg.payload[5..].chunks_exact(8).take(n).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
            }
            TEXT if self.role == MAPPER => {
                for word in msg.payload.split(|b| !b.is_ascii_alphanumeric()) {
                    if (1..=MAX_WORD).contains(&word.len()) {
                        self.add(&word.to_ascii_lowercase(), 1);
                    }
                }
            }
            PAIRS => match self.role {
                SHUFFLER => pairs(msg.payload, |w, n| self.add(w, n)),
                REDUCER => pairs(msg.payload, |w, n| {
                    *self.counts.entry(w.to_vec()).or_default() += n;
                    self.changed.push(w.to_vec());
                }),
                REPORTER => pairs(msg.payload, |w, n| {
                    self.counts.insert(w.to_vec(), n);
                }),
                _ => {}
            },
            FLUSH => self.flush = true,
            _ => {}
        }
    }
}

export_agent!(Stage);
