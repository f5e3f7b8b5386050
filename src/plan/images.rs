//! Image tasks: pull a blob into the cache, write an image folder, write a docker-archive
//! tarball, read a local image (archive or daemon), write the nginx registry rules.
//!
//! Registry images are resolved before the plan is built ([`super::resolve`]), so the plan
//! holds one [`BlobJob`] per distinct blob across all images (a layer shared by ten images is
//! fetched once) and one [`ImageDirJob`] per image that waits for its blobs. Local images are
//! only known once the tasks they come `after` have run, so one [`LocalImageJob`] per image
//! reads, stores and lays it out. The rules are written last, from the image folders as they
//! are on disk.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::{Fingerprint, JobOutput};
use crate::layout::archive::{ArchiveLayer, write_docker_archive};
use crate::layout::nginx::{RuleOptions, ServedImage, common_rules, image_rules};
use crate::layout::{BlobPlacer, LayoutError, convert};
use crate::recipe::{ImageEntry, ImageFormat, IsoPath, Platform, RegistryConfig};
use crate::reference::{Digest, ImageRef, ImageSource};
use crate::report::Reporter;
use crate::source::local::{self, BlobSink, LocalImage, ResolvedEndpoint};
use crate::source::{Descriptor, RegistryClient, ResolvedImage};
use crate::store::Store;

use super::{TaskError, TreeClaim, blocking};

/// What image tasks share: the cache, the registry client, the reporter, the blob placer.
pub struct ImageServices {
    pub store: Store,
    pub client: Arc<RegistryClient>,
    pub reporter: Arc<dyn Reporter>,
    pub placer: BlobPlacer,
    /// The daemon socket for `daemon:` images, when the recipe has any.
    pub daemon: Option<ResolvedEndpoint>,
}

/// Fetch one blob into the cache.
pub struct BlobJob {
    /// An image that has this blob, to know which registry to ask.
    image: ImageRef,
    blob: Descriptor,
    services: Arc<ImageServices>,
    /// What its download line says: the short digest and every image that shares it.
    label: String,
}

impl BlobJob {
    pub(super) fn new(
        image: ImageRef,
        blob: Descriptor,
        services: Arc<ImageServices>,
        images: &[String],
    ) -> Self {
        Self {
            label: download_label(&blob.digest, images),
            image,
            blob,
            services,
        }
    }

    pub(super) fn name(&self) -> String {
        format!("blob {}", self.blob.digest)
    }

    pub(super) fn fingerprint(&self) -> Fingerprint {
        let mut fingerprint = Fingerprint::new();
        fingerprint.add("digest", self.blob.digest.to_string());
        fingerprint
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        (!self.services.store.has_blob(&self.blob.digest))
            .then(|| format!("{} (not in the cache)", self.blob.digest))
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let bytes = self
            .services
            .client
            .fetch_blob(
                &self.image,
                &self.blob,
                &self.services.store,
                &Relabel {
                    inner: &*self.services.reporter,
                    label: &self.label,
                },
            )
            .await?;
        Ok(JobOutput { bytes })
    }
}

/// `sha256:0123456789ab (alpine:3.20, busybox:1.36, +2 more)`: a blob as its download line
/// names it, with the images that share it (a few by name, the rest counted).
fn download_label(digest: &Digest, images: &[String]) -> String {
    const NAMED: usize = 2;
    let text = digest.to_string();
    let short = match text.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", &hex[..hex.len().min(12)]),
        None => text,
    };
    match images {
        [] => short,
        _ if images.len() <= NAMED + 1 => format!("{short} ({})", images.join(", ")),
        _ => format!(
            "{short} ({}, +{} more)",
            images[..NAMED].join(", "),
            images.len() - NAMED
        ),
    }
}

/// A reporter that names the downloads of one blob task with the task's own label (every
/// image that shares the blob) instead of the one image the source knows of.
struct Relabel<'a> {
    inner: &'a dyn Reporter,
    label: &'a str,
}

