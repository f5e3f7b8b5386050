//! `files:` features through the binary: every kind of template unescaped whatever its file
//! name, `format: json` against Python's own `json.dump`, `exclude:` globs, replacement
//! values and templates that read other files (and rerun when those files change).

use std::process::Command;

use crate::harness::Test;

const RECIPE: &str = r#"isobuild: 1
name: Demo
version: 1.0.0
vars: { text: "a\"b <c> & 'd' é" }
data:
  nested: { b: [1, null, "x"], a: {}, "é": "ü" }
files:
  - { src: t.json.j2, dest: named.json, template: true }
  - { src: t.html.j2, dest: page.html, template: true }
  - { src: data.yaml.j2, dest: data.json, template: true, format: json }
  - { src: plain.yaml, dest: plain.json, format: json }
  - { src: in/, dest: tree/, exclude: ["**/*.in", skip, "deep/*/x.txt"] }
  - src: tpl.txt.in
    dest: tpl.txt
    replace: { "@@TEXT": "{{ file_text('snippet.txt') }}", "@@V": "{{ file_json('pkg.json').version }}" }
  - { src: reads.j2, dest: reads.txt, template: true }
"#;

fn project() -> Test {
    Test::new()
        .recipe(RECIPE)
        .file("t.json.j2", "{\"text\": \"{{ vars.text }}\"}\n")
        .file("t.html.j2", "<p>{{ vars.text }}</p>\n")
        .file(
            "data.yaml.j2",
            "text: {{ vars.text | tojson }}\nnested: {{ data.nested | tojson }}\nversion: {{ version | tojson }}\n",
        )
        .file("plain.yaml", "z: [true, false, 1.5]\ny:\n  - {k: \"tab\\tquote\\\"\"}\nx: ~\n")
        .file("in/keep.txt", "keep\n")
        .file("in/a.sls.in", "source\n")
        .file("in/sub/b.sls.in", "source\n")
        .file("in/sub/b.sls", "rendered elsewhere\n")
        .file("in/skip/all.txt", "skipped\n")
        .file("in/deep/one/x.txt", "skipped\n")
        .file("in/deep/one/two/x.txt", "kept: `*` stays within one part\n")
        .file("tpl.txt.in", "text=@@TEXT|version=@@V\n")
        .file("snippet.txt", "line 1\nline 2\n")
        .file("pkg.json", r#"{"name": "ui", "version": "2.0.1"}"#)
        .file("bin.dat", "\u{1}\u{2}\u{3}")
        .file(
            "reads.j2",
            "{{ file_text('snippet.txt') | upper }}{{ file_base64('bin.dat') }}\n",
        )
}

fn layout(test: &Test) {
    test.run(["layout", "recipe.yaml", "out", "-q"]).success();
}

/// Python's `json.dump(json.load(f), sort_keys=True, indent=2)` of a file: the canonical
/// form `format: json` must already be in.
fn python_json_dump(path: &std::path::Path) -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import json,sys; json.dump(json.load(open(sys.argv[1])), sys.stdout, sort_keys=True, indent=2)",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn every_kind_of_template_renders_through_the_binary_and_nothing_is_escaped() {
    let test = project();
    layout(&test);
    let text = "a\"b <c> & 'd' é";
    assert_eq!(
        test.read("out/named.json"),
        format!("{{\"text\": \"{text}\"}}\n")
    );
    assert_eq!(test.read("out/page.html"), format!("<p>{text}</p>\n"));
    assert_eq!(
        test.read("out/tpl.txt"),
        "text=line 1\nline 2\n|version=2.0.1\n"
    );
    assert_eq!(test.read("out/reads.txt"), "LINE 1\nLINE 2\nAQID\n");

    let data = test.read("out/data.json");
    assert_eq!(data, python_json_dump(&test.path().join("out/data.json")));
    assert_eq!(
        data,
        "{\n  \"nested\": {\n    \"a\": {},\n    \"b\": [\n      1,\n      null,\n      \"x\"\n    ],\n    \"\\u00e9\": \"\\u00fc\"\n  },\n  \"text\": \"a\\\"b <c> & 'd' \\u00e9\",\n  \"version\": \"1.0.0\"\n}"
    );
    let plain = test.read("out/plain.json");
    assert_eq!(plain, python_json_dump(&test.path().join("out/plain.json")));
    assert!(
        plain.starts_with("{\n  \"x\": null,\n  \"y\": [\n"),
        "{plain}"
    );
}

