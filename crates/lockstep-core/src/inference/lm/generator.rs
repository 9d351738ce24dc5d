//! The generation service: continuous batching over one language model.
//!
//! Sequences are submitted with a key (the caller's order: the runtime numbers them in
//! canonical order), wait in a bounded FIFO queue, and join the batch at the start of a step
//! while it has room: their prompts are prefilled (one call per group of similar lengths,
//! [`prefill_groups`]; padded on the left for the `Concat` layout, on the right for `InPlace`),
//! which gives each its first token, and their caches are merged into the batch's. Then one
//! decode call advances every active sequence by one token. A sequence leaves when it finishes
//! (stop sequence, end-of-sequence token, max tokens, context full), and its row is dropped
//! before the next call. Everything a step does depends only on what was submitted and in which
//! order, never on time or threads: the same submissions give the same tokens.

use std::collections::VecDeque;

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};

use super::kv::{self, Kv, KvDevice, RowSource};
use super::sampler::{Sampler, SamplingParams};
use super::{KvLayout, LanguageModel};
use crate::inference::InferenceError;

/// One generation to run.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The prompt's tokens (at least one; the caller adds `bos` if the model wants one).
    pub prompt: Vec<u32>,
    /// Most tokens to generate, 1..=[`abi::generate::MAX_TOKENS`](crate::abi::generate::MAX_TOKENS).
    pub max_tokens: u32,
    /// Byte strings that end the generation once the generated text contains one (the
    /// tokens up to and including the one that completed it are delivered).
    pub stop: Vec<Vec<u8>>,
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// The key of the sampler's random stream.
    pub seed: [u8; 32],
}

/// Why a sequence finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Its text came to one of its stop sequences.
    Stop,
    /// It produced an end-of-sequence token (not delivered).
    Eos,
    /// It produced `max_tokens` tokens.
    MaxTokens,
    /// Prompt and tokens fill the model's context (`LmOptions::max_context`).
    ContextFull,
    /// The model failed to run (ONNX Runtime's message).
    Failed(String),
}

impl Finish {
    /// Its name in lower case (`stop`, `eos`, `max_tokens`, `context_full`, `failed`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Eos => "eos",
            Self::MaxTokens => "max_tokens",
            Self::ContextFull => "context_full",
            Self::Failed(_) => "failed",
        }
    }
}

/// What a sequence produced since it was last asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Its key.
    pub key: u64,
    /// Tokens generated since the last `take` (end-of-sequence tokens excluded).
    pub tokens: Vec<u32>,
    /// Set once: why it finished.
    pub finish: Option<Finish>,
}

/// Bounds of one generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorLimits {
    /// Most sequences decoding together (1..=[`MAX_LM_BATCH`](crate::limits::MAX_LM_BATCH)).
    pub max_batch: usize,
    /// Most sequences waiting to join (..=[`MAX_LM_QUEUED`](crate::limits::MAX_LM_QUEUED));
    /// past it `submit` refuses.
    pub max_queued: usize,
}

impl Default for GeneratorLimits {
    fn default() -> Self {
        Self { max_batch: 64, max_queued: crate::limits::MAX_LM_QUEUED }
    }
}

/// Counts over a generator's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeneratorStats {
    /// Decode steps (each one model call for every active sequence).
    pub decode_calls: u64,
    /// Prefill calls (each for the sequences that joined at one step).
    pub prefill_calls: u64,
    /// Tokens generated.
    pub tokens: u64,
    /// Times the batch's cache was rebuilt (sequences joined or left, or an in-place buffer
    /// grew).
    pub rebuilds: u64,
    /// Whole-cache copies between the host and a GPU (0 on CPU): a GPU-resident cache crosses
    /// only to be rebuilt, never on a plain decode step.
    pub kv_transfers: u64,
}

struct Seq {
    key: u64,
    prompt: Vec<u32>,
    max_tokens: u32,
    stop: Vec<Vec<u8>>,
    sampler: Sampler,
    generated: u32,
    /// Tokens in the cache.
    len: usize,
    /// The token to feed at the next decode step.
    next: u32,
    /// The generated text's last bytes (for stop sequences spanning tokens).
    tail: Vec<u8>,
    out: Vec<u32>,
    finish: Option<Finish>,
    reported: bool,
    cancelled: bool,
}

