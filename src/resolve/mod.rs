//! From a parsed [`Spec`] to a validated [`Stack`]: catalog presets merged in,
//! defaults applied, every value checked. After this step nothing can fail
//! for a reason the user could fix; the renderer only formats.
//!
//! The steps live beside this file: [`check`] (field rules and the
//! validation context), [`service`] (one service's fields), [`health`],
//! [`secrets`] and [`migration`]. The validated types are in
//! [`crate::model`].

mod check;
mod health;
mod migration;
mod proxy;
mod secrets;
mod service;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;

use sha2::Digest as _;

use self::check::{Ctx, check_id, check_interface_name, is_name, is_network_name, systemd_owned};
pub use self::secrets::exposure_warnings;
use crate::catalog::{self, Preset};
use crate::duration::parse_duration;
use crate::error::SpecError;
use crate::graph::Graph;
use crate::limits;
use crate::model::{Engine, Reconcile, Service, Stack};
use crate::naming::{self, nearest};
use crate::spec::{PortSpec, Protocol, ReconcileSpec, ServiceSpec, Spec, VolumeSpec};

/// Parse "5.4.1" or "podman version 4.3.1" into (major, minor).
pub fn parse_version(s: &str) -> Option<(u64, u64)> {
    let token = s
        .split_whitespace()
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = token.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Validate a spec and merge catalog presets into it.
pub fn resolve(spec: &Spec, origin: &str) -> Result<Stack, SpecError> {
    let cx = Ctx { origin };
    let cat = catalog::catalog().map_err(|e| cx.err("services", format!("{e:#}")))?;
    if !is_name(&spec.prefix) || !limits::PREFIX_LENGTH.contains(&(spec.prefix.len() as u64)) {
        return Err(cx.err(
            "prefix",
            format!(
                "`{}` is not a valid prefix; use lowercase letters, digits and `-`, starting \
                 with a letter, at most {} characters",
                spec.prefix,
                limits::PREFIX_LENGTH.end()
            ),
        ));
    }
    if let Some(lock) = &spec.image_lock {
        cx.normal_path("imageLock", lock)?;
    }
    let (network, network_interface) = resolve_network(&cx, spec)?;
    let engine = resolve_engine(&cx, spec)?;
    check_defaults(&cx, spec)?;
    check_prefix_units(&cx, &spec.prefix)?;

    let mut services = BTreeMap::new();
    for (name, svc) in &spec.services {
        let preset = service_preset(&cx, spec, cat, name, svc)?;
        let service = service::resolve_service(&cx, spec, name, svc, preset)?;
        services.insert(name.clone(), service);
    }
    let vpn_service = resolve_vpn(&cx, spec, &mut services)?;
    let auto_update = auto_update(&cx, spec, &services)?;
    let api = api(&cx, spec)?;
    check_dependencies(&cx, &services)?;
    check_ports(&cx, &services)?;
    crate::profiles::check(spec, origin)?;
    let backup = resolve_schedule(&cx, spec.backup.as_ref())?;
    let proxy = proxy::resolve_proxy(&cx, spec, &services)?;
    let reconcile = spec
        .reconcile
        .as_ref()
        .map(|r| resolve_reconcile(&cx, r))
        .transpose()?;

    Ok(Stack {
        backend: spec.backend,
        prefix: spec.prefix.clone(),
        engine,
        network,
        network_interface,
        defaults: spec.defaults.clone(),
        data_dir: spec.paths.data_dir.clone(),
        services,
        vpn_service,
        lock: None,
        auto_update,
        api,
        profiles: spec.profiles.clone(),
        backup,
        proxy,
        reconcile,
    })
}

/// The stack's network and the bridge interface it gets on the host.
fn resolve_network(cx: &Ctx, spec: &Spec) -> Result<(String, String), SpecError> {
    let network = spec
        .network
        .name
        .clone()
        .unwrap_or_else(|| spec.prefix.clone());
    if !is_network_name(&network) {
        return Err(cx.err(
            "network.name",
            format!(
                "`{network}` is not a valid network name; use letters, digits, `_`, `.` and `-`"
            ),
        ));
    }
    let interface = match &spec.network.interface {
        Some(name) => {
            check_interface_name(name).map_err(|why| {
                cx.err(
                    "network.interface",
                    format!(
                        "`{name}` {why}; give another name, or leave it out for \
                         `{}`",
                        default_interface(&network)
                    ),
                )
            })?;
            name.clone()
        }
        None => default_interface(&network),
    };
    Ok((network, interface))
}

fn resolve_engine(cx: &Ctx, spec: &Spec) -> Result<Engine, SpecError> {
    let engine_path = spec
        .engine
        .path
        .clone()
        .unwrap_or_else(|| format!("/usr/bin/{}", spec.backend.name()));
    cx.abs_path("engine.path", &engine_path)?;
    if engine_path.chars().any(char::is_whitespace) {
        return Err(cx.err(
            "engine.path",
            "contains whitespace; give the path of the engine binary without spaces",
        ));
    }
    let version = match &spec.engine.version {
        None => None,
        Some(v) => Some(parse_version(v).ok_or_else(|| {
            cx.err(
                "engine.version",
                format!("`{v}` is not a version; write it like \"5.4.1\""),
            )
        })?),
    };
    Ok(Engine {
        path: engine_path,
        version,
    })
}

/// The stack-wide defaults and directories.
fn check_defaults(cx: &Ctx, spec: &Spec) -> Result<(), SpecError> {
    let defaults = &spec.defaults;
    check_id(cx, "defaults.puid", defaults.puid)?;
    check_id(cx, "defaults.pgid", defaults.pgid)?;
    cx.text("defaults.tz", &defaults.tz)?;
    if defaults.tz.is_empty() || defaults.tz.chars().any(char::is_whitespace) {
        return Err(cx.err(
            "defaults.tz",
            "must be a time zone name such as \"Europe/Berlin\"",
        ));
    }
    let umask_ok = limits::UMASK_DIGITS.contains(&(defaults.umask.len() as u64))
        && defaults.umask.chars().all(|c| ('0'..='7').contains(&c));
    if !umask_ok {
        return Err(cx.err(
            "defaults.umask",
            format!(
                "`{}` is not an octal umask; write it like \"002\"",
                defaults.umask
            ),
        ));
    }
    cx.mount_path("paths.stateDir", &spec.paths.state_dir)?;
    cx.host_path("paths.stateDir", &spec.paths.state_dir)?;
    cx.mount_path("paths.dataDir", &spec.paths.data_dir)?;
    cx.host_path("paths.dataDir", &spec.paths.data_dir)?;
    Ok(())
}

/// A service's name checked, and the catalog app it names, if any.
fn service_preset<'c>(
    cx: &Ctx,
    spec: &Spec,
    cat: &'c BTreeMap<&'static str, Preset>,
    name: &str,
    svc: &ServiceSpec,
) -> Result<Option<&'c Preset>, SpecError> {
    let path = format!("services.{name}");
    if !is_name(name) || !limits::NAME_LENGTH.contains(&(name.len() as u64)) {
        return Err(cx.err(
            &path,
            format!(
                "`{name}` is not a valid service name; use lowercase letters, digits and `-`, \
                 starting with a letter, at most {} characters",
                limits::NAME_LENGTH.end()
            ),
        ));
    }
    if naming::reserved(name) {
        return Err(cx.err(
            &path,
            format!(
                "`{name}` is reserved for nixarr-units' own units; choose another name \
                 (reserved: {}, and names ending in {})",
                naming::reserved_service_names().join(", "),
                naming::reserved_suffixes().join(", ")
            ),
        ));
    }
    check_service_units(cx, &spec.prefix, name)?;
    let preset = match &svc.app {
        None => None,
        Some(app) => Some(cat.get(app.as_str()).ok_or_else(|| {
            let hint = match nearest(app, catalog::app_names()) {
                Some(s) => format!("did you mean `{s}`? "),
                None => String::new(),
            };
            cx.err(
                format!("{path}.app"),
                format!(
                    "unknown app `{app}`; {hint}known apps: {} (or leave `app` out and give \
                     `image` for any other container)",
                    catalog::app_names().collect::<Vec<_>>().join(", ")
                ),
            )
        })?),
    };
    Ok(preset)
}

