//! The RPM half of the bench (issue 14): isobuild against dnf on the same repositories,
//! served by nginx on loopback, side by side in one run.
//!
//! - Resolution: an EPEL-sized repository (`--quick`: a small one) plus two OS
//!   repositories, their `primary.xml.gz`, `filelists.xml.gz` and `repomd.xml` written
//!   directly (no RPM files behind them: resolution reads only metadata), with realistic
//!   requirements: versioned ones, virtual provides (sonames, `perl(…)`), file requires
//!   (`/usr/bin/…` answered by primary, `/usr/share/…` only by filelists), rich `or`/`if`
//!   expressions, requirements into the OS, a few nothing provides, and every tenth package
//!   in two versions. `isobuild lock` against `dnf repoquery --requires --resolve --recursive
//!   --latest-limit=1` in a hermetic `--installroot`, both with empty caches.
//! - Downloads: a repository of real, signed RPMs (one `rpmbuild` run makes them all as
//!   subpackages of one spec, one `rpmsign` call signs them, `createrepo_c` indexes them); the
//!   seed requires all of them. `isobuild fetch --locked` (checksums and signatures checked)
//!   against `dnf download` of the same names, both with empty caches.
//! - A no-op `isobuild build --locked` of the downloaded repository (target ≤ 0.3 s).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use isobuild::reference::Digest;
use isobuild_testkit::peers::Nginx;

use super::measure::{self, Job, Usage};
use super::report::escape;
use super::{remove, sync_disks};

/// Sizes of the generated repositories.
struct Sizes {
    epel: usize,
    os: usize,
    downloads: usize,
    seeds: usize,
}

const FULL: Sizes = Sizes {
    epel: 20_000,
    os: 6_000,
    downloads: 500,
    seeds: 20,
};

const QUICK: Sizes = Sizes {
    epel: 600,
    os: 200,
    downloads: 20,
    seeds: 5,
};

/// Packages of one dependency cluster: requirements stay inside their cluster (or go to the
/// core cluster or the OS), so a seed's closure is a few dozen to a few hundred packages,
/// as MetalK8s' are.
const CLUSTER: usize = 100;

/// The generated repositories, served, and the inputs of both contenders.
pub(super) struct RpmBench {
    dir: PathBuf,
    isobuild: PathBuf,
    _nginx: Nginx,
    seeds: Vec<String>,
    downloads: Vec<String>,
    /// Packages in the EPEL-sized repository.
    pub(super) epel_packages: usize,
}

/// A package of the generated metadata.
struct Generated {
    name: String,
    version: &'static str,
    arch: &'static str,
    provides: Vec<String>,
    /// `(name, Some((flags, version)))`
    requires: Vec<(String, Option<(&'static str, &'static str)>)>,
    /// Files primary lists (`/usr/bin/…`).
    primary_files: Vec<String>,
    /// Files only filelists lists.
    other_files: Vec<String>,
}

/// A small deterministic generator (an LCG): the same repository every run.
struct Random(u64);

impl Random {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        #[allow(clippy::cast_possible_truncation, reason = "a value below `below`")]
        let value = ((self.0 >> 33) % below.max(1) as u64) as usize;
        value
    }
}

fn os_packages(count: usize, first: usize) -> Vec<Generated> {
    (first..first + count)
        .map(|index| {
            let mut requires = Vec::new();
            if index > 0 {
                requires.push((format!("libos{}.so.1()(64bit)", index / 2), None));
            }
            let mut primary_files = Vec::new();
            if index % 10 == 0 {
                primary_files.push(format!("/usr/bin/os-tool{index}"));
            }
            if index == 0 {
                primary_files.push("/bin/sh".to_owned());
            }
            Generated {
                name: format!("os-lib{index}"),
                version: "1.0",
                arch: "x86_64",
                provides: vec![format!("libos{index}.so.1()(64bit)")],
                requires,
                primary_files,
                other_files: vec![format!("/usr/lib64/libos{index}.so.1")],
            }
        })
        .collect()
}

