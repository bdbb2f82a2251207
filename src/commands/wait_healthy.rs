//! `nixarr-units wait-healthy` (the units' ExecStartPost= health gate):
//! wait until a container passes its health probe.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::{Context, ExitStatus, UsageError};
use crate::engine::Engine;
use crate::health::{self, Check};
use crate::manifest::Probe;
use crate::spec::Backend;
use crate::stop;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    backend: Backend,
    /// The engine binary.
    #[arg(long)]
    engine: String,
    /// Give up after this many seconds.
    #[arg(long)]
    timeout: u64,
    /// The container's health command (run by the engine).
    #[arg(long, conflicts_with_all = ["http", "tcp"])]
    exec: Option<String>,
    /// URL to probe from the host.
    #[arg(long, conflicts_with = "tcp")]
    http: Option<String>,
    #[arg(long, default_value = "GET")]
    method: String,
    #[arg(long)]
    expect_status: Option<u16>,
    #[arg(long)]
    expect_body: Option<String>,
    /// host:port to connect to.
    #[arg(long)]
    tcp: Option<String>,
    /// The container's stop grace: on SIGTERM (systemd stops the unit while
    /// it starts), stop the container with it instead of waiting on.
    #[arg(long, value_name = "SECONDS")]
    stop_time: Option<u64>,
    container: String,
}

impl clap::ValueEnum for Backend {
    fn value_variants<'a>() -> &'a [Self] {
        &[Backend::Podman, Backend::Docker]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

impl Args {
    pub fn run(self, _: &Context) -> Result<ExitStatus> {
        let engine = Engine::new(self.backend, self.engine);
        let check = if let Some(cmd) = self.exec {
            Check::Exec {
                engine: engine.clone(),
                container: self.container.clone(),
                cmd,
            }
        } else if let Some(url) = self.http {
            Check::Host(Probe::Http {
                url,
                method: self.method,
                expect_status: self.expect_status,
                expect_body: self.expect_body,
            })
        } else if let Some(address) = self.tcp {
            Check::Host(Probe::Tcp { address })
        } else {
            return Err(UsageError("give --exec, --http or --tcp".to_owned()).into());
        };
        let main_pid = std::env::var("MAINPID").ok();
        let watched = health::Watched {
            engine,
            container: self.container.clone(),
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
            &self.container,
            Some(&watched),
            Some(&term),
        )?;
        if !healthy && let Some(grace) = self.stop_time {
            tracing::info!("{}: stop asked while waiting for health", self.container);
            stop::stop_container(
                &watched.engine,
                grace,
                &self.container,
                main_pid.as_deref(),
                Path::new(stop::MARKER_DIR),
            )?;
        }
        Ok(ExitStatus::Success)
    }
}
