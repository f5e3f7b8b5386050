//! `cargo xtask bench [--quick] [--out DIR] [--runs N] [--profile P] [--keep] [--no-install]
//! [--serve]` (issue 8): isobuild against MetalK8s' old way of pulling images, on the same
//! machine, from the same local registry, in one run.
//!
//! It generates the MetalK8s-shaped set of [`set`] (`--quick`: eight smaller images),
//! pushes it to a docker-registry on loopback whose storage sits in `DIR` (default
//! `target/bench`, `target/bench-quick` with `--quick`), then measures, alternating the
//! contenders round after round:
//!
//! 1. isobuild, cold: `fetch` then `layout` into an empty cache and tree;
//! 2. `skopeo copy --format v2s2 docker://… dir:…` of every image, four at a time (doit);
//! 3. `skopeo sync --src yaml --dest dir` of the same set;
//! 4. the floor: `cp -r` of the same unique blob bytes to the same disk (and `cp` then
//!    `sync` of them, since isobuild makes each blob durable before using it), and an
//!    in-process sha256 of them;
//! 5. isobuild warm: the first `build` after the cold run (the ISO, from the laid-out tree),
//!    a no-op `build` (everything up to date), and a rebuild from the cache alone (tree and
//!    ISO deleted);
//!
//! with the wall time, the largest peak RSS and the bytes written of each (see [`measure`]),
//! and the ISO's size against the sum of the unique blob sizes. It prints a Markdown table
//! with medians and the targets of issue 8, and writes `bench.json` and `bench.html` into
//! `DIR`. Before each measure it runs `sync`, so no measure pays for another's writeback.
//! Nothing asserts on time: `cargo xtask ci` runs `bench --quick` (one run, a debug build)
//! only so that it keeps working. `--serve` stops after the push and keeps the registry up
//! until Enter, with `work/recipe.yaml`, for profiling one contender by hand.

mod measure;
mod report;
mod rpms;
mod set;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use isobuild_testkit::images::Pusher;
use isobuild_testkit::peers::Registry;
use isobuild_testkit::set::ImageSet;
use serde_json::json;

use crate::ci::{Peer, install_peers, workspace_root};
use measure::{Job, Usage};
use report::{Measure, Results, Target};

/// What the bench runs besides isobuild.
const PEERS: &[Peer] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("xorriso", "xorriso"),
    ("time", "time"),
    // The RPM half (rpms.rs).
    ("nginx-light", "nginx"),
    ("rpm", "rpmbuild"),
    ("createrepo-c", "createrepo_c"),
    ("dnf", "dnf"),
    (
        "dnf-plugins-core",
        "/usr/lib/python3/dist-packages/dnf-plugins/download.py",
    ),
    ("gpg", "gpg"),
];

/// The platform every contender pulls (skopeo picks the machine's, which this must match).
const PLATFORM: &str = "linux/amd64";

/// doit's pool of `skopeo copy` processes.
const SKOPEO_PARALLEL: usize = 4;

const USAGE: &str = "usage: cargo xtask bench [--quick] [--out DIR] [--runs N] [--profile release|dev] [--keep] [--no-install] [--serve] [--rpms-only]";

