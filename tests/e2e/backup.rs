//! End-to-end: backups of a running app and restores, on real systemd with
//! podman 4.3 and Docker (the engine plays no part in the copy itself, so
//! podman 5 adds nothing here).
//!
//! The app is the fake app with `FAKE_DB`: one SQLite connection in WAL
//! mode inserting a row every 10 ms for as long as it runs.
//!
//! - `backup` while it writes: the copy passes `integrity_check` and holds
//!   every row committed before the backup began; `restore` puts it back
//!   and the app serves the restored rows (a mark made after the backup is
//!   gone; excluded files stay); `--keep` keeps the newest N.
//! - SIGKILL in the middle of a restore: `--rollback` brings the previous
//!   data back byte for byte (NAR hash), and a restore killed again and run
//!   again completes.
//! - A restore whose app never turns healthy rolls back by itself.
//!
//! Runs as root only (CI does); otherwise prints SKIPPED loudly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness;
use crate::harness::{
    Backend, IMAGE, MACHINE_BIN_DIR, Run, Scenario, ScenarioFn, free_port, wait_for,
};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "backup while the app writes, restore serves the restored rows, --keep keeps N",
        backup_and_restore,
    ),
    (
        "SIGKILL during restore: --rollback brings the previous data back, again completes",
        killed_restore,
    ),
    (
        "a restore whose app never turns healthy rolls back by itself",
        never_healthy_rolls_back,
    ),
];

#[test]
fn podman() {
    harness::run_suite("backup end-to-end tests", Backend::Podman, SCENARIOS);
}

#[test]
fn docker() {
    harness::run_suite("backup end-to-end tests", Backend::Docker, SCENARIOS);
}

/// The app's directory, and where its backups go. The app's is below the
/// machine's temporary directory, which has the same path inside the
/// machine and on the host, where dockerd resolves bind mounts.
fn dirs(sc: &Scenario) -> (String, String) {
    (
        format!("{}/state-{}/app", sc.m.dir.path().display(), sc.prefix),
        format!("/var/backup/{}", sc.prefix),
    )
}

/// The writing app on `port`, its data in `dir`.
fn writer(port: u16, dir: &str) -> Value {
    json!({
        "image": IMAGE,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "volumes": [{ "host": dir, "container": "/config" }],
        "environment": { "FAKE_STYLE": "arr", "FAKE_DB": "/config/app.db" },
        "health": { "http": "/ping", "port": 8080, "expectStatus": 200, "interval": "2s" },
        "stopTimeout": 5,
        "startTimeout": 30,
        "backup": { "databases": ["app.db"], "exclude": ["cache"] },
    })
}

/// Install and start the writer with a config file and an excluded cache;
/// wait until it has written some rows.
fn start_writer(sc: &Scenario) -> Result<u16> {
    let port = free_port()?;
    let (dir, _) = dirs(sc);
    // Journals are per service name: none left by an earlier scenario.
    sc.m.ok(&["rm", "-rf", "/var/lib/nixarr-units/migrations/app"])?;
    sc.m.ok(&["mkdir", "-p", &format!("{dir}/cache")])?;
    sc.m.ok(&[
        "sh",
        "-c",
        &format!("echo '<Config/>' > {dir}/config.xml; echo c > {dir}/cache/x"),
    ])?;
    let mut spec = sc.spec(json!({ "app": writer(port, &dir) }));
    // And the stack's scheduled backup (started by hand below).
    spec["backup"] = json!({ "schedule": "daily", "dir": format!("/var/backup/{}-timer", sc.prefix), "keep": 2 });
    sc.install(&spec)?;
    sc.start_target()?;
    wait_for(
        "rows in the app's database",
        Duration::from_secs(60),
        || Ok(rows(port).ok().filter(|(n, _)| *n >= 50)),
    )?;
    Ok(port)
}

fn get(port: u16, path: &str) -> Result<String> {
    let (status, _, body) = harness::http_get(port, path)?;
    ensure!(status == 200, "GET {path}: {status}");
    Ok(String::from_utf8_lossy(&body).trim().to_owned())
}

/// (rows, highest id) the app serves.
fn rows(port: u16) -> Result<(u64, u64)> {
    let body = get(port, "/rows")?;
    let mut it = body.split_whitespace().map(str::parse::<u64>);
    match (it.next(), it.next()) {
        (Some(Ok(n)), Some(Ok(max))) => Ok((n, max)),
        _ => anyhow::bail!("GET /rows: {body:?}"),
    }
}

fn marks(port: u16) -> Result<Vec<String>> {
    Ok(get(port, "/marks")?.lines().map(str::to_owned).collect())
}

fn mark(port: u16, name: &str) -> Result<()> {
    get(port, &format!("/ctl/mark/{name}")).map(drop)
}

