//! The `packages:` section: RPM repositories, seeds, arches and module streams.

use std::collections::{BTreeMap, BTreeSet};

use super::super::de::{At, Located};
use super::super::raw::{RawPackageRepo, RawPackages, RawSeeds};
use super::super::{PackageRepo, Packages};
use super::Checker;

impl Checker<'_> {
    pub(super) fn packages(&mut self, raw: &Located<RawPackages>) -> Option<Packages> {
        let at = &raw.at;
        let raw = raw.value.as_ref()?;
        let releasever = self
            .required(raw.releasever.as_ref(), at, "releasever")
            .map(|(value, at)| (value.text.clone(), at));
        if let Some((text, at)) = &releasever
            && !is_url_word(text)
        {
            self.problems.add(
                at,
                format!("`{text}` is not a release version (such as `8`)"),
            );
        }
        let basearch = self
            .required_text(raw.basearch.as_ref(), at, "basearch")
            .map(|(text, at)| (text.clone(), at.clone()));
        if let Some((text, at)) = &basearch
            && !is_url_word(text)
        {
            self.problems
                .add(at, format!("`{text}` is not an arch (such as `x86_64`)"));
        }
        let arches = match &raw.arches {
            Some(list) => list.value.as_ref().map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.value.clone())
                    .collect::<Vec<_>>()
            }),
            None => basearch
                .as_ref()
                .map(|(arch, _)| vec![arch.clone(), "noarch".to_owned()]),
        };
        let mut modules = BTreeMap::new();
        if let Some(entries) = raw.modules.as_ref().and_then(|m| m.value.as_ref()) {
            for (module, stream) in &entries.0 {
                let (Some(module), Some(stream)) = (&module.value, &stream.value) else {
                    continue;
                };
                let disabled =
                    !stream.is_string && matches!(stream.text.as_str(), "" | "~" | "null");
                modules.insert(module.clone(), (!disabled).then(|| stream.text.clone()));
            }
        }
        let seeds = self.seeds(raw.seeds.as_ref(), at);
        let vars = (
            releasever
                .as_ref()
                .map(|(text, _)| text.clone())
                .unwrap_or_default(),
            basearch
                .as_ref()
                .map(|(text, _)| text.clone())
                .unwrap_or_default(),
        );
        let repos = self.package_repos(raw.repos.as_ref(), at, &vars);
        Some(Packages {
            releasever: releasever?.0,
            basearch: basearch?.0,
            arches: arches?,
            modules,
            seeds: seeds?,
            repos: repos?,
        })
    }

    fn seeds(&mut self, raw: Option<&Located<RawSeeds>>, parent: &At) -> Option<Vec<String>> {
        let (raw, at) = self.required(raw, parent, "seeds")?;
        // (seed text, where): a list item as it is, a mapping entry as `name-version`.
        let items: Vec<(Option<String>, &At)> = match raw {
            RawSeeds::List(items) => items
                .iter()
                .map(|item| {
                    let seed = item
                        .value
                        .as_ref()
                        .and_then(|seed| self.render(seed, &item.at));
                    (seed, &item.at)
                })
                .collect(),
            RawSeeds::Map(entries) => entries
                .0
                .iter()
                .map(|(name, version)| {
                    let seed = name.value.as_ref().and_then(|text| {
                        let name = self.render(text, &name.at)?;
                        match &version.value {
                            Some(v)
                                if !v.is_string && matches!(v.text.as_str(), "" | "~" | "null") =>
                            {
                                Some(name)
                            }
                            Some(v) => {
                                let v = self.render(&v.text, &version.at)?;
                                Some(format!("{name}-{v}"))
                            }
                            None => None,
                        }
                    });
                    (seed, &version.at)
                })
                .collect(),
        };
        if items.is_empty() {
            self.problems
                .add(at, "`seeds` must name at least one package");
            return None;
        }
        let mut seeds = Vec::new();
        let mut valid = true;
        for (seed, at) in items {
            let Some(seed) = seed else {
                valid = false;
                continue;
            };
            if seed.is_empty() || seed.chars().any(char::is_whitespace) {
                self.problems
                    .add(at, format!("`{seed}` is not a package name, NEVRA or path"));
                valid = false;
                continue;
            }
            seeds.push(seed);
        }
        valid.then_some(seeds)
    }

    fn package_repos(
        &mut self,
        raw: Option<&Located<Vec<Located<RawPackageRepo>>>>,
        parent: &At,
        (releasever, basearch): &(String, String),
    ) -> Option<Vec<PackageRepo>> {
        let (items, at) = self.required(raw, parent, "repos")?;
        if items.is_empty() {
            self.problems
                .add(at, "`repos` must list at least one repository");
            return None;
        }
        let mut repos = Vec::new();
        let mut ids = BTreeSet::new();
        let mut valid = true;
        for item in items {
            let Some(raw) = &item.value else {
                valid = false;
                continue;
            };
            let at = &item.at;
            let id = self
                .required_text(raw.id.as_ref(), at, "id")
                .map(|(id, at)| (id.clone(), at.clone()));
            if let Some((id, id_at)) = &id {
                if !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    self.problems.add(
                        id_at,
                        format!("`{id}` is not a repository id (letters, digits, `-`, `_`, `.`)"),
                    );
                } else if !ids.insert(id.clone()) {
                    self.problems
                        .add(id_at, format!("repository `{id}` is listed twice"));
                }
            }
            let (from, builds) = self.built_repo(raw);
            let baseurl = if raw.from.is_some() {
                if let Some(baseurl) = &raw.baseurl {
                    self.problems.add(
                        &baseurl.at,
                        "a repository has `baseurl` (downloaded) or `from` (built), not both",
                    );
                }
                Some(String::new())
            } else {
                self.required_text(raw.baseurl.as_ref(), at, "baseurl")
                    .and_then(|(url, url_at)| Some((self.render(url, url_at)?, url_at)))
                    .and_then(|(url, url_at)| {
                        let url = url
                            .replace("$releasever", releasever)
                            .replace("$basearch", basearch);
                        if !(url.starts_with("http://") || url.starts_with("https://")) {
                            self.problems
                                .add(url_at, format!("`{url}` is not an http:// or https:// URL"));
                            return None;
                        }
                        Some(if url.ends_with('/') {
                            url
                        } else {
                            format!("{url}/")
                        })
                    })
            };
            let mut gpgkeys = Vec::new();
            for key in raw
                .gpgkey
                .iter()
                .flat_map(|keys| keys.value.iter().flatten())
            {
                let Some(url) = key.value.as_ref().and_then(|url| self.render(url, &key.at)) else {
                    continue;
                };
                let url = url
                    .replace("$releasever", releasever)
                    .replace("$basearch", basearch);
                if url.starts_with("http://") || url.starts_with("https://") {
                    gpgkeys.push(url);
                } else {
                    self.problems.add(
                        &key.at,
                        format!("`{url}` is not an http:// or https:// URL"),
                    );
                }
            }
            let repo_gpgcheck = raw
                .repo_gpgcheck
                .as_ref()
                .and_then(|check| check.value)
                .unwrap_or(false);
            if repo_gpgcheck && gpgkeys.is_empty() {
                self.problems
                    .add(at, "`repo_gpgcheck` needs at least one `gpgkey`");
            }
            let dest = match &raw.dest {
                Some(Located {
                    value: Some(dest),
                    at,
                }) => self.iso_path(dest, at).map(Some),
                _ => Some(None),
            };
            let key_prefix = match (&raw.key_prefix, &id) {
                (
                    Some(Located {
                        value: Some(prefix),
                        at,
                    }),
                    _,
                ) => {
                    if prefix.is_empty() || prefix.contains('/') {
                        self.problems
                            .add(at, format!("`{prefix}` is not a file name prefix"));
                    }
                    Some(prefix.clone())
                }
                (_, Some((id, _))) => Some(format!("RPM-GPG-KEY-{id}-{releasever}")),
                _ => None,
            };
            let exclude = raw
                .exclude
                .iter()
                .flat_map(|list| list.value.iter().flatten())
                .filter_map(|item| item.value.clone())
                .collect();
            if raw.from.is_some() && matches!(dest, Some(None)) {
                self.problems
                    .add(at, "a built repository (`from`) needs a `dest`");
                valid = false;
            }
            match (id, baseurl, dest, key_prefix, from) {
                (Some((id, _)), Some(baseurl), Some(dest), Some(key_prefix), Some(from)) => {
                    repos.push(PackageRepo {
                        id,
                        baseurl,
                        gpgkeys,
                        repo_gpgcheck,
                        dest,
                        key_prefix,
                        exclude,
                        from,
                        builds,
                    });
                }
                _ => valid = false,
            }
        }
        if valid && !repos.iter().any(|repo| repo.dest.is_some()) {
            self.problems
                .add(at, "no repository has a `dest`: nothing would ship");
            valid = false;
        }
        valid.then_some(repos)
    }
}

