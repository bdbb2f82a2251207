//! `nixarr-migrate`: move a service's data from its native NixOS unit into
//! its container and back, without losing a byte.
//!
//! migrate: preflight → stop and runtime-mask the legacy unit → snapshot the
//! legacy data (reflink where possible; owners, modes, mtimes kept) with an
//! inventory and the tree's NAR hash → copy into the container's config
//! directory (path map, container owner) → start the container → wait until
//! healthy. The journal is written before each step and every step is
//! idempotent, so a run killed anywhere resumes with `migrate` or is undone
//! with `rollback`. The legacy data is only ever read; nothing is deleted
//! without `finalize`.

pub mod journal;
pub mod place;
pub mod tree;

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::graph::Graph;
use crate::health::{self, Check};
use crate::manifest::{Manifest, ServiceManifest, StackManifest};
use crate::nixfmt::nar_hash;
use crate::output::write_atomic;
use crate::spec::Protocol;
use crate::systemd::{ActiveState, JobResult, LoadState, Systemd, UnitState, Verb};
use journal::{Dir, Journal, Phase, SnapshotManifest};
use place::{Slot, beside};

/// Where things are (the command's context: manifest, bus), where the
/// journals live, and how long to wait.
pub struct Ctx<'a> {
    pub at: &'a crate::commands::Context,
    pub journal_root: PathBuf,
    pub timeout: Duration,
}

/// A refusal the user can act on (exit status 2 for the CLI).
fn refuse(msg: impl Into<String>) -> anyhow::Error {
    crate::error::UsageError(msg.into()).into()
}

struct Found<'a> {
    stack: &'a StackManifest,
    name: String,
    svc: &'a ServiceManifest,
}

fn find<'a>(manifest: &'a Manifest, service: &str) -> Result<Found<'a>> {
    let hits: Vec<_> = manifest
        .services()
        .filter(|(_, n, _)| n.as_str() == service)
        .collect();
    match hits.as_slice() {
        [(stack, name, svc)] => Ok(Found {
            stack,
            name: (*name).clone(),
            svc,
        }),
        [] => {
            let known: Vec<&str> = manifest
                .services()
                .filter(|(_, _, s)| s.migration.is_some())
                .map(|(_, n, _)| n.as_str())
                .collect();
            let nearest =
                crate::naming::nearest(service, manifest.services().map(|(_, n, _)| n.as_str()))
                    .map(|n| format!(" Did you mean `{n}`?"))
                    .unwrap_or_default();
            Err(refuse(format!(
                "no such service `{service}` in the manifest.{nearest} Services with migration \
                 facts: {}",
                if known.is_empty() {
                    "(none)".to_owned()
                } else {
                    known.join(", ")
                }
            )))
        }
        _ => Err(refuse(format!(
            "`{service}` exists in several stacks; migrate it with a unique name"
        ))),
    }
}

/// The native data directory: the spec's, nixarr's layout, or DynamicUser's
/// private directory, first that exists; symlinks resolved.
fn resolve_source(svc: &ServiceManifest) -> Result<PathBuf> {
    let m = svc
        .migration
        .as_ref()
        .ok_or_else(|| refuse("this service has no migration facts (not a catalog app, and no `migration` in its spec)"))?;
    let mut candidates = vec![PathBuf::from(&m.legacy_data_dir)];
    if let Some(l) = &m.legacy {
        candidates.push(PathBuf::from(&l.nixarr.state_dir));
    }
    let extra: Vec<PathBuf> = candidates
        .iter()
        .filter_map(|c| {
            let rest = c.strip_prefix("/var/lib").ok()?;
            (!rest.starts_with("private")).then(|| Path::new("/var/lib/private").join(rest))
        })
        .collect();
    candidates.extend(extra);
    for c in &candidates {
        if c.is_dir() {
            return fs_err::canonicalize(c).map_err(Into::into);
        }
    }
    Err(refuse(format!(
        "no native data found at {}; give the directory as migration.legacyDataDir in the spec",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )))
}

async fn legacy_unit(sd: &Systemd, svc: &ServiceManifest) -> Result<(String, UnitState)> {
    let m = svc.migration.as_ref().context("no migration facts")?;
    let states = sd.unit_states(&m.legacy_units).await?;
    states
        .into_iter()
        .find(|s| matches!(s.load_state, LoadState::Loaded | LoadState::Masked))
        .map(|s| (s.unit.clone(), s))
        .ok_or_else(|| {
            refuse(format!(
                "the native unit is unknown to systemd (looked for {}); nothing to migrate from",
                m.legacy_units.join(", ")
            ))
        })
}

/// A progress reporter: a bar on a terminal, log lines every 10% otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    next_log: u64,
    what: String,
}

impl Progress {
    fn new(what: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {eta}",
            ) {
                b.set_style(style);
            }
            b.set_message(what.to_owned());
            b
        });
        Progress {
            bar,
            total,
            done: 0,
            next_log: total / 10,
            what: what.to_owned(),
        }
    }
    fn add(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.set_position(self.done);
        } else if self.done >= self.next_log && self.total > 0 {
            tracing::info!(
                "{}: {}%",
                self.what,
                self.done.saturating_mul(100) / self.total
            );
            self.next_log = self.done + self.total / 10;
        }
    }
    fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// Host ports of the service that something else holds.
fn busy_ports(svc: &ServiceManifest) -> Vec<String> {
    svc.ports
        .iter()
        .filter(|p| p.protocol == Protocol::Tcp)
        .filter(|p| {
            let ip = p.address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            TcpListener::bind(SocketAddr::new(ip, p.host)).is_err()
        })
        .map(|p| format!("{}/tcp", p.host))
        .collect()
}

