//! A serde [`Deserializer`] over a [`Node`] tree that records every problem and carries on.
//!
//! Serde-derived code stops at the first error. Reading from an in-memory tree instead of a
//! token stream lets a failed value be skipped without losing track of the rest, so:
//!
//! - every error is recorded, with the line, column and field path of the node it is about,
//!   at the innermost place it happens (its [`DeError`] is then marked as recorded);
//! - a [`Located<T>`] field whose value is wrong is kept as `value: None` instead of failing
//!   the struct around it, so its siblings are still read and checked;
//! - unknown and duplicate keys are reported here, one problem each, and skipped, so the
//!   raw types' `deny_unknown_fields` never has to stop the struct (it stays as a guard for
//!   any other deserializer).
//!
//! The special types talk to this deserializer through `deserialize_newtype_struct` with
//! private names, as serde-saphyr's own `Spanned` does.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::{BoolDeserializer, StrDeserializer, StringDeserializer, UsizeDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};

use super::node::{Node, Value};

const LOCATED: &str = "$isobuild::Located";
const RECOVER: &str = "$isobuild::Recover";
const SCALAR_TEXT: &str = "$isobuild::ScalarText";

/// Where a value is: 1-based line and column, and its field path (`images.list[3].digest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct At {
    pub(super) line: usize,
    pub(super) column: usize,
    pub(super) field: String,
}

impl At {
    /// The path of `key` under this one.
    pub(super) fn child(&self, key: &str) -> Self {
        Self {
            field: join_field(&self.field, key),
            ..self.clone()
        }
    }
}

/// A problem found while reading: where, and what.
pub(super) type Found = (At, String);

/// A value read from the recipe and where it was. `value` is `None` when the value was
/// present but unusable; that problem has already been recorded.
#[derive(Debug, Clone)]
pub(super) struct Located<T> {
    pub(super) at: At,
    pub(super) value: Option<T>,
}

/// Any YAML scalar, as its source text (`129.0` stays `129.0`; null is the empty string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScalarText {
    pub(super) text: String,
    /// Whether YAML read it as a string (quoted, or plain text that is not a number,
    /// boolean or null).
    pub(super) is_string: bool,
}

