//! Unit tests of the recipe loader: one table row per rule (`recipe_error!`), and loads of
//! valid recipes that check the values the model ends up with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pretty_assertions::assert_eq;

use super::check::{Origin, check};
use super::{ImageFormat, Problem, Recipe};
use crate::reference::ImageSource;

/// The three lines every valid recipe starts with; test YAML goes on from line 4.
const HEAD: &str = "isobuild: 1\nname: Demo\nversion: 1.0.0\n";

/// A project folder with a recipe and some files in it.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn file(self, path: &str, contents: &str) -> Self {
        let path = self.dir.path().join(path);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, contents).unwrap();
        self
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write `yaml` as `recipe.yaml` and check it.
    fn check(&self, yaml: &str, overrides: &[(&str, &str)]) -> Result<Recipe, Vec<Problem>> {
        fs_err::write(self.path().join("recipe.yaml"), yaml).unwrap();
        let origin = Origin {
            file: self.path().join("recipe.yaml"),
            base_dir: self.path().to_owned(),
            cwd: Some(self.path().to_owned()),
            epoch_override: None,
        };
        let overrides: BTreeMap<String, String> = overrides
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        check(yaml, &origin, &overrides)
    }

    fn load(&self, yaml: &str) -> Recipe {
        match self.check(yaml, &[]) {
            Ok(recipe) => recipe,
            Err(problems) => panic!("unexpected problems:\n{}", render(&problems)),
        }
    }

    fn problems(&self, yaml: &str) -> Vec<String> {
        match self.check(yaml, &[]) {
            Ok(recipe) => panic!("expected problems, the recipe loaded: {recipe:#?}"),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One malformed recipe and the one problem it must give, as `recipe.yaml:L:C: field: message`
/// (no `field: ` when `field` is empty).
macro_rules! recipe_error {
    (
        name: $name:ident,
        yaml: $yaml:expr,
        line: $line:expr,
        column: $column:expr,
        field: $field:expr,
        message: $message:expr $(,)?
    ) => {
        #[test]
        fn $name() {
            let problems = Project::new().problems(&$yaml);
            let field: &str = $field;
            let expected = if field.is_empty() {
                format!("recipe.yaml:{}:{}: {}", $line, $column, $message)
            } else {
                format!("recipe.yaml:{}:{}: {}: {}", $line, $column, field, $message)
            };
            assert_eq!(problems, vec![expected]);
        }
    };
}

recipe_error! {
    name: yaml_syntax_error,
    yaml: "isobuild: 1\nname: [x\n",
    line: 2,
    column: 7,
    field: "",
    message: "invalid YAML: unclosed bracket '['",
}

recipe_error! {
    name: document_must_be_a_mapping,
    yaml: "- isobuild\n- 1\n",
    line: 1,
    column: 1,
    field: "",
    message: "a recipe is a mapping of fields (`isobuild`, `name`, …), found a list",
}

recipe_error! {
    name: empty_document,
    yaml: "# nothing\n",
    line: 1,
    column: 1,
    field: "",
    message: "the recipe is empty; it needs at least `isobuild: 1`, `name` and `version`",
}

recipe_error! {
    name: newer_schema_version_hides_the_rest,
    yaml: "isobuild: 2\nname: x\nnew_field: 3\n",
    line: 1,
    column: 11,
    field: "isobuild",
    message: "unsupported schema version 2; this isobuild reads version 1",
}

recipe_error! {
    name: missing_schema_version,
    yaml: "name: x\nversion: 1\n",
    line: 1,
    column: 1,
    field: "",
    message: "missing required field `isobuild`",
}

recipe_error! {
    name: unknown_top_level_key,
    yaml: format!("{HEAD}imgs: []\n"),
    line: 4,
    column: 1,
    field: "imgs",
    message: "unknown field `imgs`; did you mean `images`? (expected one of `isobuild`, `name`, `version`, `vars`, `data`, `epoch`, `iso`, `images`, `mirrors`, `files`, `tasks`, `packages`)",
}

recipe_error! {
    name: duplicate_key,
    yaml: format!("{HEAD}name: again\n"),
    line: 4,
    column: 1,
    field: "name",
    message: "duplicate key `name` (first at line 2)",
}

recipe_error! {
    name: name_of_the_wrong_type,
    yaml: "isobuild: 1\nname: [a]\nversion: 1\n",
    line: 2,
    column: 7,
    field: "name",
    message: "expected a string, found a list",
}

recipe_error! {
    name: epoch_negative,
    yaml: format!("{HEAD}epoch: -1\n"),
    line: 4,
    column: 8,
    field: "epoch",
    message: "`-1` is negative; `epoch` is seconds since 1970-01-01 UTC",
}

recipe_error! {
    name: epoch_not_an_integer,
    yaml: format!("{HEAD}epoch: 17.5\n"),
    line: 4,
    column: 8,
    field: "epoch",
    message: "expected an integer, found the number `17.5`",
}

recipe_error! {
    name: vars_values_are_scalars,
    yaml: format!("{HEAD}vars:\n  list: [1]\n"),
    line: 5,
    column: 9,
    field: "vars.list",
    message: "expected a single value, found a list",
}

recipe_error! {
    name: iso_unknown_key,
    yaml: format!("{HEAD}iso:\n  volid: X\n"),
    line: 5,
    column: 3,
    field: "iso.volid",
    message: "unknown field `volid`; expected one of `output`, `root`, `volume_id`, `implant_md5`, `sha256sum`, `sbom`",
}

recipe_error! {
    name: iso_volume_id_undefined_variable,
    yaml: format!("{HEAD}iso:\n  volume_id: \"{{{{ vars.nope }}}}\"\n"),
    line: 5,
    column: 14,
    field: "iso.volume_id",
    message: "cannot render `{{ vars.nope }}`: undefined value: `vars.nope` is undefined",
}

recipe_error! {
    name: iso_volume_id_too_long,
    yaml: format!("{HEAD}iso:\n  volume_id: {}\n", "V".repeat(33)),
    line: 5,
    column: 14,
    field: "iso.volume_id",
    message: format!("volume id `{}` is 33 characters long; an ISO volume id has at most 32", "V".repeat(33)),
}

recipe_error! {
    name: iso_implant_md5_yaml_1_1_boolean,
    yaml: format!("{HEAD}iso:\n  implant_md5: yes\n"),
    line: 5,
    column: 16,
    field: "iso.implant_md5",
    message: "expected `true` or `false`, found the string `yes`",
}

recipe_error! {
    name: iso_sbom_is_a_switch,
    yaml: format!("{HEAD}iso:\n  sbom: cyclonedx\n"),
    line: 5,
    column: 9,
    field: "iso.sbom",
    message: "expected `true` or `false`, found the string `cyclonedx`",
}

recipe_error! {
    name: images_bad_platform,
    yaml: format!("{HEAD}images:\n  platform: linux\n"),
    line: 5,
    column: 13,
    field: "images.platform",
    message: "`linux` is not a platform of the form os/arch[/variant]",
}

recipe_error! {
    name: images_unknown_format,
    yaml: format!("{HEAD}images:\n  format: v2s1\n"),
    line: 5,
    column: 11,
    field: "images.format",
    message: "unknown image format `v2s1`; expected `v2s2` or `oci`",
}

recipe_error! {
    name: images_path_escapes,
    yaml: format!("{HEAD}images:\n  path: \"../{{{{ name }}}}\"\n  list:\n    - {{ name: a, ref: a:1 }}\n"),
    line: 5,
    column: 9,
    field: "images.path",
    message: "for images.list[0]: `../a` escapes the ISO tree with `..`",
}

recipe_error! {
    name: images_path_without_tag_collides,
    yaml: format!("{HEAD}images:\n  path: \"images/{{{{ name }}}}\"\n  list:\n    - {{ name: a, ref: a:1 }}\n    - {{ name: a, ref: a:2 }}\n"),
    line: 5,
    column: 9,
    field: "images.path",
    message: "images.list[0] and images.list[1] both go to `images/a`; `images.path` needs `{{ name }}` and `{{ tag }}`",
}

recipe_error! {
    name: registry_config_requires_server_root,
    yaml: format!("{HEAD}images:\n  registry_config:\n    path: a.inc\n    common_path: b.inc\n"),
    line: 6,
    column: 5,
    field: "images.registry_config",
    message: "missing required field `server_root`",
}

recipe_error! {
    name: registry_config_path_absolute,
    yaml: format!("{HEAD}images:\n  registry_config: {{ path: /etc/a.inc, common_path: b.inc, server_root: x }}\n"),
    line: 5,
    column: 28,
    field: "images.registry_config.path",
    message: "`/etc/a.inc` is absolute; paths in the ISO tree are relative to its root",
}

recipe_error! {
    name: image_missing_ref,
    yaml: format!("{HEAD}images:\n  list:\n    - name: a\n"),
    line: 6,
    column: 7,
    field: "images.list[0]",
    message: "missing required field `ref`",
}

recipe_error! {
    name: image_name_not_a_path_component,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: calico/cni, ref: calico/cni:v3 }}\n"),
    line: 6,
    column: 15,
    field: "images.list[0].name",
    message: "`calico/cni` is not a valid image name: lowercase letters and digits, separated by `.`, `_`, `__` or `-` (one path component, no `/`)",
}

