//! RPM repositories under attack and over time, through the real binary: a signed
//! `repomd.xml` (and a tampered one), the signing key pinned in the lock file, a download cut
//! short, a repository changed after `lock`, `-v`'s reasons and the unresolved requirements,
//! `graph`'s package tasks, and `cache gc` keeping what a recipe's packages use.

use std::process::Command;

use isobuild::reference::Digest;

use crate::harness::proxy::{Fault, Proxy};
use crate::harness::rpms::{Rpm, make_repos, rpm, run};
use crate::packages::{Project, cached, layout_locked_in, mirror, names, project_with, universe};

/// `epel` with `repo_gpgcheck: true`.
fn require_signed_repomd(project: &Project) {
    let recipe = project.test.read("recipe.yaml");
    let recipe = recipe.replace(
        "      dest: packages/redhat/8/metalk8s-epel-el8\n",
        "      repo_gpgcheck: true\n      dest: packages/redhat/8/metalk8s-epel-el8\n",
    );
    project.test.write("recipe.yaml", &recipe);
}

fn lock_in(project: &Project, cache: &str) -> crate::harness::Run {
    let mirror = mirror(&project.nginx);
    let cache = project.test.path().join(cache);
    project.test.run([
        "lock",
        "recipe.yaml",
        "--mirror",
        &mirror,
        "--cache-dir",
        cache.to_str().unwrap(),
    ])
}

#[test]
fn a_signed_repomd_is_checked_before_it_is_trusted() {
    let project = project_with(&universe());
    require_signed_repomd(&project);
    let repomd = project.repos["epel"].join("repodata/repomd.xml");

    // No signature at all.
    lock_in(&project, "cache-unsigned")
        .failure(1)
        .stderr_contains("repository `epel`: repomd.xml is not trusted")
        .stderr_contains("repomd.xml.asc")
        .stderr_contains("RPM-GPG-KEY-test")
        .stderr_contains("404");

    // Signed: trusted.
    project.signer.detach_sign(&repomd);
    lock_in(&project, "cache-signed").success();

    // Tampered after signing: refused, and the tampered file is not in the cache.
    let mut tampered = fs_err::read(&repomd).unwrap();
    tampered.extend_from_slice(b"\n");
    fs_err::write(&repomd, &tampered).unwrap();
    let cache = project.test.path().join("cache-tampered");
    lock_in(&project, "cache-tampered")
        .failure(1)
        .stderr_contains("repository `epel`: repomd.xml is not trusted")
        .stderr_contains("does not verify with the key http://");
    assert!(
        !cached(&cache).contains(&Digest::of(&tampered).hex().to_owned()),
        "{:?}",
        cached(&cache)
    );

    // Signed by a key the repository does not list.
    let other = crate::harness::rpms::Signer::new();
    other.detach_sign(&repomd);
    lock_in(&project, "cache-other")
        .failure(1)
        .stderr_contains("repomd.xml is not trusted");
}

#[test]
fn the_lock_pins_each_rpms_signing_key_and_locked_builds_check_it() {
    let project = project_with(&universe());
    let fingerprint = project.signer.fingerprint();
    lock_in(&project, "cache").success();
    let lock = project.test.read("recipe.yaml.lock");
    assert_eq!(lock.matches(fingerprint.as_str()).count(), 4, "{lock}");

    // A lock file pinning another key: the RPM is refused, naming the pin, and not cached.
    let other = "0123456789abcdef0123456789abcdef01234567";
    let edited = lock.replacen(&fingerprint, other, 1);
    project.test.write("recipe.yaml.lock", &edited);
    let (failed, cache) = layout_locked_in(&project.test, &mirror(&project.nginx), "cache-pin");
    let failed = failed
        .failure(1)
        .stderr_contains("is refused: its signature does not verify with the key")
        .stderr_contains(&format!("{other} the lock file pins"));
    let refused: Vec<String> = rpm_digests(&edited)
        .into_iter()
        .filter(|(_, pin)| pin == other)
        .map(|(digest, _)| digest)
        .collect();
    assert_eq!(refused.len(), 1, "{edited}");
    assert!(
        !cached(&cache).contains(&refused[0]),
        "{failed}\n{:?}",
        cached(&cache)
    );
}

