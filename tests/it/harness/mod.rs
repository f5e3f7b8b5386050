//! The [`Test`] builder: a temporary project folder with a recipe and files, the `isobuild`
//! binary run in it, and assertions on its exit code, output and files.

#![allow(dead_code)]

pub(crate) mod images;
pub(crate) mod peers;
pub(crate) mod podman;
pub(crate) mod proxy;
pub(crate) mod rpms;
pub(crate) mod standin_rpms;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary project in which `isobuild` runs.
pub struct Test {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    current_dir: Option<PathBuf>,
}

/// What one run of `isobuild` did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("isobuild-it-")
            .tempdir()
            .expect("temporary folder");
        Self {
            dir,
            env: Vec::new(),
            current_dir: None,
        }
    }

    /// The project folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The cache folder every run uses (inside the project folder, so tests never share one).
    pub fn cache_dir(&self) -> PathBuf {
        self.path().join(".cache")
    }

    /// Write `recipe.yaml`.
    pub fn recipe(self, yaml: &str) -> Self {
        self.file("recipe.yaml", yaml)
    }

    /// Write a file (parents created) in the project folder.
    pub fn file(self, path: &str, contents: &str) -> Self {
        self.write(path, contents);
        self
    }

    /// Write a file in the project folder after construction.
    pub fn write(&self, path: &str, contents: &str) {
        let path = self.path().join(path);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, contents).unwrap();
    }

    /// Make a project file executable.
    pub fn executable(self, path: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path().join(path);
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Run `isobuild ARGS` in the project folder.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(env!("CARGO_BIN_EXE_isobuild"));
        command
            .args(args)
            .current_dir(self.current_dir.as_deref().unwrap_or(self.path()))
            .env("ISOBUILD_CACHE_DIR", self.cache_dir())
            .env("NO_COLOR", "1")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("RUST_LOG");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let output = command.output().expect("run isobuild");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Read a file of the project folder.
    pub fn read(&self, path: &str) -> String {
        fs_err::read_to_string(self.path().join(path)).unwrap()
    }
}

impl Run {
    /// Assert exit code 0 and return self.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success\n{self}");
        self
    }

    /// Assert exit code `code` and return self.
    #[track_caller]
    pub fn failure(self, code: i32) -> Self {
        assert_eq!(self.code, Some(code), "expected exit code {code}\n{self}");
        self
    }

    #[track_caller]
    pub fn stderr_contains(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn stdout_contains(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{self}"
        );
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code: {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Every regular file under `root`: relative path → content.
pub fn tree_contents(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| {
            (
                entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .display()
                    .to_string(),
                fs_err::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// Extract an ISO with `xorriso -osirrox on -extract` (no mount), then make its folders
/// searchable by everyone, as nginx workers running as `nobody` need.
pub fn extract_iso(iso: &Path, dest: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let output = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/"])
        .arg(dest)
        .output()
        .expect("xorriso is installed (apt-get install xorriso)");
    assert!(
        output.status.success(),
        "xorriso -extract: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for entry in walkdir::WalkDir::new(dest) {
        let entry = entry.unwrap();
        if entry.file_type().is_dir() {
            fs_err::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

/// Every path under `dir` (files and folders, `dir` itself as ``), relative, sorted.
pub fn relative_paths(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|entry| {
            entry
                .unwrap()
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

/// Append a regular file member to a test archive (mode 0644, mtime 0).
pub fn tar_file(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    tar_raw_member(builder, name, tar::EntryType::Regular, "", data);
}

/// Append a member written with raw header fields, so tests can craft what `tar::Builder`
/// itself refuses to write (`../evil`, absolute names, links pointing anywhere).
pub fn tar_raw_member(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

/// Check a `--report` file against `src/report/report.schema.json` with python3-jsonschema
/// (draft 2020-12, formats checked), the validator a consumer of the report would use.
#[track_caller]
pub fn assert_matches_report_schema(report: &Path) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/report/report.schema.json");
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)\n\
        errors = [f'{list(e.absolute_path)}: {e.message}' for e in validator.iter_errors(json.load(open(sys.argv[2])))]\n\
        print('\\n'.join(errors))\n\
        sys.exit(1 if errors else 0)\n";
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&schema)
        .arg(report)
        .output()
        .expect("python3 (with python3-jsonschema) is needed: apt-get install python3-jsonschema");
    assert!(
        output.status.success(),
        "{} does not match the schema:\n{}{}\n{}",
        report.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        fs_err::read_to_string(report).unwrap_or_default()
    );
}
