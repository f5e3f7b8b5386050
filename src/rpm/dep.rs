//! Dependencies as repository metadata spells them: `name [op evr]`, and rpm's rich
//! (boolean) dependencies, `(a or (b >= 2 with b < 3))`.
//!
//! A [`Range`] is one side of a match (a provide or a simple requirement); [`Range::overlaps`]
//! is libsolv's `pool_intersect_evrs`. Rich dependencies parse into a [`Dep`] tree that the
//! resolver expands the way libsolv's whatprovides does (see [`super::resolve`]).

use std::fmt;

use super::evr::Evr;

/// The comparison flags of a versioned dependency, as a bit set (libsolv's `REL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    pub const LT: Self = Self(1);
    pub const EQ: Self = Self(2);
    pub const GT: Self = Self(4);

    /// Read the `flags=` attribute of primary.xml (`EQ`, `LT`, `LE`, `GT`, `GE`).
    pub fn from_primary(text: &str) -> Option<Self> {
        Some(match text {
            "EQ" => Self(2),
            "LT" => Self(1),
            "LE" => Self(3),
            "GT" => Self(4),
            "GE" => Self(6),
            _ => return None,
        })
    }

    /// Read an operator of a rich dependency (`=`, `<`, `<=`, `>`, `>=`).
    fn from_operator(text: &str) -> Option<Self> {
        Some(match text {
            "=" | "==" => Self(2),
            "<" => Self(1),
            "<=" | "=<" => Self(3),
            ">" => Self(4),
            ">=" | "=>" => Self(6),
            _ => return None,
        })
    }

    fn has(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    fn operator(self) -> &'static str {
        match self.0 {
            1 => "<",
            2 => "=",
            3 => "<=",
            4 => ">",
            6 => ">=",
            _ => "?",
        }
    }
}

/// A name with an optional version constraint: a provide, or a simple requirement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Range {
    pub name: String,
    pub version: Option<(Flags, Evr)>,
}

impl Range {
    pub fn unversioned(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: None,
        }
    }

    /// Whether a provide `self` can satisfy a requirement `other` of the same name
    /// (libsolv's `pool_intersect_evrs`): unversioned sides match everything.
    pub fn overlaps(&self, other: &Self) -> bool {
        let (Some((pflags, pevr)), Some((rflags, revr))) = (&self.version, &other.version) else {
            return true;
        };
        let (pflags, rflags) = (*pflags, *rflags);
        if pflags.0 & rflags.0 & (Flags::LT.0 | Flags::GT.0) != 0 {
            return true;
        }
        match pevr.cmp_match(revr) {
            std::cmp::Ordering::Less => pflags.has(Flags::GT) || rflags.has(Flags::LT),
            std::cmp::Ordering::Equal => pflags.has(Flags::EQ) && rflags.has(Flags::EQ),
            std::cmp::Ordering::Greater => pflags.has(Flags::LT) || rflags.has(Flags::GT),
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some((flags, evr)) = &self.version {
            // As rpm prints it: createrepo writes `epoch="0"` on every versioned entry, which
            // is no epoch at all.
            let shown = if evr.epoch == Some(0) {
                crate::rpm::evr::Evr {
                    epoch: None,
                    ..evr.clone()
                }
            } else {
                evr.clone()
            };
            write!(f, " {} {shown}", flags.operator())?;
        }
        Ok(())
    }
}

/// A requirement: simple, or a rich (boolean) expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dep {
    Simple(Range),
    And(Vec<Dep>),
    Or(Vec<Dep>),
    With(Vec<Dep>),
    Without(Box<Dep>, Box<Dep>),
    /// `(a if b [else c])`
    If(Box<Dep>, Box<Dep>, Option<Box<Dep>>),
    /// `(a unless b [else c])`
    Unless(Box<Dep>, Box<Dep>, Option<Box<Dep>>),
}

/// A rich dependency that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rich dependency `{text}`: {reason}")]
pub struct DepSyntaxError {
    pub text: String,
    pub reason: &'static str,
}

impl Dep {
    /// A dependency from primary.xml's `name`/`flags`/`epoch`/`ver`/`rel` attributes; a name
    /// that starts with `(` is a rich dependency.
    pub fn from_entry(name: &str, version: Option<(Flags, Evr)>) -> Result<Self, DepSyntaxError> {
        if name.starts_with('(') {
            parse_rich(name)
        } else {
            Ok(Self::Simple(Range {
                name: name.to_owned(),
                version,
            }))
        }
    }
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Dep], op: &str| {
            f.write_str("(")?;
            for (index, part) in parts.iter().enumerate() {
                if index > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{part}")?;
            }
            f.write_str(")")
        };
        let cond =
            |f: &mut fmt::Formatter<'_>, a: &Dep, op: &str, b: &Dep, c: &Option<Box<Dep>>| {
                write!(f, "({a} {op} {b}")?;
                if let Some(c) = c {
                    write!(f, " else {c}")?;
                }
                f.write_str(")")
            };
        match self {
            Self::Simple(range) => write!(f, "{range}"),
            Self::And(parts) => join(f, parts, "and"),
            Self::Or(parts) => join(f, parts, "or"),
            Self::With(parts) => join(f, parts, "with"),
            Self::Without(a, b) => write!(f, "({a} without {b})"),
            Self::If(a, b, c) => cond(f, a, "if", b, c),
            Self::Unless(a, b, c) => cond(f, a, "unless", b, c),
        }
    }
}

