//! RPM repository records (`<cache>/repos-v1/<sha256 of the repomd.xml URL>.json`): the
//! sha256 of the `repodata/repomd.xml` last read from a repository URL, so that an
//! `--offline` run can resolve packages from the metadata already in the cache, as tag
//! records let it find what an image tag last pointed to.
//!
//! The repomd.xml itself is a blob (filed by its sha256 once fetched); a record only names
//! it. Like tag records, records are a cache of what a server answered, never a source of
//! truth: a lock file pins repomd digests itself, and a record whose blob is gone is as good
//! as none.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::{Store, StoreError};
use crate::reference::Digest;

/// The records' folder below the cache root.
pub(super) const REPOS: &str = "repos-v1";

/// What a repository URL served last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoRecord {
    /// The repomd.xml URL as the recipe names it (before any `--mirror`).
    pub url: String,
    /// sha256 of the repomd.xml bytes, a blob of the cache.
    pub repomd: Digest,
    /// Key URL → sha256 of the key file (a blob) fetched with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, Digest>,
    /// Seconds since the Unix epoch.
    pub fetched_at: i64,
}

impl Store {
    fn repo_record_path(&self, url: &str) -> PathBuf {
        // URLs carry characters that are not safe in file names: name the record by a hash.
        let name = hex::encode(sha2::Sha256::digest(url.as_bytes()));
        self.root().join(REPOS).join(format!("{name}.json"))
    }

    /// Remember that `record.url` served the repomd.xml `record.repomd`.
    pub fn record_repo(&self, record: &RepoRecord) -> Result<(), StoreError> {
        let path = self.repo_record_path(&record.url);
        let mut json =
            serde_json::to_vec_pretty(record).map_err(|source| StoreError::CorruptRepoRecord {
                path: path.clone(),
                source,
            })?;
        json.push(b'\n');
        crate::fs::write_atomic(&path, &json, 0o644).map_err(|e| StoreError::io(&path, e))
    }

    /// What `url` served when last fetched, if it ever was (and the record is for it).
    pub fn lookup_repo(&self, url: &str) -> Result<Option<RepoRecord>, StoreError> {
        let path = self.repo_record_path(url);
        match fs_err::read(&path) {
            Ok(bytes) => {
                let record: RepoRecord = serde_json::from_slice(&bytes)
                    .map_err(|source| StoreError::CorruptRepoRecord { path, source })?;
                Ok((record.url == url).then_some(record))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }
}
