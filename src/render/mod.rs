//! Stack → unit files, as data. Pure: no I/O, so the same input always gives
//! the same bytes, whether `render` writes them into a Nix output or the
//! generator into systemd's generator directory.
//!
//! Argument vectors are built here as plain strings and escaped by
//! [`escape`]; the tera templates in `templates/` only lay out directives.

pub mod escape;
pub mod proxy;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tera::Tera;
use thiserror::Error;

use crate::images::lock::{LABEL_IMAGE_TAG, pinned_reference};
use crate::manifest::{PublishedPort, ServiceManifest, StackManifest};
use crate::model::{Device, ENV_DIR, SECRETS_DIR, Service, Stack};
use crate::spec::{Backend, PodmanSecretType, SecretMode};

use escape::{EscapeError, exec_line, plain_value};

/// Where units go below a package prefix (`render --out DIR`).
pub const UNIT_DIR: &str = "lib/systemd/system";
/// Where the manifest goes below a package prefix.
pub const MANIFEST_PATH: &str = "share/nixarr-units/manifest.json";

const TEMPLATES: &[(&str, &str)] = &[
    (
        "container-podman.service",
        include_str!("../../templates/container-podman.service"),
    ),
    (
        "container-docker.service",
        include_str!("../../templates/container-docker.service"),
    ),
    (
        "network.service",
        include_str!("../../templates/network.service"),
    ),
    ("stack.target", include_str!("../../templates/stack.target")),
    (
        "secrets.service",
        include_str!("../../templates/secrets.service"),
    ),
    (
        "health.service",
        include_str!("../../templates/health.service"),
    ),
    ("health.timer", include_str!("../../templates/health.timer")),
    (
        "update.service",
        include_str!("../../templates/update.service"),
    ),
    ("update.timer", include_str!("../../templates/update.timer")),
    ("api.socket", include_str!("../../templates/api.socket")),
    ("api.service", include_str!("../../templates/api.service")),
    (
        "api-polkit.rules",
        include_str!("../../templates/api-polkit.rules"),
    ),
    (
        "backup.service",
        include_str!("../../templates/backup.service"),
    ),
    ("backup.timer", include_str!("../../templates/backup.timer")),
    (
        "reconcile.service",
        include_str!("../../templates/reconcile.service"),
    ),
    (
        "reconcile.timer",
        include_str!("../../templates/reconcile.timer"),
    ),
    (
        "migrate@.service",
        include_str!("../../templates/migrate@.service"),
    ),
];

#[derive(Debug, Error)]
pub enum RenderError {
    #[error("services.{service}: {source}")]
    Escape {
        service: String,
        #[source]
        source: EscapeError,
    },
    #[error("template {name}: {message} (a defect in nixarr-units; please report it)")]
    Template { name: String, message: String },
}

/// One file of the output, relative to the unit directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File(String),
    /// A symlink (the `.wants/` links that enable units) to this target.
    Symlink(String),
}

#[derive(Debug, Clone)]
pub struct Rendered {
    /// Unit files and `.wants` links by path relative to the unit directory.
    pub units: BTreeMap<String, Entry>,
    pub manifest: StackManifest,
    /// Other files by path relative to the output directory (the reverse
    /// proxy's configuration).
    pub files: BTreeMap<String, String>,
}

/// What the renderer needs to know besides the spec.
#[derive(Debug, Clone)]
pub struct Options {
    /// Absolute path of the nixarr-units binary the units call for their
    /// helper steps (directory creation, health gate, stop).
    pub self_exe: String,
    /// The spec file the units come from, written as `SourcePath=` so that
    /// `systemctl status` says when it changed since the last
    /// `daemon-reload` (the generator sets it; `render` output for a Nix
    /// store path has no use for it).
    pub source_path: Option<String>,
}

fn tera() -> Result<&'static Tera, RenderError> {
    static TERA: OnceLock<Result<Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut t = Tera::default();
        t.autoescape_on(vec![]);
        t.add_raw_templates(TEMPLATES.iter().copied())
            .map_err(|e| format!("{e:?}"))?;
        Ok(t)
    })
    .as_ref()
    .map_err(|message| RenderError::Template {
        name: "(all)".to_owned(),
        message: message.clone(),
    })
}

fn fill<C: Serialize>(name: &str, ctx: &C) -> Result<String, RenderError> {
    let err = |e: tera::Error| RenderError::Template {
        name: name.to_owned(),
        message: format!("{e:?}"),
    };
    let context = tera::Context::from_serialize(ctx).map_err(err)?;
    tera()?.render(name, &context).map_err(err)
}

/// The podman secret holding variable `var` of `container`: what the unit
/// passes to `--secret=` and the secret bridge creates and removes.
pub fn podman_secret_name(container: &str, var: &str) -> String {
    format!("{container}-{var}")
}

/// Names of a stack's units and containers.
pub struct Names<'a> {
    prefix: &'a str,
}

