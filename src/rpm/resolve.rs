//! The resolver: what `dnf repoquery --requires --resolve --recursive --latest-limit=1` on
//! EL8 computes, reproduced exactly, plus what it hides (unresolved requirements, and why
//! each package is in).
//!
//! The semantics (measured with dnf 4.14, whose repoquery code equals EL8's):
//!
//! 1. Seeds ([`Pool::select`]) match names and NEVRAs (the first of the forms NEVRA, NA,
//!    NAME, NEVR, NEV that matches anything, names compared without case) and file paths,
//!    never provides; then only the newest per (name, arch) is kept.
//! 2. The closure ([`Pool::closure`]) takes every package that provides any requirement
//!    (`Requires` only, `rpmlib(…)` already dropped by the metadata reader, weak deps not
//!    followed), in every version and every arch, recursively, over every package of the pool.
//!    Rich dependencies follow libsolv's whatprovides ([`Pool::whatprovides`]). File requires
//!    resolve from primary's files, and from filelists for paths primary does not list.
//! 3. Only at the very end is the newest per (name, arch) of the closure kept.
//!
//! The pool holds every enabled repository, the ones that ship and the ones that only
//! resolve (the OS repos); choosing what ships is the caller's job.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::dep::{Dep, Range};
use super::evr::Evr;
use super::metadata::{Package, in_primary};

/// What one repository's filelists say: its index, and path → owners' checksums.
pub type FilelistAnswer = (usize, HashMap<String, Vec<String>>);

/// Index of a package in its [`Pool`].
pub type PackageId = usize;

/// Every package the resolver may choose from, indexed by what it provides.
#[derive(Default)]
pub struct Pool {
    packages: Vec<Package>,
    repos: Vec<usize>,
    provides: HashMap<String, Vec<(PackageId, usize)>>,
    files: HashMap<String, Vec<PackageId>>,
    /// Paths already looked up in filelists (found or not).
    scanned: HashSet<String>,
    by_checksum: HashMap<(usize, String), PackageId>,
}

/// Why a package is in a closure: the first requirement that pulled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub by: PackageId,
    pub dep: Dep,
}

/// A requirement nothing in the pool satisfies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unresolved {
    pub by: PackageId,
    pub dep: String,
}

/// What [`Pool::closure`] found.
#[derive(Debug, Default)]
pub struct Closure {
    /// The newest per (name, arch) of every provider, sorted by id.
    pub packages: Vec<PackageId>,
    /// Why each package of the whole closure (not only the newest) is in.
    pub reasons: HashMap<PackageId, Reason>,
    pub unresolved: Vec<Unresolved>,
}

impl Pool {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a package of repository number `repo`.
    pub fn add(&mut self, repo: usize, mut package: Package) -> PackageId {
        let id = self.packages.len();
        // libsolv gives every package its self-provide even when the metadata lacks it.
        let self_provide = Range {
            name: package.name.clone(),
            version: Some((super::dep::Flags::EQ, package.evr.clone())),
        };
        if !package.provides.contains(&self_provide) {
            package.provides.push(self_provide);
        }
        for (index, provide) in package.provides.iter().enumerate() {
            self.provides
                .entry(provide.name.clone())
                .or_default()
                .push((id, index));
        }
        for file in &package.files {
            self.files.entry(file.clone()).or_default().push(id);
        }
        self.by_checksum
            .insert((repo, package.checksum.hex.clone()), id);
        self.packages.push(package);
        self.repos.push(repo);
        id
    }

    pub fn package(&self, id: PackageId) -> &Package {
        &self.packages[id]
    }

    pub fn repo(&self, id: PackageId) -> usize {
        self.repos[id]
    }

