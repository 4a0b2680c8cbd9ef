//! The dot products for x86-64, in three instruction sets generated from one source:
//! AVX2 + FMA (every x86-64 CPU since 2013–2015), and AVX-VNNI (Intel, 2021 on) or AVX-512
//! VNNI with VL (AMD Zen 4 on, Intel server parts since Ice Lake), which fuse the byte
//! multiply and the pairwise sums into one instruction (VEX- and EVEX-encoded forms of the
//! same operation on 256-bit registers).
//!
//! Integer products multiply unsigned by signed bytes (`vpmaddubsw`, or `vpdpbusd` with
//! VNNI). Four- and five-bit weights are unsigned as stored, and `offset · Σ activations` is
//! taken off the sums afterwards (Q4_0's 8, Q5_0's 16). Q8_0 weights are signed: with VNNI
//! they are made unsigned by adding 128 (one XOR) and 128 is taken off the same way; without
//! it (the pair sums of `vpmaddubsw` saturate at 16 bits) their sign moves onto the
//! activation (`|w| · sign(w)·y = w·y`).
//!
//! The 32-value formats are multiplied in tiles of eight rows ([`crate::cpu::format`]): one
//! vector holds four bytes of each row, a token's matching four activation bytes are
//! broadcast to all lanes, and each lane accumulates its row's sum, so a block needs no
//! horizontal sums and each unpacked vector serves every token. K-quants and floats are
//! multiplied a row at a time; two accumulators alternate so consecutive blocks do not wait
//! on each other.
//!
//! Safety: every function here requires the features named in its module;
//! [`super::Kernels`] hands them out only after detecting those features. Pointer reads are
//! bounded by the length checks at the top of each kernel.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{KV_RUN, KvRows};
use crate::cpu::activation::{Q8KRow, Q8Row};
use crate::cpu::format::{Format, QK, TILE_ROWS, TileOffsets, f16_at, k4_scale_min};

const K_QUANT: &str = "only K-quants pair with 256-value blocks";
const FLOAT: &str = "only float formats pair with float activations";
const TILED: &str = "only the 32-value formats are tiled";

/// Multiplies every block column of a tile by `N` tokens. `$unpack` is called with the
/// column's pointer and a closure `$each(w, at)` to apply to every vector `w` of unsigned
/// weights whose activations start `at` bytes into each token's block. `$offset` (what the
/// unsigned weights exceed the format's values by) and `$minimums` (whether the format adds a
/// minimum per block) are constants, so a format without them spends no instruction on them.
macro_rules! tile_columns {
    ($format:expr, $tile:expr, $a:expr, offset: $offset:literal, minimums: $minimums:literal,
     $dp:ident, |$c:ident, $multiply:ident| $unpack:block) => {{
        let format: Format = $format;
        let tile: &[u8] = $tile;
        let a = $a;
        let column = TILE_ROWS * format.block_bytes();
        let nb = tile.len() / column;
        assert!(tile.len() == nb * column && format.is_tiled(), "{TILED}");
        for a in &a {
            assert!(a.qs.len() == nb * QK && a.d.len() == nb);
            assert!(a.s.len() == nb && a.sums.len() == nb);
        }
        let at = format.tile_offsets();
        let (offset, minimums): (i32, bool) = ($offset, $minimums);
        let mut acc = [_mm256_setzero_ps(); N];
        for b in 0..nb {
            // SAFETY: column `b` lies inside the tile, and every token's block `b` inside
            // its activations (checked above).
            let $c = unsafe { tile.as_ptr().add(b * column) };
            let y: [*const i8; N] = std::array::from_fn(|t| unsafe { a[t].qs.as_ptr().add(b * QK) });
            // Two sums per token, for alternate vectors, so that consecutive products do
            // not wait on each other.
            let mut isum = [[_mm256_setzero_si256(); 2]; N];
            let mut $multiply = |w: __m256i, at: usize| {
                for t in 0..N {
                    // SAFETY: `at + 4 <= 32`: inside the token's block.
                    let four = unsafe { std::ptr::read_unaligned(y[t].add(at).cast::<i32>()) };
                    let sum = &mut isum[t][at / 4 % 2];
                    *sum = $dp(*sum, w, _mm256_set1_epi32(four));
                }
            };
            $unpack
            let isum = isum.map(|[a, b]| _mm256_add_epi32(a, b));
            // SAFETY: the scales (and minimums) of column `b` lie inside the tile.
            let dw = unsafe { _mm256_cvtph_ps(_mm_loadu_si128($c.cast())) };
            for t in 0..N {
                let mut s = isum[t];
                if offset != 0 {
                    s = _mm256_sub_epi32(s, _mm256_set1_epi32(offset * a[t].sums[b]));
                }
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(a[t].d[b]));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[t]);
            }
            if minimums {
                // SAFETY: as above.
                let mw = unsafe { _mm256_cvtph_ps(_mm_loadu_si128($c.add(at.m_at).cast())) };
                for t in 0..N {
                    acc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a[t].s[b]), acc[t]);
                }
            }
        }
        acc.map(|v| {
            let mut out = [0f32; TILE_ROWS];
            // SAFETY: eight floats into an array of eight.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
            out
        })
    }};
}

