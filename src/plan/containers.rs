//! Container tasks (`tasks:` with `image:`) and image builds (`images.list[].build`).
//!
//! Both run buildah through [`crate::container::Session`], a private storage under the cache
//! that lives for one task. The image a task starts from, and every external `FROM` of a
//! build, is an image of the recipe: a registry image is handed over as a `dir:` folder
//! written from the cache (its manifest bytes as pulled, so its digest is unchanged), an
//! archive as itself, a built image as the `oci-archive` its build wrote. buildah never
//! pulls: builds run with `--pull-never` and each `FROM` rewritten to the local copy.
//!
//! Keys: a container task's is a command task's (argv, env, inputs, declared outputs) plus
//! the image's digest, the mounts, the working dir, the user and the network switch; a
//! build's is the Containerfile, every file of the context, the arguments, the target, the
//! epoch and the manifest digest of every base.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::container::containerfile::{self, Parsed};
use crate::container::{BuildSpec, Mount, RunSpec, Session};
use crate::engine::{Fingerprint, JobOutput};
use crate::recipe::{CommandTask, ContainerSpec, ImageBuild, ImageEntry, Platform};
use crate::reference::{Digest, ImageRef, ImageSource};
use crate::source::ResolvedImage;

use super::command::{CommandJob, expand_inputs};
use super::images::ImageServices;
use super::{PlanError, TaskError, blocking};

/// Build arguments buildah knows without an `ARG` line.
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// An image a container starts from or a build uses as a base, as the plan knows it.
#[derive(Clone)]
pub enum ImageInput {
    /// A registry image whose blobs are in the cache once its blob tasks ran.
    Registry(Box<ResolvedImage>),
    /// An archive or OCI layout, read by buildah directly.
    Local(ImageSource),
    /// The `oci-archive` an image build writes.
    Built(PathBuf),
}

impl ImageInput {
    /// The image's identity for a key.
    async fn identity(&self, base_dir: &Path, platform: &Platform) -> Result<String, TaskError> {
        match self {
            Self::Registry(image) => Ok(image.manifest_digest.to_string()),
            Self::Local(source) => {
                let (source, base_dir, platform) =
                    (source.clone(), base_dir.to_owned(), platform.clone());
                blocking(move || {
                    crate::source::local::archive_source_id(&source, &base_dir, &platform)
                        .map_err(TaskError::from)
                })
                .await
            }
            Self::Built(path) => {
                let path = path.clone();
                blocking(move || Ok(crate::fs::sha256_file(&path)?)).await
            }
        }
    }

    /// Load the image into `session`; returns what buildah names it by (its ID).
    async fn load(
        &self,
        session: &Session,
        services: &Arc<ImageServices>,
    ) -> Result<String, TaskError> {
        let source = match self {
            Self::Registry(image) => {
                let dest = session
                    .scratch()
                    .join("images")
                    .join(image.manifest_digest.hex());
                let blobs: Vec<Digest> = image.blobs().map(|blob| blob.digest.clone()).collect();
                let (manifest, folder, services) =
                    (image.manifest.clone(), dest.clone(), Arc::clone(services));
                blocking(move || {
                    services
                        .placer
                        .write_image_dir(&folder, &manifest, &blobs)
                        .map_err(TaskError::from)
                })
                .await?;
                format!("dir:{}", dest.display())
            }
            Self::Local(source) => source.to_string(),
            Self::Built(path) => format!("oci-archive:{}", path.display()),
        };
        Ok(session.pull(&source).await?)
    }
}

/// A `tasks:` entry with `image:`.
pub struct ContainerJob {
    command: CommandJob,
    spec: CommandTask,
    container: ContainerSpec,
    image: ImageInput,
    image_label: String,
    base_dir: PathBuf,
    epoch: Option<i64>,
    platform: Platform,
    services: Arc<ImageServices>,
    /// What the recipe's other tasks declare: they may write beside this one, at the same
    /// time, in a folder both mount.
    others: Vec<PathBuf>,
}

