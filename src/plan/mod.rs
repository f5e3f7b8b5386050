//! The plan: a recipe turned into a sealed graph of typed tasks.
//!
//! Nodes are [`Task`]s; an edge `a → b` means `b` waits for `a`. Edges come from `after:` in the
//! recipe and from paths: a `files:` entry whose source lies inside a command task's declared
//! outputs waits for that task. The plan is sealed (checked acyclic, frozen) before it is
//! returned, so [`crate::engine`] only ever sees a graph that can run.

mod built_repo;
mod command;
pub mod containers;
mod files;
pub mod images;
mod iso;
pub mod lock;
pub mod packages;
pub mod resolve;
mod task;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

pub use command::describe_status;
pub use task::{Task, TaskError};

use crate::engine::{CycleError, JobGraph};
use crate::layout::LayoutError;
use crate::recipe::{ImageContext, Recipe, TemplateContext};
use crate::reference::Digest;
use images::ImageServices;
use resolve::Resolution;

/// A sealed task graph and what it was made from.
pub struct Plan {
    pub graph: JobGraph<Task>,
}

/// What a plan does with the recipe's images.
pub struct ImagePlan {
    pub services: Arc<ImageServices>,
    /// One per image of the recipe, in order.
    pub resolutions: Vec<Resolution>,
}

/// What a plan does with the recipe's packages: the resolved (or locked) set.
pub struct PackagePlan {
    pub services: Arc<packages::PackageServices>,
    pub set: packages::PackageSet,
    pub placer: Arc<crate::layout::BlobPlacer>,
}

/// How much of the recipe a plan covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only fill the cache with the registry images' blobs (`fetch`).
    Fetch,
    /// Write the whole ISO tree (`layout`, and `build` with an ISO).
    Tree,
}

/// Where and what the plan writes.
pub struct PlanOptions {
    /// The ISO tree's root (the recipe's `iso.root`, or the `layout` command's folder).
    pub tree_root: PathBuf,
    /// Make this ISO once the tree is written (`build`); `None` for `layout`.
    pub iso: Option<crate::iso::IsoRequest>,
    /// The images; `None` when the recipe lists none.
    pub images: Option<ImagePlan>,
    /// The RPMs; `None` when the recipe has no `packages:`.
    pub packages: Option<PackagePlan>,
    pub scope: Scope,
    /// Where tasks say what the user should know (the ISO task's pruning notice).
    pub reporter: Arc<dyn crate::report::Reporter>,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Cycle(#[from] CycleError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("image `{image}`: {message}")]
    Build { image: String, message: String },
    #[error(
        "the registry rules need every image folder under one served folder, but `images.path` puts them under several: {0}"
    )]
    ServedRoots(String),
}

