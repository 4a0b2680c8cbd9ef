//! The architectures the worker runs, as one transformer configured per family.
//!
//! Every supported family is a pre-norm decoder with rotary attention and a gated FFN; they
//! differ in a handful of switches read here from the GGUF metadata (llama.cpp's names):
//!
//! | family | rotary pairs | Q/K/V | Q/K norm | FFN | extras |
//! |---|---|---|---|---|---|
//! | `llama` | adjacent | separate | – | SiLU | Llama 3 `rope_freqs` divisors |
//! | `qwen2` | halves | separate, biased | – | SiLU | |
//! | `qwen3` | halves | separate | per head | SiLU | |
//! | `phi3` | halves | fused | – | SiLU, fused gate+up | rope factors short/long |
//! | `gemma3` | halves | separate | per head | GELU-tanh | embeddings × √width, norms after attention and FFN, sliding window on 5 of every 6 layers |
//!
//! Both compute paths — rbee's CPU kernels ([`crate::cpu::model`]) and Candle
//! ([`crate::llama`]) — are configured by the same [`ModelConfig`].

use crate::gguf::{Header, ModelFileError};

/// A model family the worker implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Phi3,
    Gemma3,
}

impl Arch {
    pub const ALL: [Arch; 5] = [
        Arch::Llama,
        Arch::Qwen2,
        Arch::Qwen3,
        Arch::Phi3,
        Arch::Gemma3,
    ];

    /// The family of `general.architecture`, if the worker implements it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Phi3 => "phi3",
            Self::Gemma3 => "gemma3",
        }
    }

    /// Every supported name, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

/// How the rotary embedding pairs up a head's dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimensions `2i` and `2i + 1` (llama: the GGUF converter permutes Q and K for it).
    Adjacent,
    /// Dimensions `i` and `i + n/2` (GPT-NeoX style: Qwen, Phi-3, Gemma).
    Halves,
}

/// The feed-forward activation applied to the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation.
    GeluTanh,
}

/// Rotary embedding of one kind of layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// Rotated dimensions at the start of each head (`rope.dimension_count`).
    pub dims: usize,
    pub base: f64,
    /// Positions are multiplied by this (linear scaling: `1 / rope.scaling.factor`).
    pub position_scale: f64,
    /// Tensor of per-pair frequency divisors (Llama 3 `rope_freqs`, Phi-3 rope factors).
    pub factors: Option<String>,
    /// Multiplies the rotated values' cosine and sine (Phi-3's long-context attention factor).
    pub magnitude: f32,
}

impl Rope {
    /// The angle per position of each rotated pair, divided by the values of the factors
    /// tensor when there is one (`factors` holds them, one per pair).
    pub fn frequencies(&self, factors: Option<&[f32]>) -> Result<Vec<f32>, String> {
        let pairs = self.dims / 2;
        let mut freq: Vec<f32> = (0..pairs)
            .map(|i| {
                (self.position_scale / self.base.powf(2.0 * i as f64 / self.dims as f64)) as f32
            })
            .collect();
        if let Some(factors) = factors {
            if factors.len() != pairs {
                return Err(format!("holds {} values, expected {pairs}", factors.len()));
            }
            for (f, d) in freq.iter_mut().zip(factors) {
                *f /= d;
            }
        }
        Ok(freq)
    }
}

/// The attention geometry a model file declares.
struct Heads {
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    hidden: usize,
}

impl Heads {
    fn from_header(file: &Header<'_>, name: &str) -> Result<Self, ModelFileError> {
        let key = |k: &str| format!("{name}.{k}");
        let n_head = file.arch_usize("attention.head_count")?;
        let hidden = file.arch_usize("embedding_length")?;
        if n_head == 0 || hidden == 0 {
            return Err(file.unsupported(format!("{hidden} wide model with {n_head} heads")));
        }
        let n_kv_head = file
            .integer(&key("attention.head_count_kv"))
            .map_or(n_head, |v| v as usize);
        if n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) {
            return Err(
                file.unsupported(format!("{n_head} heads cannot share {n_kv_head} KV heads"))
            );
        }
        let head_dim = match file.integer(&key("attention.key_length")) {
            Some(k) => k as usize,
            None if hidden.is_multiple_of(n_head) => hidden / n_head,
            None => {
                return Err(file.unsupported(format!("{hidden} wide model with {n_head} heads")));
            }
        };
        if let Some(v) = file.integer(&key("attention.value_length"))
            && v as usize != head_dim
        {
            return Err(file.unsupported(format!(
                "value heads of {v} differ from key heads of {head_dim}"
            )));
        }
        Ok(Self {
            n_head,
            n_kv_head,
            head_dim,
            hidden,
        })
    }
}

