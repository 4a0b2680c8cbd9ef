//! The GGUF weight formats the CPU path computes with, their block layouts, and a plain
//! dequantizer per format (used for embedding rows and as the reference in tests).
//!
//! The file stores a row as consecutive blocks, each a little-endian header (f16 scales)
//! followed by packed integers. At load, rows of the 32-value formats are rearranged into
//! planes — every block's scale, then every block's second header field, then the packed
//! integers — so kernels can convert eight scales with one instruction. The bytes are the
//! same, only their order changes: weights are never widened to f32. The K-quants keep the
//! file's layout (their scales are shared by 256 values), and so do float matrices.

use candle_core::quantized::GgmlDType;
use half::f16;

/// Weights per block of the 32-value formats and of the activation blocks they pair with.
pub const QK: usize = 32;
/// Weights per super-block of the K-quants.
pub const QK_K: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `d: f16, qs: [u8; 16]`; value `d * (q - 8)`.
    Q4_0,
    /// `d: f16, m: f16, qs: [u8; 16]`; value `d * q + m`.
    Q4_1,
    /// `d: f16, qh: u32, qs: [u8; 16]`; value `d * ((q | h << 4) - 16)`.
    Q5_0,
    /// `d: f16, m: f16, qh: u32, qs: [u8; 16]`; value `d * (q | h << 4) + m`.
    Q5_1,
    /// `d: f16, qs: [i8; 32]`; value `d * q`.
    Q8_0,
    /// `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`: eight sub-blocks of 32, each
    /// with a 6-bit scale and minimum; value `d * sc * q - dmin * m`.
    Q4K,
    /// `d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`: like Q4_K with a
    /// fifth bit per value from `qh`.
    Q5K,
    /// `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`: sixteen sub-blocks of 16,
    /// each with an 8-bit scale; value `d * sc * (q - 32)` for six-bit `q`.
    Q6K,
    /// Unquantized little-endian floats.
    F32,
    F16,
    BF16,
}

/// What a format's rows are multiplied with: 8-bit activations in blocks of 32 or of 256,
/// or the activations as they are (float weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    Q8,
    Q8K,
    F32,
}

