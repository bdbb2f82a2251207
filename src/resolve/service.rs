//! One service: the spec's fields merged with its catalog preset, each
//! checked, into a [`Service`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::check::{Ctx, check_id, check_image, is_env_name, port_number};
use super::health::resolve_health;
use super::migration::resolve_migration;
use super::secrets::resolve_secrets;
use super::{parse_version, preset_ports, preset_volumes};
use crate::catalog::Preset;
use crate::error::SpecError;
use crate::limits;
use crate::model::{LABEL_PREFIX, Port, Service, Volume};
use crate::spec::{PortSpec, Restart, SecretMode, ServiceSpec, Spec, VolumeSpec};

/// Seconds between SIGTERM and SIGKILL for a catalog app.
pub const DEFAULT_APP_STOP_TIMEOUT: u64 = 60;
/// … and for any other container: what `podman stop` and `docker stop` wait.
pub const DEFAULT_STOP_TIMEOUT: u64 = 10;

pub(super) fn resolve_ports(
    cx: &Ctx,
    path: &str,
    ports: &[PortSpec],
) -> Result<Vec<Port>, SpecError> {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let pp = format!("{path}.ports[{i}]");
            let container = port_number(cx, &format!("{pp}.container"), p.container)?;
            let host = match p.host {
                Some(h) => port_number(cx, &format!("{pp}.host"), h)?,
                None => container,
            };
            let address = match &p.address {
                None => None,
                Some(a) => Some(a.parse::<IpAddr>().map_err(|_| {
                    cx.err(
                        format!("{pp}.address"),
                        format!("`{a}` is not an IP address; write e.g. \"127.0.0.1\" or \"::1\""),
                    )
                })?),
            };
            Ok(Port {
                host,
                container,
                protocol: p.protocol,
                address,
            })
        })
        .collect()
}

