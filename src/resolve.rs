//! From a parsed [`Spec`] to a validated [`Stack`]: catalog presets merged in,
//! defaults applied, every value checked. After this step nothing can fail
//! for a reason the user could fix; the renderer only formats.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::catalog::{self, Legacy, PathMap, Preset};
use crate::duration::parse_duration;
use crate::error::SpecError;
use crate::spec::{
    Backend, Defaults, HealthSpec, PodmanSecretType, PortSpec, Protocol, Restart, SecretMode,
    ServiceSpec, Spec, VolumeSpec,
};

/// Service names that would collide with the stack's own units.
const RESERVED_NAMES: &[&str] = &["network", "health", "migrate"];
const MAX_NAME: usize = 48;
/// Seconds between SIGTERM and SIGKILL for a catalog app.
pub const DEFAULT_APP_STOP_TIMEOUT: u64 = 60;
/// … and for any other container: what `podman stop` and `docker stop` wait.
pub const DEFAULT_STOP_TIMEOUT: u64 = 10;
const MAX_PREFIX: usize = 32;
/// Units systemd itself gives a meaning, from systemd.special(7) (systemd
/// 252 to 257): a stack unit with one of these names would replace systemd's
/// own (`prefix: "multi-user"` would render `multi-user.target`).
const SYSTEMD_SPECIAL_UNITS: &[&str] = &[
    "-.mount",
    "-.slice",
    "app.slice",
    "background.slice",
    "basic.target",
    "bluetooth.target",
    "boot-complete.target",
    "capsule.slice",
    "cryptsetup-pre.target",
    "cryptsetup.target",
    "ctrl-alt-del.target",
    "dbus.service",
    "dbus.socket",
    "default.target",
    "display-manager.service",
    "emergency.service",
    "emergency.target",
    "exit.target",
    "factory-reset.target",
    "final.target",
    "first-boot-complete.target",
    "getty-pre.target",
    "getty.target",
    "graphical-session-pre.target",
    "graphical-session.target",
    "graphical.target",
    "halt.target",
    "hibernate.target",
    "hybrid-sleep.target",
    "imports-pre.target",
    "imports.target",
    "init.scope",
    "initrd-fs.target",
    "initrd-root-device.target",
    "initrd-root-fs.target",
    "initrd-switch-root.target",
    "initrd-usr-fs.target",
    "initrd.target",
    "integritysetup-pre.target",
    "integritysetup.target",
    "kbrequest.target",
    "kexec.target",
    "local-fs-pre.target",
    "local-fs.target",
    "machine.slice",
    "machines.target",
    "multi-user.target",
    "network-online.target",
    "network-pre.target",
    "network.target",
    "nss-lookup.target",
    "nss-user-lookup.target",
    "paths.target",
    "poweroff.target",
    "printer.target",
    "reboot.target",
    "remote-cryptsetup.target",
    "remote-fs-pre.target",
    "remote-fs.target",
    "remote-veritysetup.target",
    "rescue.service",
    "rescue.target",
    "rpcbind.target",
    "runlevel0.target",
    "runlevel1.target",
    "runlevel2.target",
    "runlevel3.target",
    "runlevel4.target",
    "runlevel5.target",
    "runlevel6.target",
    "session.slice",
    "shutdown.target",
    "sigpwr.target",
    "single-user.target",
    "sleep.target",
    "slices.target",
    "smartcard.target",
    "sockets.target",
    "soft-reboot.target",
    "sound.target",
    "ssh-access.target",
    "storage-target-mode.target",
    "suspend-then-hibernate.target",
    "suspend.target",
    "swap.target",
    "sysinit.target",
    "syslog.socket",
    "sysroot.mount",
    "system-update-cleanup.service",
    "system-update-pre.target",
    "system-update.target",
    "system.slice",
    "time-set.target",
    "time-sync.target",
    "timers.target",
    "tpm2.target",
    "umount.target",
    "usb-gadget.target",
    "user.slice",
    "veritysetup-pre.target",
    "veritysetup.target",
    "xdg-desktop-autostart.target",
];

/// Why a unit name belongs to systemd, or `None` when the stack may use it.
pub fn systemd_owned(unit: &str) -> Option<&'static str> {
    if SYSTEMD_SPECIAL_UNITS.contains(&unit) {
        Some("a special unit of systemd (systemd.special(7))")
    } else if unit.starts_with("systemd-") || unit.starts_with("systemd.") {
        Some("in systemd's own namespace (`systemd-*`, `systemd.*`)")
    } else if unit.starts_with("dbus") {
        Some("in the D-Bus daemon's `dbus*` namespace")
    } else {
        None
    }
}

/// Host trees a container must never get as a bind mount: the root, the
/// operating system and the kernel's interfaces. `/proc` and `/sys` are
/// refused with everything below them; the others only as a whole.
const SYSTEM_TREES: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/nix",
    "/nix/store",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
];
const KERNEL_TREES: &[&str] = &["/proc", "/sys"];

/// Label keys under this prefix belong to nixarr-units.
pub const LABEL_PREFIX: &str = "io.nixarr.";

#[derive(Debug, Clone)]
pub struct Stack {
    pub backend: Backend,
    pub prefix: String,
    pub engine: Engine,
    pub network: String,
    /// The network's bridge interface on the host (a firewall opens the
    /// engine's DNS on it).
    pub network_interface: String,
    pub defaults: Defaults,
    /// The shared data tree (`paths.dataDir`): created root:`defaults.pgid`,
    /// mode 2775, by the first unit that mounts it, as the NixOS module's
    /// tmpfiles rule does.
    pub data_dir: String,
    pub services: BTreeMap<String, Service>,
    /// The VPN service, when any service uses it.
    pub vpn_service: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Engine {
    pub path: String,
    /// (major, minor); `None` means "current".
    pub version: Option<(u64, u64)>,
}

impl Engine {
    /// podman ≥ 5 has `--sdnotify=healthy`.
    pub fn has_sdnotify_healthy(&self, backend: Backend) -> bool {
        backend == Backend::Podman && self.version.is_none_or(|(major, _)| major >= 5)
    }

    /// podman ≥ 4.4 has `podman network create --ignore` (4.3 on Debian 12
    /// rejects it as an unknown flag).
    pub fn has_network_create_ignore(&self, backend: Backend) -> bool {
        backend == Backend::Podman && self.version.is_none_or(|v| v >= (4, 4))
    }

