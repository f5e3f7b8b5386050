//! Deterministic synthetic images and a small pusher for the registry API.
//!
//! Layers are real `tar.gz` files of seeded pseudo-random content, so the same seed always
//! gives the same digests; configs and manifests are built as Docker v2 schema 2 or OCI.
//! A large layer is generated straight into a file, never held in memory. Pushing uses the
//! distribution API directly (`POST …/blobs/uploads/`, `PUT ?digest=`, `PUT …/manifests/`),
//! so the tests depend on no other tool to fill the registry.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use isobuild::reference::Digest;
use isobuild::source::local::repack::HashWriter;
use isobuild::source::manifest::media_type;
use serde_json::json;

use crate::peers::Registry;

/// A blocking HTTP client that returns error statuses instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
}

/// splitmix64: tiny, seeded, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let value = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&value[..chunk.len()]);
        }
    }
}

/// `len` pseudo-random bytes, produced as they are read.
struct RandomReader {
    rng: Rng,
    remaining: u64,
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        self.rng.fill(&mut buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A layer: a gzipped tar, in memory or in a file.
#[derive(Clone, Debug)]
pub struct Layer {
    pub digest: Digest,
    pub size: u64,
    /// The digest of the uncompressed tar, as the config's `rootfs.diff_ids` lists it.
    pub diff_id: Digest,
    data: LayerData,
}

#[derive(Clone, Debug)]
enum LayerData {
    Memory(Arc<Vec<u8>>),
    File(PathBuf),
}

impl Layer {
    /// A layer of `files` files of `file_size` pseudo-random bytes each.
    pub fn generate(seed: u64, files: usize, file_size: u64) -> Self {
        let (bytes, diff_id, digest, size) = write_layer(
            Vec::new(),
            seed,
            files,
            file_size,
            flate2::Compression::fast(),
        );
        Self {
            digest,
            size,
            diff_id,
            data: LayerData::Memory(Arc::new(bytes)),
        }
    }

    /// One file of `size` bytes, streamed into `path` (gzip without compression: random
    /// bytes don't compress, and this keeps the blob at least `size` bytes).
    pub fn generate_file(path: &Path, seed: u64, size: u64) -> Self {
        let file = io::BufWriter::with_capacity(1 << 20, fs_err::File::create(path).unwrap());
        let (file, diff_id, digest, blob_size) =
            write_layer(file, seed, 1, size, flate2::Compression::none());
        file.into_inner().unwrap().sync_all().unwrap();
        Self {
            digest,
            size: blob_size,
            diff_id,
            data: LayerData::File(path.to_owned()),
        }
    }

    /// A layer of the uncompressed tar `tar` (gzipped here, deterministically).
    pub fn from_tar(tar: &[u8]) -> Self {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(tar).unwrap();
        let bytes = gzip.finish().unwrap();
        Self {
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            diff_id: Digest::of(tar),
            data: LayerData::Memory(Arc::new(bytes)),
        }
    }

    /// The blob's bytes (reads a file layer whole: for small layers only).
    pub fn bytes(&self) -> Vec<u8> {
        match &self.data {
            LayerData::Memory(bytes) => bytes.to_vec(),
            LayerData::File(path) => fs_err::read(path).unwrap(),
        }
    }

    fn reader(&self) -> Box<dyn Read + Send> {
        match &self.data {
            LayerData::Memory(bytes) => Box::new(io::Cursor::new(bytes.clone().to_vec())),
            LayerData::File(path) => Box::new(fs_err::File::open(path).unwrap()),
        }
    }
}

/// tar → hash (diff id) → gzip → hash (digest) → `out`.
fn write_layer<W: Write>(
    out: W,
    seed: u64,
    files: usize,
    file_size: u64,
    level: flate2::Compression,
) -> (W, Digest, Digest, u64) {
    let gzip = flate2::write::GzEncoder::new(HashWriter::new(out), level);
    let mut tar = tar::Builder::new(HashWriter::new(gzip));
    let mut rng = Rng::new(seed);
    for i in 0..files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file_size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        let reader = RandomReader {
            rng: Rng::new(rng.next_u64()),
            remaining: file_size,
        };
        tar.append_data(&mut header, format!("data/{seed}/file-{i}.bin"), reader)
            .unwrap();
    }
    let tar_hashed = tar.into_inner().unwrap();
    let (gzip, diff_id, _) = tar_hashed.finish();
    let (out, digest, size) = gzip.finish().unwrap().finish();
    (out, diff_id, digest, size)
}

/// The two manifest formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Docker,
    Oci,
}

/// A single-platform image: config, layers and manifest, all bytes known.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layers: Vec<Layer>,
    pub manifest: Vec<u8>,
    pub digest: Digest,
    pub media_type: &'static str,
}

