//! End-to-end tests of the commands that look at and steer running services
//! (`status`, `start`/`stop`/`restart`, `--profile`, `logs`, `vpn
//! status|start|stop`) against real
//! systemd (PID 1 in systemd-nspawn) over real D-Bus. One machine per
//! backend, shared by its scenarios (see harness/); podman runs every
//! scenario, Docker all but `logs` and `vpn status` (which do not depend on
//! the engine), podman 5 all but the operator ones and the bus limit's.
//!
//! The binary runs either on the host, reaching the machine's system bus
//! with `--bus-address` and reading the generator's manifest through
//! /proc/PID1/root, or inside the machine through nsenter (where journalctl,
//! the engine's own health view and unprivileged users are as on a real
//! host).
//!
//! Runs as root only (CI does); otherwise prints SKIPPED loudly.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness;
use crate::harness::{
    BIN, Backend, IMAGE, MACHINE_BIN_DIR, Machine, Run, Scenario, ScenarioFn, free_port, http_get,
    wait_for,
};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

const PODMAN_SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "1 rows for active, failed, inactive, activating, not-found; JSON schema; exit statuses",
        states,
    ),
    ("2 restart count goes up after a crash", restart_count),
    ("3 unhealthy probe, --no-probe, engine health", probes),
    (
        "4 start/stop/restart results, failing start, stop --all, unprivileged",
        jobs,
    ),
    ("5 logs -n 5 prints the unit's journal", logs),
    ("6 vpn status: state, health, 401 and public IP", vpn),
    ("7 --watch shows a stop within seconds", watch),
    (
        "8 operator: --profile selects the profile's units; diff names what would restart",
        profiles,
    ),
    (
        "9 operator: vpn stop stops the bound services, vpn start brings them back",
        vpn_switch,
    ),
    (
        "10 bus limit: status of 60 services gives every row its MainPID, memory and restarts",
        many_services,
    ),
];

const DOCKER_SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "1 rows for active, failed, inactive, activating, not-found; JSON schema; exit statuses",
        states,
    ),
    ("2 restart count goes up after a crash", restart_count),
    ("3 unhealthy probe, --no-probe, engine health", probes),
    (
        "4 start/stop/restart results, failing start, stop --all, unprivileged",
        jobs,
    ),
    ("7 --watch shows a stop within seconds", watch),
    (
        "8 operator: --profile selects the profile's units; diff names what would restart",
        profiles,
    ),
    (
        "9 operator: vpn stop stops the bound services, vpn start brings them back",
        vpn_switch,
    ),
];

#[test]
fn podman() {
    harness::run_suite("status end-to-end tests", Backend::Podman, PODMAN_SCENARIOS);
}

/// On podman 5 (the trixie machine), where the engine's own health gate
/// (`--sdnotify=healthy`) replaces `wait-healthy`.
#[test]
fn podman5() {
    // Profiles and `vpn start|stop` are systemd jobs, the same on every
    // podman: podman 4 and Docker run them. The bus limit is dbus's, not
    // the engine's: podman 4 alone runs that one.
    let scenarios: Vec<(&str, ScenarioFn)> = PODMAN_SCENARIOS
        .iter()
        .filter(|(name, _)| !name.contains("operator:") && !name.contains("bus limit:"))
        .copied()
        .collect();
    harness::run_suite_podman5("status end-to-end tests", &scenarios);
}

#[test]
fn docker() {
    harness::run_suite("status end-to-end tests", Backend::Docker, DOCKER_SCENARIOS);
}

// ---------------------------------------------------------------- helpers

/// Run the binary on the host against the machine's bus and a manifest
/// (the generator's unless given).
fn on_host(m: &Machine, args: &[&str], manifest: Option<&Path>) -> Result<Run> {
    let manifest = manifest
        .map(Path::to_path_buf)
        .unwrap_or_else(|| m.manifest_path());
    let out = Command::new(BIN)
        .args(args)
        .arg("--manifest")
        .arg(&manifest)
        .arg("--bus-address")
        .arg(m.bus_address())
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running nixarr-units {args:?} on the host"))?;
    Ok(Run::from(out))
}

/// The Jellyfin probe style, probed from the host.
fn app(port: u16) -> Value {
    harness::probed_app(port, 10)
}

/// An *arr-style app: its probe is a command the engine runs inside.
fn arr_app(port: u16) -> Value {
    json!({
        "image": IMAGE,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "environment": { "FAKE_STYLE": "arr" },
        "health": { "cmd": "wget -q -O /dev/null http://127.0.0.1:8080/ping",
                    "interval": "2s", "retries": 3, "startPeriod": "60s" },
        "stopTimeout": 10,
        "startTimeout": 120,
    })
}

/// An app whose image does not exist: its start fails.
fn broken_app(port: u16) -> Value {
    let mut v = app(port);
    v["image"] = json!("localhost/nixarr-missing:e2e");
    v["restart"] = json!("no");
    v
}

/// The row of `service` in a `status --json` report.
fn row<'a>(report: &'a Value, service: &str) -> Result<&'a Value> {
    report["services"]
        .as_array()
        .context("no services array")?
        .iter()
        .find(|r| r["service"] == service)
        .with_context(|| format!("no row for {service} in {report:#}"))
}

fn status_json(m: &Machine, args: &[&str], manifest: Option<&Path>) -> Result<(i32, Value)> {
    let mut a = vec!["status", "--json"];
    a.extend_from_slice(args);
    let r = on_host(m, &a, manifest)?;
    ensure!(
        r.code == 0 || r.code == 1,
        "status exited {}: {}",
        r.code,
        r.stderr
    );
    Ok((r.code, r.json()?))
}