impl Rope {
    /// The rotary embedding of the full-attention layers, with the family's frequency factors.
    fn from_header(
        file: &Header<'_>,
        arch: Arch,
        name: &str,
        head_dim: usize,
        context_length: usize,
    ) -> Result<Self, ModelFileError> {
        let key = |k: &str| format!("{name}.{k}");
        let dims = file
            .integer(&key("rope.dimension_count"))
            .map_or(head_dim, |v| v as usize);
        if dims > head_dim || !dims.is_multiple_of(2) {
            return Err(file.unsupported(format!(
                "rotary dimensions {dims} do not fit heads of {head_dim}"
            )));
        }
        let base = file.float(&key("rope.freq_base")).unwrap_or(10_000.0);
        let scaling = file.string(&key("rope.scaling.type"));
        let factor = file.float(&key("rope.scaling.factor")).unwrap_or(1.0);
        let position_scale = match scaling.as_deref() {
            Some("linear") if factor > 0.0 => 1.0 / factor,
            None | Some("none") | Some("linear") => 1.0,
            // Llama 3's and Phi-3's scaling are carried by their factor tensors.
            Some("yarn") => {
                return Err(file.unsupported("rope scaling `yarn` is not supported"));
            }
            Some(_) => 1.0,
        };
        let mut rope = Rope {
            dims,
            base,
            position_scale,
            factors: None,
            magnitude: 1.0,
        };
        let has = |t: &str| file.has_tensor(t);
        match arch {
            Arch::Llama if has("rope_freqs.weight") => {
                rope.factors = Some("rope_freqs.weight".into());
            }
            Arch::Phi3 => {
                // llama.cpp uses the long factors when the context exceeds the one the model
                // was trained at, and then scales the rotated values up.
                let original = file
                    .integer(&key("rope.scaling.original_context_length"))
                    .map_or(context_length, |v| v as usize);
                let long = context_length > original && has("rope_factors_long.weight");
                if long {
                    rope.factors = Some("rope_factors_long.weight".into());
                    let scale = context_length as f64 / original as f64;
                    rope.magnitude = file
                        .float(&key("rope.scaling.attn_factor"))
                        .unwrap_or_else(|| (1.0 + scale.ln() / (original as f64).ln()).sqrt())
                        as f32;
                } else if has("rope_factors_short.weight") {
                    rope.factors = Some("rope_factors_short.weight".into());
                }
            }
            _ => {}
        }
        Ok(rope)
    }
}

/// Hyper-parameters of a model file, for every supported family.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    /// Width of each attention head (`attention.key_length`, else `hidden / n_head`).
    pub head_dim: usize,
    pub hidden: usize,
    pub context_length: usize,
    pub rms_eps: f64,
    pub rope_style: RopeStyle,
    /// Rotary embedding of full-attention layers.
    pub rope: Rope,
    /// Rotary embedding of sliding-window layers (Gemma 3: base 10 000).
    pub rope_local: Rope,
    /// Keys further back than this are not attended on sliding-window layers.
    pub sliding_window: Option<usize>,
    /// Every this many layers one attends to everything (the last of each group).
    pub sliding_pattern: usize,
    pub attention_scale: f32,
    /// Embeddings are multiplied by this (Gemma: √width).
    pub embedding_scale: Option<f32>,
    pub activation: Activation,
    pub qkv_bias: bool,
    pub qk_norm: bool,
    /// Norms applied to the attention and FFN outputs before the residual add (Gemma 3).
    pub post_norms: bool,
    pub fused_qkv: bool,
    pub fused_gate_up: bool,
}

