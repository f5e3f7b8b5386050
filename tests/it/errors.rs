//! Bad recipes: each one run through `isobuild graph`, which must exit with code 2 and print
//! exactly the expected `file:line:column: field: message` lines, every problem of the file
//! at once.

use crate::harness::Test;

/// The three lines every recipe here starts with; the case's own YAML starts on line 4.
const HEAD: &str = "isobuild: 1\nname: Demo\nversion: 1.0.0\n";

/// Run `isobuild graph recipe.yaml ARGS` on `recipe` (with `files` beside it) and expect
/// exit code 2 and `problems`, one `error: ` line each, as the whole of stderr.
#[track_caller]
fn expect_problems(recipe: &str, files: &[(&str, &str)], args: &[&str], problems: &[&str]) {
    let mut test = Test::new().recipe(recipe);
    for (path, contents) in files {
        test = test.file(path, contents);
    }
    let mut command = vec!["graph", "recipe.yaml"];
    command.extend_from_slice(args);
    let run = test.run(command).failure(2);
    let expected: String = problems.iter().fold(String::new(), |mut text, problem| {
        text.push_str("error: ");
        text.push_str(problem);
        text.push('\n');
        text
    });
    pretty_assertions::assert_eq!(run.stderr, expected, "recipe:\n{recipe}");
}

macro_rules! error_case {
    (
        name: $name:ident,
        recipe: $recipe:expr,
        $(files: [$(($path:expr, $contents:expr)),* $(,)?],)?
        $(args: [$($arg:expr),* $(,)?],)?
        problems: [$($problem:expr),+ $(,)?] $(,)?
    ) => {
        #[test]
        fn $name() {
            let files: &[(&str, &str)] = &[$($(($path, $contents)),*)?];
            let args: &[&str] = &[$($($arg),*)?];
            expect_problems(&$recipe, files, args, &[$($problem),+]);
        }
    };
}

// ---- the document ---------------------------------------------------------------------------

error_case! {
    name: yaml_unclosed_bracket,
    recipe: "isobuild: 1\nname: [Demo\n",
    problems: ["recipe.yaml:2:7: invalid YAML: unclosed bracket '['"],
}

error_case! {
    name: yaml_bad_indentation,
    recipe: "isobuild: 1\n  name: Demo\n",
    problems: ["recipe.yaml:2:7: invalid YAML: mapping values are not allowed in this context"],
}

error_case! {
    name: yaml_unknown_anchor,
    recipe: format!("{HEAD}vars: *defaults\n"),
    problems: ["recipe.yaml:4:7: invalid YAML: alias references unknown anchor"],
}

error_case! {
    name: document_is_a_list,
    recipe: "- isobuild: 1\n",
    problems: ["recipe.yaml:1:1: a recipe is a mapping of fields (`isobuild`, `name`, …), found a list"],
}

error_case! {
    name: document_is_a_string,
    recipe: "just text\n",
    problems: ["recipe.yaml:1:1: a recipe is a mapping of fields (`isobuild`, `name`, …), found the string `just text`"],
}

error_case! {
    name: document_is_empty,
    recipe: "# nothing yet\n",
    problems: ["recipe.yaml:1:1: the recipe is empty; it needs at least `isobuild: 1`, `name` and `version`"],
}

error_case! {
    name: schema_version_2,
    recipe: "isobuild: 2\nname: Demo\nversion: 1.0.0\nfuture: true\n",
    problems: ["recipe.yaml:1:11: isobuild: unsupported schema version 2; this isobuild reads version 1"],
}

error_case! {
    name: schema_version_quoted,
    recipe: "isobuild: \"1\"\nname: Demo\nversion: 1.0.0\n",
    problems: ["recipe.yaml:1:11: isobuild: expected an integer, found the string `1`"],
}

error_case! {
    name: missing_required_fields,
    recipe: "isobuild: 1\n",
    problems: [
        "recipe.yaml:1:1: missing required field `name`",
        "recipe.yaml:1:1: missing required field `version`",
    ],
}

error_case! {
    name: unknown_top_level_field,
    recipe: format!("{HEAD}image:\n  list: []\n"),
    problems: ["recipe.yaml:4:1: image: unknown field `image`; did you mean `images`? (expected one of `isobuild`, `name`, `version`, `vars`, `data`, `epoch`, `iso`, `images`, `mirrors`, `files`, `tasks`, `packages`)"],
}

