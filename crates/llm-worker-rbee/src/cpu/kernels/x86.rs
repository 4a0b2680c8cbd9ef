//! The dot products for x86-64, in three instruction sets generated from one source:
//! AVX2 + FMA (every x86-64 CPU since 2013–2015), and AVX-VNNI (Intel, 2021 on) or AVX-512
//! VNNI with VL (AMD Zen 4 on, Intel server parts since Ice Lake), which fuse the byte
//! multiply and the pairwise sums into one instruction (VEX- and EVEX-encoded forms of the
//! same operation on 256-bit registers).
//!
//! Integer products multiply unsigned by signed bytes (`vpmaddubsw`, or `vpdpbusd` with
//! VNNI): unsigned weights (Q4_1, Q4_K nibbles) go in directly; signed weights are made
//! unsigned with their sign moved onto the activation (`|w| · sign(w)·y = w·y`). Each
//! block's integer sums are scaled in f32; two accumulators alternate between blocks so
//! consecutive blocks do not wait on each other's multiply-add. Rows of the 32-value formats
//! are planar ([`crate::cpu::format`]): eight blocks' scales are converted from f16 and
//! multiplied by the activations' scales with two instructions.
//!
//! Safety: every function here requires the features named in its module;
//! [`super::Kernels`] hands them out only after detecting those features. Pointer reads are
//! bounded by the length checks at the top of each kernel.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::cpu::activation::{Q8KRow, Q8Row};
use crate::cpu::format::{Format, Planes, QK, f16_at, k4_scale_min};

const K_QUANT: &str = "only K-quants pair with 256-value blocks";
const FLOAT: &str = "only float formats pair with float activations";

/// The planes of `row`, checked to hold whole blocks of `format` matching `a`.
#[inline(always)]
fn planes<'a>(format: Format, row: &'a [u8], a: &Q8Row) -> Planes<'a> {
    let p = format.planes(row);
    assert!(row.len() == p.nb * format.block_bytes() && a.qs.len() == p.nb * QK);
    assert!(a.d.len() == p.nb && a.s.len() == p.nb && a.sums.len() == p.nb);
    p
}

/// `weight scale × activation scale` for the eight blocks whose f16 scales start at `d`.
///
/// # Safety
/// `d` must be valid for reading 16 bytes and `ad` for 8 floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scales8(d: *const u8, ad: *const f32) -> [f32; 8] {
    let mut out = [0f32; 8];
    unsafe {
        let w = _mm256_cvtph_ps(_mm_loadu_si128(d.cast()));
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_mul_ps(w, _mm256_loadu_ps(ad)));
    }
    out
}

/// `Σ m[b] · s[b]`: Q4_1's minimums (f16 plane) times the activations' block sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn offsets(p: &Planes, s: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut b = 0;
    while b + 8 <= p.nb {
        // SAFETY: blocks b..b + 8 lie inside the minimum plane (2 bytes each) and `s`.
        unsafe {
            let m = _mm256_cvtph_ps(_mm_loadu_si128(p.extra.as_ptr().add(2 * b).cast()));
            acc = _mm256_fmadd_ps(m, _mm256_loadu_ps(s.as_ptr().add(b)), acc);
        }
        b += 8;
    }
    hsum(acc) + (b..p.nb).map(|b| p.m(b) * s[b]).sum::<f32>()
}

/// Sums `(weight scale × activation scale) · products` over the blocks of `$p`, two
/// accumulators alternating.
macro_rules! accumulate {
    ($p:expr, $a:expr, $b:ident => $products:expr) => {{
        let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut base = 0;
        while base + 8 <= $p.nb {
            // SAFETY: blocks base..base + 8 lie inside the scale plane and `a.d`.
            let sc = unsafe { scales8($p.d.as_ptr().add(2 * base), $a.d.as_ptr().add(base)) };
            for i in (0..8).step_by(2) {
                let $b = base + i;
                even = _mm256_fmadd_ps(_mm256_set1_ps(sc[i]), $products, even);
                let $b = base + i + 1;
                odd = _mm256_fmadd_ps(_mm256_set1_ps(sc[i + 1]), $products, odd);
            }
            base += 8;
        }
        for $b in base..$p.nb {
            even = _mm256_fmadd_ps(_mm256_set1_ps($p.d($b) * $a.d[$b]), $products, even);
        }
        hsum(_mm256_add_ps(even, odd))
    }};
}

