//! Tests of the whole resolve step, through [`super::resolve`].

use super::check::systemd_owned;
use super::*;
use crate::model::{Probe, Secret};
use crate::spec::{PodmanSecretType, SecretMode, parse};

fn stack(json: &str) -> Result<Stack, SpecError> {
    resolve(&parse(json, "t.json")?, "t.json")
}

#[test]
fn preset_fills_in_sonarr() {
    let s = stack(r#"{"version":1,"services":{"sonarr":{"app":"sonarr"}}}"#).unwrap();
    let sonarr = &s.services["sonarr"];
    assert_eq!(sonarr.image, "lscr.io/linuxserver/sonarr:latest");
    assert_eq!(sonarr.ports[0].host, 8989);
    assert_eq!(sonarr.environment["PUID"], "568");
    assert_eq!(sonarr.config_dir.as_deref(), Some("/var/lib/nixarr/sonarr"));
    assert_eq!(sonarr.volumes[1].container, "/data");
    let m = sonarr.migration.as_ref().unwrap();
    assert_eq!(m.legacy_units, ["sonarr.service"]);
    assert_eq!(m.target_dir, "/var/lib/nixarr/sonarr");
}

#[test]
fn overrides_replace_lists_and_merge_maps() {
    let s = stack(
        r#"{"version":1,"services":{"sonarr-4k":{"app":"sonarr",
        "ports":[{"host":8990,"container":8989}],"environment":{"TZ":"Europe/Berlin","X":"1"}}}}"#,
    )
    .unwrap();
    let s4 = &s.services["sonarr-4k"];
    assert_eq!(s4.ports.len(), 1);
    assert_eq!(s4.ports[0].host, 8990);
    assert_eq!(s4.environment["TZ"], "Europe/Berlin");
    assert_eq!(s4.environment["PUID"], "568");
    assert_eq!(s4.config_dir.as_deref(), Some("/var/lib/nixarr/sonarr-4k"));
    match &s4.health.as_ref().unwrap().probe {
        Some(Probe::Http { url, .. }) => assert_eq!(url, "http://127.0.0.1:8990/ping"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cycle_is_named() {
    let e = stack(
        r#"{"version":1,"services":{
          "a":{"image":"x","dependsOn":["b"]},
          "b":{"image":"x","dependsOn":["c"]},
          "c":{"image":"x","dependsOn":["a"]}}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("dependency cycle a -> b -> c -> a"), "{e}");
}

#[test]
fn network_interface_is_derived_within_the_kernel_limit() {
    let s = stack(r#"{"version":1,"services":{"a":{"image":"x"}}}"#).unwrap();
    assert_eq!(s.network_interface, "br-nixarr");
    let long =
        stack(r#"{"version":1,"prefix":"media-stack-at-home","services":{"a":{"image":"x"}}}"#)
            .unwrap();
    // The NixOS module derives the same name (tests/nix/scenarios/dns-firewall.nix).
    assert_eq!(long.network_interface, "br-media-s-e21a");
    assert_eq!(
        long.network_interface.len() as u64,
        *crate::limits::INTERFACE_LENGTH.end()
    );
    let given = stack(
        r#"{"version":1,"network":{"name":"media","interface":"media0"},"services":{"a":{"image":"x"}}}"#,
    )
    .unwrap();
    assert_eq!(given.network_interface, "media0");
}

#[test]
fn network_interface_too_long_or_odd_is_refused() {
    for (iface, why) in [
        ("a-very-long-bridge", "is 18 characters long"),
        ("", "is 0 characters long"),
        ("-x", "not a valid interface name"),
        ("br/0", "not a valid interface name"),
        ("br 0", "not a valid interface name"),
    ] {
        let e = stack(&format!(
            r#"{{"version":1,"network":{{"interface":"{iface}"}},"services":{{"a":{{"image":"x"}}}}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("network.interface"), "{e}");
        assert!(e.contains(why), "{iface}: {e}");
        assert!(e.contains("`br-nixarr`"), "{e}");
    }
}

#[test]
fn duplicate_host_port_names_both() {
    let e = stack(
        r#"{"version":1,"services":{
          "a":{"image":"x","ports":[{"container":80,"host":8080}]},
          "b":{"image":"x","ports":[{"container":81,"host":8080}]}}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("services.b.ports[0].host"), "{e}");
    assert!(e.contains("services.a.ports[0]"), "{e}");
}

#[test]
fn same_port_on_distinct_addresses_and_protocols_is_fine() {
    stack(
        r#"{"version":1,"services":{
          "a":{"image":"x","ports":[{"container":80,"host":8080,"address":"127.0.0.1"}]},
          "b":{"image":"x","ports":[{"container":80,"host":8080,"address":"127.0.0.2"},
                                    {"container":80,"host":8080,"protocol":"udp"}]}}}"#,
    )
    .unwrap();
}

#[test]
fn vpn_without_vpn_service_is_an_error() {
    let e = stack(r#"{"version":1,"services":{"a":{"app":"sonarr","vpn":true}}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("services.a.vpn"), "{e}");
}

fn err(json: &str) -> String {
    stack(json).unwrap_err().to_string()
}

#[test]
fn units_that_would_shadow_systemd_are_refused() {
    for (prefix, unit) in [
        ("multi-user", "multi-user.target"),
        ("network", "network.target"),
        ("default", "default.target"),
        ("systemd-x", "systemd-x.target"),
        ("dbus", "dbus.target"),
        ("dbus-broker", "dbus-broker.target"),
    ] {
        let e = err(&format!(
            r#"{{"version":1,"prefix":"{prefix}","services":{{"a":{{"image":"x"}}}}}}"#
        ));
        assert!(
            e.contains(&format!("prefix: `{prefix}` would name the unit {unit}")),
            "{e}"
        );
        assert!(e.contains("Choose another prefix"), "{e}");
    }
    // A service whose unit lands in systemd's namespace.
    let e = err(r#"{"version":1,"prefix":"systemd","services":{}}"#);
    assert!(e.contains("prefix: `systemd`"), "{e}");
    stack(r#"{"version":1,"prefix":"db","services":{"us":{"image":"x"}}}"#).unwrap();
    assert_eq!(systemd_owned("nixarr.target"), None);
    assert!(systemd_owned("systemd-journald.service").is_some());
    assert!(systemd_owned("dbus.service").is_some());
}

#[test]
fn dangerous_or_unnormalised_host_paths_are_refused() {
    for (json, needle) in [
        (
            r#"{"version":1,"paths":{"dataDir":"/"},"services":{"s":{"app":"sonarr"}}}"#,
            "paths.dataDir: `/` is the root of the host",
        ),
        (
            r#"{"version":1,"paths":{"stateDir":"/etc"},"services":{}}"#,
            "paths.stateDir: `/etc` is the host's system tree /etc",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/usr","container":"/u"}]}}}"#,
            "services.a.volumes[0].host: `/usr` is the host's system tree",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/proc/1","container":"/u"}]}}}"#,
            "`/proc/1` is the host's system tree /proc",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/run","container":"/u"}]}}}"#,
            "`/run` is the host's system tree",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/../etc","container":"/u"}]}}}"#,
            "`/srv/../etc` contains `..`; write the path without it, e.g. `/etc`",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv//a","container":"/u"}]}}}"#,
            "`/srv//a` contains `//`",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/./a","container":"/u"}]}}}"#,
            "`/srv/./a` contains a `.` component",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/a/","container":"/u"}]}}}"#,
            "`/srv/a/` ends with `/`; write the path without it, e.g. `/srv/a`",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/a","container":"/"}]}}}"#,
            "services.a.volumes[0].container: `/` would cover the whole container",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/a","container":"/x"},{"host":"/srv/b","container":"/x/"}]}}}"#,
            "services.a.volumes[1].container: `/x/` ends with `/`",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/a","container":"/x"},{"host":"/srv/b","container":"/x"}]}}}"#,
            "services.a.volumes[1].container: `/x` is also the container path of services.a.volumes[0].container",
        ),
        (
            r#"{"version":1,"services":{"a":{"app":"sonarr","migration":{"targetDir":"/var"}}}}"#,
            "services.a.migration.targetDir: `/var` is the host's system tree",
        ),
        (
            r#"{"version":1,"services":{"a":{"image":"x","secrets":{"K":{"file":"/run/secrets/../k"}}}}}"#,
            "services.a.secrets.K.file: `/run/secrets/../k` contains `..`",
        ),
    ] {
        let e = err(json);
        assert!(e.contains(needle), "{needle}\n{e}");
    }
    // Secrets come from under /run; a file under /etc is fine to read.
    stack(
        r#"{"version":1,"services":{"a":{"image":"x","secrets":{"K":{"file":"/run/secrets/k"}}}}}"#,
    )
    .unwrap();
}

#[test]
fn a_migration_target_may_not_overlap_the_native_data() {
    let e = err(
        r#"{"version":1,"paths":{"stateDir":"/var/lib"},"services":{"sonarr":{"app":"sonarr"}}}"#,
    );
    assert!(e.contains("paths.stateDir: the container's config directory /var/lib/sonarr and the native data /var/lib/sonarr/.config/NzbDrone overlap"), "{e}");
    let e = err(
        r#"{"version":1,"services":{"sonarr":{"app":"sonarr","migration":{"targetDir":"/var/lib/sonarr/.config/NzbDrone/x"}}}}"#,
    );
    assert!(e.contains("services.sonarr.migration.targetDir: "), "{e}");
}

#[test]
fn a_catalog_port_clash_names_app_not_ports() {
    let e =
        err(r#"{"version":1,"services":{"sonarr":{"app":"sonarr"},"sonarr-4k":{"app":"sonarr"}}}"#);
    assert!(
        e.contains("services.sonarr-4k.app: the catalog app `sonarr` publishes host port 8989/tcp, which is also used by services.sonarr.ports[0]"),
        "{e}"
    );
    assert!(e.contains("give services.sonarr-4k its own `ports`"), "{e}");
}

#[test]
fn an_error_names_the_key_the_user_wrote() {
    let e = err(
        r#"{"version":1,"paths":{"dataDir":"/config"},"services":{"sonarr":{"app":"sonarr"}}}"#,
    );
    assert!(
        e.contains("paths.dataDir: `/config` is where the catalog app `sonarr` of service sonarr keeps its config"),
        "{e}"
    );
    let e =
        err(r#"{"version":1,"paths":{"stateDir":"/etc"},"services":{"sonarr":{"app":"sonarr"}}}"#);
    assert!(e.contains("paths.stateDir"), "{e}");
    // The catalog's probe targets a port the user no longer publishes.
    let e =
        err(r#"{"version":1,"services":{"sonarr":{"app":"sonarr","ports":[{"container":1234}]}}}"#);
    assert!(e.contains("services.sonarr.ports: "), "{e}");
    assert!(e.contains("8989"), "{e}");
}

#[test]
fn image_references_follow_the_distribution_grammar() {
    for (image, why) in [
        ("Nginx:1", "uppercase"),
        ("ghcr.io/Owner/app:1", "uppercase"),
        ("nginx@sha256:abc", "digest has the wrong length"),
        ("nginx:", "tag is empty"),
        ("nginx:a b", "not a valid image reference"),
        ("-x", "not a valid image reference"),
        ("", "not a valid image reference"),
    ] {
        let e = err(&format!(
            r#"{{"version":1,"services":{{"a":{{"image":"{image}"}}}}}}"#
        ));
        assert!(e.contains("services.a.image: "), "{e}");
        assert!(e.contains(why), "{image}: {e}");
    }
    for good in [
        "x",
        "nginx:Latest",
        "localhost:5000/x/y:1",
        "LOCALHOST.example:5000/x/y",
        "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "lscr.io/linuxserver/sonarr:4.0.15",
    ] {
        stack(&format!(
            r#"{{"version":1,"services":{{"a":{{"image":"{good}"}}}}}}"#
        ))
        .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

fn secrets_of(json: &str) -> Vec<Secret> {
    let s = stack(json).unwrap();
    s.services.values().next().unwrap().secrets.clone()
}

#[test]
fn secrets_default_to_a_mounted_file_for_every_service() {
    // A generic service (no catalog app): the file, and its path in
    // FILE__<name>; never the value in the environment.
    let s = secrets_of(
        r#"{"version":1,"services":{"web":{"image":"x",
        "secrets":{"TOKEN":{"file":"/run/secrets/t"}}}}}"#,
    );
    assert_eq!(s[0].mode, SecretMode::File);
    assert_eq!(s[0].path_env.as_deref(), Some("FILE__TOKEN"));
    // The image's own convention, per secret.
    let s = secrets_of(
        r#"{"version":1,"services":{"db":{"image":"postgres:17",
        "secrets":{"POSTGRES_PASSWORD":{"file":"/run/secrets/pg","fileEnv":"POSTGRES_PASSWORD_FILE"}}}}}"#,
    );
    assert_eq!(s[0].path_env.as_deref(), Some("POSTGRES_PASSWORD_FILE"));
    // Same on Docker.
    let s = secrets_of(
        r#"{"version":1,"backend":"docker","services":{"web":{"image":"x",
        "secrets":{"TOKEN":{"file":"/run/secrets/t"}}}}}"#,
    );
    assert_eq!(s[0].mode, SecretMode::File);
}

#[test]
fn env_values_only_where_hidden_or_acknowledged() {
    let spec = |backend: &str, version: &str, extra: &str| {
        format!(
            r#"{{"version":1,"backend":"{backend}","engine":{{"version":"{version}"}},
            "services":{{"web":{{"image":"x","secrets":{{"TOKEN":{{"file":"/run/secrets/t",
            "mode":"env"{extra}}}}}}}}}}}"#
        )
    };
    // podman >= 5.3 hides type=env secrets: no acknowledgement needed.
    let s = secrets_of(&spec("podman", "5.4.2", ""));
    assert_eq!(s[0].mode, SecretMode::PodmanSecret);
    assert_eq!(s[0].podman_secret_type, Some(PodmanSecretType::Env));
    // Docker and older podman: refused without the acknowledgement.
    for (backend, version, engine) in [
        ("docker", "27.5", "Docker"),
        ("podman", "4.3.1", "podman 4.3"),
    ] {
        let e = err(&spec(backend, version, ""));
        assert!(e.contains("services.web.secrets.TOKEN.mode: `env`"), "{e}");
        assert!(e.contains(engine), "{e}");
        assert!(e.contains("\"allowEnvironmentValue\": true"), "{e}");
        assert!(e.contains("FILE__TOKEN"), "{e}");
        let st = stack(&spec(backend, version, r#","allowEnvironmentValue":true"#)).unwrap();
        assert_eq!(st.services["web"].secrets[0].mode, SecretMode::EnvFile);
        let w = exposure_warnings(&st);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("services.web.secrets.TOKEN"), "{w:?}");
        assert!(w[0].contains("inspect"), "{w:?}");
    }
    // envFile shows the value everywhere: acknowledged or refused.
    let e = err(&spec("podman", "5.4.2", "").replace("\"env\"", "\"envFile\""));
    assert!(e.contains("`envFile` would put the value"), "{e}");
    // An acknowledgement where nothing is exposed is a mistake.
    let e = err(&spec("podman", "5.4.2", r#","allowEnvironmentValue":true"#));
    assert!(
        e.contains("TOKEN.allowEnvironmentValue: only applies"),
        "{e}"
    );
    // The default file mode has no warning.
    let st = stack(r#"{"version":1,"services":{"web":{"image":"x","secrets":{"T":{"file":"/run/secrets/t"}}}}}"#).unwrap();
    assert!(exposure_warnings(&st).is_empty());
}

#[test]
fn version_parsing() {
    assert_eq!(parse_version("podman version 4.3.1"), Some((4, 3)));
    assert_eq!(parse_version("5.4.1"), Some((5, 4)));
    assert_eq!(
        parse_version("Docker version 20.10.24+dfsg1, build"),
        Some((20, 10))
    );
    assert_eq!(parse_version("garbage"), None);
}

#[test]
fn devices_take_every_spelling_and_the_catalogs() {
    use crate::model::{Device, DevicePermissions};
    let s = stack(
        r#"{"version":1,"services":{"vpn":{"app":"gluetun"},"web":{"image":"nginx",
        "devices":["/dev/dri","/dev/a:/dev/b:wr",{"host":"/dev/c","permissions":"m"}]}}}"#,
    )
    .unwrap();
    let device = |host: &str, container: &str, permissions: Option<&str>| Device {
        host: host.to_owned(),
        container: container.to_owned(),
        permissions: permissions.and_then(DevicePermissions::parse),
    };
    assert_eq!(
        s.services["web"].devices,
        [
            device("/dev/dri", "/dev/dri", None),
            device("/dev/a", "/dev/b", Some("rw")),
            device("/dev/c", "/dev/c", Some("m")),
        ]
    );
    assert_eq!(
        s.services["vpn"].devices,
        [device("/dev/net/tun", "/dev/net/tun", None)]
    );
    assert_eq!(
        DevicePermissions::parse("mwr").map(|p| p.to_string()),
        Some("rwm".to_owned())
    );
    for bad in ["", "rr", "x", "rwmr"] {
        assert_eq!(DevicePermissions::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn backups_come_from_the_catalog_or_the_spec() {
    let s = stack(
        r#"{"version":1,"services":{
        "sonarr":{"app":"sonarr"},
        "jellyfin":{"app":"jellyfin","backup":{"exclude":["cache"]}},
        "gluetun":{"app":"gluetun"},
        "radarr":{"app":"radarr","backup":null},
        "app":{"image":"localhost/app:1","volumes":[{"host":"/srv/app","container":"/var/lib/app"},
            {"host":"/srv/media","container":"/media","readOnly":true}],
            "backup":{"databases":["db/app.sqlite"],"paths":["db","settings.json"]}}}}"#,
    )
    .unwrap();
    let b = s.services["sonarr"].backup.clone().unwrap();
    assert_eq!(b.root, "/var/lib/nixarr/sonarr");
    assert_eq!(b.databases, ["sonarr.db", "logs.db"]);
    assert!(b.exclude.contains(&"logs".to_owned()));
    let j = s.services["jellyfin"].backup.clone().unwrap();
    assert_eq!(
        j.databases,
        ["data/data/library.db", "data/data/jellyfin.db"]
    );
    assert_eq!(
        j.exclude,
        ["cache"],
        "the spec's list replaces the catalog's"
    );
    assert_eq!(s.services["gluetun"].backup, None);
    assert_eq!(s.services["radarr"].backup, None, "null leaves it out");
    let a = s.services["app"].backup.clone().unwrap();
    assert_eq!(a.root, "/srv/app", "the only writable volume");
    assert_eq!(a.paths, ["db", "settings.json"]);
    // Nothing for a service that says nothing and has no preset.
    let s = stack(r#"{"version":1,"services":{"x":{"image":"localhost/x:1"}}}"#).unwrap();
    assert_eq!(s.services["x"].backup, None);
}

#[test]
fn backup_paths_are_checked() {
    let e = err(
        r#"{"version":1,"services":{"sonarr":{"app":"sonarr","backup":{"databases":["../etc/shadow"]}}}}"#,
    );
    assert!(
        e.contains(
            "services.sonarr.backup.databases[0]: `../etc/shadow` is not a plain relative path"
        ),
        "{e}"
    );
    let e = err(
        r#"{"version":1,"services":{"sonarr":{"app":"sonarr","backup":{"root":"/srv/elsewhere"}}}}"#,
    );
    assert!(
        e.contains("services.sonarr.backup.root: `/srv/elsewhere` is not a volume of this service"),
        "{e}"
    );
    let e = err(
        r#"{"version":1,"services":{"a":{"image":"localhost/a:1","volumes":[
        {"host":"/srv/a","container":"/a"},{"host":"/srv/b","container":"/b"}],"backup":{}}}}"#,
    );
    assert!(e.contains("services.a.backup.root: is missing and the service writes to several volumes (/srv/a, /srv/b)"), "{e}");
    let e = err(r#"{"version":1,"services":{"a":{"image":"localhost/a:1","backup":{}}}}"#);
    assert!(
        e.contains("services.a.backup: the service has no writable volume"),
        "{e}"
    );
    let e =
        err(r#"{"version":1,"services":{"a":{"image":"localhost/a:1","backup":{"dabases":[]}}}}"#);
    assert!(e.contains("dabases"), "{e}");
}

#[test]
fn proxy_routes() {
    let s = stack(
        r#"{"version":1,"proxy":{"domain":"media.example.org"},"services":{
        "sonarr":{"app":"sonarr","proxy":{"path":"/sonarr"}},
        "jellyfin":{"app":"jellyfin","proxy":{"subdomain":"tv"},
            "ports":[{"host":8096,"container":8096,"address":"192.168.1.5"}]},
        "app":{"image":"localhost/app:1","ports":[{"host":9000,"container":80}],
            "proxy":{"path":"/app"}}}}"#,
    )
    .unwrap();
    let p = s.proxy.unwrap();
    assert_eq!(p.domain, "media.example.org");
    let by = |n: &str| p.routes.iter().find(|r| r.service == n).unwrap().clone();
    assert_eq!(
        by("sonarr").at,
        crate::model::RouteAt::Path("/sonarr".into())
    );
    assert_eq!(by("sonarr").upstream, "127.0.0.1:8989");
    assert_eq!(by("jellyfin").upstream, "192.168.1.5:8096");
    assert_eq!(by("app").upstream, "127.0.0.1:9000");
    // The app is told its URL base.
    assert_eq!(
        s.services["sonarr"].environment["SONARR__SERVER__URLBASE"],
        "/sonarr"
    );
}

