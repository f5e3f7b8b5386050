//! JSON text exactly as Python's `json` module writes it, for files whose reference is made
//! by Python (MetalK8s' `versions.json`, written by `json.dump(data, sort_keys=True,
//! indent=2)`, and the `json.dumps` bodies in its nginx rules).
//!
//! Python's defaults differ from serde_json's in ways a byte comparison sees: `ensure_ascii`
//! escapes every non-ASCII character as `\uXXXX` (surrogate pairs past U+FFFF), the item
//! separator is `", "` without indent and `","` at a line end with it, and `sort_keys` orders
//! keys by code point (which is the byte order of their UTF-8, so `BTreeMap` order). Floats
//! are written by serde_json (Python's `repr` agrees on the usual ones; the files this is for
//! hold none).

use std::fmt::Write as _;

use serde_json::Value;

/// `json.dumps(text)`: a string literal with Python's escapes.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_string(&mut out, text);
    out
}

/// `json.dumps(value, sort_keys=True, indent=indent)`, without a final newline (as
/// `json.dump` writes none). `indent: None` is the one-line form (`", "` and `": "`).
pub fn dumps(value: &Value, indent: Option<usize>) -> String {
    let mut out = String::new();
    push_value(&mut out, value, indent, 0);
    out
}

fn push_value(out: &mut String, value: &Value, indent: Option<usize>, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::String(text) => push_string(out, text),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separate(out, i, indent, depth + 1);
                push_value(out, item, indent, depth + 1);
            }
            close(out, indent, depth);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                separate(out, i, indent, depth + 1);
                push_string(out, key);
                out.push_str(": ");
                push_value(out, &map[key], indent, depth + 1);
            }
            close(out, indent, depth);
            out.push('}');
        }
    }
}

/// Before item `i`: the separator (`,` or `, `) then, with an indent, a new line.
fn separate(out: &mut String, i: usize, indent: Option<usize>, depth: usize) {
    match indent {
        Some(width) => {
            if i > 0 {
                out.push(',');
            }
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
        None if i > 0 => out.push_str(", "),
        None => {}
    }
}

fn close(out: &mut String, indent: Option<usize>, depth: usize) {
    if let Some(width) = indent {
        out.push('\n');
        out.push_str(&" ".repeat(width * depth));
    }
}

fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_json_dump_with_sorted_keys_and_indent_2() {
        let value = serde_json::json!({
            "b": {"y": null, "x": [1, "two", true]},
            "a": {},
            "c": [],
            "é": "caf\u{e9} \u{1f600} \"q\" \\ \n\t\u{1}",
        });
        // python3 -c 'import json,sys; json.dump(V, sys.stdout, sort_keys=True, indent=2)'
        let expected = "{\n  \"a\": {},\n  \"b\": {\n    \"x\": [\n      1,\n      \"two\",\n      true\n    ],\n    \"y\": null\n  },\n  \"c\": [],\n  \"\\u00e9\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\n\\t\\u0001\"\n}";
        assert_eq!(dumps(&value, Some(2)), expected);
        assert_eq!(
            dumps(&serde_json::json!({"tags": ["1", "2"], "name": "a"}), None),
            r#"{"name": "a", "tags": ["1", "2"]}"#
        );
    }
}
