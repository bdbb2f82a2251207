//! `nixarr-units stop-container` (the units' ExecStop=): stop a container
//! with its grace period.

use std::path::Path;

use anyhow::Result;

use super::{Context, ExitStatus};
use crate::engine::Engine;
use crate::stop;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The engine binary.
    #[arg(long)]
    engine: String,
    /// Seconds between the stop signal and SIGKILL.
    #[arg(long)]
    time: u64,
    container: String,
}

impl Args {
    pub fn run(self, _: &Context) -> Result<ExitStatus> {
        stop::stop_container(
            &Engine::from_path(self.engine),
            self.time,
            &self.container,
            std::env::var("MAINPID").ok().as_deref(),
            Path::new(stop::MARKER_DIR),
        )?;
        Ok(ExitStatus::Success)
    }
}