impl Reporter for Relabel<'_> {
    fn on_download_start(&self, _label: &str, size: Option<u64>) -> crate::report::DownloadId {
        self.inner.on_download_start(self.label, size)
    }
    fn on_download_progress(&self, id: crate::report::DownloadId, bytes: u64) {
        self.inner.on_download_progress(id, bytes);
    }
    fn on_download_complete(&self, id: crate::report::DownloadId) {
        self.inner.on_download_complete(id);
    }
    fn on_download_retry(
        &self,
        id: crate::report::DownloadId,
        attempt: u32,
        attempts: u32,
        error: &str,
    ) {
        self.inner.on_download_retry(id, attempt, attempts, error);
    }
    fn on_download_resumed(&self, id: crate::report::DownloadId, offset: u64) {
        self.inner.on_download_resumed(id, offset);
    }
    fn on_message(&self, message: &str) {
        self.inner.on_message(message);
    }
}

/// The manifest written in the ISO for a registry image, in the recipe's format.
pub fn iso_manifest(
    image: &ResolvedImage,
    format: ImageFormat,
    name: &str,
) -> Result<Vec<u8>, LayoutError> {
    match format {
        ImageFormat::Oci => Ok(image.manifest.clone()),
        ImageFormat::V2s2 => {
            convert::to_docker_schema2(&image.manifest).map_err(|source| LayoutError::Convert {
                image: name.to_owned(),
                source,
            })
        }
    }
}

/// Write the folder of a registry image from the cache.
pub struct ImageDirJob {
    label: String,
    folder: IsoPath,
    dest: PathBuf,
    manifest: Vec<u8>,
    blobs: Vec<Digest>,
    services: Arc<ImageServices>,
}

impl ImageDirJob {
    pub(super) fn new(
        entry: &ImageEntry,
        tree_root: &Path,
        manifest: Vec<u8>,
        image: &ResolvedImage,
        services: Arc<ImageServices>,
    ) -> Self {
        Self {
            label: format!("{}:{}", entry.name, entry.tag),
            folder: entry.path.clone(),
            dest: entry.path.under(tree_root),
            manifest,
            blobs: image.blobs().map(|blob| blob.digest.clone()).collect(),
            services,
        }
    }

    pub(super) fn name(&self) -> String {
        format!("image {}", self.label)
    }

    pub(super) fn claim(&self, claim: &mut TreeClaim) {
        claim.dirs.insert(self.folder.to_string());
    }

    pub(super) fn fingerprint(&self) -> Fingerprint {
        let mut fingerprint = Fingerprint::new();
        fingerprint
            .add("manifest", Digest::of(&self.manifest).to_string())
            .add("folder", self.dest.display().to_string());
        fingerprint
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        let manifest = self.dest.join("manifest.json");
        (!manifest.is_file()).then(|| manifest.display().to_string())
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let (dest, manifest, blobs) =
            (self.dest.clone(), self.manifest.clone(), self.blobs.clone());
        let services = Arc::clone(&self.services);
        let bytes = blocking(move || {
            services
                .placer
                .write_image_dir(&dest, &manifest, &blobs)
                .map_err(TaskError::from)
        })
        .await?;
        Ok(JobOutput { bytes })
    }
}

/// Write a docker-archive tarball of a registry image (`archive:`).
pub struct ArchiveJob {
    label: String,
    file: IsoPath,
    repo_tag: String,
    dest: PathBuf,
    config: Descriptor,
    layers: Vec<Descriptor>,
    epoch: i64,
    services: Arc<ImageServices>,
}

impl ArchiveJob {
    pub(super) fn new(
        entry: &ImageEntry,
        archive: &IsoPath,
        tree_root: &Path,
        image: &ResolvedImage,
        epoch: i64,
        services: Arc<ImageServices>,
    ) -> Self {
        Self {
            label: format!("{}:{}", entry.name, entry.tag),
            repo_tag: format!("{}:{}", image.reference.repository_url(), entry.tag),
            file: archive.clone(),
            dest: archive.under(tree_root),
            config: image.config.clone(),
            layers: image.layers.clone(),
            epoch,
            services,
        }
    }