struct Options {
    quick: bool,
    out: Option<PathBuf>,
    runs: usize,
    profile: String,
    keep: bool,
    install: bool,
    serve: bool,
    /// Only the RPM half: no image set, no registry.
    rpms_only: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut quick = false;
        let mut out = None;
        let mut runs = None;
        let mut profile = None;
        let mut keep = false;
        let mut install = true;
        let mut serve = false;
        let mut rpms_only = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value; {USAGE}"))
            };
            match arg.as_str() {
                "--quick" => quick = true,
                "--keep" => keep = true,
                "--no-install" => install = false,
                "--serve" => serve = true,
                "--rpms-only" => rpms_only = true,
                "--out" => out = Some(PathBuf::from(value("--out")?)),
                "--runs" => {
                    let text = value("--runs")?;
                    runs = Some(text.parse().ok().filter(|&n| n > 0).with_context(|| {
                        format!("--runs wants a positive number, not `{text}`")
                    })?);
                }
                "--profile" => profile = Some(value("--profile")?),
                other => bail!("unknown option `{other}`; {USAGE}"),
            }
        }
        Ok(Self {
            quick,
            out,
            runs: runs.unwrap_or(if quick { 1 } else { 3 }),
            // Quick runs in CI right after the tests, which built the debug binary already.
            profile: profile.unwrap_or_else(|| if quick { "dev" } else { "release" }.to_owned()),
            keep,
            install,
            serve,
            rpms_only,
        })
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    let root = workspace_root()?;
    if options.install {
        install_peers(PEERS)?;
    }
    let isobuild = crate::binary::build_isobuild(&root, &options.profile)?;
    let out = match &options.out {
        Some(dir) => std::env::current_dir()?.join(dir),
        // Apart, so that CI's quick run does not overwrite a full run's results.
        None if options.quick => root.join("target/bench-quick"),
        None => root.join("target/bench"),
    };
    fs_err::create_dir_all(&out)?;
    remove_leftovers(&out)?;
    let load_before = load_average();
    if options.rpms_only {
        return run_rpms_only(&options, &isobuild, &out, &load_before);
    }

    eprintln!("xtask bench: generating the image set");
    let layers = out.join("layers");
    fs_err::create_dir_all(&layers)?;
    let set = set::generate(&layers, options.quick);
    let unique = set.platform_blobs(PLATFORM);
    let unique_bytes: u64 = unique.values().sum();
    let stored_bytes: u64 = set.all_blobs().values().sum();
    let per_image_bytes: u64 = set
        .entries
        .iter()
        .map(|entry| {
            let image = entry.content.for_platform(PLATFORM);
            image.config.len() as u64 + image.layers.iter().map(|l| l.size).sum::<u64>()
        })
        .sum();
    // The registry, plus the largest contender's output (skopeo copy keeps one copy of
    // each image's blobs; isobuild a cache and an ISO), plus the generated layers until
    // they are pushed.
    check_disk(
        &out,
        2 * stored_bytes + per_image_bytes.max(2 * unique_bytes) + (256 << 20),
    )?;

    let registry = Registry::start_in(&out);
    eprintln!(
        "xtask bench: pushing {} images ({}) to {}",
        set.entries.len(),
        report::mb(stored_bytes),
        registry.host()
    );
    set.push(&Pusher::new(&registry).mounting());
    fs_err::remove_dir_all(&layers)?;

    let work = out.join("work");
    fs_err::create_dir_all(&work)?;
    let bench = Bench {
        isobuild,
        work: work.clone(),
        host: registry.host(),
        set: &set,
    };
    bench.write_inputs()?;
    eprintln!("xtask bench: generating the RPM repositories");
    let rpm = rpms::prepare(&work, &bench.isobuild, options.quick)?;
    let stage = work.join("stage");
    fs_err::create_dir_all(&stage)?;
    for digest in unique.keys() {
        fs_err::hard_link(registry.blob_path(digest), stage.join(digest.hex()))?;
    }
    if options.serve {
        println!(
            "registry {} serves the set; {} and sync.yaml list it; press Enter to stop",
            registry.host(),
            work.join("recipe.yaml").display()
        );
        let _ = std::io::stdin().read_line(&mut String::new());
        return Ok(());
    }

    let mut measures = vec![
        Measure::new(
            "isobuild-cold",
            "isobuild fetch + layout, cold",
            Some(unique_bytes),
        ),
        Measure::new(
            "isobuild-fetch",
            "isobuild fetch (cold)",
            Some(unique_bytes),
        ),
        Measure::new("isobuild-layout", "isobuild layout (after fetch)", None),
        Measure::new("skopeo-copy", "skopeo copy ×4 (doit)", Some(unique_bytes)),
        Measure::new("skopeo-sync", "skopeo sync", Some(unique_bytes)),
        Measure::new("cp", "cp of the unique blobs (floor)", Some(unique_bytes)),
        Measure::new("cp-sync", "cp + sync of them (floor)", Some(unique_bytes)),
        Measure::new("sha256", "sha256 of them, in process", Some(unique_bytes)),
        Measure::new(
            "isobuild-iso",
            "isobuild build, first ISO",
            Some(unique_bytes),
        ),
        Measure::new("isobuild-noop", "isobuild build, no-op", None),
        Measure::new(
            "isobuild-rebuild",
            "isobuild build, tree + ISO from cache",
            Some(unique_bytes),
        ),
    ];
    measures.extend(rpm_measures());
    let mut iso_size = 0;
    let contenders = [
        "isobuild",
        "skopeo-copy",
        "skopeo-sync",
        "cp",
        "cp-sync",
        "sha256",
        "rpm",
    ];
    let mut rpm_locked = 0;
    for round in 0..options.runs {
        for offset in 0..contenders.len() {
            let contender = contenders[(round + offset) % contenders.len()];
            eprintln!(
                "xtask bench: run {}/{}: {contender}",
                round + 1,
                options.runs
            );
            let mut record = |id: &str, usage: Usage| {
                if let Some(measure) = measures.iter_mut().find(|m| m.id == id) {
                    measure.samples.push(usage);
                }
            };
            match contender {
                "isobuild" => {
                    let runs = bench.isobuild()?;
                    iso_size = runs.iso_size;
                    record("isobuild-cold", runs.fetch.then(runs.layout));
                    record("isobuild-fetch", runs.fetch);
                    record("isobuild-layout", runs.layout);
                    record("isobuild-iso", runs.iso);
                    record("isobuild-noop", runs.noop);
                    record("isobuild-rebuild", runs.rebuild);
                }
                "skopeo-copy" => record(contender, bench.skopeo_copy()?),
                "skopeo-sync" => record(contender, bench.skopeo_sync()?),
                "cp" => record(contender, bench.cp(&stage, false)?),
                "cp-sync" => record(contender, bench.cp(&stage, true)?),
                "rpm" => rpm_locked = rpm_round(&rpm, round, &mut record)?,
                _ => record(contender, sha256(&stage)?),
            }
        }
    }
    drop(registry);
    let rpm_context = rpm_context(&rpm, rpm_locked);
    drop(rpm);

    let largest = set
        .entries
        .iter()
        .flat_map(|entry| entry.content.for_platform(PLATFORM).layers.iter())
        .map(|layer| layer.size)
        .max()
        .unwrap_or(0);
    let context = vec![
        (
            "image set".to_owned(),
            json!(format!(
                "{} images ({}), {} unique {PLATFORM} blobs: {} (largest layer {}); {} in the registry",
                set.entries.len(),
                if options.quick {
                    "quick"
                } else {
                    "MetalK8s-shaped"
                },
                unique.len(),
                report::mb(unique_bytes),
                report::mib(largest),
                report::mb(stored_bytes),
            )),
        ),
        ("unique_bytes".to_owned(), json!(unique_bytes)),
        ("largest_layer_bytes".to_owned(), json!(largest)),
        ("iso_bytes".to_owned(), json!(iso_size)),
        ("runs".to_owned(), json!(options.runs)),
        ("isobuild profile".to_owned(), json!(options.profile)),
        ("skopeo".to_owned(), json!(version("skopeo", "--version"))),
        (
            "cpus".to_owned(),
            json!(std::thread::available_parallelism().map_or(0, usize::from)),
        ),
        (
            "load average before / after".to_owned(),
            json!(format!("{load_before} / {}", load_average())),
        ),
        ("disk".to_owned(), json!(out.display().to_string())),
        rpm_context,
    ];
    let commit = head_commit();
    let mut results = Results {
        context,
        measures,
        targets: Vec::new(),
        quick: options.quick,
        commit,
    };
    results.targets = targets(&results, iso_size, unique_bytes, largest);
    results.targets.extend(rpm_targets(&results));

    let table = results.table();
    println!(
        "{}; isobuild {} build{}\n\n{table}",
        results.context[0].1.as_str().unwrap_or_default(),
        options.profile,
        if options.profile == "release" {
            ""
        } else {
            " (times say little)"
        }
    );
    fs_err::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&results.json())? + "\n",
    )?;
    fs_err::write(out.join("bench.html"), results.html())?;
    println!(
        "wrote {} and {}",
        out.join("bench.json").display(),
        out.join("bench.html").display()
    );
    if !options.keep {
        fs_err::remove_dir_all(&work)?;
    }
    Ok(())
}

