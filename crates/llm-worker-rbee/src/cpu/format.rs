//! The GGUF weight formats the CPU path computes with, their block layouts, and a plain
//! dequantizer per format (used for embedding rows and as the reference in tests).
//!
//! The file stores a row as consecutive blocks, each a little-endian header (f16 scales)
//! followed by packed integers. At load, matrices of the 32-value formats are rearranged into
//! tiles of eight rows ([`TILE_ROWS`]): for each block column, the eight rows' scales, then
//! their minimums and high bits where the format has them, then their packed integers
//! interleaved four bytes at a time, so that one 32-byte load holds four bytes of each row.
//! A kernel multiplies such a vector by one token's four activation bytes broadcast to all
//! eight lanes and gets the partial sums of eight rows at once: no horizontal sums, and each
//! unpacked weight serves every token of a prompt. The bytes are the same, only their order
//! changes: weights are never widened to f32. The K-quants keep the file's layout (their
//! scales are shared by 256 values), and so do float matrices.

use candle_core::quantized::GgmlDType;
use half::f16;

/// Weights per block of the 32-value formats and of the activation blocks they pair with.
pub const QK: usize = 32;
/// Weights per super-block of the K-quants.
pub const QK_K: usize = 256;
/// Rows per tile of the 32-value formats.
pub const TILE_ROWS: usize = 8;

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

    /// Whether matrices are stored in tiles of [`TILE_ROWS`] rows ([`Format::write_tile`]):
    /// the 32-value formats.
    #[inline]
    pub fn is_tiled(self) -> bool {
        self.operand() == Operand::Q8
    }

    /// Where the parts of one block column of a tile start: the eight minimums (f16; Q4_1,
    /// Q5_1), the eight high-bit words (u32; Q5_0, Q5_1), the packed integers (vector `k` of
    /// 32 bytes holds bytes `4k..4k + 4` of each row's block). The eight f16 scales come first.
    #[inline]
    pub fn tile_offsets(self) -> TileOffsets {
        let (m, qh) = match self {
            Self::Q4_1 => (2, 0),
            Self::Q5_0 => (0, 4),
            Self::Q5_1 => (2, 4),
            _ => (0, 0),
        };
        let m_at = 2 * TILE_ROWS;
        let qh_at = m_at + m * TILE_ROWS;
        TileOffsets {
            m_at,
            qh_at,
            qs_at: qh_at + qh * TILE_ROWS,
        }
    }

    /// Bytes of a block's packed integers (16 for four- and five-bit values, 32 for Q8_0).
    #[inline]
    fn quant_bytes(self) -> usize {
        if self == Self::Q8_0 { 32 } else { 16 }
    }

    /// Rearranges `rows` — [`TILE_ROWS`] consecutive rows as the file stores them — into one
    /// tile in `out` (as long as `rows`). Formats that are not tiled are copied as they are.
    pub fn write_tile(self, rows: &[u8], out: &mut [u8]) {
        assert_eq!(rows.len(), out.len());
        if !self.is_tiled() {
            out.copy_from_slice(rows);
            return;
        }
        let bytes = self.block_bytes();
        let row_bytes = rows.len() / TILE_ROWS;
        let nb = row_bytes / bytes;
        let at = self.tile_offsets();
        let header = bytes - self.quant_bytes();
        for (b, tile) in out.chunks_exact_mut(TILE_ROWS * bytes).enumerate().take(nb) {
            for l in 0..TILE_ROWS {
                let blk = &rows[l * row_bytes + b * bytes..l * row_bytes + (b + 1) * bytes];
                tile[2 * l..2 * l + 2].copy_from_slice(&blk[..2]);
                let mut rest = &blk[2..header];
                if at.qh_at > at.m_at {
                    tile[at.m_at + 2 * l..at.m_at + 2 * l + 2].copy_from_slice(&rest[..2]);
                    rest = &rest[2..];
                }
                if at.qs_at > at.qh_at {
                    tile[at.qh_at + 4 * l..at.qh_at + 4 * l + 4].copy_from_slice(&rest[..4]);
                }
                for (k, four) in blk[header..].chunks_exact(4).enumerate() {
                    let to = at.qs_at + 32 * k + 4 * l;
                    tile[to..to + 4].copy_from_slice(four);
                }
            }
        }
    }

    /// Writes the values of row `lane` of `tile` (as [`Format::write_tile`] makes it) into
    /// `out`.
    pub fn dequantize_tile_row(self, tile: &[u8], lane: usize, out: &mut [f32]) {
        let t = Tile::new(self, tile);
        for (b, y) in out.chunks_exact_mut(QK).enumerate().take(t.nb) {
            let (d, m) = (t.d(b, lane), t.m(b, lane));
            for (j, y) in y.iter_mut().enumerate() {
                *y = d * t.value(b, lane, j) as f32 + m;
            }
        }
    }

    /// Writes the values of `row`, as the file stores it, into `out` (formats that are not
    /// tiled).
    pub fn dequantize(self, row: &[u8], out: &mut [f32]) {
        assert!(
            !self.is_tiled(),
            "rows of the 32-value formats live in tiles"
        );
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
                _ => unreachable!("the 32-value formats live in tiles"),
            }
        }
    }
}

