//! The ISO itself: bit-for-bit reproducible whatever the cache, `--jobs`, umask or file
//! times; readable back with xorriso and servable by nginx to skopeo; never half-written;
//! `SHA256SUM` and the implanted md5 as `sha256sum` and `checkisomd5` see them.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use crate::harness::images::{Pusher, TestSet};
use crate::harness::peers::{Nginx, Registry, skopeo};
use crate::harness::{Test, extract_iso, tree_contents};

fn recipe(host: &str) -> String {
    format!(
        r#"isobuild: 1
name: Demo
version: 1.0.0
epoch: 1700000000
iso:
  output: _build/demo.iso
  root: _build/root
  implant_md5: true
  sha256sum: _build/SHA256SUM
images:
  registry_config:
    path: salt/registry.inc
    common_path: salt/registry-common.inc
    name_prefix: "demo-{{{{ version }}}}/"
    server_root: "$demo_images"
  list:
    - {{ name: alpha, ref: "{host}/test/alpha:1.0" }}
    - {{ name: beta, ref: "{host}/test/beta:2.0", archive: images/beta-2.0.tar }}
    - {{ name: multi, ref: "{host}/test/multi:3.0" }}
files:
  - {{ src: product.txt.j2, dest: product.txt, template: true }}
  - {{ src: static/, dest: static/ }}
  - {{ src: bootstrap.sh, dest: bootstrap.sh }}
"#
    )
}

fn project(registry: &Registry) -> Test {
    Test::new()
        .recipe(&recipe(&registry.host()))
        .file(
            "product.txt.j2",
            "NAME={{ name }}\nVERSION={{ version }}\n{% for image in images %}{{ image.name }}={{ image.digest }}\n{% endfor %}",
        )
        .file("static/a.txt", "a\n")
        .file("static/deep/b.txt", "b\n")
        .file("bootstrap.sh", "#!/bin/sh\necho bootstrap\n")
        .executable("bootstrap.sh")
}

fn registry() -> Registry {
    let registry = Registry::start();
    TestSet::new().push(&Pusher::new(&registry), "");
    registry
}

fn sha256_of(path: &Path) -> String {
    isobuild::reference::Digest::of(&fs_err::read(path).unwrap())
        .hex()
        .to_owned()
}

/// Run isobuild under a shell with `umask 077`.
fn build_with_umask(test: &Test, args: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077 && exec '{}' {args}",
            env!("CARGO_BIN_EXE_isobuild")
        ))
        .current_dir(test.path())
        .env("ISOBUILD_CACHE_DIR", test.cache_dir())
        .status()
        .unwrap();
    assert!(status.success(), "isobuild {args}");
}

