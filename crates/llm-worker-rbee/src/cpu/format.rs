//! The GGUF weight formats the CPU path computes with, their block layouts, and a plain
//! dequantizer per format (used for embedding rows and as the reference in tests).
//!
//! Every format stores a row as consecutive blocks, each a little-endian header (f16 scales)
//! followed by packed integers, exactly as in the file: weights are used in place, never
//! widened to f32.

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

    pub fn block_len(self) -> usize {
        match self {
            Self::Q4K => QK_K,
            _ => QK,
        }
    }

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
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / self.block_len() * self.block_bytes()
    }

    /// Whether the kernels pair this format with 256-value activation blocks.
    pub fn is_k_quant(self) -> bool {
        matches!(self, Self::Q4K)
    }

    /// Writes the values of `row` (whole blocks of this format) into `out`.
    pub fn dequantize(self, row: &[u8], out: &mut [f32]) {
        let blocks = row.chunks_exact(self.block_bytes());
        for (b, y) in blocks.zip(out.chunks_exact_mut(self.block_len())) {
            match self {
                Self::Q4_0 => {
                    let d = f16_at(b, 0);
                    for (j, &q) in b[2..18].iter().enumerate() {
                        y[j] = d * ((q & 0xF) as f32 - 8.0);
                        y[j + 16] = d * ((q >> 4) as f32 - 8.0);
                    }
                }
                Self::Q4_1 => {
                    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                    for (j, &q) in b[4..20].iter().enumerate() {
                        y[j] = d * (q & 0xF) as f32 + m;
                        y[j + 16] = d * (q >> 4) as f32 + m;
                    }
                }
                Self::Q5_0 => {
                    let d = f16_at(b, 0);
                    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                    for (j, &q) in b[6..22].iter().enumerate() {
                        let lo = (q & 0xF) as u32 | ((qh >> j) & 1) << 4;
                        let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
                        y[j] = d * (lo as f32 - 16.0);
                        y[j + 16] = d * (hi as f32 - 16.0);
                    }
                }
                Self::Q8_0 => {
                    let d = f16_at(b, 0);
                    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
                        *y = d * (q as i8) as f32;
                    }
                }
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
            }
        }
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
