//! Tokenizers built from GGUF metadata alone — no `tokenizer.json`, no download.
//!
//! Two families cover the llama-style models rbee serves:
//! - `tokenizer.ggml.model = gpt2`: byte-level BPE with merge ranks (SmolLM2, Llama 3, Qwen).
//!   Text is split by the pre-tokenizer named in `tokenizer.ggml.pre`, each piece is mapped
//!   byte-by-byte to printable characters, and pieces are merged by rank.
//! - `tokenizer.ggml.model = llama`: SentencePiece-BPE with scores and byte fallback
//!   (TinyLlama, Llama 2, Mistral). Spaces become `▁` and pieces merge by vocabulary score.
//!
//! Control and user-defined tokens written literally in the text (`<|im_start|>`, as chat
//! templates produce) are matched before either algorithm runs, longest first.

mod byte_level;
mod merge;
mod pretokenizer;
mod vocab;

use std::borrow::Cow;
use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use self::merge::{MergePriority, merge_pieces};
use self::pretokenizer::PreTokenizer;
use self::vocab::Vocab;

/// Why a tokenizer could not be built from the metadata.
#[derive(Debug, thiserror::Error)]
#[error("tokenizer metadata: {0}")]
pub struct TokenizerError(String);

/// The kind of a vocabulary entry (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_gguf(v: i64) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    ByteLevelBpe,
    SentencePiece,
}

/// A tokenizer for one model.
#[derive(Debug)]
pub struct Tokenizer {
    family: Family,
    vocab: Vocab,
    types: Vec<TokenType>,
    /// Byte-level BPE: `(left id, right id) -> rank`.
    ranks: HashMap<(u32, u32), u32>,
    /// SentencePiece: score per token id.
    scores: Vec<f32>,
    /// Literal-matched tokens, longest first.
    specials: Vec<u32>,
    /// Special tokens after which whitespace in the text is dropped (sorted).
    rstrip: Vec<u32>,
    pretokenizer: PreTokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    unknown: Option<u32>,
    end_of_generation: Vec<u32>,
    add_bos: bool,
    add_space_prefix: bool,
}

fn meta<'a>(md: &'a HashMap<String, Value>, key: &str) -> Option<&'a Value> {
    md.get(key)
}

fn meta_u32(md: &HashMap<String, Value>, key: &str) -> Option<u32> {
    meta(md, key).and_then(|v| match v {
        Value::U32(x) => Some(*x),
        Value::I32(x) => u32::try_from(*x).ok(),
        Value::U64(x) => u32::try_from(*x).ok(),
        Value::I64(x) => u32::try_from(*x).ok(),
        _ => None,
    })
}

fn meta_bool(md: &HashMap<String, Value>, key: &str) -> Option<bool> {
    meta(md, key).and_then(|v| v.to_bool().ok())
}

/// Removes the array `key` from `md`, so its values are freed as they are read.
fn take_array(md: &mut HashMap<String, Value>, key: &str) -> Result<Vec<Value>, TokenizerError> {
    match md.remove(key) {
        Some(Value::Array(values)) => Ok(values),
        Some(_) => Err(TokenizerError(format!("`{key}` is not an array"))),
        None => Err(TokenizerError(format!("`{key}` is missing"))),
    }
}

fn value_as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::F32(x) => Some(f64::from(*x)),
        Value::F64(x) => Some(*x),
        Value::I32(x) => Some(f64::from(*x)),
        Value::U32(x) => Some(f64::from(*x)),
        Value::I8(x) => Some(f64::from(*x)),
        Value::U8(x) => Some(f64::from(*x)),
        Value::I16(x) => Some(f64::from(*x)),
        Value::U16(x) => Some(f64::from(*x)),
        Value::I64(x) => Some(*x as f64),
        Value::U64(x) => Some(*x as f64),
        _ => None,
    }
}

/// Removes the numeric array `key` from `md`; `None` when it is missing or not numeric.
fn take_numbers(md: &mut HashMap<String, Value>, key: &str) -> Option<Vec<f64>> {
    let values = take_array(md, key).ok()?;
    values.iter().map(value_as_f64).collect()
}

/// Token texts that end generation besides the declared EOS, as llama.cpp lists them: the
/// ends of turns of the chat formats, and the fill-in-the-middle separators that start
/// another file.
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "<end_of_utterance>",
    "<eos>",
    "</s>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<reponame>",
];

