#![allow(clippy::unwrap_used)]
//! The NixOS VM test's scenario (tests/vm/scenario.py, the testScript of
//! nix/vm-test.nix) run here, on real systemd in systemd-nspawn, through the
//! stand-in driver tests/vm/nspawn_driver.py. Only the Nix glue that builds
//! the VM is not exercised.
//!
//! The machine gets the equivalent of the VM's NixOS configuration: the
//! spec the module would write for sonarr, radarr (dependsOn sonarr) and the
//! instance sonarr-4k (host 8990 → 8989), all catalog apps on the fake *arr
//! image of tests/vm/fake-arr/ (loaded from an image archive, as the VM's
//! dockerTools image is), the module's defaults (puid 568, pgid 169), and
//! /data as the module's tmpfiles make it. The spec goes to the generator's
//! /etc/nixarr-units/, then daemon-reload and the start of multi-user.target
//! stand for the boot that starts the stack in the VM.
//!
//! The scenario's host ports are fixed (8989, 7878, 8990) and the machine
//! shares the host's network: the test fails at once, saying so, when
//! something already listens there. Cargo runs test binaries one after the
//! other, so no other e2e test uses the machine network meanwhile.
//!
//! Runs as root only (CI does); otherwise prints SKIPPED loudly.

#[path = "e2e/mod.rs"]
mod e2e;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use e2e::{Backend, BootOptions, Machine, SCENARIO_LABEL, host};
use serde_json::{Value, json};

/// The VM test's image name (nix/vm-test.nix), here imported from the same
/// files.
const FAKE_ARR: &str = "localhost/fake-arr:test";
const FAKE_ARR_FILES: &[(&str, &str, u32)] = &[
    ("bin/fake-arr", include_str!("vm/fake-arr/run"), 0o755),
    ("bin/curl", include_str!("vm/fake-arr/curl"), 0o755),
    ("www/ping", include_str!("vm/fake-arr/www/ping"), 0o644),
];
/// The stack of nix/vm-test.nix: service, catalog app, host port,
/// LISTEN_PORT of the fake app, dependencies.
const STACK: &[(&str, &str, u16, u16, &[&str])] = &[
    ("sonarr", "sonarr", 8989, 8989, &[]),
    ("radarr", "radarr", 7878, 7878, &["sonarr"]),
    ("sonarr-4k", "sonarr", 8990, 8989, &[]),
];
const PREFIX: &str = "nixarr";
/// Our containers' value of the harness's [`SCENARIO_LABEL`].
const SCENARIO_VALUE: &str = "vm-scenario";
/// The module's `services.nixarr-units.defaults`.
const PUID: u32 = 568;
const PGID: u32 = 169;
/// Upper bound of the whole scenario; each wait inside has its own.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(20 * 60);

#[test]
fn vm_scenario_on_nspawn() {
    if let Some(why) = skip_reason() {
        eprintln!("\n!!!!!!!! SKIPPED: the VM scenario on nspawn not run: {why} !!!!!!!!\n");
        return;
    }
    let _serial = e2e::MACHINES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    e2e::clean_leftovers();
    if let Err(e) = ports_are_free() {
        panic!("{e:#}");
    }
    let started = Instant::now();
    // Its own podman storage: other e2e runs on the host (a colleague's
    // `cargo test`) would otherwise reset our containers' state.
    // It imports the VM test's own image, not the fake app.
    let opts = BootOptions {
        private_storage: true,
        no_fake_app: true,
        ..BootOptions::default()
    };
    let machine = Machine::boot_with(Backend::Podman, opts).expect("booting the e2e machine");
    let outcome = clean_stale_port_rules()
        .and_then(|()| prepare(&machine))
        .and_then(|()| run_scenario(&machine));
    if outcome.is_err() {
        eprintln!("{}", machine.diagnostics(&format!("{PREFIX}*")));
    }
    cleanup(&machine);
    drop(machine);
    eprintln!(
        "e2e_vm_scenario: {} in {:.1}s",
        if outcome.is_ok() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f32()
    );
    if let Err(e) = outcome {
        panic!("{e:#}");
    }
}

