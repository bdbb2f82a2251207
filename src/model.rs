//! The validated model: what [`crate::resolve::resolve`] makes of a spec
//! and what the renderer, the manifest and the runtime commands read.
//! Every value here has been checked; nothing in it can be wrong for a
//! reason the user could fix.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::catalog::{Legacy, PathMap};
use crate::spec::{Backend, Defaults, PodmanSecretType, Protocol, Restart, SecretMode};

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
    /// The image lock the units pin their images from (filled in by
    /// [`crate::images::lock::apply`], which reads the file).
    pub lock: Option<StackLock>,
    /// `autoUpdate`: services whose images a timer updates.
    pub auto_update: Option<AutoUpdate>,
    /// `api`: the control API's socket and service units.
    pub api: Option<Api>,
    /// The spec's own profiles (checked: every member is a service).
    pub profiles: BTreeMap<String, Vec<String>>,
    /// Scheduled backups: `<prefix>-backup.timer`.
    pub backup: Option<BackupSchedule>,
    /// The reverse proxy's routes.
    pub proxy: Option<Proxy>,
    /// The reconcile timer, when the spec asks for one.
    pub reconcile: Option<Reconcile>,
}

#[derive(Debug, Clone)]
pub struct Api {
    pub socket: String,
    pub listen: Vec<std::net::SocketAddr>,
    pub group: Option<String>,
    /// The user it runs as (none: root), granted the stack's units by polkit.
    pub user: Option<String>,
    pub token_file: Option<String>,
    pub read_token_file: Option<String>,
}

/// The unix socket of the control API when the spec names none.
pub const DEFAULT_API_SOCKET: &str = "/run/nixarr-units/api.sock";

#[derive(Debug, Clone)]
pub struct AutoUpdate {
    /// `OnCalendar=` of the timer.
    pub schedule: String,
    pub services: Vec<String>,
}

/// The reverse proxy in front of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub domain: String,
    pub acme: bool,
    /// By service name.
    pub routes: Vec<Route>,
}

/// One app behind the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub service: String,
    pub at: RouteAt,
    /// Where the proxy finds it: `127.0.0.1:8989`.
    pub upstream: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAt {
    /// `<subdomain>.<domain>`.
    Subdomain(String),
    /// `<domain><path>` (the app serves under that URL base).
    Path(String),
}

/// The pins a stack's units run: digests by service.
#[derive(Debug, Clone, Default)]
pub struct StackLock {
    /// The lock file, as `update` finds it again through the manifest.
    pub path: String,
    pub digests: BTreeMap<String, String>,
}

/// When and where the stack is backed up, and how many backups stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    pub schedule: String,
    pub dir: String,
    pub keep: u64,
    pub allow_stop: bool,
}

/// The stack's reconcile timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconcile {
    /// Seconds between passes.
    pub interval: u64,
    /// Remove orphan and forged containers.
    pub prune: bool,
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

/// A host device given to the container.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub host: String,
    pub container: String,
    /// `None`: the engines' default, `rwm`.
    pub permissions: Option<DevicePermissions>,
}

/// What the container may do with a device (its cgroup's device rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePermissions {
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl DevicePermissions {
    /// Letters from `r`, `w` and `m`, each at most once, in any order; at
    /// least one.
    pub fn parse(letters: &str) -> Option<Self> {
        let mut p = DevicePermissions {
            read: false,
            write: false,
            mknod: false,
        };
        for c in letters.chars() {
            let flag = match c {
                'r' => &mut p.read,
                'w' => &mut p.write,
                'm' => &mut p.mknod,
                _ => return None,
            };
            if std::mem::replace(flag, true) {
                return None;
            }
        }
        (!letters.is_empty()).then_some(p)
    }
}

/// `HOST:CONTAINER[:PERMISSIONS]`, as the engines' `--device` takes it.
impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.container)?;
        match &self.permissions {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

impl std::fmt::Display for DevicePermissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')] {
            if on {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
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
    pub devices: Vec<Device>,
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
    pub backup: Option<BackupFacts>,
}

/// What a backup of a service copies: everything below `root` (or only
/// `paths`), minus `exclude`; each of `databases` through SQLite's online
/// backup API. Paths are relative to `root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupFacts {
    /// The host directory backed up (the app's config directory).
    pub root: String,
    pub databases: Vec<String>,
    /// Only these (files or directories); empty is the whole root.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}
