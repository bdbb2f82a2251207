//! The NixOS firewall, emulated: the start script of `firewall.service`
//! (nixpkgs nixos/modules/services/networking/firewall-iptables.nix, the
//! default iptables backend) for the `networking.firewall.*` options that
//! tests/nix/export.nix exports, run with the machine's own `iptables` in
//! the machine's own network namespace (tests/e2e/harness/net.rs).
//!
//! What it does, as NixOS does: chains `nixos-fw-accept` (ACCEPT),
//! `nixos-fw-refuse` (DROP, or REJECT with `rejectPackets`),
//! `nixos-fw-log-refuse` (non-unicast and everything else to refuse) and
//! `nixos-fw`: accept the trusted interfaces (always `lo`), established and
//! related connections, the allowed TCP/UDP ports and port ranges (for every
//! interface, and `interfaces.<name>.*` on that interface only), ICMP echo
//! requests with `allowPing`, then refuse the rest; `INPUT -j nixos-fw`
//! appended to INPUT, so every packet addressed to the machine that no
//! earlier rule accepted is dropped. Applying it again replaces it (the
//! script flushes and deletes its chains first), as a reload does.
//!
//! What it leaves out: IPv6 (ip6tables and the ICMPv6 rules; the machine's
//! network has IPv4 addresses only), the LOG rules (`logRefusedConnections`,
//! `logRefusedPackets`; they only log), the reverse-path filter
//! (`checkReversePath`, the mangle table's `nixos-fw-rpfilter`), `pingLimit`,
//! `extraCommands`/`extraStopCommands`, `filterForward` (off by default in
//! NixOS), the nftables backend (`networking.nftables.enable`), and the
//! firewall's own unit and its ordering at boot (applied by the test, after
//! the machine has booted and before the stack starts).

use serde::Deserialize;

/// The ports of `networking.firewall` or of `networking.firewall.interfaces.<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    #[serde(rename = "allowedTCPPorts")]
    pub allowed_tcp_ports: Vec<u16>,
    #[serde(rename = "allowedUDPPorts")]
    pub allowed_udp_ports: Vec<u16>,
    #[serde(rename = "allowedTCPPortRanges")]
    pub allowed_tcp_port_ranges: Vec<Range>,
    #[serde(rename = "allowedUDPPortRanges")]
    pub allowed_udp_port_ranges: Vec<Range>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Range {
    pub from: u16,
    pub to: u16,
}

/// `networking.firewall` as tests/nix/export.nix exports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Firewall {
    pub enable: bool,
    pub allow_ping: bool,
    pub reject_packets: bool,
    pub trusted_interfaces: Vec<String>,
    pub interfaces: std::collections::BTreeMap<String, Ports>,
    #[serde(flatten)]
    pub ports: Ports,
}

const CHAINS: [&str; 4] = [
    "nixos-fw",
    "nixos-fw-accept",
    "nixos-fw-log-refuse",
    "nixos-fw-refuse",
];

/// The shell script that puts the firewall in place (or removes it, when
/// `enable` is false), with `iptables` from PATH.
pub fn start_script(fw: &Firewall) -> String {
    let mut s = String::from("set -eu\nipt() { iptables -w \"$@\"; }\n");
    // Flush the old rules (a reload), as NixOS's script starts.
    s.push_str("ipt -D INPUT -j nixos-fw 2>/dev/null || true\n");
    for c in CHAINS {
        s.push_str(&format!(
            "ipt -F {c} 2>/dev/null || true\nipt -X {c} 2>/dev/null || true\n"
        ));
    }
    if !fw.enable {
        return s;
    }
    s.push_str("ipt -N nixos-fw-accept\nipt -A nixos-fw-accept -j ACCEPT\n");
    s.push_str("ipt -N nixos-fw-refuse\n");
    if fw.reject_packets {
        s.push_str("ipt -A nixos-fw-refuse -p tcp ! --syn -j REJECT --reject-with tcp-reset\n");
        s.push_str("ipt -A nixos-fw-refuse -j REJECT\n");
    } else {
        s.push_str("ipt -A nixos-fw-refuse -j DROP\n");
    }
    s.push_str("ipt -N nixos-fw-log-refuse\n");
    s.push_str("ipt -A nixos-fw-log-refuse -m pkttype ! --pkt-type unicast -j nixos-fw-refuse\n");
    s.push_str("ipt -A nixos-fw-log-refuse -j nixos-fw-refuse\n");
    s.push_str("ipt -N nixos-fw\n");
    // NixOS always trusts lo (networking.firewall.trustedInterfaces).
    let mut trusted = vec!["lo".to_owned()];
    trusted.extend(fw.trusted_interfaces.iter().filter(|i| *i != "lo").cloned());
    for i in &trusted {
        s.push_str(&format!("ipt -A nixos-fw -i {i} -j nixos-fw-accept\n"));
    }
    s.push_str("ipt -A nixos-fw -m conntrack --ctstate ESTABLISHED,RELATED -j nixos-fw-accept\n");
    // `default` (every interface) and then each named interface.
    let mut all: Vec<(Option<&str>, &Ports)> = vec![(None, &fw.ports)];
    all.extend(fw.interfaces.iter().map(|(i, p)| (Some(i.as_str()), p)));
    for proto in ["tcp", "udp"] {
        for (iface, p) in &all {
            let (ports, ranges) = if proto == "tcp" {
                (&p.allowed_tcp_ports, &p.allowed_tcp_port_ranges)
            } else {
                (&p.allowed_udp_ports, &p.allowed_udp_port_ranges)
            };
            for port in ports {
                s.push_str(&rule(proto, &port.to_string(), *iface));
            }
            for r in ranges {
                s.push_str(&rule(proto, &format!("{}:{}", r.from, r.to), *iface));
            }
        }
    }
    if fw.allow_ping {
        s.push_str("ipt -A nixos-fw -p icmp --icmp-type echo-request -j nixos-fw-accept\n");
    }
    s.push_str("ipt -A nixos-fw -j nixos-fw-log-refuse\n");
    s.push_str("ipt -A INPUT -j nixos-fw\n");
    s
}

fn rule(proto: &str, dport: &str, iface: Option<&str>) -> String {
    let on = iface.map(|i| format!(" -i {i}")).unwrap_or_default();
    format!("ipt -A nixos-fw -p {proto} --dport {dport} -j nixos-fw-accept{on}\n")
}
