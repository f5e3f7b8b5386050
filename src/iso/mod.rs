//! The ISO file: `xorriso -as mkisofs` over the assembled tree, made reproducible, checked,
//! then optionally `implantisomd5` and a `SHA256SUM` file.
//!
//! # Flow
//!
//! 1. Check `xorriso` is installed (else say how to install it).
//! 2. Run it with MetalK8s' flags plus fixed dates (`--modification-date`,
//!    `--set_all_file_dates` from the epoch; `SOURCE_DATE_EPOCH` alone still leaks file
//!    mtimes), fixed preparer and application ids, writing to a temporary file beside the
//!    output.
//! 3. Fail if xorriso reports a problem with any file, or if a file of the tree is missing from
//!    the ISO it wrote (xorriso warns and exits 0 when it drops one).
//! 4. Implant the md5 (on the temporary file, so the output is never half-done), then rename
//!    into place and write `SHA256SUM` (`<hex>  <file name>`, as sha256sum prints it).
//!
//! Interrupting at any point (dropping [`make_iso`]'s future) kills the running tool and
//! deletes the temporary file; nothing appears at the output path. A run killed outright
//! (`SIGKILL`) leaves its temporary file, which the next run of the recipe deletes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::reference::Digest;
use crate::store::DigestMemo;

/// What to make.
#[derive(Debug, Clone)]
pub struct IsoRequest {
    /// The assembled ISO tree.
    pub root: PathBuf,
    pub output: PathBuf,
    pub volume_id: String,
    /// Seconds since the Unix epoch for every date in the ISO.
    pub epoch: i64,
    pub implant_md5: bool,
    pub sha256sum: Option<PathBuf>,
    /// Where to remember the ISO's sha256 (computed anyway), so `inspect` need not read the
    /// ISO again.
    pub digest_memo: Option<DigestMemo>,
}

/// What was made.
#[derive(Debug, Clone)]
pub struct IsoResult {
    pub size: u64,
    pub sha256: Digest,
    pub files: usize,
}

/// What can go wrong making the ISO.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error(
        "`{program}` is not installed; install it with `apt-get install {package}` (Debian, Ubuntu) or `dnf install {package}`"
    )]
    MissingTool {
        program: &'static str,
        package: &'static str,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("`{program}` failed ({status}):\n{output}")]
    ToolFailed {
        program: &'static str,
        status: String,
        output: String,
    },
    #[error("xorriso left `{path}` out of the ISO{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Dropped {
        path: String,
        reason: Option<String>,
    },
    #[error("xorriso reported a problem: {0}")]
    Reported(String),
    #[error("epoch {0} is not a date xorriso can record")]
    BadEpoch(i64),
}

/// The longest name Joliet records with `-joliet-long` (in UTF-16 units); xorriso cuts longer
/// ones without a word.
const JOLIET_MAX: usize = 103;

/// The last second ISO 9660 can record: file dates store the year as years since 1900 in
/// one byte, so 2155-12-31T23:59:59Z (xorriso clamps a later date without a word).
pub const MAX_EPOCH: i64 = 5_869_583_999;

/// Why `epoch` (seconds since 1970) cannot date an ISO, if it cannot.
pub fn epoch_problem(epoch: i64) -> Option<String> {
    if epoch < 0 {
        Some(format!(
            "`{epoch}` is negative; it is seconds since 1970-01-01 UTC"
        ))
    } else if epoch > MAX_EPOCH {
        Some(format!(
            "`{epoch}` is after 2155-12-31T23:59:59Z ({MAX_EPOCH}), the last date an ISO 9660 file can carry"
        ))
    } else {
        None
    }
}

