//! `nixarr-units serve`: the control API (src/api/, docs/api.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::{Context, ExitStatus, UsageError};
use crate::api;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Listen on this unix socket (when not started by <prefix>-api.socket).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Listen on this TCP address, e.g. 127.0.0.1:8089 (repeatable; when
    /// not started by <prefix>-api.socket). Needs --token-file.
    #[arg(long, value_name = "ADDRESS")]
    listen: Vec<SocketAddr>,
    /// The control token (every route), read once at start.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The read token (GET routes only).
    #[arg(long, value_name = "FILE")]
    read_token_file: Option<PathBuf>,
    /// Seconds between health probes (the state itself follows systemd's
    /// signals).
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = super::seconds)]
    refresh: Duration,
    /// Seconds each probe may take.
    #[arg(long, default_value = "1", value_name = "SECONDS", value_parser = super::seconds)]
    probe_timeout: Duration,
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        if !self.listen.is_empty() && self.token_file.is_none() && self.read_token_file.is_none() {
            return Err(UsageError(
                "--listen: a TCP listener needs a token; pass --token-file (and \
                 --read-token-file for read-only clients)"
                    .to_owned(),
            )
            .into());
        }
        let tokens =
            api::Tokens::load(self.token_file.as_deref(), self.read_token_file.as_deref())?;
        let (_, manifest) = ctx.load_manifest()?;
        let cfg = api::Config {
            socket: self.socket,
            listen: self.listen,
            tokens,
            refresh: self.refresh,
            probe_timeout: self.probe_timeout,
            bus_address: ctx.bus_address.clone(),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        rt.block_on(api::serve(cfg, manifest))?;
        Ok(ExitStatus::Success)
    }
}
