//! The transformer on the CPU, computed on plain buffers with this crate's quantized kernels,
//! configured per architecture by [`ModelConfig`].
//!
//! One forward pass runs on one team of threads ([`super::team`]) in five parallel stages per
//! layer (QKV, attention, output projection, gate+up, down); attention runs one task per token
//! and head. Between them, norms, biases, rotary embedding, the FFN activation and quantizing
//! activations run per token, on the team in tasks of four tokens for a prompt and inline for
//! a decoding step; the cache append and
//! residuals are short serial loops. The buffers between the matrices are allocated once per
//! pass ([`Scratch`]). Keys and values are cached in 8 bits ([`super::kv`]). The arithmetic mirrors [`crate::llama::Llama`] (same activation rounding,
//! same order of normalisation and rotation), and both are checked against llama.cpp in the
//! tests.

use std::sync::Arc;

use super::CpuConfig;
use super::activation::{Quantized, TOKENS_PER_TASK};
use super::arena::{self, Arena};
use super::format::{Format, Operand};
use super::kernels::Kernels;
use super::kv::{Head, KvCache};
use super::matmul::{QMatrix, matmul};
use super::team::Team;
use crate::arch::{Activation, ModelConfig, Rope, RopeStyle};
use crate::llama::{LoadError, LoadStep};
use crate::model_file::{ModelFile, TensorReader};
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::TensorInfo;

struct Block {
    attn_norm: Vec<f32>,
    /// Q, K and V, or one fused matrix; their rows in that order.
    qkv: Vec<QMatrix>,
    qkv_bias: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    wo: QMatrix,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    /// Gate and up, or one fused matrix; gate rows first.
    gate_up: Vec<QMatrix>,
    down: QMatrix,
    post_ffn_norm: Option<Vec<f32>>,
}

impl Block {
    /// Reads block `i`'s tensors as `c`'s architecture lays them out.
    fn load(t: &mut Tensors, c: &ModelConfig, i: usize) -> Result<Self, LoadError> {
        let hidden = c.hidden;
        let name = |what: &str| format!("blk.{i}.{what}");
        let qkv = if c.fused_qkv {
            vec![t.matrix(&name("attn_qkv.weight"), hidden)?]
        } else {
            ["attn_q", "attn_k", "attn_v"]
                .iter()
                .map(|m| t.matrix(&name(&format!("{m}.weight")), hidden))
                .collect::<Result<_, _>>()?
        };
        let rows: usize = qkv.iter().map(|m| m.rows).sum();
        if rows != c.q_dim() + 2 * c.kv_dim() {
            return Err(t.unsupported(
                &name("attn_qkv"),
                format!("{rows} rows, expected {}", c.q_dim() + 2 * c.kv_dim()),
            ));
        }
        let gate_up = if c.fused_gate_up {
            vec![t.matrix(&name("ffn_up.weight"), hidden)?]
        } else {
            vec![
                t.matrix(&name("ffn_gate.weight"), hidden)?,
                t.matrix(&name("ffn_up.weight"), hidden)?,
            ]
        };
        let ff: usize = gate_up.iter().map(|m| m.rows).sum::<usize>() / 2;
        let qkv_bias = if c.qkv_bias {
            let mut bias = t.vector(&name("attn_q.bias"), c.q_dim())?;
            bias.extend(t.vector(&name("attn_k.bias"), c.kv_dim())?);
            bias.extend(t.vector(&name("attn_v.bias"), c.kv_dim())?);
            Some(bias)
        } else {
            None
        };
        let head_norm = |t: &mut Tensors, what: &str| -> Result<_, LoadError> {
            c.qk_norm
                .then(|| t.vector(&name(what), c.head_dim))
                .transpose()
        };
        let post = |t: &mut Tensors, what: &str| -> Result<_, LoadError> {
            c.post_norms
                .then(|| t.vector(&name(what), hidden))
                .transpose()
        };
        Ok(Self {
            attn_norm: t.vector(&name("attn_norm.weight"), hidden)?,
            qkv,
            qkv_bias,
            q_norm: head_norm(t, "attn_q_norm.weight")?,
            k_norm: head_norm(t, "attn_k_norm.weight")?,
            wo: t.matrix(&name("attn_output.weight"), c.q_dim())?,
            post_attn_norm: post(t, "post_attention_norm.weight")?,
            ffn_norm: t.vector(&name("ffn_norm.weight"), hidden)?,
            gate_up,
            down: t.matrix(&name("ffn_down.weight"), ff)?,
            post_ffn_norm: post(t, "post_ffw_norm.weight")?,
        })
    }

