//! The GGUF weight formats the CPU path computes with, their block layouts, and a plain
//! dequantizer per format (used for embedding rows and as the reference in tests).
//!
//! The file stores a row as consecutive blocks, each a little-endian header (f16 scales)
//! followed by packed integers. At load, rows of the 32-value formats are rearranged into
//! planes — every block's scale, then every block's second header field, then the packed
//! integers — so kernels can convert eight scales with one instruction. The bytes are the
//! same, only their order changes: weights are never widened to f32. Q4_K keeps the file's
//! layout (its two scales are shared by 256 values).

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
    /// `d: f16, qs: [i8; 32]`; value `d * q`.
    Q8_0,
    /// `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`: eight sub-blocks of 32, each
    /// with a 6-bit scale and minimum; value `d * sc * q - dmin * m`.
    Q4K,
}

impl Format {
    /// The format of a GGUF tensor type, when the CPU path has kernels for it.
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4K => Self::Q4K,
            _ => return None,
        })
    }

    #[inline]
    pub fn block_len(self) -> usize {
        match self {
            Self::Q4K => QK_K,
            _ => QK,
        }
    }

    #[inline]
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
        }
    }

    /// Bytes of one row of `cols` weights (`cols` must be a multiple of the block length).
    #[inline]
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / self.block_len() * self.block_bytes()
    }

    /// Whether the kernels pair this format with 256-value activation blocks.
    #[inline]
    pub fn is_k_quant(self) -> bool {
        matches!(self, Self::Q4K)
    }

    /// Bytes of a block's header after its f16 scale: Q4_1's minimum, Q5_0's high bits.
    #[inline]
    fn extra_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 2,
            Self::Q5_0 => 4,
            _ => 0,
        }
    }

    /// A row as the kernels read it: planes for the 32-value formats (see the module
    /// documentation), the file's blocks for K-quants.
    pub fn to_planar(self, row: &[u8]) -> Vec<u8> {
        let mut out = vec![0; row.len()];
        self.write_planar(row, &mut out);
        out
    }

    /// [`Format::to_planar`] into `out`, which is as long as `row`.
    pub fn write_planar(self, row: &[u8], out: &mut [u8]) {
        if self.is_k_quant() {
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
            e[extra * b..extra * (b + 1)].copy_from_slice(&blk[2..2 + extra]);
            qs[quants * b..quants * (b + 1)].copy_from_slice(&blk[2 + extra..]);
        }
    }

    /// The planes of a planar row of a 32-value format.
    #[inline]
    pub fn planes(self, row: &[u8]) -> Planes<'_> {
        let nb = row.len() / self.block_bytes();
        let (d, rest) = row.split_at(2 * nb);
        let (extra, qs) = rest.split_at(self.extra_bytes() * nb);
        Planes { nb, d, extra, qs }
    }

    /// Writes the values of `row` (a row as [`Format::to_planar`] makes it) into `out`.
    pub fn dequantize(self, row: &[u8], out: &mut [f32]) {
        if !self.is_k_quant() {
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
                    Self::Q5_0 => {
                        let qh = p.qh(b);
                        for (j, &q) in p.qs(b, 16).iter().enumerate() {
                            let lo = (q & 0xF) as u32 | ((qh >> j) & 1) << 4;
                            let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
                            y[j] = d * (lo as f32 - 16.0);
                            y[j + 16] = d * (hi as f32 - 16.0);
                        }
                    }
                    Self::Q8_0 => {
                        for (y, &q) in y.iter_mut().zip(p.qs(b, 32)) {
                            *y = d * (q as i8) as f32;
                        }
                    }
                    Self::Q4K => unreachable!("K-quants keep the file's layout"),
                }
            }
            return;
        }
        let blocks = row.chunks_exact(self.block_bytes());
        for (b, y) in blocks.zip(out.chunks_exact_mut(self.block_len())) {
            match self {
                Self::Q4K => {
                    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                    let scales: &[u8; 12] = b[4..16].try_into().expect("12 scale bytes");
                    for (j, qs) in b[16..144].chunks_exact(32).enumerate() {
                        let (sc1, m1) = k4_scale_min(2 * j, scales);
                        let (sc2, m2) = k4_scale_min(2 * j + 1, scales);
                        let y = &mut y[64 * j..64 * j + 64];
                        for (l, &q) in qs.iter().enumerate() {
                            y[l] = d * sc1 as f32 * (q & 0xF) as f32 - dmin * m1 as f32;
                            y[l + 32] = d * sc2 as f32 * (q >> 4) as f32 - dmin * m2 as f32;
                        }
                    }
                }
                _ => unreachable!("32-value formats are planar"),
            }
        }
    }
}

/// A planar row of a 32-value format: `d` holds each block's f16 scale, `extra` each
/// block's minimum (Q4_1, f16) or high bits (Q5_0, u32), `qs` the packed integers.
#[derive(Clone, Copy)]
pub struct Planes<'a> {
    pub nb: usize,
    pub d: &'a [u8],
    pub extra: &'a [u8],
    pub qs: &'a [u8],
}

impl Planes<'_> {
    #[inline(always)]
    pub fn d(&self, b: usize) -> f32 {
        f16_at(self.d, 2 * b)
    }

    /// Q4_1's minimum of block `b`.
    #[inline(always)]
    pub fn m(&self, b: usize) -> f32 {
        f16_at(self.extra, 2 * b)
    }

    /// Q5_0's fifth bits of block `b`.
    #[inline(always)]
    pub fn qh(&self, b: usize) -> u32 {
        let e = &self.extra[4 * b..4 * b + 4];
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
