//! End-to-end tests of `nixarr-migrate` against real systemd (PID 1 in
//! systemd-nspawn), real podman and a real dockerd (see harness/).
//!
//! Inside the machine a fake native `sonarr.service` (busybox httpd serving
//! its data directory on the sonarr port) owns /var/lib/sonarr/.config/NzbDrone:
//! a SQLite-like database with its -wal and -shm files, odd names, symlinks
//! of every kind, several owners and modes. The spec enables the catalog's
//! sonarr with the fake app's image (which serves its /config through GET
//! /cat/config/<file>); its container unit exists but is not started. The
//! migration runs inside the machine (through nsenter), as on a real host.
//!
//! Checked: the round trip (migrate → the container serves the same bytes,
//! the copy has the container's owner and the legacy modes → rollback →
//! the native tree is byte-identical with the same owners and modes, by
//! `nix-hash --type sha256 --base32` and a listing → finalize deletes the
//! snapshot), SIGKILL at every step boundary and in the middle of the
//! snapshot and of the copy (each followed once by `migrate` and once by
//! `rollback`), the refusals (exit status 2), the detached
//! `<prefix>-migrate@sonarr.service`, and a native directory and a target
//! that are mount points of their own (podman only: dockerd resolves bind
//! mounts on the host, where the machine's mounts are not seen).
//!
//! Runs as root only (CI does); otherwise prints SKIPPED loudly.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness;
use crate::harness::{
    BIN, Backend, BootOptions, IMAGE, Machine, Run, Scenario, ScenarioFn, free_port, http_get,
    wait_for,
};
use anyhow::{Context, Result, bail, ensure};
use nixarr_units::catalog::{self, Legacy};
use serde_json::{Value, json};

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "1 migrate, same bytes in the container, rollback, finalize",
        round_trip,
    ),
    ("2 refusals exit 2 and change nothing", refusals),
    (
        "3 migrate@ unit runs detached and logs progress; a second run is refused",
        detached,
    ),
    (
        "4 SIGKILL at every step: migrate resumes, rollback restores",
        crash_safety,
    ),
    (MOUNT_POINTS, mount_points),
    (
        "6 the container never turns healthy: migrate rolls back by itself",
        never_healthy,
    ),
    (
        "7 migrate again after a rollback: earlier snapshot kept (dropped when identical) until finalize",
        again_after_rollback,
    ),
];
const MOUNT_POINTS: &str =
    "5 native dir and target are mount points: contents swapped, kept, restored";

fn run_backend(backend: Backend, opts: BootOptions) {
    let missing = Command::new("nix-hash")
        .arg("--version")
        .output()
        .is_err()
        .then(|| "nix-hash is missing (apt-get install nix-bin)".to_owned());
    // Docker runs all but the mount points: dockerd resolves bind mounts on
    // the host, where mounts made inside the machine are not seen.
    let scenarios: Vec<(&str, ScenarioFn)> = SCENARIOS
        .iter()
        .filter(|(name, _)| backend == Backend::Podman || *name != MOUNT_POINTS)
        .copied()
        .collect();
    harness::run_suite_booted(
        "migration end-to-end tests",
        backend,
        opts,
        &scenarios,
        missing,
        |_| Ok(()),
        |_| {},
    );
}

#[test]
fn podman() {
    run_backend(Backend::Podman, BootOptions::default());
}

/// On podman 5 (the trixie machine): the health gate a migration waits for
/// is podman's own (`--sdnotify=healthy`).
#[test]
fn podman5() {
    run_backend(Backend::Podman, harness::PODMAN5);
}

#[test]
fn docker() {
    run_backend(Backend::Docker, BootOptions::default());
}

// ---------------------------------------------------------------- fixture

/// The catalog's facts about the native sonarr this suite migrates from.
fn legacy() -> &'static Legacy {
    catalog::catalog()
        .expect("the catalog")
        .get("sonarr")
        .and_then(|p| p.legacy.as_ref())
        .expect("the catalog's sonarr has legacy facts")
}

/// The native unit (the catalog's first name for it).
fn legacy_unit() -> &'static str {
    &legacy().units[0]
}

/// The native data directory.
fn legacy_dir() -> &'static str {
    &legacy().data_dir
}

const JOURNAL_DIR: &str = "/var/lib/nixarr-units/migrations/sonarr";
const HEALTH_CMD: &str = "wget -q -O /dev/null http://127.0.0.1:8080/ping";
const UID: u32 = 568;

/// Deterministic bytes that do not compress into nothing.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Files whose bytes are compared over HTTP: (name, content).
fn served_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "config.xml",
            b"<Config>\n  <Port>8989</Port>\n  <ApiKey>0123456789abcdef</ApiKey>\n</Config>\n"
                .to_vec(),
        ),
        ("sonarr.db", bytes(2 << 20, 1)),
        ("sonarr.db-wal", bytes(300_000, 2)),
        ("sonarr.db-shm", bytes(32_768, 3)),
        ("logs.db", bytes(200_000, 4)),
    ]
}

/// The bulk part of the crash-test tree: (directories, files in each).
#[derive(Clone, Copy)]
struct Bulk {
    dirs: usize,
    files: usize,
    /// Sizes of the large files, MiB.
    large_mib: &'static [usize],
}

const BULK: Bulk = Bulk {
    dirs: 24,
    files: 250,
    large_mib: &[48, 16],
};

