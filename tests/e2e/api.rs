//! End-to-end tests of `nixarr-units serve` (docs/api.md) started by its
//! rendered `<prefix>-api.socket` on real systemd, with podman and Docker:
//! the routes and their status codes, tokens, traversal attempts and
//! oversized bodies, against a healthy, an unhealthy, a stopped and a
//! failing service. Clients are curl inside the machine (TCP on loopback
//! and the unix socket).
//!
//! Runs as root only (CI does); otherwise prints SKIPPED loudly.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

mod bus;

use crate::harness;
use crate::harness::{Backend, IMAGE, Scenario, ScenarioFn, free_port, wait_for};

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "1 routes, status codes, tokens, traversal, oversized bodies",
        routes,
    ),
    (
        "2 events see a stop, metrics pass promtool, batch in dependency order, logs, load",
        live,
    ),
    (
        "3 one D-Bus connection, other units' signals refresh nothing, logs follow",
        bus::signals,
    ),
    (
        "4 no bus at start: health 200, D-Bus routes 500, then recovers",
        bus::no_bus,
    ),
    (
        "5 polkit grants an unprivileged API its stack's units only",
        bus::polkit,
    ),
];

#[test]
fn podman() {
    harness::run_suite("api end-to-end tests", Backend::Podman, SCENARIOS);
}

#[test]
fn docker() {
    harness::run_suite("api end-to-end tests", Backend::Docker, SCENARIOS);
}

pub(crate) const CONTROL: &str = "control-token-0123456789abcdef";
pub(crate) const READ: &str = "read-token-0123456789abcdef";

pub(crate) fn app(port: u16, body: &str) -> Value {
    json!({
        "image": IMAGE,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "environment": { "FAKE_STYLE": "health" },
        "health": { "http": "/health", "port": 8080, "expectStatus": 200, "expectBody": body },
        "stopTimeout": 10,
        "startTimeout": 120,
    })
}

/// One answer: status, lower-cased header block, body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
    pub(crate) fn expect(&self, status: u16, what: &str) -> Result<&Self> {
        ensure!(
            self.status == status,
            "{what}: expected HTTP {status}, got {}: {}\n{}",
            self.status,
            self.body,
            self.head
        );
        Ok(self)
    }
    fn error_is(&self, status: u16, message: &str, what: &str) -> Result<()> {
        self.expect(status, what)?;
        let v = self.json()?;
        ensure!(
            v["error"] == message,
            "{what}: expected error {message:?}, got {v}"
        );
        Ok(())
    }
}

/// How a request reaches the API.
pub(crate) enum Via<'a> {
    Tcp(u16),
    Unix(&'a str),
}

/// A request with curl inside the machine (`--path-as-is`: no clean-up of
/// `..`; `extra`: more curl arguments).
pub(crate) fn call(
    sc: &Scenario,
    via: &Via,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[&str],
) -> Result<Answer> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut argv = vec![
        "curl",
        "-sS",
        "-i",
        "--path-as-is",
        "--max-time",
        "180",
        "-X",
        method,
    ];
    let url = match via {
        Via::Tcp(port) => format!("http://127.0.0.1:{port}{path}"),
        Via::Unix(sock) => {
            argv.extend(["--unix-socket", sock]);
            format!("http://localhost{path}")
        }
    };
    if let Some(a) = &auth {
        argv.extend(["-H", a]);
    }
    argv.extend_from_slice(extra);
    argv.push(&url);
    let out = sc.m.ok(&argv)?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {out:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok(Answer {
        status,
        head: head.to_lowercase(),
        body: body.to_owned(),
    })
}

/// A POST of the JSON `body` with the control token.
fn post_json(sc: &Scenario, via: &Via, path: &str, body: &str) -> Result<Answer> {
    call(
        sc,
        via,
        "POST",
        path,
        Some(CONTROL),
        &["--data", body, "-H", "Content-Type: application/json"],
    )
}

pub(crate) fn main_pid(sc: &Scenario, svc: &str) -> Result<String> {
    Ok(sc
        .m
        .systemctl(&["show", "-P", "MainPID", &sc.unit(svc)])?
        .trim()
        .to_owned())
}

