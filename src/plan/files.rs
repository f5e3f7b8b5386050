//! `files:` entries: copying files and trees into the ISO tree, and rendering templates.
//!
//! A folder copy skips what its `exclude` globs match (relative to the folder; a match on a
//! folder skips all it holds). An entry with a `format` is data: its text (copied, replaced
//! or rendered) is read as YAML, which JSON is too, and written in that format after the
//! entry's `header` (`json`: Python's `json.dump(sort_keys=True, indent=2)`, see
//! [`crate::python_json`]; `yaml`: PyYAML's `SafeDumper`, see [`crate::python_yaml`]).
//!
//! Every file lands with a normalised mode (the entry's `mode`, else 0755 for executables and
//! 0644 for the rest; folders 0755), whatever the umask, so the tree is the same on any
//! machine. Symbolic links are copied as the file they point to, and only when that file lies
//! inside the copied tree or the recipe's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::GlobSet;

use crate::engine::{Fingerprint, JobOutput};
use crate::recipe::{DataFormat, FileEntry, TemplateContext, read_template, template_env_in};

use super::{TaskError, TreeClaim, blocking};

/// Copy `entry.src` (a file or a folder) to `entry.dest` in the tree.
pub struct CopyJob {
    entry: FileEntry,
    tree_root: PathBuf,
    base_dir: PathBuf,
}

/// Render the template `entry.src` to `entry.dest` in the tree.
pub struct TemplateJob {
    entry: FileEntry,
    tree_root: PathBuf,
    base_dir: PathBuf,
    context: Arc<TemplateContext>,
}

/// A file found under a `files:` source.
struct SourceFile {
    /// Where to read it (a link's target when it was a link).
    read_from: PathBuf,
    /// Path below the source root (empty when the source is a single file).
    relative: PathBuf,
    executable: bool,
}

impl CopyJob {
    pub(super) fn new(entry: FileEntry, tree_root: PathBuf, base_dir: PathBuf) -> Self {
        Self {
            entry,
            tree_root,
            base_dir,
        }
    }

    pub(super) fn name(&self) -> String {
        format!("file {}", self.entry.dest)
    }

    /// The files this copy writes when its source exists now; else its whole destination.
    pub(super) fn claim(&self, claim: &mut TreeClaim) {
        let dest = self.entry.dest.as_str();
        if let Ok(files) = source_files(&self.entry.src, &self.base_dir, &self.entry.exclude) {
            for file in files {
                let relative = file.relative.to_string_lossy();
                if relative.is_empty() {
                    claim.files.insert(dest.to_owned());
                } else {
                    claim.files.insert(format!("{dest}/{relative}"));
                }
            }
        } else {
            claim.files.insert(dest.to_owned());
            claim.dirs.insert(dest.to_owned());
        }
    }

    pub(super) async fn fingerprint(&self) -> Result<Fingerprint, TaskError> {
        let (src, base_dir) = (self.entry.src.clone(), self.base_dir.clone());
        let exclude = self.entry.exclude.clone();
        let mut fingerprint = blocking(move || hash_sources(&src, &base_dir, &exclude)).await?;
        add_entry_settings(&mut fingerprint, &self.entry);
        Ok(fingerprint)
    }

