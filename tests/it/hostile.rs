//! Hostile input through the real binary (issue "Reliability and security: faults,
//! interrupts, hostile registries, bad input"): what a recipe's sources, an image archive or
//! a registry can hold to read or write where they should not, or to make isobuild store
//! what was not verified.
//!
//! - `files:` sources with symbolic links out of the project: the build fails naming the
//!   link and its target, and copies nothing.
//! - Templates cannot read files: minijinja has no loader, so `include`, `import` and
//!   `extends` of any path fail.
//! - `docker-archive:` and `oci-archive:` sources with `..`, absolute names, device files,
//!   FIFOs and links out of the archive are refused whole, and nothing is written anywhere.
//! - Manifests from a registry whose bytes do not match their digest, with a negative or
//!   huge size, or with media types isobuild does not know: exit 1 with the image and the
//!   problem, no blob fetched, nothing unverified in the cache.

use std::collections::BTreeMap;
use std::path::Path;

use isobuild::reference::Digest;
use isobuild::source::manifest::media_type;
use serde_json::{Value, json};

use crate::faults::{Setup, assert_cache_sound, layout};
use crate::harness::proxy::Fault;
use crate::harness::{Test, tar_file as file, tar_raw_member};

const HEAD: &str = "isobuild: 1\nname: Hostile\nversion: 1.0.0\nepoch: 1700000000\n";

/// A folder beside the project with a secret file, as a link target outside the project.
struct Outside {
    dir: tempfile::TempDir,
}

const SECRET: &str = "the-outside-secret-5b8f";

impl Outside {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("isobuild-outside-")
            .tempdir()
            .unwrap();
        fs_err::write(dir.path().join("secret.txt"), SECRET).unwrap();
        fs_err::create_dir(dir.path().join("folder")).unwrap();
        fs_err::write(dir.path().join("folder/inner.txt"), SECRET).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn symlink(target: &Path, link: &Path) {
    fs_err::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// No file of `dir` holds `needle`.
#[track_caller]
fn assert_nowhere(dir: &Path, needle: &str) {
    if !dir.exists() {
        return;
    }
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let bytes = fs_err::read(entry.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(needle),
                "`{needle}` was copied into {}",
                entry.path().display()
            );
        }
    }
}

#[test]
fn symlinks_out_of_the_project_fail_the_build_and_copy_nothing() {
    let outside = Outside::new();
    let cases: [(&str, &str, std::path::PathBuf); 5] = [
        // A link in a copied tree to a file outside.
        ("tree/evil.txt", "tree/", outside.path("secret.txt")),
        // To a system file, by an absolute path.
        ("tree/passwd", "tree/", "/etc/passwd".into()),
        // To a folder outside (walking does not follow it, reading it would).
        ("tree/sub/escape", "tree/", outside.path("folder")),
        // The `src` itself a link out.
        ("single.txt", "single.txt", outside.path("secret.txt")),
        // A relative link climbing out of the project.
        (
            "tree/up.txt",
            "tree/",
            "../../../../../../../../etc/hostname".into(),
        ),
    ];
    for (link, src, target) in cases {
        let test = Test::new()
            .recipe(&format!(
                "{HEAD}iso:\n  root: _build/root\nfiles:\n  - {{ src: \"{src}\", dest: copied }}\n"
            ))
            .file("tree/fine.txt", "fine\n");
        symlink(&target, &test.path().join(link));
        let run = test.run(["layout", "recipe.yaml", "out", "-q"]).failure(1);
        assert!(
            run.stderr.contains(link) && run.stderr.contains("outside"),
            "{link} -> {}: the error names the link\n{run}",
            target.display()
        );
        let out = test.path().join("out");
        assert_nowhere(&out, SECRET);
        assert_nowhere(&out, "root:x:0:0");
        assert!(!out.join("copied/evil.txt").exists());
    }
}

