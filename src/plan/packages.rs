//! Recipe `packages:` → what ships: repository metadata fetched into the cache, the closure
//! resolved with [`crate::rpm`], the shipped set chosen; then one download task per RPM and
//! one task per shipped repository that writes its folder (RPMs, repodata, key files).
//!
//! Resolution runs before the plan is built, as image resolution does: the plan needs to
//! know every RPM to make one task each. With `--locked` it is skipped and the lock file's
//! pins are the shipped set.
//!
//! Every metadata file and every RPM goes through the cache (`blobs-v1/sha256/…`), verified
//! against the checksum its parent gave (repomd.xml for metadata, primary.xml for RPMs)
//! before anything reads it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::engine::{Fingerprint, JobOutput};
use crate::recipe::{PackageRepo, Packages};
use crate::reference::Digest;
use crate::report::Reporter;
use crate::rpm::metadata::{self, Hasher};
use crate::rpm::modules::{ModularFilter, ModuleIndex};
use crate::rpm::{Checksum, ChecksumKind, MetadataError, Pool, RepoMd};
use crate::store::{FinishError, Store, StoreError};

use super::TaskError;

/// What can go wrong with RPM repositories and packages.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("repository `{repo}`: GET {url}: {message}")]
    Http {
        repo: String,
        url: String,
        message: String,
    },
    #[error("repository `{repo}`: {source}")]
    Metadata {
        repo: String,
        #[source]
        source: MetadataError,
    },
    #[error(
        "repository `{repo}`: `{url}` does not match its checksum: expected {expected}, got {actual}"
    )]
    Checksum {
        repo: String,
        url: String,
        expected: Checksum,
        actual: String,
    },
    #[error(
        "repository `{repo}`: `{url}` is not what its metadata says: {actual} bytes or more, {expected} expected"
    )]
    Size {
        repo: String,
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("repository `{repo}`: repomd.xml has no `primary` record")]
    NoPrimary { repo: String },
    #[error("repository `{repo}`: modules.yaml: {reason}")]
    Modules { repo: String, reason: String },
    #[error(
        "repository `{repo}` changed since it was locked: its repomd.xml is {actual}, the lock file pins {locked}; run `isobuild lock` again"
    )]
    RepoChanged {
        repo: String,
        locked: Digest,
        actual: Digest,
    },
    #[error(
        "package `{nevra}` from repository `{repo}` is refused: its signature does not verify with the key {keys}: {message}"
    )]
    Signature {
        repo: String,
        nevra: String,
        keys: String,
        message: String,
    },
    #[error(
        "repository `{repo}`: repomd.xml is not trusted: `repo_gpgcheck` is on and its signature `{url}` does not verify with the key {keys}: {message}"
    )]
    RepomdSignature {
        repo: String,
        url: String,
        keys: String,
        message: String,
    },
    #[error(
        "repository `{repo}`: the key `{url}` changed since it was locked; run `isobuild lock` again"
    )]
    KeyChanged { repo: String, url: String },
    #[error(
        "repository `{repo}`: `{first}` and `{second}` would both be `{name}` in the shipped folder"
    )]
    NameClash {
        repo: String,
        name: String,
        first: String,
        second: String,
    },
    #[error("repository `{repo}`: `{nevra}` is not in its metadata any more")]
    NotInMetadata { repo: String, nevra: String },
    #[error("seed `{seed}` matches no package of any repository")]
    UnknownSeed { seed: String },
    #[error(
        "repository `{repo}`: `--offline` resolves from cached metadata, and the cache has none for `{url}`; run `isobuild fetch` (or `isobuild lock`) with the same --cache-dir first, or build with `--locked`"
    )]
    OfflineNoMetadata { repo: String, url: String },
    #[error("`{nevra}` ({url}) is not in the cache, and `--offline` forbids fetching it")]
    OfflineMissing { nevra: String, url: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error("`{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What package work shares: the cache, an HTTP client, the reporter.
pub struct PackageServices {
    pub store: Store,
    pub http: reqwest::Client,
    pub reporter: Arc<dyn Reporter>,
    pub offline: bool,
    /// URL prefix rewrites (`--mirror https://dl.rockylinux.org/=http://127.0.0.1:8080/`).
    pub mirrors: BTreeMap<String, String>,
}

impl PackageServices {
    /// `url` after the longest matching mirror prefix is replaced.
    pub fn mirrored(&self, url: &str) -> String {
        self.mirrors
            .iter()
            .filter(|(from, _)| url.starts_with(from.as_str()))
            .max_by_key(|(from, _)| from.len())
            .map_or_else(
                || url.to_owned(),
                |(from, to)| format!("{to}{}", &url[from.len()..]),
            )
    }
}

/// One RPM that ships, as the lock file pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippedRpm {
    /// `name-[epoch:]version-release.arch`.
    pub nevra: String,
    pub repo: String,
    /// Where it is, relative to the repository's base URL; also where it goes under `dest`.
    pub location: String,
    pub size: u64,
    pub sha256: Digest,
    /// Fingerprint of the repository key that verified its header signature when it was
    /// resolved; a `--locked` build accepts no other key. `None` for a repository without
    /// `gpgkey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}

/// One repository as the lock file pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRepo {
    pub id: String,
    pub baseurl: String,
    /// sha256 of the repomd.xml resolution read.
    pub repomd: Digest,
    /// sha256 of each `gpgkey` file, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<Digest>,
}

/// The resolved `packages:` section: what a build downloads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSet {
    pub repos: Vec<LockedRepo>,
    pub rpms: Vec<ShippedRpm>,
}

