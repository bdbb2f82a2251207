//! A network of the machine's own ([`Net`]), for the NixOS mode.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use super::MARKER;
use super::host::host;
use super::leftovers::{OWNER_ENV, owner_tag};

/// The address of the machine in its private network ([`Net`]).
pub const NET_MACHINE_ADDR: &str = "10.213.77.1";
/// The address of the client (another host on the LAN) in that network.
pub const NET_CLIENT_ADDR: &str = "10.213.77.2";
/// The machine's name as the LAN's resolver knows it.
pub const NET_HOST_NAME: &str = "nixarr-host.test";
/// The LAN's resolver: a tiny DNS server run in the client namespace.
pub(super) const LAN_DNS_NAME: &str = "nixarr-e2e-lan-dns.py";
const LAN_DNS: &str = include_str!("../lan-dns.py");

/// A network of the machine's own: two network namespaces created here
/// (`ip netns`, named after [`MARKER`]), the machine's and a client's (a
/// second host on the LAN), joined by a veth pair with addresses in
/// 10.213.77.0/24 on that pair only, and the LAN's DNS server in the client
/// namespace (answers [`NET_HOST_NAME`]). Nothing is added to the host's
/// namespace, so a firewall, bridges or DNAT rules in the machine never
/// touch the host. The names are recorded in the machine's directory
/// (`netns`), so that a crashed run's namespaces are deleted as leftovers.
pub struct Net {
    pub machine_ns: String,
    pub client_ns: String,
    dns: Option<Child>,
}

impl Net {
    pub(super) fn create(dir: &Path, id: &str) -> Result<Net> {
        let machine_ns = format!("{MARKER}-{id}-m");
        let client_ns = format!("{MARKER}-{id}-c");
        fs_err::write(dir.join("netns"), format!("{machine_ns}\n{client_ns}\n"))?;
        let mut net = Net {
            machine_ns,
            client_ns,
            dns: None,
        };
        let (m, c) = (net.machine_ns.as_str(), net.client_ns.as_str());
        for argv in [
            vec!["netns", "add", m],
            vec!["netns", "add", c],
            // Created in the two namespaces directly: never in the host's.
            vec![
                "link", "add", "nx-host", "netns", m, "type", "veth", "peer", "name", "nx-lan",
                "netns", c,
            ],
            vec![
                "-n",
                m,
                "addr",
                "add",
                &format!("{NET_MACHINE_ADDR}/24"),
                "dev",
                "nx-host",
            ],
            vec![
                "-n",
                c,
                "addr",
                "add",
                &format!("{NET_CLIENT_ADDR}/24"),
                "dev",
                "nx-lan",
            ],
            vec!["-n", m, "link", "set", "lo", "up"],
            vec!["-n", c, "link", "set", "lo", "up"],
            vec!["-n", m, "link", "set", "nx-host", "up"],
            vec!["-n", c, "link", "set", "nx-lan", "up"],
            // The client is the LAN's router too: the machine's default
            // route (engines need one to set up their bridges' NAT).
            vec!["-n", m, "route", "add", "default", "via", NET_CLIENT_ADDR],
        ] {
            host(Command::new("ip").args(&argv))
                .context("creating the machine's network (apt-get install iproute2)")?;
        }
        let script = dir.join(LAN_DNS_NAME);
        fs_err::write(&script, LAN_DNS)?;
        let log = fs_err::File::create(dir.join("lan-dns.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", c, "/usr/bin/python3"])
            .arg(&script)
            .arg(NET_CLIENT_ADDR)
            .arg(format!("{NET_HOST_NAME}={NET_MACHINE_ADDR}"))
            .env(OWNER_ENV, owner_tag())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?.into_parts().0)
            .stderr(log.into_parts().0)
            .process_group(0)
            .spawn()
            .context("starting the LAN's DNS server (python3)")?;
        net.dns = Some(child);
        Ok(net)
    }

    /// The machine's namespace as a path (for nspawn).
    pub fn machine_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.machine_ns)
    }

    /// A resolv.conf naming the LAN's resolver, written into `dir`.
    pub fn resolv_conf(&self, dir: &Path) -> Result<PathBuf> {
        let p = dir.join("resolv.conf");
        fs_err::write(&p, format!("nameserver {NET_CLIENT_ADDR}\n"))?;
        Ok(p)
    }

    /// A command run in the client's namespace (another host on the LAN).
    pub fn client(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client_ns]).args(argv);
        c
    }

    /// Delete the namespaces a machine directory records (leftovers).
    pub(super) fn delete_recorded(dir: &Path) {
        if let Ok(names) = std::fs::read_to_string(dir.join("netns")) {
            for n in names.lines().filter(|n| n.starts_with(MARKER)) {
                let _ = Command::new("ip")
                    .args(["netns", "del", n])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut c) = self.dns.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in [&self.machine_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}
