//! The ISO's registry tree (issue: the MetalK8s contract): `isobuild layout` from a real
//! docker-registry, served by a real nginx with the generated rules, pulled back by skopeo as
//! a MetalK8s node does; hard-link dedup, docker-archive tarballs, `verify`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::Value;

use crate::harness::Test;
use crate::harness::images::{Pusher, TestSet, agent};
use crate::harness::peers::{Nginx, Registry, skopeo};

const VARIABLE: &str = "$test_1_0_0_images";

/// The test set pushed to a fresh registry, and a recipe that lays it out.
fn project(registry: &Registry) -> Test {
    let set = TestSet::new();
    set.push(&Pusher::new(registry), "");
    let host = registry.host();
    Test::new().recipe(&format!(
        r#"isobuild: 1
name: Test
version: 1.0.0
epoch: 1700000000
images:
  registry_config:
    path: salt/registry.inc
    common_path: salt/registry-common.inc
    name_prefix: "test-{{{{ version }}}}/"
    server_root: "$test_{{{{ version | underscore }}}}_images"
    # The opt-in JSON 404 for unknown tags, which the test below asks for.
    unknown_tag_error: true
  list:
    - {{ name: alpha, ref: "{host}/test/alpha:1.0", archive: images/alpha-1.0.tar }}
    - {{ name: alpha, tag: "1.0-again", ref: "{host}/test/alpha:1.0" }}
    - {{ name: beta, ref: "{host}/test/beta:2.0" }}
    - {{ name: multi, ref: "{host}/test/multi:3.0" }}
"#
    ))
}

fn layout(test: &Test, registry: &Registry) {
    test.run([
        "layout",
        "recipe.yaml",
        "out",
        "--insecure-registry",
        &registry.host(),
        "-q",
    ])
    .success();
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_owned())
        .collect()
}

fn file_digest(path: &Path) -> String {
    isobuild::reference::Digest::of(&fs_err::read(path).unwrap()).to_string()
}

