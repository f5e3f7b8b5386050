//! The content-addressed cache: every manifest, index, config and layer isobuild has ever
//! verified, stored once by digest and shared by every recipe and every concurrent run.
//!
//! This module owns the on-disk tree below; nothing else writes into it. Turning cached
//! blobs into an ISO tree is the layout's job, getting them from a registry is
//! [`crate::source`]'s.
//!
//! # On-disk tree
//!
//! ```text
//! <cache>/CACHEDIR.TAG                          marks the folder for backup tools
//! <cache>/lock                                  inter-process lock: runs share it, `cache gc` owns it
//! <cache>/blobs-v1/sha256/<hex>                 verified blobs, mode 0644: manifests, indexes,
//!                                               configs and layers, all by digest
//! <cache>/tags-v1/<registry>/<repository>/<tag>.json
//!                                               last resolution of a tag ([`TagRecord`])
//! <cache>/repos-v1/<sha256 of repomd.xml URL>.json
//!                                               the repomd.xml an RPM repository URL last
//!                                               served ([`RepoRecord`])
//! <cache>/digests-v1/<sha256 of canonical path>.json
//!                                               the sha256 of a local file (an ISO) and the
//!                                               identity it had then ([`DigestMemo`])
//! <cache>/packages-v1/<sha256 of recipe path, 32 hex>.json
//!                                               the blobs (RPMs, repository metadata, keys)
//!                                               a recipe's packages last used ([`PackagesRecord`])
//! <cache>/builds/<sha256 of recipe path, 16 hex>/<name>_<tag>.oci.tar
//!                                               images a recipe's `build:` entries made
//! <cache>/state-v1/<32 hex>/                    task fingerprints of one recipe and tree
//! <cache>/tmp/<hex>.partial                     a download in progress, resumable
//! <cache>/tmp/<hex>.<random>.partial            a second concurrent download of the same blob
//! <cache>/tmp/put-<random>                      a small blob being written
//! <cache>/tmp/.*.isobuild-tmp, .tmp*            a local image's layers and tarballs being written
//! ```
//!
//! A run killed outright leaves its files in `tmp/` (and perhaps a half-written tag record,
//! `*.isobuild-tmp`, in `tags-v1/`); the next run that finds the cache unused by any other
//! process deletes all of them but the non-empty resumable partials.
//!
//! The `-v1` suffixes version the formats: a change to what lives in a folder (another hash
//! layout, another tag record shape) bumps the name, so an old isobuild never misreads a new
//! cache and the other way round.
//!
//! # Flow of a blob
//!
//! 1. [`Store::blob_writer`] waits for any other task of this process writing the same
//!    digest, then returns `None` if the blob is already present.
//! 2. Otherwise it opens `tmp/<hex>.partial` and takes an exclusive `flock` on it. If another
//!    process holds it, that process is downloading the blob: the writer waits until the
//!    blob appears (then `None`) or the lock is freed (then it resumes that partial), so two
//!    runs sharing a cache download each blob once. Only if the partial keeps being
//!    replaced under it does it write a uniquely named private partial instead.
//! 3. Bytes already in a partial left by an interrupted run are hashed again, so
//!    [`BlobWriter::offset`] tells the caller where to resume (an HTTP `Range` request).
//! 4. [`BlobWriter::finish`] checks size and digest, flushes, and renames the file into
//!    `blobs-v1/`. On a mismatch the partial is deleted and nothing enters the store.
//!
//! # Invariants
//!
//! - A file under `blobs-v1/sha256/` always hashes to its name: it is renamed into place
//!   only after verification, and renames within one filesystem are atomic.
//! - A blob file, once there, is never replaced (renames into `blobs-v1/` refuse to
//!   overwrite): the ISO tree hard-links it, and a second inode for the same digest would
//!   split files that must share one, which changes the ISO xorriso writes. Small blobs read
//!   back with [`Store::read_blob`] are verified again.
//! - Every run holds a shared lock on `<cache>/lock` for as long as its [`Store`] lives;
//!   [`Store::gc`] needs [`Store::open_exclusive`], so it never deletes a blob a running
//!   build is about to hard-link.
//! - A digest memo entry is trusted only for the exact file identity it records (path, device,
//!   inode, size, mtime and ctime in ns); it needs no lock, as entries are replaced atomically
//!   and never read by a build. (A temporary file of a run killed while writing one stays:
//!   its size is a few hundred bytes, and an `inspect` may be writing it without the lock.)
//! - Tag records are a cache of registry answers, never a source of truth for a pinned
//!   digest: they only let `--offline` runs find what a tag last pointed to.
//!
//! # What `cache gc` keeps
//!
//! Blobs reachable from a tag record ([`Store::reachable_from_tags`]) or from the package
//! record of a recipe file that still exists ([`Store::reachable_from_packages`]); every
//! other blob and every partial download goes. Package records of recipes that are gone go
//! too, and digest memo entries whose file is gone or changed. `builds/` and `state-v1/`
//! go whole: without fingerprints every task runs again, and a build task writes its image
//! again then, so an old build output would only take space.

