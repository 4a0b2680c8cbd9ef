//! `rbee doctor`: every prerequisite, one line each, with the fix for what fails.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use rbee_api::queen::BeehiveList;
use rbee_api::routes::queen as paths;
use reqwest::Method;

use crate::config::Config;
use crate::error::{Result, fail};
use crate::queen::Queen;

struct Report {
    failures: usize,
}

impl Report {
    fn line(&mut self, ok: bool, what: &str, detail: &str) {
        if ok {
            println!("ok    {what}: {detail}");
        } else {
            self.failures += 1;
            println!("FAIL  {what}: {detail}");
        }
    }
}

fn version_of(path: &PathBuf) -> Option<String> {
    let out = Command::new(path).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
}

pub async fn run(config: &Config, queen_url: String) -> Result<()> {
    let mut report = Report { failures: 0 };
    let mine = env!("CARGO_PKG_VERSION");
    for name in ["queen-rbee", "rbee-hive", "llm-worker-rbee"] {
        match rbee_http::daemon::sibling_binary(name) {
            Some(path) => {
                let v = version_of(&path);
                let same = v.as_deref() == Some(mine);
                report.line(
                    same,
                    name,
                    &if same {
                        format!("{} ({mine})", path.display())
                    } else {
                        format!(
                            "{} reports {:?}, rbee is {mine}; rebuild with `cargo build --release`",
                            path.display(),
                            v
                        )
                    },
                );
            }
            None => report.line(
                false,
                name,
                "not found next to rbee; build with `cargo build --release` or run `rbee install`",
            ),
        }
    }
    match config.default_model() {
        Ok(m) => report.line(true, "default model", &m),
        Err(e) => report.line(false, "default model", &e.to_string()),
    }
    let data = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/rbee"));
    match data {
        Some(dir) => {
            let ok = std::fs::create_dir_all(&dir).is_ok() && tempfile_in(&dir);
            report.line(
                ok,
                "data directory",
                &format!(
                    "{}{}",
                    dir.display(),
                    if ok {
                        " is writable"
                    } else {
                        " is not writable; fix its permissions"
                    }
                ),
            );
        }
        None => report.line(false, "data directory", "HOME is not set"),
    }
    let queen = Queen::connect(config, queen_url.clone()).await;
    match &queen {
        Ok(q) => report.line(
            true,
            "queen-rbee",
            &format!(
                "{} ({})",
                q.url,
                if q.is_ephemeral() {
                    "started for this check"
                } else {
                    "running"
                }
            ),
        ),
        Err(e) => report.line(false, "queen-rbee", &e.to_string()),
    }
    let hive_port_free = TcpListener::bind("127.0.0.1:9200").is_ok();
    report.line(
        true,
        "port 9200",
        if hive_port_free {
            "free for a hive"
        } else {
            "in use (a hive may be running)"
        },
    );
    if let Ok(queen) = queen {
        if let Ok(list) = queen
            .json::<BeehiveList>(queen.request(Method::GET, paths::BEEHIVES_LIST))
            .await
        {
            for node in list.beehives {
                let health = queen
                    .json::<rbee_api::queen::NodeHealth>(
                        queen
                            .request(Method::GET, paths::WORKERS_HEALTH)
                            .query(&[("node", &node.node_name)]),
                    )
                    .await;
                let backends: Vec<&str> = node.backends.iter().map(|b| b.as_str()).collect();
                let ok = node.status != rbee_api::queen::NodeStatus::Unreachable;
                report.line(
                    ok && !backends.is_empty(),
                    &format!("node {}", node.node_name),
                    &format!(
                        "{} ({}), backends [{}], hive {}",
                        node.ssh_host,
                        node.status.as_str(),
                        backends.join(", "),
                        health
                            .ok()
                            .and_then(|h| h.hive_version)
                            .unwrap_or_else(|| "not running".into())
                    ),
                );
            }
        }
        queen.close().await;
    }
    if report.failures > 0 {
        return Err(fail(format!("{} check(s) failed", report.failures)));
    }
    Ok(())
}

fn tempfile_in(dir: &std::path::Path) -> bool {
    let probe = dir.join(".rbee-doctor-probe");
    let ok = std::fs::write(&probe, b"ok").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}
