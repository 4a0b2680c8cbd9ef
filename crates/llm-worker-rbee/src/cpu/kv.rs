//! One sequence's attention keys and values, in 8 bits.
//!
//! Every position appends one row of keys and one of values per block (`kv_heads × head_dim`
//! values). Each head's part of a row is stored in runs of up to 32 values as signed bytes
//! with one f32 scale (`max |v| / 127`, like GGUF's Q8_0): 36 bytes per 32 values instead of
//! f16's 64, so SmolLM2's cache at 2048 positions takes ~25 MB instead of ~47 MB. The
//! rounding error of a value is at most half a step, `max |v| / 254` of its run.

use super::kernels::{KV_RUN, Kernels, KvRows};

/// Positions reserved at a time (address space only: pages are backed as they are written).
const CHUNK: usize = 512;
/// Values per scale, when the head size allows.
const RUN: usize = KV_RUN;

/// Rows of `width` values, quantized in runs of `run` values.
struct Rows {
    width: usize,
    run: usize,
    qs: Vec<i8>,
    scales: Vec<f32>,
}

impl Rows {
    fn new(width: usize, run: usize) -> Self {
        Self {
            width,
            run,
            qs: Vec::new(),
            scales: Vec::new(),
        }
    }

    fn reserve(&mut self, positions: usize) {
        let rows = self.qs.len() / self.width;
        if rows < positions && self.qs.capacity() < positions * self.width {
            let want = positions.div_ceil(CHUNK) * CHUNK - rows;
            self.qs.reserve_exact(want * self.width);
            self.scales.reserve_exact(want * self.width / self.run);
        }
    }

    fn push(&mut self, row: &[f32]) {
        assert_eq!(row.len(), self.width);
        for run in row.chunks_exact(self.run) {
            let max = run.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = max / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            self.scales.push(scale);
            self.qs.extend(run.iter().map(|&v| (v * inv).round() as i8));
        }
    }

    /// Keeps the first `rows` rows.
    fn truncate(&mut self, rows: usize) {
        self.qs.truncate(rows * self.width);
        self.scales.truncate(rows * self.width / self.run);
    }

    /// Rows `positions` of the head at `at`, for the attention kernels, when the runs are
    /// theirs.
    fn head_rows(&self, positions: std::ops::Range<usize>, at: usize) -> Option<KvRows<'_>> {
        if self.run != KV_RUN || positions.is_empty() {
            return None;
        }
        let start = positions.start * self.width + at;
        Some(KvRows {
            qs: &self.qs[start..],
            stride: self.width,
            scales: &self.scales[start / self.run..],
            scale_stride: self.width / self.run,
            rows: positions.len(),
        })
    }

    /// The values of row `pos` at `at..at + len` (whole runs), and their runs' scales.
    #[inline(always)]
    fn head(&self, pos: usize, at: usize, len: usize) -> (&[i8], &[f32]) {
        let start = pos * self.width + at;
        (
            &self.qs[start..start + len],
            &self.scales[start / self.run..(start + len) / self.run],
        )
    }
}

/// The cache of one sequence: keys and values of every block at positions `0..position()`.
pub struct KvCache {
    layers: Vec<(Rows, Rows)>,
    head_dim: usize,
    position: usize,
}

