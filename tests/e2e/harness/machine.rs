//! [`Machine`]: systemd as PID 1 in systemd-nspawn, booted for one
//! backend, and what scenarios ask of it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use nixarr_units::manifest::{self, Manifest};

use super::dockerd::Dockerd;
use super::host::{Run, host, output_text, run_id, wait_for};
use super::image::build_image_tar;
use super::leftovers::{OWNER_ENV, owner_tag};
use super::lock::lock_host;
use super::net::Net;
use super::{BIN, IMAGE, MACHINE_BIN_DIR, MARKER, SCENARIO_LABEL};

pub use nixarr_units::spec::Backend;

/// The engine binary of `backend` in the machines (and in their specs'
/// `engine.path`).
pub fn engine_path(backend: Backend) -> &'static str {
    match backend {
        Backend::Podman => "/usr/bin/podman",
        Backend::Docker => "/usr/bin/docker",
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

/// What a machine's temporary directory holds before it boots.
struct Layout {
    dir: PathBuf,
    /// Bound at /etc/containers: containers.conf and policy.json.
    etc_containers: PathBuf,
    /// Bound at /run/systemd/journal (and in dockerd's namespace).
    journal: PathBuf,
    /// The machine's /run/nixarr-units, shared with dockerd (see Dockerd).
    nixarr_run: PathBuf,
    /// Bound at /var/lib/containers: the host's or the machine's own.
    storage: PathBuf,
    /// The fake app's image archive, unless [`BootOptions::no_fake_app`].
    tar: Option<PathBuf>,
}

impl Layout {
    fn create(d: &Path, opts: BootOptions) -> Result<Layout> {
        fs_err::write(d.join("owner"), owner_tag())?;
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
            Some(build_image_tar(d)?)
        };
        let nixarr_run = d.join("nixarr-run");
        fs_err::create_dir_all(&nixarr_run)?;
        let storage = if opts.private_storage || opts.trixie {
            let storage = d.join("containers-storage");
            fs_err::create_dir_all(&storage)?;
            storage
        } else {
            PathBuf::from("/var/lib/containers")
        };
        Ok(Layout {
            dir: d.to_path_buf(),
            etc_containers,
            journal,
            nixarr_run,
            storage,
            tar,
        })
    }
}

