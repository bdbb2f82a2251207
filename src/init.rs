//! What `init` writes: the wizard's (or the command line's) answers, turned
//! into a JSON spec or a NixOS module block, both checked by the same
//! resolver as `render` before anything is written.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{Value, json};

use crate::catalog;
use crate::error::SpecError;
use crate::spec::Backend;

/// The uid LinuxServer.io images run as unless told (the module's default).
pub const DEFAULT_PUID: u64 = 568;
/// nixarr's media group id (the module's default PGID).
pub const DEFAULT_PGID: u64 = 169;

/// What the VPN client is, as Gluetun names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpnType {
    Wireguard,
    Openvpn,
}

impl VpnType {
    pub fn name(self) -> &'static str {
        match self {
            VpnType::Wireguard => "wireguard",
            VpnType::Openvpn => "openvpn",
        }
    }

    /// The secrets Gluetun needs for this type, with the file each is
    /// read from by default. Only paths: the wizard never asks for a key.
    pub fn secrets(self) -> &'static [(&'static str, &'static str)] {
        match self {
            VpnType::Wireguard => &[(
                "WIREGUARD_PRIVATE_KEY",
                "/run/secrets/wireguard-private-key",
            )],
            VpnType::Openvpn => &[
                ("OPENVPN_USER", "/run/secrets/openvpn-user"),
                ("OPENVPN_PASSWORD", "/run/secrets/openvpn-password"),
            ],
        }
    }
}

impl std::str::FromStr for VpnType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "wireguard" => Ok(VpnType::Wireguard),
            "openvpn" => Ok(VpnType::Openvpn),
            _ => Err(format!(
                "`{s}` is not a VPN type; write wireguard or openvpn"
            )),
        }
    }
}

/// The Gluetun VPN and what goes through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpn {
    /// Gluetun's `VPN_SERVICE_PROVIDER` (mullvad, protonvpn, custom, …).
    pub provider: String,
    pub kind: VpnType,
    /// Secret variable → the file it is read from.
    pub secrets: BTreeMap<String, String>,
    /// The services that run behind it.
    pub behind: Vec<String>,
}

/// Everything `init` needs to write a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    /// Catalog apps (service name = app name), sorted.
    pub apps: Vec<String>,
    pub vpn: Option<Vpn>,
    pub backend: Backend,
    pub puid: u64,
    pub pgid: u64,
    pub tz: String,
    pub state_dir: String,
    pub data_dir: String,
    /// Apps whose native NixOS service runs here (the Nix block sets
    /// `migrateFrom = "nixpkgs"` for them).
    pub migrate_from_native: Vec<String>,
}

/// The apps a user can pick: every catalog app but the VPN client (which
/// comes with the VPN answer), ordered by profile as the wizard shows them.
pub fn choosable_apps() -> Vec<(&'static str, &'static str, &'static str)> {
    use crate::profiles::CATALOG_PROFILES as ORDER;
    let Ok(cat) = catalog::catalog() else {
        return Vec::new();
    };
    let mut out: Vec<(&str, &str, &str)> = cat
        .iter()
        .filter(|(_, p)| p.profile != "vpn")
        .map(|(name, p)| (*name, p.profile.as_str(), p.description.as_str()))
        .collect();
    out.sort_by_key(|(name, profile, _)| {
        (
            ORDER
                .iter()
                .position(|o| o == profile)
                .unwrap_or(ORDER.len()),
            *name,
        )
    });
    out
}

/// The apps of the `downloads` profile among `apps`: what goes through the
/// VPN by default.
pub fn downloaders(apps: &[String]) -> Vec<String> {
    apps.iter()
        .filter(|a| crate::profiles::of_app(a) == Some("downloads"))
        .cloned()
        .collect()
}

