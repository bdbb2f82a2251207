//! `nixarr-units catalog [APP]`: the apps the catalog holds, with image,
//! ports, volumes, health probe, native service facts and profile.

use std::io::{self, Write};

use anyhow::Result;
use serde::Serialize;

use super::{Context, ExitStatus, Output, columns};
use crate::catalog::{self, Entry};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One app to show in full [default: a table of every app].
    #[arg(value_name = "APP")]
    app: Option<String>,
}

/// Every app: a table, or with `--json` an array of entries.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct List(Vec<Entry>);

impl Output for List {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let rows = self.0.iter().map(|e| {
            let ports: Vec<String> = e
                .preset
                .ports
                .iter()
                .map(|p| format!("{}/{}", p.host.unwrap_or(p.container), p.protocol.name()))
                .collect();
            vec![
                e.name.to_owned(),
                e.preset.profile.clone(),
                ports.join(","),
                e.preset.image.clone(),
                e.preset.description.clone(),
            ]
        });
        let header = ["APP", "PROFILE", "PORTS", "IMAGE", "DESCRIPTION"];
        out.write_all(columns(&header, rows).as_bytes())?;
        writeln!(
            out,
            "\n`nixarr-units catalog APP` shows one app in full; `--json` all of it."
        )
    }
}

/// One app in full.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct One(Entry);

impl Output for One {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let e = &self.0;
        let p = e.preset;
        writeln!(out, "{}: {}", e.name, p.description)?;
        writeln!(out, "profile:  {}", p.profile)?;
        writeln!(out, "image:    {}", p.image)?;
        writeln!(out, "homepage: {}", p.homepage)?;
        writeln!(out, "docs:     {}", p.documentation)?;
        for port in &p.ports {
            writeln!(
                out,
                "port:     {} {} -> {}/{}{}",
                port.name,
                port.host.unwrap_or(port.container),
                port.container,
                port.protocol.name(),
                port.address
                    .as_deref()
                    .map(|a| format!(" on {a}"))
                    .unwrap_or_default()
            )?;
        }
        for v in &e.volumes {
            writeln!(out, "volume:   {} -> {}", v.host, v.container)?;
        }
        if p.linuxserver {
            writeln!(
                out,
                "env:      PUID, PGID, TZ, UMASK (LinuxServer.io image)"
            )?;
        }
        for (k, v) in &p.environment {
            writeln!(out, "env:      {k}={v}")?;
        }
        if let (Some(uid), Some(gid)) = (p.uid, p.gid) {
            writeln!(out, "runs as:  {uid}:{gid} (fixed by the image)")?;
        }
        match &p.health {
            None => writeln!(out, "health:   none")?,
            Some(h) => {
                let probe = match (&h.http, h.tcp, h.port) {
                    (Some(path), _, Some(port)) => format!("HTTP {path} on port {port}"),
                    (None, Some(true), Some(port)) => format!("TCP port {port}"),
                    _ => "command only".to_owned(),
                };
                writeln!(
                    out,
                    "health:   {probe}; every {}",
                    h.interval.as_deref().unwrap_or("30s")
                )?;
                if let Some(cmd) = &h.cmd {
                    writeln!(out, "          in the container: {cmd}")?;
                }
            }
        }
        match &p.legacy {
            None => writeln!(out, "native:   no NixOS service to migrate from")?,
            Some(l) => {
                writeln!(
                    out,
                    "native:   {} (data {}{}); nixarr: {}",
                    l.units.join(", "),
                    l.data_dir,
                    if l.dynamic_user { ", DynamicUser" } else { "" },
                    l.nixarr.state_dir
                )?;
            }
        }
        Ok(())
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        match self.app {
            Some(app) => ctx.printer.print(&One(catalog::entry(&app)?))?,
            None => ctx.printer.print(&List(catalog::entries()?))?,
        }
        Ok(ExitStatus::Success)
    }
}
