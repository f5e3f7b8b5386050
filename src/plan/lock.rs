//! The lock file: what every registry image of a recipe resolved to, so a later build pulls
//! exactly the same bytes (`build --locked`).
//!
//! `isobuild lock RECIPE` writes `RECIPE.lock` beside the recipe (the recipe's file name with
//! `.lock` appended), YAML, images sorted by name and tag, blobs in manifest order:
//!
//! ```yaml
//! version: 1
//! platform: linux/amd64
//! images:
//! - name: alpine
//!   tag: 3.20.1
//!   reference: docker.io/library/alpine:3.20.1
//!   index_digest: sha256:…        # when the tag points to an index
//!   manifest_digest: sha256:…     # the platform's manifest
//!   blobs:
//!   - { digest: sha256:…, size: 1234 }
//! packages:                         # when the recipe has `packages:`
//!   repos:
//!   - { id: epel, baseurl: https://…/, repomd: sha256:…, keys: [sha256:…] }
//!   rpms:
//!   - { nevra: jq-1.6-3.el8.x86_64, repo: epel, location: Packages/j/jq-1.6-3.el8.x86_64.rpm,
//!       size: 204000, sha256: sha256:…,
//!       signing_key: 94e279eb8d8f25b21810adf121ea45ab2f86d6a1 }   # fingerprint of the key
//!                                                                 # that verified its header
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::packages::PackageSet;
use crate::recipe::Recipe;
use crate::reference::{Digest, ImageSource};
use crate::source::ResolvedImage;

/// The lock file format version this isobuild writes and reads.
const VERSION: u32 = 1;

const HEADER: &str = "# Written by `isobuild lock`: the exact images a build with `--locked` pulls.\n\
    # Commit it beside the recipe; run `isobuild lock` again to update it.\n";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    pub platform: String,
    pub images: Vec<LockedImage>,
    /// The recipe's `packages:` resolved: each repository's repomd.xml and every RPM that
    /// ships.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<PackageSet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    pub name: String,
    pub tag: String,
    /// The recipe's reference, normalised (`docker.io/library/alpine:3.20.1`).
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<Digest>,
    pub manifest_digest: Digest,
    pub blobs: Vec<LockedBlob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedBlob {
    pub digest: Digest,
    pub size: u64,
}

/// Why a lock file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("`--locked` needs the lock file `{}`, which does not exist; run `isobuild lock` first", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read the lock file `{}`: {message}", path.display())]
    Unreadable { path: PathBuf, message: String },
    #[error("the lock file `{}` does not match the recipe: {reason}; run `isobuild lock` again", path.display())]
    Stale { path: PathBuf, reason: String },
    #[error("cannot write the lock file `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the lock file of `recipe` lives.