#[test]
fn a_symlink_inside_the_project_is_copied_as_its_file() {
    // The other side of the rule: links that stay in the project are fine.
    let test = Test::new()
        .recipe(&format!(
            "{HEAD}files:\n  - {{ src: tree/, dest: copied/ }}\n"
        ))
        .file("tree/real.txt", "real\n")
        .file("shared/common.txt", "common\n");
    symlink(Path::new("real.txt"), &test.path().join("tree/alias.txt"));
    symlink(
        Path::new("../shared/common.txt"),
        &test.path().join("tree/common.txt"),
    );
    test.run(["layout", "recipe.yaml", "out", "-q"]).success();
    let copied = test.path().join("out/copied");
    assert_eq!(test.read("out/copied/alias.txt"), "real\n");
    assert_eq!(test.read("out/copied/common.txt"), "common\n");
    assert!(!copied.join("alias.txt").is_symlink());
}

#[test]
fn templates_cannot_read_files() {
    let outside = Outside::new();
    let secret = outside.path("secret.txt").display().to_string();
    let cases = [
        r#"{% include "/etc/passwd" %}"#.to_owned(),
        format!(r#"{{% include "{secret}" %}}"#),
        // A path relative to the template, in the project: no loader, no file.
        r#"{% include "other.txt" %}"#.to_owned(),
        r#"{% import "/etc/passwd" as passwd %}"#.to_owned(),
        r#"{% extends "/etc/passwd" %}"#.to_owned(),
        r#"{% from "/etc/passwd" import root %}"#.to_owned(),
    ];
    for template in cases {
        let test = Test::new()
            .recipe(&format!(
                "{HEAD}files:\n  - {{ src: evil.j2, dest: evil.txt, template: true }}\n"
            ))
            .file("evil.j2", &format!("before\n{template}\nafter\n"))
            .file("other.txt", "in the project\n");
        let run = test.run(["layout", "recipe.yaml", "out", "-q"]);
        assert_eq!(run.code, Some(1), "{template}\n{run}");
        assert!(
            run.stderr.contains("evil.j2")
                && run
                    .stderr
                    .contains("templates cannot include, import or extend other files"),
            "{template}: the error names the template and says why\n{run}"
        );
        assert!(!test.path().join("out/evil.txt").exists());
        assert_nowhere(test.path(), "root:x:0:0");
    }
}

#[test]
fn recipe_fields_cannot_read_files_either() {
    let test = Test::new().recipe(&format!(
        "{HEAD}iso:\n  volume_id: \"{{% include '/etc/passwd' %}}\"\n"
    ));
    let run = test.run(["graph", "recipe.yaml"]).failure(2);
    assert!(
        run.stderr.contains("iso.volume_id") && run.stderr.contains("not found"),
        "{run}"
    );
    assert!(!run.stdout.contains("root:x:0:0") && !run.stderr.contains("root:x:0:0"));
}

// ---- archives --------------------------------------------------------------------------------

/// One image: an uncompressed layer and its config.
fn image_parts() -> (Vec<u8>, Vec<u8>) {
    let mut layer = tar::Builder::new(Vec::new());
    file(&mut layer, "etc/motd", b"hello from a layer\n");
    let layer = layer.into_inner().unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [Digest::of(&layer).to_string()] },
    }))
    .unwrap();
    (layer, config)
}

/// Makes an archive whose first member(s) the closure writes.
type MakeArchive = fn(&dyn Fn(&mut tar::Builder<Vec<u8>>)) -> Vec<u8>;
/// Edits a manifest.
type Edit = Box<dyn Fn(&mut Value)>;