/// The host probe, else the container's health command.
pub(crate) fn check_of(stack: &StackManifest, svc: &ServiceManifest) -> Option<Check> {
    Check::probe(svc).or_else(|| Check::exec(stack, svc))
}

/// What `plan` prints and `migrate` follows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub service: String,
    pub legacy_unit: String,
    pub legacy_active: bool,
    pub container_unit: String,
    pub source: String,
    pub target: String,
    pub files: usize,
    pub bytes: u64,
    pub owner: String,
    pub journal: String,
    pub steps: Vec<String>,
}
/// Refuse a migration whose snapshot (into the journal's `dir`) and copy
/// (into `target`) of `bytes` do not fit, with 5 % and 1 MiB to spare; on
/// one file system both come out of the same free space.
fn check_space(dir: &Dir, target: &Path, bytes: u64) -> Result<()> {
    let need_snapshot = bytes + bytes / 20 + (1 << 20);
    let journal_fs = tree::statvfs_nearest(&dir.path)?;
    let target_fs = tree::statvfs_nearest(target)?;
    let free = |st: &rustix::fs::StatVfs| st.f_bavail.saturating_mul(st.f_frsize);
    let (free_journal, free_target) = (free(&journal_fs), free(&target_fs));
    let same_fs = journal_fs.f_fsid == target_fs.f_fsid;
    let (need_j, need_t) = if same_fs {
        (2 * need_snapshot, 2 * need_snapshot)
    } else {
        (need_snapshot, need_snapshot)
    };
    if free_journal < need_j {
        return Err(refuse(format!(
            "not enough space for the snapshot in {}: {} free, {} needed",
            dir.path.display(),
            free_journal,
            need_j
        )));
    }
    if free_target < need_t {
        return Err(refuse(format!(
            "not enough space for the copy in {}: {} free, {} needed",
            target.display(),
            free_target,
            need_t
        )));
    }
    Ok(())
}

