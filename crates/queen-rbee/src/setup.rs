//! Setting up a node: registering it after an SSH test, and installing rbee on it (clone and
//! release build over SSH). Both narrate every step into a setup stream and end with the
//! node as registered.

use std::process::Stdio;

use rbee_api::now_unix;
use rbee_api::queen::{NodeConfig, NodeState, NodeStatus, SetupDone, SetupEvent};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::error::QueenError;
use crate::narration::Narrator;
use crate::registry::NodeRecord;
use crate::ssh::quote;
use crate::state::AppState;

/// Refuses a registration that cannot work: the local machine's name, empty fields, or
/// values ssh would read as options.
pub fn validate(c: &NodeConfig) -> Result<(), QueenError> {
    if c.node_name.is_localhost() {
        return Err(QueenError::InvalidRequest(format!(
            "`{}` names this machine, which needs no registration; pick another name",
            c.node_name
        )));
    }
    c.hive_settings.validate()?;
    if c.ssh_host.is_empty() || c.ssh_user.is_empty() || c.install_path.is_empty() {
        return Err(QueenError::InvalidRequest(
            "ssh_host, ssh_user and install_path are required".into(),
        ));
    }
    for (field, value) in [("ssh_host", &c.ssh_host), ("ssh_user", &c.ssh_user)] {
        if value.starts_with('-') || value.chars().any(|ch| ch.is_whitespace() || ch == '@') {
            return Err(QueenError::InvalidRequest(format!(
                "`{field}` {value:?} must not start with `-` or hold spaces or `@`"
            )));
        }
    }
    Ok(())
}