pub(super) fn resolve_service(
    cx: &Ctx,
    spec: &Spec,
    name: &str,
    svc: &ServiceSpec,
    preset: Option<&Preset>,
) -> Result<Service, SpecError> {
    let path = format!("services.{name}");
    let p = |field: &str| format!("{path}.{field}");

    let uid = svc
        .puid
        .or(preset.and_then(|p| p.uid))
        .unwrap_or(spec.defaults.puid);
    let gid = svc
        .pgid
        .or(preset.and_then(|p| p.gid))
        .unwrap_or(spec.defaults.pgid);
    check_id(cx, &p("puid"), uid)?;
    check_id(cx, &p("pgid"), gid)?;

    let image = svc
        .image
        .clone()
        .or_else(|| preset.map(|p| p.image.clone()))
        .ok_or_else(|| {
            cx.err(
                p("image"),
                "is missing; give the container image (e.g. \"docker.io/library/nginx:1.27\") \
                 or an `app` from the catalog",
            )
        })?;
    cx.text(p("image"), &image)?;
    check_image(cx, &p("image"), &image)?;
    if let Some(f) = &svc.image_file {
        cx.normal_path(p("imageFile"), f)?;
    }

    let description = svc
        .description
        .clone()
        .or_else(|| preset.map(|p| p.description.clone()))
        .unwrap_or_else(|| format!("{name} ({image})"));
    cx.text(p("description"), &description)?;
    if description.ends_with('\\') || description.chars().any(char::is_control) {
        return Err(cx.err(
            p("description"),
            "must not contain control characters or end with a backslash",
        ));
    }
    let documentation = preset
        .map(|p| vec![p.homepage.clone(), p.documentation.clone()])
        .unwrap_or_default();

    let port_specs = match (&svc.ports, preset) {
        (Some(ports), _) => ports.clone(),
        (None, Some(preset)) => preset_ports(preset),
        (None, None) => Vec::new(),
    };
    let ports = resolve_ports(cx, &path, &port_specs)?;

    // Each volume with the keys its host and container paths came from: the
    // user's own `volumes[i]`, or the `paths.*` that filled in a preset's.
    let volume_specs: Vec<(VolumeSpec, String, String)> = match (&svc.volumes, preset) {
        (Some(v), _) => v
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let vp = format!("{path}.volumes[{i}]");
                (v.clone(), format!("{vp}.host"), format!("{vp}.container"))
            })
            .collect(),
        (None, Some(preset)) => preset_volumes(spec, name, preset),
        (None, None) => Vec::new(),
    };
    let mut volumes = Vec::with_capacity(volume_specs.len());
    let mut targets: BTreeMap<String, &str> = BTreeMap::new();
    for (v, host_key, container_key) in &volume_specs {
        cx.mount_path(host_key, &v.host)?;
        cx.host_path(host_key, &v.host)?;
        cx.mount_path(container_key, &v.container)?;
        if v.container == "/" {
            return Err(cx.err(
                container_key,
                "`/` would cover the whole container; mount the volume at a directory",
            ));
        }
        if let Some(first) = targets.insert(v.container.clone(), container_key) {
            let other = if first.ends_with(".app") {
                format!(
                    "where the catalog app `{}` of service {name} keeps its config",
                    svc.app.as_deref().unwrap_or(name)
                )
            } else {
                format!("also the container path of {first}")
            };
            return Err(cx.err(
                container_key,
                format!(
                    "`{}` is {other}; give each volume its own container path",
                    v.container
                ),
            ));
        }
        volumes.push(Volume {
            host: v.host.clone(),
            container: v.container.clone(),
            read_only: v.read_only,
            create: v.create,
        });
    }
    let config_dir = preset.and_then(|pr| {
        volumes
            .iter()
            .find(|v| v.container == pr.config_dir)
            .map(|v| v.host.clone())
    });

    let mut environment = BTreeMap::new();
    if let Some(preset) = preset {
        if preset.linuxserver {
            environment.insert("PUID".to_owned(), uid.to_string());
            environment.insert("PGID".to_owned(), gid.to_string());
            environment.insert("UMASK".to_owned(), spec.defaults.umask.clone());
        }
        environment.insert("TZ".to_owned(), spec.defaults.tz.clone());
        environment.extend(preset.environment.clone());
    }
    environment.extend(svc.environment.clone());
    for (k, v) in &environment {
        let ep = format!("{path}.environment.{k}");
        if !is_env_name(k) {
            return Err(cx.err(
                &ep,
                format!(
                    "`{k}` is not a valid variable name; use letters, digits and `_`, not \
                     starting with a digit"
                ),
            ));
        }
        cx.text(&ep, v)?;
    }
    let environment_files = svc.environment_files.clone().unwrap_or_default();
    for (i, f) in environment_files.iter().enumerate() {
        cx.normal_path(format!("{path}.environmentFiles[{i}]"), f)?;
    }

    let mut depends_on = svc.depends_on.clone().unwrap_or_default();
    depends_on.sort();
    depends_on.dedup();

    let cmd = svc.cmd.clone().unwrap_or_default();
    for (i, a) in cmd.iter().enumerate() {
        cx.text(format!("{path}.cmd[{i}]"), a)?;
    }
    if let Some(e) = &svc.entrypoint {
        cx.text(p("entrypoint"), e)?;
    }
    if let Some(u) = &svc.user {
        cx.text(p("user"), u)?;
    }
    let cap_add = svc
        .cap_add
        .clone()
        .or_else(|| preset.map(|p| p.cap_add.clone()))
        .unwrap_or_default();
    for (i, c) in cap_add.iter().enumerate() {
        if c.is_empty() || !c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(cx.err(
                format!("{path}.capAdd[{i}]"),
                format!("`{c}` is not a capability name; write e.g. \"NET_ADMIN\""),
            ));
        }
    }
    let devices = svc
        .devices
        .clone()
        .or_else(|| preset.map(|p| p.devices.clone()))
        .unwrap_or_default();
    for (i, d) in devices.iter().enumerate() {
        cx.abs_path(format!("{path}.devices[{i}]"), d)?;
    }
    let extra_args = svc.extra_args.clone().unwrap_or_default();
    for (i, a) in extra_args.iter().enumerate() {
        cx.text(format!("{path}.extraArgs[{i}]"), a)?;
    }
    for (k, v) in &svc.labels {
        let lp = format!("{path}.labels.{k}");
        cx.text(&lp, k)?;
        cx.text(&lp, v)?;
        if k.is_empty() || k.contains('=') || k.chars().any(char::is_whitespace) {
            return Err(cx.err(
                &lp,
                "label keys must be non-empty and contain no `=` or whitespace",
            ));
        }
        if k.starts_with(LABEL_PREFIX) {
            return Err(cx.err(
                &lp,
                format!("label keys starting with `{LABEL_PREFIX}` are set by nixarr-units; choose another key"),
            ));
        }
    }

    let version = spec.engine.version.as_deref().and_then(parse_version);
    let secrets = resolve_secrets(cx, spec.backend, version, &path, svc, preset, &environment)?;

    if secrets.iter().any(|s| s.mode == SecretMode::File)
        && let Some(i) = volumes.iter().position(|v| v.container == "/run/secrets")
    {
        return Err(cx.err(
            format!("{path}.volumes[{i}].container"),
            "`/run/secrets` is where this service's `file` secrets are mounted; mount the \
             volume elsewhere",
        ));
    }
    let health_spec = match &svc.health {
        Some(h) => h.clone(),
        None => preset.and_then(|p| p.health.clone()),
    };
    let vpn = svc.vpn.unwrap_or(false);
    let health = match health_spec {
        None => None,
        Some(h) => {
            // A preset's probe the user never wrote: blame what they did write.
            let preset_app = svc.health.is_none().then_some(svc.app.as_deref()).flatten();
            Some(resolve_health(cx, &p("health"), &h, &ports, preset_app)?)
        }
    };

    // Catalog apps get a minute to save their databases; anything else the
    // engines' own default grace.
    let stop_timeout = svc.stop_timeout.unwrap_or(if preset.is_some() {
        DEFAULT_APP_STOP_TIMEOUT
    } else {
        DEFAULT_STOP_TIMEOUT
    });
    if !limits::STOP_TIMEOUT.contains(&stop_timeout) {
        return Err(cx.err(
            p("stopTimeout"),
            format!(
                "{stop_timeout} is out of range {} seconds",
                limits::span(&limits::STOP_TIMEOUT)
            ),
        ));
    }
    let start_timeout = svc.start_timeout.unwrap_or(900);
    if !limits::START_TIMEOUT.contains(&start_timeout) {
        return Err(cx.err(
            p("startTimeout"),
            format!(
                "{start_timeout} is out of range {} seconds",
                limits::span(&limits::START_TIMEOUT)
            ),
        ));
    }

    let migration = resolve_migration(cx, &path, svc, preset, config_dir.as_deref(), uid, gid)?;

    Ok(Service {
        name: name.to_owned(),
        app: svc.app.clone(),
        description,
        documentation,
        image,
        image_file: svc.image_file.clone(),
        ports,
        ports_from_preset: svc.ports.is_none() && preset.is_some(),
        volumes,
        environment,
        environment_files,
        depends_on,
        vpn,
        cmd,
        entrypoint: svc.entrypoint.clone(),
        user: svc.user.clone(),
        init: svc.init.or(preset.map(|p| p.init)).unwrap_or(false),
        cap_add,
        devices,
        extra_args,
        labels: svc.labels.clone(),
        secrets,
        health,
        restart: svc.restart.unwrap_or(Restart::OnFailure),
        stop_timeout,
        start_timeout,
        uid,
        gid,
        config_dir,
        migration,
    })
}
