//! Real peers the tests start: Debian's `docker-registry` (distribution 2.x) on a free
//! loopback port, with or without basic auth. Each peer lives in its own temporary folder
//! and is killed when dropped.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `docker-registry serve`.
pub(crate) struct Registry {
    child: Child,
    port: u16,
    credentials: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub(crate) fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry that wants basic auth as `username:password` (bcrypt htpasswd).
    pub(crate) fn start_with_auth(username: &str, password: &str) -> Self {
        Self::start_with(Some((username.to_owned(), password.to_owned())))
    }

    fn start_with(credentials: Option<(String, String)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("isobuild-registry-")
            .tempdir()
            .unwrap();
        let config_path = dir.path().join("config.yml");
        let log_path = dir.path().join("registry.log");
        // The port is free when probed but could be taken before the registry binds it:
        // try a few.
        for _ in 0..5 {
            let port = free_port();
            fs_err::write(&config_path, config(dir.path(), port, credentials.as_ref())).unwrap();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = match Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
            {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "`docker-registry` is not installed; the pull tests need it: \
                     `apt-get install docker-registry` (Debian/Ubuntu)"
                ),
                Err(e) => panic!("cannot start docker-registry: {e}"),
            };
            if wait_ready(&mut child, port) {
                return Self {
                    child,
                    port,
                    credentials,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            report_log(&fs_err::read_to_string(&log_path).unwrap_or_default());
        }
        panic!("docker-registry did not start in five tries");
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The credentials it wants, if any.
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ready once `/v2/` answers at all (200, or 401 with auth).
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let agent = super::images::agent();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(response) = agent.get(format!("http://127.0.0.1:{port}/v2/")).call() {
            let status = response.status().as_u16();
            if status == 200 || status == 401 {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[allow(clippy::print_stderr)]
fn report_log(log: &str) {
    eprintln!("docker-registry did not become ready; its log:\n{log}");
}

fn config(dir: &Path, port: u16, credentials: Option<&(String, String)>) -> String {
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        dir.join("data").display()
    );
    if let Some((username, password)) = credentials {
        // Cost 4, the minimum: the registry checks it on every request.
        let hash = bcrypt::hash_with_result(password, 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let htpasswd = dir.join("htpasswd");
        fs_err::write(&htpasswd, format!("{username}:{hash}\n")).unwrap();
        let _ = write!(
            config,
            "auth:\n  htpasswd:\n    realm: isobuild-test\n    path: {}\n",
            htpasswd.display()
        );
    }
    config
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
