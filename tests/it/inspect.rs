//! `isobuild inspect` and `isobuild diff` on ISOs built here, and the SBOM `build` writes:
//! two recipes that differ by one image tag, one removed image, one added file and one changed
//! file; inspect of an ISO against its tree and its lock file; the SBOM against the official
//! CycloneDX schema (through `cyclonedx-python-lib`) and against itself across builds.

use std::path::{Path, PathBuf};
use std::process::Command;

use isobuild::inspect::render::human;
use serde_json::{Value, json};

use crate::harness::Test;
use crate::harness::images::{Format, Image, Layer, Pusher, TestSet};
use crate::harness::peers::Registry;

fn recipe(host: &str, alpha_tag: &str, with_beta: bool) -> String {
    let beta = if with_beta {
        format!("    - {{ name: beta, ref: \"{host}/test/beta:2.0\" }}\n")
    } else {
        String::new()
    };
    format!(
        r#"isobuild: 1
name: Demo
version: 1.0.0
epoch: 1700000000
iso:
  output: _build/demo.iso
  root: _build/root
  sbom: true
images:
  list:
    - {{ name: alpha, ref: "{host}/test/alpha:{alpha_tag}" }}
{beta}    - {{ name: multi, ref: "{host}/test/multi:3.0" }}
files:
  - {{ src: product.txt, dest: product.txt }}
  - {{ src: static/, dest: static/ }}
  - {{ src: bootstrap.sh, dest: bootstrap.sh }}
"#
    )
}

/// The standard test set plus `test/alpha:1.1`: alpha's base layer and a new top layer.
fn registry() -> Registry {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let set = TestSet::new();
    set.push(&pusher, "");
    let alpha_next = Image::new(
        Format::Docker,
        "amd64",
        vec![set.base.clone(), Layer::generate(6, 2, 48 * 1024)],
    );
    pusher.push_image("test/alpha", Some("1.1"), &alpha_next);
    registry
}

fn project(recipe: &str) -> Test {
    Test::new()
        .recipe(recipe)
        .file("product.txt", "NAME=Demo\nVERSION=1.0.0\n")
        .file("static/a.txt", "a\n")
        .file("static/keep.txt", "kept\n")
        .file(LONG_NAME, "long\n")
        .file("bootstrap.sh", "#!/bin/sh\necho bootstrap\n")
        .executable("bootstrap.sh")
}

/// A name plain ISO 9660 cannot hold (lower case, several dots, 70 characters): only its Rock
/// Ridge name makes `inspect` of the ISO equal `inspect` of the tree.
const LONG_NAME: &str =
    "static/deep/Mixed.Case-and-a-very-long-name-that-iso9660-cannot-hold.v1.2.yaml";

fn build(test: &Test, host: &str) {
    test.run(["build", "recipe.yaml", "-q", "--insecure-registry", host])
        .success();
}

/// The old release and the new one: alpha 1.0 → 1.1, beta gone, `static/new.txt` added,
/// `static/a.txt` changed.
fn two_releases(registry: &Registry) -> (Test, Test) {
    let host = registry.host();
    let old = project(&recipe(&host, "1.0", true));
    build(&old, &host);
    let new = project(&recipe(&host, "1.1", false))
        .file("static/a.txt", "a, changed\n")
        .file("static/new.txt", "new\n");
    build(&new, &host);
    (old, new)
}

fn iso(test: &Test) -> PathBuf {
    test.path().join("_build/demo.iso")
}

fn stdout_of(test: &Test, args: &[&str]) -> String {
    let run = test.run(args).success();
    run.stdout.clone()
}

fn json_of(test: &Test, args: &[&str]) -> Value {
    let text = stdout_of(test, args);
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

fn sha256(bytes: &[u8]) -> String {
    isobuild::reference::Digest::of(bytes).to_string()
}

/// An image folder of a tree, read without isobuild: its manifest digest, its size (config
/// and layers) and its layer digests.
fn image_facts(tree: &Path, dir: &str) -> (String, u64, Vec<String>) {
    let bytes = fs_err::read(tree.join(dir).join("manifest.json")).unwrap();
    let manifest: Value = serde_json::from_slice(&bytes).unwrap();
    let layers: Vec<&Value> = manifest["layers"].as_array().unwrap().iter().collect();
    let size = manifest["config"]["size"].as_u64().unwrap()
        + layers
            .iter()
            .map(|layer| layer["size"].as_u64().unwrap())
            .sum::<u64>();
    let digests = layers
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_owned())
        .collect();
    (sha256(&bytes), size, digests)
}

