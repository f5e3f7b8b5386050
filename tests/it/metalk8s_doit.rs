//! `recipes/metalk8s.yaml` against the **real** MetalK8s checkout, compared file by file with
//! what MetalK8s' own buildchain writes, made by the buildchain's own Python code.
//!
//! The test extracts `metalk8s-ac251c2f9.tar.gz` (the shared test data, see its README;
//! `$ISOBUILD_METALK8S_TARBALL` names another copy), lays the stand-in checkout's Dockerfiles
//! and builder scripts over it (so that the image builds and container steps run offline,
//! in busybox; none of the files the compared tree is made from is touched), builds the ISO
//! with stand-in images on a local docker-registry behind `--mirror`, extracts it, and runs
//! `metalk8s_oracle/doit_tree.py`: the checkout's
//! `buildchain` modules imported with stand-ins for `doit` and the Docker SDK, whose Python
//! actions (`coreutils.cp_file`, `TemplateFile`, `SerializedData`, static-container-registry's
//! `create_config` over the ISO's own `images/`) write the tree doit would write. Outside
//! `images/`, `packages/` and `documentation/` (other issues), the two trees must hold the same
//! files with the same bytes and modes, except:
//! - `product.txt`'s `BUILD_TIMESTAMP` and `BUILD_HOST`, by design (the recipe's epoch and a
//!   fixed name instead of the clock and the hostname);
//! - `salt/metalk8s/addons/alert-tree/files/prometheus_rule.yaml`, which doit makes in a
//!   builder container (so its Python writes none) and the recipe in its `alert-tree`
//!   container step, here the stand-in's: checked for presence only.
//!
//! Then `salt/metalk8s/map.jinja`'s `version_defaults` is rendered with jinja2 for RedHat 8
//! over the ISO's `versions.json` (`metalk8s_oracle/version_defaults.py`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use isobuild::reference::ImageSource;

use crate::harness::images::{Format, Image, Layer, Pusher};
use crate::harness::peers::Registry;
use crate::harness::standin_rpms::{StandInRepos, place_built_rpms};
use crate::harness::{Test, extract_iso};
use crate::metalk8s_e2e::{UPSTREAMS, copy_tree, fixture};

/// The file doit makes in its alert-tree builder container, not with its Python.
const FROM_A_CONTAINER: &str = "salt/metalk8s/addons/alert-tree/files/prometheus_rule.yaml";

/// The bases of the builders: busybox stand-ins, so that their commands run.
const BUILDER_BASES: [&str; 4] = [
    "rockylinux:8.5",
    "ubuntu:20.04",
    "node:16.14.0",
    "python:3.6-slim",
];

