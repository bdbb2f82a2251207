//! `nixarr-units vpn status|start|stop`: the VPN unit, its health, who is
//! behind it, and its public IP when the control server lets us ask; and
//! the VPN stopped or started together with the services bound to it.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{Context, ExitStatus, Output, UsageError};
use crate::control;
use crate::status::{self, HealthState};
use crate::systemd::{ActiveState, Verb};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: VpnCommand,
}

#[derive(Debug, clap::Subcommand)]
enum VpnCommand {
    /// The VPN unit's state, its health and the public IP.
    Status {
        /// Seconds the probes may take.
        #[arg(long, default_value = "2", value_name = "SECONDS", value_parser = super::seconds)]
        timeout: Duration,
    },
    /// Start the VPN unit and the services behind it; says which.
    Start {
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 900, value_name = "SECONDS", value_parser = super::whole_seconds)]
        timeout: u64,
    },
    /// Stop the VPN unit; the services bound to it stop with it (their
    /// traffic never leaves without the tunnel); says which.
    Stop {
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 900, value_name = "SECONDS", value_parser = super::whole_seconds)]
        timeout: u64,
    },
}

/// What `vpn start|stop` did: the VPN unit's job and each bound service's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Switched {
    action: &'static str,
    service: String,
    unit: String,
    /// systemd's job result for the VPN unit (`done` when it worked).
    result: String,
    /// The services behind the VPN.
    services: Vec<Bound>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Bound {
    service: String,
    unit: String,
    /// Whether it was running before.
    was_active: bool,
    result: String,
}

impl Output for Switched {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let past = if self.action == "start" {
            "started"
        } else {
            "stopped"
        };
        writeln!(
            out,
            "{}: {} {} ({})",
            self.unit, self.action, self.result, self.service
        )?;
        for b in &self.services {
            writeln!(
                out,
                "{}: {} {} ({})",
                b.unit, self.action, b.result, b.service
            )?;
        }
        // Who moved with it: on stop, those that were running.
        let moved: Vec<&str> = self
            .services
            .iter()
            .filter(|b| b.result == "done" && (self.action == "start" || b.was_active))
            .map(|b| b.service.as_str())
            .collect();
        writeln!(
            out,
            "{past} {} and with it: {}",
            self.service,
            if moved.is_empty() {
                "no service".to_owned()
            } else {
                moved.join(", ")
            }
        )
    }
}

/// What `vpn status` shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VpnStatus {
    service: String,
    unit: String,
    active_state: String,
    sub_state: String,
    /// `healthy`, or the health word and the reason as written.
    health: String,
    /// The services whose traffic goes through it.
    behind_it: Vec<String>,
    /// The public IP or why it is unknown; absent when the unit is not
    /// active.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_ip: Option<String>,
}

impl Output for VpnStatus {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "service: {} ({})", self.service, self.unit)?;
        writeln!(out, "state:   {} ({})", self.active_state, self.sub_state)?;
        writeln!(out, "health:  {}", self.health)?;
        writeln!(
            out,
            "behind it: {}",
            if self.behind_it.is_empty() {
                "(no service)".to_owned()
            } else {
                self.behind_it.join(", ")
            }
        )?;
        if let Some(ip) = &self.public_ip {
            writeln!(out, "public IP: {ip}")?;
        }
        Ok(())
    }
}

/// No VPN service in the manifest (JSON: `{"service": null}`).
#[derive(Debug, Serialize)]
struct NoVpn {
    service: Option<String>,
}

impl Output for NoVpn {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "no VPN service in the manifest (add an app \"gluetun\" service)"
        )
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        match self.command {
            VpnCommand::Status { timeout } => status(ctx, timeout),
            VpnCommand::Start { timeout } => switch(ctx, Verb::Start, timeout),
            VpnCommand::Stop { timeout } => switch(ctx, Verb::Stop, timeout),
        }
    }
}