/// Continuous batching over one [`LanguageModel`] (see the module's documentation).
pub struct Generator {
    lm: LanguageModel,
    limits: GeneratorLimits,
    queue: VecDeque<Seq>,
    /// The batch, in row order: row `i` of `kv` is `active[i]`'s.
    active: Vec<Seq>,
    kv: Option<Kv>,
    /// Finished (or cancelled) sequences whose last progress is not taken yet.
    done: Vec<Seq>,
    stats: GeneratorStats,
    logits: Vec<f32>,
}

type Feeds = Vec<(&'static str, DynValue)>;

impl Generator {
    /// A generator over `lm`; a model without `attention_mask` cannot pad, so it decodes one
    /// sequence at a time.
    pub fn new(lm: LanguageModel, limits: GeneratorLimits) -> Self {
        let mut limits = limits;
        limits.max_batch = limits.max_batch.clamp(1, crate::limits::MAX_LM_BATCH);
        limits.max_queued = limits.max_queued.min(crate::limits::MAX_LM_QUEUED);
        if !lm.info.attention_mask {
            limits.max_batch = 1;
        }
        Self { lm, limits, queue: VecDeque::new(), active: Vec::new(), kv: None, done: Vec::new(), stats: GeneratorStats::default(), logits: Vec::new() }
    }

    /// The model it serves.
    pub fn model(&self) -> &LanguageModel {
        &self.lm
    }

    /// Its limits (`max_batch` is 1 for a model that cannot pad).
    pub fn limits(&self) -> GeneratorLimits {
        self.limits
    }

    /// Counts so far.
    pub fn stats(&self) -> GeneratorStats {
        self.stats
    }

    /// Where the running batch's KV cache is (None: no batch).
    pub fn kv_device(&self) -> Option<KvDevice> {
        self.kv.as_ref().filter(|kv| kv.rows * kv.width > 0).map(|kv| kv.device)
    }

    /// Sequences waiting to join, and sequences decoding.
    pub fn load(&self) -> (usize, usize) {
        (self.queue.len(), self.active.iter().filter(|s| s.finish.is_none()).count())
    }

    /// Whether a step would do anything.
    pub fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.active.iter().any(|s| s.finish.is_none())
    }

    /// Why `r` cannot run on this model, if it cannot.
    pub fn check(&self, r: &GenerateRequest) -> Option<String> {
        let info = &self.lm.info;
        if r.prompt.is_empty() {
            return Some("the prompt has no tokens".into());
        }
        if r.prompt.len() > info.options.max_context {
            return Some(format!("the prompt has {} tokens; the context holds {}", r.prompt.len(), info.options.max_context));
        }
        if let Some(t) = r.prompt.iter().find(|t| info.vocab > 0 && i64::from(**t) >= info.vocab) {
            return Some(format!("token {t} is outside the vocabulary of {}", info.vocab));
        }
        if r.max_tokens == 0 || r.max_tokens as usize > crate::abi::generate::MAX_TOKENS {
            return Some(format!("maxTokens must be 1..={}, got {}", crate::abi::generate::MAX_TOKENS, r.max_tokens));
        }
        if r.stop.len() > crate::abi::generate::MAX_STOP_SEQUENCES || r.stop.iter().any(|s| s.is_empty() || s.len() > crate::abi::generate::MAX_STOP_BYTES) {
            return Some(format!(
                "at most {} stop sequences of 1..={} bytes each",
                crate::abi::generate::MAX_STOP_SEQUENCES,
                crate::abi::generate::MAX_STOP_BYTES
            ));
        }
        r.sampling.check()
    }

    /// Queues a sequence under `key` (keys are the caller's; each is used once). `E_BAD_PROMPT`
    /// for a request `check` refuses; `E_QUEUE_FULL` past `max_queued` waiting.
    pub fn submit(&mut self, key: u64, r: GenerateRequest) -> Result<(), InferenceError> {
        if let Some(reason) = self.check(&r) {
            return Err(InferenceError::BadPrompt { reason });
        }
        if self.queue.len() >= self.limits.max_queued {
            return Err(InferenceError::GenerateQueueFull { max: self.limits.max_queued });
        }
        self.queue.push_back(Seq {
            key,
            prompt: r.prompt,
            max_tokens: r.max_tokens,
            stop: r.stop,
            sampler: Sampler::new(r.sampling, r.seed),
            generated: 0,
            len: 0,
            next: 0,
            tail: Vec::new(),
            out: Vec::new(),
            finish: None,
            reported: false,
            cancelled: false,
        });
        Ok(())
    }

    /// Drops a sequence (queued or decoding): it produces nothing more, and is not reported.
    pub fn cancel(&mut self, key: u64) {
        self.queue.retain(|s| s.key != key);
        self.done.retain(|s| s.key != key);
        for s in self.active.iter_mut().filter(|s| s.key == key) {
            s.cancelled = true;
            s.finish.get_or_insert(Finish::MaxTokens);
        }
    }

    /// Every sequence's progress since the last take (those with new tokens or that finished),
    /// in key order; finished ones are forgotten once taken.
    pub fn take_all(&mut self) -> Vec<Progress> {
        let mut out: Vec<Progress> = Vec::new();
        for s in self.active.iter_mut().chain(self.done.iter_mut()) {
            if let Some(p) = progress(s) {
                out.push(p);
            }
        }
        self.done.clear();
        out.sort_by_key(|p| p.key);
        out
    }

    /// One sequence's progress since the last take (`None`: nothing new, or no such key).
    pub fn take(&mut self, key: u64) -> Option<Progress> {
        if let Some(i) = self.done.iter().position(|s| s.key == key) {
            let mut s = self.done.swap_remove(i);
            return progress(&mut s);
        }
        self.active.iter_mut().find(|s| s.key == key).and_then(progress)
    }

    /// Whether `key` is queued or decoding (finished ones are not, even before their take).
    pub fn is_running(&self, key: u64) -> bool {
        self.queue.iter().any(|s| s.key == key) || self.active.iter().any(|s| s.key == key && s.finish.is_none())
    }

    /// One step: finished sequences leave, waiting ones join (a prefill: their first token),
    /// then one decode call gives every active sequence its next token. Returns whether it did
    /// anything. A failed model call finishes the sequences it served with `Finish::Failed`.
    pub fn step(&mut self) -> bool {
        if !self.has_work() {
            return false;
        }
        self.compact();
        let room = self.limits.max_batch.saturating_sub(self.active.len());
        if room > 0 && !self.queue.is_empty() {
            let joiners: Vec<Seq> = (0..room.min(self.queue.len())).filter_map(|_| self.queue.pop_front()).collect();
            self.join(joiners);
        }
        if !self.active.is_empty() {
            self.decode();
        }
        true
    }

    /// Steps until nothing is left to do or `max_steps` steps ran; returns the steps run.
    pub fn run(&mut self, max_steps: usize) -> usize {
        let mut n = 0;
        while n < max_steps && self.step() {
            n += 1;
        }
        n
    }

    /// Drops finished rows from the batch (one copy of the remaining rows' caches).
    fn compact(&mut self) {
        if self.active.iter().all(|s| s.finish.is_none()) {
            return;
        }
        let old = self.kv.take();
        let mut rows = Vec::new();
        for (i, s) in std::mem::take(&mut self.active).into_iter().enumerate() {
            if s.finish.is_none() {
                rows.push(RowSource { src: 0, row: i, len: s.len });
                self.active.push(s);
            } else if !s.cancelled {
                self.done.push(s);
            }
        }
        if self.active.is_empty() {
            return;
        }
        let info = self.lm.info.clone();
        let width = |old: &Kv| match info.layout {
            KvLayout::Concat => rows.iter().map(|r| r.len).max().unwrap_or(0),
            KvLayout::InPlace => old.width,
        };
        let transfers = &mut self.stats.kv_transfers;
        match old.map(|kv| {
            let width = width(&kv);
            kv::gather(&info, vec![kv], &rows, width, transfers)
        }) {
            Some(Ok(kv)) => {
                self.kv = Some(kv);
                self.stats.rebuilds += 1;
            }
            Some(Err(e)) => self.fail_active(e),
            None => self.fail_active("the batch lost its cache".into()),
        }
    }

    /// Finishes every active sequence with `Failed`, dropping the batch.
    fn fail_active(&mut self, reason: String) {
        tracing::warn!(target: "lockstep::inference", "language model {}: {reason}", self.lm.info.id);
        self.kv = None;
        for mut s in self.active.drain(..) {
            s.finish.get_or_insert(Finish::Failed(reason.clone()));
            if !s.cancelled {
                self.done.push(s);
            }
        }
    }

    /// Prefills `joiners` (in groups of similar prompt lengths: [`prefill_groups`]) and merges
    /// those that did not finish at their first token into the batch.
    fn join(&mut self, mut joiners: Vec<Seq>) {
        let info = self.lm.info.clone();
        let groups = prefill_groups(&joiners.iter().map(|s| s.prompt.len()).collect::<Vec<_>>());
        // For each joiner: its group and its row there, if its prefill ran.
        let mut place: Vec<Option<(usize, usize)>> = vec![None; joiners.len()];
        let mut caches = Vec::new();
        // One group joining no batch: its cache will be the batch's.
        let alone = self.kv.is_none() && groups.len() == 1;
        for group in &groups {
            self.stats.prefill_calls += 1;
            match self.prefill(&mut joiners, group, alone) {
                Ok(kv) => {
                    for (r, &i) in group.iter().enumerate() {
                        place[i] = Some((caches.len(), r));
                    }
                    caches.push(kv);
                }
                Err(e) => {
                    tracing::warn!(target: "lockstep::inference", "language model {}: prefill failed: {e}", info.id);
                    for &i in group {
                        joiners[i].finish.get_or_insert(Finish::Failed(e.clone()));
                    }
                }
            }
        }
        let old = self.kv.take();
        if old.is_none() && !self.active.is_empty() {
            self.fail_active("the batch lost its cache".into());
        }
        let first = usize::from(old.is_some());
        let mut rows: Vec<RowSource> = self.active.iter().enumerate().map(|(i, s)| RowSource { src: 0, row: i, len: s.len }).collect();
        let all = joiners.len();
        let mut kept = Vec::new();
        for (s, at) in joiners.into_iter().zip(place) {
            match at {
                Some((g, r)) if s.finish.is_none() => {
                    rows.push(RowSource { src: first + g, row: r, len: s.len });
                    kept.push(s);
                }
                _ => self.done.push(s),
            }
        }
        if kept.is_empty() {
            self.kv = old;
            return;
        }
        let merged = if old.is_none() && caches.len() == 1 && kept.len() == all {
            // Nobody else decoding, one prefill and nobody finished: its cache is the batch's
            // (in place: the prefill made it with the batch's capacity).
            caches.pop().ok_or_else(|| "no prefill cache".to_string())
        } else {
            let longest = rows.iter().map(|r| r.len).max().unwrap_or(0);
            let width = match info.layout {
                KvLayout::Concat => longest,
                KvLayout::InPlace => kv::capacity(longest + 1, info.options.max_context),
            };
            let sources: Vec<Kv> = old.into_iter().chain(caches).collect();
            self.stats.rebuilds += 1;
            kv::gather(&info, sources, &rows, width, &mut self.stats.kv_transfers)
        };
        self.active.extend(kept);
        match merged {
            Ok(kv) => self.kv = Some(kv),
            Err(e) => self.fail_active(e),
        }
    }

    /// One prefill call for the joiners `group` (indices into `joiners`): each gets its first
    /// token. Returns the group's cache, row `r` being `group[r]`'s; `alone`: the group is the
    /// whole batch to be, so an in-place cache gets the batch's capacity at once.
    fn prefill(&mut self, joiners: &mut [Seq], group: &[usize], alone: bool) -> Result<Kv, String> {
        let info = self.lm.info.clone();
        let (j, width) = (group.len(), group.iter().map(|&i| joiners[i].prompt.len()).max().unwrap_or(0));
        let mut ids = vec![i64::from(info.options.pad); j * width];
        let mut mask = vec![0i64; j * width];
        let mut pos = vec![0i64; j * width];
        for (r, &i) in group.iter().enumerate() {
            let prompt = &joiners[i].prompt;
            // Concat: left-padded (the mask hides the padding); in place: right-padded (the
            // mask's ones give each row's length).
            let off = r * width + if info.layout == KvLayout::Concat { width - prompt.len() } else { 0 };
            for (k, t) in prompt.iter().enumerate() {
                ids[off + k] = i64::from(*t);
                mask[off + k] = 1;
                pos[off + k] = k as i64;
            }
        }
        let feeds = self.feeds([j, width, width], ids, mask, pos)?;
        let (logits, kv) = match info.layout {
            KvLayout::Concat => {
                let (logits, present, device) = self.call(feeds, kv::zeroed(&info, j, 0)?)?;
                (logits, Kv { values: present, rows: j, width, device })
            }
            KvLayout::InPlace => {
                // Alone, with the capacity a batch of these rows gets: this buffer becomes the
                // batch's cache (no copy into a larger one at the first step). Else just the
                // prompts: the rows are gathered into the batch's buffer anyway.
                let max = info.options.max_context;
                let columns = if alone { kv::capacity((width + 1).min(max), max) } else { width };
                let mut kv = kv::zeroed(&info, j, columns)?;
                (self.call_in_place(feeds, &mut kv)?, kv)
            }
        };
        for (r, &i) in group.iter().enumerate() {
            let s = &mut joiners[i];
            let at = (info.layout == KvLayout::InPlace).then(|| s.prompt.len() - 1);
            kv::logits_row(&logits, r, at, &mut self.logits)?;
            s.len = s.prompt.len();
            let t = s.sampler.pick(&self.logits);
            accept(&info, s, t);
            self.stats.tokens += 1;
        }
        Ok(kv)
    }

    /// One decode call for every active sequence.
    fn decode(&mut self) {
        let Some(mut kv) = self.kv.take() else {
            self.fail_active("the batch lost its cache".into());
            return;
        };
        let info = self.lm.info.clone();
        let b = self.active.len();
        let ids: Vec<i64> = self.active.iter().map(|s| i64::from(s.next)).collect();
        let pos: Vec<i64> = self.active.iter().map(|s| s.len as i64).collect();
        self.stats.decode_calls += 1;
        let outcome = match info.layout {
            KvLayout::Concat => {
                let w = kv.width;
                let mut mask = vec![0i64; b * (w + 1)];
                for (r, s) in self.active.iter().enumerate() {
                    mask[r * (w + 1) + w - s.len..(r + 1) * (w + 1)].fill(1);
                }
                self.feeds([b, 1, w + 1], ids, mask, pos).and_then(|feeds| self.call(feeds, kv)).map(|(logits, present, device)| {
                    self.kv = Some(Kv { values: present, rows: b, width: w + 1, device });
                    logits
                })
            }
            KvLayout::InPlace => {
                let need = self.active.iter().map(|s| s.len + 1).max().unwrap_or(1);
                if need > kv.width {
                    let rows: Vec<RowSource> = self.active.iter().enumerate().map(|(i, s)| RowSource { src: 0, row: i, len: s.len }).collect();
                    self.stats.rebuilds += 1;
                    match kv::gather(&info, vec![kv], &rows, kv::capacity(need, info.options.max_context), &mut self.stats.kv_transfers) {
                        Ok(grown) => kv = grown,
                        Err(e) => return self.fail_active(e),
                    }
                }
                let mut mask = vec![0i64; b * need];
                for (r, s) in self.active.iter().enumerate() {
                    mask[r * need..r * need + s.len + 1].fill(1);
                }
                let logits = self.feeds([b, 1, need], ids, mask, pos).and_then(|feeds| self.call_in_place(feeds, &mut kv));
                self.kv = Some(kv);
                logits
            }
        };
        match outcome {
            Ok(logits) => {
                for r in 0..b {
                    if let Err(e) = kv::logits_row(&logits, r, None, &mut self.logits) {
                        self.fail_active(e);
                        return;
                    }
                    let s = &mut self.active[r];
                    s.len += 1;
                    let t = s.sampler.pick(&self.logits);
                    accept(&info, s, t);
                    self.stats.tokens += 1;
                }
            }
            Err(e) => self.fail_active(e),
        }
    }

    /// The model's inputs but its cache: `[rows, sequence, mask width]`, ids, mask, positions.
    fn feeds(&self, [rows, seq, mask_width]: [usize; 3], ids: Vec<i64>, mask: Vec<i64>, pos: Vec<i64>) -> Result<Feeds, String> {
        let info = &self.lm.info;
        let mut v: Feeds = vec![("input_ids", i64_tensor(vec![rows as i64, seq as i64], ids)?)];
        if info.attention_mask {
            v.push(("attention_mask", i64_tensor(vec![rows as i64, mask_width as i64], mask)?));
        }
        if info.position_ids {
            v.push(("position_ids", i64_tensor(vec![rows as i64, seq as i64], pos)?));
        }
        Ok(v)
    }

    /// A `Concat` call: `feeds` and the past in, logits and the present out. The present is
    /// where the serving provider keeps its cache ([`KvDevice::serving`]): on the GPU under
    /// CUDA, so the next step's past does not cross to the host and back.
    fn call(&mut self, feeds: Feeds, past: Kv) -> Result<(DynValue, Vec<DynValue>, KvDevice), String> {
        let layers = self.lm.info.layers;
        let transfers = &mut self.stats.kv_transfers;
        self.lm
            .engine
            .with_session(&self.lm.info.id, |session, model| {
                let device = KvDevice::serving(model.provider, KvLayout::Concat, self.lm.info.kv_type);
                let past = kv::to_device(past, device, transfers)?;
                let out = match device {
                    // Host memory: a plain run, whose outputs are host memory already (binding
                    // them costs 5-10% of a tiny model's step on CPU).
                    KvDevice::Host => run_model(session, feeds, past.values, layers),
                    _ => run_concat(session, feeds, &past.values, layers, device),
                };
                out.map(|(logits, present)| (logits, present, device))
            })
            .map_err(|e| e.to_string())?
    }

    /// An `InPlace` call: `kv`'s tensors bound (I/O binding) as both `past_key_values.N.*` and
    /// `present.N.*`, so the model writes the new columns into them; returns the logits. The
    /// cache first moves to where the serving provider keeps it, if it is not there.
    fn call_in_place(&mut self, feeds: Feeds, kv: &mut Kv) -> Result<DynValue, String> {
        let transfers = &mut self.stats.kv_transfers;
        self.lm
            .engine
            .with_session(&self.lm.info.id, |session, model| {
                let here = std::mem::replace(kv, Kv::empty());
                *kv = kv::to_device(here, KvDevice::serving(model.provider, KvLayout::InPlace, self.lm.info.kv_type), transfers)?;
                run_bound(session, feeds, kv)
            })
            .map_err(|e| e.to_string())?
    }
}

