//! Reconcile benchmark (issue 17; run by benches/reconcile-bench.sh, see
//! benches/README.md): one `nixarr-units reconcile` pass over 500 labelled
//! containers and their units, beside the floor any such pass has to pay,
//! `podman ps --filter label=… --format json` plus `systemctl show` of the
//! same units, one after the other.
//!
//! Measured on the end-to-end podman machine (real systemd as PID 1 in
//! systemd-nspawn, real podman inside, see tests/e2e/harness/): a rendered
//! stack of `--units` services running the fake app's busybox image as
//! `sleep`, started in batches of `--batch` units. Every command runs inside
//! the machine through `nsenter`, as root; the pass reads systemd through
//! dbus-daemon, as any client would, and `systemctl` through its private
//! socket.
//!
//! `cargo test --bench reconcile -- --bench --bin PATH [--units N]
//! [--runs N] [--batch N] [--engine podman4|podman5]` (as root; PATH is the
//! release binary to measure). Under `cargo test` (no `--bench`) it only
//! says how to run it.

// The end-to-end tests' harness; this bench uses only part of it (the
// e2e test binary uses all of it, without this allow).
#[allow(dead_code, unused_imports)]
#[path = "../tests/e2e/harness/mod.rs"]
mod e2e;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Output};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use e2e::{Backend, BootOptions, Machine, Scenario, output_text};
use serde_json::Value;

/// The targets: ours at most this times the floor, and at most this long.
const TARGET_RATIO: f64 = 1.2;
const TARGET_MS: f64 = 1500.0;
/// The stack's network: podman's default /24 holds 253 containers, so the
/// bench creates it first with room for every one (the network unit's
/// `podman network create` then finds it there).
const SUBNET: &str = "10.213.0.0/16";
/// The properties the floor's `systemctl show` reads: what the pass needs of
/// a running unit (its states and cgroup).
const SHOW_PROPS: &str = "LoadState,ActiveState,SubState,ControlGroup";

