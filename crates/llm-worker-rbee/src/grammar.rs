//! Constrained decoding: output that is JSON, or JSON following a schema, however small the
//! model. Before each token is drawn, every token that could not continue a valid prefix of
//! the grammar is masked out, so the answer always parses and validates.
//!
//! The grammars are llguidance's (the library llama.cpp, vLLM and SGLang use): it compiles
//! a JSON schema to a grammar and computes each step's mask over a token trie, which is built
//! here from rbee's own vocabulary — each token's bytes, control tokens behind a marker byte
//! so that no text can spell them.

use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use rbee_api::worker::OutputFormat;
use serde_json::{Value, json};

use crate::tokenizer::Tokenizer;
use crate::tools::ToolGrammar;

/// How schema output is laid out: one line, with the spaces `json.dumps` writes, since
/// models have read much JSON like that, and free whitespace lets a small model pad forever.
fn layout() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
}

/// `schema` with rbee's [`layout`] unless it sets its own.
fn laid_out(schema: Value) -> Value {
    match schema {
        Value::Object(mut fields) => {
            fields.entry("x-guidance").or_insert_with(layout);
            Value::Object(fields)
        }
        other => other,
    }
}

/// The vocabulary as llguidance reads it.
struct Vocabulary {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        match std::str::from_utf8(s) {
            Ok(text) => self.tokenizer.encode_plain(text),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// Compiles output formats for one model; the token trie is built on first use.
pub struct Grammars {
    tokenizer: Arc<Tokenizer>,
    factory: OnceLock<Result<ParserFactory, String>>,
}

impl Grammars {
    pub fn new(tokenizer: Arc<Tokenizer>) -> Self {
        Self {
            tokenizer,
            factory: OnceLock::new(),
        }
    }

    fn factory(&self) -> Result<&ParserFactory, String> {
        let built = self.factory.get_or_init(|| {
            let t = &self.tokenizer;
            let vocab = t.vocab_size() as u32;
            let end = t
                .eos_token_id()
                .or_else(|| t.end_of_generation().first().copied());
            let end = end.ok_or("the model has no end-of-sequence token to end a grammar")?;
            let words: Vec<Vec<u8>> = (0..vocab)
                .map(|id| {
                    if t.is_control(id) {
                        let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                        w.extend_from_slice(t.token_text(id).unwrap_or_default().as_bytes());
                        w
                    } else {
                        t.token_bytes(id).into_owned()
                    }
                })
                .collect();
            let mut info = TokRxInfo::new(vocab, end);
            info.tok_bos = t.bos_token_id();
            let env: TokEnv = Arc::new(Vocabulary {
                trie: TokTrie::from(&info, &words),
                tokenizer: Arc::clone(t),
            });
            let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
            factory.quiet();
            Ok(factory)
        });
        built.as_ref().map_err(Clone::clone)
    }

    /// The constraint for one answer in `format`; `Err` says why the format cannot be used
    /// (a schema keyword llguidance does not support, an unsatisfiable schema).
    pub fn compile(&self, format: &OutputFormat) -> Result<Constraint, String> {
        let schema = match format {
            OutputFormat::JsonObject => json!({"type": "object"}),
            OutputFormat::JsonSchema { schema } => schema.clone(),
        };
        self.constraint(TopLevelGrammar::from_json_schema(laid_out(schema)))
            .map_err(|e| format!("the JSON schema cannot be used: {e}"))
    }

    /// The constraint tool calls put on an answer ([`crate::tools`]).
    pub fn compile_tools(&self, grammar: ToolGrammar) -> Result<Constraint, String> {
        let grammar = match grammar {
            ToolGrammar::Schema(schema) => TopLevelGrammar::from_json_schema(laid_out(schema)),
            ToolGrammar::Lark(lark) => TopLevelGrammar::from_lark(lark),
        };
        self.constraint(grammar)
            .map_err(|e| format!("the tools' parameter schemas cannot be used: {e}"))
    }

    fn constraint(&self, grammar: TopLevelGrammar) -> Result<Constraint, String> {
        let factory = self.factory()?;
        let parser = factory.create_parser(grammar).map_err(|e| e.to_string())?;
        Ok(Constraint {
            matcher: Matcher::new(Ok(parser)),
            eos: factory.tok_env().tok_trie().eos_token(),
            end: self.tokenizer.end_of_generation().to_vec(),
        })
    }
}

/// One answer's grammar, advanced token by token.
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    /// The trie's end token; when the grammar allows it, every end-of-generation token is
    /// allowed (a chat model ends its turn with its own).
    eos: u32,
    end: Vec<u32>,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("finished", &self.matcher.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// Sets the logits of every token the grammar does not allow next to −∞.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = self.matcher.compute_mask().map_err(|e| e.to_string())?;
        let may_end = allowed.is_allowed(self.eos);
        let vocab = allowed.len();
        for (id, l) in logits.iter_mut().enumerate() {
            let ok = id < vocab && allowed.is_allowed(id as u32)
                || may_end && self.end.contains(&(id as u32));
            if !ok {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Moves the grammar past `token`, which [`Self::mask`] allowed.
    pub fn accept(&mut self, token: u32) -> Result<(), String> {
        if self.end.contains(&token) {
            return Ok(());
        }
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }

    /// Whether the grammar is complete and allows nothing more.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}
