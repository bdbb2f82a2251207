//! End-to-end: how units stop and what systemd can tell about them, on real
//! systemd with podman and Docker (see harness/).
//!
//! - A container whose main process ignores SIGTERM (busybox `httpd -f` as
//!   PID 1, a shell entrypoint) ends `inactive (dead)` after a stop, a
//!   restart or a stop of its target, in the grace plus a few seconds, with
//!   one journal line saying it was killed; killed while running, it is
//!   still restarted.
//! - `SourcePath=` the spec: `NeedDaemonReload` after an edit.
//! - The health gate's `STATUS=` shows in `systemctl status`.
//! - The data tree (`paths.dataDir`) is created before the first container
//!   that mounts it, and an existing one is left as it is.
//!
//! Runs as root only (CI does); otherwise prints SKIPPED loudly.

use std::time::{Duration, Instant};

use crate::harness;
use crate::harness::{Backend, IMAGE, MACHINE_BIN_DIR, Scenario, ScenarioFn, free_port, wait_for};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "stopping the target of SIGTERM-ignoring apps ends inactive, in the grace",
        stop_target_ignoring_term,
    ),
    (
        "restart and stop of one SIGTERM-ignoring service end clean",
        restart_and_stop_one,
    ),
    (
        "a SIGTERM-ignoring app killed while running is restarted",
        killed_while_running,
    ),
    (
        "SourcePath: an edited spec needs a daemon-reload",
        source_path_needs_reload,
    ),
    (
        "the health gate says in StatusText what it waits for",
        status_text_while_waiting,
    ),
    (
        "the data tree is created before the container, an existing one kept",
        data_dir_created,
    ),
    (
        "a stop while the health gate waits ends inactive, in the grace",
        stop_while_starting,
    ),
];

#[test]
fn podman() {
    harness::run_suite("stop end-to-end tests", Backend::Podman, SCENARIOS);
}

/// podman 5 (the trixie machine, what NixOS ships).
#[test]
fn podman5() {
    harness::run_suite_podman5("stop end-to-end tests", SCENARIOS);
}

#[test]
fn docker() {
    harness::run_suite("stop end-to-end tests", Backend::Docker, SCENARIOS);
}

/// Seconds between SIGTERM and SIGKILL for the test apps.
const GRACE: u64 = 4;
/// What a stop may take beyond the grace (engine, helper, systemd).
const SLACK: f64 = 5.0;

/// The fake app ignoring SIGTERM (only SIGKILL ends it), probed over HTTP.
fn deaf_app(port: u16) -> Value {
    json!({
        "image": IMAGE,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "environment": { "FAKE_STYLE": "health", "FAKE_IGNORE_TERM": "1" },
        "health": { "http": "/health", "port": 8080, "expectStatus": 200, "expectBody": "Healthy" },
        "stopTimeout": GRACE,
        "startTimeout": 120,
    })
}

fn show(sc: &Scenario, unit: &str, prop: &str) -> Result<String> {
    Ok(sc
        .m
        .systemctl(&["show", "-p", prop, "--value", unit])?
        .trim()
        .to_owned())
}

/// Wait until `unit` has left active/deactivating; it must be inactive
/// (dead) with Result=success, not failed.
fn expect_clean_stop(sc: &Scenario, unit: &str) -> Result<()> {
    let state = wait_for(
        &format!("{unit} to stop"),
        Duration::from_secs(GRACE * 3 + 60),
        || {
            let active = sc.m.active_state(unit)?;
            Ok((active != "deactivating" && active != "active").then_some(active))
        },
    )?;
    let sub = sc.m.sub_state(unit)?;
    let result = show(sc, unit, "Result")?;
    ensure!(
        state == "inactive" && sub == "dead" && result == "success",
        "{unit} is {state} ({sub}, Result={result}) after the stop, not inactive (dead)"
    );
    Ok(())
}

/// Whether `unit` waits for health with the `wait-healthy` gate (podman 4,
/// Docker, probes from the host) rather than `--sdnotify=healthy`.
fn has_gate(sc: &Scenario, unit: &str) -> Result<bool> {
    Ok(sc.m.systemctl(&["cat", unit])?.contains(" wait-healthy "))
}

fn journal(sc: &Scenario, unit: &str) -> Result<String> {
    sc.m.ok(&["journalctl", "--no-pager", "-o", "cat", "-u", unit])
}

