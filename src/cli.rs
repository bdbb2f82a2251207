//! Command-line entry. One binary, several names: invoked as
//! `nixarr-units-generator` (a symlink in a systemd generator directory) it
//! runs the generator; as `nixarr-migrate`, the `migration` commands;
//! otherwise the subcommands of [`crate::commands`]. This file parses,
//! sets up logging, dispatches, and turns the result into an exit status.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::commands::{Command, Context, ExitStatus, GlobalArgs, MigrationArgs};

/// Run a media stack (or any container) as podman or Docker containers
/// supervised by systemd: render a JSON spec into systemd units.
#[derive(Debug, Parser)]
#[command(name = "nixarr-units", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

// The binary called as `nixarr-migrate`: its own name in usage and help.
/// Move a service from its native NixOS unit into its container and back.
#[derive(Debug, Parser)]
#[command(name = "nixarr-migrate", version, propagate_version = true)]
struct MigrateCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(flatten)]
    args: MigrationArgs,
}

/// The command line of `nixarr-units`, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}

/// The command line of `nixarr-migrate`.
pub fn migrate_command() -> clap::Command {
    MigrateCli::command()
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

/// Parse the command line for the name the binary was called by.
fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let argv0 = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if argv0.ends_with("-generator") {
        // systemd calls generators with three directories and nothing else.
        let mut v: Vec<OsString> = vec!["nixarr-units".into(), "generator".into()];
        v.extend(args.into_iter().skip(1));
        Cli::try_parse_from(v)
    } else if argv0 == "nixarr-migrate" {
        // `nixarr-migrate X` is `nixarr-units migration X`, with its own
        // name in usage and help.
        MigrateCli::try_parse_from(args).map(|m| Cli {
            global: m.global,
            command: Command::Migration(m.args),
        })
    } else {
        Cli::try_parse_from(args)
    }
}

/// The entry point for every name of the binary.
pub fn main() -> ExitCode {
    let cli = match parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitStatus::Usage.into()
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.global.verbose, cli.command.is_generator());
    let ctx = Context::new(&cli.global);
    match cli.command.run(&ctx) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitStatus::of_error(&e).into()
        }
    }
}