error_case! {
    name: duplicate_top_level_key,
    recipe: format!("{HEAD}version: 2.0.0\n"),
    problems: ["recipe.yaml:4:1: version: duplicate key `version` (first at line 3)"],
}

error_case! {
    name: name_with_a_slash,
    recipe: "isobuild: 1\nname: a/b\nversion: 1.0.0\n",
    problems: ["recipe.yaml:2:7: name: `a/b` names the ISO file, so it cannot contain `/`"],
}

error_case! {
    name: version_empty,
    recipe: "isobuild: 1\nname: Demo\nversion: \"\"\n",
    problems: ["recipe.yaml:3:10: version: `version` must not be empty"],
}

// ---- vars and epoch -------------------------------------------------------------------------

error_case! {
    name: var_value_is_a_mapping,
    recipe: format!("{HEAD}vars:\n  short: 1.0\n  nested:\n    a: b\n"),
    problems: ["recipe.yaml:7:5: vars.nested: expected a single value, found a mapping"],
}

error_case! {
    name: set_names_an_undeclared_var,
    recipe: format!("{HEAD}vars:\n  short: 1.0\n  flag: yes\n"),
    args: ["--set", "shrot=2.0"],
    problems: ["recipe.yaml:5:3: vars: `--set shrot=2.0` names no variable of this recipe (declared: `flag`, `short`)"],
}

error_case! {
    name: set_without_vars,
    recipe: HEAD,
    args: ["--set", "short=2.0"],
    problems: ["recipe.yaml:1:1: vars: `--set short=2.0` names no variable of this recipe (the recipe declares no vars)"],
}

error_case! {
    name: epoch_negative,
    recipe: format!("{HEAD}epoch: -1700000000\n"),
    problems: ["recipe.yaml:4:8: epoch: `-1700000000` is negative; `epoch` is seconds since 1970-01-01 UTC"],
}

error_case! {
    name: epoch_fractional,
    recipe: format!("{HEAD}epoch: 1700000000.5\n"),
    problems: ["recipe.yaml:4:8: epoch: expected an integer, found the number `1700000000.5`"],
}

error_case! {
    name: epoch_a_date,
    recipe: format!("{HEAD}epoch: 2024-01-01\n"),
    problems: ["recipe.yaml:4:8: epoch: expected an integer, found the string `2024-01-01`"],
}

// ---- iso ------------------------------------------------------------------------------------

error_case! {
    name: iso_not_a_mapping,
    recipe: format!("{HEAD}iso: [out.iso]\n"),
    problems: ["recipe.yaml:4:6: iso: expected a mapping, found a list"],
}

error_case! {
    name: iso_unknown_field,
    recipe: format!("{HEAD}iso:\n  volid: DEMO\n"),
    problems: ["recipe.yaml:5:3: iso.volid: unknown field `volid`; expected one of `output`, `root`, `volume_id`, `implant_md5`, `sha256sum`, `sbom`"],
}

error_case! {
    name: iso_volume_id_undefined_variable,
    recipe: format!("{HEAD}iso:\n  volume_id: \"Demo {{{{ vars.release }}}}\"\n"),
    problems: ["recipe.yaml:5:14: iso.volume_id: cannot render `Demo {{ vars.release }}`: undefined value: `vars.release` is undefined"],
}

error_case! {
    name: iso_volume_id_template_syntax,
    recipe: format!("{HEAD}iso:\n  volume_id: \"Demo {{{{ version \"\n"),
    problems: ["recipe.yaml:5:14: iso.volume_id: cannot render `Demo {{ version `: syntax error: unexpected end of input, expected end of variable block"],
}

error_case! {
    name: iso_volume_id_too_long,
    recipe: format!("{HEAD}iso:\n  volume_id: A volume id that is far, too long\n"),
    problems: ["recipe.yaml:5:14: iso.volume_id: volume id `A volume id that is far, too long` is 33 characters long; an ISO volume id has at most 32"],
}

error_case! {
    name: iso_implant_md5_yes,
    recipe: format!("{HEAD}iso:\n  implant_md5: yes\n"),
    problems: ["recipe.yaml:5:16: iso.implant_md5: expected `true` or `false`, found the string `yes`"],
}

