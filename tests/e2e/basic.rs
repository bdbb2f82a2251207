//! End-to-end scenarios on real systemd (PID 1 in systemd-nspawn), with
//! nixarr-units installed as a systemd generator, on podman and on Docker.
//! One machine per backend, booted once and shared by its scenarios; each
//! scenario has its own prefix and cleans up after itself. See harness/.
//!
//! Runs as root only (CI does); otherwise prints SKIPPED loudly.

use std::time::Duration;

use crate::harness;
use crate::harness::{Backend, IMAGE, Scenario, ScenarioFn, free_port, http_get, wait_for};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    ("1 dependency chain starts from the target", chain_starts),
    (
        "2 dependent starts only after its dependency is healthy",
        waits_for_healthy,
    ),
    ("3 killed app is restarted by systemd", restarts_killed_app),
    ("4 unhealthy app is restarted", restarts_unhealthy_app),
    (
        "5 stopping the target stops everything cleanly",
        stop_target,
    ),
    (
        "6 reload restarts only the changed service",
        reload_changed_only,
    ),
    ("7 hostile values arrive byte-for-byte", hostile_values),
    ("8 missing image fails clearly, alone", missing_image),
    (
        "9 chain of apps ready after 2 s starts in seconds, not health intervals",
        chain_of_slow_apps_starts_promptly,
    ),
];

#[test]
fn podman() {
    harness::run_suite("end-to-end tests", Backend::Podman, SCENARIOS);
}

/// The same scenarios on podman 5 (the trixie machine, what NixOS ships):
/// `--sdnotify=healthy` and podman's start-up health checks instead of the
/// `wait-healthy` gate, `network create --ignore`.
#[test]
fn podman5() {
    harness::run_suite_podman5("end-to-end tests", SCENARIOS);
}

#[test]
fn docker() {
    harness::run_suite("end-to-end tests", Backend::Docker, SCENARIOS);
}

// ---------------------------------------------------------------- helpers

/// The probe styles of the catalog, as the fake app answers them.
#[derive(Clone, Copy)]
enum Style {
    /// *arr apps: GET /ping → {"status":"OK"}; checked by a command inside.
    Arr,
    /// Jellyfin: GET /health → Healthy; probed from the host.
    Health,
    /// Transmission: GET /transmission/rpc → 409; probed from the host.
    Transmission,
    /// A plain TCP listener.
    Tcp,
}

fn app(style: Style, port: u16) -> Value {
    let (name, health) = match style {
        Style::Arr => (
            "arr",
            json!({ "cmd": "wget -q -O /dev/null http://127.0.0.1:8080/ping",
                    "interval": "2s", "retries": 3, "startPeriod": "60s" }),
        ),
        Style::Health => (
            "health",
            json!({ "http": "/health", "port": 8080, "expectStatus": 200, "expectBody": "Healthy" }),
        ),
        Style::Transmission => (
            "transmission",
            json!({ "http": "/transmission/rpc", "port": 8080, "expectStatus": 409 }),
        ),
        Style::Tcp => ("tcp", json!({ "tcp": true, "port": 8080 })),
    };
    json!({
        "image": IMAGE,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "environment": { "FAKE_STYLE": name },
        "health": health,
        "stopTimeout": 10,
        "startTimeout": 120,
    })
}

fn set(v: &mut Value, path: &[&str], value: Value) {
    let mut cur = v;
    for k in &path[..path.len() - 1] {
        cur = &mut cur[*k];
    }
    cur[path[path.len() - 1]] = value;
}

fn get_ok(port: u16, path: &str, status: u16, body: &str) -> Result<()> {
    let (s, head, b) = http_get(port, path)?;
    let b = String::from_utf8_lossy(&b);
    ensure!(
        s == status && b.contains(body),
        "GET {path} on port {port}: expected {status} with {body:?}, got {head:?} {b:?}"
    );
    Ok(())
}

fn wait_answer(port: u16, path: &str, status: u16, body: &str) -> Result<()> {
    wait_for(
        &format!("GET {path} on port {port} to answer {status}"),
        Duration::from_secs(60),
        || Ok(get_ok(port, path, status, body).ok()),
    )
}

fn manifest_hash(sc: &Scenario, svc: &str) -> Result<String> {
    let stack = sc.stack()?;
    let service = stack
        .services
        .get(svc)
        .with_context(|| format!("no service `{svc}` in the manifest"))?;
    Ok(service.config_hash.clone())
}

// -------------------------------------------------------------- scenarios

