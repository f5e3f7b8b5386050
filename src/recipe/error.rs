//! [`RecipeError`]: everything that can be wrong with a recipe, each problem located.

use std::fmt;
use std::path::PathBuf;

/// One problem in a recipe: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in: the recipe, or a template it names.
    pub file: PathBuf,
    /// 1-based line and column; 0 when unknown.
    pub line: usize,
    pub column: usize,
    /// Field path in the recipe (`images.list[3].digest`); empty for the whole document.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    /// `recipes/x.yaml:14:9: images.list[3].digest: message`; problems about the document
    /// as a whole (YAML syntax, a missing top-level field) have no field path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a recipe could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    // The source is in the message because `main` prints only this error's Display.
    #[error("cannot read recipe `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(problems))]
    Invalid { problems: Vec<Problem> },
}

fn render_problems(problems: &[Problem]) -> String {
    let mut text = String::new();
    for (i, problem) in problems.iter().enumerate() {
        if i > 0 {
            text.push_str("\nerror: ");
        }
        text.push_str(&problem.to_string());
    }
    text
}
