//! The JSON contract between the NixOS module (or a hand-written file) and the
//! renderer: types, defaults, and the first pass of parsing. Errors carry the
//! JSON path of the offending value and say what to do about it.
//!
//! Parsing is two-step: `serde_json` checks the syntax (line and column in the
//! error), then `serde_path_to_error` maps the document onto the types below,
//! which reject unknown keys. Semantic checks (ports, cycles, paths …) happen
//! in [`crate::resolve`], once catalog presets are merged in.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// The only spec version this build understands.
pub const SPEC_VERSION: u64 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    pub version: u64,
    #[serde(default)]
    pub backend: Backend,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub engine: EngineSpec,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub vpn: VpnSpec,
    /// The reconcile timer (`<prefix>-reconcile.timer`); none when absent.
    #[serde(default)]
    pub reconcile: Option<ReconcileSpec>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSpec>,
    /// The image lock (absolute path); default `images.lock.json` beside
    /// the spec, used when it exists.
    pub image_lock: Option<String>,
    /// Update these services' images on a schedule (`<prefix>-update.timer`).
    pub auto_update: Option<AutoUpdateSpec>,
    /// The control API (`nixarr-units serve`, `<prefix>-api.socket`).
    pub api: Option<ApiSpec>,
    /// Named groups of services (`start --profile NAME`), beside the ones
    /// catalog apps carry; a name given here replaces the catalog's group
    /// of that name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Vec<String>>,
    /// Scheduled backups of the stack (`<prefix>-backup.timer`).
    pub backup: Option<ScheduleSpec>,
    /// A reverse proxy in front of the apps: `render` writes an nginx
    /// snippet and a Caddyfile for the routes of services with `proxy`.
    pub proxy: Option<ProxySpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AutoUpdateSpec {
    /// When, as systemd's `OnCalendar=` writes it (`weekly`, `Sun 04:00`).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// The services to update.
    pub services: Vec<String>,
}

/// `api`: the control API's socket units (docs/api.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiSpec {
    #[serde(default)]
    pub enable: bool,
    /// TCP addresses (`127.0.0.1:8089`, `[::1]:8089`); needs `tokenFile`.
    #[serde(default)]
    pub listen: Vec<String>,
    /// The unix socket; default `/run/nixarr-units/api.sock`.
    pub socket: Option<String>,
    /// The group that may connect to the unix socket (mode 0660).
    pub group: Option<String>,
    /// The system user the API runs as; none: root. `render` writes the
    /// polkit rule that lets it start, stop and restart the stack's units.
    pub user: Option<String>,
    /// The control token (every route).
    pub token_file: Option<String>,
    /// The read token (GET routes only).
    pub read_token_file: Option<String>,
}

fn default_schedule() -> String {
    "weekly".to_owned()
}

/// `"proxy": {"domain": "media.example.org", "acme": true}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxySpec {
    /// Apps get `<subdomain>.<domain>` or `<domain><path>`.
    pub domain: String,
    /// HTTPS with certificates from Let's Encrypt (Caddy's automatic HTTPS;
    /// the NixOS module's `enableACME`); plain HTTP otherwise.
    #[serde(default)]
    pub acme: bool,
}

/// A service's route through the proxy: one of the two.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceProxySpec {
    pub subdomain: Option<String>,
    pub path: Option<String>,
}

/// `"backup": {"schedule": "daily", "dir": "/var/backup/nixarr", "keep": 7}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// When, as systemd's OnCalendar= takes it.
    #[serde(default = "default_backup_schedule")]
    pub schedule: String,
    /// Where backups go: DIR/<service>/<timestamp>/.
    pub dir: String,
    /// How many backups of each service to keep.
    #[serde(default = "default_keep")]
    pub keep: u64,
    /// Stop a service for the copy when it cannot be copied while it runs.
    #[serde(default)]
    pub allow_stop: bool,
}

fn default_backup_schedule() -> String {
    "daily".to_owned()
}

fn default_keep() -> u64 {
    7
}

