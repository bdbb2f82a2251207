//! `nixarr-units secrets install|remove` (run by a service's secret bridge
//! unit): deliver or remove the service's secrets.

use anyhow::Result;

use super::{Context, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SecretsCommand {
    /// Check every source and place the copies (files, env file, podman secrets).
    Install(Which),
    /// Remove every copy.
    Remove(Which),
}

#[derive(Debug, clap::Args)]
struct Which {
    /// The stack (its prefix).
    #[arg(long)]
    stack: String,
    /// The service.
    service: String,
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let (w, install) = match self.command {
            SecretsCommand::Install(w) => (w, true),
            SecretsCommand::Remove(w) => (w, false),
        };
        crate::secrets::run(ctx, &w.stack, &w.service, install)?;
        Ok(ExitStatus::Success)
    }
}
