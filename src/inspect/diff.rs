//! `isobuild diff OLD NEW`: what changed between two inventories.
//!
//! Images are matched by name (a new tag of the same image is a change, not a removal and an
//! addition), packages by name and arch, files by path. Files inside image folders are not
//! compared one by one: the image they belong to says it.
//!
//! # The diff's JSON, version 1
//!
//! ```json
//! {
//!   "version": 1,
//!   "old": "Demo 1.0.0", "new": "Demo 1.1.0",
//!   "summary": "images: 1 added, 1 removed, 1 changed; packages: no change; files: 1 added, 1 changed",
//!   "images": {
//!     "added":   [ { "name": "gamma", "tag": "1.0", "digest": "sha256:…", "size": 1234, "layers": 2 } ],
//!     "removed": [ … ],
//!     "changed": [ { "name": "alpha", "old_tag": "1.0", "new_tag": "1.1",
//!                    "old_digest": "sha256:…", "new_digest": "sha256:…",
//!                    "old_size": 100, "new_size": 120, "size_delta": 20,
//!                    "layers_shared": 1, "layers_added": 1, "layers_removed": 1 } ]
//!   },
//!   "packages": { "added": [ { "name": "a", "arch": "x86_64", "version": "1.0-1.el8" } ],
//!                 "removed": [], "changed": [ { "name": "b", "arch": "noarch",
//!                 "old_version": "1-1", "new_version": "2-1" } ] },
//!   "files": {
//!     "added":   [ { "path": "static/new.txt", "size": 4, "sha256": "sha256:…" } ],
//!     "removed": [],
//!     "changed": [ { "path": "static/a.txt", "old_size": 2, "new_size": 5, "size_delta": 3,
//!                    "old_sha256": "sha256:…", "new_sha256": "sha256:…",
//!                    "old_mode": "0644", "new_mode": "0644" } ]
//!   }
//! }
//! ```
//!
//! An image's `digest` is its manifest digest in the tree, or for a lock file the upstream
//! manifest digest. Every list is sorted by name or path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{File, Image, Inventory, Package};
use crate::reference::Digest;

/// Bumped when a field changes meaning or goes away.
pub const DIFF_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub version: u32,
    /// What the old and new side are called in the output.
    pub old: String,
    pub new: String,
    pub summary: String,
    pub images: Changes<ImageSummary, ImageChange>,
    pub packages: Changes<PackageSummary, PackageChange>,
    pub files: Changes<FileSummary, FileChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes<T, C> {
    pub added: Vec<T>,
    pub removed: Vec<T>,
    pub changed: Vec<C>,
}

