//! Build the `isobuild` binary with cargo and find where cargo put it, wherever
//! `CARGO_TARGET_DIR` points: the demo and the bench run the real executable, as users do.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// `cargo build -p isobuild --bin isobuild` in `profile` (`release` or `dev`), then the path
/// of the executable, read from cargo's JSON messages rather than guessed from the target
/// folder's layout.
pub(crate) fn build_isobuild(root: &Path, profile: &str) -> Result<PathBuf> {
    eprintln!("xtask: cargo build --profile {profile} -p isobuild");
    let mut child = Command::new("cargo")
        .args([
            "build",
            "--profile",
            profile,
            "-p",
            "isobuild",
            "--bin",
            "isobuild",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    let mut executable = None;
    let stdout = child.stdout.take().context("cargo's output")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("read cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "isobuild"
            && let Some(path) = message["executable"].as_str()
        {
            executable = Some(PathBuf::from(path));
        }
    }
    let status = child.wait().context("wait for cargo")?;
    if !status.success() {
        bail!("`cargo build --profile {profile} -p isobuild` failed ({status})");
    }
    executable.context("cargo built no isobuild executable")
}