impl Format {
    /// The format of a GGUF tensor type, when the CPU path has kernels for it.
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q5_1 => Self::Q5_1,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4K => Self::Q4K,
            GgmlDType::Q5K => Self::Q5K,
            GgmlDType::Q6K => Self::Q6K,
            GgmlDType::F32 => Self::F32,
            GgmlDType::F16 => Self::F16,
            GgmlDType::BF16 => Self::BF16,
            _ => return None,
        })
    }

    /// Values per block; float rows are counted in runs of 32 (activations are cut in blocks
    /// of 32 for every format).
    #[inline]
    pub fn block_len(self) -> usize {
        match self {
            Self::Q4K | Self::Q5K | Self::Q6K => QK_K,
            _ => QK,
        }
    }

    #[inline]
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
            Self::F32 => 4 * QK,
            Self::F16 | Self::BF16 => 2 * QK,
        }
    }

    /// Bytes of one row of `cols` weights (`cols` must be a multiple of the block length).
    #[inline]
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / self.block_len() * self.block_bytes()
    }

    /// The activations the kernels multiply this format's rows with.
    #[inline]
    pub fn operand(self) -> Operand {
        match self {
            Self::Q4K | Self::Q5K | Self::Q6K => Operand::Q8K,
            Self::F32 | Self::F16 | Self::BF16 => Operand::F32,
            _ => Operand::Q8,
        }
    }

    /// Whether rows are rearranged into planes at load ([`Format::to_planar`]).
    #[inline]
    fn is_planar(self) -> bool {
        self.operand() == Operand::Q8
    }

    /// Bytes of a block's header after its f16 scale: Q4_1's minimum, Q5_0's high bits, both
    /// for Q5_1 (planar: every minimum, then every block's high bits).
    #[inline]
    fn extra_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 2,
            Self::Q5_0 => 4,
            Self::Q5_1 => 6,
            _ => 0,
        }
    }

    /// A row as the kernels read it: planes for the 32-value formats (see the module
    /// documentation), the file's bytes for K-quants and floats.
    pub fn to_planar(self, row: &[u8]) -> Vec<u8> {
        let mut out = vec![0; row.len()];
        self.write_planar(row, &mut out);
        out
    }

    /// [`Format::to_planar`] into `out`, which is as long as `row`.
    pub fn write_planar(self, row: &[u8], out: &mut [u8]) {
        if !self.is_planar() {
            out.copy_from_slice(row);
            return;
        }
        let (bytes, extra) = (self.block_bytes(), self.extra_bytes());
        let nb = row.len() / bytes;
        let (d, rest) = out.split_at_mut(2 * nb);
        let (e, qs) = rest.split_at_mut(extra * nb);
        let quants = bytes - 2 - extra;
        for (b, blk) in row.chunks_exact(bytes).enumerate() {
            d[2 * b..2 * b + 2].copy_from_slice(&blk[..2]);
            if self == Self::Q5_1 {
                e[2 * b..2 * b + 2].copy_from_slice(&blk[2..4]);
                e[2 * nb + 4 * b..2 * nb + 4 * b + 4].copy_from_slice(&blk[4..8]);
            } else {
                e[extra * b..extra * (b + 1)].copy_from_slice(&blk[2..2 + extra]);
            }
            qs[quants * b..quants * (b + 1)].copy_from_slice(&blk[2 + extra..]);
        }
    }

    /// The planes of a planar row of a 32-value format.
    #[inline]
    pub fn planes(self, row: &[u8]) -> Planes<'_> {
        let nb = row.len() / self.block_bytes();
        let (d, rest) = row.split_at(2 * nb);
        let (extra, qs) = rest.split_at(self.extra_bytes() * nb);
        let qh_at = if self == Self::Q5_1 { 2 * nb } else { 0 };
        Planes {
            nb,
            d,
            extra,
            qh_at,
            qs,
        }
    }

    /// Writes the values of `row` (a row as [`Format::to_planar`] makes it) into `out`.
    pub fn dequantize(self, row: &[u8], out: &mut [f32]) {
        if self.is_planar() {
            let p = self.planes(row);
            for (b, y) in out.chunks_exact_mut(QK).enumerate().take(p.nb) {
                let d = p.d(b);
                match self {
                    Self::Q4_0 => {
                        for (j, &q) in p.qs(b, 16).iter().enumerate() {
                            y[j] = d * ((q & 0xF) as f32 - 8.0);
                            y[j + 16] = d * ((q >> 4) as f32 - 8.0);
                        }
                    }
                    Self::Q4_1 => {
                        let m = p.m(b);
                        for (j, &q) in p.qs(b, 16).iter().enumerate() {
                            y[j] = d * (q & 0xF) as f32 + m;
                            y[j + 16] = d * (q >> 4) as f32 + m;
                        }
                    }
                    Self::Q5_0 | Self::Q5_1 => {
                        let qh = p.qh(b);
                        let (offset, m) = match self {
                            Self::Q5_0 => (16.0, 0.0),
                            _ => (0.0, p.m(b)),
                        };
                        for (j, &q) in p.qs(b, 16).iter().enumerate() {
                            let lo = (q & 0xF) as u32 | ((qh >> j) & 1) << 4;
                            let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
                            y[j] = d * (lo as f32 - offset) + m;
                            y[j + 16] = d * (hi as f32 - offset) + m;
                        }
                    }
                    Self::Q8_0 => {
                        for (y, &q) in y.iter_mut().zip(p.qs(b, 32)) {
                            *y = d * (q as i8) as f32;
                        }
                    }
                    _ => unreachable!("only the 32-value formats are planar"),
                }
            }
            return;
        }
        let blocks = row.chunks_exact(self.block_bytes());
        for (b, y) in blocks.zip(out.chunks_exact_mut(self.block_len())) {
            match self {
                Self::Q4K | Self::Q5K => {
                    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                    let scales: &[u8; 12] = b[4..16].try_into().expect("12 scale bytes");
                    let (qh, qs) = match self {
                        Self::Q5K => (Some(&b[16..48]), &b[48..176]),
                        _ => (None, &b[16..144]),
                    };
                    for (j, qs) in qs.chunks_exact(32).enumerate() {
                        let (sc1, m1) = k4_scale_min(2 * j, scales);
                        let (sc2, m2) = k4_scale_min(2 * j + 1, scales);
                        let y = &mut y[64 * j..64 * j + 64];
                        for (l, &q) in qs.iter().enumerate() {
                            let (h1, h2) = qh.map_or((0, 0), |qh| k5_high_bits(qh[l], j));
                            let (q1, q2) = ((q & 0xF) | h1, (q >> 4) | h2);
                            y[l] = d * sc1 as f32 * q1 as f32 - dmin * m1 as f32;
                            y[l + 32] = d * sc2 as f32 * q2 as f32 - dmin * m2 as f32;
                        }
                    }
                }
                Self::Q6K => {
                    let d = f16_at(b, 208);
                    for half in 0..2 {
                        let y = &mut y[128 * half..128 * (half + 1)];
                        for l in 0..32 {
                            let q = k6_values(b, half, l);
                            for (k, q) in q.into_iter().enumerate() {
                                let sc = k6_scale(b, half, l, k);
                                y[l + 32 * k] = d * sc as f32 * (q as i32 - 32) as f32;
                            }
                        }
                    }
                }
                Self::F32 => {
                    for (y, v) in y.iter_mut().zip(b.chunks_exact(4)) {
                        *y = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                    }
                }
                Self::F16 => {
                    for (j, y) in y.iter_mut().enumerate() {
                        *y = f16_at(b, 2 * j);
                    }
                }
                Self::BF16 => {
                    for (j, y) in y.iter_mut().enumerate() {
                        *y = bf16_at(b, 2 * j);
                    }
                }
                _ => unreachable!("32-value formats are planar"),
            }
        }
    }
}