/// How text is cut before tokenization: by the file's `tokenizer.ggml.pre` for byte-level
/// BPE; SentencePiece runs on the whole text (llama.cpp ignores `pre` for it too).
fn pretokenizer_for(
    md: &HashMap<String, Value>,
    family: Family,
) -> Result<PreTokenizer, TokenizerError> {
    if family == Family::SentencePiece {
        return Ok(PreTokenizer::none());
    }
    let pre = meta(md, "tokenizer.ggml.pre").and_then(|v| v.to_string().ok());
    PreTokenizer::for_name(pre.map(String::as_str)).ok_or_else(|| {
        TokenizerError(format!(
            "pre-tokenizer `{}` is not supported (supported: {})",
            pre.map_or("", String::as_str),
            pretokenizer::SUPPORTED
        ))
    })
}

/// Ranks of the byte-level BPE merges, by the ids of the pair they join.
fn merge_ranks(
    md: &mut HashMap<String, Value>,
    vocab: &Vocab,
) -> Result<HashMap<(u32, u32), u32>, TokenizerError> {
    let mut ranks = HashMap::new();
    for (rank, merge) in take_array(md, "tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
    {
        let Value::String(merge) = merge else {
            return Err(TokenizerError(
                "`tokenizer.ggml.merges` holds a non-string".into(),
            ));
        };
        let (l, r) = merge
            .split_once(' ')
            .ok_or_else(|| TokenizerError(format!("malformed merge `{merge}`")))?;
        if let (Some(l), Some(r)) = (vocab.id(l), vocab.id(r)) {
            ranks.entry((l, r)).or_insert(rank as u32);
        }
    }
    Ok(ranks)
}

/// Control and user-defined tokens, longest text first so the longest match wins.
fn specials_longest_first(vocab: &Vocab, types: &[TokenType]) -> Vec<u32> {
    let mut specials: Vec<(usize, u32)> = vocab
        .iter()
        .filter(|&(id, t)| {
            matches!(
                types[id as usize],
                TokenType::Control | TokenType::UserDefined
            ) && !t.is_empty()
        })
        .map(|(id, t)| (t.len(), id))
        .collect();
    specials.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    specials.into_iter().map(|(_, id)| id).collect()
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata. The
    /// vocabulary's arrays (tokens, scores, types, merges) are taken out of `md`: the
    /// tokenizer holds the only copy.
    pub fn from_gguf_metadata(md: &mut HashMap<String, Value>) -> Result<Self, TokenizerError> {
        let model = meta(md, "tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| TokenizerError("`tokenizer.ggml.model` is missing".into()))?;
        let family = match model.as_str() {
            "gpt2" => Family::ByteLevelBpe,
            "llama" => Family::SentencePiece,
            other => {
                return Err(TokenizerError(format!(
                    "tokenizer model `{other}` is not supported (supported: gpt2, llama)"
                )));
            }
        };
        let vocab = Vocab::from_values(take_array(md, "tokenizer.ggml.tokens")?)?;
        let n = vocab.len();
        let mut types: Vec<TokenType> = match take_numbers(md, "tokenizer.ggml.token_type") {
            Some(t) if t.len() == n => t
                .into_iter()
                .map(|v| TokenType::from_gguf(v as i64))
                .collect(),
            _ => vec![TokenType::Normal; n],
        };
        let (ranks, scores) = match family {
            Family::ByteLevelBpe => (merge_ranks(md, &vocab)?, Vec::new()),
            Family::SentencePiece => match take_numbers(md, "tokenizer.ggml.scores") {
                Some(s) if s.len() == n => {
                    (HashMap::new(), s.into_iter().map(|v| v as f32).collect())
                }
                _ => return Err(TokenizerError("`tokenizer.ggml.scores` is missing".into())),
            },
        };
        let check = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let bos = check(meta_u32(md, "tokenizer.ggml.bos_token_id"));
        let eos = check(meta_u32(md, "tokenizer.ggml.eos_token_id"));
        let unknown = check(meta_u32(md, "tokenizer.ggml.unknown_token_id"));
        let mut end_of_generation: Vec<u32> = eos.into_iter().collect();
        end_of_generation.extend(check(meta_u32(md, "tokenizer.ggml.eot_token_id")));
        for text in END_OF_GENERATION_TEXTS {
            if let Some(id) = vocab.id(text) {
                end_of_generation.push(id);
                // Like llama.cpp: an end token is a control token (it renders as nothing).
                types[id as usize] = TokenType::Control;
            }
        }
        end_of_generation.sort_unstable();
        end_of_generation.dedup();

        let specials = specials_longest_first(&vocab, &types);
        let rstrip = strips_after_specials(md, &vocab, &specials);

        let pretokenizer = pretokenizer_for(md, family)?;
        let is_spm = family == Family::SentencePiece;
        Ok(Self {
            family,
            vocab,
            types,
            ranks,
            scores,
            specials,
            rstrip,
            pretokenizer,
            bos,
            eos,
            unknown,
            end_of_generation,
            add_bos: meta_bool(md, "tokenizer.ggml.add_bos_token").unwrap_or(is_spm),
            add_space_prefix: meta_bool(md, "tokenizer.ggml.add_space_prefix").unwrap_or(is_spm),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos
    }

    /// Token text of `id` as stored in the vocabulary (`<|im_end|>`, `Ġthe`, `▁the`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// The id of the token whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    /// Whether generating `id` ends the answer (EOS, end of turn).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.binary_search(&id).is_ok()
    }

    /// Every token that ends the answer, in id order.
    pub fn end_of_generation(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// Whether `id` is a control token (rendered as nothing, never written by text).
    pub fn is_control(&self, id: u32) -> bool {
        matches!(
            self.types.get(id as usize),
            Some(TokenType::Control | TokenType::Unused)
        )
    }

    /// Tokenizes `text` as plain text: no control tokens, no BOS, no leading space added.
    pub fn encode_plain(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_ordinary(text, false, &mut out);
        out
    }

    /// Whether the model expects a BOS token in front of every prompt.
    pub fn adds_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Tokenizes `text`; control tokens written in it are recognised. Prepends BOS when the
    /// model asks for it and the text does not already start with it.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        // SentencePiece prefixes a space to text at the start and after each special token.
        let mut after_special = true;
        for segment in self.split_specials(text) {
            match segment {
                Segment::Special(id) => out.push(id),
                Segment::Text(t) => self.encode_ordinary(t, after_special, &mut out),
            }
            after_special = matches!(segment, Segment::Special(_));
        }
        if self.adds_bos()
            && let Some(bos) = self.bos
            && out.first() != Some(&bos)
        {
            out.insert(0, bos);
        }
        out
    }

    /// The bytes token `id` stands for. Control tokens render as nothing; concatenating the
    /// bytes of a sequence gives its text, possibly split inside a multi-byte character.
    pub fn token_bytes(&self, id: u32) -> Cow<'_, [u8]> {
        let Some(text) = self.vocab.text(id) else {
            return Cow::Borrowed(&[]);
        };
        match self.types[id as usize] {
            TokenType::Control | TokenType::Unused => Cow::Borrowed(&[]),
            TokenType::UserDefined => Cow::Borrowed(text.as_bytes()),
            TokenType::Byte => match parse_byte_token(text) {
                Some(b) => Cow::Owned(vec![b]),
                None => Cow::Borrowed(text.as_bytes()),
            },
            TokenType::Normal | TokenType::Unknown => match self.family {
                Family::ByteLevelBpe => Cow::Owned(byte_level::decode(text)),
                Family::SentencePiece => Cow::Owned(text.replace('\u{2581}', " ").into_bytes()),
            },
        }
    }

    /// Decodes a whole sequence (invalid UTF-8 becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id).into_owned())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Splits `text` at every literal occurrence of a control or user-defined token. Like
    /// llama.cpp, the longest tokens are cut out first, everywhere, then the next longest in
    /// what remains (which differs from leftmost-first where two tokens overlap); whitespace
    /// after a token that strips it goes as the token is cut out, before shorter tokens (a
    /// newline token, say) could claim it.
    fn split_specials<'t>(&self, text: &'t str) -> Vec<Segment<'t>> {
        let mut segments = vec![Segment::Text(text)];
        for &id in &self.specials {
            let special = self.vocab.text(id).unwrap_or_default();
            if !text.contains(special) {
                continue;
            }
            let mut next = Vec::with_capacity(segments.len() + 2);
            for segment in segments {
                let Segment::Text(mut rest) = segment else {
                    next.push(segment);
                    continue;
                };
                let strips = self.rstrip.binary_search(&id).is_ok();
                while let Some(at) = rest.find(special) {
                    if at > 0 {
                        next.push(Segment::Text(&rest[..at]));
                    }
                    next.push(Segment::Special(id));
                    rest = &rest[at + special.len()..];
                    if strips {
                        // C's `isspace`, as llama.cpp strips it.
                        rest = rest
                            .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
                    }
                }
                if !rest.is_empty() {
                    next.push(Segment::Text(rest));
                }
            }
            segments = next;
        }
        segments
    }

    fn encode_ordinary(&self, text: &str, space_prefix: bool, out: &mut Vec<u32>) {
        match self.family {
            Family::ByteLevelBpe => {
                for piece in self.pretokenizer.split(text) {
                    let mapped = byte_level::encode(piece);
                    if self.pretokenizer.ignore_merges
                        && let Some(id) = self.vocab.id(&mapped)
                    {
                        out.push(id);
                        continue;
                    }
                    let rules = RankRules(self);
                    for range in merge_pieces(&mapped, &rules) {
                        self.push_piece(&mapped[range], out);
                    }
                }
            }
            Family::SentencePiece => {
                let mut normalized = String::with_capacity(text.len() + 3);
                if self.add_space_prefix && space_prefix {
                    normalized.push('\u{2581}');
                }
                normalized.push_str(&text.replace(' ', "\u{2581}"));
                let rules = ScoreRules(self);
                for range in merge_pieces(&normalized, &rules) {
                    self.push_piece(&normalized[range], out);
                }
            }
        }
    }

    /// Appends the id of `piece`, falling back to its bytes (or characters) when it is not
    /// in the vocabulary.
    fn push_piece(&self, piece: &str, out: &mut Vec<u32>) {
        if let Some(id) = self.vocab.id(piece) {
            out.push(id);
            return;
        }
        match self.family {
            Family::SentencePiece => {
                for b in piece.bytes() {
                    match self.vocab.id(&format!("<0x{b:02X}>")) {
                        Some(id) => out.push(id),
                        None => out.extend(self.unknown),
                    }
                }
            }
            Family::ByteLevelBpe => {
                for ch in piece.chars() {
                    match self.vocab.id(ch.encode_utf8(&mut [0; 4])) {
                        Some(id) => out.push(id),
                        None => out.extend(self.unknown),
                    }
                }
            }
        }
    }
}

