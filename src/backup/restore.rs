//! `nixarr-units restore SERVICE --from DIR/<service>/<timestamp>`: put a
//! backup back while the app is stopped, start it, and keep the data it
//! replaced until `--finalize` — or put that data back by itself when the
//! app does not turn healthy.
//!
//! The journal and the directory swap are the migration's
//! ([`crate::migrate::journal`], [`crate::migrate::place`]): the journal is
//! written before each step, the current data is moved aside by renames
//! (entry by entry when the directory is a mount point), and the copy is
//! built on the same file system and renamed in. A restore killed anywhere
//! is completed by running it again, or undone with `--rollback`; either
//! way the data it replaced comes back byte for byte (checked against its
//! NAR hash).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{BackupManifest, DATA, covers, is_database_file, verify};
use crate::error::UsageError;
use crate::health;
use crate::manifest::{Manifest, ServiceManifest, StackManifest};
use crate::migrate::journal::{Dir, history_entry};
use crate::migrate::place::{self, Slot};
use crate::migrate::tree::{self, Entry};
use crate::migrate::{check_of, run_job, stop_unless_inactive};
use crate::nixfmt::nar_hash;
use crate::output::write_atomic;
use crate::systemd::{ActiveState, LoadState, Systemd, Verb};

const JOURNAL: &str = "restore.json";
/// Where the data a restore replaced is kept (beside the directory, or
/// inside it when it is a mount point).
const ASIDE: &str = "before-restore";
/// Where a rollback moves the restored copy before dropping it.
const FAILED: &str = "restore-failed";

/// How far a restore got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The backup matches its manifest.
    Verified,
    /// The service is stopped.
    Stopped,
    /// The backup's data is in the directory; what was there is aside.
    Placed,
    /// The service was started.
    Started,
    /// It turned healthy: done (the replaced data stays until --finalize).
    Done,
    RollingBack,
    /// The replaced data is back (and the service runs again if it ran).
    RolledBack,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Verified => "verified",
            Phase::Stopped => "stopped",
            Phase::Placed => "placed",
            Phase::Started => "started",
            Phase::Done => "done",
            Phase::RollingBack => "rolling-back",
            Phase::RolledBack => "rolled-back",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    pub version: u32,
    pub service: String,
    pub phase: Phase,
    pub unit: String,
    /// The backup restored.
    pub from: String,
    /// The directory restored into.
    pub target: String,
    pub was_active: bool,
    /// NAR hash of the directory before the restore (not for a mount
    /// point, which holds our own entries while we work).
    pub previous_nar_hash: Option<String>,
    /// Moving the current data aside has begun (a kill may leave part of
    /// it moved when the directory is a mount point).
    pub aside_begun: bool,
    /// The current data is all aside: from here the directory holds the
    /// restored copy, part of it, or nothing.
    pub moved_aside: bool,
    /// Rollback has moved the restored copy out of the directory.
    pub restored_moved_aside: bool,
    pub history: Vec<String>,
}

impl Journal {
    fn advance(&mut self, dir: &Dir, phase: Phase, note: impl Into<String>) -> Result<()> {
        self.phase = phase;
        self.history.push(history_entry(
            &self.service,
            &format!("restore {}", phase.name()),
            &note.into(),
        ));
        save(dir, self)
    }
}

fn save(dir: &Dir, j: &Journal) -> Result<()> {
    let mut text = serde_json::to_string_pretty(j)?;
    text.push('\n');
    write_atomic(&dir.path.join(JOURNAL), text.as_bytes(), 0o600)
}

