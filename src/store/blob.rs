//! [`BlobWriter`]: the only way a streamed blob enters the cache. It hashes while it writes
//! into `tmp/`, resumes an interrupted partial, and renames into `blobs-v1/` only when size
//! and digest match. See the flow in [`super`].

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::OwnedMutexGuard;

use super::{BLOB_MODE, Store, StoreError};
use crate::reference::Digest;

/// Writes go through a buffer this large, so the file sees few large writes instead of one
/// per network chunk (each write of a tokio file is a trip to the blocking pool).
const WRITE_BUFFER: usize = 1 << 20;

/// A blob being written into the cache; see [`Store::blob_writer`].
///
/// Dropping it without [`finish`](Self::finish) keeps a resumable partial for the next
/// attempt (or deletes a non-resumable or empty one) and never touches `blobs-v1/`; call
/// [`flush`](Self::flush) first, or up to a buffer's worth of bytes is lost.
#[derive(Debug)]
pub struct BlobWriter {
    digest: Digest,
    expected_size: Option<u64>,
    file: tokio::io::BufWriter<tokio::fs::File>,
    partial: Partial,
    hasher: Sha256,
    written: u64,
    dest: PathBuf,
    store: Store,
    /// Keeps other tasks of this process from writing the same digest meanwhile.
    _guard: OwnedMutexGuard<()>,
}

#[derive(Debug)]
enum Partial {
    /// `tmp/<hex>.partial`, locked by us; kept when dropped so a later run resumes it.
    Resumable(PathBuf),
    /// Another process holds the resumable partial: a private file, deleted when dropped.
    Private(tempfile::TempPath),
    /// Renamed into `blobs-v1/` or deleted: nothing is left to clean up.
    Gone(PathBuf),
}

