//! [`TerminalReporter`]: live lines on an interactive terminal. The only file that imports
//! indicatif, so that the rest of the crate (and its tests) never depends on how progress is
//! drawn.
//!
//! One [`MultiProgress`] holds, from top to bottom:
//!
//! - a spinner while the images resolve (`Resolving 3/12 images`), before any task;
//! - one line per running task that is not a download, and one line per download (a blob
//!   task is only its download line, labelled with every image that shares the blob);
//! - the overall line at the bottom, where the eye expects it: bytes done out of the bytes to
//!   download, throughput and ETA when the run downloads anything, else tasks done out of the
//!   total; tasks done and failures in its message.
//!
//! At most [`visible_lines`] task and download lines are drawn (the terminal's height minus
//! room for the overall line and a few printed lines), the rest wait unseen and are counted
//! in the overall line (`+12 waiting`): a 14-row terminal building MetalK8s (~150 blobs)
//! keeps its overall line on screen instead of scrolling it away.
//!
//! Lines that should outlive the bars (failures, retries and resumed downloads always; with
//! `-v` why each task ran, `fresh …`, finished downloads) are printed above them.
//! [`Reporter::on_run_finish`] and [`Reporter::on_resolve_finish`] clear what they drew, so
//! that an interrupted run leaves no half-drawn line behind.
//!
//! Colour is off when [`TerminalReporter::with_color`] says so (`--color`, `NO_COLOR`); every
//! line reads the same without it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{DownloadId, Reporter, TaskId, TaskLabel, TaskStatus, human_bytes};

/// How often spinners and elapsed times move while nothing else happens.
const TICK: Duration = Duration::from_millis(100);

/// Task kinds whose only line is their download's.
const DOWNLOAD_KINDS: [&str; 2] = ["pull-blob", "rpm"];

/// How many task and download lines a terminal of `rows` rows shows: enough to see the work
/// in flight, while the overall line and a few printed lines stay on screen.
pub(super) fn visible_lines(rows: u16) -> usize {
    usize::from(rows.saturating_sub(5)).clamp(1, 12)
}

/// Live lines on a terminal, printed lines above them.
pub struct TerminalReporter {
    verbosity: i8,
    color: bool,
    styles: Styles,
    multi: MultiProgress,
    overall: ProgressBar,
    resolving: Mutex<Option<ProgressBar>>,
    lines: Mutex<Lines>,
    downloads: Mutex<HashMap<DownloadId, Download>>,
    next_download: AtomicUsize,
    tasks_done: AtomicUsize,
    tasks_total: AtomicUsize,
    failed: AtomicUsize,
    /// Set by [`Reporter::on_transfer_total`]: the overall line counts bytes.
    bytes_mode: AtomicBool,
    /// Set by [`Reporter::on_run_finish`]: the bars are gone and lines go straight to `out`.
    finished: AtomicBool,
    /// Where lines go when there are no bars to print them above.
    out: Mutex<Box<dyn Write + Send>>,
    /// `ECHOCTL` off while bars are drawn on a real terminal.
    controls: Mutex<Option<QuietControls>>,
}

/// Which task and download lines are drawn and which wait for a place.
struct Lines {
    cap: usize,
    /// Numbers each line, so that a waiting one can be found again.
    next_key: usize,
    tasks: HashMap<TaskId, (usize, ProgressBar)>,
    /// How many lines are drawn.
    shown: usize,
    waiting: VecDeque<(usize, ProgressBar)>,
}

struct Download {
    key: usize,
    bar: ProgressBar,
    label: String,
}

struct Styles {
    overall_tasks: ProgressStyle,
    overall_bytes: ProgressStyle,
    resolving: ProgressStyle,
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
            overall_tasks: template(
                "{prefix:>8.cyan.bold} [{bar:25.cyan/blue}] {pos}/{len} tasks, {elapsed} {msg}",
                "{prefix:>8} [{bar:25}] {pos}/{len} tasks, {elapsed} {msg}",
            )
            .progress_chars("=> "),
            overall_bytes: template(
                "{prefix:>8.cyan.bold} [{bar:25.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec}, ETA {eta} {msg}",
                "{prefix:>8} [{bar:25}] {bytes}/{total_bytes} {bytes_per_sec}, ETA {eta} {msg}",
            )
            .progress_chars("=> "),
            resolving: template(
                "{prefix:>8.cyan.bold} {spinner:.cyan} {pos}/{len} images {elapsed} {wide_msg}",
                "{prefix:>8} {spinner} {pos}/{len} images {elapsed} {wide_msg}",
            ),
            task: template(
                "  {spinner:.cyan} {wide_msg} {elapsed:>4}",
                "  {spinner} {wide_msg} {elapsed:>4}",
            ),
            sized_download: template(
                "  {spinner:.green} {wide_msg} [{bar:15.green/white}] {bytes:>9}/{total_bytes:<9} {bytes_per_sec:>11}",
                "  {spinner} {wide_msg} [{bar:15}] {bytes:>9}/{total_bytes:<9} {bytes_per_sec:>11}",
            )
            .progress_chars("=> "),
            unsized_download: template(
                "  {spinner:.green} {wide_msg} {bytes:>9} {bytes_per_sec:>11}",
                "  {spinner} {wide_msg} {bytes:>9} {bytes_per_sec:>11}",
            ),
        }
    }
}