error_case! {
    name: iso_output_inside_root,
    recipe: format!("{HEAD}iso:\n  output: _build/root/demo.iso\n"),
    problems: ["recipe.yaml:5:11: iso.output: the ISO `_build/root/demo.iso` would be written inside its own tree `iso.root`"],
}

error_case! {
    name: iso_volume_id_includes_a_file,
    recipe: format!("{HEAD}iso:\n  volume_id: \"{{% include '/etc/passwd' %}}\"\n"),
    problems: ["recipe.yaml:5:14: iso.volume_id: cannot render `{% include '/etc/passwd' %}`: template not found: tried to include non-existing template '/etc/passwd'"],
}

error_case! {
    name: iso_root_is_the_recipe_folder,
    recipe: format!("{HEAD}iso:\n  root: .\n  output: _out/demo.iso\n"),
    problems: ["recipe.yaml:5:9: iso.root: the tree `.` would hold the recipe itself; every build deletes what the recipe does not write in `iso.root`, so it must be a folder of its own (like `_build/root`)"],
}

error_case! {
    name: iso_root_is_the_filesystem_root,
    recipe: format!("{HEAD}iso:\n  root: /\n  output: _out/demo.iso\n"),
    problems: ["recipe.yaml:5:9: iso.root: the tree `/` would hold the recipe itself; every build deletes what the recipe does not write in `iso.root`, so it must be a folder of its own (like `_build/root`)"],
}

// ---- images ---------------------------------------------------------------------------------

error_case! {
    name: images_platform_unknown_arch,
    recipe: format!("{HEAD}images:\n  platform: linux/sparc64\n"),
    problems: ["recipe.yaml:5:13: images.platform: unknown architecture `sparc64` (expected one of amd64, arm64, arm, 386, ppc64le, s390x, riscv64, mips64le)"],
}

error_case! {
    name: images_format_unknown,
    recipe: format!("{HEAD}images:\n  format: docker\n"),
    problems: ["recipe.yaml:5:11: images.format: unknown image format `docker`; expected `v2s2` or `oci`"],
}

error_case! {
    name: images_path_escapes_the_tree,
    recipe: format!("{HEAD}images:\n  path: \"../{{{{ name }}}}/{{{{ tag }}}}\"\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n"),
    problems: ["recipe.yaml:5:9: images.path: for images.list[0]: `../pause/3.9` escapes the ISO tree with `..`"],
}

error_case! {
    name: registry_config_missing_server_root,
    recipe: format!("{HEAD}images:\n  registry_config:\n    path: registry.inc\n    common_path: registry-common.inc\n"),
    problems: ["recipe.yaml:6:5: images.registry_config: missing required field `server_root`"],
}

error_case! {
    name: registry_config_common_path_escapes,
    recipe: format!("{HEAD}images:\n  registry_config:\n    path: registry.inc\n    common_path: ../registry-common.inc\n    server_root: /srv\n"),
    problems: ["recipe.yaml:7:18: images.registry_config.common_path: `../registry-common.inc` escapes the ISO tree with `..`"],
}

error_case! {
    name: image_missing_name_and_ref,
    recipe: format!("{HEAD}images:\n  list:\n    - tag: \"1.0\"\n"),
    problems: [
        "recipe.yaml:6:7: images.list[0]: missing required field `name`",
        "recipe.yaml:6:7: images.list[0]: missing required field `ref`",
    ],
}

error_case! {
    name: image_name_uppercase,
    recipe: format!("{HEAD}images:\n  list:\n    - name: Pause\n      ref: registry.k8s.io/pause:3.9\n"),
    problems: ["recipe.yaml:6:13: images.list[0].name: `Pause` is not a valid image name: lowercase letters and digits, separated by `.`, `_`, `__` or `-` (one path component, no `/`)"],
}

error_case! {
    name: image_unknown_field,
    recipe: format!("{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n      digets: sha256:0\n"),
    problems: ["recipe.yaml:8:7: images.list[0].digets: unknown field `digets`; did you mean `digest`? (expected one of `name`, `ref`, `tag`, `digest`, `image_id`, `archive`, `after`, `build`, `ship`)"],
}

error_case! {
    name: image_reference_invalid,
    recipe: format!("{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/Pause:3.9\n"),
    problems: ["recipe.yaml:7:12: images.list[0].ref: `registry.k8s.io/Pause:3.9` is not a valid image reference: the repository must be lowercase letters, digits and `._-` separated by `/`"],
}