impl ContainerJob {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        spec: CommandTask,
        container: ContainerSpec,
        image: ImageInput,
        image_label: String,
        base_dir: PathBuf,
        epoch: Option<i64>,
        platform: Platform,
        services: Arc<ImageServices>,
    ) -> Self {
        Self {
            command: CommandJob::new(spec.clone(), base_dir.clone(), epoch),
            spec,
            container,
            image,
            image_label,
            base_dir,
            epoch,
            platform,
            services,
            others: Vec::new(),
        }
    }

    /// Declare what the other tasks of the recipe write.
    pub(super) fn with_others(mut self, others: Vec<PathBuf>) -> Self {
        self.others = others;
        self
    }

    pub(super) fn name(&self) -> String {
        format!("task {}", self.spec.name)
    }

    pub(super) async fn fingerprint(&self) -> Result<Fingerprint, TaskError> {
        let mut fingerprint = self.command.fingerprint().await?;
        fingerprint
            .add("image", self.image_label.clone())
            .add(
                "image digest",
                self.image.identity(&self.base_dir, &self.platform).await?,
            )
            .add("network", self.container.network.to_string())
            .add(
                "workdir",
                self.container.workdir.clone().unwrap_or_default(),
            )
            .add("user", self.container.user.clone().unwrap_or_default());
        for mount in &self.container.mounts {
            fingerprint.add(format!("mount {}", mount.dest), self.shown(&mount.src));
        }
        Ok(fingerprint)
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        self.command.missing_output()
    }

    /// A mount is writable when it holds a declared output or lies inside one.
    fn writable(&self, src: &Path) -> bool {
        self.spec
            .outputs
            .iter()
            .any(|output| output.starts_with(src) || src.starts_with(output))
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let session = Session::new(self.services.store.root())?;
        let image = self.image.load(&session, &self.services).await?;
        let mut mounts = Vec::new();
        let mut before = BTreeMap::new();
        for mount in &self.container.mounts {
            let writable = self.writable(&mount.src);
            if writable {
                fs_err::create_dir_all(&mount.src)?;
                before.extend(snapshot(&mount.src)?);
            } else if !mount.src.exists() {
                return Err(TaskError::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("mount source `{}` does not exist", self.shown(&mount.src)),
                )));
            }
            mounts.push(Mount {
                host: mount.src.clone(),
                container: mount.dest.clone(),
                writable,
            });
        }
        let mut env = self.spec.env.clone();
        if let Some(epoch) = self.epoch {
            env.insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
        }
        let run = RunSpec {
            argv: self.spec.run.clone(),
            mounts,
            workdir: self.container.workdir.clone(),
            user: self.container.user.clone(),
            env,
            network: self.container.network,
        };
        session
            .run(&image, &run)
            .await
            .map_err(|error| TaskError::Container {
                image: self.image_label.clone(),
                source: error,
            })?;
        // What the command wrote where nothing was declared is an error, and is removed:
        // a later step must not come to depend on an undeclared file.
        let mut undeclared = Vec::new();
        for mount in self
            .container
            .mounts
            .iter()
            .filter(|m| self.writable(&m.src))
        {
            for (path, stamp) in snapshot(&mount.src)? {
                let declared = self
                    .spec
                    .outputs
                    .iter()
                    .chain(&self.others)
                    .any(|o| path.starts_with(o));
                if !declared && before.get(&path) != Some(&stamp) {
                    let _ = fs_err::remove_file(&path);
                    undeclared.push(self.shown(&path));
                }
            }
        }
        if !undeclared.is_empty() {
            return Err(TaskError::UndeclaredOutputs {
                task: self.spec.name.clone(),
                paths: undeclared.join(", "),
            });
        }
        let mut bytes = 0;
        for path in &self.spec.outputs {
            match fs_err::metadata(path) {
                Ok(metadata) => bytes += metadata.len(),
                Err(_) => return Err(TaskError::OutputMissing { path: path.clone() }),
            }
        }
        Ok(JobOutput { bytes })
    }

    fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.base_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Every file under `root` with its size and modification time.
fn snapshot(root: &Path) -> Result<BTreeMap<PathBuf, (u64, i64, i64)>, TaskError> {
    use std::os::unix::fs::MetadataExt;
    let mut files = BTreeMap::new();
    if root.is_file() {
        let metadata = fs_err::metadata(root)?;
        files.insert(
            root.to_owned(),
            (metadata.len(), metadata.mtime(), metadata.mtime_nsec()),
        );
        return Ok(files);
    }
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.map_err(|e| TaskError::Io(e.into()))?;
        if entry.file_type().is_dir() {
            continue;
        }
        let metadata = entry.metadata().map_err(|e| TaskError::Io(e.into()))?;
        files.insert(
            entry.path().to_owned(),
            (metadata.len(), metadata.mtime(), metadata.mtime_nsec()),
        );
    }
    Ok(files)
}

/// One external `FROM` of a build and the recipe image that provides it.
#[derive(Clone)]
struct Base {
    /// `None` when the image could not be resolved (a plan for `graph` only).
    image: Option<ImageInput>,
    /// The name buildah knows it by in the session.
    local: String,
    /// `FROM` as written, for the key.
    written: String,
}

