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
    let source = fs_err::read_to_string(path).map_err(|source| RecipeError::Read {
        path: path.to_owned(),
        source,
    })?;
    load_str(&source, path, overrides, epoch)
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
