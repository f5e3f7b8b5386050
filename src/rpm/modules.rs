//! EL8 modularity: which packages modules.yaml hides from resolution.
//!
//! libdnf's `setModuleExcludes`, for a machine that enabled nothing by hand: a stream is
//! active when it is the module's default (`modulemd-defaults`) or the recipe names it,
//! and only the newest `version` of each (name, stream, context) is active. Then:
//! - artifacts of inactive module builds are hidden (unless an active one lists them too);
//! - a non-modular package that provides the name of an active module's artifact is hidden,
//!   so the module's build wins over the plain one.
//!
//! Module dependencies (`requires: platform: [el8]`, other modules) are not resolved: every
//! stream of an EL8 repository targets `platform:el8`.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::metadata::Package;

/// One `modulemd` document: a build of a module stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleBuild {
    pub name: String,
    pub stream: String,
    pub version: u64,
    pub context: String,
    /// NEVRAs, `name-epoch:version-release.arch`.
    pub artifacts: Vec<String>,
}

/// What one repository's modules.yaml says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleIndex {
    pub builds: Vec<ModuleBuild>,
    /// Module name → default stream.
    pub defaults: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Document {
    document: String,
    #[serde(default)]
    data: Data,
}

#[derive(Deserialize, Default)]
struct Data {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    artifacts: Option<Artifacts>,
}

#[derive(Deserialize, Default)]
struct Artifacts {
    #[serde(default)]
    rpms: Vec<String>,
}

fn scalar(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

impl ModuleIndex {
    /// Parse modules.yaml (several YAML documents).
    pub fn parse(text: &str) -> Result<Self, String> {
        let documents: Vec<Document> =
            serde_saphyr::from_str_multiple(text).map_err(|error| error.to_string())?;
        let mut index = Self::default();
        for document in documents {
            let data = document.data;
            match document.document.as_str() {
                "modulemd" => {
                    let name = data.name.ok_or("a modulemd document without a name")?;
                    let stream = scalar(data.stream.as_ref())
                        .ok_or_else(|| format!("module `{name}` has no stream"))?;
                    index.builds.push(ModuleBuild {
                        version: scalar(data.version.as_ref())
                            .and_then(|version| version.parse().ok())
                            .unwrap_or(0),
                        context: data.context.unwrap_or_default(),
                        artifacts: data.artifacts.map(|a| a.rpms).unwrap_or_default(),
                        name,
                        stream,
                    });
                }
                "modulemd-defaults" => {
                    let module = data.module.ok_or("a modulemd-defaults without a module")?;
                    if let Some(stream) = scalar(data.stream.as_ref()) {
                        index.defaults.insert(module, stream);
                    }
                }
                _ => {}
            }
        }
        Ok(index)
    }
}

/// The packages modularity hides, from every repository's [`ModuleIndex`].
#[derive(Debug, Default)]
pub struct ModularFilter {
    include: HashSet<String>,
    exclude: HashSet<String>,
    names: HashSet<String>,
}

impl ModularFilter {
    /// `streams` overrides the defaults: module → stream to enable, or `None` to disable it.
    pub fn new<'a>(
        indexes: impl IntoIterator<Item = &'a ModuleIndex>,
        streams: &BTreeMap<String, Option<String>>,
    ) -> Self {
        let indexes: Vec<&ModuleIndex> = indexes.into_iter().collect();
        let mut enabled: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        for index in &indexes {
            for (module, stream) in &index.defaults {
                enabled.insert(module, Some(stream));
            }
        }
        for (module, stream) in streams {
            enabled.insert(module, stream.as_deref());
        }
        let mut newest: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
        for build in indexes.iter().flat_map(|index| &index.builds) {
            if enabled.get(build.name.as_str()).copied().flatten() == Some(build.stream.as_str()) {
                let version = newest
                    .entry((&build.name, &build.stream, &build.context))
                    .or_insert(build.version);
                *version = (*version).max(build.version);
            }
        }
        let mut filter = Self::default();
        for build in indexes.iter().flat_map(|index| &index.builds) {
            let active = newest.get(&(
                build.name.as_str(),
                build.stream.as_str(),
                build.context.as_str(),
            )) == Some(&build.version);
            for artifact in &build.artifacts {
                if active {
                    filter.include.insert(artifact.clone());
                    if let Some(name) = nevra_name(artifact) {
                        filter.names.insert(name.to_owned());
                    }
                } else {
                    filter.exclude.insert(artifact.clone());
                }
            }
        }
        filter
    }

    /// Whether resolution must not see `package`.
    pub fn hides(&self, package: &Package) -> bool {
        let nevra = format!(
            "{}-{}:{}-{}.{}",
            package.name,
            package.evr.epoch.unwrap_or(0),
            package.evr.version,
            package.evr.release.as_deref().unwrap_or(""),
            package.arch
        );
        if self.include.contains(&nevra) {
            return false;
        }
        self.exclude.contains(&nevra)
            || package
                .provides
                .iter()
                .any(|provide| self.names.contains(&provide.name))
            || self.names.contains(&package.name)
    }
}

/// The name of `name-epoch:version-release.arch`.
fn nevra_name(nevra: &str) -> Option<&str> {
    let (rest, _release) = nevra.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pick_the_stream_and_hide_the_rest() {
        let text = "---\ndocument: modulemd\nversion: 2\ndata:\n  name: web\n  stream: \"2\"\n  version: 1\n  context: c1\n  arch: x86_64\n  artifacts:\n    rpms:\n    - web-0:2.0-1.module.x86_64\n...\n---\ndocument: modulemd\nversion: 2\ndata:\n  name: web\n  stream: 1\n  version: 1\n  context: c1\n  artifacts:\n    rpms: [web-0:1.0-1.module.x86_64]\n...\n---\ndocument: modulemd-defaults\nversion: 1\ndata:\n  module: web\n  stream: \"2\"\n...\n";
        let index = ModuleIndex::parse(text).unwrap();
        assert_eq!(index.builds.len(), 2);
        assert_eq!(index.defaults["web"], "2");
        let filter = ModularFilter::new([&index], &BTreeMap::new());
        assert!(filter.include.contains("web-0:2.0-1.module.x86_64"));
        assert!(filter.exclude.contains("web-0:1.0-1.module.x86_64"));
        let overridden = ModularFilter::new(
            [&index],
            &BTreeMap::from([("web".into(), Some("1".into()))]),
        );
        assert!(overridden.include.contains("web-0:1.0-1.module.x86_64"));
    }
}
