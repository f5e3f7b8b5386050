//! The inter-process lock on `<cache>/lock`: every run holds it shared, `cache gc` holds it
//! exclusive. It is an advisory `flock`, so the kernel drops it when a process dies and a
//! crashed run never leaves the cache locked.

use std::path::Path;

use super::StoreError;

/// An open lock file; the lock lasts as long as this value.
#[derive(Debug)]
pub(super) struct LockFile {
    // Never read: the open descriptor is what holds the lock.
    _file: std::fs::File,
}

impl LockFile {
    /// Take the lock shared, waiting while an exclusive holder (a `cache gc`) runs; but when
    /// no other process holds it at all, run `alone` first, under the exclusive lock: no other run is using the cache
    /// then, so what is in it unfinished was left by a dead one. The lock is then turned
    /// into a shared one (`flock` converts it in place).
    pub(super) fn shared(
        path: &Path,
        alone: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<Self, StoreError> {
        let file = open(path)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {
                let result = alone();
                fs4::FileExt::lock_shared(&file).map_err(|e| StoreError::io(path, e))?;
                result?;
            }
            Err(fs4::TryLockError::WouldBlock) => {
                fs4::FileExt::lock_shared(&file).map_err(|e| StoreError::io(path, e))?;
            }
            Err(fs4::TryLockError::Error(e)) => return Err(StoreError::io(path, e)),
        }
        Ok(Self { _file: file })
    }

    /// Take the lock exclusive, or `None` if anyone holds it.
    pub(super) fn try_exclusive(path: &Path) -> Result<Option<Self>, StoreError> {
        let file = open(path)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(fs4::TryLockError::WouldBlock) => Ok(None),
            Err(fs4::TryLockError::Error(e)) => Err(StoreError::io(path, e)),
        }
    }
}

/// Open (creating) a file to lock, as a plain `std` file so `fs4` can lock it. Never through
/// a symbolic link: one planted in a shared cache would have isobuild write where it points.
pub(super) fn open(path: &Path) -> Result<std::fs::File, StoreError> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    let no_follow = i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or_default();
    fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags(no_follow)
        .open(path)
        .map(fs_err::File::into_parts)
        .map(|(file, _)| file)
        .map_err(|e| StoreError::io(path, e))
}