error_case! {
    name: image_reference_unknown_transport,
    recipe: format!("{HEAD}images:\n  list:\n    - name: pause\n      ref: ftp://example.com/pause:3.9\n"),
    problems: ["recipe.yaml:7:12: images.list[0].ref: `ftp://example.com/pause:3.9` is not a valid image reference: unknown transport `ftp`"],
}

error_case! {
    name: image_oci_archive_needs_a_tag,
    recipe: format!("{HEAD}images:\n  list:\n    - name: salt-master\n      ref: oci-archive:_build/salt-master.tar\n"),
    problems: ["recipe.yaml:6:7: images.list[0]: missing required field `tag`: `oci-archive:_build/salt-master.tar` implies no tag"],
}

error_case! {
    name: image_tag_invalid,
    recipe: format!("{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n      tag: -dev\n"),
    problems: ["recipe.yaml:8:12: images.list[0].tag: `-dev` is not a valid tag: up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"],
}

error_case! {
    name: image_digest_malformed,
    recipe: format!("{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n      digest: sha256:E3B0\n"),
    problems: ["recipe.yaml:8:15: images.list[0].digest: `sha256:E3B0` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)"],
}

error_case! {
    name: image_digest_differs_from_ref,
    recipe: format!(
        "{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9@sha256:{a}\n      digest: sha256:{b}\n",
        a = "a".repeat(64),
        b = "b".repeat(64),
    ),
    problems: [&*format!(
        "recipe.yaml:8:15: images.list[0].digest: `sha256:{b}` differs from the digest in `ref` (`sha256:{a}`)",
        a = "a".repeat(64),
        b = "b".repeat(64),
    )],
}

// `image_id` is the config digest (`docker images`' IMAGE ID) in full, with its algorithm:
// not the bare hex MetalK8s wrote for fluent-bit, nor the 12-character short ID.
error_case! {
    name: image_id_without_algorithm,
    recipe: format!(
        "{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n      image_id: {id}\n",
        id = "e".repeat(64),
    ),
    problems: [&*format!(
        "recipe.yaml:8:17: images.list[0].image_id: `{id}` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)",
        id = "e".repeat(64),
    )],
}

error_case! {
    name: image_id_short_and_uppercase,
    recipe: format!("{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n      image_id: sha256:E6F1\n"),
    problems: ["recipe.yaml:8:17: images.list[0].image_id: `sha256:E6F1` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)"],
}

error_case! {
    name: image_id_short_and_digest_bad,
    recipe: format!("{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n      digest: md5:0\n      image_id: e6f181688397\n"),
    problems: [
        "recipe.yaml:8:15: images.list[0].digest: `md5:0` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)",
        "recipe.yaml:9:17: images.list[0].image_id: `e6f181688397` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)",
    ],
}

error_case! {
    name: image_listed_twice,
    recipe: format!("{HEAD}images:\n  list:\n    - {{ name: pause, ref: registry.k8s.io/pause:3.9 }}\n    - {{ name: pause, ref: 127.0.0.1:5000/pause:3.9 }}\n"),
    problems: ["recipe.yaml:7:7: images.list[1]: image `pause:3.9` is already listed at images.list[0]"],
}

error_case! {
    name: image_archive_absolute,
    recipe: format!("{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n      archive: /tmp/pause.tar\n"),
    problems: ["recipe.yaml:8:16: images.list[0].archive: `/tmp/pause.tar` is absolute; paths in the ISO tree are relative to its root"],
}

error_case! {
    name: image_archive_escapes_with_dotdot,
    recipe: format!("{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n      archive: ../pause.tar\n"),
    problems: ["recipe.yaml:8:16: images.list[0].archive: `../pause.tar` escapes the ISO tree with `..`"],
}

error_case! {
    name: images_path_escapes_through_a_template,
    recipe: format!("{HEAD}images:\n  path: \"../{{{{ name }}}}/{{{{ tag }}}}\"\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n"),
    problems: ["recipe.yaml:5:9: images.path: for images.list[0]: `../pause/3.9` escapes the ISO tree with `..`"],
}

