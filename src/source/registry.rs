//! The OCI registry client: resolves a reference to exact manifest bytes and streams blobs
//! into the store, through mirrors, with credentials, retries and a bound on connections
//! per registry.
//!
//! # How requests are made
//!
//! - The auth handshake (the `/v2/` challenge, then a bearer token, or basic auth) is done
//!   here (`RegistryClient::exchange_token`), with a bound on the token server's answer, a
//!   deadline, and the plain-HTTP rule applied to the token server too. (`oci-client`'s
//!   reads the answer whole, however large, and follows an `http://` realm anywhere.)
//! - Manifests and blobs are plain `GET`s on one `reqwest` stack with the handshake's
//!   token. A manifest is read up to 4 MiB, its bytes kept exact and
//!   checked against `Docker-Content-Digest` and the digest asked for. A blob is written
//!   chunk by chunk into a [`BlobWriter`]: memory stays flat whatever the layer size, a
//!   `206` is checked against the `Range` asked for, and a body longer than the manifest
//!   says is cut at the first extra byte.
//! - Redirects (most registries send blobs to object storage) are followed by reqwest,
//!   which drops `Authorization` when the scheme, host or port changes, so registry
//!   credentials never reach the storage host. `tests/it/pull.rs` and `tests/it/faults.rs`
//!   check it.
//!
//! # Retries
//!
//! Connection errors, timeouts (no byte for the read timeout), `408`, `429` and `5xx` are
//! retried up to [`RetryPolicy::attempts`] times with exponential backoff and jitter; `429`
//! and `503` wait as long as `Retry-After` says. A blob cut short resumes from what reached
//! the disk with a `Range` request; the whole blob is verified at the end either way. Wrong
//! bytes and a rejected token are retried once. Then the error names image, registry and
//! blob.
//!
//! What no retry can fix fails at once, with a one-line hint ([`super::tls::classify`]):
//! a certificate from an unknown CA or otherwise invalid, a missing client certificate,
//! HTTPS spoken to a plain-HTTP registry, a host name that does not resolve; and `401`,
//! `403`, `404`.
//!
//! # Mirrors, registries.conf, TLS and plain HTTP
//!
//! A mirror rewrites a registry host to another host and a path prefix, as containers'
//! `registries.conf` does: with `docker.io=127.0.0.1:5000/docker.io`,
//! `docker.io/library/alpine` is fetched as repository `docker.io/library/alpine` from
//! `127.0.0.1:5000`. Caching is by the original reference, so a mirror never changes what
//! is cached. A `--mirror` (or the recipe's `mirrors:`) is the only place asked for its
//! registry; otherwise registries.conf's mirrors are tried in order, then its location
//! (or the registry itself), moving on when one cannot be reached, refuses, or lacks the
//! image. The blobs of an image come from the endpoint that served its manifest.
//!
//! Only hosts listed as insecure are spoken to over plain HTTP. A registries.conf entry
//! with `insecure = true` is spoken to over HTTPS without verification, or over plain
//! HTTP when its answer to HTTPS shows it speaks only that (containers/image allows both
//! too). Each host with TLS settings of its own (a `certs.d` folder, `--cert-dir`,
//! `--insecure-skip-tls-verify`) gets its own `reqwest` client; a token server on another
//! host gets that host's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use reqwest::header;
use tokio::sync::{OnceCell, Semaphore};

use super::auth::{AuthFiles, Credential, Origin, Secret};
use super::manifest::{self, Manifest, media_type};
use super::registries_conf::{RegistriesConf, Route};
use super::retry::{RetryPolicy, parse_retry_after};
use super::tls::{Deterministic, TlsSettings, classify};
use super::token::{Challenge, parse_challenge, token_from_json};
use super::{ClientSetupError, Descriptor, Registry, ResolvedImage, SourceError};
use crate::recipe::Platform;
use crate::reference::{Digest, ImageRef};
use crate::report::Reporter;
use crate::store::{BlobWriter, Store, StoreError, TagRecord};

const USER_AGENT: &str = concat!("isobuild/", env!("CARGO_PKG_VERSION"));
/// The largest manifest or index accepted: what distribution and containerd accept too. A
/// real index of dozens of platforms is a few tens of KiB.
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
/// How much of an error response's body is read, for the message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// The largest token-server answer read: a token is a few KiB (a JWT with many claims a few
/// tens), so a body past this is hostile.
const TOKEN_BODY_LIMIT: usize = 256 * 1024;
/// A blob token is reused this long. Registries issue them for 60 s or more; the margin
/// covers clock skew, and a token only has to be valid when a request starts.
const TOKEN_TTL: Duration = Duration::from_secs(45);

/// Configures a [`RegistryClient`].
#[derive(Debug, Clone)]
pub struct RegistryClientBuilder {
    mirrors: BTreeMap<String, String>,
    insecure_hosts: Vec<String>,
    per_registry_connections: usize,
    offline: bool,
    auth: AuthFiles,
    retry: RetryPolicy,
    connect_timeout: Duration,
    read_timeout: Duration,
    tls: TlsSettings,
    conf: RegistriesConf,
}

impl Default for RegistryClientBuilder {
    fn default() -> Self {
        Self {
            mirrors: BTreeMap::new(),
            insecure_hosts: Vec::new(),
            per_registry_connections: 8,
            offline: false,
            auth: AuthFiles::none(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            tls: TlsSettings::default(),
            conf: RegistriesConf::default(),
        }
    }
}

impl RegistryClientBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registry host → `HOST[:PORT][/PREFIX]` rewrites (`docker.io` → `127.0.0.1:5000/docker.io`).
    #[must_use]
    pub fn mirrors(mut self, mirrors: BTreeMap<String, String>) -> Self {
        self.mirrors = mirrors;
        self
    }

    /// Hosts (`HOST` or `HOST:PORT`) spoken to over plain HTTP; a bare `HOST` covers every
    /// port. Everything else is HTTPS with verified certificates.
    #[must_use]
    pub fn insecure_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.insecure_hosts = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// CA files, client certificates and unverified hosts (default: the system store only).
    #[must_use]
    pub fn tls(mut self, tls: TlsSettings) -> Self {
        self.tls = tls;
        self
    }

    /// containers' `registries.conf`: rewrites, mirrors, insecure and blocked registries.
    /// Mirrors given with [`Self::mirrors`] win over it.
    #[must_use]
    pub fn registries_conf(mut self, conf: RegistriesConf) -> Self {
        self.conf = conf;
        self
    }

