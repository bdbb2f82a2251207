//! Errors in a spec: the user's input was wrong. They name the file, the JSON
//! path and the fix, and map to exit status 2 (as usage errors do).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// The file is not valid JSON.
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value at `path` is wrong.
    At {
        origin: String,
        path: String,
        message: String,
    },
}

impl SpecError {
    pub fn at(origin: &str, path: &str, message: impl Into<String>) -> Self {
        SpecError::At {
            origin: origin.to_owned(),
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Syntax {
                origin,
                line,
                column,
                message,
            } => write!(
                f,
                "{origin}: invalid JSON at line {line}, column {column}: {message}; fix the syntax there"
            ),
            SpecError::At {
                origin,
                path,
                message,
            } => write!(f, "{origin}: {path}: {message}"),
        }
    }
}

impl std::error::Error for SpecError {}

/// A usage error that is not about a spec's content: a missing file, an
/// option out of range, the wrong kind of file. Exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
