//! The command layer: one file per command, each an [`Args`](clap::Args)
//! struct with `run(self, &Context) -> Result<ExitStatus>`.
//!
//! A command parses its own flags, calls domain code (which returns data
//! and never prints), and hands what it shows to [`Printer`], which renders
//! text or, with `--json`, JSON. Errors the user can fix by changing the
//! command line are [`UsageError`]s (exit status 2).
//!
//! To add a command: write `src/commands/NAME.rs` with `pub struct Args`
//! (`#[derive(clap::Args)]`, its doc comment is the help text) and
//! `impl Args { pub fn run(self, ctx: &Context) -> Result<ExitStatus> }`,
//! then add `mod NAME;` and one variant to [`Command`] with its arm in
//! [`Command::run`]. See docs/architecture.md.

mod context;
mod printer;

mod backup;
mod catalog;
mod completions;
mod config;
mod container_stopped;
mod diff;
mod ensure_dir;
mod generator;
mod heal;
mod init;
mod jobs;
mod login;
mod logs;
mod man;
mod migration;
mod pull;
mod reconcile;
mod reload;
mod render;
mod restore;
mod secrets;
mod serve;
mod status;
mod stop_container;
mod update;
mod validate;
mod vpn;
mod wait_healthy;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

pub use crate::error::UsageError;
pub use context::{Context, GlobalArgs};
pub use migration::Args as MigrationArgs;
pub use printer::{Format, Output, Printer, columns, count};

/// How a command ended: the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done; every service is as asked.
    Success,
    /// 1: the command ran but something is unhealthy, failed or stopped
    /// (or an error that is not the user's input).
    Failure,
    /// 2: the command line or an input file is wrong.
    Usage,
    /// Another status a command defines (`update --check`: 100 when
    /// updates are available).
    Code(u8),
}

impl ExitStatus {
    /// The status for an error that ended a command: 2 when the user's input
    /// was wrong (a [`UsageError`], or a [`SpecError`](crate::error::SpecError)
    /// in a spec file), else 1.
    pub fn of_error(e: &anyhow::Error) -> Self {
        if e.is::<UsageError>() || e.is::<crate::error::SpecError>() {
            ExitStatus::Usage
        } else {
            ExitStatus::Failure
        }
    }

    /// [`Success`](ExitStatus::Success) when `ok`, else
    /// [`Failure`](ExitStatus::Failure).
    pub fn ok_if(ok: bool) -> Self {
        if ok {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        match s {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::Usage => ExitCode::from(2),
            ExitStatus::Code(c) => ExitCode::from(c),
        }
    }
}

/// Every subcommand of `nixarr-units`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render a spec into DIR/lib/systemd/system and DIR/share/nixarr-units/manifest.json.
    Render(render::Args),
    /// Check a spec and report what it would render, writing nothing.
    Validate(validate::Args),
    /// Run as a systemd generator (systemd calls it as nixarr-units-generator).
    #[command(hide = true)]
    Generator(generator::Args),
    /// Apply an edited spec: daemon-reload, then restart each running service
    /// whose container was created from another configuration.
    Reload(reload::Args),
    /// Show every managed service: unit state, health, restarts, memory, ports.
    ///
    /// Exit status: 0 when every unit is active and no probe fails, 1 when
    /// something is unhealthy, failed or stopped, 2 on usage errors.
    Status(status::Args),
    /// Start services and wait until systemd has started them.
    Start(jobs::Args),
    /// Stop services and wait until they are stopped.
    Stop(jobs::Args),
    /// Restart services and wait until they are running again.
    Restart(jobs::Args),
    /// Show the journal of services and of their secret bridges.
    Logs(logs::Args),
    /// The VPN (Gluetun) container.
    Vpn(vpn::Args),
    /// Write a first stack: ask on a terminal (or take --yes and flags),
    /// then write a NixOS module block or a JSON spec.
    Init(init::Args),
    /// The effective configuration, each value with its source; `config
    /// validate` checks a spec.
    Config(config::Args),
    /// The catalog's apps: image, ports, volumes, health probe, native
    /// service, profile.
    Catalog(catalog::Args),
    /// What a render would change in the installed units: a unified diff
    /// per unit and the running services that would restart.
    ///
    /// Exit status: 0 when nothing would change, 1 when something would,
    /// 2 on usage errors.
    Diff(diff::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell).
    Completions(completions::Args),
    /// Write man pages for nixarr-units and nixarr-migrate.
    Man(man::Args),
    /// Restart Docker services that stay unhealthy (run by <prefix>-health.timer).
    #[command(hide = true)]
    Heal(heal::Args),
    /// Compare what the engines run with the manifest: restart drifted
    /// services, start missing ones, report (or with --prune remove) orphan
    /// and forged containers.
    ///
    /// Classes: ok, drift, missing, orphan, forged, foreign (docs/spec.md,
    /// "Reconcile"). A pass whose engine or D-Bus read fails does nothing.
    /// Exit status: 0 when everything is ok, 1 when the pass acted or found
    /// something (or a read failed), 2 on usage errors.
    Reconcile(reconcile::Args),
    /// Move a service from its native NixOS unit into its container and back
    /// (also installed as `nixarr-migrate`).
    Migration(migration::Args),
    /// Back up services while they run: SQLite databases through SQLite's
    /// online backup API, into DIR/<service>/<timestamp>/ with a manifest.
    Backup(backup::Args),
    /// Put a backup back; roll back by itself if the service does not
    /// turn healthy.
    Restore(restore::Args),
    /// Deliver or remove a service's secrets (run by its secret bridge unit).
    #[command(hide = true)]
    Secrets(secrets::Args),
    /// Pull the images services run (the locked digest, else the tag).
    Pull(pull::Args),
    /// Update services whose image tag points to a new digest: pull, record
    /// it (the image lock), restart only those, roll back what does not
    /// turn healthy.
    ///
    /// Exit status: 0 when done (with --check: every image current), 1 when
    /// a service was rolled back, 2 on usage errors, 100 with --check when
    /// updates are available.
    Update(update::Args),
    /// Serve the control API (status, start/stop/restart) over a unix
    /// socket and TCP, with tokens (docs/api.md).
    Serve(serve::Args),
    /// Log the engine in to a private registry (the password from a file,
    /// never on a command line).
    Login(login::Args),
    /// Create missing host directories for a container (used by the units).
    #[command(hide = true)]
    EnsureDir(ensure_dir::Args),
    /// Wait until a container passes its health probe (used by the units).
    #[command(hide = true)]
    WaitHealthy(wait_healthy::Args),
    /// Stop a container with its grace period (the units' ExecStop=).
    #[command(hide = true)]
    StopContainer(stop_container::Args),
    /// Judge how a container ended (the units' ExecStopPost=).
    #[command(hide = true)]
    ContainerStopped(container_stopped::Args),
}

