//! SSH through the system `ssh` client, so users' keys, agents and `~/.ssh/config` work.
//!
//! Every call runs in batch mode (never prompts), with a connect timeout and keep-alives so
//! a dead link fails in seconds, and verifies host keys — trusting a new host on first use,
//! never accepting a changed one. A configuration file from rbee's settings is passed with
//! `-F`; that is also how tests point the queen at their hosts.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rbee_api::queen::NodeConfig;
use tokio::process::Command;

#[derive(Debug, Clone, Default)]
pub struct Ssh {
    pub config_file: Option<PathBuf>,
}

/// Why an ssh call failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot run ssh (is the OpenSSH client installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("ssh to {host} did not finish within {after:?}")]
    Timeout { host: String, after: Duration },
    /// ssh's own last words, or the remote command's.
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Unexpected(String),
}

/// Seconds to wait for the TCP connection and between keep-alives.
const CONNECT_TIMEOUT_S: u32 = 5;
const ALIVE_INTERVAL_S: u32 = 2;
/// Longest a single short command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl Ssh {
    /// `ssh <options> -l user -- host <remote>` as a command ready to run.
    pub fn command(&self, node: &NodeConfig, remote: &str) -> Command {
        let mut cmd = Command::new("ssh");
        if let Some(config) = &self.config_file {
            cmd.arg("-F").arg(config);
        }
        cmd.args(["-o", "BatchMode=yes"])
            .args(["-o", &format!("ConnectTimeout={CONNECT_TIMEOUT_S}")])
            .args(["-o", &format!("ServerAliveInterval={ALIVE_INTERVAL_S}")])
            .args(["-o", "ServerAliveCountMax=2"])
            .args(["-o", "StrictHostKeyChecking=accept-new"])
            .args(["-p", &node.ssh_port.to_string()]);
        if let Some(key) = &node.ssh_key_path {
            cmd.args(["-i", key, "-o", "IdentitiesOnly=yes"]);
        }
        // The user travels as the value of -l and the host after `--`, so neither can be
        // read as an option, whatever it holds.
        cmd.args(["-l", &node.ssh_user])
            .arg("--")
            .arg(&node.ssh_host)
            .arg(remote)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `remote` on `node`; its stdout on success.
    pub async fn run(&self, node: &NodeConfig, remote: &str) -> Result<String, SshError> {
        self.run_with_input(node, remote, "").await
    }

    /// Runs `remote` on `node` with `input` on its standard input (how secrets travel: never
    /// on a command line, where `ps` shows them); its stdout on success.
    pub async fn run_with_input(
        &self,
        node: &NodeConfig,
        remote: &str,
        input: &str,
    ) -> Result<String, SshError> {
        let mut cmd = self.command(node, remote);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = async {
            let mut child = cmd.spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                use tokio::io::AsyncWriteExt;
                // A remote command that does not read its input closes the pipe early.
                let _ = stdin.write_all(input.as_bytes()).await;
            }
            child.wait_with_output().await
        };
        let out = tokio::time::timeout(COMMAND_TIMEOUT, output)
            .await
            .map_err(|_| SshError::Timeout {
                host: node.ssh_host.clone(),
                after: COMMAND_TIMEOUT,
            })?
            .map_err(SshError::Spawn)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = |s: &str| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with("Warning: Permanently added"))
                .map(str::to_owned)
        };
        let reason = last(&stderr)
            .or_else(|| last(&stdout))
            .unwrap_or_else(|| format!("exit status {}", out.status));
        Err(SshError::Failed(reason))
    }
}

/// Quotes `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry row written before validation existed (or by hand) must still not run
    /// anything: ssh reads neither the user nor the host as an option.
    #[tokio::test]
    async fn a_hostile_user_or_host_never_becomes_an_ssh_option() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let injected = format!("-oProxyCommand=touch {}", marker.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for (user, host) in [
            (injected.as_str(), "127.0.0.1"),
            ("root", injected.as_str()),
        ] {
            let node = NodeConfig {
                node_name: "hostile".parse().unwrap(),
                ssh_host: host.into(),
                ssh_port: port,
                ssh_user: user.into(),
                ssh_key_path: None,
                git_repo_url: None,
                git_branch: "main".into(),
                install_path: "/opt/rbee".into(),
                hive_port: 9200,
                hive_settings: Default::default(),
            };
            let args: Vec<_> = Ssh::default()
                .command(&node, "true")
                .as_std()
                .get_args()
                .map(|a| a.to_owned())
                .collect();
            let dashdash = args.iter().position(|a| a == "--").unwrap();
            assert_eq!(args[dashdash + 1], host, "{args:?}");
            assert_eq!(
                args[dashdash - 1],
                user,
                "the user is the value of -l: {args:?}"
            );
            assert!(Ssh::default().run(&node, "true").await.is_err());
            assert!(!marker.exists(), "ssh ran the injected ProxyCommand");
        }
    }

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(quote("/opt/rbee"), "/opt/rbee");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