    pub fn len(&self) -> usize {
        self.packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Record what a filelists scan of repository `repo` found: `path` → owners' checksums.
    pub fn add_files(&mut self, repo: usize, found: HashMap<String, Vec<String>>) {
        for (path, owners) in found {
            for owner in owners {
                if let Some(&id) = self.by_checksum.get(&(repo, owner)) {
                    let entry = self.files.entry(path.clone()).or_default();
                    if !entry.contains(&id) {
                        entry.push(id);
                    }
                }
            }
        }
    }

    /// Mark `paths` as looked up in every repository's filelists.
    pub fn mark_scanned(&mut self, paths: impl IntoIterator<Item = String>) {
        self.scanned.extend(paths);
    }

    /// The packages that satisfy `dep`, as libsolv's whatprovides answers: `and` and `or`
    /// take both sides, `if` and `unless` their left side (and an `else` branch), `with` the
    /// intersection, `without` the difference.
    pub fn whatprovides(&self, dep: &Dep) -> BTreeSet<PackageId> {
        match dep {
            Dep::Simple(range) => self.providers(range),
            Dep::And(parts) | Dep::Or(parts) => parts
                .iter()
                .flat_map(|part| self.whatprovides(part))
                .collect(),
            Dep::If(then, _, otherwise) | Dep::Unless(then, _, otherwise) => {
                let mut found = self.whatprovides(then);
                if let Some(otherwise) = otherwise {
                    found.extend(self.whatprovides(otherwise));
                }
                found
            }
            Dep::With(parts) => {
                let mut parts = parts.iter();
                let mut found = parts
                    .next()
                    .map(|first| self.whatprovides(first))
                    .unwrap_or_default();
                for part in parts {
                    let other = self.whatprovides(part);
                    found.retain(|id| other.contains(id));
                }
                found
            }
            Dep::Without(keep, drop) => {
                let drop = self.whatprovides(drop);
                let mut found = self.whatprovides(keep);
                found.retain(|id| !drop.contains(id));
                found
            }
        }
    }

    fn providers(&self, range: &Range) -> BTreeSet<PackageId> {
        let mut found: BTreeSet<PackageId> = self
            .provides
            .get(&range.name)
            .into_iter()
            .flatten()
            .filter(|(id, index)| self.packages[*id].provides[*index].overlaps(range))
            .map(|(id, _)| *id)
            .collect();
        if range.name.starts_with('/') {
            found.extend(self.files.get(&range.name).into_iter().flatten());
        }
        found
    }

    /// The file paths in `dep` that primary cannot answer and filelists were not asked yet.
    fn unscanned_paths(&self, dep: &Dep, out: &mut HashSet<String>) {
        match dep {
            Dep::Simple(range) => {
                if range.name.starts_with('/')
                    && !in_primary(&range.name)
                    && !self.scanned.contains(&range.name)
                {
                    out.insert(range.name.clone());
                }
            }
            Dep::And(parts) | Dep::Or(parts) | Dep::With(parts) => {
                for part in parts {
                    self.unscanned_paths(part, out);
                }
            }
            Dep::Without(a, b) => {
                self.unscanned_paths(a, out);
                self.unscanned_paths(b, out);
            }
            Dep::If(a, b, c) | Dep::Unless(a, b, c) => {
                self.unscanned_paths(a, out);
                self.unscanned_paths(b, out);
                if let Some(c) = c {
                    self.unscanned_paths(c, out);
                }
            }
        }
    }

    /// The packages a seed names (repoquery's `Subject(…).get_best_query(with_provides=False)`
    /// then `--latest-limit=1`). A path seed whose owners only filelists know needs
    /// [`Pool::closure`]'s scan first: use [`Pool::seed_paths`].
    pub fn select(&self, seed: &str) -> Vec<PackageId> {
        let matched: Vec<PackageId> = if seed.starts_with('/') {
            self.files.get(seed).cloned().unwrap_or_default()
        } else {
            nevra_forms(seed)
                .into_iter()
                .map(|form| {
                    (0..self.packages.len())
                        .filter(|&id| form.matches(&self.packages[id]))
                        .collect::<Vec<_>>()
                })
                .find(|found| !found.is_empty())
                .unwrap_or_default()
        };
        self.latest(matched)
    }

    /// The path seeds among `seeds` that need a filelists scan.
    pub fn seed_paths<'a>(&self, seeds: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
        seeds
            .into_iter()
            .filter(|seed| {
                seed.starts_with('/') && !in_primary(seed) && !self.scanned.contains(*seed)
            })
            .map(str::to_owned)
            .collect()
    }

