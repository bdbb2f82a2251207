//! Start-up benchmark (issue 12; run by benches/startup-bench.sh, see
//! benches/README.md): cold start of a dependency chain four deep whose
//! apps answer their health check 2 s after they start (the fake app's
//! `FAKE_READY_AFTER`), with the catalog's 30 s health interval.
//! `systemctl start <prefix>.target` returns once every service is active,
//! and a service is active only once its health gate passed (podman 5:
//! `--sdnotify=healthy`; podman 4 and Docker: the `wait-healthy`
//! `ExecStartPost=`). Measured on the end-to-end machines (real systemd in
//! systemd-nspawn, see tests/e2e/harness/) on podman 4 (Debian 12), podman 5
//! (the trixie machine) and Docker, and printed beside the critical path
//! (4 × 2 s).
//!
//! `cargo bench --bench startup -- [--runs N] [--engines podman4,podman5,docker]`
//! (as root). Under `cargo test` (no `--bench`) it only says how to run it.

// The end-to-end tests' harness; this bench uses only part of it (the
// e2e test binary uses all of it, without this allow).
#[allow(dead_code, unused_imports)]
#[path = "../tests/e2e/harness/mod.rs"]
mod e2e;

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use e2e::{Backend, BootOptions, IMAGE, Machine, Scenario, ScenarioFn, free_port};
use serde_json::{Value, json};

const DEPTH: usize = 4;
/// Seconds after its start at which each app answers.
const READY_AFTER: f64 = 2.0;
const HEALTH_CMD: &str = "wget -q -O /dev/null http://127.0.0.1:8080/ping";
/// Names of the runs (one scenario each, so each has its own prefix and
/// cleanup).
const RUN_NAMES: &[&str] = &[
    "cold start 1",
    "cold start 2",
    "cold start 3",
    "cold start 4",
    "cold start 5",
    "cold start 6",
    "cold start 7",
    "cold start 8",
    "cold start 9",
];

/// One measured cold start.
struct Sample {
    /// `systemctl start <prefix>.target`, seconds.
    total: f64,
    /// Per level: from the unit's main process start to the unit active.
    levels: Vec<f64>,
}

static SAMPLES: Mutex<Vec<Sample>> = Mutex::new(Vec::new());

fn service(port: u16, depends_on: Option<String>) -> Value {
    let mut v = json!({
        "image": IMAGE,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "environment": { "FAKE_STYLE": "arr", "FAKE_READY_AFTER": "2" },
        // The catalog's defaults: 30 s interval, 3 retries; a start period.
        "health": { "cmd": HEALTH_CMD, "startPeriod": "60s" },
        "stopTimeout": 10,
        "startTimeout": 180,
    });
    if let Some(dep) = depends_on {
        v["dependsOn"] = json!([dep]);
    }
    v
}

fn cold_start(sc: &mut Scenario) -> Result<()> {
    let mut services = serde_json::Map::new();
    for level in 1..=DEPTH {
        let dep = (level > 1).then(|| format!("l{}", level - 1));
        services.insert(format!("l{level}"), service(free_port()?, dep));
    }
    sc.install(&sc.spec(Value::Object(services)))?;
    let start = Instant::now();
    sc.start_target()?;
    let total = start.elapsed().as_secs_f64();
    let mut levels = Vec::new();
    for level in 1..=DEPTH {
        let svc = format!("l{level}");
        let unit = sc.unit(&svc);
        let state = sc.m.active_state(&unit)?;
        ensure!(
            state == "active",
            "{unit} is {state} after the target started"
        );
        // Healthy by the probe itself, not only by the unit's word.
        sc.m.engine(&["exec", &sc.container(&svc), "sh", "-c", HEALTH_CMD])
            .with_context(|| format!("{svc} does not answer its health check"))?;
        let started = sc.m.timestamp(&unit, "Service", "ExecMainStartTimestamp")?;
        let active = sc.m.timestamp(&unit, "Unit", "ActiveEnterTimestamp")?;
        levels.push(active.saturating_sub(started) as f64 / 1e6);
    }
    SAMPLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Sample { total, levels });
    Ok(())
}

