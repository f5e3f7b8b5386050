//! Templates: the minijinja environment every recipe template renders in, and its context.
//!
//! The context is the recipe's data (name, version, vars, epoch and the images with their
//! resolved digests when known). Rendering is strict: an undefined variable is an error, so a
//! typo in a template never silently ships an empty string in the ISO.
//!
//! No output is ever escaped: minijinja would turn on HTML or JSON escaping for a template
//! whose *name* ends in `.html` or `.json`, and a recipe's `versions.json.j2` must come out as
//! written. A template that wants escaping says so (`| tojson`, `| escape`).
//!
//! Templates that render `files:` entries and the recipe's own strings can read files through
//! three functions (`file_text`, `file_base64`, `file_json`, see [`template_env_in`]), with
//! relative paths against the recipe's folder. What they read is part of what the build
//! fingerprints: a `files:` template's key includes its rendered text, and a recipe string is
//! rendered before the plan is made.
//!
//! Templates are bounded, so a mistake cannot hang or swamp the build: a template file must
//! be a regular file of at most [`TEMPLATE_LIMIT`] bytes ([`read_template`]), and one
//! rendering gets [`TEMPLATE_FUEL`], which pays for minijinja's instructions and the data
//! they make (nested loops over `range()` would otherwise run for hours, and repeated
//! `{% set a = a ~ a %}` would fill memory).

use std::collections::BTreeMap;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use serde::Serialize;

/// What a template can see.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TemplateContext {
    pub name: String,
    pub version: String,
    pub vars: BTreeMap<String, String>,
    pub epoch: Option<i64>,
    pub images: Vec<ImageContext>,
    /// The recipe's `data:` (null without one).
    pub data: serde_json::Value,
}

/// One image as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageContext {
    pub name: String,
    pub tag: String,
    #[serde(rename = "ref")]
    pub reference: String,
    /// The digest of the manifest written to the ISO, once known.
    pub digest: Option<String>,
}

/// Most bytes a template file may have. Templates are text someone edits; a file past this is
/// a mistake (an ISO or a binary named in `src:`) better refused than read whole into memory.
pub const TEMPLATE_LIMIT: u64 = 16 * 1024 * 1024;

/// The fuel of one rendering: one per minijinja instruction, plus one per 64 bytes of data
/// it makes (output, strings built by `~` or `*`, list items), so it bounds both time and
/// memory. MetalK8s' `versions.json` template, a loop over its 40 images, spends about 1,300
/// (some 30 an image). A million leaves room for tens of thousands of images and for the
/// largest template file ([`TEMPLATE_LIMIT`] is a quarter of its 64 MB), while stopping a
/// runaway loop in a fraction of a second (about two under the fuzz targets' sanitizers,
/// whose hang limit is ten).
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// The environment every template renders in: strict undefined values, trailing newline kept,
/// [`TEMPLATE_FUEL`] per rendering, and two filters:
/// - `underscore`: `129.0.0-dev` → `129_0_0_dev`, for nginx variable names;
/// - `timestamp`: seconds since the epoch → `2023-11-14T22:13:20Z` (UTC, the format of
///   MetalK8s' `BUILD_TIMESTAMP`), so dates in the ISO come from the recipe's `epoch` and
///   not from the clock. minijinja has no date filter without its `contrib` crate, and one
///   fixed format is all recipes need.
pub fn template_env() -> Environment<'static> {
    let mut env = Environment::new();
    // Never from the template's name (see the module docs).
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.add_filter("underscore", |value: String| value.replace(['.', '-'], "_"));
    env.add_filter("timestamp", timestamp);
    env
}

/// [`template_env`] plus three functions that read a file, a relative path resolving against
/// `base_dir` (the recipe's folder):
/// - `file_text(path)`: the file's text (UTF-8);
/// - `file_base64(path, wrap=0)`: its bytes in standard base64; with `wrap=N`, lines of `N`
///   characters each ending in a newline (`wrap=76` is Python's `base64.encodebytes`);
/// - `file_json(path)`: its JSON, as a value (`file_json("package.json").version`).
///
/// Each file must be a regular file of at most [`TEMPLATE_LIMIT`] bytes.
pub fn template_env_in(base_dir: &Path) -> Environment<'static> {
    let mut env = template_env();
    let base = base_dir.to_owned();
    env.add_function("file_text", move |path: String| {
        let bytes = read_bounded(&base, &path)?;
        String::from_utf8(bytes).map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("`file_text`: `{path}` is not UTF-8 text; `file_base64` reads bytes"),
            )
        })
    });
    let base = base_dir.to_owned();
    env.add_function("file_base64", move |path: String, kwargs: Kwargs| {
        use base64::Engine as _;
        let wrap: usize = kwargs.get::<Option<usize>>("wrap")?.unwrap_or(0);
        kwargs.assert_all_used()?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(read_bounded(&base, &path)?);
        if wrap == 0 {
            return Ok(encoded);
        }
        let mut out = String::with_capacity(encoded.len() + encoded.len() / wrap + 1);
        for line in encoded.as_bytes().chunks(wrap) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        Ok(out)
    });
    let base = base_dir.to_owned();
    env.add_function("file_json", move |path: String| {
        let bytes = read_bounded(&base, &path)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("`file_json`: `{path}` is not JSON: {error}"),
            )
        })?;
        Ok(Value::from(minijinja::value::Serde(value)))
    });
    env
}

