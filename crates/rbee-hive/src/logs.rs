//! Captured log lines of the hive and its workers, kept in a ring buffer for late readers
//! and broadcast to followers of `GET /v1/logs`.

use std::collections::VecDeque;
use std::sync::Mutex;

use rbee_api::hive::{LogLine, LogSource};
use tokio::sync::broadcast;

/// Lines kept for readers that connect later.
const KEEP: usize = 2000;

#[derive(Debug)]
pub struct LogHub {
    recent: Mutex<VecDeque<LogLine>>,
    tx: broadcast::Sender<LogLine>,
}

impl Default for LogHub {
    fn default() -> Self {
        Self {
            recent: Mutex::new(VecDeque::with_capacity(KEEP)),
            tx: broadcast::channel(1024).0,
        }
    }
}

impl LogHub {
    pub fn push(&self, source: &LogSource, line: impl Into<String>) {
        let unix_ms = rbee_api::now_unix_ms();
        let entry = LogLine {
            source: source.clone(),
            line: line.into(),
            unix_ms,
        };
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() == KEEP {
            recent.pop_front();
        }
        recent.push_back(entry.clone());
        let _ = self.tx.send(entry);
    }

    /// A line from the hive itself, also written to the hive's own log.
    pub fn hive(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!("{line}");
        self.push(&LogSource::Hive, line);
    }

    /// The last line `source` wrote, if one is kept.
    pub fn last_line(&self, source: &LogSource) -> Option<String> {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent
            .iter()
            .rev()
            .find(|l| &l.source == source)
            .map(|l| l.line.clone())
    }

    /// The lines kept so far and a receiver for the ones to come, without gap or overlap.
    pub fn subscribe(&self) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (recent.iter().cloned().collect(), self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_subscribers_get_history_then_new_lines() {
        let hub = LogHub::default();
        let worker = LogSource::Worker("worker-a".parse().unwrap());
        hub.push(&worker, "one");
        let (history, mut rx) = hub.subscribe();
        hub.push(&worker, "two");
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].line, "one");
        assert_eq!(rx.try_recv().unwrap().line, "two");
    }

    #[test]
    fn history_is_bounded() {
        let hub = LogHub::default();
        for i in 0..KEEP + 5 {
            hub.push(&LogSource::Hive, i.to_string());
        }
        let (history, _) = hub.subscribe();
        assert_eq!(history.len(), KEEP);
        assert_eq!(history[0].line, "5");
    }
}
