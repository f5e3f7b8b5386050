//! Daemonless pulls through the real binary: `fetch`, `lock`, `--locked`, `--offline`, pins,
//! platforms and credentials, against a real docker-registry behind a counting proxy.

use base64::Engine as _;

use crate::harness::Test;
use crate::harness::images::{Pusher, TestSet};
use crate::harness::peers::Registry;
use crate::harness::proxy::Proxy;

/// A recipe with the test set's three images from `host`, and `extra` lines in `images.list`.
fn recipe(host: &str, extra: &str) -> String {
    format!(
        r#"isobuild: 1
name: Test
version: 1.0.0
epoch: 1700000000
images:
  list:
    - {{ name: alpha, ref: "{host}/test/alpha:1.0" }}
    - {{ name: beta, ref: "{host}/test/beta:2.0" }}
    - {{ name: multi, ref: "{host}/test/multi:3.0" }}
{extra}"#
    )
}

struct Setup {
    registry: Registry,
    proxy: Proxy,
    set: TestSet,
}

fn setup() -> Setup {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    Setup {
        registry,
        proxy,
        set,
    }
}

fn fetch(test: &Test, host: &str, extra: &[&str]) -> crate::harness::Run {
    let mut args = vec!["fetch", "recipe.yaml", "-q", "--insecure-registry", host];
    args.extend_from_slice(extra);
    test.run(args)
}

#[test]
fn fetch_fills_the_cache_once_and_a_second_fetch_downloads_nothing() {
    let setup = setup();
    let host = setup.proxy.host();
    let test = Test::new().recipe(&recipe(&host, ""));
    fetch(&test, &host, &[]).success();

    let blobs = test.cache_dir().join("blobs-v1/sha256");
    let mut expected = setup.set.alpha.blob_digests();
    expected.extend(setup.set.beta.blob_digests());
    expected.extend(setup.set.multi.image("linux/amd64").blob_digests());
    for digest in &expected {
        assert!(blobs.join(digest.hex()).is_file(), "{digest} is cached");
    }
    assert!(
        !blobs
            .join(setup.set.multi.image("linux/arm64").blob_digests()[1].hex())
            .exists(),
        "the other platform's layers are not fetched"
    );
    let base = format!("/blobs/{}", setup.set.base.digest);
    assert_eq!(
        setup.proxy.count("GET", &base),
        1,
        "the base layer shared by alpha and beta is fetched once"
    );

    setup.proxy.clear();
    fetch(&test, &host, &[]).success();
    assert_eq!(
        setup.proxy.count("GET", "/blobs/"),
        0,
        "nothing downloaded again"
    );
}

#[test]
fn offline_works_from_a_full_cache_and_names_every_missing_image() {
    let setup = setup();
    let host = setup.registry.host();
    let test = Test::new().recipe(&recipe(&host, ""));
    let empty = fetch(&test, &host, &["--offline"]).failure(1);
    for image in ["alpha:1.0", "beta:2.0", "multi:3.0"] {
        assert!(
            empty.stderr.contains(&format!("image `{image}`")),
            "{image} is named:\n{}",
            empty.stderr
        );
    }
    assert!(!test.path().join("out").exists());

    fetch(&test, &host, &[]).success();
    drop(setup);
    // The registry is gone: only the cache can make this layout.
    test.run(["layout", "recipe.yaml", "out", "--offline", "-q"])
        .success();
    assert!(
        test.path()
            .join("out/images/multi/3.0/manifest.json")
            .is_file()
    );
}

