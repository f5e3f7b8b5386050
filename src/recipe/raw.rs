//! The recipe as written: serde types that mirror the YAML of schema version 1.
//!
//! Every field is optional and [`Located`], so that one wrong or missing value never stops
//! the others from being read; which fields are required, and what each value may be, is
//! decided by [`super::check`], which turns these into the validated model. Field names here
//! are the schema: renaming one is a schema change.

use serde::Deserialize;

use super::de::{Entries, Located, ScalarText};

/// A whole recipe document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecipe {
    #[serde(default)]
    pub(super) isobuild: Option<Located<i64>>,
    #[serde(default)]
    pub(super) name: Option<Located<String>>,
    #[serde(default)]
    pub(super) version: Option<Located<String>>,
    #[serde(default)]
    pub(super) vars: Option<Located<Entries<ScalarText>>>,
    /// Structured data for templates (`data.…`), any YAML; not overridable by `--set`.
    #[serde(default)]
    pub(super) data: Option<Located<serde_json::Value>>,
    #[serde(default)]
    pub(super) epoch: Option<Located<i64>>,
    #[serde(default)]
    pub(super) iso: Option<Located<RawIso>>,
    #[serde(default)]
    pub(super) images: Option<Located<RawImages>>,
    #[serde(default)]
    pub(super) mirrors: Option<Located<Entries<String>>>,
    #[serde(default)]
    pub(super) files: Option<Located<Vec<Located<RawFile>>>>,
    #[serde(default)]
    pub(super) tasks: Option<Located<Vec<Located<RawTask>>>>,
    #[serde(default)]
    pub(super) packages: Option<Located<RawPackages>>,
}

/// `iso:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIso {
    #[serde(default)]
    pub(super) output: Option<Located<String>>,
    #[serde(default)]
    pub(super) root: Option<Located<String>>,
    #[serde(default)]
    pub(super) volume_id: Option<Located<String>>,
    #[serde(default)]
    pub(super) implant_md5: Option<Located<bool>>,
    #[serde(default)]
    pub(super) sha256sum: Option<Located<String>>,
    #[serde(default)]
    pub(super) sbom: Option<Located<bool>>,
}

/// `images:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImages {
    #[serde(default)]
    pub(super) platform: Option<Located<String>>,
    #[serde(default)]
    pub(super) format: Option<Located<String>>,
    #[serde(default)]
    pub(super) path: Option<Located<String>>,
    #[serde(default)]
    pub(super) registry_config: Option<Located<RawRegistryConfig>>,
    #[serde(default)]
    pub(super) list: Option<Located<Vec<Located<RawImage>>>>,
}

/// `images.registry_config:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistryConfig {
    #[serde(default)]
    pub(super) path: Option<Located<String>>,
    #[serde(default)]
    pub(super) common_path: Option<Located<String>>,
    #[serde(default)]
    pub(super) name_prefix: Option<Located<String>>,
    #[serde(default)]
    pub(super) server_root: Option<Located<String>>,
    #[serde(default)]
    pub(super) unknown_tag_error: Option<Located<bool>>,
}

/// One entry of `images.list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImage {
    #[serde(default)]
    pub(super) name: Option<Located<String>>,
    #[serde(default, rename = "ref")]
    pub(super) reference: Option<Located<String>>,
    #[serde(default)]
    pub(super) tag: Option<Located<String>>,
    #[serde(default)]
    pub(super) digest: Option<Located<String>>,
    #[serde(default)]
    pub(super) image_id: Option<Located<String>>,
    #[serde(default)]
    pub(super) archive: Option<Located<String>>,
    #[serde(default)]
    pub(super) after: Option<Located<Vec<Located<String>>>>,
    /// Built by buildah instead of pulled (in place of `ref`).
    #[serde(default)]
    pub(super) build: Option<Located<RawBuild>>,
    /// `false`: only for container tasks and builds, not written in the ISO tree.
    #[serde(default)]
    pub(super) ship: Option<Located<bool>>,
}

/// `images.list[].build:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuild {
    #[serde(default)]
    pub(super) context: Option<Located<String>>,
    #[serde(default)]
    pub(super) containerfile: Option<Located<String>>,
    #[serde(default)]
    pub(super) args: Option<Located<Entries<String>>>,
    #[serde(default)]
    pub(super) target: Option<Located<String>>,
    #[serde(default)]
    pub(super) network: Option<Located<bool>>,
}

/// One entry of `tasks[].mounts:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMount {
    #[serde(default)]
    pub(super) src: Option<Located<String>>,
    #[serde(default)]
    pub(super) dest: Option<Located<String>>,
}