impl Command {
    /// Run the command.
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        use crate::systemd::Verb;
        match self {
            Command::Render(a) => a.run(ctx),
            Command::Validate(a) => a.run(ctx),
            Command::Generator(a) => a.run(ctx),
            Command::Reload(a) => a.run(ctx),
            Command::Status(a) => a.run(ctx),
            Command::Start(a) => a.run(Verb::Start, ctx),
            Command::Stop(a) => a.run(Verb::Stop, ctx),
            Command::Restart(a) => a.run(Verb::Restart, ctx),
            Command::Logs(a) => a.run(ctx),
            Command::Vpn(a) => a.run(ctx),
            Command::Init(a) => a.run(ctx),
            Command::Config(a) => a.run(ctx),
            Command::Catalog(a) => a.run(ctx),
            Command::Diff(a) => a.run(ctx),
            Command::Completions(a) => a.run(ctx),
            Command::Man(a) => a.run(ctx),
            Command::Heal(a) => a.run(ctx),
            Command::Reconcile(a) => a.run(ctx),
            Command::Migration(a) => a.run(ctx),
            Command::Backup(a) => a.run(ctx),
            Command::Restore(a) => a.run(ctx),
            Command::Secrets(a) => a.run(ctx),
            Command::Pull(a) => a.run(ctx),
            Command::Update(a) => a.run(ctx),
            Command::Login(a) => a.run(ctx),
            Command::Serve(a) => a.run(ctx),
            Command::EnsureDir(a) => a.run(ctx),
            Command::WaitHealthy(a) => a.run(ctx),
            Command::StopContainer(a) => a.run(ctx),
            Command::ContainerStopped(a) => a.run(ctx),
        }
    }

    /// The generator logs to the journal itself, not to stderr.
    pub fn is_generator(&self) -> bool {
        matches!(self, Command::Generator(_))
    }
}

/// `--backend podman|docker`.
impl clap::ValueEnum for crate::spec::Backend {
    fn value_variants<'a>() -> &'a [Self] {
        use crate::spec::Backend;
        &[Backend::Podman, Backend::Docker]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// Which services a command is about: names, or `--all`.
#[derive(Debug, clap::Args)]
pub struct Services {
    /// Services (service or unit names).
    #[arg(required_unless_present = "all")]
    services: Vec<String>,
    /// Every service.
    #[arg(long, conflicts_with = "services")]
    all: bool,
}

impl Services {
    /// The names to select (empty: every service).
    pub fn names(self) -> Vec<String> {
        if self.all { Vec::new() } else { self.services }
    }
}

/// A positive number of seconds (`0.5`, `2`), for clap: a bad one is a
/// usage error.
pub(crate) fn seconds(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .and_then(|f| Duration::try_from_secs_f64(f).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` is not a positive number of seconds; write e.g. 1 or 0.5"))
}

/// A positive whole number of seconds, for clap.
pub(crate) fn whole_seconds(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is not a positive whole number of seconds; write e.g. 600"))
}
