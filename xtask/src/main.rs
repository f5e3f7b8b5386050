//! `cargo xtask`: the project's own commands.
//!
//! - `cargo xtask ci`: everything CI checks, in the order CI checks it (see [`ci`]).
//! - `cargo xtask fuzz [--seconds N] [TARGET...]`: every fuzz target for N seconds (see
//!   [`fuzz`]); not part of `ci`.

mod ci;
mod fuzz;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some(other) => bail!("unknown xtask `{other}`; known: ci, fuzz"),
        None => bail!("usage: cargo xtask ci | fuzz [--seconds N] [TARGET...]"),
    }
}
