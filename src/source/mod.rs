//! Where images come from. This layer turns an image reference into exact manifest bytes
//! and a list of blobs ([`ResolvedImage`]), and streams those blobs into the
//! [`Store`](crate::store::Store), verified.
//!
//! - [`registry`]: OCI registries over `reqwest`: the token handshake, bounded manifest
//!   requests and streamed, resumable blob requests; mirrors, credentials, retries,
//!   per-registry limits.
//! - [`manifest`]: parsing and validating manifests and indexes (reused by the layout).
//! - [`auth`]: credentials (files, helpers, `--creds`) and the [`auth::Secret`] type.
//! - [`tls`]: per-host TLS trust (`certs.d`, `--cert-dir`, unverified hosts), and which
//!   connection failures no retry can fix.
//! - [`registries_conf`]: containers' `registries.conf` (mirrors, rewrites, blocked and
//!   insecure registries).
//! - [`local`]: images without a registry: `oci-archive:`, `oci:`, `docker-archive:` files and
//!   `daemon:` exports from a Docker or Podman socket, repacked deterministically.
//!
//! It knows OCI, and nothing about the ISO: which images a recipe wants, and what happens
//! to them after they are in the cache, are the plan's and the layout's business.

pub mod auth;
pub mod local;
pub mod manifest;
pub mod registries_conf;
pub mod registry;
pub mod retry;
pub mod tls;
mod token;

use std::fmt;

pub use manifest::{Descriptor, ManifestError};
pub use registry::{RegistryClient, RegistryClientBuilder};

use crate::recipe::Platform;
use crate::reference::{Digest, ImageRef};
use crate::store::StoreError;

/// An image resolved to one platform's manifest, whose bytes are in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference as asked for (before any mirror rewrite).
    pub reference: ImageRef,
    /// The index (or manifest list) the reference pointed to, when it was one.
    pub index_digest: Option<Digest>,
    /// The chosen platform's manifest.
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// The manifest's exact bytes (they hash to `manifest_digest`).
    pub manifest: Vec<u8>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// The host that served the manifest when it is not the reference's own registry (a
    /// mirror, or a registries.conf `location`); `None` when it is, or when it came from
    /// the cache.
    pub served_by: Option<String>,
}

impl ResolvedImage {
    /// The config and the layers: every blob the image needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// What the reference itself points to: the index when there is one, else the manifest
    /// (the digest a recipe pins and a lock file records).
    pub fn digest(&self) -> &Digest {
        self.index_digest.as_ref().unwrap_or(&self.manifest_digest)
    }
}

/// The registry an error came from: the host actually contacted, and the registry it
/// stands in for when it is a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub host: String,
    pub mirror_of: Option<String>,
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.host)?;
        if let Some(original) = &self.mirror_of {
            write!(f, " (mirror of `{original}`)")?;
        }
        Ok(())
    }
}

/// ` (blob sha256:…)` when there is a blob, for messages.
struct BlobSuffix<'a>(&'a Option<Digest>);

impl fmt::Display for BlobSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(digest) => write!(f, ", blob `{digest}`"),
            None => Ok(()),
        }
    }
}

