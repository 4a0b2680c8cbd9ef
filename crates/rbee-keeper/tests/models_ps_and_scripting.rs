//! `rbee models …`, `rbee ps`, and what scripts use: a prompt on stdin, `--system`,
//! `--json`, list commands' `--json`, shell completions.

use std::sync::Arc;

use rbee_testkit::fake_hub::FakeHub;
use serde_json::Value;

use crate::support::{User, model_path};

const REPO: &str = "test/SmolLM2-135M-Instruct-GGUF";

async fn hub_with_model() -> FakeHub {
    let hub = FakeHub::start().await;
    let bytes = std::fs::read(model_path()).unwrap();
    hub.add_file(REPO, "SmolLM2-135M-Instruct.Q4_1.gguf", Arc::new(bytes));
    hub
}

/// `rbee infer --model MODEL --prompt PROMPT --max-tokens N`: exit code, stdout, stderr.
async fn run_infer(
    user: &User,
    model: &str,
    prompt: &str,
    max_tokens: &str,
) -> (Option<i32>, String, String) {
    let args = [
        "infer",
        "--model",
        model,
        "--prompt",
        prompt,
        "--max-tokens",
        max_tokens,
    ];
    user.run(&args).await
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

#[tokio::test]
async fn models_are_pulled_with_progress_listed_shown_and_removed_through_the_cli() {
    let hub = hub_with_model().await;
    let user = User::new();
    let queen = user.queen_env(&[], &[("HF_ENDPOINT", &hub.url)]).await;
    let model = format!("hf:{REPO}");

    let (code, out, err) = user.run(&["models", "pull", &model]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("Pulled {model} onto localhost")),
        "{out}"
    );
    // Progress as plain lines (stderr is not a terminal here), up to the whole file.
    assert!(err.contains("Downloading 100%"), "{err}");
    let (code, out, _) = user.run(&["models", "pull", &model]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("is already on localhost"), "{out}");

    let (code, out, _) = user.run(&["models", "list"]).await;
    assert_eq!(code, Some(0));
    let row = out
        .lines()
        .find(|l| l.ends_with(&model))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.starts_with("localhost") && row.contains("Q4_1") && row.contains("MB"),
        "{row}"
    );
    let (_, out, _) = user
        .run(&["models", "list", "--node", "localhost", "--json"])
        .await;
    let list = json_of(&out);
    let node = &list["nodes"][0];
    assert_eq!(node["node"], "localhost");
    assert!(node["disk_free_bytes"].as_u64().unwrap() > 0, "{node}");
    let entry = &node["models"][0];
    assert_eq!(entry["reference"], model.as_str());
    let file = entry["local_path"].as_str().unwrap().to_owned();
    assert!(std::path::Path::new(&file).is_file());
    let (code, _, err) = user.run(&["models", "list", "--node", "nowhere"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("nowhere"), "{err}");

    let (code, out, err) = user.run(&["models", "show", &model]).await;
    assert_eq!(code, Some(0), "{err}");
    for expected in [
        "architecture     llama",
        "context          8192 tokens",
        "Q4_1 ×",
        "chat template    yes",
        "licence",
    ] {
        assert!(out.contains(expected), "{expected:?} in {out}");
    }
    let (_, out, _) = user.run(&["models", "show", &model, "--json"]).await;
    let shown = json_of(&out);
    assert_eq!(shown["info"]["layers"], 30, "{shown}");

    // A model a worker runs cannot be removed; once the worker stops it can.
    let (code, _, err) = run_infer(&user, &model, "hi", "2").await;
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = user.run(&["models", "rm", &model]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("in use by worker"), "{err}");
    let workers = queen.workers().await;
    let id = workers[0]["id"].as_str().unwrap();
    let (code, _, _) = user.run(&["workers", "shutdown", "--id", id]).await;
    assert_eq!(code, Some(0));
    let (code, out, err) = user.run(&["models", "rm", &model]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("and deleted its file"), "{out}");
    assert!(!std::path::Path::new(&file).exists(), "{file} is gone");
    let (_, out, _) = user.run(&["models", "list", "--json"]).await;
    assert!(
        json_of(&out)["nodes"][0]["models"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{out}"
    );
    let (code, _, err) = user.run(&["models", "show", &model]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("rbee models pull"), "{err}");
}

#[tokio::test]
async fn ps_shows_each_loaded_worker_with_slots_memory_and_time_until_unloaded() {
    let user = User::new();
    let _queen = user
        .queen_with(&["--local-hive-args", "--idle-timeout 10m"])
        .await;
    let (code, out, _) = user.run(&["ps"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("No models are loaded"), "{out}");
    let (code, _, err) = user
        .run(&[
            "infer",
            "--prompt",
            "hi",
            "--max-tokens",
            "2",
            "--keep-alive",
            "20m",
        ])
        .await;
    assert_eq!(code, Some(0), "{err}");

    let (code, out, _) = user.run(&["ps", "--json"]).await;
    assert_eq!(code, Some(0));
    let list = json_of(&out);
    let worker = &list["workers"][0];
    assert_eq!(worker["node"], "localhost");
    let rss = worker["rss_bytes"].as_u64().expect("resident memory");
    assert!(rss > 50_000_000, "the 93 MB model is resident: {worker}");
    let unload = worker["unload_in_secs"]
        .as_u64()
        .expect("idle: counting down");
    // The request's keep-alive (20 min) rather than the hive's idle timeout (10 min).
    assert!((1100..=1200).contains(&unload), "{worker}");

    let (_, out, _) = user.run(&["ps"]).await;
    let row = out
        .lines()
        .find(|l| l.starts_with("localhost"))
        .unwrap_or_else(|| panic!("{out}"));
    let slots = worker["slots_total"].as_u64().unwrap();
    assert!(row.contains(&format!(" 0/{slots} ")), "{row}");
    assert!(
        row.contains(" MB ") && row.contains(" min ") && row.contains("cpu:0 rbee-cpu"),
        "{row}"
    );
}

#[tokio::test]
async fn infer_reads_the_prompt_from_stdin_takes_a_system_message_and_prints_json() {
    let user = User::new();
    let _queen = user.queen().await;
    let args = ["infer", "--json", "--max-tokens", "3", "--temperature", "0"];
    let (code, out, err) = user.run_with_stdin(&args, Some("Name a colour.\n")).await;
    assert_eq!(code, Some(0), "{err}");
    let plain = json_of(&out);
    assert_eq!(plain["node"], "localhost", "{plain}");
    assert_eq!(plain["backend"], "cpu");
    assert_eq!(plain["usage"]["completion_tokens"], 3);
    assert_eq!(plain["stop_reason"], "max_tokens");
    assert!(!plain["text"].as_str().unwrap().is_empty(), "{plain}");
    assert!(plain["timings"]["total_ms"].as_u64().unwrap() > 0);
    assert!(plain["worker_id"].as_str().unwrap().starts_with("worker-"));

    // The same prompt through `--prompt -` and with a system message: it replaces the
    // template's default one (SmolLM2's is ~20 tokens), so a long one adds prompt tokens.
    let mut with_system = args.to_vec();
    with_system.extend([
        "--prompt",
        "-",
        "--system",
        "You answer every question in one word, in French, and never explain. You are terse \
         and precise, and you never greet the user or repeat the question back to them.",
    ]);
    let (code, out, err) = user
        .run_with_stdin(&with_system, Some("Name a colour.\n"))
        .await;
    assert_eq!(code, Some(0), "{err}");
    let system = json_of(&out);
    let tokens = |v: &Value| v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens(&system) > tokens(&plain) + 5, "{system} vs {plain}");

    let (code, out, err) = user.run_with_stdin(&["infer"], Some("  \n")).await;
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("standard input is empty"), "{err}");

    // A template of our own writes the message alone: the prompt is the raw text's.
    let template = user.home.path().join("verbatim.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}{{ m.content }}{% endfor %}",
    )
    .unwrap();
    let mut templated = args.to_vec();
    templated.extend(["--chat-template", template.to_str().unwrap()]);
    let (code, out, err) = user
        .run_with_stdin(&templated, Some("Name a colour.\n"))
        .await;
    assert_eq!(code, Some(0), "{err}");
    let mut raw = args.to_vec();
    raw.push("--raw");
    let (code, raw_out, err) = user.run_with_stdin(&raw, Some("Name a colour.\n")).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        tokens(&json_of(&out)),
        tokens(&json_of(&raw_out)),
        "{out} vs {raw_out}"
    );
    assert!(tokens(&json_of(&out)) < tokens(&plain), "{out} vs {plain}");
    let (code, _, err) = user
        .run(&[
            "infer",
            "--prompt",
            "hi",
            "--chat-template",
            "/nonexistent.jinja",
        ])
        .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read /nonexistent.jinja"), "{err}");
}