macro_rules! kernels {
    ($isa:ident, $features:literal, unsigned_q8: $unsigned_q8:literal, $dp:item) => {
        pub mod $isa {
            use super::*;

            $dp

            /// `out[t][l] = row l of tile · a[t]` for a 32-value format.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn tile_q8<const N: usize>(
                format: Format,
                tile: &[u8],
                a: [Q8Row; N],
            ) -> [[f32; TILE_ROWS]; N] {
                let at = format.tile_offsets();
                match format {
                    Format::Q8_0 if $unsigned_q8 => {
                        tile_columns!(format, tile, a, offset: 128, minimums: false, dp, |c, multiply| {
                            for k in 0..8 {
                                // SAFETY: vector `k` of the column's integers.
                                let w = unsafe { load(c.add(at.qs_at + 32 * k)) };
                                multiply(_mm256_xor_si256(w, _mm256_set1_epi8(-128)), 4 * k);
                            }
                        })
                    }
                    Format::Q8_0 => {
                        tile_columns!(format, tile, a, offset: 0, minimums: false, dp_signed, |c, multiply| {
                            for k in 0..8 {
                                // SAFETY: vector `k` of the column's integers.
                                let w = unsafe { load(c.add(at.qs_at + 32 * k)) };
                                multiply(w, 4 * k);
                            }
                        })
                    }
                    // SAFETY (the four arms below): the column's nibbles and high bits lie
                    // inside the tile.
                    Format::Q4_0 => tile_columns!(format, tile, a, offset: 8, minimums: false, dp, |c, multiply| {
                        unsafe { nibbles(c, at, None, &mut multiply) }
                    }),
                    Format::Q4_1 => tile_columns!(format, tile, a, offset: 0, minimums: true, dp, |c, multiply| {
                        unsafe { nibbles(c, at, None, &mut multiply) }
                    }),
                    Format::Q5_0 => tile_columns!(format, tile, a, offset: 16, minimums: false, dp, |c, multiply| {
                        unsafe { nibbles(c, at, Some(load(c.add(at.qh_at))), &mut multiply) }
                    }),
                    Format::Q5_1 => tile_columns!(format, tile, a, offset: 0, minimums: true, dp, |c, multiply| {
                        unsafe { nibbles(c, at, Some(load(c.add(at.qh_at))), &mut multiply) }
                    }),
                    _ => unreachable!("{TILED}"),
                }
            }

            /// Signed weight bytes `w` times signed activations `y`, added to `acc`: the
            /// sign of `w` moves onto `y`.
            #[inline]
            #[target_feature(enable = $features)]
            fn dp_signed(acc: __m256i, w: __m256i, y: __m256i) -> __m256i {
                dp(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w))
            }

            /// `[row · a[t]]` for a K-quant.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_q8k<const N: usize>(
                format: Format,
                row: &[u8],
                a: [Q8KRow; N],
            ) -> [f32; N] {
                dot_k(a, format, row)
            }

            /// `[row · a[t]]` for a float format.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_f32<const N: usize>(
                format: Format,
                row: &[u8],
                a: [&[f32]; N],
            ) -> [f32; N] {
                floats(format, row, a)
            }

            #[target_feature(enable = $features)]
            fn dot_k<const N: usize>(a: [Q8KRow; N], format: Format, row: &[u8]) -> [f32; N] {
                match format {
                    Format::Q4K | Format::Q5K => q45_k(format, row, a),
                    Format::Q6K => q6_k(row, a),
                    _ => unreachable!("{K_QUANT}"),
                }
            }

            /// Q4_K or Q5_K rows times `N` tokens: each super-block's scales and weights are
            /// unpacked once, then multiplied by every token's values.
            #[target_feature(enable = $features)]
            fn q45_k<const N: usize>(format: Format, row: &[u8], a: [Q8KRow; N]) -> [f32; N] {
                let bytes = format.block_bytes();
                let nb = row.len() / bytes;
                assert!(row.len() == nb * bytes);
                for a in &a {
                    assert!(a.qs.len() == nb * 256 && a.d.len() == nb && a.bsums.len() == nb * 16);
                }
                // Q5_K's fifth bits come before its packed nibbles.
                let (high, packed) = match format {
                    Format::Q5K => (true, 48),
                    _ => (false, 16),
                };
                let w = row.as_ptr();
                let low = _mm256_set1_epi8(0x0F);
                let mut acc = [_mm256_setzero_ps(); N];
                // The minimums' share, `dmin · m_j · Σ activations of sub-block j`, summed in
                // eight lanes (one per sub-block) and taken off `acc` at the end.
                let mut mins = [_mm256_setzero_ps(); N];
                for b in 0..nb {
                    let blk = &row[b * bytes..(b + 1) * bytes];
                    let scales: &[u8; 12] = blk[4..16].try_into().expect("12 scale bytes");
                    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                    // Sub-block 2j: low nibbles of bytes 32j.., 2j + 1: their high nibbles.
                    let mut q = [_mm256_setzero_si256(); 8];
                    let mut sc = [_mm256_setzero_si256(); 8];
                    // Each minimum twice: the activations' sums come per 16 values.
                    let mut m = [0i16; 16];
                    for j in 0..8 {
                        let (s, min) = k4_scale_min(j, scales);
                        sc[j] = _mm256_set1_epi16(s as i16);
                        (m[2 * j], m[2 * j + 1]) = (min as i16, min as i16);
                    }
                    // SAFETY: sixteen i16 in `m`.
                    let m = unsafe { load(m.as_ptr()) };
                    // SAFETY: bytes 16..48 of block `b` lie inside the row (Q5_K blocks).
                    let qh = if high { unsafe { load(w.add(b * bytes + 16)) } } else { low };
                    for j in 0..4 {
                        // SAFETY: the 32 packed bytes of pair `j` of block `b` lie inside the
                        // row.
                        let v = unsafe { load(w.add(b * bytes + packed + 32 * j)) };
                        q[2 * j] = _mm256_and_si256(v, low);
                        q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                        if high {
                            q[2 * j] = _mm256_or_si256(q[2 * j], bit_as_16(qh, 2 * j as u32));
                            q[2 * j + 1] =
                                _mm256_or_si256(q[2 * j + 1], bit_as_16(qh, 2 * j as u32 + 1));
                        }
                    }
                    for t in 0..N {
                        let y = a[t].qs.as_ptr();
                        let mut isum = _mm256_setzero_si256();
                        for j in 0..8 {
                            // SAFETY: values 256 b + 32 j.. lie inside `a.qs` (checked above).
                            let yj = unsafe { load(y.add(b * 256 + 32 * j)) };
                            let pairs = _mm256_maddubs_epi16(q[j], yj);
                            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(pairs, sc[j]));
                        }
                        // SAFETY: the block's 16 sums lie inside `a.bsums` (checked above).
                        let bsums = unsafe { load(a[t].bsums.as_ptr().add(16 * b)) };
                        let msum = _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, m));
                        mins[t] = _mm256_fmadd_ps(_mm256_set1_ps(a[t].d[b] * dmin), msum, mins[t]);
                        let scale = _mm256_set1_ps(a[t].d[b] * d);
                        acc[t] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum), acc[t]);
                    }
                }
                std::array::from_fn(|t| hsum(_mm256_sub_ps(acc[t], mins[t])))
            }

            /// Q6_K rows times `N` tokens. The six-bit values are multiplied unsigned (stored
            /// as `q + 32`); `32 · Σ scale · Σ activations` per 16 values is subtracted after.
            #[target_feature(enable = $features)]
            fn q6_k<const N: usize>(row: &[u8], a: [Q8KRow; N]) -> [f32; N] {
                let nb = row.len() / 210;
                assert!(row.len() == nb * 210);
                for a in &a {
                    assert!(a.qs.len() == nb * 256 && a.d.len() == nb && a.bsums.len() == nb * 16);
                }
                let w = row.as_ptr();
                let (low, two) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
                let mut acc = [_mm256_setzero_ps(); N];
                for b in 0..nb {
                    let blk = w.wrapping_add(b * 210);
                    // Values 128 h + 32 k + l (l < 32) in q[4 h + k]; scale of 16 values g in
                    // sc[g], whose two per vector go in its low and high halves.
                    let mut q = [_mm256_setzero_si256(); 8];
                    let mut sc = [_mm256_setzero_si256(); 8];
                    // SAFETY: a Q6_K block is 210 bytes: ql 0..128, qh 128..192, scales
                    // 192..208, d 208..210, all inside the row.
                    let (scales, d) = unsafe {
                        (_mm_loadu_si128(blk.add(192).cast()), f16_at(&row[b * 210..], 208))
                    };
                    let scales16 = _mm256_cvtepi8_epi16(scales);
                    for h in 0..2 {
                        // SAFETY: as above.
                        let (ql0, ql1, qh) = unsafe {
                            (
                                load(blk.add(64 * h)),
                                load(blk.add(64 * h + 32)),
                                load(blk.add(128 + 32 * h)),
                            )
                        };
                        let hb = [
                            _mm256_and_si256(_mm256_slli_epi16(qh, 4), two),
                            _mm256_and_si256(_mm256_slli_epi16(qh, 2), two),
                            _mm256_and_si256(qh, two),
                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), two),
                        ];
                        let lo = [
                            _mm256_and_si256(ql0, low),
                            _mm256_and_si256(ql1, low),
                            _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                            _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                        ];
                        for k in 0..4 {
                            q[4 * h + k] = _mm256_or_si256(lo[k], hb[k]);
                            let g = 8 * h + 2 * k;
                            let s = |g: usize| (row[b * 210 + 192 + g] as i8) as i16;
                            sc[4 * h + k] = _mm256_set_m128i(
                                _mm_set1_epi16(s(g + 1)),
                                _mm_set1_epi16(s(g)),
                            );
                        }
                    }
                    for t in 0..N {
                        let y = a[t].qs.as_ptr();
                        let mut isum = _mm256_setzero_si256();
                        for (i, (q, sc)) in q.iter().zip(&sc).enumerate() {
                            // SAFETY: values 256 b + 32 i.. lie inside `a.qs` (checked above).
                            let yi = unsafe { load(y.add(b * 256 + 32 * i)) };
                            let pairs = _mm256_maddubs_epi16(*q, yi);
                            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(pairs, *sc));
                        }
                        // SAFETY: the block's 16 sums lie inside `a.bsums` (checked above).
                        let bsums = unsafe { load(a[t].bsums.as_ptr().add(16 * b)) };
                        let offset = _mm256_slli_epi32(_mm256_madd_epi16(scales16, bsums), 5);
                        isum = _mm256_sub_epi32(isum, offset);
                        let scale = _mm256_set1_ps(a[t].d[b] * d);
                        acc[t] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum), acc[t]);
                    }
                }
                std::array::from_fn(|t| hsum(acc[t]))
            }

            /// Float rows times `N` tokens' float activations, eight values at a time.
            #[target_feature(enable = $features)]
            fn floats<const N: usize>(format: Format, row: &[u8], a: [&[f32]; N]) -> [f32; N] {
                let size = match format {
                    Format::F32 => 4,
                    Format::F16 | Format::BF16 => 2,
                    _ => unreachable!("{FLOAT}"),
                };
                let cols = row.len() / size;
                assert!(row.len() == cols * size && cols.is_multiple_of(8));
                for a in &a {
                    assert_eq!(a.len(), cols);
                }
                let w = row.as_ptr();
                let mut acc = [_mm256_setzero_ps(); N];
                for i in (0..cols).step_by(8) {
                    // SAFETY: values i..i + 8 lie inside the row and every token's activations
                    // (checked above).
                    let v = unsafe {
                        match format {
                            Format::F32 => _mm256_loadu_ps(w.add(4 * i).cast()),
                            Format::F16 => _mm256_cvtph_ps(_mm_loadu_si128(w.add(2 * i).cast())),
                            _ => {
                                let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(w.add(2 * i).cast()));
                                _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
                            }
                        }
                    };
                    for t in 0..N {
                        // SAFETY: as above.
                        let x = unsafe { _mm256_loadu_ps(a[t].as_ptr().add(i)) };
                        acc[t] = _mm256_fmadd_ps(v, x, acc[t]);
                    }
                }
                std::array::from_fn(|t| hsum(acc[t]))
            }

            /// [`crate::cpu::kernels::Kernels::kv_scores`].
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn kv_scores(q: &[f32], keys: KvRows, scale: f32, out: &mut [f32]) {
                let Some(head_dim) = keys.group_check(q.len(), out.len()) else {
                    return;
                };
                let rows = keys.rows;
                // Up to four queries per pass over the keys.
                for (q, out) in q.chunks(4 * head_dim).zip(out.chunks_mut(4 * rows)) {
                    match q.len() / head_dim {
                        1 => scores::<1>(q, keys, scale, out),
                        2 => scores::<2>(q, keys, scale, out),
                        3 => scores::<3>(q, keys, scale, out),
                        _ => scores::<4>(q, keys, scale, out),
                    }
                }
            }

            /// `Q` queries' scores: each key's bytes are widened once for all of them.
            #[target_feature(enable = $features)]
            fn scores<const Q: usize>(q: &[f32], keys: KvRows, scale: f32, out: &mut [f32]) {
                let head_dim = q.len() / Q;
                let runs = head_dim / KV_RUN;
                assert!(q.len() == Q * head_dim && out.len() == Q * keys.rows);
                for i in 0..keys.rows {
                    // SAFETY: row i's values and scales lie inside the slices (checked by
                    // `group_check`).
                    let (k, s) = unsafe {
                        (keys.qs.as_ptr().add(i * keys.stride), keys.scales.as_ptr().add(i * keys.scale_stride))
                    };
                    let mut total = [_mm256_setzero_ps(); Q];
                    for r in 0..runs {
                        let mut acc = [_mm256_setzero_ps(); Q];
                        for c in 0..KV_RUN / 8 {
                            let at = r * KV_RUN + 8 * c;
                            // SAFETY: values at..at + 8 of the row (checked above).
                            let kv = unsafe { bytes_as_floats(k.add(at)) };
                            for g in 0..Q {
                                // SAFETY: values at..at + 8 of query g (asserted above).
                                let qv = unsafe { _mm256_loadu_ps(q.as_ptr().add(g * head_dim + at)) };
                                acc[g] = _mm256_fmadd_ps(qv, kv, acc[g]);
                            }
                        }
                        // SAFETY: run r's scale (checked above).
                        let sv = _mm256_set1_ps(unsafe { *s.add(r) });
                        for g in 0..Q {
                            total[g] = _mm256_fmadd_ps(acc[g], sv, total[g]);
                        }
                    }
                    for g in 0..Q {
                        out[g * keys.rows + i] = hsum(total[g]) * scale;
                    }
                }
            }

            /// [`crate::cpu::kernels::Kernels::kv_add_values`].
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn kv_add_values(weights: &[f32], values: KvRows, out: &mut [f32]) {
                let Some(head_dim) = values.group_check(out.len(), weights.len()) else {
                    return;
                };
                let rows = values.rows;
                // Up to two queries per pass: their 32 sums of a run stay in eight registers.
                for (w, out) in weights.chunks(2 * rows).zip(out.chunks_mut(2 * head_dim)) {
                    match out.len() / head_dim {
                        1 => add_values::<1>(w, values, out),
                        _ => add_values::<2>(w, values, out),
                    }
                }
            }

            /// `Q` queries' attended values: each value's bytes are widened once for all of
            /// them.
            #[target_feature(enable = $features)]
            fn add_values<const Q: usize>(weights: &[f32], values: KvRows, out: &mut [f32]) {
                let (rows, head_dim) = (values.rows, out.len() / Q);
                assert!(weights.len() == Q * rows && out.len() == Q * head_dim);
                for run in 0..head_dim / KV_RUN {
                    let mut acc = [[_mm256_setzero_ps(); KV_RUN / 8]; Q];
                    for i in 0..rows {
                        // SAFETY: row i's run and its scale lie inside the slices (checked by
                        // `group_check`).
                        let (v, s) = unsafe {
                            (
                                values.qs.as_ptr().add(i * values.stride + run * KV_RUN),
                                *values.scales.get_unchecked(i * values.scale_stride + run),
                            )
                        };
                        // SAFETY: values 8c..8c + 8 of the run.
                        let x: [__m256; KV_RUN / 8] =
                            std::array::from_fn(|c| unsafe { bytes_as_floats(v.add(8 * c)) });
                        for g in 0..Q {
                            let w = _mm256_set1_ps(weights[g * rows + i] * s);
                            for c in 0..KV_RUN / 8 {
                                acc[g][c] = _mm256_fmadd_ps(w, x[c], acc[g][c]);
                            }
                        }
                    }
                    for g in 0..Q {
                        for c in 0..KV_RUN / 8 {
                            let at = g * head_dim + run * KV_RUN + 8 * c;
                            // SAFETY: values at..at + 8 of `out` (asserted above).
                            unsafe {
                                let o = out.as_mut_ptr().add(at);
                                _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc[g][c]));
                            }
                        }
                    }
                }
            }
        }
    };
}

