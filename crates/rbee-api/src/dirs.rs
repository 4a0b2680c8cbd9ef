//! Where rbee keeps its files on a machine, as the XDG base directories say: each function
//! gives `$XDG_<KIND>_HOME/rbee`, else the usual place under `$HOME`; `None` without either.
//! Every program, and the shell the queen runs on remote nodes, uses these rules.

use std::path::PathBuf;

fn xdg(variable: &str, under_home: &str) -> Option<PathBuf> {
    std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(under_home)))
        .map(|base| base.join("rbee"))
}

/// Databases, logs and downloaded models: `$XDG_DATA_HOME/rbee` or `~/.local/share/rbee`.
pub fn data_dir() -> Option<PathBuf> {
    xdg("XDG_DATA_HOME", ".local/share")
}

/// The configuration file's folder: `$XDG_CONFIG_HOME/rbee` or `~/.config/rbee`.
pub fn config_dir() -> Option<PathBuf> {
    xdg("XDG_CONFIG_HOME", ".config")
}

/// Where rbee's configuration file is looked for when none is named, in order:
/// `<config dir>/config.toml`, then `/etc/rbee/config.toml`.
pub fn config_files() -> Vec<PathBuf> {
    let user = config_dir().map(|dir| dir.join("config.toml"));
    user.into_iter()
        .chain([PathBuf::from("/etc/rbee/config.toml")])
        .collect()
}

/// Fetched test and benchmark models: `$XDG_CACHE_HOME/rbee` or `~/.cache/rbee`.
pub fn cache_dir() -> Option<PathBuf> {
    xdg("XDG_CACHE_HOME", ".cache")
}

/// Per-user state such as partial answers: `$XDG_STATE_HOME/rbee` or `~/.local/state/rbee`.
pub fn state_dir() -> Option<PathBuf> {
    xdg("XDG_STATE_HOME", ".local/state")
}
