use super::*;

fn strings(v: &[&str]) -> Value {
    Value::Array(v.iter().map(|s| Value::String((*s).to_owned())).collect())
}

fn numbers(v: &[f32]) -> Value {
    Value::Array(v.iter().map(|x| Value::F32(*x)).collect())
}

fn ints(v: &[i32]) -> Value {
    Value::Array(v.iter().map(|x| Value::I32(*x)).collect())
}

/// A SentencePiece vocabulary in the style of TinyLlama: `<unk> <s> </s>`, byte tokens for
/// the bytes the tests need, and scored pieces.
fn spm_metadata() -> HashMap<String, Value> {
    let mut tokens = vec!["<unk>", "<s>", "</s>"];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    let bytes = ["<0x0A>", "<0xE7>", "<0x8C>", "<0xAB>"];
    for b in bytes {
        tokens.push(b);
        types.push(6);
        scores.push(0.0);
    }
    let pieces: &[(&str, f32)] = &[
        ("\u{2581}", -1.0),
        ("h", -2.0),
        ("e", -2.0),
        ("l", -2.0),
        ("o", -2.0),
        ("w", -2.0),
        ("r", -2.0),
        ("d", -2.0),
        ("ll", -3.0),
        ("\u{2581}h", -4.0),
        ("\u{2581}he", -5.0),
        ("\u{2581}hell", -6.0),
        ("\u{2581}hello", -7.0),
        ("or", -8.0),
        ("\u{2581}w", -9.0),
        ("\u{2581}wor", -10.0),
        ("ld", -11.0),
        ("\u{2581}world", -12.0),
    ];
    for (p, s) in pieces {
        tokens.push(p);
        types.push(1);
        scores.push(*s);
    }
    HashMap::from([
        (
            "tokenizer.ggml.model".to_owned(),
            Value::String("llama".into()),
        ),
        ("tokenizer.ggml.tokens".to_owned(), strings(&tokens)),
        ("tokenizer.ggml.scores".to_owned(), numbers(&scores)),
        ("tokenizer.ggml.token_type".to_owned(), ints(&types)),
        ("tokenizer.ggml.bos_token_id".to_owned(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".to_owned(), Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id".to_owned(), Value::U32(0)),
    ])
}

fn texts(t: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| t.token_text(i).unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn sentencepiece_merges_by_score_with_space_prefix_and_bos() {
    let t = Tokenizer::from_gguf_metadata(&mut spm_metadata()).unwrap();
    let ids = t.encode("hello world");
    assert_eq!(texts(&t, &ids), ["<s>", "\u{2581}hello", "\u{2581}world"]);
    assert_eq!(t.decode(&ids), " hello world");
}

#[test]
fn sentencepiece_falls_back_to_bytes_for_unknown_characters() {
    let t = Tokenizer::from_gguf_metadata(&mut spm_metadata()).unwrap();
    let ids = t.encode("hello\n猫");
    assert_eq!(
        texts(&t, &ids),
        [
            "<s>",
            "\u{2581}hello",
            "<0x0A>",
            "<0xE7>",
            "<0x8C>",
            "<0xAB>"
        ]
    );
    assert_eq!(t.decode(&ids), " hello\n猫");
}

#[test]
fn sentencepiece_recognises_control_tokens_in_text() {
    let t = Tokenizer::from_gguf_metadata(&mut spm_metadata()).unwrap();
    let ids = t.encode("<s>hello</s>");
    assert_eq!(texts(&t, &ids), ["<s>", "\u{2581}hello", "</s>"]);
    assert!(t.is_end_of_generation(2));
    assert!(!t.is_end_of_generation(1));
}

/// A byte-level BPE vocabulary: single stand-in characters plus a few merges.
fn bpe_metadata() -> HashMap<String, Value> {
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut types = vec![3, 3, 3];
    for b in 0..=255u8 {
        tokens.push(byte_level::char_for_byte(b).to_string());
        types.push(1);
    }
    let merged = ["\u{120}t", "he", "\u{120}the", "ca", "cat"];
    for m in merged {
        tokens.push(m.into());
        types.push(1);
    }
    let merges = ["\u{120} t", "h e", "\u{120}t he", "c a", "ca t"];
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    HashMap::from([
        (
            "tokenizer.ggml.model".to_owned(),
            Value::String("gpt2".into()),
        ),
        ("tokenizer.ggml.tokens".to_owned(), strings(&refs)),
        ("tokenizer.ggml.merges".to_owned(), strings(&merges)),
        ("tokenizer.ggml.token_type".to_owned(), ints(&types)),
        ("tokenizer.ggml.bos_token_id".to_owned(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".to_owned(), Value::U32(2)),
        (
            "tokenizer.ggml.add_bos_token".to_owned(),
            Value::Bool(false),
        ),
    ])
}

#[test]
fn byte_level_bpe_applies_merges_in_rank_order() {
    let t = Tokenizer::from_gguf_metadata(&mut bpe_metadata()).unwrap();
    let ids = t.encode("the cat");
    assert_eq!(texts(&t, &ids), ["t", "he", "\u{120}", "cat"]);
    let ids = t.encode(" the");
    assert_eq!(texts(&t, &ids), ["\u{120}the"]);
}

#[test]
fn byte_level_bpe_round_trips_any_text_without_bos() {
    let t = Tokenizer::from_gguf_metadata(&mut bpe_metadata()).unwrap();
    let text = "<|im_start|>user\nnaïve 猫 🐈<|im_end|>";
    let ids = t.encode(text);
    assert_eq!(ids[0], 1);
    assert_eq!(t.decode(&ids), "user\nnaïve 猫 🐈");
    assert!(t.is_end_of_generation(2));
    assert!(
        t.is_end_of_generation(0),
        "<|endoftext|> ends generation too"
    );
}

#[test]
fn unsupported_tokenizer_model_is_a_clear_error() {
    let mut md = bpe_metadata();
    md.insert("tokenizer.ggml.model".into(), Value::String("rwkv".into()));
    let err = Tokenizer::from_gguf_metadata(&mut md).unwrap_err();
    assert!(err.to_string().contains("rwkv"), "{err}");
}

#[test]
fn phi3_models_drop_whitespace_after_special_tokens() {
    let mut md = spm_metadata();
    let plain = Tokenizer::from_gguf_metadata(&mut md.clone()).unwrap();
    md.insert(
        "general.name".into(),
        Value::String("Phi-3 Mini 4K Instruct".into()),
    );
    let phi3 = Tokenizer::from_gguf_metadata(&mut md).unwrap();
    let text = "<s> hello</s>\n world";
    assert_eq!(
        texts(&plain, &plain.encode(text)),
        [
            "<s>",
            "\u{2581}",
            "\u{2581}hello",
            "</s>",
            "\u{2581}",
            "<0x0A>",
            "\u{2581}world"
        ]
    );
    // `<s>` keeps the whitespace after it; `</s>` does not.
    assert_eq!(
        texts(&phi3, &phi3.encode(text)),
        ["<s>", "\u{2581}", "\u{2581}hello", "</s>", "\u{2581}world"]
    );
}
