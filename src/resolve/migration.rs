//! A service's migration from a native NixOS service: which unit, which
//! data, where it goes.

use super::check::Ctx;
use crate::catalog::Preset;
use crate::error::SpecError;
use crate::model::Migration;
use crate::spec::MigrationSpec;

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
