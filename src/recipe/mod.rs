//! The recipe: what an ISO is made of, as the user wrote it in YAML (schema version 1).
//!
//! [`load`] reads a recipe file ([`load_str`] takes its text), checks it completely and
//! returns a [`Recipe`] whose values are already validated: references and digests are
//! parsed, every path that lands in the ISO tree is an [`IsoPath`], every template compiles
//! and every `after:` names an existing task without a cycle. Relative host paths are made
//! absolute against the recipe file's folder.
//!
//! Turning a recipe into work is [`crate::plan`]'s job; this module never touches the network
//! and only reads the recipe and the template files it names.

mod check;
mod de;
mod error;
mod node;
mod outputs;
mod parse;
mod paths;
mod raw;
mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{Problem, RecipeError};
pub(crate) use outputs::{HostPaths, glob_literal_prefix};
pub use paths::IsoPath;
pub(crate) use template::out_of_fuel;
pub use template::{
    ImageContext, TEMPLATE_FUEL, TEMPLATE_LIMIT, TemplateContext, read_template, render_str,
    template_env, template_env_in,
};

use crate::reference::{Digest, ImageSource};

/// The schema version this build of isobuild reads.
pub const SCHEMA_VERSION: u64 = 1;

/// A validated recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The recipe file, absolute.
    pub file: PathBuf,
    /// The folder relative paths resolve against (the recipe file's folder), absolute.
    pub base_dir: PathBuf,
    pub name: String,
    pub version: String,
    /// Free variables, after `--set` overrides.
    pub vars: BTreeMap<String, String>,
    /// Seconds since the Unix epoch used for every date in the output, if the recipe sets one.
    pub epoch: Option<i64>,
    /// The recipe's `data:`, templates' `data` (null without one).
    pub data: serde_json::Value,
    pub iso: IsoSettings,
    pub images: Images,
    /// Registry host rewrites (`docker.io` → `127.0.0.1:5000/docker.io`), recipe-wide.
    pub mirrors: BTreeMap<String, String>,
    pub files: Vec<FileEntry>,
    pub tasks: Vec<CommandTask>,
    /// The `packages:` section, when the recipe has one.
    pub packages: Option<Packages>,
}

/// The `packages:` section: RPM repositories, the seeds resolved against them, and which
/// repositories ship in the ISO tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packages {
    /// `$releasever` in base URLs (`8`).
    pub releasever: String,
    /// `$basearch` in base URLs (`x86_64`).
    pub basearch: String,
    /// The arches that ship (default: `basearch` and `noarch`).
    pub arches: Vec<String>,
    /// Module stream overrides: module → stream, or `None` to disable it.
    pub modules: BTreeMap<String, Option<String>>,
    /// Package names or NEVRAs (`kubelet-1.29.8`), or file paths.
    pub seeds: Vec<String>,
    pub repos: Vec<PackageRepo>,
}

/// One entry of `packages.repos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRepo {
    pub id: String,
    /// With `$releasever` and `$basearch` replaced, ending in `/`.
    pub baseurl: String,
    /// URLs of the repository's signing keys.
    pub gpgkeys: Vec<String>,
    /// Whether `repodata/repomd.xml.asc` must be present and signed by a key of `gpgkeys`.
    pub repo_gpgcheck: bool,
    /// Where the repository is written in the ISO tree; `None` for a repository that only
    /// takes part in resolution (the OS repositories).
    pub dest: Option<IsoPath>,
    /// Key files are written as `<dest>/<key_prefix>_<n>` (n from 1, in `gpgkey` order).
    pub key_prefix: String,
    /// Location prefixes (`base/`) whose packages never ship from this repository.
    pub exclude: Vec<String>,
    /// A built repository (`from:`): globs (absolute) of the RPMs recipe tasks write, turned
    /// into a repository in the tree; such a repository has no `baseurl` (it is empty) and
    /// takes no part in resolution. Empty for a downloaded repository.
    pub from: Vec<String>,
    /// A built repository: the package names its RPMs are; seeds with these names are not
    /// resolved, and the repository's task checks that each is there.
    pub builds: Vec<String>,
}

impl PackageRepo {
    /// Whether the RPMs are made by recipe tasks rather than downloaded.
    pub fn is_built(&self) -> bool {
        !self.from.is_empty()
    }
}

