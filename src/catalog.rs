//! App presets. One JSON file per app under `modules/catalog/`, read by the
//! NixOS module (`builtins.fromJSON`) and embedded here, so both sides agree.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::spec::{DeviceSpec, HealthSpec, Protocol};

/// The embedded data files, by app name (sorted).
const FILES: &[(&str, &str)] = &[
    ("bazarr", include_str!("../modules/catalog/bazarr.json")),
    ("gluetun", include_str!("../modules/catalog/gluetun.json")),
    ("jellyfin", include_str!("../modules/catalog/jellyfin.json")),
    ("lidarr", include_str!("../modules/catalog/lidarr.json")),
    ("prowlarr", include_str!("../modules/catalog/prowlarr.json")),
    (
        "qbittorrent",
        include_str!("../modules/catalog/qbittorrent.json"),
    ),
    ("radarr", include_str!("../modules/catalog/radarr.json")),
    ("sabnzbd", include_str!("../modules/catalog/sabnzbd.json")),
    ("seerr", include_str!("../modules/catalog/seerr.json")),
    ("sonarr", include_str!("../modules/catalog/sonarr.json")),
    (
        "transmission",
        include_str!("../modules/catalog/transmission.json"),
    ),
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Preset {
    /// The group of apps it belongs to (`start --profile NAME`): core,
    /// music, subtitles, media, requests, downloads, vpn.
    pub profile: String,
    pub description: String,
    pub homepage: String,
    pub documentation: String,
    pub image: String,
    pub ports: Vec<PresetPort>,
    /// Container path of the app's config directory; its host side is
    /// `<paths.stateDir>/<service>`.
    pub config_dir: String,
    /// Mount the media tree (`paths.dataDir`) at the same path inside.
    pub mounts_data: bool,
    /// A LinuxServer.io image: gets PUID, PGID, TZ and UMASK.
    pub linuxserver: bool,
    /// How the image reads a variable from a file: the name of the variable
    /// that holds the path, with `{name}` for the variable
    /// (`FILE__{name}` for LinuxServer.io images, `{name}_SECRETFILE` for
    /// Gluetun). Secrets default to `file` delivery when it is set.
    pub secret_file_env: Option<String>,
    /// Fixed uid/gid the image runs as (images without PUID/PGID).
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    #[serde(default)]
    pub init: bool,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    pub health: Option<HealthSpec>,
    /// Facts about the native NixOS service, for migration.
    pub legacy: Option<Legacy>,
    /// What a backup copies, relative to the config directory.
    pub backup: Option<PresetBackup>,
    /// The variable that sets the app's URL base (for a reverse proxy's
    /// sub-path); none when the container cannot be told one.
    pub url_base_env: Option<String>,
}

/// A catalog app's backup: its SQLite databases and what to leave out
/// (paths relative to its config directory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PresetBackup {
    pub databases: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PresetPort {
    pub name: String,
    pub container: u64,
    pub host: Option<u64>,
    #[serde(default)]
    pub protocol: Protocol,
    pub address: Option<String>,
}

/// The native (nixpkgs or nixarr) service an app can be migrated from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Legacy {
    /// Unit names the native service has been known by, most common first.
    pub units: Vec<String>,
    /// The nixpkgs module's data directory.
    pub data_dir: String,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    /// The native unit uses DynamicUser= (data under /var/lib/private).
    pub dynamic_user: bool,
    /// nixarr's layout for the same app.
    pub nixarr: NixarrLegacy,
    /// SQLite databases (relative paths) to copy with their -wal/-shm files.
    pub databases: Vec<String>,
    /// Where parts of the native tree go in the container's config dir;
    /// first match wins, `.` is the whole tree. Empty means 1:1.
    #[serde(default)]
    pub path_map: Vec<PathMap>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NixarrLegacy {
    pub state_dir: String,
    pub uid: u64,
    pub gid: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathMap {
    pub from: String,
    pub to: String,
}

fn load() -> Result<BTreeMap<&'static str, Preset>> {
    FILES
        .iter()
        .map(|(name, text)| {
            let preset: Preset = serde_json::from_str(text).with_context(|| {
                format!("embedded catalog file modules/catalog/{name}.json is invalid (a build defect; please report it)")
            })?;
            Ok((*name, preset))
        })
        .collect()
}

/// All presets, parsed once.
pub fn catalog() -> Result<&'static BTreeMap<&'static str, Preset>> {
    static CATALOG: OnceLock<Result<BTreeMap<&'static str, Preset>, String>> = OnceLock::new();
    CATALOG
        .get_or_init(|| load().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Names of every app in the catalog.
pub fn app_names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(name, _)| *name)
}

/// One app as `catalog` shows it: its preset, and the volumes it gets with
/// the default `paths` (its config directory under `stateDir`, the media
/// tree when it mounts it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub name: &'static str,
    #[serde(flatten)]
    pub preset: &'static Preset,
    pub volumes: Vec<crate::model::Volume>,
}

impl Entry {
    fn new(name: &'static str, preset: &'static Preset) -> Self {
        let paths = crate::spec::Paths::default();
        let mut volumes = vec![crate::model::Volume {
            host: format!("{}/{name}", paths.state_dir),
            container: preset.config_dir.clone(),
            read_only: false,
            create: true,
        }];
        if preset.mounts_data {
            volumes.push(crate::model::Volume {
                host: paths.data_dir.clone(),
                container: paths.data_dir,
                read_only: false,
                create: false,
            });
        }
        Entry {
            name,
            preset,
            volumes,
        }
    }
}

/// Every app, sorted by name.
pub fn entries() -> Result<Vec<Entry>> {
    Ok(catalog()?.iter().map(|(n, p)| Entry::new(n, p)).collect())
}

/// One app; an unknown name is a usage error naming the nearest and all.
pub fn entry(name: &str) -> Result<Entry> {
    let cat = catalog()?;
    match cat.get_key_value(name) {
        Some((n, p)) => Ok(Entry::new(n, p)),
        None => {
            let hint = app_names()
                .map(|k| (strsim::jaro_winkler(name, k), k))
                .filter(|(s, _)| *s > 0.75)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!("did you mean `{k}`? "))
                .unwrap_or_default();
            Err(crate::error::UsageError(format!(
                "no app `{name}` in the catalog; {hint}known apps: {}",
                app_names().collect::<Vec<_>>().join(", ")
            ))
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_file_parses_and_is_listed_once() {
        let cat = catalog().unwrap();
        assert_eq!(cat.len(), FILES.len());
        let on_disk: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/modules/catalog"))
                .unwrap()
                .map(|e| {
                    e.unwrap()
                        .file_name()
                        .to_string_lossy()
                        .trim_end_matches(".json")
                        .to_owned()
                })
                .collect();
        for name in &on_disk {
            assert!(cat.contains_key(name.as_str()), "{name} not embedded");
        }
        assert_eq!(on_disk.len(), FILES.len());
    }

    #[test]
    fn qbittorrent_and_sabnzbd_do_not_share_a_host_port() {
        let cat = catalog().unwrap();
        let host = |app: &str| {
            let p = &cat[app].ports[0];
            p.host.unwrap_or(p.container)
        };
        assert_ne!(host("qbittorrent"), host("sabnzbd"));
    }
}
