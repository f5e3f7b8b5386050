//! A tree's regular files, wherever their bytes are: a folder on the host, or the extents of
//! an ISO file. [`super::of_tree`] reads both the same way.

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::InspectError;
use crate::reference::Digest;

/// The regular files of a tree, sorted by path.
#[derive(Debug)]
pub struct Tree {
    pub entries: Vec<Entry>,
    /// The ISO the extents point into, for a tree read from an ISO.
    iso: Option<(PathBuf, std::fs::File)>,
}

/// One regular file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the tree's root, `/`-separated, no leading `/`.
    pub path: String,
    pub size: u64,
    /// `st_mode`'s permission bits (and file type bits, which callers mask off).
    pub mode: u32,
    pub data: Data,
}

/// Where a file's bytes are.
#[derive(Debug, Clone)]
pub enum Data {
    Host(PathBuf),
    /// `(byte offset, length)` ranges of the ISO file, in order.
    Extents(Vec<(u64, u64)>),
}

impl Tree {
    /// The regular files under `root` (symbolic links are not followed and not listed).
    pub fn from_dir(root: &Path) -> Result<Self, InspectError> {
        use std::os::unix::fs::PermissionsExt as _;
        let mut entries = Vec::new();
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry.map_err(|error| InspectError::Io {
                path: error.path().unwrap_or(root).to_owned(),
                source: error.into(),
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let metadata = entry.metadata().map_err(|error| InspectError::Io {
                path: entry.path().to_owned(),
                source: error.into(),
            })?;
            let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
            entries.push(Entry {
                path: relative.to_string_lossy().into_owned(),
                size: metadata.len(),
                mode: metadata.permissions().mode(),
                data: Data::Host(entry.path().to_owned()),
            });
        }
        Ok(Self::new(entries, None))
    }

    /// A tree of `entries` whose extents point into `iso`.
    pub(super) fn new(mut entries: Vec<Entry>, iso: Option<(PathBuf, std::fs::File)>) -> Self {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Self { entries, iso }
    }

    /// The entry at `path`.
    pub fn find(&self, path: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|entry| entry.path.as_str().cmp(path))
            .ok()
            .map(|index| &self.entries[index])
    }

    /// The whole content of `entry` (for small files: manifests, configs, product.txt).
    pub fn read(&self, entry: &Entry) -> Result<Vec<u8>, InspectError> {
        let mut bytes = Vec::new();
        self.each_chunk(entry, |chunk| bytes.extend_from_slice(chunk))?;
        Ok(bytes)
    }

    /// The sha256 of `entry`'s content, streamed.
    pub fn sha256(&self, entry: &Entry) -> Result<Digest, InspectError> {
        let mut hasher = sha2::Sha256::new();
        self.each_chunk(entry, |chunk| hasher.update(chunk))?;
        Ok(Digest::from_hasher(hasher))
    }

    /// A reader of `entry`'s content from its start, for a caller that stops early (an RPM's
    /// header, not its payload).
    pub fn reader(&self, entry: &Entry) -> Result<Box<dyn std::io::Read + '_>, InspectError> {
        match &entry.data {
            Data::Host(path) => {
                let file = fs_err::File::open(path).map_err(|source| InspectError::Io {
                    path: path.clone(),
                    source,
                })?;
                Ok(Box::new(file))
            }
            Data::Extents(extents) => {
                let Some((_, file)) = &self.iso else {
                    unreachable!("extents only come with the ISO they point into")
                };
                Ok(Box::new(ExtentReader {
                    file,
                    extents: extents.clone(),
                    next: 0,
                    done: 0,
                }))
            }
        }
    }

    fn each_chunk(&self, entry: &Entry, mut sink: impl FnMut(&[u8])) -> Result<(), InspectError> {
        const CHUNK: usize = 1 << 20;
        // Most files are small: a 1 MiB buffer zeroed for each of thousands of them would be
        // most of the work.
        let capacity = usize::try_from(entry.size).map_or(CHUNK, |size| size.clamp(1, CHUNK));
        match &entry.data {
            Data::Host(path) => {
                let io_error = |source| InspectError::Io {
                    path: path.clone(),
                    source,
                };
                let mut file = fs_err::File::open(path).map_err(io_error)?;
                let mut buffer = vec![0; capacity];
                loop {
                    let read = std::io::Read::read(&mut file, &mut buffer).map_err(io_error)?;
                    if read == 0 {
                        return Ok(());
                    }
                    sink(&buffer[..read]);
                }
            }
            Data::Extents(extents) => {
                let Some((path, file)) = &self.iso else {
                    unreachable!("extents only come with the ISO they point into")
                };
                let io_error = |source: std::io::Error| {
                    if source.kind() == std::io::ErrorKind::UnexpectedEof {
                        InspectError::Iso {
                            path: path.clone(),
                            message: format!(
                                "`/{}` lies past its end: is the ISO cut short?",
                                entry.path
                            ),
                        }
                    } else {
                        InspectError::Io {
                            path: path.clone(),
                            source,
                        }
                    }
                };
                let mut buffer = vec![0; capacity];
                for &(offset, length) in extents {
                    let mut done = 0;
                    while done < length {
                        let want = usize::try_from((length - done).min(capacity as u64))
                            .unwrap_or(capacity);
                        file.read_exact_at(&mut buffer[..want], offset + done)
                            .map_err(io_error)?;
                        sink(&buffer[..want]);
                        done += want as u64;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Reads a file's extents of the ISO one after the other.
struct ExtentReader<'a> {
    file: &'a std::fs::File,
    extents: Vec<(u64, u64)>,
    /// The extent being read, and how much of it is read.
    next: usize,
    done: u64,
}

impl std::io::Read for ExtentReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while let Some(&(offset, length)) = self.extents.get(self.next) {
            if self.done == length {
                self.next += 1;
                self.done = 0;
                continue;
            }
            let want = usize::try_from(length - self.done)
                .map_or(buffer.len(), |left| left.min(buffer.len()));
            let read = self.file.read_at(&mut buffer[..want], offset + self.done)?;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.done += read as u64;
            return Ok(read);
        }
        Ok(0)
    }
}
