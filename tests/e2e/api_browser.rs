//! End-to-end tests of `nixarr-units serve` from outside the machine, with
//! the tools its users and CI would point at it, on podman 4.3 only (neither
//! depends on the engine): the dashboard in headless Chromium driven by
//! Selenium (tests/e2e/dashboard.py), and schemathesis against the live
//! server with docs/api.yaml (tests/e2e/api_schema_hooks.py). The machine
//! shares the host's network, so both reach the API's TCP listener on
//! 127.0.0.1.
//!
//! Chromium, chromedriver and the Python packages are installed by
//! tests/run.sh (the packages in a venv, [`venv`]); without them the suite
//! says SKIPPED loudly. Runs as root only (CI does).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::api::{CONTROL, READ, Via, app, call, db_and_web, main_pid, with_api};
use crate::harness;
use crate::harness::{Backend, Scenario, ScenarioFn, free_port, wait_for};

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "1 dashboard in Chromium: every row, the restart button, a stop seen through /events, a screenshot",
        dashboard,
    ),
    (
        "2 schemathesis with docs/api.yaml: every route, schemas, no undocumented 5xx",
        schema,
    ),
];

#[test]
fn podman() {
    harness::runner::run_suite_with(
        "api browser and schema tests",
        Backend::Podman,
        SCENARIOS,
        missing(),
        |_| Ok(()),
        |_| {},
    );
}

/// The venv tests/run.sh installs Selenium and schemathesis into
/// (`NIXARR_E2E_VENV` overrides it).
fn venv() -> PathBuf {
    std::env::var_os("NIXARR_E2E_VENV").map_or_else(
        || PathBuf::from("/var/cache/nixarr-units/e2e-venv"),
        PathBuf::from,
    )
}

/// What this suite needs beyond the machine, if something is missing.
fn missing() -> Option<String> {
    let venv = venv();
    let needed = [
        PathBuf::from("/usr/bin/chromium"),
        PathBuf::from("/usr/bin/chromedriver"),
        venv.join("bin/python3"),
        venv.join("bin/schemathesis"),
    ];
    let absent: Vec<String> = needed
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    (!absent.is_empty()).then(|| {
        format!(
            "{} missing (tests/run.sh installs chromium, chromium-driver and the venv)",
            absent.join(", ")
        )
    })
}

/// Where this suite keeps what it leaves for people to look at (printed
/// in the log).
fn output_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-api-browser");
    fs_err::create_dir_all(&dir)?;
    Ok(dir)
}

/// How long the driver may take for one command (its own waits are
/// bounded by `WAIT`).
const WAIT: Duration = Duration::from_secs(60);

/// tests/e2e/dashboard.py, running: one command a line in, one answer a
/// line out.
struct Page {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
    /// Where the driver saves the page when a command fails.
    failshot: PathBuf,
}

