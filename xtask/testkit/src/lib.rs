//! isobuild-testkit: what isobuild's integration tests, `cargo xtask demo` and
//! `cargo xtask bench` share to get images into a real registry.
//!
//! - [`images`]: deterministic synthetic layers, images and indexes (Docker v2s2 and OCI),
//!   and a [`images::Pusher`] that uploads them over the distribution API;
//! - [`peers`]: the real programs they talk to, each on a free loopback port in its own
//!   temporary folder and stopped when dropped: Debian's `docker-registry`, `nginx`, and a
//!   `skopeo` runner;
//! - [`set`]: a named set of images pushed together, and the bytes one platform of it weighs.
//!
//! It lives under `xtask/` because the repository's top level is fixed. Failures panic (with
//! an install hint when a peer is missing): every caller is a test or a developer tool, and
//! a panic there names the step that broke.

pub mod images;
pub mod peers;
pub mod set;
