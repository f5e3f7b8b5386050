//! isobuild builds a bootstrap ISO from a YAML recipe without a container daemon.
//!
//! # A tour
//!
//! A run flows through these layers, each owning one job and one error type:
//!
//! 1. [`cli`] holds what the user typed; [`settings`] resolves it with the environment into
//!    absolute paths, limits and modes, once.
//! 2. [`recipe`] reads the YAML recipe and validates all of it, reporting every problem with
//!    file, line, column and field path. Its values are typed ([`reference::ImageRef`],
//!    [`reference::Digest`], [`recipe::IsoPath`]), never bare strings.
//! 3. [`plan`] turns a recipe into a graph of typed tasks (copy a file, render a template, run
//!    a command, …) and seals it: checked acyclic, then frozen.
//! 4. [`engine`] runs a sealed graph on tokio with bounded concurrency, skips tasks whose
//!    fingerprint did not change since their last successful run, and stops cleanly on
//!    failure or Ctrl-C. It knows tasks only through the [`engine::Job`] trait.
//! 5. [`report`] is the only layer that talks to the terminal: live progress through the
//!    [`report::Reporter`] trait, and JSON and HTML summaries after the run.
//! 6. [`source`] resolves image references to manifests and streams blobs from registries
//!    (mirrors, credentials, retries, resumption) into the [`store`], the content-addressed
//!    cache shared by every recipe and every concurrent run; [`source::local`] reads archives,
//!    OCI layouts and Docker/Podman daemons instead.
//! 7. [`layout`] writes the ISO's registry tree from the cache (image folders hard-linked
//!    from it, docker-archive tarballs, the nginx rules) and checks one (`verify`); [`iso`]
//!    makes the reproducible ISO of the tree with xorriso.
//! 8. [`inspect`] reads an ISO (in-process, never mounted), a tree or a lock file into an
//!    inventory of its images, packages and files, compares two (`diff`) and writes the
//!    CycloneDX SBOM `build` puts beside the ISO.
//! 9. [`container`] runs buildah without a daemon, in a private storage under the cache:
//!    container tasks and image builds whose base images come from the cache.
//! 10. [`rpm`] reads RPM repository metadata as streams and resolves package closures the
//!     way EL8's `dnf repoquery --resolve --recursive` does, without dnf.
//! 11. [`fs`] writes files atomically (temporary file, then rename) with paths in every error;
//!     [`error`] maps every failure to an exit code (0 ok, 1 build failed, 2 bad input);
//!     [`python_json`] and [`python_yaml`] write data as Python's `json` and PyYAML do, for
//!     files whose reference a Python build made.
//!
//! The logic never prints: it returns values and calls the reporter.

pub mod cli;
pub mod commands;
pub mod container;
pub mod engine;
pub mod error;
pub mod fs;
pub mod inspect;
pub mod iso;
pub mod layout;
pub mod plan;
pub mod python_json;
pub mod python_yaml;
pub mod recipe;
pub mod reference;
pub mod report;
pub mod rpm;
pub mod settings;
pub mod source;
pub mod store;

pub use error::Error;

/// Run the command the user typed.
pub fn run(cli: cli::Cli) -> Result<(), Error> {
    commands::dispatch(cli)
}
