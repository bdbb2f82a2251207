//! `nixarr-units reload`: apply an edited spec to running containers.
//!
//! After the spec changes, `systemctl daemon-reload` reruns the generator and
//! systemd knows the new units, but running services keep their old
//! containers. This restarts exactly those whose running container was
//! created from a different unit than the one now rendered: the container's
//! `io.nixarr.config-hash` label differs from the manifest's `configHash`.
//! Unchanged services, and services that are not running, are left alone.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::commands::Context;
use crate::engine::Engine;
use crate::render::LABEL_HASH;
use crate::systemd::{ActiveState, JobResult, Verb};

/// What `reload` does besides finding the manifest and systemd.
#[derive(Debug, Clone)]
pub struct ReloadOptions {
    /// Skip `daemon-reload` (the caller already did it).
    pub skip_daemon_reload: bool,
    /// Only say what would be restarted.
    pub dry_run: bool,
    /// How long to wait for the restarts.
    pub timeout: Duration,
}

/// What happened to one service (`old`: the running container's config
/// hash, empty when it had none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
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
    /// The restart job did not end `done`.
    RestartFailed {
        unit: String,
        result: String,
    },
    Unchanged {
        unit: String,
    },
    NotRunning {
        unit: String,
        state: String,
    },
}

impl Outcome {
    /// One line for people.
    pub fn line(&self) -> String {
        let shown = |old: &str| {
            if old.is_empty() {
                "(none)".to_owned()
            } else {
                old.to_owned()
            }
        };
        match self {
            Outcome::Restarted { unit, old, new } => {
                format!("{unit}: restarted (config {} -> {new})", shown(old))
            }
            Outcome::WouldRestart { unit, old, new } => {
                format!("{unit}: would restart (config {} -> {new})", shown(old))
            }
            Outcome::RestartFailed { unit, result } => format!("{unit}: restart {result}"),
            Outcome::Unchanged { unit } => format!("{unit}: unchanged"),
            Outcome::NotRunning { unit, state } => format!("{unit}: {state}, left alone"),
        }
    }
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
/// the manifest's, waiting for the restarts. One outcome per service, in
/// the manifest's order, restarts last.
pub fn reload(ctx: &Context, opts: &ReloadOptions) -> Result<Vec<Outcome>> {
    zbus::block_on(async {
        let sd = ctx.systemd().await?;
        if !opts.skip_daemon_reload && !opts.dry_run {
            sd.daemon_reload().await?;
        }
        let (_, manifest) = ctx.load_manifest()?;
        let mut outcomes = Vec::new();
        let mut restart = Vec::new();
        for stack in &manifest.stacks {
            let units: Vec<String> = stack.services.values().map(|s| s.unit.clone()).collect();
            let states = sd.unit_states(&units).await?;
            for (svc, state) in stack.services.values().zip(states) {
                let unit = svc.unit.clone();
                if state.active_state != ActiveState::Active {
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
                    outcomes.push(Outcome::Unchanged { unit });
                    continue;
                }
                let new = svc.config_hash.clone();
                if opts.dry_run {
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
        let results = sd.run_jobs(Verb::Restart, &units, opts.timeout).await?;
        for (unit, old, new) in restart {
            let result = results.iter().find(|o| o.unit == unit).map(|o| &o.result);
            outcomes.push(if result == Some(&JobResult::Done) {
                Outcome::Restarted { unit, old, new }
            } else {
                Outcome::RestartFailed {
                    unit,
                    result: result.map_or("unknown".to_owned(), JobResult::to_string),
                }
            });
        }
        Ok(outcomes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_as_lines_and_json() {
        let o = Outcome::WouldRestart {
            unit: "x-a.service".into(),
            old: String::new(),
            new: "h2".into(),
        };
        assert_eq!(o.line(), "x-a.service: would restart (config (none) -> h2)");
        assert_eq!(
            serde_json::to_value(&o).expect("serialize"),
            serde_json::json!({"outcome": "would-restart", "unit": "x-a.service", "old": "", "new": "h2"})
        );
        let f = Outcome::RestartFailed {
            unit: "x-b.service".into(),
            result: "timeout".into(),
        };
        assert_eq!(f.line(), "x-b.service: restart timeout");
    }
}