async fn make_plan(sd: &Systemd, ctx: &Ctx<'_>, f: &Found<'_>, force: bool) -> Result<Plan> {
    let m = f
        .svc
        .migration
        .as_ref()
        .ok_or_else(|| refuse("no migration facts"))?;
    let (legacy, legacy_state) = legacy_unit(sd, f.svc).await?;
    if sd.unit_state(&f.svc.unit).await?.load_state != LoadState::Loaded {
        return Err(refuse(format!(
            "the container unit {} is missing; enable the service in nixarr-units (and rebuild \
             or daemon-reload) before migrating",
            f.svc.unit
        )));
    }
    let source = resolve_source(f.svc)?;
    let entries = tree::inventory(&source)?;
    let bytes = tree::total_size(&entries);
    let target = PathBuf::from(&m.target_dir);
    let target_slot = Slot::new(&target)?;
    if !force && !target_slot.is_empty()? {
        return Err(refuse(format!(
            "the target {} is not empty; move its contents away, or pass --force to keep them \
             aside (restored on rollback)",
            target.display()
        )));
    }
    let dir = Dir::new(&ctx.journal_root, &f.name)?;
    check_space(&dir, &target, bytes)?;
    let legacy_active = legacy_state.active_state == ActiveState::Active;
    if !legacy_active {
        let busy = busy_ports(f.svc);
        if !busy.is_empty() {
            return Err(refuse(format!(
                "port(s) {} are taken by something other than {legacy}; free them first",
                busy.join(", ")
            )));
        }
    }
    for db in &m.databases {
        if !source.join(db).exists() {
            tracing::debug!("database {db} is not in {}", source.display());
        }
    }
    let steps = vec![
        format!("stop {legacy} and mask it until reboot (a runtime mask in {RUNTIME_CONTROL})"),
        format!(
            "snapshot {} ({} entries, {} bytes) into {} with its NAR hash",
            source.display(),
            entries.len(),
            bytes,
            dir.snapshot().display()
        ),
        format!(
            "copy it into {}{} owned by {}:{}{}",
            target.display(),
            if target_slot.mount {
                " (a mount point: the copy is built inside it and its entries are swapped)"
            } else {
                ""
            },
            m.uid,
            m.gid,
            if m.path_map.is_empty() {
                String::new()
            } else {
                format!(
                    " (path map: {})",
                    m.path_map
                        .iter()
                        .map(|p| format!("{} → {}", p.from, p.to))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        format!("start {} and wait until it is healthy", f.svc.unit),
        "on failure: roll back (restart the native service with its data unchanged)".to_owned(),
    ];
    Ok(Plan {
        service: f.name.clone(),
        legacy_unit: legacy,
        legacy_active,
        container_unit: f.svc.unit.clone(),
        source: source.display().to_string(),
        target: target.display().to_string(),
        files: entries.len(),
        bytes,
        owner: format!("{}:{}", m.uid, m.gid),
        journal: dir.path.display().to_string(),
        steps,
    })
}

async fn connect(ctx: &Ctx<'_>) -> Result<Systemd> {
    ctx.at.systemd().await
}

pub fn plan(ctx: &Ctx<'_>, service: &str) -> Result<Plan> {
    let (_, manifest) = ctx.at.load_manifest()?;
    let f = find(&manifest, service)?;
    let p = zbus::block_on(async {
        let sd = connect(ctx).await?;
        make_plan(&sd, ctx, &f, false).await
    })?;
    Ok(p)
}

impl Plan {
    /// The plan for people: the move and its numbered steps.
    pub fn text(&self) -> String {
        let mut out = format!(
            "migrate {} from {} ({}) to {}:\n",
            self.service,
            self.legacy_unit,
            if self.legacy_active {
                "running"
            } else {
                "stopped"
            },
            self.container_unit
        );
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(&format!("  {}. {s}\n", i + 1));
        }
        out.push_str("nothing was changed\n");
        out
    }
}

/// Stop `unit` (waiting for the job) unless it is inactive already: the
/// first step of a rollback, which may run after a stop that was done.
pub(crate) async fn stop_unless_inactive(
    sd: &Systemd,
    unit: &str,
    timeout: Duration,
) -> Result<()> {
    if sd.unit_state(unit).await?.active_state != ActiveState::Inactive {
        run_job(sd, Verb::Stop, unit, timeout).await?;
    }
    Ok(())
}

pub(crate) async fn run_job(sd: &Systemd, verb: Verb, unit: &str, timeout: Duration) -> Result<()> {
    if verb == Verb::Start {
        // A migration's start is the operator's, not a crash loop's: the
        // unit's start rate limit (5 starts in 5 minutes for ours) must not
        // refuse it because earlier attempts (a resumed migration, a
        // rollback and a new try) started it a few times already.
        sd.reset_failed(unit).await;
    }
    let out = sd
        .run_jobs(verb, &[unit.to_owned()], timeout)
        .await?
        .into_iter()
        .next()
        .map_or(JobResult::Other(String::new()), |o| o.result);
    if out != JobResult::Done {
        // Why, where the user looks first: the unit's result and the last
        // lines of its journal.
        let (state, tail) = crate::control::failure_detail(sd, unit, 8)
            .await
            .unwrap_or_default();
        let state = state
            .map(|s| {
                format!(
                    " (now {}/{}, result {})",
                    s.active_state,
                    s.sub_state,
                    s.result.as_deref().unwrap_or("-")
                )
            })
            .unwrap_or_default();
        let tail: String = tail.iter().map(|l| format!("\n  {l}")).collect();
        bail!(
            "{} {unit}: job {out}{state}; see journalctl -u {unit}{}{tail}",
            verb.name(),
            if tail.is_empty() { "" } else { ":" }
        );
    }
    Ok(())
}

/// Migrate one service, resuming a journal if there is one.
pub fn migrate(ctx: &Ctx<'_>, service: &str, force: bool) -> Result<Done> {
    let (_, manifest) = ctx.at.load_manifest()?;
    let f = find(&manifest, service)?;
    let dir = Dir::new(&ctx.journal_root, &f.name)?;
    let _lock = dir.lock()?;
    zbus::block_on(async {
        let sd = connect(ctx).await?;
        let mut loaded = dir.load()?;
        if let Some(j) = loaded.as_ref().filter(|j| j.phase == Phase::RolledBack) {
            // Trying again after a rollback is the normal path: the earlier
            // run's record and what it kept move out of the way, and stay
            // until finalize.
            let kept = archive_rolled_back(&dir, j)?;
            eprintln!(
                "{service}: the earlier migration was rolled back; its snapshot and what it set \
                 aside are kept in {} until `nixarr-migrate finalize {service}` (its snapshot \
                 is dropped if the native data still hashes the same)",
                kept.display()
            );
            loaded = None;
        }
        let mut j = match loaded {
            Some(j) if j.phase == Phase::Done => {
                return Err(refuse(format!(
                    "{service} is already migrated; `nixarr-migrate rollback {service}` undoes \
                     it, `nixarr-migrate finalize {service}` deletes the snapshot"
                )));
            }
            Some(j) if j.phase >= Phase::RollingBack => {
                return Err(refuse(format!(
                    "the rollback of {service} was interrupted (phase {}); run `nixarr-migrate \
                     rollback {service}` to complete it, then migrate again",
                    j.phase.name()
                )));
            }
            Some(j) => {
                tracing::info!("{service}: resuming from phase {}", j.phase.name());
                j
            }
            None => {
                let p = make_plan(&sd, ctx, &f, force).await?;
                let m = f.svc.migration.as_ref().context("no migration facts")?;
                let mut j = Journal {
                    version: 1,
                    service: f.name.clone(),
                    phase: Phase::Planned,
                    legacy_unit: p.legacy_unit.clone(),
                    container_unit: p.container_unit.clone(),
                    source: p.source.clone(),
                    target: p.target.clone(),
                    uid: u32::try_from(m.uid).context("uid out of range")?,
                    gid: u32::try_from(m.gid).context("gid out of range")?,
                    nar_hash: None,
                    files: p.files as u64,
                    bytes: p.bytes,
                    previous_target: None,
                    target_replaced: false,
                    legacy_was_active: p.legacy_active,
                    copy_moved_aside: false,
                    history: Vec::new(),
                };
                j.advance(&dir, Phase::Planned, "preflight passed")?;
                j
            }
        };
        let result = run_steps(&sd, ctx, &f, &dir, &mut j).await;
        if let Err(e) = result {
            if j.phase >= Phase::Copied {
                tracing::error!("{service}: {e:#}; rolling back");
                rollback_steps(&sd, ctx, &dir, &mut j)
                    .await
                    .with_context(|| format!("after: {e:#}"))?;
                bail!("{service}: migration failed and was rolled back: {e:#}");
            }
            return Err(e.context(format!(
                "{service}: migration stopped in phase {}; run `nixarr-migrate migrate \
                 {service}` to resume or `nixarr-migrate rollback {service}` to undo",
                j.phase.name()
            )));
        }
        let m = f.svc.migration.as_ref().context("no migration facts")?;
        let app = f.svc.app.as_deref().unwrap_or(&f.name);
        let message = format!(
            "{service} now runs in its container ({}); its native unit {} stays masked until \
             reboot.\nTo make it permanent, in configuration.nix:\n  services.{}.enable = \
             false;\n  services.nixarr-units.{app}.enable = true;\nthen `nixos-rebuild switch`, \
             and `nixarr-migrate finalize {service}` to delete the snapshot in {}{}.\nThe data: \
             {} (was {}).",
            j.container_unit,
            j.legacy_unit,
            j.legacy_unit.trim_end_matches(".service"),
            dir.snapshot().display(),
            earlier_note(&dir)?,
            m.target_dir,
            j.source
        );
        Ok(Done::new(service, message))
    })
}

// Over ~100 lines on purpose: the migration's journalled steps in the order
// they run, each journal write next to the disk change it records, so the
// crash-safety argument (a kill between any two lines leaves a state that
// resume and rollback understand) reads top to bottom in one place.
async fn run_steps(
    sd: &Systemd,
    ctx: &Ctx<'_>,
    f: &Found<'_>,
    dir: &Dir,
    j: &mut Journal,
) -> Result<()> {
    let m = f.svc.migration.as_ref().context("no migration facts")?;
    if j.phase < Phase::LegacyStopped {
        run_job(sd, Verb::Stop, &j.legacy_unit, ctx.timeout).await?;
        mask_legacy(sd, &j.legacy_unit, true).await?;
        let busy = busy_ports(f.svc);
        if !busy.is_empty() {
            bail!(
                "port(s) {} are still taken after stopping {}",
                busy.join(", "),
                j.legacy_unit
            );
        }
        j.advance(
            dir,
            Phase::LegacyStopped,
            format!("stopped and masked {}", j.legacy_unit),
        )?;
    }
    if j.phase < Phase::Snapshotted {
        // A half-made snapshot from a killed run is thrown away and redone.
        tree::remove_tree(&dir.snapshot())?;
        let source = PathBuf::from(&j.source);
        let entries = tree::inventory(&source)?;
        let bytes = tree::total_size(&entries);
        let mut progress = Progress::new(&format!("{}: snapshot", j.service), bytes);
        let hash =
            tree::snapshot_hashed(&source, &dir.snapshot(), &entries, &mut |n| progress.add(n))?;
        progress.finish();
        dir.save_snapshot_manifest(&SnapshotManifest {
            entries: &entries,
            nar_hash: &hash,
            source: &j.source,
        })?;
        // On disk before the journal says so: a power loss must not leave
        // a "snapshotted" journal over a half-written snapshot.
        place::sync_fs(&dir.snapshot())?;
        j.nar_hash = Some(hash.clone());
        j.files = entries.len() as u64;
        j.bytes = bytes;
        j.advance(
            dir,
            Phase::Snapshotted,
            format!(
                "{} entries, {bytes} bytes, NAR hash sha256:{hash}",
                entries.len()
            ),
        )?;
        drop_identical_earlier_snapshots(dir, j, &hash)?;
    }
    if j.phase < Phase::Copied {
        let target = PathBuf::from(&j.target);
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent)?;
        }
        // Built beside the target, or inside it when it is a mount point:
        // on its file system either way, so it moves in by renames.
        let slot = Slot::new(&target)?;
        let staging = slot.staging();
        tree::remove_tree(&staging)?;
        let entries = dir.snapshot_entries()?;
        let mut progress = Progress::new(&format!("{}: copy", j.service), j.bytes);
        tree::copy_mapped(
            &dir.snapshot(),
            &staging,
            &entries,
            &m.path_map,
            j.uid,
            j.gid,
            &mut |n| progress.add(n),
        )?;
        progress.finish();
        for db in &m.databases {
            let mapped = tree::map_path(db, &m.path_map);
            for suffix in ["", "-wal", "-shm"] {
                let src = dir.snapshot().join(format!("{db}{suffix}"));
                let dst = staging.join(format!("{mapped}{suffix}"));
                if src.exists() && !dst.exists() {
                    bail!("{} did not arrive at {}", src.display(), dst.display());
                }
            }
        }
        place::sync_fs(&staging)?;
        // Swap the staging copy into place. Each change is journalled
        // before it is made, so a kill between any two lines leaves a state
        // that resume and rollback both understand.
        if !j.target_replaced {
            if !slot.is_empty()? {
                j.previous_target = Some(slot.aside("previous").display().to_string());
                dir.save(j)?;
                slot.move_aside("previous")?;
            }
            j.target_replaced = true;
            dir.save(j)?;
        }
        // From here the target is empty, absent, or an earlier copy of ours.
        slot.clear()?;
        slot.fill_from(&staging)?;
        j.advance(
            dir,
            Phase::Copied,
            format!("copied into {}", target.display()),
        )?;
    }
    if j.phase < Phase::ContainerStarted {
        run_job(sd, Verb::Start, &j.container_unit, ctx.timeout).await?;
        j.advance(
            dir,
            Phase::ContainerStarted,
            format!("started {}", j.container_unit),
        )?;
    }
    if j.phase < Phase::Done {
        if let Some(check) = check_of(f.stack, f.svc) {
            let what = f.svc.container.clone();
            let timeout = ctx.timeout;
            // The probe blocks; keep it off the D-Bus executor.
            std::thread::scope(|s| {
                s.spawn(|| health::wait_healthy(&check, timeout, &what, None))
                    .join()
                    .map_err(|_| anyhow::anyhow!("the probe thread panicked"))?
            })?;
        }
        j.advance(dir, Phase::Done, "healthy in its container")?;
    }
    Ok(())
}