impl Plan {
    /// Build and seal the plan for `recipe`.
    pub fn new(recipe: &Recipe, options: &PlanOptions) -> Result<Self, PlanError> {
        let mut graph = DiGraph::new();
        let mut by_task_name: BTreeMap<&str, NodeIndex> = BTreeMap::new();

        let inputs = options
            .images
            .as_ref()
            .map(|images| image_inputs(recipe, images))
            .unwrap_or_default();
        // Container tasks waiting for an image: (task node, image position).
        let mut waiting = Vec::new();
        for spec in &recipe.tasks {
            let task = match (&spec.container, &options.images) {
                (Some(container), Some(images)) => {
                    let position = image_position(recipe, &container.image);
                    let input = position.and_then(|p| inputs[p].1.clone());
                    let Some((position, input)) = position.zip(input) else {
                        return Err(PlanError::Build {
                            image: container.image.clone(),
                            message: format!(
                                "task `{}` cannot start from it: it was not resolved",
                                spec.name
                            ),
                        });
                    };
                    if options.scope == Scope::Fetch {
                        continue;
                    }
                    waiting.push((graph.node_count(), position));
                    Task::Container(
                        containers::ContainerJob::new(
                            spec.clone(),
                            container.clone(),
                            input,
                            container.image.clone(),
                            recipe.base_dir.clone(),
                            recipe.epoch,
                            recipe.images.platform.clone(),
                            Arc::clone(&images.services),
                        )
                        .with_others(
                            recipe
                                .tasks
                                .iter()
                                .filter(|other| other.name != spec.name)
                                .flat_map(|other| other.outputs.iter().cloned())
                                .collect(),
                        ),
                    )
                }
                _ => Task::Command(command::CommandJob::new(
                    spec.clone(),
                    recipe.base_dir.clone(),
                    recipe.epoch,
                )),
            };
            let node = graph.add_node(task);
            by_task_name.insert(spec.name.as_str(), node);
        }
        for spec in &recipe.tasks {
            for before in &spec.after {
                if let Some(&before) = by_task_name.get(before.as_str()) {
                    graph.add_edge(before, by_task_name[spec.name.as_str()], ());
                }
            }
        }
        let mut digests = vec![None; recipe.images.list.len()];
        if let Some(images) = &options.images {
            let ready;
            (digests, ready) =
                add_images(&mut graph, recipe, options, images, &inputs, &by_task_name)?;
            for (task, position) in waiting {
                for &node in &ready[position] {
                    graph.add_edge(node, NodeIndex::new(task), ());
                }
            }
        }
        if let (Some(plan), Some(spec)) = (&options.packages, &recipe.packages) {
            add_packages(&mut graph, spec, plan, options, recipe.epoch.unwrap_or(0));
            if options.scope != Scope::Fetch {
                add_built_repos(&mut graph, recipe, spec, options, &by_task_name);
            }
        }
        if options.scope == Scope::Fetch {
            return Ok(Self {
                graph: JobGraph::seal(graph)?,
            });
        }
        let context = Arc::new(template_context(recipe, &digests));
        for entry in &recipe.files {
            let task = if entry.template {
                Task::Template(files::TemplateJob::new(
                    entry.clone(),
                    options.tree_root.clone(),
                    recipe.base_dir.clone(),
                    Arc::clone(&context),
                ))
            } else {
                Task::Copy(files::CopyJob::new(
                    entry.clone(),
                    options.tree_root.clone(),
                    recipe.base_dir.clone(),
                ))
            };
            let node = graph.add_node(task);
            for spec in &recipe.tasks {
                let produced = spec
                    .outputs
                    .iter()
                    .any(|output| entry.src.starts_with(output) || output.starts_with(&entry.src));
                if produced || entry.after.contains(&spec.name) {
                    graph.add_edge(by_task_name[spec.name.as_str()], node, ());
                }
            }
        }
        if let Some(request) = &options.iso {
            let writers: Vec<NodeIndex> = graph.node_indices().collect();
            let mut claim = TreeClaim::default();
            for task in graph.node_weights() {
                task.claim(&mut claim);
            }
            let store = options
                .images
                .as_ref()
                .map(|images| images.services.store.clone());
            let iso = graph.add_node(Task::Iso(iso::IsoJob::new(
                request.clone(),
                claim,
                store,
                Arc::clone(&options.reporter),
            )));
            for writer in writers {
                graph.add_edge(writer, iso, ());
            }
        }
        Ok(Self {
            graph: JobGraph::seal(graph)?,
        })
    }

    /// Graphviz DOT, one node per task labelled with its kind and name.
    pub fn to_dot(&self) -> String {
        let mut dot = String::from(
            "digraph isobuild {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for (index, task) in self.graph.jobs().enumerate() {
            use crate::engine::Job as _;
            dot.push_str(&format!(
                "  n{index} [label=\"{}\\n{}\"];\n",
                task.kind(),
                dot_escape(&task.name())
            ));
        }
        for (before, after) in self.graph.edges() {
            dot.push_str(&format!("  n{before} -> n{after};\n"));
        }
        dot.push_str("}\n");
        dot
    }

    /// JSON: `{"nodes": [{"id", "name", "kind"}], "edges": [[before, after]]}`.
    pub fn to_json(&self) -> String {
        use crate::engine::Job as _;
        #[derive(Serialize)]
        struct Node {
            id: usize,
            name: String,
            kind: &'static str,
        }
        #[derive(Serialize)]
        struct Graph {
            nodes: Vec<Node>,
            edges: Vec<(usize, usize)>,
        }
        let graph = Graph {
            nodes: self
                .graph
                .jobs()
                .enumerate()
                .map(|(id, task)| Node {
                    id,
                    name: task.name(),
                    kind: task.kind(),
                })
                .collect(),
            edges: self.graph.edges().collect(),
        };
        let mut json = serde_json::to_string_pretty(&graph).unwrap_or_default();
        json.push('\n');
        json
    }
}

