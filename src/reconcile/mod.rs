//! Reconcile: compare what the engines run with what the manifests want,
//! and say (or do) what closes the gap.
//!
//! [`classify`] is pure: given every manifest's stacks, one batch of unit
//! states and one container list per engine, it classifies every labelled
//! container and every unit (`ok`, `drift`, `missing`, `orphan`, `forged`,
//! `foreign`) and plans an action for each. The command
//! (`nixarr-units reconcile`) does the reads and carries out the plan.
//!
//! A label is trusted only for the container its unit runs: anyone who can
//! reach the engine can put any label on a container. A container counts as
//! a service's own only when it carries the name the unit gives its
//! container, runs while the unit has processes, and, on podman (whose
//! units run the container in their own cgroup, `--cgroups=split`), sits in
//! the unit's cgroup. Everything else that claims a known service is
//! `forged`: reported, never adopted, removed only with `--prune`.
//!
//! A pass whose engine or D-Bus read failed classifies nothing and acts on
//! nothing: an empty container list must never make every unit look
//! missing.

pub mod pass;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::engine;
use crate::manifest::{ServiceManifest, StackManifest};
use crate::render::{LABEL_HASH, LABEL_MANAGED, LABEL_SERVICE, LABEL_STACK};
use crate::spec::Backend;
use crate::systemd::{ActiveState, LoadState};

/// One container as the engine lists it (label filter
/// `io.nixarr.managed=true`), with the cgroup of its main process when the
/// caller could read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub listed: engine::Container,
    /// The cgroup (v2 path) of its main process, `None` when it is not
    /// running or could not be read.
    pub cgroup: Option<String>,
}

impl Container {
    /// Its name (an engine gives a container one).
    pub fn name(&self) -> &str {
        self.listed.names.first().map_or("", String::as_str)
    }

    fn running(&self) -> bool {
        self.listed.state == "running"
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.listed.labels.get(key).map(String::as_str)
    }
}

/// What systemd says about one unit, as far as reconcile needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitView {
    pub load_state: LoadState,
    pub active_state: ActiveState,
    pub sub_state: String,
    pub result: Option<String>,
    pub n_restarts: Option<u32>,
    /// The unit's cgroup (`ControlGroup`), e.g. `/system.slice/x.service`.
    pub control_group: Option<String>,
}

impl UnitView {
    /// The unit has processes that may be running its container.
    fn has_processes(&self) -> bool {
        has_processes(&self.active_state)
    }
}

/// A unit in this state has processes that may be running its container.
pub fn has_processes(state: &ActiveState) -> bool {
    matches!(
        state,
        ActiveState::Active
            | ActiveState::Activating
            | ActiveState::Deactivating
            | ActiveState::Reloading
    )
}

/// One read of a pass: its data or why it failed.
pub type Read<T> = Result<T, String>;

/// Everything one pass read.
pub struct Observed<'a> {
    /// The stacks this pass looks after.
    pub stacks: Vec<&'a StackManifest>,
    /// Unit states by unit name (one D-Bus batch).
    pub units: Read<BTreeMap<String, UnitView>>,
    /// Containers by engine (the stacks' `engine` paths), one list each.
    pub containers: BTreeMap<String, Read<Vec<Container>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Ok,
    Drift,
    Missing,
    Orphan,
    Forged,
    Foreign,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::Drift => "drift",
            Class::Missing => "missing",
            Class::Orphan => "orphan",
            Class::Forged => "forged",
            Class::Foreign => "foreign",
        }
    }

    /// Something a person should know about (`ok` and another stack's
    /// containers are not).
    pub fn is_finding(self) -> bool {
        !matches!(self, Class::Ok | Class::Foreign)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing to do (or nothing reconcile may do).
    None,
    /// Restart the unit (drift); systemd restarts its dependents after it.
    Restart,
    /// Start the unit (missing).
    Start,
    /// Stop and remove the container, never its volumes (`--prune`).
    Remove,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Restart => "restart",
            Action::Start => "start",
            Action::Remove => "remove",
        }
    }
}

/// One container's verdict. Its JSON form is documented in docs/spec.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerEntry {
    pub name: String,
    pub id: String,
    /// The service its labels claim.
    pub service: Option<String>,
    /// The stack its labels claim.
    pub stack: Option<String>,
    pub engine: String,
    pub image: String,
    pub created: String,
    pub class: Class,
    pub action: Action,
    pub detail: String,
    /// What came of the action: `removed`, `started`, `restarted` or
    /// `failed: …`; `None` when nothing was done.
    pub result: Option<String>,
}

