//! Interrupted builds through the real binary (issue "Reliability and security: faults,
//! interrupts, hostile registries, bad input"): `SIGINT` and `SIGKILL` in the middle of a
//! pull, of the tree's layout and of the ISO step, then a second run; and two builds sharing
//! one cache at once.
//!
//! Each interruption point is reached deterministically, never by timing: the proxy holds a
//! blob's body half-way, a command task waits for a file the test creates, a stand-in
//! `xorriso` waits for its parent to die. After the rerun:
//! - it succeeds and its ISO is byte for byte the ISO of a build never interrupted;
//! - blobs verified before the interruption are not downloaded again, and a blob cut by it
//!   resumes with a `Range` request from what reached the disk;
//! - no `*.isobuild-tmp` file is left in the project (tree, ISO folder), and the cache is
//!   sound.
//!
//! The interrupted run itself must leave no ISO at the output path, and exit with 130 after
//! `SIGINT`, 143 after `SIGTERM`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::faults::{Setup, assert_cache_sound, check_cache, recipe, temporaries};
use crate::harness::Test;
use crate::harness::proxy::Fault;

/// The test set, `big`, a file tree, a command task that waits for `go` (and gives up when
/// isobuild dies), and an ISO with its `SHA256SUM`.
fn build_recipe(host: &str) -> String {
    recipe(host, true)
        + r"iso:
  output: _build/test.iso
  root: _build/root
  sha256sum: _build/SHA256SUM
files:
  - { src: static/, dest: static/ }
  - { src: _build/gen/stamp, dest: stamp.txt }
tasks:
  - name: slow
    run: [sh, -c, 'touch started; while [ ! -e go ]; do kill -0 $PPID 2>/dev/null || exit 1; sleep 0.05; done; mkdir -p _build/gen; echo done > _build/gen/stamp']
    outputs: [_build/gen/stamp]
"
}

/// A project for [`build_recipe`]; `go` says whether the command task may finish at once.
fn project(host: &str, go: bool) -> Test {
    let test = Test::new()
        .recipe(&build_recipe(host))
        .file("static/a.txt", "a\n")
        .file("static/sub/b.txt", &"b".repeat(100_000));
    if go {
        test.write("go", "");
    }
    test
}

/// The sha256 of the ISO a build that is never interrupted makes (through the same proxy,
/// so the references in the tree are the same).
fn clean_iso(setup: &Setup) -> String {
    let test = project(&setup.host(), true);
    build(&test, &setup.host(), &[]).success();
    iso_sha256(&test)
}

fn iso_sha256(test: &Test) -> String {
    let iso = fs_err::read(test.path().join("_build/test.iso")).unwrap();
    let digest = isobuild::reference::Digest::of(&iso);
    assert_eq!(
        test.read("_build/SHA256SUM"),
        format!("{}  test.iso\n", digest.hex()),
        "SHA256SUM matches the ISO"
    );
    digest.to_string()
}

fn build(test: &Test, host: &str, extra: &[&str]) -> crate::harness::Run {
    let mut args = vec!["build", "recipe.yaml", "-q", "--insecure-registry", host];
    args.extend_from_slice(extra);
    test.run(args)
}