error_case! {
    name: image_after_unknown_task,
    recipe: format!("{HEAD}images:\n  list:\n    - name: pause\n      ref: registry.k8s.io/pause:3.9\n      after: [build-pause]\n"),
    problems: ["recipe.yaml:8:15: images.list[0].after[0]: unknown task `build-pause` (this recipe has no tasks)"],
}

// ---- files ----------------------------------------------------------------------------------

error_case! {
    name: files_not_a_list,
    recipe: format!("{HEAD}files:\n  src: a.txt\n  dest: a.txt\n"),
    problems: ["recipe.yaml:5:3: files: expected a list, found a mapping"],
}

error_case! {
    name: file_missing_dest,
    recipe: format!("{HEAD}files:\n  - src: a.txt\n"),
    files: [("a.txt", "a\n")],
    problems: ["recipe.yaml:5:5: files[0]: missing required field `dest`"],
}

error_case! {
    name: file_src_does_not_exist,
    recipe: format!("{HEAD}files:\n  - src: scripts/bootstrap.sh\n    dest: bootstrap.sh\n"),
    problems: ["recipe.yaml:5:10: files[0].src: `scripts/bootstrap.sh` does not exist; if a task makes it, list it in the task's `outputs` or add `after:`"],
}

error_case! {
    name: file_dest_escapes_with_dotdot,
    recipe: format!("{HEAD}files:\n  - src: a.txt\n    dest: docs/../../a.txt\n"),
    files: [("a.txt", "a\n")],
    problems: ["recipe.yaml:6:11: files[0].dest: `docs/../../a.txt` escapes the ISO tree with `..`"],
}

error_case! {
    name: file_dest_absolute,
    recipe: format!("{HEAD}files:\n  - src: a.txt\n    dest: /etc/a.txt\n"),
    files: [("a.txt", "a\n")],
    problems: ["recipe.yaml:6:11: files[0].dest: `/etc/a.txt` is absolute; paths in the ISO tree are relative to its root"],
}

error_case! {
    name: file_dest_twice,
    recipe: format!("{HEAD}files:\n  - {{ src: a.txt, dest: docs/a.txt }}\n  - {{ src: b.txt, dest: docs//a.txt }}\n"),
    files: [("a.txt", "a\n"), ("b.txt", "b\n")],
    problems: ["recipe.yaml:6:25: files[1].dest: `docs/a.txt` is already the dest of files[0]"],
}

error_case! {
    name: file_dest_escapes_through_a_variable,
    recipe: format!("{HEAD}vars: {{ up: \"..\" }}\nfiles:\n  - {{ src: a.txt, dest: \"{{{{ vars.up }}}}/a.txt\" }}\n"),
    files: [("a.txt", "a\n")],
    problems: ["recipe.yaml:6:25: files[0].dest: `../a.txt` escapes the ISO tree with `..`"],
}

error_case! {
    name: file_dest_escapes_through_set,
    recipe: format!("{HEAD}vars: {{ d: docs }}\nfiles:\n  - {{ src: a.txt, dest: \"{{{{ vars.d }}}}/a.txt\" }}\n"),
    files: [("a.txt", "a\n")],
    args: ["--set", "d=../../etc"],
    problems: ["recipe.yaml:6:25: files[0].dest: `../../etc/a.txt` escapes the ISO tree with `..`"],
}

error_case! {
    name: file_src_inside_the_tree,
    recipe: format!("{HEAD}files:\n  - {{ src: _build/root/a.txt, dest: a.txt }}\n"),
    files: [("_build/root/a.txt", "a\n")],
    problems: ["recipe.yaml:5:12: files[0].src: `_build/root/a.txt` is inside the ISO tree `_build/root`, which every build empties of what the recipe does not write; keep sources out of `iso.root`"],
}

error_case! {
    name: file_mode_unquoted,
    recipe: format!("{HEAD}files:\n  - src: run.sh\n    dest: run.sh\n    mode: 0755\n"),
    files: [("run.sh", "#!/bin/sh\n")],
    problems: ["recipe.yaml:7:11: files[0].mode: `0755` is not a string; quote the octal mode, as in `mode: \"0755\"`"],
}

error_case! {
    name: file_mode_not_octal,
    recipe: format!("{HEAD}files:\n  - src: run.sh\n    dest: run.sh\n    mode: rwxr-xr-x\n"),
    files: [("run.sh", "#!/bin/sh\n")],
    problems: ["recipe.yaml:7:11: files[0].mode: `rwxr-xr-x` is not an octal mode such as \"0644\" or \"0755\""],
}

