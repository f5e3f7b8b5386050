//! Registries as the containers tools configure them, through the real binary and real
//! docker-registry peers: TLS with a throwaway CA (`certs.d`, `--cert-dir`,
//! `--insecure-skip-tls-verify`, client certificates), the hints for the usual mistakes and
//! that those are not retried, registries.conf (mirrors with fallback, `blocked`, prefix and
//! location rewrites), and credentials (`--authfile`, `--creds`, `ISOBUILD_CREDS`, a missing
//! credential helper, identity tokens).
//!
//! "Not retried" is checked without clocks: with `ISOBUILD_HTTP_RETRIES=5` and debug logs
//! on, a retried request logs `retrying` and its error says `after N attempt(s)`; and a TLS
//! registry logs each failed handshake, which are counted.

use std::path::Path;

use crate::harness::images::{Pusher, TestSet};
use crate::harness::peers::{Ca, Options, Registry, Tls, free_port};
use crate::harness::proxy::Proxy;
use crate::harness::{Run, Test};

/// The images of [`crate::faults::recipe`]: alpha, beta and multi.
const IMAGES: usize = 3;

/// A plain registry holding the test set, and a TLS registry serving the same storage.
struct TlsSetup {
    ca: Ca,
    _plain: Registry,
    tls: Registry,
}

fn tls_setup(client_certificates: bool) -> TlsSetup {
    tls_setup_with(Ca::new(), client_certificates)
}

fn tls_setup_with(ca: Ca, client_certificates: bool) -> TlsSetup {
    let plain = Registry::start();
    TestSet::new().push(&Pusher::new(&plain), "");
    let tls = Registry::start_with_options(&Options {
        tls: Some(Tls {
            ca: &ca,
            client_certificates,
        }),
        storage_of: Some(&plain),
        ..Options::default()
    });
    TlsSetup {
        ca,
        _plain: plain,
        tls,
    }
}

/// A project with the test set's recipe from `host`, retries on (so that a retry would
/// show) and debug logs on, and no certs.d of the machine's.
fn project(host: &str) -> Test {
    let test = Test::new()
        .recipe(&crate::faults::recipe(host, false))
        .env("ISOBUILD_HTTP_RETRIES", "5")
        .env("ISOBUILD_HTTP_TIMEOUT", crate::faults::TIMEOUT)
        .env("RUST_LOG", "isobuild=debug")
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
    let empty = test.path().join("no-certs.d");
    test.env("ISOBUILD_CERTS_D", empty.to_str().unwrap())
}

fn fetch(test: &Test, extra: &[&str]) -> Run {
    let mut args = vec!["fetch", "recipe.yaml", "--progress", "plain"];
    args.extend_from_slice(extra);
    test.run(args)
}

/// The run failed at once: no request was tried again.
#[track_caller]
fn assert_not_retried(run: &Run) {
    assert!(run.stderr.contains("DEBUG"), "debug logs are on\n{run}");
    assert!(!run.stderr.contains("retrying"), "it retried\n{run}");
    assert!(!run.stderr.contains("attempt(s)"), "it retried\n{run}");
}

/// The run failed at once, with `cannot reach registry HOST for HOST/test/alpha:1.0: HINT`.
#[track_caller]
fn assert_refused(run: &Run, host: &str, hint: &str) {
    assert!(
        run.stderr.contains(&format!(
            "cannot reach registry `{host}` for `{host}/test/alpha:1.0`: {hint}"
        )),
        "{run}"
    );
    assert_not_retried(run);
}

/// Failed TLS handshakes the registry logged.
fn handshake_failures(registry: &Registry) -> usize {
    registry.log().matches("TLS handshake error").count()
}

fn copy_into(dir: &Path, files: &[(&Path, &str)]) {
    fs_err::create_dir_all(dir).unwrap();
    for (from, name) in files {
        fs_err::copy(from, dir.join(name)).unwrap();
    }
}