/// The special tokens after which whitespace is dropped from the text. llama.cpp does this
/// for models whose `general.name` says Phi-3 (their chat template puts a newline after each
/// role token, which the original tokenizer strips): every special token but `<s>`, `<unk>`
/// and `<|endoftext|>`, and `</s>` even when it is not special.
fn strips_after_specials(md: &HashMap<String, Value>, vocab: &Vocab, specials: &[u32]) -> Vec<u32> {
    let name = meta(md, "general.name")
        .and_then(|v| v.to_string().ok())
        .map(|n| n.to_lowercase())
        .unwrap_or_default();
    if !(name.contains("phi-3") || name.contains("phi3")) {
        return Vec::new();
    }
    let keep: Vec<u32> = ["<s>", "<unk>", "<|endoftext|>"]
        .iter()
        .filter_map(|t| vocab.id(t))
        .collect();
    let mut ids: Vec<u32> = (specials.iter().copied())
        .chain(vocab.id("</s>"))
        .filter(|id| !keep.contains(id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[derive(Clone, Copy)]
enum Segment<'t> {
    Text(&'t str),
    Special(u32),
}

fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

struct RankRules<'a>(&'a Tokenizer);

impl MergePriority for RankRules<'_> {
    fn priority(&self, left: &str, right: &str) -> Option<f64> {
        let l = self.0.vocab.id(left)?;
        let r = self.0.vocab.id(right)?;
        self.0.ranks.get(&(l, r)).map(|&rank| f64::from(rank))
    }
}

struct ScoreRules<'a>(&'a Tokenizer);

impl MergePriority for ScoreRules<'_> {
    fn priority(&self, left: &str, right: &str) -> Option<f64> {
        let mut joined = String::with_capacity(left.len() + right.len());
        joined.push_str(left);
        joined.push_str(right);
        let id = self.0.vocab.id(&joined)? as usize;
        match self.0.types[id] {
            TokenType::Normal | TokenType::UserDefined => Some(-f64::from(self.0.scores[id])),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