/// The RPM half's measures (issue 14).
fn rpm_measures() -> Vec<Measure> {
    vec![
        Measure::new("rpm-resolve", "isobuild lock, EPEL-sized, cold", None),
        Measure::new(
            "rpm-resolve-dnf",
            "dnf repoquery --resolve --recursive, cold",
            None,
        ),
        Measure::new("rpm-download", "isobuild fetch --locked, RPM closure", None),
        Measure::new("rpm-download-dnf", "dnf download, same RPMs", None),
        Measure::new("rpm-noop", "isobuild build --locked, no-op (RPMs)", None),
    ]
}

/// One round of the RPM contenders, isobuild and dnf alternating which goes first; returns
/// how many packages isobuild locked.
fn rpm_round(
    rpm: &rpms::RpmBench,
    round: usize,
    record: &mut impl FnMut(&str, Usage),
) -> Result<usize> {
    let mut locked = 0;
    for step in 0..4 {
        match (step + round) % 4 {
            0 => {
                let (usage, count) = rpm.resolve_isobuild()?;
                locked = count;
                record("rpm-resolve", usage);
            }
            1 => record("rpm-resolve-dnf", rpm.resolve_dnf()?),
            2 => record("rpm-download", rpm.download_isobuild()?),
            _ => record("rpm-download-dnf", rpm.download_dnf()?),
        }
    }
    record("rpm-noop", rpm.noop()?);
    Ok(locked)
}

