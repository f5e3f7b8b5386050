//! Fuzz target: bytes through [`isobuild::source::manifest::parse`], as a registry or an
//! archive would serve them, then platform selection on whatever index comes out.
//!
//! Beyond not panicking, a parsed document must keep what it was parsed from: its media type
//! is one isobuild knows, and every index entry the selection returns is one of the index's.

#![no_main]

use isobuild::recipe::Platform;
use isobuild::source::manifest::{self, Manifest, media_type};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = manifest::parse(data) else {
        return;
    };
    assert!(media_type::MANIFESTS.contains(&parsed.media_type()));
    if let Manifest::Index(index) = &parsed {
        std::hint::black_box(index.platforms());
        for wanted in [
            "linux/amd64",
            "linux/arm64",
            "linux/arm64/v8",
            "linux/arm/v7",
        ] {
            let wanted: Platform = wanted.parse().expect("a valid platform");
            if let Some(entry) = index.select(&wanted) {
                assert!(index.manifests.contains(entry));
                let spec = entry.platform.as_ref().expect("selected entries have one");
                assert_eq!(
                    (spec.os.as_str(), spec.architecture.as_str()),
                    (wanted.os.as_str(), wanted.architecture.as_str())
                );
            }
        }
    }
});
