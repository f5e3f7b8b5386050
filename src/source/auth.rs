//! Registry credentials: where they are read from (containers' `auth.json`, docker's
//! `config.json` and its credential helpers), and the [`Secret`] type that keeps them out of
//! logs, errors and reports.
//!
//! Files are found the way podman and skopeo find them: `REGISTRY_AUTH_FILE`, or
//! `$XDG_RUNTIME_DIR/containers/auth.json` then `~/.config/containers/auth.json`; then docker's
//! `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`). The first file with an entry
//! for the registry wins; none means anonymous access. `--authfile FILE` replaces that
//! search with one file (as skopeo's). Credentials given on the command line (`--creds`) or
//! in `ISOBUILD_CREDS` come before any file. This module reads no environment itself:
//! [`AuthFiles::from_env`] is handed the variables by the settings layer.
//!
//! Every credential carries its [`Origin`], so that a login the registry rejects names the
//! file, helper, flag or variable to fix.
//!
//! Parsing entries and running `docker-credential-*` helpers is the `docker_credential`
//! crate's; both file formats share the `auths` layout it reads.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// A password or token. Its `Debug` and `Display` print `<redacted>`, so it can sit in any
/// struct that gets logged; only [`Secret::expose`] gives the value, at the point of use.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap `value`, and remember it so that [`scrub`] takes it out of any text shown.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        remember(&value);
        Self(value)
    }

    /// The secret value, for an `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Every secret value this process has held (passwords, tokens), for [`scrub`].
static KNOWN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Values shorter than this are not scrubbed: they would match ordinary words.
const SCRUB_MIN: usize = 6;

fn remember(value: &str) {
    if value.len() < SCRUB_MIN {
        return;
    }
    let mut known = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !known.iter().any(|known| known == value) {
        known.push(value.to_owned());
    }
}

/// `text` with every secret this process knows replaced by `<redacted>`: for text that came
/// from elsewhere (a registry's error body that echoes the token it was sent, say) before it
/// reaches stderr or a report.
pub fn scrub(text: &str) -> String {
    let known = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut text = text.to_owned();
    for secret in known.iter() {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "<redacted>");
        }
    }
    text
}

/// How to authenticate to one registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Credential {
    #[default]
    Anonymous,
    /// A user name and password (or a personal access token used as one). Registries that
    /// answer with a bearer challenge get them exchanged for a token.
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token (`identitytoken` in `auth.json`), exchanged at the token
    /// server with the `refresh_token` grant.
    IdentityToken(Secret),
}

impl Credential {
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous)
    }
}

/// Whether the text before a `=` in `--creds` is a registry (`HOST[:PORT]` with a dot, a
/// port or `localhost`) rather than the start of `USER:PASS` whose password holds a `=`.
fn looks_like_host(text: &str) -> bool {
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (text, None),
    };
    let port_ok =
        port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    !name.is_empty()
        && port_ok
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b))
        && (name.contains('.') || port.is_some() || name == "localhost")
}

/// Where a credential came from, for the message when the registry rejects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An `auths` entry of this file.
    File(PathBuf),
    /// `docker-credential-NAME`, configured in this file.
    Helper { helper: String, file: PathBuf },
    /// `--creds`.
    Flag,
    /// `ISOBUILD_CREDS`.
    Env,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "`{}`", path.display()),
            Self::Helper { helper, file } => write!(
                f,
                "credential helper `docker-credential-{helper}` (from `{}`)",
                file.display()
            ),
            Self::Flag => f.write_str("`--creds`"),
            Self::Env => f.write_str("ISOBUILD_CREDS"),
        }
    }
}

/// A credential and where it came from (`None` for anonymous access).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Login {
    pub credential: Credential,
    pub origin: Option<Origin>,
}

/// One `--creds` or `ISOBUILD_CREDS` item: `[HOST=]USER[:PASS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenCreds {
    /// The registry it is for; `None` for every registry of the run.
    pub host: Option<String>,
    pub username: String,
    pub password: Secret,
    pub origin: Origin,
}

impl GivenCreds {
    /// Parse `[HOST=]USER[:PASS]`. The message never holds the password.
    pub fn parse(text: &str, origin: Origin) -> Result<Self, String> {
        let (host, login) = match text.split_once('=') {
            Some((host, login)) if looks_like_host(host) => (Some(host.to_owned()), login),
            _ => (None, text),
        };
        let (username, password) = login.split_once(':').unwrap_or((login, ""));
        if username.is_empty() {
            return Err(format!(
                "{origin}: an item has no user name; expected `[HOST=]USER[:PASSWORD]`"
            ));
        }
        Ok(Self {
            host,
            username: username.to_owned(),
            password: Secret::new(password),
            origin,
        })
    }
}

