//! Container tasks and image builds through real buildah (chroot isolation, vfs storage).
//!
//! The images are the tests' own: a base whose only layer is Debian's `busybox-static`
//! (pushed to a real docker-registry), and images built on it by isobuild itself.

use std::path::Path;

use serde_json::Value;

use crate::harness::Test;
use crate::harness::images::{Format, Image, Layer, Pusher};
use crate::harness::peers::Registry;

/// The applets the tests' commands use, as links to busybox.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "mkdir", "nc", "sleep", "touch", "printf", "grep", "ls", "rm", "head",
];

/// A one-layer image: `/bin/busybox` (Debian's `busybox-static`) and its applet links,
/// plus `marker` with `marker` in it, so that two bases differ.
pub(crate) fn busybox_image(marker: &str) -> Image {
    let busybox = fs_err::read("/bin/busybox")
        .expect("Debian's busybox-static is installed (`apt-get install busybox-static`)");
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_size(0);
        tar.append_data(&mut header, path, std::io::empty())
            .unwrap();
    };
    for (path, mode) in [("bin/", 0o755), ("tmp/", 0o1777), ("out/", 0o755)] {
        dir(&mut tar, path, mode);
    }
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_size(busybox.len() as u64);
    tar.append_data(&mut header, "bin/busybox", busybox.as_slice())
        .unwrap();
    for applet in APPLETS {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_mtime(0);
        header.set_size(0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_size(marker.len() as u64);
    tar.append_data(&mut header, "marker", marker.as_bytes())
        .unwrap();
    let tar = tar.into_inner().unwrap();
    Image::new(Format::Oci, "amd64", vec![Layer::from_tar(&tar)])
}

/// A registry holding `test/busybox:1`; returns it and the image.
fn registry_with_base(marker: &str) -> (Registry, Image) {
    let registry = Registry::start();
    let image = busybox_image(marker);
    Pusher::new(&registry).push_image("test/busybox", Some("1"), &image);
    (registry, image)
}

fn recipe(host: &str, digest: &str, tasks: &str) -> String {
    format!(
        "isobuild: 1\nname: t\nversion: '1'\nepoch: 1700000000\nimages:\n  list:\n    \
         - {{ name: busybox, ref: '{host}/test/busybox:1', digest: '{digest}', ship: false }}\n\
         tasks:\n{tasks}"
    )
}

fn layout(test: &Test, host: &str, extra: &[&str]) -> crate::harness::Run {
    let mut args = vec![
        "layout",
        "recipe.yaml",
        "tree",
        "-q",
        "--insecure-registry",
        host,
        "--report",
        "report.json",
    ];
    args.extend_from_slice(extra);
    test.run(args)
}

fn status(test: &Test, task: &str) -> String {
    let json: Value = serde_json::from_str(&test.read("report.json")).unwrap();
    json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == task)
        .map_or_else(
            || panic!("no task `{task}` in the report: {json}"),
            |t| t["status"].as_str().unwrap().to_owned(),
        )
}

const HELLO: &str = r#"  - name: hello
    image: busybox
    run: [sh, -c, 'cat /in/greeting /marker > /out/hello.txt; echo "$SOURCE_DATE_EPOCH $(pwd)" >> /out/hello.txt']
    inputs: [greeting]
    outputs: [out/hello.txt]
    workdir: /tmp
    mounts:
      - { src: greeting, dest: /in/greeting }
      - { src: out, dest: /out }
"#;