impl<'a> Names<'a> {
    pub fn new(prefix: &'a str) -> Self {
        Names { prefix }
    }
    pub fn container(&self, svc: &str) -> String {
        format!("{}-{svc}", self.prefix)
    }
    pub fn unit(&self, svc: &str) -> String {
        format!("{}-{svc}.service", self.prefix)
    }
    pub fn secrets_unit(&self, svc: &str) -> String {
        format!("{}-{svc}-secrets.service", self.prefix)
    }
    /// The name of a podman secret holding variable `var` of `svc`.
    pub fn podman_secret(&self, svc: &str, var: &str) -> String {
        podman_secret_name(&self.container(svc), var)
    }
    /// A unit of a stack-wide helper: `<prefix>-<stem>.<suffix>` (its
    /// service and its trigger share the stem).
    pub fn helper_unit(&self, helper: &Helper, suffix: &str) -> String {
        format!("{}-{}.{suffix}", self.prefix, helper.stem)
    }
    pub fn network_unit(&self) -> String {
        format!("{}-network.service", self.prefix)
    }
    pub fn target(&self) -> String {
        format!("{}.target", self.prefix)
    }
    /// The migration template unit (`<prefix>-migrate@<service>`).
    pub fn migrate_template(&self) -> String {
        format!("{}-migrate@.service", self.prefix)
    }
    /// Every unit named after the prefix alone, whatever the backend (in
    /// the order the spec's reserved service names are listed).
    pub fn stack_units(&self) -> Vec<String> {
        let pair = |h: &Helper| {
            [
                self.helper_unit(h, "service"),
                self.helper_unit(h, h.trigger),
            ]
        };
        let mut units = vec![self.target(), self.network_unit()];
        units.extend([&HEALTH, &BACKUP, &RECONCILE].into_iter().flat_map(pair));
        units.push(self.migrate_template());
        units.extend([&UPDATE, &API].into_iter().flat_map(pair));
        units
    }
    /// Every unit a service may get.
    pub fn service_units(&self, svc: &str) -> Vec<String> {
        vec![self.unit(svc), self.secrets_unit(svc)]
    }
}

/// A stack-wide helper: the service `<prefix>-<stem>.service` and the unit
/// that starts it, `<prefix>-<stem>.<trigger>` (a timer, or the API's
/// socket), from the templates `<stem>.service` and `<stem>.<trigger>`.
pub struct Helper {
    stem: &'static str,
    trigger: &'static str,
    /// What an error in its values names in place of a service.
    what: &'static str,
}

impl Helper {
    /// A helper started by `<prefix>-<stem>.timer`.
    const fn timer(stem: &'static str, what: &'static str) -> Self {
        Helper {
            stem,
            trigger: "timer",
            what,
        }
    }

    /// Render the pair into `units` and enable its trigger through the
    /// stack's target (`wants`); nothing when `own` (the helper's values)
    /// is none: the spec does not ask for it.
    fn render<X: Serialize>(
        &self,
        stack: &Stack,
        own: Result<Option<X>, EscapeError>,
        units: &mut BTreeMap<String, Entry>,
        wants: &mut Vec<String>,
    ) -> Result<(), RenderError> {
        let Some(own) = own.map_err(blame(self.what))? else {
            return Ok(());
        };
        let names = Names::new(&stack.prefix);
        let ctx = HelperCtx {
            version: VERSION,
            prefix: &stack.prefix,
            target: names.target(),
            own,
        };
        for suffix in ["service", self.trigger] {
            let text = fill(&format!("{}.{suffix}", self.stem), &ctx)?;
            units.insert(names.helper_unit(self, suffix), Entry::File(text));
        }
        wants.push(names.helper_unit(self, self.trigger));
        Ok(())
    }
}

/// Docker's health watchdog.
pub const HEALTH: Helper = Helper::timer("health", "(health watchdog)");
/// `autoUpdate`.
pub const UPDATE: Helper = Helper::timer("update", "(autoUpdate)");
/// Scheduled backups.
pub const BACKUP: Helper = Helper::timer("backup", "(backup)");
/// The reconcile pass.
pub const RECONCILE: Helper = Helper::timer("reconcile", "(reconcile)");
/// The control API, started by its socket.
pub const API: Helper = Helper {
    stem: "api",
    trigger: "socket",
    what: "(api)",
};

/// What every helper's templates read, around the helper's own values.
#[derive(Serialize)]
struct HelperCtx<'a, X> {
    version: &'static str,
    prefix: &'a str,
    target: String,
    #[serde(flatten)]
    own: X,
}

/// An escaping error blamed on `what`: a service's name, or a part of the
/// stack in parentheses.
fn blame(what: &str) -> impl Fn(EscapeError) -> RenderError + '_ {
    move |source| RenderError::Escape {
        service: what.to_owned(),
        source,
    }
}

#[derive(Serialize)]
struct ContainerCtx {
    version: &'static str,
    description: String,
    documentation: Vec<String>,
    after: Vec<String>,
    requires: Vec<String>,
    binds_to: Vec<String>,
    target: String,
    exec_start_pre: Vec<String>,
    exec_start: String,
    exec_start_post: Vec<String>,
    exec_stop: String,
    exec_stop_post: Vec<String>,
    requires_mounts_for: Vec<String>,
    restart: &'static str,
    timeout_start: u64,
    timeout_stop: u64,
}

#[derive(Serialize)]
struct NetworkCtx {
    version: &'static str,
    network: String,
    prefix: String,
    backend: &'static str,
    after: Vec<String>,
    requires: Vec<String>,
    target: String,
    exec_start: Vec<String>,
}

#[derive(Serialize)]
struct SecretsCtx {
    version: &'static str,
    container: String,
    container_unit: String,
    secrets: Vec<String>,
    podman: bool,
    exec_start: String,
    exec_stop: String,
    runtime_directories: Vec<String>,
}

#[derive(Serialize)]
struct MigrateCtx {
    version: &'static str,
    prefix: String,
    exec_start: String,
}