#[test]
fn a_wrong_pin_fails_with_the_image_and_both_digests() {
    let setup = setup();
    let host = setup.registry.host();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let test = Test::new().recipe(&recipe(
        &host,
        &format!("    - {{ name: pinned, ref: \"{host}/test/alpha:1.0\", digest: \"{wrong}\" }}\n"),
    ));
    let run = fetch(&test, &host, &[]).failure(1);
    assert!(
        run.stderr.contains(&format!(
            "image `pinned:1.0`: pinned digest `{wrong}` does not match: the registry serves manifest `sha256:"
        )),
        "{}",
        run.stderr
    );
    // With --ignore-pins it goes on, and says what it did not check.
    let run = test.run([
        "fetch",
        "recipe.yaml",
        "--progress",
        "plain",
        "--insecure-registry",
        &host,
        "--ignore-pins",
    ]);
    let run = run.success();
    assert!(
        run.stderr.contains("not checked: --ignore-pins"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_platform_flag_picks_the_arm64_manifest() {
    let setup = setup();
    let host = setup.registry.host();
    let test = Test::new().recipe(&recipe(&host, ""));
    test.run([
        "layout",
        "recipe.yaml",
        "out",
        "-q",
        "--insecure-registry",
        &host,
        "--platform",
        "linux/arm64",
    ])
    .success();
    let arm64 = setup.set.multi.image("linux/arm64");
    for digest in arm64.blob_digests() {
        assert!(
            test.path()
                .join("out/images/multi/3.0")
                .join(digest.hex())
                .is_file(),
            "arm64 blob {digest} laid out"
        );
    }
}

#[test]
fn lock_then_locked_pulls_by_digest_and_a_changed_recipe_is_refused() {
    let setup = setup();
    let host = setup.proxy.host();
    let test = Test::new().recipe(&recipe(&host, ""));
    test.run(["lock", "recipe.yaml", "-q", "--insecure-registry", &host])
        .success();
    let lock = test.read("recipe.yaml.lock");
    assert!(lock.contains("name: alpha"), "{lock}");
    assert!(
        lock.contains("index_digest: sha256:"),
        "multi is an index:\n{lock}"
    );

    setup.proxy.clear();
    test.run([
        "layout",
        "recipe.yaml",
        "out",
        "-q",
        "--locked",
        "--cache-dir",
        "fresh-cache",
        "--insecure-registry",
        &host,
    ])
    .success();
    assert_eq!(
        setup.proxy.count("GET", "/manifests/1.0"),
        0,
        "no tag is resolved with --locked"
    );
    assert!(setup.proxy.count("GET", "/manifests/sha256:") >= 3);

    test.write(
        "recipe.yaml",
        &recipe(
            &host,
            &format!("    - {{ name: more, ref: \"{host}/test/beta:2.0\" }}\n"),
        ),
    );
    test.run([
        "fetch",
        "recipe.yaml",
        "-q",
        "--locked",
        "--insecure-registry",
        &host,
    ])
    .failure(2)
    .stderr_contains("image `more:2.0` is not in it");
    fs_err::remove_file(test.path().join("recipe.yaml.lock")).unwrap();
    test.run([
        "fetch",
        "recipe.yaml",
        "-q",
        "--locked",
        "--insecure-registry",
        &host,
    ])
    .failure(2)
    .stderr_contains("run `isobuild lock` first");
}

#[test]
fn a_registry_with_basic_auth_works_with_a_docker_config_and_fails_clearly_without() {
    let registry = Registry::start_with_auth("builder", "s3cret-passw0rd");
    let set = TestSet::new();
    set.push(&Pusher::to(&registry.url(), registry.credentials()), "");
    let host = registry.host();
    let test = Test::new().recipe(&recipe(&host, ""));

    let refused = fetch(&test, &host, &[]).failure(1);
    assert!(
        refused.stderr.contains("unauthorized"),
        "{}",
        refused.stderr
    );

    let auth = base64::engine::general_purpose::STANDARD.encode("builder:s3cret-passw0rd");
    test.write(
        "docker/config.json",
        &format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    );
    let config_dir = test.path().join("docker");
    let test = test.env("DOCKER_CONFIG", config_dir.to_str().unwrap());
    let run = test.run([
        "fetch",
        "recipe.yaml",
        "-vv",
        "--progress",
        "plain",
        "--insecure-registry",
        &host,
        "--report",
        "report.json",
    ]);
    let run = run.success();
    for secret in ["s3cret-passw0rd", auth.as_str()] {
        assert!(!run.stderr.contains(secret), "a secret leaked to stderr");
        assert!(!run.stdout.contains(secret), "a secret leaked to stdout");
        assert!(!test.read("report.json").contains(secret));
    }
}
