//! Fuzz target: recipe text through [`isobuild::recipe::load_str`], the whole loader (YAML,
//! the recovering deserialiser, every check, template compilation).
//!
//! The recipe is placed in the repository's `recipes/` folder (the file itself need not
//! exist), so seeds made from the real recipes still find the template files they name and
//! the template checks run. Any outcome is fine except a panic, a hang or a huge allocation;
//! the error is rendered too, since `main` prints it.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../recipes/fuzz.yaml"
    ));
    if let Err(error) = isobuild::recipe::load_str(text, file, &BTreeMap::new()) {
        std::hint::black_box(error.to_string());
    }
});
