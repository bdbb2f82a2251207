//! End-to-end harness: real systemd as PID 1 in systemd-nspawn over the
//! host's /usr, nixarr-units installed inside as a systemd generator, real
//! podman (inside) and a real dockerd (started here, on the host).
//! See /work/shared/REAL-SYSTEMD.md for why each piece looks the way it does.
//!
//! Use from a test file with `#[path = "e2e/mod.rs"] mod e2e;`. One
//! [`Machine`] per backend is booted and shared by that backend's
//! scenarios; [`run_scenarios`] runs them in sequence, each with its own
//! prefix, and prints `systemctl status` and the journal when one fails.
//! Everything started here is stopped by PID in `Drop`, and everything
//! created lives under one temporary directory that `Drop` removes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

/// Every machine name, temp dir and dockerd of this harness carries it.
pub const MARKER: &str = "nixarr-e2e";
pub const IMAGE: &str = "localhost/nixarr-fake-app:test";
/// A label on every test container: which scenario made it.
pub const SCENARIO_LABEL: &str = "org.nixarr-e2e.scenario";
pub const BIN: &str = env!("CARGO_BIN_EXE_nixarr-units");
/// Where the machine sees the binary's directory for the generator (and so
/// for every unit it renders).
pub const MACHINE_BIN_DIR: &str = "/run/nixarr-e2e-bin";
const FAKE_APP: &[(&str, &str)] = &[
    ("run", include_str!("fake-app/run")),
    ("handle", include_str!("fake-app/handle")),
    ("ctl", include_str!("fake-app/ctl")),
];

/// Serialises machines across the test threads of one process.
pub static MACHINES: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Podman,
    Docker,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Podman => "podman",
            Backend::Docker => "docker",
        }
    }
    pub fn engine(self) -> &'static str {
        match self {
            Backend::Podman => "/usr/bin/podman",
            Backend::Docker => "/usr/bin/docker",
        }
    }
}

/// What a machine runs, for messages: `podman`, `podman5` (the trixie
/// machine, see [`BootOptions::trixie`]) or `docker`.
pub fn label(backend: Backend, trixie: bool) -> &'static str {
    match (backend, trixie) {
        (Backend::Podman, true) => "podman5",
        (b, _) => b.name(),
    }
}

/// Why the end-to-end tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY-free check of the effective uid: /proc/self is owned by it.
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if uid != 0 {
        return Some("not running as root".to_owned());
    }
    if !Path::new("/usr/bin/systemd-nspawn").exists() {
        return Some("systemd-nspawn is missing (apt-get install systemd-container)".to_owned());
    }
    None
}

pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run a host command, failing with its output when it fails.
pub fn host(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{}", out.status, output_text(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A short id that differs between runs.
pub fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:04x}", (std::process::id() ^ nanos) & 0xffff)
}

/// Poll `f` until it returns `Ok(Some(_))` or `timeout` passes; the error
/// says what was awaited and the last reason.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "not yet".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A minimal HTTP/1.0 GET from the host: (status, headers, body bytes).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .with_context(|| format!("reading the answer to GET {path}"))?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no end of headers in {:?}", String::from_utf8_lossy(&buf)))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let body = buf[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, head, body))
}

/// Kill leftovers of earlier (crashed) runs: nspawn machines and dockerds
/// whose command line carries [`MARKER`], then their temporary directories.
/// Runs once per test process, before its first machine.
///
/// Machines and directories of a test process that is still running (another
/// `cargo test` on the same host, e.g. a colleague's) are left alone: each
/// carries its owner ([`OWNER_ENV`] in the environment of nspawn and dockerd,
/// an `owner` file in the directory), and only those whose owner is gone are
/// leftovers.
pub fn clean_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(clean_leftovers_now);
}

/// Environment variable naming the test process that started a machine or
/// dockerd: `PID:STARTTIME` (start time from /proc/PID/stat, so a reused PID
/// does not count).
pub const OWNER_ENV: &str = "NIXARR_E2E_OWNER";

/// `PID:STARTTIME` of a process, if it runs.
fn process_tag(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime), counted after the parenthesised command name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid}:{start}"))
}

/// This test process, as [`OWNER_ENV`] names it.
pub fn owner_tag() -> String {
    process_tag(std::process::id()).unwrap_or_else(|| format!("{}:?", std::process::id()))
}

/// Whether the owner named by a tag still runs.
fn owner_alive(tag: &str) -> bool {
    let Some(pid) = tag.split(':').next().and_then(|p| p.parse().ok()) else {
        return false;
    };
    process_tag(pid).as_deref() == Some(tag.trim())
}

