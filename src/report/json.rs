//! `--report FILE.json`: the run summary as JSON.

use std::path::Path;

use super::RunSummary;

/// Write `summary` to `path` as pretty JSON, atomically.
pub fn write_json_report(path: &Path, summary: &RunSummary) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(summary).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    crate::fs::write_atomic(path, &bytes, 0o644)
}
