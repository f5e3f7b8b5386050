//! The resolver against dnf, case by case: synthetic RPMs made with rpmbuild, repositories
//! made with createrepo_c (one modular, with modules.yaml added by modifyrepo_c), and
//! `dnf repoquery --requires --resolve --recursive --latest-limit=1` as the oracle.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use isobuild::rpm::modules::ModularFilter;
use isobuild::rpm::{LocalRepo, Pool};

use crate::harness::rpms::{Rpm, make_repos, rpm, run};

/// The universe every case resolves in: `os` only resolves (BaseOS/AppStream stand-in),
/// `epel` ships, `mod` is modular.
fn universe() -> Vec<Rpm> {
    vec![
        // virtual provide with two providers
        Rpm {
            requires: &["webserver"],
            ..rpm("epel", "v-app", "1.0")
        },
        Rpm {
            provides: &["webserver"],
            ..rpm("epel", "v-nginx", "1.0")
        },
        Rpm {
            provides: &["webserver"],
            ..rpm("os", "v-httpd", "1.0")
        },
        // or
        Rpm {
            requires: &["(or-a or or-b)"],
            ..rpm("epel", "or-app", "1.0")
        },
        rpm("epel", "or-a", "1.0"),
        rpm("epel", "or-b", "1.0"),
        // if, if-else (rpm refuses `unless` in Requires)
        Rpm {
            requires: &["(if-a if if-cond)", "(if-x if if-y else if-z)"],
            ..rpm("epel", "if-app", "1.0")
        },
        rpm("epel", "if-a", "1.0"),
        rpm("epel", "if-cond", "1.0"),
        rpm("epel", "if-x", "1.0"),
        rpm("epel", "if-y", "1.0"),
        rpm("epel", "if-z", "1.0"),
        // file requires: one primary lists, one only filelists know
        Rpm {
            requires: &["/usr/bin/file-tool", "/opt/file/data"],
            ..rpm("epel", "file-app", "1.0")
        },
        Rpm {
            files: &["/usr/bin/file-tool"],
            ..rpm("epel", "file-tool", "1.0")
        },
        Rpm {
            files: &["/opt/file/data"],
            ..rpm("epel", "file-data", "1.0")
        },
        Rpm {
            files: &["/opt/file/other"],
            ..rpm("epel", "file-other", "1.0")
        },
        // multilib: both arches provide what is required
        Rpm {
            requires: &["ml-lib"],
            ..Rpm {
                arch: "x86_64",
                ..rpm("epel", "ml-app", "1.0")
            }
        },
        Rpm {
            provides: &["ml-lib"],
            ..Rpm {
                arch: "x86_64",
                ..rpm("epel", "libml", "1.0")
            }
        },
        Rpm {
            provides: &["ml-lib"],
            ..Rpm {
                arch: "i686",
                ..rpm("epel", "libml", "1.0")
            }
        },
        // obsoletes: the obsoleted package comes along
        Rpm {
            requires: &["ob-old"],
            ..rpm("epel", "ob-app", "1.0")
        },
        rpm("epel", "ob-old", "1.0"),
        Rpm {
            provides: &["ob-old = 2.0"],
            obsoletes: &["ob-old < 2.0"],
            ..rpm("epel", "ob-new", "2.0")
        },
        // versioned ranges, and `with`
        Rpm {
            requires: &["vr-lib >= 2.0", "vr-lib < 3.0"],
            ..rpm("epel", "vr-app", "1.0")
        },
        rpm("epel", "vr-lib", "1.0"),
        rpm("epel", "vr-lib", "2.0"),
        rpm("epel", "vr-lib", "3.0"),
        Rpm {
            requires: &["(vw-lib >= 2.0 with vw-lib < 3.0)"],
            ..rpm("epel", "vw-app", "1.0")
        },
        rpm("epel", "vw-lib", "1.0"),
        rpm("epel", "vw-lib", "2.0"),
        rpm("epel", "vw-lib", "2.5"),
        rpm("epel", "vw-lib", "3.0"),
        // epochs
        Rpm {
            requires: &["ep-lib >= 1:1.0"],
            ..rpm("epel", "ep-app", "1.0")
        },
        rpm("epel", "ep-lib", "2.0"),
        rpm("epel", "ep-lib", "1:1.0"),
        // the OS wins the newest, and the closure walks through it
        Rpm {
            requires: &["os-lib"],
            ..rpm("epel", "os-app", "1.0")
        },
        rpm("epel", "os-lib", "1.0"),
        Rpm {
            requires: &["os-dep", "os-only"],
            ..rpm("os", "os-lib", "2.0")
        },
        rpm("epel", "os-dep", "1.0"),
        rpm("os", "os-only", "1.0"),
        // a modular stream: the default stream's build beats the plain package
        Rpm {
            requires: &["mod-web"],
            ..rpm("epel", "mod-app", "1.0")
        },
        rpm("mod", "mod-web", "1.0"),
        Rpm {
            requires: &["mod-dep"],
            ..rpm("mod", "mod-web", "2.0")
        },
        rpm("mod", "mod-dep", "1.0"),
        rpm("epel", "mod-web", "3.0"),
        // an unresolvable requirement (repoquery drops it silently)
        Rpm {
            requires: &["un-missing", "un-ok"],
            ..rpm("epel", "un-app", "1.0")
        },
        rpm("epel", "un-ok", "1.0"),
        // a seed with a version
        Rpm {
            requires: &["sv-dep-a"],
            ..rpm("epel", "sv", "1.0")
        },
        Rpm {
            requires: &["sv-dep-b"],
            ..rpm("epel", "sv", "2.0")
        },
        rpm("epel", "sv-dep-a", "1.0"),
        rpm("epel", "sv-dep-b", "1.0"),
    ]
}

