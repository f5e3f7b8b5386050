//! [`Task`]: every sort of work a plan can hold, and [`TaskError`], what can go wrong in it.

use std::path::PathBuf;

use crate::engine::{BoxFuture, Fingerprint, Job, JobOutput, Resource};

use super::built_repo::BuiltRepoJob;
use super::command::CommandJob;
use super::containers::{BuildJob, ContainerJob};
use super::files::{CopyJob, TemplateJob};
use super::images::{ArchiveJob, BlobJob, ImageDirJob, LocalImageJob, RegistryConfigJob};
use super::iso::IsoJob;
use super::packages::{MetadataJob, RepoJob, RpmJob};

/// One node of the plan.
// Each task is allocated once, behind an `Arc` in the sealed graph: boxing variants would
// only add indirection.
#[allow(clippy::large_enum_variant)]
pub enum Task {
    /// Copy a file or a directory tree into the ISO tree.
    Copy(CopyJob),
    /// Render a template file into the ISO tree.
    Template(TemplateJob),
    /// Run a command of the recipe's `tasks:`.
    Command(CommandJob),
    /// Run a `tasks:` command in a container.
    Container(ContainerJob),
    /// Build an image with buildah.
    Build(BuildJob),
    /// Make the ISO from the finished tree.
    Iso(IsoJob),
    /// Fetch one blob into the cache.
    Blob(BlobJob),
    /// Write a registry image's folder in the tree.
    ImageDir(ImageDirJob),
    /// Write a registry image's docker-archive tarball.
    Archive(ArchiveJob),
    /// Read a local image (archive or daemon) and write its folder.
    LocalImage(LocalImageJob),
    /// Write the nginx rules serving the image folders.
    RegistryConfig(RegistryConfigJob),
    /// Check a locked RPM repository's metadata and fetch it into the cache.
    RpmMetadata(MetadataJob),
    /// Download one RPM into the cache.
    Rpm(RpmJob),
    /// Write one shipped RPM repository's folder.
    RpmRepo(RepoJob),
    /// Write a repository of RPMs recipe tasks made.
    BuiltRepo(BuiltRepoJob),
    /// An image that could not be resolved without the network (`graph` only).
    Unresolved(String),
}

