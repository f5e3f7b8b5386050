//! [`TerminalReporter`]: live bars on an interactive terminal. The only file that imports
//! indicatif, so that the rest of the crate (and its tests) never depends on how progress is
//! drawn.
//!
//! One [`MultiProgress`] holds, from top to bottom: a spinner per running task, a bar per
//! download (a spinner with a byte count when the size is unknown), and the overall bar (tasks
//! done out of the total, elapsed time) at the bottom, where the eye expects it. Lines that
//! should outlive the bars (failures always; with `-v` why each task ran, `fresh …`, finished
//! downloads) are printed above them. [`Reporter::on_run_finish`] clears every bar, so that
//! only those lines and the summary stay on screen.
//!
//! Colour is off when [`TerminalReporter::with_color`] says so (`NO_COLOR`); every line reads the
//! same without it.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{DownloadId, Reporter, TaskId, TaskLabel, TaskStatus, human_bytes};

/// How often spinners and elapsed times move while nothing else happens.
const TICK: Duration = Duration::from_millis(100);

/// Bars on a terminal, lines above them.
pub struct TerminalReporter {
    verbosity: i8,
    color: bool,
    styles: Styles,
    multi: MultiProgress,
    overall: ProgressBar,
    tasks: Mutex<HashMap<TaskId, ProgressBar>>,
    downloads: Mutex<HashMap<DownloadId, Download>>,
    next_download: AtomicUsize,
    failed: AtomicUsize,
    /// Set by [`Reporter::on_run_finish`]: the bars are gone and lines go straight to `out`.
    finished: AtomicBool,
    /// Where lines go when there are no bars to print them above.
    out: Mutex<Box<dyn Write + Send>>,
}

struct Download {
    bar: ProgressBar,
    label: String,
}

struct Styles {
    overall: ProgressStyle,
    task: ProgressStyle,
    sized_download: ProgressStyle,
    unsized_download: ProgressStyle,
}

impl Styles {
    fn new(color: bool) -> Self {
        // The same templates with and without colour specs, so that layout never depends on
        // NO_COLOR.
        let template = |colored: &str, plain: &str| {
            ProgressStyle::with_template(if color { colored } else { plain })
                .expect("progress templates are constants")
        };
        Self {
            overall: template(
                "{prefix:>8.cyan.bold} [{bar:30.cyan/blue}] {pos}/{len} tasks, {elapsed} {wide_msg:.red}",
                "{prefix:>8} [{bar:30}] {pos}/{len} tasks, {elapsed} {wide_msg}",
            )
            .progress_chars("=> "),
            task: template(
                "  {spinner:.cyan} {wide_msg} {elapsed:>4}",
                "  {spinner} {wide_msg} {elapsed:>4}",
            ),
            sized_download: template(
                "  {spinner:.green} {wide_msg} [{bar:20.green/white}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
                "  {spinner} {wide_msg} [{bar:20}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
            )
            .progress_chars("=> "),
            unsized_download: template(
                "  {spinner:.green} {wide_msg} {bytes:>10} {bytes_per_sec:>12}",
                "  {spinner} {wide_msg} {bytes:>10} {bytes_per_sec:>12}",
            ),
        }
    }
}

impl TerminalReporter {
    /// Bars on stderr, with colour.
    pub fn new(verbosity: i8) -> Self {
        Self::with_target(
            verbosity,
            ProgressDrawTarget::stderr(),
            Box::new(std::io::stderr()),
        )
    }

    /// Colour on or off (off for `NO_COLOR`).
    #[must_use]
    pub fn with_color(mut self, color: bool) -> Self {
        self.color = color;
        self.styles = Styles::new(color);
        self.overall.set_style(self.styles.overall.clone());
        self
    }

    fn with_target(verbosity: i8, target: ProgressDrawTarget, out: Box<dyn Write + Send>) -> Self {
        let styles = Styles::new(true);
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(
            ProgressBar::new(0)
                .with_style(styles.overall.clone())
                .with_prefix("Running"),
        );
        Self {
            verbosity,
            color: true,
            styles,
            multi,
            overall,
            tasks: Mutex::default(),
            downloads: Mutex::default(),
            next_download: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
            out: Mutex::new(out),
        }
    }

    /// Print `line` above the bars (or straight out when there are none).
    fn print(&self, line: &str) {
        if self.finished.load(Ordering::Acquire) || self.multi.is_hidden() {
            let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
            // Nothing sensible to do when the terminal itself cannot be written.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        } else {
            let _ = self.multi.println(line);
        }
    }

