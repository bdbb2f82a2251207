//! `nixarr-units validate`: check a spec and say what it would render.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::{Context, ExitStatus, Output};
use crate::pipeline::{self, LoadOptions, Loaded};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec file (JSON).
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
}

/// A valid spec: what it renders.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Valid {
    spec: PathBuf,
    services: Vec<String>,
    backend: String,
    unit_files: usize,
}

impl Output for Valid {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{}: valid; {} on {} ({}): {}",
            self.spec.display(),
            super::count(self.services.len(), "service"),
            self.backend,
            super::count(self.unit_files, "unit file"),
            self.services.join(", ")
        )
    }
}

/// Load a spec file for the CLI (units that call `self_exe`, no source
/// path in them), its notes and warnings on stderr.
pub(super) fn load(ctx: &Context, spec: &Path, self_exe: &str) -> Result<Loaded> {
    let loaded = pipeline::load(
        spec,
        &LoadOptions {
            self_exe,
            record_source: false,
        },
    )?;
    show_notes(ctx, &loaded);
    Ok(loaded)
}

/// The pipeline's notes and warnings, on stderr.
pub(super) fn show_notes(ctx: &Context, loaded: &Loaded) {
    for n in &loaded.notes {
        ctx.printer.note(n);
    }
    for w in &loaded.warnings {
        ctx.printer.warn(w);
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let loaded = load(ctx, &self.spec, &pipeline::self_exe(None)?)?;
        ctx.printer.print(&Valid {
            services: loaded.stack.services.keys().cloned().collect(),
            backend: loaded.stack.backend.to_string(),
            unit_files: loaded
                .rendered
                .units
                .keys()
                .filter(|k| !k.contains('/'))
                .count(),
            spec: self.spec,
        })?;
        Ok(ExitStatus::Success)
    }
}
