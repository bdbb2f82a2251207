//! Command-line interface. One binary, several names: invoked as
//! `nixarr-units-generator` (a symlink in a systemd generator directory) it
//! runs the generator; otherwise the subcommands below. `nixarr-migrate`
//! will be a further name for the same binary (multicall, one file to ship).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::control;
use crate::error::{SpecError, UsageError};
use crate::generator::{self, DEFAULT_SPEC_DIR, GeneratorConfig};
use crate::health::{self, Check};
use crate::manifest::{Manifest, RUN_MANIFEST};
use crate::model::Stack;
use crate::render::{self, Options, Rendered};
use crate::resolve::{exposure_warnings, resolve};
use crate::spec::{self, Backend};
use crate::systemd::Verb;

/// Run a media stack (or any container) as podman or Docker containers
/// supervised by systemd: render a JSON spec into systemd units.
#[derive(Debug, Parser)]
#[command(name = "nixarr-units", version, propagate_version = true)]
pub struct Cli {
    /// More logging (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render a spec into DIR/lib/systemd/system and DIR/share/nixarr-units/manifest.json.
    Render(RenderArgs),
    /// Check a spec and report what it would render, writing nothing.
    Validate(ValidateArgs),
    /// Run as a systemd generator (systemd calls it as nixarr-units-generator).
    Generator(GeneratorArgs),
    /// Apply an edited spec: daemon-reload, then restart each running service
    /// whose container was created from another configuration.
    Reload(ReloadArgs),
    /// Show every managed service: unit state, health, restarts, memory, ports.
    ///
    /// Exit status: 0 when every unit is active and no probe fails, 1 when
    /// something is unhealthy, failed or stopped, 2 on usage errors.
    Status(StatusArgs),
    /// Start services and wait until systemd has started them.
    Start(JobArgs),
    /// Stop services and wait until they are stopped.
    Stop(JobArgs),
    /// Restart services and wait until they are running again.
    Restart(JobArgs),
    /// Show the journal of a service and of its secret bridge.
    Logs(LogsArgs),
    /// The VPN (Gluetun) container.
    Vpn {
        #[command(subcommand)]
        command: VpnCommand,
    },
    /// Restart Docker services that stay unhealthy (run by <prefix>-health.timer).
    Heal {
        /// The stack (its prefix).
        #[arg(long)]
        stack: String,
        #[command(flatten)]
        at: Where,
    },
    /// Move a service from its native NixOS unit into its container and back
    /// (also installed as `nixarr-migrate`).
    Migration(MigrationArgs),
    /// Deliver or remove a service's secrets (run by its secret bridge unit).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Create missing host directories for a container (used by the units).
    #[command(hide = true)]
    EnsureDir(EnsureDirArgs),
    /// Wait until a container passes its health probe (used by the units).
    #[command(hide = true)]
    WaitHealthy(WaitHealthyArgs),
    /// Stop a container with its grace period (the units' ExecStop=).
    #[command(hide = true)]
    StopContainer(StopContainerArgs),
    /// Judge how a container ended (the units' ExecStopPost=).
    #[command(hide = true)]
    ContainerStopped { container: String },
}

#[derive(Debug, Args)]
struct StopContainerArgs {
    /// The engine binary.
    #[arg(long)]
    engine: String,
    /// Seconds between the stop signal and SIGKILL.
    #[arg(long)]
    time: u64,
    container: String,
}

/// `nixarr-units migration`, and the whole of `nixarr-migrate`.
#[derive(Debug, Args)]
struct MigrationArgs {
    #[command(subcommand)]
    command: MigrationCommand,
    #[command(flatten)]
    at: Where,
    /// Where migration journals and snapshots live.
    #[arg(long, env = "NIXARR_MIGRATE_DIR", default_value = crate::migrate::journal::JOURNAL_ROOT, global = true)]
    journal_dir: PathBuf,
    /// Seconds to wait for each unit job and for the container's health.
    #[arg(long, default_value_t = 600, global = true, value_parser = whole_seconds)]
    timeout: u64,
}