fn epel_packages(count: usize, os: usize) -> Vec<Generated> {
    let mut random = Random(14);
    let mut packages = Vec::new();
    for index in 0..count {
        let cluster = index / CLUSTER * CLUSTER;
        let mut requires = Vec::new();
        if index > cluster {
            for _ in 0..=random.next(4) {
                let target = cluster + random.next(index - cluster);
                let other = cluster + random.next(index - cluster);
                let requirement = match random.next(10) {
                    0 | 1 => (format!("e{target}"), Some(("GE", "1.0"))),
                    2 => (format!("libe{}.so.0()(64bit)", target / 3 * 3), None),
                    3 => (format!("/usr/bin/e{}", target / 4 * 4), None),
                    4 => (format!("(e{target} or e{other})"), None),
                    5 => (format!("(e{target} if e{other})"), None),
                    6 => (format!("libos{}.so.1()(64bit)", random.next(os)), None),
                    7 => (format!("perl(E::M{})", target / 7 * 7), None),
                    8 => (format!("e{}", random.next(CLUSTER.min(count))), None),
                    _ => (format!("e{target}"), None),
                };
                requires.push(requirement);
            }
        }
        if index % 97 == 5 {
            requires.push((
                format!("/usr/share/e{}/data", index / CLUSTER * CLUSTER),
                None,
            ));
        }
        if index % 1000 == 999 {
            requires.push(("nothing-provides-this".to_owned(), None));
        }
        let mut provides = Vec::new();
        if index % 3 == 0 {
            provides.push(format!("libe{index}.so.0()(64bit)"));
        }
        if index % 7 == 0 {
            provides.push(format!("perl(E::M{index})"));
        }
        let mut primary_files = Vec::new();
        if index % 4 == 0 {
            primary_files.push(format!("/usr/bin/e{index}"));
        }
        let other_files = if index % CLUSTER == 0 {
            vec![format!("/usr/share/e{index}/data")]
        } else {
            Vec::new()
        };
        let arch = if index % 5 == 0 { "noarch" } else { "x86_64" };
        let versions: &[&'static str] = if index % 10 == 0 {
            &["1.0", "1.1"]
        } else {
            &["1.0"]
        };
        for version in versions {
            packages.push(Generated {
                name: format!("e{index}"),
                version,
                arch,
                provides: provides.clone(),
                requires: requires.clone(),
                primary_files: primary_files.clone(),
                other_files: other_files.clone(),
            });
        }
    }
    packages
}

