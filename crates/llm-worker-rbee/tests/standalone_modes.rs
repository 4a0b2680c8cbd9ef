//! `--check` (validate a model without serving it) and `--watch-stdin` (die with the parent).

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::support::{KEY, Log, model_path, worker_bin};

#[tokio::test]
async fn check_prints_the_model_metadata_and_exits_zero() {
    let out = Command::new(worker_bin())
        .args(["--check", "--model"])
        .arg(model_path())
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["architecture"], "llama");
    assert_eq!(info["quantization"], "Q4_1");
    assert_eq!(
        info["size_bytes"],
        std::fs::metadata(model_path()).unwrap().len()
    );
}

#[tokio::test]
async fn check_of_a_bad_file_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, "nope").unwrap();
    let out = Command::new(worker_bin())
        .args(["--check", "--model"])
        .arg(&bad)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.gguf") && err.contains("not a GGUF file"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn worker_exits_when_its_stdin_closes() {
    let mut child = Command::new(worker_bin())
        .arg("--model")
        .arg(model_path())
        .args([
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--api-key",
            KEY,
            "--watch-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Log::capture(child.stderr.take().unwrap());
    log.wait_for("model loaded").await.expect("worker loads");
    drop(child.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("worker exits after stdin closes")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        log.text().contains("standard input closed"),
        "{}",
        log.text()
    );
}

/// The hive checks a model from its first megabytes before downloading it; a tokenizer the
/// worker does not implement must be refused there, not after the download.
#[tokio::test]
async fn header_check_names_an_unknown_pre_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head.gguf");
    let mut bytes = std::fs::read(model_path()).unwrap();
    bytes.truncate(4 << 20);
    // The value of `tokenizer.ggml.pre` follows its key, a type id (u32) and a length (u64).
    let key = b"tokenizer.ggml.pre";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 12;
    assert_eq!(&bytes[at..at + 6], b"smollm", "SmolLM2's pre-tokenizer");
    bytes[at..at + 6].copy_from_slice(b"zzz-lm");
    std::fs::write(&head, bytes).unwrap();
    let out = Command::new(worker_bin())
        .args(["--check", "--header-only", "--model"])
        .arg(&head)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pre-tokenizer `zzz-lm` is not supported") && err.contains("head.gguf"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The ready line on stdout is how a hive learns where its worker listens: with a range of
/// ports, the first free one, under the public host the hive gave.
#[tokio::test]
async fn the_ready_line_names_the_first_free_port_under_the_public_host() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let first = taken.local_addr().unwrap().port();
    let mut child = Command::new(worker_bin())
        .arg("--model")
        .arg(model_path())
        .args(["--host", "127.0.0.1", "--api-key", KEY])
        .args(["--port", &first.to_string(), "--port-tries", "20"])
        .args(["--public-host", "workstation.lan"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Log::capture(child.stderr.take().unwrap());
    let url = rbee_testkit::ready_url(&mut child, &log).await;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(url.starts_with("http://workstation.lan:"), "{url}");
    assert!(
        port > first && port < first + 20,
        "{url} (port {first} was taken)"
    );
    let health = reqwest::get(format!("http://127.0.0.1:{port}/v1/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
