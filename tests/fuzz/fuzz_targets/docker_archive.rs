//! Fuzz target: bytes as a `docker-archive:` tarball (what `docker save` writes), read through
//! [`isobuild::source::local::read_archive_bytes`] into a Docker v2 schema 2 image.
//! See `src/lib.rs` for the sink and the scratch-folder check.

#![no_main]

use isobuild::recipe::ImageFormat;
use isobuild::source::local::ArchiveKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    isobuild_fuzz::read_archive(ArchiveKind::Docker, ImageFormat::V2s2, data);
});
