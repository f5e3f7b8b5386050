//! Templates: the minijinja environment every recipe template renders in, and its context.
//!
//! The context is the recipe's data (name, version, vars, epoch and the images with their
//! resolved digests when known). Rendering is strict: an undefined variable is an error, so a
//! typo in a template never silently ships an empty string in the ISO.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// What a template can see.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TemplateContext {
    pub name: String,
    pub version: String,
    pub vars: BTreeMap<String, String>,
    pub epoch: Option<i64>,
    pub images: Vec<ImageContext>,
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

/// The environment every template renders in: strict undefined values, trailing newline kept,
/// and the `underscore` filter (`129.0.0-dev` → `129_0_0_dev`, for nginx variable names).
pub fn template_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.add_filter("underscore", |value: String| value.replace(['.', '-'], "_"));
    env
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
}
