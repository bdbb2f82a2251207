//! What `init` learns about the host before it asks anything: NixOS or not,
//! which engines are installed (and their versions), which native services
//! of catalog apps run (and so can be migrated later), which of the catalog's
//! host ports are taken, the time zone, and an existing media group.
//! Every probe is best effort: what cannot be learned is left out, never an
//! error.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::catalog;
use crate::engine::Engine;
use crate::spec::{Backend, Protocol};

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub nixos: bool,
    /// Installed engines, podman first.
    pub engines: Vec<EngineFact>,
    /// Native units of catalog apps that are active now.
    pub native_services: Vec<NativeService>,
    /// Host ports of catalog apps that something already listens on.
    pub ports_taken: Vec<TakenPort>,
    pub timezone: Option<String>,
    /// The `media` group (nixarr's), when it exists.
    pub media_group: Option<Group>,
    /// Whether systemd could be asked (native services are unknown if not).
    pub systemd_reachable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineFact {
    pub backend: Backend,
    pub path: String,
    /// `--version`'s output, when it printed one.
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NativeService {
    pub app: String,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TakenPort {
    pub port: u16,
    pub app: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub name: String,
    pub gid: u64,
}

/// The media group nixarr and the NixOS module use.
pub const MEDIA_GROUP: &str = "media";

impl Host {
    /// Look at this host.
    pub fn detect() -> Host {
        let (native_services, systemd_reachable) = native_services();
        Host {
            nixos: is_nixos(Path::new("/etc")),
            engines: engines(),
            native_services,
            ports_taken: ports_taken(),
            timezone: timezone(Path::new("/etc")),
            media_group: group(MEDIA_GROUP),
            systemd_reachable,
        }
    }

    /// The backend to offer first: the installed one (podman when both
    /// or neither are).
    pub fn preferred_backend(&self) -> Backend {
        match self.engines.first() {
            Some(e) => e.backend,
            None => Backend::Podman,
        }
    }

    /// What was found, one line each, for the wizard's first screen.
    pub fn summary(&self) -> Vec<String> {
        let mut out = vec![format!(
            "system: {}",
            if self.nixos {
                "NixOS"
            } else {
                "not NixOS (a systemd host)"
            }
        )];
        if self.engines.is_empty() {
            out.push("engines: neither podman nor docker is installed".to_owned());
        }
        for e in &self.engines {
            out.push(format!(
                "engine: {} at {} ({})",
                e.backend,
                e.path,
                e.version.as_deref().unwrap_or("version unknown")
            ));
        }
        if !self.systemd_reachable {
            out.push("native services: unknown (systemd cannot be asked here)".to_owned());
        } else if self.native_services.is_empty() {
            out.push("native services: none of the catalog's run".to_owned());
        }
        for n in &self.native_services {
            out.push(format!(
                "native service: {} runs ({}); migrate it later with `nixarr-migrate migrate {}`",
                n.unit, n.app, n.app
            ));
        }
        for p in &self.ports_taken {
            out.push(format!("port {} ({}) is already in use", p.port, p.app));
        }
        out.push(format!(
            "time zone: {}",
            self.timezone.as_deref().unwrap_or("unknown")
        ));
        out.push(match &self.media_group {
            Some(g) => format!("group {}: gid {}", g.name, g.gid),
            None => format!("group {MEDIA_GROUP}: none"),
        });
        out
    }
}

/// NixOS leaves `/etc/NIXOS`; its os-release says `ID=nixos`.
pub fn is_nixos(etc: &Path) -> bool {
    etc.join("NIXOS").exists()
        || std::fs::read_to_string(etc.join("os-release"))
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "ID=nixos"))
}

fn engines() -> Vec<EngineFact> {
    [Backend::Podman, Backend::Docker]
        .into_iter()
        .filter_map(|backend| {
            let path = crate::generator::find_on_path(backend.name())?;
            let path = path.to_str()?.to_owned();
            let version = Engine::new(backend, path.clone())
                .version()
                .run()
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty());
            Some(EngineFact {
                backend,
                path,
                version,
            })
        })
        .collect()
}

