//! The command line as the user typed it (clap derive types only). [`crate::settings`] turns
//! it into resolved settings; nothing else sees these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::report::ProgressMode;

/// `0.1.0 (3f2a9c1d0b7e 2026-12-01)`: the version, and the commit and its date when built from
/// a git checkout (see `build.rs`).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("ISOBUILD_COMMIT"),
    " ",
    env!("ISOBUILD_COMMIT_DATE"),
    ")"
);

/// Shown after every `--help`: what the environment changes and what the exit code says (a
/// macro, so that `concat!` can append it to each command's examples).
macro_rules! environment_and_exit_codes {
    () => {
        "\
Environment:
  ISOBUILD_CACHE_DIR     the cache folder (as --cache-dir) [default: $XDG_CACHE_HOME/isobuild]
  ISOBUILD_NO_PROGRESS   set: plain lines instead of bars, even on a terminal
  ISOBUILD_HTTP_TIMEOUT  seconds to wait for any read from a registry or repository
  ISOBUILD_HTTP_RETRIES  tries of one registry request, the first included (--retry-times N is N+1)
  SOURCE_DATE_EPOCH      the time stamp of every file in the ISO (overrides the recipe's `epoch`)
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY
                         proxies for registries and package repositories
  SSL_CERT_FILE          a PEM file of CA certificates to trust (see the README)
  NO_COLOR               set and not empty: no colour (as --color never)
  RUST_LOG               log filter, replacing the one -v/-vv choose (`isobuild=debug`)

Exit codes:
  0    success
  1    the build failed: network, digest mismatch, a task failed; `diff --exit-code` found a difference
  2    the recipe or the command line is invalid
  130  interrupted (Ctrl-C)
  143  stopped by SIGTERM"
    };
}

/// `-h` shows a command's examples; `--help` adds the environment and the exit codes.
macro_rules! examples {
    ($name:ident, $text:literal) => {
        const $name: (&str, &str) = (
            concat!("Examples:\n", $text),
            concat!("Examples:\n", $text, "\n\n", environment_and_exit_codes!()),
        );
    };
}

examples!(
    BUILD_EXAMPLES,
    "  isobuild build recipes/minimal.yaml
  isobuild build recipes/metalk8s.yaml --set metalk8s_src=../metalk8s -o metalk8s.iso
  isobuild build recipe.yaml --offline --cache-dir /srv/isobuild-cache
  isobuild build recipe.yaml --progress plain --report build.json --timings build.html"
);

examples!(
    FETCH_EXAMPLES,
    "  isobuild fetch recipe.yaml
  isobuild fetch recipe.yaml --cache-dir /srv/isobuild-cache   # then build with --offline"
);

examples!(
    LOCK_EXAMPLES,
    "  isobuild lock recipe.yaml            # writes recipe.yaml.lock
  isobuild build recipe.yaml --locked  # fails if the lock file is missing or stale"
);

examples!(
    LAYOUT_EXAMPLES,
    "  isobuild layout recipe.yaml tree/
  isobuild verify tree/"
);

examples!(
    VERIFY_EXAMPLES,
    "  isobuild verify metalk8s.iso
  isobuild verify tree/"
);

examples!(
    INSPECT_EXAMPLES,
    "  isobuild inspect metalk8s.iso
  isobuild inspect metalk8s.iso --format cyclonedx > sbom.json
  isobuild inspect recipe.yaml.lock --format json"
);

examples!(
    DIFF_EXAMPLES,
    "  isobuild diff old.iso new.iso
  isobuild diff old.iso new.iso --format markdown >> release-notes.md
  isobuild diff a.lock b.lock --exit-code"
);

examples!(
    GRAPH_EXAMPLES,
    "  isobuild graph recipe.yaml | dot -Tsvg > graph.svg
  isobuild graph recipe.yaml --format json"
);

examples!(
    CACHE_EXAMPLES,
    "  isobuild cache path
  isobuild cache ls --cache-dir /srv/isobuild-cache
  isobuild cache gc"
);

examples!(
    COMPLETIONS_EXAMPLES,
    "  isobuild completions bash > ~/.local/share/bash-completion/completions/isobuild
  isobuild completions zsh > ~/.zfunc/_isobuild
  isobuild completions fish > ~/.config/fish/completions/isobuild.fish"
);

/// Build a bootstrap ISO from a YAML recipe, without a container daemon.
#[derive(Debug, Parser)]
#[command(
    name = "isobuild",
    version = LONG_VERSION,
    about,
    max_term_width = 100,
    after_help = environment_and_exit_codes!()
)]
pub struct Cli {
    /// When to colour the output (`NO_COLOR` set means `never` for `auto`).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    /// Colour, even in a pipe.
    Always,
    /// No colour.
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the ISO described by a recipe.
    #[command(after_help = BUILD_EXAMPLES.0, after_long_help = BUILD_EXAMPLES.1)]
    Build {
        #[command(flatten)]
        build: BuildArgs,
        #[command(flatten)]
        run: RunArgs,
        /// Write the ISO here instead of the recipe's `iso.output`.
        #[arg(short, long, value_name = "ISO")]
        output: Option<PathBuf>,
    },
    /// Fill the cache with every image of a recipe; make no ISO.
    #[command(after_help = FETCH_EXAMPLES.0, after_long_help = FETCH_EXAMPLES.1)]
    Fetch {
        #[command(flatten)]
        build: BuildArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Resolve every tag to a digest and write RECIPE.lock beside the recipe.
    #[command(after_help = LOCK_EXAMPLES.0, after_long_help = LOCK_EXAMPLES.1)]
    Lock {
        #[command(flatten)]
        build: BuildArgs,
    },
    /// Write the ISO tree (files, templates, images, registry rules) into DIR; make no ISO.
    #[command(after_help = LAYOUT_EXAMPLES.0, after_long_help = LAYOUT_EXAMPLES.1)]
    Layout {
        #[command(flatten)]
        build: BuildArgs,
        #[command(flatten)]
        run: RunArgs,
        /// The folder to write the tree into.
        dir: PathBuf,
    },
    /// Check every manifest and blob of an ISO or ISO tree against its digest.
    #[command(after_help = VERIFY_EXAMPLES.0, after_long_help = VERIFY_EXAMPLES.1)]
    Verify {
        /// An ISO file or a folder written by `isobuild layout`.
        target: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List what an ISO, an ISO tree or a lock file holds: images, packages, files.
    #[command(after_help = INSPECT_EXAMPLES.0, after_long_help = INSPECT_EXAMPLES.1)]
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
    #[command(after_help = DIFF_EXAMPLES.0, after_long_help = DIFF_EXAMPLES.1)]
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
    #[command(after_help = GRAPH_EXAMPLES.0, after_long_help = GRAPH_EXAMPLES.1)]
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
    #[command(after_help = CACHE_EXAMPLES.0, after_long_help = CACHE_EXAMPLES.1)]
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
        #[arg(long, global = true, value_name = "DIR", env = "ISOBUILD_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Print a shell completion script to stdout.
    #[command(after_help = COMPLETIONS_EXAMPLES.0, after_long_help = COMPLETIONS_EXAMPLES.1)]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `isobuild man > ~/.local/share/man/man1/isobuild.1`.
    Man,
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

/// Flags shared by `build`, `fetch`, `lock` and `layout`: the recipe and where its images
/// come from.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The recipe file.
    pub recipe: PathBuf,
    /// The cache folder [default: $XDG_CACHE_HOME/isobuild].
    #[arg(long, value_name = "DIR", env = "ISOBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Never open a network connection; use the cache only.
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Retry a failed registry request up to N times [default: 4; ISOBUILD_HTTP_RETRIES counts
    /// tries, N+1].
    #[arg(long, value_name = "N")]
    pub retry_times: Option<u32>,
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
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Flags of the commands that run tasks (`build`, `fetch`, `layout`; not `lock`, which only
/// resolves).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run at most N tasks at once [default: number of CPUs].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// At most N network transfers at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub network_jobs: usize,
    /// Fail if the lock file is missing or does not match the recipe.
    #[arg(long)]
    pub locked: bool,
    /// Write a JSON report of the run (its schema: src/report/report.schema.json).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Write an HTML timeline of the tasks.
    #[arg(long, value_name = "FILE.html")]
    pub timings: Option<PathBuf>,
    /// After a failure, let independent tasks finish.
    #[arg(long)]
    pub keep_going: bool,
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
