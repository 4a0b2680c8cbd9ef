//! Small random-weight GGUF files for the architectures no small real file is reachable for
//! offline (Qwen 2, Qwen 3, Phi-3, Llama 3 style rope), with exactly the tensor names, shapes
//! and metadata llama.cpp's loader expects for each, and a real tokenizer of the right kind:
//! SmolLM2's byte-level BPE vocabulary under the family's pre-tokenizer name, or Gemma's
//! SentencePiece vocabulary for Phi-3.
//!
//! The weights are seeded random numbers scaled so activations stay of order one through the
//! layers (uniform with the variance of `1 / fan_in`), so logits spread over several units
//! and a wrong operation shows.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synthetic {
    /// `llama` with a `rope_freqs` tensor (Llama 3.1 scaling) and the `llama-bpe` tokenizer.
    Llama3,
    Qwen2,
    Qwen3,
    /// Fused QKV and gate/up, long and short rope factors (the long ones in use).
    Phi3,
}

const HIDDEN: usize = 128;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FF: usize = 256;
const LAYERS: usize = 2;

impl Synthetic {
    fn arch(self) -> &'static str {
        match self {
            Self::Llama3 => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Phi3 => "phi3",
        }
    }

    /// Qwen 3's heads are not `hidden / heads` wide, as in the real models.
    fn head_dim(self) -> usize {
        match self {
            Self::Qwen3 => 64,
            _ => HIDDEN / HEADS,
        }
    }

    fn context(self) -> u32 {
        match self {
            // Longer than the original context: llama.cpp and rbee both use the long factors.
            Self::Phi3 => 4096,
            _ => 2048,
        }
    }
}

struct Weights {
    rng: StdRng,
    tensors: Vec<(String, QTensor)>,
}

impl Weights {
    /// A tensor of `shape` in `dtype`, from `values`.
    fn push(&mut self, name: &str, values: Vec<f32>, shape: &[usize], dtype: GgmlDType) {
        let t = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        self.tensors.push((name.to_owned(), q));
    }

    /// Uniform values in `offset ± scale`.
    fn random(&mut self, name: &str, shape: &[usize], scale: f32, offset: f32, dtype: GgmlDType) {
        let n: usize = shape.iter().product();
        let values = (0..n)
            .map(|_| offset + scale * self.rng.random_range(-1.0f32..1.0))
            .collect();
        self.push(name, values, shape, dtype);
    }

    fn uniform(&mut self, name: &str, shape: &[usize], scale: f32, offset: f32) {
        self.random(name, shape, scale, offset, GgmlDType::F32);
    }

    /// A `rows x cols` matrix (GGUF dims `[cols, rows]`).
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) {
        let scale = (3.0 / cols as f32).sqrt();
        self.uniform(name, &[rows, cols], scale, 0.0);
    }

    fn norm(&mut self, name: &str, len: usize) {
        self.uniform(name, &[len], 0.2, 1.0);
    }

    /// An embedding table (and output head), in Q8_0 to keep the file small.
    fn table(&mut self, name: &str, rows: usize, scale: f32) {
        self.random(name, &[rows, HIDDEN], scale, 0.0, GgmlDType::Q8_0);
    }

    fn fixed(&mut self, name: &str, values: Vec<f32>) {
        let len = values.len();
        self.push(name, values, &[len], GgmlDType::F32);
    }
}