    /// At most this many requests in flight to one registry host (default 8).
    #[must_use]
    pub fn per_registry_connections(mut self, connections: usize) -> Self {
        self.per_registry_connections = connections.max(1);
        self
    }

    /// Never open a connection: resolve from the tag index and fail on what is missing.
    #[must_use]
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Where credentials come from (default: none, anonymous access).
    #[must_use]
    pub fn auth(mut self, auth: AuthFiles) -> Self {
        self.auth = auth;
        self
    }

    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Connect timeout, and the longest wait for any read (not for a whole download).
    #[must_use]
    pub fn timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    pub fn build(self) -> Result<RegistryClient, ClientSetupError> {
        let mut mirrors = BTreeMap::new();
        for (registry, target) in &self.mirrors {
            let mirror = Mirror::parse(target).ok_or_else(|| ClientSetupError::InvalidMirror {
                registry: registry.clone(),
                mirror: target.clone(),
            })?;
            mirrors.insert(canonical_registry(registry).to_owned(), mirror);
        }
        // One client now, so that a setup problem shows before any image is asked for.
        let http = base_client(self.connect_timeout, self.read_timeout)
            .build()
            .map_err(ClientSetupError::Http)?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                mirrors,
                insecure_hosts: self.insecure_hosts,
                connections: self.per_registry_connections,
                offline: self.offline,
                auth: self.auth,
                retry: self.retry,
                connect_timeout: self.connect_timeout,
                read_timeout: self.read_timeout,
                http,
                tls: self.tls,
                conf: self.conf,
                clients: Mutex::default(),
                hosts: Mutex::default(),
                access: Mutex::default(),
                served: Mutex::default(),
            }),
        })
    }
}

/// Resolves images and fetches blobs from OCI registries. Cheap to clone; clones share
/// connections, tokens and per-registry limits.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mirrors: BTreeMap<String, Mirror>,
    insecure_hosts: Vec<String>,
    connections: usize,
    offline: bool,
    auth: AuthFiles,
    retry: RetryPolicy,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// The client of hosts with no TLS settings of their own; pooled connections are
    /// shared by every such registry.
    http: reqwest::Client,
    tls: TlsSettings,
    conf: RegistriesConf,
    /// Per host with its own TLS settings (CAs, client certificate, no verification): a
    /// client built for it, also used for its token server when that is the same host.
    clients: Mutex<HashMap<String, reqwest::Client>>,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    /// Per host and repository, since credentials may be scoped to a repository.
    access: Mutex<HashMap<(String, String), AccessCell>>,
    /// The endpoint that served each image resolved over the network, so that its blobs
    /// come from the same place.
    served: Mutex<HashMap<String, Endpoint>>,
}

/// The `reqwest` settings every client shares.
fn base_client(connect: Duration, read: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect)
        .read_timeout(read)
}

/// An [`Access`], created by the first task that needs it.
type AccessCell = Arc<OnceCell<Arc<Access>>>;

/// A mirror target: a host and an optional repository prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mirror {
    host: String,
    prefix: Option<String>,
}

