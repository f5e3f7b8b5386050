//! Resolution: before the plan is built, every registry image of the recipe is resolved to
//! one platform manifest (one manifest request each, all at once), and checked against its
//! pins and the lock file. Knowing every manifest up front is what lets the plan hold one
//! task per distinct blob.
//!
//! Checks, each naming the image: a `digest:` pin must equal the index or the platform
//! manifest the tag resolves to; an `image_id:` pin must equal the config digest; with
//! `--locked`, the image is pulled by the locked digest and must resolve to the locked
//! manifest; offline, every blob must already be in the cache. `--ignore-pins` turns pin
//! mismatches into warnings, never silently.

use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::engine::render_chain;
use crate::recipe::{ImageEntry, Platform, Recipe};
use crate::reference::{ImageRef, ImageSource};
use crate::report::Reporter;
use crate::source::{RegistryClient, ResolvedImage};
use crate::store::Store;

use super::lock::{LockError, LockFile, LockedImage};

/// How one image of the recipe was resolved.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// A local image (archive, layout, daemon): read when its task runs.
    Local,
    Resolved(Box<ResolvedImage>),
    /// What went wrong, one line, naming the image.
    Failed(String),
}

/// How to resolve.
#[derive(Debug, Clone, Copy)]
pub struct ResolveOptions<'a> {
    pub platform: &'a Platform,
    /// Warn instead of failing on pin mismatches.
    pub ignore_pins: bool,
    /// Pull by the digests of this lock file (`--locked`), read from this path.
    pub locked: Option<(&'a LockFile, &'a Path)>,
    /// Every blob must be in the cache (`--offline`).
    pub offline: bool,
    /// Say which mirror served each image (`-v`).
    pub verbose: bool,
}

/// Images that could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} of {total} images cannot be used:\n  {}{}",
    failures.len(),
    failures.join("\n  "),
    hint.as_ref().map(|hint| format!("\nhint: {hint}")).unwrap_or_default()
)]
pub struct ResolveError {
    pub total: usize,
    pub failures: Vec<String>,
    /// One line of advice for all of them (what to do offline), said once.
    pub hint: Option<String>,
}

