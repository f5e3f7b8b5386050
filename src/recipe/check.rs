//! Raw recipe → validated [`Recipe`]: every rule of schema version 1, every problem found.
//!
//! Checks run section by section and never stop at the first problem: a value that is wrong
//! is reported and left out, and whatever does not depend on it is still checked. Templates
//! in string fields are rendered here with the recipe's context (the images are not known
//! yet, so `images` is empty), so a typo in one fails the load rather than the build.
//! Cross-references (`after:`, task cycles, sources made by tasks) are checked last, once
//! every section has been read.

mod containers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use minijinja::Environment;
use serde::Serialize;

use super::de::{At, Entries, Located, ScalarText, describe};
use super::node::{Node, Value};
use super::outputs::HostPaths;
mod packages;

use super::raw::{RawFile, RawImage, RawImages, RawIso, RawRecipe, RawRegistryConfig, RawTask};
use super::{
    CommandTask, DataFormat, FileEntry, ImageEntry, ImageFormat, Images, IsoPath, IsoSettings,
    Platform, Problem, Recipe, RegistryConfig, SCHEMA_VERSION, TemplateContext, template_env_in,
};
use crate::reference::{Digest, ImageSource};

/// Where the recipe is and how to show paths in problems.
pub(super) struct Origin {
    /// The recipe file, absolute.
    pub(super) file: PathBuf,
    /// The folder relative paths resolve against.
    pub(super) base_dir: PathBuf,
    /// The current directory: paths under it are shown relative to it.
    pub(super) cwd: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH`: replaces the recipe's `epoch` (still checked) before anything
    /// is rendered.
    pub(super) epoch_override: Option<i64>,
}

impl Origin {
    /// `path` as problems show it: relative to the current directory when under it.
    pub(super) fn shown(&self, path: &Path) -> PathBuf {
        match self
            .cwd
            .as_deref()
            .and_then(|cwd| path.strip_prefix(cwd).ok())
        {
            Some(relative) if relative.as_os_str().is_empty() => PathBuf::from("."),
            Some(relative) => relative.to_owned(),
            None => path.to_owned(),
        }
    }
}

/// The problems found so far, in the order found.
struct Problems {
    recipe: PathBuf,
    list: Vec<Problem>,
}

impl Problems {
    fn add(&mut self, at: &At, message: impl Into<String>) {
        self.list.push(Problem {
            file: self.recipe.clone(),
            line: at.line,
            column: at.column,
            field: at.field.clone(),
            message: message.into(),
        });
    }
}

/// Check the recipe in `source` completely.
pub(super) fn check(
    source: &str,
    origin: &Origin,
    overrides: &BTreeMap<String, String>,
) -> Result<Recipe, Vec<Problem>> {
    let mut problems = Problems {
        recipe: origin.shown(&origin.file),
        list: Vec::new(),
    };
    let root = match Node::parse(source) {
        Ok(root) => root,
        Err(error) => {
            problems.add(&syntax_location(&error), syntax_message(&error));
            return Err(problems.list);
        }
    };
    let document = At {
        line: root.line.max(1),
        column: root.column.max(1),
        field: String::new(),
    };
    match &root.value {
        Value::Map(entries) => {
            if let Some(version) = unsupported_version(entries) {
                // A newer schema may use any field: reporting them as unknown would only
                // bury the one problem that matters.
                problems.add(&version.0, version.1);
                return Err(problems.list);
            }
        }
        Value::Null => {
            // An empty file's only node is at its end; its start is a better place.
            let start = At {
                line: 1,
                column: 1,
                field: String::new(),
            };
            problems.add(
                &start,
                "the recipe is empty; it needs at least `isobuild: 1`, `name` and `version`",
            );
            return Err(problems.list);
        }
        _ => {
            problems.add(
                &document,
                format!(
                    "a recipe is a mapping of fields (`isobuild`, `name`, …), found {}",
                    describe(&root)
                ),
            );
            return Err(problems.list);
        }
    }
    let found = std::cell::RefCell::new(Vec::new());
    let raw: Option<RawRecipe> = super::de::from_node(&root, "", &found);
    for (at, message) in found.into_inner() {
        problems.add(&at, message);
    }
    let mut checker = Checker {
        origin,
        problems,
        env: template_env_in(&origin.base_dir),
        context: TemplateContext::default(),
        host_outputs: Vec::new(),
        claims: Vec::new(),
        var_sites: Vec::new(),
    };
    let recipe = raw.and_then(|raw| checker.recipe(&raw, &document, overrides));
    let mut problems = checker.problems.list;
    collapse_missing_vars(&mut problems, &checker.var_sites, origin);
    match recipe {
        Some(recipe) if problems.is_empty() => Ok(recipe),
        _ => {
            let recipe_file = checker.problems.recipe;
            problems.sort_by(|a, b| {
                (a.file != recipe_file, &a.file, a.line, a.column).cmp(&(
                    b.file != recipe_file,
                    &b.file,
                    b.line,
                    b.column,
                ))
            });
            problems.dedup();
            Err(problems)
        }
    }
}

/// `isobuild: N` with N other than the version this build reads.
fn unsupported_version(entries: &[(Node, Node)]) -> Option<(At, String)> {
    let (_, value) = entries
        .iter()
        .find(|(key, _)| key.value == Value::String("isobuild".into()))?;
    match value.value {
        Value::Int(version) if version != i128::from(SCHEMA_VERSION) => Some((
            At {
                line: value.line,
                column: value.column,
                field: "isobuild".into(),
            },
            format!(
                "unsupported schema version {version}; this isobuild reads version {SCHEMA_VERSION}"
            ),
        )),
        _ => None,
    }
}

fn syntax_location(error: &serde_saphyr::Error) -> At {
    let (line, column) = error.location().map_or((0, 0), |location| {
        (
            usize::try_from(location.line()).unwrap_or(0),
            usize::try_from(location.column()).unwrap_or(0),
        )
    });
    At {
        line,
        column,
        field: String::new(),
    }
}

fn syntax_message(error: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter as _;
    // serde-saphyr's own wording for this one names its API, not the user's mistake.
    if let serde_saphyr::Error::MultipleDocuments { .. } = error {
        return "a recipe is one YAML document, and this file has another after `---`".into();
    }
    // Budget breaches would print as Rust values (`Depth { depth: 33 }`): say it in words.
    if let serde_saphyr::Error::Budget { breach, .. } = error {
        use super::node::{MAX_DEPTH, MAX_NODES, MAX_SCALAR_BYTES};
        use serde_saphyr::budget::BudgetBreach;
        let what = match breach {
            BudgetBreach::Depth { .. } => {
                format!("lists and mappings nest more than {MAX_DEPTH} levels deep")
            }
            BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => {
                format!("the file has more than {MAX_NODES} values")
            }
            BudgetBreach::ScalarBytes { .. } => {
                format!("the file has more than {MAX_SCALAR_BYTES} bytes of text")
            }
            BudgetBreach::Aliases { .. }
            | BudgetBreach::Anchors { .. }
            | BudgetBreach::AliasAnchorRatio { .. } => {
                "the file has too many anchors or aliases (`&name`, `*name`)".to_owned()
            }
            _ => "the file is larger than a recipe can be".to_owned(),
        };
        return format!("invalid YAML: {what}; a recipe needs far less");
    }
    let message = serde_saphyr::DefaultMessageFormatter.format_message(error);
    // One problem is one line: the message must not break it.
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("invalid YAML: {message}")
}

/// The template context for one image's `images.path`: the recipe's, with the image's own
/// `name` and `tag`.
#[derive(Serialize)]
struct ImagePathContext<'a> {
    name: &'a str,
    tag: &'a str,
    version: &'a str,
    vars: &'a BTreeMap<String, String>,
    epoch: Option<i64>,
    images: &'a [super::ImageContext],
}

struct Checker<'a> {
    origin: &'a Origin,
    problems: Problems,
    env: Environment<'static>,
    context: TemplateContext,
    /// `iso.output`, `iso.sha256sum` and `iso.root` with where each was given, checked
    /// against every input once the whole recipe is read.
    host_outputs: Vec<(PathBuf, At)>,
    /// Every path of the ISO tree an entry writes, with what writes it: each must have one
    /// writer (see [`Checker::one_writer_per_path`]).
    claims: Vec<Claim>,
    /// Each variable with its value, where it is declared and whether `--set` gave the
    /// value: a path variable that points nowhere is said once (see [`collapse_missing_vars`]).
    var_sites: Vec<VarSite>,
}

/// A recipe variable as the checker saw it.
struct VarSite {
    name: String,
    value: String,
    at: At,
    overridden: bool,
}

/// A variable whose value is a folder that does not exist makes every path built from it fail:
/// replace those problems (one per file, image build or rendered file) by one, at the
/// variable, naming it and `--set`.
fn collapse_missing_vars(problems: &mut Vec<Problem>, sites: &[VarSite], origin: &Origin) {
    for site in sites {
        let value = Path::new(&site.value);
        if site.value.trim().is_empty() || value.extension().is_some() {
            continue;
        }
        let joined = origin.base_dir.join(value);
        let resolved = normalize(&joined);
        if resolved.exists() || resolved == normalize(&origin.base_dir) {
            continue;
        }
        // However a message names a path under it: absolute, lexically normalized or not,
        // or relative to the current directory.
        let prefixes: Vec<String> = [&joined, &resolved]
            .into_iter()
            .flat_map(|path| [path.clone(), origin.shown(path)])
            .map(|path| format!("{}/", path.display()))
            .collect();
        let before = problems.len();
        problems.retain(|problem| {
            !prefixes
                .iter()
                .any(|prefix| problem.message.contains(prefix.as_str()))
        });
        let under = before - problems.len();
        if under == 0 {
            continue;
        }
        let given = if site.overridden {
            format!("`--set {}={}`", site.name, site.value)
        } else {
            format!("`{}`", site.value)
        };
        let paths = if under == 1 { "path" } else { "paths" };
        problems.push(Problem {
            file: origin.shown(&origin.file),
            line: site.at.line,
            column: site.at.column,
            field: site.at.field.clone(),
            message: format!(
                "the variable `{}` is {given}: the folder `{}` does not exist ({under} {paths} of the recipe are under it)\nhint: pass the folder: `--set {}=DIR`",
                site.name,
                origin.shown(&resolved).display(),
                site.name
            ),
        });
    }
}

/// An ISO path some entry of the recipe writes.
struct Claim {
    path: IsoPath,
    at: At,
    kind: ClaimKind,
    /// A `files:` entry's source: when a folder, another entry may write beside its files
    /// (MetalK8s adds generated files to the `salt/` it copies), just not over one of them.
    source: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClaimKind {
    /// A `files:` dest: a file, or a folder copied whole.
    File,
    /// An image's folder.
    Image,
    /// An image's `archive:` tarball.
    Archive,
    /// The nginx rule files of `registry_config`.
    Rules,
}

/// A list entry's `after:` names, kept until every task is known.
struct AfterRefs<'r> {
    items: Vec<&'r Located<String>>,
}

impl<'r> AfterRefs<'r> {
    fn of(after: Option<&'r Located<Vec<Located<String>>>>) -> Self {
        let items = after
            .and_then(|after| after.value.as_ref())
            .map(|items| items.iter().filter(|item| item.value.is_some()).collect())
            .unwrap_or_default();
        Self { items }
    }

    fn names(&self) -> Vec<String> {
        self.items
            .iter()
            .filter_map(|item| item.value.clone())
            .collect()
    }
}

impl Checker<'_> {
    // ---- small helpers -------------------------------------------------------------------

    /// The value of a required field, or a problem at its mapping when it is absent.
    fn required<'v, T>(
        &mut self,
        field: Option<&'v Located<T>>,
        parent: &At,
        name: &str,
    ) -> Option<(&'v T, &'v At)> {
        match field {
            None => {
                self.problems
                    .add(parent, format!("missing required field `{name}`"));
                None
            }
            Some(located) => located.value.as_ref().map(|value| (value, &located.at)),
        }
    }

    /// A required string that must not be empty.
    fn required_text<'v>(
        &mut self,
        field: Option<&'v Located<String>>,
        parent: &At,
        name: &str,
    ) -> Option<(&'v String, &'v At)> {
        let (value, at) = self.required(field, parent, name)?;
        if value.trim().is_empty() {
            self.problems.add(at, format!("`{name}` must not be empty"));
            return None;
        }
        Some((value, at))
    }

    /// Render a string field with the recipe's context.
    fn render(&mut self, text: &str, at: &At) -> Option<String> {
        let context = minijinja::Value::from(minijinja::value::Serde(&self.context));
        self.render_with(text, at, context)
    }

    fn render_with(&mut self, text: &str, at: &At, context: minijinja::Value) -> Option<String> {
        match self.env.render_str(text, context) {
            Ok(rendered) => Some(rendered),
            Err(error) => {
                self.problems.add(
                    at,
                    format!("cannot render `{text}`: {}", template_error(&error)),
                );
                None
            }
        }
    }

    /// Render a host path and make it absolute against the recipe's folder.
    fn host_path(&mut self, text: &str, at: &At) -> Option<PathBuf> {
        let rendered = self.render(text, at)?;
        if rendered.trim().is_empty() {
            self.problems.add(at, "the path is empty");
            return None;
        }
        Some(normalize(&self.origin.base_dir.join(rendered)))
    }

    /// Render a path inside the ISO tree and check that it stays inside.
    fn iso_path(&mut self, text: &str, at: &At) -> Option<IsoPath> {
        let rendered = self.render(text, at)?;
        match IsoPath::new(&rendered) {
            Ok(path) => {
                let problem = if path.as_str().chars().any(char::is_control) {
                    Some(format!(
                        "{:?} holds a control character (a newline, a tab…)",
                        path.as_str()
                    ))
                } else if let Some(name) = path.as_str().split('/').find(|name| name.len() > 255) {
                    Some(format!(
                        "`{name}` is {} bytes long; a file name has at most 255",
                        name.len()
                    ))
                } else if path.as_str().ends_with(crate::fs::TEMP_SUFFIX)
                    || path
                        .as_str()
                        .contains(&format!("{}/", crate::fs::TEMP_SUFFIX))
                {
                    Some(format!(
                        "`{path}`: names ending in `{}` are isobuild's temporary files, deleted by every build",
                        crate::fs::TEMP_SUFFIX
                    ))
                } else {
                    None
                };
                match problem {
                    Some(problem) => {
                        self.problems.add(at, problem);
                        None
                    }
                    None => Some(path),
                }
            }
            Err(message) => {
                self.problems.add(at, message);
                None
            }
        }
    }

    /// Render a list of strings; `None` entries were invalid.
    fn render_list(&mut self, items: &[Located<String>]) -> Vec<Option<(String, At)>> {
        items
            .iter()
            .map(|item| {
                let value = item.value.as_ref()?;
                self.render(value, &item.at)
                    .map(|text| (text, item.at.clone()))
            })
            .collect()
    }

    // ---- the sections --------------------------------------------------------------------

    fn recipe(
        &mut self,
        raw: &RawRecipe,
        document: &At,
        overrides: &BTreeMap<String, String>,
    ) -> Option<Recipe> {
        // `isobuild:` itself: its value was checked before anything else.
        self.required(raw.isobuild.as_ref(), document, "isobuild");
        let name = self.required_text(raw.name.as_ref(), document, "name");
        let version = self.required_text(raw.version.as_ref(), document, "version");
        if let Some((name, at)) = name
            && name.contains('/')
        {
            self.problems.add(
                at,
                format!("`{name}` names the ISO file, so it cannot contain `/`"),
            );
        }
        for (text, at) in [name, version].into_iter().flatten() {
            if text.chars().any(char::is_control) {
                self.problems.add(
                    at,
                    format!(
                        "{text:?} holds a control character (a newline, a tab…); it goes into file names and the volume id"
                    ),
                );
            }
        }
        let vars = self.vars(raw.vars.as_ref(), document, overrides);
        let epoch = self.epoch(raw.epoch.as_ref());
        let epoch = self.origin.epoch_override.or(epoch);
        self.context = TemplateContext {
            name: name.map(|(name, _)| name.clone()).unwrap_or_default(),
            version: version
                .map(|(version, _)| version.clone())
                .unwrap_or_default(),
            vars: vars.clone(),
            epoch,
            images: Vec::new(),
            data: raw
                .data
                .as_ref()
                .and_then(|data| data.value.clone())
                .unwrap_or(serde_json::Value::Null),
        };
        let iso = self.iso(raw.iso.as_ref(), document);
        let mirrors = self.mirrors(raw.mirrors.as_ref());
        let (images, image_after) = self.images(raw.images.as_ref(), document);
        let (files, file_after) = self.files(raw.files.as_ref());
        let (tasks, task_after) = self.tasks(raw.tasks.as_ref());
        let packages = raw
            .packages
            .as_ref()
            .and_then(|packages| self.packages(packages));

        let task_names: Vec<String> = tasks
            .iter()
            .map(|task| task.name.clone())
            .filter(|name| !name.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for refs in image_after.iter().chain(&file_after).chain(&task_after) {
            self.known_tasks(refs, &task_names);
        }
        self.container_images(raw.tasks.as_ref(), images.as_ref());
        self.cycles(&tasks, &task_after);
        self.one_writer_per_path();
        self.file_sources(&files, &tasks);
        if let Some(iso) = &iso {
            self.sources_outside_the_tree(&iso.root, &files);
            self.outputs_apart(iso, &files, &tasks);
        }

        let (name, version) = (name?.0.clone(), version?.0.clone());
        Some(Recipe {
            file: self.origin.file.clone(),
            base_dir: self.origin.base_dir.clone(),
            name,
            version,
            vars,
            epoch,
            data: self.context.data.clone(),
            iso: iso?,
            images: images?,
            mirrors,
            files: files
                .into_iter()
                .map(|file| file.entry)
                .collect::<Option<Vec<_>>>()?,
            tasks: tasks
                .into_iter()
                .map(|task| task.spec)
                .collect::<Option<Vec<_>>>()?,
            packages,
        })
    }

    fn vars(
        &mut self,
        raw: Option<&Located<Entries<ScalarText>>>,
        document: &At,
        overrides: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        let mut sites = BTreeMap::new();
        if let Some(entries) = raw.and_then(|raw| raw.value.as_ref()) {
            for (key, value) in &entries.0 {
                let Some(key) = &key.value else { continue };
                if let Some(text) = &value.value {
                    vars.insert(key.clone(), text.text.clone());
                    sites.insert(key.clone(), value.at.clone());
                }
            }
        }
        let declared: BTreeSet<String> = raw
            .and_then(|raw| raw.value.as_ref())
            .map(|entries| {
                entries
                    .0
                    .iter()
                    .filter_map(|(key, _)| key.value.clone())
                    .collect()
            })
            .unwrap_or_default();
        let at = raw.map_or_else(|| document.child("vars"), |raw| raw.at.clone());
        for (key, value) in overrides {
            if declared.contains(key) {
                vars.insert(key.clone(), value.clone());
            } else {
                let known = if declared.is_empty() {
                    "the recipe declares no vars".to_owned()
                } else {
                    format!("declared: {}", quoted_list(declared.iter()))
                };
                self.problems.add(
                    &at,
                    format!("`--set {key}={value}` names no variable of this recipe ({known})"),
                );
            }
        }
        self.var_sites = sites
            .into_iter()
            .filter_map(|(name, at)| {
                Some(VarSite {
                    value: vars.get(&name)?.clone(),
                    overridden: overrides.contains_key(&name),
                    name,
                    at,
                })
            })
            .collect();
        vars
    }

    fn epoch(&mut self, raw: Option<&Located<i64>>) -> Option<i64> {
        let raw = raw?;
        let epoch = raw.value?;
        if epoch < 0 {
            self.problems.add(
                &raw.at,
                format!("`{epoch}` is negative; `epoch` is seconds since 1970-01-01 UTC"),
            );
            return None;
        }
        if let Some(problem) = crate::iso::epoch_problem(epoch) {
            self.problems.add(&raw.at, problem);
            return None;
        }
        Some(epoch)
    }

    fn iso(&mut self, raw: Option<&Located<RawIso>>, document: &At) -> Option<IsoSettings> {
        let at = raw.map_or_else(|| document.child("iso"), |raw| raw.at.clone());
        let empty = RawIso::default();
        // An `iso:` that is not a mapping is already reported; go on with the defaults.
        let raw = raw.and_then(|raw| raw.value.as_ref()).unwrap_or(&empty);
        let default_output = format!("_build/{}.iso", self.context.name.to_lowercase());
        let output = self.optional_host_path(raw.output.as_ref(), &at, "output", &default_output);
        let root = self.optional_host_path(raw.root.as_ref(), &at, "root", "_build/root");
        let volume_id = {
            let (text, field_at) = match &raw.volume_id {
                Some(located) => (located.value.clone(), located.at.clone()),
                // Without a name or a version the default is meaningless, and their
                // absence is already reported.
                None if self.context.name.is_empty() || self.context.version.is_empty() => {
                    (None, at.child("volume_id"))
                }
                None => (
                    Some("{{ name }} {{ version }}".to_owned()),
                    at.child("volume_id"),
                ),
            };
            text.and_then(|text| self.render(&text, &field_at))
                .and_then(|volume_id| self.volume_id(volume_id, &field_at))
        };
        let implant_md5 = raw
            .implant_md5
            .as_ref()
            .and_then(|located| located.value)
            .unwrap_or(false);
        let sbom = raw
            .sbom
            .as_ref()
            .and_then(|located| located.value)
            .unwrap_or(false);
        let sha256sum = match &raw.sha256sum {
            Some(Located {
                value: Some(text),
                at,
            }) => self.host_path(text, at).map(Some),
            Some(Located { value: None, .. }) => None,
            None => Some(None),
        };
        let (output, root) = (output?, root?);
        let field_at = |raw: Option<&Located<String>>, name: &str| {
            raw.map_or_else(|| at.child(name), |located| located.at.clone())
        };
        self.host_outputs = vec![
            (root.clone(), field_at(raw.root.as_ref(), "root")),
            (output.clone(), field_at(raw.output.as_ref(), "output")),
        ];
        if let Some(Some(sha256sum)) = &sha256sum {
            self.host_outputs.push((
                sha256sum.clone(),
                field_at(raw.sha256sum.as_ref(), "sha256sum"),
            ));
        }
        if self.origin.file.starts_with(&root) {
            // The tree is isobuild's: a build deletes what the recipe does not write there.
            // `root: .` (or `..`, or `/`) would delete the recipe and everything beside it.
            let at = raw
                .root
                .as_ref()
                .map_or(at.child("root"), |root| root.at.clone());
            self.problems.add(
                &at,
                format!(
                    "the tree `{}` would hold the recipe itself; every build deletes what the recipe does not write in `iso.root`, so it must be a folder of its own (like `_build/root`)",
                    self.origin.shown(&root).display()
                ),
            );
            return None;
        }
        if output.starts_with(&root) {
            let at = raw
                .output
                .as_ref()
                .map_or(at.clone(), |output| output.at.clone());
            self.problems.add(
                &at,
                format!(
                    "the ISO `{}` would be written inside its own tree `iso.root`",
                    self.origin.shown(&output).display()
                ),
            );
        }
        Some(IsoSettings {
            output,
            root,
            volume_id: volume_id?,
            implant_md5,
            sha256sum: sha256sum?,
            sbom,
        })
    }

    fn optional_host_path(
        &mut self,
        raw: Option<&Located<String>>,
        parent: &At,
        name: &str,
        default: &str,
    ) -> Option<PathBuf> {
        match raw {
            Some(located) => {
                let text = located.value.as_ref()?;
                self.host_path(text, &located.at)
            }
            None => self.host_path(default, &parent.child(name)),
        }
    }

    /// ISO 9660 volume ids are at most 32 characters; xorriso would cut a longer one.
    fn volume_id(&mut self, volume_id: String, at: &At) -> Option<String> {
        let length = volume_id.chars().count();
        if volume_id.trim().is_empty() {
            self.problems.add(at, "the volume id is empty");
            None
        } else if volume_id.chars().any(char::is_control) {
            self.problems.add(
                at,
                format!("volume id {volume_id:?} holds a control character (a newline, a tab…)"),
            );
            None
        } else if volume_id.len() > 32 {
            // ISO 9660 counts bytes: 32 non-ASCII characters are more than 32 bytes in UTF-8.
            let size = if volume_id.len() == length {
                format!("{length} characters long")
            } else {
                format!(
                    "{} bytes long in UTF-8 ({length} characters)",
                    volume_id.len()
                )
            };
            self.problems.add(
                at,
                format!(
                    "volume id `{volume_id}` is {size}; an ISO volume id has at most 32{}",
                    if volume_id.len() == length {
                        ""
                    } else {
                        " bytes"
                    }
                ),
            );
            None
        } else {
            Some(volume_id)
        }
    }

    fn mirrors(&mut self, raw: Option<&Located<Entries<String>>>) -> BTreeMap<String, String> {
        let mut mirrors = BTreeMap::new();
        let Some(entries) = raw.and_then(|raw| raw.value.as_ref()) else {
            return mirrors;
        };
        for (from, to) in &entries.0 {
            let (Some(from_host), Some(to_value)) = (&from.value, &to.value) else {
                continue;
            };
            if !is_registry_host(from_host) {
                self.problems.add(
                    &from.at,
                    format!("`{from_host}` is not a registry host (such as `docker.io` or `127.0.0.1:5000`)"),
                );
                continue;
            }
            let (host, prefix) = to_value.split_once('/').unwrap_or((to_value, ""));
            if !is_registry_host(host)
                || !prefix
                    .split('/')
                    .all(|part| prefix.is_empty() || is_path_component(part))
            {
                self.problems.add(
                    &to.at,
                    format!(
                        "`{to_value}` is not a registry host with an optional path prefix (such as `127.0.0.1:5000/docker.io`)"
                    ),
                );
                continue;
            }
            mirrors.insert(from_host.clone(), to_value.clone());
        }
        mirrors
    }

    fn images<'r>(
        &mut self,
        raw: Option<&'r Located<RawImages>>,
        document: &At,
    ) -> (Option<Images>, Vec<AfterRefs<'r>>) {
        let at = raw.map_or_else(|| document.child("images"), |raw| raw.at.clone());
        let Some(raw) = raw.and_then(|raw| raw.value.as_ref()) else {
            let images = Images {
                platform: Platform::default(),
                format: ImageFormat::default(),
                path: "images/{{ name }}/{{ tag }}".to_owned(),
                registry_config: None,
                list: Vec::new(),
            };
            // `images:` absent is fine; one that is not a mapping was already reported.
            return (raw.is_none().then_some(images), Vec::new());
        };
        let platform = match &raw.platform {
            Some(located) => located.value.as_ref().and_then(|text| {
                text.parse::<Platform>()
                    .map_err(|message| self.problems.add(&located.at, message))
                    .ok()
            }),
            None => Some(Platform::default()),
        };
        let format = match &raw.format {
            Some(located) => located.value.as_deref().and_then(|text| match text {
                "v2s2" => Some(ImageFormat::V2s2),
                "oci" => Some(ImageFormat::Oci),
                other => {
                    self.problems.add(
                        &located.at,
                        format!("unknown image format `{other}`; expected `v2s2` or `oci`"),
                    );
                    None
                }
            }),
            None => Some(ImageFormat::default()),
        };
        let (path, path_at) = match &raw.path {
            Some(located) => (located.value.clone(), located.at.clone()),
            None => (
                Some("images/{{ name }}/{{ tag }}".to_owned()),
                at.child("path"),
            ),
        };
        // Compile it now so that a syntax error is reported once, not once per image.
        let path = path.filter(|path| match self.env.template_from_str(path) {
            Ok(_) => true,
            Err(error) => {
                self.problems.add(
                    &path_at,
                    format!("cannot render `{path}`: {}", template_error(&error)),
                );
                false
            }
        });
        let registry_config = match &raw.registry_config {
            Some(located) => match &located.value {
                Some(config) => self.registry_config(config, &located.at).map(Some),
                None => None,
            },
            None => Some(None),
        };
        let mut list = Some(Vec::new());
        let mut after = Vec::new();
        let mut seen = Seen::default();
        let items = raw
            .list
            .as_ref()
            .and_then(|list| list.value.as_deref())
            .unwrap_or_default();
        for item in items {
            let Some(image) = &item.value else {
                list = None;
                continue;
            };
            after.push(AfterRefs::of(image.after.as_ref()));
            let entry = self.image(image, &item.at, path.as_deref(), &path_at, &mut seen);
            match (entry, &mut list) {
                (Some(entry), Some(list)) => list.push(entry),
                (None, _) => list = None,
                (Some(_), None) => {}
            }
        }
        let images = (|| {
            Some(Images {
                platform: platform?,
                format: format?,
                path: path?,
                registry_config: registry_config?,
                list: list?,
            })
        })();
        (images, after)
    }

    fn registry_config(&mut self, raw: &RawRegistryConfig, at: &At) -> Option<RegistryConfig> {
        let rules = |checker: &mut Self, text: &String, at: &At| {
            let path = checker.iso_path(text, at)?;
            checker.claims.push(Claim {
                path: path.clone(),
                at: at.clone(),
                kind: ClaimKind::Rules,
                source: None,
            });
            Some(path)
        };
        let path = self
            .required(raw.path.as_ref(), at, "path")
            .and_then(|(text, at)| rules(self, text, at));
        let common_path = self
            .required(raw.common_path.as_ref(), at, "common_path")
            .and_then(|(text, at)| rules(self, text, at));
        let name_prefix = match &raw.name_prefix {
            Some(located) => located
                .value
                .as_ref()
                .and_then(|text| self.render(text, &located.at)),
            None => Some(String::new()),
        };
        let server_root = self
            .required_text(raw.server_root.as_ref(), at, "server_root")
            .and_then(|(text, at)| self.render(text, at));
        Some(RegistryConfig {
            path: path?,
            common_path: common_path?,
            name_prefix: name_prefix?,
            server_root: server_root?,
            unknown_tag_error: raw
                .unknown_tag_error
                .as_ref()
                .and_then(|flag| flag.value)
                .unwrap_or(false),
        })
    }

    fn image(
        &mut self,
        raw: &RawImage,
        at: &At,
        path_template: Option<&str>,
        path_at: &At,
        seen: &mut Seen,
    ) -> Option<ImageEntry> {
        let name = self
            .required_text(raw.name.as_ref(), at, "name")
            .and_then(|(name, name_at)| {
                if is_path_component(name) {
                    Some(name.clone())
                } else {
                    self.problems.add(
                        name_at,
                        format!(
                            "`{name}` is not a valid image name: lowercase letters and digits, separated by `.`, `_`, `__` or `-` (one path component, no `/`)"
                        ),
                    );
                    None
                }
            });
        let build = self.image_build(raw, at);
        let source = if raw.build.is_some() {
            // Where the build's archive goes is the plan's choice (under the cache).
            build
                .as_ref()
                .map(|_| (ImageSource::OciArchive(PathBuf::new()), "build".to_owned()))
        } else {
            self.required_text(raw.reference.as_ref(), at, "ref")
                .and_then(|(text, ref_at)| {
                    let rendered = self.render(text, ref_at)?;
                    match ImageSource::parse(&rendered) {
                        Ok(source) => Some((self.resolve_source(source), rendered)),
                        Err(error) => {
                            self.problems.add(ref_at, error.to_string());
                            None
                        }
                    }
                })
        };
        let tag = match &raw.tag {
            Some(located) => located
                .value
                .as_ref()
                .and_then(|text| self.render(text, &located.at))
                .and_then(|tag| {
                    if is_tag(&tag) {
                        Some(tag)
                    } else {
                        self.problems.add(
                            &located.at,
                            format!(
                                "`{tag}` is not a valid tag: up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
                            ),
                        );
                        None
                    }
                }),
            None => {
                if let Some((source, written)) = &source {
                    if let Some(tag) = source.implied_tag() {
                        Some(tag.to_owned())
                    } else {
                        self.problems.add(
                            at,
                            format!("missing required field `tag`: `{written}` implies no tag"),
                        );
                        None
                    }
                } else {
                    None
                }
            }
        };
        let digest = match &raw.digest {
            Some(located) => located.value.as_ref().and_then(|text| {
                text.parse::<Digest>()
                    .map_err(|error| self.problems.add(&located.at, error.to_string()))
                    .ok()
            }),
            None => None,
        };
        if let (Some(digest), Some((ImageSource::Registry(reference), _))) = (&digest, &source)
            && let Some(pinned) = &reference.digest
            && pinned != digest
            && let Some(located) = &raw.digest
        {
            self.problems.add(
                &located.at,
                format!("`{digest}` differs from the digest in `ref` (`{pinned}`)"),
            );
        }
        let image_id = match &raw.image_id {
            Some(located) => located.value.as_ref().and_then(|text| {
                text.parse::<Digest>()
                    .map_err(|error| self.problems.add(&located.at, error.to_string()))
                    .ok()
            }),
            None => None,
        };
        let archive = match &raw.archive {
            Some(Located {
                value: Some(text),
                at,
            }) => {
                let archive = self.iso_path(text, at)?;
                self.claims.push(Claim {
                    path: archive.clone(),
                    at: at.clone(),
                    kind: ClaimKind::Archive,
                    source: None,
                });
                Some(archive)
            }
            _ => None,
        };
        let (name, tag) = (name?, tag?);
        let key = format!("{name}:{tag}");
        if let Some(first) = seen.images.get(&key) {
            self.problems
                .add(at, format!("image `{key}` is already listed at {first}"));
            return None;
        }
        seen.images.insert(key, at.field.clone());
        let path = path_template.and_then(|template| {
            let context = ImagePathContext {
                name: &name,
                tag: &tag,
                version: &self.context.version,
                vars: &self.context.vars,
                epoch: self.context.epoch,
                images: &self.context.images,
            };
            let context = minijinja::Value::from(minijinja::value::Serde(&context));
            let rendered = self.render_with(template, path_at, context)?;
            IsoPath::new(&rendered)
                .map_err(|message| {
                    self.problems
                        .add(path_at, format!("for {}: {message}", at.field));
                })
                .ok()
        })?;
        if let Some(other) = seen.paths.get(&path) {
            self.problems.add(
                path_at,
                format!(
                    "{other} and {} both go to `{path}`; `images.path` needs `{{{{ name }}}}` and `{{{{ tag }}}}`",
                    at.field
                ),
            );
            return None;
        }
        seen.paths.insert(path.clone(), at.field.clone());
        self.claims.push(Claim {
            path: path.clone(),
            at: at.clone(),
            kind: ClaimKind::Image,
            source: None,
        });
        let after = AfterRefs::of(raw.after.as_ref()).names();
        let ship = raw
            .ship
            .as_ref()
            .map_or(Some(true), |located| located.value);
        Some(ImageEntry {
            name,
            tag,
            source: source?.0,
            digest,
            image_id,
            archive,
            path,
            after,
            build: build?,
            ship: ship?,
        })
    }

    /// Make the paths of archive and layout sources absolute against the recipe's folder.
    fn resolve_source(&self, source: ImageSource) -> ImageSource {
        let absolute = |path: PathBuf| normalize(&self.origin.base_dir.join(path));
        match source {
            ImageSource::OciArchive(path) => ImageSource::OciArchive(absolute(path)),
            ImageSource::DockerArchive(path) => ImageSource::DockerArchive(absolute(path)),
            ImageSource::OciLayout { dir, tag } => ImageSource::OciLayout {
                dir: absolute(dir),
                tag,
            },
            other @ (ImageSource::Registry(_) | ImageSource::Daemon(_)) => other,
        }
    }

    fn files<'r>(
        &mut self,
        raw: Option<&'r Located<Vec<Located<RawFile>>>>,
    ) -> (Vec<CheckedFile>, Vec<AfterRefs<'r>>) {
        let mut files = Vec::new();
        let mut after = Vec::new();
        let mut dests: BTreeMap<IsoPath, String> = BTreeMap::new();
        let items = raw.and_then(|raw| raw.value.as_deref()).unwrap_or_default();
        for item in items {
            let Some(raw) = &item.value else {
                files.push(CheckedFile::default());
                continue;
            };
            after.push(AfterRefs::of(raw.after.as_ref()));
            files.push(self.file(raw, &item.at, &mut dests));
        }
        (files, after)
    }

    fn file(
        &mut self,
        raw: &RawFile,
        at: &At,
        dests: &mut BTreeMap<IsoPath, String>,
    ) -> CheckedFile {
        let src = self
            .required_text(raw.src.as_ref(), at, "src")
            .and_then(|(text, src_at)| Some((self.host_path(text, src_at)?, src_at.clone())));
        let dest = self
            .required_text(raw.dest.as_ref(), at, "dest")
            .and_then(|(text, dest_at)| {
                let dest = self.iso_path(text, dest_at)?;
                if let Some(first) = dests.get(&dest) {
                    self.problems
                        .add(dest_at, format!("`{dest}` is already the dest of {first}"));
                    return None;
                }
                dests.insert(dest.clone(), at.field.clone());
                self.claims.push(Claim {
                    path: dest.clone(),
                    at: dest_at.clone(),
                    kind: ClaimKind::File,
                    source: src.as_ref().map(|(src, _)| src.clone()),
                });
                Some(dest)
            });
        let template = raw
            .template
            .as_ref()
            .and_then(|template| template.value)
            .unwrap_or(false);
        let mode = match &raw.mode {
            Some(Located {
                value: Some(mode),
                at,
            }) => self.mode(mode, at).map(Some),
            Some(Located { value: None, .. }) => None,
            None => Some(None),
        };
        let replace = self.string_map(raw.replace.as_ref(), |key| {
            key.is_empty()
                .then(|| "a replacement needs a text to replace".to_owned())
        });
        if template && let Some(Located { at: replace_at, .. }) = &raw.replace {
            self.problems.add(
                replace_at,
                "`replace` and `template: true` do not go together: a template says `{{ … }}` itself",
            );
        }
        let exclude = self.excludes(raw.exclude.as_ref());
        let format = raw.format.as_ref().map(|format| {
            let text = format.value.as_deref()?;
            match text {
                "json" => Some(DataFormat::Json),
                "yaml" => Some(DataFormat::Yaml),
                other => {
                    self.problems.add(
                        &format.at,
                        format!(
                            "`{other}` is not a data format; the formats are `json` and `yaml`"
                        ),
                    );
                    None
                }
            }
        });
        let format = match format {
            None => Some(None),
            Some(Some(format)) => Some(Some(format)),
            Some(None) => None,
        };
        let header = match &raw.header {
            None => Some(String::new()),
            Some(Located { value: None, .. }) => None,
            Some(Located {
                value: Some(text),
                at: header_at,
            }) => {
                if matches!(format, Some(None)) {
                    self.problems.add(
                        header_at,
                        "`header` goes with `format`: it is written before the data",
                    );
                }
                self.render(text, header_at)
            }
        };
        let after = AfterRefs::of(raw.after.as_ref()).names();
        let entry = (|| {
            Some(FileEntry {
                src: src.as_ref()?.0.clone(),
                dest: dest?,
                template,
                replace: replace?,
                mode: mode?,
                after: after.clone(),
                exclude: exclude?,
                format: format?,
                header: header?,
            })
        })();
        CheckedFile {
            src,
            template,
            waits: !after.is_empty(),
            entry,
        }
    }

    /// `exclude:` globs, each checked here so a bad one is named with its line.
    fn excludes(&mut self, raw: Option<&Located<Vec<Located<String>>>>) -> Option<Vec<String>> {
        let items = raw.and_then(|raw| raw.value.as_deref()).unwrap_or_default();
        let mut patterns = Some(Vec::new());
        for item in items {
            let Some(text) = &item.value else {
                patterns = None;
                continue;
            };
            let problem = if text.is_empty() {
                Some("an exclude pattern cannot be empty".to_owned())
            } else if text.starts_with('/') {
                Some(format!(
                    "`{text}` starts with `/`; exclude patterns are relative to the copied folder"
                ))
            } else {
                super::exclude_glob(text)
                    .err()
                    .map(|error| format!("`{text}` is not a glob: {error}"))
            };
            match problem {
                Some(message) => {
                    self.problems.add(&item.at, message);
                    patterns = None;
                }
                None => {
                    if let Some(patterns) = &mut patterns {
                        patterns.push(text.clone());
                    }
                }
            }
        }
        patterns
    }

    /// A mode is a quoted octal string: unquoted, YAML reads `0755` as the number 755.
    fn mode(&mut self, mode: &ScalarText, at: &At) -> Option<u32> {
        let text = &mode.text;
        if !mode.is_string {
            self.problems.add(
                at,
                format!("`{text}` is not a string; quote the octal mode, as in `mode: \"0755\"`"),
            );
            return None;
        }
        let parsed = (!text.is_empty() && text.bytes().all(|b| (b'0'..=b'7').contains(&b)))
            .then(|| u32::from_str_radix(text, 8).ok())
            .flatten();
        match parsed {
            Some(mode) if mode <= 0o7777 => Some(mode),
            Some(_) => {
                self.problems
                    .add(at, format!("mode `{text}` is above `7777`"));
                None
            }
            None => {
                self.problems.add(
                    at,
                    format!("`{text}` is not an octal mode such as \"0644\" or \"0755\""),
                );
                None
            }
        }
    }

    fn tasks<'r>(
        &mut self,
        raw: Option<&'r Located<Vec<Located<RawTask>>>>,
    ) -> (Vec<TaskSpec>, Vec<AfterRefs<'r>>) {
        let mut tasks = Vec::new();
        let mut after = Vec::new();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let items = raw.and_then(|raw| raw.value.as_deref()).unwrap_or_default();
        for item in items {
            let Some(raw) = &item.value else {
                tasks.push(TaskSpec::invalid());
                after.push(AfterRefs { items: Vec::new() });
                continue;
            };
            after.push(AfterRefs::of(raw.after.as_ref()));
            let name = self
                .required_text(raw.name.as_ref(), &item.at, "name")
                .and_then(|(name, at)| {
                    if !is_task_name(name) {
                        self.problems.add(
                            at,
                            format!(
                                "`{name}` is not a valid task name: letters, digits, `.`, `_` and `-`, starting with a letter or digit"
                            ),
                        );
                        return None;
                    }
                    if let Some(first) = names.get(name) {
                        self.problems
                            .add(at, format!("task `{name}` is already defined at {first}"));
                        return None;
                    }
                    names.insert(name.clone(), item.at.field.clone());
                    Some(name.clone())
                });
            let spec = self.task(raw, &item.at, name.clone());
            tasks.push(TaskSpec {
                name: name.unwrap_or_default(),
                spec,
            });
        }
        (tasks, after)
    }

    fn task(&mut self, raw: &RawTask, at: &At, name: Option<String>) -> Option<CommandTask> {
        let run = self
            .required(raw.run.as_ref(), at, "run")
            .and_then(|(items, run_at)| {
                if items.is_empty() {
                    self.problems
                        .add(run_at, "`run` is empty; give the command and its arguments");
                    return None;
                }
                let rendered = self.render_list(items);
                if let Some(Some((program, program_at))) = rendered.first()
                    && program.trim().is_empty()
                {
                    self.problems.add(program_at, "the command to run is empty");
                    return None;
                }
                rendered
                    .into_iter()
                    .map(|item| item.map(|(text, _)| text))
                    .collect::<Option<Vec<_>>>()
            });
        let inputs = self.list_field(raw.inputs.as_ref()).and_then(|inputs| {
            let mut ok = true;
            for (pattern, at) in &inputs {
                if let Err(error) = globset::GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                {
                    self.problems.add(
                        at,
                        format!("`{pattern}` is not a valid glob: {}", error.kind()),
                    );
                    ok = false;
                }
            }
            ok.then(|| inputs.into_iter().map(|(pattern, _)| pattern).collect())
        });
        let outputs = self.list_field(raw.outputs.as_ref()).and_then(|outputs| {
            outputs
                .into_iter()
                .map(|(text, at)| {
                    if text.trim().is_empty() {
                        self.problems.add(&at, "the path is empty");
                        None
                    } else {
                        Some(normalize(&self.origin.base_dir.join(text)))
                    }
                })
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Option<Vec<_>>>()
        });
        let env = self.env_field(raw.env.as_ref());
        let after = AfterRefs::of(raw.after.as_ref()).names();
        let container = self.container_spec(raw, at);
        Some(CommandTask {
            name: name?,
            run: run?,
            inputs: inputs?,
            outputs: outputs?,
            env: env?,
            after,
            container: container?,
        })
    }

    /// An optional list of templated strings: rendered, with where each came from.
    fn list_field(
        &mut self,
        raw: Option<&Located<Vec<Located<String>>>>,
    ) -> Option<Vec<(String, At)>> {
        match raw {
            None => Some(Vec::new()),
            Some(located) => {
                let items = located.value.as_ref()?;
                self.render_list(items).into_iter().collect()
            }
        }
    }

    fn env_field(
        &mut self,
        raw: Option<&Located<Entries<String>>>,
    ) -> Option<BTreeMap<String, String>> {
        self.string_map(raw, |name| {
            (name.is_empty() || name.contains(['=', '\0']))
                .then(|| format!("`{name}` is not an environment variable name"))
        })
    }

    /// A map of names to templated strings; `bad_key` says what is wrong with a key.
    fn string_map(
        &mut self,
        raw: Option<&Located<Entries<String>>>,
        bad_key: impl Fn(&str) -> Option<String>,
    ) -> Option<BTreeMap<String, String>> {
        let Some(located) = raw else {
            return Some(BTreeMap::new());
        };
        let entries = located.value.as_ref()?;
        let mut map = Some(BTreeMap::new());
        for (key, value) in &entries.0 {
            let (Some(name), Some(text)) = (&key.value, &value.value) else {
                map = None;
                continue;
            };
            if let Some(problem) = bad_key(name) {
                self.problems.add(&key.at, problem);
                map = None;
                continue;
            }
            match self.render(text, &value.at) {
                Some(rendered) => {
                    if let Some(map) = &mut map {
                        map.insert(name.clone(), rendered);
                    }
                }
                None => map = None,
            }
        }
        map
    }

    // ---- cross-references ----------------------------------------------------------------

    /// Every `after:` name must be a task.
    fn known_tasks(&mut self, refs: &AfterRefs<'_>, tasks: &[String]) {
        for item in &refs.items {
            let Some(name) = &item.value else { continue };
            if !tasks.iter().any(|task| task == name) {
                let known = if tasks.is_empty() {
                    "this recipe has no tasks".to_owned()
                } else {
                    format!("tasks are {}", quoted_list(tasks.iter()))
                };
                self.problems
                    .add(&item.at, format!("unknown task `{name}` ({known})"));
            }
        }
    }

    /// Tasks must not wait for themselves, directly or through others.
    fn cycles(&mut self, tasks: &[TaskSpec], after: &[AfterRefs<'_>]) {
        use petgraph::graph::{DiGraph, NodeIndex};
        let mut graph: DiGraph<usize, usize> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..tasks.len()).map(|i| graph.add_node(i)).collect();
        let index: BTreeMap<&str, usize> = tasks
            .iter()
            .enumerate()
            .filter(|(_, task)| !task.name.is_empty())
            .map(|(i, task)| (task.name.as_str(), i))
            .collect();
        for (i, refs) in after.iter().enumerate() {
            for (position, item) in refs.items.iter().enumerate() {
                if let Some(&target) = item.value.as_deref().and_then(|name| index.get(name)) {
                    graph.add_edge(nodes[i], nodes[target], position);
                }
            }
        }
        for component in petgraph::algo::tarjan_scc(&graph) {
            let members: BTreeSet<usize> = component.iter().map(|node| graph[*node]).collect();
            let Some(&start) = members.first() else {
                continue;
            };
            let looped = members.len() > 1 || graph.contains_edge(nodes[start], nodes[start]);
            if !looped {
                continue;
            }
            let path = cycle_from(&graph, &nodes, &members, start);
            let names: Vec<&str> = path.iter().map(|&i| tasks[i].name.as_str()).collect();
            // Report at the first task's `after:` entry that starts the cycle.
            let next = path.get(1).copied().unwrap_or(start);
            let at = after[start]
                .items
                .iter()
                .find(|item| item.value.as_deref() == Some(tasks[next].name.as_str()))
                .map(|item| item.at.clone())
                .unwrap_or_default();
            self.problems
                .add(&at, format!("dependency cycle: {}", names.join(" -> ")));
        }
    }

    /// A `files:` source must exist, unless a task makes it or the entry waits for one.
    fn file_sources(&mut self, files: &[CheckedFile], tasks: &[TaskSpec]) {
        let outputs: Vec<&PathBuf> = tasks
            .iter()
            .filter_map(|task| task.spec.as_ref())
            .flat_map(|task| &task.outputs)
            .collect();
        for file in files {
            let Some((src, at)) = &file.src else { continue };
            let made = outputs
                .iter()
                .any(|output| src.starts_with(output) || output.starts_with(src));
            if made || file.waits {
                continue;
            }
            if !src.exists() {
                self.problems.add(
                    at,
                    format!(
                        "`{}` does not exist; if a task makes it, list it in the task's `outputs` or add `after:`",
                        self.origin.shown(src).display()
                    ),
                );
            } else if file.template {
                self.template_file(src, at);
            }
        }
    }

    /// A `files:` source inside the ISO tree would be deleted by the build that copies it
    /// (the tree holds only what the recipe writes), or copied into itself.
    fn sources_outside_the_tree(&mut self, root: &Path, files: &[CheckedFile]) {
        for file in files {
            let Some((src, at)) = &file.src else { continue };
            if src.starts_with(root) {
                self.problems.add(
                    at,
                    format!(
                        "`{}` is inside the ISO tree `{}`, which every build empties of what the recipe does not write; keep sources out of `iso.root`",
                        self.origin.shown(src).display(),
                        self.origin.shown(root).display()
                    ),
                );
            }
        }
    }

    /// Every path of the ISO tree has exactly one writer: two entries writing one path, or
    /// one writing inside another's file or folder (a file in an image folder, `x` and
    /// `x/y`), would give an ISO that depends on which ran last (`--jobs`), or fail `verify`.
    fn one_writer_per_path(&mut self) {
        let mut claims = std::mem::take(&mut self.claims);
        claims.sort_by(|a, b| a.path.cmp(&b.path));
        let mut found = Vec::new();
        for (index, first) in claims.iter().enumerate() {
            let inside = |other: &Claim| {
                other
                    .path
                    .as_str()
                    .strip_prefix(first.path.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            };
            // Sorted, so every path inside `first` follows it (`a/b` sorts after `a` but
            // `a-b`, `a.b` may sort between them: keep looking while the prefix matches).
            for second in claims[index + 1..]
                .iter()
                .take_while(|other| other.path.as_str().starts_with(first.path.as_str()))
                .filter(|other| inside(other))
            {
                let equal = second.path == first.path;
                // Beside the files a copied folder brings is fine, over one of them is not.
                // A source that is not there yet (a task makes it) is given the benefit of
                // the doubt: only a clash that can be seen is one.
                if !equal
                    && let Some(source) = &first.source
                    && !source.is_file()
                {
                    let rest = &second.path.as_str()[first.path.as_str().len() + 1..];
                    if fs_err::symlink_metadata(source.join(rest)).is_err() {
                        continue;
                    }
                }
                // Two `files:` dests or two image folders on one path are reported where
                // they are read.
                if equal
                    && first.kind == second.kind
                    && matches!(first.kind, ClaimKind::File | ClaimKind::Image)
                {
                    continue;
                }
                let (early, late) =
                    if (first.at.line, first.at.column) <= (second.at.line, second.at.column) {
                        (first, second)
                    } else {
                        (second, first)
                    };
                let relation = if equal {
                    format!("`{}` is also written by", late.path)
                } else if late.path == second.path {
                    format!("`{}` is inside `{}`, written by", late.path, early.path)
                } else {
                    format!("`{}` holds `{}`, written by", late.path, early.path)
                };
                found.push((
                    late.at.clone(),
                    format!(
                        "{relation} `{}` (line {}, column {}); every path in the ISO tree has one writer",
                        early.at.field, early.at.line, early.at.column
                    ),
                ));
            }
        }
        for (at, message) in found {
            self.problems.add(&at, message);
        }
    }

    /// Nothing the build writes outside the tree (the ISO, its `SHA256SUM`) may be something
    /// it reads or another output, and pruning the tree may delete nothing it reads (see
    /// [`super::outputs`]).
    fn outputs_apart(&mut self, iso: &IsoSettings, files: &[CheckedFile], tasks: &[TaskSpec]) {
        let paths = HostPaths::new(
            &self.origin.file,
            &self.origin.base_dir,
            &iso.root,
            files
                .iter()
                .filter_map(|file| file.src.as_ref().map(|(src, _)| src.as_path())),
            tasks.iter().filter_map(|task| task.spec.as_ref()).collect(),
        );
        let host_outputs = std::mem::take(&mut self.host_outputs);
        let mut found = Vec::new();
        if let Some((root, at)) = host_outputs.first()
            && let Some(clash) = paths.root_clash()
        {
            found.push((
                at.clone(),
                format!(
                    "the tree `{}` cannot be `iso.root`: {clash}; every build deletes what the recipe does not write there",
                    self.origin.shown(root).display()
                ),
            ));
        }
        for (index, (output, at)) in host_outputs.iter().enumerate().skip(1) {
            if output.starts_with(&iso.root) {
                // Already reported by `iso` (an ISO inside its own tree).
                continue;
            }
            let earlier = host_outputs[1..index]
                .iter()
                .find(|(other, _)| other == output);
            let clash = match earlier {
                Some((_, other_at)) => Some(format!("`{}` writes it too", other_at.field)),
                None => paths.output_clash(output),
            };
            if let Some(clash) = clash {
                found.push((
                    at.clone(),
                    format!(
                        "the build would overwrite `{}`: {clash}",
                        self.origin.shown(output).display()
                    ),
                ));
            }
        }
        for (at, message) in found {
            self.problems.add(&at, message);
        }
    }

    /// Compile a `template: true` source, reporting a syntax error in the template itself.
    fn template_file(&mut self, path: &Path, at: &At) {
        if path.is_dir() {
            self.problems.add(
                at,
                format!(
                    "`{}` is a folder; a template must be a file",
                    self.origin.shown(path).display()
                ),
            );
            return;
        }
        let source = match super::read_template(path) {
            Ok(source) => source,
            Err(error) => {
                self.problems.add(at, error.to_string());
                return;
            }
        };
        let name = path.display().to_string();
        if let Err(error) = self.env.template_from_named_str(&name, &source) {
            let line = error.line().unwrap_or(0);
            let column = error
                .range()
                .map_or(0, |range| column_of(&source, range.start));
            self.problems.list.push(Problem {
                file: self.origin.shown(path),
                line,
                column,
                field: at.field.clone(),
                message: template_error(&error),
            });
        }
    }
}

