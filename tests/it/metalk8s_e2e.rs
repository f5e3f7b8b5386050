//! `recipes/metalk8s.yaml` end to end, offline: generated stand-ins for the 30 pulled images
//! and the bases of the builds pushed to a local docker-registry under their upstream
//! repository paths and reached with `--mirror` (the builders' bases are busybox images, so
//! that their commands run), the 7 local images and the 5 builders built by real buildah from
//! the fixture MetalK8s checkout, doit's docker-run steps run in those builders; the ISO is
//! built, verified, extracted and served by nginx to skopeo as a MetalK8s node would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isobuild::reference::{Digest, ImageSource};

use crate::harness::images::{Format, Image, Index, Layer, Pusher};
use crate::harness::peers::{Nginx, Registry, skopeo};
use crate::harness::rpms::{ConsumerRepo, assert_checksig, dnf_install};
use crate::harness::standin_rpms::{StandInRepos, place_built_rpms};
use crate::harness::{Test, extract_iso};

pub(crate) const UPSTREAMS: [&str; 6] = [
    "docker.io",
    "gcr.io",
    "registry.k8s.io",
    "ghcr.io",
    "quay.io",
    "cr.fluentbit.io",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn fixture() -> PathBuf {
    repo_root().join("tests/fixtures/metalk8s-src")
}

/// Copy a folder (the recipe's own templates) into the test project.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            fs_err::create_dir_all(&target).unwrap();
        } else {
            fs_err::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_metalk8s_iso_builds_offline_through_mirrors_and_serves_all_37_images() {
    let registry = Registry::start();
    let host = registry.host();
    let pusher = Pusher::new(&registry);
    let test = Test::new();
    copy_tree(
        &repo_root().join("recipes/metalk8s"),
        &test.path().join("metalk8s"),
    );
    fs_err::copy(
        repo_root().join("recipes/metalk8s.yaml"),
        test.path().join("metalk8s.yaml"),
    )
    .unwrap();
    // A copy: the docs step writes in the checkout (its docs/_build), as doit's does.
    let checkout = test.path().join("checkout");
    copy_tree(&fixture(), &checkout);
    place_built_rpms(&checkout, &test.path().join("built-rpms"));
    let overrides: BTreeMap<String, String> =
        [("metalk8s_src".to_owned(), checkout.display().to_string())]
            .into_iter()
            .collect();
    let recipe = isobuild::recipe::load(&test.path().join("metalk8s.yaml"), &overrides).unwrap();
    let shipped: Vec<_> = recipe.images.list.iter().filter(|i| i.ship).collect();
    assert_eq!(shipped.len(), 37);

    // Stand-ins: three shared bases (as alpine, distroless and rockylinux are shared
    // upstream), a layer of each image's own, some multi-arch indexes, both manifest formats.
    let bases = [
        Layer::generate(900, 2, 8 * 1024),
        Layer::generate(901, 1, 16 * 1024),
        Layer::generate(902, 3, 4 * 1024),
    ];
    let seed = |i: usize| 1000 + u64::try_from(i).unwrap();
    for (i, entry) in recipe.images.list.iter().enumerate() {
        let format = if i % 2 == 0 {
            Format::Docker
        } else {
            Format::Oci
        };
        let layers = vec![bases[i % 3].clone(), Layer::generate(seed(i), 1, 2 * 1024)];
        match &entry.source {
            // The builders' bases: something to run commands in.
            ImageSource::Registry(reference)
                if [
                    "rockylinux:8.5",
                    "ubuntu:20.04",
                    "node:16.14.0",
                    "python:3.6-slim",
                ]
                .contains(&format!("{}:{}", entry.name, entry.tag).as_str()) =>
            {
                let repository = format!("{}/{}", reference.registry, reference.repository);
                let image = crate::containers::busybox_image(&entry.name);
                pusher.push_image(&repository, reference.tag.as_deref(), &image);
            }
            ImageSource::Registry(reference) => {
                let repository = format!("{}/{}", reference.registry, reference.repository);
                let tag = reference.tag.as_deref().unwrap();
                if i % 5 == 0 {
                    let arm = Image::new(
                        Format::Oci,
                        "arm64",
                        vec![Layer::generate(seed(i) + 500, 1, 1024)],
                    );
                    let index = Index::new(vec![
                        ("linux/amd64", Image::new(Format::Oci, "amd64", layers)),
                        ("linux/arm64", arm),
                    ]);
                    pusher.push_index(&repository, tag, &index);
                } else {
                    pusher.push_image(&repository, Some(tag), &Image::new(format, "amd64", layers));
                }
            }
            ImageSource::OciArchive(_) if entry.build.is_some() => {}
            other => panic!("unexpected source {other}"),
        }
    }
    let mut args: Vec<String> = [
        "build",
        "metalk8s.yaml",
        "--progress",
        "plain",
        "--ignore-pins",
        "--insecure-registry",
        &host,
        "--set",
        &format!("metalk8s_src={}", checkout.display()),
        "--set",
        "git=129.0.0-dev-0-gstandin",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    for upstream in UPSTREAMS {
        args.push("--mirror".into());
        args.push(format!("{upstream}={host}/{upstream}"));
    }
    let mut rpm_mirror = StandInRepos::start(test.path());
    args.extend(rpm_mirror.mirrors(&recipe));
    let run = test.run(&args).success();
    assert!(
        run.stderr.contains("(not checked: --ignore-pins)"),
        "every skipped pin is said:\n{}",
        run.stderr
    );

    // doit's docker-run steps ran in their builders: the scality RPMs are in their folders.
    for rpm in [
        "containerd/RPMS/containerd-1.6.35-2.el8.x86_64.rpm",
        "containerd/SRPMS/containerd-1.6.35-2.el8.src.rpm",
        "metalk8s-sosreport/RPMS/metalk8s-sosreport-129.0.0-2.el8.x86_64.rpm",
    ] {
        let path = test
            .path()
            .join("_build/packages/redhat/8/scality")
            .join(rpm);
        assert!(path.is_file(), "{rpm}");
    }
    // Again, offline (the RPM stand-ins gone too: packages resolve from the metadata the
    // first build cached): every build and container step is up to date, none runs.
    // The tree and the ISO are made anew (from the cache), and must be the same bytes.
    let first_iso = fs_err::read(test.path().join("_build/metalk8s.iso")).unwrap();
    fs_err::remove_dir_all(test.path().join("_build/root")).unwrap();
    fs_err::remove_file(test.path().join("_build/metalk8s.iso")).unwrap();
    rpm_mirror.stop();
    let mut offline = args.clone();
    offline.extend([
        "--offline".to_owned(),
        "--report".to_owned(),
        "again.json".to_owned(),
    ]);
    test.run(&offline).success();
    let report: serde_json::Value = serde_json::from_str(&test.read("again.json")).unwrap();
    for task in report["tasks"].as_array().unwrap() {
        if matches!(task["kind"].as_str(), Some("container" | "image-build")) {
            assert_eq!(task["status"], "up-to-date", "{task}");
        }
    }

    let iso = test.path().join("_build/metalk8s.iso");
    assert!(iso.is_file());
    if Digest::of(&fs_err::read(&iso).unwrap()) != Digest::of(&first_iso) {
        // Say which files differ, before failing.
        let first = test.path().join("first.iso");
        fs_err::write(&first, &first_iso).unwrap();
        extract_iso(&first, &test.path().join("first-extracted"));
        extract_iso(&iso, &test.path().join("again-extracted"));
        let (a, b) = (
            crate::harness::tree_contents(&test.path().join("first-extracted")),
            crate::harness::tree_contents(&test.path().join("again-extracted")),
        );
        let differing: Vec<&String> = a
            .keys()
            .chain(b.keys())
            .filter(|path| a.get(*path) != b.get(*path))
            .collect();
        let shown: Vec<String> = differing
            .iter()
            .map(|path| {
                let text = |tree: &BTreeMap<String, Vec<u8>>| {
                    tree.get(*path).map(|bytes| {
                        String::from_utf8_lossy(bytes)
                            .chars()
                            .take(400)
                            .collect::<String>()
                    })
                };
                format!("{path}:\nfirst {:?}\nagain {:?}", text(&a), text(&b))
            })
            .collect();
        panic!(
            "the offline rebuild made another ISO; files that differ:\n{}",
            shown.join("\n")
        );
    }
    assert_eq!(
        test.read("_build/SHA256SUM"),
        format!(
            "{}  metalk8s.iso\n",
            Digest::of(&fs_err::read(&iso).unwrap()).hex()
        )
    );
    test.run(["verify", "_build/metalk8s.iso"])
        .success()
        .stdout_contains("37 images");

    // What is in it: `inspect` lists the 37 images, and `build` wrote their SBOM beside it.
    let inventory = test
        .run(["inspect", "_build/metalk8s.iso", "--format", "json"])
        .success();
    let inventory: serde_json::Value = serde_json::from_str(&inventory.stdout).unwrap();
    assert_eq!(inventory["images"].as_array().unwrap().len(), 37);
    assert_eq!(inventory["product"]["NAME"], "MetalK8s");
    let sbom: serde_json::Value =
        serde_json::from_str(&test.read("_build/metalk8s.iso.cdx.json")).unwrap();
    let containers = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|component| component["type"] == "container")
        .count();
    assert_eq!(containers, 37);

    // As a node: extract, serve with the generated rules, pull every image by tag.
    let extracted = test.path().join("extracted");
    extract_iso(&iso, &extracted);
    let top: Vec<String> = fs_err::read_dir(&extracted)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        top,
        [
            "backup.sh",
            "bootstrap.sh",
            "common.sh",
            "documentation",
            "downgrade.sh",
            "examples",
            "images",
            "iso-manager.sh",
            "packages",
            "pillar",
            "product.txt",
            "restore.sh",
            "salt",
            "solutions.sh",
            "upgrade.sh",
        ]
    );
    let files = extracted.join("salt/metalk8s/repo/files");
    let nginx = Nginx::start(
        &extracted.join("images"),
        "$metalk8s_129_0_0_dev_images",
        &[
            &files.join("metalk8s-registry-common.inc"),
            &files.join("metalk8s-registry.inc"),
        ],
    );
    for entry in &shipped {
        let inspected: serde_json::Value = serde_json::from_str(&skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!(
                "docker://{}/metalk8s-129.0.0-dev/{}:{}",
                nginx.host(),
                entry.name,
                entry.tag
            ),
        ]))
        .unwrap();
        let manifest = extracted.join(entry.path.as_str()).join("manifest.json");
        assert_eq!(
            inspected["Digest"],
            Digest::of(&fs_err::read(&manifest).unwrap()).to_string(),
            "{}:{}",
            entry.name,
            entry.tag
        );
    }
    for archive in ["images/pause-3.9.tar", "images/nginx-1.27.0-alpine.tar"] {
        assert!(extracted.join(archive).is_file(), "{archive}");
    }

    assert_eq!(
        fs_err::read_to_string(extracted.join("documentation/index.html")).unwrap(),
        "MetalK8s stand-in documentation\n"
    );
    let rule = extracted.join("salt/metalk8s/addons/alert-tree/files/prometheus_rule.yaml");
    assert!(
        fs_err::read_to_string(rule)
            .unwrap()
            .contains("namespace: metalk8s-monitoring")
    );

    check_packages(&extracted, &rpm_mirror, test.path());

    let product = fs_err::read_to_string(extracted.join("product.txt")).unwrap();
    let keys: Vec<&str> = product
        .lines()
        .map(|line| line.split_once('=').unwrap().0)
        .collect();
    assert_eq!(
        keys,
        [
            "NAME",
            "VERSION",
            "SHORT_VERSION",
            "GIT",
            "DEVELOPMENT_RELEASE",
            "BUILD_TIMESTAMP",
            "BUILD_HOST"
        ]
    );
    assert!(product.starts_with("NAME=MetalK8s\nVERSION=129.0.0-dev\n"));
    assert!(product.contains("GIT=129.0.0-dev-0-gstandin\n"));
    let bootstrap = fs_err::read_to_string(extracted.join("bootstrap.sh")).unwrap();
    assert!(bootstrap.contains("VERSION=129.0.0-dev"), "{bootstrap}");
}