#[derive(Serialize)]
struct HealthCtx {
    exec_start: String,
    interval: u64,
}

#[derive(Serialize)]
struct UpdateCtx {
    services: Vec<String>,
    after: Vec<String>,
    exec_start: String,
    writable: Vec<String>,
    schedule: String,
}

#[derive(Serialize)]
struct BackupCtx {
    exec_start: String,
    dir: String,
    schedule: String,
}

#[derive(Serialize)]
struct ApiCtx {
    socket: String,
    group: Option<String>,
    user: Option<String>,
    listen: Vec<String>,
    service: String,
    socket_unit: String,
    after: Vec<String>,
    exec_start: String,
    credentials: Vec<String>,
    /// Where probes go besides loopback: the addresses ports are published on.
    allow: Vec<String>,
}

#[derive(Serialize)]
struct ReconcileCtx {
    docker: bool,
    exec_start: String,
    interval: u64,
}

#[derive(Serialize)]
struct TargetCtx {
    version: &'static str,
    prefix: String,
    backend: &'static str,
    count: String,
    wants: Vec<String>,
}

const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const LABEL_MANAGED: &str = "io.nixarr.managed";
pub const LABEL_SERVICE: &str = "io.nixarr.service";
/// The stack's prefix: reconcile tells a stack's containers from another's.
pub const LABEL_STACK: &str = "io.nixarr.stack";
/// The catalog app, or `custom` for any other image.
pub const LABEL_APP: &str = "io.nixarr.app";
/// The service's name (`sonarr-4k` for a second Sonarr).
pub const LABEL_INSTANCE: &str = "io.nixarr.instance";
pub const LABEL_HASH: &str = "io.nixarr.config-hash";

/// Render every unit of a stack.
pub fn render(stack: &Stack, opts: &Options) -> Result<Rendered, RenderError> {
    let names = Names::new(&stack.prefix);
    let mut units = BTreeMap::new();
    let mut services = BTreeMap::new();

    for svc in stack.services.values() {
        let hash = service_units(stack, svc, opts, &mut units)?;
        services.insert(svc.name.clone(), service_manifest(stack, svc, hash));
    }

    let network_unit = names.network_unit();
    let network = network_ctx(stack).map_err(blame("(network)"))?;
    units.insert(
        network_unit.clone(),
        Entry::File(fill("network.service", &network)?),
    );

    // `systemctl start <prefix>-migrate@sonarr` runs a migration detached,
    // its progress in `systemctl status`.
    if stack.services.values().any(|s| s.migration.is_some()) {
        let exec_start = exec_line(&[opts.self_exe.as_str(), "migration", "migrate"])
            .map_err(blame("(migrate)"))?;
        let ctx = MigrateCtx {
            version: VERSION,
            prefix: stack.prefix.clone(),
            exec_start,
        };
        units.insert(
            names.migrate_template(),
            Entry::File(fill("migrate@.service", &ctx)?),
        );
    }
    let mut wants: Vec<String> = stack.services.keys().map(|s| names.unit(s)).collect();
    wants.push(network_unit.clone());
    // Docker has no --health-on-failure: a timer-driven watchdog restarts
    // units whose container stays unhealthy (podman kills them itself).
    HEALTH.render(stack, health_ctx(stack, opts), &mut units, &mut wants)?;
    UPDATE.render(stack, update_ctx(stack, opts), &mut units, &mut wants)?;
    BACKUP.render(stack, backup_ctx(stack, opts), &mut units, &mut wants)?;
    API.render(stack, api_ctx(stack, opts), &mut units, &mut wants)?;
    RECONCILE.render(stack, reconcile_ctx(stack, opts), &mut units, &mut wants)?;
    wants.sort();
    let target = names.target();
    let ctx = TargetCtx {
        version: VERSION,
        prefix: stack.prefix.clone(),
        backend: stack.backend.name(),
        count: match stack.services.len() {
            1 => "1 service".to_owned(),
            n => format!("{n} services"),
        },
        wants,
    };
    units.insert(target.clone(), Entry::File(fill("stack.target", &ctx)?));
    units.insert(
        format!("multi-user.target.wants/{target}"),
        Entry::Symlink(format!("../{target}")),
    );
    if let Some(source) = &opts.source_path {
        // After hashing: moving a spec file changes no container.
        let line = format!(
            "[Unit]\nSourcePath={}\n",
            plain_value(source).map_err(blame("(SourcePath)"))?
        );
        for entry in units.values_mut() {
            if let Entry::File(text) = entry {
                *text = text.replacen("[Unit]\n", &line, 1);
            }
        }
    }

    let mut files = BTreeMap::new();
    if let Some(p) = &stack.proxy {
        files.insert(proxy::NGINX_PATH.to_owned(), proxy::nginx(&stack.prefix, p));
        files.insert(proxy::CADDY_PATH.to_owned(), proxy::caddy(&stack.prefix, p));
    }
    if let Some(user) = stack.api.as_ref().and_then(|a| a.user.as_deref()) {
        files.insert(polkit_rules_path(&stack.prefix), polkit_rules(stack, user)?);
    }
    Ok(Rendered {
        units,
        files,
        manifest: StackManifest {
            prefix: stack.prefix.clone(),
            backend: stack.backend,
            engine: stack.engine.path.clone(),
            target,
            network: stack.network.clone(),
            network_unit,
            services,
            image_lock: stack.lock.as_ref().map(|l| l.path.clone()),
            profiles: stack.profiles.clone(),
        },
    })
}