#[test]
fn a_container_task_writes_its_output_and_reruns_only_when_its_image_changes() {
    let (registry, base) = registry_with_base("one");
    let host = registry.host();
    let test = Test::new()
        .recipe(&recipe(&host, &base.digest.to_string(), HELLO))
        .file("greeting", "hi\n");
    layout(&test, &host, &[]).success();
    assert_eq!(test.read("out/hello.txt"), "hi\none1700000000 /tmp\n");
    assert_eq!(status(&test, "task hello"), "ran");

    // Nothing changed: no container is started.
    fs_err::write(test.path().join("out/hello.txt"), "kept\n").ok();
    fs_err::write(
        test.path().join("out/hello.txt"),
        "hi\none1700000000 /tmp\n",
    )
    .unwrap();
    layout(&test, &host, &["--offline"]).success();
    assert_eq!(status(&test, "task hello"), "up-to-date");

    // Another image under the same tag, pinned by its digest: the task runs again in it.
    let other = busybox_image("two");
    Pusher::new(&registry).push_image("test/busybox", Some("1"), &other);
    test.write(
        "recipe.yaml",
        &recipe(&host, &other.digest.to_string(), HELLO),
    );
    layout(&test, &host, &[]).success();
    assert_eq!(status(&test, "task hello"), "ran");
    assert_eq!(test.read("out/hello.txt"), "hi\ntwo1700000000 /tmp\n");
    assert_no_session_left(&test);
}

#[test]
fn a_failing_command_names_the_image_the_command_and_its_exit_code() {
    let (registry, base) = registry_with_base("one");
    let host = registry.host();
    let tasks = r"  - name: broken
    image: busybox
    run: [sh, -c, 'echo first words; echo last words >&2; exit 3']
    outputs: [out/never.txt]
    mounts: [{ src: out, dest: /out }]
";
    let test = Test::new().recipe(&recipe(&host, &base.digest.to_string(), tasks));
    layout(&test, &host, &[])
        .failure(1)
        .stderr_contains("image `busybox`")
        .stderr_contains("command `sh -c echo first words; echo last words >&2; exit 3`")
        .stderr_contains("exited with status 3")
        .stderr_contains("last words");
    assert_no_session_left(&test);
}

#[test]
fn undeclared_outputs_and_writes_to_inputs_fail() {
    let (registry, base) = registry_with_base("one");
    let host = registry.host();
    let tasks = r"  - name: sloppy
    image: busybox
    run: [sh, -c, 'echo a > /out/a.txt; echo b > /out/b.txt']
    outputs: [out/a.txt]
    mounts: [{ src: out, dest: /out }]
  - name: writes-input
    image: busybox
    run: [sh, -c, 'echo x > /in/greeting']
    inputs: [greeting]
    mounts: [{ src: greeting, dest: /in/greeting }]
";
    let test = Test::new()
        .recipe(&recipe(&host, &base.digest.to_string(), tasks))
        .file("greeting", "hi\n");
    layout(&test, &host, &["--keep-going"])
        .failure(1)
        .stderr_contains(
            "task `sloppy` wrote files it does not declare in `outputs` (removed): out/b.txt",
        )
        .stderr_contains("Read-only file system");
    assert!(!test.path().join("out/b.txt").exists());
    assert_eq!(test.read("greeting"), "hi\n");
}

#[test]
fn without_network_true_the_container_has_no_network() {
    let (registry, base) = registry_with_base("one");
    let host = registry.host();
    let port = host.rsplit(':').next().unwrap();
    let probe = format!(
        "if printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 {port} | grep -q '200 OK'; then echo reached; else echo unreachable; fi"
    );
    let tasks = format!(
        "  - name: offline\n    image: busybox\n    run: [sh, -c, \"{probe} > /out/offline.txt\"]\n    \
         outputs: [out/offline.txt]\n    mounts: [{{ src: out, dest: /out }}]\n  \
         - name: online\n    image: busybox\n    network: true\n    run: [sh, -c, \"{probe} > /out/online.txt\"]\n    \
         outputs: [out/online.txt]\n    mounts: [{{ src: out, dest: /out }}]\n"
    );
    let test = Test::new().recipe(&recipe(&host, &base.digest.to_string(), &tasks));
    layout(&test, &host, &[]).success();
    assert_eq!(test.read("out/offline.txt"), "unreachable\n");
    assert_eq!(test.read("out/online.txt"), "reached\n");
}