/// A requirement nothing satisfies, and who has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsatisfied {
    pub package: String,
    pub requirement: String,
}

/// What resolution found besides the set: warnings, and why each package is in.
#[derive(Debug, Default)]
pub struct ResolutionNotes {
    pub unsatisfied: Vec<Unsatisfied>,
    /// NEVRA → `"seed"` or the chain `a needs x ← b needs y ← seed`.
    pub why: BTreeMap<String, String>,
}

impl PackageSet {
    /// Every cached blob this set uses: each repository's repomd.xml, the metadata files it
    /// lists (those named by sha256; others are filed under a hash repomd.xml does not give,
    /// and are fetched again after a `cache gc`), key files, and the RPMs.
    pub fn blobs(&self, store: &Store) -> Vec<Digest> {
        let mut blobs = Vec::new();
        for repo in &self.repos {
            blobs.push(repo.repomd.clone());
            blobs.extend(repo.keys.iter().cloned());
            let Ok(bytes) = store.read_blob(&repo.repomd) else {
                continue;
            };
            let Ok(repomd) = RepoMd::parse(&bytes, Path::new("repomd.xml")) else {
                continue;
            };
            blobs.extend(
                repomd
                    .records
                    .iter()
                    .filter(|record| record.checksum.kind == ChecksumKind::Sha256)
                    .filter_map(|record| Digest::from_hex(&record.checksum.hex).ok()),
            );
        }
        blobs.extend(self.rpms.iter().map(|rpm| rpm.sha256.clone()));
        blobs.sort();
        blobs.dedup();
        blobs
    }
}

/// GET `url` (already mirrored), with a `Range` header when given; an error status is an
/// error.
async fn send(
    services: &PackageServices,
    repo: &str,
    url: &str,
    range: Option<String>,
) -> Result<reqwest::Response, PackageError> {
    let http_error = |message: String| PackageError::Http {
        repo: repo.to_owned(),
        url: url.to_owned(),
        message,
    };
    let mut request = services.http.get(url);
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let response = request
        .send()
        .await
        .map_err(|error| http_error(crate::engine::render_chain(&error)))?;
    if !response.status().is_success() {
        return Err(http_error(format!("status {}", response.status())));
    }
    Ok(response)
}

/// GET `url` into memory (small files: repomd.xml, keys).
async fn get_small(
    services: &PackageServices,
    repo: &str,
    url: &str,
) -> Result<Vec<u8>, PackageError> {
    const LIMIT: usize = 64 << 20;
    let url = services.mirrored(url);
    let http_error = |message: String| PackageError::Http {
        repo: repo.to_owned(),
        url: url.clone(),
        message,
    };
    let response = send(services, repo, &url, None).await?;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| http_error(crate::engine::render_chain(&error)))?;
        if body.len() + chunk.len() > LIMIT {
            return Err(http_error(format!("body larger than {LIMIT} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A check of a file's bytes beyond its checksum (an RPM's signature), run before the file
/// enters the cache.
pub type ContentCheck = Arc<dyn Fn(&[u8]) -> Result<(), PackageError> + Send + Sync>;

/// Fetch `url` into the cache, verified against `checksum` (and `size` when known), and
/// `check` on the bytes: a download it refuses never enters the cache, and a cached file it
/// refuses leaves it. Returns the cached file. A sha256 checksum is the cache key, so a
/// second run fetches nothing.
pub async fn fetch_verified(
    services: &PackageServices,
    repo: &str,
    url: &str,
    checksum: &Checksum,
    size: Option<u64>,
    label: &str,
    check: Option<ContentCheck>,
) -> Result<PathBuf, PackageError> {
    let store = &services.store;
    if checksum.kind == ChecksumKind::Sha256
        && let Ok(digest) = Digest::from_hex(&checksum.hex)
    {
        let path = store.blob_path(&digest);
        if store.has_blob(&digest) {
            return check_cached(path, check).await;
        }
        if services.offline {
            return Err(PackageError::OfflineMissing {
                nevra: label.to_owned(),
                url: url.to_owned(),
            });
        }
        let Some(mut writer) = store.blob_writer(&digest, size).await? else {
            return check_cached(path, check).await;
        };
        let url = services.mirrored(url);
        let http_error = |message: String| PackageError::Http {
            repo: repo.to_owned(),
            url: url.clone(),
            message,
        };
        let mut request = services.http.get(&url);
        if writer.offset() > 0 {
            request = request.header("Range", format!("bytes={}-", writer.offset()));
        }
        let response = request
            .send()
            .await
            .map_err(|error| http_error(crate::engine::render_chain(&error)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(http_error(format!("status {status}")));
        }
        let store_error = |error: StoreError| match error {
            StoreError::DigestMismatch { actual, .. } => PackageError::Checksum {
                repo: repo.to_owned(),
                url: url.clone(),
                expected: checksum.clone(),
                actual: actual.hex().to_owned(),
            },
            StoreError::SizeMismatch {
                expected, actual, ..
            } => PackageError::Size {
                repo: repo.to_owned(),
                url: url.clone(),
                expected,
                actual,
            },
            other => PackageError::Store(other),
        };
        if writer.offset() > 0 && status != reqwest::StatusCode::PARTIAL_CONTENT {
            writer.restart().await?;
        }
        let id = services.reporter.on_download_start(label, size);
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    // What arrived stays in the partial, so the next run resumes there.
                    let _ = writer.flush().await;
                    return Err(http_error(crate::engine::render_chain(&error)));
                }
            };
            writer.write(&chunk).await.map_err(&store_error)?;
            services
                .reporter
                .on_download_progress(id, chunk.len() as u64);
        }
        services.reporter.on_download_complete(id);
        match check {
            Some(check) => writer
                .finish_checked(move |bytes| check(bytes))
                .await
                .map_err(|error| match error {
                    FinishError::Store(error) => store_error(error),
                    FinishError::Check(error) => error,
                })?,
            None => writer.finish().await.map_err(store_error)?,
        };
        return Ok(path);
    }
    // Another hash: check it while writing, then file the bytes under their sha256.
    if services.offline {
        return Err(PackageError::OfflineMissing {
            nevra: label.to_owned(),
            url: url.to_owned(),
        });
    }
    let bytes = get_small(services, repo, url).await?;
    let mut hasher = Hasher::new(checksum.kind);
    hasher.update(&bytes);
    let actual = hasher.finish_hex();
    if actual != checksum.hex {
        return Err(PackageError::Checksum {
            repo: repo.to_owned(),
            url: url.to_owned(),
            expected: checksum.clone(),
            actual,
        });
    }
    if let Some(check) = check {
        check(&bytes)?;
    }
    let digest = Digest::of(&bytes);
    store.put_blob_bytes(&digest, &bytes)?;
    Ok(store.blob_path(&digest))
}

/// `check` on a file already in the cache (it was checked when it came in, but the keys it
/// must verify with may have changed since); a file it refuses leaves the cache.
async fn check_cached(path: PathBuf, check: Option<ContentCheck>) -> Result<PathBuf, PackageError> {
    let Some(check) = check else {
        return Ok(path);
    };
    blocking_io("(signature check)", move || {
        let bytes = fs_err::read(&path).map_err(|source| PackageError::Io {
            path: path.clone(),
            source,
        })?;
        if let Err(error) = check(&bytes) {
            let _ = fs_err::remove_file(&path);
            return Err(error);
        }
        Ok(path)
    })
    .await
}

/// `work` on the blocking pool; `what` names it if it panics.
async fn blocking_io<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, PackageError> + Send + 'static,
) -> Result<T, PackageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| PackageError::Io {
            path: PathBuf::from(what),
            source: std::io::Error::other(join.to_string()),
        })?
}

