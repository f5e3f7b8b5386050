//! TLS trust per registry host, as the containers tools configure it: extra CA files and a
//! client certificate from a `certs.d` folder (or `--cert-dir`), and HTTPS without
//! verification for the hosts the user names. The system trust store is always kept: the
//! CAs found here are added to it, never put in its place.
//!
//! For a host `HOST[:PORT]` the folder is the first that exists of
//! `~/.config/containers/certs.d/HOST[:PORT]`, `/etc/containers/certs.d/HOST[:PORT]` and
//! `/etc/docker/certs.d/HOST[:PORT]` (containers-certs.d(5)), unless `--cert-dir DIR` is
//! given: then `DIR` is used for every host, as skopeo's `--cert-dir` is. In the folder,
//! `*.crt` are CA certificates, and `NAME.cert` with `NAME.key` is a client certificate
//! for mutual TLS (docker's `client.cert` / `client.key`).
//!
//! Which failures are TLS or DNS mistakes a retry cannot fix is decided here too
//! ([`classify`]), so the registry client can fail at once with a hint.

use std::path::{Path, PathBuf};

/// Where TLS settings come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// The `certs.d` roots searched, in order (the first with a folder for the host wins).
    pub certs_d: Vec<PathBuf>,
    /// `--cert-dir`: one folder for every host, instead of `certs.d`.
    pub cert_dir: Option<PathBuf>,
    /// `--insecure-skip-tls-verify`: hosts (`HOST` for every port, or `HOST:PORT`) spoken to
    /// over HTTPS without checking their certificate.
    pub skip_verify: Vec<String>,
}

impl TlsSettings {
    /// The `certs.d` roots containers' tools read: the user's, then the system's. `home` is
    /// `$HOME`.
    pub fn default_certs_d(home: Option<&Path>) -> Vec<PathBuf> {
        home.map(|home| home.join(".config/containers/certs.d"))
            .into_iter()
            .chain([
                PathBuf::from("/etc/containers/certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
            ])
            .collect()
    }

    /// The folder whose files apply to `host`, if any.
    fn folder_for(&self, host: &str) -> Option<PathBuf> {
        if let Some(dir) = &self.cert_dir {
            return Some(dir.clone());
        }
        self.certs_d
            .iter()
            .map(|root| root.join(host))
            .find(|dir| dir.is_dir())
    }

    /// Whether certificates of `host` go unchecked.
    pub fn skips_verify(&self, host: &str) -> bool {
        super::registry::host_listed(host, &self.skip_verify)
    }

    /// What `host`'s connections need: its CAs and client certificate, read now.
    pub(crate) fn for_host(&self, host: &str) -> Result<HostTls, TlsError> {
        let mut tls = HostTls {
            skip_verify: self.skips_verify(host),
            ..HostTls::default()
        };
        let Some(dir) = self.folder_for(host) else {
            return Ok(tls);
        };
        let entries = match fs_err::read_dir(&dir) {
            Ok(entries) => entries,
            // `--cert-dir` naming nothing is a mistake; a certs.d folder gone since the
            // check is not worth failing for.
            Err(source) if self.cert_dir.is_some() => {
                return Err(TlsError::Read { path: dir, source });
            }
            Err(_) => return Ok(tls),
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect();
        names.sort();
        for path in &names {
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => {
                    let pem = read(path)?;
                    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
                        TlsError::Invalid {
                            path: path.clone(),
                            what: "a PEM CA certificate",
                        }
                    })?;
                    if certs.is_empty() {
                        return Err(TlsError::Invalid {
                            path: path.clone(),
                            what: "a PEM CA certificate",
                        });
                    }
                    tls.roots.extend(certs);
                }
                Some("cert") if tls.identity.is_none() => {
                    let key = path.with_extension("key");
                    if !key.is_file() {
                        return Err(TlsError::MissingPair {
                            have: path.clone(),
                            missing: key,
                        });
                    }
                    let mut pem = read(path)?;
                    pem.push(b'\n');
                    pem.extend(read(&key)?);
                    let identity =
                        reqwest::Identity::from_pem(&pem).map_err(|_| TlsError::Invalid {
                            path: path.clone(),
                            what: "a PEM client certificate whose `.key` is its PEM private key",
                        })?;
                    tls.identity = Some(identity);
                    tls.files.push(key);
                }
                Some("key") if !path.with_extension("cert").is_file() => {
                    return Err(TlsError::MissingPair {
                        have: path.clone(),
                        missing: path.with_extension("cert"),
                    });
                }
                _ => continue,
            }
            tls.files.push(path.clone());
        }
        Ok(tls)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs_err::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// One host's TLS settings, ready for a `reqwest` client.
#[derive(Default)]
pub(crate) struct HostTls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    skip_verify: bool,
    /// The files read, for the debug log.
    files: Vec<PathBuf>,
}

impl HostTls {
    /// Nothing of the host's own: the shared client will do.
    pub(crate) fn is_empty(&self) -> bool {
        self.roots.is_empty() && self.identity.is_none() && !self.skip_verify
    }

    /// Accept any certificate (registries.conf `insecure = true`).
    pub(crate) fn skip_verify(&mut self) {
        self.skip_verify = true;
    }