/// Where a runtime mask has to live to win over the unit's own file:
/// systemd's runtime control directory comes first in the unit search path.
/// `systemctl mask --runtime` writes to /run/systemd/system instead, which
/// /etc/systemd/system shadows — and NixOS keeps every unit in /etc.
const RUNTIME_CONTROL: &str = "/run/systemd/system.control";

/// Mask (or unmask) the native unit until reboot: a /dev/null link in
/// [`RUNTIME_CONTROL`], then daemon-reload. Idempotent both ways.
async fn mask_legacy(sd: &Systemd, unit: &str, mask: bool) -> Result<()> {
    let link = Path::new(RUNTIME_CONTROL).join(unit);
    let ours = fs_err::read_link(&link).is_ok_and(|t| t == Path::new("/dev/null"));
    if mask {
        if !ours {
            if fs_err::symlink_metadata(&link).is_ok() {
                bail!(
                    "{} exists and is not a mask; remove it (or move it away) and migrate again",
                    link.display()
                );
            }
            fs_err::create_dir_all(RUNTIME_CONTROL)?;
            let tmp = link.with_file_name(format!(".{unit}.nixarr-migrate"));
            fs_err::remove_file(&tmp).ok();
            fs_err::os::unix::fs::symlink("/dev/null", &tmp)?;
            fs_err::rename(&tmp, &link)?;
        }
        sd.daemon_reload().await
    } else {
        if ours {
            fs_err::remove_file(&link)?;
        }
        // Also drops a mask in /run/systemd/system, as earlier versions
        // made; reloads.
        sd.mask_runtime(unit, false).await
    }
}

