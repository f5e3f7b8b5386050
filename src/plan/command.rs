//! `tasks:` entries: commands with declared inputs and outputs.
//!
//! A command runs in the recipe's folder with the caller's environment plus its own `env:`
//! and `SOURCE_DATE_EPOCH` (from the recipe's epoch) so that tools that honour it are
//! reproducible. Its key is the argv, the env and the content of every file its `inputs:`
//! globs match. It must write every declared output, else it failed.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use globset::GlobBuilder;

use crate::engine::{Fingerprint, JobOutput};
use crate::recipe::CommandTask;

use super::TaskError;

/// One `tasks:` entry, ready to run.
pub struct CommandJob {
    spec: CommandTask,
    base_dir: PathBuf,
    epoch: Option<i64>,
}

impl CommandJob {
    pub(super) fn new(spec: CommandTask, base_dir: PathBuf, epoch: Option<i64>) -> Self {
        Self {
            spec,
            base_dir,
            epoch,
        }
    }

    pub(super) fn name(&self) -> String {
        format!("task {}", self.spec.name)
    }

    pub(super) async fn fingerprint(&self) -> Result<Fingerprint, TaskError> {
        let mut fingerprint = Fingerprint::new();
        fingerprint.add(
            "command",
            serde_json::to_string(&self.spec.run).map_err(std::io::Error::other)?,
        );
        for (key, value) in &self.spec.env {
            fingerprint.add(format!("env {key}"), value.clone());
        }
        for output in &self.spec.outputs {
            fingerprint.add(format!("output {}", self.shown(output)), "declared");
        }
        let (patterns, base_dir) = (self.spec.inputs.clone(), self.base_dir.clone());
        let inputs = tokio::task::spawn_blocking(move || expand_inputs(&patterns, &base_dir))
            .await
            .map_err(|join| TaskError::Io(std::io::Error::other(join.to_string())))??;
        for input in inputs {
            let hash = crate::fs::sha256_file(&input)?;
            fingerprint.add(format!("input {}", self.shown(&input)), hash);
        }
        Ok(fingerprint)
    }

    pub(super) fn missing_output(&self) -> Option<String> {
        self.spec
            .outputs
            .iter()
            .find(|output| !output.exists())
            .map(|output| self.shown(output))
    }

    pub(super) async fn run(&self) -> Result<JobOutput, TaskError> {
        let program = &self.spec.run[0];
        let mut command = tokio::process::Command::new(program);
        command
            .args(&self.spec.run[1..])
            .current_dir(&self.base_dir)
            .envs(&self.spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Cancellation drops this future: the command must not outlive it.
            .kill_on_drop(true);
        if let Some(epoch) = self.epoch {
            command.env("SOURCE_DATE_EPOCH", epoch.to_string());
        }
        own_group_dying_with_us(&mut command);
        let mut child = command.spawn().map_err(|source| TaskError::Spawn {
            program: program.clone(),
            source,
        })?;
        // Whatever the command started is killed with it when this future ends, finished or
        // dropped (Ctrl-C, SIGTERM, another task failing): nothing it left running can write
        // into the tree after isobuild is done with it.
        let group = child.id().map(GroupKiller);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let stdout = tokio::spawn(read_to_end(stdout));
        let stderr = tokio::spawn(read_to_end(stderr));
        let status = child.wait().await.map_err(|source| TaskError::Spawn {
            program: program.clone(),
            source,
        })?;
        // The command is done: what it left in the background goes now, which also closes
        // the pipes it inherited (else reading them would wait for it).
        drop(group);
        let output = std::process::Output {
            status,
            stdout: stdout.await.unwrap_or_default(),
            stderr: stderr.await.unwrap_or_default(),
        };
        if !output.status.success() {
            return Err(TaskError::CommandFailed {
                command: self.spec.run.join(" "),
                status: describe_status(output.status),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let mut bytes = 0;
        for path in &self.spec.outputs {
            match fs_err::metadata(path) {
                Ok(metadata) => bytes += metadata.len(),
                Err(_) => return Err(TaskError::OutputMissing { path: path.clone() }),
            }
        }
        Ok(JobOutput { bytes })
    }

    /// A hash of every declared output's content (a folder's files with their paths), so
    /// that a write after the task ran (by a child that outlived it, say) makes it run again.
    pub(super) async fn outputs_digest(&self) -> Option<String> {
        let outputs = self.spec.outputs.clone();
        tokio::task::spawn_blocking(move || hash_outputs(&outputs))
            .await
            .ok()
    }

    fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.base_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Everything `pipe` gives until it closes (nothing when there is no pipe or it fails).
async fn read_to_end<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut bytes).await;
    }
    bytes
}

/// Hash `outputs`: for each, its files' relative paths and contents (`missing` when absent).
fn hash_outputs(outputs: &[PathBuf]) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for output in outputs {
        hasher.update(output.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        for entry in walkdir::WalkDir::new(output).sort_by_file_name() {
            let Ok(entry) = entry else {
                hasher.update(b"missing\0");
                continue;
            };
            let relative = entry.path().strip_prefix(output).unwrap_or(entry.path());
            hasher.update(relative.as_os_str().as_encoded_bytes());
            hasher.update([0]);
            if entry.file_type().is_file() {
                match crate::fs::sha256_file(entry.path()) {
                    Ok(hash) => hasher.update(hash.as_bytes()),
                    Err(_) => hasher.update(b"unreadable"),
                }
                hasher.update([0]);
            }
        }
    }
    hex::encode(hasher.finalize())
}

/// Start `command` in a process group of its own, which dies with isobuild.
///
/// The group lets [`GroupKiller`] stop everything the command started, not just the command.
/// `PR_SET_PDEATHSIG` covers what no destructor can: isobuild killed outright (`SIGKILL`,
/// the OOM killer). The kernel then sends `SIGKILL` to the command, which otherwise would
/// go on writing into a tree the next run believes up to date. (The signal follows the
/// thread that spawned the child; tokio's worker threads live as long as the run.)
#[allow(unsafe_code)]
fn own_group_dying_with_us(command: &mut tokio::process::Command) {
    command.process_group(0);
    // SAFETY: the closure runs in the forked child before `exec`, where only
    // async-signal-safe calls are allowed. It makes one `prctl` system call through rustix
    // (no allocation, no lock, no other thread's state touched) and returns its error.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
}

/// Kills a command's process group when dropped.
struct GroupKiller(u32);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pid) = i32::try_from(self.0)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            // The group may be gone already (every member exited): nothing to do then.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

pub fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "failed".to_owned(),
    }
}

