//! What every command is given: where the manifest and systemd are, and
//! how to print.

use std::path::PathBuf;

use anyhow::Result;

use super::printer::{Format, Printer};
use crate::manifest::{self, Manifest};
use crate::systemd::Systemd;

/// The options every command accepts (`global`: before or after the
/// subcommand).
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// More logging (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print JSON instead of text or a table (status: docs/status.md).
    #[arg(long, global = true)]
    pub json: bool,
    /// The manifest [default: /etc/nixarr-units/manifest.json, then
    /// /run/nixarr-units/manifest.json; the generator writes
    /// $NIXARR_UNITS_MANIFEST or /run/nixarr-units/manifest.json].
    #[arg(long, value_name = "FILE", global = true)]
    pub manifest: Option<PathBuf>,
    /// D-Bus address of the system bus to talk to (e.g.
    /// unix:path=/run/dbus/system_bus_socket).
    #[arg(
        long,
        env = "DBUS_SYSTEM_BUS_ADDRESS",
        value_name = "ADDRESS",
        global = true,
        value_parser = bus_address
    )]
    pub bus_address: Option<String>,
}

/// The one context of a command run: the manifest's location, the bus,
/// and the printer (which knows the output format).
#[derive(Debug)]
pub struct Context {
    /// `--manifest`: read this manifest instead of searching the default
    /// places.
    pub manifest: Option<PathBuf>,
    /// `--bus-address`: the system bus to reach systemd on.
    pub bus_address: Option<String>,
    pub printer: Printer,
}

impl Context {
    pub fn new(args: &GlobalArgs) -> Self {
        Context {
            manifest: args.manifest.clone(),
            bus_address: args.bus_address.clone(),
            printer: Printer::new(if args.json {
                Format::Json
            } else {
                Format::Text
            }),
        }
    }

    /// The manifest (the given one, else the NixOS one, else the
    /// generator's) and where it was read.
    pub fn load_manifest(&self) -> Result<(PathBuf, Manifest)> {
        manifest::load(self.manifest.as_deref())
    }

    /// The manifest that holds the stack `prefix` (the given one, else the
    /// NixOS one or the generator's, whichever has it) and where it was read.
    pub fn load_manifest_for(&self, prefix: &str) -> Result<(PathBuf, Manifest)> {
        manifest::load_for_stack(self.manifest.as_deref(), prefix)
    }

    /// systemd's manager on the bus.
    pub async fn systemd(&self) -> Result<Systemd> {
        Systemd::connect(self.bus_address.as_deref()).await
    }
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
