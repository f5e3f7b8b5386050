//! Repository metadata for RPMs that have no repository yet (a built repository: packages a
//! recipe task made): one primary.xml and one filelists.xml `<package>` entry per RPM file,
//! read from its header with the `rpm` crate, holding the fields createrepo_c writes.
//!
//! The entries are what [`super::repodata::write_repodata`] takes, so a built repository's
//! `repodata/` is written by the same code (sorted, fixed times) as a downloaded one's. The
//! file time in `<time file=…>` is the build's epoch, not the file's mtime, so that two
//! builds of the same RPMs write the same metadata.

use std::fmt::Write as _;
use std::path::Path;

use quick_xml::escape::escape;
use rpm::{DependencyFlags, FileMode, IndexSignatureTag, IndexTag};

use crate::reference::Digest;

/// Why an RPM file cannot go into a built repository.
#[derive(Debug, thiserror::Error)]
pub enum BuiltError {
    #[error("`{}` is not a readable RPM: {message}", path.display())]
    Unreadable {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("`{}` does not match the digests in its own header: {message}", path.display())]
    Digests {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("`{}` is a source RPM, not a binary package", path.display())]
    Source { path: std::path::PathBuf },
}

/// One RPM's metadata entries.
#[derive(Debug, Clone)]
pub struct BuiltEntry {
    /// Where the RPM goes, relative to the repository.
    pub location: String,
    /// `name-[epoch:]version-release.arch`.
    pub nevra: String,
    pub name: String,
    pub arch: String,
    pub primary: Vec<u8>,
    pub filelists: Vec<u8>,
}

