//! The queen's metrics, served at `GET /metrics`.

use rbee_api::ErrorCode;
use rbee_api::queen::NodeStatus;
use rbee_http::metrics::{Counter, Exposition, Gauge, Histogram, LabeledCounter, StateGauge};

#[derive(Debug, Default)]
pub struct QueenMetrics {
    /// Tasks by [`Outcome`].
    pub tasks: LabeledCounter,
    pub tokens: Counter,
    /// Tokens relayed, by the worker that generated them (for the lab's tokens/s per worker;
    /// not exported: worker ids are new with every spawn).
    pub worker_tokens: LabeledCounter,
    pub time_to_first_token: Histogram,
    pub token_latency: Histogram,
    /// Tasks placed by the queen, by the rule that chose the node.
    pub placements: LabeledCounter,
    /// Registered nodes by status, recounted at each scrape.
    pub nodes: StateGauge<NodeStatus>,
    /// Tasks waiting for a busy worker's slot, set at each scrape.
    pub queued_tasks: Gauge,
    /// Tasks holding a worker's slot, set at each scrape.
    pub busy_slots: Gauge,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Cancelled,
    Failed(ErrorCode),
}

impl Outcome {
    /// `completed`, `cancelled`, or the error code in lower case.
    pub fn label(self) -> String {
        match self {
            Self::Completed => "completed".into(),
            Self::Cancelled => "cancelled".into(),
            Self::Failed(code) => code.as_str().to_lowercase(),
        }
    }
}

impl QueenMetrics {
    pub fn task_ended(&self, outcome: Outcome) {
        self.tasks.inc(&outcome.label());
    }

    pub fn exposition(&self) -> Exposition {
        let mut out = Exposition::default();
        out.labeled_counter(
            "rbee_queen_tasks_total",
            "Inference tasks (rbee infer and the OpenAI API) by outcome: completed, cancelled, or the error code.",
            "outcome",
            &self.tasks,
        )
        .counter("rbee_queen_tokens_total", "Tokens relayed to clients.", &self.tokens)
        .histogram(
            "rbee_queen_time_to_first_token_seconds",
            "From a task's start to its first token, cold starts included.",
            &self.time_to_first_token,
        )
        .histogram(
            "rbee_queen_token_latency_seconds",
            "Time between consecutive tokens relayed to a client.",
            &self.token_latency,
        )
        .labeled_counter(
            "rbee_queen_placements_total",
            "Tasks placed by the queen, by the rule that chose the node.",
            "rule",
            &self.placements,
        )
        .state_gauge(
            "rbee_queen_nodes",
            "Registered nodes by status.",
            "status",
            &self.nodes,
        )
        .gauge(
            "rbee_queen_queued_tasks",
            "Tasks waiting for a slot of a busy worker.",
            &self.queued_tasks,
        )
        .gauge(
            "rbee_queen_busy_slots",
            "Worker slots held by the queen's tasks.",
            &self.busy_slots,
        );
        out
    }
}