fn check_row(r: &Value, active: &str, sub: Option<&str>, health: &str) -> Result<()> {
    ensure!(
        r["activeState"] == active
            && sub.is_none_or(|s| r["subState"] == s)
            && r["health"]["state"] == health,
        "expected {active} ({}) with health {health}, got {r:#}",
        sub.unwrap_or("any")
    );
    Ok(())
}

// ------------------------------------------------------- the JSON schema

/// (key path, type) of every row of the schema tables in docs/status.md:
/// lines like ``| `services[].health.state` | string | … |``.
fn documented_schema() -> Result<Vec<(String, String)>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status.md");
    let doc = fs_err::read_to_string(path)?;
    let mut keys = Vec::new();
    for line in doc.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((key, rest)) = rest.split_once('`') else {
            continue;
        };
        let ty = rest
            .trim_start_matches([' ', '|'])
            .split('|')
            .next()
            .unwrap_or("")
            .trim();
        keys.push((key.to_owned(), ty.to_owned()));
    }
    ensure!(keys.len() >= 10, "docs/status.md documents only {keys:?}");
    Ok(keys)
}

fn type_ok(v: &Value, ty: &str) -> Result<bool> {
    if let Some(t) = ty.strip_suffix(" or null") {
        return Ok(v.is_null() || type_ok(v, t)?);
    }
    Ok(match ty {
        "integer" => v.is_u64(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array of strings" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        "array of objects" => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        other => bail!("docs/status.md uses a type this test does not know: {other:?}"),
    })
}

/// Every documented key is present with its documented type, and nothing
/// undocumented is there.
fn check_schema(report: &Value) -> Result<()> {
    let schema = documented_schema()?;
    let rows = report["services"]
        .as_array()
        .context("services is not an array")?;
    ensure!(!rows.is_empty(), "no rows to check the schema against");
    let mut seen = Vec::new();
    for (key, ty) in &schema {
        let (roots, rel): (Vec<&Value>, &str) = match key.strip_prefix("services[].") {
            Some(rel) => (rows.iter().collect(), rel),
            None => (vec![report], key.as_str()),
        };
        for root in roots {
            let mut v = root;
            for seg in rel.split('.') {
                v = v
                    .get(seg)
                    .with_context(|| format!("documented key `{key}` missing in {root:#}"))?;
            }
            ensure!(
                type_ok(v, ty)?,
                "`{key}` should be {ty}, is {v} in {root:#}"
            );
        }
        seen.push(key.clone());
    }
    // The other direction: no key the documentation does not mention.
    fn walk(v: &Value, prefix: &str, out: &mut Vec<String>) {
        if let Some(o) = v.as_object() {
            for (k, child) in o {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if k == "services" && prefix.is_empty() {
                    out.push(p.clone());
                    for r in child.as_array().into_iter().flatten() {
                        walk(r, "services[]", out);
                    }
                } else {
                    out.push(p.clone());
                    walk(child, &p, out);
                }
            }
        }
    }
    let mut present = Vec::new();
    walk(report, "", &mut present);
    for k in present {
        ensure!(
            seen.contains(&k),
            "`{k}` is in the output but not documented in docs/status.md"
        );
    }
    Ok(())
}

// -------------------------------------------------------------- scenarios

fn states(sc: &mut Scenario) -> Result<()> {
    let p_up = free_port()?;
    let mut slow = app(free_port()?);
    slow["environment"]["FAKE_READY_AFTER"] = json!("600");
    slow["startTimeout"] = json!(900);
    sc.install(&sc.spec(json!({
        "up": app(p_up),
        "down": app(free_port()?),
        "broken": broken_app(free_port()?),
        "slow": slow,
    })))?;
    sc.m.systemctl(&["start", &sc.unit("up")])?;
    sc.m.systemctl(&["start", "--no-block", &sc.unit("slow"), &sc.unit("broken")])?;
    let broken = sc.unit("broken");
    wait_for(
        &format!("{broken} to fail"),
        Duration::from_secs(60),
        || Ok((sc.m.active_state(&broken)? == "failed").then_some(())),
    )?;
    let slow_unit = sc.unit("slow");
    wait_for(
        &format!("{slow_unit} to be activating"),
        Duration::from_secs(60),
        || Ok((sc.m.active_state(&slow_unit)? == "activating").then_some(())),
    )?;

    // A manifest entry whose unit does not exist.
    let edited = sc.m.dir.path().join(format!("{}-manifest.json", sc.prefix));
    let (unit, container) = (sc.unit("ghost"), sc.container("ghost"));
    let mut found = false;
    sc.write_edited_manifest(&edited, |stack| {
        if let Some(down) = stack.services.get("down") {
            let mut ghost = down.clone();
            ghost.unit = unit;
            ghost.container = container;
            stack.services.insert("ghost".to_owned(), ghost);
            found = true;
        }
    })?;
    ensure!(found, "no service `down` in the manifest");

    let started = Instant::now();
    let (code, report) = status_json(sc.m, &[], Some(&edited))?;
    let took = started.elapsed();
    ensure!(code == 1, "status with failed units exited {code}");
    ensure!(report["ok"] == false, "ok should be false: {report:#}");
    ensure!(report["version"] == 1, "schema version: {report:#}");

    let up = row(&report, "up")?;
    check_row(up, "active", Some("running"), "healthy")?;
    ensure!(
        up["loadState"] == "loaded"
            && up["unit"] == sc.unit("up").as_str()
            && up["stack"] == sc.prefix.as_str()
            && up["nRestarts"] == 0
            && up["mainPid"].as_u64().is_some_and(|p| p > 1)
            && up["health"]["reason"].is_null()
            && up["result"] == "success"
            && up["ports"] == json!([format!("127.0.0.1:{p_up}/tcp")])
            && up["since"].as_str().is_some_and(|s| s.ends_with('Z')),
        "row of an active service: {up:#}"
    );
    let down = row(&report, "down")?;
    check_row(down, "inactive", Some("dead"), "unknown")?;
    ensure!(
        down["health"]["reason"] == "unit inactive" && down["mainPid"].is_null(),
        "row of a stopped service: {down:#}"
    );
    let br = row(&report, "broken")?;
    check_row(br, "failed", Some("failed"), "unknown")?;
    ensure!(
        br["result"].as_str().is_some_and(|r| r != "success")
            && br["health"]["reason"] == "unit failed",
        "row of a failed service: {br:#}"
    );
    let sl = row(&report, "slow")?;
    check_row(sl, "activating", None, "starting")?;
    ensure!(
        sl["loadState"] == "loaded",
        "row of an activating service: {sl:#}"
    );
    let gh = row(&report, "ghost")?;
    ensure!(
        gh["loadState"] == "not-found"
            && gh["activeState"] == "inactive"
            && gh["health"]["state"] == "unknown"
            && gh["health"]["reason"] == "unit not-found"
            && gh["nRestarts"].is_null(),
        "row of a unit that does not exist: {gh:#}"
    );
    check_schema(&report)?;
    sc.notes.push(format!(
        "broken: result {}, slow: {}; status --json with probes took {:.0} ms",
        br["result"],
        sl["subState"],
        took.as_secs_f64() * 1000.0
    ));

    // The table people read.
    let t = on_host(sc.m, &["status"], Some(&edited))?;
    t.expect(1, "status (table)")?;
    for want in [
        "SERVICE",
        "active (running)",
        "failed (failed)",
        "inactive (dead)",
        "activating",
        "not-found",
        "starting: unit activating",
    ] {
        ensure!(
            t.stdout.contains(want),
            "table lacks {want:?}:\n{}",
            t.stdout
        );
    }

    // Exit statuses: 0 when all selected are healthy, 1 otherwise, 2 for
    // a name the manifest does not know.
    let (code, r) = status_json(sc.m, &["up"], None)?;
    ensure!(code == 0 && r["ok"] == true, "status up: {code} {r:#}");
    ensure!(
        r["services"].as_array().map(Vec::len) == Some(1),
        "status up lists more: {r:#}"
    );
    on_host(sc.m, &["status", "up", "broken"], None)?.expect(1, "status up broken")?;
    on_host(sc.m, &["status", "down"], None)?.expect(1, "status down")?;
    // A unit name works as well as a service name.
    on_host(sc.m, &["status", &sc.unit("up")], None)?.expect(0, "status by unit name")?;
    let r = on_host(sc.m, &["status", "nosuch"], None)?;
    r.expect(2, "status of an unknown service")?;
    ensure!(
        r.stderr.contains("nosuch") && r.stderr.contains("no such service"),
        "unknown service message: {}",
        r.stderr
    );
    let r = on_host(sc.m, &["status", "upp"], None)?;
    r.expect(2, "status of a misspelt service")?;
    ensure!(
        r.stderr.contains("Did you mean `up`?"),
        "no suggestion: {}",
        r.stderr
    );
    Ok(())
}

fn restart_count(sc: &mut Scenario) -> Result<()> {
    sc.install(&sc.spec(json!({ "a": app(free_port()?) })))?;
    sc.start_target()?;
    let (code, r) = status_json(sc.m, &["a"], None)?;
    ensure!(
        code == 0,
        "status of a healthy service exited {code}: {r:#}"
    );
    let before = row(&r, "a")?["nRestarts"]
        .as_u64()
        .context("no nRestarts")?;
    let pid_before = row(&r, "a")?["mainPid"].clone();
    sc.kill_app("a")?;
    let r = wait_for(
        "status to show the restart",
        Duration::from_secs(90),
        || {
            let (code, r) = status_json(sc.m, &["a"], None)?;
            let a = row(&r, "a")?;
            let restarted = a["nRestarts"].as_u64() == Some(before + 1)
                && a["activeState"] == "active"
                && a["health"]["state"] == "healthy";
            Ok((restarted && code == 0).then_some(r))
        },
    )?;
    let a = row(&r, "a")?;
    ensure!(a["mainPid"] != pid_before, "MainPID did not change: {a:#}");
    let t = on_host(sc.m, &["status", "a"], None)?;
    let line = t
        .stdout
        .lines()
        .find(|l| l.starts_with("a "))
        .context("no row for a in the table")?;
    ensure!(
        line.split_whitespace()
            .any(|w| w == (before + 1).to_string()),
        "the table does not show {} restarts: {line}",
        before + 1
    );
    sc.notes
        .push(format!("NRestarts {before} -> {}", before + 1));
    Ok(())
}

fn probes(sc: &mut Scenario) -> Result<()> {
    let pa = free_port()?;
    sc.install(&sc.spec(json!({ "a": app(pa), "b": arr_app(free_port()?) })))?;
    sc.start_target()?;
    let (code, r) = status_json(sc.m, &["a"], None)?;
    ensure!(code == 0, "healthy a: {r:#}");
    check_row(row(&r, "a")?, "active", Some("running"), "healthy")?;

    // The probe now gets 503: unhealthy with the reason, exit 1.
    http_get(pa, "/ctl/unhealthy")?;
    let (code, r) = status_json(sc.m, &["a"], None)?;
    let a = row(&r, "a")?;
    check_row(a, "active", Some("running"), "unhealthy")?;
    ensure!(
        code == 1 && r["ok"] == false && a["health"]["reason"] == "HTTP 503",
        "unhealthy a: exit {code}, {r:#}"
    );
    let t = on_host(sc.m, &["status", "a"], None)?;
    t.expect(1, "status table of an unhealthy service")?;
    ensure!(
        t.stdout.contains("unhealthy: HTTP 503"),
        "table: {}",
        t.stdout
    );

    // --no-probe: systemd's view only, so the unit counts as fine.
    let r = on_host(sc.m, &["status", "--json", "--no-probe", "a"], None)?;
    r.expect(0, "status --no-probe of an active but unhealthy service")?;
    let v = r.json()?;
    let a = row(&v, "a")?;
    ensure!(
        a["health"]["state"] == "unknown" && a["health"]["reason"] == "not probed",
        "--no-probe row: {a:#}"
    );
    http_get(pa, "/ctl/healthy")?;
    on_host(sc.m, &["status", "a"], None)?.expect(0, "status after healthy again")?;

    // No listener behind the published port: connection refused/reset.
    sc.m.engine(&["exec", &sc.container("a"), "killall", "nc"])?;
    let (code, r) = status_json(sc.m, &["a"], None)?;
    let a = row(&r, "a")?;
    ensure!(
        code == 1 && a["health"]["state"] == "unhealthy",
        "a without a listener: exit {code}, {a:#}"
    );
    let reason = a["health"]["reason"].as_str().unwrap_or("").to_owned();
    ensure!(
        // docker-proxy accepts, then hangs up.
        reason == "connection refused" || reason == "connection closed before an answer",
        "reason without a listener: {reason:?}"
    );
    sc.notes.push(format!("no listener: {reason:?}"));

    // b's probe runs inside the container: status asks the engine, which
    // only works where the engine's state is (inside the machine).
    let b = wait_for(
        "the engine to report b healthy",
        Duration::from_secs(30),
        || {
            let r = sc.m.nixarr(&["status", "--json", "b"])?;
            let v = r.json()?;
            let b = row(&v, "b")?.clone();
            Ok((b["health"]["state"] == "healthy" && r.code == 0).then_some(b))
        },
    )?;
    check_row(&b, "active", Some("running"), "healthy")?;
    Ok(())
}

fn jobs(sc: &mut Scenario) -> Result<()> {
    let mut dep = app(free_port()?);
    dep["dependsOn"] = json!(["bad"]);
    sc.install(&sc.spec(json!({
        "a": app(free_port()?),
        "b": app(free_port()?),
        "bad": broken_app(free_port()?),
        "dep": dep,
    })))?;
    let (ua, ub) = (sc.unit("a"), sc.unit("b"));

    // Inside the machine, where journalctl reads the machine's journal.
    let r = sc.m.nixarr(&["start", "a", "b"])?;
    r.expect(0, "start a b")?;
    for u in [&ua, &ub] {
        ensure!(
            r.stdout.contains(&format!("{u}: start done")),
            "start output: {}",
            r.stdout
        );
        ensure!(sc.m.active_state(u)? == "active", "{u} not active");
    }

    let r = sc.m.nixarr(&["stop", "a"])?;
    r.expect(0, "stop a")?;
    ensure!(
        r.stdout.contains(&format!("{ua}: stop done")),
        "stop output: {}",
        r.stdout
    );
    let st = sc.m.active_state(&ua)?;
    ensure!(st == "inactive", "{ua} is {st} right after stop returned");

    let pid_b = sc.m.unit_property(&ub, "Service", "MainPID")?;
    let r = sc.m.nixarr(&["restart", "b"])?;
    r.expect(0, "restart b")?;
    ensure!(
        r.stdout.contains(&format!("{ub}: restart done")),
        "restart output: {}",
        r.stdout
    );
    ensure!(sc.m.active_state(&ub)? == "active", "{ub} not active");
    ensure!(
        sc.m.unit_property(&ub, "Service", "MainPID")? != pid_b,
        "restart kept the same MainPID"
    );

    // A unit that cannot start, and one that needs it.
    let r = sc.m.nixarr(&["start", "bad", "dep"])?;
    r.expect(1, "start of a broken service")?;
    let (ubad, udep) = (sc.unit("bad"), sc.unit("dep"));
    ensure!(
        r.stdout.contains(&format!("{ubad}: start failed"))
            && r.stdout.contains(&format!("{udep}: start dependency")),
        "failing start output:\n{}",
        r.stdout
    );
    ensure!(
        r.stdout
            .contains("  state: failed (failed), result: exit-code"),
        "the unit's Result is not shown:\n{}",
        r.stdout
    );
    // The journal lines of the failed unit follow; the engine's error is
    // among them.
    let bad_block: Vec<&str> = r
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{ubad}:")))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    ensure!(
        bad_block.len() >= 3
            && bad_block
                .iter()
                .any(|l| l.contains("nixarr-missing") || l.contains("Error")),
        "no journal lines with the engine's error under {ubad}:\n{}",
        r.stdout
    );
    sc.notes.push(format!(
        "failed start shows {} journal lines",
        bad_block.len() - 1
    ));

    // From the host over the machine's bus: the jobs work the same.
    let r = on_host(sc.m, &["start", "a"], None)?;
    r.expect(0, "start a from the host")?;
    ensure!(sc.m.active_state(&ua)? == "active", "{ua} not active");

    // Unprivileged: reading works, changing says why not.
    let nobody = |args: &[&str]| -> Result<Run> {
        let mut argv = vec![
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
        ];
        argv.extend_from_slice(args);
        Ok(Run::from(sc.m.exec(&argv)?))
    };
    let r = nobody(&["status", "--no-probe", "a"])?;
    r.expect(0, "status as an unprivileged user")?;
    let r = nobody(&["stop", "a"])?;
    ensure!(
        r.code == 1 && r.stderr.contains("not permitted"),
        "stop as an unprivileged user: exit {}, stderr {}",
        r.code,
        r.stderr
    );
    let msg = r.stderr.lines().find(|l| l.contains("not permitted"));
    sc.notes
        .push(format!("unprivileged: {}", msg.unwrap_or("").trim()));
    ensure!(sc.m.active_state(&ua)? == "active", "{ua} was stopped");

    // stop --all: when it returns, nothing of the stack is running.
    let r = sc.m.nixarr(&["stop", "--all"])?;
    r.expect(0, "stop --all")?;
    for svc in ["a", "b", "dep"] {
        let u = sc.unit(svc);
        let st = sc.m.active_state(&u)?;
        ensure!(
            st == "inactive",
            "{u} is {st} right after stop --all returned:\n{}",
            r.stdout
        );
    }
    let st = sc.m.active_state(&ubad)?;
    ensure!(
        st == "inactive" || st == "failed",
        "{ubad} is {st} after stop --all"
    );
    let st = sc.m.active_state(&sc.target())?;
    ensure!(st == "inactive", "the target is {st} after stop --all");
    let (code, _) = status_json(sc.m, &["--no-probe"], None)?;
    ensure!(code == 1, "status after stop --all exited {code}");

    // A usage error is exit 2 here too.
    sc.m.nixarr(&["start", "nosuch"])?
        .expect(2, "start of an unknown service")?;
    Ok(())
}

