//! `--timings FILE.html`: a self-contained HTML timeline of a run (placeholder).

use std::path::Path;

use super::RunSummary;

/// Write an HTML timeline of `summary` to `path`.
pub fn write_timings_html(path: &Path, summary: &RunSummary) -> std::io::Result<()> {
    let json = serde_json::to_string(summary).map_err(std::io::Error::other)?;
    let html = format!("<!doctype html><html><body><pre>{json}</pre></body></html>\n");
    crate::fs::write_atomic(path, html.as_bytes(), 0o644)
}
