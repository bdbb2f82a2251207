//! Output: commands hand data to the [`Printer`], which writes it as text
//! (a table or lines) or, with `--json`, as JSON. Domain code returns data
//! and does not print.

use std::fmt::Display;
use std::io::{self, Write};

use anyhow::Result;
use serde::Serialize;

/// How results are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Text for people: tables and lines.
    Text,
    /// JSON for programs: one pretty-printed document per result.
    Json,
}

/// Something a command shows: its JSON form is its `Serialize`, its text
/// form [`Output::text`].
pub trait Output: Serialize {
    /// Write the text form.
    fn text(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// Writes results to stdout and notes to stderr.
#[derive(Debug, Clone)]
pub struct Printer {
    format: Format,
}

impl Printer {
    pub fn new(format: Format) -> Self {
        Printer { format }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Write `data` to stdout in the chosen format.
    pub fn print<T: Output + ?Sized>(&self, data: &T) -> Result<()> {
        let mut out = io::stdout().lock();
        self.write(&mut out, data)?;
        out.flush()?;
        Ok(())
    }

    /// Write `data` to `out` in the chosen format.
    pub fn write<T: Output + ?Sized>(&self, out: &mut dyn Write, data: &T) -> Result<()> {
        match self.format {
            Format::Text => data.text(out)?,
            Format::Json => {
                serde_json::to_writer_pretty(&mut *out, data)?;
                writeln!(out)?;
            }
        }
        Ok(())
    }

    /// A note for the user on stderr (`note: …`), in either format.
    pub fn note(&self, msg: impl Display) {
        eprintln!("note: {msg}");
    }

    /// A warning on stderr (`warning: …`), in either format.
    pub fn warn(&self, msg: impl Display) {
        eprintln!("warning: {msg}");
    }
}

/// `n` and the noun, singular or plural: "1 service", "2 services".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Rows under a header as aligned columns: no borders, two spaces between
/// columns, no trailing blanks.
pub fn columns(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    t.lines().map(|l| l.trim_end().to_owned() + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        name: &'static str,
        n: u32,
    }
    impl Output for Row {
        fn text(&self, out: &mut dyn Write) -> io::Result<()> {
            writeln!(out, "{}: {}", self.name, self.n)
        }
    }

    fn written(format: Format) -> String {
        let mut buf = Vec::new();
        Printer::new(format)
            .write(&mut buf, &Row { name: "a", n: 2 })
            .expect("write to a Vec");
        String::from_utf8(buf).expect("UTF-8")
    }

    #[test]
    fn text_and_json_forms_of_one_result() {
        assert_eq!(written(Format::Text), "a: 2\n");
        assert_eq!(
            written(Format::Json),
            "{\n  \"name\": \"a\",\n  \"n\": 2\n}\n"
        );
    }
}
