//! Quantized matrices times batches of activations, spread over a team of threads.
//!
//! Matrices that read the same input (Q, K and V; gate and up) are multiplied as one group so
//! each layer needs few fork-joins. Work is split into runs of eight rows — a tile of the
//! 32-value formats ([`super::format`]), eight single rows otherwise — and with several
//! tokens each run is read once and multiplied by every token while it sits in L1.

use std::sync::Arc;

use super::activation::Quantized;
use super::arena::{Arena, Region};
use super::format::{Format, TILE_ROWS};
use super::kernels::Kernels;
use super::team::Team;

/// A weight matrix in its file format: `rows` rows of `cols` weights, stored in runs of
/// [`TILE_ROWS`] rows (the last run padded with zero rows).
pub struct QMatrix {
    pub format: Format,
    pub rows: usize,
    pub cols: usize,
    data: Region,
}

impl QMatrix {
    /// Whether rows of `cols` weights in `format` are whole blocks.
    pub fn fits(format: Format, cols: usize) -> bool {
        cols.is_multiple_of(format.block_len())
    }

    /// Bytes `arena` needs for a matrix of `rows` rows of `bytes_per_row` bytes.
    pub fn stored_bytes(rows: usize, bytes_per_row: usize) -> usize {
        rows.next_multiple_of(TILE_ROWS) * bytes_per_row
    }

    /// Reads a matrix into `arena`: `read` fills its bytes as stored in the file, which are
    /// then rearranged for the kernels ([`Format::write_tile`]). `None` when the arena is full.
    pub fn read<E>(
        arena: &Arc<Arena>,
        format: Format,
        rows: usize,
        cols: usize,
        read: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Option<Result<Self, E>> {
        assert!(Self::fits(format, cols), "rows of whole blocks");
        let row_bytes = format.row_bytes(cols);
        let data = arena.fill(Self::stored_bytes(rows, row_bytes), |data| {
            // The padding rows stay zero: zero scales make zero weights.
            data[rows * row_bytes..].fill(0);
            read(&mut data[..rows * row_bytes])?;
            if format.is_tiled() {
                let mut scratch = vec![0u8; TILE_ROWS * row_bytes];
                for tile in data.chunks_exact_mut(TILE_ROWS * row_bytes) {
                    scratch.copy_from_slice(tile);
                    format.write_tile(&scratch, tile);
                }
            }
            Ok(())
        })?;
        Some(data.map(|data| Self {
            format,
            rows,
            cols,
            data,
        }))
    }

    fn run_bytes(&self) -> usize {
        TILE_ROWS * self.format.row_bytes(self.cols)
    }

    /// Runs of [`TILE_ROWS`] rows.
    pub fn runs(&self) -> usize {
        self.rows.div_ceil(TILE_ROWS)
    }

    /// The bytes of run `g`: rows `8 g..8 g + 8`.
    pub fn run(&self, g: usize) -> &[u8] {
        let n = self.run_bytes();
        &self.data[g * n..(g + 1) * n]
    }

    /// Writes the weights of row `r` into `out`.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let run = self.run(r / TILE_ROWS);
        if self.format.is_tiled() {
            self.format.dequantize_tile_row(run, r % TILE_ROWS, out);
        } else {
            let n = self.format.row_bytes(self.cols);
            let at = (r % TILE_ROWS) * n;
            self.format.dequantize(&run[at..at + n], out);
        }
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

/// Runs of eight rows per task: small enough to balance two to a few dozen threads, large
/// enough that a task outlasts its scheduling.
const RUNS_PER_TASK: usize = 4;

/// `out[t][r] = group[r] · x[t]`, where the group's rows are numbered consecutively and
/// `out` holds `x.tokens` rows of the group's total row count.
pub fn matmul(team: &Team, kernels: Kernels, group: &[&QMatrix], x: &Quantized, out: &mut [f32]) {
    let rows: usize = group.iter().map(|m| m.rows).sum();
    assert!(group.iter().all(|m| m.cols == x.cols) && out.len() == rows * x.tokens);
    // Tokens in fours; two or three left over go through the four-token kernel too
    // (repeating the last), which costs less than one at a time.
    let tokens = x.tokens;
    let single = if tokens % 4 == 1 { tokens - 1 } else { tokens };
    let quads: Vec<[usize; 4]> = (0..single)
        .step_by(4)
        .map(|t| std::array::from_fn(|j| (t + j).min(tokens - 1)))
        .collect();
    // Each task owns a stretch of runs of one matrix, and that stretch of every token's
    // output row.
    let mut tasks: Vec<(&QMatrix, usize, Vec<&mut [f32]>)> = Vec::new();
    let mut rests: Vec<&mut [f32]> = out.chunks_exact_mut(rows).collect();
    for m in group {
        for first in (0..m.runs()).step_by(RUNS_PER_TASK) {
            let len = (TILE_ROWS * RUNS_PER_TASK).min(m.rows - TILE_ROWS * first);
            let outs = rests
                .iter_mut()
                .map(|rest| {
                    let (mine, after) = std::mem::take(rest).split_at_mut(len);
                    *rest = after;
                    mine
                })
                .collect();
            tasks.push((*m, first, outs));
        }
    }
    team.for_each(tasks, |(m, first, mut outs)| {
        let runs = first..(first + RUNS_PER_TASK).min(m.runs());
        for (i, g) in runs.enumerate() {
            let run = m.run(g);
            // Runs lie one after another in the arena (and matrices too), which the CPU's
            // own prefetchers follow: prefetching each next run in software made decoding
            // 1.6x slower on an AMD EPYC (Zen 4) and prompts no faster (BENCHMARKS.md).
            let rows = (8 * i)..(8 * i + TILE_ROWS).min(outs[0].len());
            for (quad, outs) in quads.iter().zip(outs.chunks_mut(4)) {
                let v = kernels.run(m.format, run, x, *quad);
                for (out, v) in outs.iter_mut().zip(v) {
                    out[rows.clone()].copy_from_slice(&v[..rows.len()]);
                }
            }
            if single < tokens {
                let [v] = kernels.run(m.format, run, x, [single]);
                outs[single][rows.clone()].copy_from_slice(&v[..rows.len()]);
            }
        }
    });
}
