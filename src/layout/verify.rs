//! `isobuild verify DIR`: check an ISO tree the way a node would trust it.
//!
//! An image folder is any folder holding both `version` and `manifest.json`. For each one:
//! the `version` text is skopeo's, the manifest parses, every blob it names is present with
//! the declared size, and every blob file's sha256 equals its name. Then the nginx rules
//! (every `*.inc` file in the tree that serves `/v2/`) must cover every image folder, and each
//! `Docker-Content-Digest` they announce must be the digest of the manifest they serve.
//! Every problem is collected; none stops the check early.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::reference::Digest;

/// The `version` file of skopeo's `dir:` transport.
pub const DIR_TRANSPORT_VERSION: &str = "Directory Transport Version: 1.1\n";

/// One thing wrong in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeProblem {
    /// Relative to the checked folder.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for TreeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// What a successful check saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeSummary {
    pub images: usize,
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    pub rule_files: usize,
}

/// Check the tree at `root`; `Err` lists every problem.
pub fn verify_tree(root: &Path) -> Result<TreeSummary, Vec<TreeProblem>> {
    let mut problems = Vec::new();
    let mut summary = TreeSummary::default();
    let shown = |path: &Path| {
        path.strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut image_dirs = Vec::new();
    let mut rule_files = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                problems.push(TreeProblem {
                    path: error.path().map_or_else(String::new, &shown),
                    message: format!("cannot read: {error}"),
                });
                continue;
            }
        };
        if entry.file_type().is_dir()
            && entry.path().join("version").is_file()
            && entry.path().join("manifest.json").is_file()
        {
            image_dirs.push(entry.path().to_owned());
        } else if entry.file_type().is_file()
            && entry.path().extension().is_some_and(|ext| ext == "inc")
        {
            rule_files.push(entry.path().to_owned());
        }
    }
    if image_dirs.is_empty() {
        problems.push(TreeProblem {
            path: ".".into(),
            message: "no image folder (a folder with `version` and `manifest.json`) found".into(),
        });
    }

    // manifest digest of each image folder, by path relative to the root
    let mut manifests: BTreeMap<String, Digest> = BTreeMap::new();
    for dir in &image_dirs {
        summary.images += 1;
        let relative = shown(dir);
        if let Ok(manifest) = fs_err::read(dir.join("manifest.json")) {
            manifests.insert(relative.clone(), Digest::of(&manifest));
        }
        match check_image_dir(dir) {
            Ok((blobs, bytes)) => {
                summary.blobs_checked += blobs;
                summary.bytes_checked += bytes;
            }
            Err(found) => problems.extend(found.into_iter().map(|(file, message)| TreeProblem {
                path: format!("{relative}/{file}"),
                message,
            })),
        }
    }

    // The rules: every manifest location announces the digest of the file it serves.
    let mut served_dirs = BTreeSet::new();
    for file in &rule_files {
        let Ok(text) = fs_err::read_to_string(file) else {
            problems.push(TreeProblem {
                path: shown(file),
                message: "cannot read".into(),
            });
            continue;
        };
        if !text.contains("/manifests/") {
            continue;
        }
        summary.rule_files += 1;
        for (alias, digest) in manifest_rules(&text) {
            // `alias $root/<name>/<tag>/` → the image folder ends with `<name>/<tag>`
            let Some(dir) = manifests.keys().find(|dir| alias_matches(&alias, dir)) else {
                problems.push(TreeProblem {
                    path: shown(file),
                    message: format!("a rule serves `{alias}`, which is not an image folder"),
                });
                continue;
            };
            served_dirs.insert(dir.clone());
            if manifests[dir] != digest {
                problems.push(TreeProblem {
                    path: shown(file),
                    message: format!(
                        "announces {digest} for `{dir}`, but its manifest.json has digest {}",
                        manifests[dir]
                    ),
                });
            }
        }
    }
    if summary.rule_files > 0 {
        for dir in manifests.keys() {
            if !served_dirs.contains(dir) {
                problems.push(TreeProblem {
                    path: dir.clone(),
                    message: "no registry rule serves this image".into(),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems)
    }
}

/// Whether a rule's `alias ROOT/<name>/<tag>` serves the image folder `dir` (`…/<name>/<tag>`):
/// the root is an nginx variable or a node path, so only the last two parts can be compared.
fn alias_matches(alias: &str, dir: &str) -> bool {
    let alias_parts: Vec<&str> = alias.split('/').filter(|p| !p.is_empty()).collect();
    let dir_parts: Vec<&str> = dir.split('/').collect();
    alias_parts.len() >= 2
        && dir_parts.len() >= 2
        && alias_parts[alias_parts.len() - 2..] == dir_parts[dir_parts.len() - 2..]
}

/// `(alias folder, announced digest)` of every manifest location in a rules file.
fn manifest_rules(text: &str) -> Vec<(String, Digest)> {
    let mut rules = Vec::new();
    for block in text.split("location ").skip(1) {
        if !block.contains("/manifests/") {
            continue;
        }
        let alias = block
            .lines()
            .find_map(|line| line.trim().strip_prefix("alias "))
            .map(|alias| alias.trim_end_matches(';').trim_end_matches('/').to_owned());
        let digest = block.lines().find_map(|line| {
            let rest = line
                .trim()
                .strip_prefix("add_header 'Docker-Content-Digest' '")?;
            rest.trim_end_matches(';')
                .trim_end_matches('\'')
                .parse::<Digest>()
                .ok()
        });
        if let (Some(alias), Some(digest)) = (alias, digest) {
            rules.push((alias, digest));
        }
    }
    rules
}

/// Check one image folder: `(blobs checked, bytes)` or the problems, each
/// `(file name, message)`.
fn check_image_dir(dir: &Path) -> Result<(usize, u64), Vec<(String, String)>> {
    let mut problems = Vec::new();
    match fs_err::read_to_string(dir.join("version")) {
        Ok(text) if text == DIR_TRANSPORT_VERSION => {}
        Ok(_) => problems.push((
            "version".into(),
            format!("is not `{}`", DIR_TRANSPORT_VERSION.trim_end()),
        )),
        Err(error) => problems.push(("version".into(), error.to_string())),
    }
    let manifest = match fs_err::read(dir.join("manifest.json")) {
        Ok(bytes) => bytes,
        Err(error) => {
            problems.push(("manifest.json".into(), error.to_string()));
            return Err(problems);
        }
    };
    let expected = match referenced_blobs(&manifest) {
        Ok(blobs) => blobs,
        Err(message) => {
            problems.push(("manifest.json".into(), message));
            return Err(problems);
        }
    };
    let mut bytes = 0;
    let mut named: BTreeSet<String> = BTreeSet::new();
    for (blob, size) in &expected {
        named.insert(blob.hex().to_owned());
        let path = dir.join(blob.hex());
        match fs_err::metadata(&path) {
            Err(_) => problems.push((
                blob.hex().to_owned(),
                format!("missing: the manifest references {blob}"),
            )),
            Ok(metadata) if metadata.len() != *size => problems.push((
                blob.hex().to_owned(),
                format!("is {} bytes, the manifest says {size}", metadata.len()),
            )),
            Ok(metadata) => bytes += metadata.len(),
        }
    }
    let mut checked = 0;
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect::<Vec<PathBuf>>(),
        Err(error) => {
            problems.push((".".into(), error.to_string()));
            Vec::new()
        }
    };
    let mut entries = entries;
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(problem) = file_problem(&path) {
            problems.push((name.clone(), problem));
            continue;
        }
        if name == "version" || name == "manifest.json" {
            continue;
        }
        let Ok(expected_digest) = Digest::from_hex(&name) else {
            problems.push((name, "unexpected file in an image folder".into()));
            continue;
        };
        match Digest::of_file(&path) {
            Ok(actual) if actual == expected_digest => checked += 1,
            Ok(actual) => problems.push((
                name,
                format!("content has digest {actual}, not the one its name says"),
            )),
            Err(error) => problems.push((name, error.to_string())),
        }
        if !named.contains(expected_digest.hex()) {
            problems.push((
                expected_digest.hex().to_owned(),
                "not referenced by manifest.json".into(),
            ));
        }
    }
    if problems.is_empty() {
        Ok((checked, bytes))
    } else {
        Err(problems)
    }
}