/// A docker-archive (`docker save` form) whose first member is `bad`.
fn docker_archive(bad: &dyn Fn(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let (layer, config) = image_parts();
    let mut builder = tar::Builder::new(Vec::new());
    bad(&mut builder);
    let layer_name = format!("{}/layer.tar", Digest::of(&layer).hex());
    let config_name = format!("{}.json", Digest::of(&config).hex());
    file(&mut builder, &layer_name, &layer);
    file(&mut builder, &config_name, &config);
    let manifest =
        json!([{ "Config": config_name, "RepoTags": ["bad:1"], "Layers": [layer_name] }]);
    file(
        &mut builder,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    builder.into_inner().unwrap()
}

/// An oci-archive (OCI layout in a tar) whose first member is `bad`.
fn oci_archive(bad: &dyn Fn(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let (layer, config) = image_parts();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": { "mediaType": media_type::OCI_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len() },
        "layers": [{ "mediaType": media_type::OCI_LAYER, "digest": Digest::of(&layer).to_string(), "size": layer.len() }],
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type::OCI_MANIFEST,
            "digest": Digest::of(&manifest).to_string(),
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": "1" },
        }],
    }))
    .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    bad(&mut builder);
    file(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    file(&mut builder, "index.json", &index);
    for blob in [&manifest, &config, &layer] {
        file(
            &mut builder,
            &format!("blobs/sha256/{}", Digest::of(blob).hex()),
            blob,
        );
    }
    builder.into_inner().unwrap()
}

/// Every path under `dir` but the cache, the layout output and `keep`, for "nothing was
/// written" checks.
fn files_outside_output(dir: &Path) -> Vec<String> {
    crate::harness::relative_paths(dir)
        .into_iter()
        // `.out.isobuild-tree` marks `out` as a tree isobuild made (and is its lock).
        .filter(|name| {
            !name.starts_with(".cache") && !name.starts_with("out") && name != ".out.isobuild-tree"
        })
        .collect()
}

#[test]
fn archives_with_members_that_would_escape_are_refused_whole() {
    use tar::EntryType::{Block, Char, Fifo, Link, Regular, Symlink};
    let unique = format!("/tmp/isobuild-evil-{}", std::process::id());
    let cases: Vec<(&str, tar::EntryType, &str, &str)> = vec![
        ("../evil", Regular, "", "contains `..`"),
        ("a/../../evil", Regular, "", "contains `..`"),
        (&unique, Regular, "", "absolute"),
        ("dev/console", Char, "", "device files"),
        ("dev/sda", Block, "", "device files"),
        ("pipe", Fifo, "", "FIFOs"),
        ("hard", Link, "../../etc/passwd", "outside the archive"),
        ("hard-abs", Link, "/etc/passwd", "absolute path"),
        ("sym", Symlink, "/etc/passwd", "absolute path"),
        (
            "deep/sym",
            Symlink,
            "../../../etc/shadow",
            "outside the archive",
        ),
    ];
    for (transport, make) in [
        ("docker-archive", docker_archive as MakeArchive),
        ("oci-archive", oci_archive),
    ] {
        for &(name, kind, link, reason) in &cases {
            let data: &[u8] = if kind == Regular { b"evil" } else { b"" };
            let archive = make(&|builder: &mut tar::Builder<Vec<u8>>| {
                tar_raw_member(builder, name, kind, link, data);
            });
            // The recipe and the archive sit two folders deep, so `..` from a would-be
            // extraction lands in the project, where it would show.
            let test = Test::new()
                .recipe(&format!(
                    "{HEAD}images:\n  list:\n    - {{ name: bad, tag: \"1\", ref: \"{transport}:a/b/bad.tar\" }}\n"
                ));
            fs_err::create_dir_all(test.path().join("a/b")).unwrap();
            fs_err::write(test.path().join("a/b/bad.tar"), &archive).unwrap();
            let before = files_outside_output(test.path());
            let run = test.run(["layout", "recipe.yaml", "out", "-q"]);
            let what = format!("{transport} with {name} ({kind:?} {link})");
            assert_eq!(run.code, Some(1), "{what}\n{run}");
            assert!(
                run.stderr.contains(name) && run.stderr.contains(reason),
                "{what}: the error names the member and why\n{run}"
            );
            assert!(run.stderr.contains("bad.tar"), "{what}\n{run}");
            assert_eq!(
                files_outside_output(test.path()),
                before,
                "{what}: files appeared"
            );
            assert!(!test.path().join("out/images/bad").exists(), "{what}");
            assert!(!Path::new(&unique).exists(), "{what}");
            assert!(
                !test.path().parent().unwrap().join("evil").exists(),
                "{what}"
            );
            assert_cache_sound(&test.cache_dir(), &BTreeMap::new());
        }
        // The same archive without the bad member is fine: the refusals are about it.
        let test = Test::new().recipe(&format!(
            "{HEAD}images:\n  list:\n    - {{ name: good, tag: \"1\", ref: \"{transport}:good.tar\" }}\n"
        ));
        fs_err::write(test.path().join("good.tar"), make(&|_| {})).unwrap();
        test.run(["layout", "recipe.yaml", "out", "-q"]).success();
        assert!(
            test.path()
                .join("out/images/good/1/manifest.json")
                .is_file()
        );
    }
}

