//! `nixarr-units login REGISTRY --username U --password-file F`: log the
//! stack's engine in to a private registry. The password is read from a
//! file (or standard input) and handed to the engine on its standard input:
//! never on a command line, never logged.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{Context, ExitStatus, Output, UsageError};
use crate::engine::Engine;
use crate::spec::Backend;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry: host, or host:port (no scheme, no path).
    registry: String,
    /// The user name.
    #[arg(long, short = 'u')]
    username: String,
    /// File holding the password (one trailing newline is dropped); `-`
    /// reads standard input.
    #[arg(long, value_name = "FILE")]
    password_file: PathBuf,
    /// Log in with this engine [default: the engines of the manifest's
    /// stacks; without a manifest, podman].
    #[arg(long)]
    backend: Option<Backend>,
}

#[derive(Debug, Serialize)]
struct LoggedIn {
    registry: String,
    username: String,
    engines: Vec<String>,
}

impl Output for LoggedIn {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        for e in &self.engines {
            writeln!(
                out,
                "logged in to {} as {} ({e})",
                self.registry, self.username
            )?;
        }
        Ok(())
    }
}

/// A registry as engines take it: `host` or `host:port`.
fn check_registry(r: &str) -> Result<(), UsageError> {
    let bad = r.is_empty()
        || r.contains("://")
        || r.contains('/')
        || r.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err(UsageError(format!(
            "`{r}` is not a registry; give its host or host:port, e.g. ghcr.io or \
             registry.example:5000 (no scheme, no path)"
        )));
    }
    Ok(())
}

/// The password in `path` (`-`: standard input), without its trailing
/// newline.
fn read_password(path: &PathBuf) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the password from standard input")?;
    } else {
        bytes = std::fs::read(path).map_err(|e| {
            UsageError(format!(
                "cannot read the password file {}: {e}; give the file that holds the password",
                path.display()
            ))
        })?;
    }
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(UsageError(format!(
            "the password file {} is empty; write the password into it",
            path.display()
        ))
        .into());
    }
    if bytes.contains(&b'\n') {
        return Err(UsageError(format!(
            "the password file {} holds more than one line; keep the password alone in it",
            path.display()
        ))
        .into());
    }
    Ok(bytes)
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        check_registry(&self.registry)?;
        if self.username.is_empty() || self.username.chars().any(char::is_control) {
            return Err(
                UsageError("--username is empty or holds control characters".into()).into(),
            );
        }
        let password = read_password(&self.password_file)?;
        // The stacks' engines; without a manifest the one asked for.
        let mut engines: Vec<Engine> = match (ctx.load_manifest(), self.backend) {
            (Ok((_, m)), None) if !m.stacks.is_empty() => m
                .stacks
                .iter()
                .map(crate::images::update::engine_of)
                .collect(),
            (_, backend) => {
                let b = backend.unwrap_or_default();
                vec![Engine::new(b, b.name())]
            }
        };
        engines.dedup_by(|a, b| a.path == b.path);
        let mut used = Vec::new();
        for e in &engines {
            let cmd = e.login(&self.registry, &self.username, &password);
            cmd.run().with_context(|| {
                format!(
                    "logging in to {} as {} failed; check the user name and password and that \
                     the registry is reachable",
                    self.registry, self.username
                )
            })?;
            used.push(e.path.clone());
        }
        ctx.printer.print(&LoggedIn {
            registry: self.registry,
            username: self.username,
            engines: used,
        })?;
        Ok(ExitStatus::Success)
    }
}
