//! Readers for `oci-archive:PATH`, `oci:DIR[:TAG]` and `docker-archive:PATH` (as `docker save`
//! and `podman save` write it, classic `<id>/layer.tar` form and the newer form with an OCI
//! layout inside).
//!
//! Tar members are read as streams and never extracted, so no member name can make anything
//! land outside the scratch folder. Still, an archive with a member that would escape on
//! extraction is refused as a whole, since nothing legitimate produces one: absolute names,
//! `..` components, symlinks or hard links that point outside the archive, device files and
//! FIFOs. Symlinks and hard links inside the archive are followed (Docker and Podman write
//! `<id>/layer.tar -> ../<hex>.tar`).
//!
//! A tar can only be read in order, and the members that say which layers are needed
//! (`manifest.json`, `index.json`, manifests and configs) may come before or after the
//! layers. So a `Scan` keeps every small JSON-looking member in memory and, depending on
//! `Want`, streams the other members through the repacker into temporary files:
//!
//! - a file on disk (or an archive in memory, [`read_archive_bytes`]) is scanned twice: once
//!   for metadata only (seeking over layer data), then once more repacking only the layers
//!   the chosen image uses;
//! - a stream (a daemon export) is scanned once, repacking every layer as it passes, since a
//!   single-image export holds nothing else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Seek};
use std::path::Path;

use serde::Deserialize;

use super::repack::{RepackedLayer, repack_layer};
use super::{Found, LayerRef, LocalImage, LocalSourceError, assemble, platform_fits};
use crate::recipe::{ImageFormat, Platform};
use crate::reference::{Digest, ImageSource};

/// Metadata members (manifests, indexes, configs) larger than this are refused: Docker and
/// registries use the same bound for manifests.
const JSON_LIMIT: u64 = 4 * 1024 * 1024;
/// All metadata kept in memory for one archive, so a crafted archive cannot exhaust memory.
const JSON_BUDGET: u64 = 64 * 1024 * 1024;
/// Symlink chains longer than this are refused (and so are loops).
const MAX_LINK_HOPS: usize = 16;
/// Nested indexes deeper than this are refused.
const MAX_INDEX_DEPTH: usize = 4;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Read the image that `source` names (an archive or a layout folder; relative paths resolve
/// against `base_dir`), store its blobs through `sink` and return its description. Blocking:
/// call it from a blocking task.
pub fn read_archive(
    source: &ImageSource,
    base_dir: &Path,
    platform: &Platform,
    format: ImageFormat,
    sink: &dyn super::BlobSink,
) -> Result<LocalImage, LocalSourceError> {
    let source = super::absolute(source, base_dir);
    let image = source.to_string();
    let found = match &source {
        ImageSource::DockerArchive(path) => {
            let source_id = file_digest(&image, path)?;
            read_docker_archive_seekable(&image, &open_file(path), sink.scratch_dir(), source_id)?
        }
        ImageSource::OciArchive(path) => {
            let source_id = file_digest(&image, path)?;
            let open = open_file(path);
            read_oci_archive_seekable(&image, &open, platform, sink.scratch_dir(), source_id)?
        }
        ImageSource::OciLayout { dir, tag } => {
            read_oci_layout(&image, dir, tag.as_deref(), platform, sink.scratch_dir())?
        }
        ImageSource::Registry(_) | ImageSource::Daemon(_) => {
            return Err(LocalSourceError::NotLocal { image });
        }
    };
    assemble(found, platform, format, sink)
}

/// The two archive forms [`read_archive_bytes`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// `docker save` / `podman save` output (`docker-archive:`).
    Docker,
    /// An OCI image layout in a tar (`oci-archive:`).
    Oci,
}

/// Read an archive held in memory, exactly as [`read_archive`] reads the same bytes from a
/// file. The fuzz targets in `tests/fuzz` use it, since a fuzzer hands over bytes, not
/// files; blobs still go through `sink` and its scratch folder.
pub fn read_archive_bytes(
    kind: ArchiveKind,
    bytes: &[u8],
    platform: &Platform,
    format: ImageFormat,
    sink: &dyn super::BlobSink,
) -> Result<LocalImage, LocalSourceError> {
    let source_id = Digest::of(bytes).to_string();
    let open = || Ok(io::Cursor::new(bytes));
    let scratch = sink.scratch_dir();
    let found = match kind {
        ArchiveKind::Docker => {
            read_docker_archive_seekable("docker-archive:<memory>", &open, scratch, source_id)?
        }
        ArchiveKind::Oci => {
            read_oci_archive_seekable("oci-archive:<memory>", &open, platform, scratch, source_id)?
        }
    };
    assemble(found, platform, format, sink)
}

/// A cheap identity of an archive source, to decide whether it changed: the archive file's
/// sha256, or for an OCI layout folder the digest of the manifest `platform` selects (blobs
/// are content-addressed, so it pins everything).
pub fn archive_source_id(
    source: &ImageSource,
    base_dir: &Path,
    platform: &Platform,
) -> Result<String, LocalSourceError> {
    let source = super::absolute(source, base_dir);
    let image = source.to_string();
    match &source {
        ImageSource::DockerArchive(path) | ImageSource::OciArchive(path) => {
            file_digest(&image, path)
        }
        ImageSource::OciLayout { dir, tag } => {
            let mut read = |member: &str| read_layout_member(&image, dir, member);
            let selection = select_oci(&image, tag.as_deref(), platform, &mut read)?;
            Ok(selection.manifest_digest.to_string())
        }
        ImageSource::Registry(_) | ImageSource::Daemon(_) => {
            Err(LocalSourceError::NotLocal { image })
        }
    }
}

fn file_digest(image: &str, path: &Path) -> Result<String, LocalSourceError> {
    Digest::of_file(path)
        .map(|digest| digest.to_string())
        .map_err(|source| io_error(image, source))
}

