//! A model file that cannot be served ends the worker with one clear line and exit code 1.

use std::path::Path;

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
