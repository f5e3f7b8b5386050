//! `packages:` end to end: signed synthetic RPMs in createrepo_c repositories served by
//! nginx; `isobuild lock`, `layout` and `--locked` through the real binary; the shipped
//! repository checked against createrepo_c's metadata for the same RPMs, installed from
//! by dnf with gpgcheck on, and every RPM checked with `rpmkeys --checksig`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use isobuild::rpm::LocalRepo;

use crate::harness::Test;
use crate::harness::peers::Nginx;
use crate::harness::rpms::{Rpm, Signer, make_repos, rpm, run};

pub(crate) fn universe() -> Vec<Rpm> {
    vec![
        Rpm {
            requires: &["os-lib", "dep", "/usr/bin/dep-tool", "libz-common"],
            ..rpm("epel", "app", "1.0")
        },
        rpm("epel", "dep", "1.0"),
        Rpm {
            files: &["/usr/bin/dep-tool"],
            ..rpm("epel", "dep-tool", "1.0")
        },
        rpm("epel", "unrelated", "1.0"),
        // The OS has the newest os-lib: nothing ships for it.
        rpm("epel", "os-lib", "1.0"),
        Rpm {
            requires: &["os-base"],
            ..rpm("os", "os-lib", "2.0")
        },
        rpm("os", "os-base", "1.0"),
        // Multilib: only the x86_64 build ships.
        Rpm {
            provides: &["libz-common"],
            ..Rpm {
                arch: "x86_64",
                ..rpm("epel", "libz", "1.0")
            }
        },
        Rpm {
            provides: &["libz-common"],
            ..Rpm {
                arch: "i686",
                ..rpm("epel", "libz", "1.0")
            }
        },
    ]
}

/// Serve `repos` (a folder of repositories) at `http://HOST/repos/`.
pub(crate) fn serve(dir: &Path) -> Nginx {
    let rule = dir.join("repos.inc");
    fs_err::write(
        &rule,
        format!(
            "location /repos/ {{ alias {}/; }}\n",
            dir.join("repos").display()
        ),
    )
    .unwrap();
    Nginx::start(&dir.join("repos"), "", &[rule.as_path()])
}

