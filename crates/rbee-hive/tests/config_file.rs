//! The hive's settings from the `[hive]` table of rbee's configuration file, below its
//! environment variables and flags.

use std::path::Path;

use tokio::process::Command;

use crate::support::{free_port, hive_bin};

/// A hive started with `config` and the given flags and environment; the port it listens on.
async fn port_of_hive(config: &Path, flags: &[&str], env: &[(&str, &str)]) -> u16 {
    let mut cmd = Command::new(hive_bin());
    cmd.args(["daemon", "--host", "127.0.0.1", "--api-key", "config-key"])
        .arg("--config")
        .arg(config)
        .args(flags)
        .env_remove("RBEE_HIVE_PORT")
        .envs(env.iter().copied());
    let started = rbee_testkit::start_daemon(&mut cmd).await;
    let url = reqwest::Url::parse(&started.url).unwrap();
    url.port().unwrap()
}

/// The hive's exit code and standard error when it refuses to start.
fn refused(config: &Path, subcommand: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(hive_bin())
        .args(subcommand)
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_setting_comes_from_the_file_unless_the_environment_or_a_flag_sets_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let [in_file, in_env, on_line] = [free_port(), free_port(), free_port()];
    std::fs::write(
        &config,
        format!(
            "queen_url = \"http://127.0.0.1:1\"\n[queen]\nport = 1\n[hive]\nport = {in_file}\nidle_timeout = \"10m\"\nwatch-stdin = false\n"
        ),
    )
    .unwrap();
    assert_eq!(port_of_hive(&config, &[], &[]).await, in_file);
    let env = [("RBEE_HIVE_PORT", in_env.to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(port_of_hive(&config, &[], &env).await, in_env);
    let flag = on_line.to_string();
    assert_eq!(
        port_of_hive(&config, &["--port", &flag], &env).await,
        on_line
    );
}

#[test]
fn an_unknown_key_or_a_bad_value_is_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[hive]\nidle-timout = \"5m\"\n").unwrap();
    let (code, stderr) = refused(&config, &["daemon"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("rbee-hive: error: "), "{stderr}");
    for needle in [
        "config.toml: [hive] `idle-timout` is not a setting",
        "idle-timeout",
    ] {
        assert!(stderr.contains(needle), "`{needle}` missing from {stderr}");
    }

    std::fs::write(
        &config,
        "[hive]\napi-key = \"k\"\nidle-timeout = \"soon\"\n",
    )
    .unwrap();
    let (code, stderr) = refused(&config, &["daemon"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for needle in ["config.toml: [hive]", "--idle-timeout", "soon"] {
        assert!(stderr.contains(needle), "`{needle}` missing from {stderr}");
    }

    let missing = dir.path().join("nope.toml");
    let (code, stderr) = refused(&missing, &["daemon"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("nope.toml does not exist"), "{stderr}");
}

#[test]
fn detect_runs_beside_a_configuration_with_hive_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[hive]\nidle-timeout = \"5m\"\n").unwrap();
    let out = std::process::Command::new(hive_bin())
        .arg("detect")
        .env("RBEE_CONFIG", &config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(detected.is_object(), "{detected}");
}
