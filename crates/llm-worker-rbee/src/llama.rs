//! The transformer on Candle's tensor ops (GPU backends, and CPU models in a format rbee's
//! kernels lack), configured per architecture by [`ModelConfig`], loaded layer by layer.
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

use crate::arch::{Activation, ModelConfig, Rope, RopeStyle};
use crate::model_file::{ModelFile, OpenTensor, TensorReader, candle_message};

pub type Result<T> = candle_core::Result<T>;

/// Progress of [`Llama::load`]: after the embeddings, after each block, after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadStep {
    pub layers_loaded: usize,
    pub layers_total: usize,
    pub bytes_loaded: u64,
}

/// Reads a file's tensors onto a device, counting the bytes.
struct Loader<'a> {
    file: &'a ModelFile,
    device: &'a Device,
    data: TensorReader<'a>,
    bytes_loaded: u64,
}

impl<'a> Loader<'a> {
    fn open(file: &'a ModelFile, device: &'a Device) -> std::result::Result<Self, LoadError> {
        Ok(Self {
            file,
            device,
            data: TensorReader::new(file),
            bytes_loaded: 0,
        })
    }

    fn tensor(&mut self, name: &str) -> std::result::Result<QTensor, LoadError> {
        let Some(OpenTensor {
            info,
            reader,
            data_offset,
        }) = self.data.open(name)?
        else {
            return Err(LoadError::File(
                self.file.unsupported(format!("tensor `{name}` is missing")),
            ));
        };
        let t = (info.read(reader, data_offset, self.device))
            .map_err(|e| LoadError::Tensor(name.to_owned(), e))?;
        self.bytes_loaded += t.storage_size_in_bytes() as u64;
        Ok(t)
    }

    /// A tensor as plain values (norm weights, biases).
    fn dense(&mut self, name: &str) -> std::result::Result<Tensor, LoadError> {
        (self.tensor(name)?)
            .dequantize(self.device)
            .map_err(LoadError::Candle)
    }

    /// [`Loader::dense`] when `present`.
    fn dense_if(
        &mut self,
        present: bool,
        name: &str,
    ) -> std::result::Result<Option<Tensor>, LoadError> {
        present.then(|| self.dense(name)).transpose()
    }

    /// A weight matrix, kept in its file format.
    fn matmul(&mut self, name: &str) -> std::result::Result<QMatMul, LoadError> {
        QMatMul::from_qtensor(self.tensor(name)?).map_err(LoadError::Candle)
    }

    /// The angles of a rotary embedding, its factors tensor (if any) dividing the frequencies.
    fn rope_tables(&mut self, rope: &Rope) -> std::result::Result<RopeTables, LoadError> {
        let factors = match &rope.factors {
            Some(name) => Some(
                self.dense(name)?
                    .to_vec1::<f32>()
                    .map_err(LoadError::Candle)?,
            ),
            None => None,
        };
        rope_tables(rope, factors.as_deref(), self.device).map_err(LoadError::Candle)
    }
}

struct Block {
    attn_norm: Tensor,
    /// Q, K and V, or one fused matrix whose output is split.
    qkv: Vec<QMatMul>,
    qkv_bias: Option<Tensor>,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    wo: QMatMul,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    /// Gate and up, or one fused matrix (gate half first).
    gate_up: Vec<QMatMul>,
    down: QMatMul,
    post_ffn_norm: Option<Tensor>,
}

/// The rotary embedding of one kind of layer: each pair's angle per position, `(1, pairs)`.
struct RopeTables {
    inv_freq: Tensor,
    magnitude: f64,
}

