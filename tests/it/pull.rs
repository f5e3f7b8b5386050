//! Pulling from a real registry through the library API ([`RegistryClient`] into a
//! [`Store`]): exact digests, platform choice, sharing, resumption, faults, auth, mirrors,
//! offline use and a large layer. The `fetch` command is wired to this later; until then
//! these tests call the library directly.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isobuild::recipe::Platform;
use isobuild::reference::{Digest, ImageRef};
use isobuild::report::{DownloadId, Reporter};
use isobuild::source::auth::AuthFiles;
use isobuild::source::retry::RetryPolicy;
use isobuild::source::{RegistryClient, ResolvedImage, SourceError};
use isobuild::store::{Store, StoreError};

use crate::harness::images::{Format, Image, Layer, Pusher, TestSet};
use crate::harness::peers::Registry;
use crate::harness::proxy::{Fault, Proxy};

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Quick retries, so fault tests take milliseconds.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

fn client(host: &str) -> RegistryClient {
    RegistryClient::builder()
        .insecure_hosts([host])
        .retry(fast_retries())
        .build()
        .unwrap()
}

fn image(host: &str, name: &str) -> ImageRef {
    format!("{host}/{name}").parse().unwrap()
}

fn amd64() -> Platform {
    Platform::default()
}

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("cache")).unwrap();
    (dir, store)
}

/// Records download events.
#[derive(Default)]
struct RecordingReporter {
    started: Mutex<Vec<(String, Option<u64>)>>,
    bytes: AtomicU64,
    completed: AtomicU64,
}

impl Reporter for RecordingReporter {
    fn on_download_start(&self, label: &str, size: Option<u64>) -> DownloadId {
        let mut started = self.started.lock().unwrap();
        started.push((label.to_owned(), size));
        DownloadId(started.len())
    }

