//! Manifest version 1, the on-disk format. These types are the format:
//! they are not the resolved model ([`crate::model`]), which may change
//! freely; the `From` conversions at the end of this file are the only
//! place the two meet. Read the version policy in [`super`] before
//! changing anything here.
//!
//! Field names and serde attributes reproduce the manifests written since
//! version 1 began, byte for byte (including the snake_case fields of a
//! probe); `tests::v1_round_trips_byte_for_byte` pins them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::spec::{Backend, PodmanSecretType, Protocol, SecretMode};

/// The version these types read and write.
pub const VERSION: u64 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub version: u64,
    /// The nixarr-units version that wrote it.
    pub generator: String,
    pub stacks: Vec<StackManifest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackManifest {
    pub prefix: String,
    pub backend: Backend,
    pub engine: String,
    pub target: String,
    pub network: String,
    pub network_unit: String,
    pub services: BTreeMap<String, ServiceManifest>,
    /// The image lock the units were rendered with (`update` writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_lock: Option<String>,
    /// The spec's own profiles (`start --profile NAME`); the catalog apps'
    /// profiles come from the catalog (see [`crate::profiles`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceManifest {
    pub unit: String,
    pub container: String,
    pub app: Option<String>,
    pub description: String,
    pub image: String,
    /// The digest the unit runs `image` at, from the image lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The image is loaded from a file (`imageFile`): never pulled,
    /// updated or locked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub image_file: bool,
    /// Ports as published on the host; `via` names the container that
    /// publishes them when it is not this one (VPN).
    pub ports: Vec<PublishedPort>,
    pub volumes: Vec<Volume>,
    pub config_dir: Option<String>,
    pub depends_on: Vec<String>,
    pub vpn: bool,
    pub health: Option<Health>,
    /// Secrets by name, source path and delivery (never values).
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// The secret bridge unit, when there are secrets.
    #[serde(default)]
    pub secrets_unit: Option<String>,
    pub config_hash: String,
    pub uid: u64,
    pub gid: u64,
    pub migration: Option<Migration>,
    /// What `backup` copies; absent for a service left out of backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
}

/// What a backup of the service copies: below `root`, only `paths` (all
/// when empty), not `exclude`; `databases` through SQLite's backup API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backup {
    pub root: String,
    pub databases: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishedPort {
    pub host: u16,
    pub container: u16,
    pub protocol: Protocol,
    pub address: Option<IpAddr>,
    pub via: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub host: String,
    pub container: String,
    pub read_only: bool,
    pub create: bool,
}

/// The container's health check and the host's probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The command the engine runs inside the container.
    pub cmd: Option<String>,
    /// The probe run from the host against a published port.
    pub probe: Option<Probe>,
    pub interval: String,
    pub timeout: String,
    pub retries: u64,
    pub start_period: String,
}

/// A probe run from the host against a published port. (`rename_all`
/// names the variants; the fields stay snake_case, as written since v1.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Probe {
    Http {
        url: String,
        method: String,
        expect_status: Option<u16>,
        expect_body: Option<String>,
    },
    Tcp {
        address: String,
    },
}

/// One secret: which variable, from which file, delivered how. Only paths,
/// never values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub source: String,
    pub mode: SecretMode,
    /// `file`: the variable that carries the path inside the container.
    pub path_env: Option<String>,
    /// `podmanSecret`: env or mount.
    pub podman_secret_type: Option<PodmanSecretType>,
}

/// How to move the service from its native NixOS unit into the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    pub legacy_units: Vec<String>,
    pub legacy_data_dir: String,
    pub target_dir: String,
    /// Owner of the container's config directory.
    pub uid: u64,
    pub gid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy: Option<Legacy>,
    pub path_map: Vec<PathMap>,
    pub databases: Vec<String>,
}

/// The native service as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Legacy {
    pub units: Vec<String>,
    pub data_dir: String,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub dynamic_user: bool,
    pub nixarr: NixarrLegacy,
    pub databases: Vec<String>,
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

/// Where a part of the native tree goes in the container's config dir.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathMap {
    pub from: String,
    pub to: String,
}

// From the resolved model. Each conversion destructures its source whole,
// so a field added to the model does not compile until it is either
// written here (a compatible change, see the policy) or left out on
// purpose.

impl From<&crate::model::BackupFacts> for Backup {
    fn from(b: &crate::model::BackupFacts) -> Self {
        let crate::model::BackupFacts {
            root,
            databases,
            paths,
            exclude,
        } = b;
        Backup {
            root: root.clone(),
            databases: databases.clone(),
            paths: paths.clone(),
            exclude: exclude.clone(),
        }
    }
}

impl From<&Backup> for crate::model::BackupFacts {
    fn from(b: &Backup) -> Self {
        let Backup {
            root,
            databases,
            paths,
            exclude,
        } = b;
        crate::model::BackupFacts {
            root: root.clone(),
            databases: databases.clone(),
            paths: paths.clone(),
            exclude: exclude.clone(),
        }
    }
}

impl From<&crate::model::Port> for PublishedPort {
    fn from(p: &crate::model::Port) -> Self {
        let crate::model::Port {
            host,
            container,
            protocol,
            address,
        } = *p;
        PublishedPort {
            host,
            container,
            protocol,
            address,
            via: None,
        }
    }
}

