//! The engine runs a sealed task graph on tokio. It knows jobs only through the [`Job`] trait:
//! a name, a kind, a [`Resource`], a [`Fingerprint`] and a future that does the work. It knows
//! nothing about images, files or ISOs.
//!
//! # Flow
//!
//! 1. [`JobGraph::seal`] checks the graph is acyclic (naming a cycle if there is one) and
//!    freezes it: nothing can be added once it may run.
//! 2. [`Engine::run`] puts every job without dependencies in the dependency queue. Each loop turn
//!    starts ready jobs while their resource has room (`--jobs` for local work, a separate
//!    bound for network jobs), then waits for one job to end or for cancellation.
//! 3. A started job first computes its fingerprint (its own inputs plus the fingerprint keys of
//!    the jobs it depends on). If that equals the fingerprint of its last successful run and its
//!    outputs exist, it is up to date and does nothing. Otherwise it runs, and on success its
//!    fingerprint is saved in the [`FreshnessStore`].
//! 4. A finished job releases its dependents. A failed job blocks everything downstream of it;
//!    without `--keep-going` nothing new starts, the jobs in flight finish, and the run ends.
//! 5. Cancellation (Ctrl-C) aborts the jobs in flight. Aborting drops their futures, which
//!    deletes their temporary files and kills their child processes.
//!
//! # Invariants
//!
//! - The drain loop never returns early with `?`: every outcome is recorded, every spawned
//!   job is awaited, and the summary lists every job exactly once.
//! - A fingerprint is saved only after its job succeeded, so an interrupted or failed job
//!   always runs again.

mod freshness;
mod queue;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use freshness::{Fingerprint, FreshnessStore};

use crate::report::{Reporter, RunSummary, TaskId, TaskLabel, TaskRecord, TaskStatus};
use queue::DependencyQueue;

/// A boxed, sendable future, as [`Job`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which bound a job counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Disk and CPU work: at most `--jobs` at once.
    Local,
    /// Network transfers: bounded separately, since they wait on the network, not the CPU.
    Network,
}

/// What a job gives the engine besides success.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobOutput {
    /// Bytes written or downloaded, for the report.
    pub bytes: u64,
}

/// One unit of work in the graph.
pub trait Job: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Unique within the graph, human-readable.
    fn name(&self) -> String;
    /// What sort of work, for reports (`copy`, `template`, `command`, …).
    fn kind(&self) -> &'static str;
    fn resource(&self) -> Resource {
        Resource::Local
    }
    /// Everything that affects this job's output. Called once its dependencies are done.
    fn fingerprint(&self) -> BoxFuture<'_, Result<Fingerprint, Self::Error>>;
    /// An output of the last run that is gone (then the job runs even if its inputs did not
    /// change).
    fn missing_output(&self) -> Option<String> {
        None
    }
    /// A hash of the content of this job's outputs, for jobs whose outputs something else
    /// could change after they ran (a command's child that outlived it, a user): then the
    /// job is not up to date. `None` (the default) when its inputs alone decide.
    fn outputs_digest(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(std::future::ready(None))
    }
    /// Do the work.
    fn run(&self) -> BoxFuture<'_, Result<JobOutput, Self::Error>>;
}

/// A cycle in a job graph; names the jobs on it in order.
#[derive(Debug, Clone, thiserror::Error)]
#[error("dependency cycle: {}", cycle.join(" -> "))]
pub struct CycleError {
    pub cycle: Vec<String>,
}

/// A job graph that was checked and can no longer change. Edges point from a job to a job
/// that must wait for it.
pub struct JobGraph<J> {
    graph: DiGraph<Arc<J>, ()>,
}

impl<J: Job> JobGraph<J> {
    /// Check `graph` is acyclic and freeze it.
    pub fn seal(graph: DiGraph<J, ()>) -> Result<Self, CycleError> {
        if let Some(cycle) = find_cycle(&graph) {
            return Err(CycleError {
                cycle: cycle.iter().map(|&node| graph[node].name()).collect(),
            });
        }
        Ok(Self {
            graph: graph.map_owned(|_, job| Arc::new(job), |_, ()| ()),
        })
    }
}

impl<J> JobGraph<J> {
    /// The jobs in index order.
    pub fn jobs(&self) -> impl Iterator<Item = &J> {
        self.graph.node_weights().map(AsRef::as_ref)
    }

    /// `(before, after)` index pairs.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.graph
            .edge_references()
            .map(|edge| (edge.source().index(), edge.target().index()))
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }
}