struct Options {
    bin: PathBuf,
    units: usize,
    runs: usize,
    batch: usize,
    engine: String,
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut o = Options {
        bin: PathBuf::from(e2e::BIN),
        units: 500,
        runs: 5,
        batch: 25,
        engine: "podman4".to_owned(),
    };
    let mut it = args.iter();
    let number = |v: Option<&String>, what: &str| -> Result<usize> {
        v.and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .with_context(|| format!("{what} takes a positive number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--bin" => o.bin = PathBuf::from(it.next().context("--bin takes a path")?),
            "--units" => o.units = number(it.next(), "--units")?,
            "--runs" => o.runs = number(it.next(), "--runs")?,
            "--batch" => o.batch = number(it.next(), "--batch")?,
            "--engine" => {
                o.engine = it
                    .next()
                    .context("--engine takes podman4 or podman5")?
                    .clone()
            }
            other => bail!(
                "unknown argument {other:?} (--bin PATH, --units N, --runs N, --batch N, \
                 --engine podman4|podman5)"
            ),
        }
    }
    Ok(o)
}

/// Run `argv` inside the machine and time it (spawn to exit).
fn timed(m: &Machine, argv: &[&str]) -> Result<(f64, Output)> {
    let start = Instant::now();
    let out = m.exec(argv)?;
    Ok((start.elapsed().as_secs_f64() * 1000.0, out))
}

/// [`timed`], failing unless it exits with `code`.
fn timed_ok(m: &Machine, argv: &[&str], code: i32) -> Result<f64> {
    let (ms, out) = timed(m, argv)?;
    ensure!(
        out.status.code() == Some(code),
        "{argv:?} exited {} (expected {code}):\n{}",
        out.status,
        output_text(&out)
    );
    Ok(ms)
}

/// The stack: `units` services running `sleep` in the fake app's image,
/// no ports, volumes or probes; stopped at once.
fn spec(sc: &Scenario, units: usize) -> Value {
    let services: serde_json::Map<String, Value> = (0..units)
        .map(|i| (format!("s{i:03}"), e2e::sleeping_app(600)))
        .collect();
    sc.spec(Value::Object(services))
}

/// Install the stack, start its units `batch` at a time, then its target;
/// check every unit is active.
fn start_stack(sc: &Scenario, units: &[String], batch: usize) -> Result<()> {
    let m = sc.m;
    sc.install(&spec(sc, units.len()))?;
    m.engine(&["network", "create", "--subnet", SUBNET, &sc.prefix])?;
    let started = Instant::now();
    for (i, chunk) in units.chunks(batch).enumerate() {
        let mut argv = vec!["start"];
        argv.extend(chunk.iter().map(String::as_str));
        m.systemctl(&argv)
            .with_context(|| format!("starting batch {i}"))?;
        eprintln!(
            "== {} of {} units started ({:.0} s)",
            (i * batch + chunk.len()).min(units.len()),
            units.len(),
            started.elapsed().as_secs_f64()
        );
    }
    sc.start_target()?;
    let mut argv = vec!["show", "--value", "-p", "ActiveState"];
    argv.extend(units.iter().map(String::as_str));
    let states = m.systemctl(&argv)?;
    let active = states.lines().filter(|l| *l == "active").count();
    ensure!(
        active == units.len(),
        "{active} of {} units are active",
        units.len()
    );
    Ok(())
}

/// Check once what each side reads and says: the pass finds every unit and
/// container `ok`; `podman ps` lists every container; `systemctl show`
/// gives every unit's cgroup.
fn check(m: &Machine, ours: &[&str], ps: &[&str], show: &[&str], n: usize) -> Result<()> {
    let (_, out) = timed(m, ours)?;
    ensure!(
        out.status.success(),
        "the pass did not find everything ok ({}):\n{}",
        out.status,
        output_text(&out)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).context("the pass's JSON")?;
    let entries = |list: &str| plan[list].as_array().cloned().unwrap_or_default();
    let (containers, units) = (entries("containers"), entries("units"));
    let run_by_unit = containers
        .iter()
        .filter(|e| {
            e["class"] == "ok"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("run by") && d.ends_with(", in its cgroup"))
        })
        .count();
    ensure!(
        containers.len() == n && run_by_unit == n,
        "the pass saw {} containers, {run_by_unit} of them ok and run by their unit, in its \
         cgroup (expected {n})",
        containers.len()
    );
    let ok_units = units.iter().filter(|e| e["class"] == "ok").count();
    ensure!(
        units.len() == n && ok_units == n,
        "the pass saw {} units, {ok_units} of them ok (expected {n})",
        units.len()
    );
    let (_, out) = timed(m, ps)?;
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).context("podman ps's JSON")?;
    ensure!(listed.len() == n, "podman ps listed {}", listed.len());
    let (_, out) = timed(m, show)?;
    let cgroups = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ControlGroup=/"))
        .count();
    ensure!(cgroups >= n, "systemctl show gave {cgroups} cgroups");
    Ok(())
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(v: &[f64]) -> Stats {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Stats {
        median,
        min: s[0],
        max: s[n - 1],
    }
}

/// Boot the machine, start the stack, measure, print; `Ok(true)` when both
/// targets are met.
fn run(o: &Options) -> Result<bool> {
    let opts = match o.engine.as_str() {
        "podman4" => BootOptions {
            private_storage: true,
            ..BootOptions::default()
        },
        "podman5" => e2e::PODMAN5,
        other => bail!("unknown engine {other:?}: give podman4 or podman5"),
    };
    if let Some(why) = e2e::skip_reason() {
        bail!("needs root and systemd-nspawn: {why}");
    }
    e2e::clean_leftovers();
    let m = Machine::boot_with(Backend::Podman, opts)?;
    // The machine sees its temporary directory at the same path.
    let bin = m.dir.path().join("nixarr-units-measured");
    fs_err::copy(&o.bin, &bin)?;
    let bin = bin
        .to_str()
        .context("temporary path is not UTF-8")?
        .to_owned();
    let version = m.engine(&["version", "--format", "{{.Client.Version}}"])?;
    let systemd = m.ok(&["systemctl", "--version"])?;
    let sc = Scenario {
        m: &m,
        prefix: format!("rb{}", e2e::run_id()),
        notes: Vec::new(),
    };
    let result = measure(&sc, o, &bin);
    // Stop everything before the machine powers off (500 containers take
    // longer than its 30 s poweroff grace).
    let _ = m.exec(&[
        "systemctl",
        "stop",
        &sc.target(),
        &format!("{}-*", sc.prefix),
    ]);
    let samples = result?;
    drop(m);
    print(
        o,
        &samples,
        version.trim(),
        systemd.lines().next().unwrap_or(""),
    )
}

