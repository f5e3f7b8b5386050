//! Filesystem helpers whose errors always name the path, and writes that are atomic: data goes
//! to a temporary file in the destination's folder and is renamed into place only when
//! complete, so a reader (or a crash) never sees half a file.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Write `bytes` to `path` atomically with `mode`, creating parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = temp_beside(path)?;
    file.write_all(bytes)
        .map_err(|e| with_path(&e, "write", file.path()))?;
    persist(file, path, mode)
}

/// Like [`write_atomic`], without flushing the data to disk first: for files that are only
/// a cache of something else (task fingerprints), where after a crash an old, empty or
/// missing file only means the work is done again. One `fdatasync` fewer per file is what a
/// build of 500 RPM tasks (500 fingerprints) spends most of its no-network time on.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = temp_beside(path)?;
    file.write_all(bytes)
        .map_err(|e| with_path(&e, "write", file.path()))?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| with_path(&e, "set the mode of", file.path()))?;
    file.persist(path)
        .map_err(|e| with_path(&e.error, "rename into place", path))?;
    Ok(())
}

/// Copy `src` to `dest` atomically with `mode`, creating parent folders.
pub fn copy_atomic(src: &Path, dest: &Path, mode: u32) -> io::Result<()> {
    let mut reader = fs_err::File::open(src)?;
    let mut file = temp_beside(dest)?;
    io::copy(&mut reader, &mut file).map_err(|e| with_path(&e, "copy into", file.path()))?;
    persist(file, dest, mode)
}

/// A temporary file in `path`'s folder (created if needed); it is deleted if dropped unpersisted.
pub fn temp_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent)?;
    tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(TEMP_SUFFIX)
        .tempfile_in(parent)
        .map_err(|e| with_path(&e, "create a temporary file in", parent))
}

/// `.<name>.`, the start of the temporary files' names for `path`; a long name is cut (at a
/// character boundary), so that with the random part and [`TEMP_SUFFIX`] it still fits in
/// the 255 bytes a file name may have.
fn temp_prefix(path: &Path) -> String {
    const KEPT: usize = 200;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut end = name.len().min(KEPT);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.", &name[..end])
}

/// The suffix of every temporary file or folder isobuild makes beside what it writes (see
/// [`temp_beside`]); a file with it is never a finished output.
pub const TEMP_SUFFIX: &str = ".isobuild-tmp";

