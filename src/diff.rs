//! `diff`: what a render would change in an installed unit directory (the
//! generator's, NixOS's `/etc/systemd/system`, or a `render --out` tree),
//! as a unified diff per unit, and which services it would restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use similar::TextDiff;

use crate::manifest::StackManifest;
use crate::render::Entry;

/// How a unit file differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Rendered, not installed.
    Added,
    /// Installed, no longer rendered.
    Removed,
    /// Both, with other contents (or a link to elsewhere).
    Changed,
}

/// One unit file (or `.wants` link) that would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Path relative to the unit directory (`nixarr-sonarr.service`,
    /// `multi-user.target.wants/nixarr.target`).
    pub unit: String,
    pub kind: Kind,
    /// The unified diff (installed → rendered).
    pub diff: String,
}

/// A file of the installed directory as the comparison sees it: a link's
/// target, or a file's text.
fn installed_entry(path: &Path) -> Result<Option<Entry>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if meta.file_type().is_symlink() {
        let target = fs_err::read_link(path)?;
        // NixOS links unit files into /etc/systemd/system from the store:
        // compare the file, not where it lives.
        if path.extension().is_some() && !is_wants_link(path) {
            let text = fs_err::read_to_string(path)?;
            return Ok(Some(Entry::File(text)));
        }
        return Ok(Some(Entry::Symlink(target.to_string_lossy().into_owned())));
    }
    Ok(Some(Entry::File(fs_err::read_to_string(path)?)))
}

fn is_wants_link(path: &Path) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d.to_string_lossy().ends_with(".wants"))
}

/// Whether a unit file name belongs to the stack with this prefix.
fn owned(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('.') || rest.starts_with('@'))
}

/// The stack's files in an installed unit directory, relative paths: its
/// units and its links in `*.wants/` directories.
fn installed_names(dir: &Path, prefix: &str) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".wants") && e.path().is_dir() {
            for link in fs_err::read_dir(e.path())? {
                let link = link?.file_name().to_string_lossy().into_owned();
                if owned(&link, prefix) {
                    out.insert(format!("{name}/{link}"));
                }
            }
        } else if owned(&name, prefix) {
            out.insert(name);
        }
    }
    Ok(out)
}

fn text_of(e: &Entry) -> String {
    match e {
        Entry::File(t) => t.clone(),
        Entry::Symlink(target) => format!("-> {target}\n"),
    }
}

/// Compare rendered units with those installed in `dir` (the stack's files
/// only, by its prefix). `label` names the rendered side in the headers.
pub fn compare(
    rendered: &BTreeMap<String, Entry>,
    dir: &Path,
    prefix: &str,
    label: &str,
) -> Result<Vec<Change>> {
    let mut names: BTreeSet<String> = installed_names(dir, prefix)?;
    names.extend(rendered.keys().cloned());
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let old = installed_entry(&path)?;
        let new = rendered.get(&name);
        let kind = match (&old, new) {
            (None, None) => continue,
            (Some(o), Some(n)) if o == n => continue,
            (None, Some(_)) => Kind::Added,
            (Some(_), None) => Kind::Removed,
            (Some(_), Some(_)) => Kind::Changed,
        };
        let old_text = old.as_ref().map(text_of).unwrap_or_default();
        let new_text = new.map(text_of).unwrap_or_default();
        let a = if old.is_some() {
            path.display().to_string()
        } else {
            "/dev/null".to_owned()
        };
        let b = if new.is_some() {
            format!("{label}/{name}")
        } else {
            "/dev/null".to_owned()
        };
        let diff = TextDiff::from_lines(&old_text, &new_text)
            .unified_diff()
            .context_radius(3)
            .header(&a, &b)
            .to_string();
        out.push(Change {
            unit: name,
            kind,
            diff,
        });
    }
    Ok(out)
}

/// The services whose container unit or secret bridge changes, by name
/// with their unit: a running one would be restarted by `reload`.
pub fn affected_services(changes: &[Change], stack: &StackManifest) -> Vec<(String, String)> {
    let changed: BTreeSet<&str> = changes
        .iter()
        .filter(|c| c.kind == Kind::Changed)
        .map(|c| c.unit.as_str())
        .collect();
    stack
        .services
        .iter()
        .filter(|(_, s)| {
            changed.contains(s.unit.as_str())
                || s.secrets_unit
                    .as_deref()
                    .is_some_and(|u| changed.contains(u))
        })
        .map(|(n, s)| (n.clone(), s.unit.clone()))
        .collect()
}