impl Partial {
    fn path(&self) -> &std::path::Path {
        match self {
            Self::Resumable(path) | Self::Gone(path) => path,
            Self::Private(path) => path,
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // An empty partial resumes nothing; left behind, it would only look like a download
        // in progress. The lock is still ours (the file closes after this), so no other
        // process is writing into it.
        if let Partial::Resumable(path) = &self.partial
            && fs_err::metadata(path).is_ok_and(|metadata| metadata.len() == 0)
        {
            let _ = fs_err::remove_file(path);
        }
    }
}

impl BlobWriter {
    /// Open the partial of `digest`, or `None` when the blob is in the cache by the time the
    /// partial is ours.
    ///
    /// When another process holds the partial, it is downloading the blob: waiting for it
    /// costs no more time than downloading in parallel, and the blob is fetched once. The
    /// wait ends when the blob appears, or when that process gives up or dies (the kernel
    /// frees its lock) and its partial is resumed here. It is a cancellable sleep, so Ctrl-C
    /// still stops a waiting run.
    pub(super) async fn open(
        store: &Store,
        digest: Digest,
        expected_size: Option<u64>,
        guard: OwnedMutexGuard<()>,
    ) -> Result<Option<Self>, StoreError> {
        let tmp = store.tmp_dir();
        let path = tmp.join(format!("{}.partial", digest.hex()));
        let mut waiting = false;
        // The partial's size, and when it last changed: a holder that writes nothing for
        // `stalled_after` is given up on.
        let mut progress = (0, std::time::Instant::now());
        let (file, partial) = loop {
            let mut lock = lock_partial(&path)?;
            if let Lock::Busy = lock {
                let len = fs_err::metadata(&path).map_or(0, |metadata| metadata.len());
                if len != progress.0 {
                    progress = (len, std::time::Instant::now());
                } else if progress.1.elapsed() > store.stalled_after() {
                    tracing::warn!(
                        "the other isobuild downloading blob `{digest}` has written nothing for {}s; downloading it here instead",
                        store.stalled_after().as_secs()
                    );
                    lock = Lock::Unstable;
                }
            }
            match lock {
                Lock::Ours(file) => break (file, Partial::Resumable(path)),
                Lock::Busy => {
                    if store.has_blob(&digest) {
                        return Ok(None);
                    }
                    if !waiting {
                        waiting = true;
                        // At default verbosity: a wait that may be long is never silent.
                        tracing::warn!(
                            "waiting for another isobuild process downloading blob `{digest}` into `{}`",
                            path.display()
                        );
                    }
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Lock::Unstable => {
                    let temp = tempfile::Builder::new()
                        .prefix(&format!("{}.", digest.hex()))
                        .suffix(".partial")
                        .tempfile_in(&tmp)
                        .map_err(|e| StoreError::io(&tmp, e))?;
                    let (file, temp_path) = temp.into_parts();
                    break (file, Partial::Private(temp_path));
                }
            }
        };
        // Hash what an interrupted run left, so the caller can ask only for the rest. A new,
        // empty partial (the usual case) has nothing to hash: no trip to the blocking pool.
        let partial_path = partial.path().to_owned();
        let len = file
            .metadata()
            .map_err(|e| StoreError::io(&partial_path, e))?
            .len();
        let (file, hasher, written) = if len == 0 {
            (file, Sha256::new(), 0)
        } else {
            tokio::task::spawn_blocking(move || {
                rehash(file, expected_size).map_err(|e| StoreError::io(&partial_path, e))
            })
            .await
            .map_err(|e| StoreError::io(partial.path(), std::io::Error::other(e)))??
        };
        // At the end, where the next byte goes (`rehash` left it there; an empty file is).
        let file = tokio::fs::File::from_std(file);
        Ok(Some(Self {
            dest: store.blob_path(&digest),
            store: store.clone(),
            digest,
            expected_size,
            // No larger than the blob: a small blob's buffer is all of it (see `finish`), and
            // a 40 KiB RPM does not map and unmap a MiB.
            file: tokio::io::BufWriter::with_capacity(
                expected_size.map_or(WRITE_BUFFER, |size| {
                    usize::try_from(size).map_or(WRITE_BUFFER, |size| size.min(WRITE_BUFFER))
                }),
                file,
            ),
            partial,
            hasher,
            written,
            _guard: guard,
        }))
    }

    /// The digest being written.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Bytes already written, including those of a resumed partial: where the next byte of
    /// the blob goes (the start of an HTTP `Range`).
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// Append the next bytes of the blob.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let after = self.written + chunk.len() as u64;
        if let Some(expected) = self.expected_size
            && after > expected
        {
            return Err(StoreError::SizeMismatch {
                digest: self.digest.clone(),
                expected,
                actual: after,
            });
        }
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| StoreError::io(self.partial.path(), e))?;
        self.hasher.update(chunk);
        self.written = after;
        Ok(())
    }

