//! The llama-family transformer, loaded layer by layer from a GGUF file.
//!
//! Written against Candle's tensor ops rather than `candle-transformers` for two reasons: the
//! weights are read one block at a time so loading progress is real, and the KV cache lives
//! outside the weights so several slots can share one copy of the model.
//!
//! Shapes: activations are `(batch = 1, seq, hidden)`; per-head tensors `(1, heads, seq, dim)`.
//! Grouped-query attention is computed without copying K/V per query head: the query heads
//! that share a KV head are folded into the sequence axis of one matmul.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use crate::model_file::{ModelFile, candle_message};

pub type Result<T> = candle_core::Result<T>;

/// Hyper-parameters read from `llama.*` metadata.
#[derive(Debug, Clone)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub context_length: usize,
    pub rms_eps: f64,
    pub rope_base: f64,
}

impl LlamaConfig {
    pub fn from_file(
        file: &ModelFile,
    ) -> std::result::Result<Self, crate::model_file::ModelFileError> {
        let n_head = file.arch_usize("attention.head_count")?;
        let hidden = file.arch_usize("embedding_length")?;
        let arch = file.architecture()?;
        if n_head == 0 || hidden % n_head != 0 {
            return Err(file.unsupported(format!("{hidden} wide model with {n_head} heads")));
        }
        let n_kv_head = file
            .integer(&format!("{arch}.attention.head_count_kv"))
            .map_or(n_head, |v| v as usize);
        if n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(
                file.unsupported(format!("{n_head} heads cannot share {n_kv_head} KV heads"))
            );
        }
        let head_dim = file
            .integer(&format!("{arch}.rope.dimension_count"))
            .map_or(hidden / n_head, |v| v as usize);
        Ok(Self {
            n_layer: file.arch_usize("block_count")?,
            n_head,
            n_kv_head,
            head_dim,
            hidden,
            context_length: file.arch_usize("context_length")?,
            rms_eps: file
                .float(&format!("{arch}.attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5),
            rope_base: file
                .float(&format!("{arch}.rope.freq_base"))
                .unwrap_or(10_000.0),
        })
    }
}

impl LlamaConfig {
    /// Fails unless `seq` tokens (at least one) fit after `start` positions in the context.
    pub fn check_sequence(&self, start: usize, seq: usize) -> Result<()> {
        if seq == 0 {
            candle_core::bail!("forward called with no tokens");
        }
        if start + seq > self.context_length {
            candle_core::bail!(
                "sequence of {} tokens exceeds the context of {}",
                start + seq,
                self.context_length
            );
        }
        Ok(())
    }
}

/// Progress of [`Llama::load`]: after the embeddings, after each block, after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadStep {
    pub layers_loaded: usize,
    pub layers_total: usize,
    pub bytes_loaded: u64,
}

struct Block {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
}