#[test]
fn diff_reports_exactly_the_changes_in_every_format() {
    let registry = registry();
    let (old, new) = two_releases(&registry);
    let (old_tree, new_tree) = (
        old.path().join("_build/root"),
        new.path().join("_build/root"),
    );
    let (alpha_old, alpha_old_size, alpha_old_layers) = image_facts(&old_tree, "images/alpha/1.0");
    let (alpha_new, alpha_new_size, alpha_new_layers) = image_facts(&new_tree, "images/alpha/1.1");
    let (beta, beta_size, beta_layers) = image_facts(&old_tree, "images/beta/2.0");
    assert_eq!(
        alpha_old_layers[0], alpha_new_layers[0],
        "the base layer is shared"
    );
    let delta = i64::try_from(alpha_new_size).unwrap() - i64::try_from(alpha_old_size).unwrap();
    // The old ISO by a relative path (the diffs run in its project), the new by an absolute
    // one: same product and file name, so the labels are the paths as typed.
    let new_iso = iso(&new);
    let (old_iso, new_iso) = ("_build/demo.iso", new_iso.to_str().unwrap());
    let (old_label, new_label) = (
        "Demo 1.0.0 (`_build/demo.iso`)".to_owned(),
        format!("Demo 1.0.0 (`{new_iso}`)"),
    );

    let diff = json_of(&old, &["diff", old_iso, new_iso, "--format", "json"]);
    let summary = "images: 1 removed, 1 changed; packages: no change; files: 1 added, 1 changed";
    let expected = json!({
        "version": 1,
        "old": old_label,
        "new": new_label,
        "summary": summary,
        "images": {
            "added": [],
            "removed": [
                { "name": "beta", "tag": "2.0", "digest": beta, "size": beta_size,
                  "layers": beta_layers.len() }
            ],
            "changed": [
                { "name": "alpha", "old_tag": "1.0", "new_tag": "1.1",
                  "old_digest": alpha_old, "new_digest": alpha_new,
                  "old_size": alpha_old_size, "new_size": alpha_new_size, "size_delta": delta,
                  "layers_shared": 1, "layers_added": 1, "layers_removed": 1 }
            ]
        },
        "packages": { "added": [], "removed": [], "changed": [] },
        "files": {
            "added": [ { "path": "static/new.txt", "size": 4, "sha256": sha256(b"new\n") } ],
            "removed": [],
            "changed": [
                { "path": "static/a.txt", "old_size": 2, "new_size": 11, "size_delta": 9,
                  "old_sha256": sha256(b"a\n"), "new_sha256": sha256(b"a, changed\n"),
                  "old_mode": "0644", "new_mode": "0644" }
            ]
        }
    });
    pretty_assertions::assert_eq!(diff, expected);

    let short = |digest: &str| digest.strip_prefix("sha256:").unwrap()[..12].to_owned();
    let markdown = stdout_of(&old, &["diff", old_iso, new_iso, "--format", "markdown"]);
    let expected_markdown = format!(
        "## Changes from {old_label} to {new_label}\n\
         \n\
         {summary}\n\
         \n\
         ### Images\n\
         \n\
         | Image | Change | Old | New | Size | Layers shared |\n\
         |---|---|---|---|---|---|\n\
         | `beta` | removed | `2.0` (`{beta_short}`) | | {beta_delta} | |\n\
         | `alpha` | changed | `1.0` (`{old_short}`) | `1.1` (`{new_short}`) | {delta} | 1 of 2 |\n\
         \n\
         ### Packages\n\
         \n\
         No change.\n\
         \n\
         ### Files\n\
         \n\
         | File | Change | Size |\n\
         |---|---|---|\n\
         | `static/new.txt` | added | 4 B |\n\
         | `static/a.txt` | changed | +9 B |\n",
        beta_short = short(&beta),
        beta_delta = human(-i64::try_from(beta_size).unwrap(), true),
        old_short = short(&alpha_old),
        new_short = short(&alpha_new),
        delta = human(delta, true),
    );
    pretty_assertions::assert_eq!(markdown, expected_markdown);

    let text = stdout_of(&old, &["diff", old_iso, new_iso]);
    let expected_text = format!(
        "--- {old_label}\n\
         +++ {new_label}\n\
         - image beta:2.0  {beta_human}\n\
         ~ image alpha: 1.0 ({old_short}) -> 1.1 ({new_short})  {delta}, 1 of 2 layers shared\n\
         + file static/new.txt  4 B\n\
         ~ file static/a.txt  +9 B\n\
         {summary}\n",
        beta_human = human(i64::try_from(beta_size).unwrap(), false),
        old_short = short(&alpha_old),
        new_short = short(&alpha_new),
        delta = human(delta, true),
    );
    pretty_assertions::assert_eq!(text, expected_text);

    // Trees and lock files compare the same way as the ISOs they describe.
    let trees = json_of(
        &old,
        &[
            "diff",
            old_tree.to_str().unwrap(),
            new_tree.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(trees["images"], expected["images"]);
    assert_eq!(trees["files"], expected["files"]);

    // Exit 0 whether or not they differ; with `--exit-code`, 1 when they do, and no error.
    old.run(["diff", old_iso, new_iso]).success();
    let differ = old
        .run(["diff", old_iso, new_iso, "--exit-code"])
        .failure(1);
    assert_eq!(differ.stdout, expected_text);
    assert_eq!(differ.stderr, "");
    // File names that differ are enough to tell the sides apart.
    fs_err::copy(new_iso, old.path().join("next.iso")).unwrap();
    let named = json_of(&old, &["diff", old_iso, "next.iso", "--format", "json"]);
    assert_eq!(named["old"], "Demo 1.0.0 (`demo.iso`)");
    assert_eq!(named["new"], "Demo 1.0.0 (`next.iso`)");
    let same = stdout_of(&old, &["diff", old_iso, old_iso, "--exit-code"]);
    assert!(
        same.ends_with("images: no change; packages: no change; files: no change\n"),
        "{same}"
    );
}

#[test]
fn inspect_of_an_iso_equals_inspect_of_its_tree_and_of_its_lock() {
    let registry = registry();
    let host = registry.host();
    let test = project(&recipe(&host, "1.0", true));
    test.run(["lock", "recipe.yaml", "-q", "--insecure-registry", &host])
        .success();
    test.run([
        "build",
        "recipe.yaml",
        "-q",
        "--locked",
        "--insecure-registry",
        &host,
    ])
    .success();
    let iso_path = iso(&test);
    let iso_path = iso_path.to_str().unwrap();
    let mut of_iso = json_of(&test, &["inspect", iso_path, "--format", "json"]);
    let mut of_tree = json_of(&test, &["inspect", "_build/root", "--format", "json"]);
    let of_lock = json_of(&test, &["inspect", "recipe.yaml.lock", "--format", "json"]);

    // The ISO itself.
    let bytes = fs_err::read(iso_path).unwrap();
    assert_eq!(
        of_iso["iso"],
        json!({ "volume_id": "Demo 1.0.0", "size": bytes.len(), "sha256": sha256(&bytes) })
    );
    assert_eq!(of_iso["kind"], "iso");
    assert_eq!(of_iso["version"], 1);
    assert_eq!(
        of_iso["product"],
        json!({ "NAME": "Demo", "VERSION": "1.0.0" })
    );
    assert_eq!(of_iso["packages"], json!([]), "no packages/ tree");
    let file = |path: &str, content: &[u8], mode: &str| json!({ "path": path, "size": content.len(), "sha256": sha256(content), "mode": mode });
    assert_eq!(
        of_iso["files"],
        json!([
            file("bootstrap.sh", b"#!/bin/sh\necho bootstrap\n", "0755"),
            file("product.txt", b"NAME=Demo\nVERSION=1.0.0\n", "0644"),
            file("static/a.txt", b"a\n", "0644"),
            file(LONG_NAME, b"long\n", "0644"),
            file("static/keep.txt", b"kept\n", "0644"),
        ])
    );
    let names: Vec<&str> = of_iso["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta", "multi"]);
    let tree = test.path().join("_build/root");
    for image in of_iso["images"].as_array().unwrap() {
        let dir = image["path"].as_str().unwrap();
        let (digest, size, layers) = image_facts(&tree, dir);
        assert_eq!(image["manifest_digest"], digest.as_str(), "{dir}");
        assert_eq!(image["size"], size, "{dir}");
        assert_eq!(image["platform"], "linux/amd64", "{dir}");
        let listed: Vec<&str> = image["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|layer| layer["digest"].as_str().unwrap())
            .collect();
        assert_eq!(listed, layers, "{dir}");
    }

    // ISO = tree, but for what only an ISO has.
    of_iso["kind"] = json!(null);
    of_iso["iso"] = json!(null);
    of_tree["kind"] = json!(null);
    pretty_assertions::assert_eq!(of_iso, of_tree);

    // ISO = lock where they overlap: name, tag, platform, config and layers (digest, size).
    let overlap = |images: &Value| -> Vec<Value> {
        images
            .as_array()
            .unwrap()
            .iter()
            .map(|image| {
                let layers: Vec<Value> = image["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|layer| json!([layer["digest"], layer["size"]]))
                    .collect();
                json!([
                    image["name"],
                    image["tag"],
                    image["platform"],
                    image["config"],
                    layers,
                    image["size"]
                ])
            })
            .collect()
    };
    assert_eq!(of_lock["kind"], "lock");
    pretty_assertions::assert_eq!(overlap(&of_iso["images"]), overlap(&of_lock["images"]));

    // With `--lock`, the ISO's images say where they came from, as the lock file does.
    let with_lock = json_of(
        &test,
        &[
            "inspect",
            iso_path,
            "--lock",
            "recipe.yaml.lock",
            "--format",
            "json",
        ],
    );
    for (image, locked) in with_lock["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip(of_lock["images"].as_array().unwrap())
    {
        assert_eq!(image["upstream"], locked["upstream"]);
        assert!(
            image["upstream"]["reference"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{host}/test/")),
            "{image}"
        );
    }

    let text = stdout_of(&test, &["inspect", iso_path]);
    assert!(text.contains("volume id  Demo 1.0.0"), "{text}");
    assert!(text.contains("images (3)"), "{text}");
    assert!(text.contains("0755          25"), "{text}");

    // Not an ISO, a tree or a lock file: a usage error naming it.
    test.run(["inspect", "recipe.yaml"])
        .failure(2)
        .stderr_contains("`recipe.yaml` is not an ISO 9660 image");
}

/// A Python with `cyclonedx-python-lib` (the official CycloneDX library, which carries the
/// schemas and a validator): the venv `cargo xtask ci` prepares, made here when it is missing.
fn cyclonedx_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cyclonedx-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import cyclonedx.validation.json"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !ready {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed to validate the SBOM (apt-get install python3-venv)");
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "cyclonedx-python-lib[json-validation]"])
            .status()
            .unwrap();
        assert!(status.success(), "pip install cyclonedx-python-lib failed");
    }
    python
}

