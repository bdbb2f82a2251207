//! End-to-end: image digests against a real registry (Debian's
//! docker-registry on 127.0.0.1 inside the machine, plain HTTP, htpasswd
//! authentication), holding the fake app as v1, v2 and a never-healthy v3
//! under one tag, pushed with the machine's podman. One machine per
//! backend, shared by the scenarios (the registry and the login too, so
//! they run in order).
//!
//! - `login`: the password reaches the engine through standard input only:
//!   never in any process's command line during the run, never in the
//!   journal; a wrong one fails without showing it.
//! - `pull`, `update --check` (0 current, 100 after v2 is pushed, listing
//!   only that service), `update` (restarts exactly that service, the lock
//!   and the container get v2), and v3 rolled back by itself (exit 1,
//!   `--json` says which, the service healthy on v2 again).
//! - The timer path (`<prefix>-update.service`) does the same.
//! - A lock entry is honoured after a re-render and a tag moved in the
//!   registry changes nothing until `update`; a registry that is down gives
//!   a clear error and changes nothing.
//!
//! podman 4.3 and Docker; on podman 5 (the trixie machine) the login and
//! the update with its rollback only: its units start under
//! `--sdnotify=healthy`, so a never-healthy v3 fails its restart through
//! podman's own start-up health check, not the `wait-healthy` gate. The
//! registry is the host's docker-registry binary (it needs only libc),
//! copied into the machine's directory, so the trixie root needs no
//! package for it. Runs as root only (CI does).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::harness::{
    self, Backend, BootOptions, MACHINE_BIN_DIR, Machine, Run, Scenario, ScenarioFn, free_port,
    http_get, wait_for,
};

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "login: the password never on a command line nor in the journal",
        login_keeps_the_password_off_argv,
    ),
    (
        "pull, check 0/100, update restarts only the changed service, v3 rolls back",
        check_update_rollback,
    ),
    (
        "the timer's update service updates and rolls back the same way",
        timer_path,
    ),
    (
        "a pinned lock survives a re-render and a moved tag; a down registry changes nothing",
        lock_honoured_and_registry_down,
    ),
];

/// podman only: registries.conf (short names, mirrors); Docker's short
/// names are always Docker Hub's and it mirrors only Docker Hub (neither
/// reachable here).
const PODMAN_ONLY: &[(&str, ScenarioFn)] = &[
    (
        "a short name is checked where podman's registries.conf alias points",
        short_name_alias,
    ),
    (
        "a registry that is down is checked and updated through its registries.conf mirror",
        mirror_of_a_down_registry,
    ),
];

fn opts() -> BootOptions {
    BootOptions {
        // The variants are imported into podman storage of the machine's
        // own (on the Docker machine too: its podman pushes them).
        private_storage: true,
        ..BootOptions::default()
    }
}

fn missing() -> Option<String> {
    [REGISTRY_BIN, "/usr/bin/htpasswd"]
        .iter()
        .find(|p| !std::path::Path::new(p).exists())
        .map(|p| format!("{p} is missing (apt-get install docker-registry apache2-utils)"))
}

/// The host's registry server, copied into each machine's directory.
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

#[test]
fn podman() {
    let scenarios: Vec<(&str, ScenarioFn)> = SCENARIOS.iter().chain(PODMAN_ONLY).copied().collect();
    harness::run_suite_booted(
        "image end-to-end tests",
        Backend::Podman,
        opts(),
        &scenarios,
        missing(),
        prepare,
        |_| {},
    );
}

/// podman 5: the rollback path under podman's own health-gated start, and
/// registries.conf as podman 5's containers/image reads it.
#[test]
fn podman5() {
    let scenarios: Vec<(&str, ScenarioFn)> =
        SCENARIOS[..2].iter().chain(PODMAN_ONLY).copied().collect();
    harness::run_suite_booted(
        "image end-to-end tests",
        Backend::Podman,
        harness::PODMAN5,
        &scenarios,
        missing(),
        prepare,
        |_| {},
    );
}

