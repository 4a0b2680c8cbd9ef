//! Quantized dot products with the instruction set picked once at run time.
//!
//! Each kernel multiplies a run of eight rows of weights — a tile of a 32-value format, or
//! eight rows of a K-quant or float format as the file stores them — by one or four tokens'
//! 8-bit activations ([`crate::cpu::activation`]). The portable kernels are the definition;
//! the SIMD ones must agree with them and with plain f32 arithmetic on the dequantized values
//! (see the tests below).

mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::activation::Quantized;
use super::format::{Format, Operand, TILE_ROWS};

/// Evaluates `$portable` for the portable kernels, else calls `$kernel` from the module of
/// the instruction set.
macro_rules! dispatch {
    ($isa:expr, $portable:expr, $kernel:ident($($arg:expr),*)) => {
        match $isa {
            Isa::Portable => $portable,
            // SAFETY: an `Isa` other than `Portable` is only constructed after detecting the
            // features its kernels need (`supported`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                #[allow(unsafe_code)]
                unsafe {
                    x86::avx2::$kernel($($arg),*)
                }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => {
                #[allow(unsafe_code)]
                unsafe {
                    x86::avx_vnni::$kernel($($arg),*)
                }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                #[allow(unsafe_code)]
                unsafe {
                    x86::avx512_vnni::$kernel($($arg),*)
                }
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 VNNI with AVX-512 VL: the same fused byte products on 256-bit registers in
    /// the EVEX encoding (AMD Zen 4 and later, Intel Ice Lake and later server parts), for
    /// CPUs that lack the VEX-encoded AVX-VNNI.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
}

/// A kernel instruction set asked for by name that this CPU cannot run.
#[derive(Debug, thiserror::Error)]
#[error("CPU kernels `{name}` are not available on this CPU (it runs: {supported})")]
pub struct UnknownKernels {
    name: String,
    supported: String,
}

/// The dot-product kernels for this CPU.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    isa: Isa,
}

impl Kernels {
    /// The fastest kernels this CPU supports.
    pub fn detect() -> Self {
        Self::best_of(&Self::supported())
    }

    /// Every instruction set this CPU can run, the portable one first and the preferred one
    /// last (AVX-VNNI over AVX-512 VNNI where both exist: the same operations, shorter code).
    pub fn supported() -> Vec<Isa> {
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                isas.push(Isa::Avx2);
                if has!("avx512vnni") && has!("avx512vl") {
                    isas.push(Isa::Avx512Vnni);
                }
                if has!("avxvnni") {
                    isas.push(Isa::AvxVnni);
                }
            }
        }
        isas
    }

    fn best_of(isas: &[Isa]) -> Self {
        Self {
            isa: *isas.last().unwrap_or(&Isa::Portable),
        }
    }

    /// The kernels for `isa`, if this CPU supports it.
    pub fn for_isa(isa: Isa) -> Option<Self> {
        Self::supported().contains(&isa).then_some(Self { isa })
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The kernels of the instruction set called `name` ([`Kernels::name`]), if this CPU
    /// supports it.
    pub fn named(name: &str) -> Result<Self, UnknownKernels> {
        Self::supported()
            .into_iter()
            .map(|isa| Self { isa })
            .find(|k| k.name() == name)
            .ok_or_else(|| UnknownKernels {
                name: name.to_owned(),
                supported: (Self::supported().into_iter())
                    .map(|isa| Self { isa }.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn name(&self) -> &'static str {
        match self.isa {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => "avx512-vnni",
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => "avx-vnni",
        }
    }

    /// Attention scores of a group of queries (the query heads that share one key/value
    /// head): `q` holds `n` query vectors one after another, and `out` gets `n` rows of
    /// `keys.rows` scores, `out[g][i] = scale · (q[g] · key i)`. Each key is read once for
    /// the whole group.
    pub fn kv_scores(&self, q: &[f32], keys: KvRows, scale: f32, out: &mut [f32]) {
        dispatch!(
            self.isa,
            portable::kv_scores(q, keys, scale, out),
            kv_scores(q, keys, scale, out)
        )
    }

    /// Attended values of a group of queries: `weights` holds `n` rows of `values.rows`
    /// weights and `out` `n` vectors, `out[g] += Σ weights[g][i] · value i`. Each value is
    /// read once for the whole group.
    pub fn kv_add_values(&self, weights: &[f32], values: KvRows, out: &mut [f32]) {
        dispatch!(
            self.isa,
            portable::kv_add_values(weights, values, out),
            kv_add_values(weights, values, out)
        )
    }

    /// `out[t][l] = row l of run · x[tokens[t]]` for `N` (1 or 4) tokens, where `run` holds
    /// eight rows of weights in `format` ([`super::matmul::QMatrix::run`]).
    #[inline]
    pub fn run<const N: usize>(
        &self,
        format: Format,
        run: &[u8],
        x: &Quantized,
        tokens: [usize; N],
    ) -> [[f32; TILE_ROWS]; N] {
        match format.operand() {
            Operand::Q8 => {
                let a = tokens.map(|t| x.q8(t));
                dispatch!(
                    self.isa,
                    portable::tile_q8(format, run, a),
                    tile_q8(format, run, a)
                )
            }
            Operand::Q8K => {
                let a = tokens.map(|t| x.q8k(t).expect(K_BLOCKS));
                rows(run, |row| {
                    dispatch!(
                        self.isa,
                        a.map(|a| portable::dot_q8k(format, row, a)),
                        dot_q8k(format, row, a)
                    )
                })
            }
            Operand::F32 => {
                let a = tokens.map(|t| x.floats(t).expect(FLOATS));
                rows(run, |row| {
                    dispatch!(
                        self.isa,
                        a.map(|a| portable::dot_f32(format, row, a)),
                        dot_f32(format, row, a)
                    )
                })
            }
        }
    }
}

/// Values per scale in the KV cache's rows ([`crate::cpu::kv`]) that the attention kernels
/// take.
pub const KV_RUN: usize = 32;

/// One head's keys or values at consecutive positions of a KV cache, as the attention
/// kernels read them: row `i` is `qs[i * stride..][..head_dim]` (signed bytes in runs of
/// [`KV_RUN`]) with its runs' scales at `scales[i * scale_stride..]`.
#[derive(Debug, Clone, Copy)]
pub struct KvRows<'a> {
    pub qs: &'a [i8],
    pub stride: usize,
    pub scales: &'a [f32],
    pub scale_stride: usize,
    pub rows: usize,
}

impl KvRows<'_> {
    /// Panics unless every row of `head_dim` values (whole runs) lies inside the slices.
    fn check(&self, head_dim: usize) {
        assert!(head_dim.is_multiple_of(KV_RUN), "heads of whole runs");
        if let Some(last) = self.rows.checked_sub(1) {
            assert!(self.qs.len() >= last * self.stride + head_dim);
            assert!(self.scales.len() >= last * self.scale_stride + head_dim / KV_RUN);
        }
    }

    /// The head size of a group of queries whose vectors take `vectors` values and whose
    /// scores or weights take `scores` (a row of [`KvRows::rows`] per query), after the
    /// checks of [`KvRows::check`]; `None` when there are no rows (nothing to compute).
    fn group_check(&self, vectors: usize, scores: usize) -> Option<usize> {
        if self.rows == 0 {
            return None;
        }
        assert!(
            scores > 0 && scores.is_multiple_of(self.rows),
            "a row per query"
        );
        let queries = scores / self.rows;
        assert!(vectors.is_multiple_of(queries), "a vector per query");
        let head_dim = vectors / queries;
        self.check(head_dim);
        Some(head_dim)
    }

    /// Row `i`'s values and scales.
    fn row(&self, i: usize, head_dim: usize) -> (&[i8], &[f32]) {
        (
            &self.qs[i * self.stride..][..head_dim],
            &self.scales[i * self.scale_stride..][..head_dim / KV_RUN],
        )
    }
}

/// Applies `dot` (one row times `N` tokens) to each row of a run of rows as the file stores
/// them.
#[inline]
fn rows<const N: usize>(
    run: &[u8],
    mut dot: impl FnMut(&[u8]) -> [f32; N],
) -> [[f32; TILE_ROWS]; N] {
    let mut out = [[0f32; TILE_ROWS]; N];
    for (l, row) in run.chunks_exact(run.len() / TILE_ROWS).enumerate() {
        for (out, v) in out.iter_mut().zip(dot(row)) {
            out[l] = v;
        }
    }
    out
}

const K_BLOCKS: &str = "activations for K-quants are quantized in 256-value blocks";
const FLOATS: &str = "activations for float weights are kept as floats";

#[cfg(test)]
mod tests;
