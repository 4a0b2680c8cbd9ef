//! Integer dot products in plain Rust: the fallback on CPUs without the SIMD paths, and the
//! definition the SIMD kernels must agree with.

use super::{KV_RUN, KvRows};
use crate::cpu::activation::{Q8KRow, Q8Row};
use crate::cpu::format::{
    Format, QK, TILE_ROWS, Tile, bf16_at, f16_at, k4_scale_min, k5_high_bits, k6_scale, k6_values,
};

/// `out[t][l] = row l of tile · a[t]` for a 32-value format.
pub fn tile_q8<const N: usize>(
    format: Format,
    tile: &[u8],
    a: [Q8Row; N],
) -> [[f32; TILE_ROWS]; N] {
    let t = Tile::new(format, tile);
    let mut out = [[0f32; TILE_ROWS]; N];
    for (out, a) in out.iter_mut().zip(&a) {
        assert!(a.qs.len() == t.nb * QK && a.d.len() == t.nb && a.s.len() == t.nb);
        for (l, out) in out.iter_mut().enumerate() {
            *out = (0..t.nb)
                .map(|b| {
                    let y = &a.qs[b * QK..(b + 1) * QK];
                    let isum: i32 = (y.iter().enumerate())
                        .map(|(j, &y)| t.value(b, l, j) * i32::from(y))
                        .sum();
                    t.d(b, l) * a.d[b] * isum as f32 + t.m(b, l) * a.s[b]
                })
                .sum();
        }
    }
    out
}

/// `row · a` for a K-quant.
pub fn dot_q8k(format: Format, row: &[u8], a: Q8KRow) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(format.block_bytes()).enumerate() {
        let y = &a.qs[b * 256..(b + 1) * 256];
        let bsums = &a.bsums[b * 16..(b + 1) * 16];
        sum += a.d[b]
            * match format {
                Format::Q4K | Format::Q5K => q45_k_block(format, blk, y, bsums),
                Format::Q6K => q6_k_block(blk, y),
                _ => unreachable!("only K-quants pair with 256-value blocks"),
            };
    }
    sum
}

/// One Q4_K or Q5_K super-block times 256 activations, before the activations' scale.
fn q45_k_block(format: Format, blk: &[u8], y: &[i8], bsums: &[i16]) -> f32 {
    let scales: &[u8; 12] = blk[4..16].try_into().expect("12 scale bytes");
    let (qh, qs) = match format {
        Format::Q5K => (Some(&blk[16..48]), &blk[48..176]),
        _ => (None, &blk[16..144]),
    };
    let (mut isum, mut msum) = (0i32, 0i32);
    for (j, qs) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = k4_scale_min(2 * j, scales);
        let (sc2, m2) = k4_scale_min(2 * j + 1, scales);
        let (y1, y2) = (&y[64 * j..64 * j + 32], &y[64 * j + 32..64 * j + 64]);
        let (mut s1, mut s2) = (0i32, 0i32);
        for (l, &q) in qs.iter().enumerate() {
            let (h1, h2) = qh.map_or((0, 0), |qh| k5_high_bits(qh[l], j));
            s1 += ((q & 0xF) | h1) as i32 * y1[l] as i32;
            s2 += ((q >> 4) | h2) as i32 * y2[l] as i32;
        }
        isum += sc1 as i32 * s1 + sc2 as i32 * s2;
        msum += m1 as i32 * (bsums[4 * j] as i32 + bsums[4 * j + 1] as i32)
            + m2 as i32 * (bsums[4 * j + 2] as i32 + bsums[4 * j + 3] as i32);
    }
    f16_at(blk, 0) * isum as f32 - f16_at(blk, 2) * msum as f32
}

/// One Q6_K super-block times 256 activations, before the activations' scale.
fn q6_k_block(blk: &[u8], y: &[i8]) -> f32 {
    let mut isum = 0i32;
    for half in 0..2 {
        for l in 0..32 {
            for (k, q) in k6_values(blk, half, l).into_iter().enumerate() {
                let sc = k6_scale(blk, half, l, k) as i32;
                isum += sc * (q as i32 - 32) * y[128 * half + l + 32 * k] as i32;
            }
        }
    }
    f16_at(blk, 208) * isum as f32
}

/// `row · x` for a float format.
pub fn dot_f32(format: Format, row: &[u8], x: &[f32]) -> f32 {
    match format {
        Format::F32 => row
            .chunks_exact(4)
            .zip(x)
            .map(|(w, x)| f32::from_le_bytes([w[0], w[1], w[2], w[3]]) * x)
            .sum(),
        Format::F16 => (0..x.len()).map(|i| f16_at(row, 2 * i) * x[i]).sum(),
        Format::BF16 => (0..x.len()).map(|i| bf16_at(row, 2 * i) * x[i]).sum(),
        _ => unreachable!("only float formats pair with float activations"),
    }
}

/// [`super::Kernels::kv_scores`].
pub fn kv_scores(q: &[f32], keys: KvRows, scale: f32, out: &mut [f32]) {
    let Some(head_dim) = keys.group_check(q.len(), out.len()) else {
        return;
    };
    for (q, out) in q
        .chunks_exact(head_dim)
        .zip(out.chunks_exact_mut(keys.rows))
    {
        for (i, out) in out.iter_mut().enumerate() {
            let (k, s) = keys.row(i, head_dim);
            let dot: f32 = (k.chunks_exact(KV_RUN).zip(q.chunks_exact(KV_RUN)))
                .zip(s)
                .map(|((k, q), s)| s * k.iter().zip(q).map(|(&k, q)| f32::from(k) * q).sum::<f32>())
                .sum();
            *out = dot * scale;
        }
    }
}

/// [`super::Kernels::kv_add_values`].
pub fn kv_add_values(weights: &[f32], values: KvRows, out: &mut [f32]) {
    let Some(head_dim) = values.group_check(out.len(), weights.len()) else {
        return;
    };
    for (weights, out) in weights
        .chunks_exact(values.rows)
        .zip(out.chunks_exact_mut(head_dim))
    {
        for (i, &p) in weights.iter().enumerate() {
            let (v, s) = values.row(i, head_dim);
            for ((v, s), out) in v
                .chunks_exact(KV_RUN)
                .zip(s)
                .zip(out.chunks_exact_mut(KV_RUN))
            {
                let w = p * s;
                for (o, &v) in out.iter_mut().zip(v) {
                    *o += w * f32::from(v);
                }
            }
        }
    }
}
