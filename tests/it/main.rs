//! isobuild's integration tests: one binary, one module per feature, each driving the real
//! `isobuild` executable through [`harness::Test`].

// A test binary exports nothing: `pub` only spans its modules.
#![allow(unreachable_pub, clippy::unwrap_used)]

mod harness;

mod build;
mod cli;
mod containers;
mod errors;
mod faults;
mod fetch;
mod file_data;
mod hardening;
mod hostile;
mod inspect;
mod interrupts;
mod iso;
mod layout;
mod local_images;
mod metalk8s;
mod metalk8s_doit;
mod metalk8s_e2e;
mod packages;
mod progress;
mod pull;
mod registries;
mod rpm_hardening;
mod rpm_oracle;
mod secrets;
