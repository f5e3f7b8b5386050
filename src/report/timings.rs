//! `--timings FILE.html`: a self-contained HTML page of a run, in the spirit of
//! `cargo build --timings`, to see where the time went and what ran in parallel.
//!
//! The page has a header (start, total time, jobs, tasks per status), a timeline with one bar
//! per task placed by its start and end and coloured by status, and a table of every task in
//! the same order (by start; tasks that never started last). Hovering a bar or a name shows
//! the task's kind, times, bytes and reason.
//!
//! It needs nothing but the file: CSS is inline, the timeline is positioned `div`s, and there is
//! no script. Every text comes from [`html_text`] because task names and reasons come from
//! user recipes. The output depends only on the summary (integer arithmetic for the time axis,
//! fixed decimals for positions), so two renders of one summary are byte-identical.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use super::{RunSummary, TaskRecord, TaskStatus, human_bytes};

/// Write an HTML timeline of `summary` to `path`, atomically.
pub fn write_timings_html(path: &Path, summary: &RunSummary) -> std::io::Result<()> {
    crate::fs::write_atomic(path, render(summary).as_bytes(), 0o644)
}

fn render(summary: &RunSummary) -> String {
    let mut html = String::new();
    write_page(&mut html, summary).expect("writing to a String cannot fail");
    html
}

/// Text made safe for HTML element content and quoted attribute values.
struct Escaped<'a>(&'a str);

fn html_text(text: &str) -> Escaped<'_> {
    Escaped(text)
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

const STYLE: &str = "\
:root { --ran: #4e8fd6; --up-to-date: #8cc98c; --failed: #d9534f; --skipped: #b9b9b9;
  --cancelled: #e8a33d; --grid: #e4e4e4; --text: #1d1d1d; --muted: #6b6b6b; }
body { font: 14px/1.4 system-ui, -apple-system, 'Segoe UI', sans-serif; color: var(--text);
  margin: 1.5em 2em; }
