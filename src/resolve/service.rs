//! One service: the spec's fields merged with its catalog preset, each
//! checked, into a [`Service`]. [`resolve_service`] names every field of
//! [`ServiceSpec`] and hands each group to one helper.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::check::{Ctx, check_id, check_image, is_env_name, port_number};
use super::health::resolve_health;
use super::migration::{resolve_backup, resolve_migration};
use super::secrets::resolve_secrets;
use super::{preset_ports, preset_volumes};
use crate::catalog::Preset;
use crate::error::SpecError;
use crate::limits;
use crate::model::{
    Device, DevicePermissions, Health, LABEL_PREFIX, Port, Secret, Service, Volume,
};
use crate::spec::{
    DeviceSpec, HealthSpec, PortSpec, Restart, SecretMode, ServiceSpec, Spec, VolumeSpec,
};

/// Seconds between SIGTERM and SIGKILL for a catalog app.
pub const DEFAULT_APP_STOP_TIMEOUT: u64 = 60;
/// … and for any other container: what `podman stop` and `docker stop` wait.
pub const DEFAULT_STOP_TIMEOUT: u64 = 10;
/// Seconds systemd waits for a container to start when the spec says not.
const DEFAULT_START_TIMEOUT: u64 = 900;

/// One service being resolved: where its errors point and what fills in
/// what it leaves out.
struct Svc<'a> {
    cx: &'a Ctx<'a>,
    spec: &'a Spec,
    name: &'a str,
    /// `services.<name>`.
    path: String,
    preset: Option<&'a Preset>,
}

/// The image and how the unit describes it.
struct Identity {
    image: String,
    description: String,
    documentation: Vec<String>,
}

/// How the container's process starts.
struct Command {
    cmd: Vec<String>,
    entrypoint: Option<String>,
    user: Option<String>,
    init: bool,
}

// Over ~100 lines on purpose: two thirds of it are the exhaustive
// destructuring of ServiceSpec and the Service literal, one field a line;
// every check lives in a helper below.
pub(super) fn resolve_service(
    cx: &Ctx,
    spec: &Spec,
    name: &str,
    svc: &ServiceSpec,
    preset: Option<&Preset>,
) -> Result<Service, SpecError> {
    // Every field by name, no `..`: a field added to ServiceSpec does not
    // compile until it is handled here. The order is the order of checks.
    let ServiceSpec {
        app,
        description,
        image,
        image_file,
        ports,
        volumes,
        environment,
        environment_files,
        depends_on,
        vpn,
        cmd,
        entrypoint,
        user,
        init,
        cap_add,
        devices,
        extra_args,
        labels,
        health,
        secrets,
        secret_file_env,
        restart,
        stop_timeout,
        start_timeout,
        puid,
        pgid,
        migration,
        backup: _,
        proxy,
    } = svc;
    let s = Svc {
        cx,
        spec,
        name,
        path: format!("services.{name}"),
        preset,
    };
    let (uid, gid) = s.ids(*puid, *pgid)?;
    let identity = s.identity(image, description)?;
    if let Some(f) = image_file {
        cx.normal_path(s.key("imageFile"), f)?;
    }
    let ports_from_preset = ports.is_none() && preset.is_some();
    let ports = s.ports(ports.as_deref())?;
    let (volumes, config_dir) = s.volumes(volumes.as_deref(), app.as_deref())?;
    let mut environment = s.environment(environment, uid, gid)?;
    // Behind a proxy's sub-path the app must know its URL base.
    if let (Some(path), Some(var)) = (
        proxy.as_ref().and_then(|p| p.path.as_ref()),
        preset.and_then(|p| p.url_base_env.as_ref()),
    ) {
        environment
            .entry(var.clone())
            .or_insert_with(|| path.clone());
    }
    let environment_files = s.paths("environmentFiles", environment_files)?;
    let mut depends_on = depends_on.clone().unwrap_or_default();
    depends_on.sort();
    depends_on.dedup();
    let command = s.command(cmd, entrypoint, user, *init)?;
    let cap_add = s.cap_add(cap_add)?;
    let devices = s.devices(devices)?;
    let extra_args = s.texts("extraArgs", extra_args)?;
    s.labels(labels)?;
    let secrets = resolve_secrets(
        cx,
        spec,
        &s.path,
        secrets,
        secret_file_env,
        preset,
        &environment,
    )?;
    s.secrets_have_their_mount(&secrets, &volumes)?;
    let health = s.health(health, app.as_deref(), &ports)?;
    let (stop_timeout, start_timeout) = s.timeouts(*stop_timeout, *start_timeout)?;
    let migration = resolve_migration(
        cx,
        &s.path,
        migration,
        preset,
        config_dir.as_deref(),
        uid,
        gid,
    )?;
    // Reads `svc.backup` itself (the field is named above).
    let backup = resolve_backup(cx, &s.path, svc, preset, config_dir.as_deref(), &volumes)?;

    Ok(Service {
        name: name.to_owned(),
        app: app.clone(),
        description: identity.description,
        documentation: identity.documentation,
        image: identity.image,
        image_file: image_file.clone(),
        ports,
        ports_from_preset,
        volumes,
        environment,
        environment_files,
        depends_on,
        vpn: vpn.unwrap_or(false),
        cmd: command.cmd,
        entrypoint: command.entrypoint,
        user: command.user,
        init: command.init,
        cap_add,
        devices,
        extra_args,
        labels: labels.clone(),
        secrets,
        health,
        restart: restart.unwrap_or(Restart::OnFailure),
        stop_timeout,
        start_timeout,
        uid,
        gid,
        config_dir,
        migration,
        backup,
    })
}