/// A repository's metadata, fetched and verified.
struct FetchedRepo {
    spec: PackageRepo,
    repomd: RepoMd,
    repomd_digest: Digest,
    primary: (PathBuf, String),
    filelists: Option<(PathBuf, String)>,
    keys: Vec<Digest>,
}

impl FetchedRepo {
    /// The `kind` metadata file repomd.xml lists (`filelists`, `modules`), fetched into the
    /// cache and verified: its path and location; `None` when the repository has none.
    async fn fetch_record(
        &self,
        services: &PackageServices,
        kind: &str,
    ) -> Result<Option<(PathBuf, String)>, PackageError> {
        let Some(record) = self.repomd.record(kind) else {
            return Ok(None);
        };
        let path = fetch_verified(
            services,
            &self.spec.id,
            &format!("{}{}", self.spec.baseurl, record.location),
            &record.checksum,
            record.size,
            &format!("{} {kind}", self.spec.id),
            None,
        )
        .await?;
        Ok(Some((path, record.location.clone())))
    }
}

/// Fetch `repodata/repomd.xml.asc` and check it signs `repomd` with one of `keys`.
async fn check_repomd_signature(
    services: &PackageServices,
    spec: &PackageRepo,
    repomd_url: &str,
    repomd: &[u8],
    keys: &[Vec<u8>],
) -> Result<(), PackageError> {
    let url = format!("{repomd_url}.asc");
    let refused = |message: String| PackageError::RepomdSignature {
        repo: spec.id.clone(),
        url: url.clone(),
        keys: spec.gpgkeys.join(", "),
        message,
    };
    let asc = match get_small(services, &spec.id, &url).await {
        Ok(asc) => asc,
        Err(PackageError::Http { message, .. }) => {
            return Err(refused(format!("it cannot be fetched ({message})")));
        }
        Err(other) => return Err(other),
    };
    crate::rpm::signature::Keyring::new(keys)
        .and_then(|keyring| keyring.verify_detached(repomd, &asc))
        .map(|_| ())
        .map_err(|error| refused(error.to_string()))
}