/// Like `accumulate!` for four tokens at once: each block of weights is unpacked once and
/// multiplied by the four tokens' blocks. `$unpack` gives the 32 weights as bytes: signed
/// when `$offset` is `None`, else unsigned, standing for `q - offset`.
///
/// Eight blocks go together: their integer sums (eight lanes each) are folded into one vector
/// of eight block sums, from which `offset · Σ activations` is subtracted, then converted and
/// scaled with one instruction each, instead of scaling every block's lanes separately.
macro_rules! accumulate_x4 {
    ($p:expr, $a:expr, $offset:expr, $b:ident => $unpack:expr) => {{
        let offset: Option<i8> = $offset;
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut base = 0;
        while base + 8 <= $p.nb {
            let mut q = [_mm256_setzero_si256(); 8];
            let mut ax = [_mm256_setzero_si256(); 8];
            for i in 0..8 {
                let $b = base + i;
                q[i] = $unpack;
                ax[i] = match offset {
                    None => _mm256_sign_epi8(q[i], q[i]),
                    Some(_) => q[i],
                };
            }
            // SAFETY: blocks base..base + 8 lie inside the scale plane and every token's
            // blocks (checked by `planes`).
            let dw =
                unsafe { _mm256_cvtph_ps(_mm_loadu_si128($p.d.as_ptr().add(2 * base).cast())) };
            for t in 0..4 {
                let y = $a[t].qs.as_ptr();
                let mut sums = [_mm256_setzero_si256(); 8];
                for i in 0..8 {
                    // SAFETY: as above.
                    let yb = unsafe { load(y.add((base + i) * QK)) };
                    let yb = match offset {
                        None => _mm256_sign_epi8(yb, q[i]),
                        Some(_) => yb,
                    };
                    sums[i] = int_sums(ax[i], yb);
                }
                let mut blocks = fold8(sums);
                if let Some(c) = offset.filter(|&c| c != 0) {
                    // SAFETY: as above.
                    let ys = unsafe { load($a[t].sums.as_ptr().add(base)) };
                    blocks = _mm256_sub_epi32(
                        blocks,
                        _mm256_mullo_epi32(ys, _mm256_set1_epi32(c as i32)),
                    );
                }
                // SAFETY: as above.
                let d = _mm256_mul_ps(dw, unsafe { _mm256_loadu_ps($a[t].d.as_ptr().add(base)) });
                acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(blocks), acc[t]);
            }
            base += 8;
        }
        for $b in base..$p.nb {
            let q: __m256i = $unpack;
            // Leftover blocks one at a time, offset weights made signed.
            let (q, signed) = match offset {
                Some(0) => (q, false),
                Some(c) => (_mm256_sub_epi8(q, _mm256_set1_epi8(c)), true),
                None => (q, true),
            };
            let ax = if signed { _mm256_sign_epi8(q, q) } else { q };
            let dw = $p.d($b);
            for t in 0..4 {
                // SAFETY: every token's blocks were checked to match the row (`planes`).
                let y = unsafe { load($a[t].qs.as_ptr().add($b * QK)) };
                let y = if signed { _mm256_sign_epi8(y, q) } else { y };
                let d = _mm256_set1_ps(dw * $a[t].d[$b]);
                acc[t] = _mm256_fmadd_ps(d, unsigned_sums(ax, y), acc[t]);
            }
        }
        [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
    }};
}