/// A planar row of a 32-value format: `d` holds each block's f16 scale, `extra` each
/// block's minimum (Q4_1, f16) or high bits (Q5_0, u32) or both (Q5_1: minimums first, the
/// high bits from byte `qh_at`), `qs` the packed integers.
#[derive(Clone, Copy)]
pub struct Planes<'a> {
    pub nb: usize,
    pub d: &'a [u8],
    pub extra: &'a [u8],
    pub qh_at: usize,
    pub qs: &'a [u8],
}

impl Planes<'_> {
    #[inline(always)]
    pub fn d(&self, b: usize) -> f32 {
        f16_at(self.d, 2 * b)
    }

    /// Q4_1's or Q5_1's minimum of block `b`.
    #[inline(always)]
    pub fn m(&self, b: usize) -> f32 {
        f16_at(self.extra, 2 * b)
    }

    /// Q5_0's or Q5_1's fifth bits of block `b`.
    #[inline(always)]
    pub fn qh(&self, b: usize) -> u32 {
        let e = &self.extra[self.qh_at + 4 * b..self.qh_at + 4 * b + 4];
        u32::from_le_bytes([e[0], e[1], e[2], e[3]])
    }

    /// The `len` packed bytes of block `b`.
    #[inline(always)]
    pub fn qs(&self, b: usize, len: usize) -> &[u8] {
        &self.qs[b * len..(b + 1) * len]
    }
}

/// The f16 at byte `at` of `bytes`, as f32.
#[inline(always)]
pub fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Scale and minimum of sub-block `j` (0..8) of a Q4_K super-block: the first four are the
/// low six bits of bytes 0..4 and 4..8; the last four are split between the nibbles of
/// bytes 8..12 and the top two bits of bytes 0..8.
#[inline(always)]
pub fn k4_scale_min(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// The bf16 at byte `at` of `bytes`, as f32 (the upper half of an f32's bits).
#[inline(always)]
pub fn bf16_at(bytes: &[u8], at: usize) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes([bytes[at], bytes[at + 1]])) << 16)
}

/// Q5_K's fifth bits for the low and high nibble of byte `l` of the packed values of
/// sub-block pair `j` (0..4): bits `2j` and `2j + 1` of `qh[l]`, as 16.
#[inline(always)]
pub fn k5_high_bits(qh: u8, j: usize) -> (u8, u8) {
    (((qh >> (2 * j)) & 1) << 4, ((qh >> (2 * j + 1)) & 1) << 4)
}

/// The four six-bit values of a Q6_K block that byte `l` (0..32) of half `half` (0..2) holds:
/// values `128 half + l + 32 k` for k = 0..4, unsigned (0..64, stored as `q + 32`).
#[inline(always)]
pub fn k6_values(blk: &[u8], half: usize, l: usize) -> [u8; 4] {
    let (ql, qh) = (&blk[64 * half..64 * half + 64], blk[128 + 32 * half + l]);
    [
        (ql[l] & 0xF) | (qh & 3) << 4,
        (ql[l + 32] & 0xF) | ((qh >> 2) & 3) << 4,
        (ql[l] >> 4) | ((qh >> 4) & 3) << 4,
        (ql[l + 32] >> 4) | ((qh >> 6) & 3) << 4,
    ]
}

/// The scale of value `128 half + l + 32 k` of a Q6_K block (one per 16 values).
#[inline(always)]
pub fn k6_scale(blk: &[u8], half: usize, l: usize, k: usize) -> i8 {
    blk[192 + 8 * half + l / 16 + 2 * k] as i8
}
