//! [`PlainReporter`]: timestamped lines for CI logs and pipes, where redrawn bars would be noise.
//!
//! Every line starts with the seconds since the run started (`[  0.42s] ran file bootstrap.sh
//! in 0.12s`), so a log shows where the time went without `--timings`. What is printed grows
//! with the verbosity:
//!
//! | verbosity | lines                                                                    |
//! |-----------|--------------------------------------------------------------------------|
//! | 0         | tasks that ran, failed, were skipped or cancelled; finished downloads; messages |
//! | 1         | also why each task ran, and the tasks that were up to date (`fresh …`)   |
//! | 2         | also each task and download as it starts                                 |
//!
//! Always, too: a line when images start and finish resolving, one with the bytes the run
//! will download, retries and resumed downloads, and while downloads run, a heartbeat line
//! every few seconds (`downloading 3 blobs: 45.0 MiB of 1.2 GiB, 3.4 MiB/s`), so that a CI
//! log of a long transfer never looks hung.
//!
//! A task's start is not printed below verbosity 2 because the engine reports it before it
//! knows whether the task is up to date: most starts of a no-op rebuild would be noise. The
//! finish line carries the task's duration instead.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::{DownloadId, Reporter, TaskId, TaskLabel, TaskStatus, human_bytes};

/// Where the reporter reads the time; tests replace it to get stable timestamps.
type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

/// How often a line says how the downloads are going while nothing else is printed.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(5);

/// Timestamped lines on stderr (or any writer).
pub struct PlainReporter {
    verbosity: i8,
    clock: Arc<Clock>,
    state: Arc<Mutex<State>>,
    heartbeat: Duration,
    /// Whether the heartbeat thread runs (started by the first download).
    beating: AtomicBool,
}

struct State {
    /// When the last line was printed, so that a heartbeat only fills silences.
    last_line: Instant,
    /// Bytes to download (announced) and downloaded so far, across downloads.
    transfer_total: u64,
    transferred: u64,
    /// When resolution started, while it runs.
    resolving: Option<(Instant, usize)>,
    finished: bool,
    out: Box<dyn Write + Send>,
    /// Timestamps count from here: the reporter's creation, then [`Reporter::on_run_start`].
    origin: Instant,
    started: HashMap<TaskId, Instant>,
    downloads: HashMap<DownloadId, Download>,
    next_download: usize,
}

struct Download {
    label: String,
    size: Option<u64>,
    received: u64,
    started: Instant,
}

impl PlainReporter {
    /// Lines on stderr.
    pub fn new(verbosity: i8) -> Self {
        Self::with_writer(verbosity, Box::new(std::io::stderr()))
    }

    /// Lines on `out`, flushed one by one so that a log tails well.
    pub fn with_writer(verbosity: i8, out: Box<dyn Write + Send>) -> Self {
        Self::with_clock(verbosity, out, Box::new(Instant::now))
    }

    fn with_clock(verbosity: i8, out: Box<dyn Write + Send>, clock: Clock) -> Self {
        let origin = clock();
        Self {
            verbosity,
            clock: Arc::new(clock),
            heartbeat: HEARTBEAT,
            beating: AtomicBool::new(false),
            state: Arc::new(Mutex::new(State {
                last_line: origin,
                transfer_total: 0,
                transferred: 0,
                resolving: None,
                finished: false,
                out,
                origin,
                started: HashMap::new(),
                downloads: HashMap::new(),
                next_download: 0,
            })),
        }
    }

    /// A line about download `id`, made from its label.
    fn download_line(&self, id: DownloadId, text: impl FnOnce(&str) -> String) {
        let now = (self.clock)();
        let mut state = self.lock();
        let label = state
            .downloads
            .get(&id)
            .map_or_else(String::new, |download| download.label.clone());
        let text = text(&label);
        state.line(now, format_args!("{text}"));
    }

