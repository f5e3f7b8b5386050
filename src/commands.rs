//! One function per subcommand: load what it needs, call the layers, report.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use clap::CommandFactory as _;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::cli::{CacheCommand, Cli, Command, DiffFormat, GraphFormat, InspectFormat};
use crate::engine::{Engine, EngineOptions, FreshnessStore, RunOutcome};
use crate::error::Error;
use crate::inspect::DigestOrigin;
use crate::iso::IsoRequest;
use crate::layout::{BlobPlacer, TreeSize};
use crate::plan::images::ImageServices;
use crate::plan::lock::{LockFile, lock_path};
use crate::plan::packages::{PackageServices, PackageSet};
use crate::plan::resolve::{self, Resolution, ResolveOptions};
use crate::plan::{ImagePlan, PackagePlan, Plan, PlanOptions, Scope};
use crate::recipe::{self, Recipe};
use crate::reference::ImageSource;
use crate::report::{self, Reporter};
use crate::settings::{self, BuildSettings, OutputSettings};
use crate::source::RegistryClient;
use crate::source::local::resolve_endpoint;
use crate::source::retry::RetryPolicy;
use crate::store::{DigestMemo, Store};

/// Run the command the user typed.
pub fn dispatch(cli: Cli) -> Result<(), Error> {
    let color = cli.color;
    match cli.command {
        Command::Build { build, run, output } => {
            let settings = BuildSettings::resolve(&build, Some(&run), color)?;
            let session =
                Session::new(&settings).inspect_err(|e| early_report("build", &settings, e))?;
            let output = output
                .map(|path| settings::current_dir().map(|cwd| cwd.join(path)))
                .transpose()?;
            let memo = DigestMemo::in_cache(&settings.cache_dir);
            let request = iso_request(&session.recipe, output, Some(memo));
            check_outputs(&session.recipe, &request, &settings)?;
            let tree_root = session.recipe.iso.root.clone();
            session.run("build", &tree_root, Some(request), Scope::Tree)
        }
        Command::Layout { build, run, dir } => {
            let settings = BuildSettings::resolve(&build, Some(&run), color)?;
            let session =
                Session::new(&settings).inspect_err(|e| early_report("layout", &settings, e))?;
            let dir = settings::current_dir()?.join(dir);
            session.run("layout", &dir, None, Scope::Tree)
        }
        Command::Fetch { build, run } => {
            let settings = BuildSettings::resolve(&build, Some(&run), color)?;
            let session =
                Session::new(&settings).inspect_err(|e| early_report("fetch", &settings, e))?;
            let tree_root = session.recipe.iso.root.clone();
            session.run("fetch", &tree_root, None, Scope::Fetch)
        }
        Command::Lock { build } => {
            let settings = BuildSettings::resolve(&build, None, color)?;
            Session::new(&settings)?.lock()
        }
        Command::Verify { target, output } => {
            verify(&target, OutputSettings::resolve(&output, color))
        }
        Command::Inspect {
            cache_dir,
            output,
            target,
            format,
            lock,
        } => inspect(
            &target,
            format,
            lock.as_deref(),
            cache_dir.as_deref(),
            OutputSettings::resolve(&output, color),
        ),
        Command::Diff {
            old,
            new,
            format,
            exit_code,
        } => diff(&old, &new, format, exit_code),
        Command::Graph {
            recipe: path,
            format,
            set,
        } => graph(&path, format, &set),
        Command::Cache { command, cache_dir } => {
            let dir = settings::resolve_cache_dir(&settings::current_dir()?, cache_dir.as_deref())?;
            cache(command, &dir)
        }
        Command::Completions { shell } => {
            let mut bytes = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "isobuild", &mut bytes);
            print_stdout(&String::from_utf8_lossy(&bytes));
            Ok(())
        }
        Command::Man => {
            let mut bytes = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut bytes)
                .map_err(|source| Error::Io {
                    path: PathBuf::from("(stdout)"),
                    source,
                })?;
            print_stdout(&String::from_utf8_lossy(&bytes));
            Ok(())
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_stdout(text: &str) {
    print!("{text}");
}

/// A recipe loaded with its settings, and what running it needs.
struct Session<'a> {
    settings: &'a BuildSettings,
    recipe: Recipe,
    reporter: Arc<dyn Reporter>,
    runtime: tokio::runtime::Runtime,
    /// What `--report` lists under `warnings`, gathered as the run goes.
    warnings: Mutex<Vec<report::Warning>>,
}

impl<'a> Session<'a> {
    fn new(settings: &'a BuildSettings) -> Result<Self, Error> {
        let mut recipe = recipe::load_with_epoch(
            &settings.recipe,
            &settings.overrides,
            settings.source_date_epoch,
        )?;
        if let Some(platform) = &settings.platform {
            recipe.images.platform = platform.clone();
        }
        Ok(Self {
            settings,
            recipe,
            reporter: report::reporter_for(settings.output),
            runtime: runtime()?,
            warnings: Mutex::default(),
        })
    }

