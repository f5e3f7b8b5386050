//! Everything a person or a program sees of a run: live progress through the [`Reporter`]
//! trait, and the after-the-fact [`RunSummary`] written as JSON (`--report`) or as an HTML
//! timeline (`--timings`).
//!
//! The logic (engine, tasks, sources) only calls the trait; which terminal, bars or lines that
//! turns into is decided here. Only `progress.rs` imports indicatif.
//!
//! - [`TerminalReporter`]: indicatif bars on an interactive terminal.
//! - [`PlainReporter`]: timestamped lines for CI logs and pipes.
//! - [`NullReporter`]: nothing, for `-q` and `--progress none`.
//! - [`RecordingReporter`]: every event in order, for tests.
//!
//! The summary's text (status names, reasons, byte sizes) is shaped here once so that the lines,
//! the JSON and the HTML say the same thing.

mod json;
mod plain;
mod progress;
mod recording;
mod timings;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use json::{
    ByteCounts, ImageInfo, IsoInfo, JSON_SCHEMA, Outcome, RecipeInfo, RunReport, SCHEMA_VERSION,
    Warning, write_json_report,
};
pub use plain::PlainReporter;
pub use progress::TerminalReporter;
pub use recording::{RecordingReporter, ReportEvent};
pub use timings::write_timings_html;

/// Identifies one running task in reporter calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TaskId(pub usize);

/// Identifies one download in reporter calls. The reporter hands it out in
/// [`Reporter::on_download_start`]; it is unique within that reporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DownloadId(pub usize);

/// A task as the reporter sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskLabel {
    pub id: TaskId,
    /// Unique, human-readable (`file bootstrap.sh`, `task build-salt-master`).
    pub name: String,
    /// What sort of work (`copy`, `template`, `command`, `pull-blob`, …).
    pub kind: &'static str,
}

/// How a task ended. Serialized (in `json.rs`) as `status`, `reason` and `error` fields, so that
/// every task of a report has the same shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Its fingerprint matched the last successful run: nothing was done.
    UpToDate,
    /// It ran and succeeded; `reason` says why it had to run.
    Ran { reason: String },
    /// It ran and failed.
    Failed { reason: String, error: String },
    /// It did not run because a task it depends on failed or was skipped.
    Skipped { because: String },
    /// The run was interrupted before or while it ran.
    Cancelled,
}

impl TaskStatus {
    /// Every status name, in the order reports list them.
    pub const NAMES: [&'static str; 5] = ["ran", "up-to-date", "failed", "skipped", "cancelled"];

    pub fn is_success(&self) -> bool {
        matches!(self, Self::UpToDate | Self::Ran { .. })
    }

    /// Its name in reports (one of [`Self::NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ran { .. } => "ran",
            Self::UpToDate => "up-to-date",
            Self::Failed { .. } => "failed",
            Self::Skipped { .. } => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Why the task ended this way, in words: why it ran, why it was skipped, what made it up
    /// to date. `None` only for a task that failed before it knew whether it had to run.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::UpToDate => Some("unchanged since its last successful run"),
            Self::Ran { reason } => Some(reason),
            Self::Failed { reason, .. } => (!reason.is_empty()).then_some(reason.as_str()),
            Self::Skipped { because } => Some(because),
            Self::Cancelled => Some("the run was interrupted"),
        }
    }

    /// The error of a failed task.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Receives progress events from the logic. Every method has a no-op default so reporters