impl Image {
    pub fn new(format: Format, architecture: &str, layers: Vec<Layer>) -> Self {
        let config = serde_json::to_vec(&json!({
            "architecture": architecture,
            "os": "linux",
            "config": { "Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"] },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|layer| layer.diff_id.to_string()).collect::<Vec<_>>(),
            },
        }))
        .unwrap();
        let config_digest = Digest::of(&config);
        let (manifest_type, config_type, layer_type) = match format {
            Format::Docker => (
                media_type::DOCKER_MANIFEST,
                media_type::DOCKER_CONFIG,
                media_type::DOCKER_LAYER_GZIP,
            ),
            Format::Oci => (
                media_type::OCI_MANIFEST,
                media_type::OCI_CONFIG,
                media_type::OCI_LAYER_GZIP,
            ),
        };
        let manifest = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {
                "mediaType": config_type,
                "size": config.len(),
                "digest": config_digest.to_string(),
            },
            "layers": layers.iter().map(|layer| json!({
                "mediaType": layer_type,
                "size": layer.size,
                "digest": layer.digest.to_string(),
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        Self {
            config,
            config_digest,
            layers,
            digest: Digest::of(&manifest),
            manifest,
            media_type: manifest_type,
        }
    }

    /// Every blob digest: config first, then layers.
    pub fn blob_digests(&self) -> Vec<Digest> {
        std::iter::once(self.config_digest.clone())
            .chain(self.layers.iter().map(|layer| layer.digest.clone()))
            .collect()
    }
}

/// An OCI image index over several platforms.
#[derive(Clone, Debug)]
pub struct Index {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    /// `os/arch` → image.
    pub images: Vec<(String, Image)>,
}

impl Index {
    pub fn new(images: Vec<(&str, Image)>) -> Self {
        let manifests: Vec<_> = images
            .iter()
            .map(|(platform, image)| {
                let (os, architecture) = platform.split_once('/').unwrap();
                json!({
                    "mediaType": image.media_type,
                    "size": image.manifest.len(),
                    "digest": image.digest.to_string(),
                    "platform": { "os": os, "architecture": architecture },
                })
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap();
        Self {
            digest: Digest::of(&bytes),
            bytes,
            images: images
                .into_iter()
                .map(|(platform, image)| (platform.to_owned(), image))
                .collect(),
        }
    }

    pub fn image(&self, platform: &str) -> &Image {
        &self
            .images
            .iter()
            .find(|(p, _)| p == platform)
            .expect("platform in index")
            .1
    }
}

/// Pushes blobs and manifests to a test registry.
pub struct Pusher {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
    /// With [`Pusher::mounting`]: the repository each blob was first pushed to.
    pushed: Option<Mutex<HashMap<Digest, String>>>,
}

impl Pusher {
    pub fn new(registry: &Registry) -> Self {
        Self::to(&registry.url(), registry.credentials())
    }

    pub fn to(base: &str, credentials: Option<(&str, &str)>) -> Self {
        use base64::Engine as _;
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        Self {
            agent: agent(),
            base: base.to_owned(),
            authorization: credentials
                .map(|(user, password)| format!("Basic {}", encode(&format!("{user}:{password}")))),
            pushed: None,
        }
    }

    /// Upload each blob once: a blob already pushed to another repository is mounted from
    /// there (`POST …/uploads/?mount=&from=`), and one already in the same repository is
    /// skipped. A set whose images share base layers then uploads each layer once, which
    /// matters when the layers weigh a gigabyte (the bench). Off by default, so tests see
    /// exactly one upload per `push_blob`.
    #[must_use]
    pub fn mounting(mut self) -> Self {
        self.pushed = Some(Mutex::new(HashMap::new()));
        self
    }

    fn request(&self, method: &str, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let request = match method {
            "POST" => self.agent.post(url),
            "PUT" => self.agent.put(url),
            other => panic!("unsupported method {other}"),
        };
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    /// Upload one blob (monolithic: `POST` for a session, then one `PUT ?digest=`).
    pub fn push_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        body: impl Read + Send + 'static,
    ) {
        let first_repository = self
            .pushed
            .as_ref()
            .and_then(|pushed| pushed.lock().unwrap().get(digest).cloned());
        let query = match &first_repository {
            Some(first) if first == repository => return,
            Some(first) => format!("?mount={digest}&from={first}"),
            None => String::new(),
        };
        let response = self
            .request(
                "POST",
                &format!("{}/v2/{repository}/blobs/uploads/{query}", self.base),
            )
            .send_empty()
            .unwrap();
        // 201: mounted. Otherwise (202) the registry opened an upload session instead.
        if first_repository.is_some() && response.status().as_u16() == 201 {
            return;
        }
        assert_eq!(
            response.status().as_u16(),
            202,
            "start upload to {repository}"
        );
        let location = response
            .headers()
            .get("Location")
            .expect("upload location")
            .to_str()
            .unwrap()
            .to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let mut response = self
            .request("PUT", &format!("{location}{separator}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size.to_string())
            .send(ureq::SendBody::from_owned_reader(body))
            .unwrap();
        let status = response.status().as_u16();
        assert_eq!(
            status,
            201,
            "upload {digest}: {}",
            response.body_mut().read_to_string().unwrap_or_default()
        );
        if let Some(pushed) = &self.pushed {
            pushed
                .lock()
                .unwrap()
                .insert(digest.clone(), repository.to_owned());
        }
    }

    pub fn push_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let mut response = self
            .request(
                "PUT",
                &format!("{}/v2/{repository}/manifests/{reference}", self.base),
            )
            .header("Content-Type", media_type)
            .send(bytes)
            .unwrap();
        let status = response.status().as_u16();
        assert_eq!(
            status,
            201,
            "push manifest {repository}:{reference}: {}",
            response.body_mut().read_to_string().unwrap_or_default()
        );
    }

    /// Push an image's blobs and its manifest, by `tag` (or by digest when `None`).
    pub fn push_image(&self, repository: &str, tag: Option<&str>, image: &Image) {
        self.push_blob(
            repository,
            &image.config_digest,
            image.config.len() as u64,
            io::Cursor::new(image.config.clone()),
        );
        for layer in &image.layers {
            self.push_blob(repository, &layer.digest, layer.size, layer.reader());
        }
        let reference = tag.map_or_else(|| image.digest.to_string(), str::to_owned);
        self.push_manifest(repository, &reference, image.media_type, &image.manifest);
    }

    /// Push every image of an index by digest, then the index by `tag`.
    pub fn push_index(&self, repository: &str, tag: &str, index: &Index) {
        for (_, image) in &index.images {
            self.push_image(repository, None, image);
        }
        self.push_manifest(repository, tag, media_type::OCI_INDEX, &index.bytes);
    }
}