recipe_error! {
    name: image_bad_reference,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: a, ref: \"Alpine:3\" }}\n"),
    line: 6,
    column: 23,
    field: "images.list[0].ref",
    message: "`Alpine:3` is not a valid image reference: the repository must be lowercase letters, digits and `._-` separated by `/`",
}

recipe_error! {
    name: image_archive_needs_a_tag,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: a, ref: \"oci-archive:a.tar\" }}\n"),
    line: 6,
    column: 7,
    field: "images.list[0]",
    message: "missing required field `tag`: `oci-archive:a.tar` implies no tag",
}

recipe_error! {
    name: image_bad_digest,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: a, ref: a:1, digest: \"sha256:12\" }}\n"),
    line: 6,
    column: 36,
    field: "images.list[0].digest",
    message: "`sha256:12` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)",
}

recipe_error! {
    name: image_id_without_algorithm,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: a, ref: a:1, image_id: {} }}\n", "a".repeat(64)),
    line: 6,
    column: 38,
    field: "images.list[0].image_id",
    message: format!("`{}` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)", "a".repeat(64)),
}

recipe_error! {
    name: image_id_not_a_string,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: a, ref: a:1, image_id: [x] }}\n"),
    line: 6,
    column: 38,
    field: "images.list[0].image_id",
    message: "expected a string, found a list",
}