#[test]
fn proxy_mistakes_are_named() {
    for (json, needle) in [
        (
            r#"{"version":1,"services":{"sonarr":{"app":"sonarr","proxy":{"path":"/s"}}}}"#,
            "services.sonarr.proxy: there is no top-level \"proxy\"",
        ),
        (
            r#"{"version":1,"proxy":{"domain":"bad domain"},"services":{}}"#,
            "proxy.domain: `bad domain` is not a domain name",
        ),
        (
            r#"{"version":1,"proxy":{"domain":"m.example"},"services":{"jellyfin":{"app":"jellyfin","proxy":{"path":"/jf"}}}}"#,
            "services.jellyfin.proxy.path: jellyfin cannot be told a URL base",
        ),
        (
            r#"{"version":1,"proxy":{"domain":"m.example"},"services":{"sonarr":{"app":"sonarr","proxy":{"path":"/s/"}}}}"#,
            "services.sonarr.proxy.path: `/s/` is not a URL path",
        ),
        (
            r#"{"version":1,"proxy":{"domain":"m.example"},"services":{"sonarr":{"app":"sonarr","proxy":{"subdomain":"a.b"}}}}"#,
            "services.sonarr.proxy.subdomain: `a.b` is not a DNS label",
        ),
        (
            r#"{"version":1,"proxy":{"domain":"m.example"},"services":{"sonarr":{"app":"sonarr","proxy":{"subdomain":"x","path":"/x"}}}}"#,
            "services.sonarr.proxy: give exactly one of",
        ),
        (
            r#"{"version":1,"proxy":{"domain":"m.example"},"services":{"radarr":{"app":"radarr","proxy":{"subdomain":"x"}},"sonarr":{"app":"sonarr","proxy":{"subdomain":"x"}}}}"#,
            "services.sonarr.proxy: radarr already serves there",
        ),
        (
            r#"{"version":1,"proxy":{"domain":"m.example"},"services":{"x":{"image":"localhost/x:1","proxy":{"subdomain":"x"}}}}"#,
            "services.x.proxy: the service publishes no TCP port",
        ),
    ] {
        let e = err(json);
        assert!(e.contains(needle), "{needle}\n{e}");
    }
}

