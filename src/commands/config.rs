//! `nixarr-units config show|validate`: the effective spec, every value
//! with where it came from (the spec, a catalog app, the defaults), and
//! `validate` under the name users expect.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{Context, ExitStatus, Output, UsageError, columns};
use crate::generator::{self, DEFAULT_SPEC_DIR};
use crate::provenance::{self, Entry};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// The effective spec: catalog presets and defaults merged in, each
    /// value with its source (spec, catalog, defaults); secrets as paths.
    Show(ShowArgs),
    /// Check a spec and report what it would render (the same as
    /// `nixarr-units validate`).
    Validate(super::validate::Args),
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The spec file (JSON) [default: every spec in the generator's
    /// directory].
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Where the generator's specs are (without --spec).
    #[arg(long, value_name = "DIR", env = "NIXARR_UNITS_SPEC_DIR", default_value = DEFAULT_SPEC_DIR)]
    spec_dir: PathBuf,
}

/// One spec's effective values.
#[derive(Debug, Serialize)]
struct Shown {
    spec: PathBuf,
    values: Vec<Entry>,
}

/// Every spec shown.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct AllShown(Vec<Shown>);

impl Output for AllShown {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(out)?;
            }
            writeln!(out, "# {}", s.spec.display())?;
            let rows = s.values.iter().map(|e| {
                let (value, source) = provenance::text_of(e);
                vec![e.path.clone(), value, source]
            });
            out.write_all(columns(&["PATH", "VALUE", "SOURCE"], rows).as_bytes())?;
        }
        Ok(())
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        match self.command {
            ConfigCommand::Validate(a) => a.run(ctx),
            ConfigCommand::Show(a) => a.run(ctx),
        }
    }
}

impl ShowArgs {
    fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let files = match self.spec {
            Some(f) => vec![f],
            None => {
                let files = generator::spec_files(&self.spec_dir)?;
                if files.is_empty() {
                    return Err(UsageError(format!(
                        "no spec in {}; pass --spec FILE (a NixOS host has no spec file: its \
                         options are the configuration)",
                        self.spec_dir.display()
                    ))
                    .into());
                }
                files
            }
        };
        let mut shown = Vec::new();
        for file in files {
            let effective = provenance::load(&file)?;
            for n in &effective.notes {
                ctx.printer.note(n);
            }
            shown.push(Shown {
                spec: file,
                values: effective.values,
            });
        }
        ctx.printer.print(&AllShown(shown))?;
        Ok(ExitStatus::Success)
    }
}