    /// A folder's copy is missing as soon as one of its files is: other tasks write into
    /// the same folder (salt/ holds the recipe's templates too), so the folder existing
    /// says nothing about this copy.
    pub(super) fn missing_output(&self) -> Option<String> {
        let dest = self.entry.dest.under(&self.tree_root);
        if let Some(missing) = missing(&dest, &self.entry) {
            return Some(missing);
        }
        let files = source_files(&self.entry.src, &self.base_dir, &self.entry.exclude).ok()?;
        files
            .iter()
            .map(|file| join_relative(&dest, &file.relative))
            .find(|target| !target.exists())
            .map(|target| target.display().to_string())
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let (src, base_dir) = (self.entry.src.clone(), self.base_dir.clone());
        let dest = self.entry.dest.under(&self.tree_root);
        let mode = self.entry.mode;
        let replace = self.entry.replace.clone();
        let (exclude, format) = (self.entry.exclude.clone(), self.entry.format);
        let header = self.entry.header.clone();
        blocking(move || {
            let mut bytes = 0;
            for file in source_files(&src, &base_dir, &exclude)? {
                let target = join_relative(&dest, &file.relative);
                create_dirs(&target)?;
                let mode = file_mode(mode, file.executable);
                if replace.is_empty() && format.is_none() {
                    crate::fs::copy_atomic(&file.read_from, &target, mode)?;
                } else {
                    let text = replaced(&file.read_from, &replace)?;
                    let text = formatted(&file.read_from, text, format, &header)?;
                    crate::fs::write_atomic(&target, text.as_bytes(), mode)?;
                }
                bytes += fs_err::metadata(&target)?.len();
            }
            Ok(JobOutput { bytes })
        })
        .await
    }
}

impl TemplateJob {
    pub(super) fn new(
        entry: FileEntry,
        tree_root: PathBuf,
        base_dir: PathBuf,
        context: Arc<TemplateContext>,
    ) -> Self {
        Self {
            entry,
            tree_root,
            base_dir,
            context,
        }
    }

    pub(super) fn name(&self) -> String {
        format!("template {}", self.entry.dest)
    }

    pub(super) fn claim(&self, claim: &mut TreeClaim) {
        claim.files.insert(self.entry.dest.to_string());
    }

    pub(super) async fn fingerprint(&self) -> Result<Fingerprint, TaskError> {
        let (src, base_dir) = (self.entry.src.clone(), self.base_dir.clone());
        let exclude = self.entry.exclude.clone();
        let mut fingerprint = blocking(move || hash_sources(&src, &base_dir, &exclude)).await?;
        add_entry_settings(&mut fingerprint, &self.entry);
        let context = serde_json::to_vec(&*self.context).map_err(std::io::Error::other)?;
        fingerprint.add(
            "template context",
            crate::reference::Digest::of(&context).to_string(),
        );
        // The files a template reads (`file_text(…)`) are known only by rendering it: its
        // text is what the key must follow.
        let (src, base_dir) = (self.entry.src.clone(), self.base_dir.clone());
        let context = Arc::clone(&self.context);
        let text = blocking(move || render_template(&src, &context, &base_dir)).await?;
        fingerprint.add(
            "rendered",
            crate::reference::Digest::of(text.as_bytes()).to_string(),
        );
        Ok(fingerprint)
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        missing(&self.entry.dest.under(&self.tree_root), &self.entry)
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let src = self.entry.src.clone();
        let dest = self.entry.dest.under(&self.tree_root);
        let mode = self.entry.mode;
        let format = self.entry.format;
        let header = self.entry.header.clone();
        let base_dir = self.base_dir.clone();
        let context = Arc::clone(&self.context);
        blocking(move || {
            let executable = crate::fs::is_executable(&src)?;
            let text = render_template(&src, &context, &base_dir)?;
            let text = formatted(&src, text, format, &header)?;
            create_dirs(&dest)?;
            crate::fs::write_atomic(&dest, text.as_bytes(), file_mode(mode, executable))?;
            Ok(JobOutput {
                bytes: text.len() as u64,
            })
        })
        .await
    }
}

/// Render the template file at `path` with `context`.
pub(super) fn render_template(
    path: &Path,
    context: &TemplateContext,
    base_dir: &Path,
) -> Result<String, TaskError> {
    let source = read_template(path)?;
    let env = template_env_in(base_dir);
    let name = path.display().to_string();
    let failed = |error: &minijinja::Error| {
        let mut message = crate::recipe::out_of_fuel(error).unwrap_or_else(|| {
            error
                .detail()
                .unwrap_or(&error.kind().to_string())
                .to_owned()
        });
        // The environment has no loader on purpose: a template must not read files the
        // fingerprint does not know about (or any file at all, like `/etc/passwd`).
        if error.kind() == minijinja::ErrorKind::TemplateNotFound {
            message.push_str(
                " (templates cannot include, import or extend other files: there is no loader)",
            );
        }
        TaskError::Render {
            path: path.to_owned(),
            line: error.line().unwrap_or(0),
            message,
        }
    };
    let template = env
        .template_from_named_str(&name, &source)
        .map_err(|e| failed(&e))?;
    template
        .render(minijinja::value::Serde(context))
        .map_err(|e| failed(&e))
}