    /// podman ≥ 4.5 has `podman network create --interface-name` (the
    /// bridge's name); Docker has `-o com.docker.network.bridge.name`.
    pub fn can_name_bridge(&self, backend: Backend) -> bool {
        backend == Backend::Docker || self.version.is_none_or(|v| v >= (4, 5))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    pub host: u16,
    pub container: u16,
    pub protocol: Protocol,
    pub address: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub host: String,
    pub container: String,
    pub read_only: bool,
    pub create: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub cmd: Option<String>,
    pub probe: Option<Probe>,
    pub interval: String,
    pub timeout: String,
    pub retries: u64,
    pub start_period: String,
}

/// A probe run from the host against a published port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Probe {
    Http {
        url: String,
        method: String,
        expect_status: Option<u16>,
        expect_body: Option<String>,
    },
    Tcp {
        address: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    pub legacy_units: Vec<String>,
    pub legacy_data_dir: String,
    pub target_dir: String,
    /// Owner of the container's config directory.
    pub uid: u64,
    pub gid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy: Option<Legacy>,
    pub path_map: Vec<PathMap>,
    pub databases: Vec<String>,
}

/// One secret: which variable, from which file, delivered how. Only paths,
/// never values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub source: String,
    pub mode: SecretMode,
    /// `file`: the variable that carries the path inside the container.
    pub path_env: Option<String>,
    /// `podmanSecret`: env or mount.
    pub podman_secret_type: Option<PodmanSecretType>,
}

/// Where the bridge puts file-mode copies, per container (mounted at
/// `/run/secrets` inside).
pub const SECRETS_DIR: &str = "/run/nixarr-units/secrets";
/// Where the bridge renders env files, per container.
pub const ENV_DIR: &str = "/run/nixarr-units/env";
/// The variable that carries a secret file's path when neither the service
/// nor its catalog app names another: the LinuxServer.io convention.
pub const DEFAULT_SECRET_FILE_ENV: &str = "FILE__{name}";
/// Largest secret file the bridge accepts.
pub const SECRET_MAX_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub app: Option<String>,
    pub description: String,
    pub documentation: Vec<String>,
    pub image: String,
    pub image_file: Option<String>,
    /// Ports this service asked for (for VPN services they are published on
    /// the VPN container).
    pub ports: Vec<Port>,
    /// The ports are the catalog app's (the spec has no `ports`): errors
    /// about them name `app`, the key the user wrote.
    pub ports_from_preset: bool,
    pub volumes: Vec<Volume>,
    pub environment: BTreeMap<String, String>,
    pub environment_files: Vec<String>,
    pub depends_on: Vec<String>,
    pub vpn: bool,
    pub cmd: Vec<String>,
    pub entrypoint: Option<String>,
    pub user: Option<String>,
    pub init: bool,
    pub cap_add: Vec<String>,
    pub devices: Vec<String>,
    pub extra_args: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub secrets: Vec<Secret>,
    pub health: Option<Health>,
    pub restart: Restart,
    pub stop_timeout: u64,
    pub start_timeout: u64,
    pub uid: u64,
    pub gid: u64,
    /// Host directory holding the app's configuration, when known.
    pub config_dir: Option<String>,
    pub migration: Option<Migration>,
}

/// Validation context: the origin file for error messages.
struct Ctx<'a> {
    origin: &'a str,
}

impl Ctx<'_> {
    fn err(&self, path: impl AsRef<str>, message: impl Into<String>) -> SpecError {
        SpecError::at(self.origin, path.as_ref(), message)
    }

    /// A value that ends up in a unit file or an argument: no NUL, no newline.
    fn text(&self, path: impl AsRef<str>, value: &str) -> Result<(), SpecError> {
        if let Some(c) = value
            .chars()
            .find(|c| *c == '\0' || *c == '\n' || *c == '\r')
        {
            let what = match c {
                '\0' => "a NUL byte",
                '\n' => "a newline",
                _ => "a carriage return",
            };
            return Err(self.err(
                path,
                format!(
                    "contains {what}, which cannot be passed through a systemd unit; remove it \
                     (for multi-line secrets or config use an environment file or a volume)"
                ),
            ));
        }
        Ok(())
    }

    fn abs_path(&self, path: impl AsRef<str>, value: &str) -> Result<(), SpecError> {
        let path = path.as_ref();
        self.text(path, value)?;
        if !value.starts_with('/') {
            return Err(self.err(
                path,
                format!("`{value}` is a relative path; use an absolute path starting with /"),
            ));
        }
        Ok(())
    }

    /// An absolute path written the one way the kernel resolves it: no
    /// `..` or `.` component, no `//`, no trailing `/`. Anything else is
    /// ambiguous (`/x` and `/x/` are one mount point) or escapes its parent.
    fn normal_path(&self, path: impl AsRef<str>, value: &str) -> Result<(), SpecError> {
        let path = path.as_ref();
        self.abs_path(path, value)?;
        if value == "/" {
            return Ok(());
        }
        let parts: Vec<&str> = value[1..].split('/').collect();
        let problem = if value.ends_with('/') {
            Some("ends with `/`")
        } else if parts.contains(&"..") {
            Some("contains `..`")
        } else if parts.contains(&".") {
            Some("contains a `.` component")
        } else if parts.contains(&"") {
            Some("contains `//`")
        } else {
            None
        };
        if let Some(problem) = problem {
            let clean = normalise(value);
            return Err(self.err(
                path,
                format!(
                    "`{value}` {problem}; write the path without it, e.g. `{clean}` (checked \
                     literally, so two spellings of one directory cannot slip past the other \
                     checks)"
                ),
            ));
        }
        Ok(())
    }

    /// A host directory given to a container or written by nixarr-units:
    /// normalised, and not the root, a system tree or a kernel interface.
    fn host_path(&self, path: impl AsRef<str>, value: &str) -> Result<(), SpecError> {
        let path = path.as_ref();
        self.normal_path(path, value)?;
        let kernel = KERNEL_TREES
            .iter()
            .find(|t| value.strip_prefix(**t).is_some_and(|r| r.starts_with('/')));
        if SYSTEM_TREES.contains(&value) || kernel.is_some() {
            let what = if value == "/" {
                "the root of the host".to_owned()
            } else {
                format!(
                    "the host's system tree {}",
                    kernel.copied().unwrap_or(value)
                )
            };
            return Err(self.err(
                path,
                format!(
                    "`{value}` is {what}; a container must not get it (or write into it). Use a \
                     directory of its own, e.g. /var/lib/nixarr or /srv/media"
                ),
            ));
        }
        Ok(())
    }

    /// A bind-mount side: absolute and free of the `:` and `,` that the
    /// engines' `--volume` syntax cannot carry.
    fn mount_path(&self, path: impl AsRef<str>, value: &str) -> Result<(), SpecError> {
        let path = path.as_ref();
        self.normal_path(path, value)?;
        if let Some(c) = value.chars().find(|c| matches!(c, ':' | ',')) {
            return Err(self.err(
                path,
                format!(
                    "`{value}` contains `{c}`, which the engines' volume syntax cannot express; \
                     rename the directory or mount a parent directory"
                ),
            ));
        }
        Ok(())
    }
}

