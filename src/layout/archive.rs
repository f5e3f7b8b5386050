//! docker-archive tarballs (`archive:` in the recipe), as `docker save` writes them, for
//! `ctr image import` before the node's registry runs.
//!
//! The tar is deterministic: members in a fixed sorted order, mtime = the recipe's epoch,
//! uid/gid 0, mode 0644, no user or group names. Layers are stored uncompressed, as
//! `docker save` stores them; each one's sha256 is checked against the config's `diff_ids`
//! while it is written, so a tarball never carries a layer its config does not describe.
//!
//! ```text
//! <diff_id hex>/layer.tar     one per layer, uncompressed
//! <config hex>.json           the image config, unchanged
//! manifest.json               [{"Config", "RepoTags", "Layers"}]
//! repositories                {"<repo>": {"<tag>": "<top layer id>"}}
//! ```

use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::reference::Digest;

/// One layer blob of the image, as stored (compressed or not).
#[derive(Debug, Clone)]
pub struct ArchiveLayer {
    pub path: PathBuf,
    pub media_type: String,
}

/// Why a tarball could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the image config is not valid JSON or lacks `rootfs.diff_ids`")]
    BadConfig,
    #[error("the config lists {diff_ids} layers but the manifest has {layers}")]
    LayerCount { diff_ids: usize, layers: usize },
    #[error("layer {index} uncompresses to {actual}, but the config says {expected}")]
    DiffIdMismatch {
        index: usize,
        expected: String,
        actual: Digest,
    },
    #[error("layer media type `{0}` cannot be stored in a docker-archive")]
    UnsupportedLayer(String),
    #[error(
        "the image config is {0} bytes; configs over {CONFIG_LIMIT} bytes are refused (a real one is a few KiB)"
    )]
    ConfigTooLarge(u64),
}

/// The largest image config read into memory for a tarball.
const CONFIG_LIMIT: u64 = 16 << 20;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry<'a> {
    config: String,
    repo_tags: Vec<&'a str>,
    layers: Vec<String>,
}

/// Write `dest` atomically: the image with config blob `config` and `layers`, tagged
/// `repo_tag` (`registry.k8s.io/pause:3.9`). `scratch` is a folder for uncompressed layers.
pub fn write_docker_archive(
    dest: &Path,
    repo_tag: &str,
    config: &Path,
    layers: &[ArchiveLayer],
    epoch: u64,
    scratch: &Path,
) -> Result<(), ArchiveError> {
    let size = fs_err::metadata(config)?.len();
    if size > CONFIG_LIMIT {
        return Err(ArchiveError::ConfigTooLarge(size));
    }
    let config_bytes = fs_err::read(config)?;
    let config_json: serde_json::Value =
        serde_json::from_slice(&config_bytes).map_err(|_| ArchiveError::BadConfig)?;
    let diff_ids: Vec<String> = config_json
        .pointer("/rootfs/diff_ids")
        .and_then(serde_json::Value::as_array)
        .ok_or(ArchiveError::BadConfig)?
        .iter()
        .map(|id| {
            id.as_str()
                .map(str::to_owned)
                .ok_or(ArchiveError::BadConfig)
        })
        .collect::<Result<_, _>>()?;
    if diff_ids.len() != layers.len() {
        return Err(ArchiveError::LayerCount {
            diff_ids: diff_ids.len(),
            layers: layers.len(),
        });
    }
    let config_name = format!("{}.json", Digest::of(&config_bytes).hex());

    // Uncompress every layer first: a tar header needs the size before the bytes.
    fs_err::create_dir_all(scratch)?;
    let mut members: Vec<(String, Member)> = Vec::new();
    let mut layer_names = Vec::new();
    for (index, (layer, expected)) in layers.iter().zip(&diff_ids).enumerate() {
        let plain = uncompressed_layer(layer, scratch)?;
        let actual = Digest::of_file(plain.path())?;
        if actual.to_string() != *expected {
            return Err(ArchiveError::DiffIdMismatch {
                index,
                expected: expected.clone(),
                actual,
            });
        }
        let name = format!("{}/layer.tar", actual.hex());
        layer_names.push(name.clone());
        members.push((name, Member::File(plain)));
    }
    let (repo, tag) = repo_tag.rsplit_once(':').unwrap_or((repo_tag, "latest"));
    let manifest = vec![ManifestEntry {
        config: config_name.clone(),
        repo_tags: vec![repo_tag],
        layers: layer_names.clone(),
    }];
    let top_layer = layer_names
        .last()
        .map(|name| name.trim_end_matches("/layer.tar").to_owned())
        .unwrap_or_default();
    let repositories = serde_json::json!({ repo: { tag: top_layer } });
    members.push((config_name, Member::Bytes(config_bytes)));
    members.push((
        "manifest.json".into(),
        Member::Bytes(serde_json::to_vec(&manifest).map_err(io::Error::other)?),
    ));
    members.push((
        "repositories".into(),
        Member::Bytes(serde_json::to_vec(&repositories).map_err(io::Error::other)?),
    ));
    members.sort_by(|a, b| a.0.cmp(&b.0));

    let temp = crate::fs::temp_beside(dest)?;
    let mut builder = tar::Builder::new(io::BufWriter::new(temp.as_file()));
    let mut directories_written = std::collections::BTreeSet::new();
    for (name, member) in &mut members {
        if let Some((dir, _)) = name.split_once('/')
            && directories_written.insert(dir.to_owned())
        {
            let mut header = header(epoch, 0o755, tar::EntryType::Directory, 0);
            builder.append_data(&mut header, format!("{dir}/"), io::empty())?;
        }
        match member {
            Member::Bytes(bytes) => {
                let mut header = header(epoch, 0o644, tar::EntryType::Regular, bytes.len() as u64);
                builder.append_data(&mut header, &*name, bytes.as_slice())?;
            }
            Member::File(file) => {
                let size = file.as_file().metadata()?.len();
                file.as_file_mut().rewind()?;
                let mut header = header(epoch, 0o644, tar::EntryType::Regular, size);
                builder.append_data(&mut header, &*name, file.as_file_mut())?;
            }
        }
    }
    builder.into_inner()?.flush()?;
    crate::fs::persist(temp, dest, 0o644)?;
    Ok(())
}

