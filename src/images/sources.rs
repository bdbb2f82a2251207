//! Where an engine pulls an image from, so that `update` asks the same
//! place: podman's registries.conf (short-name aliases and search
//! registries, `[[registry]]` entries that move a prefix to another
//! location or give it mirrors, insecure registries), or what Docker's
//! daemon reports (insecure registries, Docker Hub's mirrors).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::images::registry::Insecure;

/// podman's short-name resolution as registries.conf configures it: an
/// alias first, else each unqualified-search registry in order (a
/// service's unit has no terminal to be asked on, so podman tries them in
/// turn and pulls from the first that has the image).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShortNames {
    /// `name` (no tag) → full repository (no tag).
    pub aliases: BTreeMap<String, String>,
    /// `unqualified-search-registries`.
    pub search: Vec<String>,
}

impl ShortNames {
    /// `image` as podman pulls it when it can: the first of
    /// [`ShortNames::candidates`].
    pub fn qualify(&self, image: &str) -> Result<String> {
        let mut all = self.candidates(image)?;
        Ok(all.swap_remove(0))
    }

    /// The full names podman tries for `image`, in order (never empty):
    /// itself when it names its registry (a first component with `.` or
    /// `:`, or `localhost`), its alias, else it under each search registry.
    pub fn candidates(&self, image: &str) -> Result<Vec<String>> {
        let first = image.split('/').next().unwrap_or(image);
        if image.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost")
        {
            return Ok(vec![image.to_owned()]);
        }
        let name = crate::images::lock::repository(image);
        let rest = &image[name.len()..];
        if let Some(full) = self.aliases.get(name) {
            return Ok(vec![format!("{full}{rest}")]);
        }
        match self.search.as_slice() {
            [_, ..] => Ok(self.search.iter().map(|r| format!("{r}/{image}")).collect()),
            [] => bail!(
                "podman cannot resolve the short name {image}: registries.conf has no alias \
                 for {name} and no unqualified-search-registries; write the image's full name \
                 in the spec (for Docker Hub: docker.io/{library}{image})",
                library = if name.contains('/') { "" } else { "library/" }
            ),
        }
    }
}

/// Where the engine pulls the repositories under a prefix from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `host[:port][/namespace…]`, or `*.domain` (any host under it).
    pub prefix: String,
    /// Where the prefix is pulled from instead (`None`: from itself).
    pub location: Option<String>,
    /// Tried first, in this order, for a tag (a mirror limited to
    /// digests, `pull-from-mirror = "digest-only"` or
    /// `mirror-by-digest-only`, is left out).
    pub mirrors: Vec<String>,
}

/// The repositories to ask for `name` (a normalised `registry/repository`,
/// as `docker.io/library/busybox`), in the order the engine tries them:
/// the mirrors of the source with the longest matching prefix, then its
/// location; `name` alone when no source matches.
pub fn candidates(sources: &[Source], name: &str) -> Vec<String> {
    let best = sources
        .iter()
        .filter_map(|s| matched(&s.prefix, name).map(|len| (s, len)))
        .max_by_key(|(s, len)| (*len, !s.prefix.starts_with("*.")));
    let Some((source, len)) = best else {
        return vec![name.to_owned()];
    };
    let (head, rest) = name.split_at(len);
    source
        .mirrors
        .iter()
        .map(|m| format!("{m}{rest}"))
        .chain(std::iter::once(format!(
            "{}{rest}",
            source.location.as_deref().unwrap_or(head)
        )))
        .collect()
}

/// How much of `name` `prefix` matches: all of it, or up to a `/`; a
/// `*.domain` prefix matches a host under the domain.
fn matched(prefix: &str, name: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = name.split('/').next().unwrap_or(name);
        let bare = host.split(':').next().unwrap_or(host);
        return bare.ends_with(&format!(".{domain}")).then_some(host.len());
    }
    let rest = name.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(prefix.len())
}

/// What podman's registries.conf files say, read as podman reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    pub insecure: Insecure,
    pub short_names: ShortNames,
    pub sources: Vec<Source>,
}