    fn on_download_progress(&self, _id: DownloadId, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    fn on_download_complete(&self, _id: DownloadId) {
        self.completed.fetch_add(1, Ordering::SeqCst);
    }
}

/// Resolve `image` and fetch all its blobs; returns the resolution and the bytes downloaded.
async fn pull(
    client: &RegistryClient,
    image: &ImageRef,
    platform: &Platform,
    store: &Store,
    reporter: &dyn Reporter,
) -> Result<(ResolvedImage, u64), SourceError> {
    let resolved = client.resolve(image, platform, store).await?;
    let mut downloaded = 0;
    for blob in resolved.blobs() {
        downloaded += client.fetch_blob(image, blob, store, reporter).await?;
    }
    Ok((resolved, downloaded))
}

/// `skopeo inspect --raw`: the registry's own bytes for a manifest or index.
fn skopeo_raw(reference: &str, credentials: Option<(&str, &str)>) -> Vec<u8> {
    let mut command = std::process::Command::new("skopeo");
    command.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some((user, password)) = credentials {
        command.arg(format!("--creds={user}:{password}"));
    }
    let output = command
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo is installed (apt-get install skopeo)");
    assert!(
        output.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Every blob file in the store hashes to its name.
fn assert_store_is_sound(store: &Store) {
    for blob in store.ls().unwrap().blobs {
        let bytes = fs_err::read(store.blob_path(&blob.digest)).unwrap();
        assert_eq!(Digest::of(&bytes), blob.digest, "cached blob is corrupt");
    }
}

#[test]
fn fetched_images_match_the_registry_byte_for_byte() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let host = registry.host();
    let client = client(&host);
    let (_dir, store) = new_store();
    let reporter = RecordingReporter::default();

    let alpha = image(&host, "test/alpha:1.0");
    let multi = image(&host, "test/multi:3.0");
    let ((alpha_resolved, alpha_bytes), (multi_resolved, _)) = block_on(async {
        (
            pull(&client, &alpha, &amd64(), &store, &reporter)
                .await
                .unwrap(),
            pull(&client, &multi, &amd64(), &store, &reporter)
                .await
                .unwrap(),
        )
    });

    // A Docker v2s2 manifest stays exactly what the registry serves.
    let raw = skopeo_raw(&format!("{host}/test/alpha:1.0"), None);
    assert_eq!(alpha_resolved.manifest, raw);
    assert_eq!(alpha_resolved.manifest_digest, Digest::of(&raw));
    assert_eq!(alpha_resolved.manifest_digest, set.alpha.digest);
    assert_eq!(
        alpha_resolved.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(alpha_resolved.index_digest, None);
    assert_eq!(
        store.read_blob(&alpha_resolved.manifest_digest).unwrap(),
        raw
    );
    let blobs: Vec<Digest> = alpha_resolved.blobs().map(|b| b.digest.clone()).collect();
    assert_eq!(blobs, set.alpha.blob_digests());
    for (blob, layer) in alpha_resolved.layers.iter().zip(&set.alpha.layers) {
        assert_eq!(
            fs_err::read(store.blob_path(&blob.digest)).unwrap(),
            layer.bytes()
        );
    }
    let expected_bytes: u64 =
        set.alpha.config.len() as u64 + set.alpha.layers.iter().map(|l| l.size).sum::<u64>();
    assert_eq!(alpha_bytes, expected_bytes);

    // An index: both the index and the chosen manifest are kept, by the registry's digests.
    let raw_index = skopeo_raw(&format!("{host}/test/multi:3.0"), None);
    assert_eq!(multi_resolved.index_digest, Some(Digest::of(&raw_index)));
    assert_eq!(store.read_blob(&set.multi.digest).unwrap(), raw_index);
    let raw_manifest = skopeo_raw(
        &format!("{host}/test/multi@{}", multi_resolved.manifest_digest),
        None,
    );
    assert_eq!(multi_resolved.manifest, raw_manifest);
    assert_eq!(
        multi_resolved.manifest_digest,
        set.multi.image("linux/amd64").digest
    );
    assert_eq!(multi_resolved.digest(), &set.multi.digest);

    // The tag index remembers both, with the platform chosen.
    let record = store.lookup_tag(&multi).unwrap().unwrap();
    assert_eq!(record.digest, set.multi.digest);
    assert_eq!(record.media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        record.platforms.get("linux/amd64"),
        Some(&multi_resolved.manifest_digest)
    );
    assert_eq!(
        store.lookup_tag(&alpha).unwrap().unwrap().digest,
        set.alpha.digest
    );

    // Progress: one start and one completion per blob, every byte reported.
    let started = reporter.started.lock().unwrap().clone();
    assert_eq!(started.len(), 3 + 2);
    assert!(started[0].0.starts_with(&format!("{alpha} sha256:")));
    assert_eq!(reporter.completed.load(Ordering::SeqCst), 5);
    assert_eq!(
        reporter.bytes.load(Ordering::SeqCst),
        started.iter().map(|(_, size)| size.unwrap()).sum::<u64>()
    );
    assert_store_is_sound(&store);
    assert!(store.ls().unwrap().partials.is_empty());
}

#[test]
fn the_platform_is_chosen_from_the_index() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let host = registry.host();
    let client = client(&host);
    let (_dir, store) = new_store();
    let multi = image(&host, "test/multi:3.0");

    let arm64: Platform = "linux/arm64".parse().unwrap();
    let (resolved, _) = block_on(pull(
        &client,
        &multi,
        &arm64,
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();
    let expected = set.multi.image("linux/arm64");
    assert_eq!(resolved.manifest_digest, expected.digest);
    assert_eq!(resolved.config.digest, expected.config_digest);
    assert!(store.has_blob(&expected.layers[0].digest));
    assert!(!store.has_blob(&set.multi.image("linux/amd64").layers[0].digest));

    let s390x: Platform = "linux/s390x".parse().unwrap();
    let error = block_on(client.resolve(&multi, &s390x, &store)).unwrap_err();
    assert!(
        matches!(&error, SourceError::PlatformNotFound { available, .. } if available == &["linux/amd64", "linux/arm64"]),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("linux/s390x"), "{message}");
    assert!(message.contains("linux/amd64, linux/arm64"), "{message}");
    assert!(message.contains(&host), "{message}");
}

#[test]
fn a_shared_layer_is_fetched_once_and_a_second_fetch_requests_no_blob() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();
    let client = client(&host);
    let (_dir, store) = new_store();
    let images = [
        image(&host, "test/alpha:1.0"),
        image(&host, "test/beta:2.0"),
        image(&host, "test/multi:3.0"),
    ];
    let platform = amd64();
    let pull_all = || async {
        let reporter = RecordingReporter::default();
        let pulls = images
            .iter()
            .map(|image| pull(&client, image, &platform, &store, &reporter));
        let downloaded: u64 = futures_util::future::join_all(pulls)
            .await
            .into_iter()
            .map(|result| result.unwrap().1)
            .sum();
        (downloaded, reporter.started.lock().unwrap().len())
    };

    let cold = Instant::now();
    let (downloaded, _) = block_on(pull_all());
    let cold = cold.elapsed();
    let base = set.base.digest.to_string();
    assert_eq!(proxy.count("GET", &format!("/blobs/{base}")), 1);
    // alpha and beta: 2 configs + 3 distinct layers; multi for amd64: 1 config + 1 layer.
    assert_eq!(proxy.count("GET", "/blobs/sha256:"), 7);
    let amd64_image = set.multi.image("linux/amd64");
    let distinct: u64 = set.alpha.config.len() as u64
        + set.beta.config.len() as u64
        + set.base.size
        + set.alpha.layers[1].size
        + set.beta.layers[1].size
        + amd64_image.config.len() as u64
        + amd64_image.layers[0].size;
    assert_eq!(downloaded, distinct);
    let blob_requests = proxy.count("GET", "/blobs/");
    let all_requests = proxy.seen().len();

    proxy.clear();
    let warm = Instant::now();
    let again = block_on(pull_all());
    let warm = warm.elapsed();
    assert_eq!(again, (0, 0), "nothing downloaded, no download started");
    assert_eq!(proxy.count("GET", "/blobs/"), 0);
    // Tags are asked again (they move); the platform manifest, by digest, is not.
    assert_eq!(proxy.count("GET", "/manifests/"), 3);
    report_timing(
        &format!(
            "test set (alpha, beta, multi; cold: {all_requests} requests, {blob_requests} blob GETs; \
             warm: {} requests)",
            proxy.seen().len()
        ),
        downloaded,
        cold,
        warm,
    );
}

#[test]
fn two_runs_sharing_a_cache_both_succeed() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    // Two stores on one folder behave like two processes: separate locks and writer tables.
    let stores = [Store::open(&root).unwrap(), Store::open(&root).unwrap()];
    let results = block_on(async {
        let runs = stores.iter().map(|store| {
            let client = client(&host);
            let store = store.clone();
            let host = host.clone();
            async move {
                let reporter = RecordingReporter::default();
                for name in ["test/alpha:1.0", "test/beta:2.0", "test/multi:3.0"] {
                    pull(&client, &image(&host, name), &amd64(), &store, &reporter).await?;
                }
                Ok::<_, SourceError>(())
            }
        });
        futures_util::future::join_all(runs).await
    });
    for result in results {
        result.unwrap();
    }
    for digest in set
        .alpha
        .blob_digests()
        .iter()
        .chain(&set.beta.blob_digests())
    {
        assert!(stores[0].has_blob(digest));
    }
    assert_store_is_sound(&stores[0]);
    assert!(stores[0].ls().unwrap().partials.is_empty());
}

#[test]
fn a_corrupted_blob_never_enters_the_store() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();
    let client = client(&host);
    let (_dir, store) = new_store();
    let alpha = image(&host, "test/alpha:1.0");
    let layer = set.alpha.layers[1].digest.clone();

    // Always corrupt: bounded tries, then an error naming image, blob and registry.
    proxy.fault(&format!("/blobs/{layer}"), Fault::Corrupt, usize::MAX);
    let error = block_on(pull(
        &client,
        &alpha,
        &amd64(),
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap_err();
    assert!(
        matches!(&error, SourceError::BlobMismatch { blob, source: StoreError::DigestMismatch { .. }, .. } if *blob == layer),
        "{error}"
    );
    let message = error.to_string();
    for needle in [alpha.to_string(), layer.to_string(), host.clone()] {
        assert!(message.contains(&needle), "`{message}` lacks {needle}");
    }
    assert!(!store.has_blob(&layer));
    assert!(store.ls().unwrap().partials.is_empty(), "no partial left");
    // Wrong bytes are retried once, not `attempts` times.
    assert_eq!(proxy.count("GET", &format!("/blobs/{layer}")), 2);
    assert_store_is_sound(&store);

    // Corrupt once: the retry gets the right bytes.
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();
    let client = self::client(&host);
    let alpha = image(&host, "test/alpha:1.0");
    proxy.fault(&format!("/blobs/{layer}"), Fault::Corrupt, 1);
    block_on(pull(
        &client,
        &alpha,
        &amd64(),
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();
    assert!(store.has_blob(&layer));
    assert_store_is_sound(&store);
}

#[test]
fn a_cut_download_resumes_with_a_range_request() {
    let registry = Registry::start();
    let layer = Layer::generate(42, 4, 256 * 1024);
    let image_data = Image::new(Format::Oci, "amd64", vec![layer.clone()]);
    Pusher::new(&registry).push_image("test/resume", Some("1"), &image_data);
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();
    let client = client(&host);
    let (_dir, store) = new_store();
    let reference = image(&host, "test/resume:1");

    let cut = 300_000;
    proxy.fault(&format!("/blobs/{}", layer.digest), Fault::Truncate(cut), 1);
    let reporter = RecordingReporter::default();
    let (_, downloaded) = block_on(pull(&client, &reference, &amd64(), &store, &reporter)).unwrap();
    assert!(store.has_blob(&layer.digest));
    assert_eq!(
        fs_err::read(store.blob_path(&layer.digest)).unwrap(),
        layer.bytes()
    );

    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|seen| seen.method == "GET" && seen.path.contains(&layer.digest.to_string()))
        .collect();
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[0].header("Range"), None);
    assert_eq!(
        gets[1].header("Range"),
        Some(format!("bytes={cut}-").as_str())
    );
    // Only the rest was downloaded again.
    assert_eq!(
        downloaded,
        image_data.config.len() as u64 + layer.size,
        "every byte counted once"
    );

    // A partial left by an interrupted run (another process, a crash) is resumed too.
    let (_dir, store) = new_store();
    let bytes = layer.bytes();
    let left = 123_456;
    fs_err::write(
        store
            .root()
            .join(format!("tmp/{}.partial", layer.digest.hex())),
        &bytes[..left],
    )
    .unwrap();
    proxy.clear();
    let reporter = RecordingReporter::default();
    let (_, downloaded) = block_on(pull(&client, &reference, &amd64(), &store, &reporter)).unwrap();
    assert_eq!(fs_err::read(store.blob_path(&layer.digest)).unwrap(), bytes);
    assert_eq!(
        downloaded,
        image_data.config.len() as u64 + layer.size - left as u64
    );
    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|seen| seen.method == "GET" && seen.path.contains(&layer.digest.to_string()))
        .collect();
    assert_eq!(gets.len(), 1);
    assert_eq!(
        gets[0].header("Range"),
        Some(format!("bytes={left}-").as_str())
    );
    // The progress bar starts where the partial ended.
    assert_eq!(
        reporter.bytes.load(Ordering::SeqCst),
        image_data.config.len() as u64 + layer.size
    );
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();
    let client = client(&host);
    let (_dir, store) = new_store();
    let alpha = image(&host, "test/alpha:1.0");
    let resolved = block_on(client.resolve(&alpha, &amd64(), &store)).unwrap();

    proxy.fault(
        "/blobs/",
        Fault::Status {
            status: 429,
            headers: vec![("Retry-After".into(), "1".into())],
            body: b"slow down".to_vec(),
        },
        1,
    );
    let start = Instant::now();
    block_on(client.fetch_blob(
        &alpha,
        &resolved.config,
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(1), "waited only {waited:?}");
    assert!(store.has_blob(&resolved.config.digest));
}

#[test]
fn server_errors_give_up_after_bounded_tries() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();
    let client = client(&host);
    let (_dir, store) = new_store();
    let alpha = image(&host, "test/alpha:1.0");
    let resolved = block_on(client.resolve(&alpha, &amd64(), &store)).unwrap();
    let layer = resolved.layers[0].clone();

    proxy.fault(
        "/blobs/",
        Fault::Status {
            status: 503,
            headers: vec![],
            body: b"maintenance".to_vec(),
        },
        usize::MAX,
    );
    let error = block_on(client.fetch_blob(&alpha, &layer, &store, &RecordingReporter::default()))
        .unwrap_err();
    assert!(
        matches!(&error, SourceError::Status { status: 503, attempts: 3, blob: Some(blob), .. } if *blob == layer.digest),
        "{error}"
    );
    assert_eq!(proxy.count("GET", "/blobs/"), 3);
    let message = error.to_string();
    assert!(
        message.contains("maintenance") && message.contains(&host),
        "{message}"
    );

    // A manifest the registry does not have is not retried.
    proxy.clear();
    let missing = image(&host, "test/alpha:nope");
    let error = block_on(client.resolve(&missing, &amd64(), &store)).unwrap_err();
    assert!(
        matches!(error, SourceError::NotFound { blob: None, .. }),
        "{error}"
    );
    assert_eq!(proxy.count("GET", "/manifests/"), 1);
}

#[test]
fn basic_auth_works_with_a_docker_config_and_fails_clearly_without() {
    let registry = Registry::start_with_auth("builder", "s3cret-pass");
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let host = registry.host();
    let alpha = image(&host, "test/alpha:1.0");
    let config_dir = tempfile::tempdir().unwrap();
    let with_docker_config = |json: &str| {
        fs_err::write(config_dir.path().join("config.json"), json).unwrap();
        let dir = config_dir.path().as_os_str().to_owned();
        // As the settings layer will call it: DOCKER_CONFIG set, nothing else.
        AuthFiles::from_env(move |name| (name == "DOCKER_CONFIG").then(|| dir.clone()))
    };
    let client_with = |auth: AuthFiles| {
        RegistryClient::builder()
            .insecure_hosts([host.as_str()])
            .retry(fast_retries())
            .auth(auth)
            .build()
            .unwrap()
    };

    // No credentials: a clear error, with a hint.
    let (_dir, store) = new_store();
    let error =
        block_on(client_with(AuthFiles::none()).resolve(&alpha, &amd64(), &store)).unwrap_err();
    assert!(
        matches!(
            error,
            SourceError::Unauthorized {
                credentials: None,
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("no credentials are configured") && message.contains(&host),
        "{message}"
    );

    // Wrong password: rejected, and the password is nowhere in the error.
    let auth = with_docker_config(&format!(
        r#"{{"auths": {{"{host}": {{"username": "builder", "password": "wrong-pass"}}}}}}"#
    ));
    let error = block_on(client_with(auth).resolve(&alpha, &amd64(), &store)).unwrap_err();
    assert!(
        matches!(
            error,
            SourceError::Unauthorized {
                credentials: Some(_),
                ..
            }
        ),
        "{error}"
    );
    let debug = format!("{error} {error:?}");
    assert!(!debug.contains("wrong-pass"), "{debug}");

    // Right credentials (base64 `auth` form, as `docker login` writes it).
    let auth = with_docker_config(&format!(
        r#"{{"auths": {{"{host}": {{"auth": "YnVpbGRlcjpzM2NyZXQtcGFzcw=="}}}}}}"#
    ));
    let client = client_with(auth);
    assert!(!format!("{client:?}").contains("s3cret-pass"));
    let (resolved, _) = block_on(pull(
        &client,
        &alpha,
        &amd64(),
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();
    let raw = skopeo_raw(
        &format!("{host}/test/alpha:1.0"),
        Some(("builder", "s3cret-pass")),
    );
    assert_eq!(resolved.manifest, raw);
    for digest in set.alpha.blob_digests() {
        assert!(store.has_blob(&digest));
    }
}

#[test]
fn bearer_tokens_from_the_challenge_are_used_for_manifests_and_blobs() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    proxy.require_bearer("opaque-token-42");
    let host = proxy.host();
    let client = client(&host);
    let (_dir, store) = new_store();
    let alpha = image(&host, "test/alpha:1.0");
    block_on(pull(
        &client,
        &alpha,
        &amd64(),
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();
    for digest in set.alpha.blob_digests() {
        assert!(store.has_blob(&digest));
    }
    let seen = proxy.seen();
    let token_requests = seen.iter().filter(|s| s.path.starts_with("/token")).count();
    assert!(token_requests >= 1);
    assert!(
        seen.iter()
            .find(|s| s.path.starts_with("/token"))
            .unwrap()
            .path
            .contains("scope=repository%3Atest%2Falpha%3Apull"),
        "{seen:?}"
    );
    for request in seen
        .iter()
        .filter(|s| s.path.contains("/blobs/") || s.path.contains("/manifests/"))
    {
        assert_eq!(
            request.header("Authorization"),
            Some("Bearer opaque-token-42"),
            "{request:?}"
        );
    }
}

#[test]
fn blob_redirects_do_not_carry_registry_credentials() {
    let registry = Registry::start_with_auth("builder", "s3cret-pass");
    let layer = Layer::generate(7, 1, 10_000);
    let image_data = Image::new(Format::Docker, "amd64", vec![layer.clone()]);
    Pusher::new(&registry).push_image("test/redirect", Some("1"), &image_data);

    // "Object storage" on another port, serving the layer to whoever asks.
    let storage = Proxy::start(registry.addr());
    storage.fault(
        "/storage/",
        Fault::Status {
            status: 200,
            headers: vec![],
            body: layer.bytes(),
        },
        usize::MAX,
    );
    let front = Proxy::start(registry.addr());
    front.fault(
        &format!("/blobs/{}", layer.digest),
        Fault::Redirect(format!(
            "http://{}/storage/{}",
            storage.host(),
            layer.digest.hex()
        )),
        usize::MAX,
    );
    let host = front.host();
    let config_dir = tempfile::tempdir().unwrap();
    fs_err::write(
        config_dir.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{host}": {{"username": "builder", "password": "s3cret-pass"}}}}}}"#
        ),
    )
    .unwrap();
    let client = RegistryClient::builder()
        .insecure_hosts(["127.0.0.1"])
        .retry(fast_retries())
        .auth(AuthFiles {
            docker_config: Some(config_dir.path().join("config.json")),
            ..AuthFiles::default()
        })
        .build()
        .unwrap();
    let (_dir, store) = new_store();
    let reference = image(&host, "test/redirect:1");
    block_on(pull(
        &client,
        &reference,
        &amd64(),
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();
    assert!(store.has_blob(&layer.digest));

    let to_registry = front
        .seen()
        .into_iter()
        .find(|seen| seen.path.contains(&format!("/blobs/{}", layer.digest)))
        .unwrap();
    assert!(
        to_registry
            .header("Authorization")
            .is_some_and(|value| value.starts_with("Basic ")),
        "the registry gets the credentials"
    );
    let to_storage = storage.seen();
    assert_eq!(to_storage.len(), 1);
    assert_eq!(
        to_storage[0].header("Authorization"),
        None,
        "{to_storage:?}"
    );
}

#[test]
fn offline_uses_only_the_cache() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();
    let (_dir, store) = new_store();
    let multi = image(&host, "test/multi:3.0");
    let (online, _) = block_on(pull(
        &client(&host),
        &multi,
        &amd64(),
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();

    proxy.clear();
    let offline = RegistryClient::builder()
        .insecure_hosts([host.as_str()])
        .offline(true)
        .build()
        .unwrap();
    let (cached, downloaded) = block_on(pull(
        &offline,
        &multi,
        &amd64(),
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();
    assert_eq!(cached, online);
    assert_eq!(downloaded, 0);

    // What was never fetched is named, not guessed.
    let error =
        block_on(offline.resolve(&multi, &"linux/arm64".parse().unwrap(), &store)).unwrap_err();
    assert!(matches!(error, SourceError::NotCached { .. }), "{error}");
    let error =
        block_on(offline.resolve(&image(&host, "test/alpha:1.0"), &amd64(), &store)).unwrap_err();
    assert!(error.to_string().contains("--offline"), "{error}");
    let beta_layer = set.beta.layers[1].clone();
    let error = block_on(offline.fetch_blob(
        &image(&host, "test/beta:2.0"),
        &isobuild::source::Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest: beta_layer.digest.clone(),
            size: beta_layer.size,
        },
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap_err();
    assert!(
        matches!(&error, SourceError::NotCached { blob: Some(blob), .. } if *blob == beta_layer.digest),
        "{error}"
    );
    assert!(proxy.seen().is_empty(), "offline opened a connection");
}

#[test]
fn a_pinned_digest_in_the_cache_needs_no_network() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();
    let client = client(&host);
    let (_dir, store) = new_store();
    let pinned = image(&host, &format!("test/multi@{}", set.multi.digest));
    let (first, _) = block_on(pull(
        &client,
        &pinned,
        &amd64(),
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();
    assert_eq!(first.index_digest.as_ref(), Some(&set.multi.digest));
    // Fetched by digest: no tag to record.
    assert!(store.ls().unwrap().tags.is_empty());

    proxy.clear();
    let (second, _) = block_on(pull(
        &client,
        &pinned,
        &amd64(),
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();
    assert_eq!(first, second);
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
}

#[test]
fn a_mirror_serves_another_registry_under_a_prefix() {
    let registry = Registry::start();
    let set = TestSet::new();
    set.push(&Pusher::new(&registry), "docker.io/");
    let host = registry.host();
    let client = RegistryClient::builder()
        .mirrors(BTreeMap::from([(
            "docker.io".to_owned(),
            format!("{host}/docker.io"),
        )]))
        .insecure_hosts([host.as_str()])
        .retry(fast_retries())
        .build()
        .unwrap();
    let (_dir, store) = new_store();
    let reference: ImageRef = "docker.io/test/alpha:1.0".parse().unwrap();
    let (resolved, _) = block_on(pull(
        &client,
        &reference,
        &amd64(),
        &store,
        &RecordingReporter::default(),
    ))
    .unwrap();
    assert_eq!(resolved.manifest_digest, set.alpha.digest);
    // Cached under the original name: the mirror is transport only.
    assert!(store.lookup_tag(&reference).unwrap().is_some());
    assert!(
        store
            .root()
            .join("tags-v1/docker.io/test/alpha/1.0.json")
            .is_file()
    );

    let missing: ImageRef = "docker.io/test/gamma:1".parse().unwrap();
    let error = block_on(client.resolve(&missing, &amd64(), &store))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("`{host}` (mirror of `docker.io`)")),
        "{error}"
    );
}

#[test]
fn a_large_layer_streams_to_disk() {
    const SIZE: u64 = 100 * 1024 * 1024 + 12_345;
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let generated = Instant::now();
    let layer = Layer::generate_file(&dir.path().join("big.tar.gz"), 100, SIZE);
    let generated = generated.elapsed();
    assert!(layer.size > SIZE);
    let image_data = Image::new(Format::Docker, "amd64", vec![layer.clone()]);
    let pushed = Instant::now();
    Pusher::new(&registry).push_image("test/big", Some("1"), &image_data);
    let pushed = pushed.elapsed();

    let host = registry.host();
    let client = client(&host);
    let (_cache, store) = new_store();
    let reference = image(&host, "test/big:1");
    let reporter = RecordingReporter::default();
    let cold = Instant::now();
    let (_, downloaded) = block_on(pull(&client, &reference, &amd64(), &store, &reporter)).unwrap();
    let cold = cold.elapsed();
    assert_eq!(downloaded, layer.size + image_data.config.len() as u64);
    let stored = fs_err::metadata(store.blob_path(&layer.digest))
        .unwrap()
        .len();
    assert_eq!(stored, layer.size);
    assert_eq!(
        isobuild::fs::sha256_file(&store.blob_path(&layer.digest)).unwrap(),
        layer.digest.hex()
    );
    let warm = Instant::now();
    let (_, again) = block_on(pull(&client, &reference, &amd64(), &store, &reporter)).unwrap();
    let warm = warm.elapsed();
    assert_eq!(again, 0);
    #[allow(clippy::print_stderr)]
    {
        eprintln!("large layer: generated in {generated:?}, pushed in {pushed:?}");
    }
    report_timing("one 100 MiB layer", downloaded, cold, warm);
}

#[allow(clippy::print_stderr, clippy::cast_precision_loss)]
fn report_timing(what: &str, bytes: u64, cold: Duration, warm: Duration) {
    eprintln!(
        "{what}: {bytes} bytes, cold {cold:?} ({:.1} MiB/s), warm {warm:?}",
        bytes as f64 / 1_048_576.0 / cold.as_secs_f64()
    );
}