#[test]
fn docker() {
    harness::run_suite_booted(
        "image end-to-end tests",
        Backend::Docker,
        opts(),
        SCENARIOS,
        missing(),
        prepare,
        |_| {},
    );
}

const USER: &str = "e2e";
/// Distinctive, so a search for it cannot hit anything else.
const PASSWORD: &str = "pw-Zq7x-never-on-argv";
const REGISTRY_UNIT: &str = "nixarr-e2e-registry.service";

/// The registry of the machine being tested.
struct Reg {
    port: u16,
    dir: PathBuf,
}

static REG: Mutex<Option<(u16, PathBuf)>> = Mutex::new(None);

fn reg() -> Result<Reg> {
    let g = REG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (port, dir) = g.clone().context("the registry was not prepared")?;
    Ok(Reg { port, dir })
}

/// Start the registry (a transient unit in the machine) and wait until it
/// answers (401: it wants a login).
fn start_registry(m: &Machine, r: &Reg) -> Result<()> {
    m.ok(&[
        "systemd-run",
        &format!("--unit={REGISTRY_UNIT}"),
        r.dir.join("docker-registry").to_str().context("path")?,
        "serve",
        r.dir.join("config.yml").to_str().context("path")?,
    ])?;
    wait_for("the registry to answer", Duration::from_secs(30), || {
        Ok(http_get(r.port, "/v2/")
            .ok()
            .filter(|(status, _, _)| *status == 401)
            .map(drop))
    })
}

/// The registry with htpasswd authentication, insecure (plain HTTP) for
/// podman through registries.conf (Docker takes 127.0.0.0/8 as insecure by
/// itself), and the fake app's three versions in podman's storage.
fn prepare(m: &Machine) -> Result<()> {
    let port = free_port()?;
    let dir = m.dir.path().join("registry");
    fs_err::create_dir_all(dir.join("data"))?;
    fs_err::copy(REGISTRY_BIN, dir.join("docker-registry"))?;
    let mut htpasswd = Command::new("htpasswd")
        .args(["-B", "-i", "-c"])
        .arg(dir.join("htpasswd"))
        .arg(USER)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("running htpasswd")?;
    htpasswd
        .stdin
        .take()
        .context("htpasswd stdin")?
        .write_all(PASSWORD.as_bytes())?;
    ensure!(htpasswd.wait()?.success(), "htpasswd failed");
    fs_err::write(
        dir.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    \
             realm: nixarr-e2e\n    path: {}\n",
            dir.join("data").display(),
            dir.join("htpasswd").display()
        ),
    )?;
    fs_err::write(dir.join("password"), format!("{PASSWORD}\n"))?;
    fs_err::write(
        m.dir.path().join("etc-containers/registries.conf"),
        format!("[[registry]]\nlocation = \"127.0.0.1:{port}\"\ninsecure = true\n"),
    )?;
    let r = Reg { port, dir };
    start_registry(m, &r)?;
    let tar = m.dir.path().join("fake-app.tar");
    let tar = tar.to_str().context("path")?;
    for v in ["v1", "v2", "v3"] {
        let mut argv = vec!["podman", "import", "--change", r#"ENTRYPOINT ["/app/run"]"#];
        let label = format!("LABEL org.nixarr-e2e.version={v}");
        argv.extend(["--change", &label]);
        if v == "v3" {
            // Never answers its health probe.
            argv.extend(["--change", "ENV FAKE_READY_AFTER=100000"]);
        }
        let name = format!("localhost/nixarr-e2e-app:{v}");
        argv.extend([tar, &name]);
        m.ok(&argv).with_context(|| format!("importing {v}"))?;
    }
    *REG.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((r.port, r.dir));
    Ok(())
}

/// Push version `v` of the fake app to `repo:latest`; its digest.
fn push(sc: &Scenario, v: &str, repo: &str) -> Result<String> {
    let r = reg()?;
    let file = r.dir.join(format!("digest-{repo}-{v}"));
    sc.m.ok(&[
        "podman",
        "push",
        "--quiet",
        "--tls-verify=false",
        &format!("--creds={USER}:{PASSWORD}"),
        "--digestfile",
        file.to_str().context("path")?,
        &format!("localhost/nixarr-e2e-app:{v}"),
        &format!("docker://127.0.0.1:{}/e2e/{repo}:latest", r.port),
    ])
    .with_context(|| format!("pushing {v} to {repo}"))?;
    Ok(fs_err::read_to_string(&file)?.trim().to_owned())
}

