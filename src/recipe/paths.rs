//! [`IsoPath`]: a relative path inside the ISO tree that cannot escape it.

use std::fmt;
use std::path::{Path, PathBuf};

/// A normalised, relative, `/`-separated path inside the ISO tree. It has no `..`, no `.`
/// and no empty components, so joining it to the tree's root can never leave the tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct IsoPath(String);

impl IsoPath {
    /// Check and normalise `text` (a trailing `/` is allowed and dropped).
    pub fn new(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the path is empty".into());
        }
        if text.starts_with('/') || Path::new(text).is_absolute() {
            return Err(format!(
                "`{text}` is absolute; paths in the ISO tree are relative to its root"
            ));
        }
        if text.contains('\0') || text.contains('\\') {
            return Err(format!("`{text}` contains a NUL or backslash character"));
        }
        let mut parts = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(format!("`{text}` escapes the ISO tree with `..`")),
                other => parts.push(other),
            }
        }
        if parts.is_empty() {
            return Err(format!(
                "`{text}` names the root of the ISO tree, not a path inside it"
            ));
        }
        Ok(Self(parts.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This path under `root` on the host.
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }

    /// `self/child` (`child` is checked like [`IsoPath::new`]).
    pub fn join(&self, child: &str) -> Result<Self, String> {
        Self::new(&format!("{}/{child}", self.0))
    }
}

impl fmt::Display for IsoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::IsoPath;

    #[test]
    fn normalises_and_refuses_escapes() {
        assert_eq!(
            IsoPath::new("./salt//top.sls").unwrap().as_str(),
            "salt/top.sls"
        );
        assert_eq!(IsoPath::new("salt/").unwrap().as_str(), "salt");
        for bad in ["", "/etc/passwd", "../x", "a/../../b", ".", "a/.."] {
            assert!(IsoPath::new(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
