//! The repodata writer: `repodata/` for a set of packages, written natively and
//! reproducibly.
//!
//! The packages' entries come from the source repository's primary.xml and filelists.xml
//! (copied event by event with quick-xml, so every field createrepo_c wrote is kept), with
//! what would make two builds differ pinned: `xml:base` dropped and `href` made the file
//! name (the RPM now sits at the top of the folder, beside `repodata/`), `<time file=…>` set to the build's epoch, entries sorted by location,
//! gzip without a timestamp or a name, and repomd.xml's `revision` and `timestamp` set to
//! the epoch.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write as _};
use std::path::Path;

use quick_xml::Reader;
use quick_xml::Writer;
use quick_xml::events::{BytesStart, Event};
use sha2::Digest as _;

use super::metadata::MetadataError;

/// Which metadata file an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Primary,
    Filelists,
}

/// Copy the `<package>` entries of `wanted` packages (by checksum, lowercase hex) from a
/// decompressed primary.xml or filelists.xml. Returns checksum → (location, entry bytes).
pub fn extract_entries<S: std::hash::BuildHasher>(
    input: impl BufRead,
    path: &Path,
    kind: Kind,
    wanted: &HashSet<String, S>,
    epoch: i64,
) -> Result<BTreeMap<String, Vec<u8>>, MetadataError> {
    let xml_error = |source: quick_xml::Error| MetadataError::Xml {
        path: path.to_owned(),
        source,
    };
    let io_error = |source: std::io::Error| MetadataError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut found = BTreeMap::new();
    let mut writer: Option<Writer<Vec<u8>>> = None;
    let mut pkgid: Option<String> = None;
    let mut in_checksum = false;
    let mut depth = 0usize;
    loop {
        let event = reader.read_event_into(&mut buf).map_err(xml_error)?;
        match &event {
            Event::Start(element) if element.name().as_ref() == b"package" && writer.is_none() => {
                depth = 0;
                pkgid = attribute(element, b"pkgid");
                writer = Some(Writer::new(Vec::new()));
            }
            Event::Eof => break,
            _ => {}
        }
        let Some(out) = writer.as_mut() else {
            buf.clear();
            continue;
        };
        match &event {
            Event::Start(element) => {
                depth += 1;
                in_checksum = kind == Kind::Primary && element.name().as_ref() == b"checksum";
                out.write_event(Event::Start(pinned(element, epoch)))
                    .map_err(io_error)?;
            }
            Event::Empty(element) => {
                out.write_event(Event::Empty(pinned(element, epoch)))
                    .map_err(io_error)?;
            }
            Event::Text(text) => {
                if in_checksum && depth == 2 {
                    pkgid = Some(
                        text.unescape()
                            .map_err(xml_error)?
                            .trim()
                            .to_ascii_lowercase(),
                    );
                }
                out.write_event(Event::Text(text.clone()))
                    .map_err(io_error)?;
            }
            Event::End(element) => {
                in_checksum = false;
                depth = depth.saturating_sub(1);
                out.write_event(Event::End(element.clone()))
                    .map_err(io_error)?;
                if depth == 0 && element.name().as_ref() == b"package" {
                    let bytes = writer.take().expect("inside a package").into_inner();
                    if let Some(id) = pkgid.take()
                        && wanted.contains(&id)
                    {
                        found.insert(id, bytes);
                    }
                }
            }
            other => {
                out.write_event(other.clone()).map_err(io_error)?;
            }
        }
        buf.clear();
    }
    Ok(found)
}

/// Where a package goes in a written repository: its file name, at the top of the folder,
/// as MetalK8s' `yumdownloader` leaves it (`Packages/p/python3-boto3-….rpm` →
/// `python3-boto3-….rpm`).
pub fn flat_name(location: &str) -> &str {
    location.rsplit('/').next().unwrap_or(location)
}

/// `element` with what must not vary pinned: no `xml:base` on `<location>` and its `href`
/// the package's file name ([`flat_name`]), the file time of `<time>` set to `epoch`.
fn pinned<'a>(element: &BytesStart<'a>, epoch: i64) -> BytesStart<'a> {
    match element.name().as_ref() {
        b"location" => {
            let mut out = BytesStart::new("location");
            for attribute in element.attributes().flatten() {
                match attribute.key.as_ref() {
                    b"xml:base" => {}
                    b"href" => {
                        let href = attribute.unescape_value().unwrap_or_default();
                        out.push_attribute(("href", flat_name(&href)));
                    }
                    _ => out.push_attribute(attribute),
                }
            }
            out
        }
        b"time" => {
            let mut out = BytesStart::new("time");
            let epoch = epoch.to_string();
            for attribute in element.attributes().flatten() {
                if attribute.key.as_ref() == b"file" {
                    out.push_attribute(("file", epoch.as_str()));
                } else {
                    out.push_attribute(attribute);
                }
            }
            out
        }
        _ => element.clone(),
    }
}