fn image(repo: &str) -> Result<String> {
    Ok(format!("127.0.0.1:{}/e2e/{repo}:latest", reg()?.port))
}

/// nixarr-units in the machine, as root in a system service would run it
/// (no XDG_RUNTIME_DIR: podman's credentials in /run/containers/0).
fn cli(sc: &Scenario, args: &[&str]) -> Result<Run> {
    let exe = format!("{MACHINE_BIN_DIR}/nixarr-units");
    let mut argv = vec!["env", "-u", "XDG_RUNTIME_DIR", "HOME=/root", exe.as_str()];
    argv.extend_from_slice(args);
    Ok(sc.m.exec(&argv)?.into())
}

/// A fake app probed over HTTP, quick to give up on health (v3).
fn app(image: &str, port: u16) -> Value {
    json!({
        "image": image,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "environment": { "FAKE_STYLE": "health" },
        "health": { "http": "/health", "port": 8080, "expectStatus": 200,
                    "expectBody": "Healthy", "interval": "2s", "startPeriod": "1s" },
        "startTimeout": 15,
        "stopTimeout": 3,
    })
}

fn lock_path(sc: &Scenario) -> String {
    format!("/etc/nixarr-units/{}.lock.json", sc.prefix)
}

fn read_lock(sc: &Scenario) -> Result<Value> {
    let p = sc.m.root().join(lock_path(sc).trim_start_matches('/'));
    Ok(serde_json::from_str(&fs_err::read_to_string(p)?)?)
}

fn locked(sc: &Scenario, image: &str) -> Result<String> {
    Ok(read_lock(sc)?["images"][image]["digest"]
        .as_str()
        .unwrap_or("")
        .to_owned())
}

fn main_pid(sc: &Scenario, svc: &str) -> Result<String> {
    Ok(sc
        .m
        .systemctl(&["show", "-p", "MainPID", "--value", &sc.unit(svc)])?
        .trim()
        .to_owned())
}

/// The digest the container of `svc` was created from (`repo@sha256:…`,
/// as a pinned unit runs it; the engine resolves exactly that digest).
fn running_digest(sc: &Scenario, svc: &str) -> Result<String> {
    let format = match sc.m.backend {
        Backend::Podman => "--format={{.ImageName}}",
        Backend::Docker => "--format={{.Config.Image}}",
    };
    let reference =
        sc.m.engine(&["inspect", "--type=container", format, &sc.container(svc)])?;
    Ok(reference
        .trim()
        .split_once('@')
        .map(|(_, d)| d.to_owned())
        .unwrap_or_default())
}

fn healthy(port: u16) -> bool {
    http_get(port, "/health").is_ok_and(|(s, _, b)| s == 200 && b.starts_with(b"Healthy"))
}

/// Start the stack and wait until every service is active.
fn start(sc: &Scenario, svcs: &[&str]) -> Result<()> {
    sc.start_target()?;
    for s in svcs {
        sc.m.wait_active(&sc.unit(s), Duration::from_secs(90))?;
    }
    Ok(())
}

/// Processes whose command line holds `needle`, seen while `f` runs: every
/// /proc/*/cmdline of the host (the machine's and dockerd's processes
/// included) read over and over. Returns what `f` returned, the offending
/// command lines and how many passes were made.
fn watch_cmdlines<T>(needle: &str, f: impl FnOnce() -> T) -> (T, Vec<String>, usize) {
    let stop = AtomicBool::new(false);
    let found = Mutex::new(Vec::new());
    let passes = Mutex::new(0usize);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    if let Ok(c) = std::fs::read(e.path().join("cmdline"))
                        && c.windows(needle.len()).any(|w| w == needle.as_bytes())
                        && let Ok(mut f) = found.lock()
                    {
                        f.push(String::from_utf8_lossy(&c).replace('\0', " "));
                    }
                }
                if let Ok(mut p) = passes.lock() {
                    *p += 1;
                }
            }
        });
        let out = f();
        stop.store(true, Ordering::Relaxed);
        out
    });
    (
        out,
        found.into_inner().unwrap_or_default(),
        passes.into_inner().unwrap_or_default(),
    )
}