impl RegistriesConf {
    /// Read `files` in order: every entry marked insecure (version 2's
    /// `[[registry]] insecure = true` and its mirrors', version 1's
    /// `[registries.insecure]`); a later file's alias replaces an earlier
    /// one's, its search list the whole list, its `[[registry]]` entry one
    /// of the same prefix.
    pub fn load(files: &[PathBuf]) -> Result<Self> {
        let mut out = RegistriesConf::default();
        for f in files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", f.display())),
            };
            let conf: Conf = toml::from_str(&text).with_context(|| {
                format!(
                    "{} is not a registries.conf podman reads; fix it (podman info shows \
                     what podman makes of it)",
                    f.display()
                )
            })?;
            out.add(conf);
        }
        Ok(out)
    }

    fn add(&mut self, conf: Conf) {
        for e in conf.registry {
            let Some(prefix) = e.prefix.clone().or_else(|| e.location.clone()) else {
                continue;
            };
            if e.insecure {
                self.insecure.hosts.insert(registry_of(&prefix).to_owned());
                if let Some(l) = &e.location {
                    self.insecure.hosts.insert(registry_of(l).to_owned());
                }
            }
            for m in e.mirror.iter().filter(|m| m.insecure) {
                self.insecure
                    .hosts
                    .insert(registry_of(&m.location).to_owned());
            }
            let source = Source {
                location: e.location.filter(|l| *l != prefix),
                mirrors: e
                    .mirror
                    .into_iter()
                    .filter(|m| {
                        !e.mirror_by_digest_only
                            && m.pull_from_mirror.as_deref() != Some("digest-only")
                    })
                    .map(|m| m.location)
                    .collect(),
                prefix,
            };
            self.sources.retain(|s| s.prefix != source.prefix);
            self.sources.push(source);
        }
        self.insecure.hosts.extend(
            conf.registries
                .insecure
                .registries
                .iter()
                .map(|r| registry_of(r).to_owned()),
        );
        if let Some(search) = conf.search.or(conf.registries.search.map(|s| s.registries)) {
            self.short_names.search = search;
        }
        self.short_names.aliases.extend(conf.aliases);
    }
}

#[derive(Deserialize, Default)]
struct Conf {
    #[serde(default)]
    registry: Vec<Entry>,
    #[serde(default)]
    registries: V1,
    #[serde(rename = "unqualified-search-registries")]
    search: Option<Vec<String>>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Entry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    mirror: Vec<Mirror>,
    #[serde(default, rename = "mirror-by-digest-only")]
    mirror_by_digest_only: bool,
}

#[derive(Deserialize)]
struct Mirror {
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(rename = "pull-from-mirror")]
    pull_from_mirror: Option<String>,
}

#[derive(Deserialize, Default)]
struct V1 {
    #[serde(default)]
    insecure: V1List,
    search: Option<V1List>,
}

#[derive(Deserialize, Default)]
struct V1List {
    #[serde(default)]
    registries: Vec<String>,
}

/// What Docker's daemon reports (`docker info`'s RegistryConfig): the
/// registries not secure, the insecure networks, and Docker Hub's mirrors
/// (the only registry Docker mirrors).
pub fn from_docker_info(json: &str) -> Result<(Insecure, Vec<Source>)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Config {
        #[serde(default, rename = "InsecureRegistryCIDRs")]
        insecure_registry_cidrs: Option<Vec<String>>,
        #[serde(default)]
        index_configs: Option<BTreeMap<String, Index>>,
        #[serde(default)]
        mirrors: Option<Vec<String>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Index {
        #[serde(default = "yes")]
        secure: bool,
    }
    fn yes() -> bool {
        true
    }
    let c: Config = serde_json::from_str(json.trim())
        .context("docker info printed no registry configuration")?;
    let mut insecure = Insecure {
        hosts: c
            .index_configs
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, i)| !i.secure)
            .map(|(name, _)| name)
            .collect(),
        networks: c
            .insecure_registry_cidrs
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect(),
    };
    // Mirrors are URLs (`https://mirror.example/`); plain HTTP ones are
    // reached over plain HTTP.
    let mut mirrors = Vec::new();
    for url in c.mirrors.unwrap_or_default() {
        let (plain, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme == "http", rest),
            None => (false, url.as_str()),
        };
        let host = rest.trim_end_matches('/').to_owned();
        if plain {
            insecure.hosts.insert(registry_of(&host).to_owned());
        }
        mirrors.push(host);
    }
    let sources = if mirrors.is_empty() {
        Vec::new()
    } else {
        vec![Source {
            prefix: "docker.io".to_owned(),
            location: None,
            mirrors,
        }]
    };
    Ok((insecure, sources))
}