/// A credential file that cannot be used. Messages name the file and the registry, never
/// a credential (not even a helper's output, which may hold one).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read credential file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credential file `{}` is not valid JSON", path.display())]
    Parse { path: PathBuf },
    #[error("the entry for `{registry}` in `{}` cannot be decoded (expected base64 of `user:password`, matching any `username`/`password` fields)", path.display())]
    Decode { path: PathBuf, registry: String },
    #[error("the credential helper configured in `{}` for `{registry}` failed{}", path.display(), helper.as_ref().map(|h| format!(" (`{h}`)")).unwrap_or_default())]
    Helper {
        path: PathBuf,
        registry: String,
        helper: Option<String>,
    },
    #[error("credential helper `docker-credential-{helper}` (from `{}` {how}) is not on PATH", path.display())]
    HelperMissing {
        path: PathBuf,
        helper: String,
        how: &'static str,
    },
}

/// Where credentials are looked up, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFiles {
    /// `--creds` and `ISOBUILD_CREDS`, tried first: one for the host, else one for all.
    pub given: Vec<GivenCreds>,
    /// containers' `auth.json` files (repository-scoped entries allowed).
    pub containers: Vec<PathBuf>,
    /// docker's `config.json` (host entries, `credHelpers`, `credsStore`).
    pub docker_config: Option<PathBuf>,
    /// `PATH`, where credential helpers are looked for.
    pub path: Option<OsString>,
}

impl AuthFiles {
    /// No files: every registry is accessed anonymously.
    pub fn none() -> Self {
        Self::default()
    }

    /// The files podman, skopeo and docker would read, given a way to read environment
    /// variables (`REGISTRY_AUTH_FILE`, `XDG_RUNTIME_DIR`, `HOME`, `DOCKER_CONFIG`).
    pub fn from_env(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let home = var("HOME").map(PathBuf::from);
        let containers = match var("REGISTRY_AUTH_FILE") {
            Some(file) => vec![PathBuf::from(file)],
            None => var("XDG_RUNTIME_DIR")
                .map(|dir| PathBuf::from(dir).join("containers/auth.json"))
                .into_iter()
                .chain(
                    home.as_ref()
                        .map(|home| home.join(".config/containers/auth.json")),
                )
                .collect(),
        };
        let docker_config = var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home.map(|home| home.join(".docker")))
            .map(|dir| dir.join("config.json"));
        Self {
            given: Vec::new(),
            containers,
            docker_config,
            path: var("PATH"),
        }
    }

    /// `--authfile FILE`: that file only, as skopeo reads it.
    #[must_use]
    pub fn with_authfile(mut self, file: PathBuf) -> Self {
        self.containers = vec![file];
        self.docker_config = None;
        self
    }

    /// The credential for `repository` on `host` (the host actually contacted, so a mirror's
    /// own credentials are used for it). Blocking: it may run a credential helper.
    pub fn lookup(&self, host: &str, repository: &str) -> Result<Credential, AuthError> {
        self.login(host, repository).map(|login| login.credential)
    }

    /// [`Self::lookup`], with where the credential came from.
    pub fn login(&self, host: &str, repository: &str) -> Result<Login, AuthError> {
        let given = self
            .given
            .iter()
            .find(|given| given.host.as_deref() == Some(host))
            .or_else(|| self.given.iter().find(|given| given.host.is_none()));
        if let Some(given) = given {
            return Ok(Login {
                credential: Credential::Basic {
                    username: given.username.clone(),
                    password: given.password.clone(),
                },
                origin: Some(given.origin.clone()),
            });
        }
        // containers' files may scope an entry to a namespace: most specific first.
        let mut scoped: Vec<String> = Vec::new();
        let components: Vec<&str> = repository.split('/').collect();
        for end in (1..=components.len()).rev() {
            scoped.push(format!("{host}/{}", components[..end].join("/")));
        }
        scoped.extend(host_keys(host));
        for path in &self.containers {
            if let Some(login) = lookup_file(path, &scoped, self.path.as_deref())? {
                return Ok(login);
            }
        }
        if let Some(path) = &self.docker_config
            && let Some(login) = lookup_file(path, &host_keys(host), self.path.as_deref())?
        {
            return Ok(login);
        }
        Ok(Login::default())
    }
}