fn attribute(element: &BytesStart<'_>, key: &[u8]) -> Option<String> {
    element
        .attributes()
        .flatten()
        .find(|attribute| attribute.key.as_ref() == key)
        .and_then(|attribute| attribute.unescape_value().ok())
        .map(|value| value.to_ascii_lowercase())
}

/// One metadata file written: what repomd.xml records about it.
struct Written {
    kind: &'static str,
    location: String,
    checksum: String,
    open_checksum: String,
    size: usize,
    open_size: usize,
}

/// Write `dir/repodata/` (primary, filelists, repomd.xml) from the entries
/// [`extract_entries`] copied, in the order given (sort them first).
pub fn write_repodata(
    dir: &Path,
    primary: &[Vec<u8>],
    filelists: &[Vec<u8>],
    epoch: i64,
) -> std::io::Result<()> {
    let repodata = dir.join("repodata");
    fs_err::create_dir_all(&repodata)?;
    let count = primary.len();
    let mut written = Vec::new();
    let mut document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata xmlns=\"http://linux.duke.edu/metadata/common\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\" packages=\"{count}\">\n"
    )
    .into_bytes();
    for entry in primary {
        document.extend_from_slice(entry);
        document.push(b'\n');
    }
    document.extend_from_slice(b"</metadata>\n");
    written.push(write_gz(&repodata, "primary", &document)?);
    let mut document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<filelists xmlns=\"http://linux.duke.edu/metadata/filelists\" packages=\"{count}\">\n"
    )
    .into_bytes();
    for entry in filelists {
        document.extend_from_slice(entry);
        document.push(b'\n');
    }
    document.extend_from_slice(b"</filelists>\n");
    written.push(write_gz(&repodata, "filelists", &document)?);
    let mut repomd = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<repomd xmlns=\"http://linux.duke.edu/metadata/repo\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\">\n  <revision>{epoch}</revision>\n"
    );
    for file in &written {
        repomd.push_str(&format!(
            "  <data type=\"{}\">\n    <checksum type=\"sha256\">{}</checksum>\n    <open-checksum type=\"sha256\">{}</open-checksum>\n    <location href=\"{}\"/>\n    <timestamp>{epoch}</timestamp>\n    <size>{}</size>\n    <open-size>{}</open-size>\n  </data>\n",
            file.kind, file.checksum, file.open_checksum, file.location, file.size, file.open_size
        ));
    }
    repomd.push_str("</repomd>\n");
    crate::fs::write_atomic(&repodata.join("repomd.xml"), repomd.as_bytes(), 0o644)
}

fn write_gz(repodata: &Path, kind: &'static str, document: &[u8]) -> std::io::Result<Written> {
    let mut encoder = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(document)?;
    let compressed = encoder.finish()?;
    let checksum = hex::encode(sha2::Sha256::digest(&compressed));
    let name = format!("{checksum}-{kind}.xml.gz");
    crate::fs::write_atomic(&repodata.join(&name), &compressed, 0o644)?;
    Ok(Written {
        kind,
        location: format!("repodata/{name}"),
        open_checksum: hex::encode(sha2::Sha256::digest(document)),
        checksum,
        size: compressed.len(),
        open_size: document.len(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::{Kind, extract_entries};

    #[test]
    fn copied_entries_sit_flat_with_the_epoch_as_file_time() {
        let primary = r#"<metadata packages="2">
<package type="rpm"><name>jq</name><checksum type="sha256" pkgid="YES">AB12</checksum><time file="1690000000" build="1680000000"/><location xml:base="https://mirror.example/epel/" href="Packages/j/jq-1.6-3.el8.x86_64.rpm"/></package>
<package type="rpm"><name>other</name><checksum type="sha256" pkgid="YES">cd34</checksum><location href="Packages/o/other.rpm"/></package>
</metadata>"#;
        let wanted: HashSet<String> = ["ab12".to_owned()].into_iter().collect();
        let found = extract_entries(
            primary.as_bytes(),
            Path::new("primary.xml"),
            Kind::Primary,
            &wanted,
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(found.len(), 1);
        let entry = String::from_utf8(found["ab12"].clone()).unwrap();
        assert!(
            entry.contains(r#"<location href="jq-1.6-3.el8.x86_64.rpm"/>"#),
            "{entry}"
        );
        assert!(
            entry.contains(r#"<time file="1700000000" build="1680000000"/>"#),
            "{entry}"
        );
        assert!(!entry.contains("xml:base"), "{entry}");
    }
}