/// The bytes of `path` (relative to `base`) for a file function, bounded like a template.
fn read_bounded(base: &Path, path: &str) -> Result<Vec<u8>, Error> {
    let full: PathBuf = base.join(path);
    let failed = |message: String| Error::new(ErrorKind::InvalidOperation, message);
    let cannot = |error: &io::Error| failed(format!("cannot read `{}`: {error}", full.display()));
    let metadata = std::fs::metadata(&full).map_err(|error| cannot(&error))?;
    if !metadata.is_file() {
        return Err(failed(format!(
            "`{}` is not a regular file",
            full.display()
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&full)
        .and_then(|file| file.take(TEMPLATE_LIMIT + 1).read_to_end(&mut bytes))
        .map_err(|error| cannot(&error))?;
    if bytes.len() as u64 > TEMPLATE_LIMIT {
        return Err(failed(format!(
            "`{}` is larger than {} MiB, too large for a template to read",
            full.display(),
            TEMPLATE_LIMIT / (1024 * 1024)
        )));
    }
    Ok(bytes)
}

/// The `timestamp` filter: `{{ epoch | timestamp }}`.
fn timestamp(value: &minijinja::Value) -> Result<String, minijinja::Error> {
    if value.is_none() || value.is_undefined() {
        // `epoch` is optional in a recipe; say what to add rather than a type error.
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "`timestamp` needs a number of seconds, and the value is none; does the recipe set `epoch`?",
        ));
    }
    let seconds = i64::try_from(value.clone()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("`timestamp` needs a whole number of seconds, not `{value}`"),
        )
    })?;
    let instant = jiff::Timestamp::from_second(seconds).map_err(|error| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("`{seconds}` seconds is not a date `timestamp` can write: {error}"),
        )
    })?;
    Ok(instant.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// What to say when `error` is minijinja running out of fuel, whose own wording ("engine ran
/// out of fuel") names its machinery rather than the user's mistake.
pub(crate) fn out_of_fuel(error: &minijinja::Error) -> Option<String> {
    (error.kind() == minijinja::ErrorKind::OutOfFuel).then(|| {
        format!(
            "the template takes more than {TEMPLATE_FUEL} steps (one per instruction and per 64 bytes it makes); is a loop running away, or a string growing?"
        )
    })
}

/// Read the template file at `path`: a regular file (not a FIFO or a device, which could
/// block or never end) of at most [`TEMPLATE_LIMIT`] bytes of UTF-8.
pub fn read_template(path: &Path) -> io::Result<String> {
    // Checked before opening: opening a FIFO blocks until something writes to it.
    let metadata = fs_err::metadata(path)?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "`{}` is not a regular file; a template must be one",
                path.display()
            ),
        ));
    }
    let mut text = String::new();
    fs_err::File::open(path)?
        .take(TEMPLATE_LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(|error| crate::fs::with_path(&error, "read", path))?;
    if text.len() as u64 > TEMPLATE_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "`{}` is larger than {} MiB, too large for a template",
                path.display(),
                TEMPLATE_LIMIT / (1024 * 1024)
            ),
        ));
    }
    Ok(text)
}