/// Groups of joiners to prefill together, each a list of indices into `lens` (the prompts'
/// lengths) in submission order: a prefill call pads its rows to its longest prompt, so the
/// prompts, ordered by length, are split where one more call (counted as [`CALL_TOKENS`]
/// padded tokens) costs less than the padding it saves. Depends only on the lengths and their
/// order.
fn prefill_groups(lens: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| (lens[i], i));
    let n = order.len();
    // cost[i]: the cheapest split of the i shortest; cut[i]: where its last group starts.
    let (mut cost, mut cut) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        let longest = lens[order[i - 1]];
        (cost[i], cut[i]) = (0..i).map(|j| (cost[j] + CALL_TOKENS + (i - j) * longest, j)).min().unwrap_or((0, 0));
    }
    let mut groups = Vec::new();
    let mut i = n;
    while i > 0 {
        let mut g = order[cut[i]..i].to_vec();
        g.sort_unstable();
        groups.push(g);
        i = cut[i];
    }
    groups.reverse();
    groups
}

/// What a prefill call costs beyond its tokens, in padded tokens (a call of one row of a few
/// tokens costs about as much as a few more rows).
const CALL_TOKENS: usize = 8;

const KV: [&str; 2] = ["key", "value"];

/// Takes token `t` for `s`: end-of-sequence, a stop sequence, max tokens or a full context
/// finish it; else it is the next token to feed.
fn accept(info: &super::LmInfo, s: &mut Seq, t: u32) {
    if info.options.eos.contains(&t) {
        s.finish = Some(Finish::Eos);
        return;
    }
    s.out.push(t);
    s.generated += 1;
    let before = s.tail.len();
    info.options.tokenizer.piece(t, &mut s.tail);
    let hit = s.stop.iter().any(|stop| {
        let from = before.saturating_sub(stop.len() - 1);
        s.tail[from..].windows(stop.len()).any(|w| w == &stop[..])
    });
    if hit {
        s.finish = Some(Finish::Stop);
    } else if s.generated >= s.max_tokens {
        s.finish = Some(Finish::MaxTokens);
    } else if s.len + 1 > info.options.max_context {
        s.finish = Some(Finish::ContextFull);
    } else {
        s.next = t;
    }
    let keep = 2 * crate::abi::generate::MAX_STOP_BYTES;
    if s.tail.len() > 2 * keep {
        s.tail.drain(..s.tail.len() - keep);
    }
}