/// The xorriso argv for `request`, writing to `output`. Deterministic: nothing in it depends
/// on the machine, the time or the xorriso version.
pub fn xorriso_args(request: &IsoRequest, output: &Path) -> Result<Vec<String>, IsoError> {
    let date = xorriso_date(request.epoch)?;
    let mut args: Vec<String> = ["-as", "mkisofs", "-output"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.push(output.display().to_string());
    for flag in [
        "-rock",
        "-joliet",
        "-joliet-long",
        "-full-iso9660-filenames",
        "--iso-level",
        "3",
        "-uid",
        "0",
        "-gid",
        "0",
        "-input-charset",
        "utf-8",
        "-output-charset",
        "utf-8",
        "-preparer",
        "isobuild",
        "-A",
        "isobuild",
    ] {
        args.push(flag.to_owned());
    }
    args.push("-volid".into());
    args.push(request.volume_id.clone());
    args.push(format!("--modification-date={date}"));
    args.push("--set_all_file_dates".into());
    args.push(date);
    args.push(request.root.display().to_string());
    Ok(args)
}

/// `YYYYMMDDhhmmss00` in UTC, the form xorriso takes for dates.
fn xorriso_date(epoch: i64) -> Result<String, IsoError> {
    let timestamp = jiff::Timestamp::from_second(epoch).map_err(|_| IsoError::BadEpoch(epoch))?;
    Ok(timestamp.strftime("%Y%m%d%H%M%S00").to_string())
}

/// Make the ISO described by `request`.
///
/// Cancellable: dropping the future (Ctrl-C aborts the task running it) kills xorriso or
/// implantisomd5 and deletes the temporary file, and nothing is renamed to `request.output`
/// unless the future ran to its end.
pub async fn make_iso(request: &IsoRequest) -> Result<IsoResult, IsoError> {
    require("xorriso", "xorriso")?;
    if request.implant_md5 {
        require("implantisomd5", "isomd5sum")?;
    }
    // A recipe without files still makes a (nearly empty) ISO.
    fs_err::create_dir_all(&request.root)?;
    let temp = crate::fs::temp_beside(&request.output)?;
    let args = xorriso_args(request, temp.path())?;
    let output = tool("xorriso")
        .args(&args)
        .env("SOURCE_DATE_EPOCH", request.epoch.to_string())
        .output()
        .await?;
    let messages = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(IsoError::ToolFailed {
            program: "xorriso",
            status: output.status.to_string(),
            output: messages,
        });
    }
    check_messages(&messages)?;
    let root = request.root.clone();
    let expected = blocking(move || tree_files(&root)).await?;
    for path in &expected {
        if let Some(name) = path
            .split('/')
            .find(|name| name.encode_utf16().count() > JOLIET_MAX)
        {
            tracing::warn!(
                "`{name}` in `{path}` has more than {JOLIET_MAX} characters: Joliet (what Windows reads) keeps only the first {JOLIET_MAX}; Rock Ridge (Linux) keeps it whole"
            );
        }
    }
    let written = iso_files(temp.path()).await?;
    if let Some(missing) = expected.difference(&written).next() {
        return Err(IsoError::Dropped {
            path: missing.clone(),
            reason: None,
        });
    }
    if request.implant_md5 {
        let output = tool("implantisomd5")
            .arg("--force")
            .arg(temp.path())
            .output()
            .await?;
        if !output.status.success() {
            return Err(IsoError::ToolFailed {
                program: "implantisomd5",
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).into_owned()
                    + &String::from_utf8_lossy(&output.stdout),
            });
        }
    }
    // Hashing and flushing a large file take a while: off the async threads, on handles of
    // their own, so the temporary file stays this future's to delete if it is dropped.
    let path = temp.path().to_owned();
    let sha256 = blocking(move || Digest::of_file(&path)).await?;
    let file = temp.as_file().try_clone()?;
    blocking(move || file.sync_data()).await?;
    let size = temp.as_file().metadata()?.len();
    crate::fs::persist(temp, &request.output, 0o644)?;
    // After the rename and chmod, which change its ctime: the identity `inspect` will see.
    if let Some(memo) = &request.digest_memo {
        let remembered = crate::store::FileIdentity::of(&request.output)
            .and_then(|identity| memo.record(&identity, &sha256));
        if let Err(error) = remembered {
            tracing::warn!(
                "cannot remember the sha256 of `{}`: {error}",
                request.output.display()
            );
        }
    }
    if let Some(path) = &request.sha256sum {
        let name = request
            .output
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::fs::write_atomic(
            path,
            format!("{}  {name}\n", sha256.hex()).as_bytes(),
            0o644,
        )?;
    }
    Ok(IsoResult {
        size,
        sha256,
        files: expected.len(),
    })
}

/// A command for `program` that is killed if its future is dropped, so an interrupted run
/// leaves no xorriso writing behind it.
fn tool(program: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.kill_on_drop(true);
    command
}

/// Run blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