/// Resolve every image of `recipe`, in recipe order.
pub async fn resolve_images(
    recipe: &Recipe,
    client: &Arc<RegistryClient>,
    store: &Store,
    reporter: &Arc<dyn Reporter>,
    options: ResolveOptions<'_>,
) -> Result<Vec<Resolution>, LockError> {
    let locked_entries = match options.locked {
        Some((lock, path)) => Some(lock.entries_for(recipe, path)?),
        None => None,
    };
    let mut tasks = JoinSet::new();
    let mut resolutions = vec![Resolution::Local; recipe.images.list.len()];
    reporter.on_resolve_start(
        recipe
            .images
            .list
            .iter()
            .filter(|entry| matches!(entry.source, ImageSource::Registry(_)))
            .count(),
    );
    for (index, entry) in recipe.images.list.iter().enumerate() {
        let ImageSource::Registry(reference) = &entry.source else {
            continue;
        };
        let locked: Option<LockedImage> = locked_entries
            .as_ref()
            .and_then(|entries| entries[index].cloned());
        let (client, store, entry, reference) = (
            Arc::clone(client),
            store.clone(),
            entry.clone(),
            reference.clone(),
        );
        let platform = options.platform.clone();
        tasks.spawn(async move {
            let result = resolve_one(&client, &store, &reference, &platform, locked.as_ref()).await;
            (index, entry, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let Ok((index, entry, result)) = joined else {
            continue;
        };
        let label = format!("image `{}:{}`", entry.name, entry.tag);
        tracing::debug!(image = %entry.source, ok = result.is_ok(), "resolved {label}");
        reporter.on_image_resolved(&format!("{}:{}", entry.name, entry.tag));
        if options.verbose
            && let Ok(image) = &result
            && let Some(host) = &image.served_by
        {
            reporter.on_message(&format!(
                "{label}: served by `{host}` (for `{}`)",
                image.reference
            ));
        }
        resolutions[index] = match result {
            Err(message) => Resolution::Failed(format!("{label}: {message}")),
            Ok(image) => match check_pins(&entry, &image) {
                Some(mismatch) if options.ignore_pins => {
                    reporter.on_message(&format!(
                        "warning: {label}: {mismatch} (not checked: --ignore-pins)"
                    ));
                    Resolution::Resolved(Box::new(image))
                }
                Some(mismatch) => Resolution::Failed(format!("{label}: {mismatch}")),
                None => match missing_blobs(&image, store, options.offline) {
                    Some(missing) => Resolution::Failed(format!("{label}: {missing}")),
                    None => Resolution::Resolved(Box::new(image)),
                },
            },
        };
    }
    Ok(resolutions)
}

/// The resolved images by position (`None` for local ones), or every failure.
pub fn into_images(
    resolutions: Vec<Resolution>,
) -> Result<Vec<Option<ResolvedImage>>, ResolveError> {
    let total = resolutions.len();
    let failures: Vec<String> = resolutions
        .iter()
        .filter_map(|resolution| match resolution {
            Resolution::Failed(message) => Some(message.clone()),
            _ => None,
        })
        .collect();
    if !failures.is_empty() {
        return Err(ResolveError {
            total,
            failures,
            hint: None,
        });
    }
    Ok(resolutions
        .into_iter()
        .map(|resolution| match resolution {
            Resolution::Resolved(image) => Some(*image),
            _ => None,
        })
        .collect())
}

async fn resolve_one(
    client: &RegistryClient,
    store: &Store,
    reference: &ImageRef,
    platform: &Platform,
    locked: Option<&LockedImage>,
) -> Result<ResolvedImage, String> {
    let Some(locked) = locked else {
        return client
            .resolve(reference, platform, store)
            .await
            .map_err(|error| render_chain(&error));
    };
    let pinned = ImageRef {
        digest: Some(
            locked
                .index_digest
                .clone()
                .unwrap_or_else(|| locked.manifest_digest.clone()),
        ),
        ..reference.clone()
    };
    let mut image = client
        .resolve(&pinned, platform, store)
        .await
        .map_err(|error| render_chain(&error))?;
    if image.manifest_digest != locked.manifest_digest {
        return Err(format!(
            "the lock file says manifest `{}`, but `{}` resolves to `{}` for {platform}",
            locked.manifest_digest, pinned, image.manifest_digest
        ));
    }
    // Report it as the recipe names it, not by the digest it was pulled with.
    image.reference = reference.clone();
    Ok(image)
}

/// A pin of `entry` that `image` does not match, said for a person.
pub(crate) fn check_pins(entry: &ImageEntry, image: &ResolvedImage) -> Option<String> {
    if let Some(pin) = &entry.digest
        && *pin != *image.digest()
        && *pin != image.manifest_digest
    {
        let served = match &image.index_digest {
            Some(index) => format!("index `{index}` (manifest `{}`)", image.manifest_digest),
            None => format!("manifest `{}`", image.manifest_digest),
        };
        return Some(format!(
            "pinned digest `{pin}` does not match: the registry serves {served}"
        ));
    }
    if let Some(pin) = &entry.image_id
        && *pin != image.config.digest
    {
        return Some(format!(
            "pinned image ID `{pin}` does not match: the image's config is `{}`",
            image.config.digest
        ));
    }
    None
}

/// Offline: which blobs of `image` the cache lacks, said for a person.
fn missing_blobs(image: &ResolvedImage, store: &Store, offline: bool) -> Option<String> {
    if !offline {
        return None;
    }
    let total = image.blobs().count();
    let missing = image
        .blobs()
        .filter(|blob| !store.has_blob(&blob.digest))
        .count();
    (missing > 0).then(|| format!("{missing} of its {total} blobs are not in the cache"))
}
