//! Registry credentials: where they are read from (containers' `auth.json`, docker's
//! `config.json` and its credential helpers), and the [`Secret`] type that keeps them out of
//! logs, errors and reports.
//!
//! Files are found the way podman and skopeo find them: `REGISTRY_AUTH_FILE`, or
//! `$XDG_RUNTIME_DIR/containers/auth.json` then `~/.config/containers/auth.json`; then docker's
//! `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`). The first file with an entry
//! for the registry wins; none means anonymous access. This module reads no environment
//! itself: [`AuthFiles::from_env`] is handed the variables by the settings layer.
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
}

impl Credential {
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous)
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
    #[error("`{}` holds an identity token for `{registry}`, which isobuild cannot use yet; log in with a user name and password or access token instead", path.display())]
    IdentityToken { path: PathBuf, registry: String },
}

/// Where credentials are looked up, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFiles {
    /// containers' `auth.json` files (repository-scoped entries allowed).
    pub containers: Vec<PathBuf>,
    /// docker's `config.json` (host entries, `credHelpers`, `credsStore`).
    pub docker_config: Option<PathBuf>,
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
            containers,
            docker_config,
        }
    }

    /// The credential for `repository` on `host` (the host actually contacted, so a mirror's
    /// own credentials are used for it). Blocking: it may run a credential helper.
    pub fn lookup(&self, host: &str, repository: &str) -> Result<Credential, AuthError> {
        // containers' files may scope an entry to a namespace: most specific first.
        let mut scoped: Vec<String> = Vec::new();
        let components: Vec<&str> = repository.split('/').collect();
        for end in (1..=components.len()).rev() {
            scoped.push(format!("{host}/{}", components[..end].join("/")));
        }
        scoped.extend(host_keys(host));
        for path in &self.containers {
            if let Some(credential) = lookup_file(path, &scoped)? {
                return Ok(credential);
            }
        }
        if let Some(path) = &self.docker_config
            && let Some(credential) = lookup_file(path, &host_keys(host))?
        {
            return Ok(credential);
        }
        Ok(Credential::Anonymous)
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

fn lookup_file(path: &Path, keys: &[String]) -> Result<Option<Credential>, AuthError> {
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
    for key in keys {
        match docker_credential::get_credential_from_reader(bytes.as_slice(), key) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                return Ok(Some(Credential::Basic {
                    username,
                    password: Secret::new(password),
                }));
            }
            Ok(DockerCredential::IdentityToken(_)) => {
                return Err(AuthError::IdentityToken {
                    path: path.to_owned(),
                    registry: key.clone(),
                });
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
            docker_config: None,
        };
        let error = files.lookup("reg.example", "x").unwrap_err();
        assert!(matches!(error, AuthError::Parse { .. }), "{error}");

        // "user:hunter2" but a mismatching password field.
        let files = AuthFiles {
            containers: vec![],
            docker_config: Some(write(
                dir.path(),
                "config.json",
                r#"{"auths": {"reg.example": {"auth": "dXNlcjpodW50ZXIy", "username": "user", "password": "other"}}}"#,
            )),
        };
        let error = files.lookup("reg.example", "x").unwrap_err();
        assert!(matches!(error, AuthError::Decode { .. }), "{error}");
        assert!(!format!("{error} {error:?}").contains("hunter2"));
    }
}