/// One unit's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitEntry {
    pub unit: String,
    pub service: String,
    pub stack: String,
    pub class: Class,
    pub action: Action,
    pub detail: String,
    /// What came of the action: `removed`, `started`, `restarted` or
    /// `failed: …`; `None` when nothing was done.
    pub result: Option<String>,
}

/// What a pass found and means to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub containers: Vec<ContainerEntry>,
    pub units: Vec<UnitEntry>,
    /// Reads that failed; when any did, nothing is classified and nothing
    /// is done.
    pub failed_reads: Vec<String>,
}

impl Plan {
    /// Everything is `ok` (another stack's containers aside) and every read
    /// succeeded.
    pub fn all_ok(&self) -> bool {
        self.failed_reads.is_empty()
            && self.containers.iter().all(|c| !c.class.is_finding())
            && self.units.iter().all(|u| !u.class.is_finding())
    }

    /// How many containers (and units) are of `class`.
    pub fn count(&self, class: Class) -> usize {
        self.containers.iter().filter(|c| c.class == class).count()
            + self.units.iter().filter(|u| u.class == class).count()
    }

    /// The containers of `class`.
    pub fn count_containers(&self, class: Class) -> usize {
        self.containers.iter().filter(|c| c.class == class).count()
    }
}

/// Classify everything a pass read. `prune` turns the removal of orphan
/// and forged containers on.
pub fn classify(seen: &Observed<'_>, prune: bool) -> Plan {
    let mut failed: Vec<String> = Vec::new();
    if let Err(e) = &seen.units {
        failed.push(format!("systemd: {e}"));
    }
    for (engine, read) in &seen.containers {
        if let Err(e) = read {
            failed.push(format!("{engine}: {e}"));
        }
    }
    let (Ok(units), true) = (&seen.units, failed.is_empty()) else {
        return Plan {
            failed_reads: failed,
            ..Plan::default()
        };
    };
    let mut plan = Plan::default();
    // Which stack (if any) each container belongs to, and for each
    // service the container its unit runs.
    let mut own: BTreeMap<(String, String), &Container> = BTreeMap::new();
    for (engine, read) in &seen.containers {
        let Ok(list) = read else { continue };
        for c in list {
            let entry = container_entry(seen, units, engine, c, prune);
            if matches!(entry.class, Class::Ok | Class::Drift)
                && let (Some(st), Some(svc)) = (&entry.stack, &entry.service)
            {
                own.insert((st.clone(), svc.clone()), c);
            }
            plan.containers.push(entry);
        }
    }
    for stack in &seen.stacks {
        for (name, svc) in &stack.services {
            let unit = units.get(&svc.unit);
            let running = own.get(&(stack.prefix.clone(), name.clone())).copied();
            let target_up = units
                .get(&stack.target)
                .is_some_and(|t| has_processes(&t.active_state));
            plan.units
                .push(unit_entry(stack, name, svc, unit, running, target_up));
        }
    }
    plan.containers
        .sort_by(|a, b| (&a.stack, &a.name, &a.id).cmp(&(&b.stack, &b.name, &b.id)));
    plan.units
        .sort_by(|a, b| (&a.stack, &a.unit).cmp(&(&b.stack, &b.unit)));
    plan
}

