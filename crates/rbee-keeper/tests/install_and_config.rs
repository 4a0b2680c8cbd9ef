//! `rbee install` and where the configuration comes from.

use crate::support::{User, sibling};

#[tokio::test]
async fn install_copies_the_binaries_and_creates_the_config() {
    let user = User::new();
    let (code, stdout, stderr) = user.run(&["install"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let home = user.home.path();
    for bin in ["rbee", "queen-rbee", "rbee-hive", "llm-worker-rbee"] {
        let installed = home.join(".local/bin").join(bin);
        assert!(installed.is_file(), "{stdout}");
        assert_eq!(
            std::fs::metadata(&installed).unwrap().len(),
            std::fs::metadata(sibling(bin)).unwrap().len()
        );
    }
    let config = home.join(".config/rbee/config.toml");
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("[remote]")
    );
    assert!(home.join(".local/share/rbee").is_dir());
    std::fs::write(&config, "queen_url = \"http://127.0.0.1:1\"\n").unwrap();
    let (code, _, _) = user.run(&["install"]).await;
    assert_eq!(code, Some(0));
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("127.0.0.1:1"),
        "an existing config is kept"
    );
}

#[tokio::test]
async fn rbee_config_wins_over_the_user_file() {
    let user = User::new();
    let queen = user.queen().await;
    let home = user.home.path();
    std::fs::create_dir_all(home.join(".config/rbee")).unwrap();
    // The user file points to a port held by something that is not a queen.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let blocked = format!("127.0.0.1:{}", blocker.local_addr().unwrap().port());
    std::fs::write(
        home.join(".config/rbee/config.toml"),
        format!("queen_url = \"http://{blocked}\"\n"),
    )
    .unwrap();
    let explicit = home.join("explicit.toml");
    std::fs::write(&explicit, format!("queen_url = \"{}\"\n", queen.url)).unwrap();

    let mut cmd = user.rbee(&["workers", "list"]);
    cmd.env_remove("RBEE_QUEEN_URL")
        .env("RBEE_CONFIG", &explicit);
    let out = cmd.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("No workers"));

    let mut cmd = user.rbee(&["workers", "list"]);
    cmd.env_remove("RBEE_QUEEN_URL");
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let port = blocked.rsplit(':').next().unwrap();
    assert!(
        stderr.contains(port),
        "the user file is used without RBEE_CONFIG: {stderr}"
    );

    let bad = home.join("bad.toml");
    std::fs::write(&bad, "queen_ulr = 3\n").unwrap();
    let mut cmd = user.rbee(&["workers", "list"]);
    cmd.env("RBEE_CONFIG", &bad);
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("queen_ulr"),
        "{stderr}"
    );
}

/// A `systemctl` stand-in on PATH that records its arguments (tests run without systemd).
fn fake_systemctl(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("systemctl.log");
    let script = dir.join("systemctl");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

#[tokio::test]
async fn install_service_writes_a_user_unit_whose_command_runs_the_queen() {
    let user = User::new();
    let home = user.home.path();
    let port = crate::support::free_port();
    std::fs::create_dir_all(home.join(".config/rbee")).unwrap();
    std::fs::write(
        home.join(".config/rbee/config.toml"),
        format!("queen_url = \"http://127.0.0.1:{port}\"\napi_key = \"service-key\"\n"),
    )
    .unwrap();
    let fake_bin = home.join("fake-bin");
    std::fs::create_dir_all(&fake_bin).unwrap();
    let log = fake_systemctl(&fake_bin);
    let path = format!("{}:{}", fake_bin.display(), std::env::var("PATH").unwrap());

    let mut cmd = user.rbee(&["install", "--service"]);
    cmd.env("PATH", &path).env_remove("RBEE_QUEEN_URL");
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("runs as a service on port {port}")),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "--user daemon-reload\n--user enable --now queen-rbee.service\n"
    );

    let unit =
        std::fs::read_to_string(home.join(".config/systemd/user/queen-rbee.service")).unwrap();
    assert!(
        unit.contains("WantedBy=default.target") && unit.contains("Restart=on-failure"),
        "{unit}"
    );
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let env_file = unit
        .lines()
        .find_map(|l| l.strip_prefix("EnvironmentFile=-"))
        .unwrap();
    let env = std::fs::read_to_string(env_file).unwrap();
    assert!(env.contains("RBEE_QUEEN_API_KEY=service-key"), "{env}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Run what systemd would run, with its environment file: the installed queen answers,
    // under the key.
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert!(words[0].starts_with(&home.display().to_string()), "{exec}");
    let mut queen = tokio::process::Command::new(words[0]);
    queen.args(&words[1..]).env("HOME", home);
    for line in env.lines().filter(|l| !l.starts_with('#')) {
        let (k, v) = line.split_once('=').unwrap();
        queen.env(k, v);
    }
    let started = rbee_testkit::start_daemon(&mut queen).await;
    let url = format!("http://127.0.0.1:{port}");
    let (status, _) =
        crate::support::call(reqwest::Client::new().get(format!("{url}/v2/workers/list"))).await;
    assert_eq!(status, 401, "the key from the environment file is required");
    let (status, _) = crate::support::call(
        reqwest::Client::new()
            .get(format!("{url}/v2/workers/list"))
            .bearer_auth("service-key"),
    )
    .await;
    assert_eq!(status, 200);
    drop(started);

    // Without systemd: the unit is written, and the command says what it could not do.
    let empty = home.join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = user.rbee(&["install", "--service"]);
    cmd.env("PATH", &empty).env_remove("RBEE_QUEEN_URL");
    std::fs::remove_file(home.join(".config/systemd/user/queen-rbee.service")).unwrap();
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot run systemctl") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert!(
        home.join(".config/systemd/user/queen-rbee.service")
            .is_file()
    );
}