mod blob;
mod digests;
mod lock;
mod packages;
mod repos;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};

pub use blob::{BlobWriter, FinishError};
pub use digests::{DigestMemo, FileIdentity};
use lock::LockFile;
pub use packages::PackagesRecord;
pub use repos::RepoRecord;

use crate::reference::{Digest, ImageRef};

/// Errors of the cache.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cache I/O error on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob `{expected}` has the wrong content: its bytes hash to `{actual}`")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob `{digest}` has the wrong size: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob `{digest}` is not in the cache `{}`", root.display())]
    MissingBlob { digest: Digest, root: PathBuf },
    #[error("cached blob `{}` does not match its digest and was removed; it will be fetched again", path.display())]
    CorruptBlob { path: PathBuf },
    #[error("tag record `{}` is unreadable", path.display())]
    CorruptTagRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("repository record `{}` is unreadable", path.display())]
    CorruptRepoRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the cache `{}` is in use by another isobuild process", root.display())]
    Busy { root: PathBuf },
    #[error(
        "`{}` is not an isobuild cache (it has no CACHEDIR.TAG written by isobuild) and is not empty; give a new or empty folder",
        root.display()
    )]
    NotACache { root: PathBuf },
    #[error(
        "`{}` must be a folder of the cache, owned by you, not a symbolic link or anything else",
        path.display()
    )]
    NotPrivate { path: PathBuf },
    #[error("cleaning the cache needs exclusive access (open it with `Store::open_exclusive`)")]
    NotExclusive,
}

impl StoreError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

const BLOBS: &str = "blobs-v1/sha256";
const TAGS: &str = "tags-v1";
const TMP: &str = "tmp";
const LOCK: &str = "lock";
const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
/// Every name isobuild gives an entry of the cache folder itself.
const OWN_NAMES: &[&str] = &[
    BLOBS_DIR,
    TAGS,
    TMP,
    LOCK,
    STATE,
    CACHEDIR_TAG,
    packages::PACKAGES,
    BUILDS,
    "digests-v1",
];
/// Images `build:` entries made (see [`crate::plan::containers::build_output`]).
const BUILDS: &str = "builds";
const BLOBS_DIR: &str = "blobs-v1";
/// Task fingerprints (the engine's, see [`crate::engine::FreshnessStore`]).
const STATE: &str = "state-v1";
const CACHEDIR_TAG_CONTENT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
    # This file is a cache directory tag created by isobuild.\n\
    # For information about cache directory tags see https://bford.info/cachedir/\n";
/// Blobs are world-readable so that an ISO tree hard-linking them can be served by nginx
/// workers running as `nobody`, and carry the mode the ISO tree uses for every file.
const BLOB_MODE: u32 = 0o644;
/// See [`Store::set_stalled_after`]: two minutes without a byte.
const DEFAULT_STALLED_AFTER_MS: u64 = 120_000;

