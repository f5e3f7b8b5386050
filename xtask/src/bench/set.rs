//! The bench's image set: MetalK8s-shaped and deterministic. 37 images named and tagged as
//! in `recipes/metalk8s.yaml`, about 1.2 GB of unique linux/amd64 blobs, built on a few
//! shared bases (alpine, distroless static and base, rockylinux, and nginx on alpine for the
//! UI), with layers from a few KiB to 150 MiB. Most are Docker v2s2; the images MetalK8s
//! builds with buildah and a few upstream ones are OCI; pause and coredns are two-platform
//! indexes. Same seeds, same digests: every run measures the same bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use isobuild_testkit::images::{Format, Image, Index, Layer};
use isobuild_testkit::set::{Content, ImageSet};

const MIB: f64 = 1024.0 * 1024.0;

/// What an image is built on; its layers come first and are shared with every image on the
/// same base.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Base {
    Scratch,
    Alpine,
    DistrolessStatic,
    /// Distroless static plus glibc and friends.
    DistrolessGlibc,
    Rocky,
    /// alpine plus nginx's own layer: the nginx image, which metalk8s-ui builds on.
    Nginx,
}

#[derive(Clone, Copy)]
enum Kind {
    Docker,
    Oci,
    /// An OCI index over linux/amd64 (this spec) and a small linux/arm64 image.
    Index,
}

/// One image: where it is pushed, what it is built on, and its own layers in MiB.
struct Spec {
    name: &'static str,
    tag: &'static str,
    base: Base,
    own: &'static [f64],
    kind: Kind,
}

const fn spec(
    name: &'static str,
    tag: &'static str,
    base: Base,
    own: &'static [f64],
    kind: Kind,
) -> Spec {
    Spec {
        name,
        tag,
        base,
        own,
        kind,
    }
}

/// Sizes loosely follow the real images, scaled so the whole set is about 1.2 GB.
const FULL: &[Spec] = &[
    spec("alpine", "3.20.1", Base::Alpine, &[], Kind::Docker),
    spec(
        "nginx",
        "1.27.0-alpine",
        Base::Alpine,
        &[12.0],
        Kind::Docker,
    ),
    spec("calico-cni", "v3.28.1", Base::Rocky, &[45.0], Kind::Docker),
    spec(
        "calico-node",
        "v3.28.1",
        Base::Rocky,
        &[150.0],
        Kind::Docker,
    ),
    spec(
        "calico-kube-controllers",
        "v3.28.1",
        Base::DistrolessGlibc,
        &[30.0],
        Kind::Docker,
    ),
    spec(
        "coredns",
        "v1.11.1",
        Base::DistrolessStatic,
        &[16.0],
        Kind::Index,
    ),
    spec("dex", "v2.40.0", Base::Alpine, &[25.0], Kind::Oci),
    spec(
        "fluent-bit",
        "3.1.7",
        Base::DistrolessGlibc,
        &[30.0],
        Kind::Oci,
    ),
    spec(
        "grafana",
        "11.1.0",
        Base::Alpine,
        &[50.0, 30.0],
        Kind::Docker,
    ),
    spec("loki", "2.9.6", Base::Alpine, &[30.0], Kind::Docker),
    spec(
        "nginx-ingress-controller",
        "v1.10.3",
        Base::Alpine,
        &[30.0, 8.0],
        Kind::Docker,
    ),
    spec("pause", "3.9", Base::Scratch, &[0.3], Kind::Index),
    spec(
        "etcd",
        "3.5.15-0",
        Base::DistrolessGlibc,
        &[25.0],
        Kind::Docker,
    ),
    spec(
        "kube-apiserver",
        "v1.29.8",
        Base::DistrolessGlibc,
        &[30.0],
        Kind::Docker,
    ),
    spec(
        "kube-controller-manager",
        "v1.29.8",
        Base::DistrolessGlibc,
        &[28.0],
        Kind::Docker,
    ),
    spec(
        "kube-proxy",
        "v1.29.8",
        Base::DistrolessGlibc,
        &[12.0, 20.0],
        Kind::Docker,
    ),
    spec(
        "kube-scheduler",
        "v1.29.8",
        Base::DistrolessGlibc,
        &[18.0],
        Kind::Docker,
    ),
    spec("k8s-sidecar", "1.26.1", Base::Alpine, &[20.0], Kind::Docker),
    spec(
        "kube-state-metrics",
        "v2.12.0",
        Base::DistrolessStatic,
        &[14.0],
        Kind::Docker,
    ),
    spec(
        "prometheus-adapter",
        "v0.11.2",
        Base::DistrolessStatic,
        &[25.0],
        Kind::Docker,
    ),
    spec(
        "prometheus-config-reloader",
        "v0.75.0",
        Base::DistrolessStatic,
        &[5.0],
        Kind::Docker,
    ),
    spec(
        "prometheus-operator",
        "v0.75.0",
        Base::DistrolessStatic,
        &[13.0],
        Kind::Docker,
    ),
    spec(
        "alertmanager",
        "v0.27.0",
        Base::DistrolessGlibc,
        &[25.0],
        Kind::Docker,
    ),
    spec(
        "node-exporter",
        "v1.8.1",
        Base::DistrolessGlibc,
        &[10.0],
        Kind::Docker,
    ),
    spec(
        "prometheus",
        "v2.53.0",
        Base::DistrolessGlibc,
        &[50.0, 2.0],
        Kind::Docker,
    ),
    spec("thanos", "v0.35.1", Base::Alpine, &[45.0], Kind::Docker),
    spec(
        "cert-manager-controller",
        "v1.15.3",
        Base::DistrolessStatic,
        &[15.0],
        Kind::Docker,
    ),
    spec(
        "cert-manager-webhook",
        "v1.15.3",
        Base::DistrolessStatic,
        &[12.0],
        Kind::Docker,
    ),
    spec(
        "cert-manager-cainjector",
        "v1.15.3",
        Base::DistrolessStatic,
        &[10.0],
        Kind::Docker,
    ),
    spec(
        "cert-manager-acmesolver",
        "v1.15.3",
        Base::DistrolessStatic,
        &[8.0],
        Kind::Docker,
    ),
    spec(
        "metalk8s-alert-logger",
        "129.0.0-dev",
        Base::Alpine,
        &[3.0],
        Kind::Oci,
    ),
    spec(
        "metalk8s-keepalived",
        "129.0.0-dev",
        Base::Rocky,
        &[15.0],
        Kind::Oci,
    ),
    spec("salt-master", "3002.9-1", Base::Rocky, &[80.0], Kind::Oci),
    spec("metalk8s-ui", "129.0.0-dev", Base::Nginx, &[8.0], Kind::Oci),
    spec(
        "metalk8s-utils",
        "129.0.0-dev",
        Base::Rocky,
        &[70.0],
        Kind::Oci,
    ),
    spec(
        "metalk8s-operator",
        "129.0.0-dev",
        Base::DistrolessGlibc,
        &[30.0],
        Kind::Oci,
    ),
    spec(
        "storage-operator",
        "129.0.0-dev",
        Base::DistrolessGlibc,
        &[28.0],
        Kind::Oci,
    ),
];