/// A service's container unit and, when it has secrets, its secret bridge,
/// into `units`; returns the container unit's config hash.
fn service_units(
    stack: &Stack,
    svc: &Service,
    opts: &Options,
    units: &mut BTreeMap<String, Entry>,
) -> Result<String, RenderError> {
    let names = Names::new(&stack.prefix);
    let esc = blame(&svc.name);
    // The hash covers the whole unit except itself: render once without
    // it, hash, render again with it.
    let (template, draft) = container_unit(stack, svc, opts, "").map_err(&esc)?;
    let hash = config_hash(&fill(template, &draft)?);
    let (template, ctx) = container_unit(stack, svc, opts, &hash).map_err(&esc)?;
    units.insert(names.unit(&svc.name), Entry::File(fill(template, &ctx)?));
    if !svc.secrets.is_empty() {
        let ctx = secrets_ctx(stack, svc, opts).map_err(&esc)?;
        units.insert(
            names.secrets_unit(&svc.name),
            Entry::File(fill("secrets.service", &ctx)?),
        );
    }
    Ok(hash)
}

/// sha256 of the unit text, the first 20 bytes in Nix's base32 (32 chars).
fn config_hash(unit_text: &str) -> String {
    let digest = Sha256::digest(unit_text.as_bytes());
    crate::nixfmt::to_nix_base32(&digest[..20])
}

fn network_ctx(stack: &Stack) -> Result<NetworkCtx, EscapeError> {
    let names = Names::new(&stack.prefix);
    let engine = &stack.engine.path;
    let net = &stack.network;
    // `podman network create [--ignore] [--interface-name=…] NAME`: a
    // bridge named in advance, so that a firewall can let the containers
    // reach the DNS server on it (aardvark-dns listens on the bridge's
    // address; NixOS opens port 53 only on the interfaces it is told).
    let mut create = vec![engine.as_str(), "network", "create"];
    let ignore = stack.engine.has_network_create_ignore(stack.backend);
    if ignore {
        create.push("--ignore");
    }
    let bridge = match stack.backend {
        Backend::Podman => format!("--interface-name={}", stack.network_interface),
        Backend::Docker => format!(
            "--opt=com.docker.network.bridge.name={}",
            stack.network_interface
        ),
    };
    if stack.engine.can_name_bridge(stack.backend) {
        create.push(&bridge);
    }
    create.push(net);
    let (after, requires, exec_start) = match stack.backend {
        // `--ignore` makes a second start a no-op.
        Backend::Podman if ignore => (
            vec!["network-online.target".to_owned()],
            vec![],
            vec![exec_line(&create)?],
        ),
        // podman < 4.4 has no --ignore: create (failing when it exists),
        // then check that it does exist, as for docker.
        Backend::Podman => (
            vec!["network-online.target".to_owned()],
            vec![],
            vec![
                format!("-{}", exec_line(&create)?),
                exec_line(&[engine, "network", "inspect", "--format={{.Name}}", net])?,
            ],
        ),
        Backend::Docker => (
            vec![
                "docker.service".to_owned(),
                "network-online.target".to_owned(),
            ],
            vec!["docker.service".to_owned()],
            // docker has no --ignore: create (failing when it exists),
            // then check that it does exist.
            vec![
                format!("-{}", exec_line(&create)?),
                exec_line(&[engine, "network", "inspect", "--format={{.Name}}", net])?,
            ],
        ),
    };
    Ok(NetworkCtx {
        version: VERSION,
        network: net.clone(),
        prefix: stack.prefix.clone(),
        backend: stack.backend.name(),
        after,
        requires,
        target: names.target(),
        exec_start,
    })
}

/// Ports a container publishes: its own, and for the VPN service those of
/// every service behind it.
fn published_ports<'a>(stack: &'a Stack, svc: &'a Service) -> Vec<&'a crate::model::Port> {
    if svc.vpn {
        return Vec::new();
    }
    let mut ports: Vec<_> = svc.ports.iter().collect();
    if stack.vpn_service.as_deref() == Some(svc.name.as_str()) {
        for user in stack.services.values().filter(|s| s.vpn) {
            ports.extend(user.ports.iter());
        }
    }
    ports
}

/// `--device=HOST:CONTAINER[:PERMISSIONS]`, the same for podman and Docker.
fn device_arg(d: &Device) -> String {
    format!("--device={d}")
}

fn publish_arg(p: &crate::model::Port) -> String {
    let addr = match p.address {
        None => String::new(),
        Some(std::net::IpAddr::V6(a)) => format!("[{a}]:"),
        Some(a) => format!("{a}:"),
    };
    format!(
        "--publish={addr}{}:{}/{}",
        p.host,
        p.container,
        p.protocol.name()
    )
}