#[test]
fn ctrl_c_kills_the_container_and_leaves_no_temporary_file() {
    let (registry, base) = registry_with_base("one");
    let host = registry.host();
    let tasks = r"  - name: slow
    image: busybox
    run: [sh, -c, 'touch /out/started; exec sleep 4242']
    outputs: [out/done]
    mounts: [{ src: out, dest: /out }]
";
    let test = Test::new().recipe(&recipe(&host, &base.digest.to_string(), tasks));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_isobuild"))
        .args([
            "layout",
            "recipe.yaml",
            "tree",
            "-q",
            "--insecure-registry",
            &host,
        ])
        .current_dir(test.path())
        .env("ISOBUILD_CACHE_DIR", test.cache_dir())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !test.path().join("out/started").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let sleepers = processes_with("sleep 4242");
    assert!(
        sleepers.is_empty(),
        "the container's command still runs: {sleepers:?}"
    );
    assert_no_session_left(&test);
    let leftovers: Vec<_> = walkdir::WalkDir::new(test.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".isobuild-tmp"))
        .map(|e| e.path().to_owned())
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// The pids of processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    fs_err::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            fs_err::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
                String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_storage_of_a_killed_run_is_removed_by_the_next_one() {
    let (registry, base) = registry_with_base("one");
    let host = registry.host();
    let tasks = r"  - name: slow
    image: busybox
    run: [sh, -c, 'touch /out/started; exec sleep 4343']
    outputs: [out/done]
    mounts: [{ src: out, dest: /out }]
";
    let test = Test::new().recipe(&recipe(&host, &base.digest.to_string(), tasks));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_isobuild"))
        .args([
            "layout",
            "recipe.yaml",
            "tree",
            "-q",
            "--insecure-registry",
            &host,
        ])
        .current_dir(test.path())
        .env("ISOBUILD_CACHE_DIR", test.cache_dir())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !test.path().join("out/started").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // SIGKILL skips every cleanup: the command and the storage outlive the run.
    for pid in processes_with("sleep 4343") {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
    }
    let containers = test.cache_dir().join("containers");
    assert!(fs_err::read_dir(&containers).unwrap().count() > 0);
    test.write(
        "recipe.yaml",
        &recipe(&host, &base.digest.to_string(), HELLO),
    );
    test.write("greeting", "hi\n");
    layout(&test, &host, &[]).success();
    assert_no_session_left(&test);
}

/// No buildah storage (and so no container) is left in the cache.
fn assert_no_session_left(test: &Test) {
    let containers = test.cache_dir().join("containers");
    let left: Vec<_> = fs_err::read_dir(&containers)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "buildah storage left behind: {left:?}");
}

const CONTAINERFILE: &str = "ARG BASE
FROM ${BASE} AS first
ARG GREETING
RUN echo \"$GREETING from a RUN step\" > /greeting
FROM HOST/test/busybox:1
COPY --from=first /greeting /greeting
COPY hello.txt /hello.txt
";

fn build_recipe(host: &str, digest: &str, arg: &str) -> String {
    format!(
        "isobuild: 1\nname: t\nversion: '1'\nepoch: 1700000000\nimages:\n  list:\n    \
         - {{ name: busybox, ref: '{host}/test/busybox:1', digest: '{digest}', ship: false }}\n    \
         - name: app\n      tag: '1'\n      build:\n        context: app\n        \
         args: {{ BASE: '{host}/test/busybox@{digest}', {arg}: hi }}\n\
         tasks:\n  - name: use-app\n    image: app\n    \
         run: [sh, -c, 'cat /greeting /hello.txt > /out/app.txt']\n    \
         outputs: [out/app.txt]\n    mounts: [{{ src: out, dest: /out }}]\n"
    )
}

fn build_project(host: &str, digest: &str, arg: &str) -> Test {
    Test::new()
        .recipe(&build_recipe(host, digest, arg))
        .file("app/Containerfile", &CONTAINERFILE.replace("HOST", host))
        .file("app/hello.txt", "hello from the context\n")
}

