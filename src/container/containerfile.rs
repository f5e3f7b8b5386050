//! The part of a Containerfile isobuild must understand: its `FROM` lines, after the global
//! `ARG`s and the build arguments are substituted, so that isobuild can hand buildah every
//! base image from its cache and rewrite each `FROM` to that local copy.
//!
//! Everything else (instructions, heredocs inside `RUN`) is left to buildah untouched: only
//! whole `FROM` lines are replaced, so line numbers stay the same.

use std::collections::BTreeMap;

/// One `FROM` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// 1-based line number of the instruction.
    pub line: usize,
    /// The image as written after substitution (`docker.io/library/alpine@sha256:…`).
    pub image: String,
    /// `--platform=…` and other flags, kept as written.
    pub flags: Vec<String>,
    /// `AS name`, lowercased as buildah compares it.
    pub stage: Option<String>,
    /// Whether `image` names an earlier stage (or `scratch`) rather than an image.
    pub internal: bool,
}

/// What reading a Containerfile found.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub froms: Vec<From>,
    /// Every `ARG` name declared anywhere in the file.
    pub declared_args: Vec<String>,
    /// The file's lines, to write the rewrite.
    lines: Vec<String>,
}

/// A problem with one line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Read `text` with `args` (the recipe's build arguments) as buildah would for `FROM`.
pub fn parse(text: &str, args: &BTreeMap<String, String>) -> Result<Parsed, ParseError> {
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut parsed = Parsed {
        lines: lines.clone(),
        ..Parsed::default()
    };
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let start = index;
        let mut instruction = String::new();
        // Join continuation lines (a trailing backslash); comments inside are skipped.
        loop {
            let line = lines[index].trim_end();
            index += 1;
            if line.trim_start().starts_with('#') && !instruction.is_empty() {
                if index >= lines.len() {
                    break;
                }
                continue;
            }
            match line.strip_suffix('\\') {
                Some(head) if index < lines.len() => {
                    instruction.push_str(head);
                    instruction.push(' ');
                }
                _ => {
                    instruction.push_str(line.strip_suffix('\\').unwrap_or(line));
                    break;
                }
            }
        }
        let trimmed = instruction.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (keyword, rest) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        let line = start + 1;
        match keyword.to_ascii_uppercase().as_str() {
            "ARG" => {
                for word in rest.split_whitespace() {
                    let (name, default) = match word.split_once('=') {
                        Some((name, value)) => (name, Some(unquote(value))),
                        None => (word, None),
                    };
                    parsed.declared_args.push(name.to_owned());
                    // Only ARGs before the first FROM apply to FROM lines.
                    if parsed.froms.is_empty() {
                        let value = args.get(name).cloned().or(default);
                        if let Some(value) = value {
                            global.insert(name.to_owned(), value);
                        }
                    }
                }
            }
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let flags: Vec<String> = words
                    .iter()
                    .take_while(|word| word.starts_with("--"))
                    .map(|word| (*word).to_owned())
                    .collect();
                let rest = &words[flags.len()..];
                let (image, stage) = match rest {
                    [image] => (*image, None),
                    [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                        (*image, Some(name.to_ascii_lowercase()))
                    }
                    _ => {
                        return Err(ParseError {
                            line,
                            message: format!(
                                "`FROM {rest}` is not `FROM [--flag…] IMAGE [AS NAME]`",
                                rest = rest.join(" ")
                            ),
                        });
                    }
                };
                let image =
                    substitute(image, &global).map_err(|message| ParseError { line, message })?;
                let internal = image == "scratch" || stages.contains(&image.to_ascii_lowercase());
                if let Some(stage) = &stage {
                    stages.push(stage.clone());
                }
                parsed.froms.push(From {
                    line,
                    image,
                    flags,
                    stage,
                    internal,
                });
            }
            _ => {}
        }
    }
    if parsed.froms.is_empty() {
        return Err(ParseError {
            line: 1,
            message: "no `FROM` instruction".to_owned(),
        });
    }
    Ok(parsed)
}

