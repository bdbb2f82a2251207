//! `nixarr-units status`: for every managed service, what systemd says (one
//! batch D-Bus call plus concurrent property reads) and whether it answers
//! its health probe (all probes concurrently, each with a timeout).
//! Rendered as a table for people or as JSON (schema in docs/status.md).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::engine::Engine;
use crate::health::{Check, check_once};
use crate::manifest::{Manifest, ServiceManifest, StackManifest};
use crate::systemd::{ActiveState, LoadState, UnitState};

pub const STATUS_SCHEMA_VERSION: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Healthy,
    Unhealthy,
    Starting,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub state: HealthState,
    /// Why: "HTTP 503", "connection refused", "timed out after 1s", "unit
    /// inactive", "no health probe" … (`None` when healthy). Always
    /// serialised (as null when healthy): every documented key is present.
    pub reason: Option<String>,
}

impl Health {
    fn new(state: HealthState, reason: impl Into<String>) -> Self {
        Health {
            state,
            reason: Some(reason.into()),
        }
    }
}

/// One row of `status`; its JSON form is the documented schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub service: String,
    pub stack: String,
    #[serde(flatten)]
    pub state: UnitState,
    pub health: Health,
    /// RFC 3339, UTC.
    pub since: Option<String>,
    pub ports: Vec<String>,
    /// What `update` last did to it (last update, last rollback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_update: Option<crate::images::history::Record>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub version: u64,
    /// Every unit active and no probe failing.
    pub ok: bool,
    pub services: Vec<Row>,
    /// Per stack, the orphan and forged containers the last reconcile pass
    /// found and left (stacks with none are not listed). Never counted as
    /// any service: a forged container claims a service it is not.
    pub reconcile: Vec<Leftovers>,
}

/// What the last reconcile pass left of one stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leftovers {
    pub stack: String,
    /// When that pass ran, RFC 3339.
    pub at: String,
    pub orphan: usize,
    pub forged: usize,
}

/// The last reconcile pass's leftovers of each stack in `prefixes` (in
/// `dir`, where the passes record them), those with any.
pub fn leftovers<'a>(
    dir: &std::path::Path,
    prefixes: impl IntoIterator<Item = &'a str>,
) -> Vec<Leftovers> {
    let mut seen = std::collections::BTreeSet::new();
    prefixes
        .into_iter()
        .filter(|p| seen.insert(*p))
        .filter_map(|p| {
            let r = crate::reconcile::pass::last_record(dir, p)?;
            (r.orphan + r.forged > 0).then(|| Leftovers {
                stack: p.to_owned(),
                at: r.at,
                orphan: r.orphan,
                forged: r.forged,
            })
        })
        .collect()
}

/// The engine's own view of container health, for services whose probe
/// runs only inside the container: one `inspect` call per stack.
pub fn engine_health(stack: &StackManifest, containers: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if containers.is_empty() {
        return out;
    }
    let Ok(result) = Engine::from(stack).inspect_json(containers).output() else {
        return out;
    };
    let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&result.stdout) else {
        return out;
    };
    for c in list {
        let name = c["Name"].as_str().unwrap_or("").trim_start_matches('/');
        // Docker and newer podman say State.Health; podman 4 also
        // State.Healthcheck.
        let status = c["State"]["Health"]["Status"]
            .as_str()
            .or_else(|| c["State"]["Healthcheck"]["Status"].as_str());
        if let Some(s) = status {
            out.insert(name.to_owned(), s.to_owned());
        }
    }
    out
}

