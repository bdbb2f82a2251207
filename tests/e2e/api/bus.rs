//! The api suite's D-Bus scenarios: serve's one connection and its
//! per-unit signals, the journal it streams, a bus missing at start, and
//! polkit granting an unprivileged API the stack's units only.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use super::{CONTROL, READ, Via, app, call, main_pid, with_api, with_api_as};
use crate::harness::{self, MACHINE_BIN_DIR, Scenario, free_port, wait_for};

/// The API service's main PID (it starts on the first connection).
fn api_pid(sc: &Scenario) -> Result<String> {
    let unit = format!("{}-api.service", sc.prefix);
    let pid = sc.m.systemctl(&["show", "-P", "MainPID", &unit])?;
    let pid = pid.trim().to_owned();
    ensure!(pid != "0" && !pid.is_empty(), "{unit} is not running");
    Ok(pid)
}

/// The bus connections (unique names) the process `pid` holds.
fn bus_connections(sc: &Scenario, pid: &str) -> Result<Vec<String>> {
    let list =
        sc.m.ok(&["busctl", "list", "--unique", "--no-legend", "--no-pager"])?;
    Ok(list
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(pid))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .collect())
}

/// `nixarr_api_cache_refreshes_total{trigger="…"}` (0 when absent).
fn refreshes(sc: &Scenario, port: u16, trigger: &str) -> Result<u64> {
    let m = call(sc, &Via::Tcp(port), "GET", "/metrics", Some(READ), &[])?;
    m.expect(200, "GET /metrics")?;
    let series = format!("nixarr_api_cache_refreshes_total{{trigger=\"{trigger}\"}} ");
    Ok(m.body
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.trim().parse())
        .transpose()?
        .unwrap_or(0))
}

/// A streaming GET with curl inside the machine: its lines as they come.
pub(super) fn stream(
    sc: &Scenario,
    port: u16,
    path: &str,
) -> Result<(Child, mpsc::Receiver<String>)> {
    let mut child = Command::new("nsenter")
        .args(["-t", &sc.m.leader.to_string(), "-a", "--"])
        .args(["curl", "-sN", "--max-time", "60", "-H"])
        .arg(format!("Authorization: Bearer {READ}"))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().context("curl without stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
}

/// Every line that arrives within `d`.
fn lines_within(rx: &mpsc::Receiver<String>, d: Duration) -> Vec<String> {
    let until = Instant::now() + d;
    let mut got = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => got.push(l),
            Err(_) => break,
        }
    }
    got
}

