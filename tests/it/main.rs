//! isobuild's integration tests: one binary, one module per feature, each driving the real
//! `isobuild` executable through [`harness::Test`].

mod harness;

mod build;
mod cli;
mod pull;