/// `--quick`: eight of them (every base and kind), every size divided by [`QUICK_SCALE`].
const QUICK: &[&str] = &[
    "alpine",
    "nginx",
    "calico-node",
    "coredns",
    "pause",
    "kube-apiserver",
    "salt-master",
    "metalk8s-ui",
];
const QUICK_SCALE: f64 = 8.0;

/// The repository every image is pushed to, under the bench registry.
pub(crate) fn repository(name: &str) -> String {
    format!("metalk8s/{name}")
}

/// Generate the set; layers above a few MiB are written into `dir` (delete it once pushed).
pub(crate) fn generate(dir: &Path, quick: bool) -> ImageSet {
    let scale = if quick { 1.0 / QUICK_SCALE } else { 1.0 };
    let mut maker = LayerMaker {
        dir: dir.to_owned(),
        scale,
        bases: HashMap::new(),
    };
    let mut set = ImageSet::default();
    for (index, spec) in FULL.iter().enumerate() {
        if quick && !QUICK.contains(&spec.name) {
            continue;
        }
        let seed = 1000 * (index as u64 + 1);
        let mut layers = maker.base(spec.base);
        for (n, mib) in spec.own.iter().enumerate() {
            layers.push(maker.layer(seed + n as u64, *mib));
        }
        // Every image ends with a few KiB of its own configuration files.
        if spec.base != Base::Scratch && !spec.own.is_empty() {
            let kib = 4 + (seed / 1000 * 7) % 60;
            layers.push(Layer::generate(seed + 999, 2, kib * 512));
        }
        let format = match spec.kind {
            Kind::Docker => Format::Docker,
            Kind::Oci | Kind::Index => Format::Oci,
        };
        let image = Image::new(format, "amd64", layers);
        let content = match spec.kind {
            Kind::Index => {
                let arm64 = Image::new(
                    Format::Oci,
                    "arm64",
                    vec![Layer::generate(seed + 500, 2, 256 * 1024)],
                );
                Content::Index(Index::new(vec![
                    ("linux/amd64", image),
                    ("linux/arm64", arm64),
                ]))
            }
            Kind::Docker | Kind::Oci => Content::Image(image),
        };
        set.add(spec.name, &repository(spec.name), spec.tag, content);
    }
    set
}

/// Makes layers of a size in MiB, and each base's layers once.
struct LayerMaker {
    dir: PathBuf,
    scale: f64,
    bases: HashMap<Base, Vec<Layer>>,
}

impl LayerMaker {
    /// Up to 4 MiB in memory as a few files; larger ones streamed into a file.
    fn layer(&self, seed: u64, mib: f64) -> Layer {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "sizes are small positive MiB counts"
        )]
        let bytes = ((mib * self.scale * MIB) as u64).max(4096);
        if bytes <= 4 << 20 {
            let files = (bytes / (256 * 1024)).clamp(1, 8);
            Layer::generate(seed, usize::try_from(files).unwrap_or(1), bytes / files)
        } else {
            Layer::generate_file(&self.dir.join(format!("{seed}.tar.gz")), seed, bytes)
        }
    }

    fn base(&mut self, base: Base) -> Vec<Layer> {
        if let Some(layers) = self.bases.get(&base) {
            return layers.clone();
        }
        let layers = match base {
            Base::Scratch => Vec::new(),
            Base::Alpine => vec![self.layer(1, 3.4)],
            Base::DistrolessStatic => vec![self.layer(2, 0.8)],
            Base::DistrolessGlibc => {
                let mut layers = self.base(Base::DistrolessStatic);
                layers.push(self.layer(3, 8.0));
                layers
            }
            Base::Rocky => vec![self.layer(4, 72.0)],
            // nginx's own layer is the nginx image's (seed of its spec, index 1).
            Base::Nginx => {
                let mut layers = self.base(Base::Alpine);
                layers.push(self.layer(2000, 12.0));
                layers
            }
        };
        self.bases.insert(base, layers.clone());
        layers
    }
}