error_case! {
    name: file_mode_too_large,
    recipe: format!("{HEAD}files:\n  - src: run.sh\n    dest: run.sh\n    mode: \"10755\"\n"),
    files: [("run.sh", "#!/bin/sh\n")],
    problems: ["recipe.yaml:7:11: files[0].mode: mode `10755` is above `7777`"],
}

error_case! {
    name: file_template_syntax_error,
    recipe: format!("{HEAD}files:\n  - src: templates/product.txt.j2\n    dest: product.txt\n    template: true\n"),
    files: [("templates/product.txt.j2", "NAME={{ name }}\nVERSION={{ version }\n")],
    problems: ["templates/product.txt.j2:2:20: files[0].src: syntax error: unexpected `}`, expected end of variable block"],
}

error_case! {
    name: file_template_is_a_folder,
    recipe: format!("{HEAD}files:\n  - src: templates\n    dest: etc\n    template: true\n"),
    files: [("templates/motd", "hi\n")],
    problems: ["recipe.yaml:5:10: files[0].src: `templates` is a folder; a template must be a file"],
}

error_case! {
    name: file_after_unknown_task,
    recipe: format!("{HEAD}files:\n  - src: _build/out.txt\n    dest: out.txt\n    after: [make-out]\ntasks:\n  - name: make\n    run: [make]\n"),
    problems: ["recipe.yaml:7:13: files[0].after[0]: unknown task `make-out` (tasks are `make`)"],
}

// ---- tasks ----------------------------------------------------------------------------------

error_case! {
    name: task_missing_run,
    recipe: format!("{HEAD}tasks:\n  - name: build\n"),
    problems: ["recipe.yaml:5:5: tasks[0]: missing required field `run`"],
}

error_case! {
    name: task_empty_run,
    recipe: format!("{HEAD}tasks:\n  - name: build\n    run: []\n"),
    problems: ["recipe.yaml:6:10: tasks[0].run: `run` is empty; give the command and its arguments"],
}

error_case! {
    name: task_name_with_a_space,
    recipe: format!("{HEAD}tasks:\n  - name: build salt\n    run: [make]\n"),
    problems: ["recipe.yaml:5:11: tasks[0].name: `build salt` is not a valid task name: letters, digits, `.`, `_` and `-`, starting with a letter or digit"],
}

error_case! {
    name: task_defined_twice,
    recipe: format!("{HEAD}tasks:\n  - {{ name: build, run: [make] }}\n  - {{ name: build, run: [make, all] }}\n"),
    problems: ["recipe.yaml:6:13: tasks[1].name: task `build` is already defined at tasks[0]"],
}

error_case! {
    name: task_cycle,
    recipe: format!("{HEAD}tasks:\n  - {{ name: a, run: [make, a], after: [b] }}\n  - {{ name: b, run: [make, b], after: [a] }}\n"),
    problems: ["recipe.yaml:5:40: tasks[0].after[0]: dependency cycle: a -> b -> a"],
}

error_case! {
    name: task_after_itself,
    recipe: format!("{HEAD}tasks:\n  - name: a\n    run: [make]\n    after: [a]\n"),
    problems: ["recipe.yaml:7:13: tasks[0].after[0]: dependency cycle: a -> a"],
}

error_case! {
    name: task_bad_input_glob,
    recipe: format!("{HEAD}tasks:\n  - name: a\n    run: [make]\n    inputs: [\"src/**/[ch\"]\n"),
    problems: ["recipe.yaml:7:14: tasks[0].inputs[0]: `src/**/[ch` is not a valid glob: unclosed character class; missing ']'"],
}

error_case! {
    name: task_env_bad_name,
    recipe: format!("{HEAD}tasks:\n  - name: a\n    run: [make]\n    env:\n      \"A=B\": c\n"),
    problems: ["recipe.yaml:8:7: tasks[0].env.A=B: `A=B` is not an environment variable name"],
}

error_case! {
    name: task_run_undefined_variable,
    recipe: format!("{HEAD}tasks:\n  - name: a\n    run: [make, \"VERSION={{{{ vars.version }}}}\"]\n"),
    problems: ["recipe.yaml:6:17: tasks[0].run[1]: cannot render `VERSION={{ vars.version }}`: undefined value: `vars.version` is undefined"],
}

