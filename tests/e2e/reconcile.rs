//! End-to-end tests of `nixarr-units reconcile` on real systemd and real
//! engines: an orphan left running by a killed engine monitor, a forged
//! container claiming a service while the real one runs, another stack's
//! container, drift, a container removed behind its unit's back, an engine
//! and a bus that do not answer, `--dry-run`, and the reconcile timer's
//! hardened service pruning with one journal line. The binary runs inside
//! the machine (its bus, its engine, its /proc for the cgroup check).
//!
//! Runs as root only (CI does); otherwise prints SKIPPED loudly.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::harness;
use crate::harness::{
    BIN, Backend, IMAGE, Machine, Run, SCENARIO_LABEL, Scenario, ScenarioFn, free_port, wait_for,
};

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "1 orphan, forged and foreign; --dry-run changes nothing; status counts; the timer's service prunes",
        orphan_forged_foreign,
    ),
    (
        "2 drift restarts exactly that service; a container removed behind its unit's back is started",
        drift_and_missing,
    ),
    (
        "3 an engine or a bus that does not answer: nothing done",
        reads_fail,
    ),
];

#[test]
fn podman() {
    harness::run_suite("reconcile end-to-end tests", Backend::Podman, SCENARIOS);
}

#[test]
fn docker() {
    harness::run_suite("reconcile end-to-end tests", Backend::Docker, SCENARIOS);
}

// ---------------------------------------------------------------- helpers

/// `reconcile --json` with `args`, expecting exit status `code`.
fn reconcile(m: &Machine, args: &[&str], code: i32) -> Result<Value> {
    let mut a = vec!["reconcile", "--json"];
    a.extend_from_slice(args);
    let r = m.nixarr(&a)?;
    r.expect(code, &format!("reconcile {args:?}"))?;
    r.json()
}

/// An app that answers its probe from the host on `port`.
fn app(port: u16) -> Value {
    harness::probed_app(port, 5)
}

/// A container without ports or probe.
fn plain() -> Value {
    json!({ "image": IMAGE, "stopTimeout": 5, "startTimeout": 120 })
}

/// The entry named `name` in the plan's `list` ("containers" or "units",
/// matched on "name" or "unit").
fn entry<'a>(plan: &'a Value, list: &str, name: &str) -> Result<&'a Value> {
    plan[list]
        .as_array()
        .context("no list")?
        .iter()
        .find(|e| e["name"] == name || e["unit"] == name)
        .with_context(|| format!("no {name} in {list}: {plan:#}"))
}

fn class_action(e: &Value) -> (String, String) {
    (
        e["class"].as_str().unwrap_or("").to_owned(),
        e["action"].as_str().unwrap_or("").to_owned(),
    )
}

