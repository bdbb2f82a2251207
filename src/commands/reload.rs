//! `nixarr-units reload`: apply an edited spec to running containers.

use std::time::Duration;

use anyhow::Result;

use super::{Context, ExitStatus};
use crate::reload::{self, ReloadConfig};

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

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        reload::reload(&ReloadConfig {
            manifest: ctx.manifest.clone(),
            bus_address: ctx.bus_address.clone(),
            skip_daemon_reload: self.no_daemon_reload,
            dry_run: self.dry_run,
            timeout: Duration::from_secs(self.timeout),
        })?;
        Ok(ExitStatus::Success)
    }
}