/// Llama 3.1's frequency divisors (factor 8, low 1, high 4, original context 8192), as the
/// GGUF converter writes them into `rope_freqs`.
fn llama3_rope_freqs(base: f64, dims: usize) -> Vec<f32> {
    let (factor, low, high, original) = (8.0f64, 1.0f64, 4.0f64, 8192.0f64);
    (0..dims / 2)
        .map(|i| {
            let freq = base.powf(-2.0 * i as f64 / dims as f64);
            let wavelength = 2.0 * std::f64::consts::PI / freq;
            if wavelength < original / high {
                1.0
            } else if wavelength > original / low {
                factor as f32
            } else {
                let smooth = (original / wavelength - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

/// The tokenizer metadata of `donor`, with `pre` as its pre-tokenizer name when given.
fn tokenizer_from(donor: &Path, pre: Option<&str>) -> Vec<(String, Value)> {
    // The whole header: an opened `ModelFile` keeps its vocabulary in its tokenizer.
    let mut reader = std::fs::File::open(donor).unwrap();
    let header = candle_core::quantized::gguf_file::Content::read(&mut reader).unwrap();
    let mut out: Vec<(String, Value)> = header
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer.ggml."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(pre) = pre {
        out.retain(|(k, _)| k != "tokenizer.ggml.pre");
        out.push(("tokenizer.ggml.pre".into(), Value::String(pre.into())));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Appends `texts` to the vocabulary of `tokenizer` as control tokens.
fn append_control_tokens(tokenizer: &mut [(String, Value)], texts: &[&str]) {
    for (key, value) in tokenizer.iter_mut() {
        let entry: fn(&str) -> Value = match key.as_str() {
            "tokenizer.ggml.tokens" => |t| Value::String(t.into()),
            "tokenizer.ggml.scores" => |_| Value::F32(0.0),
            "tokenizer.ggml.token_type" => |_| Value::I32(3),
            _ => continue,
        };
        let Value::Array(values) = value else {
            panic!("{key} is not an array");
        };
        values.extend(texts.iter().map(|t| entry(t)));
    }
}

fn vocab_size(tokenizer: &[(String, Value)]) -> usize {
    let tokens = tokenizer.iter().find(|(k, _)| k == "tokenizer.ggml.tokens");
    match tokens.map(|(_, v)| v) {
        Some(Value::Array(tokens)) => tokens.len(),
        _ => panic!("the donor has no vocabulary"),
    }
}

/// Writes the synthetic model of `kind` to `path`, with the tokenizer of `bpe_donor` (a
/// byte-level BPE file) or `spm_donor` (a SentencePiece file, for Phi-3).
pub fn write(kind: Synthetic, path: &Path, bpe_donor: &Path, spm_donor: &Path) {
    let arch = kind.arch();
    let hd = kind.head_dim();
    let (q_dim, kv_dim) = (HEADS * hd, KV_HEADS * hd);
    let base = 10_000.0f64;
    let mut tokenizer = match kind {
        Synthetic::Llama3 => tokenizer_from(bpe_donor, Some("llama-bpe")),
        Synthetic::Qwen2 | Synthetic::Qwen3 => tokenizer_from(bpe_donor, Some("qwen2")),
        Synthetic::Phi3 => tokenizer_from(spm_donor, None),
    };
    if kind == Synthetic::Phi3 {
        // Llama-style SentencePiece: a space in front of the text.
        tokenizer.retain(|(k, _)| k != "tokenizer.ggml.add_space_prefix");
        tokenizer.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(true)));
        // Phi-3's own special tokens, which llama.cpp looks up for a model named Phi-3
        // (Gemma's vocabulary has `<s>`, `</s>` and `<unk>` already).
        let phi3 = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"];
        append_control_tokens(&mut tokenizer, &phi3);
    }
    let vocab = vocab_size(&tokenizer);
    let key = |k: &str| format!("{arch}.{k}");
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        // Phi-3's tokenizer depends on the name: whitespace after special tokens is dropped.
        (
            "general.name".into(),
            Value::String(match kind {
                Synthetic::Phi3 => "rbee synthetic Phi-3".into(),
                _ => "rbee synthetic model".into(),
            }),
        ),
        (key("context_length"), Value::U32(kind.context())),
        (key("embedding_length"), Value::U32(HIDDEN as u32)),
        (key("feed_forward_length"), Value::U32(FF as u32)),
        (key("block_count"), Value::U32(LAYERS as u32)),
        (key("attention.head_count"), Value::U32(HEADS as u32)),
        (key("attention.head_count_kv"), Value::U32(KV_HEADS as u32)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (key("rope.freq_base"), Value::F32(base as f32)),
        (key("rope.dimension_count"), Value::U32(hd as u32)),
    ];
    if kind == Synthetic::Qwen3 {
        metadata.push((key("attention.key_length"), Value::U32(hd as u32)));
        metadata.push((key("attention.value_length"), Value::U32(hd as u32)));
    }
    if kind == Synthetic::Phi3 {
        metadata.push((
            key("rope.scaling.original_context_length"),
            Value::U32(1024),
        ));
        metadata.push((key("rope.scaling.attn_factor"), Value::F32(1.1902)));
    }
    metadata.extend(tokenizer);

    let mut w = Weights {
        rng: StdRng::seed_from_u64(u64::from(kind.context()) + arch.len() as u64),
        tensors: Vec::new(),
    };
    w.table("token_embd.weight", vocab, 1.0);
    w.norm("output_norm.weight", HIDDEN);
    // Qwen 3 and Phi-3 tie the output head to the embeddings, the others have their own.
    if matches!(kind, Synthetic::Llama3 | Synthetic::Qwen2) {
        w.table("output.weight", vocab, 4.0 * (3.0 / HIDDEN as f32).sqrt());
    }
    match kind {
        Synthetic::Llama3 => w.fixed("rope_freqs.weight", llama3_rope_freqs(base, hd)),
        Synthetic::Phi3 => {
            let mut long = Vec::new();
            let mut short = Vec::new();
            for i in 0..hd / 2 {
                short.push(1.0 + 0.05 * i as f32);
                long.push(1.0 + 0.5 * i as f32);
            }
            w.fixed("rope_factors_long.weight", long);
            w.fixed("rope_factors_short.weight", short);
        }
        _ => {}
    }
    for i in 0..LAYERS {
        let name = |t: &str| format!("blk.{i}.{t}");
        w.norm(&name("attn_norm.weight"), HIDDEN);
        if kind == Synthetic::Phi3 {
            w.matrix(&name("attn_qkv.weight"), q_dim + 2 * kv_dim, HIDDEN);
        } else {
            w.matrix(&name("attn_q.weight"), q_dim, HIDDEN);
            w.matrix(&name("attn_k.weight"), kv_dim, HIDDEN);
            w.matrix(&name("attn_v.weight"), kv_dim, HIDDEN);
        }
        if kind == Synthetic::Qwen2 {
            w.uniform(&name("attn_q.bias"), &[q_dim], 0.5, 0.0);
            w.uniform(&name("attn_k.bias"), &[kv_dim], 0.5, 0.0);
            w.uniform(&name("attn_v.bias"), &[kv_dim], 0.5, 0.0);
        }
        if kind == Synthetic::Qwen3 {
            w.norm(&name("attn_q_norm.weight"), hd);
            w.norm(&name("attn_k_norm.weight"), hd);
        }
        w.matrix(&name("attn_output.weight"), HIDDEN, q_dim);
        w.norm(&name("ffn_norm.weight"), HIDDEN);
        if kind == Synthetic::Phi3 {
            w.matrix(&name("ffn_up.weight"), 2 * FF, HIDDEN);
        } else {
            w.matrix(&name("ffn_gate.weight"), FF, HIDDEN);
            w.matrix(&name("ffn_up.weight"), FF, HIDDEN);
        }
        w.matrix(&name("ffn_down.weight"), HIDDEN, FF);
    }
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = w.tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut out = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
}