/// Eight signed bytes at `p` as floats.
///
/// # Safety
/// `p` must be valid for reading 8 bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bytes_as_floats(p: *const i8) -> __m256 {
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
}

kernels!(
    avx2,
    "avx2,fma,f16c",
    unsigned_q8: false,
    /// `acc` plus the sums of products of unsigned `x` and signed `y` bytes, four to a lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dp(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(x, y);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
);

kernels!(
    avx_vnni,
    "avx2,fma,f16c,avxvnni",
    unsigned_q8: true,
    /// `acc` plus the sums of products of unsigned `x` and signed `y` bytes, four to a lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    fn dp(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, x, y)
    }
);

kernels!(
    avx512_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    unsigned_q8: true,
    /// `acc` plus the sums of products of unsigned `x` and signed `y` bytes, four to a lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    fn dp(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, x, y)
    }
);

/// The fifth bits of values `j..j + 4` (`j` a multiple of 4) of the eight rows whose 32-bit
/// high-bit words are the lanes of `qh`, as 16 in the byte of each value (else 0).
#[inline]
#[target_feature(enable = "avx2")]
fn fifth_bits(qh: __m256i, j: usize) -> __m256i {
    // Copy byte j / 8 of each lane to the lane's four bytes, keep bit j % 8 + i in byte i.
    let byte = (j / 8) as i8;
    let spread = _mm256_shuffle_epi8(
        qh,
        _mm256_setr_epi8(
            byte,
            byte,
            byte,
            byte,
            4 + byte,
            4 + byte,
            4 + byte,
            4 + byte,
            8 + byte,
            8 + byte,
            8 + byte,
            8 + byte,
            12 + byte,
            12 + byte,
            12 + byte,
            12 + byte,
            byte,
            byte,
            byte,
            byte,
            4 + byte,
            4 + byte,
            4 + byte,
            4 + byte,
            8 + byte,
            8 + byte,
            8 + byte,
            8 + byte,
            12 + byte,
            12 + byte,
            12 + byte,
            12 + byte,
        ),
    );
    let mask = _mm256_set1_epi32((0x0804_0201u32 << (j % 8)) as i32);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Hands each of the eight vectors of a tile column's four-bit weights (with their fifth bits
/// from the high-bit words `qh`, for Q5_0 and Q5_1) to `multiply`, with the offset of their
/// activations in the block.
///
/// # Safety
/// The column at `c` must hold the integers at `at.qs_at` (4 × 32 bytes).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn nibbles(
    c: *const u8,
    at: TileOffsets,
    qh: Option<__m256i>,
    multiply: &mut impl FnMut(__m256i, usize),
) {
    let low = _mm256_set1_epi8(0x0F);
    for k in 0..4 {
        // SAFETY: vector `k` of the column's nibbles (the caller's promise).
        let v = unsafe { load(c.add(at.qs_at + 32 * k)) };
        let mut lo = _mm256_and_si256(v, low);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        if let Some(qh) = qh {
            lo = _mm256_or_si256(lo, fifth_bits(qh, 4 * k));
            hi = _mm256_or_si256(hi, fifth_bits(qh, 16 + 4 * k));
        }
        multiply(lo, 4 * k);
        multiply(hi, 16 + 4 * k);
    }
}

/// Each byte is 16 where bit `bit` (0..8) of the same byte of `bits` is set, else 0.
#[inline]
#[target_feature(enable = "avx2")]
fn bit_as_16(bits: __m256i, bit: u32) -> __m256i {
    let mask = _mm256_set1_epi8((1u8 << bit) as i8);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bits, mask), mask);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// 32 bytes from `p`.
///
/// # Safety
/// `p` must be valid for reading 32 bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load<T>(p: *const T) -> __m256i {
    unsafe { _mm256_loadu_si256(p.cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}