/// Where the parts of a tile's block column start ([`Format::tile_offsets`]).
#[derive(Debug, Clone, Copy)]
pub struct TileOffsets {
    pub m_at: usize,
    pub qh_at: usize,
    pub qs_at: usize,
}

/// A tile of a 32-value format read value by value: the portable kernel and the dequantizer.
#[derive(Clone, Copy)]
pub struct Tile<'a> {
    pub format: Format,
    pub nb: usize,
    bytes: &'a [u8],
    at: TileOffsets,
}

impl<'a> Tile<'a> {
    pub fn new(format: Format, bytes: &'a [u8]) -> Self {
        let block = TILE_ROWS * format.block_bytes();
        assert!(format.is_tiled() && bytes.len().is_multiple_of(block));
        Self {
            format,
            nb: bytes.len() / block,
            bytes,
            at: format.tile_offsets(),
        }
    }

    fn column(&self, b: usize) -> &'a [u8] {
        let block = TILE_ROWS * self.format.block_bytes();
        &self.bytes[b * block..(b + 1) * block]
    }

    /// The scale of row `lane` in block `b`.
    #[inline]
    pub fn d(&self, b: usize, lane: usize) -> f32 {
        f16_at(self.column(b), 2 * lane)
    }

    /// The minimum of row `lane` in block `b` (0 for formats without one).
    #[inline]
    pub fn m(&self, b: usize, lane: usize) -> f32 {
        match self.format {
            Format::Q4_1 | Format::Q5_1 => f16_at(self.column(b), self.at.m_at + 2 * lane),
            _ => 0.0,
        }
    }

    /// The integer `j` (0..32) of row `lane` in block `b`, such that the weight is
    /// `d · value + m`.
    #[inline]
    pub fn value(&self, b: usize, lane: usize, j: usize) -> i32 {
        let c = self.column(b);
        if self.format == Format::Q8_0 {
            return c[self.at.qs_at + 32 * (j / 4) + 4 * lane + j % 4] as i8 as i32;
        }
        let i = j % 16;
        let byte = c[self.at.qs_at + 32 * (i / 4) + 4 * lane + i % 4];
        let nibble = i32::from(if j < 16 { byte & 0xF } else { byte >> 4 });
        let high = match self.format {
            Format::Q5_0 | Format::Q5_1 => {
                let at = self.at.qh_at + 4 * lane;
                let qh = u32::from_le_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]);
                (((qh >> j) & 1) << 4) as i32
            }
            _ => 0,
        };
        let offset = match self.format {
            Format::Q4_0 => 8,
            Format::Q5_0 => 16,
            _ => 0,
        };
        (nibble | high) - offset
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
