//! Putting a finished copy in place of a directory, and moving what was
//! there out of the way — durably, and resumable after a kill at any line.
//!
//! A directory is replaced by renames only, never by copying over it. An
//! ordinary directory is renamed whole: the copy is built beside it, in the
//! same parent (so on the same file system). A directory that is a mount
//! point (a ZFS dataset or btrfs subvolume mounted for the app, a bind
//! mount) cannot be renamed; its contents can. The copy is then built
//! inside it, and the swap moves its children one by one — each a rename on
//! that file system, each step safe to repeat.
//!
//! Durability: what the journal is about to call done must be on disk first.
//! [`sync_fs`] flushes a whole file system once (cheaper than an fsync per
//! file of a tree), and every rename is followed by an fsync of the
//! directories it changed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Our own entries inside a mount point: not the app's data.
const OURS: &str = ".nixarr-migrate";
/// What mkfs leaves in the root of ext2/3/4: not the app's data either.
const LOST_FOUND: &str = "lost+found";

/// Whether a path relative to a directory we manage is one of our own
/// entries (staging, kept copies) rather than the app's.
pub fn is_ours(rel: &str) -> bool {
    rel.split('/').next().is_some_and(|c| c.starts_with(OURS))
}

/// Whether `p` is the root of a mount (a file system, dataset or bind mount
/// of its own): it cannot be renamed, only what is inside it.
pub fn is_mount_point(p: &Path) -> Result<bool> {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags};
    let st = rustix::fs::statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS)
        .with_context(|| format!("statx {}", p.display()))?;
    if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
        return Ok(st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT));
    }
    // Kernels before 5.8: another device than the parent's.
    let me = fs_err::symlink_metadata(p)?;
    let parent = fs_err::metadata(parent(p))?;
    Ok(me.dev() != parent.dev() || me.ino() == parent.ino())
}

/// Flush everything written to the file system holding `p`.
pub fn sync_fs(p: &Path) -> Result<()> {
    let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    rustix::fs::syncfs(&f).with_context(|| format!("syncfs {}", p.display()))
}

/// fsync a directory, so the renames in it survive a power loss.
pub fn sync_dir(p: &Path) -> Result<()> {
    let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", p.display()))
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("/"))
}

/// Rename, then fsync the directories it changed.
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    fs_err::rename(from, to)?;
    sync_dir(parent(to))?;
    if parent(from) != parent(to) {
        sync_dir(parent(from))?;
    }
    Ok(())
}

