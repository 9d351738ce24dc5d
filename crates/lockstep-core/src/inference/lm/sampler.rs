//! Picking the next token from logits: greedy (temperature 0), or sampled after temperature,
//! top-k and top-p, from a ChaCha8 stream seeded per sequence. Arithmetic in f64, in a fixed
//! order, so the same logits and seed give the same token on every run.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// How tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0: greedy (the most likely token; the lowest id on a tie). Above 0: logits are divided
    /// by it before sampling (at most 100).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: u32,
    /// Keep the most likely tokens whose probabilities add up to `top_p` (1: all); in (0, 1].
    pub top_p: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0 }
    }
}

impl SamplingParams {
    /// Why these parameters are refused, if they are.
    pub fn check(&self) -> Option<String> {
        if !(self.temperature.is_finite() && (0.0..=100.0).contains(&self.temperature)) {
            return Some(format!("temperature must be 0..=100, got {}", self.temperature));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return Some(format!("topP must be in (0, 1], got {}", self.top_p));
        }
        None
    }
}

/// A sequence's sampler: its parameters and its random stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Candidates (token, logit), reused from step to step.
    scratch: Vec<(u32, f64)>,
}

impl Sampler {
    /// A sampler whose stream is keyed by `seed` (32 bytes: see `Generator::submit`).
    pub fn new(params: SamplingParams, seed: [u8; 32]) -> Self {
        Self { params, rng: ChaCha8Rng::from_seed(seed), scratch: Vec::new() }
    }

    /// The next token from one row of logits.
    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        let p = self.params;
        if p.temperature <= 0.0 || logits.len() <= 1 {
            return argmax(logits);
        }
        let c = &mut self.scratch;
        c.clear();
        let t = f64::from(p.temperature);
        c.extend(logits.iter().enumerate().filter(|(_, l)| !l.is_nan()).map(|(i, l)| (i as u32, f64::from(*l) / t)));
        if c.is_empty() {
            return 0;
        }
        // Most likely first; ties by id: a total order, so the result never depends on the sort.
        let order = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = if p.top_k > 0 { (p.top_k as usize).min(c.len()) } else { c.len() };
        if k < c.len() {
            c.select_nth_unstable_by(k - 1, order);
            c.truncate(k);
        }
        c.sort_unstable_by(order);
        let max = c[0].1;
        let mut total = 0.0;
        for e in c.iter_mut() {
            e.1 = (e.1 - max).exp();
            total += e.1;
        }
        if p.top_p < 1.0 {
            let want = f64::from(p.top_p) * total;
            let mut sum = 0.0;
            let mut keep = c.len();
            for (i, e) in c.iter().enumerate() {
                sum += e.1;
                if sum >= want {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep);
            total = sum.min(total);
        }
        // A uniform draw in [0, total): 53 random bits.
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut sum = 0.0;
        for e in c.iter() {
            sum += e.1;
            if u < sum {
                return e.0;
            }
        }
        c[c.len() - 1].0
    }
}

/// The index of the largest logit (the lowest on a tie; NaN never wins).
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, v) in logits.iter().enumerate() {
        if *v > best_v {
            best = i;
            best_v = *v;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_lowest_on_ties() {
        let mut s = Sampler::new(SamplingParams::default(), [0; 32]);
        assert_eq!(s.pick(&[0.0, 3.0, 1.0, 3.0]), 1);
        assert_eq!(s.pick(&[f32::NAN, -1.0, -2.0]), 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens_and_another_seed_others() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let params = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0 };
        let run = |seed: u8| {
            let mut s = Sampler::new(params, [seed; 32]);
            (0..64).map(|_| s.pick(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn top_k_and_top_p_keep_only_the_likely_tokens() {
        let logits = [5.0, 4.9, 0.0, -1.0, 4.8, -3.0];
        let mut k2 = Sampler::new(SamplingParams { temperature: 1.0, top_k: 2, top_p: 1.0 }, [7; 32]);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(k2.pick(&logits));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 1]);
        // The three near 5 hold ~99% of the mass; top_p 0.5 keeps the first two.
        let mut p = Sampler::new(SamplingParams { temperature: 1.0, top_k: 0, top_p: 0.5 }, [7; 32]);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(p.pick(&logits));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 1]);
        // A tiny top_p is greedy.
        let mut g = Sampler::new(SamplingParams { temperature: 1.0, top_k: 0, top_p: 1e-6 }, [7; 32]);
        assert!((0..50).all(|_| g.pick(&logits) == 0));
    }

    #[test]
    fn sampling_follows_the_probabilities() {
        // Two tokens, logits ln(3) and 0: token 0 three times as likely.
        let logits = [3f32.ln(), 0.0];
        let mut s = Sampler::new(SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0 }, [3; 32]);
        let zeros = (0..4000).filter(|_| s.pick(&logits) == 0).count();
        assert!((2850..3150).contains(&zeros), "{zeros} of 4000");
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(SamplingParams { temperature: -1.0, ..Default::default() }.check().is_some());
        assert!(SamplingParams { temperature: f32::NAN, ..Default::default() }.check().is_some());
        assert!(SamplingParams { top_p: 0.0, ..Default::default() }.check().is_some());
        assert!(SamplingParams { top_p: 1.5, ..Default::default() }.check().is_some());
        assert!(SamplingParams::default().check().is_none());
    }
}