fn container_entry(
    seen: &Observed<'_>,
    units: &BTreeMap<String, UnitView>,
    engine: &str,
    c: &Container,
    prune: bool,
) -> ContainerEntry {
    let stack_label = c.label(LABEL_STACK).map(str::to_owned);
    let service_label = c.label(LABEL_SERVICE).map(str::to_owned);
    let mut entry = ContainerEntry {
        name: c.name().to_owned(),
        id: c.listed.id.clone(),
        service: service_label.clone(),
        stack: stack_label.clone(),
        engine: engine.to_owned(),
        image: c.listed.image.clone(),
        created: c.listed.created.clone(),
        class: Class::Foreign,
        action: Action::None,
        detail: String::new(),
        result: None,
    };
    let removal = if prune { Action::Remove } else { Action::None };
    let prune_hint = if prune {
        ""
    } else {
        "; `reconcile --prune` removes it"
    };
    let stack = stack_label.as_deref().and_then(|p| {
        seen.stacks
            .iter()
            .find(|s| s.prefix == p && s.engine == engine)
    });
    let Some(stack) = stack else {
        entry.detail = match &stack_label {
            Some(p) => format!("belongs to stack `{p}`, which this pass does not look after"),
            None => format!(
                "carries {LABEL_MANAGED} but no {LABEL_STACK} label (made by an older \
                 nixarr-units or by hand)"
            ),
        };
        return entry;
    };
    let known = service_label
        .as_deref()
        .and_then(|s| stack.services.get(s).map(|m| (s, m)));
    let Some((service, svc)) = known else {
        entry.class = Class::Orphan;
        entry.action = removal;
        entry.detail = match &service_label {
            Some(s) => format!(
                "stack `{}` has no service `{s}` (removed or renamed){prune_hint}",
                stack.prefix
            ),
            None => format!("carries no {LABEL_SERVICE} label{prune_hint}"),
        };
        return entry;
    };
    match runs(stack, svc, units.get(&svc.unit), c) {
        Err(why) => {
            entry.class = Class::Forged;
            entry.action = removal;
            entry.detail = format!(
                "claims service `{service}` but is not the container {} runs: {why}; image {}, \
                 created {}; never adopted{prune_hint}",
                svc.unit, c.listed.image, c.listed.created
            );
        }
        // Created and not running yet, or ended and not removed yet: the
        // unit is starting or stopping it, and the next pass sees more.
        Ok(_) if !c.running() => {
            entry.class = Class::Ok;
            entry.detail = format!("{} by {}: left to systemd", c.listed.state, svc.unit);
        }
        Ok(in_cgroup) => {
            let hash = c.label(LABEL_HASH).unwrap_or("");
            let active = units
                .get(&svc.unit)
                .is_some_and(|u| u.active_state == ActiveState::Active);
            if hash == svc.config_hash {
                entry.class = Class::Ok;
                entry.detail = format!(
                    "run by {}{}",
                    svc.unit,
                    if in_cgroup { ", in its cgroup" } else { "" }
                );
            } else {
                entry.class = Class::Drift;
                entry.action = if active {
                    Action::Restart
                } else {
                    Action::None
                };
                entry.detail = format!(
                    "config hash {} differs from the unit's {}",
                    if hash.is_empty() { "(none)" } else { hash },
                    svc.config_hash
                );
            }
        }
    }
    entry
}

/// Whether `c` is the container `svc`'s unit runs; if not, why. `Ok(true)`
/// when its cgroup was compared with the unit's and matched (podman, both
/// read), `Ok(false)` when the name and the unit's state decided alone.
fn runs(
    stack: &StackManifest,
    svc: &ServiceManifest,
    unit: Option<&UnitView>,
    c: &Container,
) -> Result<bool, String> {
    if c.name() != svc.container {
        return Err(format!(
            "it is named `{}`; the unit's container is `{}`",
            c.name(),
            svc.container
        ));
    }
    let Some(unit) = unit.filter(|u| u.has_processes()) else {
        let state = unit.map_or_else(
            || "unknown to systemd".to_owned(),
            |u| u.active_state.to_string(),
        );
        return Err(format!("the unit is {state}"));
    };
    // A podman unit runs its container in its own cgroup; a Docker
    // container lives in dockerd's, and its name (taken by the unit's
    // container while the unit runs) is what ties it to the unit.
    if stack.backend == Backend::Podman
        && let (Some(cg), Some(unit_cg)) = (&c.cgroup, &unit.control_group)
    {
        if !(cg == unit_cg || cg.starts_with(&format!("{unit_cg}/"))) {
            return Err(format!(
                "it runs in cgroup {cg}, outside the unit's {unit_cg}"
            ));
        }
        return Ok(true);
    }
    Ok(false)
}

