//! Quantized dot products with the instruction set picked once at run time.
//!
//! Each kernel multiplies one row of weights, in its file format, by one token's 8-bit
//! activations ([`crate::cpu::activation`]). The portable kernels are the definition; the
//! SIMD ones must agree with them and with plain f32 arithmetic on the dequantized values
//! (see the tests below).

mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::activation::{Quad, Quantized};
use super::format::{Format, Operand};

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

    /// `row · x[token]`, where `row` holds one row of weights in `format`.
    #[inline]
    pub fn dot(&self, format: Format, row: &[u8], x: &Quantized, token: usize) -> f32 {
        match format.operand() {
            Operand::Q8K => {
                let a = x.q8k(token).expect(K_BLOCKS);
                dispatch!(
                    self.isa,
                    portable::dot_q8k(format, row, a),
                    dot_q8k(format, row, a)
                )
            }
            Operand::F32 => {
                let a = x.floats(token).expect(FLOATS);
                dispatch!(
                    self.isa,
                    portable::dot_f32(format, row, a),
                    dot_f32(format, row, a)
                )
            }
            Operand::Q8 => {
                let a = x.q8(token);
                dispatch!(
                    self.isa,
                    portable::dot_q8(format, row, a),
                    dot_q8(format, row, a)
                )
            }
        }
    }

    /// `[row · quad[0], .., row · quad[3]]`: the weights are unpacked once for four tokens,
    /// which is what makes prompt processing faster than token-by-token decoding.
    #[inline]
    pub fn dot_x4(&self, format: Format, row: &[u8], quad: &Quad) -> [f32; 4] {
        match format.operand() {
            Operand::Q8K => {
                let a = quad.q8k.expect(K_BLOCKS);
                dispatch!(
                    self.isa,
                    a.map(|a| portable::dot_q8k(format, row, a)),
                    dot_q8k_x4(format, row, a)
                )
            }
            Operand::F32 => {
                let a = quad.f32.expect(FLOATS);
                dispatch!(
                    self.isa,
                    a.map(|a| portable::dot_f32(format, row, a)),
                    dot_f32_x4(format, row, a)
                )
            }
            Operand::Q8 => {
                let a = quad.q8;
                dispatch!(
                    self.isa,
                    a.map(|a| portable::dot_q8(format, row, a)),
                    dot_q8_x4(format, row, a)
                )
            }
        }
    }
}

const K_BLOCKS: &str = "activations for K-quants are quantized in 256-value blocks";
const FLOATS: &str = "activations for float weights are kept as floats";

/// Asks the CPU to start loading the `len` bytes at `p` into cache. Any address is allowed:
/// a prefetch never faults.
#[inline(always)]
pub fn prefetch(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch(p, len);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

#[cfg(test)]
mod tests;