fn progress(s: &mut Seq) -> Option<Progress> {
    let finish = if s.reported { None } else { s.finish.clone() };
    if s.cancelled || (s.out.is_empty() && finish.is_none()) {
        return None;
    }
    s.reported |= finish.is_some();
    Some(Progress { key: s.key, tokens: std::mem::take(&mut s.out), finish })
}

/// Runs a `Concat` step with the past in host memory: `feeds` and `past` in, logits and the
/// present out (host memory).
fn run_model(session: &mut Session, feeds: Feeds, past: Vec<DynValue>, layers: usize) -> Result<(DynValue, Vec<DynValue>), String> {
    let mut inputs: Vec<(std::borrow::Cow<'static, str>, SessionInputValue<'static>)> =
        feeds.into_iter().map(|(name, v)| (name.into(), SessionInputValue::from(v))).collect();
    for (i, value) in past.into_iter().enumerate() {
        inputs.push((format!("past_key_values.{}.{}", i / 2, KV[i % 2]).into(), SessionInputValue::from(value)));
    }
    let out = session.run(inputs).map_err(|e| e.to_string())?;
    concat_outputs(out, layers)
}

/// Runs a `Concat` step through I/O binding: `feeds` and `past` in (ONNX Runtime copies what
/// is not where a kernel needs it), the `present.*` outputs bound to `device`'s memory and
/// `logits` to the host's (the sampler reads them there).
fn run_concat(session: &mut Session, feeds: Feeds, past: &[DynValue], layers: usize, device: KvDevice) -> Result<(DynValue, Vec<DynValue>), String> {
    let e = |e: ort::Error| e.to_string();
    let mut binding = session.create_binding().map_err(e)?;
    for (name, v) in &feeds {
        binding.bind_input(*name, v).map_err(e)?;
    }
    for (i, v) in past.iter().enumerate() {
        binding.bind_input(format!("past_key_values.{}.{}", i / 2, KV[i % 2]), v).map_err(e)?;
    }
    let memory = device.memory_info()?;
    for l in 0..layers {
        for which in KV {
            binding.bind_output_to_device(format!("present.{l}.{which}"), &memory).map_err(e)?;
        }
    }
    binding.bind_output_to_device("logits", &KvDevice::Host.memory_info()?).map_err(e)?;
    let out = session.run_binding(&binding).map_err(e)?;
    concat_outputs(out, layers)
}