/// The entries of directory `p`; none when it does not exist.
pub fn read_dir_if_exists(p: &Path) -> Result<Vec<fs_err::DirEntry>> {
    match fs_err::read_dir(p) {
        Ok(rd) => Ok(rd.collect::<std::io::Result<_>>()?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// `.NAME.nixarr-migrate[-WHAT]` in the directory of `path`: what is moved
/// aside stays on the same file system, so a rename never crosses devices
/// (the journal directory is often on another one than the data).
pub fn beside(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("-{what}")
    };
    path.with_file_name(format!(".{name}{OURS}{what}"))
}

/// A directory whose contents a migration or rollback replaces.
#[derive(Debug)]
pub struct Slot {
    pub path: PathBuf,
    /// A mount point: its children move, not the directory.
    pub mount: bool,
}

impl Slot {
    pub fn new(path: &Path) -> Result<Slot> {
        let mount = path.is_dir() && is_mount_point(path)?;
        Ok(Slot {
            path: path.to_path_buf(),
            mount,
        })
    }

    /// Where a new copy is built: on the directory's own file system.
    pub fn staging(&self) -> PathBuf {
        if self.mount {
            self.aside("staging")
        } else {
            beside(&self.path, "")
        }
    }

    /// Where contents moved out of the way are kept until finalize.
    pub fn aside(&self, what: &str) -> PathBuf {
        if self.mount {
            self.path.join(format!("{OURS}-{what}"))
        } else {
            beside(&self.path, what)
        }
    }

    /// The app's entries in the directory (ours and lost+found left out);
    /// none when it does not exist.
    pub fn children(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in read_dir_if_exists(&self.path)? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if self.mount && (name.starts_with(OURS) || name == LOST_FOUND) {
                continue;
            }
            out.push(entry.path());
        }
        out.sort();
        Ok(out)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.children()?.is_empty())
    }

    /// Move the current contents to `aside(what)`. Resumes a move a kill
    /// interrupted; refuses to overwrite anything already kept there.
    pub fn move_aside(&self, what: &str) -> Result<()> {
        let to = self.aside(what);
        if !self.mount {
            if self.path.exists() {
                if to.exists() {
                    bail!(
                        "{} is in the way of {}; move it away (it holds an earlier \
                         migration's data) and run again",
                        to.display(),
                        self.path.display()
                    );
                }
                rename_durably(&self.path, &to)?;
            }
            return Ok(());
        }
        if !to.exists() {
            // A faithful image of the root too: putting it back with
            // `fill_from` restores the root's owner, mode and times.
            let root = fs_err::metadata(&self.path)?;
            let tmp = self.aside(&format!("{what}.partial"));
            super::tree::remove_tree(&tmp)?;
            fs_err::create_dir(&tmp)?;
            std::os::unix::fs::lchown(&tmp, Some(root.uid()), Some(root.gid()))
                .with_context(|| format!("chown {}", tmp.display()))?;
            fs_err::set_permissions(&tmp, std::fs::Permissions::from_mode(root.mode() & 0o7777))?;
            let mtime = filetime::FileTime::from_last_modification_time(&root);
            filetime::set_file_times(&tmp, mtime, mtime)?;
            fs_err::rename(&tmp, &to)?;
        }
        for child in self.children()? {
            let name = child.file_name().context("a child without a name")?;
            let dst = to.join(name);
            if fs_err::symlink_metadata(&dst).is_ok() {
                bail!(
                    "{} is in the way of {}; move it away and run again",
                    dst.display(),
                    child.display()
                );
            }
            fs_err::rename(&child, &dst)?;
        }
        sync_dir(&to)?;
        sync_dir(&self.path)
    }

    /// Remove the contents (an earlier, unfinished copy of ours).
    pub fn clear(&self) -> Result<()> {
        if !self.mount {
            return super::tree::remove_tree(&self.path);
        }
        for child in self.children()? {
            if fs_err::symlink_metadata(&child)?.is_dir() {
                fs_err::remove_dir_all(&child)?;
            } else {
                fs_err::remove_file(&child)?;
            }
        }
        sync_dir(&self.path)
    }

    /// Make `from` (a finished copy on this file system, see [`staging`] and
    /// [`aside`]) the contents: the directory itself, or its children plus
    /// the owner, mode and times of its root. The contents must be empty.
    ///
    /// [`staging`]: Slot::staging
    /// [`aside`]: Slot::aside
    pub fn fill_from(&self, from: &Path) -> Result<()> {
        if !self.mount {
            return rename_durably(from, &self.path);
        }
        let root = fs_err::symlink_metadata(from)?;
        let rd = fs_err::read_dir(from)?;
        for entry in rd {
            let entry = entry?;
            let dst = self.path.join(entry.file_name());
            if entry.file_name() == LOST_FOUND {
                // The file system's own, empty one gives way to the copy's.
                let _ = fs_err::remove_dir(&dst);
            }
            if fs_err::symlink_metadata(&dst).is_ok() {
                bail!(
                    "{} is in the way of {}; move it away and run again",
                    dst.display(),
                    entry.path().display()
                );
            }
            fs_err::rename(entry.path(), &dst)?;
        }
        sync_dir(&self.path)?;
        std::os::unix::fs::lchown(&self.path, Some(root.uid()), Some(root.gid()))
            .with_context(|| format!("chown {}", self.path.display()))?;
        fs_err::set_permissions(
            &self.path,
            std::fs::Permissions::from_mode(root.mode() & 0o7777),
        )?;
        // Removing the emptied copy changes the root's mtime: set it last.
        fs_err::remove_dir(from)?;
        let mtime = filetime::FileTime::from_last_modification_time(&root);
        filetime::set_file_times(&self.path, mtime, mtime)?;
        sync_dir(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_directories_are_renamed_whole() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("app");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("old"), "old").unwrap();
        let slot = Slot::new(&target).unwrap();
        assert!(!slot.mount, "a tempdir child is no mount point");
        assert_eq!(slot.staging(), t.path().join(".app.nixarr-migrate"));
        assert_eq!(
            slot.aside("previous"),
            t.path().join(".app.nixarr-migrate-previous")
        );
        assert!(!slot.is_empty().unwrap());
        slot.move_aside("previous").unwrap();
        // Again: nothing left to move, nothing lost.
        slot.move_aside("previous").unwrap();
        assert!(!target.exists());
        let staging = slot.staging();
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("new"), "new").unwrap();
        slot.fill_from(&staging).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("new")).unwrap(), "new");
        assert_eq!(
            std::fs::read_to_string(slot.aside("previous").join("old")).unwrap(),
            "old"
        );
    }

    #[test]
    fn moving_aside_never_overwrites_what_is_kept() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("app");
        std::fs::create_dir(&target).unwrap();
        let slot = Slot::new(&target).unwrap();
        std::fs::create_dir(slot.aside("previous")).unwrap();
        let err = slot.move_aside("previous").unwrap_err().to_string();
        assert!(err.contains("is in the way"), "{err}");
        assert!(target.exists());
    }

    /// The mount-point mode, forced on a plain directory (mounting needs
    /// root; the end-to-end tests mount a real tmpfs).
    #[test]
    fn mount_points_swap_their_children() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("app");
        std::fs::create_dir_all(target.join("lost+found")).unwrap();
        std::fs::write(target.join("old"), "old").unwrap();
        std::fs::create_dir(target.join("olddir")).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o711)).unwrap();
        let slot = Slot {
            path: target.clone(),
            mount: true,
        };
        let staging = slot.staging();
        assert_eq!(staging, target.join(".nixarr-migrate-staging"));
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("new"), "new").unwrap();
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(
            slot.children().unwrap().len(),
            2,
            "ours and lost+found skipped"
        );
        slot.move_aside("previous").unwrap();
        assert!(slot.is_empty().unwrap());
        assert!(slot.aside("previous").join("olddir").is_dir());
        // A kill in the middle of the swap left one entry moved: running
        // it again finishes the move.
        std::fs::write(staging.join("second"), "2").unwrap();
        std::fs::rename(staging.join("second"), target.join("second")).unwrap();
        slot.fill_from(&staging).unwrap();
        assert!(!staging.exists());
        assert!(target.join("second").exists());
        assert_eq!(std::fs::read_to_string(target.join("new")).unwrap(), "new");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o750, "the root takes the copy's mode");
        assert!(target.join("lost+found").is_dir());
        // Clearing removes the app's entries only.
        slot.clear().unwrap();
        assert!(slot.is_empty().unwrap());
        assert!(slot.aside("previous").join("old").exists());
        // Putting the kept contents back.
        slot.fill_from(&slot.aside("previous")).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("old")).unwrap(), "old");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o711, "the root's own mode is back");
    }

    #[test]
    fn the_root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        let t = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(t.path()).unwrap());
    }
}