const MODULES_YAML: &str = "---
document: modulemd
version: 2
data:
  name: mod-web
  stream: \"1\"
  version: 1
  context: c0ffee01
  arch: x86_64
  summary: web
  description: web
  license:
    module: [MIT]
  dependencies:
  - requires:
      platform: [el8]
  artifacts:
    rpms:
    - mod-web-0:1.0-1.noarch
...
---
document: modulemd
version: 2
data:
  name: mod-web
  stream: \"2\"
  version: 1
  context: c0ffee01
  arch: x86_64
  summary: web
  description: web
  license:
    module: [MIT]
  dependencies:
  - requires:
      platform: [el8]
  artifacts:
    rpms:
    - mod-web-0:2.0-1.noarch
    - mod-dep-0:1.0-1.noarch
...
---
document: modulemd-defaults
version: 1
data:
  module: mod-web
  stream: \"2\"
...
";

/// (case, seeds)
const CASES: &[(&str, &[&str])] = &[
    ("virtual provide, two providers", &["v-app"]),
    ("or", &["or-app"]),
    ("if, if-else", &["if-app"]),
    ("file requires (primary, filelists)", &["file-app"]),
    ("multilib", &["ml-app"]),
    ("obsoletes", &["ob-app"]),
    ("versioned ranges", &["vr-app"]),
    ("with", &["vw-app"]),
    ("epochs", &["ep-app"]),
    ("OS newest, closure through OS", &["os-app"]),
    ("modular stream", &["mod-app"]),
    ("unresolvable requirement", &["un-app"]),
    ("seed with a version", &["sv-1.0"]),
    (
        "all seeds at once",
        &[
            "v-app", "or-app", "if-app", "file-app", "ml-app", "mod-app", "un-app", "os-app",
            "ep-app",
        ],
    ),
];