fn io_error(image: &str, source: io::Error) -> LocalSourceError {
    LocalSourceError::Io {
        image: image.to_owned(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Member names

/// A member name made canonical (`./a//b` is `a/b`), or why it is refused.
fn normalize_member(raw: &[u8]) -> Result<String, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "its name is not UTF-8")?;
    if text.starts_with('/') {
        return Err("its path is absolute");
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("its path contains `..`"),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// Resolve `target` lexically from `base` (a list of folder names), refusing anything that
/// would leave the archive.
fn resolve_link(base: &[&str], target: &str) -> Result<String, &'static str> {
    if target.starts_with('/') {
        return Err("it links to an absolute path, outside the archive");
    }
    let mut parts: Vec<&str> = base.to_vec();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("it links outside the archive");
                }
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("it links to the archive's root");
    }
    Ok(parts.join("/"))
}

// ---------------------------------------------------------------------------------------------
// Scanning a tar

/// A member worth remembering.
#[derive(Debug)]
enum Member {
    File,
    /// A symlink or hard link, with its target already resolved to an archive path.
    Link(String),
}

/// Which layer-like members a scan streams through the repacker.
pub(crate) enum Want<'a> {
    /// None: a metadata pass.
    Nothing,
    /// Every member that is not small JSON: a single pass over a stream.
    All,
    /// These member names (resolved).
    Only(&'a HashSet<String>),
}

/// What one pass over a tar learned.
#[derive(Default)]
pub(crate) struct Scan {
    members: BTreeMap<String, Member>,
    /// Small members that look like JSON, by name.
    small: HashMap<String, Vec<u8>>,
    small_total: u64,
    /// Members repacked during the pass, by name.
    layers: HashMap<String, RepackedLayer>,
}

impl Scan {
    /// Read the members of `entries` (one pass), refusing unsafe ones.
    pub(crate) fn read<R: Read>(
        entries: tar::Entries<'_, R>,
        image: &str,
        scratch: &Path,
        want: &Want<'_>,
    ) -> Result<Self, LocalSourceError> {
        let mut scan = Self::default();
        for entry in entries {
            let entry = entry.map_err(|source| io_error(image, source))?;
            scan.add(entry, image, scratch, want)?;
        }
        Ok(scan)
    }

    fn add<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        image: &str,
        scratch: &Path,
        want: &Want<'_>,
    ) -> Result<(), LocalSourceError> {
        let raw = entry.path_bytes().into_owned();
        let refuse = |reason: &str| LocalSourceError::UnsafeMember {
            image: image.to_owned(),
            member: String::from_utf8_lossy(&raw).into_owned(),
            reason: reason.to_owned(),
        };
        let name = normalize_member(&raw).map_err(refuse)?;
        let kind = entry.header().entry_type();
        let link_target = || -> Result<String, LocalSourceError> {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| refuse("a link without a target"))?;
            std::str::from_utf8(&target)
                .map(str::to_owned)
                .map_err(|_| refuse("its link target is not UTF-8"))
        };
        let member = match kind {
            tar::EntryType::Directory | tar::EntryType::XGlobalHeader => return Ok(()),
            tar::EntryType::Symlink => {
                let target = link_target()?;
                let parent: Vec<&str> = name.split('/').collect();
                let parent = &parent[..parent.len().saturating_sub(1)];
                Member::Link(resolve_link(parent, &target).map_err(refuse)?)
            }
            // A hard link's target is an archive path, not relative to the link.
            tar::EntryType::Link => {
                Member::Link(resolve_link(&[], &link_target()?).map_err(refuse)?)
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => Member::File,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(refuse("device files and FIFOs are refused"));
            }
            _ => return Err(refuse("unsupported member type")),
        };
        if name.is_empty() {
            return Err(refuse("it has no name"));
        }
        // A later member of the same name replaces an earlier one, as on extraction.
        self.small.remove(&name);
        self.layers.remove(&name);
        if matches!(member, Member::File) {
            self.read_file(&mut entry, &name, image, scratch, want)?;
        }
        self.members.insert(name, member);
        Ok(())
    }

    fn read_file(
        &mut self,
        entry: &mut dyn Read,
        name: &str,
        image: &str,
        scratch: &Path,
        want: &Want<'_>,
    ) -> Result<(), LocalSourceError> {
        let read_error = |source| io_error(image, source);
        let mut first = [0u8; 1];
        let got = entry.read(&mut first).map_err(read_error)?;
        let kept = self.small_total;
        let looks_json = got == 1 && b"{[ \t\r\n".contains(&first[0]);
        if looks_json {
            let mut bytes = first[..got].to_vec();
            entry
                .take(JSON_LIMIT)
                .read_to_end(&mut bytes)
                .map_err(read_error)?;
            let mut extra = [0u8; 1];
            if bytes.len() as u64 == JSON_LIMIT && entry.read(&mut extra).map_err(read_error)? > 0 {
                // Too large for metadata: it can only be a layer, which we never hold in
                // memory, so keep streaming it when it is wanted.
                if Self::wants(want, name) {
                    let mut rest = bytes.as_slice().chain(&extra[..]).chain(entry);
                    let layer = repack_layer(&mut rest, scratch).map_err(read_error)?;
                    self.layers.insert(name.to_owned(), layer);
                }
                return Ok(());
            }
            if kept + bytes.len() as u64 > JSON_BUDGET {
                return Err(LocalSourceError::TooLarge {
                    image: image.to_owned(),
                    member: "the metadata members together".to_owned(),
                    limit: JSON_BUDGET,
                });
            }
            self.small_total += bytes.len() as u64;
            self.small.insert(name.to_owned(), bytes);
        } else if Self::wants(want, name) {
            let mut rest = (&first[..got]).chain(entry);
            let layer = repack_layer(&mut rest, scratch).map_err(read_error)?;
            self.layers.insert(name.to_owned(), layer);
        }
        Ok(())
    }

    fn wants(want: &Want<'_>, name: &str) -> bool {
        match want {
            Want::Nothing => false,
            Want::All => true,
            Want::Only(names) => names.contains(name),
        }
    }

    /// Follow links from `name` to a file member.
    fn resolve(&self, image: &str, name: &str) -> Result<String, LocalSourceError> {
        let missing = || LocalSourceError::MissingMember {
            image: image.to_owned(),
            member: name.to_owned(),
        };
        let mut current = normalize_member(name.as_bytes()).map_err(|_| missing())?;
        for _ in 0..MAX_LINK_HOPS {
            match self.members.get(&current) {
                Some(Member::File) => return Ok(current),
                Some(Member::Link(target)) => current.clone_from(target),
                None => return Err(missing()),
            }
        }
        Err(LocalSourceError::UnsafeMember {
            image: image.to_owned(),
            member: name.to_owned(),
            reason: format!("more than {MAX_LINK_HOPS} links to follow (a loop?)"),
        })
    }

    /// The bytes of a small (metadata) member.
    fn json(&self, image: &str, name: &str) -> Result<Vec<u8>, LocalSourceError> {
        let resolved = self.resolve(image, name)?;
        self.small
            .get(&resolved)
            .cloned()
            .ok_or_else(|| LocalSourceError::BadMetadata {
                image: image.to_owned(),
                member: name.to_owned(),
                reason: format!("it is not JSON, or larger than {JSON_LIMIT} bytes"),
            })
    }

    /// Names (resolved) of `layers` that a second pass must repack.
    fn still_needed(
        &self,
        image: &str,
        layers: &[String],
    ) -> Result<HashSet<String>, LocalSourceError> {
        let mut needed = HashSet::new();
        for layer in layers {
            let resolved = self.resolve(image, layer)?;
            if !self.small.contains_key(&resolved) && !self.layers.contains_key(&resolved) {
                needed.insert(resolved);
            }
        }
        Ok(needed)
    }

    /// Repacked layers for `layers` (member names, with the digest the source claims): a pool
    /// in which a member used twice appears once, and references into it in order.
    fn take_layers(
        &mut self,
        image: &str,
        layers: &[(String, Option<Digest>)],
        scratch: &Path,
    ) -> Result<(Vec<RepackedLayer>, Vec<LayerRef>), LocalSourceError> {
        let mut pool = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        let mut refs = Vec::new();
        for (name, expected) in layers {
            let resolved = self.resolve(image, name)?;
            let pool_index = if let Some(&index) = index_of.get(&resolved) {
                index
            } else {
                let layer = match self.layers.remove(&resolved) {
                    Some(layer) => layer,
                    None => match self.small.get(&resolved) {
                        // A tiny layer that happened to start like JSON.
                        Some(bytes) => repack_layer(&mut bytes.as_slice(), scratch)
                            .map_err(|source| io_error(image, source))?,
                        None => {
                            return Err(LocalSourceError::MissingMember {
                                image: image.to_owned(),
                                member: name.clone(),
                            });
                        }
                    },
                };
                pool.push(layer);
                index_of.insert(resolved, pool.len() - 1);
                pool.len() - 1
            };
            refs.push(LayerRef {
                pool_index,
                expected: expected.clone(),
            });
        }
        Ok((pool, refs))
    }
}