    pub(super) fn name(&self) -> String {
        format!("archive {}", self.label)
    }

    pub(super) fn claim(&self, claim: &mut TreeClaim) {
        claim.files.insert(self.file.to_string());
    }

    pub(super) fn fingerprint(&self) -> Fingerprint {
        let mut fingerprint = Fingerprint::new();
        fingerprint
            .add("config", self.config.digest.to_string())
            .add(
                "layers",
                self.layers
                    .iter()
                    .map(|layer| layer.digest.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .add("name", self.repo_tag.clone())
            .add("epoch", self.epoch.to_string())
            .add("file", self.dest.display().to_string());
        fingerprint
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        (!self.dest.is_file()).then(|| self.dest.display().to_string())
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let store = self.services.store.clone();
        let layers: Vec<ArchiveLayer> = self
            .layers
            .iter()
            .map(|layer| ArchiveLayer {
                path: store.blob_path(&layer.digest),
                media_type: layer.media_type.clone(),
            })
            .collect();
        let config = store.blob_path(&self.config.digest);
        let (dest, repo_tag, label, epoch) = (
            self.dest.clone(),
            self.repo_tag.clone(),
            self.label.clone(),
            self.epoch,
        );
        blocking(move || write_archive(&dest, &repo_tag, &label, &config, &layers, epoch, &store))
            .await
    }
}

fn write_archive(
    dest: &Path,
    repo_tag: &str,
    label: &str,
    config: &Path,
    layers: &[ArchiveLayer],
    epoch: i64,
    store: &Store,
) -> Result<JobOutput, TaskError> {
    // The tarball holds the cached bytes: check them as the image folders' are.
    for path in std::iter::once(config).chain(layers.iter().map(|layer| layer.path.as_path())) {
        if let Some(digest) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|hex| Digest::from_hex(hex).ok())
        {
            store.check_blob(&digest).map_err(LayoutError::from)?;
        }
    }
    crate::fs::create_dirs_0755(dest.parent().unwrap_or(Path::new(".")))?;
    let epoch = u64::try_from(epoch).unwrap_or(0);
    write_docker_archive(
        dest,
        repo_tag,
        config,
        layers,
        epoch,
        &store.root().join("tmp"),
    )
    .map_err(|source| LayoutError::Archive {
        image: label.to_owned(),
        source,
    })?;
    Ok(JobOutput {
        bytes: fs_err::metadata(dest)?.len(),
    })
}

/// Read a local image (archive, OCI layout or daemon), store its blobs, write its folder and
/// its tarball when asked.
pub struct LocalImageJob {
    entry: ImageEntry,
    tree_root: PathBuf,
    base_dir: PathBuf,
    platform: Platform,
    format: ImageFormat,
    epoch: i64,
    services: Arc<ImageServices>,
}

impl LocalImageJob {
    pub(super) fn new(
        entry: ImageEntry,
        tree_root: PathBuf,
        base_dir: PathBuf,
        platform: Platform,
        format: ImageFormat,
        epoch: i64,
        services: Arc<ImageServices>,
    ) -> Self {
        Self {
            entry,
            tree_root,
            base_dir,
            platform,
            format,
            epoch,
            services,
        }
    }

    pub(super) fn name(&self) -> String {
        format!("image {}:{}", self.entry.name, self.entry.tag)
    }

    pub(super) fn claim(&self, claim: &mut TreeClaim) {
        claim.dirs.insert(self.entry.path.to_string());
        if let Some(archive) = &self.entry.archive {
            claim.files.insert(archive.to_string());
        }
    }

    fn daemon(&self) -> Result<&ResolvedEndpoint, TaskError> {
        self.services.daemon.as_ref().ok_or(TaskError::NoDaemon)
    }