// The binary called as `nixarr-migrate`: its own name in usage and help.
/// Move a service from its native NixOS unit into its container and back.
#[derive(Debug, Parser)]
#[command(name = "nixarr-migrate", version, propagate_version = true)]
struct MigrateCli {
    /// More logging (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    args: MigrationArgs,
}

#[derive(Debug, Args)]
struct RenderArgs {
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

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The spec file (JSON).
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
}

#[derive(Debug, Args)]
struct GeneratorArgs {
    /// Directory for generated units (systemd's "normal" generator directory).
    normal_dir: PathBuf,
    /// Early directory (unused).
    early_dir: Option<PathBuf>,
    /// Late directory (unused).
    late_dir: Option<PathBuf>,
    /// Where the spec files are.
    #[arg(long, env = "NIXARR_UNITS_SPEC_DIR", default_value = DEFAULT_SPEC_DIR)]
    spec_dir: PathBuf,
    /// Where to write the manifest.
    #[arg(long, env = "NIXARR_UNITS_MANIFEST", default_value = RUN_MANIFEST)]
    manifest: PathBuf,
    /// The host's unit directories (`:`-separated): a spec whose unit
    /// already exists there is refused.
    #[arg(long, hide = true, value_delimiter = ':', default_value = generator::SYSTEM_UNIT_DIRS)]
    system_unit_dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct ReloadArgs {
    #[command(flatten)]
    at: Where,
    /// Seconds to wait for the restarts.
    #[arg(long, default_value_t = 900, value_name = "SECONDS", value_parser = whole_seconds)]
    timeout: u64,
    /// Do not run `systemctl daemon-reload` first.
    #[arg(long)]
    no_daemon_reload: bool,
    /// Only print what would be restarted.
    #[arg(long)]
    dry_run: bool,
}

/// Where the manifest and systemd are.
#[derive(Debug, Args)]
struct Where {
    /// The manifest [default: /etc/nixarr-units/manifest.json, then
    /// /run/nixarr-units/manifest.json].
    #[arg(long, value_name = "FILE", global = true)]
    manifest: Option<PathBuf>,
    /// D-Bus address of the system bus to talk to (e.g.
    /// unix:path=/run/dbus/system_bus_socket).
    #[arg(
        long,
        env = "DBUS_SYSTEM_BUS_ADDRESS",
        value_name = "ADDRESS",
        global = true,
        value_parser = bus_address
    )]
    bus_address: Option<String>,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Services to show (service or unit names) [default: all].
    services: Vec<String>,
    /// Print JSON (schema: docs/status.md).
    #[arg(long)]
    json: bool,
    /// Keep redrawing as states change (Ctrl-C to quit).
    #[arg(long)]
    watch: bool,
    /// Do not run health probes.
    #[arg(long)]
    no_probe: bool,
    /// Seconds each probe may take.
    #[arg(long, default_value = "1", value_name = "SECONDS", value_parser = seconds)]
    probe_timeout: Duration,
    #[command(flatten)]
    at: Where,
}

#[derive(Debug, Args)]
struct JobArgs {
    /// Services (service or unit names).
    #[arg(required_unless_present = "all")]
    services: Vec<String>,
    /// Every service (the stack's target).
    #[arg(long, conflicts_with = "services")]
    all: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS", value_parser = whole_seconds)]
    timeout: u64,
    #[command(flatten)]
    at: Where,
}

