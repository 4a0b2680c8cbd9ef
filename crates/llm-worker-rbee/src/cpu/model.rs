//! The llama-family transformer on the CPU, computed on plain buffers with this crate's
//! quantized kernels.
//!
//! One forward pass makes five fork-joins per layer (QKV, attention, output projection,
//! gate+up, down); between them, norms, SiLU and quantizing activations run per token, on
//! the pool in tasks of four tokens for a prompt and inline for a decoding step; rotary
//! embedding and residuals are short serial loops. Keys and values are cached in 8 bits
//! ([`super::kv`]). The arithmetic mirrors [`crate::llama::Llama`] (same activation
//! rounding, same order of normalisation and rotation), which serves as its reference in the
//! tests.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::TensorInfo;
use rayon::prelude::*;

use super::activation::{Quantized, TOKENS_PER_TASK};
use super::arena::{self, Arena};
use super::format::Format;
use super::kernels::Kernels;
use super::kv::KvCache;
use super::matmul::{QMatrix, matmul};
use crate::llama::{LlamaConfig, LoadError, LoadStep};
use crate::model_file::ModelFile;

struct Block {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

/// The weights of a loaded model; immutable and shared by every slot.
pub struct Llama {
    pub config: LlamaConfig,
    kernels: Kernels,
    pool: rayon::ThreadPool,
    embedding: QMatrix,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    /// `None` when the output head is tied to the embedding table.
    output: Option<QMatrix>,
    inv_freq: Vec<f32>,
}

const MATRICES: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

impl Llama {
    /// Why `file` cannot run on this path (a weight format without kernels here), if so.
    pub fn unsupported_reason(file: &ModelFile) -> Option<String> {
        for (name, info) in &file.content.tensor_infos {
            let dims = info.shape.dims();
            let matrix = dims.len() == 2
                && (MATRICES
                    .iter()
                    .any(|m| name.ends_with(&format!("{m}.weight")))
                    || name == "token_embd.weight"
                    || name == "output.weight");
            let ok = if matrix {
                Format::from_ggml(info.ggml_dtype)
                    .is_some_and(|f| dims[1].is_multiple_of(f.block_len()))
            } else {
                info.ggml_dtype == GgmlDType::F32
            };
            if !ok {
                return Some(format!("tensor {name} is {:?}", info.ggml_dtype));
            }
        }
        None
    }

    /// Loads every tensor of `file`, one block at a time, calling `progress` after each;
    /// the matrix products run on `threads` threads.
    pub fn load(
        file: &ModelFile,
        threads: usize,
        mut progress: impl FnMut(LoadStep),
    ) -> Result<Self, LoadError> {
        let config = LlamaConfig::from_file(file)?;
        let mut t = Tensors::open(file)?;
        let hidden = config.hidden;
        let q_dim = config.n_head * config.head_dim;
        let embedding = t.matrix("token_embd.weight", hidden)?;
        let mut bytes_loaded = embedding.bytes() as u64;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let mut m = |suffix: &str, cols| t.matrix(&format!("blk.{i}.{suffix}.weight"), cols);
            let (wq, wk, wv, wo) = (
                m("attn_q", hidden)?,
                m("attn_k", hidden)?,
                m("attn_v", hidden)?,
                m("attn_output", q_dim)?,
            );
            let (gate, up) = (m("ffn_gate", hidden)?, m("ffn_up", hidden)?);
            let down = m("ffn_down", gate.rows)?;
            bytes_loaded += [&wq, &wk, &wv, &wo, &gate, &up, &down]
                .iter()
                .map(|m| m.bytes() as u64)
                .sum::<u64>();
            blocks.push(Block {
                attn_norm: Vec::new(),
                wq,
                wk,
                wv,
                wo,
                ffn_norm: Vec::new(),
                gate,
                up,
                down,
            });
            progress(LoadStep {
                layers_loaded: i + 1,
                layers_total: config.n_layer,
                bytes_loaded,
            });
        }
        let output = if file.content.tensor_infos.contains_key("output.weight") {
            Some(t.matrix("output.weight", hidden)?)
        } else {
            None
        };
        for (i, block) in blocks.iter_mut().enumerate() {
            block.attn_norm = t.vector(&format!("blk.{i}.attn_norm.weight"), hidden)?;
            block.ffn_norm = t.vector(&format!("blk.{i}.ffn_norm.weight"), hidden)?;
        }
        let norm = t.vector("output_norm.weight", hidden)?;
        let half = config.head_dim / 2;
        let inv_freq = (0..half)
            .map(|i| {
                1.0 / config
                    .rope_base
                    .powf(2.0 * i as f64 / config.head_dim as f64) as f32
            })
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("rbee-cpu-{i}"))
            .build()
            .map_err(|e| LoadError::Io(file.path.clone(), std::io::Error::other(e)))?;
        Ok(Self {
            config,
            kernels: Kernels::detect(),
            pool,
            embedding,
            blocks,
            norm,
            output,
            inv_freq,
        })
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    pub fn new_cache(&self) -> KvCache {
        let c = &self.config;
        KvCache::new(c.n_layer, c.n_kv_head, c.head_dim)
    }