/// The `run` arguments both engines share (after the engine-specific head).
// Over ~100 lines on purpose: one block per group of `run` flags, in the
// order they stand on the rendered command line (which the goldens pin).
fn common_run_args(stack: &Stack, svc: &Service, hash: &str) -> Vec<String> {
    let names = Names::new(&stack.prefix);
    let mut a = Vec::new();
    match (&stack.vpn_service, svc.vpn) {
        (Some(vpn), true) => a.push(format!("--network=container:{}", names.container(vpn))),
        _ => {
            a.push(format!("--network={}", stack.network));
            let mut aliases = vec![svc.name.clone()];
            if stack.vpn_service.as_deref() == Some(svc.name.as_str()) {
                aliases.extend(
                    stack
                        .services
                        .values()
                        .filter(|s| s.vpn)
                        .map(|s| s.name.clone()),
                );
            }
            a.extend(aliases.into_iter().map(|n| format!("--network-alias={n}")));
        }
    }
    if svc.init {
        a.push("--init".to_owned());
    }
    if let Some(u) = &svc.user {
        a.push(format!("--user={u}"));
    }
    if let Some(e) = &svc.entrypoint {
        a.push(format!("--entrypoint={e}"));
    }
    a.extend(svc.cap_add.iter().map(|c| format!("--cap-add={c}")));
    a.extend(svc.devices.iter().map(device_arg));
    a.extend(published_ports(stack, svc).into_iter().map(publish_arg));
    for v in &svc.volumes {
        let ro = if v.read_only { ":ro" } else { "" };
        a.push(format!("--volume={}:{}{ro}", v.host, v.container));
    }
    let container = names.container(&svc.name);
    let has = |mode: SecretMode| svc.secrets.iter().any(|s| s.mode == mode);
    if has(SecretMode::File) {
        a.push(format!(
            "--volume={SECRETS_DIR}/{container}:/run/secrets:ro"
        ));
    }
    // Secret values never appear here: only where their copies are.
    let mut env = svc.environment.clone();
    for s in &svc.secrets {
        if let Some(var) = &s.path_env {
            env.insert(var.clone(), format!("/run/secrets/{}", s.name));
        }
    }
    a.extend(env.iter().map(|(k, v)| format!("--env={k}={v}")));
    a.extend(
        svc.environment_files
            .iter()
            .map(|f| format!("--env-file={f}")),
    );
    if has(SecretMode::EnvFile) {
        a.push(format!("--env-file={ENV_DIR}/{container}/env"));
    }
    for s in &svc.secrets {
        if let Some(kind) = s.podman_secret_type {
            let kind = match kind {
                PodmanSecretType::Env => "env",
                PodmanSecretType::Mount => "mount",
            };
            a.push(format!(
                "--secret={},type={kind},target={}",
                names.podman_secret(&svc.name, &s.name),
                s.name
            ));
        }
    }
    let mut labels = svc.labels.clone();
    labels.insert(LABEL_MANAGED.to_owned(), "true".to_owned());
    labels.insert(LABEL_SERVICE.to_owned(), svc.name.clone());
    labels.insert(LABEL_STACK.to_owned(), stack.prefix.clone());
    labels.insert(
        LABEL_APP.to_owned(),
        svc.app.clone().unwrap_or_else(|| "custom".to_owned()),
    );
    labels.insert(LABEL_INSTANCE.to_owned(), svc.name.clone());
    labels.insert(LABEL_HASH.to_owned(), hash.to_owned());
    let pinned = pinned_image(stack, svc);
    if pinned.is_some() {
        labels.insert(LABEL_IMAGE_TAG.to_owned(), svc.image.clone());
    }
    a.extend(labels.iter().map(|(k, v)| format!("--label={k}={v}")));
    if let Some(h) = &svc.health
        && let Some(cmd) = &h.cmd
    {
        a.push(format!("--health-cmd={cmd}"));
        a.push(format!("--health-interval={}", h.interval));
        a.push(format!("--health-retries={}", h.retries));
        a.push(format!("--health-start-period={}", h.start_period));
        if stack.engine.has_sdnotify_healthy(stack.backend) {
            // With --sdnotify=healthy the unit is active (and dependents
            // start) once podman's own check passes. podman runs the first
            // check at once and, when the app is not ready yet, the next a
            // full --health-interval later: ~30 s per dependency level. A
            // start-up check with the same command runs about every second
            // until it first passes (its failures never count against the
            // app: the unit's TimeoutStartSec= bounds the start), marks the
            // container healthy, and hands over to the regular check.
            a.push(format!("--health-startup-cmd={cmd}"));
            a.push(format!("--health-startup-interval={STARTUP_INTERVAL}"));
            a.push(format!("--health-startup-timeout={}", h.timeout));
        }
        a.push(format!("--health-timeout={}", h.timeout));
        if stack.backend == Backend::Podman {
            a.push("--health-on-failure=kill".to_owned());
        }
    }
    a.push(format!("--stop-timeout={}", svc.stop_timeout));
    if svc.image_file.is_some() {
        a.push("--pull=never".to_owned());
    }
    a.extend(svc.extra_args.iter().cloned());
    a.push(pinned.unwrap_or_else(|| svc.image.clone()));
    a.extend(svc.cmd.iter().cloned());
    a
}

/// `repo@sha256:…` when the stack's image lock pins this service's image
/// (never for an image file, which the unit loads itself).
fn pinned_image(stack: &Stack, svc: &Service) -> Option<String> {
    if svc.image_file.is_some() {
        return None;
    }
    let digest = stack.lock.as_ref()?.digests.get(&svc.name)?;
    Some(pinned_reference(&svc.image, digest))
}

/// How often podman 5 runs the start-up health check until it first passes.
/// podman runs each check from a systemd timer with `AccuracySec=1s`:
/// measured with podman 5.4.2, "1s" fires every 1.5-2 s, "500ms" about
/// every second, and shorter intervals no more often than that.
const STARTUP_INTERVAL: &str = "500ms";