/// Timed runs, alternating: nsenter alone, `podman ps`, `systemctl show`,
/// both (the floor) and the pass.
struct Samples {
    rows: Vec<(String, Vec<f64>)>,
}

fn measure(sc: &Scenario, o: &Options, bin: &str) -> Result<Samples> {
    let m = sc.m;
    let units: Vec<String> = (0..o.units).map(|i| sc.unit(&format!("s{i:03}"))).collect();
    start_stack(sc, &units, o.batch)?;
    let ps_args = "ps --all --no-trunc --filter label=io.nixarr.managed=true --format json";
    let ps: Vec<&str> = std::iter::once("podman")
        .chain(ps_args.split(' '))
        .collect();
    let mut show = vec!["systemctl", "show", "-p", SHOW_PROPS];
    show.extend(units.iter().map(String::as_str));
    let floor_script = format!(
        "podman {ps_args} >/dev/null && systemctl show -p {SHOW_PROPS} {} >/dev/null",
        units.join(" ")
    );
    let floor = ["sh", "-c", floor_script.as_str()];
    let ours = [bin, "reconcile", "--json"];
    check(m, &ours, &ps, &show, o.units)?;
    let commands: [(&str, &[&str]); 5] = [
        ("nsenter alone", &["true"]),
        ("podman ps --format json", &ps),
        ("systemctl show (4 properties)", &show),
        ("floor: podman ps, then systemctl show", &floor),
        ("reconcile --json (ours)", &ours),
    ];
    let mut rows: Vec<(String, Vec<f64>)> = commands
        .iter()
        .map(|(n, _)| ((*n).to_owned(), Vec::new()))
        .collect();
    for run in 0..=o.runs {
        for (i, (_, argv)) in commands.iter().enumerate() {
            let ms = timed_ok(m, argv, 0)?;
            // The first round warms the caches up and is not counted.
            if run > 0 {
                rows[i].1.push(ms);
            }
        }
    }
    Ok(Samples { rows })
}

fn print(o: &Options, s: &Samples, engine: &str, systemd: &str) -> Result<bool> {
    println!(
        "\n{} labelled containers and their units, podman {engine}, {systemd} in nspawn; \
         median of {} runs (min-max in brackets), wall ms",
        o.units, o.runs
    );
    for (name, v) in &s.rows {
        let st = stats(v);
        println!(
            "  {name:<40} {:>8.1} [{:>8.1}-{:>8.1}]",
            st.median, st.min, st.max
        );
    }
    let median_of = |name: &str| {
        s.rows
            .iter()
            .find(|(n, _)| n.starts_with(name))
            .map(|(_, v)| stats(v).median)
            .context("no such row")
    };
    let floor = median_of("floor")?;
    let ours = median_of("reconcile")?;
    let ratio = ours / floor;
    let ratio_ok = ratio <= TARGET_RATIO;
    let time_ok = ours <= TARGET_MS;
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!(
        "  ratio ours/floor: {ratio:.2} (target <= {TARGET_RATIO}: {})",
        verdict(ratio_ok)
    );
    println!(
        "  ours: {ours:.0} ms (target <= {TARGET_MS:.0}: {})",
        verdict(time_ok)
    );
    Ok(ratio_ok && time_ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "reconcile benchmark: not run under cargo test; run benches/reconcile-bench.sh \
             as root"
        );
        return ExitCode::SUCCESS;
    }
    let result = parse_args(&args).and_then(|o| {
        ensure!(
            Path::new(&o.bin).is_file(),
            "--bin {}: no such file (build it with `cargo build --release`)",
            o.bin.display()
        );
        run(&o)
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("reconcile benchmark: {e:#}");
            ExitCode::from(2)
        }
    }
}