/// The services to act on, dependencies first (reversed for rollback).
pub fn order(ctx: &Ctx<'_>, services: &[String], all: bool, reverse: bool) -> Result<Vec<String>> {
    let (_, manifest) = ctx.at.load_manifest()?;
    let wanted: Vec<String> = if all {
        let mut v = Vec::new();
        for (_, name, svc) in manifest.services() {
            if svc.migration.is_some()
                && (!reverse || Dir::new(&ctx.journal_root, name)?.journal().exists())
            {
                v.push(name.clone());
            }
        }
        v
    } else {
        // Every name is checked before anything is built from it.
        for s in services {
            find(&manifest, s)?;
        }
        services.to_vec()
    };
    // A service after everything it depends on.
    let graph = Graph::new(
        manifest
            .services()
            .map(|(_, name, svc)| (name.as_str(), svc.depends_on.as_slice())),
    );
    let mut out = graph.order(&wanted).map_err(|cycle| {
        refuse(format!(
            "the manifest's services depend on each other in a cycle ({}); render the stack \
             again from a valid spec",
            cycle.join(" -> ")
        ))
    })?;
    if reverse {
        out.reverse();
    }
    Ok(out)
}

/// Undo a migration in any phase.
pub fn rollback(ctx: &Ctx<'_>, service: &str) -> Result<Done> {
    let dir = journal_dir(ctx, service)?;
    let _lock = dir.lock()?;
    let mut j = dir.load()?.ok_or_else(|| {
        refuse(format!(
            "no migration of {service} to roll back ({} has no journal)",
            dir.path.display()
        ))
    })?;
    if j.phase == Phase::RolledBack {
        return Ok(Done::new(
            service,
            format!("{service} is already rolled back"),
        ));
    }
    zbus::block_on(async {
        let sd = connect(ctx).await?;
        rollback_steps(&sd, ctx, &dir, &mut j).await
    })?;
    let message = format!(
        "{service} runs again as {} with its data unchanged (NAR hash verified); the snapshot \
         stays in {}{} until `nixarr-migrate finalize {service}`; `nixarr-migrate migrate \
         {service}` tries again",
        j.legacy_unit,
        dir.snapshot().display(),
        earlier_note(&dir)?
    );
    Ok(Done::new(service, message))
}

async fn rollback_steps(sd: &Systemd, ctx: &Ctx<'_>, dir: &Dir, j: &mut Journal) -> Result<()> {
    let from = j.phase;
    if from != Phase::RollingBack {
        j.advance(
            dir,
            Phase::RollingBack,
            format!("from phase {}", from.name()),
        )?;
    }
    // 1. The container goes away first.
    stop_unless_inactive(sd, &j.container_unit, ctx.timeout).await?;
    // 2. Its copy moves aside (kept until finalize); a target that was
    //    there before comes back.
    let target = PathBuf::from(&j.target);
    let slot = Slot::new(&target)?;
    tree::remove_tree(&slot.staging())?;
    if j.target_replaced && !j.copy_moved_aside {
        let copy = slot.aside("container-copy");
        // Journals of 0.1.0 could have moved it already (no flag then).
        if slot.mount || !copy.exists() {
            slot.move_aside("container-copy")?;
        }
        j.copy_moved_aside = true;
        dir.save(j)?;
    }
    if let Some(prev) = &j.previous_target
        && Path::new(prev).exists()
        && (slot.mount || !target.exists())
    {
        slot.fill_from(Path::new(prev))?;
    }
    // 3. The legacy data must be exactly what the snapshot holds.
    let source = PathBuf::from(&j.source);
    if let Some(expected) = j.nar_hash.clone() {
        let now = if source.exists() {
            Some(nar_hash(&source)?)
        } else {
            None
        };
        if now.as_deref() != Some(expected.as_str()) {
            tracing::warn!(
                "{}: the native data differs from the snapshot; restoring it",
                j.service
            );
            restore_source(dir, &source)?;
            let restored = nar_hash(&source)?;
            if restored != expected {
                bail!(
                    "the restored native data hashes to {restored}, not {expected}; the \
                     snapshot in {} is kept untouched — restore it by hand",
                    dir.snapshot().display()
                );
            }
        }
    }
    // 4. The legacy unit comes back (if it ran before).
    mask_legacy(sd, &j.legacy_unit, false).await?;
    if j.legacy_was_active {
        run_job(sd, Verb::Start, &j.legacy_unit, ctx.timeout).await?;
    }
    j.advance(
        dir,
        Phase::RolledBack,
        format!("{} runs again", j.legacy_unit),
    )?;
    Ok(())
}