fn logs(sc: &mut Scenario) -> Result<()> {
    sc.install(&sc.spec(json!({ "a": app(free_port()?) })))?;
    sc.start_target()?;
    let ua = sc.unit("a");
    // The unit's own lines are in the journal by now.
    wait_for(
        "the journal to have a's lines",
        Duration::from_secs(20),
        || {
            let j = sc.m.ok(&["journalctl", "--no-pager", "-u", &ua])?;
            Ok(j.contains("is healthy after").then_some(()))
        },
    )?;
    let r = sc.m.nixarr(&["logs", "a", "-n", "5"])?;
    r.expect(0, "logs a -n 5")?;
    let lines: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("-- "))
        .collect();
    ensure!(
        !lines.is_empty() && lines.len() <= 5,
        "logs -n 5 printed {} lines:\n{}",
        lines.len(),
        r.stdout
    );
    // The same lines as journalctl's own view of the unit.
    let j =
        sc.m.ok(&["journalctl", "--no-pager", "-n", "5", "-u", &ua])?;
    let last = j
        .lines()
        .rfind(|l| !l.starts_with("-- "))
        .context("journalctl printed nothing")?;
    ensure!(
        lines.last() == Some(&last),
        "logs ends with {:?}, journalctl -u with {last:?}",
        lines.last()
    );
    ensure!(
        r.stdout.contains(&sc.container("a")) || r.stdout.contains("fake app"),
        "no line of the unit:\n{}",
        r.stdout
    );
    sc.m.nixarr(&["logs", "nosuch"])?
        .expect(2, "logs of an unknown service")?;
    Ok(())
}

