//! Fuzz target: bytes as an `oci-archive:` tarball (an OCI image layout in a tar), read
//! through [`isobuild::source::local::read_archive_bytes`] into an OCI image.
//! See `src/lib.rs` for the sink and the scratch-folder check.

#![no_main]

use isobuild::recipe::ImageFormat;
use isobuild::source::local::ArchiveKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    isobuild_fuzz::read_archive(ArchiveKind::Oci, ImageFormat::Oci, data);
});