impl Parsed {
    /// The file with each external `FROM`'s image replaced by `local(from)`; a `FROM` that
    /// spanned several lines becomes one line followed by blank ones.
    pub fn rewrite(&self, local: impl Fn(&From) -> String) -> String {
        let mut lines = self.lines.clone();
        for from in self.froms.iter().filter(|from| !from.internal) {
            let mut line = String::from("FROM");
            for flag in &from.flags {
                line.push(' ');
                line.push_str(flag);
            }
            line.push(' ');
            line.push_str(&local(from));
            if let Some(stage) = &from.stage {
                line.push_str(" AS ");
                line.push_str(stage);
            }
            let first = from.line - 1;
            let mut last = first;
            while lines[last].trim_end().ends_with('\\') && last + 1 < lines.len() {
                last += 1;
            }
            for blank in &mut lines[first + 1..=last] {
                blank.clear();
            }
            lines[first] = line;
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

fn unquote(value: &str) -> String {
    let trimmed = value.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = trimmed
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner.to_owned();
        }
    }
    trimmed.to_owned()
}

/// `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}` from `vars`; unset is empty.
fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => inner.push(c),
                        None => return Err(format!("unclosed `${{` in `{text}`")),
                    }
                }
                let (name, op) = match inner.find(':') {
                    Some(at) => (&inner[..at], Some(&inner[at + 1..])),
                    None => (inner.as_str(), None),
                };
                let value = vars.get(name).filter(|v| !v.is_empty());
                match (op, value) {
                    (None, value) => out.push_str(value.map_or("", String::as_str)),
                    (Some(op), value) if op.starts_with('-') => {
                        out.push_str(value.map_or(&op[1..], String::as_str));
                    }
                    (Some(op), value) if op.starts_with('+') => {
                        if value.is_some() {
                            out.push_str(&op[1..]);
                        }
                    }
                    (Some(op), _) => {
                        return Err(format!("unsupported `${{{name}:{op}}}` in `{text}`"));
                    }
                }
            }
            '$' if chars
                .peek()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') =>
            {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push_str(vars.get(&name).map_or("", String::as_str));
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn global_args_and_build_args_fill_from_lines() {
        let text = "ARG BASE_IMAGE=docker.io/rockylinux\nARG BASE_IMAGE_SHA256\n# comment\n\
                    FROM ${BASE_IMAGE}@sha256:${BASE_IMAGE_SHA256} AS build\nARG LATE=x\n\
                    RUN echo $LATE\nFROM --platform=linux/amd64 \\\n  build\nFROM scratch\n";
        let parsed = parse(text, &args(&[("BASE_IMAGE_SHA256", "abc")])).unwrap();
        assert_eq!(parsed.froms.len(), 3);
        assert_eq!(parsed.froms[0].image, "docker.io/rockylinux@sha256:abc");
        assert_eq!(parsed.froms[0].line, 4);
        assert_eq!(parsed.froms[0].stage.as_deref(), Some("build"));
        assert!(!parsed.froms[0].internal);
        assert!(parsed.froms[1].internal);
        assert_eq!(parsed.froms[1].flags, ["--platform=linux/amd64"]);
        assert!(parsed.froms[2].internal);
        assert_eq!(
            parsed.declared_args,
            ["BASE_IMAGE", "BASE_IMAGE_SHA256", "LATE"]
        );
        let rewritten = parsed.rewrite(|_| "localhost/isobuild/base:1".into());
        let lines: Vec<&str> = rewritten.lines().collect();
        assert_eq!(lines[3], "FROM localhost/isobuild/base:1 AS build");
        assert_eq!(lines[6], "FROM --platform=linux/amd64 \\");
        assert_eq!(lines.len(), text.lines().count());
    }

    #[test]
    fn defaults_and_errors() {
        let vars = args(&[("A", "1")]);
        assert_eq!(substitute("${A:-2}${B:-3}$A${B:+x}", &vars).unwrap(), "131");
        assert!(substitute("${A", &vars).is_err());
        assert!(parse("RUN true\n", &vars).is_err());
        assert_eq!(parse("FROM a b\n", &vars).unwrap_err().line, 1);
    }
}
