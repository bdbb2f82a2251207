//! The manifest: what `status`, `nixarr-migrate` and the health tools read to
//! learn which services exist, their units, ports, probes and data. Written
//! by `render` to `share/nixarr-units/manifest.json` (installed as
//! `/etc/nixarr-units/manifest.json` by the NixOS module) and by the
//! generator to `/run/nixarr-units/manifest.json`.
//!
//! # Version policy
//!
//! The manifest is a contract between the binary that rendered the units
//! and the binaries that read it later (the units' helpers, `status`,
//! `heal`, `nixarr-migrate`), which may be newer. Its format is the types
//! of [`v1`], not the resolved model: the model converts into them with
//! `From`, so refactoring the model cannot change the file.
//!
//! - Compatible change (same version): a new field that is optional, read
//!   with `#[serde(default)]` and written only when set
//!   (`skip_serializing_if`), so manifests without it still read and
//!   manifests that do not use it stay byte-identical. Example: `imageLock`
//!   and `imageDigest`.
//! - Incompatible change (version + 1): renaming, removing or retyping a
//!   field, or giving an existing field a new meaning. Add `v2.rs` beside
//!   `v1.rs`, write v2, and read an older file by parsing it as its own
//!   version and converting up (`From<v1::Manifest> for v2::Manifest`), so
//!   a manifest rendered before an upgrade keeps working until the next
//!   render.
//! - A manifest of a version this binary does not know (newer) is refused
//!   with a message to render again with the newer binary.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::error::UsageError;

pub mod v1;

pub use v1::{
    Backup, Health, Legacy, Manifest, Migration, NixarrLegacy, PathMap, Probe, PublishedPort,
    Secret, ServiceManifest, StackManifest, Volume,
};

/// The version this binary writes.
pub const MANIFEST_VERSION: u64 = v1::VERSION;
/// Where the NixOS module installs the manifest.
pub const ETC_MANIFEST: &str = "/etc/nixarr-units/manifest.json";
/// Where the generator writes it.
pub const RUN_MANIFEST: &str = "/run/nixarr-units/manifest.json";

impl PublishedPort {
    /// A port of the model as published; `via` names the container that
    /// publishes it when it is not the service's own (VPN).
    pub fn new(p: &crate::model::Port, via: Option<String>) -> Self {
        PublishedPort {
            via,
            ..PublishedPort::from(p)
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
    check_version(&text, &path)?;
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

/// Read the manifest that holds the stack `prefix`: `explicit` if given,
/// else the first of the NixOS one and the generator's that has it (a host
/// can have both: stacks from the NixOS module and specs in
/// /etc/nixarr-units). For the helpers the units run, which know their
/// stack.
pub fn load_for_stack(explicit: Option<&Path>, prefix: &str) -> Result<(PathBuf, Manifest)> {
    if explicit.is_some() {
        return load(explicit);
    }
    let mut read = Vec::new();
    for path in [ETC_MANIFEST, RUN_MANIFEST].map(PathBuf::from) {
        if !path.exists() {
            continue;
        }
        let (path, manifest) = load(Some(&path))?;
        if manifest.stacks.iter().any(|s| s.prefix == prefix) {
            return Ok((path, manifest));
        }
        read.push(path.display().to_string());
    }
    if read.is_empty() {
        // load says where it looked and what to do.
        return load(None);
    }
    bail!(
        "no stack `{prefix}` in {}: render its spec again (or run `systemctl daemon-reload` for \
         a spec in /etc/nixarr-units/), or pass --manifest",
        read.join(" or ")
    )
}

/// Refuse a manifest of a version this binary cannot read. (There is one
/// version so far; an older one would be parsed as its own version and
/// converted up here.)
fn check_version(text: &str, path: &Path) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Versioned {
        version: u64,
    }
    match serde_json::from_str::<Versioned>(text) {
        Ok(Versioned { version }) if version != MANIFEST_VERSION => bail!(
            "{} is manifest version {version}; this nixarr-units ({}) reads version \
             {MANIFEST_VERSION}: render it again with this version, or use the nixarr-units \
             that wrote it",
            path.display(),
            env!("CARGO_PKG_VERSION")
        ),
        // No version at all: the parse below says what is wrong.
        _ => Ok(()),
    }
}

/// A spec has `services` at the top and no `stacks`.
fn looks_like_spec(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| {
        v.get("stacks").is_none() && (v.get("services").is_some() || v.get("backend").is_some())
    })
}

impl Manifest {
    /// The stack with this prefix, as `--stack PREFIX` names it; `path`
    /// (where the manifest was read) names the file in the error, a usage
    /// error that lists the stacks there are.
    pub fn stack(&self, path: &Path, prefix: &str) -> Result<&StackManifest> {
        self.stacks
            .iter()
            .find(|s| s.prefix == prefix)
            .ok_or_else(|| {
                let has = if self.stacks.is_empty() {
                    "it has none".to_owned()
                } else {
                    let prefixes: Vec<&str> =
                        self.stacks.iter().map(|s| s.prefix.as_str()).collect();
                    format!("it has: {}", prefixes.join(", "))
                };
                UsageError(format!(
                    "--stack {prefix}: {} has no such stack ({has}); give one of them",
                    path.display()
                ))
                .into()
            })
    }

    /// Every service of every stack, with its stack.
    pub fn services(&self) -> impl Iterator<Item = (&StackManifest, &String, &ServiceManifest)> {
        self.stacks
            .iter()
            .flat_map(|st| st.services.iter().map(move |(n, s)| (st, n, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Manifest> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("manifest.json");
        std::fs::write(&path, text)?;
        load(Some(&path)).map(|(_, m)| m)
    }

    #[test]
    fn a_newer_version_is_refused_with_what_to_do() {
        let e =
            load_text(r#"{"version": 2, "generator": "nixarr-units 9", "stacks": [], "new": 1}"#)
                .expect_err("version 2 is not read");
        let msg = format!("{e:#}");
        assert!(msg.contains("manifest version 2"), "{msg}");
        assert!(msg.contains("render it again"), "{msg}");
    }

    #[test]
    fn an_unknown_stack_is_a_usage_error_listing_the_stacks() {
        let m = load_text(include_str!("v1-full.json")).expect("v1 reads");
        let path = Path::new("/m.json");
        let first = m.stacks.first().map(|s| s.prefix.clone()).expect("a stack");
        assert_eq!(m.stack(path, &first).expect("found").prefix, first);
        let e = m.stack(path, "nope").expect_err("no stack nope");
        assert!(e.is::<UsageError>(), "{e:#}");
        let prefixes: Vec<&str> = m.stacks.iter().map(|s| s.prefix.as_str()).collect();
        assert_eq!(
            format!("{e:#}"),
            format!(
                "--stack nope: /m.json has no such stack (it has: {}); give one of them",
                prefixes.join(", ")
            )
        );
        let e = Manifest::new(Vec::new())
            .stack(path, "nope")
            .expect_err("an empty manifest has no stack");
        assert!(format!("{e:#}").contains("(it has none)"), "{e:#}");
    }

    #[test]
    fn version_1_is_read() {
        let m = load_text(include_str!("v1-full.json")).expect("v1 reads");
        assert_eq!(m.version, 1);
        assert!(!m.stacks.is_empty());
    }
}