/// `reconcile`: run `nixarr-units reconcile` for the stack every
/// `interval`, removing orphan and forged containers when `prune`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconcileSpec {
    pub interval: Option<String>,
    #[serde(default)]
    pub prune: bool,
}

fn default_prefix() -> String {
    "nixarr".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Podman,
    Docker,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Podman => "podman",
            Backend::Docker => "docker",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which engine binary the units call, and which version of it, so the
/// renderer can use features only where they exist (`--sdnotify=healthy`
/// arrived with podman 5).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EngineSpec {
    /// Absolute path of the podman or docker binary.
    pub path: Option<String>,
    /// Version string such as "5.4.1"; absent means "current" (podman 5).
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Name of the container network; defaults to the prefix.
    pub name: Option<String>,
    /// Host-side bridge interface of the network (at most 15 characters);
    /// defaults to `br-<name>`, shortened with a hash when too long.
    pub interface: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Defaults {
    #[serde(default = "default_id")]
    pub puid: u64,
    #[serde(default = "default_id")]
    pub pgid: u64,
    #[serde(default = "default_tz")]
    pub tz: String,
    #[serde(default = "default_umask")]
    pub umask: String,
}

fn default_id() -> u64 {
    568
}
fn default_tz() -> String {
    "Etc/UTC".to_owned()
}
fn default_umask() -> String {
    "002".to_owned()
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            puid: default_id(),
            pgid: default_id(),
            tz: default_tz(),
            umask: default_umask(),
        }
    }
}

/// Where catalog apps keep their state and where the shared media tree is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Paths {
    /// Parent of every app's config directory (`<stateDir>/<service>`).
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// The one media tree, mounted at the same path in every app that needs it.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
}

fn default_state_dir() -> String {
    "/var/lib/nixarr".to_owned()
}
fn default_data_dir() -> String {
    "/data".to_owned()
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            state_dir: default_state_dir(),
            data_dir: default_data_dir(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VpnSpec {
    /// The service whose network namespace `vpn = true` services join.
    #[serde(default = "default_vpn_service")]
    pub service: String,
}

fn default_vpn_service() -> String {
    "gluetun".to_owned()
}

impl Default for VpnSpec {
    fn default() -> Self {
        VpnSpec {
            service: default_vpn_service(),
        }
    }
}

/// One service as written in the spec. Every field is optional so that a
/// catalog preset (`app`) can supply it; maps merge key by key, lists and
/// scalars replace the preset's value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    pub app: Option<String>,
    pub description: Option<String>,
    pub image: Option<String>,
    pub image_file: Option<String>,
    pub ports: Option<Vec<PortSpec>>,
    pub volumes: Option<Vec<VolumeSpec>>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    pub environment_files: Option<Vec<String>>,
    pub depends_on: Option<Vec<String>>,
    pub vpn: Option<bool>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<String>,
    pub user: Option<String>,
    pub init: Option<bool>,
    pub cap_add: Option<Vec<String>>,
    pub devices: Option<Vec<DeviceSpec>>,
    pub extra_args: Option<Vec<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `null` disables the preset's probe; absent keeps it.
    #[serde(default, deserialize_with = "double_option")]
    pub health: Option<Option<HealthSpec>>,
    /// Secrets by the variable name the app sees; the values stay in their
    /// files and reach the container through a secret bridge.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSpec>,
    /// Variable that carries a secret file's path (`FILE__{name}`); `null`
    /// for none. Defaults to the catalog app's convention.
    #[serde(default, deserialize_with = "double_option")]
    pub secret_file_env: Option<Option<String>>,
    pub restart: Option<Restart>,
    pub stop_timeout: Option<u64>,
    pub start_timeout: Option<u64>,
    pub puid: Option<u64>,
    pub pgid: Option<u64>,
    #[serde(default, deserialize_with = "double_option")]
    pub migration: Option<Option<MigrationSpec>>,
    /// What `nixarr-units backup` copies; `null` leaves the service out of
    /// backups. Defaults to the catalog app's databases and files.
    #[serde(default, deserialize_with = "double_option")]
    pub backup: Option<Option<BackupSpec>>,
    /// Its route through the stack's reverse proxy (top-level `proxy`).
    pub proxy: Option<ServiceProxySpec>,
}

fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortSpec {
    /// Host port; defaults to the container port.
    pub host: Option<u64>,
    pub container: u64,
    #[serde(default)]
    pub protocol: Protocol,
    /// Host address to bind; defaults to all addresses.
    pub address: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeSpec {
    pub host: String,
    pub container: String,
    #[serde(default)]
    pub read_only: bool,
    /// Create the host directory (owned by the service's puid:pgid, 0750)
    /// before the first start when it does not exist. Never touches an
    /// existing directory.
    #[serde(default)]
    pub create: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthSpec {
    /// Command run inside the container by the engine (`/bin/sh -c`).
    pub cmd: Option<String>,
    /// URL probed from the host, or a path (`/ping`) on the host port that
    /// publishes `port`.
    pub http: Option<String>,
    /// Container port whose published host port `http`/`tcp` probes use.
    pub port: Option<u64>,
    /// Probe a TCP connect instead of HTTP (`true` with `port`).
    pub tcp: Option<bool>,
    pub method: Option<String>,
    pub expect_status: Option<u64>,
    pub expect_body: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u64>,
    pub start_period: Option<String>,
}

/// A host device given to the container (`--device`): the engines'
/// `HOST[:CONTAINER[:PERMISSIONS]]` string, or the same as an object
/// `{"host", "container", "permissions"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The device node on the host, e.g. `/dev/dri/renderD128`.
    pub host: String,
    /// Where the container sees it; the host path when absent.
    pub container: Option<String>,
    /// Letters from `r` (read), `w` (write) and `m` (mknod); the engines'
    /// `rwm` when absent.
    pub permissions: Option<String>,
}

/// The string form, `HOST[:CONTAINER[:PERMISSIONS]]`, which reads back
/// the same (the catalog shows its devices so).
impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = match (&self.container, &self.permissions) {
            (None, None) => self.host.clone(),
            (Some(c), None) => format!("{}:{c}", self.host),
            (c, Some(p)) => format!("{}:{}:{p}", self.host, c.as_ref().unwrap_or(&self.host)),
        };
        ser.serialize_str(&s)
    }
}