    pub(super) async fn fingerprint(&self) -> Result<Fingerprint, TaskError> {
        let source_id = match &self.entry.source {
            ImageSource::Daemon(name) => local::daemon_image_id(name, self.daemon()?).await?,
            source => {
                let (source, base_dir, platform) =
                    (source.clone(), self.base_dir.clone(), self.platform.clone());
                blocking(move || {
                    local::archive_source_id(&source, &base_dir, &platform).map_err(TaskError::from)
                })
                .await?
            }
        };
        let mut fingerprint = Fingerprint::new();
        fingerprint
            .add("source", self.entry.source.to_string())
            .add("source content", source_id)
            .add("format", format!("{:?}", self.format))
            .add("platform", self.platform.to_string())
            .add("folder", self.entry.path.to_string());
        if let Some(archive) = &self.entry.archive {
            fingerprint
                .add("archive", archive.to_string())
                .add("epoch", self.epoch.to_string());
        }
        Ok(fingerprint)
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        let manifest = self.entry.path.under(&self.tree_root).join("manifest.json");
        std::iter::once(manifest)
            .chain(
                self.entry
                    .archive
                    .as_ref()
                    .map(|a| a.under(&self.tree_root)),
            )
            .find(|path| !path.is_file())
            .map(|path| path.display().to_string())
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let sink: Arc<dyn BlobSink> = Arc::new(StoreSink::new(self.services.store.clone())?);
        let image: LocalImage = match &self.entry.source {
            ImageSource::Daemon(name) => {
                local::export_from_daemon(name, self.daemon()?, &self.platform, self.format, sink)
                    .await?
            }
            source => {
                let (source, base_dir, platform, format) = (
                    source.clone(),
                    self.base_dir.clone(),
                    self.platform.clone(),
                    self.format,
                );
                blocking(move || {
                    local::read_archive(&source, &base_dir, &platform, format, &*sink)
                        .map_err(TaskError::from)
                })
                .await?
            }
        };
        let services = Arc::clone(&self.services);
        let dest = self.entry.path.under(&self.tree_root);
        let archive = self
            .entry
            .archive
            .as_ref()
            .map(|a| a.under(&self.tree_root));
        let label = format!("{}:{}", self.entry.name, self.entry.tag);
        let repo_tag = format!("localhost/{}:{}", self.entry.name, self.entry.tag);
        let epoch = self.epoch;
        blocking(move || {
            let blobs: Vec<Digest> = std::iter::once(image.config.digest.clone())
                .chain(image.layers.iter().map(|layer| layer.blob.digest.clone()))
                .collect();
            let mut bytes = services
                .placer
                .write_image_dir(&dest, &image.manifest, &blobs)?;
            if let Some(archive) = archive {
                let store = &services.store;
                let layers: Vec<ArchiveLayer> = image
                    .layers
                    .iter()
                    .map(|layer| ArchiveLayer {
                        path: store.blob_path(&layer.blob.digest),
                        media_type: layer.blob.media_type.clone(),
                    })
                    .collect();
                let config = store.blob_path(&image.config.digest);
                bytes +=
                    write_archive(&archive, &repo_tag, &label, &config, &layers, epoch, store)?
                        .bytes;
            }
            Ok(JobOutput { bytes })
        })
        .await
    }
}

/// Local image readers put finished blobs into the cache through this.
struct StoreSink {
    store: Store,
    scratch: PathBuf,
}

impl StoreSink {
    fn new(store: Store) -> std::io::Result<Self> {
        let scratch = store.root().join("tmp");
        fs_err::create_dir_all(&scratch)?;
        Ok(Self { store, scratch })
    }
}

impl BlobSink for StoreSink {
    fn put_file(&self, digest: &Digest, file: tempfile::NamedTempFile) -> std::io::Result<()> {
        self.store
            .adopt_file(digest, file)
            .map_err(std::io::Error::other)
    }

