//! Synthetic RPMs and repositories: rpmbuild makes the packages (several per spec, one
//! spec per repository, version and arch), createrepo_c the repositories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One synthetic package.
pub struct Rpm {
    pub repo: &'static str,
    pub name: &'static str,
    /// `[epoch:]version`
    pub version: &'static str,
    pub arch: &'static str,
    pub requires: &'static [&'static str],
    pub provides: &'static [&'static str],
    pub obsoletes: &'static [&'static str],
    pub files: &'static [&'static str],
}

pub const fn rpm(repo: &'static str, name: &'static str, version: &'static str) -> Rpm {
    Rpm {
        repo,
        name,
        version,
        arch: "noarch",
        requires: &[],
        provides: &[],
        obsoletes: &[],
        files: &[],
    }
}

/// Run `command`, panic with its error output when it fails.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| {
        panic!("cannot run {command:?} ({error}): install rpm, createrepo-c and dnf")
    });
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// One spec for packages of one repository, version and arch: the first is the main
/// package, the others subpackages (one rpmbuild run makes them all).
fn spec(group: &[&Rpm]) -> String {
    let first = group[0];
    let (epoch, version) = match first.version.split_once(':') {
        Some((epoch, version)) => (format!("Epoch: {epoch}\n"), version),
        None => (String::new(), first.version),
    };
    let mut spec = format!(
        "Name: {}\nVersion: {version}\nRelease: 1\n{epoch}Summary: t\nLicense: MIT\n",
        first.name
    );
    if first.arch == "noarch" {
        spec.push_str("BuildArch: noarch\n");
    }
    let mut files = String::new();
    let mut install = String::new();
    for (index, rpm) in group.iter().enumerate() {
        if index > 0 {
            spec.push_str(&format!("%package -n {}\nSummary: t\n", rpm.name));
        }
        spec.push_str("AutoReqProv: no\n");
        for (tag, values) in [
            ("Requires", rpm.requires),
            ("Provides", rpm.provides),
            ("Obsoletes", rpm.obsoletes),
        ] {
            for value in values {
                spec.push_str(&format!("{tag}: {value}\n"));
            }
        }
        if index == 0 {
            spec.push_str("%description\nt\n");
            files.push_str("%files\n");
        } else {
            spec.push_str(&format!("%description -n {}\nt\n", rpm.name));
            files.push_str(&format!("%files -n {}\n", rpm.name));
        }
        for file in rpm.files {
            install.push_str(&format!(
                "mkdir -p %{{buildroot}}$(dirname {file})\ntouch %{{buildroot}}{file}\n"
            ));
            files.push_str(&format!("{file}\n"));
        }
    }
    format!("{spec}%install\n{install}{files}")
}

/// Build every package and one repository per `repo` value (the one called `mod` gets
/// `modules_yaml`); returns repo id → folder.
pub fn make_repos(
    dir: &Path,
    rpms: &[Rpm],
    modules_yaml: &str,
    signer: Option<&Signer>,
) -> BTreeMap<String, PathBuf> {
    fs_err::create_dir_all(dir).unwrap();
    let top = dir.join("rpmbuild");
    let mut groups: BTreeMap<(&str, &str, &str), Vec<&Rpm>> = BTreeMap::new();
    for rpm in rpms {
        groups
            .entry((rpm.repo, rpm.version, rpm.arch))
            .or_default()
            .push(rpm);
    }
    let mut repos = BTreeMap::new();
    for (index, ((repo, _, arch), group)) in groups.iter().enumerate() {
        let out = top.join(format!("out-{index}"));
        let spec_path = dir.join(format!("{index}.spec"));
        fs_err::write(&spec_path, spec(group)).unwrap();
        let target = if *arch == "noarch" { "x86_64" } else { arch };
        run(Command::new("rpmbuild")
            .args(["--quiet", "--target", target, "--define"])
            .arg(format!("_topdir {}", top.display()))
            .args(["--define", "_build_id_links none", "--define"])
            .arg(format!("_rpmdir {}", out.display()))
            .arg("-bb")
            .arg(&spec_path));
        let repo = dir.join("repos").join(repo);
        fs_err::create_dir_all(repo.join("Packages")).unwrap();
        for built in walkdir::WalkDir::new(&out) {
            let built = built.unwrap().into_path();
            if !built.is_file() {
                continue;
            }
            let name = format!("{index}-{}", built.file_name().unwrap().to_str().unwrap());
            fs_err::rename(&built, repo.join("Packages").join(name)).unwrap();
        }
        repos.insert((*repo_name(&repo)).to_owned(), repo);
    }
    for (id, repo) in &repos {
        if let Some(signer) = signer {
            let files: Vec<PathBuf> = walkdir::WalkDir::new(repo)
                .into_iter()
                .map(|entry| entry.unwrap().into_path())
                .filter(|path| path.extension().is_some_and(|e| e == "rpm"))
                .collect();
            signer.sign(&files);
        }
        run(Command::new("createrepo_c")
            .args(["--quiet", "--no-database"])
            .arg(repo));
        if id == "mod" {
            let yaml = dir.join("modules.yaml");
            fs_err::write(&yaml, modules_yaml).unwrap();
            run(Command::new("modifyrepo_c")
                .arg("--mdtype=modules")
                .arg(&yaml)
                .arg(repo.join("repodata")));
        }
    }
    repos
}

