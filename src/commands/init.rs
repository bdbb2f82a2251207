//! `nixarr-units init`: write a first stack. On a terminal it asks (see
//! [`crate::wizard`]); with `--yes` it takes the flags and what it finds on
//! the host. Either way the answers go through the same resolver as
//! `render` before a NixOS module block (`--format nix`) or a JSON spec
//! (`--format json`) is written, and an existing file is never replaced
//! without `--force`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{Context, ExitStatus, Output, UsageError};
use crate::host::Host;
use crate::init::{Answers, VpnType};
use crate::spec::Backend;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Ask nothing: take the flags and the host's values (for scripts).
    #[arg(short, long)]
    yes: bool,
    /// Catalog apps, comma-separated [default: prowlarr,radarr,sonarr].
    #[arg(long, value_name = "APP,…", value_delimiter = ',')]
    apps: Option<Vec<String>>,
    /// Container engine [default: the installed one, else podman].
    #[arg(long)]
    backend: Option<Backend>,
    /// Route the downloaders (qbittorrent, transmission, sabnzbd) through
    /// Gluetun with this VPN type.
    #[arg(long, value_name = "TYPE", value_parser = ["wireguard", "openvpn"])]
    vpn: Option<String>,
    /// Gluetun's VPN_SERVICE_PROVIDER (with --vpn).
    #[arg(long, value_name = "NAME", default_value = "mullvad")]
    vpn_provider: String,
    /// A VPN secret's file, as VAR=PATH (e.g.
    /// WIREGUARD_PRIVATE_KEY=/run/secrets/wg-key); the key itself is never
    /// asked for [default: /run/secrets/wireguard-private-key, or
    /// /run/secrets/openvpn-user and /run/secrets/openvpn-password].
    #[arg(long, value_name = "VAR=PATH")]
    secret: Vec<String>,
    /// Time zone of the containers [default: the host's].
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// User id the apps run as [default: 568].
    #[arg(long, value_name = "UID")]
    puid: Option<u64>,
    /// Group id [default: the media group's, else 169].
    #[arg(long, value_name = "GID")]
    pgid: Option<u64>,
    /// Parent of the apps' config directories [default: /var/lib/nixarr].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<String>,
    /// The media tree [default: /data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// What to write [default: nix on NixOS, else json].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The file to write [default: nixarr-units.nix or nixarr-units.json].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace FILE when it exists.
    #[arg(long)]
    force: bool,
}

/// What `init` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    /// A NixOS module block for configuration.nix.
    Nix,
    /// A JSON spec for `render` or the generator.
    Json,
}

/// What was written.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Written {
    file: PathBuf,
    format: Format,
    backend: Backend,
    services: Vec<String>,
    behind_vpn: Vec<String>,
    /// Host ports of chosen apps that something on this host already uses.
    ports_taken: Vec<u16>,
}