/// The journal says once per kill that the container was killed, and the
/// engine's own warning does not repeat it.
fn expect_kill_lines(sc: &Scenario, svc: &str, kills: usize) -> Result<()> {
    let log = journal(sc, &sc.unit(svc))?;
    let line = format!("{} did not stop within {GRACE}s; killed", sc.container(svc));
    let n = log.lines().filter(|l| l.contains(&line)).count();
    ensure!(
        n == kills,
        "expected {kills} line(s) {line:?} in the journal, found {n}:\n{log}"
    );
    ensure!(
        !log.contains("resorting to SIGKILL"),
        "the engine's own warning is in the journal too:\n{log}"
    );
    Ok(())
}

/// `nixarr-units status --json` inside the machine, for one service.
fn status_json(sc: &Scenario, svc: &str) -> Result<Value> {
    let exe = format!("{MACHINE_BIN_DIR}/nixarr-units");
    let out = sc.m.exec(&[&exe, "status", "--json", "--no-probe", svc])?;
    let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "status --json printed no JSON:\n{}",
            harness::output_text(&out)
        )
    })?;
    v["services"]
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .context("status --json lists no service")
}

fn stop_target_ignoring_term(sc: &mut Scenario) -> Result<()> {
    let ports = [free_port()?, free_port()?, free_port()?];
    let a = deaf_app(ports[0]);
    let mut b = deaf_app(ports[1]);
    b["dependsOn"] = json!(["a"]);
    let c = deaf_app(ports[2]);
    sc.install(&sc.spec(json!({ "a": a, "b": b, "c": c })))?;
    sc.start_target()?;
    ensure!(sc.containers()?.len() == 3, "expected three containers");
    let start = Instant::now();
    sc.m.systemctl(&["stop", &sc.target()])?;
    for svc in ["a", "b", "c"] {
        expect_clean_stop(sc, &sc.unit(svc))?;
    }
    let took = start.elapsed().as_secs_f64();
    // b stops before a (After=): two graces in a row, c alongside.
    let bound = 2.0 * GRACE as f64 + SLACK;
    sc.notes
        .push(format!("stopped in {took:.1}s (grace {GRACE}s, b then a)"));
    ensure!(
        took >= 2.0 * GRACE as f64 && took <= bound,
        "stopping the target took {took:.1}s; expected two graces of {GRACE}s and at most {bound}s"
    );
    for svc in ["a", "b", "c"] {
        expect_kill_lines(sc, svc, 1)?;
        let st = status_json(sc, svc)?;
        ensure!(
            st["result"] == "success" && st["activeState"] != "failed",
            "status --json reports {svc} as {st}"
        );
    }
    let left = sc.containers()?;
    ensure!(left.is_empty(), "containers left: {left:?}");
    Ok(())
}

fn restart_and_stop_one(sc: &mut Scenario) -> Result<()> {
    let (pa, pb) = (free_port()?, free_port()?);
    let a = deaf_app(pa);
    let b = deaf_app(pb);
    sc.install(&sc.spec(json!({ "a": a, "b": b })))?;
    sc.start_target()?;
    let ua = sc.unit("a");
    let pid_before = show(sc, &ua, "MainPID")?;

    let start = Instant::now();
    sc.m.systemctl(&["restart", &ua])?;
    let took = start.elapsed().as_secs_f64();
    ensure!(
        took >= GRACE as f64 && took <= GRACE as f64 + SLACK,
        "restarting {ua} took {took:.1}s; expected the grace ({GRACE}s) plus at most {SLACK}s"
    );
    ensure!(
        sc.m.active_state(&ua)? == "active",
        "{ua} is not active after the restart"
    );
    ensure!(
        show(sc, &ua, "MainPID")? != pid_before,
        "{ua} was not restarted"
    );
    ensure!(
        sc.m.n_restarts(&ua)? == 0,
        "a restart asked for counts as an automatic restart"
    );
    expect_kill_lines(sc, "a", 1)?;
    sc.notes.push(format!("restart took {took:.1}s"));

    let start = Instant::now();
    sc.m.systemctl(&["stop", &ua])?;
    expect_clean_stop(sc, &ua)?;
    let took = start.elapsed().as_secs_f64();
    ensure!(
        took <= GRACE as f64 + SLACK,
        "stopping {ua} took {took:.1}s"
    );
    expect_kill_lines(sc, "a", 2)?;
    ensure!(
        sc.containers()? == vec![sc.container("b")],
        "after stopping a: containers {:?}",
        sc.containers()?
    );
    ensure!(
        sc.m.active_state(&sc.unit("b"))? == "active",
        "b was stopped along with a"
    );
    sc.notes.push(format!("stop took {took:.1}s"));
    Ok(())
}

