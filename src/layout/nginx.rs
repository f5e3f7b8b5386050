//! The nginx rules that serve the ISO's image tree as a read-only registry, as MetalK8s'
//! static registry generator writes them.
//!
//! Two include files: the *common* one holds what every ISO shares (`/v2` redirect, `/v2/`
//! answer, the `@404_tag` error body); the *per-version* one holds, for each image name, a
//! `tags/list` answer, one exact location per tag and per distinct manifest digest, and one
//! regex location for blobs that tries each tag folder. Names and tags are sorted so the
//! output is byte-stable. Manifest digests are the sha256 of the `manifest.json` bytes, and
//! the `Docker-Content-Digest` header carries it (containerd needs it).
//!
//! The text is byte for byte what MetalK8s' vendored generator
//! (`buildchain/static-container-registry/static-container-registry.py`, `create_config`)
//! writes for the same tree: every block opens with a blank line, a repeated manifest gets the
//! generator's comment. One addition is opt-in ([`RuleOptions::unknown_tag_error`]): a regex
//! location per name answering any other tag with the `TAG_INVALID` JSON error, where the
//! generator lets nginx answer with its own HTML 404 page.

use std::collections::{BTreeMap, BTreeSet};

use crate::reference::Digest;

/// One tag of one image as nginx serves it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServedImage {
    /// Repository name without the prefix (`alpine`).
    pub name: String,
    pub tag: String,
    /// The image folder relative to the served root, `/`-separated (`alpine/3.20.1`).
    pub dir: String,
    /// sha256 of the folder's `manifest.json`.
    pub manifest_digest: Digest,
    /// Content type of `manifest.json`.
    pub media_type: String,
}

/// What the rules may add to the generator's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleOptions {
    /// Answer a tag no location names with the `TAG_INVALID` JSON 404 (one regex location per
    /// name), instead of nginx's HTML 404 page.
    pub unknown_tag_error: bool,
}

/// The constants every ISO's registry shares.
pub fn common_rules() -> String {
    concat!(
        "\n",
        "location = /v2 {\n",
        "    return 301 /v2/;\n",
        "}\n",
        "\n",
        "location = /v2/ {\n",
        "    return 200 'ok';\n",
        "}\n",
        "\n",
        "location @404_tag {\n",
        "    internal;\n",
        "    types { } default_type \"application/json\";\n",
        "    return 404 '{\"errors\": [{\"code\": \"TAG_INVALID\", \"message\": \"manifest tag did not match URI\", \"detail\": \"\"}]}';\n",
        "}\n",
    )
    .to_owned()
}

/// The per-image rules. `prefix` comes before every name (`metalk8s-129.0.0-dev/`);
/// `server_root` is the nginx variable or path of the served root (`$metalk8s_…_images`).
pub fn image_rules(
    prefix: &str,
    server_root: &str,
    images: &[ServedImage],
    options: RuleOptions,
) -> String {
    let mut by_name: BTreeMap<&str, Vec<&ServedImage>> = BTreeMap::new();
    for image in images {
        by_name.entry(&image.name).or_default().push(image);
    }
    // The generator strips a leading `/` from the prefix (names never start with one).
    let prefix = prefix.trim_start_matches('/');
    let root = server_root;
    let mut out = String::new();
    for (name, mut tags) in by_name {
        tags.sort_by(|a, b| a.tag.cmp(&b.tag));
        let tag_list: Vec<String> = tags.iter().map(|image| json_string(&image.tag)).collect();
        out.push_str(&format!(
            "\nlocation = /v2/{prefix}{name}/tags/list {{\n    types {{ }} default_type \"application/json\";\n    return 200 '{{\"name\": {}, \"tags\": [{}]}}';\n}}\n",
            json_string(name),
            tag_list.join(", ")
        ));
        let mut seen_digests = BTreeSet::new();
        for image in &tags {
            out.push_str(&manifest_location(
                &format!("/v2/{prefix}{name}/manifests/{}", image.tag),
                root,
                image,
            ));
            if seen_digests.insert(&image.manifest_digest) {
                out.push_str(&manifest_location(
                    &format!("/v2/{prefix}{name}/manifests/{}", image.manifest_digest),
                    root,
                    image,
                ));
            } else {
                // nginx refuses duplicate locations: a second tag with the same manifest is
                // already served by the digest location above.
                out.push_str(&format!(
                    "\n# Digest for \"{name}:{}\" already served\n",
                    image.tag
                ));
            }
        }
        if options.unknown_tag_error {
            // Any other tag of this name: the registry error a client expects, not nginx's
            // page.
            out.push_str(&format!(
                "\nlocation ~ \"^/v2/{prefix}{name}/manifests/\" {{\n    error_page 404 @404_tag;\n    return 404;\n}}\n"
            ));
        }
        let name_dir = tags[0]
            .dir
            .rsplit_once('/')
            .map_or("", |(parent, _)| parent);
        let tries: Vec<String> = tags
            .iter()
            .map(|image| {
                let tag_dir = image
                    .dir
                    .rsplit_once('/')
                    .map_or(image.dir.as_str(), |(_, d)| d);
                format!("{tag_dir}/$1")
            })
            .collect();
        out.push_str(&format!(
            "\nlocation ~ \"/v2/{prefix}{name}/blobs/sha256:([a-f0-9]{{64}})\" {{\n    alias {root}/{name_dir}/;\n    try_files {} =404;\n}}\n",
            tries.join(" ")
        ));
    }
    out
}

