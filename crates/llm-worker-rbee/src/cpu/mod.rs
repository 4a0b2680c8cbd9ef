//! The CPU inference path: the model computed on plain buffers with this crate's own
//! quantized kernels (runtime-dispatched SIMD), used whenever the backend is the CPU and
//! every weight of the model is in a format the kernels cover. Other models, and GPU
//! backends, run on Candle ([`crate::llama`]).

pub mod activation;
pub mod arena;
pub mod format;
pub mod kernels;
pub mod kv;
pub mod matmul;
pub mod model;
pub mod team;

/// How the CPU path computes: on how many threads, with which kernels.
#[derive(Debug, Clone, Copy)]
pub struct CpuConfig {
    pub threads: usize,
    pub kernels: kernels::Kernels,
}

impl CpuConfig {
    /// `threads` threads with the fastest kernels this CPU supports.
    pub fn best(threads: usize) -> Self {
        Self {
            threads,
            kernels: kernels::Kernels::detect(),
        }
    }
}