fn repo_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

/// A throw-away GPG key (in its own GNUPGHOME) that signs RPMs with rpmsign.
pub struct Signer {
    home: tempfile::TempDir,
    /// The ASCII-armoured public key.
    pub public_key: String,
}

impl Signer {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::Builder::new()
            .prefix("isobuild-gpg-")
            .tempdir()
            .unwrap();
        fs_err::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        run(Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args(["--batch", "--passphrase", "", "--quick-gen-key"])
            .args([
                "isobuild test <test@isobuild.invalid>",
                "rsa2048",
                "sign",
                "never",
            ]));
        let public_key = run(Command::new("gpg").env("GNUPGHOME", home.path()).args([
            "--armor",
            "--export",
            "test@isobuild.invalid",
        ]));
        Self { home, public_key }
    }

    /// Write `<file>.asc`, an ASCII-armoured detached signature of `file` (as a repository
    /// signs its `repomd.xml`).
    pub fn detach_sign(&self, file: &Path) {
        let asc = PathBuf::from(format!("{}.asc", file.display()));
        let _ = fs_err::remove_file(&asc);
        run(Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--yes", "--local-user", "test@isobuild.invalid"])
            .args(["--detach-sign", "--armor", "--output"])
            .arg(&asc)
            .arg(file));
    }

    /// The key's fingerprint, lower-case hex.
    pub fn fingerprint(&self) -> String {
        let out = run(Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--with-colons", "--fingerprint", "test@isobuild.invalid"]));
        out.lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').find(|field| field.len() == 40))
            .unwrap()
            .to_lowercase()
    }

    /// Sign `files` in place.
    pub fn sign(&self, files: &[PathBuf]) {
        if files.is_empty() {
            return;
        }
        run(Command::new("rpmsign")
            .env("GNUPGHOME", self.home.path())
            .args(["--define", "__gpg /usr/bin/gpg", "--define"])
            .arg(format!("_gpg_path {}", self.home.path().display()))
            .args(["--define", "_gpg_name test@isobuild.invalid", "--addsign"])
            .args(files));
    }
}

/// Serve the folder `dir/repos` at `http://HOST/repos/` with nginx.
pub fn serve(dir: &Path) -> crate::harness::peers::Nginx {
    let rule = dir.join("repos.inc");
    fs_err::write(
        &rule,
        format!(
            "location /repos/ {{ alias {}/; }}\n",
            dir.join("repos").display()
        ),
    )
    .unwrap();
    crate::harness::peers::Nginx::start(&dir.join("repos"), "", &[rule.as_path()])
}

/// The RPM files under `dir`, relative to it, sorted.
pub fn rpm_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().is_file())
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "rpm"))
        .map(|entry| {
            let relative = entry.path().strip_prefix(dir).unwrap();
            relative.to_str().unwrap().to_owned()
        })
        .collect();
    files.sort();
    files
}

