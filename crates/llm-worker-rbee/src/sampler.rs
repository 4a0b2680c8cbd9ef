//! Choosing the next token from logits: greedy at temperature 0, otherwise temperature,
//! top-k and top-p (nucleus) filtering and a draw from a seeded generator, so the same seed
//! and request always give the same text. OpenAI's logit bias and frequency and presence
//! penalties (over the tokens generated so far) adjust the logits first, greedy or not.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sampling settings of one request, already validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingParams {
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub seed: u64,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// Token ids (inside the vocabulary) and what to add to their logits.
    pub logit_bias: Vec<(u32, f32)>,
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// How often each token was chosen so far, when a penalty needs it.
    counts: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Self {
            rng: StdRng::seed_from_u64(params.seed),
            params,
            counts: HashMap::new(),
        }
    }

    /// The next token; with penalties, it counts as generated from then on.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        self.sample_reporting(logits, None).0
    }

    /// [`Self::sample`], and with `report` the chosen token's log-probability and the `report`
    /// most likely tokens', under the distribution it was drawn from before temperature and
    /// top-k/top-p (the model's, after bias and penalties).
    pub fn sample_reporting(
        &mut self,
        logits: &[f32],
        report: Option<usize>,
    ) -> (u32, Option<Logprobs>) {
        let penalised = self.params.frequency_penalty != 0.0 || self.params.presence_penalty != 0.0;
        let adjusted;
        let logits = if penalised || !self.params.logit_bias.is_empty() {
            let mut a = logits.to_vec();
            self.adjust(&mut a);
            adjusted = a;
            &adjusted[..]
        } else {
            logits
        };
        let id = self.choose(logits);
        if penalised {
            *self.counts.entry(id).or_default() += 1;
        }
        (id, report.map(|top| Logprobs::of(logits, id, top)))
    }

    /// Adds the biases and takes off the penalties (OpenAI's definition:
    /// `count · frequency_penalty + (count > 0) · presence_penalty`).
    fn adjust(&self, logits: &mut [f32]) {
        for &(id, bias) in &self.params.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += bias;
            }
        }
        for (&id, &count) in &self.counts {
            if let Some(l) = logits.get_mut(id as usize) {
                *l -= count as f32 * self.params.frequency_penalty + self.params.presence_penalty;
            }
        }
    }

    fn choose(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature <= 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.params.temperature as f32;
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l * inv_t))
            .collect();
        if candidates.is_empty() {
            return argmax(logits);
        }
        let max = candidates
            .iter()
            .map(|c| c.1)
            .fold(f32::NEG_INFINITY, f32::max);
        for c in &mut candidates {
            c.1 = (c.1 - max).exp();
        }
        let kept = self.nucleus(&mut candidates);
        let total: f64 = kept.iter().map(|c| f64::from(c.1)).sum();
        let mut target = self.rng.random::<f64>() * total;
        for &(id, weight) in kept {
            target -= f64::from(weight);
            if target <= 0.0 {
                return id;
            }
        }
        kept[kept.len() - 1].0
    }

    /// The candidates (ids with unnormalised probabilities) that top-k and top-p keep, most
    /// likely first (lower id first on ties); all of them, in id order, when neither filters.
    ///
    /// Only the most likely candidates can be kept, so only they are sorted: a first few,
    /// then eight times as many at a time until top-k or top-p is satisfied. A vocabulary
    /// of 50 000–260 000 tokens is never sorted whole for an ordinary nucleus.
    fn nucleus<'c>(&self, candidates: &'c mut [(u32, f32)]) -> &'c [(u32, f32)] {
        let top_k = match self.params.top_k {
            0 => candidates.len(),
            k => k.min(candidates.len()),
        };
        let top_p = self.params.top_p;
        if top_k == candidates.len() && top_p >= 1.0 {
            return candidates;
        }
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if top_k < candidates.len() {
            candidates.select_nth_unstable_by(top_k - 1, order);
        }
        if top_p >= 1.0 {
            candidates[..top_k].sort_unstable_by(order);
            return &candidates[..top_k];
        }
        // The nucleus is measured against the mass of what top-k keeps.
        let total: f64 = candidates[..top_k].iter().map(|c| f64::from(c.1)).sum();
        let (mut sorted, mut cumulative) = (0, 0.0);
        let mut next = 64.min(top_k);
        loop {
            // Move the next most likely candidates up to `next`, in order.
            let rest = &mut candidates[sorted..top_k];
            if next < top_k {
                rest.select_nth_unstable_by(next - sorted - 1, order);
            }
            rest[..next - sorted].sort_unstable_by(order);
            for (i, c) in candidates[sorted..next].iter().enumerate() {
                cumulative += f64::from(c.1) / total;
                if cumulative >= top_p {
                    return &candidates[..sorted + i + 1];
                }
            }
            if next == top_k {
                return &candidates[..top_k];
            }
            sorted = next;
            next = (next * 8).min(top_k);
        }
    }
}

