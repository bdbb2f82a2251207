//! The module's own output on real systemd: each scenario is a NixOS
//! configuration (tests/nix/e2e/<name>.nix), evaluated with nixpkgs' lib and
//! the stubs (tests/nix/export.nix), built and installed the way NixOS
//! installs it, behind the NixOS firewall (emulated,
//! tests/e2e/harness/nixos_fw.rs), in a machine with a network of its own:
//! loopback and a veth pair to a client namespace, another host on the LAN
//! (tests/e2e/harness/net.rs).
//! See tests/e2e/harness/nixos.rs for what is installed and how.
//!
//! Runs as root with nix-instantiate and NIXPKGS_LIB (tests/run.sh);
//! otherwise prints SKIPPED loudly.

use std::time::Duration;

use crate::harness;
use crate::harness::nixos::Generation;
use crate::harness::{
    Backend, BootOptions, Machine, NET_CLIENT_ADDR, NET_HOST_NAME, NET_MACHINE_ADDR, Scenario,
    ScenarioFn, output_text,
};
use anyhow::{Context, Result, ensure};

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "0 installed as NixOS installs it: store links, wants, users, tmpfiles, manifest, firewall",
        installed_as_nixos,
    ),
    (
        "a containers resolve each other and the host's name, firewall on",
        dns,
    ),
    (
        "b openFirewall = false is closed to the LAN, open on loopback",
        open_firewall,
    ),
    ("c switch restarts exactly the changed container", switch),
];

#[test]
fn podman() {
    suite(Backend::Podman, false);
}

/// podman 5.4 on the trixie machine: the podman NixOS ships.
#[test]
fn podman5() {
    suite(Backend::Podman, true);
}

#[test]
fn docker() {
    suite(Backend::Docker, false);
}

fn suite(backend: Backend, trixie: bool) {
    let opts = BootOptions {
        private_storage: true,
        private_network: true,
        trixie,
        ..BootOptions::default()
    };
    harness::run_suite_booted(
        "NixOS end-to-end mode",
        backend,
        opts,
        SCENARIOS,
        harness::nixos::nixpkgs_lib().err(),
        prepare,
        |_| {},
    );
}

/// A NixOS host runs no nixarr-units generator (the harness installs one):
/// the units come from the module, and /etc/nixarr-units holds its manifest.
fn prepare(m: &Machine) -> Result<()> {
    let g = m
        .root()
        .join("etc/systemd/system-generators/nixarr-units-generator");
    if g.symlink_metadata().is_ok() {
        fs_err::remove_file(&g)?;
    }
    m.daemon_reload()
}

/// Evaluate, build and switch to scenario `name` (`variant`).
fn generation(sc: &Scenario, name: &str, variant: &str) -> Result<Generation> {
    let export = harness::nixos::evaluate(sc.m, name, &sc.prefix, variant, &[])?;
    let dir = sc.m.dir.path().join(format!("{}-{variant}", sc.prefix));
    Generation::build(export, &dir)
}

/// Run `body` with `g` installed; remove it afterwards, whatever happened.
fn installed<T>(sc: &Scenario, g: &Generation, body: impl FnOnce() -> Result<T>) -> Result<T> {
    let r = g.switch(sc.m, None).and_then(|_| body());
    let removed = g.remove(sc.m);
    let v = r?;
    removed?;
    Ok(v)
}

fn wait_units(sc: &Scenario, svcs: &[&str]) -> Result<()> {
    for s in svcs {
        sc.m.wait_active(&sc.unit(s), Duration::from_secs(120))?;
    }
    Ok(())
}

/// curl's arguments for a GET of `url` that gives up after 5 s.
fn curl(url: &str) -> [&str; 5] {
    ["curl", "-fsS", "--max-time", "5", url]
}

/// GET `url` from the machine (in all its namespaces): the body.
fn get_in_machine(sc: &Scenario, url: &str) -> Result<String> {
    sc.m.ok(&curl(url))
}

