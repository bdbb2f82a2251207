//! One reconcile pass on the real system: one read of each source (the
//! manifest, one batch of unit states over D-Bus, one container list per
//! engine, read concurrently), [`classify`], then the plan carried out
//! (removals, then starts and restarts through systemd's jobs) and its
//! counts recorded for `status`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Action, Class, Container, Observed, Plan, UnitView, classify, has_processes};
use crate::engine::Engine;
use crate::manifest::{self, StackManifest};
use crate::output::write_atomic;
use crate::render::LABEL_MANAGED;
use crate::spec::Backend;
use crate::systemd::{ActiveState, JobResult, Systemd, Verb};

/// Where each pass records its counts, one file per stack.
pub const RECORD_DIR: &str = "/run/nixarr-units/reconcile";

/// How an orphan (a real app, once) is stopped before it is removed.
const ORPHAN_STOP_GRACE: u64 = 10;

/// How long a container whose `rm` failed may take to be gone anyway
/// (Docker's own removal of a `--rm` container that just stopped).
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// What a pass is asked to do.
pub struct PassOptions<'a> {
    pub manifest: Option<&'a Path>,
    pub bus_address: Option<&'a str>,
    /// Only this stack (its prefix); every stack of the manifest when `None`.
    pub stack: Option<&'a str>,
    pub dry_run: bool,
    pub prune: bool,
    /// How long an engine may take to list its containers.
    pub engine_timeout: Duration,
    /// How long to wait for the starts and restarts.
    pub job_timeout: Duration,
    /// Where to record the counts (not written on a dry run).
    pub record_dir: PathBuf,
}

/// What a pass found and did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub dry_run: bool,
    /// Everything `ok` and every read answered.
    pub ok: bool,
    /// Actions carried out (none on a dry run or after a failed read).
    pub acted: usize,
    /// Stacks the pass looked after.
    pub stacks: Vec<String>,
    #[serde(flatten)]
    pub plan: Plan,
}

/// Run one pass.
pub fn run(opts: &PassOptions<'_>) -> Result<Outcome> {
    let (path, manifest) = manifest::load(opts.manifest)?;
    let stacks: Vec<&StackManifest> = match opts.stack {
        Some(prefix) => vec![manifest.stack(&path, prefix)?],
        None => manifest.stacks.iter().collect(),
    };
    let engines: BTreeSet<(String, Backend)> = stacks
        .iter()
        .map(|s| (s.engine.clone(), s.backend))
        .collect();
    // Every read at once: the engines in threads while D-Bus answers (one
    // block_on at a time: zbus runs on Tokio, which refuses a nested one).
    let (units, sd, containers) = std::thread::scope(|scope| {
        let lists: Vec<_> = engines
            .iter()
            .map(|(path, backend)| {
                let engine = Engine::new(*backend, path.clone());
                let timeout = opts.engine_timeout;
                (
                    path.clone(),
                    scope.spawn(move || read_containers(&engine, timeout)),
                )
            })
            .collect();
        let (units, sd) = zbus::block_on(read_units(opts.bus_address, &stacks));
        let containers: BTreeMap<String, Result<Vec<Container>, String>> = lists
            .into_iter()
            .map(|(path, h)| {
                let read = h
                    .join()
                    .unwrap_or_else(|_| Err("the engine read panicked".to_owned()));
                (path, read)
            })
            .collect();
        (units, sd, containers)
    });
    zbus::block_on(async {
        let seen = Observed {
            stacks: stacks.clone(),
            units,
            containers,
        };
        let mut plan = classify(&seen, opts.prune);
        let mut acted = 0;
        if plan.failed_reads.is_empty() && !opts.dry_run {
            let sd = sd.context("the systemd connection vanished")?;
            acted = act(&sd, &stacks, &mut plan, opts.job_timeout).await;
            for stack in &stacks {
                record(&opts.record_dir, &stack.prefix, &plan);
            }
        }
        Ok(Outcome {
            dry_run: opts.dry_run,
            ok: plan.all_ok(),
            acted,
            stacks: stacks.iter().map(|s| s.prefix.clone()).collect(),
            plan,
        })
    })
}

/// The engine's labelled containers, with the cgroup of each running
/// podman container's main process.
fn read_containers(engine: &Engine, timeout: Duration) -> Result<Vec<Container>, String> {
    let listed = engine
        .containers_within(&[(LABEL_MANAGED, "true")], timeout)
        .map_err(|e| format!("{e:#}"))?;
    Ok(listed
        .into_iter()
        .map(|c| {
            let cgroup = match (engine.backend, c.pid) {
                (Backend::Podman, Some(pid)) => cgroup_of(pid),
                _ => None,
            };
            Container { listed: c, cgroup }
        })
        .collect())
}