recipe_error! {
    name: image_listed_twice,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: a, ref: a:1 }}\n    - {{ name: a, ref: b:1 }}\n"),
    line: 7,
    column: 7,
    field: "images.list[1]",
    message: "image `a:1` is already listed at images.list[0]",
}

recipe_error! {
    name: image_archive_escapes,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: a, ref: a:1, archive: ../a.tar }}\n"),
    line: 6,
    column: 37,
    field: "images.list[0].archive",
    message: "`../a.tar` escapes the ISO tree with `..`",
}

recipe_error! {
    name: file_mode_unquoted,
    yaml: format!("{HEAD}files:\n  - {{ src: recipe.yaml, dest: r, mode: 0755 }}\n"),
    line: 5,
    column: 40,
    field: "files[0].mode",
    message: "`0755` is not a string; quote the octal mode, as in `mode: \"0755\"`",
}

recipe_error! {
    name: file_mode_not_octal,
    yaml: format!("{HEAD}files:\n  - {{ src: recipe.yaml, dest: r, mode: \"0758\" }}\n"),
    line: 5,
    column: 40,
    field: "files[0].mode",
    message: "`0758` is not an octal mode such as \"0644\" or \"0755\"",
}

recipe_error! {
    name: file_mode_too_large,
    yaml: format!("{HEAD}files:\n  - {{ src: recipe.yaml, dest: r, mode: \"17777\" }}\n"),
    line: 5,
    column: 40,
    field: "files[0].mode",
    message: "mode `17777` is above `7777`",
}

recipe_error! {
    name: file_dest_absolute,
    yaml: format!("{HEAD}files:\n  - {{ src: recipe.yaml, dest: /etc/r }}\n"),
    line: 5,
    column: 31,
    field: "files[0].dest",
    message: "`/etc/r` is absolute; paths in the ISO tree are relative to its root",
}

recipe_error! {
    name: file_src_missing,
    yaml: format!("{HEAD}files:\n  - {{ src: nope.txt, dest: r }}\n"),
    line: 5,
    column: 12,
    field: "files[0].src",
    message: "`nope.txt` does not exist; if a task makes it, list it in the task's `outputs` or add `after:`",
}

recipe_error! {
    name: file_dest_twice,
    yaml: format!("{HEAD}files:\n  - {{ src: recipe.yaml, dest: r }}\n  - {{ src: recipe.yaml, dest: ./r/ }}\n"),
    line: 6,
    column: 31,
    field: "files[1].dest",
    message: "`r` is already the dest of files[0]",
}

recipe_error! {
    name: file_template_not_a_boolean,
    yaml: format!("{HEAD}files:\n  - {{ src: recipe.yaml, dest: r, template: 1 }}\n"),
    line: 5,
    column: 44,
    field: "files[0].template",
    message: "expected `true` or `false`, found the integer `1`",
}

recipe_error! {
    name: task_empty_run,
    yaml: format!("{HEAD}tasks:\n  - {{ name: a, run: [] }}\n"),
    line: 5,
    column: 21,
    field: "tasks[0].run",
    message: "`run` is empty; give the command and its arguments",
}

recipe_error! {
    name: task_run_not_a_list,
    yaml: format!("{HEAD}tasks:\n  - {{ name: a, run: make all }}\n"),
    line: 5,
    column: 21,
    field: "tasks[0].run",
    message: "expected a list, found the string `make all`",
}

recipe_error! {
    name: task_defined_twice,
    yaml: format!("{HEAD}tasks:\n  - {{ name: a, run: [make] }}\n  - {{ name: a, run: [make] }}\n"),
    line: 6,
    column: 13,
    field: "tasks[1].name",
    message: "task `a` is already defined at tasks[0]",
}

recipe_error! {
    name: task_unknown_after,
    yaml: format!("{HEAD}tasks:\n  - {{ name: a, run: [make], after: [b] }}\n"),
    line: 5,
    column: 37,
    field: "tasks[0].after[0]",
    message: "unknown task `b` (tasks are `a`)",
}

recipe_error! {
    name: task_waits_for_itself,
    yaml: format!("{HEAD}tasks:\n  - {{ name: a, run: [make], after: [a] }}\n"),
    line: 5,
    column: 37,
    field: "tasks[0].after[0]",
    message: "dependency cycle: a -> a",
}

recipe_error! {
    name: task_cycle_of_three,
    yaml: format!("{HEAD}tasks:\n  - {{ name: a, run: [make], after: [c] }}\n  - {{ name: b, run: [make], after: [a] }}\n  - {{ name: c, run: [make], after: [b] }}\n"),
    line: 5,
    column: 37,
    field: "tasks[0].after[0]",
    message: "dependency cycle: a -> c -> b -> a",
}

recipe_error! {
    name: task_bad_glob,
    yaml: format!("{HEAD}tasks:\n  - {{ name: a, run: [make], inputs: [\"src/[a\"] }}\n"),
    line: 5,
    column: 38,
    field: "tasks[0].inputs[0]",
    message: "`src/[a` is not a valid glob: unclosed character class; missing ']'",
}

