//! `nixarr-units reload`: apply an edited spec to running containers.
//!
//! After the spec changes, `systemctl daemon-reload` reruns the generator and
//! systemd knows the new units, but running services keep their old
//! containers. This restarts exactly those whose running container was
//! created from a different unit than the one now rendered: the container's
//! `io.nixarr.config-hash` label differs from the manifest's `configHash`.
//! Unchanged services, and services that are not running, are left alone.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::engine::Engine;
use crate::manifest;
use crate::render::LABEL_HASH;
use crate::systemd::{ActiveState, JobResult, Systemd, Verb};

/// What `reload` does, given where things are.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// Read this manifest instead of searching the default places.
    pub manifest: Option<PathBuf>,
    /// The system bus to reach systemd on (default: the system bus).
    pub bus_address: Option<String>,
    /// Skip `daemon-reload` (the caller already did it).
    pub skip_daemon_reload: bool,
    /// Only say what would be restarted.
    pub dry_run: bool,
    /// How long to wait for the restarts.
    pub timeout: Duration,
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

/// The config hash label of a running container, `None` when there is no
/// such container.
fn running_hash(engine: &Engine, container: &str) -> Result<Option<String>> {
    let out = engine.inspect_label(container, LABEL_HASH).output()?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Reload systemd (which reruns the generator and rewrites the manifest),
/// then restart every active service whose container's config hash is not
/// the manifest's, waiting for the restarts. Prints one line per decision.
pub fn reload(cfg: &ReloadConfig) -> Result<Vec<Outcome>> {
    zbus::block_on(async {
        let sd = Systemd::connect(cfg.bus_address.as_deref()).await?;
        if !cfg.skip_daemon_reload && !cfg.dry_run {
            sd.daemon_reload().await?;
        }
        let (_, manifest) = manifest::load(cfg.manifest.as_deref())?;
        let mut outcomes = Vec::new();
        let mut restart = Vec::new();
        for stack in &manifest.stacks {
            let units: Vec<String> = stack.services.values().map(|s| s.unit.clone()).collect();
            let states = sd.unit_states(&units).await?;
            for (svc, state) in stack.services.values().zip(states) {
                let unit = svc.unit.clone();
                if state.active_state != ActiveState::Active {
                    println!("{unit}: {}, left alone", state.active_state);
                    outcomes.push(Outcome::NotRunning {
                        unit,
                        state: state.active_state.to_string(),
                    });
                    continue;
                }
                let old = running_hash(&Engine::from(stack), &svc.container)
                    .with_context(|| format!("inspecting the container of {unit}"))?
                    .unwrap_or_default();
                if old == svc.config_hash {
                    println!("{unit}: unchanged");
                    outcomes.push(Outcome::Unchanged { unit });
                    continue;
                }
                let new = svc.config_hash.clone();
                if cfg.dry_run {
                    let shown = if old.is_empty() { "(none)" } else { &old };
                    println!("{unit}: would restart (config {shown} -> {new})");
                    outcomes.push(Outcome::WouldRestart { unit, old, new });
                } else {
                    restart.push((unit, old, new));
                }
            }
        }
        if restart.is_empty() {
            return Ok(outcomes);
        }
        let units: Vec<String> = restart.iter().map(|(u, _, _)| u.clone()).collect();
        let results = sd.run_jobs(Verb::Restart, &units, cfg.timeout).await?;
        let mut failed = Vec::new();
        for (unit, old, new) in restart {
            let result = results.iter().find(|o| o.unit == unit).map(|o| &o.result);
            let shown = if old.is_empty() { "(none)" } else { &old };
            if result == Some(&JobResult::Done) {
                println!("{unit}: restarted (config {shown} -> {new})");
                outcomes.push(Outcome::Restarted { unit, old, new });
            } else {
                let result = result.map_or("unknown".to_owned(), JobResult::to_string);
                println!("{unit}: restart {result}");
                failed.push(format!("{unit} ({result})"));
            }
        }
        if !failed.is_empty() {
            anyhow::bail!(
                "restarting {} failed; see systemctl status and journalctl -u for each",
                failed.join(", ")
            );
        }
        Ok(outcomes)
    })
}
