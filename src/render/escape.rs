//! systemd unit-file escaping: the security boundary between spec values and
//! unit files. See systemd.syntax(7) and the "Command lines" section of
//! systemd.service(5).
//!
//! Rules for a word of an `Exec*=` line:
//! - `%` starts a specifier: written `%%`.
//! - `$` starts a variable substitution: written `$$`.
//! - A word with whitespace, quotes, a backslash, control characters or
//!   nothing at all is wrapped in double quotes; inside them `\` and `"` are
//!   backslash-escaped and control characters become `\xNN` (systemd
//!   C-unescapes quoted words).
//! - A word that is a lone `;` (historically a command separator) is written
//!   `\;`.
//! - NUL and newline cannot be carried at all and are rejected (an escaped
//!   newline would be representable, but DESIGN.md rejects it so no value
//!   can ever look like a second line in any tool's view).
//!
//! Because every special character is handled and newlines are refused, a
//! value can neither end the directive nor add an argument.

use std::fmt::Write as _;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EscapeError {
    #[error("value {0:?} contains a NUL byte or a newline, which a unit file cannot carry")]
    Unrepresentable(String),
    #[error("value {0:?} ends with a backslash, which systemd reads as a line continuation")]
    TrailingBackslash(String),
}

fn check(value: &str) -> Result<(), EscapeError> {
    if value.contains(['\0', '\n', '\r']) {
        return Err(EscapeError::Unrepresentable(value.to_owned()));
    }
    Ok(())
}

/// Escape one word of an `Exec*=` command line.
pub fn exec_word(word: &str) -> Result<String, EscapeError> {
    check(word)?;
    if word == ";" {
        return Ok("\\;".to_owned());
    }
    let needs_quotes = word.is_empty()
        || word
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\'));
    let mut out = String::with_capacity(word.len() + 2);
    if needs_quotes {
        out.push('"');
    }
    for c in word.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => {
                // Only ASCII controls reach here as single bytes; others
                // (U+0080..U+009F) are written as their UTF-8 bytes.
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
    if needs_quotes {
        out.push('"');
    }
    Ok(out)
}

/// Escape a whole command line: every argument becomes exactly one word.
pub fn exec_line<S: AsRef<str>>(argv: &[S]) -> Result<String, EscapeError> {
    let words = argv
        .iter()
        .map(|w| exec_word(w.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(words.join(" "))
}

/// Escape a free-text value for a non-command directive such as
/// `Description=`: specifiers are expanded there, quotes are not.
pub fn plain_value(value: &str) -> Result<String, EscapeError> {
    check(value)?;
    if value.ends_with('\\') {
        return Err(EscapeError::TrailingBackslash(value.to_owned()));
    }
    Ok(value.replace('%', "%%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_readable() {
        assert_eq!(
            exec_word("--name=nixarr-sonarr").unwrap(),
            "--name=nixarr-sonarr"
        );
        assert_eq!(exec_word("héllo").unwrap(), "héllo");
    }

    #[test]
    fn specials_are_escaped() {
        assert_eq!(exec_word("100%").unwrap(), "100%%");
        assert_eq!(exec_word("$HOME").unwrap(), "$$HOME");
        assert_eq!(exec_word("a b").unwrap(), "\"a b\"");
        assert_eq!(exec_word("say \"hi\"").unwrap(), "\"say \\\"hi\\\"\"");
        assert_eq!(exec_word("it's").unwrap(), "\"it's\"");
        assert_eq!(exec_word("a\\b").unwrap(), "\"a\\\\b\"");
        assert_eq!(exec_word("").unwrap(), "\"\"");
        assert_eq!(exec_word(";").unwrap(), "\\;");
        assert_eq!(exec_word("tab\there").unwrap(), "\"tab\\x09here\"");
    }

    #[test]
    fn newline_and_nul_are_refused() {
        assert!(exec_word("a\nb").is_err());
        assert!(exec_word("a\0b").is_err());
        assert!(plain_value("a\nExecStart=/bin/evil").is_err());
        assert!(plain_value("ends with \\").is_err());
        assert_eq!(plain_value("50% off").unwrap(), "50%% off");
    }
}
