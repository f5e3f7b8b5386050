//! Resolve the command line and the environment into settings, once. Nothing after this
//! reads `std::env` or sees a clap type: defaults, absolute paths and cross-flag checks
//! all happen here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{BuildArgs, ColorChoice, OutputArgs, RegistryArgs, RunArgs};
use crate::error::Error;
use crate::recipe::Platform;
use crate::report::ProgressMode;
use crate::source::auth::{AuthFiles, GivenCreds, Origin};
use crate::source::registries_conf::RegistriesConf;
use crate::source::tls::TlsSettings;

/// What every command that reads a recipe needs.
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// The recipe file, absolute.
    pub recipe: PathBuf,
    pub jobs: usize,
    pub network_jobs: usize,
    pub cache_dir: PathBuf,
    pub offline: bool,
    pub locked: bool,
    /// Command-line mirrors (`FROM` host → `TO` host and path prefix).
    pub mirrors: BTreeMap<String, String>,
    pub insecure_registries: Vec<String>,
    pub platform: Option<Platform>,
    /// `--set` overrides of recipe `vars`.
    pub overrides: BTreeMap<String, String>,
    pub report: Option<PathBuf>,
    pub timings: Option<PathBuf>,
    pub keep_going: bool,
    pub output: OutputSettings,
    /// `SOURCE_DATE_EPOCH`, which overrides the recipe's `epoch`.
    pub source_date_epoch: Option<i64>,
    pub ignore_pins: bool,
    /// Registry credentials: `--creds`, `ISOBUILD_CREDS`, then the files (docker
    /// `config.json`, containers `auth.json`, or `--authfile`).
    pub auth: AuthFiles,
    /// CA files, client certificates, unverified hosts.
    pub tls: TlsSettings,
    /// containers' registries.conf, read and checked.
    pub registries_conf: RegistriesConf,
    /// `CONTAINER_HOST`, `DOCKER_HOST` and `XDG_RUNTIME_DIR`, for `daemon:` images.
    pub daemon_env: BTreeMap<String, String>,
    /// `ISOBUILD_HTTP_TIMEOUT`: the longest wait for any read from a registry (and for a
    /// connection), instead of the client's defaults.
    pub http_timeout: Option<Duration>,
    /// `ISOBUILD_HTTP_RETRIES`: tries of one registry request, the first included, instead
    /// of the client's default.
    pub http_retries: Option<u32>,
}

/// How much to print.
#[derive(Debug, Clone, Copy)]
pub struct OutputSettings {
    pub progress: ProgressMode,
    /// -1 quiet, 0 normal, 1 `-v`, 2 `-vv`.
    pub verbosity: i8,
    /// Whether stderr gets colour (`--color`, `NO_COLOR`, whether it is a terminal).
    pub color: bool,
    /// Whether bars may be drawn: stderr is a terminal, `TERM` is not `dumb` and
    /// `ISOBUILD_NO_PROGRESS` is unset.
    pub terminal: bool,
}

impl OutputSettings {
    pub fn resolve(args: &OutputArgs, color: ColorChoice) -> Self {
        let verbosity = if args.quiet {
            -1
        } else {
            i8::try_from(args.verbose).unwrap_or(i8::MAX)
        };
        Self {
            progress: args.progress,
            verbosity,
            color: resolve_color(color),
            terminal: stderr_is_terminal() && std::env::var_os("ISOBUILD_NO_PROGRESS").is_none(),
        }
    }
}

/// Whether stderr is an interactive terminal that understands cursor movement.
fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |term| term != "dumb")
}