#[test]
fn reconcile_interval_is_checked() {
    let with = |r: &str| {
        stack(&format!(
            r#"{{"version":1,"reconcile":{r},"services":{{"a":{{"image":"x"}}}}}}"#
        ))
    };
    let s = with("{}").unwrap();
    assert_eq!(
        s.reconcile,
        Some(Reconcile {
            interval: 300,
            prune: false
        })
    );
    let s = with(r#"{"interval":"1m30s","prune":true}"#).unwrap();
    assert_eq!(
        s.reconcile,
        Some(Reconcile {
            interval: 90,
            prune: true
        })
    );
    let e = with(r#"{"interval":"10s"}"#).unwrap_err().to_string();
    assert!(
        e.contains("reconcile.interval") && e.contains("shorter than 30s"),
        "{e}"
    );
    let e = with(r#"{"interval":"often"}"#).unwrap_err().to_string();
    assert!(
        e.contains("reconcile.interval") && e.contains("not a duration"),
        "{e}"
    );
    let e = with(r#"{"prnue":true}"#).unwrap_err().to_string();
    assert!(e.contains("prune"), "{e}");
    assert!(
        stack(r#"{"version":1,"services":{"a":{"image":"x"}}}"#)
            .unwrap()
            .reconcile
            .is_none()
    );
    let e = stack(r#"{"version":1,"services":{"reconcile":{"image":"x"}}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("reserved"), "{e}");
}
