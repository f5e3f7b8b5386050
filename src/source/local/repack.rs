//! Deterministic repacking of one layer: the bytes of a layer as an archive or a daemon gives
//! them are streamed once, through hashers and (for an uncompressed tar) a gzip encoder, into
//! a temporary file in the caller's scratch folder. Nothing is held whole in memory.
//!
//! - An uncompressed layer is gzipped with fixed settings (level 6, mtime 0, no file name, OS
//!   byte 255), so the same layer always gives the same compressed bytes and digest for a
//!   given `flate2` backend (the one `Cargo.lock` pins). Its digest as read is its `diff_id`.
//! - A gzip layer keeps its bytes; it is also decompressed on the fly so that its `diff_id`
//!   can be checked against the image config.
//! - A zstd layer keeps its bytes; its `diff_id` is not computed (no zstd decoder here).
//!
//! Callers decide what to do with the result; this module knows nothing about manifests.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use flate2::{Compression, GzBuilder};
use sha2::Digest as _;

use crate::reference::Digest;

/// The gzip level every uncompressed layer is written with. Part of the output's identity:
/// changing it changes every repacked digest.
const GZIP_LEVEL: u32 = 6;
/// Read and write in large chunks: layers are often hundreds of MiB.
const CHUNK: usize = 256 * 1024;

/// How a stored layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    Gzip,
    Zstd,
}

/// One layer written to a temporary file, with everything a manifest needs to describe it.
#[derive(Debug)]
pub struct RepackedLayer {
    /// How the stored bytes (in `file`) are compressed.
    pub compression: LayerCompression,
    /// The digest of the stored bytes.
    pub digest: Digest,
    /// The size of the stored bytes.
    pub size: u64,
    /// The digest of the bytes as they were read, to check against a source manifest.
    pub source_digest: Digest,
    /// The digest of the uncompressed tar (`None` for zstd, which is not decoded).
    pub diff_id: Option<Digest>,
    /// Whether the layer was gzipped here (false when its bytes were kept).
    pub recompressed: bool,
    /// The stored bytes; deleted when dropped unless the caller persists it.
    pub file: tempfile::NamedTempFile,
}

/// A writer that hashes and counts what passes through it (public for the test kit's
/// synthetic layers, which hash the same way).
pub struct HashWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    len: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: sha2::Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the digest and the count of what went through.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Read until `buf` is full or the input ends; returns how many bytes were read.
fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Feed every chunk of `reader` to `sink`.
fn for_each_chunk(
    reader: &mut dyn Read,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = vec![0; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => sink(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Stream `reader` (one layer) into a new temporary file in `scratch`, gzipping it when it is
/// an uncompressed tar. See the module documentation for the rules.
pub fn repack_layer(reader: &mut dyn Read, scratch: &Path) -> io::Result<RepackedLayer> {
    let file = tempfile::Builder::new()
        .prefix(".layer.")
        .suffix(".isobuild-tmp")
        .tempfile_in(scratch)
        .map_err(|e| crate::fs::with_path(&e, "create a temporary file in", scratch))?;
    let mut magic = [0u8; 4];
    let read = read_up_to(reader, &mut magic)?;
    let mut input = (&magic[..read]).chain(reader);
    let out = HashWriter::new(BufWriter::with_capacity(CHUNK, file.as_file()));
    let mut source = sha2::Sha256::new();
    let (compression, out, diff_id, recompressed) = if magic[..read].starts_with(&[0x1f, 0x8b]) {
        // Kept as is; decoded on the side only to learn the diff_id.
        let mut out = out;
        let mut decoder = flate2::write::MultiGzDecoder::new(HashWriter::new(io::sink()));
        for_each_chunk(&mut input, |chunk| {
            source.update(chunk);
            out.write_all(chunk)?;
            decoder.write_all(chunk)
        })?;
        let (_, diff_id, _) = decoder.finish()?.finish();
        (LayerCompression::Gzip, out, Some(diff_id), false)
    } else if magic[..read] == [0x28, 0xb5, 0x2f, 0xfd] {
        let mut out = out;
        for_each_chunk(&mut input, |chunk| {
            source.update(chunk);
            out.write_all(chunk)
        })?;
        (LayerCompression::Zstd, out, None, false)
    } else {
        // An explicit OS byte (255, "unknown") and mtime 0 keep the header free of anything
        // about this machine or this moment.
        let mut encoder = GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(out, Compression::new(GZIP_LEVEL));
        for_each_chunk(&mut input, |chunk| {
            source.update(chunk);
            encoder.write_all(chunk)
        })?;
        let out = encoder.finish()?;
        let diff_id = Digest::from_hasher(source.clone());
        (LayerCompression::Gzip, out, Some(diff_id), true)
    };
    let (writer, digest, size) = out.finish();
    writer
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .map_err(|e| crate::fs::with_path(&e, "write", file.path()))?;
    Ok(RepackedLayer {
        compression,
        digest,
        size,
        source_digest: Digest::from_hasher(source),
        diff_id,
        recompressed,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(content: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, "file", content).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn uncompressed_layers_are_gzipped_the_same_way_every_time() {
        let scratch = tempfile::tempdir().unwrap();
        let layer = tar_of(&vec![7u8; 100_000]);
        let first = repack_layer(&mut layer.as_slice(), scratch.path()).unwrap();
        let second = repack_layer(&mut layer.as_slice(), scratch.path()).unwrap();
        assert!(first.recompressed);
        assert_eq!(first.digest, second.digest);
        assert_eq!(first.diff_id, Some(Digest::of(&layer)));
        assert_eq!(first.source_digest, Digest::of(&layer));
        let stored = fs_err::read(first.file.path()).unwrap();
        assert_eq!(Digest::of(&stored), first.digest);
        assert_eq!(stored.len() as u64, first.size);
        // gzip header: magic, deflate, no flags, mtime 0, OS 255.
        assert_eq!(&stored[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(stored.as_slice())
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, layer);
    }

    #[test]
    fn gzip_layers_keep_their_bytes_and_learn_their_diff_id() {
        let scratch = tempfile::tempdir().unwrap();
        let layer = tar_of(b"hello");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&layer).unwrap();
        let gz = gz.finish().unwrap();
        let repacked = repack_layer(&mut gz.as_slice(), scratch.path()).unwrap();
        assert!(!repacked.recompressed);
        assert_eq!(repacked.digest, Digest::of(&gz));
        assert_eq!(repacked.diff_id, Some(Digest::of(&layer)));
        assert_eq!(fs_err::read(repacked.file.path()).unwrap(), gz);
    }

    #[test]
    fn zstd_layers_keep_their_bytes() {
        let scratch = tempfile::tempdir().unwrap();
        let bytes = [0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3];
        let repacked = repack_layer(&mut bytes.as_slice(), scratch.path()).unwrap();
        assert_eq!(repacked.compression, LayerCompression::Zstd);
        assert_eq!(repacked.digest, Digest::of(&bytes));
        assert_eq!(repacked.diff_id, None);
    }

    #[test]
    fn short_and_empty_inputs_are_gzipped() {
        let scratch = tempfile::tempdir().unwrap();
        for bytes in [&b""[..], b"\x1f"] {
            let repacked = repack_layer(&mut &bytes[..], scratch.path()).unwrap();
            assert!(repacked.recompressed);
            assert_eq!(repacked.diff_id, Some(Digest::of(bytes)));
        }
    }
}