recipe_error! {
    name: task_env_value_not_a_string,
    yaml: format!("{HEAD}tasks:\n  - {{ name: a, run: [make], env: {{ A: [1] }} }}\n"),
    line: 5,
    column: 39,
    field: "tasks[0].env.A",
    message: "expected a string, found a list",
}

recipe_error! {
    name: mirror_with_a_scheme,
    yaml: format!("{HEAD}mirrors:\n  docker.io: \"http://127.0.0.1:5000\"\n"),
    line: 5,
    column: 14,
    field: "mirrors.docker.io",
    message: "`http://127.0.0.1:5000` is not a registry host with an optional path prefix (such as `127.0.0.1:5000/docker.io`)",
}

#[test]
fn every_problem_is_reported_in_document_order() {
    let yaml = format!(
        "{HEAD}epoch: -3\niso:\n  volume_id: \"{{{{ nope }}}}\"\nimages:\n  list:\n    - {{ name: a, ref: a:1, digest: x }}\n    - {{ name: B, ref: b:1 }}\nfiles:\n  - {{ src: recipe.yaml, dest: ../r, mode: 644 }}\ntasks:\n  - {{ name: t, run: [], after: [u] }}\n"
    );
    let problems = Project::new().problems(&yaml);
    assert_eq!(
        problems,
        [
            "recipe.yaml:4:8: epoch: `-3` is negative; `epoch` is seconds since 1970-01-01 UTC",
            "recipe.yaml:6:14: iso.volume_id: cannot render `{{ nope }}`: undefined value: `nope` is undefined",
            "recipe.yaml:9:36: images.list[0].digest: `x` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)",
            "recipe.yaml:10:15: images.list[1].name: `B` is not a valid image name: lowercase letters and digits, separated by `.`, `_`, `__` or `-` (one path component, no `/`)",
            "recipe.yaml:12:31: files[0].dest: `../r` escapes the ISO tree with `..`",
            "recipe.yaml:12:43: files[0].mode: `644` is not a string; quote the octal mode, as in `mode: \"0755\"`",
            "recipe.yaml:14:21: tasks[0].run: `run` is empty; give the command and its arguments",
            "recipe.yaml:14:33: tasks[0].after[0]: unknown task `u` (tasks are `t`)",
        ]
    );
}

#[test]
fn a_type_error_in_one_item_does_not_hide_the_next() {
    let yaml = format!(
        "{HEAD}files:\n  - {{ src: [x], dest: a }}\n  - {{ src: recipe.yaml, dest: /b }}\n"
    );
    let problems = Project::new().problems(&yaml);
    assert_eq!(
        problems,
        [
            "recipe.yaml:5:12: files[0].src: expected a string, found a list",
            "recipe.yaml:6:31: files[1].dest: `/b` is absolute; paths in the ISO tree are relative to its root",
        ]
    );
}

#[test]
fn set_must_name_a_declared_var() {
    let project = Project::new();
    let yaml = format!("{HEAD}vars:\n  short: \"1.0\"\n");
    let problems = project.check(&yaml, &[("shrot", "2")]).unwrap_err();
    assert_eq!(
        render(&problems),
        "recipe.yaml:5:3: vars: `--set shrot=2` names no variable of this recipe (declared: `short`)"
    );
    let recipe = project.check(&yaml, &[("short", "2.0")]).unwrap();
    assert_eq!(recipe.vars["short"], "2.0");
}

#[test]
fn template_syntax_errors_name_the_template_file() {
    let project = Project::new().file("conf/motd.j2", "Welcome\n{% if x %}\nno end\n");
    let yaml =
        format!("{HEAD}files:\n  - {{ src: conf/motd.j2, dest: etc/motd, template: true }}\n");
    let problems = project.problems(&yaml);
    assert_eq!(
        problems,
        [
            "conf/motd.j2:2:11: files[0].src: syntax error: unexpected end of input, expected end of block"
        ]
    );
}

#[test]
fn sources_made_by_tasks_or_waited_for_need_not_exist() {
    let project = Project::new();
    project.load(&format!(
        "{HEAD}files:\n  - {{ src: _build/out/x.tar, dest: x.tar }}\n  - {{ src: gen.txt, dest: gen.txt, after: [gen] }}\ntasks:\n  - {{ name: build, run: [make], outputs: [_build/out] }}\n  - {{ name: gen, run: [make, gen.txt] }}\n"
    ));
}

#[test]
fn minimal_recipe_takes_the_defaults() {
    let project = Project::new();
    let recipe = project.load("isobuild: 1\nname: Tiny\nversion: \"0.1\"\n");
    assert_eq!(recipe.name, "Tiny");
    assert_eq!(recipe.iso.output, project.path().join("_build/tiny.iso"));
    assert_eq!(recipe.iso.root, project.path().join("_build/root"));
    assert_eq!(recipe.iso.volume_id, "Tiny 0.1");
    assert!(!recipe.iso.implant_md5);
    assert_eq!(recipe.iso.sha256sum, None);
    assert!(!recipe.iso.sbom);
    assert_eq!(recipe.images.platform.to_string(), "linux/amd64");
    assert_eq!(recipe.images.format, ImageFormat::V2s2);
    assert!(recipe.images.registry_config.is_none());
    assert!(recipe.images.list.is_empty() && recipe.files.is_empty() && recipe.tasks.is_empty());
    assert_eq!(recipe.epoch, None);
}