/// implement only what they show.
pub trait Reporter: Send + Sync {
    /// A run of `total` tasks begins.
    fn on_run_start(&self, _total: usize) {}
    fn on_task_start(&self, _task: &TaskLabel) {}
    fn on_task_finish(&self, _task: &TaskLabel, _status: &TaskStatus) {}
    /// A download of `label` (an image or blob) begins; `size` when known.
    fn on_download_start(&self, _label: &str, _size: Option<u64>) -> DownloadId {
        DownloadId(0)
    }
    /// `bytes` more bytes of download `id` arrived (a delta, not a running total).
    fn on_download_progress(&self, _id: DownloadId, _bytes: u64) {}
    fn on_download_complete(&self, _id: DownloadId) {}
    /// Download `id` failed with `error` and is tried again (try `attempt` of `attempts`).
    fn on_download_retry(&self, _id: DownloadId, _attempt: u32, _attempts: u32, _error: &str) {}
    /// Download `id` goes on from `offset` bytes a previous try or run left.
    fn on_download_resumed(&self, _id: DownloadId, _offset: u64) {}
    /// `total` registry images are being resolved (one manifest request each).
    fn on_resolve_start(&self, _total: usize) {}
    /// One of them is resolved (or failed; the error comes later, all together).
    fn on_image_resolved(&self, _label: &str) {}
    /// Resolution is over (done, failed or interrupted).
    fn on_resolve_finish(&self) {}
    /// The run will download about `bytes` in `count` blobs (those not in the cache).
    fn on_transfer_total(&self, _bytes: u64, _count: usize) {}
    /// A line for the user that is not tied to a task (a warning, a summary).
    fn on_message(&self, _message: &str) {}
    /// The run is over (successfully or not).
    fn on_run_finish(&self) {}
}

/// Shows nothing: for `-q`, `--progress none` and tests.
#[derive(Debug, Default)]
pub struct NullReporter;

impl Reporter for NullReporter {}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain timestamped lines.
    Plain,
    /// Nothing but errors.
    None,
}

/// The reporter for the output settings (`-q` is verbosity -1, `-v` is 1, `-vv` is 2).
pub fn reporter_for(output: crate::settings::OutputSettings) -> Arc<dyn Reporter> {
    let verbosity = output.verbosity;
    if verbosity < 0 || output.progress == ProgressMode::None {
        return Arc::new(NullReporter);
    }
    match output.progress {
        ProgressMode::Auto if output.terminal => {
            Arc::new(TerminalReporter::new(verbosity).with_color(output.color))
        }
        _ => Arc::new(PlainReporter::new(verbosity)),
    }
}

/// `1536` → `1.5 KiB`: sizes as people read them, written the same way in lines and in HTML.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)] // shown with one decimal: f64 is precise enough
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// One task in the after-the-fact summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    pub name: String,
    pub kind: &'static str,
    /// Since the start of the run; `None` if the task never started.
    #[serde(with = "optional_seconds")]
    pub start: Option<Duration>,
    #[serde(with = "optional_seconds")]
    pub end: Option<Duration>,
    #[serde(flatten)]
    pub status: TaskStatus,
    /// Bytes the task wrote or downloaded.
    pub bytes: u64,
}

/// What happened in a run, for `--report` and `--timings`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    #[serde(with = "system_time_seconds")]
    pub started_at: SystemTime,
    #[serde(with = "optional_seconds")]
    pub duration: Option<Duration>,
    pub jobs: usize,
    pub tasks: Vec<TaskRecord>,
}

mod optional_seconds {
    use std::time::Duration;

    use serde::Serializer;

    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_f64(duration.as_secs_f64()),
            None => serializer.serialize_none(),
        }
    }
}

mod system_time_seconds {
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(
        value: &SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let seconds = value
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |duration| duration.as_secs_f64());
        serializer.serialize_f64(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn every_status_has_a_listed_name_and_a_reason() {
        let statuses = [
            TaskStatus::Ran {
                reason: "never built".into(),
            },
            TaskStatus::UpToDate,
            TaskStatus::Failed {
                reason: "input a changed".into(),
                error: "exit status 1".into(),
            },
            TaskStatus::Skipped {
                because: "`b` failed".into(),
            },
            TaskStatus::Cancelled,
        ];
        let names: Vec<&str> = statuses.iter().map(TaskStatus::name).collect();
        assert_eq!(names, TaskStatus::NAMES);
        assert!(statuses.iter().all(|status| status.reason().is_some()));
        let early_failure = TaskStatus::Failed {
            reason: String::new(),
            error: "cannot read".into(),
        };
        assert_eq!(early_failure.reason(), None);
        assert_eq!(early_failure.error(), Some("cannot read"));
    }
}