#[tokio::test]
async fn list_commands_print_json_and_completions_cover_every_shell() {
    let user = User::new();
    let _queen = user.queen().await;
    for args in [
        &["workers", "list", "--json"][..],
        &["setup", "list-nodes", "--json"],
    ] {
        let (code, out, err) = user.run(args).await;
        assert_eq!(code, Some(0), "{err}");
        let value = json_of(&out);
        assert!(
            value["workers"].is_array() || value["beehives"].is_array(),
            "{value}"
        );
    }
    let (code, bash, _) = user.run(&["completions", "bash"]).await;
    assert_eq!(code, Some(0));
    assert!(
        bash.contains("_rbee()") && bash.contains("models") && bash.contains("--node"),
        "{bash}"
    );
    let (_, fish, _) = user.run(&["completions", "fish"]).await;
    assert!(fish.contains("complete -c rbee"), "{fish}");
    let (_, zsh, _) = user.run(&["completions", "zsh"]).await;
    assert!(zsh.starts_with("#compdef rbee"), "{zsh}");
    let (code, _, err) = user.run(&["completions", "tcsh"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("tcsh") && err.lines().count() == 1, "{err}");
}

#[tokio::test]
async fn a_models_settings_are_checked_set_used_by_its_workers_and_reset() {
    let user = User::new();
    let queen = user.queen().await;
    let model = format!("file:{}", model_path().display());
    let (code, _, err) = user.run(&["models", "pull", &model]).await;
    assert_eq!(code, Some(0), "{err}");

    let broken = user.home.path().join("broken.jinja");
    std::fs::write(&broken, "{% for m in messages %}").unwrap();
    let (code, _, err) = user
        .run(&[
            "models",
            "set",
            &model,
            "--chat-template",
            broken.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("chat template"), "{err}");

    let verbatim = user.home.path().join("verbatim.jinja");
    std::fs::write(
        &verbatim,
        "{% for m in messages %}{{ m.content }}{% endfor %}",
    )
    .unwrap();
    let set = [
        "models",
        "set",
        &model,
        "--chat-template",
        verbatim.to_str().unwrap(),
        "--context-length",
        "256",
    ];
    let (code, out, err) = user.run(&set).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("your chat template, a 256-token context"),
        "{out}"
    );
    let (_, out, _) = user.run(&["models", "show", &model]).await;
    assert!(out.contains("yours (`rbee models set`)"), "{out}");
    assert!(out.contains("256 tokens (yours"), "{out}");

    // The model's next worker runs so: the prompt is the message's bare text, and an answer
    // longer than its context is refused.
    let infer = ["infer", "--json", "--max-tokens", "2", "--temperature", "0"];
    let tokens = |out: &str| json_of(out)["usage"]["prompt_tokens"].as_u64().unwrap();
    let mut chat = infer.to_vec();
    chat.extend(["--model", &model, "--prompt", "Name a colour."]);
    let (code, out, err) = user.run(&chat).await;
    assert_eq!(code, Some(0), "{err}");
    chat.push("--raw");
    let (code, raw, err) = user.run(&chat).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(tokens(&out), tokens(&raw), "{out} vs {raw}");
    let (code, _, err) = run_infer(&user, &model, "Hi", "300").await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("256 tokens"), "{err}");

    // A running worker keeps what it loaded with: the settings change once it has stopped.
    let (code, _, err) = user.run(&["models", "set", &model]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("in use by worker"), "{err}");
    let workers = queen.workers().await;
    let id = workers[0]["id"].as_str().unwrap();
    let (code, _, err) = user.run(&["workers", "shutdown", "--id", id]).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = user.run(&["models", "set", &model]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("the file's chat template, the file's context"),
        "{out}"
    );
}