fn unit_entry(
    stack: &StackManifest,
    name: &str,
    svc: &ServiceManifest,
    unit: Option<&UnitView>,
    running: Option<&Container>,
    target_up: bool,
) -> UnitEntry {
    let mut e = UnitEntry {
        unit: svc.unit.clone(),
        service: name.to_owned(),
        stack: stack.prefix.clone(),
        class: Class::Ok,
        action: Action::None,
        detail: String::new(),
        result: None,
    };
    let Some(u) = unit.filter(|u| u.load_state == LoadState::Loaded) else {
        e.class = Class::Missing;
        e.detail = format!(
            "systemd has no such unit ({}); run `systemctl daemon-reload`",
            unit.map_or_else(|| "not listed".to_owned(), |u| u.load_state.to_string())
        );
        return e;
    };
    let restarts = u.n_restarts.unwrap_or(0);
    match &u.active_state {
        ActiveState::Failed => {
            e.class = Class::Missing;
            e.action = Action::Start;
            e.detail = format!(
                "failed (result {}) after {restarts} automatic restart(s); no restart left",
                u.result.as_deref().unwrap_or("unknown")
            );
        }
        ActiveState::Active => match running {
            // A Docker unit is active from the moment `docker run` (its
            // main process, attached, `--rm`) starts, before it has pulled
            // the image and created the container; once the container ends
            // or is removed the client exits and the unit goes down. So an
            // active Docker unit without its container is starting (seen
            // end to end: a pass right after a start restarted all three
            // units). A podman unit is active only once conmon said the
            // container runs (`--sdnotify=conmon`).
            None if stack.backend == Backend::Docker => {
                e.detail = format!(
                    "active ({}); `docker run` has not created its container yet (pulling \
                     or creating): left to systemd",
                    u.sub_state
                );
            }
            None => {
                e.class = Class::Missing;
                e.action = Action::Restart;
                e.detail = format!("active ({}) but its container is not running", u.sub_state);
            }
            Some(c) if !c.running() => {
                e.detail = format!(
                    "active; its container is {} (starting or ending): left to systemd",
                    c.listed.state
                );
            }
            Some(c) => {
                let hash = c.label(LABEL_HASH).unwrap_or("");
                if hash == svc.config_hash {
                    e.detail = format!("active, container {}", short_id(&c.listed.id));
                } else {
                    e.class = Class::Drift;
                    e.action = Action::Restart;
                    e.detail = format!(
                        "its container runs config {}, the unit is {}",
                        if hash.is_empty() { "(none)" } else { hash },
                        svc.config_hash
                    );
                }
            }
        },
        // Starting, stopping or waiting to restart: systemd is on it.
        ActiveState::Activating | ActiveState::Deactivating | ActiveState::Reloading => {
            e.detail = format!("{} ({}): left to systemd", u.active_state, u.sub_state);
        }
        // The stack's target wants every service: while it is up, a
        // stopped service is down behind its back (its container removed
        // or ended on its own with success, a stop by hand).
        other if target_up => {
            e.class = Class::Missing;
            e.action = Action::Start;
            e.detail = format!(
                "{other} ({}, result {}) while {} is active",
                u.sub_state,
                u.result.as_deref().unwrap_or("unknown"),
                stack.target
            );
        }
        other => {
            e.detail = format!("{other} ({}) with its stack's target", u.sub_state);
        }
    }
    e
}