/// Opens the archive afresh for each pass over it: the file at its path, or a cursor over
/// bytes in memory.
type Open<'a, R> = &'a dyn Fn() -> io::Result<R>;

/// The archive file at `path`, opened for a pass.
fn open_file(path: &Path) -> impl Fn() -> io::Result<SeekableFile> + '_ {
    move || fs_err::File::open(path).map(SeekableFile)
}

/// Scan the archive once, without repacking anything.
fn metadata_pass<R: Read + Seek>(
    image: &str,
    open: Open<'_, R>,
    scratch: &Path,
) -> Result<Scan, LocalSourceError> {
    scan_seekable(image, open, scratch, &Want::Nothing)
}

fn scan_seekable<R: Read + Seek>(
    image: &str,
    open: Open<'_, R>,
    scratch: &Path,
    want: &Want<'_>,
) -> Result<Scan, LocalSourceError> {
    let reader = open().map_err(|source| io_error(image, source))?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries_with_seek()
        .map_err(|source| io_error(image, source))?;
    Scan::read(entries, image, scratch, want)
}

/// `fs_err::File` does not implement `Seek` for `&File` the way tar's seeking reader needs;
/// this wrapper forwards both traits.
struct SeekableFile(fs_err::File);

impl Read for SeekableFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Seek for SeekableFile {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

/// Second pass over the archive: repack the layers the first pass found to be needed.
fn layer_pass<R: Read + Seek>(
    scan: &mut Scan,
    image: &str,
    open: Open<'_, R>,
    scratch: &Path,
    layers: &[String],
) -> Result<(), LocalSourceError> {
    let needed = scan.still_needed(image, layers)?;
    if needed.is_empty() {
        return Ok(());
    }
    let second = scan_seekable(image, open, scratch, &Want::Only(&needed))?;
    scan.layers.extend(second.layers);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// docker-archive

/// One entry of a docker-archive's `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What a docker-archive's `manifest.json` says about its one image.
struct DockerSelection {
    config: String,
    /// The config digest its name implies (`<hex>.json`, `blobs/sha256/<hex>`), if any.
    expected_config: Option<Digest>,
    layers: Vec<String>,
}

fn select_docker(scan: &Scan, image: &str) -> Result<DockerSelection, LocalSourceError> {
    let bytes = scan.json(image, "manifest.json")?;
    let entries: Vec<DockerArchiveEntry> =
        serde_json::from_slice(&bytes).map_err(|error| LocalSourceError::BadMetadata {
            image: image.to_owned(),
            member: "manifest.json".to_owned(),
            reason: error.to_string(),
        })?;
    let entry = match entries.as_slice() {
        [entry] => entry,
        [] => {
            return Err(LocalSourceError::NoImage {
                image: image.to_owned(),
                reason: "`manifest.json` lists no image".to_owned(),
            });
        }
        several => {
            let tags: Vec<String> = several
                .iter()
                .map(|entry| entry.repo_tags.clone().unwrap_or_default().join(" "))
                .collect();
            return Err(LocalSourceError::NoImage {
                image: image.to_owned(),
                reason: format!(
                    "it holds {} images ({}); save one image per archive",
                    several.len(),
                    tags.join(", ")
                ),
            });
        }
    };
    let resolved_config = scan.resolve(image, &entry.config)?;
    let stem = resolved_config.rsplit('/').next().unwrap_or_default();
    let stem = stem.strip_suffix(".json").unwrap_or(stem);
    Ok(DockerSelection {
        config: entry.config.clone(),
        expected_config: Digest::from_hex(stem).ok(),
        layers: entry.layers.clone(),
    })
}

fn docker_found(
    mut scan: Scan,
    selection: DockerSelection,
    image: &str,
    scratch: &Path,
    source_id: String,
) -> Result<Found, LocalSourceError> {
    let config = scan.json(image, &selection.config)?;
    let layers: Vec<(String, Option<Digest>)> = selection
        .layers
        .iter()
        .map(|layer| (layer.clone(), None))
        .collect();
    let (pool, layers) = scan.take_layers(image, &layers, scratch)?;
    Ok(Found {
        image: image.to_owned(),
        config,
        expected_config: selection.expected_config,
        pool,
        layers,
        source_id,
    })
}

/// Read a docker-archive that can be read twice (a file, or bytes in memory).
fn read_docker_archive_seekable<R: Read + Seek>(
    image: &str,
    open: Open<'_, R>,
    scratch: &Path,
    source_id: String,
) -> Result<Found, LocalSourceError> {
    let mut scan = metadata_pass(image, open, scratch)?;
    let selection = select_docker(&scan, image)?;
    layer_pass(&mut scan, image, open, scratch, &selection.layers)?;
    docker_found(scan, selection, image, scratch, source_id)
}

/// Read a docker-archive from a stream, in one pass (a daemon export).
pub(crate) fn read_docker_archive_stream(
    reader: &mut dyn Read,
    image: &str,
    scratch: &Path,
    source_id: String,
) -> Result<Found, LocalSourceError> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|source| io_error(image, source))?;
    let scan = Scan::read(entries, image, scratch, &Want::All)?;
    let selection = select_docker(&scan, image)?;
    docker_found(scan, selection, image, scratch, source_id)
}

