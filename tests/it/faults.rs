//! Network faults through the real binary (issue "Reliability and security: faults,
//! interrupts, hostile registries, bad input"): `isobuild layout` against a real
//! docker-registry behind the fault proxy.
//!
//! - A transient fault (a cut body, a reset, a stall, flipped bytes, a `429`, a burst of
//!   `500`s, a body longer than the manifest says, a redirect) is absorbed: the run succeeds
//!   and its tree is byte for byte the tree of a run without faults.
//! - A persistent one fails the run with exit code 1 and a message naming the image, the
//!   blob and what happened.
//! - Either way the cache holds no unverified blob: every file of `blobs-v1/` hashes to its
//!   name, and `tmp/` holds nothing but resumable partials, each a true prefix of its blob.
//!
//! The helpers here ([`Setup`], [`snapshot`], [`assert_cache_sound`]) are shared with the
//! interrupt, hostile-registry and secrets tests.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use isobuild::reference::Digest;

use crate::harness::images::{Format, Image, Layer, Pusher, TestSet};
use crate::harness::peers::Registry;
use crate::harness::proxy::{Fault, Proxy};
use crate::harness::{Run, Test};

/// A read timeout short enough that a stalled response costs a second, and long enough for
/// a loaded machine to answer a loopback request.
pub(crate) const TIMEOUT: &str = "1";

/// A registry with the test set and one larger image, behind a proxy.
pub(crate) struct Setup {
    /// Kept running for as long as the setup lives.
    pub(crate) _registry: Registry,
    pub(crate) proxy: Proxy,
    pub(crate) set: TestSet,
    /// `test/big:1.0`: one layer of a few MiB, more than the cache's write buffer, so an
    /// interrupted download leaves bytes on disk.
    pub(crate) big: Image,
}

impl Setup {
    pub(crate) fn new() -> Self {
        let registry = Registry::start();
        let set = TestSet::new();
        let pusher = Pusher::new(&registry);
        set.push(&pusher, "");
        let big = Image::new(
            Format::Docker,
            "amd64",
            vec![Layer::generate(40, 1, 3 * 1024 * 1024)],
        );
        pusher.push_image("test/big", Some("1.0"), &big);
        let proxy = Proxy::start(registry.addr());
        Self {
            _registry: registry,
            proxy,
            set,
            big,
        }
    }

    pub(crate) fn host(&self) -> String {
        self.proxy.host()
    }

    /// A project whose recipe lists the test set's three images and `big`, from the proxy.
    pub(crate) fn project(&self) -> Test {
        Test::new()
            .recipe(&recipe(&self.host(), true))
            .env("ISOBUILD_HTTP_TIMEOUT", TIMEOUT)
    }

    /// Every blob (and manifest) of every image pushed, by hex digest: what a partial in the
    /// cache must be a prefix of.
    pub(crate) fn known_blobs(&self) -> BTreeMap<String, Vec<u8>> {
        let mut known = BTreeMap::new();
        let mut add_image = |image: &Image| {
            known.insert(image.config_digest.hex().to_owned(), image.config.clone());
            known.insert(image.digest.hex().to_owned(), image.manifest.clone());
            for layer in &image.layers {
                known.insert(layer.digest.hex().to_owned(), layer.bytes());
            }
        };
        add_image(&self.set.alpha);
        add_image(&self.set.beta);
        add_image(&self.big);
        for (_, image) in &self.set.multi.images {
            add_image(image);
        }
        known.insert(
            self.set.multi.digest.hex().to_owned(),
            self.set.multi.bytes.clone(),
        );
        known
    }

    /// The big layer, the one faults usually hit.
    pub(crate) fn big_layer(&self) -> &Layer {
        &self.big.layers[0]
    }
}

/// A recipe with alpha, beta and multi from `host`, and big when asked.
pub(crate) fn recipe(host: &str, big: bool) -> String {
    let mut recipe = format!(
        r#"isobuild: 1
name: Test
version: 1.0.0
epoch: 1700000000
images:
  list:
    - {{ name: alpha, ref: "{host}/test/alpha:1.0", archive: images/alpha.tar }}
    - {{ name: beta, ref: "{host}/test/beta:2.0" }}
    - {{ name: multi, ref: "{host}/test/multi:3.0" }}
"#
    );
    if big {
        recipe.push_str(&format!(
            "    - {{ name: big, ref: \"{host}/test/big:1.0\" }}\n"
        ));
    }
    recipe
}

/// `isobuild layout recipe.yaml out` from `host`, quietly.
pub(crate) fn layout(test: &Test, host: &str) -> Run {
    test.run([
        "layout",
        "recipe.yaml",
        "out",
        "-q",
        "--insecure-registry",
        host,
    ])
}