/// `--color` against the environment: `auto` is colour on a terminal unless `NO_COLOR` is set
/// and not empty (<https://no-color.org>).
pub fn resolve_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            stderr_is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// The log filter: `RUST_LOG` when set, else isobuild's own warnings (`-v`: and its info
/// lines, `-vv`: its debug lines, `-vvv`: every library's debug lines too). Libraries
/// (rustls, hyper, reqwest) stay silent by default: their errors reach the user as isobuild's.
pub fn log_filter(verbosity: i8) -> String {
    if let Ok(filter) = std::env::var("RUST_LOG")
        && !filter.trim().is_empty()
    {
        return filter;
    }
    match verbosity {
        ..=-1 => "isobuild=error",
        0 => "isobuild=warn",
        1 => "isobuild=info",
        2 => "isobuild=debug",
        _ => "debug",
    }
    .to_owned()
}

impl BuildSettings {
    /// `run` is `None` for `lock`, which runs no task.
    pub fn resolve(
        args: &BuildArgs,
        run: Option<&RunArgs>,
        color: ColorChoice,
    ) -> Result<Self, Error> {
        let cwd = current_dir()?;
        let jobs = match run.and_then(|run| run.jobs) {
            Some(0) => return Err(Error::Usage("`--jobs` must be at least 1".into())),
            Some(jobs) => jobs,
            None => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        };
        let network_jobs = run.map_or(32, |run| run.network_jobs);
        if network_jobs == 0 {
            return Err(Error::Usage("`--network-jobs` must be at least 1".into()));
        }
        let mut mirrors = BTreeMap::new();
        for mirror in &args.registry.mirror {
            let (from, to) = split_pair(mirror, "--mirror", "FROM=TO")?;
            mirrors.insert(from, to);
        }
        let mut overrides = BTreeMap::new();
        for set in &args.set {
            let (key, value) = split_pair(set, "--set", "KEY=VALUE")?;
            overrides.insert(key, value);
        }
        let platform = args
            .platform
            .as_deref()
            .map(str::parse::<Platform>)
            .transpose()
            .map_err(|message| Error::Usage(format!("--platform: {message}")))?;
        let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(text) if !text.is_empty() => {
                let epoch = text.trim().parse::<i64>().map_err(|_| {
                    Error::Usage(format!(
                        "SOURCE_DATE_EPOCH=`{text}` is not a number of seconds"
                    ))
                })?;
                if let Some(problem) = crate::iso::epoch_problem(epoch) {
                    return Err(Error::Usage(format!("SOURCE_DATE_EPOCH: {problem}")));
                }
                Some(epoch)
            }
            _ => None,
        };
        let http_timeout = env_number("ISOBUILD_HTTP_TIMEOUT", "a number of seconds", |text| {
            text.parse::<f64>()
                .ok()
                .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
                .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        })?;
        // `--retry-times N` (retries, as skopeo's) wins over `ISOBUILD_HTTP_RETRIES` (tries).
        let http_retries = match args.retry_times {
            Some(retries) => Some(retries.saturating_add(1)),
            None => env_number(
                "ISOBUILD_HTTP_RETRIES",
                "a number of tries, at least 1",
                |text| text.parse::<u32>().ok().filter(|tries| *tries >= 1),
            )?,
        };
        let registry = RegistrySettings::resolve(&cwd, &args.registry)?;
        Ok(Self {
            recipe: absolute(&cwd, &args.recipe),
            jobs,
            network_jobs,
            cache_dir: resolve_cache_dir(&cwd, args.cache_dir.as_deref())?,
            offline: args.offline,
            locked: run.is_some_and(|run| run.locked),
            mirrors,
            insecure_registries: args.registry.insecure_registry.clone(),
            platform,
            overrides,
            report: run
                .and_then(|run| run.report.as_deref())
                .map(|path| absolute(&cwd, path)),
            timings: run
                .and_then(|run| run.timings.as_deref())
                .map(|path| absolute(&cwd, path)),
            keep_going: run.is_some_and(|run| run.keep_going),
            output: OutputSettings::resolve(&args.output, color),
            source_date_epoch,
            ignore_pins: args.ignore_pins,
            auth: registry.auth,
            tls: registry.tls,
            registries_conf: registry.conf,
            daemon_env: ["CONTAINER_HOST", "DOCKER_HOST", "XDG_RUNTIME_DIR"]
                .into_iter()
                .filter_map(|name| Some((name.to_owned(), std::env::var(name).ok()?)))
                .collect(),
            http_timeout,
            http_retries,
        })
    }
}

