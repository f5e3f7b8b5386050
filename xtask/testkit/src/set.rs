//! A named set of images and indexes pushed together, as `cargo xtask demo` and
//! `cargo xtask bench` describe theirs: what goes to the registry under which repository and
//! tag, and what one platform of it weighs (the bytes an ISO must hold).

use std::collections::BTreeMap;

use isobuild::reference::Digest;

use crate::images::{Image, Index, Pusher};

/// What a tag points at.
#[derive(Clone, Debug)]
pub enum Content {
    Image(Image),
    Index(Index),
}

impl Content {
    /// The image a pull for `platform` (`os/arch`) gets: the image itself, or the index's
    /// entry for that platform.
    pub fn for_platform(&self, platform: &str) -> &Image {
        match self {
            Content::Image(image) => image,
            Content::Index(index) => index.image(platform),
        }
    }

    /// Every image it holds (one, or one per platform).
    pub fn images(&self) -> Vec<&Image> {
        match self {
            Content::Image(image) => vec![image],
            Content::Index(index) => index.images.iter().map(|(_, image)| image).collect(),
        }
    }
}

/// One tagged image of a set.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The image's name in a recipe (`images/<name>/<tag>` in the ISO).
    pub name: String,
    /// The repository it is pushed to (`library/alpine`, `demo.local/library/alpine`).
    pub repository: String,
    pub tag: String,
    pub content: Content,
}

/// Images pushed together; layers shared between them are uploaded once.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    pub entries: Vec<Entry>,
}

impl ImageSet {
    pub fn add(&mut self, name: &str, repository: &str, tag: &str, content: Content) {
        self.entries.push(Entry {
            name: name.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            content,
        });
    }

    /// Push every entry (blobs, manifests, index) through `pusher` (with a
    /// [`Pusher::mounting`] one, each shared blob is uploaded once).
    pub fn push(&self, pusher: &Pusher) {
        for entry in &self.entries {
            match &entry.content {
                Content::Image(image) => {
                    pusher.push_image(&entry.repository, Some(&entry.tag), image);
                }
                Content::Index(index) => pusher.push_index(&entry.repository, &entry.tag, index),
            }
        }
    }

    /// The distinct blobs (configs and layers) of `platform` and their sizes: what an ISO
    /// of the set holds, once each.
    pub fn platform_blobs(&self, platform: &str) -> BTreeMap<Digest, u64> {
        let mut blobs = BTreeMap::new();
        for entry in &self.entries {
            add_blobs(&mut blobs, entry.content.for_platform(platform));
        }
        blobs
    }

    /// The distinct blobs of every platform: what the registry stores.
    pub fn all_blobs(&self) -> BTreeMap<Digest, u64> {
        let mut blobs = BTreeMap::new();
        for entry in &self.entries {
            for image in entry.content.images() {
                add_blobs(&mut blobs, image);
            }
        }
        blobs
    }
}

fn add_blobs(blobs: &mut BTreeMap<Digest, u64>, image: &Image) {
    blobs.insert(image.config_digest.clone(), image.config.len() as u64);
    for layer in &image.layers {
        blobs.insert(layer.digest.clone(), layer.size);
    }
}