    /// Keep the newest per (name, arch); equal NEVRAs from several repositories all stay.
    pub fn latest(&self, ids: impl IntoIterator<Item = PackageId>) -> Vec<PackageId> {
        let mut newest: BTreeMap<(&str, &str), (Evr, Vec<PackageId>)> = BTreeMap::new();
        for id in ids {
            let package = &self.packages[id];
            match newest.entry((&package.name, &package.arch)) {
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert((package.evr.clone(), vec![id]));
                }
                std::collections::btree_map::Entry::Occupied(mut entry) => {
                    let (evr, ids) = entry.get_mut();
                    match package.evr.cmp_full(evr) {
                        std::cmp::Ordering::Greater => {
                            *evr = package.evr.clone();
                            *ids = vec![id];
                        }
                        std::cmp::Ordering::Equal => {
                            if !ids.contains(&id) {
                                ids.push(id);
                            }
                        }
                        std::cmp::Ordering::Less => {}
                    }
                }
            }
        }
        let mut ids: Vec<PackageId> = newest.into_values().flat_map(|(_, ids)| ids).collect();
        ids.sort_unstable();
        ids
    }

    /// Every provider of every requirement of `seeds`, recursively, then the newest per
    /// (name, arch). `scan` is asked for the owners of file paths primary cannot answer
    /// (it returns, per repository, path → owners' checksums); it is called only when such
    /// paths come up, with only those paths.
    pub fn closure<E, F>(&mut self, seeds: &[PackageId], mut scan: F) -> Result<Closure, E>
    where
        F: FnMut(&HashSet<String>) -> Result<Vec<FilelistAnswer>, E>,
    {
        let mut reasons: HashMap<PackageId, Reason> = HashMap::new();
        let mut members: BTreeSet<PackageId> = BTreeSet::new();
        let mut expanded: Vec<PackageId> = Vec::new();
        let mut seen: HashSet<PackageId> = HashSet::new();
        let mut queue: std::collections::VecDeque<PackageId> = seeds.iter().copied().collect();
        // Requirers whose file requirements wait for a filelists scan.
        let mut waiting: Vec<PackageId> = Vec::new();
        loop {
            while let Some(id) = queue.pop_front() {
                if !seen.insert(id) {
                    continue;
                }
                expanded.push(id);
                self.expand(id, &mut members, &mut reasons, &mut queue, &mut waiting);
            }
            let mut paths = HashSet::new();
            for &id in &waiting {
                for dep in &self.packages[id].requires {
                    self.unscanned_paths(dep, &mut paths);
                }
            }
            if paths.is_empty() {
                break;
            }
            for (repo, found) in scan(&paths)? {
                self.add_files(repo, found);
            }
            self.mark_scanned(paths);
            for id in std::mem::take(&mut waiting) {
                self.expand(id, &mut members, &mut reasons, &mut queue, &mut waiting);
            }
        }
        let mut unresolved = BTreeSet::new();
        for &id in &expanded {
            for dep in &self.packages[id].requires {
                if self.whatprovides(dep).is_empty() && !self.conditional_off(dep) {
                    unresolved.insert(Unresolved {
                        by: id,
                        dep: dep.to_string(),
                    });
                }
            }
        }
        Ok(Closure {
            packages: self.latest(members),
            reasons,
            unresolved: unresolved.into_iter().collect(),
        })
    }

    fn expand(
        &self,
        id: PackageId,
        members: &mut BTreeSet<PackageId>,
        reasons: &mut HashMap<PackageId, Reason>,
        queue: &mut std::collections::VecDeque<PackageId>,
        waiting: &mut Vec<PackageId>,
    ) {
        let mut wait = HashSet::new();
        for dep in &self.packages[id].requires {
            self.unscanned_paths(dep, &mut wait);
            for provider in self.whatprovides(dep) {
                if members.insert(provider) {
                    reasons.insert(
                        provider,
                        Reason {
                            by: id,
                            dep: dep.clone(),
                        },
                    );
                    queue.push_back(provider);
                }
            }
        }
        if !wait.is_empty() && !waiting.contains(&id) {
            waiting.push(id);
        }
    }

    /// A conditional requirement whose condition nothing provides is not missing.
    fn conditional_off(&self, dep: &Dep) -> bool {
        match dep {
            Dep::If(_, condition, None) => self.whatprovides(condition).is_empty(),
            Dep::Unless(_, condition, None) => !self.whatprovides(condition).is_empty(),
            _ => false,
        }
    }

    /// The chain of requirements that pulled `id` in: `[(requirer, dep), …]` from a seed.
    pub fn chain(&self, closure: &Closure, id: PackageId) -> Vec<(PackageId, String)> {
        let mut chain = Vec::new();
        let mut current = id;
        let mut visited = HashSet::new();
        while let Some(reason) = closure.reasons.get(&current) {
            if !visited.insert(current) {
                break;
            }
            chain.push((reason.by, reason.dep.to_string()));
            current = reason.by;
        }
        chain
    }
}

