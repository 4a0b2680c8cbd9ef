//! Narration: the human-readable account of a long operation, streamed beside its data.

use serde::{Deserialize, Serialize};

/// `{"actor":"llm-worker-rbee","action":"inference_start","human":"Starting inference …"}`.
///
/// Clients print it as `[actor] human`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Narration {
    pub actor: String,
    pub action: String,
    pub human: String,
}

impl Narration {
    pub fn new(actor: &str, action: &str, human: impl Into<String>) -> Self {
        Self {
            actor: actor.to_owned(),
            action: action.to_owned(),
            human: human.into(),
        }
    }
}

impl std::fmt::Display for Narration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.actor, self.human)
    }
}