async fn fetch_repo(
    services: &PackageServices,
    spec: &PackageRepo,
) -> Result<FetchedRepo, PackageError> {
    let url = format!("{}repodata/repomd.xml", spec.baseurl);
    // Offline, the repomd.xml (and keys) the last online run read from this URL: that run
    // verified them (the repomd.xml.asc signature included) before it recorded them.
    let recorded = if services.offline {
        let offline = || PackageError::OfflineNoMetadata {
            repo: spec.id.clone(),
            url: url.clone(),
        };
        let record = services.store.lookup_repo(&url)?.ok_or_else(offline)?;
        let bytes = services
            .store
            .read_blob(&record.repomd)
            .map_err(|_| offline())?;
        Some((bytes, record))
    } else {
        None
    };
    let (bytes, keys) = if let Some((bytes, record)) = &recorded {
        let mut keys = Vec::new();
        for key_url in &spec.gpgkeys {
            let digest = record
                .keys
                .get(key_url)
                .filter(|digest| services.store.has_blob(digest))
                .ok_or_else(|| PackageError::OfflineMissing {
                    nevra: format!("key {key_url}"),
                    url: key_url.clone(),
                })?;
            keys.push(digest.clone());
        }
        (bytes.clone(), keys)
    } else {
        let bytes = get_small(services, &spec.id, &url).await?;
        // The keys first: with `repo_gpgcheck`, repomd.xml is trusted only once one of
        // them verifies its detached signature.
        let mut keys = Vec::new();
        let mut key_bytes = Vec::new();
        for key_url in &spec.gpgkeys {
            let bytes = get_small(services, &spec.id, key_url).await?;
            keys.push(Digest::of(&bytes));
            key_bytes.push(bytes);
        }
        if spec.repo_gpgcheck {
            check_repomd_signature(services, spec, &url, &bytes, &key_bytes).await?;
        }
        for (digest, bytes) in keys.iter().zip(&key_bytes) {
            services.store.put_blob_bytes(digest, bytes)?;
        }
        (bytes, keys)
    };
    let repomd =
        RepoMd::parse(&bytes, Path::new(&url)).map_err(|source| PackageError::Metadata {
            repo: spec.id.clone(),
            source,
        })?;
    let repomd_digest = Digest::of(&bytes);
    services.store.put_blob_bytes(&repomd_digest, &bytes)?;
    let record = repomd
        .record("primary")
        .ok_or_else(|| PackageError::NoPrimary {
            repo: spec.id.clone(),
        })?;
    let primary = fetch_verified(
        services,
        &spec.id,
        &format!("{}{}", spec.baseurl, record.location),
        &record.checksum,
        record.size,
        &format!("{} primary", spec.id),
        None,
    )
    .await?;
    let primary = (primary, record.location.clone());
    if recorded.is_none() {
        // Only once its primary and keys are in the cache, so that a record always names
        // metadata an offline run can resolve from.
        services.store.record_repo(&crate::store::RepoRecord {
            url: url.clone(),
            repomd: repomd_digest.clone(),
            keys: spec
                .gpgkeys
                .iter()
                .cloned()
                .zip(keys.iter().cloned())
                .collect(),
            fetched_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0)),
        })?;
    }
    Ok(FetchedRepo {
        spec: spec.clone(),
        repomd,
        repomd_digest,
        primary,
        filelists: None,
        keys,
    })
}

/// Resolve `packages` online: fetch every repository's metadata, compute the closure, and
/// choose what ships.
pub async fn resolve_packages(
    packages: &Packages,
    services: &Arc<PackageServices>,
) -> Result<(PackageSet, ResolutionNotes), PackageError> {
    let mut fetched = Vec::new();
    // Built repositories have no metadata before their tasks run: they take no part.
    for spec in packages.repos.iter().filter(|repo| !repo.is_built()) {
        fetched.push(fetch_repo(services, spec).await?);
    }
    let mut indexes = Vec::new();
    for repo in &fetched {
        if let Some((path, location)) = repo.fetch_record(services, "modules").await? {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut metadata::open_decompressed(&path, &location).map_err(|source| {
                    PackageError::Metadata {
                        repo: repo.spec.id.clone(),
                        source,
                    }
                })?,
                &mut text,
            )
            .map_err(|source| PackageError::Io {
                path: path.clone(),
                source,
            })?;
            indexes.push(
                ModuleIndex::parse(&text).map_err(|reason| PackageError::Modules {
                    repo: repo.spec.id.clone(),
                    reason,
                })?,
            );
        }
    }
    // A shipped repository's folder is written from its filelists.xml too: fetch it now, so
    // that `isobuild fetch` leaves in the cache all that an `--offline` build reads.
    for repo in fetched.iter_mut().filter(|repo| repo.spec.dest.is_some()) {
        repo.filelists = repo.fetch_record(services, "filelists").await?;
    }
    let filter = ModularFilter::new(&indexes, &packages.modules);
    let spec = packages.clone();
    let blocking_services = Arc::clone(services);
    let handle = tokio::runtime::Handle::current();
    let (mut set, notes) = blocking_io("(resolver)", move || {
        resolve_blocking(&spec, fetched, &filter, &blocking_services, &handle)
    })
    .await?;
    pin_signing_keys(services, packages, &mut set).await?;
    Ok((set, notes))
}