    fn warnings(&self) -> std::sync::MutexGuard<'_, Vec<report::Warning>> {
        self.warnings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cache, the registry client and the daemon endpoint for this recipe's images.
    fn image_services(&self, offline: bool) -> Result<Arc<ImageServices>, Error> {
        let store = Store::open(&self.settings.cache_dir)?;
        if let Some(timeout) = self.settings.http_timeout {
            // A download that has sent nothing for a few read timeouts is stuck, whichever
            // process it belongs to.
            store.set_stalled_after(timeout * 3);
        }
        let mut mirrors = self.recipe.mirrors.clone();
        // `--mirror https://…=…` rewrites package repository URLs, not registries.
        mirrors.extend(
            self.settings
                .mirrors
                .iter()
                .filter(|(from, _)| !from.contains("://"))
                .map(|(from, to)| (from.clone(), to.clone())),
        );
        let mut builder = RegistryClient::builder()
            .mirrors(mirrors)
            .insecure_hosts(self.settings.insecure_registries.iter().cloned())
            .offline(offline)
            .auth(self.settings.auth.clone())
            .tls(self.settings.tls.clone())
            .registries_conf(self.settings.registries_conf.clone());
        if let Some(timeout) = self.settings.http_timeout {
            builder = builder.timeouts(timeout, timeout);
        }
        if let Some(attempts) = self.settings.http_retries {
            builder = builder.retry(RetryPolicy {
                attempts,
                ..RetryPolicy::default()
            });
        }
        let client = builder
            .build()
            .map_err(|error| Error::Setup(crate::engine::render_chain(&error)))?;
        let needs_daemon = self
            .recipe
            .images
            .list
            .iter()
            .any(|image| matches!(image.source, ImageSource::Daemon(_)));
        let daemon = if needs_daemon {
            let env = &self.settings.daemon_env;
            Some(
                resolve_endpoint(&|name| env.get(name).cloned(), &is_socket)
                    .map_err(|error| Error::Setup(crate::engine::render_chain(&error)))?,
            )
        } else {
            None
        };
        Ok(Arc::new(ImageServices {
            placer: BlobPlacer::new(store.clone()),
            store,
            client: Arc::new(client),
            reporter: Arc::clone(&self.reporter),
            daemon,
        }))
    }

    /// Resolve every image (checking pins, the lock file and, offline, the cache).
    fn resolve(
        &self,
        services: &Arc<ImageServices>,
        use_lock: bool,
    ) -> Result<Vec<Resolution>, Error> {
        let lock_file = lock_path(&self.recipe.file);
        let lock = if use_lock && self.settings.locked {
            Some(LockFile::read(&lock_file)?)
        } else {
            None
        };
        let options = ResolveOptions {
            platform: &self.recipe.images.platform,
            ignore_pins: self.settings.ignore_pins,
            locked: lock.as_ref().map(|lock| (lock, lock_file.as_path())),
            offline: self.settings.offline,
            verbose: self.settings.output.verbosity >= 1,
        };
        let resolving = resolve::resolve_images(
            &self.recipe,
            &services.client,
            &services.store,
            &self.reporter,
            options,
        );
        // Ctrl-C while resolving: nothing is written yet, so stopping is all there is to do.
        let resolutions = self.runtime.block_on(async {
            tokio::select! {
                resolutions = resolving => Ok(resolutions),
                stop = stop_signal() => Err(stop),
            }
        });
        // Also when interrupted: no spinner may stay on screen.
        self.reporter.on_resolve_finish();
        let resolutions = resolutions??;
        resolve::into_images(resolutions.clone()).map_err(|mut error| {
            if self.settings.offline {
                error.hint = Some(self.offline_hint());
            }
            error
        })?;
        if self.settings.ignore_pins {
            let mut warnings = self.warnings();
            for (entry, resolution) in self.recipe.images.list.iter().zip(&resolutions) {
                if let Resolution::Resolved(image) = resolution
                    && let Some(mismatch) = resolve::check_pins(entry, image)
                {
                    warnings.push(report::Warning {
                        kind: "ignored-pin",
                        subject: Some(format!("{}:{}", entry.name, entry.tag)),
                        message: format!("{mismatch} (not checked: --ignore-pins)"),
                    });
                }
            }
        }
        Ok(resolutions)
    }