// Why one long function: every step shares one machine boot and one
// running API; split up, each would repeat the setup.
fn routes(sc: &mut Scenario) -> Result<()> {
    let port = free_port()?;
    let secrets = sc.m.root().join("run/nixarr-e2e-api");
    fs_err::create_dir_all(&secrets)?;
    fs_err::write(secrets.join("control"), format!("{CONTROL}\n"))?;
    fs_err::write(secrets.join("read"), READ)?;
    let sock = format!("/run/nixarr-units/{}-api.sock", sc.prefix);
    let mut broken = app(free_port()?, "Healthy");
    broken["image"] = json!("localhost/nixarr-missing:e2e");
    broken["restart"] = json!("no");
    // `sick` turns unhealthy once started (the start's health gate passes);
    // a probe interval of an hour keeps the engine from killing it first.
    let sick_port = free_port()?;
    let mut sick = app(sick_port, "Healthy");
    sick["health"]["interval"] = json!("1h");
    let mut spec = sc.spec(json!({
        "up": app(free_port()?, "Healthy"),
        "sick": sick,
        "down": app(free_port()?, "Healthy"),
        "broken": broken,
    }));
    spec["api"] = json!({
        "enable": true,
        "listen": [format!("127.0.0.1:{port}")],
        "socket": sock,
        "tokenFile": "/run/nixarr-e2e-api/control",
        "readTokenFile": "/run/nixarr-e2e-api/read",
    });
    sc.install(&spec)?;
    sc.m.systemctl(&["start", &sc.unit("up"), &sc.unit("sick")])?;
    harness::http_get(sick_port, "/ctl/unhealthy")?;
    sc.m.systemctl(&["start", &format!("{}-api.socket", sc.prefix)])?;
    let tcp = Via::Tcp(port);
    let unix = Via::Unix(&sock);

    // /health: no token; the first connection starts the service.
    let h = call(sc, &tcp, "GET", "/health", None, &[])?;
    h.expect(200, "GET /health")?;
    ensure!(h.body == "ok", "GET /health body: {:?}", h.body);

    // Tokens on TCP.
    let a = call(sc, &tcp, "GET", "/containers", None, &[])?;
    a.error_is(
        401,
        "Missing or wrong token: send Authorization: Bearer <token>",
        "no token",
    )?;
    ensure!(
        a.head.contains("www-authenticate: bearer"),
        "401 without WWW-Authenticate: Bearer: {}",
        a.head
    );
    call(
        sc,
        &tcp,
        "GET",
        "/containers",
        Some("wrong-token-0123456789"),
        &[],
    )?
    .expect(401, "wrong token")?;
    let post = call(sc, &tcp, "POST", "/container/down/start", Some(READ), &[])?;
    post.expect(403, "read token on POST")?;
    ensure!(
        sc.m.active_state(&sc.unit("down"))? == "inactive",
        "a 403 started the unit"
    );

    // /containers with the read token (TCP) and with none (unix socket),
    // once the probes have seen `up` healthy and `sick` unhealthy.
    let list = wait_for(
        "up healthy and sick unhealthy in /containers",
        Duration::from_secs(60),
        || {
            let v = call(sc, &tcp, "GET", "/containers", Some(READ), &[])?.json()?;
            let health = |n: &str| {
                v["containers"]
                    .as_array()
                    .and_then(|a| a.iter().find(|r| r["container"] == n))
                    .map(|r| r["health"]["state"].clone())
            };
            Ok((health("up") == Some(json!("healthy"))
                && health("sick") == Some(json!("unhealthy")))
            .then_some(v))
        },
    )?;
    let rows = list["containers"]
        .as_array()
        .context("containers is not an array")?;
    ensure!(rows.len() == 4, "expected 4 containers: {list:#}");
    let via_unix = call(sc, &unix, "GET", "/containers", None, &[])?;
    via_unix.expect(200, "GET /containers on the unix socket without a token")?;

    // A row: the status --json row's keys plus the controller's.
    let status = call(sc, &tcp, "GET", "/container/up/status", Some(READ), &[])?;
    status.expect(200, "GET /container/up/status")?;
    let row = status.json()?;
    ensure!(
        row["container"] == "up" && row["status"] == "running" && row["running"] == true,
        "row of up: {row:#}"
    );
    let report =
        sc.m.ok(&[harness::BIN, "status", "--json", "--no-probe", "up"]);
    let cli: Value = serde_json::from_str(&report?)?;
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut want = keys(&cli["services"][0]);
    want.extend(["container", "status", "running", "restarts"].map(str::to_owned));
    ensure!(
        keys(&row) == want,
        "row keys {:?} differ from status --json's plus the controller's {want:?}",
        keys(&row)
    );
    let sick = call(sc, &tcp, "GET", "/container/sick/status", Some(READ), &[])?.json()?;
    ensure!(
        sick["health"]["state"] == "unhealthy" && sick["health"]["reason"].is_string(),
        "sick: {sick:#}"
    );

    // 409s.
    call(sc, &tcp, "POST", "/container/up/start", Some(CONTROL), &[])?.error_is(
        409,
        "Container already running",
        "start of a running unit",
    )?;
    call(sc, &unix, "POST", "/container/down/stop", None, &[])?.error_is(
        409,
        "Container already stopped",
        "stop of a stopped unit",
    )?;

    // start, restart (a new PID), stop.
    let s = call(
        sc,
        &tcp,
        "POST",
        "/container/down/start?timeout=120",
        Some(CONTROL),
        &[],
    )?;
    s.expect(200, "start down")?;
    ensure!(
        s.json()? == json!({"status": "started", "container": "down"}),
        "start: {}",
        s.body
    );
    ensure!(
        sc.m.active_state(&sc.unit("down"))? == "active",
        "down is not active after 200"
    );
    let before = main_pid(sc, "up")?;
    let r = call(
        sc,
        &tcp,
        "POST",
        "/container/up/restart",
        Some(CONTROL),
        &[],
    )?;
    r.expect(200, "restart up")?;
    ensure!(r.json()?["status"] == "restarted", "restart: {}", r.body);
    let after = main_pid(sc, "up")?;
    ensure!(
        before != after && after != "0",
        "restart kept MainPID {before} (now {after})"
    );
    let st = call(sc, &tcp, "POST", "/container/down/stop", Some(CONTROL), &[])?;
    st.expect(200, "stop down")?;
    ensure!(st.json()?["status"] == "stopped", "stop: {}", st.body);
    ensure!(
        sc.m.active_state(&sc.unit("down"))? == "inactive",
        "down is not inactive after 200"
    );

    // A start that fails: 500 with the job result, the unit's result and
    // the journal.
    let f = call(
        sc,
        &tcp,
        "POST",
        "/container/broken/start",
        Some(CONTROL),
        &[],
    )?;
    f.expect(500, "start of a failing unit")?;
    let v = f.json()?;
    ensure!(
        v["jobResult"] == "failed"
            && v["unitResult"].is_string()
            && v["journal"].as_array().is_some_and(|j| !j.is_empty())
            && v["error"].as_str().is_some_and(|e| e.contains("broken")),
        "failed start: {v:#}"
    );

    // Unknown names, traversal and other units: 404, nothing reached.
    for (method, path, name) in [
        ("GET", "/container/nope/status", "nope"),
        ("GET", "/container/%2e%2e/status", ".."),
        (
            "POST",
            "/container/..%2F..%2Fsystemd-journald/stop",
            "../../systemd-journald",
        ),
        ("POST", "/container/up.service/restart", "up.service"),
        (
            "POST",
            &format!("/container/{}-up.service/stop", sc.prefix),
            &format!("{}-up.service", sc.prefix),
        ),
        (
            "POST",
            &format!("/container/{}-api/stop", sc.prefix),
            &format!("{}-api", sc.prefix),
        ),
        ("POST", "/container/dbus/stop", "dbus"),
    ] {
        call(sc, &tcp, method, path, Some(CONTROL), &[])?.error_is(
            404,
            &format!("Container not found: {name}"),
            &format!("{method} {path}"),
        )?;
    }
    for path in [
        "/container/../../containers",
        "/container/up/../../health/x",
        "/nope",
        "/container/up",
    ] {
        call(sc, &tcp, "GET", path, Some(CONTROL), &[])?.error_is(404, "Not found", path)?;
    }
    ensure!(
        sc.m.active_state("systemd-journald.service")? == "active",
        "journald was reached"
    );
    ensure!(
        sc.m.active_state(&sc.unit("up"))? == "active",
        "up was reached"
    );

    // Wrong method: 405 with Allow.
    let m = call(sc, &tcp, "GET", "/container/up/start", Some(CONTROL), &[])?;
    m.error_is(405, "Method not allowed", "GET of a POST route")?;
    ensure!(
        m.head.contains("allow: post"),
        "405 without Allow: POST: {}",
        m.head
    );
    call(sc, &tcp, "DELETE", "/containers", Some(CONTROL), &[])?.error_is(
        405,
        "Method not allowed",
        "DELETE /containers",
    )?;

    // Bodies over 64 KiB: 413, and the unit is not started.
    fs_err::write(
        sc.m.root().join("tmp/nixarr-e2e-big"),
        vec![b'x'; 70 * 1024],
    )?;
    let big = call(
        sc,
        &tcp,
        "POST",
        "/container/down/start",
        Some(CONTROL),
        &[
            "--data-binary",
            "@/tmp/nixarr-e2e-big",
            "-H",
            "Content-Type: application/json",
        ],
    )?;
    big.expect(413, "a 70 KiB body")?;
    ensure!(
        sc.m.active_state(&sc.unit("down"))? == "inactive",
        "a 413 started the unit"
    );

    // How exposed the service is (docs/api.md; the target is ≤ 2.5).
    let sec = sc.m.exec(&[
        "systemd-analyze",
        "security",
        "--no-pager",
        &format!("{}-api.service", sc.prefix),
    ])?;
    let text = String::from_utf8_lossy(&sec.stdout);
    if let Some(line) = text.lines().find(|l| l.contains("Overall exposure level")) {
        sc.notes
            .push(format!("systemd-analyze security: {}", line.trim()));
    }
    Ok(())
}

