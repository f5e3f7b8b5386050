//! Which host paths a build reads and which it writes or deletes, and the rule between them:
//! nothing a build writes (the ISO, its `SHA256SUM`, the tree it prunes) may be something it
//! reads (the recipe, its lock file, a `files:` source, a task's `inputs:`) or something
//! another of its writers owns (a task's `outputs:`, another output). Checked at load, and
//! again for `-o`, so a build never overwrites or deletes a user's file.

use std::path::{Path, PathBuf};

use super::{CommandTask, Recipe};

/// What a build reads and writes on the host, outside the ISO tree. Paths are resolved
/// (symbolic links followed, `..` applied) so that two names of one file compare equal.
pub(crate) struct HostPaths<'a> {
    recipe: PathBuf,
    base_dir: PathBuf,
    root: PathBuf,
    sources: Vec<PathBuf>,
    tasks: Vec<&'a CommandTask>,
}

impl<'a> HostPaths<'a> {
    pub(crate) fn new(
        recipe: &Path,
        base_dir: &Path,
        root: &Path,
        sources: impl IntoIterator<Item = &'a Path>,
        tasks: Vec<&'a CommandTask>,
    ) -> Self {
        Self {
            recipe: resolve(recipe),
            base_dir: resolve(base_dir),
            root: resolve(root),
            sources: sources.into_iter().map(resolve).collect(),
            tasks,
        }
    }

    pub(crate) fn of(recipe: &'a Recipe) -> Self {
        Self::new(
            &recipe.file,
            &recipe.base_dir,
            &recipe.iso.root,
            recipe.files.iter().map(|file| file.src.as_path()),
            recipe.tasks.iter().collect(),
        )
    }

    /// What writing the file `output` would overwrite or collide with, described; `None`
    /// when it is free.
    pub(crate) fn output_clash(&self, output: &Path) -> Option<String> {
        let output = &resolve(output);
        let shown = |path: &Path| {
            path.strip_prefix(&self.base_dir)
                .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
        };
        if *output == self.recipe {
            return Some("it is the recipe itself".to_owned());
        }
        let mut lock = self.recipe.as_os_str().to_owned();
        lock.push(".lock");
        if output == Path::new(&lock) {
            return Some("it is the recipe's lock file".to_owned());
        }
        if output.starts_with(&self.root) {
            return Some(format!("it is inside the ISO tree `{}`", shown(&self.root)));
        }
        if self.root.starts_with(output) {
            return Some(format!("the ISO tree `{}` is inside it", shown(&self.root)));
        }
        if self.recipe.starts_with(output) {
            return Some("the recipe is inside it".to_owned());
        }
        for source in &self.sources {
            if output.starts_with(source) || source.starts_with(output) {
                return Some(format!("it is the `files:` source `{}`", shown(source)));
            }
        }
        for task in &self.tasks {
            for (pattern, (input, whole)) in
                task.inputs.iter().zip(input_roots(task, &self.base_dir))
            {
                let matched = if whole {
                    output.starts_with(&input)
                } else {
                    globset::GlobBuilder::new(pattern)
                        .literal_separator(true)
                        .build()
                        .is_ok_and(|glob| {
                            let relative = output.strip_prefix(&self.base_dir).unwrap_or(output);
                            glob.compile_matcher().is_match(relative)
                        })
                };
                if matched {
                    return Some(format!(
                        "it is an input of task `{}` (`{}`)",
                        task.name,
                        shown(&input)
                    ));
                }
            }
            for made in task.outputs.iter().map(|made| resolve(made)) {
                if output.starts_with(&made) || made.starts_with(output) {
                    return Some(format!(
                        "task `{}` writes it (`{}` in its `outputs`)",
                        task.name,
                        shown(&made)
                    ));
                }
            }
        }
        None
    }

    /// What pruning the tree `root` would delete that the build reads, described; `None` when
    /// nothing.
    pub(crate) fn root_clash(&self) -> Option<String> {
        let shown = |path: &Path| {
            path.strip_prefix(&self.base_dir)
                .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
        };
        for task in &self.tasks {
            for (input, whole) in input_roots(task, &self.base_dir) {
                // An input inside the tree would be deleted; a tree inside a folder the task
                // reads whole would be read as the task's input and pruned under it.
                if input.starts_with(&self.root) || (whole && self.root.starts_with(&input)) {
                    return Some(format!(
                        "it overlaps `{}`, an input of task `{}`",
                        shown(&input),
                        task.name
                    ));
                }
            }
        }
        for source in &self.sources {
            if self.root.starts_with(source) {
                return Some(format!(
                    "it is inside the `files:` source `{}`",
                    shown(source)
                ));
            }
        }
        None
    }
}

/// The folder (or file) each of `task`'s `inputs:` patterns starts from: its components
/// before the first wildcard, and whether the pattern is that path alone (no wildcard).
pub(crate) fn input_roots(task: &CommandTask, base_dir: &Path) -> Vec<(PathBuf, bool)> {
    task.inputs
        .iter()
        .map(|pattern| {
            let literal = glob_literal_prefix(pattern);
            let whole = literal.as_os_str() == pattern.trim_end_matches('/');
            (resolve(&base_dir.join(literal)), whole)
        })
        .collect()
}

/// The path of `pattern` before its first wildcard (the whole of a pattern without one):
/// the folder a glob of `inputs:` or `from:` is walked from.
pub(crate) fn glob_literal_prefix(pattern: &str) -> PathBuf {
    Path::new(pattern)
        .components()
        .take_while(|part| {
            !part
                .as_os_str()
                .to_string_lossy()
                .contains(['*', '?', '[', '{'])
        })
        .collect()
}

/// `path` without `.` components and with `..` applied, without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other),
        }
    }
    normalized
}

/// `path` normalised, with its longest existing ancestor (itself included) canonicalised,
/// so a symbolic link and its target, or `a/../b` and `b`, give one path.
fn resolve(path: &Path) -> PathBuf {
    let path = normalize(path);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = fs_err::canonicalize(existing) {
            return rest
                .iter()
                .rev()
                .fold(canonical, |acc, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return path,
        }
    }
}