fn clean_leftovers_now() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let exe = args.first().map(String::as_str).unwrap_or("");
        let ours = args.iter().any(|a| a.contains(MARKER));
        let kind = exe.ends_with("systemd-nspawn")
            || exe.ends_with("dockerd")
            || args.iter().any(|a| a.ends_with(LAN_DNS_NAME));
        if !(ours && kind) {
            continue;
        }
        let owner = std::fs::read(format!("/proc/{pid}/environ"))
            .ok()
            .and_then(|env| parse_environ(&env).remove(OWNER_ENV));
        if let Some(owner) = owner.filter(|o| owner_alive(o)) {
            eprintln!(
                "e2e: {exe} (pid {pid}) belongs to test process {owner}, still running; left alone"
            );
            continue;
        }
        eprintln!("e2e: killing leftover {exe} (pid {pid}) of an earlier run");
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    std::thread::sleep(Duration::from_millis(500));
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with(MARKER) {
                continue;
            }
            let in_use = match std::fs::read_to_string(e.path().join("owner")) {
                Ok(owner) => owner_alive(&owner),
                // No owner file: a run from before owners were recorded, or
                // one that is creating its directory right now.
                Err(_) => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < Duration::from_secs(600))),
            };
            if !in_use {
                Net::delete_recorded(&e.path());
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Build the fake app's root file system tarball (deterministic bytes).
fn build_image_tar(dir: &Path) -> Result<PathBuf> {
    let root = dir.join("fake-rootfs");
    for d in ["bin", "app", "tmp", "proc", "sys", "dev", "etc"] {
        fs_err::create_dir_all(root.join(d))?;
    }
    fs_err::copy("/usr/bin/busybox", root.join("bin/busybox"))
        .context("copying busybox (apt-get install busybox-static)")?;
    let list = host(Command::new("/usr/bin/busybox").arg("--list"))?;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            fs_err::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    for (name, text) in FAKE_APP {
        let p = root.join("app").join(name);
        fs_err::write(&p, text)?;
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    fs_err::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")?;
    fs_err::write(root.join("etc/group"), "root:x:0:\n")?;
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    let tar = dir.join("fake-app.tar");
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

/// dockerd started by us on the host, in a private mount namespace where
/// the nspawn machine's journal directory is mounted at
/// /run/systemd/journal (so `--log-driver=journald` logs into the machine's
/// journal, as on a real host), and the machine's /run/nixarr-units at
/// /run/nixarr-units (so bind mounts of secret copies resolve as on a real
/// host, where dockerd and systemd share /run).
///
/// With a [`Net`], dockerd runs in the machine's network namespace
/// (`nsenter --net`), so its bridges, DNAT rules and the machine's firewall
/// are in one namespace as on a real host, and reads the machine's
/// resolv.conf (the LAN's resolver) instead of the host's.
pub struct Dockerd {
    child: Child,
    pub socket: PathBuf,
}

impl Dockerd {
    fn start(
        dir: &Path,
        journal_dir: &Path,
        nixarr_run: &Path,
        net: Option<&Net>,
    ) -> Result<Dockerd> {
        let socket = dir.join("docker.sock");
        let log = fs_err::File::create(dir.join("dockerd.log"))?;
        // With a network: dockerd in the machine's network namespace, under
        // a sysfs of that namespace (as `ip netns exec` mounts one) with the
        // host's cgroup tree bound into it unchanged (a cgroup2 mounted in
        // its place instead would let dockerd change the host's hierarchy).
        let script = r#"set -e
mkdir -p /run/systemd/journal /run/nixarr-units
mount --bind "$1" /run/systemd/journal
mount --bind "$2" /run/nixarr-units
if [ -n "$3" ]; then
  mount --bind "$4" /etc/resolv.conf
  mkdir -p "$5"
  mount --rbind /sys/fs/cgroup "$5"
  ns="$3" cg="$5"
  shift 5
  exec nsenter --net="$ns" sh -c 'mount -t sysfs sysfs /sys && mount --rbind "$0" /sys/fs/cgroup && exec "$@"' "$cg" "$@"
fi
shift 5
exec "$@""#;
        let (netns, resolv) = match net {
            Some(n) => (n.machine_path(), n.resolv_conf(dir)?),
            None => (PathBuf::new(), PathBuf::new()),
        };
        let mut cmd = Command::new("unshare");
        cmd.env(OWNER_ENV, owner_tag());
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(journal_dir)
        .arg(nixarr_run)
        .arg(&netns)
        .arg(&resolv)
        .arg(dir.join("host-cgroup"))
        .arg("/usr/sbin/dockerd")
        .arg(format!("--data-root={}", dir.join("docker-data").display()))
        .arg(format!("--exec-root={}", dir.join("dx").display()))
        .arg(format!("--pidfile={}", dir.join("docker.pid").display()))
        .arg(format!("--host=unix://{}", socket.display()))
        .arg("--log-level=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?.into_parts().0)
        .stderr(log.into_parts().0)
        .process_group(0);
        let child = cmd.spawn().context("starting dockerd")?;
        let d = Dockerd { child, socket };
        wait_for("dockerd to answer", Duration::from_secs(60), || {
            let ok = Command::new("/usr/bin/docker")
                .arg(format!("--host=unix://{}", d.socket.display()))
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            Ok(ok.then_some(()))
        })
        .with_context(|| {
            format!(
                "dockerd log:\n{}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            )
        })?;
        Ok(d)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Stop by the PID we started; dockerd stops its containers and its
        // own containerd on SIGTERM.
        let pid = self.child.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of the machine in its private network ([`Net`]).
pub const NET_MACHINE_ADDR: &str = "10.213.77.1";
/// The address of the client (another host on the LAN) in that network.
pub const NET_CLIENT_ADDR: &str = "10.213.77.2";
/// The machine's name as the LAN's resolver knows it.
pub const NET_HOST_NAME: &str = "nixarr-host.test";
/// The LAN's resolver: a tiny DNS server run in the client namespace.
const LAN_DNS_NAME: &str = "nixarr-e2e-lan-dns.py";
const LAN_DNS: &str = include_str!("lan-dns.py");

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
    fn create(dir: &Path, id: &str) -> Result<Net> {
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
    fn delete_recorded(dir: &Path) {
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

/// How [`Machine::boot_with`] sets a machine up.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootOptions {
    /// Podman storage of the machine's own (under its temporary directory)
    /// instead of the host's /var/lib/containers. The host's is shared by
    /// every machine on the host, and a podman that starts in a freshly
    /// booted machine resets the state of every container in it ("refresh"
    /// after a reboot), so a concurrent test run elsewhere on the host makes
    /// `podman exec` and health checks fail with "container state improper".
    pub private_storage: bool,
    /// Leave out the fake app's image (a test that brings its own).
    pub no_fake_app: bool,
    /// A network namespace of the machine's own ([`Net`]): loopback and a
    /// veth pair to a client namespace, nothing shared with the host, so a
    /// firewall in the machine touches only it. dockerd runs in it too.
    pub private_network: bool,
    /// Boot the cached Debian trixie root ([`trixie_root`]: podman 5.4,
    /// systemd 257, what NixOS users run) instead of the host's /usr
    /// (Debian 12: podman 4.3, systemd 252). Podman only. The root is
    /// mounted read-only under an overlay whose upper layer is in the
    /// machine's temporary directory, so a run never changes the cache, and
    /// the machine always has podman storage of its own (podman 4 and 5
    /// storage must not mix, and an overlay cannot hold overlay storage).
    pub trixie: bool,
}

/// Where tests/trixie-root.sh caches the trixie root.
pub const TRIXIE_ROOT_DEFAULT: &str = "/var/cache/nixarr-units/trixie-root";
/// The stamp tests/trixie-root.sh writes into a finished root.
const TRIXIE_STAMP: &str = ".nixarr-units-recipe";

/// The trixie root the podman 5 machine boots: `$NIXARR_TRIXIE_ROOT` or
/// [`TRIXIE_ROOT_DEFAULT`], built by `bash tests/trixie-root.sh`.
pub fn trixie_root() -> PathBuf {
    std::env::var_os("NIXARR_TRIXIE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(TRIXIE_ROOT_DEFAULT))
}

/// Why the podman 5 machine cannot boot here, if it cannot.
pub fn trixie_missing() -> Option<String> {
    let root = trixie_root();
    (!root.join(TRIXIE_STAMP).is_file()).then(|| {
        format!(
            "no trixie root at {} (build it with `bash tests/trixie-root.sh`; \
             tests/run.sh does)",
            root.display()
        )
    })
}

/// A booted systemd-nspawn machine with systemd as PID 1.
pub struct Machine {
    pub backend: Backend,
    /// Booted from the trixie root (podman 5), see [`BootOptions::trixie`].
    pub trixie: bool,
    /// The machine's /var/lib/containers as the host sees it: the host's
    /// own, or the machine's private storage.
    pub storage: PathBuf,
    pub name: String,
    nspawn: Option<Child>,
    /// PID (host namespace) of systemd inside.
    pub leader: u32,
    pub dockerd: Option<Dockerd>,
    /// The machine's own network, with [`BootOptions::private_network`].
    /// Dropped after the machine and dockerd (see `Drop`).
    pub net: Option<Net>,
    /// Values of [`SCENARIO_LABEL`] this machine's containers carry; `Drop`
    /// removes only those (the host's podman storage is shared with any
    /// other test run on the host).
    scenario_labels: Mutex<Vec<String>>,
    // Dropped last: everything above lives in it.
    pub dir: tempfile::TempDir,
    /// Held until the machine is gone (see [`lock_host`]).
    _host_lock: std::fs::File,
}

/// Where every machine of every test process on this host takes its turn.
pub const HOST_LOCK: &str = "/run/nixarr-e2e.lock";

/// Wait until no other machine runs on this host, in any test process.
/// Machines share the host's network (netavark's bridges, subnets and
/// iptables rules, the fixed ports of tests/vm/scenario.py) and by default
/// its podman storage, so two at once, e.g. two people's `cargo test` on one
/// development machine, break each other in ways that look like product
/// bugs. [`MACHINES`] serialises them within one process; this lock across
/// processes.
pub fn lock_host() -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(HOST_LOCK)
        .with_context(|| format!("opening {HOST_LOCK}"))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let start = Instant::now();
            eprintln!("e2e: another e2e machine runs on this host; waiting for {HOST_LOCK}");
            f.lock().with_context(|| format!("locking {HOST_LOCK}"))?;
            eprintln!(
                "e2e: got {HOST_LOCK} after {:.0}s",
                start.elapsed().as_secs_f32()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {HOST_LOCK}"));
        }
    }
    Ok(f)
}

const CONTAINERS_CONF: &str = r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
pids_limit = 0
[engine]
runtime = "runc"
"#;

/// docker.service inside the machine: the engine runs on the host (started
/// by the harness) and its socket is bound in, so the unit only checks that
/// it answers. Test-machine configuration, like containers.conf.
const DOCKER_STUB: &str = "[Unit]
Description=Docker engine of the host (nixarr-units e2e stand-in)

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/docker version
";

impl Machine {
    /// Boot a machine for `backend`; for Docker, start dockerd first.
    pub fn boot(backend: Backend) -> Result<Machine> {
        Self::boot_with(backend, BootOptions::default())
    }

    /// What the machine runs, for messages: `podman`, `podman5` (the
    /// trixie machine) or `docker`.
    pub fn label(&self) -> &'static str {
        label(self.backend, self.trixie)
    }

    /// [`Machine::boot`] with options.
    pub fn boot_with(backend: Backend, opts: BootOptions) -> Result<Machine> {
        anyhow::ensure!(
            !opts.trixie || backend == Backend::Podman,
            "the trixie machine runs podman only"
        );
        if opts.trixie
            && let Some(why) = trixie_missing()
        {
            bail!("{why}");
        }
        let host_lock = lock_host()?;
        let booting = Instant::now();
        let id = run_id();
        let what = label(backend, opts.trixie);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{MARKER}-{what}-"))
            .tempdir()
            .context("creating the machine's temporary directory")?;
        let d = dir.path().to_path_buf();
        fs_err::write(d.join("owner"), owner_tag())?;
        let name = format!("{MARKER}-{what}-{id}");
        let etc_containers = d.join("etc-containers");
        fs_err::create_dir_all(&etc_containers)?;
        fs_err::write(etc_containers.join("containers.conf"), CONTAINERS_CONF)?;
        fs_err::write(
            etc_containers.join("policy.json"),
            r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
        )?;
        let journal = d.join("journal");
        fs_err::create_dir_all(&journal)?;
        let tar = if opts.no_fake_app {
            None
        } else {
            Some(build_image_tar(&d)?)
        };
        // The machine's /run/nixarr-units, shared with dockerd (see Dockerd).
        let nixarr_run = d.join("nixarr-run");
        fs_err::create_dir_all(&nixarr_run)?;
        let net = if opts.private_network {
            Some(Net::create(&d, &id)?)
        } else {
            None
        };

        let dockerd = match backend {
            Backend::Docker => {
                fs_err::write(d.join("docker.service"), DOCKER_STUB)?;
                let dk = Dockerd::start(&d, &journal, &nixarr_run, net.as_ref())?;
                if let Some(tar) = &tar {
                    host(
                        Command::new("/usr/bin/docker")
                            .arg(format!("--host=unix://{}", dk.socket.display()))
                            .args(["import", "--change", r#"ENTRYPOINT ["/app/run"]"#])
                            .arg(tar)
                            .arg(IMAGE),
                    )
                    .context("importing the fake app into dockerd")?;
                }
                Some(dk)
            }
            Backend::Podman => None,
        };

        let exe_dir = Path::new(BIN)
            .parent()
            .context("the binary has no directory")?
            .to_path_buf();
        let storage = if opts.private_storage || opts.trixie {
            let storage = d.join("containers-storage");
            fs_err::create_dir_all(&storage)?;
            storage
        } else {
            PathBuf::from("/var/lib/containers")
        };
        let log = fs_err::File::create(d.join("nspawn.log"))?;
        let mut cmd;
        if opts.trixie {
            // The cached root under a throwaway overlay, mounted in a mount
            // namespace of nspawn's own (gone with it, whatever happens).
            // `unshare` and `sh` exec nspawn: the child's PID is nspawn's.
            let (upper, work, merged) = (d.join("upper"), d.join("work"), d.join("root"));
            for p in [&upper, &work, &merged] {
                fs_err::create_dir_all(p)?;
            }
            cmd = Command::new("unshare");
            cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(r#"set -e; mount -t overlay "$1" -o "$2" "$3"; shift 3; exec systemd-nspawn "$@""#)
                .arg("sh")
                .arg(format!("{MARKER}-root"))
                .arg(format!(
                    "lowerdir={},upperdir={},workdir={}",
                    trixie_root().display(),
                    upper.display(),
                    work.display()
                ))
                .arg(&merged)
                .arg("-D")
                .arg(&merged);
        } else {
            cmd = Command::new("systemd-nspawn");
            cmd.args(["-D", "/", "--volatile=yes"]);
        }
        cmd.env(OWNER_ENV, owner_tag())
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "1")
            .args(["--register=no", "--keep-unit", "--boot"])
            .arg(format!("--machine={name}"))
            .arg("--capability=all")
            .arg("--system-call-filter=add_key keyctl request_key bpf")
            .arg(format!("--bind={}:/var/lib/containers", storage.display()));
        if !opts.trixie {
            // The trixie root has its own alternatives (and hosts file).
            cmd.arg("--bind-ro=/etc/alternatives")
                // The volatile /etc has no hosts file: without it
                // "localhost" would be looked up in DNS.
                .arg("--bind-ro=/etc/hosts");
        }
        cmd.arg(format!(
            "--bind={}:/etc/containers",
            etc_containers.display()
        ))
        .arg(format!("--bind={}:/run/systemd/journal", journal.display()))
        .arg(format!("--bind={}", d.display()))
        .arg(format!("--bind-ro={}", exe_dir.display()))
        // The generator runs the binary from a fixed path outside /tmp:
        // the units it writes call that path, and the secret bridge's
        // PrivateTmp= would hide a checkout under /tmp.
        .arg(format!("--bind-ro={}:{MACHINE_BIN_DIR}", exe_dir.display()));
        if let Some(n) = &net {
            cmd.arg(format!(
                "--network-namespace-path={}",
                n.machine_path().display()
            ));
        }
        if let Some(dk) = &dockerd {
            cmd.arg(format!("--bind={}:/run/docker.sock", dk.socket.display()))
                .arg(format!("--bind={}:/run/nixarr-units", nixarr_run.display()))
                .arg(format!(
                    "--bind-ro={}:/etc/systemd/system/docker.service",
                    d.join("docker.service").display()
                ));
        }
        cmd.args([
            "--",
            "systemd.firstboot=off",
            // The machine shares the host's network: nothing for networkd
            // to do, and wait-online would hold network-online.target.
            "systemd.mask=systemd-networkd.service",
            "systemd.mask=systemd-networkd.socket",
            "systemd.mask=systemd-networkd-wait-online.service",
            "systemd.mask=docker.socket",
            "systemd.mask=containerd.service",
            // Shares the host network: must never load a ruleset there.
            "systemd.mask=nftables.service",
            // The boot ends with a getty on the console; nobody logs in.
            "systemd.mask=console-getty.service",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?.into_parts().0)
        .stderr(log.into_parts().0)
        .process_group(0);
        let child = cmd.spawn().context("starting systemd-nspawn")?;
        let nspawn_pid = child.id();
        let mut m = Machine {
            backend,
            trixie: opts.trixie,
            storage,
            name,
            nspawn: Some(child),
            leader: 0,
            dockerd,
            net,
            scenario_labels: Mutex::new(Vec::new()),
            dir,
            _host_lock: host_lock,
        };
        let log_path = d.join("nspawn.log");
        m.leader = wait_for(
            "systemd-nspawn to start PID 1",
            Duration::from_secs(30),
            || {
                let children = std::fs::read_to_string(format!(
                    "/proc/{nspawn_pid}/task/{nspawn_pid}/children"
                ))
                .context("nspawn is gone")?;
                Ok(children
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok()))
            },
        )
        .with_context(|| fs_err::read_to_string(&log_path).unwrap_or_default())?;
        let state = wait_for("systemd to finish booting", Duration::from_secs(90), || {
            let out = m.exec(&["systemctl", "is-system-running"])?;
            let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if matches!(s.as_str(), "running" | "degraded") {
                return Ok(Some(s));
            }
            // Say what it is waiting for, should it never finish.
            let jobs = m
                .exec(&["systemctl", "list-jobs", "--no-pager"])
                .map(|o| output_text(&o))
                .unwrap_or_default();
            bail!("systemctl is-system-running says {s:?}; jobs:\n{jobs}")
        })
        .with_context(|| {
            // What systemd still waits for.
            let jobs = m
                .exec(&["systemctl", "list-jobs", "--no-pager"])
                .map(|o| output_text(&o))
                .unwrap_or_default();
            format!(
                "{}\n---- systemctl list-jobs\n{jobs}",
                fs_err::read_to_string(&log_path).unwrap_or_default()
            )
        })?;
        if state == "degraded" {
            let failed = m.exec(&["systemctl", "--failed", "--no-pager", "--plain"])?;
            eprintln!(
                "e2e: machine {} is degraded (not fatal):\n{}",
                m.name,
                output_text(&failed)
            );
        }
        // The generator: this very binary under its generator name.
        let root = m.root();
        if let Some(n) = &m.net {
            // The LAN's resolver (nothing else resolves in a private network).
            // Replaced, never written through: a symlink there would
            // resolve against the host's root from here.
            let resolv = root.join("etc/resolv.conf");
            if resolv.symlink_metadata().is_ok() {
                fs_err::remove_file(&resolv)?;
            }
            fs_err::copy(n.resolv_conf(&d)?, &resolv)?;
        }
        fs_err::create_dir_all(root.join("etc/systemd/system-generators"))?;
        fs_err::create_dir_all(root.join("etc/nixarr-units"))?;
        let exe_name = Path::new(BIN)
            .file_name()
            .context("the test binary has no file name")?;
        fs_err::os::unix::fs::symlink(
            Path::new(MACHINE_BIN_DIR).join(exe_name),
            root.join("etc/systemd/system-generators/nixarr-units-generator"),
        )?;
        m.ok(&["systemctl", "daemon-reload"])?;
        if let (Backend::Podman, Some(tar)) = (backend, &tar) {
            m.ok(&[
                "podman",
                "import",
                "--change",
                r#"ENTRYPOINT ["/app/run"]"#,
                tar.to_str().context("temp path is not UTF-8")?,
                IMAGE,
            ])
            .context("importing the fake app into podman")?;
        }
        eprintln!(
            "e2e: machine {} booted ({}) in {:.1}s, systemd pid {}",
            m.name,
            m.label(),
            booting.elapsed().as_secs_f32(),
            m.leader
        );
        Ok(m)
    }

    /// Record that containers labelled [`SCENARIO_LABEL`]`=value` are this
    /// machine's, so `Drop` removes those it finds left over.
    pub fn claim_scenario_label(&self, value: &str) {
        let mut v = self
            .scenario_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !v.iter().any(|x| x == value) {
            v.push(value.to_owned());
        }
    }

    /// The machine's root file system, seen from the host.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader))
    }

    /// Run a command inside the machine (all its namespaces).
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {argv:?} in the machine"))
    }

    /// Run a command inside; fail with its output unless it succeeds.
    pub fn ok(&self, argv: &[&str]) -> Result<String> {
        let out = self.exec(argv)?;
        if !out.status.success() {
            bail!("{argv:?} failed ({}):\n{}", out.status, output_text(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn systemctl(&self, args: &[&str]) -> Result<String> {
        let mut v = vec!["systemctl", "--no-pager"];
        v.extend_from_slice(args);
        self.ok(&v)
    }

    /// The engine's CLI for this machine's backend (inside the machine).
    pub fn engine(&self, args: &[&str]) -> Result<String> {
        let mut v = vec![self.backend.engine()];
        v.extend_from_slice(args);
        self.ok(&v)
    }

    pub fn write_spec(&self, name: &str, spec: &serde_json::Value) -> Result<()> {
        let path = self.root().join(format!("etc/nixarr-units/{name}.json"));
        fs_err::write(&path, serde_json::to_string_pretty(spec)?)?;
        Ok(())
    }

    pub fn remove_spec(&self, name: &str) -> Result<()> {
        let path = self.root().join(format!("etc/nixarr-units/{name}.json"));
        match fs_err::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub fn daemon_reload(&self) -> Result<()> {
        self.systemctl(&["daemon-reload"]).map(drop)
    }

    /// The system bus of the machine, as the host reaches it.
    pub fn bus_address(&self) -> String {
        format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.leader
        )
    }

    /// Read a property of a unit over D-Bus from the host (busctl).
    pub fn unit_property(
        &self,
        unit: &str,
        interface: &str,
        prop: &str,
    ) -> Result<serde_json::Value> {
        let addr = format!("--address={}", self.bus_address());
        let path = host(Command::new("busctl").args([
            &addr,
            "call",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "LoadUnit",
            "s",
            unit,
        ]))?;
        // `o "/org/freedesktop/systemd1/unit/..."`
        let path = path
            .trim()
            .strip_prefix("o ")
            .map(|p| p.trim_matches('"').to_owned())
            .with_context(|| format!("unexpected LoadUnit answer {path:?}"))?;
        let json = host(Command::new("busctl").args([
            &addr,
            "--json=short",
            "get-property",
            "org.freedesktop.systemd1",
            &path,
            &format!("org.freedesktop.systemd1.{interface}"),
            prop,
        ]))?;
        let v: serde_json::Value = serde_json::from_str(json.trim())
            .with_context(|| format!("busctl printed {json:?}"))?;
        Ok(v.get("data").cloned().unwrap_or(serde_json::Value::Null))
    }

    pub fn active_state(&self, unit: &str) -> Result<String> {
        Ok(self
            .unit_property(unit, "Unit", "ActiveState")?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    pub fn sub_state(&self, unit: &str) -> Result<String> {
        Ok(self
            .unit_property(unit, "Unit", "SubState")?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    pub fn n_restarts(&self, unit: &str) -> Result<u64> {
        self.unit_property(unit, "Service", "NRestarts")?
            .as_u64()
            .context("NRestarts is not a number")
    }

    /// A timestamp property in microseconds since the epoch.
    pub fn timestamp(&self, unit: &str, interface: &str, prop: &str) -> Result<u64> {
        self.unit_property(unit, interface, prop)?
            .as_u64()
            .with_context(|| format!("{prop} of {unit} is not a number"))
    }

    pub fn wait_active(&self, unit: &str, timeout: Duration) -> Result<()> {
        wait_for(&format!("{unit} to be active"), timeout, || {
            Ok((self.active_state(unit)? == "active").then_some(()))
        })
    }

    /// `systemctl status` and the journal of every unit matching `pattern`.
    pub fn diagnostics(&self, pattern: &str) -> String {
        let mut s = String::new();
        for argv in [
            vec!["systemctl", "--no-pager", "list-units", "--all", pattern],
            vec![
                "systemctl",
                "--no-pager",
                "-l",
                "-n",
                "40",
                "status",
                pattern,
            ],
            vec!["journalctl", "--no-pager", "-n", "150", "-u", pattern],
        ] {
            s.push_str(&format!("---- {}\n", argv.join(" ")));
            match self.exec(&argv) {
                Ok(o) => s.push_str(&output_text(&o)),
                Err(e) => s.push_str(&format!("{e:#}\n")),
            }
        }
        s
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            // Poweroff lets systemd stop the units (and their containers)
            // cleanly; kill the nspawn we started, by PID, if it hangs.
            let _ = self.exec(&["systemctl", "--no-block", "poweroff"]);
            let start = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        // Containers left in the host's podman storage by a scenario that
        // could not clean up.
        let labels = std::mem::take(
            &mut *self
                .scenario_labels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for value in labels.iter().filter(|_| self.backend == Backend::Podman) {
            let ids = Command::new("podman")
                .args(["ps", "-aq", "--filter"])
                .arg(format!("label={SCENARIO_LABEL}={value}"))
                .stderr(Stdio::null())
                .output();
            if let Ok(o) = ids {
                for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("podman")
                        .args(["rm", "-f", id])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        self.dockerd.take();
    }
}

/// What a scenario gets: the machine, its own prefix and a place to keep
/// notes (printed in the summary, e.g. for behaviour expected later).
pub struct Scenario<'a> {
    pub m: &'a Machine,
    pub prefix: String,
    pub notes: Vec<String>,
}

impl Scenario<'_> {
    pub fn unit(&self, svc: &str) -> String {
        format!("{}-{svc}.service", self.prefix)
    }
    pub fn container(&self, svc: &str) -> String {
        format!("{}-{svc}", self.prefix)
    }
    /// SIGKILL the main process of `svc`'s container.
    pub fn kill_app(&self, svc: &str) -> Result<()> {
        let pid = self
            .m
            .engine(&[
                "inspect",
                "--type=container",
                "--format={{.State.Pid}}",
                &self.container(svc),
            ])?
            .trim()
            .to_owned();
        anyhow::ensure!(pid != "0" && !pid.is_empty(), "container has no PID");
        match self.m.backend {
            // podman inside the machine reports PIDs of the machine's
            // namespace; dockerd runs on the host: host PIDs.
            Backend::Podman => self.m.ok(&["kill", "-KILL", &pid]).map(drop),
            Backend::Docker => host(Command::new("kill").args(["-KILL", &pid])).map(drop),
        }
    }
    pub fn target(&self) -> String {
        format!("{}.target", self.prefix)
    }

    /// A spec for this scenario's backend and prefix, with `services`.
    pub fn spec(&self, services: serde_json::Value) -> serde_json::Value {
        let mut services = services;
        if let Some(map) = services.as_object_mut() {
            for svc in map.values_mut() {
                if let Some(o) = svc.as_object_mut() {
                    let labels = o.entry("labels").or_insert_with(|| serde_json::json!({}));
                    if let Some(l) = labels.as_object_mut() {
                        l.insert(SCENARIO_LABEL.to_owned(), self.prefix.clone().into());
                        self.m.claim_scenario_label(&self.prefix);
                    }
                }
            }
        }
        serde_json::json!({
            "version": 1,
            "backend": self.m.backend.name(),
            "prefix": self.prefix,
            "engine": { "path": self.m.backend.engine() },
            "services": services,
        })
    }

    /// Install the spec and daemon-reload.
    pub fn install(&self, spec: &serde_json::Value) -> Result<()> {
        self.m.write_spec(&self.prefix, spec)?;
        self.m.daemon_reload()
    }

    pub fn start_target(&self) -> Result<()> {
        self.m.systemctl(&["start", &self.target()]).map(drop)
    }

    /// A label of the running container.
    pub fn label(&self, svc: &str, key: &str) -> Result<String> {
        Ok(self
            .m
            .engine(&[
                "inspect",
                "--type=container",
                &format!("--format={{{{index .Config.Labels \"{key}\"}}}}"),
                &self.container(svc),
            ])?
            .trim()
            .to_owned())
    }

    /// Names of this scenario's containers that exist (any state).
    pub fn containers(&self) -> Result<Vec<String>> {
        let out = self.m.engine(&[
            "ps",
            "-a",
            "--filter",
            "label=io.nixarr.managed=true",
            "--format",
            "{{.Names}}",
        ])?;
        Ok(out
            .lines()
            .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
            .map(str::to_owned)
            .collect())
    }

    /// Stop everything of this scenario and remove what it created.
    fn cleanup(&self) {
        let m = self.m;
        let pattern = format!("{}*", self.prefix);
        let _ = m.exec(&["systemctl", "stop", &self.target(), &pattern]);
        let _ = m.remove_spec(&self.prefix);
        let _ = m.daemon_reload();
        let _ = m.exec(&["systemctl", "reset-failed", &pattern]);
        if let Ok(names) = self.containers() {
            for n in names {
                let _ = m.engine(&["rm", "-f", &n]);
            }
        }
        let _ = m.engine(&["network", "rm", &self.prefix]);
    }
}

/// One scenario: a name and its body.
pub type ScenarioFn = fn(&mut Scenario) -> Result<()>;

/// Run scenarios in sequence on one machine, each with its own prefix and
/// its own cleanup; print what failed with systemd's view of it, then a
/// summary. Returns the names of failed scenarios.
pub fn run_scenarios(m: &Machine, scenarios: &[(&str, ScenarioFn)]) -> Vec<String> {
    let id = run_id();
    let mut failed = Vec::new();
    let mut summary = Vec::new();
    // NIXARR_E2E_ONLY=text runs only the scenarios whose name contains it
    // (for working on one scenario; CI runs them all).
    let only = std::env::var("NIXARR_E2E_ONLY").ok();
    for (i, (name, f)) in scenarios.iter().enumerate() {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let letter = if m.trixie {
            "5"
        } else {
            &m.backend.name()[..1]
        };
        let mut sc = Scenario {
            m,
            prefix: format!("e{i}{letter}{id}"),
            notes: Vec::new(),
        };
        eprintln!("==== e2e [{}] {name} (prefix {})", m.label(), sc.prefix);
        let start = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut sc)));
        let outcome = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(p) => Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned())),
        };
        let secs = start.elapsed().as_secs_f32();
        match &outcome {
            Ok(()) => eprintln!("==== e2e [{}] {name}: ok ({secs:.1}s)", m.label()),
            Err(e) => {
                eprintln!(
                    "==== e2e [{}] {name}: FAILED ({secs:.1}s): {e}\n{}",
                    m.label(),
                    m.diagnostics(&format!("{}*", sc.prefix))
                );
                failed.push(format!("{}: {name}", m.label()));
            }
        }
        for n in &sc.notes {
            eprintln!("     note: {n}");
        }
        summary.push(format!(
            "{:7} {:6} {name} ({secs:.1}s){}",
            m.label(),
            if outcome.is_ok() { "ok" } else { "FAILED" },
            sc.notes
                .iter()
                .map(|n| format!("\n                 note: {n}"))
                .collect::<String>()
        ));
        sc.cleanup();
    }
    eprintln!("==== e2e summary\n{}", summary.join("\n"));
    failed
}

/// One test function of a suite on one backend: skip loudly when the
/// end-to-end tests cannot run here (or `missing` says what else is
/// missing), else boot a machine (one at a time per process), `prepare` it,
/// run the scenarios, `finish`, and fail naming the failed scenarios.
pub fn run_suite_with(
    what: &str,
    backend: Backend,
    scenarios: &[(&str, ScenarioFn)],
    missing: Option<String>,
    prepare: impl FnOnce(&Machine) -> Result<()>,
    finish: impl FnOnce(&Machine),
) {
    run_suite_booted(
        what,
        backend,
        BootOptions::default(),
        scenarios,
        missing,
        prepare,
        finish,
    );
}

/// [`run_suite_with`] on a machine booted with `opts` (e.g. the podman 5
/// machine, [`BootOptions::trixie`]).
pub fn run_suite_booted(
    what: &str,
    backend: Backend,
    opts: BootOptions,
    scenarios: &[(&str, ScenarioFn)],
    missing: Option<String>,
    prepare: impl FnOnce(&Machine) -> Result<()>,
    finish: impl FnOnce(&Machine),
) {
    let missing = missing.or_else(|| opts.trixie.then(trixie_missing).flatten());
    if let Some(why) = skip_reason().or(missing) {
        eprintln!(
            "\n!!!!!!!! SKIPPED: {what} on {} not run: {why} !!!!!!!!\n",
            label(backend, opts.trixie)
        );
        return;
    }
    let _serial = MACHINES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    clean_leftovers();
    let machine = Machine::boot_with(backend, opts).expect("booting the e2e machine");
    prepare(&machine).expect("preparing the e2e machine");
    let failed = run_scenarios(&machine, scenarios);
    finish(&machine);
    drop(machine);
    assert!(failed.is_empty(), "failed scenarios: {failed:#?}");
}

/// [`run_suite_with`] with nothing to prepare.
pub fn run_suite(what: &str, backend: Backend, scenarios: &[(&str, ScenarioFn)]) {
    run_suite_with(what, backend, scenarios, None, |_| Ok(()), |_| {});
}

/// The podman 5 machine's options: the trixie root.
pub const PODMAN5: BootOptions = BootOptions {
    private_storage: true,
    no_fake_app: false,
    private_network: false,
    trixie: true,
};

/// [`run_suite`] on the podman 5 machine (podman 5.4, systemd 257).
pub fn run_suite_podman5(what: &str, scenarios: &[(&str, ScenarioFn)]) {
    run_suite_booted(
        what,
        Backend::Podman,
        PODMAN5,
        scenarios,
        None,
        |_| Ok(()),
        |_| {},
    );
}

/// Exit status and output of one command.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("not JSON: {self:?}"))
    }
    /// Exit status `code`, else an error showing both outputs.
    pub fn expect(&self, code: i32, what: &str) -> Result<&Run> {
        anyhow::ensure!(
            self.code == code,
            "{what}: exit status {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }
    /// Exit status 0, else an error showing both outputs.
    pub fn ok(self, what: &str) -> Result<Run> {
        anyhow::ensure!(
            self.code == 0,
            "{what}: exit status {}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }
    /// A refusal: exit status 2 and `needle` in the message.
    pub fn refused(self, what: &str, needle: &str) -> Result<Run> {
        anyhow::ensure!(
            self.code == 2 && self.stderr.contains(needle),
            "{what}: expected exit status 2 with {needle:?}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }
}

/// Entries of a NUL-separated `KEY=VALUE` environment dump.
pub fn parse_environ(bytes: &[u8]) -> BTreeMap<String, String> {
    bytes
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let s = String::from_utf8_lossy(e);
            s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}