/// `(sha256 hex, signing key)` of every RPM in a lock file.
fn rpm_digests(lock: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut sha = None;
    for line in lock.lines() {
        let line = line.trim().trim_start_matches("- ");
        if let Some(value) = line.strip_prefix("sha256: sha256:") {
            sha = Some(value.to_owned());
        }
        if let Some(value) = line.strip_prefix("signing_key: ") {
            out.push((sha.take().unwrap(), value.to_owned()));
        }
    }
    out
}

#[test]
fn a_download_cut_short_is_an_error_and_resumes_next_time() {
    let project = project_with(&universe());
    lock_in(&project, "cache").success();
    let proxy = Proxy::start(project.nginx.host().parse().unwrap());
    // Every request to nginx goes through the proxy.
    let through = format!("http://{}/=http://{}/", project.nginx.host(), proxy.host());
    let mirror = mirror(&project.nginx);
    let cache = project.test.path().join("cache");
    let layout = |out: &str| {
        project.test.run([
            "layout",
            "recipe.yaml",
            out,
            "--locked",
            "--mirror",
            &mirror,
            "--mirror",
            &through,
            "--cache-dir",
            cache.to_str().unwrap(),
            "-q",
        ])
    };
    proxy.fault("-dep-1.0-1.noarch.rpm", Fault::Truncate(1000), 1);
    let cut = layout("out")
        .failure(1)
        .stderr_contains("dep-1.0-1.noarch.rpm");
    let lock = project.test.read("recipe.yaml.lock");
    let dep = rpm_digests(&lock)
        .into_iter()
        .map(|(digest, _)| digest)
        .collect::<Vec<_>>();
    let blobs = cached(&cache);
    let partials = names(&cache.join("tmp"));
    // Nothing half-downloaded among the verified blobs; the cut one waits in `tmp/`.
    let unverified: Vec<&String> = dep
        .iter()
        .filter(|digest| {
            partials
                .iter()
                .any(|name| name.starts_with(digest.as_str()))
        })
        .collect();
    assert_eq!(unverified.len(), 1, "{partials:?} {cut}");
    assert!(!blobs.contains(unverified[0]), "{blobs:?}");
    for blob in &blobs {
        let bytes = fs_err::read(cache.join("blobs-v1/sha256").join(blob)).unwrap();
        assert_eq!(
            &Digest::of(&bytes).hex(),
            blob,
            "a cached blob is what it is named"
        );
    }

    // Again: the partial resumes with `Range`, and the tree is written.
    proxy.clear();
    layout("out").success();
    let resumed = proxy.requests("GET", "-dep-1.0-1.noarch.rpm");
    assert!(
        resumed.iter().any(|seen| seen
            .header("range")
            .is_some_and(|range| range.starts_with("bytes=") && range != "bytes=0-")),
        "{resumed:?}"
    );
}

#[test]
fn a_repository_changed_after_lock_downloads_nothing() {
    let project = project_with(&universe());
    lock_in(&project, "cache-lock").success();
    let lock = project.test.read("recipe.yaml.lock");
    let epel = &project.repos["epel"];
    let more = project.test.path().join("more");
    let built = make_repos(
        &more,
        &[rpm("epel", "newcomer", "1.0")],
        "",
        Some(&project.signer),
    );
    for entry in fs_err::read_dir(built["epel"].join("Packages")).unwrap() {
        let entry = entry.unwrap();
        fs_err::copy(entry.path(), epel.join("Packages").join(entry.file_name())).unwrap();
    }
    run(Command::new("createrepo_c")
        .args(["--quiet", "--no-database"])
        .arg(epel));
    let (failed, cache) = layout_locked_in(&project.test, &mirror(&project.nginx), "cache-build");
    failed
        .failure(1)
        .stderr_contains("repository `epel` changed since it was locked");
    let blobs = cached(&cache);
    for (digest, _) in rpm_digests(&lock) {
        assert!(!blobs.contains(&digest), "{digest} was downloaded");
    }
}