    /// `word` in an ANSI SGR colour (`"32"` is green), or as is without colour.
    fn paint<'a>(&self, word: &'a str, sgr: &'static str) -> Painted<'a> {
        Painted {
            word,
            sgr: self.color.then_some(sgr),
        }
    }
}

/// A word that may carry colour codes.
struct Painted<'a> {
    word: &'a str,
    sgr: Option<&'static str>,
}

impl fmt::Display for Painted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sgr {
            Some(sgr) => write!(f, "\x1b[{sgr}m{}\x1b[0m", self.word),
            None => f.write_str(self.word),
        }
    }
}

/// Locks a bar map even after a panic elsewhere: the bars must still be cleared at the end.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Reporter for TerminalReporter {
    fn on_run_start(&self, total: usize) {
        self.overall.set_length(total as u64);
        self.overall.set_position(0);
        self.overall.reset_elapsed();
        self.overall.enable_steady_tick(TICK);
    }

    fn on_task_start(&self, task: &TaskLabel) {
        let bar = self.multi.insert_before(
            &self.overall,
            ProgressBar::new_spinner()
                .with_style(self.styles.task.clone())
                .with_message(task.name.clone()),
        );
        bar.enable_steady_tick(TICK);
        if let Some(previous) = lock(&self.tasks).insert(task.id, bar) {
            previous.finish_and_clear();
            self.multi.remove(&previous);
        }
    }

    fn on_task_finish(&self, task: &TaskLabel, status: &TaskStatus) {
        if let Some(bar) = lock(&self.tasks).remove(&task.id) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.overall.inc(1);
        let name = &task.name;
        match status {
            TaskStatus::Ran { reason } if self.verbosity >= 1 => {
                self.print(&format!("{} {name}: {reason}", self.paint("ran", "32")));
            }
            TaskStatus::UpToDate if self.verbosity >= 1 => {
                self.print(&format!("{} {name}", self.paint("fresh", "2")));
            }
            TaskStatus::Ran { .. } | TaskStatus::UpToDate => {}
            TaskStatus::Failed { reason, error } => {
                let failed = self.paint("failed", "1;31");
                if self.verbosity >= 1 && !reason.is_empty() {
                    self.print(&format!(
                        "{failed} {name}: {error} (it ran because: {reason})"
                    ));
                } else {
                    self.print(&format!("{failed} {name}: {error}"));
                }
                let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
                self.overall.set_message(format!("{failed} failed"));
            }
            TaskStatus::Skipped { because } => {
                self.print(&format!(
                    "{} {name}: {because}",
                    self.paint("skipped", "33")
                ));
            }
            TaskStatus::Cancelled => {
                self.print(&format!("{} {name}", self.paint("cancelled", "33")));
            }
        }
    }

    fn on_download_start(&self, label: &str, size: Option<u64>) -> DownloadId {
        let id = DownloadId(self.next_download.fetch_add(1, Ordering::Relaxed));
        let bar = match size {
            Some(size) => ProgressBar::new(size).with_style(self.styles.sized_download.clone()),
            None => ProgressBar::no_length().with_style(self.styles.unsized_download.clone()),
        };
        let bar = self
            .multi
            .insert_before(&self.overall, bar.with_message(label.to_owned()));
        bar.enable_steady_tick(TICK);
        lock(&self.downloads).insert(
            id,
            Download {
                bar,
                label: label.to_owned(),
            },
        );
        id
    }

    fn on_download_progress(&self, id: DownloadId, bytes: u64) {
        if let Some(download) = lock(&self.downloads).get(&id) {
            download.bar.inc(bytes);
        }
    }

    fn on_download_complete(&self, id: DownloadId) {
        let Some(download) = lock(&self.downloads).remove(&id) else {
            return;
        };
        download.bar.finish_and_clear();
        self.multi.remove(&download.bar);
        if self.verbosity >= 1 {
            let bytes = match (download.bar.position(), download.bar.length()) {
                (0, Some(size)) => size,
                (received, _) => received,
            };
            self.print(&format!(
                "{} {}: {} in {:.2}s",
                self.paint("downloaded", "32"),
                download.label,
                human_bytes(bytes),
                download.bar.elapsed().as_secs_f64()
            ));
        }
    }

    fn on_message(&self, message: &str) {
        self.print(message);
    }

    fn on_run_finish(&self) {
        // Tasks and downloads that never finished (cancelled, or their job panicked) still
        // have bars: nothing must stay drawn once the run is over.
        for (_, bar) in lock(&self.tasks).drain() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        for (_, download) in lock(&self.downloads).drain() {
            download.bar.finish_and_clear();
            self.multi.remove(&download.bar);
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
        self.finished.store(true, Ordering::Release);
    }
}

