//! Pre-tokenization for byte-level BPE: the regular expressions that cut text into the
//! pieces BPE merges within, chosen by `tokenizer.ggml.pre`.
//!
//! Each stage splits every piece of the previous stage; the text between matches is kept as
//! pieces too, so no byte is ever dropped.

use fancy_regex::Regex;

/// GPT-2's split: contractions, letters, numbers, other symbols, whitespace.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3 style: case-insensitive contractions, numbers in groups of up to three.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2 style: like Llama 3 with single digits.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Every digit on its own (applied before GPT-2's split by SmolLM and StarCoder vocabularies).
const DIGITS: &str = r"\p{N}";
/// llama.cpp's `default` (a `gpt2` vocabulary whose pre-tokenizer is not named): runs of
/// punctuation, then GPT-2's split, then numbers, then runs of three digits.
const DEFAULT: [&str; 4] = [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"];

/// The `tokenizer.ggml.pre` names the worker implements.
pub(super) const SUPPORTED: &str = "default, gpt2, gpt-2, llama-bpe, llama3, llama-v3, qwen2, deepseek-r1-qwen, smollm, starcoder, refact";

#[derive(Debug)]
pub(super) struct PreTokenizer {
    stages: Vec<Regex>,
    /// A whole piece that is in the vocabulary is one token, whatever the merges say
    /// (Llama 3's tokenizer).
    pub(super) ignore_merges: bool,
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` name (a missing one is llama.cpp's
    /// `default`); `None` for a name the worker does not implement.
    pub(super) fn for_name(name: Option<&str>) -> Option<Self> {
        let patterns: &[&str] = match name.unwrap_or("default") {
            "smollm" | "starcoder" | "refact" => &[DIGITS, GPT2],
            "llama3" | "llama-v3" | "llama-bpe" => &[LLAMA3],
            "qwen2" | "deepseek-r1-qwen" => &[QWEN2],
            "gpt2" | "gpt-2" => &[GPT2],
            "default" => &DEFAULT,
            _ => return None,
        };
        Some(Self {
            stages: patterns
                .iter()
                .map(|p| Regex::new(p).expect("built-in pre-tokenizer pattern compiles"))
                .collect(),
            ignore_merges: patterns == [LLAMA3],
        })
    }

    pub(super) fn none() -> Self {
        Self {
            stages: Vec::new(),
            ignore_merges: false,
        }
    }

    pub(super) fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for re in &self.stages {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                split_keeping_gaps(re, piece, &mut next);
            }
            pieces = next;
        }
        pieces.retain(|p| !p.is_empty());
        pieces
    }
}

fn split_keeping_gaps<'t>(re: &Regex, text: &'t str, out: &mut Vec<&'t str>) {
    let mut last = 0;
    for m in re.find_iter(text) {
        // A regex that fails mid-text (backtrack limit) leaves the rest as one piece.
        let Ok(m) = m else { break };
        if m.start() > last {
            out.push(&text[last..m.start()]);
        }
        if m.end() > m.start() {
            out.push(m.as_str());
        }
        last = m.end();
    }
    if last < text.len() {
        out.push(&text[last..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_split_keeps_leading_spaces_on_words() {
        let p = PreTokenizer::for_name(Some("gpt2")).unwrap();
        assert_eq!(
            p.split("Hello world, it's 2024!"),
            vec!["Hello", " world", ",", " it", "'s", " 2024", "!"]
        );
    }

    #[test]
    fn trailing_whitespace_run_leaves_one_space_for_the_next_word() {
        let p = PreTokenizer::for_name(Some("gpt2")).unwrap();
        assert_eq!(p.split("a   b"), vec!["a", "  ", " b"]);
        assert_eq!(p.split("end  "), vec!["end", "  "]);
    }

    #[test]
    fn smollm_splits_every_digit() {
        let p = PreTokenizer::for_name(Some("smollm")).unwrap();
        assert_eq!(p.split("in 2024"), vec!["in", " ", "2", "0", "2", "4"]);
    }

    #[test]
    fn default_splits_punctuation_runs_and_numbers_in_threes() {
        let p = PreTokenizer::for_name(Some("default")).unwrap();
        assert_eq!(
            p.split("a...b 123456"),
            vec!["a", "...", "b", " ", "123", "456"]
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(PreTokenizer::for_name(Some("tekken")).is_none());
    }

    #[test]
    fn no_byte_is_lost() {
        for name in [
            None,
            Some("gpt2"),
            Some("smollm"),
            Some("llama3"),
            Some("qwen2"),
        ] {
            let p = PreTokenizer::for_name(name).unwrap();
            let text = "Tabs\tand\r\nnewlines   🐈 ünï 12345 'LL";
            assert_eq!(p.split(text).concat(), text, "{name:?}");
        }
    }
}