fn vpn(sc: &mut Scenario) -> Result<()> {
    let control = free_port()?;
    let gluetun = json!({
        "app": "gluetun",
        "image": IMAGE,
        "capAdd": [],
        "devices": [],
        "ports": [{ "host": control, "container": 8000, "address": "127.0.0.1" }],
        "environment": { "FAKE_PORT": "8000", "FAKE_STYLE": "health" },
        "health": { "tcp": true, "port": 8000 },
        "stopTimeout": 10,
        "startTimeout": 120,
    });
    let behind = json!({ "image": IMAGE, "vpn": true, "stopTimeout": 10 });
    sc.install(&sc.spec(json!({ "gluetun": gluetun, "torrent": behind })))?;
    let ug = sc.unit("gluetun");

    // Stopped: says so, exit 1.
    let r = on_host(sc.m, &["vpn", "status"], None)?;
    r.expect(1, "vpn status of a stopped VPN")?;
    ensure!(
        r.stdout.contains("state:   inactive (dead)") && r.stdout.contains("behind it: torrent"),
        "vpn status (stopped):\n{}",
        r.stdout
    );

    sc.m.systemctl(&["start", &ug])?;
    // The control server wants authentication: 401 explained.
    let r = on_host(sc.m, &["vpn", "status"], None)?;
    r.expect(0, "vpn status (401)")?;
    for want in [
        format!("service: gluetun ({ug})"),
        "state:   active (running)".to_owned(),
        "health:  healthy".to_owned(),
        "public IP: unknown: the control server answered 401".to_owned(),
        "HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH".to_owned(),
    ] {
        ensure!(
            r.stdout.contains(&want),
            "vpn status lacks {want:?}:\n{}",
            r.stdout
        );
    }
    // Now it answers the IP.
    http_get(control, "/ctl/public-ip/1.2.3.4")?;
    let r = on_host(sc.m, &["vpn", "status"], None)?;
    r.expect(0, "vpn status (IP)")?;
    ensure!(
        r.stdout.contains("public IP: 1.2.3.4"),
        "vpn status:\n{}",
        r.stdout
    );
    // Inside the machine too (the default manifest and bus).
    let r = sc.m.nixarr(&["vpn", "status"])?;
    r.expect(0, "vpn status inside")?;
    ensure!(
        r.stdout.contains("public IP: 1.2.3.4"),
        "vpn status inside:\n{}",
        r.stdout
    );
    Ok(())
}

