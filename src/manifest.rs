//! The manifest: what `status`, `nixarr-migrate` and the health tools read to
//! learn which services exist, their units, ports, probes and data. Written
//! by `render` to `share/nixarr-units/manifest.json` (installed as
//! `/etc/nixarr-units/manifest.json` by the NixOS module) and by the
//! generator to `/run/nixarr-units/manifest.json`.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::error::UsageError;
use crate::model::{Health, Migration, Port, Secret, Volume};
use crate::spec::{Backend, Protocol};

pub const MANIFEST_VERSION: u64 = 1;
/// Where the NixOS module installs the manifest.
pub const ETC_MANIFEST: &str = "/etc/nixarr-units/manifest.json";
/// Where the generator writes it.
pub const RUN_MANIFEST: &str = "/run/nixarr-units/manifest.json";

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishedPort {
    pub host: u16,
    pub container: u16,
    pub protocol: Protocol,
    pub address: Option<std::net::IpAddr>,
    pub via: Option<String>,
}

impl PublishedPort {
    pub fn new(p: &Port, via: Option<String>) -> Self {
        PublishedPort {
            host: p.host,
            container: p.container,
            protocol: p.protocol,
            address: p.address,
            via,
        }
    }
}

impl Manifest {
    pub fn new(stacks: Vec<StackManifest>) -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            generator: format!("nixarr-units {}", env!("CARGO_PKG_VERSION")),
            stacks,
        }
    }

    /// Pretty JSON with a trailing newline; key order is fixed by the types
    /// and by sorted maps, so the bytes are deterministic.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut s = serde_json::to_string_pretty(self)?;
        s.push('\n');
        Ok(s)
    }
}

/// Read the manifest: `explicit` if given, else the NixOS one, else the
/// generator's.
pub fn load(explicit: Option<&Path>) -> Result<(PathBuf, Manifest)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let found = [ETC_MANIFEST, RUN_MANIFEST]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists());
            match found {
                Some(p) => p,
                None => bail!(
                    "no manifest at {ETC_MANIFEST} or {RUN_MANIFEST}: enable \
                     services.nixarr-units on NixOS, or put a spec in /etc/nixarr-units/ and run \
                     `systemctl daemon-reload` (or pass --manifest)"
                ),
            }
        }
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if explicit.is_some() && e.kind() == std::io::ErrorKind::NotFound => {
            return Err(UsageError(format!(
                "--manifest {}: no such file; give the manifest that `render` wrote \
                 (DIR/share/nixarr-units/manifest.json) or that the generator wrote ({RUN_MANIFEST})",
                path.display()
            ))
            .into());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the manifest {}", path.display()));
        }
    };
    let manifest: Manifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => {
            if looks_like_spec(&text) {
                return Err(UsageError(format!(
                    "{} is a spec, not a manifest; render it first (nixarr-units render --spec \
                     {} --out DIR) and pass DIR/share/nixarr-units/manifest.json, or put the spec \
                     in /etc/nixarr-units/ and let the generator write {RUN_MANIFEST}",
                    path.display(),
                    path.display()
                ))
                .into());
            }
            return Err(e).with_context(|| {
                format!(
                    "{} is not a manifest this nixarr-units understands; render it again with \
                     this version",
                    path.display()
                )
            });
        }
    };
    Ok((path, manifest))
}

/// A spec has `services` at the top and no `stacks`.
fn looks_like_spec(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| {
        v.get("stacks").is_none() && (v.get("services").is_some() || v.get("backend").is_some())
    })
}

impl Manifest {
    /// The stack with this prefix; `path` (where the manifest was read)
    /// names the file in the error.
    pub fn stack(&self, path: &Path, prefix: &str) -> Result<&StackManifest> {
        self.stacks
            .iter()
            .find(|s| s.prefix == prefix)
            .with_context(|| format!("{}: no stack `{prefix}`", path.display()))
    }

    /// Every service of every stack, with its stack.
    pub fn services(&self) -> impl Iterator<Item = (&StackManifest, &String, &ServiceManifest)> {
        self.stacks
            .iter()
            .flat_map(|st| st.services.iter().map(move |(n, s)| (st, n, s)))
    }
}
