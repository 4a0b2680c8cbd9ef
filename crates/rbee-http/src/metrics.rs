//! Prometheus metrics: each daemon declares its families once, updates them where things
//! happen, and serves them at `GET /metrics` in the text exposition format (version 0.0.4).
//!
//! Declared families are listed even before their first sample, so dashboards and tests see
//! a counter at 0 rather than no counter at all.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

/// Buckets for latencies in seconds, from 1 ms to 1 min.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// A family to declare: name (`rbee_…_total`, `…_seconds`), help text, kind.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

impl Family {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: Kind::Counter,
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: Kind::Gauge,
        }
    }

    pub const fn histogram(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: Kind::Histogram(LATENCY_BUCKETS),
        }
    }
}

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone)]
enum Series {
    Value(f64),
    Histogram {
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug)]
struct FamilyData {
    family: Family,
    series: BTreeMap<Labels, Series>,
}

/// The metrics of one daemon; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct Metrics {
    families: Arc<Mutex<BTreeMap<&'static str, FamilyData>>>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_labels(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

impl Metrics {
    pub fn new(families: &[Family]) -> Self {
        let map = families
            .iter()
            .map(|f| {
                (
                    f.name,
                    FamilyData {
                        family: *f,
                        series: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Self {
            families: Arc::new(Mutex::new(map)),
        }
    }

    fn with(&self, name: &str, update: impl FnOnce(&mut FamilyData)) {
        let mut families = self
            .families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match families.get_mut(name) {
            Some(data) => update(data),
            None => tracing::warn!("metric {name} was never declared"),
        }
    }

    /// Adds `by` to a counter.
    pub fn add(&self, name: &str, pairs: &[(&str, &str)], by: f64) {
        self.with(name, |data| {
            let entry = data
                .series
                .entry(labels(pairs))
                .or_insert(Series::Value(0.0));
            if let Series::Value(v) = entry {
                *v += by;
            }
        });
    }

    pub fn inc(&self, name: &str, pairs: &[(&str, &str)]) {
        self.add(name, pairs, 1.0);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &str, pairs: &[(&str, &str)], value: f64) {
        self.with(name, |data| {
            data.series.insert(labels(pairs), Series::Value(value));
        });
    }

    /// Replaces every series of a gauge with one label (e.g. workers by state, recounted at
    /// each scrape).
    pub fn set_by(&self, name: &str, label: &str, values: &[(&str, f64)]) {
        self.with(name, |data| {
            data.series = values
                .iter()
                .map(|(value, v)| (labels(&[(label, value)]), Series::Value(*v)))
                .collect();
        });
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, name: &str, pairs: &[(&str, &str)], value: f64) {
        self.with(name, |data| {
            let Kind::Histogram(bounds) = data.family.kind else {
                return;
            };
            let entry = data
                .series
                .entry(labels(pairs))
                .or_insert_with(|| Series::Histogram {
                    counts: vec![0; bounds.len()],
                    sum: 0.0,
                    count: 0,
                });
            if let Series::Histogram { counts, sum, count } = entry {
                for (bound, c) in bounds.iter().zip(counts.iter_mut()) {
                    if value <= *bound {
                        *c += 1;
                    }
                }
                *sum += value;
                *count += 1;
            }
        });
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        let families = self
            .families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        for (name, data) in families.iter() {
            let kind = match data.family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", data.family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            if data.series.is_empty() && data.family.kind == Kind::Counter {
                let _ = writeln!(out, "{name} 0");
            }
            for (labels, series) in &data.series {
                match series {
                    Series::Value(v) => {
                        let _ = writeln!(out, "{name}{} {v}", render_labels(labels, None));
                    }
                    Series::Histogram { counts, sum, count } => {
                        let Kind::Histogram(bounds) = data.family.kind else {
                            continue;
                        };
                        for (bound, c) in bounds.iter().zip(counts) {
                            let le = Some(("le", bound.to_string()));
                            let _ = writeln!(out, "{name}_bucket{} {c}", render_labels(labels, le));
                        }
                        let inf = Some(("le", "+Inf".to_owned()));
                        let _ =
                            writeln!(out, "{name}_bucket{} {count}", render_labels(labels, inf));
                        let _ = writeln!(out, "{name}_sum{} {sum}", render_labels(labels, None));
                        let _ =
                            writeln!(out, "{name}_count{} {count}", render_labels(labels, None));
                    }
                }
            }
        }
        out
    }

    /// The `GET /metrics` answer.
    pub fn response(&self) -> Response {
        (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            self.render(),
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

    #[test]
    fn counters_gauges_and_histograms_render_in_the_text_format() {
        let m = Metrics::new(&[
            Family::counter("x_requests_total", "Requests."),
            Family::gauge("x_workers", "Workers."),
            Family::histogram("x_latency_seconds", "Latency."),
            Family::counter("x_unused_total", "Never incremented."),
        ]);
        m.inc("x_requests_total", &[("outcome", "ok")]);
        m.add("x_requests_total", &[("outcome", "ok")], 2.0);
        m.set_by("x_workers", "state", &[("idle", 3.0)]);
        m.observe("x_latency_seconds", &[], 0.02);
        m.observe("x_latency_seconds", &[], 2.0);
        let text = m.render();
        assert_eq!(sample(&text, "x_requests_total{outcome=\"ok\"}"), Some(3.0));
        assert_eq!(sample(&text, "x_workers{state=\"idle\"}"), Some(3.0));
        assert_eq!(
            sample(&text, "x_latency_seconds_bucket{le=\"0.025\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "x_latency_seconds_bucket{le=\"+Inf\"}"),
            Some(2.0)
        );
        assert_eq!(sample(&text, "x_latency_seconds_count"), Some(2.0));
        assert_eq!(sample(&text, "x_unused_total"), Some(0.0));
        assert!(text.contains("# TYPE x_latency_seconds histogram"));
    }
}
