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