/// `nixarr-units ARGS…` in the machine.
fn cli(sc: &Scenario, args: &[&str]) -> Result<Run> {
    let exe = format!("{MACHINE_BIN_DIR}/nixarr-units");
    let mut argv = vec![exe.as_str()];
    argv.extend_from_slice(args);
    Ok(Run::from(sc.m.exec(&argv)?))
}

/// Take a backup (JSON) and return its directory.
fn backup(sc: &Scenario, extra: &[&str]) -> Result<(String, Value)> {
    let (_, to) = dirs(sc);
    let mut args = vec!["backup", "app", "--to", &to, "--json"];
    args.extend_from_slice(extra);
    let out = cli(sc, &args)?.ok("backup")?;
    let v = out.json()?;
    let o = v[0].clone();
    let path = o["path"]
        .as_str()
        .with_context(|| format!("no path in {o}"))?
        .to_owned();
    Ok((path, o))
}

/// The rows and marks in a backed-up database (a copy of it is opened,
/// so that the backup stays as it is), and its integrity check.
fn backed_up(sc: &Scenario, path: &str) -> Result<(u64, Vec<String>, String)> {
    let t = tempfile::tempdir()?;
    let copy = t.path().join("app.db");
    std::fs::copy(
        sc.m.root()
            .join(path.trim_start_matches('/'))
            .join("data/app.db"),
        &copy,
    )?;
    let c = rusqlite::Connection::open(&copy)?;
    let n: i64 = c.query_row("SELECT count(*) FROM rows", [], |r| r.get(0))?;
    let mut st = c.prepare("SELECT name FROM marks ORDER BY rowid")?;
    let marks = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    Ok((u64::try_from(n)?, marks, check))
}

fn backup_and_restore(sc: &mut Scenario) -> Result<()> {
    let port = start_writer(sc)?;
    let (dir, to) = dirs(sc);
    mark(port, "before-backup")?;
    let (committed, _) = rows(port)?;
    let started = Instant::now();
    let (path, o) = backup(sc, &[])?;
    sc.notes.push(format!(
        "backup of a database being written: {:.2}s",
        started.elapsed().as_secs_f64()
    ));
    ensure!(o["method"] == "online", "not online: {o}");
    ensure!(o["databases"][0]["integrityCheck"] == "ok", "{o}");
    let (n, backed_marks, check) = backed_up(sc, &path)?;
    ensure!(check == "ok", "integrity_check of the copy: {check}");
    ensure!(
        n >= committed,
        "the backup holds {n} rows; {committed} were committed before it began"
    );
    ensure!(
        backed_marks == ["before-backup"],
        "marks in the backup: {backed_marks:?}"
    );
    // The app goes on writing (a row each 10 ms; give a loaded host time).
    wait_for(
        &format!("the app to write past the {n} rows in the backup"),
        Duration::from_secs(10),
        || Ok(rows(port).ok().filter(|(after, _)| *after > n)),
    )?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(
        sc.m.root()
            .join(path.trim_start_matches('/'))
            .join("manifest.json"),
    )?)?;
    ensure!(
        manifest["imageId"]
            .as_str()
            .is_some_and(|i| i.starts_with("sha256:")),
        "no image id in the manifest: {}",
        manifest["imageId"]
    );
    let files: Vec<&str> = manifest["files"]
        .as_array()
        .context("files")?
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    ensure!(
        files.contains(&"config.xml")
            && !files.contains(&"cache")
            && !files.contains(&"app.db-wal"),
        "files in the backup: {files:?}"
    );

    // Restore: the mark made after the backup is gone, the app writes on.
    mark(port, "after-backup")?;
    sc.m.ok(&["sh", "-c", &format!("echo c2 > {dir}/cache/x")])?;
    cli(sc, &["restore", "app", "--from", &path, "--timeout", "60"])?.ok("restore")?;
    ensure!(
        marks(port)? == ["before-backup"],
        "marks after the restore: {:?}",
        marks(port)?
    );
    let (restored, _) = rows(port)?;
    ensure!(
        restored >= n,
        "{restored} rows after the restore, {n} in the backup"
    );
    ensure!(
        sc.m.ok(&["cat", &format!("{dir}/cache/x")])?.trim() == "c2",
        "the excluded cache was not kept as it was"
    );
    // Kept until finalize; a second restore is refused until then.
    let aside = format!(
        "{}/state-{}/.app.nixarr-migrate-before-restore",
        sc.m.dir.path().display(),
        sc.prefix
    );
    ensure!(
        sc.m.exec(&["test", "-d", &aside])?.status.success(),
        "nothing kept aside"
    );
    cli(sc, &["restore", "app", "--from", &path])?
        .refused("a restore over an unfinalized one", "--finalize")?;
    cli(sc, &["restore", "app", "--finalize"])?.ok("finalize")?;
    ensure!(
        !sc.m.exec(&["test", "-e", &aside])?.status.success(),
        "finalize left {aside}"
    );

    // Retention: three more with --keep 2 leave two.
    for _ in 0..3 {
        backup(sc, &["--keep", "2"])?;
    }
    let left = sc.m.ok(&["ls", &format!("{to}/app")])?;
    let left: Vec<&str> = left.lines().collect();
    ensure!(left.len() == 2, "after --keep 2: {left:?}");
    timer_service(sc)?;
    allow_stop(sc)
}