impl fmt::Debug for TerminalReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TerminalReporter")
            .field("verbosity", &self.verbosity)
            .field("color", &self.color)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {

    use pretty_assertions::assert_eq;

    use super::*;

    use crate::report::recording::Capture;

    /// A reporter whose bars draw nowhere, so its lines land in the capture.
    fn hidden(verbosity: i8, color: bool) -> (TerminalReporter, Capture) {
        let capture = Capture::default();
        let reporter = TerminalReporter::with_target(
            verbosity,
            ProgressDrawTarget::hidden(),
            Box::new(capture.clone()),
        )
        .with_color(color);
        (reporter, capture)
    }

    fn label(id: usize, name: &str) -> TaskLabel {
        TaskLabel {
            id: TaskId(id),
            name: name.into(),
            kind: "command",
        }
    }

    fn script(reporter: &TerminalReporter) {
        let fresh = label(0, "file product.txt");
        let ran = label(1, "task build-salt-master");
        let failed = label(2, "file bootstrap.sh");
        let never_finished = label(3, "file never.txt");
        reporter.on_run_start(4);
        for task in [&fresh, &ran, &failed, &never_finished] {
            reporter.on_task_start(task);
        }
        let download = reporter.on_download_start("blob sha256:abc", Some(10));
        reporter.on_download_progress(download, 10);
        reporter.on_download_complete(download);
        let unfinished = reporter.on_download_start("blob sha256:def", None);
        reporter.on_download_progress(unfinished, 5);
        reporter.on_task_finish(&fresh, &TaskStatus::UpToDate);
        reporter.on_task_finish(
            &ran,
            &TaskStatus::Ran {
                reason: "input images/salt-master/Dockerfile changed".into(),
            },
        );
        reporter.on_task_finish(
            &failed,
            &TaskStatus::Failed {
                reason: "never built".into(),
                error: "template error".into(),
            },
        );
        assert_eq!(reporter.overall.position(), 3);
        assert_eq!(lock(&reporter.tasks).len(), 1);
        assert_eq!(lock(&reporter.downloads).len(), 1);
        reporter.on_run_finish();
        reporter.on_message("4 tasks: 1 ran, 1 up to date in 0.01s");
    }

    #[test]
    fn verbosity_0_prints_only_failures_and_messages() {
        let (reporter, capture) = hidden(0, false);
        script(&reporter);
        assert_eq!(
            capture.text(),
            "failed file bootstrap.sh: template error\n\
             4 tasks: 1 ran, 1 up to date in 0.01s\n"
        );
    }

    #[test]
    fn verbosity_1_says_why_each_task_ran() {
        let (reporter, capture) = hidden(1, false);
        script(&reporter);
        let text = capture.text();
        let mut lines: Vec<&str> = text.lines().collect();
        // The download's duration depends on the machine.
        assert!(
            lines[0].starts_with("downloaded blob sha256:abc: 10 B in "),
            "{text}"
        );
        lines.remove(0);
        assert_eq!(
            lines,
            [
                "fresh file product.txt",
                "ran task build-salt-master: input images/salt-master/Dockerfile changed",
                "failed file bootstrap.sh: template error (it ran because: never built)",
                "4 tasks: 1 ran, 1 up to date in 0.01s",
            ]
        );
    }

    #[test]
    fn run_finish_clears_every_bar() {
        let (reporter, _capture) = hidden(0, false);
        script(&reporter);
        assert!(lock(&reporter.tasks).is_empty());
        assert!(lock(&reporter.downloads).is_empty());
        assert!(reporter.overall.is_finished());
    }

    #[test]
    fn colour_only_when_asked() {
        let (reporter, capture) = hidden(0, true);
        script(&reporter);
        assert!(capture.text().contains("\x1b[1;31mfailed\x1b[0m"));
        let (reporter, capture) = hidden(0, false);
        script(&reporter);
        assert!(!capture.text().contains('\x1b'));
    }
}
