//! The `queen-rbee` HTTP API: the node registry, tasks (inference through the whole stack),
//! workers across nodes, and logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hive::{DownloadEvent, ModelDeleted, ModelEntry, Resources, WorkerInfo, WorkerStopped};
use crate::sse::{EVENT_ERROR, EVENT_NARRATION};
use crate::worker::{ChatMessage, EndEvent, InferenceEvent, LoadingEvent, TokenEvent, WorkerState};
use crate::{
    Backend, BackendChoice, ErrorEnvelope, JobId, ModelRef, Narration, NodeName, WorkerId,
};

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueenHealth {
    pub status: String,
    pub version: String,
}

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
    pub const ALL: [Self; 3] = [Self::Unknown, Self::Reachable, Self::Unreachable];

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

/// The port a node's hive listens on unless its registration says otherwise.
pub const DEFAULT_HIVE_PORT: u16 = 9200;

fn default_hive_port() -> u16 {
    DEFAULT_HIVE_PORT
}

/// How to reach a node and where rbee lives on it, as the user registers it: the body of
/// `POST /v2/registry/beehives/add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node_name: NodeName,
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
    /// Port of the node's hive ([`DEFAULT_HIVE_PORT`] unless given).
    #[serde(default = "default_hive_port")]
    pub hive_port: u16,
    /// How the queen starts the node's hive; each unset one is the hive's default.
    #[serde(default, skip_serializing_if = "HiveSettings::is_default")]
    pub hive_settings: HiveSettings,
}

/// A node's hive settings, passed as flags when the queen starts its hive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HiveSettings {
    /// Seconds a worker may stay idle before it is stopped (`--idle-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// RAM (MB) the hive may give to models (`--memory-limit-mb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mb: Option<u64>,
    /// Slots of each worker it starts (`--worker-slots`, 1–64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_slots: Option<u16>,
    /// Where it keeps downloaded models (`--models-dir`), a path on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models_dir: Option<String>,
    /// The first port of its workers (`--worker-port-start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_port_start: Option<u16>,
}

/// A hive setting the hive would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HiveSettingError {
    WorkerSlots(u16),
    IdleTimeoutZero,
    ModelsDir(String),
}

impl HiveSettingError {
    /// The setting at fault, as the request names it.
    pub fn field(&self) -> &'static str {
        match self {
            Self::WorkerSlots(_) => "worker_slots",
            Self::IdleTimeoutZero => "idle_timeout_secs",
            Self::ModelsDir(_) => "models_dir",
        }
    }
}

impl std::fmt::Display for HiveSettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WorkerSlots(n) => write!(f, "worker_slots must be 1 to 64, not {n}"),
            Self::IdleTimeoutZero => f.write_str("idle_timeout_secs must be at least 1"),
            Self::ModelsDir(dir) => write!(f, "models_dir {dir:?} must be a path"),
        }
    }
}

impl std::error::Error for HiveSettingError {}

impl HiveSettings {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// Refuses values the hive would refuse, naming the setting.
    pub fn validate(&self) -> Result<(), HiveSettingError> {
        if let Some(n) = self.worker_slots.filter(|n| !(1..=64).contains(n)) {
            return Err(HiveSettingError::WorkerSlots(n));
        }
        if self.idle_timeout_secs == Some(0) {
            return Err(HiveSettingError::IdleTimeoutZero);
        }
        if let Some(dir) = &self.models_dir
            && (dir.is_empty() || dir.starts_with('-'))
        {
            return Err(HiveSettingError::ModelsDir(dir.clone()));
        }
        Ok(())
    }

    /// The hive flags these settings stand for (values unquoted).
    pub fn flags(&self) -> Vec<(&'static str, String)> {
        let mut flags = Vec::new();
        if let Some(s) = self.idle_timeout_secs {
            flags.push(("--idle-timeout", format!("{s}s")));
        }
        if let Some(mb) = self.memory_limit_mb {
            flags.push(("--memory-limit-mb", mb.to_string()));
        }
        if let Some(n) = self.worker_slots {
            flags.push(("--worker-slots", n.to_string()));
        }
        if let Some(dir) = &self.models_dir {
            flags.push(("--models-dir", dir.clone()));
        }
        if let Some(port) = self.worker_port_start {
            flags.push(("--worker-port-start", port.to_string()));
        }
        flags
    }
}

/// `POST /v2/registry/beehives/settings`: replaces a node's hive settings; they apply when
/// the queen next starts its hive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettingsRequest {
    pub node_name: NodeName,
    pub hive_settings: HiveSettings,
}