impl RopeTables {
    /// Cosine and sine at positions `start..start + seq`, `(seq, pairs)` each.
    fn at(&self, start: usize, seq: usize) -> Result<(Tensor, Tensor)> {
        let device = self.inv_freq.device();
        let positions = Tensor::arange(start as u32, (start + seq) as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((seq, 1))?;
        let angles = positions.broadcast_mul(&self.inv_freq)?;
        Ok((
            (angles.cos()? * self.magnitude)?,
            (angles.sin()? * self.magnitude)?,
        ))
    }
}

/// The weights of a loaded model; immutable and shared by every slot.
pub struct Llama {
    pub config: ModelConfig,
    embedding: Arc<QTensor>,
    blocks: Vec<Block>,
    norm: Tensor,
    output: QMatMul,
    rope: RopeTables,
    rope_local: RopeTables,
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

impl Block {
    /// Reads block `i`'s tensors as `c`'s architecture lays them out.
    fn load(t: &mut Loader, c: &ModelConfig, i: usize) -> std::result::Result<Self, LoadError> {
        let name = |suffix: &str| format!("blk.{i}.{suffix}");
        let qkv = if c.fused_qkv {
            vec![t.matmul(&name("attn_qkv.weight"))?]
        } else {
            vec![
                t.matmul(&name("attn_q.weight"))?,
                t.matmul(&name("attn_k.weight"))?,
                t.matmul(&name("attn_v.weight"))?,
            ]
        };
        let qkv_bias = if c.qkv_bias {
            let parts = [
                t.dense(&name("attn_q.bias"))?,
                t.dense(&name("attn_k.bias"))?,
                t.dense(&name("attn_v.bias"))?,
            ];
            Some(Tensor::cat(&parts, 0).map_err(LoadError::Candle)?)
        } else {
            None
        };
        let gate_up = if c.fused_gate_up {
            vec![t.matmul(&name("ffn_up.weight"))?]
        } else {
            vec![
                t.matmul(&name("ffn_gate.weight"))?,
                t.matmul(&name("ffn_up.weight"))?,
            ]
        };
        Ok(Self {
            qkv,
            qkv_bias,
            q_norm: t.dense_if(c.qk_norm, &name("attn_q_norm.weight"))?,
            k_norm: t.dense_if(c.qk_norm, &name("attn_k_norm.weight"))?,
            attn_norm: t.dense(&name("attn_norm.weight"))?,
            wo: t.matmul(&name("attn_output.weight"))?,
            post_attn_norm: t.dense_if(c.post_norms, &name("post_attention_norm.weight"))?,
            ffn_norm: t.dense(&name("ffn_norm.weight"))?,
            gate_up,
            down: t.matmul(&name("ffn_down.weight"))?,
            post_ffn_norm: t.dense_if(c.post_norms, &name("post_ffw_norm.weight"))?,
        })
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
        let config = file.config().clone();
        let c = &config;
        let mut t = Loader::open(file, device)?;
        let embedding = Arc::new(t.tensor("token_embd.weight")?);
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            blocks.push(Block::load(&mut t, c, i)?);
            progress(LoadStep {
                layers_loaded: i + 1,
                layers_total: c.n_layer,
                bytes_loaded: t.bytes_loaded,
            });
        }
        let norm = t.dense("output_norm.weight")?;
        let output = if file.content.tensor_infos.contains_key("output.weight") {
            t.matmul("output.weight")?
        } else {
            // Tied embeddings: the output head reuses the (quantized) embedding table.
            QMatMul::from_arc(embedding.clone()).map_err(LoadError::Candle)?
        };
        let rope = t.rope_tables(&c.rope)?;
        let rope_local = t.rope_tables(&c.rope_local)?;
        Ok(Self {
            config,
            embedding,
            blocks,
            norm,
            output,
            rope,
            rope_local,
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
        let c = &self.config;
        let seq = tokens.len();
        let start = cache.position;
        c.check_sequence(start, seq)?;
        let eps = c.rms_eps as f32;
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embedding.embedding(&ids)?.unsqueeze(0)?;
        if let Some(scale) = c.embedding_scale {
            x = (x * f64::from(scale))?;
        }
        let global = self.causal_mask(start, seq, None)?;
        let local = match c.sliding_window {
            Some(w) => self.causal_mask(start, seq, Some(w))?,
            None => None,
        };
        for (l, (block, kv)) in self.blocks.iter().zip(cache.layers.iter_mut()).enumerate() {
            let (tables, mask) = if c.is_sliding(l) {
                (&self.rope_local, local.as_ref())
            } else {
                (&self.rope, global.as_ref())
            };
            let (cos, sin) = tables.at(start, seq)?;
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, eps)?;
            let mut h = self.attention(block, &h, &cos, &sin, mask, kv)?;
            if let Some(w) = &block.post_attn_norm {
                h = candle_nn::ops::rms_norm(&h, w, eps)?;
            }
            let x1 = (&x + h)?;
            let h = candle_nn::ops::rms_norm(&x1, &block.ffn_norm, eps)?;
            let gate_up: Vec<Tensor> = block
                .gate_up
                .iter()
                .map(|m| m.forward(&h))
                .collect::<Result<_>>()?;
            let gate_up = Tensor::cat(&gate_up, 2)?;
            let ff = gate_up.dim(2)? / 2;
            let gate = gate_up.narrow(2, 0, ff)?;
            let up = gate_up.narrow(2, ff, ff)?;
            let gate = match c.activation {
                Activation::Silu => gate.silu()?,
                Activation::GeluTanh => gate.gelu()?,
            };
            let mut ff = block.down.forward(&(gate * up)?)?;
            if let Some(w) = &block.post_ffn_norm {
                ff = candle_nn::ops::rms_norm(&ff, w, eps)?;
            }
            x = (x1 + ff)?;
        }
        cache.position += seq;
        let last = x.narrow(1, seq - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, eps)?;
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
        let eps = c.rms_eps as f32;
        let qkv: Vec<Tensor> = block
            .qkv
            .iter()
            .map(|m| m.forward(x))
            .collect::<Result<_>>()?;
        let mut qkv = Tensor::cat(&qkv, 2)?;
        if let Some(bias) = &block.qkv_bias {
            qkv = qkv.broadcast_add(bias)?;
        }
        let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
        let heads = |at: usize, n: usize, norm: Option<&Tensor>| -> Result<Tensor> {
            let t = qkv
                .narrow(2, at, n * c.head_dim)?
                .reshape((b, seq, n, c.head_dim))?;
            let t = match norm {
                Some(w) => candle_nn::ops::rms_norm(&t.contiguous()?, w, eps)?,
                None => t,
            };
            t.transpose(1, 2)?.contiguous()
        };
        let q = heads(0, c.n_head, block.q_norm.as_ref())?;
        let k = heads(q_dim, c.n_kv_head, block.k_norm.as_ref())?;
        let v = heads(q_dim + kv_dim, c.n_kv_head, None)?;
        let q = self.rotate(&q, cos, sin)?;
        let k = self.rotate(&k, cos, sin)?;
        let (k, v) = kv.append(&k, &v)?;
        let (k, v) = (k.contiguous()?, v.contiguous()?);
        let group = c.n_head / c.n_kv_head;
        // (b, n_head, seq, d) -> (b, n_kv, group * seq, d): heads sharing a KV head stacked.
        let q = q.reshape((b, c.n_kv_head, group * seq, c.head_dim))?;
        let mut scores = (q.matmul(&k.t()?)? * f64::from(c.attention_scale))?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?;
        let out = out
            .reshape((b, c.n_head, seq, c.head_dim))?
            .transpose(1, 2)?
            .reshape((b, seq, q_dim))?;
        block.wo.forward(&out)
    }

