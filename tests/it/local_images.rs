//! Local image sources through the library API (the CLI wiring comes later): daemon exports
//! from a private Podman service through every `DOCKER_HOST` / `CONTAINER_HOST` form, the
//! archives `podman save` writes, and crafted archives that must be refused.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use isobuild::recipe::{ImageFormat, Platform};
use isobuild::reference::{Digest, ImageSource};
use isobuild::source::local::{
    BlobSink, LocalImage, LocalSourceError, ResolvedEndpoint, export_from_daemon, read_archive,
    resolve_endpoint,
};

use crate::harness::podman::Podman;
use crate::harness::{tar_file, tar_raw_member};

/// The tag the synthetic image is loaded under.
const IMAGE: &str = "localhost/isobuild-test:1.0";

/// A folder sink: blobs land in `dir/<hex>`, temporary files in `dir/scratch`.
struct DirSink {
    dir: tempfile::TempDir,
    scratch: PathBuf,
}

impl DirSink {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        fs_err::create_dir(&scratch).unwrap();
        Self { dir, scratch }
    }

    fn blob(&self, digest: &Digest) -> Vec<u8> {
        fs_err::read(self.dir.path().join(digest.hex())).unwrap()
    }

    fn scratch_is_empty(&self) -> bool {
        fs_err::read_dir(&self.scratch).unwrap().next().is_none()
    }
}

impl BlobSink for DirSink {
    fn put_file(&self, digest: &Digest, file: tempfile::NamedTempFile) -> std::io::Result<()> {
        assert_eq!(
            &Digest::of_file(file.path())?,
            digest,
            "the sink got a wrong digest"
        );
        file.persist(self.dir.path().join(digest.hex()))?;
        Ok(())
    }

    fn scratch_dir(&self) -> &Path {
        &self.scratch
    }
}

/// Deterministic pseudo-random bytes (xorshift), so every run builds the same image.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A synthetic image: its uncompressed layers and its config.
struct Synthetic {
    layers: Vec<Vec<u8>>,
    config: Vec<u8>,
}

impl Synthetic {
    fn new() -> Self {
        let layers: Vec<Vec<u8>> = [(1, 300_000), (2, 2_000), (3, 1_500_000)]
            .into_iter()
            .map(|(seed, len)| {
                let mut builder = tar::Builder::new(Vec::new());
                tar_file(
                    &mut builder,
                    &format!("data/file-{seed}"),
                    &noise(seed, len),
                );
                builder.into_inner().unwrap()
            })
            .collect();
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| format!("\"{}\"", Digest::of(l)))
            .collect();
        // Fields in the order Go's OCI `Image` struct marshals them: `podman save --format
        // oci-archive` re-marshals the config through that struct, and keeps its digest only
        // when the config already is in that form (as buildah's are; docker's often are not).
        let created = r#""created":"2024-01-01T00:00:00Z""#;
        let config = format!(
            r#"{{{created},"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/usr/bin"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}},"history":[{{{created},"created_by":"one"}},{{{created},"created_by":"two"}},{{{created},"created_by":"three"}}]}}"#,
            diff_ids.join(",")
        )
        .into_bytes();
        Self { layers, config }
    }

    fn config_digest(&self) -> Digest {
        Digest::of(&self.config)
    }

    /// The image as a classic docker-archive, for `podman load`.
    fn docker_archive(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut names = Vec::new();
        for layer in &self.layers {
            let name = format!("{}/layer.tar", Digest::of(layer).hex());
            tar_file(&mut builder, &name, layer);
            names.push(name);
        }
        let config_name = format!("{}.json", self.config_digest().hex());
        tar_file(&mut builder, &config_name, &self.config);
        let manifest = serde_json::json!([{
            "Config": config_name, "RepoTags": [IMAGE], "Layers": names,
        }]);
        tar_file(
            &mut builder,
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        builder.into_inner().unwrap()
    }

    /// Check `image` describes this image: config kept, layers that uncompress to ours.
    #[track_caller]
    fn check(&self, image: &LocalImage, sink: &DirSink) {
        assert_eq!(image.config.digest, self.config_digest());
        assert_eq!(sink.blob(&image.config.digest), self.config);
        assert_eq!(image.layers.len(), self.layers.len());
        for (described, layer) in image.layers.iter().zip(&self.layers) {
            assert_eq!(described.diff_id, Some(Digest::of(layer)));
            let stored = sink.blob(&described.blob.digest);
            assert_eq!(stored.len() as u64, described.blob.size);
            let mut unpacked = Vec::new();
            flate2::read::GzDecoder::new(stored.as_slice())
                .read_to_end(&mut unpacked)
                .unwrap();
            assert!(
                unpacked == *layer,
                "a stored layer does not uncompress to ours"
            );
        }
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(Digest::of(&image.manifest), image.manifest_digest);
        assert_eq!(
            manifest["config"]["digest"],
            self.config_digest().to_string()
        );
        assert!(sink.scratch_is_empty(), "temporary files were left behind");
    }
}

