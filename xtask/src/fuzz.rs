//! `cargo xtask fuzz [--seconds N] [TARGET...]`: run every cargo-fuzz target in `tests/fuzz`
//! for N seconds each (60 by default), so the targets keep building and keep finding nothing.
//!
//! Not part of `cargo xtask ci`: fuzzing needs libFuzzer, a sanitizer build of the whole
//! dependency tree and minutes of CPU. cargo-fuzz is installed from crates.io when missing.
//! The stable toolchain gets `RUSTC_BOOTSTRAP=1`, since cargo-fuzz passes `-Zsanitizer`.
//!
//! Each target starts from its committed seeds (`tests/fuzz/corpus/<target>`, read only) and
//! a working corpus under the target folder that grows from run to run; its dictionary
//! (`tests/fuzz/dict/<target>.dict`) is used when there is one. A crash, a hang (an input
//! slower than 10 s) or an allocation past libFuzzer's limit fails the target; the others
//! still run, and the reproducer is in `tests/fuzz/artifacts/<target>/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Seconds per target when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 60;
/// An input slower than this counts as a hang.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let (seconds, wanted) = parse_args(args)?;
    let root = super::ci::workspace_root()?;
    let fuzz_dir = root.join("tests/fuzz");
    // Shared with normal builds' target folder, but in its own subfolder: sanitizer
    // builds never reuse normal artifacts anyway.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("fuzz");
    install_cargo_fuzz()?;
    let targets = if wanted.is_empty() {
        list_targets(&fuzz_dir)?
    } else {
        wanted
    };
    let fuzz = |subcommand: &str| {
        let mut command = Command::new("cargo");
        command
            .current_dir(&root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", subcommand, "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg("--target-dir")
            .arg(&target_dir);
        command
    };
    // One build for all targets, so each target's time is spent fuzzing.
    status(fuzz("build"), "cargo fuzz build")?;
    let mut failed = Vec::new();
    for target in &targets {
        eprintln!("xtask fuzz: {target} for {seconds} s");
        let work = target_dir.join("corpus").join(target);
        std::fs::create_dir_all(&work)
            .with_context(|| format!("cannot create {}", work.display()))?;
        let mut command = fuzz("run");
        command
            .arg(target)
            .arg(&work)
            .arg(fuzz_dir.join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
            .arg("-print_final_stats=1");
        let dict = fuzz_dir.join("dict").join(format!("{target}.dict"));
        if dict.is_file() {
            command.arg(format!("-dict={}", dict.display()));
        }
        if let Err(error) = status(command, &format!("cargo fuzz run {target}")) {
            eprintln!("xtask fuzz: {error:#}");
            failed.push(target.clone());
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {}; reproducers are in {}",
            failed.join(", "),
            fuzz_dir.join("artifacts").display()
        );
    }
    eprintln!(
        "xtask fuzz: {} targets ran {seconds} s each without a finding",
        targets.len()
    );
    Ok(())
}

/// `--seconds N` and target names, in any order.
fn parse_args(args: &[String]) -> Result<(u64, Vec<String>)> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--seconds") {
            Some("") => args.next().context("`--seconds` needs a value")?.as_str(),
            Some(rest) if rest.starts_with('=') => &rest[1..],
            _ if arg.starts_with('-') => {
                bail!("unknown option `{arg}`; usage: cargo xtask fuzz [--seconds N] [TARGET...]")
            }
            _ => {
                targets.push(arg.clone());
                continue;
            }
        };
        seconds = value
            .parse()
            .with_context(|| format!("`--seconds {value}` is not a whole number of seconds"))?;
    }
    Ok((seconds, targets))
}

/// `cargo install cargo-fuzz` unless `cargo fuzz` already runs.
fn install_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask fuzz: installing cargo-fuzz");
    let mut install = Command::new("cargo");
    install.args(["install", "cargo-fuzz", "--locked"]);
    status(install, "cargo install cargo-fuzz")
}

/// The targets `tests/fuzz/Cargo.toml` declares, as cargo-fuzz sees them.
fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let output = Command::new("cargo")
        .args(["fuzz", "list", "--fuzz-dir"])
        .arg(fuzz_dir)
        .output()
        .context("cannot run cargo fuzz list")?;
    if !output.status.success() {
        bail!(
            "`cargo fuzz list` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let targets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        bail!("`cargo fuzz list` found no target in tests/fuzz");
    }
    Ok(targets)
}

fn status(mut command: Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn seconds_and_targets_parse_in_any_order() {
        assert_eq!(parse_args(&[]).unwrap(), (DEFAULT_SECONDS, vec![]));
        assert_eq!(
            parse_args(&args(&["recipe_load", "--seconds", "5"])).unwrap(),
            (5, args(&["recipe_load"]))
        );
        assert_eq!(parse_args(&args(&["--seconds=7"])).unwrap(), (7, vec![]));
        assert!(parse_args(&args(&["--seconds", "x"])).is_err());
        assert!(parse_args(&args(&["--seconds"])).is_err());
        assert!(parse_args(&args(&["--jobs", "2"])).is_err());
    }
}
