//! The RPM world, knowing nothing about ISOs: repository metadata read as streams
//! ([`metadata`]), EVR order ([`evr`]), dependencies and rich dependencies ([`dep`]),
//! EL8 modular filtering ([`modules`]), package headers ([`header`]), the resolver ([`resolve`]) that reproduces
//! `dnf repoquery --requires --resolve --recursive --latest-limit=1`, header signature
//! checks ([`signature`]), the repodata writer ([`repodata`]) and the entries of RPMs that
//! have no repository yet ([`built`]).
//!
//! Fetching metadata and packages into the cache, and choosing what ships in the ISO, belong
//! to [`crate::plan`]; this layer works on files it is handed, and [`LocalRepo`] reads a
//! repository folder (`repodata/repomd.xml` and what it lists) from disk.

pub mod built;
pub mod dep;
pub mod evr;
mod fast_rsa;
pub mod header;
pub mod metadata;
pub mod modules;
pub mod repodata;
pub mod resolve;
pub mod signature;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

pub use metadata::{Checksum, ChecksumKind, MetadataError, Package, RepoMd};
pub use resolve::{Closure, PackageId, Pool};

/// Errors of the RPM layer.
#[derive(Debug, thiserror::Error)]
pub enum RpmError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("repository `{repo}` has no `{kind}` metadata")]
    MissingRecord { repo: String, kind: &'static str },
    #[error("`{}`: {reason}", path.display())]
    Modules { path: PathBuf, reason: String },
}

/// A repository folder on disk: `repodata/repomd.xml` and the files it lists.
pub struct LocalRepo {
    pub id: String,
    pub root: PathBuf,
    pub repomd: RepoMd,
}

impl LocalRepo {
    /// Read `root/repodata/repomd.xml`.
    pub fn open(id: &str, root: &Path) -> Result<Self, RpmError> {
        let path = root.join("repodata/repomd.xml");
        let bytes = fs_err::read(&path).map_err(|source| MetadataError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            id: id.to_owned(),
            root: root.to_owned(),
            repomd: RepoMd::parse(&bytes, &path)?,
        })
    }

    fn record_path(
        &self,
        kind: &'static str,
    ) -> Result<(PathBuf, &metadata::RepoMdRecord), RpmError> {
        let record = self
            .repomd
            .record(kind)
            .ok_or_else(|| RpmError::MissingRecord {
                repo: self.id.clone(),
                kind,
            })?;
        Ok((self.root.join(&record.location), record))
    }

    /// Every binary package of primary.xml, checked against repomd.xml's checksum first.
    pub fn packages(&self) -> Result<Vec<Package>, RpmError> {
        let (path, record) = self.record_path("primary")?;
        metadata::verify_file(&path, &record.checksum)?;
        let mut packages = Vec::new();
        metadata::parse_primary(
            metadata::open_decompressed(&path, &record.location)?,
            &path,
            |package| packages.push(package),
        )?;
        Ok(packages)
    }

    /// Who owns each of `paths`, by package checksum, from filelists.xml.
    pub fn scan_filelists(
        &self,
        paths: &HashSet<String>,
    ) -> Result<HashMap<String, Vec<String>>, RpmError> {
        let (path, record) = self.record_path("filelists")?;
        metadata::verify_file(&path, &record.checksum)?;
        Ok(metadata::scan_filelists(
            metadata::open_decompressed(&path, &record.location)?,
            &path,
            paths,
        )?)
    }

    /// The modules.yaml documents, when the repository is modular.
    pub fn modules(&self) -> Result<Option<modules::ModuleIndex>, RpmError> {
        let Some(record) = self.repomd.record("modules") else {
            return Ok(None);
        };
        let path = self.root.join(&record.location);
        metadata::verify_file(&path, &record.checksum)?;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut metadata::open_decompressed(&path, &record.location)?,
            &mut text,
        )
        .map_err(|source| MetadataError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Some(
            modules::ModuleIndex::parse(&text)
                .map_err(|reason| RpmError::Modules { path, reason })?,
        ))
    }
}