/// An image entry with `build:`.
pub struct BuildJob {
    label: String,
    build: ImageBuild,
    parsed: Parsed,
    bases: Vec<(usize, Base)>,
    output: PathBuf,
    epoch: i64,
    platform: Platform,
    services: Arc<ImageServices>,
    base_dir: PathBuf,
    /// What the recipe's tasks write: products, not sources, even inside the context (the
    /// docs step writes in the checkout the doc builder is built from).
    products: Vec<PathBuf>,
}

/// Where the build of `entry` goes in the cache: one folder per recipe file.
pub fn build_output(cache_root: &Path, recipe_file: &Path, entry: &ImageEntry) -> PathBuf {
    let key = Digest::of(recipe_file.as_os_str().as_encoded_bytes());
    cache_root
        .join("builds")
        .join(&key.hex()[..16])
        .join(format!("{}_{}.oci.tar", entry.name, entry.tag))
}

impl BuildJob {
    /// Read the Containerfile and match every external `FROM` with an image of the recipe.
    ///
    /// `images` holds, for each image of the recipe, what a build can use of it (`None`
    /// for daemon images and unresolved ones).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        entry: &ImageEntry,
        build: &ImageBuild,
        images: &[(ImageEntry, Option<ImageInput>)],
        output: PathBuf,
        epoch: i64,
        platform: Platform,
        services: Arc<ImageServices>,
        base_dir: PathBuf,
    ) -> Result<(Self, Vec<usize>), PlanError> {
        let label = format!("{}:{}", entry.name, entry.tag);
        let file = build.containerfile.display().to_string();
        let fail = |message: String| PlanError::Build {
            image: label.clone(),
            message,
        };
        let text = fs_err::read_to_string(&build.containerfile)
            .map_err(|error| fail(error.to_string()))?;
        let parsed = containerfile::parse(&text, &build.args)
            .map_err(|error| fail(format!("{file}:{error}")))?;
        for name in build.args.keys() {
            if !parsed.declared_args.contains(name) && !PREDEFINED_ARGS.contains(&name.as_str()) {
                let declared = if parsed.declared_args.is_empty() {
                    "it declares none".to_owned()
                } else {
                    let set: BTreeSet<&String> = parsed.declared_args.iter().collect();
                    format!(
                        "it declares {}",
                        set.into_iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(fail(format!(
                    "build argument `{name}` is not declared by an `ARG` of `{file}` ({declared})"
                )));
            }
        }
        if let Some(target) = &build.target
            && !parsed
                .froms
                .iter()
                .any(|from| from.stage.as_deref() == Some(&target.to_ascii_lowercase()))
        {
            return Err(fail(format!("`{file}` has no stage `{target}`")));
        }
        let mut bases = Vec::new();
        let mut used = Vec::new();
        for (index, from) in parsed.froms.iter().enumerate() {
            if from.internal {
                continue;
            }
            let wanted: ImageRef = from
                .image
                .parse()
                .map_err(|error| fail(format!("{file}:{}: {error}", from.line)))?;
            let found = images
                .iter()
                .enumerate()
                .find(|(_, (candidate, input))| provides(candidate, input.as_ref(), &wanted));
            let Some((position, (candidate, input))) = found else {
                return Err(fail(format!(
                    "{file}:{}: `FROM {}` is not an image of the recipe; add it to `images.list` (with `ship: false` if the ISO does not need it) so that isobuild pins and caches it",
                    from.line, from.image
                )));
            };
            let local = format!(
                "localhost/isobuild-base/{}:{}",
                candidate.name,
                Digest::of(format!("{}:{}", candidate.name, candidate.tag).as_bytes()).hex()
            );
            used.push(position);
            bases.push((
                index,
                Base {
                    image: input.clone(),
                    local,
                    written: from.image.clone(),
                },
            ));
        }
        Ok((
            Self {
                label,
                build: build.clone(),
                parsed,
                bases,
                output,
                epoch,
                platform,
                services,
                base_dir,
                products: Vec::new(),
            },
            used,
        ))
    }

    /// Declare what the recipe's tasks write.
    pub(super) fn with_products(mut self, products: Vec<PathBuf>) -> Self {
        self.products = products;
        self
    }

    pub(super) fn name(&self) -> String {
        format!("build {}", self.label)
    }

    pub(super) async fn fingerprint(&self) -> Result<Fingerprint, TaskError> {
        let mut fingerprint = Fingerprint::new();
        fingerprint
            .add(
                "containerfile",
                crate::fs::sha256_file(&self.build.containerfile)?,
            )
            .add("target", self.build.target.clone().unwrap_or_default())
            .add("network", self.build.network.to_string())
            .add("epoch", self.epoch.to_string())
            .add("platform", self.platform.to_string())
            .add("output", self.output.display().to_string());
        for (key, value) in &self.build.args {
            fingerprint.add(format!("arg {key}"), value.clone());
        }
        for (index, base) in &self.bases {
            fingerprint.add(
                format!("base {index} {}", base.written),
                resolved(base)?
                    .identity(&self.base_dir, &self.platform)
                    .await?,
            );
        }
        let context = self.build.context.clone();
        let files = blocking(move || {
            expand_inputs(&[String::from(".")], &context).or_else(|error| match error {
                TaskError::NoInputs { .. } => Ok(Vec::new()),
                other => Err(other),
            })
        })
        .await?;
        for file in files {
            if self
                .products
                .iter()
                .any(|product| file.starts_with(product))
            {
                continue;
            }
            let relative = file
                .strip_prefix(&self.build.context)
                .unwrap_or(&file)
                .display()
                .to_string();
            fingerprint.add(
                format!("context {relative}"),
                crate::fs::sha256_file(&file)?,
            );
        }
        Ok(fingerprint)
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        (!self.output.is_file()).then(|| self.output.display().to_string())
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let session = Session::new(self.services.store.root())?;
        let mut locals = BTreeMap::new();
        for (index, base) in &self.bases {
            let id = resolved(base)?.load(&session, &self.services).await?;
            session.tag(&id, &base.local).await?;
            locals.insert(*index, base.local.clone());
        }
        let containerfile = session.scratch().join("Containerfile");
        let text = self.parsed.rewrite(|from| {
            let index = self
                .parsed
                .froms
                .iter()
                .position(|f| f == from)
                .unwrap_or_default();
            locals.get(&index).cloned().unwrap_or_default()
        });
        crate::fs::write_atomic(&containerfile, text.as_bytes(), 0o644)?;
        let parent = self.output.parent().unwrap_or(Path::new("."));
        crate::fs::create_dirs_0755(parent)?;
        let temp = crate::fs::temp_beside(&self.output)?;
        let spec = BuildSpec {
            context: self.build.context.clone(),
            containerfile,
            args: self.build.args.clone(),
            target: self.build.target.clone(),
            epoch: self.epoch,
            network: self.build.network,
            output: temp.path().to_owned(),
        };
        let output = session
            .build(&spec)
            .await
            .map_err(|error| TaskError::Container {
                image: self.label.clone(),
                source: error,
            })?;
        // buildah only warns about an argument no `ARG` consumed; the recipe must not carry
        // one silently (its value would be ignored).
        if let Some(line) = format!("{}\n{}", output.stdout, output.stderr)
            .lines()
            .find(|line| line.contains("build args were not consumed"))
        {
            return Err(TaskError::UnusedBuildArgs {
                image: self.label.clone(),
                warning: line.trim().to_owned(),
            });
        }
        let bytes = fs_err::metadata(temp.path())?.len();
        crate::fs::persist(temp, &self.output, 0o644)?;
        Ok(JobOutput { bytes })
    }
}

/// The image of a base, or why there is none.
fn resolved(base: &Base) -> Result<&ImageInput, TaskError> {
    base.image
        .as_ref()
        .ok_or_else(|| TaskError::Unresolved(base.written.clone()))
}

/// Whether the recipe image `candidate` is what `FROM wanted` asks for.
fn provides(candidate: &ImageEntry, input: Option<&ImageInput>, wanted: &ImageRef) -> bool {
    let ImageSource::Registry(reference) = &candidate.source else {
        return false;
    };
    if reference.registry != wanted.registry || reference.repository != wanted.repository {
        return false;
    }
    match (&wanted.digest, input) {
        // The image served, or the recipe's pin for it (checked at resolution, or turned into
        // a warning by `--ignore-pins`: then the user chose to build on the stand-in).
        (Some(digest), Some(ImageInput::Registry(image))) => {
            *digest == image.manifest_digest
                || image.index_digest.as_ref() == Some(digest)
                || candidate.digest.as_ref() == Some(digest)
        }
        // Unresolved (`graph` without network): the recipe's pins are all there is.
        (Some(digest), _) => {
            reference.digest.as_ref() == Some(digest) || candidate.digest.as_ref() == Some(digest)
        }
        (None, _) => wanted.tag_or_latest() == reference.tag_or_latest(),
    }
}