    /// Push buffered bytes to the partial file, so a caller giving up (a dropped connection)
    /// leaves everything it received for the resumption.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        self.file
            .flush()
            .await
            .map_err(|e| StoreError::io(self.partial.path(), e))
    }

    /// Forget what was written and start again from byte 0 (the server ignored a `Range`).
    pub async fn restart(&mut self) -> Result<(), StoreError> {
        let path = self.partial.path().to_owned();
        self.file
            .flush()
            .await
            .map_err(|e| StoreError::io(&path, e))?;
        let file = self.file.get_mut();
        file.set_len(0)
            .await
            .map_err(|e| StoreError::io(&path, e))?;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| StoreError::io(&path, e))?;
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }

    /// Check size and digest; on a match, move the blob into the cache and return its size.
    /// On a mismatch the partial is deleted (its bytes are wrong, resuming it cannot help).
    pub async fn finish(self) -> Result<u64, StoreError> {
        match self.finish_inner(None::<NoCheck>).await {
            Ok(size) => Ok(size),
            Err(FinishError::Store(error)) => Err(error),
            Err(FinishError::Check(never)) => match never {},
        }
    }

    /// [`finish`](Self::finish), and before the blob enters the cache, `check` on all its
    /// bytes (an RPM's signature): a blob it refuses is deleted, never filed. A blob small
    /// enough to have stayed in the write buffer is checked there, written, synced and
    /// renamed in one trip to the blocking pool; a larger one is read back for the check.
    pub async fn finish_checked<E: Send + 'static>(
        self,
        check: impl FnOnce(&[u8]) -> Result<(), E> + Send + 'static,
    ) -> Result<u64, FinishError<E>> {
        self.finish_inner(Some(check)).await
    }

    async fn finish_inner<E: Send + 'static>(
        mut self,
        check: Option<impl FnOnce(&[u8]) -> Result<(), E> + Send + 'static>,
    ) -> Result<u64, FinishError<E>> {
        let path = self.partial.path().to_owned();
        let actual = Digest::from_hasher(self.hasher.clone());
        let mismatch = if let Some(expected) = self.expected_size
            && expected != self.written
        {
            Some(StoreError::SizeMismatch {
                digest: self.digest.clone(),
                expected,
                actual: self.written,
            })
        } else if actual != self.digest {
            Some(StoreError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            })
        } else {
            None
        };
        if let Some(error) = mismatch {
            self.discard()?;
            return Err(FinishError::Store(error));
        }
        // The whole blob is still in the buffer when nothing was flushed or resumed: it is
        // written out below, with the sync, rather than in a trip of its own.
        let buffered =
            (self.file.buffer().len() as u64 == self.written).then(|| self.file.buffer().to_vec());
        if buffered.is_none() {
            self.file
                .flush()
                .await
                .map_err(|e| StoreError::io(&path, e))?;
        }
        // The blocking work goes on a duplicate of the descriptor; no write is in flight.
        let fd = std::os::fd::AsFd::as_fd(self.file.get_ref())
            .try_clone_to_owned()
            .map_err(|e| StoreError::io(&path, e))?;
        let (temp, resumable) =
            match std::mem::replace(&mut self.partial, Partial::Gone(path.clone())) {
                Partial::Resumable(path) => (
                    tempfile::TempPath::try_from_path(&path)
                        .map_err(|e| StoreError::io(&path, e))?,
                    true,
                ),
                Partial::Private(temp) => (temp, false),
                Partial::Gone(_) => return Ok(self.written),
            };
        let dest = self.dest.clone();
        let placed = tokio::task::spawn_blocking(move || {
            place(
                std::fs::File::from(fd),
                temp,
                &dest,
                resumable,
                buffered.as_deref(),
                check,
            )
        })
        .await
        .map_err(|e| StoreError::io(&path, std::io::Error::other(e)))??;
        if placed {
            self.store.mark_verified(&self.digest);
        }
        Ok(self.written)
    }

    /// Delete the partial of a blob whose bytes are wrong (a private one is deleted when its
    /// `TempPath` drops).
    fn discard(&mut self) -> Result<(), StoreError> {
        let path = self.partial.path().to_owned();
        if let Partial::Resumable(path) = std::mem::replace(&mut self.partial, Partial::Gone(path))
        {
            fs_err::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        Ok(())
    }
}

/// The check of a plain [`BlobWriter::finish`]: none.
type NoCheck = fn(&[u8]) -> Result<(), std::convert::Infallible>;

/// Why [`BlobWriter::finish_checked`] filed nothing: the store failed, or the check refused
/// the bytes.
#[derive(Debug)]
pub enum FinishError<E> {
    Store(StoreError),
    Check(E),
}

