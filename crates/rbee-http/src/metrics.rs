//! Prometheus metrics as typed handles: each daemon keeps a struct of them, updates them
//! where things happen (an atomic add, no lock, no name lookup), and renders them at
//! `GET /metrics` in the text exposition format (version 0.0.4) with [`Exposition`].
//!
//! Families are listed even before their first sample, so dashboards and tests see a counter
//! at 0 rather than no counter at all; a gauge by state lists every state of its enum.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

/// Buckets for latencies in seconds, from 1 ms to 1 min.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, by: u64) {
        self.0.fetch_add(by, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, set when it is read (a queue's length).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters told apart by one label whose values are not known in advance (an error code,
/// a placement rule).
#[derive(Debug, Default)]
pub struct LabeledCounter {
    counts: RwLock<BTreeMap<String, Counter>>,
}

impl LabeledCounter {
    pub fn inc(&self, value: &str) {
        self.add(value, 1);
    }

    pub fn add(&self, value: &str, by: u64) {
        let counts = self
            .counts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(counter) = counts.get(value) {
            counter.add(by);
            return;
        }
        drop(counts);
        self.counts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(value.to_owned())
            .or_default()
            .add(by);
    }

    /// Each label value's count.
    pub fn values(&self) -> Vec<(String, u64)> {
        let counts = self
            .counts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.iter().map(|(k, c)| (k.clone(), c.get())).collect()
    }
}

impl LabeledCounter {
    /// The count over every label value.
    pub fn total(&self) -> u64 {
        self.values().iter().map(|(_, n)| n).sum()
    }

    /// Drops the label values `keep` refuses (values that will not come back).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        (self.counts.write())
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|value, _| keep(value));
    }

    /// The count of one label value.
    pub fn get(&self, value: &str) -> u64 {
        (self.counts.read())
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(value)
            .map_or(0, Counter::get)
    }
}

/// A label whose values are a closed set: the variants of an enum.
pub trait LabelValue: Copy + PartialEq + 'static {
    /// Every value, in the order they are listed.
    const ALL: &'static [Self];
    fn label(self) -> &'static str;
}

impl LabelValue for rbee_api::worker::WorkerState {
    const ALL: &'static [Self] = &Self::ALL;

    fn label(self) -> &'static str {
        self.as_str()
    }
}

impl LabelValue for rbee_api::queen::NodeStatus {
    const ALL: &'static [Self] = &Self::ALL;

    fn label(self) -> &'static str {
        self.as_str()
    }
}

/// How many things are in each state of `S`, every state listed (zero or not).
#[derive(Debug)]
pub struct StateGauge<S: LabelValue> {
    counts: Vec<AtomicU64>,
    _states: std::marker::PhantomData<S>,
}

impl<S: LabelValue> Default for StateGauge<S> {
    fn default() -> Self {
        Self {
            counts: S::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            _states: std::marker::PhantomData,
        }
    }
}

impl<S: LabelValue> StateGauge<S> {
    /// Replaces the counts with those of `states` (one entry per thing, recounted at a
    /// scrape).
    pub fn recount(&self, states: impl IntoIterator<Item = S>) {
        let mut counts = vec![0u64; S::ALL.len()];
        for state in states {
            if let Some(i) = S::ALL.iter().position(|s| *s == state) {
                counts[i] += 1;
            }
        }
        self.set(&counts);
    }

    /// Sets the count of each state, in the order of [`LabelValue::ALL`].
    pub fn set(&self, counts: &[u64]) {
        for (slot, n) in self.counts.iter().zip(counts) {
            slot.store(*n, Ordering::Relaxed);
        }
    }
}

/// Observations counted in fixed buckets, with their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at most each bound (not cumulative; rendering adds them up).
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum, as f64 bits.
    sum: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(LATENCY_BUCKETS)
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