/// The keys a host may be filed under; Docker Hub has its historical aliases.
fn host_keys(host: &str) -> Vec<String> {
    if matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        vec!["https://index.docker.io/v1/".into(), "docker.io".into()]
    } else {
        vec![host.to_owned()]
    }
}

/// The parts of a credential file that say which helper `docker_credential` will run for a
/// key, so that its origin is known and a missing binary is named before it is run.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct HelperConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
    creds_store: Option<String>,
}

impl HelperConfig {
    /// The helper used for `key` and how it is configured, as `docker_credential` decides:
    /// `credHelpers` first, then the `auths` entry, then `credsStore`.
    fn helper(&self, key: &str) -> Option<(&str, &'static str)> {
        if let Some(helper) = self.cred_helpers.get(key) {
            return Some((helper, "credHelpers"));
        }
        let has_entry = self.auths.get(key).is_some_and(|entry| {
            ["auth", "identitytoken", "username"]
                .iter()
                .any(|field| entry.get(field).is_some())
        });
        match &self.creds_store {
            Some(store) if !has_entry => Some((store, "credsStore")),
            _ => None,
        }
    }
}

/// Whether `docker-credential-NAME` is an executable file in one of `path`'s folders.
fn on_path(name: &str, path: Option<&std::ffi::OsStr>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let binary = format!("docker-credential-{name}");
    path.is_some_and(|path| {
        std::env::split_paths(path).any(|dir| {
            fs_err::metadata(dir.join(&binary))
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
    })
}

fn lookup_file(
    path: &Path,
    keys: &[String],
    search: Option<&std::ffi::OsStr>,
) -> Result<Option<Login>, AuthError> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let bytes = match fs_err::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AuthError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let helpers: HelperConfig = serde_json::from_slice(&bytes).unwrap_or_default();
    for key in keys {
        let helper = helpers.helper(key);
        if let Some((helper, how)) = helper
            && !on_path(helper, search)
        {
            return Err(AuthError::HelperMissing {
                path: path.to_owned(),
                helper: helper.to_owned(),
                how,
            });
        }
        let origin = Some(match helper {
            Some((helper, _)) => Origin::Helper {
                helper: helper.to_owned(),
                file: path.to_owned(),
            },
            None => Origin::File(path.to_owned()),
        });
        match docker_credential::get_credential_from_reader(bytes.as_slice(), key) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                return Ok(Some(Login {
                    credential: Credential::Basic {
                        username,
                        password: Secret::new(password),
                    },
                    origin,
                }));
            }
            Ok(DockerCredential::IdentityToken(token)) => {
                return Ok(Some(Login {
                    credential: Credential::IdentityToken(Secret::new(token)),
                    origin,
                }));
            }
            Err(E::NoCredentialConfigured | E::ConfigNotFound) => {}
            // Helpers exit non-zero when they simply have nothing for this key, as docker
            // treats it; their output is otherwise dropped, since it may hold a secret.
            Err(E::HelperFailure { stdout, .. }) if stdout.contains("credentials not found") => {}
            Err(E::ConfigReadError) => {
                return Err(AuthError::Parse {
                    path: path.to_owned(),
                });
            }
            Err(E::CredentialDecodingError | E::CredentialMismatchError) => {
                return Err(AuthError::Decode {
                    path: path.to_owned(),
                    registry: key.clone(),
                });
            }
            Err(E::HelperFailure { helper, .. }) => {
                return Err(AuthError::Helper {
                    path: path.to_owned(),
                    registry: key.clone(),
                    helper: Some(helper),
                });
            }
            Err(E::HelperCommunicationError | E::MalformedHelperResponse) => {
                return Err(AuthError::Helper {
                    path: path.to_owned(),
                    registry: key.clone(),
                    helper: None,
                });
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, json: &str) -> PathBuf {
        let path = dir.join(name);
        fs_err::write(&path, json).unwrap();
        path
    }

    fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    #[test]
    fn secrets_never_print() {
        let credential = basic("me", "hunter2");
        assert!(!format!("{credential:?}").contains("hunter2"));
        assert_eq!(Secret::new("hunter2").to_string(), "<redacted>");
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
    }

    #[test]
    fn files_come_from_the_environment_as_podman_finds_them() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| OsString::from(value))
            }
        };
        let files = AuthFiles::from_env(env(&[
            ("HOME", "/home/me"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]));
        assert_eq!(
            files.containers,
            [
                PathBuf::from("/run/user/1000/containers/auth.json"),
                PathBuf::from("/home/me/.config/containers/auth.json")
            ]
        );
        assert_eq!(
            files.docker_config,
            Some(PathBuf::from("/home/me/.docker/config.json"))
        );
        let files = AuthFiles::from_env(env(&[
            ("HOME", "/home/me"),
            ("REGISTRY_AUTH_FILE", "/etc/auth.json"),
            ("DOCKER_CONFIG", "/etc/docker"),
        ]));
        assert_eq!(files.containers, [PathBuf::from("/etc/auth.json")]);
        assert_eq!(
            files.docker_config,
            Some(PathBuf::from("/etc/docker/config.json"))
        );
    }

    #[test]
    fn lookup_order_and_scopes() {
        let dir = tempfile::tempdir().unwrap();
        // base64("scoped:one"), base64("host:two"), base64("docker:three")
        let containers = write(
            dir.path(),
            "auth.json",
            r#"{"auths": {"reg.example/team/app": {"auth": "c2NvcGVkOm9uZQ=="}, "reg.example": {"auth": "aG9zdDp0d28="}}}"#,
        );
        let docker = write(
            dir.path(),
            "config.json",
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "ZG9ja2VyOnRocmVl"}, "127.0.0.1:5000": {"username": "u", "password": "p"}}}"#,
        );
        let files = AuthFiles {
            containers: vec![dir.path().join("missing.json"), containers],
            docker_config: Some(docker),
            ..AuthFiles::default()
        };
        assert_eq!(
            files.lookup("reg.example", "team/app").unwrap(),
            basic("scoped", "one")
        );
        assert_eq!(
            files.lookup("reg.example", "other/app").unwrap(),
            basic("host", "two")
        );
        assert_eq!(
            files.lookup("docker.io", "library/alpine").unwrap(),
            basic("docker", "three")
        );
        assert_eq!(
            files.lookup("127.0.0.1:5000", "x").unwrap(),
            basic("u", "p")
        );
        assert_eq!(files.lookup("quay.io", "x").unwrap(), Credential::Anonymous);
    }

    #[test]
    fn broken_files_are_errors_that_show_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let files = AuthFiles {
            containers: vec![write(dir.path(), "auth.json", "{ not json")],
            ..AuthFiles::default()
        };
        let error = files.lookup("reg.example", "x").unwrap_err();
        assert!(matches!(error, AuthError::Parse { .. }), "{error}");

        // "user:hunter2" but a mismatching password field.
        let files = AuthFiles {
            docker_config: Some(write(
                dir.path(),
                "config.json",
                r#"{"auths": {"reg.example": {"auth": "dXNlcjpodW50ZXIy", "username": "user", "password": "other"}}}"#,
            )),
            ..AuthFiles::default()
        };
        let error = files.lookup("reg.example", "x").unwrap_err();
        assert!(matches!(error, AuthError::Decode { .. }), "{error}");
        assert!(!format!("{error} {error:?}").contains("hunter2"));
    }

    #[test]
    fn given_credentials_come_first_and_a_missing_helper_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(
            dir.path(),
            "config.json",
            r#"{"auths": {"a.example": {"auth": "aG9zdDp0d28="}}, "credHelpers": {"b.example": "nosuch"}}"#,
        );
        let mut files = AuthFiles {
            docker_config: Some(config.clone()),
            path: Some(dir.path().as_os_str().to_owned()),
            ..AuthFiles::default()
        };
        let login = files.login("a.example", "x").unwrap();
        assert_eq!(login.origin, Some(Origin::File(config.clone())));
        let error = files.login("b.example", "x").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "credential helper `docker-credential-nosuch` (from `{}` credHelpers) is not on PATH",
                config.display()
            )
        );
        files.given = vec![
            GivenCreds::parse("a.example=me:secret1", Origin::Flag).unwrap(),
            GivenCreds::parse("all:secret2", Origin::Env).unwrap(),
        ];
        assert_eq!(
            files.lookup("a.example", "x").unwrap(),
            basic("me", "secret1")
        );
        let login = files.login("b.example", "x").unwrap();
        assert_eq!(login.credential, basic("all", "secret2"));
        assert_eq!(login.origin, Some(Origin::Env));
        let given = GivenCreds::parse("127.0.0.1:5000=u:p:q", Origin::Flag).unwrap();
        assert_eq!(given.host.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(given.password.expose(), "p:q");
        assert!(GivenCreds::parse("reg.example=", Origin::Flag).is_err());
    }
}