/// The logits and the `present.*` outputs of a `Concat` step, in cache order.
fn concat_outputs(mut out: ort::session::SessionOutputs<'_>, layers: usize) -> Result<(DynValue, Vec<DynValue>), String> {
    let logits = out.remove("logits").ok_or("the model returned no `logits`")?;
    let mut present = Vec::with_capacity(2 * layers);
    for l in 0..layers {
        for kv in KV {
            present.push(out.remove(format!("present.{l}.{kv}")).ok_or_else(|| format!("the model returned no `present.{l}.{kv}`"))?);
        }
    }
    Ok((logits, present))
}

/// Runs with `kv`'s tensors bound as both the past and the present. They were made by
/// `DynTensor::new` (ONNX Runtime's allocator, owned): `bind_input` then binds the value itself,
/// not a copy, and `bind_output` accepts it, so GroupQueryAttention sees one buffer for both
/// and writes only the new columns (with two buffers it would copy the past into the present).
fn run_bound(session: &mut Session, feeds: Feeds, kv: &mut Kv) -> Result<DynValue, String> {
    let e = |e: ort::Error| e.to_string();
    let mut binding = session.create_binding().map_err(e)?;
    for (name, v) in &feeds {
        binding.bind_input(*name, v).map_err(e)?;
    }
    for (i, v) in kv.values.iter_mut().enumerate() {
        let (l, which) = (i / 2, KV[i % 2]);
        binding.bind_input(format!("past_key_values.{l}.{which}"), &*v).map_err(e)?;
        binding.bind_output(format!("present.{l}.{which}"), &mut *v).map_err(e)?;
    }
    binding.bind_output_to_device("logits", &KvDevice::Host.memory_info()?).map_err(e)?;
    let mut out = session.run_binding(&binding).map_err(e)?;
    out.remove("logits").ok_or_else(|| "the model returned no `logits`".to_string())
}