fn chain_starts(sc: &mut Scenario) -> Result<()> {
    let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
    let mut a = app(Style::Arr, ports[0]);
    let mut b = app(Style::Health, ports[1]);
    let mut c = app(Style::Transmission, ports[2]);
    let d = app(Style::Tcp, ports[3]);
    set(&mut a, &["environment", "FAKE_READY_AFTER"], json!("1"));
    set(&mut b, &["dependsOn"], json!(["a"]));
    set(&mut c, &["dependsOn"], json!(["b"]));
    sc.install(&sc.spec(json!({ "a": a, "b": b, "c": c, "d": d })))?;
    sc.start_target()?;
    for svc in ["a", "b", "c", "d"] {
        let unit = sc.unit(svc);
        let state = sc.m.active_state(&unit)?;
        ensure!(
            state == "active",
            "{unit} is {state} after starting the target"
        );
    }
    ensure!(
        sc.m.active_state(&sc.target())? == "active",
        "target not active"
    );
    if sc.m.backend == Backend::Podman {
        // The container's processes sit in the unit's cgroup (--cgroups=split).
        let status = sc.m.systemctl(&["status", "-l", &sc.unit("a")])?;
        ensure!(
            status.contains("nc -ll -p 8080") && status.contains("/app/run"),
            "systemctl status does not show the container's processes:\n{status}"
        );
    }
    get_ok(ports[0], "/ping", 200, r#"{"status":"OK"}"#)?;
    get_ok(ports[1], "/health", 200, "Healthy")?;
    let (s, head, _) = http_get(ports[2], "/transmission/rpc")?;
    ensure!(
        s == 409 && head.contains("X-Transmission-Session-Id"),
        "transmission answered {head:?}"
    );
    std::net::TcpStream::connect(("127.0.0.1", ports[3])).context("tcp app port")?;
    Ok(())
}

fn waits_for_healthy(sc: &mut Scenario) -> Result<()> {
    let (pa, pb) = (free_port()?, free_port()?);
    let mut a = app(Style::Arr, pa);
    set(&mut a, &["environment", "FAKE_READY_AFTER"], json!("5"));
    let mut b = app(Style::Health, pb);
    set(&mut b, &["dependsOn"], json!(["a"]));
    sc.install(&sc.spec(json!({ "a": a, "b": b })))?;
    sc.start_target()?;
    let (ua, ub) = (sc.unit("a"), sc.unit("b"));
    let a_started = sc.m.timestamp(&ua, "Service", "ExecMainStartTimestamp")?;
    let a_active = sc.m.timestamp(&ua, "Unit", "ActiveEnterTimestamp")?;
    let b_started = sc.m.timestamp(&ub, "Unit", "InactiveExitTimestamp")?;
    let gate = (a_active.saturating_sub(a_started)) as f64 / 1e6;
    sc.notes.push(format!(
        "a started, became healthy {gate:.1}s later; b left inactive {:.1}s after a was healthy",
        (b_started as f64 - a_active as f64) / 1e6
    ));
    ensure!(
        gate >= 4.0,
        "a became active {gate:.1}s after its container started, before it could be healthy (5s)"
    );
    ensure!(
        b_started >= a_active,
        "b started ({b_started}) before a was healthy ({a_active})"
    );
    if sc.m.trixie {
        // podman 5: podman itself holds the start until healthy.
        let unit = sc.m.systemctl(&["cat", &ua])?;
        ensure!(
            unit.contains("--sdnotify=healthy") && !unit.contains("wait-healthy"),
            "podman 5 should gate with --sdnotify=healthy, not wait-healthy:\n{unit}"
        );
    } else {
        let journal = sc.m.ok(&["journalctl", "--no-pager", "-u", &ua])?;
        ensure!(
            journal.contains("is healthy after"),
            "the gate did not log that a became healthy:\n{journal}"
        );
    }
    Ok(())
}

/// Apps that answer 2 s after start, with the catalog's 30 s health
/// interval: each level must cost about its app's start-up, not a health
/// interval. Before podman 5 got start-up health checks, podman ran the
/// first check at once and the next 30 s later: a active after 31 s, both
/// after 62 s. A correctness test of the start-up health path, not a timed
/// benchmark (benches/startup-bench.sh measures): the bound is generous but
/// far below what a 30 s interval allows.
fn chain_of_slow_apps_starts_promptly(sc: &mut Scenario) -> Result<()> {
    let (pa, pb) = (free_port()?, free_port()?);
    let slow = |port: u16| {
        let mut v = app(Style::Arr, port);
        set(
            &mut v,
            &["health"],
            json!({ "cmd": "wget -q -O /dev/null http://127.0.0.1:8080/ping",
                    "startPeriod": "60s" }),
        );
        set(&mut v, &["environment", "FAKE_READY_AFTER"], json!("2"));
        v
    };
    let a = slow(pa);
    let mut b = slow(pb);
    set(&mut b, &["dependsOn"], json!(["a"]));
    sc.install(&sc.spec(json!({ "a": a, "b": b })))?;
    let unit = sc.m.systemctl(&["cat", &sc.unit("a")])?;
    ensure!(
        unit.contains("--health-interval=30s"),
        "the scenario needs the 30 s default interval:\n{unit}"
    );
    let start = std::time::Instant::now();
    sc.start_target()?;
    let took = start.elapsed().as_secs_f64();
    let (ua, ub) = (sc.unit("a"), sc.unit("b"));
    let mut levels = Vec::new();
    for u in [&ua, &ub] {
        ensure!(sc.m.active_state(u)? == "active", "{u} is not active");
        let started = sc.m.timestamp(u, "Service", "ExecMainStartTimestamp")?;
        let active = sc.m.timestamp(u, "Unit", "ActiveEnterTimestamp")?;
        levels.push(active.saturating_sub(started) as f64 / 1e6);
    }
    sc.notes.push(format!(
        "systemctl start of the two-level chain took {took:.1}s (critical path 4s); \
         a healthy {:.1}s after its start, b {:.1}s",
        levels[0], levels[1]
    ));
    ensure!(
        levels.iter().all(|l| *l >= 1.5),
        "a unit became active before its app could answer (levels {levels:?})"
    );
    ensure!(
        took < 15.0,
        "starting a two-level chain of apps ready after 2 s took {took:.1}s: a level costs \
         a health interval, not the app's start-up"
    );
    Ok(())
}

fn restarts_killed_app(sc: &mut Scenario) -> Result<()> {
    let port = free_port()?;
    let mut a = app(Style::Arr, port);
    set(
        &mut a,
        &["health"],
        json!({ "http": "/ping", "port": 8080, "expectBody": "OK" }),
    );
    sc.install(&sc.spec(json!({ "a": a })))?;
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
    wait_answer(port, "/ping", 200, "OK")?;
    sc.notes
        .push(format!("NRestarts {before} -> {}", sc.m.n_restarts(&unit)?));
    Ok(())
}

fn restarts_unhealthy_app(sc: &mut Scenario) -> Result<()> {
    let port = free_port()?;
    let mut a = app(Style::Arr, port);
    set(
        &mut a,
        &["health"],
        json!({ "cmd": "wget -q -O /dev/null http://127.0.0.1:8080/ping",
                "interval": "1s", "retries": 2, "startPeriod": "5s", "timeout": "2s" }),
    );
    sc.install(&sc.spec(json!({ "a": a })))?;
    sc.start_target()?;
    let unit = sc.unit("a");
    let before = sc.m.n_restarts(&unit)?;
    get_ok(port, "/ctl/unhealthy", 200, "done")?;
    match sc.m.backend {
        Backend::Podman => {
            wait_for(
                &format!("{unit} to be restarted after turning unhealthy"),
                Duration::from_secs(90),
                || Ok((sc.m.n_restarts(&unit)? > before).then_some(())),
            )?;
            sc.m.wait_active(&unit, Duration::from_secs(60))?;
            wait_answer(port, "/ping", 200, "OK")?;
        }
        Backend::Docker => {
            // Docker has no on-failure action: the stack's health watchdog
            // (a timer) restarts the unit. A restart job does not count in
            // NRestarts, so watch the unit's activation time instead.
            const UNIT_IFACE: &str = "Unit";
            let entered = sc.m.timestamp(&unit, UNIT_IFACE, "ActiveEnterTimestamp")?;
            wait_for(
                &format!("the health watchdog to restart {unit}"),
                Duration::from_secs(90),
                || {
                    let now = sc.m.timestamp(&unit, UNIT_IFACE, "ActiveEnterTimestamp")?;
                    Ok((now > entered).then_some(()))
                },
            )?;
            sc.m.wait_active(&unit, Duration::from_secs(60))?;
            wait_answer(port, "/ping", 200, "OK")?;
            let log = sc.m.ok(&[
                "journalctl",
                "--no-pager",
                "-o",
                "cat",
                "-u",
                &sc.names()
                    .helper_unit(&nixarr_units::render::HEALTH, "service"),
            ])?;
            ensure!(
                log.contains(&format!(
                    "a: unhealthy (docker reports the container unhealthy); restarting {unit}"
                )),
                "the watchdog did not log the restart:\n{log}"
            );
            sc.notes
                .push("restarted by the nixarr-health watchdog".to_owned());
        }
    }
    Ok(())
}

fn stop_target(sc: &mut Scenario) -> Result<()> {
    let (pa, pb) = (free_port()?, free_port()?);
    let a = app(Style::Arr, pa);
    let mut b = app(Style::Health, pb);
    set(&mut b, &["dependsOn"], json!(["a"]));
    sc.install(&sc.spec(json!({ "a": a, "b": b })))?;
    sc.start_target()?;
    ensure!(sc.containers()?.len() == 2, "expected two containers");
    sc.m.systemctl(&["stop", &sc.target()])?;
    // `systemctl stop` waits for the target's own job only; the services
    // get their stop jobs through PartOf= and finish them right after.
    let network = sc.names().network_unit();
    for unit in [sc.unit("a"), sc.unit("b"), network, sc.target()] {
        let state = wait_for(&format!("{unit} to stop"), Duration::from_secs(60), || {
            let active = sc.m.active_state(&unit)?;
            Ok((active != "deactivating" && active != "active").then_some(active))
        })?;
        let sub = sc.m.sub_state(&unit)?;
        ensure!(
            state == "inactive" && sub == "dead",
            "{unit} is {state} ({sub}) after stopping the target, not inactive (dead)"
        );
    }
    let left = sc.containers()?;
    ensure!(left.is_empty(), "managed containers left: {left:?}");
    let all = sc.m.managed_containers()?;
    ensure!(
        all.is_empty(),
        "ps -a --filter label=io.nixarr.managed=true is not empty: {all:?}"
    );
    Ok(())
}

fn reload_changed_only(sc: &mut Scenario) -> Result<()> {
    let (pa, pb) = (free_port()?, free_port()?);
    let mut a = app(Style::Arr, pa);
    let b = app(Style::Health, pb);
    set(&mut a, &["environment", "FAKE_MARK"], json!("v1"));
    let spec = sc.spec(json!({ "a": a.clone(), "b": b.clone() }));
    sc.install(&spec)?;
    sc.start_target()?;
    let (ua, ub) = (sc.unit("a"), sc.unit("b"));
    let old_hash = sc.label("a", "io.nixarr.config-hash")?;
    ensure!(
        old_hash == manifest_hash(sc, "a")?,
        "label and manifest disagree at start"
    );
    let b_pid = sc.m.unit_property(&ub, "Service", "ExecMainPID")?;
    let b_hash = sc.label("b", "io.nixarr.config-hash")?;

    set(&mut a, &["environment", "FAKE_MARK"], json!("v2"));
    sc.m.write_spec(&sc.prefix, &sc.spec(json!({ "a": a, "b": b })))?;
    let out = sc.m.ok(&[harness::BIN, "reload"])?;
    sc.notes.push(format!(
        "reload printed: {}",
        out.lines()
            .filter(|l| l.contains(&sc.prefix))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    ensure!(
        out.contains(&format!("{ua}: restarted")),
        "reload did not restart {ua}:\n{out}"
    );
    ensure!(
        out.contains(&format!("{ub}: unchanged")),
        "reload did not leave {ub} alone:\n{out}"
    );
    sc.m.wait_active(&ua, Duration::from_secs(60))?;
    let new_hash = sc.label("a", "io.nixarr.config-hash")?;
    ensure!(new_hash != old_hash, "config hash label did not change");
    ensure!(
        new_hash == manifest_hash(sc, "a")?,
        "new label {new_hash} is not the manifest's hash"
    );
    let (_, _, environ) = http_get(pa, "/environ")?;
    let env = harness::parse_environ(&environ);
    ensure!(
        env.get("FAKE_MARK").map(String::as_str) == Some("v2"),
        "a runs without its new config: FAKE_MARK={:?}",
        env.get("FAKE_MARK")
    );
    ensure!(
        sc.m.unit_property(&ub, "Service", "ExecMainPID")? == b_pid,
        "{ub} was restarted"
    );
    ensure!(
        sc.label("b", "io.nixarr.config-hash")? == b_hash,
        "b's hash changed"
    );
    // A second reload has nothing to do.
    let again = sc.m.ok(&[harness::BIN, "reload"])?;
    ensure!(
        again.contains(&format!("{ua}: unchanged")),
        "second reload:\n{again}"
    );
    Ok(())
}

fn hostile() -> Vec<&'static str> {
    vec![
        "two words",
        "  padded  ",
        r#"double "quoted""#,
        "single 'quoted'",
        "100% %n %i %%",
        "$HOME and ${X} and $$",
        r"back\slash \\ \n \t",
        "semi;colon ; ;",
        ";",
        "#not a comment",
        "ünïcødé ✓ 日本",
        "-leading-dash",
        "--env=FAKE_INJECTED=1",
        "'",
        "\"",
        "trailing backslash\\",
        "",
    ]
}

fn hostile_values(sc: &mut Scenario) -> Result<()> {
    let port = free_port()?;
    let mut a = app(Style::Arr, port);
    let values = hostile();
    let mut env = serde_json::Map::new();
    let mut labels = serde_json::Map::new();
    env.insert("FAKE_STYLE".into(), json!("arr"));
    for (i, v) in values.iter().enumerate() {
        env.insert(format!("HOSTILE_{i}"), json!(v));
        labels.insert(format!("org.example.hostile-{i}"), json!(v));
    }
    set(&mut a, &["environment"], Value::Object(env));
    set(&mut a, &["labels"], Value::Object(labels));
    set(&mut a, &["cmd"], json!(values));
    sc.install(&sc.spec(json!({ "a": a })))?;
    sc.start_target()?;

    let (_, _, environ) = http_get(port, "/environ")?;
    let got = harness::parse_environ(&environ);
    let mut bad = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let k = format!("HOSTILE_{i}");
        if got.get(&k).map(String::as_str) != Some(*v) {
            bad.push(format!("env {k}: sent {v:?}, got {:?}", got.get(&k)));
        }
    }
    if got.contains_key("FAKE_INJECTED") {
        bad.push("an argument became an --env flag".to_owned());
    }
    let (_, _, cmdline) = http_get(port, "/cmdline")?;
    let mut argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // /proc/PID/cmdline ends with a NUL: drop the empty piece after it.
    if argv.last().is_some_and(String::is_empty) {
        argv.pop();
    }
    // argv[0..2] = /bin/sh /app/run (the entrypoint's shebang).
    let args: Vec<&str> = argv.iter().skip(2).map(String::as_str).collect();
    if args != values {
        bad.push(format!("cmd: sent {values:?}, got {args:?}"));
    }
    let json_labels = sc.m.engine(&[
        "inspect",
        "--type=container",
        "--format={{json .Config.Labels}}",
        &sc.container("a"),
    ])?;
    let got_labels: std::collections::BTreeMap<String, String> =
        serde_json::from_str(json_labels.trim()).context("labels JSON")?;
    for (i, v) in values.iter().enumerate() {
        let k = format!("org.example.hostile-{i}");
        if got_labels.get(&k).map(String::as_str) != Some(*v) {
            bad.push(format!(
                "label {k}: sent {v:?}, got {:?}",
                got_labels.get(&k)
            ));
        }
    }
    if !bad.is_empty() {
        bail!("values changed on the way:\n{}", bad.join("\n"));
    }
    Ok(())
}

fn missing_image(sc: &mut Scenario) -> Result<()> {
    let port = free_port()?;
    let ok = app(Style::Health, port);
    let mut ghost = app(Style::Health, free_port()?);
    set(
        &mut ghost,
        &["image"],
        json!("localhost/nixarr-no-such-image:e2e"),
    );
    sc.install(&sc.spec(json!({ "ok": ok, "ghost": ghost })))?;
    // The target only wants its services: starting it succeeds.
    sc.start_target()?;
    let unit = sc.unit("ghost");
    wait_for(&format!("{unit} to fail"), Duration::from_secs(60), || {
        let result = sc.m.unit_property(&unit, "Service", "Result")?;
        Ok((result != "success").then_some(()))
    })?;
    // The journal lines in `systemctl status` may lag a moment behind.
    let status = wait_for(
        &format!("systemctl status {unit} to give the reason"),
        Duration::from_secs(30),
        || {
            let out =
                sc.m.exec(&["systemctl", "--no-pager", "-l", "-n", "30", "status", &unit])?;
            let status = String::from_utf8_lossy(&out.stdout).into_owned();
            // An error line naming the image's registry (podman: "Error:
            // initializing source docker://localhost/…"; docker: "Error
            // response from daemon: Get \"http://localhost/v2/\"").
            let reason_shown = status
                .lines()
                .any(|l| l.contains("Error") && l.contains("localhost"));
            Ok(reason_shown.then_some(status))
        },
    )?;
    let reason = status
        .lines()
        .rfind(|l| l.contains("Error") && l.contains("localhost"))
        .unwrap_or("")
        .trim()
        .to_owned();
    sc.notes.push(format!("status says: {reason}"));
    ensure!(
        sc.m.active_state(&sc.unit("ok"))? == "active",
        "the healthy service went down with the broken one"
    );
    ensure!(
        sc.m.active_state(&sc.target())? == "active",
        "the target went down"
    );
    get_ok(port, "/health", 200, "Healthy")?;
    Ok(())
}
