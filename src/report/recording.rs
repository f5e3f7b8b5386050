//! [`RecordingReporter`]: keeps every reporter event in order, so tests of the engine and of
//! tasks can check what was reported without a terminal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{DownloadId, Reporter, TaskLabel, TaskStatus};

/// One call a [`RecordingReporter`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportEvent {
    RunStart {
        total: usize,
    },
    TaskStart {
        task: TaskLabel,
    },
    TaskFinish {
        task: TaskLabel,
        status: TaskStatus,
    },
    DownloadStart {
        id: DownloadId,
        label: String,
        size: Option<u64>,
    },
    DownloadProgress {
        id: DownloadId,
        bytes: u64,
    },
    DownloadComplete {
        id: DownloadId,
    },
    Message(String),
    RunFinish,
}

/// Records every event; hands out download ids `0, 1, 2, …` in call order.
#[derive(Debug, Default)]
pub struct RecordingReporter {
    events: Mutex<Vec<ReportEvent>>,
    next_download: AtomicUsize,
}

impl RecordingReporter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far, in the order the reporter received them.
    pub fn events(&self) -> Vec<ReportEvent> {
        self.lock().clone()
    }

    /// `(task name, status)` for every finished task, in finishing order.
    pub fn finished(&self) -> Vec<(String, TaskStatus)> {
        self.lock()
            .iter()
            .filter_map(|event| match event {
                ReportEvent::TaskFinish { task, status } => {
                    Some((task.name.clone(), status.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Names of the started tasks, in starting order.
    pub fn started(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|event| match event {
                ReportEvent::TaskStart { task } => Some(task.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every message passed to [`Reporter::on_message`], in order.
    pub fn messages(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|event| match event {
                ReportEvent::Message(message) => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn push(&self, event: ReportEvent) {
        self.lock().push(event);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ReportEvent>> {
        // A test that panicked while holding the lock already failed; keep the events readable.
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Reporter for RecordingReporter {
    fn on_run_start(&self, total: usize) {
        self.push(ReportEvent::RunStart { total });
    }

    fn on_task_start(&self, task: &TaskLabel) {
        self.push(ReportEvent::TaskStart { task: task.clone() });
    }

    fn on_task_finish(&self, task: &TaskLabel, status: &TaskStatus) {
        self.push(ReportEvent::TaskFinish {
            task: task.clone(),
            status: status.clone(),
        });
    }

    fn on_download_start(&self, label: &str, size: Option<u64>) -> DownloadId {
        let id = DownloadId(self.next_download.fetch_add(1, Ordering::Relaxed));
        self.push(ReportEvent::DownloadStart {
            id,
            label: label.to_owned(),
            size,
        });
        id
    }

    fn on_download_progress(&self, id: DownloadId, bytes: u64) {
        self.push(ReportEvent::DownloadProgress { id, bytes });
    }

    fn on_download_complete(&self, id: DownloadId) {
        self.push(ReportEvent::DownloadComplete { id });
    }

    fn on_message(&self, message: &str) {
        self.push(ReportEvent::Message(message.to_owned()));
    }

    fn on_run_finish(&self) {
        self.push(ReportEvent::RunFinish);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TaskId;

    #[test]
    fn records_events_in_order_and_numbers_downloads() {
        let reporter = RecordingReporter::new();
        let task = TaskLabel {
            id: TaskId(0),
            name: "file a".into(),
            kind: "copy",
        };
        reporter.on_run_start(1);
        reporter.on_task_start(&task);
        let first = reporter.on_download_start("blob one", Some(3));
        let second = reporter.on_download_start("blob two", None);
        reporter.on_download_progress(first, 3);
        reporter.on_download_complete(first);
        reporter.on_task_finish(&task, &TaskStatus::UpToDate);
        reporter.on_message("done");
        reporter.on_run_finish();

        assert_eq!((first, second), (DownloadId(0), DownloadId(1)));
        assert_eq!(reporter.started(), ["file a"]);
        assert_eq!(
            reporter.finished(),
            [("file a".to_owned(), TaskStatus::UpToDate)]
        );
        assert_eq!(reporter.messages(), ["done"]);
        let events = reporter.events();
        assert_eq!(events.len(), 9);
        assert_eq!(events[0], ReportEvent::RunStart { total: 1 });
        assert_eq!(events[8], ReportEvent::RunFinish);
    }
}

/// A writer tests can read back: what a reporter printed.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Capture(std::sync::Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Capture {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
        .unwrap_or_default()
    }
}

#[cfg(test)]
impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
