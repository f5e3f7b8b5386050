//! What is in an ISO: `isobuild inspect` and `isobuild diff`, and the SBOM `build` writes.
//!
//! An [`Inventory`] lists what an ISO, an ISO tree or a lock file holds: its images (from the
//! image folders, `version` + `manifest.json`), its RPM packages (`packages/…/*.rpm`, from
//! their headers, read by [`crate::rpm::header`]), every
//! other file with its size, sha256 and mode, `product.txt`'s fields, and for an ISO its volume
//! id, size and sha256. [`diff`] compares two inventories, [`render`] prints either as text or
//! Markdown, and [`sbom`] turns one into CycloneDX JSON.
//!
//! An ISO is read in-process ([`iso9660`]: the primary ISO 9660 tree with its Rock Ridge names
//! and modes, file data read straight from the extents), never mounted or extracted; a tree is
//! read from the host. Both become the same [`tree::Tree`], so `inspect` of an ISO and of the
//! folder it was made from give the same inventory apart from the `iso` part.
//!
//! What this module leaves to others: checking blobs against their digests is
//! [`crate::layout::verify`]'s job (`isobuild verify`), so image blobs are described from their
//! manifests and never hashed here; where images go in the tree is [`crate::layout`]'s.
//!
//! # The inventory's JSON, version 1
//!
//! ```json
//! {
//!   "version": 1,
//!   "kind": "iso",                       // "iso", "tree" or "lock"
//!   "iso": { "volume_id": "Demo 1.0.0", "size": 4194304, "sha256": "sha256:…" },
//!   "product": { "NAME": "Demo", "VERSION": "1.0.0" },
//!   "platform": null,                    // a lock file's platform
//!   "images": [
//!     {
//!       "name": "alpha", "tag": "1.0",
//!       "path": "images/alpha/1.0",      // null for a lock file
//!       "manifest_digest": "sha256:…",   // of manifest.json as on the ISO; null for a lock
//!       "media_type": "application/vnd.docker.distribution.manifest.v2+json",
//!       "platform": "linux/amd64",       // from the config blob (a lock: its platform)
//!       "upstream": { "reference": "docker.io/…:1.0", "digest": "sha256:…",
//!                     "manifest_digest": "sha256:…" },   // from a lock file, else null
//!       "config": { "digest": "sha256:…", "size": 1469 },
//!       "layers": [ { "digest": "sha256:…", "size": 3623807, "media_type": "…" } ],
//!       "size": 3625276                  // config + layers
//!     }
//!   ],
//!   "packages": [                        // empty when there is no packages/ tree
//!     { "path": "packages/…/x86_64/a-1.0-1.el8.x86_64.rpm", "repo": "packages/…",
//!       "name": "a", "epoch": null, "version": "1.0", "release": "1.el8", "arch": "x86_64",
//!       "nevra": "a-1.0-1.el8.x86_64",   // `name-[epoch:]version-release.arch`
//!       "size": 1234, "sha256": "sha256:…",
//!       "signing_key": "4c073ae0c8445c0c" }  // the signature's key id; null when unsigned
//!   ],
//!   "files": [ { "path": "product.txt", "size": 42, "sha256": "sha256:…", "mode": "0644" } ]
//! }
//! ```
//!
//! Lists are sorted (images by name and tag, packages and files by path), so the same input
//! always gives the same bytes. `version` is bumped when a field changes meaning or goes away;
//! adding one does not bump it.

pub mod diff;
pub mod iso9660;
pub mod render;
pub mod sbom;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::lock::{LockError, LockFile};
use crate::reference::Digest;
use crate::store::DigestMemo;

use tree::Tree;

/// Bumped when a field changes meaning or goes away (adding one does not bump it).
pub const INVENTORY_VERSION: u32 = 1;