impl KvCache {
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize) -> Self {
        let run = run_len(head_dim);
        let rows = || Rows::new(kv_heads * head_dim, run);
        Self {
            layers: (0..layers).map(|_| (rows(), rows())).collect(),
            head_dim,
            position: 0,
        }
    }

    /// Bytes one position takes in a cache of this shape.
    pub fn bytes_per_position(layers: usize, kv_heads: usize, head_dim: usize) -> usize {
        let width = kv_heads * head_dim;
        2 * layers * (width + 4 * width / run_len(head_dim))
    }

    /// Forgets every position from `len` on (a prompt prefix is kept for the next request).
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.position);
        for (k, v) in &mut self.layers {
            k.truncate(len);
            v.truncate(len);
        }
        self.position = len;
    }

    /// Positions cached so far.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Appends the keys and values of the next positions to `layer` (one row of each per
    /// position); they count once [`KvCache::advance`] is called.
    pub fn append(&mut self, layer: usize, keys: &[&[f32]], values: &[&[f32]]) {
        let (k, v) = &mut self.layers[layer];
        k.reserve(self.position + keys.len());
        v.reserve(self.position + values.len());
        keys.iter().for_each(|row| k.push(row));
        values.iter().for_each(|row| v.push(row));
    }

    /// Marks `n` appended positions as cached in every layer.
    pub fn advance(&mut self, n: usize) {
        self.position += n;
    }

    /// Attention scores of the query heads that share the key/value head `at`: `q` holds
    /// their vectors one after another, and `out` gets one row per query of
    /// `scale · (q · key)` for every position of `positions`.
    pub fn scores(
        &self,
        kernels: Kernels,
        at: Head,
        positions: std::ops::Range<usize>,
        q: &[f32],
        scale: f32,
        out: &mut [f32],
    ) {
        let keys = &self.layers[at.layer].0;
        let offset = at.kv_head * self.head_dim;
        match keys.head_rows(positions.clone(), offset) {
            Some(rows) => kernels.kv_scores(q, rows, scale, out),
            None if positions.is_empty() => {}
            None => {
                let queries = q.chunks_exact(self.head_dim);
                for (q, out) in queries.zip(out.chunks_exact_mut(positions.len())) {
                    for (pos, out) in positions.clone().zip(out) {
                        let (k, s) = keys.head(pos, offset, self.head_dim);
                        *out = s[0] * dot_i8(q, k) * scale;
                    }
                }
            }
        }
    }

    /// Attended values of the query heads that share the key/value head `at`: `weights`
    /// holds one row per query of weights for positions `first..`, and `out` one vector per
    /// query, `out[g] += Σ weights[g][i] · value at first + i`.
    pub fn add_values(
        &self,
        kernels: Kernels,
        at: Head,
        first: usize,
        weights: &[f32],
        out: &mut [f32],
    ) {
        let values = &self.layers[at.layer].1;
        let offset = at.kv_head * self.head_dim;
        let queries = out.len() / self.head_dim;
        let positions = first..first + weights.len() / queries.max(1);
        match values.head_rows(positions.clone(), offset) {
            Some(rows) => kernels.kv_add_values(weights, rows, out),
            None if positions.is_empty() => {}
            None => {
                let rows = weights.chunks_exact(positions.len());
                for (weights, out) in rows.zip(out.chunks_exact_mut(self.head_dim)) {
                    for (pos, &p) in positions.clone().zip(weights) {
                        let (v, s) = values.head(pos, offset, self.head_dim);
                        let w = p * s[0];
                        for (o, &v) in out.iter_mut().zip(v) {
                            *o += w * f32::from(v);
                        }
                    }
                }
            }
        }
    }
}

/// One attention head's place in a cache: its block and its key/value head.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub layer: usize,
    pub kv_head: usize,
}

/// Values per scale for heads of `head_dim`.
fn run_len(head_dim: usize) -> usize {
    if head_dim.is_multiple_of(RUN) {
        RUN
    } else {
        head_dim
    }
}

