//! `nixarr-units logs`: journalctl for a service's unit and its secret
//! bridge.

use std::process::Command;

use anyhow::{Context as _, Result};

use super::{Context, ExitStatus, Format};
use crate::control;

#[derive(Debug, clap::Args)]
pub struct Args {
    service: String,
    /// Follow new entries.
    #[arg(short, long)]
    follow: bool,
    /// How many lines to show.
    #[arg(short = 'n', long)]
    lines: Option<usize>,
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let (_, manifest) = ctx.load_manifest()?;
        let selected = control::select(&manifest, std::slice::from_ref(&self.service))?;
        let mut cmd = Command::new("journalctl");
        cmd.arg("--no-pager");
        if ctx.printer.format() == Format::Json {
            // One JSON object per entry (journalctl's own format).
            cmd.args(["-o", "json"]);
        }
        for unit in control::units_of(&manifest, &selected) {
            let bridge = unit.replace(".service", "-secrets.service");
            cmd.arg("-u").arg(unit).arg("-u").arg(bridge);
        }
        if self.follow {
            cmd.arg("-f");
        }
        if let Some(n) = self.lines {
            cmd.arg("-n").arg(n.to_string());
        }
        let status = cmd
            .status()
            .context("cannot run journalctl; is systemd's journal available here?")?;
        Ok(ExitStatus::ok_if(status.success()))
    }
}
