//! Profiles: named groups of services, so that `start --profile music` or
//! `status --profile downloads` act on a part of the stack. Every catalog
//! app carries one (`"profile"` in its data file: core, music, subtitles,
//! media, requests, downloads, vpn); a spec may define its own
//! (`"profiles": {"music": ["lidarr", "navidrome"]}`), which replaces the
//! catalog's group of the same name.

use std::collections::BTreeMap;

use crate::catalog;
use crate::error::SpecError;
use crate::error::UsageError;
use crate::manifest::{Manifest, StackManifest};
use crate::spec::Spec;

/// The catalog's profiles, in the order the wizard offers their apps.
pub const CATALOG_PROFILES: [&str; 7] = [
    "core",
    "music",
    "subtitles",
    "media",
    "requests",
    "downloads",
    "vpn",
];

/// The profile a catalog app belongs to.
pub fn of_app(app: &str) -> Option<&'static str> {
    catalog::catalog()
        .ok()?
        .get(app)
        .map(|p| p.profile.as_str())
}

/// Check the spec's own profiles: valid names, and only services that the
/// spec has.
pub fn check(spec: &Spec, origin: &str) -> Result<(), SpecError> {
    for (name, members) in &spec.profiles {
        let path = format!("profiles.{name}");
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(SpecError::at(
                origin,
                &path,
                format!(
                    "`{name}` is not a valid profile name; use lowercase letters, digits and \
                     `-`, starting with a letter"
                ),
            ));
        }
        if members.is_empty() {
            return Err(SpecError::at(
                origin,
                &path,
                "is empty; list the services of the profile, or remove it",
            ));
        }
        for (i, m) in members.iter().enumerate() {
            if !spec.services.contains_key(m) {
                return Err(SpecError::at(
                    origin,
                    &format!("{path}[{i}]"),
                    format!(
                        "no service `{m}` in this spec; list services from `services` ({})",
                        spec.services.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Every profile of a stack with its services (sorted): the catalog apps'
/// profiles, then the spec's own, which replace a catalog profile of the
/// same name.
pub fn of_stack(stack: &StackManifest) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, svc) in &stack.services {
        if let Some(p) = svc.app.as_deref().and_then(of_app) {
            out.entry(p.to_owned()).or_default().push(name.clone());
        }
    }
    for (name, members) in &stack.profiles {
        let mut members = members.clone();
        members.sort();
        out.insert(name.clone(), members);
    }
    out
}

/// The services of profile `name` in every stack of the manifest, as
/// (stack index, service name); a profile no stack has is a usage error
/// naming the nearest and every profile there is.
pub fn select(manifest: &Manifest, name: &str) -> anyhow::Result<Vec<(usize, String)>> {
    let mut out = Vec::new();
    let mut known = std::collections::BTreeSet::new();
    for (i, stack) in manifest.stacks.iter().enumerate() {
        for (profile, members) in of_stack(stack) {
            if profile == name {
                out.extend(members.iter().map(|m| (i, m.clone())));
            }
            known.insert(profile);
        }
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let hint = known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(s, _)| *s > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("did you mean `{k}`? "))
        .unwrap_or_default();
    Err(UsageError(format!(
        "--profile {name}: no service of the manifest is in this profile; {hint}profiles here: {}",
        if known.is_empty() {
            "(none)".to_owned()
        } else {
            known.into_iter().collect::<Vec<_>>().join(", ")
        }
    ))
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        crate::spec::parse(json, "t.json").unwrap()
    }

    #[test]
    fn every_catalog_app_has_a_known_profile() {
        for name in catalog::app_names() {
            let p = of_app(name).unwrap();
            assert!(CATALOG_PROFILES.contains(&p), "{name}: profile {p}");
        }
        assert_eq!(of_app("lidarr"), Some("music"));
        assert_eq!(of_app("qbittorrent"), Some("downloads"));
        assert_eq!(of_app("nope"), None);
    }

    #[test]
    fn a_profile_selects_the_catalog_group_or_the_specs_own() {
        let json = r#"{"version":1,"engine":{"version":"5.4"},"services":{
            "lidarr":{"app":"lidarr"},"sonarr":{"app":"sonarr"},"radarr":{"app":"radarr"},
            "navidrome":{"image":"docker.io/deluan/navidrome:0.53.3"}},
            "profiles":{"music":["navidrome","lidarr"]}}"#;
        let spec = spec(json);
        let stack = crate::resolve::resolve(&spec, "t.json").unwrap();
        let opts = crate::render::Options {
            self_exe: "/bin/nixarr-units".into(),
            source_path: None,
        };
        let r = crate::render::render(&stack, &opts).unwrap();
        let m = Manifest::new(vec![r.manifest]);
        let names = |p: &str| -> Vec<String> {
            select(&m, p).unwrap().into_iter().map(|(_, n)| n).collect()
        };
        assert_eq!(names("core"), ["radarr", "sonarr"]);
        // The spec's own `music` replaces the catalog's.
        assert_eq!(names("music"), ["lidarr", "navidrome"]);
        let e = select(&m, "cor").unwrap_err().to_string();
        assert!(e.contains("did you mean `core`?"), "{e}");
        assert!(e.contains("profiles here: core, music"), "{e}");
    }

    #[test]
    fn a_profile_naming_a_missing_service_is_refused_with_its_path() {
        let s = spec(
            r#"{"version":1,"services":{"lidarr":{"app":"lidarr"}},
                "profiles":{"music":["lidarr","navidrome"]}}"#,
        );
        let e = check(&s, "t.json").unwrap_err().to_string();
        assert!(e.contains("profiles.music[1]"), "{e}");
        assert!(e.contains("navidrome"), "{e}");
        let s = spec(r#"{"version":1,"profiles":{"Music":[]}}"#);
        let e = check(&s, "t.json").unwrap_err().to_string();
        assert!(e.contains("profiles.Music"), "{e}");
        let s = spec(
            r#"{"version":1,"services":{"lidarr":{"app":"lidarr"}},"profiles":{"music":["lidarr"]}}"#,
        );
        check(&s, "t.json").unwrap();
    }
}