    /// Bytes of the block's matrices.
    fn bytes(&self) -> u64 {
        (self
            .qkv
            .iter()
            .chain(&self.gate_up)
            .chain([&self.wo, &self.down]))
        .map(|m| m.bytes() as u64)
        .sum()
    }
}

/// Angles of one kind of layer's rotary embedding.
struct RopeTable {
    inv_freq: Vec<f32>,
    magnitude: f32,
}

/// The weights of a loaded model; immutable and shared by every slot.
pub struct Transformer {
    pub config: ModelConfig,
    kernels: Kernels,
    team: Team,
    embedding: QMatrix,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    /// `None` when the output head is tied to the embedding table.
    output: Option<QMatrix>,
    rope: RopeTable,
    rope_local: RopeTable,
}

impl Transformer {
    /// Why `file` cannot run on this path (a weight format without kernels here), if so.
    pub fn unsupported_reason(file: &ModelFile) -> Option<String> {
        let mut names: Vec<&String> = file.content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let info = &file.content.tensor_infos[name];
            let dims = info.shape.dims();
            let ok = match dims.len() {
                1 => info.ggml_dtype == GgmlDType::F32,
                2 => Format::from_ggml(info.ggml_dtype)
                    .is_some_and(|f| dims[1].is_multiple_of(f.block_len())),
                _ => false,
            };
            if !ok {
                let format = crate::model_file::dtype_name(info.ggml_dtype);
                return Some(format!("tensor {name} is {format} {dims:?}"));
            }
        }
        None
    }

    /// Loads every tensor of `file`, one block at a time, calling `progress` after each;
    /// the matrix products run as `cpu` says.
    pub fn load(
        file: &ModelFile,
        cpu: CpuConfig,
        mut progress: impl FnMut(LoadStep),
    ) -> Result<Self, LoadError> {
        let config = file.config().clone();
        let c = &config;
        let mut t = Tensors::open(file)?;
        let hidden = c.hidden;
        let embedding = t.matrix("token_embd.weight", hidden)?;
        let mut bytes_loaded = embedding.bytes() as u64;
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let block = Block::load(&mut t, c, i)?;
            bytes_loaded += block.bytes();
            blocks.push(block);
            progress(LoadStep {
                layers_loaded: i + 1,
                layers_total: c.n_layer,
                bytes_loaded,
            });
        }
        let output = if file.content.tensor_infos.contains_key("output.weight") {
            Some(t.matrix("output.weight", hidden)?)
        } else {
            None
        };
        let norm = t.vector("output_norm.weight", hidden)?;
        let rope = t.rope_table(&c.rope)?;
        let rope_local = t.rope_table(&c.rope_local)?;
        let team = Team::new(cpu.threads).map_err(|e| LoadError::Io(file.path.clone(), e))?;
        Ok(Self {
            config,
            kernels: cpu.kernels,
            team,
            embedding,
            blocks,
            norm,
            output,
            rope,
            rope_local,
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
        let mut step = [Step {
            tokens,
            cache,
            logits: true,
        }];
        let mut out = self.forward_batch(&mut step)?;
        Ok(out.pop().flatten().unwrap_or_default())
    }

    /// Runs the new tokens of several sequences through the model in one pass: every matrix
    /// is read once for all their tokens, while attention stays within each sequence's own
    /// cache. Returns, per step, the logits after its last token when it asked for them. A
    /// token's result does not depend on the other tokens of the pass (see
    /// [`super::matmul`]), so batching changes no bit of any sequence's output.
    pub fn forward_batch(&self, steps: &mut [Step]) -> candle_core::Result<Vec<Option<Vec<f32>>>> {
        for step in steps.iter() {
            if step.tokens.is_empty() {
                candle_core::bail!("a step without tokens");
            }
            self.config
                .check_sequence(step.cache.position(), step.tokens.len())?;
            if let Some(&bad) = (step.tokens.iter()).find(|&&t| t as usize >= self.embedding.rows) {
                candle_core::bail!("token id {bad} is outside the vocabulary");
            }
        }
        Ok(self.run(steps))
    }

    fn run(&self, steps: &mut [Step]) -> Vec<Option<Vec<f32>>> {
        let c = &self.config;
        let rows = Rows::of(steps);
        let (seq, hidden) = (rows.seq.len(), c.hidden);
        let eps = c.rms_eps as f32;
        let mut x = vec![0f32; seq * hidden];
        let tokens = steps.iter().flat_map(|s| s.tokens.iter());
        for (row, &t) in x.chunks_exact_mut(hidden).zip(tokens) {
            self.embedding.dequantize_row(t as usize, row);
            if let Some(scale) = c.embedding_scale {
                row.iter_mut().for_each(|v| *v *= scale);
            }
        }
        let angles = Angles::new(&self.rope, &rows.pos);
        let angles_local =
            (c.sliding_window.is_some()).then(|| Angles::new(&self.rope_local, &rows.pos));
        let ff = self.blocks.iter().map(|b| b.down.cols).max().unwrap_or(0);
        let mut s = Scratch::new(c, ff, seq);
        for (l, block) in self.blocks.iter().enumerate() {
            let angles = match &angles_local {
                Some(local) if c.is_sliding(l) => local,
                _ => &angles,
            };
            rms_norm(&self.team, &x, &block.attn_norm, eps, &mut s.h);
            self.attention(l, block, angles, steps, &rows, &mut s);
            self.project(&[&block.wo], &s.attn, &mut s.o);
            if let Some(w) = &block.post_attn_norm {
                rms_norm_in_place(&mut s.o, w, eps);
            }
            add(&mut x, &s.o);

            rms_norm(&self.team, &x, &block.ffn_norm, eps, &mut s.h);
            let ff = block.down.cols;
            let (gu, m) = (&mut s.gu[..seq * 2 * ff], &mut s.m[..seq * ff]);
            let group: Vec<&QMatrix> = block.gate_up.iter().collect();
            self.project(&group, &s.h, gu);
            let activation = c.activation;
            let tasks = (m.chunks_mut(TOKENS_PER_TASK * ff))
                .zip(gu.chunks(TOKENS_PER_TASK * 2 * ff))
                .collect();
            self.team.for_each(tasks, |(m, gu)| {
                for (m, gu) in m.chunks_exact_mut(ff).zip(gu.chunks_exact(2 * ff)) {
                    let (g, u) = gu.split_at(ff);
                    gated(activation, g, u, m);
                }
            });
            self.project(&[&block.down], m, &mut s.o);
            if let Some(w) = &block.post_ffn_norm {
                rms_norm_in_place(&mut s.o, w, eps);
            }
            add(&mut x, &s.o);
        }
        steps
            .iter_mut()
            .for_each(|s| s.cache.advance(s.tokens.len()));
        // The output head, once for the last token of every step that wants logits.
        let wanted: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].logits).collect();
        let mut last = vec![0f32; wanted.len() * hidden];
        for (out, &i) in last.chunks_exact_mut(hidden).zip(&wanted) {
            let row = rows.first[i] + steps[i].tokens.len() - 1;
            rms_norm(
                &self.team,
                &x[row * hidden..(row + 1) * hidden],
                &self.norm,
                eps,
                out,
            );
        }
        let head = self.output.as_ref().unwrap_or(&self.embedding);
        let mut logits = vec![0f32; wanted.len() * head.rows];
        if !wanted.is_empty() {
            self.project(&[head], &last, &mut logits);
        }
        let mut each = logits.chunks_exact(head.rows).map(<[f32]>::to_vec);
        steps
            .iter()
            .map(|s| s.logits.then(|| each.next().unwrap_or_default()))
            .collect()
    }

    /// `out = group · x` for every token row of `x`.
    fn project(&self, group: &[&QMatrix], x: &[f32], out: &mut [f32]) {
        let cols = group[0].cols;
        let operands: Vec<Operand> = group.iter().map(|m| m.format.operand()).collect();
        let q = Quantized::new(&self.team, x, cols, &operands);
        matmul(&self.team, self.kernels, group, &q, out);
    }

    /// Self-attention of block `l` for the tokens in `s.h`: projects Q, K, V into `s.qkv`
    /// (adding biases, normalising each head where the architecture does), rotates Q and K,
    /// appends each step's K and V to its cache and writes the attended values to `s.attn`,
    /// one row per token, each token attending only to its own sequence.
    fn attention(
        &self,
        l: usize,
        block: &Block,
        angles: &Angles,
        steps: &mut [Step],
        rows: &Rows,
        s: &mut Scratch,
    ) {
        let c = &self.config;
        let hd = c.head_dim;
        let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
        let width = q_dim + 2 * kv_dim;
        let eps = c.rms_eps as f32;
        let group: Vec<&QMatrix> = block.qkv.iter().collect();
        self.project(&group, &s.h, &mut s.qkv);
        let tasks = s
            .qkv
            .chunks_mut(TOKENS_PER_TASK * width)
            .enumerate()
            .collect();
        self.team.for_each(tasks, |(i, rows)| {
            for (j, row) in rows.chunks_exact_mut(width).enumerate() {
                if let Some(bias) = &block.qkv_bias {
                    add(row, bias);
                }
                let (q, kv) = row.split_at_mut(q_dim);
                let k = &mut kv[..kv_dim];
                if let (Some(qn), Some(kn)) = (&block.q_norm, &block.k_norm) {
                    rms_norm_in_place(q, qn, eps);
                    rms_norm_in_place(k, kn, eps);
                }
                let t = i * TOKENS_PER_TASK + j;
                for head in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
                    angles.rotate(c.rope_style, t, head);
                }
            }
        });
        let qkv = &s.qkv;
        for (step, &first) in steps.iter_mut().zip(&rows.first) {
            let mine = &qkv[first * width..(first + step.tokens.len()) * width];
            let part = |at: usize| -> Vec<&[f32]> {
                (mine.chunks_exact(width))
                    .map(|row| &row[at..at + kv_dim])
                    .collect()
            };
            step.cache.append(l, &part(q_dim), &part(q_dim + kv_dim));
        }
        let caches: Vec<&KvCache> = steps.iter().map(|s| &*s.cache).collect();
        let group = c.n_head / c.n_kv_head;
        let scale = c.attention_scale;
        let window = c.sliding_window.filter(|_| c.is_sliding(l));
        let kernels = self.kernels;
        // One task per token and KV head, for the query heads that share it (each key and
        // value is read once for all of them); a group is split while there are fewer tasks
        // than twice the threads, so one token's heads still spread over the threads.
        let tasks = rows.seq.len() * c.n_kv_head;
        let split = (2 * self.team.threads()).div_ceil(tasks).clamp(1, group);
        let per_task = group.div_ceil(split);
        let groups = s.attn.chunks_exact_mut(group * hd).enumerate();
        let heads = groups.flat_map(|(i, out)| {
            (out.chunks_mut(per_task * hd).enumerate()).map(move |(j, out)| (i, j, out))
        });
        self.team.for_each(heads.collect(), |(i, j, out)| {
            SCORES.with_borrow_mut(|scores| {
                let (t, kv) = (i / c.n_kv_head, i % c.n_kv_head);
                let (cache, pos) = (caches[rows.seq[t]], rows.pos[t]);
                let head = kv * group + j * per_task;
                let q = &qkv[t * width + head * hd..][..out.len()];
                let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let len = pos + 1 - first;
                scores.clear();
                scores.resize(out.len() / hd * len, 0.0);
                let at = Head {
                    layer: l,
                    kv_head: kv,
                };
                cache.scores(kernels, at, first..pos + 1, q, scale, scores);
                scores.chunks_exact_mut(len).for_each(softmax);
                out.fill(0.0);
                cache.add_values(kernels, at, first, scores, out);
            });
        });
    }
}

