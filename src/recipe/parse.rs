//! [`load`] and [`load_str`]: read a recipe file (or take its text) and hand it to the
//! checks, with paths set up for problems.
//!
//! The stages are: the YAML text becomes a located [`super::node::Node`] tree
//! (serde-saphyr), the tree becomes the raw serde types of [`super::raw`] (through
//! [`super::de`], which records every problem instead of stopping), and [`super::check`]
//! turns those into the validated [`Recipe`], collecting every remaining problem.

use std::collections::BTreeMap;
use std::path::Path;

use super::check::{Origin, check};
use super::{Recipe, RecipeError};

pub(super) fn load(
    path: &Path,
    overrides: &BTreeMap<String, String>,
    epoch: Option<i64>,
) -> Result<Recipe, RecipeError> {
    let read_error = |source| RecipeError::Read {
        path: path.to_owned(),
        source,
    };
    // Bounded: a recipe path on `/dev/zero` (or a huge file) must not fill the memory.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            fs_err::File::open(path).map_err(read_error)?,
            RECIPE_LIMIT + 1,
        ),
        &mut bytes,
    )
    .map_err(read_error)?;
    let problem = |line: usize, column: usize, message: String| RecipeError::Invalid {
        problems: vec![super::Problem {
            file: shown(path),
            line,
            column,
            field: String::new(),
            message,
        }],
    };
    if bytes.len() as u64 > RECIPE_LIMIT {
        return Err(problem(
            1,
            1,
            format!("the recipe is larger than {RECIPE_LIMIT} bytes; is it the right file?"),
        ));
    }
    let source = String::from_utf8(bytes).map_err(|error| {
        let end = error.utf8_error().valid_up_to();
        // Valid up to `end` by definition.
        let valid = std::str::from_utf8(&error.as_bytes()[..end]).unwrap_or_default();
        let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
        problem(
            valid.matches('\n').count() + 1,
            valid[line_start..].chars().count() + 1,
            format!(
                "byte 0x{:02x} is not UTF-8; a recipe is UTF-8 text",
                error.as_bytes()[end]
            ),
        )
    })?;
    load_str(&source, path, overrides, epoch)
}

/// The largest recipe read: a real one is a few KiB.
const RECIPE_LIMIT: u64 = 16 << 20;

/// `path` relative to the current directory when under it, as problems show paths.
fn shown(path: &Path) -> std::path::PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_owned))
        .unwrap_or_else(|| path.to_owned())
}

pub(super) fn load_str(
    source: &str,
    path: &Path,
    overrides: &BTreeMap<String, String>,
    epoch: Option<i64>,
) -> Result<Recipe, RecipeError> {
    let origin = Origin {
        epoch_override: epoch,
        file: path.to_owned(),
        base_dir: path.parent().map(Path::to_owned).unwrap_or_default(),
        // Only used to shorten the paths shown in problems; an unreadable current
        // directory just means absolute paths.
        cwd: std::env::current_dir().ok(),
    };
    check(source, &origin, overrides).map_err(|problems| RecipeError::Invalid { problems })
}