/// `Σ a·b` in eight partial sums, which the compiler keeps in one vector register (a single
/// running sum would have to be added in order, one element at a time).
fn dot_i8(a: &[f32], b: &[i8]) -> f32 {
    let mut acc = [0f32; 8];
    for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += a[i] * b[i] as f32;
        }
    }
    let done = a.len() / 8 * 8;
    let tail: f32 = (a[done..].iter().zip(&b[done..]))
        .map(|(x, &y)| x * y as f32)
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(layer: usize, kv_head: usize) -> Head {
        Head { layer, kv_head }
    }

    fn values(seed: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 100.0 - 10.0)
            .collect()
    }

    #[test]
    fn cached_keys_and_values_are_within_half_a_step_of_the_originals() {
        // Two KV heads of 64 (runs of 32) and of 40 (one run per head), on every instruction
        // set this CPU has.
        let every = Kernels::supported()
            .into_iter()
            .filter_map(Kernels::for_isa);
        for (head_dim, kernels) in [64, 40]
            .into_iter()
            .flat_map(|h| every.clone().map(move |k| (h, k)))
        {
            let width = 2 * head_dim;
            let mut cache = KvCache::new(2, 2, head_dim);
            let (k0, v0) = (values(1, width), values(2, width));
            let (k1, v1) = (values(3, width), values(4, width));
            cache.append(1, &[&k0, &k1], &[&v0, &v1]);
            cache.advance(2);
            assert_eq!(cache.position(), 2);
            let run = if head_dim == 64 { 32 } else { head_dim };
            for (pos, (k, v)) in [(&k0, &v0), (&k1, &v1)].into_iter().enumerate() {
                for head in 0..2 {
                    let part = |x: &[f32]| x[head * head_dim..(head + 1) * head_dim].to_vec();
                    let (k, v) = (part(k), part(v));
                    let step = |x: &[f32], i: usize| {
                        let r = &x[i / run * run..(i / run + 1) * run];
                        r.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0
                    };
                    // One-hot queries read single keys back.
                    for i in 0..head_dim {
                        let mut q = vec![0f32; head_dim];
                        q[i] = 1.0;
                        let mut got = [0f32];
                        cache.scores(kernels, at(1, head), pos..pos + 1, &q, 1.0, &mut got);
                        let got = got[0];
                        assert!((got - k[i]).abs() <= step(&k, i) / 2.0 + 1e-6);
                    }
                    let mut out = vec![1f32; head_dim];
                    cache.add_values(kernels, at(1, head), pos, &[2.0], &mut out);
                    for i in 0..head_dim {
                        assert!((out[i] - (1.0 + 2.0 * v[i])).abs() <= step(&v, i) + 1e-5);
                    }
                }
            }
        }
    }

    #[test]
    fn a_group_of_queries_gets_what_each_query_gets_alone() {
        // Groups of 1 to 5 query heads over 7 positions, heads of 64 (the kernels' runs) and
        // 40 (one run per head), on every instruction set this CPU has: the same bits.
        for kernels in Kernels::supported()
            .into_iter()
            .filter_map(Kernels::for_isa)
        {
            for head_dim in [64, 40] {
                let mut cache = KvCache::new(1, 2, head_dim);
                for p in 0..7 {
                    let (k, v) = (values(10 + p, 2 * head_dim), values(20 + p, 2 * head_dim));
                    cache.append(0, &[&k], &[&v]);
                    cache.advance(1);
                }
                for n in 1..=5 {
                    let q = values(30 + n as u32, n * head_dim);
                    let weights = values(40 + n as u32, n * 6);
                    let mut grouped = vec![0f32; n * 6];
                    cache.scores(kernels, at(0, 1), 1..7, &q, 0.5, &mut grouped);
                    let mut sums = vec![1f32; n * head_dim];
                    cache.add_values(kernels, at(0, 1), 1, &weights, &mut sums);
                    for g in 0..n {
                        let mut alone = [0f32; 6];
                        let q = &q[g * head_dim..(g + 1) * head_dim];
                        cache.scores(kernels, at(0, 1), 1..7, q, 0.5, &mut alone);
                        assert_eq!(grouped[g * 6..(g + 1) * 6], alone, "{kernels:?} {n}");
                        let mut sum = vec![1f32; head_dim];
                        let w = &weights[g * 6..(g + 1) * 6];
                        cache.add_values(kernels, at(0, 1), 1, w, &mut sum);
                        assert_eq!(sums[g * head_dim..(g + 1) * head_dim], sum, "{kernels:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn truncating_keeps_the_prefix_and_appending_again_continues_it() {
        let mut cache = KvCache::new(1, 1, 32);
        let rows: Vec<Vec<f32>> = (0..3).map(|i| values(i, 32)).collect();
        let q = values(9, 32);
        for row in &rows {
            cache.append(0, &[row], &[row]);
            cache.advance(1);
        }
        let (mut before, mut after) = ([0f32; 3], [0f32; 2]);
        cache.scores(Kernels::detect(), at(0, 0), 0..3, &q, 1.0, &mut before);
        cache.truncate(1);
        assert_eq!(cache.position(), 1);
        cache.append(0, &[&rows[1]], &[&rows[1]]);
        cache.advance(1);
        assert_eq!(cache.position(), 2);
        cache.scores(Kernels::detect(), at(0, 0), 0..2, &q, 1.0, &mut after);
        assert_eq!(after, before[..2]);
    }

    #[test]
    fn an_all_zero_run_stays_zero() {
        let mut cache = KvCache::new(1, 1, 32);
        cache.append(0, &[&[0.0; 32]], &[&[0.0; 32]]);
        let mut scores = [1f32];
        cache.scores(
            Kernels::detect(),
            at(0, 0),
            0..1,
            &[1.0; 32],
            1.0,
            &mut scores,
        );
        assert_eq!(scores, [0.0]);
    }
}
