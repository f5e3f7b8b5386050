//! Which container daemon to talk to: `CONTAINER_HOST`, then `DOCKER_HOST`, then the usual
//! sockets (Docker's, then Podman's rootful and rootless ones).
//!
//! Every form people put in those variables is accepted, because MetalK8s' build broke on
//! exactly this (it prefixed `http://` to whatever `DOCKER_HOST` held, so
//! `unix:///run/user/1000/podman/podman.sock` became `http://unix:///…`):
//!
//! | value                                        | endpoint                         |
//! |----------------------------------------------|----------------------------------|
//! | `unix:///path`, `http+unix:///path`          | Unix socket `/path`              |
//! | `http+unix://%2Frun%2Fpodman%2Fpodman.sock`  | Unix socket `/run/podman/podman.sock` |
//! | `tcp://host:port`, `http://host:port`        | plain HTTP to `host:port`        |
//! | `host:port` (no scheme, as dind setups use)  | plain HTTP to `host:port`        |
//! | `npipe://…`, `ssh://…`, `https://…`          | a clear error                    |
//!
//! The environment is a parameter (a closure), never read here: settings pass it in, and
//! tests give a table.

use std::fmt;
use std::path::{Path, PathBuf};

use super::LocalSourceError;

/// Docker's default port for plain HTTP.
const DEFAULT_TCP_PORT: u16 = 2375;

/// Where a daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket.
    Unix(PathBuf),
    /// Plain HTTP over TCP; `host` keeps IPv6 brackets (`[::1]`).
    Tcp { host: String, port: u16 },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

/// Where the choice of endpoint came from, so errors can say which variable to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointOrigin {
    /// An environment variable (`CONTAINER_HOST` or `DOCKER_HOST`).
    Variable(&'static str),
    /// The first default socket that exists.
    DefaultSocket,
}

/// An endpoint and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    pub endpoint: Endpoint,
    pub origin: EndpointOrigin,
}

impl fmt::Display for ResolvedEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            EndpointOrigin::Variable(name) => write!(f, "`{}` (from `{name}`)", self.endpoint),
            EndpointOrigin::DefaultSocket => write!(f, "`{}` (default socket)", self.endpoint),
        }
    }
}

/// The variables read, in order of precedence.
const VARIABLES: [&str; 2] = ["CONTAINER_HOST", "DOCKER_HOST"];