/// A Podman service holding the synthetic image, loaded from a docker-archive.
fn podman_with_image() -> (Podman, Synthetic) {
    load_image(Podman::start())
}

fn load_image(podman: Podman) -> (Podman, Synthetic) {
    let image = Synthetic::new();
    let archive = tempfile::NamedTempFile::new().unwrap();
    fs_err::write(archive.path(), image.docker_archive()).unwrap();
    podman.run(&["load", "-i", &archive.path().to_string_lossy()]);
    (podman, image)
}

fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect();
    move |name| map.get(name).cloned()
}

/// Resolve the endpoint from `env` as settings will, with no default socket to fall back on.
fn endpoint(env: &[(&str, String)]) -> ResolvedEndpoint {
    resolve_endpoint(&env_of(env), &|_| false).unwrap()
}

async fn export(
    name: &str,
    endpoint: &ResolvedEndpoint,
) -> (Result<LocalImage, LocalSourceError>, Arc<DirSink>) {
    let sink = Arc::new(DirSink::new());
    let result = export_from_daemon(
        name,
        endpoint,
        &Platform::default(),
        ImageFormat::V2s2,
        sink.clone(),
    )
    .await;
    (result, sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_exports_are_identical_through_every_host_form() {
    let (podman, synthetic) = podman_with_image();
    let socket = podman.socket().display().to_string();
    let encoded = socket.replace('/', "%2F");
    let forms: Vec<Vec<(&str, String)>> = vec![
        vec![("DOCKER_HOST", format!("unix://{socket}"))],
        vec![("DOCKER_HOST", format!("http+unix://{socket}"))],
        vec![("DOCKER_HOST", format!("http+unix://{encoded}"))],
        // CONTAINER_HOST wins over a DOCKER_HOST that leads nowhere.
        vec![
            ("CONTAINER_HOST", format!("unix://{socket}")),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock".to_owned()),
        ],
    ];
    let mut images = Vec::new();
    for env in &forms {
        let endpoint = endpoint(env);
        let (image, sink) = export(IMAGE, &endpoint).await;
        let image = image.unwrap_or_else(|error| panic!("{env:?}: {error:?}"));
        synthetic.check(&image, &sink);
        images.push(image);
    }
    // The same image whatever the form, and every export gives the same digests.
    for image in &images[1..] {
        assert_eq!(image, &images[0]);
    }
    assert_eq!(images[0].source_id, synthetic.config_digest().to_string());
    assert_eq!(
        images[0].manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert!(
        images[0]
            .layers
            .iter()
            .all(|layer| layer.blob.media_type
                == "application/vnd.docker.image.rootfs.diff.tar.gzip")
    );
    let id = isobuild::source::local::daemon_image_id(IMAGE, &endpoint(&forms[0]))
        .await
        .unwrap();
    assert_eq!(id, images[0].source_id);
}

/// Plain HTTP over TCP, in the forms MetalK8s' CI used (`DOCKER_HOST=localhost:2375`, which
/// its `http://` prefix was written for) and the usual ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_exports_over_tcp() {
    let (podman, synthetic) = load_image(Podman::start_tcp());
    let port = podman.port().unwrap();
    let mut images = Vec::new();
    for value in [
        format!("127.0.0.1:{port}"),
        format!("tcp://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
    ] {
        let (image, sink) = export(IMAGE, &endpoint(&[("DOCKER_HOST", value.clone())])).await;
        let image = image.unwrap_or_else(|error| panic!("{value}: {error:?}"));
        synthetic.check(&image, &sink);
        images.push(image);
    }
    assert_eq!(images[0], images[1]);
    assert_eq!(images[0], images[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_archives_give_the_daemons_image() {
    let (podman, synthetic) = podman_with_image();
    let work = tempfile::tempdir().unwrap();
    let docker = work.path().join("docker.tar");
    let oci = work.path().join("oci.tar");
    podman.run(&["save", "-o", &docker.to_string_lossy(), IMAGE]);
    podman.run(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        &oci.to_string_lossy(),
        IMAGE,
    ]);
    let read = |source: ImageSource| {
        let sink = DirSink::new();
        let image = read_archive(
            &source,
            work.path(),
            &Platform::default(),
            ImageFormat::V2s2,
            &sink,
        )
        .unwrap_or_else(|error| panic!("{source}: {error:?}"));
        synthetic.check(&image, &sink);
        image
    };
    let from_docker = read(ImageSource::DockerArchive("docker.tar".into()));
    let from_oci = read(ImageSource::OciArchive("oci.tar".into()));
    let socket = podman.socket().display().to_string();
    let (from_daemon, _) = export(
        IMAGE,
        &endpoint(&[("DOCKER_HOST", format!("unix://{socket}"))]),
    )
    .await;
    let from_daemon = from_daemon.unwrap();
    assert_eq!(from_docker.config, from_oci.config);
    let diff_ids = |image: &LocalImage| -> Vec<_> {
        image
            .layers
            .iter()
            .map(|layer| layer.diff_id.clone())
            .collect()
    };
    assert_eq!(diff_ids(&from_docker), diff_ids(&from_oci));
    // The docker-archive and the export hold the same uncompressed layers, so they give the
    // same repacked blobs and manifest. The OCI archive's layers were gzipped by podman and
    // keep their bytes, so only its config and diff_ids are the same.
    assert_eq!(from_docker.manifest, from_daemon.manifest);
    assert!(
        from_oci
            .layers
            .iter()
            .all(|layer| !from_docker.layers.contains(layer))
    );
    assert_ne!(from_docker.source_id, from_oci.source_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_names_the_image_and_the_endpoint() {
    let (podman, _) = podman_with_image();
    let socket = podman.socket().display().to_string();
    let endpoint = endpoint(&[("DOCKER_HOST", format!("unix://{socket}"))]);
    let (result, sink) = export("localhost/not-there:9", &endpoint).await;
    let error = result.unwrap_err();
    assert!(
        matches!(error, LocalSourceError::DaemonImageNotFound { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("localhost/not-there:9"), "{text}");
    assert!(text.contains(&socket), "{text}");
    assert!(text.contains("DOCKER_HOST"), "{text}");
    assert!(sink.scratch_is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_socket_names_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    // A socket path with nothing behind it, and a stale socket file nobody listens on.
    let missing = dir.path().join("missing.sock");
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    for (variable, socket) in [("DOCKER_HOST", &missing), ("CONTAINER_HOST", &stale)] {
        let endpoint = endpoint(&[(variable, format!("unix://{}", socket.display()))]);
        let (result, _) = export(IMAGE, &endpoint).await;
        let error = result.unwrap_err();
        assert!(
            matches!(error, LocalSourceError::DaemonUnreachable { .. }),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(text.contains(variable), "{text}");
        assert!(text.contains(IMAGE), "{text}");
    }
}

/// An OCI layout written by skopeo, chosen by its tag among two.
#[test]
fn skopeo_oci_layouts_are_read_by_tag() {
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("skopeo is not installed; install it with `apt-get install skopeo`");
    }
    let synthetic = Synthetic::new();
    let work = tempfile::tempdir().unwrap();
    fs_err::write(work.path().join("image.tar"), synthetic.docker_archive()).unwrap();
    for tag in ["one", "two"] {
        let status = std::process::Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet"])
            .arg(format!(
                "docker-archive:{}",
                work.path().join("image.tar").display()
            ))
            .arg(format!(
                "oci:{}:{tag}",
                work.path().join("layout").display()
            ))
            .status()
            .unwrap();
        assert!(status.success(), "skopeo copy to oci:layout:{tag} failed");
    }
    let sink = DirSink::new();
    let source = ImageSource::parse("oci:layout:two").unwrap();
    let image = read_archive(
        &source,
        work.path(),
        &Platform::default(),
        ImageFormat::Oci,
        &sink,
    )
    .unwrap();
    synthetic.check(&image, &sink);
    assert_eq!(
        image.manifest_media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    // Without a tag, two images are ambiguous, and the error says which tags there are.
    let error = read_archive(
        &ImageSource::parse("oci:layout").unwrap(),
        work.path(),
        &Platform::default(),
        ImageFormat::Oci,
        &sink,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("tags: one, two"), "{error}");
}

/// One crafted archive: a valid image plus one member that must make the whole archive fail.
fn crafted(bad_name: &str, kind: tar::EntryType, link: &str) -> Vec<u8> {
    let synthetic = Synthetic::new();
    let mut builder = tar::Builder::new(Vec::new());
    let data: &[u8] = if kind == tar::EntryType::Regular {
        b"evil"
    } else {
        b""
    };
    tar_raw_member(&mut builder, bad_name, kind, link, data);
    let valid = synthetic.docker_archive();
    let mut archive = tar::Archive::new(valid.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let header = entry.header().clone();
        builder.append(&header, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Every file under `dir`, relative.
fn tree(dir: &Path) -> Vec<String> {
    crate::harness::relative_paths(dir)
}

#[test]
fn crafted_archives_are_refused_and_write_nothing() {
    let cases = [
        ("../evil", tar::EntryType::Regular, "", "contains `..`"),
        (
            "/tmp/isobuild-evil",
            tar::EntryType::Regular,
            "",
            "absolute",
        ),
        (
            "x/layer.tar",
            tar::EntryType::Symlink,
            "../../../etc/passwd",
            "outside the archive",
        ),
    ];
    for (name, kind, link, reason) in cases {
        // The archive sits two folders deep, so `..` from a would-be extraction stays in
        // `outer`, where anything written would show.
        let outer = tempfile::tempdir().unwrap();
        let work = outer.path().join("work");
        fs_err::create_dir(&work).unwrap();
        fs_err::write(work.join("bad.tar"), crafted(name, kind, link)).unwrap();
        let sink = DirSink::new();
        let before = tree(outer.path());
        let error = read_archive(
            &ImageSource::DockerArchive("bad.tar".into()),
            &work,
            &Platform::default(),
            ImageFormat::V2s2,
            &sink,
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, LocalSourceError::UnsafeMember { .. }),
            "{name}: {text}"
        );
        assert!(
            text.contains(name) && text.contains(reason),
            "{name}: {text}"
        );
        assert!(text.contains("bad.tar"), "{text}");
        assert_eq!(tree(outer.path()), before, "{name}: files appeared");
        assert!(sink.scratch_is_empty(), "{name}: scratch not empty");
        assert_eq!(
            tree(sink.dir.path()),
            ["", "scratch"],
            "{name}: blobs stored"
        );
        assert!(!Path::new("/tmp/isobuild-evil").exists());
    }
}

/// A recipe laying out the synthetic image from `reference`, with registry rules.
fn local_recipe(reference: &str) -> String {
    format!(
        r#"isobuild: 1
name: Local
version: 1.0.0
epoch: 1700000000
images:
  registry_config:
    path: salt/registry.inc
    common_path: salt/registry-common.inc
    name_prefix: "local/"
    server_root: "$local_images"
  list:
    - {{ name: synthetic, tag: "1.0", ref: "{reference}", archive: images/synthetic.tar }}
"#
    )
}

#[test]
fn daemon_images_through_the_cli_are_the_same_from_every_host_form_and_serve() {
    let (podman, image) = podman_with_image();
    let socket = podman.socket().display().to_string();
    let test = crate::harness::Test::new().recipe(&local_recipe(&format!("daemon:{IMAGE}")));
    let forms = [
        ("DOCKER_HOST", format!("unix://{socket}"), "out-unix"),
        (
            "DOCKER_HOST",
            format!("http+unix://{socket}"),
            "out-http-unix",
        ),
        (
            "CONTAINER_HOST",
            format!("unix://{socket}"),
            "out-container-host",
        ),
    ];
    for (variable, value, out) in &forms {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_isobuild"));
        command
            .args(["layout", "recipe.yaml", out, "-q"])
            .current_dir(test.path())
            .env(
                "ISOBUILD_CACHE_DIR",
                test.path().join(format!("cache-{out}")),
            )
            .env_remove("DOCKER_HOST")
            .env_remove("CONTAINER_HOST")
            .env(variable, value);
        if *variable == "CONTAINER_HOST" {
            // CONTAINER_HOST wins over a DOCKER_HOST that points nowhere.
            command.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{variable}={value}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let first = crate::harness::tree_contents(&test.path().join("out-unix"));
    assert!(!first.is_empty());
    for (_, _, out) in &forms[1..] {
        assert!(
            crate::harness::tree_contents(&test.path().join(out)) == first,
            "{out} differs from the unix:// export"
        );
    }

    // Served by nginx, pulled by skopeo: the config's diff_ids are the original layers'.
    let out = test.path().join("out-unix");
    let nginx = crate::harness::peers::Nginx::start(
        &out.join("images"),
        "$local_images",
        &[
            &out.join("salt/registry-common.inc"),
            &out.join("salt/registry.inc"),
        ],
    );
    let config: serde_json::Value = serde_json::from_str(&crate::harness::peers::skopeo(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{}/local/synthetic:1.0", nginx.host()),
    ]))
    .unwrap();
    let expected: Vec<String> = image
        .layers
        .iter()
        .map(|l| Digest::of(l).to_string())
        .collect();
    let served: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(served, expected);
    crate::harness::peers::skopeo(&[
        "inspect",
        &format!(
            "docker-archive:{}",
            out.join("images/synthetic.tar").display()
        ),
    ]);
}

#[test]
fn a_wrong_socket_names_the_image_and_the_endpoint() {
    let test = crate::harness::Test::new()
        .recipe(&local_recipe(&format!("daemon:{IMAGE}")))
        .env("DOCKER_HOST", "unix:///nonexistent/podman.sock");
    let run = test.run(["layout", "recipe.yaml", "out", "-q"]).failure(1);
    assert!(
        run.stderr.contains("unix:///nonexistent/podman.sock") && run.stderr.contains(IMAGE),
        "{}",
        run.stderr
    );
    assert!(!test.path().join("out/images/synthetic").exists());
}

#[test]
fn saved_archives_are_recipe_sources_too() {
    let (podman, image) = podman_with_image();
    let test = crate::harness::Test::new();
    let docker_archive = test.path().join("saved.tar");
    let oci_archive = test.path().join("saved-oci.tar");
    podman.run(&["save", "-o", &docker_archive.to_string_lossy(), IMAGE]);
    podman.run(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        &oci_archive.to_string_lossy(),
        IMAGE,
    ]);
    for (source, out) in [
        ("docker-archive:saved.tar", "out-docker"),
        ("oci-archive:saved-oci.tar", "out-oci"),
    ] {
        test.write("recipe.yaml", &local_recipe(source));
        test.run(["layout", "recipe.yaml", out, "-q"]).success();
        let manifest: serde_json::Value = serde_json::from_slice(
            &fs_err::read(
                test.path()
                    .join(out)
                    .join("images/synthetic/1.0/manifest.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            manifest["config"]["digest"],
            image.config_digest().to_string(),
            "{source}"
        );
        test.run(["verify", out]).success();
    }
}