/// GET `url` from the client, another host on the LAN.
fn get_from_client(sc: &Scenario, url: &str) -> Result<std::process::Output> {
    let net =
        sc.m.net
            .as_ref()
            .context("the machine has no network of its own")?;
    net.client(&curl(url))
        .stdin(std::process::Stdio::null())
        .output()
        .context("running wget in the client namespace")
}

/// Run a command in a container of the scenario.
fn in_container(sc: &Scenario, svc: &str, argv: &[&str]) -> Result<String> {
    let c = sc.container(svc);
    let mut v = vec!["exec", c.as_str()];
    v.extend_from_slice(argv);
    sc.m.engine(&v)
}

// ---------------------------------------------------------------- scenarios

/// What NixOS installs is where NixOS puts it, and works from there: the
/// units are links into the package's store path (its own `*.wants` links
/// are not used: the target is wanted through `wantedBy`), the users and the
/// tmpfiles' directories exist as declared, and the CLI finds the stack
/// through the manifest in /etc.
fn installed_as_nixos(sc: &mut Scenario) -> Result<()> {
    let g = generation(sc, "firewall", "default")?;
    installed(sc, &g, || {
        wait_units(sc, &["closed", "open"])?;
        let m = sc.m;
        let unit = m.ok(&[
            "readlink",
            &format!("/etc/systemd/system/{}", sc.unit("closed")),
        ])?;
        let store = g.store.values().next().context("no package")?;
        ensure!(
            unit.trim() == format!("{store}/lib/systemd/system/{}", sc.unit("closed")),
            "{} links to {unit:?}, not into {store}",
            sc.unit("closed")
        );
        let wanted = m.systemctl(&["show", "-P", "WantedBy", &sc.target()])?;
        ensure!(
            wanted.split_whitespace().any(|w| w == "multi-user.target"),
            "{} is wanted by {wanted:?}",
            sc.target()
        );
        let user = m.ok(&["getent", "passwd", &sc.prefix])?;
        ensure!(
            user.split(':').nth(2) == Some("568") && user.split(':').nth(3) == Some("169"),
            "the containers' user: {user:?} (expected uid 568, gid 169)"
        );
        for (dir, want) in [
            ("/data", "2775 root media"),
            ("/var/lib/nixarr", "755 root root"),
        ] {
            let got = m.ok(&["stat", "-c", "%a %U %G", dir])?;
            ensure!(got.trim() == want, "{dir}: {got:?}, expected {want:?}");
        }
        // The CLI of the package, as a NixOS user runs it: the manifest in
        // /etc/nixarr-units (no generator here) names the stack.
        let exe = format!("{}/bin/nixarr-units", g.export.package.path);
        let status = m.exec(&[&exe, "status", "--json"])?;
        ensure!(
            status.status.success(),
            "nixarr-units status from the manifest in /etc:\n{}",
            output_text(&status)
        );
        let text = String::from_utf8_lossy(&status.stdout);
        for svc in ["closed", "open"] {
            ensure!(
                text.contains(&sc.unit(svc)),
                "status does not list {svc}:\n{text}"
            );
        }
        firewall_is_on(sc, &g)
    })
}