/// Validate each of `sboms` against the CycloneDX 1.6 JSON schema, in one Python (loading the
/// schema takes seconds): for each, `Ok` or `Err` with the validator's message.
fn validate(python: &Path, sboms: &[&Path]) -> Vec<Result<(), String>> {
    const SCRIPT: &str = r"
import json, sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
validator = JsonStrictValidator(SchemaVersion.V1_6)
for path in sys.argv[1:]:
    error = validator.validate_str(open(path).read())
    message = getattr(getattr(error, 'data', None), 'message', str(error))
    print(json.dumps(None if error is None else message))
";
    let output = Command::new(python)
        .args(["-c", SCRIPT])
        .args(sboms)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(
            |line| match serde_json::from_str::<Option<String>>(line).unwrap() {
                None => Ok(()),
                Some(message) => Err(message),
            },
        )
        .collect()
}

#[test]
fn the_sbom_validates_against_the_cyclonedx_schema_and_is_reproducible() {
    let registry = registry();
    let host = registry.host();
    let first = project(&recipe(&host, "1.0", true));
    first
        .run(["lock", "recipe.yaml", "-q", "--insecure-registry", &host])
        .success();
    build(&first, &host);
    let sbom_path = first.path().join("_build/demo.iso.cdx.json");
    let sbom = fs_err::read(&sbom_path).unwrap();

    // Byte-identical from another folder and cache, and what `inspect` prints for the ISO.
    let second = project(&recipe(&host, "1.0", true));
    second
        .run([
            "build",
            "recipe.yaml",
            "-q",
            "--cache-dir",
            "other-cache",
            "--insecure-registry",
            &host,
        ])
        .success();
    assert_eq!(
        fs_err::read(second.path().join("_build/demo.iso.cdx.json")).unwrap(),
        sbom
    );
    let printed = stdout_of(
        &first,
        &[
            "inspect",
            "_build/demo.iso",
            "--lock",
            "recipe.yaml.lock",
            "--format",
            "cyclonedx",
        ],
    );
    assert_eq!(printed.as_bytes(), sbom.as_slice());

    // An up-to-date build leaves it alone; a remade ISO gets it again, the same bytes.
    let modified = || fs_err::metadata(&sbom_path).unwrap().modified().unwrap();
    let before = modified();
    build(&first, &host);
    assert_eq!(modified(), before);
    fs_err::remove_file(iso(&first)).unwrap();
    build(&first, &host);
    assert!(modified() > before);
    assert_eq!(fs_err::read(&sbom_path).unwrap(), sbom);

    // What it says.
    let document: Value = serde_json::from_slice(&sbom).unwrap();
    let iso_bytes = fs_err::read(iso(&first)).unwrap();
    assert_eq!(document["specVersion"], "1.6");
    assert_eq!(
        document["metadata"]["component"]["hashes"][0]["content"],
        sha256(&iso_bytes).strip_prefix("sha256:").unwrap()
    );
    assert!(document.get("metadata").unwrap().get("timestamp").is_none());
    let components = document["components"].as_array().unwrap();
    let containers: Vec<&Value> = components
        .iter()
        .filter(|component| component["type"] == "container")
        .collect();
    assert_eq!(containers.len(), 3);
    let tree = first.path().join("_build/root");
    let (alpha, _, alpha_layers) = image_facts(&tree, "images/alpha/1.0");
    let alpha_purl = containers[0]["purl"].as_str().unwrap();
    assert_eq!(
        alpha_purl,
        format!(
            "pkg:oci/alpha@sha256%3A{}?arch=amd64&repository_url={}&tag=1.0",
            alpha.strip_prefix("sha256:").unwrap(),
            format!("{host}/test/alpha")
                .replace(':', "%3A")
                .replace('/', "%2F")
        )
    );
    assert_eq!(
        containers[0]["components"].as_array().unwrap().len(),
        alpha_layers.len()
    );
    let groups: Vec<&str> = components
        .iter()
        .filter(|component| component["type"] == "file")
        .map(|component| component["name"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["bootstrap.sh", "product.txt", "static/"]);

    // The official schema accepts it, and rejects a broken copy (so the check can fail).
    let python = cyclonedx_python();
    let mut broken = document.clone();
    broken["components"][0]["type"] = json!("not-a-type");
    let broken_path = first.path().join("broken.cdx.json");
    fs_err::write(&broken_path, serde_json::to_vec(&broken).unwrap()).unwrap();
    let verdicts = validate(&python, &[&sbom_path, &broken_path]);
    assert_eq!(verdicts[0], Ok(()), "the SBOM is valid CycloneDX 1.6");
    let Err(message) = &verdicts[1] else {
        panic!("the validator accepted a component of type `not-a-type`")
    };
    assert!(message.contains("not-a-type"), "{message}");
}

#[test]
fn broken_isos_trees_and_lock_files_are_named_and_print_nothing() {
    let test = Test::new()
        .file(
            "tree/images/x/1.0/version",
            "Directory Transport Version: 1.1\n",
        )
        .file("tree/images/x/1.0/manifest.json", "{ not json")
        .file("src/big.bin", &"x".repeat(200_000))
        .file("src/small.txt", "small\n")
        .file("bad.lock", "version: 1\nplatform: linux/amd64\nimages: 3\n");

    let run = test.run(["inspect", "tree"]).failure(1).stderr_contains(
        "image folder `images/x/1.0`: manifest.json does not parse: key must be a string",
    );
    assert_eq!(run.stdout, "");

    let run = test
        .run(["inspect", "bad.lock"])
        .failure(1)
        .stderr_contains("cannot read the lock file `bad.lock`");
    assert_eq!(run.stdout, "");

    // An ISO cut after its directories: its files' data is missing.
    let status = Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-rock",
            "-output",
            "whole.iso",
            "src",
        ])
        .current_dir(test.path())
        .status()
        .unwrap();
    assert!(status.success());
    let whole = fs_err::read(test.path().join("whole.iso")).unwrap();
    fs_err::write(test.path().join("cut.iso"), &whole[..40 * 2048]).unwrap();
    test.run(["inspect", "whole.iso"])
        .success()
        .stdout_contains("big.bin");
    let run = test
        .run(["inspect", "cut.iso"])
        .failure(1)
        .stderr_contains("cannot read the ISO `cut.iso`: `/big.bin` lies past its end");
    assert_eq!(run.stdout, "");
    fs_err::write(test.path().join("cut.iso"), &whole[..18 * 2048]).unwrap();
    test.run(["inspect", "cut.iso"])
        .failure(1)
        .stderr_contains("cannot read the ISO `cut.iso`: it ends before its directories do");
    test.run(["diff", "whole.iso", "cut.iso"]).failure(1);
}