fn watch(sc: &mut Scenario) -> Result<()> {
    sc.install(&sc.spec(json!({ "a": app(free_port()?) })))?;
    sc.start_target()?;
    let ua = sc.unit("a");
    let out_path = sc.m.dir.path().join(format!("{}-watch.out", sc.prefix));
    let out = fs_err::File::create(&out_path)?;
    let mut child = Command::new(BIN)
        .args(["status", "--watch", "--no-probe", "a", "--manifest"])
        .arg(sc.m.manifest_path())
        .arg("--bus-address")
        .arg(sc.m.bus_address())
        .stdin(Stdio::null())
        .stdout(out.into_parts().0)
        .stderr(Stdio::piped())
        .spawn()
        .context("starting status --watch")?;
    let result = (|| -> Result<f64> {
        wait_for("the watcher's first table", Duration::from_secs(10), || {
            let text = fs_err::read_to_string(&out_path)?;
            Ok(text.contains("active (running)").then_some(()))
        })?;
        // Past the first periodic refresh, so a change shown below comes
        // from systemd's signal, not from a refresh that happened to fall
        // right after the stop.
        std::thread::sleep(Duration::from_millis(500));
        sc.m.systemctl(&["stop", &ua])?;
        let stopped = Instant::now();
        wait_for(
            "the watcher to show a stopped",
            Duration::from_secs(4),
            || {
                let text = fs_err::read_to_string(&out_path)?;
                Ok(text.contains("inactive (dead)").then_some(()))
            },
        )?;
        Ok(stopped.elapsed().as_secs_f64())
    })();
    let _ = child.kill();
    let waited = child.wait_with_output()?;
    let secs = result.with_context(|| {
        format!(
            "watch output:\n{}\nstderr:\n{}",
            fs_err::read_to_string(&out_path).unwrap_or_default(),
            String::from_utf8_lossy(&waited.stderr)
        )
    })?;
    sc.notes.push(format!(
        "--watch showed the stop {secs:.1}s after it returned"
    ));
    Ok(())
}

