//! [`Task`]: every sort of work a plan can hold, and [`TaskError`], what can go wrong in it.

use std::path::PathBuf;

use crate::engine::{BoxFuture, Fingerprint, Job, JobOutput};

use super::command::CommandJob;
use super::files::{CopyJob, TemplateJob};
use super::iso::IsoJob;

/// One node of the plan.
pub enum Task {
    /// Copy a file or a directory tree into the ISO tree.
    Copy(CopyJob),
    /// Render a template file into the ISO tree.
    Template(TemplateJob),
    /// Run a command of the recipe's `tasks:`.
    Command(CommandJob),
    /// Make the ISO from the finished tree.
    Iso(IsoJob),
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
    #[error("the command succeeded but did not write its declared output `{}`", path.display())]
    OutputMissing { path: PathBuf },
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
            Self::Command(_) | Self::Iso(_) => {}
        }
    }
}

impl Job for Task {
    type Error = TaskError;

    fn name(&self) -> String {
        match self {
            Self::Copy(job) => job.name(),
            Self::Template(job) => job.name(),
            Self::Command(job) => job.name(),
            Self::Iso(job) => job.name(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Copy(_) => "copy",
            Self::Template(_) => "template",
            Self::Command(_) => "command",
            Self::Iso(_) => "iso",
        }
    }

    fn fingerprint(&self) -> BoxFuture<'_, Result<Fingerprint, TaskError>> {
        match self {
            Self::Copy(job) => Box::pin(job.fingerprint()),
            Self::Template(job) => Box::pin(job.fingerprint()),
            Self::Command(job) => Box::pin(job.fingerprint()),
            Self::Iso(job) => Box::pin(job.fingerprint()),
        }
    }

    fn missing_output(&self) -> Option<String> {
        match self {
            Self::Copy(job) => job.missing_output(),
            Self::Template(job) => job.missing_output(),
            Self::Command(job) => job.missing_output(),
            Self::Iso(job) => job.missing_output(),
        }
    }

    fn run(&self) -> BoxFuture<'_, Result<JobOutput, TaskError>> {
        match self {
            Self::Copy(job) => Box::pin(job.run()),
            Self::Template(job) => Box::pin(job.run()),
            Self::Command(job) => Box::pin(job.run()),
            Self::Iso(job) => Box::pin(job.run()),
        }
    }
}
