//! Whole builds of recipes with files, templates and command tasks: the tree they produce,
//! task order and bounds, failures, `--keep-going`, and up-to-date reruns.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::harness::Test;

const TREE_RECIPE: &str = r#"isobuild: 1
name: Demo
version: 1.2.3-dev
vars: { short_version: "1.2" }
epoch: 1700000000
iso:
  root: _build/root
files:
  - { src: static/, dest: static/ }
  - { src: scripts/run.sh, dest: run.sh }
  - { src: product.txt.j2, dest: product.txt, template: true }
  - { src: notes.txt, dest: docs/notes.txt, mode: "0600" }
  - { src: _build/gen/generated.txt, dest: generated.txt }
tasks:
  - name: generate
    run: ["sh", "-c", "mkdir -p _build/gen && echo \"$GREETING $(cat gen-input.txt)\" > _build/gen/generated.txt"]
    inputs: ["gen-input.txt"]
    outputs: ["_build/gen/generated.txt"]
    env: { GREETING: hello }
"#;

fn tree_project() -> Test {
    Test::new()
        .recipe(TREE_RECIPE)
        .file("static/a.txt", "a\n")
        .file("static/sub/b.txt", "b\n")
        .file("scripts/run.sh", "#!/bin/sh\necho run\n")
        .executable("scripts/run.sh")
        .file(
            "product.txt.j2",
            "NAME={{ name }}\nVERSION={{ version }}\nSHORT_VERSION={{ vars.short_version }}\nEPOCH={{ epoch }}\n",
        )
        .file("notes.txt", "notes\n")
        .file("gen-input.txt", "world\n")
}

/// Every file under `root`: relative path → (mode, content).
fn tree(root: &Path) -> BTreeMap<String, (String, String)> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.unwrap();
        let relative = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        let mode = format!(
            "{:o}",
            entry.metadata().unwrap().permissions().mode() & 0o7777
        );
        if entry.file_type().is_dir() {
            if !relative.is_empty() {
                files.insert(format!("{relative}/"), (mode, String::new()));
            }
        } else {
            files.insert(
                relative,
                (mode, fs_err::read_to_string(entry.path()).unwrap()),
            );
        }
    }
    files
}

fn report(test: &Test, name: &str) -> Vec<Value> {
    let text = test.read(name);
    let json: Value = serde_json::from_str(&text).unwrap();
    json["tasks"].as_array().unwrap().clone()
}