/// What the queen last saw of a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeState {
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

/// A registered node as the queen lists it: its configuration and what was last seen of it,
/// as one flat object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Beehive {
    #[serde(flatten)]
    pub config: NodeConfig,
    #[serde(flatten)]
    pub state: NodeState,
}

impl<'de> Deserialize<'de> for Beehive {
    /// The state's fields are taken out of the object by name (the names a default state
    /// serializes to); the rest must be exactly a [`NodeConfig`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut object = serde_json::Map::deserialize(d)?;
        let state_keys = match serde_json::to_value(NodeState::default()) {
            Ok(serde_json::Value::Object(keys)) => keys,
            _ => serde_json::Map::new(),
        };
        let state: serde_json::Map<_, _> = state_keys
            .keys()
            .filter_map(|k| object.remove_entry(k))
            .collect();
        Ok(Self {
            config: serde_json::from_value(object.into()).map_err(D::Error::custom)?,
            state: serde_json::from_value(state.into()).map_err(D::Error::custom)?,
        })
    }
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
    pub node_name: NodeName,
}

/// Answer to `POST /v2/registry/beehives/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRemoved {
    pub node_name: NodeName,
    /// Whether the node was registered.
    pub removed: bool,
}

/// The last event of a setup stream (adding or installing a node) that succeeded: the
/// node as now registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupDone {
    pub ok: bool,
    pub node: Beehive,
}

crate::sse_events! {
    /// The events of `POST /v2/registry/beehives/add` and `/install`: what the queen does,
    /// narrated, then `end` or `error`.
    #[derive(Debug, Clone, PartialEq)]
    pub enum SetupEvent {
        Narration(Narration) = EVENT_NARRATION,
        Error(ErrorEnvelope) = EVENT_ERROR,
        Done(Box<SetupDone>) = InferenceEvent::END,
    }
}

/// `POST /v2/tasks`: one inference on a node, through the whole stack.
///
/// The generation fields repeat [`crate::worker::InferenceRequest`]'s: serde cannot flatten a
/// shared struct into one that refuses unknown fields, and a misspelt field must be refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    /// Names the task for `DELETE /v2/tasks/{id}`; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<JobId>,
    /// The node to run on; without one the queen places the task (see queen-rbee's
    /// `placement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeName>,
    pub model: ModelRef,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<std::collections::BTreeMap<u32, f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::worker::OutputFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<crate::worker::Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<crate::worker::ToolChoice>,
    /// How long the worker stays once idle after this task (seconds; 0 stops it as soon as
    /// it is idle); without it, the hive's idle timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<u64>,
    /// A Jinja chat template for `messages` instead of the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// `auto` (the default): the node's best backend from its hive's detection (cuda, then
    /// metal, then cpu); the `assigned` event says which was used.
    #[serde(default)]
    pub backend: BackendChoice,
    #[serde(default)]
    pub device: u32,
}

impl TaskRequest {
    /// A task for `model` with every other field at its default (no prompt yet: set
    /// `prompt` or `messages`).
    pub fn for_model(model: ModelRef) -> Self {
        Self {
            task_id: None,
            node: None,
            model,
            prompt: None,
            messages: None,
            max_tokens: None,
            temperature: None,
            top_p: None,
            top_k: None,
            seed: None,
            stop: None,
            frequency_penalty: None,
            presence_penalty: None,
            logit_bias: None,
            logprobs: None,
            format: None,
            context_length: None,
            tools: None,
            tool_choice: None,
            keep_alive: None,
            chat_template: None,
            backend: BackendChoice::Auto,
            device: 0,
        }
    }
}

/// The first event of a task: its id, for `DELETE /v2/tasks/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStarted {
    pub task_id: JobId,
}

/// The worker that answers a task, once the queen has one of its slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAssigned {
    pub node: NodeName,
    pub worker_id: WorkerId,
    pub backend: Backend,
    pub device: u32,
}

crate::sse_events! {
    /// The events of a task stream.
    #[derive(Debug, Clone, PartialEq)]
    pub enum TaskEvent {
        Started(TaskStarted) = TaskEvent::STARTED,
        Assigned(TaskAssigned) = TaskEvent::ASSIGNED,
        Narration(Narration) = EVENT_NARRATION,
        Download(DownloadEvent) = TaskEvent::DOWNLOAD,
        Loading(LoadingEvent) = TaskEvent::LOADING,
        Token(TokenEvent) = InferenceEvent::TOKEN,
        End(EndEvent) = InferenceEvent::END,
        Error(ErrorEnvelope) = EVENT_ERROR,
    }
}