/// What went wrong reading an ISO, a tree or a lock file.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("`{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{}` is not an ISO 9660 image, an ISO tree (a folder) or an isobuild lock file",
        path.display()
    )]
    NotRecognised { path: PathBuf },
    #[error("cannot read the ISO `{}`: {message}", path.display())]
    Iso { path: PathBuf, message: String },
    #[error("image folder `{dir}`: {message}")]
    Image { dir: String, message: String },
    #[error("RPM package `{path}`: {message}")]
    Package { path: String, message: String },
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// What an inventory was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Iso,
    Tree,
    Lock,
}

/// Everything `inspect` knows about an ISO, a tree or a lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub version: u32,
    pub kind: Kind,
    pub iso: Option<IsoSummary>,
    /// `product.txt`'s `KEY=VALUE` lines, when the tree has one at its root.
    pub product: Option<BTreeMap<String, String>>,
    /// A lock file's platform.
    pub platform: Option<String>,
    pub images: Vec<Image>,
    pub packages: Vec<Package>,
    pub files: Vec<File>,
}

/// The ISO file itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsoSummary {
    pub volume_id: String,
    pub size: u64,
    pub sha256: Digest,
}

/// One image: an image folder of the tree, or an image of a lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub name: String,
    pub tag: String,
    /// The image folder in the tree.
    pub path: Option<String>,
    /// The digest of `manifest.json` as it is in the tree (what the ISO's registry serves).
    pub manifest_digest: Option<Digest>,
    pub media_type: Option<String>,
    /// `os/arch[/variant]`, from the config blob.
    pub platform: Option<String>,
    pub upstream: Option<Upstream>,
    pub config: Blob,
    pub layers: Vec<Layer>,
    /// Config and layers, in bytes.
    pub size: u64,
}

/// Where an image came from, as a lock file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub reference: String,
    /// What the reference pointed to: the index when there was one, else the manifest.
    pub digest: Digest,
    /// The chosen platform's manifest, as the registry served it.
    pub manifest_digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub digest: Digest,
    pub size: u64,
    pub media_type: Option<String>,
}

/// One RPM file under `packages/`, described by its header (read in-process, without its
/// payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub path: String,
    /// The repository folder: the nearest folder above the file holding `repodata/`, else
    /// the file's folder.
    pub repo: String,
    pub name: String,
    pub epoch: Option<String>,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub nevra: String,
    pub size: u64,
    pub sha256: Digest,
    pub signing_key: Option<String>,
}

/// One regular file of the tree that is neither in an image folder nor an RPM package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub path: String,
    pub size: u64,
    pub sha256: Digest,
    /// Permission bits, four octal digits (`0644`).
    pub mode: String,
}

/// Where the sha256 of an inspected ISO came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestOrigin {
    /// The cache's digest memo had it for this very file (same path, inode, size and times).
    Memo,
    /// All of the ISO was read; `remembered` when the memo now has it.
    Hashed { remembered: bool },
}

/// An inventory, and where its ISO's sha256 came from (`None` when it is not an ISO).
#[derive(Debug, Clone)]
pub struct Inspected {
    pub inventory: Inventory,
    pub iso_digest: Option<DigestOrigin>,
}

/// Inspect `path`: an ISO file, an ISO tree (a folder) or a lock file. With `lock`, the images
/// also get their upstream reference and digests from that lock file. With `memo`, an ISO's
/// sha256 is taken from it when it has this very file, and remembered in it otherwise.
pub fn inspect(
    path: &Path,
    lock: Option<&Path>,
    memo: Option<&DigestMemo>,
) -> Result<Inspected, InspectError> {
    inspect_with(path, lock, IsoPart::Summary(memo))
}

/// [`inspect`] without the ISO's own summary (`iso` is `null`): what [`diff`] compares, which
/// spares reading all of each ISO to hash it.
pub fn inspect_contents(path: &Path) -> Result<Inventory, InspectError> {
    Ok(inspect_with(path, None, IsoPart::ContentsOnly)?.inventory)
}

/// Whether an ISO's summary (volume id, size, sha256) is wanted, and with which memo.
#[derive(Clone, Copy)]
enum IsoPart<'a> {
    ContentsOnly,
    Summary(Option<&'a DigestMemo>),
}