fn skip_reason() -> Option<String> {
    if let Some(why) = e2e::skip_reason() {
        return Some(why);
    }
    let python = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !python.is_ok_and(|s| s.success()) {
        return Some("python3 is missing (it runs tests/vm/nspawn_driver.py)".to_owned());
    }
    None
}

/// The scenario publishes fixed ports on the host's network.
fn ports_are_free() -> Result<()> {
    for &(svc, _, port, _, _) in STACK {
        let answers =
            TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1))
                .is_ok();
        let bindable = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
        if answers || !bindable {
            bail!(
                "host port {port} (the VM scenario's {svc}) is already in use on this machine \
                 (`ss -ltnp 'sport = :{port}'` says by what); the scenario's ports are fixed \
                 (8989, 7878, 8990) because tests/vm/scenario.py is also the NixOS VM test's \
                 script: stop whatever listens there and run again"
            );
        }
    }
    Ok(())
}

/// Remove netavark's port forwarding for a network named [`PREFIX`] that an
/// earlier machine left in the host's network namespace (a machine killed,
/// or one whose podman lost track of its containers, never tears it down).
/// Such a rule forwards the scenario's fixed ports to a dead address, and
/// connections time out. Safe here: the host lock is held, so no other
/// machine runs, and only this test names a network `nixarr`.
fn clean_stale_port_rules() -> Result<()> {
    const CHAIN: &str = "NETAVARK-HOSTPORT-DNAT";
    let Ok(list) =
        host(Command::new("iptables").args(["-t", "nat", "-L", CHAIN, "-n", "--line-numbers"]))
    else {
        return Ok(()); // no netavark rules at all
    };
    let marker = format!("/* dnat name: {PREFIX} id: ");
    let mut stale: Vec<(u32, String)> = list
        .lines()
        .filter(|l| l.contains(&marker))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let num = words.next()?.parse().ok()?;
            Some((num, words.next()?.to_owned()))
        })
        .collect();
    // Highest first, so the numbers of the others stay valid.
    stale.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (num, _) in &stale {
        eprintln!(
            "e2e_vm_scenario: removing stale netavark rule {CHAIN} #{num} for network {PREFIX}"
        );
        host(Command::new("iptables").args(["-t", "nat", "-D", CHAIN, &num.to_string()]))?;
    }
    let mut chains: Vec<&str> = stale.iter().map(|(_, c)| c.as_str()).collect();
    chains.sort_unstable();
    chains.dedup();
    for chain in chains.iter().filter(|c| c.starts_with("NETAVARK-DN-")) {
        host(Command::new("iptables").args(["-t", "nat", "-F", chain]))?;
        // Still referenced by a live network's rule: keep the empty chain.
        let _ = host(Command::new("iptables").args(["-t", "nat", "-X", chain]));
    }
    Ok(())
}

/// The fake *arr root file system (busybox plus tests/vm/fake-arr/), as a
/// tarball with deterministic bytes.
fn fake_arr_tar(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("fake-arr-rootfs");
    fs_err::create_dir_all(root.join("bin"))?;
    fs_err::copy("/usr/bin/busybox", root.join("bin/busybox"))
        .context("copying busybox (apt-get install busybox-static)")?;
    let list = host(Command::new("/usr/bin/busybox").arg("--list"))?;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        fs_err::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    for (path, text, mode) in FAKE_ARR_FILES {
        let p = root.join(path);
        fs_err::create_dir_all(p.parent().context("no parent")?)?;
        // The shim replaces busybox's own applet of that name, if any.
        let _ = fs_err::remove_file(&p);
        fs_err::write(&p, text)?;
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
    }
    let tar = dir.join("fake-arr-rootfs.tar");
    host(
        Command::new("tar")
            .arg("--sort=name")
            .arg("--mtime=@0")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )?;
    Ok(tar)
}

