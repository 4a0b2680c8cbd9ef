//! The tokenizer built from SmolLM2's GGUF metadata agrees with Hugging Face `tokenizers`.
//!
//! Reference ids were produced once with the `tokenizers` Python package (BPE model from the
//! same GGUF vocabulary and merges, pre-tokenizer `Digits(individual) + ByteLevel`), which is
//! how SmolLM2's own `tokenizer.json` is configured.

use std::sync::Arc;

use llm_worker_rbee::model_file::ModelFile;
use llm_worker_rbee::tokenizer::Tokenizer;

use crate::support::model_path;

fn tokenizer() -> Arc<Tokenizer> {
    let file = ModelFile::open(&model_path()).unwrap();
    file.tokenizer().clone()
}

#[test]
fn prompt_ids_match_the_reference_tokenizer() {
    let t = tokenizer();
    let cases: &[(&str, &[u32])] = &[
        (
            "Write a short story about a cat.",
            &[19161, 253, 1890, 1977, 563, 253, 2644, 30],
        ),
        (
            "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n",
            &[
                1, 4093, 198, 19556, 28, 638, 359, 346, 47, 2, 198, 1, 520, 9531, 198,
            ],
        ),
        (
            "naïve café 猫 🐈 in 2024:   tabs\tand  spaces!",
            &[
                3546, 46494, 37366, 27709, 230, 121, 15107, 234, 226, 281, 216, 34, 32, 34, 36, 42,
                256, 29416, 197, 397, 216, 5600, 17,
            ],
        ),
        ("I'll've won't", &[57, 3060, 3543, 3763, 982]),
    ];
    for (text, expected) in cases {
        assert_eq!(t.encode(text), *expected, "{text:?}");
    }
}

#[test]
fn decoding_restores_the_text_without_control_tokens() {
    let t = tokenizer();
    for text in [
        "naïve café 猫 🐈 in 2024:   tabs\tand  spaces!",
        "line one\n\nline two",
    ] {
        assert_eq!(t.decode(&t.encode(text)), text);
    }
    let chat = t.encode("<|im_start|>user\nHi<|im_end|>");
    assert_eq!(t.decode(&chat), "user\nHi");
}

#[test]
fn smollm2_ends_generation_on_im_end_and_endoftext() {
    let t = tokenizer();
    assert_eq!(t.eos_token_id(), Some(2));
    assert!(t.is_end_of_generation(2), "<|im_end|>");
    assert!(t.is_end_of_generation(0), "<|endoftext|>");
    assert!(!t.is_end_of_generation(1), "<|im_start|> is not an end");
    assert!(!t.adds_bos(), "SmolLM2 declares add_bos_token = false");
}
