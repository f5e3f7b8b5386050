//! Progress bars on a terminal (placeholder; the only file that will import indicatif).

use super::{PlainReporter, Reporter, TaskLabel, TaskStatus};

/// Bars on a terminal.
#[derive(Debug)]
pub struct TerminalReporter {
    plain: PlainReporter,
}

impl TerminalReporter {
    pub fn new(verbosity: i8) -> Self {
        Self {
            plain: PlainReporter::new(verbosity),
        }
    }
}

impl Reporter for TerminalReporter {
    fn on_task_finish(&self, task: &TaskLabel, status: &TaskStatus) {
        self.plain.on_task_finish(task, status);
    }

    fn on_message(&self, message: &str) {
        self.plain.on_message(message);
    }
}
