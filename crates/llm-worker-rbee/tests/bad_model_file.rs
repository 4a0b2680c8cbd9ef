//! A model file that cannot be served ends the worker with one clear line and exit code 1.

use std::path::Path;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{self, Value};

use crate::support::{Log, model_path, spawn};

async fn run_to_exit(model: &Path, extra: &[&str]) -> (Option<i32>, Vec<String>) {
    let mut child = spawn(model, extra);
    let log = Log::capture(child.stderr.take().unwrap());
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .expect("worker exits")
        .unwrap();
    log.closed().await;
    let lines = log.text().lines().map(str::to_owned).collect();
    (status.code(), lines)
}

fn assert_one_clear_line(lines: &[String], needles: &[&str]) {
    assert_eq!(lines.len(), 1, "expected one line, got {lines:#?}");
    let line = &lines[0];
    assert!(line.starts_with("llm-worker-rbee: error: "), "{line}");
    for n in needles {
        assert!(line.contains(n), "`{n}` missing from: {line}");
    }
    assert!(!line.contains("panicked"), "{line}");
}

#[tokio::test]
async fn missing_file_names_the_path() {
    let (code, lines) = run_to_exit(Path::new("/nonexistent/model.gguf"), &[]).await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(&lines, &["/nonexistent/model.gguf", "does not exist"]);
}

#[tokio::test]
async fn non_gguf_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("README.gguf");
    std::fs::write(&path, "# hello\n").unwrap();
    let (code, lines) = run_to_exit(&path, &[]).await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(&lines, &["README.gguf", "not a GGUF file"]);
}

#[tokio::test]
async fn truncated_file_is_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.gguf");
    let full = std::fs::read(model_path()).unwrap();
    std::fs::write(&path, &full[..full.len() / 2]).unwrap();
    let (code, lines) = run_to_exit(&path, &[]).await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(&lines, &["half.gguf", "truncated"]);
}

#[tokio::test]
async fn header_cut_short_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stub.gguf");
    let full = std::fs::read(model_path()).unwrap();
    std::fs::write(&path, &full[..4096]).unwrap();
    let (code, lines) = run_to_exit(&path, &[]).await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(&lines, &["stub.gguf", "GGUF header"]);
}

#[cfg(not(feature = "cuda"))]
#[tokio::test]
async fn gpu_backend_missing_from_the_build_is_refused_with_the_rebuild_command() {
    let (code, lines) = run_to_exit(&model_path(), &["--backend", "cuda"]).await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(&lines, &["without cuda support", "--features cuda"]);
}

/// A small GGUF file: `metadata` plus one F32 vector per tensor name.
fn tiny_gguf(path: &Path, metadata: &[(&str, Value)], tensors: &[&str]) {
    let device = candle_core::Device::Cpu;
    let vector = candle_core::Tensor::zeros(32, candle_core::DType::F32, &device).unwrap();
    let q = candle_core::quantized::QTensor::quantize(&vector, GgmlDType::F32).unwrap();
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|name| (*name, &q)).collect();
    let mut out = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
}

fn llama_metadata(arch: &str) -> Vec<(&'static str, Value)> {
    let key = |k: &str| -> &'static str { Box::leak(format!("{arch}.{k}").into_boxed_str()) };
    vec![
        ("general.architecture", Value::String(arch.into())),
        (key("embedding_length"), Value::U32(32)),
        (key("attention.head_count"), Value::U32(2)),
        (key("block_count"), Value::U32(1)),
        (key("context_length"), Value::U32(64)),
    ]
}

#[tokio::test]
async fn an_unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamba.gguf");
    tiny_gguf(&path, &llama_metadata("mamba"), &["token_embd.weight"]);
    let (code, lines) = run_to_exit(&path, &[]).await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(
        &lines,
        &[
            "mamba.gguf",
            "architecture `mamba` is not supported",
            "gemma3",
        ],
    );
}

#[tokio::test]
async fn a_tensor_outside_the_known_layout_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.gguf");
    let tensors = [
        "token_embd.weight",
        "blk.0.attn_norm.weight",
        "blk.0.ffn_router.weight",
    ];
    tiny_gguf(&path, &llama_metadata("qwen2"), &tensors);
    let (code, lines) = run_to_exit(&path, &[]).await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(&lines, &["blk.0.ffn_router.weight", "`qwen2` layout"]);
}

#[tokio::test]
async fn an_iq_format_is_named_not_called_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iq4_xs.gguf");
    tiny_gguf(&path, &llama_metadata("llama"), &["token_embd.weight"]);
    // The tensor's type id follows its name, dimension count (u32) and one dimension (u64).
    let mut bytes = std::fs::read(&path).unwrap();
    let name = b"token_embd.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 8;
    bytes[at..at + 4].copy_from_slice(&23u32.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let (code, lines) = run_to_exit(&path, &[]).await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(&lines, &["iq4_xs.gguf", "format IQ4_XS is not supported"]);
}

#[tokio::test]
async fn kernels_the_cpu_cannot_run_are_refused_with_the_ones_it_can() {
    let (code, lines) = run_to_exit(&model_path(), &["--kernels", "neon"]).await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(&lines, &["`neon`", "not available on this CPU", "portable"]);
}

#[tokio::test]
async fn a_split_model_with_a_missing_shard_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let shards = rbee_testkit::gguf_split::split_gguf(&model_path(), dir.path(), 3);
    std::fs::remove_file(&shards[1]).unwrap();
    let (code, lines) = run_to_exit(&shards[0], &[]).await;
    assert_eq!(code, Some(1));
    let missing = shards[1].file_name().unwrap().to_str().unwrap();
    assert_one_clear_line(&lines, &[missing, "shard 2 of the 3 files", "is missing"]);
}

#[tokio::test]
async fn shards_out_of_order_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shards = rbee_testkit::gguf_split::split_gguf(&model_path(), dir.path(), 3);
    let swap = dir.path().join("swap");
    std::fs::rename(&shards[1], &swap).unwrap();
    std::fs::rename(&shards[2], &shards[1]).unwrap();
    std::fs::rename(&swap, &shards[2]).unwrap();
    let (code, lines) = run_to_exit(&shards[0], &[]).await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(&lines, &["expected shard 2 of 3", "found shard 3"]);
}

#[tokio::test]
async fn a_later_shard_given_as_the_model_is_refused_with_the_first_named() {
    let dir = tempfile::tempdir().unwrap();
    let shards = rbee_testkit::gguf_split::split_gguf(&model_path(), dir.path(), 2);
    let (code, lines) = run_to_exit(&shards[1], &[]).await;
    assert_eq!(code, Some(1));
    let first = shards[0].file_name().unwrap().to_str().unwrap();
    assert_one_clear_line(&lines, &["this is shard 2", &format!("give {first}")]);
}

#[tokio::test]
async fn a_chat_template_file_that_does_not_compile_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("broken.jinja");
    std::fs::write(&template, "{% if messages %}unclosed").unwrap();
    let (code, lines) = run_to_exit(
        &model_path(),
        &["--chat-template", template.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, Some(1));
    assert_one_clear_line(&lines, &["chat template", "broken.jinja"]);
}
