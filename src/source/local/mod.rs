//! Images that come from the local machine rather than a registry: archives
//! (`oci-archive:`, `oci:`, `docker-archive:`) and daemon exports (`daemon:`).
//!
//! This module owns the interface the rest of isobuild sees, the error type of the layer and
//! the last step shared by every reader (`assemble`); the readers live in its children:
//!
//! - [`archive`] reads tar archives and OCI layout folders, member by member, without
//!   extracting anything to disk;
//! - [`daemon`] exports an image from a Docker or Podman socket through bollard and feeds the
//!   stream to the docker-archive reader as it arrives;
//! - [`docker_host`] decides which socket to talk to;
//! - [`repack`] turns one layer into a gzip blob in a temporary file.
//!
//! # Flow
//!
//! 1. A reader finds the image (tag, platform) and its config, and streams each layer through
//!    [`repack::repack_layer`] into the sink's scratch folder.
//! 2. `assemble` checks what can be checked (config digest, each layer's digest as read and
//!    its `diff_id` against the config, the platform), hands config and layers to the
//!    [`BlobSink`], and writes a new manifest in the requested [`ImageFormat`].
//!
//! # Invariants
//!
//! - The config is kept byte for byte: its `diff_id`s describe uncompressed layers, which
//!   repacking does not change, so it stays valid.
//! - The manifest is always rebuilt, compact, with its fields in a fixed order, so the same
//!   image gives the same manifest digest whichever archive form or daemon it came from.
//! - Only the sink's scratch folder is written to, and only temporary files that are either
//!   handed to the sink or deleted.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::layout::convert::{ConvertError, DOCKER_MANIFEST, OCI_MANIFEST};
use crate::recipe::{ImageFormat, Platform};
use crate::reference::{Digest, ImageSource};

pub mod archive;
pub mod daemon;
pub mod docker_host;
pub mod repack;

pub use archive::{ArchiveKind, archive_source_id, read_archive, read_archive_bytes};
pub use daemon::{daemon_image_id, export_from_daemon};
pub use docker_host::{Endpoint, EndpointOrigin, ResolvedEndpoint, resolve_endpoint};

use repack::{LayerCompression, RepackedLayer};

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Where finished blobs go: the content-addressed store, or a folder in tests.
pub trait BlobSink: Send + Sync {
    /// Take `file`, whose content has been verified to have digest `digest`, and store it
    /// under that digest (a rename when the scratch folder is on the store's filesystem).
    fn put_file(&self, digest: &Digest, file: tempfile::NamedTempFile) -> io::Result<()>;

    /// The folder where readers create their temporary files.
    fn scratch_dir(&self) -> &Path;
}

/// A blob of the image: where it is stored and how the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDescriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// A layer blob and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    pub blob: BlobDescriptor,
    /// The uncompressed digest, checked against the config; `None` for zstd layers, which
    /// are not decoded.
    pub diff_id: Option<Digest>,
}

/// An image read from an archive or a daemon, with its blobs already in the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    /// The rebuilt manifest, compact JSON.
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// [`DOCKER_MANIFEST`] or [`OCI_MANIFEST`], as the requested format says.
    pub manifest_media_type: &'static str,
    pub config: BlobDescriptor,
    pub layers: Vec<LayerDescriptor>,
    /// What identifies the input cheaply, for task keys: the archive file's digest, the OCI
    /// layout's chosen manifest digest, or the daemon's image ID. See [`archive_source_id`]
    /// and [`daemon_image_id`].
    pub source_id: String,
}