/// The text of `path` with every key of `replace` replaced by its value, longest key first
/// (so `@@VERSION_FULL` is not eaten by `@@VERSION`).
fn replaced(path: &Path, replace: &BTreeMap<String, String>) -> Result<String, TaskError> {
    let mut text = fs_err::read_to_string(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::InvalidData {
            TaskError::NotText {
                path: path.to_owned(),
            }
        } else {
            TaskError::Io(error)
        }
    })?;
    let mut keys: Vec<&String> = replace.keys().collect();
    keys.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    for key in keys {
        let value = &replace[key];
        // Like templates' fuel: the size is known before anything is allocated, so a short
        // key found everywhere with a long value cannot fill the disk (or the memory).
        let grown = text
            .matches(key.as_str())
            .count()
            .saturating_mul(value.len().saturating_sub(key.len()))
            .saturating_add(text.len());
        if grown > REPLACE_LIMIT {
            return Err(TaskError::ReplaceTooLarge {
                path: path.to_owned(),
                size: grown,
                limit: REPLACE_LIMIT,
            });
        }
        text = text.replace(key.as_str(), value);
    }
    Ok(text)
}

/// `text` (read from `path`) written in `format` after `header`, or as it is without one.
fn formatted(
    path: &Path,
    text: String,
    format: Option<DataFormat>,
    header: &str,
) -> Result<String, TaskError> {
    let Some(format) = format else {
        return Ok(text);
    };
    let not_data = |message: String| TaskError::NotData {
        path: path.to_owned(),
        format: format.name(),
        message,
    };
    let data = match format {
        DataFormat::Json => {
            let value: serde_json::Value =
                serde_saphyr::from_str(&text).map_err(|error| not_data(error.to_string()))?;
            crate::python_json::dumps(&value, Some(2))
        }
        DataFormat::Yaml => {
            let value = crate::python_yaml::parse(&text).map_err(not_data)?;
            crate::python_yaml::dump(&value).map_err(|error| not_data(error.to_string()))?
        }
    };
    Ok(format!("{header}{data}"))
}

/// The largest file `replace` may make: far above any script it is meant for.
const REPLACE_LIMIT: usize = 64 << 20;

fn add_entry_settings(fingerprint: &mut Fingerprint, entry: &FileEntry) {
    for pattern in &entry.exclude {
        fingerprint.add("exclude", pattern.clone());
    }
    if let Some(format) = entry.format {
        fingerprint.add("format", format.name());
        fingerprint.add("header", entry.header.clone());
    }
    for (key, value) in &entry.replace {
        fingerprint.add(format!("replace {key}"), value.clone());
    }
    fingerprint.add("dest", entry.dest.as_str());
    fingerprint.add(
        "mode",
        entry
            .mode
            .map_or_else(|| "default".to_owned(), |mode| format!("{mode:o}")),
    );
}

fn missing(dest: &Path, entry: &FileEntry) -> Option<String> {
    (!dest.exists()).then(|| entry.dest.to_string())
}

/// 0755 for folders; the explicit mode, else 0755 for executables and 0644 for the rest.
fn file_mode(explicit: Option<u32>, executable: bool) -> u32 {
    explicit.unwrap_or(if executable { 0o755 } else { 0o644 })
}

fn join_relative(dest: &Path, relative: &Path) -> PathBuf {
    if relative.as_os_str().is_empty() {
        dest.to_owned()
    } else {
        dest.join(relative)
    }
}