/// What [`RegistryArgs`] and the environment say about reaching registries.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub auth: AuthFiles,
    pub tls: TlsSettings,
    pub conf: RegistriesConf,
}

impl RegistrySettings {
    /// Flags first, then `ISOBUILD_CREDS`, `ISOBUILD_CERTS_D` (`:`-separated certs.d roots,
    /// instead of the system's) and the containers tools' own variables.
    pub fn resolve(cwd: &Path, args: &RegistryArgs) -> Result<Self, Error> {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let mut auth = AuthFiles::from_env(var);
        if let Some(file) = &args.authfile {
            auth = auth.with_authfile(absolute(cwd, file));
        }
        for item in &args.creds {
            auth.given
                .push(GivenCreds::parse(item, Origin::Flag).map_err(Error::Usage)?);
        }
        if let Ok(text) = std::env::var("ISOBUILD_CREDS") {
            for item in text.split(',').filter(|item| !item.trim().is_empty()) {
                auth.given
                    .push(GivenCreds::parse(item.trim(), Origin::Env).map_err(Error::Usage)?);
            }
        }
        let home = var("HOME").map(PathBuf::from);
        let certs_d = match var("ISOBUILD_CERTS_D") {
            Some(roots) => std::env::split_paths(&roots)
                .map(|root| absolute(cwd, &root))
                .collect(),
            None => TlsSettings::default_certs_d(home.as_deref()),
        };
        let cert_dir = args.cert_dir.as_deref().map(|dir| absolute(cwd, dir));
        if let Some(dir) = &cert_dir
            && !dir.is_dir()
        {
            return Err(Error::Usage(format!(
                "--cert-dir `{}` is not a folder",
                dir.display()
            )));
        }
        let tls = TlsSettings {
            certs_d,
            cert_dir,
            skip_verify: args.insecure_skip_tls_verify.clone(),
        };
        let files = match &args.registries_conf {
            Some(file) => vec![absolute(cwd, file)],
            None => RegistriesConf::default_files(var, Path::new("/etc/containers")),
        };
        let conf = RegistriesConf::load(&files)
            .map_err(|error| Error::Usage(crate::engine::render_chain(&error)))?;
        Ok(Self { auth, tls, conf })
    }
}

/// An environment variable parsed by `parse`, `None` when unset or empty; a value `parse`
/// refuses is a usage error saying what was expected.
fn env_number<T>(
    name: &str,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, Error> {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => parse(text.trim())
            .map(Some)
            .ok_or_else(|| Error::Usage(format!("{name}=`{text}` is not {expected}"))),
        _ => Ok(None),
    }
}

/// `--set` values for commands that only read the recipe.
pub fn resolve_overrides(set: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut overrides = BTreeMap::new();
    for item in set {
        let (key, value) = split_pair(item, "--set", "KEY=VALUE")?;
        overrides.insert(key, value);
    }
    Ok(overrides)
}

/// The cache folder: the flag, else `$XDG_CACHE_HOME/isobuild`, else `~/.cache/isobuild`.
pub fn resolve_cache_dir(cwd: &Path, flag: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(dir) = flag {
        return Ok(absolute(cwd, dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(absolute(cwd, Path::new(&xdg)).join("isobuild"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache/isobuild")),
        None => Err(Error::Usage(
            "cannot find a cache folder: set `--cache-dir`, XDG_CACHE_HOME or HOME".into(),
        )),
    }
}

pub fn current_dir() -> Result<PathBuf, Error> {
    std::env::current_dir().map_err(|source| Error::Io {
        path: PathBuf::from("."),
        source,
    })
}

fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        cwd.join(path)
    }
}

fn split_pair(text: &str, flag: &str, shape: &str) -> Result<(String, String), Error> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(Error::Usage(format!("{flag} `{text}`: expected {shape}"))),
    }
}