    /// Check that every program this run will start is installed, before the first download
    /// rather than after the last: xorriso (and implantisomd5) for the ISO, buildah for
    /// container tasks and image builds.
    fn preflight(&self, makes_iso: bool, scope: Scope) -> Result<(), Error> {
        let mut needed = Vec::new();
        if makes_iso {
            needed.push(("xorriso", "xorriso"));
            if self.recipe.iso.implant_md5 {
                needed.push(("implantisomd5", "isomd5sum"));
            }
        }
        let containers = self
            .recipe
            .tasks
            .iter()
            .any(|task| task.container.is_some())
            || self
                .recipe
                .images
                .list
                .iter()
                .any(|image| image.build.is_some());
        if scope == Scope::Tree && containers {
            needed.push(("buildah", "buildah"));
        }
        let missing: Vec<String> = needed
            .into_iter()
            .filter_map(|(program, package)| {
                crate::iso::require(program, package)
                    .err()
                    .map(|error| error.to_string())
            })
            .collect();
        tracing::debug!(?missing, "preflight: external programs checked");
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Setup(missing.join("\n")))
        }
    }

    /// What to do when `--offline` found the cache lacking: fill that very cache online.
    fn offline_hint(&self) -> String {
        let cache = self.settings.cache_dir.display();
        format!(
            "`--offline` looked in the cache `{cache}`; fill it with network access first: `isobuild fetch {} --cache-dir {cache}`",
            self.settings.recipe.display()
        )
    }

    /// Plan and run the recipe into `tree_root` (and the ISO when asked), then write
    /// `--report` whatever the outcome.
    fn run(
        &self,
        command: &'static str,
        tree_root: &Path,
        iso: Option<IsoRequest>,
        scope: Scope,
    ) -> Result<(), Error> {
        let mut facts = RunFacts::default();
        let result = self.run_tasks(tree_root, iso, scope, &mut facts);
        if let Some(path) = &self.settings.report {
            let report = run_report(
                command,
                &self.settings.recipe,
                Some(&self.recipe),
                facts,
                std::mem::take(&mut *self.warnings()),
                result.as_ref().err(),
            );
            if let Err(source) = report::write_json_report(path, &report) {
                let error = Error::Io {
                    path: path.clone(),
                    source,
                };
                // The run's own error matters more than the report's.
                return match result {
                    Ok(()) => Err(error),
                    Err(run) => {
                        tracing::warn!("{error}");
                        Err(run)
                    }
                };
            }
        }
        result
    }

    fn run_tasks(
        &self,
        tree_root: &Path,
        iso: Option<IsoRequest>,
        scope: Scope,
        facts: &mut RunFacts,
    ) -> Result<(), Error> {
        self.preflight(iso.is_some(), scope)?;
        let images = if self.recipe.images.list.is_empty() {
            None
        } else {
            let services = self.image_services(self.settings.offline)?;
            let resolutions = self
                .resolve(&services, true)
                .inspect_err(|error| self.resolve_failure_summary(error, facts))?;
            facts.images = image_infos(&self.recipe, &resolutions);
            let (needed, missing, count) = blob_bytes(&resolutions, &services.store);
            facts.cached_blob_bytes = needed.saturating_sub(missing);
            self.reporter.on_transfer_total(missing, count);
            Some(ImagePlan {
                services,
                resolutions,
            })
        };
        let packages = self.package_plan()?;
        let has_images = images.is_some();
        // The SBOM is made from the finished ISO, with the upstream references and digests
        // only this run's resolutions know.
        let sbom = match &iso {
            Some(request) if self.recipe.iso.sbom => {
                let resolved = match &images {
                    Some(plan) => resolve::into_images(plan.resolutions.clone())?,
                    None => Vec::new(),
                };
                Some((
                    request.output.clone(),
                    sbom_path(&request.output),
                    LockFile::new(&self.recipe, &resolved),
                ))
            }
            _ => None,
        };
        let iso_output = iso
            .as_ref()
            .map(|request| (request.output.clone(), request.digest_memo.clone()));
        let iso_outputs: Vec<PathBuf> = iso
            .iter()
            .flat_map(|request| {
                std::iter::once(request.output.clone()).chain(request.sha256sum.clone())
            })
            .chain(sbom.iter().map(|(_, path, _)| path.clone()))
            .collect();
        let plan = Plan::new(
            &self.recipe,
            &PlanOptions {
                tree_root: tree_root.to_owned(),
                iso,
                images,
                packages,
                scope,
                reporter: Arc::clone(&self.reporter),
            },
        )
        .map_err(|source| Error::Plan {
            recipe: self.recipe.file.clone(),
            source,
        })?;
        let state_dir = freshness_dir(&self.settings.cache_dir, &self.recipe, tree_root, scope);
        let _tree_lock = match scope {
            Scope::Tree => Some(self.claim_tree(tree_root, &iso_outputs)?),
            Scope::Fetch => None,
        };
        let freshness = FreshnessStore::new(state_dir);
        let cancel = CancellationToken::new();
        let engine = Engine::new(
            EngineOptions {
                jobs: self.settings.jobs,
                network_jobs: self.settings.network_jobs,
                keep_going: self.settings.keep_going,
            },
            freshness,
            Arc::clone(&self.reporter),
            cancel.clone(),
        );
        let ((outcome, summary), stop) = self.runtime.block_on(async {
            let interrupt = cancel.clone();
            let stopped = tokio::spawn(async move {
                let stop = stop_signal().await;
                interrupt.cancel();
                stop
            });
            let result = engine.run(&plan.graph).await;
            // Only the signal task cancels: when it did, wait for the signal it names (the
            // engine may return before that task does, and SIGTERM must not exit as Ctrl-C).
            let stop = if cancel.is_cancelled() || stopped.is_finished() {
                stopped.await.ok()
            } else {
                stopped.abort();
                None
            };
            (result, stop)
        });
        if let Some(path) = &self.settings.timings {
            report::write_timings_html(path, &summary).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        facts.summary = Some(summary);
        let summary = facts.summary.as_ref().expect("just set");
        self.reporter
            .on_message(&summary_line(summary, facts.cached_blob_bytes));
        if has_images
            && scope == Scope::Tree
            && matches!(outcome, RunOutcome::Success)
            && let Ok(size) = TreeSize::measure(tree_root)
        {
            self.reporter.on_message(&format!(
                "tree: {} files, {}, {} stored once ({} saved by hard links)",
                size.files,
                report::human_bytes(size.all_bytes),
                report::human_bytes(size.unique_bytes),
                report::human_bytes(size.saved_bytes())
            ));
        }
        if let (RunOutcome::Success, Some((iso, path, upstream))) = (&outcome, &sbom)
            && write_sbom(iso, path, upstream, &self.settings.cache_dir)?
        {
            self.reporter
                .on_message(&format!("SBOM written to {}", path.display()));
        }
        match outcome {
            RunOutcome::Success => {
                if let Some((path, memo)) = iso_output {
                    let info = iso_info(&path, memo.as_ref())?;
                    if self.settings.output.verbosity >= 0 {
                        print_stdout(&finished_line(&info, summary.duration));
                    }
                    facts.iso = Some(info);
                }
                Ok(())
            }
            RunOutcome::Failed(failures) => Err(Error::BuildFailed(failures)),
            RunOutcome::Cancelled => Err(stop.unwrap_or(Error::Interrupted)),
        }
    }

    /// `--timings` when resolving the images failed, before any task, and the summary for
    /// `--report`: the usual shape, with one failed `resolve images` task carrying the error.
    /// Best effort: the resolution error is what the run reports.
    fn resolve_failure_summary(&self, error: &Error, facts: &mut RunFacts) {
        let summary = report::RunSummary {
            started_at: std::time::SystemTime::now(),
            duration: None,
            jobs: self.settings.jobs,
            tasks: vec![report::TaskRecord {
                name: "resolve images".to_owned(),
                kind: "resolve",
                start: None,
                end: None,
                status: report::TaskStatus::Failed {
                    reason: "images are resolved before any task runs".to_owned(),
                    error: error.to_string(),
                },
                bytes: 0,
            }],
        };
        if let Some(path) = &self.settings.timings
            && let Err(error) = report::write_timings_html(path, &summary)
        {
            tracing::warn!("cannot write the timings `{}`: {error}", path.display());
        }
        facts.summary = Some(summary);
    }

    /// Make this run the only one writing `tree_root` and `outputs` (another run into the
    /// same tree waits, whatever its cache), then delete the temporary files a killed run
    /// left there: in the tree they would end up in the ISO, beside the ISO they would stay
    /// forever. The lock is held until the returned file is dropped.
    ///
    /// A build deletes what the recipe does not write in its tree, so isobuild only writes a
    /// tree it made: the marker beside it ([`tree_marker`]) says so, and is also the lock,
    /// so that it lives with the tree rather than with a cache. A folder that is not empty
    /// and has no marker is refused.
    fn claim_tree(&self, tree_root: &Path, outputs: &[PathBuf]) -> Result<std::fs::File, Error> {
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let marker = tree_marker(tree_root)?;
        if !marker.exists() && !is_empty_or_missing(tree_root).map_err(io_error(tree_root))? {
            return Err(Error::Usage(format!(
                "`{}` is not empty and isobuild did not make it (there is no `{}` beside it); a build deletes every file of its tree that the recipe does not write, so it only writes a tree it made\nhint: give a new or empty folder, or delete this one if it is a tree an older isobuild wrote",
                tree_root.display(),
                marker.display()
            )));
        }
        let mut lock = crate::fs::lock_exclusive(&marker, || {
            self.reporter.on_message(&format!(
                "waiting for another isobuild writing `{}`",
                tree_root.display()
            ));
        })
        .map_err(io_error(&marker))?;
        write_marker(&mut lock, tree_root).map_err(io_error(&marker))?;
        let mut removed = crate::fs::remove_temporaries(tree_root).map_err(io_error(tree_root))?;
        for output in outputs {
            removed += crate::fs::remove_temporaries_beside(output).map_err(io_error(output))?;
        }
        if removed > 0 {
            tracing::debug!(
                removed,
                "deleted temporary files left by an interrupted run"
            );
        }
        Ok(lock)
    }

    /// The cache and an HTTP client for the recipe's package repositories.
    fn package_services(&self) -> Result<Arc<PackageServices>, Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("isobuild/", env!("CARGO_PKG_VERSION")));
        if let Some(timeout) = self.settings.http_timeout {
            builder = builder.read_timeout(timeout);
        }
        let http = builder
            .build()
            .map_err(|error| Error::Setup(crate::engine::render_chain(&error)))?;
        Ok(Arc::new(PackageServices {
            store: Store::open(&self.settings.cache_dir)?,
            http,
            reporter: Arc::clone(&self.reporter),
            offline: self.settings.offline,
            mirrors: self
                .settings
                .mirrors
                .iter()
                .filter(|(from, _)| from.contains("://"))
                .map(|(from, to)| (from.clone(), to.clone()))
                .collect(),
        }))
    }

    /// Resolve the recipe's packages online (or, `--locked`, read them from the lock file).
    fn resolve_packages(
        &self,
        services: &Arc<PackageServices>,
        use_lock: bool,
    ) -> Result<Option<PackageSet>, Error> {
        let Some(spec) = &self.recipe.packages else {
            return Ok(None);
        };
        if use_lock && self.settings.locked {
            let path = lock_path(&self.recipe.file);
            let lock = LockFile::read(&path)?;
            let set = lock.packages_for(&self.recipe, &path)?.clone();
            self.record_packages(services, &set)?;
            return Ok(Some(set));
        }
        let (set, notes) = self
            .runtime
            .block_on(crate::plan::packages::resolve_packages(spec, services))?;
        for missing in &notes.unsatisfied {
            let message = format!(
                "nothing provides `{}`, which `{}` requires",
                missing.requirement, missing.package
            );
            self.reporter.on_message(&format!("warning: {message}"));
            self.warnings().push(report::Warning {
                kind: "unsatisfied-requirement",
                subject: Some(missing.package.clone()),
                message,
            });
        }
        if self.settings.output.verbosity > 0 {
            for (nevra, why) in &notes.why {
                self.reporter.on_message(&format!("{nevra}: {why}"));
            }
        }
        self.record_packages(services, &set)?;
        Ok(Some(set))
    }

    /// Tell the cache which blobs this recipe's packages use, so `cache gc` keeps them.
    fn record_packages(&self, services: &PackageServices, set: &PackageSet) -> Result<(), Error> {
        let store = &services.store;
        store.record_packages(&crate::store::PackagesRecord {
            recipe: self.recipe.file.clone(),
            blobs: set.blobs(store),
        })?;
        Ok(())
    }

    fn package_plan(&self) -> Result<Option<PackagePlan>, Error> {
        if self.recipe.packages.is_none() {
            return Ok(None);
        }
        let services = self.package_services()?;
        let Some(set) = self.resolve_packages(&services, true)? else {
            return Ok(None);
        };
        Ok(Some(PackagePlan {
            placer: Arc::new(BlobPlacer::new(services.store.clone())),
            services,
            set,
        }))
    }

    /// `isobuild lock`: resolve every registry image and the packages online and write the
    /// lock file.
    fn lock(&self) -> Result<(), Error> {
        let services = self.image_services(self.settings.offline)?;
        let resolutions = self.resolve(&services, false)?;
        let images = resolve::into_images(resolutions)?;
        let mut lock = LockFile::new(&self.recipe, &images);
        if self.recipe.packages.is_some() {
            let services = self.package_services()?;
            lock.packages = self.resolve_packages(&services, false)?;
        }
        let path = lock_path(&self.recipe.file);
        lock.write(&path)?;
        self.reporter.on_message(&format!(
            "locked {} images{} in {}",
            lock.images.len(),
            lock.packages
                .as_ref()
                .map(|set| format!(" and {} packages", set.rpms.len()))
                .unwrap_or_default(),
            path.display()
        ));
        if self.settings.output.verbosity >= 0 {
            print_stdout(&format!("{}\n", path.display()));
        }
        Ok(())
    }
}