/// The cache. Cheap to clone; clones share the lock and the in-process writer table.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    exclusive: bool,
    /// Held for the store's lifetime; dropping it releases the inter-process lock.
    _lock: LockFile,
    /// One async mutex per digest being written by this process, so two tasks wanting the
    /// same blob download it once: the second waits, then finds it present.
    writers: Mutex<HashMap<Digest, Weak<tokio::sync::Mutex<()>>>>,
    /// Blobs this process wrote after verifying them, or hashed again since: the ones
    /// [`Store::check_blob`] trusts without reading them.
    verified: Mutex<HashSet<Digest>>,
    /// How long a partial another process holds may go without growing before this one
    /// stops waiting for it and downloads the blob itself (milliseconds).
    stalled_after_ms: std::sync::atomic::AtomicU64,
}

/// What a tag pointed to when it was last resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// The reference as resolved (`docker.io/library/alpine:3.20`), for people reading `ls`.
    pub reference: String,
    /// Digest of what the tag points to: an index or a manifest.
    pub digest: Digest,
    pub media_type: String,
    /// When `digest` is an index: the manifest chosen for each platform resolved so far
    /// (`linux/amd64` → digest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub platforms: BTreeMap<String, Digest>,
    /// Seconds since the Unix epoch.
    pub resolved_at: i64,
}

/// One verified blob in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
}

/// Everything the cache holds, for `isobuild cache ls`.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Sorted by reference.
    pub tags: Vec<TagRecord>,
    /// Sorted by digest.
    pub blobs: Vec<BlobEntry>,
    /// Interrupted or running downloads, with their current size.
    pub partials: Vec<(PathBuf, u64)>,
}

impl Listing {
    /// Bytes used by verified blobs.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|blob| blob.size).sum()
    }
}

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed_blobs: usize,
    pub removed_partials: usize,
    /// Package records whose recipe is gone.
    pub removed_records: usize,
    /// Digest memo entries that no longer hold.
    pub removed_memos: usize,
    /// Whether `builds/` was there and was removed.
    pub removed_builds: bool,
    pub freed_bytes: u64,
}