impl TerminalReporter {
    /// Lines on stderr, with colour, as many as its height allows.
    pub fn new(verbosity: i8) -> Self {
        let rows = console::Term::stderr()
            .size_checked()
            .map_or(24, |(rows, _)| rows);
        let reporter = Self::with_target(
            verbosity,
            ProgressDrawTarget::stderr(),
            Box::new(std::io::stderr()),
            visible_lines(rows),
        );
        *lock(&reporter.controls) = Some(QuietControls::new());
        reporter
    }

    /// Colour on or off (off for `NO_COLOR`).
    #[must_use]
    pub fn with_color(mut self, color: bool) -> Self {
        self.color = color;
        self.styles = Styles::new(color);
        self.overall.set_style(self.styles.overall_tasks.clone());
        self
    }

    fn with_target(
        verbosity: i8,
        target: ProgressDrawTarget,
        out: Box<dyn Write + Send>,
        cap: usize,
    ) -> Self {
        let styles = Styles::new(true);
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(
            ProgressBar::new(0)
                .with_style(styles.overall_tasks.clone())
                .with_prefix("Running"),
        );
        Self {
            verbosity,
            color: true,
            styles,
            multi,
            overall,
            resolving: Mutex::default(),
            lines: Mutex::new(Lines {
                cap,
                next_key: 0,
                tasks: HashMap::new(),
                shown: 0,
                waiting: VecDeque::new(),
            }),
            downloads: Mutex::default(),
            next_download: AtomicUsize::new(0),
            tasks_done: AtomicUsize::new(0),
            tasks_total: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            bytes_mode: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            out: Mutex::new(out),
            controls: Mutex::new(None),
        }
    }

    /// Print `line` above the bars (or straight out when there are none).
    fn print(&self, line: &str) {
        if self.finished.load(Ordering::Acquire) || self.multi.is_hidden() {
            let mut out = lock(&self.out);
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

    /// Draw `bar` above the overall line if there is room, else let it wait unseen.
    fn show(&self, lines: &mut Lines, bar: ProgressBar) -> (usize, ProgressBar) {
        let key = lines.next_key;
        lines.next_key += 1;
        if self.finished.load(Ordering::Acquire) {
            // A task that started as the run ended (Ctrl-C): drawing it now would leave a
            // line behind that nothing clears.
            bar.set_draw_target(ProgressDrawTarget::hidden());
            return (key, bar);
        }
        if lines.shown < lines.cap {
            lines.shown += 1;
            let bar = self.multi.insert_before(&self.overall, bar);
            bar.enable_steady_tick(TICK);
            (key, bar)
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
            lines.waiting.push_back((key, bar.clone()));
            (key, bar)
        }
    }

    /// `bar` is done: remove it, and give its place to the oldest waiting line.
    fn retire(&self, lines: &mut Lines, key: usize, bar: &ProgressBar) {
        if let Some(at) = lines
            .waiting
            .iter()
            .position(|(waiting, _)| *waiting == key)
        {
            lines.waiting.remove(at);
            bar.finish_and_clear();
            return;
        }
        bar.finish_and_clear();
        self.multi.remove(bar);
        lines.shown = lines.shown.saturating_sub(1);
        // Lines whose work finished while they waited are in `waiting` no more.
        if let Some((_, next)) = lines.waiting.pop_front() {
            lines.shown += 1;
            let next = self.multi.insert_before(&self.overall, next);
            next.enable_steady_tick(TICK);
        }
    }

    /// The overall line's message: tasks (in bytes mode), waiting lines, failures.
    fn refresh_overall(&self, waiting: usize) {
        let mut parts = Vec::new();
        if self.bytes_mode.load(Ordering::Relaxed) {
            parts.push(format!(
                "{}/{} tasks",
                self.tasks_done.load(Ordering::Relaxed),
                self.tasks_total.load(Ordering::Relaxed)
            ));
        }
        if waiting > 0 {
            parts.push(format!("+{waiting} waiting"));
        }
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let text = format!("{failed} failed");
            parts.push(self.paint(&text, "1;31").to_string());
        }
        self.overall.set_message(parts.join(", "));
    }
}

/// While bars are drawn, the terminal does not echo control characters (`ECHOCTL` off).
/// indicatif pads each line to the terminal's width, which leaves the cursor in the last
/// column waiting to wrap: the `^C` the terminal echoes on Ctrl-C would wrap to a new line,
/// every cursor move after it would be one row off, and clearing the bars would leave their
/// top line on screen. The setting is restored when the run finishes (or the reporter goes).
struct QuietControls(Option<rustix::termios::Termios>);

impl QuietControls {
    fn new() -> Self {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return Self(None);
        };
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHOCTL);
        match tcsetattr(&stdin, OptionalActions::Now, &quiet) {
            Ok(()) => Self(Some(saved)),
            Err(_) => Self(None),
        }
    }

    fn restore(&mut self) {
        if let Some(saved) = self.0.take() {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                &saved,
            );
        }
    }
}