/// What can go wrong while running a task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("`{}` is a symbolic link to `{}`, outside the project folder", link.display(), target.display())]
    SymlinkOutside { link: PathBuf, target: PathBuf },
    #[error("`{}` is neither a file, a folder nor a link to a file", path.display())]
    NotAFile { path: PathBuf },
    #[error("template `{}` line {line}: {message}", path.display())]
    Render {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot apply `replace` to `{}`: it is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("`format: {format}` needs YAML or JSON data, and `{}` does not hold it: {message}", path.display())]
    NotData {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error(
        "`replace` would make `{}` {size} bytes or more; it is bounded to {limit} bytes (are a key and its value swapped?)",
        path.display()
    )]
    ReplaceTooLarge {
        path: PathBuf,
        size: usize,
        limit: usize,
    },
    #[error("inputs pattern `{pattern}` matches no file")]
    NoInputs { pattern: String },
    #[error("bad inputs pattern `{pattern}`: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("command `{command}` {status}{}", stderr_tail(.stderr))]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error(transparent)]
    Iso(#[from] crate::iso::IsoError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Local(#[from] crate::source::local::LocalSourceError),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error(transparent)]
    Package(#[from] super::packages::PackageError),
    #[error(transparent)]
    BuiltRepo(#[from] super::built_repo::BuiltRepoError),
    #[error("the recipe has `daemon:` images but no container daemon was found")]
    NoDaemon,
    #[error("image `{0}` was not resolved (this graph is for display only)")]
    Unresolved(String),
    #[error("the command succeeded but did not write its declared output `{}`", path.display())]
    OutputMissing { path: PathBuf },
    #[error(transparent)]
    Buildah(#[from] crate::container::ContainerError),
    #[error("image `{image}`: {source}")]
    Container {
        image: String,
        #[source]
        source: crate::container::ContainerError,
    },
    #[error("task `{task}` wrote files it does not declare in `outputs` (removed): {paths}")]
    UndeclaredOutputs { task: String, paths: String },
    #[error("image `{image}`: buildah ignored a build argument: {warning}")]
    UnusedBuildArgs { image: String, warning: String },
}

fn stderr_tail(stderr: &str) -> String {
    const LINES: usize = 20;
    let lines: Vec<&str> = stderr.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(LINES);
    let mut text = String::from("; its standard error ends with:");
    for line in &lines[start..] {
        text.push_str("\n    ");
        text.push_str(line);
    }
    text
}

impl Task {
    /// Add what this task writes in the ISO tree to `claim`.
    pub(super) fn claim(&self, claim: &mut super::TreeClaim) {
        match self {
            Self::Copy(job) => job.claim(claim),
            Self::Template(job) => job.claim(claim),
            Self::ImageDir(job) => job.claim(claim),
            Self::Archive(job) => job.claim(claim),
            Self::LocalImage(job) => job.claim(claim),
            Self::RegistryConfig(job) => job.claim(claim),
            Self::RpmRepo(job) => job.claim(claim),
            Self::BuiltRepo(job) => job.claim(claim),
            Self::Command(_)
            | Self::Container(_)
            | Self::Build(_)
            | Self::Iso(_)
            | Self::Blob(_)
            | Self::Rpm(_)
            | Self::RpmMetadata(_)
            | Self::Unresolved(_) => {}
        }
    }
}

/// A ready future, for jobs whose key needs no I/O.
fn ready<T: Send + 'static>(value: T) -> BoxFuture<'static, T> {
    Box::pin(std::future::ready(value))
}

impl Job for Task {
    type Error = TaskError;

    fn name(&self) -> String {
        match self {
            Self::Copy(job) => job.name(),
            Self::Template(job) => job.name(),
            Self::Command(job) => job.name(),
            Self::Container(job) => job.name(),
            Self::Build(job) => job.name(),
            Self::Iso(job) => job.name(),
            Self::Blob(job) => job.name(),
            Self::ImageDir(job) => job.name(),
            Self::Archive(job) => job.name(),
            Self::LocalImage(job) => job.name(),
            Self::RegistryConfig(job) => job.name(),
            Self::Rpm(job) => job.name(),
            Self::RpmMetadata(job) => job.name(),
            Self::RpmRepo(job) => job.name(),
            Self::BuiltRepo(job) => job.name(),
            Self::Unresolved(image) => format!("image {image}"),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Copy(_) => "copy",
            Self::Template(_) => "template",
            Self::Command(_) => "command",
            Self::Container(_) => "container",
            Self::Build(_) => "image-build",
            Self::Iso(_) => "iso",
            Self::Blob(_) => "pull-blob",
            Self::ImageDir(_) => "image-folder",
            Self::Archive(_) => "image-archive",
            Self::LocalImage(_) => "local-image",
            Self::RegistryConfig(_) => "registry-config",
            Self::Rpm(_) => "rpm",
            Self::RpmMetadata(_) => "rpm-metadata",
            Self::RpmRepo(_) | Self::BuiltRepo(_) => "rpm-repository",
            Self::Unresolved(_) => "unresolved-image",
        }
    }

    fn resource(&self) -> Resource {
        match self {
            Self::Blob(_) | Self::Rpm(_) | Self::RpmMetadata(_) => Resource::Network,
            _ => Resource::Local,
        }
    }

    fn fingerprint(&self) -> BoxFuture<'_, Result<Fingerprint, TaskError>> {
        match self {
            Self::Copy(job) => Box::pin(job.fingerprint()),
            Self::Template(job) => Box::pin(job.fingerprint()),
            Self::Command(job) => Box::pin(job.fingerprint()),
            Self::Container(job) => Box::pin(job.fingerprint()),
            Self::Build(job) => Box::pin(job.fingerprint()),
            Self::Iso(job) => Box::pin(job.fingerprint()),
            Self::LocalImage(job) => Box::pin(job.fingerprint()),
            Self::Blob(job) => ready(Ok(job.fingerprint())),
            Self::ImageDir(job) => ready(Ok(job.fingerprint())),
            Self::Archive(job) => ready(Ok(job.fingerprint())),
            Self::RegistryConfig(job) => ready(Ok(job.fingerprint())),
            Self::Rpm(job) => ready(Ok(job.fingerprint())),
            Self::RpmMetadata(job) => ready(Ok(job.fingerprint())),
            Self::RpmRepo(job) => ready(Ok(job.fingerprint())),
            Self::BuiltRepo(job) => Box::pin(job.fingerprint()),
            Self::Unresolved(image) => ready(Err(TaskError::Unresolved(image.clone()))),
        }
    }

    fn outputs_digest(&self) -> BoxFuture<'_, Option<String>> {
        match self {
            Self::Command(job) => Box::pin(job.outputs_digest()),
            _ => ready(None),
        }
    }

    fn missing_output(&self) -> Option<String> {
        match self {
            Self::Copy(job) => job.missing_output(),
            Self::Template(job) => job.missing_output(),
            Self::Command(job) => job.missing_output(),
            Self::Container(job) => job.missing_output(),
            Self::Build(job) => job.missing_output(),
            Self::Iso(job) => job.missing_output(),
            Self::Blob(job) => job.missing_output(),
            Self::ImageDir(job) => job.missing_output(),
            Self::Archive(job) => job.missing_output(),
            Self::LocalImage(job) => job.missing_output(),
            Self::RegistryConfig(job) => job.missing_output(),
            Self::Rpm(job) => job.missing_output(),
            Self::RpmMetadata(job) => job.missing_output(),
            Self::RpmRepo(job) => job.missing_output(),
            Self::BuiltRepo(job) => job.missing_output(),
            Self::Unresolved(_) => None,
        }
    }

    fn run(&self) -> BoxFuture<'_, Result<JobOutput, TaskError>> {
        match self {
            Self::Copy(job) => Box::pin(job.run()),
            Self::Template(job) => Box::pin(job.run()),
            Self::Command(job) => Box::pin(job.run()),
            Self::Container(job) => Box::pin(job.run()),
            Self::Build(job) => Box::pin(job.run()),
            Self::Iso(job) => Box::pin(job.run()),
            Self::Blob(job) => Box::pin(job.run()),
            Self::ImageDir(job) => Box::pin(job.run()),
            Self::Archive(job) => Box::pin(job.run()),
            Self::LocalImage(job) => Box::pin(job.run()),
            Self::RegistryConfig(job) => ready(job.run()),
            Self::Rpm(job) => Box::pin(job.run()),
            Self::RpmMetadata(job) => Box::pin(job.run()),
            Self::RpmRepo(job) => Box::pin(job.run()),
            Self::BuiltRepo(job) => Box::pin(job.run()),
            Self::Unresolved(image) => ready(Err(TaskError::Unresolved(image.clone()))),
        }
    }
}