fn recipe(host: &str) -> String {
    format!(
        "isobuild: 1
name: Test
version: 1.0.0
epoch: 1700000000
iso:
  root: root
packages:
  releasever: 8
  basearch: x86_64
  seeds: [app]
  repos:
    - id: os
      baseurl: https://mirror.invalid/repos/os/
    - id: epel
      baseurl: http://{host}/repos/$basearch-epel/
      gpgkey: [http://{host}/repos/epel/RPM-GPG-KEY-test]
      dest: packages/redhat/8/metalk8s-epel-el8
      key_prefix: RPM-GPG-KEY-metalk8s-epel-8
"
    )
}

pub(crate) struct Project {
    pub(crate) test: Test,
    pub(crate) nginx: Nginx,
    pub(crate) repos: BTreeMap<String, PathBuf>,
    pub(crate) signer: Signer,
}

fn project() -> Project {
    project_with(&universe())
}

/// Signed repositories of `rpms` served by nginx, and the recipe that ships `epel`.
pub(crate) fn project_with(rpms: &[Rpm]) -> Project {
    let test = Test::new();
    let signer = Signer::new();
    let repos = make_repos(test.path(), rpms, "", Some(&signer));
    fs_err::write(repos["epel"].join("RPM-GPG-KEY-test"), &signer.public_key).unwrap();
    // `$basearch` in the recipe's URL must be replaced for this one to answer.
    std::os::unix::fs::symlink(&repos["epel"], test.path().join("repos/x86_64-epel")).unwrap();
    let nginx = serve(test.path());
    let test = test.recipe(&recipe(&nginx.host()));
    Project {
        test,
        nginx,
        repos,
        signer,
    }
}

pub(crate) fn mirror(nginx: &Nginx) -> String {
    format!("https://mirror.invalid/=http://{}/", nginx.host())
}

pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| {
            entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

/// Parsed content of a repository's metadata, for comparison: (NEVRA, checksum, size,
/// location, provides, requires, primary files).
fn content(dir: &Path) -> Vec<String> {
    let repo = LocalRepo::open("x", dir).unwrap();
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

#[test]
fn lock_layout_and_consume_a_shipped_repository() {
    let Project {
        test,
        nginx,
        repos,
        signer,
    } = project();
    let mirror = mirror(&nginx);
    let locked = test
        .run(["lock", "recipe.yaml", "--mirror", &mirror])
        .success();
    let lock = test.read("recipe.yaml.lock");
    assert!(lock.contains("nevra: app-1.0-1.noarch"), "{lock}\n{locked}");
    for shipped in [
        "dep-1.0-1.noarch",
        "dep-tool-1.0-1.noarch",
        "libz-1.0-1.x86_64",
    ] {
        assert!(lock.contains(shipped), "{shipped} not in\n{lock}");
    }
    for not_shipped in ["os-lib", "os-base", "unrelated", "i686"] {
        assert!(!lock.contains(not_shipped), "{not_shipped} in\n{lock}");
    }

    test.run([
        "layout",
        "recipe.yaml",
        "out",
        "--locked",
        "--mirror",
        &mirror,
        "-q",
    ])
    .success();
    let shipped = test.path().join("out/packages/redhat/8/metalk8s-epel-el8");
    let files = names(&shipped);
    assert!(
        files.contains(&"RPM-GPG-KEY-metalk8s-epel-8_1".to_owned()),
        "{files:#?}"
    );
    assert!(
        files.contains(&"repodata/repomd.xml".to_owned()),
        "{files:#?}"
    );
    assert_eq!(
        files.iter().filter(|file| is_rpm(file)).count(),
        4,
        "{files:#?}"
    );
    assert_eq!(
        fs_err::read_to_string(shipped.join("RPM-GPG-KEY-metalk8s-epel-8_1")).unwrap(),
        signer.public_key
    );

    // createrepo_c on the same RPMs is the oracle for the metadata.
    let oracle = test.path().join("oracle");
    for file in files.iter().filter(|file| is_rpm(file)) {
        let dest = oracle.join(file);
        fs_err::create_dir_all(dest.parent().unwrap()).unwrap();
        fs_err::copy(shipped.join(file), dest).unwrap();
    }
    run(Command::new("createrepo_c")
        .args(["--quiet", "--no-database"])
        .arg(&oracle));
    assert_eq!(content(&shipped), content(&oracle));

    // Every shipped RPM passes rpmkeys --checksig with the shipped key.
    let rpmdb = test.path().join("rpmdb");
    fs_err::create_dir_all(&rpmdb).unwrap();
    run(Command::new("rpmkeys")
        .arg("--dbpath")
        .arg(&rpmdb)
        .arg("--import")
        .arg(shipped.join("RPM-GPG-KEY-metalk8s-epel-8_1")));
    for file in files.iter().filter(|file| is_rpm(file)) {
        let out = run(Command::new("rpmkeys")
            .arg("--dbpath")
            .arg(&rpmdb)
            .arg("--checksig")
            .arg(shipped.join(file)));
        assert!(out.contains("digests signatures OK"), "{file}: {out}");
    }

    // The consumer: dnf installs the seed from the shipped repo plus the OS repo, gpgcheck on.
    let root = test.path().join("installroot");
    let reposdir = test.path().join("consumer.repos.d");
    fs_err::create_dir_all(&reposdir).unwrap();
    fs_err::write(
        reposdir.join("c.repo"),
        format!(
            "[metalk8s-epel]\nname=e\nbaseurl=file://{}\ngpgcheck=1\ngpgkey=file://{}\n\n[os]\nname=os\nbaseurl=file://{}\ngpgcheck=1\ngpgkey=file://{}\n",
            shipped.display(),
            shipped.join("RPM-GPG-KEY-metalk8s-epel-8_1").display(),
            repos["os"].display(),
            shipped.join("RPM-GPG-KEY-metalk8s-epel-8_1").display(),
        ),
    )
    .unwrap();
    let conf = test.path().join("consumer.conf");
    fs_err::write(
        &conf,
        format!(
            "[main]\ncachedir={}\n",
            test.path().join("consumer-cache").display()
        ),
    )
    .unwrap();
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
            "app",
        ]));
    assert!(root.join("usr/bin/dep-tool").exists());

    // Reproducible, and offline from the cache: a second tree from the same lock is byte
    // for byte the same.
    drop(nginx);
    test.run([
        "layout",
        "recipe.yaml",
        "again",
        "--locked",
        "--offline",
        "-q",
    ])
    .success();
    assert_eq!(
        crate::harness::tree_contents(&shipped),
        crate::harness::tree_contents(
            &test
                .path()
                .join("again/packages/redhat/8/metalk8s-epel-el8")
        )
    );
}

pub(crate) fn is_rpm(file: &str) -> bool {
    Path::new(file)
        .extension()
        .is_some_and(|extension| extension == "rpm")
}

/// Every file under the cache's blobs, by name.
pub(crate) fn cached(cache: &Path) -> Vec<String> {
    let blobs = cache.join("blobs-v1/sha256");
    if !blobs.exists() {
        return Vec::new();
    }
    names(&blobs)
}