impl TaskEvent {
    pub const STARTED: &'static str = "started";
    pub const DOWNLOAD: &'static str = "download";
    pub const ASSIGNED: &'static str = "assigned";
    pub const LOADING: &'static str = "loading";
}

/// Answer to `DELETE /v2/tasks/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCancelled {
    pub task_id: JobId,
    pub cancelled: bool,
}

/// A worker as the queen lists it: the hive's record plus its node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeWorker {
    pub node: NodeName,
    #[serde(flatten)]
    pub worker: WorkerInfo,
}

impl NodeWorker {
    /// `worker` on `node` as the queen shows it: clients reach workers through the queen,
    /// so their keys stay with it.
    pub fn shown(node: NodeName, worker: WorkerInfo) -> Self {
        Self {
            node,
            worker: WorkerInfo {
                api_key: String::new(),
                ..worker
            },
        }
    }
}

/// `GET /v2/workers/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeWorkersList {
    pub workers: Vec<NodeWorker>,
}

/// Answer to `POST /v2/registry/beehives/stop` (body [`NodeRequest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiveStopped {
    pub node_name: NodeName,
    /// The workers it stopped with it.
    pub workers_stopped: usize,
}

/// `GET /v2/lab/events`: the whole lab, sent as one `lab` event at once and then every
/// [`LabSnapshot::EVERY_MS`] until the client leaves (the web dashboard's live view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabSnapshot {
    pub unix_ms: u64,
    /// The queen's own machine first, then every registered node.
    pub nodes: Vec<LabNode>,
    pub workers: Vec<LabWorker>,
    /// Tokens relayed to clients since the queen started.
    pub tokens_total: u64,
    /// Tasks ended since the queen started, whatever their outcome.
    pub tasks_total: u64,
    pub queued_tasks: usize,
    pub busy_slots: usize,
}

impl LabSnapshot {
    pub const EVENT: &'static str = "lab";
    pub const EVERY_MS: u64 = 2000;
}

crate::sse::sse_single!(LabSnapshot);

/// One node of a [`LabSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabNode {
    pub node_name: NodeName,
    /// What the registry holds of it (none for the queen's own machine).
    pub registered: Option<NodeState>,
    /// Whether its hive answered for this snapshot.
    pub hive_running: bool,
    /// What its hive reported: free RAM, backends and devices (free VRAM per GPU); the last
    /// report while a running hive is slow to make a new one.
    pub resources: Option<Resources>,
    /// Why the queen's last attempt to reach or start its hive failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One loaded worker of a [`LabSnapshot`], with the tokens the queen relayed from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabWorker {
    #[serde(flatten)]
    pub worker: NodeWorker,
    pub tokens_total: u64,
}

/// `POST /v2/workers/shutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerShutdownRequest {
    pub worker_id: WorkerId,
}

/// Answer to `POST /v2/workers/shutdown`: the hive's answer, and the node it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeWorkerStopped {
    pub node: NodeName,
    #[serde(flatten)]
    pub worker: WorkerStopped,
}

/// One worker's health as `GET /v2/workers/health?node=` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerHealth {
    pub worker_id: WorkerId,
    pub url: String,
    pub model_ref: ModelRef,
    pub healthy: bool,
    pub state: WorkerState,
    pub detail: Option<String>,
}

/// `GET /v2/workers/health?node=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub node: NodeName,
    pub hive_url: String,
    pub hive_version: Option<String>,
    pub workers: Vec<WorkerHealth>,
}

/// `GET /v2/models/list[?node=<name>][&start=false]`: which node's catalog (all of them
/// without); a node's hive is started to read it unless `start=false`, which lists a node
/// whose hive does not run as such ([`NodeModels::hive_running`] false, no models).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeName>,
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub start: bool,
}

impl Default for ModelsQuery {
    fn default() -> Self {
        Self {
            node: None,
            start: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_yes(b: &bool) -> bool {
    *b
}

/// One node's catalog, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeModels {
    pub node: NodeName,
    pub models: Vec<ModelEntry>,
    /// Free space in the node's models directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    /// The node's hive did not answer: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether its hive answered with its catalog: false with `error` when it could not be
    /// reached or started, false alone when the request asked not to start hives.
    #[serde(default = "yes")]
    pub hive_running: bool,
}

/// Answer to `GET /v2/models/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeModelsList {
    pub nodes: Vec<NodeModels>,
}

/// `POST /v2/models/pull` and `POST /v2/models/remove`: a model on a node (localhost when
/// none is named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeModelRequest {
    #[serde(default = "NodeName::localhost")]
    pub node: NodeName,
    pub model: ModelRef,
}