fn login_keeps_the_password_off_argv(sc: &mut Scenario) -> Result<()> {
    let r = reg()?;
    let registry = format!("127.0.0.1:{}", r.port);
    let pw = r.dir.join("password");
    let pw = pw.to_str().context("path")?;
    // A wrong password first (Docker forgets stored credentials for a
    // registry whose login fails): refused, and not shown either.
    let bad = r.dir.join("bad-password");
    fs_err::write(&bad, "wrong-pw-9f2c\n")?;
    let run = cli(
        sc,
        &[
            "login",
            &registry,
            "-u",
            USER,
            "--password-file",
            bad.to_str().context("path")?,
        ],
    )?;
    run.expect(1, "login with a wrong password")?;
    ensure!(
        !run.stderr.contains("wrong-pw-9f2c") && !run.stdout.contains("wrong-pw-9f2c"),
        "{run:?}"
    );
    let start = Instant::now();
    let (run, found, passes) = watch_cmdlines(PASSWORD, || {
        cli(
            sc,
            &[
                "login",
                &registry,
                "--username",
                USER,
                "--password-file",
                pw,
                // No stack is installed yet: the engine to log in with.
                "--backend",
                sc.m.backend.name(),
            ],
        )
    });
    let run = run?.ok("login")?;
    ensure!(
        run.stdout.contains(&format!(
            "logged in to {registry} as {USER} ({})",
            sc.m.backend.name()
        )),
        "{run:?}"
    );
    ensure!(
        found.is_empty(),
        "the password was on a command line: {found:?}"
    );
    sc.notes.push(format!(
        "{passes} passes over every /proc/*/cmdline during the {:.1}s login, none held the password",
        start.elapsed().as_secs_f32()
    ));
    // Nothing in the journal (units, the engine, dockerd's journald logs).
    let journal = sc.m.ok(&["journalctl", "-b", "--no-pager", "-o", "cat"])?;
    ensure!(
        !journal.contains(PASSWORD) && !journal.contains("wrong-pw-9f2c"),
        "the password is in the journal"
    );
    let dockerd_log = std::fs::read_to_string(m_dir(sc).join("dockerd.log")).unwrap_or_default();
    ensure!(
        !dockerd_log.contains(PASSWORD),
        "the password is in dockerd's log"
    );
    // That the stored credentials work, the next scenarios show: the
    // registry answers nothing without them.
    Ok(())
}

fn m_dir(sc: &Scenario) -> PathBuf {
    sc.m.dir.path().to_path_buf()
}