/// A mapping with located keys, in document order.
#[derive(Debug, Clone)]
pub(super) struct Entries<V>(pub(super) Vec<(Located<String>, Located<V>)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

/// Read `T` from `node`, recording every problem in `found`.
///
/// Returns `None` when `T` as a whole could not be read (the reason is in `found`).
pub(super) fn from_node<'de, T: Deserialize<'de>>(
    node: &'de Node,
    field: &str,
    found: &'de RefCell<Vec<Found>>,
) -> Option<T> {
    let deserializer = NodeDeserializer {
        node,
        field: field.to_owned(),
        found,
    };
    T::deserialize(deserializer).ok()
}

/// The error serde-derived code sees. `recorded` is set once the problem is in the list, so
/// that callers further up only pass it along.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(super) struct DeError {
    message: String,
    recorded: bool,
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self {
            message: message.to_string(),
            recorded: false,
        }
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "expected {expected}, found {}",
            describe_unexpected(&unexpected)
        ))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "expected {expected}, found {}",
            describe_unexpected(&unexpected)
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(unknown_field_message(field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing field `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format_args!("duplicate field `{field}`"))
    }
}

fn describe_unexpected(unexpected: &Unexpected<'_>) -> String {
    match unexpected {
        Unexpected::Bool(value) => format!("the boolean `{value}`"),
        Unexpected::Unsigned(value) => format!("the integer `{value}`"),
        Unexpected::Signed(value) => format!("the integer `{value}`"),
        Unexpected::Float(value) => format!("the number `{value}`"),
        Unexpected::Str(value) => format!("the string `{value}`"),
        Unexpected::Unit | Unexpected::Option => "null".to_owned(),
        Unexpected::Seq => "a list".to_owned(),
        Unexpected::Map => "a mapping".to_owned(),
        other => other.to_string(),
    }
}

pub(super) fn unknown_field_message(field: &str, expected: &[&str]) -> String {
    let known = expected
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match did_you_mean(field, expected) {
        Some(close) => {
            format!("unknown field `{field}`; did you mean `{close}`? (expected one of {known})")
        }
        None => format!("unknown field `{field}`; expected one of {known}"),
    }
}

/// The expected name `field` is most likely a typo of, if one is close enough (Jaro-Winkler,
/// as cargo and clap suggest).
pub(super) fn did_you_mean<'a>(field: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|name| (strsim::jaro_winkler(field, name), *name))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// How a problem names a node's value: `the string `yes``, `a list`.
pub(super) fn describe(node: &Node) -> String {
    let text = || node.scalar_text().unwrap_or_default();
    match &node.value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => format!("the boolean `{}`", text()),
        Value::Int(_) => format!("the integer `{}`", text()),
        Value::Float(_) => format!("the number `{}`", text()),
        Value::String(value) => format!("the string `{value}`"),
        Value::Seq(_) | Value::Map(_) => node.value.kind().to_owned(),
    }
}

fn join_field(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

struct NodeDeserializer<'a> {
    node: &'a Node,
    field: String,
    found: &'a RefCell<Vec<Found>>,
}

impl<'a> NodeDeserializer<'a> {
    fn at(&self) -> At {
        At {
            line: self.node.line,
            column: self.node.column,
            field: self.field.clone(),
        }
    }

    fn child(&self, node: &'a Node, field: String) -> Self {
        Self {
            node,
            field,
            found: self.found,
        }
    }

    /// Record `error` at this node unless a deeper node already did.
    fn record(&self, mut error: DeError) -> DeError {
        if !error.recorded {
            self.found
                .borrow_mut()
                .push((self.at(), error.message.clone()));
            error.recorded = true;
        }
        error
    }

    fn finish<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|error| self.record(error))
    }

    fn wrong_type(&self, expected: &str) -> DeError {
        self.record(de::Error::custom(format_args!(
            "expected {expected}, found {}",
            describe(self.node)
        )))
    }

    /// The entries of a mapping, with later duplicates of a key reported and dropped.
    fn entries(&self, entries: &'a [(Node, Node)], known: Option<&[&str]>) -> MapDeserializer<'a> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut kept = Vec::new();
        for (key, value) in entries {
            let name = key.scalar_text().unwrap_or_else(|| describe(key));
            let field = join_field(&self.field, &name);
            let at = At {
                line: key.line,
                column: key.column,
                field: field.clone(),
            };
            if let Some(first) = seen.get(&name) {
                self.found.borrow_mut().push((
                    at,
                    format!("duplicate key `{name}` (first at line {first})"),
                ));
                continue;
            }
            seen.insert(name.clone(), key.line);
            if let Some(known) = known
                && !known.contains(&name.as_str())
            {
                self.found
                    .borrow_mut()
                    .push((at, unknown_field_message(&name, known)));
                continue;
            }
            kept.push((key, value, field));
        }
        MapDeserializer {
            entries: kept.into_iter(),
            value: None,
            found: self.found,
        }
    }

    fn visit_int<'de, V: Visitor<'de>>(value: i128, visitor: V) -> Result<V::Value, DeError> {
        if let Ok(value) = u64::try_from(value) {
            visitor.visit_u64(value)
        } else if let Ok(value) = i64::try_from(value) {
            visitor.visit_i64(value)
        } else {
            visitor.visit_i128(value)
        }
    }

    fn deserialize_integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Int(value) => {
                let result = Self::visit_int(value, visitor);
                self.finish(result)
            }
            _ => Err(self.wrong_type("an integer")),
        }
    }
}

impl<'de> Deserializer<'de> for NodeDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(value) => visitor.visit_bool(*value),
            Value::Int(value) => Self::visit_int(*value, visitor),
            Value::Float(value) => visitor.visit_f64(*value),
            Value::String(value) => visitor.visit_str(value),
            Value::Seq(items) => visitor.visit_seq(self.items(items)),
            Value::Map(entries) => visitor.visit_map(self.entries(entries, None)),
        };
        self.finish(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Bool(value) => {
                let result = visitor.visit_bool(value);
                self.finish(result)
            }
            _ => Err(self.wrong_type("`true` or `false`")),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    #[allow(clippy::cast_precision_loss)] // YAML integers used as floats: precision is moot
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.node.value {
            Value::Float(value) => visitor.visit_f64(value),
            Value::Int(value) => visitor.visit_f64(value as f64),
            _ => return Err(self.wrong_type("a number")),
        };
        self.finish(result)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    /// Strings accept numbers as written (`version: 1.0` is `1.0`), not booleans or null:
    /// `true` where a string is wanted is more likely a mistake than a name.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::String(value) => visitor.visit_str(value),
            Value::Int(_) | Value::Float(_) => {
                visitor.visit_string(self.node.scalar_text().unwrap_or_default())
            }
            _ => return Err(self.wrong_type("a string")),
        };
        self.finish(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    /// Null is the same as absent: `iso:` with nothing after it takes the defaults.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self.child(self.node, self.field.clone())),
        };
        self.finish(result)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => {
                let result = visitor.visit_unit();
                self.finish(result)
            }
            _ => Err(self.wrong_type("null")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match name {
            LOCATED => visitor.visit_seq(LocatedAccess {
                at: Some(self.at()),
                step: 0,
                value: Some(self.child(self.node, self.field.clone())),
            }),
            SCALAR_TEXT => {
                let text = match (&self.node.value, self.node.scalar_text()) {
                    (Value::Null, _) => String::new(),
                    (_, Some(text)) => text,
                    (_, None) => return Err(self.wrong_type("a single value")),
                };
                let is_string = matches!(self.node.value, Value::String(_));
                visitor.visit_seq(ScalarAccess {
                    is_string: Some(is_string),
                    text: Some(text),
                })
            }
            _ => visitor.visit_newtype_struct(self.child(self.node, self.field.clone())),
        };
        self.finish(result)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => {
                let result = visitor.visit_seq(self.items(items));
                self.finish(result)
            }
            _ => Err(self.wrong_type("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => {
                let result = visitor.visit_map(self.entries(entries, None));
                self.finish(result)
            }
            _ => Err(self.wrong_type("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => {
                let result = visitor.visit_map(self.entries(entries, Some(fields)));
                self.finish(result)
            }
            _ => Err(self.wrong_type("a mapping")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(value) => {
                let access: StrDeserializer<'_, DeError> = value.as_str().into_deserializer();
                let result = visitor.visit_enum(access);
                self.finish(result)
            }
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

impl<'a> NodeDeserializer<'a> {
    fn items(&self, items: &'a [Node]) -> SeqDeserializer<'a> {
        SeqDeserializer {
            items: items.iter().enumerate(),
            parent: self.field.clone(),
            found: self.found,
        }
    }
}

struct SeqDeserializer<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    parent: String,
    found: &'a RefCell<Vec<Found>>,
}

impl<'de> SeqAccess<'de> for SeqDeserializer<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((index, node)) = self.items.next() else {
            return Ok(None);
        };
        let deserializer = NodeDeserializer {
            node,
            field: format!("{}[{index}]", self.parent),
            found: self.found,
        };
        seed.deserialize(deserializer).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDeserializer<'a> {
    entries: std::vec::IntoIter<(&'a Node, &'a Node, String)>,
    value: Option<(&'a Node, String)>,
    found: &'a RefCell<Vec<Found>>,
}

impl<'de> MapAccess<'de> for MapDeserializer<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value, field)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((value, field.clone()));
        let deserializer = NodeDeserializer {
            node: key,
            field,
            found: self.found,
        };
        seed.deserialize(deserializer).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, field) = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("a value was read before its key"))?;
        seed.deserialize(NodeDeserializer {
            node,
            field,
            found: self.found,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Feeds a [`Located`] its line, column, field path, then the value itself.
struct LocatedAccess<'a> {
    at: Option<At>,
    step: u8,
    value: Option<NodeDeserializer<'a>>,
}

impl<'de> SeqAccess<'de> for LocatedAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let step = self.step;
        self.step += 1;
        let at = self.at.as_ref();
        match (step, at) {
            (0, Some(at)) => {
                let line: UsizeDeserializer<DeError> = at.line.into_deserializer();
                seed.deserialize(line).map(Some)
            }
            (1, Some(at)) => {
                let column: UsizeDeserializer<DeError> = at.column.into_deserializer();
                seed.deserialize(column).map(Some)
            }
            (2, Some(_)) => {
                let field: StringDeserializer<DeError> = self
                    .at
                    .take()
                    .map(|at| at.field)
                    .unwrap_or_default()
                    .into_deserializer();
                seed.deserialize(field).map(Some)
            }
            _ => match self.value.take() {
                Some(value) => seed.deserialize(value).map(Some),
                None => Ok(None),
            },
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(LOCATED, LocatedVisitor(PhantomData))
    }
}

struct LocatedVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LocatedVisitor<T> {
    type Value = Located<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located<T>, A::Error> {
        let missing = || <A::Error as de::Error>::custom("incomplete location");
        let line: usize = seq.next_element()?.ok_or_else(missing)?;
        let column: usize = seq.next_element()?.ok_or_else(missing)?;
        let field: String = seq.next_element()?.ok_or_else(missing)?;
        let value: Recover<T> = seq.next_element()?.ok_or_else(missing)?;
        Ok(Located {
            at: At {
                line,
                column,
                field,
            },
            value: value.0,
        })
    }

    /// Any other deserializer: the value without a location.
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Located<T>, D::Error> {
        Ok(Located {
            at: At::default(),
            value: Some(T::deserialize(deserializer)?),
        })
    }
}

/// `T`, or `None` when it could not be read. Only used under [`NodeDeserializer`], which has
/// recorded the error before it reaches here.
struct Recover<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Recover<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(RECOVER, RecoverVisitor(PhantomData))
    }
}

struct RecoverVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for RecoverVisitor<T> {
    type Value = Recover<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Recover<T>, D::Error> {
        Ok(Recover(T::deserialize(deserializer).ok()))
    }
}

/// Feeds a [`ScalarText`] whether the scalar is a string, then its text.
struct ScalarAccess {
    is_string: Option<bool>,
    text: Option<String>,
}

impl<'de> SeqAccess<'de> for ScalarAccess {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if let Some(is_string) = self.is_string.take() {
            let is_string: BoolDeserializer<DeError> = is_string.into_deserializer();
            return seed.deserialize(is_string).map(Some);
        }
        match self.text.take() {
            Some(text) => {
                let text: StringDeserializer<DeError> = text.into_deserializer();
                seed.deserialize(text).map(Some)
            }
            None => Ok(None),
        }
    }
}

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = ScalarText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScalarText, A::Error> {
                let missing = || <A::Error as de::Error>::custom("incomplete scalar");
                let is_string = seq.next_element()?.ok_or_else(missing)?;
                let text = seq.next_element()?.ok_or_else(missing)?;
                Ok(ScalarText { text, is_string })
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<ScalarText, E> {
                Ok(ScalarText {
                    text: value.to_owned(),
                    is_string: true,
                })
            }
        }
        deserializer.deserialize_newtype_struct(SCALAR_TEXT, ScalarVisitor)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Located<String>>()? {
                    let value = map.next_value::<Located<V>>()?;
                    entries.push((key, value));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}