/// The hardened `<prefix>-backup.service` the timer starts backs the app
/// up while it runs.
fn timer_service(sc: &mut Scenario) -> Result<()> {
    let unit = format!("{}-backup.service", sc.prefix);
    ensure!(
        sc.m.systemctl(&[
            "show",
            "-p",
            "ActiveState",
            "--value",
            &format!("{}-backup.timer", sc.prefix)
        ])?
        .trim()
            == "active",
        "the backup timer is not active with the stack"
    );
    let started = sc.m.exec(&["systemctl", "start", &unit])?;
    let log =
        sc.m.ok(&["journalctl", "--no-pager", "-o", "cat", "-u", &unit])?;
    ensure!(started.status.success(), "{unit} failed:\n{log}");
    let dir = format!("/var/backup/{}-timer/app", sc.prefix);
    let made = sc.m.ok(&["ls", &dir])?;
    ensure!(
        made.lines().count() == 1,
        "{unit} made {made:?} in {dir}:\n{log}"
    );
    ensure!(
        log.contains("(online,"),
        "{unit} did not copy online:\n{log}"
    );
    Ok(())
}

/// A service that declares no database is copied only stopped, and only
/// with --allow-stop; it runs again afterwards.
fn allow_stop(sc: &mut Scenario) -> Result<()> {
    let port = free_port()?;
    let dir = format!("{}/state-{}/files", sc.m.dir.path().display(), sc.prefix);
    let (_, to) = dirs(sc);
    sc.m.ok(&[
        "sh",
        "-c",
        &format!("mkdir -p {dir} && echo s > {dir}/settings.json"),
    ])?;
    let mut spec = sc.spec(json!({
        "app": writer(free_port()?, &dirs(sc).0),
        "files": {
            "image": IMAGE,
            "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
            "volumes": [{ "host": dir, "container": "/config" }],
            "health": { "http": "/ping", "port": 8080, "expectStatus": 200, "interval": "2s" },
            "stopTimeout": 5,
            "backup": {},
        },
    }));
    spec["services"]["app"]["backup"] = json!(null);
    sc.install(&spec)?;
    sc.m.systemctl(&["start", &sc.unit("files")])?;
    let out = cli(sc, &["backup", "files", "--to", &to])?;
    ensure!(
        out.code == 1
            && out.stdout.contains("--allow-stop")
            && out.stdout.contains("declares no SQLite database"),
        "backup without --allow-stop: {out:?}"
    );
    let pid =
        sc.m.systemctl(&["show", "-p", "MainPID", "--value", &sc.unit("files")])?;
    let out = cli(
        sc,
        &["backup", "files", "--to", &to, "--allow-stop", "--json"],
    )?
    .ok("--allow-stop")?;
    let o = out.json()?;
    ensure!(
        o[0]["method"] == "stopped" && o[0]["stoppedBecause"].is_string(),
        "{o}"
    );
    ensure!(
        sc.m.active_state(&sc.unit("files"))? == "active",
        "not started again"
    );
    let pid2 =
        sc.m.systemctl(&["show", "-p", "MainPID", "--value", &sc.unit("files")])?;
    ensure!(pid != pid2, "the service was not stopped for the copy");
    // Left out with "backup": null, and said so with --all.
    let o = cli(
        sc,
        &["backup", "--all", "--to", &to, "--allow-stop", "--json"],
    )?
    .ok("--all")?
    .json()?;
    let app = o
        .as_array()
        .and_then(|a| a.iter().find(|x| x["service"] == "app"))
        .cloned();
    ensure!(app.is_some_and(|a| a["skipped"].is_string()), "--all: {o}");
    Ok(())
}

/// The NAR hash of the app's data (with the app stopped).
fn stopped_state(sc: &Scenario, dir: &str) -> Result<String> {
    nixarr_units::nixfmt::nar_hash(&sc.m.root().join(dir.trim_start_matches('/')))
}