/// One entry of `files:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) src: Option<Located<String>>,
    #[serde(default)]
    pub(super) dest: Option<Located<String>>,
    #[serde(default)]
    pub(super) template: Option<Located<bool>>,
    /// Plain-text replacements (`"@@VERSION": "{{ version }}"`), as doit's scripts use.
    #[serde(default)]
    pub(super) replace: Option<Located<Entries<String>>>,
    /// Read as any scalar: `mode: 0755` unquoted is a number in YAML, and deserves a
    /// problem that says so rather than a plain type error.
    #[serde(default)]
    pub(super) mode: Option<Located<ScalarText>>,
    #[serde(default)]
    pub(super) after: Option<Located<Vec<Located<String>>>>,
    /// Globs of what a folder copy leaves out.
    #[serde(default)]
    pub(super) exclude: Option<Located<Vec<Located<String>>>>,
    /// Write the text as data in this format (`json`, `yaml`).
    #[serde(default)]
    pub(super) format: Option<Located<String>>,
    /// Text before the data of a `format` entry.
    #[serde(default)]
    pub(super) header: Option<Located<String>>,
}

/// One entry of `tasks:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    #[serde(default)]
    pub(super) name: Option<Located<String>>,
    #[serde(default)]
    pub(super) run: Option<Located<Vec<Located<String>>>>,
    #[serde(default)]
    pub(super) inputs: Option<Located<Vec<Located<String>>>>,
    #[serde(default)]
    pub(super) outputs: Option<Located<Vec<Located<String>>>>,
    #[serde(default)]
    pub(super) env: Option<Located<Entries<String>>>,
    #[serde(default)]
    pub(super) after: Option<Located<Vec<Located<String>>>>,
    /// Run in a container of this image (an `images.list` name) instead of on the host.
    #[serde(default)]
    pub(super) image: Option<Located<String>>,
    #[serde(default)]
    pub(super) network: Option<Located<bool>>,
    #[serde(default)]
    pub(super) workdir: Option<Located<String>>,
    #[serde(default)]
    pub(super) user: Option<Located<String>>,
    #[serde(default)]
    pub(super) mounts: Option<Located<Vec<Located<RawMount>>>>,
}

/// `packages:`: RPM repositories to resolve against and to ship.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPackages {
    #[serde(default)]
    pub(super) releasever: Option<Located<ScalarText>>,
    #[serde(default)]
    pub(super) basearch: Option<Located<String>>,
    #[serde(default)]
    pub(super) arches: Option<Located<Vec<Located<String>>>>,
    /// Module → stream to enable, or `null` to disable it (on top of the repos' defaults).
    #[serde(default)]
    pub(super) modules: Option<Located<Entries<ScalarText>>>,
    #[serde(default)]
    pub(super) seeds: Option<Located<RawSeeds>>,
    #[serde(default)]
    pub(super) repos: Option<Located<Vec<Located<RawPackageRepo>>>>,
}

/// One entry of `packages.repos`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPackageRepo {
    #[serde(default)]
    pub(super) id: Option<Located<String>>,
    #[serde(default)]
    pub(super) baseurl: Option<Located<String>>,
    /// A built repository: globs of RPMs that recipe tasks write (instead of `baseurl`).
    #[serde(default)]
    pub(super) from: Option<Located<Vec<Located<String>>>>,
    /// A built repository: the package names its RPMs are, which resolution skips.
    #[serde(default)]
    pub(super) builds: Option<Located<Vec<Located<String>>>>,
    #[serde(default)]
    pub(super) gpgkey: Option<Located<Vec<Located<String>>>>,
    #[serde(default)]
    pub(super) repo_gpgcheck: Option<Located<bool>>,
    #[serde(default)]
    pub(super) dest: Option<Located<String>>,
    #[serde(default)]
    pub(super) key_prefix: Option<Located<String>>,
    #[serde(default)]
    pub(super) exclude: Option<Located<Vec<Located<String>>>>,
}

/// `packages.seeds`: a list of names, NEVRAs or paths, or a mapping name → version (or
/// `null` for any version), the form versions.json's `packages` take, so that one anchored
/// node can feed both.
#[derive(Debug)]
pub(super) enum RawSeeds {
    List(Vec<Located<String>>),
    Map(Entries<ScalarText>),
}

impl<'de> Deserialize<'de> for RawSeeds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeedsVisitor;
        impl<'de> serde::de::Visitor<'de> for SeedsVisitor {
            type Value = RawSeeds;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of packages, or a mapping of package names to versions")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawSeeds, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Located<String>>()? {
                    items.push(item);
                }
                Ok(RawSeeds::List(items))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawSeeds, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Located<String>>()? {
                    let value = map.next_value::<Located<ScalarText>>()?;
                    entries.push((key, value));
                }
                Ok(RawSeeds::Map(Entries(entries)))
            }
        }
        deserializer.deserialize_any(SeedsVisitor)
    }
}