/// Tests SSH to the node, detects its backends if rbee is installed, and registers it.
pub async fn add(
    state: &AppState,
    config: NodeConfig,
    narrator: &Narrator,
) -> Result<NodeRecord, QueenError> {
    narrator
        .say(
            "ssh_test",
            format!("Testing SSH connection to {}", config.ssh_host),
        )
        .await;
    let failed = |reason: String| QueenError::SshFailed {
        node: config.node_name.clone(),
        reason,
    };
    let answer = state
        .hives
        .ssh()
        .run(&config, "echo connection test")
        .await
        .map_err(|e| failed(rbee_http::error::with_causes(&e)))?;
    if answer.trim() != "connection test" {
        return Err(failed(format!(
            "unexpected answer to the connection test: {answer:?}"
        )));
    }
    let mut node_state = NodeState {
        status: NodeStatus::Reachable,
        last_connected_unix: Some(now_unix()),
        ..NodeState::default()
    };
    match state.hives.detect(&config).await {
        Some(found) => {
            narrator
                .say(
                    "detect",
                    format!(
                        "rbee is installed on {}; backends: {}",
                        config.node_name,
                        found
                            .backends
                            .iter()
                            .map(|b| b.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .await;
            node_state.backends = found.backends;
            node_state.devices = found.devices;
        }
        None => {
            narrator
                .say(
                    "detect",
                    format!("rbee is not installed on {} yet", config.node_name),
                )
                .await;
        }
    }
    let hive_api_key = state
        .registry
        .get(&config.node_name)?
        .map_or_else(rbee_http::auth::new_key, |existing| existing.hive_api_key);
    let record = NodeRecord {
        config,
        state: node_state,
        hive_api_key,
    };
    state.registry.upsert(&record)?;
    Ok(record)
}

/// The shell script that clones (or updates) the repository at its branch and builds the
/// node's binaries in release mode, the worker with the GPU backend the node has a toolkit
/// for: cuda when `nvcc` is on its PATH, metal on macOS.
fn install_script(c: &NodeConfig, repo: &str) -> String {
    let (path, branch) = (quote(&c.install_path), quote(&c.git_branch));
    format!(
        "set -e; PATH=\"$HOME/.cargo/bin:$PATH\"; \
         if [ -d {path}/.git ]; then cd {path}; git fetch --quiet origin {branch}; git checkout --quiet -B {branch} FETCH_HEAD; \
         else git clone --quiet --branch {branch} {repo} {path}; cd {path}; fi; \
         echo \"checked out $(git rev-parse --short HEAD) of {branch}\"; \
         features=''; \
         if command -v nvcc >/dev/null 2>&1; then features='--features llm-worker-rbee/cuda'; echo 'CUDA toolkit found (nvcc): building the worker with cuda'; \
         elif [ \"$(uname -s)\" = Darwin ]; then features='--features llm-worker-rbee/metal'; echo 'macOS: building the worker with metal'; \
         else echo 'no GPU toolkit found (nvcc): building the worker for the cpu'; fi; \
         cargo build --release --locked -p rbee-hive -p llm-worker-rbee $features 2>&1; \
         echo 'build finished'",
        repo = quote(repo),
    )
}

/// The repository rbee is installed on `c` from.
pub fn repository(c: &NodeConfig) -> Result<String, QueenError> {
    c.git_repo_url.clone().ok_or_else(|| {
        QueenError::InvalidRequest(format!(
            "node {} has no git_repo_url to install from",
            c.node_name
        ))
    })
}

/// Installs rbee on a registered node from `repo`, narrating every line of the build; the
/// node with the backends it detects afterwards.
pub async fn install(
    state: &AppState,
    record: NodeRecord,
    repo: String,
    narrator: &Narrator,
) -> Result<NodeRecord, QueenError> {
    let c = &record.config;
    narrator
        .say(
            "install",
            format!(
                "Installing rbee on {} from {repo} ({})",
                c.node_name, c.git_branch
            ),
        )
        .await;
    let failed = |reason: String| QueenError::SshFailed {
        node: c.node_name.clone(),
        reason,
    };
    let mut cmd = state.hives.ssh().command(c, &install_script(c, &repo));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot run ssh: {e}")))?;
    let last = narrate_output(&mut child, narrator).await;
    let ok = child.wait().await.is_ok_and(|s| s.success());
    if !ok {
        return Err(failed(format!("installing failed: {last}")));
    }
    let mut updated = record.clone();
    if let Some(found) = state.hives.detect(c).await {
        updated.state.backends = found.backends;
        updated.state.devices = found.devices;
    }
    state.registry.upsert(&updated)?;
    narrator
        .say("installed", format!("rbee is installed on {}", c.node_name))
        .await;
    Ok(updated)
}

/// Narrates each non-empty line `child` writes (stdout and stderr, as they come); its last
/// line.
async fn narrate_output(child: &mut tokio::process::Child, narrator: &Narrator) -> String {
    let mut last = String::new();
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return last;
    };
    let mut out = BufReader::new(out).lines();
    let mut err = BufReader::new(err).lines();
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let line = tokio::select! {
            l = out.next_line(), if out_open => l.ok().flatten().or_else(|| { out_open = false; None }),
            l = err.next_line(), if err_open => l.ok().flatten().or_else(|| { err_open = false; None }),
        };
        if let Some(line) = line.filter(|l| !l.trim().is_empty()) {
            last.clone_from(&line);
            narrator.say("install", line).await;
        }
    }
    last
}

/// Runs a setup step in the background as a stream: its narration, then `end` with the node
/// or `error`.
pub fn stream<F>(step: impl FnOnce(Narrator) -> F + Send + 'static) -> mpsc::Receiver<SetupEvent>
where
    F: std::future::Future<Output = Result<NodeRecord, QueenError>> + Send,
{
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let outcome = step(Narrator::setup(tx.clone())).await;
        let last = match outcome {
            Ok(record) => SetupEvent::Done(Box::new(SetupDone {
                ok: true,
                node: record.beehive(),
            })),
            Err(e) => SetupEvent::Error(e.envelope()),
        };
        let _ = tx.send(last).await;
    });
    rx
}
