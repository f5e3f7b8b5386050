//! Real peers the tests start (docker-registry, nginx) and the skopeo runner. They live in
//! `isobuild-testkit`, shared with `cargo xtask demo` and `cargo xtask bench`.

#[allow(unused_imports)]
pub(crate) use isobuild_testkit::peers::{Ca, Nginx, Options, Registry, Tls, free_port, skopeo};
