//! The snapshot and copy steps of `nixarr-migrate` on a file system that
//! can share extents (btrfs on a loop device): every regular file is
//! reflinked, not copied, and the snapshot's NAR hash is still the one
//! `nix-hash` prints. The end-to-end tests run on ext4, the copying path.
//!
//! Needs root, mkfs.btrfs (btrfs-progs) and filefrag (e2fsprogs), which
//! tests/run.sh installs; otherwise prints SKIPPED loudly.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nixarr_units::manifest::PathMap;
use nixarr_units::migrate::tree;

fn skip_reason() -> Option<String> {
    // The effective uid owns /proc/self.
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        return Some("not running as root".into());
    }
    for tool in ["mkfs.btrfs", "filefrag", "losetup"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Some(format!(
                "{tool} is missing (apt-get install btrfs-progs e2fsprogs)"
            ));
        }
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.contains("btrfs") {
        return Some("the kernel has no btrfs".into());
    }
    None
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A btrfs file system on a loop device, unmounted when dropped.
struct Btrfs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Btrfs {
    fn new() -> Btrfs {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        run("mkfs.btrfs", &["-q", image.to_str().unwrap()]);
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        run(
            "mount",
            &["-o", "loop", image.to_str().unwrap(), mnt.to_str().unwrap()],
        );
        Btrfs { _dir: dir, mnt }
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        // The loop device goes with the last unmount (autoclear).
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// Bytes that do not compress or deduplicate into nothing.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Whether every extent of `file` is shared with another file.
fn all_shared(file: &Path) -> bool {
    let out = run("filefrag", &["-v", file.to_str().unwrap()]);
    let extents: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.trim_start()
                .split(':')
                .next()
                .is_some_and(|n| n.trim().parse::<u32>().is_ok())
        })
        .collect();
    !extents.is_empty() && extents.iter().all(|l| l.contains("shared"))
}

#[test]
fn snapshot_and_copy_reflink_on_btrfs() {
    if let Some(why) = skip_reason() {
        eprintln!("\n!!!!!!!! SKIPPED: reflink test not run: {why} !!!!!!!!\n");
        return;
    }
    let fs = Btrfs::new();
    let src = fs.mnt.join("native");
    std::fs::create_dir_all(src.join("MediaCover/1")).unwrap();
    std::fs::write(src.join("sonarr.db"), bytes(8 << 20, 1)).unwrap();
    std::fs::write(src.join("sonarr.db-wal"), bytes(1 << 20, 2)).unwrap();
    std::fs::write(src.join("MediaCover/1/poster.jpg"), bytes(200_000, 3)).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("run.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sonarr.db", src.join("db-link")).unwrap();
    std::os::unix::fs::lchown(src.join("sonarr.db"), Some(274), Some(274)).unwrap();

    let entries = tree::inventory(&src).unwrap();
    let snap = fs.mnt.join("snapshot");
    let mut seen = 0;
    let hash = tree::snapshot_hashed(&src, &snap, &entries, &mut |n| seen += n).unwrap();
    assert_eq!(seen, tree::total_size(&entries));
    if let Ok(out) = Command::new("nix-hash")
        .args(["--type", "sha256", "--base32"])
        .arg(&src)
        .output()
    {
        assert_eq!(hash, String::from_utf8_lossy(&out.stdout).trim());
    }
    for f in ["sonarr.db", "sonarr.db-wal", "MediaCover/1/poster.jpg"] {
        assert_eq!(
            std::fs::read(src.join(f)).unwrap(),
            std::fs::read(snap.join(f)).unwrap()
        );
        assert!(all_shared(&snap.join(f)), "{f} was copied, not reflinked");
    }
    let meta = std::fs::metadata(snap.join("sonarr.db")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (274, 274), "the owner is kept");
    assert_eq!(
        std::fs::metadata(snap.join("run.sh")).unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(tree::inventory(&snap).unwrap(), entries, "a faithful copy");

    // The copy step into the container's layout, on the same file system.
    let target = fs.mnt.join("container");
    let rules = [PathMap {
        from: "MediaCover".into(),
        to: "cache/MediaCover".into(),
    }];
    tree::copy_mapped(&snap, &target, &entries, &rules, 568, 568, &mut |_| {}).unwrap();
    let poster = target.join("cache/MediaCover/1/poster.jpg");
    assert!(
        all_shared(&poster),
        "the container's copy was not reflinked"
    );
    assert!(all_shared(&target.join("sonarr.db")));
    let meta = std::fs::metadata(&poster).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (568, 568));
}
