//! containers-registries.conf(5), version 2: `[[registry]]` tables that rewrite where an
//! image is pulled from (`prefix`, `location`), add mirrors tried before it
//! (`[[registry.mirror]]`), mark it `insecure` or `blocked`.
//!
//! The files read are the containers tools' ([`RegistriesConf::default_files`]):
//! `CONTAINERS_REGISTRIES_CONF` alone when set; else the user's
//! `$XDG_CONFIG_HOME/containers/registries.conf` (or `~/.config/…`) when it exists, instead
//! of `/etc/containers/registries.conf`; then the drop-ins `registries.conf.d/*.conf` of
//! both folders, sorted by name. A later `[[registry]]` with the same prefix replaces an
//! earlier one. Keys isobuild has no use for (`unqualified-search-registries`, `aliases`,
//! `short-name-mode`, the v1 `[registries.*]` tables) are ignored: recipes name images fully.
//!
//! Matching is by the longest prefix, on path-component boundaries, `*.example.com`
//! matching any subdomain. The matched prefix of the reference is replaced by `location`
//! (or by a mirror's `location`). This module only computes the candidates; trying them in
//! order is [`super::registry`]'s.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The merged `[[registry]]` tables of every file read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    prefix: String,
    location: String,
    insecure: bool,
    blocked: bool,
    mirror_by_digest_only: bool,
    mirrors: Vec<MirrorEntry>,
    /// The file it came from, for messages.
    file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MirrorEntry {
    location: String,
    insecure: bool,
    digest_only: bool,
}

/// Where one image can be pulled from: a host and the repository on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `HOST[:PORT]`.
    pub host: String,
    pub repository: String,
    /// `insecure = true`: HTTPS without verification, or plain HTTP.
    pub insecure: bool,
    /// Whether this is one of the entry's mirrors (not its location).
    pub mirror: bool,
}

/// What the configuration says about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// No entry matches: pull from the reference's own registry.
    Default,
    /// Mirrors first, in order, then the (possibly rewritten) location.
    Candidates(Vec<Candidate>),
    /// The matching entry says `blocked = true`.
    Blocked { prefix: String, file: PathBuf },
}

/// A registries.conf that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: [[registry]] {what}", path.display())]
    Invalid { path: PathBuf, what: String },
}