// ---- mirrors --------------------------------------------------------------------------------

error_case! {
    name: mirror_with_a_scheme,
    recipe: format!("{HEAD}mirrors:\n  docker.io: https://mirror.example.com\n"),
    problems: ["recipe.yaml:5:14: mirrors.docker.io: `https://mirror.example.com` is not a registry host with an optional path prefix (such as `127.0.0.1:5000/docker.io`)"],
}

// ---- many at once ---------------------------------------------------------------------------

error_case! {
    name: every_problem_of_every_section,
    recipe: "isobuild: 1
name: Demo
version: 1.0.0
epoch: -1
iso:
  volume_id: \"{{ nope }}\"
  colour: blue
images:
  format: oci-ish
  list:
    - name: pause
      ref: registry.k8s.io/pause:3.9
      digest: sha256:123
    - name: pause
      ref: registry.k8s.io/pause:3.9
files:
  - src: missing.txt
    dest: ../outside
    mode: 644
tasks:
  - name: a
    run: []
    after: [b]
  - name: b
    run: [make]
    after: [a]
",
    problems: [
        "recipe.yaml:4:8: epoch: `-1` is negative; `epoch` is seconds since 1970-01-01 UTC",
        "recipe.yaml:6:14: iso.volume_id: cannot render `{{ nope }}`: undefined value: `nope` is undefined",
        "recipe.yaml:7:3: iso.colour: unknown field `colour`; expected one of `output`, `root`, `volume_id`, `implant_md5`, `sha256sum`, `sbom`",
        "recipe.yaml:9:11: images.format: unknown image format `oci-ish`; expected `v2s2` or `oci`",
        "recipe.yaml:13:15: images.list[0].digest: `sha256:123` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)",
        "recipe.yaml:14:7: images.list[1]: image `pause:3.9` is already listed at images.list[0]",
        "recipe.yaml:17:10: files[0].src: `missing.txt` does not exist; if a task makes it, list it in the task's `outputs` or add `after:`",
        "recipe.yaml:18:11: files[0].dest: `../outside` escapes the ISO tree with `..`",
        "recipe.yaml:19:11: files[0].mode: `644` is not a string; quote the octal mode, as in `mode: \"0755\"`",
        "recipe.yaml:22:10: tasks[0].run: `run` is empty; give the command and its arguments",
        "recipe.yaml:23:13: tasks[0].after[0]: dependency cycle: a -> b -> a",
    ],
}

// ---- paths and valid recipes ----------------------------------------------------------------

#[test]
fn problems_name_the_recipe_relative_to_the_current_directory() {
    let test = Test::new().file("recipes/demo.yaml", &format!("{HEAD}imgs: []\n"));
    let run = test.run(["graph", "recipes/demo.yaml"]).failure(2);
    assert_eq!(
        run.stderr,
        "error: recipes/demo.yaml:4:1: imgs: unknown field `imgs`; did you mean `images`? (expected one of `isobuild`, `name`, `version`, `vars`, `data`, `epoch`, `iso`, `images`, `mirrors`, `files`, `tasks`, `packages`)\n"
    );
}

#[test]
fn missing_recipe_exits_with_2() {
    Test::new()
        .run(["graph", "nope.yaml"])
        .failure(2)
        .stderr_contains("cannot read recipe `")
        .stderr_contains("nope.yaml");
}

