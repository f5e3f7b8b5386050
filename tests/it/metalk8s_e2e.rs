//! `recipes/metalk8s.yaml` end to end, offline: generated stand-ins for the 30 pulled images
//! pushed to a local docker-registry under their upstream repository paths and reached with
//! `--mirror`, the 7 local images as OCI archives written by a stand-in `buildah`, the
//! fixture MetalK8s checkout; the ISO is built, verified, extracted and served by nginx to
//! skopeo as a MetalK8s node would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isobuild::reference::{Digest, ImageSource};

use crate::harness::images::{Format, Image, Index, Layer, Pusher};
use crate::harness::peers::{Nginx, Registry, skopeo};
use crate::harness::{Test, extract_iso, tar_file};

pub(crate) const UPSTREAMS: [&str; 5] = [
    "docker.io",
    "registry.k8s.io",
    "ghcr.io",
    "quay.io",
    "cr.fluentbit.io",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
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

/// `image` as an OCI archive (what `buildah build -t oci-archive:…` writes), tagged `tag`.
pub(crate) fn oci_archive(image: &Image, tag: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    tar_file(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": image.media_type,
            "digest": image.digest.to_string(),
            "size": image.manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    tar_file(
        &mut builder,
        "index.json",
        &serde_json::to_vec(&index).unwrap(),
    );
    tar_file(
        &mut builder,
        &format!("blobs/sha256/{}", image.digest.hex()),
        &image.manifest,
    );
    tar_file(
        &mut builder,
        &format!("blobs/sha256/{}", image.config_digest.hex()),
        &image.config,
    );
    for layer in &image.layers {
        tar_file(
            &mut builder,
            &format!("blobs/sha256/{}", layer.digest.hex()),
            &layer.bytes(),
        );
    }
    builder.into_inner().unwrap()
}

/// A stand-in for `buildah build … -t oci-archive:PATH …`: copies the archive generated for
/// PATH's file name from `$ISOBUILD_TEST_ARCHIVES`.
pub(crate) const FAKE_BUILDAH: &str = r#"#!/bin/sh
set -eu
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    -t) shift; target="$1" ;;
  esac
  shift
done
path="${target#oci-archive:}"
cp "$ISOBUILD_TEST_ARCHIVES/$(basename "$path")" "$path"
"#;

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
    let overrides: BTreeMap<String, String> =
        [("metalk8s_src".to_owned(), fixture().display().to_string())]
            .into_iter()
            .collect();
    let recipe = isobuild::recipe::load(&test.path().join("metalk8s.yaml"), &overrides).unwrap();
    assert_eq!(recipe.images.list.len(), 37);

    // Stand-ins: three shared bases (as alpine, distroless and rockylinux are shared
    // upstream), a layer of each image's own, some multi-arch indexes, both manifest formats.
    let bases = [
        Layer::generate(900, 2, 8 * 1024),
        Layer::generate(901, 1, 16 * 1024),
        Layer::generate(902, 3, 4 * 1024),
    ];
    let archives = test.path().join("archives");
    fs_err::create_dir_all(&archives).unwrap();
    let seed = |i: usize| 1000 + u64::try_from(i).unwrap();
    for (i, entry) in recipe.images.list.iter().enumerate() {
        let format = if i % 2 == 0 {
            Format::Docker
        } else {
            Format::Oci
        };
        let layers = vec![bases[i % 3].clone(), Layer::generate(seed(i), 1, 2 * 1024)];
        match &entry.source {
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
            ImageSource::OciArchive(path) => {
                let image = Image::new(Format::Docker, "amd64", layers);
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                fs_err::write(archives.join(name), oci_archive(&image, &entry.tag)).unwrap();
            }
            other => panic!("unexpected source {other}"),
        }
    }
    let bin = test.path().join("bin");
    fs_err::create_dir_all(&bin).unwrap();
    test.write("bin/buildah", FAKE_BUILDAH);
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(bin.join("buildah"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }

    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let test = test
        .env("PATH", &path)
        .env("ISOBUILD_TEST_ARCHIVES", archives.to_str().unwrap());
    let mut args: Vec<String> = [
        "build",
        "metalk8s.yaml",
        "--progress",
        "plain",
        "--ignore-pins",
        "--insecure-registry",
        &host,
        "--set",
        &format!("metalk8s_src={}", fixture().display()),
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
    let run = test.run(&args).success();
    assert!(
        run.stderr.contains("(not checked: --ignore-pins)"),
        "every skipped pin is said:\n{}",
        run.stderr
    );

    let iso = test.path().join("_build/metalk8s.iso");
    assert!(iso.is_file());
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
            "downgrade.sh",
            "examples",
            "images",
            "iso-manager.sh",
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
    for entry in &recipe.images.list {
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
    assert!(run.stdout.contains("task build-salt-master"));
    assert!(run.stdout.contains("registry-config"));
    assert!(run.stdout.contains("iso metalk8s.iso"));
}