    /// Runs `tokens` (the prompt, or the one newest token) through the model after the
    /// positions already in `cache`; returns the logits for the next token.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> candle_core::Result<Vec<f32>> {
        self.config.check_sequence(cache.position(), tokens.len())?;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.embedding.rows) {
            candle_core::bail!("token id {bad} is outside the vocabulary");
        }
        Ok(self.pool.install(|| self.run(tokens, cache)))
    }

    fn run(&self, tokens: &[u32], cache: &mut KvCache) -> Vec<f32> {
        let c = &self.config;
        let (seq, start, hidden) = (tokens.len(), cache.position(), c.hidden);
        let eps = c.rms_eps as f32;
        let mut x = vec![0f32; seq * hidden];
        for (row, &t) in x.chunks_exact_mut(hidden).zip(tokens) {
            self.embedding
                .format
                .dequantize(self.embedding.row(t as usize), row);
        }
        let (cos, sin) = self.rope_tables(start, seq);
        let mut h = vec![0f32; seq * hidden];
        for (l, block) in self.blocks.iter().enumerate() {
            rms_norm(&x, &block.attn_norm, eps, &mut h);
            let attn = self.attention(l, block, &h, &cos, &sin, cache);
            let mut o = vec![0f32; seq * hidden];
            self.project(&[&block.wo], &attn, &mut o);
            add(&mut x, &o);

            rms_norm(&x, &block.ffn_norm, eps, &mut h);
            let ff = block.gate.rows;
            let mut gu = vec![0f32; seq * 2 * ff];
            self.project(&[&block.gate, &block.up], &h, &mut gu);
            let mut m = vec![0f32; seq * ff];
            let rows = m.par_chunks_exact_mut(ff).zip(gu.par_chunks_exact(2 * ff));
            rows.with_min_len(TOKENS_PER_TASK).for_each(|(m, gu)| {
                let (g, u) = gu.split_at(ff);
                for ((m, &g), &u) in m.iter_mut().zip(g).zip(u) {
                    *m = g / (1.0 + (-g).exp()) * u;
                }
            });
            self.project(&[&block.down], &m, &mut o);
            add(&mut x, &o);
        }
        cache.advance(seq);
        let mut last = vec![0f32; hidden];
        rms_norm(&x[(seq - 1) * hidden..], &self.norm, eps, &mut last);
        let head = self.output.as_ref().unwrap_or(&self.embedding);
        let mut logits = vec![0f32; head.rows];
        self.project(&[head], &last, &mut logits);
        logits
    }

    /// `out = group · x` for every token row of `x`.
    fn project(&self, group: &[&QMatrix], x: &[f32], out: &mut [f32]) {
        let cols = group[0].cols;
        let k_blocks = group.iter().any(|m| m.format.is_k_quant());
        let q = Quantized::new(x, cols, k_blocks);
        matmul(self.kernels, group, &q, out);
    }

    /// Cosine and sine of each rotated pair's angle at positions `start..start + seq`.
    fn rope_tables(&self, start: usize, seq: usize) -> (Vec<f32>, Vec<f32>) {
        let angles: Vec<f32> = (start..start + seq)
            .flat_map(|p| self.inv_freq.iter().map(move |f| p as f32 * f))
            .collect();
        (
            angles.iter().map(|a| a.cos()).collect(),
            angles.iter().map(|a| a.sin()).collect(),
        )
    }

    /// Self-attention of block `l` for the tokens in `h`: projects Q, K, V, rotates Q and K,
    /// appends K and V to the cache and returns the attended values, one row per token.
    fn attention(
        &self,
        l: usize,
        block: &Block,
        h: &[f32],
        cos: &[f32],
        sin: &[f32],
        cache: &mut KvCache,
    ) -> Vec<f32> {
        let c = &self.config;
        let hd = c.head_dim;
        let (q_dim, kv_dim) = (c.n_head * hd, c.n_kv_head * hd);
        let width = q_dim + 2 * kv_dim;
        let seq = h.len() / c.hidden;
        let mut qkv = vec![0f32; seq * width];
        self.project(&[&block.wq, &block.wk, &block.wv], h, &mut qkv);
        let pairs = hd / 2;
        for (t, row) in qkv.chunks_exact_mut(width).enumerate() {
            let (cos, sin) = (
                &cos[t * pairs..(t + 1) * pairs],
                &sin[t * pairs..(t + 1) * pairs],
            );
            for head in row[..q_dim + kv_dim].chunks_exact_mut(hd) {
                rotate(head, cos, sin);
            }
        }
        let rows = |at: usize| -> Vec<&[f32]> {
            (qkv.chunks_exact(width))
                .map(|row| &row[at..at + kv_dim])
                .collect()
        };
        cache.append(l, &rows(q_dim), &rows(q_dim + kv_dim));
        let cache = &*cache;
        let start = cache.position();
        let group = c.n_head / c.n_kv_head;
        let scale = (1.0 / (hd as f64).sqrt()) as f32;
        let per_head: Vec<Vec<f32>> = (0..c.n_head)
            .into_par_iter()
            .map(|head| {
                let kv = head / group;
                let mut out = vec![0f32; seq * hd];
                let mut scores = Vec::with_capacity(start + seq);
                for (t, out) in out.chunks_exact_mut(hd).enumerate() {
                    let q = &qkv[t * width + head * hd..t * width + (head + 1) * hd];
                    scores.clear();
                    scores.extend((0..=start + t).map(|j| cache.key_dot(l, kv, j, q) * scale));
                    softmax(&mut scores);
                    for (j, &p) in scores.iter().enumerate() {
                        cache.add_value(l, kv, j, p, out);
                    }
                }
                out
            })
            .collect();
        let mut attn = vec![0f32; seq * q_dim];
        for (head, values) in per_head.iter().enumerate() {
            for (t, v) in values.chunks_exact(hd).enumerate() {
                attn[t * q_dim + head * hd..t * q_dim + (head + 1) * hd].copy_from_slice(v);
            }
        }
        attn
    }
}