impl Mirror {
    fn parse(target: &str) -> Option<Self> {
        let target = target.trim_end_matches('/');
        if target.contains("://") {
            return None;
        }
        let (host, prefix) = match target.split_once('/') {
            Some((host, prefix)) => (host, Some(prefix.trim_matches('/').to_owned())),
            None => (target, None),
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        valid_host.then(|| Self {
            host: host.to_owned(),
            prefix: prefix.filter(|prefix| !prefix.is_empty()),
        })
    }
}

/// Docker Hub's other names, so a mirror for any of them applies to `docker.io` references.
fn canonical_registry(registry: &str) -> &str {
    match registry {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// Where an image is actually fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    registry: Registry,
    repository: String,
    /// Plain HTTP (`--insecure-registry`).
    insecure: bool,
    /// registries.conf's `insecure = true`: HTTPS without verification, or plain HTTP when
    /// the registry speaks only that.
    probe: bool,
}

/// One registry host: its connection limit.
#[derive(Debug)]
struct Host {
    permits: Semaphore,
}

/// What talking to one repository on one host needs: its credential and the token used for
/// its requests.
struct Access {
    host: Arc<Host>,
    endpoint: Endpoint,
    credential: Credential,
    origin: Option<Origin>,
    /// The client for the endpoint's host (its TLS settings).
    client: reqwest::Client,
    /// Whether requests go over plain HTTP.
    plain_http: bool,
    token: tokio::sync::Mutex<Option<(BlobAuth, Instant)>>,
}

impl Access {
    fn scheme(&self) -> &'static str {
        if self.plain_http { "http" } else { "https" }
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("endpoint", &self.endpoint)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// Why one try of a request failed; [`Attempts`] decides whether to try again, and
/// [`Failure::into_error`] names image, registry and blob when giving up.
#[derive(Debug)]
enum Failure {
    Transport(Box<dyn std::error::Error + Send + Sync>),
    /// A transport error no retry can fix (TLS trust, plain HTTP, a name that does not
    /// resolve).
    Refused(Deterministic, Box<dyn std::error::Error + Send + Sync>),
    Status {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    Unauthorized,
    NotFound,
    /// The bytes did not match the digest (or the size).
    BlobMismatch(StoreError),
    ManifestMismatch {
        expected: Digest,
        actual: Digest,
    },
    Protocol(String),
    Store(StoreError),
}

impl Failure {
    /// A few words for a retry line (the full error comes only when giving up).
    fn brief(&self) -> String {
        match self {
            Self::Transport(error) => crate::engine::render_chain(&**error),
            Self::Status { status, .. } => format!("HTTP {status}"),
            Self::BlobMismatch(_) => "the bytes did not match the digest".to_owned(),
            _ => "the registry's answer was not usable".to_owned(),
        }
    }

    fn into_error(
        self,
        image: &ImageRef,
        endpoint: &Endpoint,
        blob: Option<&Digest>,
        attempts: u32,
        origin: Option<&Origin>,
    ) -> SourceError {
        let image = Box::new(image.clone());
        let registry = Box::new(endpoint.registry.clone());
        let blob = blob.cloned();
        match self {
            Self::Transport(source) => SourceError::Unreachable {
                image,
                registry,
                blob,
                attempts,
                source,
            },
            Self::Refused(kind, source) => {
                tracing::debug!(cause = crate::engine::render_chain(&*source), "not retried");
                SourceError::Refused {
                    image,
                    blob,
                    hint: kind.hint(&registry.host),
                    registry,
                }
            }
            Self::Status {
                status, message, ..
            } => SourceError::Status {
                image,
                registry,
                blob,
                status,
                attempts,
                message,
            },
            Self::Unauthorized => SourceError::Unauthorized {
                image,
                registry,
                blob,
                credentials: origin.map(ToString::to_string),
            },
            Self::NotFound => SourceError::NotFound {
                image,
                registry,
                blob,
            },
            Self::BlobMismatch(source) => match blob {
                Some(blob) => SourceError::BlobMismatch {
                    image,
                    registry,
                    blob,
                    attempts,
                    source,
                },
                None => SourceError::Store {
                    image,
                    registry,
                    blob,
                    source,
                },
            },
            Self::ManifestMismatch { expected, actual } => SourceError::ManifestDigestMismatch {
                image,
                registry,
                expected,
                actual,
            },
            Self::Protocol(message) => SourceError::Protocol {
                image,
                registry,
                blob,
                message,
            },
            Self::Store(source) => SourceError::Store {
                image,
                registry,
                blob,
                source,
            },
        }
    }
}

/// Counts tries of one request and sleeps between them.
struct Attempts<'a> {
    policy: &'a RetryPolicy,
    tries: u32,
    mismatches: u32,
    unauthorized: u32,
}

impl<'a> Attempts<'a> {
    fn new(policy: &'a RetryPolicy) -> Self {
        Self {
            policy,
            tries: 0,
            mismatches: 0,
            unauthorized: 0,
        }
    }

    /// Record a failed try: wait before the next one, or hand the failure back when it is
    /// final.
    async fn failed(&mut self, failure: Failure) -> Result<(), Failure> {
        self.tries += 1;
        let failure = match failure {
            Failure::Transport(error) => match classify(&*error) {
                Some(kind) => Failure::Refused(kind, error),
                None => Failure::Transport(error),
            },
            other => other,
        };
        let (retry, retry_after, immediately) = match &failure {
            Failure::Transport(_) => (true, None, false),
            Failure::Status {
                status,
                retry_after,
                ..
            } => (
                *status == 408 || *status == 429 || (500..600).contains(status),
                *retry_after,
                false,
            ),
            // Wrong bytes may be a glitch on the way; twice is the registry's doing.
            Failure::BlobMismatch(_) | Failure::ManifestMismatch { .. } => {
                self.mismatches += 1;
                (self.mismatches <= 1, None, false)
            }
            // A token may have expired between fetching and using it: once, without delay.
            Failure::Unauthorized => {
                self.unauthorized += 1;
                (self.unauthorized <= 1, None, true)
            }
            Failure::Refused(..) | Failure::NotFound | Failure::Protocol(_) | Failure::Store(_) => {
                (false, None, false)
            }
        };
        if !retry || self.tries >= self.policy.attempts {
            return Err(failure);
        }
        tracing::debug!(
            tries = self.tries,
            ?failure,
            "registry request failed, retrying"
        );
        if !immediately {
            tokio::time::sleep(self.policy.delay(self.tries, retry_after)).await;
        }
        Ok(())
    }
}

impl RegistryClient {
    /// A client with default settings (no mirrors, HTTPS only, anonymous).
    pub fn builder() -> RegistryClientBuilder {
        RegistryClientBuilder::new()
    }

    /// Where `image` can be fetched from, in the order to try: a `--mirror` (or recipe
    /// mirror) alone when there is one, else registries.conf's mirrors and location, else
    /// the reference's own registry.
    fn endpoints(&self, image: &ImageRef) -> Result<Vec<Endpoint>, SourceError> {
        let inner = &self.inner;
        let endpoint = |host: String, repository: String, probe: bool| {
            let mirror_of = (host != image.registry).then(|| image.registry.clone());
            Endpoint {
                insecure: is_insecure(&host, &inner.insecure_hosts),
                registry: Registry { host, mirror_of },
                repository,
                probe,
            }
        };
        if let Some(mirror) = inner.mirrors.get(canonical_registry(&image.registry)) {
            let repository = match &mirror.prefix {
                Some(prefix) => format!("{prefix}/{}", image.repository),
                None => image.repository.clone(),
            };
            return Ok(vec![endpoint(mirror.host.clone(), repository, false)]);
        }
        let registry = canonical_registry(&image.registry);
        match inner
            .conf
            .route(registry, &image.repository, image.digest.is_some())
        {
            Route::Default => Ok(vec![endpoint(
                image.registry.clone(),
                image.repository.clone(),
                false,
            )]),
            Route::Candidates(candidates) => Ok(candidates
                .into_iter()
                .map(|c| endpoint(c.host, c.repository, c.insecure))
                .collect()),
            Route::Blocked { prefix, file } => Err(SourceError::Blocked {
                image: Box::new(image.clone()),
                prefix,
                file,
            }),
        }
    }

    /// The first place to fetch `image` from (the one errors name when nothing is tried).
    #[cfg(test)]
    fn endpoint(&self, image: &ImageRef) -> Endpoint {
        self.endpoints(image).unwrap().remove(0)
    }

    /// The `reqwest` client for `host`: the shared one, or one with the host's own TLS
    /// settings (built once).
    fn client_for(&self, host: &str, probe: bool) -> Result<reqwest::Client, super::tls::TlsError> {
        let key = format!("{host}{}", if probe { " (insecure)" } else { "" });
        let mut clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut tls = self.inner.tls.for_host(host)?;
        if probe {
            tls.skip_verify();
        }
        let client = if tls.is_empty() {
            self.inner.http.clone()
        } else {
            tls.apply(base_client(
                self.inner.connect_timeout,
                self.inner.read_timeout,
            ))
            .build()
            .map_err(|source| super::tls::TlsError::Client {
                host: host.to_owned(),
                source,
            })?
        };
        clients.insert(key, client.clone());
        Ok(client)
    }

    fn host(&self, name: &str) -> Arc<Host> {
        let mut hosts = self
            .inner
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hosts
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Host {
                    permits: Semaphore::new(self.inner.connections),
                })
            })
            .clone()
    }