/// Everything that can go wrong reading a local image. Each variant names the image (its
/// source as written, with paths made absolute) or the daemon endpoint.
#[derive(Debug, thiserror::Error)]
pub enum LocalSourceError {
    #[error("cannot read `{image}`")]
    Io {
        image: String,
        #[source]
        source: io::Error,
    },
    #[error("`{image}` is not an archive or a layout folder")]
    NotLocal { image: String },
    #[error("cannot store blob `{digest}` of `{image}`")]
    Sink {
        image: String,
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("`{image}`: refusing archive member `{member}`: {reason}")]
    UnsafeMember {
        image: String,
        member: String,
        reason: String,
    },
    #[error("`{image}` has no member `{member}`")]
    MissingMember { image: String, member: String },
    #[error("`{image}`: `{member}` is larger than {limit} bytes, too large for metadata")]
    TooLarge {
        image: String,
        member: String,
        limit: u64,
    },
    #[error("`{image}`: `{member}` is not what was expected: {reason}")]
    BadMetadata {
        image: String,
        member: String,
        reason: String,
    },
    #[error("`{image}`: {reason}")]
    NoImage { image: String, reason: String },
    #[error("`{image}` is for {found}, not the recipe's platform {wanted}")]
    PlatformMismatch {
        image: String,
        wanted: Platform,
        found: String,
    },
    #[error("`{image}`: {what} has digest `{actual}`, but `{expected}` was expected")]
    DigestMismatch {
        image: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "`{image}`: layer {index} uncompresses to `{actual}`, but the config says `{expected}`"
    )]
    DiffIdMismatch {
        image: String,
        index: usize,
        expected: String,
        actual: Digest,
    },
    #[error("`{image}`: the config lists {diff_ids} layers but the image has {layers}")]
    LayerCount {
        image: String,
        diff_ids: usize,
        layers: usize,
    },
    #[error("`{image}` cannot be written as Docker schema 2")]
    Unconvertible {
        image: String,
        #[source]
        source: ConvertError,
    },
    #[error("`{variable}` is `{value}`, which isobuild cannot use: {reason}")]
    BadDaemonHost {
        variable: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "no container daemon found: `CONTAINER_HOST` and `DOCKER_HOST` are unset and none of these sockets exists: {}\nhint: start Docker or Podman (`systemctl --user start podman.socket`), or set `DOCKER_HOST`",
        paths(tried)
    )]
    NoDaemonSocket { tried: Vec<PathBuf> },
    #[error(
        "cannot export `{image}`: no container daemon answers at {endpoint}\nhint: is the daemon running? Set `DOCKER_HOST` or `CONTAINER_HOST` to its socket"
    )]
    DaemonUnreachable {
        image: String,
        endpoint: ResolvedEndpoint,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("image `{image}` is not in the container daemon at {endpoint}")]
    DaemonImageNotFound {
        image: String,
        endpoint: ResolvedEndpoint,
    },
    #[error("exporting `{image}` from the container daemon at {endpoint} failed")]
    Daemon {
        image: String,
        endpoint: ResolvedEndpoint,
        #[source]
        source: Box<bollard::errors::Error>,
    },
}

fn paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| format!("`{}`", path.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parts of an image config this layer reads; the bytes themselves are kept unchanged.
#[derive(Deserialize)]
struct ConfigView {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// Whether an image for `os`/`architecture`/`variant` fits `wanted`; a missing field fits.
fn platform_fits(
    wanted: &Platform,
    os: Option<&str>,
    architecture: Option<&str>,
    variant: Option<&str>,
) -> bool {
    os.is_none_or(|os| os == wanted.os)
        && architecture.is_none_or(|arch| arch == wanted.architecture)
        && match (&wanted.variant, variant) {
            (Some(wanted), Some(found)) => wanted == found,
            _ => true,
        }
}

/// `os/arch[/variant]` with `?` for what is missing.
fn platform_text(os: Option<&str>, architecture: Option<&str>, variant: Option<&str>) -> String {
    let mut text = format!("{}/{}", os.unwrap_or("?"), architecture.unwrap_or("?"));
    if let Some(variant) = variant {
        text.push('/');
        text.push_str(variant);
    }
    text
}

/// One layer of the image, as a reader found it.
pub(crate) struct LayerRef {
    /// Index into the reader's pool of repacked layers (a layer used twice is read once).
    pub(crate) pool_index: usize,
    /// The digest the source manifest gives for the bytes as stored, when it gives one.
    pub(crate) expected: Option<Digest>,
}

/// What a reader hands to [`assemble`].
pub(crate) struct Found {
    /// The source as the user wrote it, with paths made absolute: for errors.
    pub(crate) image: String,
    pub(crate) config: Vec<u8>,
    /// The config digest the source claims (file name, manifest, image ID), checked.
    pub(crate) expected_config: Option<Digest>,
    pub(crate) pool: Vec<RepackedLayer>,
    pub(crate) layers: Vec<LayerRef>,
    pub(crate) source_id: String,
}

#[derive(Serialize)]
struct ManifestDescriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: u64,
    digest: &'a Digest,
}

/// Field order is part of the manifest digest: schemaVersion, mediaType, config, layers.
#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: ManifestDescriptor<'a>,
    layers: Vec<ManifestDescriptor<'a>>,
}

