//! `nixarr-units render`: a spec into a package directory of units and a
//! manifest.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{Context, ExitStatus, Output};
use crate::manifest::Manifest;
use crate::pipeline;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec file (JSON).
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
    /// Output directory; must be new, empty, or an earlier render (replaced whole).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Path of nixarr-units the units call for helper steps [default: this binary].
    #[arg(long, value_name = "PATH")]
    self_exe: Option<String>,
}

/// What was rendered where.
#[derive(Debug, Serialize)]
struct Rendered {
    services: Vec<String>,
    backend: String,
    out: PathBuf,
}

impl Output for Rendered {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "rendered {} ({}) into {}",
            super::count(self.services.len(), "service"),
            self.backend,
            self.out.display()
        )
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let exe = pipeline::self_exe(self.self_exe)?;
        let loaded = super::validate::load(ctx, &self.spec, &exe)?;
        let manifest = Manifest::new(vec![loaded.rendered.manifest.clone()]);
        crate::output::write_package(&self.out, &loaded.rendered, &manifest)?;
        ctx.printer.print(&Rendered {
            services: loaded.stack.services.keys().cloned().collect(),
            backend: loaded.stack.backend.to_string(),
            out: self.out,
        })?;
        Ok(ExitStatus::Success)
    }
}
