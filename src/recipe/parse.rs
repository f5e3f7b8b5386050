//! YAML → [`Recipe`]: deserialisation with locations, then validation of every field.
//! (placeholder until the recipe loader lands)

use std::collections::BTreeMap;
use std::path::Path;

use super::{Recipe, RecipeError};

pub(super) fn load(
    path: &Path,
    _overrides: &BTreeMap<String, String>,
) -> Result<Recipe, RecipeError> {
    Err(RecipeError::Read {
        path: path.to_owned(),
        source: std::io::Error::other("recipe loader not written yet"),
    })
}
