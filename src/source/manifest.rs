//! Image manifests and indexes, OCI and Docker v2 schema 2, parsed from their exact bytes
//! and validated: schema version 2, known media types, `sha256` digests, sizes that fit a
//! `u64`. Anything else (schema 1, artifacts, unknown layer types) is refused here, before a
//! single blob is fetched.
//!
//! The bytes stay the source of truth: digests are computed on them, never on a
//! re-serialisation of these types. Converting between formats is the layout's job.

use serde::{Deserialize, Serialize};

use crate::recipe::Platform;
use crate::reference::Digest;

/// Media types isobuild understands.
pub mod media_type {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";

    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_NONDISTRIBUTABLE_LAYER: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_NONDISTRIBUTABLE_LAYER_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_NONDISTRIBUTABLE_LAYER_ZSTD: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// What a manifest request accepts (`Accept`), in order of preference.
    pub const MANIFESTS: &[&str] = &[
        OCI_INDEX,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        DOCKER_MANIFEST,
    ];
    pub const CONFIGS: &[&str] = &[OCI_CONFIG, DOCKER_CONFIG];
    pub const LAYERS: &[&str] = &[
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_NONDISTRIBUTABLE_LAYER,
        OCI_NONDISTRIBUTABLE_LAYER_GZIP,
        OCI_NONDISTRIBUTABLE_LAYER_ZSTD,
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER_GZIP,
    ];

    /// Whether `media_type` names an index (OCI index or Docker manifest list).
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }
}

/// A manifest or index that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a valid manifest: {0}")]
    Json(#[source] serde_json::Error),
    #[error("schema version {0} is not supported (only 2; schema 1 manifests are long deprecated)")]
    SchemaVersion(u64),
    #[error("unknown {field} media type `{media_type}`")]
    UnknownMediaType {
        field: &'static str,
        media_type: String,
    },
    #[error("the document has no `mediaType` and is neither a manifest nor an index")]
    UnknownShape,
    #[error("the document lacks its `{0}` field")]
    MissingField(&'static str),
}

/// A content descriptor: what a manifest says about one blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// A manifest or an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

impl Manifest {
    /// The media type, from the document or inferred from its shape when absent (OCI allows
    /// that).
    pub fn media_type(&self) -> &str {
        match self {
            Self::Image(manifest) => &manifest.media_type,
            Self::Index(index) => &index.media_type,
        }
    }
}

/// A single-platform image: a config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl ImageManifest {
    /// Whether this is a Docker v2 schema 2 manifest (rather than OCI).
    pub fn is_docker(&self) -> bool {
        self.media_type == media_type::DOCKER_MANIFEST
    }
}

/// A multi-platform index (OCI image index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIndex {
    pub media_type: String,
    pub manifests: Vec<IndexEntry>,
}

/// One manifest an index lists.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexEntry {
    #[serde(flatten)]
    pub descriptor: Descriptor,
    pub platform: Option<PlatformSpec>,
}

/// The platform of an index entry, as the index spells it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl ImageIndex {
    /// The entry for `wanted`. Without a wanted variant, an entry without one is preferred,
    /// then `arm64/v8` (the same thing spelled out), then the first match in index order;
    /// `arm64` and `arm64/v8` are treated as equal both ways. Entries that are not
    /// runnable images (buildx attestations, `unknown/unknown`) never match.
    pub fn select(&self, wanted: &Platform) -> Option<&IndexEntry> {
        let arm64_v8 = |spec: &PlatformSpec| {
            spec.architecture == "arm64" && spec.variant.as_deref().is_none_or(|v| v == "v8")
        };
        let candidates = || {
            self.manifests.iter().filter(|entry| {
                entry.platform.as_ref().is_some_and(|spec| {
                    spec.os == wanted.os && spec.architecture == wanted.architecture
                })
            })
        };
        let spec = |entry: &IndexEntry| entry.platform.clone().expect("filtered on platform");
        match &wanted.variant {
            Some(variant) => candidates().find(|entry| {
                let spec = spec(entry);
                spec.variant.as_deref() == Some(variant.as_str())
                    || (variant == "v8" && arm64_v8(&spec))
            }),
            None => candidates()
                .find(|entry| spec(entry).variant.is_none())
                .or_else(|| candidates().find(|entry| arm64_v8(&spec(entry))))
                .or_else(|| candidates().next()),
        }
    }

    /// Every platform the index offers, sorted, for error messages.
    pub fn platforms(&self) -> Vec<String> {
        let mut platforms: Vec<String> = self
            .manifests
            .iter()
            .filter_map(|entry| entry.platform.as_ref())
            .filter(|spec| spec.os != "unknown")
            .map(ToString::to_string)
            .collect();
        platforms.sort();
        platforms.dedup();
        platforms
    }
}

/// The fields every manifest and index may have; which ones are present tells them apart
/// when `mediaType` is missing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: u64,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<IndexEntry>>,
}