/// The health gate for engines without `--sdnotify=healthy`: an
/// `ExecStartPost=` that returns once the probe passes, so the unit stays
/// `activating` (and `After=` dependents wait) until then.
fn wait_healthy_argv(stack: &Stack, svc: &Service, opts: &Options) -> Option<Vec<String>> {
    let h = svc.health.as_ref()?;
    if h.cmd.is_none() && h.probe.is_none() {
        return None;
    }
    // The check itself (command or probe) is read from the manifest.
    Some(vec![
        opts.self_exe.clone(),
        "wait-healthy".to_owned(),
        format!("--stack={}", stack.prefix),
        format!("--timeout={}", svc.start_timeout),
        format!("--stop-time={}", svc.stop_timeout),
        svc.name.clone(),
    ])
}

/// A service's container unit: its template and context (`hash`, the
/// config hash, is empty for the draft that is hashed).
// Over ~100 lines on purpose: it fills the template's context field by
// field (dependencies, each engine's Exec lines, mounts, documentation) in
// the order of the unit's sections.
fn container_unit(
    stack: &Stack,
    svc: &Service,
    opts: &Options,
    hash: &str,
) -> Result<(&'static str, ContainerCtx), EscapeError> {
    let names = Names::new(&stack.prefix);
    let engine = stack.engine.path.as_str();
    let container = names.container(&svc.name);
    let network_unit = names.network_unit();

    let mut after = vec!["network-online.target".to_owned(), network_unit.clone()];
    let mut requires = vec![network_unit];
    let mut binds_to = Vec::new();
    if stack.backend == Backend::Docker {
        after.push("docker.service".to_owned());
        requires.push("docker.service".to_owned());
    }
    if !svc.secrets.is_empty() {
        let bridge = names.secrets_unit(&svc.name);
        after.push(bridge.clone());
        requires.push(bridge);
    }
    for dep in &svc.depends_on {
        let unit = names.unit(dep);
        after.push(unit.clone());
        if svc.vpn && stack.vpn_service.as_deref() == Some(dep.as_str()) {
            binds_to.push(unit);
        } else {
            requires.push(unit);
        }
    }
    after.sort();
    requires.sort();
    binds_to.sort();

    let mut pre: Vec<Vec<String>> = Vec::new();
    // The shared data tree, as the NixOS module's tmpfiles rule makes it
    // (root:<pgid>, setgid so new files keep the media group); on a host
    // without NixOS nothing else would, and the engine refuses to mount a
    // missing directory. An existing one is left alone.
    if svc
        .volumes
        .iter()
        .any(|v| v.host == stack.data_dir && !v.create)
    {
        pre.push(vec![
            opts.self_exe.clone(),
            "ensure-dir".to_owned(),
            format!("--owner=0:{}", stack.defaults.pgid),
            "--mode=2775".to_owned(),
            stack.data_dir.clone(),
        ]);
    }
    let create: Vec<&str> = svc
        .volumes
        .iter()
        .filter(|v| v.create)
        .map(|v| v.host.as_str())
        .collect();
    if !create.is_empty() {
        let mut a = vec![
            opts.self_exe.clone(),
            "ensure-dir".to_owned(),
            format!("--owner={}:{}", svc.uid, svc.gid),
            "--mode=0750".to_owned(),
        ];
        a.extend(create.iter().map(|s| (*s).to_owned()));
        pre.push(a);
    }
    if let Some(file) = &svc.image_file {
        pre.push(vec![
            engine.to_owned(),
            "load".to_owned(),
            format!("--input={file}"),
        ]);
    }

    let healthy_notify = stack.engine.has_sdnotify_healthy(stack.backend)
        && svc.health.as_ref().is_some_and(|h| h.cmd.is_some());
    let mut run: Vec<String> = vec![engine.to_owned(), "run".to_owned()];
    let mut exec_start_pre = Vec::new();
    let (template, rm) = match stack.backend {
        Backend::Podman => {
            run.extend([
                format!("--name={container}"),
                "--replace".to_owned(),
                "--rm".to_owned(),
                "--cgroups=split".to_owned(),
                format!(
                    "--sdnotify={}",
                    if healthy_notify { "healthy" } else { "conmon" }
                ),
                "-d".to_owned(),
                "--log-driver=journald".to_owned(),
            ]);
            let rm = exec_line(&[engine, "rm", "-v", "-f", "-i", &container])?;
            ("container-podman.service", rm)
        }
        Backend::Docker => {
            run.extend([
                "--rm".to_owned(),
                format!("--name={container}"),
                "--log-driver=journald".to_owned(),
            ]);
            let rm = exec_line(&[engine, "rm", "-f", &container])?;
            exec_start_pre.push(format!("-{rm}"));
            ("container-docker.service", rm)
        }
    };
    // A stop asked by systemd: the engine's stop (SIGTERM, the grace, then
    // SIGKILL), one journal line when it had to kill. The helper that runs
    // after it tells that apart from a container that died on its own.
    let exec_stop = exec_line(&[
        opts.self_exe.as_str(),
        "stop-container",
        &format!("--engine={engine}"),
        &format!("--time={}", svc.stop_timeout),
        &container,
    ])?;
    let exec_stop_post = vec![
        format!("-{rm}"),
        exec_line(&[opts.self_exe.as_str(), "container-stopped", &container])?,
    ];
    let requires_mounts_for = requires_mounts_for(svc)?;
    run.extend(common_run_args(stack, svc, hash));
    for argv in &pre {
        exec_start_pre.push(exec_line(argv)?);
    }
    let mut exec_start_post = Vec::new();
    if !healthy_notify && let Some(argv) = wait_healthy_argv(stack, svc, opts) {
        exec_start_post.push(exec_line(&argv)?);
    }

    let mut documentation = Vec::new();
    for d in &svc.documentation {
        documentation.push(plain_value(d)?);
    }
    Ok((
        template,
        ContainerCtx {
            version: VERSION,
            description: plain_value(&format!(
                "{} in {} container {container}",
                svc.description,
                stack.backend.name()
            ))?,
            documentation,
            after,
            requires,
            binds_to,
            target: names.target(),
            exec_start_pre,
            exec_start: exec_line(&run)?,
            exec_start_post,
            exec_stop,
            exec_stop_post,
            requires_mounts_for,
            restart: svc.restart.systemd(),
            timeout_start: svc.start_timeout,
            timeout_stop: svc.stop_timeout + 30,
        },
    ))
}