/// The `host[:port]` of a registries.conf location (`host/namespace`).
fn registry_of(location: &str) -> &str {
    location.split('/').next().unwrap_or(location)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registries_conf_marks_insecure_registries_in_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("registries.conf");
        std::fs::write(
            &v2,
            "unqualified-search-registries = [\"docker.io\"]\n\
             [[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n\
             [[registry]]\nprefix = \"lab.example/team\"\nlocation = \"mirror.example:8443/team\"\ninsecure = true\n\
             [[registry]]\nlocation = \"*.corp.example\"\ninsecure = true\n\
             [[registry]]\nlocation = \"ghcr.io\"\n",
        )
        .unwrap();
        let v1 = dir.path().join("v1.conf");
        std::fs::write(
            &v1,
            "[registries.search]\nregistries = []\n[registries.insecure]\nregistries = [\"old.example:5000\"]\n",
        )
        .unwrap();
        let missing = dir.path().join("nope.conf");
        // A drop-in as Debian ships (shortnames.conf) and one of the
        // admin's, read after it.
        let aliases = dir.path().join("shortnames.conf");
        std::fs::write(
            &aliases,
            "[aliases]\n  \"busybox\" = \"docker.io/library/busybox\"\n  \"centos\" = \"quay.io/centos/centos\"\n  \"opensuse/leap\" = \"registry.opensuse.org/opensuse/leap\"\n",
        )
        .unwrap();
        let admin = dir.path().join("50-admin.conf");
        std::fs::write(
            &admin,
            "unqualified-search-registries = [\"quay.io\", \"docker.io\"]\n[aliases]\ncentos = \"lab.example/mirror/centos\"\n",
        )
        .unwrap();
        let conf = RegistriesConf::load(&[v2.clone(), v1.clone(), missing, aliases.clone(), admin])
            .unwrap();
        let i = &conf.insecure;
        assert!(i.contains("127.0.0.1:5000"));
        assert!(
            !i.contains("127.0.0.1:5001"),
            "another port is another registry"
        );
        assert!(i.contains("lab.example"), "the prefix's registry");
        assert!(i.contains("mirror.example:8443"), "its location's");
        assert!(i.contains("a.corp.example") && !i.contains("corp.example"));
        assert!(i.contains("old.example:5000"));
        assert!(!i.contains("ghcr.io") && !i.contains("docker.io"));

        // Short names: an alias (the later file's wins), keeping the tag;
        // else the first search registry of the last file that sets them.
        let q = |image: &str| conf.short_names.qualify(image).unwrap();
        assert_eq!(q("busybox:1.37"), "docker.io/library/busybox:1.37");
        assert_eq!(q("centos"), "lab.example/mirror/centos");
        assert_eq!(
            q("opensuse/leap:15"),
            "registry.opensuse.org/opensuse/leap:15"
        );
        assert_eq!(
            q("jellyfin/jellyfin:10.10"),
            "quay.io/jellyfin/jellyfin:10.10"
        );
        assert_eq!(
            conf.short_names.candidates("jellyfin/jellyfin").unwrap(),
            ["quay.io/jellyfin/jellyfin", "docker.io/jellyfin/jellyfin"],
            "each search registry, in order"
        );
        assert_eq!(
            conf.short_names.candidates("busybox").unwrap(),
            ["docker.io/library/busybox"],
            "an alias alone"
        );
        assert_eq!(
            q("lscr.io/linuxserver/sonarr"),
            "lscr.io/linuxserver/sonarr"
        );
        assert_eq!(q("localhost/app:v1"), "localhost/app:v1");
        assert_eq!(q("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
        // v2's own list (docker.io) until the admin's replaced it; v1's.
        let v2_only = RegistriesConf::load(&[v2]).unwrap().short_names;
        assert_eq!(v2_only.qualify("app").unwrap(), "docker.io/app");
        let v1_only = RegistriesConf::load(&[v1]).unwrap().short_names;
        assert!(v1_only.search.is_empty());
        // Neither alias nor search registry: podman cannot pull it.
        let none = RegistriesConf::load(&[aliases]).unwrap().short_names;
        let e = none.qualify("jellyfin/jellyfin").unwrap_err().to_string();
        assert!(
            e.contains("podman cannot resolve the short name jellyfin/jellyfin")
                && e.contains("docker.io/jellyfin/jellyfin"),
            "{e}"
        );
        let e = none.qualify("nginx:1").unwrap_err().to_string();
        assert!(e.contains("docker.io/library/nginx:1"), "{e}");

        let bad = dir.path().join("bad.conf");
        std::fs::write(&bad, "[[registry]\n").unwrap();
        let e = format!("{:#}", RegistriesConf::load(&[bad]).unwrap_err());
        assert!(e.contains("bad.conf is not a registries.conf"), "{e}");
    }

    #[test]
    fn registries_conf_moves_prefixes_and_lists_their_mirrors_for_tags() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("registries.conf");
        // containers-registries.conf(5)'s own shapes.
        std::fs::write(
            &base,
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\
             [[registry.mirror]]\nlocation = \"hub-cache.lan:5000\"\ninsecure = true\n\
             [[registry.mirror]]\nlocation = \"hub-cache2.lan\"\npull-from-mirror = \"digest-only\"\n\
             [[registry.mirror]]\nlocation = \"hub-cache3.lan/docker\"\n\
             [[registry]]\nprefix = \"lab.example/team\"\nlocation = \"internal.lan/lab-team\"\n\
             [[registry]]\nprefix = \"lab.example\"\nlocation = \"lab.example\"\nmirror-by-digest-only = true\n\
             [[registry.mirror]]\nlocation = \"lab-cache.lan\"\n\
             [[registry]]\nlocation = \"*.corp.example\"\n\
             [[registry.mirror]]\nlocation = \"corp-cache.lan\"\n",
        )
        .unwrap();
        // A drop-in replacing the lab.example/team entry.
        let dropin = dir.path().join("50-team.conf");
        std::fs::write(
            &dropin,
            "[[registry]]\nprefix = \"lab.example/team\"\nlocation = \"internal.lan/team2\"\n",
        )
        .unwrap();
        let conf = RegistriesConf::load(&[base, dropin]).unwrap();
        let c = |name: &str| candidates(&conf.sources, name);
        assert_eq!(
            c("docker.io/library/busybox"),
            [
                "hub-cache.lan:5000/library/busybox",
                "hub-cache3.lan/docker/library/busybox",
                "docker.io/library/busybox",
            ]
        );
        assert!(conf.insecure.contains("hub-cache.lan:5000"));
        assert!(!conf.insecure.contains("hub-cache3.lan"));
        // The longest prefix wins; the drop-in's entry replaced the base's.
        assert_eq!(c("lab.example/team/app"), ["internal.lan/team2/app"]);
        assert_eq!(c("lab.example/other/app"), ["lab.example/other/app"]);
        // `lab.example/teamx` is not under `lab.example/team`.
        assert_eq!(c("lab.example/teamx/app"), ["lab.example/teamx/app"]);
        assert_eq!(
            c("a.corp.example:443/x/app"),
            ["corp-cache.lan/x/app", "a.corp.example:443/x/app"]
        );
        assert_eq!(c("ghcr.io/x/app"), ["ghcr.io/x/app"]);
    }

    #[test]
    fn dockers_insecure_registries_and_mirrors_come_from_its_daemon() {
        // `docker info --format={{json .RegistryConfig}}`, Docker 28, with
        // "insecure-registries": ["reg.lan:5000", "10.0.0.0/8"] and
        // "registry-mirrors": ["https://hub-cache.lan/", "http://10.1.2.3:5000"].
        let info = r#"{"AllowNondistributableArtifactsCIDRs":null,"AllowNondistributableArtifactsHostnames":null,"InsecureRegistryCIDRs":["10.0.0.0/8","::1/128","127.0.0.0/8"],"IndexConfigs":{"docker.io":{"Name":"docker.io","Mirrors":["https://hub-cache.lan/","http://10.1.2.3:5000/"],"Secure":true,"Official":true},"reg.lan:5000":{"Name":"reg.lan:5000","Mirrors":[],"Secure":false,"Official":false}},"Mirrors":["https://hub-cache.lan/","http://10.1.2.3:5000/"]}"#;
        let (i, sources) = from_docker_info(info).unwrap();
        assert!(i.contains("127.0.0.1:43921") && i.contains("[::1]:5000"));
        assert!(i.contains("10.1.2.3:5000") && i.contains("reg.lan:5000"));
        assert!(!i.contains("docker.io") && !i.contains("192.168.1.2:5000"));
        assert!(!i.contains("hub-cache.lan"));
        assert_eq!(
            candidates(&sources, "docker.io/library/busybox"),
            [
                "hub-cache.lan/library/busybox",
                "10.1.2.3:5000/library/busybox",
                "docker.io/library/busybox"
            ]
        );
        assert_eq!(candidates(&sources, "ghcr.io/a/b"), ["ghcr.io/a/b"]);
        let (_, none) = from_docker_info(r#"{"Mirrors":null}"#).unwrap();
        assert!(none.is_empty());
        assert!(from_docker_info("").is_err());
    }
}
