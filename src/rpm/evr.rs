//! Epoch:version-release values and their order, as rpm and libsolv compare them.
//!
//! [`vercmp`] is rpm's `rpmvercmp` (segments of digits or letters, `~` sorts before
//! everything, `^` after the base version but before any further segment). [`Evr`] adds the
//! epoch and release rules of a dependency match: a missing epoch is 0, and a missing
//! release on either side is not compared (`foo >= 1.0` is met by `foo = 1.0-3`).

use std::cmp::Ordering;
use std::fmt;

/// One `[epoch:]version[-release]` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Evr {
    /// `None` when the text had no `epoch:` (compared as 0).
    pub epoch: Option<u64>,
    pub version: String,
    /// `None` when the text had no `-release`.
    pub release: Option<String>,
}

impl Evr {
    /// Parse `[epoch:]version[-release]`; the release is what follows the last `-`.
    pub fn parse(text: &str) -> Self {
        let (epoch, rest) = match text.split_once(':') {
            Some((epoch, rest))
                if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (epoch.parse().ok(), rest)
            }
            _ => (None, text),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((version, release)) => (version.to_owned(), Some(release.to_owned())),
            None => (rest.to_owned(), None),
        };
        Self {
            epoch,
            version,
            release,
        }
    }

    /// The full order of two package EVRs (both with a release): epoch, version, release.
    pub fn cmp_full(&self, other: &Self) -> Ordering {
        self.epoch
            .unwrap_or(0)
            .cmp(&other.epoch.unwrap_or(0))
            .then_with(|| vercmp(&self.version, &other.version))
            .then_with(|| {
                vercmp(
                    self.release.as_deref().unwrap_or(""),
                    other.release.as_deref().unwrap_or(""),
                )
            })
    }

    /// The order used when matching a dependency: a release missing on either side is not
    /// compared (libsolv's `EVRCMP_MATCH_RELEASE`).
    pub fn cmp_match(&self, other: &Self) -> Ordering {
        let base = self
            .epoch
            .unwrap_or(0)
            .cmp(&other.epoch.unwrap_or(0))
            .then_with(|| vercmp(&self.version, &other.version));
        match (&self.release, &other.release) {
            (Some(mine), Some(theirs)) => base.then_with(|| vercmp(mine, theirs)),
            _ => base,
        }
    }
}

impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(epoch) = self.epoch {
            write!(f, "{epoch}:")?;
        }
        f.write_str(&self.version)?;
        if let Some(release) = &self.release {
            write!(f, "-{release}")?;
        }
        Ok(())
    }
}

/// rpm's `rpmvercmp`: compare two version (or release) strings.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut one, mut two) = (a.as_bytes(), b.as_bytes());
    let separator = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while let Some((&c, rest)) = one.split_first() {
            if !separator(c) {
                break;
            }
            one = rest;
        }
        while let Some((&c, rest)) = two.split_first() {
            if !separator(c) {
                break;
            }
            two = rest;
        }
        // Tilde sorts before everything, even the end of the string.
        match (one.first() == Some(&b'~'), two.first() == Some(&b'~')) {
            (true, true) => {
                one = &one[1..];
                two = &two[1..];
                continue;
            }
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        // Caret sorts after the end of the string but before any other segment.
        match (one.first() == Some(&b'^'), two.first() == Some(&b'^')) {
            (true, true) => {
                one = &one[1..];
                two = &two[1..];
                continue;
            }
            (true, false) => {
                return if two.is_empty() {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
            }
            (false, true) => {
                return if one.is_empty() {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
            (false, false) => {}
        }
        if one.is_empty() || two.is_empty() {
            break;
        }
        let numeric = one[0].is_ascii_digit();
        let take = |s: &[u8]| {
            s.iter()
                .take_while(|c| {
                    if numeric {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count()
        };
        let (len_one, len_two) = (take(one), take(two));
        let (seg_one, seg_two) = (&one[..len_one], &two[..len_two]);
        one = &one[len_one..];
        two = &two[len_two..];
        if seg_two.is_empty() {
            // Segments of different kinds: the numeric one is newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let order = if numeric {
            let trim = |s: &[u8]| {
                let zeros = s.iter().take_while(|&&c| c == b'0').count();
                s[zeros..].to_vec()
            };
            let (seg_one, seg_two) = (trim(seg_one), trim(seg_two));
            seg_one
                .len()
                .cmp(&seg_two.len())
                .then_with(|| seg_one.cmp(&seg_two))
        } else {
            seg_one.cmp(seg_two)
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    match (one.is_empty(), two.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, _) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vercmp_matches_rpm() {
        // Cases from rpm's own test suite (tests/rpmvercmp.at).
        let cases: &[(&str, &str, i8)] = &[
            ("1.0", "1.0", 0),
            ("1.0", "2.0", -1),
            ("2.0", "1.0", 1),
            ("2.0.1", "2.0.1", 0),
            ("2.0", "2.0.1", -1),
            ("2.0.1a", "2.0.1", 1),
            ("5.5p1", "5.5p10", -1),
            ("10xyz", "10.1xyz", -1),
            ("xyz10", "xyz10.1", -1),
            ("xyz.4", "8", -1),
            ("8", "xyz.4", 1),
            ("5.5p1", "5.5p1", 0),
            ("5.5p2", "5.5p1", 1),
            ("1.0aa", "1.0a", 1),
            ("10.0001", "10.1", 0),
            ("10.0001", "10.0039", -1),
            ("4.999.9", "5.0", -1),
            ("20101121", "20101122", -1),
            ("2_0", "2_0", 0),
            ("2.0", "2_0", 0),
            ("a", "a", 0),
            ("a+", "a_", 0),
            ("+", "_", 0),
            ("1.0~rc1", "1.0~rc1", 0),
            ("1.0~rc1", "1.0", -1),
            ("1.0", "1.0~rc1", 1),
            ("1.0~rc1", "1.0~rc2", -1),
            ("1.0~rc1~git123", "1.0~rc1", -1),
            ("1.0^", "1.0", 1),
            ("1.0^git1", "1.0", 1),
            ("1.0^git1", "1.01", -1),
            ("1.0^20160101", "1.0.1", -1),
            ("1.0^git1~pre", "1.0^git1", -1),
            ("1.0~rc1^git1", "1.0~rc1", 1),
            ("1.0^git1", "1.0^git2", -1),
        ];
        for &(a, b, want) in cases {
            let got = match vercmp(a, b) {
                Ordering::Less => -1,
                Ordering::Equal => 0,
                Ordering::Greater => 1,
            };
            assert_eq!(got, want, "vercmp({a:?}, {b:?})");
        }
    }

    #[test]
    fn evr_parse_and_match() {
        let evr = Evr::parse("2:1.0-3.el8");
        assert_eq!(evr.epoch, Some(2));
        assert_eq!(evr.version, "1.0");
        assert_eq!(evr.release.as_deref(), Some("3.el8"));
        assert_eq!(evr.to_string(), "2:1.0-3.el8");
        assert_eq!(
            Evr::parse("1.0").cmp_match(&Evr::parse("1.0-3")),
            Ordering::Equal
        );
        assert_eq!(
            Evr::parse("1.0").cmp_match(&Evr::parse("1:0.5-3")),
            Ordering::Less
        );
        assert_eq!(
            Evr::parse("0:1.0-1").cmp_full(&Evr::parse("1.0-1")),
            Ordering::Equal
        );
    }
}
