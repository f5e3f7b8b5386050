//! Stamp the binary with the commit it was built from and that commit's date, for
//! `isobuild --version`. Outside a git checkout (a source tarball, `cargo install` from a
//! registry) both read `unknown` rather than failing the build.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let date = git(&["log", "-1", "--format=%cs"]);
    println!(
        "cargo:rustc-env=ISOBUILD_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".to_owned())
    );
    println!(
        "cargo:rustc-env=ISOBUILD_COMMIT_DATE={}",
        date.unwrap_or_else(|| "unknown".to_owned())
    );
    // Run again when HEAD moves (a commit, a checkout); worktrees keep HEAD elsewhere.
    for path in ["HEAD", "logs/HEAD"] {
        if let Some(file) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