    /// Start the heartbeat thread, once. It holds the state weakly and ends with the run or
    /// the reporter.
    fn start_heartbeat(&self) {
        if self.beating.swap(true, Ordering::AcqRel) {
            return;
        }
        let state: Weak<Mutex<State>> = Arc::downgrade(&self.state);
        let clock = Arc::clone(&self.clock);
        let every = self.heartbeat;
        let spawned = std::thread::Builder::new()
            .name("isobuild-heartbeat".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every / 4);
                    let Some(state) = state.upgrade() else { return };
                    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    if state.finished {
                        return;
                    }
                    let now = clock();
                    if !state.downloads.is_empty()
                        && now.saturating_duration_since(state.last_line) >= every
                    {
                        state.heartbeat(now);
                    }
                }
            });
        if spawned.is_err() {
            // No thread, no heartbeat: the other lines still come.
            tracing::debug!("cannot start the heartbeat thread");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while printing must not silence every later line.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn line(&mut self, now: Instant, text: fmt::Arguments<'_>) {
        let at = now.saturating_duration_since(self.origin).as_secs_f64();
        // Nothing sensible to do when the log itself cannot be written: the run goes on.
        let _ = writeln!(self.out, "[{at:6.2}s] {text}");
        let _ = self.out.flush();
        self.last_line = now;
    }

    /// `downloading 3 blobs: 45.0 MiB of 1.2 GiB, 3.4 MiB/s`.
    fn heartbeat(&mut self, now: Instant) {
        let count = self.downloads.len();
        let elapsed = now.saturating_duration_since(self.origin).as_secs_f64();
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rate = if elapsed > 0.0 {
            (self.transferred as f64 / elapsed) as u64
        } else {
            0
        };
        let done = human_bytes(self.transferred);
        let of = if self.transfer_total > 0 {
            format!(
                " of {}",
                human_bytes(self.transfer_total.max(self.transferred))
            )
        } else {
            String::new()
        };
        let blobs = if count == 1 { "download" } else { "downloads" };
        self.line(
            now,
            format_args!(
                "{count} {blobs} running: {done}{of}, {}/s",
                human_bytes(rate)
            ),
        );
    }
}

/// `0.12s`, as every duration in the lines is written.
fn seconds(duration: Duration) -> String {
    format!("{:.2}s", duration.as_secs_f64())
}

impl Reporter for PlainReporter {
    fn on_resolve_start(&self, total: usize) {
        if total == 0 {
            return;
        }
        let now = (self.clock)();
        let mut state = self.lock();
        state.resolving = Some((now, total));
        let images = if total == 1 { "image" } else { "images" };
        state.line(now, format_args!("resolving {total} {images}"));
    }

    fn on_image_resolved(&self, label: &str) {
        if self.verbosity >= 2 {
            let now = (self.clock)();
            self.lock().line(now, format_args!("resolved {label}"));
        }
    }

    fn on_resolve_finish(&self) {
        let now = (self.clock)();
        let mut state = self.lock();
        if let Some((started, total)) = state.resolving.take() {
            let took = seconds(now.saturating_duration_since(started));
            let images = if total == 1 { "image" } else { "images" };
            state.line(now, format_args!("resolved {total} {images} in {took}"));
        }
    }

    fn on_transfer_total(&self, bytes: u64, count: usize) {
        let now = (self.clock)();
        let mut state = self.lock();
        state.transfer_total = bytes;
        if bytes > 0 {
            let blobs = if count == 1 { "blob" } else { "blobs" };
            state.line(
                now,
                format_args!("to download: {count} {blobs}, {}", human_bytes(bytes)),
            );
        }
    }

    fn on_download_retry(&self, id: DownloadId, attempt: u32, attempts: u32, error: &str) {
        self.download_line(id, |label| {
            format!("retrying {label} (try {attempt} of {attempts}): {error}")
        });
    }

    fn on_download_resumed(&self, id: DownloadId, offset: u64) {
        self.download_line(id, |label| {
            format!("resuming {label} at {}", human_bytes(offset))
        });
    }

    fn on_run_finish(&self) {
        self.lock().finished = true;
    }

    fn on_run_start(&self, total: usize) {
        let now = (self.clock)();
        let mut state = self.lock();
        state.origin = now;
        if self.verbosity >= 2 {
            state.line(now, format_args!("run {total} tasks"));
        }
    }

    fn on_task_start(&self, task: &TaskLabel) {
        let now = (self.clock)();
        let mut state = self.lock();
        state.started.insert(task.id, now);
        if self.verbosity >= 2 {
            state.line(now, format_args!("start {}", task.name));
        }
    }

    fn on_task_finish(&self, task: &TaskLabel, status: &TaskStatus) {
        let now = (self.clock)();
        let mut state = self.lock();
        let took = state
            .started
            .remove(&task.id)
            .map_or(Duration::ZERO, |start| now.saturating_duration_since(start));
        let name = &task.name;
        let took = seconds(took);
        match status {
            TaskStatus::Ran { reason } if self.verbosity >= 1 => {
                state.line(now, format_args!("ran {name} in {took}: {reason}"));
            }
            TaskStatus::Ran { .. } => state.line(now, format_args!("ran {name} in {took}")),
            TaskStatus::UpToDate if self.verbosity >= 1 => {
                state.line(now, format_args!("fresh {name}"));
            }
            TaskStatus::UpToDate => {}
            TaskStatus::Failed { reason, error } if self.verbosity >= 1 && !reason.is_empty() => {
                state.line(
                    now,
                    format_args!("failed {name} after {took}: {error} (it ran because: {reason})"),
                );
            }
            TaskStatus::Failed { error, .. } => {
                state.line(now, format_args!("failed {name} after {took}: {error}"));
            }
            TaskStatus::Skipped { because } => {
                state.line(now, format_args!("skipped {name}: {because}"));
            }
            TaskStatus::Cancelled => state.line(now, format_args!("cancelled {name}")),
        }
    }

