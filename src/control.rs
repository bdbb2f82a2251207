//! The commands that look at and steer running services: `status`,
//! `start`/`stop`/`restart`, `logs` and `vpn status`. They read the manifest
//! to know the services and talk to systemd over D-Bus.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;

use crate::error::SpecError;
use crate::manifest::{self, Manifest};
use crate::status::{self, HealthState, Report};
use crate::systemd::{self, ActiveState, JobResult, Systemd, Verb, sleep};

/// Exit status for "something is unhealthy or failed".
pub const EXIT_UNHEALTHY: u8 = 1;

/// Where to find things: the manifest and the bus.
pub struct Target<'a> {
    pub manifest: Option<&'a Path>,
    pub bus_address: Option<&'a str>,
}

/// A usage error (exit 2): a service the manifest does not know.
fn unknown_service(name: &str, manifest: &Manifest) -> anyhow::Error {
    let known: Vec<&str> = manifest.services().map(|(_, n, _)| n.as_str()).collect();
    let hint = crate::naming::nearest(name, known.iter().copied())
        .map(|k| format!(" Did you mean `{k}`?"))
        .unwrap_or_default();
    SpecError::at(
        "command line",
        name,
        format!(
            "no such service in the manifest.{hint} Known: {}",
            if known.is_empty() {
                "(none)".to_owned()
            } else {
                known.join(", ")
            }
        ),
    )
    .into()
}

/// (stack index, service name) for the names given (service name or unit
/// name), or every service when none is given.
fn select(manifest: &Manifest, names: &[String]) -> Result<Vec<(usize, String)>> {
    let mut out = Vec::new();
    if names.is_empty() {
        for (i, stack) in manifest.stacks.iter().enumerate() {
            out.extend(stack.services.keys().map(|n| (i, n.clone())));
        }
        return Ok(out);
    }
    for name in names {
        let mut found = false;
        for (i, stack) in manifest.stacks.iter().enumerate() {
            for (svc, m) in &stack.services {
                if svc == name || &m.unit == name || m.unit.trim_end_matches(".service") == name {
                    out.push((i, svc.clone()));
                    found = true;
                }
            }
        }
        if !found {
            return Err(unknown_service(name, manifest));
        }
    }
    Ok(out)
}

fn units_of(manifest: &Manifest, selected: &[(usize, String)]) -> Vec<String> {
    selected
        .iter()
        .filter_map(|(i, n)| Some(manifest.stacks.get(*i)?.services.get(n)?.unit.clone()))
        .collect()
}

async fn connect(target: &Target<'_>) -> Result<Systemd> {
    Systemd::connect(target.bus_address).await
}

pub struct StatusOptions {
    pub services: Vec<String>,
    pub json: bool,
    pub watch: bool,
    pub probe: bool,
    pub timeout: Duration,
}

async fn collect(
    sd: &Systemd,
    manifest: &Manifest,
    selected: &[(usize, String)],
    opts: &StatusOptions,
) -> Result<Report> {
    let units = units_of(manifest, selected);
    let states = sd.unit_states(&units).await?;
    Ok(status::build_report(
        manifest,
        selected,
        states,
        opts.probe,
        opts.timeout,
    ))
}

fn print_report(report: &Report, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else if report.services.is_empty() {
        writeln!(out, "no services in the manifest")?;
    } else {
        out.write_all(status::table(report, SystemTime::now()).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

pub fn status(target: &Target<'_>, opts: &StatusOptions) -> Result<ExitCode> {
    let (_, manifest) = manifest::load(target.manifest)?;
    let selected = select(&manifest, &opts.services)?;
    zbus::block_on(async {
        let sd = connect(target).await?;
        if !opts.watch {
            let report = collect(&sd, &manifest, &selected, opts).await?;
            print_report(&report, opts.json)?;
            return Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_UNHEALTHY)
            });
        }
        watch(target, &sd, &manifest, &selected, opts).await
    })
}

