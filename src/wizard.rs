//! `init`'s questions on a terminal (inquire): which apps, grouped by
//! profile; the engine; the VPN for the downloaders, its provider, type and
//! the *paths* of its secret files (never a key); time zone, ids and
//! directories. Every answer starts from what the host or the command line
//! suggested; Esc or Ctrl-C leaves with nothing written.

use std::fmt;

use anyhow::{Result, bail};
use inquire::validator::Validation;
use inquire::{Confirm, CustomType, InquireError, MultiSelect, Select, Text};

use crate::init::{Answers, Vpn, VpnType, choosable_apps, downloaders};
use crate::spec::Backend;

/// One app in the list: name, profile, description.
struct Choice {
    name: &'static str,
    profile: &'static str,
    description: &'static str,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<10} {:<13} {}",
            self.profile, self.name, self.description
        )
    }
}

/// An inquire error as the user should read it.
fn explain(e: InquireError) -> anyhow::Error {
    match e {
        InquireError::OperationCanceled | InquireError::OperationInterrupted => {
            anyhow::anyhow!("init was cancelled; nothing was written")
        }
        InquireError::NotTTY => crate::error::UsageError(
            "init asks its questions on a terminal; in a script pass --yes with --apps (and \
             --vpn, --format, --out as needed)"
                .to_owned(),
        )
        .into(),
        e => anyhow::Error::new(e).context("the terminal prompt failed"),
    }
}

fn absolute_path(s: &str) -> Result<Validation, inquire::CustomUserError> {
    Ok(if !s.starts_with('/') {
        Validation::Invalid("give an absolute path (starting with /)".into())
    } else if s.starts_with("/nix/store/") {
        Validation::Invalid(
            "a file in the Nix store is readable by everyone; give the path where your \
             secrets tool decrypts it (e.g. /run/secrets/…)"
                .into(),
        )
    } else if s.len() > 1 && s.ends_with('/') || s.split('/').any(|p| p == "..") {
        Validation::Invalid("give a normal path: no trailing / and no ..".into())
    } else {
        Validation::Valid
    })
}

fn path(prompt: &str, default: &str, help: &str) -> Result<String> {
    Text::new(prompt)
        .with_default(default)
        .with_help_message(help)
        .with_validator(absolute_path)
        .prompt()
        .map_err(explain)
}