    /// Apply to a client builder: extra roots merged with the system's, the client
    /// certificate, or no verification at all.
    pub(crate) fn apply(self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if !self.files.is_empty() {
            tracing::debug!(files = ?self.files, "TLS files for the registry");
        }
        if !self.roots.is_empty() {
            builder = builder.tls_certs_merge(self.roots);
        }
        if let Some(identity) = self.identity {
            builder = builder.identity(identity);
        }
        if self.skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        builder
    }
}

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not {what}", path.display())]
    Invalid { path: PathBuf, what: &'static str },
    #[error("`{}` has no `{}` beside it (a client certificate needs both)", have.display(), missing.display())]
    MissingPair { have: PathBuf, missing: PathBuf },
    #[error("cannot build the HTTPS client for `{host}`")]
    Client {
        host: String,
        #[source]
        source: reqwest::Error,
    },
}

/// A connection failure that no retry can fix, with what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deterministic {
    /// HTTPS spoken to a plain-HTTP server (rustls sees an HTTP answer as a corrupt record).
    PlainHttp,
    /// The server's certificate chains to no trusted CA.
    UnknownIssuer,
    /// The certificate is expired, for another name, or otherwise refused.
    BadCertificate,
    /// The server wants a client certificate (mutual TLS) that was not sent or not accepted.
    ClientCertificate,
    /// The host name does not resolve (NXDOMAIN), unlike a resolver that is down.
    NoSuchHost,
}

impl Deterministic {
    /// The one-line hint for `host`.
    pub fn hint(self, host: &str) -> String {
        match self {
            Self::PlainHttp => {
                format!("the registry speaks plain HTTP: pass --insecure-registry {host}")
            }
            Self::UnknownIssuer => format!(
                "certificate signed by an unknown authority: put its CA in /etc/containers/certs.d/{host}/ or pass --cert-dir"
            ),
            Self::BadCertificate => format!(
                "its TLS certificate is not valid for `{host}` (expired, or for another name); pass --insecure-skip-tls-verify {host} to accept it anyway"
            ),
            Self::ClientCertificate => format!(
                "it wants a TLS client certificate: put client.cert and client.key in /etc/containers/certs.d/{host}/ or pass --cert-dir"
            ),
            Self::NoSuchHost => {
                let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
                format!("{name} does not resolve (check the name, or --mirror)")
            }
        }
    }
}

/// Whether `error` (a transport error, walked through its causes) is one a retry cannot fix.
pub fn classify(error: &(dyn std::error::Error + 'static)) -> Option<Deterministic> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = next {
        if let Some(found) = classify_one(cause) {
            return Some(found);
        }
        // `io::Error::source` skips the error it wraps: look inside it explicitly.
        next = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => cause.source(),
        };
    }
    None
}

fn classify_one(error: &(dyn std::error::Error + 'static)) -> Option<Deterministic> {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    if let Some(tls) = error.downcast_ref::<E>() {
        return match tls {
            E::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                Some(Deterministic::PlainHttp)
            }
            E::InvalidCertificate(C::UnknownIssuer) => Some(Deterministic::UnknownIssuer),
            E::InvalidCertificate(_) => Some(Deterministic::BadCertificate),
            E::AlertReceived(A::CertificateRequired | A::BadCertificate | A::UnknownCA) => {
                Some(Deterministic::ClientCertificate)
            }
            E::General(text) if text.contains("UnknownIssuer") => {
                Some(Deterministic::UnknownIssuer)
            }
            _ => None,
        };
    }
    // getaddrinfo's EAI_NONAME (glibc) and EAI_NODATA; EAI_AGAIN ("Temporary failure in
    // name resolution") is a resolver problem and stays retried.
    let text = error.to_string();
    if text.contains("Name or service not known")
        || text.contains("No address associated with hostname")
        || text.contains("nodename nor servname provided")
    {
        return Some(Deterministic::NoSuchHost);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_errors_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        let io = std::io::Error::other(tls);
        assert_eq!(classify(&io), Some(Deterministic::PlainHttp));
        let io = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(classify(&io), Some(Deterministic::UnknownIssuer));
        let dns = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        assert_eq!(classify(&dns), Some(Deterministic::NoSuchHost));
        let again = std::io::Error::other(
            "failed to lookup address information: Temporary failure in name resolution",
        );
        assert_eq!(classify(&again), None);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&reset), None);
    }

    #[test]
    fn hints_name_the_host() {
        assert_eq!(
            Deterministic::PlainHttp.hint("reg:5000"),
            "the registry speaks plain HTTP: pass --insecure-registry reg:5000"
        );
        assert_eq!(
            Deterministic::NoSuchHost.hint("nosuch.example:443"),
            "nosuch.example does not resolve (check the name, or --mirror)"
        );
    }

    #[test]
    fn a_host_folder_gives_roots_and_a_client_pair() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            certs_d: vec![dir.path().join("none"), dir.path().to_owned()],
            ..TlsSettings::default()
        };
        assert!(settings.for_host("reg:5000").unwrap().roots.is_empty());
        let host = dir.path().join("reg:5000");
        fs_err::create_dir_all(&host).unwrap();
        fs_err::write(host.join("client.key"), "x").unwrap();
        let error = settings.for_host("reg:5000").err().unwrap();
        assert!(matches!(error, TlsError::MissingPair { .. }), "{error}");
        fs_err::remove_file(host.join("client.key")).unwrap();
        fs_err::write(host.join("ca.crt"), "not pem").unwrap();
        let error = settings.for_host("reg:5000").err().unwrap();
        assert!(matches!(error, TlsError::Invalid { .. }), "{error}");
    }
}