/// Which of the chosen apps each app waits for: the *arrs for Prowlarr,
/// Bazarr for Sonarr and Radarr, Seerr for Jellyfin, Sonarr and Radarr.
fn depends_on(app: &str, apps: &[String]) -> Vec<String> {
    let wants: &[&str] = match app {
        "sonarr" | "radarr" | "lidarr" => &["prowlarr"],
        "bazarr" => &["radarr", "sonarr"],
        "seerr" => &["jellyfin", "radarr", "sonarr"],
        _ => &[],
    };
    wants
        .iter()
        .filter(|w| apps.iter().any(|a| a == *w))
        .map(|w| (*w).to_owned())
        .collect()
}

impl Answers {
    /// What the wizard offers first on this host: the core apps, the
    /// installed engine, the host's time zone, the media group's gid, the
    /// usual directories; native services of chosen apps to migrate from.
    pub fn suggested(host: &crate::host::Host) -> Answers {
        Answers {
            apps: ["prowlarr", "radarr", "sonarr"].map(str::to_owned).to_vec(),
            vpn: None,
            backend: host.preferred_backend(),
            puid: DEFAULT_PUID,
            pgid: host.media_group.as_ref().map_or(DEFAULT_PGID, |g| g.gid),
            tz: host
                .timezone
                .clone()
                .unwrap_or_else(|| "Etc/UTC".to_owned()),
            state_dir: "/var/lib/nixarr".to_owned(),
            data_dir: "/data".to_owned(),
            migrate_from_native: host.native_services.iter().map(|n| n.app.clone()).collect(),
        }
    }

    /// The VPN answer for `kind` with the default secret files, for the
    /// downloaders among the apps.
    pub fn with_vpn(mut self, kind: VpnType, provider: &str) -> Answers {
        self.vpn = Some(Vpn {
            provider: provider.to_owned(),
            kind,
            secrets: kind
                .secrets()
                .iter()
                .map(|(k, f)| ((*k).to_owned(), (*f).to_owned()))
                .collect(),
            behind: downloaders(&self.apps),
        });
        self
    }

    /// Drop native services of apps that were not chosen.
    pub fn settle(mut self) -> Answers {
        let apps = self.apps.clone();
        self.migrate_from_native.retain(|a| apps.contains(a));
        self
    }

    /// The JSON spec (docs/spec.md).
    pub fn to_spec(&self) -> Value {
        let mut services = serde_json::Map::new();
        for app in &self.apps {
            let mut s = serde_json::Map::new();
            s.insert("app".into(), json!(app));
            let deps = depends_on(app, &self.apps);
            if !deps.is_empty() {
                s.insert("dependsOn".into(), json!(deps));
            }
            if self.vpn.as_ref().is_some_and(|v| v.behind.contains(app)) {
                s.insert("vpn".into(), json!(true));
            }
            services.insert(app.clone(), Value::Object(s));
        }
        if let Some(vpn) = &self.vpn {
            let secrets: serde_json::Map<String, Value> = vpn
                .secrets
                .iter()
                .map(|(k, f)| (k.clone(), json!({ "file": f })))
                .collect();
            services.insert(
                "gluetun".into(),
                json!({
                    "app": "gluetun",
                    "environment": {
                        "VPN_SERVICE_PROVIDER": vpn.provider,
                        "VPN_TYPE": vpn.kind.name(),
                    },
                    "secrets": secrets,
                }),
            );
        }
        json!({
            "version": crate::spec::SPEC_VERSION,
            "backend": self.backend.name(),
            "defaults": { "puid": self.puid, "pgid": self.pgid, "tz": self.tz },
            "paths": { "stateDir": self.state_dir, "dataDir": self.data_dir },
            "services": services,
        })
    }