// ---- manifests from a hostile registry -------------------------------------------------------

/// Serve `body` for `path` instead of the registry, as a registry would: 200, its media type,
/// and a `Docker-Content-Digest` (the body's own unless `digest` says otherwise).
fn serve(setup: &Setup, path: &str, body: &[u8], digest: Option<&Digest>) {
    let media_type = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| value["mediaType"].as_str().map(str::to_owned))
        .unwrap_or_else(|| media_type::DOCKER_MANIFEST.to_owned());
    let digest = digest.cloned().unwrap_or_else(|| Digest::of(body));
    setup.proxy.clear_faults();
    setup.proxy.fault(
        path,
        Fault::Status {
            status: 200,
            headers: vec![
                ("Content-Type".into(), media_type),
                ("Docker-Content-Digest".into(), digest.to_string()),
            ],
            body: body.to_vec(),
        },
        usize::MAX,
    );
}

/// Lay the recipe out against what [`serve`] set up: it must fail with exit code 1 and say
/// each of `needles`, fetch no blob, and leave the cache sound.
#[track_caller]
fn refused(setup: &Setup, needles: &[&str]) {
    setup.proxy.clear();
    let test = setup.project();
    let run = layout(&test, &setup.host()).failure(1);
    for needle in needles {
        assert!(run.stderr.contains(needle), "lacks {needle:?}\n{run}");
    }
    assert_eq!(
        setup.proxy.count("GET", "/blobs/"),
        0,
        "a refused manifest's blobs are not fetched\n{run}"
    );
    let partials = assert_cache_sound(&test.cache_dir(), &setup.known_blobs());
    assert!(partials.is_empty());
    assert!(!test.path().join("out/images/alpha").exists());
}

/// alpha's manifest, changed by `edit`.
fn edited_alpha(setup: &Setup, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut manifest: Value = serde_json::from_slice(&setup.set.alpha.manifest).unwrap();
    edit(&mut manifest);
    serde_json::to_vec_pretty(&manifest).unwrap()
}

#[test]
fn manifests_whose_bytes_do_not_match_their_digest_are_refused() {
    let setup = Setup::new();
    let host = setup.host();
    let alpha = format!("{host}/test/alpha:1.0");

    // By tag: the bytes are another (valid) manifest, the header names alpha's digest.
    let other = edited_alpha(&setup, |manifest| {
        manifest["layers"].as_array_mut().unwrap().pop();
    });
    serve(
        &setup,
        "/test/alpha/manifests/1.0",
        &other,
        Some(&setup.set.alpha.digest),
    );
    refused(
        &setup,
        &[
            &alpha,
            &format!(
                "whose digest is `{}`, expected `{}`",
                Digest::of(&other),
                setup.set.alpha.digest
            ),
        ],
    );

    // By digest (the index's amd64 entry): beta's manifest instead, with beta's own header.
    let amd64 = setup.set.multi.image("linux/amd64").digest.clone();
    serve(
        &setup,
        &format!("/test/multi/manifests/{amd64}"),
        &setup.set.beta.manifest,
        None,
    );
    refused(
        &setup,
        &[
            &format!("{host}/test/multi:3.0"),
            &format!("expected `{amd64}`"),
        ],
    );
}

