//! The dot products for x86-64, in two instruction sets generated from one source:
//! AVX2 + FMA (every x86-64 CPU since 2013–2015) and AVX-VNNI (2021 on), which fuses the
//! byte multiply and the pairwise sums into one instruction.
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
                    Format::Q8_0 => accumulate!(p, a, b => unsafe {
                        signed_sums(load(p.qs.as_ptr().add(32 * b)), load(y.add(b * QK)))
                    }),
                    Format::Q4K => unreachable!("K-quants pair with 256-value blocks"),
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
                    Format::Q8_0 => accumulate_x4!(p, a, None, b => unsafe {
                        load(p.qs.as_ptr().add(32 * b))
                    }),
                    Format::Q4K => unreachable!("K-quants pair with 256-value blocks"),
                }
            }

            /// `row · a` for Q4_K.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_q8k(format: Format, row: &[u8], a: Q8KRow) -> f32 {
                q4_k(format, row, [a])[0]
            }

            /// `[row · a[0], .., row · a[3]]` for Q4_K.
            ///
            /// # Safety
            /// The CPU must support the features of this module.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_q8k_x4(format: Format, row: &[u8], a: [Q8KRow; 4]) -> [f32; 4] {
                q4_k(format, row, a)
            }

            /// Q4_K rows times `N` tokens: each super-block's scales and weights are
            /// unpacked once, then multiplied by every token's values.
            #[target_feature(enable = $features)]
            fn q4_k<const N: usize>(format: Format, row: &[u8], a: [Q8KRow; N]) -> [f32; N] {
                assert_eq!(format, Format::Q4K, "only Q4_K has a 256-value kernel");
                let nb = row.len() / 144;
                assert!(row.len() == nb * 144);
                for a in &a {
                    assert!(a.qs.len() == nb * 256 && a.d.len() == nb && a.bsums.len() == nb * 16);
                }
                let w = row.as_ptr();
                let low = _mm256_set1_epi8(0x0F);
                let mut acc = [_mm256_setzero_ps(); N];
                let mut mins = [0f32; N];
                for b in 0..nb {
                    let blk = &row[b * 144..(b + 1) * 144];
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
                    for j in 0..4 {
                        // SAFETY: bytes 16 + 32 j.. of block `b` lie inside the row.
                        let v = unsafe { load(w.add(b * 144 + 16 + 32 * j)) };
                        q[2 * j] = _mm256_and_si256(v, low);
                        q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
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

/// Block `b` of a planar Q5_0 row as 32 unsigned five-bit values.
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
