//! Hardening through the real binary (issue 12, "never destroy a user's file, never ship an
//! unverified byte, never hang silently"): one test per promise an adversarial run broke.
//!
//! - Outputs never overwrite inputs or each other; `iso.root` is pruned only when isobuild
//!   made it; opening a cache cleans only what isobuild made there; a planted link in a
//!   shared cache is never written through; an output that is a device or a link is written
//!   into, not replaced.
//! - A cache on another filesystem works; a tampered cached blob never reaches a tree; a
//!   `chmod` in one tree never changes the next; two builds of one tree take turns whatever
//!   their caches; every ISO path has one writer; a killed build's command dies with it and
//!   `SIGTERM` stops a build like Ctrl-C, with 143.
//! - Values ISO 9660 cannot hold fail at load, with the recipe's line and column.
//!
//! Links and devices are made in the test's own folder (never the real `/dev`); the
//! cross-filesystem case mounts a tmpfs, and says so loudly when it cannot.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::faults::{Setup, recipe, snapshot};
use crate::harness::Test;

const HEAD: &str = "isobuild: 1\nname: Demo\nversion: 1.0.0\nepoch: 1700000000\n";

/// A recipe with one file and an ISO.
fn small_recipe(extra_iso: &str) -> String {
    format!(
        "{HEAD}iso:\n  output: _build/demo.iso\n  root: _build/root\n{extra_iso}files:\n  - {{ src: static/a.txt, dest: a.txt }}\n"
    )
}