macro_rules! kernels {
    ($isa:ident, $features:literal, $int_sums:item) => {
        pub mod $isa {
            use super::*;

            $int_sums

            /// Sums of products of unsigned `x` and signed `y` bytes, eight i32 lanes as f32.
            #[inline]
            #[target_feature(enable = $features)]
            fn unsigned_sums(x: __m256i, y: __m256i) -> __m256 {
                _mm256_cvtepi32_ps(int_sums(x, y))
            }

            /// Sums of products of signed bytes `x` and `y`, eight i32 lanes as f32.
            #[inline]
            #[target_feature(enable = $features)]
            fn signed_sums(x: __m256i, y: __m256i) -> __m256 {
                unsigned_sums(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
            }

            /// `row · a` for a 32-value-block format.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_q8(format: Format, row: &[u8], a: Q8Row) -> f32 {
                let p = planes(format, row, &a);
                let y = a.qs.as_ptr();
                // SAFETY (each block): block `b` lies inside the planes and `a.qs` (checked
                // above).
                match format {
                    Format::Q4_0 => accumulate!(p, a, b => unsafe {
                        let q = _mm256_sub_epi8(q4_block(&p, b), _mm256_set1_epi8(8));
                        signed_sums(q, load(y.add(b * QK)))
                    }),
                    Format::Q4_1 => {
                        accumulate!(p, a, b => unsafe {
                            unsigned_sums(q4_block(&p, b), load(y.add(b * QK)))
                        }) + offsets(&p, a.s)
                    }
                    Format::Q5_0 => accumulate!(p, a, b => unsafe {
                        let q = _mm256_sub_epi8(q5_block(&p, b), _mm256_set1_epi8(16));
                        signed_sums(q, load(y.add(b * QK)))
                    }),
                    Format::Q5_1 => {
                        accumulate!(p, a, b => unsafe {
                            unsigned_sums(q5_block(&p, b), load(y.add(b * QK)))
                        }) + offsets(&p, a.s)
                    }
                    Format::Q8_0 => accumulate!(p, a, b => unsafe {
                        signed_sums(load(p.qs.as_ptr().add(32 * b)), load(y.add(b * QK)))
                    }),
                    _ => unreachable!("only 32-value formats pair with 32-value blocks"),
                }
            }

            /// `[row · a[0], .., row · a[3]]` for a 32-value-block format.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_q8_x4(format: Format, row: &[u8], a: [Q8Row; 4]) -> [f32; 4] {
                let p = planes(format, row, &a[0]);
                for t in &a[1..] {
                    assert!(t.qs.len() == p.nb * QK && t.d.len() == p.nb && t.s.len() == p.nb);
                    assert!(t.sums.len() == p.nb);
                }
                // SAFETY (each unpack): block `b` lies inside the planes (checked above).
                match format {
                    Format::Q4_0 => accumulate_x4!(p, a, Some(8), b => unsafe { q4_block(&p, b) }),
                    Format::Q4_1 => {
                        let mut sums =
                            accumulate_x4!(p, a, Some(0), b => unsafe { q4_block(&p, b) });
                        for (sum, a) in sums.iter_mut().zip(&a) {
                            *sum += offsets(&p, a.s);
                        }
                        sums
                    }
                    Format::Q5_0 => accumulate_x4!(p, a, Some(16), b => unsafe { q5_block(&p, b) }),
                    Format::Q5_1 => {
                        let mut sums =
                            accumulate_x4!(p, a, Some(0), b => unsafe { q5_block(&p, b) });
                        for (sum, a) in sums.iter_mut().zip(&a) {
                            *sum += offsets(&p, a.s);
                        }
                        sums
                    }
                    Format::Q8_0 => accumulate_x4!(p, a, None, b => unsafe {
                        load(p.qs.as_ptr().add(32 * b))
                    }),
                    _ => unreachable!("only 32-value formats pair with 32-value blocks"),
                }
            }

            /// `row · a` for a K-quant.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_q8k(format: Format, row: &[u8], a: Q8KRow) -> f32 {
                dot_k([a], format, row)[0]
            }

            /// `[row · a[0], .., row · a[3]]` for a K-quant.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_q8k_x4(format: Format, row: &[u8], a: [Q8KRow; 4]) -> [f32; 4] {
                dot_k(a, format, row)
            }

            /// `row · a` for a float format.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_f32(format: Format, row: &[u8], a: &[f32]) -> f32 {
                floats(format, row, [a])[0]
            }

            /// `[row · a[0], .., row · a[3]]` for a float format.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_f32_x4(format: Format, row: &[u8], a: [&[f32]; 4]) -> [f32; 4] {
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
                let mut mins = [0f32; N];
                for b in 0..nb {
                    let blk = &row[b * bytes..(b + 1) * bytes];
                    let scales: &[u8; 12] = blk[4..16].try_into().expect("12 scale bytes");
                    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                    // Sub-block 2j: low nibbles of bytes 32j.., 2j + 1: their high nibbles.
                    let mut q = [_mm256_setzero_si256(); 8];
                    let mut sc = [_mm256_setzero_si256(); 8];
                    let mut m = [0i32; 8];
                    for j in 0..8 {
                        let (s, min) = k4_scale_min(j, scales);
                        sc[j] = _mm256_set1_epi16(s as i16);
                        m[j] = min as i32;
                    }
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
                        let bsums = &a[t].bsums[b * 16..(b + 1) * 16];
                        let msum: i32 = (0..8)
                            .map(|j| m[j] * (bsums[2 * j] as i32 + bsums[2 * j + 1] as i32))
                            .sum();
                        mins[t] += a[t].d[b] * dmin * msum as f32;
                        let scale = _mm256_set1_ps(a[t].d[b] * d);
                        acc[t] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum), acc[t]);
                    }
                }
                std::array::from_fn(|t| hsum(acc[t]) - mins[t])
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
        }
    };
}

