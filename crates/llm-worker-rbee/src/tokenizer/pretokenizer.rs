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

#[derive(Debug)]
pub(super) struct PreTokenizer {
    stages: Vec<Regex>,
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` name; unknown names get GPT-2's.
    pub(super) fn for_name(name: Option<&str>) -> Self {
        let patterns: &[&str] = match name {
            Some("smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone") => {
                &[DIGITS, GPT2]
            }
            Some("llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral") => &[LLAMA3],
            Some("qwen2" | "deepseek-r1-qwen") => &[QWEN2],
            _ => &[GPT2],
        };
        Self {
            stages: patterns
                .iter()
                .map(|p| Regex::new(p).expect("built-in pre-tokenizer pattern compiles"))
                .collect(),
        }
    }

    pub(super) fn none() -> Self {
        Self { stages: Vec::new() }
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
        let p = PreTokenizer::for_name(None);
        assert_eq!(
            p.split("Hello world, it's 2024!"),
            vec!["Hello", " world", ",", " it", "'s", " 2024", "!"]
        );
    }

    #[test]
    fn trailing_whitespace_run_leaves_one_space_for_the_next_word() {
        let p = PreTokenizer::for_name(None);
        assert_eq!(p.split("a   b"), vec!["a", "  ", " b"]);
        assert_eq!(p.split("end  "), vec!["end", "  "]);
    }

    #[test]
    fn smollm_splits_every_digit() {
        let p = PreTokenizer::for_name(Some("smollm"));
        assert_eq!(p.split("in 2024"), vec!["in", " ", "2", "0", "2", "4"]);
    }

    #[test]
    fn no_byte_is_lost() {
        for name in [None, Some("smollm"), Some("llama3"), Some("qwen2")] {
            let p = PreTokenizer::for_name(name);
            let text = "Tabs\tand\r\nnewlines   🐈 ünï 12345 'LL";
            assert_eq!(p.split(text).concat(), text, "{name:?}");
        }
    }
}
