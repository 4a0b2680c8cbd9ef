//! `GET /v1/models` and the model ids clients send.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: u64,
    /// The nodes whose catalog holds it (`rbee` for a configured default).
    pub owned_by: String,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}

/// A model id as clients send it: `<model ref>` lets the queen place it,
/// `<node>/<model ref>` pins a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    pub node: Option<crate::NodeName>,
    pub model_ref: crate::ModelRef,
}

/// Why a model id cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelIdError {
    /// Not a model reference at all (`gpt-4o`): no such model here.
    Unknown(String),
    /// Shaped like a reference, but malformed.
    Invalid(String),
}

impl std::fmt::Display for ModelIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown(id) => write!(
                f,
                "unknown model `{id}`: use a model reference (hf:<org>/<repo>[:<QUANT>] or file:<path>), optionally as <node>/<reference>; GET /v1/models lists the models rbee has"
            ),
            Self::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ModelIdError {}

impl ModelId {
    pub fn parse(id: &str) -> Result<Self, ModelIdError> {
        let is_ref = |s: &str| s.starts_with("hf:") || s.starts_with("file:");
        let (node, reference) = if is_ref(id) {
            (None, id)
        } else {
            match id.split_once('/') {
                Some((node, rest)) if !node.is_empty() && is_ref(rest) => (Some(node), rest),
                _ => return Err(ModelIdError::Unknown(id.to_owned())),
            }
        };
        let invalid = |e: &dyn std::fmt::Display| ModelIdError::Invalid(e.to_string());
        Ok(Self {
            node: node.map(str::parse).transpose().map_err(|e| invalid(&e))?,
            model_ref: reference.parse().map_err(|e| invalid(&e))?,
        })
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some(node) => write!(f, "{node}/{}", self.model_ref),
            None => write!(f, "{}", self.model_ref),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_name_a_node_or_leave_placement_to_the_queen() {
        assert_eq!(
            ModelId::parse("hf:org/repo:Q4_1").unwrap(),
            ModelId {
                node: None,
                model_ref: "hf:org/repo:Q4_1".parse().unwrap()
            }
        );
        let pinned = ModelId::parse("mac/hf:org/repo").unwrap();
        assert_eq!(pinned.node.unwrap(), "mac");
        assert_eq!(
            ModelId::parse("workstation/file:/m/x.gguf")
                .unwrap()
                .to_string(),
            "workstation/file:/m/x.gguf"
        );
        assert!(matches!(
            ModelId::parse("gpt-4o"),
            Err(ModelIdError::Unknown(_))
        ));
        assert!(ModelId::parse("org/repo").is_err());
        assert!(matches!(
            ModelId::parse("hf:just-a-name"),
            Err(ModelIdError::Invalid(_))
        ));
    }
}