/// Parsed content of a repository's metadata, for comparison: (NEVRA, checksum, size,
/// location, provides, requires, primary files) per package.
pub fn repo_content(dir: &Path) -> Vec<String> {
    let repo = isobuild::rpm::LocalRepo::open("x", dir).unwrap();
    let mut packages: Vec<String> = repo
        .packages()
        .unwrap()
        .iter()
        .map(|package| {
            let provides: Vec<String> = package.provides.iter().map(ToString::to_string).collect();
            let requires: Vec<String> = package.requires.iter().map(ToString::to_string).collect();
            format!(
                "{} {} {} {} provides={provides:?} requires={requires:?} files={:?}",
                package.nevra(),
                package.checksum,
                package.size,
                package.location,
                package.files
            )
        })
        .collect();
    packages.sort();
    packages
}

/// createrepo_c is the oracle: the same RPMs copied to `scratch`, made a repository by it,
/// must read as `shipped` reads.
pub fn assert_same_as_createrepo(shipped: &Path, scratch: &Path) {
    let files = rpm_files(shipped);
    assert!(!files.is_empty(), "no RPM in {}", shipped.display());
    for file in &files {
        let dest = scratch.join(file);
        fs_err::create_dir_all(dest.parent().unwrap()).unwrap();
        fs_err::copy(shipped.join(file), dest).unwrap();
    }
    run(Command::new("createrepo_c")
        .args(["--quiet", "--no-database"])
        .arg(scratch));
    pretty_assertions::assert_eq!(repo_content(shipped), repo_content(scratch));
}

/// Every RPM under `dir` passes `rpmkeys --checksig` with `keys` imported (in a private
/// database under `scratch`).
pub fn assert_checksig(dir: &Path, keys: &[PathBuf], scratch: &Path) {
    let rpmdb = scratch.join("rpmdb");
    fs_err::create_dir_all(&rpmdb).unwrap();
    for key in keys {
        run(Command::new("rpmkeys")
            .arg("--dbpath")
            .arg(&rpmdb)
            .arg("--import")
            .arg(key));
    }
    for file in rpm_files(dir) {
        let out = run(Command::new("rpmkeys")
            .arg("--dbpath")
            .arg(&rpmdb)
            .arg("--checksig")
            .arg(dir.join(&file)));
        assert!(out.contains("digests signatures OK"), "{file}: {out}");
    }
}

/// A repository as a consumer's yum sees it.
pub struct ConsumerRepo<'a> {
    pub id: &'a str,
    pub dir: &'a Path,
    /// `None`: gpgcheck off (an unsigned built repository, as MetalK8s ships its own).
    pub key: Option<&'a Path>,
}

/// `dnf --installroot … install seeds` from `repos` (file:// URLs), in `scratch`; returns
/// the install root.
pub fn dnf_install(scratch: &Path, repos: &[ConsumerRepo<'_>], seeds: &[&str]) -> PathBuf {
    let root = scratch.join("installroot");
    let reposdir = scratch.join("consumer.repos.d");
    fs_err::create_dir_all(&reposdir).unwrap();
    let mut repo_file = String::new();
    for repo in repos {
        repo_file.push_str(&format!(
            "[{}]\nname={}\nbaseurl=file://{}\n",
            repo.id,
            repo.id,
            repo.dir.display()
        ));
        match repo.key {
            Some(key) => {
                repo_file.push_str(&format!("gpgcheck=1\ngpgkey=file://{}\n\n", key.display()));
            }
            None => repo_file.push_str("gpgcheck=0\n\n"),
        }
    }
    fs_err::write(reposdir.join("c.repo"), repo_file).unwrap();
    let conf = scratch.join("consumer.conf");
    fs_err::write(
        &conf,
        format!(
            "[main]\ncachedir={}\n",
            scratch.join("consumer-cache").display()
        ),
    )
    .unwrap();
    // dnf-plugins-core's `local` plugin (on by default) would add a `_dnf_local` repository
    // of every package dnf ever downloaded on this machine, other tests' included.
    run(Command::new("dnf")
        .args(["-y", "-q", "--disableplugin=local"])
        .arg(format!("--installroot={}", root.display()))
        .arg("-c")
        .arg(&conf)
        .arg(format!("--setopt=reposdir={}", reposdir.display()))
        .args([
            "--releasever=8",
            "--forcearch=x86_64",
            "--nodocs",
            "install",
        ])
        .args(seeds));
    root
}
