//! A private Podman API service for daemon-source tests: its own storage (vfs), run folder
//! and socket under a temporary folder, so tests never see or touch the machine's images.
//! It is killed when dropped. Images get in with `podman load` (no registry needed).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the service may take to answer `/_ping`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `/_ping` may take once connected.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `podman system service`.
pub struct Podman {
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// The loopback port it listens on instead of `socket`, when started with
    /// [`Podman::start_tcp`].
    port: Option<u16>,
    child: Child,
}

impl Podman {
    /// Start the service and wait until it answers. Panics with an install hint when podman
    /// is missing: CI installs it, so a silent skip would hide a broken setup.
    pub fn start() -> Self {
        Self::start_on(None)
    }

    /// Start the service on a free loopback TCP port (plain HTTP, as `DOCKER_HOST=host:port`
    /// setups use) instead of a socket.
    pub fn start_tcp() -> Self {
        // Bind port 0 to learn a free port, then free it for podman.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        Self::start_on(Some(port))
    }

    fn start_on(port: Option<u16>) -> Self {
        if Command::new("podman")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            panic!("podman is not installed; install it with `apt-get install podman`");
        }
        // A short path: Unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("isobuild-podman-")
            .tempdir_in("/tmp")
            .expect("temporary folder");
        let socket = dir.path().join("api.sock");
        let log = fs_err::File::create(dir.path().join("service.log")).unwrap();
        let listen = match port {
            Some(port) => format!("tcp://127.0.0.1:{port}"),
            None => format!("unix://{}", socket.display()),
        };
        let child = Self::base_command(dir.path())
            .args(["system", "service", "--time=0", &listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.into_parts().0)
            .spawn()
            .expect("start `podman system service`");
        let podman = Self {
            dir,
            socket,
            port,
            child,
        };
        podman.wait_ready();
        podman
    }

    /// `podman` with this instance's storage flags.
    fn base_command(dir: &Path) -> Command {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ]);
        command
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "podman service did not answer within {START_TIMEOUT:?}; its log:\n{}",
                fs_err::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ping(&self) -> bool {
        match self.port {
            Some(port) => std::net::TcpStream::connect(("127.0.0.1", port))
                .and_then(|stream| stream.set_read_timeout(Some(PING_TIMEOUT)).map(|()| stream))
                .is_ok_and(Self::ping_over),
            None => UnixStream::connect(&self.socket)
                .and_then(|stream| stream.set_read_timeout(Some(PING_TIMEOUT)).map(|()| stream))
                .is_ok_and(Self::ping_over),
        }
    }

    fn ping_over(mut stream: impl Read + Write) -> bool {
        if stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
    }

    /// The API socket (unused when started with [`Podman::start_tcp`]).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The loopback port, when started with [`Podman::start_tcp`].
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Run `podman ARGS` against this instance's storage; panics with its output on failure.
    pub fn run(&self, args: &[&str]) -> String {
        run_in(self.dir.path(), args)
    }
}

/// Run `podman ARGS` with its storage in `dir` and no service (`podman load`, `podman save`);
/// panics with its output on failure.
pub fn run_in(dir: &Path, args: &[&str]) -> String {
    let output = Podman::base_command(dir)
        .args(args)
        .output()
        .expect("podman is installed (apt-get install podman)");
    assert!(
        output.status.success(),
        "podman {args:?} failed\n--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