/// Why an image or blob could not be had. Every variant names the image and the registry
/// contacted, and the blob when one was involved; none ever holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "cannot reach registry {registry} for `{image}`{}, after {attempts} attempt(s)",
        BlobSuffix(blob)
    )]
    Unreachable {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        blob: Option<Digest>,
        attempts: u32,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "registry {registry} answered HTTP {status} for `{image}`{}, after {attempts} attempt(s){}",
        BlobSuffix(blob),
        message_suffix(message)
    )]
    Status {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        blob: Option<Digest>,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("registry {registry} refused access to `{image}`{} (unauthorized){}", BlobSuffix(blob), match credentials { Some(origin) => format!("; the credentials from {origin} were rejected"), None => "; no credentials are configured for it (docker login / podman login, --authfile, --creds or ISOBUILD_CREDS)".to_owned() })]
    Unauthorized {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        blob: Option<Digest>,
        /// Where the rejected credentials came from (`None`: there were none).
        credentials: Option<String>,
    },
    /// A connection failure no retry can fix; `hint` says what to do.
    #[error(
        "cannot reach registry {registry} for `{image}`{}: {hint}",
        BlobSuffix(blob)
    )]
    Refused {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        blob: Option<Digest>,
        hint: String,
    },
    #[error("`{image}` is blocked: registries.conf `{}` marks prefix `{prefix}` as `blocked = true`", file.display())]
    Blocked {
        image: Box<ImageRef>,
        prefix: String,
        file: std::path::PathBuf,
    },
    #[error("cannot set up TLS for registry {registry} (for `{image}`)")]
    Tls {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        #[source]
        source: tls::TlsError,
    },
    #[error("registry {registry} has no {} for `{image}`", blob.as_ref().map_or_else(|| "manifest".to_owned(), |blob| format!("blob `{blob}`")))]
    NotFound {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        blob: Option<Digest>,
    },
    #[error(
        "registry {registry} sent a manifest for `{image}` whose digest is `{actual}`, expected `{expected}`"
    )]
    ManifestDigestMismatch {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "registry {registry} sent the wrong bytes for `{image}`, blob `{blob}`, after {attempts} attempt(s); nothing was stored"
    )]
    BlobMismatch {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        blob: Digest,
        attempts: u32,
        #[source]
        source: StoreError,
    },
    #[error("manifest `{digest}` of `{image}` from registry {registry} cannot be used")]
    InvalidManifest {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        digest: Digest,
        #[source]
        source: ManifestError,
    },
    #[error(
        "`{image}` from registry {registry} has no image for platform `{wanted}`; it has: {}",
        list_platforms(available)
    )]
    PlatformNotFound {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        wanted: Platform,
        available: Vec<String>,
    },
    #[error(
        "`{image}`{} is not in the cache, and `--offline` forbids asking registry {registry}",
        BlobSuffix(blob)
    )]
    NotCached {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        blob: Option<Digest>,
    },
    #[error(
        "cannot use the cache for `{image}` from registry {registry}{}",
        BlobSuffix(blob)
    )]
    Store {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        blob: Option<Digest>,
        #[source]
        source: StoreError,
    },
    #[error("cannot get credentials for registry {registry} (for `{image}`)")]
    Credentials {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        #[source]
        source: auth::AuthError,
    },
    #[error(
        "registry {registry} broke the protocol for `{image}`{}: {message}",
        BlobSuffix(blob)
    )]
    Protocol {
        image: Box<ImageRef>,
        registry: Box<Registry>,
        blob: Option<Digest>,
        message: String,
    },
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl SourceError {
    /// The image the error is about.
    pub fn image(&self) -> &ImageRef {
        match self {
            Self::Unreachable { image, .. }
            | Self::Status { image, .. }
            | Self::Unauthorized { image, .. }
            | Self::Refused { image, .. }
            | Self::Blocked { image, .. }
            | Self::Tls { image, .. }
            | Self::NotFound { image, .. }
            | Self::ManifestDigestMismatch { image, .. }
            | Self::BlobMismatch { image, .. }
            | Self::InvalidManifest { image, .. }
            | Self::PlatformNotFound { image, .. }
            | Self::NotCached { image, .. }
            | Self::Store { image, .. }
            | Self::Credentials { image, .. }
            | Self::Protocol { image, .. } => image,
        }
    }
}

/// A client configuration that cannot work, found before any image is asked for.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("mirror `{registry}={mirror}` is invalid: the mirror must be `HOST[:PORT][/PREFIX]`")]
    InvalidMirror { registry: String, mirror: String },
    #[error("cannot set up the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// The platforms an index offers, for a message: the first few, then how many more (a hostile
/// index can list thousands, which would make a 100 KB line).
fn list_platforms(available: &[String]) -> String {
    const SHOWN: usize = 12;
    match available.len() {
        0 => "none".to_owned(),
        n if n <= SHOWN => available.join(", "),
        n => format!("{} and {} more", available[..SHOWN].join(", "), n - SHOWN),
    }
}

#[cfg(test)]
mod platform_list_tests {
    #[test]
    fn a_long_platform_list_is_cut() {
        let many: Vec<String> = (0..10_000).map(|i| format!("linux/arch{i}")).collect();
        let text = super::list_platforms(&many);
        assert!(text.ends_with("and 9988 more"), "{text}");
        assert!(text.len() < 300);
        assert_eq!(super::list_platforms(&[]), "none");
    }
}
