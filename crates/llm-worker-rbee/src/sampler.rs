//! Choosing the next token from logits: greedy at temperature 0, otherwise temperature,
//! top-k and top-p (nucleus) filtering and a draw from a seeded generator, so the same seed
//! and request always give the same text.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sampling settings of one request, already validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub seed: u64,
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Self {
            params,
            rng: StdRng::seed_from_u64(params.seed),
        }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
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
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.params.top_k > 0 {
            candidates.truncate(self.params.top_k);
        }
        let max = candidates[0].1;
        let mut total = 0.0f64;
        for c in &mut candidates {
            c.1 = (c.1 - max).exp();
            total += f64::from(c.1);
        }
        if self.params.top_p < 1.0 {
            let mut cumulative = 0.0;
            let mut keep = candidates.len();
            for (i, c) in candidates.iter().enumerate() {
                cumulative += f64::from(c.1) / total;
                if cumulative >= self.params.top_p {
                    keep = i + 1;
                    break;
                }
            }
            candidates.truncate(keep);
            total = candidates.iter().map(|c| f64::from(c.1)).sum();
        }
        let mut target = self.rng.random::<f64>() * total;
        for &(id, weight) in &candidates {
            target -= f64::from(weight);
            if target <= 0.0 {
                return id;
            }
        }
        candidates[candidates.len() - 1].0
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
        }
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
    fn top_p_keeps_only_the_nucleus() {
        // Token 0 holds ~98 % of the mass; a nucleus of 0.9 contains only it.
        let mut s = Sampler::new(params(1.0, 0, 0.9, 3));
        for _ in 0..50 {
            assert_eq!(s.sample(&[10.0, 6.0, 5.0, 1.0]), 0);
        }
    }
}
