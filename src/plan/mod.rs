//! The plan: a recipe turned into a sealed graph of typed tasks.
//!
//! Nodes are [`Task`]s; an edge `a → b` means `b` waits for `a`. Edges come from `after:` in the
//! recipe and from paths: a `files:` entry whose source lies inside a command task's declared
//! outputs waits for that task. The plan is sealed (checked acyclic, frozen) before it is
//! returned, so [`crate::engine`] only ever sees a graph that can run.

mod command;
mod files;
mod iso;
mod task;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

pub use task::{Task, TaskError};

use crate::engine::{CycleError, JobGraph};
use crate::recipe::{ImageContext, Recipe, TemplateContext};

/// A sealed task graph and what it was made from.
pub struct Plan {
    pub graph: JobGraph<Task>,
}

/// Where the plan writes the ISO tree.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The ISO tree's root (the recipe's `iso.root`, or the `layout` command's folder).
    pub tree_root: PathBuf,
    /// Make this ISO once the tree is written (`build`); `None` for `layout`.
    pub iso: Option<crate::iso::IsoRequest>,
}

impl Plan {
    /// Build and seal the plan for `recipe`.
    pub fn new(recipe: &Recipe, options: &PlanOptions) -> Result<Self, CycleError> {
        let mut graph = DiGraph::new();
        let mut by_task_name: BTreeMap<&str, NodeIndex> = BTreeMap::new();
        let context = Arc::new(template_context(recipe));

        for spec in &recipe.tasks {
            let node = graph.add_node(Task::Command(command::CommandJob::new(
                spec.clone(),
                recipe.base_dir.clone(),
                recipe.epoch,
            )));
            by_task_name.insert(spec.name.as_str(), node);
        }
        for spec in &recipe.tasks {
            for before in &spec.after {
                if let Some(&before) = by_task_name.get(before.as_str()) {
                    graph.add_edge(before, by_task_name[spec.name.as_str()], ());
                }
            }
        }
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
            let iso = graph.add_node(Task::Iso(iso::IsoJob::new(request.clone(), claim)));
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

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The data every template sees.
pub fn template_context(recipe: &Recipe) -> TemplateContext {
    TemplateContext {
        name: recipe.name.clone(),
        version: recipe.version.clone(),
        vars: recipe.vars.clone(),
        epoch: recipe.epoch,
        images: recipe
            .images
            .list
            .iter()
            .map(|image| ImageContext {
                name: image.name.clone(),
                tag: image.tag.clone(),
                reference: image.source.to_string(),
                digest: None,
            })
            .collect(),
    }
}
