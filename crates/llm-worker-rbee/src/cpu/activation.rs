//! Activations quantized to 8 bits for the integer dot products, one token after another.
//!
//! Two block sizes exist because the weight formats pair with different ones: 32 values per
//! block for Q4_0/Q4_1/Q5_0/Q8_0 (scale `d` plus `s = d * Σq`, which Q4_1's offset needs)
//! and 256 per block for the K-quants (scale plus the sum of each 16 values). Rounding
//! follows Candle's quantizers, so both paths see the same integers.

use super::format::{Operand, QK, QK_K};
use super::team::Team;
use half::f16;

/// Tokens quantized by one task when several threads share a prompt (fewer stay on the
/// calling thread: a decoding step has one).
pub const TOKENS_PER_TASK: usize = 4;

/// The activations of `tokens` rows of `cols` values each.
pub struct Quantized {
    pub cols: usize,
    pub tokens: usize,
    pub q8: Q8,
    /// Present when `cols` is a multiple of 256 and a K-quant weight needs it.
    pub q8k: Option<Q8K>,
    /// The activations as they are, when a float weight needs them.
    pub f32: Option<Vec<f32>>,
}

/// 32-value blocks: `d[b]`, `s[b] = d[b] * Σ qs` (rounded to f16, as Candle does),
/// `sums[b] = Σ qs` exactly, `qs[32 b..32 b + 32]`.
pub struct Q8 {
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    pub sums: Vec<i32>,
    pub qs: Vec<i8>,
}

/// 256-value blocks: `d[b]`, `qs[256 b..]`, `bsums[16 b..16 b + 16]` (sums of 16 values).
pub struct Q8K {
    pub d: Vec<f32>,
    pub qs: Vec<i8>,
    pub bsums: Vec<i16>,
}

/// One token's view of the 32-value blocks.
#[derive(Clone, Copy)]
pub struct Q8Row<'a> {
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub sums: &'a [i32],
    pub qs: &'a [i8],
}

/// One token's view of the 256-value blocks.
#[derive(Clone, Copy)]
pub struct Q8KRow<'a> {
    pub d: &'a [f32],
    pub qs: &'a [i8],
    pub bsums: &'a [i16],
}

impl Quantized {
    /// Quantizes `x` (`tokens` rows of `cols`) on `team` for weights that take the given operands:
    /// always in 32-value blocks, also in 256-value blocks for K-quants, and kept as floats
    /// for float weights.
    pub fn new(team: &Team, x: &[f32], cols: usize, operands: &[Operand]) -> Self {
        assert!(cols.is_multiple_of(QK) && x.len().is_multiple_of(cols));
        let tokens = x.len() / cols;
        let blocks = x.len() / QK;
        let nb = cols / QK;
        let mut q8 = Q8 {
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
            sums: vec![0; blocks],
            qs: vec![0; x.len()],
        };
        // Whole tokens per task; blocks never straddle tokens, so a task's blocks are its own.
        let (values, per_task) = (TOKENS_PER_TASK * cols, TOKENS_PER_TASK * nb);
        let tasks: Vec<_> = (x.chunks(values).zip(q8.qs.chunks_mut(values)))
            .zip(q8.d.chunks_mut(per_task).zip(q8.s.chunks_mut(per_task)))
            .zip(q8.sums.chunks_mut(per_task))
            .collect();
        team.for_each(tasks, |(((x, qs), (d, s)), sums)| {
            let blocks = x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK));
            for (b, (xs, qs)) in blocks.enumerate() {
                let amax = max_abs(xs);
                let scale = amax / 127.0;
                let id = if scale != 0.0 { 1.0 / scale } else { 0.0 };
                let mut sum = 0i32;
                for (q, &v) in qs.iter_mut().zip(xs) {
                    *q = (v * id).round() as i8;
                    sum += *q as i32;
                }
                d[b] = f16::from_f32(scale).to_f32();
                s[b] = f16::from_f32(sum as f32 * d[b]).to_f32();
                sums[b] = sum;
            }
        });
        let k_blocks = operands.contains(&Operand::Q8K) && cols.is_multiple_of(QK_K);
        let q8k = k_blocks.then(|| quantize_k(x));
        let f32 = operands.contains(&Operand::F32).then(|| x.to_vec());
        Self {
            cols,
            tokens,
            q8,
            q8k,
            f32,
        }
    }

    /// Token `token`'s activations as floats, when they were kept.
    pub fn floats(&self, token: usize) -> Option<&[f32]> {
        let x = self.f32.as_ref()?;
        Some(&x[token * self.cols..(token + 1) * self.cols])
    }

    pub fn q8(&self, token: usize) -> Q8Row<'_> {
        let nb = self.cols / QK;
        let b = token * nb..(token + 1) * nb;
        Q8Row {
            d: &self.q8.d[b.clone()],
            s: &self.q8.s[b.clone()],
            sums: &self.q8.sums[b],
            qs: &self.q8.qs[token * self.cols..(token + 1) * self.cols],
        }
    }

    pub fn q8k(&self, token: usize) -> Option<Q8KRow<'_>> {
        let k = self.q8k.as_ref()?;
        let nb = self.cols / QK_K;
        Some(Q8KRow {
            d: &k.d[token * nb..(token + 1) * nb],
            qs: &k.qs[token * self.cols..(token + 1) * self.cols],
            bsums: &k.bsums[token * nb * 16..(token + 1) * nb * 16],
        })
    }
}

/// The largest `|v|` of `xs`, in eight lanes the compiler keeps in one vector register.
fn max_abs(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(0f32, |m, v| m.max(v.abs()));
    for c in chunks {
        for i in 0..8 {
            lanes[i] = lanes[i].max(c[i].abs());
        }
    }
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

fn quantize_k(x: &[f32]) -> Q8K {
    let blocks = x.len() / QK_K;
    let mut out = Q8K {
        d: Vec::with_capacity(blocks),
        qs: vec![0; x.len()],
        bsums: vec![0; blocks * 16],
    };
    for ((xs, qs), bsums) in x
        .chunks_exact(QK_K)
        .zip(out.qs.chunks_exact_mut(QK_K))
        .zip(out.bsums.chunks_exact_mut(16))
    {
        // The value of largest magnitude, with its sign, maps to -127.
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in xs {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            out.d.push(0.0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in qs.iter_mut().zip(xs) {
            *q = (iscale * v).round().clamp(-128.0, 127.0) as i8;
        }
        for (sum, group) in bsums.iter_mut().zip(qs.chunks_exact(16)) {
            *sum = group.iter().map(|&q| q as i16).sum();
        }
        out.d.push(1.0 / iscale);
    }
    out
}