    /// The spec as a file: pretty JSON with a trailing newline.
    pub fn to_spec_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.to_spec()).unwrap_or_default();
        s.push('\n');
        s
    }

    /// A NixOS module (an attribute set) setting `services.nixarr-units`,
    /// formatted as nixfmt formats it; its inner lines can be pasted into
    /// configuration.nix, or the file imported as it is.
    pub fn to_nix(&self) -> String {
        let mut cfg: Vec<(String, Nix)> = vec![
            ("backend".into(), Nix::Str(self.backend.name().into())),
            (
                "defaults".into(),
                Nix::Attrs(vec![
                    ("puid".into(), Nix::Int(self.puid)),
                    ("pgid".into(), Nix::Int(self.pgid)),
                    ("tz".into(), Nix::Str(self.tz.clone())),
                ]),
            ),
            ("stateDir".into(), Nix::Str(self.state_dir.clone())),
            ("dataDir".into(), Nix::Str(self.data_dir.clone())),
        ];
        if let Some(vpn) = &self.vpn {
            let secrets = vpn
                .secrets
                .iter()
                .map(|(k, f)| {
                    let file = Nix::Attrs(vec![("file".into(), Nix::Str(f.clone()))]);
                    (k.clone(), file)
                })
                .collect();
            cfg.push((
                "vpn".into(),
                Nix::Attrs(vec![
                    ("enable".into(), Nix::Bool(true)),
                    ("provider".into(), Nix::Str(vpn.provider.clone())),
                    ("type".into(), Nix::Str(vpn.kind.name().into())),
                    ("secrets".into(), Nix::Attrs(secrets)),
                ]),
            ));
        }
        for app in &self.apps {
            let mut a = vec![("enable".into(), Nix::Bool(true))];
            let deps = depends_on(app, &self.apps);
            if !deps.is_empty() {
                a.push((
                    "dependsOn".into(),
                    Nix::List(deps.into_iter().map(Nix::Str).collect()),
                ));
            }
            if self.vpn.as_ref().is_some_and(|v| v.behind.contains(app)) {
                a.push(("vpn".into(), Nix::Bool(true)));
            }
            if self.migrate_from_native.contains(app) {
                a.push(("migrateFrom".into(), Nix::Str("nixpkgs".into())));
            }
            cfg.push((app.clone(), Nix::Attrs(a)));
        }
        let root = Nix::Attrs(vec![("services.nixarr-units".into(), Nix::Attrs(cfg))]);
        let mut out = String::from(
            "# Written by `nixarr-units init`: import this file from configuration.nix\n\
             # (imports = [ ./nixarr-units.nix ];) or paste its inner lines there.\n",
        );
        root.write(&mut out, 0);
        out.push('\n');
        out
    }

    /// Check the answers as `render` would check the spec they make.
    pub fn validate(&self) -> Result<crate::model::Stack, SpecError> {
        let text = self.to_spec_text();
        let spec = crate::spec::parse(&text, "the answers")?;
        crate::resolve::resolve(&spec, "the answers")
    }
}

/// A Nix value as `init` writes it. Attribute names may be dotted paths
/// (`services.nixarr-units`), written as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Nix {
    Str(String),
    Int(u64),
    Bool(bool),
    List(Vec<Nix>),
    Attrs(Vec<(String, Nix)>),
}

impl Nix {
    /// nixfmt's layout: an attribute set of several entries, or a list of
    /// several elements, one per line, indented by two; one entry of an
    /// attribute set joins its key (`sonarr.enable = true;`), one element
    /// of a list stays on the line (`[ "prowlarr" ]`).
    fn write(&self, out: &mut String, indent: usize) {
        let pad = |n: usize| " ".repeat(n);
        match self {
            Nix::Str(s) => out.push_str(&nix_string(s)),
            Nix::Int(i) => out.push_str(&i.to_string()),
            Nix::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Nix::List(items) if items.is_empty() => out.push_str("[ ]"),
            Nix::List(items) if items.len() == 1 => {
                out.push_str("[ ");
                items[0].write(out, indent);
                out.push_str(" ]");
            }
            Nix::List(items) => {
                out.push_str("[\n");
                for i in items {
                    out.push_str(&pad(indent + 2));
                    i.write(out, indent + 2);
                    out.push('\n');
                }
                out.push_str(&pad(indent));
                out.push(']');
            }
            Nix::Attrs(entries) if entries.is_empty() => out.push_str("{ }"),
            Nix::Attrs(entries) => {
                out.push_str("{\n");
                for (k, v) in entries {
                    out.push_str(&pad(indent + 2));
                    let (key, value) = v.joined(&nix_key(k));
                    out.push_str(&key);
                    out.push_str(" = ");
                    value.write(out, indent + 2);
                    out.push_str(";\n");
                }
                out.push_str(&pad(indent));
                out.push('}');
            }
        }
    }