/// The VPN service, when a service runs behind it; its users then depend
/// on it.
fn resolve_vpn(
    cx: &Ctx,
    spec: &Spec,
    services: &mut BTreeMap<String, Service>,
) -> Result<Option<String>, SpecError> {
    let vpn_users: Vec<&String> = services
        .values()
        .filter(|s| s.vpn)
        .map(|s| &s.name)
        .collect();
    let vpn_service = if vpn_users.is_empty() {
        None
    } else {
        let vpn = &spec.vpn.service;
        match services.get(vpn) {
            None => {
                return Err(cx.err(
                    format!("services.{}.vpn", vpn_users[0]),
                    format!(
                        "is true but the stack has no VPN service `{vpn}`; add a service \
                         `{vpn}` with \"app\": \"gluetun\" (or set vpn.service to your VPN \
                         container), or set vpn to false"
                    ),
                ));
            }
            Some(v) if v.vpn => {
                return Err(cx.err(
                    format!("services.{vpn}.vpn"),
                    "the VPN service cannot itself run behind the VPN; set it to false",
                ));
            }
            Some(_) => Some(vpn.clone()),
        }
    };
    // A VPN service's users depend on it.
    if let Some(vpn) = &vpn_service {
        for s in services.values_mut() {
            if s.vpn && !s.depends_on.contains(vpn) {
                s.depends_on.push(vpn.clone());
                s.depends_on.sort();
            }
        }
    }
    Ok(vpn_service)
}

