//! Fuzz target: bytes through [`isobuild::layout::convert::to_docker_schema2`] (and
//! `media_type`), the OCI → Docker v2 schema 2 rewrite the layout applies to every manifest.
//!
//! Beyond not panicking: when the input is a manifest [`isobuild::source::manifest::parse`]
//! accepts and the conversion succeeds, the output must be a valid Docker manifest that
//! describes the same blobs, since blob bytes never change in a conversion.

#![no_main]

use isobuild::layout::convert;
use isobuild::source::manifest::{self, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    std::hint::black_box(convert::media_type(data).ok());
    let Ok(converted) = convert::to_docker_schema2(data) else {
        return;
    };
    let Ok(Manifest::Image(before)) = manifest::parse(data) else {
        return;
    };
    let after = match manifest::parse(&converted) {
        Ok(Manifest::Image(after)) => after,
        other => panic!(
            "the conversion of a valid manifest does not parse back: {other:?}\n{}",
            String::from_utf8_lossy(&converted)
        ),
    };
    assert!(after.is_docker());
    assert_eq!(
        (&after.config.digest, after.config.size),
        (&before.config.digest, before.config.size)
    );
    let blobs = |m: &manifest::ImageManifest| {
        m.layers
            .iter()
            .map(|layer| (layer.digest.clone(), layer.size))
            .collect::<Vec<_>>()
    };
    assert_eq!(blobs(&after), blobs(&before));
});