/// Start or stop the VPN unit with the services behind it, waiting for
/// each job.
fn switch(ctx: &Context, verb: Verb, timeout: u64) -> Result<ExitStatus> {
    let (_, manifest) = ctx.load_manifest()?;
    let Some(vpn) = control::find_vpn(&manifest) else {
        return Err(UsageError(
            "no VPN service in the manifest (add an app \"gluetun\" service)".to_owned(),
        )
        .into());
    };
    let (si, _) = &vpn.selected;
    let behind: Vec<(String, String)> = vpn
        .behind_it
        .iter()
        .filter_map(|n| {
            Some((
                n.clone(),
                manifest.stacks.get(*si)?.services.get(n)?.unit.clone(),
            ))
        })
        .collect();
    // The bound services with the VPN unit: systemd stops them anyway
    // (BindsTo=), and waiting for each job says when they are down; on
    // start nothing would bring them back otherwise.
    let mut units = vec![vpn.svc.unit.clone()];
    units.extend(behind.iter().map(|(_, u)| u.clone()));
    let (before, outcomes) = zbus::block_on(async {
        let sd = ctx.systemd().await?;
        let before = sd.unit_states(&units).await?;
        let outcomes = sd
            .run_jobs(verb, &units, Duration::from_secs(timeout))
            .await?;
        anyhow::Ok((before, outcomes))
    })?;
    let result_of = |unit: &str| {
        outcomes
            .iter()
            .find(|o| o.unit == unit)
            .map_or_else(|| "none".to_owned(), |o| o.result.to_string())
    };
    let was_active = |unit: &str| {
        before
            .iter()
            .any(|s| s.unit == unit && s.active_state == ActiveState::Active)
    };
    let switched = Switched {
        action: verb.name(),
        service: vpn.selected.1.clone(),
        unit: vpn.svc.unit.clone(),
        result: result_of(&vpn.svc.unit),
        services: behind
            .iter()
            .map(|(service, unit)| Bound {
                service: service.clone(),
                unit: unit.clone(),
                was_active: was_active(unit),
                result: result_of(unit),
            })
            .collect(),
    };
    let ok = switched.result == "done" && switched.services.iter().all(|b| b.result == "done");
    ctx.printer.print(&switched)?;
    Ok(ExitStatus::ok_if(ok))
}

fn status(ctx: &Context, timeout: Duration) -> Result<ExitStatus> {
    let (_, manifest) = ctx.load_manifest()?;
    let Some(vpn) = control::find_vpn(&manifest) else {
        ctx.printer.print(&NoVpn { service: None })?;
        return Ok(ExitStatus::Failure);
    };
    let report = zbus::block_on(async {
        let sd = ctx.systemd().await?;
        control::collect(
            &sd,
            &manifest,
            std::slice::from_ref(&vpn.selected),
            Some(timeout),
        )
        .await
    })?;
    let row = report
        .services
        .first()
        .context("the VPN unit is missing from systemd's answer")?;
    // The reason as written ("HTTP 503"), not lower-cased with the word.
    let health = match (&row.health.state, &row.health.reason) {
        (HealthState::Healthy, _) => "healthy".to_owned(),
        (s, Some(r)) => format!("{}: {r}", status::health_word(*s)),
        (s, None) => status::health_word(*s).to_owned(),
    };
    let active = row.state.active_state == ActiveState::Active;
    let public_ip = active.then(|| match control::control_url(vpn.svc) {
        None => "unknown (the control server port 8000 is not published)".to_owned(),
        Some(url) => control::public_ip(&url, timeout),
    });
    ctx.printer.print(&VpnStatus {
        service: vpn.selected.1.clone(),
        unit: vpn.svc.unit.clone(),
        active_state: row.state.active_state.to_string(),
        sub_state: row.state.sub_state.to_string(),
        health,
        behind_it: vpn.behind_it,
        public_ip,
    })?;
    Ok(ExitStatus::ok_if(
        active && row.health.state != HealthState::Unhealthy,
    ))
}
