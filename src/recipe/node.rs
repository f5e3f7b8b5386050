//! [`Node`]: the YAML document as a tree of located values, read once with serde-saphyr.
//!
//! Serde stops at the first error, so the recipe is not deserialised straight into its typed
//! form: serde-saphyr first reads it into this generic tree (syntax errors are the only
//! failures at this stage), then [`super::de`] deserialises the typed raw recipe from the
//! tree, recording every problem and carrying on. Each node keeps its line and column, and
//! each plain scalar keeps its source text, so `129.0` can stay `129.0` where a string is
//! wanted instead of becoming the float `129`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Most nodes (mappings, lists and scalars) a recipe may have, aliases expanded.
pub(super) const MAX_NODES: usize = 50_000;
/// Most YAML events aliases may replay, all aliases together.
const MAX_REPLAYED_EVENTS: usize = 10_000;
/// Deepest nesting of mappings and lists; the schema needs five levels.
pub(super) const MAX_DEPTH: usize = 32;
/// Most bytes of scalar text in a recipe.
pub(super) const MAX_SCALAR_BYTES: usize = 16 * 1024 * 1024;

/// One YAML node and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    /// 1-based line and column of the node (the alias, for an aliased node).
    pub(super) line: usize,
    pub(super) column: usize,
    /// Byte range of the node's definition in the source, when known.
    span: Option<(usize, usize)>,
    /// The source text of a plain boolean or number, filled in by [`Node::read_text`].
    pub(super) text: Option<String>,
    pub(super) value: Value,
}

/// What a node holds, with YAML 1.2 core-schema types.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// How a problem names this kind of value (`expected a string, found a sequence`).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Int(_) => "an integer",
            Self::Float(_) => "a number",
            Self::String(_) => "a string",
            Self::Seq(_) => "a list",
            Self::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// Parse `source`; the error is serde-saphyr's, with its location.
    pub(super) fn parse(source: &str) -> Result<Self, serde_saphyr::Error> {
        let options = serde_saphyr::options! {
            // YAML 1.2: `yes`, `on` and `no` are strings, not booleans.
            strict_booleans: true,
            // Duplicate keys are reported by the recipe's own pass with the others, so
            // that one does not hide the rest of the file.
            duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
            // `.inf` and `.nan` are text where a string is wanted, like any other number.
            non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
            with_snippet: false,
            // serde-saphyr's default budget is sized for any YAML document; a recipe is
            // small (MetalK8s' has 677 nodes, 5 deep). Tighter caps keep a hostile or broken
            // file (an alias bomb) from costing seconds before it is refused.
            budget: serde_saphyr::budget! {
                max_nodes: MAX_NODES,
                max_events: 4 * MAX_NODES,
                max_aliases: MAX_NODES / 10,
                max_anchors: MAX_NODES / 10,
                max_depth: MAX_DEPTH,
                flow_nesting_limit: MAX_DEPTH,
                max_total_scalar_bytes: MAX_SCALAR_BYTES,
            },
            // Recipes rarely use aliases, and then for a few shared settings.
            alias_limits: serde_saphyr::alias_limits! {
                max_total_replayed_events: MAX_REPLAYED_EVENTS,
            },
        };
        let mut node: Self = serde_saphyr::from_str_with_options(source, options)?;
        node.read_text(source);
        Ok(node)
    }

    /// The source text of a scalar as the user wrote it, for values read as strings.
    pub(super) fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::String(text) => Some(text.clone()),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                Some(self.text.clone().unwrap_or_else(|| self.value_display()))
            }
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    fn value_display(&self) -> String {
        match &self.value {
            Value::Bool(value) => value.to_string(),
            Value::Int(value) => value.to_string(),
            Value::Float(value) => value.to_string(),
            Value::String(value) => value.clone(),
            Value::Null => "null".to_owned(),
            Value::Seq(_) | Value::Map(_) => String::new(),
        }
    }

    /// Fill in the source text of every plain boolean and number.
    fn read_text(&mut self, source: &str) {
        match &mut self.value {
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                self.text = self
                    .span
                    .and_then(|(start, len)| source.get(start..start + len))
                    .map(|text| text.trim().to_owned())
                    .filter(|text| !text.is_empty());
            }
            Value::Seq(items) => items.iter_mut().for_each(|item| item.read_text(source)),
            Value::Map(entries) => {
                for (key, value) in entries {
                    key.read_text(source);
                    value.read_text(source);
                }
            }
            Value::Null | Value::String(_) => {}
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        let span = spanned.defined.span();
        let span = span
            .byte_offset()
            .zip(span.byte_len())
            .and_then(|(start, len)| {
                Some((usize::try_from(start).ok()?, usize::try_from(len).ok()?))
            });
        Ok(Self {
            line: usize::try_from(spanned.referenced.line()).unwrap_or(0),
            column: usize::try_from(spanned.referenced.column()).unwrap_or(0),
            span,
            text: None,
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Int(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Int(value.into()))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Value, E> {
        Ok(Value::Int(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(Value::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Node, Node>()? {
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_keep_their_text_and_location() {
        let node = Node::parse("a: 129.0\nb: [1, yes, ~, \"0755\", 0755]\n").unwrap();
        let Value::Map(entries) = &node.value else {
            panic!("not a map: {node:?}")
        };
        let a = &entries[0].1;
        assert_eq!((a.line, a.column), (1, 4));
        assert_eq!(a.scalar_text().as_deref(), Some("129.0"));
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a list")
        };
        let texts: Vec<_> = items.iter().map(Node::scalar_text).collect();
        assert_eq!(
            texts,
            [Some("1"), Some("yes"), None, Some("0755"), Some("0755")].map(|t| t.map(String::from))
        );
        // YAML 1.2: `yes` is a string; unquoted `0755` is a number, quoted it is text.
        assert_eq!(items[1].value, Value::String("yes".into()));
        assert!(matches!(items[3].value, Value::String(_)));
        assert!(!matches!(items[4].value, Value::String(_)));
    }

    #[test]
    fn aliases_point_at_their_use() {
        let node = Node::parse("a: &x true\nb: *x\n").unwrap();
        let Value::Map(entries) = &node.value else {
            panic!("not a map")
        };
        let b = &entries[1].1;
        assert_eq!(
            (b.line, b.column, b.scalar_text()),
            (2, 4, Some("true".into()))
        );
    }
}