/// Read the header of every shipped RPM of a repository with keys (one `Range` request
/// each, the payload is not fetched), check its signature, and pin the key that verified it.
async fn pin_signing_keys(
    services: &PackageServices,
    packages: &Packages,
    set: &mut PackageSet,
) -> Result<(), PackageError> {
    use crate::rpm::signature::Keyring;
    let mut keyrings = BTreeMap::new();
    for (spec, locked) in packages.repos.iter().zip(&set.repos) {
        if spec.gpgkeys.is_empty() {
            continue;
        }
        let mut keys = Vec::new();
        for digest in &locked.keys {
            keys.push(services.store.read_blob(digest)?);
        }
        let keyring = Keyring::new(&keys).map_err(|error| PackageError::Signature {
            repo: spec.id.clone(),
            nevra: "(any)".into(),
            keys: spec.gpgkeys.join(", "),
            message: error.to_string(),
        })?;
        keyrings.insert(spec.id.clone(), (spec, keyring));
    }
    let pins = futures::stream::iter(set.rpms.iter().enumerate().filter_map(|(index, rpm)| {
        let (spec, keyring) = keyrings.get(&rpm.repo)?;
        Some(async move {
            let url = rpm_url(spec, &rpm.location);
            // A package already in the cache is read there: no request, and `--offline`
            // resolves without one.
            let bytes = if services.store.has_blob(&rpm.sha256) {
                let path = services.store.blob_path(&rpm.sha256);
                blocking_io("(header read)", move || cached_header(&path)).await?
            } else if services.offline {
                return Err(PackageError::OfflineMissing {
                    nevra: rpm.nevra.clone(),
                    url,
                });
            } else {
                get_header(services, &rpm.repo, &url).await?
            };
            let fingerprint =
                keyring
                    .verify_header(&bytes)
                    .map_err(|error| PackageError::Signature {
                        repo: rpm.repo.clone(),
                        nevra: rpm.nevra.clone(),
                        keys: spec.gpgkeys.join(", "),
                        message: error.to_string(),
                    })?;
            Ok::<_, PackageError>((index, fingerprint))
        })
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    for pin in pins {
        let (index, fingerprint) = pin?;
        set.rpms[index].signing_key = Some(fingerprint);
    }
    Ok(())
}

/// The URL of a package at `location` (relative to the base URL, or absolute for an
/// `xml:base` one).
fn rpm_url(spec: &PackageRepo, location: &str) -> String {
    if location.contains("://") {
        location.to_owned()
    } else {
        format!("{}{location}", spec.baseurl)
    }
}

/// The first bytes of the cached RPM at `path`, up to the end of its header (as
/// [`get_header`] fetches them).
fn cached_header(path: &Path) -> Result<Vec<u8>, PackageError> {
    use crate::rpm::signature::Keyring;
    use std::io::Read as _;
    let io_error = |source| PackageError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = fs_err::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    let mut wanted = Keyring::HEADER_PROBE;
    loop {
        let start = bytes.len();
        (&mut file)
            .take((wanted - start) as u64)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        let end = Keyring::header_range(&bytes)
            .ok()
            .flatten()
            .map(|(_, end)| end);
        match end {
            // The file holds more than was read: read on to the header's end.
            Some(end) if end > bytes.len() && bytes.len() == wanted => wanted = end,
            _ => return Ok(bytes),
        }
    }
}

/// The first bytes of the RPM at `url`, up to the end of its header: a `Range` request for
/// [`crate::rpm::signature::Keyring::HEADER_PROBE`] bytes, and one more for a larger header.
async fn get_header(
    services: &PackageServices,
    repo: &str,
    url: &str,
) -> Result<Vec<u8>, PackageError> {
    use crate::rpm::signature::Keyring;
    let url = services.mirrored(url);
    let http_error = |message: String| PackageError::Http {
        repo: repo.to_owned(),
        url: url.clone(),
        message,
    };
    let mut wanted = Keyring::HEADER_PROBE;
    loop {
        let response = send(
            services,
            repo,
            &url,
            Some(format!("bytes=0-{}", wanted - 1)),
        )
        .await?;
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        // A server that ignores `Range` sends the whole file: stop reading at what is needed.
        while body.len() < wanted
            && let Some(chunk) = stream.next().await
        {
            body.extend_from_slice(
                &chunk.map_err(|error| http_error(crate::engine::render_chain(&error)))?,
            );
        }
        let end = Keyring::header_range(&body)
            .ok()
            .flatten()
            .map(|(_, end)| end);
        match end {
            Some(end) if end > body.len() && end > wanted => wanted = end,
            _ => return Ok(body),
        }
    }
}

fn resolve_blocking(
    packages: &Packages,
    mut fetched: Vec<FetchedRepo>,
    filter: &ModularFilter,
    services: &Arc<PackageServices>,
    handle: &tokio::runtime::Handle,
) -> Result<(PackageSet, ResolutionNotes), PackageError> {
    let mut pool = Pool::new();
    for (index, repo) in fetched.iter().enumerate() {
        let (path, location) = &repo.primary;
        let input = metadata::open_decompressed(path, location).map_err(|source| {
            PackageError::Metadata {
                repo: repo.spec.id.clone(),
                source,
            }
        })?;
        metadata::parse_primary(input, path, |package| {
            if !filter.hides(&package) {
                pool.add(index, package);
            }
        })
        .map_err(|source| PackageError::Metadata {
            repo: repo.spec.id.clone(),
            source,
        })?;
    }
    let mut seeds = Vec::new();
    let mut seed_ids = Vec::new();
    for seed in packages
        .seeds
        .iter()
        .filter(|seed| !is_built_seed(packages, seed))
    {
        let found = pool.select(seed);
        if found.is_empty() {
            return Err(PackageError::UnknownSeed { seed: seed.clone() });
        }
        seeds.extend(found.iter().copied());
        seed_ids.push(found);
    }
    let closure = pool.closure(&seeds, |paths: &HashSet<String>| {
        let mut answers = Vec::new();
        for (index, repo) in fetched.iter_mut().enumerate() {
            if repo.filelists.is_none() {
                repo.filelists = handle.block_on(repo.fetch_record(services, "filelists"))?;
            }
            let Some((path, location)) = repo.filelists.as_ref() else {
                continue;
            };
            let metadata_error = |source| PackageError::Metadata {
                repo: repo.spec.id.clone(),
                source,
            };
            let input = metadata::open_decompressed(path, location).map_err(metadata_error)?;
            let found = metadata::scan_filelists(input, path, paths).map_err(metadata_error)?;
            answers.push((index, found));
        }
        Ok::<_, PackageError>(answers)
    })?;
    let mut notes = ResolutionNotes::default();
    for missing in &closure.unresolved {
        notes.unsatisfied.push(Unsatisfied {
            package: pool.package(missing.by).nevra(),
            requirement: missing.dep.clone(),
        });
    }
    // The seeds themselves, then the closure: repoquery's two queries in entrypoint.sh.
    let mut chosen: Vec<usize> = seeds.clone();
    chosen.extend(closure.packages.iter().copied());
    let mut seen_nevra = HashSet::new();
    let mut rpms = Vec::new();
    let seed_set: HashSet<usize> = seeds.iter().copied().collect();
    for id in chosen {
        let package = pool.package(id);
        let repo = &fetched[pool.repo(id)].spec;
        if repo.dest.is_none()
            || !packages.arches.contains(&package.arch)
            || repo
                .exclude
                .iter()
                .any(|prefix| package.location.starts_with(prefix.as_str()))
            || !seen_nevra.insert(package.nevra())
        {
            continue;
        }
        let sha256 = match package.checksum.kind {
            ChecksumKind::Sha256 => Digest::from_hex(&package.checksum.hex).ok(),
            _ => None,
        };
        let Some(sha256) = sha256 else {
            return Err(PackageError::Metadata {
                repo: repo.id.clone(),
                source: MetadataError::Invalid {
                    path: PathBuf::from(&package.location),
                    reason: format!("package `{}` has no sha256 checksum", package.nevra()),
                },
            });
        };
        let why = if seed_set.contains(&id) {
            "seed".to_owned()
        } else {
            pool.chain(&closure, id)
                .iter()
                .map(|(by, dep)| format!("{} needs `{dep}`", pool.package(*by).nevra()))
                .collect::<Vec<_>>()
                .join(" <- ")
        };
        notes.why.insert(package.nevra(), why);
        rpms.push(ShippedRpm {
            nevra: package.nevra(),
            repo: repo.id.clone(),
            location: match &package.base {
                Some(base) if !base.is_empty() => format!("{}{}", base, package.location),
                _ => package.location.clone(),
            },
            size: package.size,
            sha256,
            signing_key: None,
        });
    }
    rpms.sort_by(|a, b| (&a.repo, &a.location).cmp(&(&b.repo, &b.location)));
    let repos = fetched
        .iter()
        .map(|repo| LockedRepo {
            id: repo.spec.id.clone(),
            baseurl: repo.spec.baseurl.clone(),
            repomd: repo.repomd_digest.clone(),
            keys: repo.keys.clone(),
        })
        .collect();
    Ok((PackageSet { repos, rpms }, notes))
}

/// Whether `seed` names a package a built repository makes (`containerd`,
/// `containerd-1.6.35-2.el8`): those are not resolved.
fn is_built_seed(packages: &Packages, seed: &str) -> bool {
    packages
        .repos
        .iter()
        .flat_map(|repo| &repo.builds)
        .any(|name| {
            seed == name
                || seed
                    .strip_prefix(name.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
}

/// Download one RPM into the cache, verified by sha256 and size.
pub struct RpmJob {
    rpm: ShippedRpm,
    url: String,
    /// The repository's key URLs and their pinned sha256 (no keys: no signature check).
    keys: Vec<(String, Digest)>,
    /// The repository's keys, read and parsed by the first of its RPM jobs to need them and
    /// shared by the others (see [`RpmJob::keyring_cell`]).
    keyring: KeyringCell,
    services: Arc<PackageServices>,
}

/// One repository's parsed keyring, shared by its RPM jobs.
pub(super) type KeyringCell = Arc<
    tokio::sync::OnceCell<
        Arc<Result<crate::rpm::signature::Keyring, crate::rpm::signature::SignatureError>>,
    >,
>;

impl RpmJob {
    /// A cell for [`RpmJob::new`]: one per repository, so that its keys are read from the
    /// cache, checked against their pins and parsed once per run, not once per RPM.
    pub(super) fn keyring_cell() -> KeyringCell {
        KeyringCell::default()
    }

    pub(super) fn new(
        rpm: ShippedRpm,
        spec: &PackageRepo,
        locked: Option<&LockedRepo>,
        keyring: KeyringCell,
        services: Arc<PackageServices>,
    ) -> Self {
        let url = rpm_url(spec, &rpm.location);
        let keys = locked
            .map(|locked| {
                spec.gpgkeys
                    .iter()
                    .cloned()
                    .zip(locked.keys.iter().cloned())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            rpm,
            url,
            keys,
            keyring,
            services,
        }
    }

    pub(super) fn name(&self) -> String {
        format!("rpm {} ({})", self.rpm.nevra, self.rpm.repo)
    }

    pub(super) fn fingerprint(&self) -> Fingerprint {
        let mut fingerprint = Fingerprint::new();
        fingerprint
            .add("sha256", self.rpm.sha256.to_string())
            .add(
                "signing_key",
                self.rpm.signing_key.clone().unwrap_or_default(),
            )
            .add(
                "keys",
                self.keys
                    .iter()
                    .map(|(_, digest)| digest.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        fingerprint
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        (!self.services.store.has_blob(&self.rpm.sha256))
            .then(|| format!("{} (not in the cache)", self.rpm.nevra))
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let checksum = Checksum {
            kind: ChecksumKind::Sha256,
            hex: self.rpm.sha256.hex().to_owned(),
        };
        let check = self.signature_check().await?;
        fetch_verified(
            &self.services,
            &self.rpm.repo,
            &self.url,
            &checksum,
            Some(self.rpm.size),
            &self.rpm.nevra,
            check,
        )
        .await?;
        Ok(JobOutput {
            bytes: self.rpm.size,
        })
    }

    /// The check of the package's header signature with the repository's keys (the one
    /// the lock pins, if any), run on its bytes before they enter the cache; `None` for a
    /// repository without keys.
    async fn signature_check(&self) -> Result<Option<ContentCheck>, TaskError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        // Keys that cannot be read stop the job; keys that do not parse are this package's
        // signature error (and it never enters the cache).
        let keyring = self
            .keyring
            .get_or_try_init(|| async {
                let keys = load_keys(&self.services, &self.rpm.repo, &self.keys).await?;
                super::blocking(move || Ok(Arc::new(crate::rpm::signature::Keyring::new(&keys))))
                    .await
            })
            .await?;
        let keyring = Arc::clone(keyring);
        let urls: Vec<String> = self.keys.iter().map(|(url, _)| url.clone()).collect();
        let (repo, nevra) = (self.rpm.repo.clone(), self.rpm.nevra.clone());
        let pinned = self.rpm.signing_key.clone();
        Ok(Some(Arc::new(move |bytes: &[u8]| {
            let checked = match keyring.as_ref() {
                Ok(keyring) => keyring.verify_bytes(bytes, pinned.as_deref()),
                Err(error) => Err(error.clone()),
            };
            checked.map(drop).map_err(|error| {
                let keys = match &pinned {
                    Some(pin) => format!("{pin} the lock file pins ({})", urls.join(", ")),
                    None => urls.join(", "),
                };
                PackageError::Signature {
                    repo: repo.clone(),
                    nevra: nevra.clone(),
                    keys,
                    message: error.to_string(),
                }
            })
        })))
    }
}

/// Check a locked repository's metadata before anything is downloaded from it: its
/// repomd.xml is the one the lock file pins (a repository changed since is an error before
/// any RPM is fetched), and its primary and filelists are in the cache.
pub struct MetadataJob {
    spec: PackageRepo,
    locked: LockedRepo,
    services: Arc<PackageServices>,
}

impl MetadataJob {
    pub(super) fn new(
        spec: PackageRepo,
        locked: LockedRepo,
        services: Arc<PackageServices>,
    ) -> Self {
        Self {
            spec,
            locked,
            services,
        }
    }

    pub(super) fn name(&self) -> String {
        format!("rpm metadata {}", self.spec.id)
    }

    pub(super) fn fingerprint(&self) -> Fingerprint {
        let mut fingerprint = Fingerprint::new();
        fingerprint
            .add("repomd", self.locked.repomd.to_string())
            .add("baseurl", self.spec.baseurl.clone());
        fingerprint
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        (!self.services.store.has_blob(&self.locked.repomd))
            .then(|| format!("{} repomd.xml (not in the cache)", self.spec.id))
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        locked_metadata(&self.services, &self.spec, &self.locked).await?;
        Ok(JobOutput { bytes: 0 })
    }
}

/// Write one shipped repository's folder: its RPMs (hard-linked from the cache), its
/// repodata, its key files.
pub struct RepoJob {
    spec: PackageRepo,
    locked: LockedRepo,
    rpms: Vec<ShippedRpm>,
    folder: crate::recipe::IsoPath,
    dest: PathBuf,
    epoch: i64,
    services: Arc<PackageServices>,
    placer: Arc<crate::layout::BlobPlacer>,
}

impl RepoJob {
    pub(super) fn new(
        spec: PackageRepo,
        locked: LockedRepo,
        rpms: Vec<ShippedRpm>,
        tree_root: &Path,
        epoch: i64,
        services: Arc<PackageServices>,
        placer: Arc<crate::layout::BlobPlacer>,
    ) -> Option<Self> {
        let folder = spec.dest.clone()?;
        Some(Self {
            dest: folder.under(tree_root),
            folder,
            spec,
            locked,
            rpms,
            epoch,
            services,
            placer,
        })
    }

    pub(super) fn name(&self) -> String {
        format!("rpm repository {}", self.spec.id)
    }

    pub(super) fn claim(&self, claim: &mut super::TreeClaim) {
        claim.dirs.insert(self.folder.to_string());
    }

    pub(super) fn fingerprint(&self) -> Fingerprint {
        let mut fingerprint = Fingerprint::new();
        fingerprint
            .add("repomd", self.locked.repomd.to_string())
            .add(
                "rpms",
                self.rpms
                    .iter()
                    .map(|rpm| format!("{} {}", rpm.sha256, rpm.location))
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .add("keys", self.spec.gpgkeys.join(","))
            .add("key_prefix", self.spec.key_prefix.clone())
            .add("epoch", self.epoch.to_string())
            .add("folder", self.dest.display().to_string());
        fingerprint
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        let repomd = self.dest.join("repodata/repomd.xml");
        (!repomd.is_file()).then(|| repomd.display().to_string())
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let services = &self.services;
        let repo = &self.spec.id;
        let sources = locked_metadata(services, &self.spec, &self.locked).await?;
        let pinned: Vec<(String, Digest)> = self
            .spec
            .gpgkeys
            .iter()
            .cloned()
            .zip(self.locked.keys.iter().cloned())
            .collect();
        let keys = load_keys(services, repo, &pinned).await?;
        let rpms = self.rpms.clone();
        let dest = self.dest.clone();
        let epoch = self.epoch;
        let placer = Arc::clone(&self.placer);
        let key_prefix = self.spec.key_prefix.clone();
        let repo = repo.clone();
        super::blocking(move || {
            write_repo(
                &repo,
                &dest,
                &rpms,
                &sources,
                &keys,
                &key_prefix,
                epoch,
                &placer,
            )
            .map_err(TaskError::from)
        })
        .await
    }
}

/// A locked repository's repomd.xml (from the cache, or fetched and checked against its
/// pin) and the primary and filelists it lists, in the cache; returns their paths and
/// locations.
async fn locked_metadata(
    services: &PackageServices,
    spec: &PackageRepo,
    locked: &LockedRepo,
) -> Result<Vec<(PathBuf, String)>, PackageError> {
    let repo = &spec.id;
    // The repomd.xml resolution (or `lock`) read; a repository that changed since
    // serves another one, and its metadata no longer describes the pinned RPMs.
    let repomd_bytes = if let Ok(bytes) = services.store.read_blob(&locked.repomd) {
        bytes
    } else {
        if services.offline {
            return Err(PackageError::OfflineMissing {
                nevra: format!("{repo} repomd.xml"),
                url: format!("{}repodata/repomd.xml", spec.baseurl),
            });
        }
        {
            let url = format!("{}repodata/repomd.xml", spec.baseurl);
            let bytes = get_small(services, repo, &url).await?;
            if Digest::of(&bytes) != locked.repomd {
                return Err(PackageError::RepoChanged {
                    repo: repo.clone(),
                    locked: locked.repomd.clone(),
                    actual: Digest::of(&bytes),
                });
            }
            services.store.put_blob_bytes(&locked.repomd, &bytes)?;
            bytes
        }
    };
    let metadata_error = |source| PackageError::Metadata {
        repo: repo.clone(),
        source,
    };
    let repomd = RepoMd::parse(&repomd_bytes, Path::new("repomd.xml")).map_err(metadata_error)?;
    let mut sources = Vec::new();
    for kind in ["primary", "filelists"] {
        let record = repomd
            .record(kind)
            .ok_or_else(|| PackageError::NoPrimary { repo: repo.clone() })?;
        let path = fetch_verified(
            services,
            repo,
            &format!("{}{}", spec.baseurl, record.location),
            &record.checksum,
            record.size,
            &format!("{repo} {kind}"),
            None,
        )
        .await?;
        sources.push((path, record.location.clone()));
    }
    Ok(sources)
}

/// The repository's key files, from the cache or (verified against their pins) the network.
async fn load_keys(
    services: &PackageServices,
    repo: &str,
    pinned: &[(String, Digest)],
) -> Result<Vec<Vec<u8>>, PackageError> {
    let mut keys = Vec::new();
    for (url, digest) in pinned {
        let bytes = if let Ok(bytes) = services.store.read_blob(digest) {
            bytes
        } else {
            if services.offline {
                return Err(PackageError::OfflineMissing {
                    nevra: format!("key {url}"),
                    url: url.clone(),
                });
            }
            let bytes = get_small(services, repo, url).await?;
            if Digest::of(&bytes) != *digest {
                return Err(PackageError::KeyChanged {
                    repo: repo.to_owned(),
                    url: url.clone(),
                });
            }
            services.store.put_blob_bytes(digest, &bytes)?;
            bytes
        };
        keys.push(bytes);
    }
    Ok(keys)
}

#[allow(clippy::too_many_arguments)]
fn write_repo(
    repo: &str,
    dest: &Path,
    rpms: &[ShippedRpm],
    sources: &[(PathBuf, String)],
    keys: &[Vec<u8>],
    key_prefix: &str,
    epoch: i64,
    placer: &crate::layout::BlobPlacer,
) -> Result<JobOutput, PackageError> {
    use crate::rpm::repodata::{Kind, extract_entries, write_repodata};
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| PackageError::Io { path, source }
    };
    if dest.exists() {
        fs_err::remove_dir_all(dest).map_err(io_error(dest))?;
    }
    let mut bytes = 0;
    let wanted: HashSet<String> = rpms.iter().map(|rpm| rpm.sha256.hex().to_owned()).collect();
    crate::fs::create_dirs_0755(dest).map_err(io_error(dest))?;
    let mut names = std::collections::HashMap::new();
    for rpm in rpms {
        let name = crate::rpm::repodata::flat_name(&rpm.location);
        if let Some(first) = names.insert(name, &rpm.location) {
            return Err(PackageError::NameClash {
                repo: repo.to_owned(),
                name: name.to_owned(),
                first: first.clone(),
                second: rpm.location.clone(),
            });
        }
        placer.place(&rpm.sha256, &dest.join(name))?;
        bytes += rpm.size;
    }
    let mut entries = Vec::new();
    for ((path, location), kind) in sources.iter().zip([Kind::Primary, Kind::Filelists]) {
        let input = metadata::open_decompressed(path, location).map_err(|source| {
            PackageError::Metadata {
                repo: repo.to_owned(),
                source,
            }
        })?;
        let found = extract_entries(input, path, kind, &wanted, epoch).map_err(|source| {
            PackageError::Metadata {
                repo: repo.to_owned(),
                source,
            }
        })?;
        entries.push(found);
    }
    let mut primary = Vec::new();
    let mut filelists = Vec::new();
    for rpm in rpms {
        let id = rpm.sha256.hex();
        match (entries[0].remove(id), entries[1].remove(id)) {
            (Some(p), Some(f)) => {
                primary.push(p);
                filelists.push(f);
            }
            _ => {
                return Err(PackageError::NotInMetadata {
                    repo: repo.to_owned(),
                    nevra: rpm.nevra.clone(),
                });
            }
        }
    }
    write_repodata(dest, &primary, &filelists, epoch).map_err(io_error(dest))?;
    for (index, key) in keys.iter().enumerate() {
        let path = dest.join(format!("{key_prefix}_{}", index + 1));
        crate::fs::write_atomic(&path, key, 0o644).map_err(io_error(&path))?;
    }
    Ok(JobOutput { bytes })
}