#[test]
fn verbose_says_why_each_package_is_in_and_names_what_nothing_provides() {
    let mut rpms = universe();
    rpms.push(Rpm {
        requires: &["ghost-lib >= 2"],
        ..rpm("epel", "haunted", "1.0")
    });
    rpms[0].requires = &[
        "os-lib",
        "dep",
        "/usr/bin/dep-tool",
        "libz-common",
        "haunted",
    ];
    let project = project_with(&rpms);
    let done = lock_in(&project, "cache").success();
    assert!(
        done.stderr.contains(
            "warning: nothing provides `ghost-lib >= 2`, which `haunted-1.0-1.noarch` requires"
        ),
        "{done}"
    );
    assert!(!done.stderr.contains("needs `dep`"), "{done}");

    let mirror = mirror(&project.nginx);
    let verbose = project
        .test
        .run(["lock", "recipe.yaml", "--mirror", &mirror, "-v"])
        .success();
    for line in [
        "app-1.0-1.noarch: seed",
        "dep-1.0-1.noarch: app-1.0-1.noarch needs `dep`",
        "dep-tool-1.0-1.noarch: app-1.0-1.noarch needs `/usr/bin/dep-tool`",
        "libz-1.0-1.x86_64: app-1.0-1.noarch needs `libz-common`",
    ] {
        assert!(verbose.stderr.contains(line), "{line} not in\n{verbose}");
    }
}

