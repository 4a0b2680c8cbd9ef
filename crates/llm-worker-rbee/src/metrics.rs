//! The worker's metrics, served at `GET /metrics`.

use rbee_http::metrics::{Counter, Exposition, Histogram, LabelValue, LabeledCounter, StateGauge};

#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Requests by outcome: the stop reason, or the error code of a refusal.
    pub requests: LabeledCounter,
    pub tokens_generated: Counter,
    pub prompt_tokens: Counter,
    pub time_to_first_token: Histogram,
    pub token_latency: Histogram,
    /// Slots by state, set at each scrape.
    pub slots: StateGauge<Slot>,
    /// Sequences in each forward pass of the scheduler.
    pub batch_size: BatchSize,
    /// Prompt tokens whose keys and values a slot already held.
    pub prompt_tokens_reused: Counter,
}

/// Sequences per forward pass, in buckets up to the most slots a worker can have.
#[derive(Debug)]
pub struct BatchSize(Histogram);

impl Default for BatchSize {
    fn default() -> Self {
        Self(Histogram::new(&[
            1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, 64.0,
        ]))
    }
}

impl BatchSize {
    pub fn observe(&self, sequences: f64) {
        self.0.observe(sequences);
    }
}

/// The state of an inference slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Busy,
    Free,
}

impl LabelValue for Slot {
    const ALL: &'static [Self] = &[Self::Busy, Self::Free];

    fn label(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Free => "free",
        }
    }
}

impl WorkerMetrics {
    pub fn exposition(&self) -> Exposition {
        let mut out = Exposition::default();
        out.labeled_counter(
            "rbee_worker_requests_total",
            "Inference requests by outcome: the stop reason, or the error code of a refusal.",
            "outcome",
            &self.requests,
        )
        .counter(
            "rbee_worker_tokens_generated_total",
            "Tokens generated.",
            &self.tokens_generated,
        )
        .counter(
            "rbee_worker_prompt_tokens_total",
            "Prompt tokens processed.",
            &self.prompt_tokens,
        )
        .histogram(
            "rbee_worker_time_to_first_token_seconds",
            "From the request to its first generated token.",
            &self.time_to_first_token,
        )
        .histogram(
            "rbee_worker_token_latency_seconds",
            "Time between consecutive generated tokens.",
            &self.token_latency,
        )
        .state_gauge(
            "rbee_worker_slots",
            "Inference slots by state (busy, free).",
            "state",
            &self.slots,
        )
        .histogram(
            "rbee_worker_batch_size",
            "Sequences run together in one forward pass.",
            &self.batch_size.0,
        )
        .counter(
            "rbee_worker_prompt_tokens_reused_total",
            "Prompt tokens a slot's cache already held from an earlier request.",
            &self.prompt_tokens_reused,
        );
        out
    }
}