fn inspect_with(
    path: &Path,
    lock: Option<&Path>,
    part: IsoPart<'_>,
) -> Result<Inspected, InspectError> {
    let mut iso_digest = None;
    let mut inventory = if path.is_dir() {
        of_tree(&Tree::from_dir(path)?, Kind::Tree)?
    } else if !iso9660::is_iso(path)? {
        of_lock(&read_lock(path)?)
    } else if let IsoPart::Summary(memo) = part {
        // Hashing the whole ISO is most of the work (unless the memo has it): on a thread of
        // its own, while the tree is read and its files hashed.
        let (tree, summary) = std::thread::scope(|scope| {
            let summary = scope.spawn(|| iso9660::summary(path, memo));
            let tree = iso9660::read(path).and_then(|tree| of_tree(&tree, Kind::Iso));
            (tree, summary.join())
        });
        let mut inventory = tree?;
        let (summary, origin) = summary.map_err(|_| InspectError::Iso {
            path: path.to_owned(),
            message: "hashing it panicked".into(),
        })??;
        inventory.iso = Some(summary);
        iso_digest = Some(origin);
        inventory
    } else {
        of_tree(&iso9660::read(path)?, Kind::Iso)?
    };
    if let Some(lock) = lock {
        add_upstream(&mut inventory, &LockFile::read(lock)?);
    }
    Ok(Inspected {
        inventory,
        iso_digest,
    })
}

/// Read `path` as a lock file, or say it is none of the three things `inspect` reads.
fn read_lock(path: &Path) -> Result<LockFile, InspectError> {
    if !path.exists() {
        return Err(InspectError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such ISO file, folder or lock file",
            ),
        });
    }
    let text = fs_err::read_to_string(path).map_err(|_| InspectError::NotRecognised {
        path: path.to_owned(),
    })?;
    // A lock file has `platform:` and `images:` at the top level (a recipe's `platform:` is
    // under `images:`); a file without them is not one at all, a file with them deserves the
    // lock file's own error.
    let top_level = |key: &str| text.lines().any(|line| line.starts_with(key));
    if !(top_level("platform:") && top_level("images:")) {
        return Err(InspectError::NotRecognised {
            path: path.to_owned(),
        });
    }
    Ok(LockFile::read(path)?)
}

/// The inventory of a lock file: images only, with their upstream digests.
pub fn of_lock(lock: &LockFile) -> Inventory {
    let mut images: Vec<Image> = lock
        .images
        .iter()
        .filter_map(|locked| {
            let (config, layers) = locked.blobs.split_first()?;
            Some(Image {
                name: locked.name.clone(),
                tag: locked.tag.clone(),
                path: None,
                manifest_digest: None,
                media_type: None,
                platform: Some(lock.platform.clone()),
                upstream: Some(upstream_of(locked)),
                config: Blob {
                    digest: config.digest.clone(),
                    size: config.size,
                },
                layers: layers
                    .iter()
                    .map(|blob| Layer {
                        digest: blob.digest.clone(),
                        size: blob.size,
                        media_type: None,
                    })
                    .collect(),
                size: locked.blobs.iter().map(|blob| blob.size).sum(),
            })
        })
        .collect();
    images.sort_by(|a, b| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));
    Inventory {
        version: INVENTORY_VERSION,
        kind: Kind::Lock,
        iso: None,
        product: None,
        platform: Some(lock.platform.clone()),
        images,
        packages: Vec::new(),
        files: Vec::new(),
    }
}

fn upstream_of(locked: &crate::plan::lock::LockedImage) -> Upstream {
    Upstream {
        reference: locked.reference.clone(),
        digest: locked
            .index_digest
            .clone()
            .unwrap_or_else(|| locked.manifest_digest.clone()),
        manifest_digest: locked.manifest_digest.clone(),
    }
}