/// Build the compact manifest for `format` from already-described blobs.
pub fn build_manifest(
    format: ImageFormat,
    config: &BlobDescriptor,
    layers: &[LayerDescriptor],
) -> Vec<u8> {
    let manifest = Manifest {
        schema_version: 2,
        media_type: match format {
            ImageFormat::V2s2 => DOCKER_MANIFEST,
            ImageFormat::Oci => OCI_MANIFEST,
        },
        config: ManifestDescriptor {
            media_type: &config.media_type,
            size: config.size,
            digest: &config.digest,
        },
        layers: layers
            .iter()
            .map(|layer| ManifestDescriptor {
                media_type: &layer.blob.media_type,
                size: layer.blob.size,
                digest: &layer.blob.digest,
            })
            .collect(),
    };
    serde_json::to_vec(&manifest).expect("a manifest of strings and numbers serialises")
}

/// Check what a reader found, store its blobs through `sink` and build the manifest. See the
/// module documentation.
pub(crate) fn assemble(
    found: Found,
    platform: &Platform,
    format: ImageFormat,
    sink: &dyn BlobSink,
) -> Result<LocalImage, LocalSourceError> {
    let Found {
        image,
        config,
        expected_config,
        pool,
        layers,
        source_id,
    } = found;
    let config_digest = Digest::of(&config);
    if let Some(expected) = expected_config
        && expected != config_digest
    {
        return Err(LocalSourceError::DigestMismatch {
            image,
            what: "the config".to_owned(),
            expected,
            actual: config_digest,
        });
    }
    let view: ConfigView =
        serde_json::from_slice(&config).map_err(|error| LocalSourceError::BadMetadata {
            image: image.clone(),
            member: "the image config".to_owned(),
            reason: error.to_string(),
        })?;
    if !platform_fits(
        platform,
        view.os.as_deref(),
        view.architecture.as_deref(),
        view.variant.as_deref(),
    ) {
        return Err(LocalSourceError::PlatformMismatch {
            image,
            wanted: platform.clone(),
            found: platform_text(
                view.os.as_deref(),
                view.architecture.as_deref(),
                view.variant.as_deref(),
            ),
        });
    }
    if view.rootfs.diff_ids.len() != layers.len() {
        return Err(LocalSourceError::LayerCount {
            image,
            diff_ids: view.rootfs.diff_ids.len(),
            layers: layers.len(),
        });
    }
    let mut described = Vec::with_capacity(layers.len());
    for (index, (layer, expected_diff_id)) in layers.iter().zip(&view.rootfs.diff_ids).enumerate() {
        let repacked = &pool[layer.pool_index];
        if let Some(expected) = &layer.expected
            && *expected != repacked.source_digest
        {
            return Err(LocalSourceError::DigestMismatch {
                image,
                what: format!("layer {index}"),
                expected: expected.clone(),
                actual: repacked.source_digest.clone(),
            });
        }
        if let Some(diff_id) = &repacked.diff_id
            && diff_id.to_string() != *expected_diff_id
        {
            return Err(LocalSourceError::DiffIdMismatch {
                image,
                index,
                expected: expected_diff_id.clone(),
                actual: diff_id.clone(),
            });
        }
        let media_type = match (format, repacked.compression) {
            (ImageFormat::V2s2, LayerCompression::Gzip) => DOCKER_LAYER_GZIP,
            (ImageFormat::Oci, LayerCompression::Gzip) => OCI_LAYER_GZIP,
            (ImageFormat::Oci, LayerCompression::Zstd) => OCI_LAYER_ZSTD,
            (ImageFormat::V2s2, LayerCompression::Zstd) => {
                return Err(LocalSourceError::Unconvertible {
                    image,
                    source: ConvertError::UnconvertibleLayer(OCI_LAYER_ZSTD.to_owned()),
                });
            }
        };
        described.push(LayerDescriptor {
            blob: BlobDescriptor {
                media_type: media_type.to_owned(),
                digest: repacked.digest.clone(),
                size: repacked.size,
            },
            diff_id: repacked.diff_id.clone(),
        });
    }
    let config_blob = BlobDescriptor {
        media_type: match format {
            ImageFormat::V2s2 => DOCKER_CONFIG,
            ImageFormat::Oci => OCI_CONFIG,
        }
        .to_owned(),
        digest: config_digest,
        size: config.len() as u64,
    };

    // Everything is checked: only now does anything reach the sink.
    let sink_error = |digest: &Digest, source| LocalSourceError::Sink {
        image: image.clone(),
        digest: digest.clone(),
        source,
    };
    let mut config_file = tempfile::Builder::new()
        .prefix(".config.")
        .suffix(".isobuild-tmp")
        .tempfile_in(sink.scratch_dir())
        .map_err(|e| sink_error(&config_blob.digest, e))?;
    config_file
        .write_all(&config)
        .and_then(|()| config_file.flush())
        .map_err(|e| sink_error(&config_blob.digest, e))?;
    sink.put_file(&config_blob.digest, config_file)
        .map_err(|e| sink_error(&config_blob.digest, e))?;
    let mut stored = std::collections::HashSet::new();
    for repacked in pool {
        // Two members with the same content are stored once; the other copy is deleted.
        if stored.insert(repacked.digest.clone()) {
            sink.put_file(&repacked.digest, repacked.file)
                .map_err(|e| sink_error(&repacked.digest, e))?;
        }
    }

    let manifest = build_manifest(format, &config_blob, &described);
    Ok(LocalImage {
        manifest_digest: Digest::of(&manifest),
        manifest,
        manifest_media_type: match format {
            ImageFormat::V2s2 => DOCKER_MANIFEST,
            ImageFormat::Oci => OCI_MANIFEST,
        },
        config: config_blob,
        layers: described,
        source_id,
    })
}

