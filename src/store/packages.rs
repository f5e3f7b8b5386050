//! Package records (`<cache>/packages-v1/`): which cached blobs the last package resolution
//! (or `--locked` build) of each recipe uses, so `cache gc` keeps a recipe's RPMs and
//! repository metadata as it keeps the blobs of recorded tags.
//!
//! One record per recipe file, named by the sha256 of its absolute path, replaced whenever
//! that recipe's packages are resolved again (so the RPMs of an older resolution become
//! unreachable), written atomically. A record whose recipe file no longer exists keeps
//! nothing: `cache gc` deletes it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::reference::Digest;

/// The records' folder below the cache root.
pub(super) const PACKAGES: &str = "packages-v1";

/// What one recipe's packages use in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagesRecord {
    /// The recipe file, absolute.
    pub recipe: PathBuf,
    /// Every blob: repomd.xml, the metadata files it lists, key files, RPMs.
    pub blobs: Vec<Digest>,
}

pub(super) fn record_path(root: &Path, recipe: &Path) -> PathBuf {
    let key = Digest::of(recipe.as_os_str().as_encoded_bytes());
    root.join(PACKAGES)
        .join(format!("{}.json", &key.hex()[..32]))
}

pub(super) fn write(root: &Path, record: &PackagesRecord) -> Result<(), StoreError> {
    let dir = root.join(PACKAGES);
    fs_err::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let path = record_path(root, &record.recipe);
    let mut json = serde_json::to_vec_pretty(record).expect("records always serialize");
    json.push(b'\n');
    crate::fs::write_atomic(&path, &json, 0o644).map_err(|e| StoreError::io(&path, e))
}

/// Every readable record, with its file; unreadable ones come back as `None`.
pub(super) fn read_all(root: &Path) -> Result<Vec<(PathBuf, Option<PackagesRecord>)>, StoreError> {
    let dir = root.join(PACKAGES);
    let entries = match fs_err::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    let mut records = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| StoreError::io(&dir, e))?.path();
        let record = fs_err::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        records.push((path, record));
    }
    records.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(records)
}