/// Reads tensors of a GGUF file by name, as stored; matrices go into one [`Arena`].
struct Tensors<'a> {
    file: &'a ModelFile,
    reader: std::io::BufReader<std::fs::File>,
    arena: Arc<Arena>,
}

impl<'a> Tensors<'a> {
    fn open(file: &'a ModelFile) -> Result<Self, LoadError> {
        let io = |e| LoadError::Io(file.path.clone(), e);
        let reader = std::fs::File::open(&file.path).map_err(io)?;
        // Room for every tensor of the file, each aligned; what no matrix uses is never backed.
        let bytes = (file.content.tensor_infos.values())
            .map(|info| Self::bytes(info) + arena::ALIGN)
            .sum();
        Ok(Self {
            file,
            reader: std::io::BufReader::new(reader),
            arena: Arena::new(bytes).map_err(io)?,
        })
    }

    fn bytes(info: &TensorInfo) -> usize {
        let elems: usize = info.shape.dims().iter().product();
        elems / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()
    }

    fn unsupported(&self, name: &str, what: String) -> LoadError {
        LoadError::File(self.file.unsupported(format!("tensor `{name}`: {what}")))
    }

    fn info(&self, name: &str) -> Result<&'a TensorInfo, LoadError> {
        let file: &'a ModelFile = self.file;
        file.content
            .tensor_infos
            .get(name)
            .ok_or_else(|| self.unsupported(name, "missing".into()))
    }

    /// Fills `out` with the stored bytes of `info`.
    fn read(&mut self, info: &TensorInfo, out: &mut [u8]) -> Result<(), LoadError> {
        let at = self.file.content.tensor_data_offset + info.offset;
        let io = |e| LoadError::Io(self.file.path.clone(), e);
        self.reader.seek(SeekFrom::Start(at)).map_err(io)?;
        self.reader.read_exact(out).map_err(io)
    }

    /// A `rows x cols` weight matrix in a format the kernels cover.
    fn matrix(&mut self, name: &str, cols: usize) -> Result<QMatrix, LoadError> {
        let info = self.info(name)?;
        let dtype = info.ggml_dtype;
        let format = Format::from_ggml(dtype)
            .ok_or_else(|| self.unsupported(name, format!("format {dtype:?}")))?;
        let rows = match info.shape.dims() {
            &[rows, c] if c == cols && QMatrix::fits(format, cols) => rows,
            &[rows, c] if c == cols => {
                return Err(self.unsupported(name, format!("{rows}x{c} in {dtype:?}")));
            }
            dims => {
                return Err(
                    self.unsupported(name, format!("shape {dims:?}, expected {cols} columns"))
                );
            }
        };
        let arena = Arc::clone(&self.arena);
        QMatrix::read(&arena, format, rows, cols, |out| self.read(info, out))
            .expect("the arena holds every tensor of the file")
    }

    /// An F32 vector of `len` values.
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, LoadError> {
        let info = self.info(name)?;
        let (dtype, dims) = (info.ggml_dtype, info.shape.dims());
        if dtype != GgmlDType::F32 || dims != [len] {
            return Err(self.unsupported(name, format!("{dtype:?} {dims:?}, expected F32 [{len}]")));
        }
        let mut data = vec![0u8; 4 * len];
        self.read(info, &mut data)?;
        Ok(data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// Root-mean-square normalisation of each row of `x` (rows as long as `weight`).
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    let rows = x.par_chunks_exact(n).zip(out.par_chunks_exact_mut(n));
    rows.with_min_len(TOKENS_PER_TASK).for_each(|(x, out)| {
        let mean = x.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let norm = (mean + eps).sqrt();
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
            *o = v / norm * w;
        }
    });
}

/// Rotates adjacent pairs `(x[2i], x[2i + 1])` by the angles whose cosines and sines are given
/// (GGUF stores llama's Q and K rows permuted for this pairing).
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    for ((pair, &c), &s) in x.chunks_exact_mut(2).zip(cos).zip(sin) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * c - b * s;
        pair[1] = a * s + b * c;
    }
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}