/// `RequiresMountsFor=` words: every host path the container mounts, so
/// that a mount (ZFS, NFS, a USB disk) is there before the container starts
/// and writes under the mount point instead. A path that the directive's
/// syntax cannot carry plainly (whitespace, quotes, a backslash) is
/// represented by its nearest ancestor that it can.
fn requires_mounts_for(svc: &Service) -> Result<Vec<String>, EscapeError> {
    let mut words = std::collections::BTreeSet::new();
    for v in &svc.volumes {
        let mut path = std::path::Path::new(&v.host);
        let plain = |p: &str| {
            !p.chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\'))
        };
        while !plain(&path.to_string_lossy()) {
            match path.parent() {
                Some(parent) => path = parent,
                None => break,
            }
        }
        words.insert(plain_value(&path.to_string_lossy())?);
    }
    Ok(words.into_iter().collect())
}

fn health_ctx(stack: &Stack, opts: &Options) -> Result<Option<HealthCtx>, EscapeError> {
    if stack.backend != Backend::Docker {
        return Ok(None);
    }
    // Poll as often as the most eager probe, but not more than every 5s.
    let interval = stack
        .services
        .values()
        .filter_map(|s| s.health.as_ref())
        .filter_map(|h| crate::duration::parse_duration(&h.interval).ok())
        .map(|d| d.as_secs().max(5))
        .min();
    let Some(interval) = interval else {
        return Ok(None);
    };
    Ok(Some(HealthCtx {
        exec_start: exec_line(&[
            opts.self_exe.as_str(),
            "heal",
            &format!("--stack={}", stack.prefix),
        ])?,
        interval,
    }))
}

/// `api`: `<prefix>-api.socket` (the unix socket and the TCP addresses) and
/// the hardened `<prefix>-api.service` it starts, its token files handed
/// over as credentials.
fn api_ctx(stack: &Stack, opts: &Options) -> Result<Option<ApiCtx>, EscapeError> {
    let Some(api) = &stack.api else {
        return Ok(None);
    };
    let names = Names::new(&stack.prefix);
    // `%d` (the credentials directory) must stay a specifier: appended
    // after escaping.
    let mut exec_start = exec_line(&[opts.self_exe.as_str(), "serve"])?;
    let mut credentials = Vec::new();
    for (name, flag, file) in [
        ("token", "--token-file", &api.token_file),
        ("read-token", "--read-token-file", &api.read_token_file),
    ] {
        if let Some(f) = file {
            credentials.push(plain_value(&format!("{name}:{f}"))?);
            exec_start.push_str(&format!(" {flag} %d/{name}"));
        }
    }
    let after = after_engine(stack);
    let mut allow: Vec<String> = stack
        .services
        .values()
        .flat_map(|s| s.ports.iter().filter_map(|p| p.address))
        .filter(|a| !a.is_loopback())
        .map(|a| a.to_string())
        .collect();
    allow.sort();
    allow.dedup();
    // A port published on every address is probed on loopback.
    Ok(Some(ApiCtx {
        socket: plain_value(&api.socket)?,
        group: api.group.clone(),
        user: api.user.clone(),
        listen: api.listen.iter().map(|a| a.to_string()).collect(),
        service: names.helper_unit(&API, "service"),
        socket_unit: names.helper_unit(&API, "socket"),
        after,
        exec_start,
        credentials,
        allow,
    }))
}

/// Where `render --out` puts the API's polkit rule (copy it to
/// `/etc/polkit-1/rules.d/`; the NixOS module sets the same text as
/// `security.polkit.extraConfig`).
pub fn polkit_rules_path(prefix: &str) -> String {
    format!("share/polkit-1/rules.d/50-{prefix}-api.rules")
}

/// The polkit rule granting the API's `user` start, stop and restart of
/// the stack's units only (templates/api-polkit.rules; the NixOS module
/// fills the same template).
fn polkit_rules(stack: &Stack, user: &str) -> Result<String, RenderError> {
    #[derive(Serialize)]
    struct RuleCtx<'a> {
        prefix: &'a str,
        user: &'a str,
    }
    fill(
        "api-polkit.rules",
        &RuleCtx {
            prefix: &stack.prefix,
            user,
        },
    )
}

/// What a helper that talks to the engine starts after: Docker's daemon
/// (podman has none).
fn after_engine(stack: &Stack) -> Vec<String> {
    if stack.backend == Backend::Docker {
        vec!["docker.service".to_owned()]
    } else {
        Vec::new()
    }
}