/// Probe every active service concurrently (one thread each: probes spend
/// their time waiting), then combine with the unit states.
pub fn build_report(
    manifest: &Manifest,
    selected: &[(usize, String)],
    states: Vec<UnitState>,
    probe: bool,
    timeout: Duration,
) -> Report {
    let entries: Vec<(&StackManifest, &String, &ServiceManifest, UnitState)> = selected
        .iter()
        .zip(states)
        .filter_map(|((si, name), st)| {
            let stack = manifest.stacks.get(*si)?;
            let svc = stack.services.get(name)?;
            Some((stack, name, svc, st))
        })
        .collect();

    // What is probed from the host: only active units, and not at all with
    // --no-probe.
    let probed: Vec<bool> = entries
        .iter()
        .map(|(_, _, _, state)| probe && state.active_state == ActiveState::Active)
        .collect();
    let checks: Vec<Option<Check>> = entries
        .iter()
        .zip(&probed)
        .map(|((_, _, svc, _), probed)| probed.then(|| Check::probe(svc)).flatten())
        .collect();

    // Engine health for services without a host probe.
    let mut engine: BTreeMap<String, String> = BTreeMap::new();
    for stack in manifest.stacks.iter().filter(|_| probe) {
        let names: Vec<&str> = entries
            .iter()
            .zip(probed.iter().zip(&checks))
            .filter(|((st, _, svc, _), (probed, check))| {
                std::ptr::eq(*st, stack)
                    && **probed
                    && check.is_none()
                    && svc.health.as_ref().is_some_and(|h| h.cmd.is_some())
            })
            .map(|((_, _, svc, _), _)| svc.container.as_str())
            .collect();
        engine.extend(engine_health(stack, &names));
    }

    // A thread only for a probe that runs: with --no-probe, or for units
    // that are not active, none is spawned (200 idle threads cost more than
    // the D-Bus reads themselves).
    let history = crate::images::history::load(&crate::images::history::path());
    let results: Vec<Option<Result<(), String>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = checks
            .iter()
            .map(|check| {
                check
                    .as_ref()
                    .map(|c| scope.spawn(move || check_once(c, timeout)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("probe panicked".to_owned()))
                })
            })
            .collect()
    });

    let services: Vec<Row> = entries
        .into_iter()
        .zip(results)
        .map(|((stack, name, svc, state), result)| {
            let health = verdict(svc, &state, probe, result, engine.get(&svc.container));
            Row {
                service: name.clone(),
                stack: stack.prefix.clone(),
                image_update: history.get(&svc.unit).cloned(),
                since: state.since_usec.map(rfc3339),
                ports: svc
                    .ports
                    .iter()
                    .map(|p| {
                        let addr = p.address.map(|a| format!("{a}:")).unwrap_or_default();
                        format!("{addr}{}/{}", p.host, p.protocol.name())
                    })
                    .collect(),
                state,
                health,
            }
        })
        .collect();
    let ok = all_ok(&services);
    let reconcile = leftovers(
        std::path::Path::new(crate::reconcile::pass::RECORD_DIR),
        services.iter().map(|r| r.stack.as_str()),
    );
    Report {
        version: STATUS_SCHEMA_VERSION,
        ok,
        services,
        reconcile,
    }
}

/// The report's `ok`: every unit active and no probe failing.
pub fn all_ok(services: &[Row]) -> bool {
    services.iter().all(|r| {
        r.state.active_state == ActiveState::Active && r.health.state != HealthState::Unhealthy
    })
}

fn verdict(
    svc: &ServiceManifest,
    state: &UnitState,
    probe: bool,
    result: Option<Result<(), String>>,
    engine: Option<&String>,
) -> Health {
    use HealthState::*;
    if state.load_state != LoadState::Loaded {
        return Health::new(Unknown, format!("unit {}", state.load_state));
    }
    match &state.active_state {
        ActiveState::Active => {}
        ActiveState::Activating => return Health::new(Starting, "unit activating"),
        other => return Health::new(Unknown, format!("unit {other}")),
    }
    if svc.health.is_none() {
        return Health::new(Unknown, "no health probe");
    }
    if !probe {
        return Health::new(Unknown, "not probed");
    }
    match (result, engine.map(String::as_str)) {
        (Some(Ok(())), _) => Health {
            state: Healthy,
            reason: None,
        },
        (Some(Err(reason)), _) => Health::new(Unhealthy, reason),
        (None, Some("healthy")) => Health {
            state: Healthy,
            reason: None,
        },
        (None, Some("starting")) => Health::new(Starting, "container health: starting"),
        (None, Some(other)) => Health::new(Unhealthy, format!("container health: {other}")),
        (None, None) => Health::new(Unknown, "container reports no health status"),
    }
}