    /// Rotates the first `rope.dims` dimensions of each head of `x` (b, heads, seq, d).
    fn rotate(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let dims = c.rope.dims;
        let rotate = |x: &Tensor| match c.rope_style {
            // GGUF stores llama Q/K rows permuted for rotation of adjacent pairs.
            RopeStyle::Adjacent => candle_nn::rotary_emb::rope_i(x, cos, sin),
            RopeStyle::Halves => candle_nn::rotary_emb::rope(x, cos, sin),
        };
        if dims == c.head_dim {
            return rotate(x);
        }
        let rotated = rotate(&x.narrow(3, 0, dims)?.contiguous()?)?;
        let rest = x.narrow(3, dims, c.head_dim - dims)?;
        Tensor::cat(&[rotated, rest], 3)?.contiguous()
    }

    /// `(group * seq, start + seq)` additive mask hiding future positions and, with a window,
    /// positions `window` or more behind; none when nothing is hidden.
    fn causal_mask(
        &self,
        start: usize,
        seq: usize,
        window: Option<usize>,
    ) -> Result<Option<Tensor>> {
        let total = start + seq;
        if seq == 1 && window.is_none_or(|w| total <= w) {
            return Ok(None);
        }
        let group = self.config.n_head / self.config.n_kv_head;
        let mut mask = Vec::with_capacity(group * seq * total);
        for _ in 0..group {
            for i in 0..seq {
                let query = start + i;
                mask.extend((0..total).map(|key| {
                    let visible = key <= query && window.is_none_or(|w| query - key < w);
                    if visible { 0.0 } else { f32::NEG_INFINITY }
                }));
            }
        }
        Tensor::from_vec(mask, (group * seq, total), &self.device).map(Some)
    }
}

fn rope_tables(rope: &Rope, factors: Option<&[f32]>, device: &Device) -> Result<RopeTables> {
    let inv_freq = rope
        .frequencies(factors)
        .map_err(|e| candle_core::Error::Msg(format!("rope factors {e}")))?;
    let half = inv_freq.len();
    Ok(RopeTables {
        inv_freq: Tensor::from_vec(inv_freq, (1, half), device)?,
        magnitude: f64::from(rope.magnitude),
    })
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
