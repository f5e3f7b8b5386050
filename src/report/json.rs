//! `--report FILE.json`: the run summary as JSON, for scripts and CI dashboards.
//!
//! The shape, version 1 (times are seconds; task times count from the run's start):
//!
//! ```json
//! {
//!   "version": 1,
//!   "started_at": 1700000000.25,
//!   "duration": 2.03,
//!   "jobs": 4,
//!   "tasks": [
//!     {
//!       "name": "task build-salt-master",
//!       "kind": "command",
//!       "start": 0.02,
//!       "end": 2.02,
//!       "status": "failed",
//!       "reason": "input images/salt-master/Dockerfile changed",
//!       "error": "`buildah` exited with status 1",
//!       "bytes": 0
//!     }
//!   ]
//! }
//! ```
//!
//! Every task has every field so that `jq` filters need no guards: `start` and `end` are `null`
//! for a task that never started, `error` is `null` unless it failed, and `reason` says why it
//! ran, why it was skipped or that it was up to date (`null` only for a task that failed before
//! it knew whether it had to run). `status` is one of [`TaskStatus::NAMES`].

use std::path::Path;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{RunSummary, TaskStatus};

/// Bumped when a field changes meaning or goes away (adding one does not bump it).
const VERSION: u32 = 1;

/// Write `summary` to `path` as pretty JSON, atomically.
pub fn write_json_report(path: &Path, summary: &RunSummary) -> std::io::Result<()> {
    // Error texts in the report may quote a registry that echoed a token.
    let mut bytes =
        crate::source::auth::scrub(&String::from_utf8_lossy(&to_json(summary)?)).into_bytes();
    bytes.push(b'\n');
    crate::fs::write_atomic(path, &bytes, 0o644)
}

fn to_json(summary: &RunSummary) -> std::io::Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        version: u32,
        #[serde(flatten)]
        summary: &'a RunSummary,
    }
    serde_json::to_vec_pretty(&Report {
        version: VERSION,
        summary,
    })
    .map_err(std::io::Error::other)
}

/// Flattened into its task record as `status`, `reason` and `error`.
impl Serialize for TaskStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("status", self.name())?;
        map.serialize_entry("reason", &self.reason())?;
        map.serialize_entry("error", &self.error())?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use pretty_assertions::assert_eq;
    use serde_json::{Value, json};

    use super::*;
    use crate::report::TaskRecord;

    fn record(name: &str, times: Option<(u64, u64)>, status: TaskStatus, bytes: u64) -> TaskRecord {
        TaskRecord {
            name: name.into(),
            kind: "command",
            start: times.map(|(start, _)| Duration::from_millis(start)),
            end: times.map(|(_, end)| Duration::from_millis(end)),
            status,
            bytes,
        }
    }

    #[test]
    fn every_task_has_every_field() {
        let summary = RunSummary {
            started_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
            duration: Some(Duration::from_millis(2500)),
            jobs: 2,
            tasks: vec![
                record(
                    "task ran",
                    Some((0, 1500)),
                    TaskStatus::Ran {
                        reason: "never built".into(),
                    },
                    42,
                ),
                record("file fresh", Some((0, 250)), TaskStatus::UpToDate, 0),
                record(
                    "task failed",
                    Some((250, 2000)),
                    TaskStatus::Failed {
                        reason: "input a changed".into(),
                        error: "exit status 1".into(),
                    },
                    0,
                ),
                record(
                    "file skipped",
                    None,
                    TaskStatus::Skipped {
                        because: "`task failed` failed".into(),
                    },
                    0,
                ),
                record("file cancelled", None, TaskStatus::Cancelled, 0),
                record(
                    "task broke early",
                    Some((0, 500)),
                    TaskStatus::Failed {
                        reason: String::new(),
                        error: "cannot read input".into(),
                    },
                    0,
                ),
            ],
        };
        let value: Value = serde_json::from_slice(&to_json(&summary).unwrap()).unwrap();
        assert_eq!(
            value,
            json!({
                "version": 1,
                "started_at": 1_700_000_000.25,
                "duration": 2.5,
                "jobs": 2,
                "tasks": [
                    {
                        "name": "task ran", "kind": "command", "start": 0.0, "end": 1.5,
                        "status": "ran", "reason": "never built", "error": null, "bytes": 42
                    },
                    {
                        "name": "file fresh", "kind": "command", "start": 0.0, "end": 0.25,
                        "status": "up-to-date", "reason": "unchanged since its last successful run",
                        "error": null, "bytes": 0
                    },
                    {
                        "name": "task failed", "kind": "command", "start": 0.25, "end": 2.0,
                        "status": "failed", "reason": "input a changed", "error": "exit status 1",
                        "bytes": 0
                    },
                    {
                        "name": "file skipped", "kind": "command", "start": null, "end": null,
                        "status": "skipped", "reason": "`task failed` failed", "error": null,
                        "bytes": 0
                    },
                    {
                        "name": "file cancelled", "kind": "command", "start": null, "end": null,
                        "status": "cancelled", "reason": "the run was interrupted", "error": null,
                        "bytes": 0
                    },
                    {
                        "name": "task broke early", "kind": "command", "start": 0.0, "end": 0.5,
                        "status": "failed", "reason": null, "error": "cannot read input",
                        "bytes": 0
                    },
                ]
            })
        );
    }

    #[test]
    fn the_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let summary = RunSummary {
            started_at: UNIX_EPOCH,
            duration: None,
            jobs: 1,
            tasks: Vec::new(),
        };
        write_json_report(&path, &summary).unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"), "{text}");
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["duration"], Value::Null);
        assert_eq!(value["tasks"], json!([]));
    }
}