/// One way to read a seed (hawkey's `Nevra` forms).
struct Form {
    name: String,
    epoch: Option<u64>,
    version: Option<String>,
    release: Option<String>,
    arch: Option<String>,
}

impl Form {
    fn matches(&self, package: &Package) -> bool {
        package.name.eq_ignore_ascii_case(&self.name)
            && self
                .epoch
                .is_none_or(|epoch| package.evr.epoch.unwrap_or(0) == epoch)
            && self
                .version
                .as_ref()
                .is_none_or(|version| &package.evr.version == version)
            && self
                .release
                .as_ref()
                .is_none_or(|release| package.evr.release.as_ref() == Some(release))
            && self.arch.as_ref().is_none_or(|arch| &package.arch == arch)
    }
}

/// NEVRA, NA, NAME, NEVR, NEV: the order repoquery tries them in.
fn nevra_forms(seed: &str) -> Vec<Form> {
    let split_epoch = |version: &str| -> Option<(Option<u64>, String)> {
        match version.split_once(':') {
            Some((epoch, version)) => Some((Some(epoch.parse().ok()?), version.to_owned())),
            None => Some((None, version.to_owned())),
        }
    };
    let nevr = |text: &str| -> Option<Form> {
        let (rest, release) = text.rsplit_once('-')?;
        let (name, version) = rest.rsplit_once('-')?;
        let (epoch, version) = split_epoch(version)?;
        (!name.is_empty() && !version.is_empty() && !release.is_empty()).then(|| Form {
            name: name.to_owned(),
            epoch,
            version: Some(version),
            release: Some(release.to_owned()),
            arch: None,
        })
    };
    let mut forms = Vec::new();
    if let Some((rest, arch)) = seed.rsplit_once('.') {
        if let Some(mut form) = nevr(rest) {
            form.arch = Some(arch.to_owned());
            forms.push(form);
        }
        forms.push(Form {
            name: rest.to_owned(),
            epoch: None,
            version: None,
            release: None,
            arch: Some(arch.to_owned()),
        });
    }
    forms.push(Form {
        name: seed.to_owned(),
        epoch: None,
        version: None,
        release: None,
        arch: None,
    });
    if let Some(form) = nevr(seed) {
        forms.push(form);
    }
    if let Some((name, version)) = seed.rsplit_once('-') {
        if let Some((epoch, version)) = split_epoch(version) {
            forms.push(Form {
                name: name.to_owned(),
                epoch,
                version: Some(version),
                release: None,
                arch: None,
            });
        }
    }
    forms
}