/// What the plan's tasks write in the ISO tree: exact files, and folders owned whole (their
/// content is only known when the task runs). Anything else in the tree is stale, from an
/// earlier version of the recipe, and is removed before the ISO is made.
#[derive(Debug, Clone, Default)]
pub struct TreeClaim {
    /// `/`-separated paths relative to the tree root.
    pub files: BTreeSet<String>,
    pub dirs: BTreeSet<String>,
}

impl TreeClaim {
    /// Whether `relative` (a file) is written by some task.
    pub fn owns(&self, relative: &str) -> bool {
        self.files.contains(relative)
            || self.dirs.iter().any(|dir| {
                relative
                    .strip_prefix(dir.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            })
    }
}

/// One download task per RPM, and (for a tree) one task per shipped repository that waits
/// for its RPMs.
fn add_packages(
    graph: &mut DiGraph<Task, ()>,
    spec: &crate::recipe::Packages,
    plan: &PackagePlan,
    options: &PlanOptions,
    epoch: i64,
) {
    for repo in &spec.repos {
        let rpms: Vec<&packages::ShippedRpm> = plan
            .set
            .rpms
            .iter()
            .filter(|rpm| rpm.repo == repo.id)
            .collect();
        let locked = plan.set.repos.iter().find(|locked| locked.id == repo.id);
        // A repository that ships something is checked against its pin before any of its
        // RPMs is downloaded.
        let metadata = locked
            .filter(|_| !rpms.is_empty() || repo.dest.is_some())
            .map(|locked| {
                graph.add_node(Task::RpmMetadata(packages::MetadataJob::new(
                    repo.clone(),
                    locked.clone(),
                    Arc::clone(&plan.services),
                )))
            });
        let keyring = packages::RpmJob::keyring_cell();
        let downloads: Vec<NodeIndex> = rpms
            .iter()
            .map(|rpm| {
                let node = graph.add_node(Task::Rpm(packages::RpmJob::new(
                    (*rpm).clone(),
                    repo,
                    locked,
                    Arc::clone(&keyring),
                    Arc::clone(&plan.services),
                )));
                if let Some(metadata) = metadata {
                    graph.add_edge(metadata, node, ());
                }
                node
            })
            .collect();
        if options.scope == Scope::Fetch {
            continue;
        }
        let Some(locked) = locked else {
            continue;
        };
        let Some(job) = packages::RepoJob::new(
            repo.clone(),
            locked.clone(),
            rpms.into_iter().cloned().collect(),
            &options.tree_root,
            epoch,
            Arc::clone(&plan.services),
            Arc::clone(&plan.placer),
        ) else {
            continue;
        };
        let node = graph.add_node(Task::RpmRepo(job));
        if let Some(metadata) = metadata {
            graph.add_edge(metadata, node, ());
        }
        for download in downloads {
            graph.add_edge(download, node, ());
        }
    }
}

/// One task per built repository (`from:`), after every task whose outputs it reads.
fn add_built_repos(
    graph: &mut DiGraph<Task, ()>,
    recipe: &Recipe,
    spec: &crate::recipe::Packages,
    options: &PlanOptions,
    by_task_name: &BTreeMap<&str, NodeIndex>,
) {
    for repo in spec.repos.iter().filter(|repo| repo.is_built()) {
        let Some(job) = built_repo::BuiltRepoJob::new(
            repo.clone(),
            &options.tree_root,
            recipe.base_dir.clone(),
            recipe.epoch.unwrap_or(0),
        ) else {
            continue;
        };
        let reads = job.reads();
        let node = graph.add_node(Task::BuiltRepo(job));
        for task in &recipe.tasks {
            let produces = task.outputs.iter().any(|output| {
                reads
                    .iter()
                    .any(|read| read.starts_with(output) || output.starts_with(read))
            });
            if produces {
                graph.add_edge(by_task_name[task.name.as_str()], node, ());
            }
        }
    }
}

/// Run blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TaskError> + Send + 'static,
) -> Result<T, TaskError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| TaskError::Io(std::io::Error::other(join.to_string())))?
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The data every template sees; `digests` are the manifest digests written in the ISO, by
/// image position, when known before the run (registry images). Only the images the ISO
/// holds are listed.
pub fn template_context(recipe: &Recipe, digests: &[Option<Digest>]) -> TemplateContext {
    TemplateContext {
        name: recipe.name.clone(),
        version: recipe.version.clone(),
        vars: recipe.vars.clone(),
        epoch: recipe.epoch,
        data: recipe.data.clone(),
        images: recipe
            .images
            .list
            .iter()
            .enumerate()
            // Builder and base images (`ship: false`) are not in the ISO: templates that list
            // the ISO's images (versions.json) must not see them.
            .filter(|(_, image)| image.ship)
            .map(|(index, image)| ImageContext {
                name: image.name.clone(),
                tag: image.tag.clone(),
                reference: image.source.to_string(),
                digest: digests.get(index).cloned().flatten().map(|d| d.to_string()),
            })
            .collect(),
    }
}