/// Parse and validate a manifest or index.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
    if raw.schema_version != 2 {
        return Err(ManifestError::SchemaVersion(raw.schema_version));
    }
    let media_type = match raw.media_type {
        Some(media_type) => media_type,
        None if raw.manifests.is_some() && raw.config.is_none() => media_type::OCI_INDEX.into(),
        None if raw.config.is_some() && raw.manifests.is_none() => media_type::OCI_MANIFEST.into(),
        None => return Err(ManifestError::UnknownShape),
    };
    if media_type::is_index(&media_type) {
        let manifests = raw
            .manifests
            .ok_or(ManifestError::MissingField("manifests"))?;
        for entry in &manifests {
            let media_type = &entry.descriptor.media_type;
            if !media_type::MANIFESTS.contains(&media_type.as_str()) {
                return Err(ManifestError::UnknownMediaType {
                    field: "index entry",
                    media_type: media_type.clone(),
                });
            }
        }
        return Ok(Manifest::Index(ImageIndex {
            media_type,
            manifests,
        }));
    }
    if media_type != media_type::OCI_MANIFEST && media_type != media_type::DOCKER_MANIFEST {
        return Err(ManifestError::UnknownMediaType {
            field: "manifest",
            media_type,
        });
    }
    let config = raw.config.ok_or(ManifestError::MissingField("config"))?;
    if !media_type::CONFIGS.contains(&config.media_type.as_str()) {
        return Err(ManifestError::UnknownMediaType {
            field: "config",
            media_type: config.media_type,
        });
    }
    let layers = raw.layers.unwrap_or_default();
    if let Some(layer) = layers
        .iter()
        .find(|layer| !media_type::LAYERS.contains(&layer.media_type.as_str()))
    {
        return Err(ManifestError::UnknownMediaType {
            field: "layer",
            media_type: layer.media_type.clone(),
        });
    }
    Ok(Manifest::Image(ImageManifest {
        media_type,
        config,
        layers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    fn docker_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":7,"digest":"{}"}},"layers":[{{"mediaType":"{}","size":10,"digest":"{}"}}]}}"#,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            digest(1),
            media_type::DOCKER_LAYER_GZIP,
            digest(2)
        )
    }

    fn index(entries: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<String> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let variant = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
                format!(
                    r#"{{"mediaType":"{}","size":100,"digest":"{}","platform":{{"os":"{os}","architecture":"{arch}"{variant}}}}}"#,
                    media_type::OCI_MANIFEST,
                    digest(u8::try_from(i).unwrap())
                )
            })
            .collect();
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            manifests.join(",")
        );
        match parse(json.as_bytes()).unwrap() {
            Manifest::Index(index) => index,
            Manifest::Image(_) => panic!("an index"),
        }
    }

    fn platform(text: &str) -> Platform {
        text.parse().unwrap()
    }

    #[test]
    fn docker_manifest_parses() {
        let Manifest::Image(manifest) = parse(docker_manifest().as_bytes()).unwrap() else {
            panic!("an image manifest");
        };
        assert!(manifest.is_docker());
        assert_eq!(manifest.config.size, 7);
        assert_eq!(manifest.layers[0].digest.to_string(), digest(2));
    }

    #[test]
    fn oci_without_media_type_is_inferred() {
        let json = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","size":2,"digest":"{}"}},"layers":[]}}"#,
            media_type::OCI_CONFIG,
            digest(3)
        );
        assert_eq!(
            parse(json.as_bytes()).unwrap().media_type(),
            media_type::OCI_MANIFEST
        );
        let index = index(&[("linux", "amd64", None)]);
        assert_eq!(index.media_type, media_type::OCI_INDEX);
    }

    #[test]
    fn invalid_documents_are_refused() {
        let cases = [
            (
                docker_manifest().replace(r#""size":10"#, r#""size":-1"#),
                "invalid value",
            ),
            (
                docker_manifest().replace(&digest(2), "sha256:abc"),
                "sha256 digest",
            ),
            (
                docker_manifest().replace(&digest(2), &digest(2).replace("sha256", "sha512")),
                "sha256 digest",
            ),
            (
                docker_manifest().replace(r#""schemaVersion":2"#, r#""schemaVersion":1"#),
                "schema version 1",
            ),
            (
                docker_manifest().replace(media_type::DOCKER_LAYER_GZIP, "application/x-weird"),
                "unknown layer media type",
            ),
            (
                docker_manifest().replace(
                    media_type::DOCKER_CONFIG,
                    "application/vnd.oci.empty.v1+json",
                ),
                "unknown config media type",
            ),
            (
                docker_manifest().replace(media_type::DOCKER_MANIFEST, "application/json"),
                "unknown manifest media type",
            ),
            (
                r#"{"schemaVersion":2}"#.to_owned(),
                "neither a manifest nor an index",
            ),
            ("not json".to_owned(), "not a valid manifest"),
        ];
        for (json, message) in cases {
            let error = parse(json.as_bytes()).unwrap_err();
            // The serde message is in the source for JSON errors.
            let text = match std::error::Error::source(&error) {
                Some(source) => format!("{error}: {source}"),
                None => error.to_string(),
            };
            assert!(
                text.contains(message),
                "{json}\n  gave `{text}`, expected `{message}`"
            );
        }
    }

    #[test]
    fn platform_selection() {
        let index = index(&[
            ("unknown", "unknown", None),
            ("linux", "amd64", None),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
        ]);
        let chosen = |wanted: &str| {
            index
                .select(&platform(wanted))
                .map(|entry| entry.platform.clone().unwrap().to_string())
        };
        assert_eq!(chosen("linux/amd64").as_deref(), Some("linux/amd64"));
        assert_eq!(chosen("linux/arm64").as_deref(), Some("linux/arm64/v8"));
        assert_eq!(chosen("linux/arm64/v8").as_deref(), Some("linux/arm64/v8"));
        assert_eq!(chosen("linux/arm/v7").as_deref(), Some("linux/arm/v7"));
        assert_eq!(chosen("linux/arm").as_deref(), Some("linux/arm/v6"));
        assert_eq!(chosen("linux/s390x"), None);
        assert_eq!(
            index.platforms(),
            [
                "linux/amd64",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm64/v8"
            ]
        );
        let plain = self::index(&[("linux", "arm64", None)]);
        assert!(plain.select(&platform("linux/arm64/v8")).is_some());
    }
}
