//! The migration journal: one JSON file per service under
//! /var/lib/nixarr-units/migrations/<service>/, written atomically (temp
//! file, fsync, rename, fsync the directory) before each step, so a
//! migration killed anywhere resumes or rolls back from what it says. A
//! lock file keeps two migrations of one service apart.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::tree::Entry;
use crate::output::write_atomic;

pub const JOURNAL_ROOT: &str = "/var/lib/nixarr-units/migrations";

/// How far a migration got. Each step is idempotent: a step recorded as
/// begun but not finished is simply done again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Preflight passed; nothing changed yet.
    Planned,
    /// The legacy unit is stopped and runtime-masked.
    LegacyStopped,
    /// The snapshot and its manifest (with the NAR hash) are complete.
    Snapshotted,
    /// The container's config directory holds the copy.
    Copied,
    /// The container unit started.
    ContainerStarted,
    /// The container answered its health probe: done.
    Done,
    /// Rollback begun.
    RollingBack,
    /// The legacy unit runs again with its data as it was.
    RolledBack,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Planned => "planned",
            Phase::LegacyStopped => "legacy-stopped",
            Phase::Snapshotted => "snapshotted",
            Phase::Copied => "copied",
            Phase::ContainerStarted => "container-started",
            Phase::Done => "done",
            Phase::RollingBack => "rolling-back",
            Phase::RolledBack => "rolled-back",
        }
    }
}

/// Everything a resumed run needs, fixed at the first run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    pub version: u32,
    pub service: String,
    pub phase: Phase,
    pub legacy_unit: String,
    pub container_unit: String,
    /// The native data directory (symlinks resolved, e.g. DynamicUser's
    /// /var/lib/private/<name>).
    pub source: String,
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    /// NAR hash of the source, as `nix-hash --type sha256 --base32` prints.
    pub nar_hash: Option<String>,
    pub files: u64,
    pub bytes: u64,
    /// A non-empty target moved aside (with --force), restored on rollback.
    pub previous_target: Option<String>,
    /// From here on the target holds our copy (or is empty): rollback moves
    /// it aside, resume replaces it.
    pub target_replaced: bool,
    /// Whether the native unit ran when the migration began (rollback
    /// starts it again only then).
    pub legacy_was_active: bool,
    /// Rollback has moved the container's copy out of the target (the
    /// target's contents are from before the migration from here on).
    #[serde(default)]
    pub copy_moved_aside: bool,
    /// Append-only log of what happened, for `status` and post-mortems.
    pub history: Vec<String>,
}

/// snapshot.json: what the snapshot holds, for the copy and for a restore.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotManifest<'a> {
    pub entries: &'a [Entry],
    pub nar_hash: &'a str,
    pub source: &'a str,
}

/// The part of snapshot.json a run reads back.
#[derive(Deserialize)]
struct SnapshotEntries {
    entries: Vec<Entry>,
}

pub struct Dir {
    pub path: PathBuf,
}

/// Whether `name` can be a service's directory name: a service name as the
/// spec allows it (`[a-z][a-z0-9-]*`), so it never climbs out of the root.
pub fn is_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Dir {
    /// The directory of one service's migration. The name must be a service
    /// name (the callers check it against the manifest first); anything else
    /// is refused before a path is built from it.
    pub fn new(root: &Path, service: &str) -> Result<Self> {
        if !is_service_name(service) {
            return Err(crate::error::UsageError(format!(
                "`{service}` is not a service name (lowercase letters, digits and `-`)"
            ))
            .into());
        }
        Ok(Dir {
            path: root.join(service),
        })
    }

    /// Where the record of the `n`th earlier, rolled-back migration is kept
    /// until finalize (its snapshot, snapshot.json, journal.json, and
    /// kept.json listing what it set aside elsewhere).
    pub fn earlier(&self, n: u32) -> PathBuf {
        self.path.join(format!("earlier-{n}"))
    }

    /// The earlier migrations kept, oldest first: (number, directory).
    pub fn earlier_runs(&self) -> Result<Vec<(u32, PathBuf)>> {
        let mut out = Vec::new();
        for entry in super::place::read_dir_if_exists(&self.path)? {
            let name = entry.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("earlier-"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                out.push((n, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }
    pub fn journal(&self) -> PathBuf {
        self.path.join("journal.json")
    }
    pub fn snapshot(&self) -> PathBuf {
        self.path.join("snapshot")
    }
    pub fn snapshot_manifest(&self) -> PathBuf {
        self.path.join("snapshot.json")
    }
    /// Where versions before 0.1.1 moved a non-empty target aside with
    /// --force (now beside the target, so the rename stays on one file
    /// system); finalize still cleans it.
    pub fn previous_target(&self) -> PathBuf {
        self.path.join("previous-target")
    }
    /// Where earlier versions moved the container's copy on rollback (now
    /// beside the target); finalize still cleans it.
    pub fn rolled_back_copy(&self) -> PathBuf {
        self.path.join("container-copy")
    }

    pub fn load(&self) -> Result<Option<Journal>> {
        match fs_err::read_to_string(self.journal()) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is damaged; inspect it, then remove it to start over",
                    self.journal().display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn save(&self, j: &Journal) -> Result<()> {
        fs_err::create_dir_all(&self.path)?;
        let mut text = serde_json::to_string_pretty(j)?;
        text.push('\n');
        write_atomic(&self.journal(), text.as_bytes(), 0o600)
    }

    pub fn save_snapshot_manifest(&self, m: &SnapshotManifest<'_>) -> Result<()> {
        let mut text = serde_json::to_string_pretty(m)?;
        text.push('\n');
        write_atomic(&self.snapshot_manifest(), text.as_bytes(), 0o600)
    }

    /// The snapshot's entries, as its manifest lists them.
    pub fn snapshot_entries(&self) -> Result<Vec<Entry>> {
        let text = fs_err::read_to_string(self.snapshot_manifest())?;
        let m: SnapshotEntries = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged; roll back by hand from {}",
                self.snapshot_manifest().display(),
                self.snapshot().display()
            )
        })?;
        Ok(m.entries)
    }

    /// Hold the service's lock for as long as the returned file lives.
    pub fn lock(&self) -> Result<std::fs::File> {
        fs_err::create_dir_all(&self.path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.join("lock"))
            .with_context(|| format!("opening the lock in {}", self.path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(crate::error::UsageError(format!(
                "another nixarr-migrate is working on this service (it holds {}); wait for it \
                 to finish (see `nixarr-migrate status`)",
                self.path.join("lock").display()
            ))
            .into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

/// A journal's line of history: `<time> <phase>: <note>`, logged too.
pub fn history_entry(service: &str, phase: &str, note: &str) -> String {
    tracing::info!("{service}: {phase} — {note}");
    format!(
        "{} {phase}: {note}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    )
}

impl Journal {
    /// Record a phase (and a line of history) durably before going on.
    pub fn advance(&mut self, dir: &Dir, phase: Phase, note: impl Into<String>) -> Result<()> {
        self.phase = phase;
        self.history
            .push(history_entry(&self.service, phase.name(), &note.into()));
        dir.save(self)
    }
}