impl From<&crate::model::Volume> for Volume {
    fn from(v: &crate::model::Volume) -> Self {
        let crate::model::Volume {
            host,
            container,
            read_only,
            create,
        } = v;
        Volume {
            host: host.clone(),
            container: container.clone(),
            read_only: *read_only,
            create: *create,
        }
    }
}

impl From<&crate::model::Health> for Health {
    fn from(h: &crate::model::Health) -> Self {
        let crate::model::Health {
            cmd,
            probe,
            interval,
            timeout,
            retries,
            start_period,
        } = h;
        Health {
            cmd: cmd.clone(),
            probe: probe.as_ref().map(Probe::from),
            interval: interval.clone(),
            timeout: timeout.clone(),
            retries: *retries,
            start_period: start_period.clone(),
        }
    }
}

impl From<&crate::model::Probe> for Probe {
    fn from(p: &crate::model::Probe) -> Self {
        match p {
            crate::model::Probe::Http {
                url,
                method,
                expect_status,
                expect_body,
            } => Probe::Http {
                url: url.clone(),
                method: method.clone(),
                expect_status: *expect_status,
                expect_body: expect_body.clone(),
            },
            crate::model::Probe::Tcp { address } => Probe::Tcp {
                address: address.clone(),
            },
        }
    }
}

impl From<&crate::model::Secret> for Secret {
    fn from(s: &crate::model::Secret) -> Self {
        let crate::model::Secret {
            name,
            source,
            mode,
            path_env,
            podman_secret_type,
        } = s;
        Secret {
            name: name.clone(),
            source: source.clone(),
            mode: *mode,
            path_env: path_env.clone(),
            podman_secret_type: *podman_secret_type,
        }
    }
}

impl From<&crate::model::Migration> for Migration {
    fn from(m: &crate::model::Migration) -> Self {
        let crate::model::Migration {
            legacy_units,
            legacy_data_dir,
            target_dir,
            uid,
            gid,
            legacy,
            path_map,
            databases,
        } = m;
        Migration {
            legacy_units: legacy_units.clone(),
            legacy_data_dir: legacy_data_dir.clone(),
            target_dir: target_dir.clone(),
            uid: *uid,
            gid: *gid,
            legacy: legacy.as_ref().map(Legacy::from),
            path_map: path_map.iter().map(PathMap::from).collect(),
            databases: databases.clone(),
        }
    }
}

impl From<&crate::catalog::Legacy> for Legacy {
    fn from(l: &crate::catalog::Legacy) -> Self {
        let crate::catalog::Legacy {
            units,
            data_dir,
            uid,
            gid,
            dynamic_user,
            nixarr,
            databases,
            path_map,
        } = l;
        let crate::catalog::NixarrLegacy {
            state_dir,
            uid: nixarr_uid,
            gid: nixarr_gid,
        } = nixarr;
        Legacy {
            units: units.clone(),
            data_dir: data_dir.clone(),
            uid: *uid,
            gid: *gid,
            dynamic_user: *dynamic_user,
            nixarr: NixarrLegacy {
                state_dir: state_dir.clone(),
                uid: *nixarr_uid,
                gid: *nixarr_gid,
            },
            databases: databases.clone(),
            path_map: path_map.iter().map(PathMap::from).collect(),
        }
    }
}

impl From<&crate::catalog::PathMap> for PathMap {
    fn from(p: &crate::catalog::PathMap) -> Self {
        let crate::catalog::PathMap { from, to } = p;
        PathMap {
            from: from.clone(),
            to: to.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of v1, as the example spec and an image lock render it.
    const FULL: &str = include_str!("v1-full.json");

    /// The v1 format is pinned: a v1 manifest reads and writes back byte
    /// for byte. A change here is a format change; see the version policy
    /// in `manifest/mod.rs` before touching the fixture.
    #[test]
    fn v1_round_trips_byte_for_byte() {
        let m: Manifest = serde_json::from_str(FULL).expect("the v1 fixture parses");
        assert_eq!(m.version, VERSION);
        let mut again = serde_json::to_string_pretty(&m).expect("serialize");
        again.push('\n');
        assert_eq!(again, FULL);
    }

    /// The fixture covers every optional field, so the round trip above
    /// checks each one's name and form.
    #[test]
    fn the_fixture_has_every_field() {
        let m: Manifest = serde_json::from_str(FULL).expect("the v1 fixture parses");
        let svcs = || m.stacks.iter().flat_map(|s| s.services.values());
        assert!(m.stacks.iter().any(|s| s.image_lock.is_some()));
        assert!(m.stacks.iter().any(|s| !s.profiles.is_empty()));
        assert!(svcs().any(|s| s.image_digest.is_some()));
        assert!(svcs().any(|s| !s.secrets.is_empty() && s.secrets_unit.is_some()));
        assert!(svcs().any(|s| s.migration.as_ref().is_some_and(|m| m.legacy.is_some())));
        assert!(svcs().any(|s| s.ports.iter().any(|p| p.via.is_some())));
        let probes: Vec<_> = svcs()
            .filter_map(|s| s.health.as_ref()?.probe.as_ref())
            .collect();
        assert!(probes.iter().any(|p| matches!(p, Probe::Http { .. })));
        assert!(probes.iter().any(|p| matches!(p, Probe::Tcp { .. })));
    }
}
