//! `nixarr-units container-stopped` (the units' ExecStopPost=): judge how
//! a container ended, from what systemd passes in the environment.

use std::path::Path;

use anyhow::Result;

use super::{Context, ExitStatus};
use crate::stop;

#[derive(Debug, clap::Args)]
pub struct Args {
    container: String,
}

impl Args {
    pub fn run(self, _: &Context) -> Result<ExitStatus> {
        let var = |k: &str| std::env::var(k).ok();
        let (result, code, status) = (var("SERVICE_RESULT"), var("EXIT_CODE"), var("EXIT_STATUS"));
        stop::container_stopped(
            &self.container,
            &stop::Exit {
                service_result: result.as_deref(),
                exit_code: code.as_deref(),
                exit_status: status.as_deref(),
            },
            Path::new(stop::MARKER_DIR),
        )?;
        Ok(ExitStatus::Success)
    }
}
