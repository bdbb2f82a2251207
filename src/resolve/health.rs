//! A service's health check: the command, or a probe from the host against
//! a published port.

use std::net::IpAddr;

use super::check::Ctx;
use crate::duration::parse_duration;
use crate::error::SpecError;
use crate::limits;
use crate::model::{Health, Port, Probe};
use crate::spec::{HealthSpec, Protocol};

pub(super) fn resolve_health(
    cx: &Ctx,
    path: &str,
    h: &HealthSpec,
    ports: &[Port],
    preset_app: Option<&str>,
) -> Result<Health, SpecError> {
    let dur = |field: &str, value: &Option<String>, default: &str| -> Result<String, SpecError> {
        let v = value.clone().unwrap_or_else(|| default.to_owned());
        parse_duration(&v).map_err(|e| cx.err(format!("{path}.{field}"), e))?;
        Ok(v)
    };
    let interval = dur("interval", &h.interval, "30s")?;
    let timeout = dur("timeout", &h.timeout, "5s")?;
    let start_period = dur("startPeriod", &h.start_period, "0s")?;
    let retries = h.retries.unwrap_or(3);
    cx.within(
        format!("{path}.retries"),
        retries,
        &limits::HEALTH_RETRIES,
        "",
    )?;
    if let Some(c) = &h.cmd {
        cx.text(format!("{path}.cmd"), c)?;
        if c.trim().is_empty() {
            return Err(cx.err(
                format!("{path}.cmd"),
                "is empty; give a shell command or leave it out",
            ));
        }
    }

    let probe = Probed {
        cx,
        path,
        h,
        ports,
        preset_app,
    }
    .probe()?;
    if h.cmd.is_none() && probe.is_none() {
        return Err(cx.err(
            path,
            "has neither `cmd` nor a probe (`http` or `tcp`); give one, or set health to null",
        ));
    }
    Ok(Health {
        cmd: h.cmd.clone(),
        probe,
        interval,
        timeout,
        retries,
        start_period,
    })
}

/// A probe from the host, and what it needs to find its address.
struct Probed<'a> {
    cx: &'a Ctx<'a>,
    /// `services.<name>.health`.
    path: &'a str,
    h: &'a HealthSpec,
    ports: &'a [Port],
    /// The catalog app whose probe this is, when the user wrote none.
    preset_app: Option<&'a str>,
}

impl Probed<'_> {
    fn probe(&self) -> Result<Option<Probe>, SpecError> {
        let (cx, path, h) = (self.cx, self.path, self.h);
        Ok(match (&h.http, h.tcp.unwrap_or(false)) {
            (Some(_), true) => {
                return Err(cx.err(
                    format!("{path}.tcp"),
                    "cannot be combined with `http`; choose one probe",
                ));
            }
            (Some(url), false) => Some(self.http(url)?),
            (None, true) => {
                let (host, port) = self.host_of("tcp")?;
                Some(Probe::Tcp {
                    address: format!("{host}:{port}"),
                })
            }
            (None, false) => None,
        })
    }

    fn http(&self, url: &str) -> Result<Probe, SpecError> {
        let (cx, path, h) = (self.cx, self.path, self.h);
        cx.text(format!("{path}.http"), url)?;
        let url = if url.starts_with('/') {
            let (host, port) = self.host_of("http")?;
            format!("http://{host}:{port}{url}")
        } else if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            return Err(cx.err(
                format!("{path}.http"),
                format!("`{url}` is neither a URL (http://…) nor a path (/ping)"),
            ));
        };
        let method = h.method.clone().unwrap_or_else(|| "GET".to_owned());
        if !matches!(method.as_str(), "GET" | "HEAD" | "POST") {
            return Err(cx.err(
                format!("{path}.method"),
                format!("`{method}` is not supported; use GET, HEAD or POST"),
            ));
        }
        let expect_status = match h.expect_status {
            None => None,
            Some(s) if limits::HTTP_STATUS.contains(&s) => Some(s as u16),
            Some(s) => {
                return Err(cx.err(
                    format!("{path}.expectStatus"),
                    format!(
                        "{s} is not an HTTP status ({})",
                        limits::span(&limits::HTTP_STATUS)
                    ),
                ));
            }
        };
        if let Some(b) = &h.expect_body {
            cx.text(format!("{path}.expectBody"), b)?;
        }
        Ok(Probe::Http {
            url,
            method,
            expect_status,
            expect_body: h.expect_body.clone(),
        })
    }

    /// The host address and port that publish the probed container port.
    fn host_of(&self, field: &str) -> Result<(String, u16), SpecError> {
        let (cx, path, h, preset_app) = (self.cx, self.path, self.h, self.preset_app);
        let cport = h.port.ok_or_else(|| {
            cx.err(
                format!("{path}.port"),
                format!("is needed with `{field}`: the container port to probe"),
            )
        })?;
        let port = self
            .ports
            .iter()
            .find(|p| u64::from(p.container) == cport && p.protocol == Protocol::Tcp)
            .ok_or_else(|| match preset_app {
                Some(app) => cx.err(
                    path.strip_suffix(".health")
                        .map_or_else(|| format!("{path}.port"), |svc| format!("{svc}.ports")),
                    format!(
                        "the catalog app `{app}` probes its health on container port {cport}, \
                         which these ports do not publish (tcp); publish it (e.g. \
                         {{\"host\": {cport}, \"container\": {cport}}}), or give the service \
                         its own `health` (or null for none)"
                    ),
                ),
                None => cx.err(
                    format!("{path}.port"),
                    format!(
                        "container port {cport} is not published (tcp) in `ports`; publish it \
                         or probe another port"
                    ),
                ),
            })?;
        let host = match port.address {
            None => "127.0.0.1".to_owned(),
            Some(IpAddr::V4(a)) if a.is_unspecified() => "127.0.0.1".to_owned(),
            Some(IpAddr::V6(a)) if a.is_unspecified() => "[::1]".to_owned(),
            Some(IpAddr::V6(a)) => format!("[{a}]"),
            Some(a) => a.to_string(),
        };
        Ok((host, port.host))
    }
}