/// `autoUpdate`: a timer that runs `update` for its services (by unit
/// name, which no other stack shares).
fn update_ctx(stack: &Stack, opts: &Options) -> Result<Option<UpdateCtx>, EscapeError> {
    let Some(au) = &stack.auto_update else {
        return Ok(None);
    };
    let names = Names::new(&stack.prefix);
    let mut argv = vec![opts.self_exe.clone(), "update".to_owned()];
    argv.extend(au.services.iter().map(|s| names.unit(s)));
    let after = after_engine(stack);
    // The lock is written beside itself (a new file, renamed over it).
    let writable = match stack.lock.as_ref().map(|l| std::path::Path::new(&l.path)) {
        Some(p) => p
            .parent()
            .map(|d| plain_value(&format!("-{}", d.display())))
            .transpose()?
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    Ok(Some(UpdateCtx {
        services: au.services.clone(),
        after,
        exec_start: exec_line(&argv)?,
        writable,
        schedule: plain_value(&au.schedule)?,
    }))
}

/// `<prefix>-backup.service` and its timer, when the spec schedules
/// backups: every service of the stack with something to back up, online.
fn backup_ctx(stack: &Stack, opts: &Options) -> Result<Option<BackupCtx>, EscapeError> {
    let Some(b) = &stack.backup else {
        return Ok(None);
    };
    Ok(Some(BackupCtx {
        exec_start: exec_line(
            &[
                opts.self_exe.as_str(),
                "backup",
                "--all",
                &format!("--stack={}", stack.prefix),
                &format!("--to={}", b.dir),
                &format!("--keep={}", b.keep),
            ]
            .into_iter()
            .chain(b.allow_stop.then_some("--allow-stop"))
            .collect::<Vec<_>>(),
        )?,
        dir: plain_value(&b.dir)?,
        schedule: plain_value(&b.schedule)?,
    }))
}

/// The reconcile timer's pass: one summary line in the journal.
fn reconcile_ctx(stack: &Stack, opts: &Options) -> Result<Option<ReconcileCtx>, EscapeError> {
    let Some(r) = &stack.reconcile else {
        return Ok(None);
    };
    let mut argv = vec![
        opts.self_exe.clone(),
        "reconcile".to_owned(),
        format!("--stack={}", stack.prefix),
        "--summary".to_owned(),
    ];
    if r.prune {
        argv.push("--prune".to_owned());
    }
    Ok(Some(ReconcileCtx {
        docker: stack.backend == Backend::Docker,
        exec_start: exec_line(&argv)?,
        interval: r.interval,
    }))
}

fn secrets_ctx(stack: &Stack, svc: &Service, opts: &Options) -> Result<SecretsCtx, EscapeError> {
    let names = Names::new(&stack.prefix);
    let container = names.container(&svc.name);
    let stack_arg = format!("--stack={}", stack.prefix);
    let has = |mode: SecretMode| svc.secrets.iter().any(|s| s.mode == mode);
    // systemd creates these (0700) before the bridge runs and removes them,
    // with every copy, when it stops.
    let mut runtime_directories = Vec::new();
    for (mode, dir) in [
        (SecretMode::File, SECRETS_DIR),
        (SecretMode::EnvFile, ENV_DIR),
    ] {
        if has(mode) {
            let dir = dir.trim_start_matches("/run/");
            runtime_directories.push(format!("{dir}/{container}"));
        }
    }
    let bridge = |verb: &str| {
        exec_line(&[
            opts.self_exe.as_str(),
            "secrets",
            verb,
            &stack_arg,
            &svc.name,
        ])
    };
    Ok(SecretsCtx {
        version: VERSION,
        container_unit: names.unit(&svc.name),
        secrets: svc.secrets.iter().map(|s| s.name.clone()).collect(),
        podman: has(SecretMode::PodmanSecret),
        exec_start: bridge("install")?,
        exec_stop: bridge("remove")?,
        runtime_directories,
        container,
    })
}

fn service_manifest(stack: &Stack, svc: &Service, hash: String) -> ServiceManifest {
    let names = Names::new(&stack.prefix);
    let via = match (&stack.vpn_service, svc.vpn) {
        (Some(vpn), true) => Some(names.container(vpn)),
        _ => None,
    };
    ServiceManifest {
        unit: names.unit(&svc.name),
        container: names.container(&svc.name),
        app: svc.app.clone(),
        description: svc.description.clone(),
        image: svc.image.clone(),
        image_digest: pinned_image(stack, svc)
            .and(stack.lock.as_ref())
            .and_then(|l| l.digests.get(&svc.name).cloned()),
        image_file: svc.image_file.is_some(),
        ports: svc
            .ports
            .iter()
            .map(|p| PublishedPort::new(p, via.clone()))
            .collect(),
        volumes: svc.volumes.iter().map(Into::into).collect(),
        config_dir: svc.config_dir.clone(),
        depends_on: svc.depends_on.clone(),
        vpn: svc.vpn,
        health: svc.health.as_ref().map(Into::into),
        secrets: svc.secrets.iter().map(Into::into).collect(),
        secrets_unit: (!svc.secrets.is_empty()).then(|| names.secrets_unit(&svc.name)),
        config_hash: hash,
        uid: svc.uid,
        gid: svc.gid,
        migration: svc.migration.as_ref().map(Into::into),
        backup: svc.backup.as_ref().map(Into::into),
    }
}