#[test]
fn a_valid_recipe_loads() {
    let recipe = "isobuild: 1
name: Demo
version: 1.0.0
vars: { short_version: 1.0 }
epoch: 1700000000
iso:
  volume_id: \"Demo {{ vars.short_version }}\"
files:
  - { src: motd.j2, dest: etc/motd, template: true, mode: \"0644\" }
  - { src: _build/tool, dest: bin/tool, mode: \"0755\" }
tasks:
  - name: tool
    run: [sh, -c, \"mkdir -p _build && echo tool > _build/tool\"]
    outputs: [_build/tool]
";
    let run = Test::new()
        .recipe(recipe)
        .file("motd.j2", "Welcome to {{ name }} {{ version }}\n")
        .run([
            "graph",
            "recipe.yaml",
            "--format",
            "json",
            "--set",
            "short_version=1.1",
        ])
        .success();
    assert!(run.stderr.is_empty(), "{run}");
    run.stdout_contains("\"task tool\"")
        .stdout_contains("\"template etc/motd\"")
        .stdout_contains("\"file bin/tool\"");
}

#[test]
fn the_shipped_minimal_recipe_loads() {
    let minimal = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/minimal.yaml");
    Test::new().run(["graph", minimal]).success();
}

// ---- hints for the common mistakes ----------------------------------------------------------

#[test]
fn a_path_variable_that_points_nowhere_is_said_once_with_set() {
    let recipe = format!(
        "{HEAD}vars:\n  src: ../checkout\nfiles:\n  - {{ src: \"{{{{ vars.src }}}}/a.txt\", dest: a.txt }}\n  - {{ src: \"{{{{ vars.src }}}}/b\", dest: b/ }}\n  - {{ src: here.txt, dest: here.txt }}\n"
    );
    let test = Test::new().recipe(&recipe).file("here.txt", "x\n");
    let run = test.run(["graph", "recipe.yaml"]).failure(2);
    let checkout = test.path().parent().unwrap().join("checkout");
    pretty_assertions::assert_eq!(
        run.stderr,
        format!(
            "error: recipe.yaml:5:8: vars.src: the variable `src` is `../checkout`: the folder `{}` does not exist (2 paths of the recipe are under it)\nhint: pass the folder: `--set src=DIR`\n",
            checkout.display()
        )
    );
    // Given with --set, it says so.
    let run = test
        .run(["graph", "recipe.yaml", "--set", "src=elsewhere"])
        .failure(2);
    pretty_assertions::assert_eq!(
        run.stderr,
        "error: recipe.yaml:5:8: vars.src: the variable `src` is `--set src=elsewhere`: the folder `elsewhere` does not exist (2 paths of the recipe are under it)\nhint: pass the folder: `--set src=DIR`\n"
    );
}

#[test]
fn metalk8s_without_its_checkout_is_one_error_naming_the_variable() {
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/metalk8s.yaml");
    let run = Test::new()
        .run([
            "build".as_ref(),
            recipe.as_os_str(),
            "--set".as_ref(),
            "metalk8s_src=no-checkout-here".as_ref(),
        ])
        .failure(2);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{run}");
    assert!(
        lines[0].ends_with(&format!(
            "vars.metalk8s_src: the variable `metalk8s_src` is `--set metalk8s_src=no-checkout-here`: the folder `{}` does not exist (37 paths of the recipe are under it)",
            recipe.parent().unwrap().join("no-checkout-here").display()
        )),
        "{run}"
    );
    assert_eq!(lines[1], "hint: pass the folder: `--set metalk8s_src=DIR`");
}

#[test]
fn offline_names_the_cache_it_searched_and_how_to_fill_it() {
    let test = Test::new().recipe(&format!(
        "{HEAD}images:\n  list:\n    - {{ name: app, ref: \"registry.invalid/app:1.0\" }}\n"
    ));
    let cache = test.cache_dir();
    let run = test
        .run(["build", "recipe.yaml", "--offline", "--progress", "none"])
        .failure(1);
    let recipe = test.path().join("recipe.yaml");
    pretty_assertions::assert_eq!(
        run.stderr,
        format!(
            "error: 1 of 1 images cannot be used:\n  image `app:1.0`: `registry.invalid/app:1.0` is not in the cache, and `--offline` forbids asking registry `registry.invalid`\nhint: `--offline` looked in the cache `{cache}`; fill it with network access first: `isobuild fetch {recipe} --cache-dir {cache}`\n",
            cache = cache.display(),
            recipe = recipe.display()
        )
    );
}

#[test]
fn a_missing_program_is_found_before_anything_runs() {
    let empty = tempfile::tempdir().unwrap();
    let test = Test::new()
        .recipe(&format!(
            "{HEAD}files:\n  - {{ src: a.txt, dest: a.txt }}\n"
        ))
        .file("a.txt", "a\n")
        .env("PATH", &empty.path().display().to_string());
    let run = test.run(["build", "recipe.yaml"]).failure(1);
    pretty_assertions::assert_eq!(
        run.stderr,
        "error: `xorriso` is not installed; install it with `apt-get install xorriso` (Debian, Ubuntu) or `dnf install xorriso`\n"
    );
    // Nothing ran: no tree, no ISO.
    assert!(!test.path().join("_build").exists(), "{run}");
}
