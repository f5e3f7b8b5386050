//! `cargo xtask`: the project's own commands.
//!
//! - `cargo xtask ci`: everything CI checks, in the order CI checks it (see [`ci`]).

// A developer tool talks to its user on the terminal: printing is its job, unlike isobuild's
// library where only `report` prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod ci;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some(other) => bail!("unknown xtask `{other}`; known: ci"),
        None => bail!("usage: cargo xtask ci"),
    }
}