impl Checker<'_> {
    /// A built repository's `from` globs (absolute, under the recipe's folder) and `builds`
    /// names; `from` is `None` when a glob is invalid.
    fn built_repo(&mut self, raw: &RawPackageRepo) -> (Option<Vec<String>>, Vec<String>) {
        let builds: Vec<String> = raw
            .builds
            .iter()
            .flat_map(|list| list.value.iter().flatten())
            .filter_map(|item| item.value.clone())
            .collect();
        let Some(from) = &raw.from else {
            if let Some(builds) = &raw.builds {
                self.problems
                    .add(&builds.at, "`builds` is for a built repository (`from`)");
            }
            return (Some(Vec::new()), builds);
        };
        for (field, at) in [
            ("gpgkey", raw.gpgkey.as_ref().map(|f| &f.at)),
            ("repo_gpgcheck", raw.repo_gpgcheck.as_ref().map(|f| &f.at)),
            ("exclude", raw.exclude.as_ref().map(|f| &f.at)),
        ] {
            if let Some(at) = at {
                self.problems.add(
                    at,
                    format!(
                        "`{field}` is for a downloaded repository; a built one (`from`) is checked by its RPMs' header digests"
                    ),
                );
            }
        }
        let Some(items) = &from.value else {
            return (None, builds);
        };
        if items.is_empty() {
            self.problems
                .add(&from.at, "`from` must list at least one glob of RPMs");
            return (None, builds);
        }
        let mut globs = Vec::new();
        let mut valid = true;
        for item in items {
            let Some(text) = item
                .value
                .as_ref()
                .and_then(|text| self.render(text, &item.at))
            else {
                valid = false;
                continue;
            };
            if text.trim().is_empty() || text.starts_with('/') || text.split('/').any(|c| c == "..")
            {
                self.problems.add(
                    &item.at,
                    format!("`{text}` is not a glob relative to the recipe's folder"),
                );
                valid = false;
                continue;
            }
            let pattern = format!("{}/{text}", self.origin.base_dir.display());
            if let Err(error) = globset::GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
            {
                self.problems.add(
                    &item.at,
                    format!("`{text}` is not a valid glob: {}", error.kind()),
                );
                valid = false;
                continue;
            }
            globs.push(pattern);
        }
        (valid.then_some(globs), builds)
    }
}

/// A value safe inside a URL path segment (`8`, `x86_64`).
fn is_url_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}