/// The weights of a loaded model; immutable and shared by every slot.
pub struct Llama {
    pub config: LlamaConfig,
    embedding: Arc<QTensor>,
    blocks: Vec<Block>,
    norm: Tensor,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// One sequence's attention cache: K and V per block, and how many positions it holds.
pub struct KvCache {
    layers: Vec<candle_nn::kv_cache::KvCache>,
    position: usize,
}

impl KvCache {
    pub fn position(&self) -> usize {
        self.position
    }
}

/// Positions the KV cache reserves at a time; it grows by the same amount.
const KV_CHUNK: usize = 512;

impl Llama {
    /// Loads every tensor from `file` onto `device`, one block at a time, calling `progress`
    /// after each step.
    pub fn load(
        file: &ModelFile,
        device: &Device,
        mut progress: impl FnMut(LoadStep),
    ) -> std::result::Result<Self, LoadError> {
        let config = LlamaConfig::from_file(file)?;
        let mut reader = std::io::BufReader::new(
            std::fs::File::open(&file.path).map_err(|e| LoadError::Io(file.path.clone(), e))?,
        );
        let bytes_loaded = std::cell::Cell::new(0u64);
        let mut tensor = |name: &str| -> std::result::Result<QTensor, LoadError> {
            let t = file
                .content
                .tensor(&mut reader, name, device)
                .map_err(|e| LoadError::Tensor(name.to_owned(), e))?;
            bytes_loaded.set(bytes_loaded.get() + t.storage_size_in_bytes() as u64);
            Ok(t)
        };
        let dense = |t: QTensor| t.dequantize(device).map_err(LoadError::Candle);
        let matmul = |t: QTensor| QMatMul::from_qtensor(t).map_err(LoadError::Candle);

        let embedding = Arc::new(tensor("token_embd.weight")?);
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let mut t = |suffix: &str| tensor(&format!("blk.{i}.{suffix}"));
            blocks.push(Block {
                attn_norm: dense(t("attn_norm.weight")?)?,
                wq: matmul(t("attn_q.weight")?)?,
                wk: matmul(t("attn_k.weight")?)?,
                wv: matmul(t("attn_v.weight")?)?,
                wo: matmul(t("attn_output.weight")?)?,
                ffn_norm: dense(t("ffn_norm.weight")?)?,
                gate: matmul(t("ffn_gate.weight")?)?,
                up: matmul(t("ffn_up.weight")?)?,
                down: matmul(t("ffn_down.weight")?)?,
            });
            progress(LoadStep {
                layers_loaded: i + 1,
                layers_total: config.n_layer,
                bytes_loaded: bytes_loaded.get(),
            });
        }
        let norm = dense(tensor("output_norm.weight")?)?;
        let output = if file.content.tensor_infos.contains_key("output.weight") {
            matmul(tensor("output.weight")?)?
        } else {
            // Tied embeddings: the output head reuses the (quantized) embedding table.
            QMatMul::from_arc(embedding.clone()).map_err(LoadError::Candle)?
        };
        let (cos, sin) = rope_tables(&config, device).map_err(LoadError::Candle)?;
        Ok(Self {
            config,
            embedding,
            blocks,
            norm,
            output,
            cos,
            sin,
            device: device.clone(),
        })
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: (0..self.config.n_layer)
                .map(|_| candle_nn::kv_cache::KvCache::new(2, KV_CHUNK))
                .collect(),
            position: 0,
        }
    }

    /// Runs `tokens` (the prompt, or the one newest token) through the model after the
    /// positions already in `cache`; returns the logits for the next token.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let seq = tokens.len();
        let start = cache.position;
        self.config.check_sequence(start, seq)?;
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embedding.embedding(&ids)?.unsqueeze(0)?;
        let cos = self.cos.narrow(0, start, seq)?;
        let sin = self.sin.narrow(0, start, seq)?;
        let mask = self.causal_mask(start, seq)?;
        for (block, kv) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let residual = &x;
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, self.config.rms_eps as f32)?;
            let h = self.attention(block, &h, &cos, &sin, mask.as_ref(), kv)?;
            let x1 = (residual + h)?;
            let h = candle_nn::ops::rms_norm(&x1, &block.ffn_norm, self.config.rms_eps as f32)?;
            let ff = block
                .down
                .forward(&(block.gate.forward(&h)?.silu()? * block.up.forward(&h)?)?)?;
            x = (x1 + ff)?;
        }
        cache.position += seq;
        let last = x.narrow(1, seq - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.config.rms_eps as f32)?;
        self.output
            .forward(&last)?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1()
    }

    fn attention(
        &self,
        block: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        kv: &mut candle_nn::kv_cache::KvCache,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, seq, _) = x.dims3()?;
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            t.reshape((b, seq, n, c.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(block.wq.forward(x)?, c.n_head)?;
        let k = heads(block.wk.forward(x)?, c.n_kv_head)?;
        let v = heads(block.wv.forward(x)?, c.n_kv_head)?;
        // GGUF stores llama Q/K rows permuted for rotation of adjacent pairs.
        let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
        let (k, v) = kv.append(&k, &v)?;
        let (k, v) = (k.contiguous()?, v.contiguous()?);
        let group = c.n_head / c.n_kv_head;
        // (b, n_head, seq, d) -> (b, n_kv, group * seq, d): heads sharing a KV head stacked.
        let q = q.reshape((b, c.n_kv_head, group * seq, c.head_dim))?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?;
        let out = out
            .reshape((b, c.n_head, seq, c.head_dim))?
            .transpose(1, 2)?
            .reshape((b, seq, c.n_head * c.head_dim))?;
        block.wo.forward(&out)
    }

    /// `(group * seq, start + seq)` additive mask hiding future positions; none for one token.
    fn causal_mask(&self, start: usize, seq: usize) -> Result<Option<Tensor>> {
        if seq == 1 {
            return Ok(None);
        }
        let group = self.config.n_head / self.config.n_kv_head;
        let total = start + seq;
        let mut mask = Vec::with_capacity(group * seq * total);
        for _ in 0..group {
            for i in 0..seq {
                mask.extend((0..total).map(|j| {
                    if j > start + i {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                }));
            }
        }
        Tensor::from_vec(mask, (group * seq, total), &self.device).map(Some)
    }
}

fn rope_tables(c: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = c.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / c.rope_base.powf(2.0 * i as f64 / c.head_dim as f64) as f32)
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let positions = Tensor::arange(0u32, c.context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((c.context_length, 1))?;
    let angles = positions.broadcast_mul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// Why loading the weights failed part-way.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    File(#[from] crate::model_file::ModelFileError),
    #[error("cannot open {0}: {1}")]
    Io(std::path::PathBuf, std::io::Error),
    #[error("cannot load tensor `{0}`: {msg}", msg = candle_message(.1))]
    Tensor(String, candle_core::Error),
    #[error("{msg}", msg = candle_message(.0))]
    Candle(candle_core::Error),
}