    /// The access for an endpoint, created once: reading credentials may run a helper.
    async fn access(
        &self,
        image: &ImageRef,
        endpoint: &Endpoint,
    ) -> Result<Arc<Access>, SourceError> {
        let key = (endpoint.registry.host.clone(), endpoint.repository.clone());
        let cell = {
            let mut access = self
                .inner
                .access
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            access.entry(key).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let client = self
                .client_for(&endpoint.registry.host, endpoint.probe)
                .map_err(|source| SourceError::Tls {
                    image: Box::new(image.clone()),
                    registry: Box::new(endpoint.registry.clone()),
                    source,
                })?;
            let plain_http = endpoint.insecure
                || (endpoint.probe && self.speaks_plain_http(&client, endpoint).await);
            let files = self.inner.auth.clone();
            let host = endpoint.registry.host.clone();
            let repository = endpoint.repository.clone();
            let login = tokio::task::spawn_blocking(move || files.login(&host, &repository))
                .await
                .map_err(|e| SourceError::Protocol {
                    image: Box::new(image.clone()),
                    registry: Box::new(endpoint.registry.clone()),
                    blob: None,
                    message: format!("credential lookup did not finish: {e}"),
                })?
                .map_err(|source| SourceError::Credentials {
                    image: Box::new(image.clone()),
                    registry: Box::new(endpoint.registry.clone()),
                    source,
                })?;
            Ok(Arc::new(Access {
                host: self.host(&endpoint.registry.host),
                endpoint: endpoint.clone(),
                credential: login.credential,
                origin: login.origin,
                client,
                plain_http,
                token: tokio::sync::Mutex::new(None),
            }))
        })
        .await
        .cloned()
    }

    /// For registries.conf's `insecure = true`: whether the host answers HTTPS with a plain
    /// HTTP answer (then it is spoken to over HTTP). Any other outcome keeps HTTPS, without
    /// verification; a failure to connect shows on the real request.
    async fn speaks_plain_http(&self, client: &reqwest::Client, endpoint: &Endpoint) -> bool {
        let url = format!("https://{}/v2/", oci_host(&endpoint.registry.host));
        match within(self.request_deadline(), client.get(&url).send()).await {
            Err(Failure::Transport(error)) => classify(&*error) == Some(Deterministic::PlainHttp),
            _ => false,
        }
    }

    /// Resolve `image` to the manifest for `platform` (chosen from an index when the
    /// reference points to one). Index and manifest bytes are put in the store by digest, and
    /// a tag resolved over the network is recorded in the tag index.
    ///
    /// A reference pinned by digest whose manifests are cached needs no network at all;
    /// offline, a tag is resolved from the tag index.
    ///
    /// With mirrors (registries.conf), each is tried in order, then the registry itself: the
    /// first that serves the manifest is used for the image's blobs too, and named in
    /// [`ResolvedImage::served_by`].
    pub async fn resolve(
        &self,
        image: &ImageRef,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, SourceError> {
        let endpoints = self.endpoints(image)?;
        let last = endpoints.len() - 1;
        for (i, endpoint) in endpoints.iter().enumerate() {
            match self.resolve_at(image, endpoint, platform, store).await {
                Ok(resolved) => {
                    self.inner
                        .served
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(image.to_string(), endpoint.clone());
                    return Ok(resolved);
                }
                Err(error) if i < last && falls_back(&error) => {
                    tracing::info!(
                        image = %image,
                        registry = %endpoint.registry,
                        error = crate::engine::render_chain(&error),
                        "trying the next mirror"
                    );
                }
                Err(error) => return Err(error),
            }
        }
        unreachable!("registries.conf always yields a location")
    }

    async fn resolve_at(
        &self,
        image: &ImageRef,
        endpoint: &Endpoint,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, SourceError> {
        let endpoint = endpoint.clone();
        let store_error = |source| SourceError::Store {
            image: Box::new(image.clone()),
            registry: Box::new(endpoint.registry.clone()),
            blob: None,
            source,
        };
        let not_cached = || SourceError::NotCached {
            image: Box::new(image.clone()),
            registry: Box::new(endpoint.registry.clone()),
            blob: None,
        };

        // What the reference points to: by digest when pinned, else by tag.
        // Online, an unreadable record is just replaced; offline it is all there is.
        let previous = match store.lookup_tag(image) {
            Ok(previous) => previous,
            Err(e) if self.inner.offline => return Err(store_error(e)),
            Err(_) => None,
        };
        let (top_digest, top_bytes, from_tag) = if let Some(digest) = &image.digest {
            let bytes = self
                .manifest_by_digest(image, &endpoint, digest, None, store)
                .await?;
            (digest.clone(), bytes, false)
        } else if self.inner.offline {
            let record = previous.as_ref().ok_or_else(not_cached)?;
            let bytes = cached(store, &record.digest, true)
                .map_err(store_error)?
                .ok_or_else(not_cached)?;
            (record.digest.clone(), bytes, false)
        } else {
            let access = self.access(image, &endpoint).await?;
            let (bytes, digest) = self
                .pull_manifest(image, &access, image.tag_or_latest(), None)
                .await?;
            store.put_blob_bytes(&digest, &bytes).map_err(store_error)?;
            (digest, bytes, true)
        };

        let parsed = parse(image, &endpoint, &top_digest, &top_bytes)?;
        let top_media_type = parsed.media_type().to_owned();
        let (index_digest, manifest_digest, manifest_bytes, manifest) = match parsed {
            Manifest::Image(manifest) => (None, top_digest.clone(), top_bytes, manifest),
            Manifest::Index(index) => {
                let entry =
                    index
                        .select(platform)
                        .ok_or_else(|| SourceError::PlatformNotFound {
                            image: Box::new(image.clone()),
                            registry: Box::new(endpoint.registry.clone()),
                            wanted: platform.clone(),
                            available: index.platforms(),
                        })?;
                let digest = entry.descriptor.digest.clone();
                let bytes = self
                    .manifest_by_digest(
                        image,
                        &endpoint,
                        &digest,
                        Some(entry.descriptor.size),
                        store,
                    )
                    .await?;
                match parse(image, &endpoint, &digest, &bytes)? {
                    Manifest::Image(manifest) => {
                        (Some(top_digest.clone()), digest, bytes, manifest)
                    }
                    Manifest::Index(_) => {
                        return Err(SourceError::Protocol {
                            image: Box::new(image.clone()),
                            registry: Box::new(endpoint.registry.clone()),
                            blob: None,
                            message: format!(
                                "index entry `{digest}` for `{platform}` is another index"
                            ),
                        });
                    }
                }
            }
        };

        if from_tag {
            let mut platforms = previous
                .filter(|record| record.digest == top_digest)
                .map(|record| record.platforms)
                .unwrap_or_default();
            if index_digest.is_some() {
                platforms.insert(platform.to_string(), manifest_digest.clone());
            }
            let record = TagRecord {
                reference: format!(
                    "{}/{}:{}",
                    image.registry,
                    image.repository,
                    image.tag_or_latest()
                ),
                digest: top_digest.clone(),
                media_type: top_media_type,
                platforms,
                resolved_at: jiff::Timestamp::now().as_second(),
            };
            store.record_tag(image, &record).map_err(store_error)?;
        }

        Ok(ResolvedImage {
            served_by: (!self.inner.offline && endpoint.registry.mirror_of.is_some())
                .then(|| endpoint.registry.host.clone()),
            reference: image.clone(),
            index_digest,
            manifest_digest,
            manifest_media_type: manifest.media_type,
            manifest: manifest_bytes,
            config: manifest.config,
            layers: manifest.layers,
        })
    }

    /// A manifest or index by digest: from the store when there, else from the registry
    /// (then stored). `size` is the size an index announced for it.
    async fn manifest_by_digest(
        &self,
        image: &ImageRef,
        endpoint: &Endpoint,
        digest: &Digest,
        size: Option<u64>,
        store: &Store,
    ) -> Result<Vec<u8>, SourceError> {
        let store_error = |source| SourceError::Store {
            image: Box::new(image.clone()),
            registry: Box::new(endpoint.registry.clone()),
            blob: None,
            source,
        };
        if let Some(bytes) = cached(store, digest, self.inner.offline).map_err(store_error)? {
            return Ok(bytes);
        }
        if self.inner.offline {
            return Err(SourceError::NotCached {
                image: Box::new(image.clone()),
                registry: Box::new(endpoint.registry.clone()),
                blob: None,
            });
        }
        let access = self.access(image, endpoint).await?;
        let (bytes, actual) = self
            .pull_manifest(image, &access, &digest.to_string(), Some(digest))
            .await?;
        if let Some(size) = size
            && size != bytes.len() as u64
        {
            return Err(SourceError::Protocol {
                image: Box::new(image.clone()),
                registry: Box::new(endpoint.registry.clone()),
                blob: None,
                message: format!(
                    "manifest `{actual}` is {} bytes, its index says {size}",
                    bytes.len()
                ),
            });
        }
        store.put_blob_bytes(&actual, &bytes).map_err(store_error)?;
        Ok(bytes)
    }

    /// One manifest request (by tag or digest), retried; `expected` is checked against the
    /// bytes' digest, and so is the `Docker-Content-Digest` the registry sends.
    async fn pull_manifest(
        &self,
        image: &ImageRef,
        access: &Access,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest), SourceError> {
        let mut attempts = Attempts::new(&self.inner.retry);
        loop {
            let failure = match self.try_manifest(access, reference, expected).await {
                Ok(found) => return Ok(found),
                Err(failure) => failure,
            };
            if let Err(failure) = attempts.failed(failure).await {
                return Err(failure.into_error(
                    image,
                    &access.endpoint,
                    None,
                    attempts.tries,
                    access.origin.as_ref(),
                ));
            }
        }
    }

    /// One `GET` of a manifest. Done here rather than with `oci-client`'s
    /// `pull_manifest_raw`, which reads whatever body the registry sends into memory: a
    /// hostile or broken registry could send gigabytes as a "manifest". Here the body is
    /// refused past [`MANIFEST_LIMIT`], and `Retry-After` is seen as for blobs.
    async fn try_manifest(
        &self,
        access: &Access,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest), Failure> {
        let _permit = access.host.permits.acquire().await.expect("never closed");
        let auth = self.blob_auth(access).await?;
        let url = api_url(access, "manifests", reference);
        let request = auth
            .apply(access.client.get(&url))
            .header(header::ACCEPT, media_type::MANIFESTS.join(", "));
        // One deadline for the whole exchange, headers and body (see `request_deadline`).
        let deadline = tokio::time::Instant::now() + self.request_deadline();
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut response = within(left(), request.send()).await?;
        if response.status() != StatusCode::OK {
            return Err(failed_response(access, response).await);
        }
        if let Some(length) = response.content_length()
            && length > MANIFEST_LIMIT
        {
            return Err(too_large(length));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = within(left(), response.chunk()).await? {
            if (bytes.len() + chunk.len()) as u64 > MANIFEST_LIMIT {
                return Err(too_large((bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        let actual = Digest::of(&bytes);
        let announced = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<Digest>().ok());
        for wanted in [expected, announced.as_ref()].into_iter().flatten() {
            if *wanted != actual {
                return Err(Failure::ManifestMismatch {
                    expected: wanted.clone(),
                    actual,
                });
            }
        }
        Ok((bytes, actual))
    }

    /// Stream `blob` of `image` into the store, verified, and return the bytes downloaded
    /// (0 when it was already there, or another task of this process fetched it meanwhile).
    /// A partial left by an interrupted run is resumed.
    ///
    /// The blob comes from the endpoint that served the image's manifest; for an image
    /// resolved from the cache, from each mirror in turn, then the registry.
    pub async fn fetch_blob(
        &self,
        image: &ImageRef,
        blob: &Descriptor,
        store: &Store,
        reporter: &dyn Reporter,
    ) -> Result<u64, SourceError> {
        if store.has_blob(&blob.digest) {
            tracing::debug!(digest = %blob.digest, "blob in the cache");
            return Ok(0);
        }
        let served = self
            .inner
            .served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&image.to_string())
            .cloned();
        let endpoints = match served {
            Some(endpoint) => vec![endpoint],
            None => self.endpoints(image)?,
        };
        let last = endpoints.len() - 1;
        for (i, endpoint) in endpoints.iter().enumerate() {
            match self
                .fetch_blob_at(image, endpoint, blob, store, reporter)
                .await
            {
                Err(error) if i < last && falls_back(&error) => {
                    tracing::info!(
                        image = %image,
                        registry = %endpoint.registry,
                        error = crate::engine::render_chain(&error),
                        "trying the next mirror"
                    );
                }
                result => return result,
            }
        }
        unreachable!("registries.conf always yields a location")
    }

    async fn fetch_blob_at(
        &self,
        image: &ImageRef,
        endpoint: &Endpoint,
        blob: &Descriptor,
        store: &Store,
        reporter: &dyn Reporter,
    ) -> Result<u64, SourceError> {
        let error = |failure: Failure, tries, origin: Option<&Origin>| {
            failure.into_error(image, endpoint, Some(&blob.digest), tries, origin)
        };
        if self.inner.offline {
            return Err(SourceError::NotCached {
                image: Box::new(image.clone()),
                registry: Box::new(endpoint.registry.clone()),
                blob: Some(blob.digest.clone()),
            });
        }
        // Credentials first: a failure there should not leave an empty partial behind.
        let access = self.access(image, endpoint).await?;
        let origin = access.origin.as_ref();
        let Some(mut writer) = store
            .blob_writer(&blob.digest, Some(blob.size))
            .await
            .map_err(|e| error(Failure::Store(e), 0, origin))?
        else {
            return Ok(0);
        };
        let label = format!("{image} {}", short(&blob.digest));
        let id = reporter.on_download_start(&label, Some(blob.size));
        if writer.offset() > 0 {
            reporter.on_download_resumed(id, writer.offset());
            reporter.on_download_progress(id, writer.offset());
        }
        let mut downloaded = 0;
        let mut attempts = Attempts::new(&self.inner.retry);
        let mut progress = |bytes: u64| {
            downloaded += bytes;
            reporter.on_download_progress(id, bytes);
        };
        let result = loop {
            match self.try_blob(&access, blob, writer, &mut progress).await {
                Ok(()) => break Ok(()),
                Err((failure, returned)) => {
                    let brief = failure.brief();
                    if let Err(failure) = attempts.failed(failure).await {
                        break Err(error(failure, attempts.tries, origin));
                    }
                    // The retry is seen at default verbosity: a slow build says why.
                    reporter.on_download_retry(
                        id,
                        attempts.tries + 1,
                        self.inner.retry.attempts,
                        &brief,
                    );
                    writer = match returned {
                        Some(writer) => writer,
                        // The partial was dropped (wrong bytes): start a new one, unless
                        // another task finished the blob meanwhile.
                        None => match store.blob_writer(&blob.digest, Some(blob.size)).await {
                            Ok(Some(writer)) => writer,
                            Ok(None) => break Ok(()),
                            Err(e) => {
                                break Err(error(Failure::Store(e), attempts.tries, origin));
                            }
                        },
                    };
                    if writer.offset() > 0 {
                        reporter.on_download_resumed(id, writer.offset());
                    }
                }
            }
        };
        reporter.on_download_complete(id);
        result.map(|()| downloaded)
    }

    /// One `GET` of a blob, from `writer`'s offset. On failure, the writer comes back when
    /// what it holds is still good for a resumption.
    async fn try_blob(
        &self,
        access: &Access,
        blob: &Descriptor,
        mut writer: BlobWriter,
        progress: &mut impl FnMut(u64),
    ) -> Result<(), (Failure, Option<BlobWriter>)> {
        let permit = access.host.permits.acquire().await.expect("never closed");
        let offset = writer.offset();
        if offset < blob.size {
            let auth = match self.blob_auth(access).await {
                Ok(auth) => auth,
                Err(failure) => return Err((failure, Some(writer))),
            };
            let url = api_url(access, "blobs", &blob.digest.to_string());
            tracing::debug!(%url, offset, "GET blob");
            let mut request = auth.apply(access.client.get(&url));
            if offset > 0 {
                request = request.header(header::RANGE, format!("bytes={offset}-"));
            }
            let mut response = match request.send().await {
                Ok(response) => response,
                Err(e) => return Err((Failure::Transport(Box::new(e)), Some(writer))),
            };
            match response.status() {
                StatusCode::OK if offset > 0 => {
                    // The server ignored the range and sends everything: take it all.
                    if let Err(e) = writer.restart().await {
                        return Err((Failure::Store(e), None));
                    }
                }
                StatusCode::OK => {}
                StatusCode::PARTIAL_CONTENT if content_range_start(&response) == Some(offset) => {}
                StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE => {
                    // A range we did not ask for, or a partial the server disowns: start over.
                    let message = format!(
                        "bad answer {} to `Range: bytes={offset}-`",
                        response.status()
                    );
                    return match writer.restart().await {
                        Ok(()) => Err((Failure::Transport(message.into()), Some(writer))),
                        Err(e) => Err((Failure::Store(e), None)),
                    };
                }
                _ => return Err((failed_response(access, response).await, Some(writer))),
            }
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        if let Err(e) = writer.write(&chunk).await {
                            // Longer than announced: these are not the bytes we want.
                            return match e {
                                StoreError::SizeMismatch { .. } => match writer.restart().await {
                                    Ok(()) => Err((Failure::BlobMismatch(e), Some(writer))),
                                    Err(e) => Err((Failure::Store(e), None)),
                                },
                                e => Err((Failure::Store(e), None)),
                            };
                        }
                        progress(chunk.len() as u64);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // Keep what arrived for the resumption.
                        return match writer.flush().await {
                            Ok(()) => Err((Failure::Transport(Box::new(e)), Some(writer))),
                            Err(e) => Err((Failure::Store(e), None)),
                        };
                    }
                }
            }
        }
        // Verification and fsync need no connection.
        drop(permit);
        match writer.finish().await {
            Ok(_) => Ok(()),
            Err(e @ (StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. })) => {
                Err((Failure::BlobMismatch(e), None))
            }
            Err(e) => Err((Failure::Store(e), None)),
        }
    }

    /// How to authenticate blob requests to `access`'s repository: a bearer token got
    /// through the token handshake, basic credentials, or nothing.
    async fn blob_auth(&self, access: &Access) -> Result<BlobAuth, Failure> {
        let mut cached = access.token.lock().await;
        if let Some((auth, fetched)) = &*cached
            && fetched.elapsed() < TOKEN_TTL
        {
            return Ok(auth.clone());
        }
        let auth = match (self.exchange_token(access).await?, &access.credential) {
            (Handshake::Token(token), _) => BlobAuth::Bearer(Secret::new(token)),
            // A registry that asks for nothing gets no credential: a `--creds` meant for
            // every registry of the run goes only where a login is asked for.
            (Handshake::Open, _) | (Handshake::Basic, Credential::Anonymous) => BlobAuth::None,
            (Handshake::Basic, Credential::Basic { username, password }) => {
                BlobAuth::Basic(username.clone(), password.clone())
            }
            (Handshake::Basic, Credential::IdentityToken(_)) => {
                return Err(Failure::Protocol(format!(
                    "it wants basic auth, but the credential from {} is an identity token, which only a token server takes",
                    access
                        .origin
                        .as_ref()
                        .map_or_else(|| "the login".to_owned(), ToString::to_string)
                )));
            }
        };
        *cached = Some((auth.clone(), Instant::now()));
        Ok(auth)
    }
}

impl RegistryClient {
    /// The longest one small request (a manifest, a token, the `/v2/` challenge) may take
    /// from start to last byte. The read timeout alone restarts with every byte, so a server
    /// trickling one byte a second would hold a run forever.
    fn request_deadline(&self) -> Duration {
        self.inner.connect_timeout + 2 * self.inner.read_timeout
    }

    /// The bearer-token handshake, done here rather than by a library so that it has the
    /// same limits as every other request: `GET /v2/`; on a bearer challenge, `GET` its
    /// realm (with the credential, if any) and read the token from at most
    /// [`TOKEN_BODY_LIMIT`] bytes, all within [`Self::request_deadline`]. The realm obeys the
    /// registry's rule: plain HTTP only to a host given as insecure, else no credential or
    /// token goes to it. [`Handshake::Open`] or [`Handshake::Basic`] when it wants no token.
    async fn exchange_token(&self, access: &Access) -> Result<Handshake, Failure> {
        let deadline = self.request_deadline();
        let url = format!(
            "{scheme}://{host}/v2/",
            scheme = access.scheme(),
            host = oci_host(&access.endpoint.registry.host),
        );
        let response = within(deadline, access.client.get(&url).send()).await?;
        match response.status() {
            StatusCode::UNAUTHORIZED => {}
            status if status.is_success() => return Ok(Handshake::Open),
            _ => return Err(failed_response(access, response).await),
        }
        let challenge = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(parse_challenge);
        let Some(Challenge::Bearer { realm, service, .. }) = challenge else {
            // Basic (or no) challenge: the credential, if any, goes with each request.
            return Ok(Handshake::Basic);
        };
        let realm_url = reqwest::Url::parse(&realm)
            .map_err(|_| Failure::Protocol(format!("its token server `{realm}` is not a URL")))?;
        let realm_host = match (realm_url.host_str(), realm_url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        let allowed = match realm_url.scheme() {
            "https" => true,
            "http" => {
                is_insecure(&realm_host, &self.inner.insecure_hosts)
                    || (access.plain_http && realm_host == access.endpoint.registry.host)
            }
            _ => false,
        };
        if !allowed {
            return Err(Failure::Protocol(format!(
                "its token server `{}://{realm_host}` is not HTTPS; a login or token goes over plain HTTP only to a host given with `--insecure-registry`",
                realm_url.scheme()
            )));
        }
        let scope = format!("repository:{}:pull", access.endpoint.repository);
        let mut realm_url = realm_url;
        {
            let mut query = realm_url.query_pairs_mut();
            query.append_pair("scope", &scope);
            if let Some(service) = &service {
                query.append_pair("service", service);
            }
        }
        // The token server's own TLS settings (it may be another host than the registry).
        let client = if realm_host == access.endpoint.registry.host {
            access.client.clone()
        } else {
            self.client_for(&realm_host, false).map_err(|e| {
                Failure::Protocol(format!(
                    "its token server `{realm_host}` cannot be used: {}",
                    crate::engine::render_chain(&e)
                ))
            })?
        };
        let request = match &access.credential {
            // OAuth2's refresh-token grant (distribution's token spec, "OAuth2 token").
            Credential::IdentityToken(token) => {
                let mut form = reqwest::Url::parse("http://form/").expect("a URL");
                form.query_pairs_mut()
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("service", service.as_deref().unwrap_or_default())
                    .append_pair("scope", &scope)
                    .append_pair("client_id", "isobuild")
                    .append_pair("refresh_token", token.expose());
                let body = form.query().unwrap_or_default().to_owned();
                let mut url = realm_url.clone();
                url.set_query(None);
                client
                    .post(url)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            Credential::Basic { username, password } => client
                .get(realm_url)
                .basic_auth(username, Some(password.expose())),
            Credential::Anonymous => client.get(realm_url),
        };
        let mut response = within(deadline, request.send()).await?;
        if !response.status().is_success() {
            return Err(match response.status() {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Unauthorized,
                _ => failed_response(access, response).await,
            });
        }
        let body = within(deadline, async {
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > TOKEN_BODY_LIMIT {
                    return Ok(None);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Some(body))
        })
        .await?
        .ok_or_else(|| {
            Failure::Protocol(format!(
                "its token server sent more than {TOKEN_BODY_LIMIT} bytes; a token is a few KiB"
            ))
        })?;
        token_from_json(&body)
            .map(Handshake::Token)
            .ok_or_else(|| Failure::Protocol("its token server's answer holds no token".into()))
    }
}

/// What the `/v2/` handshake found.
enum Handshake {
    /// `/v2/` answered without asking for a login.
    Open,
    /// A basic (or unknown) challenge: the credential goes with each request.
    Basic,
    /// A bearer token from the token server.
    Token(String),
}

/// Run one request (or body read) `work`, failing as a timeout when it is not done within
/// `deadline`.
async fn within<T>(
    deadline: Duration,
    work: impl std::future::Future<Output = Result<T, reqwest::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(deadline, work).await {
        Ok(result) => result.map_err(|e| Failure::Transport(Box::new(e))),
        Err(_) => Err(Failure::Transport(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no complete answer within {:.0}s", deadline.as_secs_f64()),
        )))),
    }
}

/// The `Authorization` of blob requests to one repository.
#[derive(Debug, Clone)]
enum BlobAuth {
    None,
    Bearer(Secret),
    Basic(String, Secret),
}

impl BlobAuth {
    /// reqwest marks these headers sensitive (never logged) and drops them on a redirect to
    /// another host.
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::None => request,
            Self::Bearer(token) => request.bearer_auth(token.expose()),
            Self::Basic(username, password) => {
                request.basic_auth(username, Some(password.expose()))
            }
        }
    }
}

