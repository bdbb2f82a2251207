//! `nixarr-units start|stop|restart`: issue the jobs, wait for each, report
//! each result; on failure the unit's state and its last journal lines.

use std::io::{self, Write};

use anyhow::Result;
use serde::Serialize;

use super::{Context, ExitStatus, Output};
use crate::control;
use crate::systemd::{JobResult, UnitState, Verb};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services (service or unit names).
    #[arg(required_unless_present_any = ["all", "profile"])]
    services: Vec<String>,
    /// Every service (the stack's target).
    #[arg(long, conflicts_with_all = ["services", "profile"])]
    all: bool,
    /// The services of a profile: a catalog app's (core, music, subtitles,
    /// media, requests, downloads, vpn) or one the spec defines.
    #[arg(long, value_name = "NAME", conflicts_with = "services")]
    profile: Option<String>,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS", value_parser = super::whole_seconds)]
    timeout: u64,
}

/// The outcome of one verb on several units.
#[derive(Debug, Serialize)]
struct Jobs {
    verb: &'static str,
    units: Vec<Job>,
}

/// One unit's job and, when it failed, why.
#[derive(Debug, Serialize)]
struct Job {
    #[serde(skip)]
    done: bool,
    unit: String,
    /// systemd's job result (`done` when it worked).
    result: String,
    /// The unit's state after a failed job.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<UnitState>,
    /// The last journal lines after a failed job.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    journal: Vec<String>,
}

impl Output for Jobs {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        for j in &self.units {
            writeln!(out, "{}: {} {}", j.unit, self.verb, j.result)?;
            if let Some(s) = &j.state {
                writeln!(
                    out,
                    "  state: {} ({}), result: {}",
                    s.active_state,
                    s.sub_state,
                    s.result.as_deref().unwrap_or("-")
                )?;
            }
            for line in &j.journal {
                writeln!(out, "  {line}")?;
            }
        }
        Ok(())
    }
}

impl Args {
    pub fn run(self, verb: Verb, ctx: &Context) -> Result<ExitStatus> {
        let (_, manifest) = ctx.load_manifest()?;
        let units: Vec<String> = if self.all {
            // Every service unit and each stack's target: waiting for the
            // target's job alone would return before its services are stopped.
            let mut units = control::units_of(&manifest, &control::select(&manifest, &[])?);
            units.extend(manifest.stacks.iter().map(|s| s.target.clone()));
            units
        } else if let Some(profile) = &self.profile {
            control::units_of(&manifest, &crate::profiles::select(&manifest, profile)?)
        } else {
            control::units_of(&manifest, &control::select(&manifest, &self.services)?)
        };
        let timeout = std::time::Duration::from_secs(self.timeout);
        let jobs = zbus::block_on(async {
            let sd = ctx.systemd().await?;
            let mut jobs = Vec::new();
            for o in sd.run_jobs(verb, &units, timeout).await? {
                let done = o.result == JobResult::Done;
                let (state, journal) = if done {
                    (None, Vec::new())
                } else {
                    control::failure_detail(&sd, &o.unit, 10).await?
                };
                jobs.push(Job {
                    done,
                    unit: o.unit,
                    result: o.result.to_string(),
                    state,
                    journal,
                });
            }
            anyhow::Ok(jobs)
        })?;
        let ok = jobs.iter().all(|j| j.done);
        ctx.printer.print(&Jobs {
            verb: verb.name(),
            units: jobs,
        })?;
        Ok(ExitStatus::ok_if(ok))
    }
}