/// The RPM repositories, as a node's yum sees them: the four folders of packages/redhat/8
/// with their RPMs, repodata and keys as MetalK8s names them, every downloaded RPM signed
/// by its repository's shipped key, and dnf installing every seed from them and the OS.
fn check_packages(extracted: &Path, standins: &StandInRepos, scratch: &Path) {
    let packages = extracted.join("packages/redhat/8");
    let found: Vec<walkdir::DirEntry> = walkdir::WalkDir::new(&packages)
        .sort_by_file_name()
        .into_iter()
        .map(|entry| entry.unwrap())
        .collect();
    #[allow(clippy::print_stderr)]
    for entry in &found {
        // As `find packages/redhat/8` lists it, for people reading the test's output.
        eprintln!(
            "find: {}",
            entry.path().strip_prefix(extracted).unwrap().display()
        );
    }
    let mut layout: Vec<String> = found
        .iter()
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| {
            let relative = entry.path().strip_prefix(&packages).unwrap();
            let relative = relative.to_str().unwrap();
            // Metadata file names carry their checksum: keep the kind only.
            match relative.split_once("/repodata/") {
                Some((repo, file)) if file != "repomd.xml" => {
                    format!(
                        "{repo}/repodata/<sha256>-{}",
                        file.rsplit_once('-').unwrap().1
                    )
                }
                _ => relative.to_owned(),
            }
        })
        .map(|relative| {
            // Stand-in RPM names start with the build group's index (`5-python3-…`).
            match relative.split_once('/') {
                Some((repo, file))
                    if Path::new(file).extension().is_some_and(|ext| ext == "rpm")
                        && file.starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    format!("{repo}/{}", file.split_once('-').unwrap().1)
                }
                _ => relative,
            }
        })
        .collect();
    layout.sort();
    #[allow(clippy::print_stderr)]
    {
        eprintln!("packages/redhat/8/:\n  {}", layout.join("\n  "));
    }
    let repodata = [
        "repodata/<sha256>-filelists.xml.gz",
        "repodata/<sha256>-primary.xml.gz",
        "repodata/repomd.xml",
    ];
    let within = |repo: &str, files: &[&str]| -> Vec<String> {
        files.iter().map(|file| format!("{repo}/{file}")).collect()
    };
    let mut expected = Vec::new();
    expected.extend(within(
        "metalk8s-epel-el8",
        &[
            "python3-boto3-1.6.1-1.noarch.rpm",
            "python3-botocore-1.0-1.noarch.rpm",
            "python3-m2crypto-1.0-1.noarch.rpm",
            "RPM-GPG-KEY-metalk8s-epel-8_1",
        ],
    ));
    expected.extend(within("metalk8s-epel-el8", &repodata));
    expected.extend(within(
        "metalk8s-kubernetes-el8",
        &[
            "cri-tools-1.0-1.noarch.rpm",
            "kubectl-1.29.8-1.noarch.rpm",
            "kubelet-1.29.8-1.noarch.rpm",
            "kubernetes-cni-1.0-1.noarch.rpm",
            "RPM-GPG-KEY-metalk8s-kubernetes-8_1",
        ],
    ));
    expected.extend(within("metalk8s-kubernetes-el8", &repodata));
    expected.extend(within(
        "metalk8s-saltstack-el8",
        &[
            "salt-3002.9-1.noarch.rpm",
            "salt-minion-3002.9-1.noarch.rpm",
            "RPM-GPG-KEY-metalk8s-saltstack-8_1",
        ],
    ));
    expected.extend(within("metalk8s-saltstack-el8", &repodata));
    expected.extend(within("metalk8s-scality-el8", &repodata));
    expected.extend(within(
        "metalk8s-scality-el8",
        &[
            "x86_64/containerd-1.6.35-2.el8.x86_64.rpm",
            "x86_64/metalk8s-sosreport-129.0.0-2.el8.x86_64.rpm",
        ],
    ));
    expected.sort();
    assert_eq!(layout, expected);

    let mut consumer = Vec::new();
    for repo in ["epel", "kubernetes", "saltstack"] {
        let dir = packages.join(format!("metalk8s-{repo}-el8"));
        let key = dir.join(format!("RPM-GPG-KEY-metalk8s-{repo}-8_1"));
        assert_checksig(
            &dir,
            std::slice::from_ref(&key),
            &scratch.join(format!("sig-{repo}")),
        );
        consumer.push((format!("metalk8s-{repo}-el8"), dir, Some(key)));
    }
    consumer.push((
        "metalk8s-scality-el8".to_owned(),
        packages.join("metalk8s-scality-el8"),
        None,
    ));
    for os in ["baseos", "appstream", "extras"] {
        consumer.push((
            os.to_owned(),
            standins.repos[os].clone(),
            Some(standins.key.clone()),
        ));
    }
    let repos: Vec<ConsumerRepo<'_>> = consumer
        .iter()
        .map(|(id, dir, key)| ConsumerRepo {
            id,
            dir,
            key: key.as_deref(),
        })
        .collect();
    // Every seed of versions.py, as MetalK8s' salt states install them.
    let seeds = [
        "container-selinux",
        "containerd-1.6.35-2.el8",
        "coreutils",
        "cri-tools",
        "e2fsprogs",
        "ethtool",
        "gdisk",
        "genisoimage",
        "httpd-tools",
        "iproute",
        "iptables",
        "iptables-ebtables",
        "kubectl-1.29.8",
        "kubelet-1.29.8",
        "kubernetes-cni",
        "lvm2",
        "metalk8s-sosreport-129.0.0-2.el8",
        "python3-boto3",
        "python3-dnf-plugin-versionlock",
        "python3-m2crypto",
        "python3-psutil",
        "python3-pyOpenSSL",
        "salt-minion-3002.9",
        "socat",
        "tar",
        "util-linux",
        "xfsprogs",
        "yum-utils",
    ];
    let root = dnf_install(&scratch.join("consumer"), &repos, &seeds);
    assert!(root.join("usr/share/containerd/stand-in").is_file());
    assert!(root.join("usr/share/metalk8s-sosreport/stand-in").is_file());
}

#[test]
fn the_metalk8s_graph_renders_without_network() {
    let run = Test::new()
        .run([
            "graph".to_owned(),
            repo_root()
                .join("recipes/metalk8s.yaml")
                .display()
                .to_string(),
            "--set".to_owned(),
            format!("metalk8s_src={}", fixture().display()),
        ])
        .success();
    assert!(run.stdout.starts_with("digraph isobuild {"));
    assert!(run.stdout.contains("build salt-master:3002.9-1"));
    assert!(run.stdout.contains("container\\ntask rpm-containerd"));
    assert!(run.stdout.contains("registry-config"));
    assert!(run.stdout.contains("iso metalk8s.iso"));
}