/// The journalctl processes the API runs.
fn journalctls(sc: &Scenario, api: &str) -> Result<usize> {
    let out = sc.m.exec(&["pgrep", "-P", api, "-x", "journalctl"])?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

// Why one long function: the steps share one API process, whose
// connections and counters they read.
pub fn signals(sc: &mut Scenario) -> Result<()> {
    let port = with_api(
        sc,
        json!({ "db": app(free_port()?, "Healthy"), "web": app(free_port()?, "Healthy") }),
    )?;
    let tcp = Via::Tcp(port);
    sc.m.systemctl(&["start", &sc.unit("db"), &sc.unit("web")])?;
    // Reads, a job and a log read: everything the API does over D-Bus.
    call(sc, &tcp, "GET", "/containers", Some(READ), &[])?.expect(200, "GET /containers")?;
    call(
        sc,
        &tcp,
        "POST",
        "/container/web/restart",
        Some(CONTROL),
        &[],
    )?
    .expect(200, "restart web")?;
    let api = api_pid(sc)?;
    let conns = bus_connections(sc, &api)?;
    ensure!(
        conns.len() == 1,
        "serve (pid {api}) holds {} bus connections, want 1: {conns:?}",
        conns.len()
    );
    sc.notes
        .push(format!("serve holds 1 bus connection ({})", conns[0]));

    // A unit outside the manifest starts and stops: no refresh.
    let other = format!("{}-unrelated-{}", sc.prefix, harness::run_id());
    // Our own units settle first (a restart's last PropertiesChanged, e.g.
    // the health gate's StatusText, may come a moment after the job).
    let mut before = refreshes(sc, port, "signal")?;
    before = wait_for(
        "the signal refreshes to settle",
        Duration::from_secs(30),
        || {
            std::thread::sleep(Duration::from_secs(2));
            let now = refreshes(sc, port, "signal")?;
            let settled = (now == before).then_some(now);
            before = now;
            Ok(settled)
        },
    )?;
    sc.m.ok(&["systemd-run", "--unit", &other, "sleep", "300"])?;
    sc.m.systemctl(&["stop", &format!("{other}.service")])?;
    std::thread::sleep(Duration::from_secs(2));
    let after = refreshes(sc, port, "signal")?;
    ensure!(
        after == before,
        "starting and stopping {other} refreshed the cache ({before} -> {after} signal refreshes)"
    );
    // One of ours changes behind the API's back: its row is refreshed.
    sc.m.systemctl(&["restart", &sc.unit("db")])?;
    wait_for(
        "a signal refresh after db restarted",
        Duration::from_secs(10),
        || Ok((refreshes(sc, port, "signal")? > after).then_some(())),
    )?;
    let pid = main_pid(sc, "db")?;
    wait_for("db's new PID in its row", Duration::from_secs(10), || {
        let row = call(sc, &tcp, "GET", "/container/db/status", Some(READ), &[])?.json()?;
        Ok(
            (row["mainPid"].as_u64().map(|p| p.to_string()).as_deref() == Some(pid.as_str()))
                .then_some(()),
        )
    })?;

    follow_logs(sc, port, &api)
}

/// `logs?follow=1`: the backlog (?lines), then new lines as they come,
/// and no journalctl left once the client is gone.
fn follow_logs(sc: &mut Scenario, port: u16, api: &str) -> Result<()> {
    let (mut child, rx) = stream(sc, port, "/container/db/logs?lines=3&follow=1")?;
    let backlog = lines_within(&rx, Duration::from_secs(3));
    let running = journalctls(sc, api)?;
    ensure!(
        (1..=3).contains(&backlog.len()),
        "logs?lines=3&follow=1 sent {} lines first, want 1 to 3: {backlog:#?}\n{}",
        backlog.len(),
        follow_diagnostics(sc, api)
    );
    ensure!(
        running == 1,
        "{running} journalctl processes while following"
    );
    let asked = Instant::now();
    sc.m.systemctl(&["restart", &sc.unit("db")])?;
    let first = rx.recv_timeout(Duration::from_secs(10)).with_context(|| {
        format!("no journal line of db's restart arrived within 10 s (backlog: {backlog:#?})")
    })?;
    sc.notes.push(format!(
        "logs follow=1: {} backlog lines, the restart's first line {:.1}s after systemctl restart began: {first}",
        backlog.len(),
        asked.elapsed().as_secs_f32()
    ));
    // The client goes away: curl itself (nsenter forked it into the
    // machine's PID namespace), then nsenter.
    let children = fs_err::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))?;
    for pid in children.split_whitespace() {
        harness::host(Command::new("kill").args(["-KILL", pid]))?;
    }
    let _ = child.kill();
    let _ = child.wait();
    wait_for(
        "the API to end journalctl after the client left",
        Duration::from_secs(5),
        || Ok((journalctls(sc, api)? == 0).then_some(())),
    )?;
    Ok(())
}

/// What the API's journalctl does, and what the same command prints
/// outside the API's sandbox.
fn follow_diagnostics(sc: &Scenario, api: &str) -> String {
    let unit = sc.unit("db");
    sc.m.transcript(&[
        &["ps", "-o", "pid,stat,wchan:32,args", "--ppid", api],
        &[
            "timeout",
            "3",
            "sh",
            "-c",
            "journalctl --no-pager --quiet -o short-iso -n 3 -u \"$0\" --follow | cat",
            &unit,
        ],
    ])
}

/// The binary as the machine's units run it.
fn machine_bin() -> Result<String> {
    let name = Path::new(harness::BIN)
        .file_name()
        .context("the test binary has no file name")?;
    Ok(format!("{MACHINE_BIN_DIR}/{}", name.to_string_lossy()))
}