/// Run `program` in `dir` with `GNUPGHOME` set; panic with its output when it fails.
fn run_in(dir: &Path, gnupg: &Path, program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GNUPGHOME", gnupg)
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Build `name-version-release.noarch.rpm` (with `epoch` when given) into `dest` with
/// `rpmbuild`, an empty package whose header is all that matters here.
fn rpmbuild(dir: &Path, gnupg: &Path, dest: &Path, nevr: (&str, Option<u32>, &str, &str)) {
    let (name, epoch, version, release) = nevr;
    let epoch = epoch.map_or_else(String::new, |epoch| format!("Epoch: {epoch}\n"));
    let spec = dir.join(format!("{name}.spec"));
    fs_err::write(
        &spec,
        format!(
            "Name: {name}\n{epoch}Version: {version}\nRelease: {release}\nSummary: test\n\
             License: MIT\nBuildArch: noarch\nAutoReq: no\n%description\ntest\n%files\n"
        ),
    )
    .unwrap();
    fs_err::create_dir_all(dest).unwrap();
    let topdir = format!("_topdir {}", dir.join("rpmbuild").display());
    let rpmdir = format!("_rpmdir {}", dest.display());
    run_in(
        dir,
        gnupg,
        "rpmbuild",
        &[
            "-bb",
            "--quiet",
            "--define",
            &topdir,
            "--define",
            &rpmdir,
            "--define",
            "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
            spec.to_str().unwrap(),
        ],
    );
}

#[test]
fn rpm_fields_come_from_the_headers_and_version_changes_are_diffed() {
    let test = Test::new().file("old/tree/product.txt", "NAME=Demo\n");
    let (dir, gnupg) = (test.path(), test.path().join("gnupg"));
    fs_err::create_dir_all(&gnupg).unwrap();
    fs_err::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    run_in(
        dir,
        &gnupg,
        "gpg",
        &[
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "isobuild test <test@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
    );
    let key_id = run_in(dir, &gnupg, "gpg", &["--list-keys", "--with-colons"])
        .lines()
        .find_map(|line| line.strip_prefix("pub:"))
        .and_then(|rest| rest.split(':').nth(3))
        .unwrap()
        .to_lowercase();

    let repo = "packages/redhat/8/metalk8s-epel-el8";
    let old_rpms = dir.join("old/tree").join(repo).join("noarch");
    let new_rpms = dir.join("new/tree").join(repo).join("noarch");
    // A file name that lies: only the header can say what the package is.
    rpmbuild(dir, &gnupg, &old_rpms, ("jq", None, "1.5", "12.el8"));
    rpmbuild(dir, &gnupg, &old_rpms, ("gone", None, "1", "1.el8"));
    rpmbuild(dir, &gnupg, &new_rpms, ("jq", Some(1), "1.6", "3.el8"));
    fs_err::rename(
        old_rpms.join("gone-1-1.el8.noarch.rpm"),
        old_rpms.join("misnamed.rpm"),
    )
    .unwrap();
    let signed = new_rpms.join("jq-1.6-3.el8.noarch.rpm");
    let gpg_name = format!("_gpg_name {key_id}");
    run_in(
        dir,
        &gnupg,
        "rpmsign",
        &[
            "--addsign",
            "--define",
            &gpg_name,
            "--define",
            "__gpg /usr/bin/gpg",
            signed.to_str().unwrap(),
        ],
    );
    for tree in ["old/tree", "new/tree"] {
        test.write(&format!("{tree}/{repo}/repodata/repomd.xml"), "<repomd/>\n");
    }
    let old_jq = fs_err::read(old_rpms.join("jq-1.5-12.el8.noarch.rpm")).unwrap();
    let new_jq = fs_err::read(&signed).unwrap();

    let inventory = json_of(&test, &["inspect", "old/tree", "--format", "json"]);
    pretty_assertions::assert_eq!(
        inventory["packages"],
        json!([
            {
                "path": format!("{repo}/noarch/jq-1.5-12.el8.noarch.rpm"), "repo": repo,
                "name": "jq", "epoch": null, "version": "1.5", "release": "12.el8",
                "arch": "noarch", "nevra": "jq-1.5-12.el8.noarch",
                "size": old_jq.len(), "sha256": sha256(&old_jq), "signing_key": null,
            },
            {
                "path": format!("{repo}/noarch/misnamed.rpm"), "repo": repo,
                "name": "gone", "epoch": null, "version": "1", "release": "1.el8",
                "arch": "noarch", "nevra": "gone-1-1.el8.noarch",
                "size": fs_err::metadata(old_rpms.join("misnamed.rpm")).unwrap().len(),
                "sha256": sha256(&fs_err::read(old_rpms.join("misnamed.rpm")).unwrap()),
                "signing_key": null,
            },
        ])
    );
    let files: Vec<&str> = inventory["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [&format!("{repo}/repodata/repomd.xml"), "product.txt"]
    );

    let new_inventory = json_of(&test, &["inspect", "new/tree", "--format", "json"]);
    pretty_assertions::assert_eq!(
        new_inventory["packages"][0],
        json!({
            "path": format!("{repo}/noarch/jq-1.6-3.el8.noarch.rpm"), "repo": repo,
            "name": "jq", "epoch": "1", "version": "1.6", "release": "3.el8",
            "arch": "noarch", "nevra": "jq-1:1.6-3.el8.noarch",
            "size": new_jq.len(), "sha256": sha256(&new_jq), "signing_key": key_id,
        })
    );
    // Read from an ISO (the header from its extents), the same packages.
    run_in(
        dir,
        &gnupg,
        "xorriso",
        &[
            "-as", "mkisofs", "-quiet", "-rock", "-output", "new.iso", "new/tree",
        ],
    );
    let from_iso = json_of(&test, &["inspect", "new.iso", "--format", "json"]);
    assert_eq!(from_iso["packages"], new_inventory["packages"]);

    let diff = json_of(&test, &["diff", "old/tree", "new/tree", "--format", "json"]);
    assert_eq!(
        diff["packages"],
        json!({
            "added": [],
            "removed": [ { "name": "gone", "arch": "noarch", "version": "1-1.el8" } ],
            "changed": [ { "name": "jq", "arch": "noarch",
                           "old_version": "1.5-12.el8", "new_version": "1:1.6-3.el8" } ],
        })
    );
    let markdown = stdout_of(
        &test,
        &["diff", "old/tree", "new/tree", "--format", "markdown"],
    );
    assert!(
        markdown.contains("| `jq.noarch` | changed | `1.5-12.el8` | `1:1.6-3.el8` |"),
        "{markdown}"
    );
    let sbom = json_of(&test, &["inspect", "new/tree", "--format", "cyclonedx"]);
    assert_eq!(
        sbom["components"][0]["purl"],
        "pkg:rpm/jq@1.6-3.el8?arch=noarch&epoch=1"
    );

    // Not an RPM at all: named, and nothing printed.
    test.write(
        &format!("new/tree/{repo}/noarch/bad-1-1.noarch.rpm"),
        "not an rpm\n",
    );
    let run = test
        .run(["inspect", "new/tree"])
        .failure(1)
        .stderr_contains(&format!(
            "RPM package `{repo}/noarch/bad-1-1.noarch.rpm`: not an RPM package"
        ));
    assert_eq!(run.stdout, "");
}

/// The sha256 `inspect -v` says it took from the digest memo, and the one it reports.
fn inspect_iso(test: &Test, iso: &str) -> (String, String) {
    let run = test
        .run(["inspect", iso, "--format", "json", "-v"])
        .success();
    let inventory: Value = serde_json::from_str(&run.stdout).unwrap();
    let origin = run
        .stderr
        .lines()
        .find_map(|line| line.split_once(&format!("sha256 of {iso}: ")))
        .map_or_else(
            || panic!("no word on the sha256: {}", run.stderr),
            |(_, how)| how.to_owned(),
        );
    (
        origin,
        inventory["iso"]["sha256"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn inspect_takes_the_sha256_from_the_digest_memo_until_the_iso_changes() {
    let test = Test::new()
        .recipe(
            "isobuild: 1\nname: Demo\nversion: 1.0.0\niso:\n  output: _build/demo.iso\n  \
             root: _build/root\nfiles:\n  - { src: product.txt, dest: product.txt }\n",
        )
        .file("product.txt", "NAME=Demo\nVERSION=1.0.0\n");
    test.run(["build", "recipe.yaml", "-q"]).success();
    let iso = "_build/demo.iso";
    let bytes = fs_err::read(test.path().join(iso)).unwrap();
    // `build` remembered the sha256 it computed anyway.
    let (origin, digest) = inspect_iso(&test, iso);
    assert_eq!(origin, "from the digest memo (not re-hashed)");
    assert_eq!(digest, sha256(&bytes));

    // Same size, one byte of the unused system area changed: hashed again, and right.
    let mut changed = bytes.clone();
    changed[100] ^= 0xff;
    fs_err::write(test.path().join(iso), &changed).unwrap();
    let (origin, digest) = inspect_iso(&test, iso);
    assert_eq!(origin, "hashed, now in the digest memo");
    assert_eq!(digest, sha256(&changed));
    let (origin, digest) = inspect_iso(&test, iso);
    assert_eq!(origin, "from the digest memo (not re-hashed)");
    assert_eq!(digest, sha256(&changed));

    // Only touched (same bytes, new times): hashed again.
    let file = fs_err::File::options()
        .write(true)
        .open(test.path().join(iso))
        .unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    file.file().set_modified(later).unwrap();
    drop(file);
    let (origin, digest) = inspect_iso(&test, iso);
    assert_eq!(origin, "hashed, now in the digest memo");
    assert_eq!(digest, sha256(&changed));

    // Another cache knows nothing of it; `--cache-dir` picks the cache.
    let run = test
        .run(["inspect", iso, "-v", "--cache-dir", "other-cache"])
        .success();
    assert!(
        run.stderr.contains("hashed, now in the digest memo"),
        "{}",
        run.stderr
    );
    assert!(test.path().join("other-cache/digests-v1").is_dir());
}