/// The cgroup v2 path of a process (`0::/system.slice/x.service/…`).
fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// One ListUnitsByNames call for every service unit, then only what the
/// states call for: the cgroup of podman units that have processes, the
/// result and restart count of failed ones.
async fn read_units(
    bus_address: Option<&str>,
    stacks: &[&StackManifest],
) -> (Result<BTreeMap<String, UnitView>, String>, Option<Systemd>) {
    let sd = match Systemd::connect(bus_address).await {
        Ok(sd) => sd,
        Err(e) => return (Err(format!("{e:#}")), None),
    };
    let mut names = Vec::new();
    let mut podman = BTreeSet::new();
    for stack in stacks {
        names.push(stack.target.clone());
        for svc in stack.services.values() {
            names.push(svc.unit.clone());
            if stack.backend == Backend::Podman {
                podman.insert(svc.unit.clone());
            }
        }
    }
    let listed = match sd.list_units(&names).await {
        Ok(l) => l,
        Err(e) => return (Err(format!("{e:#}")), Some(sd)),
    };
    let sd_ref = &sd;
    let podman = &podman;
    let reads = listed.into_iter().map(|(name, l)| async move {
        let processes = has_processes(&l.active_state);
        // Why a unit is down: read only for units that are.
        let failed = matches!(l.active_state, ActiveState::Failed | ActiveState::Inactive);
        let (control_group, result, n_restarts) = futures_util::future::join3(
            async {
                if processes && podman.contains(&name) {
                    sd_ref
                        .service_property::<String>(&l, "ControlGroup")
                        .await
                        .filter(|c| !c.is_empty())
                } else {
                    None
                }
            },
            async {
                if failed {
                    sd_ref.service_property::<String>(&l, "Result").await
                } else {
                    None
                }
            },
            async {
                if failed {
                    sd_ref.service_property::<u32>(&l, "NRestarts").await
                } else {
                    None
                }
            },
        )
        .await;
        let view = UnitView {
            load_state: l.load_state,
            active_state: l.active_state,
            sub_state: l.sub_state,
            result,
            n_restarts,
            control_group,
        };
        (name, view)
    });
    // Systemd keeps the reads within the bus's pending replies.
    let units = futures_util::future::join_all(reads)
        .await
        .into_iter()
        .collect();
    (Ok(units), Some(sd))
}

/// Carry out the plan: remove what `--prune` removes (in parallel), then
/// start and restart units through systemd's jobs, and note each result
/// in its entry. Returns how many actions were taken.
async fn act(sd: &Systemd, stacks: &[&StackManifest], plan: &mut Plan, timeout: Duration) -> usize {
    let backends: BTreeMap<&str, Backend> = stacks
        .iter()
        .map(|s| (s.engine.as_str(), s.backend))
        .collect();
    let mut acted = 0;
    let removals: Vec<usize> = (0..plan.containers.len())
        .filter(|i| plan.containers[*i].action == Action::Remove)
        .collect();
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = removals
            .iter()
            .map(|i| {
                let c = &plan.containers[*i];
                let backend = backends.get(c.engine.as_str()).copied();
                let engine = Engine::new(backend.unwrap_or(Backend::Podman), c.engine.clone());
                let (id, orphan) = (c.id.clone(), c.class == Class::Orphan);
                scope.spawn(move || remove(&engine, &id, orphan, GONE_WITHIN))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("panicked".to_owned())))
            .collect()
    });
    for (i, r) in removals.iter().zip(results) {
        acted += 1;
        let c = &mut plan.containers[*i];
        c.result = Some(match r {
            Ok(()) => {
                tracing::debug!("removed {} container {} ({})", c.class, c.name, c.id);
                "removed".to_owned()
            }
            Err(e) => {
                tracing::debug!("removing {} container {}: {e}", c.class, c.name);
                format!("failed: {e}")
            }
        });
    }
    for (verb, action) in [
        (Verb::Start, Action::Start),
        (Verb::Restart, Action::Restart),
    ] {
        let units: Vec<String> = plan
            .units
            .iter()
            .filter(|u| u.action == action)
            .map(|u| u.unit.clone())
            .collect();
        if units.is_empty() {
            continue;
        }
        if verb == Verb::Start {
            // A failed unit may have hit its start limit: forget it, as
            // `systemctl reset-failed` would, so the start is not refused.
            for u in &units {
                sd.reset_failed(u).await;
            }
        }
        let outcomes = match sd.run_jobs(verb, &units, timeout).await {
            Ok(o) => o,
            Err(e) => {
                let e = format!("{e:#}");
                for u in plan.units.iter_mut().filter(|u| u.action == action) {
                    u.result = Some(format!("failed: {e}"));
                }
                continue;
            }
        };
        for u in plan.units.iter_mut().filter(|u| u.action == action) {
            acted += 1;
            let result = outcomes
                .iter()
                .find(|o| o.unit == u.unit)
                .map(|o| o.result.clone());
            u.result = Some(if result == Some(JobResult::Done) {
                tracing::debug!("{} {}: {} ({})", verb.name(), u.unit, u.class, u.detail);
                format!("{}ed", verb.name())
            } else {
                let result = result.map_or("unknown".to_owned(), |r| r.to_string());
                tracing::debug!("{} {}: job {result}", verb.name(), u.unit);
                format!(
                    "failed: job {result}; see `systemctl status {}` and `journalctl -u {}`",
                    u.unit, u.unit
                )
            });
        }
    }
    acted
}