#[test]
fn manifests_with_impossible_sizes_are_refused() {
    let setup = Setup::new();
    let alpha = format!("{}/test/alpha:1.0", setup.host());
    for size in [
        "-1",
        "1e300",
        "1.5",
        "\"12\"",
        "99999999999999999999",
        "null",
    ] {
        let body = edited_alpha(&setup, |manifest| {
            manifest["layers"][0]["size"] = json!("SIZE");
        });
        let body = String::from_utf8(body)
            .unwrap()
            .replace("\"SIZE\"", size)
            .into_bytes();
        serve(&setup, "/test/alpha/manifests/1.0", &body, None);
        refused(&setup, &[&alpha, "cannot be used", "expected u64"]);
    }
}

#[test]
fn a_layer_far_larger_than_its_bytes_fails_on_the_size_not_the_disk() {
    let setup = Setup::new();
    let layer = setup.set.alpha.layers[1].digest.clone();
    let body = edited_alpha(&setup, |manifest| {
        manifest["layers"][1]["size"] = json!(u64::MAX);
    });
    serve(&setup, "/test/alpha/manifests/1.0", &body, None);
    setup.proxy.clear();
    let test = setup.project().env("ISOBUILD_HTTP_RETRIES", "2");
    let run = layout(&test, &setup.host()).failure(1);
    for needle in [
        layer.to_string().as_str(),
        "has the wrong size: expected 18446744073709551615 bytes",
    ] {
        assert!(run.stderr.contains(needle), "lacks {needle:?}\n{run}");
    }
    assert!(
        !test
            .cache_dir()
            .join("blobs-v1/sha256")
            .join(layer.hex())
            .exists()
    );
    let partials = assert_cache_sound(&test.cache_dir(), &setup.known_blobs());
    assert!(partials.is_empty(), "{partials:?}");
}

#[test]
fn unknown_media_types_are_refused_before_any_blob() {
    let setup = Setup::new();
    let alpha = format!("{}/test/alpha:1.0", setup.host());
    let cases: [(&str, Edit, &str); 4] = [
        (
            "manifest",
            Box::new(|m| m["mediaType"] = json!("application/vnd.evil.manifest+json")),
            "application/vnd.evil.manifest+json",
        ),
        (
            "layer",
            Box::new(|m| {
                m["layers"][0]["mediaType"] = json!("application/vnd.evil.layer.v1.tar+xz");
            }),
            "unknown layer media type `application/vnd.evil.layer.v1.tar+xz`",
        ),
        (
            "config",
            Box::new(|m| {
                m["config"]["mediaType"] = json!("application/vnd.cncf.helm.config.v1+json");
            }),
            "unknown config media type `application/vnd.cncf.helm.config.v1+json`",
        ),
        (
            "schema 1",
            Box::new(|m| m["schemaVersion"] = json!(1)),
            "schema version 1 is not supported",
        ),
    ];
    for (what, edit, problem) in cases {
        let body = edited_alpha(&setup, |manifest| edit(manifest));
        serve(&setup, "/test/alpha/manifests/1.0", &body, None);
        setup.proxy.clear();
        let test = setup.project();
        let run = layout(&test, &setup.host());
        assert_eq!(run.code, Some(1), "{what}\n{run}");
        for needle in [alpha.as_str(), problem] {
            assert!(
                run.stderr.contains(needle),
                "{what}: lacks {needle:?}\n{run}"
            );
        }
        assert_eq!(setup.proxy.count("GET", "/blobs/"), 0, "{what}");
    }
}