/// A cycle in `graph` as nodes in order (first node repeated at the end), if there is one.
fn find_cycle<N, E>(graph: &DiGraph<N, E>) -> Option<Vec<NodeIndex>> {
    for component in petgraph::algo::tarjan_scc(graph) {
        let self_loop = component.len() == 1 && graph.contains_edge(component[0], component[0]);
        if component.len() < 2 && !self_loop {
            continue;
        }
        // Walk inside the component from its smallest node until a node repeats.
        let start = *component.iter().min()?;
        let mut path = vec![start];
        let mut current = start;
        loop {
            let next = graph
                .neighbors(current)
                .filter(|n| component.contains(n))
                .min()?;
            if let Some(position) = path.iter().position(|&n| n == next) {
                let mut cycle = path[position..].to_vec();
                cycle.push(next);
                return Some(cycle);
            }
            path.push(next);
            current = next;
        }
    }
    None
}

/// Limits and switches for one run.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// At most this many local jobs at once.
    pub jobs: usize,
    /// At most this many network jobs at once.
    pub network_jobs: usize,
    /// Let independent branches finish after a failure.
    pub keep_going: bool,
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome {
    Success,
    /// Some jobs failed; each with its error (the chain rendered).
    Failed(Vec<JobFailure>),
    Cancelled,
}

/// A job that failed, and why.
#[derive(Debug, Clone)]
pub struct JobFailure {
    pub job: String,
    pub error: String,
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.job, self.error)
    }
}

/// Runs job graphs.
pub struct Engine {
    options: EngineOptions,
    freshness: FreshnessStore,
    reporter: Arc<dyn Reporter>,
    cancel: CancellationToken,
}

struct Finished {
    node: usize,
    start: Duration,
    end: Duration,
    result: Result<(TaskStatus, Fingerprint, u64), String>,
    reason: String,
}

impl Engine {
    pub fn new(
        options: EngineOptions,
        freshness: FreshnessStore,
        reporter: Arc<dyn Reporter>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            options,
            freshness,
            reporter,
            cancel,
        }
    }

    /// Run every job of `graph` in dependency order. Never fails itself: what went wrong is
    /// in the outcome and the summary.
    pub async fn run<J: Job>(&self, graph: &JobGraph<J>) -> (RunOutcome, RunSummary) {
        let started_at = SystemTime::now();
        let clock = Instant::now();
        let n = graph.len();
        let jobs: Vec<Arc<J>> = graph.graph.node_weights().cloned().collect();
        let names: Vec<String> = jobs.iter().map(|job| job.name()).collect();
        let mut dependencies: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (before, after) in graph.edges() {
            dependencies[after].push(before);
        }
        let mut queue = DependencyQueue::new(n, graph.edges());
        let mut records: Vec<TaskRecord> = jobs
            .iter()
            .zip(&names)
            .map(|(job, name)| TaskRecord {
                name: name.clone(),
                kind: job.kind(),
                start: None,
                end: None,
                status: TaskStatus::Cancelled,
                bytes: 0,
            })
            .collect();
        let mut keys: Vec<Option<String>> = vec![None; n];
        let mut failures = Vec::new();
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut running_local = 0;
        let mut running_network = 0;
        let mut stopping = false;
        let mut cancelled = false;
        self.reporter.on_run_start(n);

        loop {
            if !stopping {
                let mut deferred = Vec::new();
                while let Some(node) = queue.pop() {
                    let (count, limit) = match jobs[node].resource() {
                        Resource::Local => (&mut running_local, self.options.jobs),
                        Resource::Network => (&mut running_network, self.options.network_jobs),
                    };
                    if *count >= limit.max(1) {
                        deferred.push(node);
                        continue;
                    }
                    *count += 1;
                    let dependency_keys: Vec<(String, String)> = dependencies[node]
                        .iter()
                        .map(|&dep| (names[dep].clone(), keys[dep].clone().unwrap_or_default()))
                        .collect();
                    let label = TaskLabel {
                        id: TaskId(node),
                        name: names[node].clone(),
                        kind: jobs[node].kind(),
                    };
                    running.spawn(run_one(
                        Arc::clone(&jobs[node]),
                        label,
                        dependency_keys,
                        self.freshness.clone(),
                        Arc::clone(&self.reporter),
                        clock,
                    ));
                }
                for node in deferred {
                    queue.push_back(node);
                }
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next() => joined,
                () = self.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    stopping = true;
                    running.abort_all();
                    continue;
                }
            };
            let Some(joined) = joined else { continue };
            let finished = match joined {
                Ok(finished) => finished,
                // Aborted by cancellation: its record stays `Cancelled`. A panic is a bug, but
                // it must not hang the loop: the job's record stays `Cancelled` too.
                Err(error) => {
                    if error.is_panic() {
                        failures.push(JobFailure {
                            job: "(unknown job)".into(),
                            error: "a job panicked".into(),
                        });
                        stopping = true;
                    }
                    // The resource count of an aborted job no longer matters: nothing new
                    // starts once stopping.
                    continue;
                }
            };
            let node = finished.node;
            match jobs[node].resource() {
                Resource::Local => running_local -= 1,
                Resource::Network => running_network -= 1,
            }
            records[node].start = Some(finished.start);
            records[node].end = Some(finished.end);
            match finished.result {
                Ok((status, fingerprint, bytes)) => {
                    keys[node] = Some(fingerprint.key());
                    records[node].bytes = bytes;
                    records[node].status = status;
                    queue.finish(node);
                }
                Err(error) => {
                    records[node].status = TaskStatus::Failed {
                        reason: finished.reason,
                        error: error.clone(),
                    };
                    failures.push(JobFailure {
                        job: names[node].clone(),
                        error,
                    });
                    for blocked in queue.fail(node) {
                        records[blocked].status = TaskStatus::Skipped {
                            because: format!("`{}` failed", names[node]),
                        };
                    }
                    if !self.options.keep_going {
                        stopping = true;
                    }
                }
            }
        }
        if stopping && !cancelled {
            // Jobs that were ready but never started because the run stopped early.
            for record in &mut records {
                if record.start.is_none() && record.status == TaskStatus::Cancelled {
                    record.status = TaskStatus::Skipped {
                        because: "the run stopped after a failure".into(),
                    };
                }
            }
        }
        // The fingerprints saved into the pack: lost if this fails, they only rerun tasks.
        if let Err(error) = self.freshness.flush() {
            tracing::warn!(
                "cannot record which tasks are up to date in `{}`: {error}",
                self.freshness.dir().display()
            );
        }
        self.reporter.on_run_finish();
        let summary = RunSummary {
            started_at,
            duration: Some(clock.elapsed()),
            jobs: self.options.jobs,
            tasks: records,
        };
        let outcome = if cancelled {
            RunOutcome::Cancelled
        } else if failures.is_empty() {
            RunOutcome::Success
        } else {
            RunOutcome::Failed(failures)
        };
        (outcome, summary)
    }
}