impl Output for Written {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "wrote {} ({} on {}: {})",
            self.file.display(),
            super::count(self.services.len(), "service"),
            self.backend,
            self.services.join(", ")
        )?;
        if !self.behind_vpn.is_empty() {
            writeln!(out, "behind the VPN: {}", self.behind_vpn.join(", "))?;
        }
        match self.format {
            Format::Nix => {
                let name = self.file.file_name().map_or_else(
                    || self.file.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                writeln!(
                    out,
                    "next: add `imports = [ ./{name} ];` to configuration.nix (or paste its \
                     inner lines there), put the secret files in place, and run \
                     `nixos-rebuild switch`"
                )
            }
            Format::Json => writeln!(
                out,
                "next: `nixarr-units render --spec {} --out DIR`, or copy it into \
                 /etc/nixarr-units/ for the generator and run `systemctl daemon-reload`",
                self.file.display()
            ),
        }
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        if !self.yes {
            crate::wizard::require_terminal()?;
        }
        let host = Host::detect();
        let format = self.format.unwrap_or(if host.nixos {
            Format::Nix
        } else {
            Format::Json
        });
        let file = self.out.clone().unwrap_or_else(|| {
            PathBuf::from(match format {
                Format::Nix => "nixarr-units.nix",
                Format::Json => "nixarr-units.json",
            })
        });
        refuse_overwrite(&file, self.force)?;
        let start = self.start(&host)?;
        let answers = if self.yes {
            start
        } else {
            for line in host.summary() {
                eprintln!("{line}");
            }
            eprintln!();
            crate::wizard::ask(&start)?
        }
        .settle();
        let stack = answers.validate()?;
        let ports_taken: Vec<u16> = host
            .ports_taken
            .iter()
            .filter(|p| answers.apps.contains(&p.app))
            .map(|p| p.port)
            .collect();
        for p in host
            .ports_taken
            .iter()
            .filter(|p| answers.apps.contains(&p.app))
        {
            ctx.printer.warn(format!(
                "port {} ({}) is already in use on this host; stop what uses it or give {} \
                 another port before starting the stack",
                p.port, p.app, p.app
            ));
        }
        if !self.yes {
            eprintln!(
                "checked: {} services on {} ({}); writing {} as {}",
                stack.services.len(),
                stack.backend,
                stack
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                file.display(),
                match format {
                    Format::Nix => "a NixOS module block",
                    Format::Json => "a JSON spec",
                }
            );
            if !crate::wizard::confirm_write(&file.display().to_string())? {
                eprintln!("nothing was written");
                return Ok(ExitStatus::Failure);
            }
        }
        let text = match format {
            Format::Nix => answers.to_nix(),
            Format::Json => answers.to_spec_text(),
        };
        write_new(&file, &text, self.force)?;
        ctx.printer.print(&Written {
            file,
            format,
            backend: stack.backend,
            services: stack.services.keys().cloned().collect(),
            behind_vpn: answers.vpn.map(|v| v.behind).unwrap_or_default(),
            ports_taken,
        })?;
        Ok(ExitStatus::Success)
    }

    /// The answers the flags and the host give, before any question.
    fn start(&self, host: &Host) -> Result<Answers> {
        let mut a = Answers::suggested(host);
        if let Some(apps) = &self.apps {
            a.apps = check_apps(apps)?;
        }
        if let Some(b) = self.backend {
            a.backend = b;
        }
        if let Some(tz) = &self.tz {
            a.tz = tz.clone();
        }
        if let Some(puid) = self.puid {
            a.puid = puid;
        }
        if let Some(pgid) = self.pgid {
            a.pgid = pgid;
        }
        if let Some(d) = &self.state_dir {
            a.state_dir = d.clone();
        }
        if let Some(d) = &self.data_dir {
            a.data_dir = d.clone();
        }
        if let Some(kind) = &self.vpn {
            let kind: VpnType = kind.parse().map_err(UsageError)?;
            if crate::init::downloaders(&a.apps).is_empty() {
                return Err(UsageError(
                    "--vpn routes the downloaders through Gluetun, but --apps has none; add \
                     qbittorrent, transmission or sabnzbd"
                        .to_owned(),
                )
                .into());
            }
            a = a.with_vpn(kind, &self.vpn_provider);
            if let Some(vpn) = a.vpn.as_mut() {
                for s in &self.secret {
                    let (var, path) = s
                        .split_once('=')
                        .ok_or_else(|| UsageError(format!("--secret {s}: write it as VAR=PATH")))?;
                    vpn.secrets.insert(var.to_owned(), path.to_owned());
                }
            }
        } else if !self.secret.is_empty() {
            return Err(
                UsageError("--secret is for the VPN's files; give --vpn too".to_owned()).into(),
            );
        }
        Ok(a)
    }
}

/// The apps named on the command line, each a choosable catalog app.
fn check_apps(apps: &[String]) -> Result<Vec<String>> {
    let known: Vec<&str> = crate::init::choosable_apps()
        .into_iter()
        .map(|a| a.0)
        .collect();
    let mut out = Vec::new();
    for a in apps.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
        if a == "gluetun" {
            return Err(UsageError(
                "--apps gluetun: the VPN comes with --vpn wireguard|openvpn".to_owned(),
            )
            .into());
        }
        if !known.contains(&a) {
            // The catalog's own message: the nearest name and every app.
            crate::catalog::entry(a)?;
        }
        out.push(a.to_owned());
    }
    if out.is_empty() {
        return Err(
            UsageError("--apps names no app; give e.g. --apps sonarr,radarr".to_owned()).into(),
        );
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn refuse_overwrite(file: &Path, force: bool) -> Result<()> {
    if !force && std::fs::symlink_metadata(file).is_ok() {
        return Err(UsageError(format!(
            "{} exists; pass --force to replace it, or --out another file (nothing was written)",
            file.display()
        ))
        .into());
    }
    Ok(())
}

/// Write `text` to `file` whole: through a temporary file beside it, moved
/// into place; without `force` only when no file of that name appeared
/// meanwhile.
fn write_new(file: &Path, text: &str, force: bool) -> Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".nixarr-init-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    // Paths only, no secret: readable like any configuration file.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    if force {
        tmp.persist(file)
            .with_context(|| format!("cannot write {}", file.display()))?;
    } else {
        tmp.persist_noclobber(file).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                anyhow::Error::new(UsageError(format!(
                    "{} appeared while init ran; pass --force to replace it (nothing was \
                     written)",
                    file.display()
                )))
            } else {
                anyhow::Error::new(e.error).context(format!("cannot write {}", file.display()))
            }
        })?;
    }
    Ok(())
}
