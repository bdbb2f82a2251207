//! The fake app's image: a busybox root with the scripts of
//! tests/e2e/fake-app/, built as a deterministic tarball and loaded into
//! each machine's engine as [`super::IMAGE`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::host::host;

const FAKE_APP: &[(&str, &str)] = &[
    ("run", include_str!("../fake-app/run")),
    ("handle", include_str!("../fake-app/handle")),
    ("ctl", include_str!("../fake-app/ctl")),
];

/// The host's sqlite3 and the libraries it loads (as `ldd` names them), at
/// the same paths in the image: the fake app's database writer
/// (`FAKE_DB`).
fn add_sqlite3(root: &Path) -> Result<()> {
    let exe = Path::new("/usr/bin/sqlite3");
    anyhow::ensure!(
        exe.exists(),
        "/usr/bin/sqlite3 is missing: apt-get install sqlite3"
    );
    let ldd = host(Command::new("ldd").arg(exe))?;
    let mut files = vec![exe.to_path_buf()];
    for line in ldd.lines() {
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)".
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        files.extend(path);
    }
    for f in files {
        let rel = f.strip_prefix("/").context("an absolute path")?;
        let dst = root.join(rel);
        if let Some(parent) = dst.parent() {
            fs_err::create_dir_all(parent)?;
        }
        // The real file (libraries are symlinks to versioned names).
        fs_err::copy(fs_err::canonicalize(&f)?, &dst)?;
    }
    Ok(())
}

/// Build the fake app's root file system tarball (deterministic bytes).
pub(super) fn build_image_tar(dir: &Path) -> Result<PathBuf> {
    let root = dir.join("fake-rootfs");
    for d in ["bin", "app", "tmp", "proc", "sys", "dev", "etc"] {
        fs_err::create_dir_all(root.join(d))?;
    }
    fs_err::copy("/usr/bin/busybox", root.join("bin/busybox"))
        .context("copying busybox (apt-get install busybox-static)")?;
    let list = host(Command::new("/usr/bin/busybox").arg("--list"))?;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            fs_err::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    for (name, text) in FAKE_APP {
        let p = root.join("app").join(name);
        fs_err::write(&p, text)?;
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    add_sqlite3(&root)?;
    fs_err::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")?;
    fs_err::write(root.join("etc/group"), "root:x:0:\n")?;
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    let tar = dir.join("fake-app.tar");
    tar_root(&root, &tar)?;
    Ok(tar)
}

/// Pack the root file system `root` into the tarball `tar` with the same
/// bytes every time (sorted, epoch times, numeric root ownership), as an
/// image archive to import.
pub fn tar_root(root: &Path, tar: &Path) -> Result<()> {
    host(
        Command::new("tar")
            .arg("--sort=name")
            .arg("--mtime=@0")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(root)
            .arg("-cf")
            .arg(tar)
            .arg("."),
    )
    .map(drop)
}