impl Store {
    /// Open (creating it if needed) the cache at `root`, shared with other running
    /// isobuild processes. Blocks while a `cache gc` holds the cache.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_with(root, false)
    }

    /// Open the cache for `cache gc`: fails with [`StoreError::Busy`] instead of waiting when
    /// another process uses it.
    pub fn open_exclusive(root: &Path) -> Result<Self, StoreError> {
        Self::open_with(root, true)
    }

    fn open_with(root: &Path, exclusive: bool) -> Result<Self, StoreError> {
        let tag = root.join(CACHEDIR_TAG);
        let ours = fs_err::read(&tag).is_ok_and(|bytes| bytes == CACHEDIR_TAG_CONTENT.as_bytes());
        if !ours {
            // A folder isobuild did not make is not isobuild's to clean (`--cache-dir .`).
            // One holding only what isobuild puts in a cache is: a recipe without images
            // writes its fingerprints (`state-v1/`) without ever opening the store.
            let ours_only = match fs_err::read_dir(root) {
                // A temporary file is another run writing the tag at this very moment.
                Ok(entries) => entries.filter_map(Result::ok).all(|entry| {
                    entry.file_name().to_str().is_some_and(|name| {
                        OWN_NAMES.contains(&name)
                            || (name.starts_with('.') && name.ends_with(crate::fs::TEMP_SUFFIX))
                    })
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                Err(e) => return Err(StoreError::io(root, e)),
            };
            if !ours_only {
                return Err(StoreError::NotACache {
                    root: root.to_owned(),
                });
            }
            fs_err::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
            crate::fs::write_atomic(&tag, CACHEDIR_TAG_CONTENT.as_bytes(), 0o644)
                .map_err(|e| StoreError::io(&tag, e))?;
        }
        for dir in [BLOBS, TAGS] {
            let path = root.join(dir);
            fs_err::create_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        private_dir(&root.join(TMP))?;
        let lock = if exclusive {
            LockFile::try_exclusive(&root.join(LOCK))?.ok_or_else(|| StoreError::Busy {
                root: root.to_owned(),
            })?
        } else {
            LockFile::shared(&root.join(LOCK), || remove_strays(root))?
        };
        Ok(Self {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                exclusive,
                _lock: lock,
                writers: Mutex::default(),
                verified: Mutex::default(),
                stalled_after_ms: std::sync::atomic::AtomicU64::new(DEFAULT_STALLED_AFTER_MS),
            }),
        })
    }

    /// Stop waiting for another process's download of a blob (and fetch it here) once its
    /// partial has not grown for `limit`: that process may be stopped (`SIGSTOP`, a
    /// suspended laptop) or stuck, and would otherwise hold this run forever.
    pub fn set_stalled_after(&self, limit: std::time::Duration) {
        let millis = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        self.inner
            .stalled_after_ms
            .store(millis.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn stalled_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.inner
                .stalled_after_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where the blob `digest` lives (whether or not it is there yet).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.root.join(BLOBS).join(digest.hex())
    }

    /// Whether the blob is in the cache. Presence is enough: nothing unverified is ever
    /// renamed into `blobs-v1/`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Read a small blob (a manifest or an index), verifying it again. A corrupt file is
    /// removed, so the next run fetches it afresh.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let bytes = match fs_err::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: digest.clone(),
                    root: self.inner.root.clone(),
                });
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        if Digest::of(&bytes) != *digest {
            // Best effort: if the removal fails, the error below still stops the run.
            let _ = fs_err::remove_file(&path);
            return Err(StoreError::CorruptBlob { path });
        }
        Ok(bytes)
    }

    /// Store `bytes` as blob `digest` after checking they hash to it.
    pub fn put_blob_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_verified(digest, Digest::of(bytes), || {
            let tmp = self.tmp_dir();
            let mut file = tempfile::Builder::new()
                .prefix("put-")
                .tempfile_in(&tmp)
                .map_err(|e| StoreError::io(&tmp, e))?;
            std::io::Write::write_all(&mut file, bytes)
                .map_err(|e| StoreError::io(file.path(), e))?;
            Ok(file)
        })
    }

    /// Move a finished temporary file into the cache as blob `digest`, after hashing it again
    /// (nothing enters the cache on a caller's word). The file should be in the cache's
    /// filesystem so that this is a rename.
    pub fn adopt_file(
        &self,
        digest: &Digest,
        file: tempfile::NamedTempFile,
    ) -> Result<(), StoreError> {
        let actual = Digest::of_file(file.path()).map_err(|e| StoreError::io(file.path(), e))?;
        self.put_verified(digest, actual, || Ok(file))
    }

    /// Move the file `make` gives into place as blob `digest`, if `actual` (its content's
    /// digest) is `digest` and the blob is not there yet.
    fn put_verified(
        &self,
        digest: &Digest,
        actual: Digest,
        make: impl FnOnce() -> Result<tempfile::NamedTempFile, StoreError>,
    ) -> Result<(), StoreError> {
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let dest = self.blob_path(digest);
        if dest.is_file() {
            return Ok(());
        }
        let placed = crate::fs::persist_noclobber(make()?, &dest, BLOB_MODE)
            .map_err(|e| StoreError::io(&dest, e))?;
        if placed {
            self.mark_verified(digest);
        }
        Ok(())
    }

    /// Remember that the blob file of `digest` was just written from verified bytes.
    pub fn mark_verified(&self, digest: &Digest) {
        self.inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(digest.clone());
    }

    /// Whether this process wrote or checked the blob `digest` (see [`Store::check_blob`]).
    pub fn is_verified(&self, digest: &Digest) -> bool {
        self.inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(digest)
    }

    /// Check the cached blob `digest` before it goes into an ISO tree: a regular file (not a
    /// link to `/etc/passwd`), with content that hashes to its name unless this process
    /// wrote or checked it already. Another process or a user may have changed a cache file
    /// since it was verified; a wrong one is removed (the next run fetches it again).
    pub fn check_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        let metadata = match fs_err::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: digest.clone(),
                    root: self.inner.root.clone(),
                });
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let trusted = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(digest);
        let sound = metadata.file_type().is_file()
            && (trusted
                || Digest::of_file(&path).map_err(|e| StoreError::io(&path, e))? == *digest);
        if !sound {
            // Best effort: if the removal fails, the error still stops the run.
            let _ = fs_err::remove_file(&path);
            return Err(StoreError::CorruptBlob { path });
        }
        self.mark_verified(digest);
        Ok(())
    }

    /// A verifying writer for blob `digest`, or `None` when the blob is already in the cache
    /// (possibly because another task of this process just wrote it while this call waited).
    ///
    /// `expected_size`, when known, is enforced while writing: a body longer than announced is
    /// cut off at the first extra byte.
    pub async fn blob_writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Option<BlobWriter>, StoreError> {
        let mutex = self.writer_mutex(digest);
        let guard = mutex.lock_owned().await;
        if self.has_blob(digest) {
            return Ok(None);
        }
        let Some(writer) = BlobWriter::open(self, digest.clone(), expected_size, guard).await?
        else {
            return Ok(None);
        };
        // Another process may have finished this blob while we opened our partial (the
        // writer then removes the empty partial it made as it drops).
        if self.has_blob(digest) {
            return Ok(None);
        }
        Ok(Some(writer))
    }

    fn writer_mutex(&self, digest: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut writers = self
            .inner
            .writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mutex) = writers.get(digest).and_then(Weak::upgrade) {
            return mutex;
        }
        // Forget digests nobody is writing any more, so the table stays small.
        writers.retain(|_, weak| weak.strong_count() > 0);
        let mutex = Arc::new(tokio::sync::Mutex::new(()));
        writers.insert(digest.clone(), Arc::downgrade(&mutex));
        mutex
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.inner.root.join(TMP)
    }

    fn tag_path(&self, image: &ImageRef) -> PathBuf {
        // Registry hosts, repository components and tags are validated by `ImageRef` to
        // characters that are safe in file names (`:` of a port included), and never `..`.
        self.inner
            .root
            .join(TAGS)
            .join(&image.registry)
            .join(&image.repository)
            .join(format!("{}.json", image.tag_or_latest()))
    }

    /// Remember what `image`'s tag points to.
    pub fn record_tag(&self, image: &ImageRef, record: &TagRecord) -> Result<(), StoreError> {
        let path = self.tag_path(image);
        let mut json =
            serde_json::to_vec_pretty(record).map_err(|e| StoreError::CorruptTagRecord {
                path: path.clone(),
                source: e,
            })?;
        json.push(b'\n');
        crate::fs::write_atomic(&path, &json, 0o644).map_err(|e| StoreError::io(&path, e))
    }

    /// What `image`'s tag pointed to when last resolved, if it ever was.
    pub fn lookup_tag(&self, image: &ImageRef) -> Result<Option<TagRecord>, StoreError> {
        let path = self.tag_path(image);
        match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::CorruptTagRecord { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Every tag record, blob and partial download in the cache.
    pub fn ls(&self) -> Result<Listing, StoreError> {
        let mut listing = Listing::default();
        let tags = self.inner.root.join(TAGS);
        for entry in walkdir::WalkDir::new(&tags) {
            let entry = entry.map_err(|e| walk_error(&tags, e))?;
            if entry.file_type().is_file()
                && entry.path().extension().is_some_and(|ext| ext == "json")
            {
                let bytes =
                    fs_err::read(entry.path()).map_err(|e| StoreError::io(entry.path(), e))?;
                let record = serde_json::from_slice(&bytes).map_err(|source| {
                    StoreError::CorruptTagRecord {
                        path: entry.path().to_owned(),
                        source,
                    }
                })?;
                listing.tags.push(record);
            }
        }
        listing
            .tags
            .sort_by(|a: &TagRecord, b| a.reference.cmp(&b.reference));
        listing.blobs = self.blobs()?;
        listing.partials = self.partials()?;
        Ok(listing)
    }

    fn blobs(&self) -> Result<Vec<BlobEntry>, StoreError> {
        let dir = self.inner.root.join(BLOBS);
        let mut blobs = Vec::new();
        for entry in fs_err::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            // Anything not named by a digest is not ours to list (or to delete).
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|name| Digest::from_hex(name).ok())
            else {
                continue;
            };
            let size = entry
                .metadata()
                .map_err(|e| StoreError::io(&entry.path(), e))?
                .len();
            blobs.push(BlobEntry { digest, size });
        }
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(blobs)
    }

    fn partials(&self) -> Result<Vec<(PathBuf, u64)>, StoreError> {
        let dir = self.tmp_dir();
        let mut partials = Vec::new();
        for entry in fs_err::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            // A file can vanish between listing and stat when a download finishes meanwhile.
            if let Ok(metadata) = entry.metadata() {
                partials.push((entry.path(), metadata.len()));
            }
        }
        partials.sort();
        Ok(partials)
    }

    /// The digests reachable from recorded tags: each tag's index or manifest, the manifests
    /// an index lists, and each manifest's config and layers. Blobs that are missing are
    /// still listed (an index whose other platforms were never fetched, say).
    pub fn reachable_from_tags(&self) -> Result<HashSet<Digest>, StoreError> {
        let mut reachable = HashSet::new();
        // Only manifests and indexes are read (never layers, which can be large): tags point to
        // them, and an index lists manifests; configs and layers end the walk.
        let mut manifests: Vec<Digest> =
            self.ls()?.tags.into_iter().map(|tag| tag.digest).collect();
        while let Some(digest) = manifests.pop() {
            if !reachable.insert(digest.clone()) {
                continue;
            }
            let Ok(bytes) = self.read_blob(&digest) else {
                continue;
            };
            if let Ok(refs) = serde_json::from_slice::<References>(&bytes) {
                manifests.extend(refs.manifests.into_iter().map(|entry| entry.digest));
                reachable.extend(
                    refs.config
                        .into_iter()
                        .chain(refs.layers)
                        .map(|descriptor| descriptor.digest),
                );
            }
        }
        Ok(reachable)
    }

    /// Record which blobs the packages of the recipe `record.recipe` use (replacing its
    /// previous record).
    pub fn record_packages(&self, record: &PackagesRecord) -> Result<(), StoreError> {
        packages::write(&self.inner.root, record)
    }

    /// The package record of `recipe`, if any.
    pub fn packages_record(&self, recipe: &Path) -> Option<PackagesRecord> {
        let path = packages::record_path(&self.inner.root, recipe);
        serde_json::from_slice(&fs_err::read(path).ok()?).ok()
    }

    /// The blobs the package records of existing recipe files name.
    pub fn reachable_from_packages(&self) -> Result<HashSet<Digest>, StoreError> {
        Ok(packages::read_all(&self.inner.root)?
            .into_iter()
            .filter_map(|(_, record)| record)
            .filter(|record| record.recipe.is_file())
            .flat_map(|record| record.blobs)
            .collect())
    }

    /// Delete every blob not in `keep`, every partial download, the package records of
    /// recipes that are gone, digest memo entries that no longer hold, and `builds/`. Needs
    /// a store opened with [`Store::open_exclusive`], so no other run is using what is
    /// deleted.
    pub fn gc(&self, keep: &HashSet<Digest>) -> Result<GcReport, StoreError> {
        if !self.inner.exclusive {
            return Err(StoreError::NotExclusive);
        }
        let mut report = GcReport::default();
        for (path, record) in packages::read_all(&self.inner.root)? {
            if !record.is_some_and(|record| record.recipe.is_file()) {
                fs_err::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                report.removed_records += 1;
            }
        }
        report.removed_memos = DigestMemo::in_cache(&self.inner.root).prune()?;
        let builds = self.inner.root.join(BUILDS);
        if builds.exists() {
            fs_err::remove_dir_all(&builds).map_err(|e| StoreError::io(&builds, e))?;
            report.removed_builds = true;
        }
        for blob in self.blobs()? {
            if !keep.contains(&blob.digest) {
                let path = self.blob_path(&blob.digest);
                fs_err::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                report.removed_blobs += 1;
                report.freed_bytes += blob.size;
            }
        }
        for (path, size) in self.partials()? {
            fs_err::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            report.removed_partials += 1;
            report.freed_bytes += size;
        }
        Ok(report)
    }
}