/// `start|stop|status --profile`: a catalog app's profile (lidarr is in
/// `music`) and one the spec defines.
fn profiles(sc: &mut Scenario) -> Result<()> {
    let mut lidarr = app(free_port()?);
    lidarr["app"] = json!("lidarr");
    let mut spec = sc.spec(json!({
        "lidarr": lidarr,
        "a": app(free_port()?),
        "b": app(free_port()?),
    }));
    spec["profiles"] = json!({ "web": ["a", "b"] });
    sc.install(&spec)?;
    let (ul, ua, ub) = (sc.unit("lidarr"), sc.unit("a"), sc.unit("b"));
    let states = |sc: &Scenario| -> Result<Vec<String>> {
        [&ul, &ua, &ub]
            .iter()
            .map(|u| sc.m.active_state(u))
            .collect()
    };

    let r = sc.m.nixarr(&["start", "--profile", "web"])?;
    r.expect(0, "start --profile web")?;
    ensure!(
        r.stdout.contains(&format!("{ua}: start done"))
            && r.stdout.contains(&format!("{ub}: start done"))
            && !r.stdout.contains(&ul),
        "start --profile web:\n{}",
        r.stdout
    );
    ensure!(
        states(sc)? == ["inactive", "active", "active"],
        "after start --profile web: {:?}",
        states(sc)?
    );
    let r = on_host(sc.m, &["status", "--profile", "web", "--json"], None)?;
    r.expect(0, "status --profile web")?;
    let rows: Vec<String> = r.json()?["services"]
        .as_array()
        .context("no services in status --json")?
        .iter()
        .filter_map(|s| s["service"].as_str().map(str::to_owned))
        .collect();
    ensure!(rows == ["a", "b"], "status --profile web shows {rows:?}");

    let r = on_host(sc.m, &["start", "--profile", "music"], None)?;
    r.expect(0, "start --profile music")?;
    ensure!(
        states(sc)? == ["active", "active", "active"],
        "after start --profile music: {:?}",
        states(sc)?
    );
    diff_names_the_running_service(sc, &mut spec)?;
    let r = sc.m.nixarr(&["stop", "--profile", "web"])?;
    r.expect(0, "stop --profile web")?;
    ensure!(
        states(sc)? == ["active", "inactive", "inactive"],
        "after stop --profile web: {:?}",
        states(sc)?
    );
    let r = sc.m.nixarr(&["restart", "--profile", "musc"])?;
    r.expect(2, "an unknown profile")?;
    ensure!(
        r.stderr.contains("did you mean `music`?") && r.stderr.contains("profiles here:"),
        "unknown profile:\n{}",
        r.stderr
    );
    Ok(())
}