/// Start `isobuild build` in `test`'s folder, as [`Test::run`] would, without waiting.
fn spawn(test: &Test, host: &str, extra: &[&str], env: &[(&str, String)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_isobuild"));
    command.args(["build", "recipe.yaml", "--insecure-registry", host]);
    // Quiet, unless the caller chose what to see.
    if !extra.contains(&"--progress") {
        command.arg("-q");
    }
    command
        .args(extra)
        .current_dir(test.path())
        .env("ISOBUILD_CACHE_DIR", test.cache_dir())
        .env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Signal {
    Int,
    /// What `timeout`, systemd and CI runners send: as clean a stop as `Int`, exit 143.
    Term,
    Kill,
}

/// Send `signal` to `child` and wait for it; returns its exit code (`None` when killed).
fn interrupt(child: &mut Child, signal: Signal) -> Option<i32> {
    match signal {
        Signal::Int | Signal::Term => {
            let name = if let Signal::Int = signal {
                "-INT"
            } else {
                "-TERM"
            };
            let status = Command::new("kill")
                .args([name, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        Signal::Kill => child.kill().unwrap(),
    }
    let code = wait(child, Duration::from_secs(20));
    match signal {
        Signal::Int => assert_eq!(code, Some(130), "an interrupted run exits with 130"),
        Signal::Term => assert_eq!(code, Some(143), "a run stopped by SIGTERM exits with 143"),
        Signal::Kill => {}
    }
    code
}

/// Wait for `child` to exit; kill it and fail when it takes longer than `timeout` (a run that
/// hangs on Ctrl-C is a bug this file looks for).
fn wait(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("isobuild did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `done` until it holds; fail after `timeout`.
#[track_caller]
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What an interrupted first build must not leave: an ISO, or (unless it was killed
/// outright, and could not clean up) a temporary file anywhere in the project but the cache.
#[track_caller]
fn assert_interrupted_cleanly(test: &Test, signal: Signal) {
    assert!(
        !test.path().join("_build/test.iso").exists(),
        "an ISO appeared although the build was interrupted"
    );
    assert!(!test.path().join("_build/SHA256SUM").exists());
    if let Signal::Int | Signal::Term = signal {
        assert_no_temporaries(test);
    }
}

#[track_caller]
fn assert_no_temporaries(test: &Test) {
    let left: Vec<String> = temporaries(test.path())
        .into_iter()
        .filter(|path| !path.contains("/.cache/"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// The cache's blob files that are all there, of the test set's small blobs.
fn small_blobs_cached(setup: &Setup, cache: &Path) -> bool {
    let mut digests = setup.set.alpha.blob_digests();
    digests.extend(setup.set.beta.blob_digests());
    digests.extend(setup.set.multi.image("linux/amd64").blob_digests());
    digests
        .iter()
        .all(|digest| cache.join("blobs-v1/sha256").join(digest.hex()).is_file())
}

/// Interrupt a build while the big layer is half-way down, then build again.
fn interrupted_pull(signal: Signal) {
    let setup = Setup::new();
    let host = setup.host();
    let clean = clean_iso(&setup);
    let big = setup.big_layer().clone();
    let big_path = format!("/blobs/{}", big.digest);
    setup.proxy.clear();
    // 2.5 MiB: past two of the cache writer's 1 MiB buffers, so bytes are on disk.
    setup.proxy.fault(&big_path, Fault::Hold(2_621_440), 1);

    let test = project(&host, true);
    let mut child = spawn(&test, &host, &[], &[]);
    setup.proxy.wait_held(1, Duration::from_secs(20));
    let partial = test
        .cache_dir()
        .join(format!("tmp/{}.partial", big.digest.hex()));
    wait_until(
        "the small blobs are cached and part of big is on disk",
        Duration::from_secs(20),
        || {
            small_blobs_cached(&setup, &test.cache_dir())
                && fs_err::metadata(&partial).is_ok_and(|m| m.len() >= 1 << 20)
        },
    );
    interrupt(&mut child, signal);
    setup.proxy.release();
    assert_interrupted_cleanly(&test, signal);
    let partials = check_cache(
        &test.cache_dir(),
        &setup.known_blobs(),
        matches!(signal, Signal::Int | Signal::Term),
    );
    let kept = *partials
        .get(big.digest.hex())
        .unwrap_or_else(|| panic!("{signal:?}: no partial of the big layer: {partials:?}"));
    assert!(kept > 0, "{signal:?}: the partial is empty");

    setup.proxy.clear();
    build(&test, &host, &[]).success();
    assert_eq!(iso_sha256(&test), clean, "{signal:?}: the ISO differs");
    let requests = setup.proxy.requests("GET", "/blobs/");
    assert_eq!(
        requests.len(),
        1,
        "{signal:?}: only the interrupted blob is fetched again: {:?}",
        requests.iter().map(|seen| &seen.path).collect::<Vec<_>>()
    );
    assert_eq!(
        requests[0].path,
        format!("/v2/test/big/blobs/{}", big.digest)
    );
    assert_eq!(
        requests[0].header("Range"),
        Some(format!("bytes={kept}-").as_str()),
        "{signal:?}: the download resumes where the partial ends"
    );
    assert_eq!(requests[0].sent(), big.size - kept);
    assert_no_temporaries(&test);
    let partials = assert_cache_sound(&test.cache_dir(), &setup.known_blobs());
    assert!(partials.is_empty(), "{partials:?}");
}

#[test]
fn ctrl_c_mid_pull_then_a_rerun_resumes_the_blob() {
    interrupted_pull(Signal::Int);
}

#[test]
fn sigkill_mid_pull_then_a_rerun_resumes_the_blob() {
    interrupted_pull(Signal::Kill);
}

/// Interrupt a build while its tree is half written (images laid out, the command task
/// running, its file not yet copied), then build again.
fn interrupted_layout(signal: Signal) {
    let setup = Setup::new();
    let host = setup.host();
    let clean = clean_iso(&setup);
    setup.proxy.clear();

    let test = project(&host, false);
    let mut child = spawn(&test, &host, &[], &[]);
    let root = test.path().join("_build/root");
    wait_until(
        "the images are laid out and the task runs",
        Duration::from_secs(20),
        || {
            test.path().join("started").exists()
                && ["alpha/1.0", "beta/2.0", "multi/3.0", "big/1.0"]
                    .iter()
                    .all(|image| {
                        root.join("images")
                            .join(image)
                            .join("manifest.json")
                            .is_file()
                    })
        },
    );
    interrupt(&mut child, signal);
    assert_interrupted_cleanly(&test, signal);
    assert!(
        !root.join("stamp.txt").exists(),
        "the tree was half written"
    );
    check_cache(
        &test.cache_dir(),
        &setup.known_blobs(),
        matches!(signal, Signal::Int | Signal::Term),
    );

    setup.proxy.clear();
    test.write("go", "");
    build(&test, &host, &[]).success();
    assert_eq!(iso_sha256(&test), clean, "{signal:?}: the ISO differs");
    assert_eq!(
        setup.proxy.count("GET", "/blobs/"),
        0,
        "{signal:?}: every blob was verified before the interruption"
    );
    assert_no_temporaries(&test);
}

#[test]
fn ctrl_c_mid_layout_then_a_rerun_finishes_the_tree() {
    interrupted_layout(Signal::Int);
}

#[test]
fn sigkill_mid_layout_then_a_rerun_finishes_the_tree() {
    interrupted_layout(Signal::Kill);
}

/// A stand-in `xorriso`: for the ISO run (`-as mkisofs`) it writes a few bytes to its
/// output, says so, then waits for isobuild to die; everything else goes to the real one.
const XORRISO: &str = r#"#!/bin/sh
if [ "$1" = "-as" ]; then
  out=""; previous=""
  for arg in "$@"; do
    if [ "$previous" = "-output" ]; then out="$arg"; fi
    previous="$arg"
  done
  printf 'half an ISO' > "$out"
  touch "$XORRISO_MARKER"
  while kill -0 $PPID 2>/dev/null; do sleep 0.05; done
  exit 1
fi
exec "$REAL_XORRISO" "$@"
"#;

/// Interrupt a build while xorriso writes the ISO, then build again.
fn interrupted_iso(signal: Signal) {
    let setup = Setup::new();
    let host = setup.host();
    let clean = clean_iso(&setup);
    setup.proxy.clear();

    let test = project(&host, true)
        .file("bin/xorriso", XORRISO)
        .executable("bin/xorriso");
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v xorriso"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let marker = test.path().join("xorriso-started");
    let path = format!(
        "{}:{}",
        test.path().join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let mut child = spawn(
        &test,
        &host,
        &[],
        &[
            ("PATH", path),
            ("REAL_XORRISO", real.trim().to_owned()),
            ("XORRISO_MARKER", marker.display().to_string()),
        ],
    );
    wait_until("xorriso runs", Duration::from_secs(20), || marker.exists());
    interrupt(&mut child, signal);
    assert_interrupted_cleanly(&test, signal);
    if let Signal::Kill = signal {
        // A killed isobuild cannot clean up: its stand-in xorriso notices and exits, leaving
        // the temporary ISO for the next run to delete.
        wait_until("xorriso left a half ISO", Duration::from_secs(5), || {
            !temporaries(&test.path().join("_build")).is_empty()
        });
    }

    setup.proxy.clear();
    build(&test, &host, &[]).success();
    assert_eq!(iso_sha256(&test), clean, "{signal:?}: the ISO differs");
    assert_eq!(setup.proxy.count("GET", "/blobs/"), 0);
    assert_no_temporaries(&test);
    assert_cache_sound(&test.cache_dir(), &setup.known_blobs());
}

#[test]
fn ctrl_c_mid_iso_leaves_no_iso_and_a_rerun_makes_it() {
    interrupted_iso(Signal::Int);
}

#[test]
fn sigterm_mid_iso_kills_xorriso_leaves_no_iso_and_exits_143() {
    interrupted_iso(Signal::Term);
}

#[test]
fn sigterm_mid_layout_then_a_rerun_finishes_the_tree() {
    interrupted_layout(Signal::Term);
}

#[test]
fn sigkill_mid_iso_then_a_rerun_deletes_the_half_iso_and_makes_it() {
    interrupted_iso(Signal::Kill);
}

#[test]
fn two_builds_at_once_share_the_cache_and_fetch_each_blob_once() {
    let setup = Setup::new();
    let host = setup.host();
    let big = setup.big_layer().clone();
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let cache_flag = ["--cache-dir", cache.to_str().unwrap()];
    // The first build's download of the big layer stops half-way until the second build is
    // surely waiting for it.
    setup
        .proxy
        .fault(&format!("/blobs/{}", big.digest), Fault::Hold(1_500_000), 1);

    let first = project(&host, true);
    let second = project(&host, true);
    let mut first_child = spawn(&first, &host, &cache_flag, &[]);
    setup.proxy.wait_held(1, Duration::from_secs(20));
    let mut second_child = spawn(&second, &host, &cache_flag, &[]);
    wait_until(
        "the second build resolved big",
        Duration::from_secs(20),
        || setup.proxy.count("GET", "/test/big/manifests/1.0") >= 2,
    );
    // Long enough for it to reach the big layer, which it must not request.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        setup.proxy.count("GET", &format!("/blobs/{}", big.digest)),
        1,
        "the second build waits for the first one's download"
    );
    setup.proxy.release();
    for (child, name) in [(&mut first_child, "first"), (&mut second_child, "second")] {
        let code = wait(child, Duration::from_secs(30));
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert_eq!(code, Some(0), "the {name} build failed:\n{stderr}");
    }

    let mut blobs = setup.set.alpha.blob_digests();
    blobs.extend(setup.set.beta.blob_digests()[2..].iter().cloned());
    blobs.push(setup.set.beta.config_digest.clone());
    blobs.extend(setup.set.multi.image("linux/amd64").blob_digests());
    blobs.extend(setup.big.blob_digests());
    for digest in &blobs {
        assert_eq!(
            setup.proxy.count("GET", &format!("/blobs/{digest}")),
            1,
            "{digest} is downloaded once for both builds"
        );
    }
    assert_eq!(iso_sha256(&first), iso_sha256(&second));
    let partials = assert_cache_sound(&cache, &setup.known_blobs());
    assert!(partials.is_empty(), "{partials:?}");
}

#[test]
fn two_builds_of_one_project_at_once_take_turns() {
    let setup = Setup::new();
    let host = setup.host();
    let clean = clean_iso(&setup);
    let big = setup.big_layer().clone();
    setup.proxy.clear();
    setup
        .proxy
        .fault(&format!("/blobs/{}", big.digest), Fault::Hold(1_500_000), 1);
    let test = project(&host, true);
    let mut first = spawn(&test, &host, &[], &[]);
    setup.proxy.wait_held(1, Duration::from_secs(20));
    let mut second = spawn(&test, &host, &["--progress", "plain"], &[]);
    wait_until(
        "the second build resolved big",
        Duration::from_secs(20),
        || setup.proxy.count("GET", "/test/big/manifests/1.0") >= 2,
    );
    std::thread::sleep(Duration::from_millis(300));
    setup.proxy.release();
    let mut outputs = Vec::new();
    for child in [&mut first, &mut second] {
        let code = wait(child, Duration::from_secs(30));
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert_eq!(code, Some(0), "a build failed:\n{stderr}");
        outputs.push(stderr);
    }
    assert!(
        outputs[1].contains("waiting for another isobuild writing"),
        "the second build waited for the first:\n{}",
        outputs[1]
    );
    assert_eq!(iso_sha256(&test), clean);
    assert_eq!(
        setup.proxy.count("GET", &format!("/blobs/{}", big.digest)),
        1
    );
    assert_no_temporaries(&test);
    assert_cache_sound(&test.cache_dir(), &setup.known_blobs());
}

#[test]
fn ctrl_c_while_resolving_images_exits_130() {
    let setup = Setup::new();
    let host = setup.proxy.host();
    // Every manifest request waits: the run is stuck resolving until interrupted.
    setup.proxy.fault("/manifests/", Fault::Stall, usize::MAX);
    let test = project(&host, true);
    let mut child = spawn(&test, &host, &[], &[]);
    wait_until("a manifest request", Duration::from_secs(20), || {
        setup.proxy.count("GET", "/manifests/") > 0
    });
    interrupt(&mut child, Signal::Int);
    assert_no_temporaries(&test);
}