/// `{scheme}://{host}/v2/{repository}/{kind}/{reference}` on `access`'s endpoint.
fn api_url(access: &Access, kind: &str, reference: &str) -> String {
    format!(
        "{scheme}://{host}/v2/{repository}/{kind}/{reference}",
        scheme = access.scheme(),
        host = oci_host(&access.endpoint.registry.host),
        repository = access.endpoint.repository,
    )
}

/// What a response that is not the content means: forget a rejected token, keep what the
/// registry said (its `Retry-After`, the start of its error body) for the retry decision and
/// the error message.
async fn failed_response(access: &Access, mut response: reqwest::Response) -> Failure {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    // An error body is only read for the message: its start is enough, and an endless one
    // must not be waited for or held in memory.
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(ERROR_BODY_LIMIT);
    let text = String::from_utf8_lossy(&body);
    let denied = text.contains("\"DENIED\"") || text.contains("\"UNAUTHORIZED\"");
    match status {
        StatusCode::UNAUTHORIZED => {
            *access.token.lock().await = None;
            Failure::Unauthorized
        }
        StatusCode::FORBIDDEN if denied => Failure::Unauthorized,
        StatusCode::NOT_FOUND => Failure::NotFound,
        status => Failure::Status {
            status: status.as_u16(),
            retry_after,
            message: truncate(&super::auth::scrub(&text)),
        },
    }
}