/// dockerd for a Docker machine, with the fake app imported and the
/// machine's docker.service stand-in written.
fn start_dockerd(layout: &Layout, net: Option<&Net>) -> Result<Dockerd> {
    fs_err::write(layout.dir.join("docker.service"), DOCKER_STUB)?;
    let dk = Dockerd::start(&layout.dir, &layout.journal, &layout.nixarr_run, net)?;
    if let Some(tar) = &layout.tar {
        host(
            Command::new("/usr/bin/docker")
                .arg(format!("--host=unix://{}", dk.socket.display()))
                .args(["import", "--change", r#"ENTRYPOINT ["/app/run"]"#])
                .arg(tar)
                .arg(IMAGE),
        )
        .context("importing the fake app into dockerd")?;
    }
    Ok(dk)
}

/// The systemd-nspawn command line that boots the machine: the host's /usr
/// on a volatile root, or the trixie root under a throwaway overlay; the
/// directories of `layout` bound in, the binary's directory, the machine's
/// own network namespace and dockerd's socket when there are.
fn nspawn_command(
    name: &str,
    opts: BootOptions,
    layout: &Layout,
    net: Option<&Net>,
    dockerd: Option<&Dockerd>,
) -> Result<Command> {
    let d = &layout.dir;
    let exe_dir = Path::new(BIN)
        .parent()
        .context("the binary has no directory")?;
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
        .arg(format!(
            "--bind={}:/var/lib/containers",
            layout.storage.display()
        ));
    if !opts.trixie {
        // The trixie root has its own alternatives (and hosts file).
        cmd.arg("--bind-ro=/etc/alternatives")
            // The volatile /etc has no hosts file: without it
            // "localhost" would be looked up in DNS.
            .arg("--bind-ro=/etc/hosts");
    }
    if Path::new("/etc/ssl/certs/ca-certificates.crt").is_file() {
        // The host's CA certificates, as every real system has them
        // (`update`'s registry client needs them, even for plain HTTP).
        cmd.arg("--bind-ro=/etc/ssl");
    }
    cmd.arg(format!(
        "--bind={}:/etc/containers",
        layout.etc_containers.display()
    ))
    .arg(format!(
        "--bind={}:/run/systemd/journal",
        layout.journal.display()
    ))
    .arg(format!("--bind={}", d.display()))
    .arg(format!("--bind-ro={}", exe_dir.display()))
    // The generator runs the binary from a fixed path outside /tmp:
    // the units it writes call that path, and the secret bridge's
    // PrivateTmp= would hide a checkout under /tmp.
    .arg(format!("--bind-ro={}:{MACHINE_BIN_DIR}", exe_dir.display()));
    if let Some(n) = net {
        cmd.arg(format!(
            "--network-namespace-path={}",
            n.machine_path().display()
        ));
    }
    if let Some(dk) = dockerd {
        cmd.arg(format!("--bind={}:/run/docker.sock", dk.socket.display()))
            .arg(format!(
                "--bind={}:/run/nixarr-units",
                layout.nixarr_run.display()
            ))
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
    ]);
    Ok(cmd)
}

impl Machine {
    /// Names of every container nixarr-units manages in the machine's engine
    /// (label `io.nixarr.managed=true`), in any state, of any scenario.
    pub fn managed_containers(&self) -> Result<Vec<String>> {
        let out = self.engine(&[
            "ps",
            "-a",
            "--filter",
            "label=io.nixarr.managed=true",
            "--format",
            "{{.Names}}",
        ])?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The generator's manifest (`/run/nixarr-units/manifest.json`) as the
    /// host sees it.
    pub fn manifest_path(&self) -> PathBuf {
        self.root()
            .join(manifest::RUN_MANIFEST.trim_start_matches('/'))
    }

    /// The generator's manifest, read with the binary's own types.
    pub fn manifest(&self) -> Result<Manifest> {
        manifest::load(Some(&self.manifest_path())).map(|(_, m)| m)
    }

    /// What the machine runs, for messages: `podman`, `podman5` (the
    /// trixie machine) or `docker`.
    pub fn label(&self) -> &'static str {
        label(self.backend, self.trixie)
    }

    /// Boot a machine for `backend` as `opts` say: wait for the host lock,
    /// lay out its directory, start dockerd (Docker), start nspawn, wait
    /// for systemd to finish booting, then install the generator and the
    /// fake app's image inside.
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
        let layout = Layout::create(dir.path(), opts)?;
        let net = if opts.private_network {
            Some(Net::create(dir.path(), &id)?)
        } else {
            None
        };
        let dockerd = match backend {
            Backend::Docker => Some(start_dockerd(&layout, net.as_ref())?),
            Backend::Podman => None,
        };
        let name = format!("{MARKER}-{what}-{id}");
        let log_path = layout.dir.join("nspawn.log");
        let mut cmd = nspawn_command(&name, opts, &layout, net.as_ref(), dockerd.as_ref())?;
        let log = fs_err::File::create(&log_path)?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?.into_parts().0)
            .stderr(log.into_parts().0)
            .process_group(0);
        let child = cmd.spawn().context("starting systemd-nspawn")?;
        let nspawn_pid = child.id();
        let mut m = Machine {
            backend,
            trixie: opts.trixie,
            storage: layout.storage.clone(),
            name,
            nspawn: Some(child),
            leader: 0,
            dockerd,
            net,
            scenario_labels: Mutex::new(Vec::new()),
            dir,
            _host_lock: host_lock,
        };
        m.wait_booted(nspawn_pid, &log_path)?;
        m.install_generator()?;
        if let (Backend::Podman, Some(tar)) = (backend, &layout.tar) {
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

    /// Wait for nspawn to start systemd (its PID is the machine's leader)
    /// and for systemd to finish booting; else fail with nspawn's output
    /// and the jobs systemd still waits for.
    fn wait_booted(&mut self, nspawn_pid: u32, log_path: &Path) -> Result<()> {
        self.leader = wait_for(
            "systemd-nspawn to start PID 1",
            Duration::from_secs(30),
            || {
                let children = std::fs::read_to_string(format!(
                    "/proc/{nspawn_pid}/task/{nspawn_pid}/children"
                ))
                .context("nspawn is gone")?;
                // Only systemd itself (nspawn execs /usr/lib/systemd/systemd,
                // or /sbin/init): before it, the child may be the
                // trixie boot's `mount` or nspawn's own short-lived child,
                // whose PID is gone a moment later.
                Ok(children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                    .find(|p| {
                        std::fs::read_to_string(format!("/proc/{p}/comm"))
                            .is_ok_and(|c| matches!(c.trim(), "systemd" | "init"))
                    }))
            },
        )
        .with_context(|| fs_err::read_to_string(log_path).unwrap_or_default())?;
        let jobs = || {
            self.exec(&["systemctl", "list-jobs", "--no-pager"])
                .map(|o| output_text(&o))
                .unwrap_or_default()
        };
        let state = wait_for("systemd to finish booting", Duration::from_secs(90), || {
            let out = self.exec(&["systemctl", "is-system-running"])?;
            let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if matches!(s.as_str(), "running" | "degraded") {
                return Ok(Some(s));
            }
            // Say what it is waiting for, should it never finish.
            bail!("systemctl is-system-running says {s:?}; jobs:\n{}", jobs())
        })
        .with_context(|| {
            format!(
                "{}\n---- systemctl list-jobs\n{}",
                fs_err::read_to_string(log_path).unwrap_or_default(),
                jobs()
            )
        })?;
        if state == "degraded" {
            let failed = self.exec(&["systemctl", "--failed", "--no-pager", "--plain"])?;
            eprintln!(
                "e2e: machine {} is degraded (not fatal):\n{}",
                self.name,
                output_text(&failed)
            );
        }
        Ok(())
    }

    /// The generator (this very binary under its generator name, from
    /// [`MACHINE_BIN_DIR`]), /etc/nixarr-units, and in a private network
    /// the LAN's resolver; then a daemon-reload.
    fn install_generator(&self) -> Result<()> {
        let root = self.root();
        if let Some(n) = &self.net {
            // The LAN's resolver (nothing else resolves in a private network).
            // Replaced, never written through: a symlink there would
            // resolve against the host's root from here.
            let resolv = root.join("etc/resolv.conf");
            if resolv.symlink_metadata().is_ok() {
                fs_err::remove_file(&resolv)?;
            }
            fs_err::copy(n.resolv_conf(self.dir.path())?, &resolv)?;
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
        self.ok(&["systemctl", "daemon-reload"]).map(drop)
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

    /// Run nixarr-units inside the machine (its system bus, journal and
    /// engine), whatever its exit status.
    pub fn nixarr(&self, args: &[&str]) -> Result<Run> {
        let mut argv = vec![super::BIN];
        argv.extend_from_slice(args);
        Ok(Run::from(self.exec(&argv)?))
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
        let mut v = vec![engine_path(self.backend)];
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
        self.transcript(&[
            &["systemctl", "--no-pager", "list-units", "--all", pattern],
            &[
                "systemctl",
                "--no-pager",
                "-l",
                "-n",
                "40",
                "status",
                pattern,
            ],
            &["journalctl", "--no-pager", "-n", "150", "-u", pattern],
        ])
    }

    /// Each command's line and what it printed (or why it could not run),
    /// one after the other: for a failure's message.
    pub fn transcript(&self, argvs: &[&[&str]]) -> String {
        let mut s = String::new();
        for argv in argvs {
            s.push_str(&format!("---- {}\n", argv.join(" ")));
            match self.exec(argv) {
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
