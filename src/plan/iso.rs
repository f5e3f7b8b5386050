//! The ISO task: runs [`crate::iso::make_iso`] once everything in the tree is written.
//!
//! Its key is the ISO settings and xorriso's version; the engine adds the keys of every task
//! it depends on (all the tree's writers), so the ISO is remade exactly when something in the
//! tree changed, without hashing the tree again.

use std::path::Path;
use std::sync::Arc;

use tokio::process::Command;

use crate::engine::{Fingerprint, JobOutput};
use crate::iso::{IsoRequest, make_iso};
use crate::reference::Digest;
use crate::report::Reporter;
use crate::store::Store;

use super::{TaskError, TreeClaim};

/// Make the ISO from the finished tree.
pub struct IsoJob {
    request: IsoRequest,
    claim: TreeClaim,
    /// The cache the image folders were placed from, when the recipe has images: what this
    /// run verified need not be hashed again before the ISO.
    store: Option<Store>,
    /// Told how many stale files were pruned from the tree.
    reporter: Arc<dyn Reporter>,
}

impl IsoJob {
    pub(super) fn new(
        request: IsoRequest,
        claim: TreeClaim,
        store: Option<Store>,
        reporter: Arc<dyn Reporter>,
    ) -> Self {
        Self {
            request,
            claim,
            store,
            reporter,
        }
    }

    pub(super) fn name(&self) -> String {
        let file = self
            .request
            .output
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
        format!("iso {file}")
    }

    pub(super) async fn fingerprint(&self) -> Result<Fingerprint, TaskError> {
        let mut fingerprint = Fingerprint::new();
        fingerprint
            .add("output", self.request.output.display().to_string())
            .add("volume id", self.request.volume_id.clone())
            .add("epoch", self.request.epoch.to_string())
            .add("implant md5", self.request.implant_md5.to_string())
            .add(
                "sha256sum",
                self.request
                    .sha256sum
                    .as_ref()
                    .map_or_else(String::new, |path| path.display().to_string()),
            )
            .add("xorriso version", xorriso_version().await);
        Ok(fingerprint)
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        std::iter::once(&self.request.output)
            .chain(self.request.sha256sum.as_ref())
            .find(|path| !path.exists())
            .map(|path| path.display().to_string())
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let root = self.request.root.clone();
        let claim = self.claim.clone();
        let store = self.store.clone();
        let shown = root.clone();
        let pruned = tokio::task::spawn_blocking(move || prune_tree(&root, &claim, store.as_ref()))
            .await
            .map_err(|join| TaskError::Io(std::io::Error::other(join.to_string())))??;
        if pruned > 0 {
            // Files someone put in the tree, or an earlier recipe wrote: gone, and said so.
            let files = if pruned == 1 { "file" } else { "files" };
            self.reporter.on_message(&format!(
                "note: removed {pruned} {files} the recipe does not write from `{}`",
                shown.display()
            ));
        }
        // Not in a blocking task: an interrupted run drops this future, which kills xorriso
        // and deletes its temporary file before anything is renamed to the output.
        let result = make_iso(&self.request).await?;
        Ok(JobOutput { bytes: result.size })
    }
}

/// The first line of `xorriso -version`, or `unknown` (then [`make_iso`] explains).
async fn xorriso_version() -> String {
    Command::new("xorriso")
        .arg("-version")
        .output()
        .await
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Delete what no task of this plan wrote (left by an earlier version of the recipe, or put
/// there by hand), then the folders that became empty, so the ISO holds exactly what the
/// recipe says. Returns how many files it deleted.
///
/// Also the last check of the tree before it becomes an ISO: it holds only regular files
/// and folders (a link in it would be followed by nginx on the node), and files of image
/// folders have mode 0644 again: they are hard links to the cache, and a `chmod` in any tree
/// (or of the cache) would otherwise change this ISO and lock nginx workers out.
///
/// And a blob of an image folder that this run did not verify (its task was up to date, so
/// the file is whatever the tree, or the cache it shares inodes with, holds now) is hashed
/// again: an ISO never ships a byte that was not checked in the run that made it.
fn prune_tree(root: &Path, claim: &TreeClaim, store: Option<&Store>) -> std::io::Result<usize> {
    if !root.exists() {
        return Ok(0);
    }
    let mut dirs = Vec::new();
    let mut pruned = 0;
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.map_err(std::io::Error::from)?;
        let relative = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .into_owned();
        if entry.file_type().is_dir() {
            dirs.push(entry.path().to_owned());
        } else if !claim.owns(&relative) {
            tracing::debug!("removing stale `{relative}` from the ISO tree");
            fs_err::remove_file(entry.path())?;
            pruned += 1;
        } else if !entry.file_type().is_file() {
            return Err(std::io::Error::other(format!(
                "`{relative}` in the ISO tree is not a regular file (a symbolic link or a device); isobuild writes only files and folders there"
            )));
        } else if in_image_folder(entry.path()) {
            use std::os::unix::fs::PermissionsExt as _;
            if let Some(store) = store
                && let Some(digest) = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| Digest::from_hex(name).ok())
                && !store.is_verified(&digest)
            {
                if Digest::of_file(entry.path())? != digest {
                    return Err(std::io::Error::other(format!(
                        "`{relative}` in the ISO tree does not match its digest: the tree (or the cache, which shares its files) was changed after it was written; delete `{}` and build again",
                        root.display()
                    )));
                }
                store.mark_verified(&digest);
            }
            let mode = entry
                .metadata()
                .map_err(std::io::Error::from)?
                .permissions()
                .mode();
            if mode & 0o7777 != 0o644 {
                tracing::warn!(
                    "`{relative}` had mode {:04o}; set back to 0644",
                    mode & 0o7777
                );
                crate::fs::set_mode(entry.path(), 0o644)?;
            }
        }
    }
    // Deepest first, so a folder is looked at after its children.
    for dir in dirs.iter().rev() {
        if fs_err::read_dir(dir)?.next().is_none() {
            fs_err::remove_dir(dir)?;
        }
    }
    Ok(pruned)
}

/// Whether `file` is in an image folder (one holding `version` and `manifest.json`).
fn in_image_folder(file: &Path) -> bool {
    file.parent()
        .is_some_and(|dir| dir.join("version").is_file() && dir.join("manifest.json").is_file())
}
