//! `nixarr-units man --out DIR`: man pages (clap_mangen) for both names of
//! the binary and each of their subcommands.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::completions::BinName;
use super::{Context, ExitStatus, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write the pages into (created when missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Written {
    dir: PathBuf,
    pages: Vec<String>,
}

impl Output for Written {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "wrote {} into {}",
            super::count(self.pages.len(), "man page"),
            self.dir.display()
        )
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        fs_err::create_dir_all(&self.out)?;
        for bin in [BinName::NixarrUnits, BinName::NixarrMigrate] {
            clap_mangen::generate_to(bin.command(), &self.out).with_context(|| {
                format!(
                    "cannot write the man pages of {} into {}",
                    bin.name(),
                    self.out.display()
                )
            })?;
        }
        let mut pages: Vec<String> = fs_err::read_dir(&self.out)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".1"))
            .collect();
        pages.sort();
        ctx.printer.print(&Written {
            dir: self.out,
            pages,
        })?;
        Ok(ExitStatus::Success)
    }
}