#[derive(Deserialize)]
struct FileToml {
    #[serde(default)]
    registry: Vec<RegistryToml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegistryToml {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<MirrorToml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MirrorToml {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

impl RegistriesConf {
    /// The files containers' tools read, given a way to read environment variables
    /// (`CONTAINERS_REGISTRIES_CONF`, `XDG_CONFIG_HOME`, `HOME`) and the system folder
    /// (`/etc/containers`). Files that do not exist are left out.
    pub fn default_files(
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
        system: &Path,
    ) -> Vec<PathBuf> {
        if let Some(file) = var("CONTAINERS_REGISTRIES_CONF").filter(|v| !v.is_empty()) {
            return vec![PathBuf::from(file)];
        }
        let user = var("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".config")))
            .map(|dir| dir.join("containers"));
        let mut files = Vec::new();
        match user.as_ref().map(|dir| dir.join("registries.conf")) {
            Some(file) if file.is_file() => files.push(file),
            _ => files.push(system.join("registries.conf")),
        }
        for dir in std::iter::once(system.to_owned()).chain(user) {
            let Ok(entries) = fs_err::read_dir(dir.join("registries.conf.d")) else {
                continue;
            };
            let mut dropins: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|e| e == "conf"))
                .collect();
            dropins.sort();
            files.extend(dropins);
        }
        files.retain(|file| file.is_file());
        files
    }

    /// Read and merge `files`, in order.
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfError> {
        let mut conf = Self::default();
        for path in files {
            let text = fs_err::read_to_string(path).map_err(|source| ConfError::Read {
                path: path.clone(),
                source,
            })?;
            conf.merge(path, &text)?;
        }
        Ok(conf)
    }

    /// Add one file's tables: a prefix seen before is replaced.
    pub fn merge(&mut self, path: &Path, text: &str) -> Result<(), ConfError> {
        let file: FileToml = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ConfError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        for table in file.registry {
            let invalid = |what: String| ConfError::Invalid {
                path: path.to_owned(),
                what,
            };
            let prefix = match (&table.prefix, &table.location) {
                (Some(prefix), _) if !prefix.is_empty() => prefix.clone(),
                (_, Some(location)) if !location.is_empty() => location.clone(),
                _ => return Err(invalid("has neither `prefix` nor `location`".into())),
            };
            let prefix = prefix.trim_end_matches('/').to_owned();
            if prefix.contains("://") {
                return Err(invalid(format!(
                    "prefix `{prefix}` has a scheme; write `HOST[:PORT][/PATH]`"
                )));
            }
            let location = table
                .location
                .filter(|location| !location.is_empty())
                .unwrap_or_else(|| prefix.clone());
            if prefix.starts_with("*.") && location != prefix {
                return Err(invalid(format!(
                    "prefix `{prefix}` is a wildcard, so it cannot have a `location`"
                )));
            }
            let mut mirrors = Vec::new();
            for mirror in table.mirror {
                if mirror.location.is_empty() || mirror.location.contains("://") {
                    return Err(invalid(format!(
                        "mirror location `{}` must be `HOST[:PORT][/PATH]`",
                        mirror.location
                    )));
                }
                mirrors.push(MirrorEntry {
                    location: mirror.location.trim_end_matches('/').to_owned(),
                    insecure: mirror.insecure,
                    digest_only: table.mirror_by_digest_only
                        || mirror.pull_from_mirror.as_deref() == Some("digest-only"),
                });
            }
            let entry = Entry {
                prefix,
                location: location.trim_end_matches('/').to_owned(),
                insecure: table.insecure,
                blocked: table.blocked,
                mirror_by_digest_only: table.mirror_by_digest_only,
                mirrors,
                file: path.to_owned(),
            };
            match self.entries.iter_mut().find(|e| e.prefix == entry.prefix) {
                Some(existing) => *existing = entry,
                None => self.entries.push(entry),
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The route for `registry/repository` (`by_digest`: the reference is pinned by digest,
    /// which `digest-only` mirrors require).
    pub fn route(&self, registry: &str, repository: &str, by_digest: bool) -> Route {
        let name = format!("{registry}/{repository}");
        let Some((entry, matched)) = self
            .entries
            .iter()
            .filter_map(|entry| matches(&entry.prefix, &name).map(|len| (entry, len)))
            .max_by_key(|(_, len)| *len)
        else {
            return Route::Default;
        };
        if entry.blocked {
            return Route::Blocked {
                prefix: entry.prefix.clone(),
                file: entry.file.clone(),
            };
        }
        let rest = &name[matched..];
        let mut candidates = Vec::new();
        for mirror in &entry.mirrors {
            if mirror.digest_only && !by_digest {
                continue;
            }
            if let Some(candidate) = split(&mirror.location, rest, mirror.insecure, true) {
                candidates.push(candidate);
            }
        }
        // A wildcard keeps the reference's own host.
        let location = if entry.prefix.starts_with("*.") {
            &name[..matched]
        } else {
            &entry.location
        };
        candidates.extend(split(location, rest, entry.insecure, false));
        Route::Candidates(candidates)
    }
}

/// How many bytes of `name` `prefix` matches, on a component boundary.
fn matches(prefix: &str, name: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = name.split('/').next()?;
        let bare = host.rsplit_once(':').map_or(host, |(bare, _)| bare);
        return (bare.ends_with(&format!(".{domain}"))).then_some(host.len());
    }
    let rest = name.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(prefix.len())
}

/// `location` + `rest` as a host and a repository.
fn split(location: &str, rest: &str, insecure: bool, mirror: bool) -> Option<Candidate> {
    let full = format!("{location}{rest}");
    let (host, repository) = full.split_once('/')?;
    Some(Candidate {
        host: host.to_owned(),
        repository: repository.to_owned(),
        insecure,
        mirror,
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> RegistriesConf {
        let mut conf = RegistriesConf::default();
        conf.merge(Path::new("r.conf"), text).unwrap();
        conf
    }

    fn hosts(route: &Route) -> Vec<String> {
        match route {
            Route::Candidates(candidates) => candidates
                .iter()
                .map(|c| format!("{}/{}", c.host, c.repository))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn longest_prefix_wins_and_rewrites() {
        let conf = conf(
            r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io"
location = "hub.example/docker"
[[registry.mirror]]
location = "m1.example:5000/hub"
[[registry.mirror]]
location = "m2.example"
insecure = true

[[registry]]
prefix = "docker.io/library/alpine"
location = "alpine.example/a"

[[registry]]
prefix = "*.corp.example"
[[registry.mirror]]
location = "cache.example"
pull-from-mirror = "digest-only"
"#,
        );
        assert_eq!(
            hosts(&conf.route("docker.io", "library/busybox", false)),
            [
                "m1.example:5000/hub/library/busybox",
                "m2.example/library/busybox",
                "hub.example/docker/library/busybox"
            ]
        );
        assert_eq!(
            hosts(&conf.route("docker.io", "library/alpine", false)),
            ["alpine.example/a"]
        );
        // `library/alpinex` is not under `library/alpine`.
        assert_eq!(
            hosts(&conf.route("docker.io", "library/alpinex", false)).len(),
            3
        );
        assert_eq!(
            hosts(&conf.route("reg.corp.example:5000", "app", false)),
            ["reg.corp.example:5000/app"]
        );
        assert_eq!(
            hosts(&conf.route("reg.corp.example", "app", true)),
            ["cache.example/app", "reg.corp.example/app"]
        );
        assert_eq!(conf.route("quay.io", "x", false), Route::Default);
    }

    #[test]
    fn blocked_and_replaced_entries() {
        let mut conf = conf("[[registry]]\nlocation = \"bad.example\"\nblocked = true\n");
        assert!(matches!(
            conf.route("bad.example", "x", false),
            Route::Blocked { .. }
        ));
        conf.merge(
            Path::new("later.conf"),
            "[[registry]]\nprefix = \"bad.example\"\nlocation = \"good.example\"\n",
        )
        .unwrap();
        assert_eq!(
            hosts(&conf.route("bad.example", "x", false)),
            ["good.example/x"]
        );
    }

    #[test]
    fn files_are_found_as_containers_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("etc");
        let user = dir.path().join("config/containers");
        for folder in [
            system.join("registries.conf.d"),
            user.join("registries.conf.d"),
        ] {
            fs_err::create_dir_all(&folder).unwrap();
        }
        for file in [
            system.join("registries.conf"),
            system.join("registries.conf.d/20-b.conf"),
            system.join("registries.conf.d/10-a.conf"),
            system.join("registries.conf.d/README"),
            user.join("registries.conf.d/00-user.conf"),
        ] {
            fs_err::write(file, "").unwrap();
        }
        let config = dir.path().join("config");
        let env = |name: &str| (name == "XDG_CONFIG_HOME").then(|| config.clone().into_os_string());
        assert_eq!(
            RegistriesConf::default_files(env, &system),
            [
                system.join("registries.conf"),
                system.join("registries.conf.d/10-a.conf"),
                system.join("registries.conf.d/20-b.conf"),
                user.join("registries.conf.d/00-user.conf"),
            ]
        );
        // The user's own file replaces the system's.
        fs_err::write(user.join("registries.conf"), "").unwrap();
        assert_eq!(
            RegistriesConf::default_files(env, &system)[0],
            user.join("registries.conf")
        );
        let only = |name: &str| {
            (name == "CONTAINERS_REGISTRIES_CONF").then(|| std::ffi::OsString::from("/x.conf"))
        };
        assert_eq!(
            RegistriesConf::default_files(only, &system),
            [PathBuf::from("/x.conf")]
        );
    }

    #[test]
    fn errors_name_the_place() {
        let mut conf = RegistriesConf::default();
        let error = conf
            .merge(Path::new("r.conf"), "[[registry]]\nlocation = 5\n")
            .unwrap_err();
        assert!(error.to_string().starts_with("r.conf:2:12: "), "{error}");
        let error = conf
            .merge(Path::new("r.conf"), "[[registry]]\ninsecure = true\n")
            .unwrap_err();
        assert!(error.to_string().contains("neither"), "{error}");
    }
}