fn statuses(tasks: &[Value]) -> BTreeMap<String, String> {
    tasks
        .iter()
        .map(|task| {
            (
                task["name"].as_str().unwrap().to_owned(),
                task["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn build_writes_the_expected_tree() {
    let test = tree_project();
    test.run(["build", "recipe.yaml", "--progress", "plain"])
        .success();
    let expected: BTreeMap<String, (String, String)> = [
        ("docs/", "755", ""),
        ("docs/notes.txt", "600", "notes\n"),
        ("generated.txt", "644", "hello world\n"),
        (
            "product.txt",
            "644",
            "NAME=Demo\nVERSION=1.2.3-dev\nSHORT_VERSION=1.2\nEPOCH=1700000000\n",
        ),
        ("run.sh", "755", "#!/bin/sh\necho run\n"),
        ("static/", "755", ""),
        ("static/a.txt", "644", "a\n"),
        ("static/sub/", "755", ""),
        ("static/sub/b.txt", "644", "b\n"),
    ]
    .into_iter()
    .map(|(path, mode, content)| (path.to_owned(), (mode.to_owned(), content.to_owned())))
    .collect();
    pretty_assertions::assert_eq!(tree(&test.path().join("_build/root")), expected);
}

#[test]
fn modes_do_not_depend_on_the_umask() {
    let test = tree_project();
    // The command runs under the same umask; the ISO tree must not.
    let run = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077 && exec '{}' build recipe.yaml -q",
            env!("CARGO_BIN_EXE_isobuild")
        ))
        .current_dir(test.path())
        .env("ISOBUILD_CACHE_DIR", test.cache_dir())
        .status()
        .unwrap();
    assert!(run.success());
    let files = tree(&test.path().join("_build/root"));
    assert_eq!(files["static/sub/"].0, "755");
    assert_eq!(files["static/a.txt"].0, "644");
    assert_eq!(files["run.sh"].0, "755");
}

#[test]
fn second_build_is_up_to_date_and_touching_an_input_reruns_only_downstream() {
    let test = tree_project();
    test.run(["build", "recipe.yaml", "-q", "--report", "first.json"])
        .success();
    let first = statuses(&report(&test, "first.json"));
    assert!(first.values().all(|status| status == "ran"), "{first:?}");

    test.run(["build", "recipe.yaml", "-q", "--report", "second.json"])
        .success();
    let second = statuses(&report(&test, "second.json"));
    assert!(
        second.values().all(|status| status == "up-to-date"),
        "{second:?}"
    );

    // Same content, newer mtime: still up to date (keys hash content, not times).
    test.write("static/a.txt", "a\n");
    test.run(["build", "recipe.yaml", "-q", "--report", "touched.json"])
        .success();
    let touched = statuses(&report(&test, "touched.json"));
    assert!(
        touched.values().all(|status| status == "up-to-date"),
        "{touched:?}"
    );

    test.write("gen-input.txt", "there\n");
    let run = test
        .run([
            "build",
            "recipe.yaml",
            "-v",
            "--progress",
            "plain",
            "--report",
            "third.json",
        ])
        .success();
    let third = statuses(&report(&test, "third.json"));
    let ran: Vec<&String> = third
        .iter()
        .filter(|(_, status)| *status == "ran")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(ran, ["file generated.txt", "iso demo.iso", "task generate"]);
    assert!(
        run.stderr.contains("input gen-input.txt changed"),
        "-v says why:\n{}",
        run.stderr
    );
    assert_eq!(test.read("_build/root/generated.txt"), "hello there\n");
}

#[test]
fn a_deleted_output_is_rebuilt() {
    let test = tree_project();
    test.run(["build", "recipe.yaml", "-q"]).success();
    fs_err::remove_file(test.path().join("_build/root/product.txt")).unwrap();
    test.run(["build", "recipe.yaml", "-q", "--report", "r.json"])
        .success();
    let statuses = statuses(&report(&test, "r.json"));
    assert_eq!(statuses["template product.txt"], "ran");
    assert_eq!(statuses["file static"], "up-to-date");
    assert!(test.path().join("_build/root/product.txt").is_file());
}

/// `count` command tasks that each sleep, in a chain when `chain`.
fn sleepers(count: usize, extra: &str) -> String {
    let mut recipe = String::from("isobuild: 1\nname: t\nversion: '1'\ntasks:\n");
    for i in 0..count {
        recipe.push_str(&format!(
            "  - {{ name: s{i}, run: [sh, -c, 'sleep 0.3; echo {i} >> order.log'] }}\n"
        ));
    }
    recipe.push_str(extra);
    recipe
}

#[test]
fn never_more_than_jobs_tasks_at_once() {
    let test = Test::new().recipe(&sleepers(6, ""));
    test.run([
        "build",
        "recipe.yaml",
        "-q",
        "--jobs",
        "2",
        "--report",
        "r.json",
    ])
    .success();
    let tasks = report(&test, "r.json");
    let spans: Vec<(f64, f64)> = tasks
        .iter()
        .map(|task| {
            (
                task["start"].as_f64().unwrap(),
                task["end"].as_f64().unwrap(),
            )
        })
        .collect();
    let max_overlap = spans
        .iter()
        .map(|&(start, _)| {
            spans
                .iter()
                .filter(|&&(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        max_overlap <= 2,
        "{max_overlap} tasks overlapped with --jobs 2: {spans:?}"
    );
    assert_eq!(test.read("order.log").lines().count(), 6);
}

#[test]
fn dependency_order_is_respected() {
    let recipe = r"isobuild: 1
name: t
version: '1'
tasks:
  - { name: third, run: [sh, -c, 'echo third >> order.log'], after: [second] }
  - { name: first, run: [sh, -c, 'sleep 0.2; echo first >> order.log'] }
  - { name: second, run: [sh, -c, 'echo second >> order.log'], after: [first] }
";
    let test = Test::new().recipe(recipe);
    test.run(["build", "recipe.yaml", "-q", "--jobs", "4"])
        .success();
    assert_eq!(test.read("order.log"), "first\nsecond\nthird\n");
}

const FAILING: &str = r"isobuild: 1
name: t
version: '1'
tasks:
  - { name: broken, run: [sh, -c, 'echo boom >&2; exit 3'] }
  - { name: after-broken, run: [sh, -c, 'touch after-broken.done'], after: [broken] }
  - { name: slow, run: [sh, -c, 'sleep 0.5; touch slow.done'] }
  - { name: after-slow, run: [sh, -c, 'touch after-slow.done'], after: [slow] }
";

#[test]
fn a_failing_task_stops_its_dependants_and_exits_1() {
    let test = Test::new().recipe(FAILING);
    test.run([
        "build",
        "recipe.yaml",
        "-q",
        "--jobs",
        "2",
        "--report",
        "r.json",
    ])
    .failure(1)
    .stderr_contains("task broken: command `sh -c echo boom >&2; exit 3` exited with status 3")
    .stderr_contains("boom");
    assert!(!test.path().join("after-broken.done").exists());
    // Fail-fast: the task that was already running finishes, nothing new starts.
    assert!(test.path().join("slow.done").exists());
    assert!(!test.path().join("after-slow.done").exists());
    let statuses = statuses(&report(&test, "r.json"));
    assert_eq!(statuses["task broken"], "failed");
    assert_eq!(statuses["task after-broken"], "skipped");
    assert_eq!(statuses["task after-slow"], "skipped");
}

#[test]
fn keep_going_finishes_the_independent_branch() {
    let test = Test::new().recipe(FAILING);
    test.run(["build", "recipe.yaml", "-q", "--jobs", "2", "--keep-going"])
        .failure(1);
    assert!(!test.path().join("after-broken.done").exists());
    assert!(test.path().join("after-slow.done").exists());
}

#[test]
fn a_task_that_does_not_write_its_declared_output_fails() {
    let recipe = r"isobuild: 1
name: t
version: '1'
tasks:
  - { name: lazy, run: ['true'], outputs: [out/never.txt] }
";
    Test::new()
        .recipe(recipe)
        .run(["build", "recipe.yaml", "-q"])
        .failure(1)
        .stderr_contains("did not write its declared output")
        .stderr_contains("never.txt");
}

#[test]
fn timings_and_report_are_written() {
    let test = tree_project();
    test.run([
        "build",
        "recipe.yaml",
        "-q",
        "--report",
        "r.json",
        "--timings",
        "t.html",
    ])
    .success();
    let tasks = report(&test, "r.json");
    assert_eq!(tasks.len(), 7, "6 tree tasks and the ISO");
    for task in &tasks {
        for key in ["name", "kind", "start", "end", "status", "bytes"] {
            assert!(task.get(key).is_some(), "{key} missing in {task}");
        }
    }
    let html = test.read("t.html");
    assert!(html.contains("task generate"));
}

#[test]
fn ctrl_c_stops_cleanly() {
    let recipe = r"isobuild: 1
name: t
version: '1'
files:
  - { src: big/, dest: big/ }
tasks:
  - { name: slow, run: [sh, -c, 'echo $$ > slow.pid; exec sleep 30'] }
";
    let test = Test::new().recipe(recipe);
    for i in 0..20 {
        test.write(&format!("big/file-{i}.txt"), &"x".repeat(100_000));
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_isobuild"))
        .args(["build", "recipe.yaml", "-q", "--jobs", "2"])
        .current_dir(test.path())
        .env("ISOBUILD_CACHE_DIR", test.cache_dir())
        .spawn()
        .unwrap();
    let pid_file = test.path().join("slow.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !pid_file.exists() || test.read("slow.pid").trim().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow task never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sleeper = test.read("slow.pid").trim().to_owned();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "interrupted runs exit with 130");
    // The command was killed with the run, not left behind.
    let state = fs_err::read_to_string(format!("/proc/{sleeper}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "sleep still runs: {state}"
    );
    let leftovers: Vec<_> = walkdir::WalkDir::new(test.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .ends_with(".isobuild-tmp")
        })
        .map(|entry| entry.path().to_owned())
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(!test.path().join("_build/t.iso").exists());
}

#[test]
fn files_the_recipe_no_longer_writes_leave_the_tree() {
    let test = tree_project();
    test.run(["build", "recipe.yaml", "-q"]).success();
    let root = test.path().join("_build/root");
    assert!(root.join("static/sub/b.txt").is_file());
    fs_err::remove_file(test.path().join("static/sub/b.txt")).unwrap();
    test.write("_build/root/leftover.txt", "from an older recipe\n");
    test.run(["build", "recipe.yaml", "-q"]).success();
    assert!(
        !root.join("static/sub").exists(),
        "stale file and its empty folder removed"
    );
    assert!(!root.join("leftover.txt").exists());
    assert!(root.join("static/a.txt").is_file());
}

#[test]
fn replace_substitutes_plain_text_placeholders() {
    let recipe = r#"isobuild: 1
name: t
version: 2.1.0
vars: { salt: "3002.9" }
files:
  - { src: run.sh.in, dest: run.sh, replace: { "@@VERSION": "{{ version }}", "@@SALT_VERSION": "{{ vars.salt }}", "@@VERSION_FULL": "full-{{ version }}" } }
"#;
    let test = Test::new().recipe(recipe).file(
        "run.sh.in",
        "v=@@VERSION s=@@SALT_VERSION f=@@VERSION_FULL n=${#array[@]} {{ pillar }}\n",
    );
    test.run(["layout", "recipe.yaml", "out", "-q"]).success();
    assert_eq!(
        test.read("out/run.sh"),
        "v=2.1.0 s=3002.9 f=full-2.1.0 n=${#array[@]} {{ pillar }}\n"
    );
    test.write(
        "recipe.yaml",
        &recipe.replace("replace:", "template: true, replace:"),
    );
    test.run(["layout", "recipe.yaml", "out", "-q"])
        .failure(2)
        .stderr_contains("`replace` and `template: true` do not go together");
}

#[test]
fn source_date_epoch_replaces_the_epoch_everywhere() {
    let recipe = r"isobuild: 1
name: t
version: '1'
epoch: 1700000000
tasks:
  - { name: stamp, run: [sh, -c, 'echo {{ epoch }} $SOURCE_DATE_EPOCH > stamp.txt'], outputs: [stamp.txt] }
";
    let test = Test::new().recipe(recipe).env("SOURCE_DATE_EPOCH", "42");
    test.run(["build", "recipe.yaml", "-q"]).success();
    assert_eq!(test.read("stamp.txt"), "42 42\n");
}

/// A folder copy whose destination another entry writes into (MetalK8s' salt/ and its
/// templates): with the tree gone, the folder is made again by the other entry first, and
/// the copy must not take that folder for its own output.
#[test]
fn a_folder_copy_is_rewritten_when_its_files_are_gone_though_the_folder_is_there() {
    let test = Test::new()
        .recipe(
            "isobuild: 1
name: Demo
version: 1.0.0
epoch: 1700000000
iso:
  root: _build/root
files:
  - { src: salt/, dest: salt/ }
  - { src: extra.txt, dest: salt/sub/extra.txt }
",
        )
        .file("salt/a.sls", "a\n")
        .file("salt/sub/b.sls", "b\n")
        .file("extra.txt", "extra\n");
    test.run(["build", "recipe.yaml", "-q"]).success();
    fs_err::remove_dir_all(test.path().join("_build/root")).unwrap();
    // The other entry alone makes salt/ again, as a task scheduled first would.
    fs_err::create_dir_all(test.path().join("_build/root/salt/sub")).unwrap();
    fs_err::write(
        test.path().join("_build/root/salt/sub/extra.txt"),
        "extra\n",
    )
    .unwrap();
    test.run(["build", "recipe.yaml", "-q"]).success();
    assert_eq!(test.read("_build/root/salt/a.sls"), "a\n");
    assert_eq!(test.read("_build/root/salt/sub/b.sls"), "b\n");
}

#[test]
fn a_failed_run_reports_its_outcome_and_matches_the_schema() {
    let test = Test::new()
        .recipe(
            "isobuild: 1\nname: Demo\nversion: 1.0.0\ntasks:\n  - { name: boom, run: [sh, -c, 'exit 3'] }\n",
        );
    test.run(["build", "recipe.yaml", "-q", "--report", "r.json"])
        .failure(1);
    crate::harness::assert_matches_report_schema(&test.path().join("r.json"));
    let report: Value = serde_json::from_str(&test.read("r.json")).unwrap();
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["exit_code"], 1);
    assert!(
        report["error"].as_str().unwrap().contains("boom"),
        "{report}"
    );
    assert_eq!(report["iso"], Value::Null);
    let task = &report["tasks"][0];
    assert_eq!(
        (&task["kind"], &task["subject"]),
        (&"command".into(), &"boom".into())
    );

    // A recipe that cannot be read still gets a report, in the same shape.
    test.write("recipe.yaml", "isobuild: 1\nname: Demo\n");
    test.run(["build", "recipe.yaml", "-q", "--report", "r.json"])
        .failure(2);
    crate::harness::assert_matches_report_schema(&test.path().join("r.json"));
    let report: Value = serde_json::from_str(&test.read("r.json")).unwrap();
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["exit_code"], 2);
    assert_eq!(report["recipe"]["name"], Value::Null);
}

#[test]
fn files_the_recipe_does_not_write_are_pruned_with_one_notice() {
    let test = Test::new()
        .recipe(
            "isobuild: 1\nname: Demo\nversion: 1.0.0\nfiles:\n  - { src: a.txt, dest: a.txt }\n",
        )
        .file("a.txt", "a\n");
    test.run(["build", "recipe.yaml", "--progress", "plain"])
        .success();
    test.write("_build/root/stray.txt", "left by hand\n");
    test.write("_build/root/old/other.txt", "from an older recipe\n");
    // Pruning comes before the ISO is remade, so something the ISO holds changes too.
    test.write("a.txt", "a, changed\n");
    let run = test
        .run(["build", "recipe.yaml", "--progress", "plain"])
        .success();
    let notices: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("note: "))
        .collect();
    let root = test.path().join("_build/root");
    assert_eq!(notices.len(), 1, "{run}");
    assert!(
        notices[0].ends_with(&format!(
            "] note: removed 2 files the recipe does not write from `{}`",
            root.display()
        )),
        "{run}"
    );
    assert!(!root.join("stray.txt").exists());
}