/// The fingerprint entry of [`Job::outputs_digest`].
const OUTPUTS_CONTENT: &str = "content of the outputs";

/// Check freshness and, if needed, run one job. Reports start and finish.
async fn run_one<J: Job>(
    job: Arc<J>,
    label: TaskLabel,
    dependency_keys: Vec<(String, String)>,
    freshness: FreshnessStore,
    reporter: Arc<dyn Reporter>,
    clock: Instant,
) -> Finished {
    let start = clock.elapsed();
    tracing::debug!(task = %label.name, kind = label.kind, "task started");
    reporter.on_task_start(&label);
    let mut reason = String::new();
    let result = async {
        let mut fingerprint = job.fingerprint().await.map_err(|e| render_chain(&e))?;
        fingerprint.add("isobuild version", env!("CARGO_PKG_VERSION"));
        for (name, key) in dependency_keys {
            fingerprint.add(format!("dependency {name}"), key);
        }
        if let Some(digest) = job.outputs_digest().await {
            fingerprint.add(OUTPUTS_CONTENT, digest);
        }
        let previous = freshness.load(&label.name);
        reason = match (&previous, job.missing_output()) {
            (None, _) => "never built".to_owned(),
            (Some(_), Some(missing)) => format!("output {missing} missing"),
            (Some(previous), None) => match fingerprint.why_changed(previous) {
                Some(reason) => reason,
                None => return Ok((TaskStatus::UpToDate, fingerprint, 0)),
            },
        };
        // Forget first: if the job dies half-way, its outputs are in an unknown state.
        freshness.forget(&label.name);
        let output = job.run().await.map_err(|e| render_chain(&e))?;
        if let Some(digest) = job.outputs_digest().await {
            fingerprint.add(OUTPUTS_CONTENT, digest);
        }
        if let Err(error) = freshness.save(&label.name, &fingerprint) {
            return Err(format!("cannot record that it is up to date: {error}"));
        }
        Ok((
            TaskStatus::Ran {
                reason: reason.clone(),
            },
            fingerprint,
            output.bytes,
        ))
    }
    .await;
    let status = match &result {
        Ok((status, _, _)) => status.clone(),
        Err(error) => TaskStatus::Failed {
            reason: reason.clone(),
            error: error.clone(),
        },
    };
    tracing::debug!(task = %label.name, status = status.name(), reason = ?status.reason(), "task finished");
    reporter.on_task_finish(&label, &status);
    Finished {
        node: label.id.0,
        start,
        end: clock.elapsed(),
        result,
        reason,
    }
}

/// An error and its sources, `: `-separated.
pub fn render_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