#[test]
fn nginx_serves_the_layout_to_skopeo_by_tag_and_by_digest() {
    let registry = Registry::start();
    let test = project(&registry);
    layout(&test, &registry);
    let out = test.path().join("out");
    let nginx = Nginx::start(
        &out.join("images"),
        VARIABLE,
        &[
            &out.join("salt/registry-common.inc"),
            &out.join("salt/registry.inc"),
        ],
    );
    let served = nginx.host();
    for (name, tag, source) in [
        ("alpha", "1.0", "test/alpha:1.0"),
        ("alpha", "1.0-again", "test/alpha:1.0"),
        ("beta", "2.0", "test/beta:2.0"),
        ("multi", "3.0", "test/multi:3.0"),
    ] {
        let by_tag = format!("docker://{served}/test-1.0.0/{name}:{tag}");
        let inspected = json(&skopeo(&["inspect", "--tls-verify=false", &by_tag]));
        let manifest_file = out.join(format!("images/{name}/{tag}/manifest.json"));
        let digest = file_digest(&manifest_file);
        assert_eq!(
            inspected["Digest"],
            digest,
            "{name}:{tag}: served digest\n{}",
            nginx.error_log()
        );

        // Pull it by digest, as containerd does after resolving the tag.
        let by_digest = format!("docker://{served}/test-1.0.0/{name}@{digest}");
        let copy = test.path().join(format!("copy-{name}-{tag}"));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &by_digest,
            &format!("dir:{}", copy.display()),
        ]);
        let pulled = json(&fs_err::read_to_string(copy.join("manifest.json")).unwrap());
        assert_eq!(
            pulled["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
            "{name}:{tag} is served as Docker schema 2"
        );

        // Layers are the source registry's, byte for byte (the amd64 manifest for the index).
        let source_raw = json(&skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/{source}", registry.host()),
        ]));
        let source_manifest = if source_raw.get("manifests").is_some() {
            let amd64 = source_raw["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|entry| entry["platform"]["architecture"] == "amd64")
                .unwrap()["digest"]
                .as_str()
                .unwrap()
                .to_owned();
            let repository = source.split(':').next().unwrap();
            json(&skopeo(&[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{}/{repository}@{amd64}", registry.host()),
            ]))
        } else {
            source_raw
        };
        assert_eq!(layer_digests(&pulled), layer_digests(&source_manifest));
        for layer in layer_digests(&pulled) {
            let hex = layer.trim_start_matches("sha256:");
            assert_eq!(file_digest(&copy.join(hex)), layer, "layer bytes unchanged");
        }
    }

    let agent = agent();
    let tags = agent
        .get(format!("http://{served}/v2/test-1.0.0/alpha/tags/list"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert_eq!(tags, r#"{"name": "alpha", "tags": ["1.0", "1.0-again"]}"#);

    let unknown = agent
        .get(format!(
            "http://{served}/v2/test-1.0.0/alpha/manifests/nope"
        ))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let body = unknown.into_body().read_to_string().unwrap();
    assert!(body.contains("TAG_INVALID"), "{body}");

    let ok = agent
        .get(format!("http://{served}/v2/"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn an_oci_image_becomes_schema2_with_its_layer_bytes_unchanged() {
    let registry = Registry::start();
    let test = project(&registry);
    layout(&test, &registry);
    let dir = test.path().join("out/images/beta/2.0");
    let manifest = json(&fs_err::read_to_string(dir.join("manifest.json")).unwrap());
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    let set = TestSet::new();
    let source: Vec<String> = set
        .beta
        .blob_digests()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut written: Vec<String> =
        std::iter::once(manifest["config"]["digest"].as_str().unwrap().to_owned())
            .chain(layer_digests(&manifest))
            .collect();
    let mut source = source;
    source.sort();
    written.sort();
    assert_eq!(written, source, "config and layers keep their digests");
    assert_eq!(
        fs_err::read_to_string(dir.join("version")).unwrap(),
        "Directory Transport Version: 1.1\n"
    );
}

#[test]
fn a_shared_layer_is_one_inode_and_the_tree_verifies() {
    let registry = Registry::start();
    let test = project(&registry);
    layout(&test, &registry);
    let out = test.path().join("out");
    let base = TestSet::new().base.digest.hex().to_owned();
    let in_alpha = fs_err::metadata(out.join("images/alpha/1.0").join(&base)).unwrap();
    let in_beta = fs_err::metadata(out.join("images/beta/2.0").join(&base)).unwrap();
    assert_eq!(
        in_alpha.ino(),
        in_beta.ino(),
        "the shared base layer is stored once"
    );
    assert_eq!(in_alpha.mode() & 0o777, 0o644);

    test.run(["verify", "out"])
        .success()
        .stdout_contains("4 images");

    // Replace (not edit: the file is the cache's too) a layer with other bytes.
    let layer = out.join("images/beta/2.0").join(&base);
    fs_err::remove_file(&layer).unwrap();
    fs_err::write(&layer, b"not the layer").unwrap();
    test.run(["verify", "out"])
        .failure(1)
        .stderr_contains(&format!("images/beta/2.0/{base}"));
}

#[test]
fn archives_are_deterministic_and_readable_by_skopeo() {
    let registry = Registry::start();
    let test = project(&registry);
    layout(&test, &registry);
    let archive = test.path().join("out/images/alpha-1.0.tar");
    let inspected = json(&skopeo(&[
        "inspect",
        &format!("docker-archive:{}", archive.display()),
    ]));
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
    let storage = tempfile::tempdir().unwrap();
    let loaded =
        crate::harness::podman::run_in(storage.path(), &["load", "-i", &archive.to_string_lossy()]);
    assert!(loaded.contains("test/alpha:1.0"), "{loaded}");
    let first = fs_err::read(&archive).unwrap();
    // A layout somewhere else, with another cache: the same bytes.
    let other = project(&registry);
    other
        .run([
            "layout",
            "recipe.yaml",
            "elsewhere",
            "--insecure-registry",
            &registry.host(),
            "-q",
        ])
        .success();
    assert_eq!(
        fs_err::read(other.path().join("elsewhere/images/alpha-1.0.tar")).unwrap(),
        first
    );
}