#[test]
fn exclude_globs_leave_files_and_folders_out_of_a_copy() {
    let test = project();
    layout(&test);
    assert_eq!(
        crate::harness::relative_paths(&test.path().join("out/tree")),
        [
            "",
            "deep",
            "deep/one",
            "deep/one/two",
            "deep/one/two/x.txt",
            "keep.txt",
            "sub",
            "sub/b.sls",
        ]
    );
}

/// What a replacement or a template reads is part of its key: change the file, and the
/// next run writes the new text.
#[test]
fn a_file_read_by_a_template_or_a_replacement_reruns_it_when_it_changes() {
    let test = project();
    layout(&test);
    layout(&test);
    assert_eq!(test.read("out/reads.txt"), "LINE 1\nLINE 2\nAQID\n");
    test.write("snippet.txt", "changed\n");
    test.write("pkg.json", r#"{"version": "3.0.0"}"#);
    layout(&test);
    assert_eq!(test.read("out/reads.txt"), "CHANGED\nAQID\n");
    assert_eq!(test.read("out/tpl.txt"), "text=changed\n|version=3.0.0\n");
}

#[test]
fn format_json_over_text_that_is_not_data_fails_naming_the_file() {
    let test = project().file("plain.yaml", "a: [unclosed\n");
    test.run(["layout", "recipe.yaml", "out", "-q"])
        .failure(1)
        .stderr_contains("`format: json` needs YAML or JSON data, and `")
        .stderr_contains("plain.yaml` does not hold it");
    assert!(!test.path().join("out/plain.json").exists());
}

/// `format: yaml` against PyYAML itself: 400 random values (seeded, so always the same),
/// each written by isobuild from its JSON and by `yaml.SafeDumper` in
/// `metalk8s_oracle/pyyaml_cases.py`, must come out byte for byte the same.
#[test]
fn format_yaml_writes_what_pyyaml_writes() {
    const COUNT: usize = 400;
    let test = Test::new();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/metalk8s_oracle/pyyaml_cases.py");
    let python = if std::path::Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let output = Command::new(python)
        .arg(&script)
        .args(["13", &COUNT.to_string()])
        .arg(test.path())
        .output()
        .expect("python3 runs (apt-get install python3 python3-yaml)");
    assert!(output.status.success(), "{output:?}");
    let mut recipe = String::from("isobuild: 1\nname: Y\nversion: \"1\"\nfiles:\n");
    for i in 0..COUNT {
        recipe.push_str(&format!(
            "  - {{ src: in/{i}.json, dest: \"{i}.yaml\", format: yaml }}\n"
        ));
    }
    test.write("recipe.yaml", &recipe);
    layout(&test);
    let mut differing = Vec::new();
    for i in 0..COUNT {
        let ours = test.read(&format!("out/{i}.yaml"));
        let reference = test.read(&format!("ref/{i}.yaml"));
        if ours != reference {
            differing.push(format!(
                "case {i}: {}\n  PyYAML: {reference:?}\n  ours:   {ours:?}",
                test.read(&format!("in/{i}.json"))
            ));
        }
    }
    assert!(differing.is_empty(), "{}", differing.join("\n"));
}

/// `header:` goes before the data (an SLS's shebang line), and only with a `format`.
#[test]
fn a_header_comes_before_the_data() {
    let test = Test::new()
        .recipe(
            "isobuild: 1\nname: Y\nversion: \"1\"\nfiles:\n  - { src: d.yaml, dest: d.sls, format: yaml, header: \"#!jinja | yaml\\n\\n\" }\n",
        )
        .file("d.yaml", "{b: 1, a: [x]}\n");
    layout(&test);
    assert_eq!(test.read("out/d.sls"), "#!jinja | yaml\n\nb: 1\na:\n- x\n");
    let test = Test::new()
        .recipe(
            "isobuild: 1\nname: Y\nversion: \"1\"\nfiles:\n  - { src: d.yaml, dest: d.sls, header: \"#!\" }\n",
        )
        .file("d.yaml", "{}\n");
    test.run(["layout", "recipe.yaml", "out", "-q"])
        .failure(2)
        .stderr_contains("files[0].header: `header` goes with `format`");
}