#[derive(Debug, Args)]
struct LogsArgs {
    service: String,
    /// Follow new entries.
    #[arg(short, long)]
    follow: bool,
    /// How many lines to show.
    #[arg(short = 'n', long)]
    lines: Option<usize>,
    /// The manifest [default: /etc/nixarr-units/manifest.json, then
    /// /run/nixarr-units/manifest.json].
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum VpnCommand {
    /// The VPN unit's state, its health and the public IP.
    Status {
        /// Seconds the probes may take.
        #[arg(long, default_value = "2", value_name = "SECONDS", value_parser = seconds)]
        timeout: Duration,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Debug, Subcommand)]
enum MigrationCommand {
    /// Per service: native unit and state, container unit and state, data,
    /// migration phase, conflicts.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The exact steps `migrate` would take; changes nothing.
    Plan {
        service: String,
        #[arg(long)]
        json: bool,
    },
    /// Migrate services (dependencies first), resuming an interrupted run.
    Migrate {
        #[arg(required_unless_present = "all")]
        services: Vec<String>,
        /// Every service with a native unit.
        #[arg(long, conflicts_with = "services")]
        all: bool,
        /// Migrate into a non-empty target (its contents are kept aside
        /// and restored on rollback).
        #[arg(long)]
        force: bool,
    },
    /// Stop the container and start the native service again with its data
    /// exactly as it was (NAR hash verified).
    Rollback {
        #[arg(required_unless_present = "all")]
        services: Vec<String>,
        #[arg(long, conflicts_with = "services")]
        all: bool,
    },
    /// Delete the snapshot and journal of a finished or rolled-back migration.
    Finalize { service: String },
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Check every source and place the copies (files, env file, podman secrets).
    Install(SecretsArgs),
    /// Remove every copy.
    Remove(SecretsArgs),
}

#[derive(Debug, Args)]
struct SecretsArgs {
    /// The stack (its prefix).
    #[arg(long)]
    stack: String,
    /// The service.
    service: String,
    /// The manifest [default: /etc/nixarr-units/manifest.json, then
    /// /run/nixarr-units/manifest.json].
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EnsureDirArgs {
    /// Owner as UID:GID.
    #[arg(long)]
    owner: String,
    /// Octal mode.
    #[arg(long, default_value = "0750")]
    mode: String,
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct WaitHealthyArgs {
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

fn init_logging(verbose: u8, generator: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour on a terminal only: the journal (units, the generator,
        // `systemctl status`) and pipes get plain text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .without_time()
        .with_target(false);
    // Unit helpers log to the journal through stderr, which adds its own
    // timestamps and identifiers; the generator has no such stderr and
    // writes to the journal itself.
    let _ = if generator {
        builder
            .with_ansi(false)
            .with_writer(crate::genlog::GeneratorLog::default())
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The entry point for every name of the binary.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let cli = if argv0.ends_with("-generator") {
        // systemd calls generators with three directories and nothing else.
        let mut v: Vec<OsString> = vec!["nixarr-units".into(), "generator".into()];
        v.extend(args.into_iter().skip(1));
        Cli::try_parse_from(v)
    } else if argv0 == "nixarr-migrate" {
        // `nixarr-migrate X` is `nixarr-units migration X`, with its own
        // name in usage and help.
        MigrateCli::try_parse_from(args).map(|m| Cli {
            verbose: m.verbose,
            command: Command::Migration(m.args),
        })
    } else {
        Cli::try_parse_from(args)
    };
    let cli = match cli {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.verbose, matches!(cli.command, Command::Generator(_)));
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let usage = e.downcast_ref::<SpecError>().is_some()
                || e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<crate::migrate::Refusal>().is_some();
            if usage {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn self_exe(given: Option<String>) -> Result<String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot find the path of this binary")?;
    let exe = exe.to_str().with_context(|| {
        format!(
            "the path of this binary ({}) is not UTF-8; pass --self-exe",
            exe.display()
        )
    })?;
    Ok(exe.to_owned())
}

/// A positive number of seconds (`0.5`, `2`), for clap: a bad one is a
/// usage error.
fn seconds(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .and_then(|f| Duration::try_from_secs_f64(f).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` is not a positive number of seconds; write e.g. 1 or 0.5"))
}

/// A positive whole number of seconds, for clap.
fn whole_seconds(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is not a positive whole number of seconds; write e.g. 600"))
}

/// A D-Bus address as zbus parses it (`unix:path=/run/dbus/system_bus_socket`).
fn bus_address(s: &str) -> Result<String, String> {
    s.parse::<zbus::Address>()
        .map(|_| s.to_owned())
        .map_err(|e| {
            format!(
                "`{s}` is not a D-Bus address ({e}); write e.g. \
             unix:path=/run/dbus/system_bus_socket"
            )
        })
}

fn jobs(verb: Verb, a: JobArgs) -> Result<ExitCode> {
    control::jobs(
        &control::Target {
            manifest: a.at.manifest.as_deref(),
            bus_address: a.at.bus_address.as_deref(),
        },
        &control::JobOptions {
            verb,
            services: a.services,
            all: a.all,
            timeout: Duration::from_secs(a.timeout),
        },
    )
}

/// Parse, validate and render one spec file, writing nothing. Where the
/// spec does not say which engine version the units are for, the installed
/// engine is asked, as the generator does; when there is none to ask, a
/// note says what was assumed.
pub fn load_and_render(path: &Path, self_exe: &str) -> Result<(Stack, Rendered)> {
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
            ) =>
        {
            return Err(UsageError(format!(
                "cannot read the spec {origin}: {e}; check the path given to --spec"
            ))
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read the spec {origin}")),
    };
    let mut spec = spec::parse(&text, &origin)?;
    if let Some(note) = generator::detect_engine(&mut spec) {
        eprintln!("note: {origin}: {note}");
    }
    let mut stack = resolve(&spec, &origin)?;
    crate::images::lock::apply(path, spec.image_lock.as_deref(), &mut stack)?;
    for w in exposure_warnings(&stack) {
        eprintln!("warning: {origin}: {w}");
    }
    let rendered = render::render(
        &stack,
        &Options {
            self_exe: self_exe.to_owned(),
            source_path: None,
        },
    )
    .map_err(|e| SpecError::at(&origin, "services", e.to_string()))?;
    Ok((stack, rendered))
}

fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Render(a) => {
            let exe = self_exe(a.self_exe)?;
            let (stack, rendered) = load_and_render(&a.spec, &exe)?;
            let manifest = Manifest::new(vec![rendered.manifest.clone()]);
            crate::output::write_package(&a.out, &rendered, &manifest)?;
            println!(
                "rendered {} services ({}) into {}",
                stack.services.len(),
                stack.backend,
                a.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(a) => {
            let exe = self_exe(None)?;
            let (stack, rendered) = load_and_render(&a.spec, &exe)?;
            let files = rendered.units.keys().filter(|k| !k.contains('/')).count();
            println!(
                "{}: valid; {} services on {} ({} unit files): {}",
                a.spec.display(),
                stack.services.len(),
                stack.backend,
                files,
                stack
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Generator(a) => {
            let cfg = GeneratorConfig {
                normal_dir: a.normal_dir,
                spec_dir: a.spec_dir,
                manifest_path: a.manifest,
                self_exe: self_exe(None)?,
                system_unit_dirs: a.system_unit_dirs,
            };
            let failed = generator::run(&cfg)?;
            if failed > 0 {
                tracing::error!(
                    "{failed} spec(s) could not be rendered; their units were not generated"
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload(a) => {
            crate::reload::reload(&crate::reload::ReloadConfig {
                manifest: a.at.manifest,
                bus_address: a.at.bus_address,
                skip_daemon_reload: a.no_daemon_reload,
                dry_run: a.dry_run,
                timeout: Duration::from_secs(a.timeout),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(a) => {
            let target = control::Target {
                manifest: a.at.manifest.as_deref(),
                bus_address: a.at.bus_address.as_deref(),
            };
            control::status(
                &target,
                &control::StatusOptions {
                    services: a.services,
                    json: a.json,
                    watch: a.watch,
                    probe: !a.no_probe,
                    timeout: a.probe_timeout,
                },
            )
        }
        Command::Start(a) => jobs(Verb::Start, a),
        Command::Stop(a) => jobs(Verb::Stop, a),
        Command::Restart(a) => jobs(Verb::Restart, a),
        Command::Logs(a) => control::logs(a.manifest.as_deref(), &a.service, a.follow, a.lines),
        Command::Vpn {
            command: VpnCommand::Status { timeout, at },
        } => control::vpn_status(
            &control::Target {
                manifest: at.manifest.as_deref(),
                bus_address: at.bus_address.as_deref(),
            },
            timeout,
        ),
        Command::Heal { stack, at } => {
            crate::heal::run(at.manifest.as_deref(), &stack, at.bus_address.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migration(MigrationArgs {
            command,
            at,
            journal_dir,
            timeout,
        }) => {
            let ctx = crate::migrate::Ctx {
                manifest: at.manifest,
                bus_address: at.bus_address,
                journal_root: journal_dir,
                timeout: Duration::from_secs(timeout),
            };
            match command {
                MigrationCommand::Status { json } => crate::migrate::status(&ctx, json)?,
                MigrationCommand::Plan { service, json } => {
                    crate::migrate::plan(&ctx, &service, json)?
                }
                MigrationCommand::Migrate {
                    services,
                    all,
                    force,
                } => {
                    for s in crate::migrate::order(&ctx, &services, all, false)? {
                        crate::migrate::migrate(&ctx, &s, force)?;
                    }
                }
                MigrationCommand::Rollback { services, all } => {
                    for s in crate::migrate::order(&ctx, &services, all, true)? {
                        crate::migrate::rollback(&ctx, &s)?;
                    }
                }
                MigrationCommand::Finalize { service } => crate::migrate::finalize(&ctx, &service)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets { command } => {
            let (a, install) = match command {
                SecretsCommand::Install(a) => (a, true),
                SecretsCommand::Remove(a) => (a, false),
            };
            crate::secrets::run(a.manifest.as_deref(), &a.stack, &a.service, install)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::EnsureDir(a) => {
            let (uid, gid) = a
                .owner
                .split_once(':')
                .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
                .with_context(|| format!("--owner {}: write it as UID:GID", a.owner))?;
            let mode = u32::from_str_radix(&a.mode, 8)
                .with_context(|| format!("--mode {}: not an octal mode", a.mode))?;
            health::ensure_dirs(&a.paths, uid, gid, mode)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::StopContainer(a) => {
            crate::stop::stop_container(
                &crate::engine::Engine::from_path(a.engine),
                a.time,
                &a.container,
                std::env::var("MAINPID").ok().as_deref(),
                Path::new(crate::stop::MARKER_DIR),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ContainerStopped { container } => {
            let var = |k: &str| std::env::var(k).ok();
            let (result, code, status) =
                (var("SERVICE_RESULT"), var("EXIT_CODE"), var("EXIT_STATUS"));
            crate::stop::container_stopped(
                &container,
                &crate::stop::Exit {
                    service_result: result.as_deref(),
                    exit_code: code.as_deref(),
                    exit_status: status.as_deref(),
                },
                Path::new(crate::stop::MARKER_DIR),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::WaitHealthy(a) => {
            let engine = crate::engine::Engine::new(a.backend, a.engine);
            let check = if let Some(cmd) = a.exec {
                Check::Exec {
                    engine: engine.clone(),
                    container: a.container.clone(),
                    cmd,
                }
            } else if let Some(url) = a.http {
                Check::Http {
                    url,
                    method: a.method,
                    expect_status: a.expect_status,
                    expect_body: a.expect_body,
                }
            } else if let Some(address) = a.tcp {
                Check::Tcp { address }
            } else {
                bail!("give --exec, --http or --tcp");
            };
            let watched = health::Watched {
                engine,
                container: a.container.clone(),
                main_pid: std::env::var("MAINPID").ok().and_then(|p| p.parse().ok()),
            };
            // systemd stops a unit that is still starting by SIGTERM to
            // its processes, without ExecStop=: an image that ignores it
            // would hold the stop until TimeoutStopSec= and end the unit
            // failed. The gate stops the container as ExecStop= would.
            let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            if a.stop_time.is_some() {
                signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())
                    .context("installing the SIGTERM handler of the health gate")?;
            }
            let healthy = health::wait_healthy_unless(
                &check,
                Duration::from_secs(a.timeout),
                &a.container,
                Some(&watched),
                Some(&term),
            )?;
            if !healthy && let Some(grace) = a.stop_time {
                tracing::info!("{}: stop asked while waiting for health", a.container);
                crate::stop::stop_container(
                    &watched.engine,
                    grace,
                    &a.container,
                    std::env::var("MAINPID").ok().as_deref(),
                    Path::new(crate::stop::MARKER_DIR),
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
