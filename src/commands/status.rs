//! `nixarr-units status`: every managed service's unit state, health,
//! restarts, memory and ports, once or as they change (`--watch`).

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use futures_util::StreamExt;

use super::{Context, ExitStatus, Output};
use crate::control::{self, Selected};
use crate::manifest::Manifest;
use crate::status::{self, Report};
use crate::systemd::{self, Systemd, sleep};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services to show (service or unit names) [default: all].
    services: Vec<String>,
    /// Show the services of a profile: a catalog app's (core, music,
    /// subtitles, media, requests, downloads, vpn) or one the spec defines.
    #[arg(long, value_name = "NAME", conflicts_with = "services")]
    profile: Option<String>,
    /// Keep redrawing as states change (Ctrl-C to quit).
    #[arg(long)]
    watch: bool,
    /// Do not run health probes.
    #[arg(long)]
    no_probe: bool,
    /// Seconds each probe may take.
    #[arg(long, default_value = "1", value_name = "SECONDS", value_parser = super::seconds)]
    probe_timeout: Duration,
}

impl Output for Report {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.services.is_empty() {
            writeln!(out, "no services in the manifest")
        } else {
            out.write_all(status::table(self, SystemTime::now()).as_bytes())?;
            // What `update` last did (the table keeps its columns).
            for row in &self.services {
                let Some(u) = &row.image_update else { continue };
                if let Some(e) = &u.last_update {
                    writeln!(
                        out,
                        "{}: image updated to {} at {}",
                        row.service, e.to, e.at
                    )?;
                }
                if let Some(e) = &u.last_rollback {
                    writeln!(
                        out,
                        "{}: image update to {} rolled back at {}",
                        row.service, e.to, e.at
                    )?;
                }
            }
            Ok(())
        }
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let (_, manifest) = ctx.load_manifest()?;
        let selected = match &self.profile {
            Some(p) => crate::profiles::select(&manifest, p)?,
            None => control::select(&manifest, &self.services)?,
        };
        let probe = (!self.no_probe).then_some(self.probe_timeout);
        zbus::block_on(async {
            let sd = ctx.systemd().await?;
            if !self.watch {
                let report = control::collect(&sd, &manifest, &selected, probe).await?;
                ctx.printer.print(&report)?;
                return Ok(ExitStatus::ok_if(report.ok));
            }
            watch(ctx, &sd, &manifest, &selected, probe).await
        })
    }
}

/// Redraw whenever systemd reports a property change of a watched unit,
/// and at least every few seconds so probe results stay fresh.
async fn watch(
    ctx: &Context,
    sd: &Systemd,
    manifest: &Manifest,
    selected: &[Selected],
    probe: Option<Duration>,
) -> Result<ExitStatus> {
    // systemd emits PropertiesChanged only while some client is subscribed;
    // without this the table would change only on the periodic refresh.
    sd.subscribe().await?;
    let conn = systemd::connect(ctx.bus_address.as_deref()).await?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.systemd1")
        .interface("org.freedesktop.DBus.Properties")
        .member("PropertiesChanged")
        .build()
        .context("building the PropertiesChanged match rule")?;
    let mut changes = zbus::MessageStream::for_match_rule(rule, &conn, None)
        .await
        .context("subscribing to PropertiesChanged")?;
    let tty = std::io::stdout().is_terminal();
    let mut last: Option<Report> = None;
    loop {
        let report = control::collect(sd, manifest, selected, probe).await?;
        if last.as_ref() != Some(&report) || tty {
            if tty {
                print!("\x1b[H\x1b[2J");
            }
            ctx.printer.print(&report)?;
            last = Some(report);
        }
        // Wait for a change or the refresh interval, whichever first; then
        // let a burst of changes settle.
        let next = changes.next();
        let tick = sleep(Duration::from_secs(5));
        futures_util::pin_mut!(next, tick);
        futures_util::future::select(next, tick).await;
        sleep(Duration::from_millis(200)).await;
    }
}
