//! Real peers the tests start: Debian's `docker-registry` (distribution 2.x) on a free
//! loopback port, with or without basic auth, over plain HTTP or over TLS with a throwaway
//! CA ([`Ca`], made with `openssl`), optionally asking for client certificates. Each peer
//! lives in its own temporary folder and is killed when dropped.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use isobuild::reference::Digest;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `docker-registry serve`.
pub struct Registry {
    child: Child,
    port: u16,
    credentials: Option<(String, String)>,
    dir: tempfile::TempDir,
}

/// A throwaway certificate authority, with a server certificate for `127.0.0.1` and
/// `localhost` and a client certificate, all made by `openssl` in a temporary folder.
pub struct Ca {
    dir: tempfile::TempDir,
}

impl Ca {
    pub fn new() -> Self {
        Self::for_names("IP:127.0.0.1,DNS:localhost")
    }

    /// A CA whose server certificate is for `names` only (an openssl `subjectAltName`
    /// value), to make a certificate that does not match the host.
    pub fn for_names(names: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("isobuild-ca-")
            .tempdir()
            .unwrap();
        let run = |args: &[&str]| {
            let output = match Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
            {
                Ok(output) => output,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    panic!(
                        "`openssl` is not installed; the TLS tests need it: `apt-get install openssl`"
                    )
                }
                Err(e) => panic!("cannot run openssl: {e}"),
            };
            assert!(
                output.status.success(),
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let key = ["-newkey", "rsa:2048", "-nodes"];
        run(&[
            &["req", "-x509"][..],
            &key,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=isobuild test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat());
        fs_err::write(
            dir.path().join("server.ext"),
            format!(
                "subjectAltName={names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        fs_err::write(
            dir.path().join("client.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for (name, cert) in [("server", "server.crt"), ("client", "client.cert")] {
            run(&[
                &["req"][..],
                &key,
                &[
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat());
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                cert,
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        Self { dir }
    }

    /// The CA certificate (PEM), what a client must trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The client certificate and key (PEM), docker's `client.cert` and `client.key`.
    pub fn client_pair(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("client.cert"),
            self.dir.path().join("client.key"),
        )
    }

    fn server_pair(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.crt"),
            self.dir.path().join("server.key"),
        )
    }
}

impl Default for Ca {
    fn default() -> Self {
        Self::new()
    }
}

/// How a registry serves TLS: `ca`'s server certificate, and whether it wants a client
/// certificate signed by `ca` (distribution's `http.tls.clientcas`).
#[derive(Clone, Copy)]
pub struct Tls<'a> {
    pub ca: &'a Ca,
    pub client_certificates: bool,
}

/// What a registry started by [`Registry::start_with_options`] does differently.
#[derive(Default)]
pub struct Options<'a> {
    /// Basic auth as `username:password`.
    pub credentials: Option<(String, String)>,
    /// HTTPS instead of plain HTTP.
    pub tls: Option<Tls<'a>>,
    /// Serve the storage of this registry (push to it over plain HTTP, pull from this one
    /// over TLS) instead of its own.
    pub storage_of: Option<&'a Registry>,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry that wants basic auth as `username:password` (bcrypt htpasswd).
    pub fn start_with_auth(username: &str, password: &str) -> Self {
        Self::start_with(Some((username.to_owned(), password.to_owned())))
    }

    /// An anonymous registry whose folder (config, log, storage) is made inside `parent`
    /// rather than the system's temporary folder: the bench keeps its gigabyte of blobs on
    /// the disk it measures, under a folder it cleans itself.
    pub fn start_in(parent: &Path) -> Self {
        Self::start_at(
            tempfile::Builder::new()
                .prefix("registry-")
                .tempdir_in(parent)
                .unwrap(),
            None,
        )
    }

    fn start_with(credentials: Option<(String, String)>) -> Self {
        Self::start_with_options(&Options {
            credentials,
            ..Options::default()
        })
    }

    /// A registry with TLS, auth or another registry's storage.
    pub fn start_with_options(options: &Options<'_>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("isobuild-registry-")
            .tempdir()
            .unwrap();
        Self::start_at_with(dir, options)
    }

    fn start_at(dir: tempfile::TempDir, credentials: Option<(String, String)>) -> Self {
        Self::start_at_with(
            dir,
            &Options {
                credentials,
                ..Options::default()
            },
        )
    }

    fn start_at_with(dir: tempfile::TempDir, options: &Options<'_>) -> Self {
        let credentials = options.credentials.clone();
        let storage = options.storage_of.map_or_else(
            || dir.path().join("data"),
            |other| other.dir.path().join("data"),
        );
        let config_path = dir.path().join("config.yml");
        let log_path = dir.path().join("registry.log");
        // The port is free when probed but could be taken before the registry binds it:
        // try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut tls_text = String::new();
            if let Some(tls) = options.tls {
                let (cert, key) = tls.ca.server_pair();
                let _ = write!(
                    tls_text,
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                );
                if tls.client_certificates {
                    let _ = write!(
                        tls_text,
                        "    clientcas:\n      - {}\n",
                        tls.ca.ca_cert().display()
                    );
                }
            }
            let text = config(dir.path(), &storage, port, credentials.as_ref(), &tls_text);
            fs_err::write(&config_path, text).unwrap();
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
            // Ready once `/v2/` answers at all: 200, or 401 with auth; a TLS server answers
            // plain HTTP with 400.
            let ready: fn(u16) -> bool = if options.tls.is_some() {
                |status| status == 400
            } else {
                |status| matches!(status, 200 | 401)
            };
            if wait_http(&mut child, port, "/v2/", ready) {
                return Self {
                    child,
                    port,
                    credentials,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            report_log(&fs_err::read_to_string(&log_path).unwrap_or_default());
        }
        panic!("docker-registry did not start in five tries");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Where the registry keeps a blob's bytes (distribution's filesystem driver layout).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// What the registry logged (its standard error): access lines, and for a TLS registry
    /// each failed handshake.
    pub fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The credentials it wants, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
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

#[allow(clippy::print_stderr)]
fn report_log(log: &str) {
    eprintln!("docker-registry did not become ready; its log:\n{log}");
}

fn config(
    dir: &Path,
    storage: &Path,
    port: u16,
    credentials: Option<&(String, String)>,
    tls: &str,
) -> String {
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n{tls}",
        storage.display()
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
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `nginx` serving an ISO tree as a MetalK8s node does: the generated rule files
/// included in a server block that sets the server-root variable to the tree's `images/`.
pub struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Serve `images_dir` (the tree's `images/`) with `variable` (`$metalk8s_…_images`, or
    /// empty when the rules use a literal path) and the include files `rules`.
    pub fn start(images_dir: &Path, variable: &str, rules: &[&Path]) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("isobuild-nginx-")
            .tempdir()
            .unwrap();
        // Workers run as `nobody`: every folder above the served files must be searchable.
        let mut up = Some(images_dir);
        while let Some(folder) = up {
            if folder == Path::new("/") {
                break;
            }
            let mode = fs_err::metadata(folder).unwrap().permissions().mode();
            if mode & 0o005 != 0o005 {
                fs_err::set_permissions(folder, std::fs::Permissions::from_mode(mode | 0o755))
                    .unwrap();
            }
            up = folder.parent();
        }
        for _ in 0..5 {
            let port = free_port();
            let mut server = String::new();
            if !variable.is_empty() {
                let _ = writeln!(
                    server,
                    "        set {variable} \"{}/\";",
                    images_dir.display()
                );
            }
            for rule in rules {
                let _ = writeln!(server, "        include {};", rule.display());
            }
            let prefix = dir.path();
            // One process: a killed master leaves no orphaned worker serving the port.
            let conf = format!(
                "master_process off;\n\
                 error_log {prefix}/error.log warn;\n\
                 pid {prefix}/nginx.pid;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n\
                 \x20   access_log {prefix}/access.log;\n\
                 \x20   client_body_temp_path {prefix}/body;\n\
                 \x20   proxy_temp_path {prefix}/proxy;\n\
                 \x20   fastcgi_temp_path {prefix}/fastcgi;\n\
                 \x20   uwsgi_temp_path {prefix}/uwsgi;\n\
                 \x20   scgi_temp_path {prefix}/scgi;\n\
                 \x20   default_type application/octet-stream;\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 {server}\
                 \x20   }}\n\
                 }}\n",
                prefix = prefix.display()
            );
            let conf_path = prefix.join("nginx.conf");
            fs_err::write(&conf_path, conf).unwrap();
            let mut child = match Command::new("nginx")
                .arg("-c")
                .arg(&conf_path)
                .arg("-p")
                .arg(format!("{}/", prefix.display()))
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "`nginx` is not installed; the layout tests need it: \
                     `apt-get install nginx-light` (Debian/Ubuntu)"
                ),
                Err(e) => panic!("cannot start nginx: {e}"),
            };
            // Any answer will do: the rules decide what `/v2/` says.
            if wait_http(&mut child, port, "/v2/", |_| true) {
                return Self { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "nginx did not start; its log:\n{}",
                    fs_err::read_to_string(dir.path().join("error.log")).unwrap_or_default()
                );
            }
        }
        panic!("nginx did not start in five tries");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// nginx's error log, for failure messages.
    pub fn error_log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `child` answers `GET path` on `port` with a status `ready` accepts within 15 s
/// (false as soon as it exits).
fn wait_http(child: &mut Child, port: u16, path: &str, ready: fn(u16) -> bool) -> bool {
    let agent = crate::images::agent();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(response) = agent.get(format!("http://127.0.0.1:{port}{path}")).call()
            && ready(response.status().as_u16())
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Run `skopeo ARGS` (with `--insecure-policy`, so no policy file is needed) and return its
/// standard output; panic with its error output when it fails.
pub fn skopeo(args: &[&str]) -> String {
    let output = match Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`skopeo` is not installed; the layout tests need it: `apt-get install skopeo`")
        }
        Err(e) => panic!("cannot run skopeo: {e}"),
    };
    assert!(
        output.status.success(),
        "skopeo {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
