//! Reading an ISO in-process, without mounting or extracting it: the primary ISO 9660 tree
//! through `hadris-iso`, with the Rock Ridge names and modes xorriso writes (`-rock`), and
//! every file as the extents its bytes occupy, so [`super::tree::Tree`] reads only what is
//! asked for (a manifest, `product.txt`) straight from the ISO file.
//!
//! The Joliet tree is ignored: it repeats the primary tree with shorter names and no modes.
//! Hard-linked files of the tree that xorriso stored once share their extents here.

use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use hadris_iso::read::IsoImage;

use super::tree::{Data, Entry, Tree};
use super::{DigestOrigin, InspectError, IsoSummary};
use crate::reference::Digest;
use crate::store::{DigestMemo, FileIdentity};

/// Bytes per ISO 9660 logical sector.
const SECTOR: u64 = 2048;
/// The primary volume descriptor's sector, and where in it the volume id is.
const PVD_SECTOR: u64 = 16;
const VOLUME_ID: std::ops::Range<usize> = 40..72;
/// Guards against a directory loop in a crafted image.
const MAX_DEPTH: usize = 64;

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> InspectError + '_ {
    move |source| InspectError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether `path` is a file holding an ISO 9660 volume (`CD001` in its first descriptor).
pub fn is_iso(path: &Path) -> Result<bool, InspectError> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(false);
    };
    let mut magic = [0; 6];
    match file.read_exact_at(&mut magic, PVD_SECTOR * SECTOR) {
        Ok(()) => Ok(&magic[1..6] == b"CD001"),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(io_error(path)(error)),
    }
}

/// The ISO's volume id, size and sha256, and where the sha256 came from: `memo`'s entry for
/// this very file when it has one, else a read of all of it (then remembered in `memo`).
pub fn summary(
    path: &Path,
    memo: Option<&DigestMemo>,
) -> Result<(IsoSummary, DigestOrigin), InspectError> {
    // Identity first: a file replaced after this is hashed again next time, never mistaken.
    // A file whose identity cannot be read is simply hashed.
    let identity = memo.and_then(|_| FileIdentity::of(path).ok());
    let mut file = fs_err::File::open(path).map_err(io_error(path))?;
    let mut pvd = vec![0; 2048];
    file.file()
        .read_exact_at(&mut pvd, PVD_SECTOR * SECTOR)
        .map_err(io_error(path))?;
    let volume_id = String::from_utf8_lossy(&pvd[VOLUME_ID])
        .trim_end()
        .to_owned();
    if let (Some(memo), Some(identity)) = (memo, &identity)
        && let Some(sha256) = memo.lookup(identity)
    {
        let summary = IsoSummary {
            volume_id,
            size: identity.size,
            sha256,
        };
        return Ok((summary, DigestOrigin::Memo));
    }
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        let read = file.read(&mut buffer).map_err(io_error(path))?;
        if read == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buffer[..read]);
        size += read as u64;
    }
    let sha256 = Digest::from_hasher(hasher);
    let remembered = match (memo, &identity) {
        (Some(memo), Some(identity)) if identity.size == size => memo
            .record_hashed(path, identity, &sha256)
            .unwrap_or_else(|error| {
                tracing::warn!(
                    "cannot remember the sha256 of `{}`: {error}",
                    path.display()
                );
                false
            }),
        _ => false,
    };
    let summary = IsoSummary {
        volume_id,
        size,
        sha256,
    };
    Ok((summary, DigestOrigin::Hashed { remembered }))
}

/// The regular files of the ISO at `path`.
pub fn read(path: &Path) -> Result<Tree, InspectError> {
    let bad = |message: String| InspectError::Iso {
        path: path.to_owned(),
        message,
    };
    // hadris-iso reports a short read as std's words; say what it means here.
    let unreadable = |error: hadris_iso::Error| {
        if error.kind() == hadris_iso::ErrorKind::UnexpectedEof {
            "it ends before its directories do: is it cut short?".to_owned()
        } else {
            error.to_string()
        }
    };
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let data = file.try_clone().map_err(io_error(path))?;
    let image = IsoImage::open(file).map_err(|error| bad(unreadable(error)))?;
    let rock_ridge = image.supports_rrip();
    // The primary tree's root, from the primary volume descriptor's root directory record
    // (ECMA-119 8.4.18: extent at bytes 2..6, length at 10..14, little-endian halves), not
    // `best_choice`, which may pick the Joliet tree.
    let mut pvd = [0; 2048];
    data.read_exact_at(&mut pvd, PVD_SECTOR * SECTOR)
        .map_err(io_error(path))?;
    let le = |range: std::ops::Range<usize>| {
        u32::from_le_bytes(pvd[range].try_into().expect("4 bytes")) as usize
    };
    let root = hadris_iso::directory::DirectoryRef {
        extent: hadris_iso::io::LogicalSector(le(158..162)),
        size: le(166..170),
    };
    let mut entries = Vec::new();
    let mut pending = vec![(String::new(), root, 0)];
    while let Some((prefix, dir, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            return Err(bad(format!(
                "folders nest deeper than {MAX_DEPTH} at `{prefix}`"
            )));
        }
        for entry in image.open_dir(dir).entries() {
            let entry =
                entry.map_err(|error| bad(format!("in `/{prefix}`: {}", unreadable(error))))?;
            if entry.is_special() {
                continue;
            }
            let name = if rock_ridge {
                entry.display_name().into_owned()
            } else {
                plain_name(&entry.display_name())
            };
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                return Err(bad(format!("a file in `/{prefix}` has the name `{name}`")));
            }
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let rrip = entry.rrip.as_ref();
            if entry.is_directory() {
                let dir = entry
                    .as_dir_ref(&image)
                    .map_err(|error| bad(format!("folder `/{path}`: {error}")))?;
                pending.push((path, dir, depth + 1));
                continue;
            }
            if rrip.is_some_and(|rrip| rrip.symlink_target.is_some()) {
                continue;
            }
            let mode = rrip
                .and_then(|rrip| rrip.posix_attributes.as_ref())
                .map_or(0o100_444, |px| px.file_mode.read());
            // Only regular files; devices, fifos and sockets are not content.
            if mode & 0o170_000 != 0o100_000 {
                continue;
            }
            let skip = u64::from(entry.extended_attr_len().unwrap_or(0)) * SECTOR;
            let extents: Vec<(u64, u64)> = entry
                .extents()
                .map(|extent| {
                    (
                        extent.sector.0 as u64 * SECTOR + skip,
                        u64::from(extent.length),
                    )
                })
                .collect();
            entries.push(Entry {
                path,
                size: entry.total_size(),
                mode,
                data: Data::Extents(extents),
            });
        }
    }
    Ok(Tree::new(entries, Some((path.to_owned(), data))))
}

/// An ISO 9660 name without Rock Ridge (`PRODUCT.TXT;1`) as a path component (`PRODUCT.TXT`).
fn plain_name(name: &str) -> String {
    let name = name.split_once(';').map_or(name, |(name, _)| name);
    name.strip_suffix('.').unwrap_or(name).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_lose_their_version() {
        assert_eq!(plain_name("PRODUCT.TXT;1"), "PRODUCT.TXT");
        assert_eq!(plain_name("README.;1"), "README");
        assert_eq!(plain_name("DIR"), "DIR");
    }
}
