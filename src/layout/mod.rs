//! The ISO's registry tree (MetalK8s contract): image folders as skopeo's `dir:` transport
//! writes them, docker-archive tarballs, and the nginx rules that serve the folders.
//!
//! # The tree
//!
//! ```text
//! images/                                   the served root (`server_root` points here)
//! ├── <name>/<tag>/                         one folder per image (the recipe's `images.path`)
//! │   ├── version                           "Directory Transport Version: 1.1\n"
//! │   ├── manifest.json                     Docker v2s2 (or OCI with `format: oci`)
//! │   └── <64-hex>                          config and layer blobs, named by digest
//! └── <name>-<tag>.tar                      docker-archive, when the recipe asks (`archive:`)
//! salt/…/registry.inc, registry-common.inc  the nginx rules (`registry_config`)
//! ```
//!
//! # Invariants
//!
//! - Every file in an image folder is a hard link to the verified blob in the cache when the
//!   cache is on the same filesystem, else a copy; identical files in the tree therefore share
//!   one inode and xorriso stores them once. `version` and `manifest.json` go through the
//!   cache too, so they are shared the same way.
//! - An image folder is built beside its final place and renamed into it, so a reader never
//!   sees half of one.
//! - Blob bytes are never changed; only a manifest may be rewritten ([`convert`]).

pub mod archive;
pub mod convert;
pub mod nginx;
pub mod verify;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::reference::Digest;
use crate::store::{Store, StoreError};

pub use verify::DIR_TRANSPORT_VERSION;

/// Why a part of the registry tree could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image `{image}`: {source}")]
    Convert {
        image: String,
        #[source]
        source: convert::ConvertError,
    },
    #[error("image `{image}`: {source}")]
    Archive {
        image: String,
        #[source]
        source: archive::ArchiveError,
    },
    #[error("image folder `{}` lacks a readable manifest.json", dir.display())]
    NoManifest { dir: PathBuf },
}

/// Places blobs in the tree: hard links to the cache when it can, else one copy per digest
/// that later files link to. Shared by every image of a run.
#[derive(Debug)]
pub struct BlobPlacer {
    store: Store,
    /// For a cache on another filesystem: the first copy of each digest in the tree.
    copies: Mutex<HashMap<Digest, PathBuf>>,
}

impl BlobPlacer {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            copies: Mutex::default(),
        }
    }

    /// Make `dest` a file with the content of cached blob `digest`, mode 0644.
    ///
    /// The cached file is checked first ([`Store::check_blob`]). A hard link shares its inode
    /// with the cache, so its mode is set again here: a `chmod` in some tree would otherwise
    /// change every later tree made from this cache (and lock nginx workers out).
    fn place(&self, digest: &Digest, dest: &Path) -> Result<(), LayoutError> {
        self.store.check_blob(digest)?;
        let cached = self.store.blob_path(digest);
        match std::fs::hard_link(&cached, dest) {
            Ok(()) => {
                crate::fs::set_mode(dest, BLOB_MODE)?;
                return Ok(());
            }
            // Only a cache on another filesystem (EXDEV) is a reason to copy.
            Err(error) if error.kind() == io::ErrorKind::CrossesDevices => {}
            Err(error) => {
                return Err(crate::fs::with_path(
                    &error,
                    &format!("hard-link the cached `{}` as", cached.display()),
                    dest,
                )
                .into());
            }
        }
        let mut copies = self
            .copies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(first) = copies.get(digest)
            && std::fs::hard_link(first, dest).is_ok()
        {
            crate::fs::set_mode(dest, BLOB_MODE)?;
            return Ok(());
        }
        // Hash while copying: the copy is what the ISO holds, so it is what must match.
        let mut reader = fs_err::File::open(&cached)?;
        let mut writer = Hashing::new(fs_err::File::create(dest)?);
        io::copy(&mut reader, &mut writer)?;
        let actual = Digest::from_hasher(writer.hasher);
        if actual != *digest {
            let _ = fs_err::remove_file(dest);
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            }
            .into());
        }
        crate::fs::set_mode(dest, BLOB_MODE)?;
        copies.insert(digest.clone(), dest.to_owned());
        Ok(())
    }

    /// Write the image folder `dest`: `version`, `manifest` as `manifest.json`, and every
    /// blob of `blobs` (which must be in the cache). Returns the bytes in the folder.
    pub fn write_image_dir(
        &self,
        dest: &Path,
        manifest: &[u8],
        blobs: &[Digest],
    ) -> Result<u64, LayoutError> {
        let parent = dest.parent().unwrap_or(Path::new("."));
        crate::fs::create_dirs_0755(parent)?;
        let staging = tempfile::Builder::new()
            .prefix(".image-")
            .suffix(crate::fs::TEMP_SUFFIX)
            .tempdir_in(parent)
            .map_err(|e| crate::fs::with_path(&e, "create a folder in", parent))?;
        crate::fs::set_mode(staging.path(), 0o755)?;

        let version = DIR_TRANSPORT_VERSION.as_bytes();
        let manifest_digest = Digest::of(manifest);
        let version_digest = Digest::of(version);
        self.store.put_blob_bytes(&version_digest, version)?;
        self.store.put_blob_bytes(&manifest_digest, manifest)?;
        self.place(&version_digest, &staging.path().join("version"))?;
        self.place(&manifest_digest, &staging.path().join("manifest.json"))?;
        let mut bytes = (version.len() + manifest.len()) as u64;
        for digest in blobs {
            let target = staging.path().join(digest.hex());
            if target.exists() {
                continue;
            }
            self.place(digest, &target)?;
            bytes += fs_err::metadata(&target)?.len();
        }
        if dest.exists() {
            fs_err::remove_dir_all(dest)?;
        }
        let staged = staging.keep();
        fs_err::rename(&staged, dest)?;
        Ok(bytes)
    }
}

/// The mode of every file of an image folder (and of its blob in the cache).
const BLOB_MODE: u32 = 0o644;

/// A writer that hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
        }
    }
}

impl<W: io::Write> io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A registry tree's size: bytes of all files, and of distinct inodes (what the ISO stores).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeSize {
    pub files: u64,
    pub all_bytes: u64,
    pub unique_bytes: u64,
}

impl TreeSize {
    /// Measure the files under `root`.
    pub fn measure(root: &Path) -> io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let mut size = Self::default();
        let mut seen = std::collections::HashSet::new();
        for entry in walkdir::WalkDir::new(root) {
            let entry = entry.map_err(io::Error::from)?;
            if !entry.file_type().is_file() {
                continue;
            }
            let metadata = entry.metadata().map_err(io::Error::from)?;
            size.files += 1;
            size.all_bytes += metadata.len();
            if seen.insert((metadata.dev(), metadata.ino())) {
                size.unique_bytes += metadata.len();
            }
        }
        Ok(size)
    }

    /// Bytes the hard links save.
    pub fn saved_bytes(&self) -> u64 {
        self.all_bytes - self.unique_bytes
    }
}