// ---------------------------------------------------------------------------------------------
// OCI layouts

/// An OCI descriptor, as index.json and manifests hold them.
#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    platform: Option<DescriptorPlatform>,
}

#[derive(Deserialize, Clone)]
struct DescriptorPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Descriptor {
    fn ref_name(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
    }

    fn platform_text(&self) -> String {
        self.platform.as_ref().map_or_else(
            || "no platform".to_owned(),
            |p| super::platform_text(Some(&p.os), Some(&p.architecture), p.variant.as_deref()),
        )
    }
}

/// An index or a manifest: which one is decided by its fields.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexOrManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// The image an OCI layout's index leads to.
struct OciSelection {
    manifest_digest: Digest,
    config: Vec<u8>,
    config_digest: Digest,
    /// Blob digests of the layers, in order.
    layers: Vec<Digest>,
}

fn blob_member(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn parse_json<T: serde::de::DeserializeOwned>(
    image: &str,
    member: &str,
    bytes: &[u8],
) -> Result<T, LocalSourceError> {
    serde_json::from_slice(bytes).map_err(|error| LocalSourceError::BadMetadata {
        image: image.to_owned(),
        member: member.to_owned(),
        reason: error.to_string(),
    })
}

fn descriptor_digest(
    image: &str,
    member: &str,
    descriptor: &Descriptor,
) -> Result<Digest, LocalSourceError> {
    descriptor
        .digest
        .parse()
        .map_err(
            |error: crate::reference::DigestError| LocalSourceError::BadMetadata {
                image: image.to_owned(),
                member: member.to_owned(),
                reason: error.to_string(),
            },
        )
}

/// Read a blob by digest through `read` and check its digest (and size, when given).
fn read_blob(
    image: &str,
    from: &str,
    descriptor: &Descriptor,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, LocalSourceError>,
) -> Result<(Digest, Vec<u8>), LocalSourceError> {
    let digest = descriptor_digest(image, from, descriptor)?;
    let bytes = read(&blob_member(&digest))?;
    let actual = Digest::of(&bytes);
    if actual != digest {
        return Err(LocalSourceError::DigestMismatch {
            image: image.to_owned(),
            what: format!("blob `{}`", blob_member(&digest)),
            expected: digest,
            actual,
        });
    }
    if descriptor
        .size
        .is_some_and(|size| size != bytes.len() as u64)
    {
        return Err(LocalSourceError::BadMetadata {
            image: image.to_owned(),
            member: blob_member(&digest),
            reason: format!(
                "its size is {}, but {from} says {}",
                bytes.len(),
                descriptor.size.unwrap_or_default()
            ),
        });
    }
    Ok((digest, bytes))
}

/// The descriptor for `platform` among `candidates`, or an error listing what there is.
fn pick_platform<'a>(
    image: &str,
    candidates: &'a [Descriptor],
    platform: &Platform,
) -> Result<&'a Descriptor, LocalSourceError> {
    candidates
        .iter()
        .find(|descriptor| {
            descriptor.platform.as_ref().is_some_and(|p| {
                platform_fits(
                    platform,
                    Some(&p.os),
                    Some(&p.architecture),
                    p.variant.as_deref(),
                )
            })
        })
        .ok_or_else(|| LocalSourceError::NoImage {
            image: image.to_owned(),
            reason: format!(
                "no manifest for platform {platform} (there are: {})",
                candidates
                    .iter()
                    .map(Descriptor::platform_text)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// Choose among `index.json`'s manifests: by tag when one is given, else the only one, else
/// by platform when every entry has one.
fn pick_top<'a>(
    image: &str,
    manifests: &'a [Descriptor],
    tag: Option<&str>,
    platform: &Platform,
) -> Result<&'a Descriptor, LocalSourceError> {
    let names = || {
        let names: Vec<&str> = manifests.iter().filter_map(Descriptor::ref_name).collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let candidates: Vec<&Descriptor> = match tag {
        Some(tag) => {
            let exact: Vec<&Descriptor> = manifests
                .iter()
                .filter(|d| d.ref_name() == Some(tag))
                .collect();
            if exact.is_empty() {
                // Some tools write `name:tag` rather than the bare tag.
                manifests
                    .iter()
                    .filter(|d| {
                        d.ref_name()
                            .and_then(|name| name.rsplit_once(':'))
                            .is_some_and(|(name, t)| {
                                t == tag && !t.contains('/') && !name.is_empty()
                            })
                    })
                    .collect()
            } else {
                exact
            }
        }
        None => manifests.iter().collect(),
    };
    match candidates.as_slice() {
        [only] => Ok(only),
        [] => Err(LocalSourceError::NoImage {
            image: image.to_owned(),
            reason: match tag {
                Some(tag) => format!("no manifest is tagged `{tag}` (tags: {})", names()),
                None => "`index.json` lists no manifest".to_owned(),
            },
        }),
        several if several.iter().all(|d| d.platform.is_some()) => {
            let owned: Vec<Descriptor> = several.iter().map(|d| (*d).clone()).collect();
            let chosen = pick_platform(image, &owned, platform)?;
            Ok(several
                .iter()
                .find(|d| d.digest == chosen.digest)
                .expect("chosen from these"))
        }
        several => Err(LocalSourceError::NoImage {
            image: image.to_owned(),
            reason: format!(
                "it holds {} images (tags: {}); name one with `oci:DIR:TAG`",
                several.len(),
                names()
            ),
        }),
    }
}

/// Walk from `index.json` to one image manifest and its config.
fn select_oci(
    image: &str,
    tag: Option<&str>,
    platform: &Platform,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, LocalSourceError>,
) -> Result<OciSelection, LocalSourceError> {
    let index: IndexOrManifest = parse_json(image, "index.json", &read("index.json")?)?;
    let manifests = index.manifests.unwrap_or_default();
    let mut descriptor = pick_top(image, &manifests, tag, platform)?.clone();
    let mut from = "index.json".to_owned();
    for _ in 0..MAX_INDEX_DEPTH {
        let (digest, bytes) = read_blob(image, &from, &descriptor, read)?;
        let member = blob_member(&digest);
        let parsed: IndexOrManifest = parse_json(image, &member, &bytes)?;
        let media_type = descriptor
            .media_type
            .as_deref()
            .or(parsed.media_type.as_deref());
        let is_index = matches!(media_type, Some(OCI_INDEX | DOCKER_MANIFEST_LIST))
            || parsed.manifests.is_some();
        if is_index {
            let manifests = parsed.manifests.unwrap_or_default();
            descriptor = pick_platform(image, &manifests, platform)?.clone();
            from = member;
            continue;
        }
        let bad = |reason: &str| LocalSourceError::BadMetadata {
            image: image.to_owned(),
            member: member.clone(),
            reason: reason.to_owned(),
        };
        let config = parsed.config.ok_or_else(|| bad("it has no `config`"))?;
        let layers = parsed.layers.ok_or_else(|| bad("it has no `layers`"))?;
        let (config_digest, config) = read_blob(image, &member, &config, read)?;
        let layers = layers
            .iter()
            .map(|layer| descriptor_digest(image, &member, layer))
            .collect::<Result<_, _>>()?;
        return Ok(OciSelection {
            manifest_digest: digest,
            config,
            config_digest,
            layers,
        });
    }
    Err(LocalSourceError::NoImage {
        image: image.to_owned(),
        reason: format!("indexes nest more than {MAX_INDEX_DEPTH} deep"),
    })
}

/// Read an oci-archive that can be read twice (a file, or bytes in memory).
fn read_oci_archive_seekable<R: Read + Seek>(
    image: &str,
    open: Open<'_, R>,
    platform: &Platform,
    scratch: &Path,
    source_id: String,
) -> Result<Found, LocalSourceError> {
    let mut scan = metadata_pass(image, open, scratch)?;
    let selection = {
        let mut read = |member: &str| scan.json(image, member);
        select_oci(image, None, platform, &mut read)?
    };
    let members: Vec<String> = selection.layers.iter().map(blob_member).collect();
    layer_pass(&mut scan, image, open, scratch, &members)?;
    let layers: Vec<(String, Option<Digest>)> = selection
        .layers
        .iter()
        .map(|digest| (blob_member(digest), Some(digest.clone())))
        .collect();
    let (pool, layers) = scan.take_layers(image, &layers, scratch)?;
    Ok(Found {
        image: image.to_owned(),
        config: selection.config,
        expected_config: Some(selection.config_digest),
        pool,
        layers,
        source_id,
    })
}

/// Read a metadata file of a layout folder, bounded like archive members.
fn read_layout_member(image: &str, dir: &Path, member: &str) -> Result<Vec<u8>, LocalSourceError> {
    let path = dir.join(member);
    let file = match fs_err::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(LocalSourceError::MissingMember {
                image: image.to_owned(),
                member: member.to_owned(),
            });
        }
        Err(error) => return Err(io_error(image, error)),
    };
    let mut bytes = Vec::new();
    file.take(JSON_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| io_error(image, source))?;
    if bytes.len() as u64 > JSON_LIMIT {
        return Err(LocalSourceError::TooLarge {
            image: image.to_owned(),
            member: member.to_owned(),
            limit: JSON_LIMIT,
        });
    }
    Ok(bytes)
}