#[test]
fn a_private_ca_is_refused_with_a_hint_then_trusted_from_certs_d_or_cert_dir() {
    let setup = tls_setup(false);
    let host = setup.tls.host();

    let test = project(&host);
    let run = fetch(&test, &[]).failure(1);
    assert_refused(
        &run,
        &host,
        &format!(
            "certificate signed by an unknown authority: put its CA in /etc/containers/certs.d/{host}/ or pass --cert-dir"
        ),
    );
    let refused = handshake_failures(&setup.tls);
    assert!(
        (1..=IMAGES).contains(&refused),
        "one handshake per image at most, got {refused}\n{}",
        setup.tls.log()
    );

    // At default verbosity (an empty RUST_LOG is the default filter) the TLS library's own
    // ERROR log lines (5 a run before) never reach the user: only the error and its hint.
    let quiet = fetch(&project(&host).env("RUST_LOG", ""), &[]).failure(1);
    assert!(
        !quiet.stderr.contains("rustls") && !quiet.stderr.contains("ERROR"),
        "library log noise\n{quiet}"
    );
    assert!(
        quiet
            .stderr
            .contains("certificate signed by an unknown authority"),
        "{quiet}"
    );

    // The CA in a certs.d folder for the host (the root overridden for the test).
    let test = project(&host);
    let root = test.path().join("certs.d");
    copy_into(&root.join(&host), &[(&setup.ca.ca_cert(), "ca.crt")]);
    let test = test.env("ISOBUILD_CERTS_D", root.to_str().unwrap());
    fetch(&test, &[]).success();

    // The CA in `--cert-dir`.
    let test = project(&host);
    copy_into(
        &test.path().join("certs"),
        &[(&setup.ca.ca_cert(), "ca.crt")],
    );
    fetch(&test, &["--cert-dir", "certs"]).success();

    // No verification for that host only: another host is still verified.
    let test = project(&host);
    fetch(&test, &["--insecure-skip-tls-verify", "127.0.0.2"]).failure(1);
    fetch(&test, &["--insecure-skip-tls-verify", &host]).success();
    // The system store is kept, and `--insecure-registry` (plain HTTP) is not the same
    // thing: HTTP to a TLS registry fails.
    let test = project(&host);
    let run = fetch(&test, &["--insecure-registry", &host]).failure(1);
    assert!(run.stderr.contains("HTTP 400"), "{run}");
}