/// Put the snapshot back in place of the native data directory, keeping
/// what was there (until finalize).
fn restore_source(dir: &Dir, source: &Path) -> Result<()> {
    let entries = dir.snapshot_entries()?;
    if let Some(parent) = source.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let slot = Slot::new(source)?;
    let staging = slot.staging();
    tree::remove_tree(&staging)?;
    tree::snapshot(&dir.snapshot(), &staging, &entries, &mut |_| {})?;
    place::sync_fs(&staging)?;
    if slot.mount {
        // The data that differs is kept in the journal directory (another
        // file system: a copy, complete before anything is removed).
        let kept = dir.path.join("native-before-restore");
        if !kept.exists() && !slot.is_empty()? {
            let partial = dir.path.join("native-before-restore.partial");
            tree::remove_tree(&partial)?;
            let mut now = tree::inventory(source)?;
            now.retain(|e| !place::is_ours(&e.path));
            tree::snapshot(source, &partial, &now, &mut |_| {})?;
            place::sync_fs(&partial)?;
            place::rename_durably(&partial, &kept)?;
        }
    } else {
        slot.move_aside("before-restore")?;
    }
    slot.clear()?;
    slot.fill_from(&staging)
}

/// Delete the snapshot and everything kept for rollback; only when asked.
pub fn finalize(ctx: &Ctx<'_>, service: &str) -> Result<Done> {
    let dir = journal_dir(ctx, service)?;
    let _lock = dir.lock()?;
    let j = dir
        .load()?
        .ok_or_else(|| refuse(format!("no migration of {service} to finalize")))?;
    if !matches!(j.phase, Phase::Done | Phase::RolledBack) {
        return Err(refuse(format!(
            "the migration of {service} is in phase {}; finish it with `migrate` or undo it with \
             `rollback` first",
            j.phase.name()
        )));
    }
    let target = PathBuf::from(&j.target);
    let source = PathBuf::from(&j.source);
    let mut kept = vec![dir.snapshot()];
    for (d, what) in [
        (&target, "previous"),
        (&target, "container-copy"),
        (&source, "before-restore"),
    ] {
        // Beside the directory, or inside it when it is a mount point.
        kept.push(beside(d, what));
        kept.push(
            Slot {
                path: d.clone(),
                mount: true,
            }
            .aside(what),
        );
    }
    kept.extend([
        dir.path.join("native-before-restore.partial"),
        // Where earlier versions kept them.
        dir.previous_target(),
        dir.rolled_back_copy(),
        dir.path.join("native-before-restore"),
    ]);
    kept.extend(j.previous_target.as_ref().map(PathBuf::from));
    for p in kept {
        tree::remove_tree(&p)?;
    }
    let earlier = dir.earlier_runs()?;
    for (_, e) in &earlier {
        for p in read_kept(e)? {
            tree::remove_tree(&p)?;
        }
        tree::remove_tree(e)?;
    }
    fs_err::remove_file(dir.snapshot_manifest()).ok();
    fs_err::remove_file(dir.journal())?;
    let message = if earlier.is_empty() {
        format!("{service}: snapshot and journal deleted")
    } else {
        format!(
            "{service}: snapshot and journal deleted, and those of {} earlier rolled-back \
             migration(s)",
            earlier.len()
        )
    };
    Ok(Done::new(service, message))
}

/// How a `migrate`, `rollback` or `finalize` of one service ended: the
/// service and what to tell the user.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub service: String,
    pub message: String,
}

impl Done {
    fn new(service: &str, message: String) -> Self {
        Done {
            service: service.to_owned(),
            message,
        }
    }
}

/// The journal directory of `service`, once the name is known: a service
/// of the manifest, or (for a service since removed from the spec) a
/// service name whose journal exists. Nothing is built from an unchecked
/// name (`../escaped` is refused here).
fn journal_dir(ctx: &Ctx<'_>, service: &str) -> Result<Dir> {
    let (_, manifest) = ctx.at.load_manifest()?;
    match find(&manifest, service) {
        Ok(f) => Dir::new(&ctx.journal_root, &f.name),
        Err(e) => {
            if journal::is_service_name(service) {
                let dir = Dir::new(&ctx.journal_root, service)?;
                if dir.journal().exists() {
                    tracing::warn!(
                        "{service} is not in the manifest any more; using its journal in {}",
                        dir.path.display()
                    );
                    return Ok(dir);
                }
            }
            Err(e)
        }
    }
}

