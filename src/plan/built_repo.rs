//! A built repository (`packages.repos[].from`): RPMs that recipe tasks wrote (MetalK8s'
//! scality packages) turned into a repository folder of the ISO tree, as `createrepo` does
//! for doit: each RPM checked against the digests of its own header, copied to
//! `<dest>/<arch>/<file name>`, and `repodata/` written by the same writer as a downloaded
//! repository's, from entries read out of the headers ([`crate::rpm::built`]).
//!
//! Nothing signs these RPMs (MetalK8s does not), so there is no key to check them with: the
//! header digests are what says a file is a whole, unaltered package.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::{Fingerprint, JobOutput};
use crate::recipe::{IsoPath, PackageRepo};
use crate::rpm::built::BuiltError;

use super::TaskError;

/// What can go wrong making a built repository.
#[derive(Debug, thiserror::Error)]
pub enum BuiltRepoError {
    #[error("repository `{repo}`: {source}")]
    Rpm {
        repo: String,
        #[source]
        source: BuiltError,
    },
    #[error(
        "repository `{repo}`: `from` pattern `{pattern}` matches no RPM (did its task write it?)"
    )]
    NoRpms { repo: String, pattern: String },
    #[error(
        "repository `{repo}`: package `{name}` is listed in `builds`, and no RPM of `from` is it"
    )]
    Missing { repo: String, name: String },
    #[error("repository `{repo}`: `{first}` and `{second}` both go to `{location}`")]
    Clash {
        repo: String,
        location: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// Write one built repository's folder.
pub struct BuiltRepoJob {
    spec: PackageRepo,
    folder: IsoPath,
    dest: PathBuf,
    base_dir: PathBuf,
    epoch: i64,
}

impl BuiltRepoJob {
    pub(super) fn new(
        spec: PackageRepo,
        tree_root: &Path,
        base_dir: PathBuf,
        epoch: i64,
    ) -> Option<Self> {
        let folder = spec.dest.clone()?;
        Some(Self {
            dest: folder.under(tree_root),
            folder,
            spec,
            base_dir,
            epoch,
        })
    }

    pub(super) fn name(&self) -> String {
        format!("rpm repository {} (built)", self.spec.id)
    }

    pub(super) fn claim(&self, claim: &mut super::TreeClaim) {
        claim.dirs.insert(self.folder.to_string());
    }

    /// The patterns' folders before their first wildcard: a task writing there makes RPMs
    /// this repository takes.
    pub(super) fn reads(&self) -> Vec<PathBuf> {
        self.spec
            .from
            .iter()
            .map(|pattern| crate::recipe::glob_literal_prefix(pattern))
            .collect()
    }

    fn rpms(&self) -> Result<Vec<PathBuf>, TaskError> {
        let mut files = Vec::new();
        for pattern in &self.spec.from {
            match super::command::expand_inputs(std::slice::from_ref(pattern), &self.base_dir) {
                Ok(found) => files.extend(found),
                Err(TaskError::NoInputs { .. }) => {
                    return Err(BuiltRepoError::NoRpms {
                        repo: self.spec.id.clone(),
                        pattern: shown(pattern, &self.base_dir),
                    }
                    .into());
                }
                Err(other) => return Err(other),
            }
        }
        files.sort();
        files.dedup();
        Ok(files)
    }

    pub(super) async fn fingerprint(&self) -> Result<Fingerprint, TaskError> {
        let files = self.rpms()?;
        let base_dir = self.base_dir.clone();
        let mut fingerprint = super::blocking(move || {
            let mut fingerprint = Fingerprint::new();
            for file in files {
                let shown = file.strip_prefix(&base_dir).unwrap_or(&file);
                fingerprint.add(
                    format!("rpm {}", shown.display()),
                    crate::fs::sha256_file(&file)?,
                );
            }
            Ok(fingerprint)
        })
        .await?;
        fingerprint
            .add("builds", self.spec.builds.join(","))
            .add("epoch", self.epoch.to_string())
            .add("folder", self.dest.display().to_string());
        Ok(fingerprint)
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        let repomd = self.dest.join("repodata/repomd.xml");
        (!repomd.is_file()).then(|| repomd.display().to_string())
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let files = self.rpms()?;
        let (repo, builds) = (self.spec.id.clone(), self.spec.builds.clone());
        let (dest, epoch) = (self.dest.clone(), self.epoch);
        super::blocking(move || write_built(&repo, &builds, &files, &dest, epoch)).await
    }
}

fn shown(pattern: &str, base_dir: &Path) -> String {
    Path::new(pattern)
        .strip_prefix(base_dir)
        .map_or_else(|_| pattern.to_owned(), |p| p.display().to_string())
}

fn write_built(
    repo: &str,
    builds: &[String],
    files: &[PathBuf],
    dest: &Path,
    epoch: i64,
) -> Result<JobOutput, TaskError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| {
            TaskError::Io(std::io::Error::new(
                source.kind(),
                format!("`{}`: {source}", path.display()),
            ))
        }
    };
    // location → (source file, its bytes, entry); sorted by location, as the writer wants.
    let mut entries: BTreeMap<String, (PathBuf, Vec<u8>, crate::rpm::built::BuiltEntry)> =
        BTreeMap::new();
    let mut bytes = 0;
    for file in files {
        let content = fs_err::read(file)?;
        let file_name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let entry =
            crate::rpm::built::entries(&content, file, |arch| format!("{arch}/{file_name}"), epoch)
                .map_err(|source| BuiltRepoError::Rpm {
                    repo: repo.to_owned(),
                    source,
                })?;
        if let Some((first, _, _)) = entries.get(&entry.location) {
            return Err(BuiltRepoError::Clash {
                repo: repo.to_owned(),
                location: entry.location.clone(),
                first: first.clone(),
                second: file.clone(),
            }
            .into());
        }
        bytes += content.len() as u64;
        entries.insert(entry.location.clone(), (file.clone(), content, entry));
    }
    for name in builds {
        if !entries.values().any(|(_, _, entry)| &entry.name == name) {
            return Err(BuiltRepoError::Missing {
                repo: repo.to_owned(),
                name: name.clone(),
            }
            .into());
        }
    }
    if dest.exists() {
        fs_err::remove_dir_all(dest)?;
    }
    let mut primary = Vec::new();
    let mut filelists = Vec::new();
    for (location, (_, content, entry)) in &entries {
        let target = dest.join(location);
        if let Some(parent) = target.parent() {
            crate::fs::create_dirs_0755(parent).map_err(io(parent))?;
        }
        crate::fs::write_atomic(&target, content, 0o644).map_err(io(&target))?;
        primary.push(entry.primary.clone());
        filelists.push(entry.filelists.clone());
    }
    crate::rpm::repodata::write_repodata(dest, &primary, &filelists, epoch).map_err(io(dest))?;
    Ok(JobOutput { bytes })
}