/// `vpn stop` stops Gluetun and the services bound to it (not the others)
/// and says which; `vpn start` brings them all back.
fn vpn_switch(sc: &mut Scenario) -> Result<()> {
    let gluetun = json!({
        "app": "gluetun",
        "image": IMAGE,
        "capAdd": [],
        "devices": [],
        "ports": [{ "host": free_port()?, "container": 8000, "address": "127.0.0.1" }],
        "environment": { "FAKE_PORT": "8000", "FAKE_STYLE": "health" },
        "health": { "tcp": true, "port": 8000 },
        "stopTimeout": 10,
        "startTimeout": 120,
    });
    let behind = json!({ "image": IMAGE, "vpn": true, "stopTimeout": 10 });
    sc.install(&sc.spec(json!({
        "gluetun": gluetun,
        "torrent": behind,
        "usenet": behind,
        "other": app(free_port()?),
    })))?;
    sc.start_target()?;
    let (ug, ut, uu, uo) = (
        sc.unit("gluetun"),
        sc.unit("torrent"),
        sc.unit("usenet"),
        sc.unit("other"),
    );
    let units = [&ug, &ut, &uu, &uo];
    for u in units {
        sc.m.wait_active(u, Duration::from_secs(120))?;
    }
    let states = |sc: &Scenario| -> Result<Vec<String>> {
        units.iter().map(|u| sc.m.active_state(u)).collect()
    };

    let r = sc.m.nixarr(&["vpn", "stop"])?;
    r.expect(0, "vpn stop")?;
    ensure!(
        r.stdout.contains(&format!("{ug}: stop done"))
            && r.stdout
                .contains("stopped gluetun and with it: torrent, usenet"),
        "vpn stop:\n{}",
        r.stdout
    );
    ensure!(
        states(sc)? == ["inactive", "inactive", "inactive", "active"],
        "after vpn stop: {:?}",
        states(sc)?
    );
    let r = on_host(sc.m, &["vpn", "status", "--json"], None)?;
    r.expect(1, "vpn status --json of a stopped VPN")?;
    let v = r.json()?;
    ensure!(
        v["activeState"] == "inactive" && v["behindIt"] == json!(["torrent", "usenet"]),
        "vpn status --json: {v}"
    );

    let r = on_host(sc.m, &["vpn", "start", "--json"], None)?;
    r.expect(0, "vpn start")?;
    let v = r.json()?;
    ensure!(
        v["action"] == "start"
            && v["result"] == "done"
            && v["services"]
                .as_array()
                .is_some_and(|s| s.len() == 2 && s.iter().all(|b| b["result"] == "done")),
        "vpn start --json: {v}"
    );
    ensure!(
        states(sc)? == ["active", "active", "active", "active"],
        "after vpn start: {:?}",
        states(sc)?
    );
    Ok(())
}

/// `diff` inside the machine, against the generator's directory: after an
/// edit of the spec (no daemon-reload yet) it shows the changed unit and
/// names the running service a reload would restart; once the generator
/// ran, nothing is left to change.
fn diff_names_the_running_service(sc: &Scenario, spec: &mut Value) -> Result<()> {
    // The units name the binary by the generator's path.
    let exe = format!(
        "{MACHINE_BIN_DIR}/{}",
        Path::new(BIN)
            .file_name()
            .context("the binary has no name")?
            .to_string_lossy()
    );
    let diff = || sc.m.nixarr(&["diff", "--self-exe", &exe, "--json"]);
    let r = diff()?;
    r.expect(0, "diff of the installed spec")?;
    spec["services"]["a"]["environment"]["E2E_CHANGED"] = json!("1");
    sc.m.write_spec(&sc.prefix, spec)?;
    let r = diff()?;
    r.expect(1, "diff after an edit")?;
    let v = r.json()?;
    let mine = v["specs"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|d| d["spec"].as_str().is_some_and(|p| p.contains(&sc.prefix)))
        })
        .context("diff --json has no entry for the scenario's spec")?;
    let units: Vec<&str> = mine["changes"]
        .as_array()
        .context("no changes")?
        .iter()
        .filter_map(|c| c["unit"].as_str())
        .collect();
    ensure!(units == [sc.unit("a")], "diff changes: {units:?}");
    let text = mine["changes"][0]["diff"].as_str().unwrap_or_default();
    ensure!(
        mine["restart"] == json!(["a"]) && text.contains("E2E_CHANGED=1"),
        "diff: {mine}"
    );
    sc.m.daemon_reload()?;
    diff()?.expect(0, "diff after daemon-reload")?;
    Ok(())
}

/// Services in [`many_services`]: 5 property reads each, 300 at once
/// without a bound, well past the system bus's 128 pending replies per
/// connection.
const MANY: usize = 60;
/// Runs of `status --json` in [`many_services`].
const MANY_RUNS: usize = 30;