/// Lay the stand-in checkout's build files (Dockerfiles, builder entrypoints and scripts)
/// over the real checkout, leaving alone what the compared tree is made from: salt/,
/// pillar/, scripts/, examples/, and the files the recipe reads for its generated ones.
fn lay_stand_in_builders(checkout: &Path) {
    const READ_BY_THE_RECIPE: [&str; 4] = [
        "shell-ui/package.json",
        "operator/deploy/",
        "storage-operator/deploy/",
        "ui/public/brand/",
    ];
    // The stand-in UI builders bundle every file of `src/`; the real sources have folders.
    for src in ["ui/src", "shell-ui/src"] {
        fs_err::remove_dir_all(checkout.join(src)).unwrap();
    }
    let from = fixture();
    for entry in walkdir::WalkDir::new(&from) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(&from).unwrap();
        let shown = relative.display().to_string();
        let top = shown.split('/').next().unwrap_or_default();
        if ["salt", "pillar", "scripts", "examples", "README.md"].contains(&top)
            || READ_BY_THE_RECIPE
                .iter()
                .any(|read| shown.starts_with(read))
        {
            continue;
        }
        let target = checkout.join(relative);
        fs_err::create_dir_all(target.parent().unwrap()).unwrap();
        fs_err::copy(entry.path(), &target).unwrap();
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tarball() -> PathBuf {
    let path = std::env::var_os("ISOBUILD_METALK8S_TARBALL").map_or_else(
        || repo_root().join("../shared/metalk8s/metalk8s-ac251c2f9.tar.gz"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "the real MetalK8s checkout is not at {} (set ISOBUILD_METALK8S_TARBALL to its path)",
        path.display()
    );
    path
}

/// Debian's python3, which has python3-yaml and python3-jinja2 (CI installs both).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn run_python(script: &str, args: &[&Path]) -> String {
    let output = Command::new(python())
        .arg(repo_root().join("tests/it/metalk8s_oracle").join(script))
        .args(args)
        .output()
        .expect("python3 runs (apt-get install python3 python3-yaml python3-jinja2)");
    assert!(
        output.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Extract the tarball under `dest` with the tar crate; returns the checkout (`metalk8s/`).
fn extract_checkout(dest: &Path) -> PathBuf {
    let file = fs_err::File::open(tarball()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive.set_preserve_permissions(true);
    archive.unpack(dest).unwrap();
    dest.join("metalk8s")
}

/// Every regular file under `root` outside `images/`, `packages/`, `documentation/`:
/// relative path → (mode, bytes).
fn tree(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        let top = relative.split('/').next().unwrap_or_default();
        if ["images", "packages", "documentation"].contains(&top) {
            continue;
        }
        let mode = entry.metadata().unwrap().permissions().mode() & 0o7777;
        files.insert(relative, (mode, fs_err::read(entry.path()).unwrap()));
    }
    files
}

/// product.txt without the two lines that differ by design.
fn without_build_lines(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|line| !line.starts_with("BUILD_TIMESTAMP=") && !line.starts_with("BUILD_HOST="))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_metalk8s_tree_is_the_one_doit_writes_from_the_real_checkout() {
    let test = Test::new();
    let checkout = extract_checkout(&test.path().join("src"));
    lay_stand_in_builders(&checkout);
    place_built_rpms(&checkout, &test.path().join("built-rpms"));
    copy_tree(
        &repo_root().join("recipes/metalk8s"),
        &test.path().join("metalk8s"),
    );
    fs_err::copy(
        repo_root().join("recipes/metalk8s.yaml"),
        test.path().join("metalk8s.yaml"),
    )
    .unwrap();
    let checkout_arg = format!("metalk8s_src={}", checkout.display());
    let overrides = BTreeMap::from([("metalk8s_src".to_owned(), checkout.display().to_string())]);
    let recipe = isobuild::recipe::load(&test.path().join("metalk8s.yaml"), &overrides).unwrap();

    // Stand-ins: busybox for the builders' bases, one small image for every other pulled
    // entry; the `build:` images are built from the stand-in Dockerfiles.
    let registry = Registry::start();
    let host = registry.host();
    let pusher = Pusher::new(&registry);
    let base = Layer::generate(7000, 1, 4 * 1024);
    for (i, entry) in recipe.images.list.iter().enumerate() {
        let seed = 7001 + u64::try_from(i).unwrap();
        match &entry.source {
            ImageSource::Registry(reference) => {
                let repository = format!("{}/{}", reference.registry, reference.repository);
                let image =
                    if BUILDER_BASES.contains(&format!("{}:{}", entry.name, entry.tag).as_str()) {
                        crate::containers::busybox_image(&entry.name)
                    } else {
                        Image::new(
                            Format::Docker,
                            "amd64",
                            vec![base.clone(), Layer::generate(seed, 1, 1024)],
                        )
                    };
                pusher.push_image(&repository, reference.tag.as_deref(), &image);
            }
            ImageSource::OciArchive(_) if entry.build.is_some() => {}
            other => panic!("unexpected source {other}"),
        }
    }
    let mut args: Vec<String> = [
        "build",
        "metalk8s.yaml",
        "--progress",
        "none",
        "--ignore-pins",
        "--insecure-registry",
        &host,
        "--set",
        &checkout_arg,
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    for upstream in UPSTREAMS {
        args.push("--mirror".into());
        args.push(format!("{upstream}={host}/{upstream}"));
    }
    let rpm_mirror = StandInRepos::start(test.path());
    args.extend(rpm_mirror.mirrors(&recipe));
    test.run(&args).success();

    // What ships: the ISO's own tree (Rock Ridge keeps the modes).
    let ours = test.path().join("extracted");
    extract_iso(&test.path().join("_build/metalk8s.iso"), &ours);
    // doit's tree, by doit's code, with the registry rules made from the ISO's images.
    let skipped = run_python("doit_tree.py", &[&checkout, &ours.join("images")]);
    assert_eq!(skipped.trim(), format!("skipped {FROM_A_CONTAINER}"));
    let doit = tree(&checkout.join("_build/root"));
    let mut mine = tree(&ours);
    assert!(
        mine.remove(FROM_A_CONTAINER).is_some(),
        "the alert-tree rules, from their container step"
    );

    let missing: Vec<&String> = doit
        .keys()
        .filter(|path| !mine.contains_key(*path))
        .collect();
    let extra: Vec<&String> = mine
        .keys()
        .filter(|path| !doit.contains_key(*path))
        .collect();
    let mut differing = Vec::new();
    for (path, (mode, bytes)) in &doit {
        let Some((my_mode, my_bytes)) = mine.get(path) else {
            continue;
        };
        let same_bytes = if path == "product.txt" {
            without_build_lines(bytes) == without_build_lines(my_bytes)
        } else {
            bytes == my_bytes
        };
        if !same_bytes || mode != my_mode {
            differing.push(format!(
                "{path} (mode {mode:o} vs {my_mode:o}, bytes {})",
                if same_bytes { "equal" } else { "differ" }
            ));
        }
    }
    // The figures of the comparison, for the record (`--no-capture` shows them).
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "doit: {} files outside images/, packages/, documentation/ from its Python, +1 from a container ({FROM_A_CONTAINER}: present); missing {}, extra {}, differing {}",
            doit.len(),
            missing.len(),
            extra.len(),
            differing.len()
        );
    }
    assert_eq!(
        doit.len(),
        351,
        "doit's 352 files but the one from a container"
    );
    assert!(missing.is_empty(), "missing: {missing:#?}");
    assert!(extra.is_empty(), "extra: {extra:#?}");
    assert!(differing.is_empty(), "differing: {differing:#?}");

    // Every `.sls`/`.j2` doit ships is there (already implied above, said for the record).
    let shipped = doit
        .keys()
        .filter(|path| {
            Path::new(path.as_str())
                .extension()
                .is_some_and(|e| e == "sls" || e == "j2")
        })
        .count();
    assert!(shipped > 250, "{shipped} salt states and templates");

    // Salt reads versions.json through map.jinja: `version_defaults` renders for RedHat 8.
    let versions: serde_json::Value =
        serde_json::from_slice(&mine["salt/metalk8s/versions.json"].1).unwrap();
    assert_eq!(versions["images"].as_object().unwrap().len(), 38);
    assert_eq!(versions["images"]["shell-ui"]["version"], "129.0.0-dev");
    let defaults: serde_json::Value =
        serde_json::from_str(&run_python("version_defaults.py", &[&ours.join("salt")])).unwrap();
    assert_eq!(defaults["kubernetes"]["version"], "1.29.8");
    let packages = defaults["repo"]["packages"].as_object().unwrap();
    assert_eq!(packages.len(), 28);
    assert_eq!(packages["containerd"]["version"], "1.6.35-2.el8");
    assert_eq!(defaults["repo"]["images"].as_object().unwrap().len(), 38);
}

/// Extract one file of the tarball (`metalk8s/<path>`) into `dest`.
fn extract_one(path: &str, dest: &Path) -> PathBuf {
    let file = fs_err::File::open(tarball()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let wanted = format!("metalk8s/{path}");
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == wanted {
            let target = dest.join(Path::new(path).file_name().unwrap());
            entry.unpack(&target).unwrap();
            return target;
        }
    }
    panic!("{wanted} is not in the tarball");
}

/// The rules for several tags of one name, two of them one manifest (the generator's
/// "already served" comment), and a name of its own: byte for byte the output of MetalK8s'
/// vendored static-container-registry, run as its CLI over the laid-out `images/`.
#[test]
fn registry_rules_are_static_container_registrys_output_byte_for_byte() {
    use crate::harness::images::TestSet;
    let registry = Registry::start();
    TestSet::new().push(&Pusher::new(&registry), "");
    let host = registry.host();
    let test = Test::new().recipe(&format!(
        r#"isobuild: 1
name: Test
version: 1.0.0-dev
images:
  format: v2s2
  path: "images/{{{{ name }}}}/{{{{ tag }}}}"
  registry_config:
    path: salt/registry.inc
    common_path: salt/registry-common.inc
    name_prefix: "test-{{{{ version }}}}/"
    server_root: "$test_{{{{ version | underscore }}}}_images"
  list:
    - {{ name: alpha, ref: "{host}/test/alpha:1.0" }}
    - {{ name: alpha, tag: "1.0-again", ref: "{host}/test/alpha:1.0" }}
    - {{ name: alpha, tag: "0.9", ref: "{host}/test/beta:2.0" }}
    - {{ name: beta, ref: "{host}/test/beta:2.0" }}
    - {{ name: multi, ref: "{host}/test/multi:3.0" }}
"#
    ));
    test.run([
        "layout",
        "recipe.yaml",
        "out",
        "--insecure-registry",
        &host,
        "-q",
    ])
    .success();
    let generator = extract_one(
        "buildchain/static-container-registry/static-container-registry.py",
        test.path(),
    );
    let out = test.path().join("out");
    let generate = |args: &[&str]| {
        let output = Command::new(python())
            .arg(&generator)
            .args(args)
            .output()
            .expect("python3 runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let rules = generate(&[
        "--name-prefix",
        "test-1.0.0-dev",
        "--server-root",
        "$test_1_0_0_dev_images",
        "--omit-constants",
        out.join("images").to_str().unwrap(),
    ]);
    assert!(rules.contains("# Digest for \"alpha:1.0-again\" already served"));
    assert!(rules.contains("try_files 0.9/$1 1.0/$1 1.0-again/$1 =404;"));
    pretty_assertions::assert_eq!(test.read("out/salt/registry.inc"), rules);
    pretty_assertions::assert_eq!(
        test.read("out/salt/registry-common.inc"),
        generate(&["--only-constants"])
    );
}

/// The recipe's `packages:` against the real buildchain: its seeds are versions.py's
/// `REDHAT_PACKAGES["8"]` (`rpm_full_name`, as entrypoint.sh gets them), and the kubernetes and
/// saltstack repositories are yum_repositories/*.repo as the builder's Dockerfile fills
/// them in (`metalk8s_oracle/rpm_packages.py`).
#[test]
fn the_recipe_packages_are_versions_py_and_the_yum_repositories_of_the_checkout() {
    let test = Test::new();
    let checkout = test.path().join("metalk8s");
    for (path, under) in [
        ("VERSION", ""),
        ("shell-ui/package.json", "shell-ui"),
        ("buildchain/buildchain/versions.py", "buildchain/buildchain"),
        ("buildchain/buildchain/__init__.py", "buildchain/buildchain"),
        (
            "packages/redhat/common/yum_repositories/kubernetes.repo",
            "packages/redhat/common/yum_repositories",
        ),
        (
            "packages/redhat/common/yum_repositories/saltstack.repo",
            "packages/redhat/common/yum_repositories",
        ),
    ] {
        let dir = checkout.join(under);
        fs_err::create_dir_all(&dir).unwrap();
        extract_one(path, &dir);
    }
    let oracle: serde_json::Value =
        serde_json::from_str(&run_python("rpm_packages.py", &[&checkout])).unwrap();

    let overrides = BTreeMap::from([("metalk8s_src".to_owned(), fixture().display().to_string())]);
    let recipe =
        isobuild::recipe::load(&repo_root().join("recipes/metalk8s.yaml"), &overrides).unwrap();
    let packages = recipe.packages.unwrap();
    let mut want: Vec<String> = oracle["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect();
    want.sort();
    let mut seeds = packages.seeds.clone();
    seeds.sort();
    assert_eq!(seeds, want);
    assert_eq!(want.len(), 28);
    for id in ["kubernetes", "saltstack"] {
        let repo = packages.repos.iter().find(|repo| repo.id == id).unwrap();
        let expected = &oracle["repos"][id];
        assert_eq!(
            repo.baseurl.trim_end_matches('/'),
            expected["baseurl"].as_str().unwrap().trim_end_matches('/'),
            "{id}"
        );
        let keys: Vec<&str> = expected["gpgkey"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key.as_str().unwrap())
            .collect();
        assert_eq!(repo.gpgkeys, keys, "{id}");
    }
}
