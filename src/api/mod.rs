//! `nixarr-units serve`: the control API over HTTP (axum on tokio) on a
//! unix socket and, when configured, TCP addresses (socket-activated by
//! `<prefix>-api.socket`, or bound by the command itself). Routes and
//! status codes are in docs/api.md and docs/api.yaml.
//!
//! - [`auth`]: the read and control tokens (TCP only: the unix socket's
//!   mode and group decide who may connect).
//! - [`cache`]: the one D-Bus connection (reconnected when lost) and the
//!   status rows, refreshed per unit from its signals.
//! - [`routes`]: the router and its handlers.

mod auth;
mod cache;
mod logs;
mod metrics;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

pub use auth::Tokens;

use crate::manifest::Manifest;

/// The largest request body the API reads.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How the server was asked to run.
#[derive(Debug)]
pub struct Config {
    /// The unix socket to bind when not socket-activated.
    pub socket: Option<PathBuf>,
    /// TCP addresses to bind when not socket-activated.
    pub listen: Vec<SocketAddr>,
    pub tokens: Tokens,
    /// How often probes run and the cache is refreshed without a signal.
    pub refresh: Duration,
    /// The time each probe may take.
    pub probe_timeout: Duration,
    pub bus_address: Option<String>,
}

/// The listeners to serve: the ones systemd passed (LISTEN_FDS), else the
/// ones the configuration names.
struct Listeners {
    unix: Vec<tokio::net::UnixListener>,
    tcp: Vec<tokio::net::TcpListener>,
}

fn listeners(cfg: &Config) -> Result<Listeners> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Listeners {
        unix: Vec::new(),
        tcp: Vec::new(),
    };
    for i in 0..fds.len() {
        if let Ok(Some(l)) = fds.take_tcp_listener(i) {
            l.set_nonblocking(true)?;
            out.tcp.push(tokio::net::TcpListener::from_std(l)?);
        } else if let Some(l) = fds
            .take_unix_listener(i)
            .with_context(|| format!("socket {i} passed by systemd is neither TCP nor unix"))?
        {
            l.set_nonblocking(true)?;
            out.unix.push(tokio::net::UnixListener::from_std(l)?);
        }
    }
    if fds.len() > 0 {
        return Ok(out);
    }
    if let Some(path) = &cfg.socket {
        // A socket file left by an earlier run would make bind fail.
        if path.exists() {
            fs_err::remove_file(path)?;
        }
        let l = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("binding the unix socket {}", path.display()))?;
        out.unix.push(l);
    }
    for addr in &cfg.listen {
        let l = std::net::TcpListener::bind(addr)
            .with_context(|| format!("binding {addr} (is another process using it?)"))?;
        l.set_nonblocking(true)?;
        out.tcp.push(tokio::net::TcpListener::from_std(l)?);
    }
    Ok(out)
}

/// Serve until the process is stopped (SIGTERM, SIGINT).
pub async fn serve(cfg: Config, manifest: Manifest) -> Result<()> {
    let ls = listeners(&cfg)?;
    if ls.unix.is_empty() && ls.tcp.is_empty() {
        bail!(
            "nothing to listen on: pass --socket or --listen, or start through \
             <prefix>-api.socket"
        );
    }
    if !ls.tcp.is_empty() && cfg.tokens.control.is_none() && cfg.tokens.read.is_none() {
        return Err(crate::error::UsageError(
            "--token-file: a TCP listener needs a token; pass --token-file (and \
             --read-token-file for read-only clients)"
                .to_owned(),
        )
        .into());
    }
    // No bus is no reason to stop: /health answers, the D-Bus routes say
    // why they cannot, and the cache connects again by itself.
    let cache = cache::Cache::start(
        Arc::new(manifest),
        cfg.bus_address.clone(),
        cfg.refresh,
        cfg.probe_timeout,
    )
    .await?;
    let api = Arc::new(routes::Api {
        cache,
        tokens: cfg.tokens,
        requests: metrics::Requests::default(),
        containers_body: routes::ContainersBody::default(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for l in ls.unix {
        let app = routes::router(api.clone(), auth::Transport::Unix);
        tasks.spawn(async move { axum::serve(l, app).await });
    }
    for l in ls.tcp {
        let app = routes::router(api.clone(), auth::Transport::Tcp);
        tasks.spawn(async move { axum::serve(l, app).await });
    }
    tokio::select! {
        Some(done) = tasks.join_next() => {
            done.context("a listener's task ended")?.context("serving HTTP")?;
        }
        _ = shutdown() => {}
    }
    Ok(())
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
