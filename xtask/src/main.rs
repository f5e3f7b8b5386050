//! `cargo xtask`: the project's own commands.
//!
//! - `cargo xtask ci`: everything CI checks, in the order CI checks it (see [`ci`]);
//! - `cargo xtask demo`: the README's quick start, a reproducible ISO from a throwaway local
//!   registry (see [`demo`]);
//! - `cargo xtask bench`: isobuild against skopeo and the disk's floor on a MetalK8s-shaped
//!   image set (see [`mod@bench`]);
//! - `cargo xtask fuzz [--seconds N] [TARGET...]`: every fuzz target for N seconds (see
//!   [`fuzz`]); not part of `ci`.

// A developer tool talks to its user on the terminal: printing is its job, unlike isobuild's
// library where only `report` prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod binary;
mod ci;
mod demo;
mod fuzz;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask ci [--no-install] | demo [--clean] | bench [--quick] [--out DIR] | fuzz [--seconds N] [TARGET...]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some(other) => bail!("unknown xtask `{other}`; {USAGE}"),
        None => bail!("{USAGE}"),
    }
}