    fn on_download_start(&self, label: &str, size: Option<u64>) -> DownloadId {
        let now = (self.clock)();
        let mut state = self.lock();
        let id = DownloadId(state.next_download);
        state.next_download += 1;
        if self.verbosity >= 2 {
            let size = size.map_or_else(|| "size unknown".to_owned(), human_bytes);
            state.line(now, format_args!("download {label} ({size})"));
        }
        state.downloads.insert(
            id,
            Download {
                label: label.to_owned(),
                size,
                received: 0,
                started: now,
            },
        );
        drop(state);
        self.start_heartbeat();
        id
    }

    fn on_download_progress(&self, id: DownloadId, bytes: u64) {
        let mut state = self.lock();
        state.transferred = state.transferred.saturating_add(bytes);
        if let Some(download) = state.downloads.get_mut(&id) {
            download.received = download.received.saturating_add(bytes);
        }
    }

    fn on_download_complete(&self, id: DownloadId) {
        let now = (self.clock)();
        let mut state = self.lock();
        let Some(download) = state.downloads.remove(&id) else {
            return;
        };
        // A source that reports no progress still announced the size it expected.
        let bytes = match (download.received, download.size) {
            (0, Some(size)) => size,
            (received, _) => received,
        };
        let took = seconds(now.saturating_duration_since(download.started));
        state.line(
            now,
            format_args!(
                "downloaded {}: {} in {took}",
                download.label,
                human_bytes(bytes)
            ),
        );
    }

    fn on_message(&self, message: &str) {
        let now = (self.clock)();
        self.lock().line(now, format_args!("{message}"));
    }
}