    fn scratch_dir(&self) -> &Path {
        &self.scratch
    }
}

/// Write the nginx rules for every image folder of the plan.
pub struct RegistryConfigJob {
    config: RegistryConfig,
    tree_root: PathBuf,
    /// `(name, tag, image folder)` of every image.
    images: Vec<(String, String, IsoPath)>,
}

impl RegistryConfigJob {
    pub(super) fn new(
        config: RegistryConfig,
        tree_root: PathBuf,
        images: Vec<(String, String, IsoPath)>,
    ) -> Self {
        Self {
            config,
            tree_root,
            images,
        }
    }

    pub(super) fn name(&self) -> String {
        format!("registry-config {}", self.config.path)
    }

    pub(super) fn claim(&self, claim: &mut TreeClaim) {
        claim.files.insert(self.config.path.to_string());
        claim.files.insert(self.config.common_path.to_string());
    }

    pub(super) fn fingerprint(&self) -> Fingerprint {
        let mut fingerprint = Fingerprint::new();
        fingerprint
            .add("path", self.config.path.to_string())
            .add("common path", self.config.common_path.to_string())
            .add("name prefix", self.config.name_prefix.clone())
            .add("server root", self.config.server_root.clone())
            .add(
                "unknown tag error",
                self.config.unknown_tag_error.to_string(),
            );
        for (name, tag, path) in &self.images {
            fingerprint.add(format!("image {name}:{tag}"), path.to_string());
        }
        fingerprint
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        [&self.config.path, &self.config.common_path]
            .into_iter()
            .find(|path| !path.under(&self.tree_root).is_file())
            .map(ToString::to_string)
    }

    pub(super) fn run(&self) -> Result<JobOutput, TaskError> {
        let mut served = Vec::new();
        for (name, tag, path) in &self.images {
            let dir = path.under(&self.tree_root);
            let manifest = fs_err::read(dir.join("manifest.json"))
                .map_err(|_| LayoutError::NoManifest { dir: dir.clone() })?;
            let media_type =
                convert::media_type(&manifest).map_err(|source| LayoutError::Convert {
                    image: format!("{name}:{tag}"),
                    source,
                })?;
            served.push(ServedImage {
                name: name.clone(),
                tag: tag.clone(),
                dir: served_dir(path),
                manifest_digest: Digest::of(&manifest),
                media_type,
            });
        }
        let rules = image_rules(
            &self.config.name_prefix,
            &self.config.server_root,
            &served,
            RuleOptions {
                unknown_tag_error: self.config.unknown_tag_error,
            },
        );
        let common = common_rules();
        for (path, text) in [
            (&self.config.path, &rules),
            (&self.config.common_path, &common),
        ] {
            let dest = path.under(&self.tree_root);
            crate::fs::create_dirs_0755(dest.parent().unwrap_or(Path::new(".")))?;
            crate::fs::write_atomic(&dest, text.as_bytes(), 0o644)?;
        }
        Ok(JobOutput {
            bytes: (rules.len() + common.len()) as u64,
        })
    }
}

/// An image folder relative to the served root: its last two parts (`<name>/<tag>`), since
/// the served root is the folder that holds every image name.
pub fn served_dir(path: &IsoPath) -> String {
    let parts: Vec<&str> = path.as_str().rsplitn(3, '/').collect();
    match parts.as_slice() {
        [tag, name, ..] => format!("{name}/{tag}"),
        _ => path.to_string(),
    }
}

/// The served root of a set of image folders (what `server_root` must point at), if they
/// share one.
pub fn served_root(paths: &[&IsoPath]) -> Option<String> {
    let roots: BTreeSet<String> = paths
        .iter()
        .map(|path| {
            let parts: Vec<&str> = path.as_str().rsplitn(3, '/').collect();
            parts.get(2).copied().unwrap_or("").to_owned()
        })
        .collect();
    (roots.len() <= 1).then(|| roots.into_iter().next().unwrap_or_default())
}
