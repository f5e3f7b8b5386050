//! Repository metadata: `repomd.xml`, `primary.xml`, `filelists.xml`, read as streams.
//!
//! A metadata file is read once, front to back, through a hashing reader: the compressed
//! bytes are hashed as they go by and the decompressed ones are parsed event by event with
//! quick-xml, so a 100 MB primary is never held whole. What the parse produced is returned
//! only when the file's checksum, read to its last byte, matches the one repomd.xml gave:
//! nothing unverified is ever trusted. Filelists are only scanned for the paths the resolver
//! asks about (see [`scan_filelists`]).

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use sha2::Digest as _;

use super::dep::{Dep, DepSyntaxError, Flags, Range};
use super::evr::Evr;

/// Errors of reading repository metadata.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{}` is not valid repository XML", path.display())]
    Xml {
        path: PathBuf,
        #[source]
        source: quick_xml::Error,
    },
    #[error("`{}`: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("`{}`: package `{package}`", path.display())]
    Dependency {
        path: PathBuf,
        package: String,
        #[source]
        source: DepSyntaxError,
    },
    #[error("`{}` does not match its checksum in repomd.xml: expected {expected}, got {actual}", path.display())]
    Checksum {
        path: PathBuf,
        expected: Checksum,
        actual: String,
    },
}

/// The hash functions repository metadata uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumKind {
    Sha1,
    Sha256,
    Sha512,
}

/// A checksum as repomd.xml and primary.xml give it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Checksum {
    pub kind: ChecksumKind,
    pub hex: String,
}

impl Checksum {
    fn parse(kind: &str, hex: &str) -> Option<Self> {
        let kind = match kind {
            "sha" | "sha1" => ChecksumKind::Sha1,
            "sha256" => ChecksumKind::Sha256,
            "sha512" => ChecksumKind::Sha512,
            _ => return None,
        };
        let hex = hex.trim().to_ascii_lowercase();
        let length = match kind {
            ChecksumKind::Sha1 => 40,
            ChecksumKind::Sha256 => 64,
            ChecksumKind::Sha512 => 128,
        };
        (hex.len() == length && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(Self { kind, hex })
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ChecksumKind::Sha1 => "sha1",
            ChecksumKind::Sha256 => "sha256",
            ChecksumKind::Sha512 => "sha512",
        };
        write!(f, "{kind}:{}", self.hex)
    }
}

/// A running hash of one of the [`ChecksumKind`]s.
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(kind: ChecksumKind) -> Self {
        match kind {
            ChecksumKind::Sha1 => Self::Sha1(sha1::Sha1::new()),
            ChecksumKind::Sha256 => Self::Sha256(sha2::Sha256::new()),
            ChecksumKind::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(hasher) => hasher.update(bytes),
            Self::Sha256(hasher) => hasher.update(bytes),
            Self::Sha512(hasher) => hasher.update(bytes),
        }
    }

    pub fn finish_hex(self) -> String {
        match self {
            Self::Sha1(hasher) => hex::encode(hasher.finalize()),
            Self::Sha256(hasher) => hex::encode(hasher.finalize()),
            Self::Sha512(hasher) => hex::encode(hasher.finalize()),
        }
    }
}

/// One `<data>` record of repomd.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoMdRecord {
    /// `primary`, `filelists`, `modules`, …
    pub kind: String,
    pub location: String,
    pub checksum: Checksum,
    pub size: Option<u64>,
}

type PartialRecord = (String, Option<String>, Option<Checksum>, Option<u64>);

/// repomd.xml: where each metadata file is and what it hashes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoMd {
    pub revision: Option<String>,
    pub records: Vec<RepoMdRecord>,
}

impl RepoMd {
    /// The record of one kind (`primary`, …), if the repository has it.
    pub fn record(&self, kind: &str) -> Option<&RepoMdRecord> {
        self.records.iter().find(|record| record.kind == kind)
    }