/// Wait for `SIGINT` (Ctrl-C) or `SIGTERM` (`timeout`, systemd, CI runners), and say which
/// came as the error the run ends with: both stop it the same clean way (running tools and
/// commands killed, temporary files deleted), they differ only in the exit code.
async fn stop_signal() -> Error {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return Error::Interrupted;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Error::Interrupted,
        _ = term.recv() => Error::Terminated,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            path: PathBuf::from("(tokio runtime)"),
            source,
        })
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fs_err::metadata(path).is_ok_and(|metadata| metadata.file_type().is_socket())
}

/// The ISO `build` makes for `recipe`, at `output` instead of `iso.output` when given.
fn iso_request(
    recipe: &Recipe,
    output: Option<PathBuf>,
    digest_memo: Option<DigestMemo>,
) -> IsoRequest {
    IsoRequest {
        root: recipe.iso.root.clone(),
        output: output.unwrap_or_else(|| recipe.iso.output.clone()),
        volume_id: recipe.iso.volume_id.clone(),
        epoch: recipe.epoch.unwrap_or(0),
        implant_md5: recipe.iso.implant_md5,
        sha256sum: recipe.iso.sha256sum.clone(),
        digest_memo,
    }
}

/// The recipe's own outputs were checked at load; `-o`, `--report` and `--timings` come from
/// the command line, so they are checked here, before anything runs: none may overwrite an
/// input or another output, and the ISO cannot replace a folder.
fn check_outputs(
    recipe: &Recipe,
    request: &IsoRequest,
    settings: &BuildSettings,
) -> Result<(), Error> {
    let paths = recipe::HostPaths::of(recipe);
    let mut outputs: Vec<(String, &Path)> = vec![(
        if request.output == recipe.iso.output {
            "iso.output".to_owned()
        } else {
            format!("-o {}", request.output.display())
        },
        &request.output,
    )];
    if let Some(sha256sum) = &request.sha256sum {
        outputs.push(("iso.sha256sum".to_owned(), sha256sum));
    }
    let sbom = recipe.iso.sbom.then(|| sbom_path(&request.output));
    if let Some(sbom) = &sbom {
        outputs.push(("iso.sbom".to_owned(), sbom));
    }
    for (flag, path) in [
        ("--report", &settings.report),
        ("--timings", &settings.timings),
    ] {
        if let Some(path) = path {
            outputs.push((format!("{flag} {}", path.display()), path));
        }
    }
    for (index, (what, path)) in outputs.iter().enumerate() {
        let clash = outputs[..index]
            .iter()
            .find(|(_, other)| other == path)
            .map(|(other, _)| format!("`{other}` writes it too"))
            .or_else(|| paths.output_clash(path));
        if let Some(clash) = clash {
            return Err(Error::Usage(format!(
                "`{what}` would overwrite `{}`: {clash}",
                path.display()
            )));
        }
    }
    if request.output.is_dir() {
        return Err(Error::Usage(format!(
            "the ISO `{}` is an existing folder; give the path of a file",
            request.output.display()
        )));
    }
    Ok(())
}

