//! Consistent backups of running apps, and restores that roll themselves
//! back.
//!
//! A backup of a service is a directory `DIR/<service>/<timestamp>/` with
//! `data/` (the app's directory as it was: owners, modes and times kept;
//! each SQLite database copied with SQLite's online backup API while the
//! app writes, see [`sqlite`]) and `manifest.json` (every file's size and
//! sha256, the app, the image it ran, each database's `integrity_check`).
//! It is built in `.<timestamp>.partial` beside and renamed into place
//! when complete, so a backup directory without `.partial` is whole.

pub mod restore;
pub mod run;
pub mod sqlite;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::migrate::place;
use crate::migrate::tree::{self, Entry, Kind};
use crate::model::BackupFacts;
use crate::output::write_atomic;

pub const MANIFEST: &str = "manifest.json";
pub const DATA: &str = "data";

/// How the databases were copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// While the app ran (the online backup API).
    Online,
    /// The app was stopped for the copy and started again (`--allow-stop`).
    Stopped,
    /// The app was not running.
    Offline,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Online => "online",
            Method::Stopped => "stopped",
            Method::Offline => "offline",
        }
    }
}

/// One database of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbRecord {
    pub path: String,
    pub pages: u64,
    /// `PRAGMA integrity_check` of the copy ("ok").
    pub integrity_check: String,
}

/// One entry of `data/`, with the sha256 of a regular file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRecord {
    #[serde(flatten)]
    pub entry: Entry,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `manifest.json` of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupManifest {
    pub version: u32,
    pub service: String,
    pub app: Option<String>,
    /// The image reference of the service.
    pub image: String,
    /// The image the container ran (`sha256:…`), when it ran.
    pub image_id: Option<String>,
    /// Its registry digest, when the engine knows one.
    pub image_digest: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    /// What was backed up: the host directory (`root`), its databases, and
    /// which paths (a restore keeps the current files outside them).
    pub facts: BackupFacts,
    pub method: Method,
    pub databases: Vec<DbRecord>,
    /// Declared databases that did not exist (not created by the app yet).
    #[serde(default)]
    pub missing_databases: Vec<String>,
    pub files: Vec<FileRecord>,
}

/// What a backup is of: the service and the image it runs.
#[derive(Debug, Clone)]
pub struct Subject {
    pub service: String,
    pub app: Option<String>,
    pub image: String,
    pub image_id: Option<String>,
    pub image_digest: Option<String>,
    pub facts: BackupFacts,
}

/// `20261201T113323Z`: sortable, no `:` (awkward in some tools' paths).
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(['-', ':'], "")
}

/// Whether a directory name is one of ours: a timestamp, maybe with `-N`.
fn is_backup_name(name: &str) -> bool {
    let base = name.split_once('-').map_or(name, |(b, _)| b);
    base.len() == 16
        && base.ends_with('Z')
        && base.as_bytes().get(8) == Some(&b'T')
        && base
            .chars()
            .enumerate()
            .all(|(i, c)| i == 8 || i == 15 || c.is_ascii_digit())
}

/// Whether `rel` is `p` or below it.
fn under(rel: &str, p: &str) -> bool {
    let p = p.trim_end_matches('/');
    rel == p || rel.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
}

/// Whether `rel` is a database, or one of its side files: they are copied
/// through SQLite, never as files.
pub(crate) fn is_database_file(rel: &str, databases: &[String]) -> bool {
    databases.iter().any(|d| {
        rel == d
            || ["-wal", "-shm", "-journal"]
                .iter()
                .any(|s| rel.strip_suffix(s) == Some(d.as_str()))
    })
}

/// Whether the backup covers `rel` (a path relative to the root).
pub fn covers(facts: &BackupFacts, rel: &str) -> bool {
    if rel.is_empty() {
        return true;
    }
    if facts.exclude.iter().any(|x| under(rel, x)) {
        return false;
    }
    facts.paths.is_empty() || facts.paths.iter().any(|p| under(rel, p) || under(p, rel))
}