/// dnf's answer, as `name-epoch:version-release.arch repo` lines.
fn dnf_closure(dir: &Path, repos: &BTreeMap<String, PathBuf>, seeds: &[&str]) -> BTreeSet<String> {
    let config = dir.join("dnf.conf");
    let reposdir = dir.join("repos.d");
    if !config.exists() {
        fs_err::create_dir_all(&reposdir).unwrap();
        fs_err::create_dir_all(dir.join("root")).unwrap();
        fs_err::write(
            &config,
            format!(
                "[main]\ngpgcheck=0\ncachedir={}\nmodule_platform_id=platform:el8\n",
                dir.join("cache").display()
            ),
        )
        .unwrap();
        let mut repo_file = String::new();
        for (id, path) in repos {
            repo_file.push_str(&format!(
                "[{id}]\nname={id}\nbaseurl=file://{}\ngpgcheck=0\n",
                path.display()
            ));
        }
        fs_err::write(reposdir.join("test.repo"), repo_file).unwrap();
    }
    // dnf-plugins-core's `local` plugin (installed for the bench's `dnf download`) would
    // add a `_dnf_local` repository of whatever dnf installed before.
    let output = run(Command::new("dnf")
        .args(["-q", "--disableplugin=local"])
        .arg(format!("--installroot={}", dir.join("root").display()))
        .arg("-c")
        .arg(&config)
        .arg(format!("--setopt=reposdir={}", reposdir.display()))
        .args(["--releasever=8", "--forcearch=x86_64", "repoquery"])
        .args(["--requires", "--resolve", "--recursive", "--latest-limit=1"])
        .args([
            "--qf",
            "%{name}-%{epoch}:%{version}-%{release}.%{arch} %{repoid}",
        ])
        .args(seeds));
    output
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

struct Ours {
    pool: Pool,
    repos: Vec<LocalRepo>,
}

impl Ours {
    fn new(repos: &BTreeMap<String, PathBuf>) -> Self {
        let repos: Vec<LocalRepo> = repos
            .iter()
            .map(|(id, path)| LocalRepo::open(id, path).unwrap())
            .collect();
        let indexes: Vec<_> = repos
            .iter()
            .filter_map(|repo| repo.modules().unwrap())
            .collect();
        let filter = ModularFilter::new(&indexes, &BTreeMap::new());
        let mut pool = Pool::new();
        for (index, repo) in repos.iter().enumerate() {
            for package in repo.packages().unwrap() {
                if !filter.hides(&package) {
                    pool.add(index, package);
                }
            }
        }
        Self { pool, repos }
    }

    fn closure(&mut self, seeds: &[&str]) -> (BTreeSet<String>, Vec<String>) {
        let ids: Vec<_> = seeds
            .iter()
            .flat_map(|seed| self.pool.select(seed))
            .collect();
        let repos = &self.repos;
        let closure = self
            .pool
            .closure(&ids, |paths: &HashSet<String>| {
                repos
                    .iter()
                    .enumerate()
                    .map(|(index, repo)| repo.scan_filelists(paths).map(|found| (index, found)))
                    .collect::<Result<Vec<(usize, HashMap<String, Vec<String>>)>, _>>()
            })
            .unwrap();
        let set = closure
            .packages
            .iter()
            .map(|&id| {
                let package = self.pool.package(id);
                format!(
                    "{}-{}:{}-{}.{} {}",
                    package.name,
                    package.evr.epoch.unwrap_or(0),
                    package.evr.version,
                    package.evr.release.as_deref().unwrap_or(""),
                    package.arch,
                    self.repos[self.pool.repo(id)].id
                )
            })
            .collect();
        let unresolved = closure
            .unresolved
            .iter()
            .map(|missing| {
                format!(
                    "{} needs {}",
                    self.pool.package(missing.by).name,
                    missing.dep
                )
            })
            .collect();
        (set, unresolved)
    }
}

#[test]
#[allow(clippy::print_stderr)]
fn dnf_oracle_agrees_case_by_case() {
    let dir = tempfile::tempdir().unwrap();
    let repos = make_repos(dir.path(), &universe(), MODULES_YAML, None);
    let mut ours = Ours::new(&repos);
    // dnf takes a second a query: warm its cache once, then ask the rest side by side.
    let first = dnf_closure(dir.path(), &repos, CASES[0].1);
    let answers: Vec<BTreeSet<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = CASES[1..]
            .iter()
            .map(|(_, seeds)| scope.spawn(|| dnf_closure(dir.path(), &repos, seeds)))
            .collect();
        std::iter::once(first)
            .chain(handles.into_iter().map(|handle| handle.join().unwrap()))
            .collect()
    });
    let mut table = String::from("| case | dnf | isobuild | equal |\n|---|---|---|---|\n");
    let mut failures = Vec::new();
    for ((case, seeds), want) in CASES.iter().zip(answers) {
        let (got, unresolved) = ours.closure(seeds);
        let equal = want == got;
        table.push_str(&format!(
            "| {case} | {} | {} | {} |\n",
            want.len(),
            got.len(),
            if equal { "equal" } else { "NOT equal" }
        ));
        if !equal {
            failures.push(format!("{case}: dnf {want:#?}\nisobuild {got:#?}"));
        }
        let want_unresolved: &[&str] = match *case {
            "unresolvable requirement" | "all seeds at once" => &["un-app needs un-missing"],
            _ => &[],
        };
        if unresolved != want_unresolved {
            failures.push(format!("{case}: unresolved {unresolved:?}"));
        }
    }
    eprintln!("{table}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