fn load(dir: &Dir) -> Result<Option<Journal>> {
    let p = dir.path.join(JOURNAL);
    match fs_err::read_to_string(&p) {
        Ok(t) => Ok(Some(serde_json::from_str(&t).with_context(|| {
            format!(
                "{} is damaged; inspect it, then remove it to start over",
                p.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What to do.
pub enum Action {
    Restore { from: PathBuf },
    Rollback,
    Finalize,
}

/// Where things are, and how long to wait.
pub struct Options {
    pub journal_root: PathBuf,
    pub timeout: Duration,
}

fn refuse(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

fn find<'a>(
    manifest: &'a Manifest,
    service: &str,
) -> Result<(&'a StackManifest, &'a ServiceManifest)> {
    let selected = crate::control::select(manifest, std::slice::from_ref(&service.to_owned()))?;
    let [(i, name)] = selected.as_slice() else {
        return Err(refuse(format!(
            "`{service}` exists in several stacks; restore it by a unique name"
        )));
    };
    let stack = manifest.stacks.get(*i).context("stack index")?;
    let svc = stack.services.get(name).context("service name")?;
    Ok((stack, svc))
}

/// Run `action` for `service`; returns the message to print.
pub fn run(
    manifest: &Manifest,
    bus_address: Option<&str>,
    service: &str,
    action: Action,
    opts: &Options,
) -> Result<String> {
    let (stack, svc) = find(manifest, service)?;
    let dir = Dir::new(&opts.journal_root, service)?;
    let _lock = dir.lock()?;
    let journal = load(&dir)?;
    match action {
        Action::Finalize => finalize(&dir, journal, service),
        Action::Rollback => {
            let mut j =
                journal.ok_or_else(|| refuse(format!("no restore of {service} to roll back")))?;
            zbus::block_on(async {
                let sd = Systemd::connect(bus_address).await?;
                rollback(&sd, &dir, &mut j, opts).await
            })?;
            Ok(format!(
                "{service}: rolled back; its data is as before the restore"
            ))
        }
        Action::Restore { from } => zbus::block_on(restore(
            bus_address,
            stack,
            svc,
            service,
            &dir,
            journal,
            &from,
            opts,
        )),
    }
}

fn finalize(dir: &Dir, journal: Option<Journal>, service: &str) -> Result<String> {
    let j = journal.ok_or_else(|| refuse(format!("no restore of {service} to finalize")))?;
    if !matches!(j.phase, Phase::Done | Phase::RolledBack) {
        return Err(refuse(format!(
            "the restore of {service} is unfinished (phase {}); run `nixarr-units restore \
             {service} --from {}` to complete it or `--rollback` to undo it first",
            j.phase.name(),
            j.from
        )));
    }
    let slot = Slot::new(Path::new(&j.target))?;
    tree::remove_tree(&slot.aside(ASIDE))?;
    tree::remove_tree(&slot.aside(FAILED))?;
    fs_err::remove_file(dir.path.join(JOURNAL))?;
    Ok(format!(
        "{service}: the data the restore replaced ({}) is deleted",
        slot.aside(ASIDE).display()
    ))
}

/// The entries of the current data that the backup does not cover
/// (excluded, or outside its paths): they stay as they are.
fn carried(facts: &crate::model::BackupFacts, current: &Path) -> Result<Vec<Entry>> {
    if !current.is_dir() {
        return Ok(Vec::new());
    }
    Ok(tree::inventory(current)?
        .into_iter()
        .filter(|e| {
            !e.path.is_empty()
                && !place::is_ours(&e.path)
                && !covers(facts, &e.path)
                && !is_database_file(&e.path, &facts.databases)
        })
        .collect())
}

// One function for the forward path: each step is guarded by the
// journal's phase, and reads best top to bottom.
#[allow(clippy::too_many_arguments)]
async fn restore(
    bus_address: Option<&str>,
    stack: &StackManifest,
    svc: &ServiceManifest,
    service: &str,
    dir: &Dir,
    journal: Option<Journal>,
    from: &Path,
    opts: &Options,
) -> Result<String> {
    let from = fs_err::canonicalize(from).map_err(|e| {
        refuse(format!(
            "{e}; give a backup directory DIR/<service>/<timestamp>"
        ))
    })?;
    let m = verify(&from).map_err(|e| refuse(format!("{e:#}")))?;
    if m.service != service {
        return Err(refuse(format!(
            "{} is a backup of {}, not of {service}",
            from.display(),
            m.service
        )));
    }
    let sd = Systemd::connect(bus_address).await?;
    let mut j = match journal {
        Some(j) if j.phase == Phase::RolledBack => {
            fs_err::remove_file(dir.path.join(JOURNAL))?;
            new_journal(&sd, svc, service, &from, &m).await?
        }
        Some(j) if j.phase == Phase::Done => {
            return Err(refuse(format!(
                "an earlier restore of {service} keeps the data it replaced; run \
                 `nixarr-units restore {service} --finalize` to delete it (or `--rollback` to \
                 go back to it) first"
            )));
        }
        Some(mut j) if j.phase == Phase::RollingBack => {
            rollback(&sd, dir, &mut j, opts).await?;
            return Err(refuse(format!(
                "an interrupted rollback of {service} was completed; run the restore again"
            )));
        }
        Some(j) => {
            if Path::new(&j.from) != from {
                return Err(refuse(format!(
                    "an interrupted restore of {service} from {} is in progress; run it again \
                     with --from {} to complete it, or --rollback",
                    j.from, j.from
                )));
            }
            tracing::info!(
                "{service}: resuming the restore from phase {}",
                j.phase.name()
            );
            j
        }
        None => new_journal(&sd, svc, service, &from, &m).await?,
    };
    if j.phase < Phase::Verified {
        j.advance(
            dir,
            Phase::Verified,
            format!("{} matches its manifest", from.display()),
        )?;
    }
    let result = forward(&sd, stack, svc, dir, &mut j, &from, &m, opts).await;
    if let Err(e) = result {
        if j.aside_begun {
            tracing::error!("{service}: {e:#}; rolling back");
            rollback(&sd, dir, &mut j, opts)
                .await
                .with_context(|| format!("after: {e:#}"))?;
            bail!("{service}: the restore failed and was rolled back: {e:#}");
        }
        return Err(e.context(format!(
            "{service}: the restore stopped in phase {}; its data is unchanged. Run the same \
             command again to complete it, or `nixarr-units restore {service} --rollback`",
            j.phase.name()
        )));
    }
    Ok(format!(
        "{service}: restored from {} and healthy; the data it replaced is kept in {} until \
         `nixarr-units restore {service} --finalize` (or `--rollback` to go back to it)",
        from.display(),
        Slot::new(Path::new(&j.target))?.aside(ASIDE).display()
    ))
}

async fn new_journal(
    sd: &Systemd,
    svc: &ServiceManifest,
    service: &str,
    from: &Path,
    m: &BackupManifest,
) -> Result<Journal> {
    let target = svc
        .backup
        .as_ref()
        .map(|b| b.root.clone())
        .unwrap_or_else(|| m.facts.root.clone());
    if target != m.facts.root {
        tracing::warn!(
            "{service}: the backup is of {}, restoring into {target} (the service's directory now)",
            m.facts.root
        );
    }
    let slot = Slot::new(Path::new(&target))?;
    for what in [ASIDE, FAILED] {
        if fs_err::symlink_metadata(slot.aside(what)).is_ok() {
            return Err(refuse(format!(
                "{} is in the way (left by an earlier restore); move it away or delete it, \
                 then restore again",
                slot.aside(what).display()
            )));
        }
    }
    let state = sd.unit_state(&svc.unit).await?;
    if state.load_state != LoadState::Loaded {
        return Err(refuse(format!(
            "the unit {} is not loaded; install the stack (or daemon-reload) before restoring",
            svc.unit
        )));
    }
    Ok(Journal {
        version: 1,
        service: service.to_owned(),
        phase: Phase::Verified,
        unit: svc.unit.clone(),
        from: from.display().to_string(),
        target,
        was_active: !matches!(
            state.active_state,
            ActiveState::Inactive | ActiveState::Failed
        ),
        previous_nar_hash: None,
        aside_begun: false,
        moved_aside: false,
        restored_moved_aside: false,
        history: Vec::new(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    sd: &Systemd,
    stack: &StackManifest,
    svc: &ServiceManifest,
    dir: &Dir,
    j: &mut Journal,
    from: &Path,
    m: &BackupManifest,
    opts: &Options,
) -> Result<()> {
    let target = PathBuf::from(&j.target);
    let slot = Slot::new(&target)?;
    if j.phase < Phase::Stopped {
        run_job(sd, Verb::Stop, &j.unit, opts.timeout).await?;
        if !slot.mount && target.exists() {
            j.previous_nar_hash = Some(nar_hash(&target)?);
        }
        j.advance(dir, Phase::Stopped, format!("stopped {}", j.unit))?;
    }
    if j.phase < Phase::Placed {
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent)?;
        }
        if !j.moved_aside {
            // Recorded first: from the move on, rollback knows where the
            // data is.
            j.aside_begun = true;
            save(dir, j)?;
            slot.move_aside(ASIDE)?;
            j.moved_aside = true;
            save(dir, j)?;
        }
        // Built on the directory's file system, then renamed in.
        let staging = slot.staging();
        tree::remove_tree(&staging)?;
        let data = from.join(DATA);
        let entries = tree::inventory(&data)?;
        tree::snapshot(&data, &staging, &entries, &mut |_| {})?;
        let aside = slot.aside(ASIDE);
        let keep = carried(&m.facts, &aside)?;
        tree::snapshot(&aside, &staging, &keep, &mut |_| {})?;
        place::sync_fs(&staging)?;
        // The directory holds nothing or a part of our copy: replaced.
        slot.clear()?;
        slot.fill_from(&staging)?;
        j.advance(
            dir,
            Phase::Placed,
            format!(
                "{} entries from the backup, {} kept from the current data",
                entries.len(),
                keep.len()
            ),
        )?;
    }
    if j.phase < Phase::Started {
        run_job(sd, Verb::Start, &j.unit, opts.timeout).await?;
        j.advance(dir, Phase::Started, format!("started {}", j.unit))?;
    }
    if j.phase < Phase::Done {
        if let Some(check) = check_of(stack, svc) {
            let (what, timeout) = (svc.container.clone(), opts.timeout);
            // The probe blocks; keep it off the D-Bus executor.
            std::thread::scope(|s| {
                s.spawn(|| health::wait_healthy(&check, timeout, &what, None))
                    .join()
                    .map_err(|_| anyhow::anyhow!("the probe thread panicked"))?
            })?;
        }
        j.advance(dir, Phase::Done, "healthy")?;
    }
    Ok(())
}

/// Put the data the restore replaced back, and the service as it was.
async fn rollback(sd: &Systemd, dir: &Dir, j: &mut Journal, opts: &Options) -> Result<()> {
    if j.phase == Phase::RolledBack {
        return Ok(());
    }
    if j.phase == Phase::Done || j.phase < Phase::RollingBack {
        let from = j.phase;
        j.advance(
            dir,
            Phase::RollingBack,
            format!("from phase {}", from.name()),
        )?;
    }
    stop_unless_inactive(sd, &j.unit, opts.timeout).await?;
    let target = PathBuf::from(&j.target);
    let slot = Slot::new(&target)?;
    tree::remove_tree(&slot.staging())?;
    if j.aside_begun && !j.moved_aside {
        // Killed while moving the data aside: finish the move, so that the
        // directory holds none of it when it is cleared below.
        slot.move_aside(ASIDE)?;
        j.moved_aside = true;
        save(dir, j)?;
    }
    if j.moved_aside {
        if !j.restored_moved_aside {
            tree::remove_tree(&slot.aside(FAILED))?;
            slot.move_aside(FAILED)?;
            j.restored_moved_aside = true;
            save(dir, j)?;
        }
        let aside = slot.aside(ASIDE);
        if fs_err::symlink_metadata(&aside).is_ok() {
            slot.fill_from(&aside)?;
        }
        tree::remove_tree(&slot.aside(FAILED))?;
    }
    if let Some(want) = &j.previous_nar_hash {
        let now = nar_hash(&target)?;
        if &now != want {
            bail!(
                "after the rollback {} hashes to {now}, not {want} as before the restore; \
                 look at it before starting {}",
                target.display(),
                j.unit
            );
        }
    }
    if j.was_active {
        run_job(sd, Verb::Start, &j.unit, opts.timeout).await?;
    }
    j.advance(dir, Phase::RolledBack, "the replaced data is back")?;
    Ok(())
}
