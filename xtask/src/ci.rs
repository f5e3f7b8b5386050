//! `cargo xtask ci`: install the test peers if missing, then fmt, clippy, tests, a quick
//! bench and docs.
//!
//! CI (`.ci/run`) and people run exactly this command. The integration tests start real peers
//! (docker-registry, nginx, skopeo, xorriso, podman), so the Debian packages that provide them
//! are installed first when any is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A Debian package and a binary it provides (to check presence), or an absolute path it
/// installs (for packages without a binary, such as Python modules).
pub(crate) type Peer = (&'static str, &'static str);

/// Debian packages the tests need.
const PEERS: &[Peer] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("xorriso", "xorriso"),
    ("nginx-light", "nginx"),
    ("podman", "podman"),
    ("isomd5sum", "implantisomd5"),
    ("libarchive-tools", "bsdtar"),
    ("rpm", "rpmbuild"),
    ("createrepo-c", "createrepo_c"),
    ("dnf", "dnf"),
    // `dnf download`, the bench's baseline for RPM downloads.
    (
        "dnf-plugins-core",
        "/usr/lib/python3/dist-packages/dnf-plugins/download.py",
    ),
    ("gpg", "gpg"),
    // The throwaway CA of the TLS registry tests (tests/it/registries.rs).
    ("openssl", "openssl"),
    // Container tasks and image builds (tests/it/containers.rs); their base image is
    // Debian's static busybox.
    ("buildah", "buildah"),
    ("busybox-static", "busybox"),
    // MetalK8s' own buildchain code, run as the reference of the recipe's tree (tests/it/
    // metalk8s_doit.rs): Debian's python3 with PyYAML, and jinja2 for salt's map.jinja. The
    // SBOM test also validates with cyclonedx-python-lib in a venv (see below).
    ("python3", "/usr/bin/python3"),
    (
        "python3-yaml",
        "/usr/lib/python3/dist-packages/yaml/__init__.py",
    ),
    (
        "python3-jinja2",
        "/usr/lib/python3/dist-packages/jinja2/__init__.py",
    ),
    // The `--report` file checked against its JSON Schema (tests/it/harness: draft 2020-12).
    (
        "python3-jsonschema",
        "/usr/lib/python3/dist-packages/jsonschema/__init__.py",
    ),
    // The progress screen captured on a 14-row terminal (tests/it/progress.rs).
    ("tmux", "tmux"),
];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let skip_install = args.iter().any(|arg| arg == "--no-install");
    let root = workspace_root()?;
    if !skip_install {
        install_peers(PEERS)?;
        install_cyclonedx_validator(&root)?;
    }
    step(&root, "cargo", &["fmt", "--all", "--", "--check"], &[])?;
    step(
        &root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    if has_nextest() {
        step(
            &root,
            "cargo",
            &["nextest", "run", "--workspace", "--profile", "ci"],
            &[],
        )?;
    } else {
        step(&root, "cargo", &["test", "--workspace"], &[])?;
    }
    // Timings in CI mean little; this keeps the bench working (see `bench`).
    let mut bench = vec!["--quick".to_owned()];
    if skip_install {
        bench.push("--no-install".to_owned());
    }
    crate::bench::run(&bench)?;
    step(
        &root,
        "cargo",
        &[
            "doc",
            "--workspace",
            "--no-deps",
            "--document-private-items",
        ],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

pub(crate) fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest_dir
        .parent()
        .context("xtask has no parent folder")?
        .to_owned())
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

/// `apt-get install` the peers whose binary is missing (once `apt-get update`). `demo` and
/// `bench` call it with the peers they start.
pub(crate) fn install_peers(peers: &[Peer]) -> Result<()> {
    let missing: Vec<&str> = peers
        .iter()
        .filter(|(_, binary)| {
            // `join` of an absolute path is that path: the check of a file a package installs.
            !on_path(binary) && !Path::new("/usr/sbin").join(binary).is_file()
        })
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    install_packages(&missing)
}

/// The CycloneDX validator the SBOM test runs (`tests/it/inspect.rs`): the official
/// `cyclonedx-python-lib` from PyPI, in the venv under `target/tmp/` where the test looks for
/// it (the test makes it itself when it is missing, so this only moves the download out of it).
fn install_cyclonedx_validator(root: &Path) -> Result<()> {
    let venv = root.join("target/tmp/cyclonedx-venv");
    let works = |program: &Path, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if works(
        &venv.join("bin/python"),
        &["-c", "import cyclonedx.validation.json"],
    ) {
        return Ok(());
    }
    // Debian's python3 makes venvs only with python3-venv (which brings ensurepip).
    if !works(Path::new("python3"), &["-c", "import ensurepip"]) {
        install_packages(&["python3-venv"])?;
    }
    let venv_arg = venv.display().to_string();
    step(root, "python3", &["-m", "venv", &venv_arg], &[])?;
    let pip = venv.join("bin/pip").display().to_string();
    step(
        root,
        &pip,
        &["install", "-q", "cyclonedx-python-lib[json-validation]"],
        &[],
    )
}

/// `apt-get install` `packages` (once `apt-get update`).
fn install_packages(missing: &[&str]) -> Result<()> {
    eprintln!("xtask: installing {}", missing.join(" "));
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let run_apt = |args: &[&str]| -> Result<()> {
        let mut argv: Vec<&str> = sudo.to_vec();
        argv.push("apt-get");
        argv.extend_from_slice(args);
        let status = Command::new(argv[0])
            .args(&argv[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("cannot run {}", argv.join(" ")))?;
        if !status.success() {
            bail!("`{}` failed ({status})", argv.join(" "));
        }
        Ok(())
    };
    run_apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(missing);
    run_apt(&install)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

pub(crate) fn step(root: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