/// `digest` pins what the reference resolves to, `image_id` the config blob: both may be
/// given, either alone, or neither.
#[test]
fn image_pins_digest_and_image_id() {
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    let recipe = Project::new().load(&format!(
        "{HEAD}images:\n  list:\n    - {{ name: both, ref: r/both:1, digest: \"sha256:{a}\", image_id: \"sha256:{b}\" }}\n    - {{ name: id, ref: r/id:1, image_id: \"sha256:{b}\" }}\n    - {{ name: none, ref: r/none:1 }}\n"
    ));
    let pins: Vec<(Option<String>, Option<String>)> = recipe
        .images
        .list
        .iter()
        .map(|image| {
            (
                image.digest.as_ref().map(ToString::to_string),
                image.image_id.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(
        pins,
        [
            (Some(format!("sha256:{a}")), Some(format!("sha256:{b}"))),
            (None, Some(format!("sha256:{b}"))),
            (None, None),
        ]
    );
}

/// The example of DESIGN.md §2, with the files it names.
#[test]
fn the_design_example_loads() {
    let project = Project::new()
        .file("salt/top.sls", "base: {}\n")
        .file("scripts/bootstrap.sh.in", "#!/bin/sh\necho {{ version }}\n")
        .file("product.txt.j2", "NAME={{ name }}\n");
    let digest = format!("sha256:{}", "b".repeat(64));
    let yaml = format!(
        r#"isobuild: 1                       # schema version
name: MetalK8s
version: 129.0.0-dev
vars: {{ short_version: 129.0 }}
epoch: 1700000000
mirrors:
  docker.io: 127.0.0.1:5000/docker.io
iso:
  output: _build/metalk8s.iso
  root: _build/root
  volume_id: "MetalK8s {{{{ vars.short_version }}}}"
  implant_md5: true
  sha256sum: _build/SHA256SUM
images:
  platform: linux/amd64
  format: v2s2
  path: "images/{{{{ name }}}}/{{{{ tag }}}}"
  registry_config:
    path: salt/metalk8s/repo/files/metalk8s-registry.inc
    common_path: salt/metalk8s/repo/files/metalk8s-registry-common.inc
    name_prefix: "metalk8s-{{{{ version }}}}/"
    server_root: "$metalk8s_{{{{ version | underscore }}}}_images"
  list:
    - name: alpine
      ref: docker.io/library/alpine:3.20.1
      digest: {digest}
    - name: pause
      ref: registry.k8s.io/pause:3.9
      archive: images/pause-3.9.tar
    - name: salt-master
      tag: 3002.9-1
      ref: oci-archive:_build/images/salt-master.tar
      after: [build-salt-master]
    - name: metalk8s-ui
      tag: "{{{{ version }}}}"
      ref: daemon:metalk8s-ui:{{{{ version }}}}
files:
  - {{ src: salt/, dest: salt/ }}
  - {{ src: scripts/bootstrap.sh.in, dest: bootstrap.sh, template: true, mode: "0755" }}
  - {{ src: product.txt.j2, dest: product.txt, template: true }}
tasks:
  - name: build-salt-master
    run: ["buildah", "build", "-t", "oci-archive:_build/images/salt-master.tar", "images/salt-master"]
    inputs: ["images/salt-master/**"]
    outputs: ["_build/images/salt-master.tar"]
    env: {{ BUILDAH_FORMAT: docker, VERSION: "{{{{ version }}}}" }}
"#
    );
    let recipe = project.load(&yaml);
    let base = project.path();
    assert_eq!(recipe.vars["short_version"], "129.0");
    assert_eq!(recipe.epoch, Some(1_700_000_000));
    assert_eq!(recipe.mirrors["docker.io"], "127.0.0.1:5000/docker.io");
    assert_eq!(recipe.iso.volume_id, "MetalK8s 129.0");
    assert_eq!(recipe.iso.sha256sum, Some(base.join("_build/SHA256SUM")));
    assert!(recipe.iso.implant_md5);
    let config = recipe.images.registry_config.as_ref().unwrap();
    assert_eq!(config.name_prefix, "metalk8s-129.0.0-dev/");
    assert_eq!(config.server_root, "$metalk8s_129_0_0_dev_images");
    let images: Vec<(&str, &str, &str)> = recipe
        .images
        .list
        .iter()
        .map(|image| (image.name.as_str(), image.tag.as_str(), image.path.as_str()))
        .collect();
    assert_eq!(
        images,
        [
            ("alpine", "3.20.1", "images/alpine/3.20.1"),
            ("pause", "3.9", "images/pause/3.9"),
            ("salt-master", "3002.9-1", "images/salt-master/3002.9-1"),
            (
                "metalk8s-ui",
                "129.0.0-dev",
                "images/metalk8s-ui/129.0.0-dev"
            ),
        ]
    );
    assert_eq!(
        recipe.images.list[0].digest.as_ref().unwrap().to_string(),
        digest
    );
    assert_eq!(
        recipe.images.list[1].archive.as_ref().unwrap().as_str(),
        "images/pause-3.9.tar"
    );
    assert_eq!(
        recipe.images.list[2].source,
        ImageSource::OciArchive(base.join("_build/images/salt-master.tar"))
    );
    assert_eq!(recipe.images.list[2].after, ["build-salt-master"]);
    assert_eq!(
        recipe.images.list[3].source,
        ImageSource::Daemon("metalk8s-ui:129.0.0-dev".into())
    );
    let files: Vec<(PathBuf, &str, bool, Option<u32>)> = recipe
        .files
        .iter()
        .map(|file| {
            (
                file.src.clone(),
                file.dest.as_str(),
                file.template,
                file.mode,
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            (base.join("salt"), "salt", false, None),
            (
                base.join("scripts/bootstrap.sh.in"),
                "bootstrap.sh",
                true,
                Some(0o755)
            ),
            (base.join("product.txt.j2"), "product.txt", true, None),
        ]
    );
    let task = &recipe.tasks[0];
    assert_eq!(task.outputs, [base.join("_build/images/salt-master.tar")]);
    assert_eq!(task.env["VERSION"], "129.0.0-dev");
    assert_eq!(task.run[3], "oci-archive:_build/images/salt-master.tar");
}

#[test]
fn anchors_and_aliases_are_followed() {
    let project = Project::new().file("a.txt", "a");
    let recipe = project.load(&format!(
        "{HEAD}files:\n  - &a {{ src: a.txt, dest: a, mode: \"0600\" }}\n  - {{ src: a.txt, dest: b }}\n"
    ));
    assert_eq!(recipe.files[0].mode, Some(0o600));
}

#[test]
fn the_shipped_minimal_recipe_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/minimal.yaml");
    let recipe = super::load(&path, &BTreeMap::new()).unwrap();
    assert_eq!(recipe.base_dir, path.parent().unwrap());
}

#[test]
fn vars_keep_the_text_of_any_scalar() {
    let recipe = Project::new().load(&format!(
        "{HEAD}vars: {{ a: 0x1F, b: 1e3, c: .inf, d: ~, e: \"q\", f: 010, g: yes, h: 129.0 }}\n"
    ));
    let vars: Vec<(&str, &str)> = recipe
        .vars
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        vars,
        [
            ("a", "0x1F"),
            ("b", "1e3"),
            ("c", ".inf"),
            ("d", ""),
            ("e", "q"),
            ("f", "010"),
            ("g", "yes"),
            ("h", "129.0"),
        ]
    );
}

recipe_error! {
    name: several_documents,
    yaml: format!("{HEAD}---\nname: other\n"),
    line: 5,
    column: 1,
    field: "",
    message: "a recipe is one YAML document, and this file has another after `---`",
}

#[test]
fn load_str_reads_text_as_load_reads_the_file() {
    let project = Project::new().file("recipe.yaml", HEAD);
    let file = project.path().join("recipe.yaml");
    let from_file = super::load(&file, &BTreeMap::new()).unwrap();
    let from_text = super::load_str(HEAD, &file, &BTreeMap::new()).unwrap();
    assert_eq!(format!("{from_text:?}"), format!("{from_file:?}"));
    // The file named need not exist: it only places the recipe.
    let elsewhere = project.path().join("absent/recipe.yaml");
    let recipe = super::load_str(HEAD, &elsewhere, &BTreeMap::new()).unwrap();
    assert_eq!(recipe.base_dir, project.path().join("absent"));
}

// Found by fuzzing `tests/fuzz` (recipe_load) with hand-made hostile seeds: each of these used
// to take seconds, hang or exhaust memory before the recipe was refused.

/// An alias bomb: ten levels of ten aliases to the level below (10^9 nodes expanded).
fn alias_bomb() -> String {
    let mut yaml = format!("{HEAD}vars:\n  a0: &a0 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'\n");
    for level in 1..10 {
        let aliases = vec![format!("*a{}", level - 1); 10].join(", ");
        yaml.push_str(&format!("  a{level}: &a{level} [{aliases}]\n"));
    }
    yaml
}

recipe_error! {
    name: alias_bombs_are_refused_early,
    yaml: alias_bomb(),
    line: 9,
    column: 47,
    field: "",
    message: "invalid YAML: alias replay limit exceeded: total_replayed_events=10001 > 10000",
}

recipe_error! {
    name: deep_flow_nesting_is_refused,
    yaml: format!("{HEAD}vars: {}\n", "[".repeat(10_000)),
    line: 4,
    column: 39,
    field: "",
    message: "invalid YAML: recursion limit exceeded",
}

recipe_error! {
    name: deep_block_nesting_is_refused,
    yaml: format!(
        "{HEAD}vars:\n{}",
        (1..1000)
            .flat_map(|depth| ["  ".repeat(depth), "- \n".to_owned()])
            .collect::<String>()
    ),
    line: 36,
    column: 65,
    field: "",
    message: "invalid YAML: lists and mappings nest more than 32 levels deep; a recipe needs far less",
}

recipe_error! {
    name: runaway_template_loops_run_out_of_fuel,
    yaml: format!(
        "{HEAD}iso: {{ volume_id: \"{{% for a in range(99999) %}}{{% for b in range(99999) %}}{{% endfor %}}{{% endfor %}}\" }}\n"
    ),
    line: 4,
    column: 19,
    field: "iso.volume_id",
    message: format!(
        "cannot render `{{% for a in range(99999) %}}{{% for b in range(99999) %}}{{% endfor %}}{{% endfor %}}`: the template takes more than {} steps (one per instruction and per 64 bytes it makes); is a loop running away, or a string growing?",
        super::TEMPLATE_FUEL
    ),
}

recipe_error! {
    name: templates_must_be_regular_files,
    yaml: format!("{HEAD}files: [{{ src: /dev/zero, dest: z, template: true }}]\n"),
    line: 4,
    column: 16,
    field: "files[0].src",
    message: "`/dev/zero` is not a regular file; a template must be one",
}

recipe_error! {
    name: file_exclude_not_a_glob,
    yaml: format!("{HEAD}files:\n  - {{ src: recipe.yaml, dest: a/, exclude: [ok, \"b[\"] }}\n"),
    line: 5,
    column: 49,
    field: "files[0].exclude[1]",
    message: "`b[` is not a glob: error parsing glob 'b[': unclosed character class; missing ']'",
}

recipe_error! {
    name: file_exclude_absolute,
    yaml: format!("{HEAD}files:\n  - {{ src: recipe.yaml, dest: a/, exclude: [/etc] }}\n"),
    line: 5,
    column: 45,
    field: "files[0].exclude[0]",
    message: "`/etc` starts with `/`; exclude patterns are relative to the copied folder",
}

recipe_error! {
    name: file_format_unknown,
    yaml: format!("{HEAD}files:\n  - {{ src: recipe.yaml, dest: a.toml, format: toml }}\n"),
    line: 5,
    column: 47,
    field: "files[0].format",
    message: "`toml` is not a data format; the formats are `json` and `yaml`",
}

/// A replacement read from a file that is not there: the problem names the field and the
/// file (whose absolute path varies).
#[test]
fn replace_value_reads_a_missing_file() {
    let yaml = format!(
        "{HEAD}files:\n  - src: recipe.yaml\n    dest: a\n    replace: {{ \"@@X\": \"{{{{ file_text('nope.txt') }}}}\" }}\n"
    );
    let problems = Project::new().problems(&yaml);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let problem = &problems[0];
    assert!(
        problem.starts_with("recipe.yaml:7:23: files[0].replace.@@X: cannot render `{{ file_text('nope.txt') }}`: invalid operation: cannot read `"),
        "{problem}"
    );
    assert!(
        problem.ends_with("/nope.txt`: No such file or directory (os error 2)"),
        "{problem}"
    );
}

/// `data:` is any YAML, anchors included, so another section can reuse a node of it
/// (`*rpm_packages` in recipes/metalk8s.yaml), and string fields see it.
#[test]
fn data_is_structured_and_anchors_reuse_it() {
    let recipe = Project::new().load(&format!(
        "{HEAD}data:\n  pkgs: &pkgs {{ a: null, b: \"1.0\", c: [1, 2] }}\n  again: *pkgs\niso:\n  volume_id: \"v{{{{ data.again.b }}}}\"\n"
    ));
    assert_eq!(recipe.data["again"], recipe.data["pkgs"]);
    assert_eq!(recipe.data["pkgs"]["a"], serde_json::Value::Null);
    assert_eq!(recipe.data["pkgs"]["c"][1], 2);
    assert_eq!(recipe.iso.volume_id, "v1.0");
    assert_eq!(
        Project::new().load(HEAD).data,
        serde_json::Value::Null,
        "no data: null"
    );
}

// ---- container tasks and image builds ------------------------------------------------------

recipe_error! {
    name: container_keys_need_an_image,
    yaml: format!("{HEAD}tasks:\n  - {{ name: t, run: [ls], network: true }}\n"),
    line: 5,
    column: 5,
    field: "tasks[0].network",
    message: "`network` is only for a task that runs in a container (`image:`)",
}

recipe_error! {
    name: a_task_image_must_be_in_the_list,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: base, ref: 'r.example/base:1' }}\ntasks:\n  - {{ name: t, run: [ls], image: nope }}\n"),
    line: 8,
    column: 34,
    field: "tasks[0].image",
    message: "no image `nope` in `images.list` (images are `base:1`)",
}