/// Where the stack's units are installed when `--against` is not given:
/// NixOS's unit directory when the NixOS manifest exists, else the
/// generator's.
pub fn default_unit_dir() -> PathBuf {
    if Path::new(crate::manifest::ETC_MANIFEST).is_file() {
        PathBuf::from("/etc/systemd/system")
    } else {
        PathBuf::from(GENERATOR_DIR)
    }
}

/// systemd's "normal" generator directory, where the generator writes.
pub const GENERATOR_DIR: &str = "/run/systemd/generator";

/// The unit directory of `dir`: a `render --out` tree's
/// `lib/systemd/system`, or `dir` itself.
pub fn unit_dir_of(dir: &Path) -> PathBuf {
    let inner = dir.join(crate::render::UNIT_DIR);
    if inner.is_dir() {
        inner
    } else {
        dir.to_path_buf()
    }
}

/// The `SourcePath=` the installed units were generated with, so that a
/// render for comparison writes the same line (the generator sets it to
/// the spec's path; a spec given by another path is the same spec).
pub fn installed_source_path(dir: &Path, rendered: &BTreeMap<String, Entry>) -> Option<String> {
    rendered
        .iter()
        .filter(|(_, e)| matches!(e, Entry::File(_)))
        .find_map(|(name, _)| {
            let text = std::fs::read_to_string(dir.join(name)).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("SourcePath=").map(str::to_owned))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(pairs: &[(&str, &str)]) -> BTreeMap<String, Entry> {
        pairs
            .iter()
            .map(|(k, v)| {
                let e = match v.strip_prefix("-> ") {
                    Some(t) => Entry::Symlink(t.to_owned()),
                    None => Entry::File((*v).to_owned()),
                };
                ((*k).to_owned(), e)
            })
            .collect()
    }

    #[test]
    fn a_changed_an_added_and_a_removed_unit_each_get_a_diff_others_are_left_out() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("nixarr-a.service"), "[Unit]\nA=1\n").unwrap();
        std::fs::write(d.join("nixarr-gone.service"), "[Unit]\n").unwrap();
        std::fs::write(d.join("nixarr.target"), "T\n").unwrap();
        std::fs::write(d.join("other.service"), "not ours\n").unwrap();
        std::fs::write(d.join("nixarrx.service"), "not ours either\n").unwrap();
        std::fs::create_dir(d.join("multi-user.target.wants")).unwrap();
        std::os::unix::fs::symlink(
            "../nixarr.target",
            d.join("multi-user.target.wants/nixarr.target"),
        )
        .unwrap();
        let new = units(&[
            ("nixarr-a.service", "[Unit]\nA=2\n"),
            ("nixarr-b.service", "[Unit]\nB=1\n"),
            ("nixarr.target", "T\n"),
            (
                "multi-user.target.wants/nixarr.target",
                "-> ../nixarr.target",
            ),
        ]);
        let c = compare(&new, d, "nixarr", "rendered").unwrap();
        let kinds: Vec<(&str, Kind)> = c.iter().map(|c| (c.unit.as_str(), c.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("nixarr-a.service", Kind::Changed),
                ("nixarr-b.service", Kind::Added),
                ("nixarr-gone.service", Kind::Removed),
            ]
        );
        let a = &c[0].diff;
        assert!(a.contains("-A=1\n+A=2\n"), "{a}");
        assert!(
            a.contains(&format!("--- {}", d.join("nixarr-a.service").display())),
            "{a}"
        );
        assert!(a.contains("+++ rendered/nixarr-a.service"), "{a}");
        assert!(c[1].diff.contains("--- /dev/null"), "{}", c[1].diff);
        assert!(c[2].diff.contains("+++ /dev/null"), "{}", c[2].diff);
    }

    #[test]
    fn identical_directories_compare_equal() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("nixarr-a.service"), "x\n").unwrap();
        let new = units(&[("nixarr-a.service", "x\n")]);
        assert!(compare(&new, t.path(), "nixarr", "r").unwrap().is_empty());
        // A directory that does not exist holds nothing: all is added.
        let c = compare(&new, &t.path().join("none"), "nixarr", "r").unwrap();
        assert_eq!(c[0].kind, Kind::Added);
    }
}
