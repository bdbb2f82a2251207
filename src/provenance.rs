//! The effective spec with where each value came from, for `config show`:
//! written in the spec, taken from a catalog app's preset, or one of the
//! stack's defaults (the spec's `defaults`/`paths`, or nixarr-units' own
//! when the spec leaves them out). Secrets appear as their file paths and
//! delivery only; no secret file is read.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::{self, Preset};
use crate::model::{Service, Stack};
use crate::spec::Spec;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Written in the spec.
    Spec,
    /// A catalog app's preset.
    Catalog,
    /// The stack's defaults: the spec's `defaults`/`paths` sections, or
    /// nixarr-units' built-in values.
    Defaults,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Spec => "spec",
            Source::Catalog => "catalog",
            Source::Defaults => "defaults",
        }
    }
}

/// One effective value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Its JSON path in the spec's shape (`services.sonarr.image`).
    pub path: String,
    pub value: Value,
    pub source: Source,
    /// Exactly where: the spec's key, `catalog app sonarr`, `defaults.tz`,
    /// `built-in`.
    pub from: String,
}

const BUILT_IN: &str = "built-in";

/// Whether the spec as written has a value at `keys`.
fn has(raw: &Value, keys: &[&str]) -> bool {
    let mut v = raw;
    for k in keys {
        match v.get(k) {
            Some(next) => v = next,
            None => return false,
        }
    }
    true
}

struct Out<'a> {
    raw: &'a Value,
    entries: Vec<Entry>,
}

impl Out<'_> {
    fn push(
        &mut self,
        path: impl Into<String>,
        value: Value,
        source: Source,
        from: impl Into<String>,
    ) {
        self.entries.push(Entry {
            path: path.into(),
            value,
            source,
            from: from.into(),
        });
    }

    /// A stack-wide value: written in the spec, or built in.
    fn top(&mut self, keys: &[&str], value: Value) {
        let path = keys.join(".");
        if has(self.raw, keys) {
            self.push(path.clone(), value, Source::Spec, path);
        } else {
            self.push(path, value, Source::Defaults, BUILT_IN);
        }
    }

    /// Where a stack default such as `defaults.tz` came from, for a
    /// service value it fills.
    fn default_from(&self, keys: &[&str]) -> String {
        let path = keys.join(".");
        if has(self.raw, keys) {
            path
        } else {
            format!("{path} ({BUILT_IN})")
        }
    }
}

/// Every effective value of a resolved spec. `raw` is the spec as written
/// (to tell what it sets), `spec` its parsed form, `stack` what it resolved
/// to.
pub fn effective(raw: &Value, spec: &Spec, stack: &Stack) -> Vec<Entry> {
    let mut out = Out {
        raw,
        entries: Vec::new(),
    };
    out.top(&["version"], json!(spec.version));
    out.top(&["backend"], json!(stack.backend.name()));
    out.top(&["prefix"], json!(stack.prefix));
    out.top(&["engine", "path"], json!(stack.engine.path));
    match stack.engine.version {
        Some((major, minor)) if has(raw, &["engine", "version"]) => out.push(
            "engine.version",
            json!(format!("{major}.{minor}")),
            Source::Spec,
            "engine.version",
        ),
        Some((major, minor)) => out.push(
            "engine.version",
            json!(format!("{major}.{minor}")),
            Source::Defaults,
            "the installed engine",
        ),
        None => out.push(
            "engine.version",
            Value::Null,
            Source::Defaults,
            "built-in (the newest supported)",
        ),
    }
    out.top(&["network", "name"], json!(stack.network));
    out.top(&["network", "interface"], json!(stack.network_interface));
    out.top(&["defaults", "puid"], json!(stack.defaults.puid));
    out.top(&["defaults", "pgid"], json!(stack.defaults.pgid));
    out.top(&["defaults", "tz"], json!(stack.defaults.tz));
    out.top(&["defaults", "umask"], json!(stack.defaults.umask));
    out.top(&["paths", "stateDir"], json!(spec.paths.state_dir));
    out.top(&["paths", "dataDir"], json!(spec.paths.data_dir));
    if let Some(vpn) = &stack.vpn_service {
        out.top(&["vpn", "service"], json!(vpn));
    }
    let cat = catalog::catalog().ok();
    for (name, svc) in &stack.services {
        let preset = svc.app.as_deref().and_then(|a| Some((a, cat?.get(a)?)));
        service(&mut out, name, svc, preset);
    }
    for (name, members) in &stack.profiles {
        let path = format!("profiles.{name}");
        out.push(path.clone(), json!(members), Source::Spec, path);
    }
    out.entries
}