fn check_update_rollback(sc: &mut Scenario) -> Result<()> {
    let app_repo = format!("{}-app", sc.prefix);
    let other_repo = format!("{}-other", sc.prefix);
    let d1 = push(sc, "v1", &app_repo)?;
    push(sc, "v1", &other_repo)?;
    let (pa, pb) = (free_port()?, free_port()?);
    let (ia, ib) = (image(&app_repo)?, image(&other_repo)?);
    let mut spec = sc.spec(json!({ "a": app(&ia, pa), "b": app(&ib, pb) }));
    spec["imageLock"] = lock_path(sc).into();
    sc.install(&spec)?;

    let pull = cli(sc, &["pull", "--all"])?.ok("pull --all")?;
    ensure!(
        pull.stdout
            .lines()
            .filter(|l| l.contains(": pulled sha256:"))
            .count()
            == 2,
        "one line per image: {pull:?}"
    );
    start(sc, &["a", "b"])?;
    cli(sc, &["update", "--all", "--check"])?.expect(0, "check on v1")?;
    // The first update writes the lock; the units pin v1 from now on.
    cli(sc, &["update", "--all"])?.ok("update writing the lock")?;
    ensure!(locked(sc, &ia)? == d1, "lock: {}", read_lock(sc)?);
    let unit = sc.m.systemctl(&["cat", &sc.unit("a")])?;
    ensure!(unit.contains(&format!("@{d1}")), "unit not pinned:\n{unit}");
    let (pid_a, pid_b) = (main_pid(sc, "a")?, main_pid(sc, "b")?);

    let d2 = push(sc, "v2", &app_repo)?;
    let run = cli(sc, &["update", "--all", "--check", "--json"])?;
    run.expect(100, "check after v2")?;
    let j = run.json()?;
    let states: Vec<(String, String)> = j["checks"]
        .as_array()
        .context("checks")?
        .iter()
        .map(|c| {
            (
                c["service"].as_str().unwrap_or("").to_owned(),
                c["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    ensure!(
        states
            == [
                ("a".to_owned(), "updateAvailable".to_owned()),
                ("b".to_owned(), "current".to_owned())
            ],
        "{j}"
    );
    ensure!(
        j["checks"][0]["available"] == d2.as_str() && j["checks"][0]["running"] == d1.as_str(),
        "{j}"
    );

    let run = cli(sc, &["update", "--all", "--json"])?.ok("update to v2")?;
    let j = run.json()?;
    ensure!(
        j["updates"][0]["service"] == "a" && j["updates"][0]["result"] == "updated",
        "{j}"
    );
    ensure!(j["updates"].as_array().map(Vec::len) == Some(1), "{j}");
    ensure!(main_pid(sc, "a")? != pid_a, "a was not restarted");
    ensure!(main_pid(sc, "b")? == pid_b, "b was restarted");
    ensure!(locked(sc, &ia)? == d2, "lock: {}", read_lock(sc)?);
    ensure!(running_digest(sc, "a")? == d2, "a does not run v2");
    ensure!(sc.label("a", "io.nixarr.image.tag")? == ia);
    ensure!(healthy(pa), "a is not healthy on v2");

    // v3 never turns healthy: rolled back to v2 by itself.
    push(sc, "v3", &app_repo)?;
    let start_v3 = Instant::now();
    let run = cli(sc, &["update", "a", "--json"])?;
    run.expect(1, "update to the broken v3")?;
    let j = run.json()?;
    ensure!(j["rolledBack"] == json!(["a"]), "{j}");
    ensure!(j["updates"][0]["result"] == "rolledBack", "{j}");
    sc.notes.push(format!(
        "v3 rolled back in {:.1}s (start timeout 15s)",
        start_v3.elapsed().as_secs_f32()
    ));
    ensure!(sc.m.active_state(&sc.unit("a"))? == "active");
    ensure!(
        running_digest(sc, "a")? == d2,
        "a does not run v2 after the rollback"
    );
    ensure!(
        locked(sc, &ia)? == d2,
        "lock after rollback: {}",
        read_lock(sc)?
    );
    ensure!(healthy(pa), "a is not healthy after the rollback");
    ensure!(main_pid(sc, "b")? == pid_b, "b was restarted");
    Ok(())
}

fn timer_path(sc: &mut Scenario) -> Result<()> {
    let repo = format!("{}-app", sc.prefix);
    push(sc, "v1", &repo)?;
    let port = free_port()?;
    let ia = image(&repo)?;
    let mut spec = sc.spec(json!({ "a": app(&ia, port) }));
    spec["imageLock"] = lock_path(sc).into();
    spec["autoUpdate"] = json!({ "schedule": "weekly", "services": ["a"] });
    sc.install(&spec)?;
    start(sc, &["a"])?;
    let timer = format!("{}-update.timer", sc.prefix);
    let service = format!("{}-update.service", sc.prefix);
    ensure!(
        sc.m.active_state(&timer)? == "active",
        "the timer is not active"
    );
    cli(sc, &["update", "--all"])?.ok("update writing the lock")?;

    let d2 = push(sc, "v2", &repo)?;
    sc.m.systemctl(&["start", &service])
        .context("the update service failed on v2")?;
    ensure!(running_digest(sc, "a")? == d2, "a does not run v2");
    let journal =
        sc.m.ok(&["journalctl", "--no-pager", "-o", "cat", "-u", &service])?;
    ensure!(
        journal
            .lines()
            .any(|l| l.starts_with("a: ") && l.ends_with(": updated")),
        "no journal line for a:\n{journal}"
    );

    let d3 = push(sc, "v3", &repo)?;
    let out = sc.m.exec(&["systemctl", "start", &service])?;
    ensure!(!out.status.success(), "the update service succeeded on v3");
    let journal =
        sc.m.ok(&["journalctl", "--no-pager", "-o", "cat", "-u", &service])?;
    ensure!(
        journal
            .lines()
            .any(|l| l.starts_with("a: ") && l.contains("rolled back to")),
        "no rollback line for a:\n{journal}"
    );
    ensure!(sc.m.active_state(&sc.unit("a"))? == "active");
    ensure!(
        running_digest(sc, "a")? == d2,
        "a does not run v2 after the rollback"
    );
    ensure!(healthy(port), "a is not healthy after the rollback");
    // `status` shows the last update and the last rollback.
    let st = cli(sc, &["status", "--json", "--no-probe", &sc.unit("a")])?;
    let j = st.json()?;
    let u = &j["services"][0]["imageUpdate"];
    ensure!(
        u["lastUpdate"]["to"] == d2.as_str() && u["lastRollback"]["to"] == d3.as_str(),
        "status: {j}"
    );
    let text = cli(sc, &["status", "--no-probe", &sc.unit("a")])?;
    ensure!(
        text.stdout
            .contains(&format!("a: image update to {d3} rolled back at")),
        "{text:?}"
    );
    let _ = sc.m.exec(&["systemctl", "reset-failed", &service]);
    Ok(())
}

fn lock_honoured_and_registry_down(sc: &mut Scenario) -> Result<()> {
    let repo = format!("{}-app", sc.prefix);
    let d1 = push(sc, "v1", &repo)?;
    let port = free_port()?;
    let ia = image(&repo)?;
    let mut spec = sc.spec(json!({ "a": app(&ia, port) }));
    spec["imageLock"] = lock_path(sc).into();
    sc.install(&spec)?;
    start(sc, &["a"])?;
    cli(sc, &["update", "--all"])?.ok("update writing the lock")?;

    // The tag moves in the registry: a re-render and a restart keep v1.
    let d2 = push(sc, "v2", &repo)?;
    ensure!(d2 != d1);
    sc.m.daemon_reload()?;
    sc.m.systemctl(&["restart", &sc.unit("a")])?;
    let unit = sc.m.systemctl(&["cat", &sc.unit("a")])?;
    ensure!(
        unit.contains(&format!("@{d1}")),
        "unit not pinned to v1:\n{unit}"
    );
    ensure!(
        running_digest(sc, "a")? == d1,
        "a left v1 without an update"
    );

    // The registry goes down: a clear error, nothing changed.
    let lock_before = read_lock(sc)?;
    let pid = main_pid(sc, "a")?;
    sc.m.systemctl(&["stop", REGISTRY_UNIT])?;
    let run = cli(sc, &["update", "--all"]);
    let restarted = start_registry(sc.m, &reg()?);
    let run = run?;
    restarted?;
    run.expect(1, "update with the registry down")?;
    ensure!(
        run.stderr
            .contains(&format!("cannot resolve {ia} in its registry")),
        "{run:?}"
    );
    ensure!(read_lock(sc)? == lock_before, "the lock changed");
    ensure!(main_pid(sc, "a")? == pid, "a was restarted");
    ensure!(running_digest(sc, "a")? == d1);
    // Back up: v2 is available.
    cli(sc, &["update", "--all", "--check"])?.expect(100, "check with v2 pushed")?;
    Ok(())
}

/// A service whose image is a short name podman resolves through an alias
/// of registries.conf.d to the local registry: the unit pulls it from
/// there, and `update` asks there (not Docker Hub, which it used to ask
/// whatever podman was configured with).
fn short_name_alias(sc: &mut Scenario) -> Result<()> {
    let repo = format!("{}-short", sc.prefix);
    let short = format!("nixarr-e2e-alias/{repo}");
    let full = image(&repo)?;
    let full = full.trim_end_matches(":latest");
    let tag = format!("{short}:latest");
    let conf = format!("[aliases]\n\"{short}\" = \"{full}\"\n");
    through_registries_conf(sc, &repo, &tag, &conf)?;
    // Without the alias podman could not pull it either: a clear error.
    let run = cli(sc, &["update", "--all", "--check"])?;
    run.expect(1, "check without the alias")?;
    ensure!(
        run.stderr
            .contains(&format!("podman cannot resolve the short name {tag}")),
        "{run:?}"
    );
    Ok(())
}

/// A service whose registry is down (nothing listens on its port) but has
/// a mirror in registries.conf.d, the local registry: the unit pulls from
/// the mirror, and `update` asks the mirror first.
fn mirror_of_a_down_registry(sc: &mut Scenario) -> Result<()> {
    let repo = format!("{}-mirrored", sc.prefix);
    let down = free_port()?;
    let tag = format!("127.0.0.1:{down}/e2e/{repo}:latest");
    let conf = format!(
        "[[registry]]\nprefix = \"127.0.0.1:{down}/e2e\"\nlocation = \"127.0.0.1:{down}/e2e\"\n\
         [[registry.mirror]]\nlocation = \"127.0.0.1:{}/e2e\"\ninsecure = true\n",
        reg()?.port
    );
    through_registries_conf(sc, &repo, &tag, &conf)?;
    // Without the mirror: the registry's own refusal.
    let run = cli(sc, &["update", "--all", "--check"])?;
    run.expect(1, "check without the mirror")?;
    ensure!(
        run.stderr
            .contains(&format!("cannot resolve {tag} in its registry"))
            && run.stderr.to_lowercase().contains("refused"),
        "{run:?}"
    );
    Ok(())
}

/// Run `tag` (pushed to the local registry as `repo`, reached through
/// the registries.conf drop-in `conf`) under a lock: the first update pins
/// v1 (the unit runs `tag`'s repository `@sha256:…`, which podman
/// resolves through the same drop-in), a check is 0, then 100 once v2 is
/// pushed, and an update moves the service to v2, healthy. The drop-in is
/// removed at the end.
fn through_registries_conf(sc: &mut Scenario, repo: &str, tag: &str, conf: &str) -> Result<()> {
    let d1 = push(sc, "v1", repo)?;
    let dropin = m_dir(sc).join("etc-containers/registries.conf.d");
    fs_err::create_dir_all(&dropin)?;
    let file = dropin.join(format!("50-{repo}.conf"));
    fs_err::write(&file, conf)?;
    let port = free_port()?;
    let mut spec = sc.spec(json!({ "a": app(tag, port) }));
    spec["imageLock"] = lock_path(sc).into();
    sc.install(&spec)?;
    start(sc, &["a"])?;
    cli(sc, &["update", "--all"])?.ok("update writing the lock")?;
    ensure!(locked(sc, tag)? == d1, "lock: {}", read_lock(sc)?);
    let unit = sc.m.systemctl(&["cat", &sc.unit("a")])?;
    let pinned = format!("{}@{d1}", tag.trim_end_matches(":latest"));
    ensure!(unit.contains(&pinned), "unit not pinned:\n{unit}");
    cli(sc, &["update", "--all", "--check"])?.expect(0, "check on v1")?;

    let d2 = push(sc, "v2", repo)?;
    ensure!(d2 != d1);
    let run = cli(sc, &["update", "--all", "--check", "--json"])?;
    run.expect(100, "check after v2")?;
    let c = &run.json()?["checks"][0];
    ensure!(
        c["image"] == tag && c["running"] == d1.as_str() && c["available"] == d2.as_str(),
        "{c}"
    );
    cli(sc, &["update", "--all"])?.ok("update to v2")?;
    ensure!(running_digest(sc, "a")? == d2, "a does not run v2");
    ensure!(healthy(port), "a is not healthy on v2");
    fs_err::remove_file(&file)?;
    Ok(())
}