fn killed_while_running(sc: &mut Scenario) -> Result<()> {
    let port = free_port()?;
    sc.install(&sc.spec(json!({ "a": deaf_app(port) })))?;
    sc.start_target()?;
    let unit = sc.unit("a");
    let before = sc.m.n_restarts(&unit)?;
    sc.kill_app("a")?;
    wait_for(
        &format!("NRestarts of {unit} to go up"),
        Duration::from_secs(60),
        || Ok((sc.m.n_restarts(&unit)? > before).then_some(())),
    )?;
    sc.m.wait_active(&unit, Duration::from_secs(60))?;
    let log = journal(sc, &unit)?;
    ensure!(
        log.contains(&format!(
            "{} was killed while running (exit status 137",
            sc.container("a")
        )),
        "the journal does not say why it was restarted:\n{log}"
    );
    let st = status_json(sc, "a")?;
    ensure!(
        st["nRestarts"].as_u64() > Some(before),
        "status --json does not count the restart: {st}"
    );
    sc.notes
        .push(format!("NRestarts {before} -> {}", sc.m.n_restarts(&unit)?));
    Ok(())
}

fn source_path_needs_reload(sc: &mut Scenario) -> Result<()> {
    let port = free_port()?;
    let spec = sc.spec(json!({ "a": deaf_app(port) }));
    sc.install(&spec)?;
    let unit = sc.unit("a");
    let path = format!("/etc/nixarr-units/{}.json", sc.prefix);
    for u in [unit.as_str(), &sc.target()] {
        let source = show(sc, u, "SourcePath")?;
        ensure!(source == path, "{u}: SourcePath={source}, expected {path}");
        ensure!(
            show(sc, u, "NeedDaemonReload")? == "no",
            "{u} needs a reload right after one"
        );
    }
    // An edit, one second later (systemd compares modification times).
    std::thread::sleep(Duration::from_millis(1100));
    let mut edited = spec.clone();
    edited["services"]["a"]["environment"]["FAKE_MARK"] = json!("v2");
    sc.m.write_spec(&sc.prefix, &edited)?;
    ensure!(
        show(sc, &unit, "NeedDaemonReload")? == "yes",
        "{unit}: NeedDaemonReload is not yes after the spec changed"
    );
    let status = sc.m.exec(&["systemctl", "--no-pager", "status", &unit])?;
    let text = harness::output_text(&status);
    ensure!(
        text.contains("changed on disk"),
        "systemctl status does not say the spec changed:\n{text}"
    );
    sc.m.daemon_reload()?;
    ensure!(
        show(sc, &unit, "NeedDaemonReload")? == "no",
        "{unit} still needs a reload after one"
    );

    // Where a spec the generator cannot render is reported (README).
    let broken = format!("{}-broken", sc.prefix);
    sc.m.write_spec(
        &broken,
        &json!({ "version": 1, "services": { "x": { "app": "nope" } } }),
    )?;
    let reloaded = sc.m.daemon_reload();
    sc.m.remove_spec(&broken)?;
    reloaded?;
    sc.m.daemon_reload()?;
    let log = sc.m.ok(&[
        "journalctl",
        "-b",
        "--no-pager",
        "-o",
        "cat",
        "-t",
        "nixarr-units-generator",
    ])?;
    ensure!(
        log.contains(&format!(
            "{broken}.json: services.x.app: unknown app `nope`"
        )),
        "journalctl -b -t nixarr-units-generator does not show the error:\n{log}"
    );
    Ok(())
}