fn rpm_context(rpm: &rpms::RpmBench, locked: usize) -> (String, serde_json::Value) {
    let agree = match rpm.closures_agree() {
        Ok((_, _, true)) => "the same set as dnf's".to_owned(),
        Ok((theirs, ours, false)) => format!("NOT dnf's set ({theirs} there, {ours} here)"),
        Err(error) => format!("not compared with dnf's ({error})"),
    };
    (
        "rpm set".to_owned(),
        json!(format!(
            "EPEL-sized repository of {} packages plus two OS repositories; {} seeds resolve to {locked} shipped packages, {agree}; {} signed RPMs downloaded",
            rpm.epel_packages,
            rpm.seed_count(),
            rpm.download_count()
        )),
    )
}

/// Issue 14's targets against this run's medians.
fn rpm_targets(results: &Results) -> Vec<Target> {
    let seconds = |id: &str| results.measure(id).median().as_secs_f64();
    let resolve = seconds("rpm-resolve-dnf") / seconds("rpm-resolve");
    let download = seconds("rpm-download-dnf") / seconds("rpm-download");
    let rss = results.measure("rpm-resolve").peak_rss();
    let noop = results.measure("rpm-noop").median();
    vec![
        Target {
            name: "RPM resolution vs dnf repoquery".to_owned(),
            wanted: "faster".to_owned(),
            measured: format!(
                "{resolve:.2}× faster (dnf peak RSS {})",
                report::mib(results.measure("rpm-resolve-dnf").peak_rss())
            ),
            holds: resolve > 1.0,
        },
        Target {
            name: "RPM resolution peak RSS".to_owned(),
            wanted: "< 200 MiB".to_owned(),
            measured: report::mib(rss),
            holds: rss < 200 << 20,
        },
        Target {
            name: "RPM closure download vs dnf download".to_owned(),
            wanted: "≥ 3× faster".to_owned(),
            measured: format!("{download:.2}× faster"),
            holds: download >= 3.0,
        },
        Target {
            name: "no-op build with packages".to_owned(),
            wanted: "≤ 0.3 s".to_owned(),
            measured: report::seconds(noop),
            holds: noop <= Duration::from_millis(300),
        },
    ]
}