#[test]
fn the_iso_is_reproducible_across_caches_jobs_umask_and_mtimes() {
    let registry = registry();
    let host = registry.host();
    let first = project(&registry);
    first
        .run(["build", "recipe.yaml", "-q", "--insecure-registry", &host])
        .success();
    let iso = first.path().join("_build/demo.iso");
    let reference = sha256_of(&iso);

    // Another folder, another cache, one job, umask 077, and newer source files.
    let second = project(&registry);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    second.write("static/a.txt", "a\n");
    build_with_umask(
        &second,
        &format!(
            "build recipe.yaml -q --jobs 1 --cache-dir other-cache --insecure-registry {host}"
        ),
    );
    assert_eq!(sha256_of(&second.path().join("_build/demo.iso")), reference);

    // Many jobs, from scratch, after a cache gc.
    first.run(["cache", "gc"]).success();
    fs_err::remove_dir_all(first.path().join("_build")).unwrap();
    first
        .run([
            "build",
            "recipe.yaml",
            "-q",
            "--jobs",
            "8",
            "--insecure-registry",
            &host,
        ])
        .success();
    assert_eq!(sha256_of(&iso), reference);

    // SHA256SUM is what sha256sum prints.
    assert_eq!(
        first.read("_build/SHA256SUM"),
        format!("{reference}  demo.iso\n")
    );
    let output = Command::new("sha256sum")
        .arg("demo.iso")
        .current_dir(first.path().join("_build"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        first.read("_build/SHA256SUM")
    );

    // The implanted md5 checks out.
    let check = Command::new("checkisomd5").arg(&iso).output().unwrap();
    assert!(
        check.status.success(),
        "checkisomd5: {}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn a_second_build_with_nothing_changed_does_not_rewrite_the_iso() {
    let registry = registry();
    let host = registry.host();
    let test = project(&registry);
    test.run(["build", "recipe.yaml", "-q", "--insecure-registry", &host])
        .success();
    let iso = test.path().join("_build/demo.iso");
    let before = fs_err::metadata(&iso).unwrap().modified().unwrap();
    test.run([
        "build",
        "recipe.yaml",
        "-q",
        "--offline",
        "--report",
        "r.json",
    ])
    .success();
    assert_eq!(fs_err::metadata(&iso).unwrap().modified().unwrap(), before);
    let report: serde_json::Value = serde_json::from_str(&test.read("r.json")).unwrap();
    assert!(
        report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|task| task["status"] == "up-to-date"),
        "{report}"
    );
}

/// The ISO 9660 (not Rock Ridge) names in the root folder of an ISO.
fn iso9660_root_names(iso: &Path) -> Vec<String> {
    let mut file = fs_err::File::open(iso).unwrap();
    let mut pvd = vec![0; 2048];
    file.seek(SeekFrom::Start(16 * 2048)).unwrap();
    file.read_exact(&mut pvd).unwrap();
    assert_eq!(&pvd[1..6], b"CD001");
    let root = &pvd[156..190];
    let extent = u64::from(u32::from_le_bytes(root[2..6].try_into().unwrap()));
    let size = u32::from_le_bytes(root[10..14].try_into().unwrap()) as usize;
    let mut records = vec![0; size];
    file.seek(SeekFrom::Start(extent * 2048)).unwrap();
    file.read_exact(&mut records).unwrap();
    let mut names = Vec::new();
    let mut offset = 0;
    while offset < records.len() {
        let length = records[offset] as usize;
        if length == 0 {
            offset = (offset / 2048 + 1) * 2048;
            continue;
        }
        let name_length = records[offset + 32] as usize;
        let name = &records[offset + 33..offset + 33 + name_length];
        if name != [0] && name != [1] {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
        offset += length;
    }
    names
}

#[test]
fn the_iso_reads_back_as_the_tree_and_serves_images() {
    let registry = registry();
    let host = registry.host();
    let test = project(&registry);
    test.run(["build", "recipe.yaml", "-q", "--insecure-registry", &host])
        .success();
    let iso = test.path().join("_build/demo.iso");
    let extracted = test.path().join("extracted");
    extract_iso(&iso, &extracted);
    assert_eq!(
        tree_contents(&extracted),
        tree_contents(&test.path().join("_build/root")),
        "the ISO holds exactly the tree"
    );
    assert!(
        iso9660_root_names(&iso).contains(&"PRODUCT.TXT;1".to_owned()),
        "{:?}",
        iso9660_root_names(&iso)
    );
    test.run(["verify", "_build/demo.iso"])
        .success()
        .stdout_contains("3 images");

    // Serve the extracted tree as a node would, and pull one image.
    let nginx = Nginx::start(
        &extracted.join("images"),
        "$demo_images",
        &[
            &extracted.join("salt/registry-common.inc"),
            &extracted.join("salt/registry.inc"),
        ],
    );
    let inspected: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/demo-1.0.0/multi:3.0", nginx.host()),
    ]))
    .unwrap();
    let manifest = extracted.join("images/multi/3.0/manifest.json");
    assert_eq!(
        inspected["Digest"],
        format!("sha256:{}", sha256_of(&manifest))
    );
    // product.txt carries the digest the node will serve.
    assert!(
        test.read("_build/root/product.txt")
            .contains(&format!("multi=sha256:{}", sha256_of(&manifest)))
    );
}

#[test]
fn a_failing_task_leaves_no_iso() {
    let registry = registry();
    let test = project(&registry);
    let mut text = recipe(&registry.host());
    text.push_str("tasks:\n  - { name: broken, run: [sh, -c, 'exit 7'] }\n");
    test.write("recipe.yaml", &text);
    test.run([
        "build",
        "recipe.yaml",
        "-q",
        "--insecure-registry",
        &registry.host(),
    ])
    .failure(1);
    assert!(!test.path().join("_build/demo.iso").exists());
    assert!(!test.path().join("_build/SHA256SUM").exists());
}

