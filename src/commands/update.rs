//! `nixarr-units update`: move services whose image tag now points to
//! another digest there, restarting only those, and roll back any that does
//! not turn healthy. `--check` only reports (exit 0: all current, 100:
//! updates available, as `dnf check-update`).

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{Context, ExitStatus, Output};
use crate::images::registry::{DEFAULT_JOBS, Registry};
use crate::images::update::{
    self, CheckState, ImageCheck, Outcome, UpdateOptions, UpdateResult, select,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    services: super::Services,
    /// Only report what would be updated; change nothing. Exit status 0
    /// when every image is current, 100 when updates are available.
    #[arg(long)]
    check: bool,
    /// The image lock to read and write [default: the one the units were
    /// rendered with; without one the local tag is moved].
    #[arg(long, value_name = "FILE")]
    lock: Option<PathBuf>,
    /// Seconds to wait for the restarts (each until its health gate passes).
    #[arg(long, default_value_t = 900, value_name = "SECONDS", value_parser = super::whole_seconds)]
    timeout: u64,
    /// Registries asked at a time.
    #[arg(long, default_value_t = DEFAULT_JOBS as u16, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    /// Every selected service's image: running, locked and available digest.
    checks: Vec<ImageCheck>,
    /// What the update did (empty with `--check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    updates: Option<Vec<Outcome>>,
    /// Services rolled back to their previous digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    rolled_back: Option<Vec<String>>,
}

/// `sha256:` and the first 12 hex digits, for the text form.
fn short(d: Option<&str>) -> String {
    match d {
        Some(d) => d.chars().take(7 + 12).collect(),
        None => "-".to_owned(),
    }
}

impl Output for Report {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let Some(updates) = &self.updates else {
            let mut table = comfy_table::Table::new();
            table
                .load_preset(comfy_table::presets::NOTHING)
                .set_header(["SERVICE", "IMAGE", "RUNNING", "AVAILABLE", "STATE"]);
            for c in &self.checks {
                table.add_row([
                    c.service.clone(),
                    c.image.clone(),
                    short(c.running.as_deref()),
                    short(c.available.as_deref()),
                    state_text(c.state).to_owned(),
                ]);
            }
            return writeln!(out, "{table}");
        };
        // One line per service: the journal line of the timer's run.
        for c in &self.checks {
            match updates.iter().find(|o| o.service == c.service) {
                Some(o) => {
                    let what = match o.result {
                        UpdateResult::Updated => "updated".to_owned(),
                        UpdateResult::Recorded => "recorded (not running)".to_owned(),
                        UpdateResult::RolledBack => format!(
                            "rolled back to {}: {}",
                            short(o.from.as_deref()),
                            o.detail.as_deref().unwrap_or("")
                        ),
                        UpdateResult::RollbackFailed => {
                            format!("ROLLBACK FAILED: {}", o.detail.as_deref().unwrap_or(""))
                        }
                    };
                    writeln!(
                        out,
                        "{}: {} {} -> {}: {what}",
                        o.service,
                        o.image,
                        short(o.from.as_deref()),
                        short(Some(&o.to))
                    )?;
                }
                None => writeln!(
                    out,
                    "{}: {} {}: {}",
                    c.service,
                    c.image,
                    short(c.current()),
                    state_text(c.state)
                )?,
            }
        }
        Ok(())
    }
}

fn state_text(s: CheckState) -> &'static str {
    match s {
        CheckState::Current => "current",
        CheckState::UpdateAvailable => "update available",
        CheckState::ImageFile => "image file",
        CheckState::PinnedInSpec => "pinned in the spec",
    }
}

/// The exit status `update --check` gives when updates are available.
pub const EXIT_UPDATES_AVAILABLE: u8 = 100;

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let (_, manifest) = ctx.load_manifest()?;
        let names = self.services.names();
        let selections = select(&manifest, &names)?;
        let Some(first) = selections.first() else {
            return Ok(ExitStatus::Success);
        };
        let mut registry = Registry::for_engine(&update::engine_of(first.stack))?;
        registry.jobs = usize::from(self.jobs);
        let (checks, resolved) = update::check(&selections, &registry, self.lock.as_deref())?;
        if self.check {
            let available = checks
                .iter()
                .any(|c| c.state == CheckState::UpdateAvailable);
            ctx.printer.print(&Report {
                checks,
                updates: None,
                rolled_back: None,
            })?;
            return Ok(if available {
                ExitStatus::Code(EXIT_UPDATES_AVAILABLE)
            } else {
                ExitStatus::Success
            });
        }
        let progress = |image: &str, line: &str| tracing::debug!("pull {image}: {line}");
        let opts = UpdateOptions {
            lock: self.lock.as_deref(),
            timeout: Duration::from_secs(self.timeout),
            progress: &progress,
        };
        let reload = || ctx.load_manifest().map(|(_, m)| m);
        let outcomes = zbus::block_on(async {
            let sd = ctx.systemd().await?;
            let mut all = Vec::new();
            for sel in &selections {
                all.extend(update::apply(&sd, sel, &checks, &resolved, &opts, &reload).await?);
            }
            anyhow::Ok(all)
        })?;
        if let Err(e) = crate::images::history::record(&crate::images::history::path(), &outcomes) {
            ctx.printer
                .warn(format!("could not record the update for `status`: {e:#}"));
        }
        let rolled_back: Vec<String> = outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o.result,
                    UpdateResult::RolledBack | UpdateResult::RollbackFailed
                )
            })
            .map(|o| o.service.clone())
            .collect();
        let ok = rolled_back.is_empty();
        ctx.printer.print(&Report {
            checks,
            updates: Some(outcomes),
            rolled_back: Some(rolled_back),
        })?;
        Ok(ExitStatus::ok_if(ok))
    }
}