/// `--rpms-only`: the RPM half alone, its own report.
fn run_rpms_only(options: &Options, isobuild: &Path, out: &Path, load_before: &str) -> Result<()> {
    let work = out.join("work");
    fs_err::create_dir_all(&work)?;
    eprintln!("xtask bench: generating the RPM repositories");
    let rpm = rpms::prepare(&work, isobuild, options.quick)?;
    let mut measures = rpm_measures();
    let mut locked = 0;
    for round in 0..options.runs {
        eprintln!("xtask bench: run {}/{}: rpm", round + 1, options.runs);
        let mut record = |id: &str, usage: Usage| {
            if let Some(measure) = measures.iter_mut().find(|m| m.id == id) {
                measure.samples.push(usage);
            }
        };
        locked = rpm_round(&rpm, round, &mut record)?;
    }
    let context = vec![
        rpm_context(&rpm, locked),
        ("runs".to_owned(), json!(options.runs)),
        ("isobuild profile".to_owned(), json!(options.profile)),
        ("dnf".to_owned(), json!(version("dnf", "--version"))),
        (
            "cpus".to_owned(),
            json!(std::thread::available_parallelism().map_or(0, usize::from)),
        ),
        (
            "load average before / after".to_owned(),
            json!(format!("{load_before} / {}", load_average())),
        ),
    ];
    drop(rpm);
    let mut results = Results {
        context,
        measures,
        targets: Vec::new(),
        quick: options.quick,
        commit: head_commit(),
    };
    results.targets = rpm_targets(&results);
    println!(
        "{}; isobuild {} build\n\n{}",
        results.context[0].1.as_str().unwrap_or_default(),
        options.profile,
        results.table()
    );
    fs_err::write(
        out.join("bench-rpms.json"),
        serde_json::to_string_pretty(&results.json())? + "\n",
    )?;
    if !options.keep {
        fs_err::remove_dir_all(&work)?;
    }
    Ok(())
}

/// Issue 8's targets against this run's medians.
fn targets(results: &Results, iso_size: u64, unique_bytes: u64, largest: u64) -> Vec<Target> {
    let seconds = |id: &str| results.measure(id).median().as_secs_f64();
    let cold = seconds("isobuild-cold");
    let faster = |id: &str, wanted: f64, name: &str| {
        let ratio = seconds(id) / cold;
        Target {
            name: format!("cold fetch + layout vs {name}"),
            wanted: format!("≥ {wanted}× faster"),
            measured: format!("{ratio:.2}× faster"),
            holds: ratio >= wanted,
        }
    };
    let within = |id: &str, name: &str| {
        let ratio = cold / seconds(id);
        Target {
            name: format!("cold fetch + layout vs {name}"),
            wanted: "≤ 1.25× its time".to_owned(),
            measured: format!("{ratio:.2}×"),
            holds: ratio <= 1.25,
        }
    };
    let noop = results.measure("isobuild-noop").median();
    let rss = [
        "isobuild-fetch",
        "isobuild-layout",
        "isobuild-iso",
        "isobuild-noop",
        "isobuild-rebuild",
    ]
    .iter()
    .map(|id| results.measure(id).peak_rss())
    .max()
    .unwrap_or(0);
    #[allow(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
    let iso_ratio = iso_size as f64 / unique_bytes as f64;
    vec![
        faster("skopeo-copy", 2.0, "skopeo copy ×4"),
        faster("skopeo-sync", 1.5, "skopeo sync"),
        within("cp", "the cp floor"),
        within("cp-sync", "the cp + sync floor"),
        Target {
            name: "warm no-op build".to_owned(),
            wanted: "≤ 0.3 s".to_owned(),
            measured: report::seconds(noop),
            holds: noop <= Duration::from_millis(300),
        },
        Target {
            name: format!("isobuild peak RSS, largest layer {}", report::mib(largest)),
            wanted: "≤ 100 MiB".to_owned(),
            measured: report::mib(rss),
            holds: rss <= 100 << 20,
        },
        Target {
            name: "ISO size / unique blob bytes".to_owned(),
            wanted: "≤ 1.01".to_owned(),
            measured: format!(
                "{iso_ratio:.4} ({} / {})",
                report::mb(iso_size),
                report::mb(unique_bytes)
            ),
            holds: iso_ratio <= 1.01,
        },
    ]
}

