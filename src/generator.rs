//! The systemd generator entry (systemd.generator(7)): at boot and at every
//! `daemon-reload`, render every spec in `/etc/nixarr-units/` into the
//! generator directory, as Podman's Quadlet does. Quiet on stdout, one
//! broken spec does not stop the others, non-zero exit when any failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::engine::Engine;
use crate::manifest::Manifest;
use crate::output::{write_atomic, write_units};
use crate::pipeline::{self, LoadOptions};
use crate::render::{Entry, Rendered};
use crate::resolve::parse_version;
use crate::spec::{Backend, Spec};

pub const DEFAULT_SPEC_DIR: &str = "/etc/nixarr-units";

pub struct GeneratorConfig {
    pub normal_dir: PathBuf,
    pub spec_dir: PathBuf,
    pub manifest_path: PathBuf,
    pub self_exe: String,
    /// Where the host's own units live: a generated unit of the same name
    /// would shadow (or be shadowed by) one of them.
    pub system_unit_dirs: Vec<PathBuf>,
}

/// The unit directories of systemd.unit(5)'s system search path that hold
/// installed units (the generator directories are ours).
pub const SYSTEM_UNIT_DIRS: &str = "/etc/systemd/system:/run/systemd/system:/usr/local/lib/systemd/system:/usr/lib/systemd/system:/lib/systemd/system";

/// The first installed unit file with one of the names this spec renders,
/// and where. A mask (a symlink to /dev/null, from `systemctl mask`) is the
/// host's choice about our unit and does not count.
fn existing_unit(rendered: &Rendered, dirs: &[PathBuf]) -> Option<(String, PathBuf)> {
    rendered
        .units
        .keys()
        .filter(|k| !k.contains('/'))
        .find_map(|name| {
            dirs.iter().map(|d| d.join(name)).find_map(|p| {
                let meta = std::fs::symlink_metadata(&p).ok()?;
                let masked = meta.file_type().is_symlink()
                    && std::fs::read_link(&p).is_ok_and(|t| t == Path::new("/dev/null"));
                (!masked).then(|| (name.clone(), p))
            })
        })
}

/// The engine the units will call and its version, when the spec leaves
/// them out: the backend's binary found on `PATH`, asked for its version
/// (podman's decides between `--sdnotify=healthy` and the `ExecStartPost=`
/// health gate). Returns a note for the user when there is no engine to
/// ask: the units are then rendered for the newest supported version.
pub fn detect_engine(spec: &mut Spec) -> Option<String> {
    let name = spec.backend.name();
    if spec.engine.path.is_none() {
        spec.engine.path = find_on_path(name).and_then(|p| p.to_str().map(str::to_owned));
    }
    if spec.engine.version.is_some() || spec.backend != Backend::Podman {
        return None;
    }
    let newest = "rendering for podman 5, the newest supported version; if the units are for \
                  another podman, set \"engine\": {\"version\": \"4.3.1\"} (its `podman \
                  --version`) in the spec";
    let Some(path) = spec.engine.path.clone() else {
        return Some(format!("no {name} found on PATH: {newest}"));
    };
    match Engine::new(spec.backend, path.clone()).version().output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            if parse_version(&text).is_some() {
                spec.engine.version = Some(text.trim().to_owned());
                None
            } else {
                Some(format!(
                    "`{path} --version` printed no version ({:?}): {newest}",
                    text.trim()
                ))
            }
        }
        Ok(out) => Some(format!(
            "`{path} --version` failed ({}): {newest}",
            out.status
        )),
        Err(e) => Some(format!(
            "cannot run `{path} --version` ({}): {newest}",
            e.root_cause()
        )),
    }
}

/// The first executable `name` in `$PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Spec files in `dir`: every `*.json` but the NixOS-installed manifest.
pub fn spec_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let path = entry?.path();
        let is_json = path.extension().is_some_and(|e| e == "json");
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let is_manifest = name.as_deref() == Some("manifest.json");
        let is_lock = name.is_some_and(|n| n.ends_with(".lock.json"));
        if is_json && !is_manifest && !is_lock {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Run the generator; returns the number of specs that failed.
pub fn run(cfg: &GeneratorConfig) -> Result<usize> {
    let mut failed = 0;
    let mut units: BTreeMap<String, (Entry, PathBuf)> = BTreeMap::new();
    let mut stacks = Vec::new();
    for path in spec_files(&cfg.spec_dir)? {
        let loaded = pipeline::load(
            &path,
            &LoadOptions {
                self_exe: &cfg.self_exe,
                record_source: true,
            },
        );
        let rendered = match loaded {
            Ok(l) => {
                for note in l.notes.iter().chain(&l.warnings) {
                    tracing::warn!("{note}");
                }
                l.rendered
            }
            Err(e) => {
                tracing::error!("{e:#}");
                failed += 1;
                continue;
            }
        };
        if let Some((name, at)) = existing_unit(&rendered, &cfg.system_unit_dirs) {
            tracing::error!(
                "{}: unit {name} already exists as {}; the generated one would shadow it or be \
                 shadowed by it. Give the spec another `prefix` (or rename the service), or \
                 remove {} if it is a leftover",
                path.display(),
                at.display(),
                at.display()
            );
            failed += 1;
            continue;
        }
        // Two specs must not write the same unit (same prefix).
        if let Some((name, (_, other))) = rendered
            .units
            .keys()
            .filter(|k| !k.contains('/'))
            .find_map(|k| units.get_key_value(k))
        {
            tracing::error!(
                "{}: unit {name} is also generated from {}; give one of the specs another prefix",
                path.display(),
                other.display()
            );
            failed += 1;
            continue;
        }
        for (name, entry) in &rendered.units {
            units.insert(name.clone(), (entry.clone(), path.clone()));
        }
        write_units(&cfg.normal_dir, &rendered)
            .with_context(|| format!("writing units of {}", path.display()))?;
        stacks.push(rendered.manifest);
    }
    let manifest = Manifest::new(stacks);
    write_atomic(&cfg.manifest_path, manifest.to_json()?.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", cfg.manifest_path.display()))?;
    Ok(failed)
}
