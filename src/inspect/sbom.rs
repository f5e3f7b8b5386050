//! The SBOM of an ISO: CycloneDX 1.6 JSON made from an [`Inventory`].
//!
//! - `metadata.component` is the ISO (its volume id, `product.txt`'s `VERSION`, its sha256).
//! - One `container` component per image, purl `pkg:oci/<name>@sha256:<manifest>` with its
//!   tag, arch and (when a lock file says where it came from) its upstream repository; its
//!   layers are nested `file` components with their sha256.
//! - One `library` component per RPM, purl `pkg:rpm/<name>@<version>-<release>?arch=…`.
//! - One `file` component per top-level file group (`salt/`, `product.txt`, …), whose sha256 is
//!   that of its `sha256sum`-style listing (`<hex>  <path>` lines, sorted) so that it changes
//!   exactly when a file of the group does; files inside image folders belong to their image.
//!
//! Reproducible: no clock time, every list sorted, keys in a fixed order, and the serial number
//! a UUID derived from the ISO's sha256 (from the whole inventory for a tree), so the same ISO
//! always gives the same bytes.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::Digest as _;

use super::{Image, Inventory};
use crate::reference::Digest;

/// The CycloneDX version written.
pub const SPEC_VERSION: &str = "1.6";

/// The SBOM of `inventory`, as pretty JSON with a trailing newline.
pub fn cyclonedx(inventory: &Inventory) -> Vec<u8> {
    let mut bytes =
        serde_json::to_vec_pretty(&document(inventory)).expect("a JSON value always serializes");
    bytes.push(b'\n');
    bytes
}

fn document(inventory: &Inventory) -> Value {
    let seed = if let Some(iso) = &inventory.iso {
        format!("iso:{}", iso.sha256)
    } else {
        let json = serde_json::to_vec(inventory).expect("an inventory always serializes");
        format!("inventory:{}", Digest::of(&json))
    };
    let serial = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("https://isobuild/sbom/{seed}").as_bytes(),
    );
    let mut components: Vec<Value> = inventory.images.iter().map(image_component).collect();
    components.extend(inventory.packages.iter().map(|package| {
        let mut purl = format!(
            "pkg:rpm/{}@{}-{}?arch={}",
            encode(&package.name),
            encode(&package.version),
            encode(&package.release),
            encode(&package.arch)
        );
        if let Some(epoch) = &package.epoch {
            purl.push_str(&format!("&epoch={}", encode(epoch)));
        }
        json!({
            "type": "library",
            "bom-ref": format!("rpm:{}", package.path),
            "name": package.name,
            "version": format!("{}-{}", package.version, package.release),
            "purl": purl,
            "hashes": [sha256(&package.sha256)],
            "properties": [
                property("isobuild:path", &package.path),
                property("isobuild:repo", &package.repo),
            ],
        })
    }));
    components.extend(file_groups(inventory));

    let mut iso = json!({
        "type": "file",
        "bom-ref": "iso",
        "name": inventory
            .iso
            .as_ref()
            .map_or("ISO tree", |iso| iso.volume_id.as_str()),
    });
    if let Some(version) = inventory
        .product
        .as_ref()
        .and_then(|product| product.get("VERSION"))
    {
        iso["version"] = json!(version);
    }
    if let Some(summary) = &inventory.iso {
        iso["hashes"] = json!([sha256(&summary.sha256)]);
        iso["properties"] = json!([property("isobuild:size", &summary.size.to_string())]);
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": format!("urn:uuid:{serial}"),
        "version": 1,
        "metadata": {
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "isobuild",
                    "version": env!("CARGO_PKG_VERSION"),
                }],
            },
            "component": iso,
        },
        "components": components,
    })
}