/// `status` of a stack of [`MANY`] services: every row complete. The
/// system bus refuses a connection more than `max_replies_per_connection`
/// (128) pending replies, and a refused `Properties.Get` reads as an absent
/// property, so unbounded concurrent reads lost MainPID, memory or restarts
/// of some rows silently (`systemd::PENDING_REPLIES` bounds them). Engine
/// independent, so on podman 4 only.
fn many_services(sc: &mut Scenario) -> Result<()> {
    // Cheap services: the fake app's busybox sleeping, no ports or probes.
    let names: Vec<String> = (0..MANY).map(|i| format!("s{i:02}")).collect();
    let services: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), harness::sleeping_app(300)))
        .collect();
    sc.install(&sc.spec(Value::Object(services)))?;
    let units: Vec<String> = names.iter().map(|n| sc.unit(n)).collect();
    let started = Instant::now();
    // `systemctl start` of the units themselves waits for every one's job
    // (the target's only wants them).
    let mut argv = vec!["start"];
    argv.extend(units.iter().map(String::as_str));
    sc.m.systemctl(&argv)?;
    let start_secs = started.elapsed().as_secs_f64();

    // systemd's own view, through systemctl (its private socket, not the bus).
    let mut argv = vec!["show", "-p", "Id,MainPID,NRestarts,MemoryCurrent"];
    argv.extend(units.iter().map(String::as_str));
    let shown = shown_properties(&sc.m.systemctl(&argv)?);

    // A refused read is a race between the reads sent and systemd's
    // answers. With PENDING_REPLIES at 100_000 (no bound) on the podman 4
    // machine, 40 services lost properties in 2 of 30 runs, 60 in 11 and
    // 16 of 30, 80 in 20 of 30: hence 60 services and [`MANY_RUNS`] runs.
    let mut took = Vec::new();
    let mut failed = Vec::new();
    for run in 1..=MANY_RUNS {
        let t = Instant::now();
        let (code, report) = status_json(sc.m, &[], None)?;
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        if let Err(e) = check_many(sc, &names, &shown, code, &report) {
            failed.push(format!("run {run}: {e:#}"));
        }
    }
    if let Some(first) = failed.first() {
        bail!(
            "status --json was wrong in {} of {MANY_RUNS} runs; the first: {first}",
            failed.len()
        );
    }
    took.sort_by(f64::total_cmp);

    // The table: exit 0, one row per service, its PID as in the JSON.
    let (_, report) = status_json(sc.m, &[], None)?;
    let t = on_host(sc.m, &["status"], None)?;
    t.expect(0, "status (table)")?;
    let rows: Vec<&str> = t
        .stdout
        .lines()
        .filter(|l| l.contains(&format!("{}-", sc.prefix)))
        .collect();
    ensure!(
        rows.len() == MANY,
        "the table has {} rows of the stack, not {MANY}:\n{}",
        rows.len(),
        t.stdout
    );
    for name in &names {
        let pid = row(&report, name)?["mainPid"].to_string();
        let line = rows
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .with_context(|| format!("no row for {name} in the table:\n{}", t.stdout))?;
        ensure!(
            line.contains("active (running)") && line.split_whitespace().any(|w| w == pid),
            "table row of {name} (MainPID {pid}): {line}"
        );
    }
    let memory = shown
        .values()
        .filter(|p| {
            p.get("MemoryCurrent")
                .is_some_and(|m| m.parse::<u64>().is_ok())
        })
        .count();
    sc.notes.push(format!(
        "{MANY} units started in {start_secs:.1} s; systemd accounts the memory of {memory}; \
         status --json took {:.0} ms (median of {MANY_RUNS}; {:.0} to {:.0})",
        took[MANY_RUNS / 2],
        took[0],
        took[MANY_RUNS - 1]
    ));
    Ok(())
}

/// `systemctl show -p Id,…` of several units: unit -> property -> value.
fn shown_properties(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    // One block per unit, blocks separated by an empty line.
    for block in text.split("\n\n") {
        let props: BTreeMap<String, String> = block
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if let Some(id) = props.get("Id") {
            out.insert(id.clone(), props);
        }
    }
    out
}

/// Every row of `report` active and running with its MainPID and restarts
/// (systemctl's), memory (where systemctl has it) and since; all failures
/// at once, counted.
fn check_many(
    sc: &Scenario,
    names: &[String],
    shown: &BTreeMap<String, BTreeMap<String, String>>,
    code: i32,
    report: &Value,
) -> Result<()> {
    let rows = report["services"].as_array().context("no services array")?;
    ensure!(
        rows.len() == names.len(),
        "{} rows for {} services: {report:#}",
        rows.len(),
        names.len()
    );
    let mut bad = Vec::new();
    for name in names {
        let r = row(report, name)?;
        let unit = sc.unit(name);
        let show = shown
            .get(&unit)
            .with_context(|| format!("systemctl show said nothing of {unit}"))?;
        let mut missing = Vec::new();
        if r["activeState"] != "active" || r["subState"] != "running" {
            missing.push(format!("state {} ({})", r["activeState"], r["subState"]));
        }
        let pid = r["mainPid"].as_u64().filter(|p| *p > 0);
        if pid.map(|p| p.to_string()).as_ref() != show.get("MainPID") {
            missing.push(format!(
                "mainPid {} (systemctl: {:?})",
                r["mainPid"],
                show.get("MainPID")
            ));
        }
        if r["nRestarts"].as_u64().map(|n| n.to_string()).as_ref() != show.get("NRestarts") {
            missing.push(format!(
                "nRestarts {} (systemctl: {:?})",
                r["nRestarts"],
                show.get("NRestarts")
            ));
        }
        // Memory where systemd accounts it (not on a host with hybrid
        // cgroups, whose unified hierarchy has no memory controller).
        let accounted = show
            .get("MemoryCurrent")
            .is_some_and(|m| m.parse::<u64>().is_ok());
        if r["memoryBytes"].as_u64().is_some_and(|m| m > 0) != accounted {
            missing.push(format!(
                "memoryBytes {} (systemctl: {:?})",
                r["memoryBytes"],
                show.get("MemoryCurrent")
            ));
        }
        if r["sinceUsec"].as_u64().unwrap_or(0) == 0 {
            missing.push(format!("sinceUsec {}", r["sinceUsec"]));
        }
        if r["result"] != "success" {
            missing.push(format!("result {}", r["result"]));
        }
        if !missing.is_empty() {
            bad.push(format!("{name}: {}", missing.join(", ")));
        }
    }
    ensure!(
        bad.is_empty(),
        "{} of {} rows wrong or incomplete:\n{}",
        bad.len(),
        names.len(),
        bad.join("\n")
    );
    ensure!(
        code == 0 && report["ok"] == true,
        "status of {} active services exited {code}, ok {}",
        names.len(),
        report["ok"]
    );
    Ok(())
}
