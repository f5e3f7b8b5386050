//! Up-to-date checking: a task's [`Fingerprint`] names everything that affects its output, and
//! the [`FreshnessStore`] keeps the fingerprint of each task's last successful run.
//!
//! Comparing the two gives both the decision (run or skip) and the reason a person reads with
//! `-v` ("input scripts/bootstrap.sh.in changed"), like cargo's dirty reasons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fs_err::os::unix::fs::OpenOptionsExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Named inputs of a task and a value (usually a content hash) for each.
///
/// Keys are human-readable (`input scripts/bootstrap.sh.in`, `dest`, `env FOO`), because they
/// are what `-v` prints when they change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    entries: BTreeMap<String, String>,
}

impl Fingerprint {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record one input. Later values for the same key replace earlier ones.
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.entries.insert(key.into(), value.into());
        self
    }

    /// One hash of every entry: equal keys mean equal inputs.
    pub fn key(&self) -> String {
        let mut hasher = Sha256::new();
        for (key, value) in &self.entries {
            hasher.update((key.len() as u64).to_le_bytes());
            hasher.update(key.as_bytes());
            hasher.update((value.len() as u64).to_le_bytes());
            hasher.update(value.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// Why `self` differs from the fingerprint of the last successful run.
    pub fn why_changed(&self, previous: &Fingerprint) -> Option<String> {
        // Enough to say why without flooding `-v` when a whole tree changed.
        const SHOWN: usize = 3;
        let mut reasons = Vec::new();
        for (key, value) in &self.entries {
            match previous.entries.get(key) {
                None => reasons.push(format!("{key} added")),
                Some(old) if old != value => reasons.push(format!("{key} changed")),
                Some(_) => {}
            }
        }
        for key in previous.entries.keys() {
            if !self.entries.contains_key(key) {
                reasons.push(format!("{key} removed"));
            }
        }
        if reasons.is_empty() {
            return None;
        }
        let more = reasons.len().saturating_sub(SHOWN);
        reasons.truncate(SHOWN);
        let mut text = reasons.join(", ");
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        Some(text)
    }
}

/// Fingerprints of the last successful run of each task.
///
/// ```text
/// <dir>/<sha256 of task name>.json   {"task": NAME, "fingerprint": {...}}
/// <dir>/pack.json                    {NAME: {...}, ...}   (tasks without a file of their own)
/// ```
/// A task's own file wins over the pack; an empty or unreadable one (a *tombstone*) means
/// "run it". A task with no file of its own is saved into the pack, written once when the
/// run ends ([`FreshnessStore::flush`]) instead of one new file per task: creating hundreds
/// of small files (one per RPM) was most of a cold download's system time. A pack lost in a
/// crash only makes its tasks run again, as a lost file would. Forgetting a task the pack
/// knows writes its tombstone, so a run that dies half-way never leaves the pack's old
/// fingerprint in charge of half-made outputs. The pack is merged with what is on disk
/// under a lock, so concurrent runs keep each other's records.
/// Files are replaced atomically, so an interrupted run leaves either the old or the new
/// fingerprint, never a torn one; a missing or unreadable file just means "run it".
#[derive(Debug, Clone)]
pub struct FreshnessStore {
    dir: PathBuf,
    inner: std::sync::Arc<Pack>,
}

/// The pack as this run read it, and what this run adds to it.
#[derive(Debug, Default)]
struct Pack {
    read: std::sync::OnceLock<BTreeMap<String, Fingerprint>>,
    pending: std::sync::Mutex<BTreeMap<String, Fingerprint>>,
}

const PACK: &str = "pack.json";

#[derive(Serialize, Deserialize)]
struct Record {
    task: String,
    fingerprint: Fingerprint,
}

impl FreshnessStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            inner: std::sync::Arc::default(),
        }
    }

    /// The pack on disk; empty when missing or unreadable.
    fn read_pack(&self) -> BTreeMap<String, Fingerprint> {
        fs_err::read(self.dir.join(PACK))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// What this run saved for `task`, else what the pack had when first read.
    fn packed(&self, task: &str) -> Option<Fingerprint> {
        if let Some(saved) = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(task)
        {
            return Some(saved.clone());
        }
        self.inner
            .read
            .get_or_init(|| self.read_pack())
            .get(task)
            .cloned()
    }

    /// Write the fingerprints saved into the pack during this run (merged with the pack on
    /// disk, under `pack.lock`). Unsynced, like the task files: lost, they only rerun tasks.
    pub fn flush(&self) -> std::io::Result<()> {
        let pending = std::mem::take(
            &mut *self
                .inner
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if pending.is_empty() {
            return Ok(());
        }
        fs_err::create_dir_all(&self.dir)?;
        // Never through a symbolic link (one planted in a shared cache), like the store's locks.
        let no_follow = i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or_default();
        let lock = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(no_follow)
            .open(self.dir.join("pack.lock"))?;
        let (lock, _) = lock.into_parts();
        fs4::FileExt::lock(&lock)?;
        let mut pack = self.read_pack();
        pack.extend(pending);
        let bytes = serde_json::to_vec(&pack).map_err(std::io::Error::other)?;
        crate::fs::write_atomic_unsynced(&self.dir.join(PACK), &bytes, 0o644)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, task: &str) -> PathBuf {
        self.dir.join(format!(
            "{}.json",
            hex::encode(Sha256::digest(task.as_bytes()))
        ))
    }

    /// The fingerprint of `task`'s last successful run, if any.
    pub fn load(&self, task: &str) -> Option<Fingerprint> {
        let bytes = match fs_err::read(self.file(task)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.packed(task),
            Err(_) => return None,
        };
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        (record.task == task).then_some(record.fingerprint)
    }

    /// Remember `fingerprint` as `task`'s last successful run.
    pub fn save(&self, task: &str, fingerprint: &Fingerprint) -> std::io::Result<()> {
        let file = self.file(task);
        // No file of its own (and so no tombstone): into the pack, written at the end.
        if fs_err::symlink_metadata(&file).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            self.inner
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(task.to_owned(), fingerprint.clone());
            return Ok(());
        }
        let record = Record {
            task: task.to_owned(),
            fingerprint: fingerprint.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        // Unsynced: a fingerprint lost in a crash only makes the task run again, and its
        // output was made durable before this is written.
        crate::fs::write_atomic_unsynced(&file, &bytes, 0o644)
    }

    /// Forget `task`, so that it runs next time.
    pub fn forget(&self, task: &str) {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(task);
        if self.packed(task).is_some() {
            // The pack on disk still has it: an empty file of its own overrides it.
            let _ = crate::fs::write_atomic_unsynced(&self.file(task), b"", 0o644);
        } else {
            let _ = fs_err::remove_file(self.file(task));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_changed_input() {
        let mut old = Fingerprint::new();
        old.add("input a.txt", "1").add("dest", "x");
        let mut new = old.clone();
        new.add("input a.txt", "2");
        assert_eq!(
            new.why_changed(&old).as_deref(),
            Some("input a.txt changed")
        );
        assert_eq!(old.why_changed(&old), None);
        assert_ne!(old.key(), new.key());
    }

    #[test]
    fn store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = FreshnessStore::new(dir.path());
        let mut fingerprint = Fingerprint::new();
        fingerprint.add("k", "v");
        assert!(store.load("task").is_none());
        store.save("task", &fingerprint).unwrap();
        assert_eq!(store.load("task"), Some(fingerprint));
        store.forget("task");
        assert!(store.load("task").is_none());
    }

    #[test]
    fn new_tasks_go_into_the_pack_and_forgetting_one_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut fingerprint = Fingerprint::new();
        fingerprint.add("k", "v");
        let first = FreshnessStore::new(dir.path());
        first.save("a", &fingerprint).unwrap();
        first.save("b", &fingerprint).unwrap();
        // Not on disk until the run ends: a crash before that only reruns them.
        assert!(FreshnessStore::new(dir.path()).load("a").is_none());
        first.flush().unwrap();
        // One file for both, not one each (and the pack's lock).
        assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 2);
        assert!(dir.path().join(PACK).is_file());
        let second = FreshnessStore::new(dir.path());
        assert_eq!(second.load("a"), Some(fingerprint.clone()));
        // A run that forgets `a` and dies half-way must not leave the pack in charge of it.
        second.forget("a");
        assert!(FreshnessStore::new(dir.path()).load("a").is_none());
        assert_eq!(second.load("b"), Some(fingerprint.clone()));
        // Saved again, it has a file of its own, which wins over the pack.
        let mut changed = Fingerprint::new();
        changed.add("k", "w");
        second.save("a", &changed).unwrap();
        assert_eq!(FreshnessStore::new(dir.path()).load("a"), Some(changed));
        // Another run's pack merges with this one's instead of replacing it.
        let third = FreshnessStore::new(dir.path());
        third.save("c", &fingerprint).unwrap();
        second.save("d", &fingerprint).unwrap();
        third.flush().unwrap();
        second.flush().unwrap();
        let last = FreshnessStore::new(dir.path());
        for task in ["b", "c", "d"] {
            assert_eq!(last.load(task), Some(fingerprint.clone()), "{task}");
        }
    }
}