fn rfc3339(usec: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(usec);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// "3min ago", "2h 5min ago", "12d ago".
pub fn ago(usec: u64, now: SystemTime) -> String {
    let then = UNIX_EPOCH + Duration::from_micros(usec);
    let secs = now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h ago")
    } else if h > 0 {
        format!("{h}h {m}min ago")
    } else if m > 0 {
        format!("{m}min ago")
    } else {
        format!("{secs}s ago")
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// The table people read.
pub fn table(report: &Report, now: SystemTime) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "SERVICE", "UNIT", "STATE", "HEALTH", "SINCE", "RESTARTS", "PID", "MEMORY", "PORTS",
        ]);
    for r in &report.services {
        let s = &r.state;
        let health = match (&r.health.state, &r.health.reason) {
            (HealthState::Healthy, _) => "healthy".to_owned(),
            (state, Some(reason)) => format!("{}: {reason}", health_word(*state)),
            (state, None) => health_word(*state).to_owned(),
        };
        let state = if s.load_state == LoadState::Loaded {
            format!("{} ({})", s.active_state, s.sub_state)
        } else {
            s.load_state.to_string()
        };
        t.add_row([
            r.service.clone(),
            s.unit.clone(),
            state,
            health,
            s.since_usec
                .map(|u| ago(u, now))
                .unwrap_or_else(|| "-".into()),
            s.n_restarts
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            s.main_pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            s.memory_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "-".into()),
            if r.ports.is_empty() {
                "-".into()
            } else {
                r.ports.join(",")
            },
        ]);
    }
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut out = t.to_string();
    // comfy-table pads every line; trailing blanks only get in the way.
    out = out
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    for l in &report.reconcile {
        out.push_str(&format!(
            "\n{}: {} orphan and {} forged container(s) not of any service (reconcile at {}); \
             `nixarr-units reconcile --stack {}` lists them, --prune removes them\n",
            l.stack, l.orphan, l.forged, l.at, l.stack
        ));
    }
    out
}