/// A spec file's effective values, and the notes of its reading (an
/// engine version assumed).
#[derive(Debug)]
pub struct Effective {
    pub values: Vec<Entry>,
    pub notes: Vec<String>,
}

/// Read, check and resolve a spec file as `render` does, and say where
/// each effective value came from.
pub fn load(path: &std::path::Path) -> anyhow::Result<Effective> {
    let (origin, text) = crate::pipeline::read(path)?;
    let mut spec = crate::spec::parse(&text, &origin)?;
    // A spec that parses is JSON.
    let raw: Value = serde_json::from_str(&text)?;
    let notes = crate::generator::detect_engine(&mut spec)
        .map(|n| format!("{origin}: {n}"))
        .into_iter()
        .collect();
    let stack = crate::resolve::resolve(&spec, &origin)?;
    Ok(Effective {
        values: effective(&raw, &spec, &stack),
        notes,
    })
}

/// The values of one service.
// One statement per field of a service; splitting it would scatter the
// list the reader checks against `Service`.
#[allow(clippy::too_many_lines)]
fn service(out: &mut Out, name: &str, svc: &Service, preset: Option<(&str, &Preset)>) {
    let at = |field: &str| format!("services.{name}.{field}");
    let written = |out: &Out, keys: &[&str]| {
        let mut k = vec!["services", name];
        k.extend_from_slice(keys);
        has(out.raw, &k)
    };
    let catalog_from = preset.map(|(app, _)| format!("catalog app {app}"));
    // Spec if written, else the catalog when the service has an app, else
    // the given default.
    let pick = |out: &mut Out, field: &str, value: Value, default: Option<&str>| {
        if written(out, &[field]) {
            out.push(at(field), value, Source::Spec, at(field));
        } else if let Some(from) = &catalog_from {
            out.push(at(field), value, Source::Catalog, from.clone());
        } else if let Some(d) = default {
            out.push(at(field), value, Source::Defaults, d);
        }
    };
    if let Some(app) = &svc.app {
        out.push(at("app"), json!(app), Source::Spec, at("app"));
    }
    pick(out, "image", json!(svc.image), None);
    pick(
        out,
        "description",
        json!(svc.description),
        Some("built-in (name and image)"),
    );
    let list = |out: &mut Out, field: &str, items: Vec<Value>, catalog_note: &str| {
        for (i, v) in items.into_iter().enumerate() {
            let path = format!("{}[{i}]", at(field));
            if written(out, &[field]) {
                out.push(path, v, Source::Spec, at(field));
            } else if let Some(from) = &catalog_from {
                out.push(path, v, Source::Catalog, format!("{from}{catalog_note}"));
            }
        }
    };
    let ports = svc.ports.iter().map(|p| json!(p)).collect();
    list(out, "ports", ports, "");
    let volumes = svc.volumes.iter().map(|v| json!(v)).collect();
    list(out, "volumes", volumes, "; host paths from paths.*");
    for (k, v) in &svc.environment {
        let path = format!("{}.{k}", at("environment"));
        let (source, from) = if written(out, &["environment", k]) {
            (Source::Spec, path.clone())
        } else if preset.is_some_and(|(_, p)| p.environment.contains_key(k)) {
            (Source::Catalog, catalog_from.clone().unwrap_or_default())
        } else {
            match k.as_str() {
                "PUID" => id_source(out, name, "puid", preset.and_then(|(_, p)| p.uid)),
                "PGID" => id_source(out, name, "pgid", preset.and_then(|(_, p)| p.gid)),
                "UMASK" => (Source::Defaults, out.default_from(&["defaults", "umask"])),
                "TZ" => (Source::Defaults, out.default_from(&["defaults", "tz"])),
                _ => (Source::Defaults, BUILT_IN.to_owned()),
            }
        };
        out.push(path, json!(v), source, from);
    }
    for (i, f) in svc.environment_files.iter().enumerate() {
        let path = format!("{}[{i}]", at("environmentFiles"));
        out.push(path, json!(f), Source::Spec, at("environmentFiles"));
    }
    let written_deps: Vec<String> = out.raw["services"][name]["dependsOn"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for (i, d) in svc.depends_on.iter().enumerate() {
        let path = format!("{}[{i}]", at("dependsOn"));
        if written_deps.contains(d) {
            out.push(path, json!(d), Source::Spec, at("dependsOn"));
        } else {
            out.push(
                path,
                json!(d),
                Source::Defaults,
                "vpn: true (the VPN service)",
            );
        }
    }
    if written(out, &["vpn"]) {
        out.push(at("vpn"), json!(svc.vpn), Source::Spec, at("vpn"));
    } else {
        out.push(at("vpn"), json!(svc.vpn), Source::Defaults, BUILT_IN);
    }
    let optional: [(&str, Option<Value>); 6] = [
        ("imageFile", svc.image_file.as_ref().map(|v| json!(v))),
        ("cmd", (!svc.cmd.is_empty()).then(|| json!(svc.cmd))),
        ("entrypoint", svc.entrypoint.as_ref().map(|v| json!(v))),
        ("user", svc.user.as_ref().map(|v| json!(v))),
        (
            "extraArgs",
            (!svc.extra_args.is_empty()).then(|| json!(svc.extra_args)),
        ),
        (
            "labels",
            (!svc.labels.is_empty()).then(|| json!(svc.labels)),
        ),
    ];
    for (field, value) in optional {
        if let Some(v) = value {
            out.push(at(field), v, Source::Spec, at(field));
        }
    }
    pick(out, "init", json!(svc.init), Some(BUILT_IN));
    if !svc.cap_add.is_empty() || written(out, &["capAdd"]) {
        pick(out, "capAdd", json!(svc.cap_add), None);
    }
    if !svc.devices.is_empty() || written(out, &["devices"]) {
        let devices: Vec<String> = svc.devices.iter().map(ToString::to_string).collect();
        pick(out, "devices", json!(devices), None);
    }
    // Secrets: the source file and how it is delivered, never a value.
    for s in &svc.secrets {
        let path = format!("{}.{}", at("secrets"), s.name);
        let value = json!({
            "file": s.source,
            "mode": s.mode,
            "pathEnv": s.path_env,
        });
        out.push(path.clone(), value, Source::Spec, path);
    }
    let health = svc.health.as_ref().map_or(Value::Null, |h| json!(h));
    pick(out, "health", health, Some(BUILT_IN));
    let scalar = |out: &mut Out, field: &str, value: Value| {
        if written(out, &[field]) {
            out.push(at(field), value, Source::Spec, at(field));
        } else {
            out.push(at(field), value, Source::Defaults, BUILT_IN);
        }
    };
    scalar(out, "restart", json!(svc.restart.systemd()));
    scalar(out, "stopTimeout", json!(svc.stop_timeout));
    scalar(out, "startTimeout", json!(svc.start_timeout));
    let (source, from) = id_source(out, name, "puid", preset.and_then(|(_, p)| p.uid));
    out.push(at("puid"), json!(svc.uid), source, from);
    let (source, from) = id_source(out, name, "pgid", preset.and_then(|(_, p)| p.gid));
    out.push(at("pgid"), json!(svc.gid), source, from);
    if let Some(m) = &svc.migration {
        let value = json!({
            "legacyUnits": m.legacy_units,
            "legacyDataDir": m.legacy_data_dir,
            "targetDir": m.target_dir,
        });
        pick(out, "migration", value, None);
    }
}

/// Where a service's uid or gid came from: its own `puid`/`pgid`, the
/// catalog image's fixed id, or `defaults.puid`/`defaults.pgid`.
fn id_source(out: &Out, name: &str, key: &str, fixed: Option<u64>) -> (Source, String) {
    if has(out.raw, &["services", name, key]) {
        (Source::Spec, format!("services.{name}.{key}"))
    } else if fixed.is_some() {
        (Source::Catalog, "catalog (the image's fixed id)".to_owned())
    } else {
        (Source::Defaults, out.default_from(&["defaults", key]))
    }
}

/// An entry's value and source as text: a string as it is, anything else
/// as JSON; the source with where from, when that says more than the path.
pub fn text_of(e: &Entry) -> (String, String) {
    let value = match &e.value {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let source = if e.from == e.path {
        e.source.name().to_owned()
    } else {
        format!("{} ({})", e.source.name(), e.from)
    };
    (value, source)
}

/// The entries by path, for tests and lookups.
pub fn by_path(entries: &[Entry]) -> BTreeMap<&str, &Entry> {
    entries.iter().map(|e| (e.path.as_str(), e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(json: &str) -> Vec<Entry> {
        let raw: Value = serde_json::from_str(json).unwrap();
        let spec = crate::spec::parse(json, "t.json").unwrap();
        let stack = crate::resolve::resolve(&spec, "t.json").unwrap();
        effective(&raw, &spec, &stack)
    }

    #[test]
    fn every_value_says_whether_spec_catalog_or_defaults_gave_it() {
        let e = show(
            r#"{"version":1,"defaults":{"tz":"Europe/Berlin"},
                "services":{
                  "sonarr":{"app":"sonarr","ports":[{"host":8990,"container":8989}],
                            "environment":{"EXTRA":"1"},
                            "secrets":{"SONARR__AUTH__APIKEY":{"file":"/run/secrets/sonarr-key"}}},
                  "web":{"image":"docker.io/library/nginx:1.27"}}}"#,
        );
        let m = by_path(&e);
        let src = |p: &str| {
            let e = m.get(p).unwrap_or_else(|| panic!("no {p} in {m:#?}"));
            (e.source, e.from.as_str())
        };
        assert_eq!(src("backend"), (Source::Defaults, "built-in"));
        assert_eq!(src("defaults.tz"), (Source::Spec, "defaults.tz"));
        assert_eq!(
            src("services.sonarr.image"),
            (Source::Catalog, "catalog app sonarr")
        );
        assert_eq!(src("services.sonarr.ports[0]").0, Source::Spec);
        assert_eq!(m["services.sonarr.ports[0]"].value["host"], 8990);
        assert_eq!(
            src("services.sonarr.volumes[0]"),
            (
                Source::Catalog,
                "catalog app sonarr; host paths from paths.*"
            )
        );
        assert_eq!(
            src("services.sonarr.environment.TZ"),
            (Source::Defaults, "defaults.tz")
        );
        assert_eq!(
            src("services.sonarr.environment.PUID"),
            (Source::Defaults, "defaults.puid (built-in)")
        );
        assert_eq!(src("services.sonarr.environment.EXTRA").0, Source::Spec);
        assert_eq!(src("services.sonarr.health").0, Source::Catalog);
        assert_eq!(
            src("services.sonarr.stopTimeout"),
            (Source::Defaults, "built-in")
        );
        assert_eq!(src("services.web.image").0, Source::Spec);
        assert_eq!(
            src("services.web.description"),
            (Source::Defaults, "built-in (name and image)")
        );
        // A secret is its path and delivery only.
        let secret = &m["services.sonarr.secrets.SONARR__AUTH__APIKEY"].value;
        assert_eq!(secret["file"], "/run/secrets/sonarr-key");
        assert_eq!(secret["mode"], "file");
    }

    #[test]
    fn a_vpn_dependency_is_marked_as_added() {
        let e = show(
            r#"{"version":1,"services":{"gluetun":{"app":"gluetun"},
                "qbittorrent":{"app":"qbittorrent","vpn":true}}}"#,
        );
        let m = by_path(&e);
        let dep = m["services.qbittorrent.dependsOn[0]"];
        assert_eq!(dep.value, "gluetun");
        assert_eq!(dep.source, Source::Defaults);
        assert_eq!(m["services.qbittorrent.vpn"].source, Source::Spec);
        assert_eq!(m["vpn.service"].source, Source::Defaults);
    }
}
