//! Up-to-date checking: a task's [`Fingerprint`] names everything that affects its output, and
//! the [`FreshnessStore`] keeps the fingerprint of each task's last successful run.
//!
//! Comparing the two gives both the decision (run or skip) and the reason a person reads with
//! `-v` ("input scripts/bootstrap.sh.in changed"), like cargo's dirty reasons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// Fingerprints of the last successful run of each task, one small JSON file per task.
///
/// ```text
/// <dir>/<sha256 of task name>.json   {"task": NAME, "fingerprint": {...}}
/// ```
/// Files are replaced atomically, so an interrupted run leaves either the old or the new
/// fingerprint, never a torn one; a missing or unreadable file just means "run it".
#[derive(Debug, Clone)]
pub struct FreshnessStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Record {
    task: String,
    fingerprint: Fingerprint,
}

impl FreshnessStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
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
        let bytes = fs_err::read(self.file(task)).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        (record.task == task).then_some(record.fingerprint)
    }

    /// Remember `fingerprint` as `task`'s last successful run.
    pub fn save(&self, task: &str, fingerprint: &Fingerprint) -> std::io::Result<()> {
        let record = Record {
            task: task.to_owned(),
            fingerprint: fingerprint.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        // Unsynced: a fingerprint lost in a crash only makes the task run again, and its
        // output was made durable before this is written.
        crate::fs::write_atomic_unsynced(&self.file(task), &bytes, 0o644)
    }

    /// Forget `task`, so that it runs next time.
    pub fn forget(&self, task: &str) {
        let _ = fs_err::remove_file(self.file(task));
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
}