/// The entries of the root to copy as files: covered, not a database.
/// Directories above a chosen path are kept (they hold it).
fn file_entries(facts: &BackupFacts, entries: Vec<Entry>) -> Vec<Entry> {
    entries
        .into_iter()
        .filter(|e| covers(facts, &e.path) && !is_database_file(&e.path, &facts.databases))
        .collect()
}

/// The sha256 of a file's bytes, in hex.
pub fn sha256_file(p: &Path) -> Result<String> {
    let mut f = fs_err::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Every entry of `data` with its files' sha256.
fn records(data: &Path) -> Result<Vec<FileRecord>> {
    tree::inventory(data)?
        .into_iter()
        .map(|entry| {
            let sha256 = match entry.kind {
                Kind::File => Some(sha256_file(&data.join(&entry.path))?),
                _ => None,
            };
            Ok(FileRecord { entry, sha256 })
        })
        .collect()
}

/// The service's backup directory, `DIR/<service>`, locked for as long as
/// the returned file lives.
pub struct ServiceDir {
    pub path: PathBuf,
    _lock: std::fs::File,
}

impl ServiceDir {
    pub fn open(dir: &Path, service: &str) -> Result<ServiceDir> {
        if !crate::migrate::journal::is_service_name(service) {
            bail!("`{service}` is not a service name");
        }
        let path = dir.join(service);
        // Backups hold API keys and passwords: only root may look (an
        // existing directory keeps its mode, as its owner set it).
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(".lock"))
            .with_context(|| format!("opening the lock in {}", path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another backup of {service} is running (it holds {}); wait for it to finish",
                path.join(".lock").display()
            ),
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        Ok(ServiceDir { path, _lock: lock })
    }

    /// Complete backups, oldest first.
    pub fn backups(&self) -> Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = place::read_dir_if_exists(&self.path)?
            .into_iter()
            .filter(|e| {
                e.file_name().to_str().is_some_and(is_backup_name)
                    && e.path().join(MANIFEST).is_file()
            })
            .map(|e| e.path())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Remove what killed runs left (`.NAME.partial`).
    fn clean_partial(&self) -> Result<()> {
        for e in place::read_dir_if_exists(&self.path)? {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".partial") {
                tree::remove_tree(&e.path())?;
            }
        }
        Ok(())
    }

    /// Keep the newest `keep` backups; returns those removed.
    pub fn prune(&self, keep: usize) -> Result<Vec<PathBuf>> {
        let all = self.backups()?;
        let drop = all.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for old in all.into_iter().take(drop) {
            // Renamed first: a kill mid-removal leaves a `.partial`, not a
            // damaged backup that looks whole.
            let name = old.file_name().map(|n| n.to_string_lossy().into_owned());
            let doomed = self
                .path
                .join(format!(".{}.partial", name.unwrap_or_default()));
            fs_err::rename(&old, &doomed)?;
            tree::remove_tree(&doomed)?;
            removed.push(old);
        }
        place::sync_dir(&self.path)?;
        Ok(removed)
    }
}