#[test]
fn faults_are_clear_errors() {
    let Project {
        test,
        nginx,
        repos,
        signer,
    } = project();
    let mirror = mirror(&nginx);
    test.run(["lock", "recipe.yaml", "--mirror", &mirror, "-q"])
        .success();
    let lock = test.read("recipe.yaml.lock");
    let epel = &repos["epel"];
    let packages = epel.join("Packages");
    let dep = fs_err::read_dir(&packages)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_str().unwrap().ends_with("-dep-1.0-1.noarch.rpm"))
        .unwrap();
    let original = fs_err::read(&dep).unwrap();
    let dep_sha = isobuild::reference::Digest::of(&original);
    let layout = |cache: &str| {
        let cache = test.path().join(cache);
        let run = test.run([
            "layout",
            "recipe.yaml",
            "out",
            "--locked",
            "--mirror",
            &mirror,
            "--cache-dir",
            cache.to_str().unwrap(),
            "-q",
        ]);
        (run, cache)
    };

    // A corrupt RPM: refused, named, and not in the cache.
    let mut corrupt = original.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    fs_err::write(&dep, &corrupt).unwrap();
    let (failed, cache) = layout("cache-corrupt");
    let failed = failed.failure(1).stderr_contains("dep-1.0-1.noarch");
    assert!(
        failed.stderr.contains("checksum") || failed.stderr.contains("digest"),
        "{failed}"
    );
    assert!(!cached(&cache).contains(&dep_sha.hex().to_owned()));

    // A 404 mid-download: the URL is named.
    fs_err::remove_file(&dep).unwrap();
    let (failed, _) = layout("cache-404");
    failed.failure(1).stderr_contains("404");
    fs_err::write(&dep, &original).unwrap();

    // A tampered primary.xml: its checksum in repomd.xml no longer matches.
    let repodata = epel.join("repodata");
    let primary = fs_err::read_dir(&repodata)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_str().unwrap().ends_with("primary.xml.gz"))
        .unwrap();
    let saved = fs_err::read(&primary).unwrap();
    let mut tampered = saved.clone();
    tampered.push(0);
    fs_err::write(&primary, &tampered).unwrap();
    test.run([
        "lock",
        "recipe.yaml",
        "--mirror",
        &mirror,
        "--cache-dir",
        test.path().join("cache-tampered").to_str().unwrap(),
    ])
    .failure(1)
    .stderr_contains("primary.xml.gz` is not what its metadata says");
    fs_err::write(&primary, &saved).unwrap();
    assert_eq!(
        test.read("recipe.yaml.lock"),
        lock,
        "a failed lock left the lock file alone"
    );

    // The repository changes between lock and build.
    let more = test.path().join("more");
    let built = make_repos(&more, &[rpm("epel", "newcomer", "1.0")], "", Some(&signer));
    for entry in fs_err::read_dir(built["epel"].join("Packages")).unwrap() {
        let entry = entry.unwrap();
        fs_err::copy(entry.path(), packages.join(entry.file_name())).unwrap();
    }
    run(Command::new("createrepo_c")
        .args(["--quiet", "--no-database"])
        .arg(epel));
    let (failed, _) = layout("cache-changed");
    failed
        .failure(1)
        .stderr_contains("changed since it was locked");
}

#[test]
fn a_package_signed_by_another_key_is_refused() {
    let Project {
        test,
        nginx,
        repos,
        signer: _signer,
    } = project();
    let mirror = mirror(&nginx);
    // `dep` rebuilt and signed by a key the repository does not list.
    let other = Signer::new();
    let built = make_repos(
        &test.path().join("evil"),
        &[rpm("epel", "dep", "1.0")],
        "",
        Some(&other),
    );
    let packages = repos["epel"].join("Packages");
    for entry in fs_err::read_dir(&packages).unwrap() {
        let path = entry.unwrap().path();
        if path.to_str().unwrap().ends_with("-dep-1.0-1.noarch.rpm") {
            fs_err::remove_file(path).unwrap();
        }
    }
    let evil = fs_err::read_dir(built["epel"].join("Packages"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let evil_sha = isobuild::reference::Digest::of(&fs_err::read(&evil).unwrap());
    fs_err::copy(&evil, packages.join("evil-dep-1.0-1.noarch.rpm")).unwrap();
    run(Command::new("createrepo_c")
        .args(["--quiet", "--no-database"])
        .arg(&repos["epel"]));
    // `lock` reads each package's header (not its payload) and refuses it already: nothing
    // is locked.
    test.run(["lock", "recipe.yaml", "--mirror", &mirror, "-q"])
        .failure(1)
        .stderr_contains("package `dep-1.0-1.noarch` from repository `epel` is refused")
        .stderr_contains("RPM-GPG-KEY-test");
    assert!(!test.path().join("recipe.yaml.lock").exists());
    // Unlocked, `layout` resolves the same way and refuses it the same way.
    test.run(["layout", "recipe.yaml", "out", "--mirror", &mirror, "-q"])
        .failure(1)
        .stderr_contains("package `dep-1.0-1.noarch` from repository `epel` is refused");
    assert!(!cached(&test.cache_dir()).contains(&evil_sha.hex().to_owned()));
}
