//! YAML text exactly as PyYAML's `SafeDumper` writes it, for files whose reference is made by
//! Python (MetalK8s' `SerializedData` SLS and YAML files: `yaml.SafeDumper(fp,
//! sort_keys=False)` with the default block style, two-space indent, 80-column width and
//! ASCII-only output).
//!
//! [`Data`] keeps mappings in document order (PyYAML writes them as given). Strings are
//! written as PyYAML would choose: plain when its resolver would read them back as the same
//! string and nothing in them needs quoting, else single-quoted, else double-quoted with
//! escapes (every non-ASCII character, as `allow_unicode` is off), long ones folded at spaces
//! past column 80. One choice is this writer's, as MetalK8s' buildchain makes it for its
//! text and binary fields: a string with a line break is a literal block (`|`, with PyYAML's
//! chomping and indentation hints) wherever PyYAML allows one. Only what a single document of
//! mappings, sequences and scalars needs is written; a key must be a scalar of one line
//! shorter than 128 characters (PyYAML writes other keys in its `? ` form, not done here).

use std::fmt;
use std::sync::LazyLock;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A YAML value with its mappings in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Data>),
    Map(Vec<(Data, Data)>),
}

/// Read YAML (or JSON) text as [`Data`].
pub fn parse(text: &str) -> Result<Data, String> {
    serde_saphyr::from_str::<Data>(text).map_err(|error| error.to_string())
}

/// Why a value cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    #[error(
        "the key `{0}` cannot be written as a simple key (a scalar of one line, shorter than 128 characters)"
    )]
    ComplexKey(String),
}

/// `yaml.dump(data, Dumper=SafeDumper, sort_keys=False)`, one document, literal blocks for
/// strings with line breaks.
pub fn dump(data: &Data) -> Result<String, DumpError> {
    let mut emitter = Emitter::default();
    emitter.root(data)?;
    Ok(emitter.out)
}

const WIDTH: usize = 80;
const INDENT: usize = 2;

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_space_or_break(c: char) -> bool {
    matches!(c, '\0' | ' ' | '\t' | '\r') || is_break(c)
}

/// PyYAML's `Emitter.analyze_scalar`, the parts the style choice reads.
#[derive(Debug)]
struct Analysis {
    empty: bool,
    multiline: bool,
    allow_block_plain: bool,
    allow_single_quoted: bool,
    allow_block: bool,
}