kernels!(
    avx2,
    "avx2,fma,f16c",
    /// Sums of products of unsigned `x` and signed `y` bytes, in eight i32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn int_sums(x: __m256i, y: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
    }
);

kernels!(
    avx_vnni,
    "avx2,fma,f16c,avxvnni",
    /// Sums of products of unsigned `x` and signed `y` bytes, in eight i32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    fn int_sums(x: __m256i, y: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), x, y)
    }
);

kernels!(
    avx512_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    /// Sums of products of unsigned `x` and signed `y` bytes, in eight i32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    fn int_sums(x: __m256i, y: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
    }
);

/// Each byte is 16 where bit `bit` (0..8) of the same byte of `bits` is set, else 0.
#[inline]
#[target_feature(enable = "avx2")]
fn bit_as_16(bits: __m256i, bit: u32) -> __m256i {
    let mask = _mm256_set1_epi8((1u8 << bit) as i8);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bits, mask), mask);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Lane `i` of the result is the sum of the eight lanes of `v[i]`.
#[inline]
#[target_feature(enable = "avx2")]
fn fold8(v: [__m256i; 8]) -> __m256i {
    // Pairwise sums within 128-bit halves, then each half's four sums added across halves.
    let a = _mm256_hadd_epi32(v[0], v[1]);
    let b = _mm256_hadd_epi32(v[2], v[3]);
    let c = _mm256_hadd_epi32(v[4], v[5]);
    let d = _mm256_hadd_epi32(v[6], v[7]);
    let low_high_0123 = _mm256_hadd_epi32(a, b);
    let low_high_4567 = _mm256_hadd_epi32(c, d);
    _mm256_add_epi32(
        _mm256_permute2x128_si256(low_high_0123, low_high_4567, 0x20),
        _mm256_permute2x128_si256(low_high_0123, low_high_4567, 0x31),
    )
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

/// Block `b` of a planar Q4_0 or Q4_1 row as 32 unsigned nibbles: its 16 bytes' low nibbles
/// in bytes 0..16, high nibbles in 16..32.
///
/// # Safety
/// `b` must be a block of the row (`b < p.nb`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q4_block(p: &Planes, b: usize) -> __m256i {
    let x = unsafe { _mm_loadu_si128(p.qs.as_ptr().add(16 * b).cast()) };
    _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(x, 4), x),
        _mm256_set1_epi8(0x0F),
    )
}

/// Block `b` of a planar Q5_0 or Q5_1 row as 32 unsigned five-bit values.
///
/// # Safety
/// `b` must be a block of the row (`b < p.nb`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q5_block(p: &Planes, b: usize) -> __m256i {
    let high = _mm256_and_si256(bit_bytes(p.qh(b)), _mm256_set1_epi8(0x10));
    _mm256_or_si256(unsafe { q4_block(p, b) }, high)
}

/// Byte `i` is 0xFF when bit `i` of `bits` is set, else 0.
#[inline]
#[target_feature(enable = "avx2")]
fn bit_bytes(bits: u32) -> __m256i {
    // Byte i takes byte i / 8 of `bits`, then every bit but bit i % 8 is set.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let others = i64::from_le_bytes([0xFE, 0xFD, 0xFB, 0xF7, 0xEF, 0xDF, 0xBF, 0x7F]);
    let set = _mm256_or_si256(spread, _mm256_set1_epi64x(others));
    _mm256_cmpeq_epi8(set, _mm256_set1_epi8(-1))
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// [`super::prefetch`].
#[inline(always)]
pub fn prefetch(p: *const u8, len: usize) {
    for line in (0..len).step_by(64) {
        // SAFETY: prefetching reads nothing architecturally and cannot fault.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line).cast()) };
    }
}