/// Every file under `dir`: relative path → sha256 and mode. Two runs that wrote the same
/// tree have equal snapshots.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.unwrap();
        let relative = entry
            .path()
            .strip_prefix(dir)
            .unwrap()
            .display()
            .to_string();
        let metadata = entry.path().symlink_metadata().unwrap();
        let mode = metadata.permissions().mode() & 0o7777;
        let value = if metadata.is_file() {
            let digest = Digest::of(&fs_err::read(entry.path()).unwrap());
            format!("{digest} {mode:o}")
        } else {
            format!("dir {mode:o}")
        };
        files.insert(relative, value);
    }
    files
}

/// Files under `dir` whose name marks an unfinished write (`*.isobuild-tmp`).
pub(crate) fn temporaries(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|entry| entry.unwrap())
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .ends_with(".isobuild-tmp")
        })
        .map(|entry| entry.path().display().to_string())
        .collect()
}

/// The cache holds nothing unverified: every blob hashes to its name, and `tmp/` holds only
/// resumable partials (`<hex>.partial`), each a prefix of the blob it will become. Returns
/// the partials' sizes by hex digest.
#[track_caller]
pub(crate) fn assert_cache_sound(
    cache: &Path,
    known: &BTreeMap<String, Vec<u8>>,
) -> BTreeMap<String, u64> {
    check_cache(cache, known, true)
}

/// [`assert_cache_sound`], but with other files in `tmp/` allowed unless `strict`: right
/// after a `SIGKILL`, which lets no process clean up, only the next run can.
#[track_caller]
pub(crate) fn check_cache(
    cache: &Path,
    known: &BTreeMap<String, Vec<u8>>,
    strict: bool,
) -> BTreeMap<String, u64> {
    let blobs = cache.join("blobs-v1/sha256");
    if blobs.exists() {
        for entry in fs_err::read_dir(&blobs).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = Digest::of(&fs_err::read(entry.path()).unwrap());
            assert_eq!(digest.hex(), name, "cached blob {name} has other bytes");
        }
    }
    let mut partials = BTreeMap::new();
    let tmp = cache.join("tmp");
    if tmp.exists() {
        for entry in fs_err::read_dir(&tmp).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let hex = name.strip_suffix(".partial").unwrap_or_default();
            let resumable = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
            if !resumable {
                assert!(
                    !strict,
                    "stray file `{name}` in the cache's tmp/ (not a resumable partial)"
                );
                continue;
            }
            let bytes = fs_err::read(entry.path()).unwrap();
            if let Some(blob) = known.get(hex) {
                assert!(
                    blob.starts_with(&bytes),
                    "partial {name} ({} bytes) is not a prefix of its blob",
                    bytes.len()
                );
            }
            partials.insert(hex.to_owned(), bytes.len() as u64);
        }
    }
    partials
}

/// Lay the recipe out once without faults, in a project of its own: the reference tree.
fn clean_tree(setup: &Setup) -> BTreeMap<String, String> {
    let test = setup.project();
    layout(&test, &setup.host()).success();
    snapshot(&test.path().join("out"))
}

/// Apply `fault` `times` times to requests for `path`, lay out, and check the run absorbed
/// it: success, the clean tree, a sound cache with no partial left. Returns the proxy's
/// requests for `path`, for the caller's own checks.
fn absorbed(
    setup: &Setup,
    path: &str,
    fault: &Fault,
    times: usize,
) -> Vec<crate::harness::proxy::Seen> {
    setup.proxy.clear_faults();
    let clean = clean_tree(setup);
    setup.proxy.clear();
    setup.proxy.fault(path, fault.clone(), times);
    let test = setup.project();
    let run = layout(&test, &setup.host());
    assert_eq!(
        run.code,
        Some(0),
        "{fault:?} on {path} was not absorbed\n{run}"
    );
    assert_eq!(
        snapshot(&test.path().join("out")),
        clean,
        "{fault:?}: the tree differs from a clean run's"
    );
    let partials = assert_cache_sound(&test.cache_dir(), &setup.known_blobs());
    assert!(
        partials.is_empty(),
        "partials left after success: {partials:?}"
    );
    assert!(temporaries(&test.path().join("out")).is_empty());
    let requests = setup.proxy.requests("GET", path);
    assert_eq!(
        requests.len(),
        times + 1,
        "{fault:?}: one request per fault, then one that works"
    );
    requests
}

