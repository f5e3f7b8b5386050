//! What the archive fuzz targets share: a [`BlobSink`] that throws blobs away, and the check
//! that a read, whatever its outcome, leaves nothing behind in the scratch folder.

use std::io;
use std::path::Path;
use std::sync::OnceLock;

use isobuild::recipe::{ImageFormat, Platform};
use isobuild::reference::Digest;
use isobuild::source::local::{ArchiveKind, BlobSink, read_archive_bytes};

/// A sink whose scratch folder lives for the whole fuzzing process (on tmpfs when there is
/// one, since every read writes its layers there) and which keeps no blob.
struct DiscardSink {
    scratch: tempfile::TempDir,
}

impl BlobSink for DiscardSink {
    fn put_file(&self, _digest: &Digest, file: tempfile::NamedTempFile) -> io::Result<()> {
        // Dropping the file deletes it: the readers verified its digest already.
        drop(file);
        Ok(())
    }

    fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }
}

fn sink() -> &'static DiscardSink {
    static SINK: OnceLock<DiscardSink> = OnceLock::new();
    SINK.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let scratch = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        };
        DiscardSink {
            scratch: scratch.expect("a scratch folder for the fuzz target"),
        }
    })
}

/// Read `data` as an archive of `kind`, then check that the scratch folder is empty again:
/// the readers promise that every temporary file is handed to the sink or deleted, on
/// success and on every error.
pub fn read_archive(kind: ArchiveKind, format: ImageFormat, data: &[u8]) {
    let sink = sink();
    let result = read_archive_bytes(kind, data, &Platform::default(), format, sink);
    if let Err(error) = result {
        std::hint::black_box(error.to_string());
    }
    let left: Vec<_> = std::fs::read_dir(sink.scratch_dir())
        .expect("the scratch folder is readable")
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect();
    assert!(left.is_empty(), "the reader left files behind: {left:?}");
}
