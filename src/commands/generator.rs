//! `nixarr-units generator` (systemd calls it as nixarr-units-generator):
//! every spec in the spec directory into the generator directory.

use std::path::PathBuf;

use anyhow::Result;

use super::{Context, ExitStatus};
use crate::generator::{self, DEFAULT_SPEC_DIR, GeneratorConfig};
use crate::manifest::RUN_MANIFEST;
use crate::pipeline;

/// Where the generator writes the manifest unless `--manifest` says.
const MANIFEST_ENV: &str = "NIXARR_UNITS_MANIFEST";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for generated units (systemd's "normal" generator directory).
    normal_dir: PathBuf,
    /// Early directory (unused).
    early_dir: Option<PathBuf>,
    /// Late directory (unused).
    late_dir: Option<PathBuf>,
    /// Where the spec files are.
    #[arg(long, env = "NIXARR_UNITS_SPEC_DIR", default_value = DEFAULT_SPEC_DIR)]
    spec_dir: PathBuf,
    /// The host's unit directories (`:`-separated): a spec whose unit
    /// already exists there is refused.
    #[arg(long, hide = true, value_delimiter = ':', default_value = generator::SYSTEM_UNIT_DIRS)]
    system_unit_dirs: Vec<PathBuf>,
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        // `--manifest` names the file to write; then $NIXARR_UNITS_MANIFEST.
        let manifest_path = ctx
            .manifest
            .clone()
            .or_else(|| {
                std::env::var_os(MANIFEST_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(RUN_MANIFEST));
        let cfg = GeneratorConfig {
            normal_dir: self.normal_dir,
            spec_dir: self.spec_dir,
            manifest_path,
            self_exe: pipeline::self_exe(None)?,
            system_unit_dirs: self.system_unit_dirs,
        };
        let failed = generator::run(&cfg)?;
        if failed > 0 {
            tracing::error!(
                "{failed} spec(s) could not be rendered; their units were not generated"
            );
            return Ok(ExitStatus::Failure);
        }
        Ok(ExitStatus::Success)
    }
}