/// Apply `fault` to every request for `path`: the run must fail with exit code 1, and its
/// error must contain each of `needles`. Returns the run and the partials left.
fn persistent(
    setup: &Setup,
    path: &str,
    fault: &Fault,
    needles: &[&str],
) -> (Run, BTreeMap<String, u64>) {
    setup.proxy.clear();
    setup.proxy.clear_faults();
    setup.proxy.fault(path, fault.clone(), usize::MAX);
    let test = setup.project().env("ISOBUILD_HTTP_RETRIES", "2");
    let run = layout(&test, &setup.host()).failure(1);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "{fault:?}: the error lacks {needle:?}\n{run}"
        );
    }
    let partials = assert_cache_sound(&test.cache_dir(), &setup.known_blobs());
    // The run stopped: nothing of the image folders was written half-way.
    assert!(temporaries(&test.path().join("out")).is_empty());
    (run, partials)
}

fn range_start(seen: &crate::harness::proxy::Seen) -> Option<u64> {
    seen.header("Range")?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

fn blob_path(digest: &Digest) -> String {
    format!("/blobs/{digest}")
}

#[test]
fn a_connection_dropped_mid_blob_resumes_with_a_range() {
    let setup = Setup::new();
    let layer = setup.big_layer().clone();
    let cut = 1_500_000;
    let requests = absorbed(&setup, &blob_path(&layer.digest), &Fault::Truncate(cut), 1);
    assert_eq!(range_start(&requests[0]), None);
    let start = range_start(&requests[1]).expect("the retry asks for a range");
    assert!(start > 0 && start <= cut as u64, "resumed from {start}");
    assert_eq!(
        requests[1].sent(),
        layer.size - start,
        "only the rest was sent again"
    );
}

#[test]
fn a_reset_connection_and_a_reset_manifest_request_are_retried() {
    let setup = Setup::new();
    absorbed(
        &setup,
        &blob_path(&setup.set.alpha.layers[1].digest),
        &Fault::Reset,
        2,
    );
    absorbed(&setup, "/test/beta/manifests/2.0", &Fault::Reset, 1);
}

#[test]
fn flipped_bytes_are_fetched_again_and_never_stored() {
    let setup = Setup::new();
    let requests = absorbed(
        &setup,
        &blob_path(&setup.set.base.digest),
        &Fault::Corrupt,
        1,
    );
    // Wrong bytes cannot be resumed: the retry starts over.
    assert_eq!(range_start(&requests[1]), None);
}

#[test]
fn a_response_that_never_starts_times_out_and_is_retried() {
    let setup = Setup::new();
    absorbed(
        &setup,
        &blob_path(&setup.set.beta.layers[1].digest),
        &Fault::Stall,
        1,
    );
    absorbed(&setup, "/test/multi/manifests/3.0", &Fault::Stall, 1);
}

#[test]
fn a_body_that_stalls_half_way_times_out_and_resumes() {
    let setup = Setup::new();
    let requests = absorbed(
        &setup,
        &blob_path(&setup.big_layer().digest),
        &Fault::Hold(2 * 1024 * 1024),
        1,
    );
    assert!(
        range_start(&requests[1]).is_some_and(|start| start > 0),
        "a body stalled half-way resumes: {:?}",
        requests[1].header("Range")
    );
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let setup = Setup::new();
    let fault = Fault::Status {
        status: 429,
        headers: vec![("Retry-After".into(), "1".into())],
        body: br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#.to_vec(),
    };
    for path in [
        blob_path(&setup.set.alpha.config_digest),
        "/test/alpha/manifests/1.0".to_owned(),
    ] {
        let requests = absorbed(&setup, &path, &fault, 1);
        let waited = requests[1].at - requests[0].at;
        assert!(
            waited >= Duration::from_millis(950),
            "{path}: retried after {waited:?}, not after Retry-After's second"
        );
    }
}

fn server_error() -> Fault {
    Fault::Status {
        status: 500,
        headers: vec![],
        body: b"internal error".to_vec(),
    }
}

#[test]
fn a_burst_of_server_errors_on_a_blob_is_ridden_out() {
    let setup = Setup::new();
    absorbed(
        &setup,
        &blob_path(&setup.set.base.digest),
        &server_error(),
        3,
    );
}

#[test]
fn a_burst_of_server_errors_on_a_manifest_is_ridden_out() {
    let setup = Setup::new();
    absorbed(&setup, "/manifests/sha256:", &server_error(), 2);
}

#[test]
fn a_body_longer_than_the_manifest_says_is_cut_and_fetched_again() {
    let setup = Setup::new();
    for declare in [true, false] {
        absorbed(
            &setup,
            &blob_path(&setup.set.alpha.layers[1].digest),
            &Fault::Append {
                extra: b"trailing garbage".to_vec(),
                declare,
            },
            1,
        );
    }
}

#[test]
fn a_blob_redirected_to_another_host_gets_no_credentials() {
    let registry = Registry::start_with_auth("builder", "redirect-s3cret");
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let layer = set.alpha.layers[1].clone();
    // "Object storage" on another port: serves the layer to anyone, or wrong bytes.
    let storage = Proxy::start(registry.addr());
    storage.fault(
        "/storage/good",
        Fault::Status {
            status: 200,
            headers: vec![],
            body: layer.bytes(),
        },
        usize::MAX,
    );
    storage.fault(
        "/storage/bad",
        Fault::Status {
            status: 200,
            headers: vec![],
            body: b"not the layer".to_vec(),
        },
        usize::MAX,
    );
    let front = Proxy::start(registry.addr());
    let host = front.host();
    let test = Test::new()
        .recipe(&recipe(&host, false))
        .env("ISOBUILD_HTTP_TIMEOUT", TIMEOUT)
        .env("ISOBUILD_HTTP_RETRIES", "2");
    let auth = base64::engine::general_purpose::STANDARD.encode("builder:redirect-s3cret");
    test.write(
        "docker/config.json",
        &format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    );
    let config_dir = test.path().join("docker");
    let test = test.env("DOCKER_CONFIG", config_dir.to_str().unwrap());
    let clean = {
        layout(&test, &host).success();
        let tree = snapshot(&test.path().join("out"));
        fs_err::remove_dir_all(test.path().join("out")).unwrap();
        fs_err::remove_dir_all(test.cache_dir()).unwrap();
        tree
    };

    let redirect = |to: &str| {
        front.clear_faults();
        front.fault(
            &blob_path(&layer.digest),
            Fault::Redirect(format!("http://{}/storage/{to}", storage.host())),
            usize::MAX,
        );
    };
    redirect("good");
    front.clear();
    layout(&test, &host).success();
    assert_eq!(snapshot(&test.path().join("out")), clean);
    let to_registry = front.requests("GET", &blob_path(&layer.digest));
    assert!(
        to_registry[0]
            .header("Authorization")
            .is_some_and(|value| value.starts_with("Basic ")),
        "the registry gets the credentials"
    );
    let to_storage = storage.seen();
    assert_eq!(to_storage.len(), 1, "{to_storage:?}");
    assert_eq!(
        to_storage[0].header("Authorization"),
        None,
        "credentials followed the redirect"
    );

    // Storage serving other bytes: refused, named, nothing stored.
    redirect("bad");
    fs_err::remove_dir_all(test.cache_dir()).unwrap();
    let run = layout(&test, &host).failure(1);
    for needle in [
        "sent the wrong bytes for",
        "test/alpha:1.0",
        &layer.digest.to_string(),
    ] {
        assert!(run.stderr.contains(needle), "lacks {needle:?}\n{run}");
    }
    assert!(
        storage
            .seen()
            .iter()
            .all(|seen| seen.header("Authorization").is_none())
    );
    assert_cache_sound(&test.cache_dir(), &BTreeMap::new());
    assert!(
        !test
            .cache_dir()
            .join("blobs-v1/sha256")
            .join(layer.digest.hex())
            .exists()
    );
}

#[test]
fn persistent_faults_fail_naming_the_image_the_blob_and_the_cause() {
    let setup = Setup::new();
    let big = setup.big_layer().digest.clone();
    let big_text = big.to_string();
    let image = format!("{}/test/big:1.0", setup.host());

    // Cut every time: what arrived is kept for the next run, as a verified prefix.
    let (_, partials) = persistent(
        &setup,
        &blob_path(&big),
        &Fault::Truncate(1_000_000),
        &[&image, &big_text, "after 2 attempt(s)"],
    );
    assert!(
        partials.get(big.hex()).is_some_and(|&size| size > 0),
        "the partial download is kept: {partials:?}"
    );

    // Wrong bytes every time: nothing kept.
    let (_, partials) = persistent(
        &setup,
        &blob_path(&big),
        &Fault::Corrupt,
        &[&image, &big_text, "sent the wrong bytes", "hash to"],
    );
    assert!(partials.is_empty(), "{partials:?}");

    // Longer than the manifest says, every time.
    let (_, partials) = persistent(
        &setup,
        &blob_path(&big),
        &Fault::Append {
            extra: vec![0; 10],
            declare: true,
        },
        &[&image, &big_text, "wrong size"],
    );
    assert!(partials.is_empty(), "{partials:?}");

    // Server errors, and a registry that always asks to come back later.
    persistent(
        &setup,
        &blob_path(&big),
        &Fault::Status {
            status: 500,
            headers: vec![("Retry-After".into(), "0".into())],
            body: b"disk on fire".to_vec(),
        },
        &[&image, &big_text, "HTTP 500", "disk on fire"],
    );
    persistent(
        &setup,
        "/test/big/manifests/1.0",
        &Fault::Status {
            status: 429,
            headers: vec![("Retry-After".into(), "0".into())],
            body: Vec::new(),
        },
        &[&image, "HTTP 429", "after 2 attempt(s)"],
    );
}

#[test]
fn a_registry_that_never_answers_times_out() {
    let setup = Setup::new();
    let big = setup.big_layer().digest.clone();
    let image = format!("{}/test/big:1.0", setup.host());
    let started = std::time::Instant::now();
    let (run, _) = persistent(
        &setup,
        &blob_path(&big),
        &Fault::Stall,
        &[&image, &big.to_string(), "cannot reach registry"],
    );
    assert!(
        run.stderr.contains("timed out") || run.stderr.contains("timeout"),
        "the cause is a timeout\n{run}"
    );
    // Two tries of one second and one backoff, not the default minute.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_huge_manifest_is_refused_without_being_read() {
    let setup = Setup::new();
    let image = format!("{}/test/alpha:1.0", setup.host());
    for declare in [true, false] {
        let (_, partials) = persistent(
            &setup,
            "/test/alpha/manifests/1.0",
            &Fault::Flood {
                headers: vec![(
                    "Content-Type".into(),
                    "application/vnd.docker.distribution.manifest.v2+json".into(),
                )],
                len: 50 * 1024 * 1024,
                declare,
            },
            &[&image, "manifests larger than 4194304 bytes are refused"],
        );
        assert!(partials.is_empty());
        let requests = setup.proxy.requests("GET", "/test/alpha/manifests/1.0");
        assert_eq!(requests.len(), 1, "a refused manifest is not asked again");
        // What the kernel's socket buffers took plus the 4 MiB read at most: not 50 MiB.
        assert!(
            requests[0].sent() < 20 * 1024 * 1024,
            "isobuild read {} bytes of a 50 MiB manifest (declared: {declare})",
            requests[0].sent()
        );
    }
}

#[test]
fn bad_timeout_and_retry_settings_are_usage_errors() {
    let test = Test::new().recipe(&recipe("127.0.0.1:9", false));
    for (name, value, expected) in [
        ("ISOBUILD_HTTP_TIMEOUT", "soon", "a number of seconds"),
        ("ISOBUILD_HTTP_TIMEOUT", "0", "a number of seconds"),
        ("ISOBUILD_HTTP_TIMEOUT", "-1", "a number of seconds"),
        (
            "ISOBUILD_HTTP_RETRIES",
            "0",
            "a number of tries, at least 1",
        ),
        (
            "ISOBUILD_HTTP_RETRIES",
            "many",
            "a number of tries, at least 1",
        ),
    ] {
        let test = Test::new()
            .recipe(&test.read("recipe.yaml"))
            .env(name, value);
        test.run(["fetch", "recipe.yaml", "-q"])
            .failure(2)
            .stderr_contains(&format!("{name}=`{value}` is not {expected}"));
    }
}

#[test]
fn retry_times_is_how_often_a_request_is_tried_again_and_each_retry_is_said() {
    let setup = Setup::new();
    let blob = blob_path(&setup.set.base.digest);
    let run = |retries: &str| {
        setup.proxy.clear_faults();
        setup.proxy.fault(&blob, server_error(), 2);
        let test = setup.project();
        test.run([
            "layout",
            "recipe.yaml",
            "out",
            "--progress",
            "plain",
            "--insecure-registry",
            &setup.host(),
            "--retry-times",
            retries,
        ])
    };
    // One retry: two tries, both answered 500.
    let failed = run("1").failure(1);
    assert!(failed.stderr.contains("(try 2 of 2): HTTP 500"), "{failed}");
    // Two retries: the third try gets through, and both retries were shown.
    let passed = run("2").success();
    let short = &setup.set.base.digest.to_string()[..19];
    for attempt in ["(try 2 of 3): HTTP 500", "(try 3 of 3): HTTP 500"] {
        assert!(
            passed
                .stderr
                .lines()
                .any(|line| line.contains(&format!("retrying {short}")) && line.ends_with(attempt)),
            "lacks a retry line ending {attempt:?}\n{passed}"
        );
    }
}
