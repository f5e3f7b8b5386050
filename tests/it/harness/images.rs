//! Synthetic images for the tests. The generic parts (seeded layers, Docker and OCI images,
//! indexes, the pusher) live in `isobuild-testkit`, shared with `cargo xtask demo` and
//! `cargo xtask bench`; the standard test set most tests push is defined here.

#[allow(unused_imports)]
pub(crate) use isobuild_testkit::images::{Format, Image, Index, Layer, Pusher, Rng, agent};

/// The standard test set: two images sharing a base layer (one Docker v2s2, one OCI) and
/// a two-platform index, all small.
pub(crate) struct TestSet {
    pub(crate) base: Layer,
    pub(crate) alpha: Image,
    pub(crate) beta: Image,
    pub(crate) multi: Index,
}

impl TestSet {
    pub(crate) fn new() -> Self {
        let base = Layer::generate(1, 3, 64 * 1024);
        let alpha = Image::new(
            Format::Docker,
            "amd64",
            vec![base.clone(), Layer::generate(2, 2, 32 * 1024)],
        );
        let beta = Image::new(
            Format::Oci,
            "amd64",
            vec![base.clone(), Layer::generate(3, 1, 128 * 1024)],
        );
        let multi = Index::new(vec![
            (
                "linux/amd64",
                Image::new(Format::Oci, "amd64", vec![Layer::generate(4, 1, 16 * 1024)]),
            ),
            (
                "linux/arm64",
                Image::new(Format::Oci, "arm64", vec![Layer::generate(5, 1, 16 * 1024)]),
            ),
        ]);
        Self {
            base,
            alpha,
            beta,
            multi,
        }
    }

    /// Push to `pusher` under `prefix` (`""` or `"docker.io/"`): `{prefix}test/alpha:1.0`,
    /// `{prefix}test/beta:2.0`, `{prefix}test/multi:3.0`.
    pub(crate) fn push(&self, pusher: &Pusher, prefix: &str) {
        pusher.push_image(&format!("{prefix}test/alpha"), Some("1.0"), &self.alpha);
        pusher.push_image(&format!("{prefix}test/beta"), Some("2.0"), &self.beta);
        pusher.push_index(&format!("{prefix}test/multi"), "3.0", &self.multi);
    }
}
