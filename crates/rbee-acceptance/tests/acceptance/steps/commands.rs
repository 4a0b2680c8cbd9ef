//! Running `rbee` as the user does, and what it printed and returned.

use std::time::Duration;

use cucumber::{then, when};
use tokio::io::AsyncReadExt;

use crate::world::{PATIENCE, Rbee};

/// Replaces `{repo}` and `{<node>}` (the node's home directory) in a command line.
pub fn expand(world: &Rbee, line: &str) -> String {
    let mut line = line.replace("{repo}", &world.home.join("repo").display().to_string());
    for host in &world.cluster.hosts {
        line = line.replace(
            &format!("{{{}}}", host.name),
            &host.home.display().to_string(),
        );
    }
    line
}

#[when(regex = r"^I run `(.+)`$")]
async fn run(world: &mut Rbee, line: String) {
    let line = expand(world, &line);
    world.run(&line).await;
}

#[when(regex = r"^I run (\d+) times at once `(.+)`$")]
async fn run_at_once(world: &mut Rbee, times: usize, line: String) {
    let line = expand(world, &line);
    let runs = (0..times).map(|_| world.command(&line).output());
    let outputs = tokio::time::timeout(PATIENCE, futures::future::join_all(runs))
        .await
        .unwrap_or_else(|_| panic!("`{line}` x{times} did not finish within {PATIENCE:?}"));
    for (n, out) in outputs.into_iter().enumerate() {
        let out = out.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "run {n}:\n{stderr}");
        assert!(
            !out.stdout.is_empty(),
            "run {n} printed no answer:\n{stderr}"
        );
    }
}

#[when(regex = r"^I start `(.+)`$")]
async fn start(world: &mut Rbee, line: String) {
    let line = expand(world, &line);
    world.start(&line);
}

#[when("its first tokens have arrived")]
async fn first_tokens(world: &mut Rbee) {
    let running = world.running();
    let stdout = running.child.stdout.as_mut().expect("stdout");
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(PATIENCE, stdout.read(&mut buf))
        .await
        .expect("tokens arrive")
        .unwrap();
    assert!(n > 0, "stdout closed before any token");
    running.stdout.push_str(&String::from_utf8_lossy(&buf[..n]));
}

#[then(regex = r#"^its output soon shows "(.+)"$"#)]
async fn output_shows(world: &mut Rbee, needle: String) {
    let running = world.running();
    let stdout = running.child.stdout.as_mut().expect("stdout");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut buf = vec![0u8; 4096];
    while !running.stdout.contains(&needle) {
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("`{needle}` never shown in:\n{}", running.stdout))
            .unwrap();
        assert!(
            n > 0,
            "output ended without `{needle}`:\n{}",
            running.stdout
        );
        running.stdout.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[then("the followed logs soon show a new line")]
async fn followed_logs_grow(world: &mut Rbee) {
    let running = world.running();
    let before = running.stdout.lines().count();
    let stdout = running.child.stdout.as_mut().expect("stdout");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut buf = vec![0u8; 4096];
    while running.stdout.lines().count() <= before {
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf))
            .await
            .expect("a new log line")
            .unwrap();
        assert!(n > 0, "the log stream ended");
        running.stdout.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[when("I press Ctrl+C")]
async fn ctrl_c(world: &mut Rbee) {
    let pid = world.running().child.id().expect("still running");
    rbee_testkit::signal(pid, "INT");
    world.finish_running().await;
}

#[when("the command ends")]
async fn command_ends(world: &mut Rbee) {
    world.finish_running().await;
}

#[then(regex = r"^it exits with code (\d+)$")]
async fn exit_code(world: &mut Rbee, code: i32) {
    let last = world.last();
    assert_eq!(
        last.code,
        Some(code),
        "exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
        last.stdout,
        last.stderr
    );
    assert!(
        !last.stderr.contains("panicked") && !last.stderr.contains("RUST_BACKTRACE"),
        "a panic:\n{}",
        last.stderr
    );
}

#[then(regex = r#"^(stdout|stderr) contains "(.*)"$"#)]
async fn contains(world: &mut Rbee, stream: String, needle: String) {
    let needle = expand(world, &needle);
    let last = world.last();
    let text = if stream == "stdout" {
        &last.stdout
    } else {
        &last.stderr
    };
    assert!(text.contains(&needle), "{stream} lacks `{needle}`:\n{text}");
}

#[then(regex = r#"^(stdout|stderr) does not contain "(.*)"$"#)]
async fn lacks(world: &mut Rbee, stream: String, needle: String) {
    let last = world.last();
    let text = if stream == "stdout" {
        &last.stdout
    } else {
        &last.stderr
    };
    assert!(!text.contains(&needle), "{stream} has `{needle}`:\n{text}");
}

/// Text a working SmolLM2 writes: several English words, no replacement characters.
#[then("stdout is a coherent answer")]
async fn coherent(world: &mut Rbee) {
    let text = &world.last().stdout;
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphabetic))
        .collect();
    let common = [
        "the", "a", "and", "of", "to", "was", "in", "his", "her", "he", "she", "it",
    ];
    assert!(
        words.len() >= 8
            && !text.contains('\u{FFFD}')
            && words
                .iter()
                .any(|w| common
                    .contains(&w.to_lowercase().trim_matches(|c: char| !c.is_alphabetic()))),
        "not a coherent answer: {text:?}"
    );
}

#[then("the partial answer is saved with its token count")]
async fn partial_saved(world: &mut Rbee) {
    let last = world.last();
    let (tokens, saved) = rbee_testkit::partial_answer(&last.stderr);
    assert!(tokens > 0 && !saved.is_empty(), "{}", last.stderr);
    assert!(
        last.stdout.starts_with(saved.trim_end()),
        "saved {saved:?}, printed {:?}",
        last.stdout
    );
}

#[then(regex = r"^it took less than (\d+) s$")]
async fn took_less(world: &mut Rbee, secs: u64) {
    let took = world.last().took;
    assert!(
        took < Duration::from_secs(secs),
        "took {took:?}:\n{}",
        world.last().stderr
    );
}

#[then(regex = r"^it ended within (\d+) s of the link going down$")]
async fn ended_after_link_down(world: &mut Rbee, secs: u64) {
    let cut = world.link_cut_at.expect("a link was cut");
    let ended = world.ended_at.expect("the command ended");
    let after = ended.duration_since(cut);
    assert!(
        after < Duration::from_secs(secs),
        "ended {after:?} after the link went down"
    );
}

/// Plain progress lines (stderr is not a terminal): `Downloading  26% (38.0/144.8 MB, …)`.
#[then("stderr shows the download at 0 %, each quarter and 100 %")]
async fn download_quarters(world: &mut Rbee) {
    let stderr = &world.last().stderr;
    let percents: Vec<u64> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("Downloading "))
        .filter_map(|rest| rest.trim_start().split('%').next()?.parse().ok())
        .collect();
    let quarters: Vec<u64> = percents.iter().map(|p| p * 4 / 100).collect();
    assert_eq!(
        quarters,
        [0, 1, 2, 3, 4],
        "progress lines: {percents:?}\n{stderr}"
    );
}