/// Passes closer together than this would race systemd's own restarts.
const MIN_RECONCILE_INTERVAL: u64 = 30;

fn resolve_reconcile(cx: &Ctx, r: &ReconcileSpec) -> Result<Reconcile, SpecError> {
    let text = r.interval.as_deref().unwrap_or("5m");
    let interval = parse_duration(text).map_err(|e| cx.err("reconcile.interval", e))?;
    if interval.as_secs() < MIN_RECONCILE_INTERVAL {
        return Err(cx.err(
            "reconcile.interval",
            format!(
                "`{text}` is shorter than {MIN_RECONCILE_INTERVAL}s; a pass that often would \
                 race systemd's own restarts; write e.g. \"5m\""
            ),
        ));
    }
    Ok(Reconcile {
        interval: interval.as_secs(),
        prune: r.prune,
    })
}

/// The bridge of network `network` when the spec names none: `br-<network>`,
/// or when that is longer than the kernel allows, `br-` with the first 7
/// characters and 4 hex digits of the name's sha256 (the NixOS module
/// derives the same name, modules/lib.nix `bridgeName`).
pub fn default_interface(network: &str) -> String {
    let full = format!("br-{network}");
    if limits::INTERFACE_LENGTH.contains(&(full.len() as u64)) {
        return full;
    }
    let digest = sha2::Sha256::digest(network.as_bytes());
    let head: String = network.chars().take(7).collect();
    format!("br-{head}-{:02x}{:02x}", digest[0], digest[1])
}

/// The units named after the prefix alone must not be systemd's.
fn check_prefix_units(cx: &Ctx, prefix: &str) -> Result<(), SpecError> {
    let names = crate::render::Names::new(prefix);
    for unit in names.stack_units() {
        if let Some(why) = systemd_owned(&unit) {
            return Err(cx.err(
                "prefix",
                format!(
                    "`{prefix}` would name the unit {unit}, which is {why}: the stack would \
                     replace it and break the host. Choose another prefix (e.g. \"media\" or \
                     \"nixarr\")"
                ),
            ));
        }
    }
    Ok(())
}

/// The units of one service must not be systemd's.
fn check_service_units(cx: &Ctx, prefix: &str, name: &str) -> Result<(), SpecError> {
    let names = crate::render::Names::new(prefix);
    for unit in names.service_units(name) {
        if let Some(why) = systemd_owned(&unit) {
            return Err(cx.err(
                format!("services.{name}"),
                format!(
                    "with the prefix `{prefix}` this service would be the unit {unit}, which is \
                     {why}; rename the service or choose another prefix"
                ),
            ));
        }
    }
    Ok(())
}

fn preset_ports(preset: &Preset) -> Vec<PortSpec> {
    preset
        .ports
        .iter()
        .map(|p| PortSpec {
            host: p.host,
            container: p.container,
            protocol: p.protocol,
            address: p.address.clone(),
        })
        .collect()
}

/// A preset's volumes, each with the keys to blame for its host and
/// container paths: the user wrote `paths.*`, not the preset's volumes.
fn preset_volumes(spec: &Spec, name: &str, preset: &Preset) -> Vec<(VolumeSpec, String, String)> {
    let mut v = vec![(
        VolumeSpec {
            host: format!("{}/{name}", spec.paths.state_dir),
            container: preset.config_dir.clone(),
            read_only: false,
            create: true,
        },
        "paths.stateDir".to_owned(),
        format!("services.{name}.app"),
    )];
    if preset.mounts_data {
        v.push((
            VolumeSpec {
                host: spec.paths.data_dir.clone(),
                container: spec.paths.data_dir.clone(),
                read_only: false,
                create: false,
            },
            "paths.dataDir".to_owned(),
            "paths.dataDir".to_owned(),
        ));
    }
    v
}