#[test]
fn an_image_build_takes_its_bases_from_the_cache_and_is_reproducible() {
    let (registry, base) = registry_with_base("one");
    let host = registry.host();
    let digest = base.digest.to_string();
    let first = build_project(&host, &digest, "GREETING");
    let second = build_project(&host, &digest, "GREETING");
    for test in [&first, &second] {
        test.run(["fetch", "recipe.yaml", "-q", "--insecure-registry", &host])
            .success();
    }
    // Every base now comes from the cache: the registry is gone for the builds.
    drop(registry);
    for test in [&first, &second] {
        layout(test, &host, &["--offline"]).success();
        assert_eq!(
            test.read("out/app.txt"),
            "hi from a RUN step\nhello from the context\n"
        );
        assert_eq!(status(test, "build app:1"), "ran");
        assert_no_session_left(test);
    }
    let manifest =
        |test: &Test| fs_err::read(test.path().join("tree/images/app/1/manifest.json")).unwrap();
    assert_eq!(
        manifest(&first),
        manifest(&second),
        "two builds in two cache folders give different images"
    );
    assert!(
        !first.path().join("tree/images/busybox").exists(),
        "ship: false"
    );
    // Again, nothing changed: neither the build nor the task runs.
    layout(&first, &host, &["--offline"]).success();
    assert_eq!(status(&first, "build app:1"), "up-to-date");
    assert_eq!(status(&first, "task use-app"), "up-to-date");
    // The digest, for the record (`--nocapture`).
    let digest = isobuild::reference::Digest::of(&manifest(&first));
    #[allow(clippy::print_stderr)]
    {
        eprintln!("app:1 manifest digest in both trees: {digest}");
    }
}

#[test]
fn a_build_argument_no_arg_declares_is_an_error() {
    let (registry, base) = registry_with_base("one");
    let host = registry.host();
    let test = build_project(&host, &base.digest.to_string(), "GREETNG");
    layout(&test, &host, &[])
        .failure(2)
        .stderr_contains("image `app:1`")
        .stderr_contains("build argument `GREETNG` is not declared by an `ARG`");
}

#[test]
fn a_from_that_is_not_an_image_of_the_recipe_is_an_error() {
    let (registry, base) = registry_with_base("one");
    let host = registry.host();
    let test = build_project(&host, &base.digest.to_string(), "GREETING");
    test.write(
        "app/Containerfile",
        "ARG BASE\nARG GREETING\nFROM docker.io/library/alpine:3.20\nRUN true\n",
    );
    layout(&test, &host, &[]).failure(2).stderr_contains(
        "Containerfile:3: `FROM docker.io/library/alpine:3.20` is not an image of the recipe",
    );
}

/// The real MetalK8s checkout (`../shared/metalk8s`, see its README): every build of the
/// recipe plans against it, so each `FROM` of its Dockerfiles (after image.py's build
/// arguments) is an image of the recipe, and each build argument is declared by an `ARG`.
#[test]
fn every_from_of_the_real_metalk8s_dockerfiles_is_an_image_of_the_recipe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tarball = root.join("../shared/metalk8s/metalk8s-ac251c2f9.tar.gz");
    let scratch = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(scratch.path())
        .status()
        .unwrap();
    assert!(status.success(), "cannot extract {}", tarball.display());
    let checkout = scratch.path().join("metalk8s");
    let run = Test::new()
        .run([
            "graph".to_owned(),
            root.join("recipes/metalk8s.yaml").display().to_string(),
            "--set".to_owned(),
            format!("metalk8s_src={}", checkout.display()),
        ])
        .success();
    let builds = run.stdout.matches("image-build\\n").count();
    let containers = run.stdout.matches("container\\n").count();
    assert_eq!((builds, containers), (12, 6), "{}", run.stdout);
}
