//! `rbee doctor`: every prerequisite, one line each, with the fix for what fails.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use rbee_api::queen::{Beehive, BeehiveList, DEFAULT_HIVE_PORT, NodeHealth, NodeStatus};
use rbee_api::routes::queen as paths;
use reqwest::Method;

use crate::config::Config;
use crate::error::{Result, fail};
use crate::queen::Queen;

/// The lines printed so far, and how many failed.
#[derive(Default)]
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

pub async fn run(config: &Config, queen_url: String) -> Result<()> {
    let mut report = Report::default();
    binaries(&mut report);
    match config.default_model() {
        Ok(m) => report.line(true, "default model", &m.to_string()),
        Err(e) => report.line(false, "default model", &e.to_string()),
    }
    data_directory(&mut report);
    let queen = Queen::connect(config, queen_url).await;
    match &queen {
        Ok(q) => {
            let how = if q.is_ephemeral() {
                "started for this check"
            } else {
                "running"
            };
            report.line(true, "queen-rbee", &format!("{} ({how})", q.url));
        }
        Err(e) => report.line(false, "queen-rbee", &e.to_string()),
    }
    hive_port(&mut report);
    if let Ok(queen) = queen {
        nodes(&mut report, &queen).await;
        queen.close().await;
    }
    if report.failures > 0 {
        return Err(fail(format!("{} check(s) failed", report.failures)));
    }
    Ok(())
}

/// The daemons next to `rbee`, of the same version.
fn binaries(report: &mut Report) {
    let mine = env!("CARGO_PKG_VERSION");
    for name in ["queen-rbee", "rbee-hive", "llm-worker-rbee"] {
        let Some(path) = rbee_http::daemon::sibling_binary(name) else {
            report.line(
                false,
                name,
                "not found next to rbee; build with `cargo build --release` or run `rbee install`",
            );
            continue;
        };
        let version = version_of(&path);
        let same = version.as_deref() == Some(mine);
        let detail = if same {
            format!("{} ({mine})", path.display())
        } else {
            format!(
                "{} reports {version:?}, rbee is {mine}; rebuild with `cargo build --release`",
                path.display()
            )
        };
        report.line(same, name, &detail);
    }
}

fn version_of(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
}

/// The data directory the daemons use exists and is writable.
fn data_directory(report: &mut Report) {
    let Some(dir) = rbee_api::dirs::data_dir() else {
        report.line(false, "data directory", "HOME is not set");
        return;
    };
    let ok = std::fs::create_dir_all(&dir).is_ok() && writable(&dir);
    let verdict = if ok {
        "is writable"
    } else {
        "is not writable; fix its permissions"
    };
    report.line(
        ok,
        "data directory",
        &format!("{} {verdict}", dir.display()),
    );
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(".rbee-doctor-probe");
    let ok = std::fs::write(&probe, b"ok").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Whether a hive could listen on its default port here (informational).
fn hive_port(report: &mut Report) {
    let free = TcpListener::bind(("127.0.0.1", DEFAULT_HIVE_PORT)).is_ok();
    report.line(
        true,
        &format!("port {DEFAULT_HIVE_PORT}"),
        if free {
            "free for a hive"
        } else {
            "in use (a hive may be running)"
        },
    );
}

/// Each registered node: reachable, with backends, and its hive's version.
async fn nodes(report: &mut Report, queen: &Queen) {
    let Ok(list) = queen
        .json::<BeehiveList>(queen.request(Method::GET, paths::BEEHIVES_LIST))
        .await
    else {
        return;
    };
    for Beehive { config: c, state } in list.beehives {
        let health = queen
            .json::<NodeHealth>(
                queen
                    .request(Method::GET, paths::WORKERS_HEALTH)
                    .query(&[("node", &c.node_name)]),
            )
            .await;
        let backends: Vec<&str> = state.backends.iter().map(|b| b.as_str()).collect();
        let ok = state.status != NodeStatus::Unreachable && !backends.is_empty();
        let hive =
            (health.ok().and_then(|h| h.hive_version)).unwrap_or_else(|| "not running".into());
        report.line(
            ok,
            &format!("node {}", c.node_name),
            &format!(
                "{} ({}), backends [{}], hive {hive}",
                c.ssh_host,
                state.status.as_str(),
                backends.join(", "),
            ),
        );
    }
}