thread_local! {
    /// Each thread's attention scores, kept from task to task.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One sequence's part of a forward pass.
pub struct Step<'a> {
    /// Its new tokens, after the positions already in `cache`.
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    /// Whether the logits after its last token are wanted (not for a prompt's first chunks).
    pub logits: bool,
}

/// Where each token of a pass belongs: its step and its position in that sequence.
struct Rows {
    seq: Vec<usize>,
    pos: Vec<usize>,
    /// The first row of each step.
    first: Vec<usize>,
}

impl Rows {
    fn of(steps: &[Step]) -> Self {
        let mut rows = Self {
            seq: Vec::new(),
            pos: Vec::new(),
            first: Vec::with_capacity(steps.len()),
        };
        for (i, step) in steps.iter().enumerate() {
            rows.first.push(rows.seq.len());
            let start = step.cache.position();
            rows.seq.extend(std::iter::repeat_n(i, step.tokens.len()));
            rows.pos.extend(start..start + step.tokens.len());
        }
        rows
    }
}

/// The activations of one forward pass between the residual stream and the matrices, sized
/// for its tokens once and reused by every layer.
struct Scratch {
    /// The normalised residual stream, input of QKV and of the FFN.
    h: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    /// Output of the attention projection, then of the FFN.
    o: Vec<f32>,
    gu: Vec<f32>,
    m: Vec<f32>,
}