/// Redraw whenever systemd reports a property change of a watched unit,
/// and at least every few seconds so probe results stay fresh.
async fn watch(
    target: &Target<'_>,
    sd: &Systemd,
    manifest: &Manifest,
    selected: &[(usize, String)],
    opts: &StatusOptions,
) -> Result<ExitCode> {
    // systemd emits PropertiesChanged only while some client is subscribed;
    // without this the table would change only on the periodic refresh.
    sd.subscribe().await?;
    let conn = systemd::connect(target.bus_address).await?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.systemd1")
        .interface("org.freedesktop.DBus.Properties")
        .member("PropertiesChanged")
        .build()
        .context("building the PropertiesChanged match rule")?;
    let mut changes = zbus::MessageStream::for_match_rule(rule, &conn, None)
        .await
        .context("subscribing to PropertiesChanged")?;
    let tty = std::io::stdout().is_terminal();
    let mut last: Option<Report> = None;
    loop {
        let report = collect(sd, manifest, selected, opts).await?;
        if last.as_ref() != Some(&report) || tty {
            if tty {
                print!("\x1b[H\x1b[2J");
            }
            print_report(&report, opts.json)?;
            last = Some(report);
        }
        // Wait for a change or the refresh interval, whichever first; then
        // let a burst of changes settle.
        let next = changes.next();
        let tick = sleep(Duration::from_secs(5));
        futures_util::pin_mut!(next, tick);
        futures_util::future::select(next, tick).await;
        sleep(Duration::from_millis(200)).await;
    }
}

pub struct JobOptions {
    pub verb: Verb,
    pub services: Vec<String>,
    pub all: bool,
    pub timeout: Duration,
}