impl Svc<'_> {
    /// The key of one of the service's fields, for an error.
    fn key(&self, field: &str) -> String {
        format!("{}.{field}", self.path)
    }

    /// The uid and gid the service runs as: its own, its app's, the stack's.
    fn ids(&self, puid: Option<u64>, pgid: Option<u64>) -> Result<(u64, u64), SpecError> {
        let preset = self.preset;
        let uid = puid
            .or(preset.and_then(|p| p.uid))
            .unwrap_or(self.spec.defaults.puid);
        let gid = pgid
            .or(preset.and_then(|p| p.gid))
            .unwrap_or(self.spec.defaults.pgid);
        check_id(self.cx, &self.key("puid"), uid)?;
        check_id(self.cx, &self.key("pgid"), gid)?;
        Ok((uid, gid))
    }

    fn identity(
        &self,
        image: &Option<String>,
        description: &Option<String>,
    ) -> Result<Identity, SpecError> {
        let (cx, preset) = (self.cx, self.preset);
        let image = image
            .clone()
            .or_else(|| preset.map(|p| p.image.clone()))
            .ok_or_else(|| {
                cx.err(
                    self.key("image"),
                    "is missing; give the container image (e.g. \
                     \"docker.io/library/nginx:1.27\") or an `app` from the catalog",
                )
            })?;
        cx.text(self.key("image"), &image)?;
        check_image(cx, &self.key("image"), &image)?;
        let description = description
            .clone()
            .or_else(|| preset.map(|p| p.description.clone()))
            .unwrap_or_else(|| format!("{} ({image})", self.name));
        cx.text(self.key("description"), &description)?;
        if description.ends_with('\\') || description.chars().any(char::is_control) {
            return Err(cx.err(
                self.key("description"),
                "must not contain control characters or end with a backslash",
            ));
        }
        let documentation = preset
            .map(|p| vec![p.homepage.clone(), p.documentation.clone()])
            .unwrap_or_default();
        Ok(Identity {
            image,
            description,
            documentation,
        })
    }

    /// The service's ports, else its app's.
    fn ports(&self, ports: Option<&[PortSpec]>) -> Result<Vec<Port>, SpecError> {
        let specs = match (ports, self.preset) {
            (Some(ports), _) => ports.to_vec(),
            (None, Some(preset)) => preset_ports(preset),
            (None, None) => Vec::new(),
        };
        resolve_ports(self.cx, &self.path, &specs)
    }

    /// The service's volumes, else its app's; with the host directory of
    /// the app's config when it has one.
    fn volumes(
        &self,
        volumes: Option<&[VolumeSpec]>,
        app: Option<&str>,
    ) -> Result<(Vec<Volume>, Option<String>), SpecError> {
        let (cx, path, name) = (self.cx, &self.path, self.name);
        // Each volume with the keys its host and container paths came from:
        // the user's own `volumes[i]`, or the `paths.*` that filled in a
        // preset's.
        let specs: Vec<(VolumeSpec, String, String)> = match (volumes, self.preset) {
            (Some(v), _) => v
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let vp = format!("{path}.volumes[{i}]");
                    (v.clone(), format!("{vp}.host"), format!("{vp}.container"))
                })
                .collect(),
            (None, Some(preset)) => preset_volumes(self.spec, name, preset),
            (None, None) => Vec::new(),
        };
        let mut out = Vec::with_capacity(specs.len());
        let mut targets: BTreeMap<String, &str> = BTreeMap::new();
        for (v, host_key, container_key) in &specs {
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
                        app.unwrap_or(name)
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
            out.push(Volume {
                host: v.host.clone(),
                container: v.container.clone(),
                read_only: v.read_only,
                create: v.create,
            });
        }
        let config_dir = self.preset.and_then(|pr| {
            out.iter()
                .find(|v| v.container == pr.config_dir)
                .map(|v| v.host.clone())
        });
        Ok((out, config_dir))
    }

    /// The app's variables (LinuxServer ids, time zone, its own), then the
    /// service's over them.
    fn environment(
        &self,
        own: &BTreeMap<String, String>,
        uid: u64,
        gid: u64,
    ) -> Result<BTreeMap<String, String>, SpecError> {
        let defaults = &self.spec.defaults;
        let mut environment = BTreeMap::new();
        if let Some(preset) = self.preset {
            if preset.linuxserver {
                environment.insert("PUID".to_owned(), uid.to_string());
                environment.insert("PGID".to_owned(), gid.to_string());
                environment.insert("UMASK".to_owned(), defaults.umask.clone());
            }
            environment.insert("TZ".to_owned(), defaults.tz.clone());
            environment.extend(preset.environment.clone());
        }
        environment.extend(own.clone());
        for (k, v) in &environment {
            let ep = self.key(&format!("environment.{k}"));
            if !is_env_name(k) {
                return Err(self.cx.err(
                    &ep,
                    format!(
                        "`{k}` is not a valid variable name; use letters, digits and `_`, not \
                         starting with a digit"
                    ),
                ));
            }
            self.cx.text(&ep, v)?;
        }
        Ok(environment)
    }

    /// A list of host paths, each normalised.
    fn paths(&self, field: &str, list: &Option<Vec<String>>) -> Result<Vec<String>, SpecError> {
        let list = list.clone().unwrap_or_default();
        for (i, f) in list.iter().enumerate() {
            self.cx.normal_path(self.key(&format!("{field}[{i}]")), f)?;
        }
        Ok(list)
    }

    /// A list of arguments, each one line.
    fn texts(&self, field: &str, list: &Option<Vec<String>>) -> Result<Vec<String>, SpecError> {
        let list = list.clone().unwrap_or_default();
        for (i, a) in list.iter().enumerate() {
            self.cx.text(self.key(&format!("{field}[{i}]")), a)?;
        }
        Ok(list)
    }

    fn command(
        &self,
        cmd: &Option<Vec<String>>,
        entrypoint: &Option<String>,
        user: &Option<String>,
        init: Option<bool>,
    ) -> Result<Command, SpecError> {
        let cmd = self.texts("cmd", cmd)?;
        if let Some(e) = entrypoint {
            self.cx.text(self.key("entrypoint"), e)?;
        }
        if let Some(u) = user {
            self.cx.text(self.key("user"), u)?;
        }
        Ok(Command {
            cmd,
            entrypoint: entrypoint.clone(),
            user: user.clone(),
            init: init.or(self.preset.map(|p| p.init)).unwrap_or(false),
        })
    }

    /// The service's capabilities, else its app's.
    fn cap_add(&self, cap_add: &Option<Vec<String>>) -> Result<Vec<String>, SpecError> {
        let cap_add = cap_add
            .clone()
            .or_else(|| self.preset.map(|p| p.cap_add.clone()))
            .unwrap_or_default();
        for (i, c) in cap_add.iter().enumerate() {
            if c.is_empty() || !c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(self.cx.err(
                    self.key(&format!("capAdd[{i}]")),
                    format!("`{c}` is not a capability name; write e.g. \"NET_ADMIN\""),
                ));
            }
        }
        Ok(cap_add)
    }

    /// The service's devices, else its app's: absolute, normal paths
    /// without `:` (the engines' separator), permissions from `r`, `w`, `m`.
    fn devices(&self, devices: &Option<Vec<DeviceSpec>>) -> Result<Vec<Device>, SpecError> {
        let cx = self.cx;
        let devices = devices
            .as_ref()
            .or(self.preset.map(|p| &p.devices))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(devices.len());
        for (i, d) in devices.iter().enumerate() {
            let key = |field: &str| self.key(&format!("devices[{i}].{field}"));
            let container = d.container.clone().unwrap_or_else(|| d.host.clone());
            for (field, path) in [("host", &d.host), ("container", &container)] {
                cx.normal_path(key(field), path)?;
                if path.contains(':') {
                    return Err(cx.err(
                        key(field),
                        format!(
                            "`{path}` contains `:`, which separates the parts of `--device`; \
                             use another path to the device (e.g. under /dev/disk/by-id)"
                        ),
                    ));
                }
            }
            let permissions = match &d.permissions {
                None => None,
                Some(letters) => Some(DevicePermissions::parse(letters).ok_or_else(|| {
                    cx.err(
                        key("permissions"),
                        format!(
                            "`{letters}` is not a set of device permissions; write letters \
                             from r (read), w (write) and m (mknod), each once, e.g. \"rw\""
                        ),
                    )
                })?),
            };
            out.push(Device {
                host: d.host.clone(),
                container,
                permissions,
            });
        }
        Ok(out)
    }

    fn labels(&self, labels: &BTreeMap<String, String>) -> Result<(), SpecError> {
        let cx = self.cx;
        for (k, v) in labels {
            let lp = self.key(&format!("labels.{k}"));
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
                    format!(
                        "label keys starting with `{LABEL_PREFIX}` are set by nixarr-units; \
                         choose another key"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `file` secrets are mounted at /run/secrets: no volume may be.
    fn secrets_have_their_mount(
        &self,
        secrets: &[Secret],
        volumes: &[Volume],
    ) -> Result<(), SpecError> {
        if secrets.iter().any(|s| s.mode == SecretMode::File)
            && let Some(i) = volumes.iter().position(|v| v.container == "/run/secrets")
        {
            return Err(self.cx.err(
                self.key(&format!("volumes[{i}].container")),
                "`/run/secrets` is where this service's `file` secrets are mounted; mount the \
                 volume elsewhere",
            ));
        }
        Ok(())
    }

    /// The service's health check, else its app's (`null` for none).
    fn health(
        &self,
        health: &Option<Option<HealthSpec>>,
        app: Option<&str>,
        ports: &[Port],
    ) -> Result<Option<Health>, SpecError> {
        let spec = match health {
            Some(h) => h.clone(),
            None => self.preset.and_then(|p| p.health.clone()),
        };
        let Some(h) = spec else {
            return Ok(None);
        };
        // A preset's probe the user never wrote: blame what they did write.
        let preset_app = health.is_none().then_some(app).flatten();
        resolve_health(self.cx, &self.key("health"), &h, ports, preset_app).map(Some)
    }

    /// Seconds to stop and to start. Catalog apps get a minute to save
    /// their databases; anything else the engines' own default grace.
    fn timeouts(&self, stop: Option<u64>, start: Option<u64>) -> Result<(u64, u64), SpecError> {
        let stop = stop.unwrap_or(if self.preset.is_some() {
            DEFAULT_APP_STOP_TIMEOUT
        } else {
            DEFAULT_STOP_TIMEOUT
        });
        let seconds = " seconds";
        (self.cx).within(
            self.key("stopTimeout"),
            stop,
            &limits::STOP_TIMEOUT,
            seconds,
        )?;
        let start = start.unwrap_or(DEFAULT_START_TIMEOUT);
        (self.cx).within(
            self.key("startTimeout"),
            start,
            &limits::START_TIMEOUT,
            seconds,
        )?;
        Ok((stop, start))
    }
}

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
