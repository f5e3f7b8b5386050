//! Running containers and building images with buildah, without a daemon.
//!
//! This module owns every buildah invocation. Each [`Session`] is a private buildah storage
//! (vfs driver, chroot isolation) in a temporary folder under isobuild's cache, with its own
//! generated `storage.conf`, `registries.conf`, signature policy and `TMPDIR`: the user's
//! containers storage and configuration are never read or written, and dropping the session
//! (success, failure or Ctrl-C) kills what it started and removes the folder, containers and
//! all. Images reach buildah only from isobuild: `dir:` folders written from the cache, or
//! archives; nothing is pulled from a registry, and a build runs with `--pull-never`.
//!
//! Without network, a command runs in a new, empty network namespace (`unshare --net`):
//! buildah's chroot isolation cannot drop the network itself.

pub mod containerfile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// What can go wrong running buildah.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("cannot prepare buildah's storage under `{}`: {source}", path.display())]
    Setup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `{program}` (is buildah installed? `apt-get install buildah`): {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {status}{}", tail(.output))]
    Failed {
        what: String,
        status: String,
        output: String,
    },
}

/// The last lines of a command's output, for an error message.
fn tail(output: &str) -> String {
    const LINES: usize = 20;
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut text = String::from("; its output ends with:");
    for line in &lines[lines.len().saturating_sub(LINES)..] {
        text.push_str("\n    ");
        text.push_str(line);
    }
    text
}

/// A private buildah storage, removed on drop.
///
/// Its folder `session-X` has a lock file beside it, `session-X.lock`, held while the
/// session lives: a session whose lock nobody holds was left by a killed run (`SIGKILL`
/// skips every cleanup), and the next session removes it.
pub struct Session {
    dir: tempfile::TempDir,
    _lock: std::fs::File,
    /// Process groups still running, killed on drop (Ctrl-C drops the session mid-run).
    running: std::sync::Mutex<Vec<u32>>,
}

/// One bind mount of a container run.
#[derive(Debug, Clone)]
pub struct Mount {
    pub host: PathBuf,
    pub container: String,
    pub writable: bool,
}

/// What to run in a container.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub mounts: Vec<Mount>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub env: BTreeMap<String, String>,
    pub network: bool,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub context: PathBuf,
    /// The Containerfile buildah reads (isobuild's rewrite of the recipe's).
    pub containerfile: PathBuf,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub epoch: i64,
    pub network: bool,
    /// Where the `oci-archive` goes.
    pub output: PathBuf,
}

/// What a command printed.
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