/// What a container or a build can start from, for each image of the recipe.
fn image_inputs(
    recipe: &Recipe,
    images: &ImagePlan,
) -> Vec<(crate::recipe::ImageEntry, Option<containers::ImageInput>)> {
    use crate::reference::ImageSource;
    use containers::ImageInput;
    recipe
        .images
        .list
        .iter()
        .zip(&images.resolutions)
        .map(|(entry, resolution)| {
            let input = match (&entry.build, &entry.source, resolution) {
                (Some(_), _, _) => Some(ImageInput::Built(containers::build_output(
                    images.services.store.root(),
                    &recipe.file,
                    entry,
                ))),
                (None, ImageSource::Registry(_), Resolution::Resolved(image)) => {
                    Some(ImageInput::Registry(image.clone()))
                }
                (None, ImageSource::Registry(_) | ImageSource::Daemon(_), _) => None,
                (None, source, _) => Some(ImageInput::Local(source.clone())),
            };
            (entry.clone(), input)
        })
        .collect()
}

/// The position of the image a task's `image:` (`name` or `name:tag`) names.
fn image_position(recipe: &Recipe, wanted: &str) -> Option<usize> {
    recipe
        .images
        .list
        .iter()
        .position(|entry| entry.name == wanted || format!("{}:{}", entry.name, entry.tag) == wanted)
}

/// The ISO manifest digest of each image when known, and the nodes that make each image
/// usable by a container or a build (its blobs, or its build).
type AddedImages = (Vec<Option<Digest>>, Vec<Vec<NodeIndex>>);

