//! The `queen-rbee` HTTP API: the node registry, tasks (inference through the whole stack),
//! workers across nodes, and logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hive::{DownloadEvent, WorkerInfo};
use crate::sse::SseMessage;
use crate::worker::{ChatMessage, EndEvent, LoadingEvent, TokenEvent};
use crate::{Backend, ErrorEnvelope, Narration};

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueenHealth {
    pub status: String,
    pub version: String,
}

/// The node a request is for when none is named: this machine, no registration needed.
pub const LOCALHOST: &str = "localhost";

/// Whether a node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    #[default]
    Unknown,
    Reachable,
    Unreachable,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Reachable => "reachable",
            Self::Unreachable => "unreachable",
        }
    }
}

fn default_ssh_port() -> u16 {
    22
}

fn default_branch() -> String {
    "main".to_owned()
}

fn default_hive_port() -> u16 {
    9200
}

/// A registered node (`beehives.db`, table `beehives`); also the body of
/// `POST /v2/registry/beehives/add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beehive {
    pub node_name: String,
    pub ssh_host: String,
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    pub ssh_user: String,
    #[serde(default)]
    pub ssh_key_path: Option<String>,
    #[serde(default)]
    pub git_repo_url: Option<String>,
    #[serde(default = "default_branch")]
    pub git_branch: String,
    pub install_path: String,
    /// Port of the node's hive (an extension of the SPEC schema; default 9200).
    #[serde(default = "default_hive_port")]
    pub hive_port: u16,
    #[serde(default)]
    pub last_connected_unix: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub status: NodeStatus,
    #[serde(default)]
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub devices: BTreeMap<Backend, u32>,
}

/// `GET /v2/registry/beehives/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeehiveList {
    pub beehives: Vec<Beehive>,
}

/// `POST /v2/registry/beehives/remove` and `/install`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    pub node_name: String,
}

/// `POST /v2/tasks`: one inference on a node, through the whole stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    /// Names the task for `DELETE /v2/tasks/{id}`; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The node to run on; without one the queen places the task (see queen-rbee's
    /// `placement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    #[serde(default = "default_backend")]
    pub backend: Backend,
    #[serde(default)]
    pub device: u32,
}

fn default_backend() -> Backend {
    Backend::Cpu
}

/// The events of a task stream; the SSE `event:` name is [`SseMessage::event`].
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// First event: the task's id, for `DELETE /v2/tasks/{id}`.
    Started {
        task_id: String,
    },
    Narration(Narration),
    Download(DownloadEvent),
    Loading(LoadingEvent),
    Token(TokenEvent),
    End(EndEvent),
    Error(ErrorEnvelope),
}

#[derive(Serialize, Deserialize)]
struct Started {
    task_id: String,
}

impl TaskEvent {
    pub const STARTED: &'static str = "started";
    pub const DOWNLOAD: &'static str = "download";
    pub const LOADING: &'static str = "loading";

    pub fn parse(event: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
        use crate::sse::{EVENT_ERROR, EVENT_NARRATION};
        let parsed = match event {
            Self::STARTED => {
                serde_json::from_str::<Started>(data).map(|s| Self::Started { task_id: s.task_id })
            }
            EVENT_NARRATION => serde_json::from_str(data).map(Self::Narration),
            Self::DOWNLOAD => serde_json::from_str(data).map(Self::Download),
            Self::LOADING => serde_json::from_str(data).map(Self::Loading),
            crate::worker::InferenceEvent::TOKEN => serde_json::from_str(data).map(Self::Token),
            crate::worker::InferenceEvent::END => serde_json::from_str(data).map(Self::End),
            EVENT_ERROR => serde_json::from_str(data).map(Self::Error),
            _ => return None,
        };
        Some(parsed)
    }
}

impl SseMessage for TaskEvent {
    fn event(&self) -> &'static str {
        match self {
            Self::Started { .. } => Self::STARTED,
            Self::Narration(_) => crate::sse::EVENT_NARRATION,
            Self::Download(_) => Self::DOWNLOAD,
            Self::Loading(_) => Self::LOADING,
            Self::Token(_) => crate::worker::InferenceEvent::TOKEN,
            Self::End(_) => crate::worker::InferenceEvent::END,
            Self::Error(_) => crate::sse::EVENT_ERROR,
        }
    }

    fn data(&self) -> String {
        let json = match self {
            Self::Started { task_id } => serde_json::to_string(&Started {
                task_id: task_id.clone(),
            }),
            Self::Narration(n) => serde_json::to_string(n),
            Self::Download(d) => serde_json::to_string(d),
            Self::Loading(l) => serde_json::to_string(l),
            Self::Token(t) => serde_json::to_string(t),
            Self::End(e) => serde_json::to_string(e),
            Self::Error(e) => serde_json::to_string(e),
        };
        json.unwrap_or_default()
    }
}

/// A worker as the queen lists it: the hive's record plus its node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeWorker {
    pub node: String,
    #[serde(flatten)]
    pub worker: WorkerInfo,
}

/// `GET /v2/workers/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeWorkersList {
    pub workers: Vec<NodeWorker>,
}

/// `POST /v2/workers/shutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerShutdownRequest {
    pub worker_id: String,
}

/// One worker's health as `GET /v2/workers/health?node=` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerHealth {
    pub worker_id: String,
    pub url: String,
    pub model_ref: String,
    pub healthy: bool,
    pub state: String,
    pub detail: Option<String>,
}

/// `GET /v2/workers/health?node=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub node: String,
    pub hive_url: String,
    pub hive_version: Option<String>,
    pub workers: Vec<WorkerHealth>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beehive_defaults_fill_the_optional_columns() {
        let b: Beehive = serde_json::from_str(
            r#"{"node_name":"ws","ssh_host":"ws.lan","ssh_user":"me","install_path":"/opt/rbee"}"#,
        )
        .unwrap();
        assert_eq!(
            (b.ssh_port, b.git_branch.as_str(), b.hive_port),
            (22, "main", 9200)
        );
        assert_eq!(b.status, NodeStatus::Unknown);
    }

    #[test]
    fn task_events_round_trip() {
        let events = [
            TaskEvent::Started {
                task_id: "t1".into(),
            },
            TaskEvent::Download(DownloadEvent::Verifying),
            TaskEvent::Loading(LoadingEvent::Ready),
            TaskEvent::Token(TokenEvent {
                t: "Hi".into(),
                i: 0,
            }),
        ];
        for e in events {
            let back = TaskEvent::parse(e.event(), &e.data()).unwrap().unwrap();
            assert_eq!(back, e);
        }
    }
}