/// Fail on xorriso messages that mean a file was not stored as it is.
fn check_messages(messages: &str) -> Result<(), IsoError> {
    for line in messages.lines() {
        let severe = [
            " : SORRY : ",
            " : FAILURE : ",
            " : FATAL : ",
            " : MISHAP : ",
        ]
        .iter()
        .any(|level| line.contains(level));
        // Warnings about settings (`-volid text is too long for Joliet`) are not about files;
        // a file's warning names it in quotes.
        let about_a_file = line.contains(" : WARNING : ")
            && line.contains("'/")
            && [
                "omitted",
                "not added",
                "too long",
                "cannot",
                "Cannot",
                "ignored",
            ]
            .iter()
            .any(|word| line.contains(word));
        if severe || about_a_file {
            let path = line.split('\'').nth(1).map(str::to_owned);
            return Err(match path {
                Some(path) => IsoError::Dropped {
                    path,
                    reason: Some(line.trim().to_owned()),
                },
                None => IsoError::Reported(line.trim().to_owned()),
            });
        }
    }
    Ok(())
}

/// Regular files of the tree, as `/`-rooted paths.
fn tree_files(root: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut files = BTreeSet::new();
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.map_err(std::io::Error::from)?;
        if entry.file_type().is_file() {
            let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
            files.insert(format!("/{}", relative.display()));
        }
    }
    Ok(files)
}

/// Regular files in an ISO's Rock Ridge tree, as xorriso lists them.
async fn iso_files(iso: &Path) -> Result<BTreeSet<String>, IsoError> {
    let output = tool("xorriso")
        .arg("-indev")
        .arg(iso)
        .args(["-find", "/", "-type", "f"])
        .output()
        .await?;
    if !output.status.success() {
        return Err(IsoError::ToolFailed {
            program: "xorriso",
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| unquote(line.trim()))
        .collect())
}

/// xorriso quotes listed paths in `'…'` and writes a `'` inside them as `'"'"'`.
fn unquote(text: &str) -> String {
    text.strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .unwrap_or(text)
        .replace("'\"'\"'", "'")
}

/// Extract the ISO's Rock Ridge tree into `dest` (which must not exist), without mounting.
/// Extracted files are read-only, as on the ISO; folders are made writable again so that
/// `dest` can be deleted.
pub fn extract_iso(iso: &Path, dest: &Path) -> Result<(), IsoError> {
    require("xorriso", "xorriso")?;
    let output = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/"])
        .arg(dest)
        .output()?;
    if !output.status.success() {
        return Err(IsoError::ToolFailed {
            program: "xorriso",
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    for entry in walkdir::WalkDir::new(dest) {
        let entry = entry.map_err(std::io::Error::from)?;
        if entry.file_type().is_dir() {
            crate::fs::set_mode(entry.path(), 0o755)?;
        }
    }
    Ok(())
}

/// Fail with an install hint when `program` is not on PATH.
/// Whether `program` is on `PATH`; if not, the error names the package that has it.
pub fn require(program: &'static str, package: &'static str) -> Result<(), IsoError> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if found {
        Ok(())
    } else {
        Err(IsoError::MissingTool { program, package })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_flags_are_fixed() {
        let request = IsoRequest {
            root: "/tree".into(),
            output: "/out/demo.iso".into(),
            volume_id: "MetalK8s 129.0.0-dev".into(),
            epoch: 1_700_000_000,
            implant_md5: false,
            sha256sum: None,
            digest_memo: None,
        };
        let args = xorriso_args(&request, Path::new("/out/.demo.iso.tmp")).unwrap();
        assert!(args.contains(&"--modification-date=2023111422132000".to_owned()));
        let volid = args.iter().position(|a| a == "-volid").unwrap();
        assert_eq!(args[volid + 1], "MetalK8s 129.0.0-dev");
        assert_eq!(args.last().unwrap(), "/tree");
    }

    #[test]
    fn problems_about_files_are_errors() {
        assert!(
            check_messages(
                "xorriso : WARNING : -volid text problematic as automatic mount point name"
            )
            .is_ok()
        );
        assert!(
            check_messages("xorriso : WARNING : -volid text is too long for Joliet (20 > 16)")
                .is_ok()
        );
        let error = check_messages("xorriso : WARNING : Joliet path too long, omitted: '/a/b'")
            .unwrap_err();
        assert!(error.to_string().contains("`/a/b`"));
        assert_eq!(unquote("'/it'\"'\"'s'"), "/it's");
    }
}
