//! `nixarr-units wait-healthy` (the units' ExecStartPost= health gate on
//! engines without `--sdnotify=healthy`): wait until a service's container
//! passes its health check, read from the manifest.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::{Context, ExitStatus, UsageError};
use crate::engine::Engine;
use crate::health::{self, Check};
use crate::stop;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stack (its prefix).
    #[arg(long)]
    stack: String,
    /// Give up after this many seconds.
    #[arg(long)]
    timeout: u64,
    /// The container's stop grace: on SIGTERM (systemd stops the unit while
    /// it starts), stop the container with it instead of waiting on.
    #[arg(long, value_name = "SECONDS")]
    stop_time: Option<u64>,
    /// The service.
    service: String,
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let (path, manifest) = ctx.load_manifest_for(&self.stack)?;
        let stack = manifest.stack(&path, &self.stack)?;
        let svc = stack.services.get(&self.service).ok_or_else(|| {
            UsageError(format!(
                "{}: stack `{}` has no service `{}`; render the spec again",
                path.display(),
                self.stack,
                self.service
            ))
        })?;
        let check = Check::gate(stack, svc).ok_or_else(|| {
            UsageError(format!(
                "{}: service `{}` has no health check to wait for; render the spec again",
                path.display(),
                self.service
            ))
        })?;
        let main_pid = std::env::var("MAINPID").ok();
        let watched = health::Watched {
            engine: Engine::from(stack),
            container: svc.container.clone(),
            main_pid: main_pid.as_deref().and_then(|p| p.parse().ok()),
        };
        // systemd stops a unit that is still starting by SIGTERM to its
        // processes, without ExecStop=: an image that ignores it would hold
        // the stop until TimeoutStopSec= and end the unit failed. The gate
        // stops the container as ExecStop= would.
        let term = Arc::new(AtomicBool::new(false));
        if self.stop_time.is_some() {
            signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())
                .context("installing the SIGTERM handler of the health gate")?;
        }
        let healthy = health::wait_healthy_unless(
            &check,
            Duration::from_secs(self.timeout),
            &svc.container,
            Some(&watched),
            Some(&term),
        )?;
        if !healthy && let Some(grace) = self.stop_time {
            tracing::info!("{}: stop asked while waiting for health", svc.container);
            stop::stop_container(
                &watched.engine,
                grace,
                &svc.container,
                main_pid.as_deref(),
                Path::new(stop::MARKER_DIR),
            )?;
        }
        Ok(ExitStatus::Success)
    }
}