/// What services.nixarr-units of nix/vm-test.nix turns into (the module's
/// `spec`): catalog apps with image, imageFile and LISTEN_PORT overridden,
/// the web port moved to the instance's `port` (on 127.0.0.1: the firewall
/// is not opened), the network's bridge named, the module's defaults.
fn spec(image_file: &str) -> Value {
    let services: serde_json::Map<String, Value> = STACK
        .iter()
        .map(|&(svc, app, host_port, listen, deps)| {
            (
                svc.to_owned(),
                json!({
                    "app": app,
                    "image": FAKE_ARR,
                    "imageFile": image_file,
                    "environment": { "LISTEN_PORT": listen.to_string() },
                    // openFirewall is false: published on loopback only.
                    "ports": [{ "host": host_port, "container": listen, "protocol": "tcp", "address": "127.0.0.1" }],
                    "dependsOn": deps,
                    "vpn": false,
                    "extraArgs": [],
                    "environmentFiles": [],
                    // Not in the module's spec: lets the harness remove
                    // containers a crashed run left in the host's storage.
                    "labels": { SCENARIO_LABEL: SCENARIO_VALUE },
                }),
            )
        })
        .collect();
    json!({
        "version": 1,
        "backend": "podman",
        "prefix": PREFIX,
        "network": { "interface": "br-nixarr" },
        "defaults": { "puid": PUID, "pgid": PGID, "tz": "Etc/UTC", "umask": "002" },
        "paths": { "stateDir": "/var/lib/nixarr", "dataDir": "/data" },
        "services": services,
    })
}

fn prepare(m: &Machine) -> Result<()> {
    m.claim_scenario_label(SCENARIO_VALUE);
    let d = m.dir.path();
    let tar = fake_arr_tar(d)?;
    let tar = tar.to_str().context("temp path is not UTF-8")?;
    m.ok(&[
        "podman",
        "import",
        "--change",
        r#"CMD ["/bin/fake-arr"]"#,
        tar,
        FAKE_ARR,
    ])
    .context("importing the fake *arr image")?;
    // The VM loads its dockerTools image from a file before each start
    // (`imageFile`); do the same with an archive of the imported image.
    let archive = d.join("fake-arr-image.tar");
    let archive = archive.to_str().context("temp path is not UTF-8")?;
    m.ok(&[
        "podman",
        "save",
        "--format=docker-archive",
        "--output",
        archive,
        FAKE_ARR,
    ])
    .context("saving the fake *arr image as an archive")?;
    // systemd.tmpfiles.rules of the module: `d /data 2775 root media`.
    m.ok(&["mkdir", "-p", "/data"])?;
    m.ok(&["chown", &format!("0:{PGID}"), "/data"])?;
    m.ok(&["chmod", "2775", "/data"])?;
    m.write_spec(PREFIX, &spec(archive))?;
    m.daemon_reload()?;
    // In the VM, boot starts multi-user.target, which wants <prefix>.target.
    // Here the machine booted before the spec existed: start it again so
    // its new wants start, without waiting (the scenario waits, as in the VM).
    m.systemctl(&["start", "--no-block", "multi-user.target"])?;
    Ok(())
}

fn run_scenario(m: &Machine) -> Result<()> {
    let root = env!("CARGO_MANIFEST_DIR");
    let log_path = m.dir.path().join("vm-scenario.log");
    let log = fs_err::File::create(&log_path)?;
    let mut child = Command::new("python3")
        .current_dir(root)
        .arg("tests/vm/nspawn_driver.py")
        .arg(format!("--pid={}", m.leader))
        .arg("tests/vm/scenario.py")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?.into_parts().0)
        .stderr(log.into_parts().0)
        .spawn()
        .context("starting python3 tests/vm/nspawn_driver.py")?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > SCENARIO_TIMEOUT {
            // Ours, by PID.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let output = fs_err::read_to_string(&log_path).unwrap_or_default();
    eprintln!("---- tests/vm/scenario.py through tests/vm/nspawn_driver.py\n{output}----");
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => bail!("tests/vm/scenario.py failed ({s}):\n{output}"),
        None => bail!("tests/vm/scenario.py did not finish within {SCENARIO_TIMEOUT:?}:\n{output}"),
    }
}

/// Stop the stack and remove it, so the machine's poweroff is quick.
fn cleanup(m: &Machine) {
    let _ = m.exec(&["systemctl", "stop", &format!("{PREFIX}.target")]);
    let _ = m.remove_spec(PREFIX);
    let _ = m.daemon_reload();
    let _ = m.exec(&["podman", "network", "rm", PREFIX]);
}