fn too_large(size: u64) -> Failure {
    Failure::Protocol(format!(
        "it sent a manifest of {size} bytes or more; manifests larger than {MANIFEST_LIMIT} bytes are refused"
    ))
}

/// The store's copy of a blob, `None` when missing (or corrupt, then removed).
///
/// Offline, a corrupt copy is an error saying so: nothing can replace it, and "not in the
/// cache" would send the user looking for the wrong problem.
fn cached(store: &Store, digest: &Digest, offline: bool) -> Result<Option<Vec<u8>>, StoreError> {
    match store.read_blob(digest) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(StoreError::MissingBlob { .. }) => Ok(None),
        Err(StoreError::CorruptBlob { .. }) if !offline => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse(
    image: &ImageRef,
    endpoint: &Endpoint,
    digest: &Digest,
    bytes: &[u8],
) -> Result<Manifest, SourceError> {
    manifest::parse(bytes).map_err(|source| SourceError::InvalidManifest {
        image: Box::new(image.clone()),
        registry: Box::new(endpoint.registry.clone()),
        digest: digest.clone(),
        source,
    })
}

/// The host spoken to for a registry name (Docker Hub's API lives elsewhere).
fn oci_host(host: &str) -> &str {
    if host == "docker.io" {
        "index.docker.io"
    } else {
        host
    }
}

/// Whether a failure at one mirror is worth trying the next one for: it could not be
/// reached, refused, or lacks the image. Wrong bytes or a broken cache are not a reason.
fn falls_back(error: &SourceError) -> bool {
    matches!(
        error,
        SourceError::Unreachable { .. }
            | SourceError::Refused { .. }
            | SourceError::Status { .. }
            | SourceError::Unauthorized { .. }
            | SourceError::NotFound { .. }
            | SourceError::Protocol { .. }
            | SourceError::Tls { .. }
            | SourceError::Credentials { .. }
    )
}

/// Whether `host` (`name` or `name:port`) is listed as insecure; a listed name without a
/// port covers every port.
fn is_insecure(host: &str, insecure: &[String]) -> bool {
    host_listed(host, insecure)
}

/// Whether `host` (`name` or `name:port`) is in `list`; a listed name without a port covers
/// every port.
pub(crate) fn host_listed(host: &str, insecure: &[String]) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    insecure.iter().any(|entry| entry == host || entry == name)
}