/// The files matched by `patterns` (relative to `base_dir`), sorted and deduplicated.
///
/// Only the folder before a pattern's first wildcard is walked, so `images/salt/**` never
/// reads the rest of the project.
pub(super) fn expand_inputs(
    patterns: &[String],
    base_dir: &Path,
) -> Result<Vec<PathBuf>, TaskError> {
    let mut files = Vec::new();
    for pattern in patterns {
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|error| TaskError::BadPattern {
                pattern: pattern.clone(),
                message: error.kind().to_string(),
            })?
            .compile_matcher();
        let literal = crate::recipe::glob_literal_prefix(pattern);
        let root = base_dir.join(&literal);
        let before = files.len();
        if root.is_file() && literal.as_os_str() == pattern.as_str() {
            files.push(root);
        } else if root.is_dir() {
            let whole_dir = literal.as_os_str() == pattern.trim_end_matches('/');
            for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
                let entry = entry.map_err(|e| TaskError::Io(e.into()))?;
                if !entry.file_type().is_file() {
                    continue;
                }
                // An absolute pattern (a `{{ vars.… }}` checkout path) matches absolute paths.
                let relative = if Path::new(pattern).is_absolute() {
                    entry.path()
                } else {
                    entry.path().strip_prefix(base_dir).unwrap_or(entry.path())
                };
                if whole_dir || matcher.is_match(relative) {
                    files.push(entry.path().to_owned());
                }
            }
        }
        if files.len() == before {
            return Err(TaskError::NoInputs {
                pattern: pattern.clone(),
            });
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::expand_inputs;

    #[test]
    fn globs_walk_only_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["a/x.txt", "a/b/y.txt", "a/b/z.md", "c/w.txt"] {
            let path = dir.path().join(file);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, file).unwrap();
        }
        let names = |patterns: &[&str]| {
            let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
            expand_inputs(&patterns, dir.path())
                .unwrap()
                .into_iter()
                .map(|path| path.strip_prefix(dir.path()).unwrap().display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&["a/**/*.txt"]), ["a/b/y.txt", "a/x.txt"]);
        assert_eq!(names(&["a/*.txt"]), ["a/x.txt"]);
        assert_eq!(names(&["a"]), ["a/b/y.txt", "a/b/z.md", "a/x.txt"]);
        assert_eq!(names(&["c/w.txt", "c/w.txt"]), ["c/w.txt"]);
        let absolute = format!("{}/a/**/*.md", dir.path().display());
        assert_eq!(names(&[absolute.as_str()]), ["a/b/z.md"]);
        assert!(expand_inputs(&["nope/*".into()], dir.path()).is_err());
    }
}