/// Take one backup of `subject` into `sd`, its databases copied while the
/// app may be writing (each waiting at most `bound` for a lock). A
/// [`sqlite::Busy`] error (downcast it) when a database stayed locked.
pub fn take(
    sd: &ServiceDir,
    subject: &Subject,
    method: Method,
    bound: Duration,
    now: SystemTime,
) -> Result<(PathBuf, BackupManifest)> {
    sd.clean_partial()?;
    let stamp = timestamp(now);
    let mut name = stamp.clone();
    let mut n = 1;
    while sd.path.join(&name).exists() {
        name = format!("{stamp}-{n}");
        n += 1;
    }
    let work = sd.path.join(format!(".{name}.partial"));
    fs_err::create_dir(&work)?;
    let data = work.join(DATA);
    let root = Path::new(&subject.facts.root);
    if !root.is_dir() {
        bail!(
            "{} does not exist: has {} ever run? (nothing to back up)",
            root.display(),
            subject.service
        );
    }
    let entries = file_entries(&subject.facts, tree::inventory(root)?);
    tree::snapshot(root, &data, &entries, &mut |_| {})?;
    let mut databases = Vec::new();
    let mut missing = Vec::new();
    for db in &subject.facts.databases {
        let src = root.join(db);
        if !src.is_file() {
            missing.push(db.clone());
            continue;
        }
        let dst = data.join(db);
        if let Some(parent) = dst.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let copied = sqlite::copy_database(&src, &dst, bound)?;
        if copied.integrity != "ok" {
            bail!(
                "the copy of {db} fails PRAGMA integrity_check: {}; the app's database may be \
                 damaged: check it with `sqlite3 {} 'PRAGMA integrity_check'`",
                copied.integrity,
                src.display()
            );
        }
        copy_owner(&src, &dst)?;
        databases.push(DbRecord {
            path: db.clone(),
            pages: copied.pages,
            integrity_check: copied.integrity,
        });
    }
    let manifest = BackupManifest {
        version: 1,
        service: subject.service.clone(),
        app: subject.app.clone(),
        image: subject.image.clone(),
        image_id: subject.image_id.clone(),
        image_digest: subject.image_digest.clone(),
        created: humantime::format_rfc3339_seconds(now).to_string(),
        facts: subject.facts.clone(),
        method,
        databases,
        missing_databases: missing,
        files: records(&data)?,
    };
    let mut text = serde_json::to_string_pretty(&manifest)?;
    text.push('\n');
    write_atomic(&work.join(MANIFEST), text.as_bytes(), 0o600)?;
    place::sync_fs(&work)?;
    let done = sd.path.join(&name);
    place::rename_durably(&work, &done)?;
    Ok((done, manifest))
}

/// The copy of a database gets the owner, mode and mtime of the app's.
fn copy_owner(src: &Path, dst: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = fs_err::metadata(src)?;
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))
        .with_context(|| format!("chown {}", dst.display()))?;
    fs_err::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    Ok(())
}

/// Read a backup's manifest and check `data/` against it: every entry
/// there, of its kind, size and sha256, and nothing else. (The databases
/// passed `integrity_check` when they were copied; the same sha256 means the
/// same bytes. Opening them here would create files in the backup.)
pub fn verify(backup: &Path) -> Result<BackupManifest> {
    let text = fs_err::read_to_string(backup.join(MANIFEST)).with_context(|| {
        format!(
            "{} is not a backup (no {MANIFEST}); give a directory DIR/<service>/<timestamp>",
            backup.display()
        )
    })?;
    let m: BackupManifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged", backup.join(MANIFEST).display()))?;
    let data = backup.join(DATA);
    let found = tree::inventory(&data)?;
    let listed: Vec<&Entry> = m.files.iter().map(|f| &f.entry).collect();
    for e in &found {
        if !listed.iter().any(|l| l.path == e.path) {
            bail!(
                "the backup {} holds {} that its manifest does not list; it was changed after \
                 the backup",
                backup.display(),
                e.path
            );
        }
    }
    for f in &m.files {
        let e = &f.entry;
        let Some(now) = found.iter().find(|x| x.path == e.path) else {
            bail!("the backup {} lacks {}", backup.display(), e.path);
        };
        if now.kind != e.kind || now.size != e.size || now.target != e.target {
            bail!(
                "{} in the backup {} is not what its manifest says (size {} then {})",
                e.path,
                backup.display(),
                e.size,
                now.size
            );
        }
        if let Some(want) = &f.sha256 {
            let got = sha256_file(&data.join(&e.path))?;
            if &got != want {
                bail!(
                    "{} in the backup {} is damaged: sha256 {got}, the manifest says {want}",
                    e.path,
                    backup.display()
                );
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests;