impl Drop for QuietControls {
    fn drop(&mut self) {
        self.restore();
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

/// Locks a map even after a panic elsewhere: the bars must still be cleared at the end.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Reporter for TerminalReporter {
    fn on_resolve_start(&self, total: usize) {
        if total == 0 {
            return;
        }
        let bar = self.multi.insert_before(
            &self.overall,
            ProgressBar::new(total as u64)
                .with_style(self.styles.resolving.clone())
                .with_prefix("Resolving"),
        );
        bar.enable_steady_tick(TICK);
        if let Some(previous) = lock(&self.resolving).replace(bar) {
            previous.finish_and_clear();
            self.multi.remove(&previous);
        }
    }

    fn on_image_resolved(&self, label: &str) {
        if let Some(bar) = lock(&self.resolving).as_ref() {
            bar.inc(1);
            bar.set_message(label.to_owned());
        }
    }

    fn on_resolve_finish(&self) {
        if let Some(bar) = lock(&self.resolving).take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        // Resolution may be all there is (`lock`), or be interrupted: leave no line drawn.
        if self.overall.length() == Some(0) {
            let _ = self.multi.clear();
        }
    }

    fn on_transfer_total(&self, bytes: u64, _count: usize) {
        if bytes == 0 {
            return;
        }
        self.bytes_mode.store(true, Ordering::Relaxed);
        self.overall.set_style(self.styles.overall_bytes.clone());
        self.overall.set_length(bytes);
        self.overall.set_position(0);
        self.overall.set_prefix("Fetching");
    }

    fn on_run_start(&self, total: usize) {
        self.tasks_total.store(total, Ordering::Relaxed);
        if !self.bytes_mode.load(Ordering::Relaxed) {
            self.overall.set_length(total as u64);
            self.overall.set_position(0);
        }
        self.overall.reset_elapsed();
        self.overall.enable_steady_tick(TICK);
        self.refresh_overall(0);
    }

    fn on_task_start(&self, task: &TaskLabel) {
        if DOWNLOAD_KINDS.contains(&task.kind) {
            return;
        }
        let bar = ProgressBar::new_spinner()
            .with_style(self.styles.task.clone())
            .with_message(task.name.clone());
        let mut lines = lock(&self.lines);
        let shown = self.show(&mut lines, bar);
        if let Some((key, previous)) = lines.tasks.insert(task.id, shown) {
            self.retire(&mut lines, key, &previous);
        }
        let waiting = lines.waiting.len();
        drop(lines);
        self.refresh_overall(waiting);
    }

    fn on_task_finish(&self, task: &TaskLabel, status: &TaskStatus) {
        let mut lines = lock(&self.lines);
        if let Some((key, bar)) = lines.tasks.remove(&task.id) {
            self.retire(&mut lines, key, &bar);
        }
        let waiting = lines.waiting.len();
        drop(lines);
        self.tasks_done.fetch_add(1, Ordering::Relaxed);
        if !self.bytes_mode.load(Ordering::Relaxed) {
            self.overall.inc(1);
        }
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
                self.failed.fetch_add(1, Ordering::Relaxed);
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
        self.refresh_overall(waiting);
    }

    fn on_download_start(&self, label: &str, size: Option<u64>) -> DownloadId {
        let id = DownloadId(self.next_download.fetch_add(1, Ordering::Relaxed));
        let bar = match size {
            Some(size) => ProgressBar::new(size).with_style(self.styles.sized_download.clone()),
            None => ProgressBar::no_length().with_style(self.styles.unsized_download.clone()),
        }
        .with_message(label.to_owned());
        // Both locks, lines first: `on_run_finish` either sees this download or makes it
        // hidden, never a drawn line it does not know of.
        let mut lines = lock(&self.lines);
        let (key, bar) = self.show(&mut lines, bar);
        let waiting = lines.waiting.len();
        lock(&self.downloads).insert(
            id,
            Download {
                key,
                bar,
                label: label.to_owned(),
            },
        );
        drop(lines);
        self.refresh_overall(waiting);
        id
    }

    fn on_download_progress(&self, id: DownloadId, bytes: u64) {
        if let Some(download) = lock(&self.downloads).get(&id) {
            download.bar.inc(bytes);
        }
        if self.bytes_mode.load(Ordering::Relaxed) {
            self.overall.inc(bytes);
            // Packages and resumed partials were not in the announced total.
            if let Some(length) = self.overall.length()
                && self.overall.position() > length
            {
                self.overall.set_length(self.overall.position());
            }
        }
    }

    fn on_download_retry(&self, id: DownloadId, attempt: u32, attempts: u32, error: &str) {
        let label = lock(&self.downloads)
            .get(&id)
            .map_or_else(String::new, |download| download.label.clone());
        self.print(&format!(
            "{} {label} (try {attempt} of {attempts}): {error}",
            self.paint("retrying", "33")
        ));
    }

    fn on_download_resumed(&self, id: DownloadId, offset: u64) {
        let label = lock(&self.downloads)
            .get(&id)
            .map_or_else(String::new, |download| download.label.clone());
        self.print(&format!(
            "{} {label} at {}",
            self.paint("resuming", "33"),
            human_bytes(offset)
        ));
    }

    fn on_download_complete(&self, id: DownloadId) {
        let Some(download) = lock(&self.downloads).remove(&id) else {
            return;
        };
        let mut lines = lock(&self.lines);
        self.retire(&mut lines, download.key, &download.bar);
        let waiting = lines.waiting.len();
        drop(lines);
        self.refresh_overall(waiting);
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
        let mut lines = lock(&self.lines);
        // Under the lines lock: from here on no line is drawn (see `show`).
        self.finished.store(true, Ordering::Release);

        for (_, (_, bar)) in lines.tasks.drain() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        lines.waiting.clear();
        lines.shown = 0;
        for (_, download) in lock(&self.downloads).drain() {
            download.bar.finish_and_clear();
            self.multi.remove(&download.bar);
        }
        drop(lines);
        if let Some(bar) = lock(&self.resolving).take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
        if let Some(mut controls) = lock(&self.controls).take() {
            controls.restore();
        }
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
            2,
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
        assert_eq!(lock(&reporter.lines).tasks.len(), 1);
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
        assert!(lock(&reporter.lines).tasks.is_empty());
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

    #[test]
    fn lines_beyond_the_cap_wait_and_are_counted_in_the_overall_line() {
        let (reporter, _capture) = hidden(0, false);
        reporter.on_transfer_total(300, 3);
        reporter.on_run_start(3);
        let ids: Vec<DownloadId> = ["a", "b", "c"]
            .iter()
            .map(|label| reporter.on_download_start(label, Some(100)))
            .collect();
        {
            let lines = lock(&reporter.lines);
            assert_eq!((lines.shown, lines.waiting.len()), (2, 1));
        }
        assert_eq!(reporter.overall.message(), "0/3 tasks, +1 waiting");
        reporter.on_download_progress(ids[0], 100);
        reporter.on_download_complete(ids[0]);
        {
            let lines = lock(&reporter.lines);
            // The waiting line took the finished one's place.
            assert_eq!((lines.shown, lines.waiting.len()), (2, 0));
        }
        assert_eq!(reporter.overall.position(), 100);
        assert_eq!(reporter.overall.length(), Some(300));
        assert_eq!(reporter.overall.message(), "0/3 tasks");
        reporter.on_run_finish();
    }

    #[test]
    fn a_blob_task_is_only_its_download_line() {
        let (reporter, _capture) = hidden(0, false);
        reporter.on_run_start(1);
        reporter.on_task_start(&TaskLabel {
            id: TaskId(0),
            name: "blob sha256:abc".into(),
            kind: "pull-blob",
        });
        assert!(lock(&reporter.lines).tasks.is_empty());
        reporter.on_download_start("sha256:abc (alpine:3.20)", Some(10));
        assert_eq!(lock(&reporter.lines).shown, 1);
    }

    #[test]
    fn retries_and_resumptions_are_printed_at_default_verbosity() {
        let (reporter, capture) = hidden(0, false);
        let id = reporter.on_download_start("sha256:abc (alpine:3.20)", Some(4096));
        reporter.on_download_resumed(id, 2048);
        reporter.on_download_retry(id, 2, 5, "HTTP 503");
        reporter.on_download_complete(id);
        assert_eq!(
            capture.text(),
            "resuming sha256:abc (alpine:3.20) at 2.0 KiB\n\
             retrying sha256:abc (alpine:3.20) (try 2 of 5): HTTP 503\n"
        );
    }

    #[test]
    fn a_14_row_terminal_keeps_room_for_the_overall_line() {
        assert_eq!(visible_lines(14), 9);
        assert_eq!(visible_lines(3), 1);
        assert_eq!(visible_lines(200), 12);
    }
}