/// The first 12 characters of a container ID, as the engines print it.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::StackManifest;

    const UNIT_CG: &str = "/system.slice/nixarr-sonarr.service";

    fn svc(name: &str, hash: &str) -> ServiceManifest {
        ServiceManifest {
            unit: format!("nixarr-{name}.service"),
            container: format!("nixarr-{name}"),
            app: Some(name.to_owned()),
            description: String::new(),
            image: "img".into(),
            image_digest: None,
            image_file: false,
            ports: vec![],
            volumes: vec![],
            config_dir: None,
            depends_on: vec![],
            vpn: false,
            health: None,
            secrets: vec![],
            secrets_unit: None,
            config_hash: hash.into(),
            uid: 0,
            gid: 0,
            migration: None,
            backup: None,
        }
    }

    fn stack(backend: Backend) -> StackManifest {
        let mut services = BTreeMap::new();
        services.insert("sonarr".to_owned(), svc("sonarr", "h1"));
        services.insert("radarr".to_owned(), svc("radarr", "h2"));
        StackManifest {
            prefix: "nixarr".into(),
            backend,
            engine: "/usr/bin/podman".into(),
            target: "nixarr.target".into(),
            network: "nixarr".into(),
            network_unit: "nixarr-network.service".into(),
            services,
            profiles: BTreeMap::new(),
            image_lock: None,
        }
    }

    fn container(name: &str, stack: &str, service: &str, hash: &str) -> Container {
        let labels = [
            (LABEL_MANAGED, "true"),
            (LABEL_STACK, stack),
            (LABEL_SERVICE, service),
            (LABEL_HASH, hash),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Container {
            listed: engine::Container {
                id: format!("{name}-0123456789abcdef"),
                names: vec![name.into()],
                image: "img".into(),
                state: "running".into(),
                labels,
                created: "2026-12-01T12:00:00Z".into(),
                pid: Some(42),
            },
            cgroup: Some(format!("/system.slice/{name}.service/libpod-payload-x")),
        }
    }

    fn active(unit: &str) -> UnitView {
        UnitView {
            load_state: LoadState::Loaded,
            active_state: ActiveState::Active,
            sub_state: "running".into(),
            result: Some("success".into()),
            n_restarts: Some(0),
            control_group: Some(format!("/system.slice/{unit}")),
        }
    }

    fn units(list: &[(&str, UnitView)]) -> BTreeMap<String, UnitView> {
        list.iter()
            .map(|(n, u)| ((*n).to_owned(), u.clone()))
            .collect()
    }

    fn both_active() -> BTreeMap<String, UnitView> {
        units(&[
            ("nixarr-sonarr.service", active("nixarr-sonarr.service")),
            ("nixarr-radarr.service", active("nixarr-radarr.service")),
            ("nixarr.target", active("nixarr.target")),
        ])
    }

    fn healthy() -> Vec<Container> {
        vec![
            container("nixarr-sonarr", "nixarr", "sonarr", "h1"),
            container("nixarr-radarr", "nixarr", "radarr", "h2"),
        ]
    }

    fn pass(
        st: &StackManifest,
        units: BTreeMap<String, UnitView>,
        containers: Read<Vec<Container>>,
        prune: bool,
    ) -> Plan {
        let seen = Observed {
            stacks: vec![st],
            units: Ok(units),
            containers: [("/usr/bin/podman".to_owned(), containers)].into(),
        };
        classify(&seen, prune)
    }

    fn class_of(plan: &Plan, name: &str) -> (Class, Action, String) {
        let c = plan
            .containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name} in {plan:#?}"));
        (c.class, c.action, c.detail.clone())
    }

    fn unit_of(plan: &Plan, unit: &str) -> (Class, Action, String) {
        let u = plan.units.iter().find(|u| u.unit == unit).unwrap();
        (u.class, u.action, u.detail.clone())
    }

    #[test]
    fn all_ok() {
        let st = stack(Backend::Podman);
        let plan = pass(&st, both_active(), Ok(healthy()), false);
        assert!(plan.all_ok(), "{plan:#?}");
        assert_eq!(plan.count(Class::Ok), 4);
        assert_eq!(class_of(&plan, "nixarr-sonarr").0, Class::Ok);
        assert_eq!(
            class_of(&plan, "nixarr-sonarr").2,
            "run by nixarr-sonarr.service, in its cgroup"
        );
        assert_eq!(unit_of(&plan, "nixarr-sonarr.service").1, Action::None);
    }

    #[test]
    fn drift_restarts_the_unit() {
        let st = stack(Backend::Podman);
        let mut list = healthy();
        list[0]
            .listed
            .labels
            .insert(LABEL_HASH.into(), "old".into());
        let plan = pass(&st, both_active(), Ok(list), false);
        let (class, action, detail) = unit_of(&plan, "nixarr-sonarr.service");
        assert_eq!((class, action), (Class::Drift, Action::Restart), "{detail}");
        assert!(detail.contains("old") && detail.contains("h1"), "{detail}");
        assert_eq!(class_of(&plan, "nixarr-sonarr").0, Class::Drift);
        assert_eq!(unit_of(&plan, "nixarr-radarr.service").0, Class::Ok);
        assert!(!plan.all_ok());
    }

    #[test]
    fn missing_when_active_without_container_or_failed() {
        let st = stack(Backend::Podman);
        let mut u = both_active();
        let failed = u.get_mut("nixarr-radarr.service").unwrap();
        failed.active_state = ActiveState::Failed;
        failed.sub_state = "failed".into();
        failed.result = Some("exit-code".into());
        failed.n_restarts = Some(5);
        let plan = pass(&st, u, Ok(vec![]), false);
        let (class, action, detail) = unit_of(&plan, "nixarr-sonarr.service");
        assert_eq!(
            (class, action),
            (Class::Missing, Action::Restart),
            "{detail}"
        );
        assert!(detail.contains("not running"), "{detail}");
        let (class, action, detail) = unit_of(&plan, "nixarr-radarr.service");
        assert_eq!((class, action), (Class::Missing, Action::Start), "{detail}");
        assert!(
            detail.contains("exit-code") && detail.contains("5 automatic"),
            "{detail}"
        );
    }

    #[test]
    fn an_active_docker_unit_without_its_container_is_starting() {
        let st = stack(Backend::Docker);
        let plan = pass(&st, both_active(), Ok(healthy()[1..].to_vec()), true);
        let (class, action, detail) = unit_of(&plan, "nixarr-sonarr.service");
        assert_eq!((class, action), (Class::Ok, Action::None), "{detail}");
        assert!(
            detail.contains("has not created its container yet"),
            "{detail}"
        );
        assert!(plan.all_ok(), "{plan:#?}");
    }

    #[test]
    fn stopped_while_the_target_runs_is_missing() {
        let st = stack(Backend::Podman);
        let mut u = both_active();
        let s = u.get_mut("nixarr-sonarr.service").unwrap();
        s.active_state = ActiveState::Inactive;
        s.sub_state = "dead".into();
        let plan = pass(&st, u, Ok(healthy()[1..].to_vec()), false);
        let (class, action, detail) = unit_of(&plan, "nixarr-sonarr.service");
        assert_eq!((class, action), (Class::Missing, Action::Start), "{detail}");
        assert!(detail.contains("nixarr.target is active"), "{detail}");
    }

    #[test]
    fn stopped_and_transient_units_are_left_alone() {
        let st = stack(Backend::Podman);
        let mut u = both_active();
        u.get_mut("nixarr.target").unwrap().active_state = ActiveState::Inactive;
        let s = u.get_mut("nixarr-sonarr.service").unwrap();
        s.active_state = ActiveState::Inactive;
        s.sub_state = "dead".into();
        let r = u.get_mut("nixarr-radarr.service").unwrap();
        r.active_state = ActiveState::Activating;
        r.sub_state = "auto-restart".into();
        let plan = pass(&st, u, Ok(vec![]), false);
        assert!(plan.all_ok(), "{plan:#?}");
        assert!(plan.units.iter().all(|u| u.action == Action::None));
    }

    #[test]
    fn orphan_is_removed_only_with_prune() {
        let st = stack(Backend::Podman);
        let mut list = healthy();
        list.push(container("nixarr-lidarr", "nixarr", "lidarr", "h9"));
        let plan = pass(&st, both_active(), Ok(list.clone()), false);
        let (class, action, detail) = class_of(&plan, "nixarr-lidarr");
        assert_eq!((class, action), (Class::Orphan, Action::None));
        assert!(detail.contains("--prune"), "{detail}");
        let plan = pass(&st, both_active(), Ok(list), true);
        assert_eq!(
            class_of(&plan, "nixarr-lidarr").1,
            Action::Remove,
            "{plan:#?}"
        );
        assert_eq!(plan.count_containers(Class::Orphan), 1);
    }

    #[test]
    fn forged_by_name_is_never_adopted() {
        let st = stack(Backend::Podman);
        let mut list = healthy();
        let mut fake = container("evil", "nixarr", "sonarr", "h1");
        fake.cgroup = Some("/user.slice/session-1.scope".into());
        list.push(fake);
        let plan = pass(&st, both_active(), Ok(list), false);
        let (class, action, detail) = class_of(&plan, "evil");
        assert_eq!((class, action), (Class::Forged, Action::None), "{detail}");
        assert!(
            detail.contains("nixarr-sonarr.service") && detail.contains("img"),
            "{detail}"
        );
        // The real one is still the service's.
        assert_eq!(class_of(&plan, "nixarr-sonarr").0, Class::Ok);
        assert_eq!(unit_of(&plan, "nixarr-sonarr.service").0, Class::Ok);
        let plan = pass(
            &st,
            both_active(),
            Ok(vec![container("evil", "nixarr", "sonarr", "h1")]),
            true,
        );
        assert_eq!(class_of(&plan, "evil").1, Action::Remove);
        // With only the forged one, the unit has no container of its own.
        assert_eq!(unit_of(&plan, "nixarr-sonarr.service").0, Class::Missing);
    }

    #[test]
    fn forged_outside_the_units_cgroup_on_podman() {
        let st = stack(Backend::Podman);
        let mut list = healthy();
        list[0].cgroup = Some("/machine.slice/libpod-abc.scope".into());
        let plan = pass(&st, both_active(), Ok(list), false);
        let (class, _, detail) = class_of(&plan, "nixarr-sonarr");
        assert_eq!(class, Class::Forged, "{detail}");
        assert!(detail.contains(UNIT_CG), "{detail}");
        assert_eq!(unit_of(&plan, "nixarr-sonarr.service").0, Class::Missing);
    }

    #[test]
    fn docker_containers_are_tied_by_name_not_cgroup() {
        let st = stack(Backend::Docker);
        let mut list = healthy();
        list[0].cgroup = Some("/system.slice/docker-abc.scope".into());
        let plan = pass(&st, both_active(), Ok(list), false);
        let (class, _, detail) = class_of(&plan, "nixarr-sonarr");
        assert_eq!(
            (class, detail.as_str()),
            (Class::Ok, "run by nixarr-sonarr.service")
        );
    }

    #[test]
    fn a_container_not_running_yet_under_its_active_unit_is_left_to_systemd() {
        let st = stack(Backend::Docker);
        let mut list = healthy();
        list[0].listed.state = "created".into();
        list[0]
            .listed
            .labels
            .insert(LABEL_HASH.into(), "old".into());
        let plan = pass(&st, both_active(), Ok(list), true);
        let (class, action, detail) = class_of(&plan, "nixarr-sonarr");
        assert_eq!((class, action), (Class::Ok, Action::None), "{detail}");
        let (class, action, detail) = unit_of(&plan, "nixarr-sonarr.service");
        assert_eq!((class, action), (Class::Ok, Action::None), "{detail}");
        assert!(detail.contains("created"), "{detail}");
    }

    #[test]
    fn forged_when_the_unit_does_not_run() {
        let st = stack(Backend::Podman);
        let mut u = both_active();
        let s = u.get_mut("nixarr-sonarr.service").unwrap();
        s.active_state = ActiveState::Inactive;
        s.control_group = None;
        let plan = pass(&st, u, Ok(healthy()), false);
        let (class, _, detail) = class_of(&plan, "nixarr-sonarr");
        assert_eq!(class, Class::Forged, "{detail}");
        assert!(detail.contains("inactive"), "{detail}");
    }

    #[test]
    fn other_stacks_are_foreign() {
        let st = stack(Backend::Podman);
        let mut list = healthy();
        list.push(container("other-sonarr", "other", "sonarr", "x"));
        let mut unlabelled = container("legacy", "nixarr", "sonarr", "x");
        unlabelled.listed.labels.remove(LABEL_STACK);
        list.push(unlabelled);
        let plan = pass(&st, both_active(), Ok(list), true);
        assert_eq!(class_of(&plan, "other-sonarr").0, Class::Foreign);
        assert_eq!(class_of(&plan, "legacy").0, Class::Foreign);
        assert_eq!(class_of(&plan, "other-sonarr").1, Action::None);
        assert_eq!(class_of(&plan, "legacy").1, Action::None);
        assert!(plan.all_ok(), "{plan:#?}");
    }

    #[test]
    fn a_failed_read_classifies_and_does_nothing() {
        let st = stack(Backend::Podman);
        // The engine does not answer: no unit may look missing.
        let plan = pass(&st, both_active(), Err("timed out after 30s".into()), true);
        assert!(plan.units.is_empty() && plan.containers.is_empty());
        assert_eq!(
            plan.failed_reads,
            vec!["/usr/bin/podman: timed out after 30s"]
        );
        assert!(!plan.all_ok());
        // systemd does not answer: no container may look forged or orphan.
        let seen = Observed {
            stacks: vec![&st],
            units: Err("no bus".into()),
            containers: [("/usr/bin/podman".to_owned(), Ok(healthy()))].into(),
        };
        let plan = classify(&seen, true);
        assert!(plan.units.is_empty() && plan.containers.is_empty());
        assert_eq!(plan.failed_reads, vec!["systemd: no bus"]);
    }

    #[test]
    fn unit_systemd_does_not_know() {
        let st = stack(Backend::Podman);
        let mut u = both_active();
        u.remove("nixarr-radarr.service");
        let plan = pass(&st, u, Ok(healthy()), false);
        let (class, action, detail) = unit_of(&plan, "nixarr-radarr.service");
        assert_eq!((class, action), (Class::Missing, Action::None));
        assert!(detail.contains("daemon-reload"), "{detail}");
    }
}