/// Log-probabilities (natural log) at one position.
#[derive(Debug, Clone, PartialEq)]
pub struct Logprobs {
    pub chosen: f32,
    /// The most likely tokens, most likely first (lower id first on ties).
    pub top: Vec<(u32, f32)>,
}

impl Logprobs {
    /// `log softmax(logits)` of `chosen` and of the `top` largest logits.
    fn of(logits: &[f32], chosen: u32, top: usize) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = (logits.iter())
            .filter(|l| l.is_finite())
            .map(|&l| f64::from(l - max).exp())
            .sum();
        let log_total = max + sum.ln() as f32;
        // A banned token (-inf) reads as -9999, as OpenAI writes it: JSON has no infinity.
        let logprob = |id: u32| (logits[id as usize] - log_total).max(-9999.0);
        let mut best: Vec<u32> = (0..logits.len() as u32).collect();
        let order =
            |a: &u32, b: &u32| (logits[*b as usize].total_cmp(&logits[*a as usize])).then(a.cmp(b));
        let top = top.min(best.len());
        if top > 0 && top < best.len() {
            best.select_nth_unstable_by(top - 1, order);
        }
        best.truncate(top);
        best.sort_unstable_by(order);
        Self {
            chosen: logprob(chosen),
            top: best.into_iter().map(|id| (id, logprob(id))).collect(),
        }
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, l) in logits.iter().enumerate() {
        if *l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, top_k: usize, top_p: f64, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            seed,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn a_bias_of_minus_100_bans_the_greedy_token_and_plus_100_forces_one() {
        let logits = [0.1, 3.0, 2.9, -1.0];
        let mut banned = Sampler::new(SamplingParams {
            logit_bias: vec![(1, -100.0)],
            ..params(0.0, 0, 1.0, 1)
        });
        assert_eq!(banned.sample(&logits), 2);
        let mut forced = Sampler::new(SamplingParams {
            logit_bias: vec![(3, 100.0), (99, 5.0)],
            ..params(0.8, 0, 1.0, 1)
        });
        assert!((0..20).all(|_| forced.sample(&logits) == 3));
    }

    #[test]
    fn penalties_lower_tokens_already_generated() {
        // Greedy: token 1 leads token 2 by 0.1, so it repeats forever without a penalty.
        let logits = [0.1, 3.0, 2.9, -1.0];
        let mut plain = Sampler::new(params(0.0, 0, 1.0, 1));
        assert_eq!([plain.sample(&logits), plain.sample(&logits)], [1, 1]);
        let mut frequency = Sampler::new(SamplingParams {
            frequency_penalty: 0.2,
            ..params(0.0, 0, 1.0, 1)
        });
        let drawn: Vec<u32> = (0..4).map(|_| frequency.sample(&logits)).collect();
        // 1, then 2 (3.0 - 0.2 < 2.9), then 1 (2.8 > 2.7), then 2.
        assert_eq!(drawn, [1, 2, 1, 2]);
        let mut presence = Sampler::new(SamplingParams {
            presence_penalty: 2.0,
            ..params(0.0, 0, 1.0, 1)
        });
        let drawn: Vec<u32> = (0..3).map(|_| presence.sample(&logits)).collect();
        // Once a token is present it loses 2 whatever its count: 1, 2 (2.9 > 1.0), then 1
        // again (1.0 > 0.9), where no penalty gives 1, 1, 1.
        assert_eq!(drawn, [1, 2, 1]);
    }

    #[test]
    fn logprobs_are_the_log_softmax_and_the_top_tokens_come_most_likely_first() {
        let logits = [1.0f32, 3.0, 2.0, 3.0, f32::NEG_INFINITY, -1.0];
        let mut greedy = Sampler::new(params(0.0, 0, 1.0, 1));
        let (id, lp) = greedy.sample_reporting(&logits, Some(3));
        let lp = lp.expect("asked for");
        assert_eq!(id, 1);
        let total: f32 = logits.iter().map(|l| l.exp()).sum();
        let expected = |i: usize| (logits[i].exp() / total).ln();
        assert!((lp.chosen - expected(1)).abs() < 1e-5, "{lp:?}");
        let ids: Vec<u32> = lp.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 3, 2]);
        for (id, v) in &lp.top {
            assert!((v - expected(*id as usize)).abs() < 1e-5, "{lp:?}");
        }
        let (_, none) = greedy.sample_reporting(&logits, None);
        assert_eq!(none, None);
        let (_, chosen_only) = greedy.sample_reporting(&logits, Some(0));
        assert!(chosen_only.is_some_and(|l| l.top.is_empty()));
        let (_, all) = greedy.sample_reporting(&logits, Some(20));
        assert_eq!(all.map(|l| l.top.len()), Some(logits.len()));
    }

    #[test]
    fn logprobs_follow_the_bias_the_draw_saw() {
        let logits = [2.0f32, 1.0];
        let mut biased = Sampler::new(SamplingParams {
            logit_bias: vec![(1, 5.0)],
            ..params(0.0, 0, 1.0, 1)
        });
        let (id, lp) = biased.sample_reporting(&logits, Some(1));
        let lp = lp.unwrap();
        assert_eq!((id, lp.top[0].0), (1, 1));
        assert!(lp.chosen > (0.5f32).ln());
    }

    #[test]
    fn zero_temperature_is_greedy() {
        let mut s = Sampler::new(params(0.0, 0, 1.0, 1));
        assert_eq!(s.sample(&[0.1, 3.0, 2.9, -1.0]), 1);
    }

    #[test]
    fn same_seed_gives_same_draws_and_other_seeds_differ() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, 0, 1.0, seed));
            (0..40).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let mut s = Sampler::new(params(5.0, 1, 1.0, 9));
        for _ in 0..20 {
            assert_eq!(s.sample(&[1.0, 1.5, 0.2]), 1);
        }
    }

    #[test]
    fn the_kept_candidates_are_those_of_a_full_sort_of_a_large_vocabulary() {
        let mut rng = StdRng::seed_from_u64(7);
        // 50 000 logits with many exact ties, shaped like a model's: a few likely tokens.
        let logits: Vec<f32> = (0..50_000)
            .map(|i| {
                if i % 997 == 0 {
                    8.0
                } else {
                    (rng.random::<f32>() * 40.0).round() / 8.0
                }
            })
            .collect();
        for (top_k, top_p) in [
            (0, 0.5),
            (0, 0.95),
            (0, 0.9999),
            (40, 1.0),
            (40, 0.9),
            (1000, 0.99),
            (1, 0.5),
        ] {
            let sampler = Sampler::new(params(1.0, top_k, top_p, 1));
            let mut candidates: Vec<(u32, f32)> = (logits.iter().enumerate())
                .map(|(i, &l)| (i as u32, (l - 8.0).exp()))
                .collect();
            let kept: Vec<u32> = sampler
                .nucleus(&mut candidates)
                .iter()
                .map(|c| c.0)
                .collect();
            // The definition: sort all, keep the top k, then the shortest prefix holding top_p.
            let mut all: Vec<(u32, f32)> = (logits.iter().enumerate())
                .map(|(i, &l)| (i as u32, (l - 8.0).exp()))
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            all.truncate(if top_k == 0 { all.len() } else { top_k });
            let total: f64 = all.iter().map(|c| f64::from(c.1)).sum();
            let mut cumulative = 0.0;
            let keep = (all.iter())
                .position(|c| {
                    cumulative += f64::from(c.1) / total;
                    top_p < 1.0 && cumulative >= top_p
                })
                .map_or(all.len(), |i| i + 1);
            let expected: Vec<u32> = all[..keep].iter().map(|c| c.0).collect();
            assert_eq!(kept.len(), expected.len(), "top_k {top_k}, top_p {top_p}");
            assert_eq!(kept, expected, "top_k {top_k}, top_p {top_p}");
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Token 0 holds ~98 % of the mass; a nucleus of 0.9 contains only it.
        let mut s = Sampler::new(params(1.0, 0, 0.9, 3));
        for _ in 0..50 {
            assert_eq!(s.sample(&[10.0, 6.0, 5.0, 1.0]), 0);
        }
    }
}