impl<T, C> Changes<T, C> {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    fn summary(&self) -> String {
        if self.is_empty() {
            return "no change".into();
        }
        let mut parts = Vec::new();
        for (count, word) in [
            (self.added.len(), "added"),
            (self.removed.len(), "removed"),
            (self.changed.len(), "changed"),
        ] {
            if count > 0 {
                parts.push(format!("{count} {word}"));
            }
        }
        parts.join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    pub name: String,
    pub tag: String,
    pub digest: Option<Digest>,
    pub size: u64,
    pub layers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageChange {
    pub name: String,
    pub old_tag: String,
    pub new_tag: String,
    pub old_digest: Option<Digest>,
    pub new_digest: Option<Digest>,
    pub old_size: u64,
    pub new_size: u64,
    pub size_delta: i64,
    pub layers_shared: usize,
    pub layers_added: usize,
    pub layers_removed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSummary {
    pub name: String,
    pub arch: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageChange {
    pub name: String,
    pub arch: String,
    pub old_version: String,
    pub new_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub path: String,
    pub size: u64,
    pub sha256: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    pub old_size: u64,
    pub new_size: u64,
    pub size_delta: i64,
    pub old_sha256: Digest,
    pub new_sha256: Digest,
    pub old_mode: String,
    pub new_mode: String,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.packages.is_empty() && self.files.is_empty()
    }
}

/// What changed from `old` to `new`, the sides named `old_name` and `new_name`.
pub fn diff(old: &Inventory, new: &Inventory, old_name: &str, new_name: &str) -> Diff {
    let images = compare(
        &by(&old.images, |image| image.name.clone()),
        &by(&new.images, |image| image.name.clone()),
        image_summary,
        image_change,
    );
    let packages = compare(
        &by(&old.packages, |p| (p.name.clone(), p.arch.clone())),
        &by(&new.packages, |p| (p.name.clone(), p.arch.clone())),
        package_summary,
        |old: &Package, new: &Package| {
            let (old_version, new_version) = (evr(old), evr(new));
            (old_version != new_version || old.sha256 != new.sha256).then(|| PackageChange {
                name: new.name.clone(),
                arch: new.arch.clone(),
                old_version,
                new_version,
            })
        },
    );
    let files = compare(
        &by(&old.files, |file| file.path.clone()),
        &by(&new.files, |file| file.path.clone()),
        |file: &File| FileSummary {
            path: file.path.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
        },
        |old: &File, new: &File| {
            (old.sha256 != new.sha256 || old.mode != new.mode).then(|| FileChange {
                path: new.path.clone(),
                old_size: old.size,
                new_size: new.size,
                size_delta: delta(old.size, new.size),
                old_sha256: old.sha256.clone(),
                new_sha256: new.sha256.clone(),
                old_mode: old.mode.clone(),
                new_mode: new.mode.clone(),
            })
        },
    );
    let summary = format!(
        "images: {}; packages: {}; files: {}",
        images.summary(),
        packages.summary(),
        files.summary()
    );
    Diff {
        version: DIFF_VERSION,
        old: old_name.to_owned(),
        new: new_name.to_owned(),
        summary,
        images,
        packages,
        files,
    }
}

fn by<K: Ord, T>(items: &[T], key: impl Fn(&T) -> K) -> BTreeMap<K, &T> {
    items.iter().map(|item| (key(item), item)).collect()
}

/// Added, removed and changed entries between two keyed maps.
fn compare<K: Ord, T, S, C>(
    old: &BTreeMap<K, &T>,
    new: &BTreeMap<K, &T>,
    summary: impl Fn(&T) -> S,
    change: impl Fn(&T, &T) -> Option<C>,
) -> Changes<S, C> {
    let mut changes = Changes {
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    for (key, old_item) in old {
        match new.get(key) {
            None => changes.removed.push(summary(old_item)),
            Some(new_item) => changes.changed.extend(change(old_item, new_item)),
        }
    }
    for (key, new_item) in new {
        if !old.contains_key(key) {
            changes.added.push(summary(new_item));
        }
    }
    changes
}

fn delta(old: u64, new: u64) -> i64 {
    i64::try_from(new).unwrap_or(i64::MAX) - i64::try_from(old).unwrap_or(i64::MAX)
}

/// The digest that names an image: its manifest in the tree, else the upstream one.
fn image_digest(image: &Image) -> Option<Digest> {
    image.manifest_digest.clone().or_else(|| {
        image
            .upstream
            .as_ref()
            .map(|upstream| upstream.manifest_digest.clone())
    })
}

fn image_summary(image: &Image) -> ImageSummary {
    ImageSummary {
        name: image.name.clone(),
        tag: image.tag.clone(),
        digest: image_digest(image),
        size: image.size,
        layers: image.layers.len(),
    }
}

fn image_change(old: &Image, new: &Image) -> Option<ImageChange> {
    let blobs = |image: &Image| -> Vec<Digest> {
        image
            .layers
            .iter()
            .map(|layer| layer.digest.clone())
            .collect()
    };
    let (old_layers, new_layers) = (blobs(old), blobs(new));
    let (old_digest, new_digest) = (image_digest(old), image_digest(new));
    let same = old.tag == new.tag
        && old.config == new.config
        && old_layers == new_layers
        && (old_digest == new_digest || old_digest.is_none() || new_digest.is_none());
    if same {
        return None;
    }
    let shared = new_layers
        .iter()
        .filter(|layer| old_layers.contains(layer))
        .count();
    Some(ImageChange {
        name: new.name.clone(),
        old_tag: old.tag.clone(),
        new_tag: new.tag.clone(),
        old_digest,
        new_digest,
        old_size: old.size,
        new_size: new.size,
        size_delta: delta(old.size, new.size),
        layers_shared: shared,
        layers_added: new_layers.len() - shared,
        layers_removed: old_layers
            .iter()
            .filter(|layer| !new_layers.contains(layer))
            .count(),
    })
}

fn evr(package: &Package) -> String {
    match &package.epoch {
        Some(epoch) => format!("{epoch}:{}-{}", package.version, package.release),
        None => format!("{}-{}", package.version, package.release),
    }
}

fn package_summary(package: &Package) -> PackageSummary {
    PackageSummary {
        name: package.name.clone(),
        arch: package.arch.clone(),
        version: evr(package),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{Blob, INVENTORY_VERSION, Kind, Layer};

    fn image(name: &str, tag: &str, layers: &[&[u8]]) -> Image {
        let layers: Vec<Layer> = layers
            .iter()
            .map(|bytes| Layer {
                digest: Digest::of(bytes),
                size: bytes.len() as u64,
                media_type: None,
            })
            .collect();
        Image {
            name: name.into(),
            tag: tag.into(),
            path: None,
            manifest_digest: Some(Digest::of(format!("{name}{tag}").as_bytes())),
            media_type: None,
            platform: None,
            upstream: None,
            config: Blob {
                digest: Digest::of(tag.as_bytes()),
                size: 1,
            },
            size: 1 + layers.iter().map(|l| l.size).sum::<u64>(),
            layers,
        }
    }

    fn inventory(images: Vec<Image>) -> Inventory {
        Inventory {
            version: INVENTORY_VERSION,
            kind: Kind::Tree,
            iso: None,
            product: None,
            platform: None,
            images,
            packages: Vec::new(),
            files: Vec::new(),
        }
    }

    #[test]
    fn a_new_tag_is_a_change_with_shared_layers() {
        let old = inventory(vec![
            image("a", "1", &[b"base", b"v1"]),
            image("b", "1", &[]),
        ]);
        let new = inventory(vec![
            image("a", "2", &[b"base", b"v2!"]),
            image("c", "1", &[]),
        ]);
        let diff = diff(&old, &new, "old", "new");
        assert_eq!(diff.images.removed[0].name, "b");
        assert_eq!(diff.images.added[0].name, "c");
        let change = &diff.images.changed[0];
        assert_eq!((change.layers_shared, change.layers_added), (1, 1));
        assert_eq!(change.size_delta, 1);
        assert_eq!(
            diff.summary,
            "images: 1 added, 1 removed, 1 changed; packages: no change; files: no change"
        );
        assert!(super::diff(&old, &old, "a", "b").is_empty());
    }
}