#[test]
fn ctrl_c_during_the_iso_step_leaves_nothing_at_the_output_path() {
    let recipe = "isobuild: 1\nname: big\nversion: '1'\niso: { output: out/big.iso, root: tree }\nfiles:\n  - { src: big/, dest: big/ }\n";
    let test = Test::new().recipe(recipe);
    // Enough incompressible bytes that xorriso takes a moment.
    let big = test.path().join("big");
    fs_err::create_dir_all(&big).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..4 {
        let mut bytes = vec![0u8; 64 << 20];
        for chunk in bytes.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        fs_err::write(big.join(format!("part-{i}")), bytes).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_isobuild"))
        .args(["build", "recipe.yaml", "-q"])
        .current_dir(test.path())
        .env("ISOBUILD_CACHE_DIR", test.cache_dir())
        .spawn()
        .unwrap();
    let out = test.path().join("out");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let temporary = || {
        fs_err::read_dir(&out).ok().is_some_and(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".isobuild-tmp")
            })
        })
    };
    while !temporary() {
        assert!(
            std::time::Instant::now() < deadline,
            "the ISO step never started"
        );
        if child.try_wait().unwrap().is_some() {
            // Finished before we could interrupt it: nothing to check on this machine.
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let code = child.wait().unwrap().code();
    if code == Some(0) {
        // The ISO finished in the instant between the check and the signal.
        return;
    }
    assert_eq!(code, Some(130));
    assert!(
        !out.join("big.iso").exists(),
        "no ISO after an interrupted build"
    );
    assert!(!temporary(), "no temporary ISO left behind");
}

#[test]
fn a_build_says_what_it_made_and_its_report_matches_the_schema() {
    let registry = registry();
    let host = registry.host();
    let test = project(&registry);
    let run = test
        .run([
            "build",
            "recipe.yaml",
            "--progress",
            "plain",
            "--insecure-registry",
            &host,
            "--report",
            "r.json",
        ])
        .success();
    let iso = test.path().join("_build/demo.iso");
    let size = fs_err::metadata(&iso).unwrap().len();
    let finished = regex::Regex::new(&format!(
        r"^    Finished {} \((\d+\.\d) MiB, sha256:{}\) in \d+\.\d\ds\n$",
        regex::escape(&iso.display().to_string()),
        sha256_of(&iso)
    ))
    .unwrap();
    assert!(finished.is_match(&run.stdout), "{run}");
    #[allow(clippy::cast_precision_loss)]
    let mib = format!("{:.1} MiB", size as f64 / 1024.0 / 1024.0);
    assert!(run.stdout.contains(&mib), "{mib}\n{run}");
    // The summary in human units, downloads apart from the cache.
    let summary = regex::Regex::new(
        r"\] \d+ tasks: \d+ ran, 0 up to date in \d+\.\d\ds; \d+\.\d (KiB|MiB) downloaded, 0 B from the cache, \d+\.\d (KiB|MiB) written\n",
    )
    .unwrap();
    assert!(summary.is_match(&run.stderr), "{run}");
    crate::harness::assert_matches_report_schema(&test.path().join("r.json"));
    let report: serde_json::Value = serde_json::from_str(&test.read("r.json")).unwrap();
    assert_eq!(report["schema"], 2);
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["recipe"]["name"], "Demo");
    assert_eq!(report["iso"]["size"], size);
    assert_eq!(
        report["iso"]["sha256"],
        format!("sha256:{}", sha256_of(&iso))
    );
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "{report}");
    assert_eq!(images[0]["reference"], format!("{host}/test/alpha:1.0"));
    assert_eq!(images[0]["platform"], "linux/amd64");
    assert!(
        report["bytes"]["downloaded"].as_u64().unwrap() > 0,
        "{report}"
    );

    // Again, offline: nothing downloaded, everything from the cache, and the same ISO.
    let run = test
        .run(["build", "recipe.yaml", "--progress", "plain", "--offline"])
        .success();
    assert!(finished.is_match(&run.stdout), "{run}");
    assert!(run.stderr.contains(" 0 B downloaded, "), "{run}");
}