/// Create the parent folders of `path`, each 0755 whatever the umask.
fn create_dirs(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => crate::fs::create_dirs_0755(parent),
        None => Ok(()),
    }
}

/// `input <path>` → content hash for every file under `src`, plus whether it is executable.
fn hash_sources(src: &Path, base_dir: &Path, exclude: &[String]) -> Result<Fingerprint, TaskError> {
    let mut fingerprint = Fingerprint::new();
    for file in source_files(src, base_dir, exclude)? {
        let shown = join_relative(src, &file.relative);
        let shown = shown.strip_prefix(base_dir).unwrap_or(&shown);
        let hash = crate::fs::sha256_file(&file.read_from)?;
        let exec = if file.executable { " x" } else { "" };
        fingerprint.add(
            format!("input {}", shown.display()),
            format!("{hash}{exec}"),
        );
    }
    Ok(fingerprint)
}

/// The glob set of `exclude` patterns (checked when the recipe was read, so a bad one here is
/// a bug, reported all the same).
fn exclude_set(exclude: &[String]) -> Result<GlobSet, TaskError> {
    let mut builder = globset::GlobSetBuilder::new();
    for pattern in exclude {
        builder.add(crate::recipe::exclude_glob(pattern).map_err(std::io::Error::other)?);
    }
    Ok(builder.build().map_err(std::io::Error::other)?)
}

/// Every file under `src` (or `src` itself) that no `exclude` glob matches, sorted by path.
fn source_files(
    src: &Path,
    base_dir: &Path,
    exclude: &[String],
) -> Result<Vec<SourceFile>, TaskError> {
    let base_real = fs_err::canonicalize(base_dir)?;
    let metadata = fs_err::symlink_metadata(src)?;
    if !metadata.is_dir() {
        let read_from = resolve_link(src, &metadata, &base_real, &base_real)?;
        return Ok(vec![SourceFile {
            executable: crate::fs::is_executable(&read_from)?,
            read_from,
            relative: PathBuf::new(),
        }]);
    }
    let tree_real = fs_err::canonicalize(src)?;
    let exclude = exclude_set(exclude)?;
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(src)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            // A matched folder is skipped whole, without reading it.
            entry.path().strip_prefix(src).map_or(true, |relative| {
                relative.as_os_str().is_empty() || !exclude.is_match(relative)
            })
        });
    for entry in walk {
        let entry = entry.map_err(|e| TaskError::Io(e.into()))?;
        let metadata = entry
            .path()
            .symlink_metadata()
            .map_err(|e| TaskError::Io(crate::fs::with_path(&e, "read", entry.path())))?;
        if metadata.is_dir() {
            continue;
        }
        let read_from = resolve_link(entry.path(), &metadata, &tree_real, &base_real)?;
        files.push(SourceFile {
            executable: crate::fs::is_executable(&read_from)?,
            relative: entry
                .path()
                .strip_prefix(src)
                .unwrap_or(entry.path())
                .to_owned(),
            read_from,
        });
    }
    Ok(files)
}

/// The file to read for `path`: itself, or the regular file a link inside `tree` or `base`
/// points to.
fn resolve_link(
    path: &Path,
    metadata: &std::fs::Metadata,
    tree: &Path,
    base: &Path,
) -> Result<PathBuf, TaskError> {
    if metadata.file_type().is_file() {
        return Ok(path.to_owned());
    }
    if !metadata.file_type().is_symlink() {
        return Err(TaskError::NotAFile {
            path: path.to_owned(),
        });
    }
    let target = fs_err::canonicalize(path)?;
    if !target.starts_with(tree) && !target.starts_with(base) {
        return Err(TaskError::SymlinkOutside {
            link: path.to_owned(),
            target,
        });
    }
    if !target.is_file() {
        return Err(TaskError::NotAFile {
            path: path.to_owned(),
        });
    }
    Ok(target)
}