fn status_text_while_waiting(sc: &mut Scenario) -> Result<()> {
    let port = free_port()?;
    let mut a = deaf_app(port);
    a["environment"] = json!({ "FAKE_STYLE": "health", "FAKE_READY_AFTER": "600" });
    sc.install(&sc.spec(json!({ "a": a })))?;
    let unit = sc.unit("a");
    if !has_gate(sc, &unit)? {
        sc.notes
            .push("this unit is gated by --sdnotify=healthy: no health gate to watch".to_owned());
        return Ok(());
    }
    sc.m.systemctl(&["start", "--no-block", &unit])?;
    let text = wait_for(
        &format!("{unit}'s StatusText to report a failed try"),
        Duration::from_secs(30),
        || {
            let t = show(sc, &unit, "StatusText")?;
            Ok(t.contains("HTTP 503").then_some(t))
        },
    )?;
    ensure!(
        text.starts_with("waiting for health: try ") && text.contains("last: HTTP 503"),
        "StatusText is {text:?}"
    );
    ensure!(
        sc.m.active_state(&unit)? == "activating",
        "{unit} is not activating while the gate waits"
    );
    let status = harness::output_text(&sc.m.exec(&["systemctl", "--no-pager", "status", &unit])?);
    ensure!(
        status.contains("Status: \"waiting for health: try"),
        "systemctl status does not show it:\n{status}"
    );
    sc.notes.push(format!("StatusText: {text}"));
    Ok(())
}

fn data_dir_created(sc: &mut Scenario) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // Under the machine's directory: the same path inside the machine and
    // on the host (where dockerd resolves bind mounts).
    let data = sc.m.dir.path().join(format!("data-{}", sc.prefix));
    let data_s = data.to_str().context("temp path is not UTF-8")?.to_owned();
    let port = free_port()?;
    let mut a = deaf_app(port);
    a["volumes"] = json!([{ "host": data_s, "container": "/data" }]);
    let mut spec = sc.spec(json!({ "a": a }));
    spec["paths"] = json!({ "dataDir": data_s });
    spec["defaults"] = json!({ "pgid": 169 });
    sc.install(&spec)?;
    ensure!(!data.exists(), "{data_s} exists before the start");
    sc.start_target()?;
    let m = std::fs::metadata(&data).with_context(|| format!("{data_s} was not created"))?;
    ensure!(
        m.permissions().mode() & 0o7777 == 0o2775 && m.uid() == 0 && m.gid() == 169,
        "{data_s} is {:o} {}:{}, expected 2775 0:169",
        m.permissions().mode() & 0o7777,
        m.uid(),
        m.gid()
    );
    let unit = sc.unit("a");
    sc.m.systemctl(&["stop", &unit])?;
    // An existing tree keeps its owner and mode.
    std::os::unix::fs::chown(&data, Some(1234), Some(1234))?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o710))?;
    sc.m.systemctl(&["start", &unit])?;
    let m = std::fs::metadata(&data)?;
    ensure!(
        m.permissions().mode() & 0o7777 == 0o710 && m.uid() == 1234 && m.gid() == 1234,
        "an existing {data_s} was changed to {:o} {}:{}",
        m.permissions().mode() & 0o7777,
        m.uid(),
        m.gid()
    );
    Ok(())
}

fn stop_while_starting(sc: &mut Scenario) -> Result<()> {
    let port = free_port()?;
    let mut a = deaf_app(port);
    a["environment"]["FAKE_READY_AFTER"] = json!("600");
    sc.install(&sc.spec(json!({ "a": a })))?;
    let unit = sc.unit("a");
    if !has_gate(sc, &unit)? {
        sc.notes
            .push("this unit is gated by --sdnotify=healthy: no health gate to stop".to_owned());
        return Ok(());
    }
    sc.m.systemctl(&["start", "--no-block", &unit])?;
    wait_for(
        &format!("{unit}'s health gate to report a failed try"),
        Duration::from_secs(30),
        || {
            Ok(show(sc, &unit, "StatusText")?
                .contains("HTTP 503")
                .then_some(()))
        },
    )?;
    ensure!(
        sc.m.active_state(&unit)? == "activating",
        "{unit} is not activating while the gate waits"
    );
    let start = Instant::now();
    sc.m.systemctl(&["stop", &unit])?;
    expect_clean_stop(sc, &unit)?;
    let took = start.elapsed().as_secs_f64();
    ensure!(
        took <= GRACE as f64 + SLACK,
        "stopping {unit} while it started took {took:.1}s; expected the grace ({GRACE}s) plus at most {SLACK}s"
    );
    expect_kill_lines(sc, "a", 1)?;
    let left = sc.containers()?;
    ensure!(left.is_empty(), "containers left: {left:?}");
    sc.notes
        .push(format!("stop while starting took {took:.1}s"));
    Ok(())
}