/// Delete every temporary file or folder (named `*`[`TEMP_SUFFIX`]) under `root`: what a run
/// killed outright left behind, since a killed process deletes nothing. Only safe while no
/// other run writes under `root` (see [`lock_exclusive`]). Returns how many were deleted.
pub fn remove_temporaries(root: &Path) -> io::Result<usize> {
    if !root.is_dir() {
        return Ok(0);
    }
    let mut removed = 0;
    let mut walk = walkdir::WalkDir::new(root).min_depth(1).into_iter();
    while let Some(entry) = walk.next() {
        // A folder that cannot be read holds nothing isobuild wrote: skip it, and let the
        // step that needs it say what is wrong.
        let Ok(entry) = entry else { continue };
        if !entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
            continue;
        }
        if entry.file_type().is_dir() {
            walk.skip_current_dir();
            fs_err::remove_dir_all(entry.path())?;
        } else {
            fs_err::remove_file(entry.path())?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// Delete the temporary files [`temp_beside`] made for `path` (`.<name>.*`[`TEMP_SUFFIX`]
/// in its folder), left by a run killed while writing it. Returns how many were deleted.
pub fn remove_temporaries_beside(path: &Path) -> io::Result<usize> {
    let (Some(parent), Some(_)) = (path.parent(), path.file_name()) else {
        return Ok(0);
    };
    let prefix = temp_prefix(path);
    let entries = match fs_err::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(&prefix) && file_name.ends_with(TEMP_SUFFIX) {
            fs_err::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Take an exclusive advisory lock on `path` (created, with its folder, if missing), held as
/// long as the returned file is open; the kernel drops it when the process dies. Calls
/// `on_wait` before waiting when another process holds it.
pub fn lock_exclusive(path: &Path, on_wait: impl FnOnce()) -> io::Result<std::fs::File> {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let (file, _) = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?
        .into_parts();
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => return Ok(file),
        Err(fs4::TryLockError::WouldBlock) => on_wait(),
        Err(fs4::TryLockError::Error(e)) => return Err(with_path(&e, "lock", path)),
    }
    fs4::FileExt::lock(&file).map_err(|e| with_path(&e, "lock", path))?;
    Ok(file)
}

/// Set `mode`, flush and rename `file` to `dest`.
///
/// A `dest` that exists and is not a regular file is never replaced: renaming over
/// `/dev/null` would replace the device node, and over `/dev/stdout` (a symbolic link) the
/// link. The bytes are written into it instead (through the link, into the device), as a
/// shell's `>` would; a folder is refused.
pub fn persist(file: tempfile::NamedTempFile, dest: &Path, mode: u32) -> io::Result<()> {
    if let Ok(metadata) = std::fs::symlink_metadata(dest)
        && !metadata.file_type().is_file()
    {
        return write_in_place(&file, dest, &metadata);
    }
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| with_path(&e, "set the mode of", file.path()))?;
    file.as_file()
        .sync_data()
        .map_err(|e| with_path(&e, "flush", file.path()))?;
    file.persist(dest)
        .map_err(|e| with_path(&e.error, "rename into place", dest))?;
    Ok(())
}

/// Copy the finished temporary `file` into `dest`, which is not a regular file (a device, a
/// FIFO, a symbolic link), then delete `file`.
fn write_in_place(
    file: &tempfile::NamedTempFile,
    dest: &Path,
    metadata: &std::fs::Metadata,
) -> io::Result<()> {
    if metadata.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            format!("`{}` is a folder, not a file", dest.display()),
        ));
    }
    let mut reader = file
        .reopen()
        .map_err(|e| with_path(&e, "read", file.path()))?;
    // No `create`: a dangling link is an error rather than a file made at its target.
    let mut writer = fs_err::OpenOptions::new()
        .write(true)
        .truncate(metadata.file_type().is_symlink())
        .open(dest)?;
    io::copy(&mut reader, &mut writer).map_err(|e| with_path(&e, "write", dest))?;
    writer.flush().map_err(|e| with_path(&e, "write", dest))
}

/// Like [`persist`], but never replaces an existing `dest`: when one is there, `file` is
/// deleted instead and `false` returned. For content-addressed files, where an existing file
/// has the same bytes and others may already be hard links to it.
pub fn persist_noclobber(
    file: tempfile::NamedTempFile,
    dest: &Path,
    mode: u32,
) -> io::Result<bool> {
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| with_path(&e, "set the mode of", file.path()))?;
    file.as_file()
        .sync_data()
        .map_err(|e| with_path(&e, "flush", file.path()))?;
    match file.persist_noclobber(dest) {
        Ok(_) => Ok(true),
        // Dropping the error drops the temporary file, which deletes it.
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(with_path(&e.error, "rename into place", dest)),
    }
}

/// Create `dir` and its missing ancestors, each with mode 0755 whatever the umask (the ISO
/// tree must not depend on it).
pub fn create_dirs_0755(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut current = dir;
    while !current.exists() {
        missing.push(current.to_owned());
        match current.parent() {
            Some(up) => current = up,
            None => break,
        }
    }
    fs_err::create_dir_all(dir)?;
    for created in missing {
        set_mode(&created, 0o755)?;
    }
    Ok(())
}

/// Whether `path` is executable by its owner.
pub fn is_executable(path: &Path) -> io::Result<bool> {
    Ok(fs_err::metadata(path)?.permissions().mode() & 0o100 != 0)
}

/// Set the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The sha256 of a file's content, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    let mut file = fs_err::File::open(path)?;
    io::copy(&mut file, &mut hasher).map_err(|e| with_path(&e, "read", path))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Add "failed to VERB PATH" to an error that lacks its path.
pub fn with_path(error: &io::Error, verb: &str, path: &Path) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("failed to {verb} `{}`: {error}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.txt");
        write_atomic(&path, b"hello", 0o600).unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"hello");
        assert_eq!(
            fs_err::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs_err::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.txt")]);
    }
}
