//! Writing rendered units to disk. `render` builds the whole tree in a
//! temporary sibling directory and renames it into place, so an error never
//! leaves a half-written output; the generator writes into the directory
//! systemd gives it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::manifest::Manifest;
use crate::render::{Entry, MANIFEST_PATH, Rendered, UNIT_DIR};

/// Write unit files and `.wants` links below `dir`.
pub fn write_units(dir: &Path, rendered: &Rendered) -> Result<()> {
    for (rel, entry) in &rendered.units {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        match entry {
            Entry::File(text) => {
                fs_err::write(&path, text)?;
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
            }
            Entry::Symlink(target) => {
                fs_err::os::unix::fs::symlink(target, &path)?;
            }
        }
    }
    Ok(())
}

/// Write `content` to `path` atomically: a temporary file in the same
/// directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".nixarr-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(content)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    fs_err::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The `render --out DIR` layout: `lib/systemd/system/…` and
/// `share/nixarr-units/manifest.json`. DIR must not exist, be empty, or hold
/// an earlier render (recognised by its manifest), which is replaced whole.
pub fn write_package(out: &Path, rendered: &Rendered, manifest: &Manifest) -> Result<()> {
    let previous_render = out.join(MANIFEST_PATH).is_file();
    if out.exists() {
        if !out.is_dir() {
            bail!(
                "{} exists and is not a directory; choose another --out",
                out.display()
            );
        }
        let empty = fs_err::read_dir(out)?.next().is_none();
        if !empty && !previous_render {
            bail!(
                "{} is not empty and holds no earlier render; choose an empty or new --out \
                 directory (nothing was written)",
                out.display()
            );
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    fs_err::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".nixarr-render-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    write_units(&staging.path().join(UNIT_DIR), rendered)?;
    let json = manifest.to_json()?;
    let manifest_path = staging.path().join(MANIFEST_PATH);
    if let Some(p) = manifest_path.parent() {
        fs_err::create_dir_all(p)?;
    }
    fs_err::write(&manifest_path, json)?;
    for (rel, text) in &rendered.files {
        let path = staging.path().join(rel);
        if let Some(p) = path.parent() {
            fs_err::create_dir_all(p)?;
        }
        fs_err::write(&path, text)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    fs_err::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))?;

    if out.exists() && fs_err::read_dir(out)?.next().is_some() {
        // Swap the old render out, the new one in, then drop the old one.
        let old = tempfile::Builder::new()
            .prefix(".nixarr-old-")
            .tempdir_in(&parent)?;
        let old_path = old.path().join("old");
        fs_err::rename(out, &old_path)?;
        if let Err(e) = fs_err::rename(staging.path(), out) {
            // Put the previous render back before reporting.
            fs_err::rename(&old_path, out)?;
            return Err(e.into());
        }
        drop(old);
    } else {
        fs_err::rename(staging.path(), out)?;
    }
    // The staging directory has been moved; nothing is left to clean up.
    let _ = staging.keep();
    Ok(())
}
