//! `packages:` end to end: signed synthetic RPMs in createrepo_c repositories served by
//! nginx; `isobuild lock`, `layout` and `--locked` through the real binary; the shipped
//! repository checked against createrepo_c's metadata for the same RPMs, installed from
//! by dnf with gpgcheck on, and every RPM checked with `rpmkeys --checksig`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::peers::Nginx;
use crate::harness::rpms::{
    self, ConsumerRepo, Rpm, Signer, assert_checksig, assert_same_as_createrepo, dnf_install,
    make_repos, rpm, run,
};
use crate::harness::{Run, Test};

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
    let nginx = rpms::serve(test.path());
    let test = test.recipe(&recipe(&nginx.host()));
    Project {
        test,
        nginx,
        repos,
        signer,
    }
}

/// `layout --locked` of `recipe.yaml` into `out` through `mirror`, with the cache folder
/// `cache` under the test's folder: the run and that folder.
pub(crate) fn layout_locked_in(test: &Test, mirror: &str, cache: &str) -> (Run, PathBuf) {
    let cache = test.path().join(cache);
    let run = test.run([
        "layout",
        "recipe.yaml",
        "out",
        "--locked",
        "--mirror",
        mirror,
        "--cache-dir",
        cache.to_str().unwrap(),
        "-q",
    ]);
    (run, cache)
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
    assert_same_as_createrepo(&shipped, &test.path().join("oracle"));
    // Every shipped RPM passes rpmkeys --checksig with the shipped key.
    let key = shipped.join("RPM-GPG-KEY-metalk8s-epel-8_1");
    assert_checksig(&shipped, std::slice::from_ref(&key), test.path());
    // The consumer: dnf installs the seed from the shipped repo plus the OS repo, gpgcheck on.
    let root = dnf_install(
        test.path(),
        &[
            ConsumerRepo {
                id: "metalk8s-epel",
                dir: &shipped,
                key: Some(&key),
            },
            ConsumerRepo {
                id: "os",
                dir: &repos["os"],
                key: Some(&key),
            },
        ],
        &["app"],
    );
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
    let layout = |cache: &str| layout_locked_in(&test, &mirror, cache);

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

/// A spec that makes two RPMs: `tool` (x86_64, needs epel's `dep`) and `tool-data`
/// (noarch), as MetalK8s' own packages are built and not downloaded.
const TOOL_SPEC: &str = "Name: tool
Version: 2.0
Release: 1.el8
Summary: a built tool
License: MIT
AutoReqProv: no
Requires: dep >= 1.0
Requires: tool-data = %{version}-%{release}
%description
built by a recipe task
%package -n tool-data
Summary: its data
BuildArch: noarch
AutoReqProv: no
%description -n tool-data
data
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc %{buildroot}/usr/share/tool
echo tool > %{buildroot}/usr/bin/tool
echo conf > %{buildroot}/etc/tool.conf
echo data > %{buildroot}/usr/share/tool/data
%files
%attr(0755,root,root) /usr/bin/tool
%config(noreplace) /etc/tool.conf
%files -n tool-data
/usr/share/tool
";

fn built_recipe(host: &str) -> String {
    format!(
        "isobuild: 1
name: Test
version: 1.0.0
epoch: 1700000000
iso:
  root: _build/root
  output: _build/test.iso
packages:
  releasever: 8
  basearch: x86_64
  seeds:
    app: null
    tool: 2.0-1.el8
  repos:
    - id: os
      baseurl: https://mirror.invalid/repos/os/
    - id: epel
      baseurl: http://{host}/repos/epel/
      gpgkey: [http://{host}/repos/epel/RPM-GPG-KEY-test]
      dest: packages/redhat/8/metalk8s-epel-el8
      key_prefix: RPM-GPG-KEY-metalk8s-epel-8
    - id: scality
      from: [\"_build/packages/*/RPMS/**/*.rpm\"]
      builds: [tool, tool-data]
      dest: packages/redhat/8/metalk8s-scality-el8
tasks:
  - name: rpm-tool
    run: [sh, -c, 'rpmbuild --quiet --target x86_64 --define \"_topdir $PWD/_build/rpmbuild\" --define \"_rpmdir $PWD/_build/packages/tool/RPMS\" --define \"_build_id_links none\" -bb tool.spec']
    inputs: [tool.spec]
    outputs: [_build/packages/tool]
"
    )
}

#[test]
fn a_built_repository_is_made_from_the_rpms_of_a_task_and_offline_resolves_from_the_cache() {
    let Project {
        test,
        nginx,
        repos,
        signer: _signer,
    } = project();
    let test = test
        .recipe(&built_recipe(&nginx.host()))
        .file("tool.spec", TOOL_SPEC);
    let mirror = mirror(&nginx);
    test.run([
        "build",
        "recipe.yaml",
        "--mirror",
        &mirror,
        "--progress",
        "plain",
    ])
    .success()
    .stderr_contains("rpm repository scality (built)");
    let iso = test.path().join("_build/test.iso");
    let first = isobuild::reference::Digest::of(&fs_err::read(&iso).unwrap());

    // What ships, from the ISO: RPMs under their arch, repodata, no keys (nothing signs them).
    let extracted = test.path().join("extracted");
    crate::harness::extract_iso(&iso, &extracted);
    let scality = extracted.join("packages/redhat/8/metalk8s-scality-el8");
    let files: Vec<String> = names(&scality)
        .into_iter()
        .map(|file| match file.split_once("repodata/") {
            Some((_, name)) if name != "repomd.xml" => {
                format!("repodata/<sha256>-{}", name.rsplit_once('-').unwrap().1)
            }
            _ => file,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        files,
        [
            "noarch/tool-data-2.0-1.el8.noarch.rpm",
            "repodata/<sha256>-filelists.xml.gz",
            "repodata/<sha256>-primary.xml.gz",
            "repodata/repomd.xml",
            "x86_64/tool-2.0-1.el8.x86_64.rpm",
        ]
    );
    // createrepo_c on the same RPMs reads the same.
    assert_same_as_createrepo(&scality, &test.path().join("oracle"));
    // dnf installs the built tool and the seed from the ISO's repositories.
    let epel = extracted.join("packages/redhat/8/metalk8s-epel-el8");
    let key = epel.join("RPM-GPG-KEY-metalk8s-epel-8_1");
    let root = dnf_install(
        test.path(),
        &[
            ConsumerRepo {
                id: "metalk8s-scality",
                dir: &scality,
                key: None,
            },
            ConsumerRepo {
                id: "metalk8s-epel",
                dir: &epel,
                key: Some(&key),
            },
            ConsumerRepo {
                id: "os",
                dir: &repos["os"],
                key: Some(&key),
            },
        ],
        &["tool", "app"],
    );
    assert_eq!(
        fs_err::read_to_string(root.join("usr/share/tool/data")).unwrap(),
        "data\n"
    );
    assert!(root.join("usr/bin/dep-tool").exists());

    // The lock pins the downloaded repositories only: the built one is made at build time.
    test.run(["lock", "recipe.yaml", "--mirror", &mirror, "-q"])
        .success();
    let lock = test.read("recipe.yaml.lock");
    assert!(lock.contains("id: epel"), "{lock}");
    assert!(
        !lock.contains("scality") && !lock.contains("tool-2.0"),
        "{lock}"
    );

    // Offline and without a lock, the metadata the first build read resolves again; the
    // tree is written anew and the ISO is the same, byte for byte.
    drop(nginx);
    fs_err::remove_dir_all(test.path().join("_build/root")).unwrap();
    test.run(["build", "recipe.yaml", "--offline", "-q"])
        .success();
    assert_eq!(
        isobuild::reference::Digest::of(&fs_err::read(&iso).unwrap()),
        first
    );
    // And from the lock, offline: the same.
    fs_err::remove_dir_all(test.path().join("_build/root")).unwrap();
    test.run(["build", "recipe.yaml", "--offline", "--locked", "-q"])
        .success();
    assert_eq!(
        isobuild::reference::Digest::of(&fs_err::read(&iso).unwrap()),
        first
    );
    // A cache that never saw the repositories: the error names the repository and what to do.
    let empty = test.path().join("empty-cache");
    let failed = test
        .run([
            "build",
            "recipe.yaml",
            "--offline",
            "-q",
            "--cache-dir",
            empty.to_str().unwrap(),
        ])
        .failure(1)
        .stderr_contains("repository `os`")
        .stderr_contains("isobuild fetch");
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{}", failed.stderr);
    }
}

#[test]
fn a_built_repository_refuses_a_corrupt_rpm_and_a_missing_package() {
    let test = Test::new()
        .recipe(
            "isobuild: 1
name: Test
version: 1.0.0
epoch: 1700000000
iso:
  root: _build/root
packages:
  releasever: 8
  basearch: x86_64
  seeds: [tool]
  repos:
    - id: scality
      from: [\"_build/rpms/*.rpm\"]
      builds: [tool, other]
      dest: packages/scality
",
        )
        .file("tool.spec", TOOL_SPEC);
    let out = test.path().join("rpms");
    run(Command::new("rpmbuild")
        .args(["--quiet", "--target", "x86_64", "--define"])
        .arg(format!(
            "_topdir {}",
            test.path().join("rpmbuild").display()
        ))
        .arg("--define")
        .arg(format!("_rpmdir {}", out.display()))
        .args(["--define", "_build_id_links none", "-bb"])
        .arg(test.path().join("tool.spec")));
    let rpms = test.path().join("_build/rpms");
    fs_err::create_dir_all(&rpms).unwrap();
    let built = out.join("x86_64/tool-2.0-1.el8.x86_64.rpm");
    fs_err::copy(&built, rpms.join("tool-2.0-1.el8.x86_64.rpm")).unwrap();
    test.run(["layout", "recipe.yaml", "out", "-q"])
        .failure(1)
        .stderr_contains("repository `scality`: package `other` is listed in `builds`");
    // A flipped byte in the payload: the header's digests say so.
    let mut corrupt = fs_err::read(&built).unwrap();
    let last = corrupt.len() - 10;
    corrupt[last] ^= 0xff;
    fs_err::write(rpms.join("tool-2.0-1.el8.x86_64.rpm"), corrupt).unwrap();
    test.run(["layout", "recipe.yaml", "out", "-q"])
        .failure(1)
        .stderr_contains("does not match the digests in its own header");
    assert!(!test.path().join("out/packages/scality/repodata").exists());
}

/// `isobuild fetch` caches all that an `--offline` build without a lock reads: the metadata
/// resolution reads, the shipped repositories' filelists, the RPMs and keys.
#[test]
fn fetch_then_an_offline_build_without_a_lock() {
    let Project {
        test,
        nginx,
        repos: _repos,
        signer: _signer,
    } = project();
    let mirror = mirror(&nginx);
    test.run(["fetch", "recipe.yaml", "--mirror", &mirror, "-q"])
        .success();
    drop(nginx);
    test.run(["layout", "recipe.yaml", "out", "--offline", "-q"])
        .success();
    let shipped = test.path().join("out/packages/redhat/8/metalk8s-epel-el8");
    assert_eq!(
        names(&shipped).iter().filter(|file| is_rpm(file)).count(),
        4
    );
}