/// Give each image of `inventory` the upstream reference and digests `lock` has for its name
/// and tag.
pub fn add_upstream(inventory: &mut Inventory, lock: &LockFile) {
    for image in &mut inventory.images {
        if let Some(locked) = lock
            .images
            .iter()
            .find(|locked| locked.name == image.name && locked.tag == image.tag)
        {
            image.upstream = Some(upstream_of(locked));
        }
    }
}

/// The inventory of a tree (read from the host or from an ISO).
pub fn of_tree(tree: &Tree, kind: Kind) -> Result<Inventory, InspectError> {
    let paths: BTreeSet<&str> = tree.entries.iter().map(|e| e.path.as_str()).collect();
    // An image folder holds both `version` and `manifest.json`, as `verify` decides.
    let image_dirs: BTreeSet<&str> = tree
        .entries
        .iter()
        .filter_map(|entry| entry.path.strip_suffix("/manifest.json"))
        .filter(|dir| paths.contains(format!("{dir}/version").as_str()))
        .collect();
    let in_image_dir = |path: &str| {
        path.rsplit_once('/')
            .is_some_and(|(dir, _)| image_dirs.contains(dir))
    };
    let repo_dirs: BTreeSet<&str> = tree
        .entries
        .iter()
        .filter_map(|entry| entry.path.strip_suffix("/repodata/repomd.xml"))
        .collect();

    let mut images = Vec::new();
    for dir in &image_dirs {
        images.push(image_of(tree, dir)?);
    }
    images.sort_by(|a: &Image, b: &Image| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));

    let mut packages = Vec::new();
    let mut files = Vec::new();
    for entry in &tree.entries {
        if in_image_dir(&entry.path) {
            continue;
        }
        let sha256 = tree.sha256(entry)?;
        if is_package(&entry.path) {
            let header = crate::rpm::header::read(tree.reader(entry)?).map_err(|message| {
                InspectError::Package {
                    path: entry.path.clone(),
                    message,
                }
            })?;
            packages.push(package_of(entry, sha256, &repo_dirs, header));
            continue;
        }
        files.push(File {
            path: entry.path.clone(),
            size: entry.size,
            sha256,
            mode: format!("{:04o}", entry.mode & 0o7777),
        });
    }
    let product = match tree.find("product.txt") {
        Some(entry) => Some(product_fields(&tree.read(entry)?)),
        None => None,
    };
    Ok(Inventory {
        version: INVENTORY_VERSION,
        kind,
        iso: None,
        product,
        platform: None,
        images,
        packages,
        files,
    })
}

/// `KEY=VALUE` lines; others are ignored, as the shell that sources the file would.
fn product_fields(bytes: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.to_owned()))
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// The image in folder `dir`: name and tag from its path (`images/<name…>/<tag>`: the tag is
/// the last component, the name what lies between the first and the last, or everything but
/// the tag in a folder only two deep), the rest from its manifest and config.
fn image_of(tree: &Tree, dir: &str) -> Result<Image, InspectError> {
    let problem = |message: String| InspectError::Image {
        dir: dir.to_owned(),
        message,
    };
    let components: Vec<&str> = dir.split('/').collect();
    let (name, tag) = match components.as_slice() {
        [tag] => ((*tag).to_owned(), String::new()),
        [name, tag] => ((*name).to_owned(), (*tag).to_owned()),
        [_, middle @ .., tag] => (middle.join("/"), (*tag).to_owned()),
        [] => unreachable!("split yields at least one component"),
    };
    let manifest_entry = tree
        .find(&format!("{dir}/manifest.json"))
        .ok_or_else(|| problem("no manifest.json".into()))?;
    let manifest_bytes = tree.read(manifest_entry)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|error| problem(format!("manifest.json does not parse: {error}")))?;
    let config = manifest.config.blob(&problem)?;
    let platform = match tree.find(&format!("{dir}/{}", config.digest.hex())) {
        Some(entry) => serde_json::from_slice::<Config>(&tree.read(entry)?)
            .ok()
            .and_then(|config| config.platform()),
        None => None,
    };
    let mut layers = Vec::new();
    for layer in &manifest.layers {
        let blob = layer.blob(&problem)?;
        layers.push(Layer {
            digest: blob.digest,
            size: blob.size,
            media_type: layer.media_type.clone(),
        });
    }
    let size = config.size + layers.iter().map(|layer| layer.size).sum::<u64>();
    Ok(Image {
        name,
        tag,
        path: Some(dir.to_owned()),
        manifest_digest: Some(Digest::of(&manifest_bytes)),
        media_type: manifest.media_type,
        platform,
        upstream: None,
        config,
        layers,
        size,
    })
}