/// Ask every question, starting from `start`; returns the answers.
pub fn ask(start: &Answers) -> Result<Answers> {
    let choices: Vec<Choice> = choosable_apps()
        .into_iter()
        .map(|(name, profile, description)| Choice {
            name,
            profile,
            description,
        })
        .collect();
    let preselected: Vec<usize> = choices
        .iter()
        .enumerate()
        .filter(|(_, c)| start.apps.iter().any(|a| a == c.name))
        .map(|(i, _)| i)
        .collect();
    let picked = MultiSelect::new("Which apps?", choices)
        .with_default(&preselected)
        .with_page_size(12)
        .with_formatter(&|picked| {
            picked
                .iter()
                .map(|o| o.value.name)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .with_help_message("↑↓ move, space to pick, → all, ← none, enter to go on")
        .with_validator(|l: &[inquire::list_option::ListOption<&Choice>]| {
            Ok(if l.is_empty() {
                Validation::Invalid("pick at least one app".into())
            } else {
                Validation::Valid
            })
        })
        .prompt()
        .map_err(explain)?;
    let mut apps: Vec<String> = picked.iter().map(|c| c.name.to_owned()).collect();
    apps.sort();

    let backends = vec![Backend::Podman, Backend::Docker];
    let cursor = backends
        .iter()
        .position(|b| *b == start.backend)
        .unwrap_or(0);
    let backend = Select::new("Which container engine?", backends)
        .with_starting_cursor(cursor)
        .prompt()
        .map_err(explain)?;

    let vpn = ask_vpn(start, &apps)?;

    let tz = Text::new("Time zone of the containers?")
        .with_default(&start.tz)
        .with_validator(|s: &str| {
            Ok(if s.is_empty() || s.contains(char::is_whitespace) {
                Validation::Invalid("a time zone name such as Europe/Berlin".into())
            } else {
                Validation::Valid
            })
        })
        .prompt()
        .map_err(explain)?;
    let puid = CustomType::<u64>::new("User id the apps run as (PUID)?")
        .with_default(start.puid)
        .with_error_message("a number, such as 568")
        .prompt()
        .map_err(explain)?;
    let pgid = CustomType::<u64>::new("Group id (PGID; your media group's)?")
        .with_default(start.pgid)
        .with_error_message("a number, such as 169")
        .prompt()
        .map_err(explain)?;
    let state_dir = path(
        "Where do the apps keep their configuration?",
        &start.state_dir,
        "each app gets <dir>/<app>",
    )?;
    let data_dir = path(
        "Where is the media tree (downloads and library)?",
        &start.data_dir,
        "mounted at the same path in every media app",
    )?;
    let migrate_from_native = start
        .migrate_from_native
        .iter()
        .filter(|a| apps.contains(a))
        .cloned()
        .collect();
    Ok(Answers {
        apps,
        vpn,
        backend,
        puid,
        pgid,
        tz,
        state_dir,
        data_dir,
        migrate_from_native,
    })
}

/// Whether the downloaders go through Gluetun, and its settings.
fn ask_vpn(start: &Answers, apps: &[String]) -> Result<Option<Vpn>> {
    let behind = downloaders(apps);
    if behind.is_empty() {
        return Ok(None);
    }
    let wanted = Confirm::new(&format!(
        "Route {} through a VPN (Gluetun)?",
        behind.join(", ")
    ))
    .with_default(start.vpn.is_some())
    .prompt()
    .map_err(explain)?;
    if !wanted {
        return Ok(None);
    }
    let provider = Text::new("VPN provider (Gluetun's VPN_SERVICE_PROVIDER)?")
        .with_default(
            start
                .vpn
                .as_ref()
                .map_or("mullvad", |v| v.provider.as_str()),
        )
        .with_help_message("mullvad, protonvpn, airvpn, custom, … (see the Gluetun wiki)")
        .with_validator(|s: &str| {
            Ok(if s.is_empty() || s.contains(char::is_whitespace) {
                Validation::Invalid("a provider name such as mullvad".into())
            } else {
                Validation::Valid
            })
        })
        .prompt()
        .map_err(explain)?;
    let kinds = vec!["wireguard", "openvpn"];
    let cursor = match start.vpn.as_ref().map(|v| v.kind) {
        Some(VpnType::Openvpn) => 1,
        _ => 0,
    };
    let kind: VpnType = Select::new("VPN type?", kinds)
        .with_starting_cursor(cursor)
        .prompt()
        .map_err(explain)?
        .parse()
        .map_err(anyhow::Error::msg)?;
    let mut secrets = std::collections::BTreeMap::new();
    for (var, default) in kind.secrets() {
        let default = start
            .vpn
            .as_ref()
            .and_then(|v| v.secrets.get(*var))
            .map_or(*default, String::as_str);
        let file = path(
            &format!("File that holds {var}?"),
            default,
            "only the path is written; your secrets tool (sops-nix, agenix, …) puts the \
             file there",
        )?;
        secrets.insert((*var).to_owned(), file);
    }
    Ok(Some(Vpn {
        provider,
        kind,
        secrets,
        behind,
    }))
}

/// Ask whether to write `what`; false when the user says no.
pub fn confirm_write(what: &str) -> Result<bool> {
    Confirm::new(&format!("Write {what}?"))
        .with_default(true)
        .prompt()
        .map_err(explain)
}

/// Refuse to go on without a terminal.
pub fn require_terminal() -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!(crate::error::UsageError(
            "init asks its questions on a terminal and standard input is not one; in a script \
             pass --yes with --apps (and --vpn, --format, --out as needed)"
                .to_owned()
        ));
    }
    Ok(())
}
