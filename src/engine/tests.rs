//! Engine tests on tiny graphs of scripted jobs: order, bounds, failure, freshness, cancel.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use petgraph::graph::DiGraph;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::report::NullReporter;

/// Shared observations of a run.
#[derive(Default)]
struct Log {
    order: Mutex<Vec<String>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    dropped: AtomicUsize,
}

struct TestJob {
    name: String,
    input: String,
    fail: bool,
    sleep: Duration,
    log: Arc<Log>,
}

#[derive(Debug, thiserror::Error)]
#[error("scripted failure")]
struct TestError;

/// Counts jobs whose future was dropped before completing.
struct DropGuard<'a>(&'a Log, bool);

impl Drop for DropGuard<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Job for TestJob {
    type Error = TestError;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn kind(&self) -> &'static str {
        "test"
    }

    fn fingerprint(&self) -> BoxFuture<'_, Result<Fingerprint, TestError>> {
        Box::pin(async move {
            let mut fingerprint = Fingerprint::new();
            fingerprint.add("input", self.input.clone());
            Ok(fingerprint)
        })
    }

    fn run(&self) -> BoxFuture<'_, Result<JobOutput, TestError>> {
        Box::pin(async move {
            let mut guard = DropGuard(&self.log, false);
            let now = self.log.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.log.max_running.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.sleep).await;
            self.log.running.fetch_sub(1, Ordering::SeqCst);
            self.log.order.lock().unwrap().push(self.name.clone());
            guard.1 = true;
            if self.fail {
                Err(TestError)
            } else {
                Ok(JobOutput { bytes: 1 })
            }
        })
    }
}

/// A graph description: jobs by name, `(before, after)` edges, failing jobs.
struct Scenario {
    jobs: Vec<&'static str>,
    edges: Vec<(&'static str, &'static str)>,
    failing: Vec<&'static str>,
    inputs: BTreeMap<&'static str, &'static str>,
    sleep: Duration,
}

impl Scenario {
    fn new(jobs: &[&'static str], edges: &[(&'static str, &'static str)]) -> Self {
        Self {
            jobs: jobs.to_vec(),
            edges: edges.to_vec(),
            failing: Vec::new(),
            inputs: BTreeMap::new(),
            sleep: Duration::from_millis(5),
        }
    }

    fn graph(&self, log: &Arc<Log>) -> JobGraph<TestJob> {
        let mut graph = DiGraph::new();
        let mut nodes = BTreeMap::new();
        for &name in &self.jobs {
            let node = graph.add_node(TestJob {
                name: name.to_owned(),
                input: self.inputs.get(name).copied().unwrap_or("v1").to_owned(),
                fail: self.failing.contains(&name),
                sleep: self.sleep,
                log: Arc::clone(log),
            });
            nodes.insert(name, node);
        }
        for (before, after) in &self.edges {
            graph.add_edge(nodes[before], nodes[after], ());
        }
        JobGraph::seal(graph).unwrap()
    }
}

fn engine(dir: &std::path::Path, jobs: usize, keep_going: bool) -> (Engine, CancellationToken) {
    let cancel = CancellationToken::new();
    let engine = Engine::new(
        EngineOptions {
            jobs,
            network_jobs: 4,
            keep_going,
        },
        FreshnessStore::new(dir),
        Arc::new(NullReporter),
        cancel.clone(),
    );
    (engine, cancel)
}

fn status_of<'a>(summary: &'a RunSummary, name: &str) -> &'a TaskStatus {
    &summary
        .tasks
        .iter()
        .find(|task| task.name == name)
        .unwrap()
        .status
}

async fn run(
    scenario: &Scenario,
    dir: &std::path::Path,
    jobs: usize,
) -> (RunOutcome, RunSummary, Arc<Log>) {
    let log = Arc::new(Log::default());
    let (engine, _) = engine(dir, jobs, false);
    let (outcome, summary) = engine.run(&scenario.graph(&log)).await;
    (outcome, summary, log)
}

#[tokio::test]
async fn dependencies_run_first() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::new(
        &["fetch", "layout", "files", "iso"],
        &[("fetch", "layout"), ("layout", "iso"), ("files", "iso")],
    );
    let (outcome, _, log) = run(&scenario, dir.path(), 4).await;
    assert!(matches!(outcome, RunOutcome::Success));
    let order = log.order.lock().unwrap().clone();
    let position = |name: &str| order.iter().position(|n| n == name).unwrap();
    assert!(position("fetch") < position("layout"));
    assert!(position("layout") < position("iso"));
    assert!(position("files") < position("iso"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_more_than_jobs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&'static str> = vec!["a", "b", "c", "d", "e", "f", "g", "h"];
    let mut scenario = Scenario::new(&names, &[]);
    scenario.sleep = Duration::from_millis(30);
    let (outcome, _, log) = run(&scenario, dir.path(), 3).await;
    assert!(matches!(outcome, RunOutcome::Success));
    let max = log.max_running.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} jobs ran at once with --jobs 3");
    assert!(max >= 2, "independent jobs should overlap, saw {max}");
}

