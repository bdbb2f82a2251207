//! `nixarr-units backup`: consistent copies of running apps' data.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{Context, ExitStatus, Output};
use crate::backup::run::{self, Outcome};

/// Back up services while they run: each SQLite database through SQLite's
/// online backup API, the other files copied, into
/// DIR/<service>/<timestamp>/ with a manifest (docs/backup.md).
///
/// Exit status: 0 when every service was backed up (or had nothing to back
/// up), 1 when one failed, 2 on usage errors.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    services: super::Services,
    /// Only the services of the stack with this prefix.
    #[arg(long, value_name = "PREFIX")]
    stack: Option<String>,
    /// Where backups go: DIR/<service>/<timestamp>/.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Keep the newest N backups of each service, delete older ones.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    keep: Option<u64>,
    /// Stop a service for the copy and start it again when it cannot be
    /// copied while it runs (no declared database, or one that stays
    /// locked).
    #[arg(long)]
    allow_stop: bool,
    /// Seconds a database may stay locked before the copy gives up.
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = super::whole_seconds)]
    busy_timeout: u64,
    /// Seconds to wait for the stop and start of --allow-stop.
    #[arg(long, default_value_t = 600, value_name = "SECONDS", value_parser = super::whole_seconds)]
    timeout: u64,
}

/// What `backup` prints: one outcome per service (`--json`: the list).
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Report(Vec<Outcome>);

impl Output for Report {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        for o in &self.0 {
            writeln!(out, "{}", line(o))?;
        }
        Ok(())
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let (path, manifest) = ctx.load_manifest()?;
        let opts = run::Options {
            to: self.to,
            keep: self.keep.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
            allow_stop: self.allow_stop,
            stack: self.stack,
            busy_bound: Duration::from_secs(self.busy_timeout),
            timeout: Duration::from_secs(self.timeout),
        };
        let outcomes = run::backup(
            &manifest,
            &path,
            ctx.bus_address.as_deref(),
            &self.services.names(),
            &opts,
        )?;
        let ok = outcomes.iter().all(|o| o.error.is_none());
        ctx.printer.print(&Report(outcomes))?;
        Ok(ExitStatus::ok_if(ok))
    }
}

/// One service's result on a line (more when it was stopped or pruned).
fn line(o: &Outcome) -> String {
    if let Some(e) = &o.error {
        return format!("{}: FAILED: {e}", o.service);
    }
    if let Some(s) = &o.skipped {
        return format!("{}: skipped: {s}", o.service);
    }
    let checked = o
        .databases
        .iter()
        .map(|d| format!("{} {}", d.path, d.integrity_check))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "{}: {} ({}, {} entries, {} bytes{}{})",
        o.service,
        o.path.as_deref().unwrap_or("-"),
        o.method.map_or("-", |m| m.name()),
        o.files,
        o.bytes,
        if checked.is_empty() {
            String::new()
        } else {
            format!("; integrity_check: {checked}")
        },
        if o.missing_databases.is_empty() {
            String::new()
        } else {
            format!("; not there yet: {}", o.missing_databases.join(", "))
        }
    );
    if let Some(why) = &o.stopped_because {
        out.push_str(&format!(
            "\n  stopped for the copy and started again: {why}"
        ));
    }
    if !o.pruned.is_empty() {
        out.push_str(&format!("\n  removed {} older backup(s)", o.pruned.len()));
    }
    out
}
