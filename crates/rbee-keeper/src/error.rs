//! What ends a command: one readable line and an exit code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// A failure with a message for the user (exit code 1).
    #[error("{0}")]
    Failed(String),
    /// The queen rejected our key.
    #[error("Authentication failed: queen-rbee rejected the API key{}", config_hint(.0))]
    Auth(Option<PathBuf>),
    /// Ctrl+C (exit code 130); the message was already printed.
    #[error("Canceled.")]
    Interrupted,
}

fn config_hint(config: &Option<PathBuf>) -> String {
    match config {
        Some(p) => format!(" (api_key in {})", p.display()),
        None => " (set api_key in ~/.config/rbee/config.toml)".to_owned(),
    }
}

impl KeeperError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Interrupted => 130,
            _ => 1,
        }
    }
}

pub type Result<T> = std::result::Result<T, KeeperError>;

pub fn fail(message: impl Into<String>) -> KeeperError {
    KeeperError::Failed(message.into())
}