impl Page {
    fn open(url: &str, token: &str, log: PathBuf, failshot: &Path) -> Result<Page> {
        let python = venv().join("bin/python3");
        let mut child = Command::new(&python)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["tests/e2e/dashboard.py", url, token])
            .env("NIXARR_E2E_WAIT", WAIT.as_secs().to_string())
            .env("NIXARR_E2E_FAILSHOT", failshot)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // Selenium must not look for a driver to download.
            .env("SE_OFFLINE", "true")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs_err::File::create(&log)?.into_parts().0)
            .spawn()
            .with_context(|| format!("starting {} tests/e2e/dashboard.py", python.display()))?;
        let stdin = child.stdin.take().context("driver without stdin")?;
        let out = child.stdout.take().context("driver without stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut page = Page {
            child,
            stdin,
            lines,
            log,
            failshot: failshot.to_owned(),
        };
        page.answer("opening the dashboard and typing the token")?;
        Ok(page)
    }

    fn answer(&mut self, what: &str) -> Result<Value> {
        let line = match self.lines.recv_timeout(WAIT + Duration::from_secs(30)) {
            Ok(line) => line,
            Err(e) => bail!(
                "dashboard.py gave no answer to {what} ({e}); its log:\n{}",
                fs_err::read_to_string(&self.log).unwrap_or_default()
            ),
        };
        if let Some(json) = line.strip_prefix("OK ") {
            return serde_json::from_str(json).with_context(|| format!("answer to {what}: {line}"));
        }
        bail!(
            "dashboard.py, {what}: {}\n(screenshot of the page: {})",
            line.strip_prefix("ERR ").unwrap_or(&line),
            self.failshot.display()
        )
    }

    fn send(&mut self, command: &str) -> Result<Value> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("sending `{command}` to dashboard.py"))?;
        self.answer(&format!("`{command}`"))
    }

    fn quit(mut self) -> Result<()> {
        writeln!(self.stdin, "quit")?;
        match harness::wait_child(&mut self.child, WAIT)? {
            Some(status) => ensure!(status.success(), "dashboard.py ended {status}"),
            None => bail!("dashboard.py did not end within {WAIT:?} of quit"),
        }
        Ok(())
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // Ours, by its handle: a driver still running after a failure.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// name → (state, health, reason) as /containers says and as the page shows.
type Shown = BTreeMap<String, (String, String, Value)>;

fn api_rows(v: &Value) -> Result<Shown> {
    v["containers"]
        .as_array()
        .context("containers is not an array")?
        .iter()
        .map(|r| {
            let name = r["container"].as_str().context("row without container")?;
            Ok((
                name.to_owned(),
                (
                    r["status"].as_str().unwrap_or_default().to_owned(),
                    r["health"]["state"].as_str().unwrap_or_default().to_owned(),
                    r["health"]["reason"].clone(),
                ),
            ))
        })
        .collect()
}

fn page_rows(v: &Value) -> Result<Shown> {
    v.as_object()
        .context("rows is not an object")?
        .iter()
        .map(|(name, r)| {
            Ok((
                name.clone(),
                (
                    r["state"].as_str().unwrap_or_default().to_owned(),
                    r["health"].as_str().unwrap_or_default().to_owned(),
                    r["reason"].clone(),
                ),
            ))
        })
        .collect()
}

// Why one long function: the steps share one page in one browser (the
// marker that proves no reload lives in it); split up, each would need it
// passed along.
fn dashboard(sc: &mut Scenario) -> Result<()> {
    let web_port = free_port()?;
    let sick_port = free_port()?;
    // `sick` turns unhealthy once started; an hour between the engine's
    // probes keeps it from being killed first.
    let mut sick = app(sick_port, "Healthy");
    sick["health"]["interval"] = json!("1h");
    let port = with_api(
        sc,
        json!({
            "web": app(web_port, "Healthy"),
            "db": app(free_port()?, "Healthy"),
            "sick": sick,
            "idle": app(free_port()?, "Healthy"),
        }),
    )?;
    sc.m.systemctl(&["start", &sc.unit("web"), &sc.unit("db"), &sc.unit("sick")])?;
    harness::http_get(sick_port, "/ctl/unhealthy")?;
    let tcp = Via::Tcp(port);
    wait_for(
        "web healthy and sick unhealthy in /containers",
        Duration::from_secs(60),
        || {
            let rows = api_rows(&call(sc, &tcp, "GET", "/containers", Some(READ), &[])?.json()?)?;
            let health = |n: &str| rows.get(n).map(|r| r.1.as_str());
            Ok(
                (health("web") == Some("healthy") && health("sick") == Some("unhealthy"))
                    .then_some(()),
            )
        },
    )?;

    let out = output_dir()?;
    let label = sc.m.label();
    let failshot = out.join(format!("dashboard-{label}-failed.png"));
    let log = sc.m.dir.path().join("dashboard.log");
    let mut page = Page::open(
        &format!("http://127.0.0.1:{port}/"),
        CONTROL,
        log,
        &failshot,
    )?;

    // Every service with the state and health /containers has.
    let rows = wait_for(
        "the page's rows to match /containers",
        Duration::from_secs(30),
        || {
            let rows = page.send("rows")?;
            let want = api_rows(&call(sc, &tcp, "GET", "/containers", Some(READ), &[])?.json()?)?;
            let got = page_rows(&rows)?;
            ensure!(got == want, "page {got:?}\n/containers {want:?}");
            Ok(Some(rows))
        },
    )?;
    let names: Vec<&str> = rows
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    ensure!(
        names == ["db", "idle", "sick", "web"],
        "rows of {names:?}, expected db, idle, sick, web"
    );
    ensure!(
        rows["idle"]["state"] == "stopped" && rows["sick"]["health"] == "unhealthy",
        "rows: {rows:#}"
    );
    ensure!(
        rows["web"]["links"] == json!([format!("http://127.0.0.1:{web_port}/")])
            && rows["web"]["buttons"] == json!(["start", "stop", "restart"]),
        "web's port link or buttons: {:#}",
        rows["web"]
    );

    // A refused action says why (409: web runs already).
    page.send("click web start")?;
    page.send("message web start: Container already running")?;

    // The restart button restarts the unit: a new MainPID, shown running.
    let before = main_pid(sc, "web")?;
    page.send("click web restart")?;
    let row = page.send(&format!("wait web running {before}"))?;
    let after = main_pid(sc, "web")?;
    ensure!(
        after != before && after != "0",
        "the restart button kept MainPID {before} (now {after})"
    );
    ensure!(
        row["pid"] == after.as_str() && sc.m.active_state(&sc.unit("web"))? == "active",
        "the row shows PID {} running; systemd: MainPID {after}, {}",
        row["pid"],
        sc.m.active_state(&sc.unit("web"))?
    );

    // A stop behind the page's back reaches its row through /events: the
    // page's stream is open (the API counted its 200), then systemctl stops
    // db, and the row changes with no reload.
    wait_for("the page's /events stream", Duration::from_secs(30), || {
        let m = call(sc, &tcp, "GET", "/metrics", Some(READ), &[])?;
        Ok(m.body
            .lines()
            .any(|l| {
                l.starts_with("nixarr_api_requests_total{")
                    && l.contains("route=\"/events\"")
                    && l.contains("code=\"200\"")
            })
            .then_some(()))
    })?;
    sc.m.systemctl(&["stop", &sc.unit("db")])?;
    page.send("wait db stopped")?;
    page.send("same-page")?;

    let shot = out.join(format!("dashboard-{label}.png"));
    page.send(&format!("screenshot {}", shot.display()))?;
    eprintln!("     dashboard screenshot: {}", shot.display());
    sc.notes
        .push(format!("dashboard screenshot: {}", shot.display()));
    page.quit()
}

/// The schemathesis configuration: the stack's service names as a
/// dictionary for `{name}` and batch bodies (else nearly every request
/// would be a 404), and `follow=0` (a followed log never ends, and
/// schemathesis reads whole bodies; api.rs checks that it streams).
fn schemathesis_config(names: &[&str]) -> String {
    let values: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!(
        "[dictionaries.services]\nvalues = [{}]\n\n[parameters]\n\
         \"path.name\" = {{ dictionary = \"services\", probability = 0.6 }}\n\
         \"body.containers[*]\" = {{ dictionary = \"services\", probability = 0.6 }}\n\
         \"query.follow\" = \"0\"\n",
        values.join(", ")
    )
}

/// Drop-ins that turn systemd's start rate limit off for some units, removed
/// again when dropped. The rendered units allow 5 starts in 300 s
/// (templates/); schemathesis starts and restarts the same two services
/// more often than that, and the sixth start would fail with
/// `start-limit-hit`, a job failure of systemd's making, not the API's.
struct NoStartLimit<'a> {
    m: &'a harness::Machine,
    dirs: Vec<PathBuf>,
}

