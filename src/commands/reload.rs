//! `nixarr-units reload`: apply an edited spec to running containers.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Result, bail};

use super::{Context, ExitStatus, Output};
use crate::reload::{self, Outcome, ReloadOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to wait for the restarts.
    #[arg(long, default_value_t = 900, value_name = "SECONDS", value_parser = super::whole_seconds)]
    timeout: u64,
    /// Do not run `systemctl daemon-reload` first.
    #[arg(long)]
    no_daemon_reload: bool,
    /// Only print what would be restarted.
    #[arg(long)]
    dry_run: bool,
}

impl Output for [Outcome] {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        for o in self {
            writeln!(out, "{}", o.line())?;
        }
        Ok(())
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let outcomes = reload::reload(
            ctx,
            &ReloadOptions {
                skip_daemon_reload: self.no_daemon_reload,
                dry_run: self.dry_run,
                timeout: Duration::from_secs(self.timeout),
            },
        )?;
        ctx.printer.print(outcomes.as_slice())?;
        let failed: Vec<String> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::RestartFailed { unit, result } => Some(format!("{unit} ({result})")),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            bail!(
                "restarting {} failed; see systemctl status and journalctl -u for each",
                failed.join(", ")
            );
        }
        Ok(ExitStatus::Success)
    }
}