/// The ID of container `name`, or `None` when there is none.
fn container_id(m: &Machine, name: &str) -> Result<Option<String>> {
    let out = m.exec(&[
        harness::machine::engine_path(m.backend),
        "inspect",
        "--type=container",
        "--format={{.Id}}",
        name,
    ])?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Start a container by hand with `labels` (never by a unit).
fn hand_made(sc: &Scenario, name: &str, labels: &[(&str, &str)]) -> Result<String> {
    let mut args = vec!["run".to_owned(), "-d".to_owned(), format!("--name={name}")];
    args.push(format!("--label={SCENARIO_LABEL}={}", sc.prefix));
    args.extend(labels.iter().map(|(k, v)| format!("--label={k}={v}")));
    args.push(IMAGE.to_owned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(sc.m.engine(&argv)?.trim().to_owned())
}

fn main_pid(m: &Machine, unit: &str) -> Result<String> {
    Ok(m.systemctl(&["show", "-P", "MainPID", unit])?
        .trim()
        .to_owned())
}

/// What must not change when reconcile is to do nothing: each container's
/// ID and each unit's restart count and start time.
fn snapshot(sc: &Scenario, containers: &[String], units: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for c in containers {
        out.push(format!("{c}={:?}", container_id(sc.m, c)?));
    }
    for u in units {
        let p = sc.m.systemctl(&[
            "show",
            "--value",
            "-p",
            "NRestarts",
            "-p",
            "ActiveEnterTimestampMonotonic",
            u,
        ])?;
        out.push(format!(
            "{u}={}",
            p.split_whitespace().collect::<Vec<_>>().join(",")
        ));
    }
    Ok(out)
}

// -------------------------------------------------------------- scenarios

/// A service removed from the spec whose container outlived its killed
/// engine monitor (orphan), a hand-made container claiming `sonarr` while
/// the real one runs (forged), and a container of another stack (foreign).
/// --dry-run (even with --prune) changes nothing; a pass records what it
/// left and `status` shows it, still reporting the real sonarr; the
/// reconcile timer's hardened service prunes with one journal line and
/// leaves the real sonarr and the foreign container alone.
fn orphan_forged_foreign(sc: &mut Scenario) -> Result<()> {
    let m = sc.m;
    let p = sc.prefix.clone();
    let port = free_port()?;
    let mut spec = sc.spec(json!({ "sonarr": app(port), "extra": plain() }));
    spec["reconcile"] = json!({ "interval": "1h", "prune": true });
    sc.install(&spec)?;
    sc.start_target()?;
    m.wait_active(&sc.unit("sonarr"), Duration::from_secs(120))?;
    m.wait_active(&sc.unit("extra"), Duration::from_secs(120))?;

    // The orphan: `extra` leaves the spec, then its engine monitor (conmon
    // on podman, the `docker run` client on Docker) is killed.
    let monitor = main_pid(m, &sc.unit("extra"))?;
    spec["services"]
        .as_object_mut()
        .context("services")?
        .remove("extra");
    sc.install(&spec)?;
    m.ok(&["kill", "-KILL", &monitor])?;
    wait_for("extra's unit to stop", Duration::from_secs(60), || {
        Ok((m.active_state(&sc.unit("extra"))? != "active").then_some(()))
    })?;
    let orphan = sc.container("extra");
    ensure!(
        container_id(m, &orphan)?.is_some(),
        "the orphan container {orphan} did not outlive its monitor"
    );

    // The forged one: our labels, the real one's config hash, made by hand.
    let hash = sc.label("sonarr", "io.nixarr.config-hash")?;
    let forged = sc.container("forged");
    let stack_label = ("io.nixarr.stack", p.as_str());
    hand_made(
        sc,
        &forged,
        &[
            ("io.nixarr.managed", "true"),
            stack_label,
            ("io.nixarr.service", "sonarr"),
            ("io.nixarr.config-hash", &hash),
        ],
    )?;
    let other = format!("{p}other");
    let foreign = sc.container("foreign");
    hand_made(
        sc,
        &foreign,
        &[
            ("io.nixarr.managed", "true"),
            ("io.nixarr.stack", &other),
            ("io.nixarr.service", "sonarr"),
        ],
    )?;

    let real = sc.container("sonarr");
    let all = [
        real.clone(),
        orphan.clone(),
        forged.clone(),
        foreign.clone(),
    ];
    let units = [sc.unit("sonarr")];
    let record = m
        .root()
        .join(format!("run/nixarr-units/reconcile/{p}.json"));
    let before = snapshot(sc, &all, &units)?;

    // --dry-run --prune: the plan, nothing done, no record.
    let plan = reconcile(m, &["--dry-run", "--prune"], 1)?;
    ensure!(plan["dryRun"] == true && plan["acted"] == 0, "{plan:#}");
    let expect = [
        (&real, "ok", "none"),
        (&orphan, "orphan", "remove"),
        (&forged, "forged", "remove"),
        (&foreign, "foreign", "none"),
    ];
    for (name, class, action) in expect {
        let e = entry(&plan, "containers", name)?;
        ensure!(
            class_action(e) == (class.to_owned(), action.to_owned()),
            "{name}: {e:#}"
        );
    }
    // On podman the real one was tied to its unit by its cgroup too, not
    // by its name alone (a ps without PIDs would silently skip that).
    let tie = match m.backend {
        Backend::Podman => format!("run by {}, in its cgroup", sc.unit("sonarr")),
        Backend::Docker => format!("run by {}", sc.unit("sonarr")),
    };
    let r = entry(&plan, "containers", &real)?;
    ensure!(r["detail"] == tie.as_str(), "the real sonarr: {r:#}");
    let f = entry(&plan, "containers", &forged)?;
    let detail = f["detail"].as_str().unwrap_or("");
    ensure!(
        detail.contains(&sc.unit("sonarr")) && detail.contains("image") && f["id"] != "",
        "forged detail: {f:#}"
    );
    ensure!(
        class_action(entry(&plan, "units", &sc.unit("sonarr"))?) == ("ok".into(), "none".into()),
        "{plan:#}"
    );
    ensure!(
        snapshot(sc, &all, &units)? == before,
        "--dry-run changed something"
    );
    ensure!(!record.exists(), "--dry-run wrote {}", record.display());

    // A pass without --prune reports and records; status counts the
    // leftovers and still shows the real sonarr, healthy.
    let plan = reconcile(m, &[], 1)?;
    ensure!(plan["acted"] == 0, "{plan:#}");
    ensure!(
        snapshot(sc, &all, &units)? == before,
        "a pass without --prune removed something"
    );
    let status = m.nixarr(&["status", "--json"])?;
    let status = status.json()?;
    let left = &status["reconcile"][0];
    ensure!(
        left["stack"] == p.as_str() && left["orphan"] == 1 && left["forged"] == 1,
        "status: {status:#}"
    );
    let row = status["services"]
        .as_array()
        .context("services")?
        .iter()
        .find(|r| r["service"] == "sonarr")
        .context("no sonarr row")?;
    ensure!(
        row["activeState"] == "active" && row["health"]["state"] == "healthy",
        "status of the real sonarr: {row:#}"
    );
    ensure!(
        row["mainPid"].as_u64().map(|p| p.to_string()) == Some(main_pid(m, &sc.unit("sonarr"))?),
        "status's sonarr is not the unit's: {row:#}"
    );

    // The timer's service (hardened, --prune): one journal line.
    m.systemctl(&["start", &format!("{p}-reconcile.service")])?;
    ensure!(
        container_id(m, &orphan)?.is_none(),
        "the orphan was not removed"
    );
    ensure!(
        container_id(m, &forged)?.is_none(),
        "the forged container was not removed"
    );
    ensure!(
        snapshot(sc, &[real.clone(), foreign.clone()], &units)?
            == [before[0].clone(), before[3].clone(), before[4].clone()],
        "the real sonarr or the foreign container changed"
    );
    let journal = m.ok(&[
        "journalctl",
        "--no-pager",
        "-o",
        "cat",
        "-t",
        &format!("{p}-reconcile"),
    ])?;
    let lines: Vec<&str> = journal.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        lines.len() == 1
            && lines[0].starts_with(&format!("reconcile {p}: "))
            && lines[0].contains("removed"),
        "the pass's journal lines: {lines:#?}"
    );
    sc.notes.push(format!("journal: {}", lines[0]));
    let status = m.nixarr(&["status", "--json"])?.json()?;
    ensure!(
        status["reconcile"] == json!([]),
        "status after prune: {status:#}"
    );

    // Everything is ok now; the other stack's container is left alone.
    let plan = reconcile(m, &[], 0)?;
    ensure!(
        class_action(entry(&plan, "containers", &foreign)?) == ("foreign".into(), "none".into()),
        "{plan:#}"
    );
    Ok(())
}

/// The spec of `a` changes without `reload`: reconcile restarts exactly
/// `a` (b keeps its container). `c` (restart "no") loses its container
/// behind its back and fails: reconcile starts it again and says why it
/// was down.
fn drift_and_missing(sc: &mut Scenario) -> Result<()> {
    let m = sc.m;
    let mut c = plain();
    c["restart"] = json!("no");
    let mut spec = sc.spec(json!({ "a": plain(), "b": plain(), "c": c }));
    sc.install(&spec)?;
    sc.start_target()?;
    for s in ["a", "b", "c"] {
        m.wait_active(&sc.unit(s), Duration::from_secs(120))?;
    }
    let plan = reconcile(m, &[], 0)?;
    ensure!(plan["ok"] == true, "{plan:#}");

    let a_before = container_id(m, &sc.container("a"))?;
    let b_before = snapshot(sc, &[sc.container("b")], &[sc.unit("b")])?;
    spec["services"]["a"]["environment"] = json!({ "RECONCILE": "1" });
    sc.install(&spec)?;
    m.engine(&["rm", "-f", &sc.container("c")])?;
    // The app ends on the engine's SIGTERM with status 0: the unit ends
    // inactive (dead) or failed, while its target stays active.
    wait_for("c to stop", Duration::from_secs(60), || {
        let state = m.active_state(&sc.unit("c"))?;
        Ok((state == "inactive" || state == "failed").then_some(()))
    })?;

    let plan = reconcile(m, &[], 1)?;
    let a = entry(&plan, "units", &sc.unit("a"))?;
    ensure!(
        class_action(a) == ("drift".into(), "restart".into()) && a["result"] == "restarted",
        "{a:#}"
    );
    let c = entry(&plan, "units", &sc.unit("c"))?;
    ensure!(
        class_action(c) == ("missing".into(), "start".into()) && c["result"] == "started",
        "{c:#}"
    );
    let why = c["detail"].as_str().unwrap_or("");
    ensure!(
        why.contains(&format!("while {} is active", sc.target())) || why.starts_with("failed"),
        "why c was down: {c:#}"
    );
    sc.notes.push(format!("c: {why}"));
    ensure!(
        class_action(entry(&plan, "units", &sc.unit("b"))?) == ("ok".into(), "none".into()),
        "{plan:#}"
    );
    ensure!(plan["acted"] == 2, "{plan:#}");

    // a runs the unit's configuration now; b was not touched; c runs.
    ensure!(
        container_id(m, &sc.container("a"))? != a_before,
        "a was not restarted"
    );
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(
        m.root().join("run/nixarr-units/manifest.json"),
    )?)?;
    let stack = manifest["stacks"]
        .as_array()
        .context("stacks")?
        .iter()
        .find(|s| s["prefix"] == sc.prefix.as_str())
        .context("no stack")?;
    ensure!(
        sc.label("a", "io.nixarr.config-hash")? == stack["services"]["a"]["configHash"],
        "a's container does not carry the unit's config hash"
    );
    ensure!(
        snapshot(sc, &[sc.container("b")], &[sc.unit("b")])? == b_before,
        "b was touched"
    );
    ensure!(
        m.active_state(&sc.unit("c"))? == "active",
        "c is not active"
    );
    let plan = reconcile(m, &[], 0)?;
    ensure!(plan["ok"] == true, "{plan:#}");
    Ok(())
}