fn manifest_location(path: &str, root: &str, image: &ServedImage) -> String {
    format!(
        "\nlocation = \"{path}\" {{\n    alias {root}/{}/;\n    types {{ }} default_type \"{}\";\n    add_header 'Docker-Content-Digest' '{}';\n    try_files manifest.json =404;\n    error_page 404 @404_tag;\n}}\n",
        image.dir, image.media_type, image.manifest_digest
    )
}

/// A JSON string literal as Python's `json.dumps` writes it (names and tags are
/// `[A-Za-z0-9._-]`, so this only quotes; the escaping is Python's all the same).
fn json_string(text: &str) -> String {
    crate::python_json::string(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, tag: &str, digest_byte: char) -> ServedImage {
        ServedImage {
            name: name.into(),
            tag: tag.into(),
            dir: format!("{name}/{tag}"),
            manifest_digest: Digest::from_hex(&digest_byte.to_string().repeat(64)).unwrap(),
            media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        }
    }

    #[test]
    fn rules_are_sorted_and_digests_deduplicated() {
        let images = [
            image("pause", "3.9", 'b'),
            image("alpine", "3.20.1", 'a'),
            image("alpine", "3.19", 'a'),
        ];
        let rules = image_rules(
            "metalk8s-1.0/",
            "$metalk8s_1_0_images",
            &images,
            RuleOptions::default(),
        );
        let alpine = rules.find("/v2/metalk8s-1.0/alpine/tags/list").unwrap();
        let pause = rules.find("/v2/metalk8s-1.0/pause/tags/list").unwrap();
        assert!(alpine < pause);
        assert!(rules.contains(r#"return 200 '{"name": "alpine", "tags": ["3.19", "3.20.1"]}';"#));
        assert_eq!(rules.matches("manifests/sha256:aaaa").count(), 1);
        assert!(rules.contains(
            "alias $metalk8s_1_0_images/alpine/;\n    try_files 3.19/$1 3.20.1/$1 =404;"
        ));
        assert!(rules.contains("alias $metalk8s_1_0_images/alpine/3.19/;"));
        let shuffled = [images[2].clone(), images[0].clone(), images[1].clone()];
        assert_eq!(
            rules,
            image_rules(
                "metalk8s-1.0/",
                "$metalk8s_1_0_images",
                &shuffled,
                RuleOptions::default()
            )
        );
        assert!(rules.starts_with("\nlocation = /v2/metalk8s-1.0/alpine/tags/list {\n"));
        assert!(rules.contains("\n# Digest for \"alpine:3.20.1\" already served\n"));
        assert!(
            !rules.contains("location ~ \"^/v2/"),
            "no catch-all by default"
        );
        let opted = image_rules(
            "metalk8s-1.0/",
            "$metalk8s_1_0_images",
            &images,
            RuleOptions {
                unknown_tag_error: true,
            },
        );
        assert_eq!(opted.matches("location ~ \"^/v2/metalk8s-1.0/").count(), 2);
    }
}