/// A `/metrics` answer being written: one call per family, each naming it once.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Exposition {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    pub fn counter(&mut self, name: &str, help: &str, counter: &Counter) -> &mut Self {
        self.header(name, help, "counter");
        let _ = writeln!(self.text, "{name} {}", counter.get());
        self
    }

    pub fn gauge(&mut self, name: &str, help: &str, gauge: &Gauge) -> &mut Self {
        self.header(name, help, "gauge");
        let _ = writeln!(self.text, "{name} {}", gauge.get());
        self
    }

    /// A counter by `label`; `0` without labels until the first count.
    pub fn labeled_counter(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        counter: &LabeledCounter,
    ) -> &mut Self {
        self.header(name, help, "counter");
        let values = counter.values();
        if values.is_empty() {
            let _ = writeln!(self.text, "{name} 0");
        }
        for (value, n) in values {
            let _ = writeln!(self.text, "{name}{{{label}=\"{}\"}} {n}", escape(&value));
        }
        self
    }

    pub fn state_gauge<S: LabelValue>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        gauge: &StateGauge<S>,
    ) -> &mut Self {
        self.header(name, help, "gauge");
        for (state, n) in S::ALL.iter().zip(&gauge.counts) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(self.text, "{name}{{{label}=\"{}\"}} {n}", state.label());
        }
        self
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        self.header(name, help, "histogram");
        let mut cumulative = 0;
        for (bound, n) in h.bounds.iter().zip(&h.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(self.text, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = h.count.load(Ordering::Relaxed);
        let sum = f64::from_bits(h.sum.load(Ordering::Relaxed));
        let _ = writeln!(self.text, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(self.text, "{name}_sum {sum}");
        let _ = writeln!(self.text, "{name}_count {count}");
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The `GET /metrics` answer.
    pub fn response(self) -> Response {
        (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            self.text,
        )
            .into_response()
    }
}

/// The value of one sample in a text exposition (`name{labels}` exactly as rendered, or a
/// bare name); for tests and tools that read `/metrics`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Light {
        Red,
        Green,
    }

    impl LabelValue for Light {
        const ALL: &'static [Self] = &[Self::Red, Self::Green];

        fn label(self) -> &'static str {
            match self {
                Self::Red => "red",
                Self::Green => "green",
            }
        }
    }

    #[test]
    fn counters_gauges_and_histograms_render_in_the_text_format() {
        let (requests, outcomes, unused) = (
            Counter::default(),
            LabeledCounter::default(),
            LabeledCounter::default(),
        );
        let lights = StateGauge::<Light>::default();
        let latency = Histogram::default();
        requests.add(3);
        outcomes.inc("ok");
        outcomes.add("ok", 2);
        lights.recount([Light::Green, Light::Green]);
        latency.observe(0.02);
        latency.observe(2.0);
        let mut out = Exposition::default();
        out.counter("x_requests_total", "Requests.", &requests)
            .labeled_counter("x_outcomes_total", "Outcomes.", "outcome", &outcomes)
            .labeled_counter("x_unused_total", "Never counted.", "code", &unused)
            .state_gauge("x_lights", "Lights.", "colour", &lights)
            .histogram("x_latency_seconds", "Latency.", &latency);
        let text = out.text();
        assert_eq!(sample(text, "x_requests_total"), Some(3.0));
        assert_eq!(sample(text, "x_outcomes_total{outcome=\"ok\"}"), Some(3.0));
        assert_eq!(sample(text, "x_unused_total"), Some(0.0));
        assert_eq!(sample(text, "x_lights{colour=\"red\"}"), Some(0.0));
        assert_eq!(sample(text, "x_lights{colour=\"green\"}"), Some(2.0));
        assert_eq!(
            sample(text, "x_latency_seconds_bucket{le=\"0.025\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(text, "x_latency_seconds_bucket{le=\"+Inf\"}"),
            Some(2.0)
        );
        assert_eq!(sample(text, "x_latency_seconds_sum"), Some(2.02));
        assert!(text.contains("# TYPE x_latency_seconds histogram"));
    }
}
