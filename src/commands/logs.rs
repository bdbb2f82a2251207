//! `nixarr-units logs`: journalctl for services' units and their secret
//! bridges, interleaved by time.

use std::process::Command;

use anyhow::{Context as _, Result};

use super::{Context, ExitStatus, Format};
use crate::control;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services (service or unit names).
    #[arg(required = true)]
    services: Vec<String>,
    /// Follow new entries.
    #[arg(short, long)]
    follow: bool,
    /// How many lines to show.
    #[arg(short = 'n', long)]
    lines: Option<usize>,
    /// Only entries since this time, as journalctl reads it ("2026-12-01
    /// 12:00", "-1h", "today").
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    since: Option<String>,
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let (_, manifest) = ctx.load_manifest()?;
        let selected = control::select(&manifest, &self.services)?;
        let mut cmd = Command::new("journalctl");
        cmd.arg("--no-pager");
        if ctx.printer.format() == Format::Json {
            // One JSON object per entry (journalctl's own format).
            cmd.args(["-o", "json"]);
        }
        for unit in control::journal_units(&manifest, &selected) {
            cmd.arg("-u").arg(unit);
        }
        if self.follow {
            cmd.arg("-f");
        }
        if let Some(n) = self.lines {
            cmd.arg("-n").arg(n.to_string());
        }
        if let Some(since) = &self.since {
            cmd.arg("--since").arg(since);
        }
        let status = cmd
            .status()
            .context("cannot run journalctl; is systemd's journal available here?")?;
        Ok(ExitStatus::ok_if(status.success()))
    }
}