fn check_dependencies(cx: &Ctx, services: &BTreeMap<String, Service>) -> Result<(), SpecError> {
    for s in services.values() {
        for (i, d) in s.depends_on.iter().enumerate() {
            if d == &s.name {
                return Err(cx.err(
                    format!("services.{}.dependsOn[{i}]", s.name),
                    "a service cannot depend on itself; remove it",
                ));
            }
            if !services.contains_key(d) {
                let hint = nearest(d, services.keys().map(String::as_str))
                    .map(|s| format!(" Did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(cx.err(
                    format!("services.{}.dependsOn[{i}]", s.name),
                    format!("depends on `{d}`, which is not a service in this spec.{hint} Add it or remove the dependency."),
                ));
            }
        }
    }
    let graph = Graph::new(
        services
            .values()
            .map(|s| (s.name.as_str(), s.depends_on.as_slice())),
    );
    if let Some(cycle) = graph.cycle() {
        return Err(cx.err(
            format!("services.{}.dependsOn", cycle[0]),
            format!(
                "dependency cycle {}; remove one of these dependencies",
                cycle.join(" -> ")
            ),
        ));
    }
    Ok(())
}

/// Who holds a host port so far: (address, service, index in its ports).
type PortHolders<'a> = Vec<(Option<IpAddr>, &'a str, usize)>;

fn check_ports(cx: &Ctx, services: &BTreeMap<String, Service>) -> Result<(), SpecError> {
    let mut seen: BTreeMap<(u16, Protocol), PortHolders> = BTreeMap::new();
    for s in services.values() {
        for (i, p) in s.ports.iter().enumerate() {
            let entry = seen.entry((p.host, p.protocol)).or_default();
            for (addr, other, j) in entry.iter() {
                let overlap = match (addr, p.address) {
                    (None, _) | (_, None) => true,
                    (Some(a), Some(b)) => a == &b || a.is_unspecified() || b.is_unspecified(),
                };
                if overlap {
                    let what = if *other == s.name.as_str() {
                        format!("is already used by ports[{j}] of the same service")
                    } else {
                        format!("is also used by services.{other}.ports[{j}]")
                    };
                    // The catalog's ports: the user wrote `app`, not them.
                    let (key, fix) = if s.ports_from_preset {
                        (
                            format!("services.{}.app", s.name),
                            format!(
                                "the catalog app `{}` publishes host port {}/{}, which {what}; \
                                 give services.{} its own `ports` (e.g. [{{\"host\": {}, \
                                 \"container\": {}}}])",
                                s.app.as_deref().unwrap_or(&s.name),
                                p.host,
                                p.protocol.name(),
                                s.name,
                                p.host.saturating_add(1),
                                p.container
                            ),
                        )
                    } else {
                        (
                            format!("services.{}.ports[{i}].host", s.name),
                            format!(
                                "host port {}/{} {what}; give one of them another host port",
                                p.host,
                                p.protocol.name()
                            ),
                        )
                    };
                    return Err(cx.err(key, fix));
                }
            }
            entry.push((p.address, &s.name, i));
        }
    }
    Ok(())
}