/// [`DeviceSpec`] written as an object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeviceFields {
    host: String,
    container: Option<String>,
    permissions: Option<String>,
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = DeviceSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a device: \"/dev/dri\", \"HOST:CONTAINER[:PERMISSIONS]\" or \
                     {\"host\": ..., \"container\": ..., \"permissions\": ...}",
                )
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DeviceSpec, E> {
                // Permissions take the rest, so a third `:` is refused as
                // permission letters rather than dropped.
                let mut parts = s.splitn(3, ':').map(str::to_owned);
                Ok(DeviceSpec {
                    host: parts.next().unwrap_or_default(),
                    container: parts.next(),
                    permissions: parts.next(),
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<DeviceSpec, A::Error> {
                let DeviceFields {
                    host,
                    container,
                    permissions,
                } = DeviceFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(DeviceSpec {
                    host,
                    container,
                    permissions,
                })
            }
        }
        de.deserialize_any(Form)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretSpec {
    /// The file holding the value, e.g. `/run/secrets/sonarr-api-key`
    /// (sops-nix), `/run/agenix/x`; read at start, never copied elsewhere
    /// than `/run/nixarr-units/`.
    pub file: String,
    /// How the value reaches the container; `file` unless asked otherwise,
    /// for every service.
    pub mode: Option<SecretMode>,
    /// With `file`: the variable that carries the file's path, for images
    /// with their own convention (`POSTGRES_PASSWORD_FILE`); default the
    /// service's `secretFileEnv` (`FILE__<name>`).
    pub file_env: Option<String>,
    /// For `podmanSecret`: a file at `/run/secrets/<name>` (default) or an
    /// environment variable (podman ≥ 5.3; older ones show it in inspect).
    pub podman_secret_type: Option<PodmanSecretType>,
    /// Accept that `env` (on Docker or podman before 5.3) or `envFile`
    /// puts the value where `inspect` shows it.
    #[serde(default)]
    pub allow_environment_value: bool,
}

/// As written in the spec. `env` is resolved into `podmanSecret` (type env)
/// or `envFile` by the engine; the manifest only holds the last three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SecretMode {
    /// A copy under /run/nixarr-units/secrets/<container>/, mounted
    /// read-only at /run/secrets, path in `FILE__<name>` (or the app's
    /// convention).
    File,
    /// The value as an environment variable, the safest way the engine
    /// has: a podman secret of type env on podman ≥ 5.3, else an env file
    /// (needs `allowEnvironmentValue`).
    Env,
    /// An env file rendered by the bridge, passed with `--env-file` (shown
    /// by `inspect`; needs `allowEnvironmentValue`).
    EnvFile,
    /// A podman secret (`podman secret create`), `--secret`.
    PodmanSecret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodmanSecretType {
    Env,
    Mount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    No,
    OnFailure,
    Always,
}

impl Restart {
    pub fn systemd(self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigrationSpec {
    pub legacy_unit: Option<String>,
    pub legacy_data_dir: Option<String>,
    pub target_dir: Option<String>,
}

/// A service's backup: paths relative to `root`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupSpec {
    /// The host directory to back up [default: the app's config directory,
    /// or the service's only writable volume].
    pub root: Option<String>,
    /// SQLite databases, copied with SQLite's online backup API.
    pub databases: Option<Vec<String>>,
    /// Only these files or directories [default: everything].
    pub paths: Option<Vec<String>>,
    /// Left out (logs, caches).
    pub exclude: Option<Vec<String>>,
}

/// Parse a spec document. `origin` names the file in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Spec, SpecError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| SpecError::Syntax {
        origin: origin.to_owned(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    refuse_duplicate_keys(text, origin)?;
    if value.get("stacks").is_some() && value.get("services").is_none() {
        return Err(SpecError::at(
            origin,
            "stacks",
            "this is a manifest (written by `render` or the generator), not a spec; pass the \
             spec it was rendered from (a NixOS host has no spec file: change the module's \
             options instead)",
        ));
    }
    match value.get("version") {
        None => {
            return Err(SpecError::at(
                origin,
                "version",
                format!("missing; add \"version\": {SPEC_VERSION} at the top level"),
            ));
        }
        Some(v) if v.as_u64() != Some(SPEC_VERSION) => {
            return Err(SpecError::at(
                origin,
                "version",
                format!(
                    "unsupported spec version {v}; this nixarr-units understands version \
                     {SPEC_VERSION} only (upgrade nixarr-units, or regenerate the spec with the \
                     matching NixOS module)"
                ),
            ));
        }
        Some(_) => {}
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // For an unknown key the path already ends with that key.
        let path = e.path().to_string();
        SpecError::at(origin, &path, explain_serde(e.inner()))
    })
}

/// serde_json keeps the last of two equal keys in an object without a word
/// (two `"sonarr"` services: one silently replaces the other). Walk the
/// document once with a visitor that tracks the JSON path and refuses the
/// second occurrence of a key in any object, wherever it is.
fn refuse_duplicate_keys(text: &str, origin: &str) -> Result<(), SpecError> {
    use std::cell::RefCell;
    let found: RefCell<Option<(String, String)>> = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = UniqueKeys {
        path: String::new(),
        found: &found,
    };
    match serde::de::DeserializeSeed::deserialize(seed, &mut de) {
        Ok(()) => Ok(()),
        Err(e) => match found.into_inner() {
            Some((path, key)) => Err(SpecError::at(
                origin,
                &path,
                format!(
                    "the key `{key}` appears twice (line {}); JSON would silently keep only \
                     the last one, so remove or rename one of them",
                    e.line()
                ),
            )),
            None => Err(SpecError::Syntax {
                origin: origin.to_owned(),
                line: e.line(),
                column: e.column(),
                message: strip_position(&e.to_string()),
            }),
        },
    }
}

/// A visitor over any JSON value that fails on a repeated object key and
/// records where (the path of the object, and the key).
struct UniqueKeys<'a> {
    path: String,
    found: &'a std::cell::RefCell<Option<(String, String)>>,
}

impl UniqueKeys<'_> {
    fn child(&self, step: &str) -> Self {
        UniqueKeys {
            path: if self.path.is_empty() {
                step.to_owned()
            } else if step.starts_with('[') {
                format!("{}{step}", self.path)
            } else {
                format!("{}.{step}", self.path)
            },
            found: self.found,
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq
            .next_element_seed(self.child(&format!("[{i}]")))?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                let at = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                *self.found.borrow_mut() = Some((at, key));
                return Err(serde::de::Error::custom("duplicate key"));
            }
            map.next_value_seed(self.child(&key))?;
        }
        Ok(())
    }
}