    /// Parse repomd.xml's bytes; `path` only names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, MetadataError> {
        let invalid = |reason: String| MetadataError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mut reader = Reader::from_reader(bytes);
        let mut buf = Vec::new();
        let mut revision = None;
        let mut records = Vec::new();
        // kind, location, checksum, size of the <data> being read
        let mut current: Option<PartialRecord> = None;
        let mut text_of: Option<&'static str> = None;
        let mut checksum_kind = String::new();
        loop {
            let event = reader
                .read_event_into(&mut buf)
                .map_err(|source| xml_error(path, source))?;
            match event {
                Event::Start(element) | Event::Empty(element) => {
                    match element.local_name().as_ref() {
                        b"data" => {
                            let kind = attribute(&element, b"type", path)?
                                .ok_or_else(|| invalid("a <data> without a type".into()))?;
                            current = Some((kind, None, None, None));
                        }
                        b"location" => {
                            if let Some(record) = &mut current {
                                record.1 = attribute(&element, b"href", path)?;
                            }
                        }
                        b"checksum" if current.is_some() => {
                            checksum_kind = attribute(&element, b"type", path)?.unwrap_or_default();
                            text_of = Some("checksum");
                        }
                        b"size" if current.is_some() => text_of = Some("size"),
                        b"revision" if current.is_none() => text_of = Some("revision"),
                        _ => text_of = None,
                    }
                }
                Event::Text(text) => {
                    let text = text
                        .unescape()
                        .map_err(|source| xml_error(path, source))?
                        .trim()
                        .to_owned();
                    match (text_of.take(), &mut current) {
                        (Some("checksum"), Some(record)) => {
                            record.2 =
                                Some(Checksum::parse(&checksum_kind, &text).ok_or_else(|| {
                                    invalid(format!(
                                        "unsupported checksum `{checksum_kind}` `{text}`"
                                    ))
                                })?);
                        }
                        (Some("size"), Some(record)) => {
                            record.3 =
                                Some(text.parse().map_err(|_| {
                                    invalid(format!("size `{text}` is not a number"))
                                })?);
                        }
                        (Some("revision"), None) => revision = Some(text),
                        _ => {}
                    }
                }
                Event::End(element) => {
                    text_of = None;
                    if element.local_name().as_ref() == b"data" {
                        if let Some((kind, location, checksum, size)) = current.take() {
                            let location = location.ok_or_else(|| {
                                invalid(format!("record `{kind}` has no location"))
                            })?;
                            let checksum = checksum.ok_or_else(|| {
                                invalid(format!("record `{kind}` has no checksum"))
                            })?;
                            records.push(RepoMdRecord {
                                kind,
                                location,
                                checksum,
                                size,
                            });
                        }
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if records.is_empty() {
            return Err(invalid("no <data> records".into()));
        }
        Ok(Self { revision, records })
    }
}

/// One binary package as primary.xml describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub arch: String,
    pub evr: Evr,
    /// The package file's checksum (also its `pkgid` in filelists).
    pub checksum: Checksum,
    pub size: u64,
    /// `location href`, relative to the repository (or to `base`).
    pub location: String,
    /// `location xml:base`, when the package lives elsewhere.
    pub base: Option<String>,
    pub sourcerpm: Option<String>,
    pub provides: Vec<Range>,
    pub requires: Vec<Dep>,
    /// The files primary lists (`/etc/…`, `…bin/…`).
    pub files: Vec<String>,
}

impl Package {
    /// `name-[epoch:]version-release.arch`, epoch shown only when not 0.
    pub fn nevra(&self) -> String {
        let epoch = match self.evr.epoch {
            Some(epoch) if epoch != 0 => format!("{epoch}:"),
            _ => String::new(),
        };
        format!(
            "{}-{epoch}{}-{}.{}",
            self.name,
            self.evr.version,
            self.evr.release.as_deref().unwrap_or(""),
            self.arch
        )
    }
}

/// Whether createrepo lists `path` in primary.xml (so primary alone answers who owns it).
pub fn in_primary(path: &str) -> bool {
    path.starts_with("/etc/") || path.contains("bin/") || path == "/usr/lib/sendmail"
}

/// Read primary.xml (decompressed) and call `each` with every binary package.
pub fn parse_primary(
    input: impl BufRead,
    path: &Path,
    mut each: impl FnMut(Package),
) -> Result<(), MetadataError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Section {
        None,
        Provides,
        Requires,
        Other,
    }
    enum Kind {
        Start,
        Other,
    }
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut package: Option<Package> = None;
    let mut text_of: Option<&'static str> = None;
    let mut section = Section::None;
    let mut checksum_kind = String::new();
    let invalid = |reason: String| MetadataError::Invalid {
        path: path.to_owned(),
        reason,
    };
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|source| xml_error(path, source))?;
        let event_kind = if matches!(event, Event::Start(_)) {
            Kind::Start
        } else {
            Kind::Other
        };
        match event {
            Event::Start(element) | Event::Empty(element) => {
                let starts_text = matches!(event_kind, Kind::Start);
                match element.name().as_ref() {
                    b"package" => {
                        let binary = attribute(&element, b"type", path)?.is_none_or(|t| t == "rpm");
                        package = binary.then(|| Package {
                            name: String::new(),
                            arch: String::new(),
                            evr: Evr::parse(""),
                            checksum: Checksum {
                                kind: ChecksumKind::Sha256,
                                hex: String::new(),
                            },
                            size: 0,
                            location: String::new(),
                            base: None,
                            sourcerpm: None,
                            provides: Vec::new(),
                            requires: Vec::new(),
                            files: Vec::new(),
                        });
                    }
                    _ if package.is_none() => {}
                    b"name" if starts_text => text_of = Some("name"),
                    b"arch" if starts_text => text_of = Some("arch"),
                    b"file" if starts_text => text_of = Some("file"),
                    b"rpm:sourcerpm" if starts_text => text_of = Some("sourcerpm"),
                    b"checksum" if starts_text => {
                        checksum_kind = attribute(&element, b"type", path)?.unwrap_or_default();
                        text_of = Some("checksum");
                    }
                    b"version" => {
                        if let Some(package) = &mut package {
                            package.evr = Evr {
                                epoch: Some(
                                    attribute(&element, b"epoch", path)?
                                        .and_then(|e| e.parse().ok())
                                        .unwrap_or(0),
                                ),
                                version: attribute(&element, b"ver", path)?.unwrap_or_default(),
                                release: Some(
                                    attribute(&element, b"rel", path)?.unwrap_or_default(),
                                ),
                            };
                        }
                    }
                    b"size" => {
                        if let Some(package) = &mut package {
                            package.size = attribute(&element, b"package", path)?
                                .and_then(|size| size.parse().ok())
                                .ok_or_else(|| invalid("a package without a size".into()))?;
                        }
                    }
                    b"location" => {
                        if let Some(package) = &mut package {
                            package.location = attribute(&element, b"href", path)?
                                .ok_or_else(|| invalid("a package without a location".into()))?;
                            package.base = attribute(&element, b"xml:base", path)?;
                        }
                    }
                    b"rpm:provides" => section = Section::Provides,
                    b"rpm:requires" => section = Section::Requires,
                    b"rpm:conflicts" | b"rpm:obsoletes" | b"rpm:recommends" | b"rpm:suggests"
                    | b"rpm:supplements" | b"rpm:enhances" => {
                        section = Section::Other;
                    }
                    b"rpm:entry" if matches!(section, Section::Provides | Section::Requires) => {
                        let name = attribute(&element, b"name", path)?.unwrap_or_default();
                        let version = match attribute(&element, b"flags", path)? {
                            Some(flags) => {
                                let flags = Flags::from_primary(&flags)
                                    .ok_or_else(|| invalid(format!("unknown flags `{flags}`")))?;
                                let epoch = attribute(&element, b"epoch", path)?;
                                let ver = attribute(&element, b"ver", path)?.unwrap_or_default();
                                let rel = attribute(&element, b"rel", path)?;
                                Some((
                                    flags,
                                    Evr {
                                        epoch: epoch.and_then(|e| e.parse().ok()),
                                        version: ver,
                                        release: rel,
                                    },
                                ))
                            }
                            None => None,
                        };
                        let Some(package) = &mut package else {
                            continue;
                        };
                        if section == Section::Provides {
                            package.provides.push(Range { name, version });
                        } else if !name.starts_with("rpmlib(") {
                            let dep = Dep::from_entry(&name, version).map_err(|source| {
                                MetadataError::Dependency {
                                    path: path.to_owned(),
                                    package: package.name.clone(),
                                    source,
                                }
                            })?;
                            package.requires.push(dep);
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(text) => {
                if let (Some(what), Some(package)) = (text_of.take(), &mut package) {
                    let text = text
                        .unescape()
                        .map_err(|source| xml_error(path, source))?
                        .into_owned();
                    match what {
                        "name" => package.name = text,
                        "arch" => package.arch = text,
                        "file" => package.files.push(text),
                        "sourcerpm" => package.sourcerpm = Some(text),
                        _ => {
                            package.checksum =
                                Checksum::parse(&checksum_kind, &text).ok_or_else(|| {
                                    invalid(format!(
                                        "package `{}`: unsupported checksum `{checksum_kind}`",
                                        package.name
                                    ))
                                })?;
                        }
                    }
                }
            }
            Event::End(element) => {
                text_of = None;
                match element.name().as_ref() {
                    b"rpm:provides" | b"rpm:requires" | b"rpm:conflicts" | b"rpm:obsoletes"
                    | b"rpm:recommends" | b"rpm:suggests" | b"rpm:supplements"
                    | b"rpm:enhances" => section = Section::None,
                    b"package" => {
                        if let Some(package) = package.take() {
                            if package.name.is_empty() || package.checksum.hex.is_empty() {
                                return Err(invalid("a package without a name or checksum".into()));
                            }
                            each(package);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(())
}

/// Scan filelists.xml (decompressed) for the `wanted` paths: which package (by checksum, its
/// `pkgid`) owns each of them. Nothing else is kept.
pub fn scan_filelists<S: std::hash::BuildHasher>(
    input: impl BufRead,
    path: &Path,
    wanted: &HashSet<String, S>,
) -> Result<HashMap<String, Vec<String>>, MetadataError> {
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut pkgid: Option<String> = None;
    let mut in_file = false;
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|source| xml_error(path, source))?;
        match event {
            Event::Start(element) => match element.local_name().as_ref() {
                b"package" => {
                    pkgid = attribute(&element, b"pkgid", path)?.map(|id| id.to_ascii_lowercase());
                }
                b"file" => in_file = true,
                _ => {}
            },
            Event::Text(text) if in_file => {
                in_file = false;
                let text = text.unescape().map_err(|source| xml_error(path, source))?;
                if let (true, Some(pkgid)) = (wanted.contains(text.as_ref()), &pkgid) {
                    found
                        .entry(text.into_owned())
                        .or_default()
                        .push(pkgid.clone());
                }
            }
            Event::End(_) => in_file = false,
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(found)
}

fn attribute(
    element: &BytesStart<'_>,
    key: &[u8],
    path: &Path,
) -> Result<Option<String>, MetadataError> {
    for attribute in element.attributes() {
        let attribute = attribute.map_err(|source| xml_error(path, source.into()))?;
        if attribute.key.as_ref() == key {
            let value = attribute
                .unescape_value()
                .map_err(|source| xml_error(path, source))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

fn xml_error(path: &Path, source: quick_xml::Error) -> MetadataError {
    MetadataError::Xml {
        path: path.to_owned(),
        source,
    }
}

/// Check that the file at `path` hashes to `expected`, reading it once.
pub fn verify_file(path: &Path, expected: &Checksum) -> Result<u64, MetadataError> {
    let io_error = |source| MetadataError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = fs_err::File::open(path).map_err(io_error)?;
    let mut hasher = Hasher::new(expected.kind);
    let mut buf = vec![0; 1 << 16];
    let mut total = 0;
    loop {
        let read = file.read(&mut buf).map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&buf[..read]);
        total += read as u64;
    }
    let actual = hasher.finish_hex();
    if actual != expected.hex {
        return Err(MetadataError::Checksum {
            path: path.to_owned(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(total)
}

/// Open a metadata file for streaming, decompressed by its `location`'s extension (`.gz`,
/// `.xz`, `.zst`, or none). Check it with [`verify_file`] first.
pub fn open_decompressed(
    path: &Path,
    location: &str,
) -> Result<Box<dyn BufRead + Send>, MetadataError> {
    let file = fs_err::File::open(path).map_err(|source| MetadataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let raw = BufReader::with_capacity(1 << 16, file);
    let extension = Path::new(location)
        .extension()
        .and_then(|extension| extension.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    Ok(if extension == "gz" {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(raw)))
    } else if extension == "xz" {
        Box::new(BufReader::new(liblzma::bufread::XzDecoder::new(raw)))
    } else if extension == "zst" {
        let decoder = ruzstd::decoding::StreamingDecoder::new(raw).map_err(|error| {
            MetadataError::Invalid {
                path: path.to_owned(),
                reason: format!("not zstd: {error}"),
            }
        })?;
        Box::new(BufReader::new(decoder))
    } else if extension == "bz2" {
        return Err(MetadataError::Invalid {
            path: path.to_owned(),
            reason: "bzip2-compressed metadata is not supported".into(),
        });
    } else {
        Box::new(raw)
    })
}