/// A pass whose engine hangs (its binary swapped for one that never
/// answers, in a mount namespace of its own) or whose bus is unreachable
/// classifies nothing and changes nothing, though `a` has drifted and a
/// forged container waits for --prune.
fn reads_fail(sc: &mut Scenario) -> Result<()> {
    let m = sc.m;
    let p = sc.prefix.clone();
    let mut spec = sc.spec(json!({ "a": plain() }));
    sc.install(&spec)?;
    sc.start_target()?;
    m.wait_active(&sc.unit("a"), Duration::from_secs(120))?;
    spec["services"]["a"]["environment"] = json!({ "RECONCILE": "1" });
    sc.install(&spec)?;
    let forged = sc.container("forged");
    hand_made(
        sc,
        &forged,
        &[
            ("io.nixarr.managed", "true"),
            ("io.nixarr.stack", &p),
            ("io.nixarr.service", "a"),
        ],
    )?;
    let all = [sc.container("a"), forged.clone()];
    let units = [sc.unit("a")];
    let before = snapshot(sc, &all, &units)?;

    let hang = format!("/run/{p}-hang");
    std::fs::write(
        m.root().join(hang.trim_start_matches('/')),
        "#!/bin/sh\nexec sleep 600\n",
    )?;
    m.ok(&["chmod", "755", &hang])?;
    let engine = harness::machine::engine_path(m.backend);
    let script =
        format!("mount --bind {hang} {engine} && exec {BIN} reconcile --prune --engine-timeout 2");
    let started = std::time::Instant::now();
    let r = Run::from(m.exec(&["unshare", "-m", "sh", "-c", &script])?);
    r.expect(1, "reconcile with a hung engine")?;
    ensure!(
        started.elapsed() < Duration::from_secs(30),
        "the pass waited {:?} for a hung engine",
        started.elapsed()
    );
    ensure!(
        r.stdout.contains("nothing done: a read failed")
            && r.stdout.contains("did not answer within 2s"),
        "{r:?}"
    );
    ensure!(
        snapshot(sc, &all, &units)? == before,
        "a pass with a hung engine changed something"
    );

    let r = m.nixarr(&[
        "reconcile",
        "--prune",
        "--json",
        "--bus-address",
        "unix:path=/nonexistent/bus",
    ])?;
    r.expect(1, "reconcile without a bus")?;
    let plan = r.json()?;
    ensure!(
        plan["units"] == json!([])
            && plan["containers"] == json!([])
            && plan["failedReads"][0]
                .as_str()
                .unwrap_or("")
                .starts_with("systemd: cannot connect"),
        "{plan:#}"
    );
    ensure!(
        snapshot(sc, &all, &units)? == before,
        "a pass without a bus changed something"
    );
    Ok(())
}
