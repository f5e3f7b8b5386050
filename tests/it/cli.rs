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