/// Choose the daemon endpoint from the environment `env` (a lookup such as
/// `|name| std::env::var(name).ok()`); `is_socket` tells whether a default socket exists.
pub fn resolve_endpoint(
    env: &dyn Fn(&str) -> Option<String>,
    is_socket: &dyn Fn(&Path) -> bool,
) -> Result<ResolvedEndpoint, LocalSourceError> {
    for variable in VARIABLES {
        // An empty value means unset, as the docker CLI treats it.
        if let Some(value) = env(variable).filter(|value| !value.is_empty()) {
            let bad = |reason: String| LocalSourceError::BadDaemonHost {
                variable,
                value: value.clone(),
                reason,
            };
            let endpoint = parse_host(&value).map_err(bad)?;
            if matches!(endpoint, Endpoint::Tcp { .. })
                && env("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty())
            {
                return Err(bad(
                    "`DOCKER_TLS_VERIFY` asks for TLS, which isobuild does not speak to a daemon; \
                     use a Unix socket or plain HTTP"
                        .to_owned(),
                ));
            }
            return Ok(ResolvedEndpoint {
                endpoint,
                origin: EndpointOrigin::Variable(variable),
            });
        }
    }
    let tried = default_sockets(env);
    match tried.iter().find(|path| is_socket(path)) {
        Some(path) => Ok(ResolvedEndpoint {
            endpoint: Endpoint::Unix(path.clone()),
            origin: EndpointOrigin::DefaultSocket,
        }),
        None => Err(LocalSourceError::NoDaemonSocket { tried }),
    }
}

/// The sockets tried when no variable names one, in order: Docker, rootful Podman, rootless
/// Podman (only when `XDG_RUNTIME_DIR` is set).
pub fn default_sockets(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut sockets = vec![
        PathBuf::from("/var/run/docker.sock"),
        PathBuf::from("/run/podman/podman.sock"),
    ];
    if let Some(runtime) = env("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        sockets.push(Path::new(&runtime).join("podman/podman.sock"));
    }
    sockets
}

/// Parse one `DOCKER_HOST`-style value; the error is the reason, for the caller to wrap.
pub fn parse_host(value: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => (String::new(), value),
    };
    match scheme.as_str() {
        "unix" => unix_path(rest),
        "http+unix" => {
            if rest.starts_with('/') {
                unix_path(rest)
            } else {
                // The socket path is URL-encoded as the host; anything after it is a base
                // path, which daemons do not use.
                let (host, tail) = rest.split_once('/').unwrap_or((rest, ""));
                if !tail.is_empty() {
                    return Err(format!(
                        "a path after the socket (`/{tail}`) is not supported"
                    ));
                }
                unix_path(&percent_decode(host)?)
            }
        }
        "tcp" | "http" | "" => tcp(rest.strip_suffix('/').unwrap_or(rest)),
        "npipe" => Err("named pipes (`npipe://`) exist only on Windows".to_owned()),
        "https" => Err(
            "TLS (`https://`) to a daemon is not supported; use a Unix socket or plain HTTP"
                .to_owned(),
        ),
        "ssh" => Err(
            "`ssh://` is not supported; forward the socket (`ssh -L`) and use `unix://`".to_owned(),
        ),
        other => Err(format!(
            "unknown scheme `{other}://` (expected unix://, http+unix://, tcp://, http:// or host:port)"
        )),
    }
}

fn unix_path(path: &str) -> Result<Endpoint, String> {
    if path.is_empty() {
        return Err("the socket path is missing".to_owned());
    }
    if !path.starts_with('/') {
        return Err(format!("the socket path `{path}` is not absolute"));
    }
    Ok(Endpoint::Unix(PathBuf::from(path)))
}

fn tcp(address: &str) -> Result<Endpoint, String> {
    if address.is_empty() {
        return Err("the host is missing".to_owned());
    }
    if address.contains('/') {
        return Err(format!(
            "`{address}` is not `host:port` (a path after the address is not supported)"
        ));
    }
    // The port follows the last `:`, unless that colon is inside IPv6 brackets.
    let (host, port) = match address.rfind(':') {
        Some(colon) if !address[colon..].contains(']') => {
            let port = &address[colon + 1..];
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("`{port}` is not a port number"))?;
            (&address[..colon], port)
        }
        _ => (address, DEFAULT_TCP_PORT),
    };
    if host.is_empty() {
        return Err("the host is missing".to_owned());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "`{host}` looks like an IPv6 address: write it in brackets (`[{host}]:PORT`)"
        ));
    }
    Ok(Endpoint::Tcp {
        host: host.to_owned(),
        port,
    })
}

