//! `--report FILE.json`: what a run did, as JSON, for scripts and CI dashboards.
//!
//! Schema version 2, described field by field by the JSON Schema in `report.schema.json`
//! beside this file (draft 2020-12; the README points at it). In short:
//!
//! ```json
//! {
//!   "schema": 2,
//!   "isobuild": { "version": "0.1.0", "commit": "7b4383d2891d", "commit_date": "2026-12-02" },
//!   "command": "build",
//!   "outcome": "failed",
//!   "exit_code": 1,
//!   "error": "1 task failed\n  task `build-salt-master`: …",
//!   "recipe": { "path": "/src/recipe.yaml", "name": "MetalK8s", "version": "129.0.0" },
//!   "iso": null,
//!   "images": [
//!     { "name": "alpine", "tag": "3.20", "reference": "docker.io/library/alpine:3.20",
//!       "platform": "linux/amd64", "digest": "sha256:…", "index_digest": "sha256:…",
//!       "mirror": null }
//!   ],
//!   "warnings": [ { "kind": "ignored-pin", "subject": "alpine:3.20", "message": "…" } ],
//!   "started_at": "2026-12-02T05:22:55.25Z",
//!   "finished_at": "2026-12-02T05:22:57.28Z",
//!   "duration_seconds": 2.03,
//!   "jobs": 4,
//!   "bytes": { "downloaded": 3145728, "cached": 1048576, "written": 4200000 },
//!   "tasks": [
//!     { "name": "task build-salt-master", "kind": "command", "subject": "build-salt-master",
//!       "started_at": "2026-12-02T05:22:55.27Z", "finished_at": "2026-12-02T05:22:57.27Z",
//!       "start": 0.02, "end": 2.02, "status": "failed",
//!       "reason": "input images/salt-master/Dockerfile changed",
//!       "error": "`buildah` exited with status 1", "bytes": 0 }
//!   ]
//! }
//! ```
//!
//! Every object has every field so that `jq` filters need no guards: what does not apply is
//! `null`. `status` is one of [`TaskStatus::NAMES`]; `start` and `end` are seconds since
//! `started_at` (kept from version 1), `started_at`/`finished_at` the same instants in RFC 3339.
//! `schema` is bumped when a field changes meaning or goes away; adding one does not bump it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::{RunSummary, TaskRecord, TaskStatus};

/// The `schema` field of the reports this build writes.
pub const SCHEMA_VERSION: u32 = 2;

/// The JSON Schema of the report, as shipped in the repository.
pub const JSON_SCHEMA: &str = include_str!("report.schema.json");

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// The recipe the run read.
#[derive(Debug, Clone, Serialize)]
pub struct RecipeInfo {
    pub path: PathBuf,
    /// `None` when the recipe could not be read.
    pub name: Option<String>,
    pub version: Option<String>,
}

/// The ISO a successful `build` made.
#[derive(Debug, Clone, Serialize)]
pub struct IsoInfo {
    pub path: PathBuf,
    pub size: u64,
    /// `sha256:<hex>`.
    pub sha256: String,
}

/// One registry image as this run resolved it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub name: String,
    pub tag: String,
    /// The reference as the recipe gives it.
    pub reference: String,
    /// `os/arch[/variant]` picked from the index, or the recipe's platform.
    pub platform: String,
    /// The manifest shipped for that platform.
    pub digest: String,
    /// The index the reference points to, when it is one.
    pub index_digest: Option<String>,
    /// The mirror that served it, when the resolution went through one.
    pub mirror: Option<String>,
}

/// Something the run let through that a person should know about.
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    /// `ignored-pin` (`--ignore-pins`), `unsatisfied-requirement` (a package), `other`.
    pub kind: &'static str,
    /// The image (`name:tag`) or package it is about.
    pub subject: Option<String>,
    pub message: String,
}

/// Byte counts of the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ByteCounts {
    /// Fetched from registries and repositories by this run.
    pub downloaded: u64,
    /// Needed by this run and found in the cache.
    pub cached: u64,
    /// Written by every task (downloads included).
    pub written: u64,
}

/// Everything `--report` says besides the task list.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub command: &'static str,
    pub outcome: Outcome,
    pub exit_code: u8,
    pub error: Option<String>,
    pub recipe: RecipeInfo,
    pub iso: Option<IsoInfo>,
    pub images: Vec<ImageInfo>,
    pub warnings: Vec<Warning>,
    pub bytes: ByteCounts,
    /// The engine's summary; `None` when the run stopped before any task (a recipe error).
    pub summary: Option<RunSummary>,
}

/// Write `report` to `path` as pretty JSON, atomically.
pub fn write_json_report(path: &Path, report: &RunReport) -> std::io::Result<()> {
    // Error texts in the report may quote a registry that echoed a token.
    let mut bytes =
        crate::source::auth::scrub(&String::from_utf8_lossy(&to_json(report)?)).into_bytes();
    bytes.push(b'\n');
    crate::fs::write_atomic(path, &bytes, 0o644)
}

/// An instant in RFC 3339 (`2026-12-02T05:22:55.25Z`), UTC.
fn rfc3339(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .map_or_else(|_| "1970-01-01T00:00:00Z".to_owned(), |t| t.to_string())
}

