//! `nixarr-units backup`: which services, whether their apps run, and the
//! stop–copy–start fallback (`--allow-stop`) for what cannot be copied
//! while the app runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{DbRecord, Method, ServiceDir, Subject, sqlite, take};
use crate::engine::Engine;
use crate::error::UsageError;
use crate::manifest::{Manifest, ServiceManifest, StackManifest};
use crate::migrate::run_job;
use crate::systemd::{ActiveState, Systemd, Verb};

/// What `backup` was asked to do.
pub struct Options {
    pub to: PathBuf,
    pub keep: Option<usize>,
    pub allow_stop: bool,
    /// Only the services of this stack (its prefix).
    pub stack: Option<String>,
    /// How long a database may stay locked before the copy gives up.
    pub busy_bound: Duration,
    /// For the stop and start jobs of `--allow-stop`.
    pub timeout: Duration,
}

/// One service's result, as printed (and as `--json` prints it).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub service: String,
    /// The backup directory; none when skipped or failed.
    pub path: Option<String>,
    pub method: Option<Method>,
    /// Why it was stopped for the copy (with `--allow-stop`).
    pub stopped_because: Option<String>,
    pub databases: Vec<DbRecord>,
    pub missing_databases: Vec<String>,
    pub files: usize,
    pub bytes: u64,
    /// Older backups removed by `--keep`.
    pub pruned: Vec<String>,
    /// Why no backup was made (a service without backup facts, with --all).
    pub skipped: Option<String>,
    pub error: Option<String>,
}

impl Outcome {
    fn new(service: &str) -> Self {
        Outcome {
            service: service.to_owned(),
            path: None,
            method: None,
            stopped_because: None,
            databases: Vec::new(),
            missing_databases: Vec::new(),
            files: 0,
            bytes: 0,
            pruned: Vec::new(),
            skipped: None,
            error: None,
        }
    }
}

/// The services to back up: those named (each must have backup facts), or
/// with no names (`--all`) every service that has them (the others reported
/// skipped).
fn chosen<'a>(
    manifest: &'a Manifest,
    path: &Path,
    names: &[String],
    only_stack: Option<&str>,
) -> Result<Vec<(&'a StackManifest, String, &'a ServiceManifest)>> {
    if let Some(p) = only_stack {
        manifest.stack(path, p)?;
    }
    let all = names.is_empty();
    let selected = crate::control::select(manifest, names)?;
    let mut out = Vec::new();
    for (i, name) in selected {
        let stack = manifest
            .stacks
            .get(i)
            .context("a stack index out of range")?;
        let svc = stack
            .services
            .get(&name)
            .context("a service name out of range")?;
        if only_stack.is_some_and(|p| p != stack.prefix) {
            continue;
        }
        if svc.backup.is_none() && !all {
            return Err(UsageError(format!(
                "{name} has nothing to back up: it is not a catalog app and its spec has no \
                 \"backup\"; add \"backup\": {{\"databases\": [...], \"paths\": [...]}} to \
                 services.{name} in the spec"
            ))
            .into());
        }
        out.push((stack, name, svc));
    }
    Ok(out)
}

/// The image the container runs: its ID and, when the engine knows one,
/// its registry digest.
fn image_of(stack: &StackManifest, svc: &ServiceManifest) -> (Option<String>, Option<String>) {
    let engine = Engine::from(stack);
    let id = engine
        .inspect_format(&svc.container, "{{.Image}}")
        .run()
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let digest = id
        .as_deref()
        .and_then(|id| engine.image(id).ok().flatten())
        .and_then(|img| {
            img.digest
                .clone()
                .or_else(|| img.repo_digest(None).map(str::to_owned))
        });
    let id = id.map(|i| {
        if i.starts_with("sha256:") {
            i
        } else {
            format!("sha256:{i}")
        }
    });
    (id, digest)
}