/// start/stop/restart: issue the jobs, wait for each, report each result;
/// on failure the unit's Result and its last journal lines.
pub fn jobs(target: &Target<'_>, opts: &JobOptions) -> Result<ExitCode> {
    let (_, manifest) = manifest::load(target.manifest)?;
    let units: Vec<String> = if opts.all {
        // Every service unit and each stack's target: waiting for the
        // target's job alone would return before its services are stopped.
        let mut units = units_of(&manifest, &select(&manifest, &[])?);
        units.extend(manifest.stacks.iter().map(|s| s.target.clone()));
        units
    } else {
        if opts.services.is_empty() {
            bail!("name the services to {}, or pass --all", opts.verb.name());
        }
        units_of(&manifest, &select(&manifest, &opts.services)?)
    };
    zbus::block_on(async {
        let sd = connect(target).await?;
        let outcomes = sd.run_jobs(opts.verb, &units, opts.timeout).await?;
        let mut failed = false;
        for o in &outcomes {
            println!("{}: {} {}", o.unit, opts.verb.name(), o.result);
            if o.result != JobResult::Done {
                failed = true;
                let (state, tail) = failure_detail(&sd, &o.unit, 10).await?;
                if let Some(s) = state {
                    println!(
                        "  state: {} ({}), result: {}",
                        s.active_state,
                        s.sub_state,
                        s.result.as_deref().unwrap_or("-")
                    );
                }
                for line in tail {
                    println!("  {line}");
                }
            }
        }
        Ok(if failed {
            ExitCode::from(EXIT_UNHEALTHY)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// Why a unit's job failed, as far as systemd can say: the unit's state
/// now and the last `n` lines of its journal.
pub(crate) async fn failure_detail(
    sd: &Systemd,
    unit: &str,
    n: usize,
) -> Result<(Option<crate::systemd::UnitState>, Vec<String>)> {
    let state = sd.unit_states(&[unit.to_owned()]).await?.into_iter().next();
    Ok((state, journal_tail(unit, n)))
}

/// The last lines the journal has for a unit (empty when journalctl cannot
/// be run, e.g. for a remote bus).
fn journal_tail(unit: &str, n: usize) -> Vec<String> {
    Command::new("journalctl")
        .args([
            "--no-pager",
            "-o",
            "short",
            "-n",
            &n.to_string(),
            "-u",
            unit,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.starts_with("-- "))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `logs`: journalctl for the service's unit and its secret bridge.
pub fn logs(
    manifest_path: Option<&Path>,
    service: &str,
    follow: bool,
    lines: Option<usize>,
) -> Result<ExitCode> {
    let (_, manifest) = manifest::load(manifest_path)?;
    let selected = select(&manifest, &[service.to_owned()])?;
    let mut cmd = Command::new("journalctl");
    cmd.arg("--no-pager");
    for unit in units_of(&manifest, &selected) {
        let bridge = unit.replace(".service", "-secrets.service");
        cmd.arg("-u").arg(unit).arg("-u").arg(bridge);
    }
    if follow {
        cmd.arg("-f");
    }
    if let Some(n) = lines {
        cmd.arg("-n").arg(n.to_string());
    }
    let status = cmd
        .status()
        .context("cannot run journalctl; is systemd's journal available here?")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `vpn status`: the VPN unit, its health, and its public IP when the
/// control server lets us ask.
pub fn vpn_status(target: &Target<'_>, timeout: Duration) -> Result<ExitCode> {
    let (_, manifest) = manifest::load(target.manifest)?;
    let vpn = manifest
        .services()
        .find(|(_, _, s)| s.app.as_deref() == Some("gluetun"))
        .or_else(|| {
            let users: Vec<_> = manifest.services().filter(|(_, _, s)| s.vpn).collect();
            let via = users.first()?.2.ports.first()?.via.clone()?;
            manifest.services().find(|(_, _, s)| s.container == via)
        });
    let Some((stack, name, svc)) = vpn else {
        println!("no VPN service in the manifest (add an app \"gluetun\" service)");
        return Ok(ExitCode::from(EXIT_UNHEALTHY));
    };
    let si = manifest
        .stacks
        .iter()
        .position(|s| std::ptr::eq(s, stack))
        .unwrap_or(0);
    let report = zbus::block_on(async {
        let sd = connect(target).await?;
        let opts = StatusOptions {
            services: vec![],
            json: false,
            watch: false,
            probe: true,
            timeout,
        };
        collect(&sd, &manifest, &[(si, name.clone())], &opts).await
    })?;
    let row = report
        .services
        .first()
        .context("the VPN unit is missing from systemd's answer")?;
    println!("service: {name} ({})", svc.unit);
    println!(
        "state:   {} ({})",
        row.state.active_state, row.state.sub_state
    );
    // The reason as written ("HTTP 503"), not lower-cased with the word.
    let health = match (&row.health.state, &row.health.reason) {
        (HealthState::Healthy, _) => "healthy".to_owned(),
        (s, Some(r)) => format!("{}: {r}", status::health_word(*s)),
        (s, None) => status::health_word(*s).to_owned(),
    };
    println!("health:  {health}");
    let users: Vec<&str> = manifest
        .services()
        .filter(|(st, _, s)| std::ptr::eq(*st, stack) && s.vpn)
        .map(|(_, n, _)| n.as_str())
        .collect();
    println!(
        "behind it: {}",
        if users.is_empty() {
            "(no service)".to_owned()
        } else {
            users.join(", ")
        }
    );
    if row.state.active_state == ActiveState::Active {
        let control = svc.ports.iter().find(|p| p.container == 8000).map(|p| {
            let host = match p.address {
                Some(a) if !a.is_unspecified() => a.to_string(),
                _ => "127.0.0.1".to_owned(),
            };
            format!("http://{host}:{}/v1/publicip/ip", p.host)
        });
        match control {
            None => println!("public IP: unknown (the control server port 8000 is not published)"),
            Some(url) => println!("public IP: {}", public_ip(&url, timeout)),
        }
    }
    Ok(
        if row.state.active_state == ActiveState::Active
            && row.health.state != HealthState::Unhealthy
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_UNHEALTHY)
        },
    )
}

fn public_ip(url: &str, timeout: Duration) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    match agent.get(url).call() {
        Err(e) => format!("unknown (control server unreachable: {e})"),
        Ok(mut resp) => match resp.status().as_u16() {
            200 => {
                let body = resp.body_mut().read_to_string().unwrap_or_default();
                serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["public_ip"].as_str().map(str::to_owned))
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| format!("unknown (unexpected answer: {body})"))
            }
            401 => "unknown: the control server answered 401 (it needs an auth config; \
                    see gluetun's HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH)"
                .to_owned(),
            s => format!("unknown (control server answered HTTP {s})"),
        },
    }
}