/// `value` with `//`, `.` and `..` resolved lexically and no trailing `/`,
/// for the hint of an error.
fn normalise(value: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in value.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    format!("/{}", out.join("/"))
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(s, _)| *s >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

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

    if !is_name(&spec.prefix) || spec.prefix.len() > MAX_PREFIX {
        return Err(cx.err(
            "prefix",
            format!(
                "`{}` is not a valid prefix; use lowercase letters, digits and `-`, starting \
                 with a letter, at most {MAX_PREFIX} characters",
                spec.prefix
            ),
        ));
    }
    let network = spec
        .network
        .name
        .clone()
        .unwrap_or_else(|| spec.prefix.clone());
    let net_ok = network
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !net_ok {
        return Err(cx.err(
            "network.name",
            format!(
                "`{network}` is not a valid network name; use letters, digits, `_`, `.` and `-`"
            ),
        ));
    }
    let network_interface = match &spec.network.interface {
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
    let defaults = &spec.defaults;
    check_id(&cx, "defaults.puid", defaults.puid)?;
    check_id(&cx, "defaults.pgid", defaults.pgid)?;
    cx.text("defaults.tz", &defaults.tz)?;
    if defaults.tz.is_empty() || defaults.tz.chars().any(char::is_whitespace) {
        return Err(cx.err(
            "defaults.tz",
            "must be a time zone name such as \"Europe/Berlin\"",
        ));
    }
    let umask_ok = (3..=4).contains(&defaults.umask.len())
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
    check_prefix_units(&cx, &spec.prefix)?;

    let mut services = BTreeMap::new();
    for (name, svc) in &spec.services {
        let path = format!("services.{name}");
        if !is_name(name) || name.len() > MAX_NAME {
            return Err(cx.err(
                &path,
                format!(
                    "`{name}` is not a valid service name; use lowercase letters, digits and `-`, \
                     starting with a letter, at most {MAX_NAME} characters"
                ),
            ));
        }
        if RESERVED_NAMES.contains(&name.as_str()) || name.ends_with("-secrets") {
            return Err(cx.err(
                &path,
                format!(
                    "`{name}` is reserved for nixarr-units' own units; choose another name \
                     (reserved: {}, and names ending in -secrets)",
                    RESERVED_NAMES.join(", ")
                ),
            ));
        }
        check_service_units(&cx, &spec.prefix, name)?;
        let preset = match &svc.app {
            None => None,
            Some(app) => Some(cat.get(app.as_str()).ok_or_else(|| {
                let hint = match suggest(app, catalog::app_names()) {
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
        let service = resolve_service(&cx, spec, name, svc, preset)?;
        services.insert(name.clone(), service);
    }

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

    check_dependencies(&cx, &services)?;
    check_ports(&cx, &services)?;

    Ok(Stack {
        backend: spec.backend,
        prefix: spec.prefix.clone(),
        engine: Engine {
            path: engine_path,
            version,
        },
        network,
        network_interface,
        defaults: defaults.clone(),
        data_dir: spec.paths.data_dir.clone(),
        services,
        vpn_service,
    })
}

/// The kernel's limit for an interface name (IFNAMSIZ less the NUL).
pub const MAX_INTERFACE: usize = 15;

/// The bridge of network `network` when the spec names none: `br-<network>`,
/// or when that is longer than the kernel allows, `br-` with the first 7
/// characters and 4 hex digits of the name's sha256 (the NixOS module
/// derives the same name, modules/lib.nix `bridgeName`).
pub fn default_interface(network: &str) -> String {
    let full = format!("br-{network}");
    if full.len() <= MAX_INTERFACE {
        return full;
    }
    let digest = sha2::Sha256::digest(network.as_bytes());
    let head: String = network.chars().take(7).collect();
    format!("br-{head}-{:02x}{:02x}", digest[0], digest[1])
}

/// Why `name` cannot be a network interface's name, if it cannot.
fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_INTERFACE {
        return Err(format!(
            "is {} characters long; an interface name has 1 to {MAX_INTERFACE} (the kernel's limit)",
            name.len()
        ));
    }
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(
            "is not a valid interface name; use letters, digits, `_`, `.` and `-`, starting \
             with a letter or digit"
                .to_owned(),
        );
    }
    Ok(())
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

fn check_id(cx: &Ctx, path: &str, id: u64) -> Result<(), SpecError> {
    if id > u64::from(u32::MAX - 1) {
        return Err(cx.err(path, format!("{id} is not a valid uid/gid")));
    }
    Ok(())
}

fn port_number(cx: &Ctx, path: &str, n: u64) -> Result<u16, SpecError> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(cx.err(path, format!("port {n} is out of range 1-65535"))),
    }
}

fn resolve_ports(cx: &Ctx, path: &str, ports: &[PortSpec]) -> Result<Vec<Port>, SpecError> {
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

/// Whether the repository part of `image` (after a registry host, before
/// the tag or digest) has an uppercase letter.
fn repository_has_uppercase(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or(image);
    let name = match name.rsplit_once(':') {
        Some((n, tag)) if !tag.contains('/') => n,
        _ => name,
    };
    let repo = match name.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => name,
    };
    repo.chars().any(|c| c.is_ascii_uppercase())
}

/// An image reference as the distribution reference grammar defines it
/// (the one the engines parse): lowercase repository, a tag of 1-128
/// characters, a digest of the right length.
fn check_image(cx: &Ctx, path: &str, image: &str) -> Result<(), SpecError> {
    use oci_spec::distribution::{ParseError, Reference};
    let Err(e) = image.parse::<Reference>() else {
        return Ok(());
    };
    let why = match e {
        ParseError::DigestInvalidLength => {
            "its digest has the wrong length (sha256 takes 64 hex digits)"
        }
        ParseError::DigestUnsupported | ParseError::DigestInvalidFormat => {
            "its digest is not `sha256:` (or `sha384:`/`sha512:`) followed by hex digits"
        }
        ParseError::NameTooLong => "its name is longer than 255 characters",
        ParseError::NameEmpty => "it is empty",
        ParseError::TagInvalidFormat => {
            "its tag may only hold letters, digits, `_`, `.` and `-` (at most 128)"
        }
        _ if image.split('@').next().is_some_and(|n| n.ends_with(':')) => "its tag is empty",
        _ if image.split_once('@').is_some_and(|(_, d)| {
            let (alg, hex) = d.split_once(':').unwrap_or(("", d));
            let want = match alg {
                "sha256" => 64,
                "sha384" => 96,
                "sha512" => 128,
                _ => 0,
            };
            want != 0 && hex.len() != want
        }) =>
        {
            "its digest has the wrong length (sha256 takes 64 hex digits, sha512 128)"
        }
        ParseError::NameContainsUppercase => "the repository name has uppercase letters",
        _ if repository_has_uppercase(image) => {
            "the repository name has uppercase letters (only the registry host and the tag may)"
        }
        _ => "it does not follow the reference grammar ([registry/]repository[:tag][@digest])",
    };
    Err(cx.err(
        path,
        format!(
            "`{image}` is not a valid image reference: {why}; write it like \
             \"ghcr.io/owner/app:1.2\" or \"docker.io/library/nginx@sha256:<64 hex digits>\""
        ),
    ))
}

fn resolve_service(
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
    if !(1..=3600).contains(&stop_timeout) {
        return Err(cx.err(
            p("stopTimeout"),
            format!("{stop_timeout} is out of range 1-3600 seconds"),
        ));
    }
    let start_timeout = svc.start_timeout.unwrap_or(900);
    if !(10..=86400).contains(&start_timeout) {
        return Err(cx.err(
            p("startTimeout"),
            format!("{start_timeout} is out of range 10-86400 seconds"),
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

/// Secrets delivered where `inspect` shows the value (`envFile`, or `env`
/// without a hiding engine), acknowledged with `allowEnvironmentValue`:
/// one warning line each for `render`, `validate` and the generator.
pub fn exposure_warnings(stack: &Stack) -> Vec<String> {
    let engine = stack.backend.name();
    stack
        .services
        .values()
        .flat_map(|svc| {
            svc.secrets
                .iter()
                .filter(|s| s.mode == SecretMode::EnvFile)
                .map(move |s| {
                    format!(
                        "services.{}.secrets.{}: the value is delivered as an environment \
                         variable, which `{engine} inspect` shows to anyone allowed to run it \
                         (allowEnvironmentValue is set); drop `mode` for the default file \
                         delivery ({})",
                        svc.name,
                        s.name,
                        if stack.backend == Backend::Podman {
                            "or use podman >= 5.3, where `env` hides it"
                        } else {
                            "/run/secrets/<name> and FILE__<name>"
                        }
                    )
                })
        })
        .collect()
}

fn resolve_secrets(
    cx: &Ctx,
    backend: Backend,
    version: Option<(u64, u64)>,
    path: &str,
    svc: &ServiceSpec,
    preset: Option<&Preset>,
    environment: &BTreeMap<String, String>,
) -> Result<Vec<Secret>, SpecError> {
    // The variable that carries a file's path: the service's, the
    // catalog's, else the LinuxServer convention, for every service.
    let file_env = match &svc.secret_file_env {
        Some(v) => v.clone(),
        None => Some(
            preset
                .and_then(|p| p.secret_file_env.clone())
                .unwrap_or_else(|| DEFAULT_SECRET_FILE_ENV.to_owned()),
        ),
    };
    if let Some(pattern) = &file_env
        && !pattern.contains("{name}")
    {
        return Err(cx.err(
            format!("{path}.secretFileEnv"),
            format!("`{pattern}` lacks `{{name}}`; write e.g. \"FILE__{{name}}\""),
        ));
    }
    // podman hides type=env secrets from inspect from 5.3 on; absent
    // means the current podman.
    let hides_env = backend == Backend::Podman && version.is_none_or(|v| v >= (5, 3));
    let mut out = Vec::new();
    let mut mounted_podman = None;
    let mut file_mode = None;
    for (name, s) in &svc.secrets {
        let sp = format!("{path}.secrets.{name}");
        if !is_env_name(name) {
            return Err(cx.err(
                &sp,
                format!("`{name}` is not a valid variable name; use letters, digits and `_`"),
            ));
        }
        cx.normal_path(format!("{sp}.file"), &s.file)?;
        let written = s.mode.unwrap_or(SecretMode::File);
        if written == SecretMode::PodmanSecret && backend != Backend::Podman {
            return Err(cx.err(
                format!("{sp}.mode"),
                "`podmanSecret` needs the podman backend; use `file` (the default) with Docker",
            ));
        }
        if s.podman_secret_type.is_some() && written != SecretMode::PodmanSecret {
            return Err(cx.err(
                format!("{sp}.podmanSecretType"),
                "only applies to mode `podmanSecret`; remove it",
            ));
        }
        if let Some(var) = &s.file_env {
            if written != SecretMode::File {
                return Err(cx.err(
                    format!("{sp}.fileEnv"),
                    "only applies to mode `file` (the default); remove it or `mode`",
                ));
            }
            if !is_env_name(var) {
                return Err(cx.err(
                    format!("{sp}.fileEnv"),
                    format!("`{var}` is not a valid variable name; use letters, digits and `_`"),
                ));
            }
        }
        // Where would the value be visible in `inspect`?
        let (mode, exposed) = match written {
            SecretMode::Env if hides_env => (SecretMode::PodmanSecret, false),
            SecretMode::Env | SecretMode::EnvFile => (SecretMode::EnvFile, true),
            m => (m, false),
        };
        if exposed && !s.allow_environment_value {
            let engine = match (backend, version) {
                (Backend::Docker, _) => "Docker".to_owned(),
                (Backend::Podman, Some((major, minor))) => format!("podman {major}.{minor}"),
                (Backend::Podman, None) => "podman".to_owned(),
            };
            let why = if written == SecretMode::Env {
                format!(
                    "{engine} has no way to hide an environment value from `inspect` (podman \
                     does from 5.3)"
                )
            } else {
                "an env file's values are shown by `inspect`".to_owned()
            };
            return Err(cx.err(
                format!("{sp}.mode"),
                format!(
                    "`{}` would put the value of {name} in the container's environment, where \
                     {why}; drop `mode` to deliver it as the file /run/secrets/{name} (its path \
                     in {}), or add \"allowEnvironmentValue\": true to accept that",
                    if written == SecretMode::Env {
                        "env"
                    } else {
                        "envFile"
                    },
                    s.file_env
                        .clone()
                        .or_else(|| file_env.as_ref().map(|p| p.replace("{name}", name)))
                        .unwrap_or_else(|| format!("FILE__{name}"))
                ),
            ));
        }
        if s.allow_environment_value && !exposed {
            return Err(cx.err(
                format!("{sp}.allowEnvironmentValue"),
                "only applies to `\"mode\": \"env\"` on Docker or podman before 5.3, or to \
                 `envFile`: nothing here puts the value where `inspect` shows it; remove it",
            ));
        }
        let path_env = match mode {
            SecretMode::File => s
                .file_env
                .clone()
                .or_else(|| file_env.as_ref().map(|p| p.replace("{name}", name))),
            _ => None,
        };
        let direct = match mode {
            SecretMode::File => path_env.as_deref(),
            _ => Some(name.as_str()),
        };
        for var in [Some(name.as_str()), direct].into_iter().flatten() {
            if environment.contains_key(var) {
                return Err(cx.err(
                    &sp,
                    format!(
                        "`{var}` is also set in `environment`; a value belongs in one place, \
                         remove it from `environment`"
                    ),
                ));
            }
        }
        // Mounted by default: podman before 5.3 shows the values of env
        // secrets in `podman inspect` (containers/podman#23788).
        let podman_secret_type = match (mode, written) {
            (SecretMode::PodmanSecret, SecretMode::Env) => Some(PodmanSecretType::Env),
            (SecretMode::PodmanSecret, _) => {
                Some(s.podman_secret_type.unwrap_or(PodmanSecretType::Mount))
            }
            _ => None,
        };
        if podman_secret_type == Some(PodmanSecretType::Env)
            && let Some((major, minor)) = version
            && (major, minor) < (5, 3)
        {
            return Err(cx.err(
                format!("{sp}.podmanSecretType"),
                format!(
                    "podman {major}.{minor} shows the values of type=env secrets in `podman \
                     inspect` (fixed in podman 5.3); use \"podmanSecretType\": \"mount\" or \
                     \"mode\": \"file\""
                ),
            ));
        }
        if podman_secret_type == Some(PodmanSecretType::Mount) {
            mounted_podman = Some(sp.clone());
        }
        if mode == SecretMode::File {
            file_mode = Some(sp.clone());
        }
        out.push(Secret {
            name: name.clone(),
            source: s.file.clone(),
            mode,
            path_env,
            podman_secret_type,
        });
    }
    if let (Some(a), Some(_)) = (mounted_podman, file_mode) {
        return Err(cx.err(
            a,
            "a mounted podman secret and `file` secrets would both use /run/secrets in the \
             container; give this one \"podmanSecretType\": \"env\" or use `file` for all",
        ));
    }
    Ok(out)
}

fn resolve_health(
    cx: &Ctx,
    path: &str,
    h: &HealthSpec,
    ports: &[Port],
    preset_app: Option<&str>,
) -> Result<Health, SpecError> {
    let dur = |field: &str, value: &Option<String>, default: &str| -> Result<String, SpecError> {
        let v = value.clone().unwrap_or_else(|| default.to_owned());
        parse_duration(&v).map_err(|e| cx.err(format!("{path}.{field}"), e))?;
        Ok(v)
    };
    let interval = dur("interval", &h.interval, "30s")?;
    let timeout = dur("timeout", &h.timeout, "5s")?;
    let start_period = dur("startPeriod", &h.start_period, "0s")?;
    let retries = h.retries.unwrap_or(3);
    if !(1..=100).contains(&retries) {
        return Err(cx.err(
            format!("{path}.retries"),
            format!("{retries} is out of range 1-100"),
        ));
    }
    if let Some(c) = &h.cmd {
        cx.text(format!("{path}.cmd"), c)?;
        if c.trim().is_empty() {
            return Err(cx.err(
                format!("{path}.cmd"),
                "is empty; give a shell command or leave it out",
            ));
        }
    }

    // The host port that publishes the probed container port.
    let host_of = |field: &str| -> Result<(String, u16), SpecError> {
        let cport = h.port.ok_or_else(|| {
            cx.err(
                format!("{path}.port"),
                format!("is needed with `{field}`: the container port to probe"),
            )
        })?;
        let port = ports
            .iter()
            .find(|p| u64::from(p.container) == cport && p.protocol == Protocol::Tcp)
            .ok_or_else(|| match preset_app {
                Some(app) => cx.err(
                    path.strip_suffix(".health").map_or_else(
                        || format!("{path}.port"),
                        |svc| format!("{svc}.ports"),
                    ),
                    format!(
                        "the catalog app `{app}` probes its health on container port {cport}, \
                         which these ports do not publish (tcp); publish it (e.g. \
                         {{\"host\": {cport}, \"container\": {cport}}}), or give the service \
                         its own `health` (or null for none)"
                    ),
                ),
                None => cx.err(
                    format!("{path}.port"),
                    format!("container port {cport} is not published (tcp) in `ports`; publish it or probe another port"),
                ),
            })?;
        let host = match port.address {
            None => "127.0.0.1".to_owned(),
            Some(IpAddr::V4(a)) if a.is_unspecified() => "127.0.0.1".to_owned(),
            Some(IpAddr::V6(a)) if a.is_unspecified() => "[::1]".to_owned(),
            Some(IpAddr::V6(a)) => format!("[{a}]"),
            Some(a) => a.to_string(),
        };
        Ok((host, port.host))
    };

    let probe = match (&h.http, h.tcp.unwrap_or(false)) {
        (Some(_), true) => {
            return Err(cx.err(
                format!("{path}.tcp"),
                "cannot be combined with `http`; choose one probe",
            ));
        }
        (Some(url), false) => {
            cx.text(format!("{path}.http"), url)?;
            let url = if url.starts_with('/') {
                let (host, port) = host_of("http")?;
                format!("http://{host}:{port}{url}")
            } else if url.starts_with("http://") || url.starts_with("https://") {
                url.clone()
            } else {
                return Err(cx.err(
                    format!("{path}.http"),
                    format!("`{url}` is neither a URL (http://…) nor a path (/ping)"),
                ));
            };
            let method = h.method.clone().unwrap_or_else(|| "GET".to_owned());
            if !matches!(method.as_str(), "GET" | "HEAD" | "POST") {
                return Err(cx.err(
                    format!("{path}.method"),
                    format!("`{method}` is not supported; use GET, HEAD or POST"),
                ));
            }
            let expect_status = match h.expect_status {
                None => None,
                Some(s) if (100..=599).contains(&s) => Some(s as u16),
                Some(s) => {
                    return Err(cx.err(
                        format!("{path}.expectStatus"),
                        format!("{s} is not an HTTP status (100-599)"),
                    ));
                }
            };
            if let Some(b) = &h.expect_body {
                cx.text(format!("{path}.expectBody"), b)?;
            }
            Some(Probe::Http {
                url,
                method,
                expect_status,
                expect_body: h.expect_body.clone(),
            })
        }
        (None, true) => {
            let (host, port) = host_of("tcp")?;
            Some(Probe::Tcp {
                address: format!("{host}:{port}"),
            })
        }
        (None, false) => None,
    };
    if h.cmd.is_none() && probe.is_none() {
        return Err(cx.err(
            path,
            "has neither `cmd` nor a probe (`http` or `tcp`); give one, or set health to null",
        ));
    }
    Ok(Health {
        cmd: h.cmd.clone(),
        probe,
        interval,
        timeout,
        retries,
        start_period,
    })
}

fn resolve_migration(
    cx: &Ctx,
    path: &str,
    svc: &ServiceSpec,
    preset: Option<&Preset>,
    config_dir: Option<&str>,
    uid: u64,
    gid: u64,
) -> Result<Option<Migration>, SpecError> {
    let given = match &svc.migration {
        Some(None) => return Ok(None),
        Some(Some(m)) => Some(m),
        None => None,
    };
    let legacy = preset.and_then(|p| p.legacy.clone());
    if given.is_none() && legacy.is_none() {
        return Ok(None);
    }
    let mp = format!("{path}.migration");
    let legacy_units = match given.and_then(|m| m.legacy_unit.clone()) {
        Some(u) => vec![u],
        None => legacy.as_ref().map(|l| l.units.clone()).unwrap_or_default(),
    };
    let Some(first_unit) = legacy_units.first() else {
        return Err(cx.err(
            format!("{mp}.legacyUnit"),
            "is missing; name the native unit to migrate from (e.g. \"sonarr.service\")",
        ));
    };
    let unit_ok = first_unit.ends_with(".service")
        && first_unit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'));
    if !unit_ok {
        return Err(cx.err(
            format!("{mp}.legacyUnit"),
            format!("`{first_unit}` is not a service unit name; write e.g. \"sonarr.service\""),
        ));
    }
    let legacy_data_dir = given
        .and_then(|m| m.legacy_data_dir.clone())
        .or_else(|| legacy.as_ref().map(|l| l.data_dir.clone()))
        .ok_or_else(|| {
            cx.err(
                format!("{mp}.legacyDataDir"),
                "is missing; give the native service's data directory",
            )
        })?;
    cx.host_path(format!("{mp}.legacyDataDir"), &legacy_data_dir)?;
    let target_dir = given
        .and_then(|m| m.target_dir.clone())
        .or_else(|| config_dir.map(str::to_owned))
        .ok_or_else(|| {
            cx.err(
                format!("{mp}.targetDir"),
                "is missing; give the host directory the container keeps its config in",
            )
        })?;
    cx.host_path(format!("{mp}.targetDir"), &target_dir)?;
    // A migration moves the target aside and swaps it: it must not hold the
    // native data, nor lie inside it.
    let within = |a: &str, b: &str| a == b || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'));
    if within(&legacy_data_dir, &target_dir) || within(&target_dir, &legacy_data_dir) {
        let key = if given.and_then(|m| m.target_dir.as_ref()).is_some() {
            format!("{mp}.targetDir")
        } else {
            "paths.stateDir".to_owned()
        };
        return Err(cx.err(
            key,
            format!(
                "the container's config directory {target_dir} and the native data \
                 {legacy_data_dir} overlap; a migration would move one with the other. Keep \
                 them apart (e.g. paths.stateDir \"/var/lib/nixarr\")"
            ),
        ));
    }
    Ok(Some(Migration {
        legacy_units,
        legacy_data_dir,
        target_dir,
        uid,
        gid,
        path_map: legacy
            .as_ref()
            .map(|l| l.path_map.clone())
            .unwrap_or_default(),
        databases: legacy
            .as_ref()
            .map(|l| l.databases.clone())
            .unwrap_or_default(),
        legacy,
    }))
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
                let hint = suggest(d, services.keys().map(String::as_str))
                    .map(|s| format!(" Did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(cx.err(
                    format!("services.{}.dependsOn[{i}]", s.name),
                    format!("depends on `{d}`, which is not a service in this spec.{hint} Add it or remove the dependency."),
                ));
            }
        }
    }
    // Depth-first search with colours; the first cycle found (in name
    // order) is reported as a path.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        services: &'a BTreeMap<String, Service>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(n).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Active => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> =
                    stack[start..].iter().map(|s| (*s).to_owned()).collect();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks.insert(n, Mark::Active);
        stack.push(n);
        if let Some(s) = services.get(n) {
            for d in &s.depends_on {
                if let Some(c) = visit(d, services, marks, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in services.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(name, services, &mut marks, &mut stack) {
            return Err(cx.err(
                format!("services.{}.dependsOn", cycle[0]),
                format!(
                    "dependency cycle {}; remove one of these dependencies",
                    cycle.join(" -> ")
                ),
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;

    fn stack(json: &str) -> Result<Stack, SpecError> {
        resolve(&parse(json, "t.json")?, "t.json")
    }

    #[test]
    fn preset_fills_in_sonarr() {
        let s = stack(r#"{"version":1,"services":{"sonarr":{"app":"sonarr"}}}"#).unwrap();
        let sonarr = &s.services["sonarr"];
        assert_eq!(sonarr.image, "lscr.io/linuxserver/sonarr:latest");
        assert_eq!(sonarr.ports[0].host, 8989);
        assert_eq!(sonarr.environment["PUID"], "568");
        assert_eq!(sonarr.config_dir.as_deref(), Some("/var/lib/nixarr/sonarr"));
        assert_eq!(sonarr.volumes[1].container, "/data");
        let m = sonarr.migration.as_ref().unwrap();
        assert_eq!(m.legacy_units, ["sonarr.service"]);
        assert_eq!(m.target_dir, "/var/lib/nixarr/sonarr");
    }

    #[test]
    fn overrides_replace_lists_and_merge_maps() {
        let s = stack(
            r#"{"version":1,"services":{"sonarr-4k":{"app":"sonarr",
            "ports":[{"host":8990,"container":8989}],"environment":{"TZ":"Europe/Berlin","X":"1"}}}}"#,
        )
        .unwrap();
        let s4 = &s.services["sonarr-4k"];
        assert_eq!(s4.ports.len(), 1);
        assert_eq!(s4.ports[0].host, 8990);
        assert_eq!(s4.environment["TZ"], "Europe/Berlin");
        assert_eq!(s4.environment["PUID"], "568");
        assert_eq!(s4.config_dir.as_deref(), Some("/var/lib/nixarr/sonarr-4k"));
        match &s4.health.as_ref().unwrap().probe {
            Some(Probe::Http { url, .. }) => assert_eq!(url, "http://127.0.0.1:8990/ping"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cycle_is_named() {
        let e = stack(
            r#"{"version":1,"services":{
              "a":{"image":"x","dependsOn":["b"]},
              "b":{"image":"x","dependsOn":["c"]},
              "c":{"image":"x","dependsOn":["a"]}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dependency cycle a -> b -> c -> a"), "{e}");
    }

    #[test]
    fn network_interface_is_derived_within_the_kernel_limit() {
        let s = stack(r#"{"version":1,"services":{"a":{"image":"x"}}}"#).unwrap();
        assert_eq!(s.network_interface, "br-nixarr");
        let long =
            stack(r#"{"version":1,"prefix":"media-stack-at-home","services":{"a":{"image":"x"}}}"#)
                .unwrap();
        // The NixOS module derives the same name (tests/nix/scenarios/dns-firewall.nix).
        assert_eq!(long.network_interface, "br-media-s-e21a");
        assert_eq!(long.network_interface.len(), MAX_INTERFACE);
        let given = stack(
            r#"{"version":1,"network":{"name":"media","interface":"media0"},"services":{"a":{"image":"x"}}}"#,
        )
        .unwrap();
        assert_eq!(given.network_interface, "media0");
    }

    #[test]
    fn network_interface_too_long_or_odd_is_refused() {
        for (iface, why) in [
            ("a-very-long-bridge", "is 18 characters long"),
            ("", "is 0 characters long"),
            ("-x", "not a valid interface name"),
            ("br/0", "not a valid interface name"),
            ("br 0", "not a valid interface name"),
        ] {
            let e = stack(&format!(
                r#"{{"version":1,"network":{{"interface":"{iface}"}},"services":{{"a":{{"image":"x"}}}}}}"#
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains("network.interface"), "{e}");
            assert!(e.contains(why), "{iface}: {e}");
            assert!(e.contains("`br-nixarr`"), "{e}");
        }
    }

    #[test]
    fn duplicate_host_port_names_both() {
        let e = stack(
            r#"{"version":1,"services":{
              "a":{"image":"x","ports":[{"container":80,"host":8080}]},
              "b":{"image":"x","ports":[{"container":81,"host":8080}]}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("services.b.ports[0].host"), "{e}");
        assert!(e.contains("services.a.ports[0]"), "{e}");
    }

    #[test]
    fn same_port_on_distinct_addresses_and_protocols_is_fine() {
        stack(
            r#"{"version":1,"services":{
              "a":{"image":"x","ports":[{"container":80,"host":8080,"address":"127.0.0.1"}]},
              "b":{"image":"x","ports":[{"container":80,"host":8080,"address":"127.0.0.2"},
                                        {"container":80,"host":8080,"protocol":"udp"}]}}}"#,
        )
        .unwrap();
    }

    #[test]
    fn vpn_without_vpn_service_is_an_error() {
        let e = stack(r#"{"version":1,"services":{"a":{"app":"sonarr","vpn":true}}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("services.a.vpn"), "{e}");
    }

    fn err(json: &str) -> String {
        stack(json).unwrap_err().to_string()
    }

    #[test]
    fn units_that_would_shadow_systemd_are_refused() {
        for (prefix, unit) in [
            ("multi-user", "multi-user.target"),
            ("network", "network.target"),
            ("default", "default.target"),
            ("systemd-x", "systemd-x.target"),
            ("dbus", "dbus.target"),
            ("dbus-broker", "dbus-broker.target"),
        ] {
            let e = err(&format!(
                r#"{{"version":1,"prefix":"{prefix}","services":{{"a":{{"image":"x"}}}}}}"#
            ));
            assert!(
                e.contains(&format!("prefix: `{prefix}` would name the unit {unit}")),
                "{e}"
            );
            assert!(e.contains("Choose another prefix"), "{e}");
        }
        // A service whose unit lands in systemd's namespace.
        let e = err(r#"{"version":1,"prefix":"systemd","services":{}}"#);
        assert!(e.contains("prefix: `systemd`"), "{e}");
        stack(r#"{"version":1,"prefix":"db","services":{"us":{"image":"x"}}}"#).unwrap();
        assert_eq!(systemd_owned("nixarr.target"), None);
        assert!(systemd_owned("systemd-journald.service").is_some());
        assert!(systemd_owned("dbus.service").is_some());
    }

    #[test]
    fn dangerous_or_unnormalised_host_paths_are_refused() {
        for (json, needle) in [
            (
                r#"{"version":1,"paths":{"dataDir":"/"},"services":{"s":{"app":"sonarr"}}}"#,
                "paths.dataDir: `/` is the root of the host",
            ),
            (
                r#"{"version":1,"paths":{"stateDir":"/etc"},"services":{}}"#,
                "paths.stateDir: `/etc` is the host's system tree /etc",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/usr","container":"/u"}]}}}"#,
                "services.a.volumes[0].host: `/usr` is the host's system tree",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/proc/1","container":"/u"}]}}}"#,
                "`/proc/1` is the host's system tree /proc",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/run","container":"/u"}]}}}"#,
                "`/run` is the host's system tree",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/../etc","container":"/u"}]}}}"#,
                "`/srv/../etc` contains `..`; write the path without it, e.g. `/etc`",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv//a","container":"/u"}]}}}"#,
                "`/srv//a` contains `//`",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/./a","container":"/u"}]}}}"#,
                "`/srv/./a` contains a `.` component",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/a/","container":"/u"}]}}}"#,
                "`/srv/a/` ends with `/`; write the path without it, e.g. `/srv/a`",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/a","container":"/"}]}}}"#,
                "services.a.volumes[0].container: `/` would cover the whole container",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/a","container":"/x"},{"host":"/srv/b","container":"/x/"}]}}}"#,
                "services.a.volumes[1].container: `/x/` ends with `/`",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/a","container":"/x"},{"host":"/srv/b","container":"/x"}]}}}"#,
                "services.a.volumes[1].container: `/x` is also the container path of services.a.volumes[0].container",
            ),
            (
                r#"{"version":1,"services":{"a":{"app":"sonarr","migration":{"targetDir":"/var"}}}}"#,
                "services.a.migration.targetDir: `/var` is the host's system tree",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","secrets":{"K":{"file":"/run/secrets/../k"}}}}}"#,
                "services.a.secrets.K.file: `/run/secrets/../k` contains `..`",
            ),
        ] {
            let e = err(json);
            assert!(e.contains(needle), "{needle}\n{e}");
        }
        // Secrets come from under /run; a file under /etc is fine to read.
        stack(r#"{"version":1,"services":{"a":{"image":"x","secrets":{"K":{"file":"/run/secrets/k"}}}}}"#).unwrap();
    }

    #[test]
    fn a_migration_target_may_not_overlap_the_native_data() {
        let e = err(
            r#"{"version":1,"paths":{"stateDir":"/var/lib"},"services":{"sonarr":{"app":"sonarr"}}}"#,
        );
        assert!(e.contains("paths.stateDir: the container's config directory /var/lib/sonarr and the native data /var/lib/sonarr/.config/NzbDrone overlap"), "{e}");
        let e = err(
            r#"{"version":1,"services":{"sonarr":{"app":"sonarr","migration":{"targetDir":"/var/lib/sonarr/.config/NzbDrone/x"}}}}"#,
        );
        assert!(e.contains("services.sonarr.migration.targetDir: "), "{e}");
    }

    #[test]
    fn a_catalog_port_clash_names_app_not_ports() {
        let e = err(
            r#"{"version":1,"services":{"sonarr":{"app":"sonarr"},"sonarr-4k":{"app":"sonarr"}}}"#,
        );
        assert!(
            e.contains("services.sonarr-4k.app: the catalog app `sonarr` publishes host port 8989/tcp, which is also used by services.sonarr.ports[0]"),
            "{e}"
        );
        assert!(e.contains("give services.sonarr-4k its own `ports`"), "{e}");
    }

    #[test]
    fn an_error_names_the_key_the_user_wrote() {
        let e = err(
            r#"{"version":1,"paths":{"dataDir":"/config"},"services":{"sonarr":{"app":"sonarr"}}}"#,
        );
        assert!(
            e.contains("paths.dataDir: `/config` is where the catalog app `sonarr` of service sonarr keeps its config"),
            "{e}"
        );
        let e = err(
            r#"{"version":1,"paths":{"stateDir":"/etc"},"services":{"sonarr":{"app":"sonarr"}}}"#,
        );
        assert!(e.contains("paths.stateDir"), "{e}");
        // The catalog's probe targets a port the user no longer publishes.
        let e = err(
            r#"{"version":1,"services":{"sonarr":{"app":"sonarr","ports":[{"container":1234}]}}}"#,
        );
        assert!(e.contains("services.sonarr.ports: "), "{e}");
        assert!(e.contains("8989"), "{e}");
    }

    #[test]
    fn image_references_follow_the_distribution_grammar() {
        for (image, why) in [
            ("Nginx:1", "uppercase"),
            ("ghcr.io/Owner/app:1", "uppercase"),
            ("nginx@sha256:abc", "digest has the wrong length"),
            ("nginx:", "tag is empty"),
            ("nginx:a b", "not a valid image reference"),
            ("-x", "not a valid image reference"),
            ("", "not a valid image reference"),
        ] {
            let e = err(&format!(
                r#"{{"version":1,"services":{{"a":{{"image":"{image}"}}}}}}"#
            ));
            assert!(e.contains("services.a.image: "), "{e}");
            assert!(e.contains(why), "{image}: {e}");
        }
        for good in [
            "x",
            "nginx:Latest",
            "localhost:5000/x/y:1",
            "LOCALHOST.example:5000/x/y",
            "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "lscr.io/linuxserver/sonarr:4.0.15",
        ] {
            stack(&format!(
                r#"{{"version":1,"services":{{"a":{{"image":"{good}"}}}}}}"#
            ))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    fn secrets_of(json: &str) -> Vec<Secret> {
        let s = stack(json).unwrap();
        s.services.values().next().unwrap().secrets.clone()
    }

    #[test]
    fn secrets_default_to_a_mounted_file_for_every_service() {
        // A generic service (no catalog app): the file, and its path in
        // FILE__<name>; never the value in the environment.
        let s = secrets_of(
            r#"{"version":1,"services":{"web":{"image":"x",
            "secrets":{"TOKEN":{"file":"/run/secrets/t"}}}}}"#,
        );
        assert_eq!(s[0].mode, SecretMode::File);
        assert_eq!(s[0].path_env.as_deref(), Some("FILE__TOKEN"));
        // The image's own convention, per secret.
        let s = secrets_of(
            r#"{"version":1,"services":{"db":{"image":"postgres:17",
            "secrets":{"POSTGRES_PASSWORD":{"file":"/run/secrets/pg","fileEnv":"POSTGRES_PASSWORD_FILE"}}}}}"#,
        );
        assert_eq!(s[0].path_env.as_deref(), Some("POSTGRES_PASSWORD_FILE"));
        // Same on Docker.
        let s = secrets_of(
            r#"{"version":1,"backend":"docker","services":{"web":{"image":"x",
            "secrets":{"TOKEN":{"file":"/run/secrets/t"}}}}}"#,
        );
        assert_eq!(s[0].mode, SecretMode::File);
    }

    #[test]
    fn env_values_only_where_hidden_or_acknowledged() {
        let spec = |backend: &str, version: &str, extra: &str| {
            format!(
                r#"{{"version":1,"backend":"{backend}","engine":{{"version":"{version}"}},
                "services":{{"web":{{"image":"x","secrets":{{"TOKEN":{{"file":"/run/secrets/t",
                "mode":"env"{extra}}}}}}}}}}}"#
            )
        };
        // podman >= 5.3 hides type=env secrets: no acknowledgement needed.
        let s = secrets_of(&spec("podman", "5.4.2", ""));
        assert_eq!(s[0].mode, SecretMode::PodmanSecret);
        assert_eq!(s[0].podman_secret_type, Some(PodmanSecretType::Env));
        // Docker and older podman: refused without the acknowledgement.
        for (backend, version, engine) in [
            ("docker", "27.5", "Docker"),
            ("podman", "4.3.1", "podman 4.3"),
        ] {
            let e = err(&spec(backend, version, ""));
            assert!(e.contains("services.web.secrets.TOKEN.mode: `env`"), "{e}");
            assert!(e.contains(engine), "{e}");
            assert!(e.contains("\"allowEnvironmentValue\": true"), "{e}");
            assert!(e.contains("FILE__TOKEN"), "{e}");
            let st = stack(&spec(backend, version, r#","allowEnvironmentValue":true"#)).unwrap();
            assert_eq!(st.services["web"].secrets[0].mode, SecretMode::EnvFile);
            let w = exposure_warnings(&st);
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(w[0].contains("services.web.secrets.TOKEN"), "{w:?}");
            assert!(w[0].contains("inspect"), "{w:?}");
        }
        // envFile shows the value everywhere: acknowledged or refused.
        let e = err(&spec("podman", "5.4.2", "").replace("\"env\"", "\"envFile\""));
        assert!(e.contains("`envFile` would put the value"), "{e}");
        // An acknowledgement where nothing is exposed is a mistake.
        let e = err(&spec("podman", "5.4.2", r#","allowEnvironmentValue":true"#));
        assert!(
            e.contains("TOKEN.allowEnvironmentValue: only applies"),
            "{e}"
        );
        // The default file mode has no warning.
        let st = stack(r#"{"version":1,"services":{"web":{"image":"x","secrets":{"T":{"file":"/run/secrets/t"}}}}}"#).unwrap();
        assert!(exposure_warnings(&st).is_empty());
    }

    #[test]
    fn version_parsing() {
        assert_eq!(parse_version("podman version 4.3.1"), Some((4, 3)));
        assert_eq!(parse_version("5.4.1"), Some((5, 4)));
        assert_eq!(
            parse_version("Docker version 20.10.24+dfsg1, build"),
            Some((20, 10))
        );
        assert_eq!(parse_version("garbage"), None);
    }
}