#[tokio::test]
async fn failure_stops_dependants_and_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new(
        &["broken", "after-broken", "slow-independent", "later"],
        &[("broken", "after-broken"), ("slow-independent", "later")],
    );
    scenario.failing.push("broken");
    let (outcome, summary, _) = run(&scenario, dir.path(), 1).await;
    let RunOutcome::Failed(failures) = outcome else {
        panic!("expected a failure")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].job, "broken");
    assert!(matches!(
        status_of(&summary, "after-broken"),
        TaskStatus::Skipped { .. }
    ));
    // With one job slot, `broken` (more dependants) starts first and nothing new starts after.
    assert!(matches!(
        status_of(&summary, "later"),
        TaskStatus::Skipped { .. }
    ));
}

#[tokio::test]
async fn keep_going_finishes_the_independent_branch() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new(
        &["broken", "after-broken", "independent", "after-independent"],
        &[
            ("broken", "after-broken"),
            ("independent", "after-independent"),
        ],
    );
    scenario.failing.push("broken");
    let log = Arc::new(Log::default());
    let (engine, _) = engine(dir.path(), 1, true);
    let (outcome, summary) = engine.run(&scenario.graph(&log)).await;
    assert!(matches!(outcome, RunOutcome::Failed(_)));
    assert!(matches!(
        status_of(&summary, "after-independent"),
        TaskStatus::Ran { .. }
    ));
    assert!(matches!(
        status_of(&summary, "after-broken"),
        TaskStatus::Skipped { .. }
    ));
}

#[tokio::test]
async fn second_run_is_up_to_date_and_a_change_reruns_downstream_only() {
    let dir = tempfile::tempdir().unwrap();
    let edges = [("a", "b"), ("b", "c"), ("x", "y")];
    let mut scenario = Scenario::new(&["a", "b", "c", "x", "y"], &edges);
    run(&scenario, dir.path(), 2).await;

    let (_, summary, log) = run(&scenario, dir.path(), 2).await;
    assert!(
        log.order.lock().unwrap().is_empty(),
        "nothing should run again"
    );
    assert!(
        summary
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::UpToDate)
    );

    scenario.inputs.insert("b", "v2");
    let (_, summary, log) = run(&scenario, dir.path(), 2).await;
    let mut ran = log.order.lock().unwrap().clone();
    ran.sort();
    assert_eq!(ran, ["b", "c"]);
    assert_eq!(
        status_of(&summary, "b"),
        &TaskStatus::Ran {
            reason: "input changed".into()
        }
    );
    assert_eq!(
        status_of(&summary, "c"),
        &TaskStatus::Ran {
            reason: "dependency b changed".into()
        }
    );
}

#[tokio::test]
async fn a_failed_job_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new(&["flaky"], &[]);
    scenario.failing.push("flaky");
    run(&scenario, dir.path(), 1).await;
    scenario.failing.clear();
    let (outcome, _, log) = run(&scenario, dir.path(), 1).await;
    assert!(matches!(outcome, RunOutcome::Success));
    assert_eq!(*log.order.lock().unwrap(), ["flaky"]);
}

#[tokio::test]
async fn cancellation_drops_running_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new(&["long-1", "long-2", "after"], &[("long-1", "after")]);
    scenario.sleep = Duration::from_secs(30);
    let log = Arc::new(Log::default());
    let (engine, cancel) = engine(dir.path(), 2, false);
    let graph = scenario.graph(&log);
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let (outcome, summary) = tokio::time::timeout(Duration::from_secs(10), engine.run(&graph))
        .await
        .expect("cancellation must not wait for the jobs");
    canceller.await.unwrap();
    assert!(matches!(outcome, RunOutcome::Cancelled));
    assert_eq!(log.dropped.load(Ordering::SeqCst), 2);
    assert!(
        summary
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Cancelled)
    );
    // Nothing is recorded as up to date: the next run redoes both.
    assert!(FreshnessStore::new(dir.path()).load("long-1").is_none());
}

#[test]
fn cycles_are_named() {
    let log = Arc::new(Log::default());
    let mut scenario = Scenario::new(&["a", "b", "c"], &[("a", "b"), ("b", "c"), ("c", "a")]);
    scenario.sleep = Duration::ZERO;
    let mut graph = DiGraph::new();
    let nodes: Vec<_> = scenario
        .jobs
        .iter()
        .map(|name| {
            graph.add_node(TestJob {
                name: (*name).to_owned(),
                input: String::new(),
                fail: false,
                sleep: Duration::ZERO,
                log: Arc::clone(&log),
            })
        })
        .collect();
    graph.add_edge(nodes[0], nodes[1], ());
    graph.add_edge(nodes[1], nodes[2], ());
    graph.add_edge(nodes[2], nodes[0], ());
    let error = JobGraph::seal(graph).err().unwrap();
    assert_eq!(error.to_string(), "dependency cycle: a -> b -> c -> a");
}