recipe_error! {
    name: an_image_has_a_ref_or_a_build,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: app, tag: '1', ref: 'r.example/app:1', build: {{ context: . }} }}\n"),
    line: 6,
    column: 35,
    field: "images.list[0].ref",
    message: "an image has either `ref` (pulled or read) or `build` (built), not both",
}

recipe_error! {
    name: mounts_go_to_absolute_container_paths,
    yaml: format!("{HEAD}images:\n  list:\n    - {{ name: base, ref: 'r.example/base:1' }}\ntasks:\n  - {{ name: t, run: [ls], image: base, mounts: [{{ src: ., dest: in }}] }}\n"),
    line: 8,
    column: 65,
    field: "tasks[0].mounts[0].dest",
    message: "`in` is not an absolute path in the container (no `..`)",
}

#[test]
fn a_build_and_a_container_task_load() {
    let project = Project::new().file("app/Containerfile", "FROM scratch\n");
    let recipe = project.load(&format!(
        "{HEAD}images:\n  list:\n    - {{ name: base, ref: 'r.example/base:1', ship: false }}\n    \
         - {{ name: app, tag: '1', build: {{ context: app, args: {{ A: '{{{{ version }}}}' }}, network: true }} }}\n\
         tasks:\n  - name: t\n    image: app:1\n    run: [sh]\n    outputs: [out/x]\n    \
         mounts: [{{ src: out, dest: /out }}]\n    workdir: /w\n    user: '1:1'\n"
    ));
    let [base, app] = &recipe.images.list[..] else {
        panic!("two images")
    };
    assert!(!base.ship && base.build.is_none());
    let build = app.build.as_ref().unwrap();
    assert_eq!(
        build.containerfile,
        project.path().join("app/Containerfile")
    );
    assert_eq!(build.args["A"], "1.0.0");
    assert!(build.network && app.ship);
    let container = recipe.tasks[0].container.as_ref().unwrap();
    assert_eq!(container.image, "app:1");
    assert_eq!(container.mounts[0].src, project.path().join("out"));
    assert_eq!(container.mounts[0].dest, "/out");
    assert_eq!(
        (
            container.workdir.as_deref(),
            container.user.as_deref(),
            container.network
        ),
        (Some("/w"), Some("1:1"), false)
    );
}