/// What one isobuild round measured.
struct IsobuildRuns {
    fetch: Usage,
    layout: Usage,
    iso: Usage,
    noop: Usage,
    rebuild: Usage,
    iso_size: u64,
}

/// The registry, the image set and the scratch folder every contender works in.
struct Bench<'a> {
    isobuild: PathBuf,
    work: PathBuf,
    host: String,
    set: &'a ImageSet,
}

impl Bench<'_> {
    /// The recipe isobuild builds and the YAML skopeo sync reads, both listing the set.
    fn write_inputs(&self) -> Result<()> {
        let mut recipe = String::from(
            "# Written by `cargo xtask bench`: the bench's image set, laid out as MetalK8s' ISO.\n\
             isobuild: 1\nname: Bench\nversion: 1.0.0\nepoch: 1700000000\n\
             iso:\n  output: iso/bench.iso\n  root: tree\n  volume_id: Bench\n\
             images:\n  platform: linux/amd64\n  format: v2s2\n  path: \"images/{{ name }}/{{ tag }}\"\n\
             \x20 registry_config:\n    path: registry/bench-registry.inc\n\
             \x20   common_path: registry/bench-registry-common.inc\n\
             \x20   name_prefix: \"bench/\"\n    server_root: \"$bench_images\"\n  list:\n",
        );
        let mut sync = format!("{}:\n  tls-verify: false\n  images:\n", self.host);
        for entry in &self.set.entries {
            let _ = writeln!(
                recipe,
                "    - {{ name: {}, ref: \"{}/{}:{}\" }}",
                entry.name, self.host, entry.repository, entry.tag
            );
            let _ = writeln!(sync, "    {}: [\"{}\"]", entry.repository, entry.tag);
        }
        fs_err::write(self.work.join("recipe.yaml"), recipe)?;
        fs_err::write(self.work.join("sync.yaml"), sync)?;
        Ok(())
    }

    fn isobuild_job(&self, args: &[&str]) -> Job {
        let mut all = args.to_vec();
        all.extend([
            "--cache-dir",
            "cache",
            "--insecure-registry",
            &self.host,
            "--progress",
            "none",
            "-q",
        ]);
        Job::new(&self.isobuild, &all, &self.work)
    }

    fn isobuild(&self) -> Result<IsobuildRuns> {
        let scratch = ["cache", "tree", "iso"].map(|name| self.work.join(name));
        for dir in &scratch {
            remove(dir)?;
        }
        let fetch = self.timed(&self.isobuild_job(&["fetch", "recipe.yaml"]))?;
        let layout = self.timed(&self.isobuild_job(&["layout", "recipe.yaml", "tree"]))?;
        let build = self.isobuild_job(&["build", "recipe.yaml"]);
        let iso = self.timed(&build)?;
        let iso_path = self.work.join("iso/bench.iso");
        let iso_size = fs_err::metadata(&iso_path)?.len();
        let noop = self.timed(&build)?;
        remove(&self.work.join("tree"))?;
        remove(&iso_path)?;
        let rebuild = self.timed(&build)?;
        for dir in &scratch {
            remove(dir)?;
        }
        Ok(IsobuildRuns {
            fetch,
            layout,
            iso,
            noop,
            rebuild,
            iso_size,
        })
    }

    fn skopeo_copy(&self) -> Result<Usage> {
        let dest = self.work.join("skopeo-copy");
        remove(&dest)?;
        let mut jobs = Vec::new();
        for entry in &self.set.entries {
            let dir = dest.join(&entry.name);
            fs_err::create_dir_all(&dir)?;
            jobs.push(Job::new(
                "skopeo",
                &[
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    "--format",
                    "v2s2",
                    &format!("docker://{}/{}:{}", self.host, entry.repository, entry.tag),
                    &format!("dir:{}", dir.join(&entry.tag).display()),
                ],
                &self.work,
            ));
        }
        sync_disks()?;
        let usage = measure::run_all(&jobs, SKOPEO_PARALLEL, &self.work)?;
        remove(&dest)?;
        Ok(usage)
    }

    fn skopeo_sync(&self) -> Result<Usage> {
        let dest = self.work.join("skopeo-sync");
        remove(&dest)?;
        let usage = self.timed(&Job::new(
            "skopeo",
            &[
                "--insecure-policy",
                "sync",
                "--src",
                "yaml",
                "--dest",
                "dir",
                "--format",
                "v2s2",
                "sync.yaml",
                "skopeo-sync",
            ],
            &self.work,
        ))?;
        remove(&dest)?;
        Ok(usage)
    }

    /// `cp -r` of the staged unique blobs, then (`durable`) `sync` of each copy.
    fn cp(&self, stage: &Path, durable: bool) -> Result<Usage> {
        let dest = self.work.join("cp");
        remove(&dest)?;
        let stage = stage.display();
        let script = if durable {
            format!("cp -r {stage} cp && sync --data cp/*")
        } else {
            format!("cp -r {stage} cp")
        };
        let usage = self.timed(&Job::new("sh", &["-c", &script], &self.work))?;
        remove(&dest)?;
        Ok(usage)
    }

    /// `sync`, then the job alone.
    fn timed(&self, job: &Job) -> Result<Usage> {
        sync_disks()?;
        measure::run(job, &self.work)
    }
}