fn image_component(image: &Image) -> Value {
    let bom_ref = format!("image:{}:{}", image.name, image.tag);
    let last = image.name.rsplit('/').next().unwrap_or(&image.name);
    let digest = image
        .manifest_digest
        .as_ref()
        .or(image.upstream.as_ref().map(|u| &u.manifest_digest));
    let mut purl = format!("pkg:oci/{}", encode(&last.to_lowercase()));
    if let Some(digest) = digest {
        purl.push_str(&format!("@sha256%3A{}", digest.hex()));
    }
    let mut qualifiers = BTreeMap::new();
    if let Some(arch) = image
        .platform
        .as_deref()
        .and_then(|platform| platform.split('/').nth(1))
    {
        qualifiers.insert("arch", arch.to_owned());
    }
    if let Some(upstream) = &image.upstream {
        qualifiers.insert(
            "repository_url",
            repository_of(&upstream.reference).to_owned(),
        );
    }
    qualifiers.insert("tag", image.tag.clone());
    let query: Vec<String> = qualifiers
        .iter()
        .map(|(key, value)| format!("{key}={}", encode(value)))
        .collect();
    purl.push('?');
    purl.push_str(&query.join("&"));

    let mut properties = vec![property("isobuild:size", &image.size.to_string())];
    if let Some(path) = &image.path {
        properties.push(property("isobuild:path", path));
    }
    if let Some(media_type) = &image.media_type {
        properties.push(property("isobuild:media-type", media_type));
    }
    properties.push(property(
        "isobuild:config",
        &image.config.digest.to_string(),
    ));
    if let Some(upstream) = &image.upstream {
        properties.push(property(
            "isobuild:upstream",
            &format!("{}@{}", upstream.reference, upstream.digest),
        ));
    }
    let layers: Vec<Value> = image
        .layers
        .iter()
        .enumerate()
        .map(|(index, layer)| {
            let mut properties = vec![property("isobuild:size", &layer.size.to_string())];
            if let Some(media_type) = &layer.media_type {
                properties.push(property("isobuild:media-type", media_type));
            }
            json!({
                "type": "file",
                "bom-ref": format!("{bom_ref}:layer:{index}"),
                "name": layer.digest.to_string(),
                "hashes": [sha256(&layer.digest)],
                "properties": properties,
            })
        })
        .collect();
    let mut component = json!({
        "type": "container",
        "bom-ref": bom_ref,
        "name": image.name,
        "version": image.tag,
        "purl": purl,
        "properties": properties,
        "components": layers,
    });
    if let Some(digest) = digest {
        component["hashes"] = json!([sha256(digest)]);
    }
    component
}

/// One component per top-level name of the tree's files (`salt/`, `product.txt`).
fn file_groups(inventory: &Inventory) -> Vec<Value> {
    let mut groups: BTreeMap<String, Vec<&super::File>> = BTreeMap::new();
    for file in &inventory.files {
        let group = match file.path.split_once('/') {
            Some((top, _)) => format!("{top}/"),
            None => file.path.clone(),
        };
        groups.entry(group).or_default().push(file);
    }
    groups
        .into_iter()
        .map(|(group, files)| {
            let mut hasher = sha2::Sha256::new();
            for file in &files {
                hasher.update(format!("{}  {}\n", file.sha256.hex(), file.path));
            }
            let listing = Digest::from_hasher(hasher);
            let bytes: u64 = files.iter().map(|file| file.size).sum();
            json!({
                "type": "file",
                "bom-ref": format!("files:{group}"),
                "name": group,
                "hashes": [sha256(&listing)],
                "properties": [
                    property("isobuild:files", &files.len().to_string()),
                    property("isobuild:size", &bytes.to_string()),
                ],
            })
        })
        .collect()
}

/// `host[:port]/path` of a reference, without its tag or digest.
fn repository_of(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    name.rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(name, |(repository, _)| repository)
}

fn sha256(digest: &Digest) -> Value {
    json!({ "alg": "SHA-256", "content": digest.hex() })
}

fn property(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

/// Percent-encode what a purl component may not hold as is.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purl_parts_are_percent_encoded() {
        assert_eq!(encode("1.0-rc.1"), "1.0-rc.1");
        assert_eq!(encode("a/b:c"), "a%2Fb%3Ac");
    }

    #[test]
    fn repositories_lose_their_tag_or_digest_but_not_their_port() {
        assert_eq!(
            repository_of("127.0.0.1:5000/test/a:1.0"),
            "127.0.0.1:5000/test/a"
        );
        assert_eq!(
            repository_of("127.0.0.1:5000/test/a"),
            "127.0.0.1:5000/test/a"
        );
        assert_eq!(
            repository_of("docker.io/library/a:1@sha256:0123"),
            "docker.io/library/a"
        );
    }
}
