//! Language models for agents: the runtime's side of the `generate` import (a child module of
//! `runtime`, like the snapshot code, so that it sees the runtime's fields).
//!
//! At the end of each tick, after the agents ran: the tick's `generate` requests (in canonical
//! order: agent id, then request order) are checked and queued on their model's [`Generator`],
//! then each model runs `tokens_per_tick` decode steps for all its sequences together, and
//! what each sequence produced becomes one message to its agent for the next tick, in
//! canonical order. The messages are recorded (a `Generated` record), so a replay delivers
//! them from the log, with no model. A sequence whose agent stopped is dropped.

use std::collections::{BTreeMap, VecDeque};

use lockstep_abi::generate as g;

use crate::bus::AgentId;
use crate::error::{LockstepError, Result};
use crate::host::{InferRequest, GENERATE_FLAG};
use crate::inference::lm::agents::{self as wire, Prompt};
use crate::inference::lm::{Finish, GenerateRequest, Generator, GeneratorLimits, LanguageModel};
use crate::inference::InferenceError;
use crate::replay_log::{InferAnswer, Record};
use crate::Runtime;

/// How agents use one language model (`Runtime::register_agent_language_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLmOptions {
    /// Decode steps at the end of each tick (each sequence gets at most this many tokens per
    /// tick, one more in the tick it joins), 1..=[`MAX_TOKENS_PER_TICK`].
    pub tokens_per_tick: u32,
    /// Most sequences decoding together, 1..=[`MAX_LM_BATCH`](crate::limits::MAX_LM_BATCH); the
    /// others wait their turn, in request order.
    pub max_batch: u32,
}

impl Default for AgentLmOptions {
    fn default() -> Self {
        Self { tokens_per_tick: 8, max_batch: 64 }
    }
}

/// Most decode steps per tick (so one tick's message per request stays far below the payload
/// limit).
pub const MAX_TOKENS_PER_TICK: u32 = 1_024;

struct Slot {
    id: String,
    options: AgentLmOptions,
    /// None in a replay (tokens come from the log).
    generator: Option<Generator>,
}

/// Every language model agents may use, and their requests in flight.
#[derive(Default)]
pub(crate) struct AgentGeneration {
    slots: Vec<Slot>,
    /// This tick's `generate` requests (diverted from the `infer` queue).
    pub(crate) incoming: Vec<(AgentId, InferRequest)>,
    next_key: u64,
    /// Requests in flight: key → (agent, tag).
    running: BTreeMap<u64, (AgentId, u32)>,
    /// `generate` requests each agent made so far (a derived seed's input).
    counts: BTreeMap<AgentId, u64>,
    /// Replaying: requests in flight by (agent, tag), and the recorded tokens by tick.
    outstanding: BTreeMap<(AgentId, u32), u32>,
    recorded: VecDeque<(u64, Vec<InferAnswer>)>,
    pub(crate) inconsistent: Option<String>,
}

impl AgentGeneration {
    /// Whether a generation is in flight (a snapshot cannot hold one: the KV cache is not in it).
    pub(crate) fn in_flight(&self) -> Option<AgentId> {
        self.running.values().map(|(a, _)| *a).next().or_else(|| self.outstanding.keys().map(|(a, _)| *a).next())
    }
}