fn analyze(text: &str) -> Analysis {
    if text.is_empty() {
        return Analysis {
            empty: true,
            multiline: false,
            allow_block_plain: false,
            allow_single_quoted: true,
            allow_block: false,
        };
    }
    let chars: Vec<char> = text.chars().collect();
    let mut block_indicators = text.starts_with("---") || text.starts_with("...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let mut followed_by_whitespace = chars.len() == 1 || is_space_or_break(chars[1]);
    let last = chars.len() - 1;
    for (index, &c) in chars.iter().enumerate() {
        if index == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(c) {
                block_indicators = true;
            }
            if (c == '?' || c == ':' || c == '-') && followed_by_whitespace {
                block_indicators = true;
            }
        } else if (c == ':' && followed_by_whitespace) || (c == '#' && preceded_by_whitespace) {
            block_indicators = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        // Printable Unicode or not: without `allow_unicode`, both need escapes.
        if !(c == '\n' || (' '..='~').contains(&c)) {
            special = true;
        }
        if c == ' ' {
            leading_space |= index == 0;
            trailing_space |= index == last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            leading_break |= index == 0;
            trailing_break |= index == last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_space_or_break(c);
        followed_by_whitespace = index + 2 >= chars.len() || is_space_or_break(chars[index + 2]);
    }
    let mut allow_block_plain = true;
    let mut allow_single_quoted = true;
    let mut allow_block = true;
    if leading_space || leading_break || trailing_space || trailing_break {
        allow_block_plain = false;
    }
    if trailing_space {
        allow_block = false;
    }
    if break_space {
        allow_block_plain = false;
        allow_single_quoted = false;
    }
    if space_break || special {
        allow_block_plain = false;
        allow_single_quoted = false;
        allow_block = false;
    }
    if line_breaks || block_indicators {
        allow_block_plain = false;
    }
    Analysis {
        empty: false,
        multiline: line_breaks,
        allow_block_plain,
        allow_single_quoted,
        allow_block,
    }
}

/// Whether PyYAML's resolver reads `text`, written plain, as something other than a string
/// (YAML 1.1: `yes`, `off`, `1_000`, `0x1f`, `1:30`, `2001-12-14`, `~`, `<<`, `=`, …).
fn resolves_to_non_string(text: &str) -> bool {
    static RESOLVERS: LazyLock<Vec<(&'static str, regex::Regex)>> = LazyLock::new(|| {
        [
            (
                "yYnNtTfFoO",
                r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
            ),
            (
                "-+0123456789.",
                r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
            ),
            (
                "-+0123456789",
                r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
            ),
            ("<", r"^(?:<<)$"),
            ("~nN", r"^(?:~|null|Null|NULL)$"),
            (
                "0123456789",
                r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$",
            ),
            ("=", r"^(?:=)$"),
        ]
        .into_iter()
        .filter_map(|(first, pattern)| Some((first, regex::Regex::new(pattern).ok()?)))
        .collect()
    });
    // The empty string resolves to null, but it is never written plain (see `analyze`).
    let Some(first) = text.chars().next() else {
        return true;
    };
    RESOLVERS
        .iter()
        .any(|(firsts, regex)| firsts.contains(first) && regex.is_match(text))
}

/// Python's `repr(float)` as PyYAML's `represent_float` writes it.
fn float_text(value: f64) -> String {
    if value.is_nan() {
        return ".nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    let repr = python_float_repr(value);
    if !repr.contains('.') && repr.contains('e') {
        repr.replacen('e', ".0e", 1)
    } else {
        repr
    }
}

/// `repr(value)` for a finite float: the shortest digits that read back, in fixed notation
/// for exponents -4 to 15, else `d.ddde±XX`.
pub(crate) fn python_float_repr(value: f64) -> String {
    // `{:e}` is the shortest round-trip mantissa, like Python's repr.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else {
            let point = usize::try_from(point).unwrap_or_default();
            if digits.len() > point {
                format!("{}.{}", &digits[..point], &digits[point..])
            } else {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            }
        };
        format!("{sign}{text}")
    } else {
        let (head, tail) = digits.split_at(1);
        let mantissa = if tail.is_empty() {
            head.to_owned()
        } else {
            format!("{head}.{tail}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.unsigned_abs())
    }
}

/// The writing state of PyYAML's emitter that the output depends on.
#[derive(Default)]
struct Emitter {
    out: String,
    column: usize,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

impl Emitter {
    fn write(&mut self, text: &str) {
        self.out.push_str(text);
        self.column += text.chars().count();
    }

    fn line_break(&mut self) {
        self.out.push('\n');
        self.whitespace = true;
        self.indention = true;
        self.column = 0;
    }

    fn indent_to(&mut self, indent: usize) {
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.line_break();
        }
        if self.column < indent {
            self.whitespace = true;
            let spaces = " ".repeat(indent - self.column);
            self.write(&spaces);
        }
    }

    fn indicator(
        &mut self,
        indicator: &str,
        need_whitespace: bool,
        whitespace: bool,
        indention: bool,
    ) {
        let text = if self.whitespace || !need_whitespace {
            indicator.to_owned()
        } else {
            format!(" {indicator}")
        };
        self.whitespace = whitespace;
        self.indention = self.indention && indention;
        self.open_ended = false;
        self.write(&text);
    }

    fn root(&mut self, data: &Data) -> Result<(), DumpError> {
        self.whitespace = true;
        self.indention = true;
        match data {
            Data::Map(entries) if !entries.is_empty() => self.mapping(entries, 0)?,
            Data::Seq(items) if !items.is_empty() => self.sequence(items, 0)?,
            scalar_or_empty => {
                self.node(scalar_or_empty, INDENT, true)?;
            }
        }
        // DocumentEnd: a final line break; `...` after an open-ended root scalar.
        self.indent_to(0);
        if self.open_ended {
            self.write("...");
            self.line_break();
        }
        Ok(())
    }

    /// A value inside a collection whose scalar indent is `indent`.
    fn node(&mut self, data: &Data, indent: usize, root: bool) -> Result<(), DumpError> {
        match data {
            Data::Map(entries) if entries.is_empty() => {
                self.indicator("{", true, true, false);
                self.indicator("}", false, false, false);
            }
            Data::Seq(items) if items.is_empty() => {
                self.indicator("[", true, true, false);
                self.indicator("]", false, false, false);
            }
            Data::Map(entries) => self.mapping(entries, indent)?,
            Data::Seq(items) => self.sequence(items, indent)?,
            scalar => self.scalar(scalar, indent, false, root),
        }
        Ok(())
    }

    fn mapping(&mut self, entries: &[(Data, Data)], indent: usize) -> Result<(), DumpError> {
        for (key, value) in entries {
            self.indent_to(indent);
            if !simple_key(key) {
                return Err(DumpError::ComplexKey(scalar_text(key)));
            }
            self.scalar(key, indent + INDENT, true, false);
            self.indicator(":", false, false, false);
            match value {
                // A sequence in a mapping is not indented (PyYAML's "indentless" sequence).
                Data::Seq(items) if !items.is_empty() => self.sequence(items, indent)?,
                Data::Map(entries) if !entries.is_empty() => {
                    self.mapping(entries, indent + INDENT)?;
                }
                other => self.node(other, indent + INDENT, false)?,
            }
        }
        Ok(())
    }

    /// `indent` is the sequence's own: its `-` column.
    fn sequence(&mut self, items: &[Data], indent: usize) -> Result<(), DumpError> {
        for item in items {
            self.indent_to(indent);
            self.indicator("-", true, false, true);
            match item {
                Data::Seq(inner) if !inner.is_empty() => self.sequence(inner, indent + INDENT)?,
                Data::Map(entries) if !entries.is_empty() => {
                    self.mapping(entries, indent + INDENT)?;
                }
                other => self.node(other, indent + INDENT, false)?,
            }
        }
        Ok(())
    }

    fn scalar(&mut self, data: &Data, indent: usize, simple_key: bool, root: bool) {
        let (text, is_string) = match data {
            Data::Str(text) => (text.clone(), true),
            other => (scalar_text(other), false),
        };
        let style = if is_string {
            choose_style(&text, simple_key)
        } else {
            Style::Plain
        };
        let split = !simple_key;
        match style {
            Style::Plain => self.plain(&text, indent, split, root),
            Style::Single => self.single_quoted(&text, indent, split),
            Style::Double => self.double_quoted(&text, indent, split),
            Style::Literal => self.literal(&text, indent),
        }
    }

    fn plain(&mut self, text: &str, indent: usize, split: bool, root: bool) {
        if root {
            self.open_ended = true;
        }
        if text.is_empty() {
            return;
        }
        if !self.whitespace {
            self.write(" ");
        }
        self.whitespace = false;
        self.indention = false;
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut start) = (false, 0);
        for end in 0..=chars.len() {
            let c = chars.get(end).copied();
            if spaces {
                if c != Some(' ') {
                    if start + 1 == end && self.column > WIDTH && split {
                        self.indent_to(indent);
                        self.whitespace = false;
                        self.indention = false;
                    } else {
                        let part: String = chars[start..end].iter().collect();
                        self.write(&part);
                    }
                    start = end;
                }
            } else if c.is_none_or(|c| c == ' ' || is_break(c)) {
                let part: String = chars[start..end].iter().collect();
                self.write(&part);
                start = end;
            }
            if let Some(c) = c {
                spaces = c == ' ';
            }
        }
    }

    fn single_quoted(&mut self, text: &str, indent: usize, split: bool) {
        self.indicator("'", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut start) = (false, 0);
        for end in 0..=chars.len() {
            let c = chars.get(end).copied();
            if spaces {
                if c != Some(' ') {
                    if start + 1 == end
                        && self.column > WIDTH
                        && split
                        && start != 0
                        && end != chars.len()
                    {
                        self.indent_to(indent);
                    } else {
                        let part: String = chars[start..end].iter().collect();
                        self.write(&part);
                    }
                    start = end;
                }
            } else if c.is_none_or(|c| c == ' ' || c == '\'') && start < end {
                let part: String = chars[start..end].iter().collect();
                self.write(&part);
                start = end;
            }
            if c == Some('\'') {
                self.write("''");
                start = end + 1;
            }
            if let Some(c) = c {
                spaces = c == ' ';
            }
        }
        self.indicator("'", false, false, false);
    }

    fn double_quoted(&mut self, text: &str, indent: usize, split: bool) {
        self.indicator("\"", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let mut start = 0;
        for end in 0..=chars.len() {
            let c = chars.get(end).copied();
            let escaped = c.is_none_or(|c| {
                matches!(
                    c,
                    '"' | '\\' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
                ) || !(' '..='~').contains(&c)
            });
            if escaped {
                if start < end {
                    let part: String = chars[start..end].iter().collect();
                    self.write(&part);
                    start = end;
                }
                if let Some(c) = c {
                    let escape = match c {
                        '\0' => "\\0".to_owned(),
                        '\u{07}' => "\\a".to_owned(),
                        '\u{08}' => "\\b".to_owned(),
                        '\t' => "\\t".to_owned(),
                        '\n' => "\\n".to_owned(),
                        '\u{0b}' => "\\v".to_owned(),
                        '\u{0c}' => "\\f".to_owned(),
                        '\r' => "\\r".to_owned(),
                        '\u{1b}' => "\\e".to_owned(),
                        '"' => "\\\"".to_owned(),
                        '\\' => "\\\\".to_owned(),
                        '\u{85}' => "\\N".to_owned(),
                        '\u{a0}' => "\\_".to_owned(),
                        '\u{2028}' => "\\L".to_owned(),
                        '\u{2029}' => "\\P".to_owned(),
                        c if u32::from(c) <= 0xff => format!("\\x{:02X}", u32::from(c)),
                        c if u32::from(c) <= 0xffff => format!("\\u{:04X}", u32::from(c)),
                        c => format!("\\U{:08X}", u32::from(c)),
                    };
                    self.write(&escape);
                    start = end + 1;
                }
            }
            if 0 < end
                && end + 1 < chars.len()
                && (c == Some(' ') || start >= end)
                // Python's `column + (end - start) > width`, where `end - start` is -1 right
                // after an escape: moved around so that nothing goes below zero.
                && self.column + end > WIDTH + start
                && split
            {
                // Python's `text[start:end]`: empty when `start` is past `end`.
                let mut part: String = chars.get(start..end).unwrap_or_default().iter().collect();
                part.push('\\');
                if start < end {
                    start = end;
                }
                self.write(&part);
                self.indent_to(indent);
                self.whitespace = false;
                self.indention = false;
                if chars[start] == ' ' {
                    self.write("\\");
                }
            }
        }
        self.indicator("\"", false, false, false);
    }

    fn literal(&mut self, text: &str, indent: usize) {
        let chars: Vec<char> = text.chars().collect();
        let mut hints = String::new();
        if chars.first().is_some_and(|&c| c == ' ' || is_break(c)) {
            hints.push_str(&INDENT.to_string());
        }
        match chars.last() {
            Some(&c) if !is_break(c) => hints.push('-'),
            Some(_) if chars.len() == 1 || is_break(chars[chars.len() - 2]) => hints.push('+'),
            _ => {}
        }
        self.indicator(&format!("|{hints}"), true, false, false);
        if hints.ends_with('+') {
            self.open_ended = true;
        }
        self.line_break();
        let (mut breaks, mut start) = (true, 0);
        for end in 0..=chars.len() {
            let c = chars.get(end).copied();
            if breaks {
                if c.is_none_or(|c| !is_break(c)) {
                    for &b in &chars[start..end] {
                        if b == '\n' {
                            self.line_break();
                        } else {
                            self.out.push(b);
                            self.line_break_after_raw();
                        }
                    }
                    if c.is_some() {
                        self.indent_to(indent);
                    }
                    start = end;
                }
            } else if c.is_none_or(is_break) {
                let part: String = chars[start..end].iter().collect();
                self.write(&part);
                if c.is_none() {
                    self.line_break();
                }
                start = end;
            }
            if let Some(c) = c {
                breaks = is_break(c);
            }
        }
    }

    /// The state after a line break other than `\n` written raw.
    fn line_break_after_raw(&mut self) {
        self.whitespace = true;
        self.indention = true;
        self.column = 0;
    }
}

/// The style PyYAML picks for a string (`choose_scalar_style`), a line break asking for a
/// literal block.
fn choose_style(text: &str, simple_key: bool) -> Style {
    let analysis = analyze(text);
    let literal_wanted = text.chars().any(is_break);
    if !literal_wanted
        && !resolves_to_non_string(text)
        && !(simple_key && (analysis.empty || analysis.multiline))
        && analysis.allow_block_plain
    {
        return Style::Plain;
    }
    if literal_wanted {
        if !simple_key && analysis.allow_block {
            return Style::Literal;
        }
        return Style::Double;
    }
    if analysis.allow_single_quoted && !(simple_key && analysis.multiline) {
        return Style::Single;
    }
    Style::Double
}

/// PyYAML's `check_simple_key` for a scalar key.
fn simple_key(key: &Data) -> bool {
    match key {
        Data::Str(text) => {
            let analysis = analyze(text);
            text.chars().count() < 128 && !analysis.empty && !analysis.multiline
        }
        Data::Seq(_) | Data::Map(_) => false,
        other => scalar_text(other).len() < 128,
    }
}

/// The plain text of a non-string scalar, as SafeDumper's representers write it.
fn scalar_text(data: &Data) -> String {
    match data {
        Data::Null => "null".to_owned(),
        Data::Bool(true) => "true".to_owned(),
        Data::Bool(false) => "false".to_owned(),
        Data::Int(value) => value.to_string(),
        Data::Float(value) => float_text(*value),
        Data::Str(text) => text.clone(),
        Data::Seq(_) => "[…]".to_owned(),
        Data::Map(_) => "{…}".to_owned(),
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DataVisitor)
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Data;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("YAML data")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Data, E> {
        Ok(Data::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Data, E> {
        Ok(Data::Int(value.into()))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Data, E> {
        Ok(Data::Int(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Data, E> {
        Ok(Data::Int(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Data, E> {
        Ok(Data::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Data, E> {
        Ok(Data::Str(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Data, E> {
        Ok(Data::Str(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Data, E> {
        Ok(Data::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Data, E> {
        Ok(Data::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Data, D::Error> {
        Data::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Data::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry()? {
            entries.push((key, value));
        }
        Ok(Data::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumped(yaml: &str) -> String {
        dump(&parse(yaml).unwrap()).unwrap()
    }

    /// Each expected text is what `yaml.dump(…, Dumper=SafeDumper, sort_keys=False)` writes
    /// (strings with line breaks as literal blocks); the differential test against PyYAML
    /// itself is `tests/it/file_data.rs`.
    #[test]
    fn writes_what_pyyaml_writes() {
        assert_eq!(
            dumped("b: 1\na: [x, {k: v, j: []}]\nc: {}\n"),
            "b: 1\na:\n- x\n- k: v\n  j: []\nc: {}\n"
        );
        assert_eq!(
            dumped(r#"["yes", "1.5", "", "a: b", "it's", "tab\there", "café", null, 1.0e17]"#),
            "- 'yes'\n- '1.5'\n- ''\n- 'a: b'\n- it's\n- \"tab\\there\"\n- \"caf\\xE9\"\n- null\n- 1.0e+17\n"
        );
        assert_eq!(
            dumped("text: \"line 1\\n\\n  line 3\\n\"\nkeep: \"a\\n\\n\"\nstrip: \"a\\nb\"\n"),
            "text: |\n  line 1\n\n    line 3\nkeep: |+\n  a\n\nstrip: |-\n  a\n  b\n"
        );
        assert_eq!(dumped("[[a, b], [[]]]"), "- - a\n  - b\n- - []\n");
        assert_eq!(dumped("plain"), "plain\n...\n");
        assert_eq!(dumped("{}"), "{}\n");
        let long = "word ".repeat(30);
        assert_eq!(
            dumped(&format!("k: {}", long.trim())),
            format!(
                "k: {}\n  {}\n",
                "word ".repeat(16).trim(),
                "word ".repeat(14).trim()
            )
        );
    }

    #[test]
    fn python_float_repr() {
        for (value, repr) in [
            (1.5, "1.5"),
            (0.1, "0.1"),
            (3.0, "3.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (-2.5e-5, "-2.5e-05"),
            (123_456_789.125, "123456789.125"),
        ] {
            assert_eq!(super::python_float_repr(value), repr, "{value}");
        }
        assert_eq!(float_text(1e17), "1.0e+17");
        assert_eq!(float_text(f64::NAN), ".nan");
    }

    #[test]
    fn a_multiline_key_is_refused() {
        let data = Data::Map(vec![(Data::Str("a\nb".into()), Data::Null)]);
        assert_eq!(dump(&data), Err(DumpError::ComplexKey("a\nb".into())));
    }
}