enum Member {
    Bytes(Vec<u8>),
    File(tempfile::NamedTempFile),
}

fn header(epoch: u64, mode: u32, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(epoch);
    header.set_size(size);
    header
}

/// The layer's uncompressed bytes in a temporary file.
fn uncompressed_layer(
    layer: &ArchiveLayer,
    scratch: &Path,
) -> Result<tempfile::NamedTempFile, ArchiveError> {
    let mut out = tempfile::NamedTempFile::new_in(scratch)
        .map_err(|e| crate::fs::with_path(&e, "create a temporary file in", scratch))?;
    let input = io::BufReader::new(fs_err::File::open(&layer.path)?);
    let mut reader: Box<dyn Read> = match layer.media_type.rsplit_once('.').map(|(_, k)| k) {
        Some("tar+gzip" | "gzip") => Box::new(flate2::read::GzDecoder::new(input)),
        Some("tar") => Box::new(input),
        _ => return Err(ArchiveError::UnsupportedLayer(layer.media_type.clone())),
    };
    io::copy(&mut reader, out.as_file_mut())
        .map_err(|e| crate::fs::with_path(&e, "uncompress", &layer.path))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn layer_tar(content: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = header(0, 0o644, tar::EntryType::Regular, content.len() as u64);
        builder
            .append_data(&mut header, "hello.txt", content)
            .unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_huge_config_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config");
        // Sparse: 600 MB on paper, nothing on disk.
        fs_err::File::create(&config_path)
            .unwrap()
            .set_len(600 << 20)
            .unwrap();
        let error = write_docker_archive(
            &dir.path().join("a.tar"),
            "registry.k8s.io/pause:3.9",
            &config_path,
            &[],
            1_700_000_000,
            &dir.path().join("scratch"),
        )
        .unwrap_err();
        assert!(matches!(error, ArchiveError::ConfigTooLarge(_)), "{error}");
        assert!(!dir.path().join("a.tar").exists());
    }

    #[test]
    fn writes_a_deterministic_docker_archive_and_checks_diff_ids() {
        let dir = tempfile::tempdir().unwrap();
        let plain = layer_tar(b"hello");
        let layer_path = dir.path().join("layer");
        fs_err::write(&layer_path, gzip(&plain)).unwrap();
        let config = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [Digest::of(&plain).to_string()]}});
        let config_path = dir.path().join("config");
        fs_err::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
        let layers = [ArchiveLayer {
            path: layer_path.clone(),
            media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
        }];
        let scratch = dir.path().join("scratch");
        let first = dir.path().join("a.tar");
        let second = dir.path().join("b.tar");
        write_docker_archive(
            &first,
            "registry.k8s.io/pause:3.9",
            &config_path,
            &layers,
            1_700_000_000,
            &scratch,
        )
        .unwrap();
        write_docker_archive(
            &second,
            "registry.k8s.io/pause:3.9",
            &config_path,
            &layers,
            1_700_000_000,
            &scratch,
        )
        .unwrap();
        assert_eq!(
            fs_err::read(&first).unwrap(),
            fs_err::read(&second).unwrap()
        );

        let mut archive = tar::Archive::new(fs_err::File::open(&first).unwrap());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path().unwrap().display().to_string())
            .collect();
        let layer_dir = Digest::of(&plain).hex().to_owned();
        let position = |name: &str| names.iter().position(|n| n == name).unwrap();
        assert!(position(&format!("{layer_dir}/")) < position(&format!("{layer_dir}/layer.tar")));
        assert!(names.contains(&"manifest.json".to_owned()));

        let wrong = serde_json::json!({"rootfs": {"diff_ids": [Digest::of(b"other").to_string()]}});
        fs_err::write(&config_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
        let error = write_docker_archive(
            &dir.path().join("c.tar"),
            "x:1",
            &config_path,
            &layers,
            0,
            &scratch,
        );
        assert!(matches!(error, Err(ArchiveError::DiffIdMismatch { .. })));
        assert!(!dir.path().join("c.tar").exists());
    }
}
