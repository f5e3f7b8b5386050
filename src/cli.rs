//! The command line as the user typed it (clap derive types only). [`crate::settings`] turns
//! it into resolved settings; nothing else sees these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::report::ProgressMode;

/// Build a bootstrap ISO from a YAML recipe, without a container daemon.
#[derive(Debug, Parser)]
#[command(name = "isobuild", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the ISO described by a recipe.
    Build {
        #[command(flatten)]
        build: BuildArgs,
        /// Write the ISO here instead of the recipe's `iso.output`.
        #[arg(short, long, value_name = "ISO")]
        output: Option<PathBuf>,
    },
    /// Fill the cache with every image of a recipe; make no ISO.
    Fetch {
        #[command(flatten)]
        build: BuildArgs,
    },
    /// Resolve every tag to a digest and write RECIPE.lock beside the recipe.
    Lock {
        #[command(flatten)]
        build: BuildArgs,
    },
    /// Write the ISO tree (files, templates, images, registry rules) into DIR; make no ISO.
    Layout {
        #[command(flatten)]
        build: BuildArgs,
        /// The folder to write the tree into.
        dir: PathBuf,
    },
    /// Check every manifest and blob of an ISO or ISO tree against its digest.
    Verify {
        /// An ISO file or a folder written by `isobuild layout`.
        target: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List what an ISO, an ISO tree or a lock file holds: images, packages, files.
    Inspect {
        /// An ISO file, a folder (an ISO tree) or a lock file.
        target: PathBuf,
        #[arg(long, value_enum, default_value_t = InspectFormat::Text)]
        format: InspectFormat,
        /// Add each image's upstream reference and digests from this lock file.
        #[arg(long, value_name = "FILE.lock")]
        lock: Option<PathBuf>,
        /// The cache folder, whose digest memo spares hashing an ISO seen before
        /// [default: $XDG_CACHE_HOME/isobuild].
        #[arg(long, value_name = "DIR", env = "ISOBUILD_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Compare two ISOs, trees or lock files: images, packages and files added, removed,
    /// changed.
    Diff {
        /// The old ISO, tree or lock file.
        old: PathBuf,
        /// The new ISO, tree or lock file.
        new: PathBuf,
        #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
        format: DiffFormat,
        /// Exit with 1 when they differ (as `git diff --exit-code`); without it, 0 either way.
        #[arg(long)]
        exit_code: bool,
    },
    /// Print the task graph of a recipe.
    Graph {
        /// The recipe file.
        recipe: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        /// Override a recipe variable (`--set metalk8s_src=../metalk8s`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Inspect or clean the image cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
        #[arg(long, global = true, value_name = "DIR", env = "ISOBUILD_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CacheCommand {
    /// List cached images and blobs.
    Ls,
    /// Remove blobs no recorded tag or recipe's packages refer to, partial downloads, stale
    /// records and image builds.
    Gc,
    /// Print the cache folder.
    Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// JSON: nodes and edges.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    /// For people.
    Text,
    /// The inventory, versioned (see the README).
    Json,
    /// A CycloneDX 1.6 SBOM.
    Cyclonedx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// For people, one change a line.
    Text,
    /// Tables for release notes.
    Markdown,
    /// The diff, versioned (see the README).
    Json,
}

/// Flags shared by `build`, `fetch`, `lock` and `layout`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The recipe file.
    pub recipe: PathBuf,
    /// Run at most N tasks at once [default: number of CPUs].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// At most N network transfers at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub network_jobs: usize,
    /// The cache folder [default: $XDG_CACHE_HOME/isobuild].
    #[arg(long, value_name = "DIR", env = "ISOBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Never open a network connection; use the cache only.
    #[arg(long)]
    pub offline: bool,
    /// Fail if the lock file is missing or does not match the recipe.
    #[arg(long)]
    pub locked: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Platform to pick from image indexes [default: the recipe's, or linux/amd64].
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Override a recipe variable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Do not fail when an image does not match its `digest:` or `image_id:` pin; warn about
    /// each one instead (for test mirrors whose stand-in images cannot match upstream pins).
    #[arg(long)]
    pub ignore_pins: bool,
    /// Write a JSON report of every task.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Write an HTML timeline of the tasks.
    #[arg(long, value_name = "FILE.html")]
    pub timings: Option<PathBuf>,
    /// After a failure, let independent tasks finish.
    #[arg(long)]
    pub keep_going: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How registries are reached: mirrors, TLS, credentials, registries.conf.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Rewrite a registry host: `docker.io=127.0.0.1:5000/docker.io` (wins over
    /// registries.conf).
    #[arg(long, value_name = "FROM=TO")]
    pub mirror: Vec<String>,
    /// Talk plain HTTP to this registry host.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Talk HTTPS to this registry host without checking its certificate.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_skip_tls_verify: Vec<String>,
    /// Use the CA files (*.crt) and client certificate (client.cert, client.key) in DIR for
    /// every registry, instead of /etc/containers/certs.d/HOST/.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Read registry credentials from this containers auth.json only.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Log in as USER (with PASS) to HOST, or to every registry without `HOST=`.
    #[arg(long, value_name = "[HOST=]USER[:PASS]")]
    pub creds: Vec<String>,
    /// Read this registries.conf only (default: CONTAINERS_REGISTRIES_CONF, else
    /// /etc/containers/registries.conf, the user's and the registries.conf.d drop-ins).
    #[arg(long, value_name = "FILE")]
    pub registries_conf: Option<PathBuf>,
}

/// How much to print.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, global = true)]
    pub progress: ProgressMode,
    /// Say more: why each task ran (-v), debug logs (-vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}
