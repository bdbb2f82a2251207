//! `nixarr-units restore`: put a backup back, or undo or finalize a
//! restore.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{Context, ExitStatus, Output, UsageError};
use crate::backup::restore::{self, Action};
use crate::migrate;

/// Put a backup back: verify it, stop the service, swap the data in, start
/// it and wait until it is healthy; roll back by itself if it is not. The
/// data it replaced is kept until --finalize (docs/backup.md).
#[derive(Debug, clap::Args)]
pub struct Args {
    service: String,
    /// The backup to restore: DIR/<service>/<timestamp>.
    #[arg(long, value_name = "DIR", required_unless_present_any = ["finalize", "rollback"])]
    from: Option<PathBuf>,
    /// Delete the data a finished restore replaced.
    #[arg(long, conflicts_with_all = ["from", "rollback"])]
    finalize: bool,
    /// Undo a restore (finished or interrupted): the replaced data back.
    #[arg(long, conflicts_with = "from")]
    rollback: bool,
    /// Where the restore journal lives (beside the migrations').
    #[arg(long, env = "NIXARR_MIGRATE_DIR", default_value = migrate::journal::JOURNAL_ROOT)]
    journal_dir: PathBuf,
    /// Seconds to wait for each unit job and for the service's health.
    #[arg(long, default_value_t = 600, value_name = "SECONDS", value_parser = super::whole_seconds)]
    timeout: u64,
}

/// What `restore` prints.
#[derive(Debug, Serialize)]
struct Report {
    service: String,
    message: String,
}

impl Output for Report {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.message)
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let (_, manifest) = ctx.load_manifest()?;
        let action = match (self.from, self.finalize, self.rollback) {
            (_, true, _) => Action::Finalize,
            (_, _, true) => Action::Rollback,
            (Some(from), _, _) => Action::Restore { from },
            (None, _, _) => {
                return Err(UsageError(
                    "give --from DIR/<service>/<timestamp>, --rollback or --finalize".into(),
                )
                .into());
            }
        };
        let opts = restore::Options {
            journal_root: self.journal_dir,
            timeout: Duration::from_secs(self.timeout),
        };
        let message = restore::run(
            &manifest,
            ctx.bus_address.as_deref(),
            &self.service,
            action,
            &opts,
        )?;
        ctx.printer.print(&Report {
            service: self.service,
            message,
        })?;
        Ok(ExitStatus::Success)
    }
}
