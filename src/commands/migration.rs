//! `nixarr-units migration`, and the whole of `nixarr-migrate`: move a
//! service from its native NixOS unit into its container and back.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use std::io::{self, Write};

use super::{Context, ExitStatus, Output};
use crate::migrate::{self, Done, Plan, StatusRow};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: MigrationCommand,
    /// Where migration journals and snapshots live.
    #[arg(long, env = "NIXARR_MIGRATE_DIR", default_value = migrate::journal::JOURNAL_ROOT, global = true)]
    journal_dir: PathBuf,
    /// Seconds to wait for each unit job and for the container's health.
    #[arg(long, default_value_t = 600, global = true, value_parser = super::whole_seconds)]
    timeout: u64,
}

#[derive(Debug, clap::Subcommand)]
enum MigrationCommand {
    /// Per service: native unit and state, container unit and state, data,
    /// migration phase, conflicts.
    Status,
    /// The exact steps `migrate` would take; changes nothing.
    Plan { service: String },
    /// Migrate services (dependencies first), resuming an interrupted run.
    Migrate {
        #[arg(required_unless_present = "all")]
        services: Vec<String>,
        /// Every service with a native unit.
        #[arg(long, conflicts_with = "services")]
        all: bool,
        /// Migrate into a non-empty target (its contents are kept aside
        /// and restored on rollback).
        #[arg(long)]
        force: bool,
    },
    /// Stop the container and start the native service again with its data
    /// exactly as it was (NAR hash verified).
    Rollback {
        #[arg(required_unless_present = "all")]
        services: Vec<String>,
        #[arg(long, conflicts_with = "services")]
        all: bool,
    },
    /// Delete the snapshot and journal of a finished or rolled-back migration.
    Finalize { service: String },
}

impl Output for Done {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.message)
    }
}

impl Output for Plan {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(Plan::text(self).as_bytes())
    }
}

impl Output for [StatusRow] {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(migrate::status_table(self).as_bytes())
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let mctx = migrate::Ctx {
            at: ctx,
            journal_root: self.journal_dir,
            timeout: Duration::from_secs(self.timeout),
        };
        match self.command {
            MigrationCommand::Status => ctx.printer.print(migrate::status(&mctx)?.as_slice())?,
            MigrationCommand::Plan { service } => {
                ctx.printer.print(&migrate::plan(&mctx, &service)?)?
            }
            MigrationCommand::Migrate {
                services,
                all,
                force,
            } => {
                for s in migrate::order(&mctx, &services, all, false)? {
                    ctx.printer.print(&migrate::migrate(&mctx, &s, force)?)?;
                }
            }
            MigrationCommand::Rollback { services, all } => {
                for s in migrate::order(&mctx, &services, all, true)? {
                    ctx.printer.print(&migrate::rollback(&mctx, &s)?)?;
                }
            }
            MigrationCommand::Finalize { service } => {
                ctx.printer.print(&migrate::finalize(&mctx, &service)?)?
            }
        }
        Ok(ExitStatus::Success)
    }
}