/// The emulated NixOS firewall is in place: a service of the host itself on
/// a port that is not in allowedTCPPorts is dropped for the LAN (curl times
/// out, exit status 28), and answers once the firewall is off.
fn firewall_is_on(sc: &Scenario, g: &Generation) -> Result<()> {
    let listener = format!("{}-host-listener", sc.prefix);
    sc.m.ok(&[
        "systemd-run",
        "--unit",
        &listener,
        "busybox",
        "nc",
        "-ll",
        "-p",
        "9911",
        "-e",
        "/bin/true",
    ])?;
    let url = format!("http://{NET_MACHINE_ADDR}:9911/");
    let probe = || -> Result<i32> {
        let net = sc.m.net.as_ref().context("no network of its own")?;
        let o = net
            .client(&["curl", "-sS", "--max-time", "3", &url])
            .stdin(std::process::Stdio::null())
            .output()?;
        Ok(o.status.code().unwrap_or(-1))
    };
    // Until it listens (seen from the machine itself: lo is trusted).
    harness::wait_for("the host's listener", Duration::from_secs(10), || {
        let o =
            sc.m.exec(&["curl", "-sS", "--max-time", "2", "http://127.0.0.1:9911/"])?;
        Ok(o.status.code().is_some_and(|c| c != 7).then_some(()))
    })?;
    let on = probe()?;
    g.firewall_off(sc.m)?;
    let off = probe()?;
    let _ = sc.m.exec(&["systemctl", "stop", &listener]);
    ensure!(
        on == 28,
        "firewall on: port 9911 of the host should be dropped for the LAN (curl exit 28), \
         curl exited {on}"
    );
    ensure!(
        off != 28 && off != 7,
        "firewall off: port 9911 of the host should answer the LAN, curl exited {off}"
    );
    Ok(())
}

/// (a) Two containers reach each other by their network alias, and a name
/// only the LAN's resolver knows resolves through the engine's DNS server,
/// with the NixOS firewall on.
fn dns(sc: &mut Scenario) -> Result<()> {
    if sc.m.backend == Backend::Podman {
        let v = harness::nixos::engine_version(sc.m)?;
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < (4, 5) {
            sc.notes.push(format!(
                "not run: podman {v} cannot name the stack's bridge (--interface-name is \
                 podman >= 4.5), so the module cannot open DNS on it; NixOS ships podman 5"
            ));
            return Ok(());
        }
    }
    let g = generation(sc, "dns", "default")?;
    installed(sc, &g, || {
        wait_units(sc, &["alpha", "beta"])?;
        let checked = resolve_all(sc);
        if let Err(e) = &checked {
            // Why: the same lookups with the firewall off.
            let why = match g.firewall_off(sc.m).and_then(|()| resolve_all(sc)) {
                Ok(()) => {
                    "they all succeed with the firewall off: the firewall blocks DNS".to_owned()
                }
                Err(e) => format!("with the firewall off too: {e:#}"),
            };
            let conf = in_container(sc, "alpha", &["cat", "/etc/resolv.conf"]).unwrap_or_default();
            anyhow::bail!("{e:#}\nalpha's /etc/resolv.conf:\n{conf}\n{why}");
        }
        checked
    })
}

/// The address `nslookup NAME` prints last (the answer; the server's comes
/// first), if any.
fn answer(out: &str) -> Option<String> {
    let after = out.split_once("Name:")?.1;
    after
        .split(|c: char| c.is_whitespace() || c == ':')
        .rfind(|w| w.split('.').count() == 4 && w.split('.').all(|p| p.parse::<u8>().is_ok()))
        .map(str::to_owned)
}

fn resolve_all(sc: &Scenario) -> Result<()> {
    for (from, to) in [("alpha", "beta"), ("beta", "alpha")] {
        let out = in_container(sc, from, &["nslookup", to])
            .with_context(|| format!("{from} cannot resolve {to}"))?;
        let addr = answer(&out)
            .with_context(|| format!("nslookup {to} in {from} gave no address:\n{out}"))?;
        // (busybox's `wget -T` crashes: `timeout` bounds it instead.)
        let body = in_container(
            sc,
            from,
            &[
                "timeout",
                "10",
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://{to}:8080/ping"),
            ],
        )
        .with_context(|| format!("{from} cannot reach http://{to}:8080/ping"))?;
        ensure!(body.contains("OK"), "{from} → {to}: {body}");
        let peer = sc.m.engine(&[
            "inspect",
            "--type=container",
            "--format={{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &sc.container(to),
        ])?;
        ensure!(
            peer.split_whitespace().any(|a| a == addr),
            "{to} resolves to {addr} in {from}, but {to} has {peer:?}"
        );
    }
    let out = in_container(sc, "alpha", &["nslookup", NET_HOST_NAME])
        .with_context(|| format!("alpha cannot resolve the host's name {NET_HOST_NAME}"))?;
    ensure!(
        answer(&out).as_deref() == Some(NET_MACHINE_ADDR),
        "nslookup {NET_HOST_NAME} in alpha did not answer {NET_MACHINE_ADDR}:\n{out}"
    );
    Ok(())
}

