//! Inventories and diffs as text for a terminal, and diffs as Markdown for release notes.
//! (The JSON forms are the serde forms of [`Inventory`] and [`Diff`].)

use std::fmt::Write as _;

use super::diff::Diff;
use super::{Inventory, Kind};
use crate::reference::Digest;

/// A size for people: `812 B`, `3.5 KiB`, `1.2 GiB`; signed when `signed`.
pub fn human(bytes: i64, signed: bool) -> String {
    let sign = match (signed, bytes.signum()) {
        (true, 1) => "+",
        (_, -1) => "-",
        _ => "",
    };
    let magnitude = bytes.unsigned_abs();
    #[allow(clippy::cast_precision_loss)]
    let value = magnitude as f64;
    let text = if magnitude < 1024 {
        format!("{magnitude} B")
    } else if magnitude < 1 << 20 {
        format!("{:.1} KiB", value / 1024.0)
    } else if magnitude < 1 << 30 {
        format!("{:.1} MiB", value / f64::from(1 << 20))
    } else {
        format!("{:.2} GiB", value / f64::from(1 << 30))
    };
    format!("{sign}{text}")
}

fn size(bytes: u64) -> String {
    human(i64::try_from(bytes).unwrap_or(i64::MAX), false)
}

/// The first 12 hex digits, as `docker images` shows an id.
fn short(digest: Option<&Digest>) -> String {
    digest.map_or_else(|| "-".to_owned(), |digest| digest.hex()[..12].to_owned())
}

/// `inspect --format text`.
pub fn inventory_text(inventory: &Inventory) -> String {
    let mut out = String::new();
    let kind = match inventory.kind {
        Kind::Iso => "ISO",
        Kind::Tree => "tree",
        Kind::Lock => "lock file",
    };
    let _ = writeln!(out, "{kind}");
    if let Some(iso) = &inventory.iso {
        let _ = writeln!(out, "  volume id  {}", iso.volume_id);
        let _ = writeln!(out, "  size       {} ({} bytes)", size(iso.size), iso.size);
        let _ = writeln!(out, "  sha256     {}", iso.sha256.hex());
    }
    if let Some(platform) = &inventory.platform {
        let _ = writeln!(out, "  platform   {platform}");
    }
    if let Some(product) = &inventory.product {
        let _ = writeln!(out, "\nproduct.txt");
        for (key, value) in product {
            let _ = writeln!(out, "  {key}={value}");
        }
    }
    let _ = writeln!(out, "\nimages ({})", inventory.images.len());
    for image in &inventory.images {
        let _ = writeln!(
            out,
            "  {}:{}  {}  {}  {} layers  {}",
            image.name,
            image.tag,
            short(image.manifest_digest.as_ref()),
            image.platform.as_deref().unwrap_or("-"),
            image.layers.len(),
            size(image.size)
        );
        if let Some(path) = &image.path {
            let _ = writeln!(out, "    at    {path}/");
        }
        if let Some(upstream) = &image.upstream {
            let _ = writeln!(out, "    from  {}@{}", upstream.reference, upstream.digest);
        }
        for layer in &image.layers {
            let _ = writeln!(out, "    layer {}  {}", layer.digest, size(layer.size));
        }
    }
    let _ = writeln!(out, "\npackages ({})", inventory.packages.len());
    for package in &inventory.packages {
        let _ = writeln!(
            out,
            "  {}  {}  {}",
            package.nevra,
            package.repo,
            short(Some(&package.sha256))
        );
    }
    let _ = writeln!(out, "\nfiles ({})", inventory.files.len());
    for file in &inventory.files {
        let _ = writeln!(
            out,
            "  {}  {:>10}  {}  {}",
            file.mode,
            file.size,
            short(Some(&file.sha256)),
            file.path
        );
    }
    out
}

