//! Manifest conversion for the ISO's `format:`: an OCI image manifest becomes a Docker v2
//! schema 2 manifest by mapping media types, as `skopeo copy --format v2s2` does. Blob bytes
//! never change, so digests of config and layers stay the same; only the manifest (and so its
//! digest) is new. A Docker manifest asked for as v2s2 is kept byte for byte.

use serde::Serialize;
use serde_json::Value;

/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Why a manifest cannot be written in the requested format.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("the manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the manifest lacks `{0}`")]
    Missing(&'static str),
    #[error(
        "layer media type `{0}` has no Docker schema 2 equivalent (zstd layers cannot be converted; use `format: oci`)"
    )]
    UnconvertibleLayer(String),
    #[error("unknown manifest media type `{0}`")]
    UnknownManifest(String),
}

/// The Docker schema 2 layer media type for an OCI one.
fn docker_layer_type(oci: &str) -> Result<&'static str, ConvertError> {
    Ok(match oci {
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.docker.image.rootfs.diff.tar"
        }
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        }
        other => return Err(ConvertError::UnconvertibleLayer(other.to_owned())),
    })
}

/// The manifest's media type: its `mediaType` field, else OCI (which makes it optional).
pub fn media_type(manifest: &[u8]) -> Result<String, ConvertError> {
    let value: Value = serde_json::from_slice(manifest)?;
    Ok(value
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(OCI_MANIFEST)
        .to_owned())
}

#[derive(Serialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    size: u64,
    digest: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    urls: Vec<String>,
}

#[derive(Serialize)]
struct Schema2 {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

fn docker_config_type(media: &str) -> Result<&'static str, ConvertError> {
    match media {
        OCI_CONFIG | DOCKER_CONFIG => Ok(DOCKER_CONFIG),
        other => Err(ConvertError::UnknownManifest(format!("config {other}"))),
    }
}

/// Read an OCI descriptor and map its media type with `map`.
fn descriptor(
    value: &Value,
    map: fn(&str) -> Result<&'static str, ConvertError>,
) -> Result<Descriptor, ConvertError> {
    let field = |name: &'static str| value.get(name).ok_or(ConvertError::Missing(name));
    let media = field("mediaType")?
        .as_str()
        .ok_or(ConvertError::Missing("mediaType"))?;
    let urls = value
        .get("urls")
        .and_then(Value::as_array)
        .map(|urls| {
            urls.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Descriptor {
        media_type: map(media)?,
        size: field("size")?
            .as_u64()
            .ok_or(ConvertError::Missing("size"))?,
        digest: field("digest")?
            .as_str()
            .ok_or(ConvertError::Missing("digest"))?
            .to_owned(),
        urls,
    })
}

/// `manifest` as Docker schema 2: the same bytes when it already is one, else a new compact
/// manifest with mapped media types (annotations are dropped, as skopeo drops them).
pub fn to_docker_schema2(manifest: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let value: Value = serde_json::from_slice(manifest)?;
    let kind = value
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(OCI_MANIFEST);
    match kind {
        DOCKER_MANIFEST => return Ok(manifest.to_vec()),
        OCI_MANIFEST => {}
        other => return Err(ConvertError::UnknownManifest(other.to_owned())),
    }
    let config = descriptor(
        value.get("config").ok_or(ConvertError::Missing("config"))?,
        docker_config_type,
    )?;
    let layers = value
        .get("layers")
        .and_then(Value::as_array)
        .ok_or(ConvertError::Missing("layers"))?
        .iter()
        .map(|layer| descriptor(layer, docker_layer_type))
        .collect::<Result<Vec<_>, _>>()?;
    let schema2 = Schema2 {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config,
        layers,
    };
    Ok(serde_json::to_vec(&schema2)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCI: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":7},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:bb","size":9}],"annotations":{"a":"b"}}"#;

    #[test]
    fn oci_becomes_schema2_with_the_same_blobs() {
        let converted = String::from_utf8(to_docker_schema2(OCI.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            converted,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":"sha256:aa"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":9,"digest":"sha256:bb"}]}"#
        );
    }

    #[test]
    fn docker_manifests_keep_their_bytes_and_zstd_is_refused() {
        let docker = br#"{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(to_docker_schema2(docker).unwrap(), docker.to_vec());
        let zstd = OCI.replace("tar+gzip", "tar+zstd");
        assert!(matches!(
            to_docker_schema2(zstd.as_bytes()),
            Err(ConvertError::UnconvertibleLayer(_))
        ));
    }
}