// ---- packages: seeds and built repositories ------------------------------------------------

/// The packages section that the rows below change one thing of.
const PACKAGES: &str = "packages:\n  releasever: 8\n  basearch: x86_64\n";

/// `seeds` as a mapping (versions.json's shape) through an anchor of `data:`: one node.
#[test]
fn seeds_are_a_list_or_a_mapping_of_versions() {
    let recipe = Project::new().load(&format!(
        "{HEAD}data:\n  pkgs: &pkgs {{ kubelet: 1.29.8, jq: null, salt-minion: \"3002.9\" }}\n{PACKAGES}  seeds: *pkgs\n  repos:\n    - {{ id: os, baseurl: 'https://r.example/os/', dest: pkgs }}\n"
    ));
    let packages = recipe.packages.unwrap();
    assert_eq!(
        packages.seeds,
        ["kubelet-1.29.8", "jq", "salt-minion-3002.9"]
    );
}

#[test]
fn a_built_repository_is_read_with_its_globs_under_the_recipe_folder() {
    let project = Project::new();
    let recipe = project.load(&format!(
        "{HEAD}{PACKAGES}  seeds: [tool]\n  repos:\n    - {{ id: own, from: ['_build/*/RPMS/*.rpm'], builds: [tool], dest: pkgs/own }}\n"
    ));
    let repo = &recipe.packages.unwrap().repos[0];
    assert!(repo.is_built());
    assert_eq!(repo.builds, ["tool"]);
    assert_eq!(
        repo.from,
        [format!("{}/_build/*/RPMS/*.rpm", project.path().display())]
    );
}