/// serde_json appends " at line L column C"; the path already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Turn serde's messages into ours: an unknown key gets the nearest valid name.
fn explain_serde(err: &serde_json::Error) -> String {
    let msg = strip_position(&err.to_string());
    if let Some((field, expected)) = parse_unknown_field(&msg) {
        return match crate::naming::nearest(&field, expected.iter().map(String::as_str)) {
            Some(cand) => format!("unknown key; did you mean `{cand}`?"),
            None => format!(
                "unknown key; valid keys here: {}",
                expected
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return format!("unknown value {rest}");
    }
    msg
}

/// Parse serde's `unknown field `x`, expected one of `a`, `b`` (or
/// `expected `a``) into the field and the valid names.
fn parse_unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let field = rest[..end].to_owned();
    let expected = rest[end..]
        .split('`')
        .skip(2)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((field, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_gets_defaults() {
        let s = parse(r#"{"version":1,"services":{}}"#, "t.json").unwrap();
        assert_eq!(s.backend, Backend::Podman);
        assert_eq!(s.prefix, "nixarr");
        assert_eq!(s.defaults.puid, 568);
        assert_eq!(s.paths.data_dir, "/data");
    }

    #[test]
    fn unknown_key_suggests_nearest() {
        let e = parse(r#"{"version":1,"services":{"a":{"imagee":"x"}}}"#, "t.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("services.a.imagee: unknown key"), "{e}");
        assert!(e.contains("did you mean `image`"), "{e}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = parse("{\n\"version\": 1,\n}", "t.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn wrong_version_is_rejected() {
        let e = parse(r#"{"version":2}"#, "t.json").unwrap_err().to_string();
        assert!(e.contains("unsupported spec version 2"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_refused_wherever_they_are() {
        for (json, path) in [
            (
                r#"{"version":1,"services":{"sonarr":{"image":"a"},"sonarr":{"image":"b"}}}"#,
                "services.sonarr: the key `sonarr` appears twice",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","environment":{"K":"1","K":"2"}}}}"#,
                "services.a.environment.K: the key `K` appears twice",
            ),
            (
                r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/a","host":"/b","container":"/c"}]}}}"#,
                "services.a.volumes[0].host: the key `host` appears twice",
            ),
            (
                r#"{"version":1,"version":1}"#,
                "version: the key `version` appears twice",
            ),
        ] {
            let e = parse(json, "t.json").unwrap_err().to_string();
            assert!(e.contains(path), "{e}");
            assert!(e.contains("remove or rename one"), "{e}");
        }
    }

    #[test]
    fn a_manifest_is_not_a_spec() {
        let e = parse(
            r#"{"version":1,"generator":"nixarr-units 0.1.0","stacks":[]}"#,
            "m.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("this is a manifest"), "{e}");
    }

    #[test]
    fn health_null_disables() {
        let s = parse(
            r#"{"version":1,"services":{"a":{"health":null},"b":{}}}"#,
            "t.json",
        )
        .unwrap();
        assert!(matches!(s.services["a"].health, Some(None)));
        assert!(s.services["b"].health.is_none());
    }
}