/// What makes `path` unfit for an image folder, if anything: it must be a regular file (a
/// link would have nginx serve whatever it points to), readable by everyone (nginx workers
/// run as `nobody`), and neither executable nor writable by others (`0644`, or `0444` as an
/// ISO extracts). Tree files are hard links to the cache, so a `chmod` in a tree shows here.
fn file_problem(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = match fs_err::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => return Some(error.to_string()),
    };
    if !metadata.file_type().is_file() {
        return Some("is not a regular file (a symbolic link, a folder or a device)".into());
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o444 != 0o444 || mode & 0o7133 != 0 {
        return Some(format!(
            "has mode {mode:04o}; image files must be 0644 (readable by nginx, not executable)"
        ));
    }
    None
}

/// Config and layer digests with sizes from a Docker schema 2 or OCI manifest.
pub fn referenced_blobs(manifest: &[u8]) -> Result<Vec<(Digest, u64)>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| format!("is not valid JSON: {e}"))?;
    if value
        .get("schemaVersion")
        .and_then(serde_json::Value::as_u64)
        != Some(2)
    {
        return Err("is not a schema version 2 manifest".into());
    }
    let descriptor = |item: &serde_json::Value| -> Result<(Digest, u64), String> {
        let digest = item
            .get("digest")
            .and_then(serde_json::Value::as_str)
            .ok_or("a descriptor lacks `digest`")?
            .parse::<Digest>()
            .map_err(|e| e.to_string())?;
        let size = item
            .get("size")
            .and_then(serde_json::Value::as_u64)
            .ok_or("a descriptor lacks a valid `size`")?;
        Ok((digest, size))
    };
    let mut blobs = vec![descriptor(value.get("config").ok_or("has no `config`")?)?];
    for layer in value
        .get("layers")
        .and_then(serde_json::Value::as_array)
        .ok_or("has no `layers`")?
    {
        blobs.push(descriptor(layer)?);
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::nginx::{RuleOptions, ServedImage, image_rules};

    /// A tree with one image (`images/alpine/1`) and its rules; returns the root.
    fn tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("images/alpine/1");
        fs_err::create_dir_all(&dir).unwrap();
        let config = b"{}".to_vec();
        let layer = b"layer bytes".to_vec();
        for blob in [&config, &layer] {
            fs_err::write(dir.join(Digest::of(blob).hex()), blob).unwrap();
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": Digest::of(&config).to_string()},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": layer.len(), "digest": Digest::of(&layer).to_string()}],
        });
        let manifest = serde_json::to_vec(&manifest).unwrap();
        fs_err::write(dir.join("manifest.json"), &manifest).unwrap();
        fs_err::write(dir.join("version"), DIR_TRANSPORT_VERSION).unwrap();
        let rules = image_rules(
            "p/",
            "$images",
            &[ServedImage {
                name: "alpine".into(),
                tag: "1".into(),
                dir: "alpine/1".into(),
                manifest_digest: Digest::of(&manifest),
                media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
            }],
            RuleOptions::default(),
        );
        fs_err::write(root.path().join("registry.inc"), rules).unwrap();
        root
    }

    fn messages(root: &Path) -> Vec<String> {
        verify_tree(root)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_tree_passes() {
        let root = tree();
        let summary = verify_tree(root.path()).unwrap();
        assert_eq!(summary.images, 1);
        assert_eq!(summary.blobs_checked, 2);
        assert_eq!(summary.rule_files, 1);
    }

    #[test]
    fn a_flipped_byte_names_the_file() {
        let root = tree();
        let layer = root
            .path()
            .join("images/alpine/1")
            .join(Digest::of(b"layer bytes").hex());
        fs_err::write(&layer, b"layer bytez").unwrap();
        let problems = messages(root.path());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with(&format!(
            "images/alpine/1/{}: content has digest",
            Digest::of(b"layer bytes").hex()
        )));
    }

    #[test]
    fn a_missing_blob_and_an_edited_manifest_are_found() {
        let root = tree();
        let dir = root.path().join("images/alpine/1");
        fs_err::remove_file(dir.join(Digest::of(b"{}").hex())).unwrap();
        let mut manifest = fs_err::read(dir.join("manifest.json")).unwrap();
        manifest.push(b'\n');
        fs_err::write(dir.join("manifest.json"), manifest).unwrap();
        let problems = messages(root.path());
        assert!(
            problems
                .iter()
                .any(|p| p.contains("missing: the manifest references")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("registry.inc: announces")),
            "{problems:?}"
        );
    }
}