/// Remove one container, never its volumes: an orphan (a real app, once)
/// is stopped with a grace first; a forged one is removed at once. A
/// failed `rm` of a container that is gone within `gone_within` is a
/// removal all the same: Docker removes a `--rm` container itself once it
/// stops, and refuses a second removal meanwhile ("removal of container …
/// is already in progress").
fn remove(engine: &Engine, id: &str, orphan: bool, gone_within: Duration) -> Result<(), String> {
    if orphan {
        // A failure here (it has stopped already) is for `rm` to judge.
        let _ = engine.stop(id, ORPHAN_STOP_GRACE).output();
    }
    let Err(e) = engine.rm(id, true).run() else {
        return Ok(());
    };
    let start = Instant::now();
    loop {
        match engine.container_status(id) {
            Ok(None) => return Ok(()),
            Ok(Some(_)) if start.elapsed() < gone_within => {
                std::thread::sleep(Duration::from_millis(200));
            }
            _ => return Err(format!("{e:#}")),
        }
    }
}

/// What `status` shows of the last pass, per stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// When the pass ran, RFC 3339.
    pub at: String,
    pub orphan: usize,
    pub forged: usize,
    /// The orphan and forged containers' IDs.
    pub ids: Vec<String>,
}

/// Record what the pass left of `prefix`'s stack: containers it found
/// orphan or forged and did not remove. Best effort: a pass that cannot
/// write its record (an unprivileged user) still did its work.
fn record(dir: &Path, prefix: &str, plan: &Plan) {
    let left: Vec<_> = plan
        .containers
        .iter()
        .filter(|c| c.stack.as_deref() == Some(prefix))
        .filter(|c| matches!(c.class, Class::Orphan | Class::Forged))
        .filter(|c| c.result.as_deref() != Some("removed"))
        .collect();
    let rec = Record {
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        orphan: left.iter().filter(|c| c.class == Class::Orphan).count(),
        forged: left.iter().filter(|c| c.class == Class::Forged).count(),
        ids: left.iter().map(|c| c.id.clone()).collect(),
    };
    let path = dir.join(format!("{prefix}.json"));
    let written = serde_json::to_vec_pretty(&rec)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| write_atomic(&path, &bytes, 0o644));
    if let Err(e) = written {
        tracing::warn!(
            "cannot record this pass in {} ({e:#}); `status` will not show its counts",
            path.display()
        );
    }
}

/// The last pass's record of `prefix`, if any.
pub fn last_record(dir: &Path, prefix: &str) -> Option<Record> {
    let text = std::fs::read_to_string(dir.join(format!("{prefix}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `docker` whose `rm` fails as Docker's does while it removes a
    /// `--rm` container itself, and whose `inspect` says `inspect_says`
    /// (after `gone_after` calls, "no such container").
    fn engine_removing_itself(inspect_says: &str, gone_after: u32) -> (tempfile::TempDir, Engine) {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let count = t.path().join("count");
        let script = t.path().join("docker");
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
case "$1" in
stop) exit 0 ;;
rm) echo "Error response from daemon: removal of container x is already in progress" >&2; exit 1 ;;
inspect)
    echo x >> {count}
    if [ "$(wc -l < {count})" -gt {gone_after} ]; then
        echo "Error: No such container: x" >&2; exit 1
    fi
    echo {inspect_says} ;;
esac
"#,
                count = count.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let engine = Engine::new(Backend::Docker, script.display().to_string());
        (t, engine)
    }

    /// Docker's own removal of a `--rm` orphan that just stopped makes our
    /// `rm` fail; the container is gone all the same (seen end to end: the
    /// pass reported the orphan "failed" and `status` counted it as left).
    #[test]
    fn a_container_removed_by_the_engine_meanwhile_is_removed() {
        let (_t, engine) = engine_removing_itself("removing", 2);
        assert_eq!(remove(&engine, "x", true, Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn a_container_that_stays_is_a_failed_removal() {
        let (_t, engine) = engine_removing_itself("running", 1000);
        let started = Instant::now();
        let e = remove(&engine, "x", true, Duration::from_millis(500)).unwrap_err();
        assert!(e.contains("already in progress"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
