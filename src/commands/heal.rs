//! `nixarr-units heal` (run by <prefix>-health.timer): restart Docker
//! services that stay unhealthy.

use anyhow::Result;

use super::{Context, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stack (its prefix).
    #[arg(long)]
    stack: String,
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        crate::heal::run(ctx, &self.stack)?;
        Ok(ExitStatus::Success)
    }
}
