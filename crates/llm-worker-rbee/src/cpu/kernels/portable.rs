//! Integer dot products in plain Rust: the fallback on CPUs without the SIMD paths, and the
//! definition the SIMD kernels must agree with.

use crate::cpu::activation::{Q8KRow, Q8Row};
use crate::cpu::format::{Format, QK, f16_at, k4_scale_min};

/// `row · a` for a 32-value-block format (a planar row).
pub fn dot_q8(format: Format, row: &[u8], a: Q8Row) -> f32 {
    let p = format.planes(row);
    let mut sum = 0f32;
    for b in 0..p.nb {
        let y = &a.qs[b * QK..(b + 1) * QK];
        let d = p.d(b) * a.d[b];
        sum += match format {
            Format::Q4_0 => d * pairs(p.qs(b, 16), y, |q| q as i32 - 8) as f32,
            Format::Q4_1 => d * pairs(p.qs(b, 16), y, |q| q as i32) as f32 + p.m(b) * a.s[b],
            Format::Q5_0 => {
                let qh = p.qh(b);
                let mut isum = 0i32;
                for (j, &q) in p.qs(b, 16).iter().enumerate() {
                    let lo = (q & 0xF) as i32 | (((qh >> j) & 1) << 4) as i32;
                    let hi = (q >> 4) as i32 | (((qh >> (j + 16)) & 1) << 4) as i32;
                    isum += (lo - 16) * y[j] as i32 + (hi - 16) * y[j + 16] as i32;
                }
                d * isum as f32
            }
            Format::Q8_0 => {
                let isum: i32 = p
                    .qs(b, 32)
                    .iter()
                    .zip(y)
                    .map(|(&q, &y)| (q as i8) as i32 * y as i32)
                    .sum();
                d * isum as f32
            }
            Format::Q4K => unreachable!("K-quants pair with 256-value blocks"),
        };
    }
    sum
}

/// Σ over a block whose 16 bytes hold elements `j` (low nibble) and `j + 16` (high nibble).
fn pairs(qs: &[u8], y: &[i8], value: impl Fn(u8) -> i32) -> i32 {
    qs.iter()
        .enumerate()
        .map(|(j, &q)| value(q & 0xF) * y[j] as i32 + value(q >> 4) * y[j + 16] as i32)
        .sum()
}

/// `row · a` for a K-quant.
pub fn dot_q8k(format: Format, row: &[u8], a: Q8KRow) -> f32 {
    assert_eq!(format, Format::Q4K, "only Q4_K has a 256-value kernel");
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(format.block_bytes()).enumerate() {
        let scales: &[u8; 12] = blk[4..16].try_into().expect("12 scale bytes");
        let y = &a.qs[b * 256..(b + 1) * 256];
        let bsums = &a.bsums[b * 16..(b + 1) * 16];
        let (mut isum, mut msum) = (0i32, 0i32);
        for (j, qs) in blk[16..144].chunks_exact(32).enumerate() {
            let (sc1, m1) = k4_scale_min(2 * j, scales);
            let (sc2, m2) = k4_scale_min(2 * j + 1, scales);
            let (y1, y2) = (&y[64 * j..64 * j + 32], &y[64 * j + 32..64 * j + 64]);
            let (mut s1, mut s2) = (0i32, 0i32);
            for (l, &q) in qs.iter().enumerate() {
                s1 += (q & 0xF) as i32 * y1[l] as i32;
                s2 += (q >> 4) as i32 * y2[l] as i32;
            }
            isum += sc1 as i32 * s1 + sc2 as i32 * s2;
            msum += m1 as i32 * (bsums[4 * j] as i32 + bsums[4 * j + 1] as i32)
                + m2 as i32 * (bsums[4 * j + 2] as i32 + bsums[4 * j + 3] as i32);
        }
        sum += a.d[b] * (f16_at(blk, 0) * isum as f32 - f16_at(blk, 2) * msum as f32);
    }
    sum
}