/// `diff --format text`.
pub fn diff_text(diff: &Diff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "--- {}\n+++ {}", diff.old, diff.new);
    for image in &diff.images.removed {
        let _ = writeln!(
            out,
            "- image {}:{}  {}",
            image.name,
            image.tag,
            size(image.size)
        );
    }
    for image in &diff.images.added {
        let _ = writeln!(
            out,
            "+ image {}:{}  {}",
            image.name,
            image.tag,
            size(image.size)
        );
    }
    for change in &diff.images.changed {
        let _ = writeln!(
            out,
            "~ image {}: {} ({}) -> {} ({})  {}, {} of {} layers shared",
            change.name,
            change.old_tag,
            short(change.old_digest.as_ref()),
            change.new_tag,
            short(change.new_digest.as_ref()),
            human(change.size_delta, true),
            change.layers_shared,
            change.layers_shared + change.layers_added
        );
    }
    for package in &diff.packages.removed {
        let _ = writeln!(
            out,
            "- package {}.{} {}",
            package.name, package.arch, package.version
        );
    }
    for package in &diff.packages.added {
        let _ = writeln!(
            out,
            "+ package {}.{} {}",
            package.name, package.arch, package.version
        );
    }
    for change in &diff.packages.changed {
        let _ = writeln!(
            out,
            "~ package {}.{}: {} -> {}",
            change.name, change.arch, change.old_version, change.new_version
        );
    }
    for file in &diff.files.removed {
        let _ = writeln!(out, "- file {}  {}", file.path, size(file.size));
    }
    for file in &diff.files.added {
        let _ = writeln!(out, "+ file {}  {}", file.path, size(file.size));
    }
    for change in &diff.files.changed {
        let mode = if change.old_mode == change.new_mode {
            String::new()
        } else {
            format!(", mode {} -> {}", change.old_mode, change.new_mode)
        };
        let _ = writeln!(
            out,
            "~ file {}  {}{mode}",
            change.path,
            human(change.size_delta, true)
        );
    }
    let _ = writeln!(out, "{}", diff.summary);
    out
}

/// `diff --format markdown`: tables that paste into release notes.
pub fn diff_markdown(diff: &Diff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Changes from {} to {}\n", diff.old, diff.new);
    let _ = writeln!(out, "{}\n", diff.summary);

    let _ = writeln!(out, "### Images\n");
    if diff.images.is_empty() {
        let _ = writeln!(out, "No change.\n");
    } else {
        let _ = writeln!(out, "| Image | Change | Old | New | Size | Layers shared |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for image in &diff.images.added {
            let _ = writeln!(
                out,
                "| `{}` | added | | `{}` (`{}`) | {} | |",
                image.name,
                image.tag,
                short(image.digest.as_ref()),
                size(image.size)
            );
        }
        for image in &diff.images.removed {
            let _ = writeln!(
                out,
                "| `{}` | removed | `{}` (`{}`) | | {} | |",
                image.name,
                image.tag,
                short(image.digest.as_ref()),
                human(-i64::try_from(image.size).unwrap_or(i64::MAX), true)
            );
        }
        for change in &diff.images.changed {
            let _ = writeln!(
                out,
                "| `{}` | changed | `{}` (`{}`) | `{}` (`{}`) | {} | {} of {} |",
                change.name,
                change.old_tag,
                short(change.old_digest.as_ref()),
                change.new_tag,
                short(change.new_digest.as_ref()),
                human(change.size_delta, true),
                change.layers_shared,
                change.layers_shared + change.layers_added
            );
        }
        out.push('\n');
    }

    let _ = writeln!(out, "### Packages\n");
    if diff.packages.is_empty() {
        let _ = writeln!(out, "No change.\n");
    } else {
        let _ = writeln!(out, "| Package | Change | Old | New |");
        let _ = writeln!(out, "|---|---|---|---|");
        for package in &diff.packages.added {
            let _ = writeln!(
                out,
                "| `{}.{}` | added | | `{}` |",
                package.name, package.arch, package.version
            );
        }
        for package in &diff.packages.removed {
            let _ = writeln!(
                out,
                "| `{}.{}` | removed | `{}` | |",
                package.name, package.arch, package.version
            );
        }
        for change in &diff.packages.changed {
            let _ = writeln!(
                out,
                "| `{}.{}` | changed | `{}` | `{}` |",
                change.name, change.arch, change.old_version, change.new_version
            );
        }
        out.push('\n');
    }

    let _ = writeln!(out, "### Files\n");
    if diff.files.is_empty() {
        let _ = writeln!(out, "No change.");
    } else {
        let _ = writeln!(out, "| File | Change | Size |");
        let _ = writeln!(out, "|---|---|---|");
        for file in &diff.files.added {
            let _ = writeln!(out, "| `{}` | added | {} |", file.path, size(file.size));
        }
        for file in &diff.files.removed {
            let _ = writeln!(
                out,
                "| `{}` | removed | {} |",
                file.path,
                human(-i64::try_from(file.size).unwrap_or(i64::MAX), true)
            );
        }
        for change in &diff.files.changed {
            let _ = writeln!(
                out,
                "| `{}` | changed | {} |",
                change.path,
                human(change.size_delta, true)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human(812, false), "812 B");
        assert_eq!(human(3584, true), "+3.5 KiB");
        assert_eq!(human(-5 << 20, true), "-5.0 MiB");
        assert_eq!(human(0, true), "0 B");
    }
}
