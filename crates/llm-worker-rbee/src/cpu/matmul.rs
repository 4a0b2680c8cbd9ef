//! Quantized matrices times batches of activations, spread over a thread pool.
//!
//! Matrices that read the same input (Q, K and V; gate and up) are multiplied as one group so
//! each layer needs few fork-joins. Work is split by output rows; with several tokens each
//! weight row is read once and multiplied by every token while it sits in L1.

use std::sync::Arc;

use rayon::prelude::*;

use super::activation::Quantized;
use super::arena::{Arena, Region};
use super::format::Format;
use super::kernels::{Kernels, prefetch};

/// A weight matrix in its file format: `rows` rows of `cols` weights.
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

    /// Reads a matrix into `arena`: `read` fills its bytes as stored in the file, which are
    /// then rearranged for the kernels ([`Format::to_planar`]). `None` when the arena is full.
    pub fn read<E>(
        arena: &Arc<Arena>,
        format: Format,
        rows: usize,
        cols: usize,
        read: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Option<Result<Self, E>> {
        assert!(Self::fits(format, cols), "rows of whole blocks");
        let row_bytes = format.row_bytes(cols);
        let data = arena.fill(rows * row_bytes, |data| {
            read(data)?;
            let mut scratch = vec![0u8; row_bytes];
            for row in data.chunks_exact_mut(row_bytes) {
                scratch.copy_from_slice(row);
                format.write_planar(&scratch, row);
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

    pub fn row(&self, r: usize) -> &[u8] {
        let n = self.format.row_bytes(self.cols);
        &self.data[r * n..(r + 1) * n]
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

/// Output rows per task: small enough to balance two to a few dozen threads, large enough
/// that a task outlasts its scheduling.
const ROWS_PER_TASK: usize = 32;

/// Rows are read in memory order; while one is multiplied, the one this many rows further
/// is fetched, so the memory latency overlaps the arithmetic (matrices lie one after another
/// in the arena, so the last rows of one fetch the first of the next). Decode tokens/s on
/// SmolLM2 Q4_1: +35% at 4 rows ahead, less at 2, no better at 8 or 16.
const PREFETCH_ROWS: usize = 4;

fn prefetch_ahead(row: &[u8]) {
    prefetch(
        row.as_ptr().wrapping_add(PREFETCH_ROWS * row.len()),
        row.len(),
    );
}

/// `out[t][r] = group[r] · x[t]`, where the group's rows are numbered consecutively and
/// `out` holds `x.tokens` rows of the group's total row count.
pub fn matmul(kernels: Kernels, group: &[&QMatrix], x: &Quantized, out: &mut [f32]) {
    let rows: usize = group.iter().map(|m| m.rows).sum();
    assert!(group.iter().all(|m| m.cols == x.cols) && out.len() == rows * x.tokens);
    let locate = |r: usize| {
        let mut r = r;
        for m in group {
            if r < m.rows {
                return (*m, r);
            }
            r -= m.rows;
        }
        unreachable!("row inside the group")
    };
    if x.tokens == 1 {
        out.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, out)| {
                for (i, o) in out.iter_mut().enumerate() {
                    let (m, r) = locate(task * ROWS_PER_TASK + i);
                    prefetch_ahead(m.row(r));
                    *o = kernels.dot(m.format, m.row(r), x, 0);
                }
            });
        return;
    }
    // Four tokens at a time; two or three left over go through the four-token kernel too
    // (repeating the last), which costs less than one at a time.
    let tokens = x.tokens;
    let single = if tokens % 4 == 1 { tokens - 1 } else { tokens };
    let quads: Vec<_> = (0..single)
        .step_by(4)
        .map(|t| x.quad(std::array::from_fn(|j| (t + j).min(tokens - 1))))
        .collect();
    // Each task owns its rows' stretch of every token's output row.
    let mut tasks: Vec<Vec<&mut [f32]>> = (0..rows.div_ceil(ROWS_PER_TASK))
        .map(|_| Vec::with_capacity(tokens))
        .collect();
    for token_out in out.chunks_exact_mut(rows) {
        for (task, stretch) in tasks.iter_mut().zip(token_out.chunks_mut(ROWS_PER_TASK)) {
            task.push(stretch);
        }
    }
    tasks
        .into_par_iter()
        .enumerate()
        .for_each(|(task, mut outs)| {
            for i in 0..outs[0].len() {
                let (m, r) = locate(task * ROWS_PER_TASK + i);
                let row = m.row(r);
                prefetch_ahead(row);
                for (quad, outs) in quads.iter().zip(outs.chunks_mut(4)) {
                    let v = kernels.dot_x4(m.format, row, quad);
                    for (out, v) in outs.iter_mut().zip(v) {
                        out[i] = v;
                    }
                }
                if single < tokens {
                    outs[single][i] = kernels.dot(m.format, row, x, single);
                }
            }
        });
}