fn i64_tensor(shape: Vec<i64>, data: Vec<i64>) -> Result<DynValue, String> {
    Tensor::from_array((shape, data)).map(|t| t.into_dyn()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::prefill_groups;

    /// The bound `Concat` step (what runs under CUDA, `present.*` bound to the cache's memory)
    /// gives the plain run's bits, here with host memory: on CPU the plain run serves, so this
    /// is where CI checks the bound path.
    #[test]
    fn a_bound_concat_step_gives_the_plain_steps_bits() {
        use super::{run_concat, run_model, Feeds, KvDevice};
        use crate::inference::{EngineOptions, InferenceEngine};
        use ort::value::DynValue;
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let engine = InferenceEngine::new(EngineOptions { search_roots: vec![root.clone()], ..Default::default() }).expect("npm install first");
        let id = engine.load(std::fs::read(root.join("models/tiny_lm/model.onnx")).unwrap()).unwrap().id;
        let (layers, heads, head_dim) = (2, 4, 16);
        let i64s = |shape: Vec<i64>, v: Vec<i64>| ort::value::Tensor::from_array((shape, v)).unwrap().into_dyn();
        let feeds = || -> Feeds {
            vec![
                ("input_ids", i64s(vec![2, 3], vec![256, 72, 105, 256, 87, 104])),
                ("attention_mask", i64s(vec![2, 5], vec![0, 1, 1, 1, 1, 1, 1, 1, 1, 1])),
                ("position_ids", i64s(vec![2, 3], vec![2, 3, 4, 2, 3, 4])),
            ]
        };
        // A past of 2 columns with distinct values, for both rows.
        let past = || -> Vec<DynValue> {
            (0..2 * layers)
                .map(|k| {
                    let n = 2 * heads * 2 * head_dim;
                    let data: Vec<f32> = (0..n).map(|i| ((i * 7 + k * 13) % 29) as f32 / 29.0 - 0.5).collect();
                    ort::value::Tensor::from_array((vec![2i64, heads as i64, 2, head_dim as i64], data)).unwrap().into_dyn()
                })
                .collect()
        };
        let bits = |v: &DynValue| v.try_extract_tensor::<f32>().unwrap().1.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (plain, bound) = engine
            .with_session(&id, |session, _| {
                let plain = run_model(session, feeds(), past(), layers).unwrap();
                let past = past();
                let bound = run_concat(session, feeds(), &past, layers, KvDevice::Host).unwrap();
                (plain, bound)
            })
            .unwrap();
        assert_eq!(bits(&plain.0), bits(&bound.0), "logits");
        assert_eq!(plain.1.len(), 2 * layers);
        for (p, b) in plain.1.iter().zip(&bound.1) {
            assert_eq!(bits(p), bits(b), "present");
            assert_eq!(bits(p).len(), 2 * heads * 5 * head_dim, "past 2 + 3 new columns");
        }
    }

    #[test]
    fn prefill_groups_split_prompts_of_different_lengths() {
        // The benchmark's six prompts (with <bos>), 32 of them: one group per length but where
        // two lengths are close.
        assert_eq!(prefill_groups(&[6, 11, 17, 31, 2]), vec![vec![0, 4], vec![1, 2], vec![3]]);
        assert_eq!(prefill_groups(&[5, 5, 5]), vec![vec![0, 1, 2]]);
        assert_eq!(prefill_groups(&[7]), vec![vec![0]]);
        assert!(prefill_groups(&[]).is_empty());
        // Groups list rows in submission order, and every row once.
        let lens: Vec<usize> = (0..32).map(|i| [6, 11, 17, 31, 15, 14][i % 6]).collect();
        let groups = prefill_groups(&lens);
        let mut all: Vec<usize> = groups.iter().flatten().copied().collect();
        assert!(groups.iter().all(|g| g.windows(2).all(|w| w[0] < w[1])));
        all.sort_unstable();
        assert_eq!(all, (0..32).collect::<Vec<_>>());
        assert!(groups.len() >= 3 && groups.len() <= 5, "{groups:?}");
    }
}