/// The `iso:` section.
#[derive(Debug, Clone)]
pub struct IsoSettings {
    /// Where the ISO file goes (absolute host path).
    pub output: PathBuf,
    /// Where the ISO tree is assembled (absolute host path).
    pub root: PathBuf,
    /// The volume id, already rendered.
    pub volume_id: String,
    pub implant_md5: bool,
    /// Where to write the `SHA256SUM` file (absolute host path), if wanted.
    pub sha256sum: Option<PathBuf>,
    /// Write a CycloneDX SBOM beside the ISO (`<iso>.cdx.json`).
    pub sbom: bool,
}

/// The `images:` section.
#[derive(Debug, Clone)]
pub struct Images {
    pub platform: Platform,
    pub format: ImageFormat,
    /// Template for each image's folder in the ISO tree (`images/{{ name }}/{{ tag }}`).
    pub path: String,
    pub registry_config: Option<RegistryConfig>,
    pub list: Vec<ImageEntry>,
}

/// An `os/arch[/variant]` platform, chosen from an image index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const OSES: &[&str] = &["linux", "windows", "darwin", "freebsd"];
        const ARCHES: &[&str] = &[
            "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le",
        ];
        let parts: Vec<&str> = text.split('/').collect();
        let (os, architecture, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] if !variant.is_empty() => (*os, *arch, Some((*variant).to_owned())),
            _ => {
                return Err(format!(
                    "`{text}` is not a platform of the form os/arch[/variant]"
                ));
            }
        };
        if !OSES.contains(&os) {
            return Err(format!(
                "unknown operating system `{os}` (expected one of {})",
                OSES.join(", ")
            ));
        }
        if !ARCHES.contains(&architecture) {
            return Err(format!(
                "unknown architecture `{architecture}` (expected one of {})",
                ARCHES.join(", ")
            ));
        }
        Ok(Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant,
        })
    }
}

/// How image manifests are written in the ISO tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// Docker image manifest v2 schema 2: the MetalK8s contract.
    #[default]
    V2s2,
    /// OCI image manifest, kept as served.
    Oci,
}

/// `images.registry_config`: the nginx rules that serve the image tree as a registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The per-image rules file, inside the ISO tree.
    pub path: IsoPath,
    /// The constants file, inside the ISO tree.
    pub common_path: IsoPath,
    /// Prefix of every repository name (`metalk8s-129.0.0-dev/`), rendered.
    pub name_prefix: String,
    /// The nginx variable or path the image tree is served from, rendered.
    pub server_root: String,
    /// Add a JSON `TAG_INVALID` 404 for unknown tags (off: the generator's exact rules).
    pub unknown_tag_error: bool,
}

/// One entry of `images.list`.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub name: String,
    /// The tag in the ISO tree: the recipe's `tag`, or the reference's tag.
    pub tag: String,
    pub source: ImageSource,
    /// Expected digest of what the reference resolves to (an image index or a platform
    /// manifest), checked after resolution.
    pub digest: Option<Digest>,
    /// Expected image ID: the digest of the chosen platform's config blob, which is what
    /// `docker images` shows and what some projects pin (MetalK8s pins `pause` this way,
    /// because its old build compared the pin with the Docker SDK's `image.id`). Checked
    /// after pulling. Unlike `digest`, it survives a manifest rewrite (v2s2 conversion) and
    /// does not depend on which registry served the image.
    pub image_id: Option<Digest>,
    /// Also write a docker-archive tarball at this ISO path.
    pub archive: Option<IsoPath>,
    /// The image's folder in the ISO tree: `images.path` rendered with this image's name
    /// and tag.
    pub path: IsoPath,
    /// Names of `tasks:` that must finish first.
    pub after: Vec<String>,
    /// Built by buildah instead of read from `source` (which is then where the build goes).
    pub build: Option<ImageBuild>,
    /// Written in the ISO tree; `false` for builder and base images only.
    pub ship: bool,
}

/// `images.list[].build`: an image built by buildah from a Containerfile. Its external
/// `FROM` images must be images of the recipe: isobuild hands them to buildah from its cache.
#[derive(Debug, Clone)]
pub struct ImageBuild {
    /// The context folder, absolute; every file in it is part of the build's key.
    pub context: PathBuf,
    /// Absolute; defaults to `Containerfile`, else `Dockerfile`, in the context.
    pub containerfile: PathBuf,
    /// `--build-arg`s, rendered; one the Containerfile does not declare is an error.
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// Let `RUN` steps reach the network (package installs); off by default.
    pub network: bool,
}

