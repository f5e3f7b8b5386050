//! One measurement: run a program (or several, some at once) and record its wall time, its
//! peak resident memory and the bytes it wrote. Memory and bytes come from the kernel's
//! resource usage of each process, read through GNU time (`/usr/bin/time -f "%M %O"`):
//! `%M` is the peak RSS in KiB, `%O` the file-system writes in 512-byte blocks (bytes
//! dirtied in the page cache, so a hard link or a deleted temporary costs nothing). Both
//! include the children each process waited for (xorriso under `isobuild build`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What one or more processes used.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    pub(crate) wall: Duration,
    /// The largest peak RSS of any one process, in bytes.
    pub(crate) peak_rss: u64,
    /// Bytes written by all of them.
    pub(crate) written: u64,
}

impl Usage {
    /// Two steps run one after the other: times and writes add up, memory is the larger.
    pub(crate) fn then(self, next: Usage) -> Usage {
        Usage {
            wall: self.wall + next.wall,
            peak_rss: self.peak_rss.max(next.peak_rss),
            written: self.written + next.written,
        }
    }
}

/// A program and its arguments, run in `dir`.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) dir: PathBuf,
}

impl Job {
    pub(crate) fn new(program: impl Into<PathBuf>, args: &[&str], dir: &Path) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            dir: dir.to_owned(),
        }
    }

    fn shown(&self) -> String {
        format!("{} {}", self.program.display(), self.args.join(" "))
    }
}

/// Run `job` alone.
pub(crate) fn run(job: &Job, scratch: &Path) -> Result<Usage> {
    run_all(std::slice::from_ref(job), 1, scratch)
}

/// Run `jobs`, `parallel` at a time (doit's `skopeo copy` pool); the wall time covers all.
pub(crate) fn run_all(jobs: &[Job], parallel: usize, scratch: &Path) -> Result<Usage> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(jobs.len()));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for worker in 0..parallel.max(1) {
            let (next, results) = (&next, &results);
            scope.spawn(move || {
                let report = scratch.join(format!("time-{worker}.txt"));
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(index) else { break };
                    let result = run_timed(job, &report);
                    let failed = result.is_err();
                    results.lock().unwrap().push(result);
                    if failed {
                        // Take the rest of the queue so every worker stops.
                        next.store(jobs.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let wall = start.elapsed();
    let mut total = Usage {
        wall,
        ..Usage::default()
    };
    for result in results.into_inner().unwrap() {
        let (peak_rss, written) = result?;
        total.peak_rss = total.peak_rss.max(peak_rss);
        total.written += written;
    }
    Ok(total)
}

/// Run one job under GNU time; return its peak RSS and bytes written.
fn run_timed(job: &Job, report: &Path) -> Result<(u64, u64)> {
    let output = Command::new("/usr/bin/time")
        .args(["-f", "%M %O", "-o"])
        .arg(report)
        .arg(&job.program)
        .args(&job.args)
        .current_dir(&job.dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run /usr/bin/time {}", job.shown()))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}):\n{}{}",
            job.shown(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = fs_err::read_to_string(report)?;
    // The last line; GNU time puts "Command exited with non-zero status" lines before it.
    let line = text.lines().last().unwrap_or_default();
    let mut fields = line.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(rss_kib)), Some(Ok(blocks))) => Ok((rss_kib * 1024, blocks * 512)),
        _ => bail!("cannot read GNU time's report `{line}`"),
    }
}

/// Time an in-process step; it uses no memory or writes worth reporting beside xtask's own.
pub(crate) fn in_process(step: impl FnOnce() -> Result<()>) -> Result<Usage> {
    let start = Instant::now();
    step()?;
    Ok(Usage {
        wall: start.elapsed(),
        ..Usage::default()
    })
}
