//! Input errors: bad scenarios, traces and Service lists, each naming the place and the
//! problem. The CLI exits with code 2 on them.

use std::fmt;

/// A problem with user input: file, line (when known), field (when known), message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The file (or `<built-in default>`, `--param`, ...).
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field, when known.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    /// An error at a place.
    pub fn new(origin: &str, line: Option<usize>, field: &str, message: &str) -> InputError {
        InputError {
            origin: origin.to_owned(),
            line,
            field: field.to_owned(),
            message: message.to_owned(),
        }
    }

    /// From a TOML parse error, with its line.
    pub fn toml(origin: &str, src: &str, e: &toml::de::Error) -> InputError {
        let line = e
            .span()
            .map(|s| src[..s.start.min(src.len())].matches('\n').count() + 1);
        InputError::new(origin, line, "", e.message())
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}