/// Back up each chosen service of the manifest read at `path` in turn (no
/// names: every service with something to back up); a failure of one does
/// not stop the others (its outcome says why).
pub fn backup(
    manifest: &Manifest,
    path: &Path,
    bus_address: Option<&str>,
    names: &[String],
    opts: &Options,
) -> Result<Vec<Outcome>> {
    let chosen = chosen(manifest, path, names, opts.stack.as_deref())?;
    zbus::block_on(async {
        let sd = Systemd::connect(bus_address).await?;
        let mut out = Vec::new();
        for (stack, name, svc) in chosen {
            let mut o = Outcome::new(&name);
            if svc.backup.is_none() {
                o.skipped = Some("nothing to back up (no \"backup\" in its spec)".into());
                out.push(o);
                continue;
            }
            if let Err(e) = one(&sd, stack, &name, svc, opts, &mut o).await {
                o.error = Some(format!("{e:#}"));
            }
            out.push(o);
        }
        Ok(out)
    })
}

/// Why the app has to be stopped for a copy; `None` when it can run on.
fn stop_reason(databases: &[String], busy: Option<&sqlite::Busy>) -> Option<String> {
    if let Some(b) = busy {
        return Some(format!("{b}"));
    }
    databases.is_empty().then(|| {
        "it declares no SQLite database, so its files cannot be copied consistently while it \
         runs"
            .to_owned()
    })
}

/// Back up one service into its directory under `opts.to`, filling `o`.
// Over ~100 lines on purpose: the one decision of how a service is copied
// (offline when its app is stopped, online through SQLite's backup API, or
// stopped and started again with --allow-stop), read in that order, with
// the restart after a stopped copy next to the stop.
async fn one(
    sd: &Systemd,
    stack: &StackManifest,
    name: &str,
    svc: &ServiceManifest,
    opts: &Options,
    o: &mut Outcome,
) -> Result<()> {
    let facts: crate::model::BackupFacts = svc
        .backup
        .as_ref()
        .map(Into::into)
        .context("no backup facts")?;
    if !std::path::Path::new(&facts.root).exists() {
        // Not an error: the app has not run yet, so there is nothing to lose.
        o.skipped = Some(format!(
            "{} does not exist yet (has it ever run?)",
            facts.root
        ));
        return Ok(());
    }
    let running = matches!(
        sd.unit_state(&svc.unit).await?.active_state,
        ActiveState::Active | ActiveState::Activating | ActiveState::Reloading
    );
    let (image_id, image_digest) = if running {
        image_of(stack, svc)
    } else {
        (None, None)
    };
    let subject = Subject {
        service: name.to_owned(),
        app: svc.app.clone(),
        image: svc.image.clone(),
        image_id,
        image_digest,
        facts,
    };
    let dir = ServiceDir::open(&opts.to, name)?;
    let mut result = None;
    let mut reason = None;
    if !running {
        result = Some(take(
            &dir,
            &subject,
            Method::Offline,
            opts.busy_bound,
            SystemTime::now(),
        )?);
    } else if let Some(r) = stop_reason(&subject.facts.databases, None) {
        reason = Some(r);
    } else {
        match take(
            &dir,
            &subject,
            Method::Online,
            opts.busy_bound,
            SystemTime::now(),
        ) {
            Ok(r) => result = Some(r),
            Err(e) => match e.downcast_ref::<sqlite::Busy>() {
                Some(b) => reason = stop_reason(&[], Some(b)),
                None => return Err(e),
            },
        }
    }
    if let Some(why) = reason {
        if !opts.allow_stop {
            bail!(
                "not backed up: {why}; pass --allow-stop to stop {} for the copy and start it \
                 again",
                svc.unit
            );
        }
        run_job(sd, Verb::Stop, &svc.unit, opts.timeout).await?;
        let taken = take(
            &dir,
            &subject,
            Method::Stopped,
            opts.busy_bound,
            SystemTime::now(),
        );
        // Started again whatever the copy did.
        let started = run_job(sd, Verb::Start, &svc.unit, opts.timeout).await;
        let taken = taken?;
        started.with_context(|| format!("the backup {} is complete, but", taken.0.display()))?;
        o.stopped_because = Some(why);
        result = Some(taken);
    }
    let (path, m) = result.context("no backup was made")?;
    o.path = Some(path.display().to_string());
    o.method = Some(m.method);
    o.databases = m.databases;
    o.missing_databases = m.missing_databases;
    o.files = m.files.len();
    o.bytes = m.files.iter().map(|f| f.entry.size).sum();
    if let Some(keep) = opts.keep {
        o.pruned = dir
            .prune(keep)?
            .iter()
            .map(|p| p.display().to_string())
            .collect();
    }
    Ok(())
}