/// The first byte of a `206`'s `Content-Range: bytes START-END/TOTAL`.
fn content_range_start(response: &reqwest::Response) -> Option<u64> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split_once('-')?.0.trim().parse().ok()
}

/// `sha256:0123456789ab`, for progress labels.
fn short(digest: &Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}

/// Error bodies can be whole HTML pages: keep the start.
fn truncate(body: &str) -> String {
    const MAX: usize = 200;
    let body = body.trim();
    match body.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &body[..end]),
        None => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(mirrors: &[(&str, &str)], insecure: &[&str]) -> RegistryClient {
        RegistryClient::builder()
            .mirrors(
                mirrors
                    .iter()
                    .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
                    .collect(),
            )
            .insecure_hosts(insecure.iter().copied())
            .build()
            .unwrap()
    }

    #[test]
    fn mirrors_rewrite_host_and_prefix() {
        let client = client(
            &[
                ("index.docker.io", "127.0.0.1:5000/docker.io/"),
                ("quay.io", "mirror.example"),
            ],
            &["127.0.0.1"],
        );
        let endpoint = client.endpoint(&"alpine:3.20".parse().unwrap());
        assert_eq!(endpoint.registry.host, "127.0.0.1:5000");
        assert_eq!(endpoint.registry.mirror_of.as_deref(), Some("docker.io"));
        assert_eq!(endpoint.repository, "docker.io/library/alpine");
        assert!(endpoint.insecure);
        assert_eq!(
            endpoint.registry.to_string(),
            "`127.0.0.1:5000` (mirror of `docker.io`)"
        );

        let endpoint = client.endpoint(&"quay.io/coreos/etcd:v3".parse().unwrap());
        assert_eq!(endpoint.registry.host, "mirror.example");
        assert_eq!(endpoint.repository, "coreos/etcd");
        assert!(!endpoint.insecure);

        let endpoint = client.endpoint(&"registry.k8s.io/pause:3.9".parse().unwrap());
        assert_eq!(endpoint.registry.host, "registry.k8s.io");
        assert_eq!(endpoint.registry.mirror_of, None);
    }

    #[test]
    fn bad_mirrors_are_refused() {
        for bad in ["", "http://127.0.0.1:5000", "/prefix", "host name"] {
            let error = RegistryClient::builder()
                .mirrors([("docker.io".to_owned(), bad.to_owned())].into())
                .build()
                .unwrap_err();
            assert!(
                matches!(error, ClientSetupError::InvalidMirror { .. }),
                "{bad}"
            );
        }
    }

    #[test]
    fn insecure_hosts_match_with_or_without_port() {
        let insecure = ["127.0.0.1".to_owned(), "reg.example:5000".to_owned()];
        assert!(is_insecure("127.0.0.1:5000", &insecure));
        assert!(is_insecure("127.0.0.1", &insecure));
        assert!(is_insecure("reg.example:5000", &insecure));
        assert!(!is_insecure("reg.example:5001", &insecure));
        assert!(!is_insecure("reg.example", &insecure));
    }

    #[test]
    fn error_bodies_are_truncated() {
        assert_eq!(truncate(" short "), "short");
        let long = "x".repeat(500);
        assert_eq!(truncate(&long).chars().count(), 201);
    }
}
