//! Every quantization rbee claims: SmolLM2 re-quantized by the project loads and generates
//! text close to the original Q4_1 model's.

use std::path::Path;

use candle_core::quantized::GgmlDType;
use llm_worker_rbee::requantize::requantize;
use serde_json::json;

use crate::support::{Worker, model_path, story_request};

const TOKENS: usize = 48;
/// Prompts whose continuation a working model is sure of; quantization noise should not
/// change these (free-running stories diverge at the first near-tie, so they cannot be
/// compared word for word).
const CONFIDENT_PROMPTS: &[&str] = &[
    "The capital of France is",
    "One, two, three, four, five,",
    "Monday, Tuesday, Wednesday,",
    "The opposite of hot is",
    "January, February, March,",
    "Red, orange, yellow, green,",
    "The sun rises in the",
    "A, B, C, D, E,",
];

async fn start(model: &Path) -> Worker {
    let w = Worker::start_with(model, &[]).await;
    let frames = w.get_sse("/v1/loading/progress").await;
    assert_eq!(frames.last().unwrap().event, "ready", "{frames:?}");
    w
}

async fn continuation(w: &Worker, prompt: &str) -> String {
    w.infer(json!({"prompt": prompt, "max_tokens": 1, "temperature": 0}))
        .await
        .text()
}

/// On how many confident prompts the variant picks the same next token as the original.
async fn agreement(original: &Worker, variant: &Worker) -> (usize, Vec<String>) {
    let mut same = 0;
    let mut differences = Vec::new();
    for prompt in CONFIDENT_PROMPTS {
        let (a, b) = (
            continuation(original, prompt).await,
            continuation(variant, prompt).await,
        );
        if a == b {
            same += 1;
        } else {
            differences.push(format!("{prompt:?}: {a:?} vs {b:?}"));
        }
    }
    (same, differences)
}

async fn check_variant(
    target: GgmlDType,
    name: &str,
    expected_formats: &[(&str, usize)],
    min_agreement: usize,
) {
    check_variant_on(target, name, expected_formats, min_agreement, "rbee-cpu").await;
}

/// Like `check_variant`, on the compute path `engine` the worker must report.
async fn check_variant_on(
    target: GgmlDType,
    name: &str,
    expected_formats: &[(&str, usize)],
    min_agreement: usize,
    engine: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("variant.gguf");
    let report = tokio::task::spawn_blocking({
        let out = out.clone();
        move || requantize(&model_path(), &out, target)
    })
    .await
    .unwrap()
    .unwrap();
    for (format, count) in expected_formats {
        assert_eq!(
            report.tensors_by_format.get(format),
            Some(count),
            "{report:?}"
        );
    }
    let original = start(&model_path()).await;
    let variant = start(&out).await;
    let model = &variant.ready_state().await["model"];
    assert_eq!(model["quantization"], name);
    for (format, count) in expected_formats {
        assert_eq!(model["tensor_formats"][format], *count, "{model}");
    }
    assert_eq!(model["parameters"], 134_515_008, "SmolLM2-135M's weights");
    let compute = &model["compute"];
    assert_eq!(compute["engine"], engine, "{compute}");
    match engine {
        "rbee-cpu" => assert!(compute["kernels"].is_string(), "{compute}"),
        _ => assert!(
            compute["reason"]
                .as_str()
                .is_some_and(|r| r.contains("Q3_K")),
            "the fallback names its reason: {compute}"
        ),
    }
    let story = original
        .infer(story_request(TOKENS, json!({})))
        .await
        .text();
    let own = variant.infer(story_request(TOKENS, json!({}))).await;
    assert_eq!(own.end().tokens_out, TOKENS);
    let words = own.text().split_whitespace().count();
    assert!(words >= 12, "variant output is not prose: {:?}", own.text());
    assert!(
        own.text().to_lowercase().contains("cat") || story.to_lowercase().contains("cat"),
        "neither story mentions the cat: {:?} / {story:?}",
        own.text()
    );
    let (same, differences) = agreement(&original, &variant).await;
    eprintln!(
        "{target:?}: {same}/{} continuations agree; differences: {differences:?}",
        CONFIDENT_PROMPTS.len()
    );
    assert!(
        same >= min_agreement,
        "{target:?}: only {same}/{} continuations agree with the original: {differences:#?}",
        CONFIDENT_PROMPTS.len()
    );
}

// SmolLM2: 30 blocks x 7 weights = 210 two-dimensional tensors, plus the tied embedding
// (kept at Q8_0) and 61 norm vectors (F32).

#[tokio::test]
async fn q8_0_variant_generates_like_the_original() {
    check_variant(GgmlDType::Q8_0, "Q8_0", &[("Q8_0", 211), ("F32", 61)], 8).await;
}

#[tokio::test]
async fn q4_0_variant_generates_like_the_original() {
    check_variant(GgmlDType::Q4_0, "Q4_0", &[("Q4_0", 210), ("Q8_0", 1)], 6).await;
}

/// K-quants need rows that are a multiple of 256: only `ffn_down` (1536 wide) qualifies in
/// SmolLM2 (576 wide), the other weights fall back as documented in `requantize`.
#[tokio::test]
async fn q4_k_variant_generates_like_the_original() {
    check_variant(
        GgmlDType::Q4K,
        "Q4_K_S",
        &[("Q4_K", 30), ("Q5_0", 180), ("Q8_0", 1)],
        6,
    )
    .await;
}

#[tokio::test]
async fn q5_k_variant_generates_like_the_original() {
    check_variant(
        GgmlDType::Q5K,
        "Q5_K_S",
        &[("Q5_K", 30), ("Q5_1", 180), ("Q8_0", 1)],
        6,
    )
    .await;
}

/// Q3_K has no rbee CPU kernel: the model runs on Candle, and the worker says why.
#[tokio::test]
async fn q3_k_variant_runs_on_candle_and_says_why() {
    check_variant_on(
        GgmlDType::Q3K,
        "Q3_K_S",
        &[("Q3_K", 30), ("Q5_0", 180), ("Q8_0", 1)],
        5,
        "candle",
    )
    .await;
}