fn read_oci_layout(
    image: &str,
    dir: &Path,
    tag: Option<&str>,
    platform: &Platform,
    scratch: &Path,
) -> Result<Found, LocalSourceError> {
    let mut read = |member: &str| read_layout_member(image, dir, member);
    let selection = select_oci(image, tag, platform, &mut read)?;
    let mut pool: Vec<RepackedLayer> = Vec::new();
    let mut index_of: HashMap<&Digest, usize> = HashMap::new();
    let mut layers = Vec::new();
    for digest in &selection.layers {
        let pool_index = if let Some(&index) = index_of.get(digest) {
            index
        } else {
            let member = blob_member(digest);
            let mut file = match fs_err::File::open(dir.join(&member)) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    return Err(LocalSourceError::MissingMember {
                        image: image.to_owned(),
                        member,
                    });
                }
                Err(error) => return Err(io_error(image, error)),
            };
            pool.push(repack_layer(&mut file, scratch).map_err(|source| io_error(image, source))?);
            index_of.insert(digest, pool.len() - 1);
            pool.len() - 1
        };
        layers.push(LayerRef {
            pool_index,
            expected: Some(digest.clone()),
        });
    }
    Ok(Found {
        image: image.to_owned(),
        config: selection.config,
        expected_config: Some(selection.config_digest),
        pool,
        layers,
        source_id: selection.manifest_digest.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::BlobSink as _;
    use super::super::test_sink::DirSink;
    use super::*;
    use crate::layout::convert::{DOCKER_MANIFEST, OCI_MANIFEST};

    /// A tar member written with raw header fields, so tests can craft what `tar::Builder`
    /// would refuse to write.
    fn raw_member(
        builder: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        link: &str,
        data: &[u8],
    ) {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        raw_member(builder, name, tar::EntryType::Regular, "", data);
    }

    /// A layer: a tar with one file of pseudo-random bytes from `seed`.
    fn layer(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let mut builder = tar::Builder::new(Vec::new());
        file(&mut builder, &format!("file-{seed}"), &data);
        builder.into_inner().unwrap()
    }

    fn config(layers: &[Vec<u8>], arch: &str) -> Vec<u8> {
        let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    /// A docker-archive as Podman writes it: `<hex>.tar` layers, `<id>/layer.tar` symlinks to
    /// them, the config, then `manifest.json` last.
    fn docker_archive(layers: &[Vec<u8>], config: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut names = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let hex = Digest::of(layer).hex().to_owned();
            file(&mut builder, &format!("{hex}.tar"), layer);
            let link = format!("id{i}/layer.tar");
            raw_member(
                &mut builder,
                &link,
                tar::EntryType::Symlink,
                &format!("../{hex}.tar"),
                &[],
            );
            names.push(link);
        }
        let config_name = format!("{}.json", Digest::of(config).hex());
        file(&mut builder, &config_name, config);
        let manifest = serde_json::json!([{
            "Config": config_name, "RepoTags": ["localhost/t:1"], "Layers": names
        }]);
        file(
            &mut builder,
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        builder.into_inner().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        fs_err::write(&path, bytes).unwrap();
        path
    }

    fn amd64() -> Platform {
        Platform::default()
    }

    #[test]
    fn docker_archive_layers_are_gzipped_and_match_the_config() {
        let sink = DirSink::new();
        let work = tempfile::tempdir().unwrap();
        let layers = vec![layer(1, 5000), layer(2, 70_000)];
        let config = config(&layers, "amd64");
        let path = write(work.path(), "img.tar", &docker_archive(&layers, &config));
        let source = ImageSource::DockerArchive("img.tar".into());
        let image = read_archive(&source, work.path(), &amd64(), ImageFormat::V2s2, &sink).unwrap();
        assert_eq!(image.manifest_media_type, DOCKER_MANIFEST);
        assert_eq!(image.config.digest, Digest::of(&config));
        assert_eq!(sink.blob(&image.config.digest), config);
        for (described, layer) in image.layers.iter().zip(&layers) {
            assert_eq!(described.diff_id, Some(Digest::of(layer)));
            let stored = sink.blob(&described.blob.digest);
            assert_eq!(stored[..2], [0x1f, 0x8b]);
            let mut unpacked = Vec::new();
            flate2::read::GzDecoder::new(stored.as_slice())
                .read_to_end(&mut unpacked)
                .unwrap();
            assert_eq!(&unpacked, layer);
        }
        assert_eq!(image.manifest_digest, Digest::of(&image.manifest));
        assert_eq!(image.source_id, Digest::of_file(&path).unwrap().to_string());
        assert_eq!(
            archive_source_id(&source, work.path(), &amd64()).unwrap(),
            image.source_id
        );
        assert!(
            sink.scratch_entries().is_empty(),
            "{:?}",
            sink.scratch_entries()
        );
        // Twice, into another sink: the same digests.
        let again = read_archive(
            &source,
            work.path(),
            &amd64(),
            ImageFormat::V2s2,
            &DirSink::new(),
        )
        .unwrap();
        assert_eq!(again, image);
    }

    #[test]
    fn a_layer_that_does_not_match_its_diff_id_is_refused() {
        let sink = DirSink::new();
        let work = tempfile::tempdir().unwrap();
        let layers = vec![layer(1, 100)];
        let config = config(&[layer(9, 100)], "amd64");
        write(work.path(), "img.tar", &docker_archive(&layers, &config));
        let error = read_archive(
            &ImageSource::DockerArchive("img.tar".into()),
            work.path(),
            &amd64(),
            ImageFormat::V2s2,
            &sink,
        )
        .unwrap_err();
        assert!(
            matches!(error, LocalSourceError::DiffIdMismatch { index: 0, .. }),
            "{error}"
        );
        assert!(sink.scratch_entries().is_empty());
    }

    #[test]
    fn the_wrong_platform_is_refused() {
        let work = tempfile::tempdir().unwrap();
        let layers = vec![layer(1, 100)];
        write(
            work.path(),
            "img.tar",
            &docker_archive(&layers, &config(&layers, "arm64")),
        );
        let error = read_archive(
            &ImageSource::DockerArchive("img.tar".into()),
            work.path(),
            &amd64(),
            ImageFormat::V2s2,
            &DirSink::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("linux/arm64"), "{error}");
        assert!(error.contains("img.tar"), "{error}");
    }

    fn refused(members: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> String {
        let sink = DirSink::new();
        let work = tempfile::tempdir().unwrap();
        let layers = vec![layer(1, 100)];
        let config = config(&layers, "amd64");
        let mut builder = tar::Builder::new(Vec::new());
        members(&mut builder);
        // A complete, valid image after the bad member: only the bad member can fail it.
        let valid = docker_archive(&layers, &config);
        let mut valid_archive = tar::Archive::new(valid.as_slice());
        for entry in valid_archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let header = entry.header().clone();
            builder.append(&header, data.as_slice()).unwrap();
        }
        write(work.path(), "bad.tar", &builder.into_inner().unwrap());
        let error = read_archive(
            &ImageSource::DockerArchive("bad.tar".into()),
            work.path(),
            &amd64(),
            ImageFormat::V2s2,
            &sink,
        )
        .unwrap_err();
        assert!(
            matches!(error, LocalSourceError::UnsafeMember { .. }),
            "{error}"
        );
        assert!(sink.scratch_entries().is_empty());
        error.to_string()
    }

    #[test]
    fn unsafe_members_are_refused() {
        use tar::EntryType::{Block, Char, Fifo, Link, Regular, Symlink};
        let cases: [(&str, tar::EntryType, &str, &str); 8] = [
            ("../evil", Regular, "", "contains `..`"),
            ("a/../../evil", Regular, "", "contains `..`"),
            ("/etc/evil", Regular, "", "absolute"),
            ("a/link", Symlink, "../../etc/passwd", "outside the archive"),
            ("link", Symlink, "/etc/passwd", "absolute path"),
            ("hard", Link, "../x", "outside the archive"),
            ("dev", Char, "", "device files"),
            ("fifo", Fifo, "", "FIFOs"),
        ];
        for (name, kind, link, reason) in cases {
            let error = refused(|b| raw_member(b, name, kind, link, &[]));
            assert!(error.contains(reason), "{name}: {error}");
            assert!(error.contains(name), "{name}: {error}");
        }
        let error = refused(|b| raw_member(b, "blk", Block, "", &[]));
        assert!(error.contains("device"), "{error}");
    }

    #[test]
    fn safe_links_inside_the_archive_are_followed() {
        assert_eq!(
            resolve_link(&["a", "b"], "../c/./d"),
            Ok("a/c/d".to_owned())
        );
        assert_eq!(normalize_member(b"./a//b/"), Ok("a/b".to_owned()));
        assert!(resolve_link(&["a"], "..").is_err());
    }

    /// An OCI layout: blobs, an index with one manifest per platform, tagged `tag`.
    fn oci_layout(dir: &Path, platforms: &[(&str, Vec<Vec<u8>>)], tag: &str) {
        let blobs = dir.join("blobs/sha256");
        fs_err::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            let digest = Digest::of(bytes);
            fs_err::write(blobs.join(digest.hex()), bytes).unwrap();
            serde_json::json!({"digest": digest.to_string(), "size": bytes.len()})
        };
        let mut entries = Vec::new();
        for (arch, layers) in platforms {
            let config = config(layers, arch);
            let mut config_desc = put(&config);
            config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
            let layer_descs: Vec<_> = layers
                .iter()
                .map(|layer| {
                    let mut desc = put(layer);
                    desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
                    desc
                })
                .collect();
            let manifest = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config_desc,
                "layers": layer_descs,
            }))
            .unwrap();
            let mut desc = put(&manifest);
            desc["mediaType"] = OCI_MANIFEST.into();
            desc["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
            entries.push(desc);
        }
        let nested = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
        }))
        .unwrap();
        let mut top = put(&nested);
        top["mediaType"] = OCI_INDEX.into();
        top["annotations"] = serde_json::json!({REF_NAME: tag});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
        fs_err::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        fs_err::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }

    fn tar_folder(dir: &Path) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.append_dir_all(".", dir).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn oci_layouts_pick_by_tag_then_platform() {
        let work = tempfile::tempdir().unwrap();
        let amd = vec![layer(1, 3000), layer(2, 3000)];
        let arm = vec![layer(3, 3000)];
        let layout = work.path().join("layout");
        oci_layout(
            &layout,
            &[("arm64", arm.clone()), ("amd64", amd.clone())],
            "v1",
        );
        let source = ImageSource::OciLayout {
            dir: "layout".into(),
            tag: Some("v1".into()),
        };
        let sink = DirSink::new();
        let image = read_archive(&source, work.path(), &amd64(), ImageFormat::Oci, &sink).unwrap();
        assert_eq!(image.manifest_media_type, OCI_MANIFEST);
        assert_eq!(image.config.digest, Digest::of(&config(&amd, "amd64")));
        assert_eq!(image.layers.len(), 2);
        assert!(
            image
                .layers
                .iter()
                .all(|l| l.blob.media_type == "application/vnd.oci.image.layer.v1.tar+gzip")
        );
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let image = read_archive(&source, work.path(), &arm64, ImageFormat::V2s2, &sink).unwrap();
        assert_eq!(image.config.digest, Digest::of(&config(&arm, "arm64")));
        assert!(image.source_id.starts_with("sha256:"));
        assert_eq!(
            archive_source_id(&source, work.path(), &arm64).unwrap(),
            image.source_id
        );

        let wrong_tag = ImageSource::OciLayout {
            dir: "layout".into(),
            tag: Some("v2".into()),
        };
        let error = read_archive(&wrong_tag, work.path(), &amd64(), ImageFormat::Oci, &sink)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no manifest is tagged `v2` (tags: v1)"),
            "{error}"
        );
        let s390x: Platform = "linux/s390x".parse().unwrap();
        let error = read_archive(&source, work.path(), &s390x, ImageFormat::Oci, &sink)
            .unwrap_err()
            .to_string();
        assert!(error.contains("linux/arm64, linux/amd64"), "{error}");
        assert!(sink.scratch_entries().is_empty());
    }

    #[test]
    fn oci_and_docker_archives_of_one_image_give_one_manifest() {
        let work = tempfile::tempdir().unwrap();
        let layers = vec![layer(5, 40_000), layer(6, 10)];
        oci_layout(
            &work.path().join("layout"),
            &[("amd64", layers.clone())],
            "latest",
        );
        write(
            work.path(),
            "oci.tar",
            &tar_folder(&work.path().join("layout")),
        );
        let config = config(&layers, "amd64");
        write(work.path(), "docker.tar", &docker_archive(&layers, &config));
        let sink = DirSink::new();
        let from_oci = read_archive(
            &ImageSource::OciArchive("oci.tar".into()),
            work.path(),
            &amd64(),
            ImageFormat::V2s2,
            &sink,
        )
        .unwrap();
        let from_docker = read_archive(
            &ImageSource::DockerArchive("docker.tar".into()),
            work.path(),
            &amd64(),
            ImageFormat::V2s2,
            &sink,
        )
        .unwrap();
        assert_eq!(from_oci.manifest, from_docker.manifest);
        assert_eq!(from_oci.layers, from_docker.layers);
        assert_ne!(from_oci.source_id, from_docker.source_id);
    }

    #[test]
    fn archives_in_memory_read_as_archive_files_do() {
        let work = tempfile::tempdir().unwrap();
        let layers = vec![layer(7, 3000), layer(8, 10)];
        oci_layout(
            &work.path().join("layout"),
            &[("amd64", layers.clone())],
            "x",
        );
        let oci = tar_folder(&work.path().join("layout"));
        let docker = docker_archive(&layers, &config(&layers, "amd64"));
        for (kind, bytes, source) in [
            (
                ArchiveKind::Oci,
                oci,
                ImageSource::OciArchive("a.tar".into()),
            ),
            (
                ArchiveKind::Docker,
                docker,
                ImageSource::DockerArchive("a.tar".into()),
            ),
        ] {
            write(work.path(), "a.tar", &bytes);
            let sink = DirSink::new();
            let from_file =
                read_archive(&source, work.path(), &amd64(), ImageFormat::Oci, &sink).unwrap();
            let from_bytes =
                read_archive_bytes(kind, &bytes, &amd64(), ImageFormat::Oci, &sink).unwrap();
            assert_eq!(from_bytes, from_file);
            assert!(sink.scratch_entries().is_empty());
        }
    }

    #[test]
    fn a_corrupt_oci_blob_is_refused() {
        let work = tempfile::tempdir().unwrap();
        let layers = vec![layer(5, 400)];
        let layout = work.path().join("layout");
        oci_layout(&layout, &[("amd64", layers.clone())], "latest");
        let hex = Digest::of(&layers[0]).hex().to_owned();
        let mut bad = layers[0].clone();
        bad[600] ^= 1;
        fs_err::write(layout.join("blobs/sha256").join(&hex), &bad).unwrap();
        let error = read_archive(
            &ImageSource::OciLayout {
                dir: layout,
                tag: None,
            },
            work.path(),
            &amd64(),
            ImageFormat::V2s2,
            &DirSink::new(),
        )
        .unwrap_err();
        assert!(
            matches!(&error, LocalSourceError::DigestMismatch { what, .. } if what == "layer 0"),
            "{error}"
        );
    }

    #[test]
    fn an_archive_of_several_images_names_them() {
        let work = tempfile::tempdir().unwrap();
        let layers = vec![layer(1, 10)];
        let mut builder = tar::Builder::new(Vec::new());
        let entry = serde_json::json!({"Config": "c.json", "RepoTags": ["a:1"], "Layers": []});
        let mut other = entry.clone();
        other["RepoTags"] = serde_json::json!(["b:2"]);
        file(
            &mut builder,
            "manifest.json",
            &serde_json::to_vec(&serde_json::json!([entry, other])).unwrap(),
        );
        file(&mut builder, "c.json", &config(&layers, "amd64"));
        write(work.path(), "two.tar", &builder.into_inner().unwrap());
        let error = read_archive(
            &ImageSource::DockerArchive("two.tar".into()),
            work.path(),
            &amd64(),
            ImageFormat::V2s2,
            &DirSink::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("2 images (a:1, b:2)"), "{error}");
    }

    #[test]
    fn a_stream_is_read_in_one_pass() {
        let layers = vec![layer(1, 5000), layer(1, 5000), layer(2, 100)];
        let config = config(&layers, "amd64");
        let bytes = docker_archive(&layers, &config);
        let sink = DirSink::new();
        let found = read_docker_archive_stream(
            &mut bytes.as_slice(),
            "daemon:x",
            sink.scratch_dir(),
            "id".to_owned(),
        )
        .unwrap();
        // The same layer twice is read once and referenced twice.
        assert_eq!(found.pool.len(), 2);
        let image = assemble(found, &amd64(), ImageFormat::V2s2, &sink).unwrap();
        assert_eq!(image.layers[0], image.layers[1]);
        assert_eq!(image.source_id, "id");
        assert!(sink.scratch_entries().is_empty());
    }
}
