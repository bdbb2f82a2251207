//! What the commands that look at and steer running services (`status`,
//! `start`/`stop`/`restart`, `logs`, `vpn status`; in src/commands/) share:
//! picking services of the manifest by name, collecting their states and
//! probe results, why a job failed, and the VPN service.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;

use crate::error::UsageError;
use crate::manifest::{Manifest, ServiceManifest};
use crate::status::{self, Report};
use crate::systemd::Systemd;

/// A service picked on the command line: (stack index, service name).
pub type Selected = (usize, String);

/// A usage error (exit 2): a service the manifest does not know.
fn unknown_service(name: &str, manifest: &Manifest) -> anyhow::Error {
    let known: Vec<&str> = manifest.services().map(|(_, n, _)| n.as_str()).collect();
    let hint = crate::naming::nearest(name, known.iter().copied())
        .map(|k| format!(" Did you mean `{k}`?"))
        .unwrap_or_default();
    UsageError(format!(
        "command line: {name}: no such service in the manifest.{hint} Known: {}",
        if known.is_empty() {
            "(none)".to_owned()
        } else {
            known.join(", ")
        }
    ))
    .into()
}

/// (stack index, service name) for the names given (service name or unit
/// name), or every service when none is given.
pub fn select(manifest: &Manifest, names: &[String]) -> Result<Vec<Selected>> {
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

pub fn units_of(manifest: &Manifest, selected: &[Selected]) -> Vec<String> {
    selected
        .iter()
        .filter_map(|(i, n)| Some(manifest.stacks.get(*i)?.services.get(n)?.unit.clone()))
        .collect()
}

/// The units whose journal tells a selected service's story: its own unit
/// and, when it has one, its secret bridge, both as the manifest names them
/// (from [`crate::render::Names`] at render time; never spelt again here).
pub fn journal_units(manifest: &Manifest, selected: &[Selected]) -> Vec<String> {
    selected
        .iter()
        .filter_map(|(i, n)| manifest.stacks.get(*i)?.services.get(n))
        .flat_map(|svc| std::iter::once(&svc.unit).chain(svc.secrets_unit.as_ref()))
        .cloned()
        .collect()
}

/// Probe results of each selected service (`probe`: each probe's time
/// limit; `None` runs no probes) combined with the units' states.
pub async fn collect(
    sd: &Systemd,
    manifest: &Manifest,
    selected: &[Selected],
    probe: Option<Duration>,
) -> Result<Report> {
    let units = units_of(manifest, selected);
    let states = sd.unit_states(&units).await?;
    Ok(status::build_report(
        manifest,
        selected,
        states,
        probe.is_some(),
        probe.unwrap_or_default(),
    ))
}

/// Why a unit's job failed, as far as systemd can say: the unit's state
/// now and the last `n` lines of its journal.
pub async fn failure_detail(
    sd: &Systemd,
    unit: &str,
    n: usize,
) -> Result<(Option<crate::systemd::UnitState>, Vec<String>)> {
    let state = sd.unit_state(unit).await?;
    Ok((Some(state), journal_tail(unit, n)))
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

/// The VPN service of a manifest: the app "gluetun" service, else the
/// container the VPN users' ports are published through.
pub struct Vpn<'a> {
    pub selected: Selected,
    pub svc: &'a ServiceManifest,
    /// The services of its stack whose traffic goes through a VPN.
    pub behind_it: Vec<String>,
}

pub fn find_vpn(manifest: &Manifest) -> Option<Vpn<'_>> {
    let (stack, name, svc) = manifest
        .services()
        .find(|(_, _, s)| s.app.as_deref() == Some("gluetun"))
        .or_else(|| {
            let users: Vec<_> = manifest.services().filter(|(_, _, s)| s.vpn).collect();
            let via = users.first()?.2.ports.first()?.via.clone()?;
            manifest.services().find(|(_, _, s)| s.container == via)
        })?;
    let si = manifest
        .stacks
        .iter()
        .position(|s| std::ptr::eq(s, stack))
        .unwrap_or(0);
    let behind_it = manifest
        .services()
        .filter(|(st, _, s)| std::ptr::eq(*st, stack) && s.vpn)
        .map(|(_, n, _)| n.clone())
        .collect();
    Some(Vpn {
        selected: (si, name.clone()),
        svc,
        behind_it,
    })
}

/// Gluetun's public-IP endpoint on the host, when its control server port
/// (8000) is published.
pub fn control_url(svc: &ServiceManifest) -> Option<String> {
    svc.ports.iter().find(|p| p.container == 8000).map(|p| {
        let host = match p.address {
            Some(a) if !a.is_unspecified() => a.to_string(),
            _ => "127.0.0.1".to_owned(),
        };
        format!("http://{host}:{}/v1/publicip/ip", p.host)
    })
}

/// The public IP the control server at `url` reports, or why it is unknown.
pub fn public_ip(url: &str, timeout: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `logs` reads the bridge's unit from the manifest: a service without
    /// secrets has none, and a bridge named otherwise than `<unit>-secrets`
    /// is still the one shown.
    #[test]
    fn journal_units_come_from_the_manifest() {
        let mut m: Manifest = serde_json::from_str(include_str!("manifest/v1-full.json")).unwrap();
        let svc = m.stacks[0].services.get_mut("sonarr").unwrap();
        svc.secrets_unit = Some("elsewhere-bridge.service".into());
        let selected = select(&m, &["sonarr".into(), "bazarr".into(), "gluetun".into()]).unwrap();
        assert_eq!(
            journal_units(&m, &selected),
            [
                "nixarr-sonarr.service",
                "elsewhere-bridge.service",
                "nixarr-bazarr.service",
                "nixarr-gluetun.service",
                "nixarr-gluetun-secrets.service",
            ]
        );
    }
}