/// A `files:` entry as far as it could be read: enough to check its source, and the
/// entry itself when all of it is valid.
#[derive(Default)]
struct CheckedFile {
    src: Option<(PathBuf, At)>,
    template: bool,
    /// It has `after:`, so its source may not exist yet.
    waits: bool,
    entry: Option<FileEntry>,
}

/// What earlier entries already use: `name:tag` and ISO paths, each with the entry's field.
#[derive(Default)]
struct Seen {
    images: BTreeMap<String, String>,
    paths: BTreeMap<IsoPath, String>,
}

/// A task as far as it could be read: its name (empty when invalid) for cross-references,
/// and its spec when all of it is valid.
struct TaskSpec {
    name: String,
    spec: Option<CommandTask>,
}

impl TaskSpec {
    fn invalid() -> Self {
        Self {
            name: String::new(),
            spec: None,
        }
    }
}

/// A cycle through `start` inside one strongly connected component, as recipe indexes,
/// ending with `start` again. Follows `after:` entries in the order they are written.
fn cycle_from(
    graph: &petgraph::graph::DiGraph<usize, usize>,
    nodes: &[petgraph::graph::NodeIndex],
    members: &BTreeSet<usize>,
    start: usize,
) -> Vec<usize> {
    let successors = |i: usize| {
        let mut next: Vec<(usize, usize)> = graph
            .edges(nodes[i])
            .map(|edge| {
                use petgraph::visit::EdgeRef as _;
                (*edge.weight(), graph[edge.target()])
            })
            .filter(|(_, target)| members.contains(target))
            .collect();
        next.sort_unstable();
        next.into_iter()
            .map(|(_, target)| target)
            .collect::<Vec<_>>()
    };
    // Depth-first search for a path back to `start`; the component guarantees one exists.
    let mut path = vec![start];
    let mut stack = vec![successors(start)];
    let mut visited = BTreeSet::from([start]);
    while let Some(frontier) = stack.last_mut() {
        let Some(next) = frontier.first().copied() else {
            stack.pop();
            path.pop();
            continue;
        };
        frontier.remove(0);
        if next == start {
            path.push(start);
            return path;
        }
        if visited.insert(next) {
            path.push(next);
            stack.push(successors(next));
        }
    }
    vec![start, start]
}

/// How a minijinja error reads in a problem: its kind, then its detail.
fn template_error(error: &minijinja::Error) -> String {
    if let Some(message) = super::template::out_of_fuel(error) {
        return message;
    }
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

/// The 1-based column of byte `offset` in `source`.
fn column_of(source: &str, offset: usize) -> usize {
    let offset = offset.min(source.len());
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    source[line_start..offset].chars().count() + 1
}

/// `path` without `.` components and with `..` applied, without touching the filesystem
/// (the path may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other),
        }
    }
    normalized
}

fn quoted_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One component of a repository path, as the distribution spec defines it:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(text: &str) -> bool {
    let bytes = text.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(b) {
            if !(separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.bytes().all(|s| s == b'-'))
            {
                return false;
            }
            separator.clear();
        } else if b"._-".contains(&b) {
            separator.push(char::from(b));
        } else {
            return false;
        }
    }
    true
}

/// A tag as the distribution spec defines it: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_tag(text: &str) -> bool {
    text.len() <= 128
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A registry host with an optional port: `docker.io`, `127.0.0.1:5000`, `[::1]:5000`.
fn is_registry_host(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// Task names appear in `after:` lists, cycle messages and progress lines.
fn is_task_name(text: &str) -> bool {
    text.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}
