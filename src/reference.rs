//! Domain values that must never travel as bare strings: [`Digest`], [`ImageRef`] and
//! [`ImageSource`]. Each validates when parsed and prints back in its canonical form.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A `sha256:<64 lowercase hex>` content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            hex: hex::encode(sha2::Sha256::digest(bytes)),
        }
    }

    /// From a finished hasher.
    pub fn from_hasher(hasher: sha2::Sha256) -> Self {
        Self {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The digest of a file's content, streamed.
    pub fn of_file(path: &std::path::Path) -> std::io::Result<Self> {
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut fs_err::File::open(path)?, &mut hasher)
            .map_err(|e| crate::fs::with_path(&e, "read", path))?;
        Ok(Self::from_hasher(hasher))
    }

    /// From 64 lowercase hex characters without the algorithm prefix.
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self {
                hex: hex.to_owned(),
            })
        } else {
            Err(DigestError(hex.to_owned()))
        }
    }

    /// The 64 hex characters, as blob files are named in skopeo's `dir:` layout.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

/// A string that is not a `sha256:<64 hex>` digest.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)")]
pub struct DigestError(String);

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.strip_prefix("sha256:") {
            Some(hex) => Self::from_hex(hex).map_err(|_| DigestError(text.to_owned())),
            None => Err(DigestError(text.to_owned())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A registry image reference, normalised as docker does: `alpine` is
/// `docker.io/library/alpine:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Registry host with optional port (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/alpine`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// An image reference that cannot be parsed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{reference}` is not a valid image reference: {reason}")]
pub struct ReferenceError {
    reference: String,
    reason: String,
}

impl ImageRef {
    /// The tag, or `latest` when the reference has neither tag nor digest.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// `registry/repository`, without tag or digest.
    pub fn repository_url(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| ReferenceError {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.contains("://") {
            return Err(fail("a scheme is not allowed here"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(
                    digest
                        .parse::<Digest>()
                        .map_err(|error| fail(&error.to_string()))?,
                ),
            ),
            None => (text, None),
        };
        // A tag is after the last `:` that comes after the last `/`.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_owned()),
            ),
            None => (rest, None),
        };
        if let Some(tag) = &tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !tag.starts_with(['.', '-']);
            if !valid {
                return Err(fail(&format!("`{tag}` is not a valid tag")));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" {
            "docker.io".to_owned()
        } else {
            registry
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        };
        if repository.is_empty() || !repository.split('/').all(component_ok) {
            return Err(fail(
                "the repository must be lowercase letters, digits and `._-` separated by `/`",
            ));
        }
        if registry.is_empty()
            || !registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(fail(&format!("`{registry}` is not a valid registry host")));
        }
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Where an image comes from, as written in the recipe's `ref:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageSource {
    /// `docker://REF` or a bare reference: an OCI registry.
    Registry(ImageRef),
    /// `oci-archive:PATH`: a tar of an OCI layout.
    OciArchive(PathBuf),
    /// `oci:DIR[:TAG]`: an OCI layout directory.
    OciLayout { dir: PathBuf, tag: Option<String> },
    /// `docker-archive:PATH`: as `docker save` writes it.
    DockerArchive(PathBuf),
    /// `daemon:NAME[:TAG]`: exported from a Docker or Podman socket.
    Daemon(String),
}

impl ImageSource {
    /// Parse a recipe `ref:`; relative paths stay relative (the recipe resolves them).
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        let non_empty = |rest: &str, what: &str| {
            if rest.is_empty() {
                Err(fail(&format!("{what} is missing")))
            } else {
                Ok(rest.to_owned())
            }
        };
        if let Some(rest) = text.strip_prefix("docker://") {
            return rest.parse().map(Self::Registry);
        }
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            return Ok(Self::OciArchive(
                non_empty(rest, "the archive path")?.into(),
            ));
        }
        if let Some(rest) = text.strip_prefix("docker-archive:") {
            return Ok(Self::DockerArchive(
                non_empty(rest, "the archive path")?.into(),
            ));
        }
        if let Some(rest) = text.strip_prefix("oci:") {
            let rest = non_empty(rest, "the layout directory")?;
            return Ok(match rest.rsplit_once(':') {
                Some((dir, tag)) if !dir.is_empty() && !tag.contains('/') => Self::OciLayout {
                    dir: dir.into(),
                    tag: Some(tag.to_owned()),
                },
                _ => Self::OciLayout {
                    dir: rest.into(),
                    tag: None,
                },
            });
        }
        if let Some(rest) = text.strip_prefix("daemon:") {
            return Ok(Self::Daemon(non_empty(rest, "the image name")?));
        }
        if let Some((scheme, _)) = text.split_once(':')
            && !scheme.contains(['/', '.'])
            && text.split_once("://").is_some()
        {
            return Err(fail(&format!("unknown transport `{scheme}`")));
        }
        text.parse().map(Self::Registry)
    }

    /// The tag this source implies, used when the recipe gives none.
    pub fn implied_tag(&self) -> Option<&str> {
        match self {
            Self::Registry(reference) => reference.tag.as_deref(),
            Self::OciLayout { tag, .. } => tag.as_deref(),
            Self::Daemon(name) => {
                let last_slash = name.rfind('/').map_or(0, |i| i + 1);
                name[last_slash..]
                    .rfind(':')
                    .map(|i| &name[last_slash + i + 1..])
            }
            Self::OciArchive(_) | Self::DockerArchive(_) => None,
        }
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(reference) => write!(f, "docker://{reference}"),
            Self::OciArchive(path) => write!(f, "oci-archive:{}", path.display()),
            Self::OciLayout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            Self::OciLayout {
                dir,
                tag: Some(tag),
            } => write!(f, "oci:{}:{tag}", dir.display()),
            Self::DockerArchive(path) => write!(f, "docker-archive:{}", path.display()),
            Self::Daemon(name) => write!(f, "daemon:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_references_are_normalised() {
        let reference: ImageRef = "alpine".parse().unwrap();
        assert_eq!(reference.to_string(), "docker.io/library/alpine");
        assert_eq!(reference.tag_or_latest(), "latest");
        let reference: ImageRef = "calico/cni:v3.28.1".parse().unwrap();
        assert_eq!(reference.to_string(), "docker.io/calico/cni:v3.28.1");
    }

    #[test]
    fn registry_with_port_and_digest() {
        let text = format!(
            "127.0.0.1:5000/registry.k8s.io/pause:3.9@sha256:{}",
            "a".repeat(64)
        );
        let reference: ImageRef = text.parse().unwrap();
        assert_eq!(reference.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository, "registry.k8s.io/pause");
        assert_eq!(reference.tag.as_deref(), Some("3.9"));
        assert_eq!(reference.to_string(), text);
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine@sha256:12",
            "a//b",
            "alpine:-x",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn sources_by_transport() {
        assert_eq!(
            ImageSource::parse("oci:build/layout:v1").unwrap(),
            ImageSource::OciLayout {
                dir: "build/layout".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageSource::parse("daemon:metalk8s-ui:129.0")
                .unwrap()
                .implied_tag(),
            Some("129.0")
        );
        assert!(ImageSource::parse("ftp://x/y").is_err());
    }

    #[test]
    fn digests_validate() {
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(
            format!("sha256:{}", "A".repeat(64))
                .parse::<Digest>()
                .is_err()
        );
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