impl<E> From<StoreError> for FinishError<E> {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// The blocking end of [`BlobWriter::finish_inner`]: run `check` on the blob's bytes (the
/// `buffered` ones, else the partial's), write the buffered ones, then mode, sync (data on
/// disk before the rename makes it visible: a crash never leaves a short blob) and rename
/// into place. A `resumable` partial outlives a failed write or sync. Never over a blob already there (another process's copy, same bytes): files
/// of the ISO tree may be hard links to it; then ours is deleted. Whether ours was placed.
fn place<E>(
    mut file: std::fs::File,
    temp: tempfile::TempPath,
    dest: &std::path::Path,
    resumable: bool,
    buffered: Option<&[u8]>,
    check: Option<impl FnOnce(&[u8]) -> Result<(), E>>,
) -> Result<bool, FinishError<E>> {
    use std::io::{Read as _, Seek as _, Write as _};
    let io = |e: std::io::Error| StoreError::io(&temp, e);
    if let Some(check) = check {
        let checked = if let Some(bytes) = buffered {
            check(bytes)
        } else {
            let mut bytes = Vec::new();
            file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
            file.read_to_end(&mut bytes).map_err(io)?;
            check(&bytes)
        };
        if let Err(error) = checked {
            // Checksummed but refused: out of the cache, and no partial to resume (the
            // `TempPath` deletes it as it drops).
            return Err(FinishError::Check(error));
        }
    }
    let written = (|| {
        if let Some(bytes) = buffered {
            file.write_all(bytes)?;
        }
        rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(BLOB_MODE))?;
        rustix::fs::fdatasync(&file)?;
        Ok::<_, std::io::Error>(())
    })();
    if let Err(error) = written {
        let error = io(error);
        // Verified bytes stay for the next run to resume, as any interrupted download's do.
        if resumable {
            let _ = temp.keep();
        }
        return Err(FinishError::Store(error));
    }
    match temp.persist_noclobber(dest) {
        Ok(()) => Ok(true),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(FinishError::Store(StoreError::io(dest, e.error))),
    }
}

/// How long a run waiting for another process's download sleeps between looks.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// What [`lock_partial`] got.
enum Lock {
    /// The partial, open and locked by us.
    Ours(std::fs::File),
    /// Another process holds it.
    Busy,
    /// It kept being replaced under us.
    Unstable,
}

/// Open and lock `path` exclusively.
fn lock_partial(path: &std::path::Path) -> Result<Lock, StoreError> {
    // The holder may rename the partial into `blobs-v1/` between our open and our lock; then
    // the file we locked is a finished blob, not the partial. Check and try again.
    for _ in 0..3 {
        if !is_ours(path)? {
            // Not a file this user's isobuild made (a link, a device, another user's file,
            // planted in a shared cache): never written into, and left alone.
            tracing::warn!(
                "`{}` is not a regular file of yours; downloading into a private file instead",
                path.display()
            );
            return Ok(Lock::Unstable);
        }
        let file = super::lock::open(path)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => return Ok(Lock::Busy),
            Err(fs4::TryLockError::Error(e)) => return Err(StoreError::io(path, e)),
        }
        let locked = file.metadata().map_err(|e| StoreError::io(path, e))?;
        match fs_err::metadata(path) {
            Ok(current) if current.ino() == locked.ino() && current.dev() == locked.dev() => {
                return Ok(Lock::Ours(file));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(path, e)),
        }
    }
    // Someone keeps replacing it: fall back to a private partial.
    Ok(Lock::Unstable)
}

/// Whether `path` is missing or a regular file owned by the caller.
fn is_ours(path: &std::path::Path) -> Result<bool, StoreError> {
    match fs_err::symlink_metadata(path) {
        Ok(metadata) => {
            Ok(metadata.file_type().is_file()
                && metadata.uid() == rustix::process::geteuid().as_raw())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Hash the bytes a partial already holds. A partial longer than the blob can only be wrong,
/// so it is emptied.
fn rehash(
    mut file: std::fs::File,
    expected_size: Option<u64>,
) -> std::io::Result<(std::fs::File, Sha256, u64)> {
    let len = file.metadata()?.len();
    if expected_size.is_some_and(|expected| len > expected) {
        file.set_len(0)?;
        return Ok((file, Sha256::new(), 0));
    }
    let mut hasher = Sha256::new();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
    let written = std::io::copy(&mut file, &mut hasher)?;
    // Where the next byte goes (`copy` stops at the end; this says so, for the writer).
    std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
    Ok((file, hasher, written))
}
