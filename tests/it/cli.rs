//! The command line itself: help, version, usage errors.

use crate::harness::Test;

#[test]
fn usage_errors_exit_with_2() {
    Test::new().run(["build"]).failure(2);
    Test::new().run(["frobnicate"]).failure(2);
    Test::new()
        .run(["build", "recipe.yaml", "--jobs", "0"])
        .failure(2)
        .stderr_contains("--jobs");
}

#[test]
fn cache_path_honours_the_flag() {
    let test = Test::new();
    let run = test
        .run(["cache", "path", "--cache-dir", "/tmp/somewhere"])
        .success();
    assert_eq!(run.stdout, "/tmp/somewhere\n");
}

#[test]
fn every_help_has_examples_the_environment_and_the_exit_codes() {
    for command in [
        "build",
        "fetch",
        "lock",
        "layout",
        "verify",
        "inspect",
        "diff",
        "graph",
        "cache",
        "completions",
    ] {
        let run = Test::new().run([command, "--help"]).success();
        for needle in [
            "Examples:\n  isobuild ",
            "Environment:\n  ISOBUILD_CACHE_DIR ",
            "ISOBUILD_NO_PROGRESS",
            "SSL_CERT_FILE",
            "Exit codes:\n  0    success\n",
            "  2    the recipe or the command line is invalid\n",
        ] {
            assert!(
                run.stdout.contains(needle),
                "`{command} --help` lacks {needle:?}\n{run}"
            );
        }
    }
    // `-h` stays short: the examples only.
    let run = Test::new().run(["build", "-h"]).success();
    assert!(run.stdout.contains("Examples:"), "{run}");
    assert!(!run.stdout.contains("Exit codes:"), "{run}");
}

#[test]
fn flags_exist_only_on_the_commands_they_mean_something_for() {
    for flag in [
        "--locked",
        "--keep-going",
        "--report=r.json",
        "--timings=t.html",
        "--jobs=2",
    ] {
        Test::new()
            .run(["lock", "recipe.yaml", flag])
            .failure(2)
            .stderr_contains("error: unexpected argument '--");
    }
    // `fetch` checks pins (so `--ignore-pins` means something there) and `layout` runs tasks
    // (so `--keep-going` does): both stay, and `--retry-times` is on every command that asks
    // registries.
    for args in [
        ["fetch", "--ignore-pins"],
        ["layout", "--keep-going"],
        ["lock", "--retry-times=2"],
        ["build", "--retry-times=0"],
    ] {
        let run = Test::new().run([args[0], "nope.yaml", args[1], "--help"]);
        run.success();
    }
    Test::new()
        .run(["build", "recipe.yaml", "--retry-times", "many"])
        .failure(2)
        .stderr_contains("invalid value 'many' for '--retry-times <N>'");
}

#[test]
fn version_names_the_commit_and_its_date() {
    let run = Test::new().run(["--version"]).success();
    let pattern = regex::Regex::new(
        r"^isobuild \d+\.\d+\.\d+ \(([0-9a-f]{12}|unknown) (\d{4}-\d{2}-\d{2}|unknown)\)\n$",
    )
    .unwrap();
    assert!(pattern.is_match(&run.stdout), "{run}");
}

#[test]
fn completions_and_the_man_page_are_generated() {
    let run = Test::new().run(["completions", "bash"]).success();
    assert!(run.stdout.contains("_isobuild()"), "{run}");
    assert!(run.stdout.contains("--retry-times"), "{run}");
    for shell in ["zsh", "fish"] {
        let run = Test::new().run(["completions", shell]).success();
        assert!(run.stdout.contains("retry-times"), "{shell}: {run}");
    }
    Test::new()
        .run(["completions", "tcsh"])
        .failure(2)
        .stderr_contains("invalid value 'tcsh'");
    let run = Test::new().run(["man"]).success();
    assert!(run.stdout.contains(".TH isobuild 1"), "{run}");
    assert!(run.stdout.contains("completions"), "{run}");
}

#[test]
fn colour_is_a_choice() {
    Test::new()
        .run(["--color", "sometimes", "cache", "path"])
        .failure(2)
        .stderr_contains("invalid value 'sometimes' for '--color <COLOR>'");
    for choice in ["auto", "always", "never"] {
        Test::new()
            .run(["cache", "path", "--color", choice])
            .success();
    }
}

#[test]
fn v_v_counts_as_vv_and_the_default_shows_no_logs_and_no_colour() {
    let test = Test::new()
        .recipe(
            "isobuild: 1\nname: Demo\nversion: 1.0.0\nfiles:\n  - { src: a.txt, dest: a.txt }\n",
        )
        .file("a.txt", "a\n")
        // Empty is unset (no-color.org): colour would be allowed, but stderr is a pipe.
        .env("NO_COLOR", "");
    let quiet = test
        .run(["build", "recipe.yaml", "--progress", "plain"])
        .success();
    assert!(!quiet.stderr.contains("DEBUG"), "{quiet}");
    assert!(!quiet.stderr.contains('\x1b'), "ANSI in a pipe:\n{quiet}");
    for flags in [&["-vv"][..], &["-v", "-v"][..]] {
        let mut args = vec!["build", "recipe.yaml", "--progress", "plain"];
        args.extend_from_slice(flags);
        let run = test.run(args).success();
        assert!(
            run.stderr.contains("DEBUG isobuild::engine: task finished"),
            "{flags:?}\n{run}"
        );
        assert!(!run.stderr.contains('\x1b'), "ANSI in a pipe:\n{run}");
    }
}