/// The parts of a Docker v2s2 or OCI image manifest an inventory needs.
#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    size: u64,
}

impl Descriptor {
    fn blob(&self, problem: &impl Fn(String) -> InspectError) -> Result<Blob, InspectError> {
        let digest = self
            .digest
            .parse()
            .map_err(|error| problem(format!("bad digest `{}`: {error}", self.digest)))?;
        Ok(Blob {
            digest,
            size: self.size,
        })
    }
}

#[derive(Deserialize)]
struct Config {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

impl Config {
    fn platform(&self) -> Option<String> {
        let mut text = format!("{}/{}", self.os.as_ref()?, self.architecture.as_ref()?);
        if let Some(variant) = &self.variant {
            text.push('/');
            text.push_str(variant);
        }
        Some(text)
    }
}

/// Whether the file at `path` is an RPM package of the tree's repositories.
fn is_package(path: &str) -> bool {
    path.starts_with("packages/")
        && std::path::Path::new(path)
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("rpm"))
}

/// The package at `entry`, whose header says `header`.
fn package_of(
    entry: &tree::Entry,
    sha256: Digest,
    repo_dirs: &BTreeSet<&str>,
    header: crate::rpm::header::Header,
) -> Package {
    let dir = entry.path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let repo = repo_dirs
        .iter()
        .filter(|repo| dir == **repo || dir.starts_with(&format!("{repo}/")))
        .max_by_key(|repo| repo.len())
        .map_or(dir, |repo| *repo);
    let epoch = header.epoch.map(|epoch| epoch.to_string());
    let nevra = format!(
        "{}-{}{}-{}.{}",
        header.name,
        epoch
            .as_ref()
            .map_or_else(String::new, |epoch| format!("{epoch}:")),
        header.version,
        header.release,
        header.arch
    );
    Package {
        path: entry.path.clone(),
        repo: repo.to_owned(),
        name: header.name,
        epoch,
        version: header.version,
        release: header.release,
        arch: header.arch,
        nevra,
        size: entry.size,
        sha256,
        signing_key: header.signing_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_take_the_nearest_repository_and_an_epoch_in_their_nevra() {
        let repos = BTreeSet::from(["packages/redhat/8", "packages/redhat/8/base"]);
        let entry = tree::Entry {
            path: "packages/redhat/8/base/x86_64/containerd-1.6.21-1.el8.x86_64.rpm".into(),
            size: 10,
            mode: 0o644,
            data: tree::Data::Host(PathBuf::new()),
        };
        let header = crate::rpm::header::Header {
            name: "containerd".into(),
            epoch: Some(2),
            version: "1.6.21".into(),
            release: "1.el8".into(),
            arch: "x86_64".into(),
            signing_key: None,
        };
        let package = package_of(&entry, Digest::of(b""), &repos, header);
        assert_eq!(package.nevra, "containerd-2:1.6.21-1.el8.x86_64");
        assert_eq!(package.epoch.as_deref(), Some("2"));
        assert_eq!(package.repo, "packages/redhat/8/base");
        assert!(is_package(&entry.path));
        assert!(!is_package("salt/a-1-1.x86_64.rpm"));
    }

    #[test]
    fn product_lines_become_fields() {
        let fields = product_fields(b"NAME=MetalK8s\nVERSION=129.0.0-dev\nGIT=\n# no\n");
        assert_eq!(fields["NAME"], "MetalK8s");
        assert_eq!(fields["GIT"], "");
        assert_eq!(fields.len(), 3);
    }
}