/// Install db and web (which depends on db) with the API on a TCP port;
/// its port.
pub(crate) fn db_and_web(sc: &Scenario) -> Result<u16> {
    let mut web = app(free_port()?, "Healthy");
    web["dependsOn"] = json!(["db"]);
    with_api(
        sc,
        json!({ "db": app(free_port()?, "Healthy"), "web": web }),
    )
}

/// Install a stack with the API on a TCP port; its port.
pub(crate) fn with_api(sc: &Scenario, services: Value) -> Result<u16> {
    with_api_as(sc, services, None)
}

/// [`with_api`], the API running as `user` (`api.user`) when given.
fn with_api_as(sc: &Scenario, services: Value, user: Option<&str>) -> Result<u16> {
    let port = free_port()?;
    let secrets = sc.m.root().join("run/nixarr-e2e-api");
    fs_err::create_dir_all(&secrets)?;
    fs_err::write(secrets.join("control"), format!("{CONTROL}\n"))?;
    fs_err::write(secrets.join("read"), READ)?;
    let mut spec = sc.spec(services);
    spec["api"] = json!({
        "enable": true,
        "listen": [format!("127.0.0.1:{port}")],
        "socket": format!("/run/nixarr-units/{}-api.sock", sc.prefix),
        "tokenFile": "/run/nixarr-e2e-api/control",
        "readTokenFile": "/run/nixarr-e2e-api/read",
    });
    if let Some(u) = user {
        spec["api"]["user"] = json!(u);
    }
    sc.install(&spec)?;
    sc.m.systemctl(&["start", &format!("{}-api.socket", sc.prefix)])?;
    Ok(port)
}