impl fmt::Debug for PlainReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainReporter")
            .field("verbosity", &self.verbosity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use pretty_assertions::assert_eq;

    use super::*;

    use crate::report::recording::Capture;

    /// A clock the test moves by hand, in milliseconds.
    #[derive(Clone)]
    struct Script {
        base: Instant,
        millis: Arc<AtomicU64>,
    }

    impl Script {
        fn at(&self, millis: u64) {
            self.millis.store(millis, Ordering::SeqCst);
        }
    }

    fn reporter(verbosity: i8) -> (PlainReporter, Capture, Script) {
        let capture = Capture::default();
        let script = Script {
            base: Instant::now(),
            millis: Arc::new(AtomicU64::new(0)),
        };
        let clock = script.clone();
        let reporter = PlainReporter::with_clock(
            verbosity,
            Box::new(capture.clone()),
            Box::new(move || {
                clock.base + Duration::from_millis(clock.millis.load(Ordering::SeqCst))
            }),
        );
        (reporter, capture, script)
    }

    fn label(id: usize, name: &str, kind: &'static str) -> TaskLabel {
        TaskLabel {
            id: TaskId(id),
            name: name.into(),
            kind,
        }
    }

    /// A small run: one fresh task, one that runs, a download, one that fails, the summary.
    fn script_run(verbosity: i8) -> String {
        let (reporter, capture, clock) = reporter(verbosity);
        let fresh = label(0, "file product.txt", "template");
        let ran = label(1, "file bootstrap.sh", "template");
        let failed = label(2, "task build-salt-master", "command");

        clock.at(5);
        reporter.on_run_start(3);
        reporter.on_task_start(&fresh);
        reporter.on_task_start(&ran);
        clock.at(25);
        reporter.on_task_finish(&fresh, &TaskStatus::UpToDate);
        reporter.on_task_start(&failed);
        clock.at(425);
        reporter.on_task_finish(
            &ran,
            &TaskStatus::Ran {
                reason: "input scripts/bootstrap.sh.in changed".into(),
            },
        );
        let download = reporter.on_download_start("docker.io/library/alpine:3.20", Some(3 << 20));
        reporter.on_download_progress(download, 1 << 20);
        reporter.on_download_progress(download, 2 << 20);
        clock.at(1525);
        reporter.on_download_complete(download);
        clock.at(2025);
        reporter.on_task_finish(
            &failed,
            &TaskStatus::Failed {
                reason: "never built".into(),
                error: "`buildah` exited with status 1".into(),
            },
        );
        clock.at(2045);
        reporter.on_message("3 tasks: 1 ran, 1 up to date in 2.03s");
        reporter.on_run_finish();
        drop(reporter);
        let bytes = capture.text().into_bytes();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn verbosity_0_prints_work_done_failures_and_the_summary() {
        assert_eq!(
            script_run(0),
            "\
[  0.42s] ran file bootstrap.sh in 0.42s
[  1.52s] downloaded docker.io/library/alpine:3.20: 3.0 MiB in 1.10s
[  2.02s] failed task build-salt-master after 2.00s: `buildah` exited with status 1
[  2.04s] 3 tasks: 1 ran, 1 up to date in 2.03s
"
        );
    }

    #[test]
    fn verbosity_1_adds_reasons_and_fresh_tasks() {
        assert_eq!(
            script_run(1),
            "\
[  0.02s] fresh file product.txt
[  0.42s] ran file bootstrap.sh in 0.42s: input scripts/bootstrap.sh.in changed
[  1.52s] downloaded docker.io/library/alpine:3.20: 3.0 MiB in 1.10s
[  2.02s] failed task build-salt-master after 2.00s: `buildah` exited with status 1 (it ran because: never built)
[  2.04s] 3 tasks: 1 ran, 1 up to date in 2.03s
"
        );
    }

    #[test]
    fn verbosity_2_adds_starts() {
        let output = script_run(2);
        let starts: Vec<&str> = output
            .lines()
            .filter(|line| line.contains("] start ") || line.contains("] download "))
            .collect();
        assert_eq!(
            starts,
            [
                "[  0.00s] start file product.txt",
                "[  0.00s] start file bootstrap.sh",
                "[  0.02s] start task build-salt-master",
                "[  0.42s] download docker.io/library/alpine:3.20 (3.0 MiB)",
            ]
        );
        assert!(output.starts_with("[  0.00s] run 3 tasks\n"), "{output}");
    }

    #[test]
    fn skipped_and_cancelled_tasks_are_always_shown() {
        let (reporter, capture, _clock) = reporter(0);
        let task = label(0, "file a", "copy");
        reporter.on_task_finish(
            &task,
            &TaskStatus::Skipped {
                because: "`file b` failed".into(),
            },
        );
        reporter.on_task_finish(&task, &TaskStatus::Cancelled);
        let text = capture.text();
        assert_eq!(
            text,
            "[  0.00s] skipped file a: `file b` failed\n[  0.00s] cancelled file a\n"
        );
    }

    #[test]
    fn a_download_without_progress_reports_its_announced_size() {
        let (reporter, capture, clock) = reporter(0);
        let first = reporter.on_download_start("blob a", Some(2048));
        let second = reporter.on_download_start("blob b", None);
        assert_ne!(first, second);
        clock.at(500);
        reporter.on_download_complete(first);
        reporter.on_download_progress(second, 100);
        reporter.on_download_complete(second);
        // Completing twice, or an unknown id, prints nothing.
        reporter.on_download_complete(second);
        let text = capture.text();
        assert_eq!(
            text,
            "[  0.50s] downloaded blob a: 2.0 KiB in 0.50s\n\
             [  0.50s] downloaded blob b: 100 B in 0.50s\n"
        );
    }

    #[test]
    fn a_long_download_gets_heartbeat_lines() {
        let (mut reporter, capture, clock) = reporter(0);
        reporter.heartbeat = Duration::from_millis(20);
        reporter.on_transfer_total(3 << 20, 2);
        let first = reporter.on_download_start("blob a", Some(2 << 20));
        reporter.on_download_start("blob b", Some(1 << 20));
        reporter.on_download_progress(first, 1 << 20);
        // Ten seconds pass on the reporter's clock: the next tick fills the silence.
        clock.at(10_000);
        let mut text = String::new();
        for _ in 0..500 {
            text = capture.text();
            if text.contains("running") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            text,
            "[  0.00s] to download: 2 blobs, 3.0 MiB\n\
             [ 10.00s] 2 downloads running: 1.0 MiB of 3.0 MiB, 102.4 KiB/s\n"
        );
        reporter.on_run_finish();
    }

    #[test]
    fn resolution_is_announced_and_timed() {
        let (reporter, capture, clock) = reporter(0);
        reporter.on_resolve_start(12);
        reporter.on_image_resolved("alpine:3.20");
        clock.at(7_250);
        reporter.on_resolve_finish();
        // Finishing twice (an interrupt after the end) prints nothing more.
        reporter.on_resolve_finish();
        assert_eq!(
            capture.text(),
            "[  0.00s] resolving 12 images\n[  7.25s] resolved 12 images in 7.25s\n"
        );
    }
}