fn small_project(extra_iso: &str) -> Test {
    Test::new()
        .recipe(&small_recipe(extra_iso))
        .file("static/a.txt", "a\n")
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

// ---- 1. outputs never overwrite inputs --------------------------------------------------------

#[test]
fn outputs_never_overwrite_the_recipe_a_source_or_each_other() {
    let test = small_project("");
    let recipe = test.read("recipe.yaml");
    test.run(["build", "recipe.yaml", "-q", "-o", "recipe.yaml"])
        .failure(2)
        .stderr_contains("it is the recipe itself");
    test.run(["build", "recipe.yaml", "-q", "-o", "static/a.txt"])
        .failure(2)
        .stderr_contains("`files:` source");
    test.run([
        "build",
        "recipe.yaml",
        "-q",
        "-o",
        "_build/x/../../recipe.yaml",
    ])
    .failure(2);
    assert_eq!(test.read("recipe.yaml"), recipe, "the recipe is untouched");
    assert_eq!(test.read("static/a.txt"), "a\n");

    // In the recipe: the ISO and its SHA256SUM on one path, reported at the second's line.
    let same = small_project("  sha256sum: _build/demo.iso\n");
    same.run(["build", "recipe.yaml", "-q"])
        .failure(2)
        .stderr_contains("recipe.yaml:8:14")
        .stderr_contains("writes it too");
    let onto_source = small_project("  sha256sum: static/a.txt\n");
    onto_source
        .run(["build", "recipe.yaml", "-q"])
        .failure(2)
        .stderr_contains("`files:` source");
    assert_eq!(onto_source.read("static/a.txt"), "a\n");
    // `--report` onto the recipe, and the ISO onto an existing folder.
    test.run(["build", "recipe.yaml", "-q", "--report", "recipe.yaml"])
        .failure(2)
        .stderr_contains("it is the recipe itself");
    fs_err::create_dir_all(test.path().join("folder/inside")).unwrap();
    test.run(["build", "recipe.yaml", "-q", "-o", "folder"])
        .failure(2)
        .stderr_contains("is an existing folder");
    assert!(test.path().join("folder/inside").is_dir());
    assert_eq!(test.read("recipe.yaml"), recipe);
}

// ---- 2. iso.root is pruned only when isobuild made it -----------------------------------------

#[test]
fn a_tree_isobuild_did_not_make_is_never_pruned() {
    let test = small_project("").file("somewhere/precious.txt", "keep me\n");
    let recipe = small_recipe("").replace("root: _build/root", "root: somewhere");
    test.write("recipe.yaml", &recipe);
    test.run(["build", "recipe.yaml", "-q"])
        .failure(2)
        .stderr_contains("isobuild did not make it")
        .stderr_contains("hint:");
    assert_eq!(test.read("somewhere/precious.txt"), "keep me\n");
    // Nor `layout` into such a folder.
    test.run(["layout", "recipe.yaml", "somewhere", "-q"])
        .failure(2);
    assert_eq!(test.read("somewhere/precious.txt"), "keep me\n");

    // A tree it made is its own: stale files go, and the marker sits beside it.
    let fresh = small_project("");
    fresh.run(["build", "recipe.yaml", "-q"]).success();
    assert!(fresh.path().join("_build/.root.isobuild-tree").is_file());
    fresh.write("_build/root/stale.txt", "old\n");
    fresh.write("static/a.txt", "changed\n");
    fresh.run(["build", "recipe.yaml", "-q"]).success();
    assert!(!fresh.path().join("_build/root/stale.txt").exists());
}

#[test]
fn a_tree_holding_a_task_input_is_refused_at_load() {
    let recipe = format!(
        "{HEAD}iso:\n  root: scripts\n  output: _build/demo.iso\ntasks:\n  - name: gen\n    run: [\"true\"]\n    inputs: [scripts/gen.sh]\n    outputs: []\n"
    );
    let test = Test::new()
        .recipe(&recipe)
        .file("scripts/gen.sh", "echo hi\n");
    test.run(["build", "recipe.yaml", "-q"])
        .failure(2)
        .stderr_contains("recipe.yaml:6:9")
        .stderr_contains("an input of task `gen`");
    assert_eq!(test.read("scripts/gen.sh"), "echo hi\n");
}

// ---- 3. opening a cache cleans only what isobuild made -----------------------------------------

#[test]
fn opening_a_folder_that_is_not_a_cache_deletes_nothing() {
    let test = Test::new()
        .file("tmp/notes.txt", "mine\n")
        .file("other.txt", "x\n");
    test.run(["cache", "ls", "--cache-dir", "."])
        .failure(1)
        .stderr_contains("is not an isobuild cache");
    assert_eq!(test.read("tmp/notes.txt"), "mine\n");
    assert!(
        !test.path().join("blobs-v1").exists(),
        "nothing was created"
    );

    // A cache folder holding only what isobuild writes there (the fingerprints a recipe
    // without images leaves) is isobuild's.
    let fingerprints_only = Test::new();
    fingerprints_only.write(".cache/state-v1/0123/task.json", "{}");
    fingerprints_only.run(["cache", "ls"]).success();
}

#[test]
fn a_cache_whose_tmp_is_a_link_is_refused_and_the_target_kept() {
    let test = Test::new();
    test.run(["cache", "ls"]).success();
    let cache = test.cache_dir();
    assert_eq!(
        fs_err::metadata(cache.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700,
        "tmp/ is private"
    );
    fs_err::remove_dir(cache.join("tmp")).unwrap();
    test.write("elsewhere/put-precious", "keep me\n");
    symlink(&test.path().join("elsewhere"), &cache.join("tmp"));
    test.run(["cache", "ls"])
        .failure(1)
        .stderr_contains("not a symbolic link");
    assert_eq!(test.read("elsewhere/put-precious"), "keep me\n");

    // In a real tmp/, only isobuild's names are cleaned.
    fs_err::remove_file(cache.join("tmp")).unwrap();
    fs_err::create_dir(cache.join("tmp")).unwrap();
    fs_err::set_permissions(cache.join("tmp"), std::fs::Permissions::from_mode(0o700)).unwrap();
    fs_err::write(cache.join("tmp/put-left"), "stray").unwrap();
    fs_err::write(cache.join("tmp/someone-elses"), "keep").unwrap();
    test.run(["cache", "ls"]).success();
    assert!(!cache.join("tmp/put-left").exists());
    assert!(cache.join("tmp/someone-elses").exists());
}

// ---- 4. a planted partial is never written through --------------------------------------------

#[test]
fn a_link_planted_as_a_partial_in_a_shared_cache_is_not_followed() {
    let setup = Setup::new();
    let host = setup.host();
    let test = setup.project();
    test.run(["cache", "ls"]).success();
    let victim = test.path().join("victim.txt");
    fs_err::write(&victim, "33 bytes of someone else's file.\n").unwrap();
    let big = setup.big_layer().clone();
    symlink(
        &victim,
        &test
            .cache_dir()
            .join(format!("tmp/{}.partial", big.digest.hex())),
    );
    crate::faults::layout(&test, &host).success();
    assert_eq!(
        fs_err::read_to_string(&victim).unwrap(),
        "33 bytes of someone else's file.\n",
        "nothing was appended to the link's target"
    );
    crate::faults::assert_cache_sound(&test.cache_dir(), &setup.known_blobs());
}

// ---- 5. outputs that are devices or links are written into ------------------------------------

#[test]
fn an_output_that_is_a_device_or_a_link_is_written_into_not_replaced() {
    let test = small_project("");
    let null = test.path().join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success(), "mknod needs root, which the tests have");
    let report_target = test.path().join("report-target.json");
    fs_err::write(&report_target, "").unwrap();
    let link = test.path().join("report-link");
    symlink(&report_target, &link);

    test.run([
        "build",
        "recipe.yaml",
        "-q",
        "-o",
        "null",
        "--report",
        "report-link",
    ])
    .success();
    let metadata = fs_err::symlink_metadata(&null).unwrap();
    assert!(metadata.file_type().is_char_device(), "still a device node");
    assert_eq!(
        metadata.rdev(),
        fs_err::metadata("/dev/null").unwrap().rdev()
    );
    assert!(
        fs_err::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "still a link"
    );
    let report = fs_err::read_to_string(&report_target).unwrap();
    assert!(
        report.starts_with('{'),
        "the report went through the link: {report}"
    );
    assert!(
        crate::faults::temporaries(test.path()).is_empty(),
        "no temporary file left"
    );
}

// ---- 6. a cache on another filesystem ---------------------------------------------------------

/// A tmpfs mounted on a fresh folder, unmounted when dropped; `None` (after saying why on
/// stderr) when this machine does not let the test mount one.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    #[allow(clippy::print_stderr)]
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m", "isobuild-test"])
            .arg(dir.path())
            .stderr(Stdio::piped())
            .output();
        match status {
            Ok(output) if output.status.success() => Some(Self { dir }),
            Ok(output) => {
                eprintln!(
                    "SKIPPED LOUDLY: cannot mount a tmpfs for the cross-filesystem case: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                None
            }
            Err(error) => {
                eprintln!(
                    "SKIPPED LOUDLY: cannot run mount for the cross-filesystem case: {error}"
                );
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_cache_on_another_filesystem_is_copied_from() {
    let Some(tmpfs) = Tmpfs::mount() else { return };
    let setup = Setup::new();
    let host = setup.host();
    let linked = setup.project();
    crate::faults::layout(&linked, &host).success();

    let test = setup.project();
    let cache = tmpfs.dir.path().join("cache");
    test.run([
        "layout",
        "recipe.yaml",
        "out",
        "-q",
        "--insecure-registry",
        &host,
        "--cache-dir",
        cache.to_str().unwrap(),
    ])
    .success();
    assert_eq!(
        snapshot(&test.path().join("out")),
        snapshot(&linked.path().join("out")),
        "a copied tree is the linked tree"
    );
    test.run(["verify", "out"]).success();
}

// ---- 7. tampered cached blobs never reach a tree ----------------------------------------------

#[test]
fn a_tampered_cached_blob_never_reaches_the_tree() {
    let setup = Setup::new();
    let host = setup.host();
    let first = setup.project();
    crate::faults::layout(&first, &host).success();
    let clean = snapshot(&first.path().join("out"));
    let big = setup.big_layer().clone();
    let cached = first
        .cache_dir()
        .join("blobs-v1/sha256")
        .join(big.digest.hex());

    // A flipped byte (in the cache's inode, which the first tree shares).
    let mut bytes = fs_err::read(&cached).unwrap();
    bytes[1000] ^= 0xff;
    fs_err::remove_file(&cached).unwrap();
    fs_err::write(&cached, &bytes).unwrap();
    let second = setup.project();
    let cache = first.cache_dir();
    let shared = ["--cache-dir", cache.to_str().unwrap()];
    let run = |test: &Test| {
        let mut args = vec!["layout", "recipe.yaml", "out", "-q", "--insecure-registry"];
        args.push(&host);
        args.extend(shared);
        test.run(args)
    };
    run(&second)
        .failure(1)
        .stderr_contains("does not match its digest");
    // It was removed, so the next run fetches it again and the tree is right.
    run(&second).success();
    assert_eq!(snapshot(&second.path().join("out")), clean);

    // A link to another file in place of a blob.
    let passwd = first.path().join("passwd");
    fs_err::write(&passwd, "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs_err::remove_file(&cached).unwrap();
    symlink(&passwd, &cached);
    let third = setup.project();
    run(&third).failure(1);
    run(&third).success();
    assert_eq!(snapshot(&third.path().join("out")), clean);
    third.run(["verify", "out"]).success();
}

// ---- 8. a chmod in one tree never changes the next --------------------------------------------

#[test]
fn a_chmod_in_a_tree_is_undone_and_verify_sees_it() {
    let setup = Setup::new();
    let host = setup.host();
    let first = setup.project();
    crate::faults::layout(&first, &host).success();
    let big = setup.big_layer().clone();
    let layer = first
        .path()
        .join("out/images/big/1.0")
        .join(big.digest.hex());
    fs_err::set_permissions(&layer, std::fs::Permissions::from_mode(0o600)).unwrap();
    first
        .run(["verify", "out"])
        .failure(1)
        .stderr_contains("has mode 0600");

    let second = setup.project();
    let shared = first.cache_dir();
    second
        .run([
            "layout",
            "recipe.yaml",
            "out",
            "-q",
            "--insecure-registry",
            &host,
            "--cache-dir",
            shared.to_str().unwrap(),
        ])
        .success();
    let placed = second
        .path()
        .join("out/images/big/1.0")
        .join(big.digest.hex());
    assert_eq!(
        fs_err::metadata(&placed).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    second.run(["verify", "out"]).success();
}

// ---- 10. every ISO path has one writer --------------------------------------------------------

#[test]
fn overlapping_iso_paths_are_refused_at_load_naming_both_entries() {
    let cases = [
        (
            "files:\n  - { src: static/, dest: static }\n  - { src: static/a.txt, dest: static/a.txt }\n",
            "`static/a.txt` is inside `static`, written by `files[0].dest` (line 6, column 27)",
        ),
        (
            "files:\n  - { src: static/a.txt, dest: x }\n  - { src: static/a.txt, dest: x/y }\n",
            "`x/y` is inside `x`",
        ),
        (
            "images:\n  list:\n    - { name: alpha, ref: \"docker-archive:alpha.tar\", tag: \"1.0\", archive: images/beta/1.0/a.tar }\n    - { name: beta, ref: \"docker-archive:beta.tar\", tag: \"1.0\" }\n",
            "`images/beta/1.0` holds `images/beta/1.0/a.tar`, written by `images.list[0].archive`",
        ),
        (
            "images:\n  registry_config: { path: a.txt, common_path: common.inc, server_root: /srv }\n  list: []\nfiles:\n  - { src: static/a.txt, dest: a.txt }\n",
            "`a.txt` is also written by",
        ),
    ];
    for (section, message) in cases {
        let test = Test::new()
            .recipe(&format!("{HEAD}{section}"))
            .file("static/a.txt", "a\n")
            .file("alpha.tar", "")
            .file("beta.tar", "");
        test.run(["build", "recipe.yaml", "-q"])
            .failure(2)
            .stderr_contains(message)
            .stderr_contains("one writer");
    }
}

// ---- 11. killed builds kill their commands; SIGTERM stops like Ctrl-C -------------------------

/// A recipe whose task records its pid, then waits for `go` (with no check of its parent).
fn waiting_task_project() -> Test {
    let recipe = format!(
        "{HEAD}iso:\n  output: _build/demo.iso\n  root: _build/root\nfiles:\n  - {{ src: _build/gen/stamp, dest: stamp.txt }}\ntasks:\n  - name: slow\n    run: [sh, -c, 'echo $$ > task.pid; (sleep 1000 & echo $! > grandchild.pid; wait) & while [ ! -e go ]; do sleep 0.05; done; mkdir -p _build/gen; echo done > _build/gen/stamp']\n    outputs: [_build/gen/stamp]\n"
    );
    Test::new().recipe(&recipe)
}

fn spawn_build(test: &Test) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_isobuild"))
        .args(["build", "recipe.yaml", "-q"])
        .current_dir(test.path())
        .env("ISOBUILD_CACHE_DIR", test.cache_dir())
        .env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: &str) -> bool {
    // A zombie (dead, not yet reaped by its new parent) counts as dead.
    fs_err::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn read_pid(test: &Test, name: &str) -> String {
    let path = test.path().join(name);
    wait_until(&format!("{name} is written"), || {
        fs_err::read_to_string(&path).is_ok_and(|text| text.ends_with('\n'))
    });
    fs_err::read_to_string(&path).unwrap()
}

#[test]
fn a_command_task_dies_with_a_killed_build() {
    let test = waiting_task_project();
    let mut child = spawn_build(&test);
    let task = read_pid(&test, "task.pid");
    assert!(alive(&task));
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("the orphaned task is gone", || !alive(&task));
    // It never wakes up to write into the tree behind the next run's back.
    test.write("go", "");
    test.run(["build", "recipe.yaml", "-q"]).success();
    let grandchild = read_pid(&test, "grandchild.pid");
    wait_until("the task's own children are gone", || !alive(&grandchild));
}

#[test]
fn sigterm_stops_a_build_like_ctrl_c_and_exits_143() {
    let test = waiting_task_project();
    let mut child = spawn_build(&test);
    let task = read_pid(&test, "task.pid");
    let grandchild = read_pid(&test, "grandchild.pid");
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "SIGTERM exits with 143");
    wait_until("the command is gone", || !alive(&task));
    wait_until("the command's children are gone", || !alive(&grandchild));
    assert!(!test.path().join("_build/demo.iso").exists());
    assert!(crate::faults::temporaries(test.path()).is_empty());
}

#[test]
fn a_late_write_to_a_task_output_makes_the_task_run_again() {
    let recipe = format!(
        "{HEAD}iso:\n  output: _build/demo.iso\n  root: _build/root\nfiles:\n  - {{ src: _build/gen/stamp, dest: stamp.txt }}\ntasks:\n  - name: gen\n    run: [sh, -c, 'mkdir -p _build/gen; echo fresh > _build/gen/stamp']\n    outputs: [_build/gen/stamp]\n"
    );
    let test = Test::new().recipe(&recipe);
    test.run(["build", "recipe.yaml", "-q"]).success();
    test.write("_build/gen/stamp", "late write\n");
    test.run(["build", "recipe.yaml", "-v"])
        .success()
        .stderr_contains("content of the outputs changed");
    assert_eq!(test.read("_build/root/stamp.txt"), "fresh\n");
}

// ---- late or false errors ---------------------------------------------------------------------

#[test]
fn values_iso_9660_cannot_hold_fail_at_load() {
    let cases: [(String, &str); 6] = [
        (
            format!("{HEAD}iso:\n  volume_id: \"{}\"\n", "é".repeat(20)),
            "40 bytes long in UTF-8 (20 characters)",
        ),
        (
            "isobuild: 1\nname: Demo\nversion: 1.0.0\nepoch: 5869584000\n".to_owned(),
            "recipe.yaml:4:8",
        ),
        (
            "isobuild: 1\nname: \"De\\nmo\"\nversion: 1.0.0\n".to_owned(),
            "control character",
        ),
        (
            format!("{HEAD}files:\n  - {{ src: a.txt, dest: \"a\\nb\" }}\n"),
            "control character",
        ),
        (
            format!("{HEAD}files:\n  - {{ src: a.txt, dest: x.isobuild-tmp }}\n"),
            "isobuild's temporary files",
        ),
        (
            format!(
                "{HEAD}files:\n  - {{ src: a.txt, dest: {} }}\n",
                "n".repeat(256)
            ),
            "256 bytes long",
        ),
    ];
    for (recipe, message) in cases {
        let test = Test::new().recipe(&recipe).file("a.txt", "a\n");
        test.run(["build", "recipe.yaml", "-q"])
            .failure(2)
            .stderr_contains(message);
    }
    // `SOURCE_DATE_EPOCH` is held to the same range.
    for epoch in ["-1", "5869584000"] {
        let run = Test::new()
            .recipe(&small_recipe(""))
            .file("static/a.txt", "a\n")
            .env("SOURCE_DATE_EPOCH", epoch);
        run.run(["build", "recipe.yaml", "-q"])
            .failure(2)
            .stderr_contains("SOURCE_DATE_EPOCH");
    }
}

#[test]
fn a_dest_name_of_255_bytes_builds() {
    let name = "n".repeat(255);
    let recipe = format!(
        "{HEAD}iso:\n  output: _build/demo.iso\n  root: _build/root\nfiles:\n  - {{ src: a.txt, dest: {name} }}\n"
    );
    let test = Test::new().recipe(&recipe).file("a.txt", "a\n");
    test.run(["build", "recipe.yaml", "-q"]).success();
    assert_eq!(test.read(&format!("_build/root/{name}")), "a\n");
}

#[test]
fn an_interrupted_builds_temporary_beside_a_long_output_is_cleaned() {
    // The ISO's own name is long: its temporary file's name is cut to fit, and found again.
    let output = format!("_build/{}.iso", "o".repeat(240));
    let test = small_project("");
    test.write(
        &format!(
            "_build/.{}.abc123.isobuild-tmp",
            &output["_build/".len()..][..200]
        ),
        "half",
    );
    test.run(["build", "recipe.yaml", "-q", "-o", &output])
        .success();
    assert!(test.path().join(&output).is_file());
    assert!(crate::faults::temporaries(&test.path().join("_build")).is_empty());
}

/// Two builds of one project that use different caches still take turns on the tree.
#[test]
fn two_builds_of_one_tree_with_different_caches_take_turns() {
    let setup = Setup::new();
    let host = setup.host();
    let test = Test::new()
        .recipe(
            &(recipe(&host, false)
                + "iso:\n  output: _build/test.iso\n  root: _build/root\nfiles:\n  - { src: _build/gen/stamp, dest: stamp.txt }\ntasks:\n  - name: slow\n    run: [sh, -c, 'touch started; while [ ! -e go ]; do sleep 0.05; done; mkdir -p _build/gen; echo done > _build/gen/stamp']\n    outputs: [_build/gen/stamp]\n"),
        )
        .env("ISOBUILD_HTTP_TIMEOUT", crate::faults::TIMEOUT);
    let spawn = |cache: &str, progress: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_isobuild"));
        command
            .args(["build", "recipe.yaml", "--insecure-registry", &host])
            .args(if progress {
                &["--progress", "plain"][..]
            } else {
                &["-q"][..]
            })
            .current_dir(test.path())
            .env("ISOBUILD_CACHE_DIR", test.path().join(cache))
            .env("NO_COLOR", "1")
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.spawn().unwrap()
    };
    let mut first = spawn("cache-a", false);
    wait_until("the first build runs its task", || {
        if let Ok(Some(status)) = first.try_wait() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            panic!("the first build ended ({status}):\n{stderr}");
        }
        test.path().join("started").exists()
    });
    let mut second = spawn("cache-b", true);
    let mut stderr = String::new();
    {
        use std::io::Read as _;
        let pipe = second.stderr.as_mut().unwrap();
        let mut byte = [0u8; 1];
        // Read until the second build says it waits: it must, before the first finishes.
        while !stderr.contains("waiting for another isobuild writing") {
            let read = pipe.read(&mut byte).unwrap();
            assert!(
                read > 0,
                "the second build ended without waiting:\n{stderr}"
            );
            stderr.push(char::from(byte[0]));
        }
    }
    test.write("go", "");
    for child in [&mut first, &mut second] {
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "a build failed");
    }
    let iso = Test::new()
        .recipe(&test.read("recipe.yaml"))
        .env("ISOBUILD_HTTP_TIMEOUT", crate::faults::TIMEOUT);
    iso.write("go", "");
    iso.run(["build", "recipe.yaml", "-q", "--insecure-registry", &host])
        .success();
    assert_eq!(
        fs_err::read(test.path().join("_build/test.iso")).unwrap(),
        fs_err::read(iso.path().join("_build/test.iso")).unwrap(),
        "the ISO is the ISO of one build alone"
    );
}

// ---- 12–16. bounded bodies, deadlines, the realm's scheme, scrubbed secrets -----------------

/// `layout` of the test set from `setup`'s proxy, one try per request, 1 s timeouts.
fn layout_once(test: &Test, host: &str, extra: &[&str]) -> crate::harness::Run {
    let mut args = vec![
        "layout",
        "recipe.yaml",
        "out",
        "-q",
        "--insecure-registry",
        host,
    ];
    args.extend_from_slice(extra);
    test.run(args)
}

fn one_try(setup: &Setup) -> Test {
    setup.project().env("ISOBUILD_HTTP_RETRIES", "1")
}

/// A `401` on `/v2/` asking for a token at `realm`.
fn challenge(realm: &str) -> crate::harness::proxy::Fault {
    crate::harness::proxy::Fault::Status {
        status: 401,
        headers: vec![(
            "WWW-Authenticate".to_owned(),
            format!(r#"Bearer realm="{realm}",service="isobuild-test""#),
        )],
        body: br#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#.to_vec(),
    }
}

#[test]
fn an_endless_token_answer_is_cut_off() {
    let setup = Setup::new();
    let host = setup.host();
    setup
        .proxy
        .fault("/v2/", challenge(&format!("http://{host}/token")), 1);
    setup.proxy.fault(
        "/token",
        crate::harness::proxy::Fault::Flood {
            headers: Vec::new(),
            len: 1 << 30,
            declare: false,
        },
        1,
    );
    let test = one_try(&setup);
    layout_once(&test, &host, &[])
        .failure(1)
        .stderr_contains("its token server sent more than");
    let sent: u64 = setup
        .proxy
        .requests("GET", "/token")
        .iter()
        .map(crate::harness::proxy::Seen::sent)
        .sum();
    assert!(
        sent < 64 << 20,
        "the token answer was read on: {sent} bytes"
    );
}

#[test]
fn a_token_server_over_plain_http_on_a_secure_host_gets_no_login() {
    let setup = Setup::new();
    let host = setup.host();
    // `localhost` is not the `--insecure-registry` host (`127.0.0.1:…`).
    let port = host.rsplit(':').next().unwrap();
    setup.proxy.fault(
        "/v2/",
        challenge(&format!("http://localhost:{port}/token")),
        1,
    );
    let test = one_try(&setup);
    layout_once(&test, &host, &[])
        .failure(1)
        .stderr_contains("is not HTTPS")
        .stderr_contains("--insecure-registry");
    assert_eq!(
        setup.proxy.count("GET", "/token"),
        0,
        "no request to the realm"
    );
}

#[test]
fn a_manifest_trickled_byte_by_byte_meets_a_deadline() {
    let setup = Setup::new();
    let host = setup.host();
    setup.proxy.fault(
        "/manifests/",
        crate::harness::proxy::Fault::Throttle {
            chunk: 1,
            pause: Duration::from_millis(400),
        },
        100,
    );
    let test = one_try(&setup);
    layout_once(&test, &host, &[])
        .failure(1)
        .stderr_contains("no complete answer within");
}

#[test]
fn a_registry_echoing_the_token_has_it_scrubbed_from_stderr_and_the_report() {
    const TOKEN: &str = "tok-5f1c0b9e-echoed-secret";
    let setup = Setup::new();
    let host = setup.host();
    setup.proxy.require_bearer(TOKEN);
    setup.proxy.fault(
        "/manifests/",
        crate::harness::proxy::Fault::Status {
            status: 400,
            headers: Vec::new(),
            body: format!(r#"{{"errors":[{{"code":"BAD","message":"bad token {TOKEN}"}}]}}"#)
                .into_bytes(),
        },
        100,
    );
    let test = one_try(&setup);
    let run = layout_once(&test, &host, &["--report", "report.json"]).failure(1);
    assert!(!run.stderr.contains(TOKEN), "the token was printed:\n{run}");
    assert!(run.stderr.contains("<redacted>"), "{run}");
    // The report is written although resolution failed, and holds no token either.
    let report = test.read("report.json");
    assert!(report.contains("resolve images"), "{report}");
    assert!(
        !report.contains(TOKEN),
        "the token is in the report:\n{report}"
    );
}

#[test]
fn a_stopped_process_holding_a_partial_is_taken_over() {
    let setup = Setup::new();
    let host = setup.host();
    let big = setup.big_layer().clone();
    setup.proxy.fault(
        &format!("/blobs/{}", big.digest),
        crate::harness::proxy::Fault::Hold(1_500_000),
        1,
    );
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let first = setup.project();
    let mut stopped = Command::new(env!("CARGO_BIN_EXE_isobuild"))
        .args([
            "layout",
            "recipe.yaml",
            "out",
            "-q",
            "--insecure-registry",
            &host,
        ])
        .current_dir(first.path())
        .env("ISOBUILD_CACHE_DIR", &cache)
        .env("ISOBUILD_HTTP_TIMEOUT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    setup.proxy.wait_held(1, Duration::from_secs(20));
    let pid = stopped.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let second = setup.project();
    let run = second.run([
        "layout",
        "recipe.yaml",
        "out",
        "--insecure-registry",
        &host,
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    let _ = stopped.kill();
    let _ = stopped.wait();
    let run = run.success();
    assert!(
        run.stderr
            .contains("waiting for another isobuild process downloading blob"),
        "the wait is said at default verbosity\n{run}"
    );
    assert!(run.stderr.contains("downloading it here instead"), "{run}");
    second.run(["verify", "out"]).success();
}

#[test]
fn replace_and_recipes_are_bounded() {
    // `replace` of a 1 MB file whose every byte becomes 100.
    let recipe = format!(
        "{HEAD}files:\n  - {{ src: big.txt, dest: big.txt, replace: {{ \"a\": \"{}\" }} }}\n",
        "b".repeat(100)
    );
    let test = Test::new()
        .recipe(&recipe)
        .file("big.txt", &"a".repeat(1 << 20));
    test.run(["layout", "recipe.yaml", "out", "-q"])
        .failure(1)
        .stderr_contains("`replace` would make");
    assert!(!test.path().join("out/big.txt").exists());

    // A recipe that is an endless device (a `/dev/zero` made here, never the real one).
    let zero = test.path().join("zero");
    let made = Command::new("mknod")
        .arg(&zero)
        .args(["c", "1", "5"])
        .status()
        .unwrap();
    assert!(made.success(), "mknod needs root, which the tests have");
    test.run(["build", "zero", "-q"])
        .failure(2)
        .stderr_contains("larger than");

    // A recipe that is not UTF-8 says where.
    fs_err::write(
        test.path().join("latin1.yaml"),
        b"isobuild: 1\nname: Caf\xe9\nversion: 1.0.0\n",
    )
    .unwrap();
    test.run(["build", "latin1.yaml", "-q"])
        .failure(2)
        .stderr_contains("latin1.yaml:2:10")
        .stderr_contains("not UTF-8");
}

// ---- misleading messages ----------------------------------------------------------------------

#[test]
fn a_corrupt_cached_manifest_offline_says_corrupt() {
    let setup = Setup::new();
    let host = setup.host();
    let test = setup.project();
    crate::faults::layout(&test, &host).success();
    let manifest = test
        .cache_dir()
        .join("blobs-v1/sha256")
        .join(setup.big.digest.hex());
    fs_err::write(&manifest, b"{\"not\": \"it\"}").unwrap();
    fs_err::remove_dir_all(test.path().join("out")).unwrap();
    test.run(["layout", "recipe.yaml", "out", "-q", "--offline"])
        .failure(1)
        .stderr_contains("does not match its digest");
}

// ---- trials (run on demand) -------------------------------------------------------------------

/// A pseudo-random delay in `0..max_ms` milliseconds, from a seed that moves each call.
fn random_delay(seed: &mut u64, max_ms: u64) -> Duration {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    Duration::from_millis((*seed >> 33) % max_ms)
}

fn trial_count() -> usize {
    std::env::var("ISOBUILD_TRIALS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20)
}

/// The recipe of the trials: the test set, `big`, a file tree and an ISO.
fn trial_project(host: &str) -> Test {
    Test::new()
        .recipe(
            &(recipe(host, true)
                + "iso:\n  output: _build/test.iso\n  root: _build/root\n  sha256sum: _build/SHA256SUM\nfiles:\n  - { src: static/, dest: static/ }\n"),
        )
        .file("static/a.txt", "a\n")
        .file("static/sub/b.txt", &"b".repeat(100_000))
}

fn trial_build(test: &Test, host: &str, cache: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_isobuild"))
        .args(["build", "recipe.yaml", "-q", "--insecure-registry", host])
        .current_dir(test.path())
        .env("ISOBUILD_CACHE_DIR", cache)
        .env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            fs_err::File::create(test.path().join("stderr.log"))
                .unwrap()
                .into_parts()
                .0,
        )
        .spawn()
        .unwrap()
}

fn iso_of(test: &Test) -> Vec<u8> {
    fs_err::read(test.path().join("_build/test.iso")).unwrap_or_default()
}

/// `kill -9` at a random moment of a build (downloads slowed so it lands anywhere), then a
/// rerun: the ISO must be the ISO of a build never killed, every time.
#[test]
#[ignore = "trial loop: cargo nextest run --run-ignored only -E 'test(trials_)'"]
#[allow(clippy::print_stderr)]
fn trials_kill_9_at_random_then_rerun_gives_the_same_iso() {
    let setup = Setup::new();
    let host = setup.host();
    let clean_project = trial_project(&host);
    clean_project
        .run(["build", "recipe.yaml", "-q", "--insecure-registry", &host])
        .success();
    let clean = iso_of(&clean_project);
    let mut seed = u64::from(std::process::id());
    let (trials, mut identical) = (trial_count(), 0);
    for _ in 0..trials {
        setup.proxy.clear_faults();
        setup.proxy.fault(
            "/blobs/",
            crate::harness::proxy::Fault::Throttle {
                chunk: 256 * 1024,
                pause: Duration::from_millis(20),
            },
            1000,
        );
        let test = trial_project(&host);
        let mut child = trial_build(&test, &host, &test.cache_dir());
        std::thread::sleep(random_delay(&mut seed, 1500));
        let _ = child.kill();
        let _ = child.wait();
        setup.proxy.clear_faults();
        let rerun = test.run(["build", "recipe.yaml", "-q", "--insecure-registry", &host]);
        if rerun.code == Some(0) && iso_of(&test) == clean {
            identical += 1;
        } else {
            eprintln!("trial differs:\n{rerun}");
        }
    }
    eprintln!("kill -9 then rerun: {identical}/{trials} identical ISOs");
    assert_eq!(identical, trials);
}

/// Two projects sharing one cache build at once and one is killed at a random moment; and
/// two builds of one project with different caches run at once. Every ISO must be the clean
/// one.
#[test]
#[ignore = "trial loop: cargo nextest run --run-ignored only -E 'test(trials_)'"]
#[allow(clippy::print_stderr)]
fn trials_concurrent_builds_with_one_killed_give_the_same_iso() {
    let setup = Setup::new();
    let host = setup.host();
    let clean_project = trial_project(&host);
    clean_project
        .run(["build", "recipe.yaml", "-q", "--insecure-registry", &host])
        .success();
    let clean = iso_of(&clean_project);
    let mut seed = u64::from(std::process::id()) ^ 0x9e37;
    let trials = trial_count();
    let (mut shared_ok, mut two_caches_ok) = (0, 0);
    for _ in 0..trials {
        setup.proxy.clear_faults();
        setup.proxy.fault(
            "/blobs/",
            crate::harness::proxy::Fault::Throttle {
                chunk: 256 * 1024,
                pause: Duration::from_millis(20),
            },
            1000,
        );
        let cache = tempfile::tempdir().unwrap();
        let (killed, survivor) = (trial_project(&host), trial_project(&host));
        let mut victim = trial_build(&killed, &host, cache.path());
        let mut other = trial_build(&survivor, &host, cache.path());
        std::thread::sleep(random_delay(&mut seed, 1500));
        let _ = victim.kill();
        let _ = victim.wait();
        let survived = other.wait().unwrap().code() == Some(0);
        setup.proxy.clear_faults();
        let rerun = killed.run([
            "build",
            "recipe.yaml",
            "-q",
            "--insecure-registry",
            &host,
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ]);
        if survived
            && rerun.code == Some(0)
            && iso_of(&survivor) == clean
            && iso_of(&killed) == clean
        {
            shared_ok += 1;
        } else {
            eprintln!(
                "shared-cache trial differs (survivor ok: {survived}):\n{rerun}\nsurvivor's stderr:\n{}",
                survivor.read("stderr.log")
            );
        }

        // One project, two caches, two builds at once: they take turns on the tree.
        let project = trial_project(&host);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut first = trial_build(&project, &host, a.path());
        let mut second = trial_build(&project, &host, b.path());
        let first_ok = first.wait().unwrap().code() == Some(0);
        let second_ok = second.wait().unwrap().code() == Some(0);
        if first_ok && second_ok && iso_of(&project) == clean {
            two_caches_ok += 1;
        } else {
            eprintln!("two-caches trial differs: {first_ok} {second_ok}");
        }
    }
    eprintln!(
        "shared cache, one killed: {shared_ok}/{trials} identical; one tree, two caches: {two_caches_ok}/{trials} identical"
    );
    assert_eq!((shared_ok, two_caches_ok), (trials, trials));
}

#[test]
fn a_blob_changed_in_place_after_its_task_ran_never_reaches_the_iso() {
    let setup = Setup::new();
    let host = setup.host();
    let test = trial_project(&host);
    let build = || test.run(["build", "recipe.yaml", "-q", "--insecure-registry", &host]);
    build().success();
    // In place: the tree's file and the cache's are one inode, and the image task stays up
    // to date.
    let big = setup.big_layer().clone();
    let layer = test
        .path()
        .join("_build/root/images/big/1.0")
        .join(big.digest.hex());
    let mut file = fs_err::OpenOptions::new().write(true).open(&layer).unwrap();
    std::io::Write::write_all(&mut file, b"tampered").unwrap();
    drop(file);
    fs_err::remove_file(test.path().join("_build/test.iso")).unwrap();
    build()
        .failure(1)
        .stderr_contains("does not match its digest");
    assert!(!test.path().join("_build/test.iso").exists());
}

#[test]
fn runs_creating_one_new_cache_at_once_all_open_it() {
    for _ in 0..5 {
        let test = Test::new();
        let cache = test.path().join("fresh");
        let children: Vec<_> = (0..6)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_isobuild"))
                    .args(["cache", "ls", "--cache-dir"])
                    .arg(&cache)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