struct Row {
    engine: String,
    totals: Vec<f64>,
    levels: Vec<Vec<f64>>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn bench_engine(which: &str, runs: usize) -> Result<Row> {
    let (backend, opts) = match which {
        "podman4" => (
            Backend::Podman,
            BootOptions {
                private_storage: true,
                ..BootOptions::default()
            },
        ),
        "podman5" => (Backend::Podman, e2e::PODMAN5),
        "docker" => (Backend::Docker, BootOptions::default()),
        other => bail!("unknown engine {other:?}: give podman4, podman5 or docker"),
    };
    if let Some(why) = opts.trixie.then(e2e::machine::trixie_missing).flatten() {
        bail!("{why}");
    }
    let m = Machine::boot_with(backend, opts)?;
    let version = match backend {
        Backend::Podman => m.engine(&["version", "--format", "{{.Client.Version}}"])?,
        Backend::Docker => m.engine(&["version", "--format", "{{.Server.Version}}"])?,
    };
    let engine = format!("{} {}", backend.name(), version.trim());
    SAMPLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    let scenarios: Vec<(&str, ScenarioFn)> = RUN_NAMES[..runs]
        .iter()
        .map(|n| (*n, cold_start as ScenarioFn))
        .collect();
    let failed = e2e::runner::run_scenarios(&m, &scenarios);
    drop(m);
    ensure!(failed.is_empty(), "{engine}: runs failed: {failed:?}");
    let samples = std::mem::take(
        &mut *SAMPLES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok(Row {
        engine,
        totals: samples.iter().map(|s| s.total).collect(),
        levels: (0..DEPTH)
            .map(|l| samples.iter().map(|s| s.levels[l]).collect())
            .collect(),
    })
}

fn run(args: &[String]) -> Result<bool> {
    let mut runs = 3;
    let mut engines = vec![
        "podman4".to_owned(),
        "podman5".to_owned(),
        "docker".to_owned(),
    ];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--runs" => {
                runs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=RUN_NAMES.len()).contains(n))
                    .with_context(|| format!("--runs takes 1-{}", RUN_NAMES.len()))?;
            }
            "--engines" => {
                engines = it
                    .next()
                    .context("--engines takes a list such as podman4,podman5,docker")?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
            }
            other => bail!("unknown argument {other:?} (--runs N, --engines LIST)"),
        }
    }
    if let Some(why) = e2e::skip_reason() {
        bail!("needs root and systemd-nspawn: {why}");
    }
    e2e::clean_leftovers();
    let mut rows = Vec::new();
    for e in &engines {
        eprintln!("== {e}: {runs} cold starts");
        rows.push(bench_engine(e, runs)?);
    }
    let critical = DEPTH as f64 * READY_AFTER;
    let target = critical + DEPTH as f64;
    println!(
        "\ncold start of a dependency chain {DEPTH} deep, apps ready {READY_AFTER:.0} s after \
         start, health interval 30 s;\n`systemctl start <prefix>.target` until every service \
         is healthy, median of {runs} runs [min-max], seconds"
    );
    println!(
        "  {:<22} {:>22} {:>14}   per level (unit start -> active)",
        "engine", "systemctl start", "critical path"
    );
    let mut all_ok = true;
    for r in &rows {
        let min = r.totals.iter().copied().fold(f64::INFINITY, f64::min);
        let max = r.totals.iter().copied().fold(0.0, f64::max);
        let med = median(&r.totals);
        let levels: Vec<String> = r
            .levels
            .iter()
            .map(|l| format!("{:.1}", median(l)))
            .collect();
        let ok = med <= target;
        all_ok &= ok;
        println!(
            "  {:<22} {:>8.1} [{:>5.1}-{:>5.1}] {:>14.1}   {}   {}",
            r.engine,
            med,
            min,
            max,
            critical,
            levels.join(" "),
            if ok { "PASS" } else { "MISS" }
        );
    }
    println!(
        "  target: at most the critical path + 1 s per level ({target:.0} s){}",
        if all_ok { "" } else { ": MISSED" }
    );
    Ok(all_ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "startup benchmark: not run under cargo test; run benches/startup-bench.sh \
             (cargo bench --bench startup) as root"
        );
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("startup benchmark: {e:#}");
            ExitCode::from(2)
        }
    }
}
