//! Plain progress lines for CI logs and pipes (placeholder).

use super::{Reporter, TaskLabel, TaskStatus};

/// One line per finished task on stderr.
#[derive(Debug)]
pub struct PlainReporter {
    verbosity: i8,
}

impl PlainReporter {
    pub fn new(verbosity: i8) -> Self {
        Self { verbosity }
    }
}

impl Reporter for PlainReporter {
    #[allow(clippy::print_stderr)]
    fn on_task_finish(&self, task: &TaskLabel, status: &TaskStatus) {
        match status {
            TaskStatus::Ran { reason } if self.verbosity > 0 => {
                eprintln!("ran {}: {reason}", task.name);
            }
            TaskStatus::Ran { .. } => eprintln!("ran {}", task.name),
            TaskStatus::UpToDate if self.verbosity > 0 => eprintln!("fresh {}", task.name),
            _ => {}
        }
    }

    #[allow(clippy::print_stderr)]
    fn on_message(&self, message: &str) {
        eprintln!("{message}");
    }
}