/// The source as the user wrote it, with a relative path made absolute against `base_dir`.
fn absolute(source: &ImageSource, base_dir: &Path) -> ImageSource {
    match source {
        ImageSource::OciArchive(path) => ImageSource::OciArchive(base_dir.join(path)),
        ImageSource::DockerArchive(path) => ImageSource::DockerArchive(base_dir.join(path)),
        ImageSource::OciLayout { dir, tag } => ImageSource::OciLayout {
            dir: base_dir.join(dir),
            tag: tag.clone(),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
pub(crate) mod test_sink {
    //! A folder sink for unit tests: blobs land in `dir/<hex>`.
    use super::*;

    pub(crate) struct DirSink {
        pub(crate) dir: tempfile::TempDir,
        pub(crate) scratch: PathBuf,
    }

    impl DirSink {
        pub(crate) fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let scratch = dir.path().join("scratch");
            fs_err::create_dir(&scratch).unwrap();
            Self { dir, scratch }
        }

        pub(crate) fn blob(&self, digest: &Digest) -> Vec<u8> {
            fs_err::read(self.dir.path().join(digest.hex())).unwrap()
        }

        /// Names in the scratch folder (should be empty after every read).
        pub(crate) fn scratch_entries(&self) -> Vec<String> {
            fs_err::read_dir(&self.scratch)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        }
    }

    impl BlobSink for DirSink {
        fn put_file(&self, digest: &Digest, file: tempfile::NamedTempFile) -> io::Result<()> {
            assert_eq!(&Digest::of_file(file.path())?, digest);
            file.persist(self.dir.path().join(digest.hex()))?;
            Ok(())
        }

        fn scratch_dir(&self) -> &Path {
            &self.scratch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_compact_with_fields_in_order() {
        let config = BlobDescriptor {
            media_type: DOCKER_CONFIG.to_owned(),
            digest: Digest::of(b"c"),
            size: 1,
        };
        let layer = LayerDescriptor {
            blob: BlobDescriptor {
                media_type: DOCKER_LAYER_GZIP.to_owned(),
                digest: Digest::of(b"l"),
                size: 2,
            },
            diff_id: None,
        };
        let manifest =
            String::from_utf8(build_manifest(ImageFormat::V2s2, &config, &[layer])).unwrap();
        assert_eq!(
            manifest,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2,"digest":"{}"}}]}}"#,
                Digest::of(b"c"),
                Digest::of(b"l")
            )
        );
    }

    #[test]
    fn platforms_fit_when_fields_agree_or_are_missing() {
        let amd64 = Platform::default();
        assert!(platform_fits(&amd64, Some("linux"), Some("amd64"), None));
        assert!(platform_fits(&amd64, None, None, Some("v8")));
        assert!(!platform_fits(&amd64, Some("linux"), Some("arm64"), None));
        let arm = "linux/arm/v7".parse().unwrap();
        assert!(!platform_fits(&arm, Some("linux"), Some("arm"), Some("v6")));
        assert!(platform_fits(&arm, Some("linux"), Some("arm"), None));
    }
}
