//! The digest memo (`<cache>/digests-v1/`): the sha256 of a large local file (an ISO) as last
//! computed, so `inspect` of a 2 GiB ISO does not read all of it again each time.
//!
//! An entry is keyed on the file's identity: its canonical path, device, inode, size, and
//! modification and change times in nanoseconds. Any change to any of them (a rewrite, a
//! `touch`, a rename over it, a `chmod`) makes the entry stale, and the file is hashed again.
//! One entry per canonical path (named by the sha256 of that path), replaced whenever the
//! file is hashed again, written atomically (temp file + rename).
//!
//! A memo is a cache, never a source of truth: an unreadable or stale entry is ignored, and a
//! failure to write one is the caller's to log, not to fail on.
//!
//! The one change identity cannot see is a write in the same clock tick as the stat taken
//! after hashing (timestamps are as coarse as the kernel's clock); [`DigestMemo::record_hashed`]
//! narrows that to a write racing the hash itself by refusing to record when the file's
//! identity moved while it was read.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::reference::Digest;

/// The memo's folder below the cache root.
const DIGESTS: &str = "digests-v1";

/// The digest memo of one cache. Needs no lock: each entry is replaced atomically, and two
/// runs recording the same file write the same thing.
#[derive(Debug, Clone)]
pub struct DigestMemo {
    dir: PathBuf,
}

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity of the file at `path` now.
    pub fn of(path: &Path) -> Result<Self, StoreError> {
        let path = fs_err::canonicalize(path).map_err(|e| StoreError::io(path, e))?;
        let metadata = fs_err::metadata(&path).map_err(|e| StoreError::io(&path, e))?;
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Ok(Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.len(),
            mtime_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
            path,
        })
    }
}

/// One entry on disk.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    identity: FileIdentity,
    sha256: Digest,
}

impl DigestMemo {
    /// The memo of the cache at `cache_root` (the folder is made on the first record).
    pub fn in_cache(cache_root: &Path) -> Self {
        Self {
            dir: cache_root.join(DIGESTS),
        }
    }

    fn entry_path(&self, identity: &FileIdentity) -> PathBuf {
        let key = Digest::of(identity.path.as_os_str().as_encoded_bytes());
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The sha256 remembered for the file whose identity is `identity`, if an entry for exactly
    /// that identity exists.
    pub fn lookup(&self, identity: &FileIdentity) -> Option<Digest> {
        let bytes = fs_err::read(self.entry_path(identity)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        (entry.identity == *identity).then_some(entry.sha256)
    }

    /// Remember that the file whose identity is `identity` hashes to `sha256`.
    pub fn record(&self, identity: &FileIdentity, sha256: &Digest) -> Result<(), StoreError> {
        fs_err::create_dir_all(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        let path = self.entry_path(identity);
        let entry = Entry {
            identity: identity.clone(),
            sha256: sha256.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&entry).expect("memo entries always serialize");
        json.push(b'\n');
        crate::fs::write_atomic(&path, &json, 0o644).map_err(|e| StoreError::io(&path, e))
    }

    /// Remember `sha256` for the file at `path`, hashed while its identity was `before`, unless
    /// the file changed meanwhile (then nothing is recorded). Whether it recorded.
    pub fn record_hashed(
        &self,
        path: &Path,
        before: &FileIdentity,
        sha256: &Digest,
    ) -> Result<bool, StoreError> {
        if FileIdentity::of(path)? != *before {
            return Ok(false);
        }
        self.record(before, sha256)?;
        Ok(true)
    }
}

impl DigestMemo {
    /// Delete every entry that no longer holds (its file is gone or changed) or cannot be
    /// read, and temporary files of interrupted writes; returns how many were deleted. For
    /// `cache gc`, which holds the cache exclusively.
    pub fn prune(&self) -> Result<usize, StoreError> {
        let entries = match fs_err::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::io(&self.dir, e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&self.dir, e))?;
            let path = entry.path();
            let holds = fs_err::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).ok())
                .is_some_and(|entry| {
                    FileIdentity::of(&entry.identity.path).is_ok_and(|now| now == entry.identity)
                        && path == self.entry_path(&entry.identity)
                });
            if !holds {
                fs_err::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_holds_for_exactly_one_version_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let memo = DigestMemo::in_cache(&dir.path().join("cache"));
        let file = dir.path().join("a.iso");
        fs_err::write(&file, b"one").unwrap();
        let identity = FileIdentity::of(&file).unwrap();
        assert_eq!(memo.lookup(&identity), None);
        memo.record(&identity, &Digest::of(b"one")).unwrap();
        assert_eq!(memo.lookup(&identity), Some(Digest::of(b"one")));
        // Through another path to the same file: the same entry.
        let again = FileIdentity::of(&dir.path().join(".").join("a.iso")).unwrap();
        assert_eq!(memo.lookup(&again), Some(Digest::of(b"one")));

        // Same size, new bytes: the times moved, the entry no longer holds.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs_err::write(&file, b"two").unwrap();
        let changed = FileIdentity::of(&file).unwrap();
        assert_ne!(changed, identity);
        assert_eq!(memo.lookup(&changed), None);

        // A corrupt entry is no entry.
        fs_err::write(memo.entry_path(&changed), b"{").unwrap();
        assert_eq!(memo.lookup(&changed), None);
        assert!(
            memo.record_hashed(&file, &changed, &Digest::of(b"two"))
                .unwrap()
        );
        assert_eq!(memo.lookup(&changed), Some(Digest::of(b"two")));
        // Recorded for an identity the file no longer has: refused.
        assert!(
            !memo
                .record_hashed(&file, &identity, &Digest::of(b"one"))
                .unwrap()
        );
    }
}