recipe_error! {
    name: a_built_repository_has_no_baseurl,
    yaml: format!("{HEAD}{PACKAGES}  seeds: [tool]\n  repos:\n    - {{ id: own, baseurl: 'https://r.example/', from: ['a/*.rpm'], dest: pkgs }}\n"),
    line: 9,
    column: 27,
    field: "packages.repos[0].baseurl",
    message: "a repository has `baseurl` (downloaded) or `from` (built), not both",
}

recipe_error! {
    name: a_built_repository_needs_a_dest,
    yaml: format!("{HEAD}{PACKAGES}  seeds: [tool]\n  repos:\n    - {{ id: own, from: ['a/*.rpm'] }}\n    - {{ id: os, baseurl: 'https://r.example/', dest: pkgs }}\n"),
    line: 9,
    column: 7,
    field: "packages.repos[0]",
    message: "a built repository (`from`) needs a `dest`",
}

recipe_error! {
    name: from_globs_stay_in_the_recipe_folder,
    yaml: format!("{HEAD}{PACKAGES}  seeds: [tool]\n  repos:\n    - {{ id: own, from: ['../x/*.rpm'], dest: pkgs }}\n"),
    line: 9,
    column: 25,
    field: "packages.repos[0].from[0]",
    message: "`../x/*.rpm` is not a glob relative to the recipe's folder",
}

recipe_error! {
    name: builds_is_for_a_built_repository,
    yaml: format!("{HEAD}{PACKAGES}  seeds: [tool]\n  repos:\n    - {{ id: os, baseurl: 'https://r.example/', builds: [tool], dest: pkgs }}\n"),
    line: 9,
    column: 56,
    field: "packages.repos[0].builds",
    message: "`builds` is for a built repository (`from`)",
}

recipe_error! {
    name: a_built_repository_has_no_keys,
    yaml: format!("{HEAD}{PACKAGES}  seeds: [tool]\n  repos:\n    - {{ id: own, from: ['a/*.rpm'], gpgkey: ['https://r.example/k'], dest: pkgs }}\n"),
    line: 9,
    column: 45,
    field: "packages.repos[0].gpgkey",
    message: "`gpgkey` is for a downloaded repository; a built one (`from`) is checked by its RPMs' header digests",
}