/// Where `build` writes the SBOM of the ISO at `iso`: beside it, `<file name>.cdx.json`.
pub fn sbom_path(iso: &Path) -> PathBuf {
    let mut name = iso.as_os_str().to_owned();
    name.push(".cdx.json");
    PathBuf::from(name)
}

/// Write the SBOM of `iso` to `path`, unless the one there is newer than the ISO (then the
/// ISO was not remade, and neither is its SBOM: reading a large ISO again takes seconds).
/// Whether it wrote one.
fn write_sbom(
    iso: &Path,
    path: &Path,
    upstream: &LockFile,
    cache_dir: &Path,
) -> Result<bool, Error> {
    let modified = |path: &Path| fs_err::metadata(path).and_then(|m| m.modified()).ok();
    if let (Some(sbom), Some(iso)) = (modified(path), modified(iso))
        && sbom >= iso
    {
        return Ok(false);
    }
    // The ISO task remembered its sha256: the SBOM does not read the whole ISO again.
    let memo = DigestMemo::in_cache(cache_dir);
    let mut inventory = crate::inspect::inspect(iso, None, Some(&memo))?.inventory;
    crate::inspect::add_upstream(&mut inventory, upstream);
    crate::fs::write_atomic(path, &crate::inspect::sbom::cyclonedx(&inventory), 0o644).map_err(
        |source| Error::Io {
            path: path.to_owned(),
            source,
        },
    )?;
    Ok(true)
}

/// `isobuild graph`: the plan of a build, with images resolved from the cache only (an image
/// the cache cannot resolve shows as one unresolved node).
fn graph(path: &Path, format: GraphFormat, set: &[String]) -> Result<(), Error> {
    let overrides = settings::resolve_overrides(set)?;
    let path = settings::current_dir()?.join(path);
    let recipe = recipe::load(&path, &overrides)?;
    let images = if recipe.images.list.is_empty() {
        None
    } else {
        let cache_dir = settings::resolve_cache_dir(&settings::current_dir()?, None)?;
        let store = Store::open(&cache_dir)?;
        let reporter: Arc<dyn Reporter> = Arc::new(report::NullReporter);
        let client = RegistryClient::builder()
            .mirrors(recipe.mirrors.clone())
            .offline(true)
            .build()
            .map_err(|error| Error::Setup(crate::engine::render_chain(&error)))?;
        let client = Arc::new(client);
        let options = ResolveOptions {
            platform: &recipe.images.platform,
            ignore_pins: true,
            locked: None,
            offline: false,
            verbose: false,
        };
        let resolutions = runtime()?.block_on(resolve::resolve_images(
            &recipe, &client, &store, &reporter, options,
        ))?;
        Some(ImagePlan {
            services: Arc::new(ImageServices {
                placer: BlobPlacer::new(store.clone()),
                store,
                client,
                reporter,
                daemon: None,
            }),
            resolutions,
        })
    };
    let packages = graph_packages(&recipe)?;
    let plan = Plan::new(
        &recipe,
        &PlanOptions {
            tree_root: recipe.iso.root.clone(),
            iso: Some(iso_request(&recipe, None, None)),
            images,
            packages,
            scope: Scope::Tree,
            reporter: Arc::new(report::NullReporter),
        },
    )
    .map_err(|source| Error::Plan {
        recipe: recipe.file.clone(),
        source,
    })?;
    let text = match format {
        GraphFormat::Dot => plan.to_dot(),
        GraphFormat::Json => plan.to_json(),
    };
    print_stdout(&text);
    Ok(())
}