pub fn lock_path(recipe: &Path) -> PathBuf {
    let mut name = recipe.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl LockFile {
    /// The lock file for `recipe` whose registry images resolved to `resolved` (by position
    /// in the recipe's image list; `None` for local images).
    pub fn new(recipe: &Recipe, resolved: &[Option<ResolvedImage>]) -> Self {
        let mut images: Vec<LockedImage> = recipe
            .images
            .list
            .iter()
            .zip(resolved)
            .filter_map(|(entry, image)| {
                let image = image.as_ref()?;
                Some(LockedImage {
                    name: entry.name.clone(),
                    tag: entry.tag.clone(),
                    reference: reference_of(&entry.source)?,
                    index_digest: image.index_digest.clone(),
                    manifest_digest: image.manifest_digest.clone(),
                    blobs: image
                        .blobs()
                        .map(|blob| LockedBlob {
                            digest: blob.digest.clone(),
                            size: blob.size,
                        })
                        .collect(),
                })
            })
            .collect();
        images.sort_by(|a, b| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));
        Self {
            version: VERSION,
            platform: recipe.images.platform.to_string(),
            images,
            packages: None,
        }
    }

    /// The locked packages, or why they do not describe `recipe`'s `packages:` (another
    /// repository list or base URL).
    pub fn packages_for(&self, recipe: &Recipe, path: &Path) -> Result<&PackageSet, LockError> {
        let stale = |reason: String| LockError::Stale {
            path: path.to_owned(),
            reason,
        };
        let Some(set) = &self.packages else {
            return Err(stale("it has no `packages`".into()));
        };
        let Some(packages) = &recipe.packages else {
            return Err(stale("it has `packages`, the recipe has none".into()));
        };
        // Built repositories are made from task outputs at build time: nothing to lock.
        let wanted: Vec<(&str, &str, usize)> = packages
            .repos
            .iter()
            .filter(|repo| !repo.is_built())
            .map(|repo| (repo.id.as_str(), repo.baseurl.as_str(), repo.gpgkeys.len()))
            .collect();
        let locked: Vec<(&str, &str, usize)> = set
            .repos
            .iter()
            .map(|repo| (repo.id.as_str(), repo.baseurl.as_str(), repo.keys.len()))
            .collect();
        if wanted != locked {
            return Err(stale(format!(
                "its package repositories (id, base URL, keys) are {locked:?}, the recipe's are {wanted:?}"
            )));
        }
        Ok(set)
    }

    /// Read the lock file at `path`.
    pub fn read(path: &Path) -> Result<Self, LockError> {
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(LockError::Missing {
                    path: path.to_owned(),
                });
            }
            Err(error) => {
                return Err(LockError::Unreadable {
                    path: path.to_owned(),
                    message: error.to_string(),
                });
            }
        };
        let lock: Self = serde_saphyr::from_str(&text).map_err(|error| LockError::Unreadable {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        if lock.version != VERSION {
            return Err(LockError::Unreadable {
                path: path.to_owned(),
                message: format!("version {} is not {VERSION}", lock.version),
            });
        }
        Ok(lock)
    }

    /// Write it to `path`, atomically.
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let failed = |source| LockError::Write {
            path: path.to_owned(),
            source,
        };
        let yaml = serde_saphyr::to_string(self).map_err(|e| failed(std::io::Error::other(e)))?;
        crate::fs::write_atomic(path, format!("{HEADER}{yaml}").as_bytes(), 0o644).map_err(failed)
    }

    /// The locked entry for each image of `recipe` (`None` for local images), or why the lock
    /// file does not describe this recipe.
    pub fn entries_for(
        &self,
        recipe: &Recipe,
        path: &Path,
    ) -> Result<Vec<Option<&LockedImage>>, LockError> {
        let stale = |reason: String| LockError::Stale {
            path: path.to_owned(),
            reason,
        };
        if self.platform != recipe.images.platform.to_string() {
            return Err(stale(format!(
                "it was made for platform {}, the build is for {}",
                self.platform, recipe.images.platform
            )));
        }
        let mut used = vec![false; self.images.len()];
        let mut entries = Vec::new();
        for entry in &recipe.images.list {
            let Some(reference) = reference_of(&entry.source) else {
                entries.push(None);
                continue;
            };
            let found = self
                .images
                .iter()
                .position(|locked| locked.name == entry.name && locked.tag == entry.tag)
                .ok_or_else(|| {
                    stale(format!("image `{}:{}` is not in it", entry.name, entry.tag))
                })?;
            let locked = &self.images[found];
            if locked.reference != reference {
                return Err(stale(format!(
                    "image `{}:{}` comes from `{reference}`, the lock file says `{}`",
                    entry.name, entry.tag, locked.reference
                )));
            }
            used[found] = true;
            entries.push(Some(locked));
        }
        if let Some(extra) = used.iter().position(|used| !used) {
            let extra = &self.images[extra];
            return Err(stale(format!(
                "it has image `{}:{}`, which the recipe no longer lists",
                extra.name, extra.tag
            )));
        }
        Ok(entries)
    }
}

/// The normalised registry reference of a source, `None` for local sources.
fn reference_of(source: &ImageSource) -> Option<String> {
    match source {
        ImageSource::Registry(reference) => Some(reference.to_string()),
        _ => None,
    }
}