impl ModelConfig {
    pub fn from_header(file: &Header<'_>) -> Result<Self, ModelFileError> {
        let name = file.architecture()?;
        let arch = Arch::from_name(&name).ok_or_else(|| {
            file.unsupported(format!(
                "architecture `{name}` is not supported (supported: {})",
                Arch::names()
            ))
        })?;
        let key = |k: &str| format!("{name}.{k}");
        let Heads {
            n_head,
            n_kv_head,
            head_dim,
            hidden,
        } = Heads::from_header(file, &name)?;
        let context_length = file.arch_usize("context_length")?;
        let rope = Rope::from_header(file, arch, &name, head_dim, context_length)?;
        let has = |t: &str| file.has_tensor(t);
        let gemma = arch == Arch::Gemma3;
        let rope_local = if gemma {
            Rope {
                base: 10_000.0,
                position_scale: 1.0,
                ..rope.clone()
            }
        } else {
            rope.clone()
        };
        let sliding_window = if gemma {
            file.integer(&key("attention.sliding_window"))
                .map(|w| w as usize)
                .filter(|&w| w > 0)
        } else {
            None
        };
        let head_scale = (1.0 / (head_dim as f64).sqrt()) as f32;
        Ok(Self {
            arch,
            n_layer: file.arch_usize("block_count")?,
            n_head,
            n_kv_head,
            head_dim,
            hidden,
            context_length,
            rms_eps: file
                .float(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(if gemma { 1e-6 } else { 1e-5 }),
            rope_style: match arch {
                Arch::Llama => RopeStyle::Adjacent,
                _ => RopeStyle::Halves,
            },
            rope,
            rope_local,
            sliding_window,
            sliding_pattern: 6,
            attention_scale: head_scale,
            embedding_scale: gemma.then(|| (hidden as f32).sqrt()),
            activation: if gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            // Like llama.cpp: biases and a fused QKV matrix wherever the file has them.
            qkv_bias: arch == Arch::Qwen2 || has("blk.0.attn_q.bias"),
            qk_norm: matches!(arch, Arch::Qwen3 | Arch::Gemma3),
            post_norms: gemma,
            fused_qkv: has("blk.0.attn_qkv.weight"),
            fused_gate_up: arch == Arch::Phi3 && !has("blk.0.ffn_gate.weight"),
        })
    }

    /// Fails naming the first tensor of `file` this configuration does not read: a layout the
    /// worker does not know would otherwise be computed wrongly without a word.
    pub fn check_tensors(&self, file: &Header<'_>) -> Result<(), ModelFileError> {
        let mut known: std::collections::HashSet<String> =
            ["token_embd.weight", "output_norm.weight", "output.weight"]
                .map(String::from)
                .into();
        known.extend(
            [&self.rope, &self.rope_local]
                .iter()
                .filter_map(|r| r.factors.clone()),
        );
        if self.arch == Arch::Phi3 {
            known.extend(
                ["rope_factors_long.weight", "rope_factors_short.weight"].map(String::from),
            );
        }
        let mut block = vec![
            "attn_norm.weight",
            "attn_output.weight",
            "ffn_norm.weight",
            "ffn_up.weight",
            "ffn_down.weight",
        ];
        block.extend(if self.fused_qkv {
            &["attn_qkv.weight"][..]
        } else {
            &["attn_q.weight", "attn_k.weight", "attn_v.weight"][..]
        });
        if self.qkv_bias {
            block.extend(["attn_q.bias", "attn_k.bias", "attn_v.bias"]);
        }
        if self.qk_norm {
            block.extend(["attn_q_norm.weight", "attn_k_norm.weight"]);
        }
        if self.post_norms {
            block.extend(["post_attention_norm.weight", "post_ffw_norm.weight"]);
        }
        if !self.fused_gate_up {
            block.push("ffn_gate.weight");
        }
        for i in 0..self.n_layer {
            known.extend(block.iter().map(|t| format!("blk.{i}.{t}")));
        }
        let mut names: Vec<&String> = file.content.tensor_infos.keys().collect();
        names.sort();
        match names.into_iter().find(|n| !known.contains(*n)) {
            Some(name) => Err(file.unsupported(format!(
                "tensor `{name}` is not part of the `{}` layout rbee implements",
                self.arch.name()
            ))),
            None => Ok(()),
        }
    }

    /// Whether layer `l` attends only within the sliding window.
    pub fn is_sliding(&self, l: usize) -> bool {
        self.sliding_window.is_some() && l % self.sliding_pattern < self.sliding_pattern - 1
    }

    /// The rotary embedding of layer `l`.
    pub fn rope_of(&self, l: usize) -> &Rope {
        if self.is_sliding(l) {
            &self.rope_local
        } else {
            &self.rope
        }
    }

    /// Memory one position takes in the CPU path's attention cache: keys and values of every
    /// layer, 8 bits each plus an f32 scale per 32 (`crate::cpu::kv`).
    pub fn kv_bytes_per_token(&self) -> u64 {
        (self.n_layer * 2 * self.kv_dim() * 36 / 32) as u64
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Fails unless `seq` tokens (at least one) fit after `start` positions in the context.
    pub fn check_sequence(&self, start: usize, seq: usize) -> candle_core::Result<()> {
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

    /// Whether query position `query` attends key position `key` on layer `l` (causal, and
    /// within the window on sliding layers, as llama.cpp masks: `query - key < window`).
    pub fn attends(&self, l: usize, query: usize, key: usize) -> bool {
        key <= query
            && match self.sliding_window {
                Some(w) if self.is_sliding(l) => query - key < w,
                _ => true,
            }
    }
}
