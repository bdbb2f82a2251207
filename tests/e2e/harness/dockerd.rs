//! The host's dockerd, started for a Docker machine.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::host::wait_for;
use super::leftovers::{OWNER_ENV, owner_tag};
use super::net::Net;

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
    pub(super) fn start(
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
