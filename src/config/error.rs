//! Configuration errors: one line naming the file, line:column and key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A configuration error: where it is and what is wrong, printed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the error has a position in the file.
    pub position: Option<(usize, usize)>,
    /// The dotted path of the key, e.g. `targets[0].probes[1].interval`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        match &self.key {
            Some(key) if !key.is_empty() && key != "." => write!(f, ": {key}: {}", self.message),
            _ => write!(f, ": {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The text of a config file and its name: turns spans into positioned errors.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(file: &Path, text: &str) -> Source {
        Source {
            file: file.to_path_buf(),
            text: text.to_string(),
        }
    }

    /// An error at `span` (no position for the empty span of a defaulted value).
    pub fn err_at(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            position: (span.end > 0).then(|| line_col(&self.text, span.start)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// An error at the end of the file (for something missing).
    pub fn err_at_end(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            position: Some(line_col(&self.text, self.text.len())),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// An error without a key, at an optional span (syntax errors).
    pub fn err_plain(&self, span: Option<Range<usize>>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            position: span.map(|s| line_col(&self.text, s.start)),
            key: None,
            message,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

/// The first non-empty line of a parser's message: errors are one line.
pub(super) fn first_line(message: &str) -> String {
    message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim()
        .to_string()
}
