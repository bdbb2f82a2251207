//! `nixarr-units diff`: render the spec and compare with what is
//! installed (the generator's directory, NixOS's unit directory, or a
//! `render --out` tree): a unified diff per unit, and which running
//! services a reload would restart. Exit 0 when nothing would change, 1
//! when something would.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{Context, ExitStatus, Output, UsageError, count};
use crate::diff::{self, Change, Kind};
use crate::generator::{self, DEFAULT_SPEC_DIR};
use crate::pipeline::{self, LoadOptions};
use crate::render::{self, Options};
use crate::systemd::ActiveState;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec file (JSON) [default: every spec in the generator's
    /// directory, as the generator renders them].
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// The installed units: a unit directory or a `render --out` directory
    /// [default: /etc/systemd/system on NixOS (its manifest is in /etc),
    /// else the generator's /run/systemd/generator].
    #[arg(long, value_name = "DIR")]
    against: Option<PathBuf>,
    /// Where the generator's specs are (without --spec).
    #[arg(long, value_name = "DIR", env = "NIXARR_UNITS_SPEC_DIR", default_value = DEFAULT_SPEC_DIR)]
    spec_dir: PathBuf,
    /// Path of nixarr-units the units call for helper steps [default: this
    /// binary].
    #[arg(long, value_name = "PATH")]
    self_exe: Option<String>,
}

/// The comparison of one spec.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SpecDiff {
    spec: PathBuf,
    against: PathBuf,
    changes: Vec<Change>,
    /// Services whose unit or secret bridge changes, running now: a
    /// reload restarts them.
    restart: Vec<String>,
    /// Services whose unit changes but that are not running.
    changed_not_running: Vec<String>,
    /// Why running states are unknown (systemd could not be asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    running_unknown: Option<String>,
}

#[derive(Debug, Serialize)]
struct Diffs {
    changed: bool,
    specs: Vec<SpecDiff>,
}

impl Output for Diffs {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        for d in &self.specs {
            for c in &d.changes {
                out.write_all(c.diff.as_bytes())?;
                if !c.diff.ends_with('\n') {
                    writeln!(out)?;
                }
            }
            if d.changes.is_empty() {
                writeln!(
                    out,
                    "{}: no change; the units in {} are what it renders",
                    d.spec.display(),
                    d.against.display()
                )?;
                continue;
            }
            let n = |k: Kind| d.changes.iter().filter(|c| c.kind == k).count();
            writeln!(
                out,
                "{}: {} would change in {} ({} added, {} removed, {} changed)",
                d.spec.display(),
                count(d.changes.len(), "unit"),
                d.against.display(),
                n(Kind::Added),
                n(Kind::Removed),
                n(Kind::Changed)
            )?;
            if let Some(why) = &d.running_unknown {
                writeln!(out, "which of them run is unknown: {why}")?;
            }
            if d.restart.is_empty() {
                writeln!(out, "no running service would restart")?;
            } else {
                writeln!(out, "would restart (running): {}", d.restart.join(", "))?;
            }
            if !d.changed_not_running.is_empty() {
                writeln!(
                    out,
                    "changed, not running: {}",
                    d.changed_not_running.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let against = self.against.clone().unwrap_or_else(diff::default_unit_dir);
        let unit_dir = diff::unit_dir_of(&against);
        let exe = pipeline::self_exe(self.self_exe.clone())?;
        // The generator's own specs render as the generator renders them
        // (their path in SourcePath=); a spec given by hand takes the
        // installed units' SourcePath=, as the same spec by another path.
        let (files, record_source) = match &self.spec {
            Some(f) => (vec![f.clone()], false),
            None => {
                let files = generator::spec_files(&self.spec_dir)?;
                if files.is_empty() {
                    return Err(UsageError(format!(
                        "no spec in {}; pass --spec FILE",
                        self.spec_dir.display()
                    ))
                    .into());
                }
                (files, true)
            }
        };
        let mut specs = Vec::new();
        for file in files {
            let opts = LoadOptions {
                self_exe: &exe,
                record_source,
            };
            let mut loaded = pipeline::load(&file, &opts)?;
            super::validate::show_notes(ctx, &loaded);
            if !record_source
                && let Some(source) = diff::installed_source_path(&unit_dir, &loaded.rendered.units)
            {
                loaded.rendered = render::render(
                    &loaded.stack,
                    &Options {
                        self_exe: exe.clone(),
                        source_path: Some(source),
                    },
                )?;
            }
            let manifest = &loaded.rendered.manifest;
            let changes = diff::compare(
                &loaded.rendered.units,
                &unit_dir,
                &manifest.prefix,
                "rendered",
            )?;
            let affected = diff::affected_services(&changes, manifest);
            let (restart, changed_not_running, running_unknown) = match running(ctx, &affected) {
                Ok(running) => {
                    let (r, n): (Vec<_>, Vec<_>) = affected
                        .into_iter()
                        .partition(|(_, unit)| running.contains(unit));
                    (
                        r.into_iter().map(|(s, _)| s).collect(),
                        n.into_iter().map(|(s, _)| s).collect(),
                        None,
                    )
                }
                Err(e) => (
                    Vec::new(),
                    affected.into_iter().map(|(s, _)| s).collect(),
                    Some(format!("{e:#}")),
                ),
            };
            specs.push(SpecDiff {
                spec: file,
                against: unit_dir.clone(),
                changes,
                restart,
                changed_not_running,
                running_unknown,
            });
        }
        let changed = specs.iter().any(|s| !s.changes.is_empty());
        ctx.printer.print(&Diffs { changed, specs })?;
        Ok(ExitStatus::ok_if(!changed))
    }
}

/// The units among `affected` that are active now.
fn running(ctx: &Context, affected: &[(String, String)]) -> Result<Vec<String>> {
    if affected.is_empty() {
        return Ok(Vec::new());
    }
    let units: Vec<String> = affected.iter().map(|(_, u)| u.clone()).collect();
    let states = zbus::block_on(async {
        let sd = ctx.systemd().await?;
        sd.unit_states(&units).await
    })?;
    Ok(states
        .into_iter()
        .filter(|s| s.active_state == ActiveState::Active)
        .map(|s| s.unit)
        .collect())
}