/// `kept.json` of an earlier run: what it set aside beside the target and
/// the source.
fn read_kept(earlier: &Path) -> Result<Vec<PathBuf>> {
    match fs_err::read_to_string(earlier.join("kept.json")) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged", earlier.join("kept.json").display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// " (and N earlier snapshot(s) in …)" for the messages, or "".
fn earlier_note(dir: &Dir) -> Result<String> {
    let with_snapshot: Vec<String> = dir
        .earlier_runs()?
        .into_iter()
        .filter(|(_, p)| p.join("snapshot").exists())
        .map(|(_, p)| p.join("snapshot").display().to_string())
        .collect();
    Ok(if with_snapshot.is_empty() {
        String::new()
    } else {
        format!(
            " (and the snapshot of {} earlier rolled-back migration(s): {})",
            with_snapshot.len(),
            with_snapshot.join(", ")
        )
    })
}

/// Move the record of a completed rollback out of the way, so a new
/// migration starts from scratch without losing anything: what it set aside
/// beside the target and the source is renamed `<name>.earlier-N` (same
/// directory, same file system) and listed in `earlier-N/kept.json`; its
/// snapshot, snapshot.json and journal move into `earlier-N/`, the journal
/// last. Every step is a rename that is skipped once done, so a run killed
/// in the middle finishes the move the next time.
fn archive_rolled_back(dir: &Dir, j: &Journal) -> Result<PathBuf> {
    let runs = dir.earlier_runs()?;
    // An interrupted archive (no journal moved yet) is finished, not redone.
    let n = match runs.iter().find(|(_, p)| !p.join("journal.json").exists()) {
        Some((n, _)) => *n,
        None => runs.last().map_or(1, |(n, _)| n + 1),
    };
    let to = dir.earlier(n);
    fs_err::create_dir_all(&to)?;
    let suffix = format!(".earlier-{n}");
    let renamed = |p: &Path| -> PathBuf {
        let mut name = p.file_name().unwrap_or_default().to_os_string();
        name.push(&suffix);
        p.with_file_name(name)
    };
    let target = Slot::new(Path::new(&j.target))?;
    let source = Slot::new(Path::new(&j.source))?;
    let mut asides = vec![
        target.aside("previous"),
        target.aside("container-copy"),
        source.aside("before-restore"),
    ];
    asides.extend(j.previous_target.as_ref().map(PathBuf::from));
    asides.sort();
    asides.dedup();
    let mut kept = read_kept(&to)?;
    for a in &asides {
        let new = renamed(a);
        if fs_err::symlink_metadata(a).is_ok() && fs_err::symlink_metadata(&new).is_err() {
            if !kept.contains(&new) {
                kept.push(new.clone());
                write_atomic(
                    &to.join("kept.json"),
                    serde_json::to_string_pretty(&kept)?.as_bytes(),
                    0o600,
                )?;
            }
            place::rename_durably(a, &new)?;
        }
    }
    for name in [
        "snapshot",
        "snapshot.json",
        "native-before-restore",
        "container-copy",
        "previous-target",
        "journal.json",
    ] {
        let from = dir.path.join(name);
        if fs_err::symlink_metadata(&from).is_ok() {
            place::rename_durably(&from, &to.join(name))?;
        }
    }
    Ok(to)
}

/// After a new snapshot: an earlier run's snapshot with the same NAR hash
/// holds the same bytes, so this one replaces it (its journal and what it
/// set aside stay until finalize).
fn drop_identical_earlier_snapshots(dir: &Dir, j: &mut Journal, hash: &str) -> Result<()> {
    for (n, e) in dir.earlier_runs()? {
        let same = fs_err::read_to_string(e.join("journal.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Journal>(&t).ok())
            .is_some_and(|old| old.nar_hash.as_deref() == Some(hash));
        if same && e.join("snapshot").exists() {
            tree::remove_tree(&e.join("snapshot"))?;
            fs_err::remove_file(e.join("snapshot.json")).ok();
            j.advance(
                dir,
                Phase::Snapshotted,
                format!(
                    "the snapshot of earlier migration {n} had the same NAR hash; this one \
                     replaces it"
                ),
            )?;
        }
    }
    Ok(())
}

/// One row of `nixarr-migrate status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRow {
    pub service: String,
    pub legacy_unit: Option<String>,
    pub legacy_state: Option<String>,
    pub container_unit: String,
    pub container_state: String,
    pub legacy_data_dir: Option<String>,
    pub legacy_bytes: Option<u64>,
    pub target_dir: String,
    pub phase: Option<String>,
    pub conflicts: Vec<String>,
}

pub fn status(ctx: &Ctx<'_>) -> Result<Vec<StatusRow>> {
    let (_, manifest) = ctx.at.load_manifest()?;
    let rows = zbus::block_on(async {
        let sd = connect(ctx).await?;
        let mut rows = Vec::new();
        for (_, name, svc) in manifest.services() {
            let Some(m) = &svc.migration else { continue };
            let legacy = legacy_unit(&sd, svc).await.ok();
            let container = sd.unit_state(&svc.unit).await?;
            let source = resolve_source(svc).ok();
            let legacy_bytes = source
                .as_ref()
                .and_then(|s| tree::inventory(s).ok())
                .map(|e| tree::total_size(&e));
            let phase = Dir::new(&ctx.journal_root, name)
                .ok()
                .and_then(|d| d.load().ok())
                .flatten()
                .map(|j| j.phase.name().to_owned());
            let container_active = container.active_state == ActiveState::Active;
            let container_state = format!("{} ({})", container.active_state, container.load_state);
            let mut conflicts = Vec::new();
            if let Some((u, s)) = &legacy
                && s.active_state == ActiveState::Active
                && container_active
            {
                conflicts.push(format!("{u} and {} are both running", svc.unit));
            }
            if let Some((u, s)) = &legacy
                && s.active_state == ActiveState::Active
            {
                let ports: Vec<String> = svc.ports.iter().map(|p| p.host.to_string()).collect();
                if !ports.is_empty() && !container_active {
                    conflicts.push(format!(
                        "{u} holds port(s) {} the container needs until migrated",
                        ports.join(",")
                    ));
                }
            }
            rows.push(StatusRow {
                service: name.clone(),
                legacy_unit: legacy.as_ref().map(|(u, _)| u.clone()),
                legacy_state: legacy.as_ref().map(|(_, s)| s.active_state.to_string()),
                container_unit: svc.unit.clone(),
                container_state,
                legacy_data_dir: source.map(|s| s.display().to_string()),
                legacy_bytes,
                target_dir: m.target_dir.clone(),
                phase,
                conflicts,
            });
        }
        Ok::<_, anyhow::Error>(rows)
    })?;
    Ok(rows)
}

/// `migration status` as a table for people.
pub fn status_table(rows: &[StatusRow]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING).set_header([
        "SERVICE",
        "NATIVE UNIT",
        "NATIVE",
        "CONTAINER",
        "DATA",
        "SIZE",
        "TARGET",
        "PHASE",
        "CONFLICTS",
    ]);
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for r in rows.iter().cloned() {
        t.add_row([
            r.service,
            r.legacy_unit.unwrap_or_else(|| "-".into()),
            r.legacy_state.unwrap_or_else(|| "not found".into()),
            r.container_state,
            r.legacy_data_dir.unwrap_or_else(|| "-".into()),
            r.legacy_bytes
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into()),
            r.target_dir,
            r.phase.unwrap_or_else(|| "-".into()),
            if r.conflicts.is_empty() {
                "-".into()
            } else {
                r.conflicts.join("; ")
            },
        ]);
    }
    t.to_string()
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(t: &Path, phase: Phase, hash: &str) -> Journal {
        Journal {
            version: 1,
            service: "sonarr".into(),
            phase,
            legacy_unit: "sonarr.service".into(),
            container_unit: "nixarr-sonarr.service".into(),
            source: t.join("native").display().to_string(),
            target: t.join("target").display().to_string(),
            uid: 0,
            gid: 0,
            nar_hash: Some(hash.into()),
            files: 1,
            bytes: 1,
            previous_target: None,
            target_replaced: true,
            legacy_was_active: true,
            copy_moved_aside: true,
            history: Vec::new(),
        }
    }

    #[test]
    fn journal_dirs_only_for_service_names() {
        let t = tempfile::tempdir().unwrap();
        for bad in ["../escaped", "a/b", "", ".", "Sonarr", "-x"] {
            let e = Dir::new(t.path(), bad).err().map(|e| e.to_string());
            assert!(
                e.as_deref()
                    .is_some_and(|e| e.contains("is not a service name")),
                "{bad}: {e:?}"
            );
        }
        assert!(Dir::new(t.path(), "sonarr-4k").is_ok());
    }

    /// A completed rollback's record moves out of the way (snapshot and
    /// journal into earlier-1/, what it set aside renamed beside), a second
    /// one goes to earlier-2/, an interrupted move is finished, and an
    /// identical new snapshot replaces the earlier one.
    #[test]
    fn a_rolled_back_migration_is_kept_when_trying_again() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::new(&t.path().join("journals"), "sonarr").unwrap();
        let j = journal(t.path(), Phase::RolledBack, "hash-a");
        dir.save(&j).unwrap();
        std::fs::create_dir_all(dir.snapshot()).unwrap();
        std::fs::write(dir.snapshot().join("config.xml"), "a").unwrap();
        std::fs::write(dir.snapshot_manifest(), "{}").unwrap();
        let copy = beside(&t.path().join("target"), "container-copy");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::write(copy.join("sonarr.db"), "changed in the container").unwrap();

        let kept = archive_rolled_back(&dir, &j).unwrap();
        assert_eq!(kept, dir.earlier(1));
        assert!(!dir.journal().exists() && !dir.snapshot().exists());
        assert_eq!(
            std::fs::read_to_string(kept.join("snapshot/config.xml")).unwrap(),
            "a"
        );
        assert!(kept.join("journal.json").exists());
        let renamed = copy.with_file_name(format!(
            "{}.earlier-1",
            copy.file_name().unwrap().to_string_lossy()
        ));
        assert!(!copy.exists());
        assert_eq!(
            std::fs::read_to_string(renamed.join("sonarr.db")).unwrap(),
            "changed in the container"
        );
        assert_eq!(read_kept(&kept).unwrap(), vec![renamed.clone()]);
        assert!(earlier_note(&dir).unwrap().contains("earlier-1/snapshot"));

        // A second rollback, interrupted after the snapshot moved: the next
        // try finishes the move into the same earlier-2.
        let j2 = journal(t.path(), Phase::RolledBack, "hash-b");
        dir.save(&j2).unwrap();
        std::fs::create_dir_all(dir.snapshot()).unwrap();
        std::fs::create_dir_all(dir.earlier(2)).unwrap();
        std::fs::rename(dir.snapshot(), dir.earlier(2).join("snapshot")).unwrap();
        assert_eq!(archive_rolled_back(&dir, &j2).unwrap(), dir.earlier(2));
        assert!(dir.earlier(2).join("journal.json").exists());
        assert!(!dir.journal().exists());

        // The new run's snapshot hashes like the first: that one goes, the
        // second (another hash) stays.
        let mut j3 = journal(t.path(), Phase::Snapshotted, "hash-a");
        drop_identical_earlier_snapshots(&dir, &mut j3, "hash-a").unwrap();
        assert!(!dir.earlier(1).join("snapshot").exists());
        assert!(dir.earlier(1).join("journal.json").exists());
        assert!(dir.earlier(2).join("snapshot").exists());
        assert!(j3.history.iter().any(|h| h.contains("same NAR hash")));
    }
}