/// A 32-byte sampler key: the request's own seed with the agent's id, or (seed 0) the
/// runtime's seed with the agent's id and its request count.
fn sampler_key(runtime_seed: u64, agent: AgentId, count: u64, seed: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"lockstep generate sampler");
    if seed != 0 {
        h.update(&[1]).update(&seed.to_le_bytes()).update(&agent.to_le_bytes());
    } else {
        h.update(&[0]).update(&runtime_seed.to_le_bytes()).update(&agent.to_le_bytes()).update(&count.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

fn status_of(f: &Finish) -> u32 {
    match f {
        Finish::Stop => g::STATUS_STOP,
        Finish::Eos => g::STATUS_EOS,
        Finish::MaxTokens => g::STATUS_MAX_TOKENS,
        Finish::ContextFull => g::STATUS_CONTEXT_FULL,
        Finish::Failed(_) => g::STATUS_FAILED,
    }
}

impl Runtime {
    /// Makes a language model available to agents' `generate` import; returns its slot (the
    /// import's `model` argument). Agents need the `infer` capability for its id. The same
    /// model twice returns the same slot (the options of the first registration stay).
    /// Recorded (an `AgentLanguageModel` record). `E_INVALID_ARGUMENT` for options out of range.
    pub fn register_agent_language_model(&mut self, lm: &LanguageModel, options: AgentLmOptions) -> Result<u32> {
        self.register_lm(&lm.info.id, Some(lm), options)
    }

    /// Counts of the generator behind language-model slot `slot` (None: no such slot, or a
    /// replay, which runs no model).
    pub fn language_model_stats(&self, slot: u32) -> Option<crate::inference::lm::GeneratorStats> {
        self.lm.slots.get(slot as usize)?.generator.as_ref().map(Generator::stats)
    }

    /// A replay's registration: no model (tokens come from the log).
    pub(crate) fn register_recorded_language_model(&mut self, id: &str, options: AgentLmOptions) -> Result<u32> {
        self.register_lm(id, None, options)
    }

    fn register_lm(&mut self, id: &str, lm: Option<&LanguageModel>, options: AgentLmOptions) -> Result<u32> {
        self.journal_ok()?;
        if let Some(slot) = self.lm.slots.iter().position(|s| s.id == id) {
            return Ok(slot as u32);
        }
        let bad = |reason: String| LockstepError::InvalidArgument { name: "registerAgentLanguageModel".into(), reason };
        if !(1..=MAX_TOKENS_PER_TICK).contains(&options.tokens_per_tick) {
            return Err(bad(format!("tokensPerTick must be 1..={MAX_TOKENS_PER_TICK}, got {}", options.tokens_per_tick)));
        }
        if !(1..=crate::limits::MAX_LM_BATCH as u32).contains(&options.max_batch) {
            return Err(bad(format!("maxBatch must be 1..={}, got {}", crate::limits::MAX_LM_BATCH, options.max_batch)));
        }
        if lm.is_none() && !self.inference.replaying {
            return Err(bad("a language model is registered with its loaded model".into()));
        }
        let limits = GeneratorLimits { max_batch: options.max_batch as usize, max_queued: crate::limits::MAX_LM_QUEUED };
        let slot = self.lm.slots.len() as u32;
        let generator = if self.inference.replaying { None } else { lm.map(|lm| Generator::new(lm.clone(), limits)) };
        self.lm.slots.push(Slot { id: id.to_string(), options, generator });
        let record = Record::AgentLanguageModel { slot, tokens_per_tick: options.tokens_per_tick, max_batch: options.max_batch, id: id.to_string() };
        self.record(|r| r.record(&record));
        self.outputs.trim_events();
        Ok(slot)
    }

    /// The tokens a replayed session's agents got at the end of `tick` (its Generated record).
    pub(crate) fn accept_recorded_generation(&mut self, tick: u64, results: Vec<InferAnswer>) -> Result<()> {
        if !self.inference.replaying {
            return Err(LockstepError::InvalidConfig { reason: "recorded generated tokens are an input of a replay only".into() });
        }
        self.lm.recorded.push_back((tick, results));
        Ok(())
    }

    /// Replaying: why the last tick's recorded tokens could not have been generated for its
    /// agents' requests, if they could not (taken once).
    pub(crate) fn take_inconsistent_generation(&mut self) -> Option<String> {
        self.lm.inconsistent.take()
    }

    /// Serves this tick's `generate` requests and runs the models' decode steps (see the
    /// module's documentation).
    pub(crate) fn serve_generation(&mut self, tick: u64) {
        let requests = std::mem::take(&mut self.lm.incoming);
        if requests.is_empty() && self.lm.running.is_empty() && self.lm.outstanding.is_empty() && self.lm.recorded.is_empty() {
            return;
        }
        let results = if self.inference.replaying { self.replay_generation(tick, requests) } else { self.generate_live(requests) };
        if results.is_empty() {
            return;
        }
        if !self.inference.replaying {
            self.record(|r| r.record(&Record::Generated { tick, results: results.clone() }));
        }
        for (agent, tag, payload) in results {
            self.inputs.generated(agent, tag, payload);
        }
    }

    fn agent_running(&self, agent: AgentId) -> bool {
        self.agents.get(agent).is_ok_and(|s| s.state.is_running())
    }

    fn generate_live(&mut self, requests: Vec<(AgentId, InferRequest)>) -> Vec<InferAnswer> {
        // Sequences of agents that stopped are dropped (their tokens would be dead letters).
        let gone: Vec<u64> = self.lm.running.iter().filter(|(_, (a, _))| !self.agent_running(*a)).map(|(k, _)| *k).collect();
        for key in gone {
            self.lm.running.remove(&key);
            for s in self.lm.slots.iter_mut().filter_map(|s| s.generator.as_mut()) {
                s.cancel(key);
            }
        }
        // (agent, key) orders what is delivered: canonical, whatever the model did.
        let mut out: Vec<(AgentId, u64, u32, Vec<u8>)> = Vec::new();
        for (agent, r) in requests {
            let key = self.lm.next_key;
            self.lm.next_key += 1;
            let count = self.lm.counts.entry(agent).or_default();
            let nth = *count;
            *count += 1;
            let slot = (r.model & !GENERATE_FLAG) as usize;
            match self.queue_generation(agent, key, nth, slot, &r.input) {
                Ok(()) => {
                    self.lm.running.insert(key, (agent, r.tag));
                }
                Err(status) => out.push((agent, key, r.tag, wire::result(status, &[], &[]))),
            }
        }
        for slot in self.lm.slots.iter_mut() {
            let Some(generator) = slot.generator.as_mut() else { continue };
            if !generator.has_work() {
                continue;
            }
            generator.run(slot.options.tokens_per_tick as usize);
            let tokenizer = generator.model().info.options.tokenizer;
            for p in generator.take_all() {
                let Some(&(agent, tag)) = self.lm.running.get(&p.key) else { continue };
                let status = p.finish.as_ref().map_or(g::STATUS_MORE, status_of);
                if let Some(Finish::Failed(why)) = &p.finish {
                    let text = format!("generate: the language model failed; request {tag} ends with status {status}: {why}");
                    self.outputs.push_event(crate::Event::Log { tick: self.tick, agent, level: crate::abi::log_level::WARN, text });
                }
                let mut text = Vec::new();
                for t in &p.tokens {
                    tokenizer.piece(*t, &mut text);
                }
                out.push((agent, p.key, tag, wire::result(status, &p.tokens, &text)));
                if p.finish.is_some() {
                    self.lm.running.remove(&p.key);
                }
            }
        }
        out.sort_by_key(|(agent, key, _, _)| (*agent, *key));
        out.into_iter().map(|(agent, _, tag, payload)| (agent, tag, payload)).collect()
    }

    /// Checks one request and queues it; the final status to answer at once if it cannot run.
    fn queue_generation(&mut self, agent: AgentId, key: u64, nth: u64, slot: usize, input: &[u8]) -> std::result::Result<(), u32> {
        let Some(s) = self.lm.slots.get(slot) else { return Err(g::STATUS_NO_SUCH_MODEL) };
        let module = self.agents.get(agent).ok().map(|a| a.module);
        let allowed = module.and_then(|m| self.modules.get(&m)).is_some_and(|m| m.grants.capabilities.may_infer(&s.id));
        if !allowed {
            return Err(g::STATUS_FORBIDDEN);
        }
        let request = wire::parse(input).map_err(|_| g::STATUS_BAD_REQUEST)?;
        let seed = sampler_key(self.config.seed, agent, nth, request.seed);
        let Some(generator) = self.lm.slots.get_mut(slot).and_then(|s| s.generator.as_mut()) else { return Err(g::STATUS_NO_SUCH_MODEL) };
        let prompt = match request.prompt {
            Prompt::Tokens(ids) => ids,
            Prompt::Text(text) => generator.model().encode_prompt(&text).map_err(|_| g::STATUS_BAD_REQUEST)?,
        };
        let r = GenerateRequest { prompt, max_tokens: request.max_tokens, stop: request.stop, sampling: request.sampling, seed };
        generator.submit(key, r).map_err(|e| match e {
            InferenceError::GenerateQueueFull { .. } => g::STATUS_BUSY,
            _ => g::STATUS_BAD_REQUEST,
        })
    }

    /// Replaying: the recorded tokens of this tick, checked against the requests in flight.
    fn replay_generation(&mut self, tick: u64, requests: Vec<(AgentId, InferRequest)>) -> Vec<InferAnswer> {
        let stopped: Vec<(AgentId, u32)> = self.lm.outstanding.keys().filter(|(a, _)| !self.agent_running(*a)).copied().collect();
        for k in stopped {
            self.lm.outstanding.remove(&k);
        }
        for (agent, r) in &requests {
            *self.lm.outstanding.entry((*agent, r.tag)).or_default() += 1;
        }
        let results = match self.lm.recorded.front() {
            Some((t, _)) if *t == tick => self.lm.recorded.pop_front().map(|(_, r)| r).unwrap_or_default(),
            _ => return Vec::new(),
        };
        let mut last = 0;
        for (agent, tag, payload) in &results {
            let status = wire::status(payload);
            let fits = payload.len() <= crate::abi::MAX_PAYLOAD_BYTES && status.is_some();
            let open = self.lm.outstanding.get_mut(&(*agent, *tag));
            let why = match (open, fits) {
                _ if *agent < last => Some(format!("the Generated tokens of tick {tick} are not ordered by agent id")),
                (None, _) | (Some(0), _) => Some(format!("tokens for agent {agent}, tag {tag}, which has no generate request in flight at tick {tick}")),
                (_, false) => Some(format!("a result for agent {agent}, tag {tag} at tick {tick} that no runtime writes")),
                (Some(n), true) => {
                    if status != Some(g::STATUS_MORE) {
                        *n -= 1;
                    }
                    None
                }
            };
            if let Some(why) = why {
                self.lm.inconsistent.get_or_insert(why);
            }
            last = *agent;
        }
        self.lm.outstanding.retain(|_, n| *n > 0);
        results
    }
}