/// Add the image tasks.
fn add_images(
    graph: &mut DiGraph<Task, ()>,
    recipe: &Recipe,
    options: &PlanOptions,
    images: &ImagePlan,
    inputs: &[(crate::recipe::ImageEntry, Option<containers::ImageInput>)],
    by_task_name: &BTreeMap<&str, NodeIndex>,
) -> Result<AddedImages, PlanError> {
    let services = &images.services;
    let tree_root = &options.tree_root;
    let epoch = recipe.epoch.unwrap_or(0);
    let mut blob_nodes: BTreeMap<Digest, NodeIndex> = BTreeMap::new();
    let mut image_nodes = Vec::new();
    let mut digests = Vec::new();
    let mut ready: Vec<Vec<NodeIndex>> = Vec::new();
    // Builds and the images they use, linked once every image has its nodes.
    let mut builds: Vec<(NodeIndex, Vec<usize>)> = Vec::new();
    // Every image that has each blob, so that its download line names them all.
    let mut sharers: BTreeMap<&Digest, Vec<String>> = BTreeMap::new();
    for (entry, resolution) in recipe.images.list.iter().zip(&images.resolutions) {
        if let Resolution::Resolved(image) = resolution {
            for blob in image.blobs() {
                let names = sharers.entry(&blob.digest).or_default();
                let name = format!("{}:{}", entry.name, entry.tag);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    for (entry, resolution) in recipe.images.list.iter().zip(&images.resolutions) {
        let mut digest = None;
        let mut blobs = Vec::new();
        if let Resolution::Resolved(image) = resolution {
            for blob in image.blobs() {
                let node = *blob_nodes.entry(blob.digest.clone()).or_insert_with(|| {
                    graph.add_node(Task::Blob(images::BlobJob::new(
                        image.reference.clone(),
                        blob.clone(),
                        Arc::clone(services),
                        sharers.get(&blob.digest).map_or(&[][..], Vec::as_slice),
                    )))
                });
                blobs.push(node);
            }
        }
        if options.scope == Scope::Fetch {
            digests.push(None);
            ready.push(Vec::new());
            continue;
        }
        let mut build_node = None;
        if let Some(build) = &entry.build {
            let output = containers::build_output(services.store.root(), &recipe.file, entry);
            let (job, used) = containers::BuildJob::new(
                entry,
                build,
                inputs,
                output.clone(),
                epoch,
                recipe.images.platform.clone(),
                Arc::clone(services),
                recipe.base_dir.clone(),
            )?;
            let products = recipe
                .tasks
                .iter()
                .flat_map(|t| t.outputs.clone())
                .collect();
            let node = graph.add_node(Task::Build(job.with_products(products)));
            for before in &entry.after {
                if let Some(&task) = by_task_name.get(before.as_str()) {
                    graph.add_edge(task, node, ());
                }
            }
            builds.push((node, used));
            build_node = Some(node);
        }
        ready.push(build_node.map_or_else(|| blobs.clone(), |node| vec![node]));
        if !entry.ship {
            digests.push(None);
            continue;
        }
        let node =
            match resolution {
                _ if build_node.is_some() => {
                    let mut built = entry.clone();
                    built.source = crate::reference::ImageSource::OciArchive(
                        containers::build_output(services.store.root(), &recipe.file, entry),
                    );
                    graph.add_node(Task::LocalImage(images::LocalImageJob::new(
                        built,
                        tree_root.clone(),
                        recipe.base_dir.clone(),
                        recipe.images.platform.clone(),
                        recipe.images.format,
                        epoch,
                        Arc::clone(services),
                    )))
                }
                Resolution::Resolved(image) => {
                    let manifest = images::iso_manifest(image, recipe.images.format, &entry.name)?;
                    digest = Some(Digest::of(&manifest));
                    let node = graph.add_node(Task::ImageDir(images::ImageDirJob::new(
                        entry,
                        tree_root,
                        manifest,
                        image,
                        Arc::clone(services),
                    )));
                    if let Some(archive) = &entry.archive {
                        let archive = graph.add_node(Task::Archive(images::ArchiveJob::new(
                            entry,
                            archive,
                            tree_root,
                            image,
                            epoch,
                            Arc::clone(services),
                        )));
                        for &blob in &blobs {
                            graph.add_edge(blob, archive, ());
                        }
                    }
                    node
                }
                Resolution::Local => graph.add_node(Task::LocalImage(images::LocalImageJob::new(
                    entry.clone(),
                    tree_root.clone(),
                    recipe.base_dir.clone(),
                    recipe.images.platform.clone(),
                    recipe.images.format,
                    epoch,
                    Arc::clone(services),
                ))),
                Resolution::Failed(_) => {
                    graph.add_node(Task::Unresolved(format!("{}:{}", entry.name, entry.tag)))
                }
            };
        for &blob in &blobs {
            graph.add_edge(blob, node, ());
        }
        if let Some(build) = build_node {
            graph.add_edge(build, node, ());
        }
        for before in &entry.after {
            if let Some(&task) = by_task_name.get(before.as_str()) {
                graph.add_edge(task, node, ());
            }
        }
        image_nodes.push(node);
        digests.push(digest);
    }
    for (build, used) in builds {
        for position in used {
            for &node in &ready[position] {
                graph.add_edge(node, build, ());
            }
        }
    }
    if options.scope == Scope::Tree
        && let Some(config) = &recipe.images.registry_config
    {
        let paths: Vec<_> = recipe
            .images
            .list
            .iter()
            .filter(|entry| entry.ship)
            .map(|entry| &entry.path)
            .collect();
        if images::served_root(&paths).is_none() {
            let shown: BTreeSet<String> = paths.iter().map(ToString::to_string).collect();
            return Err(PlanError::ServedRoots(
                shown.into_iter().collect::<Vec<_>>().join(", "),
            ));
        }
        let served = recipe
            .images
            .list
            .iter()
            .filter(|entry| entry.ship)
            .map(|entry| (entry.name.clone(), entry.tag.clone(), entry.path.clone()))
            .collect();
        let node = graph.add_node(Task::RegistryConfig(images::RegistryConfigJob::new(
            config.clone(),
            tree_root.clone(),
            served,
        )));
        for image in image_nodes {
            graph.add_edge(image, node, ());
        }
    }
    Ok((digests, ready))
}