/// `autoUpdate`: a schedule systemd can write in a unit, and services the
/// stack has, each run by tag (an image file or a digest reference has
/// nothing to update).
fn auto_update(
    cx: &Ctx<'_>,
    spec: &Spec,
    services: &BTreeMap<String, Service>,
) -> Result<Option<crate::model::AutoUpdate>, SpecError> {
    let Some(au) = &spec.auto_update else {
        return Ok(None);
    };
    cx.text("autoUpdate.schedule", &au.schedule)?;
    if au.schedule.trim().is_empty() {
        return Err(cx.err(
            "autoUpdate.schedule",
            "is empty; write when to update as systemd's OnCalendar= does, e.g. \"weekly\" or \"Sun 04:00\"",
        ));
    }
    if au.services.is_empty() {
        return Err(cx.err(
            "autoUpdate.services",
            "is empty; name the services to update, or remove autoUpdate",
        ));
    }
    for (i, name) in au.services.iter().enumerate() {
        let path = format!("autoUpdate.services[{i}]");
        let Some(svc) = services.get(name) else {
            return Err(cx.err(
                path,
                format!(
                    "`{name}` is not a service of this stack; name one of {}",
                    services.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        if svc.image_file.is_some() || svc.image.contains('@') {
            return Err(cx.err(
                path,
                format!(
                    "`{name}` runs an image file or a digest reference, which has no newer \
                     version to update to; remove it from autoUpdate.services"
                ),
            ));
        }
    }
    let mut names = au.services.clone();
    names.sort();
    names.dedup();
    Ok(Some(crate::model::AutoUpdate {
        schedule: au.schedule.trim().to_owned(),
        services: names,
    }))
}

/// The stack's backup schedule: a calendar expression systemd can parse
/// (checked for what can be checked without systemd: text, no quoting
/// tricks), a directory, how many to keep.
fn resolve_schedule(
    cx: &Ctx,
    given: Option<&crate::spec::ScheduleSpec>,
) -> Result<Option<crate::model::BackupSchedule>, SpecError> {
    let Some(b) = given else {
        return Ok(None);
    };
    cx.text("backup.schedule", &b.schedule)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || " -:*,./~".contains(c);
    if b.schedule.trim().is_empty() || !b.schedule.chars().all(allowed) {
        return Err(cx.err(
            "backup.schedule",
            format!(
                "`{}` is not a calendar expression; write one as systemd's OnCalendar= takes \
                 it, e.g. \"daily\" or \"*-*-* 03:30\" (check it with `systemd-analyze \
                 calendar`)",
                b.schedule
            ),
        ));
    }
    cx.host_path("backup.dir", &b.dir)?;
    let keep = crate::limits::BACKUP_KEEP;
    if !keep.contains(&b.keep) {
        return Err(cx.err(
            "backup.keep",
            format!("{} is out of range {}", b.keep, crate::limits::span(&keep)),
        ));
    }
    Ok(Some(crate::model::BackupSchedule {
        schedule: b.schedule.trim().to_owned(),
        dir: b.dir.clone(),
        keep: b.keep,
        allow_stop: b.allow_stop,
    }))
}

/// A user or group name systemd accepts (and a polkit rule can hold in a
/// string as it is): `key` names it in the error.
fn system_name(cx: &Ctx<'_>, key: &str, name: &str, example: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 31
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-');
    if ok {
        return Ok(());
    }
    let what = if key.ends_with("user") {
        "a user"
    } else {
        "a group"
    };
    Err(cx.err(
        key,
        format!("`{name}` is not {what} name; write e.g. {example}"),
    ))
}

/// `api`: listen addresses that parse, absolute token files, a token for
/// TCP, user and group names systemd accepts.
fn api(cx: &Ctx<'_>, spec: &Spec) -> Result<Option<crate::model::Api>, SpecError> {
    let Some(a) = spec.api.as_ref().filter(|a| a.enable) else {
        return Ok(None);
    };
    let mut listen = Vec::new();
    for (i, l) in a.listen.iter().enumerate() {
        let addr = l.parse::<std::net::SocketAddr>().map_err(|_| {
            cx.err(
                format!("api.listen[{i}]"),
                format!(
                    "`{l}` is not an address with a port; write e.g. 127.0.0.1:8089 or [::1]:8089"
                ),
            )
        })?;
        listen.push(addr);
    }
    let socket = a
        .socket
        .clone()
        .unwrap_or_else(|| crate::model::DEFAULT_API_SOCKET.to_owned());
    cx.normal_path("api.socket", &socket)?;
    for (key, file) in [
        ("api.tokenFile", &a.token_file),
        ("api.readTokenFile", &a.read_token_file),
    ] {
        if let Some(f) = file {
            cx.normal_path(key, f)?;
        }
    }
    if !listen.is_empty() && a.token_file.is_none() && a.read_token_file.is_none() {
        return Err(cx.err(
            "api.tokenFile",
            "is missing: a TCP listener (api.listen) needs a token; name a file that holds \
             one (e.g. a sops-nix secret), or remove api.listen",
        ));
    }
    for (key, name, example) in [
        ("api.group", &a.group, "media"),
        ("api.user", &a.user, "nixarr-api"),
    ] {
        if let Some(n) = name {
            system_name(cx, key, n, example)?;
        }
    }
    Ok(Some(crate::model::Api {
        socket,
        listen,
        group: a.group.clone(),
        user: a.user.clone(),
        token_file: a.token_file.clone(),
        read_token_file: a.read_token_file.clone(),
    }))
}
