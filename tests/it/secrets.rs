//! Credentials never leak (issue "Reliability and security: faults, interrupts, hostile
//! registries, bad input"): with a password in a docker `config.json`, a basic-auth registry
//! or a token server in front of one, and every log turned on (`RUST_LOG=trace -vv`), no
//! password, no `user:password` encoding and no bearer token appears in standard output,
//! standard error, the `--report` JSON, the `--timings` HTML, the cache or the ISO tree;
//! neither when the run succeeds nor when the registry rejects the credentials.

use std::path::Path;

use base64::Engine as _;

use crate::harness::Test;
use crate::harness::images::{Pusher, TestSet};
use crate::harness::peers::Registry;
use crate::harness::proxy::{Fault, Proxy};

const USER: &str = "builder";
const PASSWORD: &str = "pa55-W0rd-never-printed";
const TOKEN: &str = "tok3n-never-printed-9f2c";

/// A recipe with the test set from `host`, written as a project whose docker config holds
/// `password` for `host`.
fn project(host: &str, password: &str) -> Test {
    let test = Test::new()
        .recipe(&crate::faults::recipe(host, false))
        .env("RUST_LOG", "trace")
        .env("ISOBUILD_HTTP_TIMEOUT", crate::faults::TIMEOUT)
        .env("ISOBUILD_HTTP_RETRIES", "2");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    test.write(
        "docker/config.json",
        &format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    );
    let config = test.path().join("docker");
    test.env("DOCKER_CONFIG", config.to_str().unwrap())
}

/// Everything a run can show or leave: its output, its report and timeline, every file of
/// the cache and of the tree.
fn everything(test: &Test, run: &crate::harness::Run) -> Vec<(String, Vec<u8>)> {
    let mut all = vec![
        ("stdout".to_owned(), run.stdout.clone().into_bytes()),
        ("stderr".to_owned(), run.stderr.clone().into_bytes()),
    ];
    for name in ["report.json", "timings.html"] {
        let path = test.path().join(name);
        // A run that fails before any task (an image that cannot be resolved) writes none.
        if run.code == Some(0) || path.exists() {
            assert!(path.is_file(), "{name} was written\n{run}");
            all.push((name.to_owned(), fs_err::read(path).unwrap()));
        }
    }
    for dir in [test.cache_dir(), test.path().join("out")] {
        files_under(&dir, &mut all);
    }
    all
}

fn files_under(dir: &Path, into: &mut Vec<(String, Vec<u8>)>) {
    if !dir.exists() {
        return;
    }
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            into.push((
                entry.path().display().to_string(),
                fs_err::read(entry.path()).unwrap(),
            ));
        }
    }
}

/// The forms a secret could leak in: as is, and base64-encoded as in a `Basic` header or
/// the docker config (with and without padding).
fn forms(secrets: &[&str]) -> Vec<String> {
    let mut forms = Vec::new();
    for secret in secrets {
        forms.push((*secret).to_owned());
    }
    let login = format!("{USER}:{PASSWORD}");
    forms.push(base64::engine::general_purpose::STANDARD.encode(&login));
    forms.push(base64::engine::general_purpose::STANDARD_NO_PAD.encode(&login));
    forms
}