/// Read `content` (the RPM file `path`), check the digests its header records, and make its
/// entries, with `location(arch)` as `<location href>`.
pub fn entries(
    content: &[u8],
    path: &Path,
    location: impl FnOnce(&str) -> String,
    epoch: i64,
) -> Result<BuiltEntry, BuiltError> {
    let unreadable = |error: rpm::Error| BuiltError::Unreadable {
        path: path.to_owned(),
        message: error.to_string(),
    };
    let sha256 = Digest::of(content);
    let size = content.len() as u64;
    let package = rpm::Package::parse(&mut &content[..]).map_err(unreadable)?;
    package
        .verify_digests()
        .map_err(|error| BuiltError::Digests {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
    let metadata = &package.metadata;
    if metadata.is_source_package() {
        return Err(BuiltError::Source {
            path: path.to_owned(),
        });
    }
    let name = metadata.get_name().map_err(unreadable)?.to_owned();
    let arch = metadata.get_arch().map_err(unreadable)?.to_owned();
    let epoch_tag = metadata.get_epoch().unwrap_or(0);
    let version = metadata.get_version().map_err(unreadable)?.to_owned();
    let release = metadata.get_release().map_err(unreadable)?.to_owned();
    let text = |value: Result<&str, rpm::Error>| escape(value.unwrap_or_default()).into_owned();
    let header = &metadata.header;
    let signature = &metadata.signature;
    let archive = signature
        .get_entry_data_as_u64(IndexSignatureTag::RPMSIGTAG_LONGARCHIVESIZE)
        .or_else(|_| {
            signature
                .get_entry_data_as_u32(IndexSignatureTag::RPMSIGTAG_PAYLOADSIZE)
                .map(u64::from)
        })
        .or_else(|_| {
            header
                .get_entry_data_as_u32(IndexTag::RPMTAG_ARCHIVESIZE)
                .map(u64::from)
        })
        .unwrap_or(0);
    let offsets = metadata.get_package_segment_offsets();
    let files = metadata.get_file_entries().unwrap_or_default();
    let hex = sha256.hex();
    let location = location(&arch);

    let mut primary = String::new();
    let _ = write!(
        primary,
        "<package type=\"rpm\">\n  <name>{}</name>\n  <arch>{}</arch>\n  <version epoch=\"{epoch_tag}\" ver=\"{}\" rel=\"{}\"/>\n  <checksum type=\"sha256\" pkgid=\"YES\">{hex}</checksum>\n  <summary>{}</summary>\n  <description>{}</description>\n  <packager>{}</packager>\n  <url>{}</url>\n  <time file=\"{epoch}\" build=\"{}\"/>\n  <size package=\"{size}\" installed=\"{}\" archive=\"{archive}\"/>\n  <location href=\"{}\"/>\n  <format>\n    <rpm:license>{}</rpm:license>\n    <rpm:vendor>{}</rpm:vendor>\n    <rpm:group>{}</rpm:group>\n    <rpm:buildhost>{}</rpm:buildhost>\n    <rpm:sourcerpm>{}</rpm:sourcerpm>\n    <rpm:header-range start=\"{}\" end=\"{}\"/>\n",
        escape(name.as_str()),
        escape(arch.as_str()),
        escape(version.as_str()),
        escape(release.as_str()),
        text(metadata.get_summary()),
        text(metadata.get_description()),
        text(metadata.get_packager()),
        text(metadata.get_url()),
        metadata.get_build_time().unwrap_or(0),
        metadata.get_installed_size().unwrap_or(0),
        escape(location.as_str()),
        text(metadata.get_license()),
        text(metadata.get_vendor()),
        text(metadata.get_group()),
        text(metadata.get_build_host()),
        text(metadata.get_source_rpm()),
        offsets.header,
        offsets.payload,
    );
    let file_paths: Vec<String> = files
        .iter()
        .map(|file| file.path.display().to_string())
        .collect();
    let sections: [(&str, Vec<rpm::Dependency>); 8] = [
        ("provides", metadata.get_provides().unwrap_or_default()),
        ("requires", requires(metadata, &file_paths)),
        ("conflicts", metadata.get_conflicts().unwrap_or_default()),
        ("obsoletes", metadata.get_obsoletes().unwrap_or_default()),
        ("suggests", metadata.get_suggests().unwrap_or_default()),
        ("enhances", metadata.get_enhances().unwrap_or_default()),
        ("recommends", metadata.get_recommends().unwrap_or_default()),
        (
            "supplements",
            metadata.get_supplements().unwrap_or_default(),
        ),
    ];
    for (section, deps) in sections {
        if deps.is_empty() {
            continue;
        }
        let _ = writeln!(primary, "    <rpm:{section}>");
        for dep in &deps {
            primary.push_str("      ");
            primary.push_str(&dep_entry(dep, section == "requires"));
            primary.push('\n');
        }
        let _ = writeln!(primary, "    </rpm:{section}>");
    }
    let mut filelists = format!(
        "<package pkgid=\"{hex}\" name=\"{}\" arch=\"{}\">\n  <version epoch=\"{epoch_tag}\" ver=\"{}\" rel=\"{}\"/>\n",
        escape(name.as_str()),
        escape(arch.as_str()),
        escape(version.as_str()),
        escape(release.as_str()),
    );
    for file in &files {
        let path = file.path.display().to_string();
        let kind = if file.flags.contains(rpm::FileFlags::GHOST) {
            " type=\"ghost\""
        } else if matches!(file.mode, FileMode::Dir { .. }) {
            " type=\"dir\""
        } else {
            ""
        };
        let line = format!("<file{kind}>{}</file>", escape(path.as_str()));
        if is_primary_file(&path) {
            let _ = writeln!(primary, "    {line}");
        }
        let _ = writeln!(filelists, "  {line}");
    }
    primary.push_str("  </format>\n</package>");
    filelists.push_str("</package>");
    let nevra = if epoch_tag == 0 {
        format!("{name}-{version}-{release}.{arch}")
    } else {
        format!("{name}-{epoch_tag}:{version}-{release}.{arch}")
    };
    Ok(BuiltEntry {
        location,
        nevra,
        name,
        arch,
        primary: primary.into_bytes(),
        filelists: filelists.into_bytes(),
    })
}

/// The requirements createrepo_c lists: no `rpmlib(…)` ones, none on a file the package
/// itself holds, each once.
fn requires(metadata: &rpm::PackageMetadata, files: &[String]) -> Vec<rpm::Dependency> {
    let mut seen = std::collections::HashSet::new();
    metadata
        .get_requires()
        .unwrap_or_default()
        .into_iter()
        .filter(|dep| {
            !dep.name.starts_with("rpmlib(")
                && !dep.flags.contains(DependencyFlags::RPMLIB)
                && !files.contains(&dep.name)
                && seen.insert((
                    dep.name.clone(),
                    dep.flags.bits() & 0xf,
                    dep.version.clone(),
                ))
        })
        .collect()
}

/// `<rpm:entry name=… flags=… epoch=… ver=… rel=…/>`, as createrepo_c writes it.
fn dep_entry(dep: &rpm::Dependency, is_requires: bool) -> String {
    let mut entry = format!("<rpm:entry name=\"{}\"", escape(dep.name.as_str()));
    let sense =
        dep.flags & (DependencyFlags::LESS | DependencyFlags::GREATER | DependencyFlags::EQUAL);
    let flags = match (
        sense.contains(DependencyFlags::LESS),
        sense.contains(DependencyFlags::GREATER),
        sense.contains(DependencyFlags::EQUAL),
    ) {
        (true, false, true) => Some("LE"),
        (true, false, false) => Some("LT"),
        (false, true, true) => Some("GE"),
        (false, true, false) => Some("GT"),
        (false, false, true) => Some("EQ"),
        _ => None,
    };
    if let (Some(flags), false) = (flags, dep.version.is_empty()) {
        let (epoch, rest) = match dep.version.split_once(':') {
            Some((epoch, rest)) if epoch.chars().all(|c| c.is_ascii_digit()) => (epoch, rest),
            _ => ("0", dep.version.as_str()),
        };
        let (ver, rel) = match rest.rsplit_once('-') {
            Some((ver, rel)) => (ver, Some(rel)),
            None => (rest, None),
        };
        let _ = write!(
            entry,
            " flags=\"{flags}\" epoch=\"{epoch}\" ver=\"{}\"",
            escape(ver)
        );
        if let Some(rel) = rel {
            let _ = write!(entry, " rel=\"{}\"", escape(rel));
        }
    }
    let pre = DependencyFlags::PREREQ
        | DependencyFlags::SCRIPT_PRE
        | DependencyFlags::SCRIPT_POST
        | DependencyFlags::PRETRANS
        | DependencyFlags::POSTTRANS;
    if is_requires && dep.flags.intersects(pre) {
        entry.push_str(" pre=\"1\"");
    }
    entry.push_str("/>");
    entry
}

/// The files createrepo_c puts in primary.xml as well as filelists.xml.
fn is_primary_file(path: &str) -> bool {
    path.starts_with("/etc/") || path.contains("bin/") || path == "/usr/lib/sendmail"
}

#[cfg(test)]
mod tests {
    use super::{dep_entry, is_primary_file};
    use rpm::{Dependency, DependencyFlags};

    fn dep(name: &str, flags: DependencyFlags, version: &str) -> Dependency {
        Dependency {
            name: name.to_owned(),
            flags,
            version: version.to_owned(),
        }
    }

    #[test]
    fn entries_spell_flags_epochs_and_releases_as_createrepo_c() {
        assert_eq!(
            dep_entry(&dep("sos", DependencyFlags::GE, "4.0"), true),
            r#"<rpm:entry name="sos" flags="GE" epoch="0" ver="4.0"/>"#
        );
        assert_eq!(
            dep_entry(&dep("runc", DependencyFlags::LESS, "1:1.1.3-2.el8"), false),
            r#"<rpm:entry name="runc" flags="LT" epoch="1" ver="1.1.3" rel="2.el8"/>"#
        );
        assert_eq!(
            dep_entry(
                &dep(
                    "/bin/sh",
                    DependencyFlags::ANY | DependencyFlags::SCRIPT_PRE,
                    ""
                ),
                true
            ),
            r#"<rpm:entry name="/bin/sh" pre="1"/>"#
        );
        assert_eq!(
            dep_entry(&dep("a&b", DependencyFlags::ANY, ""), true),
            r#"<rpm:entry name="a&amp;b"/>"#
        );
    }

    #[test]
    fn primary_lists_etc_bin_and_sendmail_files() {
        assert!(is_primary_file("/etc/tool.conf"));
        assert!(is_primary_file("/usr/sbin/tool"));
        assert!(is_primary_file("/usr/lib/sendmail"));
        assert!(!is_primary_file("/usr/share/tool/data"));
    }
}