/// Run `restore` in the machine and SIGKILL it as soon as it starts moving
/// the data (the journal says so); returns the phase it was killed in.
fn kill_restore_midway(sc: &Scenario, path: &str) -> Result<String> {
    let exe = format!("{MACHINE_BIN_DIR}/nixarr-units");
    let journal =
        sc.m.root()
            .join("var/lib/nixarr-units/migrations/app/restore.json");
    let mut child = Command::new("nsenter")
        .args(["-t", &sc.m.leader.to_string(), "-a", "--"])
        .args([&exe, "restore", "app", "--from", path, "--timeout", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let start = Instant::now();
    let phase = loop {
        let j: Option<Value> = std::fs::read(&journal)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        // This run's journal (not an earlier, rolled-back one's).
        let midway = |j: &Value| {
            j["asideBegun"] == true && !matches!(j["phase"].as_str(), Some("rolled-back" | "done"))
        };
        if let Some(j) = j.filter(midway) {
            break j["phase"].as_str().unwrap_or("?").to_owned();
        }
        if let Some(st) = child.try_wait()? {
            anyhow::bail!("restore ended ({st}) before it moved the data");
        }
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "restore never moved the data"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    // nsenter forks to enter the machine's PID namespace: the restore is
    // its child (the host sees its PID too).
    let pid = child.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
    for c in children.split_whitespace() {
        Command::new("kill").args(["-KILL", c]).status()?;
    }
    child.wait()?;
    let j: Value = serde_json::from_slice(&std::fs::read(&journal)?)?;
    Ok(format!(
        "{phase} (journal then: {}, movedAside {})",
        j["phase"], j["movedAside"]
    ))
}

fn killed_restore(sc: &mut Scenario) -> Result<()> {
    let port = start_writer(sc)?;
    let (dir, _) = dirs(sc);
    // Enough files that copying them in takes a moment.
    sc.m.ok(&[
        "sh",
        "-c",
        &format!("mkdir -p {dir}/many && for i in $(seq 1 3000); do echo $i > {dir}/many/$i; done"),
    ])?;
    mark(port, "before-backup")?;
    let (path, _) = backup(sc, &[])?;
    mark(port, "after-backup")?;
    sc.m.systemctl(&["stop", &sc.unit("app")])?;
    let before = stopped_state(sc, &dir)?;

    let killed = kill_restore_midway(sc, &path)?;
    sc.notes.push(format!("first kill in phase {killed}"));
    cli(sc, &["restore", "app", "--rollback", "--timeout", "60"])?.ok("rollback")?;
    let after = stopped_state(sc, &dir)?;
    ensure!(
        after == before,
        "NAR hash {after} after the rollback, {before} before the restore"
    );
    ensure!(
        sc.m.active_state(&sc.unit("app"))? == "inactive",
        "the rollback started an app that was stopped"
    );

    let killed = kill_restore_midway(sc, &path)?;
    sc.notes.push(format!("second kill in phase {killed}"));
    cli(sc, &["restore", "app", "--from", &path, "--timeout", "60"])?.ok("restore again")?;
    ensure!(
        sc.m.active_state(&sc.unit("app"))? == "active",
        "not active after the restore"
    );
    ensure!(
        marks(port)? == ["before-backup"],
        "marks after the restore: {:?}",
        marks(port)?
    );
    let many = sc.m.ok(&["sh", "-c", &format!("ls {dir}/many | wc -l")])?;
    ensure!(many.trim() == "3000", "{} files in many/", many.trim());
    cli(sc, &["restore", "app", "--finalize"])?.ok("finalize")?;
    Ok(())
}

fn never_healthy_rolls_back(sc: &mut Scenario) -> Result<()> {
    let port = start_writer(sc)?;
    let (dir, _) = dirs(sc);
    // The backup holds `broken`: restored, the app never turns healthy.
    sc.m.ok(&["touch", &format!("{dir}/broken")])?;
    let (path, _) = backup(sc, &[])?;
    sc.m.ok(&["rm", &format!("{dir}/broken")])?;
    mark(port, "after-backup")?;
    let started = Instant::now();
    let out = cli(sc, &["restore", "app", "--from", &path, "--timeout", "20"])?;
    ensure!(
        out.code == 1 && out.stderr.contains("rolled back"),
        "restore of a never-healthy backup: {out:?}"
    );
    sc.notes.push(format!(
        "rolled back by itself in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    ensure!(
        sc.m.active_state(&sc.unit("app"))? == "active",
        "the app is not running again"
    );
    wait_for("the app to answer again", Duration::from_secs(60), || {
        Ok(marks(port).ok())
    })?;
    ensure!(
        marks(port)?.contains(&"after-backup".to_owned()),
        "the data from before the restore is not back: {:?}",
        marks(port)?
    );
    ensure!(
        !sc.m
            .exec(&["test", "-e", &format!("{dir}/broken")])?
            .status
            .success(),
        "the restored `broken` is still there"
    );
    // Not dropped silently: a rolled-back restore can be tried again.
    let j =
        sc.m.ok(&["cat", "/var/lib/nixarr-units/migrations/app/restore.json"])?;
    ensure!(j.contains("\"rolled-back\""), "journal: {j}");
    Ok(())
}