/// Write the native data directory below the machine's root.
fn build_fixture(m: &Machine, bulk: Option<Bulk>) -> Result<()> {
    let legacy_dir = legacy_dir();
    let root = m.root();
    let top = root.join("var/lib/sonarr");
    if top.exists() {
        fs_err::remove_dir_all(&top)?;
    }
    let d = root.join(legacy_dir.trim_start_matches('/'));
    fs_err::create_dir_all(&d)?;
    let own = |p: &Path, uid: u32, gid: u32| -> Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", p.display()))
    };
    let dir = |rel: &str, uid: u32, gid: u32, mode: u32| -> Result<()> {
        let p = d.join(rel);
        fs_err::create_dir_all(&p)?;
        own(&p, uid, gid)?;
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let file = |rel: &str, content: &[u8], uid: u32, gid: u32, mode: u32| -> Result<()> {
        let p = d.join(rel);
        fs_err::write(&p, content)?;
        own(&p, uid, gid)?;
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let link = |rel: &str, target: &str, uid: u32, gid: u32| -> Result<()> {
        let p = d.join(rel);
        fs_err::os::unix::fs::symlink(target, &p)?;
        own(&p, uid, gid)
    };
    for (name, content) in served_files() {
        file(
            name,
            &content,
            274,
            274,
            if name == "config.xml" { 0o600 } else { 0o644 },
        )?;
    }
    file("logs.db-wal", &bytes(70_000, 5), 274, 274, 0o644)?;
    file("logs.db-shm", &bytes(32_768, 6), 274, 274, 0o644)?;
    file("file with  two spaces.txt", b"spaces\n", 0, 0, 0o644)?;
    file(
        "ünïcødé ☃ 日本語.txt",
        "grüße\n".as_bytes(),
        1000,
        100,
        0o640,
    )?;
    file("-leading-dash", b"dash\n", 274, 274, 0o644)?;
    file(
        "weird $name 'q' \"dq\" *?[x] \\back\ttab ;&|",
        b"weird\n",
        274,
        274,
        0o600,
    )?;
    file("empty", b"", 0, 0, 0o644)?;
    dir("bin", 0, 0, 0o755)?;
    file("bin/run.sh", b"#!/bin/sh\necho native\n", 0, 0, 0o755)?;
    dir("logs", 274, 274, 0o700)?;
    file("logs/sonarr.txt", b"[Info] started\n", 274, 274, 0o600)?;
    file("logs/sonarr.0.txt", &bytes(10_000, 7), 274, 274, 0o600)?;
    dir("MediaCover/1", 274, 274, 0o755)?;
    file(
        "MediaCover/1/poster.jpg",
        &bytes(150_000, 8),
        274,
        274,
        0o644,
    )?;
    dir("a/b/c/d/e", 274, 274, 0o755)?;
    file("a/b/c/d/e/deep.txt", b"deep\n", 274, 274, 0o644)?;
    dir("Backups/scheduled", 1000, 100, 0o750)?;
    file(
        "Backups/scheduled/sonarr_backup_v4.zip",
        &bytes(50_000, 9),
        1000,
        100,
        0o640,
    )?;
    // setgid directory: chown clears such bits, so the order matters.
    dir("shared", 274, 274, 0o2775)?;
    file("shared/group-file", b"g\n", 274, 100, 0o664)?;
    dir("private", 0, 0, 0o700)?;
    link("db-link", "sonarr.db", 274, 274)?;
    link("abs-link", &format!("{legacy_dir}/config.xml"), 0, 0)?;
    link("dangling", "no/such/file", 274, 274)?;
    link("logs/up", "../config.xml", 274, 274)?;
    link("dir-link", "MediaCover", 1000, 100)?;
    if let Some(b) = bulk {
        dir("bulk", 274, 274, 0o755)?;
        for (i, mib) in b.large_mib.iter().enumerate() {
            file(
                &format!("bulk/big-{i}.bin"),
                &bytes(mib << 20, 100 + i as u64),
                274,
                274,
                0o644,
            )?;
        }
        for di in 0..b.dirs {
            let rel = format!("bulk/d{di:03}");
            fs_err::create_dir(d.join(&rel))?;
            own(&d.join(&rel), 274, 274)?;
            for fi in 0..b.files {
                let seed = (di * 10_000 + fi) as u64;
                let p = d.join(format!("{rel}/f{fi:04}"));
                fs_err::write(&p, bytes(512 + (seed as usize * 7919) % 12_000, seed))?;
                own(&p, 274, 274)?;
            }
        }
    }
    // The root last (its mode may keep the host out of nothing, we are
    // root), then the parents as the NixOS module makes them.
    own(&d, 274, 274)?;
    fs_err::set_permissions(&d, std::fs::Permissions::from_mode(0o750))?;
    for p in [top.join(".config"), top.clone()] {
        own(&p, 274, 274)?;
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn legacy_unit_text(port: u16) -> String {
    let legacy_dir = legacy_dir();
    format!(
        "[Unit]\nDescription=Sonarr (native stand-in for the nixarr-units e2e tests)\n\n\
         [Service]\nExecStart=/usr/bin/busybox httpd -f -p 127.0.0.1:{port} -h {legacy_dir}\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// Bring the machine back to "sonarr runs natively, never migrated": no
/// journal, no target, the legacy unit unmasked and running on `port` with
/// a fresh fixture.
fn install_legacy(m: &Machine, port: u16, bulk: Option<Bulk>) -> Result<()> {
    let legacy_unit = legacy_unit();
    let _ = m.exec(&["systemctl", "unmask", "--runtime", legacy_unit]);
    let _ = m.exec(&["systemctl", "stop", legacy_unit]);
    let _ = m.exec(&["systemctl", "reset-failed", legacy_unit]);
    remove(m, JOURNAL_DIR)?;
    build_fixture(m, bulk)?;
    fs_err::write(
        m.root().join("etc/systemd/system").join(legacy_unit),
        legacy_unit_text(port),
    )?;
    m.daemon_reload()?;
    m.systemctl(&["start", legacy_unit])?;
    wait_native_serves(port)
}

/// Remove a path inside the machine (absent is fine).
fn remove(m: &Machine, path: &str) -> Result<()> {
    let p = m.root().join(path.trim_start_matches('/'));
    match fs_err::symlink_metadata(&p) {
        Ok(meta) if meta.is_dir() => fs_err::remove_dir_all(&p).map_err(Into::into),
        Ok(_) => fs_err::remove_file(&p).map_err(Into::into),
        Err(_) => Ok(()),
    }
}

fn exists(m: &Machine, path: &str) -> bool {
    fs_err::symlink_metadata(m.root().join(path.trim_start_matches('/'))).is_ok()
}

/// Where this scenario's container keeps its config: below the machine's
/// temporary directory, which has the same path inside the machine and on
/// the host (where dockerd resolves bind mounts).
fn state_dir(sc: &Scenario) -> String {
    format!("{}/state-{}", sc.m.dir.path().display(), sc.prefix)
}

fn target(sc: &Scenario) -> String {
    format!("{}/sonarr", state_dir(sc))
}

fn sonarr_spec(sc: &Scenario, port: u16, migration: Option<Value>) -> Value {
    let mut svc = json!({
        "app": "sonarr",
        "image": IMAGE,
        "puid": UID,
        "pgid": UID,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "environment": { "FAKE_STYLE": "arr" },
        "health": { "cmd": HEALTH_CMD, "interval": "2s", "retries": 3, "startPeriod": "60s" },
        "stopTimeout": 10,
        "startTimeout": 120,
    });
    if let Some(mig) = migration {
        svc["migration"] = mig;
    }
    let mut spec = sc.spec(json!({ "sonarr": svc }));
    spec["paths"] = json!({
        "stateDir": state_dir(sc),
        "dataDir": format!("{}/data", sc.m.dir.path().display()),
    });
    spec
}

/// Install the spec; the container unit must exist and not run.
fn install_spec(sc: &Scenario, port: u16) -> Result<()> {
    install_spec_with(sc, port, |_| {})
}

/// [`install_spec`] with the sonarr service changed by `edit`.
fn install_spec_with(sc: &Scenario, port: u16, edit: impl FnOnce(&mut Value)) -> Result<()> {
    fs_err::create_dir_all(format!("{}/data", sc.m.dir.path().display()))?;
    let mut spec = sonarr_spec(sc, port, None);
    edit(&mut spec["services"]["sonarr"]);
    sc.install(&spec)?;
    let unit = sc.unit("sonarr");
    let load = sc.m.unit_property(&unit, "Unit", "LoadState")?;
    ensure!(load == "loaded", "{unit} is not loaded: {load}");
    let state = sc.m.active_state(&unit)?;
    ensure!(state == "inactive", "{unit} is {state} before migrating");
    Ok(())
}

// ---------------------------------------------------------------- running

/// `nixarr-units migration ARGS --timeout 120` inside the machine.
fn mig(m: &Machine, args: &[&str]) -> Result<Run> {
    let mut v = vec![BIN, "migration"];
    v.extend_from_slice(args);
    v.extend_from_slice(&["--timeout", "120"]);
    Ok(m.exec(&v)?.into())
}

/// Started inside the machine, in the background: the nsenter we started
/// and the host PID of the command itself (nsenter forks it into the
/// machine's PID namespace).
struct Background {
    nsenter: Child,
    pid: u32,
    log: PathBuf,
}

impl Background {
    fn start(m: &Machine, argv: &[&str]) -> Result<Background> {
        let log = m.dir.path().join(format!("bg-{}.log", harness::run_id()));
        let f = fs_err::File::create(&log)?;
        let mut nsenter = Command::new("nsenter")
            .args(["-t", &m.leader.to_string(), "-a", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?.into_parts().0)
            .stderr(f.into_parts().0)
            .spawn()
            .context("starting nsenter")?;
        let npid = nsenter.id();
        let start = Instant::now();
        let pid = loop {
            let children = std::fs::read_to_string(format!("/proc/{npid}/task/{npid}/children"))
                .unwrap_or_default();
            if let Some(p) = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
            {
                break p;
            }
            if let Some(st) = nsenter.try_wait()? {
                bail!("{argv:?} ended at once ({st})");
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("nsenter did not fork {argv:?}");
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        Ok(Background { nsenter, pid, log })
    }

    fn running(&mut self) -> bool {
        matches!(self.nsenter.try_wait(), Ok(None))
    }

    fn kill(&mut self) -> Result<()> {
        harness::host(Command::new("kill").args(["-KILL", &self.pid.to_string()]))?;
        self.nsenter.wait()?;
        Ok(())
    }

    fn wait(&mut self) -> Result<(i32, String)> {
        let st = self.nsenter.wait()?;
        Ok((
            st.code().unwrap_or(-1),
            fs_err::read_to_string(&self.log).unwrap_or_default(),
        ))
    }

    fn log(&self) -> String {
        fs_err::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.nsenter.try_wait() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
            let _ = self.nsenter.wait();
        }
    }
}

/// The journal's phase, if there is a journal.
fn phase(m: &Machine) -> Option<String> {
    let text = std::fs::read_to_string(
        m.root()
            .join(JOURNAL_DIR.trim_start_matches('/'))
            .join("journal.json"),
    )
    .ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["phase"].as_str().map(str::to_owned)
}

// ---------------------------------------------------------------- checking

/// What must survive a round trip: the NAR hash (as nix-hash prints it)
/// and, per entry, owner, mode, type, size, mtime and link target.
#[derive(Debug, Clone, PartialEq)]
struct TreeState {
    nar: String,
    listing: Vec<String>,
}

/// Per entry: owner, mode, type, size, mtime, path relative to the root
/// and link target. The listing keys on the path: the root's is empty, so
/// a copy and its original compare line by line.
const LISTING: &str = "%U:%G %#m %y %s %T@ %P -> %l\\n";

fn tree_state(m: &Machine, dir: &str) -> Result<TreeState> {
    let nar = m
        .ok(&["nix-hash", "--type", "sha256", "--base32", dir])?
        .trim()
        .to_owned();
    let mut listing: Vec<String> = m
        .ok(&["find", dir, "-printf", LISTING])?
        .lines()
        .map(str::to_owned)
        .collect();
    listing.sort();
    Ok(TreeState { nar, listing })
}

fn diff(a: &[String], b: &[String]) -> String {
    let only_a: Vec<_> = a.iter().filter(|x| !b.contains(x)).take(10).collect();
    let only_b: Vec<_> = b.iter().filter(|x| !a.contains(x)).take(10).collect();
    format!("before only: {only_a:#?}\nafter only: {only_b:#?}")
}

fn same_tree(m: &Machine, before: &TreeState, what: &str) -> Result<()> {
    let legacy_dir = legacy_dir();
    let now = tree_state(m, legacy_dir)?;
    ensure!(
        now.nar == before.nar,
        "{what}: the native tree hashes to {}, not {}",
        now.nar,
        before.nar
    );
    ensure!(
        now.listing == before.listing,
        "{what}: owners, modes, sizes or mtimes of the native tree changed:\n{}",
        diff(&before.listing, &now.listing)
    );
    Ok(())
}

/// The container's copy: same bytes (NAR hash), same entries, types, modes,
/// sizes and link targets as the native tree, every entry owned UID:UID.
fn check_target(m: &Machine, before: &TreeState, target: &str) -> Result<()> {
    let now = tree_state(m, target)?;
    ensure!(
        now.nar == before.nar,
        "the copy in {target} hashes to {}, not {} like the native tree",
        now.nar,
        before.nar
    );
    // Owner, mode, type, size, (mtime skipped for directories), path, link.
    let strip = |l: &String, owner: Option<&str>| -> Result<String> {
        let mut f = l.splitn(6, ' ');
        let (o, mode, ty, size, mtime, rest) = (
            f.next().context("owner")?,
            f.next().context("mode")?,
            f.next().context("type")?,
            f.next().context("size")?,
            f.next().context("mtime")?,
            f.next().context("path")?,
        );
        if let Some(want) = owner {
            ensure!(o == want, "{target}: `{rest}` is owned by {o}, not {want}");
        }
        let mtime = if ty == "d" { "-" } else { mtime };
        // Directory sizes are the file system's business.
        let size = if ty == "d" { "-" } else { size };
        Ok(format!("{mode} {ty} {size} {mtime} {rest}"))
    };
    let want = format!("{UID}:{UID}");
    let a: Vec<String> = before
        .listing
        .iter()
        .map(|l| strip(l, None))
        .collect::<Result<_>>()?;
    let mut a = a;
    a.sort();
    let mut b: Vec<String> = now
        .listing
        .iter()
        .map(|l| strip(l, Some(&want)))
        .collect::<Result<_>>()?;
    b.sort();
    ensure!(
        a == b,
        "the copy in {target} differs from the native tree in entries, modes, sizes, mtimes \
         or links:\n{}",
        diff(&a, &b)
    );
    Ok(())
}

/// GET `path` on `port`: its body, when the status is 200.
fn get_bytes(port: u16, path: &str) -> Result<Vec<u8>> {
    let (s, head, body) = http_get(port, path)?;
    ensure!(s == 200, "GET {path} on port {port}: {head}");
    Ok(body)
}

/// The native sonarr answers on `port`.
fn wait_native_serves(port: u16) -> Result<()> {
    wait_for(
        "the native sonarr to serve",
        Duration::from_secs(20),
        || {
            Ok(http_get(port, "/config.xml")
                .ok()
                .filter(|(s, _, _)| *s == 200)
                .map(drop))
        },
    )
}

fn legacy_serves(m: &Machine, port: u16) -> Result<()> {
    let legacy_unit = legacy_unit();
    let state = m.active_state(legacy_unit)?;
    ensure!(state == "active", "{legacy_unit} is {state}");
    wait_native_serves(port)?;
    for (name, content) in served_files() {
        let got = get_bytes(port, &format!("/{name}"))?;
        ensure!(
            got == content,
            "the native sonarr serves {} bytes of {name}, expected {}",
            got.len(),
            content.len()
        );
    }
    Ok(())
}

fn container_serves(sc: &Scenario, port: u16) -> Result<()> {
    let unit = sc.unit("sonarr");
    let state = sc.m.active_state(&unit)?;
    ensure!(state == "active", "{unit} is {state} after migrating");
    for (name, content) in served_files() {
        let got = get_bytes(port, &format!("/cat/config/{name}"))?;
        ensure!(
            got == content,
            "the container serves {} bytes of /config/{name}, expected {}",
            got.len(),
            content.len()
        );
    }
    Ok(())
}

/// The native unit is stopped and masked until reboot.
fn legacy_masked(m: &Machine) -> Result<()> {
    let legacy_unit = legacy_unit();
    let state = m.active_state(legacy_unit)?;
    ensure!(
        state == "inactive",
        "{legacy_unit} is {state} after migrating"
    );
    let enabled =
        String::from_utf8_lossy(&m.exec(&["systemctl", "is-enabled", legacy_unit])?.stdout)
            .trim()
            .to_owned();
    ensure!(
        enabled == "masked-runtime",
        "{legacy_unit} is {enabled:?}, not masked-runtime"
    );
    let start = m.exec(&["systemctl", "start", legacy_unit])?;
    ensure!(
        !start.status.success() && harness::output_text(&start).contains("masked"),
        "starting the masked {legacy_unit} did not fail as masked: {}",
        harness::output_text(&start)
    );
    Ok(())
}

/// After a rollback: the container is gone, the native unit serves the
/// tree exactly as it was.
fn rolled_back(sc: &Scenario, port: u16, before: &TreeState, what: &str) -> Result<()> {
    let unit = sc.unit("sonarr");
    let state = sc.m.active_state(&unit)?;
    ensure!(
        state == "inactive" || state == "failed",
        "{what}: {unit} is {state} after the rollback"
    );
    legacy_serves(sc.m, port).with_context(|| what.to_owned())?;
    same_tree(sc.m, before, what)?;
    ensure!(
        phase(sc.m).as_deref() == Some("rolled-back"),
        "{what}: journal phase {:?} after the rollback",
        phase(sc.m)
    );
    Ok(())
}

/// `finalize` deletes the snapshot, the kept copies and the journal.
fn finalize(sc: &Scenario) -> Result<()> {
    mig(sc.m, &["finalize", "sonarr"])?.ok("finalize")?;
    for p in [
        "snapshot",
        "snapshot.json",
        "journal.json",
        "container-copy",
    ] {
        let path = format!("{JOURNAL_DIR}/{p}");
        ensure!(!exists(sc.m, &path), "finalize left {path}");
    }
    Ok(())
}

// -------------------------------------------------------------- scenarios

fn round_trip(sc: &mut Scenario) -> Result<()> {
    let legacy_dir = legacy_dir();
    let legacy_unit = legacy_unit();
    let m = sc.m;
    let port = free_port()?;
    install_legacy(m, port, None)?;
    install_spec(sc, port)?;
    legacy_serves(m, port)?;
    let before = tree_state(m, legacy_dir)?;

    let status = mig(m, &["status"])?.ok("status")?;
    ensure!(
        status.stdout.contains("sonarr") && status.stdout.contains(legacy_unit),
        "status does not list sonarr:\n{}",
        status.stdout
    );
    let plan = mig(m, &["plan", "sonarr"])?.ok("plan")?;
    ensure!(
        plan.stdout.contains("nothing was changed") && plan.stdout.contains(&target(sc)),
        "plan:\n{}",
        plan.stdout
    );
    ensure!(
        !exists(m, JOURNAL_DIR) || phase(m).is_none(),
        "plan wrote a journal"
    );

    // The same binary under its multicall name.
    let bin_dir = m.root().join("run/e2e-bin");
    fs_err::create_dir_all(&bin_dir)?;
    let link = bin_dir.join("nixarr-migrate");
    if !link.exists() {
        fs_err::os::unix::fs::symlink(BIN, &link)?;
    }
    let run: Run = m
        .exec(&[
            "/run/e2e-bin/nixarr-migrate",
            "migrate",
            "sonarr",
            "--timeout",
            "120",
        ])?
        .into();
    let run = run.ok("nixarr-migrate migrate sonarr")?;
    sc.notes.push(format!(
        "migrate said: {}",
        run.stdout.lines().next().unwrap_or_default()
    ));
    ensure!(phase(m).as_deref() == Some("done"), "phase {:?}", phase(m));
    container_serves(sc, port)?;
    check_target(m, &before, &target(sc))?;
    legacy_masked(m)?;
    same_tree(m, &before, "after migrating")?;
    ensure!(
        exists(m, &format!("{JOURNAL_DIR}/snapshot/sonarr.db-wal")),
        "no snapshot after migrating"
    );

    mig(m, &["migrate", "sonarr"])?.refused("migrating again", "already migrated")?;

    mig(m, &["rollback", "sonarr"])?.ok("rollback")?;
    rolled_back(sc, port, &before, "after rollback")?;
    ensure!(
        !exists(m, &target(sc)),
        "the container's copy is still at {} after the rollback",
        target(sc)
    );
    finalize(sc)?;
    same_tree(m, &before, "after finalize")?;
    Ok(())
}

/// Nothing changed: the native unit runs, no journal, the container unit is
/// stopped, the target is absent, the native tree is as it was.
fn unchanged(sc: &Scenario, port: u16, before: &TreeState, what: &str) -> Result<()> {
    let m = sc.m;
    ensure!(phase(m).is_none(), "{what}: a journal was written");
    let state = m.active_state(&sc.unit("sonarr"))?;
    ensure!(state == "inactive", "{what}: the container unit is {state}");
    ensure!(!exists(m, &target(sc)), "{what}: {} exists", target(sc));
    legacy_serves(m, port).with_context(|| what.to_owned())?;
    same_tree(m, before, what)
}

/// A small tmpfs mounted inside the machine.
fn small_tmpfs(m: &Machine, at: &str) -> Result<()> {
    m.ok(&["mkdir", "-p", at])?;
    m.ok(&["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", at])
        .map(drop)
}

fn refusals(sc: &mut Scenario) -> Result<()> {
    let legacy_dir = legacy_dir();
    let m = sc.m;
    let port = free_port()?;
    install_legacy(m, port, None)?;
    install_spec(sc, port)?;
    let before = tree_state(m, legacy_dir)?;

    // Not enough space for the snapshot, by option and by environment.
    let small = "/run/e2e-small-journal";
    small_tmpfs(m, small)?;
    let r = mig(m, &["migrate", "sonarr", "--journal-dir", small]);
    let r2 = m.exec(&[
        "env",
        &format!("NIXARR_MIGRATE_DIR={small}"),
        BIN,
        "migration",
        "migrate",
        "sonarr",
    ]);
    let _ = m.exec(&["umount", small]);
    r?.refused(
        "a 1 MiB journal directory",
        "not enough space for the snapshot",
    )?;
    Run::from(r2?).refused(
        "a 1 MiB NIXARR_MIGRATE_DIR",
        "not enough space for the snapshot",
    )?;
    unchanged(sc, port, &before, "after the snapshot space refusal")?;

    // Not enough space for the copy: the spec sends it to a small tmpfs.
    let small = "/run/e2e-small-state";
    small_tmpfs(m, small)?;
    sc.install(&sonarr_spec(
        sc,
        port,
        Some(json!({ "targetDir": format!("{small}/sonarr") })),
    ))?;
    let r = mig(m, &["migrate", "sonarr"]);
    let _ = m.exec(&["umount", small]);
    r?.refused("a 1 MiB target", "not enough space for the copy")?;
    sc.install(&sonarr_spec(sc, port, None))?;
    unchanged(sc, port, &before, "after the copy space refusal")?;

    // A target that holds something.
    let t = target(sc);
    m.ok(&["mkdir", "-p", &t])?;
    m.ok(&["touch", &format!("{t}/existing.xml")])?;
    let r = mig(m, &["migrate", "sonarr"]);
    remove(m, &t)?;
    let r = r?.refused("a non-empty target", "is not empty")?;
    ensure!(
        r.stderr.contains("--force"),
        "the refusal does not name --force:\n{}",
        r.stderr
    );
    unchanged(sc, port, &before, "after the non-empty target refusal")?;

    // A native unit systemd does not know.
    sc.install(&sonarr_spec(
        sc,
        port,
        Some(json!({ "legacyUnit": "nixarr-e2e-no-such-sonarr.service" })),
    ))?;
    let r = mig(m, &["migrate", "sonarr"]);
    sc.install(&sonarr_spec(sc, port, None))?;
    r?.refused("an unknown native unit", "unknown to systemd")?;
    unchanged(sc, port, &before, "after the unknown unit refusal")?;

    // A manifest whose container unit is not installed (e.g. the NixOS
    // configuration was not switched to yet).
    let not_installed = sc.unit("not-installed");
    sc.write_edited_manifest(&m.root().join("run/e2e-manifest.json"), |stack| {
        if let Some(sonarr) = stack.services.get_mut("sonarr") {
            sonarr.unit = not_installed;
        }
    })?;
    mig(
        m,
        &["migrate", "sonarr", "--manifest", "/run/e2e-manifest.json"],
    )?
    .refused("a missing container unit", "is missing")?;
    unchanged(sc, port, &before, "after the missing container refusal")?;

    // Unknown service, nothing to roll back or finalize.
    mig(m, &["migrate", "no-such-service"])?.refused(
        "an unknown service",
        "no such service `no-such-service` in the manifest",
    )?;
    mig(m, &["rollback", "sonarr"])?.refused("rollback without a migration", "no migration")?;
    mig(m, &["finalize", "sonarr"])?.refused("finalize without a migration", "no migration")?;

    // Another run holds the service's lock.
    let lock = format!("{JOURNAL_DIR}/lock");
    m.ok(&["mkdir", "-p", JOURNAL_DIR])?;
    let mut holder = Background::start(m, &["flock", "-o", &lock, "sleep", "60"])?;
    wait_for("flock to hold the lock", Duration::from_secs(10), || {
        let out = m.exec(&["flock", "-n", &lock, "true"])?;
        Ok((!out.status.success()).then_some(()))
    })?;
    let r = mig(m, &["migrate", "sonarr"]);
    let r2 = mig(m, &["rollback", "sonarr"]);
    holder.kill()?;
    r?.refused("a concurrent migration", "another nixarr-migrate")?;
    r2?.refused("a rollback during a migration", "another nixarr-migrate")?;
    unchanged(sc, port, &before, "after the lock refusal")?;

    // Nothing was left behind: the migration runs now, and already
    // migrated is a refusal too.
    mig(m, &["migrate", "sonarr"])?.ok("migrate after the refusals")?;
    container_serves(sc, port)?;
    mig(m, &["migrate", "sonarr"])?.refused("migrating twice", "already migrated")?;
    mig(m, &["rollback", "sonarr"])?.ok("rollback")?;
    rolled_back(sc, port, &before, "rollback after the refusals")?;
    finalize(sc)
}

fn detached(sc: &mut Scenario) -> Result<()> {
    let legacy_dir = legacy_dir();
    let m = sc.m;
    let port = free_port()?;
    install_legacy(m, port, Some(BULK))?;
    install_spec(sc, port)?;
    let before = tree_state(m, legacy_dir)?;
    let unit = format!("{}-migrate@sonarr.service", sc.prefix);
    m.systemctl(&["start", "--no-block", &unit])?;
    // While it runs, a second migration is refused.
    wait_for(
        "the detached migration to begin",
        Duration::from_secs(30),
        || Ok(phase(m).map(drop)),
    )?;
    let second = mig(m, &["migrate", "sonarr"])?;
    let still = m.active_state(&unit)?;
    // Finished first (a fast machine): the second run finds it done.
    let overlapped = still == "activating" || !second.stderr.contains("already migrated");
    if overlapped {
        second.refused(
            "a migration while the unit migrates",
            "another nixarr-migrate",
        )?;
    } else {
        sc.notes
            .push("the detached migration ended before the second run; no overlap".into());
    }
    wait_for(
        "the migrate unit to finish",
        Duration::from_secs(180),
        || {
            let s = m.active_state(&unit)?;
            Ok((s != "activating").then_some(s))
        },
    )?;
    let result = m.unit_property(&unit, "Service", "Result")?;
    ensure!(result == "success", "{unit} ended with {result}");
    let out = m.exec(&["systemctl", "--no-pager", "-l", "-n", "60", "status", &unit])?;
    let status = harness::output_text(&out);
    for needle in [
        "legacy-stopped",
        "snapshot: ",
        "%",
        "copy: ",
        "container-started",
        "done",
    ] {
        ensure!(
            status.contains(needle),
            "systemctl status {unit} lacks {needle:?}:\n{status}"
        );
    }
    // systemctl hides escape sequences; the journal's own record shows
    // them (a message with an ESC is a string with \u001b, or a byte array).
    let records = m.ok(&["journalctl", "--no-pager", "-o", "json", "-u", &unit])?;
    ensure!(
        !status.contains('\x1b')
            && !records.contains("\\u001b")
            && !records.contains("\"MESSAGE\":["),
        "terminal colour codes in the journal of {unit}:\n{}",
        records.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    let progress = status.lines().filter(|l| l.contains('%')).count();
    sc.notes
        .push(format!("systemctl status shows {progress} progress lines"));
    ensure!(phase(m).as_deref() == Some("done"), "phase {:?}", phase(m));
    container_serves(sc, port)?;
    check_target(m, &before, &target(sc))?;
    legacy_masked(m)?;
    mig(m, &["rollback", "sonarr"])?.ok("rollback")?;
    rolled_back(
        sc,
        port,
        &before,
        "after rolling back the detached migration",
    )?;
    finalize(sc)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum KillAt {
    /// Right after the journal shows this phase.
    Phase(&'static str),
    /// The snapshot directory exists and is partly filled.
    MidSnapshot,
    /// The staging copy beside the target exists and is partly filled.
    MidCopy,
    /// Rollback moved the container's copy aside and checks the native
    /// tree against the snapshot.
    RollbackVerifying,
}

impl std::fmt::Display for KillAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillAt::Phase(p) => write!(f, "after {p}"),
            KillAt::MidSnapshot => f.write_str("mid-snapshot"),
            KillAt::MidCopy => f.write_str("mid-copy"),
            KillAt::RollbackVerifying => f.write_str("while verifying"),
        }
    }
}

/// A bulk directory early and one late in the copy order.
fn bulk_dirs() -> (String, String) {
    (
        format!("bulk/d{:03}", BULK.dirs / 3),
        format!("bulk/d{:03}", BULK.dirs - 1),
    )
}

/// Run `argv` inside the machine and SIGKILL it at `at`; the journal's
/// phase afterwards.
fn kill_at(sc: &Scenario, argv: &[&str], at: KillAt) -> Result<String> {
    let m = sc.m;
    let root = m.root();
    let (early, late) = bulk_dirs();
    let snapshot = root
        .join(JOURNAL_DIR.trim_start_matches('/'))
        .join("snapshot");
    let staging = PathBuf::from(format!("{}/.sonarr.nixarr-migrate", state_dir(sc)));
    let staging = root.join(staging.strip_prefix("/")?);
    let aside = root.join(
        PathBuf::from(format!(
            "{}/.sonarr.nixarr-migrate-container-copy",
            state_dir(sc)
        ))
        .strip_prefix("/")?,
    );
    let mut bg = Background::start(m, argv)?;
    let start = Instant::now();
    loop {
        let hit = match at {
            KillAt::Phase(p) => phase(m).as_deref() == Some(p),
            KillAt::MidSnapshot => snapshot.join(&early).exists(),
            KillAt::MidCopy => staging.join(&early).exists(),
            KillAt::RollbackVerifying => aside.exists(),
        };
        if hit {
            bg.kill()?;
            break;
        }
        if !bg.running() {
            let (code, log) = bg.wait()?;
            bail!("{argv:?} ended (status {code}) before {at}:\n{log}");
        }
        if start.elapsed() > Duration::from_secs(180) {
            bail!("{argv:?} did not reach {at} in 180s:\n{}", bg.log());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = phase(m).unwrap_or_else(|| "none".into());
    match at {
        KillAt::Phase(p) => ensure!(
            after == p,
            "killed {at}, but the journal says {after}: the step after {p} was too quick to \
             catch"
        ),
        KillAt::MidSnapshot => ensure!(
            after == "legacy-stopped" && !snapshot.join(&late).exists(),
            "killed {at}, but the snapshot was complete (phase {after})"
        ),
        KillAt::MidCopy => ensure!(
            after == "snapshotted" && !staging.join(&late).exists(),
            "killed {at}, but the copy was complete (phase {after})"
        ),
        KillAt::RollbackVerifying => ensure!(
            after == "rolling-back",
            "killed {at}, but the journal says {after}"
        ),
    }
    Ok(after)
}

fn crash_safety(sc: &mut Scenario) -> Result<()> {
    let legacy_dir = legacy_dir();
    let m = sc.m;
    let port = free_port()?;
    install_legacy(m, port, Some(BULK))?;
    install_spec(sc, port)?;
    let before = tree_state(m, legacy_dir)?;
    let migrate = [BIN, "migration", "migrate", "sonarr", "--timeout", "120"];
    let points = [
        KillAt::Phase("planned"),
        KillAt::Phase("legacy-stopped"),
        KillAt::MidSnapshot,
        KillAt::Phase("snapshotted"),
        KillAt::MidCopy,
        KillAt::Phase("copied"),
        KillAt::Phase("container-started"),
    ];
    let mut tested = Vec::new();
    for at in points {
        for then_rollback in [false, true] {
            let what = format!(
                "killed {at}, then {}",
                if then_rollback { "rollback" } else { "migrate" }
            );
            let t0 = Instant::now();
            kill_at(sc, &migrate, at).with_context(|| what.clone())?;
            if then_rollback {
                mig(m, &["rollback", "sonarr"])?.ok(&what)?;
            } else {
                mig(m, &["migrate", "sonarr"])?.ok(&what)?;
                ensure!(
                    phase(m).as_deref() == Some("done"),
                    "{what}: phase {:?}",
                    phase(m)
                );
                container_serves(sc, port).with_context(|| what.clone())?;
                check_target(m, &before, &target(sc)).with_context(|| what.clone())?;
                legacy_masked(m).with_context(|| what.clone())?;
                mig(m, &["rollback", "sonarr"])?.ok(&format!("{what}, rollback"))?;
            }
            rolled_back(sc, port, &before, &what)?;
            finalize(sc).with_context(|| what.clone())?;
            ensure!(!exists(m, &target(sc)), "{what}: the target is left over");
            tested.push(format!("{what} ({:.1}s)", t0.elapsed().as_secs_f32()));
        }
    }
    // Rollback killed, then run again.
    for at in [KillAt::Phase("rolling-back"), KillAt::RollbackVerifying] {
        let what = format!("rollback killed {at}, then rollback");
        let t0 = Instant::now();
        mig(m, &["migrate", "sonarr"])?.ok("migrate")?;
        kill_at(
            sc,
            &[BIN, "migration", "rollback", "sonarr", "--timeout", "120"],
            at,
        )
        .with_context(|| what.clone())?;
        mig(m, &["rollback", "sonarr"])?.ok(&what)?;
        rolled_back(sc, port, &before, &what)?;
        finalize(sc).with_context(|| what.clone())?;
        tested.push(format!("{what} ({:.1}s)", t0.elapsed().as_secs_f32()));
    }
    sc.notes.push(format!(
        "{} kill points passed:\n{}",
        tested.len(),
        tested.join("\n")
    ));
    Ok(())
}

// ----------------------------------------------------------- mount points

/// `sh -c SCRIPT` inside the machine.
fn sh(m: &Machine, script: &str) -> Result<String> {
    m.ok(&["sh", "-euc", script])
}

/// sha256 of every regular file below `dir`, by relative path, leaving out
/// our own entries and lost+found in its root.
fn file_sums(m: &Machine, dir: &str) -> Result<Vec<String>> {
    let out = sh(
        m,
        &format!(
            "cd '{dir}' && find . \\( -path './.nixarr-migrate*' -o -path ./lost+found \\) \
             -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum"
        ),
    )?;
    Ok(out.lines().map(str::to_owned).collect())
}

fn mount_points(sc: &mut Scenario) -> Result<()> {
    let legacy_dir = legacy_dir();
    let result = mount_points_inner(sc);
    // Whatever happened: the next scenario builds its fixture from the host.
    let _ = sc.m.exec(&["umount", "-l", legacy_dir]);
    let _ = sc.m.exec(&["umount", "-l", &target(sc)]);
    let _ = sc.m.exec(&["systemctl", "stop", &sc.unit("sonarr")]);
    result
}

fn mount_points_inner(sc: &mut Scenario) -> Result<()> {
    let legacy_dir = legacy_dir();
    let legacy_unit = legacy_unit();
    let m = sc.m;
    let port = free_port()?;
    install_legacy(m, port, None)?;
    install_spec(sc, port)?;
    let target = target(sc);
    // The native data on a file system of its own (its content copied in
    // with owners, modes and times), and a target that is one too, holding
    // an earlier file and an ext4-style lost+found.
    m.systemctl(&["stop", legacy_unit])?;
    sh(
        m,
        &format!(
            "mv {legacy_dir} {legacy_dir}.fixture && mkdir {legacy_dir} && \
             mount -t tmpfs -o size=64m tmpfs {legacy_dir} && \
             cp -a {legacy_dir}.fixture/. {legacy_dir}/ && chmod 0750 {legacy_dir} && \
             rm -rf {legacy_dir}.fixture && \
             mkdir -p '{target}' && mount -t tmpfs -o size=64m,mode=0755 tmpfs '{target}' && \
             mkdir -m 0700 '{target}/lost+found' && echo earlier > '{target}/keep-me'"
        ),
    )?;
    m.systemctl(&["start", legacy_unit])?;
    legacy_serves(m, port)?;
    let before = tree_state(m, legacy_dir)?;
    let sums = file_sums(m, legacy_dir)?;

    mig(m, &["migrate", "sonarr"])?.refused("a mount point with a file", "not empty")?;
    let run = mig(m, &["migrate", "sonarr", "--force"])?.ok("migrate --force")?;
    sc.notes.push(format!(
        "migrate said: {}",
        run.stdout.lines().next().unwrap_or_default()
    ));
    ensure!(phase(m).as_deref() == Some("done"), "phase {:?}", phase(m));
    container_serves(sc, port)?;
    legacy_masked(m)?;
    same_tree(m, &before, "after migrating")?;
    // The copy is in the mount point itself, next to what was kept.
    let copied = file_sums(m, &target)?;
    ensure!(
        copied == sums,
        "the copy in {target} differs from the native tree:\n{}",
        diff(&sums, &copied)
    );
    let root = sh(m, &format!("stat -c '%u:%g %a' '{target}'"))?;
    ensure!(
        root.trim() == format!("{UID}:{UID} 750"),
        "the target's root is {root:?}, not the copy's owner and the native mode"
    );
    let kept = sh(
        m,
        &format!("cat '{target}/.nixarr-migrate-previous/keep-me'"),
    )?;
    ensure!(
        kept.trim() == "earlier",
        "the earlier file was not kept: {kept:?}"
    );
    ensure!(
        sh(m, &format!("ls -A '{target}/lost+found'"))?.is_empty(),
        "lost+found was touched"
    );

    // Something writes to the native data while the container runs: the
    // rollback must restore the snapshot in the mount point and keep what
    // it replaced.
    sh(m, &format!("echo changed >> {legacy_dir}/config.xml"))?;
    mig(m, &["rollback", "sonarr"])?.ok("rollback")?;
    rolled_back(sc, port, &before, "after rollback")?;
    let saved = sh(
        m,
        &format!("tail -n 1 {JOURNAL_DIR}/native-before-restore/config.xml"),
    )?;
    ensure!(
        saved.trim() == "changed",
        "the differing native data was not kept: {saved:?}"
    );
    let back = sh(
        m,
        &format!(
            "cat '{target}/keep-me'; stat -c '%u:%g %a' '{target}'; LC_ALL=C ls -A '{target}'"
        ),
    )?;
    ensure!(
        back.lines().collect::<Vec<_>>()
            == [
                "earlier",
                "0:0 755",
                ".nixarr-migrate-container-copy",
                "keep-me",
                "lost+found"
            ],
        "the target after the rollback:\n{back}"
    );
    finalize(sc)?;
    let left = sh(m, &format!("LC_ALL=C ls -A '{target}'"))?;
    ensure!(
        left.lines().collect::<Vec<_>>() == ["keep-me", "lost+found"],
        "finalize left {left:?} in {target}"
    );
    ensure!(
        !exists(m, &format!("{JOURNAL_DIR}/native-before-restore")),
        "finalize left the kept native data"
    );
    same_tree(m, &before, "after finalize")?;
    Ok(())
}

// ------------------------------------------------------ failed health check

fn never_healthy(sc: &mut Scenario) -> Result<()> {
    let legacy_dir = legacy_dir();
    let m = sc.m;
    let port = free_port()?;
    install_legacy(m, port, None)?;
    // The container starts, but its health endpoint never answers: the
    // unit's health gate gives up after startTimeout.
    install_spec_with(sc, port, |svc| {
        svc["environment"]["FAKE_READY_AFTER"] = json!("3600");
        svc["startTimeout"] = json!(15);
    })?;
    let before = tree_state(m, legacy_dir)?;
    let t0 = Instant::now();
    let r = mig(m, &["migrate", "sonarr"])?;
    ensure!(
        r.code == 1 && r.stderr.contains("migration failed and was rolled back"),
        "migrate with a container that never turns healthy: exit status {}\nstdout:\n{}\n\
         stderr:\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    // The reason, with the unit's result and journal, reaches the user.
    ensure!(
        r.stderr.contains("result timeout")
            && r.stderr.contains("\n  ")
            && !r.stderr.contains('\x1b'),
        "the failure does not say why (unit result, journal lines), or in colour codes:\n{}",
        r.stderr
    );
    sc.notes.push(format!(
        "rolled back by itself in {:.1}s:\n{}",
        t0.elapsed().as_secs_f32(),
        r.stderr.trim_end()
    ));
    rolled_back(sc, port, &before, "after the failed health check")?;
    ensure!(
        !exists(m, &target(sc)),
        "the container's copy is still at {} after the rollback",
        target(sc)
    );
    finalize(sc)?;
    same_tree(m, &before, "after finalize")
}

/// What an earlier, rolled-back run set aside beside the target, renamed
/// for the `n`th earlier run.
fn earlier_copy(sc: &Scenario, n: u32) -> String {
    format!(
        "{}/.sonarr.nixarr-migrate-container-copy.earlier-{n}",
        state_dir(sc)
    )
}

/// Trying again after a rollback is the normal path: migrate → rollback →
/// migrate (the earlier snapshot hashes the same: replaced; the container
/// copy the earlier run set aside is kept) → rollback → change the native
/// data → migrate (earlier snapshot kept) → rollback → finalize removes
/// everything of every run.
fn again_after_rollback(sc: &mut Scenario) -> Result<()> {
    let legacy_dir = legacy_dir();
    let m = sc.m;
    let port = free_port()?;
    install_legacy(m, port, None)?;
    install_spec(sc, port)?;
    legacy_serves(m, port)?;
    let before = tree_state(m, legacy_dir)?;

    mig(m, &["migrate", "sonarr"])?.ok("first migrate")?;
    container_serves(sc, port)?;
    mig(m, &["rollback", "sonarr"])?.ok("first rollback")?;
    rolled_back(sc, port, &before, "after the first rollback")?;

    let again = mig(m, &["migrate", "sonarr"])?.ok("migrate after a rollback")?;
    ensure!(
        again
            .stderr
            .contains("the earlier migration was rolled back")
            && again.stderr.contains(&format!("{JOURNAL_DIR}/earlier-1")),
        "migrate after a rollback does not say what it keeps:\n{}",
        again.stderr
    );
    sc.notes.push(format!(
        "second migrate said: {}",
        again
            .stderr
            .lines()
            .find(|l| l.contains("earlier"))
            .unwrap_or_default()
    ));
    ensure!(phase(m).as_deref() == Some("done"), "phase {:?}", phase(m));
    container_serves(sc, port)?;
    check_target(m, &before, &target(sc))?;
    same_tree(m, &before, "after migrating again")?;
    ensure!(
        exists(m, &format!("{JOURNAL_DIR}/earlier-1/journal.json")),
        "the earlier run's journal is not kept"
    );
    ensure!(
        !exists(m, &format!("{JOURNAL_DIR}/earlier-1/snapshot")),
        "the earlier snapshot has the same NAR hash and should have been replaced"
    );
    ensure!(
        exists(m, &earlier_copy(sc, 1)),
        "the container copy the earlier run set aside is gone: {}",
        earlier_copy(sc, 1)
    );

    let rb = mig(m, &["rollback", "sonarr"])?.ok("second rollback")?;
    rolled_back(sc, port, &before, "after the second rollback")?;
    ensure!(
        rb.stdout.contains("migrate sonarr` tries again"),
        "rollback: {}",
        rb.stdout
    );

    // The native service changed its data meanwhile: the next snapshot
    // differs, so the earlier one stays.
    let extra = m
        .root()
        .join(legacy_dir.trim_start_matches('/'))
        .join("written-after-rollback.txt");
    fs_err::write(&extra, "new native data\n")?;
    let changed = tree_state(m, legacy_dir)?;
    ensure!(
        changed.nar != before.nar,
        "the change did not change the hash"
    );
    mig(m, &["migrate", "sonarr"])?.ok("third migrate")?;
    ensure!(phase(m).as_deref() == Some("done"), "phase {:?}", phase(m));
    container_serves(sc, port)?;
    ensure!(
        exists(m, &format!("{JOURNAL_DIR}/earlier-2/snapshot")),
        "the earlier snapshot (another NAR hash) must be kept until finalize"
    );
    mig(m, &["rollback", "sonarr"])?.ok("third rollback")?;
    rolled_back(sc, port, &changed, "after the third rollback")?;

    finalize(sc)?;
    for p in [
        format!("{JOURNAL_DIR}/earlier-1"),
        format!("{JOURNAL_DIR}/earlier-2"),
        earlier_copy(sc, 1),
        earlier_copy(sc, 2),
    ] {
        ensure!(!exists(m, &p), "finalize left {p}");
    }
    same_tree(m, &changed, "after finalize")?;
    fs_err::remove_file(&extra)?;
    Ok(())
}