/// Write `repo/repodata/` for `packages`: primary, filelists, repomd.xml.
fn write_metadata(repo: &Path, packages: &[Generated]) -> Result<()> {
    let repodata = repo.join("repodata");
    fs_err::create_dir_all(&repodata)?;
    let mut primary = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata xmlns=\"http://linux.duke.edu/metadata/common\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\" packages=\"{}\">\n",
        packages.len()
    );
    let mut filelists = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<filelists xmlns=\"http://linux.duke.edu/metadata/filelists\" packages=\"{}\">\n",
        packages.len()
    );
    for package in packages {
        let nevra = format!(
            "{}-{}-1.el8.{}",
            package.name, package.version, package.arch
        );
        let pkgid = Digest::of(nevra.as_bytes());
        let pkgid = pkgid.hex();
        let _ = write!(
            primary,
            "<package type=\"rpm\"><name>{name}</name><arch>{arch}</arch><version epoch=\"0\" ver=\"{ver}\" rel=\"1.el8\"/><checksum type=\"sha256\" pkgid=\"YES\">{pkgid}</checksum><summary>s</summary><description>d</description><packager/><url/><time file=\"1700000000\" build=\"1700000000\"/><size package=\"8000\" installed=\"20000\" archive=\"20000\"/><location href=\"Packages/{first}/{nevra}.rpm\"/><format><rpm:license>MIT</rpm:license><rpm:vendor/><rpm:group>Unspecified</rpm:group><rpm:buildhost>bench</rpm:buildhost><rpm:sourcerpm>{name}-{ver}-1.el8.src.rpm</rpm:sourcerpm><rpm:header-range start=\"4504\" end=\"7000\"/><rpm:provides><rpm:entry name=\"{name}\" flags=\"EQ\" epoch=\"0\" ver=\"{ver}\" rel=\"1.el8\"/>",
            name = package.name,
            arch = package.arch,
            ver = package.version,
            first = &package.name[..1],
        );
        for provide in &package.provides {
            let _ = write!(primary, "<rpm:entry name=\"{}\"/>", escape(provide));
        }
        primary.push_str("</rpm:provides>");
        if !package.requires.is_empty() {
            primary.push_str("<rpm:requires>");
            for (name, version) in &package.requires {
                match version {
                    Some((flags, ver)) => {
                        let _ = write!(
                            primary,
                            "<rpm:entry name=\"{}\" flags=\"{flags}\" epoch=\"0\" ver=\"{ver}\"/>",
                            escape(name)
                        );
                    }
                    None => {
                        let _ = write!(primary, "<rpm:entry name=\"{}\"/>", escape(name));
                    }
                }
            }
            primary.push_str("</rpm:requires>");
        }
        for file in &package.primary_files {
            let _ = write!(primary, "<file>{file}</file>");
        }
        primary.push_str("</format></package>\n");
        let _ = write!(
            filelists,
            "<package pkgid=\"{pkgid}\" name=\"{}\" arch=\"{}\"><version epoch=\"0\" ver=\"{}\" rel=\"1.el8\"/>",
            package.name, package.arch, package.version
        );
        for file in package.primary_files.iter().chain(&package.other_files) {
            let _ = write!(filelists, "<file>{file}</file>");
        }
        filelists.push_str("</package>\n");
    }
    primary.push_str("</metadata>\n");
    filelists.push_str("</filelists>\n");
    let mut repomd = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<repomd xmlns=\"http://linux.duke.edu/metadata/repo\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\">\n  <revision>1700000000</revision>\n",
    );
    for (kind, text) in [("primary", &primary), ("filelists", &filelists)] {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(text.as_bytes())?;
        let gz = encoder.finish()?;
        let digest = Digest::of(&gz);
        let open = Digest::of(text.as_bytes());
        let name = format!("{}-{kind}.xml.gz", digest.hex());
        fs_err::write(repodata.join(&name), &gz)?;
        let _ = write!(
            repomd,
            "  <data type=\"{kind}\">\n    <checksum type=\"sha256\">{}</checksum>\n    <open-checksum type=\"sha256\">{}</open-checksum>\n    <location href=\"repodata/{name}\"/>\n    <timestamp>1700000000</timestamp>\n    <size>{}</size>\n    <open-size>{}</open-size>\n  </data>\n",
            digest.hex(),
            open.hex(),
            gz.len(),
            text.len()
        );
    }
    repomd.push_str("</repomd>\n");
    fs_err::write(repodata.join("repomd.xml"), repomd)?;
    Ok(())
}

fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `count` real RPMs, signed with a throw-away key, in `repo/`, indexed by createrepo_c;
/// returns their names (the first requires all the others) and writes the public key as
/// `repo/RPM-GPG-KEY-bench`.
fn make_download_repo(dir: &Path, repo: &Path, count: usize) -> Result<Vec<String>> {
    let names: Vec<String> = (0..count).map(|index| format!("dl-{index}")).collect();
    let mut spec = format!(
        "Name: dl-0\nVersion: 1.0\nRelease: 1\nSummary: b\nLicense: MIT\nAutoReqProv: no\n{}\n%description\nb\n",
        names[1..]
            .iter()
            .map(|name| format!("Requires: {name}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for name in &names[1..] {
        let _ = write!(
            spec,
            "%package -n {name}\nSummary: b\nAutoReqProv: no\n%description -n {name}\nb\n"
        );
    }
    spec.push_str("%install\n");
    for name in &names {
        // Some bytes each, different in every package, stored rather than compressed (the
        // bench measures transfers, not rpmbuild).
        let _ = writeln!(
            spec,
            "mkdir -p %{{buildroot}}/usr/share/{name} && head -c 32768 /dev/urandom > %{{buildroot}}/usr/share/{name}/data"
        );
    }
    let _ = write!(spec, "%files\n/usr/share/dl-0/data\n");
    for name in &names[1..] {
        let _ = write!(spec, "%files -n {name}\n/usr/share/{name}/data\n");
    }
    let spec_path = dir.join("dl.spec");
    fs_err::write(&spec_path, spec)?;
    let top = dir.join("rpmbuild");
    let out = repo.join("Packages");
    fs_err::create_dir_all(&out)?;
    let built = dir.join("built");
    run(Command::new("rpmbuild")
        .args(["--quiet", "--target", "x86_64", "--define"])
        .arg(format!("_topdir {}", top.display()))
        .args(["--define", "_build_id_links none"])
        .args(["--define", "_binary_payload w0.gzdio"])
        .arg("--define")
        .arg(format!("_rpmdir {}", built.display()))
        .arg("-bb")
        .arg(&spec_path))?;
    // rpmbuild writes `<arch>/<file>`: flat under `Packages/`.
    for arch in fs_err::read_dir(&built)? {
        for file in fs_err::read_dir(arch?.path())? {
            let file = file?;
            fs_err::rename(file.path(), out.join(file.file_name()))?;
        }
    }
    let home = dir.join("gnupg");
    fs_err::create_dir_all(&home)?;
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let gpg = |args: &[&str]| {
        run(Command::new("gpg")
            .env("GNUPGHOME", &home)
            .arg("--batch")
            .args(args))
    };
    gpg(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        "bench <bench@isobuild.invalid>",
        "rsa2048",
        "sign",
        "never",
    ])?;
    let public = gpg(&["--armor", "--export", "bench@isobuild.invalid"])?;
    fs_err::write(repo.join("RPM-GPG-KEY-bench"), public)?;
    let files: Vec<PathBuf> = fs_err::read_dir(&out)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<_>>()?;
    if files.len() != count {
        bail!("rpmbuild made {} packages, not {count}", files.len());
    }
    run(Command::new("rpmsign")
        .env("GNUPGHOME", &home)
        .args(["--define", "__gpg /usr/bin/gpg", "--define"])
        .arg(format!("_gpg_path {}", home.display()))
        .args(["--define", "_gpg_name bench@isobuild.invalid", "--addsign"])
        .args(&files))?;
    run(Command::new("createrepo_c")
        .args(["--quiet", "--no-database"])
        .arg(repo))?;
    Ok(names)
}

/// Generate the repositories under `work/rpm`, serve them, write both contenders' inputs.
pub(super) fn prepare(work: &Path, isobuild: &Path, quick: bool) -> Result<RpmBench> {
    let sizes = if quick { QUICK } else { FULL };
    let dir = work.join("rpm");
    remove(&dir)?;
    let repos = dir.join("repos");
    // Two OS repositories (BaseOS, AppStream) that resolve but never ship, and EPEL.
    let os = os_packages(sizes.os, 0);
    let (baseos, appstream) = os.split_at(sizes.os / 2);
    write_metadata(&repos.join("baseos"), baseos)?;
    write_metadata(&repos.join("appstream"), appstream)?;
    let epel = epel_packages(sizes.epel, sizes.os);
    write_metadata(&repos.join("epel"), &epel)?;
    let downloads = make_download_repo(&dir, &repos.join("dl"), sizes.downloads)?;

    let rule = dir.join("rpm.inc");
    fs_err::write(
        &rule,
        format!("location /rpm/ {{ alias {}/; }}\n", repos.display()),
    )?;
    let nginx = Nginx::start(&repos, "", &[rule.as_path()]);
    let host = nginx.host();
    let mut random = Random(8);
    let seeds: Vec<String> = (0..sizes.seeds)
        .map(|_| {
            let cluster = random.next(sizes.epel / CLUSTER) * CLUSTER;
            format!(
                "e{}",
                cluster + CLUSTER.min(sizes.epel) - 1 - random.next(10)
            )
        })
        .collect();
    let header = "isobuild: 1\nname: BenchRpm\nversion: 1.0.0\nepoch: 1700000000\n";
    let resolve = format!(
        "{header}iso:\n  root: tree-resolve\n  output: iso/resolve.iso\npackages:\n  releasever: 8\n  basearch: x86_64\n  seeds: [{}]\n  repos:\n    - id: baseos\n      baseurl: http://{host}/rpm/baseos/\n    - id: appstream\n      baseurl: http://{host}/rpm/appstream/\n    - id: epel\n      baseurl: http://{host}/rpm/epel/\n      dest: packages/epel\n      key_prefix: RPM-GPG-KEY-bench\n",
        seeds.join(", ")
    );
    fs_err::write(dir.join("resolve.yaml"), resolve)?;
    let download = format!(
        "{header}iso:\n  root: tree-download\n  output: iso/download.iso\n  volume_id: BenchRpm\npackages:\n  releasever: 8\n  basearch: x86_64\n  seeds: [dl-0]\n  repos:\n    - id: dl\n      baseurl: http://{host}/rpm/dl/\n      gpgkey: [http://{host}/rpm/dl/RPM-GPG-KEY-bench]\n      dest: packages/dl\n      key_prefix: RPM-GPG-KEY-bench\n"
    );
    fs_err::write(dir.join("download.yaml"), download)?;
    // dnf's side: one config, one repo file per question.
    let dnf = dir.join("dnf");
    fs_err::create_dir_all(dnf.join("resolve.repos.d"))?;
    fs_err::create_dir_all(dnf.join("download.repos.d"))?;
    fs_err::write(
        dnf.join("dnf.conf"),
        format!(
            "[main]\ngpgcheck=0\ncachedir={}\nmodule_platform_id=platform:el8\n",
            dnf.join("cache").display()
        ),
    )?;
    let repo =
        |id: &str| format!("[{id}]\nname={id}\nbaseurl=http://{host}/rpm/{id}/\ngpgcheck=0\n");
    fs_err::write(
        dnf.join("resolve.repos.d/bench.repo"),
        ["baseos", "appstream", "epel"].map(repo).join("\n"),
    )?;
    fs_err::write(dnf.join("download.repos.d/bench.repo"), repo("dl"))?;
    let bench = RpmBench {
        dir,
        isobuild: isobuild.to_owned(),
        _nginx: nginx,
        seeds,
        downloads,
        epel_packages: epel.len(),
    };
    // The download recipe's lock, made once: `fetch --locked` is what is measured.
    let locked = bench.isobuild_job(&["lock", "download.yaml"], "cache-lock");
    measure::run(&locked, &bench.dir)?;
    Ok(bench)
}

impl RpmBench {
    fn isobuild_job(&self, args: &[&str], cache: &str) -> Job {
        let mut all = args.to_vec();
        all.extend(["--cache-dir", cache, "--progress", "none", "-q"]);
        Job::new(&self.isobuild, &all, &self.dir)
    }

    fn dnf_job(&self, question: &str, args: &[&str]) -> Job {
        let dnf = self.dir.join("dnf");
        let mut all = vec![
            "-q".to_owned(),
            // Not dnf-plugins-core's `local`, which keeps a copy of what dnf fetched.
            "--disableplugin=local".to_owned(),
            format!("--installroot={}", dnf.join("root").display()),
            "-c".to_owned(),
            dnf.join("dnf.conf").display().to_string(),
            format!(
                "--setopt=reposdir={}",
                dnf.join(format!("{question}.repos.d")).display()
            ),
            "--releasever=8".to_owned(),
            "--forcearch=x86_64".to_owned(),
        ];
        all.extend(args.iter().map(|arg| (*arg).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Job::new("dnf", &all, &self.dir)
    }

    /// Empty dnf's cache and install root, and isobuild's `cache`; then `sync`, so that no
    /// measure pays for the writeback of the one before (as the image half does).
    fn cold(&self, cache: &str) -> Result<()> {
        remove(&self.dir.join("dnf/cache"))?;
        remove(&self.dir.join("dnf/root"))?;
        fs_err::create_dir_all(self.dir.join("dnf/root"))?;
        remove(&self.dir.join(cache))?;
        sync_disks()
    }

    /// `isobuild lock` of the EPEL-sized recipe, cold; and how many packages it locked.
    pub(super) fn resolve_isobuild(&self) -> Result<(Usage, usize)> {
        self.cold("cache-resolve")?;
        let usage = measure::run(
            &self.isobuild_job(&["lock", "resolve.yaml"], "cache-resolve"),
            &self.dir,
        )?;
        let lock = fs_err::read_to_string(self.dir.join("resolve.yaml.lock"))?;
        Ok((usage, lock.matches("nevra:").count()))
    }

    /// `dnf repoquery --requires --resolve --recursive --latest-limit=1` of the same seeds,
    /// cold.
    pub(super) fn resolve_dnf(&self) -> Result<Usage> {
        self.cold("cache-resolve")?;
        let mut args = vec![
            "repoquery",
            "--requires",
            "--resolve",
            "--recursive",
            "--latest-limit=1",
        ];
        args.extend(self.seeds.iter().map(String::as_str));
        measure::run(&self.dnf_job("resolve", &args), &self.dir)
    }

    /// Whether dnf's closure (its EPEL packages in the shipped arches, plus the seeds) is the
    /// set `isobuild lock` last wrote: `(dnf's count, isobuild's count, equal)`. Not timed.
    pub(super) fn closures_agree(&self) -> Result<(usize, usize, bool)> {
        let job = self.dnf_job("resolve", &[]);
        let mut args = job.args.clone();
        args.extend(
            [
                "repoquery",
                "--requires",
                "--resolve",
                "--recursive",
                "--latest-limit=1",
                "--qf",
                "%{name}-%{version}-%{release}.%{arch} %{repoid}",
            ]
            .map(str::to_owned),
        );
        args.extend(self.seeds.iter().cloned());
        let output = run(Command::new("dnf").args(&args).current_dir(&self.dir))?;
        let lock = fs_err::read_to_string(self.dir.join("resolve.yaml.lock"))?;
        let ours: std::collections::BTreeSet<String> = lock
            .lines()
            .filter_map(|line| line.trim().trim_start_matches("- ").strip_prefix("nevra: "))
            .map(str::to_owned)
            .collect();
        let mut theirs: std::collections::BTreeSet<String> = output
            .lines()
            .filter_map(|line| line.strip_suffix(" epel"))
            .filter(|nevra| {
                nevra
                    .rsplit_once('.')
                    .is_none_or(|(_, arch)| arch != "i686")
            })
            .map(str::to_owned)
            .collect();
        // repoquery lists what the seeds need; MetalK8s asks for the seeds themselves apart.
        theirs.extend(
            ours.iter()
                .filter(|nevra| {
                    self.seeds
                        .iter()
                        .any(|seed| nevra.starts_with(&format!("{seed}-")))
                })
                .cloned(),
        );
        Ok((theirs.len(), ours.len(), theirs == ours))
    }

    /// `isobuild fetch --locked` of the download closure into an empty cache.
    pub(super) fn download_isobuild(&self) -> Result<Usage> {
        self.cold("cache-download")?;
        measure::run(
            &self.isobuild_job(&["fetch", "download.yaml", "--locked"], "cache-download"),
            &self.dir,
        )
    }

    /// `dnf download` of the same packages, cold.
    pub(super) fn download_dnf(&self) -> Result<Usage> {
        self.cold("cache-download")?;
        let dest = self.dir.join("dnf-download");
        remove(&dest)?;
        sync_disks()?;
        let dest_arg = format!("--destdir={}", dest.display());
        let mut args = vec!["download", dest_arg.as_str()];
        args.extend(self.downloads.iter().map(String::as_str));
        let usage = measure::run(&self.dnf_job("download", &args), &self.dir)?;
        let got = fs_err::read_dir(&dest)?.count();
        if got != self.downloads.len() {
            bail!(
                "dnf download fetched {got} packages, not {}",
                self.downloads.len()
            );
        }
        remove(&dest)?;
        Ok(usage)
    }

    /// A second `isobuild build --locked` after a first one (from the download's cache).
    pub(super) fn noop(&self) -> Result<Usage> {
        let build = self.isobuild_job(&["build", "download.yaml", "--locked"], "cache-download");
        measure::run(&build, &self.dir)?;
        sync_disks()?;
        let usage = measure::run(&build, &self.dir)?;
        for dir in ["tree-download", "iso"] {
            remove(&self.dir.join(dir))?;
        }
        Ok(usage)
    }

    /// How many RPMs the download closure has.
    pub(super) fn download_count(&self) -> usize {
        self.downloads.len()
    }

    /// How many seeds resolution starts from.
    pub(super) fn seed_count(&self) -> usize {
        self.seeds.len()
    }
}
