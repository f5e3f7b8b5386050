//! One function per subcommand: load what it needs, call the layers, report.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::cli::{CacheCommand, Cli, Command, GraphFormat};
use crate::engine::{Engine, EngineOptions, FreshnessStore, RunOutcome};
use crate::error::Error;
use crate::iso::IsoRequest;
use crate::plan::{Plan, PlanOptions};
use crate::recipe::{self, Recipe};
use crate::report::{self, Reporter};
use crate::settings::{self, BuildSettings, OutputSettings};

/// Run the command the user typed.
pub fn dispatch(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Build { build, output } => {
            let settings = BuildSettings::resolve(&build)?;
            let recipe = load_recipe(&settings)?;
            let output = output.map(|path| settings::current_dir().map(|cwd| cwd.join(path)));
            let request = iso_request(&recipe, output.transpose()?);
            let tree_root = recipe.iso.root.clone();
            run_plan(&settings, &recipe, &tree_root, Some(request))
        }
        Command::Layout { build, dir } => {
            let settings = BuildSettings::resolve(&build)?;
            let recipe = load_recipe(&settings)?;
            let dir = settings::current_dir()?.join(dir);
            run_plan(&settings, &recipe, &dir, None)
        }
        Command::Fetch { .. } | Command::Lock { .. } => Err(Error::Unsupported(
            "image pulls are not available yet in this build of isobuild".into(),
        )),
        Command::Verify { target, output } => verify(&target, OutputSettings::resolve(&output)),
        Command::Graph {
            recipe: path,
            format,
            set,
        } => {
            let overrides = settings::resolve_overrides(&set)?;
            let path = settings::current_dir()?.join(path);
            let recipe = recipe::load(&path, &overrides)?;
            let plan = plan_for(
                &recipe,
                recipe.iso.root.clone(),
                Some(iso_request(&recipe, None)),
            )?;
            let text = match format {
                GraphFormat::Dot => plan.to_dot(),
                GraphFormat::Json => plan.to_json(),
            };
            print_stdout(&text);
            Ok(())
        }
        Command::Cache { command, cache_dir } => {
            let dir = settings::resolve_cache_dir(&settings::current_dir()?, cache_dir.as_deref())?;
            match command {
                CacheCommand::Path => {
                    print_stdout(&format!("{}\n", dir.display()));
                    Ok(())
                }
                CacheCommand::Ls | CacheCommand::Gc => Err(Error::Unsupported(
                    "`cache ls` and `cache gc` are not available yet in this build of isobuild"
                        .into(),
                )),
            }
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_stdout(text: &str) {
    print!("{text}");
}

/// The ISO `build` makes for `recipe`, at `output` instead of `iso.output` when given.
fn iso_request(recipe: &Recipe, output: Option<PathBuf>) -> IsoRequest {
    IsoRequest {
        root: recipe.iso.root.clone(),
        output: output.unwrap_or_else(|| recipe.iso.output.clone()),
        volume_id: recipe.iso.volume_id.clone(),
        epoch: recipe.epoch.unwrap_or(0),
        implant_md5: recipe.iso.implant_md5,
        sha256sum: recipe.iso.sha256sum.clone(),
    }
}

fn load_recipe(settings: &BuildSettings) -> Result<Recipe, Error> {
    let mut recipe = recipe::load(&settings.recipe, &settings.overrides)?;
    if let Some(epoch) = settings.source_date_epoch {
        recipe.epoch = Some(epoch);
    }
    if let Some(platform) = &settings.platform {
        recipe.images.platform = platform.clone();
    }
    Ok(recipe)
}

fn plan_for(recipe: &Recipe, tree_root: PathBuf, iso: Option<IsoRequest>) -> Result<Plan, Error> {
    if !recipe.images.list.is_empty() {
        return Err(Error::Unsupported(format!(
            "recipe `{}` lists images, and image pulls are not available yet in this build of isobuild",
            recipe.file.display()
        )));
    }
    Plan::new(recipe, &PlanOptions { tree_root, iso }).map_err(|source| Error::Cycle {
        recipe: recipe.file.clone(),
        source,
    })
}

/// Where the fingerprints of this recipe's tasks live when its tree is written to `tree_root`.
fn freshness_dir(cache_dir: &Path, recipe: &Recipe, tree_root: &Path) -> PathBuf {
    let mut hasher = Sha256::new();
    hasher.update(recipe.file.as_os_str().as_encoded_bytes());
    hasher.update([0]);
    hasher.update(tree_root.as_os_str().as_encoded_bytes());
    let id = hex::encode(hasher.finalize());
    cache_dir.join("state-v1").join(&id[..32])
}

fn run_plan(
    settings: &BuildSettings,
    recipe: &Recipe,
    tree_root: &Path,
    iso: Option<IsoRequest>,
) -> Result<(), Error> {
    let plan = plan_for(recipe, tree_root.to_owned(), iso)?;
    let reporter = report::reporter_for(settings.output.progress, settings.output.verbosity);
    let freshness = FreshnessStore::new(freshness_dir(&settings.cache_dir, recipe, tree_root));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            path: PathBuf::from("(tokio runtime)"),
            source,
        })?;
    let cancel = CancellationToken::new();
    let engine = Engine::new(
        EngineOptions {
            jobs: settings.jobs,
            network_jobs: settings.network_jobs,
            keep_going: settings.keep_going,
        },
        freshness,
        Arc::clone(&reporter),
        cancel.clone(),
    );
    let (outcome, summary) = runtime.block_on(async {
        let interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupt.cancel();
            }
        });
        engine.run(&plan.graph).await
    });
    if let Some(path) = &settings.report {
        report::write_json_report(path, &summary).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &settings.timings {
        report::write_timings_html(path, &summary).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    summarize(&*reporter, &summary);
    match outcome {
        RunOutcome::Success => Ok(()),
        RunOutcome::Failed(failures) => Err(Error::BuildFailed(failures)),
        RunOutcome::Cancelled => Err(Error::Interrupted),
    }
}

fn summarize(reporter: &dyn Reporter, summary: &report::RunSummary) {
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
    let seconds = summary.duration.map_or(0.0, |d| d.as_secs_f64());
    reporter.on_message(&format!(
        "{} tasks: {ran} ran, {fresh} up to date in {seconds:.2}s",
        summary.tasks.len()
    ));
}

/// `isobuild verify DIR`: check every image folder and the registry rules of a tree.
fn verify(target: &Path, output: OutputSettings) -> Result<(), Error> {
    let io_error = |source| Error::Io {
        path: target.to_owned(),
        source,
    };
    // An ISO is checked through the tree it holds, extracted beside nothing the user owns.
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