impl<'a> NoStartLimit<'a> {
    fn install(sc: &Scenario<'a>, services: &[&str]) -> Result<Self> {
        let mut dirs = Vec::new();
        for svc in services {
            let dir =
                sc.m.root()
                    .join(format!("etc/systemd/system/{}.d", sc.unit(svc)));
            fs_err::create_dir_all(&dir)?;
            fs_err::write(
                dir.join("nixarr-e2e-no-start-limit.conf"),
                "[Unit]\nStartLimitIntervalSec=0\n",
            )?;
            dirs.push(dir);
        }
        sc.m.daemon_reload()?;
        Ok(NoStartLimit { m: sc.m, dirs })
    }
}

impl Drop for NoStartLimit<'_> {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = fs_err::remove_dir_all(d);
        }
        let _ = self.m.daemon_reload();
    }
}

/// How long schemathesis may run before it is stopped as hung.
const SCHEMATHESIS_LIMIT: Duration = Duration::from_secs(240);

// The stack: two services (web depends on db) that start and stop cleanly,
// so the POSTs schemathesis sends (start, stop, restart, batches) are
// harmless; the scenario's cleanup removes whatever state they leave.
fn schema(sc: &mut Scenario) -> Result<()> {
    let port = db_and_web(sc)?;
    let _limits = NoStartLimit::install(sc, &["db", "web"])?;
    sc.m.systemctl(&["start", &sc.unit("web")])?;
    let config = sc.m.dir.path().join("schemathesis.toml");
    fs_err::write(&config, schemathesis_config(&["db", "web"]))?;
    let out = output_dir()?;
    let junit = out.join(format!("schemathesis-{}.xml", sc.m.label()));
    let log_path = sc.m.dir.path().join("schemathesis.log");
    let log = fs_err::File::create(&log_path)?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(venv().join("bin/schemathesis"))
        // Its cache of failures (.schemathesis/) goes with the machine's
        // scratch directory, not into the repo.
        .current_dir(sc.m.dir.path())
        .env("SCHEMATHESIS_HOOKS", "api_schema_hooks")
        .env("PYTHONPATH", repo.join("tests/e2e"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(repo.join("docs/api.yaml"))
        .arg("--url")
        .arg(format!("http://127.0.0.1:{port}"))
        .args(["--header", &format!("Authorization: Bearer {CONTROL}")])
        // Every check, with the 5xx rule of api_schema_hooks.py instead of
        // the built-in one; /events never ends (api.rs reads it).
        .args(["--checks", "all", "--exclude-checks", "not_a_server_error"])
        .args(["--exclude-path", "/events"])
        .args(["--workers", "1", "--max-examples", "10"])
        .args(["--request-timeout", "60"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&junit)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?.into_parts().0)
        .stderr(log.into_parts().0)
        .spawn()
        .context("starting schemathesis")?;
    let start = Instant::now();
    let status = harness::wait_child(&mut child, SCHEMATHESIS_LIMIT)?;
    let output = fs_err::read_to_string(&log_path)?;
    eprintln!(
        "---- schemathesis (report: {})\n{output}----",
        junit.display()
    );
    match status {
        Some(s) if s.success() => {}
        Some(s) => bail!("schemathesis failed ({s}); see its output above"),
        None => bail!("schemathesis did not finish within {SCHEMATHESIS_LIMIT:?}"),
    }
    if let Some(line) = output.lines().find(|l| l.contains(" generated, ")) {
        sc.notes.push(format!(
            "schemathesis: {} in {:.0} s",
            line.trim(),
            start.elapsed().as_secs_f32()
        ));
    }
    // The server lived through it and still answers.
    call(sc, &Via::Tcp(port), "GET", "/containers", Some(READ), &[])?
        .expect(200, "GET /containers after schemathesis")?;
    Ok(())
}