/// `GET /v2/models/show?model=<ref>[&node=<name>]`: without a node, the first whose catalog
/// has the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShowQuery {
    pub model: ModelRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeName>,
}

/// Answer to `GET /v2/models/show`: the catalog row and what the GGUF header says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeModelInfo {
    pub node: NodeName,
    pub entry: ModelEntry,
    pub info: crate::worker::ModelInfo,
}

/// `POST /v2/models/settings`: how a node's workers run a model (each setting left out: the
/// file's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeModelSettingsRequest {
    #[serde(default = "NodeName::localhost")]
    pub node: NodeName,
    pub model: ModelRef,
    #[serde(default)]
    pub settings: crate::hive::ModelSettings,
}

/// Answer to `POST /v2/models/settings`: the node's catalog entry now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeModelEntry {
    pub node: NodeName,
    pub model: ModelEntry,
}

/// Answer to `POST /v2/models/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeModelRemoved {
    pub node: NodeName,
    #[serde(flatten)]
    pub removed: ModelDeleted,
}

/// The end of a pull: the model is in the node's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeModelPulled {
    pub node: NodeName,
    pub model: ModelEntry,
    /// It was there already: nothing was downloaded.
    pub already_present: bool,
}

crate::sse_events! {
    /// The events of `POST /v2/models/pull`: the queen's narration (starting the hive), the
    /// hive's download progress, then `end` or `error`.
    #[derive(Debug, Clone, PartialEq)]
    pub enum PullEvent {
        Narration(Narration) = EVENT_NARRATION,
        Download(DownloadEvent) = TaskEvent::DOWNLOAD,
        Done(NodeModelPulled) = InferenceEvent::END,
        Error(ErrorEnvelope) = EVENT_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_config_defaults_fill_the_optional_columns() {
        let c: NodeConfig = serde_json::from_str(
            r#"{"node_name":"ws","ssh_host":"ws.lan","ssh_user":"me","install_path":"/opt/rbee"}"#,
        )
        .unwrap();
        assert_eq!(
            (c.ssh_port, c.git_branch.as_str(), c.hive_port),
            (22, "main", DEFAULT_HIVE_PORT)
        );
    }

    #[test]
    fn a_node_registration_cannot_carry_its_state() {
        let err = serde_json::from_str::<NodeConfig>(
            r#"{"node_name":"ws","ssh_host":"h","ssh_user":"u","install_path":"/p","status":"reachable"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `status`"), "{err}");
    }

    #[test]
    fn a_listed_node_is_one_flat_object_both_ways() {
        let b = Beehive {
            config: serde_json::from_str(
                r#"{"node_name":"ws","ssh_host":"h","ssh_user":"u","install_path":"/p"}"#,
            )
            .unwrap(),
            state: NodeState {
                status: NodeStatus::Reachable,
                last_error: Some("x".into()),
                ..NodeState::default()
            },
        };
        let value = serde_json::to_value(&b).unwrap();
        assert_eq!(value["status"], "reachable");
        assert_eq!(value["ssh_host"], "h");
        assert_eq!(serde_json::from_value::<Beehive>(value).unwrap(), b);
        let unknown = serde_json::json!({"node_name":"ws","ssh_host":"h","ssh_user":"u",
            "install_path":"/p","colour":"blue"});
        assert!(serde_json::from_value::<Beehive>(unknown).is_err());
    }

    #[test]
    fn task_events_round_trip() {
        use crate::sse::SseEvent;
        let events = [
            TaskEvent::Started(TaskStarted {
                task_id: "t1".parse().unwrap(),
            }),
            TaskEvent::Download(DownloadEvent::Verifying),
            TaskEvent::Assigned(TaskAssigned {
                node: NodeName::localhost(),
                worker_id: "worker-1a2b".parse().unwrap(),
                backend: Backend::Cpu,
                device: 0,
            }),
            TaskEvent::Loading(LoadingEvent::Ready),
            TaskEvent::Token(TokenEvent::text("Hi", 0)),
        ];
        for e in events {
            let back = TaskEvent::parse(e.event(), &e.data()).unwrap().unwrap();
            assert_eq!(back, e);
        }
    }
}