#[test]
fn a_registry_that_wants_a_client_certificate_gets_the_pair_from_certs_d() {
    let setup = tls_setup(true);
    let host = setup.tls.host();
    let (cert, key) = setup.ca.client_pair();

    // The CA alone: refused, with a hint, not retried.
    let test = project(&host);
    let root = test.path().join("certs.d");
    copy_into(&root.join(&host), &[(&setup.ca.ca_cert(), "ca.crt")]);
    let test = test.env("ISOBUILD_CERTS_D", root.to_str().unwrap());
    let run = fetch(&test, &[]).failure(1);
    assert_refused(
        &run,
        &host,
        &format!(
            "it wants a TLS client certificate: put client.cert and client.key in /etc/containers/certs.d/{host}/ or pass --cert-dir"
        ),
    );

    // docker's names beside the CA: served.
    copy_into(
        &root.join(&host),
        &[(&cert, "client.cert"), (&key, "client.key")],
    );
    fetch(&test, &[]).success();

    // A certificate without its key is named.
    let test = project(&host);
    copy_into(&test.path().join("certs"), &[(&cert, "client.cert")]);
    let run = fetch(&test, &["--cert-dir", "certs"]).failure(1);
    assert!(
        run.stderr.contains("client.cert` has no `") && run.stderr.contains("client.key"),
        "{run}"
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_even_from_a_trusted_ca() {
    let setup = tls_setup_with(Ca::for_names("DNS:registry.example"), false);
    let host = setup.tls.host();
    let test = project(&host);
    copy_into(
        &test.path().join("certs"),
        &[(&setup.ca.ca_cert(), "ca.crt")],
    );
    let run = fetch(&test, &["--cert-dir", "certs"]).failure(1);
    assert_refused(
        &run,
        &host,
        &format!(
            "its TLS certificate is not valid for `{host}` (expired, or for another name); pass --insecure-skip-tls-verify {host} to accept it anyway"
        ),
    );
    fetch(&test, &["--insecure-skip-tls-verify", &host]).success();
}

#[test]
fn https_to_a_plain_http_registry_says_so_at_once() {
    let registry = Registry::start();
    TestSet::new().push(&Pusher::new(&registry), "");
    let host = registry.host();
    let test = project(&host);
    let run = fetch(&test, &[]).failure(1);
    assert_refused(
        &run,
        &host,
        &format!("the registry speaks plain HTTP: pass --insecure-registry {host}"),
    );
    fetch(&test, &["--insecure-registry", &host]).success();
}

/// A registries.conf at `registries.conf` of `test`.
fn with_conf(test: Test, conf: &str) -> Test {
    test.write("registries.conf", conf);
    let path = test.path().join("registries.conf");
    test.env("CONTAINERS_REGISTRIES_CONF", path.to_str().unwrap())
}

#[test]
fn registries_conf_mirrors_fall_back_in_order_and_say_which_served() {
    let registry = Registry::start();
    TestSet::new().push(&Pusher::new(&registry), "");
    let up = registry.host();
    let down = format!("127.0.0.1:{}", free_port());
    let name = "registry.invalid";

    // A dead mirror, then a good one: the good one serves, the registry itself is never
    // asked (it does not exist).
    let test = with_conf(
        project(name).env("ISOBUILD_HTTP_RETRIES", "1"),
        &format!(
            r#"
[[registry]]
prefix = "{name}"
[[registry.mirror]]
location = "{down}"
insecure = true
[[registry.mirror]]
location = "{up}"
insecure = true
"#
        ),
    );
    let run = fetch(&test, &["-v", "--report", "r.json"]).success();
    // The JSON report names the mirror that served each image too.
    crate::harness::assert_matches_report_schema(&test.path().join("r.json"));
    let report: serde_json::Value = serde_json::from_str(&test.read("r.json")).unwrap();
    let images = report["images"].as_array().expect("images in the report");
    assert!(!images.is_empty(), "{report}");
    for image in images {
        assert_eq!(
            image["mirror"],
            serde_json::Value::from(up.as_str()),
            "{report}"
        );
    }
    assert!(
        run.stdout.contains(&format!(
            "image `alpha:1.0`: served by `{up}` (for `{name}/test/alpha:1.0`)"
        )) || run.stderr.contains(&format!(
            "image `alpha:1.0`: served by `{up}` (for `{name}/test/alpha:1.0`)"
        )),
        "{run}"
    );
    assert!(run.stderr.contains("trying the next mirror"), "{run}");

    // Every mirror down: the location (rewritten, with a path prefix) serves.
    let test = with_conf(
        project(name).env("ISOBUILD_HTTP_RETRIES", "1"),
        &format!(
            r#"
[[registry]]
prefix = "{name}/test"
location = "{up}/test"
insecure = true
[[registry.mirror]]
location = "{down}/nothing"
"#
        ),
    );
    let run = fetch(&test, &["-v", "--insecure-registry", &down]).success();
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains(&format!(
            "image `beta:2.0`: served by `{up}` (for `{name}/test/beta:2.0`)"
        )),
        "{run}"
    );

    // `--mirror` wins over registries.conf.
    let test = with_conf(
        project(name),
        &format!("[[registry]]\nprefix = \"{name}\"\nblocked = true\n"),
    );
    fetch(
        &test,
        &[
            "--mirror",
            &format!("{name}={up}"),
            "--insecure-registry",
            &up,
        ],
    )
    .success();
}

#[test]
fn a_blocked_registry_and_a_broken_conf_are_named() {
    let test = with_conf(
        project("quay.example"),
        "[[registry]]\nprefix = \"quay.example/test\"\nblocked = true\n",
    );
    let conf = test.path().join("registries.conf");
    let run = fetch(&test, &[]).failure(1);
    assert!(
        run.stderr.contains(&format!(
            "`quay.example/test/alpha:1.0` is blocked: registries.conf `{}` marks prefix `quay.example/test` as `blocked = true`",
            conf.display()
        )),
        "{run}"
    );

    let test = with_conf(
        project("quay.example"),
        "[[registry]]\nprefix = \"quay.example\"\ninsecure = \"yes\"\n",
    );
    let run = fetch(&test, &[]).failure(2);
    assert!(
        run.stderr.contains(&format!(
            "{}:3:12: ",
            test.path().join("registries.conf").display()
        )),
        "{run}"
    );
}

/// A run with `--authfile auth.json` fails, naming that file as the rejected login's origin.
#[track_caller]
fn assert_authfile_rejected(test: &Test, host: &str) -> Run {
    let run = fetch(
        test,
        &["--insecure-registry", host, "--authfile", "auth.json"],
    )
    .failure(1);
    assert!(
        run.stderr.contains(&format!(
            "the credentials from `{}` were rejected",
            test.path().join("auth.json").display()
        )),
        "{run}"
    );
    run
}

const USER: &str = "builder";
const PASSWORD: &str = "s3cret-Passw0rd";

fn auth_json(host: &str, user: &str, password: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#)
}

#[test]
fn credentials_from_authfile_creds_and_the_environment_and_who_gave_bad_ones() {
    let registry = Registry::start_with_auth(USER, PASSWORD);
    TestSet::new().push(&Pusher::new(&registry), "");
    let host = registry.host();
    let insecure = ["--insecure-registry", host.as_str()];
    // No docker config or auth.json of the machine's.
    let project = || {
        project(&host)
            .env("HOME", "/nonexistent")
            .env("XDG_RUNTIME_DIR", "/nonexistent")
            .env("DOCKER_CONFIG", "/nonexistent")
    };

    let test = project();
    let run = fetch(&test, &insecure).failure(1);
    assert!(
        run.stderr.contains("no credentials are configured"),
        "{run}"
    );

    // --authfile: right, then wrong (named).
    let test = project().file("auth.json", &auth_json(&host, USER, PASSWORD));
    fetch(
        &test,
        &[&insecure[..], &["--authfile", "auth.json"]].concat(),
    )
    .success();
    let test = project().file("auth.json", &auth_json(&host, USER, "wrong-password"));
    assert_authfile_rejected(&test, &host);

    // --creds for every registry, and for this one.
    let test = project();
    let login = format!("{USER}:{PASSWORD}");
    fetch(&test, &[&insecure[..], &["--creds", &login]].concat()).success();
    let test = project();
    let run = fetch(
        &test,
        &[
            &insecure[..],
            &["--creds", &format!("{host}={USER}:nope-wrong")],
        ]
        .concat(),
    )
    .failure(1);
    assert!(
        run.stderr
            .contains("the credentials from `--creds` were rejected"),
        "{run}"
    );

    // ISOBUILD_CREDS, as CI secrets are given.
    let test = project().env(
        "ISOBUILD_CREDS",
        &format!("other.example=a:b,{host}={login}"),
    );
    fetch(&test, &insecure).success();
    let test = project().env("ISOBUILD_CREDS", &format!("{host}={USER}:nope-wrong"));
    let run = fetch(&test, &insecure).failure(1);
    assert!(
        run.stderr
            .contains("the credentials from ISOBUILD_CREDS were rejected"),
        "{run}"
    );
}

#[test]
fn credential_helpers_missing_or_rejected_are_named() {
    let registry = Registry::start_with_auth(USER, PASSWORD);
    TestSet::new().push(&Pusher::new(&registry), "");
    let host = registry.host();
    let test = project(&host).file(
        "docker/config.json",
        &format!(r#"{{"credHelpers": {{"{host}": "isobuild-nosuch"}}}}"#),
    );
    let config = test.path().join("docker");
    let test = test.env("DOCKER_CONFIG", config.to_str().unwrap());
    let run = fetch(&test, &["--insecure-registry", &host]).failure(1);
    assert!(
        run.stderr.contains(&format!(
            "credential helper `docker-credential-isobuild-nosuch` (from `{}` credHelpers) is not on PATH",
            config.join("config.json").display()
        )),
        "{run}"
    );

    // A helper that answers a wrong password: the rejection names it.
    let bin = test.path().join("bin");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let test = test
        .file(
            "docker/config.json",
            &format!(r#"{{"credHelpers": {{"{host}": "fake"}}}}"#),
        )
        .file(
            "bin/docker-credential-fake",
            &format!(
                "#!/bin/sh\nread server\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"{USER}\",\"Secret\":\"wrong-from-helper\"}}'\n"
            ),
        )
        .executable("bin/docker-credential-fake")
        .env("PATH", &path);
    let run = fetch(&test, &["--insecure-registry", &host]).failure(1);
    assert!(
        run.stderr.contains(&format!(
            "the credentials from credential helper `docker-credential-fake` (from `{}`) were rejected",
            config.join("config.json").display()
        )),
        "{run}"
    );
}

#[test]
fn an_identity_token_is_exchanged_with_the_refresh_token_grant() {
    let registry = Registry::start();
    TestSet::new().push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    proxy.require_bearer_with_refresh_token("access-tok3n-1234", "refresh-tok3n-5678");
    let host = proxy.host();
    let auth =
        |token: &str| format!(r#"{{"auths": {{"{host}": {{"identitytoken": "{token}"}}}}}}"#);

    let test = project(&host).file("auth.json", &auth("refresh-tok3n-5678"));
    let run = fetch(
        &test,
        &["--insecure-registry", &host, "--authfile", "auth.json"],
    )
    .success();
    let posts = proxy.requests("POST", "/token");
    assert!(!posts.is_empty(), "{:?}", proxy.seen());
    assert!(
        proxy
            .seen()
            .iter()
            .filter(|seen| seen.path.contains("/blobs/") || seen.path.contains("/manifests/"))
            .all(|seen| seen.header("Authorization") == Some("Bearer access-tok3n-1234"))
    );
    for secret in ["refresh-tok3n-5678", "access-tok3n-1234"] {
        assert!(!format!("{run}").contains(secret), "{secret} leaked\n{run}");
    }

    // A refresh token the server does not take: named.
    let test = project(&host).file("auth.json", &auth("stale-refresh-token"));
    let run = assert_authfile_rejected(&test, &host);
    assert!(!run.stderr.contains("stale-refresh-token"), "{run}");
}

#[test]
fn creds_for_every_registry_go_only_where_a_login_is_asked_for() {
    let registry = Registry::start();
    TestSet::new().push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();
    let test = project(&host);
    fetch(
        &test,
        &[
            "--insecure-registry",
            &host,
            "--creds",
            "someone:for-another-registry",
        ],
    )
    .success();
    let seen = proxy.seen();
    assert!(seen.iter().any(|seen| seen.path.contains("/manifests/")));
    assert!(
        seen.iter()
            .all(|seen| seen.header("Authorization").is_none()),
        "{seen:?}"
    );
}
