//! A vocabulary held once: every token's text in one buffer, and an index from text to id
//! that stores only ids.
//!
//! Gemma 3's 262,144 tokens as a `Vec<String>` plus a `HashMap<String, u32>` (two copies of
//! every text, each its own allocation) took ~35 MB on top of the ~30 MB the parsed GGUF
//! metadata held; this way they take ~3 MB, and the metadata's copy is dropped as it is read.

use std::hash::BuildHasher;

use candle_core::quantized::gguf_file::Value;
use hashbrown::{DefaultHashBuilder, HashTable};

use super::TokenizerError;

pub(super) struct Vocab {
    text: String,
    /// Token `i`'s text is `text[ends[i - 1]..ends[i]]` (from 0 for the first token).
    ends: Vec<u32>,
    /// Ids, placed by the hash of their text.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl std::fmt::Debug for Vocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocab")
            .field("tokens", &self.len())
            .finish_non_exhaustive()
    }
}

impl Vocab {
    /// The vocabulary of `tokenizer.ggml.tokens`, consuming the parsed values one by one.
    pub(super) fn from_values(values: Vec<Value>) -> Result<Self, TokenizerError> {
        let mut vocab = Self {
            text: String::new(),
            ends: Vec::with_capacity(values.len()),
            index: HashTable::with_capacity(values.len()),
            hasher: DefaultHashBuilder::default(),
        };
        for value in values {
            let Value::String(token) = value else {
                return Err(TokenizerError(
                    "`tokenizer.ggml.tokens` holds a non-string".into(),
                ));
            };
            vocab.push(&token)?;
        }
        vocab.text.shrink_to_fit();
        Ok(vocab)
    }

    fn push(&mut self, token: &str) -> Result<(), TokenizerError> {
        let id = self.ends.len() as u32;
        self.text.push_str(token);
        let end = u32::try_from(self.text.len())
            .map_err(|_| TokenizerError("the vocabulary's text exceeds 4 GiB".into()))?;
        self.ends.push(end);
        let hash = self.hasher.hash_one(token);
        let Self {
            text,
            ends,
            index,
            hasher,
        } = self;
        let text_of = |id: u32| token_text(text, ends, id);
        // A text listed twice maps to its last id, as in llama.cpp.
        match index.find_mut(hash, |&other| text_of(other) == token) {
            Some(slot) => *slot = id,
            None => {
                index.insert_unique(hash, id, |&other| hasher.hash_one(text_of(other)));
            }
        }
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The text of token `id`.
    pub(super) fn text(&self, id: u32) -> Option<&str> {
        ((id as usize) < self.ends.len()).then(|| token_text(&self.text, &self.ends, id))
    }

    /// The id of the token whose text is `text`.
    pub(super) fn id(&self, text: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(text);
        self.index
            .find(hash, |&id| token_text(&self.text, &self.ends, id) == text)
            .copied()
    }

    /// Every token's id and text, in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        (0..self.ends.len() as u32).map(|id| (id, token_text(&self.text, &self.ends, id)))
    }
}

fn token_text<'a>(text: &'a str, ends: &[u32], id: u32) -> &'a str {
    let i = id as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &text[start..ends[i] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> Vocab {
        Vocab::from_values(
            tokens
                .iter()
                .map(|t| Value::String((*t).to_owned()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn texts_and_ids_map_both_ways() {
        let v = vocab(&["", "a", "▁the", "<|im_end|>", "猫"]);
        assert_eq!(v.len(), 5);
        for (id, text) in v.iter() {
            assert_eq!(v.text(id), Some(text));
            assert_eq!(v.id(text), Some(id));
        }
        assert_eq!(v.text(4), Some("猫"));
        assert_eq!(v.id("the"), None);
        assert_eq!(v.text(5), None);
    }

    #[test]
    fn a_text_listed_twice_maps_to_its_last_id() {
        let v = vocab(&["x", "y", "x"]);
        assert_eq!(v.id("x"), Some(2));
        assert_eq!(v.text(0), Some("x"));
    }

    #[test]
    fn a_non_string_token_is_refused() {
        let err = Vocab::from_values(vec![Value::U32(1)]).unwrap_err();
        assert!(err.to_string().contains("non-string"), "{err}");
    }
}