/// Render a one-line template from the recipe (`volume_id`, `path`, …).
pub fn render_str(template: &str, context: &TemplateContext) -> Result<String, minijinja::Error> {
    template_env().render_str(template, minijinja::value::Serde(context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscore_filter_and_strict_undefined() {
        let context = TemplateContext {
            version: "129.0.0-dev".into(),
            ..TemplateContext::default()
        };
        assert_eq!(
            render_str("$metalk8s_{{ version | underscore }}_images", &context).unwrap(),
            "$metalk8s_129_0_0_dev_images"
        );
        assert!(render_str("{{ nope }}", &context).is_err());
    }

    #[test]
    fn timestamp_filter_formats_the_epoch_in_utc() {
        let context = TemplateContext {
            epoch: Some(1_700_000_000),
            ..TemplateContext::default()
        };
        let render = |template: &str| render_str(template, &context);
        assert_eq!(
            render("{{ epoch | timestamp }}").unwrap(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            render("{{ 0 | timestamp }}").unwrap(),
            "1970-01-01T00:00:00Z"
        );
        // One second before a leap year's end: no off-by-one in the calendar.
        assert_eq!(
            render("{{ 1735689599 | timestamp }}").unwrap(),
            "2024-12-31T23:59:59Z"
        );
        let problem = |template: &str| render(template).unwrap_err().to_string();
        let without_epoch = render_str("{{ epoch | timestamp }}", &TemplateContext::default())
            .unwrap_err()
            .to_string();
        assert!(
            without_epoch.contains("does the recipe set `epoch`?"),
            "{without_epoch}"
        );
        assert!(problem("{{ 'now' | timestamp }}").contains("not `now`"));
        assert!(problem("{{ 1.5 | timestamp }}").contains("whole number"));
        assert!(problem("{{ 99999999999999 | timestamp }}").contains("not a date"));
    }

    #[test]
    fn a_template_named_json_is_not_escaped() {
        let env = template_env();
        let mut env = env;
        env.add_template("versions.json.j2", "{{ text }}").unwrap();
        env.add_template("page.html", "{{ text }}").unwrap();
        for name in ["versions.json.j2", "page.html"] {
            let out = env
                .get_template(name)
                .unwrap()
                .render(minijinja::context! { text => "\"a\" <b> & 'c'" })
                .unwrap();
            assert_eq!(out, "\"a\" <b> & 'c'", "{name}");
        }
    }

    #[test]
    fn file_functions_read_text_base64_and_json_relative_to_the_base() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("a.txt"), "héllo\n").unwrap();
        fs_err::write(dir.path().join("b.bin"), [0u8; 100]).unwrap();
        fs_err::write(dir.path().join("d.bin"), [0xffu8; 4]).unwrap();
        fs_err::write(dir.path().join("c.json"), r#"{"version": "1.2", "n": [1]}"#).unwrap();
        let env = template_env_in(dir.path());
        let render = |text: &str| env.render_str(text, ()).map_err(|e| e.to_string());
        assert_eq!(render("{{ file_text('a.txt') }}").unwrap(), "héllo\n");
        assert_eq!(render("{{ file_json('c.json').version }}").unwrap(), "1.2");
        let wrapped = render("{{ file_base64('b.bin', wrap=76) }}").unwrap();
        // Python: base64.encodebytes(bytes(100)).decode()
        let expected = format!("{}\n{}==\n", "A".repeat(76), "A".repeat(58));
        assert_eq!(wrapped, expected);
        assert_eq!(
            render("{{ file_base64('b.bin') }}").unwrap(),
            wrapped.replace('\n', "")
        );
        assert!(
            render("{{ file_text('d.bin') }}")
                .unwrap_err()
                .contains("not UTF-8")
        );
        assert!(
            render("{{ file_text('nope') }}")
                .unwrap_err()
                .contains("nope")
        );
        assert!(
            render("{{ file_text('.') }}")
                .unwrap_err()
                .contains("regular file")
        );
        assert!(
            render("{{ file_json('a.txt') }}")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(render("{{ file_base64('b.bin', width=2) }}").is_err());
        // Without a folder, templates read nothing.
        assert!(
            template_env()
                .render_str("{{ file_text('a.txt') }}", ())
                .is_err()
        );
    }

    #[test]
    fn template_files_are_regular_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.j2");
        fs_err::write(&small, "{{ name }}").unwrap();
        assert_eq!(read_template(&small).unwrap(), "{{ name }}");
        // A device never ends and a FIFO blocks: both used to be read until memory ran out.
        let device = read_template(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(device.kind(), io::ErrorKind::InvalidInput, "{device}");
        let folder = read_template(dir.path()).unwrap_err();
        assert_eq!(folder.kind(), io::ErrorKind::InvalidInput, "{folder}");
        // Sparse, so the test writes nothing.
        let large = dir.path().join("large.j2");
        fs_err::File::create(&large)
            .unwrap()
            .set_len(TEMPLATE_LIMIT + 1)
            .unwrap();
        let error = read_template(&large).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge, "{error}");
    }

    #[test]
    fn runaway_loops_and_huge_strings_run_out_of_fuel() {
        let error = render_str(
            "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}",
            &TemplateContext::default(),
        )
        .unwrap_err();
        assert_eq!(error.kind(), minijinja::ErrorKind::OutOfFuel);
        assert!(out_of_fuel(&error).is_some());
        // Doubling a string: few instructions, gigabytes of data.
        let doubling = format!(
            "{{% set a = 'x' * 100000 %}}{}{{{{ a | length }}}}",
            "{% set a = a ~ a %}".repeat(15)
        );
        let error = render_str(&doubling, &TemplateContext::default()).unwrap_err();
        assert_eq!(error.kind(), minijinja::ErrorKind::OutOfFuel);
        // A loop over as many images as a large recipe has is nowhere near the limit.
        assert!(
            render_str(
                "{% for i in range(2000) %}{{ i }} {{ name | underscore }}\n{% endfor %}",
                &TemplateContext::default(),
            )
            .is_ok()
        );
    }
}
