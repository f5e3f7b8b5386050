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
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".isobuild-tmp")
        .tempfile_in(parent)
        .map_err(|e| with_path(&e, "create a temporary file in", parent))
}

/// Set `mode`, flush and rename `file` to `dest`.
pub fn persist(file: tempfile::NamedTempFile, dest: &Path, mode: u32) -> io::Result<()> {
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

/// Like [`persist`], but an existing `dest` is kept (and `file` dropped): for
/// content-addressed files, where an existing file already has the same bytes and may be
/// hard-linked elsewhere, so replacing it would split one inode into two.
pub fn persist_noclobber(file: tempfile::NamedTempFile, dest: &Path, mode: u32) -> io::Result<()> {
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| with_path(&e, "set the mode of", file.path()))?;
    file.as_file()
        .sync_data()
        .map_err(|e| with_path(&e, "flush", file.path()))?;
    match file.persist_noclobber(dest) {
        Ok(_) => Ok(()),
        Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(with_path(&error.error, "move into place", dest)),
    }
}

/// Move `from` to `to` unless `to` exists (then `from` is removed): the path version of
/// [`persist_noclobber`].
pub fn rename_noclobber(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(with_path(&error, "move into place", to)),
    }
    fs_err::remove_file(from)
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
