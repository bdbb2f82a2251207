//! `nixarr-units reload`: apply an edited spec to running containers.
//!
//! After the spec changes, `systemctl daemon-reload` reruns the generator and
//! systemd knows the new units, but running services keep their old
//! containers. This restarts exactly those whose running container was
//! created from a different unit than the one now rendered: the container's
//! `io.nixarr.config-hash` label differs from the manifest's `configHash`.
//! Unchanged services, and services that are not running, are left alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::manifest::{ETC_MANIFEST, Manifest, RUN_MANIFEST};
use crate::render::LABEL_HASH;

/// What `reload` does, given where things are.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// Read this manifest instead of searching the default places.
    pub manifest: Option<PathBuf>,
    /// The systemctl binary.
    pub systemctl: String,
    /// Skip `systemctl daemon-reload` (the caller already did it).
    pub skip_daemon_reload: bool,
    /// Only say what would be restarted.
    pub dry_run: bool,
}

/// What happened to one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Restarted {
        unit: String,
        old: String,
        new: String,
    },
    WouldRestart {
        unit: String,
        old: String,
        new: String,
    },
    Unchanged {
        unit: String,
    },
    NotRunning {
        unit: String,
        state: String,
    },
}

/// Find the manifest: the NixOS-installed one first, then the generator's.
pub fn find_manifest(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    for candidate in [ETC_MANIFEST, RUN_MANIFEST] {
        if Path::new(candidate).is_file() {
            return Ok(PathBuf::from(candidate));
        }
    }
    bail!(
        "no manifest at {ETC_MANIFEST} or {RUN_MANIFEST}; is nixarr-units installed (NixOS \
         module or generator with a spec in /etc/nixarr-units/)?"
    )
}

pub fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = fs_err::read_to_string(path).context("cannot read the manifest")?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a manifest this nixarr-units understands",
            path.display()
        )
    })
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn active_state(systemctl: &str, unit: &str) -> Result<String> {
    run(
        Command::new(systemctl).args(["show", "--property=ActiveState", "--value", unit]),
        &format!("{systemctl} show {unit}"),
    )
}

/// The config hash label of a running container, `None` when there is no
/// such container.
fn running_hash(engine: &str, container: &str) -> Result<Option<String>> {
    let out = Command::new(engine)
        .args([
            "inspect",
            "--type=container",
            &format!("--format={{{{index .Config.Labels \"{LABEL_HASH}\"}}}}"),
            container,
        ])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {engine} inspect {container}"))?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Reload systemd, then restart every active service whose container's
/// config hash is not the manifest's. Prints one line per decision.
pub fn reload(cfg: &ReloadConfig) -> Result<Vec<Outcome>> {
    if !cfg.skip_daemon_reload && !cfg.dry_run {
        run(
            Command::new(&cfg.systemctl).arg("daemon-reload"),
            &format!("{} daemon-reload", cfg.systemctl),
        )?;
    }
    let path = find_manifest(cfg.manifest.as_deref())?;
    let manifest = read_manifest(&path)?;
    let mut outcomes = Vec::new();
    for stack in &manifest.stacks {
        for svc in stack.services.values() {
            let unit = svc.unit.clone();
            let state = active_state(&cfg.systemctl, &unit)
                .with_context(|| format!("asking systemd about {unit}"))?;
            if state != "active" {
                println!("{unit}: {state}, left alone");
                outcomes.push(Outcome::NotRunning { unit, state });
                continue;
            }
            let old = running_hash(&stack.engine, &svc.container)
                .with_context(|| format!("inspecting the container of {unit}"))?
                .unwrap_or_default();
            if old == svc.config_hash {
                println!("{unit}: unchanged");
                outcomes.push(Outcome::Unchanged { unit });
                continue;
            }
            let new = svc.config_hash.clone();
            let shown_old = if old.is_empty() { "(none)" } else { &old };
            if cfg.dry_run {
                println!("{unit}: would restart (config {shown_old} -> {new})");
                outcomes.push(Outcome::WouldRestart { unit, old, new });
                continue;
            }
            run(
                Command::new(&cfg.systemctl).args(["restart", &unit]),
                &format!("{} restart {unit}", cfg.systemctl),
            )
            .with_context(|| {
                format!("restarting {unit}; see systemctl status {unit} and journalctl -u {unit}")
            })?;
            println!("{unit}: restarted (config {shown_old} -> {new})");
            outcomes.push(Outcome::Restarted { unit, old, new });
        }
    }
    Ok(outcomes)
}
