//! `daemon:NAME[:TAG]`: an image exported from a Docker or Podman socket with bollard.
//!
//! The export (`GET /images/{id}/get`) is a docker-archive with uncompressed layers. It is
//! not copied to disk: the HTTP body is passed chunk by chunk, through a small bounded
//! channel, to the docker-archive reader running on a blocking thread, which repacks each
//! layer as it passes. Memory stays bounded by the channel (a few chunks) whatever the image
//! size; the only files are the repacked layers in the sink's scratch folder.
//!
//! The image is inspected first and exported by its ID, so a tag moved in between cannot mix
//! two images; the ID is also the cheap freshness key ([`daemon_image_id`]).

use std::io::{self, Read};
use std::sync::Arc;

use bollard::Docker;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::sync::mpsc;

use super::docker_host::{Endpoint, ResolvedEndpoint};
use super::{BlobSink, LocalImage, LocalSourceError, assemble};
use crate::recipe::{ImageFormat, Platform};
use crate::reference::Digest;

/// Seconds to wait for the daemon to start answering a request (not for a whole export,
/// which streams for as long as it needs).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// Chunks in flight between the HTTP body and the tar reader.
const CHANNEL_CHUNKS: usize = 16;

/// Connect to `endpoint` and agree on an API version (which also checks that it answers).
async fn connect(image: &str, endpoint: &ResolvedEndpoint) -> Result<Docker, LocalSourceError> {
    let unreachable = |source| LocalSourceError::DaemonUnreachable {
        image: image.to_owned(),
        endpoint: endpoint.clone(),
        source: Box::new(source),
    };
    let docker = match &endpoint.endpoint {
        Endpoint::Unix(path) => Docker::connect_with_unix(
            &path.to_string_lossy(),
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ),
        Endpoint::Tcp { host, port } => Docker::connect_with_http(
            &format!("tcp://{host}:{port}"),
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ),
    }
    .map_err(unreachable)?;
    // Older daemons refuse a client newer than themselves; negotiating picks the lower one.
    docker.negotiate_version().await.map_err(unreachable)
}

/// The daemon's image ID (`sha256:…`: the config digest for Docker's classic store and
/// Podman, the manifest digest for containerd's) and the platform it was built for.
async fn inspect(
    docker: &Docker,
    image: &str,
    endpoint: &ResolvedEndpoint,
) -> Result<(Digest, Option<String>, Option<String>), LocalSourceError> {
    let inspected = docker
        .inspect_image(image)
        .await
        .map_err(|source| match source {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => LocalSourceError::DaemonImageNotFound {
                image: image.to_owned(),
                endpoint: endpoint.clone(),
            },
            source => LocalSourceError::Daemon {
                image: image.to_owned(),
                endpoint: endpoint.clone(),
                source: Box::new(source),
            },
        })?;
    let id = inspected.id.unwrap_or_default();
    // Docker answers `sha256:<hex>`; some Podman versions the bare hex.
    let id =
        id.parse()
            .or_else(|_| Digest::from_hex(&id))
            .map_err(|_| LocalSourceError::NoImage {
                image: image.to_owned(),
                reason: format!("the daemon gave an image ID `{id}` that is not a sha256 digest"),
            })?;
    Ok((id, inspected.os, inspected.architecture))
}

/// The daemon's ID for image `name` (`sha256:…`): a cheap way to tell whether it changed.
pub async fn daemon_image_id(
    name: &str,
    endpoint: &ResolvedEndpoint,
) -> Result<String, LocalSourceError> {
    let docker = connect(name, endpoint).await?;
    let (id, _, _) = inspect(&docker, name, endpoint).await?;
    Ok(id.to_string())
}

/// A blocking reader over chunks sent from the async side.
struct ChannelReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                // The sender is gone: the export ended (or failed, which the async side
                // reports itself).
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Export image `name` from the daemon at `endpoint`, repack its layers for `format` and
/// store its blobs through `sink`. The image must be for `platform`.
pub async fn export_from_daemon(
    name: &str,
    endpoint: &ResolvedEndpoint,
    platform: &Platform,
    format: ImageFormat,
    sink: Arc<dyn BlobSink>,
) -> Result<LocalImage, LocalSourceError> {
    let docker = connect(name, endpoint).await?;
    let (id, os, architecture) = inspect(&docker, name, endpoint).await?;
    let label = format!("daemon:{name}");
    if !super::platform_fits(platform, os.as_deref(), architecture.as_deref(), None) {
        return Err(LocalSourceError::PlatformMismatch {
            image: label,
            wanted: platform.clone(),
            found: super::platform_text(os.as_deref(), architecture.as_deref(), None),
        });
    }

    let (sender, receiver) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let reader = {
        let label = label.clone();
        let platform = platform.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader {
                chunks: receiver,
                current: Bytes::new(),
            };
            // The ID is not compared with the config digest: it is the config digest with
            // Docker's classic store and Podman, but the manifest digest with containerd's.
            let found = super::archive::read_docker_archive_stream(
                &mut reader,
                &label,
                sink.scratch_dir(),
                id.to_string(),
            )?;
            assemble(found, &platform, format, sink.as_ref())
        })
    };

    let mut body = docker.export_image(&id.to_string());
    let mut stream_error = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                if sender.send(chunk).await.is_err() {
                    // The reader stopped early (an error it reports): stop downloading.
                    break;
                }
            }
            Err(error) => {
                stream_error = Some(error);
                break;
            }
        }
    }
    drop(sender);
    drop(body);
    let read = reader.await.map_err(|error| LocalSourceError::Io {
        image: label.clone(),
        source: io::Error::other(format!("the archive reader stopped: {error}")),
    })?;
    // A failed download explains a truncated archive better than the tar error does.
    if let Some(source) = stream_error {
        return Err(LocalSourceError::Daemon {
            image: name.to_owned(),
            endpoint: endpoint.clone(),
            source: Box::new(source),
        });
    }
    read
}