/// The packages `graph` shows: the lock file's, when there is one that matches the recipe
/// (resolving needs the network, which `graph` never uses); without it no package task is
/// shown.
fn graph_packages(recipe: &Recipe) -> Result<Option<PackagePlan>, Error> {
    if recipe.packages.is_none() {
        return Ok(None);
    }
    let path = lock_path(&recipe.file);
    let Ok(lock) = LockFile::read(&path) else {
        return Ok(None);
    };
    let set = lock.packages_for(recipe, &path)?.clone();
    let cache_dir = settings::resolve_cache_dir(&settings::current_dir()?, None)?;
    let store = Store::open(&cache_dir)?;
    let services = Arc::new(PackageServices {
        store: store.clone(),
        http: reqwest::Client::new(),
        reporter: Arc::new(report::NullReporter),
        offline: true,
        mirrors: std::collections::BTreeMap::new(),
    });
    Ok(Some(PackagePlan {
        placer: Arc::new(BlobPlacer::new(store)),
        services,
        set,
    }))
}

/// `isobuild cache ls|gc|path`.
fn cache(command: CacheCommand, dir: &Path) -> Result<(), Error> {
    match command {
        CacheCommand::Path => print_stdout(&format!("{}\n", dir.display())),
        CacheCommand::Ls => {
            let store = Store::open(dir)?;
            let listing = store.ls()?;
            let mut text = String::new();
            for tag in &listing.tags {
                text.push_str(&format!("{}  {}\n", tag.reference, tag.digest));
            }
            text.push_str(&format!(
                "{}: {} tags, {} blobs, {} bytes\n",
                dir.display(),
                listing.tags.len(),
                listing.blobs.len(),
                listing.blob_bytes()
            ));
            print_stdout(&text);
        }
        CacheCommand::Gc => {
            let store = Store::open_exclusive(dir)?;
            let mut keep = store.reachable_from_tags()?;
            keep.extend(store.reachable_from_packages()?);
            let report = store.gc(&keep)?;
            // Task fingerprints only make runs faster; after a gc they may point at blobs
            // that are gone, so they are dropped and the next run checks everything again.
            let state = dir.join("state-v1");
            if state.exists() {
                fs_err::remove_dir_all(&state).map_err(|source| Error::Io {
                    path: state.clone(),
                    source,
                })?;
            }
            print_stdout(&format!(
                "removed {} blobs and {} partial downloads, {} bytes freed\n",
                report.removed_blobs, report.removed_partials, report.freed_bytes
            ));
            if report.removed_records + report.removed_memos > 0 || report.removed_builds {
                print_stdout(&format!(
                    "removed {} package records of recipes that are gone, {} stale digest memo entries{}\n",
                    report.removed_records,
                    report.removed_memos,
                    if report.removed_builds {
                        " and the image builds"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    Ok(())
}

/// The file beside `tree_root` that marks it as a tree isobuild made
/// (`<parent>/.<name>.isobuild-tree`) and that runs writing it lock. Beside rather than
/// inside, so it never ends up in the ISO.
fn tree_marker(tree_root: &Path) -> Result<PathBuf, Error> {
    match (tree_root.parent(), tree_root.file_name()) {
        (Some(parent), Some(name)) => {
            Ok(parent.join(format!(".{}.isobuild-tree", name.to_string_lossy())))
        }
        _ => Err(Error::Usage(format!(
            "`{}` cannot be an ISO tree: it has no parent folder",
            tree_root.display()
        ))),
    }
}

/// Say in the marker what it is for, for whoever finds it.
fn write_marker(lock: &mut std::fs::File, tree_root: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let text = format!(
        "isobuild made the ISO tree `{}` and deletes in it whatever a recipe does not write.\n",
        tree_root
            .file_name()
            .map(|name| name.to_string_lossy())
            .unwrap_or_default()
    );
    if lock.metadata()?.len() != text.len() as u64 {
        lock.set_len(0)?;
        lock.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// Whether `dir` holds nothing (or does not exist). Anything else there, a file where the
/// folder should be included, is not.
fn is_empty_or_missing(dir: &Path) -> std::io::Result<bool> {
    match fs_err::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
        Ok(metadata) if metadata.is_dir() => Ok(fs_err::read_dir(dir)?.next().is_none()),
        Ok(_) => Ok(false),
    }
}

/// Where the fingerprints of this recipe's tasks live when its tree is written to `tree_root`.
fn freshness_dir(cache_dir: &Path, recipe: &Recipe, tree_root: &Path, scope: Scope) -> PathBuf {
    let mut hasher = Sha256::new();
    hasher.update(recipe.file.as_os_str().as_encoded_bytes());
    hasher.update([0]);
    hasher.update(tree_root.as_os_str().as_encoded_bytes());
    hasher.update([u8::from(scope == Scope::Fetch)]);
    let id = hex::encode(hasher.finalize());
    cache_dir.join("state-v1").join(&id[..32])
}

/// What a run learnt on the way, for `--report`.
#[derive(Default)]
struct RunFacts {
    summary: Option<report::RunSummary>,
    images: Vec<report::ImageInfo>,
    iso: Option<report::IsoInfo>,
    /// The bytes of the distinct blobs the resolved images need that were in the cache
    /// before the run.
    cached_blob_bytes: u64,
}

/// Bytes fetched from the network by the tasks of `summary`.
fn downloaded_bytes(summary: &report::RunSummary) -> u64 {
    summary
        .tasks
        .iter()
        .filter(|task| matches!(task.kind, "pull-blob" | "rpm"))
        .map(|task| task.bytes)
        .sum()
}

/// The report of a run that ended with `error` (or succeeded).
fn run_report(
    command: &'static str,
    recipe_path: &Path,
    recipe: Option<&Recipe>,
    facts: RunFacts,
    warnings: Vec<report::Warning>,
    error: Option<&Error>,
) -> report::RunReport {
    let (outcome, exit_code) = match error {
        None => (report::Outcome::Ok, 0),
        Some(error @ (Error::Interrupted | Error::Terminated)) => {
            (report::Outcome::Interrupted, error.exit_code())
        }
        Some(error) => (report::Outcome::Failed, error.exit_code()),
    };
    let downloaded = facts.summary.as_ref().map_or(0, downloaded_bytes);
    let written = facts.summary.as_ref().map_or(0, |summary| {
        summary.tasks.iter().map(|task| task.bytes).sum()
    });
    report::RunReport {
        command,
        outcome,
        exit_code,
        error: error.map(ToString::to_string),
        recipe: report::RecipeInfo {
            path: recipe_path.to_owned(),
            name: recipe.map(|recipe| recipe.name.clone()),
            version: recipe.map(|recipe| recipe.version.clone()),
        },
        iso: facts.iso,
        images: facts.images,
        warnings,
        bytes: report::ByteCounts {
            downloaded,
            cached: facts.cached_blob_bytes,
            written,
        },
        summary: facts.summary,
    }
}

/// `--report` for a run that stopped before its recipe was loaded. Best effort: the error is
/// what the run says.
fn early_report(command: &'static str, settings: &BuildSettings, error: &Error) {
    if let Some(path) = &settings.report {
        let report = run_report(
            command,
            &settings.recipe,
            None,
            RunFacts::default(),
            Vec::new(),
            Some(error),
        );
        if let Err(error) = report::write_json_report(path, &report) {
            tracing::warn!("cannot write the report `{}`: {error}", path.display());
        }
    }
}

/// Each registry image as resolved, for the report.
fn image_infos(recipe: &Recipe, resolutions: &[Resolution]) -> Vec<report::ImageInfo> {
    recipe
        .images
        .list
        .iter()
        .zip(resolutions)
        .filter_map(|(entry, resolution)| {
            let Resolution::Resolved(image) = resolution else {
                return None;
            };
            Some(report::ImageInfo {
                name: entry.name.clone(),
                tag: entry.tag.clone(),
                reference: image.reference.to_string(),
                platform: recipe.images.platform.to_string(),
                digest: image.manifest_digest.to_string(),
                index_digest: image.index_digest.as_ref().map(ToString::to_string),
                mirror: image.served_by.clone(),
            })
        })
        .collect()
}

/// The bytes of every distinct blob the images need, the bytes of those not in the cache,
/// and how many those are.
fn blob_bytes(resolutions: &[Resolution], store: &Store) -> (u64, u64, usize) {
    let mut seen = std::collections::BTreeSet::new();
    let (mut needed, mut missing, mut count) = (0, 0, 0);
    for resolution in resolutions {
        if let Resolution::Resolved(image) = resolution {
            for blob in image.blobs() {
                if seen.insert(blob.digest.clone()) {
                    // Sizes come from manifests: a hostile one may claim anything.
                    needed = u64::saturating_add(needed, blob.size);
                    if !store.has_blob(&blob.digest) {
                        missing = u64::saturating_add(missing, blob.size);
                        count += 1;
                    }
                }
            }
        }
    }
    (needed, missing, count)
}

/// `12 tasks: 3 ran, 9 up to date in 4.20s; 1.2 GiB downloaded, 300.0 MiB from the cache,
/// 1.5 GiB written`.
fn summary_line(summary: &report::RunSummary, cached: u64) -> String {
    let ran = summary
        .tasks
        .iter()
        .filter(|task| matches!(task.status, report::TaskStatus::Ran { .. }))
        .count();
    let fresh = summary
        .tasks
        .iter()
        .filter(|task| task.status == report::TaskStatus::UpToDate)
        .count();
    let written: u64 = summary.tasks.iter().map(|task| task.bytes).sum();
    let downloaded = downloaded_bytes(summary);
    let seconds = summary.duration.map_or(0.0, |d| d.as_secs_f64());
    let mut line = format!(
        "{} tasks: {ran} ran, {fresh} up to date in {seconds:.2}s;",
        summary.tasks.len()
    );
    if downloaded > 0 || cached > 0 {
        line.push_str(&format!(
            " {} downloaded, {} from the cache,",
            report::human_bytes(downloaded),
            report::human_bytes(cached)
        ));
    }
    line.push_str(&format!(" {} written", report::human_bytes(written)));
    line
}

/// The ISO at `path`: its size and sha256 (remembered by the ISO task in the digest memo, so
/// a large ISO is not read again; hashed when the memo does not have it).
fn iso_info(path: &Path, memo: Option<&DigestMemo>) -> Result<report::IsoInfo, Error> {
    let io_error = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let size = fs_err::metadata(path).map_err(io_error)?.len();
    let remembered = memo.and_then(|memo| {
        let identity = crate::store::FileIdentity::of(path).ok()?;
        memo.lookup(&identity)
    });
    let sha256 = match remembered {
        Some(digest) => digest,
        None => crate::reference::Digest::of_file(path).map_err(io_error)?,
    };
    Ok(report::IsoInfo {
        path: path.to_owned(),
        size,
        sha256: sha256.to_string(),
    })
}

/// The last line of a build, on stdout, as cargo ends with `Finished`: what was made, how big,
/// its sha256 (the same as `SHA256SUM` and `sha256sum` say).
fn finished_line(iso: &report::IsoInfo, took: Option<std::time::Duration>) -> String {
    format!(
        "    Finished {} ({}, {}) in {:.2}s\n",
        iso.path.display(),
        report::human_bytes(iso.size),
        iso.sha256,
        took.map_or(0.0, |d| d.as_secs_f64())
    )
}

/// `isobuild verify DIR|ISO`: check every image folder and the registry rules of a tree.
fn verify(target: &Path, output: OutputSettings) -> Result<(), Error> {
    let io_error = |source| Error::Io {
        path: target.to_owned(),
        source,
    };
    // An ISO is checked through the tree it holds, extracted into a temporary folder.
    let extracted = if target.is_file() {
        let scratch = tempfile::Builder::new()
            .prefix("isobuild-verify-")
            .tempdir()
            .map_err(io_error)?;
        let tree = scratch.path().join("tree");
        crate::iso::extract_iso(target, &tree).map_err(|error| Error::VerifyFailed {
            target: target.to_owned(),
            problems: vec![format!("cannot read the ISO: {error}")],
        })?;
        Some((scratch, tree))
    } else if target.is_dir() {
        None
    } else {
        return Err(io_error(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such ISO file or folder",
        )));
    };
    let tree = extracted
        .as_ref()
        .map_or(target, |(_, tree)| tree.as_path());
    match crate::layout::verify::verify_tree(tree) {
        Ok(summary) => {
            if output.verbosity >= 0 {
                print_stdout(&format!(
                    "{}: {} images, {} blobs ({} bytes) and {} rule files verified\n",
                    target.display(),
                    summary.images,
                    summary.blobs_checked,
                    summary.bytes_checked,
                    summary.rule_files
                ));
            }
            Ok(())
        }
        Err(problems) => Err(Error::VerifyFailed {
            target: target.to_owned(),
            problems: problems.iter().map(ToString::to_string).collect(),
        }),
    }
}

/// `isobuild inspect ISO|DIR|LOCKFILE`. An ISO's sha256 comes from the cache's digest memo
/// when it has this very file; without a cache folder, the ISO is simply hashed.
fn inspect(
    target: &Path,
    format: InspectFormat,
    lock: Option<&Path>,
    cache_dir: Option<&Path>,
    output: OutputSettings,
) -> Result<(), Error> {
    let memo = match settings::resolve_cache_dir(&settings::current_dir()?, cache_dir) {
        Ok(dir) => Some(DigestMemo::in_cache(&dir)),
        Err(error) => {
            tracing::debug!("no digest memo: {error}");
            None
        }
    };
    let inspected = crate::inspect::inspect(target, lock, memo.as_ref())?;
    if output.verbosity >= 1
        && let Some(origin) = inspected.iso_digest
    {
        let reporter = report::reporter_for(output);
        let how = match origin {
            DigestOrigin::Memo => "from the digest memo (not re-hashed)",
            DigestOrigin::Hashed { remembered: true } => "hashed, now in the digest memo",
            DigestOrigin::Hashed { remembered: false } => "hashed (not remembered)",
        };
        reporter.on_message(&format!("sha256 of {}: {how}", target.display()));
    }
    let inventory = inspected.inventory;
    let text = match format {
        InspectFormat::Text => crate::inspect::render::inventory_text(&inventory),
        InspectFormat::Json => pretty_json(&inventory),
        InspectFormat::Cyclonedx => {
            String::from_utf8_lossy(&crate::inspect::sbom::cyclonedx(&inventory)).into_owned()
        }
    };
    print_stdout(&text);
    Ok(())
}

/// `isobuild diff OLD NEW`.
fn diff(old: &Path, new: &Path, format: DiffFormat, exit_code: bool) -> Result<(), Error> {
    let old_inventory = crate::inspect::inspect_contents(old)?;
    let new_inventory = crate::inspect::inspect_contents(new)?;
    let mut names = (
        side_name(old, &old_inventory, false),
        side_name(new, &new_inventory, false),
    );
    // Two builds of one release, both `demo.iso`: the paths as typed tell them apart.
    if names.0 == names.1 {
        names = (
            side_name(old, &old_inventory, true),
            side_name(new, &new_inventory, true),
        );
    }
    let diff = crate::inspect::diff::diff(&old_inventory, &new_inventory, &names.0, &names.1);
    let text = match format {
        DiffFormat::Text => crate::inspect::render::diff_text(&diff),
        DiffFormat::Markdown => crate::inspect::render::diff_markdown(&diff),
        DiffFormat::Json => pretty_json(&diff),
    };
    print_stdout(&text);
    if exit_code && !diff.is_empty() {
        return Err(Error::Differ);
    }
    Ok(())
}

/// What a side of a diff is called: its product name and version when it has a
/// `product.txt`, else its file name; with `whole_path`, the path as given instead of the
/// file name.
fn side_name(path: &Path, inventory: &crate::inspect::Inventory, whole_path: bool) -> String {
    let product = inventory.product.as_ref();
    let field = |key: &str| product.and_then(|product| product.get(key));
    let file = match path.file_name() {
        Some(name) if !whole_path => name.to_string_lossy().into_owned(),
        _ => path.display().to_string(),
    };
    match (field("NAME"), field("VERSION")) {
        (Some(name), Some(version)) => format!("{name} {version} (`{file}`)"),
        _ => format!("`{file}`"),
    }
}

fn pretty_json(value: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("inventories always serialize");
    text.push('\n');
    text
}
