//! `cargo xtask demo [--clean]`: build `recipes/demo.yaml` into `target/demo/demo.iso` on a
//! fresh machine, with no registry of one's own and no network past Debian's mirrors.
//!
//! The recipe names its images as if they came from an upstream registry
//! (`demo.local/library/alpine:3.20`). The demo starts a throwaway docker-registry on
//! loopback, pushes generated stand-ins for those images there (deterministic, so every run
//! pushes the same digests), maps `demo.local` onto it with `--mirror`, builds the ISO, checks
//! it with `isobuild verify`, prints its size and sha256, and stops the registry. Two runs,
//! with or without a cache, print the same sha256. `--clean` starts from nothing: no cache,
//! no ISO tree.

use std::path::Path;

use anyhow::{Context, Result, bail};
use isobuild::reference::Digest;
use isobuild_testkit::images::{Format, Image, Index, Layer, Pusher};
use isobuild_testkit::peers::Registry;
use isobuild_testkit::set::{Content, ImageSet};

use crate::ci::{Peer, install_peers, step, workspace_root};

/// What the demo starts or runs besides isobuild: the registry, and xorriso for the ISO.
const PEERS: &[Peer] = &[
    ("docker-registry", "docker-registry"),
    ("xorriso", "xorriso"),
];

/// The upstream-looking registry host the recipe's references name.
const HOST: &str = "demo.local";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut clean = false;
    for arg in args {
        match arg.as_str() {
            "--clean" => clean = true,
            other => bail!("unknown option `{other}`; usage: cargo xtask demo [--clean]"),
        }
    }
    let root = workspace_root()?;
    install_peers(PEERS)?;
    let isobuild = crate::binary::build_isobuild(&root, "release")?;
    let out = root.join("target/demo");
    if clean {
        // The ISO and cache, and the tree and generated files the recipe keeps beside it.
        for dir in [out.clone(), root.join("recipes/_build/demo")] {
            if dir.exists() {
                fs_err::remove_dir_all(&dir)?;
            }
        }
    }
    fs_err::create_dir_all(&out)?;

    let registry = Registry::start();
    eprintln!("xtask demo: registry on {}", registry.host());
    demo_set().push(&Pusher::new(&registry).mounting());

    let iso = out.join("demo.iso");
    let mirror = format!("{HOST}={}/{HOST}", registry.host());
    let cache = out.join("cache");
    let (isobuild, iso_arg, cache_arg) = (utf8(&isobuild)?, utf8(&iso)?, utf8(&cache)?);
    let host = registry.host();
    step(
        &root,
        isobuild,
        &[
            "build",
            "recipes/demo.yaml",
            "-o",
            iso_arg,
            "--cache-dir",
            cache_arg,
            "--mirror",
            &mirror,
            "--insecure-registry",
            &host,
        ],
        &[],
    )?;
    step(&root, isobuild, &["verify", iso_arg], &[])?;
    drop(registry);

    let size = fs_err::metadata(&iso)?.len();
    let digest = Digest::of_file(&iso).with_context(|| format!("hash {}", iso.display()))?;
    println!("ISO     {}", iso.display());
    println!("size    {size} bytes");
    println!("sha256  {}", digest.hex());
    Ok(())
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The images `recipes/demo.yaml` lists, as stand-ins: alpine, nginx and an app image share
/// one base layer (the ISO stores it once), the app is OCI (laid out as Docker v2s2), and
/// pause is an index over two platforms (the ISO gets linux/amd64).
fn demo_set() -> ImageSet {
    let base = Layer::generate(0xA1, 4, 256 * 1024);
    let image = |format, seed, files, size| {
        Image::new(
            format,
            "amd64",
            vec![base.clone(), Layer::generate(seed, files, size)],
        )
    };
    let pause = |architecture, seed| {
        Image::new(
            Format::Oci,
            architecture,
            vec![Layer::generate(seed, 1, 32 * 1024)],
        )
    };
    let mut set = ImageSet::default();
    set.add(
        "alpine",
        &format!("{HOST}/library/alpine"),
        "3.20",
        Content::Image(Image::new(Format::Docker, "amd64", vec![base.clone()])),
    );
    set.add(
        "nginx",
        &format!("{HOST}/library/nginx"),
        "1.27-alpine",
        Content::Image(image(Format::Docker, 0xB2, 3, 512 * 1024)),
    );
    set.add(
        "demo-app",
        &format!("{HOST}/demo/app"),
        "1.0.0",
        Content::Image(image(Format::Oci, 0xC3, 2, 128 * 1024)),
    );
    set.add(
        "pause",
        &format!("{HOST}/pause"),
        "3.9",
        Content::Index(Index::new(vec![
            ("linux/amd64", pause("amd64", 0xD4)),
            ("linux/arm64", pause("arm64", 0xD5)),
        ])),
    );
    set
}