// Why one long function: one serve process goes from no bus to a bus.
pub fn no_bus(sc: &mut Scenario) -> Result<()> {
    sc.install(&sc.spec(json!({ "db": app(free_port()?, "Healthy") })))?;
    let dir = format!("/run/{}-bus", sc.prefix);
    let sock = format!("/run/{}-nobus.sock", sc.prefix);
    let unit = format!("{}-nobus", sc.prefix);
    let bin = machine_bin()?;
    sc.m.ok(&["mkdir", "-p", &dir])?;
    sc.m.ok(&[
        "systemd-run",
        "--unit",
        &unit,
        "--property=Restart=no",
        &bin,
        "serve",
        "--socket",
        &sock,
        "--bus-address",
        &format!("unix:path={dir}/socket"),
    ])?;
    let unix = Via::Unix(&sock);
    let up = wait_for("serve's socket", Duration::from_secs(20), || {
        Ok(call(sc, &unix, "GET", "/health", None, &[]).ok())
    })?;
    up.expect(200, "GET /health without a bus")?;
    for (method, path) in [
        ("GET", "/containers"),
        ("GET", "/container/db/status"),
        ("POST", "/container/db/start"),
        ("POST", "/container/db/stop"),
    ] {
        let a = call(sc, &unix, method, path, None, &[])?;
        a.expect(500, &format!("{method} {path} without a bus"))?;
        let v = a.json()?;
        ensure!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("systemd: ")),
            "{method} {path} without a bus: {v}"
        );
    }
    ensure!(
        sc.m.active_state(&format!("{unit}.service"))? == "active",
        "serve did not stay up without a bus"
    );
    // The bus appears where it was told to look (a proxy to the system
    // bus there): serve connects by itself.
    let proxy = format!("{}-busproxy", sc.prefix);
    let path = format!("{dir}/socket");
    bus_proxy(sc, &proxy, &path, true)?;
    let began = Instant::now();
    wait_for("serve to reach the bus", Duration::from_secs(30), || {
        Ok((call(sc, &unix, "GET", "/containers", None, &[])?.status == 200).then_some(()))
    })?;
    let first = began.elapsed().as_secs_f32();
    call(
        sc,
        &unix,
        "POST",
        "/container/db/start?timeout=120",
        None,
        &[],
    )?
    .expect(200, "start db once the bus is back")?;
    // The connection is lost (the proxy stops): 500s, serve stays up, and
    // connects again once the bus is back.
    bus_proxy(sc, &proxy, &path, false)?;
    let lost = wait_for("the D-Bus routes to fail", Duration::from_secs(20), || {
        let a = call(sc, &unix, "GET", "/containers", None, &[])?;
        Ok((a.status == 500).then_some(a))
    })?;
    let v = lost.json()?;
    ensure!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("systemd: ")),
        "GET /containers after the bus went away: {v}"
    );
    call(sc, &unix, "GET", "/health", None, &[])?
        .expect(200, "GET /health after the bus went away")?;
    bus_proxy(sc, &proxy, &path, true)?;
    let began = Instant::now();
    wait_for(
        "serve to reach the bus again",
        Duration::from_secs(30),
        || Ok((call(sc, &unix, "GET", "/containers", None, &[])?.status == 200).then_some(())),
    )?;
    sc.notes.push(format!(
        "no bus at start: 500 systemd: …, 200 {first:.1}s after the bus appeared; lost: {}; 200 again {:.1}s after it came back",
        v["error"].as_str().unwrap_or_default(),
        began.elapsed().as_secs_f32()
    ));
    bus_proxy(sc, &proxy, &path, false)?;
    sc.m.systemctl(&["stop", &format!("{unit}.service")])?;
    Ok(())
}

/// Start (or stop) `unit`: systemd-socket-proxyd listening on `path` and
/// passing each connection to the system bus, a bus that can come and go.
fn bus_proxy(sc: &Scenario, unit: &str, path: &str, up: bool) -> Result<()> {
    if !up {
        sc.m.systemctl(&[
            "stop",
            &format!("{unit}.socket"),
            &format!("{unit}.service"),
        ])?;
        let _ =
            sc.m.exec(&["systemctl", "reset-failed", &format!("{unit}.*")]);
        return Ok(());
    }
    sc.m.ok(&[
        "systemd-run",
        "--unit",
        unit,
        &format!("--socket-property=ListenStream={path}"),
        "/usr/lib/systemd/systemd-socket-proxyd",
        "/run/dbus/system_bus_socket",
    ])
    .map(drop)
}

/// The API's polkit rule as `render --out` writes it for the installed
/// spec (the generator writes units only).
fn rendered_rule(sc: &Scenario) -> Result<String> {
    let dir = format!("{}/polkit-{}", sc.m.dir.path().display(), sc.prefix);
    sc.render_installed(&format!("{dir}/out"))?;
    let rel = nixarr_units::render::polkit_rules_path(&sc.prefix);
    let rule = sc.m.ok(&["cat", &format!("{dir}/out/{rel}")])?;
    ensure!(
        rule.contains(&format!("subject.user == \"{API_USER}\"")),
        "{rel} does not name {API_USER}:\n{rule}"
    );
    Ok(rule)
}

/// systemctl as `user`, never asking for a password: its exit status and
/// output.
fn systemctl_as(sc: &Scenario, user: &str, args: &[&str]) -> Result<(bool, String)> {
    let gid = sc.m.ok(&["id", "-g", user])?;
    let mut argv = vec![
        "setpriv",
        "--reuid",
        user,
        "--regid",
        gid.trim(),
        "--init-groups",
        "systemctl",
        "--no-ask-password",
    ];
    argv.extend_from_slice(args);
    let out = sc.m.exec(&argv)?;
    Ok((out.status.success(), harness::output_text(&out)))
}

const API_USER: &str = "nixarr-api";