h1 { font-size: 1.5em; margin: 0 0 .5em; }
h2 { font-size: 1.15em; margin: 1.5em 0 .5em; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: .2em .8em .2em 0; vertical-align: top; }
table.tasks th { border-bottom: 1px solid var(--grid); }
table.tasks td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.tasks tr:nth-child(even) td { background: #f7f7f7; }
.chip { display: inline-block; padding: 0 .5em; margin-right: .3em; border-radius: 3px; }
.ran { background: var(--ran); color: #fff; }
.up-to-date { background: var(--up-to-date); }
.failed { background: var(--failed); color: #fff; }
.skipped { background: var(--skipped); }
.cancelled { background: var(--cancelled); }
.timeline { display: grid; grid-template-columns: minmax(10em, 22em) 1fr; row-gap: 2px; }
.timeline .name { white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
  padding-right: .8em; }
.timeline .track { position: relative; height: 1.2em;
  background: linear-gradient(to right, var(--grid) 1px, transparent 1px) 0 0 / var(--tick) 100% repeat-x; }
.timeline .axis { position: relative; height: 1.4em; color: var(--muted); font-size: .85em; }
.timeline .axis span { position: absolute; transform: translateX(-50%); }
.timeline .axis span:first-child { transform: none; }
.timeline .bar { position: absolute; top: 1px; bottom: 1px; border-radius: 2px; min-width: 2px; }
.timeline .note { color: var(--muted); font-size: .85em; padding-left: .3em; }
.muted { color: var(--muted); }
";

/// The order of the page: by start, never-started tasks last, ties in summary order.
fn sorted(summary: &RunSummary) -> Vec<&TaskRecord> {
    let mut tasks: Vec<&TaskRecord> = summary.tasks.iter().collect();
    tasks.sort_by_key(|task| (task.start.is_none(), task.start));
    tasks
}

/// The span the timeline covers: the run, or its longest task if that ended later.
fn scale(summary: &RunSummary) -> Duration {
    let last_end = summary.tasks.iter().filter_map(|task| task.end).max();
    summary
        .duration
        .into_iter()
        .chain(last_end)
        .max()
        .unwrap_or_default()
}

/// A round step for the time axis with at most ten ticks, in milliseconds.
fn tick_step(scale: Duration) -> u128 {
    const STEPS: [u128; 16] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
    ];
    let millis = scale.as_millis().max(1);
    STEPS
        .into_iter()
        .find(|step| millis / step <= 10)
        // Runs over 50 minutes: whole multiples of ten minutes.
        .unwrap_or_else(|| millis.div_ceil(10 * 600_000) * 600_000)
}

/// `part` as a percentage of `whole`, with fixed decimals so the page is stable.
fn percent(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        return 0.0;
    }
    (part.as_secs_f64() / whole.as_secs_f64() * 100.0).clamp(0.0, 100.0)
}

fn seconds(duration: Duration) -> String {
    format!("{:.2}s", duration.as_secs_f64())
}

/// What the tooltip of a task says, one fact a line.
fn tooltip(task: &TaskRecord) -> String {
    let mut text = format!(
        "{}\nkind: {}\nstatus: {}",
        task.name,
        task.kind,
        task.status.name()
    );
    if let (Some(start), Some(end)) = (task.start, task.end) {
        let _ = write!(
            text,
            "\nfrom {} to {} ({})",
            seconds(start),
            seconds(end),
            seconds(end.saturating_sub(start))
        );
    }
    if task.bytes > 0 {
        let _ = write!(text, "\nbytes: {}", human_bytes(task.bytes));
    }
    if let Some(reason) = task.status.reason() {
        let _ = write!(text, "\nreason: {reason}");
    }
    if let Some(error) = task.status.error() {
        let _ = write!(text, "\nerror: {error}");
    }
    text
}

fn write_page(html: &mut String, summary: &RunSummary) -> fmt::Result {
    let tasks = sorted(summary);
    let scale = scale(summary);
    writeln!(html, "<!DOCTYPE html>")?;
    writeln!(html, "<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">")?;
    writeln!(html, "<title>isobuild timings</title>")?;
    writeln!(html, "<style>\n{STYLE}</style>\n</head>\n<body>")?;
    writeln!(html, "<h1>isobuild timings</h1>")?;
    write_header(html, summary)?;
    writeln!(html, "<h2>Timeline</h2>")?;
    write_timeline(html, &tasks, scale)?;
    writeln!(html, "<h2>Tasks</h2>")?;
    write_table(html, &tasks)?;
    writeln!(html, "</body>\n</html>")
}

fn write_header(html: &mut String, summary: &RunSummary) -> fmt::Result {
    let started = jiff::Timestamp::try_from(summary.started_at)
        .map_or_else(|_| "unknown".to_owned(), |at| at.to_string());
    let total = summary
        .duration
        .map_or_else(|| "unknown".to_owned(), seconds);
    writeln!(html, "<table class=\"summary\">")?;
    writeln!(
        html,
        "<tr><th>Started</th><td>{}</td></tr>",
        html_text(&started)
    )?;
    writeln!(html, "<tr><th>Total time</th><td>{total}</td></tr>")?;
    writeln!(html, "<tr><th>Jobs</th><td>{}</td></tr>", summary.jobs)?;
    write!(html, "<tr><th>Tasks</th><td>{}", summary.tasks.len())?;
    for name in TaskStatus::NAMES {
        let count = summary
            .tasks
            .iter()
            .filter(|task| task.status.name() == name)
            .count();
        write!(html, " <span class=\"chip {name}\">{count} {name}</span>")?;
    }
    writeln!(html, "</td></tr>\n</table>")
}

fn write_timeline(html: &mut String, tasks: &[&TaskRecord], scale: Duration) -> fmt::Result {
    if tasks.is_empty() {
        return writeln!(html, "<p class=\"muted\">No tasks.</p>");
    }
    let step = tick_step(scale);
    let step_duration = Duration::from_millis(u64::try_from(step).unwrap_or(u64::MAX));
    // Gridlines repeat every step: a tile as wide as one step, as a share of the track.
    let tick = if scale.is_zero() {
        100.0
    } else {
        percent(step_duration, scale).max(0.001)
    };
    writeln!(
        html,
        "<div class=\"timeline\" style=\"--tick: {tick:.3}%\">"
    )?;
    write!(
        html,
        "<div class=\"name muted\">task</div><div class=\"axis\">"
    )?;
    let mut at = 0;
    while at <= scale.as_millis() {
        let position = percent(Duration::from_millis(u64::try_from(at).unwrap_or(0)), scale);
        #[allow(clippy::cast_precision_loss)] // milliseconds of a build fit an f64 exactly
        let label = at as f64 / 1000.0;
        write!(html, "<span style=\"left: {position:.3}%\">{label}s</span>")?;
        at += step;
    }
    writeln!(html, "</div>")?;
    for task in tasks {
        let title = tooltip(task);
        write!(
            html,
            "<div class=\"name\" title=\"{}\">{}</div><div class=\"track\">",
            html_text(&title),
            html_text(&task.name)
        )?;
        if let Some(start) = task.start {
            // A task cut short by the end of the run has no end: it lasted until then.
            let end = task.end.unwrap_or(scale);
            let left = percent(start, scale);
            let width = percent(end.saturating_sub(start), scale).min(100.0 - left);
            write!(
                html,
                "<div class=\"bar {}\" style=\"left: {left:.3}%; width: {width:.3}%\" title=\"{}\"></div>",
                task.status.name(),
                html_text(&title)
            )?;
        } else {
            write!(
                html,
                "<span class=\"note\">{}",
                html_text(task.status.name())
            )?;
            if let Some(reason) = task.status.reason() {
                write!(html, ": {}", html_text(reason))?;
            }
            write!(html, "</span>")?;
        }
        writeln!(html, "</div>")?;
    }
    writeln!(html, "</div>")
}

fn write_table(html: &mut String, tasks: &[&TaskRecord]) -> fmt::Result {
    writeln!(html, "<table class=\"tasks\">")?;
    writeln!(
        html,
        "<thead><tr><th>#</th><th>Task</th><th>Kind</th><th>Status</th><th>Start</th>\
         <th>Duration</th><th>Bytes</th><th>Reason</th></tr></thead>\n<tbody>"
    )?;
    for (index, task) in tasks.iter().enumerate() {
        let start = task.start.map_or_else(String::new, seconds);
        let duration = match (task.start, task.end) {
            (Some(start), Some(end)) => seconds(end.saturating_sub(start)),
            _ => String::new(),
        };
        let bytes = if task.bytes > 0 {
            human_bytes(task.bytes)
        } else {
            String::new()
        };
        let status = task.status.name();
        write!(
            html,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td>\
             <td><span class=\"chip {status}\">{status}</span></td>\
             <td class=\"num\">{start}</td><td class=\"num\">{duration}</td>\
             <td class=\"num\">{bytes}</td><td>",
            index + 1,
            html_text(&task.name),
            html_text(task.kind),
        )?;
        if let Some(reason) = task.status.reason() {
            write!(html, "{}", html_text(reason))?;
        }
        if let Some(error) = task.status.error() {
            write!(html, "<br><strong>error:</strong> {}", html_text(error))?;
        }
        writeln!(html, "</td></tr>")?;
    }
    writeln!(html, "</tbody>\n</table>")
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn task(name: &str, times: Option<(u64, u64)>, status: TaskStatus) -> TaskRecord {
        TaskRecord {
            name: name.into(),
            kind: "command",
            start: times.map(|(start, _)| Duration::from_millis(start)),
            end: times.map(|(_, end)| Duration::from_millis(end)),
            status,
            bytes: 0,
        }
    }

    fn summary() -> RunSummary {
        RunSummary {
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Some(Duration::from_millis(2_500)),
            jobs: 2,
            tasks: vec![
                task(
                    "file skipped.txt",
                    None,
                    TaskStatus::Skipped {
                        because: "`task <b>` failed".into(),
                    },
                ),
                task(
                    "task <b>",
                    Some((500, 2_000)),
                    TaskStatus::Failed {
                        reason: "input \"a&b\" changed".into(),
                        error: "exit status 1 <oops>".into(),
                    },
                ),
                TaskRecord {
                    bytes: 3 << 20,
                    ..task(
                        "file it's.txt",
                        Some((0, 1_500)),
                        TaskStatus::Ran {
                            reason: "never built".into(),
                        },
                    )
                },
                task("file fresh.txt", Some((0, 10)), TaskStatus::UpToDate),
                task("file cancelled", None, TaskStatus::Cancelled),
            ],
        }
    }

    #[test]
    fn every_name_is_there_escaped() {
        let html = render(&summary());
        assert!(html.contains("<td>task &lt;b&gt;</td>"), "{html}");
        assert!(html.contains("<td>file it&#39;s.txt</td>"));
        assert!(html.contains("input &quot;a&amp;b&quot; changed"));
        assert!(html.contains("exit status 1 &lt;oops&gt;"));
        assert!(!html.contains("<b>"));
        assert!(!html.contains("<oops>"));
        for name in [
            "file skipped.txt",
            "file fresh.txt",
            "file cancelled",
            "task &lt;b&gt;",
        ] {
            assert!(html.contains(&format!(">{name}</div>")), "{name}");
        }
    }

    #[test]
    fn the_page_is_self_contained_and_stable() {
        let html = render(&summary());
        assert_eq!(html, render(&summary()));
        assert!(html.starts_with("<!DOCTYPE html>\n"));
        assert!(html.ends_with("</html>\n"));
        for external in ["<script", "<link", "src=", "url(", "http"] {
            assert!(!html.contains(external), "{external}");
        }
    }

    #[test]
    fn header_counts_each_status() {
        let html = render(&summary());
        assert!(html.contains("<tr><th>Started</th><td>2023-11-14T22:13:20Z</td></tr>"));
        assert!(html.contains("<tr><th>Total time</th><td>2.50s</td></tr>"));
        assert!(html.contains("<tr><th>Jobs</th><td>2</td></tr>"));
        for chip in [
            "1 ran",
            "1 up-to-date",
            "1 failed",
            "1 skipped",
            "1 cancelled",
        ] {
            assert!(html.contains(&format!("\">{chip}</span>")), "{chip}");
        }
    }

    #[test]
    fn bars_are_placed_by_start_and_end_in_start_order() {
        let html = render(&summary());
        assert!(html.contains("<div class=\"bar failed\" style=\"left: 20.000%; width: 60.000%\""));
        assert!(html.contains("<div class=\"bar ran\" style=\"left: 0.000%; width: 60.000%\""));
        let order: Vec<usize> = [
            "file it&#39;s.txt",
            "file fresh.txt",
            "task &lt;b&gt;",
            "file skipped.txt",
            "file cancelled",
        ]
        .iter()
        .map(|name| html.find(&format!("<td>{name}</td>")).unwrap())
        .collect();
        assert!(order.is_sorted(), "{order:?}");
        // A 2.5 s run gets a tick every 0.5 s, as gridlines and labels.
        assert!(html.contains("--tick: 20.000%"));
        assert!(html.contains(">2.5s</span>"));
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(Duration::ZERO), 1);
        assert_eq!(tick_step(Duration::from_millis(2_500)), 500);
        assert_eq!(tick_step(Duration::from_secs(95)), 10_000);
        assert_eq!(tick_step(Duration::from_secs(2 * 3600)), 1_200_000);
    }

    #[test]
    fn an_empty_run_renders() {
        let html = render(&RunSummary {
            started_at: UNIX_EPOCH,
            duration: None,
            jobs: 1,
            tasks: Vec::new(),
        });
        assert!(html.contains("No tasks."));
        assert!(html.contains("<td>unknown</td>"));
    }
}