fn to_json(report: &RunReport) -> std::io::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Build {
        version: &'static str,
        commit: &'static str,
        commit_date: &'static str,
    }
    #[derive(Serialize)]
    struct Task<'a> {
        name: &'a str,
        kind: &'static str,
        subject: &'a str,
        started_at: Option<String>,
        finished_at: Option<String>,
        start: Option<f64>,
        end: Option<f64>,
        #[serde(flatten)]
        status: &'a TaskStatus,
        bytes: u64,
    }
    #[derive(Serialize)]
    struct Report<'a> {
        schema: u32,
        isobuild: Build,
        command: &'static str,
        outcome: Outcome,
        exit_code: u8,
        error: Option<&'a str>,
        recipe: &'a RecipeInfo,
        iso: Option<&'a IsoInfo>,
        images: &'a [ImageInfo],
        warnings: &'a [Warning],
        started_at: String,
        finished_at: String,
        duration_seconds: Option<f64>,
        jobs: usize,
        bytes: ByteCounts,
        tasks: Vec<Task<'a>>,
    }
    let now = SystemTime::now();
    let started = report.summary.as_ref().map_or(now, |s| s.started_at);
    let duration = report.summary.as_ref().and_then(|s| s.duration);
    let at = |offset: Option<Duration>| offset.map(|offset| rfc3339(started + offset));
    let tasks = report
        .summary
        .iter()
        .flat_map(|summary| &summary.tasks)
        .map(|task: &TaskRecord| Task {
            name: &task.name,
            kind: task.kind,
            // Task names are `<what> <subject>` (`blob sha256:…`, `file bootstrap.sh`).
            subject: task.name.split_once(' ').map_or("", |(_, subject)| subject),
            started_at: at(task.start),
            finished_at: at(task.end),
            start: task.start.map(|d| d.as_secs_f64()),
            end: task.end.map(|d| d.as_secs_f64()),
            status: &task.status,
            bytes: task.bytes,
        })
        .collect();
    serde_json::to_vec_pretty(&Report {
        schema: SCHEMA_VERSION,
        isobuild: Build {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("ISOBUILD_COMMIT"),
            commit_date: env!("ISOBUILD_COMMIT_DATE"),
        },
        command: report.command,
        outcome: report.outcome,
        exit_code: report.exit_code,
        error: report.error.as_deref(),
        recipe: &report.recipe,
        iso: report.iso.as_ref(),
        images: &report.images,
        warnings: &report.warnings,
        started_at: rfc3339(started),
        finished_at: rfc3339(duration.map_or(now, |d| started + d)),
        duration_seconds: duration.map(|d| d.as_secs_f64()),
        jobs: report.summary.as_ref().map_or(0, |s| s.jobs),
        bytes: report.bytes,
        tasks,
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

    fn report(summary: Option<RunSummary>) -> RunReport {
        RunReport {
            command: "build",
            outcome: Outcome::Failed,
            exit_code: 1,
            error: Some("1 task failed".into()),
            recipe: RecipeInfo {
                path: "/src/recipe.yaml".into(),
                name: Some("Demo".into()),
                version: Some("1.0".into()),
            },
            iso: None,
            images: Vec::new(),
            warnings: vec![Warning {
                kind: "ignored-pin",
                subject: Some("alpine:3.20".into()),
                message: "pinned digest does not match".into(),
            }],
            bytes: ByteCounts {
                downloaded: 3,
                cached: 4,
                written: 7,
            },
            summary,
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
                    "file skipped",
                    None,
                    TaskStatus::Skipped {
                        because: "`task failed` failed".into(),
                    },
                    0,
                ),
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
        let value: Value =
            serde_json::from_slice(&to_json(&report(Some(summary))).unwrap()).unwrap();
        assert_eq!(value["schema"], 2);
        assert_eq!(value["outcome"], "failed");
        assert_eq!(value["started_at"], "2023-11-14T22:13:20.25Z");
        assert_eq!(value["finished_at"], "2023-11-14T22:13:22.75Z");
        assert_eq!(value["duration_seconds"], 2.5);
        assert_eq!(
            value["tasks"],
            json!([
                {
                    "name": "task ran", "kind": "command", "subject": "ran",
                    "started_at": "2023-11-14T22:13:20.25Z", "finished_at": "2023-11-14T22:13:21.75Z",
                    "start": 0.0, "end": 1.5,
                    "status": "ran", "reason": "never built", "error": null, "bytes": 42
                },
                {
                    "name": "file fresh", "kind": "command", "subject": "fresh",
                    "started_at": "2023-11-14T22:13:20.25Z", "finished_at": "2023-11-14T22:13:20.5Z",
                    "start": 0.0, "end": 0.25,
                    "status": "up-to-date", "reason": "unchanged since its last successful run",
                    "error": null, "bytes": 0
                },
                {
                    "name": "file skipped", "kind": "command", "subject": "skipped",
                    "started_at": null, "finished_at": null, "start": null, "end": null,
                    "status": "skipped", "reason": "`task failed` failed", "error": null,
                    "bytes": 0
                },
                {
                    "name": "task broke early", "kind": "command", "subject": "broke early",
                    "started_at": "2023-11-14T22:13:20.25Z", "finished_at": "2023-11-14T22:13:20.75Z",
                    "start": 0.0, "end": 0.5,
                    "status": "failed", "reason": null, "error": "cannot read input",
                    "bytes": 0
                },
            ])
        );
    }

    #[test]
    fn a_run_that_never_started_still_has_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        write_json_report(&path, &report(None)).unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"), "{text}");
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["duration_seconds"], Value::Null);
        assert_eq!(value["tasks"], json!([]));
        assert_eq!(value["iso"], Value::Null);
        assert_eq!(value["warnings"][0]["kind"], "ignored-pin");
    }

    #[test]
    fn the_schema_is_json_and_names_this_version() {
        let schema: Value = serde_json::from_str(JSON_SCHEMA).unwrap();
        assert_eq!(schema["properties"]["schema"]["const"], SCHEMA_VERSION);
    }
}
