//! `nixarr-units heal --stack P`: the Docker health watchdog, run by
//! `<prefix>-health.timer`. Docker runs each container's health command but,
//! unlike podman's `--health-on-failure=kill`, does nothing when it fails.
//! This restarts the unit of every running container Docker reports
//! `unhealthy` (after its own retries), and of every service whose host
//! probe has failed `retries` times in a row (counted in
//! /run/nixarr-units/health/<prefix>.json). Each transition is logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::commands::Context;
use crate::duration::parse_duration;
use crate::health::Check;
use crate::health::check_once;
use crate::manifest;
use crate::output::write_atomic;
use crate::status::engine_health;
use crate::systemd::ActiveState;

const STATE_DIR: &str = "/run/nixarr-units/health";

/// Consecutive host-probe failures per service.
type Failures = BTreeMap<String, u64>;

fn state_path(prefix: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{prefix}.json"))
}

pub fn run(ctx: &Context, prefix: &str) -> Result<()> {
    let (path, manifest) = ctx.load_manifest_for(prefix)?;
    let stack = manifest.stack(&path, prefix)?;
    let watched: Vec<(&String, &manifest::ServiceManifest)> = stack
        .services
        .iter()
        .filter(|(_, s)| s.health.is_some())
        .collect();
    let units: Vec<String> = watched.iter().map(|(_, s)| s.unit.clone()).collect();

    zbus::block_on(async {
        let sd = ctx.systemd().await?;
        let states = sd.unit_states(&units).await?;
        let active: Vec<bool> = states
            .iter()
            .map(|s| s.active_state == ActiveState::Active)
            .collect();

        let by_engine: Vec<&str> = watched
            .iter()
            .zip(&active)
            .filter(|((_, s), a)| **a && Check::probe(s).is_none())
            .map(|((_, s), _)| s.container.as_str())
            .collect();
        let engine = engine_health(stack, &by_engine);

        let state_file = state_path(prefix);
        let mut failures: Failures = fs_err::read_to_string(&state_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let mut restart = Vec::new();
        for ((name, svc), is_active) in watched.iter().zip(&active) {
            if !is_active {
                failures.remove(*name);
                continue;
            }
            let Some(h) = &svc.health else { continue };
            if let Some(check) = Check::probe(svc) {
                let timeout = parse_duration(&h.timeout).unwrap_or(Duration::from_secs(5));
                let before = failures.get(*name).copied().unwrap_or(0);
                match check_once(&check, timeout) {
                    Ok(()) => {
                        if before > 0 {
                            tracing::info!("{name}: healthy again after {before} failed probe(s)");
                        }
                        failures.remove(*name);
                    }
                    Err(reason) => {
                        let n = before + 1;
                        failures.insert((*name).clone(), n);
                        tracing::warn!(
                            "{name}: probe failed ({reason}), {n} of {} in a row",
                            h.retries
                        );
                        if n >= h.retries {
                            restart.push((*name, svc, reason));
                            failures.remove(*name);
                        }
                    }
                }
            } else if engine.get(&svc.container).map(String::as_str) == Some("unhealthy") {
                restart.push((
                    *name,
                    svc,
                    "docker reports the container unhealthy".to_owned(),
                ));
            }
        }
        for (name, svc, reason) in restart {
            tracing::warn!("{name}: unhealthy ({reason}); restarting {}", svc.unit);
            sd.queue_restart(&svc.unit).await?;
        }
        if let Err(e) = write_atomic(
            &state_file,
            serde_json::to_string(&failures)?.as_bytes(),
            0o600,
        ) {
            tracing::warn!(
                "cannot record probe failures in {}: {e:#}",
                state_file.display()
            );
        }
        Ok(())
    })
}