fn parse_rich(text: &str) -> Result<Dep, DepSyntaxError> {
    let error = |reason| DepSyntaxError {
        text: text.to_owned(),
        reason,
    };
    let tokens = tokenize(text);
    let mut position = 0;
    let dep = parse_group(&tokens, &mut position).map_err(error)?;
    if position != tokens.len() {
        return Err(error("text after the closing parenthesis"));
    }
    Ok(dep)
}

fn tokenize(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (index, c) in text.char_indices() {
        match c {
            '(' | ')' => {
                if let Some(begin) = start.take() {
                    tokens.push(&text[begin..index]);
                }
                tokens.push(&text[index..=index]);
            }
            c if c.is_whitespace() => {
                if let Some(begin) = start.take() {
                    tokens.push(&text[begin..index]);
                }
            }
            _ => {
                if start.is_none() {
                    start = Some(index);
                }
            }
        }
    }
    if let Some(begin) = start {
        tokens.push(&text[begin..]);
    }
    tokens
}

const KEYWORDS: [&str; 7] = ["and", "or", "if", "unless", "else", "with", "without"];

/// `( operand (op operand)* )`
fn parse_group(tokens: &[&str], position: &mut usize) -> Result<Dep, &'static str> {
    if tokens.get(*position) != Some(&"(") {
        return Err("expected `(`");
    }
    *position += 1;
    let first = parse_operand(tokens, position)?;
    let mut op: Option<&str> = None;
    let mut operands = vec![first];
    let mut else_branch = None;
    loop {
        match tokens.get(*position).copied() {
            Some(")") => {
                *position += 1;
                break;
            }
            Some("else") => {
                if !matches!(op, Some("if" | "unless"))
                    || operands.len() != 2
                    || else_branch.is_some()
                {
                    return Err("`else` only follows `if` or `unless`");
                }
                *position += 1;
                else_branch = Some(Box::new(parse_operand(tokens, position)?));
            }
            Some(next @ ("and" | "or" | "with" | "without" | "if" | "unless")) => {
                if let Some(op) = op {
                    if op != next || matches!(op, "if" | "unless" | "without") {
                        return Err("mixed operators need parentheses");
                    }
                }
                op = Some(next);
                *position += 1;
                operands.push(parse_operand(tokens, position)?);
            }
            Some(_) => return Err("expected an operator or `)`"),
            None => return Err("missing `)`"),
        }
    }
    let mut operands = operands.into_iter();
    let first = operands.next().ok_or("empty parentheses")?;
    Ok(match op {
        None => first,
        Some("and") => Dep::And(std::iter::once(first).chain(operands).collect()),
        Some("or") => Dep::Or(std::iter::once(first).chain(operands).collect()),
        Some("with") => Dep::With(std::iter::once(first).chain(operands).collect()),
        Some(op) => {
            let second = operands.next().ok_or("missing operand")?;
            match op {
                "without" => Dep::Without(Box::new(first), Box::new(second)),
                "if" => Dep::If(Box::new(first), Box::new(second), else_branch),
                _ => Dep::Unless(Box::new(first), Box::new(second), else_branch),
            }
        }
    })
}

/// A nested group, or `name [op evr]`.
fn parse_operand(tokens: &[&str], position: &mut usize) -> Result<Dep, &'static str> {
    match tokens.get(*position).copied() {
        Some("(") => parse_group(tokens, position),
        Some(")") | None => Err("missing operand"),
        Some(name) if KEYWORDS.contains(&name) => Err("operator where a name was expected"),
        Some(name) => {
            *position += 1;
            let version = match tokens
                .get(*position)
                .and_then(|op| Flags::from_operator(op))
            {
                Some(flags) => {
                    let evr = tokens
                        .get(*position + 1)
                        .filter(|evr| **evr != "(" && **evr != ")")
                        .ok_or("missing version after an operator")?;
                    *position += 2;
                    Some((flags, Evr::parse(evr)))
                }
                None => None,
            };
            Ok(Dep::Simple(Range {
                name: name.to_owned(),
                version,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> Range {
        match Dep::from_entry(&format!("({text})"), None).unwrap() {
            Dep::Simple(range) => range,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rich_dependencies_parse_and_print_back() {
        for text in [
            "(a or b)",
            "(a and b and c)",
            "(a >= 1.0 with a < 2:3-4)",
            "(a if b)",
            "(a if b else c)",
            "(a unless (b or c))",
            "(a without b)",
            "((a and b) or c)",
        ] {
            let dep = Dep::from_entry(text, None).unwrap();
            assert_eq!(dep.to_string(), text);
        }
        for text in ["(a or b and c)", "(a or", "(a if b if c)", "(a) b", "(and)"] {
            assert!(Dep::from_entry(text, None).is_err(), "{text}");
        }
    }

    #[test]
    fn ranges_overlap_as_libsolv_intersects_them() {
        let cases = [
            ("a = 1.0-1", "a >= 1.0", true),
            ("a = 1.0-1", "a > 1.0", false),
            ("a = 1.0-1", "a > 1.0-0", true),
            ("a = 1.0", "a = 1.0-5", true),
            ("a = 2.0", "a < 2.0", false),
            ("a = 1:1.0", "a >= 2.0", true),
            ("a < 2", "a > 3", false),
            ("a < 2", "a < 1", true),
            ("a >= 2", "a <= 2", true),
            ("a > 2", "a <= 2", false),
            ("a", "a > 5", true),
        ];
        for (provide, require, want) in cases {
            assert_eq!(
                range(provide).overlaps(&range(require)),
                want,
                "{provide} vs {require}"
            );
        }
    }
}
