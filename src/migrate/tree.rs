//! File trees for migration: an inventory of every entry (type, owner, mode,
//! size), a faithful copy (reflink where the file system can, owners, modes
//! and mtimes kept) and the copy into the container's layout (path map,
//! new owner). Nothing here ever writes below the source.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::manifest::PathMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Directory,
    File,
    Symlink,
}

/// One entry of a tree, relative to its root ("" is the root itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Every entry below `root`, parents before children, in name order.
/// Devices, sockets and pipes are refused: app data has none, and they
/// cannot be snapshotted faithfully.
pub fn inventory(root: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

fn walk(root: &Path, path: &Path, out: &mut Vec<Entry>) -> Result<()> {
    let meta = fs_err::symlink_metadata(path)?;
    let rel = path.strip_prefix(root).unwrap_or(Path::new(""));
    let rel = rel
        .to_str()
        .with_context(|| {
            format!(
                "{} has a name that is not UTF-8, which the migration journal cannot record; \
                 rename it (e.g. with convmv) and try again",
                path.display()
            )
        })?
        .to_owned();
    let ft = meta.file_type();
    let (kind, target) = if ft.is_dir() {
        (Kind::Directory, None)
    } else if ft.is_file() {
        (Kind::File, None)
    } else if ft.is_symlink() {
        let t = fs_err::read_link(path)?;
        let t = t.to_str().with_context(|| {
            format!(
                "the symlink {} points to a name that is not UTF-8; replace it and try again",
                path.display()
            )
        })?;
        (Kind::Symlink, Some(t.to_owned()))
    } else {
        bail!(
            "{} is a device, socket or pipe, which a migration cannot carry; remove it or stop \
             the service that created it",
            path.display()
        );
    };
    out.push(Entry {
        path: rel,
        kind,
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
        size: if kind == Kind::File { meta.len() } else { 0 },
        target,
    });
    if kind == Kind::Directory {
        let mut children: Vec<PathBuf> = fs_err::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        children.sort();
        for c in children {
            walk(root, &c, out)?;
        }
    }
    Ok(())
}

pub fn total_size(entries: &[Entry]) -> u64 {
    entries.iter().map(|e| e.size).sum()
}

/// The file system holding `path` (or its nearest existing ancestor).
pub fn statvfs_nearest(path: &Path) -> Result<rustix::fs::StatVfs> {
    let mut p = path;
    while !p.exists() {
        p = p.parent().unwrap_or(Path::new("/"));
    }
    rustix::fs::statvfs(p).with_context(|| format!("statvfs {}", p.display()))
}

/// Whether reflinks (FICLONE) are worth trying: true until the file system
/// says it cannot, then plain copies for the rest of the tree.
struct Reflink(bool);

impl Reflink {
    /// Clone `from` into the empty `to`; false when this file system (or
    /// this pair of file systems) cannot, and it is not tried again.
    fn try_clone(&mut self, to: &std::fs::File, from: &std::fs::File) -> std::io::Result<bool> {
        if !self.0 {
            return Ok(false);
        }
        match rustix::fs::ioctl_ficlone(to, from) {
            Ok(()) => Ok(true),
            Err(
                rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::XDEV
                | rustix::io::Errno::NOTTY
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOSYS,
            ) => {
                self.0 = false;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Create `dst` (which must not exist) for a regular file, private until
/// its owner and mode are set.
fn create_file(dst: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .with_context(|| format!("creating {}", dst.display()))
}

/// Owner, then mode (chown clears setuid and setgid bits), then times, all
/// on the open file.
fn finish_file(
    f: &std::fs::File,
    dst: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: filetime::FileTime,
) -> Result<()> {
    std::os::unix::fs::fchown(f, Some(uid), Some(gid))
        .with_context(|| format!("chown {uid}:{gid} {}", dst.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", dst.display()))?;
    filetime::set_file_handle_times(f, Some(mtime), Some(mtime))
        .with_context(|| format!("setting the times of {}", dst.display()))
}

/// Copy one regular file: reflink where possible, else in the kernel
/// (copy_file_range through std::io::copy).
fn copy_file(
    e: &Entry,
    src: &Path,
    dst: &Path,
    uid: u32,
    gid: u32,
    reflink: &mut Reflink,
) -> Result<()> {
    let mut from =
        std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mtime = filetime::FileTime::from_last_modification_time(&from.metadata()?);
    let mut to = create_file(dst)?;
    if !reflink.try_clone(&to, &from)? {
        let n = std::io::copy(&mut from, &mut to)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        if n != e.size {
            bail!(
                "{} changed while it was copied ({} bytes, then {n}); stop what writes to it \
                 and try again",
                src.display(),
                e.size
            );
        }
    }
    finish_file(&to, dst, uid, gid, e.mode, mtime)
}

/// Copy one entry from `src` to `dst` (which must not exist), with `uid`,
/// `gid` and `mode`; regular files by reflink where possible.
fn copy_entry(
    e: &Entry,
    src: &Path,
    dst: &Path,
    uid: u32,
    gid: u32,
    reflink: &mut Reflink,
) -> Result<()> {
    match e.kind {
        Kind::Directory => {
            if !dst.is_dir() {
                fs_err::create_dir(dst)?;
            }
        }
        Kind::File => return copy_file(e, src, dst, uid, gid, reflink),
        Kind::Symlink => {
            let target = e.target.as_deref().unwrap_or_default();
            fs_err::os::unix::fs::symlink(target, dst)?;
        }
    }
    std::os::unix::fs::lchown(dst, Some(uid), Some(gid))
        .with_context(|| format!("chown {uid}:{gid} {}", dst.display()))?;
    if e.kind != Kind::Symlink {
        fs_err::set_permissions(dst, std::fs::Permissions::from_mode(e.mode))?;
    }
    let meta = fs_err::symlink_metadata(src)?;
    let mtime = filetime::FileTime::from_last_modification_time(&meta);
    filetime::set_symlink_file_times(dst, mtime, mtime)
        .with_context(|| format!("setting the times of {}", dst.display()))?;
    Ok(())
}

/// A faithful copy of `entries` (from `inventory(src)`) into `dst`: same
/// owners, modes, mtimes and bytes. `progress` gets the bytes of each file.
pub fn snapshot(
    src: &Path,
    dst: &Path,
    entries: &[Entry],
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut reflink = Reflink(true);
    for e in entries {
        let from = src.join(&e.path);
        copy_entry(e, &from, &join(dst, &e.path), e.uid, e.gid, &mut reflink)?;
        progress(e.size);
    }
    directory_times(src, dst, entries)
}

fn join(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Directory mtimes change as children arrive: set them again, deepest
/// first.
fn directory_times(src: &Path, dst: &Path, entries: &[Entry]) -> Result<()> {
    for e in entries.iter().rev().filter(|e| e.kind == Kind::Directory) {
        let meta = fs_err::symlink_metadata(join(src, &e.path))?;
        let mtime = filetime::FileTime::from_last_modification_time(&meta);
        filetime::set_file_times(join(dst, &e.path), mtime, mtime)?;
    }
    Ok(())
}

/// What the reading thread of [`snapshot_hashed`] hands the writing one.
enum Piece {
    /// A directory or symlink.
    Other(usize),
    /// A regular file begins, with its first bytes (a small file is all
    /// there), its mtime and, while reflinks may work, its source.
    File {
        index: usize,
        source: Option<std::fs::File>,
        mtime: filetime::FileTime,
        data: Vec<u8>,
        last: bool,
    },
    /// More bytes of the current file.
    Data { data: Vec<u8>, last: bool },
}

/// [`snapshot`] and the NAR hash of the tree (as `nix-hash --type sha256
/// --base32 SRC` prints it) in one pass: a thread reads each file once and
/// hashes it, this one writes what it read (or reflinks the file and
/// skips the bytes), so reading, hashing and writing overlap. What
/// `migrate` runs for its snapshot step.
pub fn snapshot_hashed(
    src: &Path,
    dst: &Path,
    entries: &[Entry],
    progress: &mut dyn FnMut(u64),
) -> Result<String> {
    // At most 64 pieces (of up to 1 MiB) in flight.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Piece>(64);
    let reflink = AtomicBool::new(true);
    let at = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<String> {
        let (reflink, at, stop) = (&reflink, &at, &stop);
        s.spawn(move || prefetch(src, entries, at, stop));
        // The sender moves into the reader: when it is done, the channel
        // closes and the writer's loop ends.
        let reader = s.spawn(move || {
            let r = read_and_hash(src, entries, &tx, reflink, at);
            stop.store(true, Ordering::Relaxed);
            r
        });
        let written = write_pieces(src, dst, entries, &rx, reflink, progress);
        drop(rx);
        let hashed = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the reading thread panicked"))?;
        // A writer error makes the reader fail too (its channel closes):
        // report the writer's.
        written?;
        let hash = hashed?;
        directory_times(src, dst, entries)?;
        Ok(hash)
    })
}

/// How far [`prefetch`] runs ahead of the reader.
const PREFETCH_FILES: usize = 512;
const PREFETCH_BYTES: u64 = 64 << 20;
/// Of a large file only the start: the kernel's readahead follows a
/// sequential reader well, what it cannot overlap is one small file after
/// another.
const PREFETCH_PER_FILE: u64 = 2 << 20;

/// Ask the kernel to start reading the files the reader will need next
/// (`posix_fadvise(WILLNEED)` returns at once), so the disk works on many
/// small files at a time instead of one after another. Advisory only:
/// errors are ignored, the reader reports its own.
fn prefetch(src: &Path, entries: &[Entry], at: &AtomicUsize, stop: &AtomicBool) {
    // Bytes before each entry, to know how far ahead this thread is.
    let mut before = Vec::with_capacity(entries.len() + 1);
    let mut sum = 0u64;
    for e in entries {
        before.push(sum);
        sum += e.size.min(PREFETCH_PER_FILE);
    }
    for (i, e) in entries.iter().enumerate() {
        if e.kind != Kind::File || e.size == 0 {
            continue;
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let reader = at.load(Ordering::Relaxed).min(i);
            if i - reader < PREFETCH_FILES && before[i] - before[reader] < PREFETCH_BYTES {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        if let Ok(f) = std::fs::File::open(join(src, &e.path)) {
            let _ = rustix::fs::fadvise(
                &f,
                0,
                std::num::NonZeroU64::new(e.size.min(PREFETCH_PER_FILE)),
                rustix::fs::Advice::WillNeed,
            );
        }
    }
}

fn read_and_hash(
    src: &Path,
    entries: &[Entry],
    tx: &std::sync::mpsc::SyncSender<Piece>,
    reflink: &AtomicBool,
    at: &AtomicUsize,
) -> Result<String> {
    use crate::nixfmt::{NarHasher, READ_CHUNK, is_executable};
    use std::io::Read;
    let send = |p: Piece| {
        tx.send(p)
            .map_err(|_| anyhow::anyhow!("the snapshot writer stopped"))
    };
    let mut nar = NarHasher::new();
    // Directories open in the NAR, innermost last.
    let mut open: Vec<&str> = Vec::new();
    for (index, e) in entries.iter().enumerate() {
        at.store(index, Ordering::Relaxed);
        let (parent, name) = match e.path.rsplit_once('/') {
            _ if e.path.is_empty() => ("", None),
            Some((p, n)) => (p, Some(n.as_bytes())),
            None => ("", Some(e.path.as_bytes())),
        };
        if name.is_some() {
            while open.last().is_some_and(|d| *d != parent) {
                open.pop();
                nar.end_directory(!open.is_empty());
            }
        }
        let path = join(src, &e.path);
        match e.kind {
            Kind::Directory => {
                nar.directory(name);
                open.push(&e.path);
                send(Piece::Other(index))?;
            }
            Kind::Symlink => {
                nar.symlink(name, e.target.as_deref().unwrap_or_default().as_bytes());
                send(Piece::Other(index))?;
            }
            Kind::File => {
                let mut f = std::fs::File::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let meta = f.metadata()?;
                if meta.len() != e.size {
                    bail!(
                        "{} changed since it was listed ({} bytes, now {}); stop what writes \
                         to it and try again",
                        path.display(),
                        e.size,
                        meta.len()
                    );
                }
                let mtime = filetime::FileTime::from_last_modification_time(&meta);
                nar.file(name, is_executable(e.mode), e.size);
                let source = if reflink.load(Ordering::Relaxed) {
                    Some(f.try_clone()?)
                } else {
                    None
                };
                let mut first = Some((source, mtime));
                let mut left = e.size;
                loop {
                    let mut buf = vec![0u8; left.min(READ_CHUNK as u64) as usize];
                    f.read_exact(&mut buf)
                        .with_context(|| format!("reading {} (did it shrink?)", path.display()))?;
                    nar.contents(&buf);
                    left -= buf.len() as u64;
                    let last = left == 0;
                    send(match first.take() {
                        Some((source, mtime)) => Piece::File {
                            index,
                            source,
                            mtime,
                            data: buf,
                            last,
                        },
                        None => Piece::Data { data: buf, last },
                    })?;
                    if last {
                        break;
                    }
                }
                nar.end_file(name.is_some(), e.size);
            }
        }
    }
    while open.pop().is_some() {
        nar.end_directory(!open.is_empty());
    }
    Ok(nar.finish())
}

/// The file [`write_pieces`] is writing.
struct Writing<'a> {
    e: &'a Entry,
    to: PathBuf,
    f: std::fs::File,
    mtime: filetime::FileTime,
    /// Reflinked: its bytes are skipped.
    cloned: bool,
}

impl Writing<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        use std::io::Write;
        if !self.cloned {
            self.f
                .write_all(data)
                .with_context(|| format!("writing {}", self.to.display()))?;
        }
        Ok(())
    }
    fn finish(self, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let e = self.e;
        finish_file(&self.f, &self.to, e.uid, e.gid, e.mode, self.mtime)?;
        progress(e.size);
        Ok(())
    }
}

fn write_pieces(
    src: &Path,
    dst: &Path,
    entries: &[Entry],
    rx: &std::sync::mpsc::Receiver<Piece>,
    reflink_ok: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut reflink = Reflink(true);
    let mut current: Option<Writing> = None;
    for piece in rx {
        match piece {
            Piece::Other(i) => {
                let e = &entries[i];
                copy_entry(
                    e,
                    &join(src, &e.path),
                    &join(dst, &e.path),
                    e.uid,
                    e.gid,
                    &mut reflink,
                )?;
            }
            Piece::File {
                index,
                source,
                mtime,
                data,
                last,
            } => {
                let e = &entries[index];
                let to = join(dst, &e.path);
                let f = create_file(&to)?;
                let cloned = match source {
                    Some(from) => reflink.try_clone(&f, &from)?,
                    None => false,
                };
                if !reflink.0 {
                    // Tell the reader to stop passing sources along.
                    reflink_ok.store(false, Ordering::Relaxed);
                }
                let mut w = Writing {
                    e,
                    to,
                    f,
                    mtime,
                    cloned,
                };
                w.write(&data)?;
                if last {
                    w.finish(progress)?;
                } else {
                    current = Some(w);
                }
            }
            Piece::Data { data, last } => {
                let Some(mut w) = current.take() else {
                    bail!("snapshot: bytes arrived for no file");
                };
                w.write(&data)?;
                if last {
                    w.finish(progress)?;
                } else {
                    current = Some(w);
                }
            }
        }
    }
    Ok(())
}

/// Where a relative path of the native tree goes in the container's
/// config directory: the first matching rule wins, `.` matches all.
pub fn map_path(rel: &str, rules: &[PathMap]) -> String {
    for r in rules {
        let rest = if r.from == "." {
            Some(rel)
        } else if rel == r.from {
            Some("")
        } else {
            rel.strip_prefix(&format!("{}/", r.from))
        };
        if let Some(rest) = rest {
            let to = r.to.trim_start_matches("./");
            return match (to, rest) {
                (".", r) | ("", r) => r.to_owned(),
                (t, "") => t.to_owned(),
                (t, r) => format!("{t}/{r}"),
            };
        }
    }
    rel.to_owned()
}

/// Copy the snapshot into the container's layout below `dst`, every entry
/// owned by `uid:gid`. Directories the path map introduces are created
/// with the root's mode.
pub fn copy_mapped(
    snapshot: &Path,
    dst: &Path,
    entries: &[Entry],
    rules: &[PathMap],
    uid: u32,
    gid: u32,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let root_mode = entries.first().map(|e| e.mode).unwrap_or(0o750);
    let mut reflink = Reflink(true);
    for e in entries {
        let mapped = map_path(&e.path, rules);
        if Path::new(&mapped)
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            bail!("path map sends {} outside the target", e.path);
        }
        let to = if mapped.is_empty() {
            dst.to_path_buf()
        } else {
            dst.join(&mapped)
        };
        if let Some(parent) = to.parent() {
            let mut missing = Vec::new();
            let mut p = parent;
            while !p.exists() {
                missing.push(p.to_path_buf());
                p = p.parent().unwrap_or(Path::new("/"));
            }
            for dir in missing.into_iter().rev() {
                fs_err::create_dir(&dir)?;
                std::os::unix::fs::lchown(&dir, Some(uid), Some(gid))?;
                fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(root_mode))?;
            }
        }
        let from = if e.path.is_empty() {
            snapshot.to_path_buf()
        } else {
            snapshot.join(&e.path)
        };
        copy_entry(e, &from, &to, uid, gid, &mut reflink)?;
        progress(e.size);
    }
    Ok(())
}

/// Remove a tree we created (staging directories); a missing one is fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs_err::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(r: &[(&str, &str)]) -> Vec<PathMap> {
        r.iter()
            .map(|(f, t)| PathMap {
                from: (*f).into(),
                to: (*t).into(),
            })
            .collect()
    }

    #[test]
    fn path_maps() {
        let jellyfin = rules(&[("config", "."), (".", "data")]);
        assert_eq!(map_path("config/system.xml", &jellyfin), "system.xml");
        assert_eq!(map_path("config", &jellyfin), "");
        assert_eq!(
            map_path("data/library.db", &jellyfin),
            "data/data/library.db"
        );
        assert_eq!(map_path("", &jellyfin), "data");
        let qbit = rules(&[(".", "qBittorrent")]);
        assert_eq!(
            map_path("qBittorrent.conf", &qbit),
            "qBittorrent/qBittorrent.conf"
        );
        assert_eq!(map_path("x/y", &[]), "x/y");
    }

    #[test]
    fn snapshot_keeps_everything() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("db.sqlite"), b"db").unwrap();
        std::fs::write(src.join("db.sqlite-wal"), b"wal").unwrap();
        std::fs::write(src.join("sub/run"), b"#!/bin/sh").unwrap();
        std::fs::set_permissions(src.join("sub/run"), std::fs::Permissions::from_mode(0o751))
            .unwrap();
        symlink("../db.sqlite", src.join("sub/link")).unwrap();
        let entries = inventory(&src).unwrap();
        let dst = t.path().join("snap");
        let mut bytes = 0;
        snapshot(&src, &dst, &entries, &mut |b| bytes += b).unwrap();
        assert_eq!(bytes, 2 + 3 + 9);
        assert_eq!(inventory(&dst).unwrap(), entries);
        assert_eq!(
            crate::nixfmt::nar_hash(&src).unwrap(),
            crate::nixfmt::nar_hash(&dst).unwrap()
        );
    }

    #[test]
    fn snapshot_hashed_is_snapshot_plus_nar_hash() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        for d in ["a/b/c", "a/b2", "z/y", "empty-dir"] {
            std::fs::create_dir_all(src.join(d)).unwrap();
        }
        std::fs::write(src.join("a/b/c/deep"), vec![3u8; 3 << 20]).unwrap();
        std::fs::write(src.join("a/b2/x"), b"x").unwrap();
        std::fs::write(src.join("a/top"), b"").unwrap();
        std::fs::write(src.join("z/y/run"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(src.join("z/y/run"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::fs::write(src.join("z/odd"), b"o").unwrap();
        std::fs::set_permissions(src.join("z/odd"), std::fs::Permissions::from_mode(0o611))
            .unwrap();
        std::fs::set_permissions(src.join("a/b2"), std::fs::Permissions::from_mode(0o2750))
            .unwrap();
        symlink("../../z", src.join("a/b/up")).unwrap();
        symlink("/no/such", src.join("dangling")).unwrap();
        let entries = inventory(&src).unwrap();
        let dst = t.path().join("snap");
        let mut bytes = 0;
        let hash = snapshot_hashed(&src, &dst, &entries, &mut |b| bytes += b).unwrap();
        assert_eq!(bytes, total_size(&entries));
        assert_eq!(hash, crate::nixfmt::nar_hash(&src).unwrap());
        assert_eq!(hash, crate::nixfmt::nar_hash(&dst).unwrap());
        assert_eq!(inventory(&dst).unwrap(), entries);
        for e in &entries {
            let a = std::fs::symlink_metadata(src.join(&e.path)).unwrap();
            let b = std::fs::symlink_metadata(dst.join(&e.path)).unwrap();
            assert_eq!(a.mtime(), b.mtime(), "{}", e.path);
        }
        // A lone file and an empty directory as the whole tree.
        let lone = t.path().join("lone");
        std::fs::create_dir(&lone).unwrap();
        let e = inventory(&lone).unwrap();
        let h = snapshot_hashed(&lone, &t.path().join("lone2"), &e, &mut |_| {}).unwrap();
        assert_eq!(h, crate::nixfmt::nar_hash(&lone).unwrap());
    }
}