#[track_caller]
fn assert_no_leak(test: &Test, run: &crate::harness::Run, secrets: &[&str]) {
    // The trace logs are really on: a quiet run would prove nothing.
    assert!(
        run.stderr.contains("TRACE") || run.stderr.contains("DEBUG"),
        "logs are not on\n{run}"
    );
    for (place, bytes) in everything(test, run) {
        let text = String::from_utf8_lossy(&bytes);
        for secret in forms(secrets) {
            assert!(
                !text.contains(&secret),
                "`{secret}` leaked into {place}:\n{}",
                text.lines()
                    .filter(|line| line.contains(&secret))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

fn loud_layout(test: &Test, host: &str) -> crate::harness::Run {
    loud_layout_with(test, host, &[])
}

/// [`loud_layout`] with more arguments.
fn loud_layout_with(test: &Test, host: &str, extra: &[&str]) -> crate::harness::Run {
    let mut args = vec![
        "layout",
        "recipe.yaml",
        "out",
        "-vv",
        "--progress",
        "plain",
        "--insecure-registry",
        host,
        "--report",
        "report.json",
        "--timings",
        "timings.html",
    ];
    args.extend_from_slice(extra);
    test.run(args)
}

#[test]
fn basic_auth_credentials_never_show() {
    let registry = Registry::start_with_auth(USER, PASSWORD);
    TestSet::new().push(&Pusher::new(&registry), "");
    // Through a proxy, so one blob can fail and the error path is looked at too.
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();

    let test = project(&host, PASSWORD);
    let run = loud_layout(&test, &host).success();
    assert_no_leak(&test, &run, &[PASSWORD]);
    let sent = proxy.requests("GET", "/blobs/");
    assert!(
        sent.iter().all(|seen| seen
            .header("Authorization")
            .is_some_and(|v| v.starts_with("Basic "))),
        "the credentials were used"
    );

    // A registry failing a blob, with the credentials in play: the error is printed whole.
    let failing = project(&host, PASSWORD);
    proxy.fault(
        "/blobs/",
        Fault::Status {
            status: 500,
            headers: vec![("Retry-After".into(), "0".into())],
            body: b"backend down".to_vec(),
        },
        usize::MAX,
    );
    let run = loud_layout(&failing, &host).failure(1);
    assert!(run.stderr.contains("HTTP 500"), "{run}");
    assert_no_leak(&failing, &run, &[PASSWORD]);
}

#[test]
fn rejected_credentials_never_show() {
    let registry = Registry::start_with_auth(USER, PASSWORD);
    TestSet::new().push(&Pusher::new(&registry), "");
    let host = registry.host();
    let wrong = "wr0ng-pa55-also-secret";
    let test = project(&host, wrong);
    let run = loud_layout(&test, &host).failure(1);
    // The rejection names the file the login came from.
    let config = test.path().join("docker/config.json");
    assert!(
        run.stderr.contains(&format!(
            "the credentials from `{}` were rejected",
            config.display()
        )),
        "{run}"
    );
    assert_no_leak(&test, &run, &[wrong, PASSWORD]);
    // The wrong login's own encoding is a secret too.
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{wrong}"));
    assert!(!run.stderr.contains(&encoded));
}

#[test]
fn bearer_tokens_and_the_login_that_got_them_never_show() {
    let registry = Registry::start();
    TestSet::new().push(&Pusher::new(&registry), "");
    // The proxy plays a registry with a token server: `/token` wants the basic login and
    // hands out TOKEN, every `/v2/` request wants `Bearer TOKEN`.
    let proxy = Proxy::start(registry.addr());
    proxy.require_bearer_with_login(TOKEN, USER, PASSWORD);
    let host = proxy.host();

    let test = project(&host, PASSWORD);
    let run = loud_layout(&test, &host).success();
    assert_no_leak(&test, &run, &[PASSWORD, TOKEN]);
    let seen = proxy.seen();
    assert!(
        seen.iter().any(|seen| seen.path.starts_with("/token")
            && seen
                .header("Authorization")
                .is_some_and(|v| v.starts_with("Basic "))),
        "the token server got the login"
    );
    let bearer = format!("Bearer {TOKEN}");
    assert!(
        seen.iter()
            .filter(|seen| seen.path.contains("/blobs/") || seen.path.contains("/manifests/"))
            .all(|seen| seen.header("Authorization") == Some(bearer.as_str())),
        "manifests and blobs went with the token"
    );

    // A blob redirected to storage elsewhere: the token does not follow, and a storage that
    // fails shows no token in the error either.
    let storage = Proxy::start(registry.addr());
    storage.fault(
        "/storage/",
        Fault::Status {
            status: 403,
            headers: vec![],
            body: b"<Error>AccessDenied</Error>".to_vec(),
        },
        usize::MAX,
    );
    proxy.fault(
        "/blobs/",
        Fault::Redirect(format!("http://{}/storage/blob", storage.host())),
        usize::MAX,
    );
    let redirected = project(&host, PASSWORD);
    let run = loud_layout(&redirected, &host).failure(1);
    assert!(run.stderr.contains("HTTP 403"), "{run}");
    assert_no_leak(&redirected, &run, &[PASSWORD, TOKEN]);
    assert!(
        storage
            .seen()
            .iter()
            .all(|seen| seen.header("Authorization").is_none()),
        "credentials followed the redirect"
    );
}

/// `--creds` and `ISOBUILD_CREDS` (right and wrong), with every log on: the password shows
/// nowhere, not even in the usage line of a rejected run.
#[test]
fn credentials_given_on_the_command_line_or_in_the_environment_never_show() {
    let registry = Registry::start_with_auth(USER, PASSWORD);
    TestSet::new().push(&Pusher::new(&registry), "");
    let host = registry.host();
    let no_files = |test: Test| {
        test.env("DOCKER_CONFIG", "/nonexistent")
            .env("HOME", "/nonexistent")
            .env("XDG_RUNTIME_DIR", "/nonexistent")
    };
    let test = no_files(project(&host, "unused-here"))
        .env("ISOBUILD_CREDS", &format!("{host}={USER}:{PASSWORD}"));
    let run = loud_layout(&test, &host).success();
    assert_no_leak(&test, &run, &[PASSWORD]);

    let wrong = "wr0ng-given-secret";
    let test = no_files(project(&host, "unused-here"));
    let login = format!("{USER}:{wrong}");
    let run = loud_layout_with(&test, &host, &["--creds", &login]).failure(1);
    assert!(run.stderr.contains("from `--creds` were rejected"), "{run}");
    assert_no_leak(&test, &run, &[wrong, PASSWORD]);
}

/// An identity token (`identitytoken` in auth.json) and the access token it is exchanged
/// for never show.
#[test]
fn identity_tokens_never_show() {
    const REFRESH: &str = "r3fresh-token-never-printed";
    let registry = Registry::start();
    TestSet::new().push(&Pusher::new(&registry), "");
    let proxy = Proxy::start(registry.addr());
    proxy.require_bearer_with_refresh_token(TOKEN, REFRESH);
    let host = proxy.host();
    let test = project(&host, "unused-here").file(
        "auth.json",
        &format!(r#"{{"auths": {{"{host}": {{"identitytoken": "{REFRESH}"}}}}}}"#),
    );
    let auth = test.path().join("auth.json");
    let test = test.env("REGISTRY_AUTH_FILE", auth.to_str().unwrap());
    let run = loud_layout(&test, &host).success();
    assert_no_leak(&test, &run, &[REFRESH, TOKEN]);
}