impl Scratch {
    /// Buffers for `seq` tokens of a model with FFN width `ff`.
    fn new(c: &ModelConfig, ff: usize, seq: usize) -> Self {
        Self {
            h: vec![0.0; seq * c.hidden],
            qkv: vec![0.0; seq * (c.q_dim() + 2 * c.kv_dim())],
            attn: vec![0.0; seq * c.q_dim()],
            o: vec![0.0; seq * c.hidden],
            gu: vec![0.0; seq * 2 * ff],
            m: vec![0.0; seq * ff],
        }
    }
}

/// Cosine and sine of each rotated pair's angle, per token.
struct Angles {
    pairs: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Angles {
    /// The angles of each token at its position in `positions`.
    fn new(table: &RopeTable, positions: &[usize]) -> Self {
        let angles: Vec<f32> = (positions.iter())
            .flat_map(|&p| table.inv_freq.iter().map(move |f| p as f32 * f))
            .collect();
        let m = table.magnitude;
        Self {
            pairs: table.inv_freq.len(),
            cos: angles.iter().map(|a| a.cos() * m).collect(),
            sin: angles.iter().map(|a| a.sin() * m).collect(),
        }
    }

    /// Rotates the first `2 · pairs` dimensions of one head of token `t`.
    fn rotate(&self, style: RopeStyle, t: usize, x: &mut [f32]) {
        let n = self.pairs;
        let (cos, sin) = (&self.cos[t * n..(t + 1) * n], &self.sin[t * n..(t + 1) * n]);
        for i in 0..n {
            let (a, b) = match style {
                RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                RopeStyle::Halves => (i, i + n),
            };
            let (x0, x1) = (x[a], x[b]);
            x[a] = x0 * cos[i] - x1 * sin[i];
            x[b] = x0 * sin[i] + x1 * cos[i];
        }
    }
}

/// `out[i] = act(gate[i]) · up[i]` for the FFN's activation. Written as plain arithmetic on
/// slices so the compiler vectorizes it: with the C library's `expf`, one call per value, it
/// took ~5% of a prompt's time.
fn gated(activation: Activation, gate: &[f32], up: &[f32], out: &mut [f32]) {
    let values = out.iter_mut().zip(gate).zip(up);
    match activation {
        Activation::Silu => values.for_each(|((o, &g), &u)| *o = g * sigmoid(g) * u),
        // 0.5 g (1 + tanh y) = g · sigmoid(2y), y = √(2/π) (g + 0.044715 g³).
        Activation::GeluTanh => values.for_each(|((o, &g), &u)| {
            const TWO_SQRT_2_OVER_PI: f32 = 1.595_769;
            *o = g * sigmoid(TWO_SQRT_2_OVER_PI * g * (1.0 + 0.044_715 * g * g)) * u;
        }),
    }
}

#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// `e^x` to within 3 ulp, branch-free: `x = n ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` by its
/// Taylor series to degree 6 (the first omitted term is below 1.2e-7 of the result), and `2^n`
/// written into the exponent bits. Inputs are clamped to where `e^x` is a normal float.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Reads tensors of a GGUF file by name, as stored; matrices go into one [`Arena`].
struct Tensors<'a> {
    file: &'a ModelFile,
    data: TensorReader<'a>,
    arena: Arc<Arena>,
}