/// Make `dir` (the cache's `tmp/`) if missing, readable by its owner only, so no other user
/// can plant a file (a link to theirs, say) where a download goes; an existing one must be a
/// real folder owned by the caller.
fn private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io(dir, e)),
    }
    let metadata = fs_err::symlink_metadata(dir).map_err(|e| StoreError::io(dir, e))?;
    if !metadata.is_dir() || metadata.uid() != rustix::process::geteuid().as_raw() {
        return Err(StoreError::NotPrivate {
            path: dir.to_owned(),
        });
    }
    Ok(())
}

/// Whether `name` is one isobuild gives a file in `tmp/` (see the tree above).
fn is_tmp_name(name: &str) -> bool {
    let partial = name.strip_suffix(".partial").is_some_and(|stem| {
        let hex = stem.split_once('.').map_or(stem, |(hex, _)| hex);
        Digest::from_hex(hex).is_ok()
    });
    partial
        || name.starts_with("put-")
        || name.starts_with(".tmp")
        || (name.starts_with('.') && name.ends_with(crate::fs::TEMP_SUFFIX))
}

/// Delete what runs killed outright left (a killed process deletes nothing): in `tmp/`,
/// temporary files of small blobs and local images, private partials, empty partials (only
/// non-empty resumable partials, `<hex>.partial`, stay for the next download to resume);
/// in `tags-v1/`, half-written tag records. Called only when no other process uses the
/// cache.
fn remove_strays(root: &Path) -> Result<(), StoreError> {
    let tags = root.join(TAGS);
    crate::fs::remove_temporaries(&tags).map_err(|e| StoreError::io(&tags, e))?;
    let tmp = &root.join(TMP);
    for entry in fs_err::read_dir(tmp).map_err(|e| StoreError::io(tmp, e))? {
        let entry = entry.map_err(|e| StoreError::io(tmp, e))?;
        let path = entry.path();
        // Only what isobuild names; anything else in `tmp/` is not ours to delete.
        if !entry.file_name().to_str().is_some_and(is_tmp_name) {
            continue;
        }
        // Not following links: a link is deleted, never what it points to.
        let metadata = entry.metadata().map_err(|e| StoreError::io(&path, e))?;
        let resumable = entry
            .file_name()
            .to_str()
            .and_then(|name| name.strip_suffix(".partial"))
            .is_some_and(|hex| Digest::from_hex(hex).is_ok());
        if resumable && metadata.is_file() && metadata.len() > 0 {
            continue;
        }
        tracing::debug!("removing `{}`, left by an interrupted run", path.display());
        let removed = if metadata.is_dir() {
            fs_err::remove_dir_all(&path)
        } else {
            fs_err::remove_file(&path)
        };
        removed.map_err(|e| StoreError::io(&path, e))?;
    }
    Ok(())
}

/// The descriptor fields of a manifest or index, all that reachability needs.
#[derive(Deserialize)]
struct References {
    config: Option<DigestOnly>,
    #[serde(default)]
    layers: Vec<DigestOnly>,
    #[serde(default)]
    manifests: Vec<DigestOnly>,
}

#[derive(Deserialize)]
struct DigestOnly {
    digest: Digest,
}

fn walk_error(root: &Path, error: walkdir::Error) -> StoreError {
    let path = error.path().unwrap_or(root).to_owned();
    StoreError::Io {
        path,
        source: error
            .into_io_error()
            .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
    }
}

#[cfg(test)]
mod tests;
