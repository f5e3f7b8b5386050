//! The top-level [`Error`]: wraps each layer's error and alone decides the exit code.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | the build failed: network, digest mismatch, a task failed; `diff --exit-code` found a difference |
//! | 2    | the recipe or the command line is invalid |
//! | 130  | interrupted (Ctrl-C, `SIGINT`) |
//! | 143  | stopped (`SIGTERM`, as `timeout`, systemd and CI runners send) |

use std::path::PathBuf;

use crate::engine::JobFailure;
use crate::inspect::InspectError;
use crate::plan::PlanError;
use crate::plan::lock::LockError;
use crate::plan::resolve::ResolveError;
use crate::recipe::RecipeError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("in recipe `{}`: {source}", recipe.display())]
    Plan {
        recipe: PathBuf,
        #[source]
        source: PlanError,
    },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("the cache: {}", crate::engine::render_chain(.0))]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
    #[error("{}", render_failures(.0))]
    BuildFailed(Vec<JobFailure>),
    #[error("interrupted")]
    Interrupted,
    #[error("stopped by SIGTERM")]
    Terminated,
    #[error("`{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// `diff --exit-code` found a difference; the diff itself is the output.
    #[error("the two differ")]
    Differ,
    #[error("`{}` failed verification:\n  {}", target.display(), problems.join("\n  "))]
    VerifyFailed {
        target: PathBuf,
        problems: Vec<String>,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_)
            | Self::Recipe(_)
            | Self::Plan {
                source: PlanError::Cycle(_) | PlanError::ServedRoots(_) | PlanError::Build { .. },
                ..
            }
            | Self::Lock(LockError::Missing { .. } | LockError::Stale { .. })
            | Self::Inspect(InspectError::NotRecognised { .. }) => 2,
            Self::Interrupted => 130,
            Self::Terminated => 143,
            Self::Plan { .. }
            | Self::Resolve(_)
            | Self::Lock(_)
            | Self::Store(_)
            | Self::Setup(_)
            | Self::BuildFailed(_)
            | Self::Io { .. }
            | Self::Inspect(_)
            | Self::Differ
            | Self::VerifyFailed { .. } => 1,
        }
    }
}

impl Error {
    /// Whether the exit code says it all and nothing should be printed (`diff --exit-code`).
    pub fn is_silent(&self) -> bool {
        matches!(self, Self::Differ)
    }
}

fn render_failures(failures: &[JobFailure]) -> String {
    let mut text = match failures.len() {
        1 => "1 task failed".to_owned(),
        n => format!("{n} tasks failed"),
    };
    for failure in failures {
        text.push_str("\n  ");
        text.push_str(&failure.to_string());
    }
    text
}