/// Decode `%XX` escapes (the socket path in `http+unix://%2F…`).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("`{text}` has a bad `%` escape"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{text}` does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn unix(path: &str) -> Endpoint {
        Endpoint::Unix(path.into())
    }

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn every_accepted_form() {
        let cases = [
            ("unix:///var/run/docker.sock", unix("/var/run/docker.sock")),
            (
                "unix:///run/user/1000/podman/podman.sock",
                unix("/run/user/1000/podman/podman.sock"),
            ),
            ("http+unix:///tmp/x.sock", unix("/tmp/x.sock")),
            (
                "http+unix://%2Frun%2Fpodman%2Fpodman.sock",
                unix("/run/podman/podman.sock"),
            ),
            (
                "http+unix://%2frun%2fpodman%2fpodman.sock/",
                unix("/run/podman/podman.sock"),
            ),
            ("tcp://10.0.0.1:2376", tcp("10.0.0.1", 2376)),
            ("tcp://docker", tcp("docker", 2375)),
            ("http://localhost:2375/", tcp("localhost", 2375)),
            ("localhost:2375", tcp("localhost", 2375)),
            ("tcp://[::1]:2375", tcp("[::1]", 2375)),
            ("tcp://[::1]", tcp("[::1]", 2375)),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_host(value), Ok(expected), "{value}");
        }
    }

    #[test]
    fn refused_forms_say_why() {
        let cases = [
            ("npipe:////./pipe/docker_engine", "only on Windows"),
            ("https://host:2376", "TLS"),
            ("ssh://me@host", "ssh -L"),
            ("ftp://x", "unknown scheme `ftp://`"),
            ("unix://", "missing"),
            ("unix://relative.sock", "not absolute"),
            ("tcp://host:port", "not a port number"),
            ("tcp://host:2375/v1.41", "path after the address"),
            ("http+unix://%2Fx.sock/v1", "path after the socket"),
            ("http+unix://%zz", "bad `%` escape"),
            ("::1:2375", "IPv6"),
        ];
        for (value, needle) in cases {
            let error = parse_host(value).unwrap_err();
            assert!(error.contains(needle), "{value}: {error}");
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn container_host_wins_over_docker_host() {
        let env = env_of(&[
            ("CONTAINER_HOST", "unix:///a.sock"),
            ("DOCKER_HOST", "unix:///b.sock"),
        ]);
        let resolved = resolve_endpoint(&env, &|_| false).unwrap();
        assert_eq!(resolved.endpoint, unix("/a.sock"));
        assert_eq!(resolved.origin, EndpointOrigin::Variable("CONTAINER_HOST"));
        assert_eq!(
            resolved.to_string(),
            "`unix:///a.sock` (from `CONTAINER_HOST`)"
        );
        let env = env_of(&[("CONTAINER_HOST", ""), ("DOCKER_HOST", "localhost:2375")]);
        let resolved = resolve_endpoint(&env, &|_| false).unwrap();
        assert_eq!(resolved.endpoint, tcp("localhost", 2375));
    }

    #[test]
    fn a_bad_variable_is_an_error_naming_it() {
        let env = env_of(&[("DOCKER_HOST", "npipe:////./pipe/docker_engine")]);
        let error = resolve_endpoint(&env, &|_| true).unwrap_err().to_string();
        assert!(error.contains("DOCKER_HOST"), "{error}");
        assert!(error.contains("npipe:////./pipe/docker_engine"), "{error}");
        let env = env_of(&[("DOCKER_HOST", "tcp://h:2376"), ("DOCKER_TLS_VERIFY", "1")]);
        let error = resolve_endpoint(&env, &|_| true).unwrap_err().to_string();
        assert!(error.contains("DOCKER_TLS_VERIFY"), "{error}");
    }

    #[test]
    fn default_sockets_in_order() {
        let env = env_of(&[("XDG_RUNTIME_DIR", "/run/user/1000")]);
        let resolved = resolve_endpoint(&env, &|path| path.starts_with("/run/user/1000")).unwrap();
        assert_eq!(resolved.endpoint, unix("/run/user/1000/podman/podman.sock"));
        assert_eq!(resolved.origin, EndpointOrigin::DefaultSocket);
        let resolved = resolve_endpoint(&env, &|_| true).unwrap();
        assert_eq!(resolved.endpoint, unix("/var/run/docker.sock"));
        let resolved = resolve_endpoint(&env, &|path| path.starts_with("/run/podman")).unwrap();
        assert_eq!(resolved.endpoint, unix("/run/podman/podman.sock"));
    }

    #[test]
    fn no_socket_lists_what_was_tried() {
        let env = env_of(&[("XDG_RUNTIME_DIR", "/run/user/7")]);
        let error = resolve_endpoint(&env, &|_| false).unwrap_err().to_string();
        for tried in [
            "/var/run/docker.sock",
            "/run/podman/podman.sock",
            "/run/user/7/podman/podman.sock",
        ] {
            assert!(error.contains(tried), "{error}");
        }
        let error = resolve_endpoint(&env_of(&[]), &|_| false)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("/run/user"), "{error}");
    }
}