/// Active native units of catalog apps, and whether systemd answered.
fn native_services() -> (Vec<NativeService>, bool) {
    let Ok(cat) = catalog::catalog() else {
        return (Vec::new(), false);
    };
    let units: Vec<(String, String)> = cat
        .iter()
        .filter_map(|(app, p)| Some((app, p.legacy.as_ref()?)))
        .flat_map(|(app, l)| l.units.iter().map(|u| ((*app).to_owned(), u.clone())))
        .collect();
    let names: Vec<String> = units.iter().map(|(_, u)| u.clone()).collect();
    let states = zbus::block_on(async {
        let sd = crate::systemd::Systemd::connect(None).await?;
        sd.unit_states(&names).await
    });
    match states {
        Err(_) => (Vec::new(), false),
        Ok(states) => {
            let active = units
                .into_iter()
                .zip(states)
                .filter(|(_, s)| s.active_state == crate::systemd::ActiveState::Active)
                .map(|((app, unit), _)| NativeService { app, unit })
                .collect();
            (active, true)
        }
    }
}

/// Catalog host ports (TCP) that cannot be bound on all addresses.
fn ports_taken() -> Vec<TakenPort> {
    let Ok(cat) = catalog::catalog() else {
        return Vec::new();
    };
    let mut out: Vec<TakenPort> = cat
        .iter()
        .flat_map(|(app, p)| {
            p.ports
                .iter()
                .filter(|port| port.protocol == Protocol::Tcp)
                .filter_map(|port| u16::try_from(port.host.unwrap_or(port.container)).ok())
                .map(|port| ((*app).to_owned(), port))
        })
        .filter(|(_, port)| port_in_use(*port))
        .map(|(app, port)| TakenPort { port, app })
        .collect();
    out.sort_by_key(|p| p.port);
    out
}

/// Whether something listens on this TCP port (binding it fails with
/// "address in use").
pub fn port_in_use(port: u16) -> bool {
    matches!(
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
    )
}

/// The host's time zone: `/etc/timezone`, else the zone `/etc/localtime`
/// links to.
pub fn timezone(etc: &Path) -> Option<String> {
    if let Ok(t) = std::fs::read_to_string(etc.join("timezone")) {
        let t = t.trim();
        if !t.is_empty() && !t.contains(char::is_whitespace) {
            return Some(t.to_owned());
        }
    }
    let target = std::fs::read_link(etc.join("localtime")).ok()?;
    let target = target.to_string_lossy();
    let (_, zone) = target.split_once("zoneinfo/")?;
    (!zone.is_empty()).then(|| zone.to_owned())
}

/// A group by name through NSS (`getent group NAME`).
pub fn group(name: &str) -> Option<Group> {
    let out = Command::new("getent")
        .args(["group", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_group_line(&String::from_utf8_lossy(&out.stdout))
}

/// `name:x:gid:members` as in /etc/group.
fn parse_group_line(line: &str) -> Option<Group> {
    let mut f = line.trim().split(':');
    let name = f.next()?.to_owned();
    let gid = f.nth(1)?.parse().ok()?;
    Some(Group { name, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nixos_and_time_zone_are_read_from_etc() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path();
        assert!(!is_nixos(etc));
        std::fs::write(etc.join("os-release"), "NAME=NixOS\nID=nixos\n").unwrap();
        assert!(is_nixos(etc));
        assert_eq!(timezone(etc), None);
        std::os::unix::fs::symlink(
            "/nix/store/abc-tzdata/share/zoneinfo/Europe/Berlin",
            etc.join("localtime"),
        )
        .unwrap();
        assert_eq!(timezone(etc).as_deref(), Some("Europe/Berlin"));
        std::fs::write(etc.join("timezone"), "America/New_York\n").unwrap();
        assert_eq!(timezone(etc).as_deref(), Some("America/New_York"));
    }

    #[test]
    fn a_port_someone_listens_on_is_taken() {
        let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(port_in_use(port));
        drop(l);
        assert!(!port_in_use(port));
    }

    #[test]
    fn group_lines_parse() {
        assert_eq!(
            parse_group_line("media:x:169:alice,bob\n"),
            Some(Group {
                name: "media".into(),
                gid: 169
            })
        );
        assert_eq!(parse_group_line("broken"), None);
        // Through NSS: root's group exists everywhere.
        assert_eq!(group("root").map(|g| g.gid), Some(0));
    }
}