/// sha256 of every staged blob with isobuild's own file hashing, checked.
fn sha256(stage: &Path) -> Result<Usage> {
    sync_disks()?;
    measure::in_process(|| {
        for entry in fs_err::read_dir(stage)? {
            let path = entry?.path();
            let hex = isobuild::fs::sha256_file(&path)?;
            if path.file_name().is_none_or(|name| name != hex.as_str()) {
                bail!("{} hashes to {hex}", path.display());
            }
        }
        Ok(())
    })
}

/// Flush every dirty page, so that the next measure does not pay for the last one's writes.
pub(super) fn sync_disks() -> Result<()> {
    let status = Command::new("sync").status().context("cannot run sync")?;
    if !status.success() {
        bail!("`sync` failed ({status})");
    }
    Ok(())
}

pub(super) fn remove(path: &Path) -> Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs_err::remove_dir_all(path)?,
        Ok(_) => fs_err::remove_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// What an interrupted run left in `out`: its work folder, layers and registry.
fn remove_leftovers(out: &Path) -> Result<()> {
    for entry in fs_err::read_dir(out)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "work" || name == "layers" || name.starts_with("registry-") {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

/// Fail early when the disk under `dir` has less than `needed` bytes free.
fn check_disk(dir: &Path, needed: u64) -> Result<()> {
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .context("cannot run df")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let available: u64 = text
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("cannot read df's output `{text}`"))?;
    if available < needed {
        bail!(
            "{} has {} free; the bench needs about {}",
            dir.display(),
            report::mb(available),
            report::mb(needed)
        );
    }
    Ok(())
}

fn load_average() -> String {
    fs_err::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

fn version(program: &str, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The commit the bench runs on (`unknown` outside a git checkout).
fn head_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |output| String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        )
}