impl Session {
    /// A new storage under `cache_root/containers/`.
    pub fn new(cache_root: &Path) -> Result<Self, ContainerError> {
        let parent = cache_root.join("containers");
        let setup = |source| ContainerError::Setup {
            path: parent.clone(),
            source,
        };
        fs_err::create_dir_all(&parent).map_err(setup)?;
        remove_stale_sessions(&parent);
        let dir = tempfile::Builder::new()
            .prefix("session-")
            .tempdir_in(&parent)
            .map_err(setup)?;
        let mut lock_name = dir.path().as_os_str().to_owned();
        lock_name.push(".lock");
        let lock = crate::fs::lock_exclusive(Path::new(&lock_name), || {}).map_err(setup)?;
        let session = Self {
            dir,
            _lock: lock,
            running: std::sync::Mutex::new(Vec::new()),
        };
        let root = session.scratch();
        for sub in ["root", "run", "tmp"] {
            fs_err::create_dir_all(root.join(sub)).map_err(setup)?;
        }
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            root.join("root").display(),
            root.join("run").display()
        );
        // No search registries and no mirrors: every image is named in full and already in
        // this storage, so nothing can send buildah to a registry.
        let registries = "unqualified-search-registries = []\nshort-name-mode = \"enforcing\"\n";
        let policy = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;
        for (name, text) in [
            ("storage.conf", storage.as_str()),
            ("registries.conf", registries),
            ("policy.json", policy),
        ] {
            crate::fs::write_atomic(&root.join(name), text.as_bytes(), 0o644).map_err(setup)?;
        }
        Ok(session)
    }

    /// The session's folder, for what isobuild hands to buildah (removed with it).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// `buildah pull SOURCE` (a `dir:`, `oci-archive:`, `docker-archive:` or `oci:` source);
    /// returns the image ID.
    pub async fn pull(&self, source: &str) -> Result<String, ContainerError> {
        let output = self
            .buildah(
                &["pull", "--quiet", source],
                false,
                &format!("loading `{source}`"),
            )
            .await?;
        Ok(output.stdout.trim().to_owned())
    }

    /// `buildah tag ID NAME`.
    pub async fn tag(&self, id: &str, name: &str) -> Result<(), ContainerError> {
        self.buildah(&["tag", id, name], false, &format!("naming `{name}`"))
            .await
            .map(drop)
    }

    /// Make a container of `image` and run `spec` in it; the container is removed after.
    pub async fn run(&self, image: &str, spec: &RunSpec) -> Result<Output, ContainerError> {
        let name = format!("isobuild-{}", fastrand::u64(..));
        self.buildah(
            &["from", "--pull-never", "--quiet", "--name", &name, image],
            false,
            &format!("making a container of `{image}`"),
        )
        .await?;
        let mut args: Vec<String> = vec!["run".into(), "--isolation".into(), "chroot".into()];
        for mount in &spec.mounts {
            let mode = if mount.writable { "rw" } else { "ro" };
            args.push("--volume".into());
            args.push(format!(
                "{}:{}:{mode}",
                mount.host.display(),
                mount.container
            ));
        }
        if let Some(workdir) = &spec.workdir {
            args.extend(["--workingdir".into(), workdir.clone()]);
        }
        if let Some(user) = &spec.user {
            args.extend(["--user".into(), user.clone()]);
        }
        for (key, value) in &spec.env {
            args.extend(["--env".into(), format!("{key}={value}")]);
        }
        args.push(name.clone());
        args.push("--".into());
        args.extend(spec.argv.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = self
            .buildah(
                &args,
                spec.network,
                &format!("command `{}`", spec.argv.join(" ")),
            )
            .await;
        // The storage goes with the session anyway; removing the container now keeps a long
        // session small.
        let _ = self
            .buildah(&["rm", &name], false, "removing the container")
            .await;
        result
    }

    /// `buildah build` of `spec` into an `oci-archive`, with dates from the epoch.
    pub async fn build(&self, spec: &BuildSpec) -> Result<Output, ContainerError> {
        let mut args: Vec<String> = [
            "build",
            "--pull-never",
            "--isolation",
            "chroot",
            "--layers=false",
            "--timestamp",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(spec.epoch.to_string());
        args.push("--file".into());
        args.push(spec.containerfile.display().to_string());
        for (key, value) in &spec.args {
            args.extend(["--build-arg".into(), format!("{key}={value}")]);
        }
        if let Some(target) = &spec.target {
            args.extend(["--target".into(), target.clone()]);
        }
        args.push("--tag".into());
        args.push(format!("oci-archive:{}", spec.output.display()));
        args.push(spec.context.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.buildah(&args, spec.network, "`buildah build`").await
    }

    async fn buildah(
        &self,
        args: &[&str],
        network: bool,
        what: &str,
    ) -> Result<Output, ContainerError> {
        let root = self.scratch();
        let mut argv: Vec<String> = Vec::new();
        if !network {
            argv.extend(["unshare".into(), "--net".into()]);
        }
        argv.extend([
            "buildah".into(),
            "--root".into(),
            root.join("root").display().to_string(),
            "--runroot".into(),
            root.join("run").display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
        ]);
        let sub = args.first().copied().unwrap_or_default();
        argv.push(sub.to_owned());
        if matches!(sub, "pull" | "from" | "build") {
            argv.push("--signature-policy".into());
            argv.push(root.join("policy.json").display().to_string());
        }
        argv.extend(args.iter().skip(1).map(|arg| (*arg).to_owned()));
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env("CONTAINERS_STORAGE_CONF", root.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", root.join("registries.conf"))
            .env("BUILDAH_ISOLATION", "chroot")
            .env("TMPDIR", root.join("tmp"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a cancelled run takes buildah's children along.
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|source| ContainerError::Spawn {
            program: argv[0].clone(),
            source,
        })?;
        let pid = child.id();
        if let Some(pid) = pid {
            self.running.lock().expect("not poisoned").push(pid);
        }
        let output = child.wait_with_output().await;
        if let Some(pid) = pid {
            self.running
                .lock()
                .expect("not poisoned")
                .retain(|&p| p != pid);
        }
        let output = output.map_err(|source| ContainerError::Spawn {
            program: argv[0].clone(),
            source,
        })?;
        let result = Output {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if output.status.success() {
            return Ok(result);
        }
        Err(ContainerError::Failed {
            what: what.to_owned(),
            status: crate::plan::describe_status(output.status),
            output: format!("{}\n{}", result.stdout, result.stderr),
        })
    }
}

/// Remove the sessions of runs that died without cleaning up: their lock is free.
fn remove_stale_sessions(parent: &Path) {
    let Ok(entries) = fs_err::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Some(folder) = path
            .to_str()
            .and_then(|p| p.strip_suffix(".lock"))
            .map(PathBuf::from)
        else {
            continue;
        };
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        if fs4::FileExt::try_lock(&file).is_ok() {
            make_removable(&folder);
            let _ = std::fs::remove_dir_all(&folder);
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// vfs layers hold read-only folders; make them writable so that a removal succeeds.
fn make_removable(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
    {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let running = std::mem::take(
            &mut *self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for pgid in running {
            // std has no killpg and this crate forbids `unsafe`: kill(1) signals the group.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        make_removable(self.dir.path());
        let mut lock = self.dir.path().as_os_str().to_owned();
        lock.push(".lock");
        let _ = std::fs::remove_file(lock);
    }
}
