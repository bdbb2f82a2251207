//! `nixarr-units vpn status`: the VPN unit, its health, who is behind it,
//! and its public IP when the control server lets us ask.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{Context, ExitStatus, Output};
use crate::control;
use crate::status::{self, HealthState};
use crate::systemd::ActiveState;

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

/// No VPN service in the manifest.
#[derive(Debug, Serialize)]
struct NoVpn {
    vpn: Option<()>,
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
        let VpnCommand::Status { timeout } = self.command;
        let (_, manifest) = ctx.load_manifest()?;
        let Some(vpn) = control::find_vpn(&manifest) else {
            ctx.printer.print(&NoVpn { vpn: None })?;
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
}