/// The container a `tasks:` entry runs in.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// `name` or `name:tag` of an `images.list` entry.
    pub image: String,
    pub network: bool,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub mounts: Vec<MountSpec>,
}

/// A host folder or file seen in the container; writable only when it holds one of the
/// task's declared outputs.
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// Absolute host path.
    pub src: PathBuf,
    /// Absolute path in the container.
    pub dest: String,
}

/// One entry of `files:`: a file or directory copied (or a file rendered) into the ISO tree.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Absolute host path; a directory is copied recursively.
    pub src: PathBuf,
    pub dest: IsoPath,
    /// Render `src` with minijinja instead of copying it.
    pub template: bool,
    /// Plain-text replacements applied to every copied file (longest key first), for sources
    /// whose placeholders are not minijinja's (`@@VERSION` in MetalK8s' scripts). Values are
    /// already rendered.
    pub replace: BTreeMap<String, String>,
    /// Explicit mode; otherwise 0755 for executables and 0644 for the rest.
    pub mode: Option<u32>,
    /// Names of `tasks:` that must finish first (for sources a task produces).
    pub after: Vec<String>,
    /// Globs (relative to a folder `src`) of what a folder copy leaves out.
    pub exclude: Vec<String>,
    /// Write the text as this data format (it is read as YAML first).
    pub format: Option<DataFormat>,
    /// Text written before the data of a `format` entry (a shebang line), rendered.
    pub header: String,
}

/// A `files:` entry's `format`: how its data is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// Python's `json.dump(data, sort_keys=True, indent=2)`: sorted keys, two-space
    /// indent, `\uXXXX` for non-ASCII, no final newline.
    Json,
    /// PyYAML's `yaml.dump(data, Dumper=SafeDumper, sort_keys=False)`: block style, keys in
    /// document order, strings with line breaks as literal blocks (see
    /// [`crate::python_yaml`]).
    Yaml,
}

impl DataFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Yaml => "yaml",
        }
    }
}

/// The glob an `exclude` pattern means: relative to the copied folder, `*` and `?` stay
/// within one path part, `**` spans parts, and a pattern matches a folder as a whole.
pub fn exclude_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(pattern.trim_end_matches('/'))
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// One entry of `tasks:`: a command with declared inputs and outputs.
#[derive(Debug, Clone)]
pub struct CommandTask {
    pub name: String,
    /// argv; `run[0]` is looked up in `PATH`.
    pub run: Vec<String>,
    /// Glob patterns relative to the recipe folder; their contents make the task's key.
    pub inputs: Vec<String>,
    /// Absolute host paths that must exist after the command succeeds.
    pub outputs: Vec<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub after: Vec<String>,
    /// Run in a container instead of on the host.
    pub container: Option<ContainerSpec>,
}

/// Read and validate the recipe at `path`, with `--set KEY=VALUE` overrides for `vars`.
///
/// Every problem in the file is reported at once in the returned [`RecipeError`].
pub fn load(path: &Path, overrides: &BTreeMap<String, String>) -> Result<Recipe, RecipeError> {
    parse::load(path, overrides, None)
}

/// [`load`], with `epoch` (`SOURCE_DATE_EPOCH`) in place of the recipe's own, so that every
/// string rendered while loading (`--timestamp {{ epoch }}` in a task, say) sees it too.
pub fn load_with_epoch(
    path: &Path,
    overrides: &BTreeMap<String, String>,
    epoch: Option<i64>,
) -> Result<Recipe, RecipeError> {
    parse::load(path, overrides, epoch)
}

/// Validate recipe `text` as if it had been read from `file`, as [`load`] does after reading
/// it: relative paths resolve against `file`'s folder, problems name `file`, and the template
/// files the recipe names are still read from disk.
///
/// For callers that already hold the text (the fuzz targets in `tests/fuzz`, editors); `file`
/// need not exist.
pub fn load_str(
    text: &str,
    file: &Path,
    overrides: &BTreeMap<String, String>,
) -> Result<Recipe, RecipeError> {
    parse::load_str(text, file, overrides, None)
}
#[cfg(test)]
mod tests;