    /// `a = { b = v; }` as `a.b = v`, as far down as each set has one entry.
    fn joined(&self, key: &str) -> (String, &Nix) {
        match self {
            Nix::Attrs(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                v.joined(&format!("{key}.{}", nix_key(k)))
            }
            _ => (key.to_owned(), self),
        }
    }
}

/// An attribute name: bare when Nix allows it, else a string.
fn nix_key(k: &str) -> String {
    let bare = k.split('.').all(|part| {
        part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''))
    });
    if bare { k.to_owned() } else { nix_string(k) }
}

/// A double-quoted Nix string: `"`, `\` and `${` escaped.
fn nix_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Answers {
        let apps: Vec<String> = ["prowlarr", "qbittorrent", "sonarr"]
            .map(str::to_owned)
            .to_vec();
        Answers {
            vpn: None,
            apps,
            backend: Backend::Podman,
            puid: 568,
            pgid: 169,
            tz: "Europe/Berlin".into(),
            state_dir: "/var/lib/nixarr".into(),
            data_dir: "/data".into(),
            migrate_from_native: vec!["sonarr".into()],
        }
        .with_vpn(VpnType::Wireguard, "mullvad")
    }

    #[test]
    fn the_spec_validates_and_routes_the_downloaders_through_the_vpn() {
        let a = answers();
        let stack = a.validate().unwrap();
        assert!(stack.services["qbittorrent"].vpn);
        assert!(!stack.services["sonarr"].vpn);
        assert_eq!(stack.services["sonarr"].depends_on, ["prowlarr"]);
        assert_eq!(stack.vpn_service.as_deref(), Some("gluetun"));
        let g = &stack.services["gluetun"];
        assert_eq!(g.environment["VPN_TYPE"], "wireguard");
        assert_eq!(g.secrets[0].source, "/run/secrets/wireguard-private-key");
    }

    #[test]
    fn the_nix_block_is_laid_out_as_nixfmt_lays_it_out() {
        let expected = r#"# Written by `nixarr-units init`: import this file from configuration.nix
# (imports = [ ./nixarr-units.nix ];) or paste its inner lines there.
{
  services.nixarr-units = {
    backend = "podman";
    defaults = {
      puid = 568;
      pgid = 169;
      tz = "Europe/Berlin";
    };
    stateDir = "/var/lib/nixarr";
    dataDir = "/data";
    vpn = {
      enable = true;
      provider = "mullvad";
      type = "wireguard";
      secrets.WIREGUARD_PRIVATE_KEY.file = "/run/secrets/wireguard-private-key";
    };
    prowlarr.enable = true;
    qbittorrent = {
      enable = true;
      vpn = true;
    };
    sonarr = {
      enable = true;
      dependsOn = [ "prowlarr" ];
      migrateFrom = "nixpkgs";
    };
  };
}
"#;
        assert_eq!(answers().to_nix(), expected);
    }

    #[test]
    fn nix_strings_and_keys_are_quoted_where_nix_needs_it() {
        assert_eq!(nix_string(r#"a"b\c${d}$e"#), r#""a\"b\\c\${d}$e""#);
        assert_eq!(nix_key("services.nixarr-units"), "services.nixarr-units");
        assert_eq!(nix_key("9lives"), "\"9lives\"");
        let l = Nix::List(vec![Nix::Str("a".into()), Nix::Str("b".into())]);
        let mut s = String::new();
        l.write(&mut s, 2);
        assert_eq!(s, "[\n    \"a\"\n    \"b\"\n  ]");
    }

    #[test]
    fn apps_are_offered_by_profile_without_the_vpn_client() {
        let apps = choosable_apps();
        let names: Vec<&str> = apps.iter().map(|a| a.0).collect();
        assert_eq!(&names[..3], ["prowlarr", "radarr", "sonarr"]);
        assert!(!names.contains(&"gluetun"));
        assert_eq!(apps.last().unwrap().1, "downloads");
    }
}