#[test]
fn graph_shows_the_package_tasks_and_their_edges() {
    let project = project_with(&universe());
    let mirror = mirror(&project.nginx);
    project
        .test
        .run(["lock", "recipe.yaml", "--mirror", &mirror, "-q"])
        .success();
    let out = project
        .test
        .run(["graph", "recipe.yaml", "--format", "json"])
        .success();
    let graph: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let nodes = graph["nodes"].as_array().unwrap();
    let of_kind = |kind: &str| -> Vec<u64> {
        nodes
            .iter()
            .filter(|node| node["kind"] == kind)
            .map(|node| node["id"].as_u64().unwrap())
            .collect()
    };
    let (metadata, rpms, repos) = (
        of_kind("rpm-metadata"),
        of_kind("rpm"),
        of_kind("rpm-repository"),
    );
    assert_eq!(
        (metadata.len(), rpms.len(), repos.len()),
        (1, 4, 1),
        "{out}"
    );
    let edges: Vec<(u64, u64)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| (edge[0].as_u64().unwrap(), edge[1].as_u64().unwrap()))
        .collect();
    for rpm in &rpms {
        assert!(edges.contains(&(metadata[0], *rpm)), "{out}");
        assert!(edges.contains(&(*rpm, repos[0])), "{out}");
    }
    assert!(edges.contains(&(metadata[0], repos[0])), "{out}");
    let names: Vec<&str> = nodes
        .iter()
        .map(|node| node["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"rpm metadata epel"), "{names:?}");
    assert!(names.contains(&"rpm dep-1.0-1.noarch (epel)"), "{names:?}");

    // The DOT form has the same edges.
    let dot = project.test.run(["graph", "recipe.yaml"]).success();
    assert!(
        dot.stdout.contains("rpm-metadata\\nrpm metadata epel"),
        "{dot}"
    );
}

#[test]
fn cache_gc_keeps_what_the_recipes_packages_use() {
    let project = project_with(&universe());
    let mirror = mirror(&project.nginx);
    let test = &project.test;
    test.run(["lock", "recipe.yaml", "--mirror", &mirror, "-q"])
        .success();
    test.run([
        "layout",
        "recipe.yaml",
        "out",
        "--locked",
        "--mirror",
        &mirror,
        "-q",
    ])
    .success();
    let cache = test.cache_dir();
    let lock = test.read("recipe.yaml.lock");
    let rpms: Vec<String> = rpm_digests(&lock).into_iter().map(|(d, _)| d).collect();
    let before = cached(&cache);
    for rpm in &rpms {
        assert!(before.contains(rpm), "{rpm} not cached: {before:?}");
    }
    // An orphan blob, a stale digest memo entry, a build output.
    let orphan = b"nobody uses me";
    let orphan_hex = Digest::of(orphan).hex().to_owned();
    fs_err::write(cache.join("blobs-v1/sha256").join(&orphan_hex), orphan).unwrap();
    let memo = cache.join("digests-v1");
    fs_err::create_dir_all(&memo).unwrap();
    fs_err::write(memo.join("stale.json"), b"{}").unwrap();
    fs_err::create_dir_all(cache.join("builds/0123456789abcdef")).unwrap();
    fs_err::write(cache.join("builds/0123456789abcdef/x_1.oci.tar"), b"x").unwrap();

    let gc = test.run(["cache", "gc"]).success();
    assert!(gc.stdout.contains("removed 1 blobs"), "{gc}");
    assert!(
        gc.stdout
            .contains("1 stale digest memo entries and the image builds"),
        "{gc}"
    );
    let after = cached(&cache);
    let mut kept = before.clone();
    kept.retain(|blob| *blob != orphan_hex);
    assert_eq!(after, kept, "everything but the orphan stays");
    assert!(!memo.join("stale.json").exists());
    assert!(!cache.join("builds").exists());

    // The recipe is gone: its record keeps nothing any more.
    fs_err::rename(
        test.path().join("recipe.yaml"),
        test.path().join("gone.yaml"),
    )
    .unwrap();
    let gc = test.run(["cache", "gc"]).success();
    assert!(
        gc.stdout
            .contains("1 package records of recipes that are gone"),
        "{gc}"
    );
    let after = cached(&cache);
    for rpm in &rpms {
        assert!(!after.contains(rpm), "{rpm} still cached: {after:?}");
    }
    assert!(
        names(&cache.join("packages-v1")).is_empty(),
        "{:?}",
        names(&cache.join("packages-v1"))
    );
}

#[test]
fn a_payload_changed_under_a_valid_header_signature_is_refused() {
    use isobuild::rpm::signature::Keyring;
    let dir = tempfile::tempdir().unwrap();
    let signer = crate::harness::rpms::Signer::new();
    let repos = make_repos(dir.path(), &[rpm("epel", "dep", "1.0")], "", Some(&signer));
    let file = fs_err::read_dir(repos["epel"].join("Packages"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let keyring = Keyring::new(&[signer.public_key.as_bytes().to_vec()]).unwrap();
    let fingerprint = signer.fingerprint();
    assert_eq!(keyring.verify(&file, None).unwrap(), fingerprint);
    assert_eq!(
        keyring.verify(&file, Some(&fingerprint)).unwrap(),
        fingerprint
    );
    let bytes = fs_err::read(&file).unwrap();
    assert_eq!(keyring.verify_header(&bytes).unwrap(), fingerprint);
    let other = "0123456789abcdef0123456789abcdef01234567";
    let refused = keyring.verify(&file, Some(other)).unwrap_err().to_string();
    assert!(refused.contains(other), "{refused}");

    // The last payload byte changed: the header (and its signature) still hold.
    let mut changed = bytes.clone();
    *changed.last_mut().unwrap() ^= 0xff;
    fs_err::write(&file, &changed).unwrap();
    assert_eq!(keyring.verify_header(&changed).unwrap(), fingerprint);
    let refused = keyring.verify(&file, None).unwrap_err().to_string();
    assert!(refused.contains("payload does not match"), "{refused}");
}