/// What systemctl says when systemd (asking polkit) refuses a job.
fn refused(out: &str) -> bool {
    out.contains("Access denied") || out.contains("authentication required")
}

// Why one long function: one polkit daemon, one user, one API process,
// with the rule in place and without.
pub fn polkit(sc: &mut Scenario) -> Result<()> {
    let port = with_api_as(
        sc,
        json!({ "db": app(free_port()?, "Healthy") }),
        Some(API_USER),
    )?;
    let tcp = Via::Tcp(port);
    let api_unit = format!("{}-api.service", sc.prefix);
    let unit = sc.m.systemctl(&["cat", &api_unit])?;
    ensure!(
        unit.lines().any(|l| l == format!("User={API_USER}"))
            && unit
                .lines()
                .any(|l| l == "SupplementaryGroups=systemd-journal"),
        "the rendered {api_unit} does not run as {API_USER}:\n{unit}"
    );
    // Where polkitd reads rules; the same text the NixOS module sets.
    let rules = sc.m.root().join("etc/polkit-1/rules.d");
    fs_err::create_dir_all(&rules)?;
    let rule_file = rules.join(format!("50-{}-api.rules", sc.prefix));
    fs_err::write(&rule_file, rendered_rule(sc)?)?;
    if !sc.m.exec(&["id", API_USER])?.status.success() {
        sc.m.ok(&[
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            API_USER,
        ])?;
    }
    sc.m.systemctl(&["restart", "polkit.service"])?;
    sc.m.systemctl(&["stop", &api_unit])?;
    sc.m.systemctl(&["start", &sc.unit("db")])?;
    let result = granted(sc, &tcp, &api_unit, &rule_file);
    let _ = fs_err::remove_file(&rule_file);
    let _ = sc.m.systemctl(&["stop", &api_unit]);
    result
}

/// With the rule: the API (as [`API_USER`]) restarts its unit, the user
/// cannot touch a unit outside the prefix; without it: refused.
fn granted(sc: &mut Scenario, tcp: &Via, api_unit: &str, rule_file: &Path) -> Result<()> {
    let before = main_pid(sc, "db")?;
    let r = call(sc, tcp, "POST", "/container/db/restart", Some(CONTROL), &[])?;
    let api = api_pid(sc)?;
    let uid = sc.m.ok(&["stat", "-c", "%U", &format!("/proc/{api}")])?;
    ensure!(
        uid.trim() == API_USER,
        "{api_unit} runs as {}, not {API_USER}",
        uid.trim()
    );
    r.expect(
        200,
        "restart db as the unprivileged API with the polkit rule",
    )?;
    let after = main_pid(sc, "db")?;
    ensure!(before != after, "db kept MainPID {before}");

    // Outside the prefix: refused by systemd (polkit says no).
    let other = format!("nixarr-e2e-other-{}", harness::run_id());
    fs_err::write(
        sc.m.root()
            .join(format!("run/systemd/system/{other}.service")),
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    )?;
    sc.m.daemon_reload()?;
    let (ok, out) = systemctl_as(sc, API_USER, &["start", &format!("{other}.service")])?;
    let state = sc.m.active_state(&format!("{other}.service"))?;
    let _ = fs_err::remove_file(
        sc.m.root()
            .join(format!("run/systemd/system/{other}.service")),
    );
    ensure!(
        !ok && state == "inactive" && refused(&out),
        "{API_USER} started {other}.service (outside the prefix), or failed otherwise: {out}"
    );
    let (ok, out) = systemctl_as(sc, API_USER, &["restart", "systemd-journald.service"])?;
    ensure!(
        !ok && refused(&out),
        "{API_USER} restarted systemd-journald, or failed otherwise: {out}"
    );
    let (ok, out) = systemctl_as(sc, API_USER, &["restart", &sc.unit("db")])?;
    ensure!(ok, "{API_USER} could not restart db with the rule: {out}");

    // Without the rule, the same request is refused: the rule is the grant.
    fs_err::remove_file(rule_file)?;
    sc.m.systemctl(&["restart", "polkit.service"])?;
    let denied = wait_for(
        "the API refused without the rule",
        Duration::from_secs(20),
        || {
            let a = call(sc, tcp, "POST", "/container/db/restart", Some(CONTROL), &[])?;
            Ok((a.status == 500).then_some(a))
        },
    )?;
    let v = denied.json()?;
    let msg = v["error"].as_str().unwrap_or_default();
    if !(msg.starts_with("systemd: ") && msg.contains("not permitted")) {
        bail!("restart without the rule: {v}");
    }
    sc.notes.push(format!(
        "polkit: {API_USER} restarts {}, refused {other}.service and journald; without the rule: {msg}",
        sc.unit("db")
    ));
    Ok(())
}
