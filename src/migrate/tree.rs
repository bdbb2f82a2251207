//! File trees for migration: an inventory of every entry (type, owner, mode,
//! size), a faithful copy (reflink where the file system can, owners, modes
//! and mtimes kept) and the copy into the container's layout (path map,
//! new owner). Nothing here ever writes below the source.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::catalog::PathMap;

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
    let rel = path
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ft = meta.file_type();
    let (kind, target) = if ft.is_dir() {
        (Kind::Directory, None)
    } else if ft.is_file() {
        (Kind::File, None)
    } else if ft.is_symlink() {
        let t = fs_err::read_link(path)?;
        (Kind::Symlink, Some(t.to_string_lossy().into_owned()))
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

/// Bytes available on the file system holding `path` (or its nearest
/// existing ancestor).
pub fn free_bytes(path: &Path) -> Result<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent().unwrap_or(Path::new("/"));
    }
    let st = rustix::fs::statvfs(p).with_context(|| format!("statvfs {}", p.display()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Copy one entry from `src` to `dst` (which must not exist), with `uid`,
/// `gid` and `mode`; regular files by reflink where possible.
fn copy_entry(e: &Entry, src: &Path, dst: &Path, uid: u32, gid: u32) -> Result<()> {
    match e.kind {
        Kind::Directory => {
            if !dst.is_dir() {
                fs_err::create_dir(dst)?;
            }
        }
        Kind::File => {
            reflink_copy::reflink_or_copy(src, dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
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
    for e in entries {
        let from = src.join(&e.path);
        let to = if e.path.is_empty() {
            dst.to_path_buf()
        } else {
            dst.join(&e.path)
        };
        copy_entry(e, &from, &to, e.uid, e.gid)?;
        progress(e.size);
    }
    // Directory mtimes change as children arrive: set them again, deepest
    // first.
    for e in entries.iter().rev().filter(|e| e.kind == Kind::Directory) {
        let meta = fs_err::symlink_metadata(src.join(&e.path))?;
        let mtime = filetime::FileTime::from_last_modification_time(&meta);
        filetime::set_file_times(dst.join(&e.path), mtime, mtime)?;
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
        copy_entry(e, &from, &to, uid, gid)?;
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
}
