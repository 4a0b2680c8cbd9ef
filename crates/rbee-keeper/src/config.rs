//! rbee's configuration file: `$RBEE_CONFIG`, else `~/.config/rbee/config.toml`, else
//! `/etc/rbee/config.toml`. Every key is optional.
//!
//! ```toml
//! queen_url = "http://127.0.0.1:8080"
//! api_key = "…"                 # when the queen requires one
//! default_model = "file:/models/SmolLM2-135M-Instruct.Q4_1.gguf"
//! ssh_config = "/home/me/.ssh/rbee_config"   # passed to queen-rbee (ssh -F)
//!
//! [remote]
//! binary_path = "/opt/rbee/target/release"  # rbee's binaries on the nodes
//! git_repo_dir = "/opt/rbee"                # default install path on the nodes
//! git_repo = "https://example.org/rbee.git" # default repository for add-node
//!
//! [queen]                  # queen-rbee's flags (see `queen-rbee daemon --help`)
//! queue-limit = 128
//!
//! [hive]                   # rbee-hive's flags on this machine (`rbee-hive daemon --help`)
//! idle-timeout = "30m"
//! ```
//!
//! The `[queen]` and `[hive]` tables are read by those daemons (`rbee_http::config_file`),
//! not by `rbee`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Result, fail};

pub const DEFAULT_QUEEN_URL: &str = "http://127.0.0.1:8080";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub queen_url: Option<String>,
    pub api_key: Option<String>,
    pub default_model: Option<String>,
    pub ssh_config: Option<PathBuf>,
    #[serde(default)]
    pub remote: Remote,
    /// queen-rbee's settings, read by queen-rbee itself.
    #[serde(default)]
    pub queen: toml::Table,
    /// rbee-hive's settings, read by rbee-hive itself.
    #[serde(default)]
    pub hive: toml::Table,
    /// The file this was read from.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    pub binary_path: Option<String>,
    pub git_repo_dir: Option<String>,
    pub git_repo: Option<String>,
}

/// The file to read: the flag or `$RBEE_CONFIG` (must exist), else the first of the user
/// and system files that exists.
pub fn locate(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    rbee_http::config_file::locate(explicit.map(Path::to_path_buf).as_ref())
        .map_err(|e| fail(e.to_string()))
}

pub fn load(explicit: Option<&Path>) -> Result<Config> {
    let Some(path) = locate(explicit)? else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    let mut config: Config =
        toml::from_str(&text).map_err(|e| fail(format!("{}: {}", path.display(), e.message())))?;
    config.path = Some(path);
    Ok(config)
}

impl Config {
    pub fn queen_url(&self, flag: Option<&str>) -> String {
        flag.map(str::to_owned)
            .or_else(|| self.queen_url.clone())
            .unwrap_or_else(|| DEFAULT_QUEEN_URL.to_owned())
            .trim_end_matches('/')
            .to_owned()
    }

    /// The model for `rbee infer` without `--model`.
    pub fn default_model(&self) -> Result<rbee_api::ModelRef> {
        if let Some(m) = &self.default_model {
            return m.parse().map_err(|e| {
                fail(format!(
                    "default_model in {}: {e}",
                    self.path
                        .as_ref()
                        .map_or("the configuration".into(), |p| p.display().to_string())
                ))
            });
        }
        match rbee_api::model_ref::fetched_model() {
            Some(p) if p.is_file() => rbee_api::ModelRef::file(&p).map_err(|e| fail(e.to_string())),
            _ => Err(fail(
                "no model given and the default model is not on this machine; run scripts/fetch-model.sh, or pass --model hf:<org>/<repo>",
            )),
        }
    }
}

/// Creates `path` readable by this user only (0600), in a folder only this user can enter
/// when it has to be made (0700): for files that may hold keys or answers.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_file_must_exist_and_parses_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        assert!(locate(Some(&path)).is_err());
        std::fs::write(
            &path,
            "queen_url = \"http://q:1/\"\napi_key = \"k\"\n[remote]\nbinary_path = \"/b\"\ngit_repo_dir = \"/r\"\n",
        )
        .unwrap();
        let c = load(Some(&path)).unwrap();
        assert_eq!(c.queen_url(None), "http://q:1");
        assert_eq!(c.queen_url(Some("http://flag:2")), "http://flag:2");
        assert_eq!(c.remote.binary_path.as_deref(), Some("/b"));
        assert_eq!(c.path.as_deref(), Some(path.as_path()));
    }

    #[test]
    fn unknown_keys_are_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "qeen_url = \"x\"\n").unwrap();
        let err = load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("c.toml") && err.contains("qeen_url"), "{err}");
    }
}