impl<'a> Tensors<'a> {
    fn open(file: &'a ModelFile) -> Result<Self, LoadError> {
        let io = |e| LoadError::Io(file.path.clone(), e);
        // Room for every tensor of the file, each aligned and padded to whole tiles; what no
        // matrix uses is never backed.
        let bytes = (file.content.tensor_infos.values())
            .map(|info| {
                let rows = info.shape.dims().first().copied().unwrap_or(1).max(1);
                let bytes = Self::bytes(info);
                QMatrix::stored_bytes(rows, bytes.div_ceil(rows)) + arena::ALIGN
            })
            .sum();
        Ok(Self {
            file,
            data: TensorReader::new(file),
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

    /// Fills `out` with the stored bytes of tensor `name`.
    fn read(&mut self, name: &str, out: &mut [u8]) -> Result<(), LoadError> {
        Ok(self.data.read(name, out)?)
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
        QMatrix::read(&arena, format, rows, cols, |out| self.read(name, out))
            .expect("the arena holds every tensor of the file")
    }

    /// The angles of a rotary embedding, its factors tensor (if any) dividing each pair's
    /// frequency.
    fn rope_table(&mut self, rope: &Rope) -> Result<RopeTable, LoadError> {
        let factors = match &rope.factors {
            Some(name) => Some(self.vector(name, rope.dims / 2)?),
            None => None,
        };
        let inv_freq = (rope.frequencies(factors.as_deref()))
            .map_err(|e| self.unsupported(rope.factors.as_deref().unwrap_or_default(), e))?;
        Ok(RopeTable {
            inv_freq,
            magnitude: rope.magnitude,
        })
    }

    /// An F32 vector of `len` values.
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, LoadError> {
        let info = self.info(name)?;
        let (dtype, dims) = (info.ggml_dtype, info.shape.dims());
        if dtype != GgmlDType::F32 || dims != [len] {
            return Err(self.unsupported(name, format!("{dtype:?} {dims:?}, expected F32 [{len}]")));
        }
        let mut data = vec![0u8; 4 * len];
        self.read(name, &mut data)?;
        Ok(data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// Root-mean-square normalisation of each row of `x` (rows as long as `weight`).
fn rms_norm(team: &Team, x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    let tasks = (x.chunks(TOKENS_PER_TASK * n))
        .zip(out.chunks_mut(TOKENS_PER_TASK * n))
        .collect();
    team.for_each(tasks, |(x, out)| {
        for (x, out) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let mean = x.iter().map(|v| v * v).sum::<f32>() / n as f32;
            let norm = (mean + eps).sqrt();
            for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
                *o = v / norm * w;
            }
        }
    });
}

/// [`rms_norm`] of each run of `weight.len()` values of `x`, in place (per-head norms, and
/// the norms after attention and FFN).
fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    for row in x.chunks_exact_mut(n) {
        let mean = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let norm = (mean + eps).sqrt();
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = *v / norm * w;
        }
    }
}

/// Softmax in place; [`exp`] vectorizes where the C library's `expf` is one call per value.
fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    x.iter_mut().for_each(|v| *v = exp(*v - max));
    let sum: f32 = x.iter().sum();
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

fn add(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_three_ulp_of_the_c_library() {
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0 + 0.000_3;
            let (ours, libm) = (exp(x), x.exp());
            assert!(
                ((ours - libm) / libm).abs() < 3.6e-7,
                "exp({x}) = {ours}, expected {libm}"
            );
        }
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn gated_activations_match_their_definitions() {
        let gate: Vec<f32> = (-400..400).map(|i| i as f32 / 37.0).collect();
        let up: Vec<f32> = gate.iter().map(|g| 1.0 - g / 3.0).collect();
        let mut out = vec![0f32; gate.len()];
        gated(Activation::Silu, &gate, &up, &mut out);
        for ((&o, &g), &u) in out.iter().zip(&gate).zip(&up) {
            let want = g / (1.0 + (-g).exp()) * u;
            assert!((o - want).abs() <= 1e-6 * want.abs().max(1.0), "silu({g})");
        }
        gated(Activation::GeluTanh, &gate, &up, &mut out);
        for ((&o, &g), &u) in out.iter().zip(&gate).zip(&up) {
            let y = 0.797_884_6 * g * (1.0 + 0.044_715 * g * g);
            let want = 0.5 * g * (1.0 + y.tanh()) * u;
            assert!((o - want).abs() <= 1e-6 * want.abs().max(1.0), "gelu({g})");
        }
    }
}