/// (b) openFirewall = false: closed to another host, open on the machine's
/// loopback; openFirewall = true: open to another host.
fn open_firewall(sc: &mut Scenario) -> Result<()> {
    let g = generation(sc, "firewall", "default")?;
    installed(sc, &g, || {
        wait_units(sc, &["closed", "open"])?;
        // Both run and answer on the machine itself.
        for port in [8181, 8182] {
            let body = get_in_machine(sc, &format!("http://127.0.0.1:{port}/ping"))?;
            ensure!(body.contains("OK"), "127.0.0.1:{port}: {body}");
        }
        // The LAN reaches the open one (so the path itself works) ...
        let open = get_from_client(sc, &format!("http://{NET_MACHINE_ADDR}:8182/ping"))?;
        ensure!(
            open.status.success() && String::from_utf8_lossy(&open.stdout).contains("OK"),
            "openFirewall = true: port 8182 unreachable from {NET_CLIENT_ADDR}:\n{}",
            output_text(&open)
        );
        // ... and not the closed one.
        let closed = get_from_client(sc, &format!("http://{NET_MACHINE_ADDR}:8181/ping"))?;
        ensure!(
            !closed.status.success(),
            "openFirewall = false, yet port 8181 answers {NET_CLIENT_ADDR} from the LAN:\n{}",
            output_text(&closed)
        );
        Ok(())
    })
}

/// PIDs that tell whether a unit's container was restarted: the unit's main
/// PID and the container's.
fn pids(sc: &Scenario, svc: &str) -> Result<(u64, String)> {
    let main =
        sc.m.unit_property(&sc.unit(svc), "Service", "MainPID")?
            .as_u64()
            .context("MainPID")?;
    let c =
        sc.m.engine(&[
            "inspect",
            "--type=container",
            "--format={{.State.Pid}}",
            &sc.container(svc),
        ])?
        .trim()
        .to_owned();
    Ok((main, c))
}

/// (c) A switch that changes one container's option restarts that
/// container and nothing else.
fn switch(sc: &mut Scenario) -> Result<()> {
    let svcs = ["alpha", "beta", "gamma"];
    let g1 = generation(sc, "switch", "default")?;
    let g2 = generation(sc, "switch", "changed")?;
    let differ: Vec<&String> = g2
        .units
        .iter()
        .filter(|(u, b)| g1.units.get(*u) != Some(b))
        .map(|(u, _)| u)
        .collect();
    ensure!(
        differ == [&sc.unit("beta")],
        "the changed option should change beta's unit only, changed: {differ:?}"
    );
    installed(sc, &g1, || {
        wait_units(sc, &svcs)?;
        let before: Vec<_> = svcs.iter().map(|s| pids(sc, s)).collect::<Result<_>>()?;
        let restarted = g2.switch(sc.m, Some(&g1))?;
        ensure!(
            restarted == [sc.unit("beta")],
            "switch restarted {restarted:?}, expected only {}",
            sc.unit("beta")
        );
        wait_units(sc, &svcs)?;
        let env = in_container(sc, "beta", &["sh", "-c", "echo \"$GENERATION\""])?;
        ensure!(
            env.trim() == "2",
            "beta runs generation {env:?} after the switch"
        );
        let after: Vec<_> = svcs.iter().map(|s| pids(sc, s)).collect::<Result<_>>()?;
        for ((s, b), a) in svcs.iter().zip(&before).zip(&after) {
            let same = b == a;
            ensure!(
                same == (*s != "beta"),
                "{s}: PIDs before {b:?}, after {a:?} ({})",
                if same { "not restarted" } else { "restarted" }
            );
        }
        // The first generation's links are gone, the second's in place.
        g2.remove(sc.m)
    })
}
