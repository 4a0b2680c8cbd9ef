//! Narration: what the queen tells the user it is doing, while it does it.
//!
//! A [`Narrator`] is handed down to whatever does the work (starting hives, placing a task,
//! setting up a node); each line goes into the stream the user is reading, in order with the
//! stream's other events, and into the queen's own log.

use rbee_api::Narration;
use rbee_api::queen::{PullEvent, SetupEvent, TaskEvent};
use tokio::sync::mpsc;

/// The actor of everything the queen narrates.
pub const ACTOR: &str = "queen-rbee";

/// Where one operation's narration goes.
#[derive(Debug, Clone)]
pub struct Narrator {
    sink: Sink,
}

#[derive(Debug, Clone)]
enum Sink {
    /// Only the queen's log (work nobody is watching, such as a status check).
    Log,
    Task(mpsc::Sender<TaskEvent>),
    Setup(mpsc::Sender<SetupEvent>),
    Pull(mpsc::Sender<PullEvent>),
}

impl Narrator {
    /// Narration nobody streams: it goes to the queen's log only.
    pub fn log_only() -> Self {
        Self { sink: Sink::Log }
    }

    /// Narration into a task's event stream.
    pub fn task(tx: mpsc::Sender<TaskEvent>) -> Self {
        Self {
            sink: Sink::Task(tx),
        }
    }

    /// Narration into a node-setup stream (add, install).
    pub fn setup(tx: mpsc::Sender<SetupEvent>) -> Self {
        Self {
            sink: Sink::Setup(tx),
        }
    }

    /// Narration into a model pull's stream.
    pub fn pull(tx: mpsc::Sender<PullEvent>) -> Self {
        Self {
            sink: Sink::Pull(tx),
        }
    }

    /// Tells the user `human`; `action` names the step for machines (`hive_start`, …).
    pub async fn say(&self, action: &str, human: impl Into<String>) {
        let narration = Narration::new(ACTOR, action, human);
        tracing::info!(action, "{}", narration.human);
        // A reader that went away stops the work elsewhere; here it only loses the line.
        match &self.sink {
            Sink::Log => {}
            Sink::Task(tx) => {
                let _ = tx.send(TaskEvent::Narration(narration)).await;
            }
            Sink::Setup(tx) => {
                let _ = tx.send(SetupEvent::Narration(narration)).await;
            }
            Sink::Pull(tx) => {
                let _ = tx.send(PullEvent::Narration(narration)).await;
            }
        }
    }
}
