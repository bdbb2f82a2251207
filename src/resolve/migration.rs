//! A service's data: its migration from a native NixOS service (which
//! unit, which data, where it goes) and what its backups copy.

use super::check::Ctx;
use crate::catalog::Preset;
use crate::error::SpecError;
use crate::model::{BackupFacts, Migration, Volume};
use crate::spec::{MigrationSpec, ServiceSpec};

pub(super) fn resolve_migration(
    cx: &Ctx,
    path: &str,
    migration: &Option<Option<MigrationSpec>>,
    preset: Option<&Preset>,
    config_dir: Option<&str>,
    uid: u64,
    gid: u64,
) -> Result<Option<Migration>, SpecError> {
    let given = match migration {
        Some(None) => return Ok(None),
        Some(Some(m)) => Some(m),
        None => None,
    };
    let legacy = preset.and_then(|p| p.legacy.clone());
    if given.is_none() && legacy.is_none() {
        return Ok(None);
    }
    let mp = format!("{path}.migration");
    let legacy_units = match given.and_then(|m| m.legacy_unit.clone()) {
        Some(u) => vec![u],
        None => legacy.as_ref().map(|l| l.units.clone()).unwrap_or_default(),
    };
    let Some(first_unit) = legacy_units.first() else {
        return Err(cx.err(
            format!("{mp}.legacyUnit"),
            "is missing; name the native unit to migrate from (e.g. \"sonarr.service\")",
        ));
    };
    let unit_ok = first_unit.ends_with(".service")
        && first_unit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'));
    if !unit_ok {
        return Err(cx.err(
            format!("{mp}.legacyUnit"),
            format!("`{first_unit}` is not a service unit name; write e.g. \"sonarr.service\""),
        ));
    }
    let legacy_data_dir = given
        .and_then(|m| m.legacy_data_dir.clone())
        .or_else(|| legacy.as_ref().map(|l| l.data_dir.clone()))
        .ok_or_else(|| {
            cx.err(
                format!("{mp}.legacyDataDir"),
                "is missing; give the native service's data directory",
            )
        })?;
    cx.host_path(format!("{mp}.legacyDataDir"), &legacy_data_dir)?;
    let target_dir = given
        .and_then(|m| m.target_dir.clone())
        .or_else(|| config_dir.map(str::to_owned))
        .ok_or_else(|| {
            cx.err(
                format!("{mp}.targetDir"),
                "is missing; give the host directory the container keeps its config in",
            )
        })?;
    cx.host_path(format!("{mp}.targetDir"), &target_dir)?;
    // A migration moves the target aside and swaps it: it must not hold the
    // native data, nor lie inside it.
    let within = |a: &str, b: &str| a == b || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'));
    if within(&legacy_data_dir, &target_dir) || within(&target_dir, &legacy_data_dir) {
        let key = if given.and_then(|m| m.target_dir.as_ref()).is_some() {
            format!("{mp}.targetDir")
        } else {
            "paths.stateDir".to_owned()
        };
        return Err(cx.err(
            key,
            format!(
                "the container's config directory {target_dir} and the native data \
                 {legacy_data_dir} overlap; a migration would move one with the other. Keep \
                 them apart (e.g. paths.stateDir \"/var/lib/nixarr\")"
            ),
        ));
    }
    Ok(Some(Migration {
        legacy_units,
        legacy_data_dir,
        target_dir,
        uid,
        gid,
        path_map: legacy
            .as_ref()
            .map(|l| l.path_map.clone())
            .unwrap_or_default(),
        databases: legacy
            .as_ref()
            .map(|l| l.databases.clone())
            .unwrap_or_default(),
        legacy,
    }))
}

/// A path inside the backed-up directory: relative, no `..`, `.` or `//`.
fn check_relative(cx: &Ctx, at: &str, value: &str) -> Result<(), SpecError> {
    cx.text(at, value)?;
    let bad = value.is_empty()
        || value.starts_with('/')
        || value.ends_with('/')
        || value.split('/').any(|c| matches!(c, "" | "." | ".."));
    if bad {
        return Err(cx.err(
            at,
            format!(
                "`{value}` is not a plain relative path; write it relative to backup.root, \
                 without `..`, `.`, `//` or a leading or trailing `/` (e.g. \"db/app.db\")"
            ),
        ));
    }
    Ok(())
}

/// What a backup of the service copies: the spec's `backup` over the
/// catalog app's. A service with neither, or `"backup": null`, has none.
pub(super) fn resolve_backup(
    cx: &Ctx,
    path: &str,
    svc: &ServiceSpec,
    preset: Option<&Preset>,
    config_dir: Option<&str>,
    volumes: &[Volume],
) -> Result<Option<BackupFacts>, SpecError> {
    let given = match &svc.backup {
        Some(None) => return Ok(None),
        Some(Some(b)) => Some(b),
        None => None,
    };
    let from_preset = preset.and_then(|p| p.backup.clone());
    if given.is_none() && from_preset.is_none() {
        return Ok(None);
    }
    let bp = format!("{path}.backup");
    let writable: Vec<&str> = volumes
        .iter()
        .filter(|v| !v.read_only)
        .map(|v| v.host.as_str())
        .collect();
    let root = match given.and_then(|b| b.root.clone()) {
        Some(r) => {
            cx.host_path(format!("{bp}.root"), &r)?;
            let mounted = volumes.iter().any(|v| {
                r == v.host
                    || r.strip_prefix(v.host.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            });
            if !mounted {
                return Err(cx.err(
                    format!("{bp}.root"),
                    format!(
                        "`{r}` is not a volume of this service (nor inside one); back up a \
                         directory the container writes: {}",
                        if writable.is_empty() {
                            "(it has none)".to_owned()
                        } else {
                            writable.join(", ")
                        }
                    ),
                ));
            }
            r
        }
        None => match (config_dir, writable.as_slice()) {
            (Some(c), _) => c.to_owned(),
            (None, [only]) => (*only).to_owned(),
            (None, []) => {
                return Err(cx.err(
                    &bp,
                    "the service has no writable volume to back up; add one, or set \
                     \"backup\": null",
                ));
            }
            (None, several) => {
                return Err(cx.err(
                    format!("{bp}.root"),
                    format!(
                        "is missing and the service writes to several volumes ({}); say which \
                         one to back up",
                        several.join(", ")
                    ),
                ));
            }
        },
    };
    let pick = |own: Option<&Vec<String>>, preset: Option<&Vec<String>>| {
        own.or(preset).cloned().unwrap_or_default()
    };
    let facts = BackupFacts {
        root,
        databases: pick(
            given.and_then(|b| b.databases.as_ref()),
            from_preset.as_ref().map(|b| &b.databases),
        ),
        paths: pick(
            given.and_then(|b| b.paths.as_ref()),
            from_preset.as_ref().map(|b| &b.paths),
        ),
        exclude: pick(
            given.and_then(|b| b.exclude.as_ref()),
            from_preset.as_ref().map(|b| &b.exclude),
        ),
    };
    for (key, list) in [
        ("databases", &facts.databases),
        ("paths", &facts.paths),
        ("exclude", &facts.exclude),
    ] {
        for (i, v) in list.iter().enumerate() {
            check_relative(cx, &format!("{bp}.{key}[{i}]"), v)?;
        }
    }
    Ok(Some(facts))
}