pub fn health_word(s: HealthState) -> &'static str {
    match s {
        HealthState::Healthy => "healthy",
        HealthState::Unhealthy => "unhealthy",
        HealthState::Starting => "starting",
        HealthState::Unknown => "unknown",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::PublishedPort;
    use crate::spec::Protocol;

    fn state(unit: &str, active: &str, sub: &str) -> UnitState {
        UnitState {
            unit: unit.into(),
            load_state: LoadState::Loaded,
            active_state: ActiveState::from_dbus(active),
            sub_state: sub.into(),
            result: Some("success".into()),
            n_restarts: Some(2),
            main_pid: Some(4242),
            since_usec: Some(1_700_000_000_000_000),
            memory_bytes: Some(150 * 1024 * 1024),
        }
    }

    pub(crate) fn report() -> Report {
        Report {
            version: 1,
            ok: false,
            services: vec![
                Row {
                    service: "sonarr".into(),
                    stack: "nixarr".into(),
                    image_update: None,
                    state: state("nixarr-sonarr.service", "active", "running"),
                    health: Health {
                        state: HealthState::Healthy,
                        reason: None,
                    },
                    since: Some(rfc3339(1_700_000_000_000_000)),
                    ports: vec!["8989/tcp".into()],
                },
                Row {
                    service: "radarr".into(),
                    stack: "nixarr".into(),
                    image_update: None,
                    state: state("nixarr-radarr.service", "active", "running"),
                    health: Health::new(HealthState::Unhealthy, "HTTP 503"),
                    since: None,
                    ports: vec!["127.0.0.1:7878/tcp".into()],
                },
            ],
            reconcile: vec![],
        }
    }

    #[test]
    fn table_shows_state_health_and_reason() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 3 * 3600 + 120);
        let t = table(&report(), now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("SERVICE"), "{t}");
        assert!(lines[1].contains("active (running)"), "{t}");
        assert!(lines[1].contains("healthy"), "{t}");
        assert!(lines[1].contains("3h 2min ago"), "{t}");
        assert!(lines[1].contains("150.0M"), "{t}");
        assert!(lines[2].contains("unhealthy: HTTP 503"), "{t}");
        assert!(t.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn leftovers_of_the_last_reconcile_pass_are_shown() {
        let dir = tempfile::tempdir().unwrap();
        let write = |prefix: &str, orphan: usize, forged: usize| {
            let rec = crate::reconcile::pass::Record {
                at: "2026-12-01T12:00:00Z".into(),
                orphan,
                forged,
                ids: vec![],
            };
            std::fs::write(
                dir.path().join(format!("{prefix}.json")),
                serde_json::to_vec(&rec).unwrap(),
            )
            .unwrap();
        };
        write("nixarr", 1, 2);
        write("clean", 0, 0);
        let found = leftovers(dir.path(), ["nixarr", "clean", "none", "nixarr"]);
        assert_eq!(
            found,
            vec![Leftovers {
                stack: "nixarr".into(),
                at: "2026-12-01T12:00:00Z".into(),
                orphan: 1,
                forged: 2,
            }]
        );
        let mut r = report();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(!table(&r, now).contains("forged"));
        r.reconcile = found;
        let t = table(&r, now);
        assert!(
            t.contains("nixarr: 1 orphan and 2 forged container(s)"),
            "{t}"
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["reconcile"][0]["forged"], 2);
    }

    #[test]
    fn json_schema_is_stable() {
        let v = serde_json::to_value(report()).unwrap();
        let row = &v["services"][0];
        for key in [
            "service",
            "stack",
            "unit",
            "loadState",
            "activeState",
            "subState",
            "result",
            "nRestarts",
            "mainPid",
            "sinceUsec",
            "memoryBytes",
            "health",
            "since",
            "ports",
        ] {
            assert!(row.get(key).is_some(), "missing {key} in {row}");
        }
        assert_eq!(row["health"]["state"], "healthy");
        assert_eq!(v["services"][1]["health"]["reason"], "HTTP 503");
        assert_eq!(row["since"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn verdicts() {
        let svc = ServiceManifest {
            unit: "u".into(),
            container: "c".into(),
            app: None,
            description: String::new(),
            image: "i".into(),
            image_digest: None,
            image_file: false,
            ports: vec![PublishedPort {
                host: 1,
                container: 1,
                protocol: Protocol::Tcp,
                address: None,
                via: None,
            }],
            volumes: vec![],
            config_dir: None,
            depends_on: vec![],
            vpn: false,
            health: Some(crate::manifest::Health {
                cmd: Some("true".into()),
                probe: None,
                interval: "30s".into(),
                timeout: "5s".into(),
                retries: 3,
                start_period: "0s".into(),
            }),
            secrets: vec![],
            secrets_unit: None,
            config_hash: String::new(),
            uid: 0,
            gid: 0,
            migration: None,
            backup: None,
        };
        let active = state("u", "active", "running");
        let v = verdict(
            &svc,
            &active,
            true,
            Some(Err("connection refused".into())),
            None,
        );
        assert_eq!(v, Health::new(HealthState::Unhealthy, "connection refused"));
        let v = verdict(&svc, &active, true, None, Some(&"healthy".to_owned()));
        assert_eq!(v.state, HealthState::Healthy);
        let v = verdict(&svc, &state("u", "activating", "start"), true, None, None);
        assert_eq!(v.state, HealthState::Starting);
        let v = verdict(&svc, &state("u", "failed", "failed"), true, None, None);
        assert_eq!(v, Health::new(HealthState::Unknown, "unit failed"));
        let v = verdict(&svc, &active, false, None, None);
        assert_eq!(v, Health::new(HealthState::Unknown, "not probed"));
    }
}