fn monotonic(sc: &Scenario, svc: &str) -> Result<u64> {
    let v =
        sc.m.systemctl(&["show", "-P", "ActiveEnterTimestampMonotonic", &sc.unit(svc)])?;
    v.trim()
        .parse()
        .with_context(|| format!("ActiveEnterTimestampMonotonic of {svc}: {v:?}"))
}

// One machine boot and one API for the live routes; the steps build on
// each other's state (what the events see is what the batch did).
fn live(sc: &mut Scenario) -> Result<()> {
    let port = db_and_web(sc)?;
    let tcp = Via::Tcp(port);

    // Batch start, named out of order: systemd starts db before web.
    let b = post_json(
        sc,
        &tcp,
        "/containers/start",
        r#"{"containers": ["web", "db"]}"#,
    )?;
    b.expect(200, "batch start")?;
    ensure!(b.json()?["status"] == "started", "batch start: {}", b.body);
    let (db, web) = (monotonic(sc, "db")?, monotonic(sc, "web")?);
    ensure!(
        db > 0 && db < web,
        "db ({db}) should be active before web ({web})"
    );
    let bad = post_json(sc, &tcp, "/containers/start", r#"{"containers": ["nope"]}"#)?;
    bad.error_is(
        404,
        "Container not found: nope",
        "batch with an unknown name",
    )?;
    post_json(
        sc,
        &tcp,
        "/containers/start",
        r#"{"all": true, "containers": ["db"]}"#,
    )?
    .expect(400, "batch with both all and containers")?;

    // /events sees a stop made outside the API.
    let (mut child, rx) = bus::stream(sc, port, "/events")?;
    std::thread::sleep(Duration::from_secs(1));
    sc.m.systemctl(&["stop", &sc.unit("web")])?;
    let seen = (|| -> Result<String> {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
            let line = rx.recv_timeout(left)?;
            if let Some(data) = line.strip_prefix("data: ") {
                let v: Value = serde_json::from_str(data)?;
                if v["container"] == "web" && v["status"] == "stopped" {
                    return Ok(line);
                }
            }
        }
        anyhow::bail!("no event with web stopped within 20 s")
    })();
    let _ = child.kill();
    let _ = child.wait();
    seen?;

    // /metrics: promtool accepts it; the series are there.
    let m = call(sc, &tcp, "GET", "/metrics", Some(READ), &[])?;
    m.expect(200, "GET /metrics")?;
    for needle in [
        "nixarr_unit_active{service=\"db\"",
        "nixarr_unit_state{service=\"web\"",
        "nixarr_health_status{",
        "nixarr_restarts_total{",
        "nixarr_probe_duration_seconds",
        "nixarr_api_requests_total{",
    ] {
        ensure!(
            m.body.contains(needle),
            "{needle} missing in /metrics:\n{}",
            m.body
        );
    }
    // Memory only where systemd accounts it.
    let rows = call(sc, &tcp, "GET", "/containers", Some(READ), &[])?.json()?;
    if rows["containers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|r| r["memoryBytes"].is_u64()))
    {
        ensure!(
            m.body.contains("nixarr_memory_bytes{"),
            "no memory series:\n{}",
            m.body
        );
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool (Debian's prometheus package)")?;
    promtool
        .stdin
        .take()
        .context("promtool stdin")?
        .write_all(m.body.as_bytes())?;
    let p = promtool.wait_with_output()?;
    ensure!(
        p.status.success(),
        "promtool check metrics failed: {}{}\n{}",
        String::from_utf8_lossy(&p.stdout),
        String::from_utf8_lossy(&p.stderr),
        m.body
    );

    // Logs: the last lines, and a follow that streams until cut off.
    let l = call(
        sc,
        &tcp,
        "GET",
        "/container/db/logs?lines=5",
        Some(READ),
        &[],
    )?;
    l.expect(200, "logs")?;
    let n = l.body.lines().count();
    ensure!(
        (1..=5).contains(&n),
        "logs?lines=5 gave {n} lines:\n{}",
        l.body
    );
    let f = sc.m.exec(&[
        "curl",
        "-sN",
        "--max-time",
        "3",
        "-H",
        &format!("Authorization: Bearer {READ}"),
        &format!("http://127.0.0.1:{port}/container/db/logs?lines=2&follow=1"),
    ])?;
    ensure!(
        f.status.code() == Some(28),
        "follow should still stream after 3 s (curl exit 28), got {:?}",
        f.status
    );
    // The backlog arrived within the 3 s (scenario 3 follows new lines).
    ensure!(
        !f.stdout.is_empty(),
        "logs?lines=2&follow=1 sent nothing within 3 s"
    );
    sc.notes.push(format!(
        "logs follow=1: {} bytes within 3 s",
        f.stdout.len()
    ));

    // A bounded load test: 100 clients for 10 s, no error.
    let wrk = Command::new("wrk")
        .args(["-t2", "-c100", "-d10s", "--timeout", "5s", "-H"])
        .arg(format!("Authorization: Bearer {READ}"))
        .arg(format!("http://127.0.0.1:{port}/containers"))
        .output()
        .context("running wrk (Debian's wrk package)")?;
    let report = String::from_utf8_lossy(&wrk.stdout).into_owned();
    ensure!(
        wrk.status.success()
            && !report.contains("Socket errors")
            && !report.contains("Non-2xx")
            && report.contains("Requests/sec"),
        "wrk saw errors or did not run:\n{report}{}",
        String::from_utf8_lossy(&wrk.stderr)
    );
    if let Some(line) = report.lines().find(|l| l.starts_with("Requests/sec")) {
        sc.notes.push(format!(
            "GET /containers, 100 clients, 10 s: {}",
            line.trim()
        ));
    }

    // Batch stop of all.
    let s = post_json(sc, &tcp, "/containers/stop", r#"{"all": true}"#)?;
    s.expect(200, "batch stop all")?;
    ensure!(
        sc.m.active_state(&sc.unit("db"))? == "inactive",
        "db still running"
    );
    Ok(())
}
